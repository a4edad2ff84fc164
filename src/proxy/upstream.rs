//! Upstream connections: HTTP/1.1 keep-alive connections (TLS for https upstreams), kept in
//! one lock-free idle queue per upstream.
//!
//! Why not hyper-util's pooled client: it takes a mutex and hashes a key per request, and
//! spawns a task per response to return the connection to the pool once the body is read.
//! Here a request pops an idle connection from its upstream's queue (resolved when the
//! snapshot was installed), and the response body hands the connection back when it ends.
//!
//! A client that goes away mid-response (an HTTP/2 reset, a closed socket) does not cost a
//! connection: the rest of the response is read in a spawned task, at most [`DRAIN_BYTES`]
//! within the policy's timeout, and the connection goes back to the queue (issue 13 item 6).
//! Each response also holds its client connection's permit (`permit`) until it is done, so a
//! client's upstream work stays bounded while such drains run.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use crossbeam_queue::ArrayQueue;
use http::{Request, Response, Uri};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::sync::OwnedSemaphorePermit;
use tower_service::Service;

use crate::config::UpstreamTarget;

/// Most idle connections kept per upstream; more are closed when their response ends.
const MAX_IDLE: usize = 1024;
/// Most bytes of a response read after its client went away, to keep its connection; a
/// longer response closes the connection instead.
pub const DRAIN_BYTES: u64 = 1024 * 1024;

/// Why a request did not get an upstream response.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot connect: {0}")]
    Connect(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the connection failed: {0}")]
    Request(#[source] hyper::Error),
}

/// A client's request body on its way upstream. A failure of the client's (a malformed
/// chunk, a body cut short) surfaces as [`ClientBodyError`] in the upstream error's causes,
/// so the edge answers it as the client's fault (400), not the upstream's (issue 13 item 7).
pub struct ClientBody(pub Incoming);

/// The client's request body could not be read.
#[derive(Debug, thiserror::Error)]
#[error("the request body is malformed or was cut short: {0}")]
pub struct ClientBodyError(#[source] hyper::Error);

impl Body for ClientBody {
    type Data = Bytes;
    type Error = ClientBodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>> {
        Pin::new(&mut self.0)
            .poll_frame(cx)
            .map_err(ClientBodyError)
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.0.size_hint()
    }
}

impl UpstreamError {
    /// The client's body failed, not the upstream: hyper reports it as a request error
    /// whose cause is ours.
    pub fn client_body(&self) -> Option<&ClientBodyError> {
        let UpstreamError::Request(e) = self else {
            return None;
        };
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(c) = cause {
            if let Some(b) = c.downcast_ref::<ClientBodyError>() {
                return Some(b);
            }
            cause = c.source();
        }
        None
    }
}

/// The idle connections of one upstream: one queue per worker (`--workers`), so a worker
/// only reuses connections its own runtime drives, and a request never wakes another core.
pub struct Idle(Box<[ArrayQueue<SendRequest<ClientBody>>]>);

thread_local! {
    /// This thread's worker index (0 outside the per-core workers).
    static WORKER: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Marks the calling thread as worker `i` (its idle queues are `i`).
pub fn set_worker(i: usize) {
    WORKER.with(|w| w.set(i));
}

impl Idle {
    fn new(workers: usize) -> Idle {
        let n = workers.max(1);
        let each = (MAX_IDLE / n).max(64);
        Idle((0..n).map(|_| ArrayQueue::new(each)).collect())
    }

    /// The calling worker's queue.
    fn queue(&self) -> &ArrayQueue<SendRequest<ClientBody>> {
        let i = WORKER.with(std::cell::Cell::get);
        &self.0[i % self.0.len()]
    }
}

/// Connects to upstreams and keeps their idle-connection queues.
pub struct Upstreams {
    connector: HttpsConnector<HttpConnector>,
    /// Queues by `scheme://authority`, so connections outlive snapshot swaps. Read when a
    /// snapshot is installed, never per request.
    queues: Mutex<HashMap<String, Arc<Idle>>>,
    /// Idle queues per upstream: one per worker.
    workers: usize,
}

impl Upstreams {
    /// TLS uses the system's trust roots; ALPN offers HTTP/1.1. `workers`: per-core workers
    /// that each keep their own idle connections (1: one runtime).
    pub fn new(workers: usize) -> Result<Upstreams, std::io::Error> {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.enforce_http(false);
        http.set_connect_timeout(Some(std::time::Duration::from_secs(10)));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(Upstreams {
            connector,
            queues: Mutex::new(HashMap::new()),
            workers: workers.max(1),
        })
    }

    /// The idle queue of `target`'s upstream (created on first use).
    pub fn idle_for(&self, target: &UpstreamTarget) -> Arc<Idle> {
        let mut q = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
        q.entry(target.url())
            .or_insert_with(|| Arc::new(Idle::new(self.workers)))
            .clone()
    }

    /// A new connection. `upgrades`: its task keeps the socket for a `101 Switching
    /// Protocols` (such a connection is never pooled).
    async fn connect(
        &self,
        target: &UpstreamTarget,
        upgrades: bool,
    ) -> Result<SendRequest<ClientBody>, UpstreamError> {
        let uri = Uri::builder()
            .scheme(target.scheme.clone())
            .authority(target.authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|e| UpstreamError::Connect(e.into()))?;
        let io = self
            .connector
            .clone()
            .call(uri)
            .await
            .map_err(UpstreamError::Connect)?;
        let (sender, conn) = hyper::client::conn::http1::Builder::new()
            .handshake(io)
            .await
            .map_err(UpstreamError::Request)?;
        tokio::spawn(async move {
            let ended = if upgrades {
                conn.with_upgrades().await
            } else {
                conn.await
            };
            if let Err(e) = ended {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }

    /// Sends an upgrade request (`Connection: upgrade`) on a connection of its own, never
    /// pooled: after a 101 it carries the tunnel.
    pub async fn send_upgrade(
        &self,
        target: &UpstreamTarget,
        req: Request<ClientBody>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let mut sender = self.connect(target, true).await?;
        sender
            .send_request(req)
            .await
            .map_err(UpstreamError::Request)
    }

    /// Sends `req` on an idle connection of `idle` or a new one. A request the connection
    /// refused before sending anything (it was closing) is retried once on a new connection.
    /// The response body holds `permit` until it ends (or its drain does).
    pub async fn send(
        &self,
        idle: &Arc<Idle>,
        target: &UpstreamTarget,
        mut req: Request<ClientBody>,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Result<Response<PooledBody>, UpstreamError> {
        let mut fresh = false;
        loop {
            let mut sender = match checkout(idle).await {
                Some(s) if !fresh => s,
                _ => {
                    fresh = true;
                    // Boxed: connecting (TCP, maybe TLS, the handshake) is a large future
                    // that most requests never run; inline, every request's future would
                    // carry (and copy) its space (issue 14).
                    Box::pin(self.connect(target, false)).await?
                }
            };
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    return Ok(resp.map(|inner| PooledBody {
                        inner: Some(inner),
                        home: Some((idle.clone(), sender)),
                        permit,
                        drain_for: target.timeout,
                    }));
                }
                Err(mut e) => match e.take_message() {
                    Some(r) if !fresh => {
                        req = r;
                        fresh = true;
                    }
                    _ => return Err(UpstreamError::Request(e.into_error())),
                },
            }
        }
    }
}

/// An idle connection that is still open and ready for a request.
async fn checkout(idle: &Idle) -> Option<SendRequest<ClientBody>> {
    while let Some(mut s) = idle.queue().pop() {
        if !s.is_closed() && s.ready().await.is_ok() {
            return Some(s);
        }
    }
    None
}

/// An upstream response body that returns its connection to the idle queue once it has
/// been read to the end. Dropped before the end (the client went away), the rest is read in
/// a spawned task, bounded by [`DRAIN_BYTES`] and `drain_for`, and the connection returned
/// if it ended in time; otherwise it is closed (its remaining bytes would be read as the
/// next response).
pub struct PooledBody {
    /// `None` once handed to a drain.
    inner: Option<Incoming>,
    home: Option<(Arc<Idle>, SendRequest<ClientBody>)>,
    /// The client connection's share of upstream work, given back when this body is done.
    permit: Option<OwnedSemaphorePermit>,
    drain_for: Duration,
}

impl PooledBody {
    /// A body whose connection is not pooled (an upgrade the upstream declined).
    pub fn unpooled(inner: Incoming, permit: Option<OwnedSemaphorePermit>) -> PooledBody {
        PooledBody {
            inner: Some(inner),
            home: None,
            permit,
            drain_for: Duration::ZERO,
        }
    }

    fn release(&mut self) {
        if let Some((idle, sender)) = self.home.take() {
            // A full queue drops the connection, which closes it.
            let _ = idle.queue().push(sender);
        }
        self.permit = None;
    }

    fn ended(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.release(),
            Poll::Ready(Some(Ok(_))) if self.ended() => self.release(),
            Poll::Ready(Some(Err(_))) => {
                self.home = None;
                self.permit = None;
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.ended()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        if self.ended() {
            self.release();
            return;
        }
        let (Some(inner), Some(home)) = (self.inner.take(), self.home.take()) else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (permit, limit) = (self.permit.take(), self.drain_for);
        runtime.spawn(async move {
            if tokio::time::timeout(limit, drain(inner)).await == Ok(true) {
                let _ = home.0.queue().push(home.1);
            }
            drop(permit);
        });
    }
}

/// Reads a body to its end, at most [`DRAIN_BYTES`]: true if it ended cleanly.
async fn drain(mut body: Incoming) -> bool {
    let mut read: u64 = 0;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return false;
        };
        read += frame.data_ref().map_or(0, |d| d.len() as u64);
        if read > DRAIN_BYTES {
            return false;
        }
    }
    true
}
