//! Per-core workers (`--workers N`, issue 14): each worker is a thread with its own
//! single-threaded runtime serving its own `SO_REUSEPORT` sockets (`serve::bind_reuseport`),
//! and it keeps its own idle upstream connections (`upstream::set_worker`). A connection and
//! every task its requests spawn stay on the worker that accepted it: no request wakes
//! another core, and nothing per request takes a lock shared between workers (the snapshot
//! is an `ArcSwap` load, counters are atomics, `--max-connections` slots are taken once per
//! connection). One worker serves on the caller's runtime.

use std::future::Future;
use std::net::TcpListener;

use tokio::sync::watch;

use super::upstream;

/// Serves socket `i` of `plain` (and of `tls`) on worker `i` until shutdown; returns when
/// every worker has drained. `serve_worker` serves one worker's sockets on the runtime it is
/// polled on.
pub async fn serve_all<F, Fut>(
    mut plain: Vec<TcpListener>,
    mut tls: Option<Vec<TcpListener>>,
    serve_worker: F,
    shutdown: watch::Receiver<bool>,
) -> Result<(), std::io::Error>
where
    F: Fn(TcpListener, Option<TcpListener>, watch::Receiver<bool>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<(), std::io::Error>>,
{
    let workers = plain.len();
    let mut next = || {
        let p = plain
            .pop()
            .ok_or_else(|| std::io::Error::other("no traffic socket"))?;
        Ok::<_, std::io::Error>((p, tls.as_mut().and_then(Vec::pop)))
    };
    if workers <= 1 {
        let (p, t) = next()?;
        return serve_worker(p, t, shutdown).await;
    }
    let mut threads = Vec::with_capacity(workers);
    for i in 0..workers {
        let (p, t) = next()?;
        let (serve_worker, stop) = (serve_worker.clone(), shutdown.clone());
        threads.push(
            std::thread::Builder::new()
                .name(format!("corsgate-worker-{i}"))
                .spawn(move || -> Result<(), std::io::Error> {
                    upstream::set_worker(i);
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?
                        .block_on(serve_worker(p, t, stop))
                })?,
        );
    }
    // Every worker drains on its own; wait for all of them off this runtime.
    let ended = tokio::task::spawn_blocking(move || {
        threads
            .into_iter()
            .map(|t| {
                t.join()
                    .map_err(|_| std::io::Error::other("a worker panicked"))
            })
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .map_err(std::io::Error::other)??;
    ended.into_iter().collect()
}
