//! The controller's work per event and the webhook's per admission review, at 1,000
//! policies (issue 12 item 5). `cargo bench --bench controller`.
//!
//! - `ack_before`: what every proxy acknowledgement cost before issue 11/12: rebuild the
//!   snapshot (compile every policy) and compute every status from scratch (warnings
//!   recompiled, verdict found by a linear scan).
//! - `ack_after`: what it costs now: every status from the last build's cached facts.
//! - `admission_review`: one AdmissionReview of a new policy against 1,000 existing ones.

use criterion::{Criterion, criterion_group, criterion_main};
use std::collections::HashMap;
use std::hint::black_box;

use corsgate::config::Snapshot;
use corsgate::controller::status::{self, ServiceIndex};
use corsgate::controller::stream::{Tally, policy_version};
use corsgate::policy::{CorsPolicy, CorsPolicySpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

const N: usize = 1000;

fn spec(i: usize) -> CorsPolicySpec {
    serde_saphyr::from_str(&format!(
        r#"{{hosts: ["p{i}.example.test", "*.p{i}.apps.example.test"], paths: ["/v1", "/v2"], upstream: {{url: "http://127.0.0.1:9000"}},
            cors: {{allowOrigins: ["https://app{i}.example.test", "https://*.p{i}.example.org"],
                    allowOriginPatterns: ['^https://pr-[0-9]+\.p{i}\.preview\.example\.test$'], allowMethods: [GET, POST, PUT]}}}}"#
    ))
    .expect("spec")
}

fn policies() -> Vec<CorsPolicy> {
    (0..N)
        .map(|i| {
            let mut p = CorsPolicy::new(&format!("p{i}"), spec(i));
            p.metadata.namespace = Some("bench".into());
            p.metadata.generation = Some(1);
            p.metadata.creation_timestamp =
                Some(Time("2024-01-01T00:00:00Z".parse().expect("time")));
            p
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let policies = policies();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let services = ServiceIndex::new();
    let tally = Tally {
        connected: 3,
        current: 3,
    };
    c.bench_function(
        "ack_before: rebuild + statuses from scratch, 1000 policies",
        |b| {
            b.iter(|| {
                let snap = Snapshot::build(policies.iter().map(status::input_of).collect());
                for p in &policies {
                    black_box(status::desired(p, &snap, &services, tally, &now));
                }
            })
        },
    );
    let snap = Snapshot::build(policies.iter().map(status::input_of).collect());
    let verdicts = status::verdicts(&snap);
    let facts: HashMap<String, status::Facts> = policies
        .iter()
        .map(|p| {
            let id = status::id_of(p).to_string();
            let verdict = verdicts[&id].clone();
            let f = status::Facts {
                version: Some(policy_version(&id, &p.spec)),
                warnings: status::warnings_of(p),
                tls: None,
                verdict,
            };
            (id, f)
        })
        .collect();
    c.bench_function(
        "ack_after: statuses from the last build, 1000 policies",
        |b| {
            b.iter(|| {
                for p in &policies {
                    let f = &facts[&status::id_of(p).to_string()];
                    black_box(status::desired_from(p, f, &services, tally, &now));
                }
            })
        },
    );
    let existing =
        corsgate::config::Snapshot::build(policies.iter().map(status::input_of).collect());
    let body = serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "u", "kind": {"group": "corsgate.dev", "version": "v1alpha1", "kind": "CorsPolicy"},
            "resource": {"group": "corsgate.dev", "version": "v1alpha1", "resource": "corspolicies"},
            "operation": "CREATE", "namespace": "bench", "name": "new",
            "object": {"apiVersion": "corsgate.dev/v1alpha1", "kind": "CorsPolicy",
                "metadata": {"name": "new", "namespace": "bench"}, "spec": serde_json::to_value(spec(N + 1)).expect("json")}
        }
    })
    .to_string();
    c.bench_function("admission_review: one new policy vs 1000 existing", |b| {
        b.iter(|| {
            black_box(
                corsgate::webhook::review::review(body.as_bytes(), &existing, false)
                    .expect("review"),
            )
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = bench
}
criterion_main!(benches);
