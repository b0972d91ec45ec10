//! Deterministic answers: reply text, stream pieces, usage, stop/max_tokens, tool calls and embeddings.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use base64::Engine as _;
use common::{frames, openai_stream_text, post, post_dashscope_sse, DASHSCOPE_KEY, OPENAI_KEY};
use serde_json::{json, Value};

fn chat_url(emu: &llmux_emulator::Emulator) -> String {
    format!("{}/chat/completions", emu.base_url())
}

fn ds_gen_url(emu: &llmux_emulator::Emulator) -> String {
    format!(
        "{}/services/aigc/text-generation/generation",
        emu.base_url()
    )
}

#[tokio::test]
async fn openai_chat_answers_you_said_with_documented_usage() {
    let emu = common::openai().await;
    let body = json!({"model": "gpt-4o-mini", "messages": [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": [{"type": "text", "text": "hello "}, {"type": "text", "text": "world"}]}]});
    let a = post(&chat_url(&emu), OPENAI_KEY, &body).await;
    let b = post(&chat_url(&emu), OPENAI_KEY, &body).await;
    assert_eq!(a.status, 200);
    let (a, b) = (a.json(), b.json());
    assert_eq!(a["choices"], b["choices"]);
    assert_eq!(a["usage"], b["usage"]);
    assert_eq!(a["object"], "chat.completion");
    assert_eq!(
        a["choices"][0]["message"]["content"],
        "You said: hello world"
    );
    assert_eq!(a["choices"][0]["finish_reason"], "stop");
    // prompt: ("Be terse." 2 pieces + 4) + ("hello world" 2 + 4) = 12; completion: "You ","said: ","hello ","world" = 4.
    assert_eq!(a["usage"]["prompt_tokens"], 12);
    assert_eq!(a["usage"]["completion_tokens"], 4);
    assert_eq!(a["usage"]["total_tokens"], 16);
    assert_eq!(a["id"], "chatcmpl-emu000001");
    assert_eq!(b["id"], "chatcmpl-emu000002");
}

#[tokio::test]
async fn openai_stream_pieces_and_include_usage() {
    let emu = common::openai().await;
    let body = json!({"model": "m", "stream": true, "stream_options": {"include_usage": true},
                      "messages": [{"role": "user", "content": "你好 there"}]});
    let r = post(&chat_url(&emu), OPENAI_KEY, &body).await;
    assert_eq!(r.content_type, "text/event-stream");
    let fs = frames(r.text());
    let deltas: Vec<Value> = fs[..fs.len() - 1].iter().map(|f| f.json()).collect();
    assert_eq!(
        deltas[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    let pieces: Vec<&str> = deltas[1..]
        .iter()
        .filter_map(|d| d["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(pieces, ["You ", "said: ", "你", "好 ", "there"]);
    let finish = &deltas[deltas.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    assert_eq!(finish["choices"][0]["delta"], json!({}));
    let usage = &deltas[deltas.len() - 1];
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], 5);
    assert_eq!(usage["usage"]["prompt_tokens"], 3 + 4);
    for d in &deltas[..deltas.len() - 1] {
        assert!(d["usage"].is_null() && d.get("usage").is_some());
        assert_eq!(d["id"], deltas[0]["id"]);
    }
    assert_eq!(fs.last().unwrap().data(), Some("[DONE]"));
    assert_eq!(openai_stream_text(&fs), "You said: 你好 there");

    // Without include_usage there is no usage key and no usage chunk.
    let body =
        json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "x"}]});
    let fs = frames(post(&chat_url(&emu), OPENAI_KEY, &body).await.text());
    assert_eq!(fs.len(), 1 + 3 + 1 + 1);
    assert!(fs[..fs.len() - 1]
        .iter()
        .all(|f| f.json().get("usage").is_none()));
}

#[tokio::test]
async fn stop_and_max_tokens_shape_the_reply() {
    let emu = common::openai().await;
    let msgs = json!([{"role": "user", "content": "one two END three"}]);
    let r = post(
        &chat_url(&emu),
        OPENAI_KEY,
        &json!({"model": "m", "messages": msgs, "stop": "END"}),
    )
    .await
    .json();
    assert_eq!(r["choices"][0]["message"]["content"], "You said: one two ");
    assert_eq!(r["choices"][0]["finish_reason"], "stop");
    let r = post(
        &chat_url(&emu),
        OPENAI_KEY,
        &json!({"model": "m", "messages": msgs, "max_tokens": 3}),
    )
    .await
    .json();
    assert_eq!(r["choices"][0]["message"]["content"], "You said: one ");
    assert_eq!(r["choices"][0]["finish_reason"], "length");
    assert_eq!(r["usage"]["completion_tokens"], 3);

    let ds = common::dashscope().await;
    let body = json!({"model": "qwen-plus", "input": {"prompt": "a b c"},
                      "parameters": {"max_tokens": 2, "result_format": "text"}});
    let r = post(&ds_gen_url(&ds), DASHSCOPE_KEY, &body).await.json();
    assert_eq!(
        r["output"],
        json!({"finish_reason": "length", "text": "You said: "})
    );
}

fn weather_tools() -> Value {
    json!([
        {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}, "required": ["city"]}}},
        {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}
    ])
}

#[tokio::test]
async fn openai_tool_calls_are_deterministic() {
    let emu = common::openai().await;
    let user = json!({"role": "user", "content": "Paris"});
    let r = post(
        &chat_url(&emu),
        OPENAI_KEY,
        &json!({"model": "m", "messages": [user], "tools": weather_tools()}),
    )
    .await
    .json();
    let msg = &r["choices"][0]["message"];
    assert!(msg["content"].is_null());
    assert_eq!(r["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(
        msg["tool_calls"],
        json!([
        {"id": "call_0", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\",\"days\":1}"}},
        {"id": "call_1", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}])
    );
    // 2 calls; fragments of 8 chars: 25 chars → 4, "{}" → 1; tokens = (1+4) + (1+1).
    assert_eq!(r["usage"]["completion_tokens"], 7);

    let one = post(
        &chat_url(&emu),
        OPENAI_KEY,
        &json!({"model": "m", "messages": [user],
        "tools": weather_tools(), "parallel_tool_calls": false}),
    )
    .await
    .json();
    assert_eq!(
        one["choices"][0]["message"]["tool_calls"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let named = post(&chat_url(&emu), OPENAI_KEY, &json!({"model": "m", "messages": [user],
        "tools": weather_tools(), "tool_choice": {"type": "function", "function": {"name": "get_time"}}})).await.json();
    assert_eq!(
        named["choices"][0]["message"]["tool_calls"][0]["function"]["name"],
        "get_time"
    );
    let none = post(
        &chat_url(&emu),
        OPENAI_KEY,
        &json!({"model": "m", "messages": [user],
        "tools": weather_tools(), "tool_choice": "none"}),
    )
    .await
    .json();
    assert_eq!(none["choices"][0]["message"]["content"], "You said: Paris");

    // After tool results, the answer quotes them.
    let r = post(
        &chat_url(&emu),
        OPENAI_KEY,
        &json!({"model": "m", "tools": weather_tools(), "messages": [
        user,
        {"role": "assistant", "content": null, "tool_calls": msg["tool_calls"]},
        {"role": "tool", "tool_call_id": "call_0", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_1", "content": "noon"}]}),
    )
    .await
    .json();
    assert_eq!(
        r["choices"][0]["message"]["content"],
        "Tool results: sunny; noon"
    );

    // Streamed: fragments concatenate to the same arguments, keyed by index.
    let fs = frames(
        post(
            &chat_url(&emu),
            OPENAI_KEY,
            &json!({"model": "m", "stream": true, "messages": [user], "tools": weather_tools()}),
        )
        .await
        .text(),
    );
    let mut args = vec![String::new(), String::new()];
    for f in fs.iter().filter(|f| f.data() != Some("[DONE]")) {
        for tc in f.json()["choices"][0]["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let i = tc["index"].as_u64().unwrap() as usize;
            args[i].push_str(tc["function"]["arguments"].as_str().unwrap());
        }
    }
    assert_eq!(args, ["{\"city\":\"Paris\",\"days\":1}", "{}"]);
    let first = fs[0].json();
    assert_eq!(
        first["choices"][0]["delta"]["tool_calls"][0]["id"],
        "call_0"
    );
    assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(
        fs[fs.len() - 2].json()["choices"][0]["finish_reason"],
        "tool_calls"
    );
}

#[tokio::test]
async fn dashscope_streams_incremental_and_cumulative() {
    let emu = common::dashscope().await;
    let msgs = json!({"messages": [{"role": "user", "content": "hi there"}]});
    let inc = post_dashscope_sse(
        &ds_gen_url(&emu),
        &json!({"model": "qwen-plus", "input": msgs,
        "parameters": {"result_format": "message", "incremental_output": true}}),
    )
    .await;
    assert_eq!(inc.content_type, "text/event-stream;charset=UTF-8");
    let fs = frames(inc.text());
    let got: Vec<(String, String, u64)> = fs
        .iter()
        .map(|f| {
            let j = f.json();
            let c = &j["output"]["choices"][0];
            (
                c["message"]["content"].as_str().unwrap().to_owned(),
                c["finish_reason"].as_str().unwrap().to_owned(),
                j["usage"]["output_tokens"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("You ".to_owned(), "null".to_owned(), 1),
            ("said: ".to_owned(), "null".to_owned(), 2),
            ("hi ".to_owned(), "null".to_owned(), 3),
            ("there".to_owned(), "stop".to_owned(), 4)
        ]
    );
    assert_eq!(fs[0].field("id"), Some("1"));
    assert_eq!(fs[3].field("id"), Some("4"));
    assert_eq!(fs[0].json()["usage"]["input_tokens"], 6);
    assert_eq!(
        fs[0].json()["request_id"],
        inc.header("x-request-id").unwrap()
    );

    let cum = post_dashscope_sse(
        &ds_gen_url(&emu),
        &json!({"model": "qwen-plus", "input": msgs,
        "parameters": {"result_format": "text"}, "stream": false}),
    )
    .await;
    let texts: Vec<String> = frames(cum.text())
        .iter()
        .map(|f| f.json()["output"]["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        texts,
        ["You ", "You said: ", "You said: hi ", "You said: hi there"]
    );
}

#[tokio::test]
async fn dashscope_tool_calls_incremental_and_cumulative() {
    let emu = common::dashscope().await;
    let body = |incremental: bool| {
        json!({"model": "qwen-plus",
        "input": {"messages": [{"role": "user", "content": "Hangzhou"}]},
        "parameters": {"result_format": "message", "incremental_output": incremental, "tools": weather_tools()}})
    };
    let fs = frames(
        post_dashscope_sse(&ds_gen_url(&emu), &body(true))
            .await
            .text(),
    );
    // parallel_tool_calls defaults to false on DashScope: one call; 28 chars of arguments → 4 fragments.
    assert_eq!(fs.len(), 5);
    let first = fs[0].json()["output"]["choices"][0]["message"]["tool_calls"][0].clone();
    assert_eq!(
        first,
        json!({"index": 0, "id": "call_0", "type": "function",
                             "function": {"name": "get_weather", "arguments": ""}})
    );
    let mut args = String::new();
    for f in &fs[1..] {
        let tc = &f.json()["output"]["choices"][0]["message"]["tool_calls"][0];
        assert_eq!(tc["id"], "");
        assert!(tc["function"].get("name").is_none());
        args.push_str(tc["function"]["arguments"].as_str().unwrap());
    }
    assert_eq!(args, "{\"city\":\"Hangzhou\",\"days\":1}");
    assert_eq!(
        fs[4].json()["output"]["choices"][0]["finish_reason"],
        "tool_calls"
    );

    let fs = frames(
        post_dashscope_sse(&ds_gen_url(&emu), &body(false))
            .await
            .text(),
    );
    let last = fs.last().unwrap().json();
    assert_eq!(
        last["output"]["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
        args
    );
    assert_eq!(
        last["output"]["choices"][0]["message"]["tool_calls"][0]["id"],
        "call_0"
    );

    let r = post(&ds_gen_url(&emu), DASHSCOPE_KEY, &body(false))
        .await
        .json();
    assert_eq!(
        r["output"]["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
        args
    );
    assert_eq!(r["usage"]["output_tokens"], 5);
}

#[tokio::test]
async fn dashscope_multimodal_answers_with_content_parts() {
    let emu = common::dashscope().await;
    let url = format!(
        "{}/services/aigc/multimodal-generation/generation",
        emu.base_url()
    );
    let r = post(
        &url,
        DASHSCOPE_KEY,
        &json!({"model": "qwen-vl-plus", "input": {"messages": [
        {"role": "user", "content": [{"image": "https://x/y.png"}, {"text": "what is it"}]}]}}),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json()["output"]["choices"][0]["message"]["content"],
        json!([{"text": "You said: what is it"}])
    );
}

#[tokio::test]
async fn openai_embeddings_float_and_base64_agree() {
    let emu = common::openai().await;
    let url = format!("{}/embeddings", emu.base_url());
    let f = post(
        &url,
        OPENAI_KEY,
        &json!({"model": "text-embedding-3-small", "input": ["hello", "world"],
        "encoding_format": "float", "dimensions": 8}),
    )
    .await
    .json();
    let b = post(
        &url,
        OPENAI_KEY,
        &json!({"model": "text-embedding-3-small", "input": ["hello", "world"],
        "encoding_format": "base64", "dimensions": 8}),
    )
    .await
    .json();
    for i in 0..2 {
        let floats: Vec<f32> = f["data"][i]["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b["data"][i]["embedding"].as_str().unwrap())
            .unwrap();
        let decoded: Vec<f32> = raw
            .chunks(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(floats, decoded);
        let norm: f32 = floats.iter().map(|x| x * x).sum();
        assert!((norm - 1.0).abs() < 1e-4);
    }
    assert_ne!(f["data"][0]["embedding"], f["data"][1]["embedding"]);
    assert_eq!(f["usage"]["prompt_tokens"], 2);
    let d = post(
        &url,
        OPENAI_KEY,
        &json!({"model": "text-embedding-3-small", "input": "x"}),
    )
    .await
    .json();
    assert_eq!(d["data"][0]["embedding"].as_array().unwrap().len(), 1536);
}

#[tokio::test]
async fn dashscope_embeddings_and_compat_rules() {
    let emu = common::dashscope().await;
    let url = format!(
        "{}/services/embeddings/text-embedding/text-embedding",
        emu.base_url()
    );
    let r = post(
        &url,
        DASHSCOPE_KEY,
        &json!({"model": "text-embedding-v3", "input": {"texts": ["a", "你好"]},
        "parameters": {"dimension": 64}}),
    )
    .await
    .json();
    let e = r["output"]["embeddings"].as_array().unwrap();
    assert_eq!(e[1]["text_index"], 1);
    assert_eq!(e[0]["embedding"].as_array().unwrap().len(), 64);
    assert_eq!(r["usage"]["total_tokens"], 3);
    let eleven: Vec<String> = (0..11).map(|i| i.to_string()).collect();
    let r = post(
        &url,
        DASHSCOPE_KEY,
        &json!({"model": "text-embedding-v3", "input": {"texts": eleven}}),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["code"], "InvalidParameter");
    let ok = post(
        &url,
        DASHSCOPE_KEY,
        &json!({"model": "text-embedding-v2", "input": {"texts": eleven}}),
    )
    .await;
    assert_eq!(ok.status, 200);

    let compat = emu.compat_base_url().unwrap();
    let r = post(
        &format!("{compat}/embeddings"),
        DASHSCOPE_KEY,
        &json!({"model": "text-embedding-v3", "input": "a", "encoding_format": "base64"}),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(r.json()["request_id"].is_string());
    let r = post(
        &format!("{compat}/embeddings"),
        DASHSCOPE_KEY,
        &json!({"model": "text-embedding-v3", "input": "a"}),
    )
    .await;
    assert_eq!(
        r.json()["data"][0]["embedding"].as_array().unwrap().len(),
        1024
    );
    let r = post(
        &format!("{compat}/chat/completions"),
        DASHSCOPE_KEY,
        &json!({"model": "qwen-plus",
        "enable_search": true, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(r.json()["choices"][0]["message"]["content"], "You said: hi");
}

#[tokio::test]
async fn validation_errors_use_vendor_bodies() {
    let oa = common::openai().await;
    let r = post(&chat_url(&oa), OPENAI_KEY, &json!({"model": "m"})).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["type"], "invalid_request_error");
    let r = post(
        &chat_url(&oa),
        OPENAI_KEY,
        &json!({"model": "", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(r.status, 400);
    let r = common::send(
        "POST",
        &chat_url(&oa),
        &[("authorization", "Bearer sk-emulator-openai")],
        "{not json",
    )
    .await;
    assert_eq!(r.status, 400);

    let ds = common::dashscope().await;
    let r = post(
        &ds_gen_url(&ds),
        DASHSCOPE_KEY,
        &json!({"model": "qwen-plus", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(r.status, 400);
    let j = r.json();
    assert_eq!(j["code"], "InvalidParameter");
    assert_eq!(
        j["message"],
        "Either \"prompt\" or \"messages\" must exist and cannot both be none"
    );
    // A body `stream` field does not switch streaming on.
    let r = post(
        &ds_gen_url(&ds),
        DASHSCOPE_KEY,
        &json!({"model": "qwen-plus", "input": {"prompt": "x"}, "stream": true}),
    )
    .await;
    assert_eq!(r.content_type, "application/json");
    assert_eq!(r.json()["output"]["text"], "You said: x");
}

#[tokio::test]
async fn models_are_listed() {
    let oa = common::openai().await;
    let auth = format!("Bearer {OPENAI_KEY}");
    let r = common::send(
        "GET",
        &format!("{}/models", oa.base_url()),
        &[("authorization", &auth)],
        "",
    )
    .await;
    assert_eq!(r.json()["data"][0]["id"], "gpt-4o-mini");
    let r = common::send(
        "GET",
        &format!("{}/models/gpt-4o", oa.base_url()),
        &[("authorization", &auth)],
        "",
    )
    .await;
    assert_eq!(r.json()["id"], "gpt-4o");
    let r = common::send(
        "GET",
        &format!("{}/models/nope", oa.base_url()),
        &[("authorization", &auth)],
        "",
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["code"], "model_not_found");
}
