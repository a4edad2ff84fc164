//! Issue 17 item 6: `explain` for a host no policy serves names the few nearest hosts and
//! the count, not every host served (about 170 KB of output with 10,000 policies before).

use std::fmt::Write as _;
use std::process::Command;

#[test]
fn an_unrouted_host_gets_the_nearest_candidates_not_every_host() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("many.yaml");
    let mut yaml = String::new();
    for i in 0..10_000 {
        let _ = write!(
            yaml,
            "apiVersion: corsgate.dev/v1alpha1\nkind: CorsPolicy\nmetadata: {{name: p{i}, namespace: load}}\n\
             spec: {{hosts: [\"api-{i}.team-{}.example.com\"], upstream: {{url: \"http://127.0.0.1:9\"}}}}\n---\n",
            i % 50
        );
    }
    std::fs::write(&file, yaml).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_corsgate"))
        .args(["explain", "--policies"])
        .arg(&file)
        // A typo of api-4242.team-42.example.com: one letter off.
        .args([
            "--host",
            "api-4242.team-42.exampel.com",
            "--origin",
            "https://a.test",
        ])
        .output()
        .expect("run corsgate");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("no policy serves host \"api-4242.team-42.exampel.com\""),
        "{text}"
    );
    assert!(text.contains("10000 hosts served; nearest: "), "{text}");
    let nearest = text
        .lines()
        .find_map(|l| l.split_once("nearest: ").map(|(_, n)| n))
        .expect("a nearest line");
    let names: Vec<&str> = nearest.split(", ").collect();
    assert_eq!(names.len(), 5, "{nearest}");
    assert_eq!(names[0], "api-4242.team-42.example.com", "{nearest}");
    assert!(text.len() < 1024, "{} bytes:\n{text}", text.len());
}
