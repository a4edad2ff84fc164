//! Snapshot building as tables: policies in, routes, versions and rejections out.

use super::load::parse_documents;
use super::snapshot::prefix_matches;
use super::*;
use crate::policy::CorsPolicySpec;

fn spec(hosts: &[&str], paths: &[&str]) -> CorsPolicySpec {
    let yaml = format!(
        "hosts: {:?}\npaths: {:?}\nupstream: {{url: \"http://127.0.0.1:9000\"}}\ncors: {{allowOrigins: [\"https://app.example.com\"]}}",
        hosts, paths
    );
    serde_saphyr::from_str(&yaml).unwrap()
}

fn mk_policy(
    ns: &str,
    name: &str,
    created: Option<&str>,
    hosts: &[&str],
    paths: &[&str],
) -> PolicyInput {
    PolicyInput {
        id: PolicyId::new(ns, name),
        created: created.map(str::to_string),
        spec: spec(hosts, paths),
        source: None,
    }
}

fn routed(s: &Snapshot, host: &str, path: &str) -> Option<String> {
    s.route(&normalize_host(host), path)
        .map(|(_, p)| p.id.to_string())
}

#[test]
fn routing_prefers_exact_host_then_longest_segment_prefix() {
    let s = Snapshot::build(vec![
        mk_policy("a", "all", None, &["api.example.com"], &[]),
        mk_policy("a", "v1", None, &["api.example.com"], &["/v1"]),
        mk_policy("a", "v1-admin", None, &["api.example.com"], &["/v1/admin/"]),
        mk_policy("a", "wild", None, &["*.example.com"], &[]),
        mk_policy("a", "deep-wild", None, &["*.eu.example.com"], &["/x"]),
    ]);
    assert!(s.rejected.is_empty(), "{:?}", s.rejected);
    let table = [
        ("api.example.com", "/", Some("a/all")),
        ("API.Example.COM:8080", "/v1", Some("a/v1")),
        ("api.example.com.", "/v1/items", Some("a/v1")),
        ("api.example.com", "/v10", Some("a/all")),
        ("api.example.com", "/v1/admin", Some("a/v1-admin")),
        ("api.example.com", "/v1/admin/x", Some("a/v1-admin")),
        ("www.example.com", "/", Some("a/wild")),
        ("a.b.example.com", "/", Some("a/wild")),
        ("x.eu.example.com", "/x/1", Some("a/deep-wild")),
        ("x.eu.example.com", "/y", Some("a/wild")),
        ("example.com", "/", None),
        ("evilexample.com", "/", None),
        ("api.example.com.evil.net", "/", None),
        ("", "/", None),
    ];
    for (host, path, want) in table {
        assert_eq!(routed(&s, host, path).as_deref(), want, "{host} {path}");
    }
}

#[test]
fn segment_aware_prefixes() {
    assert!(prefix_matches("/", "/anything"));
    assert!(prefix_matches("/v1", "/v1"));
    assert!(prefix_matches("/v1", "/v1/"));
    assert!(!prefix_matches("/v1", "/v10"));
    assert!(!prefix_matches("/v1", "/v"));
}

#[test]
fn conflicts_go_to_the_older_policy_then_by_name() {
    let cases: Vec<(Vec<PolicyInput>, &str, &str)> = vec![
        (
            vec![
                mk_policy(
                    "b",
                    "new",
                    Some("2026-02-01T00:00:00Z"),
                    &["api.example.com"],
                    &["/v1"],
                ),
                mk_policy(
                    "z",
                    "old",
                    Some("2026-01-01T00:00:00Z"),
                    &["api.example.com"],
                    &["/v1"],
                ),
            ],
            "z/old",
            "b/new",
        ),
        (
            // Equal timestamps: namespace/name decides.
            vec![
                mk_policy(
                    "b",
                    "x",
                    Some("2026-01-01T00:00:00Z"),
                    &["api.example.com"],
                    &[],
                ),
                mk_policy(
                    "a",
                    "y",
                    Some("2026-01-01T00:00:00Z"),
                    &["api.example.com"],
                    &[],
                ),
            ],
            "a/y",
            "b/x",
        ),
        (
            // Files have no timestamps.
            vec![
                mk_policy("default", "second", None, &["h.test"], &["/"]),
                mk_policy("default", "first", None, &["h.test", "other.test"], &[]),
            ],
            "default/first",
            "default/second",
        ),
    ];
    for (inputs, winner, loser) in cases {
        let s = Snapshot::build(inputs);
        assert_eq!(s.policies.len(), 1);
        assert_eq!(s.policies[0].id.to_string(), winner);
        assert_eq!(s.rejected.len(), 1);
        assert_eq!(s.rejected[0].policy, loser);
        assert!(
            matches!(&s.rejected[0].rejected, Rejected::Conflicted { winner: w, .. } if w == winner)
        );
    }
}

#[test]
fn different_paths_or_wildcard_against_exact_do_not_conflict() {
    let s = Snapshot::build(vec![
        mk_policy("a", "v1", None, &["api.example.com"], &["/v1"]),
        mk_policy("a", "v2", None, &["api.example.com"], &["/v2"]),
        mk_policy("a", "wild", None, &["*.example.com"], &["/v1"]),
    ]);
    assert_eq!(s.policies.len(), 3);
    assert!(s.rejected.is_empty());
}

#[test]
fn one_invalid_policy_does_not_disturb_the_others() {
    let mut bad = mk_policy("a", "bad", None, &["bad.example.com"], &[]);
    bad.spec.cors.allow_origins = vec!["https://x.com/".into()];
    let s = Snapshot::build(vec![
        bad,
        mk_policy("a", "good", None, &["good.example.com"], &[]),
    ]);
    assert_eq!(s.policies.len(), 1);
    assert!(
        matches!(&s.rejected[0].rejected, Rejected::InvalidSpec { errors } if errors[0].starts_with("spec.cors.allowOrigins[0]"))
    );
    assert!(routed(&s, "good.example.com", "/").is_some());
}

#[test]
fn an_invalid_winner_does_not_block_the_loser() {
    let mut old = mk_policy(
        "a",
        "old",
        Some("2026-01-01T00:00:00Z"),
        &["api.example.com"],
        &[],
    );
    old.spec.upstream.url = None;
    let new = mk_policy(
        "a",
        "new",
        Some("2026-02-01T00:00:00Z"),
        &["api.example.com"],
        &[],
    );
    let s = Snapshot::build(vec![old, new]);
    assert_eq!(routed(&s, "api.example.com", "/").as_deref(), Some("a/new"));
}

#[test]
fn version_depends_on_content_not_order() {
    let a = || mk_policy("a", "one", None, &["one.test"], &[]);
    let b = || mk_policy("a", "two", None, &["two.test"], &[]);
    let v1 = Snapshot::build(vec![a(), b()]).version;
    let v2 = Snapshot::build(vec![b(), a()]).version;
    assert_eq!(v1, v2);
    assert_eq!(v1.len(), 12);
    let mut changed = b();
    changed.spec.cors.max_age_seconds = Some(5);
    assert_ne!(Snapshot::build(vec![a(), changed]).version, v1);
}

/// The version is a wire value: a proxy rejects a config document whose version it does not
/// rebuild, so a controller and a proxy of different releases must compute it alike. It is
/// the SHA-256 of each accepted policy's `namespace/name`, NUL, its spec as JSON, NUL, in
/// name order; this pins it.
#[test]
fn version_is_a_stable_function_of_names_and_specs() {
    let a = mk_policy("a", "one", None, &["one.test"], &["/v1"]);
    let b = mk_policy("b", "two", None, &["two.test"], &[]);
    let mut expected = <sha2::Sha256 as sha2::Digest>::new();
    for p in [&a, &b] {
        sha2::Digest::update(&mut expected, p.id.to_string().as_bytes());
        sha2::Digest::update(&mut expected, [0]);
        sha2::Digest::update(&mut expected, serde_json::to_vec(&p.spec).expect("json"));
        sha2::Digest::update(&mut expected, [0]);
    }
    let expected: String = sha2::Digest::finalize(expected)
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect();
    let snap = Snapshot::build(vec![b, a]);
    // Measured for the proxy's log, and never part of what the version covers.
    assert!(snap.built_in > std::time::Duration::ZERO);
    let v = snap.version;
    assert_eq!(v, expected);
    assert_eq!(v, "7a40f8b1876e");
}

#[test]
fn load_errors_name_file_document_and_field() {
    let text = r#"
apiVersion: corsgate.dev/v1alpha1
kind: CorsPolicy
metadata: {name: ok}
spec:
  hosts: [a.test]
  upstream: {url: "http://127.0.0.1:1"}
---
apiVersion: corsgate.dev/v1alpha1
kind: CorsPolicy
metadata: {name: typo}
spec:
  hosts: [b.test]
  upstream: {url: "http://127.0.0.1:1"}
  cors: {allowOrigin: ["https://x.test"]}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: x}
---
"#;
    let mut errors = Vec::new();
    let inputs = parse_documents("p.yaml", text, &mut errors);
    assert_eq!(inputs.len(), 1);
    let msgs: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(msgs.len(), 2, "{msgs:#?}");
    assert!(
        msgs[0]
            .starts_with("p.yaml (document 2): spec.cors.allowOrigin: unknown field `allowOrigin`"),
        "{}",
        msgs[0]
    );
    assert!(
        msgs[1].starts_with(
            "p.yaml (document 3): apiVersion \"v1\" kind \"ConfigMap\" is not a CorsPolicy"
        ),
        "{}",
        msgs[1]
    );
}

#[test]
fn compile_resolves_services_defaults_and_rules() {
    let s: CorsPolicySpec = serde_saphyr::from_str(
        r#"
hosts: [API.example.com]
paths: ["/v1/"]
upstream: {service: {name: web, port: 8080}}
cors:
  allowOrigins: ["https://app.example.com"]
  maxAgeSeconds: 60
  rules:
    - origins: ["https://admin.example.com"]
      allowMethods: [DELETE]
"#,
    )
    .unwrap();
    let c = CompiledPolicy::from_spec(PolicyId::new("shop", "api"), &s).unwrap();
    assert_eq!(c.hosts, ["api.example.com"]);
    assert_eq!(c.paths, ["/v1"]);
    assert_eq!(c.upstream.url(), "http://web.shop.svc:8080");
    assert_eq!(c.upstream.timeout.as_secs(), 30);
    let e = c.effective();
    assert_eq!(
        e["cors"]["allowMethods"],
        serde_json::json!(["GET", "HEAD", "POST"])
    );
    assert_eq!(
        e["cors"]["rules"][0]["allowMethods"],
        serde_json::json!(["DELETE"])
    );
    assert_eq!(
        e["cors"]["rules"][0]["maxAgeSeconds"],
        serde_json::json!(60),
        "a rule inherits what it omits"
    );
}

#[test]
fn a_kubectl_list_is_read_item_by_item() {
    let text = r#"
apiVersion: v1
kind: List
items:
  - apiVersion: corsgate.dev/v1alpha1
    kind: CorsPolicy
    metadata: {name: one, namespace: shop, creationTimestamp: "2026-01-01T00:00:00Z", uid: x, resourceVersion: "7"}
    spec: {hosts: [a.test], upstream: {url: "http://127.0.0.1:1"}}
    status: {observedGeneration: 1, conditions: []}
  - apiVersion: corsgate.dev/v1alpha1
    kind: CorsPolicy
    metadata: {name: two}
    spec: {hosts: [b.test], upstream: {}}
"#;
    let mut errors = Vec::new();
    let inputs = parse_documents("get.yaml", text, &mut errors);
    assert_eq!(inputs.len(), 2);
    assert_eq!(inputs[0].created.as_deref(), Some("2026-01-01T00:00:00Z"));
    assert_eq!(
        inputs[0].source.as_deref(),
        Some("get.yaml (document 1, item 1)")
    );
    assert!(errors.is_empty());
    let snap = Snapshot::build(inputs);
    assert!(
        matches!(&snap.rejected[0].rejected, Rejected::InvalidSpec { errors } if errors[0].starts_with("spec.upstream: exactly one of service or url"))
    );
}

/// A self-signed certificate and key for `host` (rcgen), as PEM.
fn cert_for(host: &str) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec![host.to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    (cert.pem(), key.serialize_pem())
}

fn secret_doc(ns: Option<&str>, name: &str, (cert, key): &(String, String)) -> String {
    use base64::Engine as _;
    let b = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let ns = ns.map_or(String::new(), |n| format!("\n  namespace: {n}"));
    format!(
        "apiVersion: v1\ndata:\n  tls.crt: {}\n  tls.key: {}\nkind: Secret\nmetadata:\n  creationTimestamp: null\n  name: {name}{ns}\ntype: kubernetes.io/tls\n",
        b(cert),
        b(key)
    )
}

const TLS_POLICY: &str = "apiVersion: corsgate.dev/v1alpha1\nkind: CorsPolicy\nmetadata: {name: api}\nspec:\n  hosts: [api.example.com]\n  upstream: {url: \"http://127.0.0.1:1\"}\n  tls: {secretName: api-tls}\n";

fn snapshot_of(text: &str) -> Snapshot {
    let mut errors = Vec::new();
    let m = super::load::parse_manifests("p.yaml", text, &mut errors);
    assert!(errors.is_empty(), "{errors:?}");
    Snapshot::build_with(m.policies, &m.secrets.into_iter().collect())
}

#[test]
fn secrets_in_policy_files_serve_by_sni_and_a_new_certificate_is_a_new_version() {
    let a = cert_for("api.example.com");
    // No namespace: "default", as for the policy; also inside a v1 List.
    let listed = format!(
        "apiVersion: v1\nkind: List\nitems:\n- {}",
        serde_json::to_string(
            &serde_saphyr::from_str::<serde_json::Value>(&secret_doc(None, "api-tls", &a)).unwrap()
        )
        .unwrap()
    );
    let s1 = snapshot_of(&format!("{listed}\n---\n{TLS_POLICY}"));
    assert_eq!(s1.tls.len(), 1);
    assert_eq!(s1.tls[0].problem, None, "{:?}", s1.tls);
    assert!(s1.certs.lookup("api.example.com").is_some());
    assert!(s1.certs.lookup("www.example.com").is_none());

    // The same certificate: the same version; an unreferenced Secret changes nothing.
    let other = secret_doc(None, "unused", &cert_for("x.example.com"));
    let s2 = snapshot_of(&format!(
        "{}---\n{TLS_POLICY}---\n{other}",
        secret_doc(None, "api-tls", &a)
    ));
    assert_eq!(s1.version, s2.version);
    // A rotated certificate: a new version (the proxy installs it).
    let s3 = snapshot_of(&format!(
        "{}---\n{TLS_POLICY}",
        secret_doc(None, "api-tls", &cert_for("api.example.com"))
    ));
    assert_ne!(s1.version, s3.version);
    // Without spec.tls the version is what it was before TLS existed (no certificate hashed).
    let plain = TLS_POLICY.replace("  tls: {secretName: api-tls}\n", "");
    assert_eq!(
        snapshot_of(&format!("{}---\n{plain}", secret_doc(None, "api-tls", &a))).version,
        snapshot_of(&plain).version
    );
}

#[test]
fn a_secret_in_another_namespace_is_not_found_and_the_policy_still_routes() {
    let s = snapshot_of(&format!(
        "{}---\n{TLS_POLICY}",
        secret_doc(Some("other"), "api-tls", &cert_for("api.example.com"))
    ));
    assert_eq!(s.policies.len(), 1, "it still routes over plain HTTP");
    assert!(s.route("api.example.com", "/").is_some());
    let reason = s.tls[0].problem.as_ref().map(|p| p.reason());
    assert_eq!(reason, Some("SecretNotFound"));
    assert!(s.certs.is_empty());
}

/// The document splitter (serde-saphyr): empty documents take no number, YAML 1.2 booleans
/// only (`on` stays a string, as serde_yaml read it), List items numbered, and a syntax
/// error names its document.
#[test]
fn yaml_objects_number_documents_and_keep_yaml_1_2_booleans() {
    let text = "---\n---\nkind: A\nname: on\n---\nkind: List\nitems: [{kind: B}, {kind: C}]\n";
    let objects = crate::config::load::objects("f.yaml", text).expect("valid");
    let got: Vec<(String, serde_json::Value)> = objects;
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[0].0, "f.yaml (document 1)");
    assert_eq!(got[0].1["name"], "on");
    assert_eq!(got[1].0, "f.yaml (document 2, item 1)");
    assert_eq!(got[2].0, "f.yaml (document 2, item 2)");
    let err = crate::config::load::objects("f.yaml", "kind: A\n---\nkind: [B\n")
        .expect_err("syntax error");
    let text = err.to_string();
    assert!(
        text.starts_with("f.yaml (document 2): not valid YAML:"),
        "{text}"
    );
}
