//! Wire-level tests: the client talks real HTTP to the emulators on 127.0.0.1:0 and we assert
//! on results and on the emulator's request log, including every fault scenario.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use futures::StreamExt;
use llmux_core::client::collect_stream;
use llmux_core::providers::ProviderSettings;
use llmux_core::resilience::RetryPolicy;
use llmux_core::*;
use llmux_emulator::{Emulator, EmulatorConfig, Fault, FaultKind, Vendor};
use serde_json::json;
use std::time::Duration;

struct Env {
    openai: Emulator,
    dashscope: Emulator,
    anthropic: Emulator,
    gemini: Emulator,
    client: Client,
}

async fn env() -> Env {
    let openai = Emulator::start(EmulatorConfig::new(Vendor::OpenAi))
        .await
        .unwrap();
    let dashscope = Emulator::start(EmulatorConfig::new(Vendor::DashScope))
        .await
        .unwrap();
    let anthropic = Emulator::start(EmulatorConfig::new(Vendor::Anthropic))
        .await
        .unwrap();
    let gemini = Emulator::start(EmulatorConfig::new(Vendor::Gemini))
        .await
        .unwrap();
    let client = Client::builder()
        .without_env()
        .retry(RetryPolicy::none())
        .breaker(None)
        .provider(
            "openai",
            ProviderSettings::with_api_key(Vendor::OpenAi.default_key())
                .base_url(openai.base_url()),
        )
        .provider(
            "dashscope",
            ProviderSettings::with_api_key(Vendor::DashScope.default_key())
                .base_url(dashscope.base_url()),
        )
        .provider(
            "dashscope-compat",
            ProviderSettings::with_api_key(Vendor::DashScope.default_key())
                .base_url(dashscope.compat_base_url().unwrap()),
        )
        .provider(
            "dashscope-anthropic",
            ProviderSettings::with_api_key(Vendor::DashScope.default_key())
                .base_url(dashscope.base_url_for("dashscope-anthropic").unwrap()),
        )
        .provider(
            "anthropic",
            ProviderSettings::with_api_key(Vendor::Anthropic.default_key())
                .base_url(anthropic.base_url()),
        )
        .provider(
            "gemini",
            ProviderSettings::with_api_key(Vendor::Gemini.default_key())
                .base_url(gemini.base_url()),
        )
        .build()
        .unwrap();
    Env {
        openai,
        dashscope,
        anthropic,
        gemini,
        client,
    }
}

const MODELS: [&str; 6] = [
    "openai/gpt-4o-mini",
    "dashscope/qwen-plus",
    "dashscope-compat/qwen-plus",
    "dashscope-anthropic/qwen-plus",
    "anthropic/claude-sonnet-4-6",
    "gemini/gemini-2.5-flash",
];

/// Providers whose upstream names each call anew (per request), so a stream and a whole answer
/// agree on the calls' names and arguments, not their ids.
fn ids_per_request(model: &str) -> bool {
    ["anthropic/", "dashscope-anthropic/", "gemini/"]
        .iter()
        .any(|p| model.starts_with(p))
}

fn ask(model: &str, text: &str) -> ChatRequest {
    ChatRequest::new(
        model,
        vec![Message::system("Be brief."), Message::user(text)],
    )
}

async fn stream_events(client: &Client, req: ChatRequest) -> Vec<Result<StreamEvent>> {
    let s = client.chat_stream(req).await.unwrap();
    s.collect().await
}

#[tokio::test]
async fn stream_deltas_concatenate_to_the_non_stream_text_on_every_provider() {
    let e = env().await;
    for model in MODELS {
        let text = "hello wide 世界, tell me more";
        let full = e.client.chat(ask(model, text)).await.unwrap();
        assert_eq!(full.text(), format!("You said: {text}"), "{model}");
        assert_eq!(full.finish_reason(), Some(&FinishReason::Stop), "{model}");
        let u = full.usage.unwrap();
        assert!(
            u.output_tokens > 1 && u.total_tokens == u.input_tokens + u.output_tokens,
            "{model}"
        );

        let events = stream_events(&e.client, ask(model, text)).await;
        let deltas: Vec<&str> = events
            .iter()
            .filter_map(|e| match e {
                Ok(StreamEvent::TextDelta { text }) => Some(text.as_str()),
                _ => None,
            })
            .collect();
        assert!(deltas.len() > 3, "{model}: streamed in pieces: {deltas:?}");
        assert_eq!(deltas.concat(), full.text(), "{model}");
        assert!(
            matches!(events.first(), Some(Ok(StreamEvent::Started { .. }))),
            "{model}"
        );
        assert!(
            matches!(events.last(), Some(Ok(StreamEvent::Finished { .. }))),
            "{model}"
        );
        let usages: Vec<_> = events
            .iter()
            .filter(|e| matches!(e, Ok(StreamEvent::Usage(_))))
            .collect();
        assert_eq!(usages.len(), 1, "{model}: usage exactly once");
        if let Ok(StreamEvent::Usage(su)) = usages[0] {
            assert_eq!(su.output_tokens, u.output_tokens, "{model}: final usage");
        }
    }
}

#[tokio::test]
async fn dashscope_cumulative_and_incremental_streams_are_identical_on_the_wire() {
    let e = env().await;
    let mut inc = ask("dashscope/qwen-plus", "one two three 四五六");
    inc.extra.insert("incremental_output".into(), json!(true));
    let mut cum = inc.clone();
    cum.extra.insert("incremental_output".into(), json!(false));
    let a = stream_events(&e.client, inc).await;
    let b = stream_events(&e.client, cum).await;
    let norm = |v: Vec<Result<StreamEvent>>| -> Vec<StreamEvent> {
        v.into_iter()
            .map(Result::unwrap)
            .filter(|e| !matches!(e, StreamEvent::Started { .. }))
            .collect()
    };
    assert_eq!(norm(a), norm(b));
    let log = e.dashscope.requests();
    let bodies: Vec<_> = log
        .iter()
        .map(|r| r.json().unwrap()["parameters"]["incremental_output"].clone())
        .collect();
    assert_eq!(bodies, vec![json!(true), json!(false)]);
    assert!(log
        .iter()
        .all(|r| r.header("x-dashscope-sse") == Some("enable")));
}

fn weather_tools() -> Vec<Tool> {
    vec![Tool {
        name: "get_weather".into(),
        description: Some("Weather for a city".into()),
        parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
        strict: None,
    }]
}

#[tokio::test]
async fn tool_calls_round_trip_streamed_and_not_on_every_provider() {
    let e = env().await;
    for model in MODELS {
        let mut req = ChatRequest::new(model, vec![Message::user("Hangzhou")]);
        req.tools = weather_tools();
        let full = e.client.chat(req.clone()).await.unwrap();
        assert_eq!(
            full.finish_reason(),
            Some(&FinishReason::ToolCalls),
            "{model}"
        );
        let call = full.tool_calls()[0].clone();
        assert_eq!(call.name, "get_weather");
        let args: serde_json::Value = serde_json::from_str(&call.arguments).unwrap();
        assert_eq!(args["city"], "Hangzhou", "{model}");

        let streamed = collect_stream(e.client.chat_stream(req.clone()).await.unwrap())
            .await
            .unwrap();
        if ids_per_request(model) {
            let named = |r: &ChatResponse| -> Vec<(String, String)> {
                r.tool_calls()
                    .iter()
                    .map(|c| (c.name.clone(), c.arguments.clone()))
                    .collect()
            };
            assert_eq!(
                named(&streamed),
                named(&full),
                "{model}: fragments reassemble"
            );
            assert!(streamed.tool_calls().iter().all(|c| !c.id.is_empty()));
        } else {
            assert_eq!(
                streamed.tool_calls(),
                full.tool_calls(),
                "{model}: fragments reassemble"
            );
        }

        // Feed the result back: the model answers with text.
        let mut follow = req.clone();
        let mut assistant = Message::assistant("");
        assistant.tool_calls = vec![call.clone()];
        follow.messages.push(assistant);
        follow
            .messages
            .push(Message::tool_result(call.id.clone(), "sunny, 25C"));
        let answer = e.client.chat(follow).await.unwrap();
        // Gemini takes a result as an object: the text is wrapped as `{"result": …}`.
        let expected = if model.starts_with("gemini/") {
            r#"Tool results: {"result":"sunny, 25C"}"#
        } else {
            "Tool results: sunny, 25C"
        };
        assert_eq!(answer.text(), expected, "{model}");
    }
}

#[tokio::test]
async fn embeddings_base64_and_float_agree() {
    let e = env().await;
    let texts = vec!["hello world".to_owned(), "你好".to_owned()];
    let b64 = e
        .client
        .embed(EmbeddingRequest::new(
            "openai/text-embedding-3-small",
            texts.clone(),
        ))
        .await
        .unwrap();
    let mut float_req = EmbeddingRequest::new("openai/text-embedding-3-small", texts.clone());
    float_req
        .extra
        .insert("encoding_format".into(), json!("float"));
    let float = e.client.embed(float_req).await.unwrap();
    assert_eq!(b64.data.len(), 2);
    assert_eq!(b64.data[0].vector.len(), 1536);
    assert_eq!(b64.data, float.data);
    let log = e.openai.requests();
    assert_eq!(log[0].json().unwrap()["encoding_format"], "base64");

    let mut native = EmbeddingRequest::new("dashscope/text-embedding-v3", texts.clone());
    native.dimensions = Some(512);
    let native = e.client.embed(native).await.unwrap();
    assert_eq!(
        native.data.iter().map(|d| d.index).collect::<Vec<_>>(),
        vec![0, 1]
    );
    assert_eq!(native.data[0].vector.len(), 512);
    assert!(native.usage.unwrap().input_tokens > 0);
    let compat = e
        .client
        .embed(EmbeddingRequest::new(
            "dashscope-compat/text-embedding-v3",
            texts,
        ))
        .await
        .unwrap();
    assert_eq!(compat.data[1].vector.len(), 1024);
    assert_eq!(
        e.dashscope.requests().last().unwrap().json().unwrap()["encoding_format"],
        "float"
    );
}

#[tokio::test]
async fn models_are_listed() {
    let e = env().await;
    let models = e.client.models("openai").await.unwrap();
    assert!(models.iter().any(|m| m.id == "gpt-4o-mini"), "{models:?}");
    let err = e.client.models("dashscope").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    let models = e.client.models("anthropic").await.unwrap();
    assert!(
        models.iter().any(|m| m.id == "claude-sonnet-4-6"),
        "{models:?}"
    );
    let models = e.client.models("gemini").await.unwrap();
    assert!(
        models.iter().all(|m| !m.id.starts_with("models/")) && !models.is_empty(),
        "{models:?}"
    );
    let err = e.client.models("dashscope-anthropic").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported);
}

#[tokio::test]
async fn gemini_embeds_a_batch_in_order() {
    let e = env().await;
    let mut req = EmbeddingRequest::new(
        "gemini/gemini-embedding-001",
        vec!["hello world".to_owned(), "你好".to_owned()],
    );
    req.dimensions = Some(256);
    req.text_type = Some("document".into());
    let r = e.client.embed(req).await.unwrap();
    assert_eq!(r.data.iter().map(|d| d.index).collect::<Vec<_>>(), [0, 1]);
    assert!(r.data.iter().all(|d| d.vector.len() == 256));
    assert_ne!(r.data[0].vector, r.data[1].vector);
    let sent = &e.gemini.requests()[0];
    assert_eq!(
        sent.path,
        "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    );
    let body = sent.json().unwrap();
    assert_eq!(
        body["requests"][1],
        json!({"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "你好"}]},
               "taskType": "RETRIEVAL_DOCUMENT", "outputDimensionality": 256})
    );
    let err = e
        .client
        .embed(EmbeddingRequest::new(
            "anthropic/claude-sonnet-4-6",
            vec!["x".into()],
        ))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported);
}

async fn stream_error(e: &Env, emu: &Emulator, model: &str, fault: FaultKind) -> Error {
    emu.push_fault(Fault::once(fault));
    // A break before the first content event fails the call itself (Anthropic's first frames
    // are `message_start`, `content_block_start` and `ping`); later ones end the stream.
    let s = match e.client.chat_stream(ask(model, "a b c d e f g h")).await {
        Ok(s) => s,
        Err(err) => return err,
    };
    let events: Vec<Result<StreamEvent>> = s.collect().await;
    assert!(
        !matches!(events.last(), Some(Ok(StreamEvent::Finished { .. }))),
        "{model}: must not end as a success: {events:?}"
    );
    events.into_iter().find_map(Result::err).unwrap()
}

#[tokio::test]
async fn broken_streams_end_with_an_error_never_a_silent_success() {
    let e = env().await;
    for (model, emu) in [
        ("openai/gpt-4o-mini", &e.openai),
        ("dashscope/qwen-plus", &e.dashscope),
        ("anthropic/claude-sonnet-4-6", &e.anthropic),
        ("gemini/gemini-2.5-flash", &e.gemini),
    ] {
        let err = stream_error(&e, emu, model, FaultKind::StreamCutAfter(3)).await;
        assert_eq!(err.kind(), ErrorKind::UpstreamProtocol, "{model}: {err:?}");
        let err = stream_error(&e, emu, model, FaultKind::MalformedFrame { after: 2 }).await;
        assert_eq!(err.kind(), ErrorKind::UpstreamProtocol, "{model}: {err:?}");
        assert!(
            err.message().contains("malformed stream frame"),
            "{model}: {err}"
        );
        let err = stream_error(&e, emu, model, FaultKind::ErrorEvent { after: 2 }).await;
        assert_ne!(
            err.kind(),
            ErrorKind::UpstreamProtocol,
            "{model}: a vendor error event is classified: {err:?}"
        );
    }
    let err = stream_error(
        &e,
        &e.dashscope,
        "dashscope/qwen-plus",
        FaultKind::ErrorEvent { after: 1 },
    )
    .await;
    assert_eq!(err.kind(), ErrorKind::ContentFiltered);
    assert_eq!(err.upstream_code(), Some("DataInspectionFailed"));
}

#[tokio::test]
async fn upstream_faults_are_classified() {
    let e = env().await;
    for (model, emu) in [
        ("openai/gpt-4o-mini", &e.openai),
        ("dashscope/qwen-plus", &e.dashscope),
        ("anthropic/claude-sonnet-4-6", &e.anthropic),
        ("gemini/gemini-2.5-flash", &e.gemini),
    ] {
        emu.push_fault(Fault::once(FaultKind::Html { status: 502 }));
        let err = e.client.chat(ask(model, "x")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UpstreamServer, "{model}");
        assert_eq!(err.upstream_status(), Some(502));

        emu.push_fault(Fault::once(FaultKind::Status {
            status: 429,
            body: None,
            retry_after: Some("2".into()),
        }));
        let err = e.client.chat(ask(model, "x")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::RateLimited, "{model}: {err:?}");
        assert_eq!(err.retry_after(), Some(Duration::from_secs(2)));

        emu.push_fault(Fault::once(FaultKind::QuotaExhausted));
        let err = e.client.chat(ask(model, "x")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::QuotaExhausted, "{model}: {err:?}");
        assert!(!err.is_retryable());

        emu.push_fault(Fault::once(FaultKind::ErrorBody200));
        let err = e.client.chat(ask(model, "x")).await.unwrap_err();
        assert_ne!(
            err.kind(),
            ErrorKind::UpstreamProtocol,
            "{model}: 200 error body is classified: {err:?}"
        );

        emu.push_fault(Fault::once(FaultKind::ErrorBody200));
        let failed = match e.client.chat_stream(ask(model, "x")).await {
            Err(_) => true,
            Ok(s) => s.collect::<Vec<_>>().await.iter().any(Result::is_err),
        };
        assert!(failed, "{model}: 200 error body on a stream request");
    }
}

#[tokio::test]
async fn wrong_key_is_an_authentication_error_with_the_vendor_code() {
    let e = env().await;
    let bad = Client::builder()
        .without_env()
        .provider(
            "openai",
            ProviderSettings::with_api_key("sk-wrong-key-123").base_url(e.openai.base_url()),
        )
        .provider(
            "dashscope",
            ProviderSettings::with_api_key("sk-wrong").base_url(e.dashscope.base_url()),
        )
        .build()
        .unwrap();
    let err = bad.chat(ask("openai/gpt-4o-mini", "x")).await.unwrap_err();
    assert_eq!(
        (err.kind(), err.upstream_code()),
        (ErrorKind::Authentication, Some("invalid_api_key"))
    );
    assert!(
        !err.to_string().contains("sk-wrong-key-123"),
        "key leaked: {err}"
    );
    let err = bad
        .chat_stream(ask("dashscope/qwen-plus", "x"))
        .await
        .err()
        .unwrap();
    assert_eq!(
        (err.kind(), err.upstream_code()),
        (ErrorKind::Authentication, Some("InvalidApiKey"))
    );
    assert!(err.message().contains("the API key was rejected"));

    let bad = Client::builder()
        .without_env()
        .provider(
            "anthropic",
            ProviderSettings::with_api_key("sk-ant-wrong-key-123").base_url(e.anthropic.base_url()),
        )
        .provider(
            "gemini",
            ProviderSettings::with_api_key("AIza-wrong-key-123").base_url(e.gemini.base_url()),
        )
        .provider(
            "dashscope-anthropic",
            ProviderSettings::with_api_key("sk-wrong-key-456")
                .base_url(e.dashscope.base_url_for("dashscope-anthropic").unwrap()),
        )
        .build()
        .unwrap();
    for (model, code, key) in [
        (
            "anthropic/claude-sonnet-4-6",
            "authentication_error",
            "sk-ant-wrong-key-123",
        ),
        (
            "dashscope-anthropic/qwen-plus",
            "authentication_error",
            "sk-wrong-key-456",
        ),
        (
            "gemini/gemini-2.5-flash",
            "API_KEY_INVALID",
            "AIza-wrong-key-123",
        ),
    ] {
        let err = bad.chat(ask(model, "x")).await.unwrap_err();
        assert_eq!(
            (err.kind(), err.upstream_code()),
            (ErrorKind::Authentication, Some(code)),
            "{model}"
        );
        assert!(
            !format!("{err} {err:?}").contains(key),
            "key leaked: {err:?}"
        );
    }
}

#[tokio::test]
async fn the_request_log_shows_what_we_sent() {
    let e = env().await;
    let mut req = ask("dashscope/qwen-plus", "hi");
    req.temperature = Some(0.3);
    req.top_k = Some(20);
    req.enable_search = Some(true);
    req.stop = vec!["END".into()];
    e.client.chat(req).await.unwrap();
    let r = &e.dashscope.requests()[0];
    assert_eq!(r.path, "/api/v1/services/aigc/text-generation/generation");
    assert_eq!(
        r.header("authorization"),
        Some("Bearer sk-emulator-dashscope")
    );
    let body = r.json().unwrap();
    assert_eq!(
        body["input"]["messages"][0],
        json!({"role": "system", "content": "Be brief."})
    );
    assert_eq!(
        body["parameters"],
        json!({"result_format": "message", "temperature": 0.3, "top_k": 20, "enable_search": true, "stop": ["END"]})
    );
}

#[tokio::test]
async fn anthropic_and_gemini_requests_carry_their_headers_and_shapes() {
    let e = env().await;
    let mut req = ask("anthropic/claude-sonnet-4-6", "hi");
    req.temperature = Some(0.3);
    req.stop = vec!["END".into()];
    let answer = collect_stream(e.client.chat_stream(req.clone()).await.unwrap())
        .await
        .unwrap();
    assert_eq!(answer.text(), "You said: hi");
    let r = &e.anthropic.requests()[0];
    assert_eq!(r.path, "/v1/messages");
    assert_eq!(r.header("x-api-key"), Some(Vendor::Anthropic.default_key()));
    assert_eq!(r.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(r.header("authorization"), None);
    assert_eq!(
        r.json().unwrap(),
        json!({"model": "claude-sonnet-4-6", "max_tokens": 4096, "system": "Be brief.",
               "messages": [{"role": "user", "content": "hi"}], "stream": true,
               "temperature": 0.3, "stop_sequences": ["END"]})
    );

    req.model = "dashscope-anthropic/qwen-plus".into();
    e.client.chat(req.clone()).await.unwrap();
    let r = e.dashscope.requests().pop().unwrap();
    assert_eq!(r.path, "/apps/anthropic/v1/messages");
    assert_eq!(r.header("x-api-key"), Some(Vendor::DashScope.default_key()));

    req.model = "gemini/gemini-2.5-flash".into();
    let answer = collect_stream(e.client.chat_stream(req).await.unwrap())
        .await
        .unwrap();
    assert_eq!(answer.text(), "You said: hi");
    let r = &e.gemini.requests()[0];
    assert_eq!(
        r.path,
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    );
    assert_eq!(r.query.as_deref(), Some("alt=sse"));
    assert_eq!(
        r.header("x-goog-api-key"),
        Some(Vendor::Gemini.default_key())
    );
    assert_eq!(
        r.json().unwrap(),
        json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}],
               "systemInstruction": {"parts": [{"text": "Be brief."}]},
               "generationConfig": {"temperature": 0.3, "stopSequences": ["END"]}})
    );
}

#[tokio::test]
async fn dropping_a_stream_mid_answer_leaves_the_client_usable() {
    let openai = Emulator::start(
        EmulatorConfig::new(Vendor::OpenAi).with_token_interval(Duration::from_millis(50)),
    )
    .await
    .unwrap();
    let client = Client::builder()
        .without_env()
        .provider(
            "openai",
            ProviderSettings::with_api_key(Vendor::OpenAi.default_key())
                .base_url(openai.base_url()),
        )
        .build()
        .unwrap();
    let mut s = client
        .chat_stream(ask("openai/gpt-4o-mini", "a b c d e f g h i j k l m n o p"))
        .await
        .unwrap();
    let first = s.next().await.unwrap().unwrap();
    assert!(matches!(first, StreamEvent::Started { .. }));
    drop(s);
    // The client must still work (pool not poisoned by the dropped stream).
    let r = client
        .chat(ask("openai/gpt-4o-mini", "again"))
        .await
        .unwrap();
    assert_eq!(r.text(), "You said: again");
}
