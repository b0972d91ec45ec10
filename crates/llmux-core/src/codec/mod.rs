//! Byte decoders that turn a response body into frames, with no IO: feed bytes in any
//! chunking, get the same frames out. SSE and NDJSON bodies and WebSocket text messages all
//! become [`Frame`]s, so stream parsers do not care how the vendor framed its stream.

pub mod ndjson;
pub mod sse;

pub use ndjson::NdjsonDecoder;
pub use sse::{SseDecoder, SseTail};

/// The default bound on one frame's size, so a runaway upstream cannot exhaust memory.
pub const DEFAULT_MAX_FRAME: usize = 8 * 1024 * 1024;

/// One unit of a stream: an SSE event, an NDJSON line or a WebSocket text message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frame {
    /// The SSE `event:` field, when present.
    pub event: Option<String>,
    /// The payload: SSE `data:` lines joined by `\n`, the NDJSON line, or the WebSocket text.
    pub data: String,
    /// The SSE `id:` field, when present.
    pub id: Option<String>,
    /// The last SSE comment line of the frame, without the colon (DashScope sends `HTTP_STATUS/200`).
    pub comment: Option<String>,
}

impl Frame {
    /// A frame that is only a payload (NDJSON line, WebSocket message).
    pub fn data(data: String) -> Self {
        Frame {
            data,
            ..Frame::default()
        }
    }
}

/// What a decoder had left when the body ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tail {
    /// A last frame without its terminator (delivered anyway).
    pub frame: Option<Frame>,
    /// True when the body ended inside a frame.
    pub truncated: bool,
}
