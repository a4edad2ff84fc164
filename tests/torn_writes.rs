//! Torn configuration writes (issue 13 item 1): the real `corsgate proxy` on a policy file
//! or directory that is rewritten under load — in place (truncate, pause, write: what
//! `generator > policies.yaml` does), by rename, and as a ConfigMap volume swaps its
//! `..data` link — must answer every request from a complete configuration: 0 non-2xx.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use support::*;

/// Rewrites per test: each one changes the policies' version.
const REWRITES: u64 = 10;
/// Keep-alive connections of the load.
const CONNECTIONS: usize = 4;
/// Upper bound of requests per connection (the load also stops when the writer is done).
const MAX_REQUESTS_PER_CONNECTION: u64 = 5_000;

/// Two policies, so a half-read file would lose one; `n` changes the version.
fn policies(url: &str, n: u64) -> String {
    let cors =
        format!("  cors:\n    allowOrigins: [\"https://app.example.com\"]\n    maxAgeSeconds: {n}");
    let a = policy("a", "[\"a.example.com\"]", &cors, url);
    let b = policy("b", "[\"b.example.com\"]", &cors, url);
    format!("{a}---\n{b}")
}

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    bad: AtomicU64,
    errors: AtomicU64,
    first_bad: std::sync::Mutex<Option<String>>,
}

/// `CONNECTIONS` sequential request loops over keep-alive connections, alternating hosts,
/// until `stop` (or the per-connection bound).
fn load(
    addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..CONNECTIONS)
        .map(|i| {
            let (stop, tally) = (stop.clone(), tally.clone());
            tokio::spawn(async move {
                let client: Client<HttpConnector, Full<Bytes>> =
                    Client::builder(TokioExecutor::new())
                        .pool_max_idle_per_host(1)
                        .build_http();
                for n in 0..MAX_REQUESTS_PER_CONNECTION {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let host = if (n + i as u64).is_multiple_of(2) {
                        "a.example.com"
                    } else {
                        "b.example.com"
                    };
                    let req = http::Request::get(format!("http://{addr}/x"))
                        .header("host", host)
                        .body(Full::new(Bytes::new()))
                        .expect("request");
                    match tokio::time::timeout(Duration::from_secs(10), client.request(req)).await {
                        Ok(Ok(resp)) => {
                            let status = resp.status();
                            let _ = resp.into_body().collect().await;
                            if status.is_success() {
                                tally.ok.fetch_add(1, Ordering::Relaxed);
                            } else {
                                tally.bad.fetch_add(1, Ordering::Relaxed);
                                tally
                                    .first_bad
                                    .lock()
                                    .expect("lock")
                                    .get_or_insert(format!("{status} for {host}"));
                            }
                        }
                        _ => {
                            tally.errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect()
}

/// Runs the load while `rewrite(n)` is called `REWRITES` times, then checks: no non-2xx, no
/// transport error, real traffic, and the configuration really changed along the way.
async fn assert_no_errors_while(proxy: &Proxy, mut rewrite: impl FnMut(u64) -> Duration) {
    let before = proxy.version().await;
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let tasks = load(proxy.addr, stop.clone(), tally.clone());
    // Let the load start before the first rewrite.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for n in 1..=REWRITES {
        let pause = rewrite(n);
        tokio::time::sleep(pause).await;
    }
    // The last version must be picked up while the load still runs.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut last = before.clone();
    while Instant::now() < deadline {
        let (_, m) = proxy.admin("/metrics").await;
        last = proxy.version().await;
        if last != before && metric(&m, "corsgate_config_policies", &[]) == 2.0 {
            let (_, cfg) = proxy.admin("/config").await;
            if cfg.contains(&format!("\"maxAgeSeconds\": {REWRITES}")) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("load task");
    }
    let (ok, bad, errors) = (
        tally.ok.load(Ordering::Relaxed),
        tally.bad.load(Ordering::Relaxed),
        tally.errors.load(Ordering::Relaxed),
    );
    let (_, m) = proxy.admin("/metrics").await;
    let successes = metric(&m, "corsgate_config_reloads_total", &["result=\"success\""]);
    eprintln!(
        "load: {ok} 2xx, {bad} non-2xx, {errors} transport errors; successful reloads {successes}"
    );
    assert_eq!(
        (bad, errors),
        (0, 0),
        "every request must be answered from a complete configuration ({ok} ok; first bad: {:?}); log:\n{}",
        tally.first_bad.lock().expect("lock"),
        proxy.log_text()
    );
    assert!(ok >= 100, "the load ran ({ok} requests)");
    assert_ne!(last, before, "the configuration changed under load");
    assert!(
        successes >= 3.0,
        "several rewrites were loaded ({successes})"
    );
    let (_, cfg) = proxy.admin("/config").await;
    assert!(
        cfg.contains(&format!("\"maxAgeSeconds\": {REWRITES}")),
        "the last rewrite is served: {cfg}"
    );
}

async fn start(dir: tempfile::TempDir, path: PathBuf) -> Proxy {
    Proxy::start_at_with(dir, path, true, &[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_place_rewrites_truncate_then_write_lose_no_request() {
    let up = Upstream::start().await;
    let url = up.url();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("policies.yaml");
    std::fs::write(&path, policies(&url, 0)).expect("write");
    let proxy = start(dir, path.clone()).await;
    assert_no_errors_while(&proxy, |n| {
        // `generator > policies.yaml`: the shell truncates, the generator writes later —
        // here later than the proxy's 150 ms settle time, so the empty file is read.
        tokio::task::block_in_place(|| {
            let mut f = std::fs::File::create(&path).expect("truncate");
            std::thread::sleep(Duration::from_millis(250));
            f.write_all(policies(&url, n).as_bytes()).expect("write");
        });
        // Long enough after the write for the file to settle (the proxy waits 150 ms).
        Duration::from_millis(300)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_rewrites_lose_no_request() {
    let up = Upstream::start().await;
    let url = up.url();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("policies.yaml");
    std::fs::write(&path, policies(&url, 0)).expect("write");
    let proxy = start(dir, path.clone()).await;
    assert_no_errors_while(&proxy, |n| {
        write_atomically(&path, &policies(&url, n));
        Duration::from_millis(200)
    })
    .await;
}

/// What the kubelet's atomic writer does for a ConfigMap volume: the files live in a
/// timestamped directory, `..data` links to it, each visible name links through `..data`;
/// an update writes a new directory, renames a new `..data` link over the old one, then
/// removes the old directory.
struct ConfigMapDir {
    root: PathBuf,
    current: Option<PathBuf>,
}

impl ConfigMapDir {
    fn new(root: &Path) -> ConfigMapDir {
        ConfigMapDir {
            root: root.to_path_buf(),
            current: None,
        }
    }

    fn update(&mut self, n: u64, files: &[(&str, String)]) {
        let data = self.root.join(format!("..2026_12_02_{n:04}"));
        std::fs::create_dir(&data).expect("mkdir");
        for (name, text) in files {
            std::fs::write(data.join(name), text).expect("write");
        }
        let tmp = self.root.join("..data_tmp");
        std::os::unix::fs::symlink(data.file_name().expect("name"), &tmp).expect("symlink");
        std::fs::rename(&tmp, self.root.join("..data")).expect("swap ..data");
        for (name, _) in files {
            let visible = self.root.join(name);
            if std::fs::symlink_metadata(&visible).is_err() {
                std::os::unix::fs::symlink(Path::new("..data").join(name), &visible).expect("link");
            }
        }
        if let Some(old) = self.current.replace(data) {
            std::fs::remove_dir_all(old).expect("remove old data");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmap_data_link_swaps_lose_no_request() {
    let up = Upstream::start().await;
    let url = up.url();
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("volume");
    std::fs::create_dir(&root).expect("mkdir");
    // One policy per file, so a swap seen half-way would lose one of them.
    let files = |n: u64| {
        let text = policies(&url, n);
        let (a, b) = text.split_once("---\n").expect("two documents");
        vec![("a.yaml", a.to_string()), ("b.yaml", b.to_string())]
    };
    let mut volume = ConfigMapDir::new(&root);
    volume.update(0, &files(0));
    let proxy = start(dir, root.clone()).await;
    assert_no_errors_while(&proxy, |n| {
        volume.update(n, &files(n));
        Duration::from_millis(200)
    })
    .await;
}

/// A file emptied after it served policies is refused: the last good configuration keeps
/// serving, the failure is logged, counted by reason and shown by `/config`.
#[tokio::test]
async fn emptied_file_keeps_the_last_good_configuration_and_says_so() {
    let up = Upstream::start().await;
    let url = up.url();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("policies.yaml");
    std::fs::write(&path, policies(&url, 0)).expect("write");
    let proxy = start(dir, path.clone()).await;
    let version = proxy.version().await;
    std::fs::write(&path, "").expect("empty the file");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, m) = proxy.admin("/metrics").await;
        if metric(
            &m,
            "corsgate_config_reload_failures_total",
            &["reason=\"empty\""],
        ) >= 1.0
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no empty-source failure counted; metrics:\n{m}\nlog:\n{}",
            proxy.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        proxy.version().await,
        version,
        "the last good configuration stays"
    );
    let got = send(proxy.addr, "GET", "/x", &[("host", "a.example.com")]).await;
    assert_eq!(got.status, 200, "still served: {got:?}");
    let (ready, _) = proxy.admin("/readyz").await;
    assert_eq!(ready, 200);
    let (_, cfg) = proxy.admin("/config").await;
    let cfg: serde_json::Value = serde_json::from_str(&cfg).expect("json");
    let errors = cfg["lastLoad"]["errors"].to_string();
    assert!(
        errors.contains("no policies"),
        "/config names the problem: {cfg}"
    );
    assert_eq!(cfg["lastLoad"]["reason"], "empty", "{cfg}");
    assert!(
        proxy.log_text().contains("no policies"),
        "logged:\n{}",
        proxy.log_text()
    );
    // Writing policies again recovers.
    std::fs::write(&path, policies(&url, 7)).expect("write");
    let new = proxy.wait_version_change(&version).await;
    assert_ne!(new, version);
}

/// An empty file at startup is allowed (existing behaviour): the proxy is ready with zero
/// policies and answers 404; a later file with policies is loaded.
#[tokio::test]
async fn empty_file_at_startup_serves_nothing_until_policies_arrive() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("policies.yaml");
    std::fs::write(&path, "").expect("write");
    let proxy = start(dir, path.clone()).await;
    let got = send(proxy.addr, "GET", "/x", &[("host", "a.example.com")]).await;
    assert_eq!(got.status, 404);
    let version = proxy.version().await;
    write_atomically(&path, &policies(&up.url(), 1));
    proxy.wait_version_change(&version).await;
    let got = send(proxy.addr, "GET", "/x", &[("host", "a.example.com")]).await;
    assert_eq!(got.status, 200, "{got:?}");
}
