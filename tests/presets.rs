//! Presets over loopback: the real `corsgate proxy` on policies that use SimpleCORS,
//! CORSWithPreflight and SecurityHeaders, compared header by header with what CloudFront's
//! managed response-headers policies send, and whether the upstream saw each request.

mod support;

use support::*;

const ORIGIN: &str = "https://app.example.net";
const ALL_METHODS: &str =
    "access-control-allow-methods: DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT";

fn policies(url: &str) -> String {
    let simple = policy(
        "simple",
        "[\"simple.example.com\"]",
        "  cors: {preset: SimpleCORS}",
        url,
    );
    let preflight = policy(
        "preflight",
        "[\"preflight.example.com\"]",
        "  cors: {preset: CORSWithPreflight}",
        url,
    );
    let security = policy(
        "security",
        "[\"security.example.com\"]",
        "  responseHeaders: {preset: SecurityHeaders}",
        url,
    );
    let refined = policy(
        "refined",
        "[\"refined.example.com\"]",
        r#"  cors:
    preset: CORSWithPreflight
    allowOrigins: ["https://app.example.net"]
    allowHeaders: ["x-custom"]
    maxAgeSeconds: 600
  responseHeaders:
    preset: SecurityHeaders
    security:
      frameOptions: {value: DENY, override: true}
      contentSecurityPolicy: {value: "default-src 'self'"}
    set: [{name: Strict-Transport-Security, value: "max-age=63072000; includeSubDomains"}]"#,
        url,
    );
    format!("{simple}---\n{preflight}---\n{security}---\n{refined}")
}

/// The headers CloudFront's policies govern, sorted as `name: value`.
fn governed(got: &Got) -> Vec<String> {
    let mut v: Vec<String> = got
        .headers
        .iter()
        .filter(|(k, _)| {
            let k = k.as_str();
            k.starts_with("access-control-")
                || matches!(
                    k,
                    "strict-transport-security"
                        | "x-content-type-options"
                        | "x-frame-options"
                        | "referrer-policy"
                        | "x-xss-protection"
                        | "content-security-policy"
                )
        })
        .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap()))
        .collect();
    v.sort();
    v
}

struct Case {
    name: &'static str,
    host: &'static str,
    method: &'static str,
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
    status: u16,
    upstream_saw_it: bool,
    /// What CloudFront's managed policy sends, header by header.
    cloudfront: &'static [&'static str],
}

const PREFLIGHT_PUT: &[(&str, &str)] = &[
    ("origin", ORIGIN),
    ("access-control-request-method", "PUT"),
    ("access-control-request-headers", "content-type,x-custom"),
];

const SECURITY: [&str; 5] = [
    "referrer-policy: strict-origin-when-cross-origin",
    "strict-transport-security: max-age=31536000",
    "x-content-type-options: nosniff",
    "x-frame-options: SAMEORIGIN",
    "x-xss-protection: 1; mode=block",
];

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "SimpleCORS: CORS GET",
            host: "simple.example.com",
            method: "GET",
            path: "/items",
            headers: &[("origin", ORIGIN)],
            status: 200,
            upstream_saw_it: true,
            cloudfront: &["access-control-allow-origin: *"],
        },
        Case {
            name: "SimpleCORS: the upstream's own CORS headers are kept",
            host: "simple.example.com",
            method: "GET",
            path: "/cors",
            headers: &[("origin", ORIGIN)],
            status: 200,
            upstream_saw_it: true,
            cloudfront: &[
                "access-control-allow-methods: *",
                "access-control-allow-origin: *",
                "access-control-expose-headers: x-secret",
            ],
        },
        Case {
            name: "SimpleCORS: a preflight reaches the upstream and gets Allow-Origin only",
            host: "simple.example.com",
            method: "OPTIONS",
            path: "/items",
            headers: PREFLIGHT_PUT,
            status: 200,
            upstream_saw_it: true,
            cloudfront: &["access-control-allow-origin: *"],
        },
        Case {
            name: "SimpleCORS: not a CORS request",
            host: "simple.example.com",
            method: "GET",
            path: "/items",
            headers: &[],
            status: 200,
            upstream_saw_it: true,
            cloudfront: &[],
        },
        Case {
            name: "CORSWithPreflight: preflight answered at the edge",
            host: "preflight.example.com",
            method: "OPTIONS",
            path: "/items",
            headers: PREFLIGHT_PUT,
            status: 204,
            upstream_saw_it: false,
            cloudfront: &[
                "access-control-allow-headers: *",
                ALL_METHODS,
                "access-control-allow-origin: *",
            ],
        },
        Case {
            name: "CORSWithPreflight: CORS POST",
            host: "preflight.example.com",
            method: "POST",
            path: "/items",
            headers: &[("origin", ORIGIN)],
            status: 200,
            upstream_saw_it: true,
            cloudfront: &["access-control-allow-origin: *"],
        },
        Case {
            name: "CORSWithPreflight: the upstream's own CORS headers are kept",
            host: "preflight.example.com",
            method: "GET",
            path: "/cors",
            headers: &[("origin", ORIGIN)],
            status: 200,
            upstream_saw_it: true,
            cloudfront: &[
                "access-control-allow-methods: *",
                "access-control-allow-origin: *",
                "access-control-expose-headers: x-secret",
            ],
        },
        Case {
            name: "CORSWithPreflight: CORS headers on the upstream's errors too",
            host: "preflight.example.com",
            method: "GET",
            path: "/status/503",
            headers: &[("origin", ORIGIN)],
            status: 503,
            upstream_saw_it: true,
            cloudfront: &["access-control-allow-origin: *"],
        },
        Case {
            name: "SecurityHeaders: the upstream sends none",
            host: "security.example.com",
            method: "GET",
            path: "/items",
            headers: &[],
            status: 200,
            upstream_saw_it: true,
            cloudfront: &SECURITY,
        },
        Case {
            name: "SecurityHeaders: the upstream's win, except X-Content-Type-Options",
            host: "security.example.com",
            method: "GET",
            path: "/security-headers",
            headers: &[],
            status: 200,
            upstream_saw_it: true,
            cloudfront: &[
                "referrer-policy: no-referrer",
                "strict-transport-security: max-age=60",
                "x-content-type-options: nosniff",
                "x-frame-options: DENY",
                "x-xss-protection: 0",
            ],
        },
    ]
}

#[tokio::test]
async fn presets_send_what_cloudfront_managed_policies_send() {
    let up = Upstream::start().await;
    let proxy = Proxy::start(&policies(&up.url()), true).await;
    for c in cases() {
        up.clear();
        let mut headers = vec![("host", c.host)];
        headers.extend_from_slice(c.headers);
        let got = send(proxy.addr, c.method, c.path, &headers).await;
        assert_eq!(got.status, c.status, "{}: {}", c.name, got.body);
        assert_eq!(governed(&got), c.cloudfront, "{}", c.name);
        let saw = up.seen();
        assert_eq!(
            !saw.is_empty(),
            c.upstream_saw_it,
            "{}: upstream saw {saw:?}",
            c.name
        );
        if let Some(s) = saw.first() {
            assert_eq!(s.method.as_str(), c.method, "{}", c.name);
        }
    }
}

#[tokio::test]
async fn fields_next_to_presets_refine_them_and_config_shows_the_result() {
    let up = Upstream::start().await;
    let proxy = Proxy::start(&policies(&up.url()), true).await;
    let host = ("host", "refined.example.com");
    let got = send(
        proxy.addr,
        "OPTIONS",
        "/items",
        &[
            host,
            ("origin", ORIGIN),
            ("access-control-request-method", "PATCH"),
            ("access-control-request-headers", "x-custom"),
        ],
    )
    .await;
    assert_eq!(got.status, 204);
    assert_eq!(
        governed(&got),
        [
            "access-control-allow-headers: x-custom",
            ALL_METHODS,
            "access-control-allow-origin: https://app.example.net",
            "access-control-max-age: 600",
            "content-security-policy: default-src 'self'",
            "referrer-policy: strict-origin-when-cross-origin",
            "strict-transport-security: max-age=63072000; includeSubDomains",
            "x-content-type-options: nosniff",
            "x-frame-options: DENY",
            "x-xss-protection: 1; mode=block",
        ]
    );
    // allowOrigins replaced the preset's "*"; frameOptions override: true replaces the
    // upstream's; the set entry (always override) replaced the preset's HSTS.
    let got = send(
        proxy.addr,
        "GET",
        "/security-headers",
        &[host, ("origin", "https://other.example")],
    )
    .await;
    assert_eq!(got.header("access-control-allow-origin"), None);
    assert_eq!(got.header("x-frame-options"), Some("DENY"));
    assert_eq!(got.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(
        got.header("strict-transport-security"),
        Some("max-age=63072000; includeSubDomains")
    );

    let (_, body) = proxy.admin("/config").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let simple = v["policies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "test/simple")
        .expect("simple in /config");
    assert_eq!(simple["cors"]["preset"], "SimpleCORS");
    assert_eq!(simple["cors"]["allowOrigins"], serde_json::json!(["*"]));
    assert_eq!(simple["cors"]["preflight"], "Passthrough");
    assert_eq!(simple["cors"]["originOverride"], false);
    let security = v["policies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "test/security")
        .expect("security in /config");
    let names: Vec<String> = security["responseHeaders"]["set"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| format!("{}={}", h["name"].as_str().unwrap(), h["override"]))
        .collect();
    assert_eq!(
        names,
        [
            "strict-transport-security=false",
            "x-content-type-options=true",
            "x-frame-options=false",
            "referrer-policy=false",
            "x-xss-protection=false",
        ]
    );
}

#[tokio::test]
async fn explain_shows_the_expanded_preset() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.yaml");
    std::fs::write(&file, policies(&up.url())).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_corsgate"))
        .arg("explain")
        .arg("--policies")
        .arg(&file)
        .args([
            "--host",
            "preflight.example.com",
            "--method",
            "PUT",
            "--origin",
            ORIGIN,
            "--header",
            "x-custom",
        ])
        .output()
        .expect("run explain");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("allowMethods: DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT"),
        "{text}"
    );
    assert!(text.contains("access-control-allow-headers: *"), "{text}");
    assert!(text.contains("ALLOWED"), "{text}");

    // SimpleCORS never answers a preflight: a PUT from a page fails in the browser unless
    // the upstream answers the preflight itself, as behind CloudFront.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_corsgate"))
        .arg("explain")
        .arg("--policies")
        .arg(&file)
        .args([
            "--host",
            "simple.example.com",
            "--method",
            "PUT",
            "--origin",
            ORIGIN,
        ])
        .output()
        .expect("run explain");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("preflight: Passthrough"), "{text}");
    assert!(
        text.contains(
            "BLOCKED by the browser at the preflight: PUT is not in Access-Control-Allow-Methods"
        ),
        "{text}"
    );
    assert_eq!(out.status.code(), Some(1), "{text}");
}
