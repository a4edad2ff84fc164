//! The admin listener: `/healthz` (the process serves), `/readyz` (a configuration is
//! loaded), `/metrics` (Prometheus text) and `/config` (the live snapshot, its version and
//! the last load's errors, as JSON).

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{Either, Full};

use super::Body;
use super::store::Store;

fn reply(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Either::Right(Full::new(body.into())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// The `/config` document.
pub fn config_json(store: &Store) -> serde_json::Value {
    let live = store.load();
    let status = store.status();
    match live {
        Some(l) => serde_json::json!({
            "ready": true,
            "version": l.snapshot.version,
            "loadedAtUnixSeconds": l.loaded_at,
            "policies": l.snapshot.policies.iter().map(|p| p.effective()).collect::<Vec<_>>(),
            "rejected": l.snapshot.rejected,
            "lastLoad": status,
        }),
        None => serde_json::json!({
            "ready": false,
            "version": null,
            "policies": [],
            "rejected": [],
            "lastLoad": status,
        }),
    }
}

pub fn handle(store: &Store, req: &Request<hyper::body::Incoming>) -> Response<Body> {
    const TEXT: &str = "text/plain; charset=utf-8";
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(StatusCode::METHOD_NOT_ALLOWED, TEXT, "use GET\n");
    }
    match req.uri().path() {
        "/healthz" => reply(StatusCode::OK, TEXT, "ok\n"),
        "/readyz" => match store.version() {
            Some(v) => reply(StatusCode::OK, TEXT, format!("ready: config {v}\n")),
            None => reply(
                StatusCode::SERVICE_UNAVAILABLE,
                TEXT,
                "not ready: no configuration loaded yet (see /config for load errors)\n",
            ),
        },
        "/metrics" => reply(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            store.metrics.encode(),
        ),
        "/config" => {
            let body = serde_json::to_vec_pretty(&config_json(store)).unwrap_or_default();
            reply(StatusCode::OK, "application/json", body)
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            TEXT,
            "not found: try /healthz, /readyz, /metrics or /config\n",
        ),
    }
}
