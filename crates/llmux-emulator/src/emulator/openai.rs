//! OpenAI wire format: `/v1` chat completions, embeddings and models; also serves DashScope's compatible mode.
//!
//! In compatible mode (`Dialect::DashScopeCompat`) the differences of PROTOCOLS.md 1.7 apply: error bodies carry a
//! top-level `request_id`, error codes are DashScope's (`invalid_parameter_error`, `data_inspection_failed`, ...),
//! embeddings accept only `encoding_format: "float"` and at most 10 rows, and `parallel_tool_calls` defaults to false.

use base64::Engine as _;
use bytes::Bytes;
use serde_json::{json, Map, Value};

use crate::answer::{self, Answer, ChatInput, Usage};
use crate::reply::{Ctx, Dialect, Incoming, Reply};
use crate::sse;

/// Models listed by `GET /v1/models` (all `created` 1700000000, `owned_by` "system").
pub(crate) const OPENAI_MODELS: &[&str] = &[
    "gpt-4o-mini",
    "gpt-4o",
    "gpt-4.1-mini",
    "text-embedding-3-small",
    "text-embedding-3-large",
    "text-embedding-ada-002",
];

/// Models listed by `GET /compatible-mode/v1/models`.
pub(crate) const COMPAT_MODELS: &[&str] = &[
    "qwen-plus",
    "qwen-turbo",
    "qwen-max",
    "qwen-vl-plus",
    "text-embedding-v3",
    "text-embedding-v4",
];

/// Routes a request under `/v1` (OpenAI) or `/compatible-mode/v1` (DashScope compatible mode).
pub(crate) fn handle(ctx: &Ctx, req: &Incoming<'_>) -> Reply {
    let prefix = match ctx.dialect {
        Dialect::DashScopeCompat => "/compatible-mode/v1",
        _ => "/v1",
    };
    let rest = req.path.strip_prefix(prefix).unwrap_or("");
    match (req.method, rest) {
        ("POST", "/chat/completions") => chat(ctx, req.body),
        ("POST", "/embeddings") => embeddings(ctx, req.body),
        ("GET", "/models") => models(ctx, None),
        ("GET", r) if r.starts_with("/models/") => models(ctx, r.strip_prefix("/models/")),
        _ => error(
            ctx,
            404,
            &format!("Invalid URL ({} {})", req.method, req.path),
            "invalid_request_error",
            None,
            None,
        ),
    }
}

/// The OpenAI error envelope; in compatible mode with a top-level `request_id`.
pub(crate) fn error(
    ctx: &Ctx,
    status: u16,
    message: &str,
    kind: &str,
    param: Option<&str>,
    code: Option<&str>,
) -> Reply {
    let mut body =
        json!({"error": {"message": message, "type": kind, "param": param, "code": code}});
    if ctx.dialect == Dialect::DashScopeCompat {
        body["request_id"] = Value::String(ctx.request_id());
    }
    Reply::json(ctx, status, &body)
}

/// Masks a key the way OpenAI does in its 401 message: keys longer than 8 characters keep their first 3 and last 4
/// characters, the rest become `*`.
pub(crate) fn mask_key(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() <= 8 {
        return key.to_owned();
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 7))
}

/// The 401 for a missing (`None`) or wrong key.
pub(crate) fn auth_error(ctx: &Ctx, key: Option<&str>) -> Reply {
    match (ctx.dialect, key) {
        (Dialect::DashScopeCompat, _) => error(
            ctx,
            401,
            "Incorrect API key provided. For details, see: https://help.aliyun.com/zh/model-studio/error-code#apikey-error",
            "invalid_request_error",
            None,
            Some("invalid_api_key"),
        ),
        (_, None) => error(
            ctx,
            401,
            "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if you're accessing the API from your browser and are prompted for a username and password. You can obtain an API key from https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            None,
            None,
        ),
        (_, Some(key)) => error(
            ctx,
            401,
            &format!("Incorrect API key provided: {}.", mask_key(key)),
            "invalid_request_error",
            None,
            Some("invalid_api_key"),
        ),
    }
}

/// The vendor's own error body for an HTTP status (used by `FaultKind::Status` without a body).
pub(crate) fn status_error(ctx: &Ctx, status: u16) -> Reply {
    if ctx.dialect == Dialect::DashScopeCompat {
        let (message, code) = match status {
            400 => ("Invalid parameter.", "invalid_parameter_error"),
            401 => ("Incorrect API key provided.", "invalid_api_key"),
            403 => ("Access denied.", "access_denied"),
            404 => (
                "The model does not exist or you do not have access to it.",
                "model_not_found",
            ),
            408 => (
                "Request timed out, please try again later.",
                "RequestTimeOut",
            ),
            429 => (
                "Requests rate limit exceeded, please try again later.",
                "limit_requests",
            ),
            500 => (
                "An internal error has occured, please try again later or contact service support.",
                "internal_error",
            ),
            503 => (
                "Service temporarily unavailable, possibly overloaded or not ready.",
                "ServiceUnavailable",
            ),
            s if s >= 500 => (
                "An internal error has occured, please try again later or contact service support.",
                "internal_error",
            ),
            _ => ("Bad request.", "invalid_request_error"),
        };
        return error(ctx, status, message, code, None, Some(code));
    }
    let (message, kind, code) = match status {
        400 => ("Invalid request.", "invalid_request_error", None),
        401 => (
            "Incorrect API key provided.",
            "invalid_request_error",
            Some("invalid_api_key"),
        ),
        403 => (
            "You do not have access to this resource.",
            "permission_error",
            None,
        ),
        404 => (
            "The model does not exist or you do not have access to it.",
            "invalid_request_error",
            Some("model_not_found"),
        ),
        408 => ("Request timed out.", "timeout", None),
        409 => (
            "The request conflicts with another request.",
            "invalid_request_error",
            None,
        ),
        422 => (
            "The request could not be processed.",
            "invalid_request_error",
            None,
        ),
        429 => (
            "Rate limit reached for requests. Please try again later.",
            "requests",
            Some("rate_limit_exceeded"),
        ),
        503 => (
            "The engine is currently overloaded, please try again later.",
            "server_error",
            None,
        ),
        s if s >= 500 => (
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
            None,
        ),
        _ => ("Invalid request.", "invalid_request_error", None),
    };
    error(ctx, status, message, kind, None, code)
}

/// `FaultKind::QuotaExhausted`: OpenAI 429 `insufficient_quota`; compatible mode 400 `Arrearage`.
pub(crate) fn quota_error(ctx: &Ctx) -> Reply {
    if ctx.dialect == Dialect::DashScopeCompat {
        return error(
            ctx,
            400,
            "Access denied, please make sure your account is in good standing. For details, see: https://help.aliyun.com/zh/model-studio/error-code#overdue-payment",
            "Arrearage",
            None,
            Some("Arrearage"),
        );
    }
    error(
        ctx,
        429,
        "You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.",
        "insufficient_quota",
        None,
        Some("insufficient_quota"),
    )
}

/// `FaultKind::ErrorBody200`: HTTP 200 carrying a server-error envelope.
pub(crate) fn error_body_200(ctx: &Ctx) -> Reply {
    let mut r = status_error(ctx, 500);
    r.status = 200;
    r
}

/// `FaultKind::ErrorEvent` on a non-stream request: 400 content filter (compatible mode: `data_inspection_failed`).
pub(crate) fn content_filter_error(ctx: &Ctx) -> Reply {
    match ctx.dialect {
        Dialect::DashScopeCompat => error(
            ctx,
            400,
            sse::DATA_INSPECTION_MESSAGE,
            "data_inspection_failed",
            None,
            Some("data_inspection_failed"),
        ),
        _ => error(
            ctx,
            400,
            "The response was filtered due to the prompt triggering the content management policy.",
            "invalid_request_error",
            Some("prompt"),
            Some("content_filter"),
        ),
    }
}

fn parse_error(ctx: &Ctx) -> Reply {
    error(
        ctx,
        400,
        "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)",
        "invalid_request_error",
        None,
        None,
    )
}

fn invalid(ctx: &Ctx, message: &str, param: Option<&str>, code: Option<&str>) -> Reply {
    let code = if ctx.dialect == Dialect::DashScopeCompat {
        Some("invalid_parameter_error")
    } else {
        code
    };
    error(ctx, 400, message, "invalid_request_error", param, code)
}

fn parse_object(body: &[u8]) -> Option<Map<String, Value>> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => Some(o),
        _ => None,
    }
}

fn chat(ctx: &Ctx, body: &[u8]) -> Reply {
    let Some(req) = parse_object(body) else {
        return parse_error(ctx);
    };
    let model = match req.get("model").and_then(Value::as_str) {
        Some(m) if !m.is_empty() => m.to_owned(),
        _ => {
            return invalid(
                ctx,
                "you must provide a model parameter",
                Some("model"),
                None,
            )
        }
    };
    let messages = match req.get("messages") {
        None | Some(Value::Null) => {
            return invalid(
                ctx,
                "Missing required parameter: 'messages'.",
                Some("messages"),
                Some("missing_required_parameter"),
            )
        }
        Some(Value::Array(a)) if a.is_empty() => {
            return invalid(
                ctx,
                "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
                Some("messages"),
                Some("empty_array"),
            )
        }
        Some(Value::Array(a)) => answer::read_messages(a),
        Some(_) => {
            return invalid(
                ctx,
                "Invalid type for 'messages': expected an array.",
                Some("messages"),
                Some("invalid_type"),
            )
        }
    };
    let input = ChatInput {
        tools: answer::read_tools(req.get("tools")),
        tool_choice: answer::read_tool_choice(req.get("tool_choice")),
        parallel_tool_calls: req
            .get("parallel_tool_calls")
            .and_then(Value::as_bool)
            .unwrap_or(ctx.dialect != Dialect::DashScopeCompat),
        max_tokens: req
            .get("max_completion_tokens")
            .and_then(Value::as_u64)
            .or_else(|| req.get("max_tokens").and_then(Value::as_u64)),
        stop: answer::read_stop(req.get("stop")),
        messages,
    };
    let ans = match answer::answer(&input) {
        Ok(a) => a,
        Err(name) => {
            return invalid(
                ctx,
                &format!("Invalid value for 'tool_choice': tool '{name}' is not in 'tools'."),
                Some("tool_choice"),
                None,
            )
        }
    };
    let usage = Usage {
        prompt: answer::prompt_tokens(&input.messages),
        completion: ans.completion_tokens(),
    };
    let id = format!("chatcmpl-emu{:06}", ctx.seq);
    if req.get("stream").and_then(Value::as_bool) == Some(true) {
        let include_usage = req
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            == Some(true);
        let chunker = Chunker {
            ctx,
            id: &id,
            model: &model,
            include_usage,
        };
        return Reply::sse(ctx, chunker.frames(&ans, usage));
    }
    let mut message = json!({"role": "assistant", "content": null, "refusal": null});
    match &ans {
        Answer::Text { .. } => message["content"] = Value::String(ans.text()),
        Answer::Tools { calls } => {
            message["tool_calls"] = calls
                .iter()
                .map(|c| {
                    json!({"id": c.id, "type": "function",
                                "function": {"name": c.name, "arguments": c.arguments}})
                })
                .collect();
        }
    }
    let body = json!({
        "id": id, "object": "chat.completion", "created": ctx.created, "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": null,
                     "finish_reason": ans.finish().as_str()}],
        "usage": usage_json(usage),
        "system_fingerprint": null,
    });
    Reply::json(ctx, 200, &body)
}

fn usage_json(u: Usage) -> Value {
    json!({"prompt_tokens": u.prompt, "completion_tokens": u.completion, "total_tokens": u.total(),
           "prompt_tokens_details": {"cached_tokens": 0},
           "completion_tokens_details": {"reasoning_tokens": 0}})
}

/// Builds `chat.completion.chunk` frames that share one id, created and model.
struct Chunker<'a> {
    ctx: &'a Ctx,
    id: &'a str,
    model: &'a str,
    include_usage: bool,
}

impl Chunker<'_> {
    fn chunk(&self, choices: Value, usage: Option<Value>) -> Bytes {
        let mut c = json!({"id": self.id, "object": "chat.completion.chunk", "created": self.ctx.created,
                           "model": self.model, "system_fingerprint": null, "choices": choices});
        if self.include_usage {
            c["usage"] = usage.unwrap_or(Value::Null);
        }
        sse::openai_frame(&c)
    }

    fn delta(&self, delta: Value) -> Bytes {
        self.chunk(
            json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": null}]),
            None,
        )
    }

    fn frames(&self, ans: &Answer, usage: Usage) -> Vec<Bytes> {
        let mut out = Vec::new();
        match ans {
            Answer::Text { pieces, .. } => {
                out.push(self.delta(json!({"role": "assistant", "content": ""})));
                out.extend(pieces.iter().map(|p| self.delta(json!({"content": p}))));
            }
            Answer::Tools { calls } => {
                for (i, call) in calls.iter().enumerate() {
                    let first = json!({"index": i, "id": call.id, "type": "function",
                                       "function": {"name": call.name, "arguments": ""}});
                    out.push(if i == 0 {
                        self.delta(
                            json!({"role": "assistant", "content": null, "tool_calls": [first]}),
                        )
                    } else {
                        self.delta(json!({"tool_calls": [first]}))
                    });
                    for frag in call.fragments() {
                        out.push(self.delta(
                            json!({"tool_calls": [{"index": i, "function": {"arguments": frag}}]}),
                        ));
                    }
                }
            }
        }
        out.push(self.chunk(
            json!([{"index": 0, "delta": {}, "logprobs": null,
                    "finish_reason": ans.finish().as_str()}]),
            None,
        ));
        if self.include_usage {
            out.push(self.chunk(json!([]), Some(usage_json(usage))));
        }
        out.push(sse::openai_done());
        out
    }
}

/// One embedding input: its text (hashed for the vector) and its token count.
fn embedding_inputs(input: &Value) -> Option<Vec<(String, u64)>> {
    let text = |s: &str| (s.to_owned(), answer::pieces(s).len() as u64);
    let ids = |a: &[Value]| -> Option<(String, u64)> {
        a.iter()
            .all(Value::is_u64)
            .then(|| (Value::from(a.to_vec()).to_string(), a.len() as u64))
    };
    match input {
        Value::String(s) => Some(vec![text(s)]),
        Value::Array(a) if a.is_empty() => None,
        Value::Array(a) if a.iter().all(Value::is_string) => {
            Some(a.iter().filter_map(Value::as_str).map(text).collect())
        }
        Value::Array(a) if a.iter().all(Value::is_u64) => Some(vec![ids(a)?]),
        Value::Array(a) => a.iter().map(|v| ids(v.as_array()?)).collect(),
        _ => None,
    }
}

fn embeddings(ctx: &Ctx, body: &[u8]) -> Reply {
    let compat = ctx.dialect == Dialect::DashScopeCompat;
    let Some(req) = parse_object(body) else {
        return parse_error(ctx);
    };
    let model = match req.get("model").and_then(Value::as_str) {
        Some(m) if !m.is_empty() => m.to_owned(),
        _ => {
            return invalid(
                ctx,
                "you must provide a model parameter",
                Some("model"),
                None,
            )
        }
    };
    let Some(inputs) = req.get("input").and_then(embedding_inputs) else {
        return invalid(
            ctx,
            "'input' must be a non-empty string, array of strings, array of token ids or array of token-id arrays.",
            Some("input"),
            None,
        );
    };
    let format = req.get("encoding_format").and_then(Value::as_str);
    let base64 = match (format, compat) {
        (None | Some("float"), _) => false,
        (Some("base64"), false) => true,
        (Some(other), true) => {
            return invalid(
                ctx,
                &format!(
                    "The encoding_format '{other}' is not supported; only 'float' is supported."
                ),
                Some("encoding_format"),
                None,
            )
        }
        (Some(other), false) => {
            return invalid(
                ctx,
                &format!("'{other}' is not one of ['float', 'base64'] - 'encoding_format'"),
                Some("encoding_format"),
                None,
            )
        }
    };
    if compat && inputs.len() > 10 {
        return invalid(
            ctx,
            "Value error, batch size is invalid, it should not be larger than 10.: input.contents",
            Some("input"),
            None,
        );
    }
    let requested = req.get("dimensions").and_then(Value::as_u64);
    if requested == Some(0) || (!compat && requested.is_some() && model == "text-embedding-ada-002")
    {
        return invalid(
            ctx,
            "This model does not support specifying dimensions.",
            Some("dimensions"),
            None,
        );
    }
    let dim = requested.unwrap_or(if compat {
        1024
    } else if model == "text-embedding-3-large" {
        3072
    } else {
        1536
    });
    let dim = usize::try_from(dim).unwrap_or(1536).min(16_384);
    let tokens: u64 = inputs.iter().map(|(_, t)| t).sum();
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, (text, _))| {
            let v = answer::embedding(text, dim);
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                answer::floats_json(&v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    let mut body = json!({"object": "list", "data": data, "model": model,
                          "usage": {"prompt_tokens": tokens, "total_tokens": tokens}});
    if compat {
        body["id"] = Value::String(ctx.request_id());
    }
    Reply::json(ctx, 200, &body)
}

fn models(ctx: &Ctx, id: Option<&str>) -> Reply {
    let list = if ctx.dialect == Dialect::DashScopeCompat {
        COMPAT_MODELS
    } else {
        OPENAI_MODELS
    };
    let entry = |m: &str| json!({"id": m, "object": "model", "created": 1_700_000_000, "owned_by": "system"});
    match id {
        None => Reply::json(
            ctx,
            200,
            &json!({"object": "list", "data": list.iter().map(|m| entry(m)).collect::<Vec<_>>()}),
        ),
        Some(id) if list.contains(&id) => Reply::json(ctx, 200, &entry(id)),
        Some(id) => error(
            ctx,
            404,
            &format!("The model '{id}' does not exist"),
            "invalid_request_error",
            Some("model"),
            Some("model_not_found"),
        ),
    }
}
