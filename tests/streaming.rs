//! Bodies stream through the proxy: a 1 GiB download and a 1 GiB upload pass while the
//! proxy's peak memory stays flat.

mod support;

use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use support::*;

const GIB: u64 = 1 << 30;
const CHUNK: usize = 64 * 1024;

#[tokio::test]
async fn a_gibibyte_each_way_with_flat_memory() {
    let up = Upstream::start().await;
    let proxy = Proxy::start(
        // The upstream answers an upload only after reading all of it: give a loaded
        // machine time (the timeout covers the wait for response headers).
        &policy(
            "big",
            "[\"big.example.com\"]",
            "  cors: {allowOrigins: [\"https://app.example.com\"]}",
            &up.url(),
        )
        .replace("timeoutSeconds: 2", "timeoutSeconds: 120"),
        true,
    )
    .await;
    // Warm up, then take the baseline.
    send(proxy.addr, "GET", "/", &[("host", "big.example.com")]).await;
    let before = proxy.peak_rss_kib();

    let client = Client::builder(TokioExecutor::new()).build_http::<TestBody>();
    let started = Instant::now();
    let req = http::Request::get(format!("http://{}/download/{GIB}", proxy.addr))
        .header("host", "big.example.com")
        .header("origin", "https://app.example.com")
        .body(BodyExt::boxed(StreamBody::new(futures_stream(
            0,
            Bytes::new(),
        ))))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let mut body = resp.into_body();
    let mut got: u64 = 0;
    while let Some(frame) = body.frame().await {
        got += frame.unwrap().data_ref().map_or(0, |d| d.len() as u64);
    }
    assert_eq!(got, GIB);
    let down = started.elapsed();

    let started = Instant::now();
    let chunk = Bytes::from(vec![b'u'; CHUNK]);
    let req = http::Request::post(format!("http://{}/upload", proxy.addr))
        .header("host", "big.example.com")
        .body(BodyExt::boxed(StreamBody::new(futures_stream(
            GIB / CHUNK as u64,
            chunk,
        ))))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        String::from_utf8_lossy(&text),
        GIB.to_string(),
        "the upstream received every byte"
    );
    let upload = started.elapsed();

    let after = proxy.peak_rss_kib();
    eprintln!(
        "download 1 GiB in {down:?}, upload 1 GiB in {upload:?}; proxy peak RSS {before} KiB -> {after} KiB"
    );
    assert!(
        after < before + 32 * 1024,
        "peak RSS grew from {before} KiB to {after} KiB: bodies were buffered"
    );
}
