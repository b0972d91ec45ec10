//! Runs a script of an official vendor SDK (Python) against a server on loopback: the one
//! runner the emulator's and the gateway's SDK tests share.
//!
//! A script is started once with the names of the cases to run as arguments and
//! `LLMUX_BASE_URL`/`LLMUX_API_KEY` in its environment; it prints, as its last stdout line,
//! one JSON object keyed by case, where a case that raised carries `exception` and
//! `traceback`. A script that cannot import its SDK exits with status 3 and a stderr line
//! starting `missing SDK`.
//!
//! The interpreter is `LLMUX_PYTHON`, else `$LLMUX_VENV/bin/python`, else
//! `~/.cache/llmux-venv/bin/python`; the SDKs are pinned in `.ci/requirements-sdk.txt`. When
//! the interpreter or the SDK is missing, a run fails under `CI=true` and is skipped with a
//! loud line elsewhere.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

/// How long one script may run before its test fails instead of hanging.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

/// Variables removed from the script's environment: no proxies and no vendor settings that
/// could send an SDK anywhere but the server under test.
const SCRUBBED: &[&str] = &[
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "OPENAI_ORG_ID",
    "OPENAI_PROJECT_ID",
    "DASHSCOPE_API_KEY",
    "DASHSCOPE_API_REGION",
    "DASHSCOPE_WORKSPACE_ID",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_BASE_URL",
    "LLMUX_MODEL",
    "LLMUX_EMBED_MODEL",
    "GOOGLE_API_KEY",
    "GEMINI_API_KEY",
    "GOOGLE_GENAI_USE_VERTEXAI",
    "GOOGLE_GENAI_USE_ENTERPRISE",
    "GOOGLE_GENAI_HTTP_CLIENT",
    "GOOGLE_GENAI_API_VERSION",
    "GOOGLE_CLOUD_PROJECT",
    "GOOGLE_CLOUD_LOCATION",
    "GOOGLE_GEMINI_BASE_URL",
];

/// True under CI (`CI=true` or `CI=1`), where a missing tool is a failure, not a skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// `LLMUX_PYTHON`, else the venv's interpreter (`$LLMUX_VENV`, else `~/.cache/llmux-venv`),
/// when it exists.
pub fn python() -> Option<PathBuf> {
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

/// A Python tool cannot run here: panics under CI, prints a loud skip line elsewhere.
///
/// # Panics
/// Under CI, always.
pub fn unavailable(what: &str, why: &str) {
    assert!(
        !in_ci(),
        "CI=true but {what} cannot run: {why}. `.ci/run` installs the SDKs \
         (.ci/requirements-sdk.txt) into the venv and exports LLMUX_PYTHON."
    );
    eprintln!(
        "\n!!!!!!!! SKIPPED: {what} did not run: {why}.\n\
         !!!!!!!! Install the SDKs: python3 -m venv ~/.cache/llmux-venv && \
         ~/.cache/llmux-venv/bin/pip install -r .ci/requirements-sdk.txt\n"
    );
}

/// What one script run printed.
#[derive(Debug)]
pub struct ScriptRun {
    /// Each case's result, keyed by its argument.
    pub results: Value,
    /// Everything the script wrote to stderr.
    pub stderr: String,
    /// Whether the process exited with status 0.
    pub success: bool,
}

impl ScriptRun {
    /// The result of `case`.
    ///
    /// # Panics
    /// When the script printed no result for it.
    #[expect(clippy::panic, reason = "a test runner: failing loudly is its job")]
    pub fn get(&self, case: &str) -> &Value {
        self.results
            .get(case)
            .unwrap_or_else(|| panic!("no result for `{case}`: {}", self.results))
    }
}

/// Runs `cases` of `script` in one Python process against `base_url` with `key`. `None` when
/// skipped (see [`unavailable`]).
///
/// # Panics
/// When the script cannot be started, runs longer than two minutes, prints no results, or a
/// case raised (with the tracebacks and stderr in the message).
#[expect(clippy::panic, reason = "a test runner: failing loudly is its job")]
pub async fn run(script: &Path, cases: &[&str], base_url: &str, key: &str) -> Option<ScriptRun> {
    let name = script.file_name().map_or_else(
        || script.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let what = format!("the Python SDK script {name}");
    let Some(py) = python() else {
        unavailable(&what, "no Python venv (set LLMUX_PYTHON or LLMUX_VENV)");
        return None;
    };
    let mut cmd = tokio::process::Command::new(&py);
    cmd.arg(script)
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
    for var in SCRUBBED {
        cmd.env_remove(var);
    }
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", py.display()));
    let out = tokio::time::timeout(SCRIPT_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{name} {cases:?} did not finish within 120 s"))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.code() == Some(3) && stderr.starts_with("missing SDK") {
        unavailable(
            &what,
            &format!("{} cannot import the SDK ({})", py.display(), stderr.trim()),
        );
        return None;
    }
    let results: Value = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .filter(Value::is_object)
        .unwrap_or_else(|| {
            panic!(
                "{name} {cases:?} printed no results ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
                out.status
            )
        });
    let raised: Vec<String> = results
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, r)| r.get("exception").is_some() || r.get("traceback").is_some())
        .map(|(case, r)| {
            format!(
                "--- {case}\n{}",
                r["traceback"].as_str().unwrap_or_default()
            )
        })
        .collect();
    assert!(
        raised.is_empty(),
        "{name}: cases raised:\n{}\n--- stderr\n{stderr}",
        raised.join("\n")
    );
    Some(ScriptRun {
        results,
        stderr,
        success: out.status.success(),
    })
}
