//! What a dialect's handler hands back (a status, headers and a full or streamed body) and the per-request context.

use bytes::Bytes;
use serde_json::Value;

use crate::emulator::Dialect;

/// Per-request values that appear in answers.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    /// The dialect the request is answered in, chosen by the vendor from the path.
    pub dialect: &'static dyn Dialect,
    /// 1-based sequence number of the request on this emulator (control routes excluded).
    pub seq: u64,
    /// Unix seconds at arrival on the emulator's clock, used for `created`.
    pub created: u64,
    /// Unix milliseconds at arrival on the emulator clock (crate docs, "Clock").
    pub now_ms: i64,
}

impl Ctx {
    /// The request id in the dialect's format.
    pub(crate) fn request_id(&self) -> String {
        self.dialect.request_id(self.seq)
    }
}

/// A response body: complete bytes or a list of stream frames (each already encoded: SSE frames end in a blank
/// line, NDJSON lines in `\n`).
#[derive(Debug, Clone)]
pub(crate) enum ReplyBody {
    Full(Bytes),
    Sse(Vec<Bytes>),
}

/// A response before faults, latency and streaming are applied.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: ReplyBody,
}

impl Reply {
    /// A JSON reply with the dialect's request-id header.
    pub(crate) fn json(ctx: &Ctx, status: u16, body: &Value) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            headers: vec![(ctx.dialect.request_id_header(), ctx.request_id())],
            body: ReplyBody::Full(Bytes::from(body.to_string())),
        }
    }

    /// An SSE reply with the dialect's content type and request-id header.
    pub(crate) fn sse(ctx: &Ctx, frames: Vec<Bytes>) -> Reply {
        let content_type = ctx.dialect.sse_content_type();
        Reply {
            status: 200,
            content_type,
            headers: vec![(ctx.dialect.request_id_header(), ctx.request_id())],
            body: ReplyBody::Sse(frames),
        }
    }

    pub(crate) fn with_header(mut self, name: &'static str, value: String) -> Reply {
        self.headers.push((name, value));
        self
    }

    /// Sets a header, replacing any value the reply already has for it.
    pub(crate) fn set_header(mut self, name: &'static str, value: String) -> Reply {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.with_header(name, value)
    }

    pub(crate) fn is_stream(&self) -> bool {
        matches!(self.body, ReplyBody::Sse(_))
    }
}

/// A request as the vendor handlers see it.
#[derive(Debug)]
pub(crate) struct Incoming<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// Raw query string, if any.
    pub query: Option<&'a str>,
    pub headers: &'a axum::http::HeaderMap,
    pub body: &'a [u8],
}

impl Incoming<'_> {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}
