//! Runs an official vendor SDK (Python) against an emulator: `tests/python/<script>` is started
//! once with the cases to run, the emulator's base URL and a key, and prints one JSON object
//! keyed by case. The runner is [`llmux_emulator::sdk`], shared with the gateway's SDK tests.

#![allow(dead_code)]

use std::path::Path;

use llmux_emulator::sdk::ScriptRun;

/// Runs `cases` of `tests/python/<script>` against `base_url` with `key`; `None` when skipped.
pub async fn run(script: &str, cases: &[&str], base_url: &str, key: &str) -> Option<ScriptRun> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(script);
    llmux_emulator::sdk::run(&path, cases, base_url, key).await
}
