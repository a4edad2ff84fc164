//! `corsgate import` / `corsgate export` (issue 16): golden files per format (every report
//! line is in them), the imported YAML accepted by the same loader as `corsgate check`, round
//! trips, the exit codes of the binary, and behavioural equivalence: imported ingress-nginx,
//! Gateway API and CloudFront (managed) policies through the real proxy over loopback,
//! compared with what each source system documents.
//!
//! Goldens live under tests/interop/<format>/; `CORSGATE_REGENERATE_GOLDENS=1 cargo test
//! --test interop` rewrites them (review the diff); by default the comparison is exact.

mod behaviour;
mod errors;
mod report_keys;
#[path = "../support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};

use corsgate::config::{Rejected, Snapshot, load::parse_documents};
use corsgate::interop::{self, Format, ImportOptions, Imported, Input, Report, render_policies};
use corsgate::policy::Mode;
use support::*;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

fn input(rel: &str) -> Input {
    let p = dir().join(rel);
    Input {
        name: format!("tests/interop/{rel}"),
        text: std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
    }
}

/// Compares `actual` with the golden file `rel`, or rewrites it when regenerating.
fn golden(rel: &str, actual: &str) {
    let p = dir().join(rel);
    if std::env::var_os("CORSGATE_REGENERATE_GOLDENS").is_some() {
        std::fs::write(&p, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&p).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (CORSGATE_REGENERATE_GOLDENS=1 writes it)",
            p.display()
        )
    });
    assert!(
        expected == actual,
        "{rel} differs from the golden file\n--- expected\n{expected}\n--- actual\n{actual}"
    );
}

fn cloudfront_opts(mode: Mode) -> ImportOptions {
    ImportOptions {
        mode,
        hosts: vec!["api.example.com".into()],
        upstream: Some("http://origin.example.com".into()),
        namespace: Some("edge".into()),
    }
}

/// The YAML loads with `corsgate check`'s loader and every policy compiles.
fn assert_checks(yaml: &str) -> Snapshot {
    let mut errors = Vec::new();
    let inputs = parse_documents("imported.yaml", yaml, &mut errors);
    assert!(errors.is_empty(), "{errors:?}");
    let snap = Snapshot::build(inputs);
    for r in &snap.rejected {
        assert!(
            !matches!(r.rejected, Rejected::InvalidSpec { .. }),
            "{}: {:?}",
            r.policy,
            r.rejected
        );
    }
    snap
}

fn import_case(format: Format, files: &[&str], opts: &ImportOptions, out: &str) -> Vec<Imported> {
    let inputs: Vec<Input> = files.iter().map(|f| input(f)).collect();
    let (policies, report) = interop::import(format, &inputs, opts).expect("import");
    let yaml = render_policies(&policies).expect("render");
    assert_checks(&yaml);
    golden(&format!("{out}.out.yaml"), &yaml);
    golden(&format!("{out}.report.txt"), &report.render());
    policies
}

fn export_case(format: Format, yaml: &str, out: &str, ext: &str) -> Report {
    let inputs = [Input {
        name: "policies.yaml".into(),
        text: yaml.into(),
    }];
    let (text, report) = interop::export(format, &inputs).expect("export");
    golden(&format!("{out}.{ext}"), &text);
    golden(&format!("{out}.{ext}.report.txt"), &report.render());
    report
}

#[test]
fn ingress_nginx_goldens() {
    let opts = ImportOptions {
        mode: Mode::Shadow,
        ..ImportOptions::default()
    };
    let p = import_case(
        Format::IngressNginx,
        &["ingress-nginx/input.yaml"],
        &opts,
        "ingress-nginx/input",
    );
    let names: Vec<&str> = p.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        ["storefront", "accounts-1", "accounts-2", "partner-api"],
        "static has CORS off"
    );
    assert!(p.iter().all(|p| p.spec.mode == Mode::Shadow));
    let yaml = render_policies(&p).unwrap();
    export_case(
        Format::IngressNginx,
        &yaml,
        "ingress-nginx/export",
        "ingress-nginx.yaml",
    );
    export_case(
        Format::GatewayApi,
        &yaml,
        "ingress-nginx/export",
        "gateway-api.yaml",
    );
}

#[test]
fn gateway_api_goldens() {
    let opts = ImportOptions::default();
    let p = import_case(
        Format::GatewayApi,
        &["gateway-api/input.yaml"],
        &opts,
        "gateway-api/input",
    );
    // Two rules with different CORS filters: two policies, the third rule has no filter.
    assert_eq!(p.len(), 2);
    assert_eq!(p[0].spec.paths, ["/v1/products", "/v1/search"]);
    assert_eq!(
        p[1].spec.paths,
        ["/v1/cart"],
        "the regex match is not imported"
    );
    let yaml = render_policies(&p).unwrap();
    export_case(
        Format::GatewayApi,
        &yaml,
        "gateway-api/export",
        "gateway-api.yaml",
    );
}

#[test]
fn cloudfront_goldens() {
    let p = import_case(
        Format::Cloudfront,
        &["cloudfront/custom.json"],
        &cloudfront_opts(Mode::Enforce),
        "cloudfront/custom",
    );
    let yaml = render_policies(&p).unwrap();
    export_case(Format::Cloudfront, &yaml, "cloudfront/export", "json");
    for (name, _, _) in interop::cloudfront::MANAGED {
        let rel = format!("cloudfront/managed-{name}.txt");
        let p = import_case(
            Format::Cloudfront,
            &[&rel],
            &cloudfront_opts(Mode::Enforce),
            &format!("cloudfront/managed-{name}"),
        );
        assert_eq!(p.len(), 1);
        let yaml = render_policies(&p).unwrap();
        let report = export_case(
            Format::Cloudfront,
            &yaml,
            &format!("cloudfront/managed-{name}.export"),
            "json",
        );
        assert!(
            report.lines.iter().any(|l| l.key == "managed-equivalent"
                && l.message.contains(&format!("Managed-{name}:"))),
            "{name}: the export names the managed policy: {report:?}"
        );
    }
}

/// The odd corners of each dialect: every line of their reports is in the goldens.
#[test]
fn edge_case_goldens() {
    let opts = ImportOptions {
        mode: Mode::Enforce,
        hosts: vec!["fallback.example.com".into()],
        upstream: Some("http://127.0.0.1:9000".into()),
        namespace: None,
    };
    let p = import_case(
        Format::IngressNginx,
        &["ingress-nginx/edge-cases.yaml"],
        &opts,
        "ingress-nginx/edge-cases",
    );
    let names: Vec<&str> = p.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        ["odd", "nobody", "files", "thumbs"],
        "hostless has no paths; rewrite has CORS off"
    );
    assert_eq!(
        p[0].spec.hosts,
        ["fallback.example.com"],
        "a rule without host takes --host"
    );
    import_case(
        Format::GatewayApi,
        &["gateway-api/edge-cases.yaml"],
        &opts,
        "gateway-api/edge-cases",
    );
    import_case(
        Format::Cloudfront,
        &["cloudfront/edge-cases.json"],
        &cloudfront_opts(Mode::Shadow),
        "cloudfront/edge-cases",
    );
    let yaml = input("export-edge-cases.yaml").text;
    for (format, ext) in [
        (Format::IngressNginx, "ingress-nginx.yaml"),
        (Format::GatewayApi, "gateway-api.yaml"),
        (Format::Cloudfront, "cloudfront.json"),
    ] {
        let report = export_case(format, &yaml, "export-edge-cases", ext);
        assert!(
            report
                .lines
                .iter()
                .any(|l| l.key == "rules-dropped" && l.severity == interop::Severity::Risk),
            "{ext}"
        );
    }
    // A URL upstream has no Service to name in an Ingress or an HTTPRoute.
    let url = "apiVersion: corsgate.dev/v1alpha1\nkind: CorsPolicy\nmetadata: {name: u, namespace: a}\nspec:\n  hosts: [u.example.com]\n  upstream: {url: 'http://127.0.0.1:1'}\n";
    for format in [Format::IngressNginx, Format::GatewayApi] {
        let err = interop::export(
            format,
            &[Input {
                name: "u.yaml".into(),
                text: url.into(),
            }],
        )
        .expect_err("url upstream");
        assert!(
            err.to_string()
                .starts_with("CorsPolicy a/u: spec.upstream.url:"),
            "{err}"
        );
    }
}

/// Import, export to the same format, import again: the same policies.
#[test]
fn round_trips_give_equivalent_policies() {
    let enforce = ImportOptions::default();
    let cases: [(Format, &str, &[&str], ImportOptions); 3] = [
        (
            Format::IngressNginx,
            "ingress-nginx/input.yaml",
            &["storefront", "accounts-1", "accounts-2", "partner-api"],
            enforce.clone(),
        ),
        (
            Format::GatewayApi,
            "gateway-api/input.yaml",
            &["catalog-1", "catalog-2"],
            enforce.clone(),
        ),
        (
            Format::Cloudfront,
            "cloudfront/custom.json",
            &["storefront-cors"],
            cloudfront_opts(Mode::Enforce),
        ),
    ];
    for (format, file, names, opts) in cases {
        let (first, _) = interop::import(format, &[input(file)], &opts).unwrap();
        let keep: Vec<Imported> = first
            .into_iter()
            .filter(|p| names.contains(&p.name.as_str()))
            .collect();
        assert_eq!(keep.len(), names.len(), "{file}");
        let yaml = render_policies(&keep).unwrap();
        let (exported, _) = interop::export(
            format,
            &[Input {
                name: "p.yaml".into(),
                text: yaml,
            }],
        )
        .unwrap();
        let (mut again, _) = interop::import(
            format,
            &[Input {
                name: "exported".into(),
                text: exported,
            }],
            &opts,
        )
        .unwrap();
        if format == Format::Cloudfront {
            // The exported RHP is named after namespace and policy; the spec is what counts.
            for p in &mut again {
                p.name = "storefront-cors".into();
                p.namespace = "edge".into();
            }
        }
        for (a, b) in keep.iter().zip(&again) {
            assert_eq!(a.spec, b.spec, "{file}: {}", a.name);
        }
        assert_eq!(keep.len(), again.len(), "{file}");
    }
}

/// Gateway API's "*" with credentials. Origins: refused for good (reflecting every origin
/// with credentials is the classic hole). Methods and headers: corsgate reflects the
/// requested ones, as Gateway API does, so they are imported as "*" (an info line each).
#[test]
fn gateway_api_star_with_credentials() {
    let p = import_case(
        Format::GatewayApi,
        &["gateway-api/star-credentials.yaml"],
        &ImportOptions::default(),
        "gateway-api/star-credentials",
    );
    let cors = &p[0].spec.cors;
    assert_eq!(cors.allow_methods.as_deref(), Some(&["*".to_string()][..]));
    assert_eq!(cors.allow_headers, ["*"]);
    assert!(cors.allow_credentials);
    let report = interop::import(
        Format::GatewayApi,
        &[input("gateway-api/star-credentials.yaml")],
        &ImportOptions::default(),
    )
    .unwrap()
    .1;
    // allowOrigins "*" with credentials stays refused.
    assert_eq!(p[1].spec.cors.allow_origins, ["*"]);
    assert!(!p[1].spec.cors.allow_credentials);
    let l = report
        .lines
        .iter()
        .find(|l| l.key == "origin-star-credentials")
        .expect("origin line");
    assert_eq!(l.severity, interop::Severity::Risk);
    assert_eq!(l.object, "HTTPRoute default/any");
    assert_eq!(l.field, "spec.rules[0].filters[0].cors.allowOrigins");
}

#[test]
fn the_binary_prints_yaml_on_stdout_the_report_on_stderr_and_exits_by_validity() {
    let bin = env!("CARGO_BIN_EXE_corsgate");
    let file = dir().join("ingress-nginx/input.yaml");
    let out = std::process::Command::new(bin)
        .args(["import", "ingress-nginx", "--mode", "Enforce"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = String::from_utf8(out.stdout).unwrap();
    assert!(!yaml.contains("mode: Shadow"));
    assert_checks(&yaml);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("[origin-star-credentials]") && stderr.ends_with("info\n"),
        "{stderr}"
    );
    // Exported ingress-nginx YAML is not a CorsPolicy: export of it fails, exit 1.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
    )
    .unwrap();
    let out = std::process::Command::new(bin)
        .args(["export", "gateway-api"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with(&format!(
            "error: {} (document 1): apiVersion",
            bad.display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("is not a CorsPolicy"), "{stderr}");
}

/// `--upstream` replaces every imported backend (Shadow in front of the ingress-nginx
/// controller, docs/migrating.md): rules split only by backend merge, one info line per policy.
#[test]
fn upstream_flag_replaces_every_imported_backend() {
    let opts = ImportOptions {
        mode: Mode::Shadow,
        upstream: Some("http://ingress-nginx-controller.ingress-nginx.svc:80".into()),
        ..ImportOptions::default()
    };
    let (p, report) = interop::import(
        Format::IngressNginx,
        &[input("ingress-nginx/input.yaml")],
        &opts,
    )
    .unwrap();
    let names: Vec<&str> = p.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["storefront", "accounts", "partner-api"]);
    assert_eq!(p[1].spec.paths, ["/admin", "/healthz", "/v1"]);
    for policy in &p {
        assert_eq!(
            policy.spec.upstream.url.as_deref(),
            Some("http://ingress-nginx-controller.ingress-nginx.svc:80")
        );
        assert!(policy.spec.upstream.service.is_none());
    }
    let lines: Vec<_> = report
        .lines
        .iter()
        .filter(|l| l.key == "upstream-from-flag")
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[1].object, "CorsPolicy identity/accounts");
    assert_eq!(lines[1].severity, interop::Severity::Info);
    assert!(
        lines[1].message.contains("Ingress identity/accounts"),
        "{}",
        lines[1].message
    );
    let shadow = report
        .lines
        .iter()
        .find(|l| l.key == "shadow-mode")
        .expect("shadow line");
    assert!(shadow.message.contains("--upstream"), "{}", shadow.message);
}
