//! Status write amplification (issue 11 item 4), counted on a `tower-test` API server: with
//! 200 policies and 3 proxies, the first status costs one write per policy, and after that
//! proxies joining, leaving and idling cost none; editing one policy costs one write; a
//! restarted controller whose statuses are already right writes nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request, Response};
use kube::client::Body;
use kube::runtime::events::Recorder;
use serde_json::{Value, json};

use super::fixtures::store_of;
use super::metrics::Metrics;
use super::reconcile::{Context, reconcile, refresh};
use super::stream::Hub;
use crate::policy::{CorsPolicy, CorsPolicySpec, CorsPolicyStatus};

type Written = Arc<Mutex<HashMap<String, CorsPolicyStatus>>>;

/// Answers every status apply (recording it) and every Event; counts the status writes.
fn api() -> (kube::Client, Written, Arc<Mutex<usize>>) {
    let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let written: Written = Arc::default();
    let writes = Arc::new(Mutex::new(0usize));
    let (w, n) = (written.clone(), writes.clone());
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            let (method, path) = (req.method().clone(), req.uri().path().to_string());
            let bytes = req.into_body().collect_bytes().await.expect("body");
            let body: Value = serde_json::from_slice(&bytes).expect("json");
            let answer = if method == Method::PATCH && path.ends_with("/status") {
                let name = path.rsplit('/').nth(1).expect("name").to_string();
                let status: CorsPolicyStatus =
                    serde_json::from_value(body["status"].clone()).expect("status");
                w.lock().expect("lock").insert(name.clone(), status);
                *n.lock().expect("lock") += 1;
                json!({"apiVersion": "corsgate.dev/v1alpha1", "kind": "CorsPolicy",
                    "metadata": {"name": name, "namespace": "shop"},
                    "spec": {"hosts": ["x"], "upstream": {"url": "http://x"}},
                    "status": body["status"]})
            } else {
                body
            };
            send.send_response(
                Response::builder()
                    .status(200)
                    .body(Body::from(serde_json::to_vec(&answer).expect("json")))
                    .expect("response"),
            );
        }
    });
    (kube::Client::new(svc, "default"), written, writes)
}

fn mk_policy(i: usize, generation: i64, expose: &str) -> CorsPolicy {
    let spec: CorsPolicySpec = serde_saphyr::from_str(&format!(
        "{{hosts: [p{i}.example.com], upstream: {{url: 'http://127.0.0.1:9000'}}, cors: {{allowOrigins: ['https://app.example.com'], exposeHeaders: [{expose}]}}}}"
    ))
    .expect("spec");
    let mut p = CorsPolicy::new(&format!("p{i}"), spec);
    p.metadata.namespace = Some("shop".into());
    p.metadata.generation = Some(generation);
    p.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        "2024-01-01T00:00:00Z".parse().expect("time"),
    ));
    p
}

/// The policies as the watch shows them after the writes so far.
fn seen(policies: &[CorsPolicy], written: &Written) -> Vec<CorsPolicy> {
    let w = written.lock().expect("lock");
    policies
        .iter()
        .map(|p| {
            let mut p = p.clone();
            if let Some(s) = w.get(p.metadata.name.as_deref().unwrap_or_default()) {
                p.status = Some(s.clone());
            }
            p
        })
        .collect()
}

const GRACE: Duration = Duration::from_secs(5);
const TTL: Duration = Duration::from_secs(30);

fn context(client: kube::Client, hub: Arc<Hub>, policies: Vec<CorsPolicy>) -> Context {
    Context::new(
        client.clone(),
        vec![store_of(policies)],
        vec![store_of(Vec::<k8s_openapi::api::core::v1::Service>::new())],
        hub,
        Arc::new(Metrics::new()),
        Recorder::new(client, "corsgate-controller/test".into()),
        Duration::from_secs(2),
    )
}

fn ack_all(hub: &Hub, proxies: &[&str], version: Option<&str>) {
    let now = tokio::time::Instant::now();
    for p in proxies {
        hub.ack(p, version, now);
    }
}

#[tokio::test(start_paused = true)]
async fn proxies_joining_leaving_and_idling_write_no_status() {
    let (client, written, writes) = api();
    let count = || *writes.lock().expect("lock");
    let mut policies: Vec<CorsPolicy> = (0..200).map(|i| mk_policy(i, 1, "x-a")).collect();
    let hub = Arc::new(Hub::with_grace(TTL, GRACE));
    let proxies = ["edge-0", "edge-1", "edge-2"];
    ack_all(&hub, &proxies, None);
    let mut ctx = context(client.clone(), hub.clone(), policies.clone());

    // Start: published, but no proxy has loaded it yet: nothing is written for a moment.
    let o = reconcile(&ctx, true).await.expect("reconcile");
    assert_eq!((o.patched, o.deferred), (0, 200), "{o:?}");
    assert!(o.wake_at.is_some());
    let v1 = hub.version().expect("published");
    ack_all(&hub, &proxies, Some(&v1));
    let o = refresh(&ctx, true).await.expect("refresh");
    assert_eq!(o.patched, 200, "the first status, once per policy: {o:?}");
    assert_eq!(count(), 200);
    let first = written.lock().expect("lock")["p7"].clone();
    assert!(
        first.conditions.iter().any(|c| c.type_ == "Programmed"
            && c.status == "True"
            && c.message.starts_with("every connected proxy serves config")),
        "{first:?}"
    );
    ctx.policies = vec![store_of(seen(&policies, &written))];

    // Idle for 30 s (proxies keep polling): nothing.
    for _ in 0..10 {
        tokio::time::advance(Duration::from_secs(3)).await;
        ack_all(&hub, &proxies, Some(&v1));
        refresh(&ctx, true).await.expect("refresh");
    }
    assert_eq!(count(), 200, "idle writes nothing");

    // A fourth proxy joins, then loads the config: nothing.
    hub.ack("edge-3", None, tokio::time::Instant::now());
    let o = refresh(&ctx, true).await.expect("refresh");
    assert_eq!(o.patched, 0, "{o:?}");
    tokio::time::advance(Duration::from_millis(50)).await;
    ack_all(&hub, &["edge-0", "edge-1", "edge-2", "edge-3"], Some(&v1));
    let o = refresh(&ctx, true).await.expect("refresh");
    assert_eq!((o.patched, o.deferred), (0, 0), "{o:?}");
    assert_eq!(count(), 200, "a proxy joining writes nothing");

    // One proxy leaves (stops polling until it expires): nothing.
    for _ in 0..12 {
        tokio::time::advance(Duration::from_secs(3)).await;
        ack_all(&hub, &proxies, Some(&v1));
        hub.expire(tokio::time::Instant::now());
        refresh(&ctx, true).await.expect("refresh");
    }
    assert_eq!(
        hub.tally(Some(&v1), tokio::time::Instant::now()).connected,
        3
    );
    assert_eq!(count(), 200, "a proxy leaving writes nothing");

    // One policy is edited: one write, once the proxies serve it.
    policies[7] = mk_policy(7, 2, "x-b");
    ctx.policies = vec![store_of(seen(&policies, &written))];
    let o = reconcile(&ctx, true).await.expect("reconcile");
    assert_eq!((o.patched, o.deferred), (0, 1), "{o:?}");
    let v2 = hub.version().expect("published");
    assert_ne!(v1, v2);
    ack_all(&hub, &proxies, Some(&v2));
    let o = refresh(&ctx, true).await.expect("refresh");
    assert_eq!(o.patched, 1, "{o:?}");
    assert_eq!(count(), 201, "an edit writes its own policy's status only");
    let edited = written.lock().expect("lock")["p7"].clone();
    assert_ne!(edited.config_version, first.config_version);
    assert_eq!(edited.observed_generation, Some(2));
    ctx.policies = vec![store_of(seen(&policies, &written))];

    // A proxy stuck on the old config past the grace period is reported, for that policy only.
    tokio::time::advance(Duration::from_secs(3)).await;
    policies[8] = mk_policy(8, 2, "x-b");
    ctx.policies = vec![store_of(seen(&policies, &written))];
    reconcile(&ctx, true).await.expect("reconcile");
    let v3 = hub.version().expect("published");
    ack_all(&hub, &["edge-0", "edge-1"], Some(&v3));
    ack_all(&hub, &["edge-2"], Some(&v2));
    tokio::time::advance(GRACE + Duration::from_millis(10)).await;
    ack_all(&hub, &["edge-0", "edge-1"], Some(&v3));
    ack_all(&hub, &["edge-2"], Some(&v2));
    let o = refresh(&ctx, true).await.expect("refresh");
    assert_eq!(o.patched, 1, "{o:?}");
    let behind = written.lock().expect("lock")["p8"].clone();
    assert!(
        behind
            .conditions
            .iter()
            .any(|c| c.type_ == "Programmed" && c.status == "False" && c.reason == "Pending"),
        "{behind:?}"
    );
    assert_eq!(count(), 202);
    ctx.policies = vec![store_of(seen(&policies, &written))];

    // The proxy catches up: p8 is Programmed again, one write once the interval passed.
    ack_all(&hub, &proxies, Some(&v3));
    let o = refresh(&ctx, true).await.expect("refresh");
    assert_eq!((o.patched, o.deferred), (0, 1), "coalesced: {o:?}");
    tokio::time::advance(Duration::from_secs(2)).await;
    ack_all(&hub, &proxies, Some(&v3));
    let o = refresh(&ctx, true).await.expect("refresh");
    assert_eq!((o.patched, o.deferred), (1, 0), "{o:?}");
    assert_eq!(count(), 203);

    // A restarted controller whose statuses are right writes nothing.
    let before = count();
    let hub2 = Arc::new(Hub::with_grace(TTL, GRACE));
    let ctx2 = context(client, hub2.clone(), seen(&policies, &written));
    let o = reconcile(&ctx2, true).await.expect("reconcile");
    assert_eq!(
        o.patched, 0,
        "no proxy reconnected yet, within the grace: {o:?}"
    );
    assert_eq!(
        hub2.version().as_deref(),
        Some(v3.as_str()),
        "same snapshot"
    );
    ack_all(&hub2, &proxies, Some(&v3));
    let o = refresh(&ctx2, true).await.expect("refresh");
    assert_eq!((o.patched, o.deferred), (0, 0), "{o:?}");
    assert_eq!(count(), before, "a restart writes nothing");
}
