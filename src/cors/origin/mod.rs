//! Origins: parsing what a browser sends in `Origin`, parsing what a policy allows, and
//! matching one against the other.
//!
//! Fetch serialises an origin as `scheme "://" host [ ":" port ]`, or the opaque `null`
//! (<https://fetch.spec.whatwg.org/#origin-header>, <https://html.spec.whatwg.org/#ascii-serialisation-of-an-origin>).
//! Anything else in the header is not an origin and never matches: a path, userinfo, a query,
//! white space, non-ASCII bytes, several `Origin` headers. Scheme and host compare ASCII
//! case-insensitively, ports exactly (a default port is the same as no port).

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, OnceLock};

use regex::{RegexSet, RegexSetBuilder};

mod check;
pub use check::check_patterns;

/// Longest `Origin` value we look at; real ones are far shorter (hosts are at most 253 bytes).
pub const MAX_ORIGIN_LEN: usize = 2048;

/// Compiled-size limit for one policy's origin regexes: enough for any sane pattern, small
/// enough that a hostile pattern cannot make the proxy allocate without bound.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Why a string is not an origin, and how to write it instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct OriginError {
    pub message: String,
    pub fix: String,
}

impl OriginError {
    fn new(message: impl Into<String>, fix: impl Into<String>) -> Self {
        OriginError {
            message: message.into(),
            fix: fix.into(),
        }
    }
}

/// An origin tuple as sent by a browser, borrowed from the header value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TupleOrigin<'a> {
    pub scheme: &'a str,
    pub host: &'a str,
    /// `None` when the header had no port or the scheme's default port.
    pub port: Option<u16>,
    /// True when scheme and host are already lower case and no default port was spelled
    /// out: the raw value is then its own lookup key, and matching allocates nothing.
    canonical: bool,
}

/// What the `Origin` request header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestOrigin<'a> {
    /// The opaque origin `null` (sandboxed iframes, `file:` pages, some redirects).
    Null,
    Tuple(TupleOrigin<'a>),
    /// Present but not a serialised origin, or sent more than once. Never allowed.
    Invalid(InvalidOrigin),
}

/// Why a request's `Origin` header cannot be an origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidOrigin {
    Multiple,
    Empty,
    TooLong,
    NotAscii,
    Malformed,
}

impl fmt::Display for InvalidOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InvalidOrigin::Multiple => "several Origin headers",
            InvalidOrigin::Empty => "an empty Origin header",
            InvalidOrigin::TooLong => "an Origin header longer than 2048 bytes",
            InvalidOrigin::NotAscii => "an Origin header with non-ASCII or control bytes",
            InvalidOrigin::Malformed => "an Origin header that is not scheme://host[:port] or null",
        })
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    if scheme.eq_ignore_ascii_case("https") || scheme.eq_ignore_ascii_case("wss") {
        Some(443)
    } else if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("ws") {
        Some(80)
    } else {
        None
    }
}

fn is_scheme(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

/// A host as it may appear in a serialised origin: a domain (labels of letters, digits, `-`
/// and `_`, one optional trailing dot), an IPv4 address (a domain by this grammar) or a
/// bracketed IPv6 literal.
fn host_shape(host: &str) -> Result<(), &'static str> {
    if host.is_empty() {
        return Err("the host is empty");
    }
    if let Some(inner) = host.strip_prefix('[') {
        let inner = inner
            .strip_suffix(']')
            .ok_or("an IPv6 host is missing its ']'")?;
        if inner.is_empty()
            || !inner
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return Err("the IPv6 host is not an address");
        }
        return Ok(());
    }
    if host.len() > 254 {
        return Err("the host is longer than 253 characters");
    }
    let body = host.strip_suffix('.').unwrap_or(host);
    // One pass over the bytes (this runs on every request's Origin): each label checked as
    // it ends, with the same errors, in the same order, as splitting on '.' first.
    let label_end = |len: usize, bad: bool| -> Result<(), &'static str> {
        if len == 0 {
            Err("the host has an empty label")
        } else if len > 63 {
            Err("a host label is longer than 63 characters")
        } else if bad {
            Err("the host has a character that is not a letter, digit, '-' or '_'")
        } else {
            Ok(())
        }
    };
    let (mut len, mut bad) = (0usize, false);
    for &b in body.as_bytes() {
        if b == b'.' {
            label_end(len, bad)?;
            (len, bad) = (0, false);
        } else {
            len += 1;
            bad |= !(b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        }
    }
    label_end(len, bad)
}

/// Splits `scheme://host[:port]` and checks every part. Shared by requests and policies.
fn split_tuple(s: &str) -> Result<(&str, &str, Option<u16>, bool), &'static str> {
    // The first ':' nearly always starts "://" (a scheme has no ':'); else the general search.
    let split = match s.find(':') {
        Some(i) if s[i..].starts_with("://") => Some((&s[..i], &s[i + 3..])),
        _ => s.split_once("://"),
    };
    let (scheme, rest) = split.ok_or("it has no \"://\"")?;
    if !is_scheme(scheme) {
        return Err("the scheme is not letters, digits, '+', '-' or '.'");
    }
    let (mut userinfo, mut beyond) = (false, false);
    for &b in rest.as_bytes() {
        match b {
            b'@' => userinfo = true,
            b'/' | b'?' | b'#' | b'\\' => beyond = true,
            _ => {}
        }
    }
    if userinfo {
        return Err("it has userinfo (user@): an origin never does");
    }
    if beyond {
        return Err("it has a path, query or fragment: an origin is only scheme://host[:port]");
    }
    let (host, port_str) = if rest.starts_with('[') {
        match rest.find(']') {
            Some(end) => {
                let (h, tail) = rest.split_at(end + 1);
                match tail {
                    "" => (h, None),
                    t => (
                        h,
                        Some(t.strip_prefix(':').ok_or("junk after the IPv6 host")?),
                    ),
                }
            }
            None => return Err("an IPv6 host is missing its ']'"),
        }
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        }
    };
    host_shape(host)?;
    let mut explicit_default = false;
    let port = match port_str {
        None => None,
        Some(p) => {
            if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err("the port is not a number from 0 to 65535");
            }
            let n: u32 = p
                .parse()
                .map_err(|_| "the port is not a number from 0 to 65535")?;
            let n = u16::try_from(n).map_err(|_| "the port is not a number from 0 to 65535")?;
            if default_port(scheme) == Some(n) {
                explicit_default = true;
                None
            } else {
                Some(n)
            }
        }
    };
    Ok((scheme, host, port, explicit_default))
}

/// Parses one `Origin` header value as a browser would have sent it.
pub fn parse_request_origin(raw: &[u8]) -> RequestOrigin<'_> {
    if raw.is_empty() {
        return RequestOrigin::Invalid(InvalidOrigin::Empty);
    }
    if raw.len() > MAX_ORIGIN_LEN {
        return RequestOrigin::Invalid(InvalidOrigin::TooLong);
    }
    // Visible ASCII only: browsers punycode hosts, and white space is never part of an origin.
    let mut upper = false;
    for &b in raw {
        if !(0x21..0x7f).contains(&b) {
            return RequestOrigin::Invalid(InvalidOrigin::NotAscii);
        }
        upper |= b.is_ascii_uppercase();
    }
    let Ok(s) = std::str::from_utf8(raw) else {
        return RequestOrigin::Invalid(InvalidOrigin::NotAscii);
    };
    if s == "null" {
        return RequestOrigin::Null;
    }
    match split_tuple(s) {
        Ok((scheme, host, port, explicit_default)) => RequestOrigin::Tuple(TupleOrigin {
            scheme,
            host,
            port,
            canonical: !explicit_default && !upper,
        }),
        Err(_) => RequestOrigin::Invalid(InvalidOrigin::Malformed),
    }
}

impl TupleOrigin<'_> {
    /// The lower-case `scheme://host[:port]` used as the exact-match key. Borrowed from the
    /// header in the common case, so matching a browser's origin allocates nothing.
    fn key<'s>(&self, raw: &'s str) -> Cow<'s, str> {
        if self.canonical {
            Cow::Borrowed(raw)
        } else {
            Cow::Owned(canonical(self.scheme, self.host, self.port))
        }
    }
}

fn canonical(scheme: &str, host: &str, port: Option<u16>) -> String {
    let mut s = format!(
        "{}://{}",
        scheme.to_ascii_lowercase(),
        host.to_ascii_lowercase()
    );
    if let Some(p) = port {
        s.push(':');
        s.push_str(&p.to_string());
    }
    s
}

/// One entry of a policy's `allowOrigins` (or a rule's `origins`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginPattern {
    /// `*`: every tuple origin (never `null`).
    Any,
    /// `null`, listed literally.
    Null,
    /// `scheme://host[:port]`, stored lower case, default port dropped.
    Exact(String),
    /// `scheme://*.suffix[:port]`: one or more labels under `suffix`, never `suffix` itself.
    Wildcard {
        scheme: String,
        /// With its leading dot: `.example.com`.
        suffix: String,
        port: Option<u16>,
    },
}

impl OriginPattern {
    /// Parses a configured origin. Errors say what is wrong and how to write it.
    pub fn parse(s: &str) -> Result<OriginPattern, OriginError> {
        if s == "*" {
            return Ok(OriginPattern::Any);
        }
        if s == "null" {
            return Ok(OriginPattern::Null);
        }
        if s.is_empty() {
            return Err(OriginError::new(
                "an origin is empty",
                "write scheme://host[:port], e.g. \"https://app.example.com\"",
            ));
        }
        if !s.is_ascii() {
            return Err(OriginError::new(
                format!("{s:?} has non-ASCII characters; browsers send hosts in punycode"),
                "write the host's xn-- (punycode) form",
            ));
        }
        if s.bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(OriginError::new(
                format!("{s:?} contains white space"),
                "remove the spaces; list each origin as its own entry",
            ));
        }
        let without_star = match s.split_once("://") {
            Some((scheme, rest)) => {
                format!("{scheme}://{}", rest.strip_prefix("*.").unwrap_or(rest))
            }
            None => s.to_string(),
        };
        if s.ends_with('/') && split_tuple(without_star.trim_end_matches('/')).is_ok() {
            return Err(OriginError::new(
                format!(
                    "{s:?} ends with '/', but a browser's Origin never does, so it would never match"
                ),
                format!("write {:?}", s.trim_end_matches('/')),
            ));
        }
        // A leading "*." label makes a wildcard; the rest must be an ordinary origin.
        let (wildcard, tuple) = match s.split_once("://") {
            Some((scheme, rest)) if rest.starts_with("*.") => {
                (true, format!("{scheme}://{}", &rest[2..]))
            }
            _ => (false, s.to_string()),
        };
        if tuple
            .split_once("://")
            .is_some_and(|(_, rest)| rest.contains('*'))
        {
            return Err(OriginError::new(
                format!("{s:?} has a '*' that is not the whole first label"),
                "use one leading \"*.\" label (\"https://*.example.com\") or allowOriginPatterns for anything else",
            ));
        }
        let (scheme, host, port, _) = split_tuple(&tuple).map_err(|why| {
            OriginError::new(
                format!("{s:?} is not an origin: {why}"),
                "write scheme://host[:port], e.g. \"https://app.example.com\" or \"https://*.example.com\"",
            )
        })?;
        let scheme = scheme.to_ascii_lowercase();
        let host = host.to_ascii_lowercase();
        if wildcard {
            return Ok(OriginPattern::Wildcard {
                scheme,
                suffix: format!(".{host}"),
                port,
            });
        }
        Ok(OriginPattern::Exact(canonical(&scheme, &host, port)))
    }
}

/// A policy's origin patterns, compiled when a request first needs them. Validation has
/// compiled them once already (its errors are the field errors) and dropped the result: a
/// compiled set holds about 7 KiB, so 10,000 policies held 70 MiB of regexes, most never
/// used (issue 14). Clones share the one compiled set.
#[derive(Debug, Clone)]
pub struct Patterns {
    sources: Arc<[String]>,
    set: Arc<OnceLock<Option<RegexSet>>>,
}

impl Patterns {
    /// Patterns already checked by [`compile_patterns`]; `None` when there are none.
    pub fn checked(sources: &[String]) -> Option<Patterns> {
        (!sources.is_empty()).then(|| Patterns {
            sources: sources.into(),
            set: Arc::default(),
        })
    }

    /// Whether one of the patterns matches the whole of `origin`.
    pub fn is_match(&self, origin: &str) -> bool {
        self.set
            .get_or_init(|| match compile_patterns(&self.sources) {
                Ok(set) => set,
                // Validated before, so this cannot happen; if it did, nothing matches.
                Err((i, e)) => {
                    tracing::error!(pattern = i, error = %e.message, "origin pattern no longer compiles");
                    None
                }
            })
            .as_ref()
            .is_some_and(|set| set.is_match(origin))
    }
}

/// Builds `^(?:pattern)$` so a configured regex must match the whole origin.
pub fn compile_patterns(patterns: &[String]) -> Result<Option<RegexSet>, (usize, OriginError)> {
    judged(patterns, |ps, limit| {
        RegexSetBuilder::new(ps.iter().map(|p| anchored(p)))
            .size_limit(limit)
            .build()
    })
}

/// Runs `build` (given patterns, not yet anchored, and a size limit) the way a policy's
/// patterns are judged: each alone under [`REGEX_SIZE_LIMIT`], to name the bad entry, then
/// the set under four times that, its error reported at index 0. One pattern (the usual
/// case) is built once (issue 14: 10,000 policies built every pattern twice). `None` when
/// there are no patterns.
fn judged<T>(
    patterns: &[String],
    build: impl Fn(&[String], usize) -> Result<T, regex::Error>,
) -> Result<Option<T>, (usize, OriginError)> {
    let Some(first) = patterns.first() else {
        return Ok(None);
    };
    if patterns.len() > 1 {
        for (i, p) in patterns.iter().enumerate() {
            build(std::slice::from_ref(p), REGEX_SIZE_LIMIT)
                .map_err(|e| (i, regex_error(p, &e)))?;
        }
    }
    let limit = if patterns.len() > 1 {
        REGEX_SIZE_LIMIT * 4
    } else {
        REGEX_SIZE_LIMIT
    };
    build(patterns, limit)
        .map(Some)
        .map_err(|e| (0, regex_error(first, &e)))
}

fn anchored(p: &str) -> String {
    format!("^(?:{p})$")
}

fn regex_error(p: &str, e: &regex::Error) -> OriginError {
    let detail = e.to_string();
    let first = detail.lines().last().unwrap_or("invalid").trim();
    OriginError::new(
        format!("{p:?} is not a valid regular expression: {first}"),
        "use Rust regex syntax (no look-around or back-references); escape dots as \\.",
    )
}

/// How an origin was allowed: which header value to send depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginMatch {
    /// Matched an exact entry, a wildcard, a pattern or `null`: reflect the origin.
    Listed,
    /// Matched only `*`.
    Any,
}

/// Everything a policy (or one rule) allows as origin, ready for per-request lookups.
#[derive(Debug, Clone, Default)]
pub struct OriginMatcher {
    any: bool,
    null: bool,
    /// foldhash (seeded per process) rather than SipHash: looked up on every CORS request,
    /// by the header's bytes (no UTF-8 check first).
    exact: HashSet<Box<[u8]>, foldhash::fast::RandomState>,
    wildcards: Vec<(String, String, Option<u16>)>,
    patterns: Option<Patterns>,
}

impl OriginMatcher {
    pub fn new(origins: &[OriginPattern], patterns: Option<Patterns>) -> OriginMatcher {
        let mut m = OriginMatcher {
            patterns,
            ..OriginMatcher::default()
        };
        for o in origins {
            match o {
                OriginPattern::Any => m.any = true,
                OriginPattern::Null => m.null = true,
                OriginPattern::Exact(s) => {
                    m.exact.insert(s.as_bytes().into());
                }
                OriginPattern::Wildcard {
                    scheme,
                    suffix,
                    port,
                } => {
                    m.wildcards.push((scheme.clone(), suffix.clone(), *port));
                }
            }
        }
        m
    }

    /// Whether `raw`, byte for byte, is one of the exact origins. Those are stored in
    /// canonical form, so a hit is a valid, canonical origin: the request path can skip
    /// parsing it (issue 14).
    pub fn lists_exactly(&self, raw: &[u8]) -> bool {
        !self.exact.is_empty() && self.exact.contains(raw)
    }

    /// Matches a request's origin. `raw` is the header value (already known to be ASCII).
    pub fn matches(&self, origin: &RequestOrigin<'_>, raw: &str) -> Option<OriginMatch> {
        match origin {
            RequestOrigin::Invalid(_) => None,
            RequestOrigin::Null => self.null.then_some(OriginMatch::Listed),
            RequestOrigin::Tuple(t) => {
                if !self.exact.is_empty() && self.exact.contains(t.key(raw).as_bytes()) {
                    return Some(OriginMatch::Listed);
                }
                for (scheme, suffix, port) in &self.wildcards {
                    if t.port == *port
                        && t.scheme.eq_ignore_ascii_case(scheme)
                        && t.host.len() > suffix.len()
                        && t.host.as_bytes()[t.host.len() - suffix.len()..]
                            .eq_ignore_ascii_case(suffix.as_bytes())
                    {
                        return Some(OriginMatch::Listed);
                    }
                }
                if let Some(set) = &self.patterns
                    && set.is_match(raw)
                {
                    return Some(OriginMatch::Listed);
                }
                self.any.then_some(OriginMatch::Any)
            }
        }
    }
}

#[cfg(test)]
mod tests;
