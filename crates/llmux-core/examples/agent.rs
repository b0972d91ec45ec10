//! An agent with two typed tools against a local OpenAI emulator, printing the streamed
//! events and the transcript.
//!
//! `cargo run -p llmux-core --example agent -- [PROVIDER] [CITY]` (defaults `openai` `Paris`;
//! any provider with tools and an emulator: `dashscope`, `hunyuan`, `ollama`, …).
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs
)]

use std::collections::HashMap;

use futures::StreamExt;
use llmux_core::agent::{tool_fn, Agent, AgentEvent, JsonSchema, ToolError};
use llmux_core::providers::ProviderSettings;
use llmux_core::{Client, Message, StreamEvent};
use llmux_emulator::{Emulator, EmulatorConfig, Vendor};
use serde::Deserialize;

/// Current weather for a city.
#[derive(Deserialize, JsonSchema)]
struct GetWeather {
    /// The city, as the user wrote it.
    city: String,
}

/// Local time in a city.
#[derive(Deserialize, JsonSchema)]
struct GetTime {
    /// The city, as the user wrote it.
    city: String,
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let provider = args.next().unwrap_or_else(|| "openai".to_owned());
    let city = args.next().unwrap_or_else(|| "Paris".to_owned());

    let vendor = Vendor::for_provider(&provider).expect("a provider with an emulator");
    let emu = Emulator::start(EmulatorConfig::new(vendor)).await.unwrap();
    let env: HashMap<String, String> = emu.env_for(&provider).unwrap().into_iter().collect();
    let spec = llmux_core::providers::spec(&provider).unwrap();
    let client = Client::builder()
        .without_env()
        .provider(
            &provider,
            ProviderSettings::from_lookup(spec, |k| env.get(k).cloned()),
        )
        .build()
        .unwrap();
    let model = vendor
        .default_models()
        .first()
        .cloned()
        .unwrap_or_else(|| spec.models.first().unwrap().to_string());

    let agent = Agent::new(client, format!("{provider}/{model}"))
        .tool(tool_fn("get_weather", "", |a: GetWeather| async move {
            Ok::<_, ToolError>(format!("{}: 18 °C, sunny", a.city))
        }))
        .tool(tool_fn("get_time", "", |a: GetTime| async move {
            Ok::<_, ToolError>(format!("{}: 14:05", a.city))
        }))
        .max_steps(5);

    let mut events = agent.run_streaming(vec![Message::user(city)]);
    while let Some(ev) = events.next().await {
        match ev {
            Ok(AgentEvent::StepStarted { step }) => println!("-- step {step}"),
            Ok(AgentEvent::Model(StreamEvent::TextDelta { text })) => println!("model: {text:?}"),
            Ok(AgentEvent::ToolStarted { call, .. }) => {
                println!("tool {} {} ...", call.name, call.arguments)
            }
            Ok(AgentEvent::ToolFinished { call, content, .. }) => {
                println!("tool {} -> {content}", call.name)
            }
            Ok(AgentEvent::Finished(run)) => {
                println!(
                    "== {:?} ({} steps, {} tokens)",
                    run.text(),
                    run.steps,
                    run.usage.total_tokens
                );
                for m in &run.transcript {
                    println!("{}", serde_json::to_string(m).unwrap());
                }
            }
            Ok(_) => {}
            Err(e) => {
                println!("error: {e}");
                std::process::exit(1);
            }
        }
    }
}
