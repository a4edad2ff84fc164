//! The servers a browser test needs besides the proxy, both on 127.0.0.1 and plain hyper
//! (none of the proxy's code):
//!
//! - the upstream, which records every request it sees (so a test can prove a preflight
//!   never reached it) and misbehaves on request: `/status/NNN` answers NNN, `/slow/MS`
//!   waits, a path containing `permissive` adds its own `Access-Control-Allow-Origin: *`,
//!   `set-cookie` sets a cookie, `vary` sends `Vary: Accept-Encoding`. Every answer carries
//!   `x-exposed` and `x-hidden` and, as JSON, the method, path and `Cookie` it received;
//! - the page server, which serves the same small page under every host name, so each
//!   `http://NAME.example.test:PORT` is a distinct origin with `probe()` defined in it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// `probe(url, init)`: runs `fetch` and resolves to what the page's JavaScript can see —
/// `{ok: true, status, headers, body}` (only the headers CORS lets it read) or
/// `{ok: false, error}` (the TypeError a blocked request rejects with). `origin` is the
/// calling document's origin (`"null"` in a sandboxed iframe).
pub const PROBE_JS: &str = r#"
async function probe(url, init) {
  try {
    const r = await fetch(url, init || {});
    const headers = {};
    for (const [k, v] of r.headers) headers[k] = v;
    const body = await r.text();
    return { ok: true, status: r.status, headers, body, origin: self.origin };
  } catch (e) {
    return { ok: false, error: e.name + ": " + e.message, origin: self.origin };
  }
}
"#;

/// One request as the upstream saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    /// Names lower-cased, in order.
    pub headers: Vec<(String, String)>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// The recording upstream.
pub struct Upstream {
    pub addr: SocketAddr,
    log: Log,
    task: JoinHandle<()>,
}

impl Upstream {
    pub async fn start() -> Upstream {
        let log: Log = Arc::default();
        let l = log.clone();
        let (addr, task) = serve(move |req| upstream(l.clone(), req)).await;
        Upstream { addr, log, task }
    }

    /// Every request seen so far, oldest first.
    pub fn seen(&self) -> Vec<Seen> {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The requests seen whose path starts with `prefix`.
    pub fn seen_under(&self, prefix: &str) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.path.starts_with(prefix))
            .collect()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn respond(
    status: StatusCode,
    content_type: &str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        content_type.parse().expect("a valid content type"),
    );
    r
}

async fn upstream(log: Log, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let cookie = req
        .headers()
        .get(header::COOKIE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    log.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(Seen {
            method: req.method().to_string(),
            path: path.clone(),
            headers,
        });

    let segment = |name: &str| path.split('/').any(|s| s == name);
    let tail = |prefix: &str| {
        path.split_once(prefix)
            .map(|(_, t)| t.split('/').next().unwrap_or("").to_string())
    };

    if let Some(ms) = tail("/slow/").and_then(|t| t.parse::<u64>().ok()) {
        tokio::time::sleep(Duration::from_millis(ms.min(30_000))).await;
    }
    let status = tail("/status/")
        .and_then(|t| t.parse::<u16>().ok())
        .and_then(|c| StatusCode::from_u16(c).ok())
        .unwrap_or(StatusCode::OK);
    let body = serde_json::json!({
        "upstream": "browser-test upstream",
        "status": status.as_u16(),
        "method": req.method().as_str(),
        "path": path,
        "cookie": cookie,
    });
    let mut r = respond(status, "application/json", body.to_string());
    let h = r.headers_mut();
    h.insert("x-exposed", "exposed-value".parse().expect("static"));
    h.insert("x-hidden", "hidden-value".parse().expect("static"));
    if segment("permissive") {
        // What a framework's "allow everything" CORS middleware sends; the edge must win.
        h.insert("access-control-allow-origin", "*".parse().expect("static"));
        h.insert("access-control-allow-methods", "*".parse().expect("static"));
        h.insert("access-control-allow-headers", "*".parse().expect("static"));
        h.insert(
            "access-control-expose-headers",
            "x-hidden".parse().expect("static"),
        );
    }
    if segment("set-cookie") {
        h.insert(
            header::SET_COOKIE,
            "corsgate_sid=s3cr3t; Path=/; HttpOnly; SameSite=Lax"
                .parse()
                .expect("static"),
        );
    }
    if segment("vary") {
        h.insert(header::VARY, "Accept-Encoding".parse().expect("static"));
    }
    r
}

/// The page server: the same page under every host name.
pub struct Pages {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Pages {
    pub async fn start() -> Pages {
        let (addr, task) = serve(|req| async move { page(&req) }).await;
        Pages { addr, task }
    }

    /// `http://HOST:PORT`, the origin of the page under `host`.
    pub fn origin(&self, host: &str) -> String {
        format!("http://{host}:{}", self.addr.port())
    }
}

impl Drop for Pages {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn page(req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.uri().path() != "/" {
        return respond(StatusCode::NOT_FOUND, "text/plain", "not found\n");
    }
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>corsgate browser test</title>\
         <link rel=\"icon\" href=\"data:,\"></head><body><h1>page on <span id=\"origin\"></span></h1>\
         <script>{PROBE_JS}\ndocument.getElementById(\"origin\").textContent = location.origin;</script></body></html>"
    );
    respond(StatusCode::OK, "text/html; charset=utf-8", html)
}

/// Serves `handler` on a fresh 127.0.0.1 port, HTTP/1.1, until the task is aborted.
async fn serve<F, Fut>(handler: F) -> (SocketAddr, JoinHandle<()>)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local address");
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                // Out of descriptors and the like: back off rather than spin.
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let fut = handler(req);
                    async move { Ok::<_, Infallible>(fut.await) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, task)
}
