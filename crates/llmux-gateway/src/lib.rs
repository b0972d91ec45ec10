//! llmux-gateway: the `llmux serve` HTTP gateway on top of llmux-core: OpenAI- and
//! DashScope-compatible ingress, virtual keys, limits, routing with failover, and usage
//! accounting in SQLite or PostgreSQL.

pub mod keys;
pub mod limits;
pub mod store;
pub mod usage;
