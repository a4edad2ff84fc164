//! The controller and a proxy against the cluster's API server, and the admission webhook
//! as kubectl shows it.

use std::net::SocketAddr;
use std::process::Command;

use super::kube::*;

/// The examples as one multi-document YAML, moved into `ns`, URL upstreams at `upstream`.
fn examples_in(ns: &str, upstream: SocketAddr) -> (String, Vec<(String, bool)>) {
    let mut docs = Vec::new();
    let mut names = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/examples"))
        .expect("examples/")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    for f in files {
        let text = std::fs::read_to_string(&f).expect("read example");
        let values: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text).expect("yaml");
        for mut v in values {
            v["metadata"]["namespace"] = ns.into();
            let has_url = v["spec"]["upstream"]["url"].is_string();
            if has_url {
                v["spec"]["upstream"]["url"] = format!("http://{upstream}").into();
            }
            let name = v["metadata"]["name"].as_str().expect("name").to_string();
            names.push((name, has_url));
            docs.push(serde_saphyr::to_string(&v).expect("yaml"));
        }
    }
    (docs.join("---\n"), names)
}

pub fn controller_and_proxy() {
    let _serial = cluster();
    let bin = BIN;
    let ns = Namespace::create("corsgate-e2e");
    let ns_name = ns.0.clone();
    let ns_s = ns_name.as_str();

    // CEL: the API server rejects what `corsgate check` rejects.
    let invalid = [
        (
            "upstream: {url: 'http://a:1', service: {name: s, port: 80}}",
            "exactly one of upstream.service or upstream.url",
        ),
        (
            "upstream: {url: 'http://a:1'}\n  cors: {allowOrigins: ['*'], allowCredentials: true}",
            "allowOrigins cannot contain",
        ),
        (
            "upstream: {url: 'http://a:1'}\n  cors: {allowOrigins: ['https://x.example'], exposeHeaders: ['*'], allowCredentials: true}",
            "exposeHeaders cannot contain",
        ),
        (
            "upstream: {url: 'http://a:1'}\n  cors: {maxAgeSeconds: 90000}",
            "maxAgeSeconds must be between 0 and 86400",
        ),
        (
            "upstream: {url: 'http://a:1'}\n  cors: {preflight: Sometimes}",
            "Unsupported value",
        ),
        (
            "upstream: {url: 'http://a:1'}\n  cors: {preset: SimpleCORS, allowCredentials: true}",
            "a preset allows every origin",
        ),
        (
            "upstream: {url: 'http://a:1'}\n  responseHeaders: {security: {strictTransportSecurity: {preload: true}}}",
            "preload requires includeSubdomains",
        ),
        (
            "upstream: {url: 'http://a:1'}\n  mode: Sometimes",
            "Unsupported value",
        ),
    ];
    for (i, (spec, message)) in invalid.iter().enumerate() {
        let doc = format!(
            "apiVersion: corsgate.dev/v1alpha1\nkind: CorsPolicy\nmetadata: {{name: invalid-{i}, namespace: {ns_s}}}\nspec:\n  hosts: [invalid.example]\n  {spec}\n"
        );
        let (ok, _, err) = kubectl(&["apply", "-f", "-"], Some(&doc));
        assert!(!ok, "the API server accepted an invalid object:\n{doc}");
        assert!(err.contains(message), "expected {message:?} in: {err}");
    }

    // Every case tests/crd.rs checks offline with the `cel` crate, now on the API server:
    // server-side dry runs, so nothing is stored.
    for (name, spec, expect) in super::crd_cases::CEL_CASES {
        let doc = format!(
            "apiVersion: corsgate.dev/v1alpha1\nkind: CorsPolicy\nmetadata: {{name: cel-case, namespace: {ns_s}}}\nspec: {spec}\n"
        );
        let (ok, _, err) = kubectl(&["apply", "--dry-run=server", "-f", "-"], Some(&doc));
        match expect {
            None => assert!(ok, "{name}: the API server refused a valid spec: {err}"),
            Some(message) => {
                assert!(
                    !ok,
                    "{name}: the API server accepted an invalid spec:\n{doc}"
                );
                assert!(
                    err.contains("The CorsPolicy \"cel-case\" is invalid") && err.contains(message),
                    "{name}: expected {message:?} in the API server's message: {err}"
                );
            }
        }
    }

    // Controller and proxy, out of cluster.
    let upstream = echo_upstream();
    let (stream, admin, proxy_listen, proxy_admin) =
        (free_port(), free_port(), free_port(), free_port());
    let _controller = Killed(
        Command::new(bin)
            .args([
                "controller",
                "--namespace",
                ns_s,
                "--lease-namespace",
                ns_s,
                "--debounce-ms",
                "100",
                // Status passes every 2 s (ttl / 3), so shadow counts show up quickly.
                "--proxy-ttl-seconds",
                "6",
                "--long-poll-seconds",
                "2",
            ])
            .args([
                "--listen",
                &stream.to_string(),
                "--admin",
                &admin.to_string(),
                "--identity",
                "e2e",
            ])
            .spawn()
            .expect("spawn controller"),
    );
    let _proxy = Killed(
        Command::new(bin)
            .args([
                "proxy",
                "--controller",
                &format!("http://{stream}"),
                "--proxy-id",
                "e2e-proxy",
                "--shadow-report-seconds",
                "1",
            ])
            .args([
                "--listen",
                &proxy_listen.to_string(),
                "--listen-tls",
                "off",
                "--admin",
                &proxy_admin.to_string(),
            ])
            .spawn()
            .expect("spawn proxy"),
    );
    eventually("the controller ready", || {
        (http_get(admin, "x", "/readyz", &[])?.0 == 200).then_some(())
    });

    // The examples.
    let (yaml, names) = examples_in(ns_s, upstream);
    must(&["apply", "-f", "-"], Some(&yaml));
    for (name, is_url) in &names {
        let p = eventually(&format!("{name} Programmed"), || {
            let p = policy(ns_s, name);
            (condition(&p, "Programmed")?.0 == "True").then_some(p)
        });
        let accepted = condition(&p, "Accepted").expect("Accepted");
        assert_eq!(
            (accepted.0.as_str(), accepted.1.as_str()),
            ("True", "Accepted"),
            "{name}"
        );
        let resolved = condition(&p, "ResolvedRefs").expect("ResolvedRefs");
        let expected = if *is_url {
            "ResolvedRefs"
        } else {
            "BackendNotFound"
        };
        assert_eq!(resolved.1, expected, "{name}: {resolved:?}");
        assert!(
            condition(&p, "Programmed")
                .expect("Programmed")
                .2
                .starts_with("every connected proxy serves config "),
            "{name}"
        );
        assert_eq!(
            p["status"]["observedGeneration"], p["metadata"]["generation"],
            "{name}"
        );
        assert!(
            p["status"]["configVersion"]
                .as_str()
                .is_some_and(|v| v.len() == 12),
            "{name}"
        );
        let version = p["status"]["configVersion"].as_str().unwrap_or_default();
        assert!(
            condition(&p, "Programmed")
                .expect("Programmed")
                .2
                .ends_with(version),
            "{name}: Programmed names the policy's own config version"
        );
    }

    // The proxy serves the quickstart: an allowed origin gets its CORS headers.
    let (status, head) = eventually("the proxy serving", || {
        http_get(
            proxy_listen,
            "localhost",
            "/hello",
            &[("origin", "http://127.0.0.1:3000")],
        )
        .filter(|r| r.0 == 200)
    });
    assert_eq!(status, 200);
    assert!(
        head.contains("access-control-allow-origin: http://127.0.0.1:3000"),
        "{head}"
    );
    assert!(head.contains("vary: origin"), "{head}");

    // A conflicting policy: rejected, naming the older one, with a Warning Event.
    let conflict = format!(
        "apiVersion: corsgate.dev/v1alpha1\nkind: CorsPolicy\nmetadata: {{name: late-comer, namespace: {ns_s}}}\nspec:\n  hosts: [localhost]\n  upstream: {{url: 'http://{upstream}'}}\n"
    );
    must(&["apply", "-f", "-"], Some(&conflict));
    let c = eventually("late-comer Conflicted", || {
        let c = condition(&policy(ns_s, "late-comer"), "Accepted")?;
        (c.1 == "Conflicted").then_some(c)
    });
    assert!(c.2.contains(&format!("{ns_s}/quickstart")), "{c:?}");
    eventually("a Conflicted event", || {
        let out = must(&["get", "events", "-n", ns_s, "-o", "json"], None);
        out.contains("\"Conflicted\"").then_some(())
    });

    // A Service appears: ResolvedRefs flips for the example that names it.
    if let Some((name, _)) = names.iter().find(|(n, _)| n == "storefront-api") {
        let svc = format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: storefront, namespace: {ns_s}}}\nspec:\n  ports: [{{port: 8080}}]\n  selector: {{app: storefront}}\n"
        );
        must(&["apply", "-f", "-"], Some(&svc));
        eventually("ResolvedRefs True", || {
            (condition(&policy(ns_s, name), "ResolvedRefs")?.0 == "True").then_some(())
        });
    }

    // Deleting the winner promotes the late-comer.
    must(&["delete", "corspolicy", "-n", ns_s, "quickstart"], None);
    eventually("late-comer Accepted", || {
        (condition(&policy(ns_s, "late-comer"), "Accepted")?.1 == "Accepted").then_some(())
    });

    // Shadow: forwarded untouched, counted, summed into status.shadow.
    let shadow = format!(
        "apiVersion: corsgate.dev/v1alpha1\nkind: CorsPolicy\nmetadata: {{name: shadowed, namespace: {ns_s}}}\nspec:\n  mode: Shadow\n  hosts: [shadow.localhost]\n  upstream: {{url: 'http://{upstream}'}}\n  cors: {{allowOrigins: ['https://app.example']}}\n"
    );
    must(&["apply", "-f", "-"], Some(&shadow));
    eventually("shadowed Programmed", || {
        (condition(&policy(ns_s, "shadowed"), "Programmed")?.0 == "True").then_some(())
    });
    let p = eventually("status.shadow present", || {
        let p = policy(ns_s, "shadowed");
        p["status"]["shadow"].is_object().then_some(p)
    });
    assert_eq!(p["status"]["shadow"]["wouldReject"], 0, "{p}");
    let columns = must(&["get", "corspolicy", "-n", ns_s, "shadowed"], None);
    assert!(
        columns.contains("MODE") && columns.contains("Shadow"),
        "{columns}"
    );
    let send = |origin: &str| {
        let (status, head) = eventually("the shadow route", || {
            http_get(
                proxy_listen,
                "shadow.localhost",
                "/x",
                &[("origin", origin)],
            )
        });
        assert_eq!(status, 200);
        assert!(!head.contains("access-control-"), "untouched: {head}");
    };
    send("https://app.example");
    send("https://evil.example");
    send("https://evil.example");
    let p = eventually("status.shadow counts", || {
        let p = policy(ns_s, "shadowed");
        let s = &p["status"]["shadow"];
        (s["wouldReject"] == 2 && s["wouldAllow"] == 1).then_some(p)
    });
    let s = &p["status"]["shadow"];
    assert_eq!(s["byReason"]["origin"], 2, "{s}");
    assert_eq!(
        s["sampleRejectedOrigins"],
        serde_json::json!(["https://evil.example"]),
        "{s}"
    );
    let since = s["since"].clone();
    // The counts keep moving.
    send("https://other.example");
    let p = eventually("status.shadow counts moving", || {
        let p = policy(ns_s, "shadowed");
        (p["status"]["shadow"]["wouldReject"] == 3).then_some(p)
    });
    assert_eq!(p["status"]["shadow"]["since"], since, "same window");
    let columns = must(&["get", "corspolicy", "-n", ns_s, "shadowed"], None);
    assert!(
        columns.lines().nth(1).is_some_and(|l| l.contains(" 3 ")),
        "Would-Reject column: {columns}"
    );
    // Enforce: status.shadow goes away.
    must(
        &[
            "patch",
            "corspolicy",
            "-n",
            ns_s,
            "shadowed",
            "--type=merge",
            "-p",
            "{\"spec\":{\"mode\":\"Enforce\"}}",
        ],
        None,
    );
    eventually("status.shadow cleared", || {
        policy(ns_s, "shadowed")["status"]["shadow"]
            .is_null()
            .then_some(())
    });
    drop(ns);
}

/// Issue 5: a ValidatingWebhookConfiguration that points at the out-of-cluster controller by
/// URL (`https://HOST:PORT/validate`, HOST from CORSGATE_E2E_WEBHOOK_HOST, default 127.0.0.1:
/// it must be where the API server can reach this machine), scoped to a throw-away namespace;
/// `kubectl apply` of a policy that passes CEL but not the shared validator is denied with
/// the validator's message, and a risky one is admitted with a warning.
pub fn webhook_denies_for_kubectl() {
    let _serial = cluster();
    let bin = BIN;
    let host = std::env::var("CORSGATE_E2E_WEBHOOK_HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let ns = Namespace::create("corsgate-e2e-wh");
    let ns_s = ns.0.clone();

    // Files, as a cert-manager user would mount them: a CA and a certificate for HOST.
    let dir = tempfile::tempdir().expect("tempdir");
    let now = time::OffsetDateTime::now_utc();
    let (ca, ca_key) = corsgate::webhook::certs::new_ca(now).expect("CA");
    let (cert, key) =
        corsgate::webhook::certs::issue(&ca, &ca_key, std::slice::from_ref(&host), now)
            .expect("cert");
    let (cert_path, key_path) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert_path, cert).expect("write");
    std::fs::write(&key_path, key).expect("write");

    let (stream, admin, webhook) = (free_port(), free_port(), free_port());
    let _controller = Killed(
        Command::new(bin)
            .args([
                "controller",
                "--namespace",
                &ns_s,
                "--leader-election=false",
                "--identity",
                "e2e-wh",
            ])
            .args([
                "--listen",
                &stream.to_string(),
                "--admin",
                &admin.to_string(),
            ])
            .args(["--webhook", &format!("0.0.0.0:{}", webhook.port())])
            .arg("--tls-cert")
            .arg(&cert_path)
            .arg("--tls-key")
            .arg(&key_path)
            .spawn()
            .expect("spawn controller"),
    );
    let name = format!("corsgate-e2e-{}", std::process::id());
    let ca_bundle = serde_json::to_value(k8s_openapi::ByteString(ca.into_bytes())).expect("b64");
    let vwc = serde_json::json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [{
            "name": "validate.corsgate.dev",
            "clientConfig": {"url": format!("https://{host}:{}/validate", webhook.port()), "caBundle": ca_bundle},
            "rules": [{"apiGroups": ["corsgate.dev"], "apiVersions": ["v1alpha1"], "operations": ["CREATE", "UPDATE"], "resources": ["corspolicies"], "scope": "Namespaced"}],
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns_s}},
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 5
        }]
    });
    must(&["apply", "-f", "-"], Some(&vwc.to_string()));
    let _vwc = ClusterObject("validatingwebhookconfiguration", name);

    let doc = |name: &str, cors: &str| {
        format!(
            "apiVersion: corsgate.dev/v1alpha1\nkind: CorsPolicy\nmetadata: {{name: {name}, namespace: {ns_s}}}\nspec:\n  hosts: [wh.example.com]\n  upstream: {{url: 'http://127.0.0.1:9'}}\n  cors: {cors}\n"
        )
    };
    // kubectl's exact output (docs/webhook.md): the webhook's Status has no reason (an
    // `Invalid` one makes kubectl print "The request is invalid: …" and drop the webhook's
    // name), so kubectl prints the message the API server prefixes with the webhook's name.
    let want = "Error from server: error when creating \"STDIN\": admission webhook \"validate.corsgate.dev\" denied the request: spec.cors.allowOrigins[0]: \"https://a.example.com/\" ends with '/', but a browser's Origin never does, so it would never match; fix: write \"https://a.example.com\"";
    // Until the controller listens, the API server reports a call failure instead.
    let err = eventually("the webhook answering", || {
        let (ok, _, err) = kubectl(
            &["apply", "-f", "-"],
            Some(&doc("bad", "{allowOrigins: ['https://a.example.com/']}")),
        );
        assert!(!ok, "the bad policy was admitted");
        err.contains("denied the request").then_some(err)
    });
    assert_eq!(err.trim_end(), want, "kubectl's whole output");
    // Two errors: one line each, every field named.
    let (ok, _, err) = kubectl(
        &["apply", "-f", "-"],
        Some(&doc(
            "bad2",
            "{allowOrigins: ['https://a.example.com/', 'https://b.example.com/']}",
        )),
    );
    assert!(!ok, "denied");
    assert!(
        err.starts_with("Error from server: error when creating \"STDIN\": admission webhook \"validate.corsgate.dev\" denied the request: spec.cors.allowOrigins[0]: ")
            && err.lines().any(|l| l.starts_with("spec.cors.allowOrigins[1]: \"https://b.example.com/\" ends with '/'")),
        "{err}"
    );

    let (ok, _, err) = kubectl(
        &["apply", "-f", "-"],
        Some(&doc("risky", "{allowOrigins: ['https://*.github.io']}")),
    );
    assert!(ok, "a risky policy is admitted: {err}");
    assert!(
        err.contains("Warning: spec.cors.allowOrigins[0]: \"https://*.github.io\" matches every site under the public suffix \"github.io\""),
        "kubectl prints the warning: {err}"
    );
    drop(ns);
}
