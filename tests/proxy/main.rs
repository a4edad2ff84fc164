//! Black-box tests of `corsgate proxy` over loopback: the real binary, a real upstream, and
//! for each semantics line of DESIGN.md the status, the exact headers, and whether the
//! upstream saw the request.

mod lifecycle;
#[path = "../support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::*;

const APP: &str = "https://app.example.com";

fn base_policy(url: &str) -> String {
    let main = policy(
        "api",
        "[\"api.example.com\"]",
        r#"  cors:
    allowOrigins: ["https://app.example.com", "https://*.example.org"]
    allowOriginPatterns: ['^https://pr-[0-9]+\.preview\.example\.com$']
    allowMethods: ["GET", "POST", "PUT"]
    allowHeaders: ["content-type", "x-custom"]
    exposeHeaders: ["x-request-id"]
    maxAgeSeconds: 600
    rules:
      - origins: ["https://admin.example.com"]
        allowMethods: ["GET", "DELETE"]
        allowHeaders: ["authorization"]
        allowCredentials: true
  responseHeaders:
    set: [{name: Strict-Transport-Security, value: "max-age=63072000"}]
    remove: ["x-internal"]"#,
        url,
    );
    let strict = policy(
        "strict",
        "[\"strict.example.com\"]",
        r#"  cors:
    allowOrigins: ["https://app.example.com"]
    disallowedOrigin: Reject
    unmatchedPreflight: Forward
    preflight: Forward
    originOverride: false
    allowPrivateNetwork: true"#,
        url,
    );
    let open = policy(
        "open",
        "[\"*.open.example.com\"]",
        r#"  paths: ["/v1"]
  cors:
    allowOrigins: ["*"]"#,
        url,
    );
    format!("{main}---\n{strict}---\n{open}")
}

async fn setup() -> (Upstream, Proxy) {
    let up = Upstream::start().await;
    let proxy = Proxy::start(&base_policy(&up.url()), true).await;
    (up, proxy)
}

fn h<'a>(host: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut v = vec![("host", host)];
    v.extend_from_slice(extra);
    v
}

#[tokio::test]
async fn preflight_is_answered_at_the_edge_and_never_reaches_the_upstream() {
    let (up, proxy) = setup().await;
    let got = send(
        proxy.addr,
        "OPTIONS",
        "/items",
        &h(
            "api.example.com",
            &[
                ("origin", APP),
                ("access-control-request-method", "PUT"),
                ("access-control-request-headers", "content-type,x-custom"),
            ],
        ),
    )
    .await;
    assert_eq!(got.status, 204);
    assert_eq!(
        got.cors_headers(),
        [
            "access-control-allow-headers: content-type,x-custom",
            "access-control-allow-methods: GET, POST, PUT",
            "access-control-allow-origin: https://app.example.com",
            // Gateway API's conformance expects the expose list on preflights (issue 16).
            "access-control-expose-headers: x-request-id",
            "access-control-max-age: 600",
        ]
    );
    assert_eq!(
        got.vary(),
        ["Origin, Access-Control-Request-Method, Access-Control-Request-Headers"]
    );
    assert_eq!(
        got.header("strict-transport-security"),
        Some("max-age=63072000"),
        "responseHeaders apply to preflights"
    );
    assert!(up.seen().is_empty(), "upstream saw {:?}", up.seen());
}

#[tokio::test]
async fn allowed_actual_request_is_forwarded_with_cors_and_forwarding_headers() {
    let (up, proxy) = setup().await;
    let got = send(
        proxy.addr,
        "GET",
        "/items?q=1",
        &h(
            "api.example.com",
            &[
                ("origin", APP),
                ("connection", "keep-alive, x-hop-req"),
                ("x-hop-req", "secret"),
                ("proxy-authorization", "Basic Zm9vOmJhcg=="),
                ("x-forwarded-for", "203.0.113.9"),
            ],
        ),
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body, "ok");
    assert_eq!(
        got.cors_headers(),
        [
            "access-control-allow-origin: https://app.example.com",
            "access-control-expose-headers: x-request-id"
        ]
    );
    assert_eq!(got.vary(), ["Origin"]);
    assert_eq!(got.header("x-internal"), None, "responseHeaders.remove");
    assert_eq!(
        got.header("strict-transport-security"),
        Some("max-age=63072000")
    );
    let seen = up.seen();
    assert_eq!(seen.len(), 1);
    let s = &seen[0];
    assert_eq!(
        s.target, "/items?q=1",
        "origin-form request target, query kept"
    );
    assert_eq!(s.headers["host"], "api.example.com", "Host is preserved");
    assert_eq!(s.headers["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(s.headers["x-forwarded-proto"], "http");
    assert_eq!(s.headers["x-forwarded-host"], "api.example.com");
    for hop in ["x-hop-req", "proxy-authorization", "keep-alive"] {
        assert!(!s.headers.contains_key(hop), "{hop} must not be forwarded");
    }
    assert_eq!(s.headers["origin"], APP, "Origin reaches the upstream");
}

#[tokio::test]
async fn hop_by_hop_response_headers_are_stripped() {
    let (_up, proxy) = setup().await;
    let got = send(
        proxy.addr,
        "GET",
        "/hop",
        &h("api.example.com", &[("origin", APP)]),
    )
    .await;
    assert_eq!(got.status, 200);
    assert!(got.header("x-hop-resp").is_none() && got.header("keep-alive").is_none());
}

#[tokio::test]
async fn origins_exact_wildcard_pattern_rule_and_attacks() {
    let (_up, proxy) = setup().await;
    let cases = [
        ("https://app.example.com", Some("https://app.example.com")),
        ("https://APP.example.com", Some("https://APP.example.com")),
        ("https://a.example.org", Some("https://a.example.org")),
        (
            "https://pr-42.preview.example.com",
            Some("https://pr-42.preview.example.com"),
        ),
        (
            "https://admin.example.com",
            Some("https://admin.example.com"),
        ),
        ("https://example.org", None),
        ("https://app.example.com.evil.net", None),
        ("https://evilapp.example.com", None),
        ("http://app.example.com", None),
        ("https://app.example.com:8443", None),
        ("https://pr-42.preview.example.com.evil.net", None),
        ("null", None),
        ("https://user@app.example.com", None),
    ];
    for (origin, want) in cases {
        let got = send(
            proxy.addr,
            "GET",
            "/",
            &h("api.example.com", &[("origin", origin)]),
        )
        .await;
        assert_eq!(got.status, 200, "{origin}");
        assert_eq!(got.header("access-control-allow-origin"), want, "{origin}");
        assert_eq!(got.vary(), ["Origin"], "{origin}");
        if want.is_none() {
            assert!(
                got.cors_headers().is_empty(),
                "{origin}: {:?}",
                got.cors_headers()
            );
        }
    }
    let admin = send(
        proxy.addr,
        "GET",
        "/",
        &h(
            "api.example.com",
            &[("origin", "https://admin.example.com")],
        ),
    )
    .await;
    assert_eq!(
        admin.header("access-control-allow-credentials"),
        Some("true"),
        "rule grants credentials"
    );
}

#[tokio::test]
async fn several_origin_headers_are_rejected() {
    let (_up, proxy) = setup().await;
    let got = send(
        proxy.addr,
        "GET",
        "/",
        &h("api.example.com", &[("origin", APP), ("origin", APP)]),
    )
    .await;
    assert!(got.cors_headers().is_empty());
}

#[tokio::test]
async fn rejected_preflights_get_403_without_cors_headers() {
    let (up, proxy) = setup().await;
    for (origin, method, headers, reason) in [
        ("https://evil.example", "PUT", "", "origin"),
        (APP, "DELETE", "", "method"),
        (APP, "PUT", "x-other", "header"),
        ("https://admin.example.com", "GET", "x-custom", "header"),
    ] {
        let mut hs = h(
            "api.example.com",
            &[
                ("origin", origin),
                ("access-control-request-method", method),
            ],
        );
        if !headers.is_empty() {
            hs.push(("access-control-request-headers", headers));
        }
        let got = send(proxy.addr, "OPTIONS", "/x", &hs).await;
        assert_eq!(got.status, 403, "{origin} {method} {headers}");
        assert!(got.cors_headers().is_empty(), "{:?}", got.cors_headers());
        assert_eq!(got.vary(), ["Origin"]);
        assert_eq!(got.header("x-corsgate-error"), Some("cors-rejected"));
        assert_eq!(
            got.header("strict-transport-security"),
            Some("max-age=63072000")
        );
        let (_, metrics) = proxy.admin("/metrics").await;
        assert!(
            metric(
                &metrics,
                "corsgate_cors_rejections_total",
                &["policy=\"test/api\"", &format!("reason=\"{reason}\"")]
            ) >= 1.0,
            "{metrics}"
        );
    }
    assert!(up.seen().is_empty());
}

#[tokio::test]
async fn authorization_needs_a_rule_that_lists_it() {
    let (_up, proxy) = setup().await;
    let ok = send(
        proxy.addr,
        "OPTIONS",
        "/",
        &h(
            "api.example.com",
            &[
                ("origin", "https://admin.example.com"),
                ("access-control-request-method", "DELETE"),
                ("access-control-request-headers", "authorization"),
            ],
        ),
    )
    .await;
    assert_eq!(ok.status, 204);
    assert_eq!(ok.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(
        ok.header("access-control-allow-methods"),
        Some("GET, DELETE")
    );
}

#[tokio::test]
async fn plain_options_goes_upstream() {
    let (up, proxy) = setup().await;
    let got = send(
        proxy.addr,
        "OPTIONS",
        "/x",
        &h("api.example.com", &[("origin", APP)]),
    )
    .await;
    assert_eq!(got.status, 200);
    let got2 = send(
        proxy.addr,
        "OPTIONS",
        "/y",
        &h(
            "api.example.com",
            &[("access-control-request-method", "PUT")],
        ),
    )
    .await;
    assert_eq!(got2.status, 200);
    assert_eq!(counts(&up.seen())["OPTIONS /x"], 1);
    assert_eq!(counts(&up.seen())["OPTIONS /y"], 1);
}

#[tokio::test]
async fn forward_modes_reject_mode_and_upstream_headers_kept() {
    let (up, proxy) = setup().await;
    let host = "strict.example.com";
    // preflight: Forward — the upstream answers, the edge adds its headers.
    let got = send(
        proxy.addr,
        "OPTIONS",
        "/p",
        &h(
            host,
            &[("origin", APP), ("access-control-request-method", "GET")],
        ),
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.header("access-control-allow-origin"), Some(APP));
    // unmatchedPreflight: Forward — forwarded, no CORS headers added.
    let got = send(
        proxy.addr,
        "OPTIONS",
        "/q",
        &h(
            host,
            &[
                ("origin", "https://evil.example"),
                ("access-control-request-method", "GET"),
            ],
        ),
    )
    .await;
    assert_eq!(got.status, 200);
    assert!(got.cors_headers().is_empty());
    // disallowedOrigin: Reject — 403 at the edge.
    let got = send(
        proxy.addr,
        "GET",
        "/r",
        &h(host, &[("origin", "https://evil.example")]),
    )
    .await;
    assert_eq!(got.status, 403);
    assert_eq!(got.vary(), ["Origin"]);
    // originOverride: false — the upstream's own CORS headers stand.
    let got = send(proxy.addr, "GET", "/cors", &h(host, &[("origin", APP)])).await;
    assert_eq!(got.header("access-control-allow-origin"), Some("*"));
    assert_eq!(
        got.header("access-control-expose-headers"),
        Some("x-secret")
    );
    let c = counts(&up.seen());
    assert_eq!(
        (c.get("OPTIONS /p"), c.get("OPTIONS /q"), c.get("GET /r")),
        (Some(&1), Some(&1), None)
    );
}

#[tokio::test]
async fn origin_override_replaces_permissive_upstream_headers() {
    let (_up, proxy) = setup().await;
    let got = send(
        proxy.addr,
        "GET",
        "/cors",
        &h("api.example.com", &[("origin", APP)]),
    )
    .await;
    assert_eq!(
        got.cors_headers(),
        [
            "access-control-allow-origin: https://app.example.com",
            "access-control-expose-headers: x-request-id"
        ]
    );
    let evil = send(
        proxy.addr,
        "GET",
        "/cors",
        &h("api.example.com", &[("origin", "https://evil.example")]),
    )
    .await;
    assert!(evil.cors_headers().is_empty(), "{:?}", evil.cors_headers());
    let plain = send(proxy.addr, "GET", "/cors", &h("api.example.com", &[])).await;
    assert!(plain.cors_headers().is_empty());
    assert_eq!(
        plain.vary(),
        ["Origin"],
        "responses without Origin vary on it too"
    );
}

#[tokio::test]
async fn vary_is_merged_once_with_the_upstreams() {
    let (_up, proxy) = setup().await;
    let got = send(
        proxy.addr,
        "GET",
        "/vary",
        &h("api.example.com", &[("origin", APP)]),
    )
    .await;
    assert_eq!(got.vary(), ["Accept-Encoding, Origin"]);
}

#[tokio::test]
async fn errors_carry_cors_headers_upstream_5xx_refused_and_timeout() {
    let (_up, proxy) = setup().await;
    let got = send(
        proxy.addr,
        "GET",
        "/status/500",
        &h("api.example.com", &[("origin", APP)]),
    )
    .await;
    assert_eq!(got.status, 500);
    assert_eq!(got.header("access-control-allow-origin"), Some(APP));
    assert_eq!(
        got.header("strict-transport-security"),
        Some("max-age=63072000")
    );

    let slow = Instant::now();
    let got = send(
        proxy.addr,
        "GET",
        "/slow/5000",
        &h("api.example.com", &[("origin", APP)]),
    )
    .await;
    assert_eq!(got.status, 504, "{}", got.body);
    assert!(
        slow.elapsed() < Duration::from_secs(4),
        "timeoutSeconds: 2 is honoured"
    );
    assert_eq!(got.header("access-control-allow-origin"), Some(APP));
    assert_eq!(got.header("x-corsgate-error"), Some("upstream-timeout"));

    // An upstream that refuses connections.
    let dead = free_port();
    let p2 = Proxy::start(
        &policy(
            "dead",
            "[\"api.example.com\"]",
            "  cors: {allowOrigins: [\"https://app.example.com\"]}",
            &format!("http://127.0.0.1:{dead}"),
        ),
        true,
    )
    .await;
    let got = send(
        p2.addr,
        "GET",
        "/",
        &h("api.example.com", &[("origin", APP)]),
    )
    .await;
    assert_eq!(got.status, 502);
    assert_eq!(got.header("access-control-allow-origin"), Some(APP));
    assert_eq!(got.header("x-corsgate-error"), Some("upstream-connect"));
    assert!(got.body.contains("Connection refused"), "{}", got.body);
    let (_, metrics) = p2.admin("/metrics").await;
    assert_eq!(
        metric(
            &metrics,
            "corsgate_proxy_requests_total",
            &["outcome=\"upstream_error\""]
        ),
        1.0
    );
}

/// A proxy with two timeouts: `api.example.com` 2 s, `patient.example.com` 6 s.
async fn two_timeouts() -> (Upstream, Proxy) {
    let up = Upstream::start().await;
    let cors = "  cors: {allowOrigins: [\"https://app.example.com\"]}";
    let api = policy("api", "[\"api.example.com\"]", cors, &up.url());
    let patient = policy("patient", "[\"patient.example.com\"]", cors, &up.url())
        .replace("timeoutSeconds: 2", "timeoutSeconds: 6");
    let proxy = Proxy::start(&format!("{api}---\n{patient}"), true).await;
    (up, proxy)
}

/// Sends a GET for `path` to `host` on an open connection: its status and how long it took.
async fn timed_get<B>(
    sender: &mut hyper::client::conn::http1::SendRequest<B>,
    host: &str,
    path: &str,
) -> (u16, Duration)
where
    B: hyper::body::Body + Default + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    use http_body_util::BodyExt;
    let started = Instant::now();
    let req = http::Request::get(path)
        .header("host", host)
        .header("origin", APP)
        .body(B::default())
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(20), sender.send_request(req))
        .await
        .expect("answered within 20 s")
        .expect("the connection stays up");
    let status = resp.status().as_u16();
    resp.into_body().collect().await.expect("whole body");
    (status, started.elapsed())
}

// Each connection keeps one timer for its requests' upstream timeouts and moves it to each
// request's deadline: later (one policy's 2 s, then another's 6 s), earlier, and after it fired.
#[tokio::test]
async fn every_request_of_a_keep_alive_connection_gets_its_own_policys_upstream_timeout() {
    let (_up, proxy) = two_timeouts().await;
    let io = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake::<
        _,
        http_body_util::Empty<bytes::Bytes>,
    >(hyper_util::rt::TokioIo::new(io))
    .await
    .unwrap();
    tokio::spawn(conn);

    let (status, _) = timed_get(&mut sender, "api.example.com", "/fast").await;
    assert_eq!(status, 200);
    // Due 2 s after the first request had it would be a 504 at 2 s: it must wait 3 s.
    let (status, took) = timed_get(&mut sender, "patient.example.com", "/slow/3000").await;
    assert_eq!(status, 200, "the 6 s timeout, not the first request's 2 s");
    assert!(took >= Duration::from_millis(2900), "{took:?}");
    // An earlier deadline than the one the timer has, then a timer that already fired.
    for round in 0..2 {
        let (status, took) = timed_get(&mut sender, "api.example.com", "/slow/5000").await;
        assert_eq!(status, 504, "round {round}");
        assert!(
            took >= Duration::from_millis(1900) && took < Duration::from_millis(4500),
            "round {round}: the 2 s timeout, took {took:?}"
        );
    }
    let (status, _) = timed_get(&mut sender, "api.example.com", "/fast").await;
    assert_eq!(status, 200, "the connection still serves");
}

// HTTP/2 streams of one connection run at once: one holds the connection's kept timer and
// the other makes its own; each keeps its own policy's timeout.
#[tokio::test]
async fn concurrent_http2_streams_each_keep_their_upstream_timeout() {
    let (_up, proxy) = two_timeouts().await;
    let io = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http2::handshake::<_, _, http_body_util::Empty<bytes::Bytes>>(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(io),
        )
        .await
        .unwrap();
    tokio::spawn(conn);
    let get = |host: &'static str, path: &'static str| {
        let mut sender = sender.clone();
        async move {
            let started = Instant::now();
            let req = http::Request::get(format!("http://{host}{path}"))
                .header("origin", APP)
                .body(http_body_util::Empty::new())
                .unwrap();
            let resp = tokio::time::timeout(Duration::from_secs(20), sender.send_request(req))
                .await
                .expect("answered within 20 s")
                .expect("the stream is answered");
            (resp.status().as_u16(), started.elapsed())
        }
    };
    // The first request of the connection, then one that must time out beside it.
    let patient = tokio::spawn(get("patient.example.com", "/slow/3000"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, took) = get("api.example.com", "/slow/5000").await;
    assert_eq!(status, 504);
    assert!(
        took < Duration::from_millis(4500),
        "the 2 s timeout, took {took:?}"
    );
    let (status, took) = patient.await.unwrap();
    assert_eq!(status, 200, "the 6 s timeout");
    assert!(took >= Duration::from_millis(2900), "{took:?}");
    let (status, _) = get("api.example.com", "/fast").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn unmatched_host_or_path_gets_a_plain_404() {
    let (up, proxy) = setup().await;
    for (host, path) in [
        ("nope.example.com", "/"),
        ("open.example.com", "/v1"),
        ("x.open.example.com", "/v2"),
    ] {
        let got = send(proxy.addr, "GET", path, &h(host, &[("origin", APP)])).await;
        assert_eq!(got.status, 404, "{host}{path}");
        assert!(got.cors_headers().is_empty());
        assert!(got.body.contains("no policy serves host"), "{}", got.body);
    }
    let ok = send(
        proxy.addr,
        "GET",
        "/v1/x",
        &h("x.open.example.com", &[("origin", "https://any.site")]),
    )
    .await;
    assert_eq!(ok.header("access-control-allow-origin"), Some("*"));
    assert_eq!(up.seen().len(), 1);
}

#[tokio::test]
async fn private_network_preflight() {
    let (_up, proxy) = setup().await;
    let pn = [("access-control-request-private-network", "true")];
    let mut hs = h(
        "strict.example.com",
        &[("origin", APP), ("access-control-request-method", "GET")],
    );
    hs.extend_from_slice(&pn);
    // strict forwards preflights; the edge still adds the private-network answer.
    let got = send(proxy.addr, "OPTIONS", "/", &hs).await;
    assert_eq!(
        got.header("access-control-allow-private-network"),
        Some("true")
    );
    let mut hs = h(
        "api.example.com",
        &[("origin", APP), ("access-control-request-method", "GET")],
    );
    hs.extend_from_slice(&pn);
    let got = send(proxy.addr, "OPTIONS", "/", &hs).await;
    assert_eq!(got.status, 403, "allowPrivateNetwork is false on api");
}

#[tokio::test]
async fn http2_cleartext_is_served() {
    let (_up, proxy) = setup().await;
    // Connect to loopback while the :authority names the API host.
    let authority = format!("api.example.com:{}", proxy.addr.port());
    let got = send_h2(proxy.addr, &authority, "GET", "/h2", &[("origin", APP)]).await;
    assert_eq!(got.header("access-control-allow-origin"), Some(APP));
    assert_eq!(got.body, "ok");
}
