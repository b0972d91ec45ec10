//! llmux-gateway: the `llmux serve` HTTP gateway on top of llmux-core: OpenAI- (Chat and
//! Responses), Anthropic-, Gemini- and DashScope-compatible ingress, virtual keys, limits,
//! routing with failover, and usage accounting in SQLite or PostgreSQL.
//!
//! Request path: [`conn`] accepts and bounds connections → [`app::router`] (request id, log,
//! metrics) → an endpoint of an ingress dialect ([`ingress`]) → the one [`pipeline`]:
//! admission (auth with virtual keys from [`keys`] over the [`store`], the dialect's pure
//! decoder, the model allow-list, the route plan, per-key [`limits`]) → the usage guard →
//! one routed call ([`routing::Routes`] fails over across channels, each an
//! `llmux_core::Client`) → the dialect's pure encoder → usage recorded once per request
//! ([`usage`]). [`serve::Gateway`] binds and runs it; [`config`] loads `llmux.toml`; with
//! `[events]`, [`events`] publishes every usage record to NATS JetStream through an outbox in
//! the store.
//!
//! Invariant: the gateway never parses vendor JSON; it sees only core types and `Error`.

pub mod app;
pub mod auth;
pub mod cache;
pub mod channels;
pub mod config;
pub mod conn;
pub mod discovery;
pub mod error;
pub mod events;
pub mod ingress;
pub mod keys;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod pipeline;
pub mod redact;
pub mod redis_conn;
pub mod rejection;
pub mod routes;
pub mod routing;
pub mod serve;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod usage;

pub use config::{Config, ConfigError, RawConfig};
pub use serve::{Gateway, ServeError, ServeOptions};
