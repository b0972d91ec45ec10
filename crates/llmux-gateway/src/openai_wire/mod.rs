//! The OpenAI wire format as the gateway serves it: requests into core types, responses,
//! `chat.completion.chunk` streams and embeddings out (PROTOCOLS §2).

pub mod embeddings;
pub mod request;
pub mod response;
pub mod stream;

pub use embeddings::{encode_embeddings, parse_embeddings, EncodingFormat};
pub use request::{parse_chat, ChatOptions};
pub use response::encode_chat;
pub use stream::ChunkEncoder;

/// Parses JSON with the path of the first problem in the error (`messages[0].role: …`).
pub(crate) fn from_json<'a, T: serde::Deserialize<'a>>(
    body: &'a [u8],
) -> Result<T, crate::error::ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let msg = if inner.is_syntax() || inner.is_eof() {
            format!("the request body is not valid JSON: {inner}")
        } else if path == "." {
            format!("invalid request body: {inner}")
        } else {
            format!("invalid request body at `{path}`: {inner}")
        };
        let err = crate::error::ApiError::invalid(msg);
        if path == "." || inner.is_syntax() || inner.is_eof() {
            err
        } else {
            err.param(path)
        }
    })
}
