//! Export: CorsPolicies as Ingress objects with ingress-nginx's CORS annotations, and a
//! report of what the annotations cannot say.

use super::*;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutIngress {
    api_version: &'static str,
    kind: &'static str,
    metadata: OutMeta,
    spec: OutSpec,
}

#[derive(Serialize)]
struct OutMeta {
    name: String,
    namespace: String,
    annotations: BTreeMap<String, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutSpec {
    ingress_class_name: &'static str,
    rules: Vec<serde_json::Value>,
}

/// CorsPolicy as Ingress objects with ingress-nginx annotations.
pub fn export(policies: &[Imported], report: &mut Report) -> Result<String, InteropError> {
    let mut out = String::new();
    for p in policies {
        let object = format!("CorsPolicy {}/{}", p.namespace, p.name);
        let spec = p.spec.with_presets();
        let c = &spec.cors;
        let Some(svc) = &spec.upstream.service else {
            return Err(InteropError::invalid(
                &object,
                "spec.upstream.url: an Ingress backend must be a Service; fix: use upstream.service, or create a Service (e.g. ExternalName) for the URL and point the policy at it",
            ));
        };
        let mut a = BTreeMap::new();
        let mut set = |k: &str, v: String| {
            a.insert(format!("{PREFIX}{k}"), v);
        };
        set("enable-cors", "true".into());
        let mut origins: Vec<String> = Vec::new();
        for o in &c.allow_origins {
            if o == "*" {
                origins = vec!["*".into()];
                break;
            }
            if o == "null" || !is_origin_entry(o) {
                report.risk(
                    &object,
                    "spec.cors.allowOrigins",
                    "origin-dropped",
                    format!("{o:?} cannot be written as an ingress-nginx origin; dropped"),
                );
                continue;
            }
            if o.contains("://*.") {
                report.warning(&object, "spec.cors.allowOrigins", "origin-one-label", format!("{o:?}: ingress-nginx's wildcard matches exactly one label, corsgate's one or more; deeper subdomains lose access"));
            }
            origins.push(o.clone());
        }
        let mut dropped = 0;
        for p in &c.allow_origin_patterns {
            match one_label_wildcard(p) {
                Some(o) if !origins.iter().any(|x| x == "*") => {
                    report.info(
                        &object,
                        "spec.cors.allowOriginPatterns",
                        "pattern-as-wildcard",
                        format!(
                            "{p:?} is exactly ingress-nginx's one-label wildcard; written as {o:?}"
                        ),
                    );
                    origins.push(o);
                }
                Some(_) => {}
                None => dropped += 1,
            }
        }
        if dropped > 0 {
            report.risk(&object, "spec.cors.allowOriginPatterns", "patterns-dropped", "ingress-nginx takes no regular expressions for origins (only the one-label `https://*.suffix`); dropped: list those origins");
        }
        if origins.is_empty() {
            report.risk(&object, "spec.cors.allowOrigins", "no-origin", "no origin left to write, and ingress-nginx reads an absent cors-allow-origin as \"*\": the Ingress is written without enable-cors (no CORS headers at all)");
            a.clear();
        } else {
            a.insert(format!("{PREFIX}cors-allow-origin"), origins.join(", "));
            a.insert(
                format!("{PREFIX}cors-allow-credentials"),
                c.allow_credentials.to_string(),
            );
            let methods: Vec<String> = match &c.allow_methods {
                Some(m) if m.iter().any(|x| x == "*") => {
                    report.info(
                        &object,
                        "spec.cors.allowMethods",
                        "methods-star",
                        "ingress-nginx takes no \"*\"; written as every method a browser can send",
                    );
                    crate::interop::BROWSER_METHODS.map(String::from).to_vec()
                }
                Some(m) => m.clone(),
                None => vec!["GET".into(), "HEAD".into(), "POST".into()],
            };
            a.insert(format!("{PREFIX}cors-allow-methods"), methods.join(", "));
            if c.allow_headers.iter().any(|h| h == "*") {
                report.risk(&object, "spec.cors.allowHeaders", "headers-star", format!("ingress-nginx takes no \"*\" and falls back to its default {DEFAULT_HEADERS}; list the headers"));
            } else if c.allow_headers.is_empty() {
                report.warning(&object, "spec.cors.allowHeaders", "headers-default", format!("no headers allowed beyond the safelisted ones; ingress-nginx cannot say that and allows its default {DEFAULT_HEADERS}"));
            } else {
                a.insert(
                    format!("{PREFIX}cors-allow-headers"),
                    c.allow_headers.join(","),
                );
            }
            if !c.expose_headers.is_empty() {
                a.insert(
                    format!("{PREFIX}cors-expose-headers"),
                    c.expose_headers.join(","),
                );
            }
            let age = c.max_age_seconds.unwrap_or_else(|| {
                report.info(&object, "spec.cors.maxAgeSeconds", "max-age-explicit", "absent (browsers cache 5 s); written as cors-max-age: 5, since ingress-nginx's default is 1728000");
                5
            });
            a.insert(format!("{PREFIX}cors-max-age"), age.to_string());
            export_limits(&object, &spec, report);
        }
        let paths: Vec<String> = if spec.paths.is_empty() {
            vec!["/".into()]
        } else {
            spec.paths.clone()
        };
        let rules = spec
            .hosts
            .iter()
            .map(|h| {
                serde_json::json!({
                    "host": h,
                    "http": {"paths": paths.iter().map(|p| serde_json::json!({
                        "path": p,
                        "pathType": "Prefix",
                        "backend": {"service": {"name": svc.name, "port": {"number": svc.port}}},
                    })).collect::<Vec<_>>()},
                })
            })
            .collect();
        let ing = OutIngress {
            api_version: "networking.k8s.io/v1",
            kind: "Ingress",
            metadata: OutMeta {
                name: p.name.clone(),
                namespace: p.namespace.clone(),
                annotations: a,
            },
            spec: OutSpec {
                ingress_class_name: "nginx",
                rules,
            },
        };
        out.push_str("---\n");
        out.push_str(
            &serde_saphyr::to_string(&ing)
                .map_err(|e| InteropError::invalid(&object, e.to_string()))?,
        );
    }
    Ok(out)
}

/// What no ingress-nginx annotation says.
fn export_limits(object: &str, spec: &CorsPolicySpec, report: &mut Report) {
    let c = &spec.cors;
    report.risk(object, "spec.cors", "vary-origin", "ingress-nginx adds no Vary: Origin: put no shared cache in front of it, or add Vary with a configuration snippet");
    if !c.rules.is_empty() {
        report.risk(object, "spec.cors.rules", "rules-dropped", "ingress-nginx has one CORS configuration per Ingress; the per-origin rules are dropped");
    }
    if spec.mode == crate::policy::Mode::Shadow {
        report.warning(
            object,
            "spec.mode",
            "shadow-dropped",
            "ingress-nginx has no shadow mode: the annotations enforce at once",
        );
    }
    if c.allow_private_network {
        report.warning(
            object,
            "spec.cors.allowPrivateNetwork",
            "private-network-dropped",
            "ingress-nginx cannot answer private network preflights",
        );
    }
    if spec.response_headers.is_some() {
        report.warning(
            object,
            "spec.responseHeaders",
            "response-headers-dropped",
            "not written: use the controller's custom-headers ConfigMap or a configuration snippet",
        );
    }
    if matches!(
        c.preflight,
        Some(PreflightMode::Forward | PreflightMode::Passthrough)
    ) {
        report.warning(
            object,
            "spec.cors.preflight",
            "preflight-at-edge",
            "ingress-nginx always answers OPTIONS from an allowed origin at the edge",
        );
    }
    if c.origin_override == Some(false) {
        report.warning(
            object,
            "spec.cors.originOverride",
            "origin-override",
            "ingress-nginx's headers always replace the upstream's",
        );
    }
    if c.disallowed_origin == crate::policy::DisallowedOrigin::Reject {
        report.warning(object, "spec.cors.disallowedOrigin", "disallowed-origin-forwarded", "ingress-nginx forwards requests from other origins (without CORS headers) instead of answering 403");
    }
    report.warning(object, "spec.cors", "errors-without-cors", "responses ingress-nginx makes itself (custom error pages, the default backend's 404, 503 without endpoints, auth and rate-limit denials) carry no CORS headers, so the page sees a CORS error instead of the status; corsgate puts them on every response");
    report.info(object, "spec.cors.unmatchedPreflight", "unmatched-preflight-forwarded", "ingress-nginx forwards an OPTIONS from a disallowed origin to the upstream instead of answering 403; browsers block it either way");
}

/// The origin `scheme://*.suffix` when `pattern` is exactly what the import writes for it
/// (`^scheme://[A-Za-z0-9-]+\.suffix$`, the controller's `[A-Za-z0-9\-]+`: one label).
pub(super) fn one_label_wildcard(pattern: &str) -> Option<String> {
    let body = pattern.strip_prefix('^')?.strip_suffix('$')?;
    let (scheme, rest) = body.split_once("://")?;
    let escaped = rest.strip_prefix("[A-Za-z0-9-]+\\.")?;
    let mut suffix = String::new();
    let mut chars = escaped.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            suffix.push(chars.next()?);
        } else {
            suffix.push(c);
        }
    }
    let origin = format!("{scheme}://*.{suffix}");
    (matches!(scheme, "http" | "https") && escape(&suffix) == escaped && is_origin_entry(&origin))
        .then_some(origin)
}
