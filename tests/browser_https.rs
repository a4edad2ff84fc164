//! The browser over HTTPS (issue 15 item 6): headless Chromium calls the real proxy's
//! `--listen-tls` listener, which serves a certificate from a `kubernetes.io/tls` Secret
//! document in the policy file. Chromium trusts that certificate through
//! `--ignore-certificate-errors-spki-list` (its SubjectPublicKeyInfo hash), so the TLS
//! handshake, ALPN and HTTP/2 are real: `nextHopProtocol` must read `h2` (readable
//! cross-origin because the policy sets `Timing-Allow-Origin`). The cases: an allowed GET,
//! a preflighted PUT answered at the edge, a disallowed origin blocked, and what
//! `redirectHTTP` does to a preflight from a page that still calls http://.
//!
//! Chromium missing is a failure with the install command, as in tests/browser/main.rs.

// Shared with tests/browser/main.rs, which uses all of it.
#[allow(dead_code)]
mod support {
    pub mod browser;
}
#[path = "support/tls.rs"]
mod tls_support;

use base64::Engine as _;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use support::browser::chromium::Browser;
use support::browser::process::{Corsgate, free_addrs};
use support::browser::servers::{Pages, Upstream};
use tls_support::TestCa;

const APP: &str = "app.example.test";
const OTHER: &str = "other.example.test";
const API: &str = "api.example.test";

/// base64(SHA-256(SubjectPublicKeyInfo)) of the first certificate in `pem`, as
/// `--ignore-certificate-errors-spki-list` wants it.
fn spki_hash(pem: &str) -> String {
    let der = tls_support::leaf_der(pem);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("X.509");
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(cert.public_key().raw))
}

fn policies(page: u16, upstream: u16, cert: &str, key: &str) -> String {
    format!(
        r#"{secret}---
apiVersion: corsgate.dev/v1alpha1
kind: CorsPolicy
metadata: {{name: api, namespace: browser}}
spec:
  hosts: ["{API}"]
  upstream: {{url: "http://127.0.0.1:{upstream}"}}
  cors:
    allowOrigins: ["http://{APP}:{page}"]
    allowMethods: ["GET", "PUT"]
    allowHeaders: ["x-custom"]
  responseHeaders:
    set: [{{name: Timing-Allow-Origin, value: "*"}}]
  tls: {{secretName: api-tls, redirectHTTP: true}}
"#,
        secret = tls_support::secret_yaml("browser", "api-tls", cert, key),
    )
}

/// `fetch(url, init)` from the current page, then the protocol the browser used for it.
const FETCH_AND_PROTOCOL: &str = r#"
const [url, init, done] = arguments;
probe(url, init).then(r => {
  const entries = performance.getEntriesByName(url);
  r.protocol = entries.length ? entries[entries.length - 1].nextHopProtocol : null;
  done(r);
});
"#;

async fn fetch(browser: &Browser, origin: &str, url: &str, init: Value) -> Value {
    browser.open(origin).await.expect("open the page");
    browser
        .client()
        .execute_async(FETCH_AND_PROTOCOL, vec![json!(url), init])
        .await
        .unwrap_or_else(|e| panic!("fetch {url} from {origin}: {e}"))
}

#[tokio::test]
async fn chromium_calls_the_api_over_https_with_http2() {
    support::browser::chromium::locate();
    let dir = tempfile::Builder::new()
        .prefix("corsgate-browser-https-")
        .tempdir()
        .expect("a temporary directory");
    let ca = TestCa::new();
    let (cert, key) = ca.issue(&[API]);
    let upstream = Upstream::start().await;
    let pages = Pages::start().await;
    let [tls] = free_addrs();
    let file = dir.path().join("policies.yaml");
    std::fs::write(
        &file,
        policies(pages.addr.port(), upstream.addr.port(), &cert, &key),
    )
    .expect("write policies");
    let proxy = Corsgate::proxy_tls(&file, &dir.path().join("corsgate.log"), Some(tls))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let browser = Browser::start_with(
        dir.path(),
        &[format!(
            "--ignore-certificate-errors-spki-list={}",
            spki_hash(&cert)
        )],
    )
    .await;
    let app = pages.origin(APP);
    let api = format!("https://{API}:{}", tls.port());

    // An allowed GET: the page reads the upstream's answer, over HTTP/2.
    let got = fetch(&browser, &app, &format!("{api}/hello"), json!({})).await;
    assert_eq!(got["ok"], true, "{got}");
    assert_eq!(got["status"], 200, "{got}");
    assert_eq!(got["protocol"], "h2", "HTTP/2 over TLS: {got}");
    let seen = upstream.seen_under("/hello");
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header("x-forwarded-proto"), Some("https"));

    // A preflighted PUT: answered at the edge over HTTPS, only the PUT reaches upstream.
    let got = fetch(
        &browser,
        &app,
        &format!("{api}/put"),
        json!({"method": "PUT", "headers": {"x-custom": "1"}}),
    )
    .await;
    assert_eq!(got["ok"], true, "{got}");
    let methods: Vec<String> = upstream
        .seen_under("/put")
        .into_iter()
        .map(|s| s.method)
        .collect();
    assert_eq!(methods, ["PUT"]);

    // Another origin is blocked by the browser, over HTTPS as over HTTP.
    let other = pages.origin(OTHER);
    let got = fetch(&browser, &other, &format!("{api}/other"), json!({})).await;
    assert_eq!(got["ok"], false, "{got}");
    assert!(
        got["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("TypeError")),
        "{got}"
    );

    // redirectHTTP: a page still calling http:// gets its preflight redirected, and the
    // browser refuses to follow a redirect on a preflight (docs/tls.md).
    let plain = format!("http://{API}:{}", proxy.listen.port());
    let got = fetch(
        &browser,
        &app,
        &format!("{plain}/redirected"),
        json!({"method": "PUT", "headers": {"x-custom": "1"}}),
    )
    .await;
    assert_eq!(got["ok"], false, "a redirected preflight fails: {got}");
    assert!(upstream.seen_under("/redirected").is_empty());

    browser.close().await;
    drop(proxy);
}
