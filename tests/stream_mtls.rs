//! The config stream over mutually authenticated TLS (issue 15 item 5), over 127.0.0.1: the
//! controller's real stream server with a certificate and a required client CA, real
//! `corsgate proxy --controller https://…` processes. A proxy with a certificate from the
//! CA gets its configuration; one with a certificate from another CA, or none, gets
//! nothing, and cannot post shadow reports.

mod support;
#[path = "support/tls.rs"]
mod tls_support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use corsgate::config::certs::{Secrets, TlsSecret};
use corsgate::config::shadow::{PolicyShadow, ShadowReport};
use corsgate::config::wire::ConfigDocument;
use corsgate::config::{PolicyId, PolicyInput, Snapshot};
use corsgate::controller::server::serve_stream_with;
use corsgate::controller::stream::Hub;
use corsgate::serve::{MutualFiles, TlsSource};
use support::{eventually, free_port, spawn_stream_proxy_tls, spawn_stream_proxy_url};
use tls_support::TestCa;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p
}

/// The document of one policy `default/api` for `api.test` (`tls`: its `spec.tls`, if any),
/// built with `secrets`.
fn document_with(tls: &str, secrets: &Secrets) -> ConfigDocument {
    let spec = serde_saphyr::from_str(&format!(
        "{{hosts: [api.test], upstream: {{url: 'http://127.0.0.1:9'}}, {tls} cors: {{allowOrigins: ['https://a.test']}}}}"
    ))
    .expect("spec");
    let inputs = vec![PolicyInput {
        id: PolicyId::new("default", "api"),
        created: None,
        spec,
        source: None,
    }];
    let snap = Snapshot::build_with(inputs.clone(), secrets);
    assert!(snap.tls_problems().next().is_none(), "{:?}", snap.tls);
    ConfigDocument::of_with(&snap, &inputs, secrets)
}

fn document() -> ConfigDocument {
    document_with("", &Secrets::default())
}

/// `POST /v1/shadow` over TLS with `config` (client certificate or not); the HTTP status,
/// or None when the connection failed before any answer.
async fn post_report(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> Option<u16> {
    let mut s = tls_support::connect(addr, "localhost", config).await.ok()?;
    let body = serde_json::to_string(&ShadowReport {
        proxy: "intruder".into(),
        policies: vec![PolicyShadow {
            policy: "default/api".into(),
            ..PolicyShadow::default()
        }],
        rejections: Vec::new(),
    })
    .expect("json");
    let req = format!(
        "POST /v1/shadow HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&buf);
    text.split_whitespace().nth(1)?.parse().ok()
}

/// A rustls client trusting `ca`, with `cert` as its client certificate when given.
fn client(ca: &str, cert: Option<&(String, String)>) -> Arc<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots.add(c.expect("pem")).expect("root");
    }
    let b = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots);
    Arc::new(match cert {
        Some((c, k)) => b
            .with_client_auth_cert(
                rustls_pki_types::CertificateDer::pem_slice_iter(c.as_bytes())
                    .map(|c| c.expect("pem"))
                    .collect(),
                rustls_pki_types::PrivateKeyDer::from_pem_slice(k.as_bytes()).expect("key"),
            )
            .expect("client auth"),
        None => b.with_no_client_auth(),
    })
}

#[tokio::test]
async fn only_proxies_with_a_certificate_from_the_ca_get_config_or_post_reports() {
    let dir = tempfile::tempdir().expect("dir");
    let d = dir.path();
    let ca = TestCa::new();
    let rogue_ca = TestCa::new();
    let (srv_cert, srv_key) = ca.issue(&["localhost"]);
    let proxy_pair = ca.issue_client("proxy-good");
    let rogue_pair = rogue_ca.issue_client("proxy-rogue");
    let ca_file = write(d, "ca.pem", &ca.pem);
    let server = MutualFiles {
        cert: write(d, "server.pem", &srv_cert),
        key: write(d, "server.key", &srv_key),
        ca: ca_file.clone(),
    };
    let config = corsgate::serve::tls::mutual_server(&server).expect("server config");

    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let hub = Arc::new(Hub::new(Duration::from_secs(30)));
    hub.publish(&document()).expect("publish");
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(serve_stream_with(
        listener,
        hub.clone(),
        Duration::from_secs(2),
        rx,
        Some(Arc::new(TlsSource::Memory(Arc::new(
            arc_swap::ArcSwap::new(config),
        )))),
    ));
    let url = format!("https://localhost:{}", addr.port());

    let ca_arg = ca_file.display().to_string();
    let flags = |cert: &Path, key: &Path| {
        vec![
            "--client-cert".to_string(),
            cert.display().to_string(),
            "--client-key".to_string(),
            key.display().to_string(),
            "--controller-ca".to_string(),
            ca_arg.clone(),
        ]
    };
    let good_flags = flags(
        &write(d, "good.pem", &proxy_pair.0),
        &write(d, "good.key", &proxy_pair.1),
    );
    let rogue_flags = flags(
        &write(d, "rogue.pem", &rogue_pair.0),
        &write(d, "rogue.key", &rogue_pair.1),
    );
    let strs = |v: &[String]| v.iter().map(String::as_str).collect::<Vec<_>>().join(" ");
    let (g, r) = (strs(&good_flags), strs(&rogue_flags));
    let good = spawn_stream_proxy_url(&url, "proxy-good", &g.split(' ').collect::<Vec<_>>());
    let rogue = spawn_stream_proxy_url(&url, "proxy-rogue", &r.split(' ').collect::<Vec<_>>());
    // A client with no certificate at all is the raw client further down.

    // The proxy with the CA's certificate gets the configuration and acknowledges it.
    let hub2 = hub.clone();
    eventually("the good proxy acknowledges the version", move || {
        hub2.proxies()
            .iter()
            .any(|(p, v)| p == "proxy-good" && v.is_some())
    })
    .await;
    let (status, _) = support::admin_get(good.admin, "/readyz")
        .await
        .expect("admin");
    assert_eq!(status, 200);

    // The rogue proxy has polled for as long (several retries) and got nothing.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !hub.proxies().iter().any(|(p, _)| p == "proxy-rogue"),
        "{:?}",
        hub.proxies()
    );
    let (status, cfg) = support::admin_get(rogue.admin, "/readyz")
        .await
        .expect("admin");
    assert_eq!(status, 503, "{cfg}");
    let (_, cfg) = support::admin_get(rogue.admin, "/config")
        .await
        .expect("admin");
    let cfg: serde_json::Value = serde_json::from_str(&cfg).expect("json");
    assert!(
        cfg["lastLoad"]["errors"][0]
            .as_str()
            .is_some_and(|e| e.starts_with("cannot reach the controller")),
        "the failure is reported: {cfg}"
    );
    assert_eq!(
        cfg["version"],
        serde_json::Value::Null,
        "no configuration: {cfg}"
    );

    // Shadow reports: without a client certificate, or with the rogue CA's, no answer at
    // all and nothing recorded; with the CA's certificate, accepted.
    assert_eq!(post_report(addr, client(&ca.pem, None)).await, None);
    assert_eq!(
        post_report(addr, client(&ca.pem, Some(&rogue_pair))).await,
        None
    );
    assert!(
        hub.shadow_pending().is_empty(),
        "{:?}",
        hub.shadow_pending()
    );
    assert_eq!(
        post_report(addr, client(&ca.pem, Some(&proxy_pair))).await,
        Some(204)
    );

    drop((good, rogue));
    let _ = stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
}

/// A document serving `api.test` over HTTPS with `cert`/`key` (secret default/api-tls).
fn tls_document(cert: &str, key: &str) -> ConfigDocument {
    let secrets: Secrets = [TlsSecret {
        namespace: "default".into(),
        name: "api-tls".into(),
        secret_type: "kubernetes.io/tls".into(),
        cert_pem: cert.as_bytes().to_vec(),
        key_pem: key.as_bytes().to_vec(),
    }]
    .into_iter()
    .collect();
    document_with("tls: {secretName: api-tls},", &secrets)
}

/// Issue 15 item 5: the certificate of a Secret reaches a proxy that holds no API token over
/// the mutually authenticated stream; the proxy serves HTTPS with it; a rotated Secret is a
/// new version whose certificate new handshakes get while an open connection carries on.
#[tokio::test]
async fn certificates_reach_the_proxy_over_the_authenticated_stream_and_rotate() {
    let dir = tempfile::tempdir().expect("dir");
    let d = dir.path();
    let stream_ca = TestCa::new();
    let (srv_cert, srv_key) = stream_ca.issue(&["localhost"]);
    let pair = stream_ca.issue_client("proxy");
    let server = MutualFiles {
        cert: write(d, "server.pem", &srv_cert),
        key: write(d, "server.key", &srv_key),
        ca: write(d, "ca.pem", &stream_ca.pem),
    };
    let config = corsgate::serve::tls::mutual_server(&server).expect("server config");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let hub = Arc::new(Hub::new(Duration::from_secs(30)));
    let edge_ca = TestCa::new();
    let first = edge_ca.issue(&["api.test"]);
    let doc = tls_document(&first.0, &first.1);
    assert_eq!(doc.secrets.len(), 1);
    assert!(
        !format!("{:?}", doc.secrets).contains("PRIVATE"),
        "Debug never shows a key"
    );
    let v1 = doc.version.clone();
    hub.publish(&doc).expect("publish");
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(serve_stream_with(
        listener,
        hub.clone(),
        Duration::from_secs(2),
        rx,
        Some(Arc::new(TlsSource::Memory(Arc::new(
            arc_swap::ArcSwap::new(config),
        )))),
    ));
    let tls_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let (cert_file, key_file) = (write(d, "p.pem", &pair.0), write(d, "p.key", &pair.1));
    let args = [
        "--client-cert",
        cert_file.to_str().expect("path"),
        "--client-key",
        key_file.to_str().expect("path"),
        "--controller-ca",
        server.ca.to_str().expect("path"),
    ];
    let url = format!("https://localhost:{}", addr.port());
    let proxy = spawn_stream_proxy_tls(&url, "edge", Some(tls_addr), &args);
    let acked = |hub: Arc<Hub>, v: String| {
        move || {
            hub.proxies()
                .iter()
                .any(|(p, have)| p == "edge" && have.as_deref() == Some(v.as_str()))
        }
    };
    eventually("the proxy serves the first version", acked(hub.clone(), v1)).await;

    let edge = tls_support::client_config(&edge_ca.pem, &[b"http/1.1"]);
    let mut open = tls_support::connect(tls_addr, "api.test", edge.clone())
        .await
        .expect("handshake with the delivered certificate");
    assert_eq!(
        tls_support::negotiated(&open).0,
        tls_support::leaf_der(&first.0)
    );

    // Rotation: a new certificate in the Secret is a new version.
    let second = edge_ca.issue(&["api.test"]);
    let doc2 = tls_document(&second.0, &second.1);
    assert_ne!(
        doc2.version, doc.version,
        "a rotated Secret is a new version"
    );
    let v2 = doc2.version.clone();
    hub.publish(&doc2).expect("publish");
    eventually(
        "the proxy serves the rotated version",
        acked(hub.clone(), v2),
    )
    .await;
    let fresh = tls_support::connect(tls_addr, "api.test", edge)
        .await
        .expect("handshake after rotation");
    assert_eq!(
        tls_support::negotiated(&fresh).0,
        tls_support::leaf_der(&second.0)
    );
    // The connection opened before the rotation still answers.
    open.write_all(
        b"GET / HTTP/1.1\r\nhost: api.test\r\norigin: https://a.test\r\nconnection: close\r\n\r\n",
    )
    .await
    .expect("write on the old connection");
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), open.read_to_end(&mut buf))
        .await
        .expect("an answer in time")
        .expect("read");
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 502"), "{text}");
    assert!(
        text.contains("access-control-allow-origin: https://a.test"),
        "{text}"
    );

    drop(proxy);
    let _ = stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
}
