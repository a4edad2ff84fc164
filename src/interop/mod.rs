//! `corsgate import` and `corsgate export`: CorsPolicy from and to the CORS dialects of the
//! ecosystem (ingress-nginx annotations, Gateway API's HTTPCORSFilter, CloudFront response
//! headers policies), with a report of every semantic difference (issue 16).
//!
//! Owns: parsing those formats, the mapping both ways, the report. Must not touch: the engine
//! (`cors`), validation rules (`policy::validate`) or the proxy; it only builds `policy` types
//! and asks `policy::validate` whether the result is accepted.

pub mod cloudfront;
mod errors;
pub mod gateway_api;
pub mod ingress_nginx;
pub mod report;

use crate::policy::limits::DEFAULT_NAMESPACE;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::Deserialize;

use crate::policy::{self, CorsPolicy, CorsPolicySpec, Mode, Upstream};
pub use report::{Difference, Report, Severity};

/// The dialects corsgate reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    IngressNginx,
    GatewayApi,
    Cloudfront,
}

/// Why an input could not be converted (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum InteropError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{location}: {message}")]
    Invalid { location: String, message: String },
    /// A CorsPolicy input `corsgate check` would refuse (the message names file and document).
    #[error("{0}")]
    Policy(String),
}

impl InteropError {
    pub fn invalid(location: impl Into<String>, message: impl Into<String>) -> InteropError {
        InteropError::Invalid {
            location: location.into(),
            message: message.into(),
        }
    }
}

/// What `corsgate import` adds that the source does not say.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The imported policies' mode. docs/migrating.md: Shadow first, compare, then Enforce.
    pub mode: Mode,
    /// Hosts for sources without any (CloudFront); for Kubernetes sources they replace a
    /// rule without a host.
    pub hosts: Vec<String>,
    /// The upstream for sources without one (CloudFront); for Kubernetes sources, when
    /// given, it replaces every imported policy's upstream (e.g. the ingress-nginx controller
    /// Service during Shadow, docs/migrating.md), which also covers backends corsgate cannot
    /// name (a named Service port, a non-Service backendRef).
    pub upstream: Option<String>,
    /// The namespace for sources without one (CloudFront). Default "default".
    pub namespace: Option<String>,
}

/// One imported policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Imported {
    pub namespace: String,
    pub name: String,
    pub spec: CorsPolicySpec,
    /// The source object it came from (`Ingress shop/storefront`), for errors on values taken
    /// from it; empty for CorsPolicy inputs of `export`.
    pub source: String,
}

/// One input file's text.
pub struct Input {
    pub name: String,
    pub text: String,
}

/// Reads the files; `-` is stdin.
pub fn read_inputs(paths: &[PathBuf]) -> Result<Vec<Input>, InteropError> {
    let mut out = Vec::new();
    for p in paths {
        let name = p.display().to_string();
        let text = if p == Path::new("-") {
            std::io::read_to_string(std::io::stdin())
        } else {
            std::fs::read_to_string(p)
        };
        match text {
            Ok(text) => out.push(Input { name, text }),
            Err(source) => return Err(InteropError::Read { path: name, source }),
        }
    }
    Ok(out)
}

/// The objects of a YAML (or JSON) text, as `config::load::objects` splits them.
pub fn objects(input: &Input) -> Result<Vec<(String, serde_json::Value)>, InteropError> {
    crate::config::load::objects(&input.name, &input.text).map_err(|e| match e {
        crate::config::LoadError::Document { location, message } => {
            InteropError::invalid(location, message)
        }
        other => InteropError::invalid(input.name.clone(), other.to_string()),
    })
}

/// Deserializes a value, naming the failing field in the error.
pub(crate) fn typed<T: serde::de::DeserializeOwned>(
    location: &str,
    object: &str,
    value: serde_json::Value,
) -> Result<T, InteropError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        InteropError::invalid(
            location,
            format!(
                "{object}: {}: {}; fix: correct the field's type",
                e.path(),
                e.inner()
            ),
        )
    })
}

/// Converts the inputs of one format.
pub fn import(
    format: Format,
    inputs: &[Input],
    opts: &ImportOptions,
) -> Result<(Vec<Imported>, Report), InteropError> {
    opts.check()?;
    let mut report = Report::default();
    let mut out = Vec::new();
    for input in inputs {
        let policies = match format {
            Format::IngressNginx => ingress_nginx::import(input, opts, &mut report),
            Format::GatewayApi => gateway_api::import(input, opts, &mut report),
            Format::Cloudfront => cloudfront::import(input, opts, &mut report),
        }
        .map_err(|e| errors::with_format_hint(e, format, inputs))?;
        out.extend(policies);
    }
    if out.is_empty() {
        return Err(errors::nothing_imported(format, inputs, &report));
    }
    if let (Some(u), true) = (&opts.upstream, format != Format::Cloudfront) {
        for p in &out {
            report.info(
                &format!("CorsPolicy {}/{}", p.namespace, p.name),
                "spec.upstream",
                "upstream-from-flag",
                format!("--upstream {u} replaces the backend of {} for this policy (every imported policy takes --upstream when it is given)", p.source),
            );
        }
    }
    if opts.mode == Mode::Shadow {
        for p in &out {
            report.info(
                &format!("CorsPolicy {}/{}", p.namespace, p.name),
                "spec.mode",
                "shadow-mode",
                "imported in Shadow mode: the edge routes and counts what it would reject (status.shadow) but forwards untouched and adds no CORS headers; while the source edge still adds them, put corsgate in front of it (--upstream URL of that edge, e.g. the ingress-nginx controller Service; corsgate preserves Host), then point upstream at the backend when switching to Enforce (docs/migrating.md)",
            );
        }
    }
    for p in &out {
        if let Err(errors) = policy::validate(&p.spec) {
            return Err(errors::invalid_import(format, p, &errors));
        }
    }
    Ok((out, report))
}

/// Policies as multi-document YAML (`kubectl apply -f` and `corsgate check` take it).
pub fn render_policies(policies: &[Imported]) -> Result<String, InteropError> {
    let mut out = String::new();
    for p in policies {
        let mut obj = CorsPolicy::new(&p.name, p.spec.clone());
        obj.metadata.namespace = Some(p.namespace.clone());
        let yaml = serde_saphyr::to_string(&obj).map_err(|e| {
            InteropError::invalid(
                format!("CorsPolicy {}/{}", p.namespace, p.name),
                e.to_string(),
            )
        })?;
        out.push_str("---\n");
        out.push_str(&yaml);
    }
    Ok(out)
}

/// CorsPolicy inputs of `corsgate export`, with their presets expanded.
pub fn export_inputs(inputs: &[Input]) -> Result<Vec<Imported>, InteropError> {
    let mut errors = Vec::new();
    let mut out = Vec::new();
    for input in inputs {
        for p in crate::config::load::parse_documents(&input.name, &input.text, &mut errors) {
            if let Err(errs) = policy::validate(&p.spec) {
                let texts: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
                return Err(InteropError::invalid(
                    p.source.unwrap_or_else(|| input.name.clone()),
                    format!("policy {}: {}", p.id, texts.join("; ")),
                ));
            }
            out.push(Imported {
                namespace: p.id.namespace,
                name: p.id.name,
                spec: p.spec,
                source: String::new(),
            });
        }
    }
    if !errors.is_empty() {
        let texts: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        return Err(InteropError::Policy(texts.join("\nerror: ")));
    }
    Ok(out)
}

/// Converts CorsPolicy files to the target format: the text for stdout and the report.
pub fn export(format: Format, inputs: &[Input]) -> Result<(String, Report), InteropError> {
    let policies = export_inputs(inputs)?;
    let mut report = Report::default();
    let text = match format {
        Format::IngressNginx => ingress_nginx::export(&policies, &mut report)?,
        Format::GatewayApi => gateway_api::export(&policies, &mut report)?,
        Format::Cloudfront => cloudfront::export(&policies, &mut report)?,
    };
    Ok((text, report))
}

/// The inputs of `corsgate import`: files, `-`, and for cloudfront a managed policy's name
/// or ID in place of a file (when no such file exists).
pub fn read_import_inputs(format: Format, paths: &[PathBuf]) -> Result<Vec<Input>, InteropError> {
    let mut out = Vec::new();
    for p in paths {
        let s = p.display().to_string();
        if format == Format::Cloudfront
            && p != Path::new("-")
            && !p.exists()
            && cloudfront::is_managed_reference(&s)
        {
            out.push(Input {
                name: s.clone(),
                text: s,
            });
        } else {
            out.extend(read_inputs(std::slice::from_ref(p))?);
        }
    }
    Ok(out)
}

/// `corsgate import FORMAT FILE...`: YAML on stdout, the report on stderr.
pub fn run_import(format: Format, paths: &[PathBuf], opts: &ImportOptions) -> ExitCode {
    let result = read_import_inputs(format, paths)
        .and_then(|inputs| import(format, &inputs, opts))
        .and_then(|(policies, report)| Ok((render_policies(&policies)?, report)));
    finish(result)
}

/// `corsgate export FORMAT FILE...`: the target's YAML or JSON on stdout, the report on stderr.
pub fn run_export(format: Format, paths: &[PathBuf]) -> ExitCode {
    finish(read_inputs(paths).and_then(|inputs| export(format, &inputs)))
}

fn finish(result: Result<(String, Report), InteropError>) -> ExitCode {
    match result {
        Ok((text, report)) => {
            print!("{text}");
            eprint!("{}", report.render());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

// ---- shared pieces of the mappings ----

/// The highest Access-Control-Max-Age Chromium honours (Firefox: 86400).
pub const BROWSER_MAX_AGE: i32 = policy::warnings::CHROMIUM_MAX_AGE;
/// corsgate's own limit (`policy::limits::MAX_AGE_SECONDS`), which is Firefox's cap.
pub const CORSGATE_MAX_AGE: i32 = policy::warnings::FIREFOX_MAX_AGE;

/// A source's max-age for corsgate: corsgate refuses more than 86400 s (Firefox's cap), so
/// such a value becomes 86400; from 7201 to 86400 it is kept, with a warning that Chromium
/// caps it at 7200 (browsers cap; nothing breaks).
pub(crate) fn max_age(
    v: i64,
    object: &str,
    field: &str,
    origin_of_value: &str,
    report: &mut Report,
) -> Option<i32> {
    if v < 0 {
        report.warning(
            object,
            field,
            "max-age-negative",
            format!("{v} {origin_of_value} is negative; browsers ignore it and cache for 5 s; imported without maxAgeSeconds (the same 5 s)"),
        );
        return None;
    }
    if v > i64::from(CORSGATE_MAX_AGE) {
        report.warning(
            object,
            field,
            "max-age-capped",
            format!(
                "{v} s {origin_of_value} is above corsgate's limit of {CORSGATE_MAX_AGE} s; imported as {CORSGATE_MAX_AGE}; browsers never honoured more (Firefox caps Access-Control-Max-Age at {CORSGATE_MAX_AGE} s, Chromium at {BROWSER_MAX_AGE} s)"
            ),
        );
        return Some(CORSGATE_MAX_AGE);
    }
    if v > i64::from(BROWSER_MAX_AGE) {
        report.warning(
            object,
            field,
            "max-age-above-chromium",
            format!(
                "{v} s {origin_of_value} is kept; Chromium caps Access-Control-Max-Age at {BROWSER_MAX_AGE} s (Firefox at {CORSGATE_MAX_AGE} s), so Chromium users re-send the preflight sooner, as they did before"
            ),
        );
    }
    i32::try_from(v).ok()
}

/// Methods a browser can send (Fetch forbids CONNECT, TRACE and TRACK): what "any method"
/// means to a page, written for an edge that takes no "*" (ingress-nginx).
pub const BROWSER_METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// A Kubernetes object name from any text: lower case, [a-z0-9-], at most 63 characters.
pub fn object_name(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    let mut out: String = out.chars().take(63).collect();
    while out.ends_with('-') {
        out.pop();
    }
    if out.is_empty() {
        "imported".into()
    } else {
        out
    }
}

/// Strips a default port (`https://a:443`): browsers never send one in Origin, and Gateway API
/// says it is assumed.
pub(crate) fn without_default_port(o: &str) -> String {
    for (scheme, port) in [("http://", ":80"), ("https://", ":443")] {
        if o.len() > scheme.len() + port.len()
            && o[..scheme.len()].eq_ignore_ascii_case(scheme)
            && o.ends_with(port)
        {
            return o[..o.len() - port.len()].to_string();
        }
    }
    o.to_string()
}

/// Regex-escapes a literal for `allowOriginPatterns`.
pub(crate) fn escape(s: &str) -> String {
    regex::escape(s)
}

/// An object's `metadata`.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct Meta {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub annotations: std::collections::BTreeMap<String, String>,
}

/// Kubernetes paths (`Prefix`, `PathPrefix`) as corsgate path prefixes: "/" is every path.
/// Both are segment-aware prefixes, as corsgate's are; a trailing slash is dropped ("/v1/"
/// matches /v1 and /v1/x in Kubernetes too).
pub(crate) fn prefix(p: &str) -> Option<String> {
    let t = p.trim_end_matches('/');
    if t.is_empty() {
        None
    } else {
        Some(t.to_string())
    }
}

/// Hosts and paths of one policy: paths empty is every path.
pub(crate) fn with_paths(paths: &[Option<String>]) -> Vec<String> {
    if paths.iter().any(Option::is_none) {
        return Vec::new();
    }
    let mut v: Vec<String> = paths.iter().flatten().cloned().collect();
    v.sort();
    v.dedup();
    v
}

/// Where a source's requests go.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Target {
    Service(String, i32),
    Url(String),
}

impl Target {
    pub(crate) fn upstream(self) -> Upstream {
        match self {
            Target::Service(name, port) => Upstream {
                service: Some(policy::ServiceRef { name, port }),
                ..Upstream::default()
            },
            Target::Url(u) => Upstream {
                url: Some(u),
                ..Upstream::default()
            },
        }
    }
}

/// The object's name when its kind is `want`; otherwise an info line (`key`) and None.
pub(crate) fn of_kind(
    location: &str,
    value: &serde_json::Value,
    want: &str,
    key: &'static str,
    report: &mut Report,
) -> Option<String> {
    let kind = value
        .get("kind")
        .and_then(|k| k.as_str())
        .unwrap_or("<missing>");
    let name = value
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(|n| n.as_str())
        .unwrap_or("?")
        .to_string();
    if kind == want {
        return Some(name);
    }
    report.info(
        &format!("{kind} {name}"),
        "kind",
        key,
        format!("{location}: not an {want}; ignored"),
    );
    None
}

impl Meta {
    pub(crate) fn namespace(&self) -> String {
        self.namespace
            .clone()
            .unwrap_or_else(|| DEFAULT_NAMESPACE.into())
    }
}
