//! Newline-delimited JSON stream framing: one compact JSON object per `\n`-terminated line.

use bytes::Bytes;
use serde_json::Value;

use crate::reply::{Ctx, Reply, ReplyBody};

/// Content type of an NDJSON stream.
pub(crate) const CONTENT_TYPE: &str = "application/x-ndjson";

/// One NDJSON line: compact JSON plus `\n`.
pub(crate) fn line(v: &Value) -> Bytes {
    Bytes::from(format!("{v}\n"))
}

/// A 200 NDJSON stream reply of these lines.
pub(crate) fn reply(ctx: &Ctx, lines: Vec<Bytes>) -> Reply {
    Reply {
        status: 200,
        content_type: CONTENT_TYPE,
        headers: vec![(ctx.dialect.request_id_header(), ctx.request_id())],
        body: ReplyBody::Sse(lines),
    }
}
