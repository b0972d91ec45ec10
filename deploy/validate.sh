#!/usr/bin/env bash
# Checks the deploy files offline: every Kubernetes manifest against the Kubernetes schemas
# (the kubernetes-validate package, strict: unknown fields fail), the ConfigMap's llmux.toml with
# `llmux check-config`, and that the manifests agree with the gateway: probes on /readyz and
# /healthz, and a termination grace period that covers the preStop wait plus shutdown_grace.
#
# usage: deploy/validate.sh [LLMUX]   env: PYTHON (with kubernetes-validate and PyYAML), K8S_VERSION
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LLMUX="${1:-${CARGO_TARGET_DIR:-$HOME/.cache/llmux-target}/release/llmux}"
PYTHON="${PYTHON:-${LLMUX_PYTHON:-python3}}"
K8S_VERSION="${K8S_VERSION:-1.30.0}"
for f in "$HERE"/kubernetes/*.yaml; do
  "$PYTHON" -m kubernetes_validate --strict --quiet -k "$K8S_VERSION" "$f"
done
WORK="$(mktemp -d)"; trap 'rm -rf "$WORK"' EXIT
"$PYTHON" - "$HERE/kubernetes" "$WORK/llmux.toml" <<'PY'
import pathlib, re, sys, yaml
d, out = pathlib.Path(sys.argv[1]), sys.argv[2]
docs = {}
for f in sorted(d.glob("*.yaml")):
    for doc in yaml.safe_load_all(f.read_text()):
        docs[doc["kind"]] = doc
toml = docs["ConfigMap"]["data"]["llmux.toml"]
pathlib.Path(out).write_text(toml)
grace = re.search(r'^shutdown_grace\s*=\s*"(\d+)s"', toml, re.M)
assert grace, "llmux.toml in the ConfigMap must set shutdown_grace in seconds"
pod = docs["Deployment"]["spec"]["template"]["spec"]
c = pod["containers"][0]
assert c["readinessProbe"]["httpGet"]["path"] == "/readyz", "readiness must probe /readyz"
assert c["livenessProbe"]["httpGet"]["path"] == "/healthz", "liveness must probe /healthz"
wait = c["lifecycle"]["preStop"]["sleep"]["seconds"]
need = wait + int(grace.group(1))
assert pod["terminationGracePeriodSeconds"] >= need, (
    f"terminationGracePeriodSeconds {pod['terminationGracePeriodSeconds']} < preStop {wait} s + shutdown_grace {grace.group(1)} s")
hpa = docs["HorizontalPodAutoscaler"]["spec"]
names = {m.get("pods", {}).get("metric", {}).get("name") for m in hpa["metrics"]}
assert "llmux_inflight_streams" in names, "the HPA scales on llmux_inflight_streams"
env = {e["name"] for e in c["env"]}
for var in re.findall(r'"env:([A-Z0-9_]+)"', toml):
    assert var in env, f"llmux.toml reads {var}, which the Deployment does not set"
PY
# The gauge the HPA names exists in the gateway.
grep -q '"llmux_inflight_streams"' "$HERE/../crates/llmux-gateway/src/metrics.rs"
DASHSCOPE_API_KEY=sk-check OPENAI_API_KEY=sk-check "$LLMUX" check-config "$WORK/llmux.toml"
echo "deploy files: OK"
