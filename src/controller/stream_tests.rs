//! Tests of the config stream hub: publishing, long polls, acknowledgements, queries.

use super::*;

fn doc(version: &str) -> ConfigDocument {
    ConfigDocument {
        version: version.into(),
        policies: vec![],
        secrets: vec![],
    }
}

#[test]
fn query_parsing() {
    assert_eq!(
        parse_query(Some("version=abc&proxy=edge-0")),
        Ok(ConfigQuery {
            version: Some("abc".into()),
            proxy: "edge-0".into()
        })
    );
    assert_eq!(
        parse_query(Some("version=&proxy=a%2Db")).map(|q| (q.version, q.proxy)),
        Ok((None, "a-b".into()))
    );
    assert!(parse_query(Some("version=abc")).is_err());
    assert!(parse_query(Some("proxy=")).is_err());
    assert!(parse_query(Some("proxy=%zz")).is_err());
    assert!(parse_query(None).is_err());
}

#[tokio::test(start_paused = true)]
async fn stale_proxies_get_the_document_at_once_and_current_ones_wait() {
    let hub = Hub::new(Duration::from_secs(90));
    let (_tx, mut stop) = watch::channel(false);
    // Nothing published: waits the whole time, then NoConfig.
    assert!(matches!(
        hub.poll(None, Duration::from_secs(30), &mut stop).await,
        Poll::NoConfig
    ));
    assert!(hub.publish(&doc("v1")).expect("publish"));
    assert!(
        !hub.publish(&doc("v1")).expect("publish"),
        "same version twice is not news"
    );
    assert!(
        matches!(hub.poll(None, Duration::from_secs(30), &mut stop).await, Poll::Fresh(p) if p.version == "v1")
    );
    assert!(
        matches!(hub.poll(Some("v0"), Duration::from_secs(30), &mut stop).await, Poll::Fresh(p) if p.version == "v1")
    );
    let started = Instant::now();
    assert!(
        matches!(hub.poll(Some("v1"), Duration::from_secs(30), &mut stop).await, Poll::NotModified(v) if v == "v1")
    );
    assert_eq!(started.elapsed(), Duration::from_secs(30));
}

#[tokio::test(start_paused = true)]
async fn a_waiting_proxy_wakes_on_publish() {
    let hub = Arc::new(Hub::new(Duration::from_secs(90)));
    hub.publish(&doc("v1")).expect("publish");
    let (_tx, stop) = watch::channel(false);
    let h = hub.clone();
    let waiter = tokio::spawn(async move {
        let mut stop = stop;
        h.poll(Some("v1"), Duration::from_secs(30), &mut stop).await
    });
    tokio::time::sleep(Duration::from_secs(5)).await;
    hub.publish(&doc("v2")).expect("publish");
    let got = waiter.await.expect("join");
    assert!(matches!(got, Poll::Fresh(p) if p.version == "v2"));
}

#[tokio::test(start_paused = true)]
async fn shutdown_ends_a_poll() {
    let hub = Hub::new(Duration::from_secs(90));
    hub.publish(&doc("v1")).expect("publish");
    let (tx, mut stop) = watch::channel(false);
    let _ = tx.send(true);
    let started = Instant::now();
    assert!(matches!(
        hub.poll(Some("v1"), Duration::from_secs(30), &mut stop)
            .await,
        Poll::NoConfig
    ));
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[test]
fn shadow_reports_add_up_and_settle_what_was_written() {
    use crate::config::shadow::PolicyShadow;
    let hub = Hub::new(Duration::from_secs(60));
    let report = |proxy: &str, allow: u64, origin: u64, sample: &[&str]| {
        let body = serde_json::to_vec(&ShadowReport {
            proxy: proxy.into(),
            policies: vec![PolicyShadow {
                policy: "ns/p".into(),
                counts: ShadowCounts {
                    would_allow: allow,
                    by_reason: [origin, 0, 1, 0],
                    sample_rejected_origins: sample.iter().map(|s| s.to_string()).collect(),
                },
            }],
            rejections: Vec::new(),
        })
        .expect("json");
        accept_report(&hub, &Method::POST, &body).status()
    };
    assert_eq!(report("a", 3, 2, &["https://x"]), StatusCode::NO_CONTENT);
    assert_eq!(
        report("b", 1, 1, &["https://x", "https://y"]),
        StatusCode::NO_CONTENT
    );
    let pending = hub.shadow_pending();
    let p = &pending["ns/p"];
    assert_eq!((p.would_allow, p.by_reason), (4, [3, 0, 2, 0]));
    assert_eq!(p.sample_rejected_origins, ["https://x", "https://y"]);
    // A report lands between the status pass reading and settling: it stays pending.
    report("a", 5, 0, &["https://z"]);
    hub.shadow_settle("ns/p", p);
    let left = &hub.shadow_pending()["ns/p"];
    assert_eq!((left.would_allow, left.by_reason), (5, [0, 0, 1, 0]));
    assert_eq!(left.sample_rejected_origins, ["https://z"]);
    hub.shadow_settle("ns/p", &left.clone());
    assert!(
        hub.shadow_pending().is_empty(),
        "settled entries are dropped"
    );
    report("a", 1, 0, &[]);
    hub.shadow_retain(|p| p != "ns/p");
    assert!(hub.shadow_pending().is_empty());

    // A flood of made-up policy names is capped; known ones still add up.
    report("a", 1, 0, &[]);
    let flood = ShadowReport {
        proxy: "x".into(),
        policies: (0..MAX_PENDING_POLICIES + 10)
            .map(|i| PolicyShadow {
                policy: format!("junk/{i}"),
                counts: ShadowCounts {
                    would_allow: 1,
                    ..ShadowCounts::default()
                },
            })
            .collect(),
        rejections: Vec::new(),
    };
    hub.shadow_report(&flood);
    assert_eq!(hub.shadow_pending().len(), MAX_PENDING_POLICIES);
    report("a", 1, 0, &[]);
    assert_eq!(hub.shadow_pending()["ns/p"].would_allow, 2);
    hub.shadow_retain(|_| false);

    assert_eq!(
        accept_report(&hub, &Method::GET, b"{}").status(),
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(
        accept_report(
            &hub,
            &Method::POST,
            b"{\"proxy\":\"a\",\"policies\":[{\"policy\":1}]}"
        )
        .status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        accept_report(&hub, &Method::POST, b"{\"proxy\":\"\",\"policies\":[]}").status(),
        StatusCode::BAD_REQUEST
    );
}

#[test]
fn acknowledgements_and_expiry() {
    let hub = Hub::new(Duration::from_secs(60));
    let t0 = Instant::now();
    let mut changes = hub.subscribe_changes();
    hub.ack("a", Some("v1"), t0);
    hub.ack("b", Some("v0"), t0);
    hub.ack("c", None, t0 + Duration::from_secs(30));
    assert!(changes.has_changed().unwrap_or(false));
    changes.mark_unchanged();
    assert_eq!(
        hub.tally(Some("v1"), t0),
        Tally {
            connected: 3,
            current: 1
        }
    );
    // Re-asking with the same version is not a change.
    hub.ack("a", Some("v1"), t0 + Duration::from_secs(10));
    assert!(!changes.has_changed().unwrap_or(true));
    hub.ack("b", Some("v1"), t0 + Duration::from_secs(10));
    assert!(changes.has_changed().unwrap_or(false));
    assert_eq!(
        hub.tally(Some("v1"), t0 + Duration::from_secs(20)),
        Tally {
            connected: 3,
            current: 2
        }
    );
    // c was seen at 30 s: at 75 s a and b (10 s) are gone, c stays.
    let later = t0 + Duration::from_secs(75);
    assert_eq!(
        hub.tally(Some("v1"), later),
        Tally {
            connected: 1,
            current: 0
        }
    );
    assert_eq!(hub.expire(later), 2);
    assert_eq!(hub.proxies(), vec![("c".to_string(), None)]);
    assert_eq!(
        hub.tally(None, later),
        Tally {
            connected: 1,
            current: 0
        }
    );
}

#[test]
fn a_rotated_certificate_is_a_new_rollout_of_its_policy_only() {
    use crate::config::wire::{WirePolicy, WireSecret};
    let spec = |tls: bool| {
        serde_saphyr::from_str(if tls {
            "{hosts: [a.example], upstream: {url: 'http://u:1'}, tls: {secretName: a-tls}}"
        } else {
            "{hosts: [b.example], upstream: {url: 'http://u:1'}}"
        })
        .expect("spec")
    };
    let doc = |version: &str, crt: &str| ConfigDocument {
        version: version.into(),
        policies: vec![
            WirePolicy {
                namespace: "ns".into(),
                name: "a".into(),
                created: None,
                spec: spec(true),
            },
            WirePolicy {
                namespace: "ns".into(),
                name: "b".into(),
                created: None,
                spec: spec(false),
            },
        ],
        secrets: vec![WireSecret {
            namespace: "ns".into(),
            name: "a-tls".into(),
            tls_crt: crt.into(),
            tls_key: "k".into(),
        }],
    };
    let hub = Hub::new(Duration::from_secs(30));
    let now = Instant::now();
    hub.publish(&doc("v1", "first")).expect("publish");
    let f1 = hub.fleet(now, now);
    hub.publish(&doc("v2", "second")).expect("publish");
    let f2 = hub.fleet(now, now);
    let seq = |f: &super::Fleet, p: &str| f.rollout(p).expect("rollout").seq;
    assert_ne!(
        seq(&f1, "ns/a"),
        seq(&f2, "ns/a"),
        "the rotated policy rolls out again"
    );
    assert_eq!(seq(&f1, "ns/b"), seq(&f2, "ns/b"), "the other one does not");
}
