//! Parse, don't validate: `parse` turns a `CorsPolicySpec` into what the engine needs
//! (presets expanded once, origins, regexes and the upstream URL parsed once) and collects
//! every problem on the way; `validate` is its error list. `corsgate check`, the file loader,
//! the webhook and the controller all go through it (`config::compile` builds on `parse`).
//! Each problem names the field path, what is wrong and how to fix it; all problems are
//! reported, not the first. Limits and defaults come from `limits.rs`.

use std::fmt;

use super::limits::{self, MAX_AGE_SECONDS, PORT, TIMEOUT_SECONDS};
use super::{CorsPolicySpec, CorsPreset, CorsRule, Upstream};
use crate::cors::lists::is_token;
use crate::cors::origin::{OriginPattern, Patterns, check_patterns};

/// One problem in a policy: `path` is a JSON path such as `spec.cors.allowOrigins[1]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct FieldError {
    pub path: String,
    pub message: String,
    pub fix: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}; fix: {}", self.path, self.message, self.fix)
    }
}

impl FieldError {
    pub fn new(
        path: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> FieldError {
        FieldError {
            path: path.into(),
            message: message.into(),
            fix: fix.into(),
        }
    }
}

/// Origins parsed once: the entries of `allowOrigins` (or a rule's `origins`) and the
/// compiled `allowOriginPatterns` (or `originPatterns`).
#[derive(Debug, Clone, Default)]
pub struct ParsedOrigins {
    pub origins: Vec<OriginPattern>,
    /// Checked here, compiled when a request first needs them.
    pub patterns: Option<Patterns>,
}

/// A spec that passed every check, with what was parsed on the way: `config::compile`
/// builds the engine from this and never re-parses a field.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The spec with its presets expanded (`with_presets`, called exactly once here);
    /// `None` when it sets no preset, so the spec is what was compiled (no second copy of
    /// every policy: issue 14).
    pub expanded: Option<CorsPolicySpec>,
    /// `spec.cors.allowOrigins` / `allowOriginPatterns`.
    pub base: ParsedOrigins,
    /// Each `spec.cors.rules[i]`'s origins, in order.
    pub rules: Vec<ParsedOrigins>,
    /// `spec.upstream.url`, when set (a Service is resolved by `config::compile`, which knows
    /// the namespace).
    pub upstream_url: Option<http::Uri>,
}

/// Parses a spec, presets expanded once; `Err` holds every problem found.
pub fn parse(spec: &CorsPolicySpec) -> Result<Parsed, Vec<FieldError>> {
    let mut errs = Vec::new();
    hosts(&spec.hosts, &mut errs);
    paths(&spec.paths, &mut errs);
    let upstream_url = upstream(&spec.upstream, &mut errs);
    let expanded = spec.has_presets().then(|| spec.with_presets());
    let effective = expanded.as_ref().unwrap_or(spec);
    let cors = &effective.cors;
    let base = "spec.cors";
    let base_origins = ParsedOrigins {
        origins: origins(
            &format_args!("{base}.allowOrigins"),
            &cors.allow_origins,
            true,
            &mut errs,
        ),
        patterns: patterns(
            &format_args!("{base}.allowOriginPatterns"),
            &cors.allow_origin_patterns,
            &mut errs,
        ),
    };
    if let Some(m) = &cors.allow_methods {
        methods(&format_args!("{base}.allowMethods"), m, &mut errs);
    }
    header_names(
        &format_args!("{base}.allowHeaders"),
        &cors.allow_headers,
        &mut errs,
    );
    header_names(
        &format_args!("{base}.exposeHeaders"),
        &cors.expose_headers,
        &mut errs,
    );
    max_age(
        &format_args!("{base}.maxAgeSeconds"),
        cors.max_age_seconds,
        &mut errs,
    );
    if cors.allow_credentials
        && let Some(i) = cors.allow_origins.iter().position(|o| o == "*")
    {
        errs.push(FieldError::new(
                format!("{base}.allowOrigins[{i}]"),
                "\"*\" cannot be combined with allowCredentials: true: the edge would have to reflect every origin, so any website could read this API's responses with the user's cookies (Gateway API allows this; corsgate does not)",
                "list the trusted origins (a wildcard such as \"https://*.example.com\" or allowOriginPatterns is fine), or set allowCredentials: false",
            ));
    }
    let mut rules = Vec::with_capacity(cors.rules.len());
    for (i, rule) in cors.rules.iter().enumerate() {
        rules.push(self::rule(
            &format_args!("{base}.rules[{i}]"),
            rule,
            &mut errs,
        ));
    }
    credentials_star(cors, &mut errs);
    if let Some(preset) = spec.cors.preset {
        blame_preset(spec, preset, &mut errs);
    }
    if let Some(rh) = &spec.response_headers {
        response_headers(rh, &mut errs);
    }
    if let Some(tls) = &spec.tls
        && !limits::is_dns_subdomain(&tls.secret_name)
    {
        errs.push(FieldError::new(
            "spec.tls.secretName",
            format!("{:?} is not a valid Secret name", tls.secret_name),
            "name a kubernetes.io/tls Secret in the policy's namespace: lower-case letters, digits, '-' and '.', at most 253 characters",
        ));
    }
    if let Some(sec) = effective
        .response_headers
        .as_ref()
        .and_then(|r| r.security.as_ref())
    {
        security(sec, &mut errs);
    }
    if !errs.is_empty() {
        return Err(errs);
    }
    Ok(Parsed {
        expanded,
        base: base_origins,
        rules,
        upstream_url,
    })
}

/// Validates a spec: the error list of [`parse`].
pub fn validate(spec: &CorsPolicySpec) -> Result<(), Vec<FieldError>> {
    parse(spec).map(|_| ())
}

/// A problem with a value the user did not write but a preset filled in is reported on
/// `spec.cors.preset`, saying which field to set instead.
fn blame_preset(spec: &CorsPolicySpec, preset: CorsPreset, errs: &mut [FieldError]) {
    let name = match preset {
        CorsPreset::SimpleCors => "SimpleCORS",
        CorsPreset::CorsWithPreflight => "CORSWithPreflight",
    };
    let raw = &spec.cors;
    for e in errs.iter_mut() {
        let (field, what) =
            if e.path.starts_with("spec.cors.allowOrigins") && raw.allow_origins.is_empty() {
                ("allowOrigins", "allows every origin (\"*\")")
            } else if e.path == "spec.cors.allowHeaders" && raw.allow_headers.is_empty() {
                ("allowHeaders", "allows every request header (\"*\")")
            } else {
                continue;
            };
        *e = FieldError::new(
            "spec.cors.preset",
            format!(
                "the {name} preset {what}, which cannot be combined with allowCredentials: true"
            ),
            format!(
                "list the names in {field} (they replace the preset's \"*\"), or set allowCredentials: false"
            ),
        );
    }
}

/// An exact DNS name or `*.` + a DNS name, as used in `spec.hosts`.
pub fn host_error(h: &str) -> Option<(String, String)> {
    if h.is_empty() {
        return Some((
            "the host is empty".into(),
            "write a DNS name such as \"api.example.com\"".into(),
        ));
    }
    if h.ends_with('.') {
        return Some((
            format!("{h:?} ends with a dot"),
            format!(
                "write {:?}; requests with a trailing dot match it anyway",
                h.trim_end_matches('.')
            ),
        ));
    }
    if h.contains(':') || h.contains('/') {
        return Some((
            format!("{h:?} is not a host name: ports, schemes and paths do not belong here"),
            "write only the name, e.g. \"api.example.com\"; put path prefixes in spec.paths".into(),
        ));
    }
    let name = h.strip_prefix("*.").unwrap_or(h);
    if name.contains('*') {
        return Some((
            format!("{h:?} has a '*' that is not one whole leading label"),
            "use one leading \"*.\" label, e.g. \"*.example.com\"".into(),
        ));
    }
    if name.len() > limits::DNS_NAME_MAX {
        return Some((
            format!("{h:?} is longer than {} characters", limits::DNS_NAME_MAX),
            "use a shorter host name".into(),
        ));
    }
    for label in name.split('.') {
        let ok = !label.is_empty()
            && label.len() <= limits::DNS_LABEL_MAX
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Some((
                format!(
                    "{h:?} is not a DNS name: label {label:?} must be 1-63 letters, digits or '-', not starting or ending with '-'"
                ),
                "write a DNS name such as \"api.example.com\" (non-ASCII names in their xn-- form)"
                    .into(),
            ));
        }
    }
    None
}

fn hosts(hosts: &[String], errs: &mut Vec<FieldError>) {
    if hosts.is_empty() {
        errs.push(FieldError::new(
            "spec.hosts",
            "at least one host is required",
            "add the host names this policy serves, e.g. hosts: [\"api.example.com\"]",
        ));
    }
    for (i, h) in hosts.iter().enumerate() {
        if let Some((m, f)) = host_error(h) {
            errs.push(FieldError::new(format!("spec.hosts[{i}]"), m, f));
        }
    }
}

fn paths(paths: &[String], errs: &mut Vec<FieldError>) {
    for (i, p) in paths.iter().enumerate() {
        let path = format!("spec.paths[{i}]");
        if !p.starts_with('/') {
            errs.push(FieldError::new(
                path,
                format!("{p:?} does not start with '/'"),
                format!("write \"/{}\"", p.trim_start_matches('/')),
            ));
        } else if p.contains(['?', '#'])
            || p.bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || !b.is_ascii())
        {
            errs.push(FieldError::new(
                path,
                format!("{p:?} is not a path prefix: it has a query, fragment, white space or non-ASCII byte"),
                "write only the path, percent-encoded, e.g. \"/v1/items\"",
            ));
        } else if p.contains("//") || p.split('/').any(|s| s == "." || s == "..") {
            errs.push(FieldError::new(
                path,
                format!("{p:?} has an empty, \".\" or \"..\" segment"),
                "write the normalised path, e.g. \"/v1/items\"",
            ));
        }
    }
}

fn upstream(u: &Upstream, errs: &mut Vec<FieldError>) -> Option<http::Uri> {
    let mut parsed = None;
    match (&u.service, &u.url) {
        (Some(_), Some(_)) | (None, None) => errs.push(FieldError::new(
            "spec.upstream",
            "exactly one of service or url must be set",
            "set upstream.service {name, port} for a Service in this namespace, or upstream.url for any http(s) origin",
        )),
        (Some(s), None) => {
            let name_ok = limits::is_dns_label(&s.name)
                && s.name.starts_with(|c: char| c.is_ascii_lowercase());
            if !name_ok {
                errs.push(FieldError::new(
                    "spec.upstream.service.name",
                    format!("{:?} is not a Service name", s.name),
                    "use the Service's metadata.name: lower-case letters, digits and '-', starting with a letter",
                ));
            }
            if !PORT.contains(&s.port) {
                errs.push(FieldError::new(
                    "spec.upstream.service.port",
                    format!("{} is not a port number", s.port),
                    format!("use the Service port ({}-{})", PORT.start(), PORT.end()),
                ));
            }
        }
        (None, Some(url)) => match upstream_url(url) {
            Ok(uri) => parsed = Some(uri),
            Err(m) => errs.push(FieldError::new(
                "spec.upstream.url",
                format!("{url:?} {m}"),
                "write scheme://host[:port], e.g. \"http://127.0.0.1:9000\"",
            )),
        },
    }
    if let Some(t) = u.timeout_seconds
        && !TIMEOUT_SECONDS.contains(&t)
    {
        errs.push(FieldError::new(
            "spec.upstream.timeoutSeconds",
            format!("{t} is out of range"),
            format!(
                "use {} seconds, or omit it for {}",
                limits::span(&TIMEOUT_SECONDS),
                limits::DEFAULT_TIMEOUT_SECONDS
            ),
        ));
    }
    parsed
}

/// Parses an upstream URL: http or https, a host, no userinfo, path, query or fragment.
pub fn upstream_url(url: &str) -> Result<http::Uri, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("is not a URL ({e})"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err("must start with http:// or https://".into()),
    }
    let Some(auth) = uri.authority() else {
        return Err("has no host".into());
    };
    if auth.as_str().contains('@') {
        return Err("has userinfo, which is not supported".into());
    }
    if auth.host().is_empty() {
        return Err("has no host".into());
    }
    let pq = uri.path_and_query().map_or("", |p| p.as_str());
    if !(pq.is_empty() || pq == "/") {
        return Err("has a path or query; the request's own path is sent as is".into());
    }
    Ok(uri)
}

fn origins(
    path: &dyn fmt::Display,
    origins: &[String],
    allow_star: bool,
    errs: &mut Vec<FieldError>,
) -> Vec<OriginPattern> {
    let mut parsed = Vec::with_capacity(origins.len());
    for (i, o) in origins.iter().enumerate() {
        match OriginPattern::parse(o) {
            Ok(OriginPattern::Any) if !allow_star => errs.push(FieldError::new(
                format!("{path}[{i}]"),
                "a rule cannot apply to \"*\": it would match every origin",
                "put settings for every origin on spec.cors itself, and list specific origins in rules",
            )),
            Ok(p) => parsed.push(p),
            Err(e) => errs.push(FieldError::new(format!("{path}[{i}]"), e.message, e.fix)),
        }
    }
    parsed
}

fn patterns(
    path: &dyn fmt::Display,
    patterns: &[String],
    errs: &mut Vec<FieldError>,
) -> Option<Patterns> {
    match check_patterns(patterns) {
        Ok(()) => Patterns::checked(patterns),
        Err((i, e)) => {
            errs.push(FieldError::new(format!("{path}[{i}]"), e.message, e.fix));
            None
        }
    }
}

fn methods(path: &dyn fmt::Display, methods: &[String], errs: &mut Vec<FieldError>) {
    if methods.is_empty() {
        errs.push(FieldError::new(
            path.to_string(),
            "the list is empty, so no preflight could ever pass",
            "list methods such as [\"GET\", \"POST\"], or omit the field for GET, HEAD, POST",
        ));
    }
    for (i, m) in methods.iter().enumerate() {
        if m != "*" && !is_token(m) {
            errs.push(FieldError::new(
                format!("{path}[{i}]"),
                format!("{m:?} is not an HTTP method"),
                "write a method name such as \"PUT\" (letters, no spaces), or \"*\"",
            ));
        }
    }
}

fn header_names(path: &dyn fmt::Display, names: &[String], errs: &mut Vec<FieldError>) {
    for (i, n) in names.iter().enumerate() {
        if n != "*" && !is_token(n) {
            errs.push(FieldError::new(
                format!("{path}[{i}]"),
                format!("{n:?} is not a header name"),
                "write a header name such as \"x-request-id\" (no spaces, colons or commas; one per entry), or \"*\"",
            ));
        }
    }
}

fn max_age(path: &dyn fmt::Display, v: Option<i32>, errs: &mut Vec<FieldError>) {
    if let Some(v) = v
        && !MAX_AGE_SECONDS.contains(&v)
    {
        errs.push(FieldError::new(
            path.to_string(),
            format!("{v} is out of range"),
            format!(
                "use {} seconds (browsers cap it lower: Chromium at {}), or omit it",
                limits::span(&MAX_AGE_SECONDS),
                limits::CHROMIUM_MAX_AGE
            ),
        ));
    }
}

fn rule(path: &dyn fmt::Display, r: &CorsRule, errs: &mut Vec<FieldError>) -> ParsedOrigins {
    if r.origins.is_empty() && r.origin_patterns.is_empty() {
        errs.push(FieldError::new(
            format!("{path}.origins"),
            "a rule needs origins or originPatterns to apply to",
            "list the origins this rule is for, e.g. origins: [\"https://admin.example.com\"]",
        ));
    }
    let parsed = ParsedOrigins {
        origins: origins(&format_args!("{path}.origins"), &r.origins, false, errs),
        patterns: patterns(
            &format_args!("{path}.originPatterns"),
            &r.origin_patterns,
            errs,
        ),
    };
    if let Some(m) = &r.allow_methods {
        methods(&format_args!("{path}.allowMethods"), m, errs);
    }
    if let Some(h) = &r.allow_headers {
        header_names(&format_args!("{path}.allowHeaders"), h, errs);
    }
    if let Some(h) = &r.expose_headers {
        header_names(&format_args!("{path}.exposeHeaders"), h, errs);
    }
    max_age(
        &format_args!("{path}.maxAgeSeconds"),
        r.max_age_seconds,
        errs,
    );
    parsed
}

/// Credentials never with "*" in exposed headers (crd.rs holds the API server's CEL copy);
/// methods and headers are reflected instead. A rule's credentials and lists each
/// come from the rule when it sets them, else from the base, so the check is on what serves.
fn credentials_star(c: &super::CorsSpec, errs: &mut Vec<FieldError>) {
    // allowMethods/allowHeaders "*" with credentials are fine: Fetch gives `*` no wildcard
    // meaning then, so the edge reflects the requested method and headers, as Gateway API's
    // HTTPCORSFilter requires (issue 16). exposeHeaders "*" cannot be reflected from a
    // request, and allowOrigins "*" with credentials is refused elsewhere.
    let star = |l: &[String]| l.iter().any(|x| x == "*");
    let field = "exposeHeaders";
    let base = c.expose_headers.as_slice();
    if c.allow_credentials && star(base) {
        errs.push(FieldError::new(
            format!("spec.cors.{field}"),
            "\"*\" cannot be combined with allowCredentials: true: with credentials browsers read it as a header literally named \"*\", so no header would be exposed, and exposed names cannot be reflected from a request",
            format!("list the names in {field}, or set allowCredentials: false"),
        ));
    }
    for (i, r) in c.rules.iter().enumerate() {
        let credentials = r.allow_credentials.unwrap_or(c.allow_credentials);
        let own_list = r.expose_headers.as_deref();
        let list = own_list.unwrap_or(base);
        // A rule that sets neither inherits the base's verdict, reported once on the base.
        let own = own_list.is_some() || r.allow_credentials.is_some();
        if credentials && star(list) && own {
            errs.push(FieldError::new(
                format!("spec.cors.rules[{i}].{field}"),
                "this rule allows credentials and \"*\" (set on the rule or inherited from spec.cors)",
                format!("list the names in the rule's {field}, or set the rule's allowCredentials: false"),
            ));
        }
    }
}

mod headers;

use headers::{response_headers, security};

#[cfg(test)]
mod tests;
