//! Certificates without cert-manager, against kube's tower-test mock API server: each
//! scenario checks every call's method, URI and body, and fails on a missing or extra call.
//! The generated certificates are proven by a real TLS handshake that trusts only ca.crt.

use std::sync::Arc;
use std::time::Duration;

use corsgate::webhook::certs::{
    self, Bundle, ManagedOptions, Renewal, ensure_secret, patch_ca_bundle, plan,
};
use corsgate::webhook::server;
use http::{Method, Request, Response};
use kube::client::Body;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};
use time::OffsetDateTime;

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

fn mock() -> (kube::Client, Handle) {
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (kube::Client::new(svc, "default"), handle)
}

fn opts() -> ManagedOptions {
    ManagedOptions {
        service: "corsgate-webhook".into(),
        namespace: "corsgate".into(),
        secret: "corsgate-webhook-tls".into(),
        config_name: "corsgate".into(),
    }
}

const SECRET_PATH: &str = "/api/v1/namespaces/corsgate/secrets";
const VWC_PATH: &str =
    "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/corsgate";

async fn next(
    handle: &mut Handle,
) -> (
    Request<Body>,
    tower_test::mock::SendResponse<Response<Body>>,
) {
    tokio::time::timeout(Duration::from_secs(5), handle.next_request())
        .await
        .expect("timed out waiting for a call")
        .expect("the client went away")
}

async fn body_json(req: Request<Body>) -> Value {
    let bytes = req.into_body().collect_bytes().await.expect("body");
    serde_json::from_slice(&bytes).expect("JSON body")
}

fn respond(send: tower_test::mock::SendResponse<Response<Body>>, code: u16, body: &Value) {
    send.send_response(
        Response::builder()
            .status(code)
            .body(Body::from(serde_json::to_vec(body).expect("json")))
            .expect("response"),
    );
}

fn not_found(send: tower_test::mock::SendResponse<Response<Body>>, what: &str) {
    respond(
        send,
        404,
        &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": format!("{what} not found")}),
    );
}

async fn no_more_calls(handle: &mut Handle) {
    if let Ok(Some((req, _))) =
        tokio::time::timeout(Duration::from_millis(300), handle.next_request()).await
    {
        panic!("unexpected call: {} {}", req.method(), req.uri());
    }
}

fn b64(s: &str) -> String {
    // The API server's JSON form of []byte; k8s-openapi's ByteString encodes the same way.
    serde_json::to_value(k8s_openapi::ByteString(s.as_bytes().to_vec()))
        .expect("json")
        .as_str()
        .expect("string")
        .to_string()
}

fn unb64(v: &Value) -> String {
    let b: k8s_openapi::ByteString = serde_json::from_value(v.clone()).expect("base64");
    String::from_utf8(b.0).expect("utf-8")
}

fn secret_json(b: &Bundle, rv: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": "corsgate-webhook-tls", "namespace": "corsgate", "resourceVersion": rv},
        "data": {"ca.crt": b64(&b.ca), "ca.key": b64(&b.ca_key), "tls.crt": b64(&b.cert), "tls.key": b64(&b.key)}})
}

fn vwc_json(ca_bundle: Option<&str>) -> Value {
    let mut client_config = json!({"service": {"name": "corsgate-webhook", "namespace": "corsgate", "path": "/validate", "port": 443}});
    if let Some(ca) = ca_bundle {
        client_config["caBundle"] = b64(ca).into();
    }
    json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "corsgate", "resourceVersion": "3"},
        "webhooks": [{"name": "validate.corsgate.dev", "clientConfig": client_config,
            "sideEffects": "None", "admissionReviewVersions": ["v1"]}]})
}

/// Serves `bundle` on loopback and connects trusting only `ca`, with SNI `name`.
async fn handshake(bundle: &Bundle, ca: &str, name: &str) -> Result<(), String> {
    let config = server::server_config(bundle.cert.as_bytes(), bundle.key.as_bytes())
        .map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        if let Ok((io, _)) = listener.accept().await {
            let _ = tokio_rustls::TlsAcceptor::from(config).accept(io).await;
        }
    });
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots
            .add(c.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let sni = rustls_pki_types::ServerName::try_from(name.to_string()).expect("name");
    tokio_rustls::TlsConnector::from(Arc::new(client))
        .connect(sni, tcp)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn first_start_creates_ca_and_cert_in_a_secret_and_patches_the_ca_bundle() {
    let (client, mut handle) = mock();
    let o = opts();
    let task = tokio::spawn({
        let (client, o) = (client.clone(), o.clone());
        async move {
            let b = ensure_secret(&client, &o, OffsetDateTime::now_utc()).await?;
            let patched = patch_ca_bundle(&client, &o.config_name, &b.ca).await?;
            Ok::<_, corsgate::webhook::Error>((b, patched))
        }
    });

    let (req, send) = next(&mut handle).await;
    assert_eq!(req.method(), Method::GET);
    assert_eq!(
        req.uri().path(),
        format!("{SECRET_PATH}/corsgate-webhook-tls")
    );
    not_found(send, "secret");

    let (req, send) = next(&mut handle).await;
    assert_eq!(req.method(), Method::POST);
    assert_eq!(req.uri().path(), SECRET_PATH);
    let created = body_json(req).await;
    assert_eq!(created["type"], "kubernetes.io/tls");
    assert_eq!(created["metadata"]["name"], "corsgate-webhook-tls");
    assert_eq!(created["metadata"]["namespace"], "corsgate");
    assert_eq!(
        created["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "corsgate-controller"
    );
    let keys: Vec<&String> = created["data"].as_object().expect("data").keys().collect();
    assert_eq!(keys, ["ca.crt", "ca.key", "tls.crt", "tls.key"]);
    let stored = Bundle {
        ca: unb64(&created["data"]["ca.crt"]),
        ca_key: unb64(&created["data"]["ca.key"]),
        cert: unb64(&created["data"]["tls.crt"]),
        key: unb64(&created["data"]["tls.key"]),
    };
    let mut answer = created.clone();
    answer["metadata"]["resourceVersion"] = "1".into();
    respond(send, 201, &answer);

    let (req, send) = next(&mut handle).await;
    assert_eq!(req.method(), Method::GET);
    assert_eq!(req.uri().path(), VWC_PATH);
    respond(send, 200, &vwc_json(None));

    let (req, send) = next(&mut handle).await;
    assert_eq!(req.method(), Method::PATCH);
    assert_eq!(req.uri().path(), VWC_PATH);
    assert_eq!(
        req.headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        Some("application/strategic-merge-patch+json")
    );
    let patch = body_json(req).await;
    assert_eq!(
        patch,
        json!({"webhooks": [{"name": "validate.corsgate.dev", "clientConfig": {"caBundle": b64(&stored.ca)}}]})
    );
    respond(send, 200, &vwc_json(Some(&stored.ca)));

    let (bundle, patched) = task.await.expect("task").expect("ok");
    assert!(patched);
    assert_eq!(bundle, stored, "what is served is what was stored");
    no_more_calls(&mut handle).await;

    // The certificate: both Service names, 1 year; the CA: 10 years.
    let cert = &certs::parse(&bundle.cert).expect("cert")[0];
    assert_eq!(
        cert.dns_names,
        [
            "corsgate-webhook.corsgate.svc",
            "corsgate-webhook.corsgate.svc.cluster.local"
        ]
    );
    let days = (cert.not_after - OffsetDateTime::now_utc()).whole_days();
    assert!((364..=365).contains(&days), "{days}");
    let ca_days = (certs::parse(&bundle.ca).expect("ca")[0].not_after - OffsetDateTime::now_utc())
        .whole_days();
    assert!((3649..=3650).contains(&ca_days), "{ca_days}");
    // And a real client trusting only ca.crt accepts it for the Service's name, not others.
    handshake(&bundle, &bundle.ca, "corsgate-webhook.corsgate.svc")
        .await
        .expect("trusted");
    handshake(
        &bundle,
        &bundle.ca,
        "corsgate-webhook.corsgate.svc.cluster.local",
    )
    .await
    .expect("trusted");
    assert!(
        handshake(&bundle, &bundle.ca, "evil.example.com")
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_fresh_secret_and_a_current_ca_bundle_write_nothing() {
    let (client, mut handle) = mock();
    let o = opts();
    let now = OffsetDateTime::now_utc();
    let (b, _) = plan(None, &o.dns_names(), now).expect("plan");
    let task = tokio::spawn({
        let (client, o, b) = (client.clone(), o.clone(), b.clone());
        async move {
            let got = ensure_secret(&client, &o, now).await?;
            let patched = patch_ca_bundle(&client, &o.config_name, &b.ca).await?;
            Ok::<_, corsgate::webhook::Error>((got, patched))
        }
    });
    let (req, send) = next(&mut handle).await;
    assert_eq!(
        (req.method(), req.uri().path()),
        (
            &Method::GET,
            format!("{SECRET_PATH}/corsgate-webhook-tls").as_str()
        )
    );
    respond(send, 200, &secret_json(&b, "5"));
    let (req, send) = next(&mut handle).await;
    assert_eq!((req.method(), req.uri().path()), (&Method::GET, VWC_PATH));
    respond(send, 200, &vwc_json(Some(&b.ca)));
    let (got, patched) = task.await.expect("task").expect("ok");
    assert_eq!(got, b);
    assert!(!patched);
    no_more_calls(&mut handle).await;
}

#[tokio::test]
async fn a_certificate_near_expiry_is_renewed_from_the_same_ca_at_the_resource_version_read() {
    let (client, mut handle) = mock();
    let o = opts();
    let issued = OffsetDateTime::now_utc();
    let (b, _) = plan(None, &o.dns_names(), issued).expect("plan");
    // 340 days later: 25 days left, below the 30-day threshold.
    let later = issued + time::Duration::days(340);
    let task = tokio::spawn({
        let (client, o) = (client.clone(), o.clone());
        async move { ensure_secret(&client, &o, later).await }
    });
    let (_req, send) = next(&mut handle).await;
    respond(send, 200, &secret_json(&b, "7"));
    let (req, send) = next(&mut handle).await;
    assert_eq!(req.method(), Method::PUT);
    assert_eq!(
        req.uri().path(),
        format!("{SECRET_PATH}/corsgate-webhook-tls")
    );
    let put = body_json(req).await;
    assert_eq!(
        put["metadata"]["resourceVersion"], "7",
        "optimistic concurrency"
    );
    assert_eq!(unb64(&put["data"]["ca.crt"]), b.ca, "same CA");
    assert_eq!(unb64(&put["data"]["ca.key"]), b.ca_key);
    assert_ne!(unb64(&put["data"]["tls.crt"]), b.cert, "a new certificate");
    respond(send, 200, &put);
    let renewed = task.await.expect("task").expect("ok");
    let left = (certs::parse(&renewed.cert).expect("cert")[0].not_after - later).whole_days();
    assert!((364..=365).contains(&left), "{left}");
    // Still trusted through the unchanged caBundle (its validity starts 340 days from now,
    // so the chain is checked by signature rather than by a handshake today).
    assert!(
        signed_by(&renewed.cert, &b.ca),
        "signed by the CA already in the bundle"
    );
    no_more_calls(&mut handle).await;
}

#[tokio::test]
async fn losing_the_creation_race_uses_the_winners_certificates() {
    let (client, mut handle) = mock();
    let o = opts();
    let (winner, _) = plan(None, &o.dns_names(), OffsetDateTime::now_utc()).expect("plan");
    let task = tokio::spawn({
        let (client, o) = (client.clone(), o.clone());
        async move { ensure_secret(&client, &o, OffsetDateTime::now_utc()).await }
    });
    let (_req, send) = next(&mut handle).await;
    not_found(send, "secret");
    let (req, send) = next(&mut handle).await;
    assert_eq!(req.method(), Method::POST);
    respond(
        send,
        409,
        &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "AlreadyExists", "code": 409, "message": "already exists"}),
    );
    let (req, send) = next(&mut handle).await;
    assert_eq!(
        (req.method(), req.uri().path()),
        (
            &Method::GET,
            format!("{SECRET_PATH}/corsgate-webhook-tls").as_str()
        )
    );
    respond(send, 200, &secret_json(&winner, "2"));
    assert_eq!(task.await.expect("task").expect("ok"), winner);
    no_more_calls(&mut handle).await;
}

#[test]
fn rotation_plan() {
    let names = opts().dns_names();
    let t0 = OffsetDateTime::now_utc();
    let (b, r) = plan(None, &names, t0).expect("plan");
    assert_eq!(r, Renewal::Created("no certificates yet".into()));
    // Fresh: unchanged.
    assert_eq!(
        plan(Some(&b), &names, t0 + time::Duration::days(300))
            .expect("plan")
            .1,
        Renewal::Unchanged
    );
    // 30-day threshold.
    assert!(matches!(
        plan(Some(&b), &names, t0 + time::Duration::days(336))
            .expect("plan")
            .1,
        Renewal::Cert(_)
    ));
    // A renamed Service: a new certificate for the new names, same CA.
    let mut renamed = opts();
    renamed.service = "gate".into();
    let (nb, r) = plan(Some(&b), &renamed.dns_names(), t0).expect("plan");
    assert!(
        matches!(r, Renewal::Cert(ref why) if why.contains("wanted")),
        "{r:?}"
    );
    assert_eq!(nb.ca, b.ca);
    assert_eq!(
        certs::parse(&nb.cert).expect("cert")[0].dns_names,
        renamed.dns_names()
    );
    // Less than a year left on the CA: a new CA first in ca.crt, the old one kept after it,
    // and the new serving certificate trusted through the bundle.
    let late = t0 + time::Duration::days(3650 - 200);
    let (cb, r) = plan(Some(&b), &names, late).expect("plan");
    assert!(matches!(r, Renewal::Ca(_)), "{r:?}");
    let cas = certs::parse(&cb.ca).expect("bundle");
    assert_eq!(cas.len(), 2);
    assert!(cb.ca.ends_with(&b.ca), "the old CA stays in the bundle");
    assert_ne!(cb.ca_key, b.ca_key);
    // Garbage in the Secret: everything new.
    let mut broken = b.clone();
    broken.cert = "garbage".into();
    assert!(matches!(
        plan(Some(&broken), &names, t0).expect("plan").1,
        Renewal::Created(_)
    ));
}

/// Whether the first certificate of `cert_pem` carries a valid signature of the first CA in
/// `ca_pem`.
fn signed_by(cert_pem: &str, ca_pem: &str) -> bool {
    let (_, ca) = x509_parser::pem::parse_x509_pem(ca_pem.as_bytes()).expect("pem");
    let (_, leaf) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).expect("pem");
    let ca = ca.parse_x509().expect("ca");
    let leaf = leaf.parse_x509().expect("leaf");
    leaf.verify_signature(Some(ca.public_key())).is_ok()
}

#[test]
fn a_rotated_ca_signs_the_new_certificate_and_not_the_old_one() {
    let names = opts().dns_names();
    let t0 = OffsetDateTime::now_utc();
    let (b, _) = plan(None, &names, t0).expect("plan");
    let (cb, _) = plan(Some(&b), &names, t0 + time::Duration::days(3650 - 200)).expect("plan");
    assert!(
        signed_by(&cb.cert, &cb.ca),
        "signed by the new CA, first in the bundle"
    );
    assert!(!signed_by(&cb.cert, &b.ca), "not by the old CA");
    assert!(signed_by(&b.cert, &b.ca));
}

#[test]
fn an_expired_old_ca_leaves_the_bundle_and_the_new_one_stays_as_written() {
    let names = opts().dns_names();
    let t0 = OffsetDateTime::now_utc();
    let (b, _) = plan(None, &names, t0).expect("plan");
    let late = t0 + time::Duration::days(3650 - 200);
    let (cb, _) = plan(Some(&b), &names, late).expect("plan");
    assert_eq!(certs::parse(&cb.ca).expect("bundle").len(), 2);
    // The old CA has expired; the new CA and the serving certificate are still good.
    let (nb, r) = plan(Some(&cb), &names, t0 + time::Duration::days(3651)).expect("plan");
    assert_eq!(r, Renewal::Ca("an expired old CA left the bundle".into()));
    assert_eq!(certs::parse(&nb.ca).expect("bundle").len(), 1);
    assert!(
        cb.ca.starts_with(&nb.ca) && !nb.ca.contains(&b.ca),
        "the new CA's text, without the old one"
    );
    assert_eq!(
        (&nb.ca_key, &nb.cert, &nb.key),
        (&cb.ca_key, &cb.cert, &cb.key)
    );
    assert_eq!(
        plan(Some(&nb), &names, t0 + time::Duration::days(3651))
            .expect("plan")
            .1,
        Renewal::Unchanged
    );
}

/// Issue 15 item 5: the config stream's certificates with no manual step. On a first start
/// the controller writes its CA and serving certificate into one Secret and the proxies'
/// client certificate (never the CA key) into the one they mount; the pair then completes a
/// mutually authenticated handshake for the controller Service's name.
#[tokio::test]
async fn the_stream_certificates_are_issued_into_two_secrets_and_authenticate_each_other() {
    use corsgate::controller::stream_certs::{self, StreamCertOptions};
    let (client, mut handle) = mock();
    let o = StreamCertOptions {
        service: "corsgate-controller".into(),
        namespace: "corsgate".into(),
        secret: "corsgate-stream-tls".into(),
        proxy_secret: "corsgate-stream-proxy".into(),
    };
    let task = tokio::spawn({
        let (client, o) = (client.clone(), o.clone());
        async move { stream_certs::ensure(&client, &o, OffsetDateTime::now_utc()).await }
    });

    let (req, send) = next(&mut handle).await;
    assert_eq!(
        (req.method(), req.uri().path()),
        (
            &Method::GET,
            format!("{SECRET_PATH}/corsgate-stream-tls").as_str()
        )
    );
    not_found(send, "secret");
    let (req, send) = next(&mut handle).await;
    assert_eq!(
        (req.method(), req.uri().path()),
        (&Method::POST, SECRET_PATH)
    );
    let own = body_json(req).await;
    assert_eq!(own["metadata"]["name"], "corsgate-stream-tls");
    let mut keys: Vec<&String> = own["data"].as_object().expect("data").keys().collect();
    keys.sort();
    assert_eq!(keys, ["ca.crt", "ca.key", "tls.crt", "tls.key"]);
    respond(send, 201, &own);

    let (req, send) = next(&mut handle).await;
    assert_eq!(
        (req.method(), req.uri().path()),
        (
            &Method::GET,
            format!("{SECRET_PATH}/corsgate-stream-proxy").as_str()
        )
    );
    not_found(send, "secret");
    let (req, send) = next(&mut handle).await;
    assert_eq!(
        (req.method(), req.uri().path()),
        (&Method::POST, SECRET_PATH)
    );
    let proxies = body_json(req).await;
    assert_eq!(proxies["metadata"]["name"], "corsgate-stream-proxy");
    assert_eq!(proxies["metadata"]["namespace"], "corsgate");
    let mut keys: Vec<&String> = proxies["data"].as_object().expect("data").keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        ["ca.crt", "tls.crt", "tls.key"],
        "the proxies never get the CA key"
    );
    assert!(
        proxies["metadata"]["annotations"][stream_certs::CA_ANNOTATION]
            .as_str()
            .is_some_and(|d| d.len() == 64)
    );
    respond(send, 201, &proxies);
    let bundle = task.await.expect("task").expect("ensure");
    no_more_calls(&mut handle).await;
    assert_eq!(unb64(&own["data"]["ca.crt"]), bundle.ca);
    assert_eq!(unb64(&proxies["data"]["ca.crt"]), bundle.ca);

    // A real mutual handshake: the controller's config requires the proxies' certificate.
    let server = stream_certs::server_config(&bundle).expect("server config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = tokio::spawn(async move {
        let (io, _) = listener.accept().await.expect("accept");
        tokio_rustls::TlsAcceptor::from(server)
            .accept(io)
            .await
            .map(|s| s.get_ref().1.peer_certificates().map(<[_]>::len))
            .map_err(|e| e.to_string())
    });
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(bundle.ca.as_bytes()) {
        roots.add(c.expect("pem")).expect("root");
    }
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(unb64(&proxies["data"]["tls.crt"]).as_bytes())
            .map(|c| c.expect("pem"))
            .collect();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(
        unb64(&proxies["data"]["tls.key"]).as_bytes(),
    )
    .expect("key");
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)
    .expect("client auth");
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let sni =
        rustls_pki_types::ServerName::try_from("corsgate-controller.corsgate.svc").expect("name");
    let mut s = tokio_rustls::TlsConnector::from(Arc::new(client))
        .connect(sni, tcp)
        .await
        .expect("the proxies' certificate is accepted");
    // TLS 1.3: the server checks the client certificate after the client's handshake ends.
    let _ = tokio::io::AsyncWriteExt::write_all(&mut s, b"x").await;
    assert_eq!(accepted.await.expect("task"), Ok(Some(1)));
}
