//! Scenarios over time: one change to the policies or Services, and what status, Events
//! and the published document do about it.

use super::*;

/// Stores `s` on `p`, as the API server would after a write.
fn written(mut p: CorsPolicy, s: CorsPolicyStatus) -> CorsPolicy {
    p.status = Some(s);
    p
}

#[test]
fn deleting_the_winner_promotes_the_loser() {
    let old = mk_policy("a", "old", T0, &url("[api.example.com]"));
    let new = mk_policy("a", "new", T1, &url("[api.example.com]"));
    let t = time(NOW);
    let snap = snapshot(&[old.clone(), new.clone()]);
    let s1 = desired(&new, &snap, &ServiceIndex::new(), Tally::default(), &t);
    assert_eq!(cond(&s1, status::ACCEPTED).reason, "Conflicted");
    let ev = events(None, &s1);
    assert_eq!(ev.len(), 1);
    assert!(ev[0].warning && ev[0].reason == "Conflicted" && ev[0].note.contains("a/old"));
    let new = written(new, s1.clone());

    let snap2 = snapshot(std::slice::from_ref(&new));
    assert_ne!(snap2.version, snap.version);
    let later = time("2025-06-01T12:05:00Z");
    let s2 = desired(&new, &snap2, &ServiceIndex::new(), Tally::default(), &later);
    assert_eq!(cond(&s2, status::ACCEPTED).reason, "Accepted");
    assert_eq!(
        cond(&s2, status::ACCEPTED).last_transition_time,
        later,
        "Accepted flipped: its time moves"
    );
    assert_eq!(
        cond(&s2, status::RESOLVED_REFS).last_transition_time,
        t,
        "ResolvedRefs did not: its time stays"
    );
    assert_eq!(
        s2.config_version,
        Some(crate::controller::stream::policy_version(
            "a/new", &new.spec
        ))
    );
    assert!(
        snap2
            .route("api.example.com", "/")
            .is_some_and(|(_, p)| p.id.name == "new")
    );
    let ev = events(Some(&s1), &s2);
    assert_eq!(ev.len(), 1);
    assert!(!ev[0].warning && ev[0].reason == "Accepted");
}

#[test]
fn a_service_disappearing_flips_resolved_refs_only() {
    let p = mk_policy(
        "shop",
        "api",
        T0,
        &svc("[api.example.com]", "storefront", 8080),
    );
    let with = services(&[("shop", "storefront", &[8080])]);
    let snap = snapshot(std::slice::from_ref(&p));
    let t0 = time(NOW);
    let s1 = desired(
        &p,
        &snap,
        &with,
        Tally {
            connected: 1,
            current: 1,
        },
        &t0,
    );
    assert_eq!(cond(&s1, status::RESOLVED_REFS).status, "True");
    let p = written(p, s1.clone());

    // The Service is deleted: the snapshot (and so every proxy) is unchanged.
    let snap2 = snapshot(std::slice::from_ref(&p));
    assert_eq!(
        snap2.version, snap.version,
        "Services never change the snapshot"
    );
    let t1 = time("2025-06-01T13:00:00Z");
    let s2 = desired(
        &p,
        &snap2,
        &ServiceIndex::new(),
        Tally {
            connected: 1,
            current: 1,
        },
        &t1,
    );
    assert_eq!(cond(&s2, status::RESOLVED_REFS).reason, "BackendNotFound");
    assert_eq!(cond(&s2, status::RESOLVED_REFS).last_transition_time, t1);
    assert_eq!(cond(&s2, status::ACCEPTED).last_transition_time, t0);
    assert_eq!(
        cond(&s2, status::PROGRAMMED).reason,
        "Programmed",
        "it still serves"
    );
    assert!(!same(p.status.as_ref(), &s2));
    let ev = events(p.status.as_ref(), &s2);
    assert_eq!(ev.len(), 1);
    assert!(ev[0].warning && ev[0].reason == "BackendNotFound");
}

#[test]
fn an_invalid_edit_to_a_serving_policy_stops_it_and_only_it() {
    let a = mk_policy("a", "a", T0, &url("[a.example.com]"));
    let b = mk_policy("a", "b", T1, &url("[b.example.com]"));
    let t = time(NOW);
    let snap = snapshot(&[a.clone(), b.clone()]);
    let b_before = desired(&b, &snap, &ServiceIndex::new(), Tally::default(), &t);
    let a = written(
        a.clone(),
        desired(&a, &snap, &ServiceIndex::new(), Tally::default(), &t),
    );

    let mut edited = a.clone();
    edited.spec.cors.max_age_seconds = Some(100_000);
    edited.metadata.generation = Some(2);
    let snap2 = snapshot(&[edited.clone(), b.clone()]);
    assert!(
        snap2.route("a.example.com", "/").is_none(),
        "the invalid edit is not served"
    );
    assert!(snap2.route("b.example.com", "/").is_some());
    let s = desired(&edited, &snap2, &ServiceIndex::new(), Tally::default(), &t);
    assert_eq!(cond(&s, status::ACCEPTED).reason, "InvalidSpec");
    assert!(
        cond(&s, status::ACCEPTED)
            .message
            .contains("spec.cors.maxAgeSeconds")
    );
    assert_eq!(s.observed_generation, Some(2));
    assert_eq!(s.config_version, None);
    let b_after = desired(&b, &snap2, &ServiceIndex::new(), Tally::default(), &t);
    assert_eq!(
        cond(&b_after, status::ACCEPTED),
        cond(&b_before, status::ACCEPTED)
    );
    assert!(
        events(a.status.as_ref(), &s)
            .iter()
            .any(|e| e.warning && e.reason == "InvalidSpec")
    );
}

#[test]
fn transition_time_moves_only_when_status_changes_and_unchanged_means_no_write() {
    let p = mk_policy("a", "p", T0, &url("[api.example.com]"));
    let snap = snapshot(std::slice::from_ref(&p));
    let t0 = time(NOW);
    let s1 = desired(
        &p,
        &snap,
        &ServiceIndex::new(),
        Tally {
            connected: 2,
            current: 1,
        },
        &t0,
    );
    let p = written(p, s1.clone());
    // Same inputs later: equal, so nothing is written.
    let t1 = time("2025-06-01T12:30:00Z");
    let again = desired(
        &p,
        &snap,
        &ServiceIndex::new(),
        Tally {
            connected: 2,
            current: 1,
        },
        &t1,
    );
    assert!(same(p.status.as_ref(), &again));
    assert_eq!(again, s1, "timestamps are carried over too");
    // A third proxy: no proxy counts in the message (issue 11), so nothing to write.
    let s2 = desired(
        &p,
        &snap,
        &ServiceIndex::new(),
        Tally {
            connected: 3,
            current: 1,
        },
        &t1,
    );
    assert!(same(p.status.as_ref(), &s2));
    assert_eq!(cond(&s2, status::PROGRAMMED).last_transition_time, t0);
    // All current: False → True, time moves.
    let s3 = desired(
        &p,
        &snap,
        &ServiceIndex::new(),
        Tally {
            connected: 3,
            current: 3,
        },
        &t1,
    );
    assert_eq!(cond(&s3, status::PROGRAMMED).last_transition_time, t1);
    // Condition order and timestamps do not count as differences.
    let mut shuffled = s1.clone();
    shuffled.conditions.reverse();
    for c in &mut shuffled.conditions {
        c.last_transition_time = time("2020-01-01T00:00:00Z");
    }
    assert!(same(Some(&s1), &shuffled));
    assert!(!same(None, &s1), "no status yet: write");
    // A new generation alone is a change.
    let mut gen2 = p.clone();
    gen2.metadata.generation = Some(2);
    assert!(!same(
        p.status.as_ref(),
        &desired(
            &gen2,
            &snap,
            &ServiceIndex::new(),
            Tally {
                connected: 2,
                current: 1
            },
            &t1
        )
    ));
}

#[test]
fn events_fire_once_per_transition() {
    let p = mk_policy("a", "bad", T0, &url("['bad host']"));
    let snap = snapshot(std::slice::from_ref(&p));
    let s = desired(
        &p,
        &snap,
        &ServiceIndex::new(),
        Tally::default(),
        &time(NOW),
    );
    assert_eq!(events(None, &s).len(), 1);
    assert!(
        events(Some(&s), &s).is_empty(),
        "nothing changed, nothing to say"
    );
    let ok = mk_policy("a", "ok", T0, &url("[ok.example.com]"));
    let s = desired(
        &ok,
        &snapshot(std::slice::from_ref(&ok)),
        &ServiceIndex::new(),
        Tally::default(),
        &time(NOW),
    );
    assert!(
        events(None, &s).is_empty(),
        "a policy accepted from the start needs no event"
    );
}

#[test]
fn long_messages_are_capped_on_a_char_boundary() {
    let hosts: Vec<String> = (0..60).map(|i| format!("'bad host é {i}'")).collect();
    let p = mk_policy("a", "bad", T0, &url(&format!("[{}]", hosts.join(","))));
    let s = desired(
        &p,
        &snapshot(std::slice::from_ref(&p)),
        &ServiceIndex::new(),
        Tally::default(),
        &time(NOW),
    );
    let m = &cond(&s, status::ACCEPTED).message;
    assert!(m.len() <= 4096 && m.ends_with("..."), "{}", m.len());
}

#[test]
fn the_published_document_holds_only_accepted_policies() {
    let hub = Hub::new(std::time::Duration::from_secs(60));
    let metrics = crate::controller::metrics::Metrics::new();
    let policies: Vec<Arc<CorsPolicy>> = vec![
        Arc::new(mk_policy("a", "ok", T0, &url("[api.example.com]"))),
        Arc::new(mk_policy("a", "conflict", T1, &url("[api.example.com]"))),
        Arc::new(mk_policy("a", "invalid", T0, &url("['x y']"))),
    ];
    let (snap, published) = reconcile::build(&policies, &hub, &metrics).expect("build");
    assert!(published);
    let p = hub.current().expect("published");
    let doc = crate::config::wire::ConfigDocument::parse(&p.body).expect("json");
    let names: Vec<&str> = doc.policies.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(names, ["ok"]);
    let rebuilt = doc.into_snapshot().expect("rebuild");
    assert_eq!(rebuilt.version, snap.version);
    // Rebuilding from the same objects publishes nothing new.
    let (_, again) = reconcile::build(&policies, &hub, &metrics).expect("build");
    assert!(!again);
    assert!(
        metrics
            .encode()
            .contains("corsgate_controller_snapshot_bytes")
    );
}

/// A thousand policies: the published document round-trips to the same version, and the
/// build time and size are printed (`cargo test -- --nocapture`) for docs/controller.md.
#[test]
fn a_thousand_policies_build_publish_and_round_trip() {
    let policies: Vec<Arc<CorsPolicy>> = (0..1000)
        .map(|i| {
            Arc::new(mk_policy(
                &format!("ns{}", i % 50),
                &format!("p{i}"),
                T0,
                &format!(
                    "{{hosts: [api{i}.example.com, '*.t{i}.example.com'], paths: [/v1, /v2], upstream: {{url: 'http://u:1'}}, cors: {{allowOrigins: ['https://app{i}.example.com', 'https://www.example.org'], allowMethods: [GET, POST, PUT], allowHeaders: [content-type, x-custom], maxAgeSeconds: 600}}}}"
                ),
            ))
        })
        .collect();
    let hub = Hub::new(std::time::Duration::from_secs(60));
    let metrics = crate::controller::metrics::Metrics::new();
    let started = std::time::Instant::now();
    let (snap, _) = reconcile::build(&policies, &hub, &metrics).expect("build");
    let built = started.elapsed();
    assert_eq!(snap.policies.len(), 1000);
    let body = hub.current().expect("published").body.clone();
    let started = std::time::Instant::now();
    let rebuilt = crate::config::wire::ConfigDocument::parse(&body)
        .and_then(crate::config::wire::ConfigDocument::into_snapshot)
        .expect("rebuild");
    let proxy_side = started.elapsed();
    assert_eq!(rebuilt.version, snap.version);
    println!(
        "1000 policies: controller build+serialise {built:?}, document {} KiB, proxy parse+rebuild {proxy_side:?}",
        body.len() / 1024
    );
}

/// Issue 8 item 4: status.warnings carries `policy::warnings`' texts, and a change of
/// warnings alone is a change of status (written), while the same warnings are not.
#[test]
fn risky_settings_appear_in_status_warnings_and_count_as_a_change() {
    let risky = mk_policy(
        "a",
        "risky",
        T0,
        "{hosts: [api.example.com], upstream: {url: 'http://127.0.0.1:9000'}, cors: {allowOrigins: ['https://*.github.io'], maxAgeSeconds: 86400}}",
    );
    let snap = snapshot(std::slice::from_ref(&risky));
    let t = time(NOW);
    let s = desired(&risky, &snap, &ServiceIndex::new(), Tally::default(), &t);
    let want: Vec<String> = crate::policy::warnings(&risky.spec)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(want.len(), 2);
    assert_eq!(s.warnings, want);
    assert!(s.warnings[0].starts_with("spec.cors.allowOrigins[0]: \"https://*.github.io\" matches every site under the public suffix \"github.io\""));
    assert!(
        s.warnings[1].starts_with("spec.cors.maxAgeSeconds: 86400 s is above what browsers honour")
    );
    assert_eq!(
        cond(&s, status::ACCEPTED).reason,
        "Accepted",
        "warnings never reject"
    );

    let stored = written(risky.clone(), s.clone());
    assert!(same(stored.status.as_ref(), &s));
    let mut fixed = stored.clone();
    fixed.spec.cors.max_age_seconds = Some(600);
    let s2 = desired(
        &fixed,
        &snapshot(std::slice::from_ref(&fixed)),
        &ServiceIndex::new(),
        Tally::default(),
        &t,
    );
    assert_eq!(s2.warnings.len(), 1);
    let mut only_warnings_differ = s.clone();
    only_warnings_differ.warnings.pop();
    assert!(
        !same(stored.status.as_ref(), &only_warnings_differ),
        "a warnings change must be written"
    );

    let quiet = mk_policy("a", "quiet", T0, &url("[api.example.com]"));
    let s = desired(
        &quiet,
        &snapshot(std::slice::from_ref(&quiet)),
        &ServiceIndex::new(),
        Tally::default(),
        &t,
    );
    assert!(s.warnings.is_empty());
    assert!(
        !serde_json::to_value(&s)
            .expect("json")
            .as_object()
            .expect("object")
            .contains_key("warnings"),
        "empty warnings are omitted"
    );
}

/// Issue 15 item 4: ResolvedRefs follows the policy's Secret (missing, withheld, serving,
/// rotated away from its host), while a missing backend keeps its own reason first.
#[test]
fn resolved_refs_follows_the_tls_secret() {
    use crate::config::certs::{Secrets, TlsSecret};
    let now = time::OffsetDateTime::now_utc();
    let (ca, ca_key) = crate::webhook::certs::new_ca(now).expect("ca");
    let for_host = |h: &str| {
        let (cert, key) =
            crate::webhook::certs::issue(&ca, &ca_key, &[h.to_string()], now).expect("cert");
        TlsSecret {
            namespace: "shop".into(),
            name: "api-tls".into(),
            secret_type: "kubernetes.io/tls".into(),
            cert_pem: cert.into_bytes(),
            key_pem: key.into_bytes(),
        }
    };
    let p = mk_policy(
        "shop",
        "api",
        T0,
        "{hosts: [api.example.com], upstream: {url: 'http://127.0.0.1:9000'}, tls: {secretName: api-tls}}",
    );
    let t = time(NOW);
    let with = |secrets: &Secrets| {
        let snap = Snapshot::build_with(vec![status::input_of(&p)], secrets);
        desired(&p, &snap, &ServiceIndex::new(), Tally::default(), &t)
    };
    let reason = |s: &CorsPolicyStatus| {
        let c = cond(s, status::RESOLVED_REFS);
        (c.status.clone(), c.reason.clone(), c.message.clone())
    };

    let (st, r, m) = reason(&with(&Secrets::default()));
    assert_eq!((st.as_str(), r.as_str()), ("False", "SecretNotFound"));
    assert!(m.contains("secret shop/api-tls not found"), "{m}");
    assert!(m.contains("served over plain HTTP only"), "{m}");

    let (st, r, _) = reason(&with(&Secrets::withheld()));
    assert_eq!((st.as_str(), r.as_str()), ("False", "CertificatesWithheld"));

    let good: Secrets = [for_host("api.example.com")].into_iter().collect();
    let s = with(&good);
    let (st, r, m) = reason(&s);
    assert_eq!((st.as_str(), r.as_str()), ("True", "ResolvedRefs"));
    assert!(
        m.ends_with("the certificate in secret api-tls serves its hosts over HTTPS"),
        "{m}"
    );
    assert_eq!(
        cond(&s, status::ACCEPTED).status,
        "True",
        "TLS never rejects a policy"
    );

    let elsewhere: Secrets = [for_host("other.example.com")].into_iter().collect();
    let (st, r, m) = reason(&with(&elsewhere));
    assert_eq!((st.as_str(), r.as_str()), ("False", "HostNotCovered"));
    assert!(m.contains("does not cover host api.example.com"), "{m}");

    // A missing Service stays the first reason; the Secret's problem is in the message.
    let mut q = p.clone();
    q.spec.upstream =
        serde_saphyr::from_str("{service: {name: gone, port: 80}}").expect("upstream");
    let snap = Snapshot::build_with(vec![status::input_of(&q)], &Secrets::default());
    let s = desired(&q, &snap, &ServiceIndex::new(), Tally::default(), &t);
    let c = cond(&s, status::RESOLVED_REFS);
    assert_eq!(c.reason, "BackendNotFound");
    assert!(
        c.message
            .contains("and spec.tls.secretName: secret shop/api-tls not found"),
        "{}",
        c.message
    );
}

/// Issue 15 item 3: a Secret whose content breaks (the key of another certificate) keeps
/// the last good certificate serving, reported; a deleted Secret is served no more.
#[test]
fn a_broken_secret_keeps_the_last_good_certificate_and_a_deleted_one_stops() {
    use crate::config::certs::{Secrets, TlsSecret};
    use crate::config::wire::ConfigDocument;
    let now = time::OffsetDateTime::now_utc();
    let (ca, ca_key) = crate::webhook::certs::new_ca(now).expect("ca");
    let pair = || {
        crate::webhook::certs::issue(&ca, &ca_key, &["api.example.com".to_string()], now)
            .expect("cert")
    };
    let secret = |cert: &str, key: &str| TlsSecret {
        namespace: "shop".into(),
        name: "api-tls".into(),
        secret_type: "kubernetes.io/tls".into(),
        cert_pem: cert.as_bytes().to_vec(),
        key_pem: key.as_bytes().to_vec(),
    };
    let policies = vec![Arc::new(mk_policy(
        "shop",
        "api",
        T0,
        "{hosts: [api.example.com], upstream: {url: 'http://127.0.0.1:9000'}, tls: {secretName: api-tls}}",
    ))];
    let hub = Hub::new(std::time::Duration::from_secs(1));
    let metrics = super::super::metrics::Metrics::new();
    let mut last_good = super::super::secrets::LastGood::new();
    let published = |hub: &Hub| {
        let body = hub.current().expect("published").body.clone();
        ConfigDocument::parse(&body).expect("document")
    };
    let (good_cert, good_key) = pair();
    let good: Secrets = [secret(&good_cert, &good_key)].into_iter().collect();
    let (snap, _) = reconcile::build_with(&policies, &good, &mut last_good, None, &hub, &metrics)
        .expect("build");
    assert!(snap.tls_problems().next().is_none());
    let v1 = published(&hub);
    assert_eq!(v1.secrets.len(), 1);

    let (_, other_key) = pair();
    let broken: Secrets = [secret(&pair().0, &other_key)].into_iter().collect();
    let (snap, changed) =
        reconcile::build_with(&policies, &broken, &mut last_good, None, &hub, &metrics)
            .expect("build");
    let (report, problem) = snap.tls_problems().next().expect("reported");
    assert_eq!(problem.reason(), "KeyMismatch");
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("keep serving the last good certificate of secret shop/api-tls")),
        "{:?}",
        report.warnings
    );
    assert!(!changed, "proxies keep what they serve");
    assert_eq!(published(&hub), v1);

    let (snap, changed) = reconcile::build_with(
        &policies,
        &Secrets::default(),
        &mut last_good,
        None,
        &hub,
        &metrics,
    )
    .expect("build");
    assert_eq!(
        snap.tls_problems().next().expect("reported").1.reason(),
        "SecretNotFound"
    );
    assert!(changed);
    assert!(
        published(&hub).secrets.is_empty(),
        "a deleted Secret is not served"
    );
    assert!(last_good.is_empty());
}
