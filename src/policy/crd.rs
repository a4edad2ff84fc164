//! The CustomResourceDefinition, generated from the Rust types (`corsgate crd`), plus what
//! the derive cannot express: the API server's copy of the one-object invariants as CEL
//! `x-kubernetes-validations`, and size bounds that keep those rules inside the API
//! server's CEL cost budget.
//!
//! Why post-process instead of attributes: the spec structs are also the file format, so
//! they keep `deny_unknown_fields`; the cluster form only differs in what the API server
//! needs. Each invariant here mirrors a check in `validate.rs` (tests evaluate the rules
//! against the same specs as `validate` and require the same verdict), so `corsgate check`,
//! the webhook and the API server reject the same objects.
//!
//! Kubernetes' structural-schema rules (which `check_structural` verifies offline): every
//! node has a `type`; `properties` and `additionalProperties` never together; no `anyOf`,
//! `oneOf`, `allOf` or `not` that introduce types; `x-kubernetes-preserve-unknown-fields`
//! nowhere; `nullable` is not used (a null field is pruned, so CEL `has()` reads it as
//! unset, which is what serde does with `None`).

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use serde_json::{Map, Value, json};

use super::CorsPolicy;
use super::limits::{self, HSTS_DEFAULT_MAX_AGE, MAX_AGE_SECONDS, PORT, TIMEOUT_SECONDS};

/// Description of the whole object (the derive writes an auto-generated placeholder there).
const ROOT_DESCRIPTION: &str = "CorsPolicy declares which browser origins may call the APIs behind some hosts and paths, \
and how the corsgate edge proxy answers them. The controller validates it, resolves conflicts with other policies \
(the older one wins) and reports Accepted, ResolvedRefs and Programmed conditions in status.";

/// `(bound, maxItems, maxLength of each item)` for every string list, by schema path under
/// `spec`. The bounds exist for the CEL cost estimator; they are far above what a policy
/// needs (documented in docs/controller.md).
const LIST_BOUNDS: &[(&str, i64, i64)] = &[
    ("hosts", 64, 253),
    ("paths", 64, 1024),
    ("cors.allowOrigins", 128, 2048),
    ("cors.allowOriginPatterns", 32, 1024),
    ("cors.allowMethods", 32, 64),
    ("cors.allowHeaders", 64, 256),
    ("cors.exposeHeaders", 64, 256),
    ("cors.rules.origins", 128, 2048),
    ("cors.rules.originPatterns", 32, 1024),
    ("cors.rules.allowMethods", 32, 64),
    ("cors.rules.allowHeaders", 64, 256),
    ("cors.rules.exposeHeaders", 64, 256),
    ("responseHeaders.remove", 64, 256),
];

/// Lists of objects: `(path, maxItems)`.
const OBJECT_LIST_BOUNDS: &[(&str, i64)] = &[("cors.rules", 32), ("responseHeaders.set", 64)];

/// One CEL rule: where it sits (a schema path under `spec`, "" for spec itself), the rule,
/// the message, and the field it blames (`fieldPath`, relative to where it sits).
pub struct CelRule {
    pub at: &'static str,
    pub rule: String,
    pub message: String,
    pub field_path: Option<&'static str>,
}

const BASE_CREDENTIALS: &str = "(has(self.allowCredentials) && self.allowCredentials)";

/// Lists where "*" with credentials is refused: allowMethods and allowHeaders are reflected
/// instead (issue 16), exposeHeaders cannot be.
const STAR_LISTS: [&str; 1] = ["exposeHeaders"];

/// CEL for "the base list `list` holds \"*\"", counting what a preset fills in.
fn base_star(list: &str) -> String {
    if list == "allowHeaders" {
        "((has(self.allowHeaders) && size(self.allowHeaders) > 0) ? ('*' in self.allowHeaders) \
         : (has(self.preset) && self.preset == 'CORSWithPreflight'))"
            .into()
    } else {
        format!("(has(self.{list}) && '*' in self.{list})")
    }
}

fn max_age_message() -> String {
    format!(
        "maxAgeSeconds must be between {} and {}",
        MAX_AGE_SECONDS.start(),
        MAX_AGE_SECONDS.end()
    )
}

/// Every CEL rule of the CRD. Public so that tests evaluate exactly these.
pub fn cel_rules() -> Vec<CelRule> {
    let mut rules = vec![
        CelRule {
            at: "upstream",
            rule: "has(self.service) != has(self.url)".into(),
            message: "exactly one of upstream.service or upstream.url must be set".into(),
            field_path: None,
        },
        CelRule {
            at: "upstream.timeoutSeconds",
            rule: limits::cel_range(&TIMEOUT_SECONDS),
            message: format!(
                "timeoutSeconds must be between {} and {}",
                TIMEOUT_SECONDS.start(),
                TIMEOUT_SECONDS.end()
            ),
            field_path: None,
        },
        CelRule {
            at: "upstream.service.port",
            rule: limits::cel_range(&PORT),
            message: format!(
                "port must be a Service port number ({}-{})",
                PORT.start(),
                PORT.end()
            ),
            field_path: None,
        },
        CelRule {
            at: "hosts",
            rule: "size(self) > 0".into(),
            message: "at least one host is required".into(),
            field_path: None,
        },
        CelRule {
            at: "paths",
            rule: "self.all(p, p.startsWith('/'))".into(),
            message: "every path prefix must start with '/'".into(),
            field_path: None,
        },
        CelRule {
            at: "cors.maxAgeSeconds",
            rule: limits::cel_range(&MAX_AGE_SECONDS),
            message: max_age_message(),
            field_path: None,
        },
        CelRule {
            at: "cors.rules.maxAgeSeconds",
            rule: limits::cel_range(&MAX_AGE_SECONDS),
            message: max_age_message(),
            field_path: None,
        },
        CelRule {
            at: "cors",
            rule: format!("!{BASE_CREDENTIALS} || !has(self.allowOrigins) || !('*' in self.allowOrigins)"),
            message: "allowOrigins cannot contain \"*\" when allowCredentials is true: the edge would have to reflect every origin, letting any website read responses with the user's cookies; list the trusted origins in allowOrigins or allowOriginPatterns".into(),
            field_path: Some(".allowOrigins"),
        },
    ];
    // Presets fill allowOrigins with "*" (when no origin list is set) and, for
    // CORSWithPreflight, allowHeaders with "*" (when it is unset or empty): see preset.rs.
    rules.push(CelRule {
        at: "cors",
        rule: format!(
            "!({BASE_CREDENTIALS} && has(self.preset) && (!has(self.allowOrigins) || size(self.allowOrigins) == 0) \
             && (!has(self.allowOriginPatterns) || size(self.allowOriginPatterns) == 0))"
        ),
        message: "a preset allows every origin (\"*\") unless allowOrigins or allowOriginPatterns is set; with allowCredentials: true, list the trusted origins".into(),
        field_path: Some(".preset"),
    });
    for list in STAR_LISTS {
        rules.push(CelRule {
            at: "cors",
            rule: format!("!{BASE_CREDENTIALS} || !{}", base_star(list)),
            message: format!(
                "{list} cannot contain \"*\" when allowCredentials is true: list the names"
            ),
            field_path: Some(match list {
                "allowMethods" => ".allowMethods",
                "allowHeaders" => ".allowHeaders",
                _ => ".exposeHeaders",
            }),
        });
        // A rule's credentials and lists each come from the rule when it sets them, else
        // from the base: the combination that serves must not pair credentials with "*".
        rules.push(CelRule {
            at: "cors",
            rule: format!(
                "!has(self.rules) || self.rules.all(r, !((has(r.allowCredentials) ? r.allowCredentials : {BASE_CREDENTIALS}) \
                 && (has(r.{list}) ? ('*' in r.{list}) : {})))",
                base_star(list)
            ),
            message: format!(
                "a rule that allows credentials (set on the rule or inherited) cannot use \"*\" in {list} (set on the rule or inherited): list the names"
            ),
            field_path: Some(".rules"),
        });
    }
    const HSTS: &str = "responseHeaders.security.strictTransportSecurity";
    const XSS: &str = "responseHeaders.security.xssProtection";
    rules.extend([
        CelRule {
            at: "responseHeaders.security.strictTransportSecurity.maxAgeSeconds",
            rule: "self >= 0".into(),
            message: "maxAgeSeconds must be 0 or more".into(),
            field_path: None,
        },
        CelRule {
            at: HSTS,
            rule: format!(
                "!(has(self.preload) && self.preload) || ((has(self.includeSubdomains) && self.includeSubdomains) \
                   && (!has(self.maxAgeSeconds) || self.maxAgeSeconds >= {HSTS_DEFAULT_MAX_AGE}))"
            ),
            message: format!(
                "preload requires includeSubdomains: true and maxAgeSeconds of at least {HSTS_DEFAULT_MAX_AGE}"
            ),
            field_path: Some(".preload"),
        },
        CelRule {
            at: "responseHeaders.security.contentSecurityPolicy",
            rule: "size(self.value) > 0".into(),
            message: "contentSecurityPolicy.value must not be empty".into(),
            field_path: Some(".value"),
        },
        CelRule {
            at: XSS,
            rule: "!has(self.protection) || self.protection || !(has(self.modeBlock) && self.modeBlock)".into(),
            message: "modeBlock: true has no effect with protection: false".into(),
            field_path: Some(".modeBlock"),
        },
        CelRule {
            at: XSS,
            rule: "!has(self.reportUri) || !has(self.protection) || self.protection".into(),
            message: "reportUri has no effect with protection: false".into(),
            field_path: Some(".reportUri"),
        },
        CelRule {
            at: XSS,
            rule: "!has(self.reportUri) || (has(self.modeBlock) && !self.modeBlock)".into(),
            message: "reportUri cannot be combined with mode=block: set modeBlock: false".into(),
            field_path: Some(".reportUri"),
        },
        CelRule {
            at: XSS,
            rule: "!has(self.reportUri) || (size(self.reportUri) > 0 && !self.reportUri.contains(';') \
                   && !self.reportUri.contains(',') && !self.reportUri.contains(' '))"
                .into(),
            message: "reportUri must be one URI without spaces, ';' or ','".into(),
            field_path: Some(".reportUri"),
        },
    ]);
    rules.push(CelRule {
        at: "cors.rules[]",
        rule: "has(self.origins) || has(self.originPatterns)".into(),
        message: "a rule needs origins or originPatterns".into(),
        field_path: None,
    });
    rules.push(CelRule {
        at: "cors.rules[]",
        rule: "!has(self.origins) || !('*' in self.origins)".into(),
        message: "a rule's origins cannot contain \"*\": put \"*\" in cors.allowOrigins".into(),
        field_path: Some(".origins"),
    });
    rules
}

/// The CRD: the derive's output with descriptions, CEL rules and bounds added.
pub fn crd() -> CustomResourceDefinition {
    let mut value = serde_json::to_value(CorsPolicy::crd()).unwrap_or(Value::Null);
    decorate(&mut value);
    // `decorate` only adds fields of the CRD schema type, so this cannot fail; if it ever
    // did, the undecorated CRD is still a valid (if less strict) definition.
    serde_json::from_value(value).unwrap_or_else(|_| CorsPolicy::crd())
}

/// The CRD as YAML, with a header saying where it comes from.
pub fn crd_yaml() -> Result<String, serde_saphyr::SerializeError> {
    let body = serde_saphyr::to_string(&crd())?;
    Ok(format!(
        "# Generated by `corsgate crd` from src/policy; do not edit. tests/crd.rs fails when this file is stale.\n{body}"
    ))
}

/// The openAPIV3Schema of the (single) version.
pub fn schema_of(crd: &Value) -> Option<&Value> {
    crd.pointer("/spec/versions/0/schema/openAPIV3Schema")
}

fn decorate(crd: &mut Value) {
    let Some(root) = crd.pointer_mut("/spec/versions/0/schema/openAPIV3Schema") else {
        return;
    };
    if let Some(o) = root.as_object_mut() {
        o.insert("description".into(), json!(ROOT_DESCRIPTION));
    }
    strip_nullable(root);
    // Conditions are a map keyed by type (as metav1.Condition lists are upstream), so other
    // field managers may own their own condition types under server-side apply.
    if let Some(c) = root
        .pointer_mut("/properties/status/properties/conditions")
        .and_then(Value::as_object_mut)
    {
        c.insert("x-kubernetes-list-type".into(), json!("map"));
        c.insert("x-kubernetes-list-map-keys".into(), json!(["type"]));
    }
    let Some(spec) = root.pointer_mut("/properties/spec") else {
        return;
    };
    // Stored explicitly, so the Mode printer column reads Enforce rather than nothing. (No
    // such default for fields a preset fills: a stored default would hide the preset's.)
    if let Some(mode) = node_mut(spec, "mode").and_then(Value::as_object_mut) {
        mode.insert("default".into(), json!("Enforce"));
    }
    for (path, max_items, max_len) in LIST_BOUNDS {
        if let Some(node) = node_mut(spec, path).and_then(Value::as_object_mut) {
            node.insert("maxItems".into(), json!(max_items));
            if let Some(items) = node.get_mut("items").and_then(Value::as_object_mut) {
                items.insert("maxLength".into(), json!(max_len));
            }
        }
    }
    for (path, max_items) in OBJECT_LIST_BOUNDS {
        if let Some(node) = node_mut(spec, path).and_then(Value::as_object_mut) {
            node.insert("maxItems".into(), json!(max_items));
        }
    }
    for (path, max_len) in [
        ("responseHeaders.set.name", 256),
        ("responseHeaders.set.value", 4096),
        ("responseHeaders.security.contentSecurityPolicy.value", 4096),
        ("responseHeaders.security.xssProtection.reportUri", 2048),
        ("upstream.url", 2048),
        ("tls.secretName", 253),
    ] {
        if let Some(node) = node_mut(spec, path).and_then(Value::as_object_mut) {
            node.insert("maxLength".into(), json!(max_len));
        }
    }
    for r in cel_rules() {
        let Some(node) = node_mut(spec, r.at).and_then(Value::as_object_mut) else {
            continue;
        };
        let mut rule = Map::new();
        rule.insert("rule".into(), json!(r.rule));
        rule.insert("message".into(), json!(r.message));
        if let Some(fp) = r.field_path {
            rule.insert("fieldPath".into(), json!(fp));
        }
        let list = node
            .entry("x-kubernetes-validations")
            .or_insert_with(|| json!([]));
        if let Some(a) = list.as_array_mut() {
            a.push(Value::Object(rule));
        }
    }
}

/// The schema node at a dotted path under `spec`, walking `properties` and, for arrays,
/// `items` (so "cors.rules.origins" is the origins list of each rule); a key ending in
/// "[]" stops at the items (`cors.rules[]` is each rule). "" is spec itself.
pub fn node_mut<'a>(mut node: &'a mut Value, path: &str) -> Option<&'a mut Value> {
    if path.is_empty() {
        return Some(node);
    }
    for key in path.split('.') {
        if node.get("type").and_then(Value::as_str) == Some("array") {
            node = node.get_mut("items")?;
        }
        let (key, items) = key.strip_suffix("[]").map_or((key, false), |k| (k, true));
        node = node.get_mut("properties")?.get_mut(key)?;
        if items {
            node = node.get_mut("items")?;
        }
    }
    Some(node)
}

/// Read-only twin of `node_mut`.
pub fn node<'a>(mut node: &'a Value, path: &str) -> Option<&'a Value> {
    if path.is_empty() {
        return Some(node);
    }
    for key in path.split('.') {
        if node.get("type").and_then(Value::as_str) == Some("array") {
            node = node.get("items")?;
        }
        let (key, items) = key.strip_suffix("[]").map_or((key, false), |k| (k, true));
        node = node.get("properties")?.get(key)?;
        if items {
            node = node.get("items")?;
        }
    }
    Some(node)
}

fn strip_nullable(v: &mut Value) {
    match v {
        Value::Object(o) => {
            o.remove("nullable");
            // An optional enum lists `null` among its values; a pruned null never reaches it.
            if let Some(Value::Array(values)) = o.get_mut("enum") {
                values.retain(|v| !v.is_null());
            }
            for (k, child) in o.iter_mut() {
                // `default` and `enum` hold data, not schemas.
                if k != "default" && k != "enum" && k != "example" {
                    strip_nullable(child);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(strip_nullable),
        _ => {}
    }
}

/// Checks the structural-schema rules that can be checked without an API server; returns
/// each violation as `path: problem`.
pub fn check_structural(schema: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(schema, "openAPIV3Schema", &mut out);
    out
}

fn walk(node: &Value, at: &str, out: &mut Vec<String>) {
    let Some(o) = node.as_object() else {
        out.push(format!("{at}: not a schema object"));
        return;
    };
    let ty = o.get("type").and_then(Value::as_str);
    if ty.is_none() {
        out.push(format!(
            "{at}: no type (structural schemas type every node)"
        ));
    }
    for k in [
        "anyOf",
        "oneOf",
        "allOf",
        "not",
        "$ref",
        "definitions",
        "$defs",
    ] {
        if o.contains_key(k) {
            out.push(format!("{at}: {k} is not allowed here"));
        }
    }
    if o.contains_key("x-kubernetes-preserve-unknown-fields") {
        out.push(format!(
            "{at}: x-kubernetes-preserve-unknown-fields is not needed"
        ));
    }
    if o.contains_key("nullable") {
        out.push(format!(
            "{at}: nullable is not used (null fields are pruned)"
        ));
    }
    if o.contains_key("properties") && o.contains_key("additionalProperties") {
        out.push(format!(
            "{at}: properties and additionalProperties are mutually exclusive"
        ));
    }
    if o.get("description")
        .and_then(Value::as_str)
        .is_none_or(|d| d.trim().is_empty())
        && at != "openAPIV3Schema"
        && !at.ends_with("[]")
    {
        out.push(format!(
            "{at}: no description (kubectl explain would be empty)"
        ));
    }
    match ty {
        Some("object") => {
            if let Some(props) = o.get("properties").and_then(Value::as_object) {
                for (k, child) in props {
                    walk(child, &format!("{at}.{k}"), out);
                }
            }
        }
        Some("array") => match o.get("items") {
            Some(items) => walk(items, &format!("{at}[]"), out),
            None => out.push(format!("{at}: an array needs items")),
        },
        _ => {}
    }
}
