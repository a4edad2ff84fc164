//! `check_patterns` must accept exactly what building the `RegexSet` accepts, with the same
//! error (field index and message).

use proptest::prelude::*;

use super::check_patterns;
use crate::cors::origin::compile_patterns;

fn strings(ps: &[&str]) -> Vec<String> {
    ps.iter().map(|p| (*p).to_string()).collect()
}

/// A verdict: accepted, or the index and the whole error (message and fix).
type Verdict = Result<(), (usize, String)>;

/// `check_patterns`'s verdict and the builder's.
fn both(ps: &[String]) -> (Verdict, Verdict) {
    let checked = check_patterns(ps).map_err(|(i, e)| (i, format!("{} / {}", e.message, e.fix)));
    let built = compile_patterns(ps)
        .map(|_| ())
        .map_err(|(i, e)| (i, format!("{} / {}", e.message, e.fix)));
    (checked, built)
}

/// A pattern whose NFA is a little under 1 MiB alone: four of them fit the set's 4 MiB,
/// five do not.
const NEAR_LIMIT: &str = "https://[a-z]{13000}";

#[test]
fn agrees_with_the_regex_builder_on_a_corpus() {
    let corpus: &[&[&str]] = &[
        &[],
        &[r"https://[a-z0-9-]+\.example\.test"],
        &[r"^https://pr-[0-9]+\.preview\.example\.test$"],
        &[r"https?://(www\.)?example\.(com|org)(:[0-9]{2,5})?"],
        &[r"(?i)https://APP\.example\.test"],
        &[r"https://\p{Greek}+\.test"],
        &[r"https://\w+\.test"],
        &["(unclosed"],
        &["unopened)"],
        &["[a-"],
        &["a{2,1}"],
        &[r"\q"],
        &[r"\p{NoSuchClass}"],
        &["(?<=x)y"],
        &[r"(a)\1"],
        &["*leading"],
        &["a**"],
        &["(?P<n>a)(?P<n>b)"],
        &[&"(".repeat(300)],
        &[r"\w{300}"],
        &["[a-z]{100000}"],
        &[NEAR_LIMIT],
        &[r"https://ok\.test", "("],
        &["(", r"https://ok\.test"],
        &[r"https://a\.test", r"https://b\.test", r"\w{300}"],
        &[NEAR_LIMIT, NEAR_LIMIT, NEAR_LIMIT, NEAR_LIMIT],
        &[NEAR_LIMIT, NEAR_LIMIT, NEAR_LIMIT, NEAR_LIMIT, NEAR_LIMIT],
    ];
    let mut rejected = 0;
    for ps in corpus {
        let ps = strings(ps);
        let (checked, built) = both(&ps);
        assert_eq!(checked, built, "{ps:?}");
        rejected += usize::from(built.is_err());
    }
    // The corpus exercises rejection, not only acceptance.
    assert!(rejected >= 15, "{rejected}");
}

#[test]
fn size_limits_are_enforced_alone_and_for_the_set() {
    let one = strings(&[r"\w{300}"]);
    let (_, e) = check_patterns(&one).expect_err("too big alone");
    assert!(e.message.contains("exceeds size limit"), "{}", e.message);

    let four = strings(&[NEAR_LIMIT; 4]);
    assert!(check_patterns(&four).is_ok());
    let five = strings(&[NEAR_LIMIT; 5]);
    let (i, e) = check_patterns(&five).expect_err("five are too big together");
    assert_eq!(i, 0);
    assert!(e.message.contains("exceeds size limit"), "{}", e.message);
}

/// Pattern-ish strings: metacharacters, escapes, classes, repetitions, non-ASCII.
fn pattern() -> impl Strategy<Value = String> {
    let atoms = prop::sample::select(vec![
        "a",
        "b",
        "z",
        "0",
        "9",
        "-",
        ".",
        ":",
        "/",
        "\\.",
        "\\d",
        "\\w",
        "\\s",
        "\\b",
        "\\q",
        "\\1",
        "\\p{L}",
        "\\p{Zz}",
        "\u{3b1}",
        "*",
        "+",
        "?",
        "??",
        "{2}",
        "{1,3}",
        "{3,1}",
        "{",
        "}",
        "(",
        ")",
        "(?:",
        "(?i)",
        "(?P<n>",
        "(?<=",
        "[",
        "]",
        "[a-z]",
        "[^0-9]",
        "[[:alpha:]]",
        "^",
        "$",
        "|",
        "\\",
        "https://",
    ]);
    prop::collection::vec(atoms, 0..12).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn agrees_with_the_regex_builder_on_generated_patterns(ps in prop::collection::vec(pattern(), 1..4)) {
        let (checked, built) = both(&ps);
        prop_assert_eq!(checked, built, "{:?}", ps);
    }
}
