//! Pure scenarios: literal policies in (`mk_policy`), snapshot and conditions out. No kube,
//! no I/O: what the reconcile loop computes before it decides to write anything.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::ObjectMeta;

use super::reconcile;
use super::status::{self, ServiceIndex, desired, events, same};
use super::stream::{Hub, Tally};
use crate::config::Snapshot;
use crate::policy::{CorsPolicy, CorsPolicySpec, CorsPolicyStatus};

fn time(s: &str) -> Time {
    Time(s.parse().expect("timestamp"))
}

fn mk_policy(ns: &str, name: &str, created: &str, spec: &str) -> CorsPolicy {
    let spec: CorsPolicySpec =
        serde_yaml::from_str(spec).unwrap_or_else(|e| panic!("{ns}/{name}: {e}"));
    let mut p = CorsPolicy::new(name, spec);
    p.metadata = ObjectMeta {
        name: Some(name.into()),
        namespace: Some(ns.into()),
        creation_timestamp: (!created.is_empty()).then(|| time(created)),
        generation: Some(1),
        ..ObjectMeta::default()
    };
    p
}

fn url(hosts: &str) -> String {
    format!("{{hosts: {hosts}, upstream: {{url: 'http://127.0.0.1:9000'}}}}")
}

fn svc(hosts: &str, name: &str, port: i32) -> String {
    format!("{{hosts: {hosts}, upstream: {{service: {{name: {name}, port: {port}}}}}}}")
}

fn services(list: &[(&str, &str, &[i32])]) -> ServiceIndex {
    list.iter()
        .map(|(ns, n, ports)| ((ns.to_string(), n.to_string()), ports.to_vec()))
        .collect()
}

fn snapshot(policies: &[CorsPolicy]) -> Snapshot {
    Snapshot::build(policies.iter().map(status::input_of).collect())
}

fn cond<'a>(
    s: &'a CorsPolicyStatus,
    t: &str,
) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    s.conditions
        .iter()
        .find(|c| c.type_ == t)
        .unwrap_or_else(|| panic!("no {t} condition"))
}

const T0: &str = "2024-01-01T00:00:00Z";
const T1: &str = "2024-01-02T00:00:00Z";
const T2: &str = "2024-01-03T00:00:00Z";
const NOW: &str = "2025-06-01T12:00:00Z";

/// `(policy, accepted reason, resolved reason, programmed reason)`
type Expect = (&'static str, &'static str, &'static str, &'static str);

struct Case {
    name: &'static str,
    policies: Vec<CorsPolicy>,
    services: ServiceIndex,
    tally: Tally,
    expect: Vec<Expect>,
    /// `(host, path, the policy that serves it or None)`
    routes: Vec<(&'static str, &'static str, Option<&'static str>)>,
    /// A substring the first policy's Accepted or ResolvedRefs message must contain.
    message: Option<(&'static str, &'static str, &'static str)>,
}

fn case(name: &'static str, policies: Vec<CorsPolicy>) -> Case {
    Case {
        name,
        policies,
        services: ServiceIndex::new(),
        tally: Tally::default(),
        expect: vec![],
        routes: vec![],
        message: None,
    }
}

fn cases() -> Vec<Case> {
    let none = Tally::default();
    let all3 = Tally {
        connected: 3,
        current: 3,
    };
    vec![
        Case {
            expect: vec![("shop/api", "Accepted", "ResolvedRefs", "Pending")],
            routes: vec![("api.example.com", "/x", Some("shop/api"))],
            message: Some(("shop/api", "Programmed", "no proxy connected yet")),
            ..case(
                "one url policy, no proxy yet",
                vec![mk_policy("shop", "api", T0, &url("[api.example.com]"))],
            )
        },
        Case {
            services: services(&[("shop", "storefront", &[8080])]),
            expect: vec![("shop/api", "Accepted", "ResolvedRefs", "Pending")],
            message: Some((
                "shop/api",
                "ResolvedRefs",
                "Service shop/storefront port 8080 exists",
            )),
            ..case(
                "service and port exist",
                vec![mk_policy(
                    "shop",
                    "api",
                    T0,
                    &svc("[api.example.com]", "storefront", 8080),
                )],
            )
        },
        Case {
            expect: vec![("shop/api", "Accepted", "BackendNotFound", "Pending")],
            routes: vec![("api.example.com", "/", Some("shop/api"))],
            message: Some((
                "shop/api",
                "ResolvedRefs",
                "Service shop/storefront does not exist",
            )),
            ..case(
                "missing service: still serves (502 at the edge)",
                vec![mk_policy(
                    "shop",
                    "api",
                    T0,
                    &svc("[api.example.com]", "storefront", 8080),
                )],
            )
        },
        Case {
            services: services(&[("shop", "storefront", &[80, 443])]),
            expect: vec![("shop/api", "Accepted", "BackendNotFound", "Pending")],
            message: Some((
                "shop/api",
                "ResolvedRefs",
                "has no port 8080 (it has: 80, 443)",
            )),
            ..case(
                "service without the port",
                vec![mk_policy(
                    "shop",
                    "api",
                    T0,
                    &svc("[api.example.com]", "storefront", 8080),
                )],
            )
        },
        Case {
            services: services(&[("other", "storefront", &[8080])]),
            expect: vec![("shop/api", "Accepted", "BackendNotFound", "Pending")],
            ..case(
                "a Service in another namespace does not resolve",
                vec![mk_policy(
                    "shop",
                    "api",
                    T0,
                    &svc("[api.example.com]", "storefront", 8080),
                )],
            )
        },
        Case {
            tally: all3,
            expect: vec![("shop/bad", "InvalidSpec", "ResolvedRefs", "Pending")],
            routes: vec![("api.example.com", "/", None)],
            message: Some(("shop/bad", "Accepted", "spec.hosts[0]")),
            ..case(
                "invalid host",
                vec![mk_policy(
                    "shop",
                    "bad",
                    T0,
                    &url("['api.example.com:443']"),
                )],
            )
        },
        Case {
            // The Service ref is still checked (and missing), so both problems show at once.
            expect: vec![("shop/bad", "InvalidSpec", "BackendNotFound", "Pending")],
            message: Some(("shop/bad", "Accepted", "exactly one of service or url")),
            ..case(
                "both upstreams",
                vec![mk_policy(
                    "shop",
                    "bad",
                    T0,
                    "{hosts: [a.example], upstream: {url: 'http://u:1', service: {name: s, port: 1}}}",
                )],
            )
        },
        Case {
            expect: vec![("shop/bad", "InvalidSpec", "ResolvedRefs", "Pending")],
            message: Some(("shop/bad", "Accepted", "allowCredentials")),
            ..case(
                "credentials with \"*\" exposed headers",
                vec![mk_policy(
                    "shop",
                    "bad",
                    T0,
                    "{hosts: [a.example], upstream: {url: 'http://u:1'}, cors: {allowOrigins: ['https://x.example'], exposeHeaders: ['*'], allowCredentials: true}}",
                )],
            )
        },
        Case {
            tally: all3,
            expect: vec![
                ("a/old", "Accepted", "ResolvedRefs", "Programmed"),
                ("a/new", "Conflicted", "ResolvedRefs", "Pending"),
            ],
            routes: vec![("api.example.com", "/", Some("a/old"))],
            message: Some(("a/new", "Accepted", "already served by a/old")),
            ..case(
                "same host and path: the older wins",
                vec![
                    mk_policy("a", "new", T1, &url("[api.example.com]")),
                    mk_policy("a", "old", T0, &url("[api.example.com]")),
                ],
            )
        },
        Case {
            expect: vec![
                ("a/x", "Accepted", "ResolvedRefs", "Pending"),
                ("b/x", "Conflicted", "ResolvedRefs", "Pending"),
            ],
            message: Some(("b/x", "Accepted", "already served by a/x")),
            ..case(
                "equal timestamps: namespace/name order wins",
                vec![
                    mk_policy("b", "x", T0, &url("[api.example.com]")),
                    mk_policy("a", "x", T0, &url("[api.example.com]")),
                ],
            )
        },
        Case {
            expect: vec![
                ("a/z", "Accepted", "ResolvedRefs", "Pending"),
                ("a/zz", "Conflicted", "ResolvedRefs", "Pending"),
            ],
            ..case(
                "equal timestamps, same namespace: name order wins",
                vec![
                    mk_policy("a", "zz", T0, &url("[api.example.com]")),
                    mk_policy("a", "z", T0, &url("[api.example.com]")),
                ],
            )
        },
        Case {
            expect: vec![
                ("a/v1", "Accepted", "ResolvedRefs", "Pending"),
                ("a/v2", "Accepted", "ResolvedRefs", "Pending"),
            ],
            routes: vec![
                ("api.example.com", "/v1/x", Some("a/v1")),
                ("api.example.com", "/v2", Some("a/v2")),
                ("api.example.com", "/v3", None),
            ],
            ..case(
                "overlapping hosts, different paths: both serve",
                vec![
                    mk_policy(
                        "a",
                        "v1",
                        T1,
                        "{hosts: [api.example.com, www.example.com], paths: [/v1], upstream: {url: 'http://u:1'}}",
                    ),
                    mk_policy(
                        "a",
                        "v2",
                        T0,
                        "{hosts: [api.example.com], paths: [/v2], upstream: {url: 'http://u:1'}}",
                    ),
                ],
            )
        },
        Case {
            expect: vec![
                ("a/root", "Accepted", "ResolvedRefs", "Pending"),
                ("a/v1", "Accepted", "ResolvedRefs", "Pending"),
            ],
            routes: vec![
                ("api.example.com", "/v1/x", Some("a/v1")),
                ("api.example.com", "/v10", Some("a/root")),
                ("api.example.com", "/", Some("a/root")),
            ],
            ..case(
                "root and a prefix: longest prefix routes, no conflict",
                vec![
                    mk_policy("a", "root", T1, &url("[api.example.com]")),
                    mk_policy(
                        "a",
                        "v1",
                        T0,
                        "{hosts: [api.example.com], paths: [/v1], upstream: {url: 'http://u:1'}}",
                    ),
                ],
            )
        },
        Case {
            expect: vec![
                ("a/exact", "Accepted", "ResolvedRefs", "Pending"),
                ("a/wild", "Accepted", "ResolvedRefs", "Pending"),
            ],
            routes: vec![
                ("api.example.com", "/", Some("a/exact")),
                ("eu.api.example.com", "/", Some("a/wild")),
                ("example.com", "/", None),
            ],
            ..case(
                "wildcard against exact: no conflict, exact wins its host",
                vec![
                    mk_policy("a", "wild", T0, &url("['*.example.com']")),
                    mk_policy("a", "exact", T1, &url("[api.example.com]")),
                ],
            )
        },
        Case {
            expect: vec![
                ("a/w1", "Accepted", "ResolvedRefs", "Pending"),
                ("a/w2", "Conflicted", "ResolvedRefs", "Pending"),
            ],
            message: Some(("a/w2", "Accepted", "host *.example.com path /")),
            ..case(
                "the same wildcard twice conflicts",
                vec![
                    mk_policy("a", "w1", T0, &url("['*.example.com']")),
                    mk_policy("a", "w2", T1, &url("['*.example.com']")),
                ],
            )
        },
        Case {
            expect: vec![
                ("a/lower", "Accepted", "ResolvedRefs", "Pending"),
                ("a/upper", "Conflicted", "ResolvedRefs", "Pending"),
            ],
            ..case(
                "hosts compare case-insensitively",
                vec![
                    mk_policy("a", "lower", T0, &url("[api.example.com]")),
                    mk_policy("a", "upper", T1, &url("[API.Example.com]")),
                ],
            )
        },
        Case {
            expect: vec![
                ("a/one", "Accepted", "ResolvedRefs", "Pending"),
                ("a/two", "Conflicted", "ResolvedRefs", "Pending"),
            ],
            ..case(
                "paths compare normalised (/v1 and /v1/)",
                vec![
                    mk_policy(
                        "a",
                        "one",
                        T0,
                        "{hosts: [api.example.com], paths: [/v1], upstream: {url: 'http://u:1'}}",
                    ),
                    mk_policy(
                        "a",
                        "two",
                        T1,
                        "{hosts: [api.example.com], paths: [/v1/], upstream: {url: 'http://u:1'}}",
                    ),
                ],
            )
        },
        Case {
            expect: vec![
                ("a/first", "Accepted", "ResolvedRefs", "Pending"),
                ("a/second", "Conflicted", "ResolvedRefs", "Pending"),
            ],
            routes: vec![
                ("www.example.com", "/", None),
                ("shop.example.com", "/", Some("a/first")),
            ],
            message: Some(("a/second", "Accepted", "host shop.example.com")),
            ..case(
                "a conflict on one host rejects the whole policy",
                vec![
                    mk_policy("a", "first", T0, &url("[shop.example.com]")),
                    mk_policy(
                        "a",
                        "second",
                        T1,
                        &url("[www.example.com, shop.example.com]"),
                    ),
                ],
            )
        },
        Case {
            expect: vec![
                ("a/broken", "InvalidSpec", "ResolvedRefs", "Pending"),
                ("a/good", "Accepted", "ResolvedRefs", "Pending"),
            ],
            routes: vec![("api.example.com", "/", Some("a/good"))],
            ..case(
                "an older invalid policy never blocks a valid one",
                vec![
                    mk_policy(
                        "a",
                        "broken",
                        T0,
                        "{hosts: [api.example.com], upstream: {url: 'ftp://u'}}",
                    ),
                    mk_policy("a", "good", T1, &url("[api.example.com]")),
                ],
            )
        },
        Case {
            expect: vec![
                ("a/dated", "Accepted", "ResolvedRefs", "Pending"),
                ("a/aaa", "Conflicted", "ResolvedRefs", "Pending"),
            ],
            ..case(
                "a policy without creationTimestamp loses to one with it",
                vec![
                    mk_policy("a", "aaa", "", &url("[api.example.com]")),
                    mk_policy("a", "dated", T2, &url("[api.example.com]")),
                ],
            )
        },
        Case {
            tally: all3,
            expect: vec![("a/p", "Accepted", "ResolvedRefs", "Programmed")],
            message: Some(("a/p", "Programmed", "every connected proxy serves config")),
            ..case(
                "every proxy current: Programmed",
                vec![mk_policy("a", "p", T0, &url("[api.example.com]"))],
            )
        },
        Case {
            tally: Tally {
                connected: 3,
                current: 2,
            },
            expect: vec![("a/p", "Accepted", "ResolvedRefs", "Pending")],
            message: Some((
                "a/p",
                "Programmed",
                "is not yet served by every connected proxy",
            )),
            ..case(
                "one proxy behind: Pending",
                vec![mk_policy("a", "p", T0, &url("[api.example.com]"))],
            )
        },
        Case {
            tally: none,
            expect: vec![
                ("a/api", "Accepted", "ResolvedRefs", "Pending"),
                ("b/api", "Accepted", "ResolvedRefs", "Pending"),
            ],
            ..case(
                "same name in two namespaces, different hosts",
                vec![
                    mk_policy("a", "api", T0, &url("[a.example.com]")),
                    mk_policy("b", "api", T0, &url("[b.example.com]")),
                ],
            )
        },
    ]
}

#[test]
fn table_of_scenarios() {
    let now = time(NOW);
    let all = cases();
    assert!(all.len() >= 20, "the issue asks for at least 20 scenarios");
    for c in all {
        let snap = snapshot(&c.policies);
        for (id, accepted, resolved, programmed) in &c.expect {
            let p = c
                .policies
                .iter()
                .find(|p| status::id_of(p).to_string() == *id)
                .unwrap_or_else(|| panic!("{}: no policy {id}", c.name));
            let s = desired(p, &snap, &c.services, c.tally, &now);
            let got = (
                cond(&s, status::ACCEPTED).reason.as_str(),
                cond(&s, status::RESOLVED_REFS).reason.as_str(),
                cond(&s, status::PROGRAMMED).reason.as_str(),
            );
            assert_eq!(got, (*accepted, *resolved, *programmed), "{}: {id}", c.name);
            assert_eq!(
                cond(&s, status::ACCEPTED).status == "True",
                *accepted == "Accepted",
                "{}: {id}",
                c.name
            );
            assert_eq!(
                cond(&s, status::PROGRAMMED).status == "True",
                *programmed == "Programmed",
                "{}: {id}",
                c.name
            );
            // configVersion: only a policy that is in the snapshot names its version, which
            // is its own (id and spec), not the whole snapshot's (issue 11).
            let expected_version =
                (*accepted == "Accepted").then(|| super::stream::policy_version(id, &p.spec));
            assert_eq!(s.config_version, expected_version, "{}: {id}", c.name);
            assert_eq!(s.observed_generation, Some(1));
            assert!(
                s.conditions
                    .iter()
                    .all(|c| c.observed_generation == Some(1) && c.last_transition_time == now)
            );
        }
        for (host, path, want) in &c.routes {
            let got = snap.route(host, path).map(|(_, p)| p.id.to_string());
            assert_eq!(got.as_deref(), *want, "{}: route {host}{path}", c.name);
        }
        if let Some((id, t, needle)) = c.message {
            let p = c
                .policies
                .iter()
                .find(|p| status::id_of(p).to_string() == id)
                .expect("policy");
            let s = desired(p, &snap, &c.services, c.tally, &now);
            let m = &cond(&s, t).message;
            assert!(
                m.contains(needle),
                "{}: {t} message {m:?} lacks {needle:?}",
                c.name
            );
        }
    }
}

/// Stores `s` on `p`, as the API server would after a write.
fn written(mut p: CorsPolicy, s: CorsPolicyStatus) -> CorsPolicy {
    p.status = Some(s);
    p
}

#[test]
fn deleting_the_winner_promotes_the_loser() {
    let old = mk_policy("a", "old", T0, &url("[api.example.com]"));
    let new = mk_policy("a", "new", T1, &url("[api.example.com]"));
    let t = time(NOW);
    let snap = snapshot(&[old.clone(), new.clone()]);
    let s1 = desired(&new, &snap, &ServiceIndex::new(), Tally::default(), &t);
    assert_eq!(cond(&s1, status::ACCEPTED).reason, "Conflicted");
    let ev = events(None, &s1);
    assert_eq!(ev.len(), 1);
    assert!(ev[0].warning && ev[0].reason == "Conflicted" && ev[0].note.contains("a/old"));
    let new = written(new, s1.clone());

    let snap2 = snapshot(std::slice::from_ref(&new));
    assert_ne!(snap2.version, snap.version);
    let later = time("2025-06-01T12:05:00Z");
    let s2 = desired(&new, &snap2, &ServiceIndex::new(), Tally::default(), &later);
    assert_eq!(cond(&s2, status::ACCEPTED).reason, "Accepted");
    assert_eq!(
        cond(&s2, status::ACCEPTED).last_transition_time,
        later,
        "Accepted flipped: its time moves"
    );
    assert_eq!(
        cond(&s2, status::RESOLVED_REFS).last_transition_time,
        t,
        "ResolvedRefs did not: its time stays"
    );
    assert_eq!(
        s2.config_version,
        Some(super::stream::policy_version("a/new", &new.spec))
    );
    assert!(
        snap2
            .route("api.example.com", "/")
            .is_some_and(|(_, p)| p.id.name == "new")
    );
    let ev = events(Some(&s1), &s2);
    assert_eq!(ev.len(), 1);
    assert!(!ev[0].warning && ev[0].reason == "Accepted");
}

#[test]
fn a_service_disappearing_flips_resolved_refs_only() {
    let p = mk_policy(
        "shop",
        "api",
        T0,
        &svc("[api.example.com]", "storefront", 8080),
    );
    let with = services(&[("shop", "storefront", &[8080])]);
    let snap = snapshot(std::slice::from_ref(&p));
    let t0 = time(NOW);
    let s1 = desired(
        &p,
        &snap,
        &with,
        Tally {
            connected: 1,
            current: 1,
        },
        &t0,
    );
    assert_eq!(cond(&s1, status::RESOLVED_REFS).status, "True");
    let p = written(p, s1.clone());

    // The Service is deleted: the snapshot (and so every proxy) is unchanged.
    let snap2 = snapshot(std::slice::from_ref(&p));
    assert_eq!(
        snap2.version, snap.version,
        "Services never change the snapshot"
    );
    let t1 = time("2025-06-01T13:00:00Z");
    let s2 = desired(
        &p,
        &snap2,
        &ServiceIndex::new(),
        Tally {
            connected: 1,
            current: 1,
        },
        &t1,
    );
    assert_eq!(cond(&s2, status::RESOLVED_REFS).reason, "BackendNotFound");
    assert_eq!(cond(&s2, status::RESOLVED_REFS).last_transition_time, t1);
    assert_eq!(cond(&s2, status::ACCEPTED).last_transition_time, t0);
    assert_eq!(
        cond(&s2, status::PROGRAMMED).reason,
        "Programmed",
        "it still serves"
    );
    assert!(!same(p.status.as_ref(), &s2));
    let ev = events(p.status.as_ref(), &s2);
    assert_eq!(ev.len(), 1);
    assert!(ev[0].warning && ev[0].reason == "BackendNotFound");
}

#[test]
fn an_invalid_edit_to_a_serving_policy_stops_it_and_only_it() {
    let a = mk_policy("a", "a", T0, &url("[a.example.com]"));
    let b = mk_policy("a", "b", T1, &url("[b.example.com]"));
    let t = time(NOW);
    let snap = snapshot(&[a.clone(), b.clone()]);
    let b_before = desired(&b, &snap, &ServiceIndex::new(), Tally::default(), &t);
    let a = written(
        a.clone(),
        desired(&a, &snap, &ServiceIndex::new(), Tally::default(), &t),
    );

    let mut edited = a.clone();
    edited.spec.cors.max_age_seconds = Some(100_000);
    edited.metadata.generation = Some(2);
    let snap2 = snapshot(&[edited.clone(), b.clone()]);
    assert!(
        snap2.route("a.example.com", "/").is_none(),
        "the invalid edit is not served"
    );
    assert!(snap2.route("b.example.com", "/").is_some());
    let s = desired(&edited, &snap2, &ServiceIndex::new(), Tally::default(), &t);
    assert_eq!(cond(&s, status::ACCEPTED).reason, "InvalidSpec");
    assert!(
        cond(&s, status::ACCEPTED)
            .message
            .contains("spec.cors.maxAgeSeconds")
    );
    assert_eq!(s.observed_generation, Some(2));
    assert_eq!(s.config_version, None);
    let b_after = desired(&b, &snap2, &ServiceIndex::new(), Tally::default(), &t);
    assert_eq!(
        cond(&b_after, status::ACCEPTED),
        cond(&b_before, status::ACCEPTED)
    );
    assert!(
        events(a.status.as_ref(), &s)
            .iter()
            .any(|e| e.warning && e.reason == "InvalidSpec")
    );
}

#[test]
fn transition_time_moves_only_when_status_changes_and_unchanged_means_no_write() {
    let p = mk_policy("a", "p", T0, &url("[api.example.com]"));
    let snap = snapshot(std::slice::from_ref(&p));
    let t0 = time(NOW);
    let s1 = desired(
        &p,
        &snap,
        &ServiceIndex::new(),
        Tally {
            connected: 2,
            current: 1,
        },
        &t0,
    );
    let p = written(p, s1.clone());
    // Same inputs later: equal, so nothing is written.
    let t1 = time("2025-06-01T12:30:00Z");
    let again = desired(
        &p,
        &snap,
        &ServiceIndex::new(),
        Tally {
            connected: 2,
            current: 1,
        },
        &t1,
    );
    assert!(same(p.status.as_ref(), &again));
    assert_eq!(again, s1, "timestamps are carried over too");
    // A third proxy: no proxy counts in the message (issue 11), so nothing to write.
    let s2 = desired(
        &p,
        &snap,
        &ServiceIndex::new(),
        Tally {
            connected: 3,
            current: 1,
        },
        &t1,
    );
    assert!(same(p.status.as_ref(), &s2));
    assert_eq!(cond(&s2, status::PROGRAMMED).last_transition_time, t0);
    // All current: False → True, time moves.
    let s3 = desired(
        &p,
        &snap,
        &ServiceIndex::new(),
        Tally {
            connected: 3,
            current: 3,
        },
        &t1,
    );
    assert_eq!(cond(&s3, status::PROGRAMMED).last_transition_time, t1);
    // Condition order and timestamps do not count as differences.
    let mut shuffled = s1.clone();
    shuffled.conditions.reverse();
    for c in &mut shuffled.conditions {
        c.last_transition_time = time("2020-01-01T00:00:00Z");
    }
    assert!(same(Some(&s1), &shuffled));
    assert!(!same(None, &s1), "no status yet: write");
    // A new generation alone is a change.
    let mut gen2 = p.clone();
    gen2.metadata.generation = Some(2);
    assert!(!same(
        p.status.as_ref(),
        &desired(
            &gen2,
            &snap,
            &ServiceIndex::new(),
            Tally {
                connected: 2,
                current: 1
            },
            &t1
        )
    ));
}

#[test]
fn events_fire_once_per_transition() {
    let p = mk_policy("a", "bad", T0, &url("['bad host']"));
    let snap = snapshot(std::slice::from_ref(&p));
    let s = desired(
        &p,
        &snap,
        &ServiceIndex::new(),
        Tally::default(),
        &time(NOW),
    );
    assert_eq!(events(None, &s).len(), 1);
    assert!(
        events(Some(&s), &s).is_empty(),
        "nothing changed, nothing to say"
    );
    let ok = mk_policy("a", "ok", T0, &url("[ok.example.com]"));
    let s = desired(
        &ok,
        &snapshot(std::slice::from_ref(&ok)),
        &ServiceIndex::new(),
        Tally::default(),
        &time(NOW),
    );
    assert!(
        events(None, &s).is_empty(),
        "a policy accepted from the start needs no event"
    );
}

#[test]
fn long_messages_are_capped_on_a_char_boundary() {
    let hosts: Vec<String> = (0..60).map(|i| format!("'bad host é {i}'")).collect();
    let p = mk_policy("a", "bad", T0, &url(&format!("[{}]", hosts.join(","))));
    let s = desired(
        &p,
        &snapshot(std::slice::from_ref(&p)),
        &ServiceIndex::new(),
        Tally::default(),
        &time(NOW),
    );
    let m = &cond(&s, status::ACCEPTED).message;
    assert!(m.len() <= 4096 && m.ends_with("..."), "{}", m.len());
}

#[test]
fn the_published_document_holds_only_accepted_policies() {
    let hub = Hub::new(std::time::Duration::from_secs(60));
    let metrics = super::metrics::Metrics::new();
    let policies: Vec<Arc<CorsPolicy>> = vec![
        Arc::new(mk_policy("a", "ok", T0, &url("[api.example.com]"))),
        Arc::new(mk_policy("a", "conflict", T1, &url("[api.example.com]"))),
        Arc::new(mk_policy("a", "invalid", T0, &url("['x y']"))),
    ];
    let (snap, published) = reconcile::build(&policies, &hub, &metrics).expect("build");
    assert!(published);
    let p = hub.current().expect("published");
    let doc = crate::config::wire::ConfigDocument::parse(&p.body).expect("json");
    let names: Vec<&str> = doc.policies.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(names, ["ok"]);
    let rebuilt = doc.into_snapshot().expect("rebuild");
    assert_eq!(rebuilt.version, snap.version);
    // Rebuilding from the same objects publishes nothing new.
    let (_, again) = reconcile::build(&policies, &hub, &metrics).expect("build");
    assert!(!again);
    assert!(
        metrics
            .encode()
            .contains("corsgate_controller_snapshot_bytes")
    );
}

/// A thousand policies: the published document round-trips to the same version, and the
/// build time and size are printed (`cargo test -- --nocapture`) for docs/controller.md.
#[test]
fn a_thousand_policies_build_publish_and_round_trip() {
    let policies: Vec<Arc<CorsPolicy>> = (0..1000)
        .map(|i| {
            Arc::new(mk_policy(
                &format!("ns{}", i % 50),
                &format!("p{i}"),
                T0,
                &format!(
                    "{{hosts: [api{i}.example.com, '*.t{i}.example.com'], paths: [/v1, /v2], upstream: {{url: 'http://u:1'}}, cors: {{allowOrigins: ['https://app{i}.example.com', 'https://www.example.org'], allowMethods: [GET, POST, PUT], allowHeaders: [content-type, x-custom], maxAgeSeconds: 600}}}}"
                ),
            ))
        })
        .collect();
    let hub = Hub::new(std::time::Duration::from_secs(60));
    let metrics = super::metrics::Metrics::new();
    let started = std::time::Instant::now();
    let (snap, _) = reconcile::build(&policies, &hub, &metrics).expect("build");
    let built = started.elapsed();
    assert_eq!(snap.policies.len(), 1000);
    let body = hub.current().expect("published").body.clone();
    let started = std::time::Instant::now();
    let rebuilt = crate::config::wire::ConfigDocument::parse(&body)
        .and_then(crate::config::wire::ConfigDocument::into_snapshot)
        .expect("rebuild");
    let proxy_side = started.elapsed();
    assert_eq!(rebuilt.version, snap.version);
    println!(
        "1000 policies: controller build+serialise {built:?}, document {} KiB, proxy parse+rebuild {proxy_side:?}",
        body.len() / 1024
    );
}

/// Issue 8 item 4: status.warnings carries `policy::warnings`' texts, and a change of
/// warnings alone is a change of status (written), while the same warnings are not.
#[test]
fn risky_settings_appear_in_status_warnings_and_count_as_a_change() {
    let risky = mk_policy(
        "a",
        "risky",
        T0,
        "{hosts: [api.example.com], upstream: {url: 'http://127.0.0.1:9000'}, cors: {allowOrigins: ['https://*.github.io'], maxAgeSeconds: 86400}}",
    );
    let snap = snapshot(std::slice::from_ref(&risky));
    let t = time(NOW);
    let s = desired(&risky, &snap, &ServiceIndex::new(), Tally::default(), &t);
    let want: Vec<String> = crate::policy::warnings(&risky.spec)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(want.len(), 2);
    assert_eq!(s.warnings, want);
    assert!(s.warnings[0].starts_with("spec.cors.allowOrigins[0]: \"https://*.github.io\" matches every site under the public suffix \"github.io\""));
    assert!(
        s.warnings[1].starts_with("spec.cors.maxAgeSeconds: 86400 s is above what browsers honour")
    );
    assert_eq!(
        cond(&s, status::ACCEPTED).reason,
        "Accepted",
        "warnings never reject"
    );

    let stored = written(risky.clone(), s.clone());
    assert!(same(stored.status.as_ref(), &s));
    let mut fixed = stored.clone();
    fixed.spec.cors.max_age_seconds = Some(600);
    let s2 = desired(
        &fixed,
        &snapshot(std::slice::from_ref(&fixed)),
        &ServiceIndex::new(),
        Tally::default(),
        &t,
    );
    assert_eq!(s2.warnings.len(), 1);
    let mut only_warnings_differ = s.clone();
    only_warnings_differ.warnings.pop();
    assert!(
        !same(stored.status.as_ref(), &only_warnings_differ),
        "a warnings change must be written"
    );

    let quiet = mk_policy("a", "quiet", T0, &url("[api.example.com]"));
    let s = desired(
        &quiet,
        &snapshot(std::slice::from_ref(&quiet)),
        &ServiceIndex::new(),
        Tally::default(),
        &t,
    );
    assert!(s.warnings.is_empty());
    assert!(
        !serde_json::to_value(&s)
            .expect("json")
            .as_object()
            .expect("object")
            .contains_key("warnings"),
        "empty warnings are omitted"
    );
}
