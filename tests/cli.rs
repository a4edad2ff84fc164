//! `corsgate check`, `explain`, `demo` and `import` as a user runs them.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn corsgate(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_corsgate"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_accepts_the_examples() {
    let (code, out, err) = corsgate(&["check", "examples"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with("ok: 7 policies valid (config version "),
        "{out}"
    );
}

#[test]
fn check_names_file_document_field_and_fix_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.yaml");
    std::fs::write(
        &f,
        "apiVersion: corsgate.dev/v1alpha1\nkind: CorsPolicy\nmetadata: {name: fine}\nspec: {hosts: [a.test], upstream: {url: \"http://127.0.0.1:1\"}}\n---\n\
         apiVersion: corsgate.dev/v1alpha1\nkind: CorsPolicy\nmetadata: {name: broken, namespace: shop}\nspec:\n  hosts: [b.test]\n  upstream: {url: \"http://127.0.0.1:1\"}\n  cors:\n    allowOrigins: [\"https://x.test/\"]\n    allowCredentials: true\n    maxAgeSeconds: 100000\n",
    )
    .unwrap();
    let (code, out, err) = corsgate(&["check", f.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    let file = f.display().to_string();
    assert!(
        err.contains(&format!("error: {file} (document 2): policy shop/broken: spec.cors.allowOrigins[0]: \"https://x.test/\" ends with '/'")),
        "{err}"
    );
    assert!(err.contains("fix: write \"https://x.test\""), "{err}");
    assert!(
        err.contains(
            "spec.cors.maxAgeSeconds: 100000 is out of range; fix: use 0 to 86400 seconds"
        ),
        "{err}"
    );
    assert!(out.is_empty());
}

#[test]
fn check_warns_about_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    let doc = |name: &str| {
        format!(
            "apiVersion: corsgate.dev/v1alpha1\nkind: CorsPolicy\nmetadata: {{name: {name}}}\nspec: {{hosts: [a.test], upstream: {{url: \"http://127.0.0.1:1\"}}}}\n"
        )
    };
    std::fs::write(
        dir.path().join("p.yaml"),
        format!("{}---\n{}", doc("b"), doc("a")),
    )
    .unwrap();
    let (code, out, err) = corsgate(&["check", dir.path().to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains("warning:")
            && err.contains("policy default/b conflicts with default/a on host a.test path /"),
        "{err}"
    );
}

#[test]
fn explain_walks_through_an_allowed_preflighted_call() {
    let (code, out, err) = corsgate(&[
        "explain",
        "--policies",
        "examples/quickstart.yaml",
        "--host",
        "localhost",
        "--path",
        "/hello",
        "--method",
        "PUT",
        "--origin",
        "http://127.0.0.1:3000",
        "--header",
        "x-custom",
        "--header",
        "content-type: application/json",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    for want in [
        "route      policy default/quickstart",
        "browser    sends a preflight first: method PUT is not CORS-safelisted (GET, HEAD, POST); header x-custom is not CORS-safelisted; header content-type is not CORS-safelisted",
        "  check    passed",
        "  result   answered at the edge: 204 No Content:",
        "      access-control-allow-headers: content-type,x-custom",
        "      access-control-allow-origin: http://127.0.0.1:3000",
        "verdict    ALLOWED",
    ] {
        assert!(out.contains(want), "missing {want:?} in\n{out}");
    }
}

#[test]
fn explain_says_which_check_failed() {
    let (code, out, _) = corsgate(&[
        "explain",
        "--policies",
        "examples/quickstart.yaml",
        "--host",
        "localhost",
        "--path",
        "/hello",
        "--method",
        "DELETE",
        "--origin",
        "http://127.0.0.1:3000",
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("  check    FAILED: method DELETE is not in allowMethods"),
        "{out}"
    );
    assert!(out.contains("rejected at the edge: 403 Forbidden"), "{out}");
    assert!(
        out.contains("verdict    BLOCKED by the browser at the preflight"),
        "{out}"
    );

    let (code, out, _) = corsgate(&[
        "explain",
        "--policies",
        "examples/spa-with-credentials.yaml",
        "--host",
        "api.example.com",
        "--path",
        "/v1/cart",
        "--origin",
        "https://evil.example",
        "--credentials",
    ]);
    assert_eq!(code, 1);
    assert!(out.contains("matches no allowOrigins"), "{out}");

    let (code, out, _) = corsgate(&[
        "explain",
        "--policies",
        "examples",
        "--host",
        "nowhere.test",
        "--origin",
        "https://a.test",
    ]);
    assert_eq!(code, 0);
    assert!(
        out.contains("no policy serves host \"nowhere.test\""),
        "{out}"
    );
}

#[tokio::test]
async fn demo_serves_the_page_the_api_and_the_probe() {
    let port = |_: ()| support::free_port().to_string();
    let (listen, admin, page, upstream) = (port(()), port(()), port(()), port(()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_corsgate"))
        .args([
            "demo",
            "--listen",
            &format!("127.0.0.1:{listen}"),
            "--admin",
            &format!("127.0.0.1:{admin}"),
        ])
        .args([
            "--page",
            &format!("127.0.0.1:{page}"),
            "--upstream",
            &format!("127.0.0.1:{upstream}"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let guard = Kill(&mut child);
    let admin_addr = format!("127.0.0.1:{admin}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while support::admin_get(admin_addr, "/readyz").await.map(|r| r.0) != Ok(200) {
        assert!(Instant::now() < deadline, "demo did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let origin = format!("http://127.0.0.1:{page}");
    let api = format!("127.0.0.1:{listen}").parse().unwrap();
    let got = support::send(
        api,
        "GET",
        "/hello",
        &[("host", "localhost"), ("origin", &origin)],
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(
        got.header("access-control-allow-origin"),
        Some(origin.as_str())
    );
    assert!(got.body.contains("corsgate demo echo"));
    let page_addr = format!("127.0.0.1:{page}").parse().unwrap();
    let html = support::send(page_addr, "GET", "/", &[("host", "127.0.0.1")]).await;
    assert!(
        html.body
            .contains(&format!("const API = \"http://localhost:{listen}\"")),
        "the page calls the demo's API"
    );
    let probe = support::send(page_addr, "GET", "/probe?method=DELETE&path=%2Fhello", &[]).await;
    let p: serde_json::Value = serde_json::from_str(&probe.body).unwrap();
    assert_eq!(p["status"], 403);
    assert_eq!(p["sent"], "preflight (OPTIONS)");
    drop(guard);
}

#[test]
fn import_flags_are_checked_when_read_and_named_in_the_error() {
    let (code, out, err) = corsgate(&[
        "import",
        "cloudfront",
        "Managed-SimpleCORS",
        "--host",
        "api.example.com",
        "--upstream",
        "origin.internal",
    ]);
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(
        err,
        "error: --upstream origin.internal: \"origin.internal\" must start with http:// or https://; fix: pass --upstream http://origin.internal (or https://origin.internal): scheme://host[:port]\n"
    );
    assert!(out.is_empty());
    let (code, _, err) = corsgate(&[
        "import",
        "cloudfront",
        "Managed-SimpleCORS",
        "--host",
        "https://api.example.com",
        "--upstream",
        "http://origin.internal",
    ]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(
        err,
        "error: --host https://api.example.com: \"https://api.example.com\" is not a host name: ports, schemes and paths do not belong here; fix: pass --host api.example.com (a host name, without scheme, port or path)\n"
    );
}

#[test]
fn import_blames_a_bad_source_value_on_the_source_not_on_corsgate() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("rhp.json");
    std::fs::write(
        &f,
        r#"{"ResponseHeadersPolicy": {"Id": "0f0e0d0c-0b0a-4909-8807-060504030201", "ResponseHeadersPolicyConfig": {"Name": "bare", "CorsConfig": {"AccessControlAllowOrigins": {"Quantity": 1, "Items": ["app.example.com"]}}}}}"#,
    )
    .unwrap();
    let (code, out, err) = corsgate(&[
        "import",
        "cloudfront",
        f.to_str().unwrap(),
        "--host",
        "api.example.com",
        "--upstream",
        "http://origin.internal",
    ]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.is_empty());
    assert!(
        err.starts_with("error: ResponseHeadersPolicy bare (0f0e0d0c-0b0a-4909-8807-060504030201): CorsConfig.AccessControlAllowOrigins: \"app.example.com\""),
        "{err}"
    );
    assert!(
        err.contains(
            "(imported as spec.cors.allowOrigins[0]); fix in the source: write scheme://host[:port]"
        ),
        "{err}"
    );
    assert!(!err.contains("corsgate bug"), "{err}");
}

#[test]
fn import_cloudfront_takes_a_managed_policy_id_in_place_of_a_file() {
    let (code, out, err) = corsgate(&[
        "import",
        "cloudfront",
        "5cc3b908-e619-4b99-88e5-2cf7f45965bd",
        "--host",
        "api.example.com",
        "--upstream",
        "http://origin.internal",
        "--mode",
        "Enforce",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("preset: CORSWithPreflight"), "{out}");
    assert!(
        err.contains(
            "info: ResponseHeadersPolicy CORS-With-Preflight (5cc3b908-e619-4b99-88e5-2cf7f45965bd): Name: "
        ),
        "{err}"
    );
    // Not a path, not a managed policy: the file error.
    let (code, _, err) = corsgate(&[
        "import",
        "cloudfront",
        "Managed-NoSuchPolicy",
        "--host",
        "api.example.com",
        "--upstream",
        "http://origin.internal",
    ]);
    assert_eq!(code, 1);
    assert!(
        err.starts_with("error: Managed-NoSuchPolicy: cannot read: "),
        "{err}"
    );
}

#[test]
fn import_of_nothing_exits_1_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("ing.yaml");
    std::fs::write(
        &f,
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: web, namespace: a}\nspec:\n  rules:\n  - host: a.example.com\n    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: s, port: {number: 80}}}}]}\n",
    )
    .unwrap();
    let file = f.display().to_string();
    let (code, out, err) = corsgate(&["import", "ingress-nginx", &file]);
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(
        err,
        format!(
            "error: {file}: nothing imported: no Ingress has nginx.ingress.kubernetes.io/enable-cors: \"true\" (1 read with CORS off), so ingress-nginx adds no CORS headers and there is nothing to convert\n"
        )
    );
    let (code, _, err) = corsgate(&["import", "gateway-api", &file]);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        format!(
            "error: {file}: nothing imported: no HTTPRoute rule with a CORS filter was found; the input looks like ingress-nginx: try `corsgate import ingress-nginx`\n"
        )
    );
}
