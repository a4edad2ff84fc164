//! The edge proxy: a hyper server that routes each request to one policy, answers or rejects
//! preflights at the edge, forwards the rest, and puts the decision's CORS headers on every
//! response of a matched policy — the upstream's, and the edge's own errors.
//!
//! Owns: sockets, the upstream client, the live snapshot (`store`), metrics and the admin
//! endpoints. Must not touch: policy parsing or CORS rules (it calls `config` and `cors`).

pub mod admin;
pub mod forward;
pub mod https;
pub mod metrics;
pub mod rescue;
pub mod shadow;
pub mod store;
pub mod stream;
pub mod upstream;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use tokio::sync::watch;

use crate::config::{self, finish, normalize_host};
use crate::cors::{self, Action, Kind};
use crate::serve::{self, Listener};
use metrics::{Metrics, Outcome};
pub use rescue::{ProxyError, rescue};
use store::Store;

/// Every response body: the upstream's, streamed, or one the edge made.
pub type Body = Either<upstream::PooledBody, Full<Bytes>>;

/// What every request handler shares.
pub struct Shared {
    pub store: Arc<Store>,
}

/// Handles one request from `peer` (its address, preformatted for X-Forwarded-For); `tls`:
/// it came over the `--listen-tls` listener.
pub async fn handle(
    shared: &Shared,
    peer: &HeaderValue,
    tls: bool,
    mut req: Request<Incoming>,
) -> Response<Body> {
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
    let Some(store::Serving { counters, idle }) = live.serving.get(idx) else {
        return rescue(&ProxyError::NotReady);
    };
    if tls {
        req.extensions_mut().insert(https::Https);
    }
    let decision = policy
        .cors
        .decide(cors::classify(req.method(), req.headers()));
    if policy.redirect_http && !tls {
        // Fetch checks CORS on a redirect of a CORS request, so the decision's headers go on
        // it too; a preflight fails all the same (a browser follows no redirect there).
        counters.outcome(Outcome::RedirectedHttps);
        let mut resp = https::redirect(&host, req.uri());
        finish(
            policy,
            (!policy.shadow).then_some(&decision),
            resp.headers_mut(),
        );
        return resp;
    }
    if tracing::enabled!(tracing::Level::DEBUG) {
        // Shadow: the action is what the policy would do; the request is forwarded untouched.
        tracing::debug!(
            policy = %policy.id,
            method = %req.method(),
            config_version = %live.snapshot.version,
            shadow = policy.shadow,
            kind = ?decision.kind,
            action = ?decision.action,
            reason = ?decision.rejection,
            "decided"
        );
    }
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
        drop(decision);
        let mut resp = forward_or_rescue(
            shared,
            idle,
            policy,
            counters,
            Outcome::Shadow,
            req,
            peer,
            host_value,
        )
        .await;
        finish(policy, None, resp.headers_mut());
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
    let mut resp = match decision.action {
        Action::Respond => {
            counters.outcome(outcome);
            let mut r = Response::new(Either::Right(Full::new(Bytes::new())));
            *r.status_mut() = StatusCode::NO_CONTENT;
            r
        }
        Action::Reject => {
            counters.outcome(outcome);
            let reason = decision
                .rejection
                .as_ref()
                .map_or_else(String::new, |r| r.describe(decision.request()));
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
            forward_or_rescue(
                shared, idle, policy, counters, outcome, req, peer, host_value,
            )
            .await
        }
    };
    finish(policy, Some(&decision), resp.headers_mut());
    resp
}

/// Forwards upstream and counts `outcome`, or turns the failure into the edge's response.
#[allow(clippy::too_many_arguments)]
async fn forward_or_rescue(
    shared: &Shared,
    idle: &Arc<upstream::Idle>,
    policy: &config::CompiledPolicy,
    counters: &metrics::PolicyCounters,
    outcome: Outcome,
    req: Request<Incoming>,
    peer: &HeaderValue,
    host: Option<HeaderValue>,
) -> Response<Body> {
    let host = host.unwrap_or_else(|| HeaderValue::from_static(""));
    match forward::forward(
        &shared.store.upstreams,
        idle,
        policy,
        &counters.latency,
        req,
        peer,
        &host,
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

/// Where the proxy's policies come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// Standalone: a YAML file or directory, re-read on change and every `poll`.
    Files { path: PathBuf, poll: Duration },
    /// In cluster: the controller's config stream.
    Controller(stream::StreamOptions),
}

impl Source {
    fn describe(&self) -> String {
        match self {
            Source::Files { path, .. } => path.display().to_string(),
            Source::Controller(o) => format!("controller {}", o.controller),
        }
    }
}

/// Options of `corsgate proxy`.
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    pub listen: SocketAddr,
    /// HTTPS, certificates by SNI from the policies' `spec.tls`; `None`: off.
    pub listen_tls: Option<SocketAddr>,
    pub admin: SocketAddr,
    pub drain: Duration,
    pub source: Source,
}

/// Runs the proxy until `shutdown` turns true; returns after draining.
pub async fn run(
    opts: ProxyOptions,
    shutdown: watch::Receiver<bool>,
) -> Result<(), std::io::Error> {
    let metrics = Arc::new(Metrics::new());
    let upstreams = Arc::new(upstream::Upstreams::new()?);
    let store = Arc::new(Store::new(metrics, upstreams, opts.source.describe()));
    let traffic = serve::bind("traffic", opts.listen).await?;
    let admin = serve::bind("admin", opts.admin).await?;
    let traffic_tls = match opts.listen_tls {
        Some(a) => Some(serve::bind("traffic-tls", a).await?),
        None => None,
    };
    tracing::info!(
        listen = %traffic.local_addr()?,
        listen_tls = %traffic_tls.as_ref().and_then(|l| l.local_addr().ok()).map_or("off".to_string(), |a| a.to_string()),
        admin = %admin.local_addr()?,
        source = %opts.source.describe(),
        "corsgate proxy serving"
    );
    // In cluster, shadow-mode counts go to the controller, a last time after draining.
    let mut last_report = None;
    match opts.source {
        Source::Files { path, poll } => {
            reload(&store, &path);
            let mut watch = config::watch::watch(&path, poll);
            let watch_store = store.clone();
            let mut watch_stop = shutdown.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = watch.changed(Duration::from_millis(150)) => reload(&watch_store, &path),
                        () = serve::stopped(&mut watch_stop) => break,
                    }
                }
            });
        }
        Source::Controller(o) => {
            let connector = stream::connector(&o).map_err(std::io::Error::other)?;
            let client: stream::ReportClient =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build(connector.clone());
            tokio::spawn(stream::report_shadow(
                client.clone(),
                store.metrics.clone(),
                o.clone(),
                shutdown.clone(),
            ));
            last_report = Some((client, o.clone()));
            tokio::spawn(stream::subscribe(
                store.clone(),
                o,
                shutdown.clone(),
                connector,
            ));
        }
    }

    let shared = Arc::new(Shared {
        store: store.clone(),
    });
    let admin_task = tokio::spawn(admin::admin(&store).serve(admin, shutdown.clone()));
    let make = |tls: bool| {
        let shared = shared.clone();
        move |peer: SocketAddr| {
            let shared = shared.clone();
            let peer = forward::peer_value(peer.ip());
            move |req: Request<Incoming>| {
                let (shared, peer) = (shared.clone(), peer.clone());
                async move { handle(&shared, &peer, tls, req).await }
            }
        }
    };
    let tls_task = match traffic_tls {
        Some(listener) => {
            let source = serve::TlsSource::sni(Arc::new(https::SnapshotCerts(store.clone())))
                .map_err(std::io::Error::other)?;
            let how = Listener {
                tls: Some(Arc::new(source)),
                ..Listener::plain("traffic-tls", opts.drain)
            };
            Some(tokio::spawn(serve::serve(
                listener,
                how,
                make(true),
                shutdown.clone(),
            )))
        }
        None => None,
    };
    serve::serve(
        traffic,
        Listener::plain("traffic", opts.drain),
        make(false),
        shutdown,
    )
    .await;
    if let Some(t) = tls_task {
        let _ = t.await;
    }
    let _ = admin_task.await;
    if let Some((client, o)) = last_report {
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            stream::report_once(&client, &store.metrics, &o),
        )
        .await;
    }
    Ok(())
}
