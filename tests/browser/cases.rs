//! The cases: what Chromium lets a page read, one Fetch rule each.

use super::*;

pub(crate) async fn simple_get_allowed(fx: &Fixture) -> Result<(), String> {
    let f = fx.fetch(APP, "/simple/allowed", json!({})).await?;
    status(&f, 200, "GET from the allowed origin")?;
    ensure!(
        f.json()["method"] == "GET",
        "the body is not the upstream's: {f:?}"
    );
    let seen = fx.upstream.seen_under("/simple/allowed");
    let origin = fx.origin(APP);
    ensure!(
        seen.len() == 1 && seen[0].header("origin") == Some(origin.as_str()),
        "the upstream should have seen one GET with Origin {origin}: {seen:?}"
    );
    Ok(())
}

pub(crate) async fn simple_get_other_origin_blocked(fx: &Fixture) -> Result<(), String> {
    let f = fx.fetch(OTHER, "/simple/other", json!({})).await?;
    blocked(&f, "GET from an origin the policy does not list")?;
    // disallowedOrigin: Forward — the request went through; only the answer is withheld.
    ensure!(
        fx.upstream.seen_under("/simple/other").len() == 1,
        "disallowedOrigin: Forward should still forward the GET"
    );
    let r = fx
        .plain(
            "GET",
            "/simple/other-plain",
            &[("Origin", &fx.origin(OTHER))],
        )
        .await?;
    ensure!(
        r.header("access-control-allow-origin").is_none(),
        "no Access-Control-Allow-Origin for a disallowed origin, got {:?}",
        r.headers
    );
    Ok(())
}

/// Probes each `(host, should_pass)` and lists every wrong verdict.
pub(crate) async fn verdicts(
    fx: &Fixture,
    path: &str,
    table: &[(&str, bool)],
) -> Result<(), String> {
    let mut wrong = Vec::new();
    for (host, pass) in table {
        let f = fx.fetch(host, path, json!({})).await?;
        if f.ok != *pass || (f.ok && f.status != Some(200)) {
            let want = if *pass { "allowed" } else { "blocked" };
            wrong.push(format!(
                "origin {} should be {want}, the page got {f:?}",
                fx.origin(host)
            ));
        }
    }
    ensure!(wrong.is_empty(), "{}", wrong.join("; "));
    Ok(())
}

pub(crate) async fn wildcard_subdomains(fx: &Fixture) -> Result<(), String> {
    verdicts(
        fx,
        "/wildcard",
        &[
            ("eu.shop.example.test", true),
            ("a.b.shop.example.test", true),
            // The apex is not a subdomain of itself.
            ("shop.example.test", false),
            // Suffix attacks: the allowed name inside a longer one, or without the dot.
            ("eu.shop.example.test.evil.example.test", false),
            ("evilshop.example.test", false),
        ],
    )
    .await
}

pub(crate) async fn regex_origins(fx: &Fixture) -> Result<(), String> {
    verdicts(
        fx,
        "/regex",
        &[
            ("pr-42.preview.example.test", true),
            ("pr-7.preview.example.test", true),
            ("pr-x.preview.example.test", false),
            // The pattern must match the whole origin, not a prefix or a suffix of it.
            ("pr-42.preview.example.test.evil.example.test", false),
            ("xpr-42.preview.example.test", false),
        ],
    )
    .await
}

pub(crate) async fn preflighted_put(fx: &Fixture) -> Result<(), String> {
    let before = fx.counted("api", "preflight_allowed").await?;
    let init = json!({
        "method": "PUT",
        "headers": {"X-Custom": "42", "Content-Type": "application/json"},
        "body": "{\"n\":7}",
    });
    let f = fx.fetch(APP, "/items/7", init).await?;
    status(&f, 200, "preflighted PUT with X-Custom")?;
    ensure!(
        f.json()["method"] == "PUT",
        "the upstream should have answered the PUT: {f:?}"
    );
    let after = fx.counted("api", "preflight_allowed").await?;
    ensure!(
        after > before,
        "the browser should have sent a preflight, answered at the edge (preflight_allowed {before} -> {after})"
    );
    let seen = fx.upstream.seen_under("/items/7");
    let methods: Vec<&str> = seen.iter().map(|s| s.method.as_str()).collect();
    ensure!(
        methods == ["PUT"],
        "the upstream should see the PUT only, never the OPTIONS: {methods:?}"
    );
    ensure!(
        seen[0].header("x-custom") == Some("42"),
        "X-Custom did not reach the upstream: {seen:?}"
    );
    Ok(())
}

pub(crate) async fn disallowed_method(fx: &Fixture) -> Result<(), String> {
    let before = fx.counted("api", "preflight_rejected").await?;
    let f = fx
        .fetch(APP, "/items/8", json!({"method": "DELETE"}))
        .await?;
    blocked(&f, "DELETE (not in allowMethods)")?;
    let after = fx.counted("api", "preflight_rejected").await?;
    ensure!(
        after == before + 1,
        "the DELETE's preflight should be rejected at the edge ({before} -> {after})"
    );
    let seen = fx.upstream.seen_under("/items/8");
    ensure!(
        seen.is_empty(),
        "nothing should reach the upstream: {seen:?}"
    );
    Ok(())
}

pub(crate) async fn disallowed_header(fx: &Fixture) -> Result<(), String> {
    let before = fx.counted("api", "preflight_rejected").await?;
    let f = fx
        .fetch(APP, "/items/9", json!({"headers": {"X-Secret": "1"}}))
        .await?;
    blocked(&f, "GET with X-Secret (not in allowHeaders)")?;
    let after = fx.counted("api", "preflight_rejected").await?;
    ensure!(
        after == before + 1,
        "the preflight should be rejected at the edge ({before} -> {after})"
    );
    let seen = fx.upstream.seen_under("/items/9");
    ensure!(
        seen.is_empty(),
        "nothing should reach the upstream: {seen:?}"
    );
    Ok(())
}

pub(crate) async fn credentials_allowed(fx: &Fixture) -> Result<(), String> {
    // A top-level visit to the API sets a first-party cookie, as a login would.
    fx.browser.goto(&fx.api("/creds/set-cookie")).await?;
    let include = json!({"credentials": "include"});
    let f = fx.fetch(APP, "/creds/whoami", include.clone()).await?;
    status(&f, 200, "credentialed GET from the allowed origin")?;
    let cookie = f.json()["cookie"].as_str().unwrap_or("").to_string();
    ensure!(
        cookie.contains("corsgate_sid=s3cr3t"),
        "the browser should send the cookie and the page read the answer; upstream saw Cookie {cookie:?}"
    );
    let origin = fx.origin(APP);
    let r = fx
        .plain("GET", "/creds/whoami", &[("Origin", &origin)])
        .await?;
    ensure!(
        r.header("access-control-allow-origin") == Some(origin.as_str())
            && r.header("access-control-allow-credentials") == Some("true"),
        "credentials need the origin reflected (never *) and Allow-Credentials: true: {:?}",
        r.headers
    );
    let f = fx.fetch(OTHER, "/creds/whoami", include).await?;
    blocked(
        &f,
        "credentialed GET from an origin the policy does not list",
    )?;
    Ok(())
}

pub(crate) async fn credentials_refused(fx: &Fixture) -> Result<(), String> {
    let include = json!({"credentials": "include"});
    // Origin allowed, credentials not: the browser refuses without Allow-Credentials.
    let f = fx.fetch(APP, "/no-creds/whoami", include.clone()).await?;
    blocked(&f, "credentialed GET where allowCredentials is false")?;
    let f = fx.fetch(APP, "/no-creds/whoami", json!({})).await?;
    status(&f, 200, "the same GET without credentials")?;
    ensure!(
        f.json()["cookie"].is_null(),
        "no cookie without credentials: {f:?}"
    );
    // allowOrigins "*": the browser never accepts * for a credentialed request.
    let f = fx.fetch(APP, "/public/whoami", include).await?;
    blocked(&f, "credentialed GET answered with Allow-Origin *")?;
    let f = fx.fetch(APP, "/public/whoami", json!({})).await?;
    status(&f, 200, "a GET without credentials to the public policy")?;
    Ok(())
}

pub(crate) async fn exposed_headers(fx: &Fixture) -> Result<(), String> {
    let f = fx.fetch(APP, "/headers", json!({})).await?;
    status(&f, 200, "GET /headers")?;
    ensure!(
        f.headers.get("x-exposed").map(String::as_str) == Some("exposed-value"),
        "x-exposed is listed in exposeHeaders, so JavaScript should read it: {:?}",
        f.headers
    );
    ensure!(
        !f.headers.contains_key("x-hidden"),
        "x-hidden is not exposed, so JavaScript must not see it: {:?}",
        f.headers
    );
    ensure!(
        f.headers.contains_key("content-type"),
        "content-type is safelisted and always readable: {:?}",
        f.headers
    );
    Ok(())
}

pub(crate) async fn upstream_500(fx: &Fixture) -> Result<(), String> {
    let f = fx.fetch(APP, "/status/500", json!({})).await?;
    status(&f, 500, "the upstream's 500")?;
    ensure!(
        f.json()["status"] == 500,
        "the page should read the upstream's error body: {f:?}"
    );
    Ok(())
}

pub(crate) async fn upstream_down(fx: &Fixture) -> Result<(), String> {
    let f = fx.fetch(APP, "/down/x", json!({})).await?;
    status(
        &f,
        502,
        "the edge's 502 for an upstream that refuses connections",
    )?;
    ensure!(
        f.body.as_deref().unwrap_or("").starts_with("corsgate:"),
        "the page should read the edge's explanation: {f:?}"
    );
    Ok(())
}

pub(crate) async fn upstream_slow(fx: &Fixture) -> Result<(), String> {
    let f = fx.fetch(APP, "/slow/3000", json!({})).await?;
    status(
        &f,
        504,
        "the edge's 504 for an upstream slower than timeoutSeconds: 1",
    )?;
    ensure!(
        f.body.as_deref().unwrap_or("").contains("did not answer"),
        "the page should read the edge's explanation: {f:?}"
    );
    Ok(())
}

pub(crate) async fn upstream_cors_overridden(fx: &Fixture) -> Result<(), String> {
    // The upstream says "Access-Control-Allow-Origin: *"; a listed origin only may read.
    let f = fx.fetch(OTHER, "/permissive/1", json!({})).await?;
    blocked(
        &f,
        "GET from an unlisted origin to an upstream that allows *",
    )?;
    let f = fx.fetch(APP, "/permissive/2", json!({})).await?;
    status(
        &f,
        200,
        "GET from the allowed origin to the permissive upstream",
    )?;
    ensure!(
        !f.headers.contains_key("x-hidden"),
        "the upstream's Expose-Headers: x-hidden must be replaced by the policy's: {:?}",
        f.headers
    );
    let r = fx
        .plain("GET", "/permissive/3", &[("Origin", &fx.origin(OTHER))])
        .await?;
    let cors: Vec<_> = r
        .headers
        .iter()
        .filter(|(k, _)| k.starts_with("access-control-"))
        .collect();
    ensure!(
        cors.is_empty(),
        "an unlisted origin gets no CORS headers at all: {cors:?}"
    );
    let origin = fx.origin(APP);
    let r = fx
        .plain("GET", "/permissive/4", &[("Origin", &origin)])
        .await?;
    ensure!(
        r.all("access-control-allow-origin") == [origin.as_str()]
            && r.all("access-control-expose-headers") == ["x-exposed"]
            && r.header("access-control-allow-methods").is_none(),
        "the edge's headers replace the upstream's: {:?}",
        r.headers
    );
    Ok(())
}

/// Chromium caches a preflight for 5 s when there is no `Access-Control-Max-Age`, so only
/// a repeat after that proves the policy's 600 s is what the browser follows.
pub(crate) const BROWSER_DEFAULT_PREFLIGHT_CACHE: Duration = Duration::from_secs(5);

pub(crate) async fn max_age_honoured(fx: &Fixture) -> Result<(), String> {
    let put = json!({"method": "PUT", "headers": {"X-Custom": "1"}});
    let origin = fx.origin(APP);
    let r = fx
        .plain(
            "OPTIONS",
            "/max-age/1",
            &[
                ("Origin", &origin),
                ("Access-Control-Request-Method", "PUT"),
                ("Access-Control-Request-Headers", "x-custom"),
            ],
        )
        .await?;
    ensure!(
        r.status == 204 && r.header("access-control-max-age") == Some("600"),
        "the edge's preflight answer should carry Max-Age 600: HTTP {} {:?}",
        r.status,
        r.headers
    );
    // The control first: with Max-Age 0 the browser must not cache, so the counter is
    // seen to count each preflight the browser sends.
    let before = fx.counted("no-max-age", "preflight_allowed").await?;
    for i in 1..=2 {
        let f = fx.fetch(APP, "/no-max-age/1", put.clone()).await?;
        status(&f, 200, &format!("PUT /no-max-age/1 #{i}"))?;
    }
    let sent = fx.counted("no-max-age", "preflight_allowed").await? - before;
    ensure!(
        sent == 2,
        "with Max-Age 0 two PUTs should cost two preflights, the edge answered {sent}"
    );

    let before = fx.counted("max-age", "preflight_allowed").await?;
    for i in 1..=3 {
        if i == 3 {
            tokio::time::sleep(BROWSER_DEFAULT_PREFLIGHT_CACHE + Duration::from_millis(500)).await;
        }
        let f = fx.fetch(APP, "/max-age/1", put.clone()).await?;
        status(&f, 200, &format!("PUT /max-age/1 #{i}"))?;
    }
    let sent = fx.counted("max-age", "preflight_allowed").await? - before;
    ensure!(
        sent == 1,
        "three identical PUTs (the last after the browser's 5 s default) under Max-Age 600 should cost one preflight, the edge answered {sent}"
    );
    let puts = fx
        .upstream
        .seen_under("/max-age/1")
        .iter()
        .filter(|s| s.method == "PUT")
        .count();
    ensure!(puts == 3, "every PUT should reach the upstream, saw {puts}");
    Ok(())
}

pub(crate) async fn null_origin(fx: &Fixture) -> Result<(), String> {
    let f = fx
        .browser
        .fetch_sandboxed(&fx.origin(APP), &fx.api("/null/denied"), json!({}))
        .await?;
    ensure!(
        f.origin == "null",
        "a sandboxed iframe has an opaque origin, got {:?}",
        f.origin
    );
    blocked(&f, "GET from a sandboxed iframe (Origin: null)")?;
    let seen = fx.upstream.seen_under("/null/denied");
    ensure!(
        seen.len() == 1 && seen[0].header("origin") == Some("null"),
        "the browser should have sent Origin: null: {seen:?}"
    );
    let f = fx
        .browser
        .fetch_sandboxed(&fx.origin(APP), &fx.api("/null-allowed/1"), json!({}))
        .await?;
    status(
        &f,
        200,
        "GET from a sandboxed iframe where \"null\" is listed literally",
    )?;
    Ok(())
}

type Check<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, u16);

pub(crate) async fn vary_origin(fx: &Fixture) -> Result<(), String> {
    let (app, other) = (fx.origin(APP), fx.origin(OTHER));
    let (app, other) = (app.as_str(), other.as_str());
    // (method, path, request headers, expected status)
    let checks: [Check; 8] = [
        ("GET", "/vary-check/allowed", vec![("Origin", app)], 200),
        ("GET", "/vary-check/other", vec![("Origin", other)], 200),
        ("GET", "/vary-check/no-origin", vec![], 200),
        (
            "OPTIONS",
            "/vary-check/preflight",
            vec![("Origin", app), ("Access-Control-Request-Method", "PUT")],
            204,
        ),
        (
            "OPTIONS",
            "/vary-check/rejected",
            vec![("Origin", app), ("Access-Control-Request-Method", "DELETE")],
            403,
        ),
        ("GET", "/status/500", vec![("Origin", app)], 500),
        ("GET", "/down/vary", vec![("Origin", app)], 502),
        ("GET", "/vary/merged", vec![("Origin", app)], 200),
    ];
    let mut wrong = Vec::new();
    for (method, path, headers, want) in &checks {
        let r = fx.plain(method, path, headers).await?;
        let vary = r.all("vary");
        let origins = vary
            .iter()
            .flat_map(|v| v.split(','))
            .filter(|t| t.trim().eq_ignore_ascii_case("origin"))
            .count();
        if r.status != *want || vary.len() != 1 || origins != 1 {
            wrong.push(format!(
                "{method} {path}: HTTP {} (want {want}), Vary lines {vary:?}",
                r.status
            ));
        }
    }
    let r = fx.plain("GET", "/vary/merged", &[("Origin", app)]).await?;
    if r.all("vary") != ["Accept-Encoding, Origin"] {
        wrong.push(format!(
            "the upstream's Vary should be merged, got {:?}",
            r.all("vary")
        ));
    }
    ensure!(
        wrong.is_empty(),
        "Vary: Origin once, on every response: {}",
        wrong.join("; ")
    );
    Ok(())
}

pub(crate) async fn upstream_never_saw_a_preflight(fx: &Fixture) -> Result<(), String> {
    let seen = fx.upstream.seen();
    let preflights: Vec<_> = seen
        .iter()
        .filter(|s| s.method == "OPTIONS" || s.header("access-control-request-method").is_some())
        .map(|s| format!("{} {}", s.method, s.path))
        .collect();
    ensure!(
        preflights.is_empty(),
        "preflight: Respond answers at the edge, yet the upstream saw {preflights:?}"
    );
    ensure!(
        seen.len() > 20,
        "the suite should have sent plenty upstream, saw only {}",
        seen.len()
    );
    Ok(())
}
