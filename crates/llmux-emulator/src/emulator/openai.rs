//! OpenAI (`/v1`): chat completions, embeddings and models; and [`Spec`], the OpenAI-style dialect that the
//! OpenAI-compatible endpoints of other vendors reuse with their own quirks as data.

use base64::Engine as _;
use bytes::Bytes;
use serde_json::{json, Map, Value};

use std::net::SocketAddr;

use super::{Base, Dialect, EnvValue, ProviderEnv, VendorEmulator};
use crate::answer::{self, Answer, ChatInput, Usage};
use crate::reply::{Ctx, Incoming, Reply};
use crate::{sse, Shared, Vendor};

/// The OpenAI emulator.
#[derive(Debug)]
struct OpenAi;

impl Vendor {
    /// OpenAI, base `/v1` ([`crate::Emulator::base_url`] `http://127.0.0.1:P/v1`, no compatible base URL); it
    /// also serves the other OpenAI-style presets (`deepseek`, `moonshot`, `vllm`). Default key
    /// `sk-emulator-openai`.
    ///
    /// * **Endpoints:** `POST /v1/chat/completions`, `POST /v1/embeddings`, `GET /v1/models`,
    ///   `GET /v1/models/{id}`; any other path is a 404 OpenAI error.
    /// * **Auth:** `Authorization: Bearer <key>` with a key from [`crate::EmulatorConfig::api_keys`], else 401
    ///   `{"error":{"message":"Incorrect API key provided: <masked>.","type":"invalid_request_error",
    ///   "param":null,"code":"invalid_api_key"}}`; keys longer than 8 characters are masked as first 3
    ///   characters, `*` for each hidden character, last 4 (`sk-bad` stays as is). Missing header: message
    ///   "You didn't provide an API key. ...", `code` null.
    /// * **Ids:** header `x-request-id: req_emu<seq as 12 hex>`, chat id `chatcmpl-emu<seq as 6 digits>`,
    ///   `created` = Unix seconds at arrival.
    /// * **Chat:** PROTOCOLS 2.3 (`message.refusal` null, usage details zero, `system_fingerprint` null; tool
    ///   answers have `content` null). `max_completion_tokens`, else `max_tokens`, cuts the reply;
    ///   `parallel_tool_calls` defaults to true. Stream: `data: <chunk>\n\n` frames:
    ///   `{"role":"assistant","content":""}`, one `{"content":piece}` per piece, `{}` with the finish reason,
    ///   then with `stream_options.include_usage` a `choices:[]` usage chunk (and `"usage":null` on every other
    ///   chunk), then `data: [DONE]`. Tool streams: per call a fragment with `index`, `id`, `type`,
    ///   `function.name`, `arguments:""` (the first also carries `role:"assistant","content":null`), then one
    ///   `{"index":i,"function":{"arguments":fragment}}` per fragment. Only one choice whatever `n` says.
    /// * **Thinking (DeepSeek):** a model whose name contains `reasoner` (`deepseek-reasoner`) thinks: the
    ///   message carries `reasoning_content` `"Considering: " + the last user message's text` (streamed as
    ///   `{"reasoning_content":piece}` deltas before the answer; not counted in usage), and, as DeepSeek's
    ///   thinking mode with tools requires, every request assistant message with `tool_calls` must carry its
    ///   `reasoning_content` (400 "Missing `reasoning_content` field in the assistant message at message
    ///   index N").
    /// * **Validation:** malformed JSON → 400; missing/empty `model` or `messages` → 400
    ///   `invalid_request_error`.
    /// * **Embeddings:** `dimensions`, else 3072 for `text-embedding-3-large`, else 1536 (`text-embedding-ada-002`
    ///   refuses `dimensions`); `encoding_format:"base64"` = base64 of little-endian f32.
    /// * **Faults:** `QuotaExhausted` → 429 `insufficient_quota`; `ErrorEvent` → 400 `content_filter` (param
    ///   `prompt`), mid-stream `data: {"error":{"message":"The server had an error…","type":"server_error",…}}`;
    ///   `ErrorBody200` → 200 with the 500 body.
    #[expect(
        non_upper_case_globals,
        reason = "vendor constants keep the names of the enum variants they replaced, so callers did not change"
    )]
    pub const OpenAi: Vendor = Vendor(&OpenAi);
}

impl VendorEmulator for OpenAi {
    fn id(&self) -> &'static str {
        "openai"
    }

    fn default_key(&self) -> &'static str {
        "sk-emulator-openai"
    }

    fn base_url(&self, addr: SocketAddr) -> String {
        format!("http://{addr}/v1")
    }

    fn providers(&self) -> &'static [ProviderEnv] {
        const fn preset(
            id: &'static str,
            vars: &'static [(&'static str, EnvValue)],
        ) -> ProviderEnv {
            ProviderEnv {
                id,
                base: Base::Vendor,
                vars,
            }
        }
        const PRESETS: &[ProviderEnv] = &[
            preset(
                "openai",
                &[
                    ("OPENAI_BASE_URL", EnvValue::BaseUrl),
                    ("OPENAI_API_KEY", EnvValue::Key),
                ],
            ),
            preset(
                "deepseek",
                &[
                    ("DEEPSEEK_BASE_URL", EnvValue::BaseUrl),
                    ("DEEPSEEK_API_KEY", EnvValue::Key),
                ],
            ),
            preset(
                "moonshot",
                &[
                    ("MOONSHOT_BASE_URL", EnvValue::BaseUrl),
                    ("MOONSHOT_API_KEY", EnvValue::Key),
                ],
            ),
            preset(
                "vllm",
                &[
                    ("VLLM_BASE_URL", EnvValue::BaseUrl),
                    ("VLLM_API_KEY", EnvValue::Key),
                ],
            ),
        ];
        PRESETS
    }

    fn dialect(&self, _path: &str) -> &'static dyn Dialect {
        &OPENAI
    }
}

/// Models listed by OpenAI's `GET /v1/models` (all `created` 1700000000, `owned_by` "system").
pub(crate) const OPENAI_MODELS: &[&str] = &[
    "gpt-4o-mini",
    "gpt-4o",
    "gpt-4.1-mini",
    "text-embedding-3-small",
    "text-embedding-3-large",
    "text-embedding-ada-002",
];

/// An error body's `message`, `type`, `param` and `code`, and the HTTP status it is sent with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ErrorSpec {
    pub status: u16,
    pub message: &'static str,
    pub kind: &'static str,
    pub param: Option<&'static str>,
    pub code: Option<&'static str>,
}

/// The embedding rules of an OpenAI-style endpoint.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EmbeddingRules {
    /// Whether `encoding_format: "base64"` is accepted (else only `float`).
    pub base64: bool,
    /// Largest number of inputs, if limited.
    pub max_inputs: Option<usize>,
    /// Dimension when the request names none, by model (first match), else `default_dim`.
    pub model_dims: &'static [(&'static str, u64)],
    /// Dimension when the request names none and no `model_dims` entry matches.
    pub default_dim: u64,
    /// Models that refuse `dimensions`.
    pub fixed_dim_models: &'static [&'static str],
    /// Whether the answer carries the request id as `id`.
    pub with_id: bool,
}

/// A vendor's own `GET <prefix>/models` (`None`) and `GET <prefix>/models/{id}` (`Some(id)`).
pub(crate) type ModelsRoute = fn(&Ctx, &Shared, Option<&str>) -> Reply;

/// An OpenAI-style dialect: OpenAI's own behaviour, or an OpenAI-compatible endpoint of another vendor that
/// differs from it in data (PROTOCOLS.md 1.7 for DashScope's compatible mode). Implements [`Dialect`].
#[derive(Debug)]
pub(crate) struct Spec {
    /// The base path every route is under (`/v1`, `/compatible-mode/v1`).
    pub prefix: &'static str,
    /// Request ids (the `x-request-id` header, compatible-mode error bodies, embeddings' `id`).
    pub request_id: fn(u64) -> String,
    /// Whether requests need a configured bearer key.
    pub bearer_auth: bool,
    /// The 401 body's message and code for a missing (`None`) or wrong key.
    pub auth_error: fn(Option<&str>) -> (String, Option<&'static str>),
    /// Whether error bodies carry a top-level `request_id`.
    pub error_request_id: bool,
    /// The `code` of every validation error, if the vendor uses one code for all.
    pub invalid_code: Option<&'static str>,
    /// `parallel_tool_calls` when the request does not say.
    pub parallel_tool_calls: bool,
    /// Models listed by `GET <prefix>/models` and found by `GET <prefix>/models/{id}`.
    pub models: &'static [&'static str],
    /// Replaces the models routes with the vendor's own (`id` is the path's model, if any).
    pub models_route: Option<ModelsRoute>,
    /// Message, type and code of the error body for an HTTP status (`FaultKind::Status` without a body).
    pub status_error: fn(u16) -> (&'static str, &'static str, Option<&'static str>),
    /// `FaultKind::QuotaExhausted`.
    pub quota: ErrorSpec,
    /// `FaultKind::ErrorEvent` on a whole answer.
    pub content_filter: ErrorSpec,
    /// `FaultKind::ErrorEvent` mid-stream (`status` unused).
    pub stream_error: ErrorSpec,
    /// Embedding rules.
    pub embeddings: EmbeddingRules,
}

/// OpenAI itself.
pub(crate) const OPENAI: Spec = Spec {
    prefix: "/v1",
    request_id: super::emu_request_id,
    bearer_auth: true,
    auth_error: openai_auth_error,
    error_request_id: false,
    invalid_code: None,
    parallel_tool_calls: true,
    models: OPENAI_MODELS,
    models_route: None,
    status_error: openai_status_error,
    quota: ErrorSpec {
        status: 429,
        message: "You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.",
        kind: "insufficient_quota",
        param: None,
        code: Some("insufficient_quota"),
    },
    content_filter: ErrorSpec {
        status: 400,
        message: "The response was filtered due to the prompt triggering the content management policy.",
        kind: "invalid_request_error",
        param: Some("prompt"),
        code: Some("content_filter"),
    },
    stream_error: ErrorSpec {
        status: 500,
        message: "The server had an error while processing your request. Sorry about that!",
        kind: "server_error",
        param: None,
        code: None,
    },
    embeddings: EmbeddingRules {
        base64: true,
        max_inputs: None,
        model_dims: &[("text-embedding-3-large", 3072)],
        default_dim: 1536,
        fixed_dim_models: &["text-embedding-ada-002"],
        with_id: false,
    },
};

impl Dialect for Spec {
    fn request_id(&self, seq: u64) -> String {
        (self.request_id)(seq)
    }

    fn check_auth(&self, ctx: &Ctx, req: &Incoming<'_>, shared: &Shared) -> Option<Reply> {
        if !self.bearer_auth {
            return None;
        }
        super::check_bearer(req, shared, |key| {
            let (message, code) = (self.auth_error)(key);
            self.error(ctx, 401, &message, "invalid_request_error", None, code)
        })
    }

    fn handle(&self, ctx: &Ctx, req: &Incoming<'_>, shared: &Shared) -> Reply {
        let rest = req.path.strip_prefix(self.prefix).unwrap_or("");
        match (req.method, rest) {
            ("POST", "/chat/completions") => self.chat(ctx, req.body),
            ("POST", "/embeddings") => self.embeddings(ctx, req.body),
            ("GET", "/models") => self.models(ctx, shared, None),
            ("GET", r) if r.starts_with("/models/") => {
                self.models(ctx, shared, r.strip_prefix("/models/"))
            }
            _ => self.error(
                ctx,
                404,
                &format!("Invalid URL ({} {})", req.method, req.path),
                "invalid_request_error",
                None,
                None,
            ),
        }
    }

    fn status_error(&self, ctx: &Ctx, status: u16) -> Reply {
        let (message, kind, code) = (self.status_error)(status);
        self.error(ctx, status, message, kind, None, code)
    }

    fn quota_error(&self, ctx: &Ctx) -> Reply {
        self.error_of(ctx, &self.quota)
    }

    fn error_body_200(&self, ctx: &Ctx) -> Reply {
        let mut r = self.status_error(ctx, 500);
        r.status = 200;
        r
    }

    fn content_filter_error(&self, ctx: &Ctx) -> Reply {
        self.error_of(ctx, &self.content_filter)
    }

    fn stream_error_frame(&self, ctx: &Ctx, _sent: usize) -> Bytes {
        sse::data(&self.error_body(ctx, &self.stream_error))
    }

    fn malformed_frame(&self, _ctx: &Ctx, _sent: usize) -> Bytes {
        malformed_chunk()
    }
}

/// A `chat.completion.chunk` frame whose JSON is cut short (OpenAI-style streams).
pub(crate) fn malformed_chunk() -> Bytes {
    Bytes::from_static(
        b"data: {\"id\":\"chatcmpl-malformed\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"delta\":\n\n",
    )
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

/// OpenAI's 401 message and code for a missing (`None`) or wrong key.
fn openai_auth_error(key: Option<&str>) -> (String, Option<&'static str>) {
    match key {
        None => (
            "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if you're accessing the API from your browser and are prompted for a username and password. You can obtain an API key from https://platform.openai.com/account/api-keys.".to_owned(),
            None,
        ),
        Some(key) => (
            format!("Incorrect API key provided: {}.", mask_key(key)),
            Some("invalid_api_key"),
        ),
    }
}

/// OpenAI's error message, type and code for an HTTP status.
fn openai_status_error(status: u16) -> (&'static str, &'static str, Option<&'static str>) {
    match status {
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
    }
}

impl Spec {
    /// The OpenAI error envelope, with a top-level `request_id` where the vendor adds one.
    fn envelope(
        &self,
        ctx: &Ctx,
        message: &str,
        kind: &str,
        param: Option<&str>,
        code: Option<&str>,
    ) -> Value {
        let mut body =
            json!({"error": {"message": message, "type": kind, "param": param, "code": code}});
        if self.error_request_id {
            body["request_id"] = Value::String(ctx.request_id());
        }
        body
    }

    fn error_body(&self, ctx: &Ctx, e: &ErrorSpec) -> Value {
        self.envelope(ctx, e.message, e.kind, e.param, e.code)
    }

    fn error_of(&self, ctx: &Ctx, e: &ErrorSpec) -> Reply {
        Reply::json(ctx, e.status, &self.error_body(ctx, e))
    }

    /// An error reply in the OpenAI envelope.
    fn error(
        &self,
        ctx: &Ctx,
        status: u16,
        message: &str,
        kind: &str,
        param: Option<&str>,
        code: Option<&str>,
    ) -> Reply {
        Reply::json(ctx, status, &self.envelope(ctx, message, kind, param, code))
    }

    fn parse_error(&self, ctx: &Ctx) -> Reply {
        self.error(
            ctx,
            400,
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)",
            "invalid_request_error",
            None,
            None,
        )
    }

    fn invalid(&self, ctx: &Ctx, message: &str, param: Option<&str>, code: Option<&str>) -> Reply {
        let code = self.invalid_code.or(code);
        self.error(ctx, 400, message, "invalid_request_error", param, code)
    }

    fn model_of(&self, ctx: &Ctx, req: &Map<String, Value>) -> Result<String, Reply> {
        match req.get("model").and_then(Value::as_str) {
            Some(m) if !m.is_empty() => Ok(m.to_owned()),
            _ => Err(self.invalid(
                ctx,
                "you must provide a model parameter",
                Some("model"),
                None,
            )),
        }
    }

    fn chat(&self, ctx: &Ctx, body: &[u8]) -> Reply {
        let Some(req) = parse_object(body) else {
            return self.parse_error(ctx);
        };
        let model = match self.model_of(ctx, &req) {
            Ok(m) => m,
            Err(r) => return r,
        };
        let messages = match req.get("messages") {
            None | Some(Value::Null) => {
                return self.invalid(
                    ctx,
                    "Missing required parameter: 'messages'.",
                    Some("messages"),
                    Some("missing_required_parameter"),
                )
            }
            Some(Value::Array(a)) if a.is_empty() => {
                return self.invalid(
                    ctx,
                    "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
                    Some("messages"),
                    Some("empty_array"),
                )
            }
            Some(Value::Array(a)) => {
                if let Some(i) = thinks(&model)
                    .then(|| a.iter().position(lacks_reasoning))
                    .flatten()
                {
                    return self.invalid(
                        ctx,
                        &format!("Missing `reasoning_content` field in the assistant message at message index {i}"),
                        None,
                        None,
                    );
                }
                answer::read_messages(a)
            }
            Some(_) => {
                return self.invalid(
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
                .unwrap_or(self.parallel_tool_calls),
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
                return self.invalid(
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
        let reasoning =
            thinks(&model).then(|| format!("Considering: {}", answer::last_user_text(&input.messages)));
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
            return Reply::sse(ctx, chunker.frames(reasoning.as_deref(), &ans, usage));
        }
        let mut message = json!({"role": "assistant", "content": null, "refusal": null});
        if let Some(r) = reasoning {
            message["reasoning_content"] = Value::String(r);
        }
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

    fn embeddings(&self, ctx: &Ctx, body: &[u8]) -> Reply {
        let rules = &self.embeddings;
        let Some(req) = parse_object(body) else {
            return self.parse_error(ctx);
        };
        let model = match self.model_of(ctx, &req) {
            Ok(m) => m,
            Err(r) => return r,
        };
        let Some(inputs) = req.get("input").and_then(embedding_inputs) else {
            return self.invalid(
                ctx,
                "'input' must be a non-empty string, array of strings, array of token ids or array of token-id arrays.",
                Some("input"),
                None,
            );
        };
        let format = req.get("encoding_format").and_then(Value::as_str);
        let base64 = match format {
            None | Some("float") => false,
            Some("base64") if rules.base64 => true,
            Some(other) if rules.base64 => {
                return self.invalid(
                    ctx,
                    &format!("'{other}' is not one of ['float', 'base64'] - 'encoding_format'"),
                    Some("encoding_format"),
                    None,
                )
            }
            Some(other) => {
                return self.invalid(
                    ctx,
                    &format!(
                        "The encoding_format '{other}' is not supported; only 'float' is supported."
                    ),
                    Some("encoding_format"),
                    None,
                )
            }
        };
        if let Some(max) = rules.max_inputs.filter(|max| inputs.len() > *max) {
            return self.invalid(
                ctx,
                &format!("Value error, batch size is invalid, it should not be larger than {max}.: input.contents"),
                Some("input"),
                None,
            );
        }
        let requested = req.get("dimensions").and_then(Value::as_u64);
        if requested == Some(0)
            || (requested.is_some() && rules.fixed_dim_models.contains(&model.as_str()))
        {
            return self.invalid(
                ctx,
                "This model does not support specifying dimensions.",
                Some("dimensions"),
                None,
            );
        }
        let dim = requested.unwrap_or_else(|| {
            rules
                .model_dims
                .iter()
                .find(|(m, _)| *m == model)
                .map_or(rules.default_dim, |(_, d)| *d)
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
        if rules.with_id {
            body["id"] = Value::String(ctx.request_id());
        }
        Reply::json(ctx, 200, &body)
    }

    fn models(&self, ctx: &Ctx, shared: &Shared, id: Option<&str>) -> Reply {
        if let Some(route) = self.models_route {
            return route(ctx, shared, id);
        }
        let entry = |m: &str| json!({"id": m, "object": "model", "created": 1_700_000_000, "owned_by": "system"});
        match id {
            None => Reply::json(
                ctx,
                200,
                &json!({"object": "list", "data": self.models.iter().map(|m| entry(m)).collect::<Vec<_>>()}),
            ),
            Some(id) if self.models.contains(&id) => Reply::json(ctx, 200, &entry(id)),
            Some(id) => self.error(
                ctx,
                404,
                &format!("The model '{id}' does not exist"),
                "invalid_request_error",
                Some("model"),
                Some("model_not_found"),
            ),
        }
    }
}

fn parse_object(body: &[u8]) -> Option<Map<String, Value>> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => Some(o),
        _ => None,
    }
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
        sse::data(&c)
    }

    fn delta(&self, delta: Value) -> Bytes {
        self.chunk(
            json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": null}]),
            None,
        )
    }

    fn frames(&self, reasoning: Option<&str>, ans: &Answer, usage: Usage) -> Vec<Bytes> {
        let mut out = Vec::new();
        if let Some(r) = reasoning {
            out.push(self.delta(json!({"role": "assistant", "content": null, "reasoning_content": ""})));
            out.extend(
                answer::pieces(r)
                    .iter()
                    .map(|p| self.delta(json!({"reasoning_content": p}))),
            );
        }
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
        out.push(sse::done());
        out
    }
}

/// Whether a model thinks (DeepSeek's `deepseek-reasoner`).
fn thinks(model: &str) -> bool {
    model.contains("reasoner")
}

/// An assistant message with tool calls but without the `reasoning_content` a thinking model
/// needs back.
fn lacks_reasoning(m: &Value) -> bool {
    m.get("role").and_then(Value::as_str) == Some("assistant")
        && m.get("tool_calls").and_then(Value::as_array).is_some_and(|c| !c.is_empty())
        && m.get("reasoning_content").and_then(Value::as_str).is_none_or(str::is_empty)
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
