//! Noticing policy file changes: a filesystem watcher on the directory (so editors that write
//! a new file and rename it, and ConfigMap volumes that swap their `..data` link, are seen)
//! plus a slow poll as a safety net for filesystems without events.

use std::path::Path;
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;

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
