//! The Gemini dialect: `POST /v1beta/models/{model}:generateContent`, `:streamGenerateContent`
//! (`?alt=sse` server-sent events, or a streamed JSON array without it) and `:countTokens`,
//! decoded into core types and encoded back; errors in Google's envelope
//! `{"error":{"code","message","status"}}`.

pub mod request;
pub mod response;
pub mod stream;

pub use request::{decode_count, decode_generate, parse_target, Method};
pub use response::{encode_generate, google_error, GenerateContentResponse, GoogleError};
pub use stream::ChunkEncoder;
