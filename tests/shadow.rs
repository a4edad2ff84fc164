//! Shadow mode over loopback: a real controller config stream (`serve_stream` and `Hub`, as
//! in the controller) and two real `corsgate proxy --controller` processes in front of a
//! recording upstream. A Shadow policy forwards every request untouched by CORS (the
//! upstream sees the preflights, responses carry no CORS header and no Vary from CORS),
//! counts what it would have done in /metrics, and the proxies' reports add up in the
//! controller's pending counts, which the status pass writes into status.shadow
//! (src/controller/shadow_tests.rs checks that write against a fake API server).

mod support;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use corsgate::config::wire::ConfigDocument;
use corsgate::config::{PolicyId, PolicyInput, Snapshot};
use corsgate::controller::server::serve_stream;
use corsgate::controller::stream::Hub;
use support::*;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;

const APP: &str = "https://app.example.com";
const EVIL: &str = "https://evil.example";

fn spawn_proxy(controller: SocketAddr, id: &str) -> StreamProxy {
    spawn_proxy_reporting(controller, id, "1")
}

fn spawn_proxy_reporting(controller: SocketAddr, id: &str, every: &str) -> StreamProxy {
    spawn_stream_proxy(controller, id, &["--shadow-report-seconds", every])
}

fn document(upstream: &str) -> ConfigDocument {
    let spec = serde_saphyr::from_str(&format!(
        r#"{{hosts: [api.test], mode: Shadow, upstream: {{url: '{upstream}'}},
            cors: {{allowOrigins: ['{APP}'], allowMethods: [GET, POST], allowHeaders: [content-type], maxAgeSeconds: 600}},
            responseHeaders: {{set: [{{name: x-edge, value: shadow}}]}}}}"#
    ))
    .expect("spec");
    let inputs = vec![PolicyInput {
        id: PolicyId::new("shop", "api"),
        created: Some("2024-01-01T00:00:00Z".into()),
        spec,
        source: None,
    }];
    let snap = Snapshot::build(inputs.clone());
    assert!(snap.rejected.is_empty(), "{:?}", snap.rejected);
    assert!(snap.policies[0].shadow);
    ConfigDocument::of(&snap, &inputs)
}

fn h<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut v = vec![("host", "api.test")];
    v.extend_from_slice(extra);
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_forwards_untouched_and_counts_add_up_across_proxies() {
    let up = Upstream::start().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ctl = listener.local_addr().unwrap();
    let hub = Arc::new(Hub::new(Duration::from_secs(60)));
    let (stop, rx) = watch::channel(false);
    let server = tokio::spawn(serve_stream(
        listener,
        hub.clone(),
        Duration::from_secs(2),
        rx,
    ));
    hub.publish(&document(&up.url())).expect("publish");
    let proxies = [spawn_proxy(ctl, "edge-0"), spawn_proxy(ctl, "edge-1")];
    for p in &proxies {
        let deadline = Instant::now() + Duration::from_secs(20);
        while admin_get(p.admin, "/readyz").await.map(|r| r.0) != Ok(200) {
            assert!(Instant::now() < deadline, "proxy not ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // (request, what enforcement would decide)
    let preflight_ok: &[(&str, &str)] = &[
        ("origin", APP),
        ("access-control-request-method", "POST"),
        ("access-control-request-headers", "content-type"),
    ];
    let preflight_method: &[(&str, &str)] =
        &[("origin", APP), ("access-control-request-method", "DELETE")];
    let preflight_header: &[(&str, &str)] = &[
        ("origin", APP),
        ("access-control-request-method", "GET"),
        ("access-control-request-headers", "x-secret"),
    ];
    type Headers<'a> = &'a [(&'a str, &'a str)];
    let requests: Vec<(&str, &str, Headers)> = vec![
        ("OPTIONS", "/items", preflight_ok),
        ("OPTIONS", "/items", preflight_method),
        ("OPTIONS", "/items", preflight_header),
        ("GET", "/items", &[("origin", APP)]),
        ("GET", "/vary", &[("origin", EVIL)]),
        ("GET", "/cors", &[("origin", EVIL)]),
        ("GET", "/items", &[]),
    ];
    for (i, p) in proxies.iter().enumerate() {
        for (method, path, headers) in &requests {
            up.clear();
            let got = send(p.listen, method, path, &h(headers)).await;
            let what = format!("proxy {i}: {method} {path} {headers:?}");
            assert_eq!(
                got.status, 200,
                "{what}: every request reaches the upstream"
            );
            let seen = up.seen();
            assert_eq!(seen.len(), 1, "{what}: upstream saw {seen:?}");
            assert_eq!(seen[0].method.as_str(), *method, "{what}");
            for (k, v) in headers.iter() {
                assert_eq!(
                    seen[0].headers.get(*k).map(|x| x.to_str().unwrap()),
                    Some(*v),
                    "{what}: request header {k} forwarded as sent"
                );
            }
            // Untouched by CORS: only what the upstream itself sent.
            let cors = got.cors_headers();
            if *path == "/cors" {
                assert_eq!(
                    cors,
                    [
                        "access-control-allow-methods: *",
                        "access-control-allow-origin: *",
                        "access-control-expose-headers: x-secret",
                    ],
                    "{what}: the upstream's own CORS headers are neither removed nor replaced"
                );
            } else {
                assert!(cors.is_empty(), "{what}: {cors:?}");
            }
            let vary = got.vary();
            if *path == "/vary" {
                assert_eq!(vary, ["Accept-Encoding"], "{what}: Vary not changed");
            } else {
                assert!(vary.is_empty(), "{what}: {vary:?}");
            }
            assert_eq!(
                got.header("x-edge"),
                Some("shadow"),
                "{what}: responseHeaders apply"
            );
        }
    }

    // Per proxy: 2 would-allow (the good preflight, the GET from APP); would-reject:
    // 2 origin (EVIL twice), 1 method, 1 header; the request without Origin is not CORS.
    for p in &proxies {
        let (_, m) = admin_get(p.admin, "/metrics").await.unwrap();
        let n = |verdict: &str, reason: &str| {
            metric(
                &m,
                "corsgate_shadow_decisions_total",
                &[
                    "policy=\"shop/api\"",
                    &format!("verdict=\"{verdict}\""),
                    &format!("reason=\"{reason}\""),
                ],
            )
        };
        assert_eq!(n("would_allow", "none"), 2.0, "{m}");
        assert_eq!(n("would_reject", "origin"), 2.0, "{m}");
        assert_eq!(n("would_reject", "method"), 1.0, "{m}");
        assert_eq!(n("would_reject", "header"), 1.0, "{m}");
        assert_eq!(n("would_reject", "private_network"), 0.0, "{m}");
        assert_eq!(
            metric(&m, "corsgate_proxy_requests_total", &["outcome=\"shadow\""]),
            7.0,
            "{m}"
        );
        assert_eq!(
            metric(&m, "corsgate_cors_rejections_total", &[]),
            0.0,
            "nothing was rejected: {m}"
        );
        assert!(!m.contains(EVIL), "no raw origin in metrics");
    }

    // Both proxies' reports add up at the controller.
    eventually("both proxies' shadow reports", || {
        hub.shadow_pending()
            .get("shop/api")
            .is_some_and(|c| c.would_allow == 4 && c.by_reason == [4, 2, 2, 0])
    })
    .await;
    let pending = hub.shadow_pending();
    let mut sample = pending["shop/api"].sample_rejected_origins.clone();
    sample.sort();
    assert_eq!(
        sample,
        [APP, EVIL],
        "the origins of would-be rejections, each once"
    );
    let _ = stop.send(true);
    let _ = server.await;
}

#[test]
fn explain_says_a_shadow_policy_is_not_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.yaml");
    std::fs::write(
        &file,
        policy(
            "api",
            "[\"api.test\"]",
            "  mode: Shadow\n  cors: {allowOrigins: ['https://app.example.com']}",
            "http://127.0.0.1:9",
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_corsgate"))
        .arg("explain")
        .arg("--policies")
        .arg(&file)
        .args(["--host", "api.test", "--origin", EVIL])
        .output()
        .expect("run explain");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("mode       Shadow: the edge forwards every request untouched by CORS"),
        "{text}"
    );
    assert!(
        text.contains("BLOCKED"),
        "what enforcement would do: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_sends_its_last_counts_when_it_stops() {
    let up = Upstream::start().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ctl = listener.local_addr().unwrap();
    let hub = Arc::new(Hub::new(Duration::from_secs(60)));
    let (stop, rx) = watch::channel(false);
    let server = tokio::spawn(serve_stream(
        listener,
        hub.clone(),
        Duration::from_secs(2),
        rx,
    ));
    hub.publish(&document(&up.url())).expect("publish");
    // Reports every hour: only the one sent on shutdown can arrive.
    let mut p = spawn_proxy_reporting(ctl, "edge-0", "3600");
    let deadline = Instant::now() + Duration::from_secs(20);
    while admin_get(p.admin, "/readyz").await.map(|r| r.0) != Ok(200) {
        assert!(Instant::now() < deadline, "proxy not ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    send(p.listen, "GET", "/items", &h(&[("origin", EVIL)])).await;
    send(p.listen, "GET", "/items", &h(&[("origin", APP)])).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(hub.shadow_pending().is_empty(), "nothing reported yet");
    let pid = p.child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let exited = tokio::task::spawn_blocking(move || {
        let status = p.child.wait();
        (p, status)
    })
    .await
    .expect("join");
    p = exited.0;
    assert!(exited.1.is_ok_and(|s| s.success()), "graceful exit");
    let pending = hub.shadow_pending();
    let c = pending.get("shop/api").expect("the last report arrived");
    assert_eq!((c.would_allow, c.by_reason), (1, [1, 0, 0, 0]));
    assert_eq!(c.sample_rejected_origins, [EVIL]);
    drop(p);
    let _ = stop.send(true);
    let _ = server.await;
}
