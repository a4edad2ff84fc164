//! Behavioural equivalence: imported ingress-nginx, Gateway API and CloudFront policies
//! through the real proxy over loopback, compared with what each source system documents.

use super::*;

/// The ingress-nginx `accounts` Ingress, imported, through the real proxy: the headers
/// ingress-nginx's template documents (reflected origin, credentials, the lists, Max-Age), and
/// its one-label wildcard.
#[tokio::test]
async fn imported_ingress_nginx_policy_answers_as_ingress_nginx_documents() {
    let up = Upstream::start().await;
    let opts = ImportOptions {
        mode: Mode::Enforce,
        ..ImportOptions::default()
    };
    let (mut p, _) = interop::import(
        Format::IngressNginx,
        &[input("ingress-nginx/input.yaml")],
        &opts,
    )
    .unwrap();
    p.retain(|p| p.name == "accounts-1");
    p[0].spec.upstream = corsgate::policy::Upstream {
        url: Some(up.url()),
        ..Default::default()
    };
    let proxy = Proxy::start(&render_policies(&p).unwrap(), true).await;
    let host = ("host", "accounts.example.com");

    let pre = send(
        proxy.addr,
        "OPTIONS",
        "/v1/users",
        &[
            host,
            ("origin", "https://app.example.com"),
            ("access-control-request-method", "PUT"),
            ("access-control-request-headers", "content-type"),
        ],
    )
    .await;
    assert_eq!(
        pre.status, 204,
        "ingress-nginx answers the preflight 204 at the edge"
    );
    assert_eq!(
        pre.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(pre.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(pre.header("access-control-max-age"), Some("600"));
    let methods = pre.header("access-control-allow-methods").unwrap_or("");
    assert!(methods.contains("PUT"), "{methods}");
    assert!(
        pre.header("access-control-allow-headers")
            .unwrap_or("")
            .to_ascii_lowercase()
            .contains("content-type")
    );
    assert!(
        up.seen().iter().all(|s| s.method != http::Method::OPTIONS),
        "the preflight never reached the upstream"
    );

    let get = send(
        proxy.addr,
        "GET",
        "/v1/users",
        &[host, ("origin", "https://app.example.com")],
    )
    .await;
    assert_eq!(get.status, 200);
    assert_eq!(
        get.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(get.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(
        get.header("access-control-expose-headers"),
        Some("x-request-id")
    );
    assert!(
        get.vary()
            .iter()
            .any(|v| v.to_ascii_lowercase().contains("origin")),
        "corsgate adds Vary: Origin"
    );

    // `https://*.preview.example.com` in ingress-nginx is `[A-Za-z0-9\-]+`: one label only.
    let one = send(
        proxy.addr,
        "GET",
        "/v1/users",
        &[host, ("origin", "https://pr-7.preview.example.com")],
    )
    .await;
    assert_eq!(
        one.header("access-control-allow-origin"),
        Some("https://pr-7.preview.example.com")
    );
    let two = send(
        proxy.addr,
        "GET",
        "/v1/users",
        &[host, ("origin", "https://a.pr-7.preview.example.com")],
    )
    .await;
    assert_eq!(two.header("access-control-allow-origin"), None);
    let other = send(
        proxy.addr,
        "GET",
        "/v1/users",
        &[host, ("origin", "https://evil.example")],
    )
    .await;
    assert_eq!(
        other.header("access-control-allow-origin"),
        None,
        "an unlisted origin gets no CORS headers, as in ingress-nginx"
    );
}

/// The Gateway API route's credentialed rule, imported, through the real proxy: what
/// HTTPCORSFilter specifies (reflected origin, credentials, the listed methods plus the
/// always-allowed GET/HEAD/POST, the listed headers), with the port-443 origin normalised.
#[tokio::test]
async fn imported_gateway_api_rule_answers_as_the_cors_filter_specifies() {
    let up = Upstream::start().await;
    let opts = ImportOptions {
        mode: Mode::Enforce,
        ..ImportOptions::default()
    };
    let (mut p, _) = interop::import(
        Format::GatewayApi,
        &[input("gateway-api/input.yaml")],
        &opts,
    )
    .unwrap();
    p.retain(|p| p.name == "catalog-2");
    p[0].spec.upstream = corsgate::policy::Upstream {
        url: Some(up.url()),
        ..Default::default()
    };
    let proxy = Proxy::start(&render_policies(&p).unwrap(), true).await;
    let host = ("host", "catalog.example.com");
    for (origin, method) in [
        ("https://shop.example.com", "DELETE"),
        ("https://eu.shop.example.com", "PUT"),
        ("https://partner.example.net", "GET"),
    ] {
        let pre = send(
            proxy.addr,
            "OPTIONS",
            "/v1/cart/items",
            &[
                host,
                ("origin", origin),
                ("access-control-request-method", method),
                ("access-control-request-headers", "x-csrf-token"),
            ],
        )
        .await;
        assert_eq!(pre.status, 204, "{origin} {method}");
        assert_eq!(pre.header("access-control-allow-origin"), Some(origin));
        assert_eq!(pre.header("access-control-allow-credentials"), Some("true"));
        assert!(
            pre.header("access-control-allow-methods")
                .unwrap_or("")
                .contains(method),
            "{origin} {method}: {:?}",
            pre.cors_headers()
        );
        assert_eq!(
            pre.header("access-control-max-age"),
            Some("86400"),
            "kept (corsgate's limit; Chromium caps it at 7200 itself), reported"
        );
    }
    let other = send(
        proxy.addr,
        "OPTIONS",
        "/v1/cart",
        &[
            host,
            ("origin", "https://evil.example"),
            ("access-control-request-method", "PUT"),
        ],
    )
    .await;
    assert_eq!(
        other.header("access-control-allow-origin"),
        None,
        "no CORS headers for other origins"
    );
    assert!(up.seen().iter().all(|s| s.method != http::Method::OPTIONS));
}

/// CloudFront's managed policies, imported by name and run through the real proxy: the
/// headers CloudFront documents for them (the same tables tests/presets.rs checks the presets
/// against), and whether the preflight reached the origin.
#[tokio::test]
async fn imported_cloudfront_managed_policies_answer_as_cloudfront_documents() {
    let up = Upstream::start().await;
    let mut policies = Vec::new();
    for (file, host) in [
        ("cloudfront/managed-SimpleCORS.txt", "simple.example.com"),
        (
            "cloudfront/managed-CORS-With-Preflight.txt",
            "preflight.example.com",
        ),
    ] {
        let opts = ImportOptions {
            mode: Mode::Enforce,
            hosts: vec![host.into()],
            upstream: Some(up.url()),
            namespace: Some("edge".into()),
        };
        let (p, _) = interop::import(Format::Cloudfront, &[input(file)], &opts).expect("import");
        policies.extend(p);
    }
    let proxy = Proxy::start(&render_policies(&policies).expect("render"), true).await;
    let origin = "https://app.example.net";
    let preflight = |host: &'static str| {
        [
            ("host", host),
            ("origin", origin),
            ("access-control-request-method", "PUT"),
            ("access-control-request-headers", "content-type,x-custom"),
        ]
    };
    // SimpleCORS: a preflight is an ordinary request to CloudFront: it reaches the origin and
    // gets Allow-Origin only; a CORS GET gets Allow-Origin: *.
    let got = send(
        proxy.addr,
        "OPTIONS",
        "/a",
        &preflight("simple.example.com"),
    )
    .await;
    assert_eq!(got.cors_headers(), ["access-control-allow-origin: *"]);
    let got = send(
        proxy.addr,
        "GET",
        "/a",
        &[("host", "simple.example.com"), ("origin", origin)],
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.cors_headers(), ["access-control-allow-origin: *"]);
    assert_eq!(
        up.seen()
            .iter()
            .filter(|s| s.method == http::Method::OPTIONS)
            .count(),
        1,
        "SimpleCORS forwards the preflight"
    );
    // CORS-With-Preflight: answered (at the edge here), every method, headers and origin "*".
    let got = send(
        proxy.addr,
        "OPTIONS",
        "/a",
        &preflight("preflight.example.com"),
    )
    .await;
    assert_eq!(got.status, 204);
    assert_eq!(
        got.cors_headers(),
        [
            "access-control-allow-headers: *",
            "access-control-allow-methods: DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT",
            "access-control-allow-origin: *",
        ]
    );
    assert_eq!(
        up.seen()
            .iter()
            .filter(|s| s.method == http::Method::OPTIONS)
            .count(),
        1,
        "CORS-With-Preflight's preflight never reaches the origin"
    );
}
