//! Export: CorsPolicies as HTTPRoutes with a CORS filter, and a report of what the filter
//! cannot say.

use serde_json::json;

use super::super::{Imported, InteropError, Report};
use crate::policy::{Mode, PreflightMode};

/// CorsPolicy as HTTPRoutes with a CORS filter (and a ResponseHeaderModifier for `set` and
/// `remove`).
pub fn export(policies: &[Imported], report: &mut Report) -> Result<String, InteropError> {
    let mut out = String::new();
    for p in policies {
        let object = format!("CorsPolicy {}/{}", p.namespace, p.name);
        let spec = p.spec.with_presets();
        let c = &spec.cors;
        let Some(svc) = &spec.upstream.service else {
            return Err(InteropError::invalid(
                &object,
                "spec.upstream.url: an HTTPRoute backendRef must be a Service; fix: use upstream.service, or create a Service for the URL",
            ));
        };
        let mut cors = serde_json::Map::new();
        let mut origins = Vec::new();
        for o in &c.allow_origins {
            if o == "null" {
                report.risk(
                    &object,
                    "spec.cors.allowOrigins",
                    "origin-dropped",
                    "\"null\" is not a Gateway API origin; dropped",
                );
            } else {
                origins.push(o.clone());
            }
        }
        if origins.iter().any(|o| o == "*") {
            origins = vec!["*".into()];
        }
        if !c.allow_origin_patterns.is_empty() {
            report.risk(
                &object,
                "spec.cors.allowOriginPatterns",
                "patterns-dropped",
                "Gateway API takes no regular expressions for origins; dropped: list the origins",
            );
        }
        if !c.rules.is_empty() {
            report.risk(&object, "spec.cors.rules", "rules-dropped", "an HTTPCORSFilter has one configuration for every origin; per-origin rules are dropped");
        }
        cors.insert("allowOrigins".into(), json!(origins));
        if c.allow_credentials {
            cors.insert("allowCredentials".into(), json!(true));
        }
        let methods = c
            .allow_methods
            .clone()
            .unwrap_or_else(|| vec!["GET".into(), "HEAD".into(), "POST".into()]);
        cors.insert("allowMethods".into(), json!(methods));
        if !c.allow_headers.is_empty() {
            cors.insert("allowHeaders".into(), json!(c.allow_headers));
        }
        if !c.expose_headers.is_empty() {
            cors.insert("exposeHeaders".into(), json!(c.expose_headers));
        }
        if c.max_age_seconds == Some(0) {
            report.warning(
                &object,
                "spec.cors.maxAgeSeconds",
                "max-age-zero",
                "0 is below Gateway API's minimum of 1; written as 1",
            );
        }
        if let Some(a) = c.max_age_seconds {
            cors.insert("maxAge".into(), json!(a.max(1)));
        }
        let mut filters = vec![json!({"type": "CORS", "cors": cors})];
        if let Some(rh) = &spec.response_headers {
            let mut m = serde_json::Map::new();
            if !rh.set.is_empty() {
                m.insert(
                    "set".into(),
                    json!(
                        rh.set
                            .iter()
                            .map(|h| json!({"name": h.name, "value": h.value}))
                            .collect::<Vec<_>>()
                    ),
                );
            }
            if !rh.remove.is_empty() {
                m.insert("remove".into(), json!(rh.remove));
            }
            if rh.security.is_some() {
                report.warning(&object, "spec.responseHeaders.security", "security-headers-dropped", "typed security headers (and their override: false) have no Gateway API filter; add them to set, or keep them in corsgate");
            }
            if !m.is_empty() {
                filters
                    .push(json!({"type": "ResponseHeaderModifier", "responseHeaderModifier": m}));
            }
        }
        let matches: Vec<serde_json::Value> = if spec.paths.is_empty() {
            vec![json!({"path": {"type": "PathPrefix", "value": "/"}})]
        } else {
            spec.paths
                .iter()
                .map(|p| json!({"path": {"type": "PathPrefix", "value": p}}))
                .collect()
        };
        let route = json!({
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": p.name, "namespace": p.namespace},
            "spec": {
                "hostnames": spec.hosts,
                "rules": [{"matches": matches, "filters": filters, "backendRefs": [{"name": svc.name, "port": svc.port}]}],
            },
        });
        report.info(
            &object,
            "spec",
            "parent-refs",
            "the HTTPRoute has no parentRefs: add your Gateway's",
        );
        report.warning(&object, "spec.cors", "vary-origin", "Gateway API does not require Vary: Origin and some implementations (Envoy-based ones among them) omit it; check yours before putting a shared cache in front");
        report.warning(&object, "spec.cors", "errors-without-cors", "responses the gateway makes itself (Envoy-based gateways' local replies: 404 without a route, 503 without a healthy backend, rate-limit and auth denials) carry no CORS headers, so the page sees a CORS error instead of the status; corsgate puts them on every response");
        report.info(&object, "spec.cors.unmatchedPreflight", "unmatched-preflight", "Gateway API may answer a disallowed preflight 200/204 without CORS headers (corsgate: 403); browsers block it either way");
        if spec.mode == Mode::Shadow {
            report.warning(
                &object,
                "spec.mode",
                "shadow-dropped",
                "Gateway API has no shadow mode: the filter enforces at once",
            );
        }
        if c.allow_private_network {
            report.warning(
                &object,
                "spec.cors.allowPrivateNetwork",
                "private-network-dropped",
                "HTTPCORSFilter cannot answer private network preflights",
            );
        }
        if matches!(
            c.preflight,
            Some(PreflightMode::Forward | PreflightMode::Passthrough)
        ) {
            report.warning(
                &object,
                "spec.cors.preflight",
                "preflight-at-edge",
                "an HTTPCORSFilter answers preflights at the gateway",
            );
        }
        if c.origin_override == Some(false) {
            report.warning(
                &object,
                "spec.cors.originOverride",
                "origin-override",
                "the gateway's CORS headers are not conditional on the backend's",
            );
        }
        if c.disallowed_origin == crate::policy::DisallowedOrigin::Reject {
            report.warning(&object, "spec.cors.disallowedOrigin", "disallowed-origin-forwarded", "Gateway API forwards requests from other origins (without CORS headers) instead of 403");
        }
        out.push_str("---\n");
        out.push_str(
            &serde_saphyr::to_string(&route)
                .map_err(|e| InteropError::invalid(&object, e.to_string()))?,
        );
    }
    Ok(out)
}
