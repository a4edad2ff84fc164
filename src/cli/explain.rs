//! `corsgate explain` against one of three sources, with one output: policy files
//! (`--policies`), a running proxy's live snapshot (`--proxy http://ADMIN`, a client of its
//! admin `GET /explain`), or the CorsPolicies of a cluster (`--kubeconfig`, listed with the
//! user's own credentials). Files and cluster run `explain::explain` here; the proxy runs the
//! same function on its side and this prints its answer.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use kube::Api;
use kube::api::ListParams;

use super::args::{ExplainArgs, ExplainSource};
use crate::config::Snapshot;
use crate::explain::{self, Verdict};
use crate::policy::CorsPolicy;

/// How long the proxy may take to answer.
const PROXY_TIMEOUT: Duration = Duration::from_secs(10);

/// Why `explain` could not get an answer (exit status 2).
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error(
        "--proxy {0:?} is not an address: give the proxy's admin address, e.g. http://127.0.0.1:9901"
    )]
    ProxyUrl(String),
    #[error("cannot reach the proxy's admin endpoint {url}: {source}")]
    ProxyUnreachable {
        url: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("the proxy's admin endpoint {url} did not answer within {} s", PROXY_TIMEOUT.as_secs())]
    ProxyTimeout { url: String },
    #[error("the proxy answered {status}: {body}")]
    ProxyRefused { status: u16, body: String },
    #[error("cannot read the kubeconfig {path}: {source}")]
    Kubeconfig {
        path: String,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error(
        "cannot list CorsPolicies (does your user may `list corspolicies.corsgate.dev` in all namespaces?): {0}"
    )]
    List(#[source] kube::Error),
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

/// Every CorsPolicy the client may list, as the controller would compile them.
pub async fn cluster_snapshot(client: kube::Client) -> Result<Snapshot, kube::Error> {
    let api: Api<CorsPolicy> = Api::all(client.clone());
    let list = api.list(&ListParams::default()).await?;
    let inputs = list
        .items
        .iter()
        .map(crate::controller::status::input_of)
        .collect();
    // The Secrets TLS policies name, read with the user's own credentials (one get each),
    // so the `tls` lines say what the controller's ResolvedRefs says.
    let policies: Vec<std::sync::Arc<CorsPolicy>> =
        list.items.into_iter().map(std::sync::Arc::new).collect();
    let mut secrets = crate::config::certs::Secrets::default();
    for (ns, name) in crate::controller::secrets::referenced(&policies) {
        let api: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), &ns);
        match api.get_opt(&name).await {
            Ok(Some(s)) => {
                secrets.insert(crate::controller::secrets::tls_secret_of(&s));
            }
            Ok(None) => {}
            Err(e) => eprintln!(
                "note: cannot read secret {ns}/{name} with your credentials ({e}); its tls line below says \"not found\", but the policy's ResolvedRefs condition is authoritative (kubectl get corspolicy -n {ns} -o yaml)"
            ),
        }
    }
    Ok(Snapshot::build_with(inputs, &secrets))
}

async fn kube_client(path: &Path) -> Result<kube::Client, ExplainError> {
    let kubeconfig =
        kube::config::Kubeconfig::read_from(path).map_err(|source| ExplainError::Kubeconfig {
            path: path.display().to_string(),
            source,
        })?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .map_err(|source| ExplainError::Kubeconfig {
        path: path.display().to_string(),
        source,
    })?;
    kube::Client::try_from(config).map_err(ExplainError::List)
}

/// The admin URL of `/explain` for `req` on the proxy at `base`.
pub fn explain_uri(base: &str, req: &explain::Request) -> Result<Uri, ExplainError> {
    let base = base.trim_end_matches('/');
    let with_scheme = if base.contains("://") {
        base.to_string()
    } else {
        format!("http://{base}")
    };
    format!("{with_scheme}/explain?{}", req.to_query())
        .parse::<Uri>()
        .ok()
        .filter(|u| u.scheme_str() == Some("http") && u.authority().is_some())
        .ok_or_else(|| ExplainError::ProxyUrl(base.to_string()))
}

/// Asks the proxy at `base`: its text answer and verdict.
pub async fn ask_proxy(
    base: &str,
    req: &explain::Request,
) -> Result<(String, Verdict), ExplainError> {
    let uri = explain_uri(base, req)?;
    let url = uri.to_string();
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let request = Request::get(uri)
        .header(header::ACCEPT, "text/plain")
        .body(Full::new(Bytes::new()))
        .map_err(|_| ExplainError::ProxyUrl(base.to_string()))?;
    let call = async {
        let resp = client
            .request(request)
            .await
            .map_err(|e| ExplainError::ProxyUnreachable {
                url: url.clone(),
                source: Box::new(e),
            })?;
        let status = resp.status();
        let verdict = resp
            .headers()
            .get(crate::proxy::admin::VERDICT_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(Verdict::parse);
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| ExplainError::ProxyUnreachable {
                url: url.clone(),
                source: Box::new(e),
            })?
            .to_bytes();
        let text = String::from_utf8_lossy(&body).into_owned();
        match verdict {
            Some(v) if status.is_success() => Ok((text, v)),
            _ => Err(ExplainError::ProxyRefused {
                status: status.as_u16(),
                body: text.trim_end().to_string(),
            }),
        }
    };
    tokio::time::timeout(PROXY_TIMEOUT, call)
        .await
        .map_err(|_| ExplainError::ProxyTimeout { url })?
}

enum Remote {
    Proxy(String),
    Cluster(std::path::PathBuf),
}

fn exit(verdict: Verdict) -> ExitCode {
    match verdict {
        Verdict::Blocked => ExitCode::FAILURE,
        _ => ExitCode::SUCCESS,
    }
}

fn fail(e: &ExplainError) -> ExitCode {
    eprintln!("error: {}", crate::serve::describe(e));
    ExitCode::from(2)
}

/// `corsgate explain`: exit 2 when there is no answer (policies do not load, proxy or
/// cluster unreachable), 1 when the browser blocks, 0 otherwise.
pub fn run(a: ExplainArgs) -> ExitCode {
    let source = a.source();
    let req = a.into_request();
    let remote = match source {
        ExplainSource::Proxy(base) => Remote::Proxy(base),
        ExplainSource::Cluster(path) => Remote::Cluster(path),
        ExplainSource::Files(path) => {
            let snap = match crate::config::load_snapshot(&path) {
                Ok(s) => s,
                Err(errors) => {
                    for e in errors {
                        eprintln!("error: {e}");
                    }
                    return ExitCode::from(2);
                }
            };
            let e = explain::explain(&snap, &req);
            print!("{}", e.text);
            return exit(e.verdict);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&ExplainError::Runtime(e)),
    };
    let answer = rt.block_on(async {
        match remote {
            Remote::Proxy(base) => ask_proxy(&base, &req).await,
            Remote::Cluster(path) => {
                let client = kube_client(&path).await?;
                let snap = cluster_snapshot(client).await.map_err(ExplainError::List)?;
                let e = explain::explain(&snap, &req);
                Ok((e.text, e.verdict))
            }
        }
    });
    match answer {
        Ok((text, verdict)) => {
            print!("{text}");
            exit(verdict)
        }
        Err(e) => fail(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;
    use kube::client::Body;

    #[test]
    fn proxy_addresses_become_explain_urls() {
        let req = explain::Request::from_query("host=a.test&origin=https://b.test").expect("q");
        let u = explain_uri("127.0.0.1:9901/", &req).expect("uri");
        assert_eq!(u.path(), "/explain");
        assert_eq!(u.authority().map(|a| a.as_str()), Some("127.0.0.1:9901"));
        assert!(explain_uri("https://x:1", &req).is_err(), "http only");
        assert!(explain_uri("not a url", &req).is_err());
    }

    /// `--kubeconfig` lists every CorsPolicy with the given client and explains on them.
    #[tokio::test]
    async fn cluster_policies_are_listed_and_compiled() {
        let (svc, mut handle) =
            tower_test::mock::pair::<http::Request<Body>, http::Response<Body>>();
        let client = kube::Client::new(svc, "default");
        let server = tokio::spawn(async move {
            let (req, send) = handle.next_request().await.expect("a list call");
            assert_eq!(req.method(), Method::GET);
            assert_eq!(req.uri().path(), "/apis/corsgate.dev/v1alpha1/corspolicies");
            let list = serde_json::json!({
                "apiVersion": "corsgate.dev/v1alpha1", "kind": "CorsPolicyList",
                "metadata": {"resourceVersion": "1"},
                "items": [{
                    "apiVersion": "corsgate.dev/v1alpha1", "kind": "CorsPolicy",
                    "metadata": {"name": "api", "namespace": "shop",
                                 "creationTimestamp": "2026-01-01T00:00:00Z"},
                    "spec": {"hosts": ["api.shop.test"], "upstream": {"service": {"name": "api", "port": 80}},
                             "cors": {"allowOrigins": ["https://www.shop.test"]}}
                }]
            });
            send.send_response(
                http::Response::builder()
                    .status(200)
                    .body(Body::from(serde_json::to_vec(&list).expect("json")))
                    .expect("response"),
            );
        });
        let snap = cluster_snapshot(client).await.expect("listed");
        server.await.expect("served");
        assert_eq!(snap.policies.len(), 1);
        let req = explain::Request::from_query(
            "host=api.shop.test&method=DELETE&origin=https://www.shop.test",
        )
        .expect("q");
        let e = explain::explain(&snap, &req);
        assert_eq!(e.verdict, Verdict::Blocked, "{}", e.text);
        assert_eq!(e.policy.as_deref(), Some("shop/api"));
        assert!(
            e.text
                .contains("FAILED: method DELETE is not in allowMethods"),
            "{}",
            e.text
        );
    }

    /// A TLS policy's Secret is read with the user's credentials, so `explain --kubeconfig`
    /// says what ResolvedRefs says (here: a certificate that does not cover the host).
    #[tokio::test]
    async fn cluster_explain_reads_the_secret_a_tls_policy_names() {
        use base64::Engine as _;
        let now = time::OffsetDateTime::now_utc();
        let (ca, ca_key) = crate::webhook::certs::new_ca(now).expect("ca");
        let (cert, key) =
            crate::webhook::certs::issue(&ca, &ca_key, &["other.shop.test".to_string()], now)
                .expect("cert");
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let (svc, mut handle) =
            tower_test::mock::pair::<http::Request<Body>, http::Response<Body>>();
        let client = kube::Client::new(svc, "default");
        let respond = |send: tower_test::mock::SendResponse<http::Response<Body>>,
                       v: serde_json::Value| {
            send.send_response(
                http::Response::builder()
                    .status(200)
                    .body(Body::from(serde_json::to_vec(&v).expect("json")))
                    .expect("response"),
            );
        };
        let server = tokio::spawn(async move {
            let (req, send) = handle.next_request().await.expect("a list call");
            assert_eq!(req.uri().path(), "/apis/corsgate.dev/v1alpha1/corspolicies");
            respond(
                send,
                serde_json::json!({
                    "apiVersion": "corsgate.dev/v1alpha1", "kind": "CorsPolicyList",
                    "metadata": {"resourceVersion": "1"},
                    "items": [{
                        "apiVersion": "corsgate.dev/v1alpha1", "kind": "CorsPolicy",
                        "metadata": {"name": "api", "namespace": "shop"},
                        "spec": {"hosts": ["api.shop.test"], "upstream": {"url": "http://127.0.0.1:9"},
                                 "tls": {"secretName": "api-tls"}}
                    }]
                }),
            );
            let (req, send) = handle.next_request().await.expect("a get of the Secret");
            assert_eq!(req.method(), Method::GET);
            assert_eq!(req.uri().path(), "/api/v1/namespaces/shop/secrets/api-tls");
            respond(
                send,
                serde_json::json!({
                    "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                    "metadata": {"name": "api-tls", "namespace": "shop"},
                    "data": {"tls.crt": b64(&cert), "tls.key": b64(&key)}
                }),
            );
        });
        let snap = cluster_snapshot(client).await.expect("listed");
        server.await.expect("served");
        let req = explain::Request::from_query("host=api.shop.test").expect("q");
        let e = explain::explain(&snap, &req);
        assert!(
            e.text.contains("does not cover host api.shop.test"),
            "{}",
            e.text
        );
    }
}
