//! Byte decoders that turn a response body into frames, with no IO: feed bytes in any
//! chunking, get the same frames out.

pub mod sse;

pub use sse::{SseDecoder, SseFrame, SseTail};

/// The default bound on one frame's size, so a runaway upstream cannot exhaust memory.
pub const DEFAULT_MAX_FRAME: usize = 8 * 1024 * 1024;
