//! ingress-nginx's CORS annotations (`nginx.ingress.kubernetes.io/enable-cors`,
//! `cors-allow-origin`, `-methods`, `-headers`, `-expose-headers`, `-credentials`,
//! `-max-age`) on Ingress objects, both ways.
//!
//! The controller's semantics, from kubernetes/ingress-nginx
//! `internal/ingress/annotations/cors/main.go` and `internal/ingress/controller/template`:
//! - absent or invalid values fall back to defaults: allow-origin `*`, methods
//!   `GET, PUT, POST, DELETE, PATCH, OPTIONS`, headers
//!   `DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization`,
//!   credentials `true`, expose-headers empty, max-age `1728000`;
//! - allow-origin is a comma-separated list; an entry must match
//!   `^(https?://(\*\.)?[A-Za-z0-9\-\.]*(:[0-9]+)?|\*)?$` or is skipped; `*` anywhere makes
//!   the list `*`; a `*.` wildcard becomes `[A-Za-z0-9\-]+`: exactly one label;
//! - methods must match `^([A-Za-z]+,?\s?)+$` and headers `^([A-Za-z0-9\-\_]+,?\s?)+$`
//!   (so `*` is not accepted there and the default applies), expose-headers may hold `*`;
//! - with origin `*` the controller sends `Access-Control-Allow-Origin: *` (and
//!   Allow-Credentials: true when credentials are on), else it reflects a matching Origin;
//!   every OPTIONS from a matching origin is answered 204 at the edge; no `Vary: Origin`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{
    ImportOptions, Imported, Input, InteropError, Meta, Report, Target, escape, max_age,
    object_name, objects, of_kind, prefix, typed, with_paths,
};
use crate::policy::{CorsPolicySpec, CorsSpec, PreflightMode};

mod export;
mod paths;
pub use export::export;

const PREFIX: &str = "nginx.ingress.kubernetes.io/";
/// `defaultCorsMethods` in ingress-nginx's cors annotation parser.
pub const DEFAULT_METHODS: &str = "GET, PUT, POST, DELETE, PATCH, OPTIONS";
/// `defaultCorsHeaders` in ingress-nginx's cors annotation parser.
pub const DEFAULT_HEADERS: &str = "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization";
/// `defaultCorsMaxAge` in ingress-nginx's cors annotation parser.
pub const DEFAULT_MAX_AGE: i64 = 1_728_000;

#[derive(Deserialize)]
struct Ingress {
    #[serde(default)]
    metadata: Meta,
    #[serde(default)]
    spec: IngressSpec,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct IngressSpec {
    #[serde(default)]
    rules: Vec<Rule>,
    #[serde(default)]
    tls: Vec<Tls>,
    #[serde(default)]
    default_backend: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Rule {
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    http: Option<HttpRule>,
}

#[derive(Deserialize)]
struct HttpRule {
    #[serde(default)]
    paths: Vec<HttpPath>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HttpPath {
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    path_type: Option<String>,
    backend: Backend,
}

#[derive(Deserialize)]
struct Backend {
    #[serde(default)]
    service: Option<ServiceBackend>,
}

#[derive(Deserialize)]
struct ServiceBackend {
    name: String,
    #[serde(default)]
    port: Port,
}

#[derive(Deserialize, Default)]
struct Port {
    #[serde(default)]
    number: Option<i32>,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Tls {
    #[serde(default)]
    hosts: Vec<String>,
    #[serde(default)]
    secret_name: Option<String>,
}

/// Go's `strconv.ParseBool`, which the controller's `GetBoolAnnotation` uses.
fn go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

fn is_origin_entry(o: &str) -> bool {
    let rest = if let Some(r) = o.strip_prefix("https://") {
        r
    } else if let Some(r) = o.strip_prefix("http://") {
        r
    } else {
        return false;
    };
    let rest = rest.strip_prefix("*.").unwrap_or(rest);
    let (host, port) = match rest.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (rest, None),
    };
    host.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

fn is_list(s: &str, allow_star: bool, allow_digits: bool) -> bool {
    // The controller's regexes: words of [A-Za-z] (methods) or [A-Za-z0-9-_] (headers),
    // each followed by an optional comma and an optional single white space.
    let ok_char = |c: char| {
        c.is_ascii_alphabetic() || allow_digits && (c.is_ascii_digit() || c == '-' || c == '_')
    };
    let mut words = 0;
    let mut chars = s.chars().peekable();
    while chars.peek().is_some() {
        let mut word = false;
        if allow_star && chars.peek() == Some(&'*') {
            chars.next();
            word = true;
        } else {
            while chars.peek().is_some_and(|c| ok_char(*c)) {
                chars.next();
                word = true;
            }
        }
        if !word {
            return false;
        }
        words += 1;
        if chars.peek() == Some(&',') {
            chars.next();
        }
        if chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
    }
    words > 0
}

fn split(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(String::from)
        .collect()
}

/// The CORS part of one Ingress, as the controller reads its annotations.
fn cors_of(meta: &Meta, object: &str, report: &mut Report) -> CorsSpec {
    let get = |k: &str| {
        meta.annotations
            .get(&format!("{PREFIX}{k}"))
            .map(String::as_str)
    };
    let field = |k: &str| format!("metadata.annotations[{PREFIX}{k}]");
    let mut cors = CorsSpec::default();

    // Credentials first: the origin mapping depends on it.
    let credentials = match get("cors-allow-credentials") {
        Some(v) => match go_bool(v) {
            Some(b) => b,
            None => {
                report.warning(object, field("cors-allow-credentials"), "invalid-annotation", format!("{v:?} is not a boolean; ingress-nginx falls back to its default, true; imported as true"));
                true
            }
        },
        None => true,
    };
    let credentials_defaulted = get("cors-allow-credentials").is_none();

    let mut origins = Vec::new();
    let mut patterns = Vec::new();
    let mut star = false;
    match get("cors-allow-origin") {
        None => {
            star = true;
            report.risk(object, field("cors-allow-origin"), "default-origin-star", "absent: ingress-nginx allows every origin (*) by default; imported as allowOrigins: [\"*\"]; list the origins that should call this API");
        }
        Some(v) => {
            for o in v.split(',').map(str::trim) {
                if o == "*" {
                    star = true;
                    break;
                }
                if !is_origin_entry(o) {
                    report.warning(object, field("cors-allow-origin"), "origin-skipped", format!("{o:?} is not an origin ingress-nginx accepts (http(s)://host[:port] or *); the controller skips it and so does the import"));
                    continue;
                }
                let stripped = super::without_default_port(o);
                if stripped != o {
                    report.warning(object, field("cors-allow-origin"), "origin-default-port", format!("{o:?}: ingress-nginx matches cors-allow-origin literally and browsers never send the default port in Origin, so this entry never matched there; corsgate normalises it to {stripped:?}, which is now allowed: drop the entry if it was not meant to work"));
                }
                let o = stripped;
                if let Some((scheme, rest)) = o.split_once("://*.") {
                    // One label, as the controller's `[A-Za-z0-9\-]+`; corsgate's own
                    // `https://*.x` would also match deeper subdomains.
                    patterns.push(format!(
                        "^{}://[A-Za-z0-9-]+\\.{}$",
                        escape(scheme),
                        escape(rest)
                    ));
                    report.info(object, field("cors-allow-origin"), "origin-one-label", format!("{o:?} matches exactly one label in ingress-nginx; imported as an allowOriginPatterns entry with the same meaning (corsgate's \"{scheme}://*.{rest}\" would match deeper subdomains too)"));
                } else {
                    origins.push(o.to_ascii_lowercase());
                }
            }
            if !star && origins.is_empty() && patterns.is_empty() {
                report.risk(object, field("cors-allow-origin"), "no-origin", "no valid origin: ingress-nginx then never adds CORS headers; imported with no allowed origin, which is the same");
            }
        }
    }
    if star {
        cors.allow_origins = vec!["*".into()];
        if credentials {
            let why = if credentials_defaulted {
                "cors-allow-credentials is absent, so true"
            } else {
                "cors-allow-credentials is true"
            };
            report.risk(object, field("cors-allow-credentials"), "origin-star-credentials", format!("all origins with credentials ({why}): corsgate refuses it (it would let every site make credentialed requests); ingress-nginx answers Access-Control-Allow-Origin: * with Allow-Credentials: true, which browsers refuse for credentialed requests (Fetch), so only requests without credentials ever worked; imported as allowCredentials: false, the same behaviour; to keep cookies, list the origins and set allowCredentials: true"));
        }
    } else {
        cors.allow_origins = origins;
        cors.allow_origin_patterns = patterns;
        cors.allow_credentials = credentials;
        if credentials && credentials_defaulted {
            report.warning(object, field("cors-allow-credentials"), "default-credentials", "absent: ingress-nginx defaults to true, so the listed origins may send cookies and HTTP auth; imported as allowCredentials: true; set it to false if the API does not need them");
        }
    }

    let methods = match get("cors-allow-methods") {
        Some(v) if is_list(v, false, false) => v.to_string(),
        Some(v) => {
            report.warning(object, field("cors-allow-methods"), "invalid-annotation", format!("{v:?} is not a method list ingress-nginx accepts; it uses its default {DEFAULT_METHODS}, and so does the import"));
            DEFAULT_METHODS.into()
        }
        None => {
            report.info(
                object,
                field("cors-allow-methods"),
                "default-methods",
                format!("absent: ingress-nginx's default {DEFAULT_METHODS}; imported as that list"),
            );
            DEFAULT_METHODS.into()
        }
    };
    cors.allow_methods = Some(
        split(&methods)
            .into_iter()
            .map(|m| m.to_ascii_uppercase())
            .collect(),
    );

    let headers = match get("cors-allow-headers") {
        Some(v) if is_list(v, false, true) => v.to_string(),
        Some(v) => {
            report.warning(object, field("cors-allow-headers"), "invalid-annotation", format!("{v:?} is not a header list ingress-nginx accepts (\"*\" is not); it uses its default {DEFAULT_HEADERS}, and so does the import"));
            DEFAULT_HEADERS.into()
        }
        None => {
            report.info(
                object,
                field("cors-allow-headers"),
                "default-headers",
                format!("absent: ingress-nginx's default {DEFAULT_HEADERS}; imported as that list"),
            );
            DEFAULT_HEADERS.into()
        }
    };
    cors.allow_headers = split(&headers)
        .into_iter()
        .map(|h| h.to_ascii_lowercase())
        .collect();

    if let Some(v) = get("cors-expose-headers") {
        if is_list(v, true, true) {
            let list = split(v);
            if list.iter().any(|h| h == "*") && cors.allow_credentials {
                report.warning(object, field("cors-expose-headers"), "expose-star-credentials", "\"*\" with credentials: browsers treat it as a header literally named \"*\" (Fetch) and corsgate refuses it; imported without \"*\": list the headers the page reads");
                cors.expose_headers = list
                    .into_iter()
                    .filter(|h| h != "*")
                    .map(|h| h.to_ascii_lowercase())
                    .collect();
            } else {
                cors.expose_headers = list
                    .into_iter()
                    .map(|h| if h == "*" { h } else { h.to_ascii_lowercase() })
                    .collect();
            }
        } else {
            report.warning(object, field("cors-expose-headers"), "invalid-annotation", format!("{v:?} is not a header list ingress-nginx accepts; it exposes nothing, and so does the import"));
        }
    }

    let (age, from) = match get("cors-max-age") {
        Some(v) => {
            match v.trim().parse::<i64>() {
                Ok(n) => (n, "(cors-max-age)"),
                Err(_) => {
                    report.warning(object, field("cors-max-age"), "invalid-annotation", format!("{v:?} is not an integer; ingress-nginx uses its default {DEFAULT_MAX_AGE}"));
                    (DEFAULT_MAX_AGE, "(ingress-nginx's default)")
                }
            }
        }
        None => (DEFAULT_MAX_AGE, "(absent: ingress-nginx's default)"),
    };
    cors.max_age_seconds = max_age(age, object, &field("cors-max-age"), from, report);
    cors.preflight = None; // Respond: answered at the edge, as the controller does.
    report.info(object, "metadata.annotations", "preflight-checked", "ingress-nginx answers every OPTIONS from an allowed origin with 204 and the full lists, whatever method or headers it asks for; corsgate answers only real preflights (OPTIONS with Access-Control-Request-Method), with the requested method and headers when allowed, and 403 when not (unmatchedPreflight: Reject); browsers get the same verdict");
    report.info(object, "metadata.annotations", "vary-origin", "ingress-nginx sends no Vary: Origin, so a shared cache may serve one origin's answer to another; corsgate adds Vary: Origin to every response of the route");
    cors
}

/// The Ingress objects of one input as CorsPolicy.
pub fn import(
    input: &Input,
    opts: &ImportOptions,
    report: &mut Report,
) -> Result<Vec<Imported>, InteropError> {
    let mut out = Vec::new();
    let objs = objects(input)?;
    let regex_hosts = paths::regex_hosts(&objs);
    for (location, value) in objs {
        let Some(name_hint) = of_kind(&location, &value, "Ingress", "not-ingress", report) else {
            continue;
        };
        let ing: Ingress = typed(&location, &format!("Ingress {name_hint}"), value)?;
        let namespace = ing.metadata.namespace();
        let object = format!("Ingress {namespace}/{}", ing.metadata.name);
        let enabled = ing
            .metadata
            .annotations
            .get(&format!("{PREFIX}enable-cors"))
            .and_then(|v| go_bool(v))
            .unwrap_or(false);
        if !enabled {
            report.info(
                &object,
                format!("metadata.annotations[{PREFIX}enable-cors]"),
                "cors-disabled",
                "CORS is not enabled on this Ingress; not imported",
            );
            continue;
        }
        let cors = cors_of(&ing.metadata, &object, report);
        if ing.spec.default_backend.is_some() {
            report.info(
                &object,
                "spec.defaultBackend",
                "default-backend",
                "not imported: corsgate routes by host and path; requests for other hosts get 404",
            );
        }
        for (i, t) in ing.spec.tls.iter().enumerate() {
            report.info(&object, format!("spec.tls[{i}]"), "tls", format!("TLS for {} (secret {}) is not imported: terminate TLS in front of corsgate or add it to the policy by hand", t.hosts.join(", "), t.secret_name.as_deref().unwrap_or("<none>")));
        }
        // host -> target -> paths (None: every path)
        let mut by_host: BTreeMap<String, BTreeMap<Target, Vec<Option<String>>>> = BTreeMap::new();
        for (ri, rule) in ing.spec.rules.iter().enumerate() {
            let hosts: Vec<String> = match &rule.host {
                Some(h) if !h.is_empty() => vec![h.to_ascii_lowercase()],
                _ if !opts.hosts.is_empty() => {
                    report.warning(&object, format!("spec.rules[{ri}].host"), "host-from-flag", format!("no host: the rule matches every host; imported for the --host values {}", opts.hosts.join(", ")));
                    opts.hosts.clone()
                }
                _ => {
                    return Err(InteropError::invalid(
                        &location,
                        format!(
                            "{object}: spec.rules[{ri}].host: missing, so the rule matches every host and corsgate needs host names; fix: pass --host NAME (repeatable)"
                        ),
                    ));
                }
            };
            let Some(http) = &rule.http else { continue };
            for (pi, p) in http.paths.iter().enumerate() {
                let at = format!("spec.rules[{ri}].http.paths[{pi}]");
                let raw = p.path.clone().unwrap_or_else(|| "/".into());
                let regex = match &rule.host {
                    Some(h) if !h.is_empty() => regex_hosts.get(&h.to_ascii_lowercase()).cloned(),
                    _ => paths::regex_annotation(&ing.metadata).map(|a| format!("{object}'s {a}")),
                };
                let path = paths::path_of(
                    &raw,
                    p.path_type.as_deref(),
                    regex.as_ref(),
                    &object,
                    &at,
                    report,
                );
                // --upstream replaces every backend (one upstream-from-flag line says so).
                let target = match (&opts.upstream, &p.backend.service) {
                    (Some(u), _) => Target::Url(u.clone()),
                    (None, Some(s)) => match (s.port.number, &s.port.name) {
                        (Some(n), _) => Target::Service(s.name.clone(), n),
                        (None, name) => {
                            return Err(InteropError::invalid(
                                &location,
                                format!(
                                    "{object}: {at}.backend.service.port: named port {:?}, and a CorsPolicy needs the Service's port number; fix: set port.number, or pass --upstream URL",
                                    name.as_deref().unwrap_or("")
                                ),
                            ));
                        }
                    },
                    (None, None) => {
                        return Err(InteropError::invalid(
                            &location,
                            format!(
                                "{object}: {at}.backend: not a Service; fix: pass --upstream URL"
                            ),
                        ));
                    }
                };
                for h in &hosts {
                    by_host
                        .entry(h.clone())
                        .or_default()
                        .entry(target.clone())
                        .or_default()
                        .push(path.clone());
                }
            }
        }
        // (target, paths) -> hosts: one policy per distinct pair, as a policy is hosts × paths.
        let mut groups: BTreeMap<(Target, Vec<String>), Vec<String>> = BTreeMap::new();
        for (host, targets) in by_host {
            for (target, paths) in targets {
                groups
                    .entry((target, with_paths(&paths)))
                    .or_default()
                    .push(host.clone());
            }
        }
        if groups.is_empty() {
            report.warning(
                &object,
                "spec.rules",
                "no-paths",
                "no rule with paths: nothing to route; not imported",
            );
        }
        let many = groups.len() > 1;
        for (n, ((target, paths), hosts)) in groups.into_iter().enumerate() {
            let upstream = target.upstream();
            let name = if many {
                object_name(&format!("{}-{}", ing.metadata.name, n + 1))
            } else {
                object_name(&ing.metadata.name)
            };
            out.push(Imported {
                namespace: namespace.clone(),
                name,
                spec: CorsPolicySpec {
                    mode: opts.mode,
                    hosts,
                    paths,
                    upstream,
                    cors: cors.clone(),
                    response_headers: None,
                    websocket: None,
                    debug: None,
                    tls: None,
                },
                source: object.clone(),
            });
        }
        if many {
            report.info(
                &object,
                "spec.rules",
                "split-by-backend",
                format!(
                    "hosts and paths with different backends: imported as {} policies named {}-1..",
                    out.iter()
                        .filter(|p| p.name.starts_with(&object_name(&ing.metadata.name)))
                        .count(),
                    object_name(&ing.metadata.name)
                ),
            );
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
