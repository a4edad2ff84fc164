//! The config stream, server side: `GET /v1/config?version=<have>&proxy=<pod>`.
//!
//! A long poll. A proxy whose version differs from the current one gets the current
//! document at once; a proxy that is current waits until the next version is published or
//! `wait` passes (then 304). Before the first snapshot (the controller's caches are not
//! synced yet) nothing is sent — an empty configuration would wipe every proxy — so the
//! proxy waits and gets 503 after `wait`, and keeps serving what it has.
//!
//! The version a proxy asks with is its acknowledgement: it is serving that version.
//! `Hub::tally` counts the proxies seen within `ttl` and those at the current version (for
//! metrics and the admin endpoint). The Programmed condition asks, per policy, `Fleet::judge`:
//! every published snapshot gets a sequence number, and each policy remembers the first
//! sequence that carried its current configuration (its own version, a hash of its id and
//! spec), so a proxy at that sequence or later serves it. Editing one policy therefore
//! changes nothing about the others, and a proxy joining or leaving changes no status
//! unless it stays behind for longer than the grace period (issue 11: status writes were
//! O(policies) per proxy event before).
//!
//! `POST /v1/shadow` takes a proxy's shadow-mode counts (`config::shadow::ShadowReport`,
//! deltas since its previous report). They are summed per policy until the leader's next
//! status pass writes them into `status.shadow` and settles them (`Hub::shadow_settle`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode, header};
use http_body_util::Full;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::shadow::{ShadowCounts, ShadowReport};
use crate::config::wire::ConfigDocument;
use crate::policy::ShadowStatus;

pub use super::rollout::{Fleet, Judgement, Rollout, Tally, policy_version};
use super::rollout::{REMEMBERED_VERSIONS, Sequence};
use crate::serve::{TEXT, reply};

/// The largest shadow report accepted.
pub const MAX_REPORT: usize = 1 << 20;
/// Policies with pending shadow counts, at most: reports naming more new ones (only a
/// confused or hostile client would) are ignored for those until the next status pass
/// drops what is not a Shadow policy.
pub const MAX_PENDING_POLICIES: usize = 10_000;

/// The default `Hub::grace`: a proxy polls again as soon as it installed a document, so it is
/// current within milliseconds unless something is wrong.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);

/// What a policy's rollout follows: its own config version, and the certificate it serves
/// when it has one, so a rotated Secret is a new rollout (Programmed waits for the proxies
/// to serve the new certificate too).
fn rollout_version(id: &str, p: &crate::config::wire::WirePolicy, doc: &ConfigDocument) -> String {
    let own = policy_version(id, &p.spec);
    let secret = p.spec.tls.as_ref().and_then(|t| {
        doc.secrets
            .iter()
            .find(|s| s.namespace == p.namespace && s.name == t.secret_name)
    });
    match secret {
        None => own,
        Some(s) => {
            use sha2::{Digest, Sha256};
            let d = Sha256::digest(s.tls_crt.as_bytes());
            let short: String = d.iter().take(6).map(|b| format!("{b:02x}")).collect();
            format!("{own}+{short}")
        }
    }
}

/// Response header carrying the version of a 200 or 304 answer.
pub const VERSION_HEADER: &str = "x-corsgate-config-version";

/// One published snapshot, serialised once for every proxy.
#[derive(Debug)]
pub struct Published {
    pub version: String,
    pub body: Bytes,
    pub policies: usize,
}

#[derive(Debug, Clone)]
struct Ack {
    version: Option<String>,
    seen: Instant,
    /// When this proxy was first seen (again, after it expired): a new proxy gets `grace`
    /// to load the current configuration before it counts as behind.
    first_seen: Instant,
}

/// The current document and the acknowledgements, shared by the HTTP handler, the
/// reconcile loop and the admin endpoint.
pub struct Hub {
    current: watch::Sender<Option<Arc<Published>>>,
    acks: Mutex<HashMap<String, Ack>>,
    /// Bumped when a proxy appears, disappears or acknowledges a different version, so the
    /// status loop recomputes Programmed.
    changed: watch::Sender<u64>,
    /// Shadow counts reported but not yet written to status, by `namespace/name`.
    shadow: Mutex<HashMap<String, ShadowCounts>>,
    /// The status.shadow last written per policy, with its generation (see `status::shadow`).
    shadow_written: Mutex<HashMap<String, (Option<i64>, ShadowStatus)>>,
    sequence: Mutex<Sequence>,
    /// Rejections of the last hour, for `status.rejections`.
    pub recent: super::rejections::Recent,
    pub ttl: Duration,
    /// How long a proxy may take to load a new configuration before Programmed says it is
    /// behind (and how long after start an empty fleet is not yet reported).
    pub grace: Duration,
}

/// What a poll resolves to.
#[derive(Debug)]
pub enum Poll {
    Fresh(Arc<Published>),
    NotModified(String),
    NoConfig,
}

impl Hub {
    pub fn new(ttl: Duration) -> Hub {
        Hub::with_grace(ttl, DEFAULT_GRACE)
    }

    pub fn with_grace(ttl: Duration, grace: Duration) -> Hub {
        Hub {
            current: watch::channel(None).0,
            acks: Mutex::new(HashMap::new()),
            changed: watch::channel(0).0,
            shadow: Mutex::new(HashMap::new()),
            shadow_written: Mutex::new(HashMap::new()),
            sequence: Mutex::new(Sequence::default()),
            recent: super::rejections::Recent::default(),
            ttl,
            grace,
        }
    }

    /// The acknowledgements as of `now`. Nothing is judged behind before `quiet_from +
    /// grace` (the controller's start, or when it took the lease: proxies are still
    /// reconnecting then).
    pub fn fleet(&self, now: Instant, quiet_from: Instant) -> Fleet {
        let seq = self.sequence.lock().unwrap_or_else(PoisonError::into_inner);
        let acks = self.acks.lock().unwrap_or_else(PoisonError::into_inner);
        let proxies = acks
            .values()
            .filter(|a| now.saturating_duration_since(a.seen) <= self.ttl)
            .map(|a| {
                let s = a
                    .version
                    .as_ref()
                    .and_then(|v| seq.by_version.get(v).copied());
                (s, a.first_seen + self.grace)
            })
            .collect();
        Fleet {
            proxies,
            policies: seq.policies.clone(),
            now,
            quiet_until: quiet_from + self.grace,
            grace: self.grace,
        }
    }

    /// Adds a proxy's shadow report to what is pending.
    pub fn shadow_report(&self, report: &ShadowReport) {
        self.recent
            .report(&report.rejections, super::rejections::unix_now());
        let mut pending = self.shadow.lock().unwrap_or_else(PoisonError::into_inner);
        for p in &report.policies {
            if let Some(c) = pending.get_mut(&p.policy) {
                c.add(&p.counts);
            } else if pending.len() < MAX_PENDING_POLICIES {
                pending.entry(p.policy.clone()).or_default().add(&p.counts);
            }
        }
    }

    /// What is pending, by policy (a copy: the status pass settles what it wrote).
    pub fn shadow_pending(&self) -> HashMap<String, ShadowCounts> {
        self.shadow
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Subtracts counts that are now in a policy's status; reports that arrived meanwhile stay.
    pub fn shadow_settle(&self, policy: &str, written: &ShadowCounts) {
        let mut pending = self.shadow.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(p) = pending.get_mut(policy) else {
            return;
        };
        p.would_allow = p.would_allow.saturating_sub(written.would_allow);
        for (a, b) in p.by_reason.iter_mut().zip(written.by_reason) {
            *a = a.saturating_sub(b);
        }
        p.sample_rejected_origins
            .retain(|o| !written.sample_rejected_origins.contains(o));
        if p.is_empty() {
            pending.remove(policy);
        }
    }

    /// Drops pending and remembered counts of policies that are gone or no longer in Shadow.
    pub fn shadow_retain(&self, keep: impl Fn(&str) -> bool) {
        self.shadow
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|k, _| keep(k));
        self.shadow_written
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|k, _| keep(k));
    }

    /// Remembers a written status.shadow.
    pub fn shadow_remember(&self, policy: &str, generation: Option<i64>, s: &ShadowStatus) {
        self.shadow_written
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(policy.to_string(), (generation, s.clone()));
    }

    /// The status.shadow last written for `policy`, with its generation.
    pub fn shadow_written(&self, policy: &str) -> Option<(Option<i64>, ShadowStatus)> {
        self.shadow_written
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(policy)
            .cloned()
    }

    /// Publishes a document; returns false when its version is already current.
    pub fn publish(&self, doc: &ConfigDocument) -> Result<bool, serde_json::Error> {
        if self.version().as_deref() == Some(doc.version.as_str()) {
            return Ok(false);
        }
        let body = Bytes::from(serde_json::to_vec(doc)?);
        self.sequence_publish(doc, Instant::now());
        self.current.send_replace(Some(Arc::new(Published {
            version: doc.version.clone(),
            body,
            policies: doc.policies.len(),
        })));
        self.changed.send_modify(|n| *n += 1);
        Ok(true)
    }

    /// Gives `doc` the next sequence number; each policy keeps the sequence (and time) at
    /// which its current configuration was first published.
    fn sequence_publish(&self, doc: &ConfigDocument, now: Instant) {
        let mut seq = self.sequence.lock().unwrap_or_else(PoisonError::into_inner);
        let n = seq.next;
        seq.next += 1;
        seq.by_version.insert(doc.version.clone(), n);
        seq.order.push_back(doc.version.clone());
        while seq.order.len() > REMEMBERED_VERSIONS {
            if let Some(old) = seq.order.pop_front()
                && seq.by_version.get(&old) != Some(&n)
            {
                seq.by_version.remove(&old);
            }
        }
        let before = seq.policies.clone();
        let policies = doc
            .policies
            .iter()
            .map(|p| {
                let id = format!("{}/{}", p.namespace, p.name);
                let version = rollout_version(&id, p, doc);
                let rollout = match before.get(&id) {
                    Some(r) if r.version == version => r.clone(),
                    _ => Rollout {
                        version,
                        seq: n,
                        at: now,
                    },
                };
                (id, rollout)
            })
            .collect();
        seq.policies = Arc::new(policies);
    }

    pub fn current(&self) -> Option<Arc<Published>> {
        self.current.borrow().clone()
    }

    pub fn version(&self) -> Option<String> {
        self.current.borrow().as_ref().map(|p| p.version.clone())
    }

    /// A receiver that changes when acknowledgements or the published version change.
    pub fn subscribe_changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Records that `proxy` serves `have` (None: nothing yet).
    pub fn ack(&self, proxy: &str, have: Option<&str>, now: Instant) {
        let mut acks = self.acks.lock().unwrap_or_else(PoisonError::into_inner);
        let version = have.map(str::to_string);
        let first_seen = acks
            .get(proxy)
            .filter(|a| now.saturating_duration_since(a.seen) <= self.ttl)
            .map_or(now, |a| a.first_seen);
        let prev = acks.insert(
            proxy.to_string(),
            Ack {
                version: version.clone(),
                seen: now,
                first_seen,
            },
        );
        if prev.is_none_or(|p| p.version != version) {
            self.changed.send_modify(|n| *n += 1);
        }
    }

    /// Forgets proxies unseen for longer than `ttl`; returns how many were dropped.
    pub fn expire(&self, now: Instant) -> usize {
        let mut acks = self.acks.lock().unwrap_or_else(PoisonError::into_inner);
        let before = acks.len();
        acks.retain(|_, a| now.saturating_duration_since(a.seen) <= self.ttl);
        let dropped = before - acks.len();
        if dropped > 0 {
            self.changed.send_modify(|n| *n += 1);
        }
        dropped
    }

    /// Proxies seen within `ttl`, and those at `version`.
    pub fn tally(&self, version: Option<&str>, now: Instant) -> Tally {
        let acks = self.acks.lock().unwrap_or_else(PoisonError::into_inner);
        let live = acks
            .values()
            .filter(|a| now.saturating_duration_since(a.seen) <= self.ttl);
        let mut t = Tally::default();
        for a in live {
            t.connected += 1;
            if version.is_some() && a.version.as_deref() == version {
                t.current += 1;
            }
        }
        t
    }

    /// Each known proxy and the version it last asked with, for /config on the admin port.
    pub fn proxies(&self) -> Vec<(String, Option<String>)> {
        let acks = self.acks.lock().unwrap_or_else(PoisonError::into_inner);
        let mut v: Vec<_> = acks
            .iter()
            .map(|(k, a)| (k.clone(), a.version.clone()))
            .collect();
        v.sort();
        v
    }

    /// The long poll. `stop` ends it early (shutdown) with `NoConfig`-like 503 semantics.
    pub async fn poll(
        &self,
        have: Option<&str>,
        wait: Duration,
        stop: &mut watch::Receiver<bool>,
    ) -> Poll {
        let mut rx = self.current.subscribe();
        let deadline = tokio::time::sleep(wait);
        tokio::pin!(deadline);
        loop {
            let cur = rx.borrow_and_update().clone();
            match cur {
                Some(p) if have != Some(p.version.as_str()) => return Poll::Fresh(p),
                _ => {}
            }
            tokio::select! {
                changed = rx.changed() => if changed.is_err() { return Poll::NoConfig },
                () = &mut deadline => {
                    return match self.version() {
                        Some(v) => Poll::NotModified(v),
                        None => Poll::NoConfig,
                    };
                }
                () = crate::serve::stopped(stop) => return Poll::NoConfig,
            }
        }
    }
}

/// The query of a config request.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigQuery {
    pub version: Option<String>,
    pub proxy: String,
}

fn decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Parses `version=&proxy=`; `proxy` is required (it is how acknowledgements are counted)
/// and at most 253 characters; an empty `version` means the proxy has nothing yet.
pub fn parse_query(query: Option<&str>) -> Result<ConfigQuery, String> {
    let mut version = None;
    let mut proxy = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = decode(v)
            .ok_or_else(|| format!("query parameter {k} is not valid percent-encoded UTF-8"))?;
        match k {
            "version" if !v.is_empty() => version = Some(v),
            "version" => {}
            "proxy" => proxy = Some(v),
            _ => {}
        }
    }
    match proxy {
        Some(p) if !p.is_empty() && p.len() <= 253 && !p.chars().any(char::is_control) => {
            Ok(ConfigQuery { version, proxy: p })
        }
        _ => Err("proxy=<name> is required (1-253 characters): the proxy's pod name".into()),
    }
}

/// `POST /v1/shadow` with its body read (at most `MAX_REPORT` bytes).
pub fn accept_report(hub: &Hub, method: &Method, body: &[u8]) -> Response<Full<Bytes>> {
    if method != Method::POST {
        return reply(StatusCode::METHOD_NOT_ALLOWED, TEXT, "use POST\n");
    }
    match serde_json::from_slice::<ShadowReport>(body) {
        Ok(r) if r.proxy.is_empty() || r.proxy.len() > 253 => reply(
            StatusCode::BAD_REQUEST,
            TEXT,
            "proxy must be the proxy's name (1-253 characters)\n",
        ),
        Ok(r) => {
            hub.shadow_report(&r);
            let mut resp = Response::new(Full::new(Bytes::new()));
            *resp.status_mut() = StatusCode::NO_CONTENT;
            resp
        }
        Err(e) => reply(
            StatusCode::BAD_REQUEST,
            TEXT,
            format!("not a shadow report: {e}\n"),
        ),
    }
}

/// Handles one request to the stream listener.
pub async fn handle(
    hub: &Hub,
    method: &Method,
    uri: &http::Uri,
    wait: Duration,
    stop: &mut watch::Receiver<bool>,
) -> Response<Full<Bytes>> {
    if uri.path() != "/v1/config" {
        return reply(
            StatusCode::NOT_FOUND,
            TEXT,
            "not found: the config stream is GET /v1/config?version=&proxy=, shadow reports POST /v1/shadow\n",
        );
    }
    if method != Method::GET {
        return reply(StatusCode::METHOD_NOT_ALLOWED, TEXT, "use GET\n");
    }
    let q = match parse_query(uri.query()) {
        Ok(q) => q,
        Err(e) => return reply(StatusCode::BAD_REQUEST, TEXT, format!("{e}\n")),
    };
    hub.ack(&q.proxy, q.version.as_deref(), Instant::now());
    let outcome = hub.poll(q.version.as_deref(), wait, stop).await;
    // Seen again now: a proxy parked in a long poll is connected.
    hub.ack(&q.proxy, q.version.as_deref(), Instant::now());
    match outcome {
        Poll::Fresh(p) => {
            let mut r = Response::new(Full::new(p.body.clone()));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            if let Ok(v) = HeaderValue::from_str(&p.version) {
                r.headers_mut().insert(VERSION_HEADER, v);
            }
            r
        }
        Poll::NotModified(v) => {
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::NOT_MODIFIED;
            if let Ok(v) = HeaderValue::from_str(&v) {
                r.headers_mut().insert(VERSION_HEADER, v);
            }
            r
        }
        Poll::NoConfig => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            TEXT,
            "no configuration yet (the controller is starting or stopping); keep serving what you have and retry\n",
        ),
    }
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
