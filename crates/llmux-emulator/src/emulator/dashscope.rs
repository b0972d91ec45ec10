//! Alibaba DashScope: the native protocol (`/api/v1/services/...`: text and multimodal generation, text
//! embedding) and the OpenAI-compatible mode (`/compatible-mode/v1`, an OpenAI-style [`openai::Spec`]).

use std::net::SocketAddr;

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::openai::{self, EmbeddingRules, ErrorSpec};
use super::anthropic;
use super::{Base, Dialect, EnvValue, ProviderEnv, VendorEmulator};
use crate::answer::{self, Answer, ChatInput, Msg, Usage};
use crate::reply::{Ctx, Incoming, Reply};
use crate::{Shared, Vendor};

/// The DashScope emulator.
#[derive(Debug)]
struct DashScope;

impl Vendor {
    /// Alibaba DashScope: native base `/api/v1` ([`crate::Emulator::base_url`]), OpenAI-compatible mode
    /// `/compatible-mode/v1` ([`crate::Emulator::compat_base_url`]) and the Anthropic-compatible endpoint
    /// `/apps/anthropic`; provider ids `dashscope`, `dashscope-compat` and `dashscope-anthropic`
    /// (`DASHSCOPE_ANTHROPIC_BASE_URL` = `http://127.0.0.1:P/apps/anthropic`). Default key
    /// `sk-emulator-dashscope`.
    ///
    /// * **Endpoints:** native `POST /api/v1/services/aigc/text-generation/generation`,
    ///   `POST /api/v1/services/aigc/multimodal-generation/generation`,
    ///   `POST /api/v1/services/embeddings/text-embedding/text-embedding` (any other path: 400 `InvalidURL`);
    ///   compatible mode `chat/completions`, `embeddings`, `models`, `models/{id}` as [`Vendor::OpenAi`] with the
    ///   differences of PROTOCOLS.md 1.7 listed below.
    /// * **Auth:** `Authorization: Bearer <key>`; native 401 `{"code":"InvalidApiKey","message":"Invalid API-key
    ///   provided.","request_id":"<id>"}`; compatible mode: OpenAI envelope, `code` `invalid_api_key`, plus
    ///   top-level `request_id`.
    /// * **Ids:** `00000000-0000-4000-8000-<seq as 12 hex digits>` (body `request_id` and header
    ///   `x-request-id`; compatible mode also returns it as `request_id` in errors and `id` in embeddings).
    /// * **Native answers:** PROTOCOLS 1.3; `result_format` defaults to `text`; multimodal is always the message
    ///   format with `content: [{"text": ...}]` (`[]` for tool calls). `input.prompt` is one user message;
    ///   `parameters.max_tokens` cuts the reply; `parallel_tool_calls` defaults to false; tools are answered only
    ///   for `result_format: "message"` (and multimodal), the text format ignores them. Streaming only with
    ///   header `X-DashScope-SSE: enable` (a body `stream` field is ignored): `id:N\nevent:result\n
    ///   :HTTP_STATUS/200\ndata:..` frames, one per piece (one empty frame for an empty reply) or, for tools,
    ///   per call one frame with id and name then one per fragment (continuations have `"id":""` and no name);
    ///   `finish_reason` `"null"` until the last frame, which carries the finish reason itself; running usage on
    ///   every frame; no `[DONE]`. `parameters.incremental_output: true` sends only the new piece, otherwise
    ///   everything so far.
    /// * **Validation:** malformed JSON → 400; missing `model` → 400 `BadRequest.EmptyModel`; `input` with
    ///   neither `prompt` nor non-empty `messages` → 400 `InvalidParameter` "Either \"prompt\" or
    ///   \"messages\" must exist and cannot both be none"; embeddings: v3/v4 more than 10 texts, v1/v2 more than
    ///   25 → 400 `InvalidParameter`.
    /// * **Embeddings:** native `parameters.dimension`, default 1024 for models containing `v3`/`v4`, else 1536
    ///   (v1/v2 allow only 1536; v3 1024/768/512/256/128/64; v4 also 2048/1536). Compatible mode: `dimensions`
    ///   else 1024; `encoding_format` other than `float` → 400, more than 10 inputs → 400.
    /// * **Anthropic-compatible endpoint:** `/apps/anthropic/v1/messages` (and `count_tokens`, `models`) speak
    ///   [`Vendor::Anthropic`]'s Messages API, with this emulator's keys (`x-api-key` or `Authorization:
    ///   Bearer`).
    /// * **Compatible mode** differs from OpenAI in: error bodies carry `request_id`, every validation error has
    ///   code `invalid_parameter_error`, `parallel_tool_calls` defaults to false, `models` lists the configured
    ///   models ([`crate::EmulatorConfig::with_models`]), or some Qwen models when none are configured.
    /// * **Faults:** `QuotaExhausted` → 400 `Arrearage` (both modes); `ErrorEvent` → 400 `DataInspectionFailed`
    ///   (compatible mode `data_inspection_failed`), mid-stream an `event:error` frame with `:HTTP_STATUS/400`
    ///   (compatible mode a `data: {"error":{…"data_inspection_failed"…},"request_id"}` frame); `ErrorBody200` →
    ///   200 `InternalError`.
    #[expect(
        non_upper_case_globals,
        reason = "vendor constants keep the names of the enum variants they replaced, so callers did not change"
    )]
    pub const DashScope: Vendor = Vendor(&DashScope);
}

impl VendorEmulator for DashScope {
    fn id(&self) -> &'static str {
        "dashscope"
    }

    fn default_key(&self) -> &'static str {
        "sk-emulator-dashscope"
    }

    fn base_url(&self, addr: SocketAddr) -> String {
        format!("http://{addr}/api/v1")
    }

    fn compat_base_url(&self, addr: SocketAddr) -> Option<String> {
        Some(format!("http://{addr}/compatible-mode/v1"))
    }

    fn providers(&self) -> &'static [ProviderEnv] {
        &[
            ProviderEnv {
                id: "dashscope",
                base: Base::Vendor,
                vars: &[
                    ("DASHSCOPE_BASE_URL", EnvValue::BaseUrl),
                    ("DASHSCOPE_API_KEY", EnvValue::Key),
                ],
            },
            ProviderEnv {
                id: "dashscope-compat",
                base: Base::Compat,
                vars: &[
                    ("DASHSCOPE_COMPAT_BASE_URL", EnvValue::BaseUrl),
                    ("DASHSCOPE_API_KEY", EnvValue::Key),
                ],
            },
            ProviderEnv {
                id: "dashscope-anthropic",
                base: Base::Path(ANTHROPIC_PREFIX),
                vars: &[
                    ("DASHSCOPE_ANTHROPIC_BASE_URL", EnvValue::BaseUrl),
                    ("DASHSCOPE_API_KEY", EnvValue::Key),
                ],
            },
        ]
    }

    fn dialect(&self, path: &str) -> &'static dyn Dialect {
        if path.starts_with("/compatible-mode/") {
            &COMPAT
        } else if path
            .strip_prefix(ANTHROPIC_PREFIX)
            .is_some_and(|rest| rest.starts_with('/'))
        {
            &ANTHROPIC
        } else {
            &Native
        }
    }
}

/// Where DashScope serves the Anthropic Messages API.
const ANTHROPIC_PREFIX: &str = "/apps/anthropic";

/// The Anthropic-compatible endpoint: the Anthropic emulator's Messages API under [`ANTHROPIC_PREFIX`].
const ANTHROPIC: anthropic::Messages = anthropic::Messages {
    prefix: ANTHROPIC_PREFIX,
};

const TEXT_GENERATION: &str = "/api/v1/services/aigc/text-generation/generation";
const MULTIMODAL_GENERATION: &str = "/api/v1/services/aigc/multimodal-generation/generation";
const TEXT_EMBEDDING: &str = "/api/v1/services/embeddings/text-embedding/text-embedding";

/// The message of the 400 sent when `input` holds neither `prompt` nor `messages`.
pub(crate) const EITHER_PROMPT_OR_MESSAGES: &str =
    "Either \"prompt\" or \"messages\" must exist and cannot both be none";

/// The message DashScope sends when moderation blocks output.
const DATA_INSPECTION_MESSAGE: &str = "Output data may contain inappropriate content.";

/// Models listed by `GET /compatible-mode/v1/models` when none are configured.
const COMPAT_MODELS: &[&str] = &[
    "qwen-plus",
    "qwen-turbo",
    "qwen-max",
    "qwen-vl-plus",
    "text-embedding-v3",
    "text-embedding-v4",
];

/// Compatible mode's `GET /models` and `GET /models/{id}`: the configured models
/// ([`crate::EmulatorConfig::with_models`]), or [`COMPAT_MODELS`] when none are.
fn compat_models(ctx: &Ctx, shared: &Shared, id: Option<&str>) -> Reply {
    let listed: Vec<&str> = if shared.models.is_empty() {
        COMPAT_MODELS.to_vec()
    } else {
        shared.models.iter().map(String::as_str).collect()
    };
    let entry = |m: &str| json!({"id": m, "object": "model", "created": 1_700_000_000, "owned_by": "system"});
    match id {
        None => Reply::json(
            ctx,
            200,
            &json!({"object": "list", "data": listed.iter().map(|m| entry(m)).collect::<Vec<_>>()}),
        ),
        Some(id) if listed.contains(&id) => Reply::json(ctx, 200, &entry(id)),
        Some(id) => Reply::json(
            ctx,
            404,
            &json!({"error": {"message": format!("The model `{id}` does not exist or you do not have access to it."),
                              "type": "invalid_request_error", "param": null, "code": "model_not_found"},
                    "request_id": ctx.request_id()}),
        ),
    }
}

/// DashScope native framing: `id:N\nevent:<event>\n:HTTP_STATUS/<status>\ndata:<json>\n\n` (no spaces).
fn frame(id: usize, event: &str, status: u16, data: &Value) -> Bytes {
    Bytes::from(format!(
        "id:{id}\nevent:{event}\n:HTTP_STATUS/{status}\ndata:{data}\n\n"
    ))
}

/// The native protocol.
#[derive(Debug)]
struct Native;

impl Dialect for Native {
    fn request_id(&self, seq: u64) -> String {
        super::uuid_request_id(seq)
    }

    fn sse_content_type(&self) -> &'static str {
        "text/event-stream;charset=UTF-8"
    }

    fn check_auth(&self, ctx: &Ctx, req: &Incoming<'_>, shared: &Shared) -> Option<Reply> {
        super::check_bearer(req, shared, |_| {
            error(ctx, 401, "InvalidApiKey", "Invalid API-key provided.")
        })
    }

    fn handle(&self, ctx: &Ctx, req: &Incoming<'_>, _shared: &Shared) -> Reply {
        match (req.method, req.path) {
            ("POST", TEXT_GENERATION) => generation(ctx, req, false),
            ("POST", MULTIMODAL_GENERATION) => generation(ctx, req, true),
            ("POST", TEXT_EMBEDDING) => embedding(ctx, req.body),
            _ => error(
                ctx,
                400,
                "InvalidURL",
                "Invalid URL provided in your request.",
            ),
        }
    }

    fn status_error(&self, ctx: &Ctx, status: u16) -> Reply {
        let (code, message) = match status {
            400 => ("InvalidParameter", "Invalid parameter."),
            401 => ("InvalidApiKey", "Invalid API-key provided."),
            403 => ("AccessDenied", "Access denied."),
            404 => ("ModelNotFound", "Model not found."),
            408 => (
                "RequestTimeOut",
                "Request timed out, please try again later.",
            ),
            413 => ("BadRequest.TooLarge", "Payload Too Large"),
            429 => (
                "Throttling.RateQuota",
                "Requests rate limit exceeded, please try again later.",
            ),
            503 => (
                "ServiceUnavailable",
                "Service temporarily unavailable, possibly overloaded or not ready.",
            ),
            s if s >= 500 => (
                "InternalError",
                "An internal error has occured, please try again later or contact service support.",
            ),
            _ => ("BadRequest", "Bad request."),
        };
        error(ctx, status, code, message)
    }

    fn quota_error(&self, ctx: &Ctx) -> Reply {
        error(
            ctx,
            400,
            "Arrearage",
            "Access denied, please make sure your account is in good standing.",
        )
    }

    fn error_body_200(&self, ctx: &Ctx) -> Reply {
        let mut r = self.status_error(ctx, 500);
        r.status = 200;
        r
    }

    fn content_filter_error(&self, ctx: &Ctx) -> Reply {
        error(ctx, 400, "DataInspectionFailed", DATA_INSPECTION_MESSAGE)
    }

    fn stream_error_frame(&self, ctx: &Ctx, sent: usize) -> Bytes {
        frame(
            sent + 1,
            "error",
            400,
            &json!({"code": "DataInspectionFailed", "message": DATA_INSPECTION_MESSAGE,
                    "request_id": ctx.request_id()}),
        )
    }

    fn malformed_frame(&self, _ctx: &Ctx, sent: usize) -> Bytes {
        Bytes::from(format!(
            "id:{}\nevent:result\n:HTTP_STATUS/200\ndata:{{\"output\":{{\"choices\":[{{\"message\":\n\n",
            sent + 1
        ))
    }
}

/// The compatible mode: OpenAI's wire with DashScope's error codes, request ids and limits.
const COMPAT: openai::Spec = openai::Spec {
    prefix: "/compatible-mode/v1",
    request_id: super::uuid_request_id,
    auth_error: |_| {
        (
            "Incorrect API key provided. For details, see: https://help.aliyun.com/zh/model-studio/error-code#apikey-error".to_owned(),
            Some("invalid_api_key"),
        )
    },
    error_request_id: true,
    invalid_code: Some("invalid_parameter_error"),
    parallel_tool_calls: false,
    models: COMPAT_MODELS,
    models_route: Some(compat_models),
    status_error: compat_status_error,
    quota: ErrorSpec {
        status: 400,
        message: "Access denied, please make sure your account is in good standing. For details, see: https://help.aliyun.com/zh/model-studio/error-code#overdue-payment",
        kind: "Arrearage",
        param: None,
        code: Some("Arrearage"),
    },
    content_filter: ErrorSpec {
        status: 400,
        message: DATA_INSPECTION_MESSAGE,
        kind: "data_inspection_failed",
        param: None,
        code: Some("data_inspection_failed"),
    },
    stream_error: ErrorSpec {
        status: 400,
        message: DATA_INSPECTION_MESSAGE,
        kind: "data_inspection_failed",
        param: None,
        code: Some("data_inspection_failed"),
    },
    embeddings: EmbeddingRules {
        base64: false,
        max_inputs: Some(10),
        model_dims: &[],
        default_dim: 1024,
        fixed_dim_models: &[],
        with_id: true,
    },
    ..openai::OPENAI
};

/// Compatible mode's error message, type and code for an HTTP status (the type is the code).
fn compat_status_error(status: u16) -> (&'static str, &'static str, Option<&'static str>) {
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
    (message, code, Some(code))
}

/// DashScope's error body `{"code","message","request_id"}`.
fn error(ctx: &Ctx, status: u16, code: &str, message: &str) -> Reply {
    Reply::json(
        ctx,
        status,
        &json!({"code": code, "message": message, "request_id": ctx.request_id()}),
    )
}

fn parse_object(ctx: &Ctx, body: &[u8]) -> Result<Map<String, Value>, Reply> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => Ok(o),
        _ => Err(error(
            ctx,
            400,
            "InvalidParameter",
            "The request body is not valid JSON.",
        )),
    }
}

fn model_of(ctx: &Ctx, req: &Map<String, Value>) -> Result<String, Reply> {
    match req.get("model").and_then(Value::as_str) {
        Some(m) if !m.is_empty() => Ok(m.to_owned()),
        _ => Err(error(
            ctx,
            400,
            "BadRequest.EmptyModel",
            "Required parameter \"model\" missing from request.",
        )),
    }
}

/// Output shape chosen by `result_format` (multimodal is always `message`, with content as `[{"text":..}]`).
#[derive(Clone, Copy, PartialEq)]
enum Format {
    Text,
    Message,
    Multimodal,
}

fn generation(ctx: &Ctx, req: &Incoming<'_>, multimodal: bool) -> Reply {
    let body = match parse_object(ctx, req.body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    if let Err(r) = model_of(ctx, &body) {
        return r;
    }
    let input = body.get("input");
    let messages: Vec<Msg> = match (
        input
            .and_then(|i| i.get("messages"))
            .and_then(Value::as_array),
        input.and_then(|i| i.get("prompt")).and_then(Value::as_str),
    ) {
        (Some(m), _) if !m.is_empty() => answer::read_messages(m),
        (_, Some(p)) => vec![Msg {
            role: "user".to_owned(),
            text: p.to_owned(),
        }],
        _ => return error(ctx, 400, "InvalidParameter", EITHER_PROMPT_OR_MESSAGES),
    };
    let empty = Value::Object(Map::new());
    let params = body.get("parameters").unwrap_or(&empty);
    let format = if multimodal {
        Format::Multimodal
    } else if params.get("result_format").and_then(Value::as_str) == Some("message") {
        Format::Message
    } else {
        Format::Text
    };
    let chat = ChatInput {
        // Tool calls need the message format; the text format always answers with text.
        tools: if format == Format::Text {
            Vec::new()
        } else {
            answer::read_tools(params.get("tools"))
        },
        tool_choice: answer::read_tool_choice(params.get("tool_choice")),
        parallel_tool_calls: params
            .get("parallel_tool_calls")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        max_tokens: params.get("max_tokens").and_then(Value::as_u64),
        stop: answer::read_stop(params.get("stop")),
        messages,
    };
    let ans = match answer::answer(&chat) {
        Ok(a) => a,
        Err(name) => {
            return error(
                ctx,
                400,
                "InvalidParameter",
                &format!("tool_choice names a function that is not in tools: {name}"),
            )
        }
    };
    let prompt = answer::prompt_tokens(&chat.messages);
    let usage = Usage {
        prompt,
        completion: ans.completion_tokens(),
    };
    let stream = req
        .header("x-dashscope-sse")
        .is_some_and(|v| v.eq_ignore_ascii_case("enable"));
    if !stream {
        let out = output(format, &Step::whole(&ans), ans.finish().as_str());
        return Reply::json(ctx, 200, &envelope(ctx, out, usage));
    }
    let incremental = params.get("incremental_output").and_then(Value::as_bool) == Some(true);
    let steps = steps(&ans);
    let last = steps.len() - 1;
    let mut frames: Vec<Bytes> = Vec::with_capacity(steps.len());
    let mut done = Step::default();
    for (i, step) in steps.iter().enumerate() {
        done.absorb(step);
        let shown = if incremental { step } else { &done };
        let finish = if i == last {
            ans.finish().as_str()
        } else {
            "null"
        };
        let running = Usage {
            prompt,
            completion: step.tokens_so_far,
        };
        let data = envelope(ctx, output(format, shown, finish), running);
        frames.push(frame(i + 1, "result", 200, &data));
    }
    Reply::sse(ctx, frames)
}

/// What one stream event carries (incremental), or everything so far (cumulative), or the whole answer.
#[derive(Debug, Clone, Default)]
struct Step {
    text: String,
    /// (index, id, name, arguments); `id`/`name` empty on continuation fragments.
    calls: Vec<(usize, String, String, String)>,
    is_tools: bool,
    tokens_so_far: u64,
}

impl Step {
    fn whole(ans: &Answer) -> Step {
        match ans {
            Answer::Text { .. } => Step {
                text: ans.text(),
                ..Step::default()
            },
            Answer::Tools { calls } => Step {
                calls: calls
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (i, c.id.clone(), c.name.clone(), c.arguments.clone()))
                    .collect(),
                is_tools: true,
                ..Step::default()
            },
        }
    }

    /// Accumulates an incremental step into a cumulative one.
    fn absorb(&mut self, step: &Step) {
        self.text.push_str(&step.text);
        self.is_tools |= step.is_tools;
        self.tokens_so_far = step.tokens_so_far;
        for (index, id, name, args) in &step.calls {
            match self.calls.iter_mut().find(|c| c.0 == *index) {
                Some(c) => c.3.push_str(args),
                None => self
                    .calls
                    .push((*index, id.clone(), name.clone(), args.clone())),
            }
        }
    }
}

/// Incremental stream steps: one per text piece (one empty step when there are none); for tool calls, per call
/// one step with id and name, then one per argument fragment.
fn steps(ans: &Answer) -> Vec<Step> {
    let mut out = Vec::new();
    match ans {
        Answer::Text { pieces, .. } => {
            for (i, p) in pieces.iter().enumerate() {
                out.push(Step {
                    text: p.clone(),
                    tokens_so_far: i as u64 + 1,
                    ..Step::default()
                });
            }
            if out.is_empty() {
                out.push(Step::default());
            }
        }
        Answer::Tools { calls } => {
            for (i, c) in calls.iter().enumerate() {
                out.push(Step {
                    calls: vec![(i, c.id.clone(), c.name.clone(), String::new())],
                    is_tools: true,
                    tokens_so_far: out.len() as u64 + 1,
                    ..Step::default()
                });
                for frag in c.fragments() {
                    out.push(Step {
                        calls: vec![(i, String::new(), String::new(), frag)],
                        is_tools: true,
                        tokens_so_far: out.len() as u64 + 1,
                        ..Step::default()
                    });
                }
            }
        }
    }
    out
}

fn output(format: Format, step: &Step, finish: &str) -> Value {
    if format == Format::Text {
        return json!({"finish_reason": finish, "text": step.text});
    }
    let content = if format == Format::Multimodal {
        if step.is_tools {
            json!([])
        } else {
            json!([{"text": step.text}])
        }
    } else {
        Value::String(step.text.clone())
    };
    let mut message = json!({"role": "assistant", "content": content});
    if step.is_tools {
        message["tool_calls"] = step
            .calls
            .iter()
            .map(|(index, id, name, args)| {
                let mut function = json!({"arguments": args});
                if !name.is_empty() {
                    function["name"] = Value::String(name.clone());
                }
                json!({"index": index, "id": id, "type": "function", "function": function})
            })
            .collect();
    }
    json!({"choices": [{"finish_reason": finish, "message": message}]})
}

fn envelope(ctx: &Ctx, output: Value, usage: Usage) -> Value {
    json!({"output": output,
           "usage": {"input_tokens": usage.prompt, "output_tokens": usage.completion,
                     "total_tokens": usage.total()},
           "request_id": ctx.request_id()})
}

/// Row limit and allowed dimensions (`None` = any) for an embedding model, and its default dimension.
fn embedding_limits(model: &str) -> (usize, Option<&'static [u64]>, u64) {
    if model.contains("v4") {
        (10, Some(&[2048, 1536, 1024, 768, 512, 256, 128, 64]), 1024)
    } else if model.contains("v3") {
        (10, Some(&[1024, 768, 512, 256, 128, 64]), 1024)
    } else if model.contains("v1") || model.contains("v2") {
        (25, Some(&[1536]), 1536)
    } else {
        (25, None, 1536)
    }
}

fn embedding(ctx: &Ctx, body: &[u8]) -> Reply {
    let body = match parse_object(ctx, body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let model = match model_of(ctx, &body) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let texts: Vec<String> = match body.get("input").and_then(|i| i.get("texts")) {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) if !a.is_empty() && a.iter().all(Value::is_string) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => {
            return error(
                ctx,
                400,
                "InvalidParameter",
                "Required input \"texts\" missing or not a non-empty list of strings.",
            )
        }
    };
    let (max_rows, dims, default_dim) = embedding_limits(&model);
    if texts.len() > max_rows {
        return error(
            ctx,
            400,
            "InvalidParameter",
            &format!("Value error, batch size is invalid, it should not be larger than {max_rows}.: input.contents"),
        );
    }
    let dim = body
        .get("parameters")
        .and_then(|p| p.get("dimension"))
        .and_then(Value::as_u64)
        .unwrap_or(default_dim);
    if dim == 0 || dims.is_some_and(|d| !d.contains(&dim)) {
        return error(
            ctx,
            400,
            "InvalidParameter",
            &format!(
                "Value error, dimension {dim} is not supported by {model}.: parameters.dimension"
            ),
        );
    }
    let dim = usize::try_from(dim).unwrap_or(1024).min(16_384);
    let tokens: u64 = texts.iter().map(|t| answer::pieces(t).len() as u64).sum();
    let embeddings: Vec<Value> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"text_index": i, "embedding": answer::floats_json(&answer::embedding(t, dim))}))
        .collect();
    Reply::json(
        ctx,
        200,
        &json!({"output": {"embeddings": embeddings}, "usage": {"total_tokens": tokens},
                "request_id": ctx.request_id()}),
    )
}
