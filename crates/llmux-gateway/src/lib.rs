//! llmux-gateway: the `llmux serve` HTTP gateway on top of llmux-core: OpenAI- and
//! DashScope-compatible ingress, virtual keys, limits, routing with failover, and usage
//! accounting in SQLite or PostgreSQL.
