//! Acceptance: the official OpenAI, Anthropic, dashscope and google-genai Python SDKs drive the
//! gateway, emulators behind it, and parse every answer without error: chat, streams with
//! usage, tool-call round trips, embeddings (base64 and float), models, legacy completions,
//! Anthropic messages (whole, streamed, tools, count_tokens), the Responses API
//! (`responses.create`, `responses.stream`, function-call round trips, what it refuses),
//! Gemini's `generate_content`, `generate_content_stream`, function calls and `count_tokens`,
//! and the 400, 401, 403 and 429 errors.
//!
//! Each test starts emulators and a gateway in-process on `127.0.0.1:0`, then runs some cases
//! of `tests/python/{openai,anthropic,dashscope,gemini}_cases.py` in one Python process (interpreter start-up and
//! SDK import cost more than the cases) against the gateway's base URL, and asserts on the JSON
//! each case prints. Every upstream is an emulator; cross-protocol tests put a DashScope
//! upstream behind the OpenAI SDK and an OpenAI upstream behind the dashscope SDK. Virtual keys
//! for 403 and 429 are made through `POST /admin/keys` on a gateway with an in-memory SQLite
//! store.
//!
//! The SDKs are pinned in `.ci/requirements-sdk.txt`; `.ci/run` installs them into
//! `${LLMUX_VENV:-~/.cache/llmux-venv}` and exports `LLMUX_PYTHON`. Without that interpreter (or
//! without the SDKs in it) a test fails under `CI=true` and is skipped with a loud line elsewhere.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};

use common::*;
use llmux_emulator::{Emulator, Fault, FaultKind, Vendor};
use llmux_gateway::{Config, RawConfig};
use serde_json::{json, Value};

/// Which SDK (and script) a case runs with.
#[derive(Debug, Clone, Copy)]
enum Sdk {
    OpenAi,
    Anthropic,
    DashScope,
    Gemini,
}

impl Sdk {
    fn script(self) -> PathBuf {
        let name = match self {
            Sdk::OpenAi => "openai_cases.py",
            Sdk::Anthropic => "anthropic_cases.py",
            Sdk::DashScope => "dashscope_cases.py",
            Sdk::Gemini => "gemini_cases.py",
        };
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/python")
            .join(name)
    }
}

/// What one run of a script printed: each case's result, keyed by its argument.
struct Results {
    sdk: Sdk,
    run: llmux_emulator::sdk::ScriptRun,
}

impl Results {
    /// The result of `case`, as passed to [`run`].
    fn get(&self, case: &str) -> &Value {
        self.run.results.get(case).unwrap_or_else(|| {
            panic!(
                "{:?}: no result for `{case}`: {}",
                self.sdk, self.run.results
            )
        })
    }
}

/// Runs `cases` (each `CASE` or `CASE:MODEL`) of `sdk`'s script in one Python process against
/// the gateway with `key`, and returns what it printed (`None` when skipped). Panics, with the
/// tracebacks and the script's stderr, if a case raised, the script failed, or an SDK wrote
/// anything to stderr (warnings or logged errors).
async fn run(sdk: Sdk, cases: &[&str], gw: &Harness, key: &str) -> Option<Results> {
    let run = llmux_emulator::sdk::run(&sdk.script(), cases, &gw.url, key).await?;
    assert!(
        run.success,
        "{sdk:?} cases {cases:?} failed:\n{}",
        run.stderr
    );
    assert!(
        run.stderr.trim().is_empty(),
        "{sdk:?} wrote to stderr:\n{}",
        run.stderr
    );
    Some(Results { sdk, run })
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

/// The standard pair of emulators behind a gateway with a key store (SQLite in memory), so
/// virtual keys can be created through the admin API.
async fn with_key_store() -> (Harness, Emulator, Emulator) {
    let oa = emulator(Vendor::OpenAi).await;
    let ds = emulator(Vendor::DashScope).await;
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\napi_keys = [\"{KEY}\"]\nadmin_key = \"{ADMIN}\"\n\
         database = \"sqlite::memory:\"\n\n{}{}",
        channel(
            "oa",
            "openai",
            &oa,
            "[\"gpt-4o-mini\", \"text-embedding-3-small\"]",
            ""
        ),
        channel(
            "ds",
            "dashscope",
            &ds,
            "[\"qwen-plus\", \"text-embedding-v3\"]",
            ""
        ),
    );
    let cfg = Config::resolve(RawConfig::parse(&text, Vec::new()).unwrap(), |_| None).unwrap();
    (start_config(cfg).await, oa, ds)
}

/// A virtual key made with `POST /admin/keys` (`body` is a `NewKey`).
async fn virtual_key(gw: &Harness, body: Value) -> String {
    let resp = gw
        .http
        .post(format!("{}/admin/keys", gw.url))
        .bearer_auth(ADMIN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let v: Value = resp.json().await.unwrap();
    v["key"].as_str().unwrap().to_owned()
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

/// What the emulator answers to the last user message "hi there", and the tool round trip's
/// final answer (the emulator echoes tool results).
const ANSWER: &str = "You said: hi there";
const TOOL_ANSWER: &str =
    r#"Tool results: {"city": "Hangzhou", "forecast": "sunny", "celsius": 21}"#;

fn assert_weather_call(calls: &Value) {
    let calls = calls.as_array().unwrap();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0]["name"], "get_weather");
    assert_eq!(calls[0]["arguments"], json!({"city": "Hangzhou"}));
    assert!(!calls[0]["id"].as_str().unwrap().is_empty(), "{calls:?}");
}

// ---------------------------------------------------------------------------------------------
// OpenAI SDK
// ---------------------------------------------------------------------------------------------

fn check_openai_chat(v: &Value, model: &str) {
    assert_eq!(v["type"], "ChatCompletion", "{v}");
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], model);
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"), "{v}");
    assert_eq!(v["n_choices"], 1);
    assert_eq!(v["index"], 0);
    assert_eq!(v["role"], "assistant");
    assert_eq!(v["content"], ANSWER);
    assert!(v["tool_calls"].is_null(), "{v}");
    assert_eq!(v["finish_reason"], "stop");
    assert_usage_adds_up(&v["usage"], "prompt_tokens", "completion_tokens");
    assert_eq!(v["usage"]["completion_tokens"], 4, "{v}");
    let rid = v["request_id"].as_str().unwrap();
    assert_eq!(rid.len(), 36, "{v}");
    assert_eq!(v["sdk_request_id"], rid);
}

fn check_openai_stream_usage(v: &Value, model: &str) {
    assert_eq!(v["objects"], json!(["chat.completion.chunk"]), "{v}");
    assert_eq!(
        v["ids"].as_array().unwrap().len(),
        1,
        "one id for all chunks: {v}"
    );
    assert_eq!(v["models"], json!([model]));
    assert_eq!(v["first_role"], "assistant");
    assert_eq!(v["content"], ANSWER);
    assert_eq!(v["finish_reasons"], json!(["stop"]), "{v}");
    assert_eq!(v["usage_chunks"], 1, "usage exactly once: {v}");
    assert_eq!(v["usage_chunk_is_last"], true, "{v}");
    assert_eq!(v["usage_chunk_choices"], json!([0]), "{v}");
    assert_usage_adds_up(&v["usage"], "prompt_tokens", "completion_tokens");
    assert_eq!(v["usage"]["completion_tokens"], 4, "{v}");
}

fn check_openai_tools(v: &Value) {
    assert_eq!(v["first_finish"], "tool_calls", "{v}");
    assert_weather_call(&v["calls"]);
    assert_eq!(v["calls"][0]["type"], "function");
    assert_eq!(v["final_finish"], "stop", "{v}");
    assert_eq!(v["final_content"], TOOL_ANSWER);
    assert!(v["final_tool_calls"].is_null(), "{v}");
    assert_usage_adds_up(&v["usage"], "prompt_tokens", "completion_tokens");
}

fn check_openai_tools_stream(v: &Value) {
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
    assert_eq!(v["final_content"], TOOL_ANSWER);
}

fn check_openai_embeddings(v: &Value, model: &str, dims: u64) {
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
async fn openai_sdk_chat_stream_tools_embeddings_and_models_with_an_openai_upstream() {
    let (gw, _oa, _ds) = standard().await;
    let m = "gpt-4o-mini";
    let cases = [
        "chat:gpt-4o-mini",
        "stream_usage:gpt-4o-mini",
        "tools:gpt-4o-mini",
        "tools_stream:gpt-4o-mini",
        "embeddings:text-embedding-3-small",
        "models:qwen-plus",
    ];
    let Some(r) = run(Sdk::OpenAi, &cases, &gw, KEY).await else {
        return;
    };
    assert_eq!(r.get(cases[0])["sdk_version"], "3.54.0");
    check_openai_chat(r.get(cases[0]), m);
    check_openai_stream_usage(r.get(cases[1]), m);
    check_openai_tools(r.get(cases[2]));
    check_openai_tools_stream(r.get(cases[3]));
    check_openai_embeddings(r.get(cases[4]), "text-embedding-3-small", 1536);
    let v = r.get(cases[5]);
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
async fn openai_sdk_chat_stream_tools_and_embeddings_with_a_dashscope_upstream() {
    let (gw, _oa, _ds) = standard().await;
    let m = "qwen-plus";
    let cases = [
        "chat:qwen-plus",
        "stream_usage:qwen-plus",
        "tools:qwen-plus",
        "tools_stream:qwen-plus",
        "embeddings:text-embedding-v3",
    ];
    let Some(r) = run(Sdk::OpenAi, &cases, &gw, KEY).await else {
        return;
    };
    check_openai_chat(r.get(cases[0]), m);
    check_openai_stream_usage(r.get(cases[1]), m);
    check_openai_tools(r.get(cases[2]));
    check_openai_tools_stream(r.get(cases[3]));
    check_openai_embeddings(r.get(cases[4]), "text-embedding-v3", 1024);
}

#[tokio::test]
async fn openai_sdk_chat_stream_and_tools_with_anthropic_and_gemini_upstreams() {
    let an = emulator(Vendor::Anthropic).await;
    let gm = emulator(Vendor::Gemini).await;
    let text = format!(
        "{}{}",
        channel("an", "anthropic", &an, "[\"claude-sonnet-4-6\"]", ""),
        channel("gm", "gemini", &gm, "[\"gemini-2.5-flash\"]", ""),
    );
    let gw = start(&text).await;
    for m in ["claude-sonnet-4-6", "gemini-2.5-flash"] {
        let cases = [
            format!("chat:{m}"),
            format!("stream_usage:{m}"),
            format!("tools:{m}"),
            format!("tools_stream:{m}"),
        ];
        let cases: Vec<&str> = cases.iter().map(String::as_str).collect();
        let Some(r) = run(Sdk::OpenAi, &cases, &gw, KEY).await else {
            return;
        };
        check_openai_chat(r.get(cases[0]), m);
        check_openai_stream_usage(r.get(cases[1]), m);
        if m.starts_with("gemini") {
            // Gemini takes the result object as is; the emulated model quotes it compactly.
            for case in [cases[2], cases[3]] {
                let v = r.get(case);
                assert_eq!(v["first_finish"], "tool_calls", "{v}");
                assert_weather_call(&v["calls"]);
                assert_eq!(v["final_finish"], "stop", "{v}");
                let quoted = v["final_content"]
                    .as_str()
                    .unwrap()
                    .strip_prefix("Tool results: ")
                    .unwrap();
                let tool_answer = TOOL_ANSWER.strip_prefix("Tool results: ").unwrap();
                assert_eq!(
                    serde_json::from_str::<Value>(quoted).unwrap(),
                    serde_json::from_str::<Value>(tool_answer).unwrap(),
                    "{v}"
                );
            }
        } else {
            check_openai_tools(r.get(cases[2]));
            check_openai_tools_stream(r.get(cases[3]));
        }
    }
}

/// The error cases print the SDK exception's class and fields; `chat_error` also has a
/// `stream` result for the same call with `stream=True`.
fn check_openai_error(e: &Value, class: &str, status: u64, ty: &str, code: &str) {
    assert_eq!(e["class"], class, "{e}");
    assert_eq!(e["status_code"], status, "{e}");
    assert_eq!(e["type"], ty, "{e}");
    assert_eq!(e["code"], code, "{e}");
    assert!(!e["message"].as_str().unwrap().is_empty(), "{e}");
    assert_eq!(e["request_id"].as_str().unwrap().len(), 36, "{e}");
}

#[tokio::test]
async fn openai_sdk_wrong_key_is_authentication_error() {
    let (gw, oa, ds) = standard().await;
    let cases = [
        "chat_error:gpt-4o-mini",
        "embeddings_error:text-embedding-3-small",
        "models_error",
    ];
    let Some(r) = run(Sdk::OpenAi, &cases, &gw, "sk-wrong").await else {
        return;
    };
    let v = r.get(cases[0]);
    for e in [v, &v["stream"], r.get(cases[1]), r.get(cases[2])] {
        check_openai_error(
            e,
            "AuthenticationError",
            401,
            "invalid_request_error",
            "invalid_api_key",
        );
        assert!(e["message"].as_str().unwrap().contains("API key"), "{e}");
    }
    assert!(oa.requests().is_empty() && ds.requests().is_empty());
}

#[tokio::test]
async fn openai_sdk_key_without_the_model_is_permission_denied() {
    let (gw, oa, ds) = with_key_store().await;
    let key = virtual_key(&gw, json!({"name": "gpt only", "models": ["gpt-4o-mini"]})).await;
    let cases = [
        "chat_error:qwen-plus",
        "embeddings_error:text-embedding-3-small",
        "chat:gpt-4o-mini",
    ];
    let Some(r) = run(Sdk::OpenAi, &cases, &gw, &key).await else {
        return;
    };
    let v = r.get(cases[0]);
    for e in [v, &v["stream"]] {
        check_openai_error(
            e,
            "PermissionDeniedError",
            403,
            "permission_error",
            "permission_denied",
        );
        assert_eq!(e["param"], "model");
        assert!(e["message"].as_str().unwrap().contains("qwen-plus"), "{e}");
    }
    let e = r.get(cases[1]);
    check_openai_error(
        e,
        "PermissionDeniedError",
        403,
        "permission_error",
        "permission_denied",
    );
    // The allowed model works with the same key; the refused calls never left the gateway.
    check_openai_chat(r.get(cases[2]), "gpt-4o-mini");
    assert_eq!(oa.requests().len(), 1);
    assert!(ds.requests().is_empty());
}

#[tokio::test]
async fn openai_sdk_key_over_its_rpm_is_rate_limit_error_with_retry_after() {
    let (gw, oa, _ds) = with_key_store().await;
    let key = virtual_key(&gw, json!({"name": "slow", "rpm": 2})).await;
    let Some(r) = run(Sdk::OpenAi, &["burst:gpt-4o-mini"], &gw, &key).await else {
        return;
    };
    let v = r.get("burst:gpt-4o-mini");
    assert_eq!(v["ok"], 2, "{v}");
    let e = &v["error"];
    check_openai_error(
        e,
        "RateLimitError",
        429,
        "rate_limit_error",
        "rate_limit_exceeded",
    );
    let after: u64 = e["retry_after"].as_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&after), "{v}");
    assert_eq!(
        oa.requests().len(),
        2,
        "the refused call never reached the upstream"
    );
}

#[tokio::test]
async fn openai_sdk_upstream_429_is_rate_limit_error_with_retry_after() {
    let (gw, emu) = throttled_upstream(Vendor::DashScope, "dashscope", "[\"qwen-plus\"]").await;
    let Some(r) = run(Sdk::OpenAi, &["chat_error:qwen-plus"], &gw, KEY).await else {
        return;
    };
    let v = r.get("chat_error:qwen-plus");
    for e in [v, &v["stream"]] {
        check_openai_error(
            e,
            "RateLimitError",
            429,
            "rate_limit_error",
            "rate_limit_exceeded",
        );
        assert_eq!(e["retry_after"], "7", "{v}");
    }
    assert_eq!(emu.requests().len(), 2, "one upstream attempt per SDK call");
}

// ---------------------------------------------------------------------------------------------
// dashscope SDK
// ---------------------------------------------------------------------------------------------

fn check_dashscope_messages(v: &Value) {
    assert_eq!(v["status_code"], 200, "{v}");
    assert_eq!(v["code"], "");
    assert_eq!(v["request_id"].as_str().unwrap().len(), 36, "{v}");
    assert_eq!(v["content"], ANSWER);
    assert_eq!(v["role"], "assistant");
    assert_eq!(v["finish_reason"], "stop");
    assert_usage_adds_up(&v["usage"], "input_tokens", "output_tokens");
    assert_eq!(v["usage"]["output_tokens"], 4);
}

/// The frames of a DashScope stream as the SDK returned them: `pieces` is the text of each
/// (incremental: the new piece; cumulative: everything so far). The finish reason may come on
/// the last text frame (as DashScope does) or on one more frame that adds no text (as the
/// gateway does, since its upstreams report the finish separately); the SDK parses both.
fn check_dashscope_stream(v: &Value, pieces: &[&str], cumulative: bool) {
    assert_eq!(v["status_codes"], json!([200]), "{v}");
    assert_eq!(v["request_ids"].as_array().unwrap().len(), 1, "{v}");
    let mut got: Vec<&str> = v["pieces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    let adds_nothing = match got.as_slice() {
        [.., before, last] if cumulative => before == last,
        [.., last] if !cumulative => last.is_empty(),
        _ => false,
    };
    if got.len() == pieces.len() + 1 && adds_nothing {
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
    // Like DashScope's own frames, every frame counts the output so far (not 0 until the end).
    assert!(toks.iter().all(|t| *t > 0), "running usage: {v}");
    assert!(
        v["usage_adds_up"]
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b == true),
        "every frame's usage has input + output = total: {v}"
    );
    assert_usage_adds_up(&v["last_usage"], "input_tokens", "output_tokens");
    assert_eq!(v["last_usage"]["output_tokens"], 4, "{v}");
}

const INCREMENTAL: [&str; 4] = ["You ", "said: ", "hi ", "there"];
const CUMULATIVE: [&str; 4] = ["You ", "You said: ", "You said: hi ", ANSWER];

fn check_dashscope_tools(v: &Value) {
    assert_eq!(v["first_finish"], "tool_calls", "{v}");
    assert_weather_call(&v["calls"]);
    assert_eq!(v["calls"][0]["type"], "function");
    assert_eq!(v["final_finish"], "stop", "{v}");
    assert_eq!(v["final_content"], TOOL_ANSWER);
    assert_usage_adds_up(&v["usage"], "input_tokens", "output_tokens");
}

fn check_dashscope_tools_stream(v: &Value) {
    assert!(v["n"].as_u64().unwrap() >= 2, "{v}");
    let finish = v["finish_reasons"].as_array().unwrap();
    assert_eq!(finish.last().unwrap(), "tool_calls", "{v}");
    assert_weather_call(&v["calls"]);
    assert_eq!(v["calls"][0]["index"], 0);
}

fn check_dashscope_embedding(v: &Value) {
    assert_eq!(v["status_code"], 200, "{v}");
    assert_eq!(v["text_indexes"], json!([0, 1]), "{v}");
    assert_eq!(v["dims"], json!([512, 512]), "{v}");
    assert_eq!(v["vectors_differ"], true);
    assert!(v["usage"]["total_tokens"].as_u64().unwrap() > 0, "{v}");
}

#[tokio::test]
async fn dashscope_sdk_generation_streams_tools_and_embedding_with_a_dashscope_upstream() {
    let (gw, _oa, _ds) = standard().await;
    let cases = [
        "messages:qwen-plus",
        "prompt:qwen-plus",
        "stream_incremental:qwen-plus",
        "stream_cumulative:qwen-plus",
        "stream_merged:qwen-plus",
        "tools:qwen-plus",
        "tools_stream:qwen-plus",
        "embedding:text-embedding-v3",
    ];
    let Some(r) = run(Sdk::DashScope, &cases, &gw, KEY).await else {
        return;
    };
    assert_eq!(r.get(cases[0])["sdk_version"], "2.0.2");
    check_dashscope_messages(r.get(cases[0]));
    let v = r.get(cases[1]);
    assert_eq!(v["status_code"], 200, "{v}");
    assert_eq!(v["text"], ANSWER);
    assert_eq!(v["finish_reason"], "stop");
    assert!(v["output"]["choices"].is_null(), "text format: {v}");
    assert_usage_adds_up(&v["usage"], "input_tokens", "output_tokens");
    check_dashscope_stream(r.get(cases[2]), &INCREMENTAL, false);
    // No incremental_output: the server repeats the text so far.
    check_dashscope_stream(r.get(cases[3]), &CUMULATIVE, true);
    // incremental_output=False: the SDK asks for increments and accumulates them itself.
    check_dashscope_stream(r.get(cases[4]), &CUMULATIVE, true);
    check_dashscope_tools(r.get(cases[5]));
    check_dashscope_tools_stream(r.get(cases[6]));
    check_dashscope_embedding(r.get(cases[7]));
}

#[tokio::test]
async fn dashscope_sdk_generation_streams_tools_and_embedding_with_an_openai_upstream() {
    let (gw, _oa, _ds) = standard().await;
    let cases = [
        "messages:gpt-4o-mini",
        "stream_incremental:gpt-4o-mini",
        "stream_cumulative:gpt-4o-mini",
        "tools:gpt-4o-mini",
        "tools_stream:gpt-4o-mini",
        "embedding:text-embedding-3-small",
    ];
    let Some(r) = run(Sdk::DashScope, &cases, &gw, KEY).await else {
        return;
    };
    check_dashscope_messages(r.get(cases[0]));
    check_dashscope_stream(r.get(cases[1]), &INCREMENTAL, false);
    check_dashscope_stream(r.get(cases[2]), &CUMULATIVE, true);
    check_dashscope_tools(r.get(cases[3]));
    check_dashscope_tools_stream(r.get(cases[4]));
    check_dashscope_embedding(r.get(cases[5]));
}

/// A DashScope error as the SDK returns it (`chat_error` also has a `stream` list: the same
/// call with `stream=True`, which yields one error result).
fn check_dashscope_error(e: &Value, status: u64, code: &str) {
    assert_eq!(e["status_code"], status, "{e}");
    assert_eq!(e["code"], code, "{e}");
    assert!(!e["message"].as_str().unwrap().is_empty(), "{e}");
    assert_eq!(e["request_id"].as_str().unwrap().len(), 36, "{e}");
    assert!(e["output"].is_null(), "{e}");
    if let Some(stream) = e.get("stream") {
        assert_eq!(stream.as_array().unwrap().len(), 1, "{e}");
        check_dashscope_error(&stream[0], status, code);
    }
}

#[tokio::test]
async fn dashscope_sdk_wrong_key_is_401_invalid_api_key() {
    let (gw, oa, ds) = standard().await;
    let cases = ["chat_error:qwen-plus", "embedding_error:text-embedding-v3"];
    let Some(r) = run(Sdk::DashScope, &cases, &gw, "sk-wrong").await else {
        return;
    };
    check_dashscope_error(r.get(cases[0]), 401, "InvalidApiKey");
    check_dashscope_error(r.get(cases[1]), 401, "InvalidApiKey");
    assert!(oa.requests().is_empty() && ds.requests().is_empty());
}

#[tokio::test]
async fn dashscope_sdk_key_without_the_model_is_403_access_denied() {
    let (gw, oa, ds) = with_key_store().await;
    let key = virtual_key(&gw, json!({"name": "gpt only", "models": ["gpt-4o-mini"]})).await;
    let cases = ["chat_error:qwen-plus", "embedding_error:text-embedding-v3"];
    let Some(r) = run(Sdk::DashScope, &cases, &gw, &key).await else {
        return;
    };
    let v = r.get(cases[0]);
    check_dashscope_error(v, 403, "AccessDenied");
    assert!(v["message"].as_str().unwrap().contains("qwen-plus"), "{v}");
    check_dashscope_error(r.get(cases[1]), 403, "AccessDenied");
    assert!(oa.requests().is_empty() && ds.requests().is_empty());
}

#[tokio::test]
async fn dashscope_sdk_key_over_its_rpm_is_429_throttling() {
    let (gw, _oa, ds) = with_key_store().await;
    let key = virtual_key(&gw, json!({"name": "slow", "rpm": 2})).await;
    let Some(r) = run(Sdk::DashScope, &["burst:qwen-plus"], &gw, &key).await else {
        return;
    };
    let v = r.get("burst:qwen-plus");
    assert_eq!(v["ok"], 2, "{v}");
    check_dashscope_error(&v["error"], 429, "Throttling.RateQuota");
    assert_eq!(
        ds.requests().len(),
        2,
        "the refused call never reached the upstream"
    );
}

#[tokio::test]
async fn dashscope_sdk_upstream_429_is_throttling() {
    let (gw, emu) = throttled_upstream(Vendor::OpenAi, "openai", "[\"gpt-4o-mini\"]").await;
    let Some(r) = run(Sdk::DashScope, &["chat_error:gpt-4o-mini"], &gw, KEY).await else {
        return;
    };
    check_dashscope_error(r.get("chat_error:gpt-4o-mini"), 429, "Throttling.RateQuota");
    assert_eq!(emu.requests().len(), 2, "one upstream attempt per SDK call");
}

// ---------------------------------------------------------------------------------------------
// Anthropic SDK and legacy completions, in front of an OpenAI, a DashScope native and a signed
// (Hunyuan TC3) upstream
// ---------------------------------------------------------------------------------------------

/// The model each upstream serves: the OpenAI emulator, the DashScope native emulator and
/// the Hunyuan native emulator (TC3-signed requests).
const UPSTREAMS: [&str; 3] = ["gpt-4o-mini", "qwen-plus", "hunyuan-lite"];

/// The three upstreams behind a gateway recording usage (SQLite in memory).
async fn three_upstreams() -> (Harness, [Emulator; 3]) {
    let oa = emulator(Vendor::OpenAi).await;
    let ds = emulator(Vendor::DashScope).await;
    let hy = emulator(Vendor::Hunyuan).await;
    let env: std::collections::HashMap<String, String> =
        hy.env_for("hunyuan").unwrap().into_iter().collect();
    let hunyuan = format!(
        "[[channels]]\nname = \"hy\"\nprovider = \"hunyuan\"\nbase_url = \"{}\"\n\
         secret_id = \"{}\"\nsecret_key = \"{}\"\nmodels = [\"hunyuan-lite\"]\n",
        env["HUNYUAN_BASE_URL"], env["TENCENTCLOUD_SECRET_ID"], env["TENCENTCLOUD_SECRET_KEY"]
    );
    let gw = start_with_store(&format!(
        "{}{}{hunyuan}",
        channel("oa", "openai", &oa, "[\"gpt-4o-mini\"]", ""),
        channel("ds", "dashscope", &ds, "[\"qwen-plus\"]", ""),
    ))
    .await;
    (gw, [oa, ds, hy])
}

/// The usage record of the request with gateway id `rid`, once all `n` records are written.
async fn record_of(gw: &Harness, n: u64, rid: &str) -> llmux_gateway::store::UsageRecord {
    records(gw, n)
        .await
        .into_iter()
        .find(|r| r.request_id == rid)
        .unwrap_or_else(|| panic!("no usage record for {rid}"))
}

/// Prompt tokens of the emulator's count: Σ (pieces + 4) over the input messages.
const PROMPT_SYSTEM_AND_HI: u64 = (3 + 4) + (2 + 4);
const PROMPT_HI: u64 = 2 + 4;

fn check_anthropic_message(v: &Value, model: &str, input: u64) {
    // `messages.stream` accumulates into its `ParsedMessage` subclass.
    assert!(
        v["class"] == "Message" || v["class"] == "ParsedMessage",
        "{v}"
    );
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert_eq!(v["model"], model);
    assert_eq!(
        v["content"],
        json!([{"type": "text", "text": ANSWER}]),
        "{v}"
    );
    assert_eq!(v["stop_reason"], "end_turn", "{v}");
    assert!(v["stop_sequence"].is_null());
    // Anthropic accounting: nothing read from a cache here, so input_tokens is the prompt; the
    // cache read is what the upstream said (the OpenAI emulator reports 0 cached tokens, the
    // others report none).
    let cached = if model == "gpt-4o-mini" {
        json!(0)
    } else {
        Value::Null
    };
    assert_eq!(
        v["usage"],
        json!({"input_tokens": input, "output_tokens": 4,
            "cache_read_input_tokens": cached, "cache_creation_input_tokens": null}),
        "{v}"
    );
    let rid = v["request_id"].as_str().unwrap();
    assert_eq!(rid.len(), 36, "{v}");
    assert_eq!(v["id"], format!("msg_{}", rid.replace('-', "")));
}

fn check_anthropic_tools(v: &Value, streamed: bool) {
    assert_eq!(v["first_stop"], "tool_use", "{v}");
    let calls = v["calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1, "{v}");
    assert_eq!(calls[0]["name"], "get_weather");
    assert_eq!(calls[0]["input"], json!({"city": "Hangzhou"}));
    assert!(!calls[0]["id"].as_str().unwrap().is_empty(), "{v}");
    assert_eq!(v["final_stop"], "end_turn", "{v}");
    assert_eq!(
        v["final_content"],
        json!([{"type": "text", "text": TOOL_ANSWER}]),
        "{v}"
    );
    assert!(v["usage"]["output_tokens"].as_u64().unwrap() > 0, "{v}");
    if streamed {
        let events: Vec<&str> = v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.as_str().unwrap())
            .collect();
        assert_eq!(events.first(), Some(&"message_start"), "{v}");
        assert_eq!(events.last(), Some(&"message_stop"), "{v}");
        assert!(events.contains(&"input_json"), "streamed tool input: {v}");
        assert!(
            v["first_usage"]["output_tokens"].as_u64().unwrap() > 0,
            "{v}"
        );
    }
}

#[tokio::test]
async fn anthropic_sdk_messages_stream_tools_and_count_tokens_with_three_upstreams() {
    let (gw, emus) = three_upstreams().await;
    let mut cases = Vec::new();
    for m in UPSTREAMS {
        for c in ["create", "stream", "tools", "tools_stream", "count_tokens"] {
            cases.push(format!("{c}:{m}"));
        }
    }
    let args: Vec<&str> = cases.iter().map(String::as_str).collect();
    let Some(r) = run(Sdk::Anthropic, &args, &gw, KEY).await else {
        return;
    };
    assert_eq!(r.get(&cases[0])["sdk_version"], "2.10.0");
    // Per model: create, two streams, two round trips of two calls each.
    let routed = 1 + 2 + 2 + 2;
    for m in UPSTREAMS {
        let v = r.get(&format!("create:{m}"));
        check_anthropic_message(v, m, PROMPT_SYSTEM_AND_HI);
        assert_eq!(v["x_request_id"], v["request_id"]);
        // The ledger holds what the upstream reported.
        let rec = record_of(&gw, 3 * routed, v["request_id"].as_str().unwrap()).await;
        assert_eq!(
            (
                rec.input_tokens,
                rec.output_tokens,
                rec.status,
                rec.usage_estimated
            ),
            (PROMPT_SYSTEM_AND_HI, 4, 200, false),
            "{rec:?}"
        );
        assert_eq!(rec.model, m);

        let v = r.get(&format!("stream:{m}"));
        check_anthropic_message(v, m, PROMPT_SYSTEM_AND_HI);
        let events: Vec<&str> = v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.as_str().unwrap())
            .collect();
        assert_eq!(events.first(), Some(&"message_start"), "{v}");
        assert_eq!(
            &events[events.len() - 3..],
            ["content_block_stop", "message_delta", "message_stop"],
            "{v}"
        );
        assert_eq!(
            v["pieces"],
            json!(["You ", "said: ", "hi ", "there"]),
            "{v}"
        );
        let rec = record_of(&gw, 3 * routed, v["request_id"].as_str().unwrap()).await;
        assert_eq!(
            (
                rec.input_tokens,
                rec.output_tokens,
                rec.stream,
                rec.usage_estimated
            ),
            (PROMPT_SYSTEM_AND_HI, 4, true, false),
            "{rec:?}"
        );

        check_anthropic_tools(r.get(&format!("tools:{m}")), false);
        check_anthropic_tools(r.get(&format!("tools_stream:{m}")), true);

        // The gateway's estimate: 4 per message plus ASCII/4 ("You are terse." 4, "hi there"
        // 2), and the tool definition on top.
        let v = r.get(&format!("count_tokens:{m}"));
        assert_eq!(v["class"], "MessageTokensCount", "{v}");
        assert_eq!(v["input_tokens"], 4 + 4 + 4 + 2, "{v}");
        assert!(v["with_tools"].as_u64().unwrap() > PROMPT_HI + 10, "{v}");
    }
    // count_tokens reached no upstream: each emulator saw exactly its routed calls.
    for e in &emus {
        assert_eq!(e.requests().len(), routed as usize);
    }
}

fn check_anthropic_error(e: &Value, class: &str, status: u64, ty: &str) {
    assert_eq!(e["class"], class, "{e}");
    assert_eq!(e["status_code"], status, "{e}");
    assert_eq!(e["type"], ty, "{e}");
    assert_eq!(e["body"]["type"], "error", "{e}");
    assert!(!e["message"].as_str().unwrap().is_empty(), "{e}");
    assert_eq!(e["request_id"].as_str().unwrap().len(), 36, "{e}");
}

#[tokio::test]
async fn anthropic_sdk_errors_are_anthropic_errors() {
    let (gw, emus) = three_upstreams().await;
    let key = virtual_key(&gw, json!({"name": "gpt only", "models": ["gpt-4o-mini"]})).await;
    let Some(wrong) = run(Sdk::Anthropic, &["create_error:qwen-plus"], &gw, "sk-wrong").await
    else {
        return;
    };
    let v = wrong.get("create_error:qwen-plus");
    for e in [v, &v["stream"], &v["count_tokens"]] {
        check_anthropic_error(e, "AuthenticationError", 401, "authentication_error");
    }
    let cases = ["create_error:qwen-plus", "unsupported:gpt-4o-mini"];
    let Some(r) = run(Sdk::Anthropic, &cases, &gw, &key).await else {
        return;
    };
    let v = r.get(cases[0]);
    for e in [v, &v["stream"], &v["count_tokens"]] {
        check_anthropic_error(e, "PermissionDeniedError", 403, "permission_error");
        assert!(e["message"].as_str().unwrap().contains("qwen-plus"), "{e}");
    }
    let e = r.get(cases[1]);
    check_anthropic_error(e, "BadRequestError", 400, "invalid_request_error");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .starts_with("tools[0].type: "),
        "{e}"
    );
    for emu in &emus {
        assert!(
            emu.requests().is_empty(),
            "refused calls never left the gateway"
        );
    }
}

#[tokio::test]
async fn anthropic_sdk_upstream_429_is_rate_limit_error_with_retry_after() {
    let (gw, emu) = throttled_upstream(Vendor::DashScope, "dashscope", "[\"qwen-plus\"]").await;
    let Some(r) = run(Sdk::Anthropic, &["create_error:qwen-plus"], &gw, KEY).await else {
        return;
    };
    let v = r.get("create_error:qwen-plus");
    for e in [v, &v["stream"]] {
        check_anthropic_error(e, "RateLimitError", 429, "rate_limit_error");
        assert_eq!(e["retry_after"], "7", "{v}");
    }
    assert_eq!(emu.requests().len(), 2, "one upstream attempt per SDK call");
}

#[tokio::test]
async fn openai_sdk_legacy_completions_with_three_upstreams() {
    let (gw, emus) = three_upstreams().await;
    let mut cases = Vec::new();
    for m in UPSTREAMS {
        cases.push(format!("completion:{m}"));
        cases.push(format!("completion_stream:{m}"));
    }
    let args: Vec<&str> = cases.iter().map(String::as_str).collect();
    let Some(r) = run(Sdk::OpenAi, &args, &gw, KEY).await else {
        return;
    };
    for (m, emu) in UPSTREAMS.iter().zip(&emus) {
        let v = r.get(&format!("completion:{m}"));
        assert_eq!(v["type"], "Completion", "{v}");
        assert_eq!(v["object"], "text_completion");
        assert_eq!(v["model"], *m);
        assert_eq!(v["n_choices"], 1);
        assert_eq!(v["text"], ANSWER);
        assert_eq!(v["finish_reason"], "stop");
        assert!(v["logprobs"].is_null());
        let rid = v["request_id"].as_str().unwrap();
        assert_eq!(v["id"], format!("cmpl-{}", rid.replace('-', "")));
        assert_eq!(
            v["usage"],
            json!({"prompt_tokens": PROMPT_HI, "completion_tokens": 4, "total_tokens": PROMPT_HI + 4}),
            "{v}"
        );
        let rec = record_of(&gw, 6, rid).await;
        assert_eq!(
            (rec.input_tokens, rec.output_tokens, rec.usage_estimated),
            (PROMPT_HI, 4, false)
        );

        let v = r.get(&format!("completion_stream:{m}"));
        assert_eq!(v["objects"], json!(["text_completion"]), "{v}");
        assert_eq!(v["ids"].as_array().unwrap().len(), 1, "{v}");
        assert_eq!(v["usage_chunks"], 1, "{v}");
        assert_eq!(v["usage_chunk_is_last"], true, "{v}");
        assert_eq!(v["text"], ANSWER, "{v}");
        assert_eq!(
            v["pieces"],
            json!(["You ", "said: ", "hi ", "there"]),
            "{v}"
        );
        assert_eq!(v["finish_reasons"], json!(["stop"]), "{v}");
        assert_eq!(v["usage"]["completion_tokens"], 4, "{v}");
        assert_eq!(v["usage"]["prompt_tokens"], PROMPT_HI, "{v}");
        let e = &v["echo_error"];
        assert_eq!(e["class"], "BadRequestError", "{e}");
        assert_eq!(e["param"], "echo", "{e}");
        assert_eq!(
            emu.requests().len(),
            2,
            "the refused echo call never left the gateway"
        );
    }
    // One prompt in, one user message out, with the legacy default cap of 16 where the vendor
    // has a cap (Hunyuan has none: it is sent no cap rather than refusing).
    let oa = emus[0].requests();
    let body = &oa[0].json().unwrap();
    assert_eq!(
        body["messages"],
        json!([{"role": "user", "content": "hi there"}])
    );
    assert_eq!(body["max_tokens"], 16, "{body}");
    let ds = emus[1].requests();
    let body = &ds[0].json().unwrap();
    assert_eq!(
        body["input"]["prompt"], "hi there",
        "a single-turn prompt: {body}"
    );
}

// ---------------------------------------------------------------------------------------------
// The Responses API and Gemini, each in front of an OpenAI, a DashScope native and a signed
// (Hunyuan TC3) upstream
// ---------------------------------------------------------------------------------------------

/// Every upstream saw requests and answered them (a bad TC3 signature is an error answer,
/// which would have failed the SDK case that sent it).
fn assert_each_upstream_served(emus: &[Emulator; 3]) {
    for e in emus {
        let reqs = e.requests();
        assert!(!reqs.is_empty(), "an upstream saw no request");
        assert!(reqs.iter().all(|r| r.status == 200), "{reqs:?}");
    }
}

fn check_response(v: &Value, model: &str) {
    // `responses.stream` gives the SDK's `ParsedResponse` (a `Response` subclass).
    assert!(
        v["type"] == "Response" || v["type"] == "ParsedResponse",
        "{v}"
    );
    assert_eq!(v["object"], "response");
    assert_eq!(v["status"], "completed", "{v}");
    assert_eq!(v["model"], model);
    assert!(v["id"].as_str().unwrap().starts_with("resp_"), "{v}");
    assert_usage_adds_up(&v["usage"], "input_tokens", "output_tokens");
}

fn check_response_call(first: &Value) {
    assert_eq!(first["status"], "completed", "{first}");
    assert_eq!(first["output_types"], json!(["function_call"]), "{first}");
    let calls = first["calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1, "{first}");
    assert_eq!(calls[0]["name"], "get_weather");
    assert_eq!(calls[0]["arguments"], json!({"city": "Hangzhou"}));
    assert!(!calls[0]["call_id"].as_str().unwrap().is_empty(), "{first}");
    assert!(
        calls[0]["id"].as_str().unwrap().starts_with("fc_"),
        "{first}"
    );
}

fn check_responses(r: &Results, model: &str) {
    let v = r.get(&format!("responses:{model}"));
    check_response(v, model);
    assert_eq!(v["usage"]["output_tokens"], 4, "{v}");
    assert_eq!(v["output_types"], json!(["message"]), "{v}");
    assert_eq!(v["output_text"], ANSWER);
    assert_eq!(v["message_role"], "assistant");
    assert_eq!(v["message_status"], "completed");
    assert_eq!(v["part_types"], json!(["output_text"]));
    assert_eq!(v["instructions"], "You are terse.");
    assert_eq!(v["metadata"], json!({"case": "responses"}));
    assert_eq!(v["request_id"].as_str().unwrap().len(), 36, "{v}");

    let v = r.get(&format!("responses_stream:{model}"));
    check_response(v, model);
    assert_eq!(v["usage"]["output_tokens"], 4, "{v}");
    assert_eq!(v["output_text"], ANSWER);
    assert_eq!(v["deltas"], ANSWER);
    assert_eq!(
        v["snapshots_last"],
        json!([ANSWER]),
        "the SDK's accumulated text: {v}"
    );
    assert_eq!(v["sequence_ok"], true, "{v}");
    assert_eq!(v["created_id"], v["id"]);
    let events: Vec<&str> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert_eq!(
        events[..4],
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added"
        ],
        "{v}"
    );
    assert_eq!(
        events[events.len() - 4..],
        [
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed"
        ],
        "{v}"
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| **e == "response.output_text.delta")
            .count(),
        4,
        "one delta per upstream piece: {v}"
    );

    for case in ["responses_tools", "responses_tools_stream"] {
        let v = r.get(&format!("{case}:{model}"));
        check_response_call(&v["first"]);
        let fin = &v["final"];
        check_response(fin, model);
        assert_eq!(fin["output_text"], TOOL_ANSWER, "{v}");
        assert!(fin["calls"].as_array().unwrap().is_empty(), "{v}");
    }
    let events = &r.get(&format!("responses_tools_stream:{model}"))["events"];
    for e in [
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ] {
        assert!(
            events.as_array().unwrap().contains(&json!(e)),
            "no `{e}`: {events}"
        );
    }

    let v = r.get(&format!("responses_refusals:{model}"));
    let e = &v["previous_response_id"];
    assert_eq!(e["class"], "BadRequestError", "{e}");
    assert_eq!(e["param"], "previous_response_id");
    assert!(
        e["message"].as_str().unwrap().contains("does not store"),
        "{e}"
    );
    let e = &v["web_search"];
    assert_eq!(e["class"], "BadRequestError", "{e}");
    assert_eq!(e["code"], "unsupported");
    assert!(
        e["message"].as_str().unwrap().contains("`web_search`"),
        "{e}"
    );
    let e = &v["retrieve"];
    assert_eq!(e["class"], "NotFoundError", "{e}");
    assert_eq!(e["code"], "response_not_found");
}

#[tokio::test]
async fn openai_sdk_responses_with_openai_dashscope_and_signed_hunyuan_upstreams() {
    let (gw, emus) = three_upstreams().await;
    let cases: Vec<String> = UPSTREAMS
        .iter()
        .flat_map(|m| {
            [
                "responses",
                "responses_stream",
                "responses_tools",
                "responses_tools_stream",
                "responses_refusals",
            ]
            .map(|c| format!("{c}:{m}"))
        })
        .collect();
    let cases: Vec<&str> = cases.iter().map(String::as_str).collect();
    let Some(r) = run(Sdk::OpenAi, &cases, &gw, KEY).await else {
        return;
    };
    for m in UPSTREAMS {
        check_responses(&r, m);
    }
    assert_each_upstream_served(&emus);
}

fn assert_gemini_usage_adds_up(u: &Value) {
    let p = u["prompt_token_count"]
        .as_u64()
        .unwrap_or_else(|| panic!("{u}"));
    let c = u["candidates_token_count"]
        .as_u64()
        .unwrap_or_else(|| panic!("{u}"));
    assert!(p > 0 && c > 0, "{u}");
    assert_eq!(u["total_token_count"].as_u64(), Some(p + c), "{u}");
}

/// What the emulator answers to a Gemini function response: the gateway sends the response
/// object as the tool result, compact JSON.
const GEMINI_TOOL_ANSWER: &str =
    r#"Tool results: {"celsius":21,"city":"Hangzhou","forecast":"sunny"}"#;

fn check_gemini(r: &Results, model: &str) {
    let v = r.get(&format!("generate:{model}"));
    assert_eq!(v["type"], "GenerateContentResponse", "{v}");
    assert_eq!(v["text"], ANSWER, "{v}");
    assert_eq!(v["role"], "model");
    assert_eq!(v["finish_reason"], "STOP");
    assert_eq!(v["index"], 0);
    assert_eq!(v["model_version"], model);
    let rid = v["response_id"].as_str().unwrap();
    assert_eq!(rid.len(), 36, "{v}");
    assert_gemini_usage_adds_up(&v["usage"]);
    assert_eq!(v["usage"]["candidates_token_count"], 4, "{v}");
    // The prompt's tokens came from the upstream: the system instruction is in the prompt.
    assert!(
        v["usage"]["prompt_token_count"].as_u64().unwrap() > 6,
        "{v}"
    );

    let v = r.get(&format!("stream:{model}"));
    assert_eq!(v["pieces"], json!(INCREMENTAL), "{v}");
    assert_eq!(v["finish_reasons"], json!(["STOP"]), "{v}");
    assert_eq!(v["usage_chunks"], 1, "{v}");
    assert_eq!(v["usage_on_last"], true, "{v}");
    assert_gemini_usage_adds_up(&v["usage"]);
    assert_eq!(v["response_ids"].as_array().unwrap().len(), 1, "{v}");

    for case in ["tools", "tools_stream"] {
        let v = r.get(&format!("{case}:{model}"));
        let calls = v["calls"].as_array().unwrap();
        assert_eq!(calls.len(), 1, "{v}");
        assert_eq!(calls[0]["name"], "get_weather");
        assert_eq!(calls[0]["args"], json!({"city": "Hangzhou"}));
        assert!(!calls[0]["id"].as_str().unwrap().is_empty(), "{v}");
        assert_eq!(v["first_finish"], "STOP", "{v}");
        assert_gemini_usage_adds_up(&v["first_usage"]);
        assert_eq!(v["final_text"], GEMINI_TOOL_ANSWER, "{v}");
        assert_eq!(v["final_finish"], "STOP", "{v}");
    }

    let v = r.get(&format!("count_tokens:{model}"));
    assert!(v["total_tokens"].as_u64().unwrap() > 0, "{v}");

    let v = r.get(&format!("refusals:{model}"));
    for (case, needle) in [
        ("cached_content", "cachedContent"),
        ("google_search", "googleSearch"),
    ] {
        let e = &v[case];
        assert_eq!(e["class"], "ClientError", "{e}");
        assert_eq!(e["code"], 400, "{e}");
        assert_eq!(e["status"], "INVALID_ARGUMENT", "{e}");
        assert!(e["message"].as_str().unwrap().contains(needle), "{e}");
    }
}

#[tokio::test]
async fn gemini_sdk_generate_stream_tools_and_count_with_openai_dashscope_and_signed_hunyuan_upstreams(
) {
    let (gw, emus) = three_upstreams().await;
    let cases: Vec<String> = UPSTREAMS
        .iter()
        .flat_map(|m| {
            [
                "generate",
                "stream",
                "tools",
                "tools_stream",
                "count_tokens",
                "refusals",
            ]
            .map(|c| format!("{c}:{m}"))
        })
        .collect();
    let cases: Vec<&str> = cases.iter().map(String::as_str).collect();
    let Some(r) = run(Sdk::Gemini, &cases, &gw, KEY).await else {
        return;
    };
    assert_eq!(r.get(cases[0])["sdk_version"], "3.3.0");
    for m in UPSTREAMS {
        check_gemini(&r, m);
    }
    assert_each_upstream_served(&emus);
}

fn check_gemini_error(e: &Value, code: u64, status: &str) {
    assert_eq!(e["class"], "ClientError", "{e}");
    assert_eq!(e["code"], code, "{e}");
    assert_eq!(e["status"], status, "{e}");
    assert!(!e["message"].as_str().unwrap().is_empty(), "{e}");
}

#[tokio::test]
async fn gemini_and_responses_errors_wrong_key_model_not_allowed_and_rpm() {
    let (gw, oa, ds) = with_key_store().await;
    // A wrong key: 401 in each dialect's envelope; nothing reaches an upstream.
    let Some(r) = run(Sdk::Gemini, &["generate_error:qwen-plus"], &gw, "sk-wrong").await else {
        return;
    };
    let v = r.get("generate_error:qwen-plus");
    check_gemini_error(v, 401, "UNAUTHENTICATED");
    check_gemini_error(&v["stream"], 401, "UNAUTHENTICATED");
    let r = run(Sdk::OpenAi, &["responses_error:qwen-plus"], &gw, "sk-wrong")
        .await
        .unwrap();
    let v = r.get("responses_error:qwen-plus");
    for e in [v, &v["stream"]] {
        check_openai_error(
            e,
            "AuthenticationError",
            401,
            "invalid_request_error",
            "invalid_api_key",
        );
    }
    assert!(oa.requests().is_empty() && ds.requests().is_empty());

    // A key without the model: 403.
    let key = virtual_key(&gw, json!({"name": "gpt only", "models": ["gpt-4o-mini"]})).await;
    let r = run(Sdk::Gemini, &["generate_error:qwen-plus"], &gw, &key)
        .await
        .unwrap();
    let v = r.get("generate_error:qwen-plus");
    check_gemini_error(v, 403, "PERMISSION_DENIED");
    assert!(v["message"].as_str().unwrap().contains("qwen-plus"), "{v}");
    let r = run(Sdk::OpenAi, &["responses_error:qwen-plus"], &gw, &key)
        .await
        .unwrap();
    check_openai_error(
        r.get("responses_error:qwen-plus"),
        "PermissionDeniedError",
        403,
        "permission_error",
        "permission_denied",
    );
    assert!(ds.requests().is_empty());

    // A key over its RPM: the third Gemini call is 429 RESOURCE_EXHAUSTED.
    let key = virtual_key(&gw, json!({"name": "slow", "rpm": 2})).await;
    let r = run(
        Sdk::Gemini,
        &[
            "generate:qwen-plus",
            "stream:qwen-plus",
            "generate_error:qwen-plus",
        ],
        &gw,
        &key,
    )
    .await
    .unwrap();
    assert_eq!(r.get("generate:qwen-plus")["text"], ANSWER);
    let v = r.get("generate_error:qwen-plus");
    check_gemini_error(v, 429, "RESOURCE_EXHAUSTED");
    check_gemini_error(&v["stream"], 429, "RESOURCE_EXHAUSTED");
    assert_eq!(
        ds.requests().len(),
        2,
        "the refused calls never reached the upstream"
    );
}
