//! `Vary` and the `Access-Control-*` response headers of an upstream response.
//!
//! Every response on a CORS route depends on `Origin`, so it must say so, or a shared cache
//! serves one origin's answer to another (tower-http#198, #397, #598: missing, clobbered,
//! doubled). `Origin` is added once, merged into whatever the upstream already varies on.

use http::header::{HeaderMap, HeaderValue, VARY};

/// Adds `Origin` to `Vary` unless it is already there (or `Vary: *`, which covers it).
/// Several upstream `Vary` lines become one.
pub fn merge_vary_origin(headers: &mut HeaderMap) {
    let mut seen = 0usize;
    for value in headers.get_all(VARY) {
        for token in value.as_bytes().split(|b| *b == b',') {
            let token = token.trim_ascii();
            if token == b"*" || token.eq_ignore_ascii_case(b"origin") {
                return;
            }
        }
        seen += 1;
    }
    if seen == 0 {
        headers.insert(VARY, HeaderValue::from_static("Origin"));
        return;
    }
    let mut combined: Vec<u8> = Vec::new();
    for value in headers.get_all(VARY) {
        let v = value.as_bytes().trim_ascii();
        if v.is_empty() {
            continue;
        }
        if !combined.is_empty() {
            combined.extend_from_slice(b", ");
        }
        combined.extend_from_slice(v);
    }
    if !combined.is_empty() {
        combined.extend_from_slice(b", ");
    }
    combined.extend_from_slice(b"Origin");
    // Every byte came from valid header values plus ASCII: this cannot fail, but never panic.
    if let Ok(v) = HeaderValue::from_bytes(&combined) {
        headers.insert(VARY, v);
    }
}

/// True when the upstream sent any `Access-Control-*` header.
pub fn has_cors_headers(headers: &HeaderMap) -> bool {
    headers
        .keys()
        .any(|k| k.as_str().starts_with("access-control-"))
}

/// Removes every `Access-Control-*` header (the edge's decision replaces the upstream's).
pub fn strip_cors_headers(headers: &mut HeaderMap) {
    if !has_cors_headers(headers) {
        return;
    }
    let names: Vec<_> = headers
        .keys()
        .filter(|k| k.as_str().starts_with("access-control-"))
        .cloned()
        .collect();
    for n in names {
        headers.remove(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vary_of(h: &HeaderMap) -> Vec<&str> {
        h.get_all(VARY)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    }

    #[test]
    fn adds_origin_when_absent() {
        let mut h = HeaderMap::new();
        merge_vary_origin(&mut h);
        assert_eq!(vary_of(&h), ["Origin"]);
        merge_vary_origin(&mut h);
        assert_eq!(vary_of(&h), ["Origin"], "never doubled");
    }

    #[test]
    fn merges_with_upstream_values_into_one_line() {
        let mut h = HeaderMap::new();
        h.append(VARY, HeaderValue::from_static("Accept-Encoding"));
        h.append(VARY, HeaderValue::from_static("Accept-Language, Cookie"));
        merge_vary_origin(&mut h);
        assert_eq!(
            vary_of(&h),
            ["Accept-Encoding, Accept-Language, Cookie, Origin"]
        );
    }

    #[test]
    fn keeps_upstream_origin_and_star() {
        for v in ["origin", "Accept-Encoding, ORIGIN", "*"] {
            let mut h = HeaderMap::new();
            h.insert(VARY, HeaderValue::from_static(v));
            merge_vary_origin(&mut h);
            assert_eq!(vary_of(&h), [v]);
        }
    }

    #[test]
    fn strips_every_access_control_header() {
        let mut h = HeaderMap::new();
        h.insert("access-control-allow-origin", HeaderValue::from_static("*"));
        h.insert(
            "access-control-allow-credentials",
            HeaderValue::from_static("true"),
        );
        h.insert("x-keep", HeaderValue::from_static("1"));
        strip_cors_headers(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-keep"));
    }
}
