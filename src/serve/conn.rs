//! What one connection may cost (issue 13 items 2, 3, 8): how long it may stay silent before
//! its first byte or TLS handshake, how long it may sit idle between requests, how long a
//! response write may stay blocked on a client that stopped reading, how large a request
//! head may be, and how many connections a listener holds at once. Every listener gets
//! these; `corsgate proxy` takes them from its flags.
//!
//! How each is enforced:
//! - first byte: from accept, a peek for one byte (cleartext) or the TLS handshake, before
//!   hyper's protocol detection (whose HTTP/1 header timeout starts only after it);
//! - idle: a connection with no request in flight (counted from request to the end of its
//!   response body, [`Tracked`]) for this long is shut down gracefully (HTTP/2: GOAWAY);
//! - header (HTTP/1.1): a connection with no request in flight, whose next request head has
//!   not been read in full for this long, is dropped: a head still arriving (however steadily
//!   it trickles) or a keep-alive connection waiting for its next request, so the shorter of
//!   the two timeouts applies. The listener's sweeper enforces both (`sweep`); hyper's own
//!   header timer, a boxed timer set and dropped on every request, is off (issue 14). Only a
//!   connection whose protocol hyper-util still has to sniff keeps hyper's timer;
//! - send: [`TimedIo`] fails a write that stays pending this long (nginx `send_timeout`);
//! - connections: a semaphore; over the limit a connection is accepted and closed at once,
//!   and counted.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::sweep::Closing;

/// Default of `--first-byte-timeout-seconds`.
pub const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default of `--idle-timeout-seconds` (nginx `keepalive_timeout`: 75 s).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default of `--send-timeout-seconds` (nginx `send_timeout`: 60 s).
pub const SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// Default of `--h2-keepalive-interval-seconds`.
pub const H2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// Default of `--h2-keepalive-timeout-seconds`.
pub const H2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default of `--max-header-bytes`: nginx's `large_client_header_buffers` allow 4 × 8 KiB.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
/// hyper's smallest HTTP/1 buffer; `--max-header-bytes` may not go below it.
pub const MIN_HEADER_BYTES: usize = 8 * 1024;
/// Most connections a listener holds when the open-file limit is unknown or large.
pub const MAX_CONNECTIONS: usize = 10_000;

/// The per-connection limits of one listener.
#[derive(Clone, Debug)]
pub struct ConnLimits {
    /// From accept to the first byte (cleartext) or the end of the TLS handshake.
    pub first_byte: Duration,
    /// No request in flight for this long: the connection is shut down.
    pub idle: Duration,
    /// A response write pending this long fails and closes the connection.
    pub send: Duration,
    /// HTTP/2 PING interval (`None`: no pings) and how long to wait for the answer.
    pub h2_keepalive_interval: Option<Duration>,
    pub h2_keepalive_timeout: Duration,
    /// Request head: HTTP/1 buffer (431 above it), HTTP/2 `SETTINGS_MAX_HEADER_LIST_SIZE`.
    pub max_header_bytes: usize,
    /// Connections held at once; 0: no limit.
    pub max_connections: usize,
    /// The `max_connections` slots, when several listeners share them (one per worker,
    /// and the HTTPS listener's): `None`, each listener has its own.
    pub slots: Option<std::sync::Arc<tokio::sync::Semaphore>>,
    /// Where the listener counts what these limits did.
    pub metrics: ConnMetrics,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            first_byte: FIRST_BYTE_TIMEOUT,
            idle: IDLE_TIMEOUT,
            send: SEND_TIMEOUT,
            h2_keepalive_interval: Some(H2_KEEPALIVE_INTERVAL),
            h2_keepalive_timeout: H2_KEEPALIVE_TIMEOUT,
            max_header_bytes: MAX_HEADER_BYTES,
            max_connections: MAX_CONNECTIONS,
            slots: None,
            metrics: ConnMetrics::default(),
        }
    }
}

/// The default connection limit: half the open-file limit (each proxied request may hold an
/// upstream connection too) less a reserve for listeners, files and the admin port, at most
/// [`MAX_CONNECTIONS`]. Linux: read from `/proc/self/limits`; elsewhere the constant.
pub fn default_max_connections() -> usize {
    max_connections_for(&std::fs::read_to_string("/proc/self/limits").unwrap_or_default())
}

/// [`default_max_connections`] from the text of `/proc/self/limits`.
fn max_connections_for(limits: &str) -> usize {
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<usize>().ok());
    match soft {
        Some(n) => (n.saturating_sub(64) / 2).clamp(1, MAX_CONNECTIONS),
        None => MAX_CONNECTIONS,
    }
}

/// `reason` of `corsgate_connections_closed_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// What the limits did, as counters a registry can expose (the proxy's `/metrics` does).
#[derive(Clone, Debug, Default)]
pub struct ConnMetrics {
    pub open: Gauge,
    pub refused: Counter,
    pub accept_errors: Counter,
    closed: Family<ReasonLabel, Counter>,
    pub first_byte_timeouts: Counter,
    pub header_timeouts: Counter,
    pub idle_timeouts: Counter,
    pub send_timeouts: Counter,
}

impl ConnMetrics {
    pub fn new() -> ConnMetrics {
        let closed: Family<ReasonLabel, Counter> = Family::default();
        let get = |reason| closed.get_or_create(&ReasonLabel { reason }).clone();
        ConnMetrics {
            first_byte_timeouts: get("first_byte_timeout"),
            header_timeouts: get("header_timeout"),
            idle_timeouts: get("idle_timeout"),
            send_timeouts: get("send_timeout"),
            closed,
            ..ConnMetrics::default()
        }
    }

    /// Registers `corsgate_connections_*` in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "corsgate_connections_open",
            "Client connections open on the traffic listener",
            self.open.clone(),
        );
        registry.register(
            "corsgate_connections_refused",
            "Client connections accepted and closed at once: --max-connections were open",
            self.refused.clone(),
        );
        registry.register(
            "corsgate_connections_accept_errors",
            "Failed accepts (such as out of file descriptors); each one pauses accepting briefly",
            self.accept_errors.clone(),
        );
        registry.register(
            "corsgate_connections_closed",
            "Client connections closed by a limit: first_byte_timeout, header_timeout, idle_timeout, send_timeout",
            self.closed.clone(),
        );
    }
}

/// In-flight requests of one connection and since when it has had none.
#[derive(Debug)]
pub struct Activity {
    start: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `start` at which the last request ended (or HTTP/1.1 serving began).
    idle_since_ms: AtomicU64,
    /// Served as HTTP/1.1 by hyper without its own header timer: the sweeper applies the
    /// header timeout.
    head_timed: AtomicBool,
}

impl Activity {
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
            head_timed: AtomicBool::new(false),
        })
    }

    /// A request began; it ends when the returned guard drops.
    pub fn enter(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// hyper starts serving the connection as HTTP/1.1 without a header timer of its own: the
    /// header timeout runs from now (after the first byte or the TLS handshake), and again
    /// from the end of each request.
    pub fn serving_http1(&self) {
        self.idle_since_ms
            .store(self.elapsed_ms(), Ordering::Release);
        self.head_timed.store(true, Ordering::Release);
    }

    /// Whether a request is in flight.
    pub fn busy(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) != 0
    }

    /// What, at `now`, the connection has overstayed with no request in flight: the header
    /// timeout (HTTP/1.1 only) or the idle timeout, the shorter when both.
    pub fn overdue(&self, now: Instant, idle: Duration, header: Duration) -> Option<Closing> {
        if self.busy() {
            return None;
        }
        let since = self.start + Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire));
        let waited = now.saturating_duration_since(since);
        let header_first = header <= idle;
        let header = self.head_timed.load(Ordering::Acquire) && waited >= header;
        match (header, waited >= idle) {
            (false, false) => None,
            (true, false) => Some(Closing::Header),
            (false, true) => Some(Closing::Idle),
            // Both: the shorter limit is the one that ran out first.
            (true, true) => Some(if header_first {
                Closing::Header
            } else {
                Closing::Idle
            }),
        }
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// One request of a connection, from its head to the end of its response body.
#[derive(Debug)]
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0
            .idle_since_ms
            .store(self.0.elapsed_ms(), Ordering::Release);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request counted as in flight until hyper drops it
    /// (sent, or the connection gone).
    pub struct Tracked<B> {
        #[pin]
        inner: B,
        guard: InFlight,
    }
}

impl<B> Tracked<B> {
    pub fn new(inner: B, guard: InFlight) -> Tracked<B> {
        Tracked { inner, guard }
    }
}

impl<B: hyper::body::Body<Data = Bytes>> hyper::body::Body for Tracked<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, B::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// A connection's IO whose writes fail once one stays pending for `send`: the client has
/// accepted no byte for that long (nginx `send_timeout`: the time between two successive
/// writes, not the whole response). Dropping the connection then drops the response body,
/// and with it the upstream connection.
pub struct TimedIo<S> {
    inner: S,
    send: Duration,
    stall: Option<Pin<Box<Sleep>>>,
    armed: bool,
    timeouts: Counter,
}

impl<S> TimedIo<S> {
    pub fn new(inner: S, send: Duration, timeouts: Counter) -> TimedIo<S> {
        TimedIo {
            inner,
            send,
            stall: None,
            armed: false,
            timeouts,
        }
    }

    /// Runs one write-side poll; a `Pending` starts (or keeps) the stall timer, progress
    /// disarms it.
    fn timed<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: impl FnOnce(Pin<&mut S>, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>>
    where
        S: Unpin,
    {
        match poll(Pin::new(&mut self.inner), cx) {
            Poll::Ready(r) => {
                self.armed = false;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let deadline = Instant::now() + self.send;
                let stall = match &mut self.stall {
                    Some(s) => {
                        if !self.armed {
                            s.as_mut().reset(deadline);
                        }
                        s
                    }
                    None => self
                        .stall
                        .insert(Box::pin(tokio::time::sleep_until(deadline))),
                };
                self.armed = true;
                if stall.as_mut().poll(cx).is_ready() {
                    self.armed = false;
                    self.timeouts.inc();
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "send timeout: the client accepted no bytes for {} s",
                            self.send.as_secs_f64()
                        ),
                    )));
                }
                Poll::Pending
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for TimedIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for TimedIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.timed(cx, |s, cx| s.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.timed(cx, |s, cx| s.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.timed(cx, |s, cx| s.poll_flush(cx))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.timed(cx, |s, cx| s.poll_shutdown(cx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NEVER: Duration = Duration::from_secs(3600);

    #[tokio::test(start_paused = true)]
    async fn idle_counts_from_the_end_of_the_last_request() {
        let a = Activity::new();
        let idle = Duration::from_secs(5);
        let guard = a.enter();
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(
            a.overdue(Instant::now(), idle, NEVER),
            None,
            "in flight: never idle, however long"
        );
        drop(guard);
        let ended = Instant::now();
        assert_eq!(a.overdue(ended + Duration::from_secs(4), idle, NEVER), None);
        assert_eq!(
            a.overdue(ended + Duration::from_secs(5), idle, NEVER),
            Some(Closing::Idle)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_header_timeout_applies_to_http1_only_and_runs_from_serving_and_each_request_end() {
        let (idle, header) = (Duration::from_secs(60), Duration::from_secs(2));
        let h2 = Activity::new();
        let h1 = Activity::new();
        // The first byte (or TLS handshake) took 5 s: the header timeout starts after it.
        tokio::time::sleep(Duration::from_secs(5)).await;
        h1.serving_http1();
        let served = Instant::now();
        assert_eq!(
            h1.overdue(served + Duration::from_millis(1_999), idle, header),
            None
        );
        assert_eq!(
            h1.overdue(served + header, idle, header),
            Some(Closing::Header)
        );
        assert_eq!(
            h2.overdue(served + header, idle, header),
            None,
            "not HTTP/1.1: hyper's own limits apply"
        );
        let guard = h1.enter();
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(
            h1.overdue(Instant::now(), idle, header),
            None,
            "a request in flight is not waiting for a head"
        );
        drop(guard);
        let ended = Instant::now();
        assert_eq!(
            h1.overdue(ended + Duration::from_secs(1), idle, header),
            None
        );
        assert_eq!(
            h1.overdue(ended + header, idle, header),
            Some(Closing::Header)
        );
        // Both overstayed: the shorter limit is named.
        assert_eq!(
            h1.overdue(
                ended + Duration::from_secs(3),
                Duration::from_secs(1),
                header
            ),
            Some(Closing::Idle)
        );
        assert_eq!(
            h1.overdue(
                ended + Duration::from_secs(3),
                Duration::from_millis(2_500),
                header
            ),
            Some(Closing::Header)
        );
    }

    #[test]
    fn the_default_connection_limit_follows_the_open_file_limit() {
        let limits = |soft: &str| {
            format!(
                "Limit                     Soft Limit           Hard Limit           Units\nMax cpu time              unlimited            unlimited            seconds\nMax open files            {soft}                 524288               files\n"
            )
        };
        assert_eq!(max_connections_for(&limits("256")), 96);
        assert_eq!(max_connections_for(&limits("1048576")), MAX_CONNECTIONS);
        assert_eq!(max_connections_for(&limits("10")), 1);
        assert_eq!(max_connections_for(""), MAX_CONNECTIONS, "not Linux");
    }
}
