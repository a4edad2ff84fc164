#!/usr/bin/env bash
# Compare corsgate with nginx (configured the way ingress-nginx does CORS) on this machine:
# same backend, same load, pinned CPUs, loopback only. Prints the report's path at the end.
#
#   bench/compare.sh                 # corsgate vs nginx (3 scenarios, 7 rounds, ~2 min)
#   bench/compare.sh --peers nginx,haproxy,caddy,traefik   # more peers (those installed)
#   bench/compare.sh --check-only    # only the curl correctness checks
#
# Needs: nginx (Debian nginx-light), wrk, curl, taskset (util-linux), python3.
# Extra arguments go to bench/peers.py (see bench/README.md).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/.."
missing=()
for tool in nginx wrk curl taskset python3; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "missing: ${missing[*]}; on Debian/Ubuntu: sudo apt-get install -y nginx-light wrk curl util-linux python3" >&2
  exit 2
fi
cargo build --release --quiet
peers=nginx
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --peers) peers=$2; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
exec python3 "$here/peers.py" --peers "$peers" --no-install \
  --ours "target/release/corsgate proxy --policies {policy} --listen 127.0.0.1:{port} --admin 127.0.0.1:{admin}" \
  "${args[@]}"
