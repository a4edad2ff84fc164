//! CloudFront response headers policies (`aws cloudfront get-response-headers-policy` JSON)
//! both ways, and the managed policies by name, which map to corsgate's presets
//! (`policy::preset`).
//!
//! An RHP holds no hosts, paths or origin server (a cache behaviour attaches it), so the
//! import takes `--host` and `--upstream`.

use crate::policy::limits::DEFAULT_NAMESPACE;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{ImportOptions, Imported, Input, InteropError, Report, max_age, object_name};
use crate::policy::{
    ContentSecurityPolicy, ContentTypeOptions, CorsPolicySpec, CorsPreset, CorsSpec, FrameOption,
    FrameOptions, HeaderPair, Mode, ReferrerPolicy, ReferrerPolicyHeader, ResponseHeaders,
    ResponseHeadersPreset, SecurityHeaders, StrictTransportSecurity, Upstream, XssProtection,
};

mod export;
pub use export::export;

/// The managed policies: name (as AWS lists it, without "Managed-"), and the presets.
pub const MANAGED: [(&str, Option<CorsPreset>, bool); 5] = [
    ("SimpleCORS", Some(CorsPreset::SimpleCors), false),
    (
        "CORS-With-Preflight",
        Some(CorsPreset::CorsWithPreflight),
        false,
    ),
    ("SecurityHeadersPolicy", None, true),
    (
        "CORS-and-SecurityHeadersPolicy",
        Some(CorsPreset::SimpleCors),
        true,
    ),
    (
        "CORS-with-preflight-and-SecurityHeadersPolicy",
        Some(CorsPreset::CorsWithPreflight),
        true,
    ),
];

/// The managed policies' IDs, as AWS documents them ("Use managed response headers
/// policies", CloudFront Developer Guide): what CloudFormation, the CLI and the API take.
pub const MANAGED_IDS: [(&str, &str); 5] = [
    ("SimpleCORS", "60669652-455b-4ae9-85a4-c4c02393f86c"),
    (
        "CORS-With-Preflight",
        "5cc3b908-e619-4b99-88e5-2cf7f45965bd",
    ),
    (
        "SecurityHeadersPolicy",
        "67f7725c-6f97-4210-82d7-5512b31e9d03",
    ),
    (
        "CORS-and-SecurityHeadersPolicy",
        "e61eb60c-9c35-4d20-a928-2b84e02af89c",
    ),
    (
        "CORS-with-preflight-and-SecurityHeadersPolicy",
        "eaab4381-ed33-4a86-88ca-d9558dc6cd63",
    ),
];

fn managed(name: &str) -> Option<(Option<CorsPreset>, bool)> {
    let n = managed_name(name)?;
    MANAGED
        .iter()
        .find(|(m, _, _)| *m == n)
        .map(|(_, c, s)| (*c, *s))
}

/// Whether `s` names a managed policy (`Managed-SimpleCORS`, `SimpleCORS` or its ID): what
/// `corsgate import cloudfront` takes in place of a file.
pub fn is_managed_reference(s: &str) -> bool {
    managed_name(s.trim()).is_some()
}

#[derive(Deserialize, Serialize, Debug, Clone)]
#[serde(rename_all = "PascalCase", bound(deserialize = "T: Deserialize<'de>"))]
struct Items<T> {
    #[serde(default)]
    quantity: i64,
    #[serde(default)]
    items: Vec<T>,
}

impl<T> Default for Items<T> {
    fn default() -> Items<T> {
        Items {
            quantity: 0,
            items: Vec::new(),
        }
    }
}

impl<T: Clone> Items<T> {
    fn of(items: Vec<T>) -> Items<T> {
        Items {
            quantity: items.len() as i64,
            items,
        }
    }
}

#[derive(Deserialize, Serialize, Debug, Clone)]
#[serde(rename_all = "PascalCase")]
struct Cors {
    access_control_allow_origins: Items<String>,
    #[serde(default)]
    access_control_allow_headers: Items<String>,
    #[serde(default)]
    access_control_allow_methods: Items<String>,
    #[serde(default)]
    access_control_allow_credentials: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    access_control_expose_headers: Option<Items<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    access_control_max_age_sec: Option<i64>,
    #[serde(default)]
    origin_override: bool,
}

#[derive(Deserialize, Serialize, Default, Debug, Clone)]
#[serde(rename_all = "PascalCase")]
struct Security {
    #[serde(
        default,
        rename = "XSSProtection",
        skip_serializing_if = "Option::is_none"
    )]
    xss_protection: Option<Xss>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    frame_options: Option<Frame>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    referrer_policy: Option<Referrer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    content_security_policy: Option<Csp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    content_type_options: Option<Cto>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    strict_transport_security: Option<Hsts>,
}

#[derive(Deserialize, Serialize, Debug, Clone)]
#[serde(rename_all = "PascalCase")]
struct Xss {
    #[serde(default)]
    #[serde(rename = "Override")]
    override_: bool,
    protection: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mode_block: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    report_uri: Option<String>,
}

#[derive(Deserialize, Serialize, Debug, Clone)]
#[serde(rename_all = "PascalCase")]
struct Frame {
    #[serde(default, rename = "Override")]
    override_: bool,
    frame_option: String,
}

#[derive(Deserialize, Serialize, Debug, Clone)]
#[serde(rename_all = "PascalCase")]
struct Referrer {
    #[serde(default, rename = "Override")]
    override_: bool,
    referrer_policy: String,
}

#[derive(Deserialize, Serialize, Debug, Clone)]
#[serde(rename_all = "PascalCase")]
struct Csp {
    #[serde(default, rename = "Override")]
    override_: bool,
    content_security_policy: String,
}

#[derive(Deserialize, Serialize, Debug, Clone)]
#[serde(rename_all = "PascalCase")]
struct Cto {
    #[serde(default, rename = "Override")]
    override_: bool,
}

#[derive(Deserialize, Serialize, Debug, Clone)]
#[serde(rename_all = "PascalCase")]
struct Hsts {
    #[serde(default, rename = "Override")]
    override_: bool,
    #[serde(default)]
    include_subdomains: bool,
    #[serde(default)]
    preload: bool,
    access_control_max_age_sec: i64,
}

#[derive(Deserialize, Serialize, Debug, Clone)]
#[serde(rename_all = "PascalCase")]
struct Custom {
    header: String,
    value: String,
    #[serde(default, rename = "Override")]
    override_: bool,
}

#[derive(Deserialize, Serialize, Debug, Clone)]
#[serde(rename_all = "PascalCase")]
struct Remove {
    header: String,
}

#[derive(Deserialize, Serialize, Default, Debug, Clone)]
#[serde(rename_all = "PascalCase")]
struct Config {
    #[serde(default)]
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    comment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cors_config: Option<Cors>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    security_headers_config: Option<Security>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    custom_headers_config: Option<Items<Custom>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    remove_headers_config: Option<Items<Remove>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    server_timing_headers_config: Option<serde_json::Value>,
}

/// `get-response-headers-policy` output, or the `ResponseHeadersPolicyConfig` alone (what
/// `create-response-headers-policy` takes and `corsgate export cloudfront` writes).
fn configs(
    location: &str,
    v: serde_json::Value,
) -> Result<Vec<(Option<String>, Config)>, InteropError> {
    if let Some(seq) = v.as_array() {
        let mut out = Vec::new();
        for item in seq {
            out.extend(configs(location, item.clone())?);
        }
        return Ok(out);
    }
    let (id, config) = if let Some(p) = v.get("ResponseHeadersPolicy") {
        (
            p.get("Id").and_then(|i| i.as_str()).map(String::from),
            p.get("ResponseHeadersPolicyConfig").cloned(),
        )
    } else {
        (None, v.get("ResponseHeadersPolicyConfig").cloned())
    };
    let Some(config) = config else {
        return Err(InteropError::invalid(
            location,
            "no ResponseHeadersPolicy.ResponseHeadersPolicyConfig or ResponseHeadersPolicyConfig; fix: pass the JSON of `aws cloudfront get-response-headers-policy --id ID`, or a managed policy's name",
        ));
    };
    Ok(vec![(
        id,
        super::typed(location, "ResponseHeadersPolicyConfig", config)?,
    )])
}

/// The policies of one input: a JSON file, or a managed policy's name.
pub fn import(
    input: &Input,
    opts: &ImportOptions,
    report: &mut Report,
) -> Result<Vec<Imported>, InteropError> {
    if opts.hosts.is_empty() {
        return Err(InteropError::invalid(
            &input.name,
            "a response headers policy names no hosts; fix: pass --host NAME (repeatable) for the distribution's domain names",
        ));
    }
    let Some(url) = opts.upstream.clone() else {
        return Err(InteropError::invalid(
            &input.name,
            "a response headers policy names no origin server; fix: pass --upstream URL (the distribution's origin)",
        ));
    };
    let namespace = opts
        .namespace
        .clone()
        .unwrap_or_else(|| DEFAULT_NAMESPACE.into());
    let base = CorsPolicySpec {
        mode: opts.mode,
        hosts: opts.hosts.clone(),
        paths: Vec::new(),
        upstream: Upstream {
            url: Some(url.clone()),
            ..Upstream::default()
        },
        cors: CorsSpec::default(),
        response_headers: None,
        websocket: None,
        debug: None,
        tls: None,
    };
    let text_name = input.text.trim();
    let mut found = Vec::new();
    if let Some(m) = managed(text_name) {
        // A managed policy's name or ID: the argument itself, or a file (or stdin) holding it.
        let name = managed_name(text_name).unwrap_or("managed");
        let id = MANAGED_IDS
            .iter()
            .any(|(_, id)| id.eq_ignore_ascii_case(text_name))
            .then(|| managed_id(name).map(String::from))
            .flatten();
        found.push((id, name.to_string(), Some(m), Config::default()));
    } else {
        for (location, value) in super::objects(input)? {
            for (id, config) in configs(&location, value)? {
                let m = managed(&config.name);
                found.push((id, config.name.clone(), m, config));
            }
        }
    }
    let mut out = Vec::new();
    for (id, name, managed, config) in found {
        let object = match &id {
            Some(id) => format!("ResponseHeadersPolicy {name} ({id})"),
            None => format!("ResponseHeadersPolicy {name}"),
        };
        report.info(&object, "hosts", "hosts-from-flags", format!("a response headers policy has no hosts or origin: imported for --host {} and --upstream {url}, every path (a cache behaviour's path pattern is not in the policy)", opts.hosts.join(", ")));
        let mut spec = base.clone();
        match managed {
            Some((cors, security)) => {
                spec.cors.preset = cors;
                if security {
                    spec.response_headers = Some(ResponseHeaders {
                        preset: Some(ResponseHeadersPreset::SecurityHeaders),
                        ..ResponseHeaders::default()
                    });
                }
                report.info(
                    &object,
                    "Name",
                    "managed-preset",
                    format!(
                        "the managed policy maps to corsgate's presets{}{}",
                        cors.map_or(String::new(), |c| format!(
                            " cors.preset: {}",
                            preset_name(c)
                        )),
                        if security {
                            " responseHeaders.preset: SecurityHeaders"
                        } else {
                            ""
                        }
                    ),
                );
                if cors.is_some() {
                    report.info(&object, "CorsConfig", "vary-origin", "CloudFront adds no Vary: Origin (the cache key must hold Origin instead); corsgate adds Vary: Origin to every response");
                }
            }
            None => {
                if let Some(c) = &config.cors_config {
                    spec.cors = cors_of(c, &object, report);
                }
                spec.response_headers = headers_of(&config, &object, report);
            }
        }
        out.push(Imported {
            namespace: namespace.clone(),
            name: object_name(&name),
            spec,
            source: object,
        });
    }
    Ok(out)
}

fn managed_name(n: &str) -> Option<&'static str> {
    if let Some((name, _)) = MANAGED_IDS
        .iter()
        .find(|(_, id)| id.eq_ignore_ascii_case(n))
    {
        return Some(name);
    }
    let n = n.strip_prefix("Managed-").unwrap_or(n);
    MANAGED
        .iter()
        .find(|(m, _, _)| m.eq_ignore_ascii_case(n))
        .map(|(m, _, _)| *m)
}

fn managed_id(name: &str) -> Option<&'static str> {
    MANAGED_IDS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, id)| *id)
}

fn preset_name(c: CorsPreset) -> &'static str {
    match c {
        CorsPreset::SimpleCors => "SimpleCORS",
        CorsPreset::CorsWithPreflight => "CORSWithPreflight",
    }
}

fn cors_of(c: &Cors, object: &str, report: &mut Report) -> CorsSpec {
    let mut cors = CorsSpec::default();
    let origins = &c.access_control_allow_origins.items;
    if origins.iter().any(|o| o == "*") {
        cors.allow_origins = vec!["*".into()];
    } else {
        cors.allow_origins = origins
            .iter()
            .map(|o| super::without_default_port(o).to_ascii_lowercase())
            .collect();
    }
    cors.allow_credentials = c.access_control_allow_credentials;
    if cors.allow_credentials && cors.allow_origins.iter().any(|o| o == "*") {
        cors.allow_credentials = false;
        report.risk(object, "CorsConfig.AccessControlAllowCredentials", "origin-star-credentials", "all origins with credentials: corsgate refuses it (every site could make credentialed requests); CloudFront sends Access-Control-Allow-Origin: *, which browsers refuse with credentials; imported as allowCredentials: false, the same behaviour");
    }
    let methods = &c.access_control_allow_methods.items;
    cors.allow_methods = Some(if methods.iter().any(|m| m == "ALL") {
        vec!["*".into()]
    } else {
        methods.clone()
    });
    let headers = &c.access_control_allow_headers.items;
    cors.allow_headers = if headers.iter().any(|h| h == "*") {
        vec!["*".into()]
    } else {
        headers.iter().map(|h| h.to_ascii_lowercase()).collect()
    };
    if let Some(e) = &c.access_control_expose_headers {
        cors.expose_headers = e
            .items
            .iter()
            .filter(|h| !(cors.allow_credentials && *h == "*"))
            .map(|h| {
                if h == "*" {
                    h.clone()
                } else {
                    h.to_ascii_lowercase()
                }
            })
            .collect();
        if cors.allow_credentials && e.items.iter().any(|h| h == "*") {
            report.warning(
                object,
                "CorsConfig.AccessControlExposeHeaders",
                "expose-star-credentials",
                "\"*\" with credentials means a header named \"*\" to browsers; dropped",
            );
        }
    }
    if let Some(a) = c.access_control_max_age_sec {
        cors.max_age_seconds = max_age(
            a,
            object,
            "CorsConfig.AccessControlMaxAgeSec",
            "(AccessControlMaxAgeSec)",
            report,
        );
    }
    cors.origin_override = Some(c.origin_override);
    report.info(object, "CorsConfig", "preflight-at-edge", "corsgate answers allowed preflights at the edge (preflight: Respond) and rejects disallowed ones with 403; set preflight: Forward to let the origin see OPTIONS");
    report.info(object, "CorsConfig", "vary-origin", "CloudFront adds no Vary: Origin (the cache key must hold Origin instead); corsgate adds Vary: Origin to every response");
    cors
}

fn referrer(v: &str) -> Option<ReferrerPolicy> {
    serde_json::from_value(serde_json::Value::String(v.to_string())).ok()
}

fn headers_of(c: &Config, object: &str, report: &mut Report) -> Option<ResponseHeaders> {
    let mut rh = ResponseHeaders::default();
    if let Some(s) = &c.security_headers_config {
        let mut sec = SecurityHeaders::default();
        if let Some(x) = &s.xss_protection {
            sec.xss_protection = Some(XssProtection {
                protection: Some(x.protection),
                mode_block: if x.protection {
                    Some(x.mode_block.unwrap_or(false))
                } else {
                    None
                },
                report_uri: if x.protection && x.mode_block != Some(true) {
                    x.report_uri.clone()
                } else {
                    None
                },
                override_upstream: Some(x.override_),
            });
        }
        if let Some(f) = &s.frame_options {
            let value = match f.frame_option.as_str() {
                "DENY" => FrameOption::Deny,
                _ => FrameOption::SameOrigin,
            };
            sec.frame_options = Some(FrameOptions {
                value: Some(value),
                override_upstream: Some(f.override_),
            });
        }
        if let Some(r) = &s.referrer_policy {
            match referrer(&r.referrer_policy) {
                Some(v) => {
                    sec.referrer_policy = Some(ReferrerPolicyHeader {
                        value: Some(v),
                        override_upstream: Some(r.override_),
                    })
                }
                None => report.warning(
                    object,
                    "SecurityHeadersConfig.ReferrerPolicy",
                    "referrer-unknown",
                    format!(
                        "{:?} is not a Referrer-Policy value; dropped",
                        r.referrer_policy
                    ),
                ),
            }
        }
        if let Some(p) = &s.content_security_policy {
            sec.content_security_policy = Some(ContentSecurityPolicy {
                value: p.content_security_policy.clone(),
                override_upstream: Some(p.override_),
            });
        }
        if let Some(t) = &s.content_type_options {
            sec.content_type_options = Some(ContentTypeOptions {
                override_upstream: Some(t.override_),
            });
        }
        if let Some(h) = &s.strict_transport_security {
            sec.strict_transport_security = Some(StrictTransportSecurity {
                max_age_seconds: i32::try_from(h.access_control_max_age_sec).ok(),
                include_subdomains: Some(h.include_subdomains),
                preload: Some(h.preload),
                override_upstream: Some(h.override_),
            });
        }
        rh.security = Some(sec);
    }
    if let Some(custom) = &c.custom_headers_config {
        for (i, h) in custom.items.iter().enumerate() {
            if !h.override_ {
                report.warning(object, format!("CustomHeadersConfig.Items[{i}].Override"), "custom-header-override", format!("{}: Override false (the origin's header wins) is not expressible in responseHeaders.set, which always replaces; imported as replacing", h.header));
            }
            rh.set.push(HeaderPair {
                name: h.header.clone(),
                value: h.value.clone(),
            });
        }
    }
    if let Some(remove) = &c.remove_headers_config {
        rh.remove = remove.items.iter().map(|r| r.header.clone()).collect();
    }
    if c.server_timing_headers_config
        .as_ref()
        .and_then(|s| s.get("Enabled"))
        .and_then(|e| e.as_bool())
        == Some(true)
    {
        report.warning(
            object,
            "ServerTimingHeadersConfig",
            "server-timing-dropped",
            "CloudFront's Server-Timing header is not imported: corsgate does not emit it",
        );
    }
    let empty = rh.security.is_none() && rh.set.is_empty() && rh.remove.is_empty();
    if empty { None } else { Some(rh) }
}
