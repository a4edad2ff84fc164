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

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn admin(ready: Readiness) -> Admin {
        Admin {
            ready: Box::new(move || ready.clone()),
            metrics: Box::new(|| "# EOF\n".into()),
            config: Box::new(|| serde_json::json!({"version": "v1"})),
        }
    }

    async fn get(a: &Admin, method: Method, path: &str) -> (StatusCode, String, String) {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .body(())
            .expect("request");
        let resp = a.handle(&req);
        let ct = resp.headers()[http::header::CONTENT_TYPE]
            .to_str()
            .expect("ascii")
            .to_string();
        let status = resp.status();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        (status, ct, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn routes_readiness_metrics_and_config() {
        let up = admin(Ok("abc".into()));
        assert_eq!(
            get(&up, Method::GET, "/healthz").await,
            (StatusCode::OK, TEXT.into(), "ok\n".into())
        );
        assert_eq!(
            get(&up, Method::GET, "/readyz").await,
            (StatusCode::OK, TEXT.into(), "ready: config abc\n".into())
        );
        let down = admin(Err("no snapshot yet"));
        assert_eq!(
            get(&down, Method::GET, "/readyz").await,
            (
                StatusCode::SERVICE_UNAVAILABLE,
                TEXT.into(),
                "not ready: no snapshot yet\n".into()
            )
        );
        let (status, ct, body) = get(&up, Method::HEAD, "/metrics").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "# EOF\n"));
        assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
        let (status, ct, body) = get(&up, Method::GET, "/config").await;
        assert_eq!((status, ct.as_str()), (StatusCode::OK, "application/json"));
        let doc: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(doc["version"], "v1");
        assert_eq!(
            get(&up, Method::POST, "/healthz").await.0,
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            get(&up, Method::GET, "/nope").await.0,
            StatusCode::NOT_FOUND
        );
    }
}
