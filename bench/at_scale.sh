#!/bin/sh
# Scenario D in peers.py: corsgate serving N policies (bench/many_policies.py) instead of one.
# Policy 0 is the bench host with the one-policy CORS settings, so scenarios A-C run
# unchanged against it, and their CPU per request can be compared with the one-policy row.
#
#   python3 ../shared/bench/peers.py --peers nginx,hyper-floor \
#     --ours "bench/at_scale.sh 10000 target/release/corsgate {policy} {port} {admin}"
#
# peers.py renders {policy} with its backend's port; this reads the port from it, writes the
# N-policy file beside it and execs the proxy (so peers.py stops the proxy by its own PID).
set -eu
if [ "${1:-}" = --version ]; then
    exec "${CORSGATE:-target/release/corsgate}" --version
fi
n=$1 bin=$2 policy=$3 port=$4 admin=$5
backend=$(sed -n 's|.*http://127\.0\.0\.1:\([0-9][0-9]*\).*|\1|p' "$policy" | head -n 1)
[ -n "$backend" ] || { echo "at_scale.sh: no backend port in $policy" >&2; exit 2; }
out="$(dirname "$policy")/policies-$n.yaml"
python3 "$(dirname "$0")/many_policies.py" "$n" "$backend" > "$out"
exec "$bin" proxy --policies "$out" --listen "127.0.0.1:$port" --admin "127.0.0.1:$admin" --listen-tls off
