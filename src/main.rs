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
#[command(
    name = "corsgate",
    version,
    about = "CORS at the edge: CorsPolicy resources, a Fetch-correct engine, an edge proxy"
)]
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
    /// The edge proxy: standalone on policy files (--policies, reloading on change), or on a
    /// controller's config stream (--controller).
    Proxy(ProxyArgs),
    /// The operator: watches CorsPolicy and Service, writes status (as the Lease holder),
    /// serves the config stream to proxies. Uses the kubeconfig or in-cluster service account.
    Controller(ControllerArgs),
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
    /// Convert ingress-nginx Ingresses, Gateway API HTTPRoutes or CloudFront response headers
    /// policies to CorsPolicy YAML (stdout), with every difference on stderr.
    Import(ImportArgs),
    /// Write CorsPolicy files for another edge (stdout), with what it cannot express (stderr).
    Export(ExportArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum InteropFormat {
    IngressNginx,
    GatewayApi,
    Cloudfront,
}

impl From<InteropFormat> for corsgate::interop::Format {
    fn from(f: InteropFormat) -> Self {
        match f {
            InteropFormat::IngressNginx => Self::IngressNginx,
            InteropFormat::GatewayApi => Self::GatewayApi,
            InteropFormat::Cloudfront => Self::Cloudfront,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum ImportMode {
    Shadow,
    Enforce,
}

#[derive(clap::Args)]
struct ImportArgs {
    format: InteropFormat,
    /// Input files (YAML or JSON; `-` is stdin); for cloudfront also a managed policy's name.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// The imported policies' mode (Shadow: compare before enforcing, docs/migrating.md).
    #[arg(long, value_enum, ignore_case = true, default_value_t = ImportMode::Shadow)]
    mode: ImportMode,
    /// Host names (repeatable): required for cloudfront, and for rules without a host.
    #[arg(long = "host")]
    hosts: Vec<String>,
    /// Upstream URL: required for cloudfront, and for backends without a port number.
    #[arg(long)]
    upstream: Option<String>,
    /// Namespace of policies whose source has none (cloudfront). Default "default".
    #[arg(long)]
    namespace: Option<String>,
}

#[derive(clap::Args)]
struct ExportArgs {
    format: InteropFormat,
    /// CorsPolicy YAML files.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

#[derive(clap::Args)]
struct ProxyArgs {
    /// Policy file (multi-document YAML) or directory of them.
    #[arg(
        long,
        required_unless_present = "controller",
        conflicts_with = "controller"
    )]
    policies: Option<PathBuf>,
    /// The controller's config stream, e.g. http://corsgate-controller.corsgate:9090.
    #[arg(long)]
    controller: Option<http::Uri>,
    /// This proxy's name in the controller's acknowledgements (default: $POD_NAME, else the host name).
    #[arg(long, env = "POD_NAME")]
    proxy_id: Option<String>,
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
    /// With --controller: how often Shadow-mode counts are reported to the controller.
    #[arg(long, default_value_t = 10)]
    shadow_report_seconds: u64,
}

#[derive(clap::Args)]
struct ControllerArgs {
    /// Config stream address (proxies long-poll GET /v1/config here).
    #[arg(long, default_value = "0.0.0.0:9090")]
    listen: SocketAddr,
    /// Admin address: /healthz, /readyz, /metrics, /config.
    #[arg(long, default_value = "0.0.0.0:9902")]
    admin: SocketAddr,
    /// Watch only this namespace (repeatable); default: every namespace.
    #[arg(long = "namespace")]
    namespaces: Vec<String>,
    /// Quiet time after a change before rebuilding.
    #[arg(long, default_value_t = 250)]
    debounce_ms: u64,
    /// How long a current proxy's poll waits for a new version.
    #[arg(long, default_value_t = 30)]
    long_poll_seconds: u64,
    /// A proxy unseen this long no longer counts for Programmed.
    #[arg(long, default_value_t = 90)]
    proxy_ttl_seconds: u64,
    /// Elect one status writer with a coordination.k8s.io Lease (--leader-election=false: this replica always writes).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,
    #[arg(long, default_value = "corsgate-controller")]
    lease_name: String,
    /// The Lease's namespace (default: $POD_NAMESPACE, else the kubeconfig's namespace).
    #[arg(long, env = "POD_NAMESPACE")]
    lease_namespace: Option<String>,
    #[arg(long, default_value_t = 15)]
    lease_duration_seconds: u64,
    /// This replica's identity in the Lease and in Events (default: $POD_NAME, else host name and a random suffix).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Serve the validating admission webhook (HTTPS, POST /validate) on this address, e.g. 0.0.0.0:8443. Default: off.
    #[arg(long)]
    webhook: Option<SocketAddr>,
    /// The Service in front of the webhook: the generated certificate is for SERVICE.NAMESPACE.svc.
    #[arg(long, default_value = "corsgate-webhook")]
    webhook_service: String,
    /// Namespace of the webhook's Service and Secret (default: $POD_NAMESPACE, else the kubeconfig's namespace).
    #[arg(long, env = "POD_NAMESPACE")]
    webhook_namespace: Option<String>,
    /// Secret holding the generated CA and serving certificate (not used with --tls-cert).
    #[arg(long, default_value = "corsgate-webhook-tls")]
    webhook_secret: String,
    /// ValidatingWebhookConfiguration whose caBundle is kept patched (not used with --tls-cert).
    #[arg(long, default_value = "corsgate")]
    webhook_config_name: String,
    /// Serving certificate (PEM) for the webhook, e.g. from cert-manager; re-read per connection. Disables Secret and caBundle management.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Deny a policy whose host and path another policy already serves (default: admit with a warning).
    #[arg(long)]
    reject_conflicts: bool,
}

fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "corsgate".into())
}

async fn run_controller(a: ControllerArgs, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let client = kube::Client::try_default().await.context(
        "cannot reach the Kubernetes API (set KUBECONFIG, or run in a pod with a service account)",
    )?;
    let identity = a
        .identity
        .unwrap_or_else(|| format!("{}-{:08x}", host_name(), rand::random::<u32>()));
    let lease = if a.leader_election {
        Some(corsgate::controller::lease::LeaseOptions {
            name: a.lease_name,
            namespace: a
                .lease_namespace
                .unwrap_or_else(|| client.default_namespace().to_string()),
            identity: identity.clone(),
            duration: Duration::from_secs(a.lease_duration_seconds.max(2)),
            grace: Duration::from_secs((a.lease_duration_seconds / 3).max(1)),
        })
    } else {
        None
    };
    let webhook = a.webhook.map(|addr| {
        use corsgate::webhook::{TlsMode, WebhookOptions, certs::ManagedOptions};
        let tls = match (a.tls_cert, a.tls_key) {
            (Some(cert), Some(key)) => TlsMode::Files { cert, key },
            _ => TlsMode::Managed(ManagedOptions {
                service: a.webhook_service,
                namespace: a
                    .webhook_namespace
                    .unwrap_or_else(|| client.default_namespace().to_string()),
                secret: a.webhook_secret,
                config_name: a.webhook_config_name,
            }),
        };
        WebhookOptions {
            addr,
            tls,
            reject_conflicts: a.reject_conflicts,
        }
    });
    let opts = corsgate::controller::ControllerOptions {
        listen: a.listen,
        admin: a.admin,
        namespaces: a.namespaces,
        debounce: Duration::from_millis(a.debounce_ms),
        long_poll: Duration::from_secs(a.long_poll_seconds.max(1)),
        proxy_ttl: Duration::from_secs(a.proxy_ttl_seconds.max(3)),
        lease,
        instance: identity,
        webhook,
    };
    corsgate::controller::run(client, opts, shutdown)
        .await
        .context("controller failed")
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
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn runtime(workers: Option<usize>) -> anyhow::Result<tokio::runtime::Runtime> {
    let n = workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
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
    println!(
        "ok: {} policies valid (config version {})",
        snap.policies.len(),
        snap.version
    );
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let result = match cli.command {
        Command::Check { paths } => return check(&paths),
        Command::Import(a) => {
            let opts = corsgate::interop::ImportOptions {
                mode: match a.mode {
                    ImportMode::Shadow => corsgate::policy::Mode::Shadow,
                    ImportMode::Enforce => corsgate::policy::Mode::Enforce,
                },
                hosts: a.hosts,
                upstream: a.upstream,
                namespace: a.namespace,
            };
            return corsgate::interop::run_import(a.format.into(), &a.files, &opts);
        }
        Command::Export(a) => return corsgate::interop::run_export(a.format.into(), &a.files),
        Command::Crd => corsgate::policy::crd::crd_yaml()
            .map(|y| print!("{y}"))
            .context("cannot render the CRD"),
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
        Command::Controller(a) => runtime(None)
            .and_then(|rt| rt.block_on(async { run_controller(a, shutdown_signal()).await })),
        Command::Proxy(a) => runtime(a.workers).and_then(|rt| {
            rt.block_on(async {
                let source = match (a.controller, a.policies) {
                    (Some(controller), _) => {
                        proxy::Source::Controller(proxy::stream::StreamOptions {
                            controller,
                            proxy_id: a.proxy_id.unwrap_or_else(host_name),
                            backoff_min: Duration::from_millis(200),
                            backoff_max: Duration::from_secs(10),
                            poll_timeout: Duration::from_secs(120),
                            shadow_report: Duration::from_secs(a.shadow_report_seconds.max(1)),
                        })
                    }
                    (None, Some(path)) => proxy::Source::Files {
                        path,
                        poll: Duration::from_secs(a.poll_interval_seconds.max(1)),
                    },
                    (None, None) => anyhow::bail!("one of --policies or --controller is required"),
                };
                let opts = proxy::ProxyOptions {
                    listen: a.listen,
                    admin: a.admin,
                    drain: Duration::from_secs(a.drain_timeout_seconds),
                    source,
                };
                proxy::run(opts, shutdown_signal())
                    .await
                    .context("proxy failed")
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
                demo::run(opts, shutdown_signal())
                    .await
                    .context("demo failed")
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
