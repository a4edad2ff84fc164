//! The snapshot: every accepted policy compiled, the routing table over them, a version, and
//! a report for every policy that was not accepted. Immutable once built; the proxy swaps
//! whole snapshots.
//!
//! Building is pure (policies in, snapshot out) so that file mode and the controller resolve
//! conflicts the same way: for the same host and path prefix, the older policy
//! (creationTimestamp, then namespace/name) wins and the other is rejected as Conflicted,
//! naming the winner. One invalid or conflicting policy never affects the others.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::certs::{self, CertTable, Secrets, TlsProblem};
use super::compile::{CompiledPolicy, PolicyId};
use crate::policy::{CorsPolicySpec, FieldError};

/// One policy handed to `Snapshot::build`.
#[derive(Debug, Clone)]
pub struct PolicyInput {
    pub id: PolicyId,
    /// RFC 3339 creation time, when known (files have none): older wins conflicts.
    pub created: Option<String>,
    pub spec: CorsPolicySpec,
    /// Where it came from, for messages: `policies.yaml (document 2)`.
    pub source: Option<String>,
}

/// Why a policy is not serving.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "reason", rename_all = "camelCase")]
pub enum Rejected {
    InvalidSpec {
        errors: Vec<String>,
    },
    Conflicted {
        winner: String,
        host: String,
        path: String,
    },
}

/// Who reads a conflict sentence: each says the same thing, worded for where it appears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConflictAudience {
    /// The losing policy's Accepted condition and its Warning Event (the controller).
    Status,
    /// The admission webhook's warning for the object being applied (it is the newer one).
    Admission,
    /// `corsgate check`: one warning line that names both policies.
    Check,
}

/// The one sentence for [`Rejected::Conflicted`]: `loser` is not served because `winner`
/// (older, or created at the same time and first by namespace/name) holds `host` and `path`.
pub fn conflict_message(
    audience: ConflictAudience,
    loser: &str,
    winner: &str,
    host: &str,
    path: &str,
) -> String {
    let served = format!("host {host} path {path} is already served by {winner}, which is older");
    match audience {
        ConflictAudience::Status => format!(
            "{served} (or, created at the same time, sorts first by namespace/name); this policy is not served until the conflict is removed"
        ),
        ConflictAudience::Admission => {
            format!("{served}; this policy will not serve until the conflict is removed")
        }
        ConflictAudience::Check => format!(
            "policy {loser} conflicts with {winner} on host {host} path {path}; the older policy ({winner}) wins and {loser} will not serve"
        ),
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PolicyReport {
    pub policy: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(flatten)]
    pub rejected: Rejected,
}

/// An accepted policy's routes: every (host, path prefix) pair, with the path table sorted
/// longest prefix first.
#[derive(Debug, Default, Clone)]
pub struct RouteTable {
    exact: RouteMap,
    /// Keyed by the suffix after "*.": `example.com` for `*.example.com`.
    wildcard: RouteMap,
}

/// Host → path table. foldhash, seeded per process, instead of SipHash: one lookup per
/// request (and one per suffix for wildcards) is on the request path (issue 14).
type RouteMap = HashMap<Box<str>, Vec<(Box<str>, usize)>, foldhash::fast::RandomState>;

/// Segment-aware prefix match: "/v1" matches "/v1" and "/v1/x", not "/v10".
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    prefix == "/"
        || (path.starts_with(prefix)
            && (path.len() == prefix.len() || path.as_bytes()[prefix.len()] == b'/'))
}

fn longest(table: &[(Box<str>, usize)], path: &str) -> Option<usize> {
    table
        .iter()
        .find(|(p, _)| prefix_matches(p, path))
        .map(|(_, i)| *i)
}

impl RouteTable {
    fn insert(&mut self, host: &str, prefix: &str, idx: usize) {
        let (map, key) = match host.strip_prefix("*.") {
            Some(suffix) => (&mut self.wildcard, suffix),
            None => (&mut self.exact, host),
        };
        let table = map.entry(key.into()).or_default();
        table.push((prefix.into(), idx));
        table.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
    }

    /// The policy that claimed exactly `host` (a name or a `*.` pattern, as in a spec) and
    /// the normalised `prefix`: a conflict probe, not routing.
    pub fn claimant(&self, host: &str, prefix: &str) -> Option<usize> {
        let (map, key) = match host.strip_prefix("*.") {
            Some(suffix) => (&self.wildcard, suffix),
            None => (&self.exact, host),
        };
        map.get(key)?
            .iter()
            .find(|(p, _)| &**p == prefix)
            .map(|(_, i)| *i)
    }

    /// Finds the policy for a normalised host (lower case, no port, no trailing dot) and a
    /// path: the exact host first, then wildcards from the most specific suffix; within a
    /// host, the longest matching prefix.
    pub fn route(&self, host: &str, path: &str) -> Option<usize> {
        if let Some(i) = self.exact.get(host).and_then(|t| longest(t, path)) {
            return Some(i);
        }
        if self.wildcard.is_empty() {
            return None;
        }
        let mut rest = host;
        while let Some(dot) = rest.find('.') {
            rest = &rest[dot + 1..];
            if let Some(i) = self.wildcard.get(rest).and_then(|t| longest(t, path)) {
                return Some(i);
            }
        }
        None
    }
}

/// What became of one accepted policy's `spec.tls`: served, or why not (ResolvedRefs).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TlsReport {
    pub policy: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub secret: String,
    /// `None`: the certificate serves the policy's hosts.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "display")]
    pub problem: Option<TlsProblem>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

fn display<S: serde::Serializer>(p: &Option<TlsProblem>, s: S) -> Result<S::Ok, S::Error> {
    match p {
        Some(p) => s.serialize_str(&p.to_string()),
        None => s.serialize_none(),
    }
}

/// The compiled configuration the proxy serves.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// First 12 hex digits of a SHA-256 over the accepted policies: equal inputs, equal version.
    pub version: String,
    /// Shared, so a rebuild hands an unchanged policy on without copying it (issue 14).
    pub policies: Vec<Arc<CompiledPolicy>>,
    pub routes: RouteTable,
    /// Policies that were given but do not serve, and why.
    pub rejected: Vec<PolicyReport>,
    /// The certificates of accepted policies with `spec.tls`, by host (SNI).
    pub certs: CertTable,
    /// One report per accepted policy with `spec.tls`, in policy order.
    pub tls: Vec<TlsReport>,
    /// How long validating, compiling and versioning took (parsing excluded): a proxy logs
    /// it with each configuration it installs.
    pub built_in: std::time::Duration,
}

/// The order in which policies claim (host, path) pairs: older first (creationTimestamp;
/// none, as in files, after all), then namespace/name.
pub fn claim_order<'a>(
    created: &'a Option<String>,
    id: &'a PolicyId,
) -> (bool, &'a Option<String>, &'a PolicyId) {
    (created.is_none(), created, id)
}

impl Snapshot {
    /// Builds a snapshot from every policy known, with no Secrets: a policy's `spec.tls`
    /// then reports SecretNotFound. See [`Snapshot::build_with`].
    pub fn build(inputs: Vec<PolicyInput>) -> Snapshot {
        Snapshot::build_with(inputs, &Secrets::default())
    }

    /// Builds a snapshot from every policy known and the Secrets they may name. Never
    /// fails: invalid and conflicting policies are left out and reported in `rejected`; a
    /// policy whose Secret cannot serve still routes (plain HTTP) and is reported in `tls`.
    pub fn build_with(inputs: Vec<PolicyInput>, secrets: &Secrets) -> Snapshot {
        Snapshot::build_reusing(inputs, secrets, None)
    }

    /// [`Snapshot::build_with`], reusing what `previous` compiled: a policy whose id and
    /// spec are unchanged is not validated and compiled again (its compiled origin patterns
    /// are shared, not rebuilt). The result is the same as a fresh build; only the time
    /// differs: at 10,000 policies a reload that changed one compiles one (issue 14).
    pub fn build_reusing(
        mut inputs: Vec<PolicyInput>,
        secrets: &Secrets,
        previous: Option<&Snapshot>,
    ) -> Snapshot {
        let started = std::time::Instant::now();
        let compiled_before: HashMap<&PolicyId, &Arc<CompiledPolicy>> = previous
            .map(|p| p.policies.iter().map(|c| (&c.id, c)).collect())
            .unwrap_or_default();
        // Older first: the order in which policies claim (host, path) pairs.
        inputs.sort_by(|a, b| claim_order(&a.created, &a.id).cmp(&claim_order(&b.created, &b.id)));
        let compiled_all = compile_all(&inputs, &compiled_before);
        let mut snap = Snapshot::default();
        // The second of two inputs with one namespace/name (in claim order) is rejected.
        let duplicate: Vec<bool> = {
            let mut ids = std::collections::HashSet::with_capacity(inputs.len());
            inputs.iter().map(|i| !ids.insert(&i.id)).collect()
        };
        let mut digests: Vec<(PolicyId, [u8; 32])> = Vec::new();
        // Each accepted policy's spec as JSON, in `snap.policies` order: what the version hashes.
        let mut specs_json: Vec<Vec<u8>> = Vec::new();
        for ((input, duplicate), compiled) in inputs.into_iter().zip(duplicate).zip(compiled_all) {
            let report = |rejected| PolicyReport {
                policy: input.id.to_string(),
                source: input.source.clone(),
                rejected,
            };
            if duplicate {
                snap.rejected.push(report(Rejected::InvalidSpec {
                    errors: vec![
                        FieldError::new(
                            "metadata.name",
                            format!("another policy is also named {}", input.id),
                            "give each policy a unique namespace/name",
                        )
                        .to_string(),
                    ],
                }));
                continue;
            }
            let (compiled, json) = match compiled {
                Ok(c) => c,
                Err(errors) => {
                    snap.rejected.push(report(Rejected::InvalidSpec {
                        errors: errors.iter().map(ToString::to_string).collect(),
                    }));
                    continue;
                }
            };
            // The routes so far are the claims so far: a pair another policy holds exactly
            // is a conflict, won by that (older) policy.
            let conflict = compiled.pairs().find_map(|(h, p)| {
                let winner = snap.policies.get(snap.routes.claimant(h, p)?)?;
                Some((h.to_string(), p.to_string(), winner.id.to_string()))
            });
            if let Some((host, path, winner)) = conflict {
                snap.rejected
                    .push(report(Rejected::Conflicted { winner, host, path }));
                continue;
            }
            let idx = snap.policies.len();
            for (h, p) in compiled.pairs() {
                snap.routes.insert(h, p, idx);
            }
            if let Some(tls) = &input.spec.tls {
                let ns = &compiled.id.namespace;
                let checked = if secrets.is_withheld() {
                    Err(TlsProblem::Withheld {
                        namespace: ns.clone(),
                        secret: tls.secret_name.clone(),
                    })
                } else {
                    certs::check(
                        ns,
                        tls,
                        &compiled.hosts,
                        secrets.get(ns, &tls.secret_name),
                        std::time::SystemTime::now(),
                    )
                };
                let (problem, warnings) = match checked {
                    Ok(c) => {
                        for h in &compiled.hosts {
                            snap.certs.insert(h, &c.key);
                        }
                        digests.push((compiled.id.clone(), c.digest));
                        (None, c.warnings)
                    }
                    Err(p) => (Some(p), Vec::new()),
                };
                snap.tls.push(TlsReport {
                    policy: compiled.id.to_string(),
                    source: input.source.clone(),
                    secret: tls.secret_name.clone(),
                    problem,
                    warnings,
                });
            }
            snap.policies.push(compiled);
            specs_json.push(json);
        }
        snap.version = version_of(&snap.policies, &specs_json, &mut digests);
        snap.built_in = started.elapsed();
        snap
    }

    /// What became of `id`'s `spec.tls`, when it has one.
    pub fn tls_report(&self, id: &PolicyId) -> Option<&TlsReport> {
        let id = id.to_string();
        self.tls.iter().find(|r| r.policy == id)
    }

    /// The `spec.tls` problems of accepted policies, with the policy and where it came from.
    pub fn tls_problems(&self) -> impl Iterator<Item = (&TlsReport, &TlsProblem)> {
        self.tls
            .iter()
            .filter_map(|r| r.problem.as_ref().map(|p| (r, p)))
    }

    /// The policy serving `host` (normalised) and `path`.
    pub fn route(&self, host: &str, path: &str) -> Option<(usize, &CompiledPolicy)> {
        let i = self.routes.route(host, path)?;
        self.policies.get(i).map(|p| (i, &**p))
    }
}

/// Compiling more policies than this at once (a start, a mass change) spreads them over
/// threads; a reload that changed a few compiles them on the calling thread.
const PARALLEL_FROM: usize = 512;

/// At most this many compile threads: a start of 10,000 policies is done in well under a
/// second on them, and more would only compete with serving on a busy node.
const MAX_COMPILE_THREADS: usize = 4;

/// What `before` compiled for `input`, when its id and spec are unchanged.
fn reusable<'a>(
    input: &PolicyInput,
    before: &HashMap<&PolicyId, &'a Arc<CompiledPolicy>>,
) -> Option<&'a Arc<CompiledPolicy>> {
    before
        .get(&input.id)
        .copied()
        .filter(|c| c.spec == input.spec)
}

/// `input` compiled, or `reused` (shared, or copied when only its creation time moved).
fn compile_or_reuse(
    input: &PolicyInput,
    reused: Option<&Arc<CompiledPolicy>>,
) -> Result<Arc<CompiledPolicy>, Vec<FieldError>> {
    match reused {
        Some(c) if c.created == input.created => Ok(Arc::clone(c)),
        Some(c) => Ok(Arc::new(CompiledPolicy {
            created: input.created.clone(),
            ..CompiledPolicy::clone(c)
        })),
        None => CompiledPolicy::from_spec(input.id.clone(), &input.spec).map(|c| {
            Arc::new(CompiledPolicy {
                created: input.created.clone(),
                ..c
            })
        }),
    }
}

/// A policy compiled (or reused), with its spec's JSON for the version. The JSON is written
/// where the policy is compiled, so a start of 10,000 policies serialises them on the
/// compile threads rather than on one thread after them (about 1 µs each); it is dropped
/// once the version is computed.
pub(crate) type Compiled = Result<(Arc<CompiledPolicy>, Vec<u8>), Vec<FieldError>>;

/// Each input compiled, or reused from `before` when its spec is unchanged, in input order.
/// `from_spec` is pure, so many are compiled on scoped threads (a thread that cannot be
/// started compiles its share on this one).
fn compile_all(
    inputs: &[PolicyInput],
    before: &HashMap<&PolicyId, &Arc<CompiledPolicy>>,
) -> Vec<Compiled> {
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(MAX_COMPILE_THREADS);
    compile_on(inputs, before, threads)
}

/// [`compile_all`] on at most `threads` threads.
pub(crate) fn compile_on(
    inputs: &[PolicyInput],
    before: &HashMap<&PolicyId, &Arc<CompiledPolicy>>,
    threads: usize,
) -> Vec<Compiled> {
    // Decided once per input: which are handed on, and how many are left to compile.
    let work: Vec<(&PolicyInput, Option<&Arc<CompiledPolicy>>)> =
        inputs.iter().map(|i| (i, reusable(i, before))).collect();
    let to_compile = work.iter().filter(|(_, r)| r.is_none()).count();
    let one = |(input, reused): &(&PolicyInput, Option<&Arc<CompiledPolicy>>)| {
        compile_or_reuse(input, *reused).map(|c| {
            // Serialising our own types cannot fail; a failure would only weaken the
            // version, never break serving.
            let json = serde_json::to_vec(&c.spec).unwrap_or_default();
            (c, json)
        })
    };
    if threads < 2 || to_compile < PARALLEL_FROM {
        return work.iter().map(one).collect();
    }
    let one = &one;
    std::thread::scope(|scope| {
        let chunks: Vec<_> = work
            .chunks(work.len().div_ceil(threads))
            .map(|chunk| {
                let job = move || chunk.iter().map(one).collect::<Vec<_>>();
                std::thread::Builder::new()
                    .name("corsgate-compile".into())
                    .spawn_scoped(scope, job)
                    .map_err(|_| chunk)
            })
            .collect();
        chunks
            .into_iter()
            .flat_map(|c| match c {
                Ok(handle) => handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                Err(chunk) => chunk.iter().map(one).collect(),
            })
            .collect()
    })
}

/// `digests`: each serving certificate's, so a rotated Secret is a new version (nothing is
/// added without certificates: versions of TLS-less snapshots are unchanged).
/// `specs_json[i]` is `policies[i].spec` as JSON.
fn version_of(
    policies: &[Arc<CompiledPolicy>],
    specs_json: &[Vec<u8>],
    digests: &mut [(PolicyId, [u8; 32])],
) -> String {
    let mut sorted: Vec<(&CompiledPolicy, &[u8])> = policies
        .iter()
        .zip(specs_json)
        .map(|(p, json)| (&**p, json.as_slice()))
        .collect();
    sorted.sort_by(|a, b| a.0.id.cmp(&b.0.id));
    let mut h = Sha256::new();
    for (p, json) in sorted {
        // `namespace/name`, as `PolicyId` displays, without formatting a string for it.
        h.update(p.id.namespace.as_bytes());
        h.update(b"/");
        h.update(p.id.name.as_bytes());
        h.update([0]);
        h.update(json);
        h.update([0]);
    }
    digests.sort();
    for (id, d) in digests.iter() {
        h.update(b"tls\0");
        h.update(id.to_string().as_bytes());
        h.update(d);
    }
    let digest = h.finalize();
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}
