//! The difference/risk report of `corsgate import` and `corsgate export`: one line per
//! semantic difference between the source and what corsgate (or the target) does, each naming
//! the source object and field.

use std::fmt;

/// How much a difference matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The behaviour is the same for browsers, or only stricter where the spec says so.
    Info,
    /// Browsers see a different answer in some case; read the line before enforcing.
    Warning,
    /// The source was unsafe or the mapping drops something that matters; act on it.
    Risk,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Risk => "risk",
        })
    }
}

/// One difference. `key` is a stable identifier of the kind of difference (tests and docs
/// refer to it, so its wording can change without breaking them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub severity: Severity,
    /// The source object: `Ingress shop/storefront`, `HTTPRoute shop/api`, or
    /// `ResponseHeadersPolicy my-policy (Id)`; for export, `CorsPolicy ns/name`.
    pub object: String,
    /// The field in that object, e.g. `metadata.annotations[nginx.ingress.kubernetes.io/cors-max-age]`.
    pub field: String,
    pub key: &'static str,
    /// What the source does, and what corsgate (or the target) does instead.
    pub message: String,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}: {}: {} [{}]",
            self.severity, self.object, self.field, self.message, self.key
        )
    }
}

/// Every difference found, in the order found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub lines: Vec<Difference>,
}

impl Report {
    pub fn push(
        &mut self,
        severity: Severity,
        object: &str,
        field: impl Into<String>,
        key: &'static str,
        message: impl Into<String>,
    ) {
        self.lines.push(Difference {
            severity,
            object: object.to_string(),
            field: field.into(),
            key,
            message: message.into(),
        });
    }

    pub fn info(&mut self, o: &str, f: impl Into<String>, k: &'static str, m: impl Into<String>) {
        self.push(Severity::Info, o, f, k, m);
    }

    pub fn warning(
        &mut self,
        o: &str,
        f: impl Into<String>,
        k: &'static str,
        m: impl Into<String>,
    ) {
        self.push(Severity::Warning, o, f, k, m);
    }

    pub fn risk(&mut self, o: &str, f: impl Into<String>, k: &'static str, m: impl Into<String>) {
        self.push(Severity::Risk, o, f, k, m);
    }

    /// The report as printed on stderr: one line per difference, then a summary.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for l in &self.lines {
            out.push_str(&l.to_string());
            out.push('\n');
        }
        let count = |s| self.lines.iter().filter(|l| l.severity == s).count();
        let n = self.lines.len();
        out.push_str(&format!(
            "{n} {}: {} risk, {} warning, {} info\n",
            if n == 1 { "difference" } else { "differences" },
            count(Severity::Risk),
            count(Severity::Warning),
            count(Severity::Info)
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_counts_in_the_singular_and_plural() {
        let mut r = Report::default();
        assert!(r.render().starts_with("0 differences: "));
        r.info("Ingress a/b", "spec", "k", "m");
        assert_eq!(
            r.render(),
            "info: Ingress a/b: spec: m [k]\n1 difference: 0 risk, 0 warning, 1 info\n"
        );
        r.risk("Ingress a/b", "spec", "k", "m");
        assert!(
            r.render()
                .ends_with("2 differences: 1 risk, 0 warning, 1 info\n")
        );
    }
}
