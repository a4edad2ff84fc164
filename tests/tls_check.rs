//! `corsgate check` and `corsgate explain` on policies with `spec.tls` (issue 15 item 4):
//! the same problems and warnings as the controller's ResolvedRefs, from the one
//! `config::certs::check`, on Secret documents in the policy files.

mod support;
#[path = "support/tls.rs"]
mod tls_support;

use std::path::Path;
use std::process::{Command, Output};

const FIXTURE_SECRET: &str = include_str!("fixtures/tls/api-tls.secret.yaml");

fn tls_policy(secret: &str) -> String {
    support::policy(
        "api",
        "[api.example.com]",
        &format!("  tls: {{secretName: {secret}}}"),
        "http://127.0.0.1:9",
    )
}

fn run(args: &[&str], dir: &Path, yaml: &str) -> (Output, String, String) {
    let file = dir.join("p.yaml");
    std::fs::write(&file, yaml).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_corsgate"))
        .args(args)
        .arg(&file)
        .args(["--host", "api.example.com"])
        .output()
        .expect("run corsgate");
    let (so, se) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    (out, so, se)
}

/// `corsgate check FILE` (explain's extra --host flag is not passed).
fn check(dir: &Path, yaml: &str) -> (bool, String, String) {
    let file = dir.join("p.yaml");
    std::fs::write(&file, yaml).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_corsgate"))
        .arg("check")
        .arg(&file)
        .output()
        .expect("run corsgate check");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A self-signed certificate for api.example.com that expires in 3 days.
fn self_signed_soon() -> (String, String) {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut p = rcgen::CertificateParams::new(vec!["api.example.com".to_string()]).expect("p");
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::days(1);
    p.not_after = now + time::Duration::days(3) + time::Duration::hours(1);
    let cert = p.self_signed(&key).expect("sign");
    (cert.pem(), key.serialize_pem())
}

#[test]
fn check_accepts_kubectls_secret_and_names_each_unusable_one() {
    let dir = tempfile::tempdir().expect("dir");
    let (ok, out, err) = check(
        dir.path(),
        &format!("{FIXTURE_SECRET}---\n{}", tls_policy("api-tls")),
    );
    assert!(ok, "{err}");
    assert!(out.starts_with("ok: 1 policies valid"), "{out}");
    assert_eq!(
        err, "",
        "a CA-signed certificate valid for decades: no warning"
    );

    let (ok, _, err) = check(dir.path(), &tls_policy("missing-tls"));
    assert!(!ok);
    assert!(
        err.contains("policy test/api: spec.tls.secretName: secret test/missing-tls not found"),
        "{err}"
    );

    let opaque = FIXTURE_SECRET.replace("type: kubernetes.io/tls", "type: Opaque");
    let (ok, _, err) = check(
        dir.path(),
        &format!("{opaque}---\n{}", tls_policy("api-tls")),
    );
    assert!(!ok);
    assert!(
        err.contains("has type \"Opaque\", not kubernetes.io/tls"),
        "{err}"
    );

    let other_ns = FIXTURE_SECRET.replace("namespace: test", "namespace: other");
    let (ok, _, err) = check(
        dir.path(),
        &format!("{other_ns}---\n{}", tls_policy("api-tls")),
    );
    assert!(!ok, "a Secret in another namespace is not the policy's");
    assert!(err.contains("secret test/api-tls not found"), "{err}");

    let broken = FIXTURE_SECRET.replacen("tls.crt: LS0t", "tls.crt: L$$t", 1);
    let (ok, _, err) = check(
        dir.path(),
        &format!("{broken}---\n{}", tls_policy("api-tls")),
    );
    assert!(!ok);
    assert!(err.contains("data.tls.crt: not base64"), "{err}");
}

#[test]
fn check_and_explain_warn_of_a_self_signed_certificate_that_expires_soon() {
    let dir = tempfile::tempdir().expect("dir");
    let (cert, key) = self_signed_soon();
    let yaml = format!(
        "{}---\n{}",
        tls_support::secret_yaml("test", "api-tls", &cert, &key),
        tls_policy("api-tls")
    );
    let (ok, _, err) = check(dir.path(), &yaml);
    assert!(ok, "warnings do not fail the check: {err}");
    assert!(err.contains("warning: "), "{err}");
    assert!(
        err.contains("expires on") && err.contains("(in 3 days)"),
        "{err}"
    );
    assert!(err.contains("is self-signed"), "{err}");

    let (out, stdout, stderr) = run(&["explain", "--policies"], dir.path(), &yaml);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("tls        HTTPS with the certificate of secret api-tls"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "warning: spec.tls.secretName: the certificate in secret test/api-tls expires on"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("is self-signed"), "{stdout}");
}
