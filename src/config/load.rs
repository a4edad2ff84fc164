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
    /// The source parsed but holds no policy while policies are serving: most likely a file
    /// caught between truncate and write, so it never replaces a good configuration.
    #[error(
        "{path}: no policies (empty file, no documents or no policy files) while {serving} are serving; keeping them; fix: write the policies again (write a new file and rename it over the old one), or restart the proxy to serve none"
    )]
    NoPolicies { path: String, serving: usize },
    /// The files changed during every read until the settle deadline.
    #[error(
        "{path}: the policy files kept changing while being read; keeping the last good configuration; fix: write a new file and rename it over the old one, so a reader never sees a half-written file"
    )]
    Unsettled { path: String },
}

impl LoadError {
    /// The `reason` label of `corsgate_config_reload_failures_total`: a closed set.
    pub fn reason(&self) -> &'static str {
        match self {
            LoadError::Read { .. } => "read",
            LoadError::NoFiles { .. } | LoadError::NoPolicies { .. } => "empty",
            LoadError::Document { .. } | LoadError::Invalid { .. } => "invalid",
            LoadError::Unsettled { .. } => "unsettled",
        }
    }
}

/// Every `reason` [`LoadError::reason`] can return.
pub const LOAD_FAILURE_REASONS: [&str; 4] = ["read", "empty", "invalid", "unsettled"];

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
        if !yaml || name.starts_with('.') {
            continue;
        }
        // A link whose target is missing (a ConfigMap swap half seen, a file renamed away
        // after the listing) is an error, never a silently smaller configuration.
        match std::fs::metadata(&p) {
            Ok(m) if m.is_file() => files.push(p),
            Ok(_) => {}
            Err(source) => {
                return Err(LoadError::Read {
                    path: p.display().to_string(),
                    source,
                });
            }
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

/// What identifies the state of the policy files without reading them: each candidate's
/// name and, through links, its length, modification time and inode. Equal before and after
/// a read: the read saw one state of the files (no write, rename or `..data` swap between).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    entries: Vec<(PathBuf, Option<FileState>)>,
}

/// Length, modification time and inode of one file (its target, through links).
type FileState = (u64, std::time::SystemTime, u64);

impl Fingerprint {
    /// The files under `path` as [`policy_files`] would list them (dangling links included).
    pub fn of(path: &Path) -> Fingerprint {
        let stat = |p: &Path| {
            std::fs::metadata(p).ok().map(|m| {
                (
                    m.len(),
                    m.modified().unwrap_or(std::time::UNIX_EPOCH),
                    inode(&m),
                )
            })
        };
        let mut entries = Vec::new();
        match std::fs::read_dir(path) {
            Ok(dir) => {
                for entry in dir.flatten() {
                    let name = entry.file_name().to_string_lossy().to_string();
                    if (name.ends_with(".yaml") || name.ends_with(".yml")) && !name.starts_with('.')
                    {
                        let p = entry.path();
                        entries.push((p.clone(), stat(&p)));
                    }
                }
                entries.sort();
            }
            Err(_) => entries.push((path.to_path_buf(), stat(path))),
        }
        Fingerprint { entries }
    }

    /// How long ago the newest file was modified (zero for a time in the future).
    pub fn quiet_for(&self, now: std::time::SystemTime) -> std::time::Duration {
        self.entries
            .iter()
            .filter_map(|(_, s)| s.map(|(_, modified, _)| modified))
            .map(|m| now.duration_since(m).unwrap_or_default())
            .min()
            .unwrap_or(std::time::Duration::MAX)
    }
}

/// The inode: a file replaced by rename (or through a new `..data` directory) has a new one,
/// even with the same length and modification time.
#[cfg(unix)]
fn inode(m: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(m)
}

#[cfg(not(unix))]
fn inode(_: &std::fs::Metadata) -> u64 {
    0
}

/// What policy files hold: CorsPolicies and Secrets.
#[derive(Debug, Default)]
pub struct Manifests {
    pub policies: Vec<PolicyInput>,
    pub secrets: Vec<TlsSecret>,
}

/// The objects of one YAML (or JSON) text: every document, and every item of a v1 `List`
/// (what `kubectl get -o yaml` prints), each with its location, such as
/// `f.yaml (document 2, item 1)`. Documents are numbered as they are read; an empty
/// document (`---` with nothing after it) holds no object and takes no number. A syntax
/// error ends the text there: the error names the document and the line.
pub fn objects(file: &str, text: &str) -> Result<Vec<(String, serde_json::Value)>, LoadError> {
    let mut out = Vec::new();
    let mut reader = std::io::Cursor::new(text.as_bytes());
    // YAML 1.2 booleans only (as before with serde_yaml): `name: on` is the string "on".
    let options = serde_saphyr::options! { strict_booleans: true };
    let docs = serde_saphyr::read_with_options::<_, serde_json::Value>(&mut reader, options);
    for (i, doc) in docs.enumerate() {
        let location = format!("{file} (document {})", i + 1);
        let value = match doc {
            Ok(serde_json::Value::Null) => continue,
            Ok(v) => v,
            Err(e) => {
                return Err(LoadError::Document {
                    location,
                    message: format!("not valid YAML: {e}; fix: correct the syntax at that line"),
                });
            }
        };
        if value.get("kind").and_then(|k| k.as_str()) == Some("List") {
            let items = value.get("items").and_then(|i| i.as_array());
            for (j, item) in items.into_iter().flatten().enumerate() {
                out.push((
                    format!("{file} (document {}, item {})", i + 1, j + 1),
                    item.clone(),
                ));
            }
            continue;
        }
        out.push((location, value));
    }
    Ok(out)
}

/// Parses the policies of one YAML text (several documents allowed); Secrets are skipped.
pub fn parse_documents(file: &str, text: &str, errors: &mut Vec<LoadError>) -> Vec<PolicyInput> {
    parse_manifests(file, text, errors).policies
}

/// Parses the policies and Secrets of one YAML text (several documents allowed).
pub fn parse_manifests(file: &str, text: &str, errors: &mut Vec<LoadError>) -> Manifests {
    let mut out = Manifests::default();
    match objects(file, text) {
        Ok(objects) => {
            for (location, value) in objects {
                parse_value(location, value, errors, &mut out);
            }
        }
        Err(e) => errors.push(e),
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
    value: serde_json::Value,
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
    value: serde_json::Value,
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
    load_snapshot_reusing(path, None)
}

/// [`load_snapshot`], reusing what `previous` (the snapshot serving) compiled for policies
/// that did not change (see [`Snapshot::build_reusing`]).
pub fn load_snapshot_reusing(
    path: &Path,
    previous: Option<&Snapshot>,
) -> Result<Snapshot, Vec<LoadError>> {
    let m = load_manifests(path)?;
    let secrets: Secrets = m.secrets.into_iter().collect();
    let snap = Snapshot::build_reusing(m.policies, &secrets, previous);
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
