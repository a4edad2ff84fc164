//! Request sizes the edge refuses (issue 13 item 8): a request head over --max-header-bytes
//! gets 431 (HTTP/1.1 and h2c) and is never forwarded; a preflight asking for more than
//! `cors::MAX_REQUESTED_HEADERS` headers is rejected without reflecting them.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const APP: &str = "https://app.example.com";

async fn setup() -> (Upstream, Proxy) {
    let up = Upstream::start().await;
    let cors = "  cors:\n    allowOrigins: [\"https://app.example.com\"]\n    allowMethods: [\"PUT\"]\n    allowHeaders: [\"*\"]\n  debug: {rejectionReasons: true}";
    let yaml = policy("api", "[\"api.example.com\"]", cors, &up.url());
    let p = Proxy::start(&yaml, true).await;
    (up, p)
}

#[tokio::test]
async fn a_100_kib_header_is_431_over_http1_and_not_forwarded() {
    let (up, p) = setup().await;
    let big = "a".repeat(100 * 1024);
    let text = raw(
        p.addr,
        &format!("GET /x HTTP/1.1\r\nhost: api.example.com\r\nx-big: {big}\r\n\r\n"),
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 431"), "{text}");
    assert!(up.seen().is_empty(), "not forwarded");
    // Below the limit is served.
    let fine = "a".repeat(16 * 1024);
    let ok = send(
        p.addr,
        "GET",
        "/x",
        &[("host", "api.example.com"), ("x-big", &fine)],
    )
    .await;
    assert_eq!(ok.status, 200);
}

#[tokio::test]
async fn a_100_kib_header_is_431_over_h2c_and_not_forwarded() {
    let (up, p) = setup().await;
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let big = "a".repeat(100 * 1024);
    let req = http::Request::get(format!("http://{}/x", p.addr))
        .header("host", "api.example.com")
        .header("x-big", big)
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .expect("answered within 10 s")
        .expect("a response, not a reset");
    assert_eq!(resp.status(), 431);
    assert!(up.seen().is_empty(), "not forwarded");
}

#[tokio::test]
async fn a_preflight_asking_for_5000_headers_is_rejected_without_reflecting_them() {
    let (up, p) = setup().await;
    let names: Vec<String> = (0..5_000).map(|i| format!("h{i}")).collect();
    let acrh = names.join(",");
    assert!(
        acrh.len() < 32 * 1024,
        "under the size cap: this is the count cap"
    );
    let got = send(
        p.addr,
        "OPTIONS",
        "/x",
        &[
            ("host", "api.example.com"),
            ("origin", APP),
            ("access-control-request-method", "PUT"),
            ("access-control-request-headers", &acrh),
        ],
    )
    .await;
    assert_eq!(got.status, 403, "{got:?}");
    assert!(
        got.cors_headers().is_empty(),
        "nothing reflected: {:?}",
        got.cors_headers()
    );
    assert!(got.body.contains("more than 64"), "says why: {}", got.body);
    // A normal preflight on the same policy is answered.
    let ok = send(
        p.addr,
        "OPTIONS",
        "/x",
        &[
            ("host", "api.example.com"),
            ("origin", APP),
            ("access-control-request-method", "PUT"),
            ("access-control-request-headers", "x-a,x-b"),
        ],
    )
    .await;
    assert_eq!(ok.status, 204);
    assert_eq!(ok.header("access-control-allow-headers"), Some("*"));
    let (_, m) = p.admin("/metrics").await;
    assert_eq!(
        metric(&m, "corsgate_cors_rejections_total", &["reason=\"header\""]),
        1.0
    );
    assert!(up.seen().is_empty());
}

#[tokio::test]
async fn a_63_kib_request_headers_list_is_431_not_reflected() {
    let (up, p) = setup().await;
    let acrh = vec!["x-a"; 16 * 1024].join(",");
    assert!(acrh.len() > 63 * 1024);
    let got = raw(
        p.addr,
        &format!(
            "OPTIONS /x HTTP/1.1\r\nhost: api.example.com\r\norigin: {APP}\r\naccess-control-request-method: PUT\r\naccess-control-request-headers: {acrh}\r\n\r\n"
        ),
    )
    .await;
    assert!(got.starts_with("HTTP/1.1 431"), "{got}");
    assert!(
        !got.to_ascii_lowercase().contains("access-control-"),
        "{got}"
    );
    assert!(up.seen().is_empty());
}

/// Sends `req` as is and reads the answer until the proxy closes (bounded).
async fn raw(addr: std::net::SocketAddr, req: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    // The proxy may answer before it has read everything; a failed write is fine.
    let _ = s.write_all(req.as_bytes()).await;
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got)).await;
    String::from_utf8_lossy(&got).into_owned()
}
