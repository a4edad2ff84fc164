//! Sending a request upstream: the pooled client, hop-by-hop headers, `Host` and
//! `X-Forwarded-*`, and the timeout.

use std::net::IpAddr;
use std::time::Instant;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, Version};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::metrics::Latency;
use super::rescue::ProxyError;
use crate::config::CompiledPolicy;

pub type UpstreamClient = Client<HttpsConnector<HttpConnector>, Incoming>;

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

/// Builds the pooled upstream client: HTTP/1.1 keep-alive for http, TLS (system roots,
/// ALPN h2 or http/1.1) for https.
pub fn client() -> Result<UpstreamClient, std::io::Error> {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()?
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .build();
    Ok(Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(std::time::Duration::from_secs(90))
        .build(https))
}

/// Removes hop-by-hop headers, including those named by `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
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
    client: &UpstreamClient,
    policy: &CompiledPolicy,
    latency: &Latency,
    req: Request<Incoming>,
    peer: &HeaderValue,
    host: &HeaderValue,
) -> Result<Response<Incoming>, ProxyError> {
    let (mut parts, body) = req.into_parts();
    parts.uri = policy
        .upstream
        .uri(parts.uri.path_and_query())
        .map_err(ProxyError::BadRequest)?;
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
    h.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    h.insert(X_FORWARDED_HOST, host.clone());

    let started = Instant::now();
    let sent = tokio::time::timeout(
        policy.upstream.timeout,
        client.request(Request::from_parts(parts, body)),
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
