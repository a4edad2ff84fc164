//! The demo page `corsgate demo` serves, as Chromium renders it.

use super::*;

/// The rows `corsgate demo`'s page must show, in order.
/// `(row, what the browser did, the reason the page shows from the proxy's /explain)`.
pub(crate) const DEMO_ROWS: [(&str, &str, Option<&str>); 7] = [
    ("simple-get", "allowed", None),
    ("preflight-put", "allowed", None),
    (
        "method-blocked",
        "blocked",
        Some("method DELETE is not in allowMethods"),
    ),
    (
        "header-blocked",
        "blocked",
        Some("request header \"x-secret\" is not in allowHeaders"),
    ),
    (
        "origin-blocked",
        "blocked",
        Some("the origin is not in allowOrigins, allowOriginPatterns or a rule"),
    ),
    ("upstream-500", "allowed", None),
    ("upstream-down", "allowed", None),
];

pub(crate) async fn demo_page(fx: &Fixture) -> Result<(), String> {
    let [listen, admin, page, echo, dead] = free_addrs();
    let mut policies = QUICKSTART.to_string();
    for (from, to) in [
        ("127.0.0.1:3000", page.to_string()),
        (
            "app.example.test:3000",
            format!("app.example.test:{}", page.port()),
        ),
        ("\"http://127.0.0.1:9000\"", format!("\"http://{echo}\"")),
        ("\"http://127.0.0.1:9\"", format!("\"http://{dead}\"")),
    ] {
        ensure!(
            policies.contains(from),
            "examples/quickstart.yaml no longer contains {from}; update this test"
        );
        policies = policies.replace(from, &to);
    }
    let file = fx.dir.path().join("demo.yaml");
    std::fs::write(&file, policies).map_err(|e| format!("write {}: {e}", file.display()))?;
    let mut cmd = Command::new(corsgate_bin());
    cmd.arg("demo");
    for (flag, addr) in [
        ("--listen", listen),
        ("--admin", admin),
        ("--page", page),
        ("--upstream", echo),
    ] {
        cmd.args([flag, &addr.to_string()]);
    }
    cmd.arg("--policies").arg(&file);
    cmd.env("NO_COLOR", "1");
    let demo = Corsgate::ready(
        "corsgate demo",
        cmd,
        listen,
        admin,
        &fx.dir.path().join("demo.log"),
    )
    .await?;

    let result = check_demo_page(fx, &format!("http://{page}/")).await;
    drop(demo);
    result
}

pub(crate) async fn check_demo_page(fx: &Fixture, url: &str) -> Result<(), String> {
    fx.browser.goto(url).await?;
    let client = fx.browser.client();
    let deadline = Instant::now() + Duration::from_secs(30);
    let summary = loop {
        let s = client
            .execute(
                "const s = document.getElementById('summary');
                 return s && s.dataset.done === 'true'
                   ? {ok: Number(s.dataset.ok), total: Number(s.dataset.total), text: s.textContent} : null;",
                vec![],
            )
            .await
            .map_err(|e| format!("read #summary: {e}"))?;
        if !s.is_null() {
            break s;
        }
        ensure!(
            Instant::now() < deadline,
            "the demo page did not finish its calls within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // The screenshot is taken before any assertion, so a failure comes with a picture.
    let png = client
        .screenshot()
        .await
        .map_err(|e| format!("screenshot: {e}"))?;
    let shot = artifacts_dir().join("demo.png");
    std::fs::write(&shot, png).map_err(|e| format!("write {}: {e}", shot.display()))?;
    eprintln!("demo screenshot: {}", shot.display());

    let rows = client
        .execute(
            "return Array.from(document.querySelectorAll('#rows tr')).map(tr =>
               ({id: tr.id, verdict: tr.dataset.verdict || null, expected: tr.dataset.expected || null,
                 reason: tr.dataset.reason || null}));",
            vec![],
        )
        .await
        .map_err(|e| format!("read the demo's rows: {e}"))?;
    let rows = rows.as_array().cloned().unwrap_or_default();
    let mut wrong = Vec::new();
    if rows.len() != DEMO_ROWS.len() {
        wrong.push(format!("{} rows, expected {}", rows.len(), DEMO_ROWS.len()));
    }
    for (i, (id, want, reason)) in DEMO_ROWS.iter().enumerate() {
        let row = rows.get(i).cloned().unwrap_or(Value::Null);
        let (got_id, verdict, expected) = (&row["id"], &row["verdict"], &row["expected"]);
        if row["reason"].as_str() != *reason {
            wrong.push(format!(
                "row {i} ({id}) should show the reason {reason:?}, shows {}",
                row["reason"]
            ));
        }
        if *got_id != format!("case-{id}") || *verdict != *want || *expected != *want {
            wrong.push(format!(
                "row {i} should be case-{id} {want}, got id {got_id} verdict {verdict} expected {expected}"
            ));
        }
    }
    let n = DEMO_ROWS.len() as u64;
    if summary["ok"] != n || summary["total"] != n {
        wrong.push(format!("summary {summary}"));
    }
    ensure!(
        wrong.is_empty(),
        "demo page ({}): {}",
        shot.display(),
        wrong.join("; ")
    );
    Ok(())
}
