//! The Anthropic Messages ingress over HTTP, emulators behind: what reaches the upstream, the
//! exact stream event sequence, tool streaming, the usage records, count_tokens, and errors in
//! Anthropic's envelope (before routing, from the upstream, and mid-stream).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use llmux_emulator::{Emulator, Fault, FaultKind, Vendor};
use serde_json::{json, Value};

const MESSAGES: &str = "/v1/messages";

/// A gateway recording usage, with the OpenAI emulator (`gpt-4o-mini`) and the DashScope
/// native emulator (`qwen-plus`) behind it.
async fn gateway() -> (Harness, Emulator, Emulator) {
    let oa = emulator(Vendor::OpenAi).await;
    let ds = emulator(Vendor::DashScope).await;
    let gw = start_with_store(&format!(
        "{}{}",
        channel("oa", "openai", &oa, "[\"gpt-4o-mini\"]", ""),
        channel("ds", "dashscope", &ds, "[\"qwen-plus\"]", ""),
    ))
    .await;
    (gw, oa, ds)
}

/// `POST path` as Anthropic's SDKs send it: the key in `x-api-key`, a version header.
fn anthropic(gw: &Harness, path: &str, body: &Value) -> reqwest::RequestBuilder {
    gw.http
        .post(format!("{}{path}", gw.url))
        .header("x-api-key", KEY)
        .header("anthropic-version", "2023-06-01")
        .json(body)
}

fn hello(model: &str) -> Value {
    json!({"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": "hi there"}]})
}

/// (event name, data) of each SSE frame.
fn events(body: &str) -> Vec<(String, Value)> {
    sse_events(body)
        .iter()
        .map(|e| {
            let name = e
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap_or_else(|| panic!("no event name: {e}"));
            let data: Value = serde_json::from_str(data_of(e).unwrap()).unwrap();
            assert_eq!(
                data["type"], name,
                "the data's type is the event's name: {e}"
            );
            (name.to_owned(), data)
        })
        .collect()
}

#[tokio::test]
async fn the_request_maps_to_the_upstream_and_the_answer_to_a_message() {
    let (gw, oa, _ds) = gateway().await;
    let body = json!({
        "model": "gpt-4o-mini",
        "max_tokens": 50,
        "system": [{"type": "text", "text": "Be brief."}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi there"}]}],
        "stop_sequences": ["STOP"],
        "temperature": 0.3,
        "top_p": 0.9,
        "metadata": {"user_id": "u-42"},
        "tools": [{"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
        "tool_choice": {"type": "none", "disable_parallel_tool_use": true}
    });
    let resp = anthropic(&gw, MESSAGES, &body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let rid = resp.headers()["x-llmux-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(resp.headers()["request-id"], rid.as_str());
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["id"], format!("msg_{}", rid.replace('-', "")));
    assert_eq!(
        v["content"],
        json!([{"type": "text", "text": "You said: hi there"}])
    );
    assert_eq!(v["stop_reason"], "end_turn");
    // 2 prompt messages: (2 + 4) + (2 + 4) pieces; the OpenAI emulator reports 0 cached and 0
    // reasoning tokens, which are mapped as reported.
    assert_eq!(
        v["usage"],
        json!({"input_tokens": 12, "output_tokens": 4,
            "cache_creation_input_tokens": null, "cache_read_input_tokens": 0,
            "output_tokens_details": {"thinking_tokens": 0}})
    );
    let sent = oa.requests()[0].json().unwrap();
    assert_eq!(
        sent["messages"],
        json!([{"role": "system", "content": "Be brief."}, {"role": "user", "content": [{"type": "text", "text": "hi there"}]}])
    );
    assert_eq!(sent["max_tokens"], 50);
    assert_eq!(sent["stop"], json!(["STOP"]));
    assert_eq!(
        (sent["temperature"].as_f64(), sent["top_p"].as_f64()),
        (Some(0.3), Some(0.9))
    );
    assert_eq!(sent["user"], "u-42");
    assert_eq!(sent["tool_choice"], "none");
    assert_eq!(sent["parallel_tool_calls"], false);
    assert_eq!(sent["tools"][0]["function"]["name"], "get_weather");
    let rec = &records(&gw, 1).await[0];
    assert_eq!(rec.request_id, rid);
    assert_eq!(
        (rec.input_tokens, rec.output_tokens, rec.cached_tokens),
        (12, 4, 0)
    );
}

#[tokio::test]
async fn a_stream_is_the_exact_event_sequence_with_the_upstream_usage() {
    let (gw, _oa, _ds) = gateway().await;
    for model in ["gpt-4o-mini", "qwen-plus"] {
        let mut body = hello(model);
        body["stream"] = json!(true);
        let resp = anthropic(&gw, MESSAGES, &body).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert!(resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"));
        let rid = resp.headers()["request-id"].to_str().unwrap().to_owned();
        let evs = events(&resp.text().await.unwrap());
        let names: Vec<&str> = evs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "ping",
                "content_block_delta",
                "content_block_delta",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ],
            "{model}"
        );
        let start = &evs[0].1["message"];
        assert_eq!(start["id"], format!("msg_{}", rid.replace('-', "")));
        assert_eq!(start["model"], model);
        assert_eq!(start["content"], json!([]));
        assert!(start["stop_reason"].is_null());
        assert_eq!(
            evs[1].1["content_block"],
            json!({"type": "text", "text": ""})
        );
        let text: String = evs[3..7]
            .iter()
            .map(|(_, d)| d["delta"]["text"].as_str().unwrap())
            .collect();
        assert_eq!(text, "You said: hi there");
        let delta = &evs[8].1;
        assert_eq!(delta["delta"]["stop_reason"], "end_turn");
        assert_eq!(delta["usage"]["input_tokens"], 6, "{model}: {delta}");
        assert_eq!(delta["usage"]["output_tokens"], 4);
    }
    let recs = records(&gw, 2).await;
    for r in &recs {
        assert_eq!((r.input_tokens, r.output_tokens, r.stream), (6, 4, true));
        assert!(!r.usage_estimated);
    }
}

#[tokio::test]
async fn streamed_tool_calls_are_tool_use_blocks_with_input_json_deltas() {
    let (gw, _oa, _ds) = gateway().await;
    for model in ["gpt-4o-mini", "qwen-plus"] {
        let body = json!({
            "model": model, "max_tokens": 64, "stream": true,
            "messages": [{"role": "user", "content": "Hangzhou"}],
            "tools": [{"name": "get_weather", "input_schema": {"type": "object",
                "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
        });
        let resp = anthropic(&gw, MESSAGES, &body).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let evs = events(&resp.text().await.unwrap());
        let block = evs
            .iter()
            .find(|(n, _)| n == "content_block_start")
            .map(|(_, d)| &d["content_block"])
            .unwrap();
        assert_eq!(block["type"], "tool_use", "{model}");
        assert_eq!(block["name"], "get_weather");
        assert!(!block["id"].as_str().unwrap().is_empty());
        assert_eq!(block["input"], json!({}));
        let input: String = evs
            .iter()
            .filter(|(n, d)| n == "content_block_delta" && d["delta"]["type"] == "input_json_delta")
            .map(|(_, d)| d["delta"]["partial_json"].as_str().unwrap())
            .collect();
        let input: Value = serde_json::from_str(&input).unwrap();
        assert_eq!(input, json!({"city": "Hangzhou"}), "{model}");
        let delta = evs.iter().find(|(n, _)| n == "message_delta").unwrap();
        assert_eq!(delta.1["delta"]["stop_reason"], "tool_use");
        assert_eq!(evs.last().unwrap().0, "message_stop");
    }
}

#[tokio::test]
async fn count_tokens_is_the_estimate_and_calls_no_upstream() {
    let (gw, oa, ds) = gateway().await;
    let body = json!({"model": "qwen-plus", "system": "You are terse.",
        "messages": [{"role": "user", "content": "hi there"}]});
    let resp = gw
        .http
        .post(format!("{}/v1/messages/count_tokens", gw.url))
        .header("x-goog-api-key", KEY)
        .header("anthropic-version", "2023-06-01")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // 4 per message, ASCII / 4: "You are terse." 4, "hi there" 2.
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"input_tokens": 14})
    );
    // The key and the model are checked like any request's.
    let unknown = anthropic(
        &gw,
        "/v1/messages/count_tokens",
        &json!({"model": "nope", "messages": [{"role": "user", "content": "x"}]}),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(unknown.status(), 404);
    let v: Value = unknown.json().await.unwrap();
    assert_eq!(v["error"]["type"], "not_found_error");
    let anonymous = gw
        .http
        .post(format!("{}/v1/messages/count_tokens", gw.url))
        .header("anthropic-version", "2023-06-01")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    assert!(oa.requests().is_empty() && ds.requests().is_empty());
    let n = gw
        .state
        .store
        .as_ref()
        .unwrap()
        .usage_count()
        .await
        .unwrap();
    assert_eq!(n, 0, "count_tokens records no usage");
}

#[tokio::test]
async fn errors_are_in_anthropics_envelope_with_a_request_id() {
    let (gw, oa, _ds) = gateway().await;
    // No anthropic-version header, as the real API refuses.
    let resp = gw
        .http
        .post(format!("{}{MESSAGES}", gw.url))
        .header("x-api-key", KEY)
        .json(&hello("gpt-4o-mini"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let rid = resp.headers()["request-id"].to_str().unwrap().to_owned();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        v,
        json!({"type": "error", "error": {"type": "invalid_request_error",
            "message": "anthropic-version: header is required"}, "request_id": rid})
    );
    // A missing max_tokens, a wrong key, an unknown model, a body over the limit.
    let mut no_max = hello("gpt-4o-mini");
    no_max.as_object_mut().unwrap().remove("max_tokens");
    let v: Value = anthropic(&gw, MESSAGES, &no_max)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["error"]["message"], "max_tokens: Field required");
    let resp = gw
        .http
        .post(format!("{}{MESSAGES}", gw.url))
        .header("x-api-key", "sk-wrong")
        .header("anthropic-version", "2023-06-01")
        .json(&hello("gpt-4o-mini"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"]["type"],
        "authentication_error"
    );
    let resp = anthropic(&gw, MESSAGES, &hello("nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"]["type"],
        "not_found_error"
    );
    let mut big = hello("gpt-4o-mini");
    big["messages"][0]["content"] =
        json!("x".repeat(llmux_gateway::config::DEFAULT_MAX_BODY_BYTES));
    let resp = anthropic(&gw, MESSAGES, &big).send().await.unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"]["type"],
        "request_too_large"
    );
    assert!(oa.requests().is_empty(), "nothing was routed");

    // The upstream's 429: rate_limit_error with its Retry-After.
    oa.push_fault(Fault::once(FaultKind::Status {
        status: 429,
        body: None,
        retry_after: Some("9".into()),
    }));
    let one_try = start(&format!(
        "[resilience.retry]\nmax_attempts = 1\n\n{}",
        channel("oa", "openai", &oa, "[\"gpt-4o-mini\"]", "")
    ))
    .await;
    let resp = anthropic(&one_try, MESSAGES, &hello("gpt-4o-mini"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "9");
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"]["type"],
        "rate_limit_error"
    );
}

#[tokio::test]
async fn a_mid_stream_upstream_error_is_a_final_error_event_and_is_recorded() {
    let (gw, oa, _ds) = gateway().await;
    oa.push_fault(Fault::once(FaultKind::ErrorEvent { after: 2 }));
    let mut body = hello("gpt-4o-mini");
    body["stream"] = json!(true);
    body["messages"][0]["content"] = json!("one two three four five");
    let resp = anthropic(&gw, MESSAGES, &body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let evs = events(&resp.text().await.unwrap());
    assert_eq!(evs[0].0, "message_start");
    let (name, data) = evs.last().unwrap();
    assert_eq!(name, "error");
    assert!(data["error"]["type"].is_string(), "{data}");
    assert!(data["error"]["message"].is_string(), "{data}");
    assert!(!evs.iter().any(|(n, _)| n == "message_stop"));
    let rec = &records(&gw, 1).await[0];
    assert!(rec.error_kind.is_some(), "{rec:?}");
}
