//! One reconcile pass: every cached policy → one snapshot (with `Snapshot::build`, the code
//! file mode uses) → published to the config stream → (as leader) each policy's status
//! computed and written when it changed, with Events for rejections.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::events::Recorder;
use kube::runtime::reflector::Store;
use tracing::Instrument;

use super::metrics::Metrics;
use super::status::{self, ServiceIndex};
use super::stream::Hub;
use super::{Error, write};
use crate::config::Snapshot;
use crate::config::wire::ConfigDocument;
use crate::policy::CorsPolicy;

/// What a pass works with.
pub struct Context {
    pub client: kube::Client,
    pub policies: Vec<Store<CorsPolicy>>,
    pub services: Vec<Store<Service>>,
    pub hub: Arc<Hub>,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
}

/// What a pass did, for logs and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub version: String,
    pub published: bool,
    pub patched: usize,
    pub failed: usize,
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
    let started = Instant::now();
    let inputs: Vec<_> = policies.iter().map(|p| status::input_of(p)).collect();
    let snap = Snapshot::build(inputs.clone());
    let doc = ConfigDocument::of(&snap, &inputs);
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

/// One pass. Status is written only when `leader`.
pub async fn reconcile(ctx: &Context, leader: bool) -> Result<Outcome, Error> {
    ctx.metrics.reconciles.inc();
    let policies: Vec<Arc<CorsPolicy>> = ctx.policies.iter().flat_map(Store::state).collect();
    let (snap, published) = build(&policies, &ctx.hub, &ctx.metrics)?;
    let span =
        tracing::info_span!("rebuild", version = %snap.version, policies = policies.len(), leader);
    statuses(ctx, leader, &policies, &snap, published)
        .instrument(span)
        .await
}

async fn statuses(
    ctx: &Context,
    leader: bool,
    policies: &[Arc<CorsPolicy>],
    snap: &Snapshot,
    published: bool,
) -> Result<Outcome, Error> {
    if published {
        tracing::info!(
            accepted = snap.policies.len(),
            rejected = snap.rejected.len(),
            "configuration published"
        );
    }
    let now = tokio::time::Instant::now();
    let tally = ctx.hub.tally(Some(&snap.version), now);
    ctx.metrics
        .connected_proxies
        .set(i64::try_from(tally.connected).unwrap_or(i64::MAX));
    ctx.metrics
        .current_proxies
        .set(i64::try_from(tally.current).unwrap_or(i64::MAX));
    let services = service_index(&ctx.services);
    let stamp = Time(k8s_openapi::jiff::Timestamp::now());
    let mut outcome = Outcome {
        version: snap.version.clone(),
        published,
        ..Outcome::default()
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
    for p in policies {
        let mut desired = status::desired(p, snap, &services, tally, &stamp);
        let id = status::id_of(p).to_string();
        let taken = pending.get(&id);
        let written = ctx.hub.shadow_written(&id);
        desired.shadow = status::shadow(p, written.as_ref().map(|(g, s)| (*g, s)), taken, &stamp);
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
    let counts: Vec<_> = counts.into_iter().collect();
    ctx.metrics.set_conditions(&counts);
    match first_error {
        Some(e) if outcome.patched == 0 && outcome.failed == policies.len() => Err(e),
        _ => Ok(outcome),
    }
}
