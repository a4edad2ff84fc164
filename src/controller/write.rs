//! The controller's writes to the API server: status by server-side apply on the status
//! subresource (field manager `corsgate-controller`), only when it differs from what is
//! there, and Events about the transitions. Nothing else is written: no finalizers (a delete
//! must never wait for the controller), no spec.

use crate::policy::limits::DEFAULT_NAMESPACE;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Resource, ResourceExt};
use tracing::Instrument;

use super::Error;
use super::status::{self, EventSpec};
use crate::policy::{CorsPolicy, CorsPolicyStatus};

/// The field manager of every status write.
pub const FIELD_MANAGER: &str = "corsgate-controller";

/// Applies `desired` to the status of `policy` unless it already says the same; returns
/// whether a patch was sent.
pub async fn write_status(
    client: &kube::Client,
    policy: &CorsPolicy,
    desired: &CorsPolicyStatus,
) -> Result<bool, Error> {
    if status::same(policy.status.as_ref(), desired) {
        return Ok(false);
    }
    let name = policy.name_any();
    let ns = policy
        .namespace()
        .unwrap_or_else(|| DEFAULT_NAMESPACE.into());
    let span = tracing::info_span!("status_write", policy = %format!("{ns}/{name}"));
    let api: Api<CorsPolicy> = Api::namespaced(client.clone(), &ns);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch_status(&name, &params, &Patch::Apply(status::apply_patch(desired)))
        .instrument(span.clone())
        .await
        .map_err(|source| Error::StatusPatch {
            policy: format!("{ns}/{name}"),
            source: Box::new(source),
        })?;
    let _enter = span.enter();
    tracing::info!(
        accepted = desired.conditions.first().map_or("", |c| c.reason.as_str()),
        config_version = desired.config_version.as_deref().unwrap_or(""),
        "status written"
    );
    Ok(true)
}

/// Publishes the Events of one status change.
pub async fn publish_events(
    recorder: &Recorder,
    policy: &CorsPolicy,
    events: &[EventSpec],
) -> Result<(), Error> {
    let reference = policy.object_ref(&());
    for e in events {
        recorder
            .publish(
                &Event {
                    type_: if e.warning {
                        EventType::Warning
                    } else {
                        EventType::Normal
                    },
                    reason: e.reason.clone(),
                    note: Some(e.note.clone()),
                    action: "Reconcile".into(),
                    secondary: None,
                },
                &reference,
            )
            .await
            .map_err(|source| Error::Event {
                policy: policy.name_any(),
                source: Box::new(source),
            })?;
    }
    Ok(())
}
