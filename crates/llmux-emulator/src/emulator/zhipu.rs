//! Zhipu GLM open platform (`/api/paas/v4`, PROTOCOLS 6): chat completions and embeddings, raw-key or JWT auth.

use std::net::SocketAddr;

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::{Base, Dialect, EnvValue, ProviderEnv, VendorEmulator};
use crate::answer::{self, Answer, ChatInput, Usage};
use crate::auth::jwt;
use crate::reply::{Ctx, Incoming, Reply};
use crate::{sse, Shared, Vendor};

/// The Zhipu emulator (one dialect).
#[derive(Debug)]
struct Zhipu;

impl Vendor {
    /// Zhipu GLM, base `/api/paas/v4`; provider id `zhipu`. Default key `emulatorid.emulatorsecret` (an API key
    /// `<id>.<secret>`).
    ///
    /// * **Endpoints:** `POST /api/paas/v4/chat/completions`, `POST /api/paas/v4/embeddings`; any other path:
    ///   404 `{"timestamp","status":404,"error":"Not Found","path"}`.
    /// * **Auth:** `Authorization: Bearer <credential>` (the `Bearer ` prefix may be omitted), either a
    ///   configured API key `<id>.<secret>` or an HS256 JWT: header `alg: HS256`, `sign_type: SIGN`; payload
    ///   `api_key` (a configured key's id), `exp` and `timestamp` in **milliseconds**; signed with that key's
    ///   secret. HTTP 401 `{"error":{"code","message"}}`: `1000` unknown key or id, `1001` no header, `1002`
    ///   malformed token, `1003` expired (`exp` before the emulator's clock; checked after the signature), `1004`
    ///   bad signature.
    /// * **Ids:** `id` (and `request_id` unless the request sets one) `00000000-0000-4000-8000-<seq as 12 hex>`.
    /// * **Answers:** `{"id","request_id","created","model","object":"chat.completion","choices":[{"index":0,
    ///   "finish_reason","message":{"role","content","tool_calls"?:[{"id","index","type","function":{"name",
    ///   "arguments"}}]}}],"usage"}` (`content` null for tool calls). Stream: `data: <chunk>\n\n`, `role` on
    ///   every delta, no `finish_reason` until the last chunk, which has the finish reason, an empty delta
    ///   content and the only `usage`; tool calls come whole, one chunk per call; then `data: [DONE]`.
    ///   `max_tokens` and `stop` shape the reply; the first tool only is answered. `do_sample`, `user_id`,
    ///   `thinking`, `response_format` and non-function tools (`web_search`, `retrieval`) are accepted and
    ///   ignored.
    /// * **Validation (400):** bad JSON or `temperature`/`top_p` outside 0–1 → `1210`; no `model` → `1211`;
    ///   missing or empty `messages` → `1214`.
    /// * **Embeddings:** `{"model","data":[{"index","object":"embedding","embedding"}],"object":"list",
    ///   "usage"}`; `dimensions` (any positive value), else 2048 for `embedding-3` and 1024 otherwise.
    /// * **Faults:** `QuotaExhausted` → 429 `1113` (Zhipu documents arrears as 429); `ErrorEvent` → 400 `1301`,
    ///   mid-stream `data: {"error":{"code":"1301","message"}}` without `[DONE]`; `ErrorBody200` → 200 with
    ///   code `500`.
    #[expect(
        non_upper_case_globals,
        reason = "vendor constants keep the names of the enum variants they replaced, so callers did not change"
    )]
    pub const Zhipu: Vendor = Vendor(&Zhipu);
}

impl VendorEmulator for Zhipu {
    fn id(&self) -> &'static str {
        "zhipu"
    }

    fn default_key(&self) -> &'static str {
        "emulatorid.emulatorsecret"
    }

    fn base_url(&self, addr: SocketAddr) -> String {
        format!("http://{addr}/api/paas/v4")
    }

    fn providers(&self) -> &'static [ProviderEnv] {
        &[ProviderEnv {
            id: "zhipu",
            base: Base::Vendor,
            vars: &[
                ("ZHIPU_BASE_URL", EnvValue::BaseUrl),
                ("ZHIPUAI_API_KEY", EnvValue::Key),
            ],
        }]
    }

    fn dialect(&self, _path: &str) -> &'static dyn Dialect {
        &Zhipu
    }
}

impl Dialect for Zhipu {
    fn request_id(&self, seq: u64) -> String {
        super::uuid_request_id(seq)
    }

    /// 401 with code 1000–1004 unless the bearer credential is a configured key or a valid JWT of one.
    fn check_auth(&self, ctx: &Ctx, req: &Incoming<'_>, shared: &Shared) -> Option<Reply> {
        let credential = super::bearer(req).or_else(|| {
            req.header("authorization")
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        });
        match jwt::verify(credential.as_deref(), &shared.api_keys, ctx.now_ms) {
            Ok(()) => None,
            Err(e) => {
                tracing::debug!(code = e.code(), "zhipu emulator refused a request: {e:?}");
                Some(error(ctx, 401, e.code(), &e.message()))
            }
        }
    }

    fn handle(&self, ctx: &Ctx, req: &Incoming<'_>, _shared: &Shared) -> Reply {
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

    fn status_error(&self, ctx: &Ctx, status: u16) -> Reply {
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

    /// HTTP 429, code `1113` (arrears).
    fn quota_error(&self, ctx: &Ctx) -> Reply {
        error(ctx, 429, "1113", "您的账户已欠费，请充值后重试。")
    }

    /// HTTP 200 carrying `{"error":{"code":"500",…}}`.
    fn error_body_200(&self, ctx: &Ctx) -> Reply {
        error(ctx, 200, "500", "内部错误。")
    }

    /// 400, code `1301`.
    fn content_filter_error(&self, ctx: &Ctx) -> Reply {
        error(ctx, 400, "1301", SENSITIVE_MESSAGE)
    }

    /// `data: {"error":{"code":"1301",…}}` (no `[DONE]` follows).
    fn stream_error_frame(&self, _ctx: &Ctx, _sent: usize) -> Bytes {
        sse::data(&json!({"error": {"code": "1301", "message": SENSITIVE_MESSAGE}}))
    }

    fn malformed_frame(&self, _ctx: &Ctx, _sent: usize) -> Bytes {
        super::openai::malformed_chunk()
    }
}

const CHAT: &str = "/api/paas/v4/chat/completions";
const EMBEDDINGS: &str = "/api/paas/v4/embeddings";

/// The content-moderation message (code 1301).
const SENSITIVE_MESSAGE: &str = "系统检测到输入或生成内容可能包含不安全或敏感内容，请您避免输入易产生敏感内容的提示语，感谢您的配合。";

/// Zhipu's error body `{"error":{"code","message"}}`.
fn error(ctx: &Ctx, status: u16, code: &str, message: &str) -> Reply {
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
        sse::data(&c)
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
    out.push(sse::done());
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
