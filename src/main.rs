//! `corsgate <subcommand>`: parses the command line and wires the library's modules.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use tokio::sync::watch;

use corsgate::config::{self, Snapshot};
use corsgate::{demo, explain, proxy};

#[derive(Parser)]
#[command(name = "corsgate", version, about = "CORS at the edge: CorsPolicy resources, a Fetch-correct engine, an edge proxy")]
struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "CORSGATE_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// The edge proxy, standalone: serves the policies in a file or directory, reloading on change.
    Proxy(ProxyArgs),
    /// Validate policy files offline; exit 1 on any error.
    Check {
        /// Policy files or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Explain what the edge does with one browser request, step by step.
    Explain(ExplainArgs),
    /// Run the proxy on the bundled example with an echo upstream and a page on another origin.
    Demo(DemoArgs),
    /// Print the CorsPolicy CustomResourceDefinition (YAML) generated from the Rust types.
    Crd,
}

#[derive(clap::Args)]
struct ProxyArgs {
    /// Policy file (multi-document YAML) or directory of them.
    #[arg(long)]
    policies: PathBuf,
    /// Traffic address.
    #[arg(long, default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Admin address: /healthz, /readyz, /metrics, /config.
    #[arg(long, default_value = "0.0.0.0:9901")]
    admin: SocketAddr,
    /// On SIGTERM, how long in-flight requests may take to finish.
    #[arg(long, default_value_t = 25)]
    drain_timeout_seconds: u64,
    /// Re-read the policies this often even without a file event.
    #[arg(long, default_value_t = 5)]
    poll_interval_seconds: u64,
    /// Worker threads (default: the CPUs this process may use).
    #[arg(long)]
    workers: Option<usize>,
}

#[derive(clap::Args)]
struct ExplainArgs {
    /// Policy file or directory.
    #[arg(long)]
    policies: PathBuf,
    /// The request's host (the API's host name).
    #[arg(long)]
    host: String,
    #[arg(long, default_value = "/")]
    path: String,
    #[arg(long, default_value = "GET")]
    method: String,
    /// The page's origin; omit for a same-origin or non-browser request.
    #[arg(long)]
    origin: Option<String>,
    /// A request header the page sets: `name` or `name: value` (repeatable).
    #[arg(long = "header")]
    headers: Vec<String>,
    /// The page uses credentials: "include" (cookies, HTTP auth).
    #[arg(long)]
    credentials: bool,
    /// The page asks for private network access.
    #[arg(long)]
    private_network: bool,
}

#[derive(clap::Args)]
struct DemoArgs {
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    #[arg(long, default_value = "127.0.0.1:9901")]
    admin: SocketAddr,
    #[arg(long, default_value = "127.0.0.1:3000")]
    page: SocketAddr,
    #[arg(long, default_value = "127.0.0.1:9000")]
    upstream: SocketAddr,
    /// Serve these policies instead of the bundled quickstart.
    #[arg(long)]
    policies: Option<PathBuf>,
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn runtime(workers: Option<usize>) -> anyhow::Result<tokio::runtime::Runtime> {
    let n = workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let rt = if n <= 1 {
        // One CPU: a single-threaded scheduler avoids cross-thread wake-ups entirely.
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(n).enable_all().build()
    };
    rt.context("cannot start the async runtime")
}

/// A channel that turns true on SIGTERM or Ctrl-C.
fn shutdown_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = tokio::signal::ctrl_c() => {}
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
        let _ = tx.send(true);
    });
    rx
}

fn check(paths: &[PathBuf]) -> ExitCode {
    let mut inputs = Vec::new();
    let mut failed = false;
    for p in paths {
        match config::load_inputs(p) {
            Ok(i) => inputs.extend(i),
            Err(errors) => {
                failed = true;
                for e in errors {
                    eprintln!("error: {e}");
                }
            }
        }
    }
    let snap = Snapshot::build(inputs);
    for r in &snap.rejected {
        let at = r.source.as_deref().unwrap_or("?");
        match &r.rejected {
            config::Rejected::InvalidSpec { errors } => {
                failed = true;
                for e in errors {
                    eprintln!("error: {at}: policy {}: {e}", r.policy);
                }
            }
            config::Rejected::Conflicted { winner, host, path } => eprintln!(
                "warning: {at}: policy {} conflicts with {winner} on host {host} path {path}; the older policy ({winner}) wins and {} will not serve",
                r.policy, r.policy
            ),
        }
    }
    if failed {
        return ExitCode::FAILURE;
    }
    println!("ok: {} policies valid (config version {})", snap.policies.len(), snap.version);
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let result = match cli.command {
        Command::Check { paths } => return check(&paths),
        Command::Crd => corsgate::policy::crd::crd_yaml().map(|y| print!("{y}")).context("cannot render the CRD"),
        Command::Explain(a) => {
            let snap = match config::load_snapshot(&a.policies) {
                Ok(s) => s,
                Err(errors) => {
                    for e in errors {
                        eprintln!("error: {e}");
                    }
                    return ExitCode::from(2);
                }
            };
            let req = explain::Request {
                host: a.host,
                path: a.path,
                method: a.method,
                origin: a.origin,
                headers: a.headers,
                credentials: a.credentials,
                private_network: a.private_network,
            };
            let (text, verdict) = explain::explain(&snap, &req);
            print!("{text}");
            return match verdict {
                explain::Verdict::Blocked => ExitCode::FAILURE,
                _ => ExitCode::SUCCESS,
            };
        }
        Command::Proxy(a) => runtime(a.workers).and_then(|rt| {
            rt.block_on(async {
                let opts = proxy::ProxyOptions {
                    listen: a.listen,
                    admin: a.admin,
                    policies: a.policies,
                    drain: Duration::from_secs(a.drain_timeout_seconds),
                    poll: Duration::from_secs(a.poll_interval_seconds.max(1)),
                };
                proxy::run(opts, shutdown_signal()).await.context("proxy failed")
            })
        }),
        Command::Demo(a) => runtime(None).and_then(|rt| {
            rt.block_on(async {
                let opts = demo::DemoOptions {
                    listen: a.listen,
                    admin: a.admin,
                    page: a.page,
                    upstream: a.upstream,
                    policies: a.policies,
                };
                demo::run(opts, shutdown_signal()).await.context("demo failed")
            })
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
