//! Request flags shared by one-shot chat and the REPL, and the client they are sent with.

use clap::{Args, ValueEnum};
use llmux_core::providers::{self, ProviderSettings};
use std::time::Duration;

use llmux_core::resilience::{BreakerConfig, RetryPolicy, Timeouts};
use llmux_core::{ChatRequest, Client, ClientBuilder, ReasoningEffort, ResponseFormat, Thinking};
use serde_json::{Map, Value};

use crate::error::Result;

/// The model used when neither `-m` nor `LLMUX_MODEL` says otherwise.
pub const DEFAULT_MODEL: &str = "dashscope/qwen-plus";

/// `--response-format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// Free text.
    Text,
    /// Any JSON object.
    #[value(name = "json_object", alias = "json-object")]
    JsonObject,
}

/// `--reasoning-effort` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EffortArg {
    /// As little as the model allows.
    Minimal,
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
    /// Above high.
    Xhigh,
}

impl From<EffortArg> for ReasoningEffort {
    fn from(e: EffortArg) -> Self {
        match e {
            EffortArg::Minimal => ReasoningEffort::Minimal,
            EffortArg::Low => ReasoningEffort::Low,
            EffortArg::Medium => ReasoningEffort::Medium,
            EffortArg::High => ReasoningEffort::High,
            EffortArg::Xhigh => ReasoningEffort::XHigh,
        }
    }
}

/// `--thinking` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Toggle {
    /// Turn it on.
    On,
    /// Turn it off.
    Off,
}

/// Sampling and vendor options; every one is optional and unset ones are not sent.
#[derive(Debug, Clone, Default, Args)]
pub struct RequestArgs {
    /// System prompt sent before the conversation.
    #[arg(long, value_name = "TEXT")]
    pub system: Option<String>,
    /// Sampling temperature, 0 to 2.
    #[arg(long, value_name = "T", allow_negative_numbers = true)]
    pub temperature: Option<f64>,
    /// Nucleus sampling, (0, 1].
    #[arg(long, value_name = "P", allow_negative_numbers = true)]
    pub top_p: Option<f64>,
    /// Candidate set size (DashScope, vLLM).
    #[arg(long, value_name = "K")]
    pub top_k: Option<u32>,
    /// Output token cap.
    #[arg(long, value_name = "N")]
    pub max_tokens: Option<u32>,
    /// Stop sequence (repeatable).
    #[arg(long, value_name = "TEXT")]
    pub stop: Vec<String>,
    /// Sampling seed.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Repetition penalty, above 0 (1.0 = none).
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    pub repetition_penalty: Option<f64>,
    /// Presence penalty, -2 to 2.
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    pub presence_penalty: Option<f64>,
    /// Frequency penalty, -2 to 2.
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    pub frequency_penalty: Option<f64>,
    /// Shape of the answer.
    #[arg(long, value_name = "FORMAT")]
    pub response_format: Option<FormatArg>,
    /// Let the model search the web (DashScope `enable_search`).
    #[arg(long)]
    pub enable_search: bool,
    /// Thinking mode of hybrid-thinking models.
    #[arg(long, value_name = "on|off")]
    pub thinking: Option<Toggle>,
    /// Maximum reasoning tokens (turns thinking on).
    #[arg(long, value_name = "N", conflicts_with = "reasoning_effort")]
    pub thinking_budget: Option<u32>,
    /// How much to think (OpenAI `reasoning_effort`; a budget for vendors that take budgets).
    #[arg(long, value_name = "LEVEL")]
    pub reasoning_effort: Option<EffortArg>,
    /// Vendor-specific field passed verbatim, as KEY=JSON (repeatable; a bare word is a string).
    #[arg(long, value_name = "KEY=JSON", value_parser = parse_extra)]
    pub extra: Vec<(String, Value)>,
}

impl RequestArgs {
    /// Writes the options into `req` (messages and model are left alone).
    pub fn apply(&self, req: &mut ChatRequest) {
        req.temperature = self.temperature;
        req.top_p = self.top_p;
        req.top_k = self.top_k;
        req.max_tokens = self.max_tokens;
        req.stop.clone_from(&self.stop);
        req.seed = self.seed;
        req.repetition_penalty = self.repetition_penalty;
        req.presence_penalty = self.presence_penalty;
        req.frequency_penalty = self.frequency_penalty;
        req.response_format = self.response_format.map(|f| match f {
            FormatArg::Text => ResponseFormat::Text,
            FormatArg::JsonObject => ResponseFormat::JsonObject,
        });
        req.enable_search = self.enable_search.then_some(true);
        let thinking = Thinking {
            enabled: self.thinking.map(|t| t == Toggle::On),
            budget_tokens: self.thinking_budget,
            effort: self.reasoning_effort.map(ReasoningEffort::from),
        };
        req.thinking = (!thinking.is_empty()).then_some(thinking);
        let mut extra = Map::new();
        for (k, v) in &self.extra {
            extra.insert(k.clone(), v.clone());
        }
        req.extra = extra;
    }
}

/// Parses `--extra KEY=JSON`. A value that is not JSON is taken as a string, so
/// `--extra result_format=message` works without shell-quoting quotes.
pub fn parse_extra(s: &str) -> std::result::Result<(String, Value), String> {
    let (key, raw) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` must be KEY=JSON, for example enable_thinking=true"))?;
    let key = key.trim();
    if key.is_empty() {
        return Err(format!("`{s}` has an empty key"));
    }
    let raw = raw.trim();
    let value = match serde_json::from_str::<Value>(raw) {
        Ok(v) => v,
        Err(_) if looks_like_json(raw) => {
            return Err(format!("the value of `{key}` is not valid JSON: {raw}"));
        }
        Err(_) => Value::String(raw.to_owned()),
    };
    Ok((key.to_owned(), value))
}

fn looks_like_json(raw: &str) -> bool {
    raw.starts_with(['{', '[', '"'])
}

/// Checks `provider/model` names a registered provider; returns the provider id.
pub fn provider_of(model: &str) -> Result<&str> {
    let (pid, _) = providers::split_model(model)?;
    providers::spec(pid)?;
    Ok(pid)
}

/// A client reading keys and endpoints from the environment; `base_url` overrides the endpoint
/// of `provider_id`.
pub fn build_client(provider_id: &str, base_url: Option<&str>) -> Result<Client> {
    build_client_with(provider_id, base_url, None, &ResilienceArgs::default())
}

/// Retry and timeout flags (defaults: the library's production defaults).
#[derive(Debug, Clone, Default, Args)]
pub struct ResilienceArgs {
    /// Retries after the first attempt on transient errors (rate limits, 5xx, timeouts before
    /// the first token); 0 disables retrying. Default 2.
    #[arg(long, value_name = "N")]
    pub max_retries: Option<u32>,
    /// Total time for one call, e.g. 60s or 2m (0 = none). Default 10m.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// Time to the first token, e.g. 10s (0 = none). Default 60s.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub first_token_timeout: Option<Duration>,
    /// Longest gap between streamed tokens, e.g. 30s (0 = none). Default 60s.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub idle_timeout: Option<Duration>,
    /// Time to connect, e.g. 5s. Default 10s.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub connect_timeout: Option<Duration>,
    /// How long a circuit breaker stays open after repeated upstream failures before one
    /// probe goes through, e.g. 5s. Default 30s.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub breaker_cool_down: Option<Duration>,
}

fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    llmux_core::resilience::retry::humantime_serde::parse_duration(s)
}

impl ResilienceArgs {
    /// Applies the flags to a client builder.
    pub fn apply(&self, mut b: ClientBuilder) -> ClientBuilder {
        if let Some(n) = self.max_retries {
            b = b.retry(RetryPolicy {
                max_attempts: n.saturating_add(1),
                ..RetryPolicy::default()
            });
        }
        let mut t = Timeouts::default();
        if let Some(d) = self.timeout {
            t.total = d;
        }
        if let Some(d) = self.first_token_timeout {
            t.first_event = d;
        }
        if let Some(d) = self.idle_timeout {
            t.idle = d;
        }
        if let Some(d) = self.connect_timeout {
            t.connect = d;
        }
        if let Some(d) = self.breaker_cool_down {
            b = b.breaker(Some(BreakerConfig {
                cool_down: d,
                ..BreakerConfig::default()
            }));
        }
        b.timeouts(t)
    }
}

/// Like [`build_client`], with resilience flags and, for `--emulate`, the emulator's variables
/// (read instead of the process environment for that provider).
pub fn build_client_with(
    provider_id: &str,
    base_url: Option<&str>,
    emulated_env: Option<&[(String, String)]>,
    resilience: &ResilienceArgs,
) -> Result<Client> {
    let mut builder = resilience.apply(Client::builder());
    let mut settings = match emulated_env {
        Some(env) => {
            let spec = providers::spec(provider_id)?;
            ProviderSettings::from_lookup(spec, |k| {
                env.iter()
                    .find(|(name, _)| name == k)
                    .map(|(_, v)| v.clone())
            })
        }
        None => ProviderSettings::default(),
    };
    if let Some(url) = base_url {
        settings = settings.base_url(url);
    }
    if emulated_env.is_some() || base_url.is_some() {
        builder = builder.provider(provider_id, settings);
    }
    Ok(builder.build()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn extra_values_are_json_or_plain_strings() {
        assert_eq!(parse_extra("a=1").unwrap(), ("a".into(), json!(1)));
        assert_eq!(
            parse_extra("a={\"b\":[true]}").unwrap(),
            ("a".into(), json!({"b": [true]}))
        );
        assert_eq!(
            parse_extra("result_format=message").unwrap(),
            ("result_format".into(), json!("message"))
        );
        assert_eq!(parse_extra("a=null").unwrap(), ("a".into(), Value::Null));
        assert!(parse_extra("noequals").is_err());
        assert!(parse_extra("=1").is_err());
        assert!(parse_extra("a={broken").is_err());
    }

    #[test]
    fn budget_alone_turns_thinking_on() {
        let args = RequestArgs {
            thinking_budget: Some(100),
            ..Default::default()
        };
        let mut req = ChatRequest::default();
        args.apply(&mut req);
        assert_eq!(req.thinking, Some(Thinking::budget(100)));
        assert_eq!(req.thinking.unwrap().wanted(), Some(true));
        let args = RequestArgs {
            reasoning_effort: Some(EffortArg::Xhigh),
            ..Default::default()
        };
        args.apply(&mut req);
        assert_eq!(req.thinking, Some(Thinking::effort(ReasoningEffort::XHigh)));
    }

    #[test]
    fn unset_options_stay_unset() {
        let mut req = ChatRequest::default();
        RequestArgs::default().apply(&mut req);
        assert_eq!(req, ChatRequest::default());
    }

    #[test]
    fn unknown_provider_lists_known_ones() {
        let err = provider_of("nope/x").unwrap_err().to_string();
        assert!(err.contains("unknown provider `nope`"), "{err}");
        assert!(err.contains("dashscope") && err.contains("openai"), "{err}");
        assert_eq!(provider_of("dashscope/qwen-plus").unwrap(), "dashscope");
    }
}
