//! Issue 17 item 4: every PromQL query of the Grafana dashboard the chart installs names a
//! metric that exists — the proxy's, scraped from a real proxy's `/metrics`, or the
//! controller's, encoded by its metrics registry (a controller needs a cluster to run).

mod support;

use std::collections::BTreeSet;

use support::*;

const DASHBOARD: &str = include_str!("../deploy/helm/corsgate/dashboards/corsgate-dashboard.json");

/// Metric names of an OpenMetrics text: each family and its `_total`/`_bucket`/… samples.
fn names(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

/// The metric names a query uses.
fn used(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("corsgate_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

#[tokio::test]
async fn every_dashboard_query_names_a_metric_that_exists() {
    let up = Upstream::start().await;
    let yaml = format!(
        "{}---\n{}",
        policy(
            "api",
            "[\"api.example.com\"]",
            "  cors: {allowOrigins: [\"https://app.example.com\"]}",
            &up.url()
        ),
        policy(
            "shadowed",
            "[\"shadow.example.com\"]",
            "  mode: Shadow\n  cors: {allowOrigins: [\"https://app.example.com\"]}",
            &up.url()
        )
    );
    let proxy = Proxy::start(&yaml, true).await;
    // One request of each kind, so every labelled series exists.
    send(
        proxy.addr,
        "GET",
        "/",
        &[
            ("host", "api.example.com"),
            ("origin", "https://app.example.com"),
        ],
    )
    .await;
    // A policy's series appear with its first request (issue 14), so the Shadow one gets one.
    send(
        proxy.addr,
        "GET",
        "/",
        &[
            ("host", "shadow.example.com"),
            ("origin", "https://evil.example.com"),
        ],
    )
    .await;
    send(proxy.addr, "GET", "/", &[("host", "nowhere.example.com")]).await;
    let (status, metrics) = proxy.admin("/metrics").await;
    assert_eq!(status, 200);
    let mut exposed = names(&metrics);
    exposed.extend(names(
        &corsgate::controller::metrics::Metrics::new().encode(),
    ));
    assert!(
        exposed.contains("corsgate_config_version_info"),
        "{metrics}"
    );

    let dash: serde_json::Value = serde_json::from_str(DASHBOARD).expect("dashboard JSON");
    let mut queries = 0;
    for panel in dash["panels"].as_array().expect("panels") {
        for t in panel["targets"].as_array().expect("targets") {
            let expr = t["expr"].as_str().expect("expr");
            let names = used(expr);
            assert!(!names.is_empty(), "{expr}: names no corsgate metric");
            for n in names {
                assert!(
                    exposed.contains(&n),
                    "{expr}: {n} is not exposed; exposed: {exposed:#?}"
                );
            }
            queries += 1;
        }
    }
    assert!(queries >= 8, "{queries} queries");
}
