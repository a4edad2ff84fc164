//! HTTPS at the edge (issue 15): the certificates the `--listen-tls` listener picks by SNI
//! (from the live snapshot, so a reload or a rotated Secret serves the next handshake), the
//! 308 that `spec.tls.redirectHTTP` answers plain HTTP with, and the marker that tells
//! `forward` to send `X-Forwarded-Proto: https`.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, Uri, header};
use http_body_util::{Either, Full};
use rustls::sign::CertifiedKey;

use super::Body;
use super::store::Store;
use crate::serve::CertResolver;

/// A request extension: this request came over the TLS listener.
#[derive(Debug, Clone, Copy)]
pub struct Https;

/// The live snapshot's certificates, for `serve::TlsSource::sni`.
pub struct SnapshotCerts(pub Arc<Store>);

impl CertResolver for SnapshotCerts {
    fn certificate(&self, server_name: &str) -> Option<Arc<CertifiedKey>> {
        self.0.load()?.snapshot.certs.lookup(server_name).cloned()
    }
}

/// 308 Permanent Redirect to the same path and query on https, default port (the chart
/// exposes the TLS listener on 443). 308, not 301: the method and body are kept (RFC 9110
/// §15.4.9). `host`: normalised (lower case, no port).
pub fn redirect(host: &str, uri: &Uri) -> Response<Body> {
    let pq = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let mut r = Response::new(Either::Right(Full::new(Bytes::new())));
    *r.status_mut() = StatusCode::PERMANENT_REDIRECT;
    match HeaderValue::from_str(&format!("https://{host}{pq}")) {
        Ok(v) => {
            r.headers_mut().insert(header::LOCATION, v);
        }
        // A routed host and a parsed URI always form a valid header; never panic.
        Err(_) => *r.status_mut() = StatusCode::BAD_REQUEST,
    }
    r
}
