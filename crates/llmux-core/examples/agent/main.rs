//! An agent with two typed tools against a local emulator of a provider, printing the streamed
//! events and the transcript.
//!
//! `cargo run -p llmux-core --example agent -- [PROVIDER] [CITY] [--model MODEL]` (defaults
//! `openai` `Paris`; any registered provider: `dashscope`, `hunyuan`, `ollama`, …). The model is
//! the emulator's default, or the provider's first well-known one; a provider with neither
//! (`pangu`) needs `--model`.
#![allow(clippy::print_stdout, missing_docs)]

mod setup;

use futures::StreamExt;
use llmux_core::agent::AgentEvent;
use llmux_core::{Message, StreamEvent};

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), String> {
    let mut positional = Vec::new();
    let mut model = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--model" => model = Some(args.next().ok_or("--model needs a model name")?),
            _ if arg.starts_with("--") => return Err(format!("unknown option {arg}")),
            _ => positional.push(arg),
        }
    }
    let mut positional = positional.into_iter();
    let provider = positional.next().unwrap_or_else(|| "openai".to_owned());
    let city = positional.next().unwrap_or_else(|| "Paris".to_owned());

    let model = setup::choose_model(&provider, model.as_deref())?;
    let (_emu, client) = setup::start(&provider).await?;
    let agent = setup::agent(client, &provider, &model);

    let mut events = agent.run_streaming(vec![Message::user(city)]);
    while let Some(ev) = events.next().await {
        match ev.map_err(|e| e.to_string())? {
            AgentEvent::StepStarted { step } => println!("-- step {step}"),
            AgentEvent::Model(StreamEvent::TextDelta { text }) => println!("model: {text:?}"),
            AgentEvent::ToolStarted { call, .. } => {
                println!("tool {} {} ...", call.name, call.arguments)
            }
            AgentEvent::ToolFinished { call, content, .. } => {
                println!("tool {} -> {content}", call.name)
            }
            AgentEvent::Finished(run) => {
                println!(
                    "== {:?} ({} steps, {} tokens)",
                    run.text(),
                    run.steps,
                    run.usage.total_tokens
                );
                for m in &run.transcript {
                    println!("{}", serde_json::to_string(m).map_err(|e| e.to_string())?);
                }
            }
            _ => {}
        }
    }
    Ok(())
}
