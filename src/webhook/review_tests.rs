//! Unit tests of `review`: the pure AdmissionReview in, AdmissionReview out.

use super::*;
use crate::config::PolicyInput;
use serde_json::json;

fn body(op: &str, object: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": API_VERSION, "kind": REVIEW_KIND,
        "request": {"uid": "u-1", "kind": {"group": GROUP, "version": "v1alpha1", "kind": KIND},
            "operation": op, "namespace": "shop", "name": "api", "object": object}
    }))
    .expect("json")
}

fn obj(spec: Value) -> Value {
    json!({"apiVersion": "corsgate.dev/v1alpha1", "kind": KIND,
        "metadata": {"name": "api", "namespace": "shop"}, "spec": spec})
}

fn none() -> Snapshot {
    Snapshot::build(Vec::new())
}

fn input(ns: &str, name: &str, created: &str, hosts: &[&str]) -> PolicyInput {
    PolicyInput {
        id: PolicyId::new(ns, name),
        created: Some(created.into()),
        spec: serde_json::from_value(
            json!({"hosts": hosts, "upstream": {"url": "http://127.0.0.1:9000"}}),
        )
        .expect("spec"),
        source: None,
    }
}

#[test]
fn an_unchanged_spec_on_update_is_allowed_even_when_invalid() {
    let bad = obj(json!({"hosts": [], "upstream": {"url": "http://a"}}));
    let mut b: Value = serde_json::from_slice(&body("UPDATE", bad.clone())).expect("json");
    b["request"]["oldObject"] = bad;
    let out = review(&serde_json::to_vec(&b).expect("json"), &none(), false).expect("review");
    assert_eq!(out["response"]["allowed"], true, "{out}");
    // The same spec as a change is denied.
    let out = review(
        &body(
            "UPDATE",
            obj(json!({"hosts": [], "upstream": {"url": "http://a"}})),
        ),
        &none(),
        false,
    )
    .expect("review");
    assert_eq!(out["response"]["allowed"], false, "{out}");
}

#[test]
fn other_kinds_and_operations_are_let_through() {
    let mut b: Value = serde_json::from_slice(&body("DELETE", Value::Null)).expect("json");
    let out = review(&serde_json::to_vec(&b).expect("json"), &none(), false).expect("review");
    assert_eq!(out["response"], json!({"uid": "u-1", "allowed": true}));
    b["request"]["operation"] = "CREATE".into();
    b["request"]["kind"]["kind"] = "ConfigMap".into();
    let out = review(&serde_json::to_vec(&b).expect("json"), &none(), false).expect("review");
    assert_eq!(out["response"]["allowed"], true);
}

#[test]
fn taking_over_from_a_newer_policy_is_reported() {
    let newer = input(
        "shop",
        "newer",
        "2024-06-01T00:00:00Z",
        &["api.example.com"],
    );
    let mut o = obj(json!({"hosts": ["api.example.com"], "upstream": {"url": "http://a"}}));
    o["metadata"]["creationTimestamp"] = "2024-01-01T00:00:00Z".into();
    let out = review(
        &body("UPDATE", o.clone()),
        &Snapshot::build(vec![newer.clone()]),
        false,
    )
    .expect("review");
    assert_eq!(
        out["response"]["warnings"],
        json!([
            "host api.example.com path / is served by shop/newer, which is newer: this policy takes it over and shop/newer stops serving"
        ])
    );
    let out = review(&body("UPDATE", o), &Snapshot::build(vec![newer]), true).expect("review");
    assert_eq!(out["response"]["allowed"], false);
    assert_eq!(out["response"]["status"]["code"], 409);
}

#[test]
fn the_object_itself_in_the_cache_is_no_conflict() {
    let me = input("shop", "api", "2024-01-01T00:00:00Z", &["api.example.com"]);
    let out = review(
        &body(
            "UPDATE",
            obj(json!({"hosts": ["api.example.com"], "upstream": {"url": "http://a"}})),
        ),
        &Snapshot::build(vec![me]),
        true,
    )
    .expect("review");
    assert_eq!(out["response"], json!({"uid": "u-1", "allowed": true}));
}

#[test]
fn warnings_are_capped_per_item_and_in_total() {
    let long = "x".repeat(1000);
    let capped = cap_warnings(vec![long; 40]);
    assert!(capped.iter().all(|w| w.chars().count() <= MAX_WARNING));
    assert!(capped.iter().map(String::len).sum::<usize>() <= MAX_WARNINGS_BYTES);
    assert!(
        capped
            .last()
            .is_some_and(|w| w.ends_with("more warnings; see the policy's status.warnings"))
    );
}

/// The probe agrees with what `Snapshot::build` says with and without the candidate
/// (the reference the webhook used before it stopped rebuilding): existing policies of
/// one (host, path) pair each over a small universe, so conflicts are frequent.
#[test]
fn probing_the_routing_table_agrees_with_rebuilding() {
    let hosts = ["a.example.com", "*.example.com", "b.example.com"];
    let paths = ["/", "/v1", "/v1/x"];
    let mut seed = 7u64;
    let mut next = |n: usize| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        usize::try_from(seed >> 33).unwrap_or(0) % n
    };
    let spec = |hs: Vec<&str>, ps: Vec<&str>| -> CorsPolicySpec {
        serde_json::from_value(json!({"hosts": hs, "paths": ps, "upstream": {"url": "http://a"}}))
            .expect("spec")
    };
    let mut checked = 0;
    for round in 0..40 {
        let existing: Vec<PolicyInput> = (0..8)
            .map(|i| PolicyInput {
                id: PolicyId::new("shop", format!("p{i}")),
                created: Some(format!("2024-01-{:02}T00:00:00Z", 1 + next(20))),
                spec: spec(vec![hosts[next(3)]], vec![paths[next(3)]]),
                source: None,
            })
            .collect();
        let c = Candidate {
            id: PolicyId::new("shop", format!("new{round}")),
            created: Some(format!("2024-01-{:02}T12:00:00Z", 1 + next(20))),
            spec: spec(
                vec![hosts[next(3)], hosts[next(3)]],
                vec![paths[next(3)], paths[next(3)]],
            ),
        };
        let compiled = CompiledPolicy::from_spec(c.id.clone(), &c.spec).expect("valid");
        let compiled = CompiledPolicy {
            created: c.created.clone(),
            ..compiled
        };
        let probed = conflicts(&compiled, &Snapshot::build(existing.clone()));
        assert_eq!(probed, rebuilt(&c, &existing), "round {round}");
        checked += usize::from(!probed.is_empty());
    }
    assert!(
        checked > 10,
        "the universe makes conflicts common: {checked}"
    );
}

/// The former algorithm: build with the candidate, and without it for who served.
fn rebuilt(c: &Candidate, others: &[PolicyInput]) -> Vec<String> {
    let mut with = others.to_vec();
    with.push(PolicyInput {
        id: c.id.clone(),
        created: c.created.clone(),
        spec: c.spec.clone(),
        source: None,
    });
    let after = Snapshot::build(with);
    let before = Snapshot::build(others.to_vec());
    let me = c.id.to_string();
    let mut out = Vec::new();
    for r in &after.rejected {
        let crate::config::Rejected::Conflicted { winner, host, path } = &r.rejected else {
            continue;
        };
        if r.policy == me {
            out.push(conflict_message(
                ConflictAudience::Admission,
                &me,
                winner,
                host,
                path,
            ));
        } else if winner == &me && before.policies.iter().any(|p| p.id.to_string() == r.policy) {
            out.push(format!(
                "host {host} path {path} is served by {}, which is newer: this policy takes it over and {} stops serving",
                r.policy, r.policy
            ));
        }
    }
    out
}
