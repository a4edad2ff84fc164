//! "Every report line tested": each report key the interop source can emit appears in at
//! least one golden report of its own direction and format (or in the allow-list below, with
//! the test that asserts it). A new `report.info/warning/risk(...)` without a golden fails here.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Keys asserted by a test rather than a golden: (source file under src/interop, key, test
/// that asserts it). Empty today: every key is in a golden.
const ASSERTED_ELSEWHERE: &[(&str, &str, &str)] = &[];

fn files(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, ext, out);
        } else if p.to_string_lossy().ends_with(ext) {
            out.push(p);
        }
    }
}

/// The top-level arguments of the call whose '(' is at `open`, as source text.
fn args(src: &str, open: usize) -> Vec<String> {
    let b = src.as_bytes();
    let (mut depth, mut i, mut start) = (0usize, open, open + 1);
    let mut out = Vec::new();
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'\'' if i + 2 < b.len() && (b[i + 2] == b'\'' || b[i + 1] == b'\\') => {
                i += 1;
                while b[i] != b'\'' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => {
                depth -= 1;
                if depth == 0 {
                    out.push(src[start..i].trim().to_string());
                    return out;
                }
            }
            b',' if depth == 1 => {
                out.push(src[start..i].trim().to_string());
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    panic!("unbalanced call at {open}");
}

/// The string-literal keys of the report calls in `src`: `report.info|warning|risk(o, f, KEY,
/// m)`, `report.push(s, o, f, KEY, m)`, `of_kind(l, v, want, KEY, report)`.
fn keys(src: &str, file: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (call, index) in [
        (".info(", 2),
        (".warning(", 2),
        (".risk(", 2),
        (".push(", 3),
        ("of_kind(", 3),
    ] {
        for (at, _) in src.match_indices(call) {
            if call == ".push(" && !src[..at].ends_with("self") {
                continue;
            }
            if call == "of_kind(" && src[..at].ends_with("fn ") {
                continue; // the definition
            }
            let a = args(src, at + call.len() - 1);
            let Some(k) = a.get(index) else { continue };
            if let Some(lit) = k.strip_prefix('"').and_then(|k| k.strip_suffix('"')) {
                out.insert(lit.to_string());
            } else {
                assert!(
                    ["key", "k"].contains(&k.as_str()),
                    "{file}: a report key that is not a literal: {k}"
                );
            }
        }
    }
    out
}

/// Which goldens test a source file's lines: its format's import or export goldens.
fn goldens_for(src: &str, goldens: &[(String, String)]) -> Vec<String> {
    let export_ext = |f: &str| match f {
        "ingress_nginx" => ".ingress-nginx.yaml.report.txt",
        "gateway_api" => ".gateway-api.yaml.report.txt",
        _ => ".json.report.txt",
    };
    let is_export = |g: &str| {
        [
            ".ingress-nginx.yaml.report.txt",
            ".gateway-api.yaml.report.txt",
            ".json.report.txt",
        ]
        .iter()
        .any(|e| g.ends_with(e))
    };
    let (format, export) = match src.split_once('/') {
        Some((f, file)) => (f, file == "export.rs"),
        None => ("", false),
    };
    goldens
        .iter()
        .filter(|(name, _)| match format {
            "" => true,
            f if export => name.ends_with(export_ext(f)),
            f => name.starts_with(&format!("{}/", f.replace('_', "-"))) && !is_export(name),
        })
        .map(|(_, text)| text.clone())
        .collect()
}

#[test]
fn every_report_key_is_in_a_golden_of_its_format() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src_dir = root.join("src/interop");
    let mut sources = Vec::new();
    files(&src_dir, ".rs", &mut sources);
    let mut goldens = Vec::new();
    let mut golden_files = Vec::new();
    files(
        &root.join("tests/interop"),
        ".report.txt",
        &mut golden_files,
    );
    for g in golden_files {
        let name = g
            .strip_prefix(root.join("tests/interop"))
            .unwrap()
            .to_string_lossy()
            .into_owned();
        goldens.push((name, std::fs::read_to_string(&g).unwrap()));
    }
    let mut missing = Vec::new();
    let mut all = 0;
    for s in &sources {
        let rel = s
            .strip_prefix(&src_dir)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(s).unwrap();
        // Unit tests (`#[cfg(test)]` modules, at the end of a file) emit no report lines.
        let text = text.split("#[cfg(test)]").next().unwrap_or_default();
        let these = goldens_for(&rel, &goldens);
        for k in keys(text, &rel) {
            all += 1;
            let tag = format!("[{k}]\n");
            if these.iter().any(|g| g.contains(&tag))
                || ASSERTED_ELSEWHERE
                    .iter()
                    .any(|(f, a, _)| *f == rel && *a == k)
            {
                continue;
            }
            missing.push(format!("{rel}: {k}"));
        }
    }
    assert!(all > 60, "the scanner found only {all} keys: is it broken?");
    assert!(
        missing.is_empty(),
        "report keys no golden of their format shows (add an input that emits them, or an entry in ASSERTED_ELSEWHERE with the test that asserts them):\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_scanner_reads_multi_line_calls() {
    let src = "report.warning(\n    &object,\n    format!(\"{at}.x(\"),\n    \"a-key\",\n    \"m, (\",\n);\nof_kind(&l, &v, \"Ingress\", \"not-x\", report);\nreport.info(o, f, 'c'.to_string(), m);";
    let got = std::panic::catch_unwind(|| keys(src, "t.rs"));
    assert!(got.is_err(), "a non-literal key is refused");
    let ok = &src[..src.find("report.info").unwrap()];
    assert_eq!(
        keys(ok, "t.rs").into_iter().collect::<Vec<_>>(),
        ["a-key", "not-x"]
    );
}
