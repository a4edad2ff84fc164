//! Chromium, headless, driven through chromedriver (WebDriver, via fantoccini).
//!
//! A missing browser or driver fails the test with the command that installs them: a CORS
//! suite that silently passes without a browser proves nothing. chromedriver listens on a
//! free loopback port; Chromium gets a fresh profile and resolves every `*.example.test`
//! name to 127.0.0.1, so pages and APIs have distinct, real-looking origins without any
//! traffic leaving the machine.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use fantoccini::wd::TimeoutConfiguration;
use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use serde::Deserialize;
use serde_json::{Value, json};

use super::process::{Guard, free_addrs};
use super::servers::PROBE_JS;

pub const INSTALL: &str = "apt-get install -y chromium chromium-driver";

/// Finds an executable: `$env_var` if set, else the first of `names` on `PATH`.
fn find(env_var: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env_var) {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

/// The Chromium and chromedriver executables, or a panic that says how to install them.
pub fn locate() -> (PathBuf, PathBuf) {
    let chromium = find(
        "CORSGATE_CHROMIUM",
        &["chromium", "chromium-browser", "google-chrome"],
    );
    let driver = find("CORSGATE_CHROMEDRIVER", &["chromedriver"]);
    match (chromium, driver) {
        (Some(c), Some(d)) => (c, d),
        (c, d) => panic!(
            "the browser suite needs Chromium and chromedriver (found chromium: {}, chromedriver: {}).\n\
             Install them with:\n\n    {INSTALL}\n\n\
             or point CORSGATE_CHROMIUM / CORSGATE_CHROMEDRIVER at them. This suite never skips.",
            c.map_or_else(|| "no".to_string(), |p| p.display().to_string()),
            d.map_or_else(|| "no".to_string(), |p| p.display().to_string()),
        ),
    }
}

/// The Chromium command line, as issue 7 specifies it.
pub fn chromium_args(profile: &Path) -> Vec<String> {
    vec![
        "--headless".into(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-quic".into(),
        "--no-first-run".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        format!("--user-data-dir={}", profile.display()),
        "--host-resolver-rules=MAP *.example.test 127.0.0.1".into(),
    ]
}

/// What a page's `probe()` resolved to: what JavaScript was allowed to see.
#[derive(Debug, Clone, Deserialize)]
pub struct Fetched {
    /// false: `fetch` rejected (a CORS failure is a TypeError with no details).
    pub ok: bool,
    pub status: Option<u16>,
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    pub body: Option<String>,
    pub error: Option<String>,
    /// The calling document's origin, as JavaScript sees it.
    pub origin: String,
}

impl Fetched {
    pub fn json(&self) -> Value {
        self.body
            .as_deref()
            .and_then(|b| serde_json::from_str(b).ok())
            .unwrap_or(Value::Null)
    }
}

/// chromedriver, one Chromium session, and everything needed to stop both.
pub struct Browser {
    client: Option<Client>,
    /// Which page is loaded, so consecutive probes from one origin navigate once.
    current: tokio::sync::Mutex<String>,
    driver: Guard,
    driver_addr: SocketAddr,
    profile: PathBuf,
    _dir: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a Chromium session; logs go to `log_dir`.
    pub async fn start(log_dir: &Path) -> Browser {
        Browser::start_with(log_dir, &[]).await
    }

    /// As [`Browser::start`], with more Chromium flags (e.g.
    /// `--ignore-certificate-errors-spki-list=HASH` to trust a test certificate).
    pub async fn start_with(log_dir: &Path, extra_args: &[String]) -> Browser {
        let (chromium, chromedriver) = locate();
        let dir = tempfile::Builder::new()
            .prefix("corsgate-chromium-")
            .tempdir()
            .expect("a temporary directory");
        let profile = dir.path().join("profile");
        let [addr] = free_addrs();
        let mut cmd = Command::new(&chromedriver);
        cmd.arg(format!("--port={}", addr.port()));
        let mut driver = Guard::spawn("chromedriver", cmd, &log_dir.join("chromedriver.log"));

        let deadline = Instant::now() + Duration::from_secs(15);
        while !driver_ready(addr) {
            if let Some(status) = driver.exited() {
                panic!("chromedriver exited with {status}\n{}", driver.log_tail(20));
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver not ready on {addr} within 15 s\n{}",
                driver.log_tail(20)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({ "binary": chromium, "args": chromium_args(&profile).into_iter().chain(extra_args.iter().cloned()).collect::<Vec<_>>() }),
        );
        // Not yet a Browser: if the session fails, `driver` and `dir` drop here, and the
        // sweep below finds any Chromium the half-made session left.
        let mut builder = ClientBuilder::new(HttpConnector::new());
        builder.capabilities(caps);
        let url = format!("http://{addr}");
        let connect = builder.connect(&url);
        let client = match tokio::time::timeout(Duration::from_secs(60), connect).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                kill_profile_processes(&profile);
                panic!(
                    "cannot start a Chromium session via chromedriver: {e}\n{}",
                    driver.log_tail(30)
                )
            }
            Err(_) => {
                kill_profile_processes(&profile);
                panic!("no Chromium session within 60 s\n{}", driver.log_tail(30))
            }
        };
        let timeouts = TimeoutConfiguration::new(
            Some(Duration::from_secs(20)),
            Some(Duration::from_secs(20)),
            Some(Duration::ZERO),
        );
        client
            .update_timeouts(timeouts)
            .await
            .expect("set WebDriver timeouts");
        // Room for the demo's table in its screenshot.
        client
            .set_window_size(1280, 1000)
            .await
            .expect("set the window size");
        Browser {
            client: Some(client),
            current: tokio::sync::Mutex::new(String::new()),
            driver,
            driver_addr: addr,
            profile,
            _dir: dir,
        }
    }

    pub fn client(&self) -> &Client {
        self.client
            .as_ref()
            .expect("the session is open until Browser::close")
    }

    /// Loads `url` in the tab (a top-level navigation).
    pub async fn goto(&self, url: &str) -> Result<(), String> {
        let mut current = self.current.lock().await;
        self.client()
            .goto(url)
            .await
            .map_err(|e| format!("navigate to {url}: {e}"))?;
        current.clear();
        current.push_str(url);
        Ok(())
    }

    /// Makes sure the page of `origin` (served by the page server) is loaded, and that the
    /// browser agrees on its origin (no upgrade to https, no redirect).
    pub async fn open(&self, origin: &str) -> Result<(), String> {
        let url = format!("{origin}/");
        if *self.current.lock().await == url {
            return Ok(());
        }
        self.goto(&url).await?;
        let seen = self
            .client()
            .execute("return self.origin;", vec![])
            .await
            .map_err(|e| format!("read location.origin: {e}"))?;
        if seen.as_str() != Some(origin) {
            return Err(format!("opened {url} but the page's origin is {seen}"));
        }
        Ok(())
    }

    /// From a page on `origin`, `fetch(url, init)`; returns what JavaScript saw.
    pub async fn fetch(&self, origin: &str, url: &str, init: Value) -> Result<Fetched, String> {
        self.open(origin).await?;
        let script = "const [url, init, done] = arguments; probe(url, init).then(done);";
        let v = self
            .client()
            .execute_async(script, vec![json!(url), init])
            .await
            .map_err(|e| format!("run fetch({url}) from {origin}: {e}"))?;
        serde_json::from_value(v.clone()).map_err(|e| format!("probe result {v}: {e}"))
    }

    /// From a page on `origin`, `fetch(url, init)` inside an `<iframe sandbox="allow-scripts">`
    /// (an opaque origin, so the request carries `Origin: null`).
    pub async fn fetch_sandboxed(
        &self,
        origin: &str,
        url: &str,
        init: Value,
    ) -> Result<Fetched, String> {
        self.open(origin).await?;
        let script = r#"
const [probeSource, url, init, done] = arguments;
const frame = document.createElement("iframe");
frame.setAttribute("sandbox", "allow-scripts");
const timer = setTimeout(() => done({ ok: false, error: "no answer from the sandboxed iframe in 10 s", origin: "?" }), 10000);
window.addEventListener("message", function onMessage(e) {
  if (e.source !== frame.contentWindow) return;
  window.removeEventListener("message", onMessage);
  clearTimeout(timer);
  frame.remove();
  done(e.data);
});
frame.srcdoc = "<script>" + probeSource + "\nprobe(" + JSON.stringify(url) + ", " + JSON.stringify(init) +
  ").then(r => parent.postMessage(r, '*'));<\/script>";
document.body.appendChild(frame);
"#;
        let v = self
            .client()
            .execute_async(script, vec![json!(PROBE_JS), json!(url), init])
            .await
            .map_err(|e| format!("run a sandboxed fetch({url}) from {origin}: {e}"))?;
        serde_json::from_value(v.clone()).map_err(|e| format!("probe result {v}: {e}"))
    }

    /// Ends the session (chromedriver then stops Chromium) and chromedriver itself.
    pub async fn close(mut self) {
        if let Some(c) = self.client.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), c.close()).await;
        }
        // Drop does the rest.
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // On a panic the session may still be open: chromedriver's /shutdown quits every
        // session's browser and then the driver; the guard kills it by PID if it lingers,
        // and any Chromium still using our profile is killed by PID too.
        drop(self.client.take());
        shutdown_driver(self.driver_addr);
        if !self.driver.wait_exit(Duration::from_secs(5)) {
            eprintln!(
                "chromedriver (pid {}) did not stop after /shutdown; killing it",
                self.driver.pid()
            );
        }
        kill_profile_processes(&self.profile);
    }
}

/// True when chromedriver answers `GET /status` with `"ready": true`.
fn driver_ready(addr: SocketAddr) -> bool {
    get_blocking(addr, "/status")
        .is_some_and(|body| body.contains("\"ready\":true") || body.contains("\"ready\": true"))
}

fn shutdown_driver(addr: SocketAddr) {
    let _ = get_blocking(addr, "/shutdown");
}

/// A tiny blocking GET with short timeouts: usable from `Drop`, even while a runtime unwinds.
fn get_blocking(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    Some(out)
}

/// Kills (by PID, with SIGKILL) every process whose command line names `profile`: the
/// Chromium processes of this test's session and no other.
fn kill_profile_processes(profile: &Path) {
    let needle = format!("--user-data-dir={}", profile.display());
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if cmdline
            .split(|b| *b == 0)
            .any(|arg| arg == needle.as_bytes())
        {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}
