//! The HTTPS listener: TLS from files (re-read per connection) or from memory (swapped by
//! rotation), `POST /validate` answered by `review::review`, bounded in size and time.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::{Error, Existing, ReviewError, review};

/// Largest AdmissionReview accepted: an object and its old version, each at most the API
/// server's 1.5 MiB request limit, plus the envelope, fit easily.
pub const MAX_BODY: usize = 8 << 20;
/// How long a client may take to send the body (the API server's own timeout is shorter).
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where each connection's TLS configuration comes from.
pub enum TlsSource {
    Files { cert: PathBuf, key: PathBuf },
    Memory(Arc<ArcSwap<ServerConfig>>),
}

impl TlsSource {
    /// The configuration for a new connection: files are read again each time, so a
    /// certificate rotated on disk (cert-manager, a Secret volume) is used at once.
    pub fn config(&self) -> Result<Arc<ServerConfig>, Error> {
        match self {
            TlsSource::Files { cert, key } => {
                let read = |p: &PathBuf| {
                    std::fs::read(p).map_err(|source| Error::ReadFile {
                        path: p.display().to_string(),
                        source,
                    })
                };
                server_config(&read(cert)?, &read(key)?)
            }
            TlsSource::Memory(c) => Ok(c.load_full()),
        }
    }
}

/// A rustls server configuration (ring, TLS 1.2 and 1.3, h2 and http/1.1) from PEM.
pub fn server_config(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<ServerConfig>, Error> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| Error::Pem {
            what: "the certificate".into(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(Error::Pem {
            what: "the certificate".into(),
            message: "no CERTIFICATE block found".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| Error::Pem {
        what: "the private key".into(),
        message: e.to_string(),
    })?;
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(Error::Tls)?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(Error::Tls)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Answers requests.
pub struct Handler {
    pub existing: Existing,
    pub reject_conflicts: bool,
}

/// A small response with a content type (the webhook's answers and the controller's admin).
pub(crate) fn reply(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Bytes> {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
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
    pub async fn handle<B>(&self, req: Request<B>) -> Response<Bytes>
    where
        B: hyper::body::Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        const TEXT: &str = "text/plain; charset=utf-8";
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

/// Resolves once `shutdown` is true (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Serves HTTPS on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<TlsSource>,
    handler: Arc<Handler>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10));
    loop {
        let (io, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "webhook accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stopped(&mut shutdown) => break,
        };
        let config = match tls.config() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot load the webhook's TLS certificate; dropping the connection");
                continue;
            }
        };
        let (handler, builder, mut stop) = (handler.clone(), builder.clone(), shutdown.clone());
        tokio::spawn(async move {
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(io)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let svc = service_fn(move |req: Request<Incoming>| {
                let h = handler.clone();
                async move { Ok::<_, Infallible>(h.handle(req).await.map(Full::new)) }
            });
            let conn = builder.serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "webhook connection ended with an error");
                },
                () = stopped(&mut stop) => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(2), conn).await;
                }
            }
        });
    }
}
