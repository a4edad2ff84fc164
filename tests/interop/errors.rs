//! Invalid input: every error names the file, the object and the field (or the flag), and a
//! mistake in the input is never called a corsgate bug.

use super::*;

#[test]
fn invalid_input_names_file_object_and_field() {
    let cf = ImportOptions {
        hosts: vec!["api.example.com".into()],
        upstream: Some("http://origin.example.com".into()),
        ..ImportOptions::default()
    };
    let route = |rules: &str| {
        format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: r, namespace: a}}\nspec:\n  hostnames: [a.example.com]\n  rules: [{{filters: [{{type: CORS, cors: {{allowOrigins: ['https://a.example']}}}}]{rules}}}]\n"
        )
    };
    let no_refs = route("");
    let knative = route(", backendRefs: [{group: serving.knative.dev, kind: Service, name: fn}]");
    let no_hostnames = no_refs.replace("  hostnames: [a.example.com]\n", "");
    let cases: Vec<(Format, &str, ImportOptions, &str)> = vec![
        (
            Format::IngressNginx,
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: nohost, namespace: a, annotations: {nginx.ingress.kubernetes.io/enable-cors: 'true'}}\nspec:\n  rules:\n  - http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: s, port: {number: 80}}}}]}\n",
            ImportOptions::default(),
            "in.yaml (document 1): Ingress a/nohost: spec.rules[0].host: missing",
        ),
        (
            Format::IngressNginx,
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: named, namespace: a, annotations: {nginx.ingress.kubernetes.io/enable-cors: 'true'}}\nspec:\n  rules:\n  - host: a.example.com\n    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: s, port: {name: http}}}}]}\n",
            ImportOptions::default(),
            "in.yaml (document 1): Ingress a/named: spec.rules[0].http.paths[0].backend.service.port: named port \"http\"",
        ),
        (
            Format::GatewayApi,
            "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec:\n  rules: [{filters: [{type: CORS, cors: {allowOrigins: 7}}]}]\n",
            ImportOptions::default(),
            "in.yaml (document 1): HTTPRoute r: spec.rules[0].filters[0].cors.allowOrigins: invalid type",
        ),
        (
            Format::Cloudfront,
            "{}",
            ImportOptions::default(),
            "in.yaml: a response headers policy names no hosts; fix: pass --host",
        ),
        (
            Format::GatewayApi,
            &no_hostnames,
            ImportOptions::default(),
            "in.yaml (document 1): HTTPRoute a/r: spec.hostnames: absent, so the route matches the Gateway listener's hosts, which corsgate cannot see; fix: pass --host NAME",
        ),
        (
            Format::GatewayApi,
            &no_refs,
            ImportOptions::default(),
            "in.yaml (document 1): HTTPRoute a/r: spec.rules[0].backendRefs: none; fix: add a backendRef or pass --upstream URL",
        ),
        (
            Format::GatewayApi,
            &knative,
            ImportOptions::default(),
            "in.yaml (document 1): HTTPRoute a/r: spec.rules[0].backendRefs[0]: not a core Service with a port; fix: pass --upstream URL",
        ),
        (
            Format::IngressNginx,
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: res, namespace: a, annotations: {nginx.ingress.kubernetes.io/enable-cors: 'true'}}\nspec:\n  rules:\n  - host: a.example.com\n    http: {paths: [{path: /, pathType: Prefix, backend: {resource: {apiGroup: k8s.example.com, kind: StorageBucket, name: b}}}]}\n",
            ImportOptions::default(),
            "in.yaml (document 1): Ingress a/res: spec.rules[0].http.paths[0].backend: not a Service; fix: pass --upstream URL",
        ),
        (
            Format::Cloudfront,
            "Managed-SimpleCORS",
            ImportOptions {
                hosts: vec!["api.example.com".into()],
                ..ImportOptions::default()
            },
            "in.yaml: a response headers policy names no origin server; fix: pass --upstream URL (the distribution's origin)",
        ),
        (
            Format::Cloudfront,
            "{\"DistributionConfig\": {}}",
            cf.clone(),
            "in.yaml (document 1): no ResponseHeadersPolicy.ResponseHeadersPolicyConfig or ResponseHeadersPolicyConfig; fix: pass the JSON of `aws cloudfront get-response-headers-policy --id ID`, or a managed policy's name",
        ),
        (
            Format::Cloudfront,
            "{\"ResponseHeadersPolicyConfig\": {\"Name\": \"bare\", \"CorsConfig\": {\"AccessControlAllowOrigins\": {\"Quantity\": 1, \"Items\": [\"app.example.com\"]}}}}",
            cf.clone(),
            "ResponseHeadersPolicy bare: CorsConfig.AccessControlAllowOrigins: ",
        ),
        (
            Format::IngressNginx,
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: q, namespace: a, annotations: {nginx.ingress.kubernetes.io/enable-cors: 'true'}}\nspec:\n  rules:\n  - host: a.example.com\n    http: {paths: [{path: '/search?', pathType: ImplementationSpecific, backend: {service: {name: s, port: {number: 80}}}}]}\n",
            ImportOptions::default(),
            "Ingress a/q: spec.rules[].http.paths[].path: \"/search?\" is not a path prefix",
        ),
        (
            Format::IngressNginx,
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: off, namespace: a}\nspec:\n  rules:\n  - host: a.example.com\n    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: s, port: {number: 80}}}}]}\n",
            ImportOptions::default(),
            "in.yaml: nothing imported: no Ingress has nginx.ingress.kubernetes.io/enable-cors: \"true\" (1 read with CORS off)",
        ),
        (
            Format::GatewayApi,
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: off, namespace: a}\nspec: {}\n",
            ImportOptions::default(),
            "in.yaml: nothing imported: no HTTPRoute rule with a CORS filter was found; the input looks like ingress-nginx: try `corsgate import ingress-nginx`",
        ),
    ];
    for (format, text, opts, want) in &cases {
        let err = interop::import(
            *format,
            &[Input {
                name: "in.yaml".into(),
                text: text.to_string(),
            }],
            opts,
        )
        .expect_err(want);
        assert!(
            !err.to_string().contains("corsgate bug"),
            "{err}: a mistake in the input is not a corsgate bug"
        );
    }
    for (format, text, opts, want) in &cases {
        let err = interop::import(
            *format,
            &[Input {
                name: "in.yaml".into(),
                text: text.to_string(),
            }],
            opts,
        )
        .expect_err(want);
        assert!(err.to_string().starts_with(want), "{err}\nwanted: {want}");
    }
    // A named port with --upstream converts: --upstream replaces the backend, and says so.
    let (_, text, _, _) = &cases[1];
    let opts = ImportOptions {
        upstream: Some("http://127.0.0.1:9".into()),
        ..ImportOptions::default()
    };
    let (p, report) = interop::import(
        Format::IngressNginx,
        &[Input {
            name: "in.yaml".into(),
            text: text.to_string(),
        }],
        &opts,
    )
    .unwrap();
    assert_eq!(
        p[0].spec.upstream.url.as_deref(),
        Some("http://127.0.0.1:9")
    );
    assert!(report.lines.iter().any(|l| {
        l.key == "upstream-from-flag"
            && l.field == "spec.upstream"
            && l.message
                .contains("--upstream http://127.0.0.1:9 replaces the backend")
    }));
}
