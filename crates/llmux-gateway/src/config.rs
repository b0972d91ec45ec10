//! Configuration: `llmux.toml` as plain serde data ([`RawConfig`]), environment overrides
//! (`LLMUX__SERVER__LISTEN`), and [`Config::resolve`], which validates everything and builds one
//! [`llmux_core::Client`] per channel.
//!
//! Layers, lowest first: serde defaults < the TOML file < `LLMUX__<SECTION>__<KEY>` variables <
//! CLI flags. Nothing after [`Config::resolve`] reads the environment again. Errors name the
//! path of the offending value (`channels[1].weight: invalid type: …`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use llmux_core::providers::{self, Provider, ProviderSettings, ProviderSpec, REGISTRY};
use llmux_core::resilience::retry::humantime_serde;
use llmux_core::resilience::{BreakerConfig, RetryPolicy, Timeouts};
use llmux_core::{Client, SecretString};
use serde::Deserialize;

use crate::usage::{Currency, Durability, ModelPrice, Money};

/// The default request body limit: 4 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// The default `server.header_read_timeout`.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The default `server.idle_timeout`: longer than the 60 s idle timeout common in load
/// balancers, so the gateway is never the side that closes a connection the balancer is reusing.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(75);
/// The default `server.body_read_timeout`.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// The default `server.max_connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// The default `server.max_header_bytes`: 32 KiB.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 32 * 1024;
/// The smallest accepted `server.max_header_bytes` (the HTTP/1 parser's own minimum buffer).
pub const MIN_MAX_HEADER_BYTES: usize = 8 * 1024;

/// The default `server.redis_prefix`.
pub const DEFAULT_REDIS_PREFIX: &str = "llmux:";

/// The shortest time a budget reservation is held in Redis before it expires (see
/// [`RedisConfig::reservation_ttl`]).
pub const MIN_RESERVATION_TTL: Duration = Duration::from_secs(15 * 60);

/// The whole file, as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `[server]`.
    #[serde(default)]
    pub server: RawServer,
    /// `[resilience]`: retries, timeouts and breakers applied to every channel.
    #[serde(default)]
    pub resilience: RawResilience,
    /// `[[channels]]`.
    #[serde(default)]
    pub channels: Vec<RawChannel>,
    /// `[metrics]`: the Prometheus series' label limits.
    #[serde(default)]
    pub metrics: RawMetrics,
    /// `[telemetry]`: OpenTelemetry traces over OTLP.
    #[serde(default)]
    pub telemetry: RawTelemetry,
    /// `[cache]`: the response cache (none without the table).
    #[serde(default)]
    pub cache: Option<crate::cache::RawCache>,
    /// `[events]`: usage events published to NATS JetStream.
    #[serde(default)]
    pub events: Option<crate::events::RawEvents>,
}

/// `server.log_format`: how `llmux serve` writes its log lines to stderr.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (the default).
    #[default]
    Text,
    /// One JSON object per line, with the same fields as the text lines.
    Json,
}

/// The default `metrics.max_key_labels`.
pub const DEFAULT_MAX_KEY_LABELS: usize = 100;

/// `[metrics]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawMetrics {
    /// Distinct keys that get their own `key` label in the per-key series; requests of any
    /// further key are counted under `key="other"` (0: every key is `other`).
    pub max_key_labels: usize,
}

impl Default for RawMetrics {
    fn default() -> Self {
        RawMetrics {
            max_key_labels: DEFAULT_MAX_KEY_LABELS,
        }
    }
}

/// `[telemetry]`: OpenTelemetry traces, off unless `otlp_endpoint` is set.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTelemetry {
    /// The OTLP/HTTP collector's base URL (`http://host:4318`; spans go to `/v1/traces` under
    /// it), or the full URL of its traces endpoint (ending in `/v1/traces`).
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported spans.
    pub service_name: String,
    /// Share of traces started here that are kept, from 0 to 1; a trace whose parent came in
    /// a `traceparent` header follows the parent's sampling decision.
    pub sample_ratio: f64,
}

impl Default for RawTelemetry {
    fn default() -> Self {
        RawTelemetry {
            otlp_endpoint: None,
            service_name: "llmux".into(),
            sample_ratio: 1.0,
        }
    }
}

/// Resolved `[telemetry]`.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryConfig {
    /// Where spans are posted (the full `…/v1/traces` URL); `None`: tracing is off.
    pub otlp_traces_url: Option<String>,
    /// `service.name`.
    pub service_name: String,
    /// Share of new traces kept (0 to 1).
    pub sample_ratio: f64,
}

/// `[server]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawServer {
    /// Address to listen on (`127.0.0.1:8080`).
    pub listen: String,
    /// `sqlite://PATH` or `postgres://…` (literal or `env:VAR`).
    pub database: Option<String>,
    /// `redis://[user:password@]host[:port][/db]`, `unix:///path`, or
    /// `redis+cluster://[user:password@]host:port[,host:port…]` for a Redis Cluster (`rediss…`
    /// with TLS; literal or `env:VAR`): per-key limits shared by every gateway that uses the same
    /// Redis and prefix.
    pub redis: Option<String>,
    /// Prefix of every Redis key this gateway writes, so deployments can share one Redis.
    pub redis_prefix: String,
    /// PEM file with the CA certificate(s) that sign a `rediss://` (or `rediss+cluster://`)
    /// server's certificate; when set, only these are trusted (otherwise the system's CAs).
    pub redis_ca_file: Option<PathBuf>,
    /// Key for `/admin/*` (literal or `env:VAR`); without it the admin endpoints are off.
    pub admin_key: Option<String>,
    /// Static client keys (literal or `env:VAR` each) accepted as `Authorization: Bearer`.
    pub api_keys: Vec<String>,
    /// Largest accepted request body in bytes.
    pub max_body_bytes: usize,
    /// How long shutdown waits for in-flight requests and streams.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Interval of `: ping` comments on idle streams.
    #[serde(with = "humantime_serde")]
    pub keepalive: Duration,
    /// How long a new connection has to send its first request head, and a kept-alive one to
    /// finish a head it has begun; slower connections are closed.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// How long a kept-alive connection may wait, with no request in flight, for its next
    /// request to begin before it is closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// How long the whole request body may take to arrive once the gateway reads it (408 after).
    #[serde(with = "humantime_serde")]
    pub body_read_timeout: Duration,
    /// Open client connections at most; beyond it new ones wait in the listen backlog.
    pub max_connections: usize,
    /// Largest request head (request line and header fields) in bytes (431 beyond it).
    pub max_header_bytes: usize,
    /// How long a virtual key found in the store is reused from memory (zero: look it up on
    /// every request). Revocations through this gateway's admin API apply at once; others
    /// within this time.
    #[serde(with = "humantime_serde")]
    pub key_cache_ttl: Duration,
    /// While the database fails, how long after a key was last read its last known record is
    /// still accepted (zero: refuse with 503 as soon as the store fails).
    #[serde(with = "humantime_serde")]
    pub key_stale_if_error: Duration,
    /// Days usage rows are kept.
    pub retention_days: u32,
    /// IANA time zone of daily, weekly and monthly budget periods (default `UTC`).
    pub budget_timezone: String,
    /// Default per-key limits.
    pub limits: RawLimits,
    /// Prices per public model (or `provider/upstream_model`), over the built-in table.
    pub prices: BTreeMap<String, ModelPrice>,
    /// The accounting currency: every cost, usage record and cost budget is in it.
    pub currency: Currency,
    /// Units of `currency` per unit of another currency (`CNY = 0.14`), to convert prices
    /// billed in it.
    pub exchange_rates: BTreeMap<Currency, f64>,
    /// `sync` (requests journaled, records durable before the answer ends) or `relaxed`
    /// (periodic flush).
    pub usage_durability: Durability,
    /// Where `sync` journals requests: a directory for the local file journal, or `database`
    /// for the store's own journal. Default: `PATH-ledger` beside a `sqlite://PATH` database,
    /// `database` otherwise.
    pub usage_journal: Option<String>,
    /// The longest a request waits for its usage commit in `sync` mode (database journal).
    #[serde(with = "humantime_serde")]
    pub usage_commit_timeout: Duration,
    /// This instance's lease in the store: renewed every third of it; once it lapses (the
    /// process died), other gateways record its requests in flight as interrupted.
    #[serde(with = "humantime_serde")]
    pub instance_lease: Duration,
    /// `text` (default) or `json`: the format of `llmux serve`'s log lines.
    pub log_format: LogFormat,
    /// How often the channels stored in the database are checked for changes (one
    /// single-row query; a change reloads the routing table).
    #[serde(with = "humantime_serde")]
    pub channel_refresh: Duration,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            listen: "127.0.0.1:8080".into(),
            database: None,
            redis: None,
            redis_prefix: DEFAULT_REDIS_PREFIX.into(),
            redis_ca_file: None,
            admin_key: None,
            api_keys: Vec::new(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            shutdown_grace: Duration::from_secs(30),
            keepalive: Duration::from_secs(15),
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            key_cache_ttl: Duration::from_secs(10),
            key_stale_if_error: crate::auth::DEFAULT_STALE_IF_ERROR,
            retention_days: 90,
            budget_timezone: "UTC".into(),
            limits: RawLimits::default(),
            prices: BTreeMap::new(),
            currency: Currency::USD,
            exchange_rates: BTreeMap::new(),
            usage_durability: Durability::Sync,
            usage_journal: None,
            usage_commit_timeout: Duration::from_secs(2),
            instance_lease: Duration::from_secs(30),
            log_format: LogFormat::Text,
            channel_refresh: DEFAULT_CHANNEL_REFRESH,
        }
    }
}

/// The default `server.channel_refresh`.
pub const DEFAULT_CHANNEL_REFRESH: Duration = Duration::from_secs(2);

/// `[server.limits]`: defaults for keys that do not set their own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLimits {
    /// Requests per minute per key.
    pub rpm: Option<u32>,
    /// Tokens per minute per key.
    pub tpm: Option<u64>,
    /// Spending budget per key, in the price unit.
    pub budget: Option<f64>,
}

/// `[resilience]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawResilience {
    /// Retries per channel before failing over.
    pub retry: RetryPolicy,
    /// Timeouts per upstream call.
    pub timeouts: Timeouts,
    /// Circuit breaker per channel.
    pub breaker: BreakerConfig,
}

impl Default for RawResilience {
    fn default() -> Self {
        // Fail over quickly: one retry on the same channel, then the next channel.
        RawResilience {
            retry: RetryPolicy {
                max_attempts: 2,
                ..RetryPolicy::default()
            },
            timeouts: Timeouts::default(),
            breaker: BreakerConfig::default(),
        }
    }
}

/// `models = [...]` (public name = upstream name) or `models = { public = "upstream" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawModels {
    /// Names served as they are.
    List(Vec<String>),
    /// Public name → upstream model.
    Table(BTreeMap<String, String>),
}

impl Default for RawModels {
    fn default() -> Self {
        RawModels::List(Vec::new())
    }
}

/// One `[[channels]]` entry (and the body of `POST /admin/channels`). Its `Debug` never shows
/// credential values.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawChannel {
    /// Unique name (metrics label, admin view, `name/model` addressing).
    pub name: String,
    /// Provider id from the core registry (`openai`, `dashscope`, …).
    pub provider: String,
    /// Endpoint override.
    #[serde(default)]
    pub base_url: Option<String>,
    /// Region (selects a regional host when no base URL is given).
    #[serde(default)]
    pub region: Option<String>,
    /// The models this channel serves.
    #[serde(default)]
    pub models: RawModels,
    /// Relative share of traffic within its priority.
    #[serde(default = "one")]
    pub weight: u32,
    /// Higher priorities are tried first; lower ones only when all higher ones fail or are open.
    #[serde(default)]
    pub priority: i32,
    /// Also serve any `name/<upstream model>` address through this channel.
    #[serde(default)]
    pub passthrough: bool,
    /// Credentials by the provider's field names (`api_key`, `secret_id`, …); literal or `env:VAR`.
    /// In the file they are written directly in the channel table.
    #[serde(default)]
    pub credentials: BTreeMap<String, String>,
    /// More API keys used in rotation beside `api_key` (literal or `env:VAR` each): requests
    /// take the channel's keys round-robin, skipping a key the upstream rejected until its
    /// breaker's trial (see [`Channel::pick`]).
    #[serde(default)]
    pub api_keys: Vec<String>,
    /// A disabled channel is listed but gets no traffic.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Ask the upstream for its models when the channel starts and then about this often
    /// (`"1h"`, 1m to 168h); absent or `"on-demand"`: only through `POST
    /// /admin/channels/{name}/discover`. The listed models are served beside `models` (see
    /// [`crate::discovery`]).
    #[serde(default, deserialize_with = "crate::discovery::deserialize_interval")]
    pub discover: Option<Duration>,
    /// `models` is the provider's built-in list rather than the operator's (channels made from
    /// provider variables): a discovered list replaces it instead of adding to it.
    #[serde(skip)]
    pub builtin_models: bool,
}

impl fmt::Debug for RawChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawChannel")
            .field("name", &self.name)
            .field("provider", &self.provider)
            .field("base_url", &self.base_url)
            .field("region", &self.region)
            .field("models", &self.models)
            .field("weight", &self.weight)
            .field("priority", &self.priority)
            .field("passthrough", &self.passthrough)
            .field("credentials", &self.credentials.keys().collect::<Vec<_>>())
            .field("api_keys", &self.api_keys.len())
            .field("enabled", &self.enabled)
            .field("discover", &self.discover)
            .field("builtin_models", &self.builtin_models)
            .finish()
    }
}

fn one() -> u32 {
    1
}

fn yes() -> bool {
    true
}

/// One problem, with the path of the value it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// `channels[1].weight`, or empty for the whole file.
    pub path: String,
    /// What is wrong, as a sentence fragment.
    pub message: String,
}

/// Everything wrong with a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The problems, in file order.
    pub issues: Vec<ConfigIssue>,
}

impl ConfigError {
    fn one(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            issues: vec![ConfigIssue {
                path: path.into(),
                message: message.into(),
            }],
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, issue) in self.issues.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            if issue.path.is_empty() {
                f.write_str(&issue.message)?;
            } else {
                write!(f, "{}: {}", issue.path, issue.message)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Every credential field name any registered provider takes.
fn credential_fields() -> BTreeSet<&'static str> {
    REGISTRY
        .iter()
        .flat_map(|s| s.credentials.iter().map(|c| c.field))
        .collect()
}

/// Turns an environment value into TOML: numbers, booleans and arrays parse, anything else is a string.
fn env_value(raw: &str) -> toml::Value {
    match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.to_owned())),
        Err(_) => toml::Value::String(raw.to_owned()),
    }
}

impl RawConfig {
    /// Parses a file's text; `env` yields `(name, value)` pairs, of which `LLMUX__A__B` ones
    /// override `a.b`.
    pub fn parse(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<RawConfig, ConfigError> {
        let mut root: toml::Table = toml::from_str(text).map_err(|e| {
            let mut msg = e.message().trim().to_owned();
            if let Some(span) = e.span() {
                let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                msg = format!("line {line}: {msg}");
            }
            ConfigError::one("", format!("not valid TOML: {msg}"))
        })?;
        apply_env(&mut root, env);
        // Credentials are written directly in each channel table; move them aside so the
        // channel struct can deny every other unknown key with its path.
        let fields = credential_fields();
        if let Some(toml::Value::Array(channels)) = root.get_mut("channels") {
            for ch in channels.iter_mut() {
                if let toml::Value::Table(t) = ch {
                    let keys: Vec<String> = t
                        .keys()
                        .filter(|k| fields.contains(k.as_str()))
                        .cloned()
                        .collect();
                    let mut creds = toml::Table::new();
                    for k in keys {
                        if let Some(v) = t.remove(&k) {
                            creds.insert(k, v);
                        }
                    }
                    if !creds.is_empty() {
                        t.insert("credentials".into(), toml::Value::Table(creds));
                    }
                }
            }
        }
        serde_path_to_error::deserialize(toml::Value::Table(root)).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            ConfigError::one(path, e.inner().to_string())
        })
    }

    /// With no file: one channel per provider whose variables are set, named after the
    /// provider, serving its well-known models as `provider/model` and any other model by
    /// passthrough addressing.
    pub fn from_provider_env(
        env: impl IntoIterator<Item = (String, String)>,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<RawConfig, ConfigError> {
        let mut raw = RawConfig::parse("", env)?;
        for spec in REGISTRY {
            let set = ProviderSettings::from_lookup(spec, &lookup);
            let required_ok = spec
                .credentials
                .iter()
                .filter(|c| !c.optional)
                .all(|c| set.credentials.contains_key(c.field));
            let has_required = spec.credentials.iter().any(|c| !c.optional);
            let configured = if has_required {
                required_ok
            } else {
                set.base_url.is_some()
            };
            if !configured {
                continue;
            }
            let mut credentials = BTreeMap::new();
            for c in spec.credentials {
                if let Some(var) = c
                    .env
                    .iter()
                    .find(|v| lookup(v).is_some_and(|x| !x.is_empty()))
                {
                    credentials.insert(c.field.to_owned(), format!("env:{var}"));
                }
            }
            raw.channels.push(RawChannel {
                name: spec.id.to_owned(),
                provider: spec.id.to_owned(),
                base_url: set.base_url,
                region: set.region,
                models: RawModels::Table(
                    spec.models
                        .iter()
                        .map(|m| (format!("{}/{m}", spec.id), (*m).to_owned()))
                        .collect(),
                ),
                weight: 1,
                priority: 0,
                passthrough: true,
                credentials,
                api_keys: Vec::new(),
                enabled: true,
                // A provider without a required credential is a self-hosted runtime (Ollama,
                // vLLM): it serves what its operator loaded, so its built-in names are only
                // examples and its own list is asked for.
                discover: (!has_required).then_some(crate::discovery::DEFAULT_ENV_INTERVAL),
                builtin_models: true,
            });
        }
        Ok(raw)
    }
}

/// `server.currency`, `server.exchange_rates` and `server.prices`, checked: prices finite and
/// within bounds, rates finite and above 0.
fn money(s: &RawServer, issues: &mut Vec<ConfigIssue>) -> Money {
    for (model, p) in &s.prices {
        if !p.is_valid() {
            issues.push(ConfigIssue {
                path: format!("server.prices.\"{model}\""),
                message: format!(
                    "every price must be a finite number from 0 to {}",
                    crate::usage::price::MAX_PRICE_PER_MTOK
                ),
            });
        }
        if let Some(c) = p.currency {
            if c != s.currency && !p.is_free() && !s.exchange_rates.contains_key(&c) {
                issues.push(ConfigIssue {
                    path: format!("server.prices.\"{model}\".currency"),
                    message: format!(
                        "{c} is not the accounting currency ({}) and server.exchange_rates has no rate for it",
                        s.currency
                    ),
                });
            }
        }
    }
    Money::new(s.currency, s.exchange_rates.clone()).unwrap_or_else(|e| {
        let path = match &e {
            crate::usage::PriceError::Rate { currency } => {
                format!("server.exchange_rates.{currency}")
            }
            _ => "server.exchange_rates".to_owned(),
        };
        issues.push(ConfigIssue {
            path,
            message: e.to_string(),
        });
        Money::default()
    })
}

fn apply_env(root: &mut toml::Table, env: impl IntoIterator<Item = (String, String)>) {
    for (name, value) in env {
        let Some(rest) = name.strip_prefix("LLMUX__") else {
            continue;
        };
        let parts: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        if parts.iter().any(String::is_empty) || parts.len() < 2 {
            continue;
        }
        set_path(root, &parts, env_value(&value));
    }
}

/// Sets `parts` (a dotted path) in `table`, creating tables on the way; a non-table in the
/// way leaves the file's value alone.
fn set_path(table: &mut toml::Table, parts: &[String], value: toml::Value) {
    match parts {
        [] => {}
        [last] => {
            table.insert(last.clone(), value);
        }
        [first, rest @ ..] => {
            let entry = table
                .entry(first.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(t) = entry {
                set_path(t, rest, value);
            }
        }
    }
}

/// Resolved `[server]`.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Database URL (may hold a password, hence secret).
    pub database: Option<SecretString>,
    /// Shared per-key limits in Redis, when `server.redis` is set.
    pub redis: Option<RedisConfig>,
    /// Admin key.
    pub admin_key: Option<SecretString>,
    /// Static client keys.
    pub api_keys: Vec<SecretString>,
    /// Body limit in bytes.
    pub max_body_bytes: usize,
    /// Shutdown drain time.
    pub shutdown_grace: Duration,
    /// Keep-alive comment interval on idle streams.
    pub keepalive: Duration,
    /// Client connection limits and timeouts, applied before any request is read.
    pub connections: ConnectionLimits,
    /// How long found virtual keys are reused from memory (zero: not cached).
    pub key_cache_ttl: Duration,
    /// How long a key's last known record answers for a failing store.
    pub key_stale_if_error: Duration,
    /// Usage retention in days.
    pub retention_days: u32,
    /// The time zone of budget periods (`server.budget_timezone`).
    pub budget_calendar: crate::limits::BudgetCalendar,
    /// Default per-key limits.
    pub limits: RawLimits,
    /// Prices per public model (or `provider/upstream_model`).
    pub prices: BTreeMap<String, ModelPrice>,
    /// The accounting currency and the exchange rates into it.
    pub money: Money,
    /// How usage reaches the store.
    pub usage_durability: Durability,
    /// Where `sync` durability journals requests.
    pub usage_journal: UsageJournal,
    /// The longest a request waits for its usage commit (`sync` mode, database journal).
    pub usage_commit_timeout: Duration,
    /// This instance's lease in the store.
    pub instance_lease: Duration,
    /// The log lines' format.
    pub log_format: LogFormat,
    /// `[metrics]`.
    pub metrics: RawMetrics,
    /// `[telemetry]`.
    pub telemetry: TelemetryConfig,
    /// `[events]`, when usage events are published.
    pub events: Option<crate::events::EventsConfig>,
    /// How often stored channels are checked for changes.
    pub channel_refresh: Duration,
    /// The key that encrypts upstream credentials stored in the database
    /// (`LLMUX_MASTER_KEY`); without it the admin API stores no credentials.
    pub master_key: Option<crate::channels::MasterKey>,
    /// `[cache]`, when the response cache is on.
    pub cache: Option<crate::cache::CacheConfig>,
}

/// Resolved `server.usage_journal`: where `sync` durability journals a request before its first
/// upstream call and keeps its record until the store has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsageJournal {
    /// The store's own journal (`gw_inflight`), each entry an awaited group commit; what a dead
    /// gateway left is recovered through instance leases, by any gateway on the same store.
    Database,
    /// The local file journal in this directory ([`crate::usage::journal`]): appended by the
    /// request itself, recovered by the next gateway started on the directory.
    Directory(PathBuf),
}

impl UsageJournal {
    /// The default for a database URL: `PATH-ledger` beside a `sqlite://PATH` file, the
    /// database's journal for PostgreSQL and in-memory SQLite.
    pub fn default_for(database: &str) -> UsageJournal {
        match sqlite_file(database) {
            Some(path) => {
                let mut dir = path.into_os_string();
                dir.push("-ledger");
                UsageJournal::Directory(PathBuf::from(dir))
            }
            None => UsageJournal::Database,
        }
    }
}

/// The file of a `sqlite://PATH` (or `sqlite:PATH`) URL; `None` for in-memory databases and
/// other URLs.
fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path == ":memory:" || query.split('&').any(|p| p == "mode=memory") {
        return None;
    }
    let path = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
    Some(PathBuf::from(path.as_ref()))
}

/// Resolved `server.header_read_timeout`, `idle_timeout`, `body_read_timeout`,
/// `max_connections` and `max_header_bytes` (see `docs/gateway.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Time for a new connection's first request head, or for a begun head on a kept-alive one.
    pub header_read_timeout: Duration,
    /// Time a kept-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// Time for a whole request body once the gateway reads it.
    pub body_read_timeout: Duration,
    /// Open connections at most.
    pub max_connections: usize,
    /// Largest request head in bytes.
    pub max_header_bytes: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
        }
    }
}

/// Checks the `[server]` connection settings; every problem becomes an issue with its path.
fn connection_limits(s: &RawServer, issues: &mut Vec<ConfigIssue>) -> ConnectionLimits {
    const SHORTEST: Duration = Duration::from_millis(100);
    const LONGEST: Duration = Duration::from_secs(3600);
    for (key, d) in [
        ("header_read_timeout", s.header_read_timeout),
        ("idle_timeout", s.idle_timeout),
        ("body_read_timeout", s.body_read_timeout),
    ] {
        if d < SHORTEST || d > LONGEST {
            issues.push(ConfigIssue {
                path: format!("server.{key}"),
                message: format!("{d:?} is outside 100ms..=1h"),
            });
        }
    }
    if !(1..=1_000_000).contains(&s.max_connections) {
        issues.push(ConfigIssue {
            path: "server.max_connections".into(),
            message: format!("{} is outside 1..=1000000", s.max_connections),
        });
    }
    if !(MIN_MAX_HEADER_BYTES..=1024 * 1024).contains(&s.max_header_bytes) {
        issues.push(ConfigIssue {
            path: "server.max_header_bytes".into(),
            message: format!(
                "{} is outside {MIN_MAX_HEADER_BYTES}..=1048576",
                s.max_header_bytes
            ),
        });
    }
    ConnectionLimits {
        header_read_timeout: s.header_read_timeout,
        idle_timeout: s.idle_timeout,
        body_read_timeout: s.body_read_timeout,
        max_connections: s.max_connections,
        max_header_bytes: s.max_header_bytes,
    }
}

/// Resolved `server.redis` and `server.redis_prefix`.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// The URL (may hold a password, hence secret): one server, or a cluster by
    /// `redis+cluster://` ([`crate::redis_conn::RedisTarget`]).
    pub url: SecretString,
    /// Prefix of every key written.
    pub prefix: String,
    /// The CA certificates (PEM) trusted for a `rediss://` URL instead of the system's.
    pub ca_pem: Option<Vec<u8>>,
    /// How long an admitted request's budget reservation is held when it is never settled
    /// (its gateway died): the longer of [`MIN_RESERVATION_TTL`] and the longest a request can
    /// run on one channel (`resilience.timeouts.total` × `resilience.retry.max_attempts`).
    pub reservation_ttl: Duration,
}

/// Where a channel's definition comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelSource {
    /// A `[[channels]]` table of `llmux.toml` (reloaded on SIGHUP).
    File,
    /// Created through the admin API (stored in the database).
    Api,
}

impl ChannelSource {
    /// `file` or `api`.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelSource::File => "file",
            ChannelSource::Api => "api",
        }
    }
}

/// One upstream credential set of a channel: a client (its own pool, retries and breaker)
/// and the provider built with that set.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// The client.
    pub client: Client,
    /// The provider built from the channel's settings with this key.
    pub provider: Arc<dyn Provider>,
}

impl Upstream {
    fn breaker(&self) -> Option<Arc<llmux_core::resilience::Breaker>> {
        self.client.breaker_for(self.provider.as_ref())
    }
}

/// One upstream channel: a provider with its own credentials, client and breaker (one per key
/// when the channel rotates several keys).
#[derive(Debug, Clone)]
pub struct Channel {
    /// Unique name.
    pub name: Arc<str>,
    /// Provider id.
    pub provider_id: &'static str,
    /// The client of the channel's first key (its own pool, retries, breaker); requests go
    /// through [`Channel::pick`].
    pub client: Client,
    /// The provider built from this channel's settings (first key).
    pub provider: Arc<dyn Provider>,
    /// Public model name → upstream model name.
    pub models: BTreeMap<String, String>,
    /// Share of traffic within its priority (0 = only when nothing else is left).
    pub weight: u32,
    /// Higher first.
    pub priority: i32,
    /// Serves `name/<model>` for any model.
    pub passthrough: bool,
    /// Disabled channels are listed but get no traffic.
    pub enabled: bool,
    /// Where the definition comes from.
    pub source: ChannelSource,
    /// How often the upstream's model list is asked for (`None`: only on demand).
    pub discover: Option<Duration>,
    /// `models` is the provider's built-in list: a discovered list replaces it.
    pub builtin_models: bool,
    /// The upstream ids the channel last listed (see [`crate::discovery`]), shared by every
    /// copy of the channel ([`Channel::with_state`]), so it carries over reloads that reuse it.
    discovered: Arc<RwLock<Option<Arc<[String]>>>>,
    /// The rotation keys, masked (`sk-…abcd`), in rotation order.
    pub masked_keys: Vec<String>,
    /// Other credential fields, masked, by field name.
    pub masked_credentials: BTreeMap<String, String>,
    upstreams: Arc<[Upstream]>,
    rotation: Arc<std::sync::atomic::AtomicUsize>,
    fingerprint: [u8; 32],
}

impl Channel {
    /// The credential set for the next call: round-robin over the channel's keys, skipping
    /// keys whose breaker fails fast (a key the upstream rejected stays out until its trial);
    /// when every key fails fast, the next in turn (it fails fast with a definite error).
    pub fn pick(&self) -> &Upstream {
        use std::sync::atomic::Ordering;
        let n = self.upstreams.len();
        let start = self.rotation.fetch_add(1, Ordering::Relaxed) % n.max(1);
        let now = tokio::time::Instant::now();
        (0..n)
            .map(|i| &self.upstreams[(start + i) % n])
            .find(|u| !u.breaker().is_some_and(|b| b.fails_fast(now)))
            .unwrap_or(&self.upstreams[start])
    }

    /// Every credential set, in rotation order.
    pub fn upstreams(&self) -> &[Upstream] {
        &self.upstreams
    }

    /// The channel's breaker status: that of its healthiest key (a channel is open or disabled
    /// only when every key is).
    pub fn breaker_status(&self) -> llmux_core::resilience::BreakerStatus {
        use llmux_core::resilience::{BreakerState, BreakerStatus};
        let now = tokio::time::Instant::now();
        let rank = |s: BreakerState| match s {
            BreakerState::Closed => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open => 2,
            BreakerState::Disabled => 3,
        };
        self.upstreams
            .iter()
            .map(|u| match u.breaker() {
                Some(b) => b.status(now),
                None => BreakerStatus {
                    state: BreakerState::Closed,
                    reason: None,
                    disabled_by: None,
                    retry_in: None,
                    not_closed_for: None,
                    trips: 0,
                },
            })
            .min_by_key(|s| rank(s.state))
            .unwrap_or(BreakerStatus {
                state: BreakerState::Closed,
                reason: None,
                disabled_by: None,
                retry_in: None,
                not_closed_for: None,
                trips: 0,
            })
    }

    /// Whether every key's calls fail fast right now.
    pub fn fails_fast(&self) -> bool {
        let now = tokio::time::Instant::now();
        self.upstreams
            .iter()
            .all(|u| u.breaker().is_some_and(|b| b.fails_fast(now)))
    }

    /// Closes every key's breaker.
    pub fn reset_breakers(&self) {
        for u in self.upstreams.iter() {
            if let Some(b) = u.breaker() {
                b.reset();
            }
        }
    }

    /// The upstream ids this channel last listed, when discovery ever succeeded.
    pub fn discovered(&self) -> Option<Arc<[String]>> {
        self.discovered
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Records what the upstream lists now (checked and bounded by [`crate::discovery`]);
    /// `true` when it differs from what was recorded (the routing table must be rebuilt).
    pub fn set_discovered(&self, ids: Arc<[String]>) -> bool {
        let mut cell = self
            .discovered
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if cell.as_deref() == Some(&*ids) {
            return false;
        }
        *cell = Some(ids);
        true
    }

    /// True when `other` shares this channel's discovered list (the same built channel, maybe
    /// in another enabled state).
    pub fn same_build(&self, other: &Channel) -> bool {
        Arc::ptr_eq(&self.discovered, &other.discovered)
    }

    /// True when `def` describes this channel exactly as it was built (enabled state and
    /// source aside), so its clients and breakers can be kept.
    pub fn built_from(&self, def: &ChannelDef) -> bool {
        self.fingerprint == def.fingerprint
    }

    /// This channel with another enabled state and source, sharing its clients, breakers and
    /// rotation.
    pub fn with_state(&self, enabled: bool, source: ChannelSource) -> Channel {
        let mut c = self.clone();
        c.enabled = enabled;
        c.source = source;
        c
    }
}

/// A channel's validated definition, before its clients are built. `Debug` shows no secret.
#[derive(Debug, Clone)]
pub struct ChannelDef {
    /// Unique name.
    pub name: Arc<str>,
    spec: &'static ProviderSpec,
    settings: ProviderSettings,
    keys: Vec<SecretString>,
    models: BTreeMap<String, String>,
    weight: u32,
    priority: i32,
    passthrough: bool,
    discover: Option<Duration>,
    builtin_models: bool,
    /// Whether it takes traffic.
    pub enabled: bool,
    /// Where it comes from.
    pub source: ChannelSource,
    fingerprint: [u8; 32],
}

/// Masks a secret for display: its first three and last four characters when it is long
/// enough to keep the rest hidden (`sk-…abcd`), otherwise only `…`.
pub fn mask_secret(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    if chars.len() >= 16 {
        let head: String = chars[..3].iter().collect();
        let tail: String = chars[chars.len() - 4..].iter().collect();
        format!("{head}…{tail}")
    } else {
        "…".to_owned()
    }
}

impl ChannelDef {
    /// Builds the channel's clients (one per rotation key) with `res`.
    pub fn build(&self, res: &RawResilience) -> Result<Channel, String> {
        let key_sets: Vec<Option<&SecretString>> = if self.keys.is_empty() {
            vec![None]
        } else {
            self.keys.iter().map(Some).collect()
        };
        let mut upstreams = Vec::with_capacity(key_sets.len());
        for key in key_sets {
            let mut settings = self.settings.clone();
            if let Some(k) = key {
                settings.credentials.insert("api_key".into(), k.clone());
            }
            let client = Client::builder()
                .without_env()
                .provider(self.spec.id, settings)
                .retry(res.retry.clone())
                .timeouts(res.timeouts)
                .breaker(Some(res.breaker.clone()))
                .build()
                .map_err(|e| e.message().to_owned())?;
            let provider = client
                .provider(self.spec.id)
                .map_err(|e| e.message().to_owned())?;
            upstreams.push(Upstream { client, provider });
        }
        let first = upstreams[0].clone();
        Ok(Channel {
            name: self.name.clone(),
            provider_id: self.spec.id,
            client: first.client,
            provider: first.provider,
            models: self.models.clone(),
            weight: self.weight,
            priority: self.priority,
            passthrough: self.passthrough,
            enabled: self.enabled,
            source: self.source,
            discover: self.discover,
            builtin_models: self.builtin_models,
            discovered: Arc::new(RwLock::new(None)),
            masked_keys: self.keys.iter().map(|k| mask_secret(k.expose())).collect(),
            masked_credentials: self
                .settings
                .credentials
                .iter()
                .map(|(f, v)| (f.clone(), mask_secret(v.expose())))
                .collect(),
            upstreams: upstreams.into(),
            rotation: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            fingerprint: self.fingerprint,
        })
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Server settings.
    pub server: ServerConfig,
    /// Channels in file order.
    pub channels: Vec<Channel>,
    /// The file's channels as validated definitions (what a reload compares and rebuilds).
    pub channel_defs: Vec<ChannelDef>,
    /// `[resilience]`, applied to every channel built later (API channels, reloads).
    pub resilience: RawResilience,
}

/// Reads `env:VAR` references; anything else is a literal.
fn secret(
    path: &str,
    value: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    issues: &mut Vec<ConfigIssue>,
) -> Option<SecretString> {
    if let Some(var) = value.strip_prefix("env:") {
        match lookup(var).filter(|v| !v.is_empty()) {
            Some(v) => Some(SecretString::new(v)),
            None => {
                issues.push(ConfigIssue {
                    path: path.to_owned(),
                    message: format!("environment variable `{var}` is not set"),
                });
                None
            }
        }
    } else if value.is_empty() {
        issues.push(ConfigIssue {
            path: path.to_owned(),
            message: "must not be empty".into(),
        });
        None
    } else {
        Some(SecretString::new(value))
    }
}

impl Config {
    /// Validates `raw` and builds the channels' clients; `lookup` reads `env:VAR` references.
    pub fn resolve(
        raw: RawConfig,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let lookup: &dyn Fn(&str) -> Option<String> = &lookup;
        let mut issues = Vec::new();
        let s = raw.server;
        let listen = match s.listen.parse::<SocketAddr>() {
            Ok(a) => a,
            Err(e) => {
                issues.push(ConfigIssue {
                    path: "server.listen".into(),
                    message: format!("`{}` is not an address like 127.0.0.1:8080 ({e})", s.listen),
                });
                SocketAddr::from(([127, 0, 0, 1], 8080))
            }
        };
        let database = s
            .database
            .as_deref()
            .and_then(|v| secret("server.database", v, lookup, &mut issues));
        let money = money(&s, &mut issues);
        if let Some(db) = &database {
            let d = db.expose();
            if !(d.starts_with("sqlite:")
                || d.starts_with("postgres://")
                || d.starts_with("postgresql://"))
            {
                issues.push(ConfigIssue {
                    path: "server.database".into(),
                    message: "must be sqlite://PATH or postgres://…".into(),
                });
            }
        }
        let redis = s
            .redis
            .as_deref()
            .and_then(|v| secret("server.redis", v, lookup, &mut issues))
            .and_then(|url| {
                let before = issues.len();
                check_redis_url(url.expose(), &mut issues);
                check_redis_prefix(&s.redis_prefix, &mut issues);
                let longest = raw
                    .resilience
                    .timeouts
                    .total
                    .saturating_mul(raw.resilience.retry.max_attempts.max(1));
                let ca_pem = read_redis_ca(url.expose(), s.redis_ca_file.as_deref(), &mut issues);
                (issues.len() == before).then(|| RedisConfig {
                    url,
                    prefix: s.redis_prefix.clone(),
                    ca_pem,
                    reservation_ttl: longest.max(MIN_RESERVATION_TTL),
                })
            });
        let admin_key = s
            .admin_key
            .as_deref()
            .and_then(|v| secret("server.admin_key", v, lookup, &mut issues));
        let api_keys = s
            .api_keys
            .iter()
            .enumerate()
            .filter_map(|(i, v)| secret(&format!("server.api_keys[{i}]"), v, lookup, &mut issues))
            .collect();
        if s.max_body_bytes < 1024 {
            issues.push(ConfigIssue {
                path: "server.max_body_bytes".into(),
                message: format!("{} is too small (at least 1024)", s.max_body_bytes),
            });
        }
        let connections = connection_limits(&s, &mut issues);
        if s.instance_lease < Duration::from_secs(1) {
            issues.push(ConfigIssue {
                path: "server.instance_lease".into(),
                message: "must be at least 1s".into(),
            });
        }
        if s.usage_commit_timeout.is_zero() {
            issues.push(ConfigIssue {
                path: "server.usage_commit_timeout".into(),
                message: "must be more than 0s".into(),
            });
        }
        if !(Duration::from_millis(100)..=Duration::from_secs(3600)).contains(&s.channel_refresh) {
            issues.push(ConfigIssue {
                path: "server.channel_refresh".into(),
                message: format!("{:?} is outside 100ms..=1h", s.channel_refresh),
            });
        }
        let master_key = match lookup(crate::channels::MASTER_KEY_ENV).filter(|v| !v.is_empty()) {
            None => None,
            Some(v) => match crate::channels::MasterKey::parse(&v) {
                Ok(k) => Some(k),
                Err(message) => {
                    issues.push(ConfigIssue {
                        path: crate::channels::MASTER_KEY_ENV.into(),
                        message,
                    });
                    None
                }
            },
        };
        let usage_journal = match s.usage_journal.as_deref() {
            Some("database") => UsageJournal::Database,
            Some(dir) if !dir.trim().is_empty() => UsageJournal::Directory(PathBuf::from(dir)),
            Some(_) => {
                issues.push(ConfigIssue {
                    path: "server.usage_journal".into(),
                    message: "must be a directory path or \"database\"".into(),
                });
                UsageJournal::Database
            }
            None => database.as_ref().map_or(UsageJournal::Database, |d| {
                UsageJournal::default_for(d.expose())
            }),
        };
        let budget_calendar = crate::limits::BudgetCalendar::new(&s.budget_timezone)
            .unwrap_or_else(|message| {
                issues.push(ConfigIssue {
                    path: "server.budget_timezone".into(),
                    message,
                });
                crate::limits::BudgetCalendar::utc()
            });
        let cache = raw
            .cache
            .and_then(|c| c.resolve(redis.is_some(), &mut issues));
        let events = crate::events::config::resolve(raw.events, lookup, &mut issues);
        if events.is_some() && database.is_none() {
            issues.push(ConfigIssue {
                path: "events".into(),
                message:
                    "publishing usage events needs server.database (the events wait in its outbox)"
                        .into(),
            });
        }
        let server = ServerConfig {
            listen,
            database,
            redis,
            admin_key,
            api_keys,
            max_body_bytes: s.max_body_bytes,
            shutdown_grace: s.shutdown_grace,
            keepalive: if s.keepalive.is_zero() {
                Duration::from_secs(15)
            } else {
                s.keepalive
            },
            connections,
            key_cache_ttl: s.key_cache_ttl,
            key_stale_if_error: s.key_stale_if_error,
            retention_days: s.retention_days,
            budget_calendar,
            limits: s.limits,
            prices: s.prices,
            money,
            usage_durability: s.usage_durability,
            usage_journal,
            usage_commit_timeout: s.usage_commit_timeout,
            instance_lease: s.instance_lease,
            log_format: s.log_format,
            metrics: raw.metrics,
            telemetry: resolve_telemetry(raw.telemetry, &mut issues),
            events,
            channel_refresh: s.channel_refresh,
            master_key,
            cache,
        };

        let (channel_defs, channels) =
            resolve_channels(raw.channels, &raw.resilience, lookup, &mut issues);
        for model in server.prices.keys() {
            let served =
                model.contains('/') || channels.iter().any(|c| c.models.contains_key(model));
            if !served {
                issues.push(ConfigIssue {
                    path: format!("server.prices.\"{model}\""),
                    message: "no channel serves this model".into(),
                });
            }
        }
        if issues.is_empty() {
            Ok(Config {
                server,
                channels,
                channel_defs,
                resilience: raw.resilience,
            })
        } else {
            Err(ConfigError { issues })
        }
    }

    /// Every public model name, sorted.
    pub fn public_models(&self) -> BTreeSet<&str> {
        self.channels
            .iter()
            .flat_map(|c| c.models.keys().map(String::as_str))
            .collect()
    }
}

/// Validates `[telemetry]`: an `http://` or `https://` endpoint (spans go to its `/v1/traces`),
/// a sample ratio between 0 and 1, a service name.
fn resolve_telemetry(t: RawTelemetry, issues: &mut Vec<ConfigIssue>) -> TelemetryConfig {
    let mut issue = |path: &str, message: &str| {
        issues.push(ConfigIssue {
            path: format!("telemetry.{path}"),
            message: message.to_owned(),
        });
    };
    let url = t.otlp_endpoint.as_deref().map(str::trim).and_then(|e| {
        let parsed = e
            .parse::<http::Uri>()
            .ok()
            .filter(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some());
        if parsed.is_none() {
            issue(
                "otlp_endpoint",
                "must be an http:// or https:// URL, such as http://127.0.0.1:4318",
            );
            return None;
        }
        let base = e.trim_end_matches('/');
        Some(if base.ends_with("/v1/traces") {
            base.to_owned()
        } else {
            format!("{base}/v1/traces")
        })
    });
    if !(0.0..=1.0).contains(&t.sample_ratio) {
        issue("sample_ratio", "must be between 0 and 1");
    }
    if t.service_name.trim().is_empty() {
        issue("service_name", "must not be empty");
    }
    TelemetryConfig {
        otlp_traces_url: url,
        service_name: t.service_name,
        sample_ratio: t.sample_ratio,
    }
}

/// Checks the shape of a Redis URL without connecting. Messages never repeat the value: it may
/// hold a password.
fn check_redis_url(url: &str, issues: &mut Vec<ConfigIssue>) {
    if let Err(message) = crate::redis_conn::check_url(url) {
        issues.push(ConfigIssue {
            path: "server.redis".to_owned(),
            message,
        });
    }
}

/// The scheme of a Redis URL, lower-cased.
fn redis_scheme(url: &str) -> Option<String> {
    url.split_once("://").map(|(s, _)| s.to_ascii_lowercase())
}

/// Reads `server.redis_ca_file` (only meaningful with a `rediss://` URL): PEM with at least one
/// certificate.
fn read_redis_ca(url: &str, file: Option<&Path>, issues: &mut Vec<ConfigIssue>) -> Option<Vec<u8>> {
    let file = file?;
    let path = "server.redis_ca_file".to_owned();
    if !matches!(
        redis_scheme(url).as_deref(),
        Some("rediss" | "valkeys" | "rediss+cluster")
    ) {
        issues.push(ConfigIssue {
            path,
            message:
                "only used with a TLS URL: set server.redis to rediss://… or rediss+cluster://…"
                    .into(),
        });
        return None;
    }
    match std::fs::read(file) {
        Ok(pem) if String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") => {
            Some(pem)
        }
        Ok(_) => {
            issues.push(ConfigIssue {
                path,
                message: format!("{} holds no PEM certificate", file.display()),
            });
            None
        }
        Err(e) => {
            issues.push(ConfigIssue {
                path,
                message: format!("cannot read {}: {e}", file.display()),
            });
            None
        }
    }
}

/// Prefixes are printable ASCII without spaces or braces (braces would change the Redis
/// Cluster hash tag that keeps one key's entries together).
fn check_redis_prefix(prefix: &str, issues: &mut Vec<ConfigIssue>) {
    let ok = !prefix.is_empty()
        && prefix.len() <= 64
        && prefix
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'{' && b != b'}');
    if !ok {
        issues.push(ConfigIssue {
            path: "server.redis_prefix".into(),
            message: format!(
                "`{prefix}` is not a usable prefix: 1 to 64 printable ASCII characters without spaces, `{{` or `}}`"
            ),
        });
    }
}

/// Checks and builds the file's channels: their definitions and channels, in file order.
fn resolve_channels(
    raw: Vec<RawChannel>,
    res: &RawResilience,
    lookup: &dyn Fn(&str) -> Option<String>,
    issues: &mut Vec<ConfigIssue>,
) -> (Vec<ChannelDef>, Vec<Channel>) {
    let mut names = BTreeSet::new();
    let mut defs = Vec::new();
    let mut channels = Vec::new();
    for (i, ch) in raw.into_iter().enumerate() {
        let at = format!("channels[{i}]");
        let Some(def) = check_channel(&at, ch, ChannelSource::File, lookup, issues) else {
            continue;
        };
        if !names.insert(def.name.clone()) {
            issues.push(ConfigIssue {
                path: format!("{at}.name"),
                message: format!("duplicate channel name `{}`", def.name),
            });
        }
        match def.build(res) {
            Ok(c) => channels.push(c),
            Err(message) => issues.push(ConfigIssue {
                path: at.clone(),
                message,
            }),
        }
        defs.push(def);
    }
    (defs, channels)
}

/// Checks the channels of a (re-read) file without building them: their definitions, or
/// every problem with its path.
pub fn check_file_channels(
    raw: Vec<RawChannel>,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Vec<ChannelDef>, ConfigError> {
    let mut issues = Vec::new();
    let mut names = BTreeSet::new();
    let mut defs = Vec::new();
    for (i, ch) in raw.into_iter().enumerate() {
        let at = format!("channels[{i}]");
        if let Some(def) = check_channel(&at, ch, ChannelSource::File, &lookup, &mut issues) {
            if !names.insert(def.name.clone()) {
                issues.push(ConfigIssue {
                    path: format!("{at}.name"),
                    message: format!("duplicate channel name `{}`", def.name),
                });
            }
            defs.push(def);
        }
    }
    if issues.is_empty() {
        Ok(defs)
    } else {
        Err(ConfigError { issues })
    }
}

/// Validates one channel table into its definition; problems are pushed with paths under `at`
/// (`channels[1]`; empty for a channel given alone, as the admin API does: `.api_key` becomes
/// `api_key`).
pub fn check_channel(
    at: &str,
    ch: RawChannel,
    source: ChannelSource,
    lookup: &dyn Fn(&str) -> Option<String>,
    issues: &mut Vec<ConfigIssue>,
) -> Option<ChannelDef> {
    let before = issues.len();
    let path = |field: &str| {
        if at.is_empty() {
            field.to_owned()
        } else {
            format!("{at}.{field}")
        }
    };
    if ch.name.trim().is_empty() || ch.name.contains(char::is_whitespace) {
        issues.push(ConfigIssue {
            path: path("name"),
            message: "must be a non-empty name without spaces".into(),
        });
    }
    let spec: Option<&'static ProviderSpec> = match providers::spec(&ch.provider) {
        Ok(s) => Some(s),
        Err(_) => {
            issues.push(ConfigIssue {
                path: path("provider"),
                message: format!(
                    "unknown provider `{}`; known providers: {}",
                    ch.provider,
                    providers::known_ids().join(", ")
                ),
            });
            None
        }
    };
    let models: BTreeMap<String, String> = match ch.models {
        RawModels::List(v) => v.into_iter().map(|m| (m.clone(), m)).collect(),
        RawModels::Table(t) => t,
    };
    if models.is_empty() && !ch.passthrough && ch.discover.is_none() {
        issues.push(ConfigIssue {
            path: path("models"),
            message: "list at least one model (or set passthrough = true, or discover)".into(),
        });
    }
    for (public, upstream) in &models {
        if public.trim().is_empty() || upstream.trim().is_empty() {
            issues.push(ConfigIssue {
                path: path("models"),
                message: "model names must not be empty".into(),
            });
        }
    }
    let spec = spec?;
    let mut settings = ProviderSettings {
        base_url: ch.base_url.clone(),
        region: ch.region.clone(),
        credentials: BTreeMap::new(),
    };
    for (field, value) in &ch.credentials {
        if !spec.credentials.iter().any(|c| c.field == field) {
            let takes: Vec<&str> = spec.credentials.iter().map(|c| c.field).collect();
            issues.push(ConfigIssue {
                path: path(field),
                message: format!(
                    "provider `{}` does not take `{field}` (it takes: {})",
                    spec.id,
                    if takes.is_empty() {
                        "nothing".to_owned()
                    } else {
                        takes.join(", ")
                    }
                ),
            });
            continue;
        }
        if let Some(v) = secret(&path(field), value, lookup, issues) {
            settings.credentials.insert(field.clone(), v);
        }
    }
    let takes_api_key = spec.credentials.iter().any(|c| c.field == "api_key");
    let mut keys: Vec<SecretString> = Vec::new();
    if takes_api_key {
        keys.extend(settings.credentials.remove("api_key"));
        for (i, v) in ch.api_keys.iter().enumerate() {
            if let Some(k) = secret(&format!("{}[{i}]", path("api_keys")), v, lookup, issues) {
                keys.push(k);
            }
        }
    } else if !ch.api_keys.is_empty() {
        issues.push(ConfigIssue {
            path: path("api_keys"),
            message: format!("provider `{}` takes no `api_key`", spec.id),
        });
    }
    for c in spec.credentials.iter().filter(|c| !c.optional) {
        let given = if c.field == "api_key" {
            !keys.is_empty() || ch.credentials.contains_key("api_key") || !ch.api_keys.is_empty()
        } else {
            settings.credentials.contains_key(c.field) || ch.credentials.contains_key(c.field)
        };
        if !given {
            let env = c.env.first().copied().unwrap_or("VAR");
            let message = match source {
                ChannelSource::File => format!(
                    "provider `{}` needs `{}` (a literal or \"env:{env}\")",
                    spec.id, c.field
                ),
                ChannelSource::Api => format!("provider `{}` needs `{}`", spec.id, c.field),
            };
            issues.push(ConfigIssue {
                path: path(c.field),
                message,
            });
        }
    }
    if issues.len() > before {
        return None;
    }
    let mut discover = ch.discover;
    if discover.is_some() {
        // Building a provider is pure (no IO): it says whether the provider has a model list.
        // A provider that cannot be built is reported when the channel is built.
        let mut first = settings.clone();
        if let Some(k) = keys.first() {
            first.credentials.insert("api_key".into(), k.clone());
        }
        let can_list = (spec.build)(spec, first)
            .map(|p| p.capabilities().list_models)
            .unwrap_or(true);
        if !can_list {
            if ch.builtin_models {
                // Channels made from provider variables ask on their own; a provider of theirs
                // that cannot list keeps its built-in names.
                discover = None;
            } else {
                issues.push(ConfigIssue {
                    path: path("discover"),
                    message: format!(
                        "provider `{}` cannot list its models; list them in `models` instead",
                        spec.id
                    ),
                });
                return None;
            }
        }
    }
    let fingerprint = fingerprint(&[
        spec.id.as_bytes(),
        settings.base_url.as_deref().unwrap_or("\0").as_bytes(),
        settings.region.as_deref().unwrap_or("\0").as_bytes(),
        &settings
            .credentials
            .iter()
            .flat_map(|(f, v)| [f.as_bytes(), b"=", v.expose().as_bytes(), b"\0"].concat())
            .collect::<Vec<u8>>(),
        &keys
            .iter()
            .flat_map(|k| [k.expose().as_bytes(), b"\0"].concat())
            .collect::<Vec<u8>>(),
        &models
            .iter()
            .flat_map(|(p, u)| [p.as_bytes(), b"=", u.as_bytes(), b"\0"].concat())
            .collect::<Vec<u8>>(),
        &ch.weight.to_le_bytes(),
        &ch.priority.to_le_bytes(),
        &[u8::from(ch.passthrough)],
        &discover.map_or(u64::MAX, |d| d.as_secs()).to_le_bytes(),
        &[u8::from(ch.builtin_models)],
    ]);
    Some(ChannelDef {
        name: Arc::from(ch.name.as_str()),
        spec,
        settings,
        keys,
        models,
        weight: ch.weight,
        priority: ch.priority,
        passthrough: ch.passthrough,
        discover,
        builtin_models: ch.builtin_models,
        enabled: ch.enabled,
        source,
        fingerprint,
    })
}

/// SHA-256 over length-prefixed parts: equal for equal definitions, and no secret can be read
/// back from it.
fn fingerprint(parts: &[&[u8]]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn no_env() -> Vec<(String, String)> {
        Vec::new()
    }

    fn resolved(text: &str, env: Vec<(String, String)>) -> Result<Config, ConfigError> {
        Config::resolve(RawConfig::parse(text, env)?, |_| None)
    }

    #[test]
    fn observability_settings_resolve_and_are_checked() {
        let channel = "[[channels]]\nname = \"a\"\nprovider = \"openai\"\napi_key = \"k\"\nmodels = [\"m\"]\n";
        let c = resolved(channel, no_env()).unwrap();
        assert_eq!(c.server.log_format, LogFormat::Text);
        assert_eq!(c.server.metrics.max_key_labels, DEFAULT_MAX_KEY_LABELS);
        assert_eq!(c.server.telemetry.otlp_traces_url, None);

        let text = format!(
            "[server]\nlog_format = \"json\"\n[metrics]\nmax_key_labels = 3\n[telemetry]\notlp_endpoint = \"http://collector:4318/\"\nservice_name = \"gw\"\nsample_ratio = 0.25\n{channel}"
        );
        let c = resolved(&text, no_env()).unwrap();
        assert_eq!(c.server.log_format, LogFormat::Json);
        assert_eq!(c.server.metrics.max_key_labels, 3);
        let t = &c.server.telemetry;
        assert_eq!(
            t.otlp_traces_url.as_deref(),
            Some("http://collector:4318/v1/traces")
        );
        assert_eq!((t.service_name.as_str(), t.sample_ratio), ("gw", 0.25));

        // The full traces URL is kept; the environment overrides the file.
        let env = vec![(
            "LLMUX__TELEMETRY__OTLP_ENDPOINT".to_owned(),
            "https://otel.example:4318/v1/traces".to_owned(),
        )];
        let c = resolved(&text, env).unwrap();
        assert_eq!(
            c.server.telemetry.otlp_traces_url.as_deref(),
            Some("https://otel.example:4318/v1/traces")
        );

        let bad = format!("[server]\nlog_format = \"xml\"\n{channel}");
        assert!(RawConfig::parse(&bad, no_env()).is_err());
        let bad = format!(
            "[telemetry]\notlp_endpoint = \"collector:4318\"\nsample_ratio = 1.5\nservice_name = \" \"\n{channel}"
        );
        let err = resolved(&bad, no_env()).unwrap_err();
        let paths: Vec<&str> = err.issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "telemetry.otlp_endpoint",
                "telemetry.sample_ratio",
                "telemetry.service_name"
            ]
        );
    }

    #[test]
    fn type_errors_name_their_path() {
        let text = r#"
[[channels]]
name = "a"
provider = "openai"
api_key = "k"
models = ["m"]

[[channels]]
name = "b"
provider = "openai"
api_key = "k"
models = ["m"]
weight = "heavy"
"#;
        let err = RawConfig::parse(text, no_env()).unwrap_err();
        assert_eq!(err.issues[0].path, "channels[1].weight");
        assert!(err.issues[0].message.contains("invalid type"), "{err}");
    }

    #[test]
    fn usage_journal_defaults_beside_a_sqlite_file_and_can_be_chosen() {
        let journal = |text: &str| {
            Config::resolve(RawConfig::parse(text, no_env()).unwrap(), |_| None)
                .map(|c| c.server.usage_journal)
                .map_err(|e| e.issues[0].path.clone())
        };
        let dir = |p: &str| Ok(UsageJournal::Directory(PathBuf::from(p)));
        assert_eq!(
            journal("[server]\ndatabase = \"sqlite:///var/lib/gw.db\"\n"),
            dir("/var/lib/gw.db-ledger")
        );
        assert_eq!(
            journal("[server]\ndatabase = \"sqlite:rel%20dir/gw.db?mode=rwc\"\n"),
            dir("rel dir/gw.db-ledger")
        );
        for db in [
            "sqlite::memory:",
            "sqlite://:memory:",
            "sqlite://x.db?mode=memory",
            "postgres://u@h/db",
        ] {
            assert_eq!(
                journal(&format!("[server]\ndatabase = \"{db}\"\n")),
                Ok(UsageJournal::Database),
                "{db}"
            );
        }
        assert_eq!(journal(""), Ok(UsageJournal::Database));
        assert_eq!(
            journal("[server]\ndatabase = \"sqlite://a.db\"\nusage_journal = \"database\"\n"),
            Ok(UsageJournal::Database)
        );
        assert_eq!(
            journal("[server]\ndatabase = \"postgres://u@h/db\"\nusage_journal = \"/j\"\n"),
            dir("/j")
        );
        assert_eq!(
            journal("[server]\nusage_journal = \" \"\n"),
            Err("server.usage_journal".to_owned())
        );
    }

    #[test]
    fn connection_settings_default_parse_and_are_bounded() {
        let cfg = Config::resolve(RawConfig::parse("", no_env()).unwrap(), |_| None).unwrap();
        assert_eq!(cfg.server.connections, ConnectionLimits::default());
        assert_eq!(cfg.server.connections.idle_timeout, Duration::from_secs(75));
        let text = "[server]\nheader_read_timeout = \"2s\"\nidle_timeout = \"5s\"\nbody_read_timeout = \"3s\"\nmax_connections = 7\n";
        let env = vec![(
            "LLMUX__SERVER__MAX_HEADER_BYTES".to_owned(),
            "16384".to_owned(),
        )];
        let cfg = Config::resolve(RawConfig::parse(text, env).unwrap(), |_| None).unwrap();
        assert_eq!(
            cfg.server.connections,
            ConnectionLimits {
                header_read_timeout: Duration::from_secs(2),
                idle_timeout: Duration::from_secs(5),
                body_read_timeout: Duration::from_secs(3),
                max_connections: 7,
                max_header_bytes: 16384,
            }
        );
        let text = "[server]\nheader_read_timeout = \"0s\"\nidle_timeout = \"2h\"\nmax_connections = 0\nmax_header_bytes = 100\n";
        let err = Config::resolve(RawConfig::parse(text, no_env()).unwrap(), |_| None).unwrap_err();
        let paths: Vec<&str> = err.issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "server.header_read_timeout",
                "server.idle_timeout",
                "server.max_connections",
                "server.max_header_bytes"
            ],
            "{err}"
        );
    }

    #[test]
    fn currency_rates_and_prices_are_checked_with_their_path() {
        let cfg = Config::resolve(RawConfig::parse("", no_env()).unwrap(), |_| None).unwrap();
        assert_eq!(cfg.server.money.currency, Currency::USD);
        let text = "[server]\ncurrency = \"CNY\"\n[server.exchange_rates]\nUSD = 7.1\n\
                    [server.prices.\"openai/gpt-4o\"]\ninput_per_mtok = 2.5\noutput_per_mtok = 10.0\n\
                    currency = \"USD\"\nreasoning_per_mtok = 10.0\n";
        let cfg = Config::resolve(RawConfig::parse(text, no_env()).unwrap(), |_| None).unwrap();
        assert_eq!(cfg.server.money.currency.as_str(), "CNY");
        assert_eq!(cfg.server.money.rate(Currency::USD), Some(7.1));
        // A bad code is a parse error naming the value.
        let err = RawConfig::parse("[server]\ncurrency = \"usd\"\n", no_env()).unwrap_err();
        assert!(err.to_string().contains("currency code"), "{err}");
        // Bad rates, out-of-bounds prices, and a price in a currency without a rate.
        let text = "[server.exchange_rates]\nCNY = 0.0\n\
                    [server.prices.\"openai/a\"]\ninput_per_mtok = -1.0\noutput_per_mtok = 1.0\n\
                    [server.prices.\"openai/b\"]\ninput_per_mtok = 1.0\noutput_per_mtok = 1.0\ncurrency = \"EUR\"\n";
        let err = Config::resolve(RawConfig::parse(text, no_env()).unwrap(), |_| None).unwrap_err();
        let paths: Vec<&str> = err.issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "server.prices.\"openai/a\"",
                "server.prices.\"openai/b\".currency",
                "server.exchange_rates.CNY"
            ],
            "{err}"
        );
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_path() {
        let err = RawConfig::parse("[server]\nlisten = \"127.0.0.1:1\"\nlistn = 1\n", no_env())
            .unwrap_err();
        assert!(err.to_string().contains("server"), "{err}");
        assert!(err.to_string().contains("listn"), "{err}");
    }

    #[test]
    fn syntax_errors_give_a_line() {
        let err = RawConfig::parse("[server\n", no_env()).unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
    }

    #[test]
    fn resolve_reports_unknown_provider_duplicates_and_missing_keys() {
        let text = r#"
[[channels]]
name = "a"
provider = "nope"
models = ["m"]

[[channels]]
name = "b"
provider = "openai"
models = ["m"]

[[channels]]
name = "c"
provider = "openai"
api_key = "env:MISSING_VAR"
models = ["m"]

[[channels]]
name = "d"
provider = "openai"
api_key = "k"
secret_id = "x"
models = ["m"]
"#;
        let raw = RawConfig::parse(text, no_env()).unwrap();
        let err = Config::resolve(raw, |_| None).unwrap_err();
        let s = err.to_string();
        assert!(
            s.contains("channels[0].provider: unknown provider `nope`; known providers: openai"),
            "{s}"
        );
        assert!(
            s.contains("channels[1].api_key: provider `openai` needs `api_key`"),
            "{s}"
        );
        assert!(
            s.contains("channels[2].api_key: environment variable `MISSING_VAR` is not set"),
            "{s}"
        );
        assert!(
            s.contains("channels[3].secret_id: provider `openai` does not take `secret_id`"),
            "{s}"
        );
    }

    #[test]
    fn duplicate_names_are_an_error() {
        let text = r#"
[[channels]]
name = "a"
provider = "openai"
api_key = "k"
models = ["m"]
[[channels]]
name = "a"
provider = "openai"
api_key = "k"
models = ["m"]
"#;
        let err = Config::resolve(RawConfig::parse(text, no_env()).unwrap(), |_| None).unwrap_err();
        assert!(err
            .to_string()
            .contains("channels[1].name: duplicate channel name `a`"));
    }

    #[test]
    fn env_overrides_the_file_and_env_refs_resolve() {
        let text = "[server]\nlisten = \"127.0.0.1:1\"\nadmin_key = \"env:ADMIN\"\n";
        let env = vec![
            (
                "LLMUX__SERVER__LISTEN".to_owned(),
                "127.0.0.1:9999".to_owned(),
            ),
            (
                "LLMUX__SERVER__MAX_BODY_BYTES".to_owned(),
                "2048".to_owned(),
            ),
            ("OTHER".to_owned(), "x".to_owned()),
        ];
        let raw = RawConfig::parse(text, env).unwrap();
        assert_eq!(raw.server.max_body_bytes, 2048);
        let cfg = Config::resolve(raw, |v| (v == "ADMIN").then(|| "adm".to_owned())).unwrap();
        assert_eq!(cfg.server.listen.port(), 9999);
        assert_eq!(cfg.server.admin_key.unwrap().expose(), "adm");
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let text = r#"
[server]
admin_key = "adm-secret-value"
api_keys = ["client-secret-value"]
[[channels]]
name = "a"
provider = "openai"
api_key = "sk-upstream-secret-value"
models = { public = "gpt-4o-mini" }
"#;
        let cfg = Config::resolve(RawConfig::parse(text, no_env()).unwrap(), |_| None).unwrap();
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains("secret-value"), "{dbg}");
        assert_eq!(cfg.channels[0].models["public"], "gpt-4o-mini");
    }

    #[test]
    fn redis_is_a_secret_with_a_prefix_and_a_reservation_ttl() {
        let text = "[server]\nredis = \"env:LLMUX_REDIS\"\n";
        let url = "redis://:pw-secret-value@10.0.0.5:6380/2";
        let cfg = Config::resolve(RawConfig::parse(text, no_env()).unwrap(), |v| {
            (v == "LLMUX_REDIS").then(|| url.to_owned())
        })
        .unwrap();
        let redis = cfg.server.redis.as_ref().unwrap();
        assert_eq!(redis.url.expose(), url);
        assert_eq!(redis.prefix, DEFAULT_REDIS_PREFIX);
        // The gateway's default: 2 attempts of at most 10 minutes each.
        assert_eq!(redis.reservation_ttl, Duration::from_secs(1200));
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains("secret-value"), "{dbg}");

        let text = "[server]\nredis = \"unix:///run/redis.sock\"\nredis_prefix = \"team-a:\"\n[resilience.timeouts]\ntotal = \"1m\"\n";
        let cfg = Config::resolve(RawConfig::parse(text, no_env()).unwrap(), |_| None).unwrap();
        let redis = cfg.server.redis.unwrap();
        assert_eq!(redis.prefix, "team-a:");
        assert_eq!(redis.reservation_ttl, MIN_RESERVATION_TTL);

        // Without `redis` there is no shared backend, whatever the prefix says.
        let text = "[server]\nredis_prefix = \"x:\"\n";
        let cfg = Config::resolve(RawConfig::parse(text, no_env()).unwrap(), |_| None).unwrap();
        assert!(cfg.server.redis.is_none());
    }

    #[test]
    fn bad_redis_urls_and_prefixes_are_explained_without_the_url() {
        let check = |redis: &str, prefix: &str| {
            let text = format!("[server]\nredis = \"{redis}\"\nredis_prefix = \"{prefix}\"\n");
            Config::resolve(RawConfig::parse(&text, no_env()).unwrap(), |_| None)
                .unwrap_err()
                .to_string()
        };
        let e = check("http://u:pw-secret-value@host:6379", "llmux:");
        assert!(e.starts_with("server.redis: must be redis://"), "{e}");
        assert!(!e.contains("secret-value"), "{e}");
        let e = check("rediss://u:pw-secret-value@host:6379/#insecure", "llmux:");
        assert!(e.contains("redis_ca_file"), "{e}");
        assert!(!e.contains("secret-value"), "{e}");
        let e = check("rediss://u:pw-secret-value@host:6379/x", "llmux:");
        assert!(e.contains("not a usable Redis URL"), "{e}");
        assert!(!e.contains("secret-value"), "{e}");
        let e = check("redis://u:pw-secret-value@host:6379/not-a-number", "llmux:");
        assert!(e.contains("not a usable Redis URL"), "{e}");
        assert!(!e.contains("secret-value"), "{e}");
        let e = check("redis://127.0.0.1", "two words");
        assert!(e.starts_with("server.redis_prefix:"), "{e}");
        let e = check("redis://127.0.0.1", "{tag}");
        assert!(e.starts_with("server.redis_prefix:"), "{e}");
        let e = check("", "llmux:");
        assert!(e.contains("server.redis: must not be empty"), "{e}");
        let e = check(
            "redis+cluster://u:pw-secret-value@h1:7000,h2:7001/1",
            "llmux:",
        );
        assert!(
            e.starts_with("server.redis:") && e.contains("database 0"),
            "{e}"
        );
        assert!(!e.contains("secret-value"), "{e}");
        let e = check(
            "rediss+cluster://u:pw-secret-value@h1:7000#insecure",
            "llmux:",
        );
        assert!(e.contains("redis_ca_file"), "{e}");
    }

    #[test]
    fn a_redis_cluster_is_given_by_its_nodes_as_a_secret() {
        let text = "[server]\nredis = \"env:LLMUX_REDIS\"\n";
        let url = "redis+cluster://:pw-secret-value@10.0.0.5:7000,10.0.0.6:7000";
        let cfg = Config::resolve(RawConfig::parse(text, no_env()).unwrap(), |v| {
            (v == "LLMUX_REDIS").then(|| url.to_owned())
        })
        .unwrap();
        let redis = cfg.server.redis.as_ref().unwrap();
        assert_eq!(redis.url.expose(), url);
        assert!(!format!("{cfg:?}").contains("secret-value"));
        assert!(matches!(
            crate::redis_conn::RedisTarget::parse(redis.url.expose()),
            Ok(crate::redis_conn::RedisTarget::Cluster(nodes)) if nodes.len() == 2
        ));
    }

    #[test]
    fn channels_come_from_provider_env_without_a_file() {
        let lookup = |v: &str| match v {
            "DASHSCOPE_API_KEY" => Some("sk-x".to_owned()),
            _ => None,
        };
        let raw = RawConfig::from_provider_env(no_env(), lookup).unwrap();
        let names: Vec<_> = raw.channels.iter().map(|c| c.name.as_str()).collect();
        assert!(names.contains(&"dashscope"), "{names:?}");
        assert!(!names.contains(&"openai"));
        let cfg = Config::resolve(raw, lookup).unwrap();
        assert!(cfg.channels.iter().all(|c| c.passthrough));
    }

    #[test]
    fn events_resolve_into_the_server_settings_and_need_a_database() {
        let events = "[events]\nnats = \"nats://127.0.0.1:4222\"\nstream = \"LLMUX_USAGE\"\nsubject = \"llmux.usage\"\n";
        let c = resolved(
            &format!("[server]\ndatabase = \"sqlite::memory:\"\n{events}"),
            no_env(),
        )
        .unwrap();
        let e = c.server.events.unwrap();
        assert_eq!(
            (e.stream.as_str(), e.subject.as_str()),
            ("LLMUX_USAGE", "llmux.usage")
        );
        let err = resolved(events, no_env()).unwrap_err();
        assert_eq!(err.issues.len(), 1, "{err}");
        assert_eq!(err.issues[0].path, "events");
        assert!(err.issues[0].message.contains("server.database"), "{err}");
        // An unknown key is refused with its path; `enabled = false` turns the table off.
        let err = resolved(
            "[events]\nnats = \"nats://h:1\"\nstreem = \"X\"\n",
            no_env(),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("events.streem: unknown field `streem`"),
            "{err}"
        );
        let c = resolved("[events]\nenabled = false\n", no_env()).unwrap();
        assert!(c.server.events.is_none());
        // Environment overrides reach it like any other table.
        let c = resolved(
            &format!("[server]\ndatabase = \"sqlite::memory:\"\n{events}"),
            vec![("LLMUX__EVENTS__STREAM".into(), "FROM_ENV".into())],
        )
        .unwrap();
        assert_eq!(c.server.events.unwrap().stream, "FROM_ENV");
    }

    #[test]
    fn the_example_config_is_valid() {
        let text = include_str!("../examples/llmux.toml");
        let raw = RawConfig::parse(text, no_env()).unwrap();
        let cfg = Config::resolve(raw, |v| {
            (v != crate::channels::MASTER_KEY_ENV).then(|| format!("value-of-{v}"))
        })
        .unwrap();
        assert!(!cfg.channels.is_empty());
    }
}
