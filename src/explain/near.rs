//! For a host no policy serves: the few hosts served that it most likely meant (issue 17
//! item 6). Listing every host served was about 170 KB of output with 10,000 policies.
//!
//! "Nearest" is, in order: more trailing DNS labels in common (same suffix: `api.shop.test`
//! is nearer `www.shop.test` than `api.other.test`), then fewer character edits, then the
//! name itself (so equal inputs give equal output).

use std::fmt::Write as _;

use crate::config::Snapshot;

/// Hosts named as candidates, at most.
pub const NEAREST: usize = 5;

/// Writes how many hosts are served and the nearest few to `host`.
pub fn describe(o: &mut String, snap: &Snapshot, host: &str) {
    let mut hosts: Vec<&str> = snap
        .policies
        .iter()
        .flat_map(|p| p.hosts.iter().map(String::as_str))
        .collect();
    hosts.sort_unstable();
    hosts.dedup();
    if hosts.is_empty() {
        let _ = writeln!(o, "           hosts served: (none)");
        return;
    }
    let near = nearest(&hosts, host, NEAREST);
    let _ = writeln!(
        o,
        "           {} hosts served; nearest: {}",
        hosts.len(),
        near.join(", ")
    );
}

/// The `n` hosts of `hosts` nearest to `host`, nearest first.
pub fn nearest<'a>(hosts: &[&'a str], host: &str, n: usize) -> Vec<&'a str> {
    let mut scored: Vec<(std::cmp::Reverse<usize>, usize, &str)> = hosts
        .iter()
        .map(|h| {
            let bare = h.strip_prefix("*.").unwrap_or(h);
            (
                std::cmp::Reverse(common_suffix_labels(bare, host)),
                edits(bare.as_bytes(), host.as_bytes()),
                *h,
            )
        })
        .collect();
    let n = n.min(scored.len());
    if n == 0 {
        return Vec::new();
    }
    // Only the first n need ordering: select, then sort those.
    scored.select_nth_unstable(n - 1);
    scored.truncate(n);
    scored.sort_unstable();
    scored.into_iter().map(|(_, _, h)| h).collect()
}

/// How many trailing labels `a` and `b` share (`x.shop.test`, `y.shop.test`: 2).
fn common_suffix_labels(a: &str, b: &str) -> usize {
    a.rsplit('.')
        .zip(b.rsplit('.'))
        .take_while(|(x, y)| x.eq_ignore_ascii_case(y))
        .count()
}

/// Levenshtein distance, two rows.
fn edits(a: &[u8], b: &[u8]) -> usize {
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, x) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, y) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(!x.eq_ignore_ascii_case(y));
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_suffix_first_then_fewest_edits() {
        let hosts = [
            "api.other.test",
            "www.shop.test",
            "apl.other.test",
            "*.shop.test",
            "api.shop.tset",
            "shop.test",
        ];
        assert_eq!(
            nearest(&hosts, "api.shop.test", 3),
            ["www.shop.test", "*.shop.test", "shop.test"]
        );
        assert_eq!(nearest(&hosts, "x", 0), Vec::<&str>::new());
        assert_eq!(nearest(&hosts, "api.other.test", 1), ["api.other.test"]);
        assert_eq!(edits(b"kitten", b"sitting"), 3);
        assert_eq!(common_suffix_labels("a.b.c", "x.B.c"), 2);
    }
}
