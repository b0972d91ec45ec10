//! The legacy `POST /v1/completions` over HTTP, emulators behind: the prompt as one user
//! message (DashScope's single-turn `input.prompt`), `max_tokens` (default 16), streams of
//! `text_completion` chunks, refusals naming the field, and the usage records.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use llmux_emulator::Vendor;
use serde_json::{json, Value};

const COMPLETIONS: &str = "/v1/completions";

async fn gateway() -> (Harness, llmux_emulator::Emulator, llmux_emulator::Emulator) {
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

#[tokio::test]
async fn a_prompt_is_one_user_message_and_max_tokens_caps_the_text() {
    let (gw, oa, ds) = gateway().await;
    for (model, cap) in [("gpt-4o-mini", Some(3)), ("qwen-plus", None)] {
        let mut body = json!({"model": model, "prompt": "hi there", "stop": ["zzz"]});
        if let Some(n) = cap {
            body["max_tokens"] = json!(n);
        }
        let resp = gw.post(COMPLETIONS).json(&body).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let rid = resp.headers()["x-llmux-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["id"], format!("cmpl-{}", rid.replace('-', "")));
        assert_eq!(v["object"], "text_completion");
        assert_eq!(v["model"], model);
        let (text, finish, out) = match cap {
            Some(_) => ("You said: hi ", "length", 3),
            None => ("You said: hi there", "stop", 4),
        };
        assert_eq!(v["choices"][0]["text"], text, "{v}");
        assert_eq!(v["choices"][0]["finish_reason"], finish);
        assert!(v["choices"][0]["logprobs"].is_null());
        assert_eq!(v["usage"]["prompt_tokens"], 6);
        assert_eq!(v["usage"]["completion_tokens"], out);
    }
    let sent = oa.requests()[0].json().unwrap();
    assert_eq!(
        sent["messages"],
        json!([{"role": "user", "content": "hi there"}])
    );
    assert_eq!(
        (sent["max_tokens"].as_u64(), &sent["stop"]),
        (Some(3), &json!(["zzz"]))
    );
    let sent = ds.requests()[0].json().unwrap();
    assert_eq!(sent["input"], json!({"prompt": "hi there"}), "{sent}");
    assert_eq!(
        sent["parameters"]["max_tokens"], 16,
        "the legacy default: {sent}"
    );
    let recs = records(&gw, 2).await;
    let mut got: Vec<(u64, u64)> = recs
        .iter()
        .map(|r| (r.input_tokens, r.output_tokens))
        .collect();
    got.sort();
    assert_eq!(got, [(6, 3), (6, 4)]);
}

#[tokio::test]
async fn a_stream_is_text_completion_chunks_then_usage_then_done() {
    let (gw, _oa, _ds) = gateway().await;
    for model in ["gpt-4o-mini", "qwen-plus"] {
        let body = json!({"model": model, "prompt": ["hi there"], "stream": true,
            "stream_options": {"include_usage": true}});
        let resp = gw.post(COMPLETIONS).json(&body).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let (chunks, done) = openai_chunks(&resp.text().await.unwrap());
        assert!(done, "{model}");
        assert!(chunks.iter().all(|c| c["object"] == "text_completion"));
        let text: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["text"].as_str())
            .collect();
        assert_eq!(text, "You said: hi there", "{model}");
        let n = chunks.len();
        assert_eq!(chunks[n - 2]["choices"][0]["finish_reason"], "stop");
        let last = &chunks[n - 1];
        assert_eq!(last["choices"], json!([]));
        assert_eq!(last["usage"]["prompt_tokens"], 6);
        assert_eq!(last["usage"]["completion_tokens"], 4);
    }
}

#[tokio::test]
async fn what_cannot_be_done_honestly_is_a_400_naming_the_field() {
    let (gw, oa, _ds) = gateway().await;
    for (extra, param) in [
        (json!({"prompt": ["a", "b"]}), "prompt"),
        (json!({"prompt": [1, 2]}), "prompt"),
        (json!({"echo": true}), "echo"),
        (json!({"suffix": "x"}), "suffix"),
        (json!({"logprobs": 2}), "logprobs"),
        (json!({"best_of": 3}), "best_of"),
        (json!({"n": 2}), "n"),
        (json!({"logit_bias": {"1": 5}}), "logit_bias"),
    ] {
        let mut body = json!({"model": "gpt-4o-mini", "prompt": "x"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let resp = gw.post(COMPLETIONS).json(&body).send().await.unwrap();
        assert_eq!(resp.status(), 400, "{extra}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["param"], param, "{v}");
        assert_eq!(v["error"]["type"], "invalid_request_error");
    }
    assert!(oa.requests().is_empty());
}
