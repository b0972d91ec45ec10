//! `llmux channels …`: list, add, change, enable, disable, delete and test a running gateway's
//! channels through its admin API (`/admin/channels`), with its admin key. Every failure is one
//! line and a non-zero exit.

use std::collections::BTreeMap;

use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};

use crate::error::{CliError, Result};

/// How to reach the gateway.
#[derive(Debug, Clone, Args)]
pub struct GatewayArgs {
    /// The gateway's base URL.
    #[arg(long, env = "LLMUX_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// The gateway's admin key (`server.admin_key`).
    #[arg(long, env = "LLMUX_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<String>,
}

/// `llmux channels`.
#[derive(Debug, Args)]
pub struct ChannelsArgs {
    #[command(subcommand)]
    pub command: ChannelsCommand,
}

/// `llmux channels` subcommands.
#[derive(Debug, Subcommand)]
pub enum ChannelsCommand {
    /// List every channel: state, source, breaker, models and masked keys.
    List(GatewayArgs),
    /// Add a channel (stored in the gateway's database; every gateway on it picks it up).
    Add(ChannelFields),
    /// Change fields of a channel added through the API (the others stay).
    Update(ChannelFields),
    /// Stop sending traffic to a channel.
    Disable(NameArgs),
    /// Send traffic to a channel again (and close its breakers).
    Enable(NameArgs),
    /// Delete a channel added through the API.
    Delete(NameArgs),
    /// Make a one-token call through a channel; prints its latency, fails with the upstream's
    /// error.
    Test(TestArgs),
    /// Ask a channel's upstream which models it serves now (OpenAI-compatible `/models`,
    /// Ollama's `/api/tags`, DashScope's list); prints what the channel serves afterwards.
    Discover(NameArgs),
}

/// A channel name and the gateway.
#[derive(Debug, Args)]
pub struct NameArgs {
    /// The channel's name.
    pub name: String,
    #[command(flatten)]
    pub gateway: GatewayArgs,
}

/// `llmux channels test` flags.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// The channel's name.
    pub name: String,
    /// The model to call (default: the channel's first).
    #[arg(long)]
    pub model: Option<String>,
    #[command(flatten)]
    pub gateway: GatewayArgs,
}

/// The fields of `add` and `update` (those given are sent).
#[derive(Debug, Args)]
pub struct ChannelFields {
    /// The channel's name.
    pub name: String,
    #[command(flatten)]
    pub gateway: GatewayArgs,
    /// Provider id (`openai`, `dashscope`, …); required by `add`.
    #[arg(long)]
    pub provider: Option<String>,
    /// Endpoint override.
    #[arg(long)]
    pub base_url: Option<String>,
    /// Region (selects a regional host when no base URL is given).
    #[arg(long)]
    pub region: Option<String>,
    /// Models, comma-separated; `public=upstream` serves an upstream model under another name.
    #[arg(long, value_name = "A,B|PUBLIC=UPSTREAM,…")]
    pub models: Option<String>,
    /// Share of traffic within its priority.
    #[arg(long)]
    pub weight: Option<u32>,
    /// Higher priorities are tried first.
    #[arg(long, allow_hyphen_values = true)]
    pub priority: Option<i32>,
    /// Also serve `NAME/<any model>`.
    #[arg(long, value_name = "true|false", num_args = 0..=1, default_missing_value = "true")]
    pub passthrough: Option<bool>,
    /// An API key; repeat for keys used in rotation. (Visible to local users in the process
    /// list: prefer --api-key-env.)
    #[arg(long = "api-key", value_name = "KEY")]
    pub api_keys: Vec<String>,
    /// The name of an environment variable holding an API key; repeatable.
    #[arg(long = "api-key-env", value_name = "VAR")]
    pub api_key_envs: Vec<String>,
    /// Another credential field of the provider (`secret_id=…`); repeatable.
    #[arg(long = "credential", value_name = "FIELD=VALUE")]
    pub credentials: Vec<String>,
    /// Add the channel disabled.
    #[arg(long)]
    pub disabled: bool,
    /// Model discovery: `on-demand`, or an interval (`30m`, `6h`) at which the upstream's model
    /// list is read again.
    #[arg(long, value_name = "on-demand|INTERVAL")]
    pub discover: Option<String>,
}

/// Runs `llmux channels …`.
pub async fn run(args: ChannelsArgs) -> Result<()> {
    match args.command {
        ChannelsCommand::List(g) => {
            let v = call(&g, reqwest::Method::GET, "/admin/channels", None).await?;
            for c in v["channels"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
                println!("{}", line(c));
            }
        }
        ChannelsCommand::Add(f) => {
            if f.provider.is_none() {
                return Err(CliError::msg("--provider is required to add a channel"));
            }
            let body = fields(&f, true)?;
            let v = call(
                &f.gateway,
                reqwest::Method::POST,
                "/admin/channels",
                Some(body),
            )
            .await?;
            println!("{}", line(&v["channel"]));
        }
        ChannelsCommand::Update(f) => {
            let body = fields(&f, false)?;
            if body.len() <= 1 {
                return Err(CliError::msg(
                    "nothing to change: give --provider, --base-url, --region, --models, --weight, \
                     --priority, --passthrough, --api-key, --api-key-env, --credential or --discover",
                ));
            }
            let path = format!("/admin/channels/{}", segment(&f.name)?);
            let v = call(&f.gateway, reqwest::Method::PATCH, &path, Some(body)).await?;
            println!("{}", line(&v["channel"]));
        }
        ChannelsCommand::Disable(n) => set_enabled(&n, false).await?,
        ChannelsCommand::Enable(n) => set_enabled(&n, true).await?,
        ChannelsCommand::Delete(n) => {
            let path = format!("/admin/channels/{}", segment(&n.name)?);
            call(&n.gateway, reqwest::Method::DELETE, &path, None).await?;
            println!("deleted channel {}", n.name);
        }
        ChannelsCommand::Discover(n) => {
            let path = format!("/admin/channels/{}/discover", segment(&n.name)?);
            let v = call(&n.gateway, reqwest::Method::POST, &path, None).await?;
            let names = |key: &str| -> Vec<String> {
                v[key]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or(&[])
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            };
            let (upstream, models) = (names("upstream"), names("models"));
            println!(
                "discovered {}: {} upstream models ({} skipped); serves {}",
                n.name,
                upstream.len(),
                v["skipped"].as_u64().unwrap_or(0),
                models.join(",")
            );
        }
        ChannelsCommand::Test(t) => {
            let path = format!("/admin/channels/{}/test", segment(&t.name)?);
            let body = t
                .model
                .as_ref()
                .map(|m| Map::from_iter([("model".to_owned(), json!(m))]));
            let v = call(&t.gateway, reqwest::Method::POST, &path, body).await?;
            let latency = v["latency_ms"].as_u64().unwrap_or(0);
            let model = v["model"].as_str().unwrap_or("");
            if v["ok"].as_bool() == Some(true) {
                println!("ok {} model={model} latency_ms={latency}", t.name);
            } else {
                return Err(CliError::msg(format!(
                    "channel {} failed its test ({}, model={model}, latency_ms={latency}): {}",
                    t.name,
                    v["kind"].as_str().unwrap_or("error"),
                    v["error"]
                        .as_str()
                        .unwrap_or("no detail")
                        .replace('\n', " ")
                )));
            }
        }
    }
    Ok(())
}

async fn set_enabled(n: &NameArgs, on: bool) -> Result<()> {
    let path = format!("/admin/channels/{}", segment(&n.name)?);
    let body = Map::from_iter([("enabled".to_owned(), Value::Bool(on))]);
    let v = call(&n.gateway, reqwest::Method::PATCH, &path, Some(body)).await?;
    println!("{}", line(&v["channel"]));
    Ok(())
}

/// A channel name as a path segment: the characters names may hold, nothing to escape.
fn segment(name: &str) -> Result<&str> {
    if !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        Ok(name)
    } else {
        Err(CliError::msg(format!(
            "`{name}` is not a channel name (ASCII letters, digits, `.`, `_`, `-`)"
        )))
    }
}

/// The JSON fields to send.
fn fields(f: &ChannelFields, adding: bool) -> Result<Map<String, Value>> {
    let mut m = Map::new();
    m.insert("name".into(), json!(f.name));
    if let Some(p) = &f.provider {
        m.insert("provider".into(), json!(p));
    }
    if let Some(u) = &f.base_url {
        m.insert("base_url".into(), json!(u));
    }
    if let Some(r) = &f.region {
        m.insert("region".into(), json!(r));
    }
    if let Some(models) = &f.models {
        m.insert("models".into(), parse_models(models));
    }
    if let Some(w) = f.weight {
        m.insert("weight".into(), json!(w));
    }
    if let Some(p) = f.priority {
        m.insert("priority".into(), json!(p));
    }
    if let Some(p) = f.passthrough {
        m.insert("passthrough".into(), json!(p));
    }
    let mut keys = f.api_keys.clone();
    for var in &f.api_key_envs {
        match std::env::var(var) {
            Ok(v) if !v.is_empty() => keys.push(v),
            _ => {
                return Err(CliError::msg(format!(
                    "--api-key-env {var}: the variable is not set"
                )))
            }
        }
    }
    if let Some((first, rest)) = keys.split_first() {
        m.insert("api_key".into(), json!(first));
        m.insert("api_keys".into(), json!(rest));
    }
    for c in &f.credentials {
        let Some((field, value)) = c.split_once('=') else {
            return Err(CliError::msg(format!(
                "--credential takes FIELD=VALUE, got `{}`",
                c.split('=').next().unwrap_or("")
            )));
        };
        m.insert(field.trim().to_owned(), json!(value));
    }
    if adding && f.disabled {
        m.insert("enabled".into(), json!(false));
    }
    if let Some(d) = &f.discover {
        m.insert("discover".into(), json!(d));
    }
    Ok(m)
}

/// `a,b` → a list; with any `public=upstream` entry, a table.
fn parse_models(text: &str) -> Value {
    let items: Vec<&str> = text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if items.iter().any(|i| i.contains('=')) {
        let table: BTreeMap<&str, &str> = items
            .iter()
            .map(|i| {
                i.split_once('=')
                    .map_or((*i, *i), |(p, u)| (p.trim(), u.trim()))
            })
            .collect();
        json!(table)
    } else {
        json!(items)
    }
}

/// One channel as a line.
fn line(c: &Value) -> String {
    let models = c["models"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(p, u)| {
                    let u = u.as_str().unwrap_or("");
                    if p == u {
                        p.clone()
                    } else {
                        format!("{p}={u}")
                    }
                })
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let keys = c["keys"]
        .as_array()
        .map(|k| {
            k.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    format!(
        "{:<20} {:<12} {:<8} source={} breaker={} weight={} priority={} models={} keys={}",
        c["name"].as_str().unwrap_or(""),
        c["provider"].as_str().unwrap_or(""),
        if c["enabled"].as_bool() == Some(false) {
            "disabled"
        } else {
            "enabled"
        },
        c["source"].as_str().unwrap_or(""),
        c["breaker"].as_str().unwrap_or(""),
        c["weight"],
        c["priority"],
        if models.is_empty() {
            "-".to_owned()
        } else {
            models
        },
        if keys.is_empty() {
            "-".to_owned()
        } else {
            keys
        },
    )
}

/// One admin call; the answer's JSON, or the gateway's error as one line.
async fn call(
    g: &GatewayArgs,
    method: reqwest::Method,
    path: &str,
    body: Option<Map<String, Value>>,
) -> Result<Value> {
    let key = g
        .admin_key
        .as_deref()
        .filter(|k| !k.is_empty())
        .ok_or_else(|| CliError::msg("no admin key: pass --admin-key or set LLMUX_ADMIN_KEY"))?;
    let base = g.url.trim_end_matches('/');
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(90))
        .build()
        .map_err(|e| CliError::msg(format!("cannot build an HTTP client: {e}")))?;
    let mut req = client
        .request(method, format!("{base}{path}"))
        .bearer_auth(key);
    if let Some(b) = body {
        let bytes = serde_json::to_vec(&b).map_err(|e| CliError::msg(e.to_string()))?;
        req = req.header("content-type", "application/json").body(bytes);
    }
    let resp = req.send().await.map_err(|e| {
        CliError::msg(format!(
            "cannot reach the gateway at {base}: {}",
            without_url(&e)
        ))
    })?;
    let status = resp.status();
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| CliError::msg(format!("reading the gateway's answer: {}", without_url(&e))))?;
    let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if status.is_success() {
        return Ok(v);
    }
    let message = v["error"]["message"].as_str().map_or_else(
        || String::from_utf8_lossy(&bytes).chars().take(200).collect(),
        str::to_owned,
    );
    Err(CliError::msg(format!(
        "the gateway answered {}: {}",
        status.as_u16(),
        message.replace('\n', " ")
    )))
}

/// A reqwest error's text without the URL (already said by the caller).
fn without_url(e: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    if parts.is_empty() {
        e.to_string()
    } else {
        parts.join(": ")
    }
}
