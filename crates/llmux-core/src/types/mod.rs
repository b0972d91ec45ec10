//! Provider-neutral request and response types: chat, tools, usage, embeddings, models.

mod chat;
mod embeddings;

pub use chat::*;
pub use embeddings::*;
