//! `status.rejections` (issue 17 item 3): what the proxies rejected over the last hour, by
//! reason, with a few sample origins, so `kubectl describe corspolicy` says what is being
//! rejected and why, in Enforce and in Shadow mode.
//!
//! Proxies report rejection counts with their shadow reports (`ShadowReport::rejections`,
//! deltas since their previous report). The controller keeps them in 5-minute steps, 12 per
//! policy, and the status pass reads the sum. The summary only changes when a report adds
//! to it or a step ages out, and status writes stay under the per-policy
//! `--status-min-interval-ms`: never a write per rejection.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use super::status::reason_count;
use super::stream::MAX_PENDING_POLICIES;
use crate::config::shadow::{PolicyShadow, SAMPLE, add_sample};
use crate::cors::Reason;
use crate::policy::RejectionsStatus;

/// Seconds per step.
pub const STEP_SECONDS: u64 = 300;
/// Steps summed: one hour.
pub const STEPS: u64 = 12;

#[derive(Debug, Default, Clone)]
struct Step {
    index: u64,
    by_reason: [u64; Reason::ALL.len()],
    sample: Vec<String>,
}

/// Every policy's recent steps, by `namespace/name`.
#[derive(Debug, Default)]
pub struct Recent(Mutex<HashMap<String, VecDeque<Step>>>);

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn expire(steps: &mut VecDeque<Step>, now_step: u64) {
    while steps.front().is_some_and(|s| s.index + STEPS <= now_step) {
        steps.pop_front();
    }
}

impl Recent {
    /// Adds one proxy's rejection deltas, at `now` (unix seconds).
    pub fn report(&self, policies: &[PolicyShadow], now: u64) {
        let step = now / STEP_SECONDS;
        let mut all = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        for p in policies {
            if !all.contains_key(&p.policy) && all.len() >= MAX_PENDING_POLICIES {
                continue;
            }
            let steps = all.entry(p.policy.clone()).or_default();
            expire(steps, step);
            if steps.back().is_none_or(|s| s.index != step) {
                steps.push_back(Step {
                    index: step,
                    ..Step::default()
                });
            }
            if let Some(s) = steps.back_mut() {
                for (a, b) in s.by_reason.iter_mut().zip(p.counts.by_reason) {
                    *a = a.saturating_add(b);
                }
                for o in &p.counts.sample_rejected_origins {
                    add_sample(&mut s.sample, o);
                }
            }
        }
    }

    /// The last hour of `policy` at `now`; `None` when nothing was rejected in it.
    pub fn summary(&self, policy: &str, now: u64) -> Option<RejectionsStatus> {
        let step = now / STEP_SECONDS;
        let mut all = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let steps = all.get_mut(policy)?;
        expire(steps, step);
        let mut out = RejectionsStatus::default();
        // Newest first, so the sample shows who is rejected now.
        for s in steps.iter().rev() {
            for r in Reason::ALL {
                let n = i64::try_from(s.by_reason[r.index()]).unwrap_or(i64::MAX);
                let field = reason_count(&mut out.by_reason, r);
                *field = field.saturating_add(n);
                out.last_hour = out.last_hour.saturating_add(n);
            }
            for o in &s.sample {
                if out.sample_origins.len() < SAMPLE {
                    add_sample(&mut out.sample_origins, o);
                }
            }
        }
        if out.last_hour == 0 {
            all.remove(policy);
            return None;
        }
        Some(out)
    }

    /// Forgets policies that are gone.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|k, _| keep(k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::shadow::ShadowCounts;

    fn report(policy: &str, by_reason: [u64; 4], sample: &[&str]) -> PolicyShadow {
        PolicyShadow {
            policy: policy.into(),
            counts: ShadowCounts {
                would_allow: 0,
                by_reason,
                sample_rejected_origins: sample.iter().map(|s| s.to_string()).collect(),
            },
        }
    }

    #[test]
    fn sums_the_last_hour_of_every_proxy_and_forgets_older_steps() {
        let r = Recent::default();
        let t0 = 1_000 * STEP_SECONDS;
        r.report(&[report("shop/api", [2, 1, 0, 0], &["https://a.test"])], t0);
        r.report(
            &[report(
                "shop/api",
                [1, 0, 3, 0],
                &["https://b.test", "https://a.test"],
            )],
            t0 + 10,
        );
        r.report(
            &[report(
                "shop/api",
                [0, 0, 0, 1],
                &[
                    "https://c.test",
                    "https://d.test",
                    "https://e.test",
                    "https://f.test",
                ],
            )],
            t0 + 30 * 60,
        );
        let s = r.summary("shop/api", t0 + 31 * 60).expect("rejections");
        assert_eq!(s.last_hour, 8);
        assert_eq!(
            (
                s.by_reason.origin,
                s.by_reason.method,
                s.by_reason.header,
                s.by_reason.private_network
            ),
            (3, 1, 3, 1)
        );
        assert_eq!(s.sample_origins.len(), SAMPLE, "{s:?}");
        assert_eq!(s.sample_origins[0], "https://c.test", "newest first");
        assert!(r.summary("shop/other", t0).is_none());

        // An hour after the first reports only the later step counts; then nothing.
        let s = r
            .summary("shop/api", t0 + STEPS * STEP_SECONDS)
            .expect("still one step");
        assert_eq!((s.last_hour, s.by_reason.private_network), (1, 1));
        assert!(
            r.summary("shop/api", t0 + 30 * 60 + STEPS * STEP_SECONDS)
                .is_none()
        );
    }
}
