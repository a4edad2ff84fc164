//! Shared fixtures of the black-box tests: a recording upstream, the real `corsgate` binary
//! started on loopback and stopped by PID, and an HTTP client that sends exactly the headers
//! a test gives it.
#![allow(dead_code)]

mod clients;
// Not every test crate that includes `support` uses them.
#[allow(unused_imports)]
pub use clients::{send_h2, send_raw};

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

pub type TestBody = BoxBody<Bytes, std::io::Error>;

/// One request as the upstream saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    /// The request target exactly as sent (origin-form or absolute-form).
    pub target: String,
    pub headers: HeaderMap,
}

/// A loopback upstream that records every request. Paths choose its behaviour:
/// `/status/NNN`, `/slow/MS`, `/cors` (sends its own permissive CORS headers),
/// `/security-headers` (sends its own HSTS, X-Frame-Options and the like), `/vary`
/// (sends `Vary: Accept-Encoding`), `/hop` (sends hop-by-hop headers), `/download/N`
/// (streams N bytes), `/upload` (reads the body, answers its length), `/echo` (answers
/// the body it read); else 200 "ok".
pub struct Upstream {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// Connections accepted so far.
    pub connections: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn full(status: u16, body: impl Into<Bytes>) -> Response<TestBody> {
    let mut r = Response::new(
        Full::new(body.into())
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    r
}

async fn upstream_handler(
    seen: Arc<Mutex<Vec<Seen>>>,
    req: Request<Incoming>,
) -> Result<Response<TestBody>, Infallible> {
    let path = req.uri().path().to_string();
    seen.lock().unwrap().push(Seen {
        method: req.method().clone(),
        path: path.clone(),
        target: req.uri().to_string(),
        headers: req.headers().clone(),
    });
    let mut resp = if let Some(code) = path.strip_prefix("/status/") {
        full(code.parse().unwrap_or(400), format!("status {code}"))
    } else if let Some(ms) = path.strip_prefix("/slow/") {
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
        full(200, "slow ok")
    } else if path == "/cors" {
        let mut r = full(200, "permissive upstream");
        r.headers_mut()
            .insert("access-control-allow-origin", "*".parse().unwrap());
        r.headers_mut()
            .insert("access-control-allow-methods", "*".parse().unwrap());
        r.headers_mut()
            .insert("access-control-expose-headers", "x-secret".parse().unwrap());
        r
    } else if path == "/security-headers" {
        let mut r = full(200, "upstream with its own security headers");
        for (k, v) in [
            ("strict-transport-security", "max-age=60"),
            ("x-content-type-options", "sniff-away"),
            ("x-frame-options", "DENY"),
            ("referrer-policy", "no-referrer"),
            ("x-xss-protection", "0"),
        ] {
            r.headers_mut().insert(k, v.parse().unwrap());
        }
        r
    } else if path == "/vary" {
        let mut r = full(200, "vary");
        r.headers_mut()
            .insert("vary", "Accept-Encoding".parse().unwrap());
        r
    } else if path == "/hop" {
        let mut r = full(200, "hop");
        r.headers_mut()
            .insert("connection", "x-hop-resp".parse().unwrap());
        r.headers_mut().insert("x-hop-resp", "1".parse().unwrap());
        r.headers_mut()
            .insert("keep-alive", "timeout=5".parse().unwrap());
        r
    } else if let Some(n) = path.strip_prefix("/download/") {
        let total: u64 = n.parse().unwrap_or(0);
        let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
        let chunks = total / chunk.len() as u64;
        let stream = futures_stream(chunks, chunk);
        let mut r = Response::new(BodyExt::boxed(StreamBody::new(stream)));
        r.headers_mut().insert(
            "content-length",
            (chunks * 64 * 1024).to_string().parse().unwrap(),
        );
        r
    } else if path == "/upload" {
        let mut body = req.into_body();
        let mut n: u64 = 0;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => n += f.data_ref().map_or(0, |d| d.len() as u64),
                Err(_) => break,
            }
        }
        full(200, n.to_string())
    } else if path == "/echo" {
        match req.into_body().collect().await {
            Ok(b) => full(200, b.to_bytes()),
            Err(e) => full(400, format!("body: {e}")),
        }
    } else {
        full(200, "ok")
    };
    resp.headers_mut()
        .insert("x-request-id", "req-1".parse().unwrap());
    resp.headers_mut()
        .insert("x-internal", "hidden".parse().unwrap());
    Ok(resp)
}

/// A stream of `count` copies of `chunk`, produced lazily (flat memory on this side too).
pub fn futures_stream(
    count: u64,
    chunk: Bytes,
) -> impl futures_core::Stream<Item = Result<Frame<Bytes>, std::io::Error>> + Send {
    struct Chunks {
        left: u64,
        chunk: Bytes,
    }
    impl futures_core::Stream for Chunks {
        type Item = Result<Frame<Bytes>, std::io::Error>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            if self.left == 0 {
                return std::task::Poll::Ready(None);
            }
            self.left -= 1;
            std::task::Poll::Ready(Some(Ok(Frame::data(self.chunk.clone()))))
        }
    }
    Chunks { left: count, chunk }
}

impl Upstream {
    pub async fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (s, n) = (seen.clone(), connections.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let s = s.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| upstream_handler(s.clone(), req));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Upstream {
            addr,
            seen,
            connections,
            task,
        }
    }

    /// Connections the upstream has accepted.
    pub fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn clear(&self) {
        self.seen.lock().unwrap().clear();
    }
}

/// A port nothing listens on (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The binary under test; `CORSGATE_BIN` names another build to run the same test against
/// (how the hardening tests were measured before and after their fixes).
pub fn corsgate_bin() -> PathBuf {
    std::env::var_os("CORSGATE_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_corsgate")),
        PathBuf::from,
    )
}

/// The real `corsgate proxy`, killed by PID on drop.
pub struct Proxy {
    pub child: Child,
    pub addr: SocketAddr,
    /// `--listen-tls` (HTTPS by SNI).
    pub tls_addr: SocketAddr,
    pub admin: SocketAddr,
    pub dir: tempfile::TempDir,
    pub policies: PathBuf,
    pub log: PathBuf,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proxy {
    /// Starts the proxy on `policies_yaml` (written to a file in a fresh temp dir) and waits
    /// until its admin port answers; with `expect_ready`, until `/readyz` is 200.
    pub async fn start(policies_yaml: &str, expect_ready: bool) -> Proxy {
        let dir = tempfile::tempdir().unwrap();
        let policies = dir.path().join("policies.yaml");
        std::fs::write(&policies, policies_yaml).unwrap();
        Self::start_at(dir, policies, expect_ready).await
    }

    /// [`Proxy::start`] with extra `corsgate proxy` flags.
    pub async fn start_with(policies_yaml: &str, flags: &[&str]) -> Proxy {
        let dir = tempfile::tempdir().unwrap();
        let policies = dir.path().join("policies.yaml");
        std::fs::write(&policies, policies_yaml).unwrap();
        Self::start_at_with(dir, policies, true, flags).await
    }

    pub async fn start_at(dir: tempfile::TempDir, policies: PathBuf, expect_ready: bool) -> Proxy {
        Self::start_at_with(dir, policies, expect_ready, &[]).await
    }

    /// [`Proxy::start_at`] with `extra` flags after the usual ones (a later flag wins).
    pub async fn start_at_with(
        dir: tempfile::TempDir,
        policies: PathBuf,
        expect_ready: bool,
        extra: &[&str],
    ) -> Proxy {
        Self::start_limited(dir, policies, expect_ready, extra, None).await
    }

    /// [`Proxy::start_at_with`], with the open-file limit set to `nofile` (through
    /// `sh -c 'ulimit -n N; exec corsgate ...'`, so the PID is still the proxy's).
    pub async fn start_limited(
        dir: tempfile::TempDir,
        policies: PathBuf,
        expect_ready: bool,
        extra: &[&str],
        nofile: Option<u32>,
    ) -> Proxy {
        // A port picked free can be taken by another test before the proxy binds it: the
        // proxy then exits naming the address, and is started again on other ports.
        let mut dir = dir;
        for attempt in 1.. {
            let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            let tls_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            let log = dir.path().join("proxy.log");
            let mut cmd = match nofile {
                None => Command::new(corsgate_bin()),
                Some(n) => {
                    let mut c = Command::new("sh");
                    c.args(["-c", &format!("ulimit -n {n} && exec \"$0\" \"$@\"")])
                        .arg(corsgate_bin());
                    c
                }
            };
            let child = cmd
                .args(["proxy", "--policies"])
                .arg(&policies)
                .args([
                    "--listen",
                    &addr.to_string(),
                    "--listen-tls",
                    &tls_addr.to_string(),
                    "--admin",
                    &admin.to_string(),
                    "--poll-interval-seconds",
                    "1",
                ])
                .args(["--drain-timeout-seconds", "5"])
                .args(extra)
                .env("RUST_LOG", "info")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .expect("start corsgate");
            let mut p = Proxy {
                child,
                addr,
                tls_addr,
                admin,
                dir,
                policies: policies.clone(),
                log,
            };
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut lost_port = false;
            loop {
                if let Ok(r) = admin_get(admin, "/readyz").await
                    && (!expect_ready || r.0 == 200)
                {
                    break;
                }
                if p.child.try_wait().ok().flatten().is_some()
                    && p.log_text().contains("cannot listen on")
                    && attempt < 5
                {
                    lost_port = true;
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "proxy did not become ready; log:\n{}",
                    p.log_text()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if !lost_port {
                return p;
            }
            dir = p.take_dir();
        }
        unreachable!("the loop returns or panics")
    }

    /// The temp dir (with the policies), for a restart; this process is stopped on drop.
    fn take_dir(&mut self) -> tempfile::TempDir {
        std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident memory (VmHWM) of the proxy process, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    pub async fn admin(&self, path: &str) -> (u16, String) {
        admin_get(self.admin, path).await.unwrap()
    }

    /// The version `/config` reports, once it differs from `old` (bounded wait).
    pub async fn wait_version_change(&self, old: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let (_, body) = self.admin("/config").await;
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            if let Some(new) = v["version"].as_str()
                && new != old
            {
                return new.to_string();
            }
            assert!(
                Instant::now() < deadline,
                "config version stayed {old}; log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn version(&self) -> String {
        let (_, body) = self.admin("/config").await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["version"].as_str().unwrap_or_default().to_string()
    }
}

pub async fn admin_get(admin: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let req = Request::get(format!("http://{admin}{path}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(5), client.request(req))
        .await
        .map_err(|_| "timeout".to_string())?
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// A response as the test client saw it.
#[derive(Debug)]
pub struct Got {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Got {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    /// Every `Access-Control-*` header, sorted, as `name: value`.
    pub fn cors_headers(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .headers
            .iter()
            .filter(|(k, _)| k.as_str().starts_with("access-control-"))
            .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap()))
            .collect();
        v.sort();
        v
    }

    pub fn vary(&self) -> Vec<String> {
        self.headers
            .get_all("vary")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }
}

/// Sends one request to `addr` with exactly these headers (Host included) and reads the body.
pub async fn send(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Got {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let mut b = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = tokio::time::timeout(
        Duration::from_secs(20),
        client.request(b.body(Full::new(Bytes::new())).unwrap()),
    )
    .await
    .expect("request timed out")
    .expect("request failed");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Got {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// A policy document for `url`, with `cors` and extra `spec` lines given as YAML.
pub fn policy(name: &str, hosts: &str, extra_spec: &str, url: &str) -> String {
    format!(
        "apiVersion: corsgate.dev/v1alpha1\nkind: CorsPolicy\nmetadata: {{name: {name}, namespace: test}}\nspec:\n  hosts: {hosts}\n  upstream: {{url: \"{url}\", timeoutSeconds: 2}}\n{extra_spec}\n"
    )
}

pub fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Counts lines of `/metrics` text matching all of `needles`, returning the sample value.
pub fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|n| l.contains(n)))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

pub fn counts(seen: &[Seen]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for s in seen {
        *m.entry(format!("{} {}", s.method, s.path)).or_insert(0) += 1;
    }
    m
}

/// A `corsgate proxy --controller` process, killed by PID on drop.
pub struct StreamProxy {
    pub child: Child,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
}

impl Drop for StreamProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `corsgate proxy --controller http://CONTROLLER --proxy-id ID` on free loopback
/// ports, with `extra` flags.
pub fn spawn_stream_proxy(controller: SocketAddr, id: &str, extra: &[&str]) -> StreamProxy {
    spawn_stream_proxy_url(&format!("http://{controller}"), id, extra)
}

/// As [`spawn_stream_proxy`], with the controller's URL as given (e.g. `https://localhost:P`).
pub fn spawn_stream_proxy_url(controller: &str, id: &str, extra: &[&str]) -> StreamProxy {
    let port = || -> SocketAddr { format!("127.0.0.1:{}", free_port()).parse().unwrap() };
    let (listen, admin) = (port(), port());
    let child = Command::new(env!("CARGO_BIN_EXE_corsgate"))
        .args(["proxy", "--controller", controller, "--proxy-id", id])
        .args([
            "--listen",
            &listen.to_string(),
            "--listen-tls",
            "off",
            "--admin",
            &admin.to_string(),
            "--drain-timeout-seconds",
            "1",
        ])
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn corsgate proxy");
    StreamProxy {
        child,
        listen,
        admin,
    }
}

/// Polls `f` every 50 ms until it holds; panics naming `what` after 20 s.
pub async fn eventually<F: FnMut() -> bool>(what: &str, mut f: F) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}
