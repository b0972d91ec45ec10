//! Ollama's NDJSON stream framing: one compact JSON object per `\n`-terminated line, plus the fault lines.

use bytes::Bytes;
use serde_json::{json, Value};

use crate::reply::{Ctx, Reply, ReplyBody};

/// Content type of an Ollama stream.
pub(crate) const CONTENT_TYPE: &str = "application/x-ndjson";

/// The error Ollama reports when the model runner fails (mid-stream and for `FaultKind::ErrorEvent`).
pub(crate) const RUNNER_ERROR: &str =
    "an error was encountered while running the model: unexpected EOF";

/// One NDJSON line: compact JSON plus `\n`.
pub(crate) fn line(v: &Value) -> Bytes {
    Bytes::from(format!("{v}\n"))
}

/// A 200 NDJSON stream reply of these lines.
pub(crate) fn reply(ctx: &Ctx, lines: Vec<Bytes>) -> Reply {
    Reply {
        status: 200,
        content_type: CONTENT_TYPE,
        headers: vec![("x-request-id", ctx.request_id())],
        body: ReplyBody::Sse(lines),
    }
}

/// The mid-stream error line `{"error":"…"}` after which the stream ends.
pub(crate) fn error_line() -> Bytes {
    line(&json!({ "error": RUNNER_ERROR }))
}

/// A line whose JSON is cut short.
pub(crate) fn malformed_line() -> Bytes {
    Bytes::from_static(b"{\"model\":\"malformed\",\"message\":{\"role\":\n")
}
