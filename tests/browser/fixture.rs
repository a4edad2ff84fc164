//! The fixture the browser cases share, and the verdicts they assert.

use super::*;

/// The policies under test. `page` is the page server's port (part of every origin),
/// `upstream` the recording upstream's, `dead` a port nothing listens on.
pub(crate) fn policies(page: u16, upstream: u16, dead: u16) -> String {
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
pub(crate) struct Fixture {
    // Dropped in this order: the browser first, the proxy, then the servers and the files.
    pub(crate) browser: Browser,
    pub(crate) proxy: Corsgate,
    pub(crate) upstream: Upstream,
    pub(crate) pages: Pages,
    pub(crate) dir: tempfile::TempDir,
}

impl Fixture {
    pub(crate) async fn start() -> Fixture {
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

    pub(crate) fn origin(&self, host: &str) -> String {
        self.pages.origin(host)
    }

    /// The API URL the pages call (the proxy, under the API's host name).
    pub(crate) fn api(&self, path: &str) -> String {
        format!("http://{API}:{}{path}", self.proxy.listen.port())
    }

    /// `fetch(api(path), init)` from the page on `host`.
    pub(crate) async fn fetch(
        &self,
        host: &str,
        path: &str,
        init: Value,
    ) -> Result<Fetched, String> {
        self.browser
            .fetch(&self.origin(host), &self.api(path), init)
            .await
    }

    /// A request straight to the proxy, outside the browser, to see every header.
    pub(crate) async fn plain(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<http::Reply, String> {
        let host = format!("{API}:{}", self.proxy.listen.port());
        http::send(self.proxy.listen, method, &host, path, headers).await
    }

    /// `corsgate_proxy_requests_total` for one of the test policies and an outcome.
    pub(crate) async fn counted(&self, policy: &str, outcome: &str) -> Result<u64, String> {
        self.proxy
            .requests(&format!("browser/{policy}"), outcome)
            .await
    }
}

/// The page could read the response.
pub(crate) fn allowed(f: &Fetched, what: &str) -> Result<(), String> {
    ensure!(
        f.ok,
        "{what}: expected the page to read the response, but fetch failed: {f:?}"
    );
    Ok(())
}

/// The browser blocked the response: fetch rejected with a TypeError.
pub(crate) fn blocked(f: &Fetched, what: &str) -> Result<(), String> {
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

pub(crate) fn status(f: &Fetched, want: u16, what: &str) -> Result<(), String> {
    allowed(f, what)?;
    ensure!(
        f.status == Some(want),
        "{what}: expected HTTP {want}, the page read {:?}: {f:?}",
        f.status
    );
    Ok(())
}
