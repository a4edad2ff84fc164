//! `spec.responseHeaders`: custom headers, removals and the typed security headers.

use super::FieldError;
use crate::cors::lists::is_token;
use crate::policy::limits::{HOP_BY_HOP, HSTS_DEFAULT_MAX_AGE};
use crate::policy::{ResponseHeaders, SecurityHeader, SecurityHeaders};

/// Response headers the edge owns: set through `spec.cors`, or meaningful per connection.
fn reserved_header(name: &str) -> Option<&'static str> {
    let n = name.to_ascii_lowercase();
    if n.starts_with("access-control-") {
        Some("CORS headers are computed per request from spec.cors; configure them there")
    } else if n == "vary" {
        Some("the edge manages Vary so caches stay correct")
    } else if n == "content-length" || HOP_BY_HOP.iter().any(|h| h.as_str() == n) {
        Some("it describes the connection or framing, which the edge manages")
    } else {
        None
    }
}

/// The typed security headers: what the serialisation cannot express. Mirrored as CEL in
/// crd.rs where one object suffices.
pub(super) fn security(sec: &SecurityHeaders, errs: &mut Vec<FieldError>) {
    const P: &str = "spec.responseHeaders.security";
    if let Some(h) = &sec.strict_transport_security {
        let max_age = h.max_age_seconds.unwrap_or(HSTS_DEFAULT_MAX_AGE);
        if max_age < 0 {
            errs.push(FieldError::new(
                format!("{P}.strictTransportSecurity.maxAgeSeconds"),
                format!("{max_age} is negative"),
                format!("use 0 or more seconds (0 makes browsers forget the host; a year is {HSTS_DEFAULT_MAX_AGE})"),
            ));
        }
        if h.preload == Some(true)
            && (h.include_subdomains != Some(true) || max_age < HSTS_DEFAULT_MAX_AGE)
        {
            errs.push(FieldError::new(
                format!("{P}.strictTransportSecurity.preload"),
                format!("preload requires includeSubdomains: true and maxAgeSeconds of at least {HSTS_DEFAULT_MAX_AGE} (the browsers' preload lists refuse anything less)"),
                format!("set includeSubdomains: true and maxAgeSeconds: {HSTS_DEFAULT_MAX_AGE} or more, or drop preload"),
            ));
        }
    }
    if let Some(h) = &sec.content_security_policy {
        if h.value.trim().is_empty() {
            errs.push(FieldError::new(
                format!("{P}.contentSecurityPolicy.value"),
                "the policy is empty",
                "write a policy such as \"default-src 'self'\", or remove contentSecurityPolicy",
            ));
        } else if !h.value.is_ascii() || http::HeaderValue::from_str(&h.value).is_err() {
            errs.push(FieldError::new(
                format!("{P}.contentSecurityPolicy.value"),
                "the value has a line break, control character or non-ASCII character",
                "write the policy on one line in ASCII (percent-encode non-ASCII URLs)",
            ));
        }
    }
    if let Some(h) = &sec.xss_protection {
        let protection = h.protection.unwrap_or(true);
        let path = format!("{P}.xssProtection");
        if !protection && h.mode_block == Some(true) {
            errs.push(FieldError::new(
                format!("{path}.modeBlock"),
                "modeBlock: true has no effect with protection: false (the header is \"0\")",
                "drop modeBlock, or set protection: true",
            ));
        }
        if let Some(uri) = &h.report_uri {
            if !protection {
                errs.push(FieldError::new(
                    format!("{path}.reportUri"),
                    "reportUri has no effect with protection: false (the header is \"0\")",
                    "drop reportUri, or set protection: true",
                ));
            } else if h.mode_block.unwrap_or(true) {
                errs.push(FieldError::new(
                    format!("{path}.reportUri"),
                    "reportUri cannot be combined with mode=block (modeBlock defaults to true)",
                    "set modeBlock: false to report instead of block, or drop reportUri",
                ));
            }
            if uri.is_empty()
                || !uri.is_ascii()
                || uri.contains([';', ',', ' '])
                || http::HeaderValue::from_str(uri).is_err()
            {
                errs.push(FieldError::new(
                    format!("{path}.reportUri"),
                    format!("{uri:?} is not a usable report URI"),
                    "write one absolute URI without spaces, ';' or ',', e.g. \"https://r.example.com/xss\"",
                ));
            }
        }
    }
}

pub(super) fn response_headers(rh: &ResponseHeaders, errs: &mut Vec<FieldError>) {
    if let Some(sec) = &rh.security {
        for h in SecurityHeader::ALL.into_iter().filter(|h| sec.has(*h)) {
            let (field, header) = (h.field(), h.header());
            if let Some(i) = rh
                .set
                .iter()
                .position(|h| h.name.eq_ignore_ascii_case(header))
            {
                errs.push(FieldError::new(
                    format!("spec.responseHeaders.set[{i}].name"),
                    format!("{header:?} is also set by security.{field}"),
                    format!("keep one: remove this entry, or remove security.{field}"),
                ));
            }
        }
    }
    for (i, h) in rh.set.iter().enumerate() {
        let path = format!("spec.responseHeaders.set[{i}]");
        if !is_token(&h.name) {
            errs.push(FieldError::new(
                format!("{path}.name"),
                format!("{:?} is not a header name", h.name),
                "write a header name such as \"Strict-Transport-Security\"",
            ));
        } else if let Some(why) = reserved_header(&h.name) {
            errs.push(FieldError::new(
                format!("{path}.name"),
                format!("{:?} cannot be set here: {why}", h.name),
                "remove this entry",
            ));
        } else if rh.set[..i]
            .iter()
            .any(|o| o.name.eq_ignore_ascii_case(&h.name))
        {
            errs.push(FieldError::new(
                format!("{path}.name"),
                format!("{:?} is set twice", h.name),
                "keep one entry per header name (join list values with \", \")",
            ));
        }
        if !h.value.is_ascii() || http::HeaderValue::from_str(&h.value).is_err() {
            errs.push(FieldError::new(
                format!("{path}.value"),
                "the value has a line break, control character or non-ASCII character",
                "write a single-line ASCII value",
            ));
        }
    }
    for (i, n) in rh.remove.iter().enumerate() {
        let path = format!("spec.responseHeaders.remove[{i}]");
        if !is_token(n) {
            errs.push(FieldError::new(
                path,
                format!("{n:?} is not a header name"),
                "write a header name such as \"x-powered-by\"",
            ));
        } else if let Some(why) = reserved_header(n) {
            errs.push(FieldError::new(
                path,
                format!("{n:?} cannot be removed here: {why}"),
                "remove this entry",
            ));
        }
    }
}
