//! `--workers N` (issue 14): one thread per worker, each with its own runtime and its own
//! SO_REUSEPORT socket on the one traffic port. The real `corsgate proxy` over loopback:
//! connections spread over every worker (each worker thread spends CPU), every request is
//! answered, and `--max-connections` holds for the whole process, not per worker.

mod support;

use std::time::{Duration, Instant};

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn proxy(up: &Upstream, extra: &[&str]) -> Proxy {
    api_proxy(up, extra).await
}

/// CPU ticks (user + system) of each thread of `pid` whose name starts with `prefix`.
fn thread_ticks(pid: u32, prefix: &str) -> Vec<u64> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if !comm.trim().starts_with(prefix) {
            continue;
        }
        let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
        out.push(stat_ticks(&stat).expect("utime and stime"));
    }
    out
}

/// Keep-alive GETs on one connection; the statuses.
async fn keep_alive(addr: std::net::SocketAddr, n: usize) -> Vec<u16> {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let mut statuses = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    for _ in 0..n {
        s.write_all(
            b"GET /x HTTP/1.1\r\nhost: api.example.com\r\norigin: https://www.example.com\r\n\r\n",
        )
        .await
        .expect("write");
        // The test upstream's answers are small: one read holds a whole response.
        let got = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("an answer in time")
            .expect("read");
        let text = String::from_utf8_lossy(&buf[..got]);
        statuses.push(
            text.strip_prefix("HTTP/1.1 ")
                .and_then(|t| t.get(..3))
                .and_then(|c| c.parse().ok())
                .unwrap_or(0),
        );
    }
    statuses
}

#[tokio::test]
async fn connections_spread_over_every_worker_and_every_request_is_answered() {
    let up = Upstream::start().await;
    let p = proxy(&up, &["--workers", "2"]).await;
    let before = thread_ticks(p.pid(), "corsgate-worke");
    assert_eq!(before.len(), 2, "two worker threads");
    // Bounded load: 64 connections, 200 requests each.
    let mut tasks = Vec::new();
    for _ in 0..64 {
        tasks.push(tokio::spawn(keep_alive(p.addr, 200)));
    }
    let mut answered = 0;
    for t in tasks {
        let statuses = t.await.expect("task");
        assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
        answered += statuses.len();
    }
    assert_eq!(answered, 64 * 200);
    let after = thread_ticks(p.pid(), "corsgate-worke");
    let spent: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    assert!(
        spent.iter().all(|t| *t > 0),
        "every worker served some of the connections (CPU ticks per worker: {spent:?})"
    );
}

#[tokio::test]
async fn one_worker_serves_on_the_main_runtime() {
    let up = Upstream::start().await;
    let p = proxy(&up, &["--workers", "1"]).await;
    assert!(thread_ticks(p.pid(), "corsgate-worke").is_empty());
    assert!(keep_alive(p.addr, 20).await.iter().all(|s| *s == 200));
}

#[tokio::test]
async fn max_connections_counts_every_worker_together() {
    let up = Upstream::start().await;
    let p = proxy(
        &up,
        &[
            "--workers",
            "4",
            "--max-connections",
            "3",
            "--first-byte-timeout-seconds",
            "30",
        ],
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(p.addr).await.expect("connect"));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // With slots per worker, four workers would take 12; the process takes 3.
    let mut refused = 0;
    for _ in 0..8 {
        let mut s = TcpStream::connect(p.addr).await.expect("connect");
        let _ = s
            .write_all(b"GET /x HTTP/1.1\r\nhost: api.example.com\r\n\r\n")
            .await;
        let mut buf = [0u8; 64];
        let closed = matches!(
            tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await,
            Ok(Ok(0)) | Ok(Err(_))
        );
        refused += usize::from(closed);
    }
    assert_eq!(
        refused, 8,
        "every connection over the limit is closed at once"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, m) = p.admin("/metrics").await;
        if metric(&m, "corsgate_connections_refused_total", &[]) >= 8.0 {
            break;
        }
        assert!(Instant::now() < deadline, "refusals counted: {m}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(held);
}
