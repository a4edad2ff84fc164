//! The webhook's certificates without cert-manager: a CA (10 years) and a serving
//! certificate (1 year, SANs `SERVICE.NAMESPACE.svc` and `SERVICE.NAMESPACE.svc.cluster.local`)
//! generated with rcgen, kept in one Secret (`ca.crt`, `ca.key`, `tls.crt`, `tls.key`), and
//! the ValidatingWebhookConfiguration's caBundle patched to the CA.
//!
//! Rotation (`plan`, pure): the serving certificate is renewed when less than 30 days are
//! left or its names differ from what is wanted; the CA when less than a year is left, and
//! then the old CA stays in `ca.crt` (and so in the caBundle) after the new one until it
//! expires, so API servers that still hold the old bundle keep trusting the webhook.
//!
//! Several replicas: each one reads the Secret first; creation and renewal are written with
//! optimistic concurrency (create / replace at a resourceVersion), and the loser of a race
//! reads and uses the winner's certificates.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls_pki_types::pem::SectionKind;
use time::OffsetDateTime;
use tokio::sync::watch;

use super::Error;

pub const CA_VALIDITY: time::Duration = time::Duration::days(3650);
pub const CERT_VALIDITY: time::Duration = time::Duration::days(365);
pub const CA_RENEW_BEFORE: time::Duration = time::Duration::days(365);
pub const CERT_RENEW_BEFORE: time::Duration = time::Duration::days(30);
/// How often each replica re-reads the Secret, renews when due and re-patches the caBundle.
pub const CHECK_EVERY: Duration = Duration::from_secs(3600);

/// Where the managed certificates live.
#[derive(Debug, Clone)]
pub struct ManagedOptions {
    /// The Service in front of the webhook: names the certificate's SANs.
    pub service: String,
    /// The namespace of the Service and the Secret.
    pub namespace: String,
    pub secret: String,
    /// The ValidatingWebhookConfiguration whose caBundle is kept patched.
    pub config_name: String,
}

impl ManagedOptions {
    /// The serving certificate's DNS names.
    pub fn dns_names(&self) -> Vec<String> {
        let base = format!("{}.{}.svc", self.service, self.namespace);
        vec![base.clone(), format!("{base}.cluster.local")]
    }
}

/// The PEM texts kept in the Secret. `ca` may hold several certificates, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    pub ca: String,
    pub ca_key: String,
    pub cert: String,
    pub key: String,
}

const CA_CRT: &str = "ca.crt";
const CA_KEY: &str = "ca.key";
const TLS_CRT: &str = "tls.crt";
const TLS_KEY: &str = "tls.key";

fn generate(e: rcgen::Error) -> Error {
    Error::Generate(e)
}

/// A new self-signed CA: (certificate PEM, key PEM).
pub fn new_ca(now: OffsetDateTime) -> Result<(String, String), Error> {
    let key = KeyPair::generate().map_err(generate)?;
    let mut p = CertificateParams::default();
    p.distinguished_name
        .push(DnType::CommonName, "corsgate webhook CA");
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = now - time::Duration::hours(1);
    p.not_after = now + CA_VALIDITY;
    let cert = p.self_signed(&key).map_err(generate)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A serving certificate for `names`, signed by the first CA in `ca_pem`.
pub fn issue(
    ca_pem: &str,
    ca_key_pem: &str,
    names: &[String],
    now: OffsetDateTime,
) -> Result<(String, String), Error> {
    let cn = names.first().cloned().unwrap_or_default();
    issue_for(
        ca_pem,
        ca_key_pem,
        names,
        &cn,
        ExtendedKeyUsagePurpose::ServerAuth,
        now,
    )
}

/// A certificate (1 year) for `names` with common name `cn` and one extended key usage
/// (`ServerAuth`, or `ClientAuth` for the config stream's proxies), signed by the first CA
/// in `ca_pem`: (certificate PEM, key PEM).
pub fn issue_for(
    ca_pem: &str,
    ca_key_pem: &str,
    names: &[String],
    cn: &str,
    usage: ExtendedKeyUsagePurpose,
    now: OffsetDateTime,
) -> Result<(String, String), Error> {
    let ca_key = KeyPair::from_pem(ca_key_pem).map_err(generate)?;
    let issuer = Issuer::from_ca_cert_pem(ca_pem, ca_key).map_err(generate)?;
    let key = KeyPair::generate().map_err(generate)?;
    let mut p = CertificateParams::new(names.to_vec()).map_err(generate)?;
    if !cn.is_empty() {
        p.distinguished_name.push(DnType::CommonName, cn);
    }
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    if usage == ExtendedKeyUsagePurpose::ServerAuth {
        p.key_usages.push(KeyUsagePurpose::KeyEncipherment);
    }
    p.extended_key_usages = vec![usage];
    p.not_before = now - time::Duration::hours(1);
    p.not_after = now + CERT_VALIDITY;
    let cert = p.signed_by(&key, &issuer).map_err(generate)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// What a certificate PEM says: expiry and DNS names of each certificate in it.
pub struct Parsed {
    pub not_after: OffsetDateTime,
    pub dns_names: Vec<String>,
}

/// Parses every certificate in `pem`, in order.
pub fn parse(pem: &str) -> Result<Vec<Parsed>, String> {
    let mut out = Vec::new();
    for block in x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes()) {
        let block = block.map_err(|e| format!("not PEM: {e}"))?;
        let cert = block
            .parse_x509()
            .map_err(|e| format!("not an X.509 certificate: {e}"))?;
        let not_after = OffsetDateTime::from_unix_timestamp(cert.validity().not_after.timestamp())
            .map_err(|e| format!("bad expiry: {e}"))?;
        let mut dns_names = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for n in &san.value.general_names {
                if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                    dns_names.push((*d).to_string());
                }
            }
        }
        out.push(Parsed {
            not_after,
            dns_names,
        });
    }
    if out.is_empty() {
        return Err("no certificate found".into());
    }
    Ok(out)
}

/// Why `plan` renewed something, for logs and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Renewal {
    Unchanged,
    /// No usable Secret content: everything new.
    Created(String),
    /// A new CA (and so a new serving certificate).
    Ca(String),
    /// A new serving certificate from the same CA.
    Cert(String),
}

/// Decides what the Secret should hold at `now`: the current bundle when it is good,
/// otherwise one with what is due renewed.
pub fn plan(
    current: Option<&Bundle>,
    names: &[String],
    now: OffsetDateTime,
) -> Result<(Bundle, Renewal), Error> {
    let fresh = |why: String| -> Result<(Bundle, Renewal), Error> {
        let (ca, ca_key) = new_ca(now)?;
        let (cert, key) = issue(&ca, &ca_key, names, now)?;
        Ok((
            Bundle {
                ca,
                ca_key,
                cert,
                key,
            },
            Renewal::Created(why),
        ))
    };
    let Some(cur) = current else {
        return fresh("no certificates yet".into());
    };
    let (cas, certs) = match (parse(&cur.ca), parse(&cur.cert)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) => return fresh(format!("{CA_CRT} unreadable: {e}")),
        (_, Err(e)) => return fresh(format!("{TLS_CRT} unreadable: {e}")),
    };
    if KeyPair::from_pem(&cur.ca_key).is_err() || KeyPair::from_pem(&cur.key).is_err() {
        return fresh("a key is unreadable".into());
    }
    let ca_left = cas[0].not_after - now;
    if ca_left < CA_RENEW_BEFORE {
        let (new_ca, ca_key) = new_ca(now)?;
        let (cert, key) = issue(&new_ca, &ca_key, names, now)?;
        // The old CA stays trusted while it is valid: API servers may hold the old bundle.
        let mut ca = new_ca;
        if ca_left > time::Duration::ZERO {
            ca.push_str(first_pem(&cur.ca));
        }
        return Ok((
            Bundle {
                ca,
                ca_key,
                cert,
                key,
            },
            Renewal::Ca(format!("the CA expires in {} days", ca_left.whole_days())),
        ));
    }
    let cert_left = certs[0].not_after - now;
    let mut have: Vec<&String> = certs[0].dns_names.iter().collect();
    let mut want: Vec<&String> = names.iter().collect();
    have.sort();
    want.sort();
    let why = if cert_left < CERT_RENEW_BEFORE {
        format!(
            "the serving certificate expires in {} days",
            cert_left.whole_days()
        )
    } else if have != want {
        format!("the serving certificate names {have:?}, wanted {want:?}")
    } else {
        // Drop CAs that expired since a CA rotation: the bundle only carries valid ones.
        let valid = cas.iter().filter(|c| c.not_after > now).count();
        if valid < cas.len() {
            let kept = pem_blocks(&cur.ca)
                .into_iter()
                .take(valid)
                .collect::<String>();
            let mut b = cur.clone();
            b.ca = kept;
            return Ok((b, Renewal::Ca("an expired old CA left the bundle".into())));
        }
        return Ok((cur.clone(), Renewal::Unchanged));
    };
    let (cert, key) = issue(&cur.ca, &cur.ca_key, names, now)?;
    Ok((
        Bundle {
            ca: cur.ca.clone(),
            ca_key: cur.ca_key.clone(),
            cert,
            key,
        },
        Renewal::Cert(why),
    ))
}

/// The certificate PEM blocks of a text, as written (each up to and including its END
/// line), found by `rustls-pki-types`' PEM reader. `from_buf` reads a `&[u8]` line by line
/// and advances it past each section, so the text of a section is what it consumed. A
/// section that does not decode ends the list: `pem` was already parsed by `parse`.
fn pem_blocks(pem: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = pem.as_bytes();
    loop {
        let start = pem.len() - rest.len();
        match rustls_pki_types::pem::from_buf(&mut rest) {
            Ok(Some((kind, _))) => {
                let end = pem.len() - rest.len();
                if kind == SectionKind::Certificate
                    && let Some(block) = pem.get(start..end)
                {
                    out.push(block);
                }
            }
            Ok(None) | Err(_) => return out,
        }
    }
}

fn first_pem(pem: &str) -> &str {
    pem_blocks(pem).into_iter().next().unwrap_or_default()
}

/// The UTF-8 text of `data[key]` of a Secret.
pub fn secret_text(secret: &Secret, key: &str) -> Option<String> {
    let b = secret.data.as_ref()?.get(key)?;
    String::from_utf8(b.0.clone()).ok()
}

/// A `kubernetes.io/tls` Secret the controller manages: `data` as PEM texts, labelled
/// managed-by corsgate-controller, at `resource_version` (None: to be created).
pub fn managed_secret(
    namespace: &str,
    name: &str,
    data: &[(&str, &str)],
    resource_version: Option<String>,
) -> Secret {
    let mut s = Secret {
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        type_: Some("kubernetes.io/tls".into()),
        ..Secret::default()
    };
    s.metadata.name = Some(name.to_string());
    s.metadata.namespace = Some(namespace.to_string());
    s.metadata.resource_version = resource_version;
    s.metadata.labels = Some(BTreeMap::from([(
        "app.kubernetes.io/managed-by".to_string(),
        "corsgate-controller".to_string(),
    )]));
    s
}

fn bundle_of(secret: &Secret) -> Option<Bundle> {
    let text = |k: &str| secret_text(secret, k);
    Some(Bundle {
        ca: text(CA_CRT)?,
        ca_key: text(CA_KEY)?,
        cert: text(TLS_CRT)?,
        key: text(TLS_KEY)?,
    })
}

fn secret_of(opts: &ManagedOptions, b: &Bundle, resource_version: Option<String>) -> Secret {
    managed_secret(
        &opts.namespace,
        &opts.secret,
        &[
            (CA_CRT, &b.ca),
            (CA_KEY, &b.ca_key),
            (TLS_CRT, &b.cert),
            (TLS_KEY, &b.key),
        ],
        resource_version,
    )
}

pub(crate) fn kube_err(action: String) -> impl FnOnce(kube::Error) -> Error {
    move |source| Error::Kube {
        action,
        source: Box::new(source),
    }
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// Writes a managed Secret with optimistic concurrency: created when `existing` is None,
/// else replaced at the resourceVersion read. `secret(rv)` builds the object to write. A 409
/// (another replica wrote first) is the caller's to handle.
pub async fn write_secret(
    api: &Api<Secret>,
    existing: Option<&Secret>,
    secret: impl Fn(Option<String>) -> Secret,
) -> Result<Secret, kube::Error> {
    match existing {
        None => api.create(&PostParams::default(), &secret(None)).await,
        Some(s) => {
            let name = s.metadata.name.clone().unwrap_or_default();
            api.replace(
                &name,
                &PostParams::default(),
                &secret(s.metadata.resource_version.clone()),
            )
            .await
        }
    }
}

/// Reads the Secret, renews what is due, writes it back when it changed (create, or replace
/// at the resourceVersion read), and returns the bundle to serve. A lost race returns the
/// winner's bundle.
pub async fn ensure_secret(
    client: &kube::Client,
    opts: &ManagedOptions,
    now: OffsetDateTime,
) -> Result<Bundle, Error> {
    ensure_secret_for(client, opts, &opts.dns_names(), now).await
}

/// [`ensure_secret`] with a serving certificate for `names`.
pub async fn ensure_secret_for(
    client: &kube::Client,
    opts: &ManagedOptions,
    names: &[String],
    now: OffsetDateTime,
) -> Result<Bundle, Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &opts.namespace);
    let where_ = format!("{}/{}", opts.namespace, opts.secret);
    let existing = api
        .get_opt(&opts.secret)
        .await
        .map_err(kube_err(format!("reading Secret {where_}")))?;
    let current = existing.as_ref().and_then(bundle_of);
    let (bundle, renewal) = plan(current.as_ref(), names, now)?;
    if renewal == Renewal::Unchanged {
        return Ok(bundle);
    }
    tracing::info!(secret = %where_, renewal = ?renewal, "writing managed certificates");
    let result = write_secret(&api, existing.as_ref(), |rv| secret_of(opts, &bundle, rv)).await;
    match result {
        Ok(_) => Ok(bundle),
        // Another replica wrote first (409 AlreadyExists or Conflict): use what it wrote.
        Err(e) if is_status(&e, 409) => {
            let s = api
                .get(&opts.secret)
                .await
                .map_err(kube_err(format!("reading Secret {where_}")))?;
            bundle_of(&s).ok_or_else(|| Error::Secret {
                secret: where_,
                message: format!(
                    "another writer left it without {CA_CRT}, {CA_KEY}, {TLS_CRT} and {TLS_KEY}"
                ),
            })
        }
        Err(e) => Err(kube_err(format!("writing Secret {where_}"))(e)),
    }
}

/// Sets the caBundle of every webhook in the ValidatingWebhookConfiguration `name` to `ca`
/// (strategic merge by webhook name); returns whether a patch was sent. Nothing is sent when
/// every caBundle is already right.
pub async fn patch_ca_bundle(client: &kube::Client, name: &str, ca: &str) -> Result<bool, Error> {
    let api: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let vwc = api.get(name).await.map_err(kube_err(format!(
        "reading ValidatingWebhookConfiguration {name}"
    )))?;
    let want = ByteString(ca.as_bytes().to_vec());
    let stale: Vec<&str> = vwc
        .webhooks
        .iter()
        .flatten()
        .filter(|w| w.client_config.ca_bundle.as_ref() != Some(&want))
        .map(|w| w.name.as_str())
        .collect();
    if stale.is_empty() {
        return Ok(false);
    }
    let patch = serde_json::json!({
        "webhooks": stale.iter().map(|n| serde_json::json!({
            "name": n,
            "clientConfig": {"caBundle": want},
        })).collect::<Vec<_>>()
    });
    api.patch(name, &PatchParams::default(), &Patch::Strategic(patch))
        .await
        .map_err(kube_err(format!(
            "patching the caBundle of ValidatingWebhookConfiguration {name}"
        )))?;
    tracing::info!(config = name, webhooks = ?stale, "caBundle patched");
    Ok(true)
}

/// One rotation check: renew what is due, swap the serving config, patch the caBundle.
pub async fn rotate_once(
    client: &kube::Client,
    opts: &ManagedOptions,
    current: &ArcSwap<ServerConfig>,
    now: OffsetDateTime,
) -> Result<(), Error> {
    let bundle = ensure_secret(client, opts, now).await?;
    current.store(super::server::server_config(
        bundle.cert.as_bytes(),
        bundle.key.as_bytes(),
    )?);
    patch_ca_bundle(client, &opts.config_name, &bundle.ca).await?;
    Ok(())
}

/// Checks every `CHECK_EVERY` (every minute after a failure) until shutdown.
pub async fn keep_rotated(
    client: kube::Client,
    opts: ManagedOptions,
    current: Arc<ArcSwap<ServerConfig>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut wait = Duration::from_secs(60);
    loop {
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        wait = match rotate_once(&client, &opts, &current, OffsetDateTime::now_utc()).await {
            Ok(()) => CHECK_EVERY,
            Err(e) => {
                tracing::warn!(error = %e, "webhook certificate check failed; retrying in 60s");
                Duration::from_secs(60)
            }
        };
    }
}
