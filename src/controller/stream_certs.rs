//! The config stream's certificates without a manual step, as Contour's certgen does for
//! Envoy: the controller keeps a CA and its own serving certificate in one Secret (the
//! webhook's machinery, `webhook::certs`: CA for 10 years, serving certificate for 1 year,
//! renewed 30 days ahead, the old CA kept in `ca.crt` until it expires), and issues the
//! proxies' client certificate (clientAuth, 1 year, renewed 30 days ahead or when the CA
//! changed) into a second Secret that only the proxy pods mount (`ca.crt`, `tls.crt`,
//! `tls.key`; never the CA key).
//!
//! The stream then requires a client certificate from that CA: a client without one gets
//! nothing and cannot post reports. Proxies re-read the mounted files when the kubelet
//! updates them (`proxy::stream`), and the controller swaps its serving configuration on
//! renewal without a restart.
//!
//! Several replicas: both Secrets are written with optimistic concurrency (create, or
//! replace at the resourceVersion read); the loser of a race reads the winner's.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use rcgen::{ExtendedKeyUsagePurpose, KeyPair};
use rustls::ServerConfig;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::webhook::Error;
use crate::webhook::certs::{self, Bundle, CERT_RENEW_BEFORE, ManagedOptions};

/// The client certificate's common name.
pub const CLIENT_NAME: &str = "corsgate-proxy";
/// Annotation on the proxies' Secret: SHA-256 of the CA certificate that issued it.
pub const CA_ANNOTATION: &str = "corsgate.dev/issuer-sha256";
/// How often each replica re-checks both Secrets.
pub const CHECK_EVERY: Duration = Duration::from_secs(3600);

/// Where the stream's certificates live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamCertOptions {
    /// The controller's Service: its serving certificate is for SERVICE.NAMESPACE.svc.
    pub service: String,
    pub namespace: String,
    /// CA, CA key and the controller's serving certificate.
    pub secret: String,
    /// What proxies mount: the CA certificate and their client certificate and key.
    pub proxy_secret: String,
}

impl StreamCertOptions {
    fn managed(&self) -> ManagedOptions {
        ManagedOptions {
            service: self.service.clone(),
            namespace: self.namespace.clone(),
            secret: self.secret.clone(),
            config_name: String::new(),
        }
    }

    /// The serving certificate's names: the Service's, and `localhost` (a proxy on the
    /// controller's own host, e.g. `corsgate proxy --controller https://localhost:9090`).
    pub fn dns_names(&self) -> Vec<String> {
        let mut names = self.managed().dns_names();
        names.push("localhost".into());
        names
    }
}

/// A client certificate for the proxies, signed by the first CA in `ca_pem`.
pub fn issue_client(
    ca_pem: &str,
    ca_key_pem: &str,
    now: OffsetDateTime,
) -> Result<(String, String), Error> {
    certs::issue_for(
        ca_pem,
        ca_key_pem,
        &[],
        CLIENT_NAME,
        ExtendedKeyUsagePurpose::ClientAuth,
        now,
    )
}

/// The hex SHA-256 of the first certificate in a PEM text (the issuing CA).
pub fn first_cert_digest(pem: &str) -> String {
    let first = CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .and_then(Result::ok);
    let mut h = Sha256::new();
    h.update(first.as_deref().unwrap_or_default());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// What the proxies' Secret holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientBundle {
    pub ca: String,
    pub cert: String,
    pub key: String,
    /// `first_cert_digest` of the CA that issued `cert`.
    pub issuer: String,
}

/// Decides what the proxies' Secret should hold: `current` when it was issued by the
/// bundle's current CA, trusts the same CA certificates and has more than 30 days left;
/// otherwise a new client certificate. Returns whether it changed.
pub fn plan_client(
    current: Option<&ClientBundle>,
    ca: &Bundle,
    now: OffsetDateTime,
) -> Result<(ClientBundle, bool), Error> {
    let issuer = first_cert_digest(&ca.ca);
    if let Some(cur) = current {
        let fresh = certs::parse(&cur.cert)
            .ok()
            .and_then(|c| c.first().map(|c| c.not_after - now > CERT_RENEW_BEFORE))
            .unwrap_or(false);
        if fresh && cur.issuer == issuer && cur.ca == ca.ca && KeyPair::from_pem(&cur.key).is_ok() {
            return Ok((cur.clone(), false));
        }
        if fresh && cur.issuer == issuer {
            // Only the trusted set moved (an expired old CA left it): same certificate.
            return Ok((
                ClientBundle {
                    ca: ca.ca.clone(),
                    ..cur.clone()
                },
                true,
            ));
        }
    }
    let (cert, key) = issue_client(&ca.ca, &ca.ca_key, now)?;
    Ok((
        ClientBundle {
            ca: ca.ca.clone(),
            cert,
            key,
            issuer,
        },
        true,
    ))
}

fn client_bundle_of(s: &Secret) -> Option<ClientBundle> {
    let text = |k: &str| certs::secret_text(s, k);
    Some(ClientBundle {
        ca: text("ca.crt")?,
        cert: text("tls.crt")?,
        key: text("tls.key")?,
        issuer: s
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(CA_ANNOTATION))
            .cloned()
            .unwrap_or_default(),
    })
}

fn client_secret(
    opts: &StreamCertOptions,
    b: &ClientBundle,
    resource_version: Option<String>,
) -> Secret {
    let mut s = certs::managed_secret(
        &opts.namespace,
        &opts.proxy_secret,
        &[("ca.crt", &b.ca), ("tls.crt", &b.cert), ("tls.key", &b.key)],
        resource_version,
    );
    s.metadata.annotations = Some(BTreeMap::from([(
        CA_ANNOTATION.to_string(),
        b.issuer.clone(),
    )]));
    s
}

/// Makes sure the proxies' Secret holds a client certificate of the current CA.
async fn ensure_client(
    client: &kube::Client,
    opts: &StreamCertOptions,
    ca: &Bundle,
    now: OffsetDateTime,
) -> Result<(), Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &opts.namespace);
    let where_ = format!("{}/{}", opts.namespace, opts.proxy_secret);
    let existing = api
        .get_opt(&opts.proxy_secret)
        .await
        .map_err(certs::kube_err(format!("reading Secret {where_}")))?;
    let current = existing.as_ref().and_then(client_bundle_of);
    let (bundle, changed) = plan_client(current.as_ref(), ca, now)?;
    if !changed {
        return Ok(());
    }
    tracing::info!(secret = %where_, "writing the proxies' config-stream client certificate");
    let result = certs::write_secret(&api, existing.as_ref(), |rv| {
        client_secret(opts, &bundle, rv)
    })
    .await;
    match result {
        Ok(_) => Ok(()),
        // Another replica wrote first: its certificate serves as well as ours.
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(certs::kube_err(format!("writing Secret {where_}"))(e)),
    }
}

/// The stream's serving configuration for `bundle`: its certificate, and a client
/// certificate from any CA in `bundle.ca` required.
pub fn server_config(bundle: &Bundle) -> Result<Arc<ServerConfig>, crate::serve::TlsError> {
    crate::serve::tls::mutual_server_pem(
        bundle.cert.as_bytes(),
        bundle.key.as_bytes(),
        bundle.ca.as_bytes(),
    )
}

/// Both Secrets as they should be; returns the controller's bundle.
pub async fn ensure(
    client: &kube::Client,
    opts: &StreamCertOptions,
    now: OffsetDateTime,
) -> Result<Bundle, Error> {
    // The serving certificate also names localhost.
    let bundle = certs::ensure_secret_for(client, &opts.managed(), &opts.dns_names(), now).await?;
    ensure_client(client, opts, &bundle, now).await?;
    Ok(bundle)
}

/// Re-checks both Secrets every `CHECK_EVERY` (every minute after a failure), swapping the
/// serving configuration when the certificate changed, until shutdown.
pub async fn keep_rotated(
    client: kube::Client,
    opts: StreamCertOptions,
    current: Arc<ArcSwap<ServerConfig>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut wait = CHECK_EVERY;
    loop {
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        let done = match ensure(&client, &opts, OffsetDateTime::now_utc()).await {
            Ok(b) => server_config(&b)
                .map(|c| current.store(c))
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        wait = match done {
            Ok(()) => CHECK_EVERY,
            Err(e) => {
                tracing::warn!(error = %e, "config-stream certificate check failed; retrying in 60s");
                Duration::from_secs(60)
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca_bundle(now: OffsetDateTime) -> Bundle {
        let (ca, ca_key) = certs::new_ca(now).expect("ca");
        let (cert, key) = certs::issue(&ca, &ca_key, &["c.ns.svc".to_string()], now).expect("cert");
        Bundle {
            ca,
            ca_key,
            cert,
            key,
        }
    }

    #[test]
    fn a_client_certificate_is_kept_until_it_is_due_or_the_ca_changes() {
        let now = OffsetDateTime::now_utc();
        let ca = ca_bundle(now);
        let (first, changed) = plan_client(None, &ca, now).expect("plan");
        assert!(changed);
        assert_eq!(first.issuer, first_cert_digest(&ca.ca));
        let (again, changed) = plan_client(Some(&first), &ca, now).expect("plan");
        assert!(!changed);
        assert_eq!(again, first);
        // 31 days before expiry: kept; 29: renewed.
        let late = now + certs::CERT_VALIDITY - time::Duration::days(31);
        assert!(!plan_client(Some(&first), &ca, late).expect("plan").1);
        let later = now + certs::CERT_VALIDITY - time::Duration::days(29);
        let (renewed, changed) = plan_client(Some(&first), &ca, later).expect("plan");
        assert!(changed && renewed.cert != first.cert);
        // A new CA: a new certificate from it.
        let other = ca_bundle(now);
        let (moved, changed) = plan_client(Some(&first), &other, now).expect("plan");
        assert!(changed && moved.issuer == first_cert_digest(&other.ca) && moved.ca == other.ca);
    }

    #[test]
    fn the_client_certificate_is_for_client_auth_from_the_ca() {
        let now = OffsetDateTime::now_utc();
        let ca = ca_bundle(now);
        let (b, _) = plan_client(None, &ca, now).expect("plan");
        let der = CertificateDer::from_pem_slice(b.cert.as_bytes()).expect("pem");
        let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("x509");
        let eku = cert
            .extended_key_usage()
            .expect("eku")
            .expect("eku present")
            .value;
        assert!(eku.client_auth && !eku.server_auth);
        let ca_der = CertificateDer::from_pem_slice(ca.ca.as_bytes()).expect("ca pem");
        let (_, ca_cert) = x509_parser::parse_x509_certificate(&ca_der).expect("ca x509");
        assert_eq!(cert.issuer(), ca_cert.subject());
        assert!(!b.key.is_empty() && !b.ca.contains("PRIVATE KEY"));
    }
}
