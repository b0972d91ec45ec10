//! The provider conformance suite: the same scenarios over every registered provider, each
//! against its emulator, configured only through the provider's conventional environment
//! variables. Capabilities decide which cases apply; a capability a provider lacks must fail
//! with `Unsupported`, never silently.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;

use futures::StreamExt;
use llmux_core::providers::{ProviderSettings, REGISTRY};
use llmux_core::resilience::RetryPolicy;
use llmux_core::*;
use llmux_emulator::{Emulator, EmulatorConfig, Fault, FaultKind, Vendor};
use serde_json::json;

struct Subject {
    id: &'static str,
    emu: Emulator,
    env: HashMap<String, String>,
    model: String,
}

async fn subject(id: &'static str) -> Subject {
    let vendor =
        Vendor::for_provider(id).unwrap_or_else(|| panic!("provider `{id}` has no emulator"));
    let emu = Emulator::start(EmulatorConfig::new(vendor)).await.unwrap();
    let env: HashMap<String, String> = emu.env_for(id).unwrap().into_iter().collect();
    let spec = llmux_core::providers::spec(id).unwrap();
    let model = vendor
        .default_models()
        .first()
        .cloned()
        .or_else(|| spec.models.first().map(|m| (*m).to_owned()))
        .unwrap_or_else(|| "conformance-model".to_owned());
    Subject {
        id,
        emu,
        env,
        model,
    }
}

impl Subject {
    fn client_with(&self, env: &HashMap<String, String>) -> Client {
        let spec = llmux_core::providers::spec(self.id).unwrap();
        let settings = ProviderSettings::from_lookup(spec, |k| env.get(k).cloned());
        Client::builder()
            .without_env()
            .retry(RetryPolicy::none())
            .breaker(None)
            .provider(self.id, settings)
            .build()
            .unwrap()
    }

    fn client(&self) -> Client {
        self.client_with(&self.env)
    }

    fn addr(&self) -> String {
        format!("{}/{}", self.id, self.model)
    }

    fn ask(&self, text: &str) -> ChatRequest {
        ChatRequest::new(self.addr(), vec![Message::user(text)])
    }
}

fn assert_unsupported<T: std::fmt::Debug>(id: &str, what: &str, r: Result<T>) {
    match r {
        Err(e) => assert_eq!(
            e.kind(),
            ErrorKind::Unsupported,
            "{id}: {what} must be Unsupported: {e:?}"
        ),
        Ok(v) => panic!("{id}: {what} is not a capability but succeeded: {v:?}"),
    }
}

async fn run(id: &'static str) {
    let s = subject(id).await;
    let client = s.client();
    let provider = client.provider(id).unwrap();
    let caps = provider.capabilities();

    // Plain chat.
    let text = "conformance says hello";
    let full = client
        .chat(s.ask(text))
        .await
        .unwrap_or_else(|e| panic!("{id}: chat: {e:?}"));
    assert_eq!(full.text(), format!("You said: {text}"), "{id}");
    assert_eq!(full.finish_reason(), Some(&FinishReason::Stop), "{id}");
    let usage = full.usage.unwrap_or_else(|| panic!("{id}: no usage"));
    assert!(usage.output_tokens > 0, "{id}: {usage:?}");

    // Streaming: same text, invariants.
    if caps.streaming {
        let events: Vec<_> = client
            .chat_stream(s.ask(text))
            .await
            .unwrap()
            .collect()
            .await;
        let events: Vec<StreamEvent> = events
            .into_iter()
            .map(|e| e.unwrap_or_else(|e| panic!("{id}: {e:?}")))
            .collect();
        assert!(
            matches!(events.first(), Some(StreamEvent::Started { .. })),
            "{id}"
        );
        assert!(
            matches!(events.last(), Some(StreamEvent::Finished { .. })),
            "{id}"
        );
        assert_eq!(
            events
                .iter()
                .filter(|e| matches!(e, StreamEvent::Finished { .. }))
                .count(),
            1,
            "{id}"
        );
        assert!(
            events
                .iter()
                .filter(|e| matches!(e, StreamEvent::Usage(_)))
                .count()
                <= 1,
            "{id}"
        );
        let deltas: String = events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::TextDelta { text } => Some(text.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(deltas, full.text(), "{id}");
    } else {
        assert_unsupported(
            id,
            "streaming",
            client.chat_stream(s.ask(text)).await.map(|_| ()),
        );
    }

    // Tools.
    let mut with_tools = s.ask("Hangzhou");
    with_tools.tools = vec![Tool {
        name: "get_weather".into(),
        description: Some("Weather for a city".into()),
        parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
        strict: None,
    }];
    if caps.tools {
        let r = client
            .chat(with_tools)
            .await
            .unwrap_or_else(|e| panic!("{id}: tools: {e:?}"));
        assert_eq!(r.finish_reason(), Some(&FinishReason::ToolCalls), "{id}");
        let args: serde_json::Value = serde_json::from_str(&r.tool_calls()[0].arguments).unwrap();
        assert_eq!(args["city"], "Hangzhou", "{id}");
    } else {
        assert_unsupported(id, "tools", client.chat(with_tools).await);
    }

    // Embeddings.
    let embed_model = match id {
        "dashscope" | "dashscope-compat" => "text-embedding-v3".to_owned(),
        "ollama" => "nomic-embed-text".to_owned(),
        _ => s.model.clone(),
    };
    let embed = EmbeddingRequest::new(
        format!("{id}/{embed_model}"),
        vec!["a".into(), "b c".into()],
    );
    if caps.embeddings {
        let r = client
            .embed(embed)
            .await
            .unwrap_or_else(|e| panic!("{id}: embeddings: {e:?}"));
        assert_eq!(r.data.len(), 2, "{id}");
        assert!(
            !r.data[0].vector.is_empty() && r.data[0].vector.len() == r.data[1].vector.len(),
            "{id}"
        );
    } else {
        assert_unsupported(id, "embeddings", client.embed(embed).await);
    }

    // Model listing.
    if caps.list_models {
        assert!(
            !client
                .models(id)
                .await
                .unwrap_or_else(|e| panic!("{id}: models: {e:?}"))
                .is_empty(),
            "{id}"
        );
    } else {
        assert_unsupported(id, "listing models", client.models(id).await);
    }

    // A 500 is an upstream failure.
    s.emu.push_fault(Fault::once(FaultKind::Status {
        status: 500,
        body: None,
        retry_after: None,
    }));
    let err = client.chat(s.ask("x")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UpstreamServer, "{id}: {err:?}");

    // A wrong secret is an authentication error.
    let mut bad = s.env.clone();
    let mut corrupted = false;
    for (k, v) in bad.iter_mut() {
        if k.contains("KEY") || k.contains("SECRET") || k.contains("PASSWORD") {
            *v = format!("{v}-wrong");
            corrupted = true;
        }
    }
    if corrupted {
        let err = s.client_with(&bad).chat(s.ask("x")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Authentication, "{id}: {err:?}");
    }
}

macro_rules! conformance {
    ($($name:ident => $id:literal),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                run($id).await;
            }
        )*

        #[test]
        fn every_registered_provider_is_in_the_suite_and_has_an_emulator() {
            let covered = [$($id),*];
            for spec in REGISTRY {
                assert!(covered.contains(&spec.id), "provider `{}` is not in the conformance suite", spec.id);
                assert!(Vendor::for_provider(spec.id).is_some(), "provider `{}` has no emulator", spec.id);
            }
        }
    };
}

conformance! {
    openai => "openai",
    dashscope => "dashscope",
    dashscope_compat => "dashscope-compat",
    deepseek => "deepseek",
    moonshot => "moonshot",
    vllm => "vllm",
    hunyuan => "hunyuan",
    hunyuan_openai => "hunyuan-openai",
    spark => "spark",
    spark_http => "spark-http",
    pangu => "pangu",
    zhipu => "zhipu",
    ollama => "ollama",
    anthropic => "anthropic",
    dashscope_anthropic => "dashscope-anthropic",
    gemini => "gemini",
}
