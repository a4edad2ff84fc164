//! The `CorsPolicy` resource: its Rust types (the CRD is generated from them), defaults and
//! validation.
//!
//! Owns: the user-facing schema and what makes a spec valid, with messages that name the
//! field and the fix. Must not touch: I/O, hyper, the proxy. Every field's `///` comment is
//! what `kubectl explain` prints.

pub mod crd;
mod validate;
pub mod warnings;

pub use validate::{FieldError, host_error, upstream_url, validate};
pub use warnings::{Warning, warnings};

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub const GROUP: &str = "corsgate.dev";
pub const VERSION: &str = "v1alpha1";
pub const API_VERSION: &str = "corsgate.dev/v1alpha1";
pub const KIND: &str = "CorsPolicy";

/// Who may call the APIs behind some hosts and paths from a browser, and how the edge proxy
/// answers them.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "corsgate.dev",
    version = "v1alpha1",
    kind = "CorsPolicy",
    plural = "corspolicies",
    shortname = "cors",
    namespaced,
    status = "CorsPolicyStatus",
    printcolumn = r#"{"name":"Hosts","type":"string","jsonPath":".spec.hosts"}"#,
    printcolumn = r#"{"name":"Accepted","type":"string","jsonPath":".status.conditions[?(@.type==\"Accepted\")].status"}"#,
    printcolumn = r#"{"name":"Programmed","type":"string","jsonPath":".status.conditions[?(@.type==\"Programmed\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CorsPolicySpec {
    /// Host names this policy applies to, matched against the request's Host (port ignored,
    /// case-insensitive). Each is an exact DNS name ("api.example.com") or one leading
    /// wildcard label ("*.example.com": one or more labels under example.com, never
    /// example.com itself). An exact host beats a wildcard.
    pub hosts: Vec<String>,

    /// Path prefixes this policy applies to, segment-aware: "/v1" matches /v1 and /v1/x but
    /// not /v10. The longest matching prefix wins. Default: every path.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,

    /// Where matching requests are sent.
    pub upstream: Upstream,

    /// Which origins may call, with which methods and headers, and how the edge answers.
    #[serde(default)]
    pub cors: CorsSpec,

    /// Headers set on or removed from every response of this policy, CORS or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_headers: Option<ResponseHeaders>,
}

/// The upstream: exactly one of `service` or `url`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Upstream {
    /// A Service in the policy's namespace, reached as http://NAME.NAMESPACE.svc:PORT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceRef>,

    /// An http(s) origin such as "http://127.0.0.1:9000" (the standalone form). No path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,

    /// How long to wait for the upstream's response headers before answering 504.
    /// Default 30, from 1 to 3600.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<i32>,
}

/// A Service and port in the policy's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceRef {
    /// The Service's name.
    pub name: String,
    /// The Service's port number (1-65535).
    pub port: i32,
}

/// Cross-origin access.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CorsSpec {
    /// Allowed origins: exact ("https://www.example.com", scheme and host case-insensitive,
    /// port exact), a one-label wildcard host ("https://*.example.com": any subdomain, never
    /// the apex), "null" (only when listed literally), or "*" (any origin; not with
    /// allowCredentials).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_origins: Vec<String>,

    /// Regular expressions an origin must match in full (anchored for you), e.g.
    /// '^https://pr-[0-9]+\.preview\.example\.com$'. Linear-time engine: no look-around or
    /// back-references.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_origin_patterns: Vec<String>,

    /// Methods a preflight may ask for. Default GET, HEAD, POST. "*" allows any method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_methods: Option<Vec<String>>,

    /// Request headers a preflight may ask for (case-insensitive). "*" allows any header
    /// except Authorization, which must be listed by name (Fetch).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_headers: Vec<String>,

    /// Response headers the page may read beyond the CORS-safelisted ones. "*" exposes all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expose_headers: Vec<String>,

    /// Send Access-Control-Allow-Credentials: true, so cookies and HTTP auth work. The edge
    /// then never sends "*" for origins, methods, headers or exposed headers: it reflects.
    #[serde(default)]
    pub allow_credentials: bool,

    /// How long (seconds) a browser may cache a preflight answer: Access-Control-Max-Age.
    /// Omitted: the header is not sent (browsers then cache for 5 s). 0 to 86400.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_seconds: Option<i32>,

    /// Answer preflights that carry Access-Control-Request-Private-Network: true with
    /// Access-Control-Allow-Private-Network: true (the usual origin checks still apply).
    #[serde(default)]
    pub allow_private_network: bool,

    /// Respond: allowed preflights are answered at the edge with 204 and never reach the
    /// upstream. Forward: the upstream answers and the edge sets the CORS headers.
    #[serde(default)]
    pub preflight: PreflightMode,

    /// A preflight from a disallowed origin, method or header. Reject: 403 at the edge with
    /// no CORS headers. Forward: sent upstream, no CORS headers added.
    #[serde(default)]
    pub unmatched_preflight: UnmatchedPreflight,

    /// An actual request from a disallowed origin. Forward: sent upstream, the response has
    /// no CORS headers (the browser hides it from the page). Reject: 403 at the edge.
    #[serde(default)]
    pub disallowed_origin: DisallowedOrigin,

    /// true: the edge's CORS headers replace any Access-Control-* headers the upstream
    /// sent. false: when the upstream sends Access-Control-Allow-Origin, its CORS headers
    /// stand. Default true.
    #[serde(default = "default_true")]
    pub origin_override: bool,

    /// Conditional overrides, in order: the first rule whose origins match the request's
    /// origin wins. A rule's origins are allowed even when allowOrigins lacks them; each
    /// field a rule sets replaces the base field, each it omits comes from the base.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<CorsRule>,
}

impl Default for CorsSpec {
    fn default() -> Self {
        CorsSpec {
            allow_origins: Vec::new(),
            allow_origin_patterns: Vec::new(),
            allow_methods: None,
            allow_headers: Vec::new(),
            expose_headers: Vec::new(),
            allow_credentials: false,
            max_age_seconds: None,
            allow_private_network: false,
            preflight: PreflightMode::default(),
            unmatched_preflight: UnmatchedPreflight::default(),
            disallowed_origin: DisallowedOrigin::default(),
            origin_override: true,
            rules: Vec::new(),
        }
    }
}

fn default_true() -> bool {
    true
}

/// A conditional override of `cors` for some origins.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CorsRule {
    /// Origins this rule applies to (same forms as allowOrigins, except "*").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub origins: Vec<String>,
    /// Regular expressions (full match) for origins this rule applies to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub origin_patterns: Vec<String>,
    /// Replaces cors.allowMethods for these origins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_methods: Option<Vec<String>>,
    /// Replaces cors.allowHeaders for these origins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_headers: Option<Vec<String>>,
    /// Replaces cors.exposeHeaders for these origins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expose_headers: Option<Vec<String>>,
    /// Replaces cors.allowCredentials for these origins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_credentials: Option<bool>,
    /// Replaces cors.maxAgeSeconds for these origins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_seconds: Option<i32>,
    /// Replaces cors.allowPrivateNetwork for these origins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_private_network: Option<bool>,
}

/// Who answers an allowed preflight.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum PreflightMode {
    #[default]
    Respond,
    Forward,
}

/// What happens to a preflight that is not allowed.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum UnmatchedPreflight {
    #[default]
    Reject,
    Forward,
}

/// What happens to an actual request from a disallowed origin.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum DisallowedOrigin {
    #[default]
    Forward,
    Reject,
}

/// Headers beyond CORS, on every response of the policy (upstream responses, preflights
/// answered or rejected at the edge, the edge's own errors).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResponseHeaders {
    /// Headers to set; each replaces any header of the same name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set: Vec<HeaderPair>,
    /// Header names to remove (case-insensitive).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

/// One header.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HeaderPair {
    /// The header name.
    pub name: String,
    /// The header value.
    pub value: String,
}

/// What the controller observed and did.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct CorsPolicyStatus {
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Accepted, ResolvedRefs and Programmed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>,
    /// The version of the configuration snapshot that contains this policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_version: Option<String>,
    /// Valid but risky settings ("field path: why"), the same texts the admission webhook
    /// returns: origins covering a whole public suffix, wildcards or regexes with
    /// credentials, Max-Age above browser caps, "*" headers without Authorization, "null",
    /// allowPrivateNetwork.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}
