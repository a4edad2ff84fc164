//! Leader election over a coordination.k8s.io/v1 Lease, with the `kube-lease-manager`
//! crate (maintained, built on kube 5, takes and renews the Lease by server-side apply so two
//! replicas cannot both hold it, tolerates clock skew with a grace period, and releases the
//! Lease when we drop the channel at shutdown so a successor need not wait out the term).
//!
//! Only the leader writes status and Events; every replica watches, builds the snapshot and
//! serves the config stream. Without `--leader-election` the single replica always leads.
//!
//! Caveat (documented in docs/controller.md): the crate keeps reporting "leader" while it
//! retries API errors; a replica cut off from the API server may believe it leads, but then
//! its status writes fail too, and the Lease expires for the others after its duration.

use std::time::Duration;

use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::Error;

/// `--lease-*` flags.
#[derive(Debug, Clone)]
pub struct LeaseOptions {
    pub name: String,
    pub namespace: String,
    pub identity: String,
    pub duration: Duration,
    pub grace: Duration,
}

/// The leadership channel and the task that renews the Lease. The task ending means the
/// lease can no longer be tracked: the caller treats that as fatal (a replica that cannot
/// tell whether it leads must not write status).
pub struct Leadership {
    pub is_leader: watch::Receiver<bool>,
    pub task: JoinHandle<Result<(), Error>>,
}

/// Starts election: takes the Lease when free and renews it while held.
pub async fn elect(client: kube::Client, opts: &LeaseOptions) -> Result<Leadership, Error> {
    let to_error = |e: LeaseManagerError| Error::Lease(Box::new(e));
    let manager = LeaseManagerBuilder::new(client, &opts.name)
        .with_namespace(&opts.namespace)
        .with_identity(&opts.identity)
        .with_field_manager(format!("corsgate-controller-lease-{}", opts.identity))
        .with_duration(opts.duration.as_secs().max(2))
        .with_grace(opts.grace.as_secs().max(1))
        .build()
        .await
        .map_err(to_error)?;
    let (is_leader, handle) = manager.watch().await;
    let task = tokio::spawn(async move {
        match handle.await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(to_error(e)),
            Err(e) => Err(Error::TaskDied(format!("lease task: {e}"))),
        }
    });
    Ok(Leadership { is_leader, task })
}

/// A leadership that never changes (`--leader-election=false`, a single replica).
pub fn always(leader: bool) -> (watch::Sender<bool>, watch::Receiver<bool>) {
    watch::channel(leader)
}
