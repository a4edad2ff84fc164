//! Shadow mode on the wire: what a proxy reports to the controller (`POST /v1/shadow`) and
//! what the controller sums into `status.shadow`. Counts are deltas since the proxy's
//! previous report, so reports from many proxies (and restarted ones) add up without double
//! counting. Besides counts, at most `SAMPLE` distinct rejected origins (cut to
//! `SAMPLE_CHARS`) travel: the only raw origins that leave a proxy, and never in metrics.

use serde::{Deserialize, Serialize};

/// Rejected origins kept per report.
pub const SAMPLE: usize = 5;
/// Characters kept of each sampled origin.
pub const SAMPLE_CHARS: usize = 64;

pub use crate::cors::Reason;

/// Counts of one policy, as reported (and as the controller sums them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShadowCounts {
    pub would_allow: u64,
    /// Would-be rejections by reason, indexed by `Reason::index`; wouldReject is their sum.
    pub by_reason: [u64; Reason::ALL.len()],
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sample_rejected_origins: Vec<String>,
}

impl ShadowCounts {
    pub fn would_reject(&self) -> u64 {
        self.by_reason.iter().sum()
    }

    pub fn is_empty(&self) -> bool {
        self.would_allow == 0 && self.would_reject() == 0 && self.sample_rejected_origins.is_empty()
    }

    /// Adds `other` (saturating); the sample keeps the first `SAMPLE` distinct origins.
    pub fn add(&mut self, other: &ShadowCounts) {
        self.would_allow = self.would_allow.saturating_add(other.would_allow);
        for (a, b) in self.by_reason.iter_mut().zip(other.by_reason) {
            *a = a.saturating_add(b);
        }
        for o in &other.sample_rejected_origins {
            add_sample(&mut self.sample_rejected_origins, o);
        }
    }
}

/// Adds `origin`, cut to `SAMPLE_CHARS`, unless the sample is full or has it.
pub fn add_sample(sample: &mut Vec<String>, origin: &str) {
    if sample.len() >= SAMPLE {
        return;
    }
    // Compared before it is copied: a repeated origin (the usual case) allocates nothing.
    let cut = origin
        .char_indices()
        .nth(SAMPLE_CHARS)
        .map_or(origin, |(end, _)| &origin[..end]);
    if !sample.iter().any(|s| s == cut) {
        sample.push(cut.to_string());
    }
}

/// `POST /v1/shadow`: one proxy's deltas since its previous report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShadowReport {
    pub proxy: String,
    /// `namespace/name` → counts.
    pub policies: Vec<PolicyShadow>,
    /// Rejections (and, for Shadow policies, would-be rejections) of every policy since the
    /// previous report, by reason, with a sample of origins; `wouldAllow` is 0. The
    /// controller summarises the last hour in `status.rejections` (issue 17 item 3).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejections: Vec<PolicyShadow>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyShadow {
    pub policy: String,
    #[serde(flatten)]
    pub counts: ShadowCounts,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_saturate_and_samples_stay_small_and_distinct() {
        let mut a = ShadowCounts {
            would_allow: u64::MAX - 1,
            by_reason: [1, 2, 3, 4],
            sample_rejected_origins: vec!["https://a".into()],
        };
        let b = ShadowCounts {
            would_allow: 5,
            by_reason: [1, 0, 0, 0],
            sample_rejected_origins: (0..9)
                .map(|i| {
                    format!(
                        "https://{}",
                        ["a", "b", "c", "d", "e", "f", "g", "h", "i"][i]
                    )
                })
                .collect(),
        };
        a.add(&b);
        assert_eq!(a.would_allow, u64::MAX);
        assert_eq!(a.by_reason, [2, 2, 3, 4]);
        assert_eq!(a.would_reject(), 11);
        assert_eq!(
            a.sample_rejected_origins,
            [
                "https://a",
                "https://b",
                "https://c",
                "https://d",
                "https://e"
            ]
        );
    }

    #[test]
    fn reports_are_camel_case_json() {
        let r = ShadowReport {
            proxy: "edge-0".into(),
            policies: vec![PolicyShadow {
                policy: "ns/p".into(),
                counts: ShadowCounts {
                    would_allow: 1,
                    by_reason: [2, 0, 0, 0],
                    sample_rejected_origins: vec!["https://x".into()],
                },
            }],
            rejections: Vec::new(),
        };
        let v = serde_json::to_value(&r).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"proxy": "edge-0", "policies": [{"policy": "ns/p", "wouldAllow": 1,
                "byReason": [2, 0, 0, 0], "sampleRejectedOrigins": ["https://x"]}]})
        );
        let back: ShadowReport = serde_json::from_value(v).expect("parse");
        assert_eq!(back, r);
    }
}
