#!/usr/bin/env python3
"""What an idle keep-alive connection costs a server, and whether its memory comes back.

    python3 bench/idle_conns.py --connections 5000 -- \
        target/release/corsgate proxy --policies {policy} --listen 127.0.0.1:{port} \
        --admin 127.0.0.1:{admin} --listen-tls off

Starts the command ({port}, {admin} and {policy} filled in; {policy} is a one-policy file for
Host api.example.test), sends one preflight on one connection to warm it up and reads the
baseline RSS, then opens N keep-alive connections that each send one preflight (scenario A of
peers.py: answered at the edge, no upstream connection) and stay open. It reports the RSS
growth per connection with all N open, then closes them and reports the RSS `--settle`
seconds later against the baseline. Loopback only; the server is stopped by its PID.

The fd limit (soft) is raised to the hard limit for this script and the server; N must fit
under it twice over on one machine (client and server ends), and under the server's own
connection limit (corsgate: --max-connections).
"""
import argparse
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time

POLICY = """apiVersion: corsgate.dev/v1alpha1
kind: CorsPolicy
metadata: {name: idle, namespace: default}
spec:
  hosts: ["api.example.test"]
  upstream: {url: "http://127.0.0.1:@@UPSTREAM@@"}
  cors:
    allowOrigins: ["https://app.example.test"]
    allowMethods: ["GET", "POST", "PUT", "DELETE"]
    allowHeaders: ["content-type", "x-custom"]
    allowCredentials: true
    maxAgeSeconds: 600
"""

PREFLIGHT = (
    b"OPTIONS / HTTP/1.1\r\nHost: api.example.test\r\nOrigin: https://app.example.test\r\n"
    b"Access-Control-Request-Method: PUT\r\n"
    b"Access-Control-Request-Headers: content-type,x-custom\r\n\r\n"
)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def preflight(port, timeout=5.0):
    """One keep-alive connection that has sent one preflight and read its whole answer."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(PREFLIGHT)
    buf = b""
    deadline = time.monotonic() + timeout
    while b"\r\n\r\n" not in buf:
        if time.monotonic() > deadline:
            raise RuntimeError("no complete answer to a preflight")
        chunk = s.recv(4096)
        if not chunk:
            raise RuntimeError(f"connection closed after {buf!r}")
        buf += chunk
    status = buf.split(b"\r\n", 1)[0]
    if b" 204 " not in status + b" " and b" 200 " not in status + b" ":
        raise RuntimeError(f"preflight answered {status!r}")
    return s


def wait_ready(port, proc, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before it listened")
        try:
            preflight(port, timeout=1.0).close()
            return
        except (OSError, RuntimeError):
            time.sleep(0.1)
    raise RuntimeError(f"server not answering on 127.0.0.1:{port} after {timeout} s")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--connections", type=int, default=5000)
    ap.add_argument("--settle", type=float, default=5.0, help="seconds after closing (5)")
    ap.add_argument("--port", type=int, default=18090)
    ap.add_argument("--admin", type=int, default=18091)
    ap.add_argument("--ready-timeout", type=float, default=60.0)
    ap.add_argument("--upstream", type=int, default=9,
                    help="the policy's upstream port on 127.0.0.1 (never used by a preflight; "
                    "hyper-floor connects to it per connection, so give it a backend)")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        ap.error("give the server's command after --")
    raise_nofile()
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if args.connections + 64 > soft:
        ap.error(f"--connections {args.connections} does not fit the fd limit {soft}")

    with tempfile.TemporaryDirectory(prefix="idle-conns-") as tmp:
        policy = os.path.join(tmp, "policy.yaml")
        with open(policy, "w") as f:
            f.write(POLICY.replace("@@UPSTREAM@@", str(args.upstream)))
        argv = [a.format(port=args.port, admin=args.admin, policy=policy) for a in cmd]
        log = open(os.path.join(tmp, "server.log"), "w")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, preexec_fn=raise_nofile)
        conns = []
        try:
            wait_ready(args.port, proc, args.ready_timeout)
            preflight(args.port).close()
            time.sleep(1.0)
            base = rss_kib(proc.pid)
            started = time.monotonic()
            for _ in range(args.connections):
                conns.append(preflight(args.port))
            opened = time.monotonic() - started
            time.sleep(1.0)
            peak = rss_kib(proc.pid)
            for s in conns:
                s.close()
            conns.clear()
            time.sleep(args.settle)
            after = rss_kib(proc.pid)
        except (OSError, RuntimeError) as e:
            print(f"idle_conns: {e}", file=sys.stderr)
            with open(os.path.join(tmp, "server.log")) as f:
                sys.stderr.write(f.read()[-4000:])
            return 1
        finally:
            for s in conns:
                s.close()
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()

    n = args.connections
    per = (peak - base) / n
    print(f"connections {n} (opened in {opened:.1f} s)")
    print(f"base RSS {base / 1024:.1f} MiB, with them open {peak / 1024:.1f} MiB: "
          f"{per:.2f} KiB per connection")
    print(f"{args.settle:g} s after they closed: {after / 1024:.1f} MiB, "
          f"{(after - base) * 100 / base:+.0f} % of base")
    return 0


if __name__ == "__main__":
    sys.exit(main())
