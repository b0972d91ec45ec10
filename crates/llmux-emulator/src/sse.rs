//! Server-sent-event framing shared by the dialects (each dialect builds its own frames from these).

use bytes::Bytes;
use serde_json::Value;

/// A data-only frame: `data: <json>\n\n`.
pub(crate) fn data(data: &Value) -> Bytes {
    Bytes::from(format!("data: {data}\n\n"))
}

/// The end-of-stream sentinel of the OpenAI-style streams: `data: [DONE]\n\n`.
pub(crate) fn done() -> Bytes {
    Bytes::from_static(b"data: [DONE]\n\n")
}
