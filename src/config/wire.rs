//! The config stream's payload: the accepted policies of one snapshot and its version.
//!
//! The controller sends the inputs, not compiled state, so a proxy rebuilds the identical
//! snapshot with the same `Snapshot::build` as everyone else and checks that the version it
//! computes is the one it was sent. A mismatch (a proxy of another corsgate version that
//! compiles differently, a truncated body) is refused, and the proxy keeps what it serves.
//!
//! `secrets` carries the `kubernetes.io/tls` Secrets whose certificates serve (those of
//! accepted policies whose check passed), private keys included: the controller only fills
//! it on a mutually authenticated stream (`controller::stream_certs`). A document without
//! TLS policies has none, and reads as before.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::certs::{Secrets, TlsSecret};
use super::compile::PolicyId;
use super::snapshot::{PolicyInput, Snapshot};
use crate::policy::CorsPolicySpec;

/// `GET /v1/config` answers with this JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigDocument {
    /// The snapshot version the policies below build to.
    pub version: String,
    /// Only accepted policies: invalid and conflicting ones never reach proxies.
    pub policies: Vec<WirePolicy>,
    /// The Secrets the serving certificates come from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<WireSecret>,
}

/// One `kubernetes.io/tls` Secret: its PEM texts, base64 as in the Secret's `data`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireSecret {
    pub namespace: String,
    pub name: String,
    #[serde(rename = "tls.crt")]
    pub tls_crt: String,
    #[serde(rename = "tls.key")]
    pub tls_key: String,
}

impl std::fmt::Debug for WireSecret {
    /// Never the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WireSecret")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// One accepted policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WirePolicy {
    pub namespace: String,
    pub name: String,
    /// RFC 3339 creation time (kept so the rebuild orders policies as the controller did).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    pub spec: CorsPolicySpec,
}

/// Why a document cannot be served.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WireError {
    #[error("the config document is not valid JSON: {0}")]
    Json(String),
    #[error(
        "config version {sent} was sent but the policies build to {built}; keeping the current configuration"
    )]
    VersionMismatch { sent: String, built: String },
    #[error("policy {policy} was sent as accepted but does not build here: {why}")]
    Rejected { policy: String, why: String },
    #[error("secret {secret} was sent with {field} that is not base64")]
    Secret { secret: String, field: &'static str },
}

impl ConfigDocument {
    /// The document for `snapshot`, whose accepted policies come from `inputs` (the same
    /// list it was built from).
    pub fn of(snapshot: &Snapshot, inputs: &[PolicyInput]) -> ConfigDocument {
        ConfigDocument::of_with(snapshot, inputs, &Secrets::default())
    }

    /// [`ConfigDocument::of`] with the Secrets of the certificates that serve, taken from
    /// `secrets` (the ones `snapshot` was built with).
    pub fn of_with(
        snapshot: &Snapshot,
        inputs: &[PolicyInput],
        secrets: &Secrets,
    ) -> ConfigDocument {
        let mut policies: Vec<WirePolicy> = snapshot
            .policies
            .iter()
            .map(|p| WirePolicy {
                namespace: p.id.namespace.clone(),
                name: p.id.name.clone(),
                created: inputs
                    .iter()
                    .find(|i| i.id == p.id)
                    .and_then(|i| i.created.clone()),
                spec: p.spec.clone(),
            })
            .collect();
        policies.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        let b64 = |v: &[u8]| base64::engine::general_purpose::STANDARD.encode(v);
        let mut sent: Vec<WireSecret> = Vec::new();
        for report in snapshot.tls.iter().filter(|r| r.problem.is_none()) {
            let Some((ns, _)) = report.policy.split_once('/') else {
                continue;
            };
            let Some(s) = secrets.get(ns, &report.secret) else {
                continue;
            };
            if !sent
                .iter()
                .any(|w| w.namespace == s.namespace && w.name == s.name)
            {
                sent.push(WireSecret {
                    namespace: s.namespace.clone(),
                    name: s.name.clone(),
                    tls_crt: b64(&s.cert_pem),
                    tls_key: b64(&s.key_pem),
                });
            }
        }
        sent.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        ConfigDocument {
            version: snapshot.version.clone(),
            policies,
            secrets: sent,
        }
    }

    pub fn parse(body: &[u8]) -> Result<ConfigDocument, WireError> {
        serde_json::from_slice(body).map_err(|e| WireError::Json(e.to_string()))
    }

    /// Rebuilds the snapshot and checks it is the one that was sent.
    pub fn into_snapshot(self) -> Result<Snapshot, WireError> {
        self.into_snapshot_reusing(None)
    }

    /// [`ConfigDocument::into_snapshot`], reusing what `previous` (the snapshot serving)
    /// compiled for the policies that did not change.
    pub fn into_snapshot_reusing(self, previous: Option<&Snapshot>) -> Result<Snapshot, WireError> {
        let sent = self.version;
        let secrets = self
            .secrets
            .into_iter()
            .map(|w| {
                let decode = |field: &'static str, v: &str| {
                    base64::engine::general_purpose::STANDARD
                        .decode(v)
                        .map_err(|_| WireError::Secret {
                            secret: format!("{}/{}", w.namespace, w.name),
                            field,
                        })
                };
                Ok(TlsSecret {
                    cert_pem: decode("tls.crt", &w.tls_crt)?,
                    key_pem: decode("tls.key", &w.tls_key)?,
                    namespace: w.namespace,
                    name: w.name,
                    secret_type: super::certs::SECRET_TYPE_TLS.into(),
                })
            })
            .collect::<Result<Secrets, WireError>>()?;
        let inputs = self
            .policies
            .into_iter()
            .map(|p| PolicyInput {
                id: PolicyId::new(p.namespace, p.name),
                created: p.created,
                spec: p.spec,
                source: Some("config stream".into()),
            })
            .collect();
        let snap = Snapshot::build_reusing(inputs, &secrets, previous);
        if let Some(r) = snap.rejected.first() {
            return Err(WireError::Rejected {
                policy: r.policy.clone(),
                why: format!("{:?}", r.rejected),
            });
        }
        if snap.version != sent {
            return Err(WireError::VersionMismatch {
                sent,
                built: snap.version,
            });
        }
        Ok(snap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(ns: &str, name: &str, created: &str, yaml: &str) -> PolicyInput {
        PolicyInput {
            id: PolicyId::new(ns, name),
            created: Some(created.into()),
            spec: serde_saphyr::from_str(yaml).expect("spec"),
            source: None,
        }
    }

    #[test]
    fn round_trip_rebuilds_the_same_version_without_rejected_policies() {
        let inputs = vec![
            input(
                "a",
                "one",
                "2024-01-01T00:00:00Z",
                "{hosts: [x.example], upstream: {url: 'http://u:1'}}",
            ),
            input(
                "a",
                "two",
                "2024-01-02T00:00:00Z",
                "{hosts: [x.example], upstream: {url: 'http://u:2'}}",
            ),
            input(
                "b",
                "bad",
                "2024-01-02T00:00:00Z",
                "{hosts: ['x:1'], upstream: {url: 'http://u:2'}}",
            ),
            input(
                "b",
                "paths",
                "2024-01-03T00:00:00Z",
                "{hosts: [x.example], paths: [/v1], upstream: {service: {name: s, port: 80}}}",
            ),
        ];
        let snap = Snapshot::build(inputs.clone());
        assert_eq!(snap.rejected.len(), 2);
        let doc = ConfigDocument::of(&snap, &inputs);
        assert_eq!(doc.policies.len(), 2);
        let bytes = serde_json::to_vec(&doc).expect("json");
        let rebuilt = ConfigDocument::parse(&bytes)
            .and_then(ConfigDocument::into_snapshot)
            .expect("rebuild");
        assert_eq!(rebuilt.version, snap.version);
        assert_eq!(rebuilt.policies.len(), 2);
        assert!(
            rebuilt
                .route("x.example", "/v1/z")
                .is_some_and(|(_, p)| p.id.name == "paths")
        );
    }

    #[test]
    fn a_tampered_document_is_refused() {
        let inputs = vec![input(
            "a",
            "one",
            "2024-01-01T00:00:00Z",
            "{hosts: [x.example], upstream: {url: 'http://u:1'}}",
        )];
        let snap = Snapshot::build(inputs.clone());
        let mut doc = ConfigDocument::of(&snap, &inputs);
        doc.policies[0].spec.hosts = vec!["y.example".into()];
        assert!(matches!(
            doc.clone().into_snapshot(),
            Err(WireError::VersionMismatch { .. })
        ));
        doc.policies[0].spec.hosts = vec!["bad host".into()];
        assert!(matches!(
            doc.into_snapshot(),
            Err(WireError::Rejected { .. })
        ));
        assert!(matches!(
            ConfigDocument::parse(b"{\"version\":"),
            Err(WireError::Json(_))
        ));
    }
}
