//! `corsgate controller`: watches CorsPolicy and Service, builds one immutable snapshot with
//! the same `config::Snapshot::build` as file mode, serves it to proxies as a long-poll
//! config stream, and (as the Lease holder) writes each policy's status.
//!
//! Owns: reflectors, the reconcile loop, status computation and writes, Events, the config
//! stream server, leader election, the controller's admin endpoints. Must not touch: policy
//! rules or compilation (it calls `config`), the proxy (it only speaks the wire format in
//! `config::wire`).
//!
//! Guarantees:
//! - Invalid or conflicting policies never reach proxies (the document carries only the
//!   accepted ones), and never change what the valid ones serve.
//! - Nothing is published before every watch has listed once: an empty snapshot from a cold
//!   cache would wipe every proxy.
//! - Status is written only when it differs from what is stored, timestamps aside, so a
//!   status write (which the watch sees) settles instead of looping.
//! - No finalizers: deleting a policy never waits for the controller.
//!
//! Caveats:
//! - Programmed counts the proxies connected to *this* replica. With several replicas behind
//!   one Service, the leader sees only its share (docs/controller.md).

pub mod lease;
pub mod metrics;
pub mod reconcile;
pub mod rejections;
pub mod rollout;
pub mod secrets;
pub mod server;
pub mod status;
pub mod stream;
pub mod stream_certs;
pub mod write;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod shadow_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod write_load_tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::TryStreamExt;
use k8s_openapi::api::core::v1::{Secret, Service};
use kube::runtime::events::Recorder;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use crate::policy::CorsPolicy;
use crate::serve;
use lease::LeaseOptions;
use metrics::Metrics;
use reconcile::Context;
use server::Health;
use stream::Hub;

/// Everything that can go wrong in the controller. Each variant has a metric label.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot write the status of {policy}: {source}")]
    StatusPatch {
        policy: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("cannot publish an event about {policy}: {source}")]
    Event {
        policy: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("leader election failed: {0}")]
    Lease(#[source] Box<kube_lease_manager::LeaseManagerError>),
    #[error("watching {what} failed: {source}")]
    Watch {
        what: &'static str,
        #[source]
        source: Box<watcher::Error>,
    },
    #[error("cannot serialise the config document: {0}")]
    Serialize(#[source] serde_json::Error),
    #[error("cannot listen: {0}")]
    Listen(#[source] std::io::Error),
    #[error("admission webhook: {0}")]
    Webhook(#[source] Box<crate::webhook::Error>),
    #[error("the config stream's certificates: {0}")]
    StreamCerts(#[source] Box<crate::webhook::Error>),
    #[error("a controller task stopped unexpectedly: {0}")]
    TaskDied(String),
}

impl Error {
    /// The `error` label of `corsgate_controller_errors_total`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::StatusPatch { .. } => "status_patch",
            Error::Event { .. } => "event",
            Error::Lease(_) => "lease",
            Error::Watch { .. } => "watch",
            Error::Serialize(_) => "serialize",
            Error::Listen(_) => "listen",
            Error::Webhook(_) => "webhook",
            Error::StreamCerts(_) => "stream_certs",
            Error::TaskDied(_) => "task_died",
        }
    }
}

/// Options of `corsgate controller`.
#[derive(Debug, Clone)]
pub struct ControllerOptions {
    /// The config stream.
    pub listen: SocketAddr,
    /// The config stream over mutually authenticated TLS with these files; `None`:
    /// cleartext, unless `stream_certs`.
    pub stream_tls: Option<crate::serve::MutualFiles>,
    /// The config stream over mutually authenticated TLS with certificates the controller
    /// issues and keeps in Secrets (the chart's default).
    pub stream_certs: Option<stream_certs::StreamCertOptions>,
    pub admin: SocketAddr,
    /// Empty: every namespace.
    pub namespaces: Vec<String>,
    /// Quiet time after a change before rebuilding (changes in a burst rebuild once).
    pub debounce: Duration,
    /// How long a current proxy's poll waits for a new version.
    pub long_poll: Duration,
    /// A proxy unseen for this long no longer counts.
    pub proxy_ttl: Duration,
    /// How long a proxy may take to load a new configuration (and, after start or a lease
    /// takeover, to reconnect) before Programmed reports it behind.
    pub programmed_grace: Duration,
    /// At most one status write per policy per this interval; changes in between are
    /// coalesced into the next write.
    pub status_min_interval: Duration,
    /// None: this replica always leads (single replica, development).
    pub lease: Option<LeaseOptions>,
    /// `reportingInstance` of Events (the pod name).
    pub instance: String,
    /// The admission webhook (`--webhook`), served by every replica on its policy cache.
    pub webhook: Option<crate::webhook::WebhookOptions>,
}

async fn stores_ready<K>(stores: &[Store<K>])
where
    K: Resource + Clone + 'static,
    K::DynamicType: std::hash::Hash + Eq + Clone,
{
    for s in stores {
        let _ = s.wait_until_ready().await;
    }
}

/// Starts one reflector per namespace (or one over all) and returns their stores; each
/// event pokes `changed`.
fn reflect<K>(
    tasks: &mut JoinSet<Result<(), Error>>,
    client: &kube::Client,
    namespaces: &[String],
    what: &'static str,
    changed: Arc<Notify>,
    metrics: Arc<Metrics>,
    config: &watcher::Config,
) -> Vec<Store<K>>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let apis: Vec<Api<K>> = if namespaces.is_empty() {
        vec![Api::all(client.clone())]
    } else {
        namespaces
            .iter()
            .map(|ns| Api::namespaced(client.clone(), ns))
            .collect()
    };
    let mut stores = Vec::new();
    for api in apis {
        let (reader, writer) = reflector::store();
        stores.push(reader);
        let stream = reflector::reflector(writer, watcher(api, config.clone())).default_backoff();
        let (changed, metrics) = (changed.clone(), metrics.clone());
        tasks.spawn(async move {
            let mut stream = std::pin::pin!(stream);
            loop {
                match stream.try_next().await {
                    Ok(Some(_)) => changed.notify_one(),
                    Ok(None) => return Err(Error::TaskDied(format!("the {what} watch ended"))),
                    Err(e) => {
                        let e = Error::Watch {
                            what,
                            source: Box::new(e),
                        };
                        metrics.error(e.metric_label());
                        tracing::warn!(error = %e, "watch error; retrying with backoff");
                    }
                }
            }
        });
    }
    stores
}

/// Runs the controller until `shutdown` turns true, or returns the error that stopped it.
pub async fn run(
    client: kube::Client,
    opts: ControllerOptions,
    shutdown: watch::Receiver<bool>,
) -> Result<(), Error> {
    let metrics = Arc::new(Metrics::new());
    let hub = Arc::new(Hub::with_grace(opts.proxy_ttl, opts.programmed_grace));
    let health = Arc::new(Health::default());
    let stream_listener = serve::bind("config stream", opts.listen)
        .await
        .map_err(Error::Listen)?;
    let admin_listener = serve::bind("admin", opts.admin)
        .await
        .map_err(Error::Listen)?;
    tracing::info!(
        listen = %opts.listen,
        admin = %opts.admin,
        namespaces = ?opts.namespaces,
        "corsgate controller starting"
    );

    let mut tasks: JoinSet<Result<(), Error>> = JoinSet::new();
    let authenticated;
    {
        let (stream_hub, wait, stop) = (hub.clone(), opts.long_poll, shutdown.clone());
        let stream_tls = match (&opts.stream_tls, &opts.stream_certs) {
            (Some(files), _) => Some(Arc::new(crate::serve::TlsSource::Memory(Arc::new(
                arc_swap::ArcSwap::new(
                    crate::serve::tls::mutual_server(files)
                        .map_err(|e| Error::Listen(std::io::Error::other(e)))?,
                ),
            )))),
            (None, Some(sc)) => {
                let bundle = stream_certs::ensure(&client, sc, time::OffsetDateTime::now_utc())
                    .await
                    .map_err(|e| Error::StreamCerts(Box::new(e)))?;
                let config = stream_certs::server_config(&bundle)
                    .map_err(|e| Error::Listen(std::io::Error::other(e)))?;
                let current = Arc::new(arc_swap::ArcSwap::new(config));
                tasks.spawn(stream_certs_task(
                    client.clone(),
                    sc.clone(),
                    current.clone(),
                    shutdown.clone(),
                ));
                Some(Arc::new(crate::serve::TlsSource::Memory(current)))
            }
            (None, None) => None,
        };
        authenticated = stream_tls.is_some();
        tasks.spawn(async move {
            server::serve_stream_with(stream_listener, stream_hub, wait, stop, stream_tls).await;
            Ok(())
        });
        let (admin, stop) = (server::admin(&hub, &health, &metrics), shutdown.clone());
        tasks.spawn(async move {
            admin.serve(admin_listener, stop).await;
            Ok(())
        });
    }

    // Policy events rebuild the snapshot; Service events only refresh status.
    let policies_changed = Arc::new(Notify::new());
    let services_changed = Arc::new(Notify::new());
    let all = watcher::Config::default();
    let policies = reflect::<CorsPolicy>(
        &mut tasks,
        &client,
        &opts.namespaces,
        "CorsPolicy",
        policies_changed.clone(),
        metrics.clone(),
        &all,
    );
    let services = reflect::<Service>(
        &mut tasks,
        &client,
        &opts.namespaces,
        "Service",
        services_changed.clone(),
        metrics.clone(),
        &all,
    );
    // Private keys only travel on an authenticated stream: without one, no Secret is read.
    // A Secret changing rebuilds like a policy (a rotated certificate is a new version).
    let secret_source = if authenticated {
        secrets::SecretSource::Watched(reflect::<Secret>(
            &mut tasks,
            &client,
            &opts.namespaces,
            "Secret",
            policies_changed.clone(),
            metrics.clone(),
            &watcher::Config::default().fields(secrets::TLS_FIELD_SELECTOR),
        ))
    } else {
        tracing::info!(
            "config stream in cleartext: no Secret is read and no certificate is delivered (spec.tls reports CertificatesWithheld)"
        );
        secrets::SecretSource::Withheld
    };

    let (_always_tx, mut is_leader) = lease::always(true);
    if let Some(lo) = &opts.lease {
        let l = lease::elect(client.clone(), lo).await?;
        is_leader = l.is_leader;
        tasks.spawn(async move {
            l.task
                .await
                .map_err(|e| Error::TaskDied(format!("lease: {e}")))?
        });
    }

    let mut ctx = Context::new(
        client.clone(),
        policies,
        services,
        hub.clone(),
        metrics.clone(),
        Recorder::new(
            client.clone(),
            format!("corsgate-controller/{}", opts.instance).into(),
        ),
        opts.status_min_interval,
    );
    ctx.secrets = secret_source;
    if let Some(wo) = opts.webhook.clone() {
        // The webhook probes the snapshot the controller serves; before the first build
        // (caches still listing) it builds one from what is cached.
        let (built, stores) = (ctx.built.clone(), ctx.policies.clone());
        let existing: crate::webhook::Existing = Arc::new(move || {
            let last = built
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .as_ref()
                .map(|b| b.snap.clone());
            last.unwrap_or_else(|| {
                Arc::new(crate::config::Snapshot::build(
                    stores
                        .iter()
                        .flat_map(Store::state)
                        .map(|p| status::input_of(&p))
                        .collect(),
                ))
            })
        });
        let (client, stop) = (client.clone(), shutdown.clone());
        tasks.spawn(async move {
            crate::webhook::run(client, wo, existing, stop)
                .await
                .map_err(|e| Error::Webhook(Box::new(e)))
        });
    }

    let mut stop = shutdown.clone();
    // Nothing is built before every cache has listed once.
    tokio::select! {
        biased;
        () = stores_ready(&ctx.policies) => {}
        () = serve::stopped(&mut stop) => return Ok(()),
        Some(done) = tasks.join_next() => return task_ended(done),
    }
    tokio::select! {
        biased;
        () = stores_ready(&ctx.services) => {}
        () = serve::stopped(&mut stop) => return Ok(()),
        Some(done) = tasks.join_next() => return task_ended(done),
    }
    if let secrets::SecretSource::Watched(stores) = &ctx.secrets {
        tokio::select! {
            biased;
            () = stores_ready(stores) => {}
            () = serve::stopped(&mut stop) => return Ok(()),
            Some(done) = tasks.join_next() => return task_ended(done),
        }
    }
    health.synced.store(true, Ordering::Release);
    tracing::info!("caches synced");

    let mut acks = hub.subscribe_changes();
    let tick = opts.proxy_ttl / 3;
    let mut dirty = true;
    let mut was_leader = false;
    loop {
        let now = tokio::time::Instant::now();
        hub.expire(now);
        let leader = *is_leader.borrow_and_update();
        if leader && !was_leader {
            // Proxies that followed the old leader are still reconnecting: give them the
            // grace period before any is judged missing.
            *ctx.quiet_from
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = now;
        }
        was_leader = leader;
        health.leader.store(leader, Ordering::Release);
        metrics.leader.set(i64::from(leader));
        let pass = if dirty {
            reconcile::reconcile(&ctx, leader).await
        } else {
            reconcile::refresh(&ctx, leader).await
        };
        let (retry_at, wake_at) = match pass {
            Ok(o) => {
                dirty = false;
                let retry =
                    (o.failed > 0).then(|| tokio::time::Instant::now() + Duration::from_secs(5));
                (retry, o.wake_at)
            }
            Err(e) => {
                metrics.error(e.metric_label());
                tracing::warn!(error = %e, "reconcile failed; retrying in 5s");
                (
                    Some(tokio::time::Instant::now() + Duration::from_secs(5)),
                    None,
                )
            }
        };
        let until = match (retry_at, wake_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        acks.mark_unchanged();
        tokio::select! {
            biased;
            () = serve::stopped(&mut stop) => break,
            () = policies_changed.notified() => dirty = true,
            () = services_changed.notified() => {}
            _ = acks.changed() => {}
            _ = is_leader.changed() => tracing::info!(leader = *is_leader.borrow(), "leadership changed"),
            () = tokio::time::sleep(tick) => {
                hub.expire(tokio::time::Instant::now());
            }
            () = async { if let Some(at) = until { tokio::time::sleep_until(at).await } else { std::future::pending().await } } => {}
            Some(done) = tasks.join_next() => return task_ended(done),
        }
        // Debounce: a burst of changes (a kubectl apply of many policies, a resync) rebuilds once.
        tokio::time::sleep(opts.debounce).await;
    }
    tasks.abort_all();
    Ok(())
}

async fn stream_certs_task(
    client: kube::Client,
    opts: stream_certs::StreamCertOptions,
    current: Arc<arc_swap::ArcSwap<rustls::ServerConfig>>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), Error> {
    stream_certs::keep_rotated(client, opts, current, shutdown).await;
    Ok(())
}

fn task_ended(done: Result<Result<(), Error>, tokio::task::JoinError>) -> Result<(), Error> {
    match done {
        Ok(Ok(())) => Err(Error::TaskDied("a server task ended".into())),
        Ok(Err(e)) => Err(e),
        Err(e) => Err(Error::TaskDied(e.to_string())),
    }
}
