//! Which host a request names, checked before routing (issue 13 item 4): exactly one `Host`
//! (RFC 9112 §3.2: a second one, or none in HTTP/1.1, is a 400), an absolute-form target's
//! authority over `Host` (RFC 9112 §3.2.2), HTTP/2's `:authority` agreeing with any `host`
//! header (RFC 9113 §8.3.1), and the authority valid as `config::parse_host` defines it.
//! What goes upstream as `Host` is the normalised authority the request was routed on.

use http::header::{self, HeaderMap, HeaderValue};
use http::{Uri, Version};
use std::cell::RefCell;
use std::sync::Arc;

use crate::config::{HostError, parse_host};

/// Why the edge refuses a request's host (400).
#[derive(Debug, thiserror::Error)]
pub enum InvalidHost {
    #[error("the request has no Host header")]
    Missing,
    #[error("the request has more than one Host header")]
    Multiple,
    #[error("the host is not visible ASCII")]
    NotAscii,
    #[error("invalid host {value:?}: {source}")]
    Invalid {
        value: String,
        #[source]
        source: HostError,
    },
    #[error(":authority {authority:?} and the host header {host:?} name different hosts")]
    Mismatch { authority: String, host: String },
}

/// The host a request was routed on: `value` (`name[:port]`, normalised) is what goes
/// upstream as `Host` and `X-Forwarded-Host`; `name` is what the routing table matches.
#[derive(Debug, Clone)]
pub struct RequestHost {
    pub value: HeaderValue,
    name: Arc<str>,
}

impl RequestHost {
    /// Lower case, no port, no trailing dot: what the routing table matches.
    pub fn name(&self) -> &str {
        &self.name
    }
}

thread_local! {
    /// The last authority this thread checked and what it gave. A keep-alive client names
    /// the same host on every request, and `parse_host` is a pure function of the bytes, so
    /// an identical value is not checked again. Owned copies: holding the request's own
    /// bytes would keep its connection's read buffer alive.
    static LAST_CHECKED: RefCell<Option<(HeaderValue, RequestHost)>> = const { RefCell::new(None) };
}

/// Checks one authority and normalises it, or gives what the same bytes gave last time on
/// this thread.
fn check(value: &HeaderValue) -> Result<RequestHost, InvalidHost> {
    let hit = LAST_CHECKED.with_borrow(|last| {
        last.as_ref()
            .filter(|(seen, _)| seen.as_bytes() == value.as_bytes())
            .map(|(_, host)| host.clone())
    });
    if let Some(host) = hit {
        return Ok(host);
    }
    let host = check_uncached(value)?;
    let copy = |v: &HeaderValue| {
        HeaderValue::from_maybe_shared(bytes::Bytes::copy_from_slice(v.as_bytes()))
            .map_err(|_| InvalidHost::NotAscii)
    };
    let seen = copy(value)?;
    let owned = RequestHost {
        value: if host.value == seen {
            seen.clone()
        } else {
            copy(&host.value)?
        },
        name: host.name,
    };
    LAST_CHECKED.set(Some((seen, owned.clone())));
    Ok(owned)
}

fn check_uncached(value: &HeaderValue) -> Result<RequestHost, InvalidHost> {
    let text = value.to_str().map_err(|_| InvalidHost::NotAscii)?;
    let host = parse_host(text).map_err(|source| InvalidHost::Invalid {
        value: text.to_string(),
        source,
    })?;
    let value = if host.normal {
        value.clone()
    } else {
        // Only ASCII went in, so this cannot fail; a failure would be reported, not panic.
        HeaderValue::from_str(&host.authority()).map_err(|_| InvalidHost::NotAscii)?
    };
    Ok(RequestHost {
        value,
        name: Arc::from(host.name.as_ref()),
    })
}

/// The request's host, or why it has none the edge accepts. `None`: an HTTP/1.0 request
/// without a host, which routes nowhere (404), as before HTTP/1.1 made Host mandatory.
pub fn request_host(
    version: Version,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Option<RequestHost>, InvalidHost> {
    let mut hosts = headers.get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(InvalidHost::Multiple);
    }
    let from_uri = uri
        .authority()
        .map(|a| HeaderValue::from_str(a.as_str()).map_err(|_| InvalidHost::NotAscii))
        .transpose()?;
    match (from_uri, host) {
        (Some(authority), Some(host)) if version == Version::HTTP_2 => {
            let (a, h) = (check(&authority)?, check(host)?);
            if a.value != h.value {
                return Err(InvalidHost::Mismatch {
                    authority: String::from_utf8_lossy(authority.as_bytes()).into_owned(),
                    host: String::from_utf8_lossy(host.as_bytes()).into_owned(),
                });
            }
            Ok(Some(a))
        }
        // HTTP/1.1 absolute-form: the target's authority wins and Host is ignored.
        (Some(authority), _) => check(&authority).map(Some),
        (None, Some(host)) => check(host).map(Some),
        (None, None) if version == Version::HTTP_10 || version == Version::HTTP_09 => Ok(None),
        (None, None) => Err(InvalidHost::Missing),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host_of(version: Version, uri: &str, hosts: &[&str]) -> Result<Option<String>, String> {
        let mut h = HeaderMap::new();
        for v in hosts {
            h.append(
                header::HOST,
                HeaderValue::from_str(v).map_err(|e| e.to_string())?,
            );
        }
        let uri: Uri = uri
            .parse()
            .map_err(|e: http::uri::InvalidUri| e.to_string())?;
        request_host(version, &uri, &h)
            .map(|o| o.map(|r| format!("{} {:?}", r.name(), r.value)))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn host_sources_in_order() {
        let v11 = Version::HTTP_11;
        assert_eq!(
            host_of(v11, "/", &["API.example.test.:8080"]),
            Ok(Some("api.example.test \"api.example.test:8080\"".into()))
        );
        assert_eq!(
            host_of(v11, "http://api.example.test/x", &["other.example.test"]),
            Ok(Some("api.example.test \"api.example.test\"".into())),
            "absolute-form wins over Host"
        );
        assert_eq!(
            host_of(v11, "/", &[]),
            Err("the request has no Host header".into())
        );
        assert_eq!(host_of(Version::HTTP_10, "/", &[]), Ok(None));
        assert_eq!(
            host_of(v11, "/", &["a.test", "b.test"]),
            Err("the request has more than one Host header".into())
        );
        let v2 = Version::HTTP_2;
        assert_eq!(
            host_of(v2, "https://a.test/", &["A.test"]),
            Ok(Some("a.test \"a.test\"".into()))
        );
        assert!(host_of(v2, "https://a.test/", &["b.test"]).is_err());
        assert!(host_of(v2, "https://a.test:1/", &["a.test"]).is_err());
    }

    #[test]
    fn the_last_checked_host_is_remembered_by_its_exact_bytes() {
        let v11 = Version::HTTP_11;
        let upper = Ok(Some("api.example.test \"api.example.test:8080\"".into()));
        // Twice the same unnormalised bytes: both normalised (the second from the memo).
        assert_eq!(host_of(v11, "/", &["API.example.test.:8080"]), upper);
        assert_eq!(host_of(v11, "/", &["API.example.test.:8080"]), upper);
        // Other bytes are checked afresh, errors included, and never replace a good entry
        // with a wrong answer.
        assert_eq!(
            host_of(v11, "/", &["api.example.test"]),
            Ok(Some("api.example.test \"api.example.test\"".into()))
        );
        assert!(host_of(v11, "/", &["api..example.test"]).is_err());
        assert!(host_of(v11, "/", &["api.example.test:99999"]).is_err());
        assert_eq!(
            host_of(v11, "/", &["api.example.test"]),
            Ok(Some("api.example.test \"api.example.test\"".into()))
        );
        // The memo holds a copy, not the request's bytes.
        let sent = HeaderValue::from_static("b.example.test");
        let mut h = HeaderMap::new();
        h.insert(header::HOST, sent);
        let got = request_host(v11, &Uri::from_static("/"), &h).map_err(|e| e.to_string());
        let host = got.ok().flatten().map(|r| r.value);
        assert_eq!(
            host.as_ref().map(HeaderValue::as_bytes),
            Some(&b"b.example.test"[..])
        );
        assert_ne!(
            host.map(|v| v.as_bytes().as_ptr()),
            h.get(header::HOST).map(|v| v.as_bytes().as_ptr()),
            "the routed value is the memo's own copy"
        );
    }
}
