#!/usr/bin/env bash
# Runs fuzz targets for a given time each, one after another, one job each, at low priority.
#   fuzz/run.sh TARGET|all SECONDS
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). Seeds the corpora
# first when they are missing. Prints, per target, libFuzzer's execution count and the
# findings (crash/timeout/oom files under fuzz/artifacts/TARGET/).
set -euo pipefail
cd "$(dirname "$0")"

if [ $# -ne 2 ]; then
  echo "usage: fuzz/run.sh TARGET|all SECONDS" >&2
  exit 2
fi
targets=$1
seconds=$2
if [ "$targets" = all ]; then
  targets=$(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^llmux-fuzz$')
fi
# Without a sanitizer: the code under test forbids `unsafe`, and libFuzzer then runs several
# times faster; debug assertions (overflow checks) stay on.
flags=(--sanitizer none)

[ -d corpus ] || ./seed.sh
cargo +nightly fuzz build "${flags[@]}"

mkdir -p logs
summary=()
for t in $targets; do
  mkdir -p "corpus/$t" "artifacts/$t"
  log="logs/$t.log"
  echo "==> $t for ${seconds}s (log: fuzz/$log)"
  status=0
  nice -n 10 cargo +nightly fuzz run "${flags[@]}" "$t" "corpus/$t" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
    -print_final_stats=1 >"$log" 2>&1 || status=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -n 1)
  findings=$(find "artifacts/$t" -type f \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' -o -name 'leak-*' \) | wc -l)
  line="$t: ${runs:-?} executions in ${secs:-?} s, exit $status, $findings finding(s) in fuzz/artifacts/$t"
  echo "$line"
  grep -E '^(==[0-9]+== ERROR|thread .* panicked|SUMMARY)' "$log" | head -n 5 || true
  summary+=("$line")
done
echo
echo "==> summary"
printf '%s\n' "${summary[@]}"
