//! Hostile requests against the real `corsgate proxy` over loopback (issue 13 items 4–7):
//! invalid, repeated or conflicting hosts, header names with underscores, request bodies a
//! GET carries or a client mis-frames, and HTTP/2 streams reset right after they are sent.

mod support;

use std::time::Duration;

use support::*;

const API: &str = "api.example.test";

fn policies(url: &str) -> String {
    policy(
        "api",
        "[\"api.example.test\"]",
        "  cors:\n    allowOrigins: [\"https://app.example.test\"]",
        url,
    )
}

async fn setup(flags: &[&str]) -> (Upstream, Proxy) {
    let up = Upstream::start().await;
    let proxy = Proxy::start_with(&policies(&up.url()), flags).await;
    (up, proxy)
}

fn status_of(raw: &str) -> u16 {
    raw.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {raw:?}"))
}

async fn raw_get(proxy: &Proxy, target: &str, host_lines: &str) -> String {
    let req = format!("GET {target} HTTP/1.1\r\n{host_lines}connection: close\r\n\r\n");
    send_raw(proxy.addr, req.as_bytes()).await
}

#[tokio::test]
async fn invalid_host_authorities_are_400_and_never_forwarded() {
    let (up, proxy) = setup(&[]).await;
    for (host, why) in [
        ("api.example.test:1@other.example.test", "userinfo"),
        ("api.example.test:abc", "the port is not a number"),
        ("api.example.test:99999", "the port is above 65535"),
        ("api..example.test", "empty label"),
    ] {
        let got = raw_get(&proxy, "/", &format!("host: {host}\r\n")).await;
        assert_eq!(status_of(&got), 400, "{host}: {got}");
        assert!(got.contains("x-corsgate-error: invalid-host"), "{got}");
        assert!(got.contains(why), "{host}: the body says why: {got}");
    }
    let got = raw_get(
        &proxy,
        "/",
        "host: api.example.test\r\nhost: other.test\r\n",
    )
    .await;
    assert_eq!(status_of(&got), 400, "two Host headers: {got}");
    assert!(got.contains("more than one Host header"), "{got}");
    let got = raw_get(&proxy, "/", "").await;
    assert_eq!(status_of(&got), 400, "HTTP/1.1 without Host: {got}");
    assert!(up.seen().is_empty(), "nothing reached the upstream");
    let (_, m) = proxy.admin("/metrics").await;
    assert_eq!(
        metric(&m, "corsgate_proxy_invalid_host_requests_total", &[]),
        6.0
    );
}

#[tokio::test]
async fn the_upstream_gets_the_normalized_host_it_was_routed_on() {
    let (up, proxy) = setup(&[]).await;
    let got = raw_get(&proxy, "/n", "host: API.Example.Test.:8080\r\n").await;
    assert_eq!(status_of(&got), 200, "{got}");
    let seen = up.seen();
    assert_eq!(seen[0].headers["host"], "api.example.test:8080");
    assert_eq!(seen[0].headers["x-forwarded-host"], "api.example.test:8080");
}

#[tokio::test]
async fn an_absolute_form_target_overrides_host() {
    let (up, proxy) = setup(&[]).await;
    // RFC 9112 §3.2.2: the target's authority wins; Host is ignored.
    let got = raw_get(
        &proxy,
        "http://api.example.test/abs",
        "host: other.example.test\r\n",
    )
    .await;
    assert_eq!(status_of(&got), 200, "{got}");
    let seen = up.seen();
    assert_eq!(seen[0].target, "/abs", "origin-form upstream");
    assert_eq!(seen[0].headers["host"], API);
    let got = raw_get(
        &proxy,
        "http://other.example.test/abs",
        "host: api.example.test\r\n",
    )
    .await;
    assert_eq!(status_of(&got), 404, "routed on the target's host: {got}");
    assert_eq!(up.seen().len(), 1);
}

#[tokio::test]
async fn http2_authority_and_a_differing_host_header_are_400() {
    let (up, proxy) = setup(&[]).await;
    let authority = format!("{API}:{}", proxy.addr.port());
    let got = send_h2(
        proxy.addr,
        &authority,
        "GET",
        "/",
        &[("host", "other.example.test")],
    )
    .await;
    assert_eq!(got.status, 400, "{got:?}");
    assert_eq!(got.header("x-corsgate-error"), Some("invalid-host"));
    assert!(got.body.contains("name different hosts"), "{}", got.body);
    let got = send_h2(proxy.addr, &authority, "GET", "/", &[("host", &authority)]).await;
    assert_eq!(got.status, 200, "the same host twice is fine: {got:?}");
    let got = send_h2(proxy.addr, "api.example.test:1@evil.test", "GET", "/", &[]).await;
    assert_eq!(got.status, 400, "userinfo in :authority: {got:?}");
    assert_eq!(up.seen().len(), 1);
}

#[tokio::test]
async fn header_names_with_underscores_are_dropped_unless_allowed() {
    let spoof = [
        ("host", API),
        ("x_forwarded_for", "6.6.6.6"),
        ("x_real_ip", "6.6.6.6"),
        ("x-real-ip", "1.2.3.4"),
    ];
    let (up, proxy) = setup(&[]).await;
    assert_eq!(send(proxy.addr, "GET", "/u", &spoof).await.status, 200);
    let h = &up.seen()[0].headers;
    assert!(
        h.get("x_forwarded_for").is_none() && h.get("x_real_ip").is_none(),
        "{h:?}"
    );
    assert_eq!(h["x-real-ip"], "1.2.3.4", "dashes are untouched");
    assert_eq!(h["x-forwarded-for"], "127.0.0.1", "only the edge's value");

    let (up, proxy) = setup(&["--allow-underscores-in-headers"]).await;
    assert_eq!(send(proxy.addr, "GET", "/u", &spoof).await.status, 200);
    let h = &up.seen()[0].headers;
    assert_eq!(h["x_forwarded_for"], "6.6.6.6", "kept with the flag: {h:?}");
    assert_eq!(h["x_real_ip"], "6.6.6.6");
}

#[tokio::test]
async fn a_get_with_a_chunked_body_reaches_the_upstream_whole() {
    let (up, proxy) = setup(&[]).await;
    let req = format!(
        "GET /echo HTTP/1.1\r\nhost: {API}\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    );
    let got = send_raw(proxy.addr, req.as_bytes()).await;
    assert_eq!(status_of(&got), 200, "{got}");
    assert!(
        got.ends_with("hello world"),
        "the upstream echoed the body: {got}"
    );
    let req = format!(
        "GET /echo HTTP/1.1\r\nhost: {API}\r\ncontent-length: 4\r\nconnection: close\r\n\r\nbody"
    );
    let got = send_raw(proxy.addr, req.as_bytes()).await;
    assert!(got.ends_with("body"), "with Content-Length too: {got}");
    assert_eq!(up.seen().len(), 2);
}

#[tokio::test]
async fn a_malformed_chunked_body_is_the_clients_400_not_an_upstream_error() {
    let (_up, proxy) = setup(&[]).await;
    let req = format!(
        "POST /echo HTTP/1.1\r\nhost: {API}\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n5\r\nhello\r\nzz\r\nnot a chunk\r\n0\r\n\r\n"
    );
    let got = send_raw(proxy.addr, req.as_bytes()).await;
    assert_eq!(status_of(&got), 400, "{got}");
    assert!(got.contains("x-corsgate-error: client-body"), "{got}");
    let (_, m) = proxy.admin("/metrics").await;
    let count = |outcome: &str| {
        metric(
            &m,
            "corsgate_proxy_requests_total",
            &[&format!("outcome=\"{outcome}\"")],
        )
    };
    assert_eq!(count("client_error"), 1.0, "{m}");
    assert_eq!(count("upstream_error"), 0.0, "{m}");
}

async fn h2_connect(proxy: &Proxy) -> h2::client::SendRequest<bytes::Bytes> {
    let tcp = tokio::net::TcpStream::connect(proxy.addr)
        .await
        .expect("connect");
    let (client, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
    tokio::spawn(conn);
    client
}

/// Opens `streams` HTTP/2 streams in rounds of `round`, each reset 10 ms after it was sent,
/// to an upstream path that takes 100 ms: what issue 13 item 6 measured. A connection the
/// proxy closes (h2's own defence: GOAWAY after 20 resets of streams not yet accepted) is
/// opened again, as an attacker would. Returns the client connections used.
async fn rapid_reset(proxy: &Proxy, streams: usize, round: usize) -> usize {
    let mut connections = 1;
    let mut client = h2_connect(proxy).await;
    let uri = format!("http://{API}:{}/slow/100", proxy.addr.port());
    for _ in 0..streams / round {
        let mut open = Vec::with_capacity(round);
        for _ in 0..round {
            let req = http::Request::get(&uri).body(()).expect("request");
            let sent = match client.clone().ready().await {
                Ok(mut c) => c.send_request(req, true).map(|(_, s)| s),
                Err(e) => Err(e),
            };
            match sent {
                Ok(s) => open.push(s),
                Err(_) => {
                    client = h2_connect(proxy).await;
                    connections += 1;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        for mut s in open {
            s.send_reset(h2::Reason::CANCEL);
        }
    }
    connections
}

#[tokio::test]
async fn reset_http2_streams_neither_discard_upstream_connections_nor_pile_up_work() {
    // One worker: idle upstream connections are kept per worker (tests/workers.rs), and
    // this counts what one pool does with cancelled exchanges.
    let (up, proxy) = setup(&["--workers", "1"]).await;
    const STREAMS: usize = 4000;
    // The default --max-upstream-requests-per-connection, and so the h2 stream limit.
    const LIMIT: usize = 100;
    let clients = rapid_reset(&proxy, STREAMS, LIMIT).await;
    // The proxy still serves, on the connections it kept.
    let got = send(proxy.addr, "GET", "/after", &[("host", API)]).await;
    assert_eq!(got.status, 200);
    let (conns, requests) = (up.connections(), up.seen().len());
    println!(
        "{STREAMS} reset streams on {clients} client connections: {requests} upstream requests on {conns} upstream connections"
    );
    // Before the fix every cancel discarded its connection (about 850 connections for
    // 230 to 400 requests here); now connections go back to the pool.
    assert!(
        conns <= STREAMS / 10,
        "{conns} upstream connections for {STREAMS} reset streams"
    );
    assert!(
        conns <= requests,
        "every upstream connection carried a request ({conns} connections, {requests} requests)"
    );
    assert!(requests <= STREAMS / 2, "{requests} upstream requests");
}

#[tokio::test]
async fn a_cancelled_request_gives_its_upstream_connection_back() {
    // One worker: with several, the next connection may land on another worker, whose own
    // pool does not hold this upstream connection.
    let (up, proxy) = setup(&["--workers", "1"]).await;
    rapid_reset(&proxy, 1, 1).await;
    // The cancelled exchange finishes in the background (100 ms); the next request reuses it.
    eventually("the cancelled request reached the upstream", || {
        up.seen().len() == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let got = send(proxy.addr, "GET", "/next", &[("host", API)]).await;
    assert_eq!(got.status, 200);
    assert_eq!(
        up.connections(),
        1,
        "one upstream connection for both requests"
    );
}
