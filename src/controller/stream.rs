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

/// Where one policy's current configuration entered the published sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollout {
    /// The policy's own config version (`policy_version`): status.configVersion.
    pub version: String,
    /// The first published snapshot that carried it.
    pub seq: u64,
    /// When that snapshot was published.
    pub at: Instant,
}

/// Snapshot versions remembered for mapping acknowledgements to sequence numbers; a proxy
/// still on an older one simply counts as behind until it polls again.
const REMEMBERED_VERSIONS: usize = 1024;

#[derive(Debug, Default)]
struct Sequence {
    next: u64,
    by_version: HashMap<String, u64>,
    order: std::collections::VecDeque<String>,
    policies: Arc<HashMap<String, Rollout>>,
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
    proxies: Vec<(Option<u64>, Instant)>,
    policies: Arc<HashMap<String, Rollout>>,
    now: Instant,
    quiet_until: Instant,
    grace: Duration,
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
                let version = policy_version(&id, &p.spec);
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
mod tests {
    use super::*;

    fn doc(version: &str) -> ConfigDocument {
        ConfigDocument {
            version: version.into(),
            policies: vec![],
        }
    }

    #[test]
    fn query_parsing() {
        assert_eq!(
            parse_query(Some("version=abc&proxy=edge-0")),
            Ok(ConfigQuery {
                version: Some("abc".into()),
                proxy: "edge-0".into()
            })
        );
        assert_eq!(
            parse_query(Some("version=&proxy=a%2Db")).map(|q| (q.version, q.proxy)),
            Ok((None, "a-b".into()))
        );
        assert!(parse_query(Some("version=abc")).is_err());
        assert!(parse_query(Some("proxy=")).is_err());
        assert!(parse_query(Some("proxy=%zz")).is_err());
        assert!(parse_query(None).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn stale_proxies_get_the_document_at_once_and_current_ones_wait() {
        let hub = Hub::new(Duration::from_secs(90));
        let (_tx, mut stop) = watch::channel(false);
        // Nothing published: waits the whole time, then NoConfig.
        assert!(matches!(
            hub.poll(None, Duration::from_secs(30), &mut stop).await,
            Poll::NoConfig
        ));
        assert!(hub.publish(&doc("v1")).expect("publish"));
        assert!(
            !hub.publish(&doc("v1")).expect("publish"),
            "same version twice is not news"
        );
        assert!(
            matches!(hub.poll(None, Duration::from_secs(30), &mut stop).await, Poll::Fresh(p) if p.version == "v1")
        );
        assert!(
            matches!(hub.poll(Some("v0"), Duration::from_secs(30), &mut stop).await, Poll::Fresh(p) if p.version == "v1")
        );
        let started = Instant::now();
        assert!(
            matches!(hub.poll(Some("v1"), Duration::from_secs(30), &mut stop).await, Poll::NotModified(v) if v == "v1")
        );
        assert_eq!(started.elapsed(), Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_proxy_wakes_on_publish() {
        let hub = Arc::new(Hub::new(Duration::from_secs(90)));
        hub.publish(&doc("v1")).expect("publish");
        let (_tx, stop) = watch::channel(false);
        let h = hub.clone();
        let waiter = tokio::spawn(async move {
            let mut stop = stop;
            h.poll(Some("v1"), Duration::from_secs(30), &mut stop).await
        });
        tokio::time::sleep(Duration::from_secs(5)).await;
        hub.publish(&doc("v2")).expect("publish");
        let got = waiter.await.expect("join");
        assert!(matches!(got, Poll::Fresh(p) if p.version == "v2"));
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_a_poll() {
        let hub = Hub::new(Duration::from_secs(90));
        hub.publish(&doc("v1")).expect("publish");
        let (tx, mut stop) = watch::channel(false);
        let _ = tx.send(true);
        let started = Instant::now();
        assert!(matches!(
            hub.poll(Some("v1"), Duration::from_secs(30), &mut stop)
                .await,
            Poll::NoConfig
        ));
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn shadow_reports_add_up_and_settle_what_was_written() {
        use crate::config::shadow::PolicyShadow;
        let hub = Hub::new(Duration::from_secs(60));
        let report = |proxy: &str, allow: u64, origin: u64, sample: &[&str]| {
            let body = serde_json::to_vec(&ShadowReport {
                proxy: proxy.into(),
                policies: vec![PolicyShadow {
                    policy: "ns/p".into(),
                    counts: ShadowCounts {
                        would_allow: allow,
                        by_reason: [origin, 0, 1, 0],
                        sample_rejected_origins: sample.iter().map(|s| s.to_string()).collect(),
                    },
                }],
            })
            .expect("json");
            accept_report(&hub, &Method::POST, &body).status()
        };
        assert_eq!(report("a", 3, 2, &["https://x"]), StatusCode::NO_CONTENT);
        assert_eq!(
            report("b", 1, 1, &["https://x", "https://y"]),
            StatusCode::NO_CONTENT
        );
        let pending = hub.shadow_pending();
        let p = &pending["ns/p"];
        assert_eq!((p.would_allow, p.by_reason), (4, [3, 0, 2, 0]));
        assert_eq!(p.sample_rejected_origins, ["https://x", "https://y"]);
        // A report lands between the status pass reading and settling: it stays pending.
        report("a", 5, 0, &["https://z"]);
        hub.shadow_settle("ns/p", p);
        let left = &hub.shadow_pending()["ns/p"];
        assert_eq!((left.would_allow, left.by_reason), (5, [0, 0, 1, 0]));
        assert_eq!(left.sample_rejected_origins, ["https://z"]);
        hub.shadow_settle("ns/p", &left.clone());
        assert!(
            hub.shadow_pending().is_empty(),
            "settled entries are dropped"
        );
        report("a", 1, 0, &[]);
        hub.shadow_retain(|p| p != "ns/p");
        assert!(hub.shadow_pending().is_empty());

        // A flood of made-up policy names is capped; known ones still add up.
        report("a", 1, 0, &[]);
        let flood = ShadowReport {
            proxy: "x".into(),
            policies: (0..MAX_PENDING_POLICIES + 10)
                .map(|i| PolicyShadow {
                    policy: format!("junk/{i}"),
                    counts: ShadowCounts {
                        would_allow: 1,
                        ..ShadowCounts::default()
                    },
                })
                .collect(),
        };
        hub.shadow_report(&flood);
        assert_eq!(hub.shadow_pending().len(), MAX_PENDING_POLICIES);
        report("a", 1, 0, &[]);
        assert_eq!(hub.shadow_pending()["ns/p"].would_allow, 2);
        hub.shadow_retain(|_| false);

        assert_eq!(
            accept_report(&hub, &Method::GET, b"{}").status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            accept_report(
                &hub,
                &Method::POST,
                b"{\"proxy\":\"a\",\"policies\":[{\"policy\":1}]}"
            )
            .status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            accept_report(&hub, &Method::POST, b"{\"proxy\":\"\",\"policies\":[]}").status(),
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn acknowledgements_and_expiry() {
        let hub = Hub::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let mut changes = hub.subscribe_changes();
        hub.ack("a", Some("v1"), t0);
        hub.ack("b", Some("v0"), t0);
        hub.ack("c", None, t0 + Duration::from_secs(30));
        assert!(changes.has_changed().unwrap_or(false));
        changes.mark_unchanged();
        assert_eq!(
            hub.tally(Some("v1"), t0),
            Tally {
                connected: 3,
                current: 1
            }
        );
        // Re-asking with the same version is not a change.
        hub.ack("a", Some("v1"), t0 + Duration::from_secs(10));
        assert!(!changes.has_changed().unwrap_or(true));
        hub.ack("b", Some("v1"), t0 + Duration::from_secs(10));
        assert!(changes.has_changed().unwrap_or(false));
        assert_eq!(
            hub.tally(Some("v1"), t0 + Duration::from_secs(20)),
            Tally {
                connected: 3,
                current: 2
            }
        );
        // c was seen at 30 s: at 75 s a and b (10 s) are gone, c stays.
        let later = t0 + Duration::from_secs(75);
        assert_eq!(
            hub.tally(Some("v1"), later),
            Tally {
                connected: 1,
                current: 0
            }
        );
        assert_eq!(hub.expire(later), 2);
        assert_eq!(hub.proxies(), vec![("c".to_string(), None)]);
        assert_eq!(
            hub.tally(None, later),
            Tally {
                connected: 1,
                current: 0
            }
        );
    }
}
