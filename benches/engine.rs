//! The engine's per-request work, alone: classify + decide + write headers, and routing.
//! `cargo bench` (criterion). The proxy end to end is measured by bench/compare.sh.

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, Method};
use std::hint::black_box;

use corsgate::config::certs::Secrets;
use corsgate::config::{PolicyId, PolicyInput, Snapshot};
use corsgate::cors;

// The allocator the binary serves with, so allocation-heavy work (a snapshot build) costs
// here what it costs in the proxy.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const POLICY: &str = r#"
hosts: ["api.example.test", "*.apps.example.test"]
paths: ["/v1"]
upstream: {url: "http://127.0.0.1:9000"}
cors:
  allowOrigins: ["https://app.example.test", "https://*.example.org"]
  allowOriginPatterns: ['^https://pr-[0-9]+\.preview\.example\.test$']
  allowMethods: ["GET", "POST", "PUT", "DELETE"]
  allowHeaders: ["content-type", "x-custom"]
  exposeHeaders: ["x-request-id"]
  allowCredentials: true
  maxAgeSeconds: 600
"#;

/// Policy 0 (`api.example.test`) and `n` more, as build inputs.
fn inputs(n: usize) -> Vec<PolicyInput> {
    let spec: corsgate::policy::CorsPolicySpec = serde_saphyr::from_str(POLICY).unwrap();
    let mut inputs = vec![PolicyInput {
        id: PolicyId::new("bench", "api"),
        created: None,
        spec: spec.clone(),
        source: None,
    }];
    for i in 0..n {
        let mut s = spec.clone();
        // Scenario D's mix (bench/many_policies.py): exact hosts, wildcard hosts, and hosts
        // shared by several policies through their path prefixes.
        if i % 10 == 0 {
            s.hosts = vec![format!("*.t{i}.example.test")];
        } else if i % 3 == 0 {
            s.hosts = vec![format!("shared{}.example.test", i / 30)];
            s.paths = vec![format!("/svc{i}"), format!("/api/v{}/s{i}", i % 7)];
        } else {
            s.hosts = vec![format!("api{i}.example.test")];
        }
        // Each its own regex, as real tenants have: one shared pattern would be parsed once
        // per policy all the same, but would flatter any cache keyed by pattern.
        s.cors.allow_origin_patterns = vec![format!(r"^https://pr-[0-9]+\.r{i}\.example\.test$")];
        inputs.push(PolicyInput {
            id: PolicyId::new("bench", format!("p{i}")),
            created: None,
            spec: s,
            source: None,
        });
    }
    inputs
}

fn snapshot(n: usize) -> Snapshot {
    Snapshot::build(inputs(n))
}

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(*k, HeaderValue::from_static(v));
    }
    h
}

fn bench(c: &mut Criterion) {
    let snap = snapshot(1000);
    let (_, policy) = snap.route("api.example.test", "/v1/items").unwrap();
    let preflight = headers(&[
        ("origin", "https://app.example.test"),
        ("access-control-request-method", "PUT"),
        ("access-control-request-headers", "content-type,x-custom"),
    ]);
    let actual = headers(&[("origin", "https://app.example.test")]);
    let wildcard = headers(&[("origin", "https://a.b.example.org")]);
    let pattern = headers(&[("origin", "https://pr-1234.preview.example.test")]);
    let evil = headers(&[("origin", "https://app.example.test.evil.net")]);

    c.bench_function("preflight allowed: classify + decide + write", |b| {
        b.iter(|| {
            let d = policy
                .cors
                .decide(cors::classify(&Method::OPTIONS, black_box(&preflight)));
            let mut out = HeaderMap::with_capacity(8);
            d.write_preflight(&mut out);
            black_box(out)
        })
    });
    for (name, h) in [
        ("exact", &actual),
        ("wildcard", &wildcard),
        ("regex", &pattern),
        ("rejected", &evil),
    ] {
        c.bench_function(&format!("actual {name}: classify + decide + apply"), |b| {
            b.iter(|| {
                let d = policy
                    .cors
                    .decide(cors::classify(&Method::GET, black_box(h)));
                let mut out = HeaderMap::with_capacity(8);
                d.apply_to_response(&mut out);
                black_box(out)
            })
        });
    }
    c.bench_function("route among 1001 policies", |b| {
        b.iter(|| black_box(snap.route(black_box("x.apps.example.test"), black_box("/v1/items"))))
    });
}

/// Scenario D (issue 14): 10,000 policies, built and routed.
fn scenario_d(c: &mut Criterion) {
    // The build alone: the inputs are made, and the snapshot dropped, outside the timing.
    c.bench_function("snapshot build: 10,001 policies (parse done)", |b| {
        b.iter_batched(|| inputs(10_000), Snapshot::build, BatchSize::PerIteration)
    });
    let snap = snapshot(10_000);
    // A reload: the same policies but one, built onto the snapshot serving.
    let changed = || {
        let mut inputs = inputs(10_000);
        inputs[5_000].spec.cors.max_age_seconds = Some(5);
        inputs
    };
    c.bench_function("snapshot rebuild: 10,001 policies, one changed", |b| {
        b.iter_batched(
            changed,
            |inputs| Snapshot::build_reusing(inputs, &Secrets::default(), Some(&snap)),
            BatchSize::PerIteration,
        )
    });
    c.bench_function("route among 10,001 policies: exact host", |b| {
        b.iter(|| black_box(snap.route(black_box("api.example.test"), black_box("/v1/items"))))
    });
    c.bench_function("route among 10,001 policies: shared host, path", |b| {
        b.iter(|| {
            black_box(snap.route(
                black_box("shared300.example.test"),
                black_box("/api/v1/s9003/x"),
            ))
        })
    });
}

criterion_group!(benches, bench);
criterion_group! {
    name = many;
    config = Criterion::default().sample_size(10);
    targets = scenario_d
}
criterion_main!(benches, many);
