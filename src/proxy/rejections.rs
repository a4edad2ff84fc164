//! The last rejections of each policy (issue 17 item 3): a small ring per policy, written
//! only when a CORS request is rejected (or, in Shadow mode, would be), read by the admin
//! endpoint `GET /rejections?policy=ns/name`.
//!
//! Cheap by construction: nothing happens on an allowed request; a rejection takes its own
//! policy's lock (never another policy's) for one push and at most one pop; every string is
//! cut, so an entry is bounded. Rings outlive snapshot installs (kept by policy name, like
//! the shadow tallies), so a reload does not forget what was just rejected.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderValue;
use serde::Serialize;

use super::shadow::{ShadowCounts, ShadowTally};
use crate::cors::{Decision, Kind, Reason};

/// Entries kept per policy.
pub const RING: usize = 64;
/// Characters kept of an origin, a method or the requested headers.
pub const FIELD_CHARS: usize = 256;

/// One rejected request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub unix_millis: u64,
    /// `preflight` or `actual`.
    pub kind: &'static str,
    pub origin: String,
    /// The preflight's requested method, or the actual request's method.
    pub method: String,
    /// The preflight's `Access-Control-Request-Headers`, as sent (cut).
    pub headers: String,
    pub reason: Reason,
    /// What failed, in words naming the policy field.
    pub detail: String,
    /// The config version that decided.
    pub config_version: String,
    /// A `mode: Shadow` policy: what it would have rejected; the request was forwarded.
    pub shadow: bool,
}

impl Serialize for Reason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

fn cut(v: &[u8]) -> String {
    String::from_utf8_lossy(v)
        .chars()
        .take(FIELD_CHARS)
        .collect()
}

pub fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Entry {
    /// The entry for a rejected decision (`None` when it was not rejected).
    pub fn of(
        d: &Decision<'_>,
        method: &http::Method,
        version: &str,
        shadow: bool,
    ) -> Option<Entry> {
        let r = d.rejection.as_ref()?;
        let req = d.request();
        let value = |v: Option<&HeaderValue>| v.map_or_else(String::new, |v| cut(v.as_bytes()));
        let (kind, method, headers) = match (&req.preflight, d.kind) {
            (Some(pf), Kind::Preflight) => (
                "preflight",
                cut(pf.method.as_bytes()),
                value(pf.headers.as_ref()),
            ),
            _ => ("actual", cut(method.as_str().as_bytes()), String::new()),
        };
        Some(Entry {
            unix_millis: now_millis(),
            kind,
            origin: value(req.origin.as_ref()),
            method,
            headers,
            reason: r.reason(),
            detail: r.describe(req),
            config_version: version.to_string(),
            shadow,
        })
    }
}

/// One policy's last `RING` rejections, oldest first.
#[derive(Debug, Default)]
pub struct Ring(Mutex<VecDeque<Entry>>);

impl Ring {
    pub fn push(&self, e: Entry) {
        let mut q = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if q.len() >= RING {
            q.pop_front();
        }
        q.push_back(e);
    }

    /// The entries, newest first.
    pub fn newest_first(&self) -> Vec<Entry> {
        let q = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        q.iter().rev().cloned().collect()
    }
}

/// At most one log line per policy and reason per this many milliseconds.
pub const LOG_EVERY_MS: u64 = 10_000;

/// Rate-limits the INFO line of a rejection per reason, without a lock: the first
/// rejection of a window logs (with how many were suppressed since the previous line); the
/// rest only count.
#[derive(Debug, Default)]
pub struct LogGate {
    /// When each reason last logged (unix millis; 0: never).
    last: [AtomicU64; Reason::ALL.len()],
    suppressed: [AtomicU64; Reason::ALL.len()],
}

impl LogGate {
    /// `Some(suppressed since the last line)` when this rejection should be logged.
    pub fn admit(&self, reason: Reason, now_ms: u64) -> Option<u64> {
        let i = reason.index();
        let last = self.last[i].load(Ordering::Relaxed);
        if (last == 0 || now_ms.saturating_sub(last) >= LOG_EVERY_MS)
            && self.last[i]
                .compare_exchange(last, now_ms.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.suppressed[i].swap(0, Ordering::Relaxed));
        }
        self.suppressed[i].fetch_add(1, Ordering::Relaxed);
        None
    }

    /// A rejection that was not logged (nor kept): counted in the next line's `suppressed`.
    pub fn suppress(&self, reason: Reason) {
        self.suppressed[reason.index()].fetch_add(1, Ordering::Relaxed);
    }
}

/// What the proxy keeps of one policy's rejections.
#[derive(Debug, Default)]
pub struct PolicyRejections {
    pub ring: Ring,
    pub log: LogGate,
    pub repeat: RepeatGate,
    /// Counts by reason and sample origins since the last report to the controller.
    pub unreported: ShadowTally,
}

impl PolicyRejections {
    /// Records a rejected decision on the request path: always counted for the controller;
    /// kept in the ring (and maybe logged) unless it repeats the last kept rejection of its
    /// reason (same origin, method and requested headers) within [`REPEAT_MS`], so a flood
    /// of one rejected request costs a few atomics each, not an entry of cut strings.
    pub fn rejected(
        &self,
        policy: &dyn std::fmt::Display,
        d: &Decision<'_>,
        method: &http::Method,
        version: &str,
        shadow: bool,
    ) {
        let Some(r) = d.rejection.as_ref() else {
            return;
        };
        let req = d.request();
        self.unreported
            .record_reason(Some(r.reason()), req.origin.as_ref());
        let now = now_millis();
        if !self.repeat.admit(r.reason(), repeat_key(d, method), now) {
            self.log.suppress(r.reason());
            return;
        }
        if let Some(e) = Entry::of(d, method, version, shadow) {
            self.keep(&policy.to_string(), e);
        }
    }

    /// Records a rejection already made into an entry: counted, kept and maybe logged.
    pub fn record(&self, policy: &str, origin: Option<&HeaderValue>, e: Entry) {
        self.unreported.record_reason(Some(e.reason), origin);
        self.keep(policy, e);
    }

    /// The ring, and the rate-limited INFO line.
    fn keep(&self, policy: &str, e: Entry) {
        if let Some(suppressed) = self.log.admit(e.reason, e.unix_millis) {
            tracing::info!(
                policy,
                origin = %e.origin,
                reason = e.reason.as_str(),
                detail = %e.detail,
                config_version = %e.config_version,
                shadow = e.shadow,
                suppressed,
                "cors request rejected"
            );
        }
        self.ring.push(e);
    }
}

/// A repeat of the last kept rejection of a reason within this many milliseconds is
/// counted, not kept again.
pub const REPEAT_MS: u64 = 1_000;

/// Which rejection was last kept, per reason, and when (lock-free).
#[derive(Debug, Default)]
pub struct RepeatGate {
    key: [AtomicU64; Reason::ALL.len()],
    at_ms: [AtomicU64; Reason::ALL.len()],
}

impl RepeatGate {
    /// Whether a rejection with this reason and key should be kept.
    pub fn admit(&self, reason: Reason, key: u64, now_ms: u64) -> bool {
        let i = reason.index();
        let last = self.at_ms[i].load(Ordering::Relaxed);
        if last != 0
            && self.key[i].load(Ordering::Relaxed) == key
            && now_ms.saturating_sub(last) < REPEAT_MS
        {
            return false;
        }
        self.key[i].store(key, Ordering::Relaxed);
        self.at_ms[i].store(now_ms.max(1), Ordering::Relaxed);
        true
    }
}

fn value_bytes(v: Option<&HeaderValue>) -> &[u8] {
    v.map_or(&[], HeaderValue::as_bytes)
}

/// What makes two rejections of one reason the same request: origin, method, requested
/// headers.
fn repeat_key(d: &Decision<'_>, method: &http::Method) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let req = d.request();
    let mut h = foldhash::fast::FixedState::default().build_hasher();
    h.write(value_bytes(req.origin.as_ref()));
    h.write_u8(0);
    match &req.preflight {
        Some(pf) => {
            h.write(pf.method.as_bytes());
            h.write_u8(0);
            h.write(value_bytes(pf.headers.as_ref()));
        }
        None => h.write(method.as_str().as_bytes()),
    }
    h.finish()
}

/// Every policy's rejections, by `namespace/name`.
#[derive(Debug, Default)]
pub struct Rings(Mutex<HashMap<String, Arc<PolicyRejections>>>);

impl Rings {
    /// The ring of `policy`, made on first use; called when a snapshot is installed.
    pub fn ring(&self, policy: &str) -> Arc<PolicyRejections> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(policy.to_string())
            .or_default()
            .clone()
    }

    /// The ring of `policy`, if it ever served.
    pub fn get(&self, policy: &str) -> Option<Arc<PolicyRejections>> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(policy)
            .cloned()
    }

    /// Drains every policy's unreported rejection counts (empty ones left out).
    pub fn take(&self) -> Vec<(String, ShadowCounts)> {
        let rings = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<_> = rings
            .iter()
            .map(|(p, r)| (p.clone(), r.unreported.take()))
            .filter(|(_, c)| !c.is_empty())
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Puts back counts whose report failed.
    pub fn restore(&self, counts: &[(String, ShadowCounts)]) {
        let mut rings = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        for (p, c) in counts {
            rings.entry(p.clone()).or_default().unreported.restore(c);
        }
    }

    /// Forgets the rings of policies not in `keep` (a policy deleted from the config).
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
    use crate::cors;

    fn entry(i: usize) -> Entry {
        Entry {
            unix_millis: i as u64,
            kind: "actual",
            origin: format!("https://{i}.test"),
            method: "GET".into(),
            headers: String::new(),
            reason: Reason::Origin,
            detail: String::new(),
            config_version: "v".into(),
            shadow: false,
        }
    }

    #[test]
    fn keeps_the_last_ring_entries_newest_first() {
        let r = Ring::default();
        for i in 0..RING + 10 {
            r.push(entry(i));
        }
        let got = r.newest_first();
        assert_eq!(got.len(), RING);
        assert_eq!(got[0].unix_millis, (RING + 9) as u64);
        assert_eq!(got[RING - 1].unix_millis, 10);
    }

    #[test]
    fn unreported_counts_drain_for_the_controller_and_come_back_when_a_report_fails() {
        let rings = Rings::default();
        let p = rings.ring("shop/api");
        let origin = HeaderValue::from_static("https://evil.test");
        let mut e = entry(1);
        p.record("shop/api", Some(&origin), e.clone());
        e.reason = Reason::Method;
        p.record("shop/api", Some(&origin), e);
        rings.ring("shop/quiet");
        let taken = rings.take();
        assert_eq!(taken.len(), 1, "policies without rejections are left out");
        assert_eq!(taken[0].0, "shop/api");
        assert_eq!(taken[0].1.by_reason, [1, 1, 0, 0]);
        assert_eq!(taken[0].1.sample_rejected_origins, ["https://evil.test"]);
        assert!(rings.take().is_empty(), "drained");
        rings.restore(&taken);
        assert_eq!(rings.take()[0].1.by_reason, [1, 1, 0, 0]);
        assert_eq!(p.ring.newest_first().len(), 2, "the ring is not drained");
    }

    #[test]
    fn a_repeated_rejection_is_counted_but_kept_once_a_second() {
        let g = RepeatGate::default();
        let t0 = 5_000_000;
        assert!(g.admit(Reason::Origin, 7, t0), "the first is kept");
        assert!(!g.admit(Reason::Origin, 7, t0 + 1), "the same again is not");
        assert!(g.admit(Reason::Method, 7, t0 + 2), "per reason");
        assert!(
            g.admit(Reason::Origin, 8, t0 + 3),
            "another request is kept"
        );
        assert!(
            g.admit(Reason::Origin, 7, t0 + 4),
            "and the first again after it"
        );
        assert!(!g.admit(Reason::Origin, 7, t0 + 4 + REPEAT_MS - 1));
        assert!(
            g.admit(Reason::Origin, 7, t0 + 4 + REPEAT_MS),
            "a second later"
        );
    }

    #[test]
    fn a_flood_of_one_rejection_counts_every_one_and_keeps_one() {
        let spec = serde_saphyr::from_str(
            "hosts: [a.test]\nupstream: {url: 'http://127.0.0.1:9'}\ncors: {allowOrigins: ['https://app.test']}",
        )
        .expect("spec");
        let p = crate::config::CompiledPolicy::from_spec(
            crate::config::PolicyId::new("ns", "p"),
            &spec,
        )
        .expect("valid");
        let mut h = http::HeaderMap::new();
        h.insert("origin", HeaderValue::from_static("https://evil.test"));
        let rings = Rings::default();
        let r = rings.ring("ns/p");
        for _ in 0..100 {
            let d = p.cors.decide(crate::cors::classify(&http::Method::GET, &h));
            r.rejected(&"ns/p", &d, &http::Method::GET, "v1", false);
        }
        assert_eq!(r.ring.newest_first().len(), 1, "kept once");
        assert_eq!(
            rings.take()[0].1.by_reason[Reason::Origin.index()],
            100,
            "all counted"
        );
    }

    #[test]
    fn one_line_per_reason_per_window_with_the_suppressed_count() {
        let g = LogGate::default();
        let t0 = 1_000_000;
        assert_eq!(g.admit(Reason::Method, t0), Some(0));
        assert_eq!(g.admit(Reason::Method, t0 + 1), None);
        assert_eq!(g.admit(Reason::Method, t0 + LOG_EVERY_MS - 1), None);
        assert_eq!(g.admit(Reason::Origin, t0 + 2), Some(0), "per reason");
        assert_eq!(g.admit(Reason::Method, t0 + LOG_EVERY_MS), Some(2));
        assert_eq!(g.admit(Reason::Method, t0 + LOG_EVERY_MS + 5), None);
    }

    #[test]
    fn an_entry_names_the_preflight_and_cuts_long_values() {
        let spec = serde_saphyr::from_str(
            "hosts: [a.test]\nupstream: {url: 'http://127.0.0.1:9'}\ncors: {allowOrigins: ['https://app.test']}",
        )
        .expect("spec");
        let p =
            crate::config::CompiledPolicy::from_spec(crate::config::PolicyId::new("t", "p"), &spec)
                .expect("valid");
        let c = &p.cors;
        let mut h = http::HeaderMap::new();
        let long = format!("https://{}.test", "x".repeat(400));
        h.insert(
            http::header::ORIGIN,
            HeaderValue::from_str(&long).expect("value"),
        );
        h.insert(
            http::header::ACCESS_CONTROL_REQUEST_METHOD,
            HeaderValue::from_static("DELETE"),
        );
        h.insert(
            http::header::ACCESS_CONTROL_REQUEST_HEADERS,
            HeaderValue::from_static("x-a,x-b"),
        );
        let d = c.decide(cors::classify(&http::Method::OPTIONS, &h));
        let e = Entry::of(&d, &http::Method::OPTIONS, "v1", false).expect("rejected");
        assert_eq!((e.kind, e.reason), ("preflight", Reason::Origin));
        assert_eq!(e.origin.chars().count(), FIELD_CHARS);
        assert_eq!(
            (e.method.as_str(), e.headers.as_str()),
            ("DELETE", "x-a,x-b")
        );
        let ok = c.decide(cors::classify(&http::Method::GET, &http::HeaderMap::new()));
        assert!(Entry::of(&ok, &http::Method::GET, "v1", false).is_none());
    }
}
