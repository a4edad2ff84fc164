//! The flags of every subcommand, with their defaults (README's flag tables list them), and
//! their conversion into each module's options.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use crate::controller::ControllerOptions;
use crate::controller::lease::LeaseOptions;
use crate::demo::DemoOptions;
use crate::proxy::forward::ForwardOptions;
use crate::proxy::stream::StreamOptions;
use crate::proxy::{ProxyOptions, Source};
use crate::serve::ConnLimits;
use crate::webhook::certs::ManagedOptions;
use crate::webhook::{TlsMode, WebhookOptions};

#[derive(Parser)]
#[command(
    name = "corsgate",
    version,
    about = "CORS at the edge: CorsPolicy resources, a Fetch-correct engine, an edge proxy"
)]
pub struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "CORSGATE_LOG_FORMAT")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum Command {
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
pub enum InteropFormat {
    IngressNginx,
    GatewayApi,
    Cloudfront,
}

impl From<InteropFormat> for crate::interop::Format {
    fn from(f: InteropFormat) -> Self {
        match f {
            InteropFormat::IngressNginx => Self::IngressNginx,
            InteropFormat::GatewayApi => Self::GatewayApi,
            InteropFormat::Cloudfront => Self::Cloudfront,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ImportMode {
    Shadow,
    Enforce,
}

#[derive(clap::Args)]
pub struct ImportArgs {
    pub format: InteropFormat,
    /// Input files (YAML or JSON; `-` is stdin); for cloudfront also a managed policy's name
    /// (Managed-SimpleCORS, ...) or ID.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// The imported policies' mode (Shadow: compare before enforcing, docs/migrating.md).
    #[arg(long, value_enum, ignore_case = true, default_value_t = ImportMode::Shadow)]
    pub mode: ImportMode,
    /// Host names (repeatable): required for cloudfront, and for rules without a host.
    #[arg(long = "host")]
    pub hosts: Vec<String>,
    /// Upstream URL: required for cloudfront; for ingress-nginx and gateway-api it replaces
    /// every imported policy's backend (e.g. the ingress-nginx controller during Shadow).
    #[arg(long)]
    pub upstream: Option<String>,
    /// Namespace of policies whose source has none (cloudfront). Default "default".
    #[arg(long)]
    pub namespace: Option<String>,
}

impl ImportArgs {
    pub fn options(&self) -> crate::interop::ImportOptions {
        crate::interop::ImportOptions {
            mode: match self.mode {
                ImportMode::Shadow => crate::policy::Mode::Shadow,
                ImportMode::Enforce => crate::policy::Mode::Enforce,
            },
            hosts: self.hosts.clone(),
            upstream: self.upstream.clone(),
            namespace: self.namespace.clone(),
        }
    }
}

#[derive(clap::Args)]
pub struct ExportArgs {
    pub format: InteropFormat,
    /// CorsPolicy YAML files.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

/// A listener address, or "off".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenAddr(pub Option<SocketAddr>);

impl std::str::FromStr for ListenAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("off") {
            return Ok(ListenAddr(None));
        }
        s.parse().map(|a| ListenAddr(Some(a))).map_err(|e| {
            format!("{s:?} is not an address such as 0.0.0.0:8443 ({e}); use \"off\" to disable")
        })
    }
}

#[derive(clap::Args)]
pub struct ProxyArgs {
    /// Policy file (multi-document YAML) or directory of them.
    #[arg(
        long,
        required_unless_present = "controller",
        conflicts_with = "controller"
    )]
    pub policies: Option<PathBuf>,
    /// The controller's config stream, e.g. http://corsgate-controller.corsgate:9090.
    #[arg(long)]
    pub controller: Option<http::Uri>,
    /// This proxy's name in the controller's acknowledgements (default: $POD_NAME, else the host name).
    #[arg(long, env = "POD_NAME")]
    pub proxy_id: Option<String>,
    /// Traffic address.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// HTTPS traffic address (certificates by SNI from the policies' spec.tls.secretName; ALPN h2 and http/1.1), or "off".
    #[arg(long, default_value = "0.0.0.0:8443")]
    pub listen_tls: ListenAddr,
    /// Admin address: /healthz, /readyz, /metrics, /config.
    #[arg(long, default_value = "0.0.0.0:9901")]
    pub admin: SocketAddr,
    /// On SIGTERM, how long in-flight requests may take to finish.
    #[arg(long, default_value_t = 25)]
    pub drain_timeout_seconds: u64,
    /// Check the policy files this often even without a file event; they are read again only when they changed (name, length, modification time or inode) or the last read failed.
    #[arg(long, default_value_t = 5)]
    pub poll_interval_seconds: u64,
    /// Per-core workers: each a thread with its own single-threaded runtime and its own SO_REUSEPORT listeners (the kernel spreads connections over them), so a connection never leaves its core. Default: the CPUs this process may use.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub workers: Option<u16>,
    /// With --controller: how often Shadow-mode counts are reported to the controller.
    #[arg(long, default_value_t = 10)]
    pub shadow_report_seconds: u64,
    /// With --controller: the first retry delay after a failed poll (doubles up to --stream-backoff-max-ms, with full jitter).
    #[arg(long, default_value_t = 200)]
    pub stream_backoff_min_ms: u64,
    /// With --controller: the longest retry delay after failed polls.
    #[arg(long, default_value_t = 10_000)]
    pub stream_backoff_max_ms: u64,
    /// With --controller: client-side bound on one poll (keep it above the controller's --long-poll-seconds).
    #[arg(long, default_value_t = 120)]
    pub stream_poll_timeout_seconds: u64,
    /// With --controller: bound on connecting to the controller.
    #[arg(long, default_value_t = 5)]
    pub stream_connect_timeout_seconds: u64,
    /// Forward request headers whose names contain '_' (X_Real_IP). Off: they are dropped, as nginx's underscores_in_headers off does, since CGI/WSGI/Rack backends read them as the headers the edge sets.
    #[arg(long)]
    pub allow_underscores_in_headers: bool,
    /// Upstream requests one client connection may have in flight (requests whose client went away and that are finishing included); also its HTTP/2 concurrent streams. More wait for a slot, within the policy's upstream timeout.
    #[arg(long, default_value_t = crate::proxy::forward::DEFAULT_MAX_UPSTREAM_PER_CONNECTION, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_upstream_requests_per_connection: u32,
    /// With an https:// --controller: this proxy's client certificate (PEM) for the mutually authenticated config stream; needs --client-key and --controller-ca.
    #[arg(long, requires_all = ["client_key", "controller_ca", "controller"])]
    pub client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    /// CA (PEM) that issued the controller's stream certificate.
    #[arg(long, requires = "client_cert")]
    pub controller_ca: Option<PathBuf>,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// What one client connection may cost (README, "Hardening").
#[derive(clap::Args)]
pub struct ConnArgs {
    /// A new connection must send its first byte (or finish its TLS handshake) within this.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub first_byte_timeout_seconds: u64,
    /// HTTP/1.1: a request's headers must arrive within this; also bounds the wait for the next request on a keep-alive connection.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub header_timeout_seconds: u64,
    /// A connection with no request in flight for this long is closed (HTTP/2: GOAWAY).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout_seconds: u64,
    /// A response write the client has not accepted for this long aborts the response and closes the connection (nginx send_timeout).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub send_timeout_seconds: u64,
    /// HTTP/2: send a PING this often on a connection (0: never).
    #[arg(long, default_value_t = 30)]
    pub h2_keepalive_interval_seconds: u64,
    /// HTTP/2: close the connection when a PING is not answered within this.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub h2_keepalive_timeout_seconds: u64,
    /// Largest request head (request line and headers; HTTP/2: the header list); 431 above it. At least 8192.
    #[arg(long, default_value_t = 32 * 1024, value_parser = clap::value_parser!(u64).range(8192..=16 * 1024 * 1024))]
    pub max_header_bytes: u64,
    /// Most client connections held at once; more are accepted and closed at once (counted in corsgate_connections_refused_total). 0: no limit. Default: half the open-file limit less 64, at most 10000.
    #[arg(long)]
    pub max_connections: Option<usize>,
}

impl ConnArgs {
    /// The header timeout and the per-connection limits of the traffic listener.
    pub fn into_limits(self) -> (Duration, ConnLimits) {
        let secs = Duration::from_secs;
        let limits = ConnLimits {
            first_byte: secs(self.first_byte_timeout_seconds),
            idle: secs(self.idle_timeout_seconds),
            send: secs(self.send_timeout_seconds),
            h2_keepalive_interval: (self.h2_keepalive_interval_seconds > 0)
                .then(|| secs(self.h2_keepalive_interval_seconds)),
            h2_keepalive_timeout: secs(self.h2_keepalive_timeout_seconds),
            max_header_bytes: usize::try_from(self.max_header_bytes).unwrap_or(usize::MAX),
            max_connections: self
                .max_connections
                .unwrap_or_else(crate::serve::conn::default_max_connections),
            ..ConnLimits::default()
        };
        (secs(self.header_timeout_seconds), limits)
    }
}

#[derive(clap::Args)]
pub struct ControllerArgs {
    /// Config stream address (proxies long-poll GET /v1/config here).
    #[arg(long, default_value = "0.0.0.0:9090")]
    pub listen: SocketAddr,
    /// Serve the config stream over mutually authenticated TLS with this certificate (PEM); needs --stream-tls-key and --stream-client-ca. Default: cleartext.
    #[arg(long, requires_all = ["stream_tls_key", "stream_client_ca"])]
    pub stream_tls_cert: Option<PathBuf>,
    /// The config stream's private key (PEM).
    #[arg(long, requires = "stream_tls_cert")]
    pub stream_tls_key: Option<PathBuf>,
    /// CA (PEM) that issued the proxies' client certificates: a client without one gets nothing from the stream.
    #[arg(long, requires = "stream_tls_cert")]
    pub stream_client_ca: Option<PathBuf>,
    /// Serve the config stream over mutually authenticated TLS with certificates this controller issues: a CA and its serving certificate kept in this Secret, and the proxies' client certificate in --stream-proxy-secret (what the chart does). Needed for spec.tls: private keys only travel on an authenticated stream.
    #[arg(long, conflicts_with = "stream_tls_cert")]
    pub stream_certs_secret: Option<String>,
    /// The Secret the proxies mount (ca.crt, tls.crt, tls.key): their client certificate for the config stream.
    #[arg(long, default_value = "corsgate-stream-proxy")]
    pub stream_proxy_secret: String,
    /// The controller's Service: the stream certificate is for SERVICE.NAMESPACE.svc (and localhost).
    #[arg(long, default_value = "corsgate-controller")]
    pub stream_service: String,
    /// Namespace of the stream Secrets and Service (default: $POD_NAMESPACE, else the kubeconfig's namespace).
    #[arg(long, env = "POD_NAMESPACE")]
    pub stream_namespace: Option<String>,
    /// Admin address: /healthz, /readyz, /metrics, /config.
    #[arg(long, default_value = "0.0.0.0:9902")]
    pub admin: SocketAddr,
    /// Watch only this namespace (repeatable); default: every namespace.
    #[arg(long = "namespace")]
    pub namespaces: Vec<String>,
    /// Quiet time after a change before rebuilding.
    #[arg(long, default_value_t = 250)]
    pub debounce_ms: u64,
    /// How long a current proxy's poll waits for a new version.
    #[arg(long, default_value_t = 30)]
    pub long_poll_seconds: u64,
    /// A proxy unseen this long no longer counts for Programmed.
    #[arg(long, default_value_t = 90)]
    pub proxy_ttl_seconds: u64,
    /// How long a proxy may take to load a new config (and, after start or a lease takeover, to reconnect) before Programmed reports it behind; status writes wait that long rather than flap.
    #[arg(long, default_value_t = 5000)]
    pub programmed_grace_ms: u64,
    /// At most one status write per policy per this interval; changes in between are coalesced.
    #[arg(long, default_value_t = 2000)]
    pub status_min_interval_ms: u64,
    /// Elect one status writer with a coordination.k8s.io Lease (--leader-election=false: this replica always writes).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    #[arg(long, default_value = "corsgate-controller")]
    pub lease_name: String,
    /// The Lease's namespace (default: $POD_NAMESPACE, else the kubeconfig's namespace).
    #[arg(long, env = "POD_NAMESPACE")]
    pub lease_namespace: Option<String>,
    #[arg(long, default_value_t = 15)]
    pub lease_duration_seconds: u64,
    /// This replica's identity in the Lease and in Events (default: $POD_NAME, else host name and a random suffix).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Serve the validating admission webhook (HTTPS, POST /validate) on this address, e.g. 0.0.0.0:8443. Default: off.
    #[arg(long)]
    pub webhook: Option<SocketAddr>,
    /// The Service in front of the webhook: the generated certificate is for SERVICE.NAMESPACE.svc.
    #[arg(long, default_value = "corsgate-webhook")]
    pub webhook_service: String,
    /// Namespace of the webhook's Service and Secret (default: $POD_NAMESPACE, else the kubeconfig's namespace).
    #[arg(long, env = "POD_NAMESPACE")]
    pub webhook_namespace: Option<String>,
    /// Secret holding the generated CA and serving certificate (not used with --tls-cert).
    #[arg(long, default_value = "corsgate-webhook-tls")]
    pub webhook_secret: String,
    /// ValidatingWebhookConfiguration whose caBundle is kept patched (not used with --tls-cert).
    #[arg(long, default_value = "corsgate")]
    pub webhook_config_name: String,
    /// Serving certificate (PEM) for the webhook, e.g. from cert-manager; re-read per connection. Disables Secret and caBundle management.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Deny a policy whose host and path another policy already serves (default: admit with a warning).
    #[arg(long)]
    pub reject_conflicts: bool,
}

#[derive(clap::Args)]
pub struct ExplainArgs {
    /// Policy file or directory.
    #[arg(long, required_unless_present_any = ["proxy", "kubeconfig"], conflicts_with_all = ["proxy", "kubeconfig"])]
    pub policies: Option<PathBuf>,
    /// Ask a running proxy instead: its admin address (e.g. http://127.0.0.1:9901); the
    /// answer is computed on the configuration it serves now, and names its version.
    #[arg(long, conflicts_with = "kubeconfig")]
    pub proxy: Option<String>,
    /// Explain against the CorsPolicies in a cluster, listed with this kubeconfig's
    /// credentials (its current context; needs list on corspolicies in all namespaces).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The request's host (the API's host name).
    #[arg(long)]
    pub host: String,
    #[arg(long, default_value = "/")]
    pub path: String,
    #[arg(long, default_value = "GET")]
    pub method: String,
    /// The page's origin; omit for a same-origin or non-browser request.
    #[arg(long)]
    pub origin: Option<String>,
    /// A request header the page sets: `name` or `name: value` (repeatable).
    #[arg(long = "header")]
    pub headers: Vec<String>,
    /// The page uses credentials: "include" (cookies, HTTP auth).
    #[arg(long)]
    pub credentials: bool,
    /// The page asks for private network access.
    #[arg(long)]
    pub private_network: bool,
}

#[derive(clap::Args)]
pub struct DemoArgs {
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    #[arg(long, default_value = "127.0.0.1:9901")]
    pub admin: SocketAddr,
    #[arg(long, default_value = "127.0.0.1:3000")]
    pub page: SocketAddr,
    #[arg(long, default_value = "127.0.0.1:9000")]
    pub upstream: SocketAddr,
    /// Serve these policies instead of the bundled quickstart.
    #[arg(long)]
    pub policies: Option<PathBuf>,
}

impl ProxyArgs {
    /// The proxy's options (`--controller` wins over `--policies`; clap makes them exclusive).
    pub fn into_options(self) -> ProxyOptions {
        let source = match (self.controller, self.policies) {
            (Some(controller), _) => Source::Controller(StreamOptions {
                controller,
                proxy_id: self.proxy_id.unwrap_or_else(host_name),
                backoff_min: Duration::from_millis(self.stream_backoff_min_ms.max(1)),
                backoff_max: Duration::from_millis(
                    self.stream_backoff_max_ms
                        .max(self.stream_backoff_min_ms.max(1)),
                ),
                poll_timeout: Duration::from_secs(self.stream_poll_timeout_seconds.max(1)),
                shadow_report: Duration::from_secs(self.shadow_report_seconds.max(1)),
                connect_timeout: Duration::from_secs(self.stream_connect_timeout_seconds.max(1)),
                tls: match (self.client_cert, self.client_key, self.controller_ca) {
                    (Some(cert), Some(key), Some(ca)) => {
                        Some(Box::new(crate::serve::MutualFiles { cert, key, ca }))
                    }
                    _ => None,
                },
            }),
            (None, path) => Source::Files {
                // clap requires --policies without --controller.
                path: path.unwrap_or_default(),
                poll: Duration::from_secs(self.poll_interval_seconds.max(1)),
            },
        };
        let (header_timeout, conn) = self.conn.into_limits();
        ProxyOptions {
            listen: self.listen,
            listen_tls: self.listen_tls.0,
            admin: self.admin,
            drain: Duration::from_secs(self.drain_timeout_seconds),
            source,
            forward: ForwardOptions {
                allow_underscores: self.allow_underscores_in_headers,
                max_upstream_per_connection: self.max_upstream_requests_per_connection,
            },
            header_timeout,
            conn,
            workers: self
                .workers
                .map_or_else(crate::cli::default_workers, usize::from),
        }
    }
}

impl ControllerArgs {
    /// The controller's options; namespaces not given default to the client's.
    pub fn into_options(self, client: &kube::Client) -> ControllerOptions {
        let identity = self
            .identity
            .unwrap_or_else(|| format!("{}-{:08x}", host_name(), rand::random::<u32>()));
        let lease = self.leader_election.then(|| LeaseOptions {
            name: self.lease_name,
            namespace: self
                .lease_namespace
                .unwrap_or_else(|| client.default_namespace().to_string()),
            identity: identity.clone(),
            duration: Duration::from_secs(self.lease_duration_seconds.max(2)),
            grace: Duration::from_secs((self.lease_duration_seconds / 3).max(1)),
        });
        let webhook = self.webhook.map(|addr| {
            let tls = match (self.tls_cert, self.tls_key) {
                (Some(cert), Some(key)) => TlsMode::Files { cert, key },
                _ => TlsMode::Managed(ManagedOptions {
                    service: self.webhook_service,
                    namespace: self
                        .webhook_namespace
                        .unwrap_or_else(|| client.default_namespace().to_string()),
                    secret: self.webhook_secret,
                    config_name: self.webhook_config_name,
                }),
            };
            WebhookOptions {
                addr,
                tls,
                reject_conflicts: self.reject_conflicts,
            }
        });
        ControllerOptions {
            listen: self.listen,
            stream_tls: match (
                self.stream_tls_cert,
                self.stream_tls_key,
                self.stream_client_ca,
            ) {
                (Some(cert), Some(key), Some(ca)) => {
                    Some(crate::serve::MutualFiles { cert, key, ca })
                }
                _ => None,
            },
            stream_certs: self.stream_certs_secret.map(|secret| {
                crate::controller::stream_certs::StreamCertOptions {
                    service: self.stream_service,
                    namespace: self
                        .stream_namespace
                        .unwrap_or_else(|| client.default_namespace().to_string()),
                    secret,
                    proxy_secret: self.stream_proxy_secret,
                }
            }),
            admin: self.admin,
            namespaces: self.namespaces,
            debounce: Duration::from_millis(self.debounce_ms),
            long_poll: Duration::from_secs(self.long_poll_seconds.max(1)),
            proxy_ttl: Duration::from_secs(self.proxy_ttl_seconds.max(3)),
            programmed_grace: Duration::from_millis(self.programmed_grace_ms),
            status_min_interval: Duration::from_millis(self.status_min_interval_ms),
            lease,
            instance: identity,
            webhook,
        }
    }
}

/// Where `explain` finds the policies.
pub enum ExplainSource {
    Files(PathBuf),
    Proxy(String),
    Cluster(PathBuf),
}

impl ExplainArgs {
    /// Where the policies come from (clap makes the three exclusive, and one required).
    pub fn source(&self) -> ExplainSource {
        match (&self.proxy, &self.kubeconfig, &self.policies) {
            (Some(p), _, _) => ExplainSource::Proxy(p.clone()),
            (None, Some(k), _) => ExplainSource::Cluster(k.clone()),
            (None, None, p) => {
                ExplainSource::Files(p.clone().unwrap_or_else(|| PathBuf::from(".")))
            }
        }
    }

    /// The request to explain.
    pub fn into_request(self) -> crate::explain::Request {
        crate::explain::Request {
            host: self.host,
            path: self.path,
            method: self.method,
            origin: self.origin,
            headers: self.headers,
            credentials: self.credentials,
            private_network: self.private_network,
        }
    }
}

impl DemoArgs {
    pub fn into_options(self) -> DemoOptions {
        DemoOptions {
            listen: self.listen,
            admin: self.admin,
            page: self.page,
            upstream: self.upstream,
            policies: self.policies,
        }
    }
}

/// This machine's name: `$HOSTNAME`, else /etc/hostname, else "corsgate".
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
