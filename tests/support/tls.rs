//! TLS fixtures of the black-box tests (issue 15): a CA that issues ECDSA P-256 certificates
//! (rcgen), Secret documents in the form `kubectl create secret tls --dry-run=client -o yaml`
//! prints, and an HTTPS client (rustls) that sends a chosen SNI and ALPN, reports the
//! certificate the server chose, and speaks HTTP/2 or HTTP/1.1 as negotiated.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls_pki_types::pem::PemObject;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// A certificate authority for one test.
pub struct TestCa {
    pub pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    pub fn new() -> TestCa {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "corsgate test CA");
        p.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let cert = p.self_signed(&key).expect("self-sign");
        let pem = cert.pem();
        let issuer = rcgen::Issuer::from_ca_cert_pem(&pem, key).expect("issuer");
        TestCa { pem, issuer }
    }

    /// A serving certificate for `names`, valid for 90 days: (certificate PEM, key PEM).
    pub fn issue(&self, names: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut p =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("params");
        p.distinguished_name
            .push(rcgen::DnType::CommonName, names[0]);
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let now = time::OffsetDateTime::now_utc();
        p.not_before = now - time::Duration::hours(1);
        p.not_after = now + time::Duration::days(90);
        let cert = p.signed_by(&key, &self.issuer).expect("sign");
        (cert.pem(), key.serialize_pem())
    }
}

impl TestCa {
    /// A client certificate (EKU clientAuth) named `name`: (certificate PEM, key PEM).
    pub fn issue_client(&self, name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut p = rcgen::CertificateParams::new(vec![name.to_string()]).expect("params");
        p.distinguished_name.push(rcgen::DnType::CommonName, name);
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = p.signed_by(&key, &self.issuer).expect("sign");
        (cert.pem(), key.serialize_pem())
    }
}

/// A Secret document exactly as `kubectl create secret tls NAME --cert C --key K -n NS
/// --dry-run=client -o yaml` lays it out.
pub fn secret_yaml(namespace: &str, name: &str, cert_pem: &str, key_pem: &str) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    format!(
        "apiVersion: v1\ndata:\n  tls.crt: {}\n  tls.key: {}\nkind: Secret\nmetadata:\n  creationTimestamp: null\n  name: {name}\n  namespace: {namespace}\ntype: kubernetes.io/tls\n",
        b64(cert_pem),
        b64(key_pem)
    )
}

/// The DER of the first certificate in `pem`.
pub fn leaf_der(pem: &str) -> Vec<u8> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .expect("a certificate")
        .expect("PEM")
        .as_ref()
        .to_vec()
}

/// A client trusting `ca_pem` only, offering `alpn`.
pub fn client_config(ca_pem: &str, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.expect("CA PEM")).expect("add CA");
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// A TLS connection to `addr` with server name `sni` (a DNS name, or an IP address: then no
/// SNI is sent). Err: the handshake's error (`rustls::Error` inside the io::Error).
pub async fn connect(
    addr: SocketAddr,
    sni: &str,
    config: Arc<rustls::ClientConfig>,
) -> Result<TlsStream<TcpStream>, std::io::Error> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(sni.to_string()).expect("server name");
    tokio::time::timeout(
        Duration::from_secs(10),
        tokio_rustls::TlsConnector::from(config).connect(name, tcp),
    )
    .await
    .expect("handshake within 10 s")
}

/// The rustls error a failed handshake carries.
pub fn rustls_error(e: &std::io::Error) -> Option<&rustls::Error> {
    e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>())
}

/// The certificate the server presented (leaf DER) and the ALPN protocol it chose.
pub fn negotiated(s: &TlsStream<TcpStream>) -> (Vec<u8>, Option<String>) {
    let (_, conn) = s.get_ref();
    let leaf = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.as_ref().to_vec())
        .unwrap_or_default();
    let alpn = conn
        .alpn_protocol()
        .map(|p| String::from_utf8_lossy(p).into_owned());
    (leaf, alpn)
}

/// What one HTTPS request got.
#[derive(Debug)]
pub struct HttpsGot {
    pub status: u16,
    pub version: http::Version,
    pub headers: HeaderMap,
    pub body: String,
}

/// An open HTTPS connection: HTTP/2 when ALPN chose h2, else HTTP/1.1 keep-alive.
pub enum Conn {
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
}

impl Conn {
    /// Speaks HTTP over `stream` (driven by a spawned task until it closes).
    pub async fn over(stream: TlsStream<TcpStream>) -> Conn {
        let h2 = negotiated(&stream).1.as_deref() == Some("h2");
        let io = TokioIo::new(stream);
        if h2 {
            let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .expect("h2 handshake");
            tokio::spawn(conn);
            Conn::H2(send)
        } else {
            let (send, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .expect("http/1.1 handshake");
            tokio::spawn(conn);
            Conn::H1(send)
        }
    }

    /// One request for `https://HOST{path}` with `headers`; Err: the connection failed.
    pub async fn send(
        &mut self,
        method: &str,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<HttpsGot, hyper::Error> {
        let mut b = Request::builder().method(method);
        b = match self {
            Conn::H2(_) => b.uri(format!("https://{host}{path}")),
            Conn::H1(_) => b.uri(path).header("host", host),
        };
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b.body(Full::new(Bytes::new())).expect("request");
        let fut = async {
            match self {
                Conn::H2(s) => s.send_request(req).await,
                Conn::H1(s) => {
                    s.ready().await?;
                    s.send_request(req).await
                }
            }
        };
        let resp = tokio::time::timeout(Duration::from_secs(20), fut)
            .await
            .expect("answered within 20 s")?;
        let (status, version, headers) = (
            resp.status().as_u16(),
            resp.version(),
            resp.headers().clone(),
        );
        let body = resp.into_body().collect().await?.to_bytes();
        Ok(HttpsGot {
            status,
            version,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}
