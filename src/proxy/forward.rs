//! Sending a request upstream: the pooled client, hop-by-hop headers, header names with
//! underscores, `Host` and `X-Forwarded-*`, the request body's framing, the client
//! connection's bound on upstream work, and the timeout.
//!
//! The exchange runs to its end even when the client goes away (an HTTP/2 reset, a closed
//! socket): the rest of it runs in a spawned task bounded by the policy's timeout, so the
//! upstream connection goes back to the pool instead of being closed mid-request — 20,000
//! reset streams no longer open 11,245 upstream connections (issue 13 item 6).

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Instant;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Request, Response, Version};
use http_body::Body as _;
use hyper::body::Incoming;
use tokio::sync::Semaphore;
use tokio::time::Sleep;

use super::metrics::Latency;
use super::rescue::ProxyError;
use super::upstream::{ClientBody, Idle, PooledBody, UpstreamError, Upstreams};
use crate::config::CompiledPolicy;
use crate::policy::limits::{HOP_BY_HOP, hop_by_hop_index};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// What `corsgate proxy`'s flags say about forwarding.
#[derive(Debug, Clone, Copy)]
pub struct ForwardOptions {
    /// Forward request headers whose names contain '_' (nginx's `underscores_in_headers`).
    pub allow_underscores: bool,
    /// Upstream requests one client connection may have in flight, its drains included;
    /// also the HTTP/2 streams it may open at once.
    pub max_upstream_per_connection: u32,
}

impl Default for ForwardOptions {
    fn default() -> Self {
        ForwardOptions {
            allow_underscores: false,
            max_upstream_per_connection: DEFAULT_MAX_UPSTREAM_PER_CONNECTION,
        }
    }
}

/// `--max-upstream-requests-per-connection` when not given.
pub const DEFAULT_MAX_UPSTREAM_PER_CONNECTION: u32 = 100;

/// One client connection: its address, formatted once, its share of upstream work, and
/// the timer its requests' upstream timeouts reuse.
pub struct ClientConn {
    pub peer: HeaderValue,
    pub slots: Arc<Semaphore>,
    /// The upstream timeout's timer, kept between this connection's requests (issue 14). A
    /// registered tokio timer moved to a later deadline is one compare-and-swap (the wheel
    /// reschedules it when its old slot comes round); a new timer is a locked insert into the
    /// timer wheel and a locked removal when dropped. Per request in B that was about 400
    /// instructions and is now about 150 (callgrind, docs/performance.md "Session 8"). Empty before the first forwarded request, while a request holds it (an
    /// HTTP/2 stream beside it makes its own), and after an exchange went on without its
    /// client and took it along.
    timer: Mutex<Option<Pin<Box<Sleep>>>>,
}

impl ClientConn {
    pub fn new(ip: IpAddr, opts: &ForwardOptions) -> ClientConn {
        ClientConn {
            peer: peer_value(ip),
            slots: Arc::new(Semaphore::new(
                opts.max_upstream_per_connection.max(1) as usize
            )),
            timer: Mutex::new(None),
        }
    }

    /// A timer due at `deadline`: the connection's kept one, reset, or a new one.
    fn timer(&self, deadline: tokio::time::Instant) -> Pin<Box<Sleep>> {
        let kept = self
            .timer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        match kept {
            Some(mut t) => {
                t.as_mut().reset(deadline);
                t
            }
            None => Box::pin(tokio::time::sleep_until(deadline)),
        }
    }

    /// Keeps `timer` for the next request, unless another one is kept already. Its waker is
    /// the finished request's task. Over HTTP/1.1 that is the connection's own task, which
    /// the timer wakes at most once, if it fires while the connection is idle. An HTTP/2
    /// stream is a task of its own that has ended: its waker is swapped for a no-op one, so
    /// the kept timer does not hold on to that task's memory (75 instructions, so HTTP/1.1
    /// does not pay them).
    fn keep(&self, mut timer: Pin<Box<Sleep>>, stream: bool) {
        if stream {
            let _ = timer
                .as_mut()
                .poll(&mut Context::from_waker(std::task::Waker::noop()));
        }
        let mut kept = self.timer.lock().unwrap_or_else(PoisonError::into_inner);
        if kept.is_none() {
            *kept = Some(timer);
        }
    }
}

/// Removes hop-by-hop headers, including those named by `Connection`. `keep_upgrade`: an
/// upgrade the proxy relays keeps `Upgrade` and gets `Connection: upgrade` back.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // One pass over the names present (usually none is hop-by-hop, or only `Connection`)
    // marks which of `HOP_BY_HOP` are there, then each found is removed: no lookup for the
    // names that are absent.
    let found = headers
        .keys()
        .filter_map(hop_by_hop_index)
        .fold(0u16, |found, i| found | 1 << i);
    if found == 0 {
        return;
    }
    let upgrade = if keep_upgrade {
        headers.get(header::UPGRADE).cloned()
    } else {
        None
    };
    if let Some(conn) = headers.remove(header::CONNECTION) {
        for name in conn.as_bytes().split(|b| *b == b',') {
            let name = name.trim_ascii();
            // A hop-by-hop name (`keep-alive`, the usual one) is among `found` if present.
            let hop = HOP_BY_HOP
                .iter()
                .any(|h| h.as_str().as_bytes().eq_ignore_ascii_case(name));
            if !hop
                && let Ok(name) = std::str::from_utf8(name)
                && !name.is_empty()
            {
                headers.remove(name);
            }
        }
    }
    for (i, h) in HOP_BY_HOP.iter().enumerate() {
        if found & 1 << i != 0 && *h != header::CONNECTION {
            headers.remove(h);
        }
    }
    if let Some(u) = upgrade {
        headers.insert(header::UPGRADE, u);
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Drops request headers whose names contain '_': CGI, WSGI and Rack map `X_Real_IP` and
/// `X-Real-IP` onto the same variable, so a client could spoof what the edge sets (nginx
/// drops them by default too). One pass over the names; allocates only when there are some.
pub fn strip_underscores(headers: &mut HeaderMap) {
    if !headers
        .keys()
        .any(|k| k.as_str().as_bytes().contains(&b'_'))
    {
        return;
    }
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().as_bytes().contains(&b'_'))
        .cloned()
        .collect();
    for n in names {
        tracing::debug!(header = %n, "dropped a request header with '_' in its name");
        headers.remove(n);
    }
}

/// The client's address, formatted once per connection.
pub fn peer_value(ip: IpAddr) -> HeaderValue {
    // An IP address always formats to valid header bytes.
    HeaderValue::from_str(&ip.to_string()).unwrap_or(HeaderValue::from_static("unknown"))
}

/// Rewrites a client's request head for the upstream: origin-form target, HTTP/1.1,
/// hop-by-hop headers and (unless allowed) underscore names dropped, `Host` (the normalised
/// host it was routed on) and `X-Forwarded-*` set.
pub fn prepare(
    parts: &mut Parts,
    client: &ClientConn,
    host: &HeaderValue,
    opts: &ForwardOptions,
    upgrade: bool,
) {
    // Origin-form ("/path?query") on the upstream connection, as RFC 9112 §3.2.1 asks of a
    // request to an origin server; an HTTP/2 client's URI carries scheme and authority.
    if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
        parts.uri = parts.uri.path_and_query().map_or_else(
            || http::Uri::from_static("/"),
            |pq| http::Uri::from(pq.clone()),
        );
    }
    parts.version = Version::HTTP_11;
    let h = &mut parts.headers;
    strip_hop_by_hop(h, upgrade);
    if !opts.allow_underscores {
        strip_underscores(h);
    }
    h.insert(header::HOST, host.clone());
    let peer = &client.peer;
    // One lookup: appended to the client's own list, or set.
    match h.entry(X_FORWARDED_FOR) {
        header::Entry::Occupied(mut e) => {
            let mut v = e.get().as_bytes().to_vec();
            v.extend_from_slice(b", ");
            v.extend_from_slice(peer.as_bytes());
            let joined = HeaderValue::from_bytes(&v).unwrap_or_else(|_| peer.clone());
            e.insert(joined);
        }
        header::Entry::Vacant(e) => {
            e.insert(peer.clone());
        }
    }
    let proto = if parts.extensions.get::<super::https::Https>().is_some() {
        "https"
    } else {
        "http"
    };
    parts
        .headers
        .insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    let h = &mut parts.headers;
    h.insert(X_FORWARDED_HOST, host.clone());
}

/// The upstream error as the edge's error: the client's own body failing is the client's
/// fault (400), anything else the upstream's (502).
pub fn upstream_error(policy: &CompiledPolicy, source: UpstreamError) -> ProxyError {
    if source.client_body().is_some() {
        ProxyError::ClientBody { source }
    } else {
        ProxyError::Upstream {
            upstream: policy.upstream.url(),
            source,
        }
    }
}

/// Sends `req` to the policy's upstream and waits for its response headers, at most the
/// policy's timeout (waiting for one of the connection's slots included). The body streams
/// in both directions.
#[allow(clippy::too_many_arguments)]
pub async fn forward(
    upstreams: &Arc<Upstreams>,
    idle: &Arc<Idle>,
    policy: &CompiledPolicy,
    latency: &Latency,
    req: Request<Incoming>,
    client: &ClientConn,
    host: &HeaderValue,
    opts: &ForwardOptions,
) -> Result<Response<PooledBody>, ProxyError> {
    let (mut parts, body) = req.into_parts();
    let stream = parts.version == Version::HTTP_2;
    prepare(&mut parts, client, host, opts, false);
    // hyper sends a GET, HEAD or CONNECT of unknown length without its body: a client's
    // chunked (or HTTP/2, length-less) body is declared chunked so it is forwarded whole.
    if !body.is_end_stream() && !parts.headers.contains_key(header::CONTENT_LENGTH) {
        parts.headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
    }
    let req = Request::from_parts(parts, ClientBody(body));
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + policy.upstream.timeout;
    // A slot first: a request whose client goes away while it waits costs nothing upstream.
    // Nearly always a slot is free: taking it directly skips arming a timer for the wait.
    let permit = match client.slots.clone().try_acquire_owned() {
        Ok(p) => Ok(Ok(p)),
        Err(_) => tokio::time::timeout_at(deadline, client.slots.clone().acquire_owned()).await,
    };
    let sent = match permit {
        Err(_elapsed) => None,
        Ok(permit) => {
            let (upstreams, idle) = (upstreams.clone(), idle.clone());
            let target = policy.upstream.clone();
            let exchange = async move { upstreams.send(&idle, &target, req, permit.ok()).await };
            let (sent, timer) = Detached::new(Box::pin(exchange), client.timer(deadline)).await;
            client.keep(timer, stream);
            sent
        }
    };
    latency.observe(started.elapsed());
    match sent {
        None => Err(ProxyError::Timeout {
            upstream: policy.upstream.url(),
            seconds: policy.upstream.timeout.as_secs(),
        }),
        Some(Err(source)) => Err(upstream_error(policy, source)),
        Some(Ok(mut resp)) => {
            strip_hop_by_hop(resp.headers_mut(), false);
            Ok(resp)
        }
    }
}

type Exchange<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// An exchange bounded by its timer: `Some` with its output, `None` once the timer fired
/// first (the exchange is then dropped, as `tokio::time::timeout` would).
fn poll_bounded<T>(
    exchange: &mut Exchange<T>,
    timer: &mut Pin<Box<Sleep>>,
    cx: &mut Context<'_>,
) -> Poll<Option<T>> {
    if let Poll::Ready(out) = exchange.as_mut().poll(cx) {
        return Poll::Ready(Some(out));
    }
    timer.as_mut().poll(cx).map(|()| None)
}

/// An exchange and its timer. Done, it gives back the timer with the output (`None`: timed
/// out) so the connection's next request can reuse it. Dropped before it is done (the client
/// went away), it finishes in a spawned task, still bounded by the timer, instead of being
/// cancelled; its output is then dropped, which returns the upstream connection to the pool
/// (`PooledBody`'s drop drains the rest).
struct Detached<T: Send + 'static>(Option<(Exchange<T>, Pin<Box<Sleep>>)>);

impl<T: Send + 'static> Detached<T> {
    fn new(exchange: Exchange<T>, timer: Pin<Box<Sleep>>) -> Self {
        Detached(Some((exchange, timer)))
    }
}

impl<T: Send + 'static> Future for Detached<T> {
    type Output = (Option<T>, Pin<Box<Sleep>>);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some((exchange, timer)) = self.0.as_mut() else {
            return Poll::Pending;
        };
        let out = std::task::ready!(poll_bounded(exchange, timer, cx));
        match self.0.take() {
            Some((_, timer)) => Poll::Ready((out, timer)),
            None => Poll::Pending,
        }
    }
}

impl<T: Send + 'static> Drop for Detached<T> {
    fn drop(&mut self) {
        if let Some((mut exchange, mut timer)) = self.0.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                drop(std::future::poll_fn(|cx| poll_bounded(&mut exchange, &mut timer, cx)).await);
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A waker that counts its wakes; its strong count tells whether anything still holds it.
    struct Counting(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Counting {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_kept_timer_lets_go_of_a_finished_http2_streams_waker() {
        let client = ClientConn::new(IpAddr::from([127, 0, 0, 1]), &ForwardOptions::default());
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut timer = client.timer(deadline);
        let task = Arc::new(Counting(std::sync::atomic::AtomicUsize::new(0)));
        let waker = std::task::Waker::from(task.clone());
        assert!(
            timer
                .as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_pending()
        );
        drop(waker);
        assert_eq!(
            Arc::strong_count(&task),
            2,
            "the timer holds the request's waker"
        );
        client.keep(timer, true);
        assert_eq!(Arc::strong_count(&task), 1, "let go once kept");
        tokio::time::sleep(std::time::Duration::from_secs(6)).await;
        assert_eq!(
            task.0.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "never woken"
        );
        // The next request gets the same timer, moved to its own deadline.
        let next = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut timer = client.timer(next);
        assert_eq!(timer.deadline(), next);
        assert!(
            timer
                .as_mut()
                .poll(&mut Context::from_waker(std::task::Waker::noop()))
                .is_pending(),
            "reset after it fired"
        );
    }

    #[test]
    fn strips_standard_and_connection_listed_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        let mut upgrade = h.clone();
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["x-keep"]);
        strip_hop_by_hop(&mut upgrade, true);
        let mut kept: Vec<_> = upgrade
            .iter()
            .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap_or_default()))
            .collect();
        kept.sort();
        assert_eq!(
            kept,
            ["connection: upgrade", "upgrade: websocket", "x-keep: 1"]
        );
    }
}

#[cfg(test)]
mod underscore_tests {
    use super::*;

    #[test]
    fn names_with_underscores_are_dropped() {
        let mut h = HeaderMap::new();
        h.insert("x_forwarded_for", HeaderValue::from_static("6.6.6.6"));
        h.insert("x_real_ip", HeaderValue::from_static("6.6.6.6"));
        h.insert("x-real-ip", HeaderValue::from_static("1.2.3.4"));
        strip_underscores(&mut h);
        assert_eq!(
            h.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
            ["x-real-ip"]
        );
    }
}
