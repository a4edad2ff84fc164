//! The CRD: the committed copy equals what `corsgate crd` prints, the schema is structural,
//! and the CEL rules the API server will run agree with `policy::validate` on the same
//! specs (evaluated offline with the `cel` crate, so a rule that does not parse, or that
//! rejects something `corsgate check` accepts, fails here rather than on a cluster).

use corsgate::policy::crd::{cel_rules, check_structural, crd, crd_yaml, node, schema_of};
use corsgate::policy::{CorsPolicySpec, validate};
use serde_json::Value;

#[path = "support/crd_cases.rs"]
mod crd_cases;

const COMMITTED: &str = include_str!("../crds/corspolicy.yaml");

#[test]
fn committed_crd_matches_the_generated_one() {
    let generated = crd_yaml().expect("render");
    assert!(
        generated == COMMITTED,
        "crds/corspolicy.yaml is stale: run `cargo run -- crd > crds/corspolicy.yaml`"
    );
}

#[test]
fn corsgate_crd_prints_the_committed_file() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_corsgate"))
        .arg("crd")
        .output()
        .expect("run corsgate crd");
    assert!(
        out.status.success(),
        "corsgate crd failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), COMMITTED);
}

fn crd_json() -> Value {
    serde_json::to_value(crd()).expect("json")
}

#[test]
fn schema_is_structural_and_described() {
    let v = crd_json();
    let schema = schema_of(&v).expect("schema");
    let problems = check_structural(schema);
    assert!(
        problems.is_empty(),
        "structural schema problems:\n{}",
        problems.join("\n")
    );
    // The checker itself must catch what it claims to.
    let bad: Value = serde_json::json!({"type": "object", "properties": {"a": {"anyOf": [{"type": "string"}], "description": "x",
        "nullable": true}, "b": {"type": "object", "description": "y", "properties": {}, "additionalProperties": false}}});
    let found = check_structural(&bad).join("\n");
    for needle in ["no type", "anyOf", "nullable", "mutually exclusive"] {
        assert!(found.contains(needle), "checker missed {needle}: {found}");
    }
}

#[test]
fn names_columns_and_subresources() {
    let v = crd_json();
    assert_eq!(
        v.pointer("/metadata/name"),
        Some(&Value::from("corspolicies.corsgate.dev"))
    );
    assert_eq!(v.pointer("/spec/scope"), Some(&Value::from("Namespaced")));
    assert_eq!(
        v.pointer("/spec/names/shortNames/0"),
        Some(&Value::from("cors"))
    );
    assert_eq!(
        v.pointer("/spec/versions/0/name"),
        Some(&Value::from("v1alpha1"))
    );
    assert!(v.pointer("/spec/versions/0/subresources/status").is_some());
    let cols: Vec<&str> = v
        .pointer("/spec/versions/0/additionalPrinterColumns")
        .and_then(Value::as_array)
        .expect("columns")
        .iter()
        .filter_map(|c| c.get("name").and_then(Value::as_str))
        .collect();
    assert_eq!(
        cols,
        [
            "Hosts",
            "Accepted",
            "Programmed",
            "Mode",
            "Would-Reject",
            "Age"
        ]
    );
    let root_desc = schema_of(&v)
        .and_then(|s| s.get("description"))
        .and_then(Value::as_str)
        .unwrap_or("");
    assert!(
        !root_desc.contains("Auto-generated"),
        "root description is the derive's placeholder"
    );
    // kubectl explain corspolicy.spec.cors.allowOrigins reads the field's doc comment.
    let spec = schema_of(&v)
        .and_then(|s| s.pointer("/properties/spec"))
        .expect("spec");
    let d = node(spec, "cors.allowOrigins")
        .and_then(|n| n.get("description"))
        .and_then(Value::as_str)
        .unwrap_or("");
    assert!(d.contains("one-label wildcard host"), "{d}");
    // Enums are closed sets.
    let e = node(spec, "cors.preflight")
        .and_then(|n| n.get("enum"))
        .expect("enum");
    assert_eq!(e, &serde_json::json!(["Respond", "Forward", "Passthrough"]));
    for (path, values) in [
        ("mode", serde_json::json!(["Enforce", "Shadow"])),
        (
            "cors.preset",
            serde_json::json!(["SimpleCORS", "CORSWithPreflight"]),
        ),
        (
            "responseHeaders.preset",
            serde_json::json!(["SecurityHeaders"]),
        ),
        (
            "responseHeaders.security.frameOptions.value",
            serde_json::json!(["DENY", "SAMEORIGIN"]),
        ),
        (
            "responseHeaders.security.referrerPolicy.value",
            serde_json::json!([
                "no-referrer",
                "no-referrer-when-downgrade",
                "origin",
                "origin-when-cross-origin",
                "same-origin",
                "strict-origin",
                "strict-origin-when-cross-origin",
                "unsafe-url"
            ]),
        ),
    ] {
        let e = node(spec, path).and_then(|n| n.get("enum"));
        assert_eq!(e, Some(&values), "{path}");
    }
    assert_eq!(
        node(spec, "mode").and_then(|n| n.get("default")),
        Some(&Value::from("Enforce")),
        "the Mode column reads Enforce"
    );
    // A schema default would be stored by the API server and hide a preset's choice.
    for path in ["cors.preflight", "cors.originOverride"] {
        let n = node(spec, path).expect(path);
        assert!(n.get("default").is_none(), "{path} must have no default");
    }
}

#[test]
fn every_cel_rule_is_in_the_crd_and_compiles() {
    let v = crd_json();
    let spec = schema_of(&v)
        .and_then(|s| s.pointer("/properties/spec"))
        .expect("spec");
    for r in cel_rules() {
        let at = node(spec, r.at).unwrap_or_else(|| panic!("no schema node {}", r.at));
        let rules = at
            .get("x-kubernetes-validations")
            .and_then(Value::as_array)
            .expect("validations");
        assert!(
            rules
                .iter()
                .any(|x| x.get("rule").and_then(Value::as_str) == Some(r.rule.as_str())),
            "rule missing at {}: {}",
            r.at,
            r.rule
        );
        cel::Program::compile(&r.rule)
            .unwrap_or_else(|e| panic!("rule at {} does not parse: {e}\n{}", r.at, r.rule));
    }
    // Lists a CEL rule iterates are bounded, or the API server's cost estimator rejects the CRD.
    for path in [
        "hosts",
        "paths",
        "cors.allowOrigins",
        "cors.allowMethods",
        "cors.allowHeaders",
        "cors.exposeHeaders",
        "cors.rules",
        "cors.rules.origins",
    ] {
        let n = node(spec, path).expect(path);
        assert!(n.get("maxItems").is_some(), "{path} has no maxItems");
    }
}

/// The values a rule at `path` applies to: every element on the way through lists; absent
/// fields are not validated (as on the API server).
fn values_at<'a>(v: &'a Value, path: &str) -> Vec<&'a Value> {
    let mut cur = vec![v];
    if path.is_empty() {
        return cur;
    }
    for key in path.split('.') {
        let (key, items) = key.strip_suffix("[]").map_or((key, false), |k| (k, true));
        let mut next = Vec::new();
        for c in cur {
            let parents: Vec<&Value> = match c {
                Value::Array(a) => a.iter().collect(),
                other => vec![other],
            };
            for p in parents {
                if let Some(x) = p.get(key) {
                    match (items, x) {
                        (true, Value::Array(a)) => next.extend(a.iter()),
                        _ => next.push(x),
                    }
                }
            }
        }
        cur = next;
    }
    cur
}

/// Runs every CEL rule against a spec; returns the messages of the rules that fail.
fn cel_failures(spec: &Value) -> Vec<String> {
    let mut failed = Vec::new();
    for r in cel_rules() {
        let program = cel::Program::compile(&r.rule).expect("compiles");
        for value in values_at(spec, r.at) {
            let mut ctx = cel::Context::default();
            ctx.add_variable("self", cel::to_value(value).expect("to cel"))
                .expect("variable");
            match program.execute(&ctx) {
                Ok(cel::Value::Bool(true)) => {}
                Ok(cel::Value::Bool(false)) => failed.push(r.message.clone()),
                other => panic!(
                    "rule at {} did not yield a bool on {value}: {other:?}\n{}",
                    r.at, r.rule
                ),
            }
        }
    }
    failed
}

/// Specs exercising every CEL rule, valid and not. For each, the CEL verdict must equal
/// `validate`'s, and the expected CEL message must be among the failures.
#[test]
fn cel_rules_agree_with_validate() {
    let cases = crd_cases::CEL_CASES;
    for (name, yaml, expect) in cases {
        let spec: Value = serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("{name}: {e}"));
        let typed: CorsPolicySpec =
            serde_json::from_value(spec.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let failures = cel_failures(&spec);
        let validated = validate(&typed);
        assert_eq!(
            failures.is_empty(),
            validated.is_ok(),
            "{name}: CEL and validate disagree\nCEL failures: {failures:?}\nvalidate: {validated:?}"
        );
        match expect {
            None => assert!(
                failures.is_empty(),
                "{name}: unexpected CEL failures {failures:?}"
            ),
            Some(needle) => assert!(
                failures.iter().any(|m| m.contains(needle)),
                "{name}: expected a CEL failure containing {needle:?}, got {failures:?}"
            ),
        }
    }
}
