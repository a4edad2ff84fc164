//! Decision and header tests for the engine: each test builds a `Cors` directly and checks
//! the exact headers it writes.

use http::Method;
use http::header::{HeaderMap, HeaderValue};
use proptest::prelude::*;

use super::*;

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

struct Spec<'a> {
    origins: &'a [&'a str],
    patterns: &'a [&'a str],
    methods: &'a [&'a str],
    headers: &'a [&'a str],
    expose: &'a [&'a str],
    credentials: bool,
    max_age: Option<u32>,
    private_network: bool,
}

const BASE: Spec<'static> = Spec {
    origins: &["https://app.example.com"],
    patterns: &[],
    methods: &["GET", "POST", "PUT"],
    headers: &["content-type", "x-custom"],
    expose: &["x-request-id"],
    credentials: false,
    max_age: Some(600),
    private_network: false,
};

fn grant(s: &Spec<'_>) -> Grant {
    let origins: Vec<_> = s
        .origins
        .iter()
        .map(|o| OriginPattern::parse(o).unwrap())
        .collect();
    let sources = strings(s.patterns);
    origin::compile_patterns(&sources).unwrap();
    let patterns = origin::Patterns::checked(&sources);
    Grant {
        origins: OriginMatcher::new(&origins, patterns),
        settings: Settings::new(
            MethodList::new(&strings(s.methods)),
            HeaderList::new(&strings(s.headers)),
            HeaderList::new(&strings(s.expose)),
            s.credentials,
            s.max_age,
            s.private_network,
        ),
    }
}

fn cors(s: &Spec<'_>) -> Cors {
    Cors {
        base: grant(s),
        rules: vec![],
        preflight: PreflightMode::Respond,
        unmatched_preflight: UnmatchedPreflight::Reject,
        disallowed_origin: DisallowedOrigin::Forward,
        origin_override: true,
    }
}

fn req(method: Method, headers: &[(&str, &str)]) -> (Method, HeaderMap) {
    let mut h = HeaderMap::new();
    for (k, v) in headers {
        h.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    (method, h)
}

fn preflight(origin: &str, method: &str, headers: Option<&str>) -> (Method, HeaderMap) {
    let mut hs = vec![
        ("origin", origin),
        ("access-control-request-method", method),
    ];
    if let Some(h) = headers {
        hs.push(("access-control-request-headers", h));
    }
    req(Method::OPTIONS, &hs)
}

fn decide<'p>(c: &'p Cors, r: &(Method, HeaderMap)) -> Decision<'p> {
    c.decide(classify(&r.0, &r.1))
}

fn pairs(h: &HeaderMap) -> Vec<(String, String)> {
    let mut v: Vec<_> = h
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
        .collect();
    v.sort();
    v
}

fn p(k: &str, v: &str) -> (String, String) {
    (k.to_string(), v.to_string())
}

#[test]
fn allowed_preflight_is_answered_with_exact_headers() {
    let c = cors(&BASE);
    let d = decide(
        &c,
        &preflight(
            "https://app.example.com",
            "PUT",
            Some("content-type,x-custom"),
        ),
    );
    assert_eq!(
        (d.kind, d.action, d.rejection.clone()),
        (Kind::Preflight, Action::Respond, None)
    );
    let mut h = HeaderMap::new();
    d.write_preflight(&mut h);
    assert_eq!(
        pairs(&h),
        vec![
            p("access-control-allow-headers", "content-type,x-custom"),
            p("access-control-allow-methods", "GET, POST, PUT"),
            p("access-control-allow-origin", "https://app.example.com"),
            // Gateway API conformance wants the expose list on preflights too (issue 16).
            p("access-control-expose-headers", "x-request-id"),
            p("access-control-max-age", "600"),
            p(
                "vary",
                "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
            ),
        ]
    );
}

#[test]
fn plain_options_is_not_a_preflight() {
    let c = cors(&BASE);
    let no_acrm = decide(
        &c,
        &req(Method::OPTIONS, &[("origin", "https://app.example.com")]),
    );
    assert_eq!(
        (no_acrm.kind, no_acrm.action),
        (Kind::Actual, Action::Forward)
    );
    let no_origin = decide(
        &c,
        &req(Method::OPTIONS, &[("access-control-request-method", "PUT")]),
    );
    assert_eq!(
        (no_origin.kind, no_origin.action),
        (Kind::NotCors, Action::Forward)
    );
}

#[test]
fn preflight_rejections_name_the_reason() {
    let c = cors(&BASE);
    let cases = [
        (
            preflight("https://evil.example", "PUT", None),
            Rejection::Origin,
        ),
        (
            preflight("https://app.example.com", "DELETE", None),
            Rejection::Method,
        ),
        (
            preflight("https://app.example.com", "put", None),
            Rejection::Method,
        ),
        (
            preflight("https://app.example.com", "PUT", Some("x-custom, x-other")),
            Rejection::Header("x-other".into()),
        ),
        (
            preflight("https://app.example.com", "PUT", Some("bad header")),
            Rejection::Header("bad header".into()),
        ),
    ];
    for (r, want) in cases {
        let d = decide(&c, &r);
        assert_eq!(d.rejection, Some(want.clone()), "{r:?}");
        assert_eq!(d.action, Action::Reject);
        let mut h = HeaderMap::new();
        d.apply_to_response(&mut h);
        assert_eq!(
            pairs(&h),
            vec![p("vary", "Origin")],
            "a rejection carries no CORS headers"
        );
    }
}

#[test]
fn unmatched_preflight_forward_and_disallowed_origin_reject() {
    let mut c = cors(&BASE);
    c.unmatched_preflight = UnmatchedPreflight::Forward;
    c.disallowed_origin = DisallowedOrigin::Reject;
    let d = decide(&c, &preflight("https://evil.example", "PUT", None));
    assert_eq!(
        (d.action, d.rejection),
        (Action::Forward, Some(Rejection::Origin))
    );
    let d = decide(&c, &req(Method::GET, &[("origin", "https://evil.example")]));
    assert_eq!(
        (d.action, d.rejection),
        (Action::Reject, Some(Rejection::Origin))
    );
}

#[test]
fn preflight_forward_mode_sets_headers_on_the_upstream_answer() {
    let mut c = cors(&BASE);
    c.preflight = PreflightMode::Forward;
    let d = decide(
        &c,
        &preflight("https://app.example.com", "PUT", Some("x-custom")),
    );
    assert_eq!(d.action, Action::Forward);
    let mut h = HeaderMap::new();
    h.insert("access-control-allow-origin", HeaderValue::from_static("*"));
    d.apply_to_response(&mut h);
    assert_eq!(
        pairs(&h),
        vec![
            p("access-control-allow-headers", "x-custom"),
            p("access-control-allow-methods", "GET, POST, PUT"),
            p("access-control-allow-origin", "https://app.example.com"),
            // Gateway API conformance wants the expose list on preflights too (issue 16).
            p("access-control-expose-headers", "x-request-id"),
            p("access-control-max-age", "600"),
            p("vary", "Origin"),
        ]
    );
}

#[test]
fn actual_request_gets_origin_expose_and_vary_merged() {
    let c = cors(&BASE);
    let d = decide(
        &c,
        &req(Method::GET, &[("origin", "https://app.example.com")]),
    );
    assert_eq!((d.kind, d.action), (Kind::Actual, Action::Forward));
    let mut h = HeaderMap::new();
    h.insert("vary", HeaderValue::from_static("Accept-Encoding"));
    h.insert("access-control-allow-origin", HeaderValue::from_static("*"));
    h.insert(
        "access-control-allow-methods",
        HeaderValue::from_static("*"),
    );
    d.apply_to_response(&mut h);
    assert_eq!(
        pairs(&h),
        vec![
            p("access-control-allow-origin", "https://app.example.com"),
            p("access-control-expose-headers", "x-request-id"),
            p("vary", "Accept-Encoding, Origin"),
        ]
    );
}

#[test]
fn origin_override_false_keeps_the_upstreams_cors_headers() {
    let mut c = cors(&BASE);
    c.origin_override = false;
    let d = decide(
        &c,
        &req(Method::GET, &[("origin", "https://app.example.com")]),
    );
    let mut upstream = HeaderMap::new();
    upstream.insert(
        "access-control-allow-origin",
        HeaderValue::from_static("https://app.example.com"),
    );
    upstream.insert(
        "access-control-expose-headers",
        HeaderValue::from_static("x-upstream"),
    );
    d.apply_to_response(&mut upstream);
    assert_eq!(
        pairs(&upstream),
        vec![
            p("access-control-allow-origin", "https://app.example.com"),
            p("access-control-expose-headers", "x-upstream"),
            p("vary", "Origin"),
        ]
    );
    // Without upstream CORS headers the edge's apply.
    let mut bare = HeaderMap::new();
    d.apply_to_response(&mut bare);
    assert!(bare.contains_key("access-control-expose-headers"));
}

#[test]
fn star_origin_sends_star_without_credentials() {
    let c = cors(&Spec {
        origins: &["*"],
        ..BASE
    });
    let d = decide(&c, &req(Method::GET, &[("origin", "https://anyone.test")]));
    let mut h = HeaderMap::new();
    d.apply_to_response(&mut h);
    assert_eq!(h["access-control-allow-origin"], "*");
    let null = decide(&c, &req(Method::GET, &[("origin", "null")]));
    assert_eq!(
        null.rejection,
        Some(Rejection::Origin),
        "* never covers null"
    );
}

#[test]
fn credentials_reflect_instead_of_star() {
    let c = cors(&Spec {
        origins: &["https://*.example.com"],
        methods: &["*"],
        headers: &["*"],
        expose: &["*"],
        credentials: true,
        ..BASE
    });
    let d = decide(
        &c,
        &preflight("https://a.example.com", "PROPFIND", Some("x-anything")),
    );
    assert_eq!(d.action, Action::Respond);
    let mut h = HeaderMap::new();
    d.write_preflight(&mut h);
    assert_eq!(h["access-control-allow-origin"], "https://a.example.com");
    assert_eq!(h["access-control-allow-methods"], "PROPFIND");
    assert_eq!(h["access-control-allow-headers"], "x-anything");
    assert_eq!(h["access-control-allow-credentials"], "true");
    let auth = decide(
        &c,
        &preflight("https://a.example.com", "GET", Some("authorization")),
    );
    assert_eq!(
        auth.rejection,
        Some(Rejection::Header("authorization".into())),
        "* never covers authorization"
    );

    let d = decide(
        &c,
        &req(Method::GET, &[("origin", "https://a.example.com")]),
    );
    let mut resp = HeaderMap::new();
    resp.insert("x-request-id", HeaderValue::from_static("1"));
    resp.insert("content-type", HeaderValue::from_static("text/plain"));
    resp.insert("etag", HeaderValue::from_static("\"x\""));
    d.apply_to_response(&mut resp);
    assert_eq!(resp["access-control-expose-headers"], "x-request-id, etag");
}

#[test]
fn first_matching_rule_wins_and_inherits_what_it_omits() {
    let mut c = cors(&BASE);
    let mut admin = grant(&Spec {
        origins: &["https://admin.example.com"],
        methods: &["GET", "DELETE"],
        credentials: true,
        ..BASE
    });
    admin.settings.max_age = Some(600);
    let shadowed = grant(&Spec {
        origins: &["https://admin.example.com"],
        methods: &["PATCH"],
        ..BASE
    });
    c.rules = vec![admin, shadowed];
    let d = decide(
        &c,
        &preflight("https://admin.example.com", "DELETE", Some("x-custom")),
    );
    assert_eq!(
        (d.matched, d.action),
        (Some(Matched::Rule(0)), Action::Respond)
    );
    let mut h = HeaderMap::new();
    d.write_preflight(&mut h);
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert_eq!(h["access-control-allow-methods"], "GET, DELETE");
    let base = decide(&c, &preflight("https://app.example.com", "DELETE", None));
    assert_eq!(
        (base.matched, base.rejection),
        (Some(Matched::Base), Some(Rejection::Method))
    );
}

#[test]
fn private_network_preflights() {
    let c = cors(&BASE);
    let (m, mut h) = preflight("https://app.example.com", "GET", None);
    h.insert(
        "access-control-request-private-network",
        HeaderValue::from_static("true"),
    );
    let d = c.decide(classify(&m, &h));
    assert_eq!(d.rejection, Some(Rejection::PrivateNetwork));
    let allowed = cors(&Spec {
        private_network: true,
        ..BASE
    });
    let d = allowed.decide(classify(&m, &h));
    let mut out = HeaderMap::new();
    d.write_preflight(&mut out);
    assert_eq!(out["access-control-allow-private-network"], "true");
}

#[test]
fn several_origin_headers_are_never_allowed() {
    let c = cors(&BASE);
    let d = decide(
        &c,
        &req(
            Method::GET,
            &[
                ("origin", "https://app.example.com"),
                ("origin", "https://app.example.com"),
            ],
        ),
    );
    assert_eq!(d.rejection, Some(Rejection::Origin));
}

#[test]
fn not_cors_requests_still_vary_on_origin_and_lose_upstream_cors_headers() {
    let c = cors(&BASE);
    let d = decide(&c, &req(Method::GET, &[]));
    let mut h = HeaderMap::new();
    h.insert("access-control-allow-origin", HeaderValue::from_static("*"));
    d.apply_to_response(&mut h);
    assert_eq!(pairs(&h), vec![p("vary", "Origin")]);
}

fn any_origin() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("https://a.example.com".to_string()),
        Just("null".to_string()),
        "https?://[a-z]{1,8}(\\.example)?\\.com(:[0-9]{2,5})?",
        "[ -~]{0,40}",
    ]
}

proptest! {
    /// With credentials on, no Access-Control-Allow-* or Expose header is ever `*`, whatever
    /// the request: the engine reflects instead.
    #[test]
    fn credentials_never_yield_star(
        origin in any_origin(),
        method in "[A-Z]{1,8}",
        acrh in proptest::option::of("[a-z-]{1,10}(,[a-z-]{1,10}){0,3}"),
        is_preflight in any::<bool>(),
    ) {
        let c = cors(&Spec {
            origins: &["https://*.example.com", "https://a.example.com"],
            patterns: &["https://[a-z]+\\.com"],
            methods: &["*"],
            headers: &["*"],
            expose: &["*"],
            credentials: true,
            ..BASE
        });
        let Ok(ov) = HeaderValue::from_str(&origin) else { return Ok(()) };
        let mut h = HeaderMap::new();
        h.insert("origin", ov);
        let m = if is_preflight {
            h.insert("access-control-request-method", HeaderValue::from_str(&method).unwrap());
            if let Some(a) = &acrh { h.insert("access-control-request-headers", HeaderValue::from_str(a).unwrap()); }
            Method::OPTIONS
        } else { Method::GET };
        let d = c.decide(classify(&m, &h));
        let mut out = HeaderMap::new();
        out.insert("x-upstream", HeaderValue::from_static("1"));
        if d.action == Action::Respond { d.write_preflight(&mut out) } else { d.apply_to_response(&mut out) }
        for (k, v) in &out {
            if k.as_str().starts_with("access-control-") {
                prop_assert!(v.as_bytes().split(|b| *b == b',').all(|t| t.trim_ascii() != b"*"), "{k}: {v:?}");
            }
        }
        prop_assert!(out.get_all("vary").iter().count() == 1);
    }

    /// A disallowed origin never gets any Access-Control-* header.
    #[test]
    fn disallowed_origins_get_no_cors_headers(origin in any_origin(), is_preflight in any::<bool>()) {
        let c = cors(&BASE);
        let Ok(ov) = HeaderValue::from_str(&origin) else { return Ok(()) };
        let mut h = HeaderMap::new();
        h.insert("origin", ov);
        let m = if is_preflight {
            h.insert("access-control-request-method", HeaderValue::from_static("GET"));
            Method::OPTIONS
        } else { Method::GET };
        let d = c.decide(classify(&m, &h));
        let mut out = HeaderMap::new();
        if d.action == Action::Respond { d.write_preflight(&mut out) } else { d.apply_to_response(&mut out) }
        let allowed = origin.eq_ignore_ascii_case("https://app.example.com") || origin.eq_ignore_ascii_case("https://app.example.com:443");
        prop_assert_eq!(out.contains_key("access-control-allow-origin"), allowed);
    }
}

#[test]
fn passthrough_decides_a_preflight_as_an_actual_request() {
    let mut c = cors(&Spec {
        origins: &["*"],
        ..BASE
    });
    c.preflight = PreflightMode::Passthrough;
    c.origin_override = false;
    let d = decide(&c, &preflight("https://a.test", "PATCH", Some("x-nope")));
    assert_eq!(
        (d.kind, d.action, d.rejection.clone()),
        (Kind::Actual, Action::Forward, None)
    );
    let mut h = HeaderMap::new();
    d.apply_to_response(&mut h);
    assert_eq!(h["access-control-allow-origin"], "*");
    assert!(
        !h.contains_key("access-control-allow-methods")
            && !h.contains_key("access-control-allow-headers"),
        "only what an actual response gets: {h:?}"
    );
}

#[test]
fn star_headers_without_credentials_are_sent_as_configured() {
    for (headers, requested, want) in [
        (&["*"][..], Some("x-a,x-b"), Some("*")),
        (&["*"][..], None, Some("*")),
        (
            &["*", "authorization"][..],
            Some("authorization"),
            Some("*, authorization"),
        ),
        (&["x-a"][..], Some("x-a"), Some("x-a")),
        (&["x-a"][..], None, None),
    ] {
        let c = cors(&Spec { headers, ..BASE });
        let d = decide(&c, &preflight("https://app.example.com", "PUT", requested));
        assert_eq!(d.action, Action::Respond, "{headers:?}");
        let mut h = HeaderMap::new();
        d.write_preflight(&mut h);
        assert_eq!(
            h.get("access-control-allow-headers")
                .map(|v| v.to_str().unwrap()),
            want,
            "{headers:?} {requested:?}"
        );
    }
}

#[test]
fn more_requested_headers_than_the_cap_are_rejected_unreflected() {
    let c = cors(&Spec {
        headers: &["*"],
        ..BASE
    });
    let names = |n: usize| {
        (0..n)
            .map(|i| format!("x-h{i}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let at_cap = decide(
        &c,
        &preflight(APP_ORIGIN, "PUT", Some(&names(MAX_REQUESTED_HEADERS))),
    );
    assert_eq!(
        at_cap.rejection, None,
        "{MAX_REQUESTED_HEADERS} names are fine"
    );
    for n in [MAX_REQUESTED_HEADERS + 1, 5_000] {
        let d = decide(&c, &preflight(APP_ORIGIN, "PUT", Some(&names(n))));
        assert_eq!(d.rejection, Some(Rejection::TooManyHeaders), "{n}");
        assert_eq!(d.action, Action::Reject);
        assert_eq!(
            d.rejection.as_ref().map(Rejection::reason),
            Some(crate::cors::Reason::Header)
        );
        let mut h = HeaderMap::new();
        d.apply_to_response(&mut h);
        assert_eq!(pairs(&h), vec![p("vary", "Origin")], "nothing reflected");
    }
}

const APP_ORIGIN: &str = "https://app.example.com";
