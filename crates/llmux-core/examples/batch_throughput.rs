//! Measures the batch API: N requests through an emulator with fixed latency at a given
//! concurrency, compared with the ideal N × latency / concurrency.
//!
//! `cargo run --release -p llmux-core --example batch_throughput -- [N] [LATENCY_MS] [CONCURRENCY]`
//! (defaults 1000 20 50).
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs
)]

use std::time::Duration;

use llmux_core::providers::ProviderSettings;
use llmux_core::{ChatRequest, Client, Message};
use llmux_emulator::{Emulator, EmulatorConfig, Vendor};

#[tokio::main]
async fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("numbers"))
        .collect();
    let n = args.first().copied().unwrap_or(1000) as usize;
    let latency = Duration::from_millis(args.get(1).copied().unwrap_or(20));
    let concurrency = args.get(2).copied().unwrap_or(50) as usize;
    let emu = Emulator::start(EmulatorConfig::new(Vendor::OpenAi).with_latency(latency))
        .await
        .unwrap();
    let client = Client::builder()
        .without_env()
        .provider(
            "openai",
            ProviderSettings::with_api_key(Vendor::OpenAi.default_key()).base_url(emu.base_url()),
        )
        .build()
        .unwrap();
    let reqs: Vec<_> = (0..n)
        .map(|i| {
            ChatRequest::new(
                "openai/gpt-4o-mini",
                vec![Message::user(format!("item {i}"))],
            )
        })
        .collect();
    let start = tokio::time::Instant::now();
    let results = client.batch(reqs, concurrency).await;
    let took = start.elapsed();
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let ideal = latency * n as u32 / concurrency as u32;
    println!(
        "{n} requests, {} ms latency, concurrency {concurrency}: {ok} ok in {:.3} s; ideal {:.3} s; ratio {:.2}",
        latency.as_millis(),
        took.as_secs_f64(),
        ideal.as_secs_f64(),
        took.as_secs_f64() / ideal.as_secs_f64()
    );
}
