//! The proxy over time: admin endpoints, hot reload (in place, by rename, ConfigMap-style),
//! in-flight requests across a reload, readiness, and the SIGTERM drain.

use super::*;

#[tokio::test]
async fn admin_endpoints_report_config_and_metrics() {
    let (_up, proxy) = setup().await;
    assert_eq!(proxy.admin("/healthz").await.0, 200);
    assert_eq!(proxy.admin("/readyz").await.0, 200);
    send(
        proxy.addr,
        "GET",
        "/",
        &h("api.example.com", &[("origin", APP)]),
    )
    .await;
    send(
        proxy.addr,
        "GET",
        "/",
        &h("api.example.com", &[("origin", "https://evil.example")]),
    )
    .await;
    send(
        proxy.addr,
        "OPTIONS",
        "/",
        &h(
            "api.example.com",
            &[("origin", APP), ("access-control-request-method", "PUT")],
        ),
    )
    .await;
    send(proxy.addr, "GET", "/", &h("api.example.com", &[])).await;
    send(proxy.addr, "GET", "/", &h("unknown.example.com", &[])).await;
    let (_, m) = proxy.admin("/metrics").await;
    for outcome in [
        "actual_allowed",
        "origin_rejected",
        "preflight_allowed",
        "not_cors",
    ] {
        assert_eq!(
            metric(
                &m,
                "corsgate_proxy_requests_total",
                &["policy=\"test/api\"", &format!("outcome=\"{outcome}\"")]
            ),
            1.0,
            "{outcome}\n{m}"
        );
    }
    assert_eq!(
        metric(&m, "corsgate_proxy_unrouted_requests_total", &[]),
        1.0
    );
    assert!(
        metric(
            &m,
            "corsgate_upstream_duration_seconds_count",
            &["policy=\"test/api\""]
        ) >= 3.0
    );
    assert_eq!(metric(&m, "corsgate_config_policies", &[]), 3.0);
    let (_, config) = proxy.admin("/config").await;
    let c: serde_json::Value = serde_json::from_str(&config).unwrap();
    assert_eq!(c["ready"], true);
    assert_eq!(c["version"].as_str().unwrap().len(), 12);
    assert_eq!(c["policies"][0]["name"], "test/api");
    assert_eq!(
        c["policies"][0]["cors"]["rules"][0]["maxAgeSeconds"], 600,
        "effective policy: rules inherit"
    );
}

#[tokio::test]
async fn hot_reload_applies_good_edits_and_keeps_serving_on_bad_ones() {
    let up = Upstream::start().await;
    let allow = |origin: &str| {
        policy(
            "api",
            "[\"api.example.com\"]",
            &format!("  cors: {{allowOrigins: [\"{origin}\"]}}"),
            &up.url(),
        )
    };
    let proxy = Proxy::start(&allow(APP), true).await;
    let v1 = proxy.version().await;
    let origin_of = |host| async move {
        send(
            proxy.addr,
            "GET",
            "/",
            &h(host, &[("origin", "https://new.example.com")]),
        )
        .await
        .header("access-control-allow-origin")
        .map(str::to_string)
    };
    assert_eq!(origin_of("api.example.com").await, None);

    // A good edit, written in place.
    std::fs::write(&proxy.policies, allow("https://new.example.com")).unwrap();
    let v2 = proxy.wait_version_change(&v1).await;
    assert_eq!(
        origin_of("api.example.com").await.as_deref(),
        Some("https://new.example.com")
    );

    // A broken edit: the last good config keeps serving; /config and /metrics say why.
    let broken = allow("https://new.example.com").replace("allowOrigins", "allowOrigin");
    write_atomically(&proxy.policies, &broken);
    let deadline = Instant::now() + Duration::from_secs(10);
    let config = loop {
        let (_, body) = proxy.admin("/config").await;
        let c: serde_json::Value = serde_json::from_str(&body).unwrap();
        if !c["lastLoad"]["errors"].as_array().unwrap().is_empty() {
            break c;
        }
        assert!(Instant::now() < deadline, "the broken edit was not noticed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let err = config["lastLoad"]["errors"][0].as_str().unwrap();
    assert!(
        err.contains(
            "policies.yaml (document 1): spec.cors.allowOrigin: unknown field `allowOrigin`"
        ),
        "{err}"
    );
    assert_eq!(config["version"], v2.as_str());
    assert_eq!(
        origin_of("api.example.com").await.as_deref(),
        Some("https://new.example.com")
    );
    assert_eq!(proxy.admin("/readyz").await.0, 200);
    let (_, m) = proxy.admin("/metrics").await;
    assert_eq!(
        metric(&m, "corsgate_config_reloads_total", &["result=\"failure\""]),
        1.0
    );
    assert!(
        proxy.log_text().contains("spec.cors.allowOrigin"),
        "the log names the field"
    );

    // A later good edit, by rename (as editors and ConfigMap volumes do), is picked up.
    write_atomically(&proxy.policies, &allow("https://third.example.com"));
    proxy.wait_version_change(&v2).await;
    let got = send(
        proxy.addr,
        "GET",
        "/",
        &h(
            "api.example.com",
            &[("origin", "https://third.example.com")],
        ),
    )
    .await;
    assert_eq!(
        got.header("access-control-allow-origin"),
        Some("https://third.example.com")
    );
}

#[tokio::test]
async fn requests_in_flight_finish_on_the_config_they_started_with() {
    let up = Upstream::start().await;
    let with = |origin: &str| {
        policy(
            "api",
            "[\"api.example.com\"]",
            &format!("  cors: {{allowOrigins: [\"{origin}\"]}}"),
            &up.url(),
        )
    };
    let proxy = Proxy::start(&with(APP), true).await;
    let v1 = proxy.version().await;
    let addr = proxy.addr;
    let slow = tokio::spawn(async move {
        send(
            addr,
            "GET",
            "/slow/1500",
            &h("api.example.com", &[("origin", APP)]),
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    std::fs::write(&proxy.policies, with("https://other.example.com")).unwrap();
    proxy.wait_version_change(&v1).await;
    let got = slow.await.unwrap();
    assert_eq!(got.status, 200);
    assert_eq!(
        got.header("access-control-allow-origin"),
        Some(APP),
        "decided on the old snapshot"
    );
    let now = send(addr, "GET", "/", &h("api.example.com", &[("origin", APP)])).await;
    assert_eq!(now.header("access-control-allow-origin"), None);
}

#[tokio::test]
async fn not_ready_until_a_valid_config_then_ready() {
    let up = Upstream::start().await;
    let good = policy("api", "[\"api.example.com\"]", "", &up.url());
    let proxy = Proxy::start("apiVersion: nope\n", false).await;
    assert_eq!(proxy.admin("/readyz").await.0, 503);
    let got = send(proxy.addr, "GET", "/", &h("api.example.com", &[])).await;
    assert_eq!(got.status, 503);
    std::fs::write(&proxy.policies, good).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while proxy.admin("/readyz").await.0 != 200 {
        assert!(
            Instant::now() < deadline,
            "never became ready: {}",
            proxy.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn directory_of_policies_with_configmap_style_links() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    // A ConfigMap volume: files are links into ..data, which is a link to a timestamped dir.
    let ts1 = dir.path().join("..2026_11_25_v1");
    std::fs::create_dir(&ts1).unwrap();
    std::fs::write(
        ts1.join("a.yaml"),
        policy("a", "[\"a.example.com\"]", "", &up.url()),
    )
    .unwrap();
    std::os::unix::fs::symlink("..2026_11_25_v1", dir.path().join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/a.yaml", dir.path().join("a.yaml")).unwrap();
    let path = dir.path().to_path_buf();
    let proxy = Proxy::start_at(dir, path.clone(), true).await;
    let v1 = proxy.version().await;
    assert_eq!(
        send(proxy.addr, "GET", "/", &h("a.example.com", &[]))
            .await
            .status,
        200
    );
    assert_eq!(
        send(proxy.addr, "GET", "/", &h("b.example.com", &[]))
            .await
            .status,
        404
    );
    // The kubelet's update: a new timestamped dir, then ..data swapped by rename.
    let ts2 = path.join("..2026_11_25_v2");
    std::fs::create_dir(&ts2).unwrap();
    std::fs::write(
        ts2.join("a.yaml"),
        policy("a", "[\"b.example.com\"]", "", &up.url()),
    )
    .unwrap();
    std::os::unix::fs::symlink("..2026_11_25_v2", path.join("..data_tmp")).unwrap();
    std::fs::rename(path.join("..data_tmp"), path.join("..data")).unwrap();
    proxy.wait_version_change(&v1).await;
    assert_eq!(
        send(proxy.addr, "GET", "/", &h("b.example.com", &[]))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn sigterm_drains_in_flight_requests() {
    let (_up, mut proxy) = setup().await;
    let addr = proxy.addr;
    let slow = tokio::spawn(async move {
        send(
            addr,
            "GET",
            "/slow/1000",
            &h("api.example.com", &[("origin", APP)]),
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = std::process::Command::new("kill")
        .args(["-TERM", &proxy.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let got = slow.await.unwrap();
    assert_eq!(got.status, 200, "the in-flight request finished");
    assert_eq!(got.header("access-control-allow-origin"), Some(APP));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(st) = proxy.child.try_wait().unwrap() {
            assert!(st.success(), "exit status {st:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "proxy did not exit after draining"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "no longer accepting"
    );
}
