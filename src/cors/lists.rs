//! The configured lists of methods and header names, each compiled once into what a request
//! is checked against and the header value that is sent.

use http::{HeaderName, HeaderValue};

/// Is `s` an HTTP token (RFC 9110 §5.6.2)? Methods and header names must be.
pub fn is_token(s: &str) -> bool {
    is_token_bytes(s.as_bytes())
}

/// [`is_token`] on bytes: one table lookup per byte (checked on every requested header name).
pub fn is_token_bytes(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|b| TCHAR[usize::from(*b)])
}

/// `tchar` of RFC 9110 §5.6.2, indexed by byte.
static TCHAR: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        b += 1;
    }
    t
};

/// Fetch normalises these six methods to upper case (<https://fetch.spec.whatwg.org/#concept-method-normalize>);
/// every other method is compared byte for byte.
pub fn normalize_method(m: &str) -> String {
    const NORMALIZED: [&str; 6] = ["DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT"];
    NORMALIZED
        .iter()
        .find(|n| n.eq_ignore_ascii_case(m))
        .map_or_else(|| m.to_string(), |n| n.to_string())
}

fn join(items: &[String]) -> Option<HeaderValue> {
    if items.is_empty() {
        return None;
    }
    HeaderValue::from_str(&items.join(", ")).ok()
}

/// `allowMethods`: `*` or a list of methods.
#[derive(Debug, Clone)]
pub struct MethodList {
    any: bool,
    methods: Vec<String>,
    value: Option<HeaderValue>,
}

impl MethodList {
    /// `methods` are validated tokens (see `is_token`) or `*`.
    pub fn new(methods: &[String]) -> MethodList {
        let any = methods.iter().any(|m| m == "*");
        let mut list: Vec<String> = Vec::new();
        for m in methods
            .iter()
            .filter(|m| *m != "*")
            .map(|m| normalize_method(m))
        {
            if !list.contains(&m) {
                list.push(m);
            }
        }
        let value = if any {
            Some(HeaderValue::from_static("*"))
        } else {
            join(&list)
        };
        MethodList {
            any,
            methods: list,
            value,
        }
    }

    pub fn any(&self) -> bool {
        self.any
    }

    pub fn allows(&self, method: &[u8]) -> bool {
        self.any || self.methods.iter().any(|m| m.as_bytes() == method)
    }

    /// The `Access-Control-Allow-Methods` value for the list (`*` when any).
    pub fn value(&self) -> Option<&HeaderValue> {
        self.value.as_ref()
    }

    pub fn items(&self) -> impl Iterator<Item = &str> {
        self.any
            .then_some("*")
            .into_iter()
            .chain(self.methods.iter().map(String::as_str))
    }
}

/// `allowHeaders` or `exposeHeaders`: `*` and/or header names, lower case.
#[derive(Debug, Clone)]
pub struct HeaderList {
    any: bool,
    names: Vec<String>,
    value: Option<HeaderValue>,
}

impl HeaderList {
    /// `names` are validated tokens or `*`.
    pub fn new(names: &[String]) -> HeaderList {
        let any = names.iter().any(|n| n == "*");
        let mut list: Vec<String> = Vec::new();
        for n in names.iter().map(|n| n.to_ascii_lowercase()) {
            if !list.contains(&n) {
                list.push(n);
            }
        }
        let value = join(&list);
        list.retain(|n| n != "*");
        HeaderList {
            any,
            names: list,
            value,
        }
    }

    pub fn any(&self) -> bool {
        self.any
    }

    pub fn is_empty(&self) -> bool {
        !self.any && self.names.is_empty()
    }

    /// Is the request header `name` allowed? `*` covers every name but `authorization`,
    /// which Fetch requires to be listed by name (<https://fetch.spec.whatwg.org/#cors-preflight-fetch>, step 7.6).
    pub fn allows(&self, name: &str) -> bool {
        self.allows_bytes(name.as_bytes())
    }

    /// [`HeaderList::allows`] on a request's bytes.
    pub fn allows_bytes(&self, name: &[u8]) -> bool {
        // `names` are lower case, and so is what browsers send (Fetch lowercases the
        // requested names): one memcmp finds them, the byte-wise fold is the fallback.
        self.names.iter().any(|n| {
            n.len() == name.len()
                && (n.as_bytes() == name || n.as_bytes().eq_ignore_ascii_case(name))
        }) || (self.any && !name.eq_ignore_ascii_case(b"authorization"))
    }

    /// The configured list as one header value, `*` included when configured.
    pub fn value(&self) -> Option<&HeaderValue> {
        self.value.as_ref()
    }

    /// Names without `*`.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn items(&self) -> impl Iterator<Item = &str> {
        self.any
            .then_some("*")
            .into_iter()
            .chain(self.names.iter().map(String::as_str))
    }
}

/// Iterates the names of an `Access-Control-Request-Headers` value: comma-separated,
/// optional white space, empty elements skipped.
pub fn split_header_list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|b| *b == b',')
        .map(trim_ows)
        .filter(|s| !s.is_empty())
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Response headers a page can always read, without `Access-Control-Expose-Headers`
/// (<https://fetch.spec.whatwg.org/#cors-safelisted-response-header-name>).
pub fn is_safelisted_response_header(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "cache-control"
            | "content-language"
            | "content-length"
            | "content-type"
            | "expires"
            | "last-modified"
            | "pragma"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn methods_normalise_the_six_and_compare_others_exactly() {
        let m = MethodList::new(&strings(&["get", "put", "PATCH"]));
        assert!(m.allows(b"GET") && m.allows(b"PUT") && m.allows(b"PATCH"));
        assert!(!m.allows(b"patch") && !m.allows(b"DELETE"));
        assert_eq!(m.value().unwrap(), "GET, PUT, PATCH");
        let any = MethodList::new(&strings(&["*"]));
        assert!(any.allows(b"PROPFIND"));
        assert_eq!(any.value().unwrap(), "*");
    }

    #[test]
    fn tokens_are_rfc_9110_tchars() {
        for ok in ["content-type", "X-Custom_1", "!#$%&'*+-.^_`|~", "a"] {
            assert!(is_token(ok), "{ok}");
        }
        for bad in [
            "",
            "a b",
            "a,b",
            "a:b",
            "caf\u{e9}",
            "a\"b",
            "(x)",
            "a\tb",
            "\u{7f}",
        ] {
            assert!(!is_token(bad), "{bad:?}");
        }
        for b in 0..=255u8 {
            let by_rule = b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
            assert_eq!(is_token_bytes(&[b]), by_rule, "byte {b}");
        }
    }

    #[test]
    fn star_never_covers_authorization() {
        let h = HeaderList::new(&strings(&["*"]));
        assert!(h.allows("x-anything") && h.allows("Content-Type"));
        assert!(!h.allows("authorization") && !h.allows("Authorization"));
        let named = HeaderList::new(&strings(&["*", "Authorization"]));
        assert!(named.allows("authorization"));
        assert_eq!(named.value().unwrap(), "*, authorization");
    }

    #[test]
    fn header_lists_split_like_fetch() {
        let got: Vec<&[u8]> = split_header_list(b" content-type ,x-custom,,\tx-b ").collect();
        assert_eq!(got, vec![&b"content-type"[..], b"x-custom", b"x-b"]);
        assert_eq!(split_header_list(b"").count(), 0);
    }

    proptest! {
        #[test]
        fn splitting_never_panics_and_yields_trimmed_parts(v in proptest::collection::vec(any::<u8>(), 0..200)) {
            for part in split_header_list(&v) {
                prop_assert!(!part.is_empty());
                prop_assert!(!part.starts_with(b" ") && !part.ends_with(b" "));
                prop_assert!(!part.contains(&b','));
            }
        }

        #[test]
        fn listed_names_are_allowed_in_any_case(names in proptest::collection::vec("[a-z][a-z0-9-]{0,12}", 1..6)) {
            let list = HeaderList::new(&names);
            for n in &names {
                prop_assert!(list.allows(&n.to_ascii_uppercase()));
            }
        }
    }
}
