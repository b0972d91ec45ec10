//! iFlytek Spark (PROTOCOLS.md 4): WebSocket chat on `/v1.1/chat` … `/v4.0/chat` (URL-signed handshake, one
//! request frame, streamed answer frames, then close) and the OpenAI-compatible HTTP `POST /v1/chat/completions`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::FromRequestParts as _;
use axum::http::request::Parts;
use axum::http::Response;
use axum::response::IntoResponse as _;
use bytes::Bytes;
use futures::future::BoxFuture;
use serde_json::{json, Map, Value};

use super::{Base, Dialect, EnvValue, ProviderEnv, Takeover, VendorEmulator};
use crate::answer::{self, Answer, ChatInput, Msg, ToolChoice, Usage};
use crate::auth::spark_url;
use crate::reply::{Ctx, Incoming, Reply};
use crate::{fault, lock, FaultKind, Shared, Vendor};

/// The Spark emulator.
#[derive(Debug)]
struct Spark;

impl Vendor {
    /// iFlytek Spark: WebSocket chat ([`crate::Emulator::base_url`] `ws://127.0.0.1:P`; append `/v3.5/chat`, …)
    /// and the OpenAI-compatible HTTP API ([`crate::Emulator::compat_base_url`] `http://127.0.0.1:P/v1`);
    /// provider ids `spark` and `spark-http`. Default key `emu-api-password` (the HTTP API password, also the
    /// default `api_password` credential). Credentials: `app_id` = `emuappid`, `api_key` = `emu-api-key`,
    /// `api_secret` = `emu-api-secret`, `api_password` = `emu-api-password`.
    ///
    /// * **WebSocket paths and domains** (`parameter.chat.domain` must be one of the path's, else error 10005):
    ///   `/v1.1/chat` `lite` or `general`; `/v2.1/chat` `generalv2`; `/v3.1/chat` `generalv3`; `/chat/pro-128k`
    ///   `pro-128k`; `/v3.5/chat` `generalv3.5`; `/chat/max-32k` `max-32k`; `/v4.0/chat` `4.0Ultra`. Any other
    ///   GET path: 404 `{"message":"no Route matched with those values"}`.
    /// * **Handshake.** Checked in this order, before the upgrade (a plain GET gets the same answers): a
    ///   status/HTML fault fails it with that status; an unknown path is a 404; then the URL auth of
    ///   PROTOCOLS.md 4.2 with the `api_key`/`api_secret` credentials, recomputing the signature over the `host`
    ///   *query* value, the `date` value and `GET <path> HTTP/1.1`. Refusals are JSON `{"message": …}`:
    ///   no/garbled `authorization`, `date` or `host` → 401 `Unauthorized`; `date` not RFC 1123 (with the right
    ///   weekday) or more than 300 s from the emulator clock → 403 `HMAC signature cannot be verified, a valid
    ///   date or x-date header is required for HMAC Authentication`; other `api_key`, or `algorithm`/`headers`
    ///   not `hmac-sha256`/`host date request-line` → 401 `HMAC signature cannot be verified`; wrong signature →
    ///   401 `HMAC signature does not match`. Extra spaces between the `authorization` fields (sparkai's LLM
    ///   client) are accepted. A passing request without upgrade headers gets axum's upgrade rejection. The log
    ///   records the GET (path, query, headers) with status 101 and, once it arrives, the client's first frame
    ///   as the body.
    /// * **Frames.** One client text frame (PROTOCOLS.md 4.3). The answer is one text frame per reply piece:
    ///   `header{code:0,message:"Success",sid,status}`, `payload.choices{status,seq,text:[{content,
    ///   role:"assistant",index:0}]}`; status 0 on the first frame, 1 in between, 2 on the last (a single-piece
    ///   reply is one status-2 frame; the last frame carries text too); `payload.usage.text{question_tokens,
    ///   prompt_tokens,completion_tokens,total_tokens}` on the last frame only (`question_tokens` = tokens of
    ///   the last user message). Then a close frame (1000). `payload.functions.text` are the tools (honoured on
    ///   every domain); the answer is then one status-2 frame with `content:""`, `content_type:"text"` and
    ///   `function_call{name,arguments}` (first function only). `parameter.chat.max_tokens` cuts the reply as
    ///   in the shared rules.
    /// * **Frame errors** (one frame `{"header":{"code","message","sid","status":2}}`, then close): not JSON or
    ///   a binary frame → 10003; missing `header.app_id`, `parameter.chat`, `domain`, `payload.message.text` or
    ///   malformed entries → 10004; `header.app_id` not the `app_id` credential → 10313; domain/path mismatch,
    ///   `temperature` outside (0, 1], `max_tokens` outside 1–4096 (`/v1.1/chat`, `/chat/pro-128k`) or 1–8192,
    ///   `top_k` outside 1–6, a role other than system/user/assistant, a system message after the first, a
    ///   `uid` that is not a string of at most 32 characters, or an empty `text` → 10005; prompt tokens over the
    ///   context (8192; max-32k 32768; pro-128k 131072) → 10907.
    /// * **WebSocket faults.** Status and Html fail the upgrade; QuotaExhausted → frame 11200
    ///   (`AppIdNoAuthError`), ErrorBody200 → frame 10012, both after the client's frame; ErrorEvent → after N
    ///   answer frames an error frame 10013, then close; StreamCutAfter → after N frames the TCP connection is
    ///   dropped (no status-2 frame, no close frame); MalformedFrame → after N frames one non-JSON text frame,
    ///   then the rest; IdleAfter → a stall; DelayFirstByte → a sleep before the first answer frame. N is
    ///   clamped as for SSE. `latency` sleeps before the 101; `token_interval` between answer frames. Status
    ///   faults without a body answer `{"message": …}` (401 `Unauthorized`, 403 `Forbidden`, 429 `API rate limit
    ///   exceeded`, 5xx `An unexpected error occurred`).
    /// * **HTTP API** `POST /v1/chat/completions` with `Authorization: Bearer <k>`, `k` = the `api_password`
    ///   credential, `<api_key>:<api_secret>`, or one of [`crate::EmulatorConfig::api_keys`]; otherwise 401
    ///   `{"error":{"message":"invalid user","type":"api_error","param":null,"code":null}}`. `model` must be one
    ///   of `lite`, `generalv3`, `pro-128k`, `generalv3.5`, `max-32k`, `4.0Ultra`. Answer: `{"code":0,
    ///   "message":"Success","sid","id"(=sid),"created","object":"chat.completion","model","choices":[{"index":0,
    ///   "message":{"role","content","tool_calls"?},"finish_reason"}],"usage":{"prompt_tokens",
    ///   "completion_tokens","total_tokens"}}`; one tool call at most (`parallel_tool_calls` false). Stream:
    ///   `data:{…}\n\n` (no space) with `code`, `message`, `sid`, `id`, `created` and
    ///   `choices[{delta:{role,content},index}]` per piece (tool calls: a delta with id, name and empty
    ///   arguments, then 8-character argument fragments), then a delta with `content:""`, `finish_reason` and
    ///   `usage`, then `data:[DONE]`. Errors are `{"code","message","sid"}`: bad JSON 400 code 10003; bad model,
    ///   messages, role, `temperature` (outside [0, 2]), `top_k`, `max_tokens` → 400 code 10005. Faults:
    ///   QuotaExhausted 429 code 11200; ErrorBody200 200 code 10012; ErrorEvent 400 code 10013 (stream: a
    ///   `data:{"code":10013,…}` event ends it); Status without a body: 401 as above, 403 code 11200, 429 code
    ///   11202, 5xx code 10012, other 4xx code 10005.
    /// * **Ids.** WebSocket `sid` = `cht<seq as 8 hex>@dx<seq as 16 hex>`; HTTP `sid` = `cha…` in the same shape
    ///   (also the `x-request-id` header).
    #[expect(
        non_upper_case_globals,
        reason = "vendor constants keep the names of the enum variants they replaced, so callers did not change"
    )]
    pub const Spark: Vendor = Vendor(&Spark);
}

impl VendorEmulator for Spark {
    fn id(&self) -> &'static str {
        "spark"
    }

    fn default_key(&self) -> &'static str {
        "emu-api-password"
    }

    fn default_credentials(&self) -> &'static [(&'static str, &'static str)] {
        &[
            ("api_key", "emu-api-key"),
            ("api_password", "emu-api-password"),
            ("api_secret", "emu-api-secret"),
            ("app_id", "emuappid"),
        ]
    }

    fn base_url(&self, addr: SocketAddr) -> String {
        format!("ws://{addr}")
    }

    fn compat_base_url(&self, addr: SocketAddr) -> Option<String> {
        Some(format!("http://{addr}/v1"))
    }

    fn providers(&self) -> &'static [ProviderEnv] {
        &[
            ProviderEnv {
                id: "spark",
                base: Base::Vendor,
                vars: &[
                    ("SPARK_BASE_URL", EnvValue::BaseUrl),
                    ("SPARK_APP_ID", EnvValue::Credential("app_id")),
                    ("SPARK_API_KEY", EnvValue::Credential("api_key")),
                    ("SPARK_API_SECRET", EnvValue::Credential("api_secret")),
                ],
            },
            ProviderEnv {
                id: "spark-http",
                base: Base::Compat,
                vars: &[
                    ("SPARK_HTTP_BASE_URL", EnvValue::BaseUrl),
                    ("SPARK_API_PASSWORD", EnvValue::Credential("api_password")),
                ],
            },
        ]
    }

    fn dialect(&self, path: &str) -> &'static dyn Dialect {
        if path.starts_with("/v1/") {
            &Http
        } else {
            &Ws
        }
    }
}

/// The WebSocket API: handshakes on any path outside `/v1/`, then one session per connection.
#[derive(Debug)]
struct Ws;

impl Dialect for Ws {
    fn request_id(&self, seq: u64) -> String {
        format!("cht{seq:08x}@dx{seq:016x}")
    }

    /// The handshake is checked in [`websocket`].
    fn check_auth(&self, _ctx: &Ctx, _req: &Incoming<'_>, _shared: &Shared) -> Option<Reply> {
        None
    }

    /// Never called: [`Dialect::takeover`] answers every WebSocket path.
    fn handle(&self, ctx: &Ctx, _req: &Incoming<'_>, _shared: &Shared) -> Reply {
        ws_refusal(ctx, 404, "no Route matched with those values")
    }

    /// A refused upgrade.
    fn status_error(&self, ctx: &Ctx, status: u16) -> Reply {
        let message = match status {
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "no Route matched with those values",
            429 => "API rate limit exceeded",
            s if s >= 500 => "An unexpected error occurred",
            _ => "Bad Request",
        };
        ws_refusal(ctx, status, message)
    }

    fn quota_error(&self, ctx: &Ctx) -> Reply {
        http_error(ctx, 429, code::NO_QUOTA, QUOTA_MESSAGE)
    }

    fn error_body_200(&self, ctx: &Ctx) -> Reply {
        http_error(ctx, 200, code::ENGINE_INTERNAL, ENGINE_MESSAGE)
    }

    fn content_filter_error(&self, ctx: &Ctx) -> Reply {
        http_error(ctx, 400, code::INPUT_AUDIT, AUDIT_MESSAGE)
    }

    fn stream_error_frame(&self, ctx: &Ctx, _sent: usize) -> Bytes {
        sse_error_frame(ctx)
    }

    fn malformed_frame(&self, _ctx: &Ctx, _sent: usize) -> Bytes {
        sse_malformed_frame()
    }

    fn takeover(&self) -> Option<Takeover> {
        fn serve(
            shared: Arc<Shared>,
            parts: Parts,
            ctx: Ctx,
        ) -> BoxFuture<'static, Response<Body>> {
            Box::pin(websocket(shared, parts, ctx))
        }
        Some(serve)
    }
}

/// The OpenAI-compatible HTTP API `/v1/...`.
#[derive(Debug)]
struct Http;

impl Dialect for Http {
    fn request_id(&self, seq: u64) -> String {
        format!("cha{seq:08x}@dx{seq:016x}")
    }

    /// The bearer must be the `api_password` credential, `<api_key>:<api_secret>`, or a configured key.
    fn check_auth(&self, ctx: &Ctx, req: &Incoming<'_>, shared: &Shared) -> Option<Reply> {
        let Some(bearer) = super::bearer(req) else {
            return Some(http_auth_error(ctx));
        };
        let creds = &shared.auth;
        let pair = format!(
            "{}:{}",
            creds.credential("api_key"),
            creds.credential("api_secret")
        );
        let ok = shared.api_keys.contains(&bearer)
            || (!creds.credential("api_password").is_empty()
                && bearer == creds.credential("api_password"))
            || bearer == pair;
        (!ok).then(|| http_auth_error(ctx))
    }

    fn handle(&self, ctx: &Ctx, req: &Incoming<'_>, _shared: &Shared) -> Reply {
        match (req.method, req.path) {
            ("POST", "/v1/chat/completions") => http_chat(ctx, req.body),
            _ => Reply::json(
                ctx,
                404,
                &json!({"error": {"message": format!("Invalid URL ({} {})", req.method, req.path),
                                  "type": "api_error", "param": null, "code": null}}),
            ),
        }
    }

    fn status_error(&self, ctx: &Ctx, status: u16) -> Reply {
        match status {
            401 => http_auth_error(ctx),
            403 => http_error(ctx, 403, code::NO_QUOTA, QUOTA_MESSAGE),
            429 => http_error(
                ctx,
                429,
                code::QPS,
                "AppIdQpsOverFlowError:(11202)qps exceeded",
            ),
            s if s >= 500 => http_error(ctx, s, code::ENGINE_INTERNAL, ENGINE_MESSAGE),
            s => http_error(ctx, s, code::BAD_PARAM, "InvalidParameter: bad request"),
        }
    }

    /// 429 with code 11200.
    fn quota_error(&self, ctx: &Ctx) -> Reply {
        http_error(ctx, 429, code::NO_QUOTA, QUOTA_MESSAGE)
    }

    /// 200 with code 10012.
    fn error_body_200(&self, ctx: &Ctx) -> Reply {
        http_error(ctx, 200, code::ENGINE_INTERNAL, ENGINE_MESSAGE)
    }

    /// 400 with code 10013.
    fn content_filter_error(&self, ctx: &Ctx) -> Reply {
        http_error(ctx, 400, code::INPUT_AUDIT, AUDIT_MESSAGE)
    }

    fn stream_error_frame(&self, ctx: &Ctx, _sent: usize) -> Bytes {
        sse_error_frame(ctx)
    }

    fn malformed_frame(&self, _ctx: &Ctx, _sent: usize) -> Bytes {
        sse_malformed_frame()
    }
}

/// The mid-stream error event of the HTTP API (`data:` without a space).
fn sse_error_frame(ctx: &Ctx) -> Bytes {
    sse_frame(
        &json!({"code": code::INPUT_AUDIT, "message": AUDIT_MESSAGE, "sid": ctx.request_id()}),
    )
}

/// A truncated-JSON event of the HTTP API.
fn sse_malformed_frame() -> Bytes {
    Bytes::from_static(b"data:{\"code\":0,\"message\":\"Success\",\"choices\":[{\"delta\":\n\n")
}

/// A WebSocket endpoint: path, accepted `parameter.chat.domain` values, context window (tokens) and the largest
/// `max_tokens`.
struct Endpoint {
    path: &'static str,
    domains: &'static [&'static str],
    context: u64,
    max_tokens: u64,
}

const ENDPOINTS: &[Endpoint] = &[
    Endpoint {
        path: "/v1.1/chat",
        domains: &["lite", "general"],
        context: 8192,
        max_tokens: 4096,
    },
    Endpoint {
        path: "/v2.1/chat",
        domains: &["generalv2"],
        context: 8192,
        max_tokens: 8192,
    },
    Endpoint {
        path: "/v3.1/chat",
        domains: &["generalv3"],
        context: 8192,
        max_tokens: 8192,
    },
    Endpoint {
        path: "/chat/pro-128k",
        domains: &["pro-128k"],
        context: 131_072,
        max_tokens: 4096,
    },
    Endpoint {
        path: "/v3.5/chat",
        domains: &["generalv3.5"],
        context: 8192,
        max_tokens: 8192,
    },
    Endpoint {
        path: "/chat/max-32k",
        domains: &["max-32k"],
        context: 32_768,
        max_tokens: 8192,
    },
    Endpoint {
        path: "/v4.0/chat",
        domains: &["4.0Ultra"],
        context: 8192,
        max_tokens: 8192,
    },
];

/// Models of the HTTP endpoint.
const HTTP_MODELS: &[&str] = &[
    "lite",
    "generalv3",
    "pro-128k",
    "generalv3.5",
    "max-32k",
    "4.0Ultra",
];

fn endpoint_for_path(path: &str) -> Option<&'static Endpoint> {
    ENDPOINTS.iter().find(|e| e.path == path)
}

fn endpoint_for_domain(domain: &str) -> Option<&'static Endpoint> {
    ENDPOINTS.iter().find(|e| e.domains.contains(&domain))
}

/// Error codes of the WebSocket and HTTP APIs (PROTOCOLS.md 4.3).
mod code {
    pub const BAD_FORMAT: u32 = 10003;
    pub const BAD_SCHEMA: u32 = 10004;
    pub const BAD_PARAM: u32 = 10005;
    pub const ENGINE_INTERNAL: u32 = 10012;
    pub const INPUT_AUDIT: u32 = 10013;
    pub const APPID_MISMATCH: u32 = 10313;
    pub const TOO_MANY_TOKENS: u32 = 10907;
    pub const NO_QUOTA: u32 = 11200;
    pub const QPS: u32 = 11202;
}

const AUDIT_MESSAGE: &str = "the input content may violate the content policy";
const QUOTA_MESSAGE: &str = "AppIdNoAuthError:(11200)auth no quota";
const ENGINE_MESSAGE: &str = "EngineInternalError:the engine failed to answer";

// ---------------------------------------------------------------- errors shared with faults

/// A failed upgrade: `{"message": …}` (the vendor's gateway style).
fn ws_refusal(ctx: &Ctx, status: u16, message: &str) -> Reply {
    Reply::json(ctx, status, &json!({"message": message}))
}

/// HTTP API error body `{"code","message","sid"}`.
fn http_error(ctx: &Ctx, status: u16, code: u32, message: &str) -> Reply {
    Reply::json(
        ctx,
        status,
        &json!({"code": code, "message": message, "sid": ctx.request_id()}),
    )
}

/// 401 of the HTTP API for a missing or wrong bearer.
fn http_auth_error(ctx: &Ctx) -> Reply {
    Reply::json(
        ctx,
        401,
        &json!({"error": {"message": "invalid user", "type": "api_error", "param": null, "code": null}}),
    )
}

fn sse_frame(v: &Value) -> Bytes {
    Bytes::from(format!("data:{v}\n\n"))
}

// ---------------------------------------------------------------- HTTP API

fn number_in(v: Option<&Value>, lo: f64, hi: f64, lo_open: bool) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(x) => x
            .as_f64()
            .is_some_and(|x| x <= hi && if lo_open { x > lo } else { x >= lo }),
    }
}

fn int_in(v: Option<&Value>, lo: u64, hi: u64) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(x) => x.as_u64().is_some_and(|x| (lo..=hi).contains(&x)),
    }
}

fn http_chat(ctx: &Ctx, body: &[u8]) -> Reply {
    let bad = |m: &str| http_error(ctx, 400, code::BAD_PARAM, m);
    let req: Map<String, Value> = match serde_json::from_slice(body) {
        Ok(Value::Object(o)) => o,
        _ => {
            return http_error(
                ctx,
                400,
                code::BAD_FORMAT,
                "the request body is not a JSON object",
            )
        }
    };
    let model = req.get("model").and_then(Value::as_str).unwrap_or_default();
    if !HTTP_MODELS.contains(&model) {
        return bad(&format!("invalid model: {model:?}"));
    }
    let Some(limit) = endpoint_for_domain(model).map(|e| e.max_tokens) else {
        return bad(&format!("invalid model: {model:?}"));
    };
    let messages = match req.get("messages").and_then(Value::as_array) {
        Some(m) if !m.is_empty() => answer::read_messages(m),
        _ => return bad("messages must be a non-empty array"),
    };
    if let Some(m) = messages
        .iter()
        .find(|m| !["system", "user", "assistant", "tool"].contains(&m.role.as_str()))
    {
        return bad(&format!("invalid role: {:?}", m.role));
    }
    if !number_in(req.get("temperature"), 0.0, 2.0, false) {
        return bad("temperature must be within [0, 2]");
    }
    if !int_in(req.get("top_k"), 1, 6) {
        return bad("top_k must be an integer within [1, 6]");
    }
    if !int_in(req.get("max_tokens"), 1, limit) {
        return bad(&format!(
            "max_tokens must be an integer within [1, {limit}]"
        ));
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
            return bad(&format!(
                "tool_choice names a function that is not in tools: {name}"
            ))
        }
    };
    let usage = Usage {
        prompt: answer::prompt_tokens(&input.messages),
        completion: ans.completion_tokens(),
    };
    let usage_json = json!({"prompt_tokens": usage.prompt, "completion_tokens": usage.completion,
                            "total_tokens": usage.total()});
    let sid = ctx.request_id();
    let head = |v: Value| {
        let mut o =
            json!({"code": 0, "message": "Success", "sid": sid, "id": sid, "created": ctx.created});
        if let (Some(o), Value::Object(extra)) = (o.as_object_mut(), v) {
            o.extend(extra);
        }
        o
    };
    if req.get("stream").and_then(Value::as_bool) != Some(true) {
        let mut message = json!({"role": "assistant", "content": ans.text()});
        if let Answer::Tools { calls } = &ans {
            message["tool_calls"] = calls
                .iter()
                .map(|c| {
                    json!({"id": c.id, "type": "function",
                                "function": {"name": c.name, "arguments": c.arguments}})
                })
                .collect();
        }
        let body = head(json!({"object": "chat.completion", "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": ans.finish().as_str()}],
            "usage": usage_json}));
        return Reply::json(ctx, 200, &body);
    }
    let delta = |d: Value| head(json!({"choices": [{"delta": d, "index": 0}]}));
    let mut frames = Vec::new();
    match &ans {
        Answer::Text { pieces, .. } => {
            for p in pieces {
                frames.push(sse_frame(&delta(
                    json!({"role": "assistant", "content": p}),
                )));
            }
        }
        Answer::Tools { calls } => {
            for (i, c) in calls.iter().enumerate() {
                frames.push(sse_frame(&delta(
                    json!({"role": "assistant", "content": "",
                    "tool_calls": [{"index": i, "id": c.id, "type": "function",
                                    "function": {"name": c.name, "arguments": ""}}]}),
                )));
                for f in c.fragments() {
                    frames.push(sse_frame(&delta(
                        json!({"role": "assistant", "content": "",
                        "tool_calls": [{"index": i, "function": {"arguments": f}}]}),
                    )));
                }
            }
        }
    }
    frames.push(sse_frame(&head(json!({
        "choices": [{"delta": {"role": "assistant", "content": ""}, "index": 0,
                     "finish_reason": ans.finish().as_str()}],
        "usage": usage_json}))));
    frames.push(Bytes::from_static(b"data:[DONE]\n\n"));
    Reply::sse(ctx, frames)
}

// ---------------------------------------------------------------- WebSocket

fn set_body(shared: &Shared, seq: u64, body: Bytes) {
    if let Some((_, r)) = lock(&shared.log).iter_mut().rev().find(|(s, _)| *s == seq) {
        r.body = body;
    }
}

/// Answers a request on a WebSocket path: fault, route, URL auth, then the upgrade.
async fn websocket(shared: Arc<Shared>, mut parts: Parts, ctx: Ctx) -> Response<Body> {
    let path = parts.uri.path().to_owned();
    let fault = shared.take_fault(&path);
    let latency = *lock(&shared.latency);
    let refused = match &fault {
        Some(k @ (FaultKind::Status { .. } | FaultKind::Html { .. })) => {
            fault::replacement(k, &ctx)
        }
        _ => None,
    }
    .or_else(|| {
        endpoint_for_path(&path)
            .is_none()
            .then(|| ws_refusal(&ctx, 404, "no Route matched with those values"))
    })
    .or_else(|| {
        let now = shared.clock.now_unix_ms().div_euclid(1000);
        spark_url::verify(
            &path,
            parts.uri.query(),
            shared.auth.credential("api_key"),
            shared.auth.credential("api_secret"),
            now,
        )
        .err()
        .map(|e| ws_refusal(&ctx, e.status(), e.message()))
    });
    if let Some(reply) = refused {
        shared.set_status(ctx.seq, reply.status);
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        return fault::into_response(reply, None, ctx, Duration::ZERO);
    }
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(u) => u,
        Err(rejection) => {
            let resp = rejection.into_response();
            shared.set_status(ctx.seq, resp.status().as_u16());
            return resp;
        }
    };
    shared.set_status(ctx.seq, 101);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    upgrade.on_upgrade(move |socket| session(socket, shared, ctx, path, fault))
}

/// A failure answered in a frame: (code, message).
type FrameError = (u32, String);

/// One WebSocket conversation: read the request frame, answer it, close.
async fn session(
    mut socket: WebSocket,
    shared: Arc<Shared>,
    ctx: Ctx,
    path: String,
    fault: Option<FaultKind>,
) {
    let first = loop {
        match socket.recv().await {
            Some(Ok(Message::Text(t))) => break Bytes::copy_from_slice(t.as_str().as_bytes()),
            Some(Ok(Message::Binary(b))) => break b,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            Some(Ok(Message::Close(_)) | Err(_)) | None => return,
        }
    };
    set_body(&shared, ctx.seq, first.clone());
    let planned = match &fault {
        Some(FaultKind::QuotaExhausted) => Err((code::NO_QUOTA, QUOTA_MESSAGE.to_owned())),
        Some(FaultKind::ErrorBody200) => Err((code::ENGINE_INTERNAL, ENGINE_MESSAGE.to_owned())),
        _ => plan(&shared, &ctx, &path, &first),
    };
    let frames = match planned {
        Ok(frames) => frames,
        Err((c, m)) => {
            finish_with_error(socket, &ctx, c, &m).await;
            return;
        }
    };
    if let Some(FaultKind::DelayFirstByte(d)) = &fault {
        tokio::time::sleep(*d).await;
    }
    let len = frames.len();
    let at = |n: u32| {
        usize::try_from(n)
            .unwrap_or(usize::MAX)
            .min(len.saturating_sub(1))
    };
    for (i, frame) in frames.into_iter().enumerate() {
        if i > 0 && !shared.token_interval.is_zero() {
            tokio::time::sleep(shared.token_interval).await;
        }
        match &fault {
            Some(FaultKind::StreamCutAfter(n)) if i == at(*n) => {
                // Drop the connection: no status-2 frame, no close frame.
                drop(socket);
                return;
            }
            Some(FaultKind::ErrorEvent { after }) if i == at(*after) => {
                finish_with_error(socket, &ctx, code::INPUT_AUDIT, AUDIT_MESSAGE).await;
                return;
            }
            Some(FaultKind::MalformedFrame { after }) if i == at(*after) => {
                let bad = format!(
                    "{{\"header\":{{\"code\":0,\"message\":\"Success\",\"sid\":\"{}\",\"status\":1}},\"payload\":{{\"choices\":",
                    ctx.request_id()
                );
                if socket.send(Message::Text(bad.into())).await.is_err() {
                    return;
                }
            }
            Some(FaultKind::IdleAfter { after, pause }) if i == at(*after) => {
                tokio::time::sleep(*pause).await;
            }
            _ => {}
        }
        if socket.send(Message::Text(frame.into())).await.is_err() {
            return;
        }
    }
    close(socket).await;
}

/// Sends `{"header":{"code","message","sid","status":2}}` and closes.
async fn finish_with_error(mut socket: WebSocket, ctx: &Ctx, code: u32, message: &str) {
    let frame =
        json!({"header": {"code": code, "message": message, "sid": ctx.request_id(), "status": 2}});
    if socket
        .send(Message::Text(frame.to_string().into()))
        .await
        .is_ok()
    {
        close(socket).await;
    }
}

/// Sends a normal close frame and waits (at most 5 s) for the client's close.
async fn close(mut socket: WebSocket) {
    let frame = CloseFrame {
        code: 1000,
        reason: "".into(),
    };
    if socket.send(Message::Close(Some(frame))).await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(m)) = socket.recv().await {
            if matches!(m, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

/// Validates a request frame and builds the answer frames (JSON text).
fn plan(shared: &Shared, ctx: &Ctx, path: &str, frame: &[u8]) -> Result<Vec<String>, FrameError> {
    let schema = |m: &str| (code::BAD_SCHEMA, m.to_owned());
    let param = |m: String| (code::BAD_PARAM, m);
    let v: Value = serde_json::from_slice(frame)
        .map_err(|e| (code::BAD_FORMAT, format!("invalid message format: {e}")))?;
    if !v.is_object() {
        return Err((
            code::BAD_FORMAT,
            "invalid message format: not a JSON object".to_owned(),
        ));
    }
    let app_id = v
        .pointer("/header/app_id")
        .and_then(Value::as_str)
        .ok_or_else(|| schema("header.app_id is required"))?;
    if app_id != shared.auth.credential("app_id") {
        return Err((
            code::APPID_MISMATCH,
            "app_id cannot match api_key".to_owned(),
        ));
    }
    if let Some(uid) = v.pointer("/header/uid") {
        if uid.as_str().is_none_or(|u| u.chars().count() > 32) {
            return Err(param(
                "header.uid must be a string of at most 32 characters".to_owned(),
            ));
        }
    }
    let chat = v
        .pointer("/parameter/chat")
        .and_then(Value::as_object)
        .ok_or_else(|| schema("parameter.chat is required"))?;
    let domain = chat
        .get("domain")
        .and_then(Value::as_str)
        .ok_or_else(|| schema("parameter.chat.domain is required"))?;
    let ep = endpoint_for_path(path).ok_or_else(|| param(format!("unknown path {path}")))?;
    if !ep.domains.contains(&domain) {
        return Err(param(format!(
            "parameter.chat.domain {domain:?} does not match the path {path} (expected {})",
            ep.domains.join(" or ")
        )));
    }
    if !number_in(chat.get("temperature"), 0.0, 1.0, true) {
        return Err(param(
            "parameter.chat.temperature must be within (0, 1]".to_owned(),
        ));
    }
    if !int_in(chat.get("max_tokens"), 1, ep.max_tokens) {
        return Err(param(format!(
            "parameter.chat.max_tokens must be an integer within [1, {}]",
            ep.max_tokens
        )));
    }
    if !int_in(chat.get("top_k"), 1, 6) {
        return Err(param(
            "parameter.chat.top_k must be an integer within [1, 6]".to_owned(),
        ));
    }
    let text = v
        .pointer("/payload/message/text")
        .and_then(Value::as_array)
        .ok_or_else(|| schema("payload.message.text must be an array"))?;
    let mut messages = Vec::with_capacity(text.len());
    for m in text {
        let (Some(role), Some(content)) = (
            m.get("role").and_then(Value::as_str),
            m.get("content").and_then(Value::as_str),
        ) else {
            return Err(schema(
                "payload.message.text entries need string role and content",
            ));
        };
        if !["system", "user", "assistant"].contains(&role) {
            return Err(param(format!("invalid role {role:?}")));
        }
        messages.push(Msg {
            role: role.to_owned(),
            text: content.to_owned(),
        });
    }
    if messages.is_empty() {
        return Err(param("payload.message.text is empty".to_owned()));
    }
    if messages.iter().skip(1).any(|m| m.role == "system") {
        return Err(param("a system message must come first".to_owned()));
    }
    let tools = match v.pointer("/payload/functions/text") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(fs)) => fs
            .iter()
            .map(|f| {
                Some(answer::ToolDef {
                    name: f.get("name")?.as_str()?.to_owned(),
                    parameters: f.get("parameters").cloned().unwrap_or(Value::Null),
                })
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| schema("payload.functions.text entries need a string name"))?,
        Some(_) => return Err(schema("payload.functions.text must be an array")),
    };
    let prompt = answer::prompt_tokens(&messages);
    if prompt > ep.context {
        return Err((
            code::TOO_MANY_TOKENS,
            format!(
                "the input has {prompt} tokens, more than the {} the model allows",
                ep.context
            ),
        ));
    }
    let question = messages
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .map_or(0, |m| answer::prompt_tokens(std::slice::from_ref(m)));
    let input = ChatInput {
        tools,
        tool_choice: ToolChoice::Auto,
        parallel_tool_calls: false,
        max_tokens: chat.get("max_tokens").and_then(Value::as_u64),
        stop: Vec::new(),
        messages,
    };
    let ans = answer::answer(&input).map_err(|n| param(format!("unknown function {n}")))?;
    let completion = ans.completion_tokens();
    let usage = json!({"text": {"question_tokens": question, "prompt_tokens": prompt,
                                "completion_tokens": completion, "total_tokens": prompt + completion}});
    let sid = ctx.request_id();
    let frame = |status: u8, seq: usize, text: Value, last: bool| {
        let mut f = json!({"header": {"code": 0, "message": "Success", "sid": sid, "status": status},
                           "payload": {"choices": {"status": status, "seq": seq, "text": [text]}}});
        if last {
            f["payload"]["usage"] = usage.clone();
        }
        f.to_string()
    };
    Ok(match ans {
        Answer::Tools { calls } => calls
            .first()
            .map(|c| {
                frame(
                    2,
                    0,
                    json!({"content": "", "content_type": "text", "role": "assistant", "index": 0,
                           "function_call": {"name": c.name, "arguments": c.arguments}}),
                    true,
                )
            })
            .into_iter()
            .collect(),
        Answer::Text { pieces, .. } => {
            let pieces = if pieces.is_empty() {
                vec![String::new()]
            } else {
                pieces
            };
            let last = pieces.len() - 1;
            pieces
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let status = match i {
                        _ if i == last => 2,
                        0 => 0,
                        _ => 1,
                    };
                    frame(
                        status,
                        i,
                        json!({"content": p, "role": "assistant", "index": 0}),
                        i == last,
                    )
                })
                .collect()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_domain_has_one_path() {
        for (domain, path) in [
            ("lite", "/v1.1/chat"),
            ("general", "/v1.1/chat"),
            ("generalv2", "/v2.1/chat"),
            ("generalv3", "/v3.1/chat"),
            ("pro-128k", "/chat/pro-128k"),
            ("generalv3.5", "/v3.5/chat"),
            ("max-32k", "/chat/max-32k"),
            ("4.0Ultra", "/v4.0/chat"),
        ] {
            assert_eq!(endpoint_for_domain(domain).map(|e| e.path), Some(path));
        }
        let ctx = Ctx {
            dialect: &Ws,
            seq: 1,
            created: 0,
            now_ms: 0,
        };
        assert_eq!(Ws.status_error(&ctx, 429).status, 429);
    }
}
