//! The edge proxy: a hyper server that routes each request to one policy, answers or rejects
//! preflights at the edge, forwards the rest, and puts the decision's CORS headers on every
//! response of a matched policy — the upstream's, and the edge's own errors.
//!
//! Owns: sockets, the upstream client, the live snapshot (`store`), metrics and the admin
//! endpoints. Must not touch: policy parsing or CORS rules (it calls `config` and `cors`).

pub mod admin;
pub mod forward;
pub mod host;
pub mod https;
pub mod metrics;
pub mod rejections;
pub mod reloader;
pub mod rescue;
pub mod shadow;
pub mod store;
pub mod stream;
pub mod upgrade;
pub mod upstream;
pub mod workers;

pub use reloader::Reloader;

#[cfg(test)]
mod reload_tests;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use tokio::sync::watch;

use crate::config::{self, finish};
use crate::cors::{self, Action, Kind};
use crate::serve::{self, Listener};
use forward::{ClientConn, ForwardOptions};
use metrics::{Metrics, Outcome};
pub use rescue::{ProxyError, rescue};
use store::Store;

/// Every response body: the upstream's, streamed, or one the edge made.
pub type Body = Either<upstream::PooledBody, Full<Bytes>>;

/// What every request handler shares.
pub struct Shared {
    pub store: Arc<Store>,
    pub forward: ForwardOptions,
}

/// Headers of an edge-answered preflight: Vary, Allow-Origin, -Credentials, -Methods,
/// -Headers, -Max-Age, -Private-Network and Expose-Headers.
const PREFLIGHT_HEADERS: usize = 8;

/// Handles one request from `client` (its connection: address and upstream slots); `tls`:
/// it came over the `--listen-tls` listener.
pub async fn handle(
    shared: &Shared,
    client: &ClientConn,
    tls: bool,
    mut req: Request<Incoming>,
) -> Response<Body> {
    let Some(live) = shared.store.load() else {
        return rescue(&ProxyError::NotReady);
    };
    // HTTP/1.1 names the host in `Host` (or an absolute-form target), HTTP/2 in `:authority`.
    let host = match host::request_host(req.version(), req.uri(), req.headers()) {
        Ok(h) => h,
        Err(e) => {
            shared.store.metrics.invalid_host.inc();
            tracing::debug!(error = %e, "invalid host");
            return rescue(&ProxyError::InvalidHost(e));
        }
    };
    let name = host.as_ref().map_or("", host::RequestHost::name);
    let Some((idx, policy)) = live.snapshot.route(name, req.uri().path()) else {
        shared.store.metrics.unrouted.inc();
        return rescue(&ProxyError::NoRoute {
            host: name.to_string(),
            path: req.uri().path().to_string(),
        });
    };
    let Some(serving) = live.serving.get(idx) else {
        return rescue(&ProxyError::NotReady);
    };
    let (counters, idle) = (
        serving.counters(&shared.store.metrics, policy),
        &serving.idle,
    );
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
        let mut resp = https::redirect(name, req.uri());
        finish(
            policy,
            (!policy.shadow).then_some(&decision),
            resp.headers_mut(),
        );
        return resp;
    }
    let host_value = host.map(|h| h.value);
    if upgrade::is_upgrade(&req) {
        drop(decision);
        let mut resp = relay_upgrade(shared, policy, counters, req, client, host_value).await;
        // No CORS headers on a handshake (browsers ignore them there); responseHeaders apply.
        finish(policy, None, resp.headers_mut());
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
    if decision.rejection.is_some() {
        // Only here, on a rejection: the counts, the ring entry, the rate-limited log line.
        counters.recent.rejected(
            &policy.id,
            &decision,
            req.method(),
            &live.snapshot.version,
            policy.shadow,
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
            client,
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
            // Room for the preflight headers and Vary up front: one allocation, no regrowth.
            *r.headers_mut() =
                http::HeaderMap::with_capacity(PREFLIGHT_HEADERS + policy.response_headers.added());
            r
        }
        Action::Reject => {
            counters.outcome(outcome);
            let reason = match &decision.rejection {
                Some(r) if policy.rejection_reasons => r.describe(decision.request()),
                _ => "the reason is not shown (spec.debug.rejectionReasons is off)".into(),
            };
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
                shared, idle, policy, counters, outcome, req, client, host_value,
            )
            .await
        }
    };
    finish(policy, Some(&decision), resp.headers_mut());
    if policy.rejection_reasons
        && let Some(r) = &decision.rejection
    {
        say_why(resp.headers_mut(), &r.describe(decision.request()));
    }
    resp
}

/// `x-corsgate-error` and `x-corsgate-reason` on a rejection of a policy that opted in
/// (`spec.debug.rejectionReasons`). The reason quotes the request (method, header names),
/// so it is cut and reduced to visible ASCII to be a valid header value.
fn say_why(h: &mut http::HeaderMap, reason: &str) {
    const MAX: usize = 200;
    let clean: String = reason
        .chars()
        .take(MAX)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    h.insert(
        "x-corsgate-error",
        HeaderValue::from_static(rescue::REJECTED_LABEL),
    );
    if let Ok(v) = HeaderValue::from_str(&clean) {
        h.insert("x-corsgate-reason", v);
    }
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
    client: &ClientConn,
    host: Option<HeaderValue>,
) -> Response<Body> {
    let host = host.unwrap_or_else(|| HeaderValue::from_static(""));
    match forward::forward(
        &shared.store.upstreams,
        idle,
        policy,
        &counters.latency,
        req,
        client,
        &host,
        &shared.forward,
    )
    .await
    {
        Ok(r) => {
            counters.outcome(outcome);
            r.map(Either::Left)
        }
        Err(e) => failed(policy, counters, &e),
    }
}

/// Counts a failed forward (the client's fault or the upstream's) and answers it.
fn failed(
    policy: &config::CompiledPolicy,
    counters: &metrics::PolicyCounters,
    e: &ProxyError,
) -> Response<Body> {
    if let ProxyError::ClientBody { .. } = e {
        counters.outcome(Outcome::ClientError);
        tracing::debug!(policy = %policy.id, error = %e, "client request body failed");
    } else {
        counters.outcome(Outcome::UpstreamError);
        tracing::warn!(policy = %policy.id, error = %e, "upstream request failed");
    }
    rescue(e)
}

/// An upgrade request: refused when its Origin is not allowed (`websocket.checkOrigin`,
/// enforced unless the policy is in Shadow), else relayed; a 101 counts as `upgrade`.
async fn relay_upgrade(
    shared: &Shared,
    policy: &config::CompiledPolicy,
    counters: &metrics::PolicyCounters,
    req: Request<Incoming>,
    client: &ClientConn,
    host: Option<HeaderValue>,
) -> Response<Body> {
    if !policy.shadow
        && let Some(reason) = upgrade::refused_origin(policy, req.headers())
    {
        counters.rejection(&cors::Rejection::Origin);
        counters.outcome(Outcome::OriginRejected);
        return rescue(&ProxyError::Rejected {
            policy: policy.id.to_string(),
            what: "upgrade",
            reason,
        });
    }
    let host = host.unwrap_or_else(|| HeaderValue::from_static(""));
    let relayed = upgrade::forward(
        &shared.store.upstreams,
        policy,
        &counters.latency,
        req,
        client,
        &host,
        &shared.forward,
    )
    .await;
    match relayed {
        Ok(r) => {
            counters.outcome(if r.status() == StatusCode::SWITCHING_PROTOCOLS {
                Outcome::Upgrade
            } else if policy.shadow {
                Outcome::Shadow
            } else {
                Outcome::NotCors
            });
            r
        }
        Err(e) => failed(policy, counters, &e),
    }
}

/// How long the policy files must stay unmodified before they are read: the debounce of
/// file events, so a burst of writes becomes one reload and a file between truncate and
/// write is not read at once.
const SETTLE_QUIET: Duration = Duration::from_millis(150);
/// How long a reload waits for the files to settle before reading them anyway.
const SETTLE_MAX_WAIT: Duration = Duration::from_secs(2);

/// Loads the policies under `path` into `store`, logging what changed or what is wrong.
/// A source that yields no policy while some are serving is refused (issue 13: a file read
/// between truncate and write must not take every route down); an empty source at startup
/// is served as it always was (ready, every request 404).
pub async fn reload(store: &Arc<Store>, path: &std::path::Path) {
    use tracing::Instrument;
    let span = tracing::info_span!("reload", source = %path.display());
    reload_in_span(store, path).instrument(span).await;
}

async fn reload_in_span(store: &Arc<Store>, path: &std::path::Path) {
    let loaded =
        config::watch::load_settled(path, SETTLE_QUIET, SETTLE_MAX_WAIT, store.load()).await;
    let serving = store.serving();
    let loaded = loaded.and_then(|snap| {
        if snap.policies.is_empty() && snap.rejected.is_empty() && serving > 0 {
            Err(vec![config::LoadError::NoPolicies {
                path: path.display().to_string(),
                serving,
            }])
        } else {
            Ok(snap)
        }
    });
    match loaded {
        Ok(snap) => {
            for r in &snap.rejected {
                tracing::warn!(policy = %r.policy, rejected = ?r.rejected, "policy not serving");
            }
            store.install_logged(snap, "configuration loaded").await;
        }
        Err(errors) => {
            let reason = errors.first().map_or("invalid", config::LoadError::reason);
            let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
            if store.fail(lines.clone(), reason) {
                for l in &lines {
                    tracing::error!(error = %l, reason, "configuration not loaded; keeping the last good one");
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
    pub forward: ForwardOptions,
    /// HTTP/1.1 header timeout of the traffic listener.
    pub header_timeout: Duration,
    /// Per-connection limits of the traffic listener (its counters are replaced by the
    /// proxy's, so `/metrics` shows them).
    pub conn: serve::ConnLimits,
    /// Per-core workers: each a thread with its own single-threaded runtime, its own
    /// `SO_REUSEPORT` listeners and its own idle upstream connections, so a connection and
    /// everything its requests do stay on one core. 0 or 1: traffic is served on the
    /// caller's runtime.
    pub workers: usize,
}

/// Runs the proxy until `shutdown` turns true; returns after draining.
pub async fn run(
    opts: ProxyOptions,
    shutdown: watch::Receiver<bool>,
) -> Result<(), std::io::Error> {
    let workers = opts.workers.max(1);
    let metrics = Arc::new(Metrics::new());
    let upstreams = Arc::new(upstream::Upstreams::new(workers)?);
    let store = Arc::new(Store::new(metrics, upstreams, opts.source.describe()));
    // One set of sockets per worker, sharing the port (SO_REUSEPORT), bound before anything
    // starts so a taken port fails the start.
    let traffic = serve::bind_reuseport("traffic", opts.listen, workers)?;
    let traffic_tls = match opts.listen_tls {
        Some(a) => Some(serve::bind_reuseport("traffic-tls", a, workers)?),
        None => None,
    };
    let admin = serve::bind("admin", opts.admin).await?;
    let local = |l: &[std::net::TcpListener]| {
        l.first()
            .and_then(|l| l.local_addr().ok())
            .map_or("off".to_string(), |a| a.to_string())
    };
    tracing::info!(
        listen = %local(&traffic),
        listen_tls = %traffic_tls.as_deref().map_or("off".to_string(), local),
        admin = %admin.local_addr()?,
        workers,
        source = %opts.source.describe(),
        "corsgate proxy serving"
    );
    // In cluster, shadow-mode counts go to the controller, a last time after draining.
    let mut last_report = None;
    match opts.source {
        Source::Files { path, poll } => {
            let mut reloader = Reloader::default();
            reloader.on_change(&store, &path).await;
            let mut watch = config::watch::watch(&path, poll);
            let watch_store = store.clone();
            let mut watch_stop = shutdown.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = watch.changed(SETTLE_QUIET) => {
                            reloader.on_change(&watch_store, &path).await;
                        }
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
        forward: opts.forward,
    });
    let admin_task = tokio::spawn(admin::serve(store.clone(), admin, shutdown.clone()));
    // --max-connections holds for the process: every listener of every worker takes from
    // the same slots.
    let slots = (opts.conn.max_connections > 0)
        .then(|| Arc::new(tokio::sync::Semaphore::new(opts.conn.max_connections)));
    // An HTTP/2 client may open as many streams as it may have upstream requests.
    let traffic_listener = |name: &'static str| {
        Listener {
            header_timeout: opts.header_timeout,
            conn: serve::ConnLimits {
                metrics: store.metrics.conn.clone(),
                slots: slots.clone(),
                ..opts.conn.clone()
            },
            ..Listener::plain(name, opts.drain)
        }
        .max_concurrent_streams(opts.forward.max_upstream_per_connection.max(1))
    };
    let make = |tls: bool| {
        let shared = shared.clone();
        move |peer: SocketAddr| {
            let shared = shared.clone();
            let client = Arc::new(ClientConn::new(peer.ip(), &shared.forward));
            move |req: Request<Incoming>| {
                let (shared, client) = (shared.clone(), client.clone());
                // Boxed once: the handler's future is large, and hyper and the serving
                // layer move it several times before it first runs (issue 14).
                Box::pin(async move { handle(&shared, &client, tls, req).await })
            }
        }
    };
    let tls_how = match &traffic_tls {
        Some(_) => Some(Listener {
            tls: Some(Arc::new(
                serve::TlsSource::sni(Arc::new(https::SnapshotCerts(store.clone())))
                    .map_err(std::io::Error::other)?,
            )),
            ..traffic_listener("traffic-tls")
        }),
        None => None,
    };
    let plain_how = traffic_listener("traffic");
    // Serves one worker's sockets on the runtime it is called on, until shutdown and drain.
    let serve_worker = {
        let (make_plain, make_tls) = (make(false), make(true));
        move |plain: std::net::TcpListener,
              tls: Option<std::net::TcpListener>,
              stop: watch::Receiver<bool>| {
            let (plain_how, tls_how) = (plain_how.clone(), tls_how.clone());
            let (make_plain, make_tls) = (make_plain.clone(), make_tls.clone());
            async move {
                let plain = tokio::net::TcpListener::from_std(plain)?;
                let tls_task = match (tls, tls_how) {
                    (Some(l), Some(how)) => Some(tokio::spawn(serve::serve(
                        tokio::net::TcpListener::from_std(l)?,
                        how,
                        make_tls,
                        stop.clone(),
                    ))),
                    _ => None,
                };
                serve::serve(plain, plain_how, make_plain, stop).await;
                if let Some(t) = tls_task {
                    let _ = t.await;
                }
                Ok::<(), std::io::Error>(())
            }
        }
    };
    workers::serve_all(traffic, traffic_tls, serve_worker, shutdown).await?;
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
