//! Noticing policy file changes: a filesystem watcher on the directory (so editors that write
//! a new file and rename it, and ConfigMap volumes that swap their `..data` link, are seen)
//! plus a slow poll as a safety net for filesystems without events; and reading them only
//! once they have settled ([`load_settled`]), so a file caught between truncate and write,
//! or a directory caught mid-swap, is never what gets loaded.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::Snapshot;
use super::load::{Fingerprint, LoadError, load_snapshot_reusing};

/// A running watch. Dropping it stops the watcher.
pub struct Watch {
    _watcher: Option<notify::RecommendedWatcher>,
    rx: mpsc::Receiver<()>,
    poll: tokio::time::Interval,
}

impl Watch {
    /// Waits for the next change (or poll tick), then lets `debounce` pass so a burst of
    /// events (write, rename, chmod) becomes one reload.
    pub async fn changed(&mut self, debounce: Duration) {
        tokio::select! {
            _ = self.rx.recv() => {}
            _ = self.poll.tick() => {}
        }
        tokio::time::sleep(debounce).await;
        while self.rx.try_recv().is_ok() {}
    }
}

/// Loads the policies under `path` once they have settled: no file modified for `quiet`,
/// and the [`Fingerprint`] the same before and after the read (so no write, rename or
/// `..data` swap happened during it). Waits at most `max_wait` for the quiet period, then
/// reads anyway; if the files still change during every read until then, the answer is
/// [`LoadError::Unsettled`].
///
/// What this cannot catch: a writer that pauses longer than `quiet` half-way leaves a
/// prefix that may parse into fewer policies (only an empty one is refused, by the proxy).
/// Writing a new file and renaming it over the old one has no such window.
///
/// `previous` (the snapshot serving, if any): its compiled policies are reused for those
/// whose spec did not change.
pub async fn load_settled(
    path: &Path,
    quiet: Duration,
    max_wait: Duration,
    previous: Option<Arc<impl AsRef<Snapshot> + Send + Sync + 'static>>,
) -> Result<Snapshot, Vec<LoadError>> {
    let deadline = Instant::now() + max_wait;
    loop {
        let before = Fingerprint::of(path);
        let quiet_for = before.quiet_for(SystemTime::now());
        let late = Instant::now() >= deadline;
        if quiet_for < quiet && !late {
            tokio::time::sleep((quiet - quiet_for).min(quiet)).await;
            continue;
        }
        // Parsing and compiling thousands of policies takes a while: off the runtime, so
        // requests keep being served meanwhile (issue 14).
        let owned = path.to_path_buf();
        let prev = previous.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            load_snapshot_reusing(&owned, prev.as_deref().map(AsRef::as_ref))
        })
        .await
        .unwrap_or_else(|e| {
            Err(vec![LoadError::Read {
                path: path.display().to_string(),
                source: std::io::Error::other(e),
            }])
        });
        if Fingerprint::of(path) == before {
            return loaded;
        }
        if late {
            return Err(vec![LoadError::Unsettled {
                path: path.display().to_string(),
            }]);
        }
        tokio::time::sleep(quiet).await;
    }
}

/// Watches `path` (a file or a directory). A watcher that cannot start is logged; the poll
/// still catches every change within `poll`.
pub fn watch(path: &Path, poll: Duration) -> Watch {
    let (tx, rx) = mpsc::channel(1);
    let dir = if path.is_dir() {
        path.to_path_buf()
    } else {
        path.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf()
    };
    let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res
            && !matches!(ev.kind, EventKind::Access(_))
        {
            // Full channel: a reload is already pending, which is all we need.
            let _ = tx.try_send(());
        }
    })
    .and_then(|mut w| w.watch(&dir, RecursiveMode::NonRecursive).map(|()| w));
    let watcher = match watcher {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(error = %e, dir = %dir.display(), "file watcher unavailable; polling only");
            None
        }
    };
    let mut poll = tokio::time::interval(poll);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    poll.reset();
    Watch {
        _watcher: watcher,
        rx,
        poll,
    }
}
