//! End to end in a real browser (issue 7): headless Chromium, driven through chromedriver,
//! runs `fetch()` from pages on real-looking origins against the real `corsgate` binary and
//! a real upstream, all on loopback. The browser's own verdict — what JavaScript can read,
//! or the TypeError it gets — is what each case asserts; a plain HTTP client and the
//! upstream's request log check what the browser hides.
//!
//! One test, one browser session, one proxy: the cases run in order, every failure is
//! collected with its case name, and the test fails at the end listing them all. Chromium
//! missing is a failure that prints the install command, never a skip.
//!
//! Run it: `cargo test --test browser` (add `-- --nocapture` for per-case timings).

#[path = "../support"]
mod support {
    pub mod browser;
}

use std::future::Future;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use support::browser::chromium::{Browser, Fetched};
use support::browser::http;
use support::browser::process::{Corsgate, artifacts_dir, corsgate_bin, free_addrs};
use support::browser::servers::{Pages, Upstream};

/// Each case gets this long; a hung case fails by name instead of hanging the suite.
const CASE_DEADLINE: Duration = Duration::from_secs(45);

/// The page origins' host names. Chromium maps every `*.example.test` to 127.0.0.1.
const APP: &str = "app.example.test";
const OTHER: &str = "other.example.test";
const API: &str = "api.example.test";

/// The quickstart `corsgate demo` serves; the demo case moves it to free ports.
const QUICKSTART: &str = include_str!("../../examples/quickstart.yaml");

/// Fails the enclosing case (a `Result<(), String>` function) with a message.
macro_rules! ensure {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err(format!($($arg)+));
        }
    };
}

mod cases;
mod demo;
mod fixture;

use cases::*;
use demo::*;
use fixture::*;

// ---- the runner -----------------------------------------------------------------------

/// Runs each `"name" => case` in order, recording its result under its name.
macro_rules! run_cases {
    ($report:expr, $fx:expr, [$($name:literal => $case:ident),+ $(,)?]) => {
        $($report.run($name, $case($fx)).await;)+
    };
}

#[derive(Default)]
struct Report {
    passed: Vec<&'static str>,
    failed: Vec<String>,
}

impl Report {
    async fn run(&mut self, name: &'static str, case: impl Future<Output = Result<(), String>>) {
        let started = Instant::now();
        let result = match tokio::time::timeout(CASE_DEADLINE, case).await {
            Ok(r) => r,
            Err(_) => Err(format!("did not finish within {CASE_DEADLINE:?}")),
        };
        let took = started.elapsed();
        match result {
            Ok(()) => {
                eprintln!("ok    {name} ({took:.2?})");
                self.passed.push(name);
            }
            Err(e) => {
                eprintln!("FAIL  {name} ({took:.2?}): {e}");
                self.failed.push(format!("[{name}] {e}"));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_end_to_end() {
    let started = Instant::now();
    let fx = Fixture::start().await;
    eprintln!(
        "browser suite: proxy http://{} (admin {}), upstream {}, pages on port {}, logs in {} (setup {:.2?})",
        fx.proxy.listen,
        fx.proxy.admin,
        fx.upstream.addr,
        fx.pages.addr.port(),
        fx.dir.path().display(),
        started.elapsed()
    );
    let mut report = Report::default();
    run_cases!(report, &fx, [
        "simple GET: allowed origin reads it" => simple_get_allowed,
        "simple GET: another origin is blocked" => simple_get_other_origin_blocked,
        "wildcard: subdomains pass, apex and suffix attacks fail" => wildcard_subdomains,
        "regex origin: full match only" => regex_origins,
        "preflighted PUT: passes, upstream never sees OPTIONS" => preflighted_put,
        "disallowed method fails" => disallowed_method,
        "disallowed header fails" => disallowed_header,
        "credentials: cookie works when allowed, reflected" => credentials_allowed,
        "credentials: refused without allowCredentials or with *" => credentials_refused,
        "exposed vs unexposed response headers" => exposed_headers,
        "upstream 500 is readable" => upstream_500,
        "upstream down: 502 is readable" => upstream_down,
        "upstream slow: 504 is readable" => upstream_slow,
        "upstream's permissive CORS headers overridden" => upstream_cors_overridden,
        "Max-Age: identical preflights not sent again" => max_age_honoured,
        "null origin (sandboxed iframe) rejected" => null_origin,
        "Vary: Origin on every response" => vary_origin,
        "upstream never saw a preflight" => upstream_never_saw_a_preflight,
        "demo page: the allowed/blocked table" => demo_page,
    ]);

    let proxy_log = fx.proxy.guard.log_tail(40);
    let Fixture {
        browser,
        proxy,
        upstream,
        pages,
        dir,
    } = fx;
    browser.close().await;
    drop((proxy, upstream, pages));
    // Keep the logs (corsgate, chromedriver, demo) when something failed.
    let logs: PathBuf = if report.failed.is_empty() {
        dir.path().to_path_buf()
    } else {
        dir.keep()
    };
    eprintln!(
        "browser suite: {} passed, {} failed in {:.2?}",
        report.passed.len(),
        report.failed.len(),
        started.elapsed()
    );
    assert!(
        report.failed.is_empty(),
        "{} of {} browser cases failed:\n  {}\n(logs were in {})\n{proxy_log}",
        report.failed.len(),
        report.failed.len() + report.passed.len(),
        report.failed.join("\n  "),
        logs.display()
    );
}
