#!/usr/bin/env bash
# Instructions per request of `llmux serve`, counted by callgrind (repeatable on a busy machine).
#
# usage: bench/profile/callgrind.sh [LLMUX] ; env: MODE=nonstream|stream  N=2000  ACCT=off|on
#   KEY=static|virtual (virtual: a virtual key with rpm, tpm and budget limits, created through the
#   admin API; implies ACCT=on)
#   CACHE=off|hit|miss (hit: a [cache] table and the same request every time, so every measured
#   request is answered from the in-process response cache; miss: a [cache] table and a distinct
#   request every time, so each one goes upstream and is stored)
#   OUT=dir (callgrind files and annotations; default /tmp/llmux-callgrind)
# The gateway runs under valgrind with one openai channel pointing at a fixed-response mock
# upstream (../shared/peer-bench/mock-upstream, or any OpenAI-compatible mock at MOCK_URL). A
# Python keep-alive client sends N requests after 200 warm-up requests; the counters are zeroed
# after the warm-up and dumped after the N (callgrind_control), so start-up is excluded.
# Prints instructions/request and writes the annotations (inclusive and self) to $OUT.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
LLMUX="${1:-${CARGO_TARGET_DIR:-$HOME/.cache/llmux-target}/release/llmux}"
MODE="${MODE:-nonstream}"; N="${N:-2000}"; ACCT="${ACCT:-off}"; KEY="${KEY:-static}"
CACHE="${CACHE:-off}"
[ "$KEY" = virtual ] && ACCT=on
OUT="${OUT:-/tmp/llmux-callgrind}"; mkdir -p "$OUT"; rm -f "$OUT"/callgrind.out*
MOCK_URL="${MOCK_URL:-}"
pick_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
if [ -z "$MOCK_URL" ]; then
  MOCK_DIR="$ROOT/../shared/peer-bench/mock-upstream"
  MOCK="${MOCK_BIN:-/tmp/gw-bench/mock-target/release/mock-upstream}"
  [ -x "$MOCK" ] || (cd "$MOCK_DIR" && CARGO_TARGET_DIR=/tmp/gw-bench/mock-target cargo build --release -q)
  mport=$(pick_port)
  "$MOCK" "127.0.0.1:$mport" >/dev/null 2>&1 & pids+=($!)
  MOCK_URL="http://127.0.0.1:$mport/v1"
fi
gport=$(pick_port)
D="$(mktemp -d)"; db='none'; [ "$ACCT" = on ] && db="sqlite://$D/usage.db"
cat >"$D/llmux.toml" <<TOML
[server]
listen = "127.0.0.1:$gport"
database = "$db"
api_keys = ["sk-bench-7f3c9a1e5b2d4f6a8c0e1b3d5f7a9c2e"]
admin_key = "sk-admin-bench-2b4d6f8a0c1e3g5i7k9m1o3q"
[[channels]]
name = "mock"
provider = "openai"
api_key = "sk-upstream"
base_url = "$MOCK_URL"
models = ["mock"]
TOML
[ "$CACHE" != off ] && printf '[cache]\nbackend = "memory"\n' >>"$D/llmux.toml"
RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.out" \
  "$LLMUX" serve --config "$D/llmux.toml" >"$OUT/gateway.log" 2>&1 & vpid=$!; pids+=($vpid)
python3 - "$gport" "$MODE" "$N" "$vpid" "$KEY" "$CACHE" <<'PY'
import http.client, itertools, json, subprocess, sys, time
port, mode, n, vpid, key, cache = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
def body_of(i):
    # CACHE=miss: a distinct request each time (same length), so none is answered from the cache.
    text = "Say hello in one short sentence." if cache != "miss" else "Say hello in one sentence %06d." % i
    return json.dumps({"model": "mock", "messages": [{"role": "user", "content": text}],
                       **({"stream": True} if mode == "stream" else {})})
seq = itertools.count()
hdr = {"Content-Type": "application/json", "Authorization": "Bearer sk-bench-7f3c9a1e5b2d4f6a8c0e1b3d5f7a9c2e"}
for _ in range(600):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60); c.connect(); break
    except OSError:
        time.sleep(0.1)
if key == "virtual":
    c.request("POST", "/admin/keys", json.dumps({"name": "bench", "rpm": 10_000_000, "tpm": 10_000_000_000,
              "budget_tokens": 10_000_000_000_000}),
              {"Content-Type": "application/json", "Authorization": "Bearer sk-admin-bench-2b4d6f8a0c1e3g5i7k9m1o3q"})
    r = c.getresponse(); created = json.loads(r.read())
    assert r.status == 201, created
    hdr["Authorization"] = "Bearer " + created["key"]
def one():
    c.request("POST", "/v1/chat/completions", body_of(next(seq)), hdr)
    r = c.getresponse(); data = r.read()
    assert r.status == 200, (r.status, data[:200])
    if cache != "off" and measuring:
        got = r.getheader("x-llmux-cache")
        assert got == cache, (got, cache)
measuring = False
for _ in range(200):
    one()
subprocess.run(["callgrind_control", "-z", vpid], check=True, capture_output=True)
measuring = True
for _ in range(n):
    one()
subprocess.run(["callgrind_control", "-d", vpid], check=True, capture_output=True)
PY
kill -TERM "$vpid"; wait "$vpid" 2>/dev/null || true
f="$OUT/callgrind.out.1"  # the dump taken right after the N requests
total=$(awk '/^totals:/ {print $2; exit}' "$f")
callgrind_annotate --inclusive=yes "$f" > "$OUT/inclusive.txt" 2>/dev/null || true
callgrind_annotate "$f" > "$OUT/self.txt" 2>/dev/null || true
echo "mode=$MODE acct=$ACCT key=$KEY cache=$CACHE requests=$N instructions=$total per_request=$((total / N))"
