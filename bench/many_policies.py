#!/usr/bin/env python3
"""Writes N CorsPolicy documents to one YAML file: scenario D of the benches (issue 14).

Hosts and paths are mixed as a large install has them: most policies own an exact host,
every tenth a wildcard host, and every third shares a host with others through its own path
prefix (many paths per host). Each policy allows two origins (one exact, one wildcard) and
one origin pattern (a regex). The bench host `api.example.test` is policy 0, with the same
CORS settings as the one-policy bench, so scenarios A-C can be run against the big file and
compared with the one-policy figures.

usage: many_policies.py N BACKEND_PORT > policies.yaml
"""
import sys


def policy(i: int, backend: int) -> str:
    if i == 0:
        hosts, paths = ["api.example.test"], None
    elif i % 10 == 0:
        hosts, paths = [f"*.t{i}.example.test"], None
    elif i % 3 == 0:
        # Shares a host with the policies next to it; its own prefix routes it.
        hosts, paths = [f"shared{i // 30}.example.test"], [f"/svc{i}", f"/api/v{i % 7}/s{i}"]
    else:
        hosts, paths = [f"h{i}.example.test", f"h{i}-alt.example.test"], None
    lines = [
        "---",
        "apiVersion: corsgate.dev/v1alpha1",
        "kind: CorsPolicy",
        f"metadata: {{name: p{i}, namespace: bench}}",
        "spec:",
        f"  hosts: [{', '.join(repr(h) for h in hosts)}]",
    ]
    if paths:
        lines.append(f"  paths: [{', '.join(repr(p) for p in paths)}]")
    lines += [
        f"  upstream: {{url: 'http://127.0.0.1:{backend}'}}",
        "  cors:",
    ]
    if i == 0:
        lines += [
            "    allowOrigins: ['https://app.example.test', 'https://*.app0.example.test']",
            "    allowOriginPatterns: ['^https://[a-z]+\\.p0\\.example\\.test$']",
        ]
    else:
        lines += [
            f"    allowOrigins: ['https://app{i}.example.test', 'https://*.w{i}.example.test']",
            f"    allowOriginPatterns: ['^https://[a-z0-9-]+\\.r{i}\\.example\\.test$']",
        ]
    lines += [
        "    allowMethods: [GET, POST, PUT, DELETE]",
        "    allowHeaders: [content-type, x-custom]",
        "    exposeHeaders: [x-request-id]",
        "    allowCredentials: true",
        "    maxAgeSeconds: 600",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    n, backend = int(sys.argv[1]), int(sys.argv[2])
    sys.stdout.write("".join(policy(i, backend) for i in range(n)))


if __name__ == "__main__":
    main()
