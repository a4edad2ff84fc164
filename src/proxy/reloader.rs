//! When the policy files are read again: on a file event or poll tick, unless they are the
//! files of the last good load.

use std::sync::Arc;

use super::store::Store;
use crate::config;

/// Reloads on a file event or poll tick, but only when the files are not those of the last
/// good load (names, lengths, modification times and inodes: [`config::load::Fingerprint`]).
/// The poll is a safety net for missed events; reading and parsing 10,000 policies at every
/// tick took a second of CPU beside the traffic (issue 14). A failed load is retried.
#[derive(Default)]
pub struct Reloader {
    last_good: Option<config::load::Fingerprint>,
}

impl Reloader {
    /// Returns whether the files were read.
    pub async fn on_change(&mut self, store: &Arc<Store>, path: &std::path::Path) -> bool {
        let seen = config::load::Fingerprint::of(path);
        if self.last_good.as_ref() == Some(&seen) {
            return false;
        }
        super::reload(store, path).await;
        // `seen` may predate what was read (a write during the settle): then the next
        // tick sees other files and reads again; it never skips a change.
        self.last_good = store.status().reason.is_none().then_some(seen);
        true
    }
}
