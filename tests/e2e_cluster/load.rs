//! Status write load and propagation with 200 policies and 3 proxies. The API server's own
//! `apiserver_request_total` for corspolicies/status counts the writes: the first statuses
//! cost one per policy; a proxy joining, a proxy leaving and 30 idle seconds cost none (at
//! most a couple, for a policy whose status was mid-change). Then 20 edits with kubectl:
//! the time from `kubectl apply` returning to all 3 proxies serving the new headers.

use std::time::{Duration, Instant};

use super::kube::*;

const POLICIES: usize = 200;

fn delta(since: u64) -> u64 {
    status_writes().saturating_sub(since)
}

fn all_programmed(ns: &str) -> bool {
    let items = policies(ns);
    items.len() == POLICIES
        && items.iter().all(|p| {
            condition(p, "Programmed").is_some_and(|c| c.0 == "True")
                && p["status"]["observedGeneration"] == p["metadata"]["generation"]
        })
}

fn expose_of(p: &Proxy, host: &str) -> Option<String> {
    let (status, head) = http_get(p.listen, host, "/", &[("origin", "https://app.example")])?;
    (status == 200).then_some(())?;
    head.lines()
        .find_map(|l| l.strip_prefix("access-control-expose-headers: "))
        .map(|v| v.trim().to_string())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub fn writes_and_propagation() {
    let _serial = cluster();
    let ns = Namespace::create("corsgate-e2e-load");
    let upstream = echo_upstream();
    let ttl = 6;
    let c = controller(
        "load",
        &[
            "--namespace",
            &ns.0,
            "--leader-election=false",
            "--debounce-ms",
            "50",
            "--long-poll-seconds",
            "2",
            "--proxy-ttl-seconds",
            &ttl.to_string(),
        ],
        None,
    );
    eventually("the controller ready", || ready(c.admin).then_some(()));
    let stream = format!("http://{}", c.stream);
    let mut fleet = vec![proxy(&stream, "load-0"), proxy(&stream, "load-1")];

    let docs: Vec<String> = (0..POLICIES)
        .map(|i| {
            policy_doc(
                &ns.0,
                &format!("load-{i}"),
                &format!(
                    "hosts: [load-{i}.example]\n  upstream: {{url: 'http://{upstream}'}}\n  cors: {{allowOrigins: ['https://app.example'], exposeHeaders: [x-start]}}"
                ),
            )
        })
        .collect();
    let start = status_writes();
    must(&["apply", "-f", "-"], Some(&docs.join("---\n")));
    eventually_within("every policy Programmed", Duration::from_secs(180), || {
        all_programmed(&ns.0).then_some(())
    });
    // Let anything still settling land before counting the next phases.
    std::thread::sleep(Duration::from_secs(6));
    let first = delta(start);

    let before = status_writes();
    fleet.push(proxy(&stream, "load-2"));
    eventually("the third proxy serving", || {
        expose_of(&fleet[2], "load-7.example").filter(|v| v == "x-start")
    });
    std::thread::sleep(Duration::from_secs(8));
    let joined = delta(before);

    let before = status_writes();
    let gone = fleet.remove(0);
    drop(gone);
    std::thread::sleep(Duration::from_secs(ttl + 6));
    let left = delta(before);

    let before = status_writes();
    std::thread::sleep(Duration::from_secs(30));
    let idle = delta(before);
    assert!(all_programmed(&ns.0), "still Programmed with two proxies");
    fleet.push(proxy(&stream, "load-3"));
    eventually("the fourth proxy serving", || {
        expose_of(&fleet[2], "load-7.example").filter(|v| v == "x-start")
    });

    // Propagation: kubectl apply returning → all three proxies serve the edit.
    let mut times = Vec::new();
    for n in 0..20 {
        let value = format!("x-edit-{n}");
        let doc = policy_doc(
            &ns.0,
            "load-7",
            &format!(
                "hosts: [load-7.example]\n  upstream: {{url: 'http://{upstream}'}}\n  cors: {{allowOrigins: ['https://app.example'], exposeHeaders: [{value}]}}"
            ),
        );
        must(&["apply", "-f", "-"], Some(&doc));
        let applied = Instant::now();
        let deadline = applied + Duration::from_secs(10);
        loop {
            if fleet
                .iter()
                .all(|p| expose_of(p, "load-7.example").as_deref() == Some(value.as_str()))
            {
                break;
            }
            assert!(Instant::now() < deadline, "edit {n} not served within 10 s");
            std::thread::sleep(Duration::from_millis(5));
        }
        times.push(applied.elapsed());
    }
    times.sort();
    let (p50, p99) = (percentile(&times, 0.5), percentile(&times, 0.99));
    eprintln!(
        "e2e load: {POLICIES} policies; status writes: first statuses {first}, a proxy joining {joined}, a proxy leaving {left}, 30 s idle {idle}; propagation over 20 edits to 3 proxies: p50 {p50:?}, p99 {p99:?}"
    );
    assert!(
        first >= POLICIES as u64 && first <= 2 * POLICIES as u64,
        "the first statuses cost about one write per policy: {first}"
    );
    assert!(joined <= 2, "a proxy joining wrote {joined} statuses");
    assert!(left <= 2, "a proxy leaving wrote {left} statuses");
    assert_eq!(idle, 0, "nothing changes, nothing is written");
    assert!(p99 < Duration::from_secs(1), "propagation p99 {p99:?}");
    drop(fleet);
    drop(c);
}
