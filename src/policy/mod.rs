//! The `CorsPolicy` resource: its Rust types (the CRD is generated from them), defaults and
//! validation.
//!
//! Owns: the user-facing schema and what makes a spec valid, with messages that name the
//! field and the fix. Must not touch: I/O, hyper, the proxy. Every field's `///` comment is
//! what `kubectl explain` prints.

pub mod crd;
pub mod limits;
mod preset;
#[cfg(test)]
pub use preset::EXPANSIONS;
mod validate;
pub mod warnings;

pub use preset::{CORS_WITH_PREFLIGHT_METHODS, SecurityHeader};
pub use validate::{FieldError, Parsed, ParsedOrigins, parse, validate};
pub use warnings::{Warning, warnings, warnings_expanded};

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub const GROUP: &str = "corsgate.dev";
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
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".spec.mode"}"#,
    printcolumn = r#"{"name":"Would-Reject","type":"integer","jsonPath":".status.shadow.wouldReject","description":"Shadow mode: CORS requests the policy would have rejected since status.shadow.since"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CorsPolicySpec {
    /// Enforce (default): the edge applies the policy. Shadow: the edge routes by hosts and
    /// paths but forwards every request untouched by CORS (no preflight answered, no CORS or
    /// Vary header added, removed or replaced); it evaluates the policy all the same and
    /// counts what it would have done, reported in status.shadow. responseHeaders still
    /// apply in Shadow: they are not CORS.
    #[serde(default, skip_serializing_if = "Mode::is_enforce")]
    pub mode: Mode,

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

    /// WebSocket (and other HTTP/1.1 Upgrade) requests, which the edge relays to the
    /// upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub websocket: Option<WebSocket>,

    /// Help for whoever debugs this policy's CORS errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debug: Option<DebugSpec>,

    /// HTTPS at the edge: the certificate the proxy's --listen-tls listener serves for these
    /// hosts (chosen by SNI), and whether plain HTTP is redirected there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,
}

/// How the edge treats WebSocket handshakes. CORS does not cover them: a browser opens a
/// WebSocket to any site, with that site's cookies, and only sends `Origin` — so without an
/// origin check any page can talk to the API as its user (cross-site WebSocket hijacking).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebSocket {
    /// true (default): an upgrade request whose Origin is not allowed by cors (allowOrigins,
    /// allowOriginPatterns or a rule's origins) is answered 403 at the edge; one without
    /// Origin (not sent by a browser) passes. false: every origin passes, as without
    /// corsgate. Not enforced in mode Shadow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_origin: Option<bool>,
}

/// Debugging aids; each reveals details of the policy to any caller, so each is off by
/// default.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DebugSpec {
    /// true: every response to a CORS request this policy rejects (answered 403 at the
    /// edge, or forwarded without CORS headers) carries `x-corsgate-error: cors-rejected`
    /// and `x-corsgate-reason` naming the failed check ("method DELETE is not in
    /// allowMethods"), and a 403 body says the same. Default false: no x-corsgate-reason,
    /// and the 403 body names only the policy (the proxy's admin /explain and /rejections
    /// still answer the operator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejection_reasons: Option<bool>,
}

/// HTTPS for a policy's hosts.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsSpec {
    /// A Secret of type kubernetes.io/tls in the policy's namespace (data tls.crt: the PEM
    /// certificate chain, leaf first; tls.key: its PEM private key), as `kubectl create
    /// secret tls` and cert-manager write it. Its certificate must cover every host of the
    /// policy (a host "*.example.com" needs the SAN "*.example.com"). Standalone, the Secret
    /// is a document in the --policies files.
    pub secret_name: String,
    /// true: a plain-HTTP request (the --listen listener) for these hosts is answered with
    /// 308 to the same URL on https (port 443). A browser follows no redirect on a preflight,
    /// so a page calling http:// cross-origin fails its preflight: call https:// directly.
    /// Default false.
    #[serde(
        default,
        rename = "redirectHTTP",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub redirect_http: bool,
}

/// Whether the edge enforces the policy or only counts what it would do.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum Mode {
    #[default]
    Enforce,
    Shadow,
}

impl Mode {
    pub fn is_enforce(&self) -> bool {
        *self == Mode::Enforce
    }
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
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CorsSpec {
    /// A starting point with the semantics of CloudFront's managed response-headers policy of
    /// the same name; every field set next to it replaces the preset's value for that field.
    /// SimpleCORS: allowOrigins ["*"], preflight Passthrough, originOverride false
    /// (Access-Control-Allow-Origin: * on CORS requests, the upstream's own CORS headers kept
    /// when it sends them). CORSWithPreflight: the same, but preflights are answered at the
    /// edge (preflight Respond) with allowMethods DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT
    /// and allowHeaders ["*"]. The origin lists are filled only when neither allowOrigins nor
    /// allowOriginPatterns is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<CorsPreset>,

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
    /// Omitted: the header is not sent, and browsers cache the answer for 5 s (Fetch's
    /// default), which is what Gateway API's default of 5 asks for. 0 to 86400.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_seconds: Option<i32>,

    /// Answer preflights that carry Access-Control-Request-Private-Network: true with
    /// Access-Control-Allow-Private-Network: true (the usual origin checks still apply).
    #[serde(default)]
    pub allow_private_network: bool,

    /// Respond (default): allowed preflights are answered at the edge with 204 and never
    /// reach the upstream. Forward: the upstream answers and the edge sets the CORS headers.
    /// Passthrough: preflights get no special treatment: forwarded like any CORS request, and
    /// the upstream's response gets only Access-Control-Allow-Origin (and
    /// Allow-Credentials / Expose-Headers when configured), as CloudFront's SimpleCORS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preflight: Option<PreflightMode>,

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
    /// stand. Default true (false under a preset, as CloudFront's managed policies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin_override: Option<bool>,

    /// Conditional overrides, in order: the first rule whose origins match the request's
    /// origin wins. A rule's origins are allowed even when allowOrigins lacks them; each
    /// field a rule sets replaces the base field, each it omits comes from the base.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<CorsRule>,
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

/// CloudFront's managed CORS response-headers policies.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum CorsPreset {
    #[serde(rename = "SimpleCORS")]
    SimpleCors,
    #[serde(rename = "CORSWithPreflight")]
    CorsWithPreflight,
}

/// Who answers an allowed preflight.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum PreflightMode {
    #[default]
    Respond,
    Forward,
    Passthrough,
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
    /// SecurityHeaders: CloudFront's managed security headers policy, as typed `security`
    /// headers: Strict-Transport-Security max-age=31536000, X-Frame-Options SAMEORIGIN,
    /// Referrer-Policy strict-origin-when-cross-origin and X-XSS-Protection 1; mode=block,
    /// each only when the upstream did not send it (override false), and
    /// X-Content-Type-Options nosniff always (override true). A `security` field set next to
    /// it refines that header field by field; a `set` entry of the same name replaces it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<ResponseHeadersPreset>,
    /// Typed security headers, each rendered and validated by the edge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security: Option<SecurityHeaders>,
    /// Headers to set; each replaces any header of the same name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set: Vec<HeaderPair>,
    /// Header names to remove (case-insensitive).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

/// CloudFront's managed security headers policy.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ResponseHeadersPreset {
    SecurityHeaders,
}

/// Security headers, typed. Each has `override`: true, the edge's value replaces the
/// upstream's header; false, the upstream's header wins when it sends one. Default true (under
/// the SecurityHeaders preset, the preset's choice).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecurityHeaders {
    /// Strict-Transport-Security: browsers use only HTTPS for this host for maxAgeSeconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict_transport_security: Option<StrictTransportSecurity>,
    /// X-Content-Type-Options: nosniff (browsers do not guess content types).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type_options: Option<ContentTypeOptions>,
    /// X-Frame-Options: whether other sites may frame the page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame_options: Option<FrameOptions>,
    /// Referrer-Policy: how much of the URL is sent as Referer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referrer_policy: Option<ReferrerPolicyHeader>,
    /// Content-Security-Policy, as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_security_policy: Option<ContentSecurityPolicy>,
    /// X-XSS-Protection (legacy browsers' XSS filter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xss_protection: Option<XssProtection>,
}

/// Strict-Transport-Security.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StrictTransportSecurity {
    /// max-age in seconds, 0 or more (0 tells browsers to forget the host). Default
    /// 31536000 (one year, CloudFront's managed value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_seconds: Option<i32>,
    /// Add includeSubDomains: every subdomain is HTTPS-only too. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_subdomains: Option<bool>,
    /// Add preload (for browsers' built-in HSTS lists); requires includeSubdomains: true and
    /// maxAgeSeconds of at least 31536000. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preload: Option<bool>,
    /// true: replaces the upstream's header; false: the upstream's header wins when sent.
    #[serde(default, rename = "override", skip_serializing_if = "Option::is_none")]
    pub override_upstream: Option<bool>,
}

/// X-Content-Type-Options: nosniff.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContentTypeOptions {
    /// true: replaces the upstream's header; false: the upstream's header wins when sent.
    #[serde(default, rename = "override", skip_serializing_if = "Option::is_none")]
    pub override_upstream: Option<bool>,
}

/// X-Frame-Options.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FrameOptions {
    /// DENY: never framed. SAMEORIGIN (default): framed only by pages of the same origin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<FrameOption>,
    /// true: replaces the upstream's header; false: the upstream's header wins when sent.
    #[serde(default, rename = "override", skip_serializing_if = "Option::is_none")]
    pub override_upstream: Option<bool>,
}

/// An X-Frame-Options value.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum FrameOption {
    #[serde(rename = "DENY")]
    Deny,
    #[serde(rename = "SAMEORIGIN")]
    SameOrigin,
}

/// Referrer-Policy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReferrerPolicyHeader {
    /// One of the W3C Referrer Policy values; default strict-origin-when-cross-origin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<ReferrerPolicy>,
    /// true: replaces the upstream's header; false: the upstream's header wins when sent.
    #[serde(default, rename = "override", skip_serializing_if = "Option::is_none")]
    pub override_upstream: Option<bool>,
}

/// A Referrer-Policy value (<https://www.w3.org/TR/referrer-policy/#referrer-policies>).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ReferrerPolicy {
    NoReferrer,
    NoReferrerWhenDowngrade,
    Origin,
    OriginWhenCrossOrigin,
    SameOrigin,
    StrictOrigin,
    StrictOriginWhenCrossOrigin,
    UnsafeUrl,
}

/// Content-Security-Policy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContentSecurityPolicy {
    /// The policy, e.g. "default-src 'self'": one line of visible ASCII, not empty.
    pub value: String,
    /// true: replaces the upstream's header; false: the upstream's header wins when sent.
    #[serde(default, rename = "override", skip_serializing_if = "Option::is_none")]
    pub override_upstream: Option<bool>,
}

/// X-XSS-Protection.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct XssProtection {
    /// true (default): "1", the filter on; false: "0", the filter off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protection: Option<bool>,
    /// Add mode=block (default true): block the page instead of sanitising it. Not with
    /// reportUri, and not with protection: false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode_block: Option<bool>,
    /// Add report=URI: where the browser reports an attack. Requires modeBlock: false and
    /// protection true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_uri: Option<String>,
    /// true: replaces the upstream's header; false: the upstream's header wins when sent.
    #[serde(default, rename = "override", skip_serializing_if = "Option::is_none")]
    pub override_upstream: Option<bool>,
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
    /// Shadow mode only: what the policy would have done, summed over every proxy, since
    /// `since` (counting restarts when the spec changes or the policy enters Shadow).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowStatus>,
    /// CORS requests rejected over the last hour (in Shadow mode: that would have been),
    /// summed over every proxy that reported; absent when there were none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejections: Option<RejectionsStatus>,
}

/// What the edge rejected recently, and why (`kubectl describe corspolicy` shows it).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct RejectionsStatus {
    /// Rejections over the last hour (counted in 5-minute steps).
    pub last_hour: i64,
    /// lastHour by the first check that failed.
    pub by_reason: ShadowReasons,
    /// Up to 5 distinct rejected Origin values of that hour, each cut to 64 characters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sample_origins: Vec<String>,
}

/// What a Shadow policy would have done to CORS requests.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct ShadowStatus {
    /// CORS requests (preflights and actual requests) the policy would have allowed.
    pub would_allow: i64,
    /// CORS requests the policy would have rejected.
    pub would_reject: i64,
    /// wouldReject by the first check that failed.
    pub by_reason: ShadowReasons,
    /// When counting started (RFC 3339).
    pub since: String,
    /// Up to 5 distinct rejected Origin values, each cut to 64 characters: a hint of who
    /// would be blocked, not a log.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sample_rejected_origins: Vec<String>,
}

/// Would-be rejections by reason.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct ShadowReasons {
    /// The origin is not allowed (or the Origin header is malformed).
    pub origin: i64,
    /// A preflight asked for a method that is not allowed.
    pub method: i64,
    /// A preflight asked for a request header that is not allowed.
    pub header: i64,
    /// A preflight asked for private network access, which is not allowed.
    pub private_network: i64,
}
