#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what the tests need (Debian/Ubuntu,
# as root or with sudo), then runs every test (unit, property, loopback integration, CLI,
# browser), then the chart, plain manifests and Dockerfile checks (deploy/test_chart.py).
# Usage: ./test.sh [extra cargo test arguments]
set -euo pipefail
cd "$(dirname "$0")"

need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v python3 >/dev/null 2>&1 || need+=(python3)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  if command -v apt-get >/dev/null 2>&1; then
    echo "test.sh: installing ${need[*]}" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "test.sh: please install: ${need[*]}" >&2
  fi
fi

cargo test --locked --all-targets "$@"

# The Helm chart, deploy/manifests and the Dockerfile, with Helm's own renderer, in a venv
# under target/ (deploy/venv.sh installs it on first use).
. deploy/venv.sh
"$DEPLOY_PY" deploy/test_chart.py
