//! llmux-core: one request, response and stream type for every LLM provider, with each vendor's
//! real wire protocol and auth behind a single [`Provider`](providers::Provider) trait.
//!
//! The usual entry point is [`Client`]: address a model as `provider/model`
//! (`dashscope/qwen-plus`, `openai/gpt-4o-mini`) and call [`Client::chat`],
//! [`Client::chat_stream`] or [`Client::embed`].

#![warn(missing_docs)]

pub mod agent;
pub mod client;
pub mod clock;
pub mod codec;
pub mod context;
pub mod error;
pub mod http;
pub mod providers;
pub mod resilience;
pub mod secret;
pub mod stream;
pub mod tokenize;
pub mod tokens;
pub mod types;
mod ws;

pub use client::{Client, ClientBuilder};

/// The `tracing` target of the spans llmux makes for trace export (a span per gateway request,
/// a span per upstream attempt): a subscriber that exports traces enables this target, log
/// output filters it out, and where nothing enables it the spans cost one cached check each.
pub const SPAN_TARGET: &str = "llmux_otel";
pub use error::{Error, ErrorKind, Result};
pub use secret::SecretString;
pub use stream::{ChatStream, StreamAccumulator, StreamEvent};
pub use types::*;
