//! TLS for a listener: a rustls server configuration from PEM files (re-read for every
//! connection, so a certificate rotated on disk by cert-manager or a Secret volume is used at
//! once), from memory (swapped by whoever rotates it), or by SNI from a [`CertResolver`]
//! (the proxy's live snapshot: a rotated certificate serves the next handshake, open
//! connections keep theirs). A server name with no certificate gets the TLS alert
//! `unrecognized_name` (RFC 6066 §3), never another host's certificate.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// Why a certificate and key cannot serve.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    ReadFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {message}")]
    Pem { what: &'static str, message: String },
    #[error("invalid TLS certificate or key: {0}")]
    Rustls(#[source] rustls::Error),
}

/// Why a TLS connection did not start.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The listener's own certificate cannot be loaded (files mode): the operator's problem.
    #[error(transparent)]
    Config(TlsError),
    #[error("no certificate for server name {0:?}; sent the unrecognized_name alert")]
    UnknownName(String),
    #[error("TLS handshake failed: {0}")]
    Io(#[source] std::io::Error),
}

/// Certificates by server name, for a listener that serves many hosts.
pub trait CertResolver: Send + Sync + 'static {
    /// The certificate for `server_name` (the client's SNI, as sent), if any.
    fn certificate(&self, server_name: &str) -> Option<Arc<CertifiedKey>>;
}

/// Where each connection's TLS configuration comes from.
pub enum TlsSource {
    Files {
        cert: PathBuf,
        key: PathBuf,
    },
    Memory(Arc<ArcSwap<ServerConfig>>),
    /// One configuration whose certificate is looked up per handshake by SNI.
    Sni {
        config: Arc<ServerConfig>,
        certs: Arc<dyn CertResolver>,
    },
}

/// rustls' side of [`TlsSource::Sni`].
struct BySni(Arc<dyn CertResolver>);

impl fmt::Debug for BySni {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BySni")
    }
}

impl ResolvesServerCert for BySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        hello.server_name().and_then(|n| self.0.certificate(n))
    }
}

/// A fatal `unrecognized_name` alert (RFC 8446 §6: content type 21, legacy version 3.3,
/// length 2, level fatal, description 112), sent in the clear before any ServerHello.
/// rustls answers an unresolved certificate with `access_denied`; the issue asks for this.
const UNRECOGNIZED_NAME_ALERT: [u8; 7] = [21, 3, 3, 0, 2, 2, 112];

impl TlsSource {
    /// Certificates by SNI from `certs`, with ALPN h2 and http/1.1.
    pub fn sni(certs: Arc<dyn CertResolver>) -> Result<TlsSource, TlsError> {
        let mut config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(TlsError::Rustls)?
                .with_no_client_auth()
                .with_cert_resolver(Arc::new(BySni(certs.clone())));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(TlsSource::Sni {
            config: Arc::new(config),
            certs,
        })
    }

    /// The TLS handshake on an accepted connection (the caller bounds it in time).
    pub async fn accept(&self, stream: TcpStream) -> Result<TlsStream<TcpStream>, HandshakeError> {
        let (config, certs) = match self {
            TlsSource::Sni { config, certs } => (config.clone(), certs),
            other => {
                let config = other.config().map_err(HandshakeError::Config)?;
                return tokio_rustls::TlsAcceptor::from(config)
                    .accept(stream)
                    .await
                    .map_err(HandshakeError::Io);
            }
        };
        let start =
            tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream)
                .await
                .map_err(HandshakeError::Io)?;
        let name = start.client_hello().server_name().map(str::to_string);
        if name.as_deref().and_then(|n| certs.certificate(n)).is_none() {
            let mut io = start.io;
            let _ = io.write_all(&UNRECOGNIZED_NAME_ALERT).await;
            let _ = io.shutdown().await;
            return Err(HandshakeError::UnknownName(name.unwrap_or_default()));
        }
        start.into_stream(config).await.map_err(HandshakeError::Io)
    }

    /// The configuration for a new connection: files are read again each time. Call it once
    /// before binding, so a typo fails the start rather than the first connection.
    pub fn config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        match self {
            TlsSource::Files { cert, key } => {
                let read = |p: &PathBuf| {
                    std::fs::read(p).map_err(|source| TlsError::ReadFile {
                        path: p.display().to_string(),
                        source,
                    })
                };
                server_config(&read(cert)?, &read(key)?)
            }
            TlsSource::Memory(c) => Ok(c.load_full()),
            TlsSource::Sni { config, .. } => Ok(config.clone()),
        }
    }
}

/// A rustls server configuration (ring, TLS 1.2 and 1.3, h2 and http/1.1) from PEM.
pub fn server_config(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<ServerConfig>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem {
            what: "the certificate",
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            what: "the certificate",
            message: "no CERTIFICATE block found".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::Pem {
        what: "the private key",
        message: e.to_string(),
    })?;
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Rustls)?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(TlsError::Rustls)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// PEM files of one side of a mutually authenticated TLS connection (the config stream):
/// this side's certificate and key, and the CA that must have issued the peer's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MutualFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

fn read_file(p: &PathBuf) -> Result<Vec<u8>, TlsError> {
    std::fs::read(p).map_err(|source| TlsError::ReadFile {
        path: p.display().to_string(),
        source,
    })
}

fn roots(ca_pem: &[u8]) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem) {
        let c = c.map_err(|e| TlsError::Pem {
            what: "the CA certificate",
            message: e.to_string(),
        })?;
        roots.add(c).map_err(TlsError::Rustls)?;
    }
    if roots.is_empty() {
        return Err(TlsError::Pem {
            what: "the CA certificate",
            message: "no CERTIFICATE block found".into(),
        });
    }
    Ok(roots)
}

fn chain_and_key(
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem {
            what: "the certificate",
            message: e.to_string(),
        })?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::Pem {
        what: "the private key",
        message: e.to_string(),
    })?;
    Ok((certs, key))
}

/// The config stream's server side: its certificate, and a client certificate issued by
/// `files.ca` required of every client (a client without one fails the handshake).
pub fn mutual_server(files: &MutualFiles) -> Result<Arc<ServerConfig>, TlsError> {
    mutual_server_pem(
        &read_file(&files.cert)?,
        &read_file(&files.key)?,
        &read_file(&files.ca)?,
    )
}

/// [`mutual_server`] from PEM texts.
pub fn mutual_server_pem(
    cert_pem: &[u8],
    key_pem: &[u8],
    ca_pem: &[u8],
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let (certs, key) = chain_and_key(cert_pem, key_pem)?;
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots(ca_pem)?),
        provider.clone(),
    )
    .build()
    .map_err(|e| TlsError::Pem {
        what: "the client CA",
        message: e.to_string(),
    })?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Rustls)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(TlsError::Rustls)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The config stream's client side: trusts only `files.ca` and presents its certificate.
pub fn mutual_client(files: &MutualFiles) -> Result<rustls::ClientConfig, TlsError> {
    let (certs, key) = chain_and_key(&read_file(&files.cert)?, &read_file(&files.key)?)?;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(TlsError::Rustls)?
    .with_root_certificates(roots(&read_file(&files.ca)?)?)
    .with_client_auth_cert(certs, key)
    .map_err(TlsError::Rustls)?;
    // No ALPN here: hyper-rustls sets it (and refuses a config that has it already).
    Ok(config)
}
