//! Unit tests of the annotation parsers.

use super::*;

#[test]
fn lists_follow_the_controllers_regexes() {
    // ^([A-Za-z]+,?\s?)+$ for methods
    assert!(is_list("GET, PUT,POST", false, false));
    assert!(!is_list("GET;POST", false, false));
    assert!(!is_list("*", false, false));
    assert!(
        !is_list("GET,  POST", false, false),
        "one white space at most"
    );
    // ^([A-Za-z0-9\-\_]+,?\s?)+$ for headers; expose-headers also takes "*"
    assert!(is_list("X-Request_Id,Content-Type", false, true));
    assert!(!is_list("*", false, true));
    assert!(is_list("*, X-Trace", true, true));
    assert!(!is_list("", true, true));
}

#[test]
fn origins_follow_the_controllers_regex() {
    for ok in [
        "https://a.example.com",
        "http://localhost:3000",
        "https://*.example.com",
        "https://*.example.com:8443",
    ] {
        assert!(is_origin_entry(ok), "{ok}");
    }
    for bad in [
        "ftp://a.example.com",
        "https://a.example.com/path",
        "https://a.example.com:",
        "https://a.*.example.com",
        "a.example.com",
    ] {
        assert!(!is_origin_entry(bad), "{bad}");
    }
}

#[test]
fn booleans_are_gos() {
    assert_eq!(go_bool("True"), Some(true));
    assert_eq!(go_bool("0"), Some(false));
    assert_eq!(go_bool("yes"), None);
    assert_eq!(go_bool("TrUe"), None);
}

#[test]
fn object_names_are_dns_labels() {
    assert_eq!(
        super::super::object_name("Managed-CORS-With-Preflight"),
        "managed-cors-with-preflight"
    );
    assert_eq!(super::super::object_name("wide open!"), "wide-open");
    assert_eq!(super::super::object_name("***"), "imported");
}

#[test]
fn the_imported_one_label_pattern_is_recognised_on_export() {
    use super::export::one_label_wildcard;
    assert_eq!(
        one_label_wildcard(r"^https://[A-Za-z0-9-]+\.preview\.example\.com$").as_deref(),
        Some("https://*.preview.example.com")
    );
    assert_eq!(
        one_label_wildcard(r"^http://[A-Za-z0-9-]+\.a\-b\.example:8080$").as_deref(),
        Some("http://*.a-b.example:8080")
    );
    for other in [
        r"^https://[A-Za-z0-9-]+\.preview\.example\.com",
        r"^https://[a-z]+\.preview\.example\.com$",
        r"^https://[A-Za-z0-9-]+\.preview.example\.com$",
        r"^https://[A-Za-z0-9-]+\.(a|b)\.com$",
        r"^ftp://[A-Za-z0-9-]+\.example\.com$",
    ] {
        assert_eq!(one_label_wildcard(other), None, "{other}");
    }
}
