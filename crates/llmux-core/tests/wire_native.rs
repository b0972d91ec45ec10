//! Wire-level tests for Hunyuan (native TC3 and OpenAI-compatible), Zhipu and Ollama: the
//! client talks real HTTP to the emulators on 127.0.0.1:0, and we assert on results and on
//! each emulator's request log (signatures, auth headers, bodies, attempt counts).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use futures::StreamExt;
use llmux_core::providers::ProviderSettings;
use llmux_core::*;
use llmux_emulator::{
    Emulator, EmulatorConfig, Fault, FaultKind, Vendor, HUNYUAN_SECRET_ID, HUNYUAN_SECRET_KEY,
};
use serde_json::{json, Value};

fn settings(pairs: &[(&str, &str)], base: String) -> ProviderSettings {
    let mut s = ProviderSettings::default().base_url(base);
    for (k, v) in pairs {
        s.credentials.insert((*k).to_owned(), (*v).into());
    }
    s
}

async fn start(cfg: EmulatorConfig) -> Emulator {
    Emulator::start(cfg).await.unwrap()
}

fn client_for(id: &str, s: ProviderSettings) -> Client {
    Client::builder()
        .without_env()
        .retry(llmux_core::resilience::RetryPolicy::none())
        .provider(id, s)
        .build()
        .unwrap()
}

fn hunyuan_client(emu: &Emulator, secret_key: &str) -> Client {
    client_for(
        "hunyuan",
        settings(
            &[("secret_id", HUNYUAN_SECRET_ID), ("secret_key", secret_key)],
            emu.base_url(),
        ),
    )
}

fn ask(model: &str, text: &str) -> ChatRequest {
    ChatRequest::new(model, vec![Message::user(text)])
}

fn weather_tool() -> Tool {
    Tool {
        name: "get_weather".into(),
        description: Some("Get weather".into()),
        parameters: json!({"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}),
        strict: None,
    }
}

/// Streams `req`, checking the invariants, and folds the events.
async fn stream(client: &Client, req: ChatRequest) -> Result<ChatResponse> {
    let mut s = client.chat_stream(req).await?;
    let mut events = Vec::new();
    while let Some(ev) = s.next().await {
        events.push(ev?);
    }
    assert!(matches!(events.first(), Some(StreamEvent::Started { .. })));
    assert!(matches!(events.last(), Some(StreamEvent::Finished { .. })));
    let finished = events
        .iter()
        .filter(|e| matches!(e, StreamEvent::Finished { .. }))
        .count();
    assert_eq!(finished, 1);
    let usage = events
        .iter()
        .filter(|e| matches!(e, StreamEvent::Usage(_)))
        .count();
    assert!(usage <= 1);
    let mut acc = StreamAccumulator::new();
    for e in &events {
        acc.push(e)?;
    }
    acc.finish()
}

fn body_json(emu: &Emulator, i: usize) -> Value {
    emu.requests()[i].json().unwrap()
}

#[tokio::test]
async fn hunyuan_chat_stream_and_tools_are_signed_with_tc3() {
    let emu = start(EmulatorConfig::new(Vendor::Hunyuan)).await;
    let client = hunyuan_client(&emu, HUNYUAN_SECRET_KEY);

    let r = client
        .chat(ask("hunyuan/hunyuan-lite", "hi there"))
        .await
        .unwrap();
    assert_eq!(r.text(), "You said: hi there");
    assert_eq!(r.finish_reason(), Some(&FinishReason::Stop));
    let u = r.usage.unwrap();
    assert!(u.input_tokens > 0 && u.output_tokens > 0);
    assert!(r.request_id.is_some());

    let s = stream(&client, ask("hunyuan/hunyuan-lite", "你好 world"))
        .await
        .unwrap();
    assert_eq!(s.text(), "You said: 你好 world");
    assert!(s.usage.is_some());
    assert!(s.request_id.is_some(), "X-TC-RequestId header");

    let mut req = ask("hunyuan/hunyuan-functioncall", "Shenzhen");
    req.tools = vec![weather_tool()];
    req.tool_choice = Some(ToolChoice::Function("get_weather".into()));
    for streamed in [false, true] {
        let r = if streamed {
            stream(&client, req.clone()).await.unwrap()
        } else {
            client.chat(req.clone()).await.unwrap()
        };
        let calls = r.tool_calls();
        assert_eq!(calls.len(), 1, "streamed {streamed}");
        assert_eq!(calls[0].name, "get_weather");
        let args: Value = serde_json::from_str(&calls[0].arguments).unwrap();
        assert_eq!(args["city"], "Shenzhen");
        assert!(!calls[0].id.is_empty());
    }

    let log = emu.requests();
    assert_eq!(log.len(), 4);
    for rec in &log {
        assert_eq!(rec.path, "/");
        assert_eq!(rec.header("x-tc-action"), Some("ChatCompletions"));
        assert_eq!(rec.header("x-tc-version"), Some("2023-09-01"));
        assert_eq!(rec.header("x-tc-region"), Some("ap-guangzhou"));
        let auth = rec.header("authorization").unwrap();
        assert!(auth.starts_with(&format!("TC3-HMAC-SHA256 Credential={HUNYUAN_SECRET_ID}/")));
        assert!(auth.contains("/hunyuan/tc3_request, SignedHeaders=content-type;host, "));
        assert_eq!(rec.header("host").unwrap(), emu.addr().to_string());
    }
    let b = body_json(&emu, 1);
    assert_eq!(b["Stream"], true);
    assert_eq!(b["Messages"][0]["Role"], "user");
    let b = body_json(&emu, 2);
    assert_eq!(b["ToolChoice"], "custom");
    assert_eq!(b["CustomTool"]["Function"]["Name"], "get_weather");
    assert!(b["Tools"][0]["Function"]["Parameters"].is_string());
}

#[tokio::test]
async fn hunyuan_bad_signature_is_an_authentication_error() {
    let emu = start(EmulatorConfig::new(Vendor::Hunyuan)).await;
    for streamed in [false, true] {
        // A fresh client each time: a rejected key disables the upstream's breaker, so the
        // same client would answer the second call without sending it.
        let client = hunyuan_client(&emu, "not-the-key");
        let req = ask("hunyuan/hunyuan-lite", "hi");
        let err = if streamed {
            client.chat_stream(req).await.err().unwrap()
        } else {
            client.chat(req).await.unwrap_err()
        };
        assert_eq!(err.kind(), ErrorKind::Authentication, "{err}");
        assert_eq!(err.upstream_code(), Some("AuthFailure.SignatureFailure"));
        assert!(err.request_id().is_some());
        assert!(!err.to_string().contains("not-the-key"));
    }
    assert_eq!(emu.requests().len(), 2, "no retry for a bad key");
}

#[tokio::test]
async fn hunyuan_skewed_clock_is_corrected_from_the_date_header() {
    let emu = start(EmulatorConfig::new(Vendor::Hunyuan).with_clock_offset_ms(3_600_000)).await;
    let client = hunyuan_client(&emu, HUNYUAN_SECRET_KEY);
    let r = client
        .chat(ask("hunyuan/hunyuan-lite", "hi"))
        .await
        .unwrap();
    assert_eq!(r.text(), "You said: hi");
    let log = emu.requests();
    assert_eq!(log.len(), 2, "one rejected attempt, one retry");
    let ts = |i: usize| -> i64 { log[i].header("x-tc-timestamp").unwrap().parse().unwrap() };
    assert!(
        (ts(1) - ts(0) - 3600).abs() <= 5,
        "{} then {}",
        ts(0),
        ts(1)
    );
    assert!((client.clock().offset_ms() - 3_600_000).abs() < 5_000);
    // The clock stays corrected: the next call succeeds at once, streamed too.
    let s = stream(&client, ask("hunyuan/hunyuan-lite", "again"))
        .await
        .unwrap();
    assert_eq!(s.text(), "You said: again");
    assert_eq!(emu.requests().len(), 3);
}

#[tokio::test]
async fn hunyuan_session_token_region_and_errors_in_200() {
    let emu = start(EmulatorConfig::new(Vendor::Hunyuan).with_credential("token", "tok-123")).await;
    let mut s = settings(
        &[
            ("secret_id", HUNYUAN_SECRET_ID),
            ("secret_key", HUNYUAN_SECRET_KEY),
            ("session_token", "tok-123"),
        ],
        emu.base_url(),
    );
    s.region = Some("ap-beijing".into());
    let client = client_for("hunyuan", s);
    client
        .chat(ask("hunyuan/hunyuan-lite", "hi"))
        .await
        .unwrap();
    let rec = &emu.requests()[0];
    assert_eq!(rec.header("x-tc-token"), Some("tok-123"));
    assert_eq!(rec.header("x-tc-region"), Some("ap-beijing"));

    emu.push_fault(Fault::once(FaultKind::QuotaExhausted));
    let err = client
        .chat(ask("hunyuan/hunyuan-lite", "hi"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::QuotaExhausted, "{err}");
    assert_eq!(
        err.upstream_code(),
        Some("FailedOperation.ResourcePackExhausted")
    );

    emu.push_fault(Fault::once(FaultKind::StreamCutAfter(2)));
    let err = stream(&client, ask("hunyuan/hunyuan-lite", "one two three four"))
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::UpstreamProtocol | ErrorKind::Connect),
        "{err}"
    );

    emu.push_fault(Fault::once(FaultKind::ErrorEvent { after: 1 }));
    let err = stream(&client, ask("hunyuan/hunyuan-lite", "one two three"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UpstreamServer, "{err}");
}

#[tokio::test]
async fn hunyuan_openai_endpoint_chats_streams_and_embeds() {
    let emu = start(EmulatorConfig::new(Vendor::Hunyuan)).await;
    let client = client_for(
        "hunyuan-openai",
        settings(
            &[("api_key", Vendor::Hunyuan.default_key())],
            emu.compat_base_url().unwrap(),
        ),
    );
    let mut req = ask("hunyuan-openai/hunyuan-turbos-latest", "hi");
    req.enable_search = Some(true);
    let r = client.chat(req.clone()).await.unwrap();
    assert_eq!(r.text(), "You said: hi");
    let s = stream(&client, req).await.unwrap();
    assert_eq!(s.text(), "You said: hi");
    let e = client
        .embed(EmbeddingRequest::new(
            "hunyuan-openai/hunyuan-embedding",
            vec!["a".into(), "b".into()],
        ))
        .await
        .unwrap();
    assert_eq!(e.data.len(), 2);
    let b = body_json(&emu, 0);
    assert_eq!(b["enable_enhancement"], true);
    assert!(b.get("enable_search").is_none());
    assert_eq!(
        emu.requests()[0].header("authorization"),
        Some(format!("Bearer {}", Vendor::Hunyuan.default_key()).as_str())
    );
}

fn zhipu_client(emu: &Emulator, auth: &str) -> Client {
    client_for(
        "zhipu",
        settings(
            &[("api_key", Vendor::Zhipu.default_key()), ("auth", auth)],
            emu.base_url(),
        ),
    )
}

#[tokio::test]
async fn zhipu_chats_streams_calls_tools_and_embeds_with_key_or_jwt() {
    let emu = start(EmulatorConfig::new(Vendor::Zhipu)).await;
    for auth in ["api_key", "jwt"] {
        emu.clear_requests();
        let client = zhipu_client(&emu, auth);
        let r = client.chat(ask("zhipu/glm-4-flash", "hi")).await.unwrap();
        assert_eq!(r.text(), "You said: hi", "{auth}");
        assert!(r.usage.is_some());
        let s = stream(&client, ask("zhipu/glm-4-flash", "hello there"))
            .await
            .unwrap();
        assert_eq!(s.text(), "You said: hello there");
        assert!(s.usage.is_some(), "usage on the last chunk");
        let mut req = ask("zhipu/glm-4-flash", "Paris");
        req.tools = vec![weather_tool()];
        req.tool_choice = Some(ToolChoice::Auto);
        let s = stream(&client, req).await.unwrap();
        let args: Value = serde_json::from_str(&s.tool_calls()[0].arguments).unwrap();
        assert_eq!(args["city"], "Paris");
        let e = client
            .embed(EmbeddingRequest::new("zhipu/embedding-3", vec!["a".into()]))
            .await
            .unwrap();
        assert_eq!(e.data.len(), 1);
        let log = emu.requests();
        assert_eq!(log.len(), 4);
        let bearers: Vec<&str> = log
            .iter()
            .map(|r| r.header("authorization").unwrap())
            .collect();
        if auth == "jwt" {
            assert!(bearers[0].starts_with("Bearer eyJ"));
            assert!(bearers.iter().all(|b| *b == bearers[0]), "token cached");
        } else {
            let key = format!("Bearer {}", Vendor::Zhipu.default_key());
            assert!(bearers.iter().all(|b| *b == key));
        }
        let b = body_json(&emu, 1);
        assert_eq!(b["stream"], true);
        assert!(b.get("stream_options").is_none());
    }
}

#[tokio::test]
async fn zhipu_errors_bad_key_and_skewed_jwt() {
    let emu = start(EmulatorConfig::new(Vendor::Zhipu)).await;
    let bad = client_for(
        "zhipu",
        settings(&[("api_key", "nope.secret")], emu.base_url()),
    );
    let err = bad.chat(ask("zhipu/glm-4-flash", "hi")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Authentication);
    assert_eq!(err.upstream_code(), Some("1000"));

    let client = zhipu_client(&emu, "api_key");
    emu.push_fault(Fault::once(FaultKind::QuotaExhausted));
    let err = client
        .chat(ask("zhipu/glm-4-flash", "hi"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::QuotaExhausted);
    emu.push_fault(Fault::once(FaultKind::ErrorEvent { after: 0 }));
    let err = client
        .chat(ask("zhipu/glm-4-flash", "hi"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ContentFiltered);

    // The emulator is an hour ahead: our fresh JWT is already expired there (1003); the
    // client syncs to its Date header and the retry carries a token that is valid.
    emu.clear_requests();
    emu.set_clock_offset_ms(3_600_000);
    let jwt = zhipu_client(&emu, "jwt");
    let r = jwt.chat(ask("zhipu/glm-4-flash", "hi")).await.unwrap();
    assert_eq!(r.text(), "You said: hi");
    let log = emu.requests();
    assert_eq!(log.len(), 2);
    assert_ne!(
        log[0].header("authorization"),
        log[1].header("authorization")
    );
}

fn ollama_client(emu: &Emulator) -> Client {
    // OLLAMA_HOST style: no scheme.
    client_for(
        "ollama",
        ProviderSettings::default().base_url(emu.addr().to_string()),
    )
}

#[tokio::test]
async fn ollama_chats_generates_streams_calls_tools_embeds_and_lists() {
    let emu = start(EmulatorConfig::new(Vendor::Ollama)).await;
    let client = ollama_client(&emu);
    let mut req = ask("ollama/llama3.2", "hi");
    req.max_tokens = Some(64);
    req.extra.insert("keep_alive".into(), json!("5m"));
    req.extra.insert("num_ctx".into(), json!(4096));
    let r = client.chat(req).await.unwrap();
    assert_eq!(r.text(), "You said: hi");
    assert_eq!(r.model, "llama3.2");
    let s = stream(&client, ask("ollama/llama3.2", "hello there"))
        .await
        .unwrap();
    assert_eq!(s.text(), "You said: hello there");
    assert!(s.usage.unwrap().output_tokens > 0);

    let mut gen = ChatRequest::new(
        "ollama/llama3.2",
        vec![Message::system("Be brief."), Message::user("hey")],
    );
    gen.input_style = InputStyle::Prompt;
    assert_eq!(
        client.chat(gen.clone()).await.unwrap().text(),
        "You said: hey"
    );
    assert_eq!(stream(&client, gen).await.unwrap().text(), "You said: hey");

    let mut req = ask("ollama/llama3.2", "Paris");
    req.tools = vec![weather_tool()];
    for streamed in [false, true] {
        let r = if streamed {
            stream(&client, req.clone()).await.unwrap()
        } else {
            client.chat(req.clone()).await.unwrap()
        };
        assert_eq!(r.finish_reason(), Some(&FinishReason::ToolCalls));
        let args: Value = serde_json::from_str(&r.tool_calls()[0].arguments).unwrap();
        assert_eq!(args["city"], "Paris");
    }

    let e = client
        .embed(EmbeddingRequest::new(
            "ollama/nomic-embed-text",
            vec!["a".into(), "b".into()],
        ))
        .await
        .unwrap();
    assert_eq!(e.data.len(), 2);
    assert_eq!(e.data[0].vector.len(), 768);
    let models = client.models("ollama").await.unwrap();
    assert!(models.iter().any(|m| m.id.starts_with("llama3.2")));

    let log = emu.requests();
    let paths: Vec<&str> = log.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/api/chat",
            "/api/chat",
            "/api/generate",
            "/api/generate",
            "/api/chat",
            "/api/chat",
            "/api/embed",
            "/api/tags"
        ]
    );
    let b = body_json(&emu, 0);
    assert_eq!(b["stream"], false, "stream always explicit");
    assert_eq!(b["options"]["num_predict"], 64);
    assert_eq!(b["options"]["num_ctx"], 4096);
    assert_eq!(b["keep_alive"], "5m");
    assert_eq!(body_json(&emu, 1)["stream"], true);
    assert_eq!(body_json(&emu, 2)["system"], "Be brief.");
}

#[tokio::test]
async fn ollama_errors_unknown_model_mid_stream_and_cut_stream() {
    let emu = start(EmulatorConfig::new(Vendor::Ollama)).await;
    let client = ollama_client(&emu);
    let err = client
        .chat(ask("ollama/no-such-model", "hi"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert_eq!(err.upstream_status(), Some(404));

    emu.push_fault(Fault::once(FaultKind::ErrorEvent { after: 1 }));
    let err = stream(&client, ask("ollama/llama3.2", "one two three"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UpstreamServer, "{err}");

    emu.push_fault(Fault::once(FaultKind::StreamCutAfter(1)));
    let err = stream(&client, ask("ollama/llama3.2", "one two three"))
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::UpstreamProtocol | ErrorKind::Connect),
        "{err}"
    );

    emu.push_fault(Fault::once(FaultKind::MalformedFrame { after: 1 }));
    let err = stream(&client, ask("ollama/llama3.2", "one two three"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UpstreamProtocol, "{err}");
}
