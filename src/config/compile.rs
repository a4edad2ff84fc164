//! The one conversion from a `CorsPolicySpec` to what the engine and the proxy run:
//! `policy::parse` (every check, presets expanded once, origins, regexes and the upstream URL
//! parsed once), then `cors` types and precomputed header values. `corsgate check`, the file
//! loader, the webhook and the controller all go through `CompiledPolicy::from_spec`.

use std::fmt;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use serde::Serialize;

use crate::cors::origin::OriginMatcher;
use crate::cors::{self, Cors, Grant, HeaderList, MethodList, Settings};
use crate::policy::limits::{DEFAULT_METHODS, DEFAULT_TIMEOUT, HSTS_DEFAULT_MAX_AGE};
use crate::policy::{
    self, CorsPolicySpec, CorsRule, CorsSpec, FieldError, ParsedOrigins, SecurityHeader,
};

/// `namespace/name` of a policy.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct PolicyId {
    pub namespace: String,
    pub name: String,
}

impl PolicyId {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> PolicyId {
        PolicyId {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for PolicyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Where a policy's requests go.
#[derive(Debug, Clone)]
pub struct UpstreamTarget {
    pub scheme: http::uri::Scheme,
    pub authority: http::uri::Authority,
    pub timeout: Duration,
}

impl UpstreamTarget {
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.authority)
    }
}

/// One header the edge sets on a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetHeader {
    pub name: HeaderName,
    pub value: HeaderValue,
    /// true: replaces a header of the same name; false: set only when the response has none
    /// (the upstream's wins), as CloudFront's "origin override: no".
    pub override_upstream: bool,
}

/// `responseHeaders` (custom, typed security headers and presets), ready to apply.
#[derive(Debug, Clone, Default)]
pub struct HeaderOps {
    pub set: Vec<SetHeader>,
    pub remove: Vec<HeaderName>,
}

impl HeaderOps {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.remove.is_empty()
    }

    /// `remove` first, then `set`: each header replaces one of the same name, or, without
    /// `override_upstream`, is added only when the response lacks it.
    /// How many headers `apply` may add.
    pub fn added(&self) -> usize {
        self.set.len()
    }

    pub fn apply(&self, headers: &mut HeaderMap) {
        for n in &self.remove {
            headers.remove(n);
        }
        for h in &self.set {
            if h.override_upstream || !headers.contains_key(&h.name) {
                headers.insert(h.name.clone(), h.value.clone());
            }
        }
    }
}

/// A validated policy, compiled for the request path.
#[derive(Debug, Clone)]
pub struct CompiledPolicy {
    pub id: PolicyId,
    /// Lower case, as validated.
    pub hosts: Vec<String>,
    /// Normalised prefixes (no trailing '/', except "/" itself); `["/"]` when none were given.
    pub paths: Vec<String>,
    pub upstream: UpstreamTarget,
    pub cors: Cors,
    pub response_headers: HeaderOps,
    /// `spec.mode: Shadow`: evaluate and count, never enforce.
    pub shadow: bool,
    /// `spec.websocket.checkOrigin` (default true): upgrade requests from an Origin the
    /// policy does not allow are refused.
    pub websocket_check_origin: bool,
    /// `spec.debug.rejectionReasons`: rejections say why on the wire.
    pub rejection_reasons: bool,
    /// `spec.tls.redirectHTTP`: plain-HTTP requests get 308 to https.
    pub redirect_http: bool,
    /// As written (hashed into the version, sent on the config stream).
    pub spec: CorsPolicySpec,
    /// `spec` with presets expanded, when it sets a preset (see [`CompiledPolicy::expanded`]).
    pub(crate) expanded: Option<Box<CorsPolicySpec>>,
    /// RFC 3339 creation time, when known: the older policy wins a conflict. Set by
    /// `Snapshot::build` from its input.
    pub created: Option<String>,
}

impl CompiledPolicy {
    /// `spec` with presets expanded: what was compiled, and what `effective` shows.
    pub fn expanded(&self) -> &CorsPolicySpec {
        self.expanded.as_deref().unwrap_or(&self.spec)
    }

    /// Every (host, path prefix) pair the policy claims, hosts first.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.hosts
            .iter()
            .flat_map(|h| self.paths.iter().map(move |p| (h.as_str(), p.as_str())))
    }
}

fn internal(path: &str, e: impl fmt::Display) -> Vec<FieldError> {
    // Validation accepted the value, so this is a corsgate bug; report it, never panic.
    vec![FieldError::new(
        path,
        format!("could not be compiled: {e}"),
        "report this as a corsgate bug",
    )]
}

/// Normalises a path prefix: no trailing '/', except the root.
pub fn normalize_prefix(p: &str) -> String {
    let t = p.trim_end_matches('/');
    if t.is_empty() {
        "/".to_string()
    } else {
        t.to_string()
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn origin_matcher(parsed: ParsedOrigins) -> OriginMatcher {
    OriginMatcher::new(&parsed.origins, parsed.patterns)
}

fn base_settings(c: &CorsSpec) -> Settings {
    let methods = c
        .allow_methods
        .clone()
        .unwrap_or_else(|| strings(&DEFAULT_METHODS));
    Settings::new(
        MethodList::new(&methods),
        HeaderList::new(&c.allow_headers),
        HeaderList::new(&c.expose_headers),
        c.allow_credentials,
        c.max_age_seconds.and_then(|s| u32::try_from(s).ok()),
        c.allow_private_network,
    )
}

/// A rule's settings: each field it sets replaces the base's, each it omits is inherited.
fn rule_settings(c: &CorsSpec, r: &CorsRule) -> Settings {
    let methods = r
        .allow_methods
        .clone()
        .or_else(|| c.allow_methods.clone())
        .unwrap_or_else(|| strings(&DEFAULT_METHODS));
    Settings::new(
        MethodList::new(&methods),
        HeaderList::new(r.allow_headers.as_ref().unwrap_or(&c.allow_headers)),
        HeaderList::new(r.expose_headers.as_ref().unwrap_or(&c.expose_headers)),
        r.allow_credentials.unwrap_or(c.allow_credentials),
        r.max_age_seconds
            .or(c.max_age_seconds)
            .and_then(|s| u32::try_from(s).ok()),
        r.allow_private_network.unwrap_or(c.allow_private_network),
    )
}

/// The typed security headers as `(field, value, override)`; a field's defaults are the
/// values of CloudFront's SecurityHeadersPolicy, and `override` defaults to true.
fn security_headers(sec: &policy::SecurityHeaders) -> Vec<(SecurityHeader, String, bool)> {
    let mut out = Vec::new();
    if let Some(h) = &sec.strict_transport_security {
        let mut v = format!(
            "max-age={}",
            h.max_age_seconds.unwrap_or(HSTS_DEFAULT_MAX_AGE)
        );
        if h.include_subdomains == Some(true) {
            v.push_str("; includeSubDomains");
        }
        if h.preload == Some(true) {
            v.push_str("; preload");
        }
        out.push((
            SecurityHeader::StrictTransportSecurity,
            v,
            h.override_upstream.unwrap_or(true),
        ));
    }
    if let Some(h) = &sec.content_type_options {
        out.push((
            SecurityHeader::ContentTypeOptions,
            "nosniff".into(),
            h.override_upstream.unwrap_or(true),
        ));
    }
    if let Some(h) = &sec.frame_options {
        let v = match h.value.unwrap_or(policy::FrameOption::SameOrigin) {
            policy::FrameOption::Deny => "DENY",
            policy::FrameOption::SameOrigin => "SAMEORIGIN",
        };
        out.push((
            SecurityHeader::FrameOptions,
            v.into(),
            h.override_upstream.unwrap_or(true),
        ));
    }
    if let Some(h) = &sec.referrer_policy {
        use policy::ReferrerPolicy as R;
        let v = match h.value.unwrap_or(R::StrictOriginWhenCrossOrigin) {
            R::NoReferrer => "no-referrer",
            R::NoReferrerWhenDowngrade => "no-referrer-when-downgrade",
            R::Origin => "origin",
            R::OriginWhenCrossOrigin => "origin-when-cross-origin",
            R::SameOrigin => "same-origin",
            R::StrictOrigin => "strict-origin",
            R::StrictOriginWhenCrossOrigin => "strict-origin-when-cross-origin",
            R::UnsafeUrl => "unsafe-url",
        };
        out.push((
            SecurityHeader::ReferrerPolicy,
            v.into(),
            h.override_upstream.unwrap_or(true),
        ));
    }
    if let Some(h) = &sec.content_security_policy {
        out.push((
            SecurityHeader::ContentSecurityPolicy,
            h.value.clone(),
            h.override_upstream.unwrap_or(true),
        ));
    }
    if let Some(h) = &sec.xss_protection {
        let v = if h.protection.unwrap_or(true) {
            match (&h.report_uri, h.mode_block.unwrap_or(true)) {
                (Some(uri), false) => format!("1; report={uri}"),
                (_, true) => "1; mode=block".into(),
                (None, false) => "1".into(),
            }
        } else {
            "0".into()
        };
        out.push((
            SecurityHeader::XssProtection,
            v,
            h.override_upstream.unwrap_or(true),
        ));
    }
    out
}

impl CompiledPolicy {
    /// Validates and compiles. `namespace` resolves `upstream.service`.
    pub fn from_spec(
        id: PolicyId,
        spec: &CorsPolicySpec,
    ) -> Result<CompiledPolicy, Vec<FieldError>> {
        let policy::Parsed {
            expanded,
            base,
            rules: rule_origins,
            upstream_url,
        } = policy::parse(spec)?;
        let compiled_spec = expanded.as_ref().unwrap_or(spec);
        let c = &compiled_spec.cors;
        let base = Grant {
            origins: origin_matcher(base),
            settings: base_settings(c),
        };
        let rules = c
            .rules
            .iter()
            .zip(rule_origins)
            .map(|(r, origins)| Grant {
                origins: origin_matcher(origins),
                settings: rule_settings(c, r),
            })
            .collect();
        let engine = Cors {
            base,
            rules,
            preflight: match c.preflight.unwrap_or_default() {
                policy::PreflightMode::Respond => cors::PreflightMode::Respond,
                policy::PreflightMode::Forward => cors::PreflightMode::Forward,
                policy::PreflightMode::Passthrough => cors::PreflightMode::Passthrough,
            },
            unmatched_preflight: match c.unmatched_preflight {
                policy::UnmatchedPreflight::Reject => cors::UnmatchedPreflight::Reject,
                policy::UnmatchedPreflight::Forward => cors::UnmatchedPreflight::Forward,
            },
            disallowed_origin: match c.disallowed_origin {
                policy::DisallowedOrigin::Forward => cors::DisallowedOrigin::Forward,
                policy::DisallowedOrigin::Reject => cors::DisallowedOrigin::Reject,
            },
            origin_override: c.origin_override.unwrap_or(true),
        };

        // `parse` accepted exactly one of url (parsed) or service (a DNS label and a port).
        let (scheme, authority) = match (&spec.upstream.service, upstream_url) {
            (Some(s), _) => {
                let authority = format!("{}.{}.svc:{}", s.name, id.namespace, s.port)
                    .parse::<http::uri::Authority>()
                    .map_err(|e| internal("metadata.namespace", e))?;
                (http::uri::Scheme::HTTP, authority)
            }
            (None, Some(uri)) => match (uri.scheme().cloned(), uri.authority().cloned()) {
                (Some(scheme), Some(authority)) => (scheme, authority),
                _ => return Err(internal("spec.upstream.url", "no scheme or host")),
            },
            (None, None) => return Err(internal("spec.upstream", "no upstream")),
        };
        let timeout = spec
            .upstream
            .timeout_seconds
            .and_then(|t| u64::try_from(t).ok())
            .map_or(DEFAULT_TIMEOUT, Duration::from_secs);

        let mut ops = HeaderOps::default();
        if let Some(rh) = &compiled_spec.response_headers {
            for (i, h) in rh.set.iter().enumerate() {
                let p = format!("spec.responseHeaders.set[{i}]");
                let name =
                    HeaderName::from_bytes(h.name.as_bytes()).map_err(|e| internal(&p, e))?;
                let value = HeaderValue::from_str(&h.value).map_err(|e| internal(&p, e))?;
                ops.set.push(SetHeader {
                    name,
                    value,
                    override_upstream: true,
                });
            }
            if let Some(sec) = &rh.security {
                for (h, value, override_upstream) in security_headers(sec) {
                    let p = format!("spec.responseHeaders.security.{}", h.field());
                    let name = HeaderName::from_static(h.header());
                    let value = HeaderValue::from_str(&value).map_err(|e| internal(&p, e))?;
                    ops.set.push(SetHeader {
                        name,
                        value,
                        override_upstream,
                    });
                }
            }
            for (i, n) in rh.remove.iter().enumerate() {
                let p = format!("spec.responseHeaders.remove[{i}]");
                ops.remove
                    .push(HeaderName::from_bytes(n.as_bytes()).map_err(|e| internal(&p, e))?);
            }
        }

        let mut hosts: Vec<String> = Vec::new();
        for h in &spec.hosts {
            let h = h.to_ascii_lowercase();
            if !hosts.contains(&h) {
                hosts.push(h);
            }
        }
        let mut paths: Vec<String> = Vec::new();
        for p in spec.paths.iter().map(|p| normalize_prefix(p)) {
            if !paths.contains(&p) {
                paths.push(p);
            }
        }
        if paths.is_empty() {
            paths.push("/".into());
        }
        Ok(CompiledPolicy {
            id,
            hosts,
            paths,
            upstream: UpstreamTarget {
                scheme,
                authority,
                timeout,
            },
            cors: engine,
            response_headers: ops,
            shadow: spec.mode == policy::Mode::Shadow,
            websocket_check_origin: spec.websocket.and_then(|w| w.check_origin).unwrap_or(true),
            rejection_reasons: spec
                .debug
                .as_ref()
                .and_then(|d| d.rejection_reasons)
                .unwrap_or(false),
            redirect_http: spec.tls.as_ref().is_some_and(|t| t.redirect_http),
            spec: spec.clone(),
            expanded: expanded.map(Box::new),
            created: None,
        })
    }

    /// The policy's warnings, read from the spec compiled here (presets are not expanded
    /// again): what the webhook returns and the controller writes to status.warnings.
    pub fn warnings(&self) -> Vec<policy::Warning> {
        policy::warnings_expanded(self.expanded())
    }

    /// The policy as the engine runs it, defaults filled in and rules merged: what
    /// `/config` and `corsgate explain` show.
    pub fn effective(&self) -> serde_json::Value {
        let c = &self.expanded().cors;
        let grant = |s: &Settings| {
            serde_json::json!({
                "allowMethods": s.methods.items().collect::<Vec<_>>(),
                "allowHeaders": s.headers.items().collect::<Vec<_>>(),
                "exposeHeaders": s.expose.items().collect::<Vec<_>>(),
                "allowCredentials": s.credentials,
                "maxAgeSeconds": s.max_age,
                "allowPrivateNetwork": s.private_network,
            })
        };
        let mut base = grant(&self.cors.base.settings);
        base["allowOrigins"] = serde_json::json!(c.allow_origins);
        base["allowOriginPatterns"] = serde_json::json!(c.allow_origin_patterns);
        base["preset"] = serde_json::json!(c.preset);
        base["preflight"] = serde_json::json!(c.preflight.unwrap_or_default());
        base["unmatchedPreflight"] = serde_json::json!(c.unmatched_preflight);
        base["disallowedOrigin"] = serde_json::json!(c.disallowed_origin);
        base["originOverride"] = serde_json::json!(self.cors.origin_override);
        let rules: Vec<_> = c
            .rules
            .iter()
            .zip(&self.cors.rules)
            .map(|(r, g)| {
                let mut v = grant(&g.settings);
                v["origins"] = serde_json::json!(r.origins);
                v["originPatterns"] = serde_json::json!(r.origin_patterns);
                v
            })
            .collect();
        base["rules"] = serde_json::json!(rules);
        let set: Vec<_> = self
            .response_headers
            .set
            .iter()
            .map(|h| {
                serde_json::json!({
                    "name": h.name.as_str(),
                    "value": String::from_utf8_lossy(h.value.as_bytes()),
                    "override": h.override_upstream,
                })
            })
            .collect();
        let remove: Vec<&str> = self
            .response_headers
            .remove
            .iter()
            .map(HeaderName::as_str)
            .collect();
        serde_json::json!({
            "name": self.id.to_string(),
            "mode": self.spec.mode,
            "hosts": self.hosts,
            "paths": self.paths,
            "upstream": {"url": self.upstream.url(), "timeoutSeconds": self.upstream.timeout.as_secs()},
            "cors": base,
            "responseHeaders": {
                "preset": self.spec.response_headers.as_ref().and_then(|r| r.preset),
                "set": set,
                "remove": remove,
            },
        })
    }
}
