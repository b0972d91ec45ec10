//! Zhipu: raw-key and JWT auth (codes 1000–1004), the zhipuai wire capture replayed, chat, stream and tool shapes,
//! embeddings and faults.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use base64::Engine as _;
use common::{frames, post, send, Resp};
use hmac::{KeyInit as _, Mac as _};
use llmux_emulator::{Emulator, EmulatorConfig, Fault, FaultKind, Vendor};
use serde_json::{json, Value};

const KEY: &str = "emulatorid.emulatorsecret";

async fn zhipu() -> Emulator {
    Emulator::start(EmulatorConfig::new(Vendor::Zhipu))
        .await
        .unwrap()
}

fn chat_url(emu: &Emulator) -> String {
    format!("{}/chat/completions", emu.base_url())
}

/// A JWT as the zhipuai SDK builds it.
fn jwt(id: &str, secret: &str, now_ms: i64, ttl_ms: i64) -> String {
    let enc = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let si = format!(
        "{}.{}",
        enc(r#"{"alg":"HS256","sign_type":"SIGN","typ":"JWT"}"#),
        enc(&format!(
            r#"{{"api_key":"{id}","exp":{},"timestamp":{now_ms}}}"#,
            now_ms + ttl_ms
        ))
    );
    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    m.update(si.as_bytes());
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(m.finalize().into_bytes());
    format!("{si}.{sig}")
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn hello() -> Value {
    json!({"model": "glm-4-flash", "messages": [{"role": "user", "content": "hi there"}]})
}

fn code(r: &Resp) -> String {
    r.json()["error"]["code"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn defaults_and_urls() {
    let emu = zhipu().await;
    assert_eq!(Vendor::Zhipu.id(), "zhipu");
    assert_eq!(Vendor::Zhipu.default_key(), KEY);
    assert_eq!(emu.base_url(), format!("http://{}/api/paas/v4", emu.addr()));
    assert!(emu.compat_base_url().is_none());
}

#[tokio::test]
async fn replays_the_zhipuai_wire_capture() {
    let doc: Value = serde_json::from_str(include_str!("../fixtures/zhipu/jwt.json")).unwrap();
    let cap = &doc["sdk_wire_capture"];
    let emu = Emulator::start(
        EmulatorConfig::new(Vendor::Zhipu).with_keys([cap["api_key"].as_str().unwrap()]),
    )
    .await
    .unwrap();
    // The recorded JWTs were minted at now_ms = 1700000000000 and live 210 s.
    emu.set_clock_offset_ms(1_700_000_000_000 + 60_000 - now_ms());
    for (i, ex) in cap["exchanges"].as_array().unwrap().iter().enumerate() {
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
        let body = ex["body_raw"].as_str().unwrap();
        let r = send(ex["method"].as_str().unwrap(), &url, &hs, body).await;
        let want = &ex["response"];
        assert_eq!(
            u64::from(r.status),
            want["status"].as_u64().unwrap(),
            "exchange {i}: {:?}",
            r.body
        );
        assert_eq!(
            r.content_type,
            want["content_type"].as_str().unwrap(),
            "exchange {i}"
        );
        if r.content_type == "text/event-stream" {
            let fs = frames(r.text());
            assert_eq!(fs.last().unwrap().data(), Some("[DONE]"));
            let chunks: Vec<Value> = fs[..fs.len() - 1].iter().map(common::Frame::json).collect();
            let text: String = chunks
                .iter()
                .map(|c| c["choices"][0]["delta"]["content"].as_str().unwrap())
                .collect();
            assert_eq!(text, "You said: hi");
            assert_eq!(
                chunks.last().unwrap()["choices"][0]["finish_reason"],
                "stop"
            );
        } else {
            let expected: Value = serde_json::from_str(want["body"].as_str().unwrap()).unwrap();
            let got = r.json();
            for k in expected.as_object().unwrap().keys() {
                assert!(got.get(k).is_some(), "exchange {i}: {k} missing from {got}");
            }
        }
    }
    let j = emu.requests();
    assert_eq!(j.len(), 4);
    assert!(j.iter().all(|r| r.status == 200));
}

#[tokio::test]
async fn auth_errors_use_codes_1000_to_1004() {
    let emu = zhipu().await;
    let url = chat_url(&emu);
    let now = now_ms();
    assert_eq!(post(&url, KEY, &hello()).await.status, 200);
    assert_eq!(
        post(
            &url,
            &jwt("emulatorid", "emulatorsecret", now, 210_000),
            &hello()
        )
        .await
        .status,
        200
    );

    let r = send(
        "POST",
        &url,
        &[("content-type", "application/json")],
        &hello().to_string(),
    )
    .await;
    assert_eq!((r.status, code(&r)), (401, "1001".to_owned()));
    let r = post(&url, "emulatorid.wrong", &hello()).await;
    assert_eq!((r.status, code(&r)), (401, "1000".to_owned()));
    let r = post(
        &url,
        &jwt("stranger", "emulatorsecret", now, 210_000),
        &hello(),
    )
    .await;
    assert_eq!((r.status, code(&r)), (401, "1000".to_owned()));
    let r = post(&url, "a.b.c", &hello()).await;
    assert_eq!((r.status, code(&r)), (401, "1002".to_owned()));
    let r = post(
        &url,
        &jwt("emulatorid", "emulatorsecret", now - 300_000, 210_000),
        &hello(),
    )
    .await;
    assert_eq!((r.status, code(&r)), (401, "1003".to_owned()));
    let r = post(&url, &jwt("emulatorid", "other", now, 210_000), &hello()).await;
    assert_eq!((r.status, code(&r)), (401, "1004".to_owned()));
    // A token whose exp is in seconds, not milliseconds, has long expired.
    let r = post(
        &url,
        &jwt("emulatorid", "emulatorsecret", now / 1000, 210),
        &hello(),
    )
    .await;
    assert_eq!(code(&r), "1003");
}

#[tokio::test]
async fn chat_echoes_request_id_and_streams_usage_on_the_last_chunk() {
    let emu = zhipu().await;
    let url = chat_url(&emu);
    let mut body = hello();
    body["request_id"] = json!("my-req-7");
    body["do_sample"] = json!(false);
    let j = post(&url, KEY, &body).await.json();
    assert_eq!(j["request_id"], "my-req-7");
    assert_eq!(
        j["choices"][0]["message"],
        json!({"role": "assistant", "content": "You said: hi there"})
    );
    assert_eq!(j["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        j["usage"],
        json!({"prompt_tokens": 6, "completion_tokens": 4, "total_tokens": 10})
    );

    let j = post(&url, KEY, &hello()).await.json();
    assert_eq!(j["request_id"], j["id"]);

    body["stream"] = json!(true);
    let r = post(&url, KEY, &body).await;
    assert_eq!(r.content_type, "text/event-stream");
    let fs = frames(r.text());
    assert_eq!(fs.last().unwrap().data(), Some("[DONE]"));
    let chunks: Vec<Value> = fs[..fs.len() - 1].iter().map(common::Frame::json).collect();
    assert_eq!(chunks.len(), 5);
    for c in &chunks[..4] {
        assert!(c.get("usage").is_none());
        assert!(c["choices"][0].get("finish_reason").is_none());
        assert_eq!(c["choices"][0]["delta"]["role"], "assistant");
    }
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert_eq!(last["usage"]["total_tokens"], 10);
    assert_eq!(last["request_id"], "my-req-7");

    // max_tokens cuts to N pieces, finish length.
    let j = post(
        &url,
        KEY,
        &json!({"model": "glm-4", "max_tokens": 2,
        "messages": [{"role": "user", "content": "a b c"}]}),
    )
    .await
    .json();
    assert_eq!(j["choices"][0]["message"]["content"], "You said: ");
    assert_eq!(j["choices"][0]["finish_reason"], "length");
}

#[tokio::test]
async fn tool_calls_stream_whole() {
    let emu = zhipu().await;
    let tools = json!([{"type": "function", "function": {"name": "get_weather", "description": "w",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
        {"type": "web_search", "web_search": {"enable": true}}]);
    let body = json!({"model": "glm-4-plus", "tools": tools, "tool_choice": "auto",
                      "messages": [{"role": "user", "content": "Beijing"}]});
    let j = post(&chat_url(&emu), KEY, &body).await.json();
    assert_eq!(j["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(
        j["choices"][0]["message"]["tool_calls"],
        json!([{"id": "call_0", "index": 0, "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"Beijing\"}"}}])
    );
    let mut body = body;
    body["stream"] = json!(true);
    let r = post(&chat_url(&emu), KEY, &body).await;
    let fs = frames(r.text());
    assert_eq!(fs.len(), 3, "one tool-call chunk, the finish chunk, [DONE]");
    let first = fs[0].json();
    assert_eq!(
        first["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"],
        "{\"city\":\"Beijing\"}"
    );
    assert_eq!(fs[1].json()["choices"][0]["finish_reason"], "tool_calls");
}

#[tokio::test]
async fn validation_and_embeddings() {
    let emu = zhipu().await;
    let url = chat_url(&emu);
    let r = post(
        &url,
        KEY,
        &json!({"messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!((r.status, code(&r)), (400, "1211".to_owned()));
    let r = post(&url, KEY, &json!({"model": "glm-4", "messages": []})).await;
    assert_eq!((r.status, code(&r)), (400, "1214".to_owned()));
    let r = post(
        &url,
        KEY,
        &json!({"model": "glm-4", "temperature": 1.5,
        "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!((r.status, code(&r)), (400, "1210".to_owned()));

    let e = format!("{}/embeddings", emu.base_url());
    let j = post(&e, KEY, &json!({"model": "embedding-3", "input": "hello"}))
        .await
        .json();
    assert_eq!(j["data"][0]["embedding"].as_array().unwrap().len(), 2048);
    assert_eq!(j["object"], "list");
    let j = post(
        &e,
        KEY,
        &json!({"model": "embedding-3", "input": ["a", "b c"], "dimensions": 256}),
    )
    .await
    .json();
    assert_eq!(j["data"].as_array().unwrap().len(), 2);
    assert_eq!(j["data"][1]["embedding"].as_array().unwrap().len(), 256);
    assert_eq!(j["usage"]["prompt_tokens"], 3);
    let r = send(
        "GET",
        &format!("{}/models", emu.base_url()),
        &[("authorization", &format!("Bearer {KEY}"))],
        "",
    )
    .await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn faults_use_zhipu_codes() {
    let emu = zhipu().await;
    let url = chat_url(&emu);
    emu.push_fault(Fault::once(FaultKind::QuotaExhausted));
    let r = post(&url, KEY, &hello()).await;
    assert_eq!((r.status, code(&r)), (429, "1113".to_owned()));
    emu.push_fault(Fault::once(FaultKind::Status {
        status: 429,
        body: None,
        retry_after: Some("3".into()),
    }));
    let r = post(&url, KEY, &hello()).await;
    assert_eq!((r.status, code(&r)), (429, "1302".to_owned()));
    assert_eq!(r.header("retry-after"), Some("3"));
    emu.push_fault(Fault::once(FaultKind::ErrorBody200));
    let r = post(&url, KEY, &hello()).await;
    assert_eq!((r.status, code(&r)), (200, "500".to_owned()));
    emu.push_fault(Fault::once(FaultKind::ErrorEvent { after: 0 }));
    let r = post(&url, KEY, &hello()).await;
    assert_eq!((r.status, code(&r)), (400, "1301".to_owned()));

    emu.push_fault(Fault::once(FaultKind::ErrorEvent { after: 2 }));
    let mut body = hello();
    body["stream"] = json!(true);
    let r = post(&url, KEY, &body).await;
    let fs = frames(r.text());
    assert_eq!(fs.len(), 3);
    assert_eq!(fs[2].json()["error"]["code"], "1301");
}
