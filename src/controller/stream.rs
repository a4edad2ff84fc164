//! The config stream, server side: `GET /v1/config?version=<have>&proxy=<pod>`.
//!
//! A long poll. A proxy whose version differs from the current one gets the current
//! document at once; a proxy that is current waits until the next version is published or
//! `wait` passes (then 304). Before the first snapshot (the controller's caches are not
//! synced yet) nothing is sent — an empty configuration would wipe every proxy — so the
//! proxy waits and gets 503 after `wait`, and keeps serving what it has.
//!
//! The version a proxy asks with is its acknowledgement: it is serving that version.
//! `Hub::tally` counts the proxies seen within `ttl` and those at the current version, which
//! is what the Programmed condition reports.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode, header};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::wire::ConfigDocument;

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
    pub ttl: Duration,
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
        Hub {
            current: watch::channel(None).0,
            acks: Mutex::new(HashMap::new()),
            changed: watch::channel(0).0,
            ttl,
        }
    }

    /// Publishes a document; returns false when its version is already current.
    pub fn publish(&self, doc: &ConfigDocument) -> Result<bool, serde_json::Error> {
        if self.version().as_deref() == Some(doc.version.as_str()) {
            return Ok(false);
        }
        let body = Bytes::from(serde_json::to_vec(doc)?);
        self.current.send_replace(Some(Arc::new(Published {
            version: doc.version.clone(),
            body,
            policies: doc.policies.len(),
        })));
        self.changed.send_modify(|n| *n += 1);
        Ok(true)
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
        let prev = acks.insert(
            proxy.to_string(),
            Ack {
                version: version.clone(),
                seen: now,
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
                () = super::server::stopped(stop) => return Poll::NoConfig,
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

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Bytes> {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Handles one request to the stream listener.
pub async fn handle(
    hub: &Hub,
    method: &Method,
    uri: &http::Uri,
    wait: Duration,
    stop: &mut watch::Receiver<bool>,
) -> Response<Bytes> {
    if uri.path() != "/v1/config" {
        return text(
            StatusCode::NOT_FOUND,
            "not found: the config stream is GET /v1/config?version=&proxy=\n",
        );
    }
    if method != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
    }
    let q = match parse_query(uri.query()) {
        Ok(q) => q,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("{e}\n")),
    };
    hub.ack(&q.proxy, q.version.as_deref(), Instant::now());
    let outcome = hub.poll(q.version.as_deref(), wait, stop).await;
    // Seen again now: a proxy parked in a long poll is connected.
    hub.ack(&q.proxy, q.version.as_deref(), Instant::now());
    match outcome {
        Poll::Fresh(p) => {
            let mut r = Response::new(p.body.clone());
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
            let mut r = Response::new(Bytes::new());
            *r.status_mut() = StatusCode::NOT_MODIFIED;
            if let Ok(v) = HeaderValue::from_str(&v) {
                r.headers_mut().insert(VERSION_HEADER, v);
            }
            r
        }
        Poll::NoConfig => text(
            StatusCode::SERVICE_UNAVAILABLE,
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
