//! The HTTPS listener, on the one serving module (`crate::serve`, TLS from files re-read per
//! connection or from memory swapped by rotation): `POST /validate` answered by
//! `review::review`, bounded in size and time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::{Existing, ReviewError, review};
use crate::serve::{self, Listener, TEXT, reply};
pub use crate::serve::{TlsSource, server_config};

/// Largest AdmissionReview accepted: an object and its old version, each at most the API
/// server's 1.5 MiB request limit, plus the envelope, fit easily.
pub const MAX_BODY: usize = 8 << 20;
/// How long a client may take to send the body (the API server's own timeout is shorter).
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send the headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long in-flight reviews may finish after shutdown.
const DRAIN: Duration = Duration::from_secs(2);

/// Answers requests.
pub struct Handler {
    pub existing: Existing,
    pub reject_conflicts: bool,
}

/// Reads a body of at most `MAX_BODY` bytes within `READ_TIMEOUT`.
async fn read_body<B>(body: B) -> Result<Bytes, ReviewError>
where
    B: hyper::body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match tokio::time::timeout(READ_TIMEOUT, Limited::new(body, MAX_BODY).collect()).await {
        Err(_) => Err(ReviewError::Timeout(READ_TIMEOUT)),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            Err(ReviewError::TooLarge { limit: MAX_BODY })
        }
        Ok(Err(e)) => Err(ReviewError::Body(e.to_string())),
        Ok(Ok(c)) => Ok(c.to_bytes()),
    }
}

impl Handler {
    pub async fn handle<B>(&self, req: Request<B>) -> Response<Full<Bytes>>
    where
        B: hyper::body::Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if req.uri().path() != "/validate" {
            return reply(
                StatusCode::NOT_FOUND,
                TEXT,
                "not found: POST AdmissionReviews to /validate\n",
            );
        }
        if req.method() != Method::POST {
            return reply(StatusCode::METHOD_NOT_ALLOWED, TEXT, "use POST\n");
        }
        let result = match read_body(req.into_body()).await {
            Ok(body) => review::review(&body, &(self.existing)(), self.reject_conflicts),
            Err(e) => Err(e),
        };
        match result {
            Ok(v) => {
                if v["response"]["allowed"] == false {
                    tracing::info!(uid = %v["response"]["uid"], "admission denied");
                }
                reply(StatusCode::OK, "application/json", v.to_string())
            }
            Err(e) => {
                tracing::warn!(error = %e, "malformed admission request");
                reply(e.status(), TEXT, format!("bad request: {e}\n"))
            }
        }
    }
}

/// Serves HTTPS on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<TlsSource>,
    handler: Arc<Handler>,
    shutdown: watch::Receiver<bool>,
) {
    let how = Listener {
        name: "webhook",
        header_timeout: HEADER_TIMEOUT,
        drain: DRAIN,
        tls: Some(tls),
    };
    serve::serve(
        listener,
        how,
        move |_: SocketAddr| {
            let handler = handler.clone();
            move |req: Request<Incoming>| {
                let h = handler.clone();
                async move { h.handle(req).await }
            }
        },
        shutdown,
    )
    .await;
}
