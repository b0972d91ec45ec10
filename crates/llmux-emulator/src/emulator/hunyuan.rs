//! Tencent Hunyuan: the native API 3.0 (`POST /`, TC3-HMAC-SHA256, PROTOCOLS 3: the `ChatCompletions` and
//! `GetEmbedding` actions) and the OpenAI-compatible endpoint `/v1` (an OpenAI-style [`openai::Spec`]).
//!
//! Every native error is HTTP 200 with `{"Response":{"Error":{"Code","Message"},"RequestId"}}`.

use std::net::SocketAddr;

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::openai;
use super::{Base, Dialect, EnvValue, ProviderEnv, VendorEmulator};
use crate::answer::{self, Answer, ChatInput, Msg, ToolChoice, ToolDef, Usage};
use crate::auth::tc3;
use crate::reply::{Ctx, Incoming, Reply, ReplyBody};
use crate::{sse, Shared, Vendor};

/// The Hunyuan emulator.
#[derive(Debug)]
struct Hunyuan;

impl Vendor {
    /// Tencent Hunyuan: native base `/` (the API 3.0 endpoint, [`crate::Emulator::base_url`]
    /// `http://127.0.0.1:P/`) and OpenAI-compatible base `/v1` ([`crate::Emulator::compat_base_url`]); provider
    /// ids `hunyuan` and `hunyuan-openai`. Default key `sk-emulator-hunyuan` (the compatible endpoint's).
    ///
    /// * **Endpoints:** native `POST /` with `X-TC-Action: ChatCompletions` (or `GetEmbedding`) and
    ///   `X-TC-Version: 2023-09-01` (another action: `InvalidAction`; another version: `NoSuchVersion`; another
    ///   path: HTTP 404 `UnsupportedOperation`); compatible `/v1`: `chat/completions`, `embeddings`, `models`
    ///   as [`Vendor::OpenAi`] (with the Hunyuan request-id format).
    /// * **Auth (native, PROTOCOLS 3.2):** the TC3-HMAC-SHA256 signature is recomputed from the received method,
    ///   `/`, raw query, the headers named in `SignedHeaders` (values trimmed and lower-cased; `content-type` and
    ///   `host` must be among them) and SHA-256 of the exact body bytes; the service comes from the credential
    ///   scope and must be `hunyuan`, and the scope date must be the UTC date of `X-TC-Timestamp`. Credentials:
    ///   `secret_id` (default [`crate::HUNYUAN_SECRET_ID`] `AKIDemulator`), `secret_key` (default
    ///   [`crate::HUNYUAN_SECRET_KEY`] `emulator-secret-key`) and optionally `token` (then `X-TC-Token` must
    ///   equal it; no default). Errors are HTTP 200 `{"Response":{"Error":{"Code","Message"},"RequestId"}}`,
    ///   checked in this order: missing or non-TC3 `Authorization` → `AuthFailure.InvalidAuthorization`; no
    ///   `X-TC-Timestamp` → `MissingParameter`; timestamp more than 300 s from the emulator clock →
    ///   `AuthFailure.SignatureExpire` ("Signature expired. …"); other SecretId → `AuthFailure.SecretIdNotFound`;
    ///   token → `AuthFailure.TokenFailure`; scope or signature → `AuthFailure.SignatureFailure`. The
    ///   compatible endpoint takes `Authorization: Bearer <key>` from [`crate::EmulatorConfig::api_keys`] and
    ///   answers 401 like OpenAI.
    /// * **Ids:** `RequestId`, `Id`, header `X-TC-RequestId` on streams (and the compatible endpoint's
    ///   `x-request-id`) are `00000000-0000-4000-8000-<seq as 12 hex digits>`.
    /// * **Answers:** non-stream PROTOCOLS 3.3, `{"Response":{"RequestId","Id","Created","Note","Choices":
    ///   [{"Index":0,"FinishReason","Message":{"Role","Content","ToolCalls"?:[{"Id","Type","Function":{"Name",
    ///   "Arguments"},"Index"}]}}],"Usage":{"PromptTokens","CompletionTokens","TotalTokens"}}}`. Stream
    ///   (`Stream: true`): `text/event-stream`, `data: <json>\n\n` events not wrapped in `Response` (`Note`,
    ///   `Choices[{Index,FinishReason,Delta{Role,Content,ToolCalls?}}]`, `Created`, `Id`, `Usage`): one per
    ///   piece, or per tool call one with `Id`, `Type`, `Function.Name`, `Arguments:""` then one per fragment
    ///   carrying `Id`, `Index` and `Function.Arguments`; `FinishReason` `""` until a final event with empty
    ///   content; cumulative `Usage` on every event; no `[DONE]`. `Stop` keeps the stop string (Hunyuan stops
    ///   *after* the match); there is no max-tokens option; the first tool only is answered; `ToolChoice:
    ///   "custom"` + `CustomTool.Function.Name` names the tool (unknown name: `InvalidParameterValue`);
    ///   `Tools[].Function.Parameters` is a JSON string (an object: `InvalidParameter`). `GetEmbedding`:
    ///   `Input` or `InputList` → `Data[{Embedding,Index,Object}]`, 1024 dimensions.
    /// * **Validation (HTTP 200):** missing `Model`/`Messages` (or empty) → `MissingParameter`; bad role, a
    ///   `tool` message without `ToolCallId`, a last message that is not `user`/`tool`, wrong types →
    ///   `InvalidParameter`; `Temperature` outside 0–2, `TopP` outside 0–1, `Seed` outside 1–10000, unknown
    ///   `ToolChoice` → `InvalidParameterValue`.
    /// * **Faults (native):** errors stay HTTP 200: `QuotaExhausted` → `FailedOperation.ResourcePackExhausted`,
    ///   `ErrorBody200` → `InternalError`; a `Status` fault keeps its HTTP status with a Tencent body such as
    ///   `RequestLimitExceeded`; `ErrorEvent` → HTTP 200 with `FinishReason: "sensitive"`, mid-stream
    ///   `{"Note","Choices":[],"Created","Id","ErrorMsg":{"Code":4000,"Msg"}}`.
    #[expect(
        non_upper_case_globals,
        reason = "vendor constants keep the names of the enum variants they replaced, so callers did not change"
    )]
    pub const Hunyuan: Vendor = Vendor(&Hunyuan);
}

impl VendorEmulator for Hunyuan {
    fn id(&self) -> &'static str {
        "hunyuan"
    }

    fn default_key(&self) -> &'static str {
        "sk-emulator-hunyuan"
    }

    fn default_credentials(&self) -> &'static [(&'static str, &'static str)] {
        DEFAULT_CREDENTIALS
    }

    fn base_url(&self, addr: SocketAddr) -> String {
        format!("http://{addr}/")
    }

    fn compat_base_url(&self, addr: SocketAddr) -> Option<String> {
        Some(format!("http://{addr}/v1"))
    }

    fn providers(&self) -> &'static [ProviderEnv] {
        &[
            ProviderEnv {
                id: "hunyuan",
                base: Base::Vendor,
                vars: &[
                    ("HUNYUAN_BASE_URL", EnvValue::BaseUrl),
                    ("TENCENTCLOUD_SECRET_ID", EnvValue::Credential("secret_id")),
                    (
                        "TENCENTCLOUD_SECRET_KEY",
                        EnvValue::Credential("secret_key"),
                    ),
                ],
            },
            ProviderEnv {
                id: "hunyuan-openai",
                base: Base::Compat,
                vars: &[
                    ("HUNYUAN_OPENAI_BASE_URL", EnvValue::BaseUrl),
                    ("HUNYUAN_API_KEY", EnvValue::Key),
                ],
            },
        ]
    }

    fn dialect(&self, path: &str) -> &'static dyn Dialect {
        if path.starts_with("/v1/") {
            &COMPAT
        } else {
            &Native
        }
    }
}

/// The OpenAI-compatible endpoint `/v1`: OpenAI's behaviour with Hunyuan's request ids.
const COMPAT: openai::Spec = openai::Spec {
    request_id: super::uuid_request_id,
    ..openai::OPENAI
};

/// The native API 3.0.
#[derive(Debug)]
struct Native;

impl Dialect for Native {
    fn request_id(&self, seq: u64) -> String {
        super::uuid_request_id(seq)
    }

    /// Verifies the TC3 signature against the configured `secret_id`/`secret_key` (and `token`, if configured).
    fn check_auth(&self, ctx: &Ctx, req: &Incoming<'_>, shared: &Shared) -> Option<Reply> {
        let creds = tc3::Credentials {
            secret_id: shared.auth.credential("secret_id"),
            secret_key: shared.auth.credential("secret_key"),
            token: shared.auth.lookup("token"),
            service: SERVICE,
        };
        let now = ctx.now_ms.div_euclid(1000);
        match tc3::verify(
            req.method,
            req.query.unwrap_or_default(),
            req.headers,
            req.body,
            &creds,
            now,
        ) {
            Ok(()) => None,
            Err(e) => {
                tracing::debug!(code = e.code(), "hunyuan emulator refused a request: {e:?}");
                Some(error(ctx, 200, e.code(), &e.message()))
            }
        }
    }

    fn handle(&self, ctx: &Ctx, req: &Incoming<'_>, _shared: &Shared) -> Reply {
        handle(ctx, req)
    }

    fn status_error(&self, ctx: &Ctx, status: u16) -> Reply {
        let (code, message) = match status {
            400 => ("InvalidParameter", "Invalid parameter."),
            401 => (
                "AuthFailure.SignatureFailure",
                "The provided credentials could not be validated.",
            ),
            403 => ("UnauthorizedOperation", "The request is not authorized."),
            404 => ("ResourceNotFound", "The resource does not exist."),
            429 => (
                "RequestLimitExceeded",
                "Your current request rate has exceeded the limit. Please try again later.",
            ),
            503 => (
                "FailedOperation.EngineServerError",
                "The engine server is unavailable. Please try again later.",
            ),
            s if s >= 500 => ("InternalError", "An internal error occurred."),
            _ => ("InvalidParameter", "Invalid request."),
        };
        error(ctx, status, code, message)
    }

    fn quota_error(&self, ctx: &Ctx) -> Reply {
        error(
            ctx,
            200,
            "FailedOperation.ResourcePackExhausted",
            "The resource pack is exhausted. Please purchase a resource pack or top up your account.",
        )
    }

    fn error_body_200(&self, ctx: &Ctx) -> Reply {
        error(ctx, 200, "InternalError", "An internal error occurred.")
    }

    /// A moderated answer, `FinishReason: "sensitive"`.
    fn content_filter_error(&self, ctx: &Ctx) -> Reply {
        let id = ctx.request_id();
        Reply::json(
            ctx,
            200,
            &json!({"Response": {"RequestId": id, "Id": id, "Created": ctx.created, "Note": NOTE,
                "Choices": [{"Index": 0, "FinishReason": "sensitive",
                             "Message": {"Role": "assistant",
                                         "Content": "很抱歉，我还未学习到如何回答这个问题的内容，暂时无法提供相关信息。"}}],
                "Usage": {"PromptTokens": 0, "CompletionTokens": 0, "TotalTokens": 0}}}),
        )
    }

    /// `ErrorMsg` code 4000 (internal error), no `Choices`.
    fn stream_error_frame(&self, ctx: &Ctx, _sent: usize) -> Bytes {
        let id = ctx.request_id();
        sse::data(
            &json!({"Note": NOTE, "Choices": [], "Created": ctx.created, "Id": id,
            "ErrorMsg": {"Code": 4000, "Msg": "服务内部错误，请稍后重试。"}}),
        )
    }

    fn malformed_frame(&self, _ctx: &Ctx, _sent: usize) -> Bytes {
        Bytes::from_static(
            b"data: {\"Note\":\"\",\"Choices\":[{\"FinishReason\":\"\",\"Delta\":\n\n",
        )
    }

    /// True when a full reply carries `Response.Error`.
    fn is_http_200_error(&self, reply: &Reply) -> bool {
        match &reply.body {
            ReplyBody::Full(b) => serde_json::from_slice::<Value>(b)
                .is_ok_and(|v| v["Response"].get("Error").is_some()),
            ReplyBody::Sse(_) => false,
        }
    }
}

/// The only chat action the emulator implements.
pub(crate) const ACTION: &str = "ChatCompletions";
/// The API version `ChatCompletions` belongs to.
pub(crate) const VERSION: &str = "2023-09-01";
/// The service named in the credential scope.
pub(crate) const SERVICE: &str = "hunyuan";
/// Default credentials: `secret_id` = [`crate::HUNYUAN_SECRET_ID`], `secret_key` = [`crate::HUNYUAN_SECRET_KEY`].
const DEFAULT_CREDENTIALS: &[(&str, &str)] = &[
    ("secret_id", crate::HUNYUAN_SECRET_ID),
    ("secret_key", crate::HUNYUAN_SECRET_KEY),
];
/// The `Note` every answer carries.
pub(crate) const NOTE: &str = "以上内容为AI生成，不代表开发者立场，请勿删除或修改本标记";

/// The Tencent error envelope with this HTTP status.
fn error(ctx: &Ctx, status: u16, code: &str, message: &str) -> Reply {
    Reply::json(
        ctx,
        status,
        &json!({"Response": {"Error": {"Code": code, "Message": message},
                             "RequestId": ctx.request_id()}}),
    )
}

fn invalid(ctx: &Ctx, message: &str) -> Reply {
    error(ctx, 200, "InvalidParameter", message)
}

fn invalid_value(ctx: &Ctx, message: &str) -> Reply {
    error(ctx, 200, "InvalidParameterValue", message)
}

fn missing(ctx: &Ctx, name: &str) -> Reply {
    error(
        ctx,
        200,
        "MissingParameter",
        &format!("The request is missing a required parameter `{name}`."),
    )
}

/// Routes a native request (after the signature was verified).
fn handle(ctx: &Ctx, req: &Incoming<'_>) -> Reply {
    if req.path != "/" {
        return error(
            ctx,
            404,
            "UnsupportedOperation",
            &format!("The API 3.0 endpoint path is `/`, not `{}`.", req.path),
        );
    }
    let action = match req.header("x-tc-action") {
        Some(a) => a,
        None => return missing(ctx, "X-TC-Action"),
    };
    if action != ACTION && action != EMBEDDING_ACTION {
        return error(
            ctx,
            200,
            "InvalidAction",
            &format!(
                "The action `{action}` is not supported by the emulator (only `{ACTION}` and `{EMBEDDING_ACTION}`)."
            ),
        );
    }
    match req.header("x-tc-version") {
        None => return missing(ctx, "X-TC-Version"),
        Some(VERSION) => {}
        Some(v) => {
            return error(
                ctx,
                200,
                "NoSuchVersion",
                &format!("The version `{v}` of `{ACTION}` does not exist (use `{VERSION}`)."),
            )
        }
    }
    if req.method != "POST" {
        return error(
            ctx,
            200,
            "UnsupportedOperation",
            &format!(
                "{} is not supported for {ACTION}; send POST with a JSON body.",
                req.method
            ),
        );
    }
    if action == EMBEDDING_ACTION {
        return embed(ctx, req.body);
    }
    chat(ctx, req.body)
}

/// The embedding action of the same API version.
pub(crate) const EMBEDDING_ACTION: &str = "GetEmbedding";

/// Dimension of `hunyuan-embedding` vectors.
const EMBEDDING_DIM: usize = 1024;

/// `GetEmbedding`: `Input` (one text) or `InputList` (several) → `Data[{Embedding, Index, Object}]`
/// with deterministic vectors (crate docs) and `Usage{PromptTokens, TotalTokens}`.
fn embed(ctx: &Ctx, body: &[u8]) -> Reply {
    let v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => return invalid_value(ctx, "The request body is not valid JSON."),
    };
    let texts: Vec<String> = match (v.get("Input"), v.get("InputList")) {
        (Some(Value::String(s)), None) => vec![s.clone()],
        (None, Some(Value::Array(list))) if !list.is_empty() => {
            let texts: Option<Vec<String>> =
                list.iter().map(|t| t.as_str().map(str::to_owned)).collect();
            match texts {
                Some(t) => t,
                None => return invalid_value(ctx, "InputList must be a list of strings."),
            }
        }
        _ => return missing(ctx, "Input or InputList"),
    };
    let tokens: u64 = texts.iter().map(|t| answer::pieces(t).len() as u64).sum();
    let data: Vec<Value> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            json!({"Embedding": answer::embedding(t, EMBEDDING_DIM), "Index": i, "Object": "embedding"})
        })
        .collect();
    let id = ctx.request_id();
    Reply::json(
        ctx,
        200,
        &json!({"Response": {"RequestId": id, "Data": data,
            "Usage": {"PromptTokens": tokens, "TotalTokens": tokens}}}),
    )
}

/// A parsed `ChatCompletions` request.
struct ChatRequest {
    input: ChatInput,
    stop: Vec<String>,
    stream: bool,
}

fn read_messages(ctx: &Ctx, v: Option<&Value>) -> Result<Vec<Msg>, Reply> {
    let list = match v {
        None | Some(Value::Null) => return Err(missing(ctx, "Messages")),
        Some(Value::Array(a)) if a.is_empty() => return Err(missing(ctx, "Messages")),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(invalid(ctx, "Messages must be an array.")),
    };
    let mut out = Vec::with_capacity(list.len());
    for (i, m) in list.iter().enumerate() {
        let role = m.get("Role").and_then(Value::as_str).unwrap_or_default();
        if !["system", "user", "assistant", "tool"].contains(&role) {
            return Err(invalid(
                ctx,
                &format!("Messages.{i}.Role must be one of system, user, assistant, tool."),
            ));
        }
        let text = match (m.get("Content"), m.get("Contents")) {
            (Some(Value::String(s)), _) => s.clone(),
            (None | Some(Value::Null), Some(Value::Array(parts))) => parts
                .iter()
                .filter_map(|p| p.get("Text").and_then(Value::as_str))
                .collect(),
            (None | Some(Value::Null), None | Some(Value::Null)) => String::new(),
            _ => {
                return Err(invalid(
                    ctx,
                    &format!("Messages.{i}.Content must be a string."),
                ))
            }
        };
        if role == "tool" && !m.get("ToolCallId").is_some_and(Value::is_string) {
            return Err(invalid(
                ctx,
                &format!("Messages.{i}.ToolCallId is required for role tool."),
            ));
        }
        out.push(Msg {
            role: role.to_owned(),
            text,
        });
    }
    if !out
        .last()
        .is_some_and(|m| m.role == "user" || m.role == "tool")
    {
        return Err(invalid(
            ctx,
            "The last element of Messages must have Role user or tool.",
        ));
    }
    Ok(out)
}

fn read_tools(ctx: &Ctx, v: Option<&Value>) -> Result<Vec<ToolDef>, Reply> {
    let list = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(invalid(ctx, "Tools must be an array.")),
    };
    let mut out = Vec::with_capacity(list.len());
    for (i, t) in list.iter().enumerate() {
        let f = t.get("Function");
        let name = f.and_then(|f| f.get("Name")).and_then(Value::as_str);
        let Some(name) = name.filter(|n| !n.is_empty()) else {
            return Err(invalid(
                ctx,
                &format!("Tools.{i}.Function.Name is required."),
            ));
        };
        let parameters = match f.and_then(|f| f.get("Parameters")) {
            None | Some(Value::Null) => Value::Null,
            Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
                Ok(p) => p,
                Err(_) => {
                    return Err(invalid(
                        ctx,
                        &format!("Tools.{i}.Function.Parameters is not valid JSON."),
                    ))
                }
            },
            Some(_) => {
                return Err(invalid(
                    ctx,
                    &format!(
                    "Tools.{i}.Function.Parameters must be a JSON Schema serialised as a string."
                ),
                ))
            }
        };
        out.push(ToolDef {
            name: name.to_owned(),
            parameters,
        });
    }
    Ok(out)
}

fn read_tool_choice(ctx: &Ctx, req: &Map<String, Value>) -> Result<ToolChoice, Reply> {
    match req.get("ToolChoice") {
        None | Some(Value::Null) => Ok(ToolChoice::Auto),
        Some(Value::String(s)) if s == "auto" => Ok(ToolChoice::Auto),
        Some(Value::String(s)) if s == "none" => Ok(ToolChoice::None),
        Some(Value::String(s)) if s == "custom" => req
            .get("CustomTool")
            .and_then(|c| c.get("Function"))
            .and_then(|f| f.get("Name"))
            .and_then(Value::as_str)
            .map(|n| ToolChoice::Named(n.to_owned()))
            .ok_or_else(|| missing(ctx, "CustomTool")),
        Some(_) => Err(invalid_value(
            ctx,
            "ToolChoice must be one of none, auto, custom.",
        )),
    }
}

fn check_range(
    ctx: &Ctx,
    req: &Map<String, Value>,
    name: &str,
    lo: f64,
    hi: f64,
) -> Result<(), Reply> {
    match req.get(name) {
        None | Some(Value::Null) => Ok(()),
        Some(v) => match v.as_f64() {
            Some(x) if (lo..=hi).contains(&x) => Ok(()),
            Some(_) => Err(invalid_value(
                ctx,
                &format!("{name} must be between {lo} and {hi}."),
            )),
            None => Err(invalid(ctx, &format!("{name} must be a number."))),
        },
    }
}

fn parse(ctx: &Ctx, body: &[u8]) -> Result<ChatRequest, Reply> {
    let req = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => o,
        _ => return Err(invalid(ctx, "The request body is not a valid JSON object.")),
    };
    match req.get("Model") {
        None | Some(Value::Null) => return Err(missing(ctx, "Model")),
        Some(Value::String(m)) if !m.is_empty() => {}
        Some(_) => return Err(invalid(ctx, "Model must be a non-empty string.")),
    }
    let messages = read_messages(ctx, req.get("Messages"))?;
    check_range(ctx, &req, "Temperature", 0.0, 2.0)?;
    check_range(ctx, &req, "TopP", 0.0, 1.0)?;
    if let Some(seed) = req.get("Seed").filter(|v| !v.is_null()) {
        if !seed.as_u64().is_some_and(|s| (1..=10_000).contains(&s)) {
            return Err(invalid_value(
                ctx,
                "Seed must be an integer between 1 and 10000.",
            ));
        }
    }
    let stream = match req.get("Stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(invalid(ctx, "Stream must be a boolean.")),
    };
    let stop = match req.get("Stop") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => {
            answer::read_stop(req.get("Stop"))
        }
        Some(_) => return Err(invalid(ctx, "Stop must be an array of strings.")),
    };
    let input = ChatInput {
        tools: read_tools(ctx, req.get("Tools"))?,
        tool_choice: read_tool_choice(ctx, &req)?,
        parallel_tool_calls: false,
        max_tokens: None,
        stop: Vec::new(),
        messages,
    };
    Ok(ChatRequest {
        input,
        stop,
        stream,
    })
}

/// Hunyuan stops *after* the earliest stop string (the match stays in the text), unlike OpenAI.
fn stop_after(ans: Answer, stop: &[String]) -> Answer {
    if stop.is_empty() || !matches!(ans, Answer::Text { .. }) {
        return ans;
    }
    let full = ans.text();
    let cut = stop
        .iter()
        .filter_map(|s| full.find(s.as_str()).map(|i| i + s.len()))
        .min();
    match cut {
        Some(end) => answer::shape_text(&full[..end], &[], None),
        None => ans,
    }
}

fn usage_json(u: Usage) -> Value {
    json!({"PromptTokens": u.prompt, "CompletionTokens": u.completion, "TotalTokens": u.total()})
}

fn chat(ctx: &Ctx, body: &[u8]) -> Reply {
    let req = match parse(ctx, body) {
        Ok(r) => r,
        Err(reply) => return reply,
    };
    let ans = match answer::answer(&req.input) {
        Ok(a) => stop_after(a, &req.stop),
        Err(name) => {
            return invalid_value(
                ctx,
                &format!("CustomTool names the function `{name}`, which is not in Tools."),
            )
        }
    };
    let usage = Usage {
        prompt: answer::prompt_tokens(&req.input.messages),
        completion: ans.completion_tokens(),
    };
    let id = ctx.request_id();
    if req.stream {
        let frames = stream_frames(ctx, &ans, usage);
        return Reply::sse(ctx, frames).with_header("x-tc-requestid", id);
    }
    let mut message = json!({"Role": "assistant", "Content": ans.text()});
    if let Answer::Tools { calls } = &ans {
        message["ToolCalls"] = calls
            .iter()
            .enumerate()
            .map(|(i, c)| {
                json!({"Id": c.id, "Type": "function",
                       "Function": {"Name": c.name, "Arguments": c.arguments}, "Index": i})
            })
            .collect();
    }
    Reply::json(
        ctx,
        200,
        &json!({"Response": {"RequestId": id, "Id": id, "Created": ctx.created, "Note": NOTE,
            "Choices": [{"Index": 0, "FinishReason": ans.finish().as_str(), "Message": message}],
            "Usage": usage_json(usage)}}),
    )
}

/// Stream events: one per text piece (or per tool-call head and argument fragment), then a final event with the
/// finish reason and an empty delta; `Usage` is cumulative on every event; no `[DONE]`.
fn stream_frames(ctx: &Ctx, ans: &Answer, usage: Usage) -> Vec<Bytes> {
    let id = ctx.request_id();
    let event = |delta: Value, finish: &str, completion: u64| {
        sse::data(&json!({"Note": NOTE,
            "Choices": [{"Index": 0, "FinishReason": finish, "Delta": delta}],
            "Created": ctx.created, "Id": id,
            "Usage": usage_json(Usage { prompt: usage.prompt, completion })}))
    };
    let mut out = Vec::new();
    match ans {
        Answer::Text { pieces, .. } => {
            for (i, p) in pieces.iter().enumerate() {
                out.push(event(
                    json!({"Role": "assistant", "Content": p}),
                    "",
                    i as u64 + 1,
                ));
            }
        }
        Answer::Tools { calls } => {
            for (i, c) in calls.iter().enumerate() {
                let head = json!({"Id": c.id, "Type": "function",
                                  "Function": {"Name": c.name, "Arguments": ""}, "Index": i});
                out.push(event(
                    json!({"Role": "assistant", "Content": "", "ToolCalls": [head]}),
                    "",
                    out.len() as u64 + 1,
                ));
                for frag in c.fragments() {
                    let part = json!({"Id": c.id, "Function": {"Arguments": frag}, "Index": i});
                    out.push(event(
                        json!({"Role": "assistant", "Content": "", "ToolCalls": [part]}),
                        "",
                        out.len() as u64 + 1,
                    ));
                }
            }
        }
    }
    out.push(event(
        json!({"Role": "assistant", "Content": ""}),
        ans.finish().as_str(),
        usage.completion,
    ));
    out
}
