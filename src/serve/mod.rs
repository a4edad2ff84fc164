//! Serving HTTP: the one accept loop of the proxy, the controller (admin and config stream),
//! the webhook and the demo. Bind with a message naming the address, accept without spinning
//! on errors (out of file descriptors: back off), TLS or cleartext (`tls`: files checked
//! before bind and re-read per connection, as kubert's `server.rs` does), a header-read
//! timeout, HTTP/1.1 (with upgrades, which the proxy relays) and HTTP/2, and a graceful drain on shutdown: stop accepting, let
//! in-flight requests finish up to a deadline, then close.
//!
//! Owns: sockets, the connection builder, `reply` (every small response the edge or an admin
//! listener makes) and the admin router (`admin`). Must not touch: what a request means — it
//! sits below `proxy`, `controller` and `webhook` and imports none of them.

pub mod admin;
pub mod conn;
pub mod tls;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub use admin::{Admin, Readiness};
pub use conn::{ConnLimits, ConnMetrics};
use conn::{TimedIo, Tracked};
pub use tls::{CertResolver, HandshakeError, MutualFiles, TlsError, TlsSource, server_config};

/// The media type of every plain-text answer.
pub const TEXT: &str = "text/plain; charset=utf-8";

/// How long a client may take to send a request's headers, unless a listener says otherwise.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause after a failed accept (out of file descriptors and the like) instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// How one listener serves.
#[derive(Clone)]
pub struct Listener {
    /// The listener's name in logs.
    pub name: &'static str,
    /// See [`HEADER_TIMEOUT`].
    pub header_timeout: Duration,
    /// On shutdown, how long in-flight requests may take to finish.
    pub drain: Duration,
    /// `None`: cleartext.
    pub tls: Option<Arc<TlsSource>>,
    /// Timeouts and limits per connection (`conn`); the TLS handshake must end within
    /// `conn.first_byte`.
    pub conn: ConnLimits,
    /// HTTP/2 `SETTINGS_MAX_CONCURRENT_STREAMS` (hyper's default: 200).
    pub h2_max_concurrent_streams: u32,
}

impl Listener {
    /// A cleartext listener with the default header timeout.
    pub fn plain(name: &'static str, drain: Duration) -> Listener {
        Listener {
            name,
            header_timeout: HEADER_TIMEOUT,
            drain,
            tls: None,
            conn: ConnLimits::default(),
            h2_max_concurrent_streams: 200,
        }
    }

    /// Sets [`Listener::h2_max_concurrent_streams`].
    #[must_use]
    pub fn max_concurrent_streams(mut self, n: u32) -> Listener {
        self.h2_max_concurrent_streams = n;
        self
    }
}

/// A small response with a content type.
pub fn reply(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// An error and each of its causes, once (a cause whose text is already there is skipped):
/// what a user sees in an error body or on stderr.
pub fn describe(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// Binds a listener with a message that names the address.
pub async fn bind(what: &str, addr: SocketAddr) -> Result<TcpListener, std::io::Error> {
    TcpListener::bind(addr).await.map_err(|e| {
        std::io::Error::new(e.kind(), format!("cannot listen on {addr} ({what}): {e}"))
    })
}

/// Resolves once `shutdown` is true (or its sender is gone).
pub async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Serves on `listener` until `shutdown` turns true, then drains for at most `how.drain`.
/// `make` builds each connection's handler from the peer address (so per-connection work,
/// such as formatting the address, happens once per connection, not per request).
pub async fn serve<M, H, Fut, B>(
    listener: TcpListener,
    how: Listener,
    make: M,
    mut shutdown: watch::Receiver<bool>,
) where
    M: Fn(SocketAddr) -> H + Send + Sync,
    H: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let name = how.name;
    let limits = Arc::new(how.conn.clone());
    let builder = Arc::new(builder(&how));
    let slots = (limits.max_connections > 0)
        .then(|| Arc::new(tokio::sync::Semaphore::new(limits.max_connections)));
    let mut refusals = Refusals::default();
    // Every connection task holds a sender; the drain waits until all are gone.
    let (alive, mut all_closed) = tokio::sync::mpsc::channel::<()>(1);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    limits.metrics.accept_errors.inc();
                    tracing::warn!(listener = name, error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = stopped(&mut shutdown) => break,
        };
        let slot = match &slots {
            None => None,
            Some(s) => match s.clone().try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => {
                    // Closed at once: a client retries elsewhere instead of hanging in the
                    // backlog, and the descriptor is free again.
                    drop(stream);
                    limits.metrics.refused.inc();
                    refusals.note(name, limits.max_connections);
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let activity = conn::Activity::new();
        let handler = make(peer);
        let tracked = activity.clone();
        let svc = service_fn(move |req| {
            let in_flight = tracked.enter();
            let fut = handler(req);
            async move { Ok::<_, Infallible>(fut.await.map(|b| Tracked::new(b, in_flight))) }
        });
        let task = Connection {
            name,
            peer,
            limits: limits.clone(),
            activity,
            shutdown: shutdown.clone(),
            _slot: slot,
            _alive: alive.clone(),
        };
        let builder = builder.clone();
        let Some(tls) = &how.tls else {
            tokio::spawn(async move { task.run_plain(&builder, stream, svc).await });
            continue;
        };
        // Loaded per connection: a certificate rotated on disk (or in the snapshot) is used
        // at once.
        let tls = tls.clone();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(task.limits.first_byte, tls.accept(stream))
                .await
            {
                Ok(Ok(s)) => s,
                Ok(Err(tls::HandshakeError::Config(e))) => {
                    tracing::error!(listener = name, error = %e, "cannot load the TLS certificate; dropping the connection");
                    return;
                }
                Ok(Err(e)) => {
                    tracing::debug!(listener = name, %peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    task.limits.metrics.first_byte_timeouts.inc();
                    tracing::debug!(listener = name, %peer, "TLS handshake timed out");
                    return;
                }
            };
            task.run(&builder, stream, svc).await;
        });
    }
    drop(listener);
    drop(alive);
    tracing::info!(listener = name, "stopped accepting; draining connections");
    if tokio::time::timeout(how.drain, all_closed.recv())
        .await
        .is_err()
    {
        tracing::warn!(
            listener = name,
            deadline_seconds = how.drain.as_secs_f64(),
            "drain deadline passed; closing the remaining connections"
        );
    }
}

/// The connection builder of a listener: HTTP/1.1 and HTTP/2 with its limits.
fn builder(how: &Listener) -> auto::Builder<TokioExecutor> {
    let limits = &how.conn;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(how.header_timeout)
        // hyper answers 431 when a request head does not fit (it needs at least 8 KiB).
        .max_buf_size(limits.max_header_bytes.max(conn::MIN_HEADER_BYTES))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.h2_keepalive_interval)
        .keep_alive_timeout(limits.h2_keepalive_timeout)
        .max_concurrent_streams(how.h2_max_concurrent_streams)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    builder
}

/// Logs refused connections at most every 10 seconds (the counter has every one).
#[derive(Default)]
struct Refusals {
    last: Option<std::time::Instant>,
    since: u64,
}

impl Refusals {
    fn note(&mut self, name: &'static str, max: usize) {
        self.since += 1;
        if self
            .last
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(10))
        {
            tracing::warn!(
                listener = name,
                max_connections = max,
                refused = self.since,
                "connection limit reached; refusing new connections"
            );
            self.last = Some(std::time::Instant::now());
            self.since = 0;
        }
    }
}

/// One accepted connection and what it holds until it ends.
struct Connection {
    name: &'static str,
    peer: SocketAddr,
    limits: Arc<ConnLimits>,
    activity: Arc<conn::Activity>,
    shutdown: watch::Receiver<bool>,
    _slot: Option<tokio::sync::OwnedSemaphorePermit>,
    _alive: tokio::sync::mpsc::Sender<()>,
}

impl Connection {
    /// Cleartext: the first byte must come within the first-byte timeout (hyper's own
    /// header timeout starts only after its protocol detection has read some).
    async fn run_plain<S, B>(
        self,
        builder: &auto::Builder<TokioExecutor>,
        stream: TcpStream,
        svc: S,
    ) where
        S: hyper::service::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
            + Send
            + 'static,
        S::Future: Send + 'static,
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let mut byte = [0u8; 1];
        match tokio::time::timeout(self.limits.first_byte, stream.peek(&mut byte)).await {
            Ok(Ok(n)) if n > 0 => self.run(builder, stream, svc).await,
            Ok(_) => {}
            Err(_) => {
                self.limits.metrics.first_byte_timeouts.inc();
                tracing::debug!(listener = self.name, peer = %self.peer, "no first byte in time; closing");
            }
        }
    }

    /// Serves the connection until it ends, shutting it down gracefully when it has been
    /// idle too long or the listener drains.
    async fn run<I, S, B>(mut self, builder: &auto::Builder<TokioExecutor>, io: I, svc: S)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
        S: hyper::service::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
            + Send
            + 'static,
        S::Future: Send + 'static,
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (name, peer) = (self.name, self.peer);
        let metrics = &self.limits.metrics;
        metrics.open.inc();
        let io = TimedIo::new(io, self.limits.send, metrics.send_timeouts.clone());
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
        tokio::pin!(conn);
        let mut closing = false;
        // After an idle close began: HTTP/2 waits for the PING that follows its GOAWAY to
        // be answered; a client that never answers is dropped after the keep-alive timeout.
        let hard_stop = tokio::time::sleep(Duration::MAX);
        tokio::pin!(hard_stop);
        loop {
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        let timeout = e
                            .downcast_ref::<hyper::Error>()
                            .is_some_and(hyper::Error::is_timeout);
                        if timeout {
                            metrics.header_timeouts.inc();
                        }
                        tracing::debug!(listener = name, %peer, error = %e, "connection ended with an error");
                    }
                    break;
                }
                () = self.activity.idle_for(self.limits.idle), if !closing => {
                    metrics.idle_timeouts.inc();
                    tracing::debug!(listener = name, %peer, "idle; closing");
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                    hard_stop
                        .as_mut()
                        .reset(tokio::time::Instant::now() + self.limits.h2_keepalive_timeout);
                }
                () = &mut hard_stop => {
                    tracing::debug!(listener = name, %peer, "idle close not acknowledged; dropping");
                    break;
                }
                () = stopped(&mut self.shutdown), if !closing => {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
        metrics.open.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer: {0}")]
    struct Outer(#[source] Inner);
    #[derive(Debug, thiserror::Error)]
    #[error("inner")]
    struct Inner(#[source] std::io::Error);

    #[test]
    fn describe_names_each_cause_once() {
        let e = Outer(Inner(std::io::Error::other("refused")));
        assert_eq!(describe(&e), "outer: inner: refused");
    }

    #[tokio::test]
    async fn drains_and_returns_on_shutdown() {
        let listener = bind("test", "127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(serve(
            listener,
            Listener::plain("test", Duration::from_secs(1)),
            |_| |_req| async { reply(StatusCode::OK, TEXT, "hi\n") },
            rx,
        ));
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut got = String::new();
        s.read_to_string(&mut got).await.expect("read");
        assert!(got.starts_with("HTTP/1.1 200 OK"), "{got}");
        assert!(got.ends_with("hi\n"), "{got}");
        let _ = stop.send(true);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("stops within the drain deadline")
            .expect("no panic");
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "no longer accepting"
        );
    }
}
