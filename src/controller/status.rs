//! Status, computed purely: a policy, the snapshot it was built into, the Service cache and
//! the proxies' acknowledgements in; the status it should have out. Then the diff that
//! decides whether anything is written (timestamps ignored, as linkerd's policy-controller
//! does), and the Events a transition deserves.
//!
//! Conditions (Gateway-API style):
//! - Accepted: True/Accepted, or False/InvalidSpec (every validation error) or
//!   False/Conflicted (naming the older policy that holds the host and path).
//! - ResolvedRefs: True/ResolvedRefs, or False/BackendNotFound when `upstream.service` names
//!   a Service or port that does not exist. Such a policy still serves: it keeps its hosts
//!   and paths (no other policy silently takes its traffic) and the edge answers 502 with
//!   CORS headers until the Service appears. The snapshot never depends on Services, so a
//!   Service coming and going does not churn every proxy's configuration.
//! - Programmed: True/Programmed when every connected proxy serves the current version, else
//!   False/Pending (no proxy yet, some still behind, or not accepted so never sent).
//!
//! `warnings` lists valid but risky settings from `policy::warnings`, the texts the
//! admission webhook returns (issue 8 item 4).
//!
//! `lastTransitionTime` moves only when a condition's status changes.
//!
//! `shadow` (Shadow mode only): the stored counts plus what proxies reported since, summed.
//! Counting (re)starts, with `since` = now, when the policy enters Shadow or its generation
//! changes, so the counts always describe the spec as it is. Counts a proxy made under the
//! previous generation and reports after the change land in the new window (at most one
//! report interval's worth).

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use serde_json::{Value, json};

use super::stream::Tally;
use crate::config::shadow::{ShadowCounts, add_sample};
use crate::config::{
    ConflictAudience, PolicyId, PolicyInput, Rejected, Snapshot, conflict_message,
};
use crate::cors::Reason as RejectReason;
use crate::policy::{
    API_VERSION, CorsPolicy, CorsPolicyStatus, KIND, Mode, ShadowReasons, ShadowStatus,
};

pub const ACCEPTED: &str = "Accepted";
pub const RESOLVED_REFS: &str = "ResolvedRefs";
pub const PROGRAMMED: &str = "Programmed";

/// A condition's `reason`, and the reason of the Events that report it. The wire values are
/// the variant names; the tests spell them out as literals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Accepted=True.
    Accepted,
    /// Accepted=False: a validation error.
    InvalidSpec,
    /// Accepted=False: an older policy holds the host and path.
    Conflicted,
    /// Accepted or Programmed not (yet) True without an error.
    Pending,
    /// ResolvedRefs=True.
    ResolvedRefs,
    /// ResolvedRefs=False: the Service or its port does not exist.
    BackendNotFound,
    /// ResolvedRefs=False: the `spec.tls` Secret cannot serve (`TlsProblem::reason`:
    /// SecretNotFound, InvalidSecretType, InvalidCertificate, KeyMismatch, HostNotCovered,
    /// CertificatesWithheld).
    Tls(&'static str),
    /// Programmed=True.
    Programmed,
}

impl Reason {
    /// The value written to `reason`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::Accepted => "Accepted",
            Reason::InvalidSpec => "InvalidSpec",
            Reason::Conflicted => "Conflicted",
            Reason::Pending => "Pending",
            Reason::ResolvedRefs => "ResolvedRefs",
            Reason::BackendNotFound => "BackendNotFound",
            Reason::Tls(r) => r,
            Reason::Programmed => "Programmed",
        }
    }
}

/// Condition messages are capped well below the API's 32768.
const MAX_MESSAGE: usize = 4096;

/// Ports of each Service: `(namespace, name)` → port numbers.
pub type ServiceIndex = HashMap<(String, String), Vec<i32>>;

/// The id of a policy object (a namespaced resource always has a namespace; "default" is
/// only a fallback for objects built by hand).
pub fn id_of(p: &CorsPolicy) -> PolicyId {
    PolicyId::new(
        p.metadata
            .namespace
            .clone()
            .unwrap_or_else(|| crate::policy::limits::DEFAULT_NAMESPACE.into()),
        p.metadata.name.clone().unwrap_or_default(),
    )
}

/// The RFC 3339 text of a timestamp, as `Snapshot::build` orders it.
fn rfc3339(t: &Time) -> Option<String> {
    match serde_json::to_value(t) {
        Ok(Value::String(s)) => Some(s),
        _ => None,
    }
}

/// A policy object as a snapshot input.
pub fn input_of(p: &CorsPolicy) -> PolicyInput {
    PolicyInput {
        id: id_of(p),
        created: p.metadata.creation_timestamp.as_ref().and_then(rfc3339),
        spec: p.spec.clone(),
        source: None,
    }
}

/// What the snapshot says about one policy.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Accepted,
    Rejected(Rejected),
    /// Not in the snapshot at all (it was built before this object was seen).
    Unknown,
}

/// Everything about one policy that depends only on the snapshot (not on proxies, Services
/// or time): computed once per build, read by every status pass until the next build.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    pub verdict: Verdict,
    /// The policy's own config version (`stream::policy_version`), when accepted.
    pub version: Option<String>,
    pub warnings: Vec<String>,
    /// What became of `spec.tls` in this build (a Secret changing moves it without a new
    /// generation, so it is never carried over from an earlier build).
    pub tls: Option<crate::config::TlsReport>,
}

/// The verdicts of a snapshot by policy id, for lookups in O(1).
pub fn verdicts(snap: &Snapshot) -> HashMap<String, Verdict> {
    let mut out: HashMap<String, Verdict> = snap
        .rejected
        .iter()
        .map(|r| (r.policy.clone(), Verdict::Rejected(r.rejected.clone())))
        .collect();
    for p in &snap.policies {
        out.insert(p.id.to_string(), Verdict::Accepted);
    }
    out
}

pub fn verdict(snap: &Snapshot, id: &PolicyId) -> Verdict {
    if snap.policies.iter().any(|p| &p.id == id) {
        return Verdict::Accepted;
    }
    let key = id.to_string();
    snap.rejected
        .iter()
        .find(|r| r.policy == key)
        .map_or(Verdict::Unknown, |r| Verdict::Rejected(r.rejected.clone()))
}

/// The facts of `policy` in `snap`, computed on their own (tests, one-off callers); the
/// reconcile loop computes them once per build for all policies.
pub fn facts(policy: &CorsPolicy, snap: &Snapshot) -> Facts {
    let id = id_of(policy);
    let verdict = verdict(snap, &id);
    let version = (verdict == Verdict::Accepted)
        .then(|| super::stream::policy_version(&id.to_string(), &policy.spec));
    Facts {
        verdict,
        version,
        warnings: warnings_of(policy),
        tls: snap.tls_report(&id).cloned(),
    }
}

pub(super) fn cap(mut s: String) -> String {
    if s.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE - 3;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str("...");
    }
    s
}

pub(super) fn condition(
    type_: &str,
    ok: bool,
    reason: Reason,
    message: String,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    Condition {
        type_: type_.into(),
        status: if ok { "True" } else { "False" }.into(),
        reason: reason.as_str().into(),
        message: cap(message),
        observed_generation: generation,
        last_transition_time: now.clone(),
    }
}

/// The status `policy` should have. `now` is used only for conditions whose status changed;
/// `tally` counts the connected proxies and those serving this policy's configuration.
pub fn desired(
    policy: &CorsPolicy,
    snap: &Snapshot,
    services: &ServiceIndex,
    tally: Tally,
    now: &Time,
) -> CorsPolicyStatus {
    desired_from(policy, &facts(policy, snap), services, tally, now)
}

/// `desired` with the snapshot's facts already computed.
pub fn desired_from(
    policy: &CorsPolicy,
    facts: &Facts,
    services: &ServiceIndex,
    tally: Tally,
    now: &Time,
) -> CorsPolicyStatus {
    let id = id_of(policy);
    let generation = policy.metadata.generation;
    let verdict = facts.verdict.clone();
    let accepted = match &verdict {
        Verdict::Accepted => {
            let paths = if policy.spec.paths.is_empty() {
                "every path".to_string()
            } else {
                policy.spec.paths.join(", ")
            };
            condition(
                ACCEPTED,
                true,
                Reason::Accepted,
                format!("serving hosts {} on {paths}", policy.spec.hosts.join(", ")),
                generation,
                now,
            )
        }
        Verdict::Rejected(Rejected::InvalidSpec { errors }) => condition(
            ACCEPTED,
            false,
            Reason::InvalidSpec,
            format!(
                "the spec is invalid and is not served: {}",
                errors.join("; ")
            ),
            generation,
            now,
        ),
        Verdict::Rejected(Rejected::Conflicted { winner, host, path }) => condition(
            ACCEPTED,
            false,
            Reason::Conflicted,
            conflict_message(
                ConflictAudience::Status,
                &id.to_string(),
                winner,
                host,
                path,
            ),
            generation,
            now,
        ),
        Verdict::Unknown => condition(
            ACCEPTED,
            false,
            Reason::Pending,
            "not yet evaluated".into(),
            generation,
            now,
        ),
    };
    let resolved = match &policy.spec.upstream.service {
        None => condition(
            RESOLVED_REFS,
            true,
            Reason::ResolvedRefs,
            "upstream is a URL".into(),
            generation,
            now,
        ),
        Some(s) => match services.get(&(id.namespace.clone(), s.name.clone())) {
            None => condition(
                RESOLVED_REFS,
                false,
                Reason::BackendNotFound,
                format!(
                    "Service {}/{} does not exist; the edge answers 502 (with CORS headers) for this policy until it does",
                    id.namespace, s.name
                ),
                generation,
                now,
            ),
            Some(ports) if !ports.contains(&s.port) => {
                let list: Vec<String> = ports.iter().map(ToString::to_string).collect();
                condition(
                    RESOLVED_REFS,
                    false,
                    Reason::BackendNotFound,
                    format!(
                        "Service {}/{} has no port {} (it has: {}); the edge answers 502 (with CORS headers) for this policy until it does",
                        id.namespace,
                        s.name,
                        s.port,
                        if list.is_empty() {
                            "none".into()
                        } else {
                            list.join(", ")
                        }
                    ),
                    generation,
                    now,
                )
            }
            Some(_) => condition(
                RESOLVED_REFS,
                true,
                Reason::ResolvedRefs,
                format!("Service {}/{} port {} exists", id.namespace, s.name, s.port),
                generation,
                now,
            ),
        },
    };
    let resolved = super::secrets::with_tls(resolved, facts.tls.as_ref(), generation, now);
    let is_accepted = verdict == Verdict::Accepted;
    let v = facts.version.as_deref().unwrap_or("");
    // No proxy counts in the messages: they would change every policy's status whenever a
    // proxy joins or leaves (issue 11). `/config` on the controller's admin port lists them.
    let programmed = if !is_accepted {
        condition(
            PROGRAMMED,
            false,
            Reason::Pending,
            "not accepted, so not sent to proxies".into(),
            generation,
            now,
        )
    } else if tally.connected == 0 {
        condition(
            PROGRAMMED,
            false,
            Reason::Pending,
            format!("no proxy connected yet; config {v} is ready"),
            generation,
            now,
        )
    } else {
        let ok = tally.current >= tally.connected;
        condition(
            PROGRAMMED,
            ok,
            if ok {
                Reason::Programmed
            } else {
                Reason::Pending
            },
            if ok {
                format!("every connected proxy serves config {v}")
            } else {
                format!(
                    "config {v} is not yet served by every connected proxy (the controller's /config lists each proxy's version)"
                )
            },
            generation,
            now,
        )
    };
    let mut status = CorsPolicyStatus {
        observed_generation: generation,
        conditions: vec![accepted, resolved, programmed],
        config_version: facts.version.clone().filter(|_| is_accepted),
        warnings: facts
            .warnings
            .iter()
            .chain(facts.tls.iter().flat_map(|t| t.warnings.iter()))
            .take(MAX_WARNINGS + 1)
            .map(|w| cap(w.clone()))
            .collect(),
        shadow: None,
        rejections: None,
    };
    keep_transition_times(&mut status, policy.status.as_ref());
    status
}

/// At most this many warnings in status; the rest are summarised in a last entry.
const MAX_WARNINGS: usize = 16;

/// `policy::warnings` (one implementation with the admission webhook), capped in count and
/// length like condition messages.
pub fn warnings_of(policy: &CorsPolicy) -> Vec<String> {
    let all = crate::policy::warnings(&policy.spec);
    let mut out: Vec<String> = all
        .iter()
        .take(MAX_WARNINGS)
        .map(|w| cap(w.to_string()))
        .collect();
    if all.len() > MAX_WARNINGS {
        out.push(format!(
            "{} more warnings not shown",
            all.len() - MAX_WARNINGS
        ));
    }
    out
}

/// `status.shadow` for `policy`: None unless it is in Shadow mode; else what is stored for
/// this generation plus `pending` (what proxies reported since the last write).
///
/// `written` is what this controller last wrote for the policy, with the generation it was
/// for: the cache may not have seen that write yet, and adding to the older stored counts
/// would lose it. Within one generation counts only grow, so the larger of the two is the
/// newer.
pub fn shadow(
    policy: &CorsPolicy,
    written: Option<(Option<i64>, &ShadowStatus)>,
    pending: Option<&ShadowCounts>,
    now: &Time,
) -> Option<ShadowStatus> {
    if policy.spec.mode != Mode::Shadow {
        return None;
    }
    let generation = policy.metadata.generation;
    let stored = policy
        .status
        .as_ref()
        .filter(|s| s.observed_generation == generation)
        .and_then(|s| s.shadow.as_ref());
    let written = written.filter(|(g, _)| *g == generation).map(|(_, s)| s);
    let total = |s: &ShadowStatus| s.would_allow.saturating_add(s.would_reject);
    let base = match (stored, written) {
        (Some(s), Some(w)) if total(s) > total(w) => Some(s),
        (_, Some(w)) => Some(w),
        (s, None) => s,
    };
    let mut out = base.cloned().unwrap_or_else(|| ShadowStatus {
        since: rfc3339(now).unwrap_or_default(),
        ..ShadowStatus::default()
    });
    if let Some(p) = pending {
        let add = |a: &mut i64, b: u64| *a = a.saturating_add(i64::try_from(b).unwrap_or(i64::MAX));
        add(&mut out.would_allow, p.would_allow);
        add(&mut out.would_reject, p.would_reject());
        for reason in RejectReason::ALL {
            add(
                reason_count(&mut out.by_reason, reason),
                p.by_reason[reason.index()],
            );
        }
        for o in &p.sample_rejected_origins {
            add_sample(&mut out.sample_rejected_origins, o);
        }
    }
    Some(out)
}

/// The field of `r` that counts `reason` (exhaustive: a new reason is a compile error here).
pub fn reason_count(r: &mut ShadowReasons, reason: RejectReason) -> &mut i64 {
    match reason {
        RejectReason::Origin => &mut r.origin,
        RejectReason::Method => &mut r.method,
        RejectReason::Header => &mut r.header,
        RejectReason::PrivateNetwork => &mut r.private_network,
    }
}

/// A condition keeps its lastTransitionTime while its status stays the same.
fn keep_transition_times(new: &mut CorsPolicyStatus, old: Option<&CorsPolicyStatus>) {
    let Some(old) = old else { return };
    for c in &mut new.conditions {
        if let Some(o) = old.conditions.iter().find(|o| o.type_ == c.type_)
            && o.status == c.status
        {
            c.last_transition_time = o.last_transition_time.clone();
        }
    }
}

/// Whether two statuses say the same thing, timestamps aside (condition order aside too).
pub fn same(a: Option<&CorsPolicyStatus>, b: &CorsPolicyStatus) -> bool {
    let Some(a) = a else { return false };
    let key = |s: &CorsPolicyStatus| {
        let conditions: BTreeMap<String, (String, String, String, Option<i64>)> = s
            .conditions
            .iter()
            .map(|c| {
                (
                    c.type_.clone(),
                    (
                        c.status.clone(),
                        c.reason.clone(),
                        c.message.clone(),
                        c.observed_generation,
                    ),
                )
            })
            .collect();
        (
            s.observed_generation,
            s.config_version.clone(),
            conditions,
            s.warnings.clone(),
            s.shadow.clone(),
            s.rejections.clone(),
        )
    };
    key(a) == key(b)
}

/// The server-side apply body for the status subresource.
pub fn apply_patch(status: &CorsPolicyStatus) -> Value {
    json!({
        "apiVersion": API_VERSION,
        "kind": KIND,
        "status": status,
    })
}

/// An Event to publish about a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSpec {
    pub warning: bool,
    pub reason: String,
    pub note: String,
}

fn find<'a>(s: Option<&'a CorsPolicyStatus>, t: &str) -> Option<&'a Condition> {
    s.and_then(|s| s.conditions.iter().find(|c| c.type_ == t))
}

/// Events for a status change: a Warning when a policy is rejected (or rejected for a new
/// reason), a Warning when its Service goes missing, a Normal when it is accepted again.
pub fn events(old: Option<&CorsPolicyStatus>, new: &CorsPolicyStatus) -> Vec<EventSpec> {
    let mut out = Vec::new();
    let changed = |t: &str| {
        let (o, n) = (find(old, t), find(Some(new), t));
        match (o, n) {
            (_, None) => None,
            (Some(o), Some(n))
                if o.status == n.status && o.reason == n.reason && o.message == n.message =>
            {
                None
            }
            (o, Some(n)) => Some((o, n)),
        }
    };
    if let Some((o, n)) = changed(ACCEPTED) {
        if n.status == "False" && n.reason != Reason::Pending.as_str() {
            out.push(EventSpec {
                warning: true,
                reason: n.reason.clone(),
                note: n.message.clone(),
            });
        } else if n.status == "True" && o.is_some_and(|o| o.status == "False") {
            out.push(EventSpec {
                warning: false,
                reason: Reason::Accepted.as_str().into(),
                note: n.message.clone(),
            });
        }
    }
    if let Some((_, n)) = changed(RESOLVED_REFS)
        && n.status == "False"
    {
        out.push(EventSpec {
            warning: true,
            reason: n.reason.clone(),
            note: n.message.clone(),
        });
    }
    out
}
