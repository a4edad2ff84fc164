"""Renders deploy/helm/corsgate with Helm's own Go SDK (helm-python-sdk) for the cluster
tests: `render_chart.py RELEASE NAMESPACE VALUES_JSON` prints one JSON `v1 List` of every
rendered object plus the chart's CRD (what `helm install` would create). Run it with the
venv deploy/venv.sh makes."""

import json
import pathlib
import re
import sys

import helm_python as helm
import yaml

CHART = pathlib.Path(__file__).resolve().parents[2] / "deploy" / "helm" / "corsgate"


def main() -> None:
    release, namespace, values = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    helm.disable_logging()
    items = []
    for crd in sorted((CHART / "crds").glob("*.yaml")):
        for doc in yaml.safe_load_all(crd.read_text()):
            if doc:
                items.append(doc)
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema(values)
        files = chart.render(values, name=release, namespace=namespace, is_install=True)
    for source in sorted(files):
        if source.endswith("NOTES.txt"):
            continue
        for text in re.split(r"^---[ \t]*$", files[source], flags=re.M):
            obj = yaml.safe_load(text)
            if obj:
                items.append(obj)
    json.dump({"apiVersion": "v1", "kind": "List", "items": items}, sys.stdout)


if __name__ == "__main__":
    main()
