//! The command line: `corsgate <subcommand>` parsed by clap (`args`), each subcommand wired
//! to the library here, so `main.rs` only calls [`run`]. Owns: flags and their defaults,
//! logging setup, the runtime, the shutdown signal, exit codes. Must not touch: what the
//! subcommands do (that lives in `proxy`, `controller`, `check`, `explain`, `demo`).

pub mod args;
pub mod check;
pub mod explain;

use std::process::ExitCode;

use tokio::sync::watch;

use args::LogFormat;
pub use args::{Cli, Command};

/// Why a subcommand stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error(
        "cannot reach the Kubernetes API (set KUBECONFIG, or run in a pod with a service account): {0}"
    )]
    Kube(#[source] kube::Error),
    #[error("controller failed: {0}")]
    Controller(#[source] crate::controller::Error),
    #[error("proxy failed: {0}")]
    Proxy(#[source] std::io::Error),
    #[error("demo failed: {0}")]
    Demo(#[source] std::io::Error),
    #[error("cannot render the CRD: {0}")]
    Crd(#[source] serde_saphyr::SerializeError),
}

/// Runs the parsed command line; the process exits with the returned code.
pub fn run(cli: Cli) -> ExitCode {
    init_tracing(cli.log_format);
    let result = match cli.command {
        Command::Check { paths } => {
            let report = check::check(&paths);
            eprint!("{}", report.problems);
            return match report.summary {
                Some(ok) => {
                    println!("{ok}");
                    ExitCode::SUCCESS
                }
                _ => ExitCode::FAILURE,
            };
        }
        Command::Import(a) => {
            return crate::interop::run_import(a.format.into(), &a.files, &a.options());
        }
        Command::Export(a) => return crate::interop::run_export(a.format.into(), &a.files),
        Command::Crd => crate::policy::crd::crd_yaml()
            .map(|y| print!("{y}"))
            .map_err(Error::Crd),
        Command::Explain(a) => return explain::run(a),
        Command::Controller(a) => runtime(None).and_then(|rt| {
            rt.block_on(async {
                let client = kube::Client::try_default().await.map_err(Error::Kube)?;
                let opts = a.into_options(&client);
                crate::controller::run(client, opts, shutdown_signal())
                    .await
                    .map_err(Error::Controller)
            })
        }),
        // The proxy's traffic runs on its own per-core workers; this runtime keeps the
        // admin port, reloads and the config stream.
        Command::Proxy(a) => runtime(Some(1)).and_then(|rt| {
            rt.block_on(async {
                crate::proxy::run(a.into_options(), shutdown_signal())
                    .await
                    .map_err(Error::Proxy)
            })
        }),
        Command::Demo(a) => runtime(None).and_then(|rt| {
            rt.block_on(async {
                crate::demo::run(a.into_options(), shutdown_signal())
                    .await
                    .map_err(Error::Demo)
            })
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", crate::serve::describe(&e));
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// The CPUs this process may use: the default `--workers`.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

fn runtime(workers: Option<usize>) -> Result<tokio::runtime::Runtime, Error> {
    let n = workers.unwrap_or_else(default_workers);
    let rt = if n <= 1 {
        // One CPU: a single-threaded scheduler avoids cross-thread wake-ups entirely.
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build()
    };
    rt.map_err(Error::Runtime)
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
