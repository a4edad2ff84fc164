//! End to end in a real browser (issue 7): headless Chromium, driven through chromedriver,
//! runs `fetch()` from pages on real-looking origins against the real `corsgate` binary and
//! a real upstream, all on loopback. The browser's own verdict — what JavaScript can read,
//! or the TypeError it gets — is what each case asserts; a plain HTTP client and the
//! upstream's request log check what the browser hides.
//!
//! One test, one browser session, one proxy: the cases run in order, every failure is
//! collected with its case name, and the test fails at the end listing them all. Chromium
//! missing is a failure that prints the install command, never a skip.
//!
//! Run it: `cargo test --test browser` (add `-- --nocapture` for per-case timings).

mod support {
    pub mod browser;
}

use std::future::Future;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use support::browser::chromium::{Browser, Fetched};
use support::browser::http;
use support::browser::process::{Corsgate, artifacts_dir, corsgate_bin, free_addrs};
use support::browser::servers::{Pages, Upstream};

/// Each case gets this long; a hung case fails by name instead of hanging the suite.
const CASE_DEADLINE: Duration = Duration::from_secs(45);

/// The page origins' host names. Chromium maps every `*.example.test` to 127.0.0.1.
const APP: &str = "app.example.test";
const OTHER: &str = "other.example.test";
const API: &str = "api.example.test";

/// The quickstart `corsgate demo` serves; the demo case moves it to free ports.
const QUICKSTART: &str = include_str!("../examples/quickstart.yaml");

/// Fails the enclosing case (a `Result<(), String>` function) with a message.
macro_rules! ensure {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err(format!($($arg)+));
        }
    };
}

/// The policies under test. `page` is the page server's port (part of every origin),
/// `upstream` the recording upstream's, `dead` a port nothing listens on.
fn policies(page: u16, upstream: u16, dead: u16) -> String {
    format!(
        r#"# The main API: exact, wildcard and regex origins; a preflighted PUT with X-Custom.
apiVersion: corsgate.dev/v1alpha1
kind: CorsPolicy
metadata: {{name: api, namespace: browser}}
spec:
  hosts: ["{API}"]
  upstream: {{url: "http://127.0.0.1:{upstream}"}}
  cors:
    allowOrigins: ["http://{APP}:{page}", "http://*.shop.example.test:{page}"]
    allowOriginPatterns: ['^http://pr-[0-9]+\.preview\.example\.test:{page}$']
    allowMethods: ["GET", "POST", "PUT"]
    allowHeaders: ["content-type", "x-custom"]
    exposeHeaders: ["x-exposed"]
---
apiVersion: corsgate.dev/v1alpha1
kind: CorsPolicy
metadata: {{name: max-age, namespace: browser}}
spec:
  hosts: ["{API}"]
  paths: ["/max-age"]
  upstream: {{url: "http://127.0.0.1:{upstream}"}}
  cors:
    allowOrigins: ["http://{APP}:{page}"]
    allowMethods: ["PUT"]
    allowHeaders: ["x-custom"]
    maxAgeSeconds: 600
---
# The control for max-age: Max-Age 0 forbids caching, so every PUT is preflighted.
apiVersion: corsgate.dev/v1alpha1
kind: CorsPolicy
metadata: {{name: no-max-age, namespace: browser}}
spec:
  hosts: ["{API}"]
  paths: ["/no-max-age"]
  upstream: {{url: "http://127.0.0.1:{upstream}"}}
  cors:
    allowOrigins: ["http://{APP}:{page}"]
    allowMethods: ["PUT"]
    allowHeaders: ["x-custom"]
    maxAgeSeconds: 0
---
apiVersion: corsgate.dev/v1alpha1
kind: CorsPolicy
metadata: {{name: credentials, namespace: browser}}
spec:
  hosts: ["{API}"]
  paths: ["/creds"]
  upstream: {{url: "http://127.0.0.1:{upstream}"}}
  cors:
    allowOrigins: ["http://{APP}:{page}"]
    allowCredentials: true
---
apiVersion: corsgate.dev/v1alpha1
kind: CorsPolicy
metadata: {{name: no-credentials, namespace: browser}}
spec:
  hosts: ["{API}"]
  paths: ["/no-creds"]
  upstream: {{url: "http://127.0.0.1:{upstream}"}}
  cors:
    allowOrigins: ["http://{APP}:{page}"]
---
apiVersion: corsgate.dev/v1alpha1
kind: CorsPolicy
metadata: {{name: public, namespace: browser}}
spec:
  hosts: ["{API}"]
  paths: ["/public"]
  upstream: {{url: "http://127.0.0.1:{upstream}"}}
  cors:
    allowOrigins: ["*"]
---
# The control for the null origin: listed literally, it is allowed.
apiVersion: corsgate.dev/v1alpha1
kind: CorsPolicy
metadata: {{name: null-listed, namespace: browser}}
spec:
  hosts: ["{API}"]
  paths: ["/null-allowed"]
  upstream: {{url: "http://127.0.0.1:{upstream}"}}
  cors:
    allowOrigins: ["null"]
---
apiVersion: corsgate.dev/v1alpha1
kind: CorsPolicy
metadata: {{name: down, namespace: browser}}
spec:
  hosts: ["{API}"]
  paths: ["/down"]
  upstream: {{url: "http://127.0.0.1:{dead}", timeoutSeconds: 2}}
  cors:
    allowOrigins: ["http://{APP}:{page}"]
---
apiVersion: corsgate.dev/v1alpha1
kind: CorsPolicy
metadata: {{name: slow, namespace: browser}}
spec:
  hosts: ["{API}"]
  paths: ["/slow"]
  upstream: {{url: "http://127.0.0.1:{upstream}", timeoutSeconds: 1}}
  cors:
    allowOrigins: ["http://{APP}:{page}"]
"#
    )
}

/// Everything the cases share: one browser, one proxy, one upstream, one page server.
struct Fixture {
    // Dropped in this order: the browser first, the proxy, then the servers and the files.
    browser: Browser,
    proxy: Corsgate,
    upstream: Upstream,
    pages: Pages,
    dir: tempfile::TempDir,
}

impl Fixture {
    async fn start() -> Fixture {
        let dir = tempfile::Builder::new()
            .prefix("corsgate-browser-")
            .tempdir()
            .expect("a temporary directory");
        // Fail fast (and with the install command) before starting anything else.
        support::browser::chromium::locate();
        let upstream = Upstream::start().await;
        let pages = Pages::start().await;
        let [dead] = free_addrs();
        let file = dir.path().join("policies.yaml");
        std::fs::write(
            &file,
            policies(pages.addr.port(), upstream.addr.port(), dead.port()),
        )
        .expect("write policies");
        let proxy = Corsgate::proxy(&file, &dir.path().join("corsgate.log"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let browser = Browser::start(dir.path()).await;
        Fixture {
            browser,
            proxy,
            upstream,
            pages,
            dir,
        }
    }

    fn origin(&self, host: &str) -> String {
        self.pages.origin(host)
    }

    /// The API URL the pages call (the proxy, under the API's host name).
    fn api(&self, path: &str) -> String {
        format!("http://{API}:{}{path}", self.proxy.listen.port())
    }

    /// `fetch(api(path), init)` from the page on `host`.
    async fn fetch(&self, host: &str, path: &str, init: Value) -> Result<Fetched, String> {
        self.browser
            .fetch(&self.origin(host), &self.api(path), init)
            .await
    }

    /// A request straight to the proxy, outside the browser, to see every header.
    async fn plain(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<http::Reply, String> {
        let host = format!("{API}:{}", self.proxy.listen.port());
        http::send(self.proxy.listen, method, &host, path, headers).await
    }

    /// `corsgate_proxy_requests_total` for one of the test policies and an outcome.
    async fn counted(&self, policy: &str, outcome: &str) -> Result<u64, String> {
        self.proxy
            .requests(&format!("browser/{policy}"), outcome)
            .await
    }
}

/// The page could read the response.
fn allowed(f: &Fetched, what: &str) -> Result<(), String> {
    ensure!(
        f.ok,
        "{what}: expected the page to read the response, but fetch failed: {f:?}"
    );
    Ok(())
}

/// The browser blocked the response: fetch rejected with a TypeError.
fn blocked(f: &Fetched, what: &str) -> Result<(), String> {
    ensure!(
        !f.ok,
        "{what}: expected a CORS failure, but the page read HTTP {:?}: {f:?}",
        f.status
    );
    let e = f.error.as_deref().unwrap_or("");
    ensure!(
        e.starts_with("TypeError"),
        "{what}: expected a TypeError, got {e:?}"
    );
    Ok(())
}

fn status(f: &Fetched, want: u16, what: &str) -> Result<(), String> {
    allowed(f, what)?;
    ensure!(
        f.status == Some(want),
        "{what}: expected HTTP {want}, the page read {:?}: {f:?}",
        f.status
    );
    Ok(())
}

// ---- the cases ------------------------------------------------------------------------

async fn simple_get_allowed(fx: &Fixture) -> Result<(), String> {
    let f = fx.fetch(APP, "/simple/allowed", json!({})).await?;
    status(&f, 200, "GET from the allowed origin")?;
    ensure!(
        f.json()["method"] == "GET",
        "the body is not the upstream's: {f:?}"
    );
    let seen = fx.upstream.seen_under("/simple/allowed");
    let origin = fx.origin(APP);
    ensure!(
        seen.len() == 1 && seen[0].header("origin") == Some(origin.as_str()),
        "the upstream should have seen one GET with Origin {origin}: {seen:?}"
    );
    Ok(())
}

async fn simple_get_other_origin_blocked(fx: &Fixture) -> Result<(), String> {
    let f = fx.fetch(OTHER, "/simple/other", json!({})).await?;
    blocked(&f, "GET from an origin the policy does not list")?;
    // disallowedOrigin: Forward — the request went through; only the answer is withheld.
    ensure!(
        fx.upstream.seen_under("/simple/other").len() == 1,
        "disallowedOrigin: Forward should still forward the GET"
    );
    let r = fx
        .plain(
            "GET",
            "/simple/other-plain",
            &[("Origin", &fx.origin(OTHER))],
        )
        .await?;
    ensure!(
        r.header("access-control-allow-origin").is_none(),
        "no Access-Control-Allow-Origin for a disallowed origin, got {:?}",
        r.headers
    );
    Ok(())
}

/// Probes each `(host, should_pass)` and lists every wrong verdict.
async fn verdicts(fx: &Fixture, path: &str, table: &[(&str, bool)]) -> Result<(), String> {
    let mut wrong = Vec::new();
    for (host, pass) in table {
        let f = fx.fetch(host, path, json!({})).await?;
        if f.ok != *pass || (f.ok && f.status != Some(200)) {
            let want = if *pass { "allowed" } else { "blocked" };
            wrong.push(format!(
                "origin {} should be {want}, the page got {f:?}",
                fx.origin(host)
            ));
        }
    }
    ensure!(wrong.is_empty(), "{}", wrong.join("; "));
    Ok(())
}

async fn wildcard_subdomains(fx: &Fixture) -> Result<(), String> {
    verdicts(
        fx,
        "/wildcard",
        &[
            ("eu.shop.example.test", true),
            ("a.b.shop.example.test", true),
            // The apex is not a subdomain of itself.
            ("shop.example.test", false),
            // Suffix attacks: the allowed name inside a longer one, or without the dot.
            ("eu.shop.example.test.evil.example.test", false),
            ("evilshop.example.test", false),
        ],
    )
    .await
}

async fn regex_origins(fx: &Fixture) -> Result<(), String> {
    verdicts(
        fx,
        "/regex",
        &[
            ("pr-42.preview.example.test", true),
            ("pr-7.preview.example.test", true),
            ("pr-x.preview.example.test", false),
            // The pattern must match the whole origin, not a prefix or a suffix of it.
            ("pr-42.preview.example.test.evil.example.test", false),
            ("xpr-42.preview.example.test", false),
        ],
    )
    .await
}

async fn preflighted_put(fx: &Fixture) -> Result<(), String> {
    let before = fx.counted("api", "preflight_allowed").await?;
    let init = json!({
        "method": "PUT",
        "headers": {"X-Custom": "42", "Content-Type": "application/json"},
        "body": "{\"n\":7}",
    });
    let f = fx.fetch(APP, "/items/7", init).await?;
    status(&f, 200, "preflighted PUT with X-Custom")?;
    ensure!(
        f.json()["method"] == "PUT",
        "the upstream should have answered the PUT: {f:?}"
    );
    let after = fx.counted("api", "preflight_allowed").await?;
    ensure!(
        after > before,
        "the browser should have sent a preflight, answered at the edge (preflight_allowed {before} -> {after})"
    );
    let seen = fx.upstream.seen_under("/items/7");
    let methods: Vec<&str> = seen.iter().map(|s| s.method.as_str()).collect();
    ensure!(
        methods == ["PUT"],
        "the upstream should see the PUT only, never the OPTIONS: {methods:?}"
    );
    ensure!(
        seen[0].header("x-custom") == Some("42"),
        "X-Custom did not reach the upstream: {seen:?}"
    );
    Ok(())
}

async fn disallowed_method(fx: &Fixture) -> Result<(), String> {
    let before = fx.counted("api", "preflight_rejected").await?;
    let f = fx
        .fetch(APP, "/items/8", json!({"method": "DELETE"}))
        .await?;
    blocked(&f, "DELETE (not in allowMethods)")?;
    let after = fx.counted("api", "preflight_rejected").await?;
    ensure!(
        after == before + 1,
        "the DELETE's preflight should be rejected at the edge ({before} -> {after})"
    );
    let seen = fx.upstream.seen_under("/items/8");
    ensure!(
        seen.is_empty(),
        "nothing should reach the upstream: {seen:?}"
    );
    Ok(())
}

async fn disallowed_header(fx: &Fixture) -> Result<(), String> {
    let before = fx.counted("api", "preflight_rejected").await?;
    let f = fx
        .fetch(APP, "/items/9", json!({"headers": {"X-Secret": "1"}}))
        .await?;
    blocked(&f, "GET with X-Secret (not in allowHeaders)")?;
    let after = fx.counted("api", "preflight_rejected").await?;
    ensure!(
        after == before + 1,
        "the preflight should be rejected at the edge ({before} -> {after})"
    );
    let seen = fx.upstream.seen_under("/items/9");
    ensure!(
        seen.is_empty(),
        "nothing should reach the upstream: {seen:?}"
    );
    Ok(())
}

async fn credentials_allowed(fx: &Fixture) -> Result<(), String> {
    // A top-level visit to the API sets a first-party cookie, as a login would.
    fx.browser.goto(&fx.api("/creds/set-cookie")).await?;
    let include = json!({"credentials": "include"});
    let f = fx.fetch(APP, "/creds/whoami", include.clone()).await?;
    status(&f, 200, "credentialed GET from the allowed origin")?;
    let cookie = f.json()["cookie"].as_str().unwrap_or("").to_string();
    ensure!(
        cookie.contains("corsgate_sid=s3cr3t"),
        "the browser should send the cookie and the page read the answer; upstream saw Cookie {cookie:?}"
    );
    let origin = fx.origin(APP);
    let r = fx
        .plain("GET", "/creds/whoami", &[("Origin", &origin)])
        .await?;
    ensure!(
        r.header("access-control-allow-origin") == Some(origin.as_str())
            && r.header("access-control-allow-credentials") == Some("true"),
        "credentials need the origin reflected (never *) and Allow-Credentials: true: {:?}",
        r.headers
    );
    let f = fx.fetch(OTHER, "/creds/whoami", include).await?;
    blocked(
        &f,
        "credentialed GET from an origin the policy does not list",
    )?;
    Ok(())
}

async fn credentials_refused(fx: &Fixture) -> Result<(), String> {
    let include = json!({"credentials": "include"});
    // Origin allowed, credentials not: the browser refuses without Allow-Credentials.
    let f = fx.fetch(APP, "/no-creds/whoami", include.clone()).await?;
    blocked(&f, "credentialed GET where allowCredentials is false")?;
    let f = fx.fetch(APP, "/no-creds/whoami", json!({})).await?;
    status(&f, 200, "the same GET without credentials")?;
    ensure!(
        f.json()["cookie"].is_null(),
        "no cookie without credentials: {f:?}"
    );
    // allowOrigins "*": the browser never accepts * for a credentialed request.
    let f = fx.fetch(APP, "/public/whoami", include).await?;
    blocked(&f, "credentialed GET answered with Allow-Origin *")?;
    let f = fx.fetch(APP, "/public/whoami", json!({})).await?;
    status(&f, 200, "a GET without credentials to the public policy")?;
    Ok(())
}

async fn exposed_headers(fx: &Fixture) -> Result<(), String> {
    let f = fx.fetch(APP, "/headers", json!({})).await?;
    status(&f, 200, "GET /headers")?;
    ensure!(
        f.headers.get("x-exposed").map(String::as_str) == Some("exposed-value"),
        "x-exposed is listed in exposeHeaders, so JavaScript should read it: {:?}",
        f.headers
    );
    ensure!(
        !f.headers.contains_key("x-hidden"),
        "x-hidden is not exposed, so JavaScript must not see it: {:?}",
        f.headers
    );
    ensure!(
        f.headers.contains_key("content-type"),
        "content-type is safelisted and always readable: {:?}",
        f.headers
    );
    Ok(())
}

async fn upstream_500(fx: &Fixture) -> Result<(), String> {
    let f = fx.fetch(APP, "/status/500", json!({})).await?;
    status(&f, 500, "the upstream's 500")?;
    ensure!(
        f.json()["status"] == 500,
        "the page should read the upstream's error body: {f:?}"
    );
    Ok(())
}

async fn upstream_down(fx: &Fixture) -> Result<(), String> {
    let f = fx.fetch(APP, "/down/x", json!({})).await?;
    status(
        &f,
        502,
        "the edge's 502 for an upstream that refuses connections",
    )?;
    ensure!(
        f.body.as_deref().unwrap_or("").starts_with("corsgate:"),
        "the page should read the edge's explanation: {f:?}"
    );
    Ok(())
}

async fn upstream_slow(fx: &Fixture) -> Result<(), String> {
    let f = fx.fetch(APP, "/slow/3000", json!({})).await?;
    status(
        &f,
        504,
        "the edge's 504 for an upstream slower than timeoutSeconds: 1",
    )?;
    ensure!(
        f.body.as_deref().unwrap_or("").contains("did not answer"),
        "the page should read the edge's explanation: {f:?}"
    );
    Ok(())
}

async fn upstream_cors_overridden(fx: &Fixture) -> Result<(), String> {
    // The upstream says "Access-Control-Allow-Origin: *"; a listed origin only may read.
    let f = fx.fetch(OTHER, "/permissive/1", json!({})).await?;
    blocked(
        &f,
        "GET from an unlisted origin to an upstream that allows *",
    )?;
    let f = fx.fetch(APP, "/permissive/2", json!({})).await?;
    status(
        &f,
        200,
        "GET from the allowed origin to the permissive upstream",
    )?;
    ensure!(
        !f.headers.contains_key("x-hidden"),
        "the upstream's Expose-Headers: x-hidden must be replaced by the policy's: {:?}",
        f.headers
    );
    let r = fx
        .plain("GET", "/permissive/3", &[("Origin", &fx.origin(OTHER))])
        .await?;
    let cors: Vec<_> = r
        .headers
        .iter()
        .filter(|(k, _)| k.starts_with("access-control-"))
        .collect();
    ensure!(
        cors.is_empty(),
        "an unlisted origin gets no CORS headers at all: {cors:?}"
    );
    let origin = fx.origin(APP);
    let r = fx
        .plain("GET", "/permissive/4", &[("Origin", &origin)])
        .await?;
    ensure!(
        r.all("access-control-allow-origin") == [origin.as_str()]
            && r.all("access-control-expose-headers") == ["x-exposed"]
            && r.header("access-control-allow-methods").is_none(),
        "the edge's headers replace the upstream's: {:?}",
        r.headers
    );
    Ok(())
}

/// Chromium caches a preflight for 5 s when there is no `Access-Control-Max-Age`, so only
/// a repeat after that proves the policy's 600 s is what the browser follows.
const BROWSER_DEFAULT_PREFLIGHT_CACHE: Duration = Duration::from_secs(5);

async fn max_age_honoured(fx: &Fixture) -> Result<(), String> {
    let put = json!({"method": "PUT", "headers": {"X-Custom": "1"}});
    let origin = fx.origin(APP);
    let r = fx
        .plain(
            "OPTIONS",
            "/max-age/1",
            &[
                ("Origin", &origin),
                ("Access-Control-Request-Method", "PUT"),
                ("Access-Control-Request-Headers", "x-custom"),
            ],
        )
        .await?;
    ensure!(
        r.status == 204 && r.header("access-control-max-age") == Some("600"),
        "the edge's preflight answer should carry Max-Age 600: HTTP {} {:?}",
        r.status,
        r.headers
    );
    // The control first: with Max-Age 0 the browser must not cache, so the counter is
    // seen to count each preflight the browser sends.
    let before = fx.counted("no-max-age", "preflight_allowed").await?;
    for i in 1..=2 {
        let f = fx.fetch(APP, "/no-max-age/1", put.clone()).await?;
        status(&f, 200, &format!("PUT /no-max-age/1 #{i}"))?;
    }
    let sent = fx.counted("no-max-age", "preflight_allowed").await? - before;
    ensure!(
        sent == 2,
        "with Max-Age 0 two PUTs should cost two preflights, the edge answered {sent}"
    );

    let before = fx.counted("max-age", "preflight_allowed").await?;
    for i in 1..=3 {
        if i == 3 {
            tokio::time::sleep(BROWSER_DEFAULT_PREFLIGHT_CACHE + Duration::from_millis(500)).await;
        }
        let f = fx.fetch(APP, "/max-age/1", put.clone()).await?;
        status(&f, 200, &format!("PUT /max-age/1 #{i}"))?;
    }
    let sent = fx.counted("max-age", "preflight_allowed").await? - before;
    ensure!(
        sent == 1,
        "three identical PUTs (the last after the browser's 5 s default) under Max-Age 600 should cost one preflight, the edge answered {sent}"
    );
    let puts = fx
        .upstream
        .seen_under("/max-age/1")
        .iter()
        .filter(|s| s.method == "PUT")
        .count();
    ensure!(puts == 3, "every PUT should reach the upstream, saw {puts}");
    Ok(())
}

async fn null_origin(fx: &Fixture) -> Result<(), String> {
    let f = fx
        .browser
        .fetch_sandboxed(&fx.origin(APP), &fx.api("/null/denied"), json!({}))
        .await?;
    ensure!(
        f.origin == "null",
        "a sandboxed iframe has an opaque origin, got {:?}",
        f.origin
    );
    blocked(&f, "GET from a sandboxed iframe (Origin: null)")?;
    let seen = fx.upstream.seen_under("/null/denied");
    ensure!(
        seen.len() == 1 && seen[0].header("origin") == Some("null"),
        "the browser should have sent Origin: null: {seen:?}"
    );
    let f = fx
        .browser
        .fetch_sandboxed(&fx.origin(APP), &fx.api("/null-allowed/1"), json!({}))
        .await?;
    status(
        &f,
        200,
        "GET from a sandboxed iframe where \"null\" is listed literally",
    )?;
    Ok(())
}

type Check<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, u16);

async fn vary_origin(fx: &Fixture) -> Result<(), String> {
    let (app, other) = (fx.origin(APP), fx.origin(OTHER));
    let (app, other) = (app.as_str(), other.as_str());
    // (method, path, request headers, expected status)
    let checks: [Check; 8] = [
        ("GET", "/vary-check/allowed", vec![("Origin", app)], 200),
        ("GET", "/vary-check/other", vec![("Origin", other)], 200),
        ("GET", "/vary-check/no-origin", vec![], 200),
        (
            "OPTIONS",
            "/vary-check/preflight",
            vec![("Origin", app), ("Access-Control-Request-Method", "PUT")],
            204,
        ),
        (
            "OPTIONS",
            "/vary-check/rejected",
            vec![("Origin", app), ("Access-Control-Request-Method", "DELETE")],
            403,
        ),
        ("GET", "/status/500", vec![("Origin", app)], 500),
        ("GET", "/down/vary", vec![("Origin", app)], 502),
        ("GET", "/vary/merged", vec![("Origin", app)], 200),
    ];
    let mut wrong = Vec::new();
    for (method, path, headers, want) in &checks {
        let r = fx.plain(method, path, headers).await?;
        let vary = r.all("vary");
        let origins = vary
            .iter()
            .flat_map(|v| v.split(','))
            .filter(|t| t.trim().eq_ignore_ascii_case("origin"))
            .count();
        if r.status != *want || vary.len() != 1 || origins != 1 {
            wrong.push(format!(
                "{method} {path}: HTTP {} (want {want}), Vary lines {vary:?}",
                r.status
            ));
        }
    }
    let r = fx.plain("GET", "/vary/merged", &[("Origin", app)]).await?;
    if r.all("vary") != ["Accept-Encoding, Origin"] {
        wrong.push(format!(
            "the upstream's Vary should be merged, got {:?}",
            r.all("vary")
        ));
    }
    ensure!(
        wrong.is_empty(),
        "Vary: Origin once, on every response: {}",
        wrong.join("; ")
    );
    Ok(())
}

async fn upstream_never_saw_a_preflight(fx: &Fixture) -> Result<(), String> {
    let seen = fx.upstream.seen();
    let preflights: Vec<_> = seen
        .iter()
        .filter(|s| s.method == "OPTIONS" || s.header("access-control-request-method").is_some())
        .map(|s| format!("{} {}", s.method, s.path))
        .collect();
    ensure!(
        preflights.is_empty(),
        "preflight: Respond answers at the edge, yet the upstream saw {preflights:?}"
    );
    ensure!(
        seen.len() > 20,
        "the suite should have sent plenty upstream, saw only {}",
        seen.len()
    );
    Ok(())
}

/// The rows `corsgate demo`'s page must show, in order.
/// `(row, what the browser did, the reason the page shows from the proxy's /explain)`.
const DEMO_ROWS: [(&str, &str, Option<&str>); 7] = [
    ("simple-get", "allowed", None),
    ("preflight-put", "allowed", None),
    (
        "method-blocked",
        "blocked",
        Some("method DELETE is not in allowMethods"),
    ),
    (
        "header-blocked",
        "blocked",
        Some("request header \"x-secret\" is not in allowHeaders"),
    ),
    (
        "origin-blocked",
        "blocked",
        Some("the origin is not in allowOrigins, allowOriginPatterns or a rule"),
    ),
    ("upstream-500", "allowed", None),
    ("upstream-down", "allowed", None),
];

async fn demo_page(fx: &Fixture) -> Result<(), String> {
    let [listen, admin, page, echo, dead] = free_addrs();
    let mut policies = QUICKSTART.to_string();
    for (from, to) in [
        ("127.0.0.1:3000", page.to_string()),
        (
            "app.example.test:3000",
            format!("app.example.test:{}", page.port()),
        ),
        ("\"http://127.0.0.1:9000\"", format!("\"http://{echo}\"")),
        ("\"http://127.0.0.1:9\"", format!("\"http://{dead}\"")),
    ] {
        ensure!(
            policies.contains(from),
            "examples/quickstart.yaml no longer contains {from}; update this test"
        );
        policies = policies.replace(from, &to);
    }
    let file = fx.dir.path().join("demo.yaml");
    std::fs::write(&file, policies).map_err(|e| format!("write {}: {e}", file.display()))?;
    let mut cmd = Command::new(corsgate_bin());
    cmd.arg("demo");
    for (flag, addr) in [
        ("--listen", listen),
        ("--admin", admin),
        ("--page", page),
        ("--upstream", echo),
    ] {
        cmd.args([flag, &addr.to_string()]);
    }
    cmd.arg("--policies").arg(&file);
    cmd.env("NO_COLOR", "1");
    let demo = Corsgate::ready(
        "corsgate demo",
        cmd,
        listen,
        admin,
        &fx.dir.path().join("demo.log"),
    )
    .await?;

    let result = check_demo_page(fx, &format!("http://{page}/")).await;
    drop(demo);
    result
}

async fn check_demo_page(fx: &Fixture, url: &str) -> Result<(), String> {
    fx.browser.goto(url).await?;
    let client = fx.browser.client();
    let deadline = Instant::now() + Duration::from_secs(30);
    let summary = loop {
        let s = client
            .execute(
                "const s = document.getElementById('summary');
                 return s && s.dataset.done === 'true'
                   ? {ok: Number(s.dataset.ok), total: Number(s.dataset.total), text: s.textContent} : null;",
                vec![],
            )
            .await
            .map_err(|e| format!("read #summary: {e}"))?;
        if !s.is_null() {
            break s;
        }
        ensure!(
            Instant::now() < deadline,
            "the demo page did not finish its calls within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // The screenshot is taken before any assertion, so a failure comes with a picture.
    let png = client
        .screenshot()
        .await
        .map_err(|e| format!("screenshot: {e}"))?;
    let shot = artifacts_dir().join("demo.png");
    std::fs::write(&shot, png).map_err(|e| format!("write {}: {e}", shot.display()))?;
    eprintln!("demo screenshot: {}", shot.display());

    let rows = client
        .execute(
            "return Array.from(document.querySelectorAll('#rows tr')).map(tr =>
               ({id: tr.id, verdict: tr.dataset.verdict || null, expected: tr.dataset.expected || null,
                 reason: tr.dataset.reason || null}));",
            vec![],
        )
        .await
        .map_err(|e| format!("read the demo's rows: {e}"))?;
    let rows = rows.as_array().cloned().unwrap_or_default();
    let mut wrong = Vec::new();
    if rows.len() != DEMO_ROWS.len() {
        wrong.push(format!("{} rows, expected {}", rows.len(), DEMO_ROWS.len()));
    }
    for (i, (id, want, reason)) in DEMO_ROWS.iter().enumerate() {
        let row = rows.get(i).cloned().unwrap_or(Value::Null);
        let (got_id, verdict, expected) = (&row["id"], &row["verdict"], &row["expected"]);
        if row["reason"].as_str() != *reason {
            wrong.push(format!(
                "row {i} ({id}) should show the reason {reason:?}, shows {}",
                row["reason"]
            ));
        }
        if *got_id != format!("case-{id}") || *verdict != *want || *expected != *want {
            wrong.push(format!(
                "row {i} should be case-{id} {want}, got id {got_id} verdict {verdict} expected {expected}"
            ));
        }
    }
    let n = DEMO_ROWS.len() as u64;
    if summary["ok"] != n || summary["total"] != n {
        wrong.push(format!("summary {summary}"));
    }
    ensure!(
        wrong.is_empty(),
        "demo page ({}): {}",
        shot.display(),
        wrong.join("; ")
    );
    Ok(())
}

// ---- the runner -----------------------------------------------------------------------

/// Runs each `"name" => case` in order, recording its result under its name.
macro_rules! run_cases {
    ($report:expr, $fx:expr, [$($name:literal => $case:ident),+ $(,)?]) => {
        $($report.run($name, $case($fx)).await;)+
    };
}

#[derive(Default)]
struct Report {
    passed: Vec<&'static str>,
    failed: Vec<String>,
}

impl Report {
    async fn run(&mut self, name: &'static str, case: impl Future<Output = Result<(), String>>) {
        let started = Instant::now();
        let result = match tokio::time::timeout(CASE_DEADLINE, case).await {
            Ok(r) => r,
            Err(_) => Err(format!("did not finish within {CASE_DEADLINE:?}")),
        };
        let took = started.elapsed();
        match result {
            Ok(()) => {
                eprintln!("ok    {name} ({took:.2?})");
                self.passed.push(name);
            }
            Err(e) => {
                eprintln!("FAIL  {name} ({took:.2?}): {e}");
                self.failed.push(format!("[{name}] {e}"));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_end_to_end() {
    let started = Instant::now();
    let fx = Fixture::start().await;
    eprintln!(
        "browser suite: proxy http://{} (admin {}), upstream {}, pages on port {}, logs in {} (setup {:.2?})",
        fx.proxy.listen,
        fx.proxy.admin,
        fx.upstream.addr,
        fx.pages.addr.port(),
        fx.dir.path().display(),
        started.elapsed()
    );
    let mut report = Report::default();
    run_cases!(report, &fx, [
        "simple GET: allowed origin reads it" => simple_get_allowed,
        "simple GET: another origin is blocked" => simple_get_other_origin_blocked,
        "wildcard: subdomains pass, apex and suffix attacks fail" => wildcard_subdomains,
        "regex origin: full match only" => regex_origins,
        "preflighted PUT: passes, upstream never sees OPTIONS" => preflighted_put,
        "disallowed method fails" => disallowed_method,
        "disallowed header fails" => disallowed_header,
        "credentials: cookie works when allowed, reflected" => credentials_allowed,
        "credentials: refused without allowCredentials or with *" => credentials_refused,
        "exposed vs unexposed response headers" => exposed_headers,
        "upstream 500 is readable" => upstream_500,
        "upstream down: 502 is readable" => upstream_down,
        "upstream slow: 504 is readable" => upstream_slow,
        "upstream's permissive CORS headers overridden" => upstream_cors_overridden,
        "Max-Age: identical preflights not sent again" => max_age_honoured,
        "null origin (sandboxed iframe) rejected" => null_origin,
        "Vary: Origin on every response" => vary_origin,
        "upstream never saw a preflight" => upstream_never_saw_a_preflight,
        "demo page: the allowed/blocked table" => demo_page,
    ]);

    let proxy_log = fx.proxy.guard.log_tail(40);
    let Fixture {
        browser,
        proxy,
        upstream,
        pages,
        dir,
    } = fx;
    browser.close().await;
    drop((proxy, upstream, pages));
    // Keep the logs (corsgate, chromedriver, demo) when something failed.
    let logs: PathBuf = if report.failed.is_empty() {
        dir.path().to_path_buf()
    } else {
        dir.keep()
    };
    eprintln!(
        "browser suite: {} passed, {} failed in {:.2?}",
        report.passed.len(),
        report.failed.len(),
        started.elapsed()
    );
    assert!(
        report.failed.is_empty(),
        "{} of {} browser cases failed:\n  {}\n(logs were in {})\n{proxy_log}",
        report.failed.len(),
        report.failed.len() + report.passed.len(),
        report.failed.join("\n  "),
        logs.display()
    );
}
