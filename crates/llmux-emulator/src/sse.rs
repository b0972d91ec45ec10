//! Writes server-sent-event frames in each vendor's exact byte format, including fault frames.

use bytes::Bytes;
use serde_json::{json, Value};

use crate::emulator::{pangu, spark};
use crate::reply::{Ctx, Dialect};

/// OpenAI framing: `data: <json>\n\n`.
pub(crate) fn openai_frame(data: &Value) -> Bytes {
    Bytes::from(format!("data: {data}\n\n"))
}

/// OpenAI end of stream: `data: [DONE]\n\n`.
pub(crate) fn openai_done() -> Bytes {
    Bytes::from_static(b"data: [DONE]\n\n")
}

/// DashScope native framing: `id:N\nevent:<event>\n:HTTP_STATUS/<status>\ndata:<json>\n\n` (no spaces).
pub(crate) fn dashscope_frame(id: usize, event: &str, status: u16, data: &Value) -> Bytes {
    Bytes::from(format!(
        "id:{id}\nevent:{event}\n:HTTP_STATUS/{status}\ndata:{data}\n\n"
    ))
}

/// The message DashScope sends when moderation blocks output.
pub(crate) const DATA_INSPECTION_MESSAGE: &str = "Output data may contain inappropriate content.";

/// The vendor's mid-stream error frame; `sent` is how many frames went before it.
pub(crate) fn error_frame(ctx: &Ctx, sent: usize) -> Bytes {
    match ctx.dialect {
        Dialect::OpenAi => openai_frame(&json!({"error": {
            "message": "The server had an error while processing your request. Sorry about that!",
            "type": "server_error", "param": null, "code": null}})),
        Dialect::DashScopeCompat => openai_frame(&json!({"error": {
            "message": DATA_INSPECTION_MESSAGE, "type": "data_inspection_failed",
            "param": null, "code": "data_inspection_failed"}, "request_id": ctx.request_id()})),
        Dialect::DashScopeNative => dashscope_frame(
            sent + 1,
            "error",
            400,
            &json!({"code": "DataInspectionFailed", "message": DATA_INSPECTION_MESSAGE,
                    "request_id": ctx.request_id()}),
        ),
        Dialect::SparkWs | Dialect::SparkHttp => spark::sse_error_frame(ctx),
        Dialect::Pangu | Dialect::PanguIam => pangu::sse_error_frame(ctx),
    }
}

/// A frame in the vendor's framing whose data is truncated JSON; `sent` is how many frames went before it.
pub(crate) fn malformed_frame(ctx: &Ctx, sent: usize) -> Bytes {
    match ctx.dialect {
        Dialect::SparkWs | Dialect::SparkHttp => spark::sse_malformed_frame(),
        Dialect::OpenAi | Dialect::DashScopeCompat | Dialect::Pangu | Dialect::PanguIam => Bytes::from_static(
            b"data: {\"id\":\"chatcmpl-malformed\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"delta\":\n\n",
        ),
        Dialect::DashScopeNative => Bytes::from(format!(
            "id:{}\nevent:result\n:HTTP_STATUS/200\ndata:{{\"output\":{{\"choices\":[{{\"message\":\n\n",
            sent + 1
        )),
    }
}
