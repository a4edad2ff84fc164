//! `corsgate demo`: the proxy on the bundled quickstart policy, a built-in echo upstream, and
//! a page on another origin that calls the API with `fetch()` and shows, call by call, what
//! the browser allowed or blocked and the headers the edge sent that decided it.
//!
//! Owns: the echo upstream, the page and its `/probe` helper. Everything CORS goes through
//! the real proxy (`proxy::run`) over loopback.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::watch;

use crate::proxy::{self, ProxyOptions};
use crate::serve::{self, Listener, reply};

/// The bundled example, also at `examples/quickstart.yaml`.
pub const QUICKSTART: &str = include_str!("../../examples/quickstart.yaml");
const PAGE: &str = include_str!("page.html");

#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// The proxy's traffic address; the page calls `http://localhost:PORT`.
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    /// Where the page is served: its origin is `http://127.0.0.1:PORT`.
    pub page: SocketAddr,
    /// The echo upstream; must match the quickstart's upstream URL.
    pub upstream: SocketAddr,
    /// Policies to serve; `None`: the bundled quickstart.
    pub policies: Option<PathBuf>,
}

/// The echo upstream: `/status/NNN` answers NNN, `/slow/MS` waits, anything else answers
/// 200 with what it received as JSON. Every answer carries `x-request-id`.
async fn echo(counter: Arc<AtomicU64>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
    let path = req.uri().path().to_string();
    let mut status = StatusCode::OK;
    if let Some(code) = path.strip_prefix("/status/") {
        status = code
            .parse::<u16>()
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
            .unwrap_or(StatusCode::BAD_REQUEST);
    }
    if let Some(ms) = path
        .strip_prefix("/slow/")
        .and_then(|m| m.parse::<u64>().ok())
    {
        tokio::time::sleep(Duration::from_millis(ms.min(60_000))).await;
    }
    let headers: serde_json::Map<String, serde_json::Value> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
        .collect();
    let body = serde_json::json!({
        "upstream": "corsgate demo echo",
        "method": req.method().as_str(),
        "path": path,
        "headers": headers,
    });
    let mut r = reply(
        status,
        "application/json",
        serde_json::to_vec_pretty(&body).unwrap_or_default(),
    );
    r.headers_mut().insert("x-request-id", HeaderValue::from(n));
    r
}

/// `/probe?method=PUT&path=/hello&headers=x-custom`: sends what a browser on the page's
/// origin would send first (the preflight when one is needed, else the request) and returns
/// the edge's status and headers as JSON, with the proxy's own verdict and reason from its
/// admin `/explain`, so the page can show why a call was blocked — which JavaScript itself
/// is never told.
async fn probe(
    client: &Client<HttpConnector, Empty<Bytes>>,
    api: SocketAddr,
    admin: SocketAddr,
    origin: &str,
    query: &str,
) -> Response<Full<Bytes>> {
    let mut method = "GET".to_string();
    let mut path = "/".to_string();
    let mut headers = String::new();
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_encoding::percent_decode_str(v)
            .decode_utf8_lossy()
            .into_owned();
        match k {
            "method" => method = v,
            "path" => path = v,
            "headers" => headers = v,
            _ => {}
        }
    }
    let simple_method = matches!(method.as_str(), "GET" | "HEAD" | "POST");
    let preflight = !simple_method || !headers.is_empty();
    let mut b = Request::builder()
        .uri(format!("http://{api}{path}"))
        .header(header::HOST, "localhost")
        .header(header::ORIGIN, origin);
    if preflight {
        b = b
            .method(Method::OPTIONS)
            .header("access-control-request-method", method.as_str());
        if !headers.is_empty() {
            b = b.header("access-control-request-headers", headers.as_str());
        }
    } else {
        b = b.method(method.as_str());
    }
    let Ok(req) = b.body(Empty::new()) else {
        return reply(StatusCode::BAD_REQUEST, "text/plain", "bad probe\n");
    };
    let result = match client.request(req).await {
        Ok(resp) => {
            let hs: Vec<(String, String)> = resp
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            let status = resp.status().as_u16();
            let _ = resp.into_body().collect().await;
            serde_json::json!({"sent": if preflight { "preflight (OPTIONS)" } else { "request" }, "status": status, "headers": hs})
        }
        Err(e) => serde_json::json!({"error": e.to_string()}),
    };
    let mut result = result;
    // Why, from the proxy itself: its admin /explain on the live configuration (the same
    // answer as `corsgate explain`), for the row's "why" line.
    let query = {
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("host", "localhost")
            .append_pair("path", &path)
            .append_pair("method", &method)
            .append_pair("origin", origin);
        for h in headers.split(',').filter(|h| !h.is_empty()) {
            q.append_pair("header", h);
        }
        q.finish()
    };
    let explained = Request::builder()
        .uri(format!("http://{admin}/explain?{query}"))
        .header(header::ACCEPT, "application/json")
        .body(Empty::new());
    if let Ok(req) = explained
        && let Ok(resp) = client.request(req).await
        && let Ok(body) = resp.into_body().collect().await
        && let Ok(e) = serde_json::from_slice::<serde_json::Value>(&body.to_bytes())
    {
        result["verdict"] = e["verdict"].clone();
        result["why"] = e["reason"].clone();
    }
    reply(
        StatusCode::OK,
        "application/json",
        serde_json::to_vec(&result).unwrap_or_default(),
    )
}

/// Runs the demo until `shutdown` turns true.
pub async fn run(opts: DemoOptions, shutdown: watch::Receiver<bool>) -> Result<(), std::io::Error> {
    let policies = match &opts.policies {
        Some(p) => p.clone(),
        None => {
            let dir = std::env::temp_dir().join(format!("corsgate-demo-{}", std::process::id()));
            std::fs::create_dir_all(&dir)?;
            let file = dir.join("quickstart.yaml");
            // The bundled file names the default addresses; follow --upstream and --page.
            let text = QUICKSTART
                .replace(
                    "http://127.0.0.1:9000",
                    &format!("http://{}", opts.upstream),
                )
                .replace("http://127.0.0.1:3000", &format!("http://{}", opts.page))
                .replace(
                    "http://app.example.test:3000",
                    &format!("http://app.example.test:{}", opts.page.port()),
                );
            std::fs::write(&file, text)?;
            file
        }
    };
    let echo_listener = serve::bind("demo upstream", opts.upstream).await?;
    let page_listener = serve::bind("demo page", opts.page).await?;
    let counter = Arc::new(AtomicU64::new(0));
    tokio::spawn(serve::serve(
        echo_listener,
        Listener::plain("demo-upstream", Duration::from_secs(1)),
        move |_| {
            let counter = counter.clone();
            move |req| echo(counter.clone(), req)
        },
        shutdown.clone(),
    ));
    let (api, admin) = (opts.listen, opts.admin);
    let page_origin = format!("http://{}", opts.page);
    let client: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let page = PAGE.replace("__API__", &format!("http://localhost:{}", api.port()));
    let shared = Arc::new((client, page, page_origin.clone()));
    tokio::spawn(serve::serve(
        page_listener,
        Listener::plain("demo-page", Duration::from_secs(1)),
        move |_| {
            let shared = shared.clone();
            move |req: Request<Incoming>| {
                let shared = shared.clone();
                async move {
                    let (client, page, origin) = &*shared;
                    match req.uri().path() {
                        "/" => reply(StatusCode::OK, "text/html; charset=utf-8", page.clone()),
                        "/probe" => {
                            probe(client, api, admin, origin, req.uri().query().unwrap_or("")).await
                        }
                        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
                    }
                }
            }
        },
        shutdown.clone(),
    ));
    println!();
    println!("  corsgate demo");
    println!(
        "  open the page:  {page_origin}/   (origin {page_origin}, calls the API on http://localhost:{})",
        api.port()
    );
    println!(
        "  policies:       {}   (edit it: the proxy reloads)",
        policies.display()
    );
    println!(
        "  proxy admin:    http://{}/config   /metrics   /readyz",
        opts.admin
    );
    println!("  echo upstream:  http://{}", opts.upstream);
    println!(
        "  try:            curl -si -X OPTIONS http://localhost:{}/hello -H 'Origin: {page_origin}' -H 'Access-Control-Request-Method: PUT'",
        api.port()
    );
    println!("  Ctrl-C stops it.");
    println!();
    proxy::run(
        ProxyOptions {
            listen: opts.listen,
            listen_tls: None,
            admin: opts.admin,
            drain: Duration::from_secs(2),
            source: proxy::Source::Files {
                path: policies,
                poll: Duration::from_secs(5),
            },
            forward: proxy::forward::ForwardOptions::default(),
            header_timeout: crate::serve::HEADER_TIMEOUT,
            conn: crate::serve::ConnLimits::default(),
            workers: 1,
        },
        shutdown,
    )
    .await
}
