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

/// Reads a body of at most `MAX_BODY` bytes within `READ_TIMEOUT`. A body whose declared
/// length (Content-Length, which hyper reports as the exact size hint) is already over the
/// limit is refused before a byte of it is read; a chunked one is cut where it passes it.
async fn read_body<B>(body: B) -> Result<Bytes, ReviewError>
where
    B: hyper::body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if body.size_hint().lower() > MAX_BODY as u64 {
        return Err(ReviewError::TooLarge { limit: MAX_BODY });
    }
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
        conn: serve::ConnLimits::default(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::StreamBody;
    use hyper::body::Frame;

    #[tokio::test]
    async fn a_chunked_body_is_cut_where_it_passes_the_limit() {
        // No declared length: the limit applies while reading.
        let chunks = (0..=MAX_BODY / 65536).map(|_| {
            Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from(vec![b' '; 65536])))
        });
        let body = StreamBody::new(futures::stream::iter(chunks));
        let err = read_body(body).await.err();
        assert!(
            matches!(err, Some(ReviewError::TooLarge { limit: MAX_BODY })),
            "{err:?}"
        );
        // At the limit exactly it is read.
        let body = Full::new(Bytes::from(vec![b' '; MAX_BODY]));
        assert_eq!(read_body(body).await.map(|b| b.len()).ok(), Some(MAX_BODY));
    }
}
