//! The edge proxy: a hyper server that routes each request to one policy, answers or rejects
//! preflights at the edge, forwards the rest, and puts the decision's CORS headers on every
//! response of a matched policy — the upstream's, and the edge's own errors.
//!
//! Owns: sockets, the upstream client, the live snapshot (`store`), metrics and the admin
//! endpoints. Must not touch: policy parsing or CORS rules (it calls `config` and `cors`).

pub mod admin;
pub mod forward;
pub mod metrics;
pub mod rescue;
pub mod server;
pub mod shadow;
pub mod store;
pub mod stream;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use tokio::sync::watch;

use crate::config::{self, normalize_host};
use crate::cors::{self, Action, Kind, Rejection};
use forward::UpstreamClient;
use metrics::{Metrics, Outcome};
pub use rescue::{ProxyError, rescue};
use store::Store;

/// Every response body: the upstream's, streamed, or one the edge made.
pub type Body = Either<Incoming, Full<Bytes>>;

/// What every request handler shares.
pub struct Shared {
    pub store: Arc<Store>,
    pub client: UpstreamClient,
}

fn rejection_text(r: &Rejection, req: &cors::CorsRequest) -> String {
    match r {
        Rejection::Origin => match req.parsed_origin() {
            Some(cors::RequestOrigin::Invalid(why)) => format!("the request has {why}"),
            _ => "the origin is not allowed".to_string(),
        },
        Rejection::Method => {
            let m = req
                .preflight
                .as_ref()
                .map(|p| String::from_utf8_lossy(p.method.as_bytes()).into_owned());
            format!("method {} is not allowed", m.unwrap_or_default())
        }
        Rejection::Header(h) => format!("request header {h:?} is not allowed"),
        Rejection::PrivateNetwork => "private network access is not allowed".to_string(),
    }
}

/// Handles one request from `peer` (its address, preformatted for X-Forwarded-For).
pub async fn handle(shared: &Shared, peer: &HeaderValue, req: Request<Incoming>) -> Response<Body> {
    let Some(live) = shared.store.load() else {
        return rescue(&ProxyError::NotReady);
    };
    // HTTP/2 carries the host in the URI (`:authority`), HTTP/1.1 in `Host`.
    let host_value = match req.headers().get(header::HOST) {
        Some(h) => Some(h.clone()),
        None => req
            .uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok()),
    };
    let host_raw = host_value
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let host = normalize_host(host_raw);
    let Some((idx, policy)) = live.snapshot.route(&host, req.uri().path()) else {
        shared.store.metrics.unrouted.inc();
        return rescue(&ProxyError::NoRoute {
            host: host.into_owned(),
            path: req.uri().path().to_string(),
        });
    };
    let Some(counters) = live.counters.get(idx) else {
        return rescue(&ProxyError::NotReady);
    };
    let decision = policy
        .cors
        .decide(cors::classify(req.method(), req.headers()));
    if policy.shadow {
        // Shadow: count what the policy would do, then forward untouched by CORS: no
        // preflight answered, no CORS or Vary header added, removed or replaced.
        // responseHeaders still apply: they are not CORS.
        if let Some(shadow) = &counters.shadow
            && decision.kind != Kind::NotCors
        {
            shadow.record(
                decision.rejection.as_ref(),
                decision.request().origin.as_ref(),
            );
        }
        if tracing::enabled!(tracing::Level::DEBUG) {
            tracing::debug!(
                policy = %policy.id,
                method = %req.method(),
                config_version = %live.snapshot.version,
                kind = ?decision.kind,
                reason = ?decision.rejection,
                "shadow: forwarded untouched"
            );
        }
        drop(decision);
        let host_value = host_value.unwrap_or_else(|| HeaderValue::from_static(""));
        let mut resp = match forward::forward(
            &shared.client,
            policy,
            &counters.latency,
            req,
            peer,
            &host_value,
        )
        .await
        {
            Ok(r) => {
                counters.outcome(Outcome::Shadow);
                r.map(Either::Left)
            }
            Err(e) => {
                counters.outcome(Outcome::UpstreamError);
                tracing::warn!(policy = %policy.id, error = %e, "upstream request failed");
                rescue(&e)
            }
        };
        policy.response_headers.apply(resp.headers_mut());
        return resp;
    }
    if let Some(r) = &decision.rejection {
        counters.rejection(r);
    }
    let outcome = match (decision.kind, decision.rejection.is_some()) {
        (Kind::NotCors, _) => Outcome::NotCors,
        (Kind::Preflight, false) => Outcome::PreflightAllowed,
        (Kind::Preflight, true) => Outcome::PreflightRejected,
        (Kind::Actual, false) => Outcome::ActualAllowed,
        (Kind::Actual, true) => Outcome::OriginRejected,
    };
    if tracing::enabled!(tracing::Level::DEBUG) {
        tracing::debug!(
            policy = %policy.id,
            method = %req.method(),
            config_version = %live.snapshot.version,
            kind = ?decision.kind,
            action = ?decision.action,
            reason = ?decision.rejection,
            "decided"
        );
    }
    let mut resp = match decision.action {
        Action::Respond => {
            counters.outcome(outcome);
            let mut r = Response::new(Either::Right(Full::new(Bytes::new())));
            *r.status_mut() = StatusCode::NO_CONTENT;
            decision.write_preflight(r.headers_mut());
            policy.response_headers.apply(r.headers_mut());
            return r;
        }
        Action::Reject => {
            counters.outcome(outcome);
            let reason = decision
                .rejection
                .as_ref()
                .map_or_else(String::new, |r| rejection_text(r, decision.request()));
            rescue(&ProxyError::Rejected {
                policy: policy.id.to_string(),
                what: if decision.kind == Kind::Preflight {
                    "preflight"
                } else {
                    "request"
                },
                reason,
            })
        }
        Action::Forward => {
            let host_value = host_value.unwrap_or_else(|| HeaderValue::from_static(""));
            match forward::forward(
                &shared.client,
                policy,
                &counters.latency,
                req,
                peer,
                &host_value,
            )
            .await
            {
                Ok(r) => {
                    counters.outcome(outcome);
                    r.map(Either::Left)
                }
                Err(e) => {
                    counters.outcome(Outcome::UpstreamError);
                    tracing::warn!(policy = %policy.id, error = %e, "upstream request failed");
                    rescue(&e)
                }
            }
        }
    };
    decision.apply_to_response(resp.headers_mut());
    policy.response_headers.apply(resp.headers_mut());
    resp
}

/// Loads the policies under `path` into `store`, logging what changed or what is wrong.
pub fn reload(store: &Store, path: &std::path::Path) {
    let span = tracing::info_span!("reload", source = %path.display());
    let _enter = span.enter();
    match config::load_snapshot(path) {
        Ok(snap) => {
            for r in &snap.rejected {
                tracing::warn!(policy = %r.policy, rejected = ?r.rejected, "policy not serving");
            }
            let (version, policies) = (snap.version.clone(), snap.policies.len());
            if store.install(snap) {
                tracing::info!(version = %version, policies, "configuration loaded");
            }
        }
        Err(errors) => {
            let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
            if store.fail(lines.clone()) {
                for l in &lines {
                    tracing::error!(error = %l, "invalid policy; keeping the last good configuration");
                }
                match store.version() {
                    Some(v) => {
                        tracing::warn!(version = %v, "still serving the previous configuration")
                    }
                    None => tracing::warn!("no configuration loaded yet; not ready"),
                }
            }
        }
    }
}

/// Options of `corsgate proxy`.
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    pub policies: PathBuf,
    pub drain: Duration,
    pub poll: Duration,
}

/// Runs the proxy until `shutdown` turns true; returns after draining.
pub async fn run(
    opts: ProxyOptions,
    shutdown: watch::Receiver<bool>,
) -> Result<(), std::io::Error> {
    let metrics = Arc::new(Metrics::new());
    let store = Arc::new(Store::new(metrics, opts.policies.display().to_string()));
    let client = forward::client()?;
    let traffic = server::bind("traffic", opts.listen).await?;
    let admin = server::bind("admin", opts.admin).await?;
    reload(&store, &opts.policies);

    let mut watch = config::watch::watch(&opts.policies, opts.poll);
    let (watch_store, path) = (store.clone(), opts.policies.clone());
    let mut watch_stop = shutdown.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = watch.changed(Duration::from_millis(150)) => reload(&watch_store, &path),
                () = server::stopped(&mut watch_stop) => break,
            }
        }
    });

    tracing::info!(listen = %traffic.local_addr()?, admin = %admin.local_addr()?, "corsgate proxy serving");
    let shared = Arc::new(Shared {
        store: store.clone(),
        client,
    });
    let admin_store = store.clone();
    let admin_task = tokio::spawn(server::serve(
        "admin",
        admin,
        move |_| {
            let store = admin_store.clone();
            move |req: Request<Incoming>| {
                let store = store.clone();
                async move { admin::handle(&store, &req) }
            }
        },
        shutdown.clone(),
        Duration::from_secs(1),
    ));
    server::serve(
        "traffic",
        traffic,
        move |peer: SocketAddr| {
            let shared = shared.clone();
            let peer = forward::peer_value(peer.ip());
            move |req: Request<Incoming>| {
                let (shared, peer) = (shared.clone(), peer.clone());
                async move { handle(&shared, &peer, req).await }
            }
        },
        shutdown,
        opts.drain,
    )
    .await;
    let _ = admin_task.await;
    Ok(())
}
