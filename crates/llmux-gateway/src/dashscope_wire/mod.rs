//! The DashScope native protocol as the gateway serves it (PROTOCOLS §1): text-generation
//! requests into core types, `text`/`message` result formats, `X-DashScope-SSE` streams in
//! incremental and cumulative mode, and native embeddings.

pub mod embeddings;
pub mod request;
pub mod response;
pub mod stream;

pub use embeddings::{encode_embeddings, parse_embeddings};
pub use request::{parse_generation, GenerationOptions, ResultFormat};
pub use response::encode_generation;
pub use stream::FrameEncoder;
