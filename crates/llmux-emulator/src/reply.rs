//! What a vendor handler hands back (a status, headers and a full or SSE body) and the per-request context.

use bytes::Bytes;
use serde_json::Value;

/// The wire dialect a request is answered in, chosen from the vendor and the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// OpenAI `/v1/...`.
    OpenAi,
    /// DashScope native `/api/v1/...` (and any path outside compatible mode).
    DashScopeNative,
    /// DashScope OpenAI-compatible mode `/compatible-mode/v1/...`.
    DashScopeCompat,
    /// iFlytek Spark WebSocket paths (`/v3.5/chat`, …): handshakes and frames.
    SparkWs,
    /// iFlytek Spark OpenAI-compatible HTTP API `/v1/...`.
    SparkHttp,
    /// Huawei Pangu chat (`/v1/{project}/deployments/...`, `/api/v2/...`).
    Pangu,
    /// Huawei IAM `/v3/...` on the Pangu emulator.
    PanguIam,
}

/// Per-request values that appear in answers.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    pub dialect: Dialect,
    /// 1-based sequence number of the request on this emulator (control routes excluded).
    pub seq: u64,
    /// Unix seconds at arrival, used for `created`.
    pub created: u64,
}

impl Ctx {
    /// DashScope-style uuid-like request id: `00000000-0000-4000-8000-<seq as 12 hex digits>`;
    /// OpenAI: `req_emu<seq as 12 hex digits>`.
    pub(crate) fn request_id(&self) -> String {
        match self.dialect {
            Dialect::OpenAi => format!("req_emu{:012x}", self.seq),
            Dialect::DashScopeNative | Dialect::DashScopeCompat => {
                format!("00000000-0000-4000-8000-{:012x}", self.seq)
            }
            Dialect::SparkWs => format!("cht{:08x}@dx{:016x}", self.seq, self.seq),
            Dialect::SparkHttp => format!("cha{:08x}@dx{:016x}", self.seq, self.seq),
            Dialect::Pangu | Dialect::PanguIam => format!("{:032x}", self.seq),
        }
    }
}

/// A response body: complete bytes or a list of SSE frames (each already encoded, ending in a blank line).
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
            headers: vec![("x-request-id", ctx.request_id())],
            body: ReplyBody::Full(Bytes::from(body.to_string())),
        }
    }

    /// An SSE reply with the dialect's content type and request-id header.
    pub(crate) fn sse(ctx: &Ctx, frames: Vec<Bytes>) -> Reply {
        let content_type = match ctx.dialect {
            Dialect::DashScopeNative => "text/event-stream;charset=UTF-8",
            Dialect::OpenAi
            | Dialect::DashScopeCompat
            | Dialect::SparkWs
            | Dialect::SparkHttp
            | Dialect::Pangu
            | Dialect::PanguIam => "text/event-stream",
        };
        Reply {
            status: 200,
            content_type,
            headers: vec![("x-request-id", ctx.request_id())],
            body: ReplyBody::Sse(frames),
        }
    }

    pub(crate) fn with_header(mut self, name: &'static str, value: String) -> Reply {
        self.headers.push((name, value));
        self
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
