//! Issue 17: "why did the browser say CORS error", answered by the running proxy — the admin
//! `/explain` (and `corsgate explain --proxy` as its client), rejection reasons on the wire
//! when a policy opts in (and their redaction when it does not), the rate-limited INFO line,
//! and the ring of last rejections on `/rejections`.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const APP: &str = "https://app.example.com";

fn policies(url: &str) -> String {
    let on = policy(
        "on",
        "[\"on.example.com\"]",
        "  cors:\n    allowOrigins: [\"https://app.example.com\"]\n    allowMethods: [GET, PUT]\n  debug: {rejectionReasons: true}",
        url,
    );
    let off = policy(
        "off",
        "[\"off.example.com\"]",
        "  cors:\n    allowOrigins: [\"https://app.example.com\"]\n    allowMethods: [GET, PUT]",
        url,
    );
    format!("{on}---\n{off}")
}

fn corsgate(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_corsgate"))
        .args(args)
        .output()
        .expect("run corsgate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn preflight<'a>(host: &'a str, method: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("host", host),
        ("origin", APP),
        ("access-control-request-method", method),
    ]
}

#[tokio::test]
async fn the_admin_explains_on_the_live_snapshot_like_the_file_mode() {
    let up = Upstream::start().await;
    let proxy = Proxy::start(&policies(&up.url()), true).await;
    let version = proxy.version().await;
    let file = proxy.policies.to_str().expect("utf-8 path").to_string();
    let args = [
        "--host",
        "on.example.com",
        "--path",
        "/items",
        "--method",
        "DELETE",
        "--origin",
        APP,
        "--header",
        "x-custom",
    ];

    let got = send(
        proxy.admin,
        "GET",
        "/explain?host=on.example.com&path=/items&method=DELETE&origin=https%3A%2F%2Fapp.example.com&header=x-custom",
        &[],
    )
    .await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(got.header("x-corsgate-verdict"), Some("blocked"));
    assert_eq!(
        got.header("x-corsgate-config-version"),
        Some(version.as_str())
    );
    assert!(
        got.body.starts_with(&format!(
            "config     version {version} (2 policies serving)"
        )),
        "{}",
        got.body
    );
    assert!(
        got.body
            .contains("  check    FAILED: method DELETE is not in allowMethods"),
        "{}",
        got.body
    );

    // The file mode and the proxy client print exactly what the admin answered.
    let mut file_args = vec!["explain", "--policies", &file];
    file_args.extend_from_slice(&args);
    let (code, out, err) = corsgate(&file_args);
    assert_eq!((code, out.as_str()), (1, got.body.as_str()), "{err}");
    let admin_url = format!("http://{}", proxy.admin);
    let mut proxy_args = vec!["explain", "--proxy", &admin_url];
    proxy_args.extend_from_slice(&args);
    let (code, out, err) = corsgate(&proxy_args);
    assert_eq!((code, out.as_str()), (1, got.body.as_str()), "{err}");

    // JSON: the same steps, the version and the reason a page would show.
    let got = send(
        proxy.admin,
        "GET",
        "/explain?host=on.example.com&method=DELETE&origin=https%3A%2F%2Fapp.example.com",
        &[("accept", "application/json")],
    )
    .await;
    assert_eq!(got.header("content-type"), Some("application/json"));
    let doc: serde_json::Value = serde_json::from_str(&got.body).expect("json");
    assert_eq!(doc["version"], version.as_str());
    assert_eq!(doc["verdict"], "blocked");
    assert_eq!(doc["policy"], "test/on");
    assert_eq!(doc["reason"], "method DELETE is not in allowMethods");
    let steps: Vec<&str> = doc["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|s| s["step"].as_str())
        .collect();
    assert_eq!(
        steps,
        [
            "config",
            "request",
            "route",
            "browser",
            "preflight",
            "verdict"
        ],
        "{doc}"
    );

    // Bad queries say what is wrong; an allowed call exits 0 through the client too.
    let got = send(proxy.admin, "GET", "/explain?origin=x", &[]).await;
    assert_eq!(got.status, 400);
    assert!(got.body.contains("missing host"), "{}", got.body);
    let (code, out, _) = corsgate(&[
        "explain",
        "--proxy",
        &admin_url,
        "--host",
        "on.example.com",
        "--origin",
        APP,
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("verdict    ALLOWED"), "{out}");
}

#[tokio::test]
async fn explain_against_a_proxy_that_is_not_there_exits_2() {
    let addr = format!("http://127.0.0.1:{}", free_port());
    let (code, out, err) = corsgate(&["explain", "--proxy", &addr, "--host", "a.test"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("cannot reach the proxy's admin endpoint"),
        "{err}"
    );
    let (code, _, err) = corsgate(&["explain", "--host", "a.test"]);
    assert_eq!(code, 2, "clap: a source is required");
    assert!(err.contains("--policies"), "{err}");
}

/// One request with raw header bytes (the test client's `send` takes only ASCII).
async fn send_raw(addr: std::net::SocketAddr, head: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(head).await.expect("write");
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("answered within 10 s")
        .expect("read");
    String::from_utf8_lossy(&buf).into_owned()
}

#[tokio::test]
async fn rejections_say_why_only_when_the_policy_opts_in() {
    let up = Upstream::start().await;
    let proxy = Proxy::start(&policies(&up.url()), true).await;

    // Rejected preflight, at the edge.
    let on = send(
        proxy.addr,
        "OPTIONS",
        "/",
        &preflight("on.example.com", "DELETE"),
    )
    .await;
    assert_eq!(on.status, 403);
    assert_eq!(on.header("x-corsgate-error"), Some("cors-rejected"));
    assert_eq!(
        on.header("x-corsgate-reason"),
        Some("method DELETE is not in allowMethods")
    );
    assert!(
        on.body.contains("method DELETE is not in allowMethods"),
        "{}",
        on.body
    );
    let off = send(
        proxy.addr,
        "OPTIONS",
        "/",
        &preflight("off.example.com", "DELETE"),
    )
    .await;
    assert_eq!(off.status, 403);
    assert_eq!(off.header("x-corsgate-reason"), None, "redacted");
    assert!(!off.body.contains("allowMethods"), "{}", off.body);
    assert!(
        off.body.contains("spec.debug.rejectionReasons is off"),
        "{}",
        off.body
    );

    // A disallowed origin's actual request, forwarded (disallowedOrigin: Forward).
    let evil = |host: &'static str| vec![("host", host), ("origin", "https://evil.example")];
    let on = send(proxy.addr, "GET", "/", &evil("on.example.com")).await;
    assert_eq!(on.status, 200);
    assert_eq!(on.header("x-corsgate-error"), Some("cors-rejected"));
    assert_eq!(
        on.header("x-corsgate-reason"),
        Some("the origin is not in allowOrigins, allowOriginPatterns or a rule")
    );
    let off = send(proxy.addr, "GET", "/", &evil("off.example.com")).await;
    assert_eq!(off.status, 200);
    assert_eq!(
        (
            off.header("x-corsgate-error"),
            off.header("x-corsgate-reason")
        ),
        (None, None),
        "off: neither header on a forwarded rejection"
    );
    let allowed = send(
        proxy.addr,
        "GET",
        "/",
        &[("host", "on.example.com"), ("origin", APP)],
    )
    .await;
    assert_eq!(
        allowed.header("x-corsgate-reason"),
        None,
        "allowed: nothing"
    );

    // The reason quotes the request: non-ASCII bytes become '?', so it stays a valid header.
    let head = b"OPTIONS / HTTP/1.1\r\nhost: on.example.com\r\norigin: https://app.example.com\r\n\
        access-control-request-method: PUT\r\naccess-control-request-headers: x-\xc3\xa9\r\nconnection: close\r\n\r\n"
        .to_vec();
    let answer = send_raw(proxy.addr, &head).await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(
        answer.contains("x-corsgate-reason: request header \"x-?\" is not in allowHeaders\r\n"),
        "{answer}"
    );
}

/// The log without its ANSI colour codes (the text format colours field names).
fn plain(log: &str) -> String {
    let mut out = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for d in chars.by_ref() {
                if d == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[tokio::test]
async fn rejections_are_logged_at_most_once_per_policy_and_reason_per_window() {
    let up = Upstream::start().await;
    let proxy = Proxy::start(&policies(&up.url()), true).await;
    let version = proxy.version().await;
    let started = Instant::now();
    for _ in 0..30 {
        let got = send(
            proxy.addr,
            "OPTIONS",
            "/",
            &preflight("on.example.com", "DELETE"),
        )
        .await;
        assert_eq!(got.status, 403);
    }
    for _ in 0..5 {
        send(
            proxy.addr,
            "GET",
            "/",
            &[
                ("host", "off.example.com"),
                ("origin", "https://evil.example"),
            ],
        )
        .await;
    }
    let windows = 1 + started.elapsed().as_secs() / 10;
    let lines = |what: &str| {
        plain(&proxy.log_text())
            .lines()
            .filter(|l| l.contains("cors request rejected") && l.contains(what))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    eventually("both log lines written", || {
        !lines("reason=\"method\"").is_empty() && !lines("reason=\"origin\"").is_empty()
    })
    .await;
    let method = lines("reason=\"method\"");
    assert!(
        (1..=windows as usize).contains(&method.len()),
        "30 rejections in {windows} window(s): {method:#?}"
    );
    assert!(method[0].contains("INFO"), "{}", method[0]);
    assert!(method[0].contains("policy=\"test/on\""), "{}", method[0]);
    assert!(
        method[0].contains(&format!("origin={APP}")),
        "{}",
        method[0]
    );
    assert!(
        method[0].contains(&format!("config_version={version}")),
        "{}",
        method[0]
    );
    let origin = lines("reason=\"origin\"");
    assert!(
        (1..=windows as usize).contains(&origin.len()),
        "{origin:#?}"
    );
    assert!(origin[0].contains("policy=\"test/off\""), "{}", origin[0]);
}

#[tokio::test]
async fn the_admin_lists_each_policys_last_rejections() {
    let up = Upstream::start().await;
    let proxy = Proxy::start(&policies(&up.url()), true).await;
    let mut hs = preflight("on.example.com", "PUT");
    hs.push(("access-control-request-headers", "x-a,x-b"));
    send(proxy.addr, "OPTIONS", "/", &hs).await;
    send(
        proxy.addr,
        "GET",
        "/",
        &[
            ("host", "on.example.com"),
            ("origin", "https://evil.example"),
        ],
    )
    .await;
    send(
        proxy.addr,
        "GET",
        "/",
        &[("host", "on.example.com"), ("origin", APP)],
    )
    .await;

    let (status, body) = proxy.admin("/rejections?policy=test/on").await;
    assert_eq!(status, 200, "{body}");
    let doc: serde_json::Value = serde_json::from_str(&body).expect("json");
    let r = doc["rejections"].as_array().expect("list");
    assert_eq!(r.len(), 2, "allowed requests are not kept: {doc}");
    assert_eq!(
        (
            &r[0]["kind"],
            &r[0]["origin"],
            &r[0]["method"],
            &r[0]["reason"]
        ),
        (
            &serde_json::json!("actual"),
            &serde_json::json!("https://evil.example"),
            &serde_json::json!("GET"),
            &serde_json::json!("origin")
        ),
        "newest first: {doc}"
    );
    assert_eq!(
        (
            &r[1]["kind"],
            &r[1]["method"],
            &r[1]["headers"],
            &r[1]["reason"]
        ),
        (
            &serde_json::json!("preflight"),
            &serde_json::json!("PUT"),
            &serde_json::json!("x-a,x-b"),
            &serde_json::json!("header")
        ),
        "{doc}"
    );
    assert!(r[1]["unixMillis"].as_u64().is_some_and(|t| t > 0), "{doc}");

    let (status, body) = proxy.admin("/rejections?policy=test/off").await;
    assert_eq!(status, 200);
    assert!(body.contains("\"rejections\": []"), "{body}");
    let (status, body) = proxy.admin("/rejections").await;
    assert_eq!(status, 400);
    assert!(body.contains("test/on"), "names the policies: {body}");
    assert_eq!(proxy.admin("/rejections?policy=test/nope").await.0, 404);
}
