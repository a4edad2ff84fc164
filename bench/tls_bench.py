#!/usr/bin/env python3
"""HTTPS at the edge (issue 15): corsgate's --listen-tls beside nginx terminating TLS with
the same ECDSA P-256 certificate, the same CORS policy (templates/corsgate-policy.yaml and
templates/nginx-ingress.conf, with TLS added) and the same backend.

Scenarios, each for both servers:
  preflight  OPTIONS over keep-alive HTTPS/1.1 (wrk -t1 -c32), answered at the edge
  get        proxied GET over keep-alive HTTPS/1.1 (wrk -t1 -c32)
  get-h2     proxied GET over keep-alive HTTP/2 (h2load -c32 -m10)
  handshake  a new TLS connection (h2, one request) per request (h2load -n N -c N)

Reported: requests (or handshakes) per second, and the server's CPU time per request from
/proc (user + system, every process of the server). The server under test is pinned to
CPU 0 (corsgate --workers 1, nginx worker_processes 1), the load generator to CPU 1, the
backend to CPU 1 too. Everything on 127.0.0.1; every process stopped by PID.

Usage: python3 bench/tls_bench.py [--bin target/release/corsgate] [--duration 5]
Needs: nginx, wrk, h2load (nghttp2-client), openssl, taskset.
"""

import argparse
import base64
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ORIGIN = "https://app.example.test"
HOST = "localhost"  # wrk and h2load take SNI from the URL; localhost resolves without DNS.


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port: int, what: str, deadline: float = 20.0) -> None:
    end = time.time() + deadline
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"{what} did not listen on {port} within {deadline} s")


def pids_of(root: int) -> list[int]:
    """`root` and its children (nginx master and workers)."""
    out = [root]
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if int(fields[1]) == root:
                    out.append(int(d))
            except OSError:
                pass
    return out


def cpu_seconds(pids: list[int]) -> float:
    ticks = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return ticks / os.sysconf("SC_CLK_TCK")


def render(template: str, **subs: str) -> str:
    with open(os.path.join(HERE, "templates", template)) as f:
        text = f.read()
    for k, v in subs.items():
        text = text.replace(f"@@{k}@@", v)
    return text


def make_cert(d: str) -> tuple[str, str]:
    key, cert = os.path.join(d, "tls.key"), os.path.join(d, "tls.crt")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", key, "-out", cert, "-days", "7", "-subj", f"/CN={HOST}",
         "-addext", f"subjectAltName=DNS:{HOST}"],
        check=True, capture_output=True)
    return cert, key


def corsgate_policy(backend: int, cert: str, key: str) -> str:
    b64 = lambda p: base64.b64encode(open(p, "rb").read()).decode()
    policy = render("corsgate-policy.yaml", BACKEND=str(backend))
    policy = policy.replace('"api.example.test"', f'"{HOST}"').replace("api.example.test", HOST)
    return (
        "apiVersion: v1\nkind: Secret\nmetadata: {name: bench-tls, namespace: default}\n"
        f"type: kubernetes.io/tls\ndata:\n  tls.crt: {b64(cert)}\n  tls.key: {b64(key)}\n---\n"
        + policy.rstrip() + "\n  tls: {secretName: bench-tls}\n"
    )


def nginx_tls_conf(port: int, backend: int, d: str, cert: str, key: str) -> str:
    conf = render("nginx-ingress.conf", PORT=str(port), BACKEND=str(backend), DIR=d, WORKERS="1")
    conf = conf.replace(
        f"listen 127.0.0.1:{port} backlog=4096;",
        f"listen 127.0.0.1:{port} ssl http2 backlog=4096;\n"
        f"        ssl_certificate {cert};\n        ssl_certificate_key {key};\n"
        "        ssl_protocols TLSv1.2 TLSv1.3;",
    ).replace("server_name api.example.test;", f"server_name {HOST};")
    return conf


WRK_PREFLIGHT = """wrk.method = "OPTIONS"
wrk.headers["Origin"] = "%s"
wrk.headers["Access-Control-Request-Method"] = "PUT"
wrk.headers["Access-Control-Request-Headers"] = "content-type,x-custom"
""" % ORIGIN
WRK_GET = """wrk.headers["Origin"] = "%s"
""" % ORIGIN


def run_wrk(url: str, script: str, duration: int) -> float:
    out = subprocess.run(
        ["taskset", "-c", "1", "wrk", "-t1", "-c32", f"-d{duration}s", "-s", script, url],
        check=True, capture_output=True, text=True).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        sys.exit(f"wrk saw errors:\n{out}")
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return float(m.group(1)) if m else 0.0


def run_h2load(url: str, n: int, c: int, m: int) -> tuple[float, int]:
    out = subprocess.run(
        ["taskset", "-c", "1", "h2load", "-t1", f"-n{n}", f"-c{c}", f"-m{m}",
         "-H", f"origin: {ORIGIN}", url],
        check=True, capture_output=True, text=True).stdout
    rate = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", out)
    ok = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded", out)
    return (float(rate.group(1)) if rate else 0.0, int(ok.group(1)) if ok else 0)


def measure(name: str, pid: int, work) -> tuple[float, float]:
    pids = pids_of(pid)
    c0, t0 = cpu_seconds(pids), time.time()
    rate, count = work()
    cpu = cpu_seconds(pids) - c0
    per = cpu / count * 1e6 if count else float("nan")
    print(f"  {name:10s} {rate:10.0f}/s  {per:7.1f} µs CPU each  ({count} in {time.time() - t0:.1f} s)")
    return rate, per


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default="target/release/corsgate")
    ap.add_argument("--duration", type=int, default=5, help="seconds per keep-alive run")
    ap.add_argument("--handshakes", type=int, default=1000, help="new connections per handshake run")
    args = ap.parse_args()
    for tool in ("nginx", "wrk", "h2load", "openssl", "taskset"):
        if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}"):
            sys.exit(f"{tool} is missing (apt-get install nginx-light wrk nghttp2-client openssl util-linux)")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    procs: list[subprocess.Popen] = []
    d = tempfile.mkdtemp(prefix="corsgate-tls-bench-")
    try:
        cert, key = make_cert(d)
        backend = free_port()
        bdir = os.path.join(d, "backend")
        os.makedirs(bdir)
        with open(os.path.join(bdir, "nginx.conf"), "w") as f:
            f.write(render("backend.nginx.conf", PORT=str(backend), DIR=bdir, WORKERS="1"))
        procs.append(subprocess.Popen(["taskset", "-c", "1", nginx, "-p", bdir, "-c", f"{bdir}/nginx.conf", "-e", f"{bdir}/error.log"],
                                      stderr=subprocess.DEVNULL))
        wait_port(backend, "backend nginx")

        servers = {}
        pol = os.path.join(d, "policies.yaml")
        with open(pol, "w") as f:
            f.write(corsgate_policy(backend, cert, key))
        cg_tls, cg_plain, cg_admin = free_port(), free_port(), free_port()
        cg = subprocess.Popen(
            ["taskset", "-c", "0", args.bin, "proxy", "--policies", pol, "--workers", "1",
             "--listen", f"127.0.0.1:{cg_plain}", "--listen-tls", f"127.0.0.1:{cg_tls}",
             "--admin", f"127.0.0.1:{cg_admin}"],
            stderr=open(os.path.join(d, "corsgate.log"), "w"), env={**os.environ, "RUST_LOG": "warn"})
        procs.append(cg)
        wait_port(cg_tls, "corsgate")
        end = time.time() + 20
        while time.time() < end:
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{cg_admin}/readyz", timeout=1).status == 200:
                    break
            except OSError:
                time.sleep(0.1)
        servers["corsgate"] = (cg.pid, cg_tls)

        ndir = os.path.join(d, "edge")
        os.makedirs(ndir)
        ng_port = free_port()
        with open(os.path.join(ndir, "nginx.conf"), "w") as f:
            f.write(nginx_tls_conf(ng_port, backend, ndir, cert, key))
        ng = subprocess.Popen(["taskset", "-c", "0", nginx, "-p", ndir, "-c", f"{ndir}/nginx.conf", "-e", f"{ndir}/error.log"],
                              stderr=subprocess.DEVNULL)
        procs.append(ng)
        wait_port(ng_port, "nginx (TLS)")
        servers["nginx"] = (ng.pid, ng_port)

        pre, get = os.path.join(d, "preflight.lua"), os.path.join(d, "get.lua")
        open(pre, "w").write(WRK_PREFLIGHT)
        open(get, "w").write(WRK_GET)
        rows = {}
        for name, (pid, port) in servers.items():
            base = f"https://{HOST}:{port}"
            print(f"{name} (pid {pid}, port {port})")
            dur = args.duration
            rows[name] = {
                "preflight": measure("preflight", pid, lambda: (r := run_wrk(f"{base}/", pre, dur), int(r * dur))),
                "get": measure("get", pid, lambda: (r := run_wrk(f"{base}/items", get, dur), int(r * dur))),
                "get-h2": measure("get-h2", pid, lambda: run_h2load(f"{base}/items", 20000, 32, 10)),
                "handshake": measure("handshake", pid, lambda: run_h2load(f"{base}/items", args.handshakes, args.handshakes, 1)),
            }
        print("\n| scenario | corsgate /s | nginx /s | corsgate µs CPU | nginx µs CPU | CPU ratio corsgate/nginx |")
        print("|---|---|---|---|---|---|")
        for sc in ("preflight", "get", "get-h2", "handshake"):
            (cr, cc), (nr, nc) = rows["corsgate"][sc], rows["nginx"][sc]
            print(f"| {sc} | {cr:.0f} | {nr:.0f} | {cc:.1f} | {nc:.1f} | {cc / nc:.2f} |")
        print("\n(wrk counts are rate × duration, an estimate; CPU per request from /proc, every process of the server.)")
    finally:
        for p in reversed(procs):
            try:
                p.send_signal(signal.SIGTERM)
                p.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                p.kill()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
