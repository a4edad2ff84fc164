//! The reconcile passes. A policy event rebuilds: every cached policy → one snapshot (with
//! `Snapshot::build`, the code file mode uses) → published to the config stream, with each
//! policy's verdict, config version and warnings kept beside it. Everything else (a proxy
//! acknowledgement, a Service, a shadow report, a tick) only refreshes status from that
//! build. Either way, as leader, each policy's status is written when it changed, at most
//! once per `min_interval`, and not while Programmed may still settle by itself (a proxy
//! within its grace period), with Events for rejections.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::events::Recorder;
use kube::runtime::reflector::Store;
use tracing::Instrument;

use super::metrics::Metrics;
use super::status::{self, ServiceIndex};
use super::stream::{Hub, policy_version};
use super::{Error, write};
use crate::config::certs::Secrets;
use crate::config::wire::ConfigDocument;
use crate::config::{Snapshot, TlsReport};
use crate::policy::CorsPolicy;
use tokio::time::Instant;

/// What a pass works with.
pub struct Context {
    pub client: kube::Client,
    pub policies: Vec<Store<CorsPolicy>>,
    pub services: Vec<Store<Service>>,
    pub hub: Arc<Hub>,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    /// Where `spec.tls` Secrets come from (withheld unless the stream is mutually
    /// authenticated).
    pub secrets: super::secrets::SecretSource,
    /// The content of each Secret that last served (kept serving while its Secret is broken).
    pub last_good: Mutex<super::secrets::LastGood>,
    /// The last build, read by every status pass until policies change again (and by the
    /// webhook's conflict check).
    pub built: Arc<Mutex<Option<Arc<Built>>>>,
    /// Nothing is judged behind (no proxies, proxies behind) before `quiet_from + grace`:
    /// the controller's start, or when it took the lease.
    pub quiet_from: Mutex<Instant>,
    /// At most one status write per policy per `min_interval`; later changes are coalesced
    /// into one write when it has passed.
    pub min_interval: Duration,
    last_write: Mutex<HashMap<String, Instant>>,
}

impl Context {
    pub fn new(
        client: kube::Client,
        policies: Vec<Store<CorsPolicy>>,
        services: Vec<Store<Service>>,
        hub: Arc<Hub>,
        metrics: Arc<Metrics>,
        recorder: Recorder,
        min_interval: Duration,
    ) -> Context {
        Context {
            client,
            policies,
            services,
            hub,
            metrics,
            recorder,
            secrets: super::secrets::SecretSource::Withheld,
            last_good: Mutex::new(super::secrets::LastGood::new()),
            built: Arc::new(Mutex::new(None)),
            quiet_from: Mutex::new(Instant::now()),
            min_interval,
            last_write: Mutex::new(HashMap::new()),
        }
    }

    fn last_built(&self) -> Option<Arc<Built>> {
        self.built
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// One build: the snapshot of every cached policy and what it says about each of them.
pub struct Built {
    pub snap: Arc<Snapshot>,
    /// Verdict, config version and warnings by `namespace/name`, keyed with the generation
    /// they were computed for (a policy whose generation moved is recomputed).
    pub facts: HashMap<String, (Option<i64>, status::Facts)>,
    pub published: bool,
}

/// What a pass did, for logs and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub version: String,
    pub published: bool,
    pub patched: usize,
    pub failed: usize,
    /// Writes held back (a proxy within its grace period, or the per-policy interval): the
    /// loop wakes by then to make them.
    pub deferred: usize,
    pub wake_at: Option<Instant>,
}

/// The ports of every cached Service.
pub fn service_index(stores: &[Store<Service>]) -> ServiceIndex {
    let mut idx: ServiceIndex = HashMap::new();
    for s in stores.iter().flat_map(Store::state) {
        let (Some(ns), Some(name)) = (s.metadata.namespace.clone(), s.metadata.name.clone()) else {
            continue;
        };
        let ports = s
            .spec
            .as_ref()
            .and_then(|sp| sp.ports.as_ref())
            .map(|ps| ps.iter().map(|p| p.port).collect())
            .unwrap_or_default();
        idx.insert((ns, name), ports);
    }
    idx
}

/// Builds and publishes the snapshot of `policies`; returns it and the document size.
pub fn build(
    policies: &[Arc<CorsPolicy>],
    hub: &Hub,
    metrics: &Metrics,
) -> Result<(Snapshot, bool), Error> {
    build_with(
        policies,
        &Secrets::default(),
        &mut super::secrets::LastGood::new(),
        None,
        hub,
        metrics,
    )
}

/// [`build`] with the Secrets policies name: the serving ones travel in the document.
///
/// A Secret whose content broke (a bad edit, a renewal with the wrong key) keeps serving its
/// last good content from `last_good`: the published snapshot is built with it, while the
/// returned snapshot's `tls` reports say what is wrong now (ResolvedRefs=False), with a
/// warning that the last good certificate still serves.
///
/// `previous` (the last snapshot built): what it compiled is reused for policies whose spec
/// did not change, so one edit among 10,000 policies compiles one (issue 14).
pub fn build_with(
    policies: &[Arc<CorsPolicy>],
    secrets: &Secrets,
    last_good: &mut super::secrets::LastGood,
    previous: Option<&Snapshot>,
    hub: &Hub,
    metrics: &Metrics,
) -> Result<(Snapshot, bool), Error> {
    let started = std::time::Instant::now();
    let inputs: Vec<_> = policies.iter().map(|p| status::input_of(p)).collect();
    let mut snap = Snapshot::build_reusing(inputs.clone(), secrets, previous);
    let doc = match super::secrets::with_last_good(&snap, secrets, last_good) {
        None => {
            super::secrets::remember(&snap, secrets, last_good);
            ConfigDocument::of_with(&snap, &inputs, secrets)
        }
        Some((served, replaced)) => {
            let mut truth = std::mem::take(&mut snap.tls);
            snap = Snapshot::build_reusing(inputs.clone(), &served, Some(&snap));
            let doc = ConfigDocument::of_with(&snap, &inputs, &served);
            super::secrets::remember(&snap, &served, last_good);
            for r in &mut truth {
                let ns = r.policy.split_once('/').map_or("", |(ns, _)| ns);
                if replaced.contains(&(ns.to_string(), r.secret.clone())) {
                    r.warnings.push(format!(
                        "spec.tls.secretName: proxies keep serving the last good certificate of secret {ns}/{} until the Secret is fixed",
                        r.secret
                    ));
                }
            }
            snap.tls = truth;
            doc
        }
    };
    let published = hub.publish(&doc).map_err(Error::Serialize)?;
    metrics
        .build_seconds
        .observe(started.elapsed().as_secs_f64());
    if let Some(p) = hub.current() {
        metrics
            .snapshot_bytes
            .set(i64::try_from(p.body.len()).unwrap_or(i64::MAX));
        metrics
            .snapshot_policies
            .set(i64::try_from(p.policies).unwrap_or(i64::MAX));
    }
    Ok((snap, published))
}

/// Builds, publishes and remembers the snapshot of every cached policy. Facts of policies
/// whose generation did not move are carried over from the previous build (warnings
/// compile regexes; the config version hashes the spec).
pub async fn rebuild(ctx: &Context) -> Result<Arc<Built>, Error> {
    let policies: Vec<Arc<CorsPolicy>> = ctx.policies.iter().flat_map(Store::state).collect();
    let secrets = super::secrets::collect(&ctx.client, &ctx.secrets, &policies).await;
    let previous = ctx.last_built();
    let (snap, published) = {
        let mut last_good = ctx.last_good.lock().unwrap_or_else(PoisonError::into_inner);
        let before = previous.as_ref().map(|b| &*b.snap);
        build_with(
            &policies,
            &secrets,
            &mut last_good,
            before,
            &ctx.hub,
            &ctx.metrics,
        )?
    };
    let verdicts = status::verdicts(&snap);
    let tls: HashMap<&str, &TlsReport> = snap.tls.iter().map(|r| (r.policy.as_str(), r)).collect();
    let built_tls = |id: &str| tls.get(id).map(|r| (*r).clone());
    let mut facts = HashMap::with_capacity(policies.len());
    for p in &policies {
        let id = status::id_of(p).to_string();
        let generation = p.metadata.generation;
        let verdict = verdicts
            .get(&id)
            .cloned()
            .unwrap_or(status::Verdict::Unknown);
        let reuse = previous
            .as_ref()
            .and_then(|b| b.facts.get(&id))
            .filter(|(g, _)| *g == generation && generation.is_some());
        let f = match reuse {
            Some((_, old)) => status::Facts {
                version: (verdict == status::Verdict::Accepted).then(|| {
                    old.version
                        .clone()
                        .unwrap_or_else(|| policy_version(&id, &p.spec))
                }),
                warnings: old.warnings.clone(),
                tls: built_tls(&id),
                verdict,
            },
            None => status::Facts {
                version: (verdict == status::Verdict::Accepted)
                    .then(|| policy_version(&id, &p.spec)),
                warnings: status::warnings_of(p),
                tls: built_tls(&id),
                verdict,
            },
        };
        facts.insert(id, (generation, f));
    }
    let built = Arc::new(Built {
        snap: Arc::new(snap),
        facts,
        published,
    });
    *ctx.built.lock().unwrap_or_else(PoisonError::into_inner) = Some(built.clone());
    Ok(built)
}

/// A full pass: rebuild, publish, then (as leader) write what changed.
pub async fn reconcile(ctx: &Context, leader: bool) -> Result<Outcome, Error> {
    let built = rebuild(ctx).await?;
    refresh_with(ctx, leader, &built).await
}

/// A status pass on the last build (rebuilding only if there is none): what proxies,
/// Services, shadow reports or time changed. Policies changing call `reconcile`.
pub async fn refresh(ctx: &Context, leader: bool) -> Result<Outcome, Error> {
    let built = match ctx.last_built() {
        Some(b) => b,
        None => rebuild(ctx).await?,
    };
    refresh_with(ctx, leader, &built).await
}

async fn refresh_with(ctx: &Context, leader: bool, built: &Built) -> Result<Outcome, Error> {
    ctx.metrics.reconciles.inc();
    let policies: Vec<Arc<CorsPolicy>> = ctx.policies.iter().flat_map(Store::state).collect();
    let span = tracing::info_span!(
        "rebuild",
        version = %built.snap.version,
        policies = policies.len(),
        leader
    );
    statuses(ctx, leader, &policies, built)
        .instrument(span)
        .await
}

async fn statuses(
    ctx: &Context,
    leader: bool,
    policies: &[Arc<CorsPolicy>],
    built: &Built,
) -> Result<Outcome, Error> {
    let snap = &built.snap;
    let published = built.published;
    if published {
        tracing::info!(
            accepted = snap.policies.len(),
            rejected = snap.rejected.len(),
            "configuration published"
        );
    }
    let now = Instant::now();
    let tally = ctx.hub.tally(Some(&snap.version), now);
    ctx.metrics
        .connected_proxies
        .set(i64::try_from(tally.connected).unwrap_or(i64::MAX));
    ctx.metrics
        .current_proxies
        .set(i64::try_from(tally.current).unwrap_or(i64::MAX));
    let quiet_from = *ctx
        .quiet_from
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let fleet = ctx.hub.fleet(now, quiet_from);
    let services = service_index(&ctx.services);
    let stamp = Time(k8s_openapi::jiff::Timestamp::now());
    let mut outcome = Outcome {
        version: snap.version.clone(),
        published,
        ..Outcome::default()
    };
    let wake = |outcome: &mut Outcome, at: Instant| {
        outcome.deferred += 1;
        outcome.wake_at = Some(outcome.wake_at.map_or(at, |w| w.min(at)));
    };
    let mut counts: HashMap<(&'static str, bool), i64> = HashMap::new();
    for c in [status::ACCEPTED, status::RESOLVED_REFS, status::PROGRAMMED] {
        counts.insert((c, true), 0);
        counts.insert((c, false), 0);
    }
    let mut first_error = None;
    let shadow_ids: Vec<String> = policies
        .iter()
        .filter(|p| p.spec.mode == crate::policy::Mode::Shadow)
        .map(|p| status::id_of(p).to_string())
        .collect();
    ctx.hub
        .shadow_retain(|id| shadow_ids.iter().any(|s| s == id));
    let pending = ctx.hub.shadow_pending();
    {
        let live: std::collections::HashSet<&str> =
            built.facts.keys().map(String::as_str).collect();
        ctx.hub.recent.retain(|k| live.contains(k));
    }
    let unix_now = super::rejections::unix_now();
    for p in policies {
        let id = status::id_of(p).to_string();
        // A policy the last build has not seen (or seen at another generation) waits for
        // the rebuild its watch event has already asked for.
        let Some((_, facts)) = built
            .facts
            .get(&id)
            .filter(|(g, _)| *g == p.metadata.generation)
        else {
            continue;
        };
        let judgement = fleet.judge(&id);
        let mut desired = status::desired_from(p, facts, &services, judgement.tally, &stamp);
        let taken = pending.get(&id);
        let written = ctx.hub.shadow_written(&id);
        desired.shadow = status::shadow(p, written.as_ref().map(|(g, s)| (*g, s)), taken, &stamp);
        desired.rejections = ctx.hub.recent.summary(&id, unix_now);
        for c in &desired.conditions {
            let key = [status::ACCEPTED, status::RESOLVED_REFS, status::PROGRAMMED]
                .into_iter()
                .find(|k| *k == c.type_);
            if let Some(k) = key {
                *counts.entry((k, c.status == "True")).or_default() += 1;
            }
        }
        if !leader {
            continue;
        }
        if !status::same(p.status.as_ref(), &desired) {
            // Programmed may still settle by itself: write once, when it has.
            if let Some(until) = judgement.settle_until {
                wake(&mut outcome, until);
                continue;
            }
            let last = ctx
                .last_write
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&id)
                .copied();
            if let Some(last) = last
                && now < last + ctx.min_interval
            {
                wake(&mut outcome, last + ctx.min_interval);
                continue;
            }
        }
        let result = write::write_status(&ctx.client, p, &desired).await;
        if result.is_ok() {
            // In status now (or, Ok(false), there was nothing to add): no longer pending.
            if let Some(t) = taken {
                ctx.hub.shadow_settle(&id, t);
            }
            if let Some(s) = &desired.shadow {
                ctx.hub.shadow_remember(&id, desired.observed_generation, s);
            }
        }
        match result {
            Ok(false) => {}
            Ok(true) => {
                outcome.patched += 1;
                ctx.metrics.status_patches.inc();
                ctx.last_write
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(id.clone(), Instant::now());
                let evs = status::events(p.status.as_ref(), &desired);
                if let Err(e) = write::publish_events(&ctx.recorder, p, &evs).await {
                    // An Event is a courtesy: log it, count it, and keep going.
                    ctx.metrics.error(e.metric_label());
                    tracing::warn!(error = %e, "cannot publish event");
                }
            }
            Err(e) => {
                outcome.failed += 1;
                ctx.metrics.error(e.metric_label());
                tracing::warn!(error = %e, "status write failed; will retry");
                first_error.get_or_insert(e);
            }
        }
    }
    {
        let live: std::collections::HashSet<&str> =
            built.facts.keys().map(String::as_str).collect();
        ctx.last_write
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|k, _| live.contains(k.as_str()));
    }
    let counts: Vec<_> = counts.into_iter().collect();
    ctx.metrics.set_conditions(&counts);
    match first_error {
        Some(e) if outcome.patched == 0 && outcome.failed == policies.len() => Err(e),
        _ => Ok(outcome),
    }
}
