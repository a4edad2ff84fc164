use super::*;

fn spec(yaml: &str) -> CorsPolicySpec {
    serde_saphyr::from_str(yaml).unwrap()
}

fn errors(yaml: &str) -> Vec<String> {
    match validate(&spec(yaml)) {
        Ok(()) => vec![],
        Err(e) => e.iter().map(ToString::to_string).collect(),
    }
}

const OK: &str = "hosts: [api.example.com]\nupstream: {url: \"http://127.0.0.1:9000\"}\n";

#[test]
fn a_minimal_policy_is_valid() {
    assert!(errors(OK).is_empty());
}

#[test]
fn each_problem_names_field_and_fix() {
    let cases: &[(&str, &str)] = &[
        (
            "hosts: []\nupstream: {url: \"http://a\"}",
            "spec.hosts: at least one host is required; fix: add the host names",
        ),
        (
            "hosts: [\"api.example.com.\"]\nupstream: {url: \"http://a\"}",
            "spec.hosts[0]: \"api.example.com.\" ends with a dot; fix: write \"api.example.com\"",
        ),
        (
            "hosts: [\"a.*.com\"]\nupstream: {url: \"http://a\"}",
            "spec.hosts[0]: \"a.*.com\" has a '*'",
        ),
        (
            "hosts: [\"api.example.com:443\"]\nupstream: {url: \"http://a\"}",
            "spec.hosts[0]: \"api.example.com:443\" is not a host name",
        ),
        (
            "hosts: [a]\npaths: [v1]\nupstream: {url: \"http://a\"}",
            "spec.paths[0]: \"v1\" does not start with '/'; fix: write \"/v1\"",
        ),
        (
            "hosts: [a]\npaths: [\"/a//b\"]\nupstream: {url: \"http://a\"}",
            "spec.paths[0]: \"/a//b\" has an empty",
        ),
        (
            "hosts: [a]\nupstream: {}",
            "spec.upstream: exactly one of service or url must be set",
        ),
        (
            "hosts: [a]\nupstream: {url: \"ftp://a\"}",
            "spec.upstream.url: \"ftp://a\" must start with http:// or https://",
        ),
        (
            "hosts: [a]\nupstream: {url: \"http://a/base\"}",
            "spec.upstream.url: \"http://a/base\" has a path",
        ),
        (
            "hosts: [a]\nupstream: {service: {name: Web, port: 80}}",
            "spec.upstream.service.name: \"Web\" is not a Service name",
        ),
        (
            "hosts: [a]\nupstream: {service: {name: web, port: 0}}",
            "spec.upstream.service.port: 0 is not a port number",
        ),
        (
            "hosts: [a]\nupstream: {url: \"http://a\", timeoutSeconds: 0}",
            "spec.upstream.timeoutSeconds: 0 is out of range",
        ),
        (
            "hosts: [a]\nupstream: {url: \"http://a\"}\ncors: {allowOrigins: [\"https://a.com/\"]}",
            "spec.cors.allowOrigins[0]: \"https://a.com/\" ends with '/'",
        ),
        (
            "hosts: [a]\nupstream: {url: \"http://a\"}\ncors: {allowOrigins: [\"a.com\"]}",
            "spec.cors.allowOrigins[0]: \"a.com\" is not an origin",
        ),
        (
            "hosts: [a]\nupstream: {url: \"http://a\"}\ncors: {allowOrigins: [\"*\"], allowCredentials: true}",
            "spec.cors.allowOrigins[0]: \"*\" cannot be combined with allowCredentials",
        ),
        (
            "hosts: [a]\nupstream: {url: \"http://a\"}\ncors: {allowOriginPatterns: [\"(x\"]}",
            "spec.cors.allowOriginPatterns[0]: \"(x\" is not a valid regular expression",
        ),
        (
            "hosts: [a]\nupstream: {url: \"http://a\"}\ncors: {allowMethods: [\"GE T\"]}",
            "spec.cors.allowMethods[0]: \"GE T\" is not an HTTP method",
        ),
        (
            "hosts: [a]\nupstream: {url: \"http://a\"}\ncors: {allowMethods: []}",
            "spec.cors.allowMethods: the list is empty",
        ),
        (
            "hosts: [a]\nupstream: {url: \"http://a\"}\ncors: {allowHeaders: [\"x-a, x-b\"]}",
            "spec.cors.allowHeaders[0]: \"x-a, x-b\" is not a header name",
        ),
        (
            "hosts: [a]\nupstream: {url: \"http://a\"}\ncors: {maxAgeSeconds: 90000}",
            "spec.cors.maxAgeSeconds: 90000 is out of range",
        ),
        (
            "hosts: [a]\nupstream: {url: \"http://a\"}\ncors: {rules: [{allowCredentials: true}]}",
            "spec.cors.rules[0].origins: a rule needs origins",
        ),
        (
            "hosts: [a]\nupstream: {url: \"http://a\"}\ncors: {rules: [{origins: [\"*\"]}]}",
            "spec.cors.rules[0].origins[0]: a rule cannot apply to \"*\"",
        ),
        (
            "hosts: [a]\nupstream: {url: \"http://a\"}\nresponseHeaders: {set: [{name: Access-Control-Allow-Origin, value: \"*\"}]}",
            "spec.responseHeaders.set[0].name: \"Access-Control-Allow-Origin\" cannot be set here",
        ),
        (
            "hosts: [a]\nupstream: {url: \"http://a\"}\nresponseHeaders: {remove: [\"bad name\"]}",
            "spec.responseHeaders.remove[0]: \"bad name\" is not a header name",
        ),
        (
            "hosts: [a]\nupstream: {url: \"http://a\"}\nresponseHeaders: {set: [{name: X-Cafe, value: \"caf\u{00e9}\"}]}",
            "spec.responseHeaders.set[0].value: the value has a line break, control character or non-ASCII character",
        ),
    ];
    for (yaml, want) in cases {
        let got = errors(yaml);
        assert!(
            got.iter().any(|e| e.starts_with(want)),
            "for\n{yaml}\nwant an error starting with {want:?}, got {got:#?}"
        );
    }
}

/// Typed security headers and presets: each problem with its exact path, message and fix.
#[test]
fn security_headers_and_presets_table() {
    const U: &str = "hosts: [a]\nupstream: {url: \"http://a\"}\n";
    let cases: &[(&str, &[&str])] = &[
        ("responseHeaders: {preset: SecurityHeaders}", &[]),
        (
            "responseHeaders: {security: {strictTransportSecurity: {maxAgeSeconds: 63072000, includeSubdomains: true, preload: true}, contentTypeOptions: {}, frameOptions: {value: DENY, override: false}, referrerPolicy: {value: no-referrer}, contentSecurityPolicy: {value: \"default-src 'self'\"}, xssProtection: {protection: false}}}",
            &[],
        ),
        (
            "responseHeaders: {security: {strictTransportSecurity: {maxAgeSeconds: -5}}}",
            &[
                "spec.responseHeaders.security.strictTransportSecurity.maxAgeSeconds: -5 is negative; fix: use 0 or more seconds",
            ],
        ),
        (
            "responseHeaders: {security: {strictTransportSecurity: {preload: true, maxAgeSeconds: 31536000}}}",
            &[
                "spec.responseHeaders.security.strictTransportSecurity.preload: preload requires includeSubdomains: true and maxAgeSeconds of at least 31536000",
            ],
        ),
        (
            "responseHeaders: {preset: SecurityHeaders, security: {strictTransportSecurity: {preload: true, includeSubdomains: true, maxAgeSeconds: 600}}}",
            &["spec.responseHeaders.security.strictTransportSecurity.preload: preload requires"],
        ),
        (
            "responseHeaders: {security: {contentSecurityPolicy: {value: \"  \"}}}",
            &[
                "spec.responseHeaders.security.contentSecurityPolicy.value: the policy is empty; fix: write a policy such as",
            ],
        ),
        (
            "responseHeaders: {security: {contentSecurityPolicy: {value: \"default-src \\u00e9\"}}}",
            &[
                "spec.responseHeaders.security.contentSecurityPolicy.value: the value has a line break, control character or non-ASCII character",
            ],
        ),
        (
            "responseHeaders: {security: {xssProtection: {protection: false, modeBlock: true}}}",
            &[
                "spec.responseHeaders.security.xssProtection.modeBlock: modeBlock: true has no effect with protection: false",
            ],
        ),
        (
            "responseHeaders: {security: {xssProtection: {reportUri: \"https://r.example/x\"}}}",
            &[
                "spec.responseHeaders.security.xssProtection.reportUri: reportUri cannot be combined with mode=block (modeBlock defaults to true); fix: set modeBlock: false",
            ],
        ),
        (
            "responseHeaders: {security: {xssProtection: {protection: false, modeBlock: false, reportUri: \"https://r.example/x\"}}}",
            &[
                "spec.responseHeaders.security.xssProtection.reportUri: reportUri has no effect with protection: false",
            ],
        ),
        (
            "responseHeaders: {security: {xssProtection: {modeBlock: false, reportUri: \"https://r.example/a b\"}}}",
            &[
                "spec.responseHeaders.security.xssProtection.reportUri: \"https://r.example/a b\" is not a usable report URI",
            ],
        ),
        (
            "responseHeaders: {security: {frameOptions: {value: DENY}}, set: [{name: X-Frame-Options, value: DENY}]}",
            &[
                "spec.responseHeaders.set[0].name: \"x-frame-options\" is also set by security.frameOptions; fix: keep one",
            ],
        ),
        // A `set` entry next to the preset replaces the preset's header: no conflict.
        (
            "responseHeaders: {preset: SecurityHeaders, set: [{name: Strict-Transport-Security, value: \"max-age=63072000\"}]}",
            &[],
        ),
        (
            "cors: {preset: SimpleCORS, allowCredentials: true}",
            &[
                "spec.cors.preset: the SimpleCORS preset allows every origin (\"*\"), which cannot be combined with allowCredentials: true; fix: list the names in allowOrigins (they replace the preset's \"*\"), or set allowCredentials: false",
            ],
        ),
        (
            // The preset's allowHeaders "*" with credentials is reflected (issue 16).
            "cors: {preset: CORSWithPreflight, allowOrigins: [\"https://x.example\"], allowCredentials: true}",
            &[],
        ),
        (
            "cors: {preset: CORSWithPreflight, allowOrigins: [\"https://x.example\"], allowHeaders: [x-a], allowCredentials: true}",
            &[],
        ),
        (
            "cors: {preset: CORSWithPreflight, allowOrigins: [\"*\"], allowCredentials: true}",
            &["spec.cors.allowOrigins[0]: \"*\" cannot be combined with allowCredentials"],
        ),
    ];
    for (extra, want) in cases {
        let yaml = format!("{U}{extra}");
        let got = errors(&yaml);
        if want.is_empty() {
            assert!(got.is_empty(), "for\n{yaml}\nwant no error, got {got:#?}");
        }
        for w in *want {
            assert!(
                got.iter().any(|e| e.starts_with(w)),
                "for\n{yaml}\nwant an error starting with {w:?}, got {got:#?}"
            );
        }
    }
    let bad_enum = serde_saphyr::from_str::<CorsPolicySpec>(&format!(
        "{U}responseHeaders: {{security: {{referrerPolicy: {{value: strict}}}}}}"
    ));
    assert!(
        bad_enum.is_err_and(|e| e.to_string().contains("strict-origin-when-cross-origin")),
        "an unknown Referrer-Policy lists the valid ones"
    );
}

#[test]
fn all_problems_are_reported_at_once() {
    let got = errors("hosts: []\nupstream: {}\ncors: {maxAgeSeconds: -1}");
    assert_eq!(got.len(), 3, "{got:#?}");
}

#[test]
fn every_hop_by_hop_header_the_proxy_strips_is_refused_in_response_headers() {
    // One list (issue 12): what the proxy strips is what a policy may not set or remove.
    for h in &crate::policy::limits::HOP_BY_HOP {
        let yaml =
            format!("{OK}responseHeaders: {{set: [{{name: {h}, value: x}}], remove: [{h}]}}");
        let errs = errors(&yaml);
        assert_eq!(errs.len(), 2, "{h}: {errs:?}");
        assert!(
            errs.iter()
                .all(|e| e.contains("describes the connection or framing")),
            "{h}: {errs:?}"
        );
    }
}
