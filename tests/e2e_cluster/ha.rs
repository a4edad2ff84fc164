//! High availability: two controller replicas behind one address (a loopback TCP balancer
//! standing in for the Service), leader election on a Lease. The leader is killed (SIGKILL):
//! the other takes the Lease and writes status within the lease duration, and both proxies
//! keep serving throughout and end on its stream. Then a third replica joins and the new
//! leader is stopped with SIGTERM: the same again.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::kube::*;

const LEASE_SECONDS: u64 = 6;

/// A TCP balancer on loopback: each connection goes to the first backend that accepts it,
/// as a Service sends traffic only to ready endpoints.
fn balancer(backends: Arc<Mutex<Vec<SocketAddr>>>) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        for client in l.incoming().flatten() {
            let list = backends.lock().map(|b| b.clone()).unwrap_or_default();
            let Some(server) = list
                .iter()
                .find_map(|b| TcpStream::connect_timeout(b, Duration::from_millis(300)).ok())
            else {
                continue;
            };
            let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
                continue;
            };
            std::thread::spawn(move || pipe(client, server));
            std::thread::spawn(move || pipe(s2, c2));
        }
    });
    addr
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
    let _ = from.shutdown(std::net::Shutdown::Both);
}

fn proxies_on(admin: SocketAddr) -> Vec<String> {
    let Some((200, text)) = http_get(admin, "x", "/config", &[]) else {
        return Vec::new();
    };
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    let v: Value = serde_json::from_str(body).unwrap_or_default();
    v["proxies"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p["proxy"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn edit_and_wait_for_status(ns: &str, expose: &str) -> Duration {
    let started = Instant::now();
    must(
        &[
            "patch",
            "corspolicy",
            "-n",
            ns,
            "ha-0",
            "--type=merge",
            "-p",
            &format!("{{\"spec\":{{\"cors\":{{\"exposeHeaders\":[\"{expose}\"]}}}}}}"),
        ],
        None,
    );
    eventually("status for the new generation", || {
        let p = policy(ns, "ha-0");
        (p["status"]["observedGeneration"] == p["metadata"]["generation"]
            && condition(&p, "Programmed")?.0 == "True")
            .then_some(())
    });
    started.elapsed()
}

pub fn failover() {
    let _serial = cluster();
    let ns = Namespace::create("corsgate-e2e-ha");
    let lease = "corsgate-e2e-ha";
    let flags = [
        "--namespace",
        ns.0.as_str(),
        "--lease-namespace",
        ns.0.as_str(),
        "--lease-name",
        lease,
        "--lease-duration-seconds",
        "6",
        "--debounce-ms",
        "50",
        "--long-poll-seconds",
        "2",
        "--programmed-grace-ms",
        "2000",
    ];
    let mut replicas = vec![
        ("ha-a", controller("ha-a", &flags, None)),
        ("ha-b", controller("ha-b", &flags, None)),
    ];
    let backends = Arc::new(Mutex::new(
        replicas.iter().map(|(_, c)| c.stream).collect::<Vec<_>>(),
    ));
    let service = balancer(backends.clone());
    let proxies = [
        proxy(&format!("http://{service}"), "ha-proxy-0"),
        proxy(&format!("http://{service}"), "ha-proxy-1"),
    ];
    let upstream = echo_upstream();
    let docs: Vec<String> = (0..3)
        .map(|i| {
            policy_doc(
                &ns.0,
                &format!("ha-{i}"),
                &format!(
                    "hosts: [ha-{i}.example]\n  upstream: {{url: 'http://{upstream}'}}\n  cors: {{allowOrigins: ['https://app.example']}}"
                ),
            )
        })
        .collect();
    must(&["apply", "-f", "-"], Some(&docs.join("---\n")));
    for i in 0..3 {
        eventually("Programmed", || {
            (condition(&policy(&ns.0, &format!("ha-{i}")), "Programmed")?.0 == "True").then_some(())
        });
    }

    // Traffic through both proxies for the whole test; every answer must be a 200.
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let targets: Vec<SocketAddr> = proxies.iter().map(|p| p.listen).collect();
    let traffic = {
        let (stop, sent, failed) = (stop.clone(), sent.clone(), failed.clone());
        std::thread::spawn(move || {
            // Bounded: at most 20 minutes of requests, one every 50 ms per proxy.
            for _ in 0..24_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                for t in &targets {
                    sent.fetch_add(1, Ordering::Relaxed);
                    let ok = http_get(
                        *t,
                        "ha-1.example",
                        "/",
                        &[("origin", "https://app.example")],
                    )
                    .is_some_and(|r| {
                        r.0 == 200
                            && r.1
                                .contains("access-control-allow-origin: https://app.example")
                    });
                    if !ok {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };

    for (round, how) in [(0, "SIGKILL"), (1, "SIGTERM")] {
        let leader = eventually("a leader", || lease_holder(&ns.0, lease));
        let idx = replicas
            .iter()
            .position(|(id, _)| *id == leader)
            .unwrap_or_else(|| panic!("the Lease is held by {leader}, not one of ours"));
        let (_, mut gone) = replicas.remove(idx);
        backends
            .lock()
            .expect("backends")
            .retain(|b| *b != gone.stream);
        let stopped = Instant::now();
        if round == 0 {
            drop(gone); // SIGKILL by PID
        } else {
            gone.process.terminate();
            drop(gone);
        }
        let (next, survivor) = (&replicas[0].0, replicas[0].1.admin);
        let took = eventually_within(
            &format!("{next} taking the Lease after {how}"),
            Duration::from_secs(LEASE_SECONDS * 3),
            || (lease_holder(&ns.0, lease)? == *next).then(|| stopped.elapsed()),
        );
        assert!(
            took <= Duration::from_secs(LEASE_SECONDS + 3),
            "{how}: {next} took the Lease after {took:?} (lease {LEASE_SECONDS} s)"
        );
        let status = edit_and_wait_for_status(&ns.0, &format!("x-round-{round}"));
        eprintln!(
            "e2e ha: after {how} of {leader}, {next} held the Lease in {took:?} and wrote an edit's status in {status:?}"
        );
        eventually("both proxies on the surviving replica's stream", || {
            let on = proxies_on(survivor);
            (on.iter().any(|p| p == "ha-proxy-0") && on.iter().any(|p| p == "ha-proxy-1"))
                .then_some(())
        });
        if round == 0 {
            // A third replica joins as a follower for the SIGTERM round.
            let c = controller("ha-c", &flags, None);
            eventually("ha-c ready", || ready(c.admin).then_some(()));
            backends.lock().expect("backends").push(c.stream);
            replicas.push(("ha-c", c));
        }
    }
    stop.store(true, Ordering::Relaxed);
    traffic.join().expect("traffic thread");
    let (sent, failed) = (sent.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("e2e ha: {sent} requests through the proxies during failover, {failed} failed");
    assert!(sent > 100, "traffic ran: {sent}");
    assert_eq!(
        failed, 0,
        "proxies keep serving while controllers come and go"
    );
    drop(proxies);
}
