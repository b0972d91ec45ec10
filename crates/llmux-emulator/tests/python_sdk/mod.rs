//! Runs an official vendor SDK (Python) against an emulator: `tests/python/<script>` is started once with the
//! cases to run, the emulator's base URL and a key, and prints one JSON object keyed by case.
//!
//! The interpreter is `LLMUX_PYTHON`, else `$LLMUX_VENV/bin/python`, else `~/.cache/llmux-venv/bin/python`; the
//! SDKs are pinned in `.ci/requirements-sdk.txt`. Without the interpreter (or the SDK in it) a test fails under
//! `CI=true` and is skipped with a loud line elsewhere.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// `LLMUX_PYTHON`, else the venv's interpreter (`$LLMUX_VENV`, else `~/.cache/llmux-venv`).
fn python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("LLMUX_PYTHON").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let venv = std::env::var_os("LLMUX_VENV")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/llmux-venv")))?;
    let p = venv.join("bin/python");
    p.exists().then_some(p)
}

/// The SDK cannot run here: a failure under CI, a loud skip elsewhere.
fn unavailable(why: &str) {
    assert!(
        !in_ci(),
        "CI=true but the Python SDK test cannot run: {why}. `.ci/run` installs the SDKs \
         (.ci/requirements-sdk.txt) into the venv and exports LLMUX_PYTHON."
    );
    eprintln!(
        "\n!!!!!!!! SKIPPED: the Python SDK test did not run: {why}.\n\
         !!!!!!!! Install the SDKs: python3 -m venv ~/.cache/llmux-venv && \
         ~/.cache/llmux-venv/bin/pip install -r .ci/requirements-sdk.txt\n"
    );
}

/// Results of one script run, by case.
pub struct Results {
    map: Value,
}

impl Results {
    /// The result of `case`; panics if the script printed none.
    pub fn get(&self, case: &str) -> &Value {
        self.map
            .get(case)
            .unwrap_or_else(|| panic!("no result for `{case}`: {}", self.map))
    }
}

/// Runs `cases` of `tests/python/<script>` in one Python process with `LLMUX_BASE_URL` = `base_url` and
/// `LLMUX_API_KEY` = `key`; `None` when skipped. Panics, with the tracebacks and stderr, when a case raised.
pub async fn run(script: &str, cases: &[&str], base_url: &str, key: &str) -> Option<Results> {
    let Some(py) = python() else {
        unavailable("no Python venv (set LLMUX_PYTHON or LLMUX_VENV)");
        return None;
    };
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(script);
    let mut cmd = tokio::process::Command::new(&py);
    cmd.arg(&path)
        .args(cases)
        .env("LLMUX_BASE_URL", base_url)
        .env("LLMUX_API_KEY", key)
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .env("PYTHONIOENCODING", "utf-8")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // Nothing but the emulator on loopback: no proxies, no vendor settings from the environment.
    for var in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_AUTH_TOKEN",
        "ANTHROPIC_BASE_URL",
        "GEMINI_API_KEY",
        "GOOGLE_API_KEY",
        "GOOGLE_GEMINI_BASE_URL",
        "GOOGLE_GENAI_USE_VERTEXAI",
        "GOOGLE_GENAI_API_VERSION",
    ] {
        cmd.env_remove(var);
    }
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", py.display()));
    // A hung SDK call must fail the test rather than hang it.
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{script} {cases:?} did not finish within 120 s"))
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(3) && stderr.starts_with("missing SDK") {
        unavailable(&format!(
            "{} cannot import the SDK ({})",
            py.display(),
            stderr.trim()
        ));
        return None;
    }
    let map: Value = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .filter(Value::is_object)
        .unwrap_or_else(|| {
            panic!(
                "{script} printed no results (status {}):\n{stdout}\n{stderr}",
                out.status
            )
        });
    let failed: Vec<String> = map
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(case, r)| {
            r.get("exception")
                .map(|_| format!("{case}: {}", r["traceback"].as_str().unwrap_or_default()))
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{script}: cases raised:\n{}\nstderr:\n{stderr}",
        failed.join("\n")
    );
    Some(Results { map })
}
