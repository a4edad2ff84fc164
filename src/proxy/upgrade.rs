//! HTTP/1.1 upgrades (WebSocket above all): relayed to the upstream on a connection of
//! their own, and after its `101 Switching Protocols` the two sockets are copied into each
//! other until either side closes (issue 13 item 9). HTTP/2's extended CONNECT (RFC 8441)
//! is not supported: a WebSocket over HTTP/2 is refused by the HTTP/2 layer, and browsers
//! then use HTTP/1.1.
//!
//! A WebSocket handshake is not a CORS request — the browser sends it to any site, with that
//! site's cookies — so the edge checks its `Origin` against the policy's allowed origins
//! itself (`spec.websocket.checkOrigin`, on by default), with the same origin matcher the
//! CORS decision uses. A handshake without `Origin` does not come from a browser and passes,
//! as it does in nginx and Envoy.

use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use super::Body;
use super::forward::{ClientConn, ForwardOptions, prepare, strip_hop_by_hop, upstream_error};
use super::metrics::Latency;
use super::rescue::ProxyError;
use super::upstream::{ClientBody, PooledBody, Upstreams};
use crate::config::CompiledPolicy;
use crate::cors::{self, Rejection};

/// An HTTP/1.1 request asking to switch protocols: `Upgrade` and `Connection: upgrade`.
pub fn is_upgrade(req: &Request<Incoming>) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE)
        && req
            .headers()
            .get_all(header::CONNECTION)
            .iter()
            .flat_map(|v| v.as_bytes().split(|b| *b == b','))
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"upgrade"))
}

/// Why the policy refuses an upgrade from this request's `Origin`, if it does: the origin
/// is not one `cors` allows (base or rules) and `websocket.checkOrigin` is on. No `Origin`:
/// not a browser, never refused.
pub fn refused_origin(policy: &CompiledPolicy, headers: &HeaderMap) -> Option<String> {
    if !policy.websocket_check_origin {
        return None;
    }
    let req = cors::classify(&Method::GET, headers);
    let origin = req.parsed_origin()?;
    let raw = req.origin.as_ref()?.as_bytes();
    if policy.cors.grant_for(&origin, raw).is_some() {
        return None;
    }
    Some(format!(
        "{} (spec.websocket.checkOrigin is on: a WebSocket handshake is not covered by CORS)",
        Rejection::Origin.describe(&req)
    ))
}

/// Relays an upgrade request. A 101 from the upstream is answered to the client, and a
/// spawned task then copies bytes both ways; the client connection's slot is held for the
/// tunnel's life. Any other answer is relayed as a normal response.
pub async fn forward(
    upstreams: &Upstreams,
    policy: &CompiledPolicy,
    latency: &Latency,
    mut req: Request<Incoming>,
    client: &ClientConn,
    host: &HeaderValue,
    opts: &ForwardOptions,
) -> Result<Response<Body>, ProxyError> {
    let client_io = hyper::upgrade::on(&mut req);
    let (mut parts, body) = req.into_parts();
    prepare(&mut parts, client, host, opts, true);
    let req = Request::from_parts(parts, ClientBody(body));
    let started = Instant::now();
    let sent = tokio::time::timeout(policy.upstream.timeout, async {
        let permit = client.slots.clone().acquire_owned().await.ok();
        upstreams
            .send_upgrade(&policy.upstream, req)
            .await
            .map(|r| (r, permit))
    })
    .await;
    latency.observe(started.elapsed());
    let (mut resp, permit) = match sent {
        Err(_) => {
            return Err(ProxyError::Timeout {
                upstream: policy.upstream.url(),
                seconds: policy.upstream.timeout.as_secs(),
            });
        }
        Ok(Err(source)) => return Err(upstream_error(policy, source)),
        Ok(Ok(r)) => r,
    };
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        strip_hop_by_hop(resp.headers_mut(), false);
        return Ok(resp.map(|b| Either::Left(PooledBody::unpooled(b, permit))));
    }
    let upstream_io = hyper::upgrade::on(&mut resp);
    strip_hop_by_hop(resp.headers_mut(), true);
    tokio::spawn(async move {
        match tokio::try_join!(client_io, upstream_io) {
            Ok((c, u)) => {
                let (mut c, mut u) = (TokioIo::new(c), TokioIo::new(u));
                match tokio::io::copy_bidirectional(&mut c, &mut u).await {
                    Ok((up, down)) => tracing::debug!(up, down, "upgraded connection closed"),
                    Err(e) => tracing::debug!(error = %e, "upgraded connection failed"),
                }
            }
            Err(e) => tracing::debug!(error = %e, "upgrade did not complete"),
        }
        drop(permit);
    });
    Ok(resp.map(|_| Either::Right(Full::new(Bytes::new()))))
}
