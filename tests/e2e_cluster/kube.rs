//! What every cluster test shares: kubectl, throw-away namespaces, processes stopped by PID,
//! loopback HTTP, waiting, and reading status and the API server's own metrics.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_corsgate");
pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The tests share one cluster and count its status writes: one at a time, whatever
/// `--test-threads` says.
static SERIAL: Mutex<()> = Mutex::new(());

/// Every cluster test starts here: it needs KUBECONFIG (it was asked for explicitly with
/// `--ignored`, so no cluster is a failure with the way to fix it, not a silent pass), and
/// runs alone.
pub fn cluster() -> MutexGuard<'static, ()> {
    assert!(
        std::env::var_os("KUBECONFIG").is_some_and(|v| !v.is_empty()),
        "the cluster tests need a cluster: KUBECONFIG=~/.kube/config cargo test --test e2e_cluster -- --ignored"
    );
    let guard = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    apply_crd();
    guard
}

/// A process stopped (SIGKILL) and reaped by its PID when dropped.
pub struct Killed(pub Child);

impl Killed {
    /// SIGTERM, then wait for it to exit (bounded).
    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A namespace deleted (without waiting) when dropped.
pub struct Namespace(pub String);

impl Namespace {
    pub fn create(prefix: &str) -> Namespace {
        let name = format!("{prefix}-{}", std::process::id());
        let _ = kubectl(&["delete", "namespace", &name, "--wait=true"], None);
        must(&["create", "namespace", &name], None);
        Namespace(name)
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = kubectl(&["delete", "namespace", &self.0, "--wait=false"], None);
    }
}

/// A cluster-scoped object deleted when dropped.
pub struct ClusterObject(pub &'static str, pub String);

impl Drop for ClusterObject {
    fn drop(&mut self) {
        let _ = kubectl(&["delete", self.0, &self.1, "--ignore-not-found"], None);
    }
}

pub fn kubectl(args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    kubectl_as(None, args, stdin)
}

/// kubectl with another kubeconfig (a ServiceAccount's token), or the caller's.
pub fn kubectl_as(
    kubeconfig: Option<&Path>,
    args: &[&str],
    stdin: Option<&str>,
) -> (bool, String, String) {
    let mut cmd = Command::new("kubectl");
    if let Some(k) = kubeconfig {
        cmd.env("KUBECONFIG", k);
    }
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = cmd.spawn().expect("kubectl is on PATH");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write stdin");
    }
    let out = child.wait_with_output().expect("kubectl ran");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn must(args: &[&str], stdin: Option<&str>) -> String {
    let (ok, out, err) = kubectl(args, stdin);
    assert!(ok, "kubectl {args:?} failed: {err}");
    out
}

/// The committed CRD, applied and established.
pub fn apply_crd() {
    must(
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            &format!("{ROOT}/crds/corspolicy.yaml"),
        ],
        None,
    );
    must(
        &[
            "wait",
            "--for=condition=established",
            "--timeout=60s",
            "crd/corspolicies.corsgate.dev",
        ],
        None,
    );
}

pub fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
}

/// An upstream that answers every request 200 "ok" (the thread ends with the test binary).
pub fn echo_upstream() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                );
            });
        }
    });
    addr
}

/// One HTTP/1.1 GET over a new connection: status and the lower-cased head and body.
pub fn http_get(
    addr: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut req = format!("GET {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, text.to_ascii_lowercase()))
}

pub fn eventually<T>(what: &str, f: impl FnMut() -> Option<T>) -> T {
    eventually_within(what, Duration::from_secs(90), f)
}

pub fn eventually_within<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn policy(ns: &str, name: &str) -> Value {
    let out = must(&["get", "corspolicy", "-n", ns, name, "-o", "json"], None);
    serde_json::from_str(&out).expect("json")
}

pub fn policies(ns: &str) -> Vec<Value> {
    let out = must(&["get", "corspolicies", "-n", ns, "-o", "json"], None);
    let v: Value = serde_json::from_str(&out).expect("json");
    v["items"].as_array().cloned().unwrap_or_default()
}

/// (status, reason, message) of condition `t`.
pub fn condition(p: &Value, t: &str) -> Option<(String, String, String)> {
    p["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == t)
        .map(|c| {
            (
                c["status"].as_str().unwrap_or("").to_string(),
                c["reason"].as_str().unwrap_or("").to_string(),
                c["message"].as_str().unwrap_or("").to_string(),
            )
        })
}

/// The API server's count of writes to corspolicies/status so far (every verb and code),
/// from its own `/metrics` (`apiserver_request_total`). Needs `get` on the `/metrics`
/// non-resource URL, which cluster-admin has.
pub fn status_writes() -> u64 {
    let (ok, text, err) = kubectl(&["get", "--raw", "/metrics"], None);
    assert!(
        ok,
        "cannot read the API server's /metrics (needed to count status writes): {err}"
    );
    let mut total = 0.0;
    for line in text.lines() {
        if line.starts_with("apiserver_request_total{")
            && line.contains("resource=\"corspolicies\"")
            && line.contains("subresource=\"status\"")
            && ["PATCH", "APPLY", "PUT", "UPDATE"]
                .iter()
                .any(|v| line.contains(&format!("verb=\"{v}\"")))
        {
            total += line
                .rsplit(' ')
                .next()
                .and_then(|n| n.parse::<f64>().ok())
                .unwrap_or(0.0);
        }
    }
    total as u64
}

/// The holder of a Lease, if any.
pub fn lease_holder(ns: &str, name: &str) -> Option<String> {
    let (ok, out, _) = kubectl(&["get", "lease", "-n", ns, name, "-o", "json"], None);
    if !ok {
        return None;
    }
    let v: Value = serde_json::from_str(&out).ok()?;
    v["spec"]["holderIdentity"]
        .as_str()
        .filter(|h| !h.is_empty())
        .map(str::to_string)
}

/// A CorsPolicy document.
pub fn policy_doc(ns: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: corsgate.dev/v1alpha1\nkind: CorsPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  {spec}\n"
    )
}

/// A controller on loopback: its stream and admin addresses.
pub struct Controller {
    pub process: Killed,
    pub stream: SocketAddr,
    pub admin: SocketAddr,
}

pub fn controller(identity: &str, extra: &[&str], kubeconfig: Option<&Path>) -> Controller {
    let (stream, admin) = (free_port(), free_port());
    let mut cmd = Command::new(BIN);
    cmd.arg("controller")
        .args(["--listen", &stream.to_string()])
        .args(["--admin", &admin.to_string()])
        .args(["--identity", identity])
        .args(extra);
    if let Some(k) = kubeconfig {
        cmd.env("KUBECONFIG", k);
    }
    Controller {
        process: Killed(cmd.spawn().expect("spawn controller")),
        stream,
        admin,
    }
}

pub fn ready(admin: SocketAddr) -> bool {
    http_get(admin, "x", "/readyz", &[]).is_some_and(|r| r.0 == 200)
}

/// A proxy on the controller's stream at `controller` (an `http://` base URL).
pub struct Proxy {
    _process: Killed,
    pub listen: SocketAddr,
}

pub fn proxy(controller: &str, id: &str) -> Proxy {
    let (listen, admin) = (free_port(), free_port());
    let _process = Killed(
        Command::new(BIN)
            .args(["proxy", "--controller", controller, "--proxy-id", id])
            .args(["--listen", &listen.to_string()])
            .args(["--listen-tls", "off"])
            .args(["--admin", &admin.to_string()])
            .spawn()
            .expect("spawn proxy"),
    );
    Proxy { _process, listen }
}

/// A proxy on the controller's mutually authenticated stream (`https://localhost:PORT`, the
/// name the stream certificate carries besides its Service's), with the client certificate
/// the controller issued into the Secret `secret` in `ns` (as the chart mounts it), and an
/// HTTPS listener.
pub struct TlsProxy {
    _process: Killed,
    pub listen: SocketAddr,
    pub tls: SocketAddr,
    _dir: tempfile::TempDir,
}

/// The decoded `data` of a Secret, once it exists with every key in `keys`.
pub fn secret_data(ns: &str, name: &str, keys: &[&str]) -> Option<Vec<Vec<u8>>> {
    use base64::Engine as _;
    let (ok, out, _) = kubectl(&["get", "secret", "-n", ns, name, "-o", "json"], None);
    let v: Value = serde_json::from_str(&out).ok().filter(|_| ok)?;
    keys.iter()
        .map(|k| {
            let b = v["data"][*k].as_str()?;
            base64::engine::general_purpose::STANDARD.decode(b).ok()
        })
        .collect()
}

pub fn tls_proxy(stream: SocketAddr, id: &str, ns: &str, secret: &str) -> TlsProxy {
    let files = eventually(&format!("the proxies' Secret {ns}/{secret}"), || {
        secret_data(ns, secret, &["ca.crt", "tls.crt", "tls.key"])
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let paths: Vec<String> = ["ca.crt", "tls.crt", "tls.key"]
        .iter()
        .zip(&files)
        .map(|(n, data)| {
            let p = dir.path().join(n);
            std::fs::write(&p, data).expect("write");
            p.display().to_string()
        })
        .collect();
    let (listen, tls, admin) = (free_port(), free_port(), free_port());
    let _process = Killed(
        Command::new(BIN)
            .args(["proxy", "--proxy-id", id])
            .args([
                "--controller",
                &format!("https://localhost:{}", stream.port()),
            ])
            .args(["--controller-ca", &paths[0]])
            .args(["--client-cert", &paths[1], "--client-key", &paths[2]])
            .args(["--listen", &listen.to_string()])
            .args(["--listen-tls", &tls.to_string()])
            .args(["--admin", &admin.to_string()])
            .spawn()
            .expect("spawn proxy"),
    );
    TlsProxy {
        _process,
        listen,
        tls,
        _dir: dir,
    }
}

/// The leaf certificate (DER) `addr` presents for `sni`, verified against `ca_pem`, after
/// one request over it; None when the handshake fails.
pub fn tls_leaf(addr: SocketAddr, sni: &str, ca_pem: &str) -> Option<Vec<u8>> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.ok()?).ok()?;
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .ok()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from(sni.to_string()).ok()?;
    let mut conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).ok()?;
    let mut sock = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    sock.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    {
        let mut s = rustls::Stream::new(&mut conn, &mut sock);
        s.write_all(
            format!("GET / HTTP/1.1\r\nhost: {sni}\r\nconnection: close\r\n\r\n").as_bytes(),
        )
        .ok()?;
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        text.starts_with("HTTP/1.1 200").then_some(())?;
    }
    conn.peer_certificates()?
        .first()
        .map(|c| c.as_ref().to_vec())
}
