//! Ingress paths as ingress-nginx reads them: `Prefix` and `Exact` as Kubernetes says;
//! `ImplementationSpecific` is a prefix, unless regular expressions are on for the host
//! (`nginx.ingress.kubernetes.io/use-regex: "true"`, or any `rewrite-target`, on any Ingress
//! of that host: the controller then matches every path of the host with `~* "^PATH"`).

use std::collections::BTreeMap;

use super::{Meta, PREFIX, Report, go_bool, prefix};

/// The annotation that turns regular expressions on, if any.
pub(super) fn regex_annotation(meta: &Meta) -> Option<String> {
    if meta
        .annotations
        .get(&format!("{PREFIX}use-regex"))
        .and_then(|v| go_bool(v))
        == Some(true)
    {
        return Some(format!("{PREFIX}use-regex"));
    }
    meta.annotations
        .contains_key(&format!("{PREFIX}rewrite-target"))
        .then(|| format!("{PREFIX}rewrite-target"))
}

/// Host -> "Ingress ns/name's annotation A", for every host of an Ingress that turns regular
/// expressions on: ingress-nginx applies it to all paths of the host, whichever Ingress
/// defines them.
pub(super) fn regex_hosts(objs: &[(String, serde_json::Value)]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (_, v) in objs {
        if v.get("kind").and_then(|k| k.as_str()) != Some("Ingress") {
            continue;
        }
        let Some(meta) = v
            .get("metadata")
            .and_then(|m| serde_json::from_value::<Meta>(m.clone()).ok())
        else {
            continue;
        };
        let Some(annotation) = regex_annotation(&meta) else {
            continue;
        };
        let why = format!("Ingress {}/{}'s {annotation}", meta.namespace(), meta.name);
        let rules = v
            .pointer("/spec/rules")
            .and_then(|r| r.as_array())
            .cloned()
            .unwrap_or_default();
        for r in rules {
            if let Some(h) = r.get("host").and_then(|h| h.as_str()) {
                out.entry(h.to_ascii_lowercase())
                    .or_insert_with(|| why.clone());
            }
        }
    }
    out
}

/// One path as a corsgate prefix (None: every path). `regex`: why regular expressions are
/// on for this path's host, if they are.
pub(super) fn path_of(
    raw: &str,
    path_type: Option<&str>,
    regex: Option<&String>,
    object: &str,
    at: &str,
    report: &mut Report,
) -> Option<String> {
    match path_type.unwrap_or("ImplementationSpecific") {
        "Prefix" => prefix(raw),
        "Exact" => {
            report.warning(object, format!("{at}.pathType"), "path-exact-as-prefix", format!("Exact {raw:?}: corsgate paths are segment-aware prefixes, so the policy also covers {raw}/..."));
            prefix(raw)
        }
        other => {
            let meta = raw.find(|c: char| "()[]{}*+?^$|\\".contains(c));
            match (regex, meta) {
                (Some(why), Some(at_char)) => {
                    let lit = &raw[..at_char];
                    let cut = lit.rfind('/').map_or("/", |i| &lit[..=i]);
                    report.risk(object, format!("{at}.path"), "path-regex", format!("{raw:?} ({other}) is a regular expression to ingress-nginx ({why} turns them on for this host); corsgate matches prefixes only: imported as the prefix {cut:?}, which covers more paths"));
                    prefix(cut)
                }
                (Some(why), None) => {
                    report.warning(object, format!("{at}.path"), "path-regex-prefix", format!("{raw:?} ({other}) is the regular expression ^{raw} to ingress-nginx ({why}), which also matches {raw}-anything; imported as the segment-aware prefix {raw:?}, which does not"));
                    prefix(raw)
                }
                (None, _) => {
                    report.info(object, format!("{at}.pathType"), "path-implementation-specific", format!("{other} {raw:?}: without use-regex (or rewrite-target) on the host, ingress-nginx treats it as a literal prefix; imported as one"));
                    prefix(raw)
                }
            }
        }
    }
}
