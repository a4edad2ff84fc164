//! Connections that cost the edge without asking anything (issue 13 items 2 and 3): silent
//! ones, idle keep-alive and HTTP/2 ones, more than --max-connections, a low open-file
//! limit, and a client that stops reading a response. The real `corsgate proxy` over
//! loopback; every wait is bounded and generous (a loaded 2-core machine must pass).

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HOST: &str = "api.example.com";

async fn proxy(up: &Upstream, extra: &[&str]) -> Proxy {
    api_proxy(up, extra).await
}

/// Reads until the peer closes (EOF or reset) or `within` passes; returns what was read
/// and how long the close took (`None`: still open).
async fn read_until_closed(s: &mut TcpStream, within: Duration) -> (Vec<u8>, Option<Duration>) {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let left = within.saturating_sub(start.elapsed());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (got, Some(start.elapsed())),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (got, None),
        }
    }
}

async fn metric_value(p: &Proxy, name: &str, labels: &[&str]) -> f64 {
    let (_, m) = p.admin("/metrics").await;
    metric(&m, name, labels)
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_first_byte_timeout() {
    let up = Upstream::start().await;
    let p = proxy(&up, &["--first-byte-timeout-seconds", "1"]).await;
    let mut s = TcpStream::connect(p.addr).await.expect("connect");
    let (got, closed) = read_until_closed(&mut s, Duration::from_secs(10)).await;
    let closed = closed.expect("closed within 10 s");
    assert!(got.is_empty(), "nothing sent: {got:?}");
    assert!(
        closed >= Duration::from_millis(500),
        "the timeout, not at once: {closed:?}"
    );
    let n = metric_value(
        &p,
        "corsgate_connections_closed_total",
        &["first_byte_timeout"],
    )
    .await;
    assert!(n >= 1.0, "counted: {n}");
}

/// A proxy started with `flags` and a keep-alive connection that has had one GET answered:
/// how long the proxy then took to close it, sending nothing more (`None`: open after `within`).
async fn keep_alive_closed_after(flags: &[&str], within: Duration) -> (Proxy, Option<Duration>) {
    let up = Upstream::start().await;
    let p = proxy(&up, flags).await;
    let mut s = TcpStream::connect(p.addr).await.expect("connect");
    s.write_all(format!("GET /x HTTP/1.1\r\nhost: {HOST}\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut buf = [0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("answered")
        .expect("read");
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.ends_with("ok"), "whole response in one read: {head}");
    let (more, closed) = read_until_closed(&mut s, within).await;
    assert!(more.is_empty(), "{more:?}");
    (p, closed)
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let flags = [
        "--idle-timeout-seconds",
        "1",
        "--header-timeout-seconds",
        "60",
    ];
    let (p, closed) = keep_alive_closed_after(&flags, Duration::from_secs(10)).await;
    assert!(
        closed.is_some(),
        "idle keep-alive connection closed within 10 s"
    );
    let n = metric_value(&p, "corsgate_connections_closed_total", &["idle_timeout"]).await;
    assert!(n >= 1.0, "counted: {n}");
}

/// A slowloris: a request head that never ends, one header line every 200 ms. It is cut at
/// the header timeout however steadily its bytes come, with no response, and counted.
#[tokio::test]
async fn a_request_head_trickling_in_is_cut_at_the_header_timeout() {
    let up = Upstream::start().await;
    let p = proxy(
        &up,
        &[
            "--header-timeout-seconds",
            "1",
            "--idle-timeout-seconds",
            "60",
        ],
    )
    .await;
    let s = TcpStream::connect(p.addr).await.expect("connect");
    let (mut rd, mut wr) = s.into_split();
    let start = Instant::now();
    let trickle = tokio::spawn(async move {
        if wr
            .write_all(format!("GET /x HTTP/1.1\r\nhost: {HOST}\r\n").as_bytes())
            .await
            .is_err()
        {
            return;
        }
        // At most 10 s of it.
        for i in 0..50 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if wr
                .write_all(format!("x-{i}: y\r\n").as_bytes())
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(15), rd.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break Some(start.elapsed()),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => break None,
        }
    };
    trickle.abort();
    let closed = closed.expect("closed within 15 s");
    assert!(
        got.is_empty(),
        "no response: {:?}",
        String::from_utf8_lossy(&got)
    );
    assert!(
        closed >= Duration::from_millis(900) && closed < Duration::from_secs(8),
        "at the header timeout (1 s, checked every 250 ms), not at once nor never: {closed:?}"
    );
    let n = metric_value(&p, "corsgate_connections_closed_total", &["header_timeout"]).await;
    assert!(n >= 1.0, "counted: {n}");
}

/// On HTTP/1.1 the header timeout also bounds the wait for a keep-alive connection's next
/// request, when it is shorter than the idle timeout.
#[tokio::test]
async fn a_keep_alive_connection_waits_for_its_next_request_at_most_the_header_timeout() {
    let flags = [
        "--header-timeout-seconds",
        "1",
        "--idle-timeout-seconds",
        "60",
    ];
    let (p, closed) = keep_alive_closed_after(&flags, Duration::from_secs(15)).await;
    let closed = closed.expect("closed within 15 s, long before the idle timeout");
    assert!(closed >= Duration::from_millis(900), "{closed:?}");
    let n = metric_value(&p, "corsgate_connections_closed_total", &["header_timeout"]).await;
    assert!(n >= 1.0, "counted: {n}");
}

/// The HTTP/2 frames in `bytes` as (type, stream id).
fn h2_frames(mut bytes: &[u8]) -> Vec<(u8, u32)> {
    let mut out = Vec::new();
    while bytes.len() >= 9 {
        let len = usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2]);
        let stream = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) & 0x7fff_ffff;
        out.push((bytes[3], stream));
        bytes = &bytes[(9 + len).min(bytes.len())..];
    }
    out
}

#[tokio::test]
async fn an_h2c_connection_without_streams_gets_goaway_after_the_idle_timeout() {
    let up = Upstream::start().await;
    let flags = [
        "--idle-timeout-seconds",
        "1",
        "--h2-keepalive-timeout-seconds",
        "2",
    ];
    let p = proxy(&up, &flags).await;
    let mut s = TcpStream::connect(p.addr).await.expect("connect");
    // Preface and an empty SETTINGS frame: a valid HTTP/2 connection that asks nothing.
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .expect("write");
    let (got, closed) = read_until_closed(&mut s, Duration::from_secs(10)).await;
    assert!(closed.is_some(), "closed within 10 s");
    let frames = h2_frames(&got);
    assert!(
        frames.iter().any(|(t, _)| *t == 0x7),
        "a GOAWAY before the close: {frames:?}"
    );
}

#[tokio::test]
async fn over_max_connections_silent_ones_are_refused_and_counted_then_clients_get_in() {
    let up = Upstream::start().await;
    let p = proxy(
        &up,
        &[
            "--max-connections",
            "4",
            "--first-byte-timeout-seconds",
            "2",
        ],
    )
    .await;
    let mut silent = Vec::new();
    for _ in 0..4 {
        silent.push(TcpStream::connect(p.addr).await.expect("connect"));
    }
    // Let the proxy take the four slots before the rest arrive.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut extra = Vec::new();
    for _ in 0..6 {
        extra.push(TcpStream::connect(p.addr).await.expect("connect"));
    }
    for s in &mut extra {
        let (_, closed) = read_until_closed(s, Duration::from_secs(10)).await;
        assert!(closed.is_some(), "an extra connection is closed");
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if metric_value(&p, "corsgate_connections_refused_total", &[]).await >= 6.0 {
            break;
        }
        assert!(Instant::now() < deadline, "refusals counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Once the first-byte timeout frees the slots, a real client is served.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = try_get(p.addr).await
            && status == 200
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a new client got in; log:\n{}",
            p.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(silent);
}

/// One GET over a fresh connection; `None` when the connection was refused or closed.
async fn try_get(addr: SocketAddr) -> Option<u16> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    s.write_all(format!("GET /x HTTP/1.1\r\nhost: {HOST}\r\nconnection: close\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let (got, _) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    let text = String::from_utf8_lossy(&got);
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    stat_ticks(&stat).expect("utime and stime")
}

#[tokio::test]
async fn out_of_file_descriptors_the_proxy_does_not_spin_and_recovers() {
    let up = Upstream::start().await;
    let yaml = policy("api", "[\"api.example.com\"]", "", &up.url());
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("policies.yaml");
    std::fs::write(&path, yaml).expect("write");
    let flags = [
        "--max-connections",
        "0",
        "--first-byte-timeout-seconds",
        "2",
    ];
    let p = Proxy::start_limited(dir, path, true, &flags, Some(64)).await;
    let mut silent = Vec::new();
    for _ in 0..120 {
        if let Ok(s) = TcpStream::connect(p.addr).await {
            silent.push(s);
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = cpu_ticks(p.pid());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let used = cpu_ticks(p.pid()) - before;
    // 100 ticks a second is one core busy; a spinning accept loop uses them all.
    assert!(
        used < 50,
        "{used} ticks of CPU in one second while out of descriptors"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if try_get(p.addr).await == Some(200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "recovered; log:\n{}",
            p.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(silent);
    let errors = metric_value(&p, "corsgate_connections_accept_errors_total", &[]).await;
    assert!(
        errors >= 1.0,
        "the descriptor shortage was counted: {errors}"
    );
}

/// An upstream that answers one request with an endless (1 GiB, at most 60 s) body and
/// reports when its write fails: the proxy let go of the upstream connection.
async fn endless_upstream() -> (SocketAddr, tokio::sync::oneshot::Receiver<u64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let Ok((mut s, _)) = listener.accept().await else {
            return;
        };
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        const TOTAL: u64 = 1 << 30;
        let header = format!("HTTP/1.1 200 OK\r\ncontent-length: {TOTAL}\r\n\r\n");
        if s.write_all(header.as_bytes()).await.is_err() {
            return;
        }
        let chunk = vec![b'x'; 64 * 1024];
        let (mut sent, start) = (0u64, Instant::now());
        while sent < TOTAL && start.elapsed() < Duration::from_secs(60) {
            match tokio::time::timeout(Duration::from_secs(60), s.write_all(&chunk)).await {
                Ok(Ok(())) => sent += chunk.len() as u64,
                _ => break,
            }
        }
        let _ = tx.send(sent);
    });
    (addr, rx)
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_after_the_send_timeout_and_the_upstream_released() {
    let (up, released) = endless_upstream().await;
    let yaml = policy("api", "[\"api.example.com\"]", "", &format!("http://{up}"));
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("policies.yaml");
    std::fs::write(&path, yaml).expect("write");
    let p = Proxy::start_at_with(dir, path, true, &["--send-timeout-seconds", "1"]).await;
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let mut client = socket.connect(p.addr).await.expect("connect");
    client
        .write_all(format!("GET /big HTTP/1.1\r\nhost: {HOST}\r\n\r\n").as_bytes())
        .await
        .expect("write");
    // The client reads nothing. The proxy must give up on it and on the upstream.
    let sent = tokio::time::timeout(Duration::from_secs(30), released)
        .await
        .expect("the upstream connection was released within 30 s")
        .expect("upstream task");
    assert!(sent < 1 << 30, "the body was cut short ({sent} bytes sent)");
    let (_, closed) = read_until_closed(&mut client, Duration::from_secs(20)).await;
    assert!(closed.is_some(), "the client connection was closed");
    let n = metric_value(&p, "corsgate_connections_closed_total", &["send_timeout"]).await;
    assert!(n >= 1.0, "counted: {n}");
}
