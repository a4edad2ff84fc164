//! Gateway API parity (issue 16 item 1) over loopback, with the real `corsgate proxy`: what
//! Gateway API's HTTPCORSFilter conformance expects of a preflight, and where corsgate stays
//! stricter on purpose (README, "Where corsgate is stricter than Gateway API").

mod support;

use support::*;

const ORIGIN: &str = "https://app.example.net";

fn policies(url: &str) -> String {
    // Credentials with "*" methods and headers: reflected, as HTTPCORSFilter requires.
    let reflect = policy(
        "reflect",
        "[\"reflect.example.com\"]",
        r#"  cors:
    allowOrigins: ["https://app.example.net"]
    allowMethods: ["*"]
    allowHeaders: ["*"]
    exposeHeaders: ["x-request-id", "x-trace"]
    allowCredentials: true"#,
        url,
    );
    format!("{reflect}---\n")
}

#[tokio::test]
async fn credentialed_star_methods_and_headers_are_reflected_and_preflights_expose() {
    let up = Upstream::start().await;
    let proxy = Proxy::start(&policies(&up.url()), true).await;
    let got = send(
        proxy.addr,
        "OPTIONS",
        "/v1/items",
        &[
            ("host", "reflect.example.com"),
            ("origin", ORIGIN),
            ("access-control-request-method", "DELETE"),
            ("access-control-request-headers", "x-custom,content-type"),
        ],
    )
    .await;
    assert_eq!(got.status, 204, "{got:?}");
    assert_eq!(
        got.cors_headers(),
        vec![
            "access-control-allow-credentials: true".to_string(),
            "access-control-allow-headers: x-custom,content-type".into(),
            "access-control-allow-methods: DELETE".into(),
            format!("access-control-allow-origin: {ORIGIN}"),
            // On the preflight too, as Gateway API's conformance test expects.
            "access-control-expose-headers: x-request-id, x-trace".into(),
        ],
        "reflected, never \"*\" with credentials; no Max-Age when maxAgeSeconds is absent"
    );
    assert!(got.vary().iter().any(|v| v.contains("Origin")), "{got:?}");
    assert!(counts(&up.seen()).is_empty(), "answered at the edge");

    // "*" never covers Authorization (Fetch), reflected or not: the preflight is refused.
    let got = send(
        proxy.addr,
        "OPTIONS",
        "/v1/items",
        &[
            ("host", "reflect.example.com"),
            ("origin", ORIGIN),
            ("access-control-request-method", "GET"),
            ("access-control-request-headers", "authorization"),
        ],
    )
    .await;
    assert_eq!(got.status, 403, "{got:?}");
    assert!(got.cors_headers().is_empty(), "{got:?}");

    // The actual request: the expose list and credentials, as before.
    let got = send(
        proxy.addr,
        "GET",
        "/v1/items",
        &[("host", "reflect.example.com"), ("origin", ORIGIN)],
    )
    .await;
    assert_eq!(got.status, 200, "{got:?}");
    assert_eq!(
        got.header("access-control-expose-headers"),
        Some("x-request-id, x-trace")
    );
    assert_eq!(got.header("access-control-allow-credentials"), Some("true"));
}

#[test]
fn any_origin_with_credentials_is_still_refused_with_why_and_the_fix() {
    let spec: corsgate::policy::CorsPolicySpec = serde_saphyr::from_str(
        "{hosts: [a.example], upstream: {url: 'http://u:1'}, cors: {allowOrigins: ['*'], allowCredentials: true}}",
    )
    .expect("spec");
    let errors = corsgate::policy::validate(&spec).expect_err("refused");
    let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        text,
        [
            "spec.cors.allowOrigins[0]: \"*\" cannot be combined with allowCredentials: true: the edge would have to reflect every origin, so any website could read this API's responses with the user's cookies (Gateway API allows this; corsgate does not); fix: list the trusted origins (a wildcard such as \"https://*.example.com\" or allowOriginPatterns is fine), or set allowCredentials: false"
        ]
    );
}
