//! Which proxies serve which policy's configuration, for the Programmed condition (issue 11).
//!
//! Every snapshot the hub publishes gets a sequence number; each policy remembers the first
//! sequence that carried its current configuration (its own version, `policy_version`). A
//! proxy whose acknowledged snapshot is at that sequence or later serves the policy. A proxy
//! that does not is only reported once its grace period is over, so proxies joining,
//! reconnecting after a lease takeover, or loading a new version write no status.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

/// Where one policy's current configuration entered the published sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollout {
    /// The policy's own config version (`policy_version`, status.configVersion), with the
    /// digest of the certificate it serves when it has `spec.tls`.
    pub version: String,
    /// The first published snapshot that carried it.
    pub seq: u64,
    /// When that snapshot was published.
    pub at: Instant,
}

/// Snapshot versions remembered for mapping acknowledgements to sequence numbers; a proxy
/// still on an older one simply counts as behind until it polls again.
pub(super) const REMEMBERED_VERSIONS: usize = 1024;

#[derive(Debug, Default)]
pub(super) struct Sequence {
    pub(super) next: u64,
    pub(super) by_version: HashMap<String, u64>,
    pub(super) order: std::collections::VecDeque<String>,
    pub(super) policies: Arc<HashMap<String, Rollout>>,
}

/// The version of one policy's configuration: the first 12 hex digits of a SHA-256 over its
/// `namespace/name` and spec, as the snapshot version hashes every accepted policy. Equal
/// specs give equal versions across controller restarts, so a restart writes no status.
pub fn policy_version(id: &str, spec: &crate::policy::CorsPolicySpec) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(id.as_bytes());
    h.update([0]);
    // Serialising our own type cannot fail; an empty input would only weaken the hash.
    h.update(serde_json::to_vec(spec).unwrap_or_default());
    h.finalize()
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What the fleet of connected proxies does with one policy's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Judgement {
    /// Proxies seen within `ttl`, and those among them serving this policy's configuration.
    pub tally: Tally,
    /// Some: the answer may still change by itself (a proxy within its grace period, or the
    /// controller just started or took the lease): write no status for this policy before then.
    pub settle_until: Option<Instant>,
}

/// The acknowledgements and the published sequence at one instant.
pub struct Fleet {
    /// Each live proxy: the sequence of the version it serves (None: unknown) and when the
    /// grace for it ends.
    pub(super) proxies: Vec<(Option<u64>, Instant)>,
    pub(super) policies: Arc<HashMap<String, Rollout>>,
    pub(super) now: Instant,
    pub(super) quiet_until: Instant,
    pub(super) grace: Duration,
}

impl Fleet {
    /// The rollout of `policy` (`namespace/name`), when it is in the published snapshot.
    pub fn rollout(&self, policy: &str) -> Option<&Rollout> {
        self.policies.get(policy)
    }

    /// Proxies connected and serving `policy`; see `Judgement`.
    pub fn judge(&self, policy: &str) -> Judgement {
        let connected = self.proxies.len();
        let Some(r) = self.policies.get(policy) else {
            return Judgement {
                tally: Tally {
                    connected,
                    current: 0,
                },
                settle_until: None,
            };
        };
        let mut current = 0;
        let mut settling: Option<Instant> = None;
        let mut late = false;
        for (seq, grace_from) in &self.proxies {
            if seq.is_some_and(|s| s >= r.seq) {
                current += 1;
                continue;
            }
            let until = (*grace_from).max(r.at + self.grace).max(self.quiet_until);
            if self.now < until {
                settling = Some(settling.map_or(until, |s| s.max(until)));
            } else {
                late = true;
            }
        }
        let settle_until = if connected == 0 {
            (self.now < self.quiet_until).then_some(self.quiet_until)
        } else if late {
            None
        } else {
            settling
        };
        Judgement {
            tally: Tally { connected, current },
            settle_until,
        }
    }
}

/// How many proxies are connected and how many serve the current version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tally {
    pub connected: usize,
    pub current: usize,
}
