//! `classify` reads an OPTIONS request's headers in one pass: it must give what looking each
//! header up (the first value of each name, `HeaderMap::get`) gives.

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use proptest::prelude::*;

use super::{CorsRequest, classify};

/// The definition `classify` must agree with: one lookup per header.
fn by_lookups(method: &Method, headers: &HeaderMap) -> CorsRequest {
    let mut values = headers.get_all(http::header::ORIGIN).iter();
    let origin = values.next().cloned();
    let multiple_origins = values.next().is_some();
    let preflight = (origin.is_some() && method == Method::OPTIONS)
        .then(|| headers.get(http::header::ACCESS_CONTROL_REQUEST_METHOD))
        .flatten()
        .map(|m| super::Preflight {
            method: m.clone(),
            headers: headers
                .get(http::header::ACCESS_CONTROL_REQUEST_HEADERS)
                .cloned(),
            private_network: headers
                .get("access-control-request-private-network")
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true")),
        });
    CorsRequest {
        origin,
        multiple_origins,
        preflight,
    }
}

fn summary(r: &CorsRequest) -> String {
    format!(
        "{:?} {} {:?}",
        r.origin,
        r.multiple_origins,
        r.preflight
            .as_ref()
            .map(|p| (p.method.clone(), p.headers.clone(), p.private_network))
    )
}

const NAMES: [&str; 6] = [
    "origin",
    "access-control-request-method",
    "access-control-request-headers",
    "access-control-request-private-network",
    "x-other",
    "host",
];
const VALUES: [&str; 5] = ["https://a.test", "PUT", "x-a, x-b", "TRUE", "false"];

proptest! {
    #[test]
    fn one_pass_agrees_with_one_lookup_per_header(
        headers in proptest::collection::vec((0..NAMES.len(), 0..VALUES.len()), 0..10),
        options in any::<bool>(),
    ) {
        let mut map = HeaderMap::new();
        for (n, v) in headers {
            map.append(HeaderName::from_static(NAMES[n]), HeaderValue::from_static(VALUES[v]));
        }
        let method = if options { Method::OPTIONS } else { Method::GET };
        prop_assert_eq!(summary(&classify(&method, &map)), summary(&by_lookups(&method, &map)));
    }
}

#[test]
fn a_preflight_with_every_header_twice_takes_the_first_of_each() {
    let mut map = HeaderMap::new();
    for (n, v) in [
        ("origin", "https://a.test"),
        ("access-control-request-method", "PUT"),
        ("access-control-request-method", "DELETE"),
        ("origin", "https://b.test"),
        ("access-control-request-private-network", "true"),
        ("access-control-request-private-network", "false"),
    ] {
        map.append(HeaderName::from_static(n), HeaderValue::from_static(v));
    }
    let r = classify(&Method::OPTIONS, &map);
    assert_eq!(r.origin, Some(HeaderValue::from_static("https://a.test")));
    assert!(r.multiple_origins);
    let pf = r.preflight.expect("a preflight");
    assert_eq!(pf.method, "PUT");
    assert!(pf.private_network && pf.headers.is_none());
}
