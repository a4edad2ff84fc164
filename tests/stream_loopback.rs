//! One controller config stream (the real server and `Hub`, fed documents as the reconcile
//! loop feeds them) and three real `corsgate proxy --controller` processes over 127.0.0.1:
//! not ready before the first snapshot, acknowledgements, a new version reaching all of
//! them, a controller restart during which they keep serving, and a proxy that goes away
//! dropping out of the count.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use corsgate::config::wire::ConfigDocument;
use corsgate::config::{PolicyId, PolicyInput, Snapshot};
use corsgate::controller::server::serve_stream;
use corsgate::controller::stream::{Hub, Tally};
use support::{StreamProxy, eventually, spawn_stream_proxy};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;

fn free_port() -> SocketAddr {
    format!("127.0.0.1:{}", support::free_port())
        .parse()
        .unwrap()
}

fn spawn_proxy(controller: SocketAddr, id: &str) -> StreamProxy {
    spawn_stream_proxy(controller, id, &[])
}

/// A one-line HTTP/1.1 client: returns (status, headers lower-cased, body).
async fn get(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Option<(u16, String, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
        .await
        .ok()?
        .ok()?;
    let mut req = format!("GET {path} HTTP/1.1\r\nhost: api.test\r\nconnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, head.to_ascii_lowercase(), body.to_string()))
}

/// A tiny upstream answering 200 "upstream" to everything.
async fn upstream() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\nconnection: close\r\n\r\nupstream")
                    .await;
            });
        }
    });
    addr
}

fn document(upstream: SocketAddr, origin: &str) -> ConfigDocument {
    let spec = serde_saphyr::from_str(&format!(
        "{{hosts: [api.test], upstream: {{url: 'http://{upstream}'}}, cors: {{allowOrigins: ['{origin}']}}}}"
    ))
    .expect("spec");
    let inputs = vec![PolicyInput {
        id: PolicyId::new("default", "api"),
        created: Some("2024-01-01T00:00:00Z".into()),
        spec,
        source: None,
    }];
    let snap = Snapshot::build(inputs.clone());
    assert!(snap.rejected.is_empty());
    ConfigDocument::of(&snap, &inputs)
}

struct Controller {
    hub: Arc<Hub>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

async fn start_controller(addr: SocketAddr, ttl: Duration) -> Controller {
    let mut listener = None;
    for _ in 0..50 {
        match TcpListener::bind(addr).await {
            Ok(l) => {
                listener = Some(l);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let listener = listener.expect("rebind the controller's port");
    let hub = Arc::new(Hub::new(ttl));
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(serve_stream(
        listener,
        hub.clone(),
        Duration::from_secs(2),
        rx,
    ));
    Controller { hub, stop, task }
}

async fn allow_origin(p: &StreamProxy, origin: &str) -> Option<String> {
    let (status, head, body) = get(p.listen, "/x", &[("origin", origin)]).await?;
    assert_eq!((status, body.as_str()), (200, "upstream"));
    head.lines().find_map(|l| {
        l.strip_prefix("access-control-allow-origin: ")
            .map(str::to_string)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_proxies_follow_one_controller_through_a_restart() {
    let up = upstream().await;
    let ctl_addr = free_port();
    let ctl = start_controller(ctl_addr, Duration::from_secs(60)).await;
    let proxies: Vec<StreamProxy> = (0..3)
        .map(|i| spawn_proxy(ctl_addr, &format!("edge-{i}")))
        .collect();

    // Before the first snapshot: connected, not ready, nothing served.
    eventually("three proxies polling", || {
        ctl.hub.tally(None, Instant::now()).connected == 3
    })
    .await;
    for p in &proxies {
        let (status, _, _) = get(p.admin, "/readyz", &[]).await.expect("readyz");
        assert_eq!(
            status, 503,
            "a proxy is not ready before its first snapshot"
        );
    }

    // v1 reaches every proxy, and each acknowledges it.
    let v1 = document(up, "https://one.example");
    ctl.hub.publish(&v1).expect("publish");
    eventually("all proxies at v1", || {
        ctl.hub.tally(Some(&v1.version), Instant::now())
            == Tally {
                connected: 3,
                current: 3,
            }
    })
    .await;
    for p in &proxies {
        assert_eq!(get(p.admin, "/readyz", &[]).await.map(|r| r.0), Some(200));
        assert_eq!(
            allow_origin(p, "https://one.example").await.as_deref(),
            Some("https://one.example")
        );
    }

    // v2 wakes the parked long polls.
    let v2 = document(up, "https://two.example");
    assert_ne!(v1.version, v2.version);
    let published = Instant::now();
    ctl.hub.publish(&v2).expect("publish");
    eventually("all proxies at v2", || {
        ctl.hub.tally(Some(&v2.version), Instant::now())
            == Tally {
                connected: 3,
                current: 3,
            }
    })
    .await;
    println!("v2 acknowledged by 3 proxies in {:?}", published.elapsed());
    for p in &proxies {
        assert_eq!(
            allow_origin(p, "https://two.example").await.as_deref(),
            Some("https://two.example")
        );
        assert_eq!(allow_origin(p, "https://one.example").await, None);
    }

    // The controller goes away: proxies keep serving v2 and stay ready.
    let _ = ctl.stop.send(true);
    let _ = ctl.task.await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for p in &proxies {
        assert_eq!(
            get(p.admin, "/readyz", &[]).await.map(|r| r.0),
            Some(200),
            "ready while the controller is away"
        );
        assert_eq!(
            allow_origin(p, "https://two.example").await.as_deref(),
            Some("https://two.example")
        );
    }

    // A new controller on the same address with the same policies: every proxy reconnects
    // (backoff) and acknowledges the version it already serves.
    let ctl2 = start_controller(ctl_addr, Duration::from_secs(3)).await;
    ctl2.hub.publish(&v2).expect("publish");
    eventually("all proxies back at v2", || {
        ctl2.hub.tally(Some(&v2.version), Instant::now())
            == Tally {
                connected: 3,
                current: 3,
            }
    })
    .await;

    // One proxy stops: after the TTL it no longer counts.
    let mut proxies = proxies;
    drop(proxies.pop());
    tokio::time::sleep(Duration::from_secs(4)).await;
    ctl2.hub.expire(Instant::now());
    eventually("the stopped proxy drops out", || {
        ctl2.hub.tally(Some(&v2.version), Instant::now())
            == Tally {
                connected: 2,
                current: 2,
            }
    })
    .await;
    let _ = ctl2.stop.send(true);
}

#[tokio::test]
async fn the_stream_answers_304_when_nothing_changes_and_400_without_a_proxy_name() {
    let ctl_addr = free_port();
    let ctl = start_controller(ctl_addr, Duration::from_secs(60)).await;
    let up = upstream().await;
    let doc = document(up, "https://one.example");
    // Before any snapshot: 503 after the wait.
    let (status, _, _) = get(ctl_addr, "/v1/config?version=&proxy=t", &[])
        .await
        .expect("poll");
    assert_eq!(status, 503);
    ctl.hub.publish(&doc).expect("publish");
    let (status, head, body) = get(ctl_addr, "/v1/config?version=&proxy=t", &[])
        .await
        .expect("poll");
    assert_eq!(status, 200);
    assert!(head.contains(&format!("x-corsgate-config-version: {}", doc.version)));
    assert_eq!(ConfigDocument::parse(body.as_bytes()).expect("json"), doc);
    let started = Instant::now();
    let (status, _, _) = get(
        ctl_addr,
        &format!("/v1/config?version={}&proxy=t", doc.version),
        &[],
    )
    .await
    .expect("poll");
    assert_eq!(status, 304);
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "a current proxy waits for the long poll"
    );
    assert_eq!(
        get(ctl_addr, "/v1/config?version=", &[]).await.map(|r| r.0),
        Some(400)
    );
    assert_eq!(get(ctl_addr, "/nope", &[]).await.map(|r| r.0), Some(404));
    let _ = ctl.stop.send(true);
}

/// Issue 11's propagation figure where no cluster is at hand: a document published on the
/// stream until every one of 3 proxies serves it, over 20 versions. Printed, not asserted
/// (performance is for benchmarks); the cluster suite asserts p99 < 1 s from `kubectl apply`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn propagation_to_three_proxies_is_measured() {
    let up = upstream().await;
    let ctl_addr = free_port();
    let ctl = start_controller(ctl_addr, Duration::from_secs(60)).await;
    let proxies: Vec<StreamProxy> = (0..3)
        .map(|i| spawn_proxy(ctl_addr, &format!("edge-{i}")))
        .collect();
    let v0 = document(up, "https://v0.example");
    ctl.hub.publish(&v0).expect("publish");
    eventually("all proxies at v0", || {
        ctl.hub.tally(Some(&v0.version), Instant::now()).current == 3
    })
    .await;
    let mut times = Vec::new();
    for n in 1..=20 {
        let origin = format!("https://v{n}.example");
        let doc = document(up, &origin);
        let published = Instant::now();
        ctl.hub.publish(&doc).expect("publish");
        let deadline = published + Duration::from_secs(10);
        'wait: loop {
            let mut all = true;
            for p in &proxies {
                if allow_origin(p, &origin).await.as_deref() != Some(origin.as_str()) {
                    all = false;
                    break;
                }
            }
            if all {
                break 'wait;
            }
            assert!(Instant::now() < deadline, "version {n} not served in 10 s");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        times.push(published.elapsed());
    }
    times.sort();
    println!(
        "propagation over the loopback stream, 20 versions to 3 proxies: p50 {:?}, p99 {:?}",
        times[times.len() / 2],
        times[times.len() - 1]
    );
    let _ = ctl.stop.send(true);
}
