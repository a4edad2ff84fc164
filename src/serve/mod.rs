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
pub mod proto;
pub mod sweep;
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
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub use admin::{Admin, Readiness};
pub use conn::{ConnLimits, ConnMetrics};
use conn::{TimedIo, Tracked};
use sweep::Closing;
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

/// `n` listening sockets on `addr` that share its port with `SO_REUSEPORT`: the kernel
/// spreads new connections over them, one per worker (`--workers`), as nginx's
/// `reuseport` does. Port 0 picks one port for all. Non-blocking, backlog 1024.
pub fn bind_reuseport(
    what: &str,
    addr: SocketAddr,
    n: usize,
) -> Result<Vec<std::net::TcpListener>, std::io::Error> {
    let one = |addr: SocketAddr| -> Result<std::net::TcpListener, std::io::Error> {
        let s = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        s.set_reuse_address(true)?;
        s.set_reuse_port(true)?;
        s.set_nonblocking(true)?;
        s.bind(&addr.into())?;
        s.listen(1024)?;
        Ok(s.into())
    };
    let fail = |e: std::io::Error| {
        std::io::Error::new(e.kind(), format!("cannot listen on {addr} ({what}): {e}"))
    };
    // SO_REUSEPORT would let this process share a port that another one (a second proxy
    // started by mistake, or on a port picked free but taken meanwhile) already listens on,
    // and the kernel would split connections between them. A socket bound without it first
    // is refused (EADDRINUSE) by any listener there; it is closed before the workers bind.
    if addr.port() != 0 {
        let probe = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )
        .map_err(fail)?;
        // Connections in TIME_WAIT from an earlier run do not hold the port.
        probe.set_reuse_address(true).map_err(fail)?;
        probe.bind(&addr.into()).map_err(fail)?;
    }
    let first = one(addr).map_err(fail)?;
    let bound = first.local_addr()?;
    let mut all = vec![first];
    for _ in 1..n.max(1) {
        all.push(one(bound).map_err(fail)?);
    }
    Ok(all)
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
    let builder = Arc::new(proto::Builders::new(&how));
    // Shared by every worker's listener when given, so --max-connections holds for the
    // process (taken and given back once per connection, never per request).
    let slots = limits.slots.clone().or_else(|| {
        (limits.max_connections > 0)
            .then(|| Arc::new(tokio::sync::Semaphore::new(limits.max_connections)))
    });
    let mut refusals = Refusals::default();
    // One task for every connection's idle and header timeouts and drain signal (no task or
    // timer per connection).
    let sweeper = sweep::Sweeper::start(limits.idle, how.header_timeout, shutdown.clone());
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
            close: sweeper.register(activity.clone()),
            activity,
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
            let proto = proto::Proto::from_alpn(stream.get_ref().1.alpn_protocol());
            task.run(&builder, proto, stream, svc).await;
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
    /// Resolves when the sweeper says this connection is idle, has sent no request head in
    /// time (HTTP/1.1), or the listener drains.
    close: tokio::sync::oneshot::Receiver<Closing>,
    /// What the sweeper reads: requests in flight and since when there have been none.
    activity: Arc<conn::Activity>,
    _slot: Option<tokio::sync::OwnedSemaphorePermit>,
    _alive: tokio::sync::mpsc::Sender<()>,
}

impl Connection {
    /// Cleartext: the first byte must come within the first-byte timeout (the header
    /// timeout starts only once the connection is served). The bytes peeked then also tell
    /// HTTP/2's preface from HTTP/1.1.
    async fn run_plain<S, B>(self, builder: &proto::Builders, stream: TcpStream, svc: S)
    where
        S: hyper::service::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
            + Send
            + 'static,
        S::Future: Send + 'static,
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let mut first = [0u8; proto::H2_PREFACE.len()];
        match tokio::time::timeout(self.limits.first_byte, stream.peek(&mut first)).await {
            Ok(Ok(n)) if n > 0 => {
                let proto = proto::Proto::sniff(first.get(..n).unwrap_or_default());
                self.run(builder, proto, stream, svc).await;
            }
            Ok(_) => {}
            Err(_) => {
                self.limits.metrics.first_byte_timeouts.inc();
                tracing::debug!(listener = self.name, peer = %self.peer, "no first byte in time; closing");
            }
        }
    }

    /// Serves the connection until it ends, shutting it down gracefully when it has been
    /// idle too long or the listener drains, and dropping it when an HTTP/1.1 request head
    /// does not come in time.
    async fn run<I, S, B>(mut self, builder: &proto::Builders, proto: proto::Proto, io: I, svc: S)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
        S: hyper::service::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
            + Send
            + 'static,
        S::Future: Send + 'static,
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let limits = self.limits.clone();
        let metrics = &limits.metrics;
        metrics.open.inc();
        let io = TokioIo::new(TimedIo::new(
            io,
            self.limits.send,
            metrics.send_timeouts.clone(),
        ));
        match proto {
            proto::Proto::Http1 => {
                self.activity.serving_http1();
                self.drive(builder.http1.serve_connection(io, svc).with_upgrades())
                    .await;
            }
            // Boxed: an HTTP/2 (or sniffing) connection's state is several KiB, and held
            // inline it would make every HTTP/1.1 connection's task as large (4.3 KiB, where
            // an HTTP/1.1 connection needs about 1: issue 14, idle connections).
            proto::Proto::Http2 => {
                Box::pin(self.drive(builder.http2.serve_connection(io, svc))).await;
            }
            proto::Proto::Sniff => {
                Box::pin(self.drive(builder.auto.serve_connection_with_upgrades(io, svc))).await;
            }
        }
        metrics.open.dec();
    }

    /// Drives one connection to its end; see [`Connection::run`].
    async fn drive<C>(&mut self, conn: C)
    where
        C: proto::Graceful,
    {
        let (name, peer) = (self.name, self.peer);
        let metrics = &self.limits.metrics;
        tokio::pin!(conn);
        // Idle and drain come from the listener's sweeper: the connection's own task polls one
        // channel beside hyper per wake-up, and no timer of its own (issue 14).
        let ended = tokio::select! {
            biased;
            result = conn.as_mut() => Some(result),
            why = &mut self.close => {
                conn.as_mut().graceful();
                match why {
                    // After an idle close began: HTTP/2 waits for the PING that follows its
                    // GOAWAY to be answered; a client that never answers is dropped after the
                    // keep-alive timeout.
                    Ok(Closing::Idle) => {
                        metrics.idle_timeouts.inc();
                        tracing::debug!(listener = name, %peer, "idle; closing");
                        match tokio::time::timeout(self.limits.h2_keepalive_timeout, conn.as_mut()).await {
                            Ok(result) => Some(result),
                            Err(_) => {
                                tracing::debug!(listener = name, %peer, "idle close not acknowledged; dropping");
                                None
                            }
                        }
                    }
                    // HTTP/1.1 without a whole request head in time (hyper's own header timer
                    // is off): dropped, as that timer would. A head that completed since the
                    // sweep has its request finished, and the connection closes after it.
                    Ok(Closing::Header) => {
                        metrics.header_timeouts.inc();
                        tracing::debug!(listener = name, %peer, "no request head within the header timeout; closing");
                        if self.activity.busy() {
                            Some(conn.as_mut().await)
                        } else {
                            None
                        }
                    }
                    // Draining: in-flight requests finish, up to the listener's drain deadline.
                    Ok(Closing::Drain) | Err(_) => Some(conn.as_mut().await),
                }
            }
        };
        if let Some(Err(e)) = ended {
            let e: Box<dyn std::error::Error + Send + Sync> = e.into();
            let timeout = e
                .downcast_ref::<hyper::Error>()
                .is_some_and(hyper::Error::is_timeout);
            if timeout {
                metrics.header_timeouts.inc();
            }
            tracing::debug!(listener = name, %peer, error = %e, "connection ended with an error");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two processes' worth of `SO_REUSEPORT` sockets on one port would split its
    /// connections; the second bind is refused instead, naming the address. A port bound
    /// and closed (its listener gone) can be bound again.
    #[test]
    fn a_port_already_listened_on_is_refused_not_shared() {
        let first = bind_reuseport("traffic", "127.0.0.1:0".parse().unwrap(), 2).unwrap();
        let addr = first[0].local_addr().unwrap();
        assert_eq!(first[1].local_addr().unwrap(), addr);
        let e = bind_reuseport("traffic", addr, 2).expect_err("the port is taken");
        assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse);
        assert!(
            e.to_string()
                .contains(&format!("cannot listen on {addr} (traffic)")),
            "{e}"
        );
        drop(first);
        let again = bind_reuseport("traffic", addr, 2).expect("free again");
        assert_eq!(again.len(), 2);
    }

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
