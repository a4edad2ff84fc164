//! `corsgate explain`: what the edge does with one browser request, step by step — the
//! route, whether a browser preflights, each check of the preflight, the exact headers the
//! edge sends, and whether a browser then lets the page read the response.
//!
//! It runs the same code as the proxy (`Snapshot::route`, `Cors::decide`, and
//! `config::finish` for the headers of every response), on headers built from the arguments.

pub mod near;
pub mod query;

pub use query::QueryError;

use std::fmt::Write as _;

use http::Method;
use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD,
    HeaderMap, HeaderValue, ORIGIN,
};

use crate::config::{CompiledPolicy, Snapshot, finish, normalize_host};
use crate::cors::{self, Action, Kind, Matched};

/// One request as a page would make it.
#[derive(Debug, Clone)]
pub struct Request {
    pub host: String,
    pub path: String,
    pub method: String,
    pub origin: Option<String>,
    /// Request headers the page sets, as `name` or `name: value`.
    pub headers: Vec<String>,
    /// `fetch(..., {credentials: "include"})`.
    pub credentials: bool,
    /// The page asks for private network access.
    pub private_network: bool,
}

/// What `explain` concluded, for the exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The browser lets the page read the response.
    Allowed,
    /// The browser blocks it (a "CORS error" in the console).
    Blocked,
    /// Not a CORS request, or no policy: nothing for a browser to check.
    NotApplicable,
}

fn header_name(h: &str) -> &str {
    h.split_once(':').map_or(h, |(n, _)| n).trim()
}

/// Why a browser preflights this request (empty: it does not).
/// <https://fetch.spec.whatwg.org/#cors-safelisted-method>, `#cors-safelisted-request-header`.
fn preflight_reasons(req: &Request) -> Vec<String> {
    let mut why = Vec::new();
    if !matches!(req.method.as_str(), "GET" | "HEAD" | "POST") {
        why.push(format!(
            "method {} is not CORS-safelisted (GET, HEAD, POST)",
            req.method
        ));
    }
    for h in &req.headers {
        let (name, value) = match h.split_once(':') {
            Some((n, v)) => (
                n.trim().to_ascii_lowercase(),
                Some(v.trim().to_ascii_lowercase()),
            ),
            None => (h.trim().to_ascii_lowercase(), None),
        };
        let safe = match name.as_str() {
            "accept" | "accept-language" | "content-language" => true,
            "content-type" => value.as_deref().is_some_and(|v| {
                let essence = v.split(';').next().unwrap_or("").trim();
                matches!(
                    essence,
                    "application/x-www-form-urlencoded" | "multipart/form-data" | "text/plain"
                )
            }),
            _ => false,
        };
        if !safe {
            why.push(format!("header {name} is not CORS-safelisted"));
        }
    }
    if req.private_network {
        why.push("the page asks for private network access".into());
    }
    why
}

fn show_headers(out: &mut String, h: &HeaderMap) {
    if h.is_empty() {
        let _ = writeln!(out, "      (none)");
    }
    let mut lines: Vec<String> = h
        .iter()
        .map(|(k, v)| format!("      {}: {}", k, String::from_utf8_lossy(v.as_bytes())))
        .collect();
    lines.sort();
    for l in lines {
        let _ = writeln!(out, "{l}");
    }
}

fn matched_text(p: &CompiledPolicy, m: Option<Matched>) -> String {
    match m {
        Some(Matched::Base) => "matches spec.cors.allowOrigins / allowOriginPatterns".into(),
        Some(Matched::Rule(i)) => {
            let origins = p
                .spec
                .cors
                .rules
                .get(i)
                .map(|r| r.origins.join(", "))
                .unwrap_or_default();
            format!("matches spec.cors.rules[{i}] (origins: {origins}); that rule's settings apply")
        }
        None => "matches no allowOrigins, allowOriginPatterns or rule".into(),
    }
}

/// What a browser concludes from a response's headers (<https://fetch.spec.whatwg.org/#cors-check>).
fn browser_cors_check(h: &HeaderMap, origin: &str, credentials: bool) -> Result<(), String> {
    let Some(acao) = h.get(ACCESS_CONTROL_ALLOW_ORIGIN) else {
        return Err("no Access-Control-Allow-Origin".into());
    };
    if acao == "*" {
        if credentials {
            return Err(
                "Access-Control-Allow-Origin is \"*\" but the request carries credentials".into(),
            );
        }
    } else if acao.as_bytes() != origin.as_bytes() {
        return Err(format!(
            "Access-Control-Allow-Origin {acao:?} is not the page's origin"
        ));
    }
    if credentials
        && h.get(ACCESS_CONTROL_ALLOW_CREDENTIALS)
            .is_none_or(|v| v != "true")
    {
        return Err("credentials: include, but no Access-Control-Allow-Credentials: true".into());
    }
    Ok(())
}

fn list_has(
    h: &HeaderMap,
    name: http::HeaderName,
    item: &str,
    credentials: bool,
    star_ok: bool,
) -> bool {
    h.get_all(name).iter().any(|v| {
        cors::lists::split_header_list(v.as_bytes()).any(|t| {
            t.eq_ignore_ascii_case(item.as_bytes()) || (t == b"*" && !credentials && star_ok)
        })
    })
}

/// The browser's checks of a preflight answer, beyond the CORS check.
fn browser_preflight_check(h: &HeaderMap, req: &Request) -> Result<(), String> {
    let safelisted = matches!(req.method.as_str(), "GET" | "HEAD" | "POST");
    if !safelisted
        && !list_has(
            h,
            ACCESS_CONTROL_ALLOW_METHODS,
            &req.method,
            req.credentials,
            true,
        )
    {
        return Err(format!(
            "{} is not in Access-Control-Allow-Methods",
            req.method
        ));
    }
    for name in req.headers.iter().map(|h| header_name(h)) {
        let star_ok = !name.eq_ignore_ascii_case("authorization");
        if !list_has(
            h,
            ACCESS_CONTROL_ALLOW_HEADERS,
            name,
            req.credentials,
            star_ok,
        ) {
            return Err(format!("{name} is not in Access-Control-Allow-Headers"));
        }
    }
    Ok(())
}

/// The `tls` lines: the policy's Secret, and what `config::certs::check` said of it.
fn tls_lines(o: &mut String, t: &crate::config::TlsReport) {
    match &t.problem {
        None => {
            let _ = writeln!(
                o,
                "tls        HTTPS with the certificate of secret {}",
                t.secret
            );
        }
        Some(p) => {
            let _ = writeln!(o, "tls        not served over HTTPS: {p}");
        }
    }
    for w in &t.warnings {
        let _ = writeln!(o, "           warning: {w}");
    }
}

/// What `explain` said: the step-by-step text, the verdict, and the facts a client wants
/// without parsing the text (the demo page shows `reason` beside what the browser said).
#[derive(Debug, Clone)]
pub struct Explanation {
    pub text: String,
    pub verdict: Verdict,
    /// The snapshot's config version the answer was computed on.
    pub version: String,
    /// `namespace/name` of the policy that serves the request, when one does.
    pub policy: Option<String>,
    /// Why the request is blocked: the edge's failed check, else the browser's.
    pub reason: Option<String>,
}

/// Explains `req` against `snap` (policy files, the proxy's live snapshot or a cluster's
/// policies: one function for all three).
pub fn explain(snap: &Snapshot, req: &Request) -> Explanation {
    let mut text = String::new();
    let mut facts = Facts::default();
    let verdict = walk(snap, req, &mut text, &mut facts);
    Explanation {
        text,
        verdict,
        version: snap.version.clone(),
        policy: facts.policy,
        reason: facts.reason,
    }
}

#[derive(Default)]
struct Facts {
    policy: Option<String>,
    reason: Option<String>,
}

fn walk(snap: &Snapshot, req: &Request, o: &mut String, facts: &mut Facts) -> Verdict {
    let _ = writeln!(
        o,
        "config     version {} ({} policies serving)",
        snap.version,
        snap.policies.len()
    );
    let origin_text = req
        .origin
        .as_deref()
        .unwrap_or("(no Origin: same-origin or not a browser)");
    let _ = writeln!(
        o,
        "request    {} http://{}{} from {}",
        req.method, req.host, req.path, origin_text
    );
    if !req.headers.is_empty() {
        let _ = writeln!(
            o,
            "           headers: {}",
            req.headers
                .iter()
                .map(|h| header_name(h))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let host = normalize_host(&req.host);
    let path = req.path.split('?').next().unwrap_or("/");
    let Some((_, policy)) = snap.route(&host, path) else {
        let _ = writeln!(
            o,
            "route      no policy serves host {host:?} and path {path:?}: the edge answers 404, no CORS headers"
        );
        near::describe(o, snap, &host);
        return Verdict::NotApplicable;
    };
    facts.policy = Some(policy.id.to_string());
    let prefix = policy
        .paths
        .iter()
        .filter(|p| crate::config::snapshot::prefix_matches(p, path))
        .max_by_key(|p| p.len())
        .cloned()
        .unwrap_or_default();
    let _ = writeln!(
        o,
        "route      policy {} (hosts {}; path prefix {prefix})",
        policy.id,
        policy.hosts.join(", ")
    );
    if let Some(t) = snap.tls_report(&policy.id) {
        tls_lines(o, t);
    }
    if policy.shadow {
        let _ = writeln!(
            o,
            "mode       Shadow: the edge forwards every request untouched by CORS (responseHeaders still apply); \
             below is what it would do, counted in status.shadow, not what it does"
        );
    }

    let Some(origin) = req.origin.clone() else {
        let mut h = HeaderMap::new();
        let d = policy.cors.decide(cors::CorsRequest::default());
        finish(policy, Some(&d), &mut h);
        let _ = writeln!(
            o,
            "cors       not a CORS request: forwarded to {}; the edge adds to its response:",
            policy.upstream.url()
        );
        show_headers(o, &h);
        return Verdict::NotApplicable;
    };
    let Ok(origin_value) = HeaderValue::from_str(&origin) else {
        let _ = writeln!(o, "origin     {origin:?} cannot be sent as a header value");
        facts.reason = Some("the origin cannot be sent as a header value".into());
        return Verdict::Blocked;
    };

    let why = preflight_reasons(req);
    if why.is_empty() {
        let _ = writeln!(
            o,
            "browser    no preflight: a simple request (safelisted method and headers)"
        );
    } else {
        let _ = writeln!(o, "browser    sends a preflight first: {}", why.join("; "));
        let mut pre = HeaderMap::new();
        pre.insert(ORIGIN, origin_value.clone());
        if let Ok(m) = HeaderValue::from_str(&req.method) {
            pre.insert(ACCESS_CONTROL_REQUEST_METHOD, m);
        }
        let mut names: Vec<String> = req
            .headers
            .iter()
            .map(|h| header_name(h).to_ascii_lowercase())
            .collect();
        names.sort();
        names.dedup();
        if !names.is_empty()
            && let Ok(v) = HeaderValue::from_str(&names.join(","))
        {
            pre.insert(ACCESS_CONTROL_REQUEST_HEADERS, v);
        }
        if req.private_network {
            pre.insert(
                "access-control-request-private-network",
                HeaderValue::from_static("true"),
            );
        }
        let d = policy.cors.decide(cors::classify(&Method::OPTIONS, &pre));
        let _ = writeln!(o, "preflight  OPTIONS {path}");
        if policy.cors.preflight == cors::PreflightMode::Passthrough {
            let _ = writeln!(
                o,
                "  mode     preflight: Passthrough (SimpleCORS): the upstream answers it like any request; \
                 the edge adds only what an actual response gets, so the browser's checks below decide"
            );
        }
        let _ = writeln!(o, "  origin   {origin} {}", matched_text(policy, d.matched));
        let settings = match d.matched {
            Some(Matched::Base) => Some(&policy.cors.base.settings),
            Some(Matched::Rule(i)) => policy.cors.rules.get(i).map(|r| &r.settings),
            None => None,
        };
        if let Some(s) = settings {
            let _ = writeln!(
                o,
                "  methods  allowMethods: {}",
                s.methods.items().collect::<Vec<_>>().join(", ")
            );
            let _ = writeln!(
                o,
                "  headers  allowHeaders: {}",
                s.headers.items().collect::<Vec<_>>().join(", ")
            );
        }
        if let Some(r) = &d.rejection {
            let why = r.describe(d.request());
            let _ = writeln!(o, "  check    FAILED: {why}");
            facts.reason = Some(why);
        } else {
            let _ = writeln!(o, "  check    passed");
        }
        let mut h = HeaderMap::new();
        let status = match d.action {
            Action::Respond => "answered at the edge: 204 No Content".to_string(),
            Action::Reject => {
                "rejected at the edge: 403 Forbidden (unmatchedPreflight: Reject)".to_string()
            }
            Action::Forward => format!(
                "forwarded to {}; on its response the edge sets",
                policy.upstream.url()
            ),
        };
        finish(policy, Some(&d), &mut h);
        let _ = writeln!(o, "  result   {status}:");
        show_headers(o, &h);
        let browser = match d.action {
            Action::Reject => Err("the preflight's status is 403, not an ok status".to_string()),
            _ => browser_cors_check(&h, &origin, req.credentials)
                .and_then(|()| browser_preflight_check(&h, req)),
        };
        if let Err(e) = browser {
            let _ = writeln!(o, "verdict    BLOCKED by the browser at the preflight: {e}");
            facts.reason.get_or_insert(e);
            return Verdict::Blocked;
        }
    }

    let mut actual = HeaderMap::new();
    actual.insert(ORIGIN, origin_value);
    let method = Method::from_bytes(req.method.as_bytes()).unwrap_or(Method::GET);
    let d = policy.cors.decide(cors::classify(&method, &actual));
    let _ = writeln!(o, "request    {} {path}", req.method);
    let _ = writeln!(o, "  origin   {origin} {}", matched_text(policy, d.matched));
    if let Some(r) = &d.rejection {
        facts.reason = Some(r.describe(d.request()));
    }
    let mut h = HeaderMap::new();
    let status = match d.action {
        Action::Reject => {
            "rejected at the edge: 403 Forbidden (disallowedOrigin: Reject)".to_string()
        }
        _ => format!(
            "forwarded to {}; on its response (errors included) the edge sets",
            policy.upstream.url()
        ),
    };
    finish(policy, Some(&d), &mut h);
    let _ = writeln!(o, "  result   {status}:");
    show_headers(o, &h);
    debug_assert!(d.kind == Kind::Actual);
    match browser_cors_check(&h, &origin, req.credentials) {
        Ok(()) => {
            let _ = writeln!(o, "verdict    ALLOWED: the page can read the response");
            Verdict::Allowed
        }
        Err(e) => {
            let _ = writeln!(o, "verdict    BLOCKED by the browser: {e}");
            facts.reason.get_or_insert(e);
            Verdict::Blocked
        }
    }
}
