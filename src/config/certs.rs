//! TLS certificates at the edge (issue 15): the `kubernetes.io/tls` Secrets policies name in
//! `spec.tls.secretName`, the one check of a Secret against a policy's hosts (what the
//! controller's ResolvedRefs condition, `corsgate check`, `explain` and the file loader all
//! report), and the table the proxy's TLS listener picks a certificate from by SNI.
//!
//! Owns: parsing PEM chains and keys into rustls `CertifiedKey`s, SAN coverage, expiry and
//! self-signed warnings. Must not touch: sockets, the handshake (`serve::tls`), kube.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use crate::policy::TlsSpec;

/// The only Secret type a policy may name.
pub const SECRET_TYPE_TLS: &str = "kubernetes.io/tls";
/// A certificate expiring sooner than this is warned about.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 24 * 3600);

/// A Secret's type and data, as a policy file or the API server holds it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TlsSecret {
    pub namespace: String,
    pub name: String,
    /// `type` (`kubernetes.io/tls` for the only useful kind; "" when absent: Opaque).
    #[serde(rename = "type")]
    pub secret_type: String,
    /// `data["tls.crt"]`, decoded; empty when absent.
    pub cert_pem: Vec<u8>,
    /// `data["tls.key"]`, decoded; empty when absent.
    pub key_pem: Vec<u8>,
}

/// Every Secret known, by namespace and name.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    by_name: BTreeMap<(String, String), TlsSecret>,
    /// The controller does not deliver private keys (its config stream is not mutually
    /// authenticated): every `spec.tls` reports [`TlsProblem::Withheld`].
    withheld: bool,
}

impl Secrets {
    /// No Secret is read or delivered: each `spec.tls` reports [`TlsProblem::Withheld`].
    pub fn withheld() -> Secrets {
        Secrets {
            withheld: true,
            ..Secrets::default()
        }
    }

    pub fn is_withheld(&self) -> bool {
        self.withheld
    }

    /// Every Secret held, in (namespace, name) order.
    pub fn iter(&self) -> impl Iterator<Item = &TlsSecret> {
        self.by_name.values()
    }

    /// Adds a Secret; returns the one it replaced (two documents with one name).
    pub fn insert(&mut self, s: TlsSecret) -> Option<TlsSecret> {
        self.by_name
            .insert((s.namespace.clone(), s.name.clone()), s)
    }

    pub fn get(&self, namespace: &str, name: &str) -> Option<&TlsSecret> {
        self.by_name.get(&(namespace.to_string(), name.to_string()))
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

impl FromIterator<TlsSecret> for Secrets {
    fn from_iter<I: IntoIterator<Item = TlsSecret>>(iter: I) -> Self {
        let mut s = Secrets::default();
        for secret in iter {
            s.insert(secret);
        }
        s
    }
}

/// Why a policy's Secret cannot serve its hosts: ResolvedRefs=False, with `reason()`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsProblem {
    #[error(
        "spec.tls.secretName: secret {namespace}/{secret} not found; fix: create it (kubectl create secret tls {secret} --cert CERT --key KEY -n {namespace}), or, standalone, add that Secret document to the --policies files"
    )]
    SecretNotFound { namespace: String, secret: String },
    #[error(
        "spec.tls.secretName: secret {namespace}/{secret} has type {found:?}, not kubernetes.io/tls; fix: recreate it with kubectl create secret tls, which sets the type and the tls.crt and tls.key keys"
    )]
    NotTls {
        namespace: String,
        secret: String,
        found: String,
    },
    #[error(
        "spec.tls.secretName: secret {namespace}/{secret}: {what} cannot be used: {message}; fix: put a PEM certificate chain (leaf first) in tls.crt and its PEM private key in tls.key"
    )]
    Unparsable {
        namespace: String,
        secret: String,
        what: &'static str,
        message: String,
    },
    #[error(
        "spec.tls.secretName: secret {namespace}/{secret}: the private key in tls.key is not the key of the certificate in tls.crt; fix: store the key the certificate was issued for"
    )]
    KeyMismatch { namespace: String, secret: String },
    #[error(
        "spec.tls.secretName: secret {namespace}/{secret} is not read: the controller's config stream is not mutually authenticated, so it delivers no private keys to proxies and this policy is served over plain HTTP only; fix: install with the Helm chart (it sets up the stream's certificates), or run the controller with --stream-certs-secret, or with --stream-tls-cert, --stream-tls-key and --stream-client-ca"
    )]
    Withheld { namespace: String, secret: String },
    #[error(
        "spec.tls.secretName: the certificate in secret {namespace}/{secret} does not cover host {host} (its DNS names: {names}); fix: issue a certificate whose subjectAltName lists {host}, or move that host to a policy with another Secret"
    )]
    HostNotCovered {
        namespace: String,
        secret: String,
        host: String,
        names: String,
    },
}

impl TlsProblem {
    /// The ResolvedRefs reason.
    pub fn reason(&self) -> &'static str {
        match self {
            TlsProblem::SecretNotFound { .. } => "SecretNotFound",
            TlsProblem::NotTls { .. } => "InvalidSecretType",
            TlsProblem::Unparsable { .. } => "InvalidCertificate",
            TlsProblem::KeyMismatch { .. } => "KeyMismatch",
            TlsProblem::HostNotCovered { .. } => "HostNotCovered",
            TlsProblem::Withheld { .. } => "CertificatesWithheld",
        }
    }
}

/// A Secret that passed [`check`]: ready to serve, with what is risky about it.
#[derive(Debug, Clone)]
pub struct Checked {
    pub key: Arc<CertifiedKey>,
    /// SHA-256 over the certificate and key: a rotated Secret changes the config version.
    pub digest: [u8; 32],
    /// The leaf's DNS names, lower case.
    pub names: Vec<String>,
    /// The leaf's notAfter, seconds since the epoch.
    pub not_after: i64,
    /// `spec.tls.secretName: …` texts, as status.warnings holds them.
    pub warnings: Vec<String>,
}

/// Whether a certificate DNS name `san` covers a policy host (both lower case): equal, or a
/// one-label wildcard SAN over an exact host (RFC 6125 §6.4.3). A wildcard host
/// "*.example.com" needs the SAN "*.example.com" itself.
pub fn covers(san: &str, host: &str) -> bool {
    if san == host {
        return true;
    }
    match (san.strip_prefix("*."), host.starts_with("*.")) {
        (Some(suffix), false) => host
            .strip_suffix(suffix)
            .and_then(|l| l.strip_suffix('.'))
            .is_some_and(|label| !label.is_empty() && !label.contains('.')),
        _ => false,
    }
}

/// The one check of a policy's Secret: found, of type kubernetes.io/tls, a parsable chain
/// and key that belong together, covering every host; warnings when it expires within
/// [`EXPIRY_WARNING`] (or has expired) or is self-signed. `now`: for the expiry warning.
pub fn check(
    namespace: &str,
    tls: &TlsSpec,
    hosts: &[String],
    secret: Option<&TlsSecret>,
    now: SystemTime,
) -> Result<Checked, TlsProblem> {
    let ns = || namespace.to_string();
    let name = || tls.secret_name.clone();
    let Some(s) = secret else {
        return Err(TlsProblem::SecretNotFound {
            namespace: ns(),
            secret: name(),
        });
    };
    if s.secret_type != SECRET_TYPE_TLS {
        return Err(TlsProblem::NotTls {
            namespace: ns(),
            secret: name(),
            found: if s.secret_type.is_empty() {
                "Opaque".into()
            } else {
                s.secret_type.clone()
            },
        });
    }
    let unparsable = |what, message: String| TlsProblem::Unparsable {
        namespace: ns(),
        secret: name(),
        what,
        message,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&s.cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| unparsable("tls.crt", e.to_string()))?;
    let Some(leaf) = chain.first() else {
        return Err(unparsable("tls.crt", "no CERTIFICATE block found".into()));
    };
    let (_, cert) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| unparsable("tls.crt", format!("not an X.509 certificate: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(&s.key_pem)
        .map_err(|e| unparsable("tls.key", e.to_string()))?;
    let provider = rustls::crypto::ring::default_provider();
    let key = CertifiedKey::from_der(chain.clone(), key, &provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => TlsProblem::KeyMismatch {
            namespace: ns(),
            secret: name(),
        },
        other => unparsable("tls.key", other.to_string()),
    })?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                names.push(d.to_ascii_lowercase());
            }
        }
    }
    for host in hosts {
        if !names.iter().any(|san| covers(san, host)) {
            return Err(TlsProblem::HostNotCovered {
                namespace: ns(),
                secret: name(),
                host: host.clone(),
                names: if names.is_empty() {
                    "none: browsers ignore the common name".into()
                } else {
                    names.join(", ")
                },
            });
        }
    }
    let not_after = cert.validity().not_after.timestamp();
    let now_s = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let at = format!("secret {namespace}/{}", tls.secret_name);
    let mut warnings = Vec::new();
    let expiry = cert.validity().not_after.to_string();
    if not_after <= now_s {
        warnings.push(format!(
            "spec.tls.secretName: the certificate in {at} expired on {expiry}; browsers refuse it: renew it"
        ));
    } else if not_after - now_s < i64::try_from(EXPIRY_WARNING.as_secs()).unwrap_or(i64::MAX) {
        let days = (not_after - now_s) / 86_400;
        warnings.push(format!(
            "spec.tls.secretName: the certificate in {at} expires on {expiry} (in {days} days); renew it (cert-manager renews 30 days ahead by default)"
        ));
    }
    if cert.subject().as_raw() == cert.issuer().as_raw() {
        warnings.push(format!(
            "spec.tls.secretName: the certificate in {at} is self-signed; browsers do not trust it unless it is installed as a trusted root: use a certificate from a CA for public hosts"
        ));
    }
    let mut h = Sha256::new();
    h.update(&s.cert_pem);
    h.update([0]);
    h.update(&s.key_pem);
    Ok(Checked {
        key: Arc::new(key),
        digest: h.finalize().into(),
        names,
        not_after,
        warnings,
    })
}

/// Certificates by host, as routing keys them: exact names, and wildcards by the suffix
/// after "*.". The first certificate a host gets stays (snapshots insert oldest policy
/// first, as conflicts resolve).
#[derive(Debug, Clone, Default)]
pub struct CertTable {
    exact: HashMap<Box<str>, Arc<CertifiedKey>>,
    wildcard: HashMap<Box<str>, Arc<CertifiedKey>>,
}

impl CertTable {
    pub fn insert(&mut self, host: &str, key: &Arc<CertifiedKey>) {
        let (map, k) = match host.strip_prefix("*.") {
            Some(suffix) => (&mut self.wildcard, suffix),
            None => (&mut self.exact, host),
        };
        map.entry(k.into()).or_insert_with(|| key.clone());
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.wildcard.is_empty()
    }

    /// The certificate for a TLS server name: the exact host first, then wildcards from the
    /// most specific suffix (as `RouteTable::route`). Case and a trailing dot are ignored.
    pub fn lookup(&self, server_name: &str) -> Option<&Arc<CertifiedKey>> {
        let name = server_name.strip_suffix('.').unwrap_or(server_name);
        let name = name.to_ascii_lowercase();
        if let Some(k) = self.exact.get(name.as_str()) {
            return Some(k);
        }
        let mut rest = name.as_str();
        while let Some(dot) = rest.find('.') {
            rest = &rest[dot + 1..];
            if let Some(k) = self.wildcard.get(rest) {
                return Some(k);
            }
        }
        None
    }
}

#[cfg(test)]
#[path = "certs_tests.rs"]
mod tests;
