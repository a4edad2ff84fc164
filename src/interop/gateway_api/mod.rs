//! Gateway API HTTPRoutes with the CORS filter (`HTTPCORSFilter`, GEP-1767, Standard since
//! v1.5), both ways. Field names and semantics from gateway-api `apis/v1/httproute_types.go`:
//! allowOrigins (exact, a `*` host wildcard matching any number of labels to its left, or `*`
//! alone), allowMethods (`*` or methods; GET, HEAD, POST always allowed), allowHeaders,
//! exposeHeaders, allowCredentials, maxAge (default 5). With credentials, `*` in origins,
//! methods or headers must be answered by reflecting the request's value.

use std::collections::BTreeMap;

use serde::Deserialize;

mod export;
pub use export::export;

use super::{
    ImportOptions, Imported, Input, InteropError, Meta, Report, Target, escape, max_age,
    object_name, objects, of_kind, prefix, typed, with_paths,
};
use crate::policy::{CorsPolicySpec, CorsSpec};

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
        if credentials {
            report.info(
                object,
                format!("{at}.allowMethods"),
                "methods-star-credentials",
                "\"*\" with credentials: corsgate reflects the requested method, as Gateway API",
            );
        }
        cors.allow_methods = Some(vec!["*".into()]);
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
        if credentials {
            report.info(
                object,
                format!("{at}.allowHeaders"),
                "headers-star-credentials",
                "\"*\" with credentials: corsgate reflects the requested headers, as Gateway API",
            );
        }
        cors.allow_headers = vec!["*".into()];
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
    report.info(object, at, "vary-origin", "Gateway API does not require Vary: Origin and some implementations (Envoy-based ones among them) omit it, so a shared cache may serve one origin's answer to another; corsgate adds Vary: Origin to every response of the route");
    report.info(object, at, "unmatched-preflight", "Gateway API implementations may answer a preflight they do not allow (other origin, method or header) with 200/204 and no CORS headers, or pass it on; corsgate answers it 403 (unmatchedPreflight: Reject); browsers block it either way");
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
            // --upstream replaces every backend (one upstream-from-flag line says so).
            let target = match (&opts.upstream, rule.backend_refs.as_slice()) {
                (Some(u), _) => Target::Url(u.clone()),
                (None, []) => {
                    return Err(InteropError::invalid(
                        &location,
                        format!(
                            "{object}: {at}.backendRefs: none; fix: add a backendRef or pass --upstream URL"
                        ),
                    ));
                }
                (None, refs) => {
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
                            return Err(InteropError::invalid(
                                &location,
                                format!(
                                    "{object}: {at}.backendRefs[0]: not a core Service with a port; fix: pass --upstream URL"
                                ),
                            ));
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
                source: object.clone(),
            });
        }
    }
    Ok(out)
}
