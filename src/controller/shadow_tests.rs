//! Shadow mode in status: the pure aggregation (`status::shadow`) as scenarios, then one
//! reconcile pass against a `tower-test` fake API server that checks the status.shadow the
//! leader applies, and that settled counts are not written twice.

use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::client::Body;
use kube::runtime::events::Recorder;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use serde_json::{Value, json};

use super::fixtures::store_of;
use super::metrics::Metrics;
use super::reconcile::{Context, reconcile};
use super::status::{self, same};
use super::stream::Hub;
use crate::config::shadow::{PolicyShadow, ShadowCounts, ShadowReport};
use crate::policy::{CorsPolicy, CorsPolicySpec, CorsPolicyStatus, ShadowReasons, ShadowStatus};

fn time(s: &str) -> Time {
    Time(s.parse().expect("timestamp"))
}

fn mk_policy(mode: &str, generation: i64) -> CorsPolicy {
    let spec: CorsPolicySpec = serde_saphyr::from_str(&format!(
        "{{hosts: [api.example.com], mode: {mode}, upstream: {{url: 'http://127.0.0.1:9000'}}, cors: {{allowOrigins: ['https://app.example.com']}}}}"
    ))
    .expect("spec");
    let mut p = CorsPolicy::new("api", spec);
    p.metadata.namespace = Some("shop".into());
    p.metadata.generation = Some(generation);
    p.metadata.creation_timestamp = Some(time("2024-01-01T00:00:00Z"));
    p
}

fn counts(allow: u64, by_reason: [u64; 4], sample: &[&str]) -> ShadowCounts {
    ShadowCounts {
        would_allow: allow,
        by_reason,
        sample_rejected_origins: sample.iter().map(|s| s.to_string()).collect(),
    }
}

fn stored(generation: i64, s: ShadowStatus) -> CorsPolicyStatus {
    CorsPolicyStatus {
        observed_generation: Some(generation),
        shadow: Some(s),
        ..CorsPolicyStatus::default()
    }
}

fn shadow_status(allow: i64, origin: i64, since: &str, sample: &[&str]) -> ShadowStatus {
    ShadowStatus {
        would_allow: allow,
        would_reject: origin,
        by_reason: ShadowReasons {
            origin,
            ..ShadowReasons::default()
        },
        since: since.into(),
        sample_rejected_origins: sample.iter().map(|s| s.to_string()).collect(),
    }
}

const T0: &str = "2024-05-01T10:00:00Z";
const T1: &str = "2024-05-01T11:00:00Z";

#[test]
fn enforce_has_no_shadow_status() {
    let p = mk_policy("Enforce", 1);
    let pending = counts(3, [1, 0, 0, 0], &[]);
    assert_eq!(status::shadow(&p, None, Some(&pending), &time(T0)), None);
}

#[test]
fn counting_starts_now_and_adds_reports() {
    let p = mk_policy("Shadow", 1);
    let s = status::shadow(&p, None, None, &time(T0)).expect("shadow");
    assert_eq!(
        s,
        shadow_status(0, 0, T0, &[]),
        "entering Shadow starts at zero"
    );
    let pending = counts(7, [2, 1, 3, 1], &["https://evil.example"]);
    let s = status::shadow(&p, None, Some(&pending), &time(T0)).expect("shadow");
    assert_eq!(
        (s.would_allow, s.would_reject, s.by_reason),
        (
            7,
            7,
            ShadowReasons {
                origin: 2,
                method: 1,
                header: 3,
                private_network: 1
            }
        )
    );
    assert_eq!(s.since, "2024-05-01T10:00:00Z");
    assert_eq!(s.sample_rejected_origins, ["https://evil.example"]);
}

#[test]
fn stored_counts_of_this_generation_grow_and_a_new_generation_restarts() {
    let mut p = mk_policy("Shadow", 4);
    p.status = Some(stored(
        4,
        shadow_status(
            100,
            10,
            T0,
            &["https://a", "https://b", "https://c", "https://d"],
        ),
    ));
    let pending = counts(1, [2, 0, 0, 0], &["https://b", "https://e", "https://f"]);
    let s = status::shadow(&p, None, Some(&pending), &time(T1)).expect("shadow");
    assert_eq!(
        (s.would_allow, s.would_reject, s.by_reason.origin),
        (101, 12, 12)
    );
    assert_eq!(s.since, T0, "since stays while the generation does");
    assert_eq!(
        s.sample_rejected_origins,
        [
            "https://a",
            "https://b",
            "https://c",
            "https://d",
            "https://e"
        ],
        "at most 5, distinct"
    );
    // The spec changed (generation 5): the old counts describe another policy.
    p.metadata.generation = Some(5);
    let s = status::shadow(&p, None, Some(&pending), &time(T1)).expect("shadow");
    assert_eq!(
        (s.would_allow, s.would_reject, s.since.as_str()),
        (1, 2, T1)
    );
}

#[test]
fn our_own_unseen_write_is_not_lost_to_a_stale_cache() {
    let mut p = mk_policy("Shadow", 2);
    p.status = Some(stored(2, shadow_status(10, 1, T0, &[])));
    let written = shadow_status(50, 5, T0, &[]);
    let s = status::shadow(&p, Some((Some(2), &written)), None, &time(T1)).expect("shadow");
    assert_eq!(
        (s.would_allow, s.would_reject),
        (50, 5),
        "the newer (larger) base wins"
    );
    // A write for an older generation is ignored.
    let s = status::shadow(&p, Some((Some(1), &written)), None, &time(T1)).expect("shadow");
    assert_eq!((s.would_allow, s.would_reject), (10, 1));
    // The cache caught up with another leader's later write: the stored one is newer.
    let s = status::shadow(
        &p,
        Some((Some(2), &shadow_status(3, 0, T0, &[]))),
        None,
        &time(T1),
    )
    .expect("shadow");
    assert_eq!(s.would_allow, 10);
}

#[test]
fn a_shadow_change_is_a_status_change() {
    let a = stored(1, shadow_status(1, 0, T0, &[]));
    assert!(same(Some(&a), &a.clone()));
    let b = stored(1, shadow_status(2, 0, T0, &[]));
    assert!(!same(Some(&a), &b));
}

// --- one reconcile pass against a fake API server ---

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

fn context(client: kube::Client, hub: Arc<Hub>, policies: Vec<CorsPolicy>) -> Context {
    let (services, mut w) = reflector::store::<k8s_openapi::api::core::v1::Service>();
    w.apply_watcher_event(&watcher::Event::Init);
    w.apply_watcher_event(&watcher::Event::InitDone);
    Context::new(
        client.clone(),
        vec![store_of(policies)],
        vec![services],
        hub,
        Arc::new(Metrics::new()),
        Recorder::new(client, "corsgate-controller/test".into()),
        Duration::ZERO,
    )
}

/// Answers status patches: 200 echoing the object, or `fail` with 403. Returns each patch's
/// `status.shadow`; fails on any other call.
async fn serve(handle: Handle, patches: usize, fail: bool) -> Vec<Value> {
    serve_statuses(handle, patches, fail)
        .await
        .into_iter()
        .map(|s| s["shadow"].clone())
        .collect()
}

/// `serve`, returning each patch's whole `status`.
async fn serve_statuses(mut handle: Handle, patches: usize, fail: bool) -> Vec<Value> {
    let mut seen = Vec::new();
    for _ in 0..patches {
        let (req, send) = tokio::time::timeout(Duration::from_secs(5), handle.next_request())
            .await
            .expect("a status patch in time")
            .expect("a status patch");
        assert_eq!(req.method(), Method::PATCH);
        assert_eq!(
            req.uri().path(),
            "/apis/corsgate.dev/v1alpha1/namespaces/shop/corspolicies/api/status"
        );
        let bytes = req.into_body().collect_bytes().await.expect("body");
        let body: Value = serde_json::from_slice(&bytes).expect("json");
        seen.push(body["status"].clone());
        let resp = if fail {
            Response::builder()
                .status(403)
                .body(Body::from(
                    serde_json::to_vec(&json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden", "code": 403}))
                        .expect("json"),
                ))
                .expect("response")
        } else {
            let obj = json!({"apiVersion": "corsgate.dev/v1alpha1", "kind": "CorsPolicy",
                "metadata": {"name": "api", "namespace": "shop"}, "spec": {"hosts": ["x"], "upstream": {"url": "http://x"}},
                "status": body["status"]});
            Response::builder()
                .status(200)
                .body(Body::from(serde_json::to_vec(&obj).expect("json")))
                .expect("response")
        };
        send.send_response(resp);
    }
    if let Ok(Some((req, _))) =
        tokio::time::timeout(Duration::from_millis(500), handle.next_request()).await
    {
        panic!("unexpected call: {} {}", req.method(), req.uri());
    }
    seen
}

fn report(hub: &Hub, proxy: &str, c: ShadowCounts) {
    hub.shadow_report(&ShadowReport {
        proxy: proxy.into(),
        policies: vec![PolicyShadow {
            policy: "shop/api".into(),
            counts: c,
        }],
        rejections: Vec::new(),
    });
}

#[tokio::test]
async fn the_leader_writes_summed_proxy_reports_once() {
    let hub = Arc::new(Hub::with_grace(Duration::from_secs(60), Duration::ZERO));
    report(
        &hub,
        "edge-0",
        counts(5, [2, 1, 0, 0], &["https://evil.example"]),
    );
    report(
        &hub,
        "edge-1",
        counts(3, [1, 0, 1, 0], &["https://other.example"]),
    );
    // A report for a policy that is not in Shadow mode (or gone) is dropped.
    hub.shadow_report(&ShadowReport {
        proxy: "edge-0".into(),
        policies: vec![PolicyShadow {
            policy: "shop/gone".into(),
            counts: counts(1, [0; 4], &[]),
        }],
        rejections: Vec::new(),
    });

    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(svc, "default");
    let server = tokio::spawn(serve(handle, 1, false));
    let ctx = context(client, hub.clone(), vec![mk_policy("Shadow", 1)]);
    let outcome = reconcile(&ctx, true).await.expect("reconcile");
    assert_eq!(outcome.patched, 1);
    drop(ctx);
    let shadow = server.await.expect("fake API server").remove(0);
    assert_eq!(shadow["wouldAllow"], 8, "{shadow}");
    assert_eq!(shadow["wouldReject"], 5, "{shadow}");
    assert_eq!(
        shadow["byReason"],
        json!({"origin": 3, "method": 1, "header": 1, "privateNetwork": 0})
    );
    assert_eq!(
        shadow["sampleRejectedOrigins"],
        json!(["https://evil.example", "https://other.example"])
    );
    assert!(
        shadow["since"].as_str().is_some_and(|s| s.ends_with('Z')),
        "{shadow}"
    );
    assert!(
        hub.shadow_pending().is_empty(),
        "written counts are settled"
    );

    // The next pass sees the written status (the cache caught up) and no new report:
    // nothing to write.
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(svc, "default");
    let server = tokio::spawn(serve(handle, 0, false));
    let mut p = mk_policy("Shadow", 1);
    let written: ShadowStatus = serde_json::from_value(shadow).expect("status.shadow");
    let mut again = context(client.clone(), hub.clone(), vec![]);
    // What the first pass wrote, as the watch would deliver it.
    let ctx0 = context(client, hub.clone(), vec![p.clone()]);
    let first = reconcile_status(&ctx0, &p, written);
    p.status = Some(first);
    again.policies = vec![store_of(vec![p])];
    drop(ctx0);
    let outcome = reconcile(&again, true).await.expect("reconcile");
    assert_eq!(outcome.patched, 0);
    drop(again);
    server.await.expect("fake API server");
}

/// The full status the first pass applied (conditions as `desired` computes them, with the
/// written shadow), to seed the cache of the second pass.
fn reconcile_status(ctx: &Context, p: &CorsPolicy, shadow: ShadowStatus) -> CorsPolicyStatus {
    let policies: Vec<Arc<CorsPolicy>> = ctx.policies.iter().flat_map(Store::state).collect();
    let snap =
        crate::config::Snapshot::build(policies.iter().map(|p| status::input_of(p)).collect());
    let tally = ctx
        .hub
        .tally(Some(&snap.version), tokio::time::Instant::now());
    let mut s = status::desired(
        p,
        &snap,
        &status::ServiceIndex::new(),
        tally,
        &Time(k8s_openapi::jiff::Timestamp::now()),
    );
    s.shadow = Some(shadow);
    s
}

#[tokio::test]
async fn a_failed_write_keeps_the_counts_pending() {
    let hub = Arc::new(Hub::with_grace(Duration::from_secs(60), Duration::ZERO));
    report(&hub, "edge-0", counts(2, [1, 0, 0, 0], &[]));
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(svc, "default");
    let server = tokio::spawn(serve(handle, 1, true));
    let ctx = context(client, hub.clone(), vec![mk_policy("Shadow", 1)]);
    let outcome = reconcile(&ctx, true).await;
    drop(ctx);
    server.await.expect("fake API server");
    assert!(outcome.is_err_and(|e| e.metric_label() == "status_patch"));
    let pending = hub.shadow_pending();
    assert_eq!(pending["shop/api"].would_allow, 2, "nothing was lost");
}

/// Issue 17 item 3: an Enforce policy's rejections reach `status.rejections`, many reports
/// make one write, and a write inside `--status-min-interval-ms` waits.
#[tokio::test]
async fn rejections_of_the_last_hour_are_summarised_in_status_without_a_write_per_rejection() {
    let hub = Arc::new(Hub::with_grace(Duration::from_secs(60), Duration::ZERO));
    let rejected = |origin: &str, by_reason: [u64; 4]| ShadowReport {
        proxy: "edge-0".into(),
        policies: Vec::new(),
        rejections: vec![PolicyShadow {
            policy: "shop/api".into(),
            counts: counts(0, by_reason, &[origin]),
        }],
    };
    for i in 0..100 {
        let origin = format!("https://o{}.example", i % 7);
        hub.shadow_report(&rejected(&origin, [1, u64::from(i % 2 == 0), 0, 0]));
    }
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(svc, "default");
    let server = tokio::spawn(serve_statuses(handle, 1, false));
    let (services, mut w) = reflector::store::<k8s_openapi::api::core::v1::Service>();
    w.apply_watcher_event(&watcher::Event::Init);
    w.apply_watcher_event(&watcher::Event::InitDone);
    let ctx = Context::new(
        client.clone(),
        vec![store_of(vec![mk_policy("Enforce", 1)])],
        vec![services],
        hub.clone(),
        Arc::new(Metrics::new()),
        Recorder::new(client, "corsgate-controller/test".into()),
        Duration::from_secs(3600),
    );
    let outcome = reconcile(&ctx, true).await.expect("reconcile");
    assert_eq!(outcome.patched, 1, "100 reports, one write");

    // More rejections right after: the status is stale, but the write waits its interval.
    hub.shadow_report(&rejected("https://late.example", [0, 0, 1, 0]));
    let outcome = super::reconcile::refresh(&ctx, true)
        .await
        .expect("refresh");
    assert_eq!((outcome.patched, outcome.deferred), (0, 1));
    drop(ctx);
    let status = server.await.expect("fake API server").remove(0);
    assert!(
        status.get("shadow").is_none(),
        "Enforce: no status.shadow: {status}"
    );
    let r = &status["rejections"];
    assert_eq!(r["lastHour"], 150, "{status}");
    assert_eq!(
        r["byReason"],
        json!({"origin": 100, "method": 50, "header": 0, "privateNetwork": 0})
    );
    let sample = r["sampleOrigins"].as_array().expect("sample");
    assert_eq!(sample.len(), 5, "{r}");
}
