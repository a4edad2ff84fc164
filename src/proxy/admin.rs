//! The proxy's admin answers, served by the one admin router (`serve::Admin`): ready once a
//! configuration is loaded; `/config` shows the live snapshot, its version and the last
//! load's errors. Two routes of the proxy's own come first (issue 17):
//! `/explain?host=…&origin=…` runs `corsgate explain` on the live snapshot (text, or JSON
//! with `Accept: application/json`), and `/rejections?policy=ns/name` lists that policy's
//! last rejections.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::store::Store;
use crate::explain;
use crate::serve::{self, Admin, TEXT, reply};

/// The verdict of an `/explain` answer, for clients that do not parse the body.
pub const VERDICT_HEADER: &str = "x-corsgate-verdict";
/// The config version an `/explain` answer was computed on.
pub const VERSION_HEADER: &str = "x-corsgate-config-version";

fn wants_json<B>(req: &Request<B>) -> bool {
    req.headers()
        .get_all(header::ACCEPT)
        .iter()
        .any(|v| v.to_str().is_ok_and(|v| v.contains("application/json")))
}

fn json(status: StatusCode, v: &serde_json::Value) -> Response<Full<Bytes>> {
    reply(
        status,
        "application/json",
        serde_json::to_vec_pretty(v).unwrap_or_default(),
    )
}

/// `GET /explain`: the same answer as `corsgate explain`, on the snapshot serving now.
pub fn explain_answer<B>(store: &Store, req: &Request<B>) -> Response<Full<Bytes>> {
    let as_json = wants_json(req);
    let fail = |status: StatusCode, msg: String| {
        if as_json {
            json(status, &serde_json::json!({"error": msg}))
        } else {
            reply(status, TEXT, format!("{msg}\n"))
        }
    };
    let Some(live) = store.load() else {
        return fail(
            StatusCode::SERVICE_UNAVAILABLE,
            "no configuration loaded yet (see /config for load errors)".into(),
        );
    };
    let request = match explain::Request::from_query(req.uri().query().unwrap_or("")) {
        Ok(r) => r,
        Err(e) => return fail(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let e = explain::explain(&live.snapshot, &request);
    let mut resp = if as_json {
        json(StatusCode::OK, &e.to_json())
    } else {
        reply(StatusCode::OK, TEXT, e.text.clone())
    };
    let h = resp.headers_mut();
    h.insert(VERDICT_HEADER, HeaderValue::from_static(e.verdict.as_str()));
    if let Ok(v) = HeaderValue::from_str(&e.version) {
        h.insert(VERSION_HEADER, v);
    }
    resp
}

/// `GET /rejections?policy=ns/name`: that policy's last rejections, newest first.
pub fn rejections_answer<B>(store: &Store, req: &Request<B>) -> Response<Full<Bytes>> {
    let policy = form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == "policy")
        .map(|(_, v)| v.into_owned());
    let Some(policy) = policy.filter(|p| !p.is_empty()) else {
        let known: Vec<String> = store.load().map_or_else(Vec::new, |l| {
            l.snapshot
                .policies
                .iter()
                .map(|p| p.id.to_string())
                .collect()
        });
        return json(
            StatusCode::BAD_REQUEST,
            &serde_json::json!({
                "error": "missing policy: add policy=<namespace>/<name>",
                "policies": known,
            }),
        );
    };
    // A ring comes with a policy's first request: a policy serving that has had none has
    // no rejections yet, which is not "never served".
    let serving = || {
        store.load().is_some_and(|l| {
            l.snapshot
                .policies
                .iter()
                .any(|p| p.id.to_string() == policy)
        })
    };
    let ring = store.metrics.rings.get(&policy);
    if ring.is_none() && !serving() {
        return json(
            StatusCode::NOT_FOUND,
            &serde_json::json!({"error": format!("no policy {policy:?} has served on this proxy")}),
        );
    }
    json(
        StatusCode::OK,
        &serde_json::json!({
            "policy": policy,
            "kept": super::rejections::RING,
            "rejections": ring.map(|r| r.ring.newest_first()).unwrap_or_default(),
        }),
    )
}

/// Answers one admin request: the proxy's own routes, else the shared router.
pub fn route<B>(store: &Store, shared: &Admin, req: &Request<B>) -> Response<Full<Bytes>> {
    if req.method() == Method::GET || req.method() == Method::HEAD {
        match req.uri().path() {
            "/explain" => return explain_answer(store, req),
            "/rejections" => return rejections_answer(store, req),
            _ => {}
        }
    }
    shared.handle(req)
}

/// Serves the proxy's admin endpoints on `listener` until `shutdown` (drain: one second).
pub async fn serve(store: Arc<Store>, listener: TcpListener, shutdown: watch::Receiver<bool>) {
    let shared = Arc::new(admin(&store));
    serve::serve(
        listener,
        serve::Listener::plain("admin", std::time::Duration::from_secs(1)),
        move |_: SocketAddr| {
            let (store, shared) = (store.clone(), shared.clone());
            move |req: Request<hyper::body::Incoming>| {
                let resp = route(&store, &shared, &req);
                async move { resp }
            }
        },
        shutdown,
    )
    .await;
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
            "tls": l.snapshot.tls,
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

/// The admin router over `store`.
pub fn admin(store: &Arc<Store>) -> Admin {
    let (ready, metrics, config) = (store.clone(), store.clone(), store.clone());
    Admin {
        ready: Box::new(move || {
            ready
                .version()
                .ok_or("no configuration loaded yet (see /config for load errors)")
        }),
        metrics: Box::new(move || metrics.metrics.encode()),
        config: Box::new(move || config_json(&config)),
    }
}
