//! Gateway API HTTPRoutes with the CORS filter (`HTTPCORSFilter`, GEP-1767, Standard since
//! v1.5), both ways. Field names and semantics from gateway-api `apis/v1/httproute_types.go`:
//! allowOrigins (exact, a `*` host wildcard matching any number of labels to its left, or `*`
//! alone), allowMethods (`*` or methods; GET, HEAD, POST always allowed), allowHeaders,
//! exposeHeaders, allowCredentials, maxAge (default 5). With credentials, `*` in origins,
//! methods or headers must be answered by reflecting the request's value.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::json;

use super::{
    BROWSER_METHODS, ImportOptions, Imported, Input, InteropError, Meta, Report, Target, escape,
    max_age, object_name, objects, of_kind, prefix, star_with_credentials_accepted, typed,
    with_paths,
};
use crate::policy::{CorsPolicySpec, CorsSpec, Mode, PreflightMode};

#[derive(Deserialize)]
struct Route {
    #[serde(default)]
    metadata: Meta,
    #[serde(default)]
    spec: RouteSpec,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RouteSpec {
    #[serde(default)]
    parent_refs: Vec<serde_json::Value>,
    #[serde(default)]
    hostnames: Vec<String>,
    #[serde(default)]
    rules: Vec<RouteRule>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RouteRule {
    #[serde(default)]
    matches: Vec<Match>,
    #[serde(default)]
    filters: Vec<Filter>,
    #[serde(default)]
    backend_refs: Vec<BackendRef>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Match {
    #[serde(default)]
    path: Option<PathMatch>,
    #[serde(default)]
    headers: Vec<serde_json::Value>,
    #[serde(default)]
    query_params: Vec<serde_json::Value>,
    #[serde(default)]
    method: Option<String>,
}

#[derive(Deserialize)]
struct PathMatch {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    value: Option<String>,
}

#[derive(Deserialize)]
struct Filter {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    cors: Option<CorsFilter>,
}

#[derive(Deserialize, Default, Clone, PartialEq, Debug)]
#[serde(rename_all = "camelCase")]
struct CorsFilter {
    #[serde(default)]
    allow_origins: Vec<String>,
    #[serde(default)]
    allow_credentials: Option<bool>,
    #[serde(default)]
    allow_methods: Vec<String>,
    #[serde(default)]
    allow_headers: Vec<String>,
    #[serde(default)]
    expose_headers: Vec<String>,
    #[serde(default)]
    max_age: Option<i64>,
}

#[derive(Deserialize)]
struct BackendRef {
    #[serde(default)]
    group: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    name: String,
    #[serde(default)]
    port: Option<i32>,
}

/// Gateway API's origin (exact, or a `*` wildcard host) for corsgate.
fn origin(o: &str, object: &str, field: &str, report: &mut Report, cors: &mut CorsSpec) {
    let o = super::without_default_port(o);
    let Some((scheme, host)) = o.split_once("://") else {
        cors.allow_origins.push(o.to_ascii_lowercase());
        return;
    };
    if !host.contains('*') {
        cors.allow_origins.push(o.to_ascii_lowercase());
    } else if host.starts_with("*.") && !host[2..].contains('*') {
        // "*" greedy to the left of ".suffix": one or more labels, never the bare suffix,
        // which is corsgate's wildcard.
        cors.allow_origins.push(o.to_ascii_lowercase());
    } else {
        let re = format!(
            "^{}://{}$",
            escape(scheme),
            escape(host).replace("\\*", ".*")
        );
        report.info(object, field, "origin-wildcard-pattern", format!("{o:?}: a wildcard corsgate's origin list cannot hold; imported as allowOriginPatterns {re:?} (the same greedy match)"));
        cors.allow_origin_patterns.push(re);
    }
}

fn cors_of(f: &CorsFilter, object: &str, at: &str, report: &mut Report) -> CorsSpec {
    let mut cors = CorsSpec::default();
    let credentials = f.allow_credentials.unwrap_or(false);
    cors.allow_credentials = credentials;
    if f.allow_origins.iter().any(|o| o == "*") {
        cors.allow_origins = vec!["*".into()];
        if credentials {
            cors.allow_credentials = false;
            report.risk(object, format!("{at}.allowOrigins"), "origin-star-credentials", "\"*\" with allowCredentials: Gateway API reflects every origin with credentials; corsgate refuses that on purpose (any site could act with the user's cookies, the classic CORS hole); imported as allowCredentials: false: list the trusted origins and set allowCredentials: true to keep credentials");
        }
    } else {
        for o in &f.allow_origins {
            origin(o, object, &format!("{at}.allowOrigins"), report, &mut cors);
        }
    }
    let credentials = cors.allow_credentials;
    if f.allow_methods.iter().any(|m| m == "*") {
        cors.allow_methods = Some(
            if credentials && !star_with_credentials_accepted("allowMethods") {
                report.warning(object, format!("{at}.allowMethods"), "methods-star-credentials", "\"*\" with credentials: Gateway API reflects the requested method; this corsgate refuses \"*\" with credentials, so the import lists every method a browser can send (GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS): the same for browsers, except custom methods");
                BROWSER_METHODS.map(String::from).to_vec()
            } else {
                if credentials {
                    report.info(object, format!("{at}.allowMethods"), "methods-star-credentials", "\"*\" with credentials: corsgate reflects the requested method, as Gateway API");
                }
                vec!["*".into()]
            },
        );
    } else if !f.allow_methods.is_empty() {
        // GET, HEAD and POST are always allowed in Gateway API (and by browsers, Fetch's
        // CORS-safelisted methods); list them so corsgate's preflight check agrees.
        let mut m = f.allow_methods.clone();
        for s in ["GET", "HEAD", "POST"] {
            if !m.iter().any(|x| x == s) {
                m.push(s.into());
            }
        }
        cors.allow_methods = Some(m);
    }
    if f.allow_headers.iter().any(|h| h == "*") {
        if credentials && !star_with_credentials_accepted("allowHeaders") {
            report.risk(object, format!("{at}.allowHeaders"), "headers-star-credentials", "\"*\" with credentials: Gateway API reflects the requested headers; this corsgate refuses \"*\" with credentials, so the import allows only the safelisted headers: list the request headers the pages send");
        } else {
            if credentials {
                report.info(object, format!("{at}.allowHeaders"), "headers-star-credentials", "\"*\" with credentials: corsgate reflects the requested headers, as Gateway API");
            }
            cors.allow_headers = vec!["*".into()];
        }
    } else {
        cors.allow_headers = f
            .allow_headers
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect();
    }
    for h in &f.expose_headers {
        if h == "*" && credentials {
            report.warning(object, format!("{at}.exposeHeaders"), "expose-star-credentials", "\"*\" with credentials exposes a header literally named \"*\" (Fetch); corsgate refuses it; dropped: list the headers the page reads");
        } else {
            cors.expose_headers.push(if h == "*" {
                h.clone()
            } else {
                h.to_ascii_lowercase()
            });
        }
    }
    match f.max_age {
        Some(a) => cors.max_age_seconds = max_age(a, object, &format!("{at}.maxAge"), "(maxAge)", report),
        None => report.info(object, format!("{at}.maxAge"), "max-age-default", "absent: Gateway API sends Access-Control-Max-Age: 5; corsgate sends no Max-Age, which browsers treat as 5 s: the same cache time"),
    }
    cors
}

/// One policy in the making: its CORS and the rules' paths (None: every path).
type Group = (CorsSpec, Vec<Option<String>>);

/// The HTTPRoutes of one input as CorsPolicy: one policy per distinct (CORS filter, backend)
/// among the route's rules, with the paths of those rules.
pub fn import(
    input: &Input,
    opts: &ImportOptions,
    report: &mut Report,
) -> Result<Vec<Imported>, InteropError> {
    let mut out = Vec::new();
    for (location, value) in objects(input)? {
        let Some(hint) = of_kind(&location, &value, "HTTPRoute", "not-httproute", report) else {
            continue;
        };
        let route: Route = typed(&location, &format!("HTTPRoute {hint}"), value)?;
        let namespace = route.metadata.namespace();
        let object = format!("HTTPRoute {namespace}/{}", route.metadata.name);
        if !route.spec.parent_refs.is_empty() {
            report.info(&object, "spec.parentRefs", "parent-refs-ignored", "ignored: the corsgate proxy is the edge itself; point DNS (or the Gateway's listener) at it");
        }
        let hosts: Vec<String> = if !route.spec.hostnames.is_empty() {
            route
                .spec
                .hostnames
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect()
        } else if !opts.hosts.is_empty() {
            report.warning(
                &object,
                "spec.hostnames",
                "host-from-flag",
                format!(
                    "absent: the route takes the listener's hosts; imported for --host {}",
                    opts.hosts.join(", ")
                ),
            );
            opts.hosts.clone()
        } else {
            return Err(InteropError::invalid(
                &location,
                format!(
                    "{object}: spec.hostnames: absent, so the route matches the Gateway listener's hosts, which corsgate cannot see; fix: pass --host NAME (repeatable)"
                ),
            ));
        };
        let mut groups: BTreeMap<(String, Target), Group> = BTreeMap::new();
        for (ri, rule) in route.spec.rules.iter().enumerate() {
            let at = format!("spec.rules[{ri}]");
            let cors_filters: Vec<(usize, &CorsFilter)> = rule
                .filters
                .iter()
                .enumerate()
                .filter(|(_, f)| f.kind == "CORS")
                .filter_map(|(i, f)| f.cors.as_ref().map(|c| (i, c)))
                .collect();
            let Some((fi, filter)) = cors_filters.first() else {
                report.info(&object, format!("{at}.filters"), "rule-without-cors", "no CORS filter: not imported (add a policy without origins if corsgate must route it)");
                continue;
            };
            for f in &rule.filters {
                if f.kind != "CORS" {
                    report.warning(&object, format!("{at}.filters"), "filter-dropped", format!("filter {} is not imported: corsgate applies CORS and responseHeaders only", f.kind));
                }
            }
            let cors = cors_of(filter, &object, &format!("{at}.filters[{fi}].cors"), report);
            let target = match rule.backend_refs.as_slice() {
                [] => match &opts.upstream {
                    Some(u) => Target::Url(u.clone()),
                    None => {
                        return Err(InteropError::invalid(
                            &location,
                            format!(
                                "{object}: {at}.backendRefs: none; fix: add a backendRef or pass --upstream URL"
                            ),
                        ));
                    }
                },
                refs => {
                    if refs.len() > 1 {
                        report.warning(
                            &object,
                            format!("{at}.backendRefs"),
                            "weighted-backends",
                            format!(
                                "{} backends: corsgate sends to one; imported with the first, {}",
                                refs.len(),
                                refs[0].name
                            ),
                        );
                    }
                    let b = &refs[0];
                    let service = b.kind.as_deref().unwrap_or("Service") == "Service"
                        && b.group.as_deref().unwrap_or("").is_empty();
                    match (service, b.port) {
                        (true, Some(port)) => Target::Service(b.name.clone(), port),
                        _ => {
                            match &opts.upstream {
                                Some(u) => {
                                    report.warning(&object, format!("{at}.backendRefs[0]"), "backend-not-service", format!("not a Service with a port; imported with --upstream {u}"));
                                    Target::Url(u.clone())
                                }
                                None => {
                                    return Err(InteropError::invalid(
                                        &location,
                                        format!(
                                            "{object}: {at}.backendRefs[0]: not a core Service with a port; fix: pass --upstream URL"
                                        ),
                                    ));
                                }
                            }
                        }
                    }
                }
            };
            let mut paths = Vec::new();
            let matches: Vec<Match> = if rule.matches.is_empty() {
                vec![Match::default()]
            } else {
                rule.matches
                    .iter()
                    .map(|m| Match {
                        path: m.path.as_ref().map(|p| PathMatch {
                            kind: p.kind.clone(),
                            value: p.value.clone(),
                        }),
                        headers: m.headers.clone(),
                        query_params: m.query_params.clone(),
                        method: m.method.clone(),
                    })
                    .collect()
            };
            for (mi, m) in matches.iter().enumerate() {
                let mat = format!("{at}.matches[{mi}]");
                if !m.headers.is_empty() || !m.query_params.is_empty() || m.method.is_some() {
                    report.warning(&object, &mat, "match-conditions-dropped", "header, query or method conditions are not imported: corsgate routes by host and path only, so the policy covers every request to these paths");
                }
                let (kind, value) = match &m.path {
                    Some(p) => (
                        p.kind.clone().unwrap_or_else(|| "PathPrefix".into()),
                        p.value.clone().unwrap_or_else(|| "/".into()),
                    ),
                    None => ("PathPrefix".into(), "/".into()),
                };
                match kind.as_str() {
                    "PathPrefix" => paths.push(prefix(&value)),
                    "Exact" => {
                        report.warning(&object, format!("{mat}.path.type"), "path-exact-as-prefix", format!("Exact {value:?}: corsgate paths are segment-aware prefixes, so the policy also covers {value}/..."));
                        paths.push(prefix(&value));
                    }
                    other => {
                        report.risk(&object, format!("{mat}.path"), "path-regex", format!("{other} {value:?}: corsgate matches path prefixes only; this match is not imported"));
                    }
                }
            }
            if paths.is_empty() {
                continue;
            }
            let key = (serde_json::to_string(&cors).unwrap_or_default(), target);
            groups
                .entry(key)
                .or_insert_with(|| (cors, Vec::new()))
                .1
                .extend(paths);
        }
        let many = groups.len() > 1;
        if many {
            report.info(&object, "spec.rules", "split-by-cors", format!("rules with different CORS filters or backends: imported as {} policies named {}-1..", groups.len(), object_name(&route.metadata.name)));
        }
        for (n, ((_, target), (cors, paths))) in groups.into_iter().enumerate() {
            let upstream = target.upstream();
            let name = if many {
                object_name(&format!("{}-{}", route.metadata.name, n + 1))
            } else {
                object_name(&route.metadata.name)
            };
            out.push(Imported {
                namespace: namespace.clone(),
                name,
                spec: CorsPolicySpec {
                    mode: opts.mode,
                    hosts: hosts.clone(),
                    paths: with_paths(&paths),
                    upstream,
                    cors,
                    response_headers: None,
                    websocket: None,
                    debug: None,
                    tls: None,
                },
            });
        }
    }
    Ok(out)
}

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
