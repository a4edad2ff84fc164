//! The `kubernetes.io/tls` Secrets that policies name in `spec.tls.secretName`: what the
//! controller watches, reads and hands to `Snapshot::build_with`, so that ResolvedRefs, the
//! config version and the certificates proxies serve all come from the same check
//! (`config::certs::check`).
//!
//! What is read, and why (docs/tls.md, "RBAC for Secrets"):
//! - One watch per watched namespace (or one over all), with the field selector
//!   `type=kubernetes.io/tls`: service-account tokens, Helm release records and every other
//!   Secret are never listed into memory. RBAC cannot narrow `list`/`watch` by type or name,
//!   so the Role (or ClusterRole) still grants them on every Secret in scope.
//! - A policy naming a Secret the watch does not hold gets one `get` for that name per
//!   rebuild (at most [`MAX_LOOKUPS`]), only to tell "not found" from "not of type
//!   kubernetes.io/tls"; the data of such a Secret is dropped unread.
//! - Only the Secrets that serve an accepted policy go into the config document, and only
//!   when the stream is mutually authenticated ([`SecretSource::Withheld`] otherwise).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::Api;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::config::Snapshot;
use crate::config::certs::{SECRET_TYPE_TLS, Secrets, TlsProblem, TlsSecret};
use crate::policy::CorsPolicy;

/// The last content of each Secret that served, by (namespace, name).
pub type LastGood = HashMap<(String, String), TlsSecret>;

/// Whether a problem keeps the last good certificate serving: yes when the Secret's content
/// is broken (a bad edit, a renewal with the wrong key); no when it is gone or withheld.
pub fn keeps_last_good(p: &TlsProblem) -> bool {
    !matches!(
        p,
        TlsProblem::SecretNotFound { .. } | TlsProblem::Withheld { .. }
    )
}

/// The Secrets to serve when some in `secrets` cannot serve `snap`'s policies but served
/// before: those replaced by their last good content. None when nothing is replaced.
pub fn with_last_good(
    snap: &Snapshot,
    secrets: &Secrets,
    last_good: &LastGood,
) -> Option<(Secrets, Vec<(String, String)>)> {
    let mut replaced: Vec<(String, String)> = Vec::new();
    for (report, problem) in snap.tls_problems() {
        let Some((ns, _)) = report.policy.split_once('/') else {
            continue;
        };
        let key = (ns.to_string(), report.secret.clone());
        if keeps_last_good(problem) && last_good.contains_key(&key) && !replaced.contains(&key) {
            replaced.push(key);
        }
    }
    if replaced.is_empty() {
        return None;
    }
    let mut out = secrets.clone();
    for key in &replaced {
        if let Some(s) = last_good.get(key) {
            out.insert(s.clone());
        }
    }
    Some((out, replaced))
}

/// What `last_good` should hold after serving `snap` with `served`: the Secrets that serve
/// now, and nothing no policy serves from.
pub fn remember(snap: &Snapshot, served: &Secrets, last_good: &mut LastGood) {
    let mut keep = LastGood::new();
    for r in snap.tls.iter().filter(|r| r.problem.is_none()) {
        if let Some((ns, _)) = r.policy.split_once('/')
            && let Some(s) = served.get(ns, &r.secret)
        {
            keep.insert((ns.to_string(), r.secret.clone()), s.clone());
        }
    }
    *last_good = keep;
}

/// The field selector of the Secret watch.
pub const TLS_FIELD_SELECTOR: &str = "type=kubernetes.io/tls";
/// At most this many `get`s for Secrets the watch does not hold, per rebuild.
pub const MAX_LOOKUPS: usize = 16;

/// Where the controller's Secrets come from.
#[derive(Clone)]
pub enum SecretSource {
    /// The config stream is cleartext: no Secret is read, none delivered; each `spec.tls`
    /// reports CertificatesWithheld.
    Withheld,
    /// Watched `kubernetes.io/tls` Secrets, one store per namespace (or one over all).
    Watched(Vec<Store<Secret>>),
}

/// A Secret object as the certificate check reads it.
pub fn tls_secret_of(s: &Secret) -> TlsSecret {
    let data = |k: &str| {
        s.data
            .as_ref()
            .and_then(|d| d.get(k))
            .map(|b| b.0.clone())
            .unwrap_or_default()
    };
    let secret_type = s.type_.clone().unwrap_or_default();
    let is_tls = secret_type == SECRET_TYPE_TLS;
    TlsSecret {
        namespace: s.metadata.namespace.clone().unwrap_or_default(),
        name: s.metadata.name.clone().unwrap_or_default(),
        // The data of any other type is never kept.
        cert_pem: if is_tls { data("tls.crt") } else { Vec::new() },
        key_pem: if is_tls { data("tls.key") } else { Vec::new() },
        secret_type,
    }
}

/// The (namespace, name) of every Secret a policy names.
pub fn referenced(policies: &[Arc<CorsPolicy>]) -> BTreeSet<(String, String)> {
    policies
        .iter()
        .filter_map(|p| {
            let tls = p.spec.tls.as_ref()?;
            let ns = super::status::id_of(p).namespace;
            Some((ns, tls.secret_name.clone()))
        })
        .collect()
}

/// The referenced Secrets the watch holds, and the names it does not.
pub fn from_stores(
    stores: &[Store<Secret>],
    wanted: &BTreeSet<(String, String)>,
) -> (Secrets, Vec<(String, String)>) {
    let mut found = Secrets::default();
    let mut missing = Vec::new();
    for (ns, name) in wanted {
        let key = ObjectRef::<Secret>::new(name).within(ns);
        match stores.iter().find_map(|s| s.get(&key)) {
            Some(s) => {
                found.insert(tls_secret_of(&s));
            }
            None => missing.push((ns.clone(), name.clone())),
        }
    }
    (found, missing)
}

/// The Secrets for a rebuild: withheld, or the watched ones plus, for names the watch does
/// not hold, what a `get` finds (so a Secret of another type reports InvalidSecretType, not
/// SecretNotFound). A failed `get` leaves the name missing (SecretNotFound).
pub async fn collect(
    client: &kube::Client,
    source: &SecretSource,
    policies: &[Arc<CorsPolicy>],
) -> Secrets {
    let SecretSource::Watched(stores) = source else {
        return Secrets::withheld();
    };
    let (mut found, missing) = from_stores(stores, &referenced(policies));
    for (ns, name) in missing.into_iter().take(MAX_LOOKUPS) {
        let api: Api<Secret> = Api::namespaced(client.clone(), &ns);
        match api.get_opt(&name).await {
            Ok(Some(s)) => {
                found.insert(tls_secret_of(&s));
            }
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(secret = %format!("{ns}/{name}"), error = %e, "cannot read a referenced Secret");
            }
        }
    }
    found
}

/// ResolvedRefs with the policy's Secret: False with the Secret's reason when its
/// certificate cannot serve (after a missing backend, whose reason stays first); when both
/// are fine, the message names the Secret too.
pub fn with_tls(
    resolved: Condition,
    tls: Option<&crate::config::TlsReport>,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    let Some(tls) = tls else {
        return resolved;
    };
    let backend_ok = resolved.status == "True";
    match (&tls.problem, backend_ok) {
        (None, true) => Condition {
            message: super::status::cap(format!(
                "{}; the certificate in secret {} serves its hosts over HTTPS",
                resolved.message, tls.secret
            )),
            ..resolved
        },
        (None, false) => resolved,
        (Some(p), true) => super::status::condition(
            super::status::RESOLVED_REFS,
            false,
            super::status::Reason::Tls(p.reason()),
            format!(
                "{p}; until then these hosts are served over plain HTTP only, and an HTTPS handshake for them gets unrecognized_name"
            ),
            generation,
            now,
        ),
        (Some(p), false) => Condition {
            message: super::status::cap(format!("{}; and {p}", resolved.message)),
            ..resolved
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use std::collections::BTreeMap;

    fn secret(ns: &str, name: &str, type_: &str) -> Secret {
        let mut s = Secret {
            type_: Some(type_.into()),
            data: Some(BTreeMap::from([
                ("tls.crt".to_string(), ByteString(b"CRT".to_vec())),
                ("tls.key".to_string(), ByteString(b"KEY".to_vec())),
            ])),
            ..Secret::default()
        };
        s.metadata.namespace = Some(ns.into());
        s.metadata.name = Some(name.into());
        s
    }

    #[test]
    fn the_data_of_a_secret_of_another_type_is_dropped() {
        let t = tls_secret_of(&secret("a", "x", "kubernetes.io/tls"));
        assert_eq!(
            (t.cert_pem.as_slice(), t.key_pem.as_slice()),
            (&b"CRT"[..], &b"KEY"[..])
        );
        let o = tls_secret_of(&secret("a", "x", "Opaque"));
        assert_eq!(o.secret_type, "Opaque");
        assert!(o.cert_pem.is_empty() && o.key_pem.is_empty());
    }

    #[test]
    fn only_referenced_secrets_are_taken_from_the_store() {
        let (reader, mut writer) = kube::runtime::reflector::store::<Secret>();
        for s in [
            secret("shop", "api-tls", "kubernetes.io/tls"),
            secret("shop", "other-tls", "kubernetes.io/tls"),
        ] {
            writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(s));
        }
        let wanted = BTreeSet::from([
            ("shop".to_string(), "api-tls".to_string()),
            ("shop".to_string(), "gone".to_string()),
        ]);
        let (found, missing) = from_stores(&[reader], &wanted);
        assert!(found.get("shop", "api-tls").is_some());
        assert!(found.get("shop", "other-tls").is_none());
        assert_eq!(missing, vec![("shop".to_string(), "gone".to_string())]);
    }
}
