//! Every limit and default of a `CorsPolicySpec`, in one place: the validator checks against
//! these, its messages quote them, `config::compile` fills the defaults from them and the
//! CRD's CEL rules (`crd.rs`) are generated from them, so the four can never disagree.

use std::ops::RangeInclusive;
use std::time::Duration;

/// `cors.maxAgeSeconds` (and a rule's): Firefox's cap (`nsPreflightCache`), the highest any
/// browser honours.
pub const MAX_AGE_SECONDS: RangeInclusive<i32> = 0..=FIREFOX_MAX_AGE;
/// Chromium caps Access-Control-Max-Age at 2 hours
/// (`kMaxPreflightCacheTimeout` in services/network/public/cpp/cors/preflight_result.cc).
pub const CHROMIUM_MAX_AGE: i32 = 7200;
/// Firefox caps it at 24 hours (`nsPreflightCache`), which the validator also enforces.
pub const FIREFOX_MAX_AGE: i32 = 86400;

/// `upstream.timeoutSeconds`.
pub const TIMEOUT_SECONDS: RangeInclusive<i32> = 1..=3600;
/// `upstream.timeoutSeconds` when omitted.
pub const DEFAULT_TIMEOUT_SECONDS: i32 = 30;
/// [`DEFAULT_TIMEOUT_SECONDS`] as a `Duration`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(DEFAULT_TIMEOUT_SECONDS as u64);

/// `upstream.service.port`.
pub const PORT: RangeInclusive<i32> = 1..=65535;

/// `cors.allowMethods` when omitted (the CORS-safelisted methods that carry a body or not).
pub const DEFAULT_METHODS: [&str; 3] = ["GET", "HEAD", "POST"];

/// `strictTransportSecurity.maxAgeSeconds` when omitted (one year, CloudFront's managed
/// value), and the least the browsers' preload lists accept.
pub const HSTS_DEFAULT_MAX_AGE: i32 = 31_536_000;

/// A DNS label (RFC 1123): at most this long.
pub const DNS_LABEL_MAX: usize = 63;
/// A DNS name: at most this long.
pub const DNS_NAME_MAX: usize = 253;

/// The namespace of a policy document that names none (as `kubectl apply` does).
pub const DEFAULT_NAMESPACE: &str = "default";

/// `a..=b` as "a to b" for messages.
pub fn span(r: &RangeInclusive<i32>) -> String {
    format!("{} to {}", r.start(), r.end())
}

/// `a..=b` as CEL: `self >= a && self <= b`.
pub fn cel_range(r: &RangeInclusive<i32>) -> String {
    format!("self >= {} && self <= {}", r.start(), r.end())
}

/// An RFC 1123 label as Kubernetes names use it (Service names, namespaces, each dot-separated
/// part of an object name): lower-case letters, digits and '-', not starting or ending with
/// '-', 1 to 63 characters.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= DNS_LABEL_MAX
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// An RFC 1123 subdomain (object names): dot-separated labels, at most 253 characters.
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= DNS_NAME_MAX && s.split('.').all(is_dns_label)
}

/// Hop-by-hop headers (RFC 9110 §7.6.1, with the non-standard `Proxy-Connection` and
/// `Upgrade`, which is hop-by-hop except on an upgrade the proxy relays): the proxy strips
/// them in both directions (`proxy::forward`), and the validator refuses them in
/// `responseHeaders`, so the two lists are this one.
pub const HOP_BY_HOP: [http::HeaderName; 9] = [
    http::header::CONNECTION,
    http::HeaderName::from_static("keep-alive"),
    http::HeaderName::from_static("proxy-connection"),
    http::header::PROXY_AUTHENTICATE,
    http::header::PROXY_AUTHORIZATION,
    http::header::TE,
    http::header::TRAILER,
    http::header::TRANSFER_ENCODING,
    http::header::UPGRADE,
];

/// Where `name` is in [`HOP_BY_HOP`], if it is one: a length check and at most one
/// comparison, so scanning a request's names costs little on the request path.
pub fn hop_by_hop_index(name: &http::HeaderName) -> Option<usize> {
    Some(match name.as_str() {
        "connection" => 0,
        "keep-alive" => 1,
        "proxy-connection" => 2,
        "proxy-authenticate" => 3,
        "proxy-authorization" => 4,
        "te" => 5,
        "trailer" => 6,
        "transfer-encoding" => 7,
        "upgrade" => 8,
        _ => return None,
    })
}

/// Whether `name` is one of [`HOP_BY_HOP`].
pub fn is_hop_by_hop(name: &http::HeaderName) -> bool {
    hop_by_hop_index(name).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_hop_by_hop_is_the_list() {
        for (i, h) in HOP_BY_HOP.iter().enumerate() {
            assert!(is_hop_by_hop(h), "{h}");
            assert_eq!(hop_by_hop_index(h), Some(i), "{h}");
        }
        for h in [
            "host",
            "origin",
            "content-length",
            "x-connection",
            "upgrade-insecure-requests",
        ] {
            assert!(!is_hop_by_hop(&http::HeaderName::from_static(h)), "{h}");
        }
    }
}
