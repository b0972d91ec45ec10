//! DashScope-native ingress end to end: text and message formats, `X-DashScope-SSE` streams
//! (incremental and cumulative), embeddings, and an OpenAI upstream behind it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::{json, Value};

const GEN: &str = "/api/v1/services/aigc/text-generation/generation";
const EMB: &str = "/api/v1/services/embeddings/text-embedding/text-embedding";

/// DashScope frames: `(id, event, status comment, data)`.
fn frames(body: &str) -> Vec<(u64, String, String, Value)> {
    sse_events(body)
        .iter()
        .map(|ev| {
            let mut id = 0;
            let mut event = String::new();
            let mut status = String::new();
            let mut data = Value::Null;
            for line in ev.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.parse().unwrap();
                } else if let Some(v) = line.strip_prefix("event:") {
                    event = v.to_owned();
                } else if let Some(v) = line.strip_prefix(":HTTP_STATUS/") {
                    status = v.to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    assert!(
                        !v.starts_with(' '),
                        "DashScope writes data: without a space"
                    );
                    data = serde_json::from_str(v).unwrap();
                } else {
                    panic!("unexpected line {line:?}");
                }
            }
            (id, event, status, data)
        })
        .collect()
}

async fn stream(
    gw: &Harness,
    body: Value,
) -> (
    reqwest::header::HeaderMap,
    Vec<(u64, String, String, Value)>,
) {
    let resp = gw
        .post(GEN)
        .header("X-DashScope-SSE", "enable")
        .header("Accept", "text/event-stream")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let h = resp.headers().clone();
    let text = resp.text().await.unwrap();
    assert!(!text.contains("[DONE]"));
    (h, frames(&text))
}

#[tokio::test]
async fn non_stream_text_and_message_formats() {
    let (gw, _oa, _ds) = standard().await;
    for model in ["qwen-plus", "gpt-4o-mini"] {
        let resp = gw
            .post(GEN)
            .json(&json!({"model":model,"input":{"prompt":"hi there"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let rid = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["output"]["text"], "You said: hi there", "{model}");
        assert_eq!(body["output"]["finish_reason"], "stop");
        assert_eq!(body["request_id"], rid);
        let u = &body["usage"];
        assert!(u["input_tokens"].as_u64().unwrap() > 0);
        assert!(u["output_tokens"].as_u64().unwrap() > 0);

        let body: Value = gw
            .post(GEN)
            .json(&json!({"model":model,
                "input":{"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}]},
                "parameters":{"result_format":"message"}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let c = &body["output"]["choices"][0];
        assert_eq!(c["message"]["role"], "assistant");
        assert_eq!(c["message"]["content"], "You said: hi");
        assert_eq!(c["finish_reason"], "stop");
    }
}

#[tokio::test]
async fn incremental_stream_frames_carry_new_pieces() {
    let (gw, _oa, _ds) = standard().await;
    for model in ["qwen-plus", "gpt-4o-mini"] {
        let (h, f) = stream(
            &gw,
            json!({"model":model,"input":{"prompt":"hi there"},"parameters":{"incremental_output":true}}),
        )
        .await;
        assert!(h["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"));
        let mut text = String::new();
        for (i, (id, event, status, data)) in f.iter().enumerate() {
            assert_eq!(*id, i as u64 + 1);
            assert_eq!(event, "result");
            assert_eq!(status, "200");
            text.push_str(data["output"]["text"].as_str().unwrap());
            let finish = data["output"]["finish_reason"].as_str().unwrap();
            if i + 1 < f.len() {
                assert_eq!(finish, "null");
            } else {
                assert_eq!(finish, "stop");
                assert!(data["usage"]["output_tokens"].as_u64().unwrap() > 0);
            }
            assert!(data["request_id"].is_string());
        }
        assert_eq!(text, "You said: hi there", "{model}");
    }
}

#[tokio::test]
async fn cumulative_stream_frames_repeat_the_text_so_far() {
    let (gw, _oa, _ds) = standard().await;
    let (_, f) = stream(
        &gw,
        json!({"model":"qwen-plus","input":{"messages":[{"role":"user","content":"one two three"}]},
               "parameters":{"result_format":"message"}}),
    )
    .await;
    assert!(f.len() >= 3);
    let texts: Vec<String> = f
        .iter()
        .map(|x| {
            x.3["output"]["choices"][0]["message"]["content"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    for w in texts.windows(2) {
        assert!(w[1].starts_with(&w[0]), "{texts:?}");
    }
    assert_eq!(texts.last().unwrap(), "You said: one two three");
    assert_eq!(
        f.last().unwrap().3["output"]["choices"][0]["finish_reason"],
        "stop"
    );
    assert_eq!(f[0].3["output"]["choices"][0]["finish_reason"], "null");
}

#[tokio::test]
async fn streamed_tool_calls_in_message_format() {
    let (gw, _oa, _ds) = standard().await;
    let tools = json!([{"type":"function","function":{"name":"get_weather",
        "parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}]);
    let (_, f) = stream(
        &gw,
        json!({"model":"gpt-4o-mini","input":{"messages":[{"role":"user","content":"Paris"}]},
               "parameters":{"result_format":"message","incremental_output":true,"tools":tools}}),
    )
    .await;
    let mut args = String::new();
    let mut name = None;
    for (_, _, _, d) in &f {
        if let Some(tc) = d["output"]["choices"][0]["message"]["tool_calls"].get(0) {
            if let Some(n) = tc["function"]["name"].as_str() {
                name = Some(n.to_owned());
            }
            args.push_str(tc["function"]["arguments"].as_str().unwrap());
        }
    }
    assert_eq!(name.as_deref(), Some("get_weather"));
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap()["city"],
        "Paris"
    );
    assert_eq!(
        f.last().unwrap().3["output"]["choices"][0]["finish_reason"],
        "tool_calls"
    );
}

#[tokio::test]
async fn native_embeddings() {
    let (gw, _oa, _ds) = standard().await;
    for model in ["text-embedding-v3", "text-embedding-3-small"] {
        let body: Value = gw
            .post(EMB)
            .json(&json!({"model":model,"input":{"texts":["hello","你好"]},"parameters":{"text_type":"document"}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let e = body["output"]["embeddings"].as_array().unwrap();
        assert_eq!(e.len(), 2, "{model}");
        assert_eq!(e[1]["text_index"], 1);
        assert!(e[0]["embedding"].as_array().unwrap().len() >= 1024);
        assert!(body["usage"]["total_tokens"].as_u64().unwrap() > 0);
        assert!(body["request_id"].is_string());
    }
}

#[tokio::test]
async fn dashscope_errors_have_code_message_and_request_id() {
    let (gw, _oa, _ds) = standard().await;
    let resp = gw
        .post(GEN)
        .json(&json!({"model":"qwen-plus","input":{}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let rid = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "InvalidParameter");
    assert!(body["message"].as_str().unwrap().contains("prompt"));
    assert_eq!(body["request_id"], rid);
}

#[tokio::test]
async fn a_mid_stream_error_is_an_error_event() {
    let (gw, _oa, ds) = standard().await;
    ds.push_fault(llmux_emulator::Fault::once(
        llmux_emulator::FaultKind::ErrorEvent { after: 1 },
    ));
    let (_, f) = stream(
        &gw,
        json!({"model":"qwen-plus","input":{"prompt":"one two three four"},"parameters":{"incremental_output":true}}),
    )
    .await;
    let (_, event, status, data) = f.last().unwrap();
    assert_eq!(event, "error");
    assert_ne!(status, "200");
    assert!(
        data["code"].is_string() && data["message"].is_string() && data["request_id"].is_string()
    );
}
