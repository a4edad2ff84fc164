//! Sending a request upstream: the pooled client, hop-by-hop headers, `Host` and
//! `X-Forwarded-*`, and the timeout.

use std::net::IpAddr;
use std::time::Instant;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, Version};
use hyper::body::Incoming;
use std::sync::Arc;

use super::metrics::Latency;
use super::rescue::ProxyError;
use super::upstream::{Idle, PooledBody, Upstreams};
use crate::config::CompiledPolicy;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Hop-by-hop headers (RFC 9110 §7.6.1), plus the non-standard `Proxy-Connection`.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Removes hop-by-hop headers, including those named by `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Usually there are none: one pass over the few names present beats nine lookups.
    if !headers
        .keys()
        .any(|k| HOP_BY_HOP.contains(k) || k == header::UPGRADE)
    {
        return;
    }
    if let Some(conn) = headers.remove(header::CONNECTION) {
        for name in conn.as_bytes().split(|b| *b == b',') {
            if let Ok(name) = std::str::from_utf8(name.trim_ascii())
                && !name.is_empty()
            {
                headers.remove(name);
            }
        }
    }
    for h in &HOP_BY_HOP {
        headers.remove(h);
    }
    headers.remove(header::UPGRADE);
}

/// The client's address, formatted once per connection.
pub fn peer_value(ip: IpAddr) -> HeaderValue {
    // An IP address always formats to valid header bytes.
    HeaderValue::from_str(&ip.to_string()).unwrap_or(HeaderValue::from_static("unknown"))
}

/// Sends `req` to the policy's upstream and waits for its response headers, at most the
/// policy's timeout. The body streams in both directions.
pub async fn forward(
    upstreams: &Upstreams,
    idle: &Arc<Idle>,
    policy: &CompiledPolicy,
    latency: &Latency,
    req: Request<Incoming>,
    peer: &HeaderValue,
    host: &HeaderValue,
) -> Result<Response<PooledBody>, ProxyError> {
    let (mut parts, body) = req.into_parts();
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
    strip_hop_by_hop(h);
    // Host is preserved: the upstream sees the name the client asked for.
    h.insert(header::HOST, host.clone());
    let xff = match h.get(&X_FORWARDED_FOR) {
        Some(prev) => {
            let mut v = prev.as_bytes().to_vec();
            v.extend_from_slice(b", ");
            v.extend_from_slice(peer.as_bytes());
            HeaderValue::from_bytes(&v).unwrap_or_else(|_| peer.clone())
        }
        None => peer.clone(),
    };
    h.insert(X_FORWARDED_FOR, xff);
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

    let started = Instant::now();
    let sent = tokio::time::timeout(
        policy.upstream.timeout,
        upstreams.send(idle, &policy.upstream, Request::from_parts(parts, body)),
    )
    .await;
    latency.observe(started.elapsed());
    match sent {
        Err(_) => Err(ProxyError::Timeout {
            upstream: policy.upstream.url(),
            seconds: policy.upstream.timeout.as_secs(),
        }),
        Ok(Err(source)) => Err(ProxyError::Upstream {
            upstream: policy.upstream.url(),
            source,
        }),
        Ok(Ok(mut resp)) => {
            strip_hop_by_hop(resp.headers_mut());
            Ok(resp)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        strip_hop_by_hop(&mut h);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["x-keep"]);
    }
}
