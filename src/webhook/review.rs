//! One AdmissionReview in, one AdmissionReview out — pure, so every denial and warning is
//! tested without a socket. The HTTP layer only adds the body limits and the status codes.
//!
//! - A body that is not an admission.k8s.io/v1 AdmissionReview with a request is a
//!   `ReviewError` (HTTP 400): the API server never sends one, so it is a caller's mistake.
//! - CREATE and UPDATE of a CorsPolicy: denied with every `FieldError` of `policy::validate`
//!   (or the field that does not deserialise), else allowed with `policy::warnings`.
//! - Conflicts, resolved exactly as the controller does, by probing the routing table of
//!   the controller's last snapshot with this object's compiled hosts and paths (only the
//!   object is compiled): a host and path an older policy serves is a warning naming it, or a
//!   denial with `--reject-conflicts`; taking a pair over from a newer policy likewise.
//! - An UPDATE that leaves the spec as it was is allowed (with warnings): a label or an
//!   annotation on an old, invalid object must not be blocked.
//!
//! The review types are our own small structs rather than `kube::core::admission`'s: those
//! require fields the API server always sends but a hand-made request may lack (`resource`,
//! `userInfo`, `kind.version`), so a malformed review would be answered with a less precise
//! field than the one that is wrong, and `AdmissionResponse` serialises an empty `status` on
//! every allowed answer and sets only `message` on a denial, where ours carries the code and
//! `details.causes` (see `Status`). The wire format is the same admission.k8s.io/v1.

use crate::policy::limits::DEFAULT_NAMESPACE;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ReviewError;
use std::collections::HashSet;

use crate::config::{
    CompiledPolicy, ConflictAudience, PolicyId, Snapshot, claim_order, conflict_message,
};
use crate::policy::{CorsPolicySpec, FieldError, GROUP, KIND};

pub const API_VERSION: &str = "admission.k8s.io/v1";
pub const REVIEW_KIND: &str = "AdmissionReview";

/// Kubernetes truncates single warnings above 256 characters and drops them past 4096
/// bytes in all (KEP-1693); we stay under both.
const MAX_WARNING: usize = 256;
const MAX_WARNINGS_BYTES: usize = 4096;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReviewIn {
    api_version: Option<String>,
    kind: Option<String>,
    request: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Request {
    uid: String,
    kind: GroupVersionKind,
    operation: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    object: Option<Value>,
    #[serde(default)]
    old_object: Option<Value>,
}

#[derive(Deserialize)]
struct GroupVersionKind {
    #[serde(default)]
    group: String,
    kind: String,
}

/// The response half of an AdmissionReview.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Response {
    pub uid: String,
    pub allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// metav1.Status of a denial. The API server prefixes `message` with `admission webhook
/// "<name>" denied the request: ` and passes the rest through.
///
/// Why `reason` is empty for an invalid spec rather than `Invalid`: kubectl prints a Status
/// whose reason is `Invalid` as "The request is invalid: <causes>" and drops `message`, so the
/// user never learns which webhook said no (or that it was not the CRD's own schema). With no
/// reason kubectl prints "Error from server: … admission webhook "validate.corsgate.dev"
/// denied the request: <every error, one per line>". The field-level `causes` (with the
/// object's group, kind and name) stay in `details` for tools that read the Status
/// (docs/webhook.md quotes both shapes).
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Status {
    pub code: u16,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Details>,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Details {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    pub group: String,
    pub kind: String,
    pub causes: Vec<Cause>,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Cause {
    pub field: String,
    pub message: String,
    pub reason: String,
}

/// The reviewed object as the webhook sees it.
struct Candidate {
    id: PolicyId,
    created: Option<String>,
    spec: CorsPolicySpec,
}

/// Reviews one AdmissionReview body against the policies already served (the controller's
/// last snapshot). Returns the whole AdmissionReview to send back.
pub fn review(
    body: &[u8],
    existing: &Snapshot,
    reject_conflicts: bool,
) -> Result<Value, ReviewError> {
    let input: ReviewIn = serde_json::from_slice(body).map_err(|e| {
        if e.is_data() {
            ReviewError::Shape(e)
        } else {
            ReviewError::Json(e)
        }
    })?;
    if input.api_version.as_deref() != Some(API_VERSION)
        || input.kind.as_deref() != Some(REVIEW_KIND)
    {
        return Err(ReviewError::NotAReview {
            api_version: input.api_version.unwrap_or_else(|| "<missing>".into()),
            kind: input.kind.unwrap_or_else(|| "<missing>".into()),
        });
    }
    let request = input.request.ok_or(ReviewError::NoRequest)?;
    let request: Request = serde_path_to_error::deserialize(request).map_err(|e| {
        let path = e.path().to_string();
        ReviewError::BadRequest {
            path: if path == "." {
                "request".into()
            } else {
                format!("request.{path}")
            },
            message: e.inner().to_string(),
        }
    })?;
    let response = decide(request, existing, reject_conflicts);
    Ok(serde_json::json!({
        "apiVersion": API_VERSION,
        "kind": REVIEW_KIND,
        "response": response,
    }))
}

fn allow(uid: String, warnings: Vec<String>) -> Response {
    Response {
        uid,
        allowed: true,
        status: None,
        warnings: cap_warnings(warnings),
    }
}

fn deny(
    uid: String,
    name: &str,
    reason: &str,
    code: u16,
    message: String,
    causes: Vec<Cause>,
) -> Response {
    Response {
        uid,
        allowed: false,
        status: Some(Status {
            code,
            reason: reason.into(),
            message,
            details: (!causes.is_empty()).then(|| Details {
                name: name.into(),
                group: GROUP.into(),
                kind: KIND.into(),
                causes,
            }),
        }),
        warnings: Vec::new(),
    }
}

fn decide(req: Request, existing: &Snapshot, reject_conflicts: bool) -> Response {
    let uid = req.uid;
    // The webhook is registered for CorsPolicy CREATE and UPDATE only; anything else that
    // reaches it (a misconfigured registration) is let through rather than blocked.
    if req.kind.group != GROUP || req.kind.kind != KIND {
        return allow(uid, Vec::new());
    }
    if req.operation != "CREATE" && req.operation != "UPDATE" {
        return allow(uid, Vec::new());
    }
    let object = match req.object {
        Some(o) => o,
        None => {
            return deny(
                uid,
                "",
                "BadRequest",
                400,
                format!("the {} request carries no object", req.operation),
                Vec::new(),
            );
        }
    };
    let name = req.name.clone().unwrap_or_default();
    let candidate = match candidate(&object, req.namespace, req.name) {
        Ok(c) => c,
        Err(e) => return invalid(uid, &name, vec![e]),
    };
    let spec_unchanged = req.operation == "UPDATE"
        && req
            .old_object
            .as_ref()
            .and_then(|o| o.get("spec"))
            .is_some_and(|old| object.get("spec") == Some(old));
    // One compile: its errors are the validation, its expanded spec the warnings' input,
    // its (host, path) pairs the conflict probe.
    let compiled = CompiledPolicy::from_spec(candidate.id.clone(), &candidate.spec);
    let compiled = match compiled {
        Ok(c) => Some(CompiledPolicy {
            created: candidate.created.clone(),
            ..c
        }),
        Err(errors) if !spec_unchanged => return invalid(uid, &candidate.id.name, errors),
        Err(_) => None,
    };
    let mut warnings: Vec<String> = match &compiled {
        Some(c) => crate::policy::warnings_expanded(c.expanded()),
        None => crate::policy::warnings(&candidate.spec),
    }
    .iter()
    .map(ToString::to_string)
    .collect();
    let conflicts = compiled.map_or_else(Vec::new, |c| conflicts(&c, existing));
    if reject_conflicts && !conflicts.is_empty() && !spec_unchanged {
        let causes = conflicts
            .iter()
            .map(|c| Cause {
                field: "spec.hosts".into(),
                message: c.clone(),
                reason: "FieldValueDuplicate".into(),
            })
            .collect();
        return deny(
            uid,
            &candidate.id.name,
            "Conflict",
            409,
            format!(
                "{}; fix: use another host or path, or remove the other policy (the controller runs with --reject-conflicts)",
                conflicts.join("; ")
            ),
            causes,
        );
    }
    warnings.extend(conflicts);
    allow(uid, warnings)
}

fn invalid(uid: String, name: &str, errors: Vec<FieldError>) -> Response {
    let causes = errors
        .iter()
        .map(|e| Cause {
            field: e.path.clone(),
            message: format!("{}; fix: {}", e.message, e.fix),
            reason: "FieldValueInvalid".into(),
        })
        .collect();
    let message = errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    // No reason: see `Status` for why not `Invalid`.
    deny(uid, name, "", 422, message, causes)
}

/// The object's id, age and spec; a spec that does not deserialise names its field.
fn candidate(
    object: &Value,
    namespace: Option<String>,
    name: Option<String>,
) -> Result<Candidate, FieldError> {
    let meta = object.get("metadata");
    let text = |k: &str| {
        meta.and_then(|m| m.get(k))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    // On CREATE with generateName the name is not known yet; it cannot conflict by name.
    let name = name
        .filter(|n| !n.is_empty())
        .or_else(|| text("name"))
        .unwrap_or_default();
    let namespace = namespace
        .filter(|n| !n.is_empty())
        .or_else(|| text("namespace"))
        .unwrap_or_else(|| DEFAULT_NAMESPACE.into());
    let Some(spec) = object.get("spec") else {
        return Err(FieldError::new(
            "spec",
            "the object has no spec",
            "add spec with at least hosts and upstream",
        ));
    };
    let spec: CorsPolicySpec = serde_path_to_error::deserialize(spec).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." {
            "spec".to_string()
        } else {
            format!("spec.{path}")
        };
        FieldError::new(
            path,
            e.inner().to_string(),
            "check the field's name and type against `kubectl explain corspolicy.spec`",
        )
    })?;
    Ok(Candidate {
        id: PolicyId::new(namespace, name),
        created: text("creationTimestamp"),
        spec,
    })
}

/// Conflicts of `c` with the policies `existing` serves, resolved as `Snapshot::build`
/// would with `c` in it, by probing its routing table instead of rebuilding it:
/// - `c` loses a pair to a policy older than itself (those are unaffected by `c`, so they
///   serve in the snapshot with `c` exactly as they do now): the first such pair, as the
///   build reports it;
/// - `c` serves and takes pairs from newer policies that serve now: each of them stops
///   serving, reported on its first pair that `c` claims.
///
/// The policy's own earlier version (same id) is never a conflict.
fn conflicts(c: &CompiledPolicy, existing: &Snapshot) -> Vec<String> {
    let me = claim_order(&c.created, &c.id);
    let me_name = c.id.to_string();
    let others = |h: &str, p: &str| {
        existing
            .routes
            .claimant(h, p)
            .and_then(|i| existing.policies.get(i).map(|w| (i, w)))
            .filter(|(_, w)| w.id != c.id)
    };
    for (h, p) in c.pairs() {
        if let Some((_, w)) = others(h, p)
            && claim_order(&w.created, &w.id) < me
        {
            return vec![conflict_message(
                ConflictAudience::Admission,
                &me_name,
                &w.id.to_string(),
                h,
                p,
            )];
        }
    }
    // Serving policies are in claim order: displaced ones are reported oldest first.
    let mut displaced: Vec<usize> = c
        .pairs()
        .filter_map(|(h, p)| others(h, p))
        .map(|(i, _)| i)
        .collect();
    displaced.sort_unstable();
    displaced.dedup();
    let mine: HashSet<(&str, &str)> = c.pairs().collect();
    displaced
        .into_iter()
        .filter_map(|i| existing.policies.get(i))
        .filter_map(|n| {
            let (host, path) = n.pairs().find(|k| mine.contains(k))?;
            Some(format!(
                "host {host} path {path} is served by {}, which is newer: this policy takes it over and {} stops serving",
                n.id, n.id
            ))
        })
        .collect()
}

/// Each warning at most 256 characters, all of them at most 4096 bytes.
fn cap_warnings(warnings: Vec<String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut total = 0;
    let n = warnings.len();
    for (i, mut w) in warnings.into_iter().enumerate() {
        if w.chars().count() > MAX_WARNING {
            w = w.chars().take(MAX_WARNING - 3).collect::<String>() + "...";
        }
        // Keep room for the closing note.
        if total + w.len() > MAX_WARNINGS_BYTES - 80 {
            out.push(format!(
                "{} more warnings; see the policy's status.warnings",
                n - i
            ));
            break;
        }
        total += w.len();
        out.push(w);
    }
    out
}

#[cfg(test)]
#[path = "review_tests.rs"]
mod tests;
