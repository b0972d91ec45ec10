//! Ollama: the ollama-python capture replayed (status, content type, NDJSON framing, shapes), stream default,
//! options, tool calls, embeddings, models and faults.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{same_shape, send, Resp};
use llmux_emulator::{Emulator, EmulatorConfig, Fault, FaultKind, Vendor};
use serde_json::{json, Value};

async fn ollama() -> Emulator {
    Emulator::start(EmulatorConfig::new(Vendor::Ollama))
        .await
        .unwrap()
}

async fn post(emu: &Emulator, path: &str, body: &Value) -> Resp {
    send(
        "POST",
        &format!("{}{path}", emu.base_url()),
        &[("content-type", "application/json")],
        &body.to_string(),
    )
    .await
}

/// Splits an NDJSON body: every line ends in `\n` and is one JSON object.
fn lines(body: &str) -> Vec<Value> {
    assert!(
        body.ends_with('\n'),
        "NDJSON must end with a newline: {body:?}"
    );
    body.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l:?}")))
        .collect()
}

#[tokio::test]
async fn replays_the_ollama_python_capture() {
    let doc: Value =
        serde_json::from_str(include_str!("../fixtures/ollama/sdk_capture.json")).unwrap();
    for case in doc["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let emu = ollama().await;
        for ex in case["exchanges"].as_array().unwrap() {
            let headers: Vec<(String, String)> = ex["headers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| {
                    (
                        h[0].as_str().unwrap().to_owned(),
                        h[1].as_str().unwrap().to_owned(),
                    )
                })
                .filter(|(n, _)| {
                    !["host", "content-length", "connection", "accept-encoding"]
                        .contains(&n.to_ascii_lowercase().as_str())
                })
                .collect();
            let hs: Vec<(&str, &str)> = headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            let url = format!("{}{}", emu.root_url(), ex["path"].as_str().unwrap());
            let body = ex["body_raw"].as_str().unwrap_or_default();
            let r = send(ex["method"].as_str().unwrap(), &url, &hs, body).await;
            let want = &ex["response"];
            assert_eq!(
                u64::from(r.status),
                want["status"].as_u64().unwrap(),
                "{name}: {:?}",
                r.body
            );
            let want_ct = want["content_type"].as_str().unwrap();
            assert_eq!(r.content_type, want_ct, "{name}");
            let want_body = want["body"].as_str().unwrap();
            if want_ct == "application/x-ndjson" {
                let expected = lines(want_body);
                let got = lines(r.text());
                assert!(got.len() >= 2, "{name}");
                for g in &got[..got.len() - 1] {
                    same_shape(&expected[0], g).unwrap_or_else(|e| panic!("{name}: {e}"));
                    assert_eq!(g["done"], false);
                }
                let (e_last, g_last) = (expected.last().unwrap(), got.last().unwrap());
                same_shape(e_last, g_last).unwrap_or_else(|e| panic!("{name}: last: {e}"));
                let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
                let (mut ek, mut gk) = (keys(e_last), keys(g_last));
                ek.sort();
                gk.sort();
                assert_eq!(ek, gk, "{name}: final object keys");
            } else {
                let expected: Value = serde_json::from_str(want_body).unwrap();
                same_shape(&expected, &r.json()).unwrap_or_else(|e| panic!("{name}: {e}"));
            }
            assert_eq!(
                emu.requests().last().unwrap().body.as_ref(),
                body.as_bytes()
            );
        }
    }
}

#[tokio::test]
async fn stream_defaults_to_true_and_ends_with_counters() {
    let emu = ollama().await;
    assert_eq!(Vendor::Ollama.id(), "ollama");
    assert_eq!(emu.base_url(), emu.root_url());
    let r = post(
        &emu,
        "/api/chat",
        &json!({"model": "llama3.2",
        "messages": [{"role": "user", "content": "a b"}]}),
    )
    .await;
    assert_eq!(r.content_type, "application/x-ndjson");
    let ls = lines(r.text());
    let text: String = ls
        .iter()
        .map(|l| l["message"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(text, "You said: a b");
    assert_eq!(ls.len(), 5);
    let last = ls.last().unwrap();
    assert_eq!(last["done"], true);
    assert_eq!(last["done_reason"], "stop");
    assert_eq!(last["prompt_eval_count"], 6);
    assert_eq!(last["eval_count"], 4);
    let total = last["total_duration"].as_u64().unwrap();
    let parts = ["load_duration", "prompt_eval_duration", "eval_duration"]
        .iter()
        .map(|k| last[k].as_u64().unwrap())
        .sum::<u64>();
    assert_eq!(total, parts);
    assert!(last["created_at"].as_str().unwrap().ends_with('Z'));

    // num_predict and stop come from options; the model name may carry :latest.
    let j = post(
        &emu,
        "/api/chat",
        &json!({"model": "llama3.2:latest", "stream": false,
        "options": {"num_predict": 2}, "messages": [{"role": "user", "content": "a b"}]}),
    )
    .await
    .json();
    assert_eq!(j["message"]["content"], "You said: ");
    assert_eq!(j["done_reason"], "length");
    let j = post(
        &emu,
        "/api/generate",
        &json!({"model": "qwen2.5:7b", "stream": false,
        "options": {"stop": ["y"]}, "prompt": "x a y", "system": "be brief"}),
    )
    .await
    .json();
    assert_eq!(j["response"], "You said: x a ");
    assert_eq!(j["prompt_eval_count"], 4 + 2 + 4 + 3);

    // No messages just loads the model.
    let j = post(
        &emu,
        "/api/chat",
        &json!({"model": "llama3.2", "stream": false}),
    )
    .await
    .json();
    assert_eq!(j["done_reason"], "load");
}

#[tokio::test]
async fn tool_calls_have_object_arguments() {
    let emu = ollama().await;
    let tools = json!([{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "required": ["city"], "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}}}}]);
    for stream in [false, true] {
        let r = post(
            &emu,
            "/api/chat",
            &json!({"model": "llama3.2", "stream": stream, "tools": tools,
            "messages": [{"role": "user", "content": "Paris"}]}),
        )
        .await;
        let msg = if stream {
            let ls = lines(r.text());
            assert_eq!(ls.len(), 2);
            assert_eq!(ls[1]["done"], true);
            ls[0]["message"].clone()
        } else {
            r.json()["message"].clone()
        };
        assert_eq!(
            msg["tool_calls"],
            json!([{"function": {"name": "get_weather", "arguments": {"city": "Paris", "days": 1}}}])
        );
    }
    let j = post(&emu, "/api/chat", &json!({"model": "llama3.2", "stream": false, "tools": tools,
        "messages": [{"role": "user", "content": "Paris"},
                     {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
                     {"role": "tool", "content": "sunny", "tool_name": "get_weather"}]})).await.json();
    assert_eq!(j["message"]["content"], "Tool results: sunny");
}

#[tokio::test]
async fn embeddings_models_and_errors() {
    let emu = ollama().await;
    let j = post(
        &emu,
        "/api/embed",
        &json!({"model": "nomic-embed-text", "input": "hello"}),
    )
    .await
    .json();
    assert_eq!(j["embeddings"].as_array().unwrap().len(), 1);
    assert_eq!(j["embeddings"][0].as_array().unwrap().len(), 768);
    let j = post(
        &emu,
        "/api/embed",
        &json!({"model": "nomic-embed-text", "input": ["a", "b"], "dimensions": 8}),
    )
    .await
    .json();
    assert_eq!(j["embeddings"][1].as_array().unwrap().len(), 8);
    assert_eq!(j["prompt_eval_count"], 2);
    let j = post(
        &emu,
        "/api/embeddings",
        &json!({"model": "nomic-embed-text", "prompt": "hello"}),
    )
    .await
    .json();
    assert_eq!(j["embedding"].as_array().unwrap().len(), 768);

    let r = post(
        &emu,
        "/api/chat",
        &json!({"model": "mistral", "messages": []}),
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json(), json!({"error": "model 'mistral' not found"}));
    let r = post(&emu, "/api/chat", &json!({"messages": []})).await;
    assert_eq!(r.status, 400);
    assert!(r.json()["error"].is_string());

    let r = send("GET", &format!("{}/api/tags", emu.base_url()), &[], "").await;
    let j = r.json();
    let names: Vec<&str> = j["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["llama3.2:latest", "qwen2.5:7b", "nomic-embed-text:latest"]
    );
    assert_eq!(j["models"][1]["details"]["parameter_size"], "7B");

    // The model list is configurable; empty accepts any model.
    let any =
        Emulator::start(EmulatorConfig::new(Vendor::Ollama).with_models(Vec::<String>::new()))
            .await
            .unwrap();
    let r = post(
        &any,
        "/api/chat",
        &json!({"model": "mistral", "stream": false,
        "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn openai_compatible_endpoint_needs_no_key() {
    let emu = ollama().await;
    let base = emu.compat_base_url().unwrap();
    let r = send(
        "POST",
        &format!("{base}/chat/completions"),
        &[("content-type", "application/json")],
        &json!({"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]}).to_string(),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["choices"][0]["message"]["content"], "You said: hi");
    let r = send("GET", &format!("{base}/models"), &[], "").await;
    assert_eq!(r.json()["data"][0]["id"], "llama3.2:latest");
}

#[tokio::test]
async fn faults_shape_ndjson_streams() {
    let emu = ollama().await;
    let body = json!({"model": "llama3.2", "messages": [{"role": "user", "content": "a b c"}]});

    emu.push_fault(Fault::once(FaultKind::ErrorEvent { after: 2 }));
    let ls = lines(post(&emu, "/api/chat", &body).await.text());
    assert_eq!(ls.len(), 3);
    assert!(ls[2]["error"].as_str().unwrap().contains("error"));

    emu.push_fault(Fault::once(FaultKind::MalformedFrame { after: 1 }));
    let r = post(&emu, "/api/chat", &body).await;
    let bad = r
        .text()
        .lines()
        .filter(|l| serde_json::from_str::<Value>(l).is_err())
        .count();
    assert_eq!(bad, 1);

    emu.push_fault(Fault::once(FaultKind::StreamCutAfter(2)));
    let r = post(&emu, "/api/chat", &body).await;
    assert!(r.body.is_err(), "the stream is cut");

    emu.push_fault(Fault::once(FaultKind::QuotaExhausted));
    let r = post(&emu, "/api/chat", &body).await;
    assert_eq!(r.status, 429);
    assert!(r.json()["error"].is_string());

    emu.push_fault(Fault::once(FaultKind::Status {
        status: 503,
        body: None,
        retry_after: None,
    }));
    let r = post(&emu, "/api/chat", &body).await;
    assert_eq!(r.status, 503);
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .starts_with("server busy"));

    emu.push_fault(Fault::once(FaultKind::ErrorBody200));
    let r = post(&emu, "/api/chat", &body).await;
    assert_eq!(r.status, 200);
    assert!(r.json()["error"].is_string());

    let mut non_stream = body.clone();
    non_stream["stream"] = json!(false);
    emu.push_fault(Fault::once(FaultKind::ErrorEvent { after: 0 }));
    let r = post(&emu, "/api/chat", &non_stream).await;
    assert_eq!(r.status, 500);

    assert_eq!(
        emu.requests().iter().map(|r| r.status).collect::<Vec<_>>(),
        [200, 200, 200, 429, 503, 200, 500]
    );
}

#[tokio::test(start_paused = true)]
async fn token_interval_paces_ndjson_lines() {
    let emu = Emulator::start(
        EmulatorConfig::new(Vendor::Ollama).with_token_interval(std::time::Duration::from_secs(1)),
    )
    .await
    .unwrap();
    let start = tokio::time::Instant::now();
    let r = post(
        &emu,
        "/api/generate",
        &json!({"model": "llama3.2", "prompt": "a b"}),
    )
    .await;
    assert_eq!(lines(r.text()).len(), 5);
    // Four gaps between five lines.
    assert!(start.elapsed() >= std::time::Duration::from_secs(4));
}
