//! Serving HTTP: the one accept loop of the proxy, the controller (admin and config stream),
//! the webhook and the demo. Bind with a message naming the address, accept without spinning
//! on errors (out of file descriptors: back off), TLS or cleartext (`tls`: files checked
//! before bind and re-read per connection, as kubert's `server.rs` does), a header-read
//! timeout, HTTP/1.1 and HTTP/2, and a graceful drain on shutdown: stop accepting, let
//! in-flight requests finish up to a deadline, then close.
//!
//! Owns: sockets, the connection builder, `reply` (every small response the edge or an admin
//! listener makes) and the admin router (`admin`). Must not touch: what a request means — it
//! sits below `proxy`, `controller` and `webhook` and imports none of them.

pub mod admin;
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
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use admin::{Admin, Readiness};
pub use tls::{CertResolver, HandshakeError, MutualFiles, TlsError, TlsSource, server_config};

/// The media type of every plain-text answer.
pub const TEXT: &str = "text/plain; charset=utf-8";

/// How long a client may take to send a request's headers, unless a listener says otherwise.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
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
}

impl Listener {
    /// A cleartext listener with the default header timeout.
    pub fn plain(name: &'static str, drain: Duration) -> Listener {
        Listener {
            name,
            header_timeout: HEADER_TIMEOUT,
            drain,
            tls: None,
        }
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
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(how.header_timeout)
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(listener = name, error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = stopped(&mut shutdown) => break,
        };
        let _ = stream.set_nodelay(true);
        let handler = make(peer);
        let svc = service_fn(move |req| {
            let fut = handler(req);
            async move { Ok::<_, Infallible>(fut.await) }
        });
        let watcher = graceful.watcher();
        let Some(tls) = &how.tls else {
            let conn = watcher.watch(
                builder
                    .serve_connection(TokioIo::new(stream), svc)
                    .into_owned(),
            );
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(listener = name, error = %e, "connection ended with an error");
                }
            });
            continue;
        };
        // Loaded per connection: a certificate rotated on disk (or in the snapshot) is used
        // at once.
        let tls = tls.clone();
        let builder = builder.clone();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(stream)).await {
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
                    tracing::debug!(listener = name, %peer, "TLS handshake timed out");
                    return;
                }
            };
            let conn = watcher.watch(builder.serve_connection(TokioIo::new(stream), svc));
            if let Err(e) = conn.await {
                tracing::debug!(listener = name, %peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!(listener = name, "stopped accepting; draining connections");
    if tokio::time::timeout(how.drain, graceful.shutdown())
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
