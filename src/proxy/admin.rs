//! The proxy's admin answers, served by the one admin router (`serve::Admin`): ready once a
//! configuration is loaded; `/config` shows the live snapshot, its version and the last
//! load's errors.

use std::sync::Arc;

use super::store::Store;
use crate::serve::Admin;

/// The `/config` document.
pub fn config_json(store: &Store) -> serde_json::Value {
    let live = store.load();
    let status = store.status();
    match live {
        Some(l) => serde_json::json!({
            "ready": true,
            "version": l.snapshot.version,
            "loadedAtUnixSeconds": l.loaded_at,
            "policies": l.snapshot.policies.iter().map(|p| p.effective()).collect::<Vec<_>>(),
            "rejected": l.snapshot.rejected,
            "tls": l.snapshot.tls,
            "lastLoad": status,
        }),
        None => serde_json::json!({
            "ready": false,
            "version": null,
            "policies": [],
            "rejected": [],
            "lastLoad": status,
        }),
    }
}

/// The admin router over `store`.
pub fn admin(store: &Arc<Store>) -> Admin {
    let (ready, metrics, config) = (store.clone(), store.clone(), store.clone());
    Admin {
        ready: Box::new(move || {
            ready
                .version()
                .ok_or("no configuration loaded yet (see /config for load errors)")
        }),
        metrics: Box::new(move || metrics.metrics.encode()),
        config: Box::new(move || config_json(&config)),
    }
}
