//! Prometheus metrics of the proxy. Per-policy counters are looked up once, when a snapshot
//! is installed, so a request only increments atomics: no lock, no hash, no allocation.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

use super::rejections::{PolicyRejections, Rings};
use super::shadow::{ShadowCounts, ShadowTally};
use crate::cors::{Reason, Rejection};

/// `outcome` label values of `corsgate_proxy_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    PreflightAllowed,
    PreflightRejected,
    ActualAllowed,
    OriginRejected,
    UpstreamError,
    /// No `Origin` header: not a CORS request.
    NotCors,
    /// A `mode: Shadow` policy: forwarded untouched (what it would have done is in
    /// `corsgate_shadow_decisions_total`).
    Shadow,
    /// The client's request body was malformed or cut short: answered 400, the client's
    /// fault, not the upstream's.
    ClientError,
    /// An upgrade (WebSocket) the upstream accepted with 101: the connection is a tunnel.
    Upgrade,
    /// `spec.tls.redirectHTTP`: a plain-HTTP request answered with 308 to https.
    RedirectedHttps,
}

const OUTCOMES: [(Outcome, &str); 10] = [
    (Outcome::PreflightAllowed, "preflight_allowed"),
    (Outcome::PreflightRejected, "preflight_rejected"),
    (Outcome::ActualAllowed, "actual_allowed"),
    (Outcome::OriginRejected, "origin_rejected"),
    (Outcome::UpstreamError, "upstream_error"),
    (Outcome::NotCors, "not_cors"),
    (Outcome::Shadow, "shadow"),
    (Outcome::ClientError, "client_error"),
    (Outcome::Upgrade, "upgrade"),
    (Outcome::RedirectedHttps, "redirected_https"),
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyOutcome {
    policy: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyReason {
    policy: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShadowLabel {
    policy: String,
    verdict: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyLabel {
    policy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

/// Upper bounds (seconds) of the upstream latency histogram.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0,
];

#[derive(Debug, Default)]
struct HistogramInner {
    /// One more than `BUCKETS`: the last is +Inf.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

/// A histogram of durations made of atomics only (prometheus-client's takes a mutex).
#[derive(Debug, Clone, Default)]
pub struct Latency(Arc<HistogramInner>);

impl Latency {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        self.0.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.0.sum_nanos.fetch_add(
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        self.0.count.fetch_add(1, Ordering::Relaxed);
    }
}

impl TypedMetric for Latency {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Latency {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let buckets: Vec<(f64, u64)> = BUCKETS
            .iter()
            .copied()
            .chain([f64::MAX])
            .zip(self.0.buckets.iter().map(|b| b.load(Ordering::Relaxed)))
            .collect();
        let sum = self.0.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(
            sum,
            self.0.count.load(Ordering::Relaxed),
            &buckets,
            None,
        )
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// Every metric of a proxy process.
pub struct Metrics {
    registry: Registry,
    requests: Family<PolicyOutcome, Counter>,
    rejections: Family<PolicyReason, Counter>,
    shadow: Family<ShadowLabel, Counter>,
    /// Unreported shadow counts by policy, kept across snapshot installs.
    tallies: Mutex<HashMap<String, Arc<ShadowTally>>>,
    /// The last rejections of every policy, kept across snapshot installs.
    pub rings: Rings,
    latency: Family<PolicyLabel, Latency>,
    pub unrouted: Counter,
    pub invalid_host: Counter,
    reloads: Family<ResultLabel, Counter>,
    reload_failures: Family<ReasonLabel, Counter>,
    /// 1 for the config version serving (one series: the previous one is removed).
    version: Family<VersionLabel, Gauge>,
    pub policies: Gauge,
    pub rejected_policies: Gauge,
    /// What the traffic listener's connection limits did (`corsgate_connections_*`).
    pub conn: crate::serve::ConnMetrics,
}

/// One policy's counters, resolved on the first request it serves (`proxy::store::Serving`).
#[derive(Debug, Clone)]
pub struct PolicyCounters {
    outcomes: [Counter; OUTCOMES.len()],
    rejections: [Counter; Reason::ALL.len()],
    pub latency: Latency,
    /// The policy's last rejections and its rate-limited log line.
    pub recent: Arc<PolicyRejections>,
    /// `Some` for a `mode: Shadow` policy.
    pub shadow: Option<ShadowCounters>,
}

/// A Shadow policy's counters: `corsgate_shadow_decisions_total` and the report tally.
#[derive(Debug, Clone)]
pub struct ShadowCounters {
    /// would_allow, then would_reject by reason in `Reason::index` order.
    decisions: [Counter; Reason::ALL.len() + 1],
    tally: Arc<ShadowTally>,
}

impl ShadowCounters {
    /// Counts what the policy would have done with one CORS request.
    pub fn record(&self, rejection: Option<&Rejection>, origin: Option<&http::HeaderValue>) {
        let i = rejection.map_or(0, |r| r.reason().index() + 1);
        self.decisions[i].inc();
        self.tally.record(rejection, origin);
    }
}

impl PolicyCounters {
    pub fn outcome(&self, o: Outcome) {
        if let Some(i) = OUTCOMES.iter().position(|(k, _)| *k == o) {
            self.outcomes[i].inc();
        }
    }

    pub fn rejection(&self, r: &Rejection) {
        self.rejections[r.reason().index()].inc();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut m = Metrics {
            registry: Registry::default(),
            requests: Family::default(),
            rejections: Family::default(),
            shadow: Family::default(),
            tallies: Mutex::new(HashMap::new()),
            rings: Rings::default(),
            latency: Family::default(),
            unrouted: Counter::default(),
            invalid_host: Counter::default(),
            reloads: Family::default(),
            reload_failures: Family::default(),
            version: Family::default(),
            policies: Gauge::default(),
            rejected_policies: Gauge::default(),
            conn: crate::serve::ConnMetrics::new(),
        };
        let r = &mut m.registry;
        r.register(
            "corsgate_proxy_requests",
            "Requests by policy and outcome",
            m.requests.clone(),
        );
        r.register(
            "corsgate_cors_rejections",
            "CORS requests not allowed, by policy and reason",
            m.rejections.clone(),
        );
        r.register(
            "corsgate_shadow_decisions",
            "Shadow policies: CORS requests by what the policy would have done (verdict would_allow or would_reject) and why (reason)",
            m.shadow.clone(),
        );
        r.register(
            "corsgate_upstream_duration_seconds",
            "Time from sending a request upstream to its response headers",
            m.latency.clone(),
        );
        r.register(
            "corsgate_proxy_unrouted_requests",
            "Requests that matched no policy (answered 404)",
            m.unrouted.clone(),
        );
        r.register(
            "corsgate_proxy_invalid_host_requests",
            "Requests answered 400 for a missing, repeated or invalid Host (or :authority)",
            m.invalid_host.clone(),
        );
        r.register(
            "corsgate_config_reloads",
            "Configuration loads by result (success, failure)",
            m.reloads.clone(),
        );
        m.conn.register(r);
        r.register(
            "corsgate_config_reload_failures",
            "Failed configuration loads by reason: read, empty, invalid, unsettled (files); stream (controller)",
            m.reload_failures.clone(),
        );
        for reason in crate::config::load::LOAD_FAILURE_REASONS {
            drop(m.reload_failures.get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            }));
        }
        r.register(
            "corsgate_config_version_info",
            "1 for the configuration version this proxy serves",
            m.version.clone(),
        );
        r.register(
            "corsgate_config_policies",
            "Policies serving",
            m.policies.clone(),
        );
        r.register(
            "corsgate_config_rejected_policies",
            "Policies given but not serving (conflicted)",
            m.rejected_policies.clone(),
        );
        m
    }

    /// Resolves (registers) a policy's counters; called once per policy and snapshot, on the
    /// first request the policy serves.
    pub fn policy(&self, policy: &str, shadow: bool) -> PolicyCounters {
        let outcomes = OUTCOMES.map(|(_, label)| {
            self.requests
                .get_or_create(&PolicyOutcome {
                    policy: policy.to_string(),
                    outcome: label.to_string(),
                })
                .clone()
        });
        let rejections = Reason::ALL.map(|reason| {
            self.rejections
                .get_or_create(&PolicyReason {
                    policy: policy.to_string(),
                    reason: reason.as_str().to_string(),
                })
                .clone()
        });
        let latency = self
            .latency
            .get_or_create(&PolicyLabel {
                policy: policy.to_string(),
            })
            .clone();
        let shadow = shadow.then(|| {
            let decision = |verdict: &str, reason: &str| {
                self.shadow
                    .get_or_create(&ShadowLabel {
                        policy: policy.to_string(),
                        verdict: verdict.to_string(),
                        reason: reason.to_string(),
                    })
                    .clone()
            };
            let decisions: [Counter; Reason::ALL.len() + 1] = std::array::from_fn(|i| match i {
                0 => decision("would_allow", "none"),
                i => decision("would_reject", Reason::ALL[i - 1].as_str()),
            });
            let tally = self
                .tallies
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(policy.to_string())
                .or_default()
                .clone();
            ShadowCounters { decisions, tally }
        });
        PolicyCounters {
            outcomes,
            rejections,
            latency,
            recent: self.rings.ring(policy),
            shadow,
        }
    }

    /// Drains every policy's unreported shadow counts (those with nothing to say are left out).
    pub fn take_shadow(&self) -> Vec<(String, ShadowCounts)> {
        let tallies = self.tallies.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<_> = tallies
            .iter()
            .map(|(p, t)| (p.clone(), t.take()))
            .filter(|(_, c)| !c.is_empty())
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Puts back counts whose report failed.
    pub fn restore_shadow(&self, counts: &[(String, ShadowCounts)]) {
        let mut tallies = self.tallies.lock().unwrap_or_else(PoisonError::into_inner);
        for (p, c) in counts {
            tallies.entry(p.clone()).or_default().restore(c);
        }
    }

    /// Marks `version` as the one serving.
    pub fn serving(&self, version: &str) {
        self.version.clear();
        self.version
            .get_or_create(&VersionLabel {
                version: version.to_string(),
            })
            .set(1);
    }

    pub fn reload(&self, ok: bool) {
        self.reloads
            .get_or_create(&ResultLabel {
                result: if ok { "success" } else { "failure" }.to_string(),
            })
            .inc();
    }

    /// Counts a failed load by `reason` (a closed set, see `config::load::LoadError::reason`).
    pub fn reload_failure(&self, reason: &'static str) {
        self.reload_failures
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
