//! The live configuration: one `ArcSwap` holding the current snapshot and the per-policy
//! state serving it needs (counters, upstream connections). A request loads it once and keeps
//! that `Arc` to the end, so a swap never changes the policy under a request in flight. A
//! failed load keeps the last good snapshot and records why.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;

use super::metrics::{Metrics, PolicyCounters};
use super::upstream::{Idle, Upstreams};
use crate::config::{CompiledPolicy, Snapshot};

/// What serving one policy needs beside its compiled form: its counters and its upstream's
/// idle connections. The idle queue is resolved when a snapshot is installed; the counters
/// when the policy serves its first request (then one atomic load per request), so a
/// policy that serves nothing has no series in `/metrics` and holds no memory for them: at
/// 10,000 policies eager counters held 27 MiB and made a 23 MB scrape (issue 14).
pub struct Serving {
    counters: OnceLock<PolicyCounters>,
    pub idle: Arc<Idle>,
}

impl Serving {
    /// The policy's counters, registered on first use (they outlive snapshots: a policy
    /// served again after a reload counts on from where it was).
    pub fn counters(&self, metrics: &Metrics, policy: &CompiledPolicy) -> &PolicyCounters {
        self.counters
            .get_or_init(|| metrics.policy(&policy.id.to_string(), policy.shadow))
    }
}

/// A snapshot and, aligned with `snapshot.policies`, what serving each policy needs.
pub struct Live {
    pub snapshot: Snapshot,
    pub serving: Vec<Serving>,
    pub loaded_at: u64,
}

impl AsRef<Snapshot> for Live {
    fn as_ref(&self) -> &Snapshot {
        &self.snapshot
    }
}

/// What the last load attempt said, for `/config` and logs.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadStatus {
    pub source: String,
    pub last_attempt_unix_seconds: u64,
    pub last_success_unix_seconds: Option<u64>,
    /// Problems of the last attempt; empty when it succeeded.
    pub errors: Vec<String>,
    /// Why the last attempt failed (a `reason` of `corsgate_config_reload_failures_total`);
    /// `None` when it succeeded.
    pub reason: Option<&'static str>,
}

pub struct Store {
    live: ArcSwapOption<Live>,
    status: Mutex<LoadStatus>,
    pub metrics: Arc<Metrics>,
    pub upstreams: Arc<Upstreams>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Store {
    pub fn new(
        metrics: Arc<Metrics>,
        upstreams: Arc<Upstreams>,
        source: impl Into<String>,
    ) -> Store {
        Store {
            live: ArcSwapOption::empty(),
            status: Mutex::new(LoadStatus {
                source: source.into(),
                ..LoadStatus::default()
            }),
            metrics,
            upstreams,
        }
    }

    /// The current configuration, `None` until the first good one.
    pub fn load(&self) -> Option<Arc<Live>> {
        self.live.load_full()
    }

    pub fn version(&self) -> Option<String> {
        self.live
            .load()
            .as_ref()
            .map(|l| l.snapshot.version.clone())
    }

    /// [`Store::install_off_runtime`], logged as `what` with the version, the policy count
    /// and how long building (`build_ms`, parsing excluded) and installing (`install_ms`)
    /// took. Nothing is logged when the version is unchanged.
    pub async fn install_logged(self: &Arc<Self>, snapshot: Snapshot, what: &str) {
        let (version, policies) = (snapshot.version.clone(), snapshot.policies.len());
        let build_ms = snapshot.built_in.as_secs_f64() * 1e3;
        let installing = std::time::Instant::now();
        if self.install_off_runtime(snapshot).await {
            let install_ms = installing.elapsed().as_secs_f64() * 1e3;
            tracing::info!(
                version = %version,
                policies,
                build_ms = format_args!("{build_ms:.1}"),
                install_ms = format_args!("{install_ms:.1}"),
                "{what}"
            );
        }
    }

    /// Installs a snapshot. Returns false (and keeps the current one) when the version is
    /// unchanged, so polling the same files does nothing.
    /// [`Store::install`] on a blocking thread: setting up thousands of policies' counters
    /// and queues takes a while, and requests keep being served meanwhile (issue 14).
    pub async fn install_off_runtime(self: &Arc<Self>, snapshot: Snapshot) -> bool {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.install(snapshot))
            .await
            .unwrap_or(false)
    }

    pub fn install(&self, snapshot: Snapshot) -> bool {
        let t = now();
        {
            let mut st = self.status.lock().unwrap_or_else(PoisonError::into_inner);
            st.last_attempt_unix_seconds = t;
            st.last_success_unix_seconds = Some(t);
            st.errors.clear();
            st.reason = None;
        }
        if self.version().as_deref() == Some(snapshot.version.as_str()) {
            return false;
        }
        let serving = snapshot
            .policies
            .iter()
            .map(|p| Serving {
                counters: OnceLock::new(),
                idle: self.upstreams.idle_for(&p.upstream),
            })
            .collect();
        // A policy no longer served takes its last rejections with it.
        let ids: std::collections::HashSet<String> =
            snapshot.policies.iter().map(|p| p.id.to_string()).collect();
        self.metrics.rings.retain(|k| ids.contains(k));
        self.metrics.reload(true);
        self.metrics.serving(&snapshot.version);
        self.metrics
            .policies
            .set(i64::try_from(snapshot.policies.len()).unwrap_or(i64::MAX));
        self.metrics
            .rejected_policies
            .set(i64::try_from(snapshot.rejected.len()).unwrap_or(i64::MAX));
        let old = self.live.swap(Some(Arc::new(Live {
            snapshot,
            serving,
            loaded_at: t,
        })));
        // Freeing thousands of compiled policies takes a while too: off the runtime when
        // there is one (requests may still hold the old snapshot; the last one frees it).
        if let Some(old) = old
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn_blocking(move || drop(old));
        }
        true
    }

    /// Records a failed load and why (`reason`: a label of
    /// `corsgate_config_reload_failures_total`). Returns false when the errors are the same
    /// as last time (the poll retries a broken file; it should not log or count the same
    /// thing every few seconds).
    pub fn fail(&self, errors: Vec<String>, reason: &'static str) -> bool {
        let mut st = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        st.last_attempt_unix_seconds = now();
        let new = st.errors != errors;
        st.errors = errors;
        st.reason = Some(reason);
        if new {
            self.metrics.reload(false);
            self.metrics.reload_failure(reason);
        }
        new
    }

    /// How many policies the live configuration serves (0 before the first).
    pub fn serving(&self) -> usize {
        self.live
            .load()
            .as_ref()
            .map_or(0, |l| l.snapshot.policies.len())
    }

    pub fn status(&self) -> LoadStatus {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
