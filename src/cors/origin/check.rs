//! Checking origin patterns without building a matcher.
//!
//! A policy's patterns are checked when it is loaded, but compiled only the first time a
//! request needs them (`Patterns::is_match`). Building a `RegexSet` just to throw it away
//! costs 10–12 µs a pattern. At 10,000 policies that is the largest part of a cold
//! snapshot build. [`check_patterns`] runs only the steps of that build that can fail, with
//! the same configuration:
//! - parse (AST, then HIR) with `regex`'s syntax options;
//! - compile the forward NFA, bounded by the same size limit;
//! - compile the reverse NFA. The meta engine builds it for its lazy DFA, and it can exceed
//!   the size limit when the forward one does not.
//!
//! It skips the parts that cannot fail: the PikeVM and backtracker wrappers (they fail only
//! without Unicode word-boundary data, which `regex`'s default features include), the
//! one-pass and lazy DFAs (their failure only disables them) and literal prefilters (not
//! built for patterns anchored at the start). So it accepts exactly what
//! [`super::compile_patterns`] accepts, with the same message; `check_tests` compares the
//! two on a corpus and on generated patterns.

use regex_automata::nfa::thompson::{self, WhichCaptures};
use regex_automata::util::syntax;

use super::{OriginError, anchored, judged};

/// What [`super::compile_patterns`] would reject, with the same index and error, without
/// building the matcher.
pub fn check_patterns(patterns: &[String]) -> Result<(), (usize, OriginError)> {
    judged(patterns, check).map(|_| ())
}

/// What `RegexSetBuilder::new(patterns anchored).size_limit(limit).build()` would fail with.
fn check(patterns: &[String], limit: usize) -> Result<(), regex::Error> {
    // `RegexSetBuilder::build`: the default syntax options, UTF-8 on.
    let syntax = syntax::Config::new().utf8(true);
    let hirs = patterns
        .iter()
        .map(|p| {
            syntax::parse_with(&anchored(p), &syntax)
                .map_err(|e| regex::Error::Syntax(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    // The meta engine's NFA options for a set (`Config::to_thompson_config` with
    // `utf8_empty(true)` and `which_captures(None)`).
    let forward = thompson::Config::new()
        .utf8(true)
        .nfa_size_limit(Some(limit))
        .shrink(false)
        .which_captures(WhichCaptures::None);
    let reverse = forward.clone().reverse(true);
    for config in [forward, reverse] {
        thompson::Compiler::new()
            .configure(config)
            .build_many_from_hir(&hirs)
            .map_err(|e| match e.size_limit() {
                Some(limit) => regex::Error::CompiledTooBig(limit),
                // Too many states or patterns: unreachable under this size limit, and
                // `regex` would report the meta engine's text for it.
                None => regex::Error::Syntax("error building NFA".into()),
            })?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "check_tests.rs"]
mod check_tests;
