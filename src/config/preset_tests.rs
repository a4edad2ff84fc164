//! Presets compared header by header with what CloudFront's managed response-headers
//! policies send (SimpleCORS, CORS-With-Preflight, SecurityHeadersPolicy), through the same
//! calls the proxy makes: `decide`, then `config::finish` (the decision's headers, then
//! `responseHeaders`). Vary is corsgate's own addition (cache safety) and is checked apart.

use http::{HeaderMap, HeaderName, HeaderValue, Method};

use super::*;
use crate::cors::{self, Action};

fn compile(yaml: &str) -> CompiledPolicy {
    let spec = serde_saphyr::from_str(&format!(
        "hosts: [api.example.com]\nupstream: {{url: 'http://127.0.0.1:9'}}\n{yaml}"
    ))
    .expect("spec");
    CompiledPolicy::from_spec(PolicyId::new("t", "p"), &spec).expect("valid")
}

fn map(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).expect("name"),
            HeaderValue::from_str(v).expect("value"),
        );
    }
    h
}

/// What the client receives: `(answered at the edge, headers)`, as `proxy::handle` builds it
/// when the upstream answers with `upstream` headers.
fn respond(
    p: &CompiledPolicy,
    method: Method,
    req: &[(&str, &str)],
    upstream: &[(&str, &str)],
) -> (bool, HeaderMap) {
    let d = p.cors.decide(cors::classify(&method, &map(req)));
    // The edge answers a preflight and a rejection itself; a forwarded request's headers
    // start from what the upstream sent.
    let edge = d.action != Action::Forward;
    let mut h = if edge {
        HeaderMap::new()
    } else {
        map(upstream)
    };
    crate::config::finish(p, Some(&d), &mut h);
    (edge, h)
}

/// The headers CloudFront's policies govern, sorted as `name: value`.
fn governed(h: &HeaderMap) -> Vec<String> {
    let mut v: Vec<String> = h
        .iter()
        .filter(|(k, _)| {
            let k = k.as_str();
            k.starts_with("access-control-")
                || matches!(
                    k,
                    "strict-transport-security"
                        | "x-content-type-options"
                        | "x-frame-options"
                        | "referrer-policy"
                        | "x-xss-protection"
                        | "content-security-policy"
                )
        })
        .map(|(k, v)| format!("{k}: {}", v.to_str().expect("ascii")))
        .collect();
    v.sort();
    v
}

const ORIGIN: (&str, &str) = ("origin", "https://app.example.net");
const ALL_METHODS: &str =
    "access-control-allow-methods: DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT";

struct Case {
    name: &'static str,
    preset: &'static str,
    method: Method,
    request: &'static [(&'static str, &'static str)],
    upstream: &'static [(&'static str, &'static str)],
    /// Answered at the edge (the upstream never sees it).
    edge: bool,
    /// What CloudFront's managed policy sends, header by header.
    cloudfront: &'static [&'static str],
}

const SIMPLE: &str = "cors: {preset: SimpleCORS}";
const PREFLIGHT: &str = "cors: {preset: CORSWithPreflight}";
const SECURITY: &str = "responseHeaders: {preset: SecurityHeaders}";

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "SimpleCORS: CORS GET",
            preset: SIMPLE,
            method: Method::GET,
            request: &[ORIGIN],
            upstream: &[],
            edge: false,
            cloudfront: &["access-control-allow-origin: *"],
        },
        Case {
            name: "SimpleCORS: upstream's Allow-Origin kept",
            preset: SIMPLE,
            method: Method::GET,
            request: &[ORIGIN],
            upstream: &[("access-control-allow-origin", "https://app.example.net")],
            edge: false,
            cloudfront: &["access-control-allow-origin: https://app.example.net"],
        },
        Case {
            name: "SimpleCORS: not a CORS request",
            preset: SIMPLE,
            method: Method::GET,
            request: &[],
            upstream: &[],
            edge: false,
            cloudfront: &[],
        },
        Case {
            name: "SimpleCORS: a preflight goes upstream and gets Allow-Origin only",
            preset: SIMPLE,
            method: Method::OPTIONS,
            request: &[
                ORIGIN,
                ("access-control-request-method", "PUT"),
                ("access-control-request-headers", "x-custom"),
            ],
            upstream: &[],
            edge: false,
            cloudfront: &["access-control-allow-origin: *"],
        },
        Case {
            name: "CORSWithPreflight: preflight",
            preset: PREFLIGHT,
            method: Method::OPTIONS,
            request: &[
                ORIGIN,
                ("access-control-request-method", "PATCH"),
                ("access-control-request-headers", "content-type,x-custom"),
            ],
            upstream: &[],
            edge: true,
            cloudfront: &[
                "access-control-allow-headers: *",
                ALL_METHODS,
                "access-control-allow-origin: *",
            ],
        },
        Case {
            name: "CORSWithPreflight: preflight without request headers",
            preset: PREFLIGHT,
            method: Method::OPTIONS,
            request: &[ORIGIN, ("access-control-request-method", "DELETE")],
            upstream: &[],
            edge: true,
            cloudfront: &[
                "access-control-allow-headers: *",
                ALL_METHODS,
                "access-control-allow-origin: *",
            ],
        },
        Case {
            name: "CORSWithPreflight: CORS GET",
            preset: PREFLIGHT,
            method: Method::GET,
            request: &[ORIGIN],
            upstream: &[],
            edge: false,
            cloudfront: &["access-control-allow-origin: *"],
        },
        Case {
            name: "CORSWithPreflight: upstream's CORS headers kept",
            preset: PREFLIGHT,
            method: Method::POST,
            request: &[ORIGIN],
            upstream: &[
                ("access-control-allow-origin", "https://app.example.net"),
                ("access-control-allow-credentials", "true"),
            ],
            edge: false,
            cloudfront: &[
                "access-control-allow-credentials: true",
                "access-control-allow-origin: https://app.example.net",
            ],
        },
        Case {
            name: "SecurityHeaders: the upstream sends none",
            preset: SECURITY,
            method: Method::GET,
            request: &[],
            upstream: &[],
            edge: false,
            cloudfront: &[
                "referrer-policy: strict-origin-when-cross-origin",
                "strict-transport-security: max-age=31536000",
                "x-content-type-options: nosniff",
                "x-frame-options: SAMEORIGIN",
                "x-xss-protection: 1; mode=block",
            ],
        },
        Case {
            name: "SecurityHeaders: the upstream's win, except X-Content-Type-Options",
            preset: SECURITY,
            method: Method::GET,
            request: &[ORIGIN],
            upstream: &[
                ("strict-transport-security", "max-age=60"),
                ("x-content-type-options", "sniff-away"),
                ("x-frame-options", "DENY"),
                ("referrer-policy", "no-referrer"),
                ("x-xss-protection", "0"),
            ],
            edge: false,
            cloudfront: &[
                "referrer-policy: no-referrer",
                "strict-transport-security: max-age=60",
                "x-content-type-options: nosniff",
                "x-frame-options: DENY",
                "x-xss-protection: 0",
            ],
        },
    ]
}

#[test]
fn presets_send_what_cloudfront_managed_policies_send() {
    for c in cases() {
        let p = compile(c.preset);
        let (edge, h) = respond(&p, c.method.clone(), c.request, c.upstream);
        assert_eq!(edge, c.edge, "{}: answered at the edge?", c.name);
        assert_eq!(governed(&h), c.cloudfront, "{}", c.name);
        // corsgate's one addition: every response of a policy varies on Origin (DESIGN.md).
        let vary = h.get("vary").and_then(|v| v.to_str().ok()).unwrap_or("");
        assert!(vary.contains("Origin"), "{}: Vary {vary:?}", c.name);
    }
}

#[test]
fn fields_next_to_a_preset_refine_it() {
    let p = compile(
        "cors: {preset: CORSWithPreflight, allowOrigins: ['https://app.example.net'], allowHeaders: [x-custom], maxAgeSeconds: 600}\nresponseHeaders:\n  preset: SecurityHeaders\n  security: {frameOptions: {value: DENY, override: true}, strictTransportSecurity: {includeSubdomains: true}}\n  set: [{name: X-XSS-Protection, value: '0'}]",
    );
    let (edge, h) = respond(
        &p,
        Method::OPTIONS,
        &[
            ORIGIN,
            ("access-control-request-method", "PATCH"),
            ("access-control-request-headers", "x-custom"),
        ],
        &[],
    );
    assert!(edge);
    assert_eq!(
        governed(&h),
        [
            "access-control-allow-headers: x-custom",
            ALL_METHODS,
            "access-control-allow-origin: https://app.example.net",
            "access-control-max-age: 600",
            "referrer-policy: strict-origin-when-cross-origin",
            "strict-transport-security: max-age=31536000; includeSubDomains",
            "x-content-type-options: nosniff",
            "x-frame-options: DENY",
            "x-xss-protection: 0",
        ]
    );
    // frameOptions override: true now replaces the upstream's; HSTS kept the preset's false.
    let (_, h) = respond(
        &p,
        Method::GET,
        &[("origin", "https://other.example")],
        &[
            ("x-frame-options", "SAMEORIGIN"),
            ("strict-transport-security", "max-age=1"),
        ],
    );
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["strict-transport-security"], "max-age=1");
    assert!(
        !h.contains_key("access-control-allow-origin"),
        "allowOrigins replaced the preset's \"*\""
    );
}

#[test]
fn the_effective_policy_shows_what_a_preset_became() {
    let p = compile("cors: {preset: SimpleCORS}\nresponseHeaders: {preset: SecurityHeaders}");
    let e = p.effective();
    assert_eq!(e["cors"]["preset"], "SimpleCORS");
    assert_eq!(e["cors"]["allowOrigins"], serde_json::json!(["*"]));
    assert_eq!(e["cors"]["preflight"], "Passthrough");
    assert_eq!(e["cors"]["originOverride"], false);
    assert_eq!(e["responseHeaders"]["preset"], "SecurityHeaders");
    let set = e["responseHeaders"]["set"].as_array().expect("set");
    let rendered: Vec<String> = set
        .iter()
        .map(|h| format!("{}: {} (override {})", h["name"], h["value"], h["override"]))
        .collect();
    assert_eq!(
        rendered,
        [
            "\"strict-transport-security\": \"max-age=31536000\" (override false)",
            "\"x-content-type-options\": \"nosniff\" (override true)",
            "\"x-frame-options\": \"SAMEORIGIN\" (override false)",
            "\"referrer-policy\": \"strict-origin-when-cross-origin\" (override false)",
            "\"x-xss-protection\": \"1; mode=block\" (override false)",
        ]
    );
    let p = compile("cors: {preset: CORSWithPreflight}");
    let e = p.effective();
    assert_eq!(e["cors"]["preflight"], "Respond");
    assert_eq!(
        e["cors"]["allowMethods"],
        serde_json::json!(["DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"])
    );
    assert_eq!(e["cors"]["allowHeaders"], serde_json::json!(["*"]));
}

#[test]
fn typed_security_headers_render_exactly() {
    let p = compile(
        "responseHeaders:\n  security:\n    strictTransportSecurity: {maxAgeSeconds: 63072000, includeSubdomains: true, preload: true}\n    contentTypeOptions: {}\n    frameOptions: {}\n    referrerPolicy: {value: same-origin, override: false}\n    contentSecurityPolicy: {value: \"default-src 'self'\"}\n    xssProtection: {modeBlock: false, reportUri: 'https://r.example/x'}",
    );
    let (_, h) = respond(&p, Method::GET, &[], &[("referrer-policy", "origin")]);
    assert_eq!(
        governed(&h),
        [
            "content-security-policy: default-src 'self'",
            "referrer-policy: origin",
            "strict-transport-security: max-age=63072000; includeSubDomains; preload",
            "x-content-type-options: nosniff",
            "x-frame-options: SAMEORIGIN",
            "x-xss-protection: 1; report=https://r.example/x",
        ]
    );
    let off = compile("responseHeaders: {security: {xssProtection: {protection: false}}}");
    let (_, h) = respond(&off, Method::GET, &[], &[("x-xss-protection", "1")]);
    assert_eq!(h["x-xss-protection"], "0", "override defaults to true");
}

#[test]
fn set_if_absent_and_replace_per_header() {
    let ops = HeaderOps {
        set: vec![
            SetHeader {
                name: HeaderName::from_static("x-keep"),
                value: HeaderValue::from_static("edge"),
                override_upstream: false,
            },
            SetHeader {
                name: HeaderName::from_static("x-replace"),
                value: HeaderValue::from_static("edge"),
                override_upstream: true,
            },
        ],
        remove: vec![HeaderName::from_static("x-keep-removed")],
    };
    let mut h = map(&[
        ("x-keep", "upstream"),
        ("x-replace", "upstream"),
        ("x-replace", "upstream-2"),
    ]);
    ops.apply(&mut h);
    assert_eq!(h["x-keep"], "upstream");
    assert_eq!(
        h.get_all("x-replace").iter().collect::<Vec<_>>(),
        ["edge"],
        "replace drops every upstream value"
    );
    let mut empty = HeaderMap::new();
    ops.apply(&mut empty);
    assert_eq!(empty["x-keep"], "edge", "absent: the edge's value is set");
}

/// Issue 12: presets are expanded once per policy, for validation, compilation and warnings
/// together (three times before).
#[test]
fn presets_are_expanded_once_per_policy() {
    let spec: crate::policy::CorsPolicySpec = serde_saphyr::from_str(
        "hosts: [a.example]\nupstream: {url: 'http://u:1'}\ncors: {preset: CORSWithPreflight, allowOriginPatterns: ['^https://x$']}\nresponseHeaders: {preset: SecurityHeaders}",
    )
    .expect("spec");
    let before = crate::policy::EXPANSIONS.with(std::cell::Cell::get);
    let compiled = CompiledPolicy::from_spec(PolicyId::new("ns", "p"), &spec).expect("valid");
    let warnings = compiled.warnings();
    let after = crate::policy::EXPANSIONS.with(std::cell::Cell::get);
    assert_eq!(
        after - before,
        1,
        "validate + compile + warnings expand presets once"
    );
    assert!(
        !warnings.is_empty(),
        "the preset's allowHeaders [\"*\"] warns about Authorization"
    );
    assert_eq!(
        warnings,
        crate::policy::warnings(&spec),
        "the compiled policy's warnings are the spec's"
    );
}

/// Issue 14: a rebuild reuses what the serving snapshot compiled for policies whose spec did
/// not change (here counted by preset expansions, one per compile), and gives what a fresh
/// build gives.
#[test]
fn a_rebuild_compiles_only_what_changed_and_equals_a_fresh_build() {
    let input = |name: &str, origin: &str, created: Option<&str>| {
        PolicyInput {
        id: PolicyId::new("ns", name),
        created: created.map(str::to_string),
        spec: serde_saphyr::from_str(&format!(
            "hosts: [{name}.example, shared.example]\npaths: [/{name}]\nupstream: {{url: 'http://u:1'}}\ncors: {{preset: CORSWithPreflight, allowOrigins: ['{origin}']}}"
        ))
        .expect("spec"),
        source: None,
    }
    };
    let first = Snapshot::build(vec![
        input("a", "https://a.test", None),
        input("b", "https://b.test", None),
        input("c", "https://c.test", None),
        input("e", "https://e.test", None),
    ]);
    let next = vec![
        input("a", "https://a.test", Some("2026-01-01T00:00:00Z")),
        input("b", "https://changed.test", None),
        input("d", "https://d.test", None),
        input("e", "https://e.test", None),
    ];
    let before = crate::policy::EXPANSIONS.with(std::cell::Cell::get);
    let rebuilt = Snapshot::build_reusing(
        next.clone(),
        &super::certs::Secrets::default(),
        Some(&first),
    );
    let after = crate::policy::EXPANSIONS.with(std::cell::Cell::get);
    assert_eq!(
        after - before,
        2,
        "b changed and d is new; a and e are reused"
    );
    let e = |s: &Snapshot| {
        s.policies
            .iter()
            .find(|p| p.id.name == "e")
            .cloned()
            .expect("e")
    };
    assert!(
        std::sync::Arc::ptr_eq(&e(&first), &e(&rebuilt)),
        "an unchanged policy is shared, not copied"
    );
    let fresh = Snapshot::build(next);
    assert_eq!(rebuilt.version, fresh.version);
    let view = |s: &Snapshot| {
        s.policies
            .iter()
            .map(|p| (p.effective(), p.created.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(view(&rebuilt), view(&fresh));
    assert_eq!(
        rebuilt
            .route("shared.example", "/b")
            .map(|(_, p)| p.id.to_string()),
        Some("ns/b".into())
    );
    assert!(rebuilt.route("shared.example", "/c").is_none(), "c is gone");
    let a = |s: &Snapshot| s.route("a.example", "/a").map(|(_, p)| p.created.clone());
    assert_eq!(
        a(&rebuilt),
        Some(Some("2026-01-01T00:00:00Z".into())),
        "a reused keeps its new creation time"
    );
}

/// Issue 14: many policies are compiled on several threads; the results, in order, are the
/// ones one thread gives, errors included.
#[test]
fn compiling_on_threads_gives_what_one_thread_gives() {
    let inputs: Vec<PolicyInput> = (0..700)
        .map(|i| {
            let origin = if i % 97 == 0 { "not an origin".to_string() } else { format!("https://o{i}.test") };
            PolicyInput {
                id: PolicyId::new("ns", format!("p{i}")),
                created: None,
                spec: serde_saphyr::from_str(&format!(
                    "hosts: [h{i}.example]\nupstream: {{url: 'http://u:1'}}\ncors: {{allowOrigins: ['{origin}'], allowOriginPatterns: ['^https://[a-z]+\\.r{i}\\.test$']}}"
                ))
                .expect("spec"),
                source: None,
            }
        })
        .collect();
    let none = std::collections::HashMap::new();
    let view = |r: Vec<super::snapshot::Compiled>| {
        r.into_iter()
            .map(|c| {
                c.map(|(p, json)| (p.effective(), json))
                    .map_err(|e| format!("{e:?}"))
            })
            .collect::<Vec<_>>()
    };
    let one = view(super::snapshot::compile_on(&inputs, &none, 1));
    let four = view(super::snapshot::compile_on(&inputs, &none, 4));
    assert_eq!(one.len(), 700);
    assert_eq!(one.iter().filter(|r| r.is_err()).count(), 8);
    assert_eq!(one, four);
}
