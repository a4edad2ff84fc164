//! The controller's Prometheus metrics (the proxy's naming: `corsgate_` prefix, base units
//! in the name, counters ending in `_total`, closed label sets).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabel {
    pub error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConditionLabel {
    /// Accepted, ResolvedRefs, Programmed.
    pub condition: String,
    /// True, False.
    pub status: String,
}

pub struct Metrics {
    registry: Registry,
    pub reconciles: Counter,
    pub errors: Family<ErrorLabel, Counter>,
    pub status_patches: Counter,
    pub build_seconds: Histogram,
    pub snapshot_bytes: Gauge,
    pub snapshot_policies: Gauge,
    pub connected_proxies: Gauge,
    pub current_proxies: Gauge,
    pub policies: Family<ConditionLabel, Gauge>,
    pub leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let buckets = [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0];
        let mut m = Metrics {
            registry: Registry::default(),
            reconciles: Counter::default(),
            errors: Family::default(),
            status_patches: Counter::default(),
            build_seconds: Histogram::new(buckets),
            snapshot_bytes: Gauge::default(),
            snapshot_policies: Gauge::default(),
            connected_proxies: Gauge::default(),
            current_proxies: Gauge::default(),
            policies: Family::default(),
            leader: Gauge::default(),
        };
        let r = &mut m.registry;
        r.register(
            "corsgate_controller_reconciles",
            "Rebuild passes (snapshot and statuses)",
            m.reconciles.clone(),
        );
        r.register(
            "corsgate_controller_errors",
            "Errors by kind",
            m.errors.clone(),
        );
        r.register(
            "corsgate_controller_status_patches",
            "Status patches sent (only when a status changed)",
            m.status_patches.clone(),
        );
        r.register(
            "corsgate_controller_snapshot_build_seconds",
            "Time to build and serialise one snapshot",
            m.build_seconds.clone(),
        );
        r.register(
            "corsgate_controller_snapshot_bytes",
            "Size of the config document sent to proxies",
            m.snapshot_bytes.clone(),
        );
        r.register(
            "corsgate_controller_snapshot_policies",
            "Accepted policies in the current snapshot",
            m.snapshot_policies.clone(),
        );
        r.register(
            "corsgate_controller_connected_proxies",
            "Proxies seen on the config stream recently",
            m.connected_proxies.clone(),
        );
        r.register(
            "corsgate_controller_current_proxies",
            "Connected proxies serving the current config version",
            m.current_proxies.clone(),
        );
        r.register(
            "corsgate_controller_policies",
            "Policies by condition and status",
            m.policies.clone(),
        );
        r.register(
            "corsgate_controller_leader",
            "1 while this replica holds the lease (writes status)",
            m.leader.clone(),
        );
        m
    }

    pub fn error(&self, label: &str) {
        self.errors
            .get_or_create(&ErrorLabel {
                error: label.to_string(),
            })
            .inc();
    }

    /// Sets `corsgate_controller_policies` from counts of (condition, status).
    pub fn set_conditions(&self, counts: &[((&'static str, bool), i64)]) {
        for ((condition, ok), n) in counts {
            self.policies
                .get_or_create(&ConditionLabel {
                    condition: (*condition).to_string(),
                    status: if *ok { "True" } else { "False" }.to_string(),
                })
                .set(*n);
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
