//! Child processes that are always stopped: a guard kills its process by PID when it drops
//! (test end, failure or panic), and the `corsgate` binary started on free loopback ports
//! with its readiness awaited under a deadline.

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::http;

/// `N` distinct free ports on 127.0.0.1, as the kernel hands them out (all held at once, so
/// they differ). The listeners are closed before the ports are used, so another process
/// could take one in between; that race is rare, and a process that cannot bind fails
/// loudly rather than silently.
pub fn free_addrs<const N: usize>() -> [SocketAddr; N] {
    let listeners: [TcpListener; N] =
        std::array::from_fn(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"));
    listeners.map(|l| l.local_addr().expect("local address of a bound listener"))
}

/// A started process, killed by PID when dropped. Its stdout and stderr go to a log file,
/// read back for failure messages.
pub struct Guard {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Guard {
    /// Starts `cmd`, logging both streams to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Guard {
        let out = File::create(log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
        let err = out.try_clone().expect("clone a log file handle");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        Guard {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(status)` when the process has already ended.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The last lines the process wrote, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        let from = all.len().saturating_sub(lines);
        format!(
            "--- last lines of {} ({}) ---\n{}",
            self.name,
            self.log.display(),
            all[from..].join("\n")
        )
    }

    /// Waits up to `deadline` for the process to end by itself.
    pub fn wait_exit(&mut self, deadline: Duration) -> bool {
        let until = Instant::now() + deadline;
        while Instant::now() < until {
            if self.exited().is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        false
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.exited().is_none() {
            // Child::kill sends SIGKILL to this PID, and only to it.
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// The `corsgate` binary Cargo built for this test.
pub fn corsgate_bin() -> &'static str {
    env!("CARGO_BIN_EXE_corsgate")
}

/// Where test artifacts go: `<target dir>/browser-artifacts`, found from the binary's path
/// so `CARGO_TARGET_DIR` is honoured.
pub fn artifacts_dir() -> PathBuf {
    let bin = Path::new(corsgate_bin());
    let target = bin
        .parent()
        .and_then(Path::parent)
        .map_or_else(|| PathBuf::from("target"), Path::to_path_buf);
    let dir = target.join("browser-artifacts");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

/// A running `corsgate` process (proxy or demo): its traffic and admin addresses.
pub struct Corsgate {
    pub guard: Guard,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
}

impl Corsgate {
    /// `corsgate proxy --policies FILE` on free loopback ports, once `/readyz` says ready.
    pub async fn proxy(policies: &Path, log: &Path) -> Result<Corsgate, String> {
        Corsgate::proxy_tls(policies, log, None).await
    }

    /// As [`Corsgate::proxy`], with `--listen-tls` on `tls` (`None`: off).
    pub async fn proxy_tls(
        policies: &Path,
        log: &Path,
        tls: Option<SocketAddr>,
    ) -> Result<Corsgate, String> {
        let tls = tls.map_or_else(|| "off".to_string(), |a| a.to_string());
        let [listen, admin] = free_addrs();
        let mut cmd = Command::new(corsgate_bin());
        cmd.arg("proxy")
            .arg("--policies")
            .arg(policies)
            .args([
                "--listen",
                &listen.to_string(),
                "--listen-tls",
                &tls,
                "--admin",
                &admin.to_string(),
                "--workers",
                "2",
            ])
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1");
        Corsgate::ready("corsgate proxy", cmd, listen, admin, log).await
    }

    /// Starts `cmd` and waits (at most 20 s) for its admin `/readyz` to answer 200.
    pub async fn ready(
        name: &str,
        cmd: Command,
        listen: SocketAddr,
        admin: SocketAddr,
        log: &Path,
    ) -> Result<Corsgate, String> {
        let mut guard = Guard::spawn(name, cmd, log);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = guard.exited() {
                return Err(format!(
                    "{name} exited early with {status}\n{}",
                    guard.log_tail(30)
                ));
            }
            if let Ok(r) = http::send(admin, "GET", "localhost", "/readyz", &[]).await {
                if r.status == 200 {
                    return Ok(Corsgate {
                        guard,
                        listen,
                        admin,
                    });
                }
                // Not ready because the policies do not load: say so now, not in 20 s.
                if let Ok(c) = http::send(admin, "GET", "localhost", "/config", &[]).await {
                    let doc: serde_json::Value = serde_json::from_str(&c.body).unwrap_or_default();
                    if let Some(errors) = doc["lastLoad"]["errors"]
                        .as_array()
                        .filter(|e| !e.is_empty())
                    {
                        return Err(format!("{name} rejected its policies: {errors:?}"));
                    }
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{name} not ready on http://{admin}/readyz within 20 s\n{}",
                    guard.log_tail(30)
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The value of `corsgate_proxy_requests_total{policy, outcome}` (0 when absent).
    pub async fn requests(&self, policy: &str, outcome: &str) -> Result<u64, String> {
        let r = http::send(self.admin, "GET", "localhost", "/metrics", &[]).await?;
        let (p, o) = (
            format!("policy=\"{policy}\""),
            format!("outcome=\"{outcome}\""),
        );
        for line in r.body.lines() {
            if line.starts_with("corsgate_proxy_requests_total{")
                && line.contains(&p)
                && line.contains(&o)
            {
                let value = line.rsplit(' ').next().unwrap_or_default();
                return value
                    .parse::<f64>()
                    .map(|v| v as u64)
                    .map_err(|e| format!("metrics line {line:?}: {e}"));
            }
        }
        Ok(0)
    }
}
