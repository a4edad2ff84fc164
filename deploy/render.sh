#!/usr/bin/env bash
# Regenerates deploy/manifests/corsgate.yaml from the chart (default values, namespace corsgate),
# with Helm's own renderer, in the same venv ./test.sh uses.
set -euo pipefail
cd "$(dirname "$0")/.."
. deploy/venv.sh
"$DEPLOY_PY" deploy/test_chart.py --write-manifests
