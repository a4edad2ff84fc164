//! The one parser of a request's host: the authority of `Host`, `:authority` or an
//! absolute-form target (RFC 9110 §7.2: `uri-host [ ":" port ]`, no userinfo), checked and
//! normalised to what routing matches on — lower case, no port, no trailing dot.
//!
//! Stricter than RFC 3986's reg-name on purpose: a policy's hosts are DNS names, so a host
//! is letters, digits, '-', '_' and '.', an IPv4 address, or a bracketed IPv6 address.
//! Anything else (`api.example.test:1@other.example.test`, a port `:abc` or `:99999`) is an
//! error the proxy answers with 400, where a backend parsing the authority its own way could
//! otherwise see another host than the edge routed on (issue 13 item 4).

use std::borrow::Cow;

use crate::policy::limits::DNS_NAME_MAX;

/// Why an authority is not a valid host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("the host is empty")]
    Empty,
    #[error("it carries userinfo ('@'), which a Host never has")]
    UserInfo,
    #[error("the host has a character other than letters, digits, '-', '_' and '.'")]
    Char,
    #[error("the host has an empty label ('..' or a leading '.')")]
    EmptyLabel,
    #[error("the host is longer than {DNS_NAME_MAX} characters")]
    TooLong,
    #[error("the IPv6 address in brackets is invalid")]
    Ipv6,
    #[error("the port is not a number")]
    PortNotNumber,
    #[error("the port is above 65535")]
    PortRange,
}

/// A valid host, borrowed from the authority it was parsed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host<'a> {
    /// Lower case, no port, no trailing dot: what routing matches on. Brackets kept for IPv6.
    pub name: Cow<'a, str>,
    /// The port as sent (1 to 5 digits, at most 65535); `None` when absent or empty.
    pub port: Option<&'a str>,
    /// The authority was already `name[:port]`: it can be sent on as it is, unchanged.
    pub normal: bool,
}

impl Host<'_> {
    /// `name[:port]`: the normalised authority, as sent upstream.
    pub fn authority(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{p}", self.name),
            None => self.name.to_string(),
        }
    }
}

/// Parses and normalises an authority. Borrowed, with no allocation, when the name is
/// already lower case — the common case.
pub fn parse_host(authority: &str) -> Result<Host<'_>, HostError> {
    let b = authority.as_bytes();
    // Upper case in the name (an IPv6 literal's is looked for below).
    let mut upper = false;
    // The end of the name (exclusive) and where the port text starts.
    let (name_end, rest) = if b.first() == Some(&b'[') {
        let close = b.iter().position(|c| *c == b']').ok_or(HostError::Ipv6)?;
        let inner = &authority[1..close];
        if inner.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(HostError::Ipv6);
        }
        (close + 1, &authority[close + 1..])
    } else {
        // One pass up to the port: characters, empty labels, and upper case seen.
        let mut prev_dot = true;
        let mut end = b.len();
        for (i, &c) in b.iter().enumerate() {
            match c {
                b':' => {
                    end = i;
                    break;
                }
                b'.' if prev_dot => return Err(HostError::EmptyLabel),
                b'.' => prev_dot = true,
                b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => prev_dot = false,
                b'A'..=b'Z' => {
                    prev_dot = false;
                    upper = true;
                }
                b'@' => return Err(HostError::UserInfo),
                _ => return Err(HostError::Char),
            }
        }
        (end, &authority[end..])
    };
    let port = match rest.as_bytes() {
        [] | [b':'] => None,
        [b':', digits @ ..] => {
            if b[name_end..].contains(&b'@') {
                return Err(HostError::UserInfo);
            }
            if !digits.iter().all(u8::is_ascii_digit) {
                return Err(HostError::PortNotNumber);
            }
            if digits.len() > 5
                || digits
                    .iter()
                    .fold(0u32, |n, d| n * 10 + u32::from(d - b'0'))
                    > 65535
            {
                return Err(HostError::PortRange);
            }
            Some(&rest[1..])
        }
        // Only an IPv6 literal can be followed by something other than ':'.
        _ if rest.contains('@') => return Err(HostError::UserInfo),
        _ => return Err(HostError::Ipv6),
    };
    let raw = &authority[..name_end];
    let name = raw.strip_suffix('.').unwrap_or(raw);
    if name.is_empty() {
        return Err(HostError::Empty);
    }
    if name.len() > DNS_NAME_MAX {
        return Err(HostError::TooLong);
    }
    let trimmed = name.len() != raw.len() || rest == ":";
    if b.first() == Some(&b'[') {
        upper = name.bytes().any(|c| c.is_ascii_uppercase());
    }
    let name = if upper {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    };
    let normal = !trimmed && matches!(name, Cow::Borrowed(_));
    Ok(Host { name, port, normal })
}

/// The routing name of an authority; an invalid one routes nowhere (empty). For callers
/// that only need the name (`explain`, tests); the proxy uses [`parse_host`] and answers an
/// invalid host with 400.
pub fn normalize_host(authority: &str) -> Cow<'_, str> {
    parse_host(authority).map_or(Cow::Borrowed(""), |h| h.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_hosts_normalise() {
        for (input, name, port, normal) in [
            ("api.example.test", "api.example.test", None, true),
            (
                "api.example.test:8080",
                "api.example.test",
                Some("8080"),
                true,
            ),
            ("API.Example.test", "api.example.test", None, false),
            ("api.example.test.", "api.example.test", None, false),
            (
                "api.example.test.:80",
                "api.example.test",
                Some("80"),
                false,
            ),
            ("api.example.test:", "api.example.test", None, false),
            ("127.0.0.1:9", "127.0.0.1", Some("9"), true),
            ("[::1]:8080", "[::1]", Some("8080"), true),
            ("[::1]", "[::1]", None, true),
            (
                "my_host.internal:65535",
                "my_host.internal",
                Some("65535"),
                true,
            ),
        ] {
            let h = parse_host(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(
                (h.name.as_ref(), h.port, h.normal),
                (name, port, normal),
                "{input}"
            );
        }
    }

    #[test]
    fn invalid_authorities_are_refused_with_the_reason() {
        for (input, err) in [
            ("api.example.test:1@other.example.test", HostError::UserInfo),
            ("user@api.example.test", HostError::UserInfo),
            ("api.example.test:abc", HostError::PortNotNumber),
            ("api.example.test:99999", HostError::PortRange),
            ("api.example.test:123456", HostError::PortRange),
            ("api.example.test:-1", HostError::PortNotNumber),
            ("", HostError::Empty),
            (":80", HostError::Empty),
            (".", HostError::EmptyLabel),
            ("a..b", HostError::EmptyLabel),
            (".a", HostError::EmptyLabel),
            ("a b", HostError::Char),
            ("a/b", HostError::Char),
            ("a%2eb", HostError::Char),
            ("[::1", HostError::Ipv6),
            ("[nope]:80", HostError::Ipv6),
            ("[::1]x", HostError::Ipv6),
            ("[::1]@evil", HostError::UserInfo),
        ] {
            assert_eq!(parse_host(input), Err(err), "{input:?}");
        }
        let long = format!("{}.test", "a".repeat(250));
        assert_eq!(parse_host(&long), Err(HostError::TooLong));
    }

    #[test]
    fn normalised_authority_keeps_the_port() {
        let h = parse_host("API.example.test.:8443").expect("valid");
        assert_eq!(h.authority(), "api.example.test:8443");
        assert_eq!(normalize_host("a:1@b"), "");
    }
}
