//! Zhipu GLM open platform (`/api/paas/v4`, PROTOCOLS 6): chat completions and embeddings, raw-key or JWT auth.
//!
//! The wire is OpenAI-like with Zhipu's differences: `request_id` is echoed (or generated), stream chunks carry
//! `role` on every delta, tool calls stream whole (one chunk per call), usage arrives on the last chunk only (always,
//! no `stream_options`), then `data: [DONE]`; errors are `{"error":{"code":"<numeric string>","message"}}`.

use bytes::Bytes;
use serde_json::{json, Map, Value};

use crate::answer::{self, Answer, ChatInput, Usage};
use crate::auth::jwt;
use crate::reply::{Ctx, Incoming, Reply};
use crate::sse;

const CHAT: &str = "/api/paas/v4/chat/completions";
const EMBEDDINGS: &str = "/api/paas/v4/embeddings";

/// The content-moderation message (code 1301).
pub(crate) const SENSITIVE_MESSAGE: &str = "系统检测到输入或生成内容可能包含不安全或敏感内容，请您避免输入易产生敏感内容的提示语，感谢您的配合。";

/// Zhipu's error body `{"error":{"code","message"}}`.
pub(crate) fn error(ctx: &Ctx, status: u16, code: &str, message: &str) -> Reply {
    Reply::json(
        ctx,
        status,
        &json!({"error": {"code": code, "message": message}}),
    )
}

fn bad_params(ctx: &Ctx, detail: &str) -> Reply {
    error(
        ctx,
        400,
        "1210",
        &format!("API 调用参数有误，请检查文档。{detail}"),
    )
}

fn bad_messages(ctx: &Ctx) -> Reply {
    error(ctx, 400, "1214", "messages 参数非法。请检查文档。")
}

fn no_model(ctx: &Ctx) -> Reply {
    error(ctx, 400, "1211", "模型不存在，请检查模型代码。")
}

/// 401 with code 1000–1004 unless the bearer credential is a configured key or a valid JWT of one.
pub(crate) fn check_auth(ctx: &Ctx, req: &Incoming<'_>, keys: &[String]) -> Option<Reply> {
    let credential = super::bearer(req).or_else(|| {
        req.header("authorization")
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    });
    match jwt::verify(credential.as_deref(), keys, ctx.now_ms) {
        Ok(()) => None,
        Err(e) => {
            tracing::debug!(code = e.code(), "zhipu emulator refused a request: {e:?}");
            Some(error(ctx, 401, e.code(), &e.message()))
        }
    }
}

/// The vendor's error body for an HTTP status (used by `FaultKind::Status` without a body).
pub(crate) fn status_error(ctx: &Ctx, status: u16) -> Reply {
    let (code, message) = match status {
        400 => ("1210", "API 调用参数有误，请检查文档。"),
        401 => ("1000", "身份验证失败。"),
        404 => ("1211", "模型不存在，请检查模型代码。"),
        429 => (
            "1302",
            "您当前使用该API的并发数过高，请降低并发，或联系客服增加限额。",
        ),
        s if s >= 500 => ("500", "内部错误。"),
        _ => ("1210", "API 调用参数有误，请检查文档。"),
    };
    error(ctx, status, code, message)
}

/// `FaultKind::QuotaExhausted`: HTTP 429, code `1113` (arrears).
pub(crate) fn quota_error(ctx: &Ctx) -> Reply {
    error(ctx, 429, "1113", "您的账户已欠费，请充值后重试。")
}

/// `FaultKind::ErrorBody200`: HTTP 200 carrying `{"error":{"code":"500",…}}`.
pub(crate) fn error_body_200(ctx: &Ctx) -> Reply {
    error(ctx, 200, "500", "内部错误。")
}

/// `FaultKind::ErrorEvent` on a non-stream request: 400, code `1301`.
pub(crate) fn content_filter_error(ctx: &Ctx) -> Reply {
    error(ctx, 400, "1301", SENSITIVE_MESSAGE)
}

/// The mid-stream error event `data: {"error":{"code":"1301",…}}` (no `[DONE]` follows).
pub(crate) fn error_event() -> Bytes {
    sse::openai_frame(&json!({"error": {"code": "1301", "message": SENSITIVE_MESSAGE}}))
}

/// Routes a Zhipu request.
pub(crate) fn handle(ctx: &Ctx, req: &Incoming<'_>) -> Reply {
    match (req.method, req.path) {
        ("POST", CHAT) => chat(ctx, req.body),
        ("POST", EMBEDDINGS) => embeddings(ctx, req.body),
        _ => Reply::json(
            ctx,
            404,
            &json!({"timestamp": ctx.now_ms, "status": 404, "error": "Not Found",
                    "path": req.path}),
        ),
    }
}

fn parse_object(ctx: &Ctx, body: &[u8]) -> Result<Map<String, Value>, Reply> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => Ok(o),
        _ => Err(bad_params(ctx, "请求体不是合法的 JSON。")),
    }
}

fn model_of(ctx: &Ctx, req: &Map<String, Value>) -> Result<String, Reply> {
    match req.get("model").and_then(Value::as_str) {
        Some(m) if !m.is_empty() => Ok(m.to_owned()),
        _ => Err(no_model(ctx)),
    }
}

fn in_unit_range(ctx: &Ctx, req: &Map<String, Value>, name: &str) -> Result<(), Reply> {
    match req.get(name) {
        None | Some(Value::Null) => Ok(()),
        Some(v) if v.as_f64().is_some_and(|x| (0.0..=1.0).contains(&x)) => Ok(()),
        Some(_) => Err(bad_params(ctx, &format!("{name} 取值范围为 [0, 1]。"))),
    }
}

fn chat(ctx: &Ctx, body: &[u8]) -> Reply {
    let req = match parse_object(ctx, body) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let model = match model_of(ctx, &req) {
        Ok(m) => m,
        Err(e) => return e,
    };
    let messages = match req.get("messages") {
        Some(Value::Array(a)) if !a.is_empty() => answer::read_messages(a),
        _ => return bad_messages(ctx),
    };
    for name in ["temperature", "top_p"] {
        if let Err(e) = in_unit_range(ctx, &req, name) {
            return e;
        }
    }
    let input = ChatInput {
        tools: answer::read_tools(req.get("tools")),
        tool_choice: answer::read_tool_choice(req.get("tool_choice")),
        parallel_tool_calls: false,
        max_tokens: req.get("max_tokens").and_then(Value::as_u64),
        stop: answer::read_stop(req.get("stop")),
        messages,
    };
    let ans = match answer::answer(&input) {
        Ok(a) => a,
        Err(name) => {
            return bad_params(
                ctx,
                &format!("tool_choice 指定的函数 {name} 不在 tools 中。"),
            )
        }
    };
    let usage = Usage {
        prompt: answer::prompt_tokens(&input.messages),
        completion: ans.completion_tokens(),
    };
    let id = ctx.request_id();
    let request_id = req
        .get("request_id")
        .and_then(Value::as_str)
        .filter(|r| !r.is_empty())
        .map_or_else(|| id.clone(), str::to_owned);
    let head = json!({"id": id, "request_id": request_id, "created": ctx.created, "model": model});
    if req.get("stream").and_then(Value::as_bool) == Some(true) {
        return Reply::sse(ctx, stream_frames(&head, &ans, usage));
    }
    let mut message = json!({"role": "assistant", "content": ans.text()});
    if let Answer::Tools { calls } = &ans {
        message["content"] = Value::Null;
        message["tool_calls"] = tool_calls_json(calls);
    }
    let mut body = head;
    body["object"] = json!("chat.completion");
    body["choices"] =
        json!([{"index": 0, "finish_reason": ans.finish().as_str(), "message": message}]);
    body["usage"] = usage_json(usage);
    Reply::json(ctx, 200, &body)
}

fn tool_calls_json(calls: &[answer::ToolCall]) -> Value {
    calls
        .iter()
        .enumerate()
        .map(|(i, c)| {
            json!({"id": c.id, "index": i, "type": "function",
                   "function": {"name": c.name, "arguments": c.arguments}})
        })
        .collect()
}

fn usage_json(u: Usage) -> Value {
    json!({"prompt_tokens": u.prompt, "completion_tokens": u.completion, "total_tokens": u.total()})
}

fn stream_frames(head: &Value, ans: &Answer, usage: Usage) -> Vec<Bytes> {
    let chunk = |delta: Value, finish: Option<&str>, usage: Option<Value>| {
        let mut c = head.clone();
        c["object"] = json!("chat.completion.chunk");
        let mut choice = json!({"index": 0, "delta": delta});
        if let Some(f) = finish {
            choice["finish_reason"] = json!(f);
        }
        c["choices"] = json!([choice]);
        if let Some(u) = usage {
            c["usage"] = u;
        }
        sse::openai_frame(&c)
    };
    let mut out = Vec::new();
    match ans {
        Answer::Text { pieces, .. } => {
            for p in pieces {
                out.push(chunk(
                    json!({"role": "assistant", "content": p}),
                    None,
                    None,
                ));
            }
        }
        Answer::Tools { calls } => {
            for c in tool_calls_json(calls).as_array().into_iter().flatten() {
                out.push(chunk(
                    json!({"role": "assistant", "tool_calls": [c]}),
                    None,
                    None,
                ));
            }
        }
    }
    out.push(chunk(
        json!({"role": "assistant", "content": ""}),
        Some(ans.finish().as_str()),
        Some(usage_json(usage)),
    ));
    out.push(sse::openai_done());
    out
}

fn embeddings(ctx: &Ctx, body: &[u8]) -> Reply {
    let req = match parse_object(ctx, body) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let model = match model_of(ctx, &req) {
        Ok(m) => m,
        Err(e) => return e,
    };
    let texts: Vec<String> = match req.get("input") {
        Some(Value::String(s)) if !s.is_empty() => vec![s.clone()],
        Some(Value::Array(a)) if !a.is_empty() && a.iter().all(Value::is_string) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => return bad_params(ctx, "input 须为非空字符串或字符串数组。"),
    };
    let default_dim = if model == "embedding-3" { 2048 } else { 1024 };
    let dim = match req.get("dimensions") {
        None | Some(Value::Null) => default_dim,
        Some(v) => match v.as_u64() {
            Some(d) if d > 0 => d,
            _ => return bad_params(ctx, "dimensions 须为正整数。"),
        },
    };
    let dim = usize::try_from(dim).unwrap_or(1024).min(16_384);
    let tokens: u64 = texts.iter().map(|t| answer::pieces(t).len() as u64).sum();
    let data: Vec<Value> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            json!({"index": i, "object": "embedding",
                   "embedding": answer::floats_json(&answer::embedding(t, dim))})
        })
        .collect();
    Reply::json(
        ctx,
        200,
        &json!({"model": model, "data": data, "object": "list",
                "usage": {"prompt_tokens": tokens, "completion_tokens": 0, "total_tokens": tokens}}),
    )
}
