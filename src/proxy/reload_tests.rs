//! `reload` on real files: what an empty source does before and after policies served.

use std::sync::Arc;

use super::metrics::Metrics;
use super::reload;
use super::store::Store;
use super::upstream::Upstreams;

fn store() -> Arc<Store> {
    Arc::new(Store::new(
        Arc::new(Metrics::new()),
        Arc::new(Upstreams::new(1).expect("upstreams")),
        "test",
    ))
}

const ONE: &str = "apiVersion: corsgate.dev/v1alpha1\nkind: CorsPolicy\nmetadata: {name: a, namespace: t}\nspec:\n  hosts: [a.example.com]\n  upstream: {url: \"http://127.0.0.1:9\"}\n";

#[tokio::test]
async fn an_empty_source_after_policies_is_refused_and_keeps_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("p.yaml");
    std::fs::write(&path, ONE).expect("write");
    let s = store();
    reload(&s, &path).await;
    let version = s.version().expect("loaded");
    for empty in ["", "# nothing here\n", "---\n---\n"] {
        std::fs::write(&path, empty).expect("write");
        reload(&s, &path).await;
        assert_eq!(s.version().as_deref(), Some(version.as_str()), "{empty:?}");
        assert_eq!(s.serving(), 1, "{empty:?}");
        let st = s.status();
        assert_eq!(st.reason, Some("empty"), "{empty:?}: {st:?}");
        assert!(st.errors[0].contains("no policies"), "{st:?}");
    }
    let m = s.metrics.encode();
    assert!(
        m.contains("corsgate_config_reload_failures_total{reason=\"empty\"} 1"),
        "counted once (same error each time): {m}"
    );
    // A good file again clears the error.
    std::fs::write(&path, ONE.replace("a.example.com", "b.example.com")).expect("write");
    reload(&s, &path).await;
    assert_ne!(s.version().as_deref(), Some(version.as_str()));
    assert_eq!(s.status().reason, None);
}

#[tokio::test]
async fn an_empty_directory_after_policies_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("p.yaml");
    std::fs::write(&file, ONE).expect("write");
    let s = store();
    reload(&s, dir.path()).await;
    assert_eq!(s.serving(), 1);
    std::fs::remove_file(&file).expect("remove");
    reload(&s, dir.path()).await;
    assert_eq!(s.serving(), 1, "kept");
    assert_eq!(s.status().reason, Some("empty"));
}

#[tokio::test]
async fn an_empty_file_at_startup_is_served_as_zero_policies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("p.yaml");
    std::fs::write(&path, "").expect("write");
    let s = store();
    reload(&s, &path).await;
    assert!(s.version().is_some(), "ready, as before issue 13");
    assert_eq!(s.serving(), 0);
    assert_eq!(s.status().reason, None);
    // Still empty: no error either (nothing was serving).
    std::fs::write(&path, "---\n").expect("write");
    reload(&s, &path).await;
    assert_eq!(s.status().reason, None);
}

#[tokio::test]
async fn a_dangling_link_in_a_directory_is_an_error_not_a_smaller_configuration() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("a.yaml"), ONE).expect("write");
    std::fs::write(
        dir.path().join("b.yaml"),
        ONE.replace("name: a", "name: b")
            .replace("a.example.com", "b.example.com"),
    )
    .expect("write");
    let s = store();
    reload(&s, dir.path()).await;
    assert_eq!(s.serving(), 2);
    std::fs::remove_file(dir.path().join("b.yaml")).expect("remove");
    std::os::unix::fs::symlink("..gone/b.yaml", dir.path().join("b.yaml")).expect("link");
    reload(&s, dir.path()).await;
    assert_eq!(s.serving(), 2, "both still serve");
    assert_eq!(s.status().reason, Some("read"), "{:?}", s.status());
}

#[tokio::test]
async fn a_policy_removed_from_the_files_takes_its_rejection_ring_with_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("p.yaml");
    let two = format!(
        "{ONE}---\n{}",
        ONE.replace("name: a,", "name: b,")
            .replace("a.example.com", "b.example.com")
    );
    std::fs::write(&path, &two).expect("write");
    let s = store();
    reload(&s, &path).await;
    assert_eq!(s.serving(), 2);
    assert!(
        s.metrics.rings.get("t/a").is_none(),
        "counters and rings come with a policy's first request"
    );
    let live = s.load().expect("live");
    for (serving, policy) in live.serving.iter().zip(&live.snapshot.policies) {
        serving.counters(&s.metrics, policy);
    }
    drop(live);
    assert!(s.metrics.rings.get("t/a").is_some() && s.metrics.rings.get("t/b").is_some());
    std::fs::write(&path, ONE).expect("write");
    reload(&s, &path).await;
    assert_eq!(s.serving(), 1);
    assert!(
        s.metrics.rings.get("t/a").is_some(),
        "the served one keeps its ring"
    );
    assert!(
        s.metrics.rings.get("t/b").is_none(),
        "the removed one's ring is gone"
    );
}

/// Issue 14: the poll re-read every policy file at every tick; now unchanged files are not
/// read again, a change is, and a failed load is retried at each tick.
#[tokio::test]
async fn a_tick_over_unchanged_files_reads_nothing_and_a_change_or_a_failure_reads_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("p.yaml");
    let replace = |text: &str| {
        let tmp = dir.path().join(".p.yaml.tmp");
        std::fs::write(&tmp, text).expect("write");
        std::fs::rename(&tmp, &path).expect("rename");
    };
    replace(ONE);
    let s = store();
    let mut r = super::Reloader::default();
    assert!(r.on_change(&s, &path).await, "the first load reads");
    assert!(!r.on_change(&s, &path).await, "same files: not read again");
    replace(&ONE.replace("a.example.com", "b.example.com"));
    assert!(r.on_change(&s, &path).await, "a change is read");
    let live = s.load().expect("live");
    assert!(live.snapshot.route("b.example.com", "/").is_some());
    replace("kind: [not valid");
    assert!(r.on_change(&s, &path).await);
    assert!(r.on_change(&s, &path).await, "a failed load is retried");
    assert_eq!(s.serving(), 1, "the last good configuration serves");
    assert!(
        s.load()
            .expect("live")
            .snapshot
            .route("b.example.com", "/")
            .is_some()
    );
}
