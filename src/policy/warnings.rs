//! Valid but risky: the one implementation of the warnings that the admission webhook returns
//! (kubectl prints them) and the controller writes to `status.warnings` (issues 5 and 8).
//! Texts are stable and human: tests and docs quote them.
//!
//! Everything here assumes nothing about validity: on an invalid spec it reports what it can
//! and never panics. What is *wrong* (not risky) belongs to `validate` — for example
//! `allowHeaders: ["*"]` with credentials, which browsers take literally, is a denial there,
//! not a warning here.
//!
//! Public suffixes come from the Public Suffix List (<https://publicsuffix.org/>), ICANN
//! and private sections, embedded by the `psl` crate: no network, updated with the crate.

use std::fmt;

use super::{CorsPolicySpec, CorsRule};
use crate::cors::origin::{OriginPattern, compile_patterns};

pub use super::limits::{CHROMIUM_MAX_AGE, FIREFOX_MAX_AGE};

/// A host label nobody owns; a regex that matches it under a public suffix matches anyone's.
const PROBE_LABEL: &str = "corsgate-probe-any-site";
/// The public suffix probed for patterns that name none.
const FALLBACK_SUFFIX: &str = "com";

/// One risky setting: `path` is a JSON path such as `spec.cors.maxAgeSeconds`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub path: String,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl Warning {
    fn new(path: impl Into<String>, message: impl Into<String>) -> Warning {
        Warning {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Every risky setting of `spec`, in field order. Expands the presets (once); with a
/// parsed or compiled policy at hand, call [`warnings_expanded`] on its expanded spec.
pub fn warnings(spec: &CorsPolicySpec) -> Vec<Warning> {
    // Judge what the policy does: a preset's "*" counts like one written out.
    warnings_expanded(&spec.with_presets())
}

/// Every risky setting of a spec whose presets are already expanded
/// (`Parsed::expanded`, `CompiledPolicy::expanded`), in field order.
pub fn warnings_expanded(spec: &CorsPolicySpec) -> Vec<Warning> {
    let mut out = Vec::new();
    let c = &spec.cors;
    let base = "spec.cors";
    origins(
        &format!("{base}.allowOrigins"),
        &c.allow_origins,
        c.allow_credentials,
        "allowCredentials is true",
        &mut out,
    );
    patterns(
        &format!("{base}.allowOriginPatterns"),
        &c.allow_origin_patterns,
        c.allow_credentials,
        "allowCredentials is true",
        &mut out,
    );
    star_headers(&format!("{base}.allowHeaders"), &c.allow_headers, &mut out);
    max_age(
        &format!("{base}.maxAgeSeconds"),
        c.max_age_seconds,
        &mut out,
    );
    if c.allow_private_network {
        private_network(
            &format!("{base}.allowPrivateNetwork"),
            broad(&c.allow_origins, &c.allow_origin_patterns),
            &mut out,
        );
    }
    for (i, r) in c.rules.iter().enumerate() {
        rule(
            &format!("{base}.rules[{i}]"),
            r,
            c.allow_credentials,
            &mut out,
        );
    }
    out
}

fn rule(path: &str, r: &CorsRule, base_credentials: bool, out: &mut Vec<Warning>) {
    let credentials = r.allow_credentials.unwrap_or(base_credentials);
    let why = if r.allow_credentials.is_some() {
        "rule sets allowCredentials: true"
    } else {
        "rule inherits allowCredentials: true"
    };
    origins(
        &format!("{path}.origins"),
        &r.origins,
        credentials,
        why,
        out,
    );
    patterns(
        &format!("{path}.originPatterns"),
        &r.origin_patterns,
        credentials,
        why,
        out,
    );
    if let Some(h) = &r.allow_headers {
        star_headers(&format!("{path}.allowHeaders"), h, out);
    }
    max_age(&format!("{path}.maxAgeSeconds"), r.max_age_seconds, out);
    if r.allow_private_network == Some(true) {
        private_network(
            &format!("{path}.allowPrivateNetwork"),
            broad(&r.origins, &r.origin_patterns),
            out,
        );
    }
}

/// Is `name` (lower case, no trailing dot) itself a public suffix?
fn is_public_suffix(name: &str) -> bool {
    psl::suffix(name.as_bytes()).is_some_and(|s| s.is_known() && s.as_bytes() == name.as_bytes())
}

/// The public suffix a wildcard origin covers entirely, if any: `https://*.github.io`.
fn wildcard_public_suffix(o: &str) -> Option<String> {
    match OriginPattern::parse(o) {
        Ok(OriginPattern::Wildcard { suffix, .. }) => {
            let s = suffix.trim_start_matches('.');
            is_public_suffix(s).then(|| s.to_string())
        }
        _ => None,
    }
}

/// The public suffixes a pattern names literally: every dot-separated tail of each run of
/// host characters in it (`\.` read as `.`) that the Public Suffix List knows, longest first.
fn named_suffixes(pattern: &str) -> Vec<String> {
    let text = pattern.replace("\\.", ".").to_ascii_lowercase();
    let mut out: Vec<String> = Vec::new();
    for run in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '-')) {
        let run = run.trim_matches('.');
        let mut tail = run;
        loop {
            if !tail.is_empty() && is_public_suffix(tail) && !out.iter().any(|s| s == tail) {
                out.push(tail.to_string());
            }
            match tail.split_once('.') {
                Some((_, rest)) => tail = rest,
                None => break,
            }
        }
    }
    out
}

/// The first public suffix under which `pattern` matches a host nobody controls, if any.
fn pattern_public_suffix(pattern: &str) -> Option<String> {
    let set = compile_patterns(&[pattern.to_string()]).ok()??;
    // A pattern that names no suffix (`https://.+`) is probed under the largest one.
    let mut candidates = named_suffixes(pattern);
    candidates.push(FALLBACK_SUFFIX.to_string());
    candidates.into_iter().find(|s| {
        ["https", "http"]
            .iter()
            .any(|scheme| set.is_match(&format!("{scheme}://{PROBE_LABEL}.{s}")))
    })
}

/// Origins that let practically anyone in: "*", or any host under a public suffix.
fn broad(origins: &[String], patterns: &[String]) -> bool {
    origins
        .iter()
        .any(|o| o == "*" || wildcard_public_suffix(o).is_some())
        || patterns.iter().any(|p| pattern_public_suffix(p).is_some())
}

fn origins(
    path: &str,
    list: &[String],
    credentials: bool,
    why_credentials: &str,
    out: &mut Vec<Warning>,
) {
    for (i, o) in list.iter().enumerate() {
        let at = format!("{path}[{i}]");
        if let Some(s) = wildcard_public_suffix(o) {
            out.push(Warning::new(
                &at,
                format!(
                    "{o:?} matches every site under the public suffix {s:?}, so anyone can register an allowed origin; list your own domains instead"
                ),
            ));
        }
        match OriginPattern::parse(o) {
            Ok(OriginPattern::Null) => out.push(Warning::new(
                &at,
                "\"null\" is allowed: sandboxed iframes, file: pages and some redirects send it, so any site can call with Origin: null; allow the real origins instead",
            )),
            Ok(OriginPattern::Wildcard { .. }) if credentials => out.push(Warning::new(
                &at,
                format!(
                    "wildcard origin {o:?} with credentials ({why_credentials}): any subdomain, even a compromised or user-controlled one, can make credentialed requests; list exact origins"
                ),
            )),
            _ => {}
        }
    }
}

fn patterns(
    path: &str,
    list: &[String],
    credentials: bool,
    why_credentials: &str,
    out: &mut Vec<Warning>,
) {
    for (i, p) in list.iter().enumerate() {
        let at = format!("{path}[{i}]");
        if let Some(s) = pattern_public_suffix(p) {
            out.push(Warning::new(
                &at,
                format!(
                    "pattern {p:?} matches any host under the public suffix {s:?}, so anyone can register an allowed origin; anchor it to your own domain"
                ),
            ));
        }
        if compile_patterns(std::slice::from_ref(p))
            .ok()
            .flatten()
            .is_some_and(|set| set.is_match("null"))
        {
            out.push(Warning::new(
                &at,
                format!(
                    "pattern {p:?} matches \"null\", which sandboxed iframes and file: pages send; make it require a scheme and host"
                ),
            ));
        }
        if credentials {
            out.push(Warning::new(
                &at,
                format!(
                    "origin pattern {p:?} with credentials ({why_credentials}): every origin the regex matches can make credentialed requests; list exact origins"
                ),
            ));
        }
    }
}

fn star_headers(path: &str, list: &[String], out: &mut Vec<Warning>) {
    let has = |n: &str| list.iter().any(|h| h.eq_ignore_ascii_case(n));
    if has("*") && !has("authorization") {
        out.push(Warning::new(
            path,
            "\"*\" never covers Authorization (Fetch), so a request that sends an Authorization header fails its preflight; add \"authorization\" to the list if the API expects it",
        ));
    }
}

fn max_age(path: &str, v: Option<i32>, out: &mut Vec<Warning>) {
    if let Some(v) = v
        && v > CHROMIUM_MAX_AGE
    {
        out.push(Warning::new(
            path,
            format!(
                "{v} s is above what browsers honour: Chromium caps Max-Age at {CHROMIUM_MAX_AGE} s (Firefox at {FIREFOX_MAX_AGE} s); use {CHROMIUM_MAX_AGE} or less"
            ),
        ));
    }
}

fn private_network(path: &str, broad: bool, out: &mut Vec<Warning>) {
    out.push(Warning::new(
        path,
        "Private Network Access preflights are deprecated in Chromium (replaced by the Local Network Access permission prompt); do not rely on Access-Control-Allow-Private-Network",
    ));
    if broad {
        out.push(Warning::new(
            path,
            "allowPrivateNetwork with broad origins (\"*\" or a whole public suffix): any website may reach this private-network service from a visitor's browser; list trusted origins",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(cors: &str) -> CorsPolicySpec {
        serde_saphyr::from_str(&format!(
            "hosts: [api.example.com]\nupstream: {{url: 'http://127.0.0.1:9000'}}\ncors: {cors}\n"
        ))
        .expect("spec")
    }

    fn texts(cors: &str) -> Vec<String> {
        let s = spec(cors);
        assert!(
            super::super::validate(&s).is_ok(),
            "the warning cases must be valid policies: {cors}"
        );
        warnings(&s).iter().map(ToString::to_string).collect()
    }

    /// (cors, the one warning expected) — each triggered alone.
    const TRIGGERED: &[(&str, &str)] = &[
        (
            "{allowOrigins: ['https://*.github.io']}",
            "spec.cors.allowOrigins[0]: \"https://*.github.io\" matches every site under the public suffix \"github.io\", so anyone can register an allowed origin; list your own domains instead",
        ),
        (
            "{allowOrigins: ['https://*.co.uk']}",
            "spec.cors.allowOrigins[0]: \"https://*.co.uk\" matches every site under the public suffix \"co.uk\", so anyone can register an allowed origin; list your own domains instead",
        ),
        (
            "{allowOriginPatterns: ['https://[a-z0-9-]+\\.herokuapp\\.com']}",
            "spec.cors.allowOriginPatterns[0]: pattern \"https://[a-z0-9-]+\\\\.herokuapp\\\\.com\" matches any host under the public suffix \"herokuapp.com\", so anyone can register an allowed origin; anchor it to your own domain",
        ),
        (
            "{allowOriginPatterns: ['https://.*\\.example\\.com|null']}",
            "spec.cors.allowOriginPatterns[0]: pattern \"https://.*\\\\.example\\\\.com|null\" matches \"null\", which sandboxed iframes and file: pages send; make it require a scheme and host",
        ),
        (
            "{allowOrigins: ['null']}",
            "spec.cors.allowOrigins[0]: \"null\" is allowed: sandboxed iframes, file: pages and some redirects send it, so any site can call with Origin: null; allow the real origins instead",
        ),
        (
            "{allowOrigins: ['https://*.example.com'], allowCredentials: true}",
            "spec.cors.allowOrigins[0]: wildcard origin \"https://*.example.com\" with credentials (allowCredentials is true): any subdomain, even a compromised or user-controlled one, can make credentialed requests; list exact origins",
        ),
        (
            "{allowOriginPatterns: ['https://pr-[0-9]+\\.preview\\.example\\.com'], allowCredentials: true}",
            "spec.cors.allowOriginPatterns[0]: origin pattern \"https://pr-[0-9]+\\\\.preview\\\\.example\\\\.com\" with credentials (allowCredentials is true): every origin the regex matches can make credentialed requests; list exact origins",
        ),
        (
            "{rules: [{origins: ['https://*.example.com'], allowCredentials: true}]}",
            "spec.cors.rules[0].origins[0]: wildcard origin \"https://*.example.com\" with credentials (rule sets allowCredentials: true): any subdomain, even a compromised or user-controlled one, can make credentialed requests; list exact origins",
        ),
        (
            "{allowCredentials: true, allowOrigins: ['https://a.example.com'], rules: [{originPatterns: ['https://[a-z]+\\.example\\.com'], allowMethods: [PUT]}]}",
            "spec.cors.rules[0].originPatterns[0]: origin pattern \"https://[a-z]+\\\\.example\\\\.com\" with credentials (rule inherits allowCredentials: true): every origin the regex matches can make credentialed requests; list exact origins",
        ),
        (
            "{allowOrigins: ['https://a.example.com'], maxAgeSeconds: 86400}",
            "spec.cors.maxAgeSeconds: 86400 s is above what browsers honour: Chromium caps Max-Age at 7200 s (Firefox at 86400 s); use 7200 or less",
        ),
        (
            "{rules: [{origins: ['https://a.example.com'], maxAgeSeconds: 7201}]}",
            "spec.cors.rules[0].maxAgeSeconds: 7201 s is above what browsers honour: Chromium caps Max-Age at 7200 s (Firefox at 86400 s); use 7200 or less",
        ),
        (
            "{allowOrigins: ['https://a.example.com'], allowHeaders: ['*']}",
            "spec.cors.allowHeaders: \"*\" never covers Authorization (Fetch), so a request that sends an Authorization header fails its preflight; add \"authorization\" to the list if the API expects it",
        ),
        (
            "{rules: [{origins: ['https://a.example.com'], allowHeaders: ['*', 'x-a']}]}",
            "spec.cors.rules[0].allowHeaders: \"*\" never covers Authorization (Fetch), so a request that sends an Authorization header fails its preflight; add \"authorization\" to the list if the API expects it",
        ),
        (
            "{allowOrigins: ['https://a.example.com'], allowPrivateNetwork: true}",
            "spec.cors.allowPrivateNetwork: Private Network Access preflights are deprecated in Chromium (replaced by the Local Network Access permission prompt); do not rely on Access-Control-Allow-Private-Network",
        ),
        (
            "{rules: [{origins: ['https://a.example.com'], allowPrivateNetwork: true}]}",
            "spec.cors.rules[0].allowPrivateNetwork: Private Network Access preflights are deprecated in Chromium (replaced by the Local Network Access permission prompt); do not rely on Access-Control-Allow-Private-Network",
        ),
    ];

    #[test]
    fn each_warning_is_triggered_with_its_exact_text() {
        for (cors, want) in TRIGGERED {
            assert_eq!(texts(cors), vec![want.to_string()], "for {cors}");
            // Kubernetes truncates admission warnings above 256 characters.
            assert!(want.chars().count() <= 256, "too long for kubectl: {want}");
        }
    }

    #[test]
    fn private_network_with_broad_origins_adds_a_second_warning() {
        let broad_cases = [
            "{allowOrigins: ['*'], allowPrivateNetwork: true}",
            "{allowOriginPatterns: ['https://.+'], allowPrivateNetwork: true}",
        ];
        for cors in broad_cases {
            let got = texts(cors);
            assert!(
                got.contains(&"spec.cors.allowPrivateNetwork: allowPrivateNetwork with broad origins (\"*\" or a whole public suffix): any website may reach this private-network service from a visitor's browser; list trusted origins".to_string()),
                "{cors}: {got:#?}"
            );
        }
        let got =
            texts("{rules: [{origins: ['https://*.vercel.app'], allowPrivateNetwork: true}]}");
        assert_eq!(got.len(), 3, "{got:#?}");
        assert!(got[2].starts_with(
            "spec.cors.rules[0].allowPrivateNetwork: allowPrivateNetwork with broad origins"
        ));
    }

    /// Near misses: each is one step from a case above and must raise nothing.
    #[test]
    fn near_misses_raise_nothing() {
        let quiet = [
            // A registrable domain under a public suffix, not the suffix itself.
            "{allowOrigins: ['https://*.example.github.io', 'https://*.example.co.uk']}",
            // A regex anchored to one's own domain.
            "{allowOriginPatterns: ['https://[a-z0-9-]+\\.example\\.com']}",
            // "*" without credentials: a deliberate public API.
            "{allowOrigins: ['*']}",
            // Wildcards without credentials, exact origins with credentials.
            "{allowOrigins: ['https://*.example.com'], allowCredentials: false}",
            "{allowOrigins: ['https://a.example.com'], allowCredentials: true}",
            "{allowCredentials: true, allowOrigins: ['https://a.example.com'], rules: [{origins: ['https://*.example.com'], allowCredentials: false}]}",
            "{rules: [{origins: ['https://*.example.com'], allowMethods: [GET]}]}",
            // The Chromium cap itself is fine.
            "{allowOrigins: ['https://a.example.com'], maxAgeSeconds: 7200}",
            "{rules: [{origins: ['https://a.example.com'], maxAgeSeconds: 600}]}",
            // "*" with Authorization listed by name; named headers only.
            "{allowOrigins: ['https://a.example.com'], allowHeaders: ['*', 'Authorization']}",
            "{allowOrigins: ['https://a.example.com'], allowHeaders: ['content-type']}",
            // Private network off; a rule turning it off.
            "{allowOrigins: ['https://a.example.com'], allowPrivateNetwork: false}",
            "{rules: [{origins: ['https://a.example.com'], allowPrivateNetwork: false}]}",
            // An origin whose host merely ends like a suffix.
            "{allowOrigins: ['https://github.io', 'https://www.example.com']}",
        ];
        for cors in quiet {
            assert_eq!(texts(cors), Vec::<String>::new(), "for {cors}");
        }
    }

    #[test]
    fn invalid_specs_never_panic() {
        let s = spec(
            "{allowOrigins: ['nope', '*'], allowOriginPatterns: ['(x'], maxAgeSeconds: -5, rules: [{}]}",
        );
        assert!(super::super::validate(&s).is_err());
        assert_eq!(warnings(&s), vec![]);
    }

    #[test]
    fn the_public_suffix_list_knows_icann_and_private_suffixes() {
        // What the hand-written subset held before psl, a sample from each section.
        for s in [
            "com",
            "co.uk",
            "com.au",
            "github.io",
            "vercel.app",
            "s3.amazonaws.com",
        ] {
            assert!(is_public_suffix(s), "{s}");
        }
        for s in [
            "example.com",
            "corsgate.dev",
            "a.b.example.org",
            "nosuchtld",
        ] {
            assert!(!is_public_suffix(s), "{s}");
        }
        assert_eq!(
            named_suffixes("^https://[a-z0-9-]+\\.github\\.io$"),
            ["github.io", "io"]
        );
    }
}
