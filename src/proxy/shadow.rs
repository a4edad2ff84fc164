//! Shadow mode, proxy side: what a `mode: Shadow` policy would have done, counted per policy
//! with atomics on the request path and drained into `config::shadow` reports for the
//! controller. A report that fails is added back and goes with the next one.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use http::HeaderValue;

pub use crate::config::shadow::{SAMPLE, SAMPLE_CHARS, ShadowCounts, add_sample};
use crate::cors::{Reason, Rejection};

/// One policy's unreported counts.
#[derive(Debug, Default)]
pub struct ShadowTally {
    would_allow: AtomicU64,
    by_reason: [AtomicU64; Reason::ALL.len()],
    sample: Mutex<Vec<String>>,
    /// Set once the sample is full, so rejections after that touch no lock.
    sample_full: AtomicBool,
}

impl ShadowTally {
    /// Counts one decision. Allocates only while the sample has room for a new origin.
    pub fn record(&self, rejection: Option<&Rejection>, origin: Option<&HeaderValue>) {
        self.record_reason(rejection.map(Rejection::reason), origin);
    }

    /// `record` by reason alone.
    pub fn record_reason(&self, reason: Option<Reason>, origin: Option<&HeaderValue>) {
        let Some(r) = reason else {
            self.would_allow.fetch_add(1, Ordering::Relaxed);
            return;
        };
        self.by_reason[r.index()].fetch_add(1, Ordering::Relaxed);
        if self.sample_full.load(Ordering::Relaxed) {
            return;
        }
        let Some(origin) = origin.and_then(|o| o.to_str().ok()) else {
            return;
        };
        // Never wait on the request path: a contended sample just skips this origin.
        if let Ok(mut sample) = self.sample.try_lock() {
            add_sample(&mut sample, origin);
            if sample.len() >= SAMPLE {
                self.sample_full.store(true, Ordering::Relaxed);
            }
        }
    }

    /// Drains the counts (zeroing them) for a report.
    pub fn take(&self) -> ShadowCounts {
        let sample =
            std::mem::take(&mut *self.sample.lock().unwrap_or_else(PoisonError::into_inner));
        self.sample_full.store(false, Ordering::Relaxed);
        ShadowCounts {
            would_allow: self.would_allow.swap(0, Ordering::Relaxed),
            by_reason: std::array::from_fn(|i| self.by_reason[i].swap(0, Ordering::Relaxed)),
            sample_rejected_origins: sample,
        }
    }

    /// Puts back counts whose report failed, so the next report carries them.
    pub fn restore(&self, c: &ShadowCounts) {
        self.would_allow.fetch_add(c.would_allow, Ordering::Relaxed);
        for (a, b) in self.by_reason.iter().zip(c.by_reason) {
            a.fetch_add(b, Ordering::Relaxed);
        }
        let mut sample = self.sample.lock().unwrap_or_else(PoisonError::into_inner);
        for o in &c.sample_rejected_origins {
            add_sample(&mut sample, o);
        }
        if sample.len() >= SAMPLE {
            self.sample_full.store(true, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_take_restore() {
        let t = ShadowTally::default();
        let o = |s: &'static str| HeaderValue::from_static(s);
        t.record(None, Some(&o("https://ok.example")));
        t.record(None, None);
        let long = format!("https://{}.example", "x".repeat(100));
        let long_value = HeaderValue::from_str(&long).expect("value");
        for i in 0..8 {
            let origin = match i {
                0 => o("https://a.example"),
                1 => o("https://a.example"),
                2 => long_value.clone(),
                3 => o("https://b.example"),
                4 => o("https://c.example"),
                5 => o("https://d.example"),
                _ => o("https://e.example"),
            };
            t.record(Some(&Rejection::Origin), Some(&origin));
        }
        t.record(Some(&Rejection::Method), Some(&o("https://app.example")));
        t.record(Some(&Rejection::Header("x".into())), None);
        let c = t.take();
        assert_eq!(c.would_allow, 2);
        assert_eq!(c.by_reason, [8, 1, 1, 0]);
        assert_eq!(c.would_reject(), 10);
        assert_eq!(c.sample_rejected_origins.len(), SAMPLE, "{c:?}");
        assert_eq!(
            c.sample_rejected_origins[0], "https://a.example",
            "distinct"
        );
        assert_eq!(c.sample_rejected_origins[1].chars().count(), SAMPLE_CHARS);
        assert!(
            !c.sample_rejected_origins
                .contains(&"https://e.example".to_string())
        );
        assert!(t.take().is_empty(), "take zeroes");
        t.restore(&c);
        t.record(
            Some(&Rejection::PrivateNetwork),
            Some(&o("https://z.example")),
        );
        let again = t.take();
        assert_eq!(again.by_reason, [8, 1, 1, 1]);
        assert_eq!(
            again.sample_rejected_origins, c.sample_rejected_origins,
            "full: z not added"
        );
        let mut sum = ShadowCounts::default();
        sum.add(&c);
        sum.add(&again);
        assert_eq!((sum.would_allow, sum.would_reject()), (4, 21));
        assert_eq!(sum.sample_rejected_origins.len(), SAMPLE);
    }
}
