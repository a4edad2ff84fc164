//! A fake API server on `tower-test` (as kube-rs/controller-rs's fixtures): each scenario
//! lists the calls it expects, checks each call's method, URI, headers and body, answers
//! it, and fails on a call that is missing or one too many.

use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response};
use kube::client::Body;
use kube::runtime::events::Recorder;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use serde_json::{Value, json};

use super::metrics::Metrics;
use super::reconcile::{Context, reconcile};
use super::status::{self, ServiceIndex};
use super::stream::{Hub, Tally};
use super::write::{FIELD_MANAGER, write_status};
use crate::config::Snapshot;
use crate::policy::{CorsPolicy, CorsPolicySpec};

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// One expected call.
#[derive(Debug, Clone)]
enum Call {
    /// PATCH of `ns/name`'s status; the body's Accepted reason must be this.
    StatusApply {
        ns: &'static str,
        name: &'static str,
        accepted: &'static str,
    },
    /// POST of an Event in `ns` with this type and reason.
    Event {
        ns: &'static str,
        type_: &'static str,
        reason: &'static str,
    },
}

fn mock() -> (kube::Client, Handle) {
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (kube::Client::new(svc, "default"), handle)
}

async fn body_json(req: Request<Body>) -> Value {
    let bytes = req.into_body().collect_bytes().await.expect("request body");
    serde_json::from_slice(&bytes).expect("request body is JSON")
}

fn respond(send: tower_test::mock::SendResponse<Response<Body>>, body: &Value) {
    let bytes = serde_json::to_vec(body).expect("json");
    send.send_response(
        Response::builder()
            .status(200)
            .body(Body::from(bytes))
            .expect("response"),
    );
}

/// Serves `calls` in order, then requires that no other call comes before the client is
/// dropped.
async fn serve(mut handle: Handle, calls: Vec<Call>) {
    for call in calls {
        let (req, send) = tokio::time::timeout(Duration::from_secs(5), handle.next_request())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {call:?}"))
            .unwrap_or_else(|| panic!("the client went away before {call:?}"));
        match call {
            Call::StatusApply { ns, name, accepted } => {
                assert_eq!(req.method(), Method::PATCH, "{call:?}");
                assert_eq!(
                    req.uri().path(),
                    format!(
                        "/apis/corsgate.dev/v1alpha1/namespaces/{ns}/corspolicies/{name}/status"
                    )
                );
                let q = req.uri().query().unwrap_or("");
                assert!(
                    q.contains(&format!("fieldManager={FIELD_MANAGER}")),
                    "field manager missing: {q}"
                );
                assert!(
                    q.contains("force=true"),
                    "server-side apply must force ownership of status: {q}"
                );
                assert_eq!(
                    req.headers()
                        .get(http::header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok()),
                    Some("application/apply-patch+yaml")
                );
                let body = body_json(req).await;
                let keys: Vec<&str> = body
                    .as_object()
                    .expect("object")
                    .keys()
                    .map(String::as_str)
                    .collect();
                assert_eq!(
                    keys,
                    ["apiVersion", "kind", "status"],
                    "only status is applied: {body}"
                );
                assert_eq!(body["apiVersion"], "corsgate.dev/v1alpha1");
                assert_eq!(body["kind"], "CorsPolicy");
                let conditions = body["status"]["conditions"].as_array().expect("conditions");
                let types: Vec<&str> = conditions
                    .iter()
                    .filter_map(|c| c["type"].as_str())
                    .collect();
                assert_eq!(types, ["Accepted", "ResolvedRefs", "Programmed"]);
                assert_eq!(conditions[0]["reason"], accepted, "{body}");
                for c in conditions {
                    assert!(
                        c["lastTransitionTime"].is_string() && c["observedGeneration"].is_i64(),
                        "{c}"
                    );
                }
                let obj = json!({"apiVersion": "corsgate.dev/v1alpha1", "kind": "CorsPolicy",
                    "metadata": {"name": name, "namespace": ns}, "spec": {"hosts": ["x"], "upstream": {"url": "http://x"}},
                    "status": body["status"]});
                respond(send, &obj);
            }
            Call::Event { ns, type_, reason } => {
                assert_eq!(req.method(), Method::POST, "{call:?}");
                assert_eq!(
                    req.uri().path(),
                    format!("/apis/events.k8s.io/v1/namespaces/{ns}/events")
                );
                let body = body_json(req).await;
                assert_eq!(body["type"], type_, "{body}");
                assert_eq!(body["reason"], reason, "{body}");
                assert_eq!(body["regarding"]["kind"], "CorsPolicy");
                assert!(
                    body["reportingController"]
                        .as_str()
                        .is_some_and(|r| r.starts_with("corsgate-controller")),
                    "{body}"
                );
                respond(send, &body);
            }
        }
    }
    if let Ok(Some((req, _))) =
        tokio::time::timeout(Duration::from_secs(1), handle.next_request()).await
    {
        panic!("unexpected call: {} {}", req.method(), req.uri());
    }
}

fn mk_policy(ns: &str, name: &str, created: &str, hosts: &str) -> CorsPolicy {
    let spec: CorsPolicySpec = serde_saphyr::from_str(&format!(
        "{{hosts: {hosts}, upstream: {{url: 'http://127.0.0.1:9000'}}}}"
    ))
    .expect("spec");
    let mut p = CorsPolicy::new(name, spec);
    p.metadata.namespace = Some(ns.into());
    p.metadata.generation = Some(3);
    p.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        created.parse().expect("time"),
    ));
    p
}

/// A reflector store that has listed `objects` (shared by the controller's test modules).
pub(super) fn store_of<K>(objects: Vec<K>) -> Store<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    let (reader, mut writer) = reflector::store();
    writer.apply_watcher_event(&watcher::Event::Init);
    for o in objects {
        writer.apply_watcher_event(&watcher::Event::InitApply(o));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
    reader
}

#[tokio::test]
async fn an_unchanged_status_writes_nothing() {
    let (client, handle) = mock();
    let server = tokio::spawn(serve(handle, vec![]));
    let p = mk_policy("shop", "api", "2024-01-01T00:00:00Z", "[api.example.com]");
    let snap = Snapshot::build(vec![status::input_of(&p)]);
    let now =
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now());
    let mut p = p;
    p.status = Some(status::desired(
        &p,
        &snap,
        &ServiceIndex::new(),
        Tally::default(),
        &now,
    ));
    // Computed again a little later: only timestamps could differ, and they do not count.
    let later = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        now.0 + k8s_openapi::jiff::SignedDuration::from_secs(60),
    );
    let again = status::desired(&p, &snap, &ServiceIndex::new(), Tally::default(), &later);
    assert!(!write_status(&client, &p, &again).await.expect("write"));
    drop(client);
    server.await.expect("fake API server");
}

#[tokio::test]
async fn a_changed_status_is_applied_to_the_status_subresource() {
    let (client, handle) = mock();
    let server = tokio::spawn(serve(
        handle,
        vec![Call::StatusApply {
            ns: "shop",
            name: "api",
            accepted: "Accepted",
        }],
    ));
    let p = mk_policy("shop", "api", "2024-01-01T00:00:00Z", "[api.example.com]");
    let snap = Snapshot::build(vec![status::input_of(&p)]);
    let now =
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now());
    let desired = status::desired(&p, &snap, &ServiceIndex::new(), Tally::default(), &now);
    assert!(write_status(&client, &p, &desired).await.expect("write"));
    drop(client);
    server.await.expect("fake API server");
}

fn context(client: kube::Client, policies: Vec<CorsPolicy>) -> Context {
    Context::new(
        client.clone(),
        vec![store_of(policies)],
        vec![store_of::<k8s_openapi::api::core::v1::Service>(vec![])],
        Arc::new(Hub::with_grace(Duration::from_secs(60), Duration::ZERO)),
        Arc::new(Metrics::new()),
        Recorder::new(client, "corsgate-controller/test".into()),
        Duration::ZERO,
    )
}

/// The winner's stored status is already right; the loser has none yet.
fn conflict_pair() -> Vec<CorsPolicy> {
    let old = mk_policy("shop", "old", "2024-01-01T00:00:00Z", "[api.example.com]");
    let new = mk_policy("shop", "new", "2024-02-01T00:00:00Z", "[api.example.com]");
    let snap = Snapshot::build(vec![status::input_of(&old), status::input_of(&new)]);
    let now =
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now());
    let mut old = old;
    old.status = Some(status::desired(
        &old,
        &snap,
        &ServiceIndex::new(),
        Tally::default(),
        &now,
    ));
    vec![old, new]
}

#[tokio::test]
async fn the_leader_writes_only_what_changed_and_reports_the_conflict() {
    let (client, handle) = mock();
    let server = tokio::spawn(serve(
        handle,
        vec![
            Call::StatusApply {
                ns: "shop",
                name: "new",
                accepted: "Conflicted",
            },
            Call::Event {
                ns: "shop",
                type_: "Warning",
                reason: "Conflicted",
            },
        ],
    ));
    let ctx = context(client, conflict_pair());
    let outcome = reconcile(&ctx, true).await.expect("reconcile");
    assert_eq!((outcome.patched, outcome.failed), (1, 0));
    assert!(outcome.published);
    let metrics = ctx.metrics.encode();
    assert!(
        metrics.contains("corsgate_controller_policies{condition=\"Accepted\",status=\"False\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("corsgate_controller_status_patches_total 1"),
        "{metrics}"
    );
    drop(ctx);
    server.await.expect("fake API server");
}

#[tokio::test]
async fn a_follower_builds_and_serves_but_writes_nothing() {
    let (client, handle) = mock();
    let server = tokio::spawn(serve(handle, vec![]));
    let ctx = context(client, conflict_pair());
    let outcome = reconcile(&ctx, false).await.expect("reconcile");
    assert_eq!(outcome.patched, 0);
    assert!(
        ctx.hub.current().is_some(),
        "followers serve the stream too"
    );
    drop(ctx);
    server.await.expect("fake API server");
}

#[tokio::test]
async fn a_failed_write_is_an_error_with_a_metric_label() {
    let (client, mut handle) = mock();
    let server = tokio::spawn(async move {
        let (_req, send) = handle.next_request().await.expect("a call");
        let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "forbidden", "reason": "Forbidden", "code": 403});
        send.send_response(
            Response::builder()
                .status(403)
                .body(Body::from(serde_json::to_vec(&status).expect("json")))
                .expect("response"),
        );
    });
    let p = mk_policy("shop", "api", "2024-01-01T00:00:00Z", "[api.example.com]");
    let snap = Snapshot::build(vec![status::input_of(&p)]);
    let now =
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now());
    let desired = status::desired(&p, &snap, &ServiceIndex::new(), Tally::default(), &now);
    let err = write_status(&client, &p, &desired).await.expect_err("403");
    assert_eq!(err.metric_label(), "status_patch");
    assert!(err.to_string().contains("shop/api"), "{err}");
    server.await.expect("fake API server");
}
