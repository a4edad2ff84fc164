//! The controller's two listeners, on the one serving module (`crate::serve`): the config
//! stream (`--listen`: `GET /v1/config`, `POST /v1/shadow`) and the admin endpoints
//! (`--admin`, the shared router: ready once the caches synced and a snapshot was
//! published; `/config` lists the proxies and their versions). Both stop on shutdown; long
//! polls end at once with 503 so proxies move to another replica.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http::{Request, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::metrics::Metrics;
use super::stream::{self, Hub};
use crate::serve::{self, Admin, Listener, TEXT, reply};

/// How long the stream listener's connections may finish after shutdown.
const DRAIN: Duration = Duration::from_secs(2);

/// Readiness: the caches have synced and a snapshot was published.
#[derive(Default)]
pub struct Health {
    pub synced: AtomicBool,
    pub leader: AtomicBool,
}

/// The admin router over the controller's state.
pub fn admin(hub: &Arc<Hub>, health: &Arc<Health>, metrics: &Arc<Metrics>) -> Admin {
    let (ready_hub, ready_health) = (hub.clone(), health.clone());
    let (config_hub, config_health) = (hub.clone(), health.clone());
    let metrics = metrics.clone();
    Admin {
        ready: Box::new(move || match ready_hub.version() {
            Some(v) if ready_health.synced.load(Ordering::Acquire) => Ok(v),
            _ => Err("caches not synced or no snapshot yet"),
        }),
        metrics: Box::new(move || metrics.encode()),
        config: Box::new(move || {
            let now = tokio::time::Instant::now();
            let version = config_hub.version();
            let tally = config_hub.tally(version.as_deref(), now);
            serde_json::json!({
                "version": version,
                "leader": config_health.leader.load(Ordering::Acquire),
                "proxies": config_hub.proxies().into_iter().map(|(p, v)| serde_json::json!({"proxy": p, "version": v})).collect::<Vec<_>>(),
                "connected": tally.connected,
                "current": tally.current,
            })
        }),
    }
}

/// Serves the config stream on `listener` until `shutdown`, in cleartext.
pub async fn serve_stream(
    listener: TcpListener,
    hub: Arc<Hub>,
    wait: Duration,
    shutdown: watch::Receiver<bool>,
) {
    serve_stream_with(listener, hub, wait, shutdown, None).await;
}

/// Serves the config stream; with `tls` (`serve::tls::mutual_server`), only clients that
/// present a certificate from the proxies' CA complete the handshake: a client without one
/// gets no configuration and cannot post shadow reports.
pub async fn serve_stream_with(
    listener: TcpListener,
    hub: Arc<Hub>,
    wait: Duration,
    shutdown: watch::Receiver<bool>,
    tls: Option<Arc<serve::TlsSource>>,
) {
    let stop = shutdown.clone();
    serve::serve(
        listener,
        Listener {
            tls,
            ..Listener::plain("stream", DRAIN)
        },
        move |_: SocketAddr| {
            let (hub, stop) = (hub.clone(), stop.clone());
            move |req: Request<Incoming>| {
                let (hub, mut stop) = (hub.clone(), stop.clone());
                async move {
                    if req.uri().path() == "/v1/shadow" {
                        let (parts, body) = req.into_parts();
                        return match Limited::new(body, stream::MAX_REPORT).collect().await {
                            Ok(b) => stream::accept_report(&hub, &parts.method, &b.to_bytes()),
                            Err(e) => reply(
                                StatusCode::PAYLOAD_TOO_LARGE,
                                TEXT,
                                format!("cannot read the shadow report: {e}\n"),
                            ),
                        };
                    }
                    stream::handle(&hub, req.method(), req.uri(), wait, &mut stop).await
                }
            }
        },
        shutdown,
    )
    .await;
}
