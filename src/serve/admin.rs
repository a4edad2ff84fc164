//! The one admin router, for the proxy's and the controller's `--admin` listeners:
//! `/healthz` (the process serves), `/readyz` (the owner's readiness function), `/metrics`
//! (OpenMetrics text) and `/config` (the owner's JSON document). GET and HEAD only.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::{Listener, TEXT, reply, serve};

/// Ready with the configuration version served, or not ready with the reason.
pub type Readiness = Result<String, &'static str>;

/// What an admin listener reports; each function is called per request.
pub struct Admin {
    pub ready: Box<dyn Fn() -> Readiness + Send + Sync>,
    /// OpenMetrics text.
    pub metrics: Box<dyn Fn() -> String + Send + Sync>,
    pub config: Box<dyn Fn() -> serde_json::Value + Send + Sync>,
}

impl Admin {
    /// Answers one admin request.
    pub fn handle<B>(&self, req: &Request<B>) -> Response<Full<Bytes>> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return reply(StatusCode::METHOD_NOT_ALLOWED, TEXT, "use GET\n");
        }
        match req.uri().path() {
            "/healthz" => reply(StatusCode::OK, TEXT, "ok\n"),
            "/readyz" => match (self.ready)() {
                Ok(v) => reply(StatusCode::OK, TEXT, format!("ready: config {v}\n")),
                Err(why) => reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    TEXT,
                    format!("not ready: {why}\n"),
                ),
            },
            "/metrics" => reply(
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                (self.metrics)(),
            ),
            "/config" => {
                let body = serde_json::to_vec_pretty(&(self.config)()).unwrap_or_default();
                reply(StatusCode::OK, "application/json", body)
            }
            _ => reply(
                StatusCode::NOT_FOUND,
                TEXT,
                "not found: try /healthz, /readyz, /metrics or /config\n",
            ),
        }
    }

    /// Serves the admin endpoints on `listener` until `shutdown` (drain: one second).
    pub async fn serve(self, listener: TcpListener, shutdown: watch::Receiver<bool>) {
        let admin = Arc::new(self);
        serve(
            listener,
            Listener::plain("admin", std::time::Duration::from_secs(1)),
            move |_: SocketAddr| {
                let admin = admin.clone();
                move |req: Request<hyper::body::Incoming>| {
                    let resp = admin.handle(&req);
                    async move { resp }
                }
            },
            shutdown,
        )
        .await;
    }
}
