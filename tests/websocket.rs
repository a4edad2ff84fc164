//! WebSockets through the real `corsgate proxy` (issue 13 item 9): a real WebSocket echo
//! upstream on loopback and a real WebSocket client. The handshake is relayed and the
//! tunnel carries frames both ways; the policy's allowed origins guard the handshake
//! (cross-site WebSocket hijacking), unless `websocket.checkOrigin` is false.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use support::*;

const ALLOWED: &str = "https://app.example.test";

/// A WebSocket upstream: greets each client with "welcome", then echoes every message.
struct EchoUpstream {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for EchoUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl EchoUpstream {
    async fn start() -> EchoUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                        return;
                    };
                    if ws.send(Message::text("welcome")).await.is_err() {
                        return;
                    }
                    while let Some(Ok(m)) = ws.next().await {
                        if (m.is_text() || m.is_binary()) && ws.send(m).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        EchoUpstream { addr, task }
    }
}

fn policies(url: &str) -> String {
    let cors = format!("  cors:\n    allowOrigins: [\"{ALLOWED}\"]");
    let open = format!("{cors}\n  websocket: {{checkOrigin: false}}");
    format!(
        "{}---\n{}",
        policy("ws", "[\"ws.example.test\"]", &cors, url),
        policy("open", "[\"open.example.test\"]", &open, url)
    )
}

type Client = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// Opens a WebSocket to `host` through the proxy, with `origin` if given.
async fn connect(proxy: &Proxy, host: &str, origin: Option<&str>) -> Result<Client, WsError> {
    let mut req = format!("ws://{host}/socket")
        .into_client_request()
        .expect("request");
    if let Some(o) = origin {
        req.headers_mut()
            .insert("origin", o.parse().expect("origin value"));
    }
    let tcp = tokio::net::TcpStream::connect(proxy.addr)
        .await
        .expect("connect");
    let (ws, resp) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::client_async(req, tcp),
    )
    .await
    .expect("handshake within 10 s")?;
    assert_eq!(resp.status(), 101);
    Ok(ws)
}

async fn next_text(ws: &mut Client) -> String {
    let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("a message within 10 s")
        .expect("stream open")
        .expect("a frame");
    m.into_text().expect("text").to_string()
}

fn refused_status(r: Result<Client, WsError>) -> u16 {
    match r {
        Err(WsError::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("expected an HTTP answer, got {e}"),
        Ok(_) => panic!("the handshake succeeded"),
    }
}

#[tokio::test]
async fn an_allowed_origin_gets_a_tunnel_that_carries_frames_both_ways() {
    let up = EchoUpstream::start().await;
    let proxy = Proxy::start_with(&policies(&format!("http://{}", up.addr)), &[]).await;
    let mut ws = connect(&proxy, "ws.example.test", Some(ALLOWED))
        .await
        .expect("handshake");
    assert_eq!(next_text(&mut ws).await, "welcome", "upstream to client");
    for text in ["hello", "second message"] {
        ws.send(Message::text(text)).await.expect("send");
        assert_eq!(
            next_text(&mut ws).await,
            text,
            "client to upstream and back"
        );
    }
    ws.send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .expect("send binary");
    let m = ws.next().await.expect("open").expect("frame");
    assert_eq!(m.into_data().as_ref(), [0u8, 1, 2, 255]);
    ws.close(None).await.expect("close");
    let (_, m) = proxy.admin("/metrics").await;
    assert_eq!(
        metric(
            &m,
            "corsgate_proxy_requests_total",
            &["policy=\"test/ws\"", "outcome=\"upgrade\""]
        ),
        1.0,
        "{m}"
    );
}

#[tokio::test]
async fn a_disallowed_origin_is_refused_before_the_upstream_sees_it() {
    let up = EchoUpstream::start().await;
    let proxy = Proxy::start_with(&policies(&format!("http://{}", up.addr)), &[]).await;
    for origin in [
        "https://evil.example",
        "null",
        "https://app.example.test.evil.example",
    ] {
        let r = connect(&proxy, "ws.example.test", Some(origin)).await;
        assert_eq!(refused_status(r), 403, "{origin}");
    }
    let (_, m) = proxy.admin("/metrics").await;
    let labels = ["policy=\"test/ws\"", "outcome=\"origin_rejected\""];
    assert_eq!(metric(&m, "corsgate_proxy_requests_total", &labels), 3.0);
    assert_eq!(
        metric(
            &m,
            "corsgate_proxy_requests_total",
            &["outcome=\"upgrade\""]
        ),
        0.0
    );
}

#[tokio::test]
async fn no_origin_passes_and_check_origin_false_lets_any_origin_in() {
    let up = EchoUpstream::start().await;
    let proxy = Proxy::start_with(&policies(&format!("http://{}", up.addr)), &[]).await;
    // Not a browser (browsers always send Origin on a WebSocket handshake).
    let mut ws = connect(&proxy, "ws.example.test", None)
        .await
        .expect("no Origin passes");
    assert_eq!(next_text(&mut ws).await, "welcome");
    let mut ws = connect(&proxy, "open.example.test", Some("https://evil.example"))
        .await
        .expect("checkOrigin: false lets any origin in");
    assert_eq!(next_text(&mut ws).await, "welcome");
    ws.send(Message::text("ping")).await.expect("send");
    assert_eq!(next_text(&mut ws).await, "ping");
}

#[tokio::test]
async fn a_plain_upstream_that_declines_the_upgrade_answers_as_usual() {
    let up = Upstream::start().await;
    let proxy = Proxy::start_with(&policies(&up.url()), &[]).await;
    let r = connect(&proxy, "ws.example.test", Some(ALLOWED)).await;
    assert_eq!(refused_status(r), 200, "the upstream's own answer, relayed");
    let seen = up.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].headers["upgrade"], "websocket", "Upgrade forwarded");
    assert_eq!(seen[0].headers["connection"], "upgrade");
    assert!(seen[0].headers.contains_key("sec-websocket-key"));
}
