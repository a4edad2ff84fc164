//! The Helm chart on a real API server: what it renders is accepted (server-side dry run,
//! so admission, schemas and RBAC escalation checks all run and nothing is stored), and a
//! controller holding only a ServiceAccount token bound to the chart's RBAC does all its
//! work: watch, status, Events, the Lease, the webhook's Secret and caBundle.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use super::kube::*;

/// The chart rendered by the Helm SDK (tests/e2e_cluster/render_chart.py, in the venv
/// deploy/venv.sh makes): every object, the chart's CRD first.
fn render(release: &str, namespace: &str, values: &Value) -> Vec<Value> {
    let out = Command::new("bash")
        .current_dir(ROOT)
        .arg("-c")
        .arg(r#". deploy/venv.sh && exec "$DEPLOY_PY" tests/e2e_cluster/render_chart.py "$@""#)
        .arg("render")
        .args([release, namespace, &values.to_string()])
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "rendering the chart failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: Value = serde_json::from_slice(&out.stdout).expect("a JSON List");
    list["items"].as_array().cloned().unwrap_or_default()
}

fn list_of(items: &[Value]) -> String {
    json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string()
}

fn kind(v: &Value) -> &str {
    v["kind"].as_str().unwrap_or_default()
}

pub fn dry_run() {
    let _serial = cluster();
    let ns = Namespace::create("corsgate-e2e-chart");
    let team = Namespace::create("corsgate-e2e-team");
    for (what, values) in [
        ("default values", json!({})),
        (
            "namespace-scoped values",
            json!({"watchNamespaces": [team.0.clone()]}),
        ),
    ] {
        let items = render("e2e", &ns.0, &values);
        for k in [
            "CustomResourceDefinition",
            "Deployment",
            "ServiceAccount",
            "Service",
            "ValidatingWebhookConfiguration",
        ] {
            assert!(
                items.iter().any(|i| kind(i) == k),
                "{what}: the chart renders no {k}"
            );
        }
        let (ok, out, err) = kubectl(
            &[
                "apply",
                "--server-side",
                "--force-conflicts",
                "--dry-run=server",
                "-f",
                "-",
            ],
            Some(&list_of(&items)),
        );
        assert!(ok, "{what}: the API server refused the chart: {err}");
        // Every object was taken ("serverside-applied (server dry run)").
        let taken = out
            .lines()
            .filter(|l| l.contains("(server dry run)"))
            .count();
        assert_eq!(taken, items.len(), "{what}: {out}");
    }
}

/// A kubeconfig for `sa` in `ns`: this cluster's server and CA, the token `kubectl create
/// token` issues, nothing else.
fn token_kubeconfig(dir: &Path, ns: &str, sa: &str) -> PathBuf {
    let token = must(&["create", "token", sa, "-n", ns, "--duration=1h"], None);
    let config: Value = serde_json::from_str(&must(
        &["config", "view", "--raw", "--minify", "-o", "json"],
        None,
    ))
    .expect("kubeconfig JSON");
    let cluster = config["clusters"][0]["cluster"].clone();
    let kubeconfig = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "e2e", "cluster": cluster}],
        "users": [{"name": sa, "user": {"token": token.trim()}}],
        "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": sa, "namespace": ns}}],
        "current-context": "e2e",
    });
    let path = dir.join("token.kubeconfig");
    std::fs::write(&path, kubeconfig.to_string()).expect("write kubeconfig");
    path
}

/// The controller container's arguments as the chart renders them, with the pod's
/// environment filled in and its listeners moved to loopback.
fn chart_args(items: &[Value], ns: &str, identity: &str) -> Vec<String> {
    let deployment = items
        .iter()
        .find(|i| {
            kind(i) == "Deployment"
                && i["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.ends_with("-controller"))
        })
        .expect("the controller Deployment");
    let args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .expect("args");
    let webhook = free_port();
    args.iter()
        .filter_map(Value::as_str)
        .skip(1) // "controller"
        .filter(|a| {
            !a.starts_with("--listen=")
                && !a.starts_with("--admin=")
                && !a.starts_with("--identity=")
        })
        .map(|a| {
            if a.starts_with("--webhook=") {
                format!("--webhook={webhook}")
            } else {
                a.replace("$(POD_NAMESPACE)", ns)
                    .replace("$(POD_NAME)", identity)
            }
        })
        .collect()
}

pub fn least_privilege() {
    let _serial = cluster();
    let ns = Namespace::create("corsgate-e2e-rbac");
    let release = format!("rbac{}", std::process::id());
    let values = json!({"watchNamespaces": [ns.0.clone()]});
    let items = render(&release, &ns.0, &values);

    // Exactly the chart's RBAC (and its ServiceAccounts and webhook configuration), for real.
    let rbac: Vec<Value> = items
        .iter()
        .filter(|i| {
            [
                "ServiceAccount",
                "Role",
                "RoleBinding",
                "ClusterRole",
                "ClusterRoleBinding",
                "ValidatingWebhookConfiguration",
            ]
            .contains(&kind(i))
        })
        .cloned()
        .collect();
    let _cluster_objects: Vec<ClusterObject> = rbac
        .iter()
        .filter_map(|i| {
            let name = i["metadata"]["name"].as_str()?.to_string();
            match kind(i) {
                "ClusterRole" => Some(ClusterObject("clusterrole", name)),
                "ClusterRoleBinding" => Some(ClusterObject("clusterrolebinding", name)),
                "ValidatingWebhookConfiguration" => {
                    Some(ClusterObject("validatingwebhookconfiguration", name))
                }
                _ => None,
            }
        })
        .collect();
    must(
        &["apply", "--server-side", "-f", "-"],
        Some(&list_of(&rbac)),
    );
    let sa = rbac
        .iter()
        .filter(|i| kind(i) == "ServiceAccount")
        .filter_map(|i| i["metadata"]["name"].as_str())
        .find(|n| n.ends_with("-controller"))
        .expect("the controller's ServiceAccount")
        .to_string();
    let vwc = rbac
        .iter()
        .find(|i| kind(i) == "ValidatingWebhookConfiguration")
        .and_then(|i| i["metadata"]["name"].as_str())
        .expect("the webhook configuration")
        .to_string();

    let dir = tempfile::tempdir().expect("tempdir");
    let token = token_kubeconfig(dir.path(), &ns.0, &sa);
    // Not an admin: the token can do nothing beyond the chart's rules.
    for (verb, what, scope) in [
        // With tls.enabled the token may read Secrets where policies are watched (docs/tls.md),
        // and nowhere else.
        ("list", "secrets", "default"),
        ("update", "secrets", ns.0.as_str()),
        ("create", "namespaces", ""),
        ("list", "corspolicies.corsgate.dev", "default"),
        ("delete", "corspolicies.corsgate.dev", ns.0.as_str()),
        ("update", "corspolicies.corsgate.dev", ns.0.as_str()),
    ] {
        let mut args = vec!["auth", "can-i", verb, what];
        if !scope.is_empty() {
            args.extend(["-n", scope]);
        }
        let (_, out, _) = kubectl_as(Some(&token), &args, None);
        assert_eq!(out.trim(), "no", "the token may {verb} {what} in {scope:?}");
    }

    let identity = format!("rbac-{}", std::process::id());
    let mut args = chart_args(&items, &ns.0, &identity);
    args.push("--programmed-grace-ms=500".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let c = controller(&identity, &args, Some(&token));
    eventually("the controller ready on its token", || {
        ready(c.admin).then_some(())
    });
    // The stream is mutual TLS (tls.enabled, the default): the proxy gets its certificate
    // from the Secret the controller issued, as the chart mounts it.
    let p = tls_proxy(
        c.stream,
        "rbac-proxy",
        &ns.0,
        &format!("{}-stream-proxy", release_fullname(&release)),
    );
    let upstream = echo_upstream();

    // Watch and status.
    must(
        &["apply", "-f", "-"],
        Some(&policy_doc(
            &ns.0,
            "api",
            &format!("hosts: [rbac.example]\n  upstream: {{url: 'http://{upstream}'}}"),
        )),
    );
    eventually("Accepted and Programmed, written with the token", || {
        let v = policy(&ns.0, "api");
        (condition(&v, "Accepted")?.0 == "True" && condition(&v, "Programmed")?.0 == "True")
            .then_some(())
    });
    let managers = must(
        &[
            "get",
            "corspolicy",
            "-n",
            &ns.0,
            "api",
            "-o",
            "json",
            "--show-managed-fields",
        ],
        None,
    );
    assert!(managers.contains("corsgate-controller"), "{managers}");
    eventually("the proxy serving", || {
        http_get(p.listen, "rbac.example", "/", &[]).filter(|r| r.0 == 200)
    });

    // Events: a conflict.
    must(
        &["apply", "-f", "-"],
        Some(&policy_doc(
            &ns.0,
            "late",
            &format!("hosts: [rbac.example]\n  upstream: {{url: 'http://{upstream}'}}"),
        )),
    );
    eventually("a Conflicted Event", || {
        let out = must(
            &["get", "events.events.k8s.io", "-n", &ns.0, "-o", "json"],
            None,
        );
        let v: Value = serde_json::from_str(&out).ok()?;
        v["items"]
            .as_array()?
            .iter()
            .any(|e| {
                e["reason"] == "Conflicted"
                    && e["reportingController"]
                        .as_str()
                        .is_some_and(|r| r.starts_with("corsgate-controller"))
            })
            .then_some(())
    });

    // The Lease, the webhook's Secret and the caBundle.
    let lease = items
        .iter()
        .find(|i| kind(i) == "Deployment")
        .map(|_| format!("{}-controller", release_fullname(&release)))
        .expect("lease name");
    eventually("the Lease held by this replica", || {
        (lease_holder(&ns.0, &lease)? == identity).then_some(())
    });
    let secret = format!("{}-webhook-tls", release_fullname(&release));
    eventually("the webhook Secret", || {
        let (ok, out, _) = kubectl(&["get", "secret", "-n", &ns.0, &secret, "-o", "json"], None);
        let v: Value = serde_json::from_str(&out).ok()?;
        (ok && v["data"]["tls.crt"].as_str().is_some_and(|c| !c.is_empty())).then_some(())
    });
    eventually_within("the caBundle patched", Duration::from_secs(60), || {
        let out = must(
            &["get", "validatingwebhookconfiguration", &vwc, "-o", "json"],
            None,
        );
        let v: Value = serde_json::from_str(&out).ok()?;
        v["webhooks"][0]["clientConfig"]["caBundle"]
            .as_str()
            .is_some_and(|b| !b.is_empty())
            .then_some(())
    });
    https_from_a_secret_with_rotation(&ns.0, &p, upstream);

    let metrics = http_get(c.admin, "x", "/metrics", &[])
        .expect("controller metrics")
        .1;
    assert!(
        !metrics
            .lines()
            .any(|l| l.starts_with("corsgate_controller_errors_total{") && !l.ends_with(" 0")),
        "no errors (a forbidden call would count): {metrics}"
    );
    drop(p);
    drop(c);
}

/// The chart's `corsgate.fullname` for a release named without "corsgate" in it.
fn release_fullname(release: &str) -> String {
    format!("{release}-corsgate")
}

/// Issue 15 item 6: a policy naming a `kubernetes.io/tls` Secret, on the chart's RBAC: its
/// certificate reaches the proxy (which holds no token) over the authenticated stream and
/// serves HTTPS by SNI; ResolvedRefs says so; a renewed Secret (as cert-manager writes it)
/// reaches new handshakes; a Secret with a mismatched key is reported while the last good
/// certificate serves; a deleted one is reported SecretNotFound.
fn https_from_a_secret_with_rotation(ns: &str, p: &TlsProxy, upstream: std::net::SocketAddr) {
    let now = time::OffsetDateTime::now_utc();
    let (ca, ca_key) = corsgate::webhook::certs::new_ca(now).expect("ca");
    let host = "tls.rbac.example";
    let issue =
        || corsgate::webhook::certs::issue(&ca, &ca_key, &[host.to_string()], now).expect("cert");
    let dir = tempfile::tempdir().expect("tempdir");
    let apply_secret = |cert: &str, key: &str| {
        let (c, k) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        std::fs::write(&c, cert).expect("write");
        std::fs::write(&k, key).expect("write");
        let yaml = must(
            &[
                "create",
                "secret",
                "tls",
                "web-tls",
                "-n",
                ns,
                "--cert",
                c.to_str().expect("path"),
                "--key",
                k.to_str().expect("path"),
                "--dry-run=client",
                "-o",
                "yaml",
            ],
            None,
        );
        must(&["apply", "-f", "-"], Some(&yaml));
    };
    let leaf = |pem: &str| {
        use rustls_pki_types::pem::PemObject;
        rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
            .expect("pem")
            .as_ref()
            .to_vec()
    };
    let resolved = || condition(&policy(ns, "secure"), "ResolvedRefs");

    let first = issue();
    apply_secret(&first.0, &first.1);
    must(
        &["apply", "-f", "-"],
        Some(&policy_doc(
            ns,
            "secure",
            &format!(
                "hosts: [{host}]\n  upstream: {{url: 'http://{upstream}'}}\n  tls: {{secretName: web-tls}}"
            ),
        )),
    );
    let r = eventually("ResolvedRefs=True from the Secret", || {
        resolved().filter(|r| r.0 == "True")
    });
    assert!(
        r.2.contains("the certificate in secret web-tls serves its hosts over HTTPS"),
        "{r:?}"
    );
    eventually("HTTPS with the Secret's certificate", || {
        (tls_leaf(p.tls, host, &ca)? == leaf(&first.0)).then_some(())
    });

    // Renewal: new handshakes get the new certificate.
    let second = issue();
    apply_secret(&second.0, &second.1);
    eventually_within("the renewed certificate", Duration::from_secs(30), || {
        (tls_leaf(p.tls, host, &ca)? == leaf(&second.0)).then_some(())
    });

    // A mismatched key: reported, and the last good certificate keeps serving.
    let third = issue();
    apply_secret(&third.0, &first.1);
    let r = eventually("ResolvedRefs=False KeyMismatch", || {
        resolved().filter(|r| r.1 == "KeyMismatch")
    });
    assert_eq!(r.0, "False");
    let warnings = policy(ns, "secure")["status"]["warnings"].to_string();
    assert!(
        warnings.contains("keep serving the last good certificate"),
        "{warnings}"
    );
    assert_eq!(tls_leaf(p.tls, host, &ca), Some(leaf(&second.0)));

    // Deleted: SecretNotFound, and the host is no longer served over HTTPS.
    must(&["delete", "secret", "-n", ns, "web-tls"], None);
    eventually("ResolvedRefs=False SecretNotFound", || {
        resolved().filter(|r| r.1 == "SecretNotFound")
    });
    eventually("no certificate for the host", || {
        tls_leaf(p.tls, host, &ca).is_none().then_some(())
    });
}
