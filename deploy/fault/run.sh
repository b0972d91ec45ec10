#!/usr/bin/env bash
# Three `llmux serve` replicas behind HAProxy on one PostgreSQL, one Redis (or, with --cluster, a
# three-master Redis Cluster) and NATS JetStream, in front of `llmux emulate`, all on loopback and
# all started here (own instances on free ports, in a temporary directory; the machine's shared
# servers are never touched). Bounded load runs through HAProxy while the script
#   (a) SIGKILLs one replica and restarts it, (b) restarts Redis, (c) restarts PostgreSQL,
#   (d) stops NATS for a while (30 s in the full run).
# It then prints the figures and fails unless they hold:
#   - failed requests: only those in flight on the killed replica when it died;
#   - limit overshoot: admitted requests of a key in any 60 s window <= its rpm, or <= 3 x rpm
#     for windows that overlap the Redis outage (the documented policy: each replica decides
#     alone while Redis is down);
#   - usage records = answered requests (every answered request id has its record, none doubled);
#   - events published = records, no duplicates (when the gateway publishes usage events).
#
# usage: deploy/fault/run.sh [--short] [--cluster] [LLMUX]
#   --short    the bounded version .ci/run runs (about 1.5 minutes); the full run takes about 5
#   --cluster  limits on a local Redis Cluster instead of one Redis server
# env: LLMUX_PYTHON (with httpx), KEEP=1 keeps the temporary directory
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SHORT=0 CLUSTER=0 LLMUX=""
for a in "$@"; do
  case "$a" in
    --short) SHORT=1 ;;
    --cluster) CLUSTER=1 ;;
    -*) echo "unknown option $a" >&2; exit 2 ;;
    *) LLMUX="$a" ;;
  esac
done
LLMUX="${LLMUX:-${CARGO_TARGET_DIR:-$HOME/.cache/llmux-target}/release/llmux}"
LLMUX="$(cd "$(dirname "$LLMUX")" && pwd)/$(basename "$LLMUX")"
PYTHON="${LLMUX_PYTHON:-python3}"
PGBIN="${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}"
for tool in haproxy redis-server redis-cli nats-server "$PGBIN/initdb" "$PGBIN/pg_ctl" "$LLMUX"; do
  command -v "$tool" >/dev/null 2>&1 || { echo "fault run: $tool not found" >&2; exit 1; }
done

if [ "$SHORT" = 1 ]; then
  LOAD=70 RATE=16 KILL_AT=8 REDIS_AT=22 PG_AT=34 NATS_AT=44 NATS_DOWN=10
else
  LOAD=200 RATE=20 KILL_AT=20 REDIS_AT=60 PG_AT=100 NATS_AT=140 NATS_DOWN=30
fi
KEYS=4 RPM=180 LATENCY_MS=40

WORK="$(mktemp -d /tmp/llmux-fault.XXXXXX)"
chmod 755 "$WORK"
PIDS=()
cleanup() {
  set +e
  exec 2>/dev/null
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
  [ -f "$WORK/pg/postmaster.pid" ] && runuser -u postgres -- "$PGBIN/pg_ctl" -D "$WORK/pg" -m immediate stop >/dev/null 2>&1
  wait 2>/dev/null
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
T0="$(date +%s)"
log() { printf '[%4ss] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }
free_port() { "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local until=$(( $(date +%s) + $1 )) what="$2"; shift 2
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$until" ] || { echo "fault run: timed out waiting for $what" >&2; exit 1; }
    sleep 0.2
  done
}

# --- PostgreSQL (own cluster, run as the postgres user: initdb refuses root) ---------------------
PG_PORT=$(free_port)
mkdir -p "$WORK/pg" "$WORK/pgsock"; chown postgres "$WORK/pg" "$WORK/pgsock"
runuser -u postgres -- "$PGBIN/initdb" -D "$WORK/pg" -A trust -U postgres >/dev/null
pg_start() {
  runuser -u postgres -- "$PGBIN/pg_ctl" -D "$WORK/pg" -l "$WORK/pgsock/pg.log" -w \
    -o "-p $PG_PORT -k $WORK/pgsock -c listen_addresses=127.0.0.1 -c fsync=on" start >/dev/null
}
pg_start
"$PGBIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -qc "CREATE DATABASE llmux" >/dev/null
DB="postgres://postgres@127.0.0.1:$PG_PORT/llmux"
psql_q() { "$PGBIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d llmux -tAc "$1"; }

# --- Redis: one server, or a three-master cluster -------------------------------------------------
redis_start() { # redis_start PORT [cluster args...]
  local port=$1; shift
  mkdir -p "$WORK/redis-$port"
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK/redis-$port" \
    --daemonize no "$@" >"$WORK/redis-$port.log" 2>&1 &
  PIDS+=($!); echo $! > "$WORK/redis-$port.pid"
  wait_for 10 "redis on $port" redis-cli -p "$port" ping
}
if [ "$CLUSTER" = 1 ]; then
  REDIS_PORTS=()
  for i in 1 2 3; do
    p=$(free_port); b=$(free_port)
    REDIS_PORTS+=("$p")
    echo "$b" > "$WORK/bus-$p"
  done
  for p in "${REDIS_PORTS[@]}"; do
    redis_start "$p" --cluster-enabled yes --cluster-port "$(cat "$WORK/bus-$p")" \
      --cluster-config-file "$WORK/redis-$p/nodes.conf"
  done
  redis-cli --cluster create $(printf '127.0.0.1:%s ' "${REDIS_PORTS[@]}") --cluster-replicas 0 --cluster-yes >/dev/null
  wait_for 30 "the Redis Cluster" sh -c "redis-cli -p ${REDIS_PORTS[0]} cluster info | grep -q cluster_state:ok"
  REDIS_TOML="redis = \"redis+cluster://$(printf '127.0.0.1:%s,' "${REDIS_PORTS[@]}" | sed 's/,$//')\""
  REDIS_RESTART_PORT="${REDIS_PORTS[0]}"
else
  REDIS_PORT=$(free_port)
  redis_start "$REDIS_PORT"
  REDIS_TOML="redis = \"redis://127.0.0.1:$REDIS_PORT\""
  REDIS_RESTART_PORT="$REDIS_PORT"
fi

# --- NATS JetStream for the usage events ----------------------------------------------------------
EVENTS=1
"$LLMUX" events --help >/dev/null 2>&1 || { echo "fault run: this llmux has no usage events (llmux events)" >&2; exit 1; }
NATS_PORT=$(free_port)
nats_start() {
  nats-server -a 127.0.0.1 -p "$NATS_PORT" -js -sd "$WORK/nats" >"$WORK/nats.log" 2>&1 &
  NATS_PID=$!; PIDS+=($NATS_PID)
  wait_for 10 "nats" "$PYTHON" -c "import socket; socket.create_connection(('127.0.0.1',$NATS_PORT),1)"
}
[ "$EVENTS" = 1 ] && nats_start

# --- the emulated upstream ------------------------------------------------------------------------
mkfifo "$WORK/emu.out"
"$LLMUX" emulate --latency-ms "$LATENCY_MS" >"$WORK/emu.out" 2>"$WORK/emu.log" &
PIDS+=($!)
EMU_URL="" EMU_KEY=""
while read -r name url word key; do
  if [ "$name" = openai ] && [ "$word" = key ]; then EMU_URL=$url EMU_KEY=$key; break; fi
done < "$WORK/emu.out"
cat "$WORK/emu.out" >/dev/null &
[ -n "$EMU_URL" ] || { echo "fault run: llmux emulate printed no openai endpoint" >&2; exit 1; }

# --- three replicas -------------------------------------------------------------------------------
ADMIN_KEY="fault-admin-$(date +%s%N)"
export LLMUX_MASTER_KEY="$("$PYTHON" -c 'import secrets; print(secrets.token_hex(32))')"
REPLICA_PORTS=()
for i in 1 2 3; do
  port=$(free_port); REPLICA_PORTS+=("$port")
  cat > "$WORK/replica-$i.toml" <<TOML
[server]
listen = "127.0.0.1:$port"
database = "$DB"
$REDIS_TOML
redis_prefix = "fault:"
admin_key = "$ADMIN_KEY"
shutdown_grace = "10s"
usage_durability = "sync"
log_format = "json"

[[channels]]
name = "emu"
provider = "openai"
base_url = "$EMU_URL"
api_key = "$EMU_KEY"
models = ["gpt-4o-mini"]
TOML
  if [ "$EVENTS" = 1 ]; then
    cat >> "$WORK/replica-$i.toml" <<TOML

[events]
nats = "nats://127.0.0.1:$NATS_PORT"
stream = "LLMUX_FAULT"
subject = "llmux.fault"
TOML
  fi
done
replica_start() { # replica_start INDEX
  "$LLMUX" serve --config "$WORK/replica-$1.toml" >>"$WORK/replica-$1.log" 2>&1 &
  local pid=$!; PIDS+=($pid); echo "$pid" > "$WORK/replica-$1.pid"
  wait_for 60 "replica $1" curl -sf "http://127.0.0.1:${REPLICA_PORTS[$(( $1 - 1 ))]}/readyz"
}
for i in 1 2 3; do replica_start "$i"; done

for k in $(seq 1 "$KEYS"); do
  "$LLMUX" keys create --config "$WORK/replica-1.toml" --name "fault-$k" --rpm "$RPM" 2>/dev/null | tail -n 1
done > "$WORK/keys.txt"

# --- HAProxy --------------------------------------------------------------------------------------
LB_PORT=$(free_port)
cat > "$WORK/haproxy.cfg" <<CFG
global
    maxconn 1024
defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    retries 3
    option redispatch
    retry-on conn-failure empty-response
frontend lb
    bind 127.0.0.1:$LB_PORT
    default_backend llmux
backend llmux
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    default-server inter 500ms fall 2 rise 2
    http-after-response set-header x-served-by %s
$(for i in 1 2 3; do echo "    server r$i 127.0.0.1:${REPLICA_PORTS[$(( i - 1 ))]} check"; done)
CFG
haproxy -f "$WORK/haproxy.cfg" -db >"$WORK/haproxy.log" 2>&1 &
PIDS+=($!)
wait_for 10 "haproxy" curl -s -o /dev/null "http://127.0.0.1:$LB_PORT/healthz"
log "ready: 3 replicas behind haproxy :$LB_PORT, postgres :$PG_PORT, redis $([ "$CLUSTER" = 1 ] && echo cluster || echo ":$REDIS_PORT"), events $([ "$EVENTS" = 1 ] && echo "nats :$NATS_PORT" || echo off)"

# --- load and faults ------------------------------------------------------------------------------
T0="$(date +%s)"
"$PYTHON" "$HERE/load.py" --url "http://127.0.0.1:$LB_PORT" --keys "$WORK/keys.txt" \
  --rate "$RATE" --seconds "$LOAD" > "$WORK/results.jsonl" &
LOAD_PID=$!
at() { local wait=$(( T0 + $1 - $(date +%s) )); [ "$wait" -le 0 ] || sleep "$wait"; }
FAULTS="$WORK/faults.txt"; : > "$FAULTS"
mark() { echo "$1 $(date +%s.%N)" >> "$FAULTS"; log "$1"; }

at "$KILL_AT"
mark kill-r1; kill -9 "$(cat "$WORK/replica-1.pid")"; wait "$(cat "$WORK/replica-1.pid")" 2>/dev/null || true
sleep 3; replica_start 1; mark restarted-r1

at "$REDIS_AT"
mark redis-down; kill "$(cat "$WORK/redis-$REDIS_RESTART_PORT.pid")"; wait "$(cat "$WORK/redis-$REDIS_RESTART_PORT.pid")" 2>/dev/null || true
sleep 5
if [ "$CLUSTER" = 1 ]; then
  redis_start "$REDIS_RESTART_PORT" --cluster-enabled yes --cluster-port "$(cat "$WORK/bus-$REDIS_RESTART_PORT")" \
    --cluster-config-file "$WORK/redis-$REDIS_RESTART_PORT/nodes.conf"
  wait_for 30 "the Redis Cluster" sh -c "redis-cli -p $REDIS_RESTART_PORT cluster info | grep -q cluster_state:ok"
else
  redis_start "$REDIS_RESTART_PORT"
fi
mark redis-up

at "$PG_AT"
mark postgres-restart
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$WORK/pg" -m fast -w stop >/dev/null
pg_start
mark postgres-up

if [ "$EVENTS" = 1 ]; then
  at "$NATS_AT"
  mark nats-down; kill "$NATS_PID"; wait "$NATS_PID" 2>/dev/null || true
  sleep "$NATS_DOWN"
  nats_start; mark nats-up
fi

wait "$LOAD_PID"
log "load done; draining the replicas"
for i in 1 2 3; do kill -TERM "$(cat "$WORK/replica-$i.pid")" 2>/dev/null || true; done
for i in 1 2 3; do
  pid=$(cat "$WORK/replica-$i.pid"); while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
done

# A replica recovers what a dead one journaled; start one to finish that and drain the outbox.
replica_start 2
if [ "$EVENTS" = 1 ]; then
  wait_for 120 "the event outbox to drain" sh -c \
    "test \"\$(psql -h 127.0.0.1 -p $PG_PORT -U postgres -d llmux -tAc 'SELECT count(*) FROM gw_outbox' 2>/dev/null)\" = 0"
fi
psql_q "SELECT request_id, status, error_kind FROM gw_usage" > "$WORK/records.txt"
if [ "$EVENTS" = 1 ]; then
  timeout 60 "$LLMUX" events tail --nats "nats://127.0.0.1:$NATS_PORT" --stream LLMUX_FAULT \
    --from-start --count "$(wc -l < "$WORK/records.txt")" > "$WORK/events.jsonl" || true
fi
kill -TERM "$(cat "$WORK/replica-2.pid")" 2>/dev/null || true

"$PYTHON" "$HERE/figures.py" --results "$WORK/results.jsonl" --records "$WORK/records.txt" \
  --faults "$FAULTS" --rpm "$RPM" --replicas 3 \
  $([ "$EVENTS" = 1 ] && echo "--events $WORK/events.jsonl") \
  --mode "$([ "$CLUSTER" = 1 ] && echo redis-cluster || echo redis)" --short "$SHORT"
