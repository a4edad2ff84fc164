//! One place turns every error into a response (linkerd2-proxy's `respond.rs`): an invalid
//! host or request body (400), no route, rejected at the edge, upstream refused or reset,
//! upstream timeout. The handler then
//! applies the decision's CORS headers and `responseHeaders` to whatever response it holds,
//! so the edge's own errors are readable by the page too (pingora#381 is the trap).

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{Either, Full};

use super::Body;

/// `x-corsgate-error` of a CORS rejection.
pub const REJECTED_LABEL: &str = "cors-rejected";

/// Why the proxy did not relay an upstream response.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("bad request: {0}")]
    InvalidHost(#[from] super::host::InvalidHost),
    #[error("bad request: {source}")]
    ClientBody {
        #[source]
        source: super::upstream::UpstreamError,
    },
    #[error("no policy serves host {host:?} and path {path:?}")]
    NoRoute { host: String, path: String },
    #[error("no configuration is loaded yet")]
    NotReady,
    #[error("{what} rejected by policy {policy}: {reason}")]
    Rejected {
        policy: String,
        what: &'static str,
        reason: String,
    },
    #[error("upstream {upstream} did not answer within {seconds} s")]
    Timeout { upstream: String, seconds: u64 },
    #[error("upstream {upstream} failed: {source}")]
    Upstream {
        upstream: String,
        #[source]
        source: super::upstream::UpstreamError,
    },
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::InvalidHost(_) | ProxyError::ClientBody { .. } => StatusCode::BAD_REQUEST,
            ProxyError::NoRoute { .. } => StatusCode::NOT_FOUND,
            ProxyError::NotReady => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Rejected { .. } => StatusCode::FORBIDDEN,
            ProxyError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::Upstream { .. } => StatusCode::BAD_GATEWAY,
        }
    }

    /// A short, closed label for the `x-corsgate-error` header and logs.
    pub fn label(&self) -> &'static str {
        match self {
            ProxyError::InvalidHost(_) => "invalid-host",
            ProxyError::ClientBody { .. } => "client-body",
            ProxyError::NoRoute { .. } => "no-route",
            ProxyError::NotReady => "not-ready",
            ProxyError::Rejected { .. } => REJECTED_LABEL,
            ProxyError::Timeout { .. } => "upstream-timeout",
            ProxyError::Upstream {
                source: super::upstream::UpstreamError::Connect(_),
                ..
            } => "upstream-connect",
            ProxyError::Upstream { .. } => "upstream-reset",
        }
    }
}

/// The response for an error: its status, a one-line plain-text body saying what happened
/// (what a developer sees in the browser's network panel), and `x-corsgate-error`.
pub fn rescue(err: &ProxyError) -> Response<Body> {
    // hyper's errors wrap the useful part (connection refused, reset) a few levels down.
    let body = format!("corsgate: {}\n", crate::serve::describe(err));
    let mut resp = Response::new(Either::Right(Full::new(Bytes::from(body))));
    *resp.status_mut() = err.status();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert("x-corsgate-error", HeaderValue::from_static(err.label()));
    resp
}
