//! `corsgate proxy --controller URL`: the proxy's side of the config stream.
//!
//! Long-polls `GET {URL}/v1/config?version=<serving>&proxy=<id>`; the version it asks with
//! is its acknowledgement. A 200 carries a `config::wire::ConfigDocument`, rebuilt here with
//! the same `Snapshot::build` as the controller and installed atomically only when the
//! version matches. A 304 means nothing changed. Anything else (503 while the controller
//! starts, connection refused while it restarts, a bad document) keeps the last good
//! snapshot serving and retries with exponential backoff and full jitter, so a fleet of
//! proxies does not reconnect in lockstep. Readiness (`/readyz`) follows the store: ready
//! after the first snapshot, and it stays ready while the controller is away.
//!
//! Shadow-mode counts go the other way: every `shadow_report` the proxy drains its tallies
//! and `POST`s them to `{URL}/v1/shadow` (a failed report is added back for the next one,
//! and a last one is sent on shutdown).
//!
//! With `tls` (`--client-cert`, `--client-key`, `--controller-ca`, an `https://` URL), both
//! go over mutually authenticated TLS: the proxy trusts only the controller's CA and presents
//! its own certificate. Without, `http://` stays cleartext (a laptop, the loopback tests).

use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use bytes::Bytes;
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use tokio::sync::watch;

use super::metrics::Metrics;
use super::store::Store;
use crate::config::shadow::{PolicyShadow, ShadowCounts, ShadowReport};
use crate::config::wire::{ConfigDocument, WireError};
use crate::serve;

/// The largest config document accepted (a bound on what a confused server can make us hold).
const MAX_DOCUMENT: usize = 64 << 20;
/// How long a shadow report may take.
const REPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Options of `corsgate proxy --controller`.
#[derive(Debug, Clone)]
pub struct StreamOptions {
    /// The controller's stream base URL, e.g. http://corsgate-controller.corsgate:9090.
    pub controller: Uri,
    /// This proxy's name in acknowledgements (the pod name).
    pub proxy_id: String,
    /// Backoff bounds between failed polls.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Client-side bound on one poll (above the controller's long-poll wait).
    pub poll_timeout: Duration,
    /// How often shadow-mode counts are reported to the controller.
    pub shadow_report: Duration,
    /// Bound on connecting to the controller.
    pub connect_timeout: Duration,
    /// Mutually authenticated TLS to an `https://` controller; `None`: only `http://` works.
    pub tls: Option<Box<serve::MutualFiles>>,
}

/// The connector to the controller: `http://` in cleartext, `https://` with `tls` (an
/// `https://` URL without it fails each connection, naming the missing flags).
pub type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// Builds the [`Connector`]; fails when the TLS files cannot be read or used.
pub fn connector(opts: &StreamOptions) -> Result<Connector, serve::TlsError> {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.set_connect_timeout(Some(opts.connect_timeout));
    http.enforce_http(false);
    let config = match &opts.tls {
        Some(files) => serve::tls::mutual_client(files)?,
        // No roots: an https:// controller without --controller-ca is refused.
        None => rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(serve::TlsError::Rustls)?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth(),
    };
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http))
}

/// Why talking to the controller failed. The message is what `/config` shows in `lastLoad`.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("bad controller URL: {0}")]
    Url(#[source] http::Error),
    #[error("cannot reach the controller: {0}")]
    Unreachable(#[source] hyper_util::client::legacy::Error),
    #[error("the controller did not answer in time")]
    Timeout,
    #[error("the config document did not arrive in time")]
    BodyTimeout,
    #[error("cannot read the config document: {0}")]
    Body(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the controller answered {status}: {body}")]
    Status { status: StatusCode, body: String },
    #[error("the controller answered {0}")]
    Refused(StatusCode),
    #[error(transparent)]
    Document(#[from] WireError),
    #[error("cannot encode the shadow report: {0}")]
    Encode(#[source] serde_json::Error),
}

/// Exponential backoff (`backon`'s schedule: `min`, doubling, capped at `max`) with full
/// jitter on top: a random delay in [0, current], never below `min / 2`. backon's own jitter
/// adds up to one more window (so it could exceed `max`), hence the jitter here.
#[derive(Debug)]
pub struct Backoff {
    builder: ExponentialBuilder,
    schedule: <ExponentialBuilder as BackoffBuilder>::Backoff,
    min: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Backoff {
        let builder = ExponentialBuilder::new()
            .with_min_delay(min)
            .with_max_delay(max.max(min))
            .without_max_times();
        Backoff {
            builder,
            schedule: builder.build(),
            min,
            max: max.max(min),
        }
    }

    pub fn reset(&mut self) {
        self.schedule = self.builder.build();
    }

    /// The next delay; `unit` in [0, 1) picks where in the window it lands.
    pub fn next_with(&mut self, unit: f64) -> Duration {
        // backon multiplies in f32; whole milliseconds (tokio's timer resolution) drop the noise.
        let window = self.schedule.next().unwrap_or(self.max).as_secs_f64() * 1000.0;
        Duration::from_millis(window.round() as u64)
            .mul_f64(unit.clamp(0.0, 1.0))
            .max(self.min / 2)
    }

    pub fn next_delay(&mut self) -> Duration {
        self.next_with(rand::random::<f64>())
    }
}

/// Where one poll ended.
#[derive(Debug)]
pub enum PollResult {
    Installed(String),
    Unchanged,
    /// Keep serving; retry after a backoff.
    Failed(StreamError),
}

type StreamClient = Client<Connector, Empty<Bytes>>;

/// Everything but RFC 3986's unreserved characters is percent-encoded.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `base` (trailing slashes dropped) joined with `path_and_query`.
fn controller_uri(base: &Uri, path_and_query: &str) -> Result<Uri, http::Error> {
    let base = base.to_string();
    Ok(format!("{}{path_and_query}", base.trim_end_matches('/')).parse::<Uri>()?)
}

/// The poll URL for `base`.
pub fn poll_uri(base: &Uri, have: Option<&str>, proxy: &str) -> Result<Uri, http::Error> {
    controller_uri(
        base,
        &format!(
            "/v1/config?version={}&proxy={}",
            utf8_percent_encode(have.unwrap_or(""), QUERY_VALUE),
            utf8_percent_encode(proxy, QUERY_VALUE)
        ),
    )
}

/// One long poll; installs what it gets.
pub async fn poll_once(
    client: &StreamClient,
    store: &Arc<Store>,
    opts: &StreamOptions,
) -> PollResult {
    match try_poll(client, store, opts).await {
        Ok(r) => r,
        Err(e) => PollResult::Failed(e),
    }
}

async fn try_poll(
    client: &StreamClient,
    store: &Arc<Store>,
    opts: &StreamOptions,
) -> Result<PollResult, StreamError> {
    let have = store.version();
    let uri =
        poll_uri(&opts.controller, have.as_deref(), &opts.proxy_id).map_err(StreamError::Url)?;
    let req = Request::get(uri)
        .body(Empty::new())
        .map_err(StreamError::Url)?;
    let resp = tokio::time::timeout(opts.poll_timeout, client.request(req))
        .await
        .map_err(|_| StreamError::Timeout)?
        .map_err(StreamError::Unreachable)?;
    match resp.status() {
        StatusCode::NOT_MODIFIED => Ok(PollResult::Unchanged),
        StatusCode::OK => {
            let body = tokio::time::timeout(opts.poll_timeout, read_body(resp.into_body()))
                .await
                .map_err(|_| StreamError::BodyTimeout)??;
            // Off the runtime: a large document takes a while to parse and compile.
            let serving = store.load();
            let snap = tokio::task::spawn_blocking(move || {
                let previous = serving.as_ref().map(|l| &l.snapshot);
                ConfigDocument::parse(&body).and_then(|d| d.into_snapshot_reusing(previous))
            })
            .await
            .map_err(|e| StreamError::Body(Box::new(e)))??;
            let v = snap.version.clone();
            store
                .install_logged(snap, "configuration from the controller installed")
                .await;
            Ok(PollResult::Installed(v))
        }
        status => {
            let body = read_body(resp.into_body()).await.unwrap_or_default();
            Err(StreamError::Status {
                status,
                body: String::from_utf8_lossy(&body).trim().to_string(),
            })
        }
    }
}

async fn read_body(body: Incoming) -> Result<Bytes, StreamError> {
    http_body_util::Limited::new(body, MAX_DOCUMENT)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(StreamError::Body)
}

/// Polls until `shutdown`, keeping the last good snapshot through any failure.
pub async fn subscribe(
    store: Arc<Store>,
    opts: StreamOptions,
    mut shutdown: watch::Receiver<bool>,
    connector: Connector,
) {
    let mut client: StreamClient = Client::builder(TokioExecutor::new()).build(connector);
    let mut files = tls_fingerprint(&opts);
    let mut backoff = Backoff::new(opts.backoff_min, opts.backoff_max);
    loop {
        if let Some(c) = reloaded(&opts, &mut files) {
            client = Client::builder(TokioExecutor::new()).build(c);
        }
        let result = tokio::select! {
            r = poll_once(&client, &store, &opts) => r,
            () = serve::stopped(&mut shutdown) => return,
        };
        let delay = match result {
            PollResult::Installed(_) | PollResult::Unchanged => {
                backoff.reset();
                continue;
            }
            PollResult::Failed(why) => {
                if store.fail(vec![why.to_string()], "stream") {
                    match store.version() {
                        Some(v) => {
                            tracing::warn!(error = %why, version = %v, "config stream failed; still serving the last good configuration")
                        }
                        None => {
                            tracing::warn!(error = %why, "config stream failed; no configuration yet, not ready")
                        }
                    }
                }
                backoff.next_delay()
            }
        };
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = serve::stopped(&mut shutdown) => return,
        }
    }
}

/// Size and modification time of each TLS file: the kubelet's update of a mounted Secret
/// (a renewed client certificate, a new CA) changes them.
pub type Fingerprint = Vec<(u64, Option<std::time::SystemTime>)>;

pub fn tls_fingerprint(opts: &StreamOptions) -> Option<Fingerprint> {
    let files = opts.tls.as_ref()?;
    Some(
        [&files.cert, &files.key, &files.ca]
            .iter()
            .map(|p| std::fs::metadata(p).map_or((0, None), |m| (m.len(), m.modified().ok())))
            .collect(),
    )
}

/// A new connector when the TLS files changed since `seen` and can be used; a change that
/// cannot be used (a half-written file) keeps the current connector and is retried.
pub fn reloaded(opts: &StreamOptions, seen: &mut Option<Fingerprint>) -> Option<Connector> {
    let now = tls_fingerprint(opts);
    if now == *seen {
        return None;
    }
    match connector(opts) {
        Ok(c) => {
            tracing::info!("config-stream certificate files changed; new connections use them");
            *seen = now;
            Some(c)
        }
        Err(e) => {
            tracing::warn!(error = %e, "config-stream certificate files changed but cannot be used; keeping the current ones");
            None
        }
    }
}

pub type ReportClient = Client<Connector, Full<Bytes>>;

/// Sends one shadow report.
async fn send_report(
    client: &ReportClient,
    base: &Uri,
    report: &ShadowReport,
) -> Result<(), StreamError> {
    let uri = controller_uri(base, "/v1/shadow").map_err(StreamError::Url)?;
    let body = serde_json::to_vec(report).map_err(StreamError::Encode)?;
    let req = Request::post(uri)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(StreamError::Url)?;
    let resp = tokio::time::timeout(REPORT_TIMEOUT, client.request(req))
        .await
        .map_err(|_| StreamError::Timeout)?
        .map_err(StreamError::Unreachable)?;
    if resp.status() == StatusCode::NO_CONTENT {
        Ok(())
    } else {
        Err(StreamError::Refused(resp.status()))
    }
}

/// Drains the shadow tallies and reports them; puts them back when the report fails.
pub async fn report_once(client: &ReportClient, metrics: &Metrics, opts: &StreamOptions) {
    let counts = metrics.take_shadow();
    let rejections = metrics.rings.take();
    if counts.is_empty() && rejections.is_empty() {
        return;
    }
    let each = |v: &[(String, ShadowCounts)]| {
        v.iter()
            .map(|(policy, c)| PolicyShadow {
                policy: policy.clone(),
                counts: c.clone(),
            })
            .collect()
    };
    let report = ShadowReport {
        proxy: opts.proxy_id.clone(),
        policies: each(&counts),
        rejections: each(&rejections),
    };
    if let Err(e) = send_report(client, &opts.controller, &report).await {
        metrics.restore_shadow(&counts);
        metrics.rings.restore(&rejections);
        tracing::warn!(error = %e, "shadow report failed; the counts go with the next one");
    }
}

/// Reports shadow counts every `shadow_report` until `shutdown` (`proxy::run` sends the
/// last report once traffic has drained).
pub async fn report_shadow(
    client: ReportClient,
    metrics: Arc<Metrics>,
    opts: StreamOptions,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut client = client;
    let mut files = tls_fingerprint(&opts);
    loop {
        if let Some(c) = reloaded(&opts, &mut files) {
            client = Client::builder(TokioExecutor::new()).build(c);
        }
        tokio::select! {
            () = tokio::time::sleep(opts.shadow_report) => report_once(&client, &metrics, &opts).await,
            () = serve::stopped(&mut shutdown) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_with_jitter_inside_the_window() {
        let mut b = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        assert_eq!(b.next_with(1.0), Duration::from_millis(200));
        assert_eq!(b.next_with(1.0), Duration::from_millis(400));
        assert_eq!(b.next_with(0.5), Duration::from_millis(400));
        for _ in 0..10 {
            b.next_with(1.0);
        }
        assert_eq!(b.next_with(1.0), Duration::from_secs(5));
        // Never below half the minimum, so a failing controller is not hammered.
        assert_eq!(b.next_with(0.0), Duration::from_millis(100));
        b.reset();
        assert_eq!(b.next_with(1.0), Duration::from_millis(200));
        for _ in 0..100 {
            let d = b.next_delay();
            assert!(d <= Duration::from_secs(5) && d >= Duration::from_millis(100));
        }
    }

    fn opts(controller: &str, every: Duration) -> StreamOptions {
        StreamOptions {
            controller: controller.parse().expect("uri"),
            proxy_id: "edge-0".into(),
            backoff_min: Duration::from_millis(10),
            backoff_max: Duration::from_millis(10),
            poll_timeout: Duration::from_secs(1),
            shadow_report: every,
            connect_timeout: Duration::from_secs(1),
            tls: None,
        }
    }

    #[tokio::test]
    async fn a_failed_shadow_report_is_kept_for_the_next_one() {
        let metrics = Metrics::new();
        let counters = metrics.policy("shop/api", true);
        let shadow = counters.shadow.as_ref().expect("shadow counters");
        shadow.record(None, None);
        shadow.record(
            Some(&crate::cors::Rejection::Method),
            Some(&http::HeaderValue::from_static("https://a.example")),
        );
        assert!(
            metrics.policy("shop/enforced", false).shadow.is_none(),
            "Enforce policies get no shadow counters"
        );
        let text = metrics.encode();
        assert!(
            text.contains("corsgate_shadow_decisions_total{policy=\"shop/api\",verdict=\"would_allow\",reason=\"none\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("corsgate_shadow_decisions_total{policy=\"shop/api\",verdict=\"would_reject\",reason=\"method\"} 1"),
            "{text}"
        );
        assert!(!text.contains("a.example"), "no raw origin in metrics");
        // Nothing listens there: the report fails and the counts stay.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let dead = format!("http://{}", closed.local_addr().expect("addr"));
        drop(closed);
        let o = opts(&dead, Duration::from_secs(1));
        let client: ReportClient =
            Client::builder(TokioExecutor::new()).build(connector(&o).expect("connector"));
        report_once(&client, &metrics, &o).await;
        let kept = metrics.take_shadow();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].0, "shop/api");
        assert_eq!(
            (kept[0].1.would_allow, kept[0].1.by_reason),
            (1, [0, 1, 0, 0])
        );
        assert_eq!(kept[0].1.sample_rejected_origins, ["https://a.example"]);
        assert!(metrics.take_shadow().is_empty(), "taken");
    }

    #[test]
    fn poll_urls_are_encoded() {
        let base: Uri = "http://ctl:9090/".parse().expect("uri");
        assert_eq!(
            poll_uri(&base, Some("abc123"), "edge-0")
                .expect("uri")
                .to_string(),
            "http://ctl:9090/v1/config?version=abc123&proxy=edge-0"
        );
        assert_eq!(
            poll_uri(&base, None, "a b&c").expect("uri").to_string(),
            "http://ctl:9090/v1/config?version=&proxy=a%20b%26c"
        );
    }

    #[test]
    fn rotated_client_certificate_files_make_a_new_connector_and_broken_ones_keep_the_old() {
        let dir = tempfile::tempdir().expect("dir");
        let now = time::OffsetDateTime::now_utc();
        let (ca, ca_key) = crate::webhook::certs::new_ca(now).expect("ca");
        let issue =
            || crate::controller::stream_certs::issue_client(&ca, &ca_key, now).expect("client");
        let files = serve::MutualFiles {
            cert: dir.path().join("tls.crt"),
            key: dir.path().join("tls.key"),
            ca: dir.path().join("ca.crt"),
        };
        let write = |(c, k): &(String, String)| {
            std::fs::write(&files.cert, c).expect("write");
            std::fs::write(&files.key, k).expect("write");
        };
        std::fs::write(&files.ca, &ca).expect("write");
        write(&issue());
        let mut o = opts("https://localhost:9", Duration::from_secs(1));
        o.tls = Some(Box::new(files.clone()));
        let mut seen = tls_fingerprint(&o);
        assert!(seen.is_some());
        assert!(reloaded(&o, &mut seen).is_none(), "unchanged: nothing new");
        // The kubelet's update changes size or time; a renewed key pair differs in both.
        std::thread::sleep(Duration::from_millis(20));
        write(&issue());
        let before = seen.clone();
        assert!(
            reloaded(&o, &mut seen).is_some(),
            "renewed: a new connector"
        );
        assert_ne!(seen, before);
        // Half written: kept, and retried on the next poll.
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&files.key, "-----BEGIN PRIVATE KEY-----\n").expect("write");
        let kept = seen.clone();
        assert!(reloaded(&o, &mut seen).is_none());
        assert_eq!(seen, kept);
    }
}
