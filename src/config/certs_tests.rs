use super::*;
use rcgen::{CertificateParams, IsCa, Issuer, KeyPair};

const NOW: u64 = 1_800_000_000;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW)
}

/// A self-signed certificate for `names` valid until `NOW + days`: (cert PEM, key PEM).
fn self_signed(names: &[&str], days: i64) -> (String, String) {
    let key = KeyPair::generate().expect("key");
    let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .expect("params");
    let t = time::OffsetDateTime::from_unix_timestamp(NOW as i64).expect("time");
    p.not_before = t - time::Duration::days(1);
    p.not_after = t + time::Duration::days(days);
    let cert = p.self_signed(&key).expect("sign");
    (cert.pem(), key.serialize_pem())
}

/// A certificate for `names` signed by a fresh CA, valid for a year.
fn ca_signed(names: &[&str]) -> (String, String) {
    let ca_key = KeyPair::generate().expect("key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "test CA");
    let ca_cert = ca.self_signed(&ca_key).expect("ca");
    let issuer = Issuer::from_ca_cert_pem(&ca_cert.pem(), ca_key).expect("issuer");
    let key = KeyPair::generate().expect("key");
    let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .expect("params");
    p.distinguished_name
        .push(rcgen::DnType::CommonName, names[0]);
    let t = time::OffsetDateTime::from_unix_timestamp(NOW as i64).expect("time");
    p.not_before = t - time::Duration::days(1);
    p.not_after = t + time::Duration::days(365);
    let cert = p.signed_by(&key, &issuer).expect("sign");
    (cert.pem(), key.serialize_pem())
}

fn secret(pair: &(String, String)) -> TlsSecret {
    TlsSecret {
        namespace: "shop".into(),
        name: "api-tls".into(),
        secret_type: SECRET_TYPE_TLS.into(),
        cert_pem: pair.0.clone().into_bytes(),
        key_pem: pair.1.clone().into_bytes(),
    }
}

fn spec() -> TlsSpec {
    TlsSpec {
        secret_name: "api-tls".into(),
        redirect_http: false,
    }
}

fn hosts(h: &[&str]) -> Vec<String> {
    h.iter().map(|s| s.to_string()).collect()
}

#[test]
fn a_san_covers_its_name_and_a_wildcard_san_one_label() {
    for (san, host, want) in [
        ("api.example.com", "api.example.com", true),
        ("*.example.com", "api.example.com", true),
        ("*.example.com", "a.b.example.com", false),
        ("*.example.com", "example.com", false),
        ("*.example.com", "*.example.com", true),
        ("api.example.com", "*.example.com", false),
        ("*.other.com", "api.example.com", false),
        ("www.example.com", "api.example.com", false),
    ] {
        assert_eq!(covers(san, host), want, "{san} covers {host}");
    }
}

#[test]
fn a_ca_signed_certificate_covering_every_host_serves_without_warnings() {
    let pair = ca_signed(&["api.example.com", "*.api.example.com"]);
    let c = check(
        "shop",
        &spec(),
        &hosts(&["api.example.com", "*.api.example.com", "v2.api.example.com"]),
        Some(&secret(&pair)),
        now(),
    )
    .expect("serves");
    assert_eq!(c.names, ["api.example.com", "*.api.example.com"]);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn each_unusable_secret_has_its_own_reason() {
    let good = ca_signed(&["api.example.com"]);
    let h = hosts(&["api.example.com"]);
    let reason = |s: Option<&TlsSecret>, h: &[String]| {
        check("shop", &spec(), h, s, now())
            .map(|_| ())
            .map_err(|e| (e.reason(), e.to_string()))
    };
    let (r, msg) = reason(None, &h).expect_err("missing");
    assert_eq!(r, "SecretNotFound");
    assert!(msg.contains("secret shop/api-tls not found"), "{msg}");

    let mut opaque = secret(&good);
    opaque.secret_type = String::new();
    let (r, msg) = reason(Some(&opaque), &h).expect_err("opaque");
    assert_eq!(r, "InvalidSecretType");
    assert!(msg.contains("has type \"Opaque\""), "{msg}");

    let mut garbage = secret(&good);
    garbage.cert_pem = b"not a certificate".to_vec();
    let (r, msg) = reason(Some(&garbage), &h).expect_err("garbage");
    assert_eq!(r, "InvalidCertificate");
    assert!(msg.contains("tls.crt cannot be used"), "{msg}");

    let mut no_key = secret(&good);
    no_key.key_pem = Vec::new();
    let (r, msg) = reason(Some(&no_key), &h).expect_err("no key");
    assert_eq!(r, "InvalidCertificate");
    assert!(msg.contains("tls.key cannot be used"), "{msg}");

    let other = ca_signed(&["api.example.com"]);
    let mut mismatched = secret(&good);
    mismatched.key_pem = other.1.into_bytes();
    let (r, msg) = reason(Some(&mismatched), &h).expect_err("mismatch");
    assert_eq!(r, "KeyMismatch");
    assert!(msg.contains("is not the key of the certificate"), "{msg}");

    let (r, msg) = reason(
        Some(&secret(&good)),
        &hosts(&["api.example.com", "www.example.com"]),
    )
    .expect_err("not covered");
    assert_eq!(r, "HostNotCovered");
    assert!(
        msg.contains("does not cover host www.example.com (its DNS names: api.example.com)"),
        "{msg}"
    );
}

#[test]
fn expiring_expired_and_self_signed_certificates_are_warned_about() {
    let h = hosts(&["api.example.com"]);
    let warn = |days| {
        check(
            "shop",
            &spec(),
            &h,
            Some(&secret(&self_signed(&["api.example.com"], days))),
            now(),
        )
        .expect("still serves")
        .warnings
    };
    let soon = warn(5);
    assert_eq!(soon.len(), 2, "{soon:?}");
    assert!(
        soon[0].contains("expires on") && soon[0].contains("(in 5 days)"),
        "{soon:?}"
    );
    assert!(soon[1].contains("is self-signed"), "{soon:?}");
    let later = warn(30);
    assert_eq!(later.len(), 1, "{later:?}");
    assert!(later[0].contains("is self-signed"), "{later:?}");
    let expired = warn(-1);
    assert!(expired[0].contains("expired on"), "{expired:?}");
}

#[test]
fn the_digest_changes_with_the_certificate() {
    let h = hosts(&["api.example.com"]);
    let a = check(
        "shop",
        &spec(),
        &h,
        Some(&secret(&ca_signed(&["api.example.com"]))),
        now(),
    )
    .expect("a");
    let b = check(
        "shop",
        &spec(),
        &h,
        Some(&secret(&ca_signed(&["api.example.com"]))),
        now(),
    )
    .expect("b");
    assert_ne!(a.digest, b.digest);
}

#[test]
fn the_table_prefers_the_exact_host_then_the_most_specific_wildcard() {
    let key = |n: &str| {
        let pair = ca_signed(&[n]);
        check("shop", &spec(), &hosts(&[n]), Some(&secret(&pair)), now())
            .expect("key")
            .key
    };
    let (exact, wild, deeper) = (
        key("api.example.com"),
        key("*.example.com"),
        key("*.eu.example.com"),
    );
    let mut t = CertTable::default();
    t.insert("*.example.com", &wild);
    t.insert("api.example.com", &exact);
    t.insert("*.eu.example.com", &deeper);
    let is = |t: &CertTable, name: &str, want: &Arc<CertifiedKey>| {
        assert!(
            t.lookup(name).is_some_and(|k| Arc::ptr_eq(k, want)),
            "{name}"
        );
    };
    is(&t, "api.example.com", &exact);
    is(&t, "API.Example.com.", &exact);
    is(&t, "www.example.com", &wild);
    is(&t, "a.eu.example.com", &deeper);
    is(&t, "eu.example.com", &wild);
    assert!(t.lookup("example.com").is_none());
    assert!(t.lookup("other.com").is_none());
    // The first certificate for a host stays.
    t.insert("api.example.com", &wild);
    is(&t, "api.example.com", &exact);
}

fn tls_input(name: &str, host: &str, secret: &str) -> crate::config::PolicyInput {
    crate::config::PolicyInput {
        id: crate::config::PolicyId::new("shop", name),
        created: None,
        spec: serde_saphyr::from_str(&format!(
            "{{hosts: [{host}], upstream: {{url: 'http://127.0.0.1:9'}}, tls: {{secretName: {secret}}}}}"
        ))
        .expect("spec"),
        source: None,
    }
}

fn tls_secret(name: &str, pair: &(String, String)) -> TlsSecret {
    TlsSecret {
        namespace: "shop".into(),
        name: name.into(),
        secret_type: SECRET_TYPE_TLS.into(),
        cert_pem: pair.0.clone().into_bytes(),
        key_pem: pair.1.clone().into_bytes(),
    }
}

#[test]
fn the_config_document_carries_only_serving_secrets_and_rebuilds_the_same_version() {
    use crate::config::Snapshot;
    use crate::config::wire::ConfigDocument;
    let good = ca_signed(&["api.example.com"]);
    let wrong = ca_signed(&["other.example.com"]);
    let inputs = vec![
        tls_input("api", "api.example.com", "api-tls"),
        tls_input("bad", "bad.example.com", "wrong-tls"),
        tls_input("missing", "m.example.com", "nowhere"),
    ];
    let secrets: Secrets = [
        tls_secret("api-tls", &good),
        tls_secret("wrong-tls", &wrong),
        tls_secret("unused", &good),
    ]
    .into_iter()
    .collect();
    let snap = Snapshot::build_with(inputs.clone(), &secrets);
    let doc = ConfigDocument::of_with(&snap, &inputs, &secrets);
    let names: Vec<&str> = doc.secrets.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["api-tls"],
        "neither a Secret that cannot serve nor an unreferenced one is sent"
    );
    let json = serde_json::to_vec(&doc).expect("json");
    let rebuilt = ConfigDocument::parse(&json)
        .and_then(ConfigDocument::into_snapshot)
        .expect("the proxy rebuilds it");
    assert_eq!(rebuilt.version, snap.version);
    assert!(rebuilt.certs.lookup("api.example.com").is_some());
    assert!(rebuilt.certs.lookup("bad.example.com").is_none());
    // Without TLS policies nothing changes on the wire.
    let plain = ConfigDocument::of(&Snapshot::build(vec![]), &[]);
    assert!(
        !String::from_utf8_lossy(&serde_json::to_vec(&plain).expect("json")).contains("secrets")
    );
    // A tampered key is refused as a whole.
    let mut bad = doc.clone();
    bad.secrets[0].tls_key = "not base64!".into();
    assert!(matches!(
        bad.into_snapshot(),
        Err(crate::config::wire::WireError::Secret {
            field: "tls.key",
            ..
        })
    ));
}

#[test]
fn withheld_secrets_report_why_and_keep_the_version_a_proxy_computes() {
    use crate::config::Snapshot;
    use crate::config::wire::ConfigDocument;
    let inputs = vec![tls_input("api", "api.example.com", "api-tls")];
    let snap = Snapshot::build_with(inputs.clone(), &Secrets::withheld());
    let (report, problem) = snap.tls_problems().next().expect("a problem");
    assert_eq!(report.policy, "shop/api");
    assert_eq!(problem.reason(), "CertificatesWithheld");
    let text = problem.to_string();
    assert!(
        text.starts_with("spec.tls.secretName: secret shop/api-tls is not read"),
        "{text}"
    );
    assert!(text.contains("fix: install with the Helm chart"), "{text}");
    let doc = ConfigDocument::of_with(&snap, &inputs, &Secrets::withheld());
    assert!(doc.secrets.is_empty());
    assert_eq!(
        doc.into_snapshot().expect("rebuild").version,
        snap.version,
        "the proxy, with no Secret, builds the same version"
    );
}
