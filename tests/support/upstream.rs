//! The recording upstream of the black-box tests: a loopback HTTP server whose paths choose
//! its behaviour, and which remembers every request it saw.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

pub type TestBody = BoxBody<Bytes, std::io::Error>;

/// One request as the upstream saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    /// The request target exactly as sent (origin-form or absolute-form).
    pub target: String,
    pub headers: HeaderMap,
}

/// A loopback upstream that records every request. Paths choose its behaviour:
/// `/status/NNN`, `/slow/MS`, `/cors` (sends its own permissive CORS headers),
/// `/security-headers` (sends its own HSTS, X-Frame-Options and the like), `/vary`
/// (sends `Vary: Accept-Encoding`), `/hop` (sends hop-by-hop headers), `/download/N`
/// (streams N bytes), `/upload` (reads the body, answers its length), `/echo` (answers
/// the body it read); else 200 "ok".
pub struct Upstream {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// Connections accepted so far.
    pub connections: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn full(status: u16, body: impl Into<Bytes>) -> Response<TestBody> {
    let mut r = Response::new(
        Full::new(body.into())
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    r
}

async fn upstream_handler(
    seen: Arc<Mutex<Vec<Seen>>>,
    req: Request<Incoming>,
) -> Result<Response<TestBody>, Infallible> {
    let path = req.uri().path().to_string();
    seen.lock().unwrap().push(Seen {
        method: req.method().clone(),
        path: path.clone(),
        target: req.uri().to_string(),
        headers: req.headers().clone(),
    });
    let mut resp = if let Some(code) = path.strip_prefix("/status/") {
        full(code.parse().unwrap_or(400), format!("status {code}"))
    } else if let Some(ms) = path.strip_prefix("/slow/") {
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
        full(200, "slow ok")
    } else if path == "/cors" {
        let mut r = full(200, "permissive upstream");
        r.headers_mut()
            .insert("access-control-allow-origin", "*".parse().unwrap());
        r.headers_mut()
            .insert("access-control-allow-methods", "*".parse().unwrap());
        r.headers_mut()
            .insert("access-control-expose-headers", "x-secret".parse().unwrap());
        r
    } else if path == "/security-headers" {
        let mut r = full(200, "upstream with its own security headers");
        for (k, v) in [
            ("strict-transport-security", "max-age=60"),
            ("x-content-type-options", "sniff-away"),
            ("x-frame-options", "DENY"),
            ("referrer-policy", "no-referrer"),
            ("x-xss-protection", "0"),
        ] {
            r.headers_mut().insert(k, v.parse().unwrap());
        }
        r
    } else if path == "/vary" {
        let mut r = full(200, "vary");
        r.headers_mut()
            .insert("vary", "Accept-Encoding".parse().unwrap());
        r
    } else if path == "/hop" {
        let mut r = full(200, "hop");
        r.headers_mut()
            .insert("connection", "x-hop-resp".parse().unwrap());
        r.headers_mut().insert("x-hop-resp", "1".parse().unwrap());
        r.headers_mut()
            .insert("keep-alive", "timeout=5".parse().unwrap());
        r
    } else if let Some(n) = path.strip_prefix("/download/") {
        let total: u64 = n.parse().unwrap_or(0);
        let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
        let chunks = total / chunk.len() as u64;
        let stream = futures_stream(chunks, chunk);
        let mut r = Response::new(BodyExt::boxed(StreamBody::new(stream)));
        r.headers_mut().insert(
            "content-length",
            (chunks * 64 * 1024).to_string().parse().unwrap(),
        );
        r
    } else if path == "/upload" {
        let mut body = req.into_body();
        let mut n: u64 = 0;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => n += f.data_ref().map_or(0, |d| d.len() as u64),
                Err(_) => break,
            }
        }
        full(200, n.to_string())
    } else if path == "/echo" {
        match req.into_body().collect().await {
            Ok(b) => full(200, b.to_bytes()),
            Err(e) => full(400, format!("body: {e}")),
        }
    } else {
        full(200, "ok")
    };
    resp.headers_mut()
        .insert("x-request-id", "req-1".parse().unwrap());
    resp.headers_mut()
        .insert("x-internal", "hidden".parse().unwrap());
    Ok(resp)
}

/// A stream of `count` copies of `chunk`, produced lazily (flat memory on this side too).
pub fn futures_stream(
    count: u64,
    chunk: Bytes,
) -> impl futures_core::Stream<Item = Result<Frame<Bytes>, std::io::Error>> + Send {
    struct Chunks {
        left: u64,
        chunk: Bytes,
    }
    impl futures_core::Stream for Chunks {
        type Item = Result<Frame<Bytes>, std::io::Error>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            if self.left == 0 {
                return std::task::Poll::Ready(None);
            }
            self.left -= 1;
            std::task::Poll::Ready(Some(Ok(Frame::data(self.chunk.clone()))))
        }
    }
    Chunks { left: count, chunk }
}

impl Upstream {
    pub async fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (s, n) = (seen.clone(), connections.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let s = s.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| upstream_handler(s.clone(), req));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Upstream {
            addr,
            seen,
            connections,
            task,
        }
    }

    /// Connections the upstream has accepted.
    pub fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn clear(&self) {
        self.seen.lock().unwrap().clear();
    }
}
