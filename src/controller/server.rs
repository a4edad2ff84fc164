//! The controller's two listeners: the config stream (`--listen`) and the admin endpoints
//! (`--admin`: /healthz, /readyz, /metrics, /config). Both stop on shutdown; long polls end
//! at once with 503 so proxies move to another replica.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::metrics::Metrics;
use super::stream::{self, Hub};
use crate::webhook::server::reply;

/// Readiness: the caches have synced and a snapshot was published.
#[derive(Default)]
pub struct Health {
    pub synced: AtomicBool,
    pub leader: AtomicBool,
}

/// Resolves once `shutdown` is true (or its sender is gone).
pub async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

pub async fn bind(what: &str, addr: SocketAddr) -> Result<TcpListener, std::io::Error> {
    TcpListener::bind(addr).await.map_err(|e| {
        std::io::Error::new(e.kind(), format!("cannot listen on {addr} ({what}): {e}"))
    })
}

/// Serves `handler` on `listener` until `shutdown` turns true.
pub async fn serve<H, Fut>(
    name: &'static str,
    listener: TcpListener,
    handler: H,
    mut shutdown: watch::Receiver<bool>,
) where
    H: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Bytes>> + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30));
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((io, _)) => {
                    let h = handler.clone();
                    let svc = service_fn(move |req| {
                        let fut = h(req);
                        async move { Ok::<_, Infallible>(fut.await.map(Full::new)) }
                    });
                    let conn = builder.serve_connection(TokioIo::new(io), svc).into_owned();
                    let mut stop = shutdown.clone();
                    tokio::spawn(async move {
                        tokio::pin!(conn);
                        tokio::select! {
                            r = conn.as_mut() => if let Err(e) = r {
                                tracing::debug!(listener = name, error = %e, "connection ended with an error");
                            },
                            () = stopped(&mut stop) => {
                                conn.as_mut().graceful_shutdown();
                                let _ = tokio::time::timeout(Duration::from_secs(2), conn).await;
                            }
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(listener = name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = stopped(&mut shutdown) => break,
        }
    }
}

/// The admin endpoints.
pub fn admin(
    hub: &Hub,
    health: &Health,
    metrics: &Metrics,
    req: &Request<Incoming>,
) -> Response<Bytes> {
    const TEXT: &str = "text/plain; charset=utf-8";
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(StatusCode::METHOD_NOT_ALLOWED, TEXT, "use GET\n");
    }
    match req.uri().path() {
        "/healthz" => reply(StatusCode::OK, TEXT, "ok\n"),
        "/readyz" => match (health.synced.load(Ordering::Acquire), hub.version()) {
            (true, Some(v)) => reply(StatusCode::OK, TEXT, format!("ready: config {v}\n")),
            _ => reply(
                StatusCode::SERVICE_UNAVAILABLE,
                TEXT,
                "not ready: caches not synced or no snapshot yet\n",
            ),
        },
        "/metrics" => reply(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.encode(),
        ),
        "/config" => {
            let now = tokio::time::Instant::now();
            let version = hub.version();
            let tally = hub.tally(version.as_deref(), now);
            let body = serde_json::json!({
                "version": version,
                "leader": health.leader.load(Ordering::Acquire),
                "proxies": hub.proxies().into_iter().map(|(p, v)| serde_json::json!({"proxy": p, "version": v})).collect::<Vec<_>>(),
                "connected": tally.connected,
                "current": tally.current,
            });
            reply(StatusCode::OK, "application/json", body.to_string())
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            TEXT,
            "not found: /healthz /readyz /metrics /config\n",
        ),
    }
}

/// Serves the config stream on `listener`.
pub async fn serve_stream(
    listener: TcpListener,
    hub: Arc<Hub>,
    wait: Duration,
    shutdown: watch::Receiver<bool>,
) {
    let stop = shutdown.clone();
    serve(
        "stream",
        listener,
        move |req: Request<Incoming>| {
            let (hub, mut stop) = (hub.clone(), stop.clone());
            async move {
                if req.uri().path() == "/v1/shadow" {
                    let (parts, body) = req.into_parts();
                    return match Limited::new(body, stream::MAX_REPORT).collect().await {
                        Ok(b) => stream::accept_report(&hub, &parts.method, &b.to_bytes()),
                        Err(e) => reply(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "text/plain; charset=utf-8",
                            format!("cannot read the shadow report: {e}\n"),
                        ),
                    };
                }
                stream::handle(&hub, req.method(), req.uri(), wait, &mut stop).await
            }
        },
        shutdown,
    )
    .await;
}
