//! llmux-gateway: the `llmux serve` HTTP gateway on top of llmux-core: OpenAI- and
//! DashScope-compatible ingress, virtual keys, limits, routing with failover, and usage
//! accounting in SQLite or PostgreSQL.
//!
//! Request path: [`app::router`] → a handler in [`routes`] → auth ([`auth`], virtual keys in
//! [`keys`] over the [`store`]) → per-key [`limits`] → the ingress wire ([`openai_wire`],
//! [`dashscope_wire`]) into core types → [`routing::Routes`] picks channels and fails over →
//! `llmux_core::Client` per channel → events encoded back in the ingress protocol → usage
//! recorded once per request ([`usage`]). [`serve::Gateway`] binds and runs it; [`config`]
//! loads `llmux.toml`.
//!
//! Invariant: the gateway never parses vendor JSON; it sees only core types and `Error`.

pub mod app;
pub mod auth;
pub mod config;
pub mod conn;
pub mod dashscope_wire;
pub mod error;
pub mod keys;
pub mod limits;
pub mod metrics;
pub mod openai_wire;
pub mod openapi;
pub mod redact;
pub mod rejection;
pub mod routes;
pub mod routing;
pub mod serve;
pub mod store;
pub mod usage;

pub use config::{Config, ConfigError, RawConfig};
pub use serve::{Gateway, ServeError, ServeOptions};
