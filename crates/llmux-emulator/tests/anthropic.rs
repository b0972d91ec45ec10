//! The Anthropic emulator: the Messages API on the wire (validation, usage with prompt caching, the SSE event
//! sequence, faults in Anthropic's envelope) and the official `anthropic` Python SDK driving it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod python_sdk;

use common::{frames, send, Resp};
use llmux_emulator::{Emulator, EmulatorConfig, Fault, FaultKind, Vendor};
use serde_json::{json, Value};

const KEY: &str = "sk-ant-emulator";

async fn emulator() -> Emulator {
    Emulator::start(EmulatorConfig::new(Vendor::Anthropic))
        .await
        .unwrap()
}

async fn post_with(emu: &Emulator, path: &str, headers: &[(&str, &str)], body: &Value) -> Resp {
    let url = format!("{}{path}", emu.base_url());
    send("POST", &url, headers, &body.to_string()).await
}

async fn post(emu: &Emulator, path: &str, body: &Value) -> Resp {
    post_with(
        emu,
        path,
        &[
            ("x-api-key", KEY),
            ("anthropic-version", "2023-06-01"),
            ("content-type", "application/json"),
        ],
        body,
    )
    .await
}

fn hello() -> Value {
    json!({"model": "claude-sonnet-4-5", "max_tokens": 64,
           "messages": [{"role": "user", "content": "hi there"}]})
}

fn weather_tool() -> Value {
    json!({"name": "get_weather", "description": "Weather for a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                            "required": ["city"]}})
}

/// The (event name, data) pairs of an Anthropic stream.
fn events(body: &str) -> Vec<(String, Value)> {
    frames(body)
        .iter()
        .map(|f| (f.field("event").unwrap().to_owned(), f.json()))
        .collect()
}

#[tokio::test]
async fn base_url_env_and_defaults() {
    let emu = emulator().await;
    assert_eq!(Vendor::Anthropic.id(), "anthropic");
    assert_eq!(Vendor::Anthropic.default_key(), KEY);
    assert_eq!(Vendor::for_provider("anthropic"), Some(Vendor::Anthropic));
    assert_eq!(emu.base_url(), format!("http://{}", emu.addr()));
    assert_eq!(emu.compat_base_url(), None);
    let env = emu.env_for("anthropic").unwrap();
    assert!(env.contains(&("ANTHROPIC_BASE_URL".to_owned(), emu.base_url())));
    assert!(env.contains(&("ANTHROPIC_API_KEY".to_owned(), KEY.to_owned())));
}

#[tokio::test]
async fn messages_answer_with_ids_usage_and_the_request_id_header() {
    let emu = emulator().await;
    let r = post(&emu, "/v1/messages", &hello()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("request-id"), Some("req_emu000000000001"));
    let v = r.json();
    assert_eq!(v["id"], "msg_emu000001");
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert_eq!(v["model"], "claude-sonnet-4-5");
    assert_eq!(
        v["content"],
        json!([{"type": "text", "text": "You said: hi there"}])
    );
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(v["stop_sequence"], Value::Null);
    // "hi there": 2 pieces + 4; "You said: hi there": 4 pieces.
    assert_eq!(v["usage"]["input_tokens"], 6);
    assert_eq!(v["usage"]["output_tokens"], 4);
    assert_eq!(v["usage"]["cache_creation_input_tokens"], 0);
    assert_eq!(v["usage"]["cache_read_input_tokens"], 0);
}

#[tokio::test]
async fn stop_sequences_and_max_tokens_set_the_stop_reason() {
    let emu = emulator().await;
    let mut body = hello();
    body["stop_sequences"] = json!(["there"]);
    let v = post(&emu, "/v1/messages", &body).await.json();
    assert_eq!(v["content"][0]["text"], "You said: hi ");
    assert_eq!(
        (v["stop_reason"].clone(), v["stop_sequence"].clone()),
        (json!("stop_sequence"), json!("there"))
    );
    let mut body = hello();
    body["max_tokens"] = json!(2);
    let v = post(&emu, "/v1/messages", &body).await.json();
    assert_eq!(v["content"][0]["text"], "You said: ");
    assert_eq!(v["stop_reason"], "max_tokens");
    assert_eq!(v["usage"]["output_tokens"], 2);
}

#[tokio::test]
async fn auth_and_version_headers_are_checked() {
    let emu = emulator().await;
    let body = hello();
    let r = post_with(
        &emu,
        "/v1/messages",
        &[("anthropic-version", "2023-06-01")],
        &body,
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.json()["error"],
        json!({"type": "authentication_error", "message": "x-api-key header is required"})
    );
    assert_eq!(r.json()["type"], "error");
    let r = post_with(
        &emu,
        "/v1/messages",
        &[
            ("x-api-key", "sk-ant-wrong"),
            ("anthropic-version", "2023-06-01"),
        ],
        &body,
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["message"], "invalid x-api-key");
    // The official SDK sends an API key as a bearer token.
    let bearer = format!("Bearer {KEY}");
    let r = post_with(
        &emu,
        "/v1/messages",
        &[
            ("authorization", &bearer),
            ("anthropic-version", "2023-06-01"),
        ],
        &body,
    )
    .await;
    assert_eq!(r.status, 200);
    let r = post_with(
        &emu,
        "/v1/messages",
        &[
            ("authorization", "Bearer sk-ant-wrong"),
            ("anthropic-version", "2023-06-01"),
        ],
        &body,
    )
    .await;
    assert_eq!(r.status, 401);
    let r = post_with(&emu, "/v1/messages", &[("x-api-key", KEY)], &body).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["type"], "invalid_request_error");
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("anthropic-version"));
    let r = post_with(
        &emu,
        "/v1/messages",
        &[("x-api-key", KEY), ("anthropic-version", "latest")],
        &body,
    )
    .await;
    assert_eq!(r.status, 400);
}

/// Each body is refused with 400 `invalid_request_error` and a message starting with `prefix`.
async fn refused(emu: &Emulator, body: Value, prefix: &str) {
    let r = post(emu, "/v1/messages", &body).await;
    assert_eq!(r.status, 400, "{body}: {}", r.text());
    let e = &r.json()["error"];
    assert_eq!(e["type"], "invalid_request_error");
    let message = e["message"].as_str().unwrap();
    assert!(
        message.starts_with(prefix),
        "{body}: `{message}` does not start with `{prefix}`"
    );
}

#[tokio::test]
async fn invalid_requests_name_the_field() {
    let emu = emulator().await;
    let user = json!([{"role": "user", "content": "hi"}]);
    refused(
        &emu,
        json!({"max_tokens": 5, "messages": user}),
        "model: Field required",
    )
    .await;
    refused(
        &emu,
        json!({"model": "m", "messages": user}),
        "max_tokens: Field required",
    )
    .await;
    refused(
        &emu,
        json!({"model": "m", "max_tokens": 0, "messages": user}),
        "max_tokens:",
    )
    .await;
    refused(
        &emu,
        json!({"model": "m", "max_tokens": 5}),
        "messages: Field required",
    )
    .await;
    refused(
        &emu,
        json!({"model": "m", "max_tokens": 5, "messages": []}),
        "messages:",
    )
    .await;
    refused(
        &emu,
        json!({"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}),
        "messages.0.role:",
    )
    .await;
    refused(
        &emu,
        json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": ""}]}),
        "messages.0:",
    )
    .await;
    refused(
        &emu,
        json!({"model": "m", "max_tokens": 5,
               "messages": [{"role": "user", "content": [{"type": "text", "text": ""}]}]}),
        "messages.0.content.0: text content blocks must be non-empty",
    )
    .await;
    refused(
        &emu,
        json!({"model": "m", "max_tokens": 5,
               "messages": [{"role": "user", "content": [{"type": "video"}]}]}),
        "messages.0.content.0: Input tag 'video'",
    )
    .await;
    refused(
        &emu,
        json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/bmp", "data": "AAAA"}}]}]}),
        "messages.0.content.0.source.base64.media_type:",
    )
    .await;
    // tool_result blocks must answer the previous message's tool_use blocks, all of them.
    refused(
        &emu,
        json!({"model": "m", "max_tokens": 5, "messages": [
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_x", "content": "r"}]}]}),
        "messages.0.content.0: unexpected `tool_use_id`",
    )
    .await;
    refused(
        &emu,
        json!({"model": "m", "max_tokens": 5, "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {}},
                {"type": "tool_use", "id": "toolu_b", "name": "get_weather", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_a", "content": "r"}]}]}),
        "messages.2: `tool_use` ids were found without `tool_result` blocks immediately after: toolu_b",
    )
    .await;
    refused(
        &emu,
        json!({"model": "m", "max_tokens": 5, "messages": [
            {"role": "user", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]}]}),
        "messages.0.content.0: `tool_use` blocks can only be in `assistant` messages",
    )
    .await;
    refused(
        &emu,
        json!({"model": "m", "max_tokens": 5, "messages": user,
               "tools": [{"name": "bad name", "input_schema": {"type": "object"}}]}),
        "tools.0.name:",
    )
    .await;
    refused(
        &emu,
        json!({"model": "m", "max_tokens": 5, "messages": user, "tools": [{"name": "f"}]}),
        "tools.0.input_schema: Field required",
    )
    .await;
    refused(
        &emu,
        json!({"model": "m", "max_tokens": 5, "messages": user, "tool_choice": {"type": "any"}}),
        "tool_choice may only be specified while providing tools",
    )
    .await;
    refused(
        &emu,
        json!({"model": "m", "max_tokens": 5, "messages": user, "tools": [weather_tool()],
               "tool_choice": {"type": "tool", "name": "nope"}}),
        "tool_choice.tool.name:",
    )
    .await;
    refused(
        &emu,
        json!({"model": "m", "max_tokens": 5, "messages": user, "temperature": 1.5}),
        "temperature:",
    )
    .await;
    refused(
        &emu,
        json!({"model": "m", "max_tokens": 2000, "messages": user,
               "thinking": {"type": "enabled", "budget_tokens": 512}}),
        "thinking.enabled.budget_tokens:",
    )
    .await;
    refused(
        &emu,
        json!({"model": "m", "max_tokens": 1024, "messages": user,
               "thinking": {"type": "enabled", "budget_tokens": 1024}}),
        "`max_tokens` must be greater than `thinking.budget_tokens`",
    )
    .await;
    refused(
        &emu,
        json!({"model": "m", "max_tokens": 2000, "messages": user, "temperature": 0.5,
               "thinking": {"type": "enabled", "budget_tokens": 1024}}),
        "`temperature` may only be set to 1",
    )
    .await;
    refused(
        &emu,
        json!({"model": "m", "max_tokens": 2000, "messages": user, "tools": [weather_tool()],
               "tool_choice": {"type": "any"}, "thinking": {"type": "enabled", "budget_tokens": 1024}}),
        "Thinking may not be enabled when tool_choice forces tool use",
    )
    .await;
    let five = (0..5)
        .map(|i| json!({"type": "text", "text": format!("part {i}"), "cache_control": {"type": "ephemeral"}}))
        .collect::<Vec<_>>();
    refused(
        &emu,
        json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": five}]}),
        "A maximum of 4 blocks with cache_control may be provided. Found 5.",
    )
    .await;
    let r = post(&emu, "/v1/messages", &json!("not an object")).await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn cache_control_reads_half_the_cached_prefix_and_writes_the_rest() {
    let emu = emulator().await;
    // system "You are terse." (3 pieces + 4 = 7) with a breakpoint; then "hi there" (6).
    let body = json!({"model": "m", "max_tokens": 64,
        "system": [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "hi there"}]});
    let u = post(&emu, "/v1/messages", &body).await.json()["usage"].clone();
    assert_eq!(u["cache_read_input_tokens"], 3);
    assert_eq!(u["cache_creation_input_tokens"], 4);
    assert_eq!(u["input_tokens"], 6);
    assert_eq!(u["cache_creation"]["ephemeral_5m_input_tokens"], 4);
    // A 1 h breakpoint on the user message caches the whole prompt (13 tokens).
    let body = json!({"model": "m", "max_tokens": 64, "system": "You are terse.",
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "hi there", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]}]});
    let u = post(&emu, "/v1/messages", &body).await.json()["usage"].clone();
    assert_eq!(
        (
            u["input_tokens"].clone(),
            u["cache_read_input_tokens"].clone(),
            u["cache_creation_input_tokens"].clone()
        ),
        (json!(0), json!(6), json!(7))
    );
    assert_eq!(u["cache_creation"]["ephemeral_1h_input_tokens"], 7);
    // A top-level cache_control marks the end of the last message.
    let mut top = body.clone();
    top["messages"] = json!([{"role": "user", "content": "hi there"}]);
    top["cache_control"] = json!({"type": "ephemeral"});
    let u = post(&emu, "/v1/messages", &top).await.json()["usage"].clone();
    assert_eq!(u["cache_read_input_tokens"], 6);
    assert_eq!(u["cache_creation"]["ephemeral_5m_input_tokens"], 7);
    top["cache_control"] = json!({"type": "persistent"});
    assert_eq!(post(&emu, "/v1/messages", &top).await.status, 400);
    // count_tokens counts the whole prompt, cached or not.
    let mut count = body.clone();
    count.as_object_mut().unwrap().remove("max_tokens");
    let r = post(&emu, "/v1/messages/count_tokens", &count).await;
    assert_eq!(r.json(), json!({"input_tokens": 13}));
}

#[tokio::test]
async fn tool_use_streams_input_json_deltas_that_join_to_the_input() {
    let emu = emulator().await;
    let body = json!({"model": "m", "max_tokens": 256, "stream": true, "tools": [weather_tool()],
                      "messages": [{"role": "user", "content": "Paris"}]});
    let r = post(&emu, "/v1/messages", &body).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type, "text/event-stream");
    let evs = events(r.text());
    let names: Vec<&str> = evs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names[..3], ["message_start", "content_block_start", "ping"]);
    assert_eq!(
        names[names.len() - 3..],
        ["content_block_stop", "message_delta", "message_stop"]
    );
    for (name, data) in &evs {
        assert_eq!(data["type"], name.as_str());
    }
    let start = &evs[1].1["content_block"];
    assert_eq!(start["type"], "tool_use");
    assert_eq!(start["name"], "get_weather");
    assert_eq!(start["id"], "toolu_emu000001_0");
    let deltas: Vec<&str> = evs
        .iter()
        .filter(|(n, _)| n == "content_block_delta")
        .map(|(_, d)| {
            assert_eq!(d["delta"]["type"], "input_json_delta");
            d["delta"]["partial_json"].as_str().unwrap()
        })
        .collect();
    assert!(deltas.len() > 1, "the input arrives in several deltas");
    let input: Value = serde_json::from_str(&deltas.concat()).unwrap();
    assert_eq!(input, json!({"city": "Paris"}));
    let delta = &evs[evs.len() - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
    // One call + its argument fragments.
    assert_eq!(delta["usage"]["output_tokens"], 1 + deltas.len());
    assert_eq!(evs[0].1["message"]["usage"]["input_tokens"], 5);
}

#[tokio::test]
async fn thinking_comes_first_with_a_signature_that_must_come_back_unchanged() {
    let emu = emulator().await;
    let body = json!({"model": "m", "max_tokens": 2048, "stream": true,
                      "thinking": {"type": "enabled", "budget_tokens": 1024},
                      "messages": [{"role": "user", "content": "hi there"}]});
    let evs = events(post(&emu, "/v1/messages", &body).await.text());
    let blocks: Vec<String> = evs
        .iter()
        .filter(|(n, _)| n == "content_block_start")
        .map(|(_, d)| d["content_block"]["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(blocks, ["thinking", "text"]);
    let kinds: Vec<&str> = evs
        .iter()
        .filter(|(n, d)| n == "content_block_delta" && d["index"] == 0)
        .map(|(_, d)| d["delta"]["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.last(), Some(&"signature_delta"));
    assert!(kinds[..kinds.len() - 1]
        .iter()
        .all(|k| *k == "thinking_delta"));

    let mut whole = body.clone();
    whole["stream"] = json!(false);
    let v = post(&emu, "/v1/messages", &whole).await.json();
    let thinking = v["content"][0].clone();
    assert_eq!(thinking["thinking"], "Considering: hi there");
    // "Considering: hi there" (3 pieces) + "You said: hi there" (4).
    assert_eq!(v["usage"]["output_tokens"], 7);
    let next = |block: Value| {
        json!({"model": "m", "max_tokens": 2048, "thinking": {"type": "enabled", "budget_tokens": 1024},
               "messages": [{"role": "user", "content": "hi there"},
                            {"role": "assistant", "content": [block, v["content"][1].clone()]},
                            {"role": "user", "content": "again"}]})
    };
    assert_eq!(
        post(&emu, "/v1/messages", &next(thinking.clone()))
            .await
            .status,
        200
    );
    let mut forged = thinking;
    forged["thinking"] = json!("Something else");
    refused(
        &emu,
        next(forged),
        "messages.1.content.0: Invalid `signature` in `thinking` block",
    )
    .await;
}

#[tokio::test]
async fn tool_results_come_back_as_the_reply() {
    let emu = emulator().await;
    let body = json!({"model": "m", "max_tokens": 64, "tools": [weather_tool()],
        "messages": [
            {"role": "user", "content": "Paris"},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1",
                 "content": [{"type": "text", "text": "sunny"}]}]}]});
    let v = post(&emu, "/v1/messages", &body).await.json();
    assert_eq!(
        v["content"],
        json!([{"type": "text", "text": "Tool results: sunny"}])
    );
    assert_eq!(v["stop_reason"], "end_turn");
}

#[tokio::test]
async fn models_list_and_lookup() {
    let emu = emulator().await;
    let url = format!("{}/v1/models", emu.base_url());
    let headers = [("x-api-key", KEY), ("anthropic-version", "2023-06-01")];
    let v = send("GET", &url, &headers, "").await.json();
    assert_eq!(v["has_more"], false);
    let first = v["data"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(v["first_id"], first.as_str());
    assert_eq!(v["data"][0]["type"], "model");
    let one = send("GET", &format!("{url}/{first}"), &headers, "").await;
    assert_eq!(one.json()["id"], first.as_str());
    let missing = send("GET", &format!("{url}/claude-0"), &headers, "").await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["error"]["type"], "not_found_error");
    let other = send(
        "GET",
        &format!("{}/v1/complete", emu.base_url()),
        &headers,
        "",
    )
    .await;
    assert_eq!(other.status, 404);
}

#[tokio::test]
async fn faults_answer_in_the_anthropic_envelope() {
    let emu = emulator().await;
    let status = |status: u16, retry_after: Option<&str>| {
        Fault::once(FaultKind::Status {
            status,
            body: None,
            retry_after: retry_after.map(str::to_owned),
        })
    };
    emu.push_fault(status(429, None));
    let r = post(&emu, "/v1/messages", &hello()).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["error"]["type"], "rate_limit_error");
    assert_eq!(r.header("retry-after"), Some("1"));
    emu.push_fault(status(429, Some("7")));
    let r = post(&emu, "/v1/messages", &hello()).await;
    let retry: Vec<_> = r.headers.get_all("retry-after").iter().collect();
    assert_eq!(retry, ["7"], "the fault's Retry-After replaces the default");
    emu.push_fault(status(529, None));
    let r = post(&emu, "/v1/messages", &hello()).await;
    assert_eq!(
        (r.status, r.json()["error"]["type"].clone()),
        (529, json!("overloaded_error"))
    );
    emu.push_fault(status(500, None));
    assert_eq!(
        post(&emu, "/v1/messages", &hello()).await.json()["error"]["type"],
        "api_error"
    );
    emu.push_fault(Fault::once(FaultKind::QuotaExhausted));
    let r = post(&emu, "/v1/messages", &hello()).await;
    assert_eq!(r.status, 400);
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("credit balance is too low"));
    emu.push_fault(Fault::once(FaultKind::ErrorBody200));
    let r = post(&emu, "/v1/messages", &hello()).await;
    assert_eq!((r.status, r.json()["type"].clone()), (200, json!("error")));
    emu.push_fault(Fault::once(FaultKind::ErrorEvent { after: 0 }));
    let r = post(&emu, "/v1/messages", &hello()).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["error"]["message"],
        "Output blocked by content filtering policy"
    );

    let mut stream = hello();
    stream["stream"] = json!(true);
    emu.push_fault(Fault::once(FaultKind::ErrorEvent { after: 3 }));
    let evs = events(post(&emu, "/v1/messages", &stream).await.text());
    assert_eq!(evs.len(), 4);
    let (name, data) = evs.last().unwrap();
    assert_eq!(name, "error");
    assert_eq!(data["error"]["type"], "overloaded_error");
    emu.push_fault(Fault::once(FaultKind::MalformedFrame { after: 2 }));
    let text = post(&emu, "/v1/messages", &stream).await.text().to_owned();
    let bad = frames(&text)
        .into_iter()
        .filter(|f| serde_json::from_str::<Value>(f.data().unwrap_or("")).is_err())
        .count();
    assert_eq!(bad, 1);
    let statuses: Vec<u16> = emu.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [429, 429, 529, 500, 400, 200, 400, 200, 200]);
}

#[tokio::test]
async fn the_official_sdk_drives_the_emulator() {
    let emu = emulator().await;
    let cases = [
        "create",
        "stop_sequence",
        "stream_text",
        "stream_tools",
        "stream_thinking",
        "tool_round_trip",
        "count_tokens",
        "models",
        "auth_error",
        "invalid_request",
    ];
    let Some(res) = python_sdk::run("anthropic_cases.py", &cases, &emu.base_url(), KEY).await
    else {
        return;
    };
    let create = res.get("create");
    assert_eq!(create["type"], "Message");
    assert_eq!(
        create["content"],
        json!([{"type": "text", "text": "You said: hi there"}])
    );
    assert_eq!(create["stop_reason"], "end_turn");
    assert_eq!(create["request_id"], create["sdk_request_id"]);
    assert!(create["request_id"]
        .as_str()
        .unwrap()
        .starts_with("req_emu"));
    let u = &create["usage"];
    assert!(u["cache_read_input_tokens"].as_u64().unwrap() > 0);
    assert!(u["cache_creation_input_tokens"].as_u64().unwrap() > 0);

    let stop = res.get("stop_sequence");
    // The top-level cache_control (1 h) cached the whole prompt: "hi there friend" (7).
    assert_eq!(stop["usage"]["input_tokens"], 0);
    assert_eq!(stop["usage"]["cache_read_input_tokens"], 3);
    assert_eq!(stop["usage"]["cache_creation_input_tokens"], 4);
    assert_eq!(
        (stop["stop_reason"].clone(), stop["stop_sequence"].clone()),
        (json!("stop_sequence"), json!("there"))
    );

    let text = res.get("stream_text");
    assert_eq!(text["text"], "You said: stream me please");
    assert_eq!(
        text["final"]["content"][0]["text"],
        "You said: stream me please"
    );
    assert_eq!(text["final"]["usage"]["output_tokens"], 5);
    let names: Vec<&str> = text["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(names.last(), Some(&"message_stop"));

    let tools = res.get("stream_tools");
    assert!(tools["json_deltas"].as_array().unwrap().len() > 1);
    let call = &tools["final"]["content"][0];
    assert_eq!(call["type"], "tool_use");
    assert_eq!(call["input"], json!({"city": "Paris", "unit": "c"}));
    assert_eq!(tools["final"]["stop_reason"], "tool_use");

    let thinking = res.get("stream_thinking");
    assert!(!thinking["thinking_deltas"].as_array().unwrap().is_empty());
    assert_eq!(thinking["signatures"].as_array().unwrap().len(), 1);
    let blocks = &thinking["final"]["content"];
    assert_eq!(blocks[0]["type"], "thinking");
    assert_eq!(blocks[0]["thinking"], "Considering: think about this");
    assert_eq!(blocks[0]["signature"], thinking["signatures"][0]);
    assert_eq!(blocks[1]["type"], "text");

    let round = res.get("tool_round_trip");
    assert_eq!(round["first"]["stop_reason"], "tool_use");
    assert_eq!(
        round["second"]["content"][1]["text"],
        "Tool results: sunny, 21 C"
    );
    assert_eq!(round["bad_signature"]["status"], 400);

    let count = res.get("count_tokens");
    assert_eq!(count["type"], "MessageTokensCount");
    // system "You are terse." 7 + "hi there" 6.
    assert_eq!(count["input_tokens"], 13);
    assert!(res.get("models")["ids"].as_array().unwrap().len() >= 3);

    let auth = res.get("auth_error");
    assert_eq!(auth["raised"], "AuthenticationError");
    assert_eq!(auth["status"], 401);
    assert_eq!(auth["type"], "authentication_error");
    assert!(auth["request_id"].as_str().unwrap().starts_with("req_emu"));
    let invalid = res.get("invalid_request");
    assert_eq!(invalid["raised"], "BadRequestError");

    // What the SDK sent: its own anthropic-version, and the API key as a bearer token.
    let reqs = emu.requests();
    let sent = reqs.iter().find(|r| r.path == "/v1/messages").unwrap();
    assert!(sent.header("anthropic-version").is_some());
    assert_eq!(
        sent.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    let counted = reqs
        .iter()
        .find(|r| r.path == "/v1/messages/count_tokens")
        .unwrap();
    assert!(counted.json().unwrap().get("max_tokens").is_none());
}

#[tokio::test]
async fn dashscope_serves_the_messages_api_under_apps_anthropic() {
    let emu = Emulator::start(EmulatorConfig::new(Vendor::DashScope))
        .await
        .unwrap();
    let base = format!("{}/apps/anthropic", emu.root_url());
    assert_eq!(
        Vendor::for_provider("dashscope-anthropic"),
        Some(Vendor::DashScope)
    );
    assert_eq!(emu.base_url_for("dashscope-anthropic"), Some(base.clone()));
    let env = emu.env_for("dashscope-anthropic").unwrap();
    assert!(env.contains(&("DASHSCOPE_ANTHROPIC_BASE_URL".to_owned(), base.clone())));
    assert!(env.contains(&(
        "DASHSCOPE_API_KEY".to_owned(),
        "sk-emulator-dashscope".to_owned()
    )));
    let url = format!("{base}/v1/messages");
    let body = hello().to_string();
    let bearer = "Bearer sk-emulator-dashscope";
    for auth in [
        ("x-api-key", "sk-emulator-dashscope"),
        ("authorization", bearer),
    ] {
        let r = send(
            "POST",
            &url,
            &[auth, ("anthropic-version", "2023-06-01")],
            &body,
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["type"], "message");
        assert_eq!(r.json()["content"][0]["text"], "You said: hi there");
    }
    let r = send(
        "POST",
        &url,
        &[("x-api-key", KEY), ("anthropic-version", "2023-06-01")],
        &body,
    )
    .await;
    assert_eq!(r.status, 401, "Anthropic's own key is not a DashScope key");
    assert_eq!(r.json()["error"]["type"], "authentication_error");
    // The native protocol is unchanged next to it.
    let native = common::post(
        &format!(
            "{}/services/aigc/text-generation/generation",
            emu.base_url()
        ),
        common::DASHSCOPE_KEY,
        &json!({"model": "qwen-plus", "input": {"prompt": "hi"}}),
    )
    .await;
    assert_eq!(native.json()["output"]["text"], "You said: hi");
}
