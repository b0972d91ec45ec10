//! iFlytek Spark: URL-signed WebSocket handshakes, request and answer frames, error codes, faults, and the
//! OpenAI-compatible HTTP API.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use futures::{SinkExt as _, StreamExt as _};
use hmac::{Hmac, KeyInit as _, Mac as _};
use llmux_emulator::{Emulator, EmulatorConfig, Fault, FaultKind, Vendor};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio_tungstenite::tungstenite::{self, Message};

const KEY: &str = "emu-api-key";
const SECRET: &str = "emu-api-secret";
const APP_ID: &str = "emuappid";
const PASSWORD: &str = "emu-api-password";

async fn spark() -> Emulator {
    Emulator::start(EmulatorConfig::new(Vendor::Spark))
        .await
        .unwrap()
}

/// Python `urlencode` (quote_plus): keeps `A-Z a-z 0-9 _ . - ~`, space → `+`, everything else `%XX`.
fn form(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b' ' => "+".to_owned(),
            b if b.is_ascii_alphanumeric() || b"_.-~".contains(&b) => char::from(b).to_string(),
            b => format!("%{b:02X}"),
        })
        .collect()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The signed URL, written independently of the emulator from PROTOCOLS.md 4.2; `spaces` is inserted before
/// `headers=` (sparkai's LLM client puts 8 there).
fn signed_url_with(
    emu: &Emulator,
    path: &str,
    key: &str,
    secret: &str,
    date: &str,
    spaces: &str,
) -> String {
    let host = emu.addr().to_string();
    let origin = format!("host: {host}\ndate: {date}\nGET {path} HTTP/1.1");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(origin.as_bytes());
    let sig = b64(&mac.finalize().into_bytes());
    let auth = format!(
        r#"api_key="{key}", algorithm="hmac-sha256", {spaces}headers="host date request-line", signature="{sig}""#
    );
    format!(
        "{}{path}?authorization={}&date={}&host={}",
        emu.base_url(),
        form(&b64(auth.as_bytes())),
        form(date),
        form(&host)
    )
}

fn now_date() -> String {
    httpdate::fmt_http_date(SystemTime::now())
}

fn signed_url(emu: &Emulator, path: &str) -> String {
    signed_url_with(emu, path, KEY, SECRET, &now_date(), "")
}

fn request_frame(domain: &str, text: &str) -> Value {
    json!({"header": {"app_id": APP_ID, "uid": "user-1"},
           "parameter": {"chat": {"domain": domain, "temperature": 0.5, "max_tokens": 1024}},
           "payload": {"message": {"text": [{"role": "user", "content": text}]}}})
}

/// How a conversation ended.
#[derive(Debug, PartialEq)]
enum End {
    /// A close frame with this code.
    Close(u16),
    /// The connection ended without a close frame.
    Dropped,
}

/// Connects, sends one text frame, and collects the text frames until the conversation ends.
async fn converse(url: &str, frame: &str) -> (Vec<String>, End) {
    let (mut ws, resp) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert_eq!(resp.status(), 101);
    ws.send(Message::Text(frame.into())).await.unwrap();
    let mut got = Vec::new();
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => got.push(t.as_str().to_owned()),
            Some(Ok(Message::Close(c))) => {
                return (got, End::Close(c.map_or(0, |c| u16::from(c.code))))
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return (got, End::Dropped),
        }
    }
}

fn json_frames(frames: &[String]) -> Vec<Value> {
    frames
        .iter()
        .map(|f| serde_json::from_str(f).unwrap())
        .collect()
}

fn text_of(frames: &[Value]) -> String {
    frames
        .iter()
        .map(|f| {
            f["payload"]["choices"]["text"][0]["content"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

/// The HTTP status and body of a refused handshake.
async fn refused(url: &str) -> (u16, Value) {
    match tokio_tungstenite::connect_async(url).await {
        Err(tungstenite::Error::Http(resp)) => {
            let body = resp.body().clone().unwrap_or_default();
            (
                resp.status().as_u16(),
                serde_json::from_slice(&body).unwrap_or(Value::Null),
            )
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("the handshake succeeded"),
    }
}

#[tokio::test]
async fn ws_chat_streams_pieces_with_status_seq_and_final_usage_then_closes() {
    let emu = spark().await;
    let url = signed_url(&emu, "/v3.5/chat");
    let frame = request_frame("generalv3.5", "hello there 你好").to_string();
    let (frames, end) = converse(&url, &frame).await;
    assert_eq!(end, End::Close(1000));
    let frames = json_frames(&frames);
    // "You said: hello there 你好" → "You ", "said: ", "hello ", "there ", "你", "好".
    assert_eq!(frames.len(), 6);
    assert_eq!(text_of(&frames), "You said: hello there 你好");
    for (i, f) in frames.iter().enumerate() {
        let status = match i {
            0 => 0,
            5 => 2,
            _ => 1,
        };
        assert_eq!(f["header"]["code"], 0);
        assert_eq!(f["header"]["message"], "Success");
        assert_eq!(f["header"]["status"], status);
        assert_eq!(f["payload"]["choices"]["status"], status);
        assert_eq!(f["payload"]["choices"]["seq"], i);
        assert_eq!(f["payload"]["choices"]["text"][0]["role"], "assistant");
        assert_eq!(f["payload"]["choices"]["text"][0]["index"], 0);
        assert_eq!(f["payload"].get("usage").is_some(), i == 5);
        assert!(f["header"]["sid"].as_str().unwrap().starts_with("cht"));
    }
    // One user message of 4 pieces: 4 + 4 prompt tokens; 6 completion tokens.
    assert_eq!(
        frames[5]["payload"]["usage"]["text"],
        json!({"question_tokens": 8, "prompt_tokens": 8, "completion_tokens": 6, "total_tokens": 14})
    );

    let log = emu.requests();
    assert_eq!(log.len(), 1);
    let r = &log[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str(), r.status),
        ("GET", "/v3.5/chat", 101)
    );
    assert!(r.query.as_deref().unwrap().starts_with("authorization="));
    assert_eq!(r.header("upgrade"), Some("websocket"));
    assert_eq!(r.body.as_ref(), frame.as_bytes());
}

#[tokio::test]
async fn ws_every_documented_domain_answers_on_its_path_only() {
    let emu = spark().await;
    let pairs = [
        ("/v1.1/chat", "lite"),
        ("/v1.1/chat", "general"),
        ("/v2.1/chat", "generalv2"),
        ("/v3.1/chat", "generalv3"),
        ("/chat/pro-128k", "pro-128k"),
        ("/v3.5/chat", "generalv3.5"),
        ("/chat/max-32k", "max-32k"),
        ("/v4.0/chat", "4.0Ultra"),
    ];
    for (path, domain) in pairs {
        let (frames, end) = converse(
            &signed_url(&emu, path),
            &request_frame(domain, "hi").to_string(),
        )
        .await;
        assert_eq!(end, End::Close(1000), "{path}");
        assert_eq!(text_of(&json_frames(&frames)), "You said: hi", "{path}");
    }
    let (frames, end) = converse(
        &signed_url(&emu, "/v3.5/chat"),
        &request_frame("lite", "hi").to_string(),
    )
    .await;
    assert_eq!(end, End::Close(1000));
    let f = json_frames(&frames);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0]["header"]["code"], 10005);
    assert_eq!(f[0]["header"]["status"], 2);
    assert!(f[0].get("payload").is_none());
    assert_eq!(
        refused(&signed_url(&emu, "/v9.9/chat")).await,
        (
            404,
            json!({"message": "no Route matched with those values"})
        )
    );
}

#[tokio::test]
async fn ws_handshake_rejects_bad_signature_unknown_key_and_skewed_date() {
    let emu = spark().await;
    let path = "/v3.5/chat";
    let bad_sig = signed_url_with(&emu, path, KEY, "wrong-secret", &now_date(), "");
    assert_eq!(
        refused(&bad_sig).await,
        (401, json!({"message": "HMAC signature does not match"}))
    );
    let other_key = signed_url_with(&emu, path, "other-key", SECRET, &now_date(), "");
    assert_eq!(
        refused(&other_key).await,
        (401, json!({"message": "HMAC signature cannot be verified"}))
    );
    let bare = format!("{}{path}", emu.base_url());
    assert_eq!(
        refused(&bare).await,
        (401, json!({"message": "Unauthorized"}))
    );
    let old = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(400));
    let skewed = signed_url_with(&emu, path, KEY, SECRET, &old, "");
    let (status, body) = refused(&skewed).await;
    assert_eq!(status, 403);
    assert!(body["message"].as_str().unwrap().contains("valid date"));

    // sparkai's LLM client adds 8 spaces inside authorization_origin; that verifies too.
    let variant = signed_url_with(&emu, path, KEY, SECRET, &now_date(), "        ");
    let (frames, _) = converse(&variant, &request_frame("generalv3.5", "x").to_string()).await;
    assert_eq!(text_of(&json_frames(&frames)), "You said: x");

    // A plain GET (no upgrade) is checked the same way before the upgrade is required.
    let r = common::send("GET", &bad_sig.replacen("ws://", "http://", 1), &[], "").await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.json(),
        json!({"message": "HMAC signature does not match"})
    );
    assert_eq!(
        emu.requests().iter().map(|r| r.status).collect::<Vec<_>>(),
        [401, 401, 401, 403, 101, 401]
    );
}

#[tokio::test]
async fn ws_clock_offset_simulates_client_clock_skew() {
    let emu = spark().await;
    let url = signed_url(&emu, "/v3.5/chat");
    emu.set_clock_offset(301);
    assert_eq!(refused(&url).await.0, 403);
    emu.set_clock_offset(-301);
    assert_eq!(refused(&url).await.0, 403);
    emu.set_clock_offset(290);
    let (frames, _) = converse(&url, &request_frame("generalv3.5", "ok").to_string()).await;
    assert_eq!(text_of(&json_frames(&frames)), "You said: ok");
    // Over the control surface.
    let r = common::send(
        "PUT",
        &format!("{}/__emulator/clock", emu.root_url()),
        &[],
        r#"{"offset_secs": -600}"#,
    )
    .await;
    assert_eq!(r.status, 204);
    assert_eq!(refused(&url).await.0, 403);
}

#[tokio::test]
async fn ws_function_call_is_one_status_2_frame() {
    let emu = spark().await;
    let mut frame = request_frame("4.0Ultra", "Paris");
    frame["payload"]["functions"] = json!({"text": [
        {"name": "weather", "description": "Weather of a city",
         "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                        "days": {"type": "integer"}}, "required": ["city"]}},
        {"name": "other", "parameters": {"type": "object", "properties": {}}}]});
    let (frames, end) = converse(&signed_url(&emu, "/v4.0/chat"), &frame.to_string()).await;
    assert_eq!(end, End::Close(1000));
    let f = json_frames(&frames);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0]["header"]["status"], 2);
    let text = &f[0]["payload"]["choices"]["text"][0];
    assert_eq!(text["content"], "");
    assert_eq!(text["content_type"], "text");
    assert_eq!(text["function_call"]["name"], "weather");
    assert_eq!(
        text["function_call"]["arguments"],
        r#"{"city":"Paris","days":1}"#
    );
    assert_eq!(f[0]["payload"]["usage"]["text"]["completion_tokens"], 5);
}

#[tokio::test]
async fn ws_bad_frames_get_vendor_error_codes() {
    let emu = spark().await;
    let url = signed_url(&emu, "/v3.5/chat");
    let code = |frames: Vec<String>| {
        let f = json_frames(&frames);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0]["header"]["status"], 2);
        assert!(f[0]["header"]["message"].as_str().is_some());
        f[0]["header"]["code"].as_u64().unwrap()
    };
    assert_eq!(code(converse(&url, "not json").await.0), 10003);
    assert_eq!(code(converse(&url, r#"{"payload":{}}"#).await.0), 10004);
    let mut f = request_frame("generalv3.5", "x");
    f["header"]["app_id"] = json!("someone-else");
    assert_eq!(code(converse(&url, &f.to_string()).await.0), 10313);
    let mut f = request_frame("generalv3.5", "x");
    f["parameter"]["chat"]["temperature"] = json!(1.5);
    assert_eq!(code(converse(&url, &f.to_string()).await.0), 10005);
    let mut f = request_frame("generalv3.5", "x");
    f["parameter"]["chat"]["max_tokens"] = json!(9000);
    assert_eq!(code(converse(&url, &f.to_string()).await.0), 10005);
    let mut f = request_frame("generalv3.5", "x");
    f["payload"]["message"]["text"] =
        json!([{"role": "user", "content": "a"}, {"role": "system", "content": "b"}]);
    assert_eq!(code(converse(&url, &f.to_string()).await.0), 10005);
    let long = "w ".repeat(9000);
    let f = request_frame("generalv3.5", &long);
    assert_eq!(code(converse(&url, &f.to_string()).await.0), 10907);
    // Max-32K takes it (and max_tokens 1024 keeps 1024 pieces).
    let (frames, _) = converse(
        &signed_url(&emu, "/chat/max-32k"),
        &request_frame("max-32k", &long).to_string(),
    )
    .await;
    assert_eq!(frames.len(), 1024);
}

#[tokio::test]
async fn ws_max_tokens_keeps_the_first_pieces() {
    let emu = spark().await;
    let mut f = request_frame("generalv3.5", "a b c d");
    f["parameter"]["chat"]["max_tokens"] = json!(2);
    let (frames, _) = converse(&signed_url(&emu, "/v3.5/chat"), &f.to_string()).await;
    let f = json_frames(&frames);
    assert_eq!(text_of(&f), "You said: ");
    assert_eq!(f[1]["header"]["status"], 2);
}

#[tokio::test]
async fn ws_status_faults_fail_the_upgrade() {
    let emu = spark().await;
    let url = signed_url(&emu, "/v3.5/chat");
    emu.push_fault(Fault::once(FaultKind::Status {
        status: 429,
        body: None,
        retry_after: Some("2".into()),
    }));
    match tokio_tungstenite::connect_async(&url).await {
        Err(tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 429);
            assert_eq!(resp.headers()["retry-after"], "2");
            let body: Value = serde_json::from_slice(resp.body().as_ref().unwrap()).unwrap();
            assert_eq!(body, json!({"message": "API rate limit exceeded"}));
        }
        other => panic!("expected a refused handshake, got {other:?}"),
    }
    emu.push_fault(Fault::once(FaultKind::Html { status: 502 }));
    assert_eq!(refused(&url).await.0, 502);
    let (frames, _) = converse(&url, &request_frame("generalv3.5", "x").to_string()).await;
    assert_eq!(text_of(&json_frames(&frames)), "You said: x");
}

#[tokio::test]
async fn ws_error_faults_answer_with_error_frames() {
    let emu = spark().await;
    let url = signed_url(&emu, "/v3.5/chat");
    let frame = request_frame("generalv3.5", "a b c d").to_string();

    emu.push_fault(Fault::once(FaultKind::QuotaExhausted));
    let (frames, end) = converse(&url, &frame).await;
    assert_eq!(end, End::Close(1000));
    assert_eq!(json_frames(&frames)[0]["header"]["code"], 11200);

    emu.push_fault(Fault::once(FaultKind::ErrorBody200));
    let (frames, _) = converse(&url, &frame).await;
    assert_eq!(json_frames(&frames)[0]["header"]["code"], 10012);

    emu.push_fault(Fault::once(FaultKind::ErrorEvent { after: 2 }));
    let (frames, end) = converse(&url, &frame).await;
    assert_eq!(end, End::Close(1000));
    let f = json_frames(&frames);
    assert_eq!(f.len(), 3);
    assert_eq!(f[2]["header"]["code"], 10013);
    assert_eq!(f[2]["header"]["status"], 2);
}

#[tokio::test]
async fn ws_stream_cut_drops_the_socket_without_a_close_frame() {
    let emu = spark().await;
    let url = signed_url(&emu, "/v3.5/chat");
    emu.push_fault(Fault::once(FaultKind::StreamCutAfter(2)));
    let (frames, end) = converse(&url, &request_frame("generalv3.5", "a b c d").to_string()).await;
    assert_eq!(end, End::Dropped);
    let f = json_frames(&frames);
    assert_eq!(f.len(), 2);
    assert!(f.iter().all(|f| f["header"]["status"] != 2));
}

#[tokio::test]
async fn ws_malformed_frame_is_not_json_and_the_rest_follows() {
    let emu = spark().await;
    let url = signed_url(&emu, "/v3.5/chat");
    emu.push_fault(Fault::once(FaultKind::MalformedFrame { after: 1 }));
    let (frames, end) = converse(&url, &request_frame("generalv3.5", "a b").to_string()).await;
    assert_eq!(end, End::Close(1000));
    assert_eq!(frames.len(), 5);
    assert!(serde_json::from_str::<Value>(&frames[1]).is_err());
    let good: Vec<String> = frames
        .into_iter()
        .enumerate()
        .filter(|(i, _)| *i != 1)
        .map(|(_, f)| f)
        .collect();
    assert_eq!(text_of(&json_frames(&good)), "You said: a b");
}

#[tokio::test(start_paused = true)]
async fn ws_delay_token_interval_and_idle_run_on_tokio_time() {
    let emu = Emulator::start(
        EmulatorConfig::new(Vendor::Spark).with_token_interval(Duration::from_secs(1)),
    )
    .await
    .unwrap();
    let url = signed_url(&emu, "/v3.5/chat");
    let frame = request_frame("generalv3.5", "a b").to_string();
    emu.push_fault(Fault::once(FaultKind::DelayFirstByte(Duration::from_secs(
        30,
    ))));
    let start = tokio::time::Instant::now();
    let (frames, _) = converse(&url, &frame).await;
    assert_eq!(frames.len(), 4);
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_secs(33) && elapsed < Duration::from_secs(35),
        "{elapsed:?}"
    );

    emu.push_fault(Fault::once(FaultKind::IdleAfter {
        after: 1,
        pause: Duration::from_secs(100),
    }));
    let start = tokio::time::Instant::now();
    converse(&url, &frame).await;
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_secs(103) && elapsed < Duration::from_secs(105),
        "{elapsed:?}"
    );
}

// ---------------------------------------------------------------- HTTP API

fn http_url(emu: &Emulator) -> String {
    format!("{}/chat/completions", emu.compat_base_url().unwrap())
}

fn http_body(stream: bool) -> Value {
    json!({"model": "generalv3.5", "stream": stream,
           "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi there"}]})
}

#[tokio::test]
async fn http_chat_answers_openai_like_with_code_message_sid() {
    let emu = spark().await;
    assert_eq!(
        emu.compat_base_url().unwrap(),
        format!("http://{}/v1", emu.addr())
    );
    let r = common::post(&http_url(&emu), PASSWORD, &http_body(false)).await;
    assert_eq!(r.status, 200);
    let j = r.json();
    assert_eq!(j["code"], 0);
    assert_eq!(j["message"], "Success");
    assert!(j["sid"].as_str().unwrap().starts_with("cha"));
    assert_eq!(j["choices"][0]["message"]["content"], "You said: hi there");
    assert_eq!(j["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        j["usage"],
        json!({"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16})
    );
    // APIKey:APISecret is accepted too.
    let r = common::post(
        &http_url(&emu),
        &format!("{KEY}:{SECRET}"),
        &http_body(false),
    )
    .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn http_stream_uses_data_without_space_usage_last_then_done() {
    let emu = spark().await;
    let r = common::post(&http_url(&emu), PASSWORD, &http_body(true)).await;
    assert_eq!(r.status, 200);
    assert!(r.content_type.starts_with("text/event-stream"));
    assert!(r.text().starts_with("data:{"));
    assert!(r.text().ends_with("data:[DONE]\n\n"));
    let frames = common::frames(r.text());
    let (done, events) = frames.split_last().unwrap();
    assert_eq!(done.data(), Some("[DONE]"));
    let text: String = events
        .iter()
        .map(|f| {
            f.json()["choices"][0]["delta"]["content"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(text, "You said: hi there");
    let (last, rest) = events.split_last().unwrap();
    assert!(rest.iter().all(|f| f.json().get("usage").is_none()));
    assert_eq!(last.json()["usage"]["total_tokens"], 16);
    assert_eq!(last.json()["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn http_tool_call_streams_and_answers_one_call() {
    let emu = spark().await;
    let mut body = http_body(false);
    body["tools"] = json!([{"type": "function", "function": {"name": "lookup",
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}},
        {"type": "function", "function": {"name": "second", "parameters": {}}}]);
    let j = common::post(&http_url(&emu), PASSWORD, &body).await.json();
    let calls = j["choices"][0]["message"]["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["function"]["arguments"], r#"{"q":"hi there"}"#);
    assert_eq!(j["choices"][0]["finish_reason"], "tool_calls");
    body["stream"] = json!(true);
    let r = common::post(&http_url(&emu), PASSWORD, &body).await;
    let args: String = common::frames(r.text())
        .iter()
        .filter(|f| f.data() != Some("[DONE]"))
        .filter_map(|f| {
            f.json()["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(args, r#"{"q":"hi there"}"#);
}

#[tokio::test]
async fn http_auth_and_validation_errors() {
    let emu = spark().await;
    let r = common::post(&http_url(&emu), "wrong", &http_body(false)).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.json(),
        json!({"error": {"message": "invalid user", "type": "api_error", "param": null, "code": null}})
    );
    let mut body = http_body(false);
    body["model"] = json!("gpt-4o");
    let r = common::post(&http_url(&emu), PASSWORD, &body).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["code"], 10005);
    let r = common::send(
        "POST",
        &http_url(&emu),
        &[("authorization", &format!("Bearer {PASSWORD}"))],
        "{nope",
    )
    .await;
    assert_eq!(r.json()["code"], 10003);

    emu.push_fault(Fault::once(FaultKind::ErrorBody200));
    let r = common::post(&http_url(&emu), PASSWORD, &http_body(false)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["code"], 10012);
    emu.push_fault(Fault::once(FaultKind::QuotaExhausted));
    let r = common::post(&http_url(&emu), PASSWORD, &http_body(false)).await;
    assert_eq!(r.json()["code"], 11200);
    emu.push_fault(Fault::once(FaultKind::ErrorEvent { after: 1 }));
    let r = common::post(&http_url(&emu), PASSWORD, &http_body(true)).await;
    let frames = common::frames(r.text());
    assert_eq!(frames.len(), 2);
    assert!(r.text().contains("data:{\"code\":10013"));
}

#[tokio::test]
async fn custom_credentials_replace_the_defaults() {
    let emu = Emulator::start(
        EmulatorConfig::new(Vendor::Spark)
            .with_credential("api_key", "k2")
            .with_credential("api_secret", "s2")
            .with_credential("app_id", "app2"),
    )
    .await
    .unwrap();
    assert_eq!(
        refused(&signed_url(&emu, "/v3.5/chat")).await.0,
        401,
        "the default key no longer works"
    );
    let url = signed_url_with(&emu, "/v3.5/chat", "k2", "s2", &now_date(), "");
    let mut f = request_frame("generalv3.5", "x");
    f["header"]["app_id"] = json!("app2");
    let (frames, _) = converse(&url, &f.to_string()).await;
    assert_eq!(text_of(&json_frames(&frames)), "You said: x");
}
