//! Specs exercising every CEL rule of the CRD, valid and not: `(name, spec YAML, the CEL
//! message expected among the failures, None when valid)`. Shared by tests/crd.rs (offline,
//! with the `cel` crate, against `policy::validate`) and tests/e2e_cluster (the same objects
//! sent to a real API server, which must answer the same way).

pub const CEL_CASES: &[(&str, &str, Option<&str>)] = &[
    (
        "minimal url",
        r#"{hosts: [a.example], upstream: {url: "http://u:1"}}"#,
        None,
    ),
    (
        "minimal service",
        r#"{hosts: [a.example], upstream: {service: {name: s, port: 80}}}"#,
        None,
    ),
    (
        "both upstreams",
        r#"{hosts: [a.example], upstream: {url: "http://u:1", service: {name: s, port: 80}}}"#,
        Some("exactly one of upstream"),
    ),
    (
        "no upstream",
        r#"{hosts: [a.example], upstream: {timeoutSeconds: 5}}"#,
        Some("exactly one of upstream"),
    ),
    (
        "timeout 0",
        r#"{hosts: [a.example], upstream: {url: "http://u:1", timeoutSeconds: 0}}"#,
        Some("timeoutSeconds"),
    ),
    (
        "port 0",
        r#"{hosts: [a.example], upstream: {service: {name: s, port: 0}}}"#,
        Some("port must be"),
    ),
    (
        "port 70000",
        r#"{hosts: [a.example], upstream: {service: {name: s, port: 70000}}}"#,
        Some("port must be"),
    ),
    (
        "no hosts",
        r#"{hosts: [], upstream: {url: "http://u:1"}}"#,
        Some("at least one host"),
    ),
    (
        "relative path",
        r#"{hosts: [a.example], paths: [v1], upstream: {url: "http://u:1"}}"#,
        Some("start with '/'"),
    ),
    (
        "max age 86400",
        r#"{hosts: [a.example], upstream: {url: "http://u:1"}, cors: {maxAgeSeconds: 86400}}"#,
        None,
    ),
    (
        "max age 86401",
        r#"{hosts: [a.example], upstream: {url: "http://u:1"}, cors: {maxAgeSeconds: 86401}}"#,
        Some("maxAgeSeconds"),
    ),
    (
        "max age -1",
        r#"{hosts: [a.example], upstream: {url: "http://u:1"}, cors: {maxAgeSeconds: -1}}"#,
        Some("maxAgeSeconds"),
    ),
    (
        "rule max age",
        r#"{hosts: [a.example], upstream: {url: "http://u:1"}, cors: {rules: [{origins: ["https://x.example"], maxAgeSeconds: 90000}]}}"#,
        Some("maxAgeSeconds"),
    ),
    (
        "star origin no credentials",
        r#"{hosts: [a.example], upstream: {url: "http://u:1"}, cors: {allowOrigins: ["*"], allowMethods: ["*"], allowHeaders: ["*"], exposeHeaders: ["*"]}}"#,
        None,
    ),
    (
        "star origin credentials",
        r#"{hosts: [a.example], upstream: {url: "http://u:1"}, cors: {allowOrigins: ["*"], allowCredentials: true}}"#,
        Some("allowOrigins cannot contain"),
    ),
    (
        "star methods credentials",
        r#"{hosts: [a.example], upstream: {url: "http://u:1"}, cors: {allowOrigins: ["https://x.example"], allowMethods: ["GET", "*"], allowCredentials: true}}"#,
        // Reflected (Gateway API's HTTPCORSFilter; issue 16).
        None,
    ),
    (
        "star headers credentials",
        r#"{hosts: [a.example], upstream: {url: "http://u:1"}, cors: {allowOrigins: ["https://x.example"], allowHeaders: ["*"], allowCredentials: true}}"#,
        None,
    ),
    (
        "star expose credentials",
        r#"{hosts: [a.example], upstream: {url: "http://u:1"}, cors: {allowOrigins: ["https://x.example"], exposeHeaders: ["*"], allowCredentials: true}}"#,
        Some("exposeHeaders cannot contain"),
    ),
    (
        "credentials named lists",
        r#"{hosts: [a.example], upstream: {url: "http://u:1"}, cors: {allowOrigins: ["https://x.example"], allowMethods: [GET], allowHeaders: [x-a], exposeHeaders: [x-b], allowCredentials: true}}"#,
        None,
    ),
    (
        "rule credentials, base star",
        r#"{hosts: [a.example], upstream: {url: "http://u:1"}, cors: {allowOrigins: ["*"], allowHeaders: ["*"], rules: [{origins: ["https://admin.example"], allowCredentials: true}]}}"#,
        None,
    ),
    (
        "rule credentials, base star expose",
        r#"{hosts: [a.example], upstream: {url: "http://u:1"}, cors: {allowOrigins: ["*"], exposeHeaders: ["*"], rules: [{origins: ["https://admin.example"], allowCredentials: true}]}}"#,
        Some("a rule that allows credentials"),
    ),
    (
        "rule credentials, own names",
        r#"{hosts: [a.example], upstream: {url: "http://u:1"}, cors: {allowOrigins: ["*"], allowHeaders: ["*"], rules: [{origins: ["https://admin.example"], allowCredentials: true, allowHeaders: [authorization]}]}}"#,
        None,
    ),
    (
        "rule star, base credentials",
        r#"{hosts: [a.example], upstream: {url: "http://u:1"}, cors: {allowOrigins: ["https://x.example"], allowCredentials: true, rules: [{origins: ["https://admin.example"], allowMethods: ["*"]}]}}"#,
        None,
    ),
    (
        "rule star expose, base credentials",
        r#"{hosts: [a.example], upstream: {url: "http://u:1"}, cors: {allowOrigins: ["https://x.example"], allowCredentials: true, rules: [{origins: ["https://admin.example"], exposeHeaders: ["*"]}]}}"#,
        Some("a rule that allows credentials"),
    ),
    (
        "rule star, credentials off",
        r#"{hosts: [a.example], upstream: {url: "http://u:1"}, cors: {allowOrigins: ["https://x.example"], allowCredentials: true, rules: [{origins: ["https://admin.example"], allowCredentials: false, exposeHeaders: ["*"]}]}}"#,
        None,
    ),
    (
        "rule without origins",
        r#"{hosts: [a.example], upstream: {url: "http://u:1"}, cors: {rules: [{allowCredentials: true}]}}"#,
        Some("a rule needs origins"),
    ),
    (
        "rule star origin",
        r#"{hosts: [a.example], upstream: {url: "http://u:1"}, cors: {rules: [{origins: ["*"]}]}}"#,
        Some("a rule's origins cannot"),
    ),
    (
        "preset alone",
        r#"{hosts: [a.example], upstream: {url: "http://u:1"}, cors: {preset: CORSWithPreflight}}"#,
        None,
    ),
    (
        "preset with credentials",
        r#"{hosts: [a.example], upstream: {url: "http://u:1"}, cors: {preset: SimpleCORS, allowCredentials: true}}"#,
        Some("a preset allows every origin"),
    ),
    (
        "preset with credentials and patterns",
        r#"{hosts: [a.example], upstream: {url: "http://u:1"}, cors: {preset: SimpleCORS, allowOriginPatterns: ["^https://x$"], allowCredentials: true}}"#,
        None,
    ),
    (
        "preflight preset star headers with credentials",
        r#"{hosts: [a.example], upstream: {url: "http://u:1"}, cors: {preset: CORSWithPreflight, allowOrigins: ["https://x.example"], allowCredentials: true}}"#,
        None,
    ),
    (
        "preflight preset named headers with credentials",
        r#"{hosts: [a.example], upstream: {url: "http://u:1"}, cors: {preset: CORSWithPreflight, allowOrigins: ["https://x.example"], allowHeaders: [x-a], allowCredentials: true}}"#,
        None,
    ),
    (
        "preflight preset, rule inherits star headers",
        r#"{hosts: [a.example], upstream: {url: "http://u:1"}, cors: {preset: CORSWithPreflight, rules: [{origins: ["https://admin.example"], allowCredentials: true}]}}"#,
        None,
    ),
    (
        "simple preset, rule with credentials",
        r#"{hosts: [a.example], upstream: {url: "http://u:1"}, cors: {preset: SimpleCORS, rules: [{origins: ["https://admin.example"], allowCredentials: true}]}}"#,
        None,
    ),
    (
        "security preset and typed headers",
        r#"{hosts: [a.example], upstream: {url: "http://u:1"}, responseHeaders: {preset: SecurityHeaders, security: {strictTransportSecurity: {maxAgeSeconds: 63072000, includeSubdomains: true, preload: true, override: true}, frameOptions: {value: DENY}, referrerPolicy: {value: no-referrer}, contentSecurityPolicy: {value: "default-src 'self'"}, xssProtection: {modeBlock: false, reportUri: "https://r.example/x"}}}}"#,
        None,
    ),
    (
        "hsts negative",
        r#"{hosts: [a.example], upstream: {url: "http://u:1"}, responseHeaders: {security: {strictTransportSecurity: {maxAgeSeconds: -1}}}}"#,
        Some("maxAgeSeconds must be 0 or more"),
    ),
    (
        "hsts preload without subdomains",
        r#"{hosts: [a.example], upstream: {url: "http://u:1"}, responseHeaders: {security: {strictTransportSecurity: {preload: true}}}}"#,
        Some("preload requires"),
    ),
    (
        "hsts preload short max age",
        r#"{hosts: [a.example], upstream: {url: "http://u:1"}, responseHeaders: {security: {strictTransportSecurity: {preload: true, includeSubdomains: true, maxAgeSeconds: 86400}}}}"#,
        Some("preload requires"),
    ),
    (
        "hsts preload default max age",
        r#"{hosts: [a.example], upstream: {url: "http://u:1"}, responseHeaders: {security: {strictTransportSecurity: {preload: true, includeSubdomains: true}}}}"#,
        None,
    ),
    (
        "csp empty",
        r#"{hosts: [a.example], upstream: {url: "http://u:1"}, responseHeaders: {security: {contentSecurityPolicy: {value: ""}}}}"#,
        Some("contentSecurityPolicy.value must not be empty"),
    ),
    (
        "xss off with mode block",
        r#"{hosts: [a.example], upstream: {url: "http://u:1"}, responseHeaders: {security: {xssProtection: {protection: false, modeBlock: true}}}}"#,
        Some("modeBlock: true has no effect"),
    ),
    (
        "xss off",
        r#"{hosts: [a.example], upstream: {url: "http://u:1"}, responseHeaders: {security: {xssProtection: {protection: false}}}}"#,
        None,
    ),
    (
        "xss off with report",
        r#"{hosts: [a.example], upstream: {url: "http://u:1"}, responseHeaders: {security: {xssProtection: {protection: false, modeBlock: false, reportUri: "https://r.example/x"}}}}"#,
        Some("reportUri has no effect"),
    ),
    (
        "xss report with default mode block",
        r#"{hosts: [a.example], upstream: {url: "http://u:1"}, responseHeaders: {preset: SecurityHeaders, security: {xssProtection: {reportUri: "https://r.example/x"}}}}"#,
        Some("reportUri cannot be combined"),
    ),
    (
        "xss report with separator",
        r#"{hosts: [a.example], upstream: {url: "http://u:1"}, responseHeaders: {security: {xssProtection: {modeBlock: false, reportUri: "https://r.example/x; mode=block"}}}}"#,
        Some("reportUri must be one URI"),
    ),
    (
        "shadow mode",
        r#"{hosts: [a.example], mode: Shadow, upstream: {url: "http://u:1"}, cors: {allowOrigins: ["https://x.example"]}}"#,
        None,
    ),
    (
        "rule by pattern",
        r#"{hosts: [a.example], upstream: {url: "http://u:1"}, cors: {rules: [{originPatterns: ["^https://x$"], allowCredentials: true}]}}"#,
        None,
    ),
];
