//! HTTPS at the edge (issue 15), black-box over 127.0.0.1: the real `corsgate proxy` with
//! `--listen-tls`, policies naming `kubernetes.io/tls` Secrets that sit in the same
//! `--policies` files (kubectl's own output as a fixture), certificates by SNI (exact beats
//! wildcard), ALPN h2 and http/1.1, the `unrecognized_name` alert, `redirectHTTP`,
//! `X-Forwarded-Proto: https`, rotation (new handshakes get the new certificate, open
//! connections continue) and a bad key pair that keeps the last good certificate.

mod support;
#[path = "support/tls.rs"]
mod tls_support;

use support::{Proxy, Upstream, metric, policy, write_atomically};
use tls_support::{Conn, TestCa, client_config, connect, leaf_der, negotiated, rustls_error};

const FIXTURE_SECRET: &str = include_str!("fixtures/tls/api-tls.secret.yaml");
const FIXTURE_CA: &str = include_str!("fixtures/tls/ca.pem");

/// The fixture's leaf certificate, from the Secret kubectl wrote.
fn fixture_leaf() -> Vec<u8> {
    use base64::Engine as _;
    let doc: serde_json::Value = serde_saphyr::from_str(FIXTURE_SECRET).expect("yaml");
    let b64 = doc["data"]["tls.crt"].as_str().expect("tls.crt");
    let pem = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64");
    leaf_der(std::str::from_utf8(&pem).expect("utf-8"))
}

fn tls_policy(name: &str, hosts: &str, secret: &str, redirect: bool, url: &str) -> String {
    policy(
        name,
        hosts,
        &format!(
            "  cors: {{allowOrigins: [\"https://app.example.com\"]}}\n  tls: {{secretName: {secret}, redirectHTTP: {redirect}}}"
        ),
        url,
    )
}

#[tokio::test]
async fn https_picks_the_certificate_by_sni_and_speaks_h2_and_http1() {
    let up = Upstream::start().await;
    let ca = TestCa::new();
    let (v2_cert, v2_key) = ca.issue(&["v2.api.example.com"]);
    let yaml = [
        FIXTURE_SECRET.to_string(),
        tls_policy(
            "api",
            "[api.example.com, \"*.api.example.com\"]",
            "api-tls",
            false,
            &up.url(),
        ),
        tls_support::secret_yaml("test", "v2-tls", &v2_cert, &v2_key),
        tls_policy("v2", "[v2.api.example.com]", "v2-tls", false, &up.url()),
    ]
    .join("---\n");
    let proxy = Proxy::start(&yaml, true).await;
    let both = format!("{FIXTURE_CA}{}", ca.pem);
    let fixture = fixture_leaf();

    // Exact host and wildcard both get the fixture's certificate; the exact v2 host gets
    // its own even though the wildcard covers it too.
    for (sni, want) in [
        ("api.example.com", fixture.clone()),
        ("x.api.example.com", fixture.clone()),
        ("v2.api.example.com", leaf_der(&v2_cert)),
    ] {
        let s = connect(
            proxy.tls_addr,
            sni,
            client_config(&both, &[b"h2", b"http/1.1"]),
        )
        .await
        .unwrap_or_else(|e| panic!("{sni}: {e}; log:\n{}", proxy.log_text()));
        let (leaf, alpn) = negotiated(&s);
        assert!(leaf == want, "{sni}: another certificate was served");
        assert_eq!(alpn.as_deref(), Some("h2"), "{sni}");
        let mut conn = Conn::over(s).await;
        let got = conn
            .send(
                "GET",
                sni,
                "/hello",
                &[("origin", "https://app.example.com")],
            )
            .await
            .expect("request");
        assert_eq!(got.status, 200, "{got:?}");
        assert_eq!(got.version, http::Version::HTTP_2);
        assert_eq!(
            got.headers
                .get("access-control-allow-origin")
                .and_then(|v| v.to_str().ok()),
            Some("https://app.example.com")
        );
    }
    // Every request above reached the upstream marked as HTTPS.
    let seen = up.seen();
    assert_eq!(seen.len(), 3);
    for s in &seen {
        assert_eq!(
            s.headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok()),
            Some("https")
        );
    }

    // A client offering only http/1.1 gets it.
    let s = connect(
        proxy.tls_addr,
        "api.example.com",
        client_config(FIXTURE_CA, &[b"http/1.1"]),
    )
    .await
    .expect("http/1.1 handshake");
    assert_eq!(negotiated(&s).1.as_deref(), Some("http/1.1"));
    let got = Conn::over(s)
        .await
        .send("GET", "api.example.com", "/one", &[])
        .await
        .expect("request");
    assert_eq!((got.status, got.version), (200, http::Version::HTTP_11));

    // The plain listener keeps serving the same policies, marked http.
    up.clear();
    let plain = support::send(proxy.addr, "GET", "/p", &[("host", "api.example.com")]).await;
    assert_eq!(plain.status, 200);
    assert_eq!(
        up.seen()[0]
            .headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok()),
        Some("http")
    );
}

#[tokio::test]
async fn a_server_name_without_a_certificate_gets_the_unrecognized_name_alert() {
    let up = Upstream::start().await;
    // other.example.com routes (a policy without tls) but has no certificate.
    let yaml = [
        FIXTURE_SECRET.to_string(),
        tls_policy("api", "[api.example.com]", "api-tls", false, &up.url()),
        policy("plain", "[other.example.com]", "", &up.url()),
    ]
    .join("---\n");
    let proxy = Proxy::start(&yaml, true).await;
    for sni in ["other.example.com", "unknown.example.org", "127.0.0.1"] {
        let err = connect(proxy.tls_addr, sni, client_config(FIXTURE_CA, &[b"h2"]))
            .await
            .err()
            .unwrap_or_else(|| panic!("{sni}: the handshake should fail"));
        assert_eq!(
            rustls_error(&err),
            Some(&rustls::Error::AlertReceived(
                rustls::AlertDescription::UnrecognisedName
            )),
            "{sni}: {err}"
        );
    }
    // The listener still serves the host it has a certificate for.
    connect(
        proxy.tls_addr,
        "api.example.com",
        client_config(FIXTURE_CA, &[b"h2"]),
    )
    .await
    .expect("known host");
}

#[tokio::test]
async fn redirect_http_answers_plain_http_with_308_to_https() {
    let up = Upstream::start().await;
    let yaml = [
        FIXTURE_SECRET.to_string(),
        tls_policy("api", "[api.example.com]", "api-tls", true, &up.url()),
        policy("plain", "[other.example.com]", "", &up.url()),
    ]
    .join("---\n");
    let proxy = Proxy::start(&yaml, true).await;
    let origin = ("origin", "https://app.example.com");
    let got = support::send(
        proxy.addr,
        "POST",
        "/v1/orders?id=7",
        &[("host", "API.example.com:8080"), origin],
    )
    .await;
    assert_eq!(got.status, 308);
    assert_eq!(
        got.header("location"),
        Some("https://api.example.com/v1/orders?id=7")
    );
    // Fetch checks CORS on a redirect: the allowed origin's headers are on it.
    assert_eq!(
        got.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    // A preflight is redirected too (and so fails in a browser: documented).
    let pre = support::send(
        proxy.addr,
        "OPTIONS",
        "/v1/orders",
        &[
            ("host", "api.example.com"),
            origin,
            ("access-control-request-method", "PUT"),
        ],
    )
    .await;
    assert_eq!(pre.status, 308);
    assert!(
        up.seen().is_empty(),
        "nothing redirected reaches the upstream"
    );
    // Other hosts on the plain listener are not redirected.
    let other = support::send(proxy.addr, "GET", "/", &[("host", "other.example.com")]).await;
    assert_eq!(other.status, 200);
    // Over HTTPS the same policy is served, not redirected.
    let s = connect(
        proxy.tls_addr,
        "api.example.com",
        client_config(FIXTURE_CA, &[b"h2"]),
    )
    .await
    .expect("handshake");
    let got = Conn::over(s)
        .await
        .send("GET", "api.example.com", "/v1/orders", &[origin])
        .await
        .expect("request");
    assert_eq!(got.status, 200);
    let (_, metrics) = proxy.admin("/metrics").await;
    assert_eq!(
        metric(
            &metrics,
            "corsgate_proxy_requests_total",
            &["policy=\"test/api\"", "outcome=\"redirected_https\""]
        ),
        2.0
    );
}

#[tokio::test]
async fn a_rotated_secret_serves_new_handshakes_while_open_connections_continue() {
    let up = Upstream::start().await;
    let ca = TestCa::new();
    let (a_cert, a_key) = ca.issue(&["api.example.com"]);
    let (b_cert, b_key) = ca.issue(&["api.example.com"]);
    let doc = |cert: &str, key: &str| {
        [
            tls_support::secret_yaml("test", "api-tls", cert, key),
            tls_policy("api", "[api.example.com]", "api-tls", false, &up.url()),
        ]
        .join("---\n")
    };
    let proxy = Proxy::start(&doc(&a_cert, &a_key), true).await;
    let config = || client_config(&ca.pem, &[b"h2"]);
    let old = connect(proxy.tls_addr, "api.example.com", config())
        .await
        .expect("handshake");
    assert!(negotiated(&old).0 == leaf_der(&a_cert));
    let mut open = Conn::over(old).await;
    let v1 = proxy.version().await;

    // cert-manager renews: same Secret, new certificate and key.
    write_atomically(&proxy.policies, &doc(&b_cert, &b_key));
    proxy.wait_version_change(&v1).await;
    let fresh = connect(proxy.tls_addr, "api.example.com", config())
        .await
        .expect("handshake after rotation");
    assert!(
        negotiated(&fresh).0 == leaf_der(&b_cert),
        "a new handshake gets the new certificate"
    );
    let got = open
        .send("GET", "api.example.com", "/still", &[])
        .await
        .expect("the connection opened before the rotation still serves");
    assert_eq!(got.status, 200);

    // A key that does not belong to the certificate: the load fails, the last good
    // certificate keeps serving, and the failure is logged, counted and in /config.
    let (_, wrong_key) = ca.issue(&["api.example.com"]);
    let (c, _) = ca.issue(&["api.example.com"]);
    let v2 = proxy.version().await;
    write_atomically(&proxy.policies, &doc(&c, &wrong_key));
    let mut config_body = String::new();
    support::eventually("the failed reload is logged", || {
        config_body = std::fs::read_to_string(&proxy.log).unwrap_or_default();
        config_body.contains("is not the key of the certificate")
    })
    .await;
    let (_, cfg) = proxy.admin("/config").await;
    assert!(cfg.contains("is not the key of the certificate"), "{cfg}");
    assert_eq!(proxy.version().await, v2);
    let (_, metrics) = proxy.admin("/metrics").await;
    assert!(
        metric(
            &metrics,
            "corsgate_config_reloads_total",
            &["result=\"failure\""]
        ) >= 1.0
    );
    let still = connect(proxy.tls_addr, "api.example.com", config())
        .await
        .expect("handshake with the last good certificate");
    assert!(negotiated(&still).0 == leaf_der(&b_cert));
}

#[tokio::test]
async fn a_policy_whose_secret_cannot_serve_keeps_the_proxy_not_ready() {
    let up = Upstream::start().await;
    let ca = TestCa::new();
    let (cert, key) = ca.issue(&["www.example.com"]);
    let yaml = [
        tls_support::secret_yaml("test", "api-tls", &cert, &key),
        tls_policy("api", "[api.example.com]", "api-tls", false, &up.url()),
    ]
    .join("---\n");
    let proxy = Proxy::start(&yaml, false).await;
    let (ready, _) = proxy.admin("/readyz").await;
    assert_eq!(ready, 503);
    let (_, cfg) = proxy.admin("/config").await;
    assert!(
        cfg.contains("does not cover host api.example.com (its DNS names: www.example.com)"),
        "{cfg}"
    );
}
