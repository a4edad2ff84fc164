//! The CORS engine: pure functions from a compiled policy and a request's head to a decision,
//! and from a decision to response headers.
//!
//! Owns: origin parsing and matching, request classification, preflight and actual-request
//! decisions, the `Access-Control-*` and `Vary` headers. Must not touch: I/O, hyper, kube or
//! the policy types (`config::compile` converts a `CorsPolicySpec` into the types here).
//! Every header value that does not depend on the request is computed when the policy is
//! compiled; a decision borrows from the policy and the request and allocates nothing in the
//! common case.

pub mod lists;
pub mod origin;
pub mod vary;

#[cfg(test)]
mod classify_tests;
#[cfg(test)]
mod tests;

use http::Method;
use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, HeaderMap, HeaderName,
    HeaderValue, ORIGIN, VARY,
};

pub use lists::{HeaderList, MethodList};
pub use origin::{OriginMatch, OriginMatcher, OriginPattern, RequestOrigin};

const REQUEST_PRIVATE_NETWORK: HeaderName =
    HeaderName::from_static("access-control-request-private-network");
const ALLOW_PRIVATE_NETWORK: HeaderName =
    HeaderName::from_static("access-control-allow-private-network");
const PREFLIGHT_VARY: HeaderValue = HeaderValue::from_static(
    "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
);
const TRUE: HeaderValue = HeaderValue::from_static("true");

/// Most names a preflight's `Access-Control-Request-Headers` may list (issue 13 item 8): a
/// browser lists only the non-safelisted headers a page sets, so real preflights stay far
/// below it; above it the preflight is rejected after counting at most this many + 1 names,
/// without checking any of them (5,000 names otherwise cost 12× a normal preflight).
pub const MAX_REQUESTED_HEADERS: usize = 64;
const STAR: HeaderValue = HeaderValue::from_static("*");

/// Who answers an allowed preflight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreflightMode {
    /// The edge answers 204; the upstream never sees it.
    Respond,
    /// The upstream answers; the edge still sets the CORS headers on its response.
    Forward,
    /// Preflights are not told apart: an `OPTIONS` preflight is decided and answered as an
    /// actual request (CloudFront's SimpleCORS), so the upstream's response gets only
    /// Allow-Origin (and Allow-Credentials / Expose-Headers).
    Passthrough,
}

/// What happens to a preflight the policy does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnmatchedPreflight {
    /// 403 at the edge, no CORS headers.
    Reject,
    /// Forwarded to the upstream; the edge adds no CORS headers.
    Forward,
}

/// What happens to an actual request from an origin the policy does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisallowedOrigin {
    /// Forwarded; the response carries no CORS headers, so the browser hides it from the page.
    Forward,
    /// 403 at the edge; the upstream never sees it.
    Reject,
}

/// What one origin set (the base `cors`, or a rule merged over it) grants.
#[derive(Debug, Clone)]
pub struct Settings {
    pub methods: MethodList,
    pub headers: HeaderList,
    pub expose: HeaderList,
    pub credentials: bool,
    pub max_age: Option<u32>,
    pub private_network: bool,
    max_age_value: Option<HeaderValue>,
}

impl Settings {
    pub fn new(
        methods: MethodList,
        headers: HeaderList,
        expose: HeaderList,
        credentials: bool,
        max_age: Option<u32>,
        private_network: bool,
    ) -> Settings {
        Settings {
            methods,
            headers,
            expose,
            credentials,
            max_age,
            private_network,
            max_age_value: max_age.map(HeaderValue::from),
        }
    }
}

/// Origins and what they are granted.
#[derive(Debug, Clone)]
pub struct Grant {
    pub origins: OriginMatcher,
    pub settings: Settings,
}

/// A compiled CORS policy: the base grant, the rules (first match wins) and the modes.
#[derive(Debug, Clone)]
pub struct Cors {
    pub base: Grant,
    pub rules: Vec<Grant>,
    pub preflight: PreflightMode,
    pub unmatched_preflight: UnmatchedPreflight,
    pub disallowed_origin: DisallowedOrigin,
    /// The edge's CORS headers replace any the upstream sent; when false, an upstream
    /// response that carries `Access-Control-Allow-Origin` keeps its own CORS headers.
    pub origin_override: bool,
}

/// The CORS-relevant head of a request. Holds (cheap, reference-counted) clones of the
/// header values so the request itself can move on to the upstream.
#[derive(Debug, Clone, Default)]
pub struct CorsRequest {
    /// `None`: no `Origin` header, so not a CORS request.
    pub origin: Option<HeaderValue>,
    /// More than one `Origin` header was sent: never a valid origin.
    pub multiple_origins: bool,
    /// `Some` for `OPTIONS` with `Origin` and `Access-Control-Request-Method`.
    pub preflight: Option<Preflight>,
}

#[derive(Debug, Clone)]
pub struct Preflight {
    pub method: HeaderValue,
    pub headers: Option<HeaderValue>,
    /// `Access-Control-Request-Private-Network: true` was sent.
    pub private_network: bool,
}

impl CorsRequest {
    /// The parsed `Origin`, when there is one.
    pub fn parsed_origin(&self) -> Option<RequestOrigin<'_>> {
        let value = self.origin.as_ref()?;
        Some(if self.multiple_origins {
            RequestOrigin::Invalid(origin::InvalidOrigin::Multiple)
        } else {
            origin::parse_request_origin(value.as_bytes())
        })
    }
}

/// Reads the CORS-relevant headers. A plain `OPTIONS` (no `Origin` or no
/// `Access-Control-Request-Method`) is not a preflight: it goes upstream (tower-http#497).
pub fn classify(method: &Method, headers: &HeaderMap) -> CorsRequest {
    if method == Method::OPTIONS {
        return classify_options(headers);
    }
    let mut values = headers.get_all(ORIGIN).iter();
    let origin = values.next().cloned();
    let multiple_origins = values.next().is_some();
    CorsRequest {
        origin,
        multiple_origins,
        preflight: None,
    }
}

/// An `OPTIONS` request reads four headers: one pass over them all costs less than four
/// lookups (the private-network name is not one `http` knows, so looking it up hashes it).
/// The first value of each name counts, as `HeaderMap::get` gives.
fn classify_options(headers: &HeaderMap) -> CorsRequest {
    let (mut origin, mut multiple_origins) = (None, false);
    let (mut method, mut requested, mut private_network) = (None, None, None);
    for (name, value) in headers {
        if name == ORIGIN {
            multiple_origins |= origin.is_some();
            origin.get_or_insert(value);
        } else if name == ACCESS_CONTROL_REQUEST_METHOD {
            method.get_or_insert(value);
        } else if name == ACCESS_CONTROL_REQUEST_HEADERS {
            requested.get_or_insert(value);
        } else if name == REQUEST_PRIVATE_NETWORK {
            private_network.get_or_insert(value);
        }
    }
    let preflight = match (origin, method) {
        (Some(_), Some(m)) => Some(Preflight {
            method: m.clone(),
            headers: requested.cloned(),
            private_network: private_network
                .is_some_and(|v: &HeaderValue| v.as_bytes().eq_ignore_ascii_case(b"true")),
        }),
        _ => None,
    };
    CorsRequest {
        origin: origin.cloned(),
        multiple_origins,
        preflight,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    NotCors,
    Preflight,
    Actual,
}

/// Why a CORS request was not allowed. Labels of `corsgate_cors_rejections_total`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    Origin,
    Method,
    /// The first requested header that is not allowed.
    Header(Box<str>),
    /// More than [`MAX_REQUESTED_HEADERS`] requested headers (counted as `header`).
    TooManyHeaders,
    PrivateNetwork,
}

impl Rejection {
    /// What failed, in words naming the policy field: the edge's 403 body and
    /// `corsgate explain` both say it.
    pub fn describe(&self, req: &CorsRequest) -> String {
        match self {
            Rejection::Origin => match req.parsed_origin() {
                Some(RequestOrigin::Invalid(why)) => format!("the request has {why}"),
                _ => "the origin is not in allowOrigins, allowOriginPatterns or a rule".into(),
            },
            Rejection::Method => {
                let m = req.preflight.as_ref().map(|p| String::from_utf8_lossy(p.method.as_bytes()).into_owned());
                format!("method {} is not in allowMethods", m.unwrap_or_default())
            }
            Rejection::Header(h) if h.eq_ignore_ascii_case("authorization") => {
                "request header \"authorization\" is not in allowHeaders (\"*\" never covers it: list it by name)".into()
            }
            Rejection::Header(h) => format!("request header {h:?} is not in allowHeaders"),
            Rejection::TooManyHeaders => format!(
                "Access-Control-Request-Headers lists more than {MAX_REQUESTED_HEADERS} headers (the edge's limit)"
            ),
            Rejection::PrivateNetwork => "private network access is not allowed (allowPrivateNetwork is false)".into(),
        }
    }

    /// Which check failed, without the detail.
    pub fn reason(&self) -> Reason {
        match self {
            Rejection::Origin => Reason::Origin,
            Rejection::Method => Reason::Method,
            Rejection::Header(_) | Rejection::TooManyHeaders => Reason::Header,
            Rejection::PrivateNetwork => Reason::PrivateNetwork,
        }
    }
}

/// The closed set of rejection reasons (issue 12: one vocabulary). The `reason` label of
/// `corsgate_cors_rejections_total` and `corsgate_shadow_decisions_total`, and the index of
/// every per-reason count: shadow reports, `status`, the proxy's rejection ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    Origin,
    Method,
    Header,
    PrivateNetwork,
}

impl Reason {
    /// Every reason, in index order.
    pub const ALL: [Reason; 4] = [
        Reason::Origin,
        Reason::Method,
        Reason::Header,
        Reason::PrivateNetwork,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::Origin => "origin",
            Reason::Method => "method",
            Reason::Header => "header",
            Reason::PrivateNetwork => "private_network",
        }
    }

    /// The position in `ALL`, and in every array of per-reason counts.
    pub const fn index(self) -> usize {
        self as usize
    }

    pub fn parse(s: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the edge does with the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Answer the preflight at the edge (204).
    Respond,
    /// Answer 403 at the edge.
    Reject,
    /// Send it upstream.
    Forward,
}

/// Which grant decided: the base `cors` or a rule (index in `rules`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matched {
    Base,
    Rule(usize),
}

#[derive(Debug, Clone, Copy)]
enum AllowOrigin {
    Star,
    Reflect,
}

/// The outcome for one request. Borrows the policy; owns the request's CORS headers.
#[derive(Debug, Clone)]
pub struct Decision<'p> {
    pub kind: Kind,
    pub action: Action,
    pub rejection: Option<Rejection>,
    /// The grant whose origins matched (also set when a method or header then failed).
    pub matched: Option<Matched>,
    granted: Option<(&'p Settings, AllowOrigin)>,
    request: CorsRequest,
    origin_override: bool,
}

impl Cors {
    /// The grant for an origin: the first rule whose origins match, else the base.
    /// `raw` is the header value the origin was parsed from.
    pub fn grant_for<'p>(
        &'p self,
        origin: &RequestOrigin<'_>,
        raw: &[u8],
    ) -> Option<(Matched, &'p Settings, OriginMatch)> {
        if let RequestOrigin::Invalid(_) = origin {
            return None;
        }
        // The parser accepted only visible ASCII, so this is always UTF-8.
        let raw = std::str::from_utf8(raw).ok()?;
        for (i, rule) in self.rules.iter().enumerate() {
            if let Some(m) = rule.origins.matches(origin, raw) {
                return Some((Matched::Rule(i), &rule.settings, m));
            }
        }
        self.base
            .origins
            .matches(origin, raw)
            .map(|m| (Matched::Base, &self.base.settings, m))
    }

    /// Decides what to do with a request.
    pub fn decide(&self, mut req: CorsRequest) -> Decision<'_> {
        if self.preflight == PreflightMode::Passthrough {
            req.preflight = None;
        }
        let kind = match (&req.origin, &req.preflight) {
            (None, _) => Kind::NotCors,
            (Some(_), Some(_)) => Kind::Preflight,
            (Some(_), None) => Kind::Actual,
        };
        let grant = match &req.origin {
            // The common case, an origin listed exactly and no rules to try first: found
            // without parsing it (`lists_exactly` holds only canonical, valid origins).
            Some(raw)
                if !req.multiple_origins
                    && self.rules.is_empty()
                    && self.base.origins.lists_exactly(raw.as_bytes()) =>
            {
                Some((Matched::Base, &self.base.settings, OriginMatch::Listed))
            }
            Some(raw) => req
                .parsed_origin()
                .and_then(|parsed| self.grant_for(&parsed, raw.as_bytes())),
            None => None,
        };
        let mut d = Decision {
            kind,
            action: Action::Forward,
            rejection: None,
            matched: grant.map(|g| g.0),
            granted: None,
            request: req,
            origin_override: self.origin_override,
        };
        if kind == Kind::NotCors {
            return d;
        }
        let rejection = match (&grant, &d.request.preflight) {
            (None, _) => Some(Rejection::Origin),
            (Some((_, settings, _)), Some(pf)) => check_preflight(settings, pf),
            (Some(_), None) => None,
        };
        match rejection {
            None => {
                if let Some((_, settings, how)) = grant {
                    let allow = if how == OriginMatch::Any && !settings.credentials {
                        AllowOrigin::Star
                    } else {
                        AllowOrigin::Reflect
                    };
                    d.granted = Some((settings, allow));
                }
                d.action = match (kind, self.preflight) {
                    (Kind::Preflight, PreflightMode::Respond) => Action::Respond,
                    _ => Action::Forward,
                };
            }
            Some(r) => {
                d.rejection = Some(r);
                d.action = match (kind, self.unmatched_preflight, self.disallowed_origin) {
                    (Kind::Preflight, UnmatchedPreflight::Reject, _) => Action::Reject,
                    (Kind::Actual, _, DisallowedOrigin::Reject) => Action::Reject,
                    _ => Action::Forward,
                };
            }
        }
        d
    }
}

fn check_preflight(settings: &Settings, pf: &Preflight) -> Option<Rejection> {
    if !settings.methods.allows(pf.method.as_bytes()) {
        return Some(Rejection::Method);
    }
    if let Some(h) = &pf.headers {
        // One pass: the first name not allowed, and whether there are too many (which wins).
        let mut refused: Option<&[u8]> = None;
        for (i, name) in lists::split_header_list(h.as_bytes()).enumerate() {
            if i == MAX_REQUESTED_HEADERS {
                return Some(Rejection::TooManyHeaders);
            }
            if refused.is_none()
                && !(lists::is_token_bytes(name) && settings.headers.allows_bytes(name))
            {
                refused = Some(name);
            }
        }
        if let Some(name) = refused {
            return Some(Rejection::Header(
                String::from_utf8_lossy(name).into_owned().into_boxed_str(),
            ));
        }
    }
    if pf.private_network && !settings.private_network {
        return Some(Rejection::PrivateNetwork);
    }
    None
}

impl Decision<'_> {
    pub fn allowed(&self) -> bool {
        self.granted.is_some()
    }

    fn allow_origin(&self) -> Option<HeaderValue> {
        let (_, how) = self.granted?;
        match how {
            AllowOrigin::Star => Some(STAR),
            AllowOrigin::Reflect => self.request.origin.clone(),
        }
    }

    /// The headers of a preflight answered at the edge (`Action::Respond`).
    pub fn write_preflight(&self, out: &mut HeaderMap) {
        out.insert(VARY, PREFLIGHT_VARY);
        self.write_grant(out, true);
    }

    /// Sets the decision's headers on a response that did not come from `write_preflight`:
    /// the upstream's, the edge's 403, or the edge's own error. Always merges `Vary: Origin`.
    pub fn apply_to_response(&self, out: &mut HeaderMap) {
        let keep_upstream = !self.origin_override && out.contains_key(ACCESS_CONTROL_ALLOW_ORIGIN);
        if !keep_upstream {
            if self.origin_override {
                vary::strip_cors_headers(out);
            }
            self.write_grant(out, self.kind == Kind::Preflight);
        }
        vary::merge_vary_origin(out);
    }

    fn write_grant(&self, out: &mut HeaderMap, preflight: bool) {
        let (Some((settings, _)), Some(allow_origin)) = (self.granted, self.allow_origin()) else {
            return;
        };
        out.insert(ACCESS_CONTROL_ALLOW_ORIGIN, allow_origin);
        if settings.credentials {
            out.insert(ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE);
        }
        if preflight {
            let Some(pf) = &self.request.preflight else {
                return;
            };
            // With credentials a browser takes `*` literally: reflect the request instead.
            let methods = if settings.methods.any() && settings.credentials {
                Some(pf.method.clone())
            } else {
                settings.methods.value().cloned()
            };
            if let Some(m) = methods {
                out.insert(ACCESS_CONTROL_ALLOW_METHODS, m);
            }
            // Without credentials `*` is a wildcard to the browser (Fetch), so the list is sent
            // as configured, as CloudFront's CORS-With-Preflight does (`*` plus any names
            // such as authorization, which `*` never covers). Otherwise every requested
            // header was checked: echoing the request is exact and free.
            if settings.headers.any() && !settings.credentials {
                if let Some(v) = settings.headers.value() {
                    out.insert(ACCESS_CONTROL_ALLOW_HEADERS, v.clone());
                }
            } else if let Some(h) = pf.headers.as_ref().filter(|h| !h.is_empty()) {
                out.insert(ACCESS_CONTROL_ALLOW_HEADERS, h.clone());
            }
            if let Some(age) = &settings.max_age_value {
                out.insert(ACCESS_CONTROL_MAX_AGE, age.clone());
            }
            if pf.private_network {
                out.insert(ALLOW_PRIVATE_NETWORK, TRUE);
            }
        }
        // On preflights too: browsers ignore it there, but Gateway API's HTTPCORSFilter
        // conformance expects the configured list on the preflight response (issue 16).
        let expose = if settings.expose.any() && settings.credentials {
            exposed_names(out, &settings.expose)
        } else {
            settings.expose.value().cloned()
        };
        if let Some(v) = expose {
            out.insert(ACCESS_CONTROL_EXPOSE_HEADERS, v);
        }
    }
}

/// `exposeHeaders: ["*"]` with credentials: a browser reads `*` literally, so list the names
/// the response actually carries (minus the safelisted ones, which are always readable).
fn exposed_names(headers: &HeaderMap, expose: &HeaderList) -> Option<HeaderValue> {
    let mut names: Vec<&str> = expose.names().iter().map(String::as_str).collect();
    for name in headers.keys() {
        let n = name.as_str();
        if !lists::is_safelisted_response_header(name)
            && !n.starts_with("access-control-")
            && n != "set-cookie"
            && n != "vary"
            && !names.contains(&n)
        {
            names.push(n);
        }
    }
    if names.is_empty() {
        return None;
    }
    HeaderValue::from_str(&names.join(", ")).ok()
}

impl Decision<'_> {
    /// The request's CORS head, as classified.
    pub fn request(&self) -> &CorsRequest {
        &self.request
    }
}
