//! Upstream connections: HTTP/1.1 keep-alive connections (TLS for https upstreams), kept in
//! one lock-free idle queue per upstream.
//!
//! Why not hyper-util's pooled client: it takes a mutex and hashes a key per request, and
//! spawns a task per response to return the connection to the pool once the body is read.
//! Here a request pops an idle connection from its upstream's queue (resolved when the
//! snapshot was installed), and the response body hands the connection back when it ends.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use crossbeam_queue::ArrayQueue;
use http::{Request, Response, Uri};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use tower_service::Service;

use crate::config::UpstreamTarget;

/// Most idle connections kept per upstream; more are closed when their response ends.
const MAX_IDLE: usize = 1024;

/// Why a request did not get an upstream response.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot connect: {0}")]
    Connect(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the connection failed: {0}")]
    Request(#[source] hyper::Error),
}

/// The idle connections of one upstream.
pub struct Idle(ArrayQueue<SendRequest<Incoming>>);

/// Connects to upstreams and keeps their idle-connection queues.
pub struct Upstreams {
    connector: HttpsConnector<HttpConnector>,
    /// Queues by `scheme://authority`, so connections outlive snapshot swaps. Read when a
    /// snapshot is installed, never per request.
    queues: Mutex<HashMap<String, Arc<Idle>>>,
}

impl Upstreams {
    /// TLS uses the system's trust roots; ALPN offers HTTP/1.1.
    pub fn new() -> Result<Upstreams, std::io::Error> {
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
        })
    }

    /// The idle queue of `target`'s upstream (created on first use).
    pub fn idle_for(&self, target: &UpstreamTarget) -> Arc<Idle> {
        let mut q = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
        q.entry(target.url())
            .or_insert_with(|| Arc::new(Idle(ArrayQueue::new(MAX_IDLE))))
            .clone()
    }

    async fn connect(
        &self,
        target: &UpstreamTarget,
    ) -> Result<SendRequest<Incoming>, UpstreamError> {
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
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }

    /// Sends `req` on an idle connection of `idle` or a new one. A request the connection
    /// refused before sending anything (it was closing) is retried once on a new connection.
    pub async fn send(
        &self,
        idle: &Arc<Idle>,
        target: &UpstreamTarget,
        mut req: Request<Incoming>,
    ) -> Result<Response<PooledBody>, UpstreamError> {
        let mut fresh = false;
        loop {
            let mut sender = match checkout(idle).await {
                Some(s) if !fresh => s,
                _ => {
                    fresh = true;
                    self.connect(target).await?
                }
            };
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    return Ok(resp.map(|inner| PooledBody {
                        inner,
                        home: Some((idle.clone(), sender)),
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
async fn checkout(idle: &Idle) -> Option<SendRequest<Incoming>> {
    while let Some(mut s) = idle.0.pop() {
        if !s.is_closed() && s.ready().await.is_ok() {
            return Some(s);
        }
    }
    None
}

/// An upstream response body that returns its connection to the idle queue once it has
/// been read to the end. Dropped before the end, the connection is closed instead (its
/// remaining bytes would otherwise be read as the next response).
pub struct PooledBody {
    inner: Incoming,
    home: Option<(Arc<Idle>, SendRequest<Incoming>)>,
}

impl PooledBody {
    fn release(&mut self) {
        if let Some((idle, sender)) = self.home.take() {
            // A full queue drops the connection, which closes it.
            let _ = idle.0.push(sender);
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.release(),
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => self.release(),
            Poll::Ready(Some(Err(_))) => self.home = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        if self.inner.is_end_stream() {
            self.release();
        }
    }
}
