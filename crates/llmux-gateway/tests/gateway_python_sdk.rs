//! Acceptance: the official OpenAI and dashscope Python SDKs drive the gateway, emulators behind
//! it, and parse every answer without error: chat, streams with usage, tool-call round trips,
//! embeddings (base64 and float), models, and the 401, 403 and 429 errors.
//!
//! Each test starts emulators and a gateway in-process on `127.0.0.1:0`, then runs one case of
//! `tests/python/{openai,dashscope}_cases.py` with the venv's interpreter against the gateway's
//! base URL and asserts on the JSON the case prints. The SDKs are pinned in
//! `.ci/requirements-sdk.txt`; `.ci/run` installs them into `${LLMUX_VENV:-~/.cache/llmux-venv}`
//! and exports `LLMUX_PYTHON`. Without that interpreter (or without the SDKs in it) a test fails
//! under `CI=true` and is skipped with a loud line elsewhere.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::*;
use llmux_emulator::{Emulator, Fault, FaultKind, Vendor};
use serde_json::{json, Value};

/// Which SDK (and script) a case runs with.
#[derive(Debug, Clone, Copy)]
enum Sdk {
    OpenAi,
    DashScope,
}

impl Sdk {
    fn script(self) -> PathBuf {
        let name = match self {
            Sdk::OpenAi => "openai_cases.py",
            Sdk::DashScope => "dashscope_cases.py",
        };
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/python")
            .join(name)
    }
}

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

/// The SDKs cannot run here: a failure under CI, a loud skip elsewhere (`None`).
fn unavailable(why: &str) -> Option<Value> {
    assert!(
        !in_ci(),
        "CI=true but the Python SDK suite cannot run: {why}. `.ci/run` installs the SDKs \
         (.ci/requirements-sdk.txt) into the venv and exports LLMUX_PYTHON."
    );
    eprintln!(
        "\n!!!!!!!! SKIPPED: the Python SDK acceptance case did not run: {why}.\n\
         !!!!!!!! Install the SDKs: python3 -m venv ~/.cache/llmux-venv && \
         ~/.cache/llmux-venv/bin/pip install -r .ci/requirements-sdk.txt\n"
    );
    None
}

/// Runs `case` of `sdk`'s script against the gateway with `key` and the extra environment, and
/// returns the JSON it printed (`None` when skipped). Panics, with the script's stderr, if it
/// exits non-zero or prints something else.
async fn run(sdk: Sdk, case: &str, gw: &Harness, key: &str, env: &[(&str, &str)]) -> Option<Value> {
    let Some(py) = python() else {
        return unavailable("no Python venv (set LLMUX_PYTHON or LLMUX_VENV)");
    };
    let mut cmd = tokio::process::Command::new(&py);
    cmd.arg(sdk.script())
        .arg(case)
        .env("LLMUX_BASE_URL", &gw.url)
        .env("LLMUX_API_KEY", key)
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .env("PYTHONIOENCODING", "utf-8")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // Nothing but the gateway on loopback: no proxies, no vendor settings from the environment.
    for var in [
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
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", py.display()));
    // A hung SDK call must fail the test rather than hang it.
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{sdk:?} case `{case}` did not finish within 120 s"))
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(3) && stderr.starts_with("missing SDK") {
        return unavailable(&format!(
            "{} cannot import the SDK ({})",
            py.display(),
            stderr.trim()
        ));
    }
    assert!(
        out.status.success(),
        "{sdk:?} case `{case}` failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    let line = stdout.lines().last().unwrap_or_default();
    let v: Value = serde_json::from_str(line).unwrap_or_else(|e| {
        panic!("{sdk:?} case `{case}` printed no JSON ({e}):\n{stdout}\n--- stderr\n{stderr}")
    });
    Some(v)
}

/// Shorthand: `run` with the gateway's static key and a chat model.
async fn case(sdk: Sdk, case: &str, gw: &Harness, model: &str) -> Option<Value> {
    run(sdk, case, gw, KEY, &[("LLMUX_MODEL", model)]).await
}

fn assert_usage_adds_up(u: &Value, input: &str, output: &str) {
    let i = u[input]
        .as_u64()
        .unwrap_or_else(|| panic!("no {input}: {u}"));
    let o = u[output]
        .as_u64()
        .unwrap_or_else(|| panic!("no {output}: {u}"));
    assert!(i > 0 && o > 0, "{u}");
    assert_eq!(u["total_tokens"].as_u64(), Some(i + o), "{u}");
}

// ---------------------------------------------------------------------------------------------
// OpenAI SDK
// ---------------------------------------------------------------------------------------------

async fn openai_chat(model: &str) {
    let (gw, _oa, _ds) = standard().await;
    let Some(v) = case(Sdk::OpenAi, "chat", &gw, model).await else {
        return;
    };
    assert_eq!(v["type"], "ChatCompletion", "{v}");
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], model);
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"), "{v}");
    assert_eq!(v["n_choices"], 1);
    assert_eq!(v["index"], 0);
    assert_eq!(v["role"], "assistant");
    assert_eq!(v["content"], "You said: hi there");
    assert!(v["tool_calls"].is_null(), "{v}");
    assert_eq!(v["finish_reason"], "stop");
    assert_usage_adds_up(&v["usage"], "prompt_tokens", "completion_tokens");
    assert_eq!(v["usage"]["completion_tokens"], 4, "{v}");
    let rid = v["request_id"].as_str().unwrap();
    assert_eq!(rid.len(), 36, "{v}");
    assert_eq!(v["sdk_request_id"], rid);
}

#[tokio::test]
async fn openai_sdk_chat_non_stream() {
    openai_chat("gpt-4o-mini").await;
}

#[tokio::test]
async fn openai_sdk_chat_non_stream_from_a_dashscope_upstream() {
    openai_chat("qwen-plus").await;
}

async fn openai_stream_usage(model: &str) {
    let (gw, _oa, _ds) = standard().await;
    let Some(v) = case(Sdk::OpenAi, "stream_usage", &gw, model).await else {
        return;
    };
    assert_eq!(v["objects"], json!(["chat.completion.chunk"]), "{v}");
    assert_eq!(
        v["ids"].as_array().unwrap().len(),
        1,
        "one id for all chunks: {v}"
    );
    assert_eq!(v["models"], json!([model]));
    assert_eq!(v["first_role"], "assistant");
    assert_eq!(v["content"], "You said: hi there");
    assert_eq!(v["finish_reasons"], json!(["stop"]), "{v}");
    assert_eq!(v["usage_chunks"], 1, "usage exactly once: {v}");
    assert_eq!(v["usage_chunk_is_last"], true, "{v}");
    assert_eq!(v["usage_chunk_choices"], json!([0]), "{v}");
    assert_usage_adds_up(&v["usage"], "prompt_tokens", "completion_tokens");
    assert_eq!(v["usage"]["completion_tokens"], 4, "{v}");
}

#[tokio::test]
async fn openai_sdk_stream_with_usage() {
    openai_stream_usage("gpt-4o-mini").await;
}

#[tokio::test]
async fn openai_sdk_stream_with_usage_from_a_dashscope_upstream() {
    openai_stream_usage("qwen-plus").await;
}

fn assert_weather_call(calls: &Value) {
    let calls = calls.as_array().unwrap();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0]["name"], "get_weather");
    assert_eq!(calls[0]["arguments"], json!({"city": "Hangzhou"}));
    assert!(!calls[0]["id"].as_str().unwrap().is_empty(), "{calls:?}");
}

const TOOL_RESULT: &str =
    r#"Tool results: {"city": "Hangzhou", "forecast": "sunny", "celsius": 21}"#;

async fn openai_tools(model: &str) {
    let (gw, _oa, _ds) = standard().await;
    let Some(v) = case(Sdk::OpenAi, "tools", &gw, model).await else {
        return;
    };
    assert_eq!(v["first_finish"], "tool_calls", "{v}");
    assert_weather_call(&v["calls"]);
    assert_eq!(v["calls"][0]["type"], "function");
    assert_eq!(v["final_finish"], "stop", "{v}");
    assert_eq!(v["final_content"], TOOL_RESULT);
    assert!(v["final_tool_calls"].is_null(), "{v}");
    assert_usage_adds_up(&v["usage"], "prompt_tokens", "completion_tokens");
}

#[tokio::test]
async fn openai_sdk_tool_call_round_trip() {
    openai_tools("gpt-4o-mini").await;
}

#[tokio::test]
async fn openai_sdk_tool_call_round_trip_from_a_dashscope_upstream() {
    openai_tools("qwen-plus").await;
}

async fn openai_tools_stream(model: &str) {
    let (gw, _oa, _ds) = standard().await;
    let Some(v) = case(Sdk::OpenAi, "tools_stream", &gw, model).await else {
        return;
    };
    let events = v["events"].as_array().unwrap();
    for e in [
        "chunk",
        "tool_calls.function.arguments.delta",
        "tool_calls.function.arguments.done",
    ] {
        assert!(events.contains(&json!(e)), "no `{e}` event: {v}");
    }
    assert_eq!(v["first_finish"], "tool_calls", "{v}");
    assert_weather_call(&v["calls"]);
    assert_usage_adds_up(&v["first_usage"], "prompt_tokens", "completion_tokens");
    assert_eq!(v["final_finish"], "stop", "{v}");
    assert_eq!(v["final_content"], TOOL_RESULT);
}

#[tokio::test]
async fn openai_sdk_streamed_tool_call_round_trip() {
    openai_tools_stream("gpt-4o-mini").await;
}

#[tokio::test]
async fn openai_sdk_streamed_tool_call_round_trip_from_a_dashscope_upstream() {
    openai_tools_stream("qwen-plus").await;
}

async fn openai_embeddings(model: &str, dims: u64) {
    let (gw, _oa, _ds) = standard().await;
    let Some(v) = run(
        Sdk::OpenAi,
        "embeddings",
        &gw,
        KEY,
        &[("LLMUX_EMBED_MODEL", model)],
    )
    .await
    else {
        return;
    };
    // The SDK asked for base64 and the gateway honoured it on the wire.
    assert_eq!(v["wire_embedding_types"], json!(["str", "str"]), "{v}");
    assert_eq!(v["object"], "list");
    assert_eq!(v["model"], model);
    assert_eq!(v["n"], 2);
    assert_eq!(v["indexes"], json!([0, 1]));
    assert_eq!(v["float_indexes"], json!([0, 1]));
    assert_eq!(v["dims"], json!([dims, dims]), "{v}");
    assert_eq!(v["float_dims"], json!([dims, dims]), "{v}");
    for n in v["norms"].as_array().unwrap() {
        assert!(
            (n.as_f64().unwrap() - 1.0).abs() < 1e-4,
            "not unit length: {v}"
        );
    }
    // Float32 both ways: base64 carries the exact bits, JSON the shortest decimal of them.
    assert!(v["max_abs_diff"].as_f64().unwrap() < 1e-6, "{v}");
    assert_eq!(v["vectors_differ"], true);
    let u = &v["usage"];
    assert!(u["prompt_tokens"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(u["prompt_tokens"], u["total_tokens"]);
}

#[tokio::test]
async fn openai_sdk_embeddings_base64_and_float() {
    openai_embeddings("text-embedding-3-small", 1536).await;
}

#[tokio::test]
async fn openai_sdk_embeddings_base64_and_float_from_a_dashscope_upstream() {
    openai_embeddings("text-embedding-v3", 1024).await;
}

#[tokio::test]
async fn openai_sdk_models_list_and_retrieve() {
    let (gw, _oa, _ds) = standard().await;
    let Some(v) = case(Sdk::OpenAi, "models", &gw, "qwen-plus").await else {
        return;
    };
    assert_eq!(
        v["ids"],
        json!([
            "gpt-4o-mini",
            "qwen-plus",
            "text-embedding-3-small",
            "text-embedding-v3"
        ]),
        "{v}"
    );
    assert_eq!(v["objects"], json!(["model"]));
    assert_eq!(v["created_ints"], true);
    assert_eq!(
        v["retrieved"],
        json!({"id": "qwen-plus", "object": "model"})
    );
}

#[tokio::test]
async fn openai_sdk_wrong_key_is_authentication_error() {
    let (gw, _oa, _ds) = standard().await;
    let env = [("LLMUX_MODEL", "gpt-4o-mini")];
    let Some(v) = run(Sdk::OpenAi, "chat_error", &gw, "sk-wrong", &env).await else {
        return;
    };
    for e in [&v, &v["stream"]] {
        assert_eq!(e["class"], "AuthenticationError", "{v}");
        assert_eq!(e["status_code"], 401);
        assert_eq!(e["code"], "invalid_api_key");
        assert_eq!(e["type"], "invalid_request_error");
        assert!(e["message"].as_str().unwrap().contains("API key"), "{v}");
        assert_eq!(e["request_id"].as_str().unwrap().len(), 36, "{v}");
    }
    let Some(v) = run(Sdk::OpenAi, "embeddings_error", &gw, "sk-wrong", &[]).await else {
        return;
    };
    assert_eq!(v["class"], "AuthenticationError", "{v}");
    let Some(v) = run(Sdk::OpenAi, "models_error", &gw, "sk-wrong", &[]).await else {
        return;
    };
    assert_eq!(v["class"], "AuthenticationError", "{v}");
}

/// A gateway whose only channel is an emulator that answers every request with 429 and
/// `Retry-After: 7`, and that does not retry (so nothing waits on the timer).
async fn throttled_upstream(vendor: Vendor, provider: &str, models: &str) -> (Harness, Emulator) {
    let emu = emulator(vendor).await;
    emu.push_fault(Fault::always(FaultKind::Status {
        status: 429,
        body: None,
        retry_after: Some("7".into()),
    }));
    let cfg = format!(
        "[resilience.retry]\nmax_attempts = 1\n\n{}",
        channel("only", provider, &emu, models, "")
    );
    (start(&cfg).await, emu)
}

#[tokio::test]
async fn openai_sdk_upstream_429_is_rate_limit_error_with_retry_after() {
    let (gw, emu) = throttled_upstream(Vendor::DashScope, "dashscope", "[\"qwen-plus\"]").await;
    let Some(v) = case(Sdk::OpenAi, "chat_error", &gw, "qwen-plus").await else {
        return;
    };
    for e in [&v, &v["stream"]] {
        assert_eq!(e["class"], "RateLimitError", "{v}");
        assert_eq!(e["status_code"], 429);
        assert_eq!(e["code"], "rate_limit_exceeded");
        assert_eq!(e["type"], "rate_limit_error");
        assert_eq!(e["retry_after"], "7", "{v}");
    }
    assert_eq!(emu.requests().len(), 2, "one upstream attempt per SDK call");
}

// ---------------------------------------------------------------------------------------------
// dashscope SDK
// ---------------------------------------------------------------------------------------------

async fn dashscope_messages(model: &str) {
    let (gw, _oa, _ds) = standard().await;
    let Some(v) = case(Sdk::DashScope, "messages", &gw, model).await else {
        return;
    };
    assert_eq!(v["status_code"], 200, "{v}");
    assert_eq!(v["code"], "");
    assert_eq!(v["request_id"].as_str().unwrap().len(), 36, "{v}");
    assert_eq!(v["content"], "You said: hi there");
    assert_eq!(v["role"], "assistant");
    assert_eq!(v["finish_reason"], "stop");
    assert_usage_adds_up(&v["usage"], "input_tokens", "output_tokens");
    assert_eq!(v["usage"]["output_tokens"], 4);
}

#[tokio::test]
async fn dashscope_sdk_messages_non_stream() {
    dashscope_messages("qwen-plus").await;
}

#[tokio::test]
async fn dashscope_sdk_messages_non_stream_from_an_openai_upstream() {
    dashscope_messages("gpt-4o-mini").await;
}

#[tokio::test]
async fn dashscope_sdk_prompt_non_stream_text_format() {
    let (gw, _oa, _ds) = standard().await;
    let Some(v) = case(Sdk::DashScope, "prompt", &gw, "qwen-plus").await else {
        return;
    };
    assert_eq!(v["status_code"], 200, "{v}");
    assert_eq!(v["text"], "You said: hi there");
    assert_eq!(v["finish_reason"], "stop");
    assert!(v["output"]["choices"].is_null(), "{v}");
    assert_usage_adds_up(&v["usage"], "input_tokens", "output_tokens");
}

/// The frames of a DashScope stream as the SDK returned them: `pieces` is the text of each
/// (incremental: the new piece; cumulative: everything so far). The finish reason may come on
/// the last text frame (as DashScope does) or on one more frame that adds no text (as the
/// gateway does for upstreams that report the finish separately); both parse the same.
fn assert_stream_frames(v: &Value, pieces: &[&str], cumulative: bool) {
    assert_eq!(v["status_codes"], json!([200]), "{v}");
    assert_eq!(v["request_ids"].as_array().unwrap().len(), 1, "{v}");
    let mut got: Vec<&str> = v["pieces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    let adds_nothing = |last: &str, before: Option<&&str>| {
        if cumulative {
            before == Some(&last)
        } else {
            last.is_empty()
        }
    };
    if got.len() == pieces.len() + 1 && adds_nothing(got[got.len() - 1], got.get(got.len() - 2)) {
        got.pop();
    }
    assert_eq!(got, pieces, "{v}");
    let finish = v["finish_reasons"].as_array().unwrap();
    assert_eq!(finish.last().unwrap(), "stop", "{v}");
    for f in &finish[..finish.len() - 1] {
        assert!(f == "null" || f.is_null(), "not final yet: {v}");
    }
    let toks: Vec<u64> = v["output_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap())
        .collect();
    assert!(toks.windows(2).all(|w| w[0] <= w[1]), "running usage: {v}");
    assert_usage_adds_up(&v["last_usage"], "input_tokens", "output_tokens");
    assert_eq!(v["last_usage"]["output_tokens"], 4, "{v}");
}

async fn dashscope_stream_incremental(model: &str) {
    let (gw, _oa, _ds) = standard().await;
    let Some(v) = case(Sdk::DashScope, "stream_incremental", &gw, model).await else {
        return;
    };
    assert_stream_frames(&v, &["You ", "said: ", "hi ", "there"], false);
}

#[tokio::test]
async fn dashscope_sdk_stream_incremental() {
    dashscope_stream_incremental("qwen-plus").await;
}

#[tokio::test]
async fn dashscope_sdk_stream_incremental_from_an_openai_upstream() {
    dashscope_stream_incremental("gpt-4o-mini").await;
}

#[tokio::test]
async fn dashscope_sdk_stream_cumulative() {
    let (gw, _oa, _ds) = standard().await;
    let Some(v) = case(Sdk::DashScope, "stream_cumulative", &gw, "qwen-plus").await else {
        return;
    };
    assert_stream_frames(
        &v,
        &["You ", "You said: ", "You said: hi ", "You said: hi there"],
        true,
    );
}

#[tokio::test]
async fn dashscope_sdk_stream_merged_by_the_sdk() {
    let (gw, _oa, _ds) = standard().await;
    let Some(v) = case(Sdk::DashScope, "stream_merged", &gw, "qwen-plus").await else {
        return;
    };
    assert_stream_frames(
        &v,
        &["You ", "You said: ", "You said: hi ", "You said: hi there"],
        true,
    );
}

async fn dashscope_tools(model: &str) {
    let (gw, _oa, _ds) = standard().await;
    let Some(v) = case(Sdk::DashScope, "tools", &gw, model).await else {
        return;
    };
    assert_eq!(v["first_finish"], "tool_calls", "{v}");
    assert_weather_call(&v["calls"]);
    assert_eq!(v["calls"][0]["type"], "function");
    assert_eq!(v["final_finish"], "stop", "{v}");
    assert_eq!(v["final_content"], TOOL_RESULT);
    assert_usage_adds_up(&v["usage"], "input_tokens", "output_tokens");
}

#[tokio::test]
async fn dashscope_sdk_tool_call_round_trip() {
    dashscope_tools("qwen-plus").await;
}

#[tokio::test]
async fn dashscope_sdk_tool_call_round_trip_from_an_openai_upstream() {
    dashscope_tools("gpt-4o-mini").await;
}

async fn dashscope_tools_stream(model: &str) {
    let (gw, _oa, _ds) = standard().await;
    let Some(v) = case(Sdk::DashScope, "tools_stream", &gw, model).await else {
        return;
    };
    assert!(v["n"].as_u64().unwrap() >= 2, "{v}");
    assert_eq!(
        v["finish_reasons"].as_array().unwrap().last().unwrap(),
        "tool_calls",
        "{v}"
    );
    assert_weather_call(&v["calls"]);
    assert_eq!(v["calls"][0]["index"], 0);
}

#[tokio::test]
async fn dashscope_sdk_streamed_tool_call() {
    dashscope_tools_stream("qwen-plus").await;
}

#[tokio::test]
async fn dashscope_sdk_streamed_tool_call_from_an_openai_upstream() {
    dashscope_tools_stream("gpt-4o-mini").await;
}

async fn dashscope_embedding(model: &str) {
    let (gw, _oa, _ds) = standard().await;
    let env = [("LLMUX_EMBED_MODEL", model), ("LLMUX_EMBED_DIM", "512")];
    let Some(v) = run(Sdk::DashScope, "embedding", &gw, KEY, &env).await else {
        return;
    };
    assert_eq!(v["status_code"], 200, "{v}");
    assert_eq!(v["text_indexes"], json!([0, 1]), "{v}");
    assert_eq!(v["dims"], json!([512, 512]), "{v}");
    assert_eq!(v["vectors_differ"], true);
    assert!(v["usage"]["total_tokens"].as_u64().unwrap() > 0, "{v}");
}

#[tokio::test]
async fn dashscope_sdk_text_embedding() {
    dashscope_embedding("text-embedding-v3").await;
}

#[tokio::test]
async fn dashscope_sdk_text_embedding_from_an_openai_upstream() {
    dashscope_embedding("text-embedding-3-small").await;
}

fn assert_dashscope_error(e: &Value, status: u64, code: &str) {
    assert_eq!(e["status_code"], status, "{e}");
    assert_eq!(e["code"], code, "{e}");
    assert!(!e["message"].as_str().unwrap().is_empty(), "{e}");
    assert_eq!(e["request_id"].as_str().unwrap().len(), 36, "{e}");
    assert!(e["output"].is_null(), "{e}");
}

#[tokio::test]
async fn dashscope_sdk_wrong_key_is_401_invalid_api_key() {
    let (gw, _oa, _ds) = standard().await;
    let env = [("LLMUX_MODEL", "qwen-plus")];
    let Some(v) = run(Sdk::DashScope, "chat_error", &gw, "sk-wrong", &env).await else {
        return;
    };
    assert_dashscope_error(&v, 401, "InvalidApiKey");
    let stream = v["stream"].as_array().unwrap();
    assert_eq!(stream.len(), 1, "{v}");
    assert_dashscope_error(&stream[0], 401, "InvalidApiKey");
    let Some(v) = run(Sdk::DashScope, "embedding_error", &gw, "sk-wrong", &[]).await else {
        return;
    };
    assert_dashscope_error(&v, 401, "InvalidApiKey");
}

#[tokio::test]
async fn dashscope_sdk_upstream_429_is_throttling() {
    let (gw, emu) = throttled_upstream(Vendor::OpenAi, "openai", "[\"gpt-4o-mini\"]").await;
    let Some(v) = case(Sdk::DashScope, "chat_error", &gw, "gpt-4o-mini").await else {
        return;
    };
    assert_dashscope_error(&v, 429, "Throttling.RateQuota");
    let stream = v["stream"].as_array().unwrap();
    assert_eq!(stream.len(), 1, "{v}");
    assert_dashscope_error(&stream[0], 429, "Throttling.RateQuota");
    assert_eq!(emu.requests().len(), 2, "one upstream attempt per SDK call");
}
