//! Shared fixtures of the black-box tests: a recording upstream, the real `corsgate` binary
//! started on loopback and stopped by PID, and an HTTP client that sends exactly the headers
//! a test gives it.
#![allow(dead_code)]

mod clients;
// Not every test crate that includes `support` uses them.
#[allow(unused_imports)]
pub use clients::{send_h2, send_raw};
mod upstream;
#[allow(unused_imports)]
pub use upstream::{Seen, TestBody, Upstream, futures_stream};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

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
    spawn_stream_proxy_tls(controller, id, None, extra)
}

/// [`spawn_stream_proxy_url`] with the HTTPS listener on `listen_tls` (None: off).
pub fn spawn_stream_proxy_tls(
    controller: &str,
    id: &str,
    listen_tls: Option<SocketAddr>,
    extra: &[&str],
) -> StreamProxy {
    let port = || -> SocketAddr { format!("127.0.0.1:{}", free_port()).parse().unwrap() };
    let (listen, admin) = (port(), port());
    let tls = listen_tls.map_or("off".to_string(), |a| a.to_string());
    let child = Command::new(env!("CARGO_BIN_EXE_corsgate"))
        .args(["proxy", "--controller", controller, "--proxy-id", id])
        .args([
            "--listen",
            &listen.to_string(),
            "--listen-tls",
            &tls,
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

/// A proxy serving `api.example.com` from `up` (policy `api`), with `extra` flags.
pub async fn api_proxy(up: &Upstream, extra: &[&str]) -> Proxy {
    let yaml = policy("api", "[\"api.example.com\"]", "", &up.url());
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("policies.yaml");
    std::fs::write(&path, yaml).expect("write");
    Proxy::start_at_with(dir, path, true, extra).await
}

/// utime + stime, in clock ticks, from the text of a `/proc/…/stat` file (the fields after
/// the command name, which may hold spaces, start at ") "); None when it is not one.
pub fn stat_ticks(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| f.get(i)?.parse::<u64>().ok();
    Some(n(11)? + n(12)?)
}
