//! Reading `CorsPolicy` documents from a YAML file or a directory of them (standalone mode,
//! `corsgate check`, `corsgate explain`), and the `kind: Secret` documents (type
//! kubernetes.io/tls, as `kubectl create secret tls --dry-run=client -o yaml` prints them)
//! their `spec.tls.secretName` refers to. Every problem names the file, the document
//! (1-based) and the field path; a load with any problem, a policy's Secret that cannot
//! serve included, yields no snapshot at all (all-or-nothing).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use base64::Engine as _;

use super::certs::{Secrets, TlsSecret};
use super::compile::PolicyId;
use super::snapshot::{PolicyInput, Rejected, Snapshot};
use crate::policy::limits::{DEFAULT_NAMESPACE, is_dns_label, is_dns_subdomain};
use crate::policy::{API_VERSION, CorsPolicySpec, KIND};

/// Why policies could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path}: no policy files (*.yaml, *.yml) found; fix: point --policies at a YAML file or a directory that holds some"
    )]
    NoFiles { path: String },
    #[error("{location}: {message}")]
    Document { location: String, message: String },
    #[error("{location}: policy {policy}: {error}")]
    Invalid {
        location: String,
        policy: String,
        error: String,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Document {
    #[allow(dead_code)]
    api_version: String,
    #[allow(dead_code)]
    kind: String,
    metadata: Metadata,
    spec: CorsPolicySpec,
    #[serde(default)]
    #[allow(dead_code)]
    status: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Metadata {
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    creation_timestamp: Option<String>,
}

/// The YAML files under `path`: the file itself, or the directory's `*.yaml`/`*.yml` files
/// (not hidden ones, so a ConfigMap volume's `..data` links are skipped), sorted by name.
pub fn policy_files(path: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let read_err = |source| LoadError::Read {
        path: path.display().to_string(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read_err)?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).map_err(read_err)? {
        let entry = entry.map_err(read_err)?;
        let p = entry.path();
        let name = entry.file_name().to_string_lossy().to_string();
        let yaml = name.ends_with(".yaml") || name.ends_with(".yml");
        if yaml && !name.starts_with('.') && std::fs::metadata(&p).is_ok_and(|m| m.is_file()) {
            files.push(p);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(LoadError::NoFiles {
            path: path.display().to_string(),
        });
    }
    Ok(files)
}

/// What policy files hold: CorsPolicies and Secrets.
#[derive(Debug, Default)]
pub struct Manifests {
    pub policies: Vec<PolicyInput>,
    pub secrets: Vec<TlsSecret>,
}

/// Parses the policies of one YAML text (several documents allowed); Secrets are skipped.
pub fn parse_documents(file: &str, text: &str, errors: &mut Vec<LoadError>) -> Vec<PolicyInput> {
    parse_manifests(file, text, errors).policies
}

/// Parses the policies and Secrets of one YAML text (several documents allowed).
pub fn parse_manifests(file: &str, text: &str, errors: &mut Vec<LoadError>) -> Manifests {
    let mut out = Manifests::default();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let location = format!("{file} (document {})", i + 1);
        let value = match serde_yaml::Value::deserialize(doc) {
            Ok(serde_yaml::Value::Null) => continue,
            Ok(v) => v,
            Err(e) => {
                errors.push(LoadError::Document {
                    location,
                    message: format!("not valid YAML: {e}; fix: correct the syntax at that line"),
                });
                break;
            }
        };
        // `kubectl get corspolicies -o yaml` prints a v1 List of them.
        if value.get("kind").and_then(|k| k.as_str()) == Some("List") {
            let items = value
                .get("items")
                .and_then(|i| i.as_sequence())
                .cloned()
                .unwrap_or_default();
            for (j, item) in items.into_iter().enumerate() {
                parse_value(
                    format!("{file} (document {}, item {})", i + 1, j + 1),
                    item,
                    errors,
                    &mut out,
                );
            }
            continue;
        }
        parse_value(location, value, errors, &mut out);
    }
    out
}

/// A `v1` Secret document; only what a TLS Secret needs, the rest ignored.
#[derive(Deserialize)]
struct SecretDocument {
    metadata: Metadata,
    #[serde(default, rename = "type")]
    secret_type: Option<String>,
    #[serde(default)]
    data: std::collections::BTreeMap<String, Option<String>>,
}

/// One Secret document: its `data` values decoded from base64.
fn parse_secret(
    location: &str,
    value: serde_yaml::Value,
    errors: &mut Vec<LoadError>,
) -> Option<TlsSecret> {
    let doc_err = |message: String| LoadError::Document {
        location: location.to_string(),
        message,
    };
    let doc: SecretDocument = match serde_path_to_error::deserialize(value) {
        Ok(d) => d,
        Err(e) => {
            errors.push(doc_err(format!(
                "{}: {}; fix: write the Secret as `kubectl create secret tls NAME --cert CERT --key KEY --dry-run=client -o yaml` prints it",
                e.path(),
                e.inner()
            )));
            return None;
        }
    };
    let namespace = doc
        .metadata
        .namespace
        .unwrap_or_else(|| DEFAULT_NAMESPACE.into());
    let mut decode = |key: &str| -> Option<Vec<u8>> {
        let text = doc.data.get(key).cloned().flatten().unwrap_or_default();
        let compact: String = text.split_whitespace().collect();
        match base64::engine::general_purpose::STANDARD.decode(compact) {
            Ok(b) => Some(b),
            Err(e) => {
                errors.push(doc_err(format!(
                    "data.{key}: not base64: {e}; fix: base64-encode the PEM file (base64 -w0 FILE), or let kubectl create secret tls write it"
                )));
                None
            }
        }
    };
    let cert_pem = decode("tls.crt");
    let key_pem = decode("tls.key");
    Some(TlsSecret {
        namespace,
        name: doc.metadata.name,
        secret_type: doc.secret_type.unwrap_or_default(),
        cert_pem: cert_pem?,
        key_pem: key_pem?,
    })
}

/// One CorsPolicy or Secret object (a document, or an item of a List).
fn parse_value(
    location: String,
    value: serde_yaml::Value,
    errors: &mut Vec<LoadError>,
    out: &mut Manifests,
) {
    let doc_err = |message: String| LoadError::Document {
        location: location.clone(),
        message,
    };
    let field = |k: &str| value.get(k).and_then(|v| v.as_str()).map(str::to_string);
    match (field("apiVersion").as_deref(), field("kind").as_deref()) {
        (Some(API_VERSION), Some(KIND)) => {}
        (Some("v1"), Some("Secret")) => {
            if let Some(s) = parse_secret(&location, value, errors) {
                out.secrets.push(s);
            }
            return;
        }
        (api, kind) => {
            errors.push(doc_err(format!(
                "apiVersion {:?} kind {:?} is not a CorsPolicy or a Secret; fix: set apiVersion: {API_VERSION} and kind: {KIND}, or move this document elsewhere",
                api.unwrap_or("<missing>"),
                kind.unwrap_or("<missing>")
            )));
            return;
        }
    }
    let doc: Document = match serde_path_to_error::deserialize(value) {
        Ok(d) => d,
        Err(e) => {
            let path = e.path().to_string();
            errors.push(doc_err(format!(
                "{path}: {}; fix: check the field's name and type against the CorsPolicy reference (README)",
                e.inner()
            )));
            return;
        }
    };
    let namespace = doc
        .metadata
        .namespace
        .unwrap_or_else(|| DEFAULT_NAMESPACE.into());
    let name_ok = is_dns_subdomain(&doc.metadata.name);
    if !name_ok || !is_dns_label(&namespace) {
        errors.push(doc_err(format!(
            "metadata: name {:?} / namespace {namespace:?} is not a valid Kubernetes name; fix: use lower-case letters, digits and '-'",
            doc.metadata.name
        )));
        return;
    }
    out.policies.push(PolicyInput {
        id: PolicyId::new(namespace, doc.metadata.name),
        created: doc.metadata.creation_timestamp,
        spec: doc.spec,
        source: Some(location),
    });
}

/// Reads every policy under `path`. `Err` holds every problem found.
pub fn load_inputs(path: &Path) -> Result<Vec<PolicyInput>, Vec<LoadError>> {
    load_manifests(path).map(|m| m.policies)
}

/// Reads every policy and Secret under `path`. `Err` holds every problem found; two Secret
/// documents with one namespace/name are one.
pub fn load_manifests(path: &Path) -> Result<Manifests, Vec<LoadError>> {
    let files = policy_files(path).map_err(|e| vec![e])?;
    let mut errors = Vec::new();
    let mut all = Manifests::default();
    for f in files {
        let name = f.display().to_string();
        match std::fs::read_to_string(&f) {
            Ok(text) => {
                let m = parse_manifests(&name, &text, &mut errors);
                all.policies.extend(m.policies);
                for s in m.secrets {
                    if all
                        .secrets
                        .iter()
                        .any(|o| o.namespace == s.namespace && o.name == s.name)
                    {
                        errors.push(LoadError::Document {
                            location: name.clone(),
                            message: format!(
                                "secret {}/{} is defined twice; fix: keep one Secret document per namespace/name",
                                s.namespace, s.name
                            ),
                        });
                    } else {
                        all.secrets.push(s);
                    }
                }
            }
            Err(source) => errors.push(LoadError::Read { path: name, source }),
        }
    }
    if errors.is_empty() {
        Ok(all)
    } else {
        Err(errors)
    }
}

/// Loads and compiles everything under `path`, all or nothing: any invalid document or
/// policy, or a policy whose `spec.tls` Secret cannot serve, is an error and no snapshot is
/// returned. Conflicts are not errors: the snapshot reports them and serves the winners.
pub fn load_snapshot(path: &Path) -> Result<Snapshot, Vec<LoadError>> {
    let m = load_manifests(path)?;
    let secrets: Secrets = m.secrets.into_iter().collect();
    let snap = Snapshot::build_with(m.policies, &secrets);
    let errors: Vec<LoadError> = snap
        .rejected
        .iter()
        .filter_map(|r| match &r.rejected {
            Rejected::InvalidSpec { errors } => {
                Some(errors.iter().map(move |e| LoadError::Invalid {
                    location: r.source.clone().unwrap_or_default(),
                    policy: r.policy.clone(),
                    error: e.clone(),
                }))
            }
            Rejected::Conflicted { .. } => None,
        })
        .flatten()
        .chain(snap.tls_problems().map(|(r, p)| LoadError::Invalid {
            location: r.source.clone().unwrap_or_default(),
            policy: r.policy.clone(),
            error: p.to_string(),
        }))
        .collect();
    if errors.is_empty() {
        Ok(snap)
    } else {
        Err(errors)
    }
}
