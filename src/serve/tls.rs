//! TLS for a listener: a rustls server configuration from PEM files (re-read for every
//! connection, so a certificate rotated on disk by cert-manager or a Secret volume is used at
//! once) or from memory (swapped by whoever rotates it).

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

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

/// Where each connection's TLS configuration comes from.
pub enum TlsSource {
    Files { cert: PathBuf, key: PathBuf },
    Memory(Arc<ArcSwap<ServerConfig>>),
}

impl TlsSource {
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
