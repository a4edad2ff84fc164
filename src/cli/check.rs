//! `corsgate check`: validates policy files offline with the same code as the webhook and
//! the controller (`config::load_manifests`, `Snapshot::build_with`), and reports every
//! problem: a `spec.tls` Secret that cannot serve is an error, one that expires soon or is
//! self-signed a warning (`config::certs::check`, as the controller's ResolvedRefs).

use std::fmt::Write as _;
use std::path::PathBuf;

use crate::config::certs::Secrets;
use crate::config::{self, ConflictAudience, Rejected, Snapshot, conflict_message};

/// What `check` found: the lines for stderr, the line for stdout, and whether it failed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// `error: …` and `warning: …` lines.
    pub problems: String,
    /// `ok: …` when nothing failed.
    pub summary: Option<String>,
    pub failed: bool,
}

/// Checks the policies under `paths`. Conflicts are warnings; invalid documents errors.
pub fn check(paths: &[PathBuf]) -> Report {
    let mut report = Report::default();
    let out = &mut report.problems;
    let mut inputs = Vec::new();
    let mut secrets = Secrets::default();
    for p in paths {
        match config::load_manifests(p) {
            Ok(m) => {
                inputs.extend(m.policies);
                for s in m.secrets {
                    secrets.insert(s);
                }
            }
            Err(errors) => {
                report.failed = true;
                for e in errors {
                    let _ = writeln!(out, "error: {e}");
                }
            }
        }
    }
    let snap = Snapshot::build_with(inputs, &secrets);
    for r in &snap.rejected {
        let at = r.source.as_deref().unwrap_or("?");
        match &r.rejected {
            Rejected::InvalidSpec { errors } => {
                report.failed = true;
                for e in errors {
                    let _ = writeln!(out, "error: {at}: policy {}: {e}", r.policy);
                }
            }
            Rejected::Conflicted { winner, host, path } => {
                let why = conflict_message(ConflictAudience::Check, &r.policy, winner, host, path);
                let _ = writeln!(out, "warning: {at}: {why}");
            }
        }
    }
    for t in &snap.tls {
        let at = t.source.as_deref().unwrap_or("?");
        if let Some(p) = &t.problem {
            report.failed = true;
            let _ = writeln!(out, "error: {at}: policy {}: {p}", t.policy);
        }
        for w in &t.warnings {
            let _ = writeln!(out, "warning: {at}: policy {}: {w}", t.policy);
        }
    }
    if !report.failed {
        report.summary = Some(format!(
            "ok: {} policies valid (config version {})",
            snap.policies.len(),
            snap.version
        ));
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_example_checks_clean_and_a_missing_path_fails() {
        let ok = check(&[PathBuf::from("examples/quickstart.yaml")]);
        assert!(!ok.failed, "{}", ok.problems);
        assert!(
            ok.summary
                .as_deref()
                .is_some_and(|s| s.starts_with("ok: 3 policies valid (config version ")),
            "{ok:?}"
        );
        let bad = check(&[PathBuf::from("examples/does-not-exist.yaml")]);
        assert!(bad.failed);
        assert_eq!(bad.summary, None);
        assert!(bad.problems.starts_with("error: "), "{}", bad.problems);
    }
}
