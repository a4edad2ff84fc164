use super::*;
use proptest::prelude::*;

fn matcher(origins: &[&str], patterns: &[&str]) -> OriginMatcher {
    let parsed: Vec<_> = origins
        .iter()
        .map(|o| OriginPattern::parse(o).unwrap())
        .collect();
    let pats: Vec<String> = patterns.iter().map(|s| s.to_string()).collect();
    compile_patterns(&pats).unwrap();
    OriginMatcher::new(&parsed, Patterns::checked(&pats))
}

fn allows(m: &OriginMatcher, raw: &str) -> Option<OriginMatch> {
    m.matches(&parse_request_origin(raw.as_bytes()), raw)
}

#[test]
fn exact_origins_resist_suffix_prefix_scheme_and_port_attacks() {
    let m = matcher(&["https://example.com"], &[]);
    assert_eq!(allows(&m, "https://example.com"), Some(OriginMatch::Listed));
    assert_eq!(allows(&m, "HTTPS://EXAMPLE.COM"), Some(OriginMatch::Listed));
    assert_eq!(
        allows(&m, "https://example.com:443"),
        Some(OriginMatch::Listed)
    );
    for bad in [
        "https://example.com.evil.net",
        "https://evilexample.com",
        "https://example.co",
        "http://example.com",
        "https://example.com:8443",
        "https://example.com.",
        "https://user@example.com",
        "https://example.com/",
        "https://example.com/path",
        "https://example.com?x",
        " https://example.com",
        "https://example.com ",
        "null",
        "",
        "https://exam\u{e9}ple.com",
        "https://sub.example.com",
    ] {
        assert_eq!(allows(&m, bad), None, "{bad:?} must not match");
    }
}

#[test]
fn wildcard_needs_at_least_one_label_and_never_the_bare_suffix() {
    let m = matcher(&["https://*.example.com"], &[]);
    assert_eq!(
        allows(&m, "https://a.example.com"),
        Some(OriginMatch::Listed)
    );
    assert_eq!(
        allows(&m, "https://a.b.example.com"),
        Some(OriginMatch::Listed)
    );
    assert_eq!(
        allows(&m, "https://A.Example.COM"),
        Some(OriginMatch::Listed)
    );
    for bad in [
        "https://example.com",
        "https://.example.com",
        "https://evilexample.com",
        "https://a.example.com.evil.net",
        "http://a.example.com",
        "https://a.example.com:8443",
        "https://a.example.com.",
    ] {
        assert_eq!(allows(&m, bad), None, "{bad:?} must not match");
    }
    let with_port = matcher(&["http://*.example.test:8080"], &[]);
    assert_eq!(
        allows(&with_port, "http://a.example.test:8080"),
        Some(OriginMatch::Listed)
    );
    assert_eq!(allows(&with_port, "http://a.example.test"), None);
}

#[test]
fn star_matches_tuples_but_not_null_or_garbage() {
    let m = matcher(&["*"], &[]);
    assert_eq!(allows(&m, "https://anything.test"), Some(OriginMatch::Any));
    assert_eq!(allows(&m, "null"), None);
    assert_eq!(allows(&m, "not an origin"), None);
    let with_null = matcher(&["null"], &[]);
    assert_eq!(allows(&with_null, "null"), Some(OriginMatch::Listed));
    assert_eq!(allows(&with_null, "NULL"), None);
}

#[test]
fn patterns_are_full_matches() {
    let m = matcher(&[], &[r"https://pr-[0-9]+\.preview\.example\.com"]);
    assert_eq!(
        allows(&m, "https://pr-12.preview.example.com"),
        Some(OriginMatch::Listed)
    );
    assert_eq!(
        allows(&m, "https://pr-12.preview.example.com.evil.net"),
        None
    );
    assert_eq!(allows(&m, "https://xpr-12.preview.example.com"), None);
    assert_eq!(allows(&m, "null"), None);
}

#[test]
fn request_origin_shapes() {
    assert_eq!(parse_request_origin(b"null"), RequestOrigin::Null);
    assert!(
        matches!(parse_request_origin(b"http://[::1]:8080"), RequestOrigin::Tuple(t) if t.port == Some(8080))
    );
    assert!(matches!(
        parse_request_origin(b"chrome-extension://abcdef"),
        RequestOrigin::Tuple(_)
    ));
    assert_eq!(
        parse_request_origin(&[b'a'; 3000]),
        RequestOrigin::Invalid(InvalidOrigin::TooLong)
    );
    assert_eq!(
        parse_request_origin(b"https://a.com:99999"),
        RequestOrigin::Invalid(InvalidOrigin::Malformed)
    );
    assert_eq!(
        parse_request_origin(b"https://a..com"),
        RequestOrigin::Invalid(InvalidOrigin::Malformed)
    );
    assert_eq!(
        parse_request_origin(b"https://a.com:"),
        RequestOrigin::Invalid(InvalidOrigin::Malformed)
    );
    assert_eq!(
        parse_request_origin(b"https://"),
        RequestOrigin::Invalid(InvalidOrigin::Malformed)
    );
    assert_eq!(
        parse_request_origin(b"\xff\xfe"),
        RequestOrigin::Invalid(InvalidOrigin::NotAscii)
    );
}

#[test]
fn configured_origins_get_precise_errors() {
    let e = OriginPattern::parse("https://example.com/").unwrap_err();
    assert!(e.message.contains("ends with '/'"), "{e:?}");
    assert_eq!(e.fix, "write \"https://example.com\"");
    assert!(
        OriginPattern::parse("example.com")
            .unwrap_err()
            .message
            .contains("no \"://\"")
    );
    assert!(
        OriginPattern::parse("https://u@example.com")
            .unwrap_err()
            .message
            .contains("userinfo")
    );
    assert!(
        OriginPattern::parse("https://a.*.example.com")
            .unwrap_err()
            .message
            .contains("'*'")
    );
    assert!(
        OriginPattern::parse("https://bücher.de")
            .unwrap_err()
            .fix
            .contains("punycode")
    );
    assert_eq!(
        OriginPattern::parse("HTTPS://Example.COM:443").unwrap(),
        OriginPattern::Exact("https://example.com".into())
    );
    assert!(compile_patterns(&["(unclosed".into()]).is_err());
}

#[test]
fn wildcard_origins_parse_and_requests_never_carry_a_star() {
    // The bug this guards: the host check rejected every "*." pattern, so no policy
    // with a wildcard origin (examples/per-origin-rules.yaml among them) could load.
    let wild = |scheme: &str, suffix: &str, port| OriginPattern::Wildcard {
        scheme: scheme.into(),
        suffix: suffix.into(),
        port,
    };
    assert_eq!(
        OriginPattern::parse("https://*.Example.com").unwrap(),
        wild("https", ".example.com", None)
    );
    assert_eq!(
        OriginPattern::parse("http://*.shop.example.test:8080").unwrap(),
        wild("http", ".shop.example.test", Some(8080))
    );
    for bad in [
        "https://*.",
        "https://*",
        "https://**.example.com",
        "https://*.*.example.com",
        "https://*.a..b",
    ] {
        assert!(
            OriginPattern::parse(bad).is_err(),
            "{bad:?} must be rejected"
        );
    }
    assert!(
        OriginPattern::parse("https://*.example.com/")
            .unwrap_err()
            .message
            .contains("ends with '/'")
    );
    // A request's Origin is never a pattern.
    assert_eq!(
        parse_request_origin(b"https://*.example.com"),
        RequestOrigin::Invalid(InvalidOrigin::Malformed)
    );
}

fn label() -> impl Strategy<Value = String> {
    "[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?"
}

proptest! {
    #[test]
    fn parsing_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let o = parse_request_origin(&bytes);
        let raw = String::from_utf8_lossy(&bytes);
        let m = matcher(&["*", "https://*.example.com", "https://a.test"], &["https://x[0-9]+\\.test"]);
        let _ = m.matches(&o, &raw);
        let _ = OriginPattern::parse(&raw);
    }

    #[test]
    fn wildcard_matches_exactly_the_hosts_under_the_suffix(sub in label(), other in label(), suffix in label()) {
        let m = matcher(&[&format!("https://*.{suffix}.test")], &[]);
        let under = format!("https://{sub}.{suffix}.test");
        prop_assert!(allows(&m, &under).is_some());
        let apex = format!("https://{suffix}.test");
        prop_assert!(allows(&m, &apex).is_none());
        let glued = format!("https://{other}{suffix}.test");
        prop_assert!(allows(&m, &glued).is_none());
        let appended = format!("https://{sub}.{suffix}.test.{other}");
        prop_assert!(allows(&m, &appended).is_none());
    }

    #[test]
    fn exact_match_is_case_insensitive_but_port_exact(host in label(), port in 1u16..65535) {
        let m = matcher(&[&format!("https://{host}.test")], &[]);
        let upper = format!("HTTPS://{}.TEST", host.to_uppercase());
        prop_assert!(allows(&m, &upper).is_some());
        let with_port = format!("https://{host}.test:{port}");
        prop_assert_eq!(allows(&m, &with_port).is_some(), port == 443);
    }
}

#[test]
fn the_exact_fast_path_only_hits_what_parsing_would_list() {
    let m = matcher(&["https://example.com", "http://a.test:8080", "null"], &[]);
    for (raw, fast) in [
        ("https://example.com", true),
        ("http://a.test:8080", true),
        // Allowed, but not byte for byte: parsing decides (and allows).
        ("HTTPS://EXAMPLE.COM", false),
        ("https://example.com:443", false),
        // Never on the fast path: `null` is not an exact tuple origin.
        ("null", false),
        ("https://example.com/", false),
        ("https://example.co", false),
        ("", false),
    ] {
        assert_eq!(m.lists_exactly(raw.as_bytes()), fast, "{raw:?}");
        if fast {
            assert_eq!(allows(&m, raw), Some(OriginMatch::Listed), "{raw:?}");
        }
    }
}

#[test]
fn one_pattern_is_compiled_once_and_a_bad_one_is_named() {
    let set = compile_patterns(&["https://[a-z]+\\.test".to_string()])
        .expect("valid")
        .expect("a set");
    assert!(set.is_match("https://abc.test"));
    assert!(!set.is_match("https://abc.test.evil"), "anchored");
    let err =
        compile_patterns(&["https://ok\\.test".to_string(), "(".to_string()]).expect_err("invalid");
    assert_eq!(err.0, 1, "names the bad entry");
    let err = compile_patterns(&["(".to_string()]).expect_err("invalid");
    assert_eq!(err.0, 0);
    assert!(
        err.1.message.contains("not a valid regular expression"),
        "{}",
        err.1.message
    );
}

#[test]
fn host_labels_are_checked_in_order_as_before() {
    assert_eq!(host_shape("a..b"), Err("the host has an empty label"));
    assert_eq!(host_shape(".a"), Err("the host has an empty label"));
    assert_eq!(host_shape("a.b."), Ok(()), "one trailing dot");
    assert_eq!(host_shape("a.b.."), Err("the host has an empty label"));
    let long = "x".repeat(64);
    assert_eq!(
        host_shape(&format!("{long}$.test")),
        Err("a host label is longer than 63 characters"),
        "length before characters, within a label"
    );
    assert_eq!(
        host_shape(&format!("a$.{long}")),
        Err("the host has a character that is not a letter, digit, '-' or '_'"),
        "labels in order"
    );
}

proptest! {
    #[test]
    fn the_fast_path_agrees_with_parsing(host in label(), port in proptest::option::of(1u16..65535), upper in any::<bool>()) {
        let listed = match port {
            Some(p) => format!("https://{host}.test:{p}"),
            None => format!("https://{host}.test"),
        };
        let m = matcher(&[&listed], &[]);
        let raw = if upper { listed.to_uppercase() } else { listed.clone() };
        // Every spelling of the listed origin is allowed by parsing; the fast path takes
        // exactly the canonical one (lower case, no default port).
        prop_assert_eq!(allows(&m, &raw), Some(OriginMatch::Listed));
        let canonical = !upper && port != Some(443);
        prop_assert_eq!(m.lists_exactly(raw.as_bytes()), canonical);
    }
}
