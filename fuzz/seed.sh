#!/usr/bin/env bash
# Writes the seed corpora into fuzz/corpus/<target>/ from the fixtures: every provider's
# answers as its emulator sends them, the SDK captures' request bodies, and the test configs.
# Safe to re-run: it only adds or overwrites seed files, never what the fuzzer found.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --quiet -p llmux-core --example fuzz_seeds -- fuzz/corpus
