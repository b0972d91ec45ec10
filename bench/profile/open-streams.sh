#!/usr/bin/env bash
# RSS of `llmux serve` holding many open streams at once.
#
# usage: bench/profile/open-streams.sh [LLMUX] ; env: STREAMS=5000  ACCT=off|on  WRAP= (a command the
#   gateway runs under, e.g. "valgrind --tool=massif --massif-out-file=/tmp/massif.out")
# An asyncio upstream (OpenAI-compatible, in one Python process) answers every streamed chat
# with its head and one chunk, then holds the stream open. STREAMS clients each open a streamed
# chat through the gateway and read until the first chunk arrives. The script prints the
# gateway's RSS idle (after start-up), after one warm-up stream, and with all STREAMS open,
# read from /proc/PID/status (VmRSS, VmHWM).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LLMUX="${1:-${CARGO_TARGET_DIR:-$HOME/.cache/llmux-target}/release/llmux}"
STREAMS="${STREAMS:-5000}"; ACCT="${ACCT:-off}"
ulimit -n "$(ulimit -Hn)"  # each process holds about STREAMS descriptors (the gateway twice that)
D="$(mktemp -d)"; pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$D"; }
trap cleanup EXIT
pick_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
uport=$(pick_port); gport=$(pick_port)
db='none'; [ "$ACCT" = on ] && db="sqlite://$D/usage.db"
cat >"$D/llmux.toml" <<TOML
[server]
listen = "127.0.0.1:$gport"
database = "$db"
max_connections = $((STREAMS * 2 + 100))
api_keys = ["sk-bench-7f3c9a1e5b2d4f6a8c0e1b3d5f7a9c2e"]
[[channels]]
name = "hold"
provider = "openai"
api_key = "sk-upstream"
base_url = "http://127.0.0.1:$uport/v1"
models = ["hold"]
TOML
python3 "$HERE/hold_upstream.py" "$uport" >"$D/upstream.log" 2>&1 & pids+=($!)
# The first stream must not reach the gateway before the upstream listens (a busy machine
# starts Python slowly): wait for its port, at most 30 s.
python3 - "$uport" <<'PY'
import socket, sys, time
deadline = time.monotonic() + 30
while True:
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()
        break
    except OSError:
        if time.monotonic() > deadline:
            raise SystemExit("the upstream did not start listening within 30 s")
        time.sleep(0.05)
PY
RUST_LOG=warn ${WRAP:-} "$LLMUX" serve --config "$D/llmux.toml" >"$D/gateway.log" 2>&1 & gpid=$!; pids+=($gpid)
python3 "$HERE/hold_clients.py" "$gport" "$STREAMS" "$gpid" || { cat "$D/gateway.log" >&2; exit 1; }
