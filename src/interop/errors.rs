//! Import errors that name their cause: a flag (`--host`, `--upstream`) checked when read, a
//! value taken from the source blamed on the source object and field, the format the input
//! looks like when nothing converts; "a corsgate bug" only for the mapping's own failures.

use super::{Format, ImportOptions, Imported, Input, InteropError, Report, objects};
use crate::policy::{self, CorsPolicySpec, Mode, Upstream};

impl ImportOptions {
    /// Checks `--host` and `--upstream` as corsgate's validator would, so that a mistake in
    /// a flag is reported as one (naming the flag and the fix), not as a policy error.
    pub fn check(&self) -> Result<(), InteropError> {
        let probe = CorsPolicySpec {
            hosts: if self.hosts.is_empty() {
                vec!["probe.example".into()]
            } else {
                self.hosts.clone()
            },
            upstream: match &self.upstream {
                Some(u) => Upstream {
                    url: Some(u.clone()),
                    ..Upstream::default()
                },
                None => Upstream {
                    service: Some(policy::ServiceRef {
                        name: "probe".into(),
                        port: 80,
                    }),
                    ..Upstream::default()
                },
            },
            mode: Mode::Enforce,
            paths: Vec::new(),
            cors: crate::policy::CorsSpec::default(),
            response_headers: None,
            websocket: None,
            debug: None,
            tls: None,
        };
        let Err(errors) = policy::validate(&probe) else {
            return Ok(());
        };
        for e in errors {
            if let Some(i) = e
                .path
                .strip_prefix("spec.hosts[")
                .and_then(|r| r.strip_suffix(']'))
                .and_then(|i| i.parse::<usize>().ok())
            {
                let h = self.hosts.get(i).map_or("", String::as_str);
                let name = h.split_once("://").map_or(h, |(_, r)| r);
                let name = name.split(['/', ':']).next().unwrap_or(name);
                let fix = if name != h && !name.is_empty() {
                    format!("pass --host {name} (a host name, without scheme, port or path)")
                } else {
                    e.fix.clone()
                };
                return Err(InteropError::invalid(
                    format!("--host {h}"),
                    format!("{}; fix: {fix}", e.message),
                ));
            }
            if e.path.starts_with("spec.upstream") {
                let u = self.upstream.as_deref().unwrap_or("");
                let fix = if u.contains("://") || u.is_empty() {
                    e.fix.clone()
                } else {
                    format!("pass --upstream http://{u} (or https://{u}): scheme://host[:port]")
                };
                return Err(InteropError::invalid(
                    format!("--upstream {u}"),
                    format!("{}; fix: {fix}", e.message),
                ));
            }
        }
        Ok(())
    }
}

/// A validation failure of an imported policy: a value taken from the source is blamed on
/// the source object and field; anything else is corsgate's mapping, a bug.
pub(super) fn invalid_import(
    format: Format,
    p: &Imported,
    errors: &[policy::FieldError],
) -> InteropError {
    let from_source: Vec<String> = errors
        .iter()
        .filter_map(|e| {
            source_field(format, &e.path).map(|f| {
                format!(
                    "{f}: {} (imported as {}); fix in the source: {}",
                    e.message, e.path, e.fix
                )
            })
        })
        .collect();
    if from_source.len() == errors.len() {
        let object = if p.source.is_empty() {
            format!("CorsPolicy {}/{}", p.namespace, p.name)
        } else {
            p.source.clone()
        };
        return InteropError::invalid(object, from_source.join("; "));
    }
    let texts: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    InteropError::invalid(
        format!("CorsPolicy {}/{}", p.namespace, p.name),
        format!(
            "the imported policy is not valid: {}; fix: report this as a corsgate bug with the input",
            texts.join("; ")
        ),
    )
}

/// The source field a CorsPolicy field's value was taken from, per format.
fn source_field(format: Format, path: &str) -> Option<String> {
    let table: &[(&str, &str)] = match format {
        Format::IngressNginx => &[
            (
                "spec.cors.allowOrigins",
                "metadata.annotations[nginx.ingress.kubernetes.io/cors-allow-origin]",
            ),
            (
                "spec.cors.allowMethods",
                "metadata.annotations[nginx.ingress.kubernetes.io/cors-allow-methods]",
            ),
            (
                "spec.cors.allowHeaders",
                "metadata.annotations[nginx.ingress.kubernetes.io/cors-allow-headers]",
            ),
            (
                "spec.cors.exposeHeaders",
                "metadata.annotations[nginx.ingress.kubernetes.io/cors-expose-headers]",
            ),
            ("spec.hosts", "spec.rules[].host"),
            ("spec.paths", "spec.rules[].http.paths[].path"),
            (
                "spec.upstream.service",
                "spec.rules[].http.paths[].backend.service",
            ),
        ],
        Format::GatewayApi => &[
            (
                "spec.cors.allowOrigins",
                "spec.rules[].filters[].cors.allowOrigins",
            ),
            (
                "spec.cors.allowOriginPatterns",
                "spec.rules[].filters[].cors.allowOrigins",
            ),
            (
                "spec.cors.allowMethods",
                "spec.rules[].filters[].cors.allowMethods",
            ),
            (
                "spec.cors.allowHeaders",
                "spec.rules[].filters[].cors.allowHeaders",
            ),
            (
                "spec.cors.exposeHeaders",
                "spec.rules[].filters[].cors.exposeHeaders",
            ),
            ("spec.hosts", "spec.hostnames"),
            ("spec.paths", "spec.rules[].matches[].path.value"),
            ("spec.upstream.service", "spec.rules[].backendRefs[0]"),
        ],
        Format::Cloudfront => &[
            (
                "spec.cors.allowOrigins",
                "CorsConfig.AccessControlAllowOrigins",
            ),
            (
                "spec.cors.allowMethods",
                "CorsConfig.AccessControlAllowMethods",
            ),
            (
                "spec.cors.allowHeaders",
                "CorsConfig.AccessControlAllowHeaders",
            ),
            (
                "spec.cors.exposeHeaders",
                "CorsConfig.AccessControlExposeHeaders",
            ),
            ("spec.responseHeaders.set", "CustomHeadersConfig"),
            ("spec.responseHeaders.remove", "RemoveHeadersConfig"),
            ("spec.responseHeaders.security", "SecurityHeadersConfig"),
        ],
    };
    table
        .iter()
        .find(|(spec, _)| {
            path == *spec
                || path.starts_with(&format!("{spec}["))
                || path.starts_with(&format!("{spec}."))
        })
        .map(|(_, f)| (*f).to_string())
}

/// The format the inputs look like, when it is not `format`: for the error when nothing
/// converts.
fn guess_format(inputs: &[Input], format: Format) -> Option<&'static str> {
    let mut kinds = Vec::new();
    for input in inputs {
        if let Ok(objs) = objects(input) {
            for (_, v) in objs {
                if v.get("ResponseHeadersPolicy").is_some()
                    || v.get("ResponseHeadersPolicyConfig").is_some()
                {
                    kinds.push(Format::Cloudfront);
                }
                match v.get("kind").and_then(|k| k.as_str()) {
                    Some("Ingress") => kinds.push(Format::IngressNginx),
                    Some("HTTPRoute") => kinds.push(Format::GatewayApi),
                    _ => {}
                }
            }
        }
    }
    kinds.into_iter().find(|k| *k != format).map(|k| match k {
        Format::IngressNginx => "ingress-nginx",
        Format::GatewayApi => "gateway-api",
        Format::Cloudfront => "cloudfront",
    })
}

pub(super) fn with_format_hint(e: InteropError, format: Format, inputs: &[Input]) -> InteropError {
    match (e, guess_format(inputs, format)) {
        (InteropError::Invalid { location, message }, Some(f)) if format == Format::Cloudfront => {
            InteropError::Invalid {
                location,
                message: format!("{message}; the input looks like {f}: try `corsgate import {f}`"),
            }
        }
        (e, _) => e,
    }
}

pub(super) fn nothing_imported(format: Format, inputs: &[Input], report: &Report) -> InteropError {
    let names: Vec<&str> = inputs.iter().map(|i| i.name.as_str()).collect();
    let disabled = report
        .lines
        .iter()
        .filter(|l| l.key == "cors-disabled")
        .count();
    let why = match format {
        Format::IngressNginx if disabled > 0 => format!(
            "no Ingress has nginx.ingress.kubernetes.io/enable-cors: \"true\" ({disabled} read with CORS off), so ingress-nginx adds no CORS headers and there is nothing to convert"
        ),
        Format::IngressNginx => "no Ingress with CORS enabled and paths was found".to_string(),
        Format::GatewayApi => "no HTTPRoute rule with a CORS filter was found".to_string(),
        Format::Cloudfront => "no response headers policy was found".to_string(),
    };
    let hint = match guess_format(inputs, format) {
        Some(f) => format!("; the input looks like {f}: try `corsgate import {f}`"),
        None => String::new(),
    };
    InteropError::invalid(names.join(", "), format!("nothing imported: {why}{hint}"))
}
