//! What the `agent` example sets up before it runs: the model to call for a provider, a client
//! pointed at that provider's emulator, and the agent with its two tools. `tests/agent_example.rs`
//! includes this file and runs the same setup for every registered provider.

use std::collections::HashMap;

use llmux_core::agent::{tool_fn, Agent, JsonSchema, ToolError};
use llmux_core::providers::ProviderSettings;
use llmux_core::Client;
use llmux_emulator::{Emulator, EmulatorConfig, Vendor};
use serde::Deserialize;

/// Current weather for a city.
#[derive(Deserialize, JsonSchema)]
pub struct GetWeather {
    /// The city, as the user wrote it.
    city: String,
}

/// Local time in a city.
#[derive(Deserialize, JsonSchema)]
pub struct GetTime {
    /// The city, as the user wrote it.
    city: String,
}

/// The model to call: `given` (the `--model` option) if any, else the emulator's first
/// default model, else the provider's first well-known model. A provider with neither (Pangu,
/// whose models are named per deployment) needs `--model`, and the error says so.
pub fn choose_model(provider: &str, given: Option<&str>) -> Result<String, String> {
    let spec = llmux_core::providers::spec(provider).map_err(|e| e.to_string())?;
    if let Some(model) = given {
        let model = model.trim();
        if model.is_empty() {
            return Err("--model needs a model name".to_owned());
        }
        return Ok(model.to_owned());
    }
    let vendor = Vendor::for_provider(provider)
        .ok_or_else(|| format!("provider `{provider}` has no emulator"))?;
    vendor
        .default_models()
        .into_iter()
        .next()
        .or_else(|| spec.models.first().map(|m| (*m).to_owned()))
        .ok_or_else(|| {
            format!(
                "provider `{provider}` has no default or well-known model; name one with --model MODEL"
            )
        })
}

/// Starts `provider`'s emulator and a client configured from its conventional variables.
pub async fn start(provider: &str) -> Result<(Emulator, Client), String> {
    let vendor = Vendor::for_provider(provider)
        .ok_or_else(|| format!("provider `{provider}` has no emulator"))?;
    let spec = llmux_core::providers::spec(provider).map_err(|e| e.to_string())?;
    let emu = Emulator::start(EmulatorConfig::new(vendor))
        .await
        .map_err(|e| format!("cannot start the {provider} emulator: {e}"))?;
    let env: HashMap<String, String> = emu
        .env_for(provider)
        .ok_or_else(|| format!("the emulator has no variables for `{provider}`"))?
        .into_iter()
        .collect();
    let client = Client::builder()
        .without_env()
        .provider(
            provider,
            ProviderSettings::from_lookup(spec, |k| env.get(k).cloned()),
        )
        .build()
        .map_err(|e| e.to_string())?;
    Ok((emu, client))
}

/// The agent: `get_weather` and `get_time`, at most five model calls.
pub fn agent(client: Client, provider: &str, model: &str) -> Agent {
    Agent::new(client, format!("{provider}/{model}"))
        .tool(tool_fn("get_weather", "", |a: GetWeather| async move {
            Ok::<_, ToolError>(format!("{}: 18 °C, sunny", a.city))
        }))
        .tool(tool_fn("get_time", "", |a: GetTime| async move {
            Ok::<_, ToolError>(format!("{}: 14:05", a.city))
        }))
        .max_steps(5)
}
