#!/usr/bin/env bash
# Checks the deploy files offline: every Kubernetes manifest, and the Helm chart rendered with its
# defaults and with other values, against the Kubernetes schemas (the kubernetes-validate package,
# strict: unknown fields fail); each llmux.toml with `llmux check-config`; that the objects agree
# with the gateway (probes on /readyz and /healthz, a termination grace period that covers the
# preStop wait plus shutdown_grace, every variable llmux.toml reads set); and that the chart's
# default rendering is the plain manifests (apart from the chart's own labels and annotations).
#
# usage: deploy/validate.sh [LLMUX]
# env: PYTHON (with kubernetes-validate, PyYAML and helm-binary), HELM, K8S_VERSION
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LLMUX="${1:-${CARGO_TARGET_DIR:-$HOME/.cache/llmux-target}/release/llmux}"
PYTHON="${PYTHON:-${LLMUX_PYTHON:-python3}}"
HELM="${HELM:-$(dirname "$PYTHON")/helm}"
command -v "$HELM" >/dev/null 2>&1 || HELM=helm
K8S_VERSION="${K8S_VERSION:-1.30.0}"
WORK="$(mktemp -d)"; trap 'rm -rf "$WORK"' EXIT

validate() { "$PYTHON" -m kubernetes_validate --strict --quiet -k "$K8S_VERSION" "$@"; }

# The plain manifests.
validate "$HERE"/kubernetes/*.yaml
cat "$HERE"/kubernetes/*.yaml | sed 's/^apiVersion:/---\napiVersion:/' > "$WORK/plain.yaml"

# The chart: lint, then render with its defaults and with a second set of values.
"$HELM" lint --strict --quiet "$HERE/helm/llmux" >/dev/null
"$HELM" template llmux "$HERE/helm/llmux" > "$WORK/chart-default.yaml"
"$HELM" template edge "$HERE/helm/llmux" \
  --set autoscaling.enabled=false,podDisruptionBudget.enabled=false,replicas=2 \
  --set shutdownGraceSeconds=60,preStopSeconds=10,service.port=8080 \
  > "$WORK/chart-edge.yaml"
validate "$WORK/chart-default.yaml" "$WORK/chart-edge.yaml"

"$PYTHON" - "$WORK" <<'PY'
import copy, pathlib, re, sys, tomllib, yaml
work = pathlib.Path(sys.argv[1])

def load(name):
    return {d["kind"]: d for d in yaml.safe_load_all((work / name).read_text()) if d}

def check(name, docs, need_hpa):
    toml = docs["ConfigMap"]["data"]["llmux.toml"]
    (work / f"{name}.toml").write_text(toml)
    grace = re.search(r'^shutdown_grace\s*=\s*"(\d+)s"', toml, re.M)
    assert grace, f"{name}: llmux.toml must set shutdown_grace in seconds"
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz", f"{name}: readiness must probe /readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz", f"{name}: liveness must probe /healthz"
    wait = c["lifecycle"]["preStop"]["sleep"]["seconds"]
    need = wait + int(grace.group(1))
    assert pod["terminationGracePeriodSeconds"] >= need, (
        f"{name}: terminationGracePeriodSeconds {pod['terminationGracePeriodSeconds']} < preStop {wait} s + shutdown_grace {grace.group(1)} s")
    if need_hpa:
        hpa = docs["HorizontalPodAutoscaler"]["spec"]
        names = {m.get("pods", {}).get("metric", {}).get("name") for m in hpa["metrics"]}
        assert "llmux_inflight_streams" in names, f"{name}: the HPA scales on llmux_inflight_streams"
    env = {e["name"] for e in c["env"]}
    for var in re.findall(r'"env:([A-Z0-9_]+)"', toml):
        assert var in env, f"{name}: llmux.toml reads {var}, which the Deployment does not set"
    port = c["ports"][0]["containerPort"]
    assert tomllib.loads(toml)["server"]["listen"].endswith(f":{port}"), f"{name}: listen != containerPort"
    volume = pod["volumes"][0]["configMap"]["name"]
    assert volume == docs["ConfigMap"]["metadata"]["name"], f"{name}: the pod mounts another ConfigMap"

CHART_LABELS = {"app.kubernetes.io/instance", "app.kubernetes.io/version",
                "app.kubernetes.io/managed-by", "helm.sh/chart"}

def strip(node):
    """The chart's default rendering without what only the chart adds."""
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k in CHART_LABELS or k == "checksum/config":
                continue
            out[k] = strip(v)
        return out
    if isinstance(node, list):
        return [strip(v) for v in node]
    return node

plain, default, edge = load("plain.yaml"), load("chart-default.yaml"), load("chart-edge.yaml")
check("plain", plain, True)
check("chart-default", default, True)
check("chart-edge", edge, False)
assert set(edge) == {"ConfigMap", "Deployment", "Service"}, f"edge renders {sorted(edge)}"
assert edge["Deployment"]["metadata"]["name"] == "edge-llmux"
assert edge["Deployment"]["spec"]["replicas"] == 2

rendered = strip(copy.deepcopy(default))
for kind, doc in plain.items():
    got = rendered.get(kind)
    assert got is not None, f"the chart renders no {kind}"
    if kind == "ConfigMap":
        a = tomllib.loads(doc["data"]["llmux.toml"])
        b = tomllib.loads(got["data"]["llmux.toml"])
        assert a == b, f"the chart's llmux.toml differs from configmap.yaml's:\n{a}\n{b}"
        doc, got = dict(doc, data=None), dict(got, data=None)
    assert doc == got, f"the chart's default {kind} differs from deploy/kubernetes:\n{doc}\n{got}"
assert set(rendered) == set(plain), f"the chart renders {sorted(rendered)}, the manifests are {sorted(plain)}"
PY
# The gauge the HPA names exists in the gateway.
grep -q '"llmux_inflight_streams"' "$HERE/../crates/llmux-gateway/src/metrics.rs"
for toml in plain chart-default chart-edge; do
  DASHSCOPE_API_KEY=sk-check OPENAI_API_KEY=sk-check "$LLMUX" check-config "$WORK/$toml.toml" >/dev/null
done
echo "deploy files: OK (manifests, Helm chart with default and edge values)"
