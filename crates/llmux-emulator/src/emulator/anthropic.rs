//! Anthropic Messages API (`/v1/messages`, `/v1/messages/count_tokens`, `/v1/models`) as the official `anthropic`
//! Python SDK sends and reads it: `x-api-key` auth, a required `anthropic-version`, content blocks (text, image,
//! document, tool use and results, thinking), named SSE events, and the `{"type":"error","error":{…}}` envelope.

use std::net::SocketAddr;

use base64::Engine as _;
use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::{Base, Dialect, EnvValue, ProviderEnv, VendorEmulator};
use crate::answer::{self, Answer, ChatInput, Finish, Msg, ToolChoice, ToolDef};
use crate::auth::encoding::{constant_time_eq, sha256};
use crate::reply::{Ctx, Incoming, Reply};
use crate::{Shared, Vendor};

/// The Anthropic emulator.
#[derive(Debug)]
struct Anthropic;

impl Vendor {
    /// Anthropic, base URL `http://127.0.0.1:P` (no `/v1`, as the SDK's `base_url` and `ANTHROPIC_BASE_URL`
    /// expect); provider id `anthropic` (`ANTHROPIC_API_KEY`, `ANTHROPIC_BASE_URL`). Default key
    /// `sk-ant-emulator`.
    ///
    /// * **Endpoints:** `POST /v1/messages`, `POST /v1/messages/count_tokens` (→ `{"input_tokens"}`),
    ///   `GET /v1/models` (`{"data":[{"type":"model","id","display_name","created_at","lifecycle"}],
    ///   "has_more":false,"first_id","last_id"}`), `GET /v1/models/{id}`; any other path: 404 `not_found_error`.
    /// * **Auth and headers:** the key, in `x-api-key` or `Authorization: Bearer` (which is how the official SDK
    ///   2.x sends an API key), must be a configured key (missing: 401 `authentication_error` "x-api-key header is
    ///   required"; wrong: "invalid x-api-key"); then `anthropic-version` must be present and a `YYYY-MM-DD`
    ///   date (else 400 `invalid_request_error`; the SDK sends its own pinned version). Request ids `req_emu<seq as 12 hex>` in the
    ///   `request-id` header and in error bodies' `request_id`; message ids `msg_emu<seq as 6 digits>`; tool-use
    ///   ids `toolu_emu<seq as 6 digits>_<i>`.
    /// * **Request:** `model`, `max_tokens` (a positive integer) and `messages` are required; roles `user` and
    ///   `assistant`; `content` a non-empty string or blocks `text` (non-empty), `image` (`source` base64 with
    ///   an image media type, or `url`), `document`, `tool_use` and `thinking`/`redacted_thinking` (assistant
    ///   only; a thinking block's `signature` must be one the emulator issued for its text), `tool_result`
    ///   (user only; each must answer a `tool_use` of the previous assistant message, and every `tool_use` must be
    ///   answered in the next message); `system` a string or text blocks; `tools` (custom tools: `name`
    ///   `^[a-zA-Z0-9_-]{1,64}$`, unique, `input_schema` with `type: "object"`; server tools with another `type`
    ///   are accepted and never called); `tool_choice` `auto`/`any`/`tool` (a listed `name`)/`none`, with
    ///   `disable_parallel_tool_use`, only alongside `tools` unless `none`; `stop_sequences`; `temperature` and
    ///   `top_p` in [0, 1]; `top_k` ≥ 0; `thinking` `{type: enabled, budget_tokens ≥ 1024 and < max_tokens}`,
    ///   `adaptive` or `disabled` (with thinking on, `temperature` other than 1, `top_k`, `top_p` below 0.95, a
    ///   forced tool choice, and a last assistant message with `tool_use` blocks that does not start with a
    ///   `thinking` block are refused, as the API documents); `metadata` an object; `cache_control`
    ///   `{type: "ephemeral", ttl?: "5m"|"1h"}` on at most 4 blocks (a top-level one marks the end of the last
    ///   message and counts among them). Violations: 400 `invalid_request_error`
    ///   whose message starts with the field's path (`messages.1.content.0: …`).
    /// * **Answer:** the shared rules with Anthropic's message shapes: `system` is a system message, a
    ///   `tool_result` block is a tool result, text blocks give a message's text. `any` behaves as `auto`;
    ///   parallel tool use is on unless `disable_parallel_tool_use`. `{"id","type":"message","role":"assistant",
    ///   "model","content":[…],"stop_reason","stop_sequence","usage"}`; content: a `thinking` block first when
    ///   thinking is on (`"Considering: " + the last user message's text`, empty with `display: "omitted"`, and
    ///   a `signature`), then a `text` block (left out when empty) or `tool_use` blocks with `input` objects.
    ///   `stop_reason` `end_turn`, `max_tokens` (the reply was cut to `max_tokens` pieces), `stop_sequence`
    ///   (with `stop_sequence` set to the matched string) or `tool_use`.
    /// * **Usage:** `input_tokens` + `cache_creation_input_tokens` + `cache_read_input_tokens` = the shared
    ///   prompt count; `output_tokens` = thinking pieces + completion tokens. With `cache_control` on any block,
    ///   the cached prefix is the system prompt and messages up to the one holding the last breakpoint (a
    ///   breakpoint on a tool covers the first of them); half of its tokens (rounded down) are read from the
    ///   cache and the rest written to it (`cache_creation` split by the last breakpoint's `ttl`), as if an
    ///   earlier request had cached its first half. Without `cache_control` both are 0. `service_tier`
    ///   `standard`. `count_tokens` answers the whole prompt count.
    /// * **Stream** (`stream: true`, `text/event-stream`, `event:` + `data:` lines): `message_start` (usage with
    ///   `output_tokens` at most 1), then per block `content_block_start` (a `ping` follows the first one, or
    ///   `message_start` when there is no block), one `content_block_delta` per piece (`text_delta`,
    ///   `thinking_delta` then one `signature_delta`, or `input_json_delta` with 8-character fragments of the
    ///   input), `content_block_stop`; then `message_delta` (`stop_reason`, `stop_sequence`, cumulative usage)
    ///   and `message_stop`.
    /// * **Errors** `{"type":"error","error":{"type","message"},"request_id"}`: `Status` faults without a body
    ///   use 400 `invalid_request_error`, 401 `authentication_error`, 403 `permission_error`, 404
    ///   `not_found_error`, 413 `request_too_large`, 429 `rate_limit_error` (with `retry-after: 1` unless the
    ///   fault sets one), 529 and 503 `overloaded_error`, other 5xx `api_error`. `QuotaExhausted` → 400
    ///   "Your credit balance is too low …"; `ErrorEvent` → 400 "Output blocked by content filtering policy",
    ///   mid-stream `event: error` with an `overloaded_error`; `ErrorBody200` → 200 with an `api_error` body.
    #[expect(
        non_upper_case_globals,
        reason = "vendor constants keep the names of the enum variants they replaced, so callers did not change"
    )]
    pub const Anthropic: Vendor = Vendor(&Anthropic);
}

impl VendorEmulator for Anthropic {
    fn id(&self) -> &'static str {
        "anthropic"
    }

    fn default_key(&self) -> &'static str {
        "sk-ant-emulator"
    }

    fn base_url(&self, addr: SocketAddr) -> String {
        format!("http://{addr}")
    }

    fn providers(&self) -> &'static [ProviderEnv] {
        &[ProviderEnv {
            id: "anthropic",
            base: Base::Vendor,
            vars: &[
                ("ANTHROPIC_BASE_URL", EnvValue::BaseUrl),
                ("ANTHROPIC_API_KEY", EnvValue::Key),
            ],
        }]
    }

    fn dialect(&self, _path: &str) -> &'static dyn Dialect {
        &MESSAGES
    }
}

/// Models `GET /v1/models` lists: id, display name, release date (the epoch when unknown, as the API allows); any
/// model name is answered.
const MODELS: &[(&str, &str, &str)] = &[
    ("claude-opus-4-7", "Claude Opus 4.7", "1970-01-01T00:00:00Z"),
    ("claude-sonnet-4-6", "Claude Sonnet 4.6", "1970-01-01T00:00:00Z"),
    (
        "claude-haiku-4-5-20251001",
        "Claude Haiku 4.5",
        "2025-10-01T00:00:00Z",
    ),
];

/// Block types a message may carry.
const BLOCK_TYPES: &[&str] = &[
    "text",
    "image",
    "document",
    "tool_use",
    "tool_result",
    "thinking",
    "redacted_thinking",
];

/// Image media types the API accepts.
const IMAGE_TYPES: &[&str] = &["image/jpeg", "image/png", "image/gif", "image/webp"];

/// Most blocks that may carry `cache_control`.
const MAX_BREAKPOINTS: usize = 4;

/// The Messages API dialect, under `prefix` (empty for Anthropic itself; another vendor's Anthropic-compatible
/// endpoint can serve it under its own path).
#[derive(Debug)]
pub(crate) struct Messages {
    /// The path before `/v1/...`.
    pub prefix: &'static str,
}

/// Anthropic's own Messages API.
const MESSAGES: Messages = Messages { prefix: "" };

impl Dialect for Messages {
    fn request_id(&self, seq: u64) -> String {
        super::emu_request_id(seq)
    }

    fn request_id_header(&self) -> &'static str {
        "request-id"
    }

    /// The key comes in `x-api-key` or, as the official SDK sends an API key, `Authorization: Bearer`.
    fn check_auth(&self, ctx: &Ctx, req: &Incoming<'_>, shared: &Shared) -> Option<Reply> {
        let key = req
            .header("x-api-key")
            .map(|k| k.trim().to_owned())
            .or_else(|| super::bearer(req));
        match key {
            Some(k) if shared.api_keys.contains(&k) => None,
            Some(_) => Some(error(ctx, 401, "authentication_error", "invalid x-api-key")),
            None => Some(error(
                ctx,
                401,
                "authentication_error",
                "x-api-key header is required",
            )),
        }
    }

    fn handle(&self, ctx: &Ctx, req: &Incoming<'_>, _shared: &Shared) -> Reply {
        match req.header("anthropic-version") {
            None => {
                return invalid(ctx, "anthropic-version: header is required");
            }
            Some(v) if !is_date(v) => {
                return invalid(
                    ctx,
                    &format!("anthropic-version: {v:?} is not a valid version"),
                );
            }
            Some(_) => {}
        }
        let path = req.path.strip_prefix(self.prefix).unwrap_or_default();
        match (req.method, path) {
            ("POST", "/v1/messages") => messages(ctx, req.body),
            ("POST", "/v1/messages/count_tokens") => count_tokens(ctx, req.body),
            ("GET", "/v1/models") => models(ctx),
            ("GET", p) if p.starts_with("/v1/models/") => {
                model(ctx, p.strip_prefix("/v1/models/").unwrap_or_default())
            }
            _ => error(ctx, 404, "not_found_error", "Not found"),
        }
    }

    fn status_error(&self, ctx: &Ctx, status: u16) -> Reply {
        let (kind, message) = match status {
            400 => ("invalid_request_error", "Invalid request."),
            401 => ("authentication_error", "invalid x-api-key"),
            403 => (
                "permission_error",
                "Your API key does not have permission to use the specified resource.",
            ),
            404 => ("not_found_error", "The requested resource was not found."),
            413 => ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
            429 => (
                "rate_limit_error",
                "Number of request tokens has exceeded your per-minute rate limit.",
            ),
            503 | 529 => ("overloaded_error", "Overloaded"),
            s if s >= 500 => ("api_error", "Internal server error"),
            _ => ("invalid_request_error", "Invalid request."),
        };
        let reply = error(ctx, status, kind, message);
        if status == 429 {
            reply.with_header("retry-after", "1".to_owned())
        } else {
            reply
        }
    }

    fn quota_error(&self, ctx: &Ctx) -> Reply {
        invalid(
            ctx,
            "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits.",
        )
    }

    fn error_body_200(&self, ctx: &Ctx) -> Reply {
        error(ctx, 200, "api_error", "Internal server error")
    }

    fn content_filter_error(&self, ctx: &Ctx) -> Reply {
        invalid(ctx, "Output blocked by content filtering policy")
    }

    fn stream_error_frame(&self, ctx: &Ctx, _sent: usize) -> Bytes {
        event("error", &error_body(ctx, "overloaded_error", "Overloaded"))
    }

    fn malformed_frame(&self, _ctx: &Ctx, _sent: usize) -> Bytes {
        Bytes::from_static(
            b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":\n\n",
        )
    }
}

/// One SSE event: `event: <name>\ndata: <json>\n\n`.
fn event(name: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

fn error_body(ctx: &Ctx, kind: &str, message: &str) -> Value {
    json!({"type": "error", "error": {"type": kind, "message": message},
           "request_id": ctx.request_id()})
}

/// The error envelope with this HTTP status.
fn error(ctx: &Ctx, status: u16, kind: &str, message: &str) -> Reply {
    Reply::json(ctx, status, &error_body(ctx, kind, message))
}

/// 400 `invalid_request_error`.
fn invalid(ctx: &Ctx, message: &str) -> Reply {
    error(ctx, 400, "invalid_request_error", message)
}

/// `YYYY-MM-DD`.
fn is_date(v: &str) -> bool {
    let b = v.as_bytes();
    b.len() == 10
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            _ => c.is_ascii_digit(),
        })
}

/// A thinking block's signature: base64 of SHA-256 over a fixed label and the thinking text.
fn signature(thinking: &str) -> String {
    let mut input = b"llmux-emulator thinking signature\n".to_vec();
    input.extend_from_slice(thinking.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha256(&input))
}

/// Whether thinking is on and its text shown.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Thinking {
    Off,
    On { omitted: bool },
}

/// A validated request reduced to what the answer needs.
#[derive(Debug)]
struct Parsed {
    model: String,
    max_tokens: Option<u64>,
    /// System prompt (if any) and messages, for the shared answer rules.
    msgs: Vec<Msg>,
    /// Index into `msgs` of the last message the cached prefix covers, and whether its TTL is 1 h.
    cache: Option<(usize, bool)>,
    tools: Vec<ToolDef>,
    tool_choice: ToolChoice,
    parallel: bool,
    stop: Vec<String>,
    thinking: Thinking,
    stream: bool,
}

impl Parsed {
    /// (input, cache creation, cache read) tokens.
    fn input_usage(&self) -> (u64, u64, u64) {
        let total = answer::prompt_tokens(&self.msgs);
        let Some((last, _)) = self.cache else {
            return (total, 0, 0);
        };
        let end = (last + 1).min(self.msgs.len());
        let prefix = answer::prompt_tokens(&self.msgs[..end]);
        let read = prefix / 2;
        (total - prefix, prefix - read, read)
    }
}

/// A `cache_control` value: `Ok(None)` when absent, `Ok(Some(one_hour))` when valid. `at` is the path of the
/// object holding it ("" for the request itself).
fn cache_control(block: &Map<String, Value>, at: &str) -> Result<Option<bool>, String> {
    let Some(cc) = block.get("cache_control").filter(|cc| !cc.is_null()) else {
        return Ok(None);
    };
    let path = if at.is_empty() {
        "cache_control".to_owned()
    } else {
        format!("{at}.cache_control")
    };
    if cc.get("type").and_then(Value::as_str) != Some("ephemeral") {
        return Err(format!("{path}.type: Input should be 'ephemeral'"));
    }
    match cc.get("ttl") {
        None | Some(Value::Null) => Ok(Some(false)),
        Some(Value::String(t)) if t == "5m" => Ok(Some(false)),
        Some(Value::String(t)) if t == "1h" => Ok(Some(true)),
        Some(_) => Err(format!("{path}.ttl: Input should be '5m' or '1h'")),
    }
}

/// Collects cache breakpoints: how many, and the TTL of the last one seen.
#[derive(Default)]
struct Breakpoints {
    count: usize,
    one_hour: bool,
}

impl Breakpoints {
    fn see(&mut self, block: &Map<String, Value>, at: &str) -> Result<bool, String> {
        match cache_control(block, at)? {
            Some(one_hour) => {
                self.count += 1;
                self.one_hour = one_hour;
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

fn number_in(req: &Map<String, Value>, name: &str, lo: f64, hi: f64) -> Result<(), String> {
    match req.get(name) {
        None | Some(Value::Null) => Ok(()),
        Some(v) => match v.as_f64() {
            Some(x) if (lo..=hi).contains(&x) => Ok(()),
            Some(_) => Err(format!("{name}: Input should be between {lo} and {hi}")),
            None => Err(format!("{name}: Input should be a valid number")),
        },
    }
}

fn valid_tool_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The text of a `tool_result`'s `content`: a string, or its text blocks concatenated.
fn tool_result_text(content: Option<&Value>, at: &str) -> Result<String, String> {
    match content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for (k, p) in parts.iter().enumerate() {
                match p.get("type").and_then(Value::as_str) {
                    Some("text") => match p.get("text").and_then(Value::as_str) {
                        Some(t) => text.push_str(t),
                        None => return Err(format!("{at}.content.{k}.text: Field required")),
                    },
                    Some("image" | "document" | "search_result") => {}
                    _ => {
                        return Err(format!(
                            "{at}.content.{k}: Input tag found using 'type' does not match any of the expected tags: 'text', 'image', 'document', 'search_result'"
                        ))
                    }
                }
            }
            Ok(text)
        }
        Some(_) => Err(format!("{at}.content: Input should be a valid string or list")),
    }
}

fn check_image(block: &Map<String, Value>, at: &str) -> Result<(), String> {
    let source = block
        .get("source")
        .and_then(Value::as_object)
        .ok_or_else(|| format!("{at}.source: Field required"))?;
    match source.get("type").and_then(Value::as_str) {
        Some("base64") => {
            let media = source.get("media_type").and_then(Value::as_str);
            if !media.is_some_and(|m| IMAGE_TYPES.contains(&m)) {
                return Err(format!(
                    "{at}.source.base64.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'"
                ));
            }
            let data = source.get("data").and_then(Value::as_str).unwrap_or_default();
            if base64::engine::general_purpose::STANDARD.decode(data).is_err() || data.is_empty() {
                return Err(format!("{at}.source.base64.data: The image data is not valid base64"));
            }
            Ok(())
        }
        Some("url") if source.get("url").is_some_and(Value::is_string) => Ok(()),
        Some("file") if source.get("file_id").is_some_and(Value::is_string) => Ok(()),
        _ => Err(format!(
            "{at}.source: Input tag found using 'type' does not match any of the expected tags: 'base64', 'url', 'file'"
        )),
    }
}

/// Validates one message and appends its [`Msg`]s; returns the ids of its `tool_use` blocks and whether it
/// holds a cache breakpoint.
fn read_message(
    i: usize,
    m: &Value,
    previous_tool_uses: &[String],
    breakpoints: &mut Breakpoints,
    msgs: &mut Vec<Msg>,
) -> Result<(Vec<String>, bool), String> {
    let at = format!("messages.{i}");
    let m = m
        .as_object()
        .ok_or_else(|| format!("{at}: Input should be a valid dictionary"))?;
    let role = match m.get("role").and_then(Value::as_str) {
        Some(r @ ("user" | "assistant")) => r,
        Some(_) => return Err(format!("{at}.role: Input should be 'user' or 'assistant'")),
        None => return Err(format!("{at}.role: Field required")),
    };
    let blocks = match m.get("content") {
        None => return Err(format!("{at}.content: Field required")),
        Some(Value::String(s)) if s.is_empty() => {
            return Err(format!(
                "{at}: all messages must have non-empty content except for the optional final assistant message"
            ))
        }
        Some(Value::String(s)) => {
            msgs.push(Msg {
                role: role.to_owned(),
                text: s.clone(),
            });
            return Ok((Vec::new(), false));
        }
        Some(Value::Array(b)) => b,
        Some(_) => return Err(format!("{at}.content: Input should be a valid string or list")),
    };
    let mut text = String::new();
    let mut has_content_block = false;
    let mut tool_uses = Vec::new();
    let mut results = Vec::new();
    let mut cached = false;
    for (j, b) in blocks.iter().enumerate() {
        let bat = format!("{at}.content.{j}");
        let b = b
            .as_object()
            .ok_or_else(|| format!("{bat}: Input should be a valid dictionary"))?;
        let kind = b.get("type").and_then(Value::as_str).unwrap_or_default();
        if !BLOCK_TYPES.contains(&kind) {
            return Err(format!(
                "{bat}: Input tag '{kind}' found using 'type' does not match any of the expected tags: {}",
                BLOCK_TYPES.iter().map(|t| format!("'{t}'")).collect::<Vec<_>>().join(", ")
            ));
        }
        cached |= breakpoints.see(b, &bat)?;
        let assistant_only = matches!(kind, "tool_use" | "thinking" | "redacted_thinking");
        if assistant_only && role != "assistant" {
            return Err(format!("{bat}: `{kind}` blocks can only be in `assistant` messages"));
        }
        if kind == "tool_result" && role != "user" {
            return Err(format!("{bat}: `tool_result` blocks can only be in `user` messages"));
        }
        match kind {
            "text" => match b.get("text").and_then(Value::as_str) {
                Some("") => return Err(format!("{bat}: text content blocks must be non-empty")),
                Some(t) => {
                    text.push_str(t);
                    has_content_block = true;
                }
                None => return Err(format!("{bat}.text: Field required")),
            },
            "image" => {
                check_image(b, &bat)?;
                has_content_block = true;
            }
            "document" => {
                if !b.get("source").is_some_and(Value::is_object) {
                    return Err(format!("{bat}.source: Field required"));
                }
                has_content_block = true;
            }
            "tool_use" => {
                let id = b.get("id").and_then(Value::as_str).unwrap_or_default();
                if id.is_empty() {
                    return Err(format!("{bat}.id: Field required"));
                }
                if !b.get("name").and_then(Value::as_str).is_some_and(valid_tool_name) {
                    return Err(format!("{bat}.name: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'"));
                }
                if !b.get("input").is_some_and(Value::is_object) {
                    return Err(format!("{bat}.input: Input should be a valid dictionary"));
                }
                tool_uses.push(id.to_owned());
            }
            "tool_result" => {
                let id = b.get("tool_use_id").and_then(Value::as_str).unwrap_or_default();
                if !previous_tool_uses.iter().any(|u| u == id) {
                    return Err(format!(
                        "{bat}: unexpected `tool_use_id` found in `tool_result` blocks: {id}. Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
                    ));
                }
                results.push((id.to_owned(), tool_result_text(b.get("content"), &bat)?));
            }
            "thinking" => {
                let thinking = b.get("thinking").and_then(Value::as_str);
                let sig = b.get("signature").and_then(Value::as_str);
                match (thinking, sig) {
                    (Some(t), Some(s)) if constant_time_eq(s.as_bytes(), signature(t).as_bytes()) => {}
                    (Some(_), Some(_)) => {
                        return Err(format!("{bat}: Invalid `signature` in `thinking` block"))
                    }
                    (None, _) => return Err(format!("{bat}.thinking: Field required")),
                    (_, None) => return Err(format!("{bat}.signature: Field required")),
                }
            }
            _ => {
                if b.get("data").and_then(Value::as_str).is_none_or(str::is_empty) {
                    return Err(format!("{bat}.data: Field required"));
                }
            }
        }
    }
    if role == "user" {
        let unanswered: Vec<&str> = previous_tool_uses
            .iter()
            .filter(|u| !results.iter().any(|(id, _)| id == *u))
            .map(String::as_str)
            .collect();
        if !unanswered.is_empty() {
            return Err(format!(
                "{at}: `tool_use` ids were found without `tool_result` blocks immediately after: {}. Each `tool_use` block must have a corresponding `tool_result` block in the next message.",
                unanswered.join(", ")
            ));
        }
    }
    for (_, result) in results {
        msgs.push(Msg {
            role: "tool".to_owned(),
            text: result,
        });
    }
    if has_content_block || role == "assistant" {
        msgs.push(Msg {
            role: role.to_owned(),
            text,
        });
    }
    Ok((tool_uses, cached))
}

/// Validates a Messages (or, with `count`, a count_tokens) request.
fn parse(body: &[u8], count: bool) -> Result<Parsed, String> {
    let req = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => o,
        Ok(_) => return Err("The request body is not a JSON object.".to_owned()),
        Err(e) => return Err(format!("The request body is not valid JSON: {e}")),
    };
    let model = match req.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        Some(Value::String(_)) => return Err("model: String should have at least 1 character".to_owned()),
        Some(_) => return Err("model: Input should be a valid string".to_owned()),
        None => return Err("model: Field required".to_owned()),
    };
    let max_tokens = match req.get("max_tokens") {
        None if count => None,
        None => return Err("max_tokens: Field required".to_owned()),
        Some(v) => match v.as_u64() {
            Some(n) if n >= 1 => Some(n),
            _ => return Err("max_tokens: Input should be an integer greater than or equal to 1".to_owned()),
        },
    };
    let mut breakpoints = Breakpoints::default();
    let mut msgs = Vec::new();
    let mut cache: Option<usize> = None;
    match req.get("system") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => msgs.push(Msg {
            role: "system".to_owned(),
            text: s.clone(),
        }),
        Some(Value::Array(blocks)) => {
            let mut text = String::new();
            for (j, b) in blocks.iter().enumerate() {
                let at = format!("system.{j}");
                let b = b
                    .as_object()
                    .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
                    .ok_or_else(|| format!("{at}: Input should be a text block"))?;
                match b.get("text").and_then(Value::as_str) {
                    Some("") => return Err(format!("{at}: text content blocks must be non-empty")),
                    Some(t) => text.push_str(t),
                    None => return Err(format!("{at}.text: Field required")),
                }
                if breakpoints.see(b, &at)? {
                    cache = Some(0);
                }
            }
            msgs.push(Msg {
                role: "system".to_owned(),
                text,
            });
        }
        Some(_) => return Err("system: Input should be a valid string or a list of text blocks".to_owned()),
    }
    let mut tools = Vec::new();
    match req.get("tools") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => {
            for (i, t) in list.iter().enumerate() {
                let at = format!("tools.{i}");
                let t = t
                    .as_object()
                    .ok_or_else(|| format!("{at}: Input should be a valid dictionary"))?;
                if breakpoints.see(t, &at)? {
                    cache = Some(cache.unwrap_or(0));
                }
                if t.get("type").and_then(Value::as_str).is_some_and(|k| k != "custom") {
                    continue;
                }
                let name = t.get("name").and_then(Value::as_str).unwrap_or_default();
                if !valid_tool_name(name) {
                    return Err(format!("{at}.name: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'"));
                }
                if tools.iter().any(|d: &ToolDef| d.name == name) {
                    return Err("tools: Tool names must be unique.".to_owned());
                }
                let schema = t
                    .get("input_schema")
                    .ok_or_else(|| format!("{at}.input_schema: Field required"))?;
                if schema.get("type").and_then(Value::as_str) != Some("object") {
                    return Err(format!("{at}.input_schema.type: Input should be 'object'"));
                }
                tools.push(ToolDef {
                    name: name.to_owned(),
                    parameters: schema.clone(),
                });
            }
        }
        Some(_) => return Err("tools: Input should be a valid list".to_owned()),
    }
    let messages = match req.get("messages") {
        None => return Err("messages: Field required".to_owned()),
        Some(Value::Array(a)) if a.is_empty() => {
            return Err("messages: at least one message is required".to_owned())
        }
        Some(Value::Array(a)) => a,
        Some(_) => return Err("messages: Input should be a valid list".to_owned()),
    };
    let mut previous: Vec<String> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let (tool_uses, cached) = read_message(i, m, &previous, &mut breakpoints, &mut msgs)?;
        if cached {
            cache = Some(msgs.len().saturating_sub(1));
        }
        previous = tool_uses;
    }
    // A top-level `cache_control` marks the last cacheable block, the end of the last message.
    if breakpoints.see(&req, "")? {
        cache = Some(msgs.len().saturating_sub(1));
    }
    if breakpoints.count > MAX_BREAKPOINTS {
        return Err(format!(
            "A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. Found {}.",
            breakpoints.count
        ));
    }
    let (tool_choice, parallel, forced) = match req.get("tool_choice") {
        None | Some(Value::Null) => (ToolChoice::Auto, true, false),
        Some(Value::Object(c)) => {
            let parallel = c.get("disable_parallel_tool_use").and_then(Value::as_bool) != Some(true);
            let kind = c.get("type").and_then(Value::as_str).unwrap_or_default();
            if kind != "none" && tools.is_empty() {
                return Err("tool_choice may only be specified while providing tools.".to_owned());
            }
            match kind {
                "auto" => (ToolChoice::Auto, parallel, false),
                "any" => (ToolChoice::Auto, parallel, true),
                "none" => (ToolChoice::None, parallel, false),
                "tool" => {
                    let name = c.get("name").and_then(Value::as_str).unwrap_or_default();
                    if !tools.iter().any(|t| t.name == name) {
                        return Err(format!("tool_choice.tool.name: Tool '{name}' not found in tools"));
                    }
                    (ToolChoice::Named(name.to_owned()), parallel, true)
                }
                _ => {
                    return Err(
                        "tool_choice: Input tag found using 'type' does not match any of the expected tags: 'auto', 'any', 'tool', 'none'"
                            .to_owned(),
                    )
                }
            }
        }
        Some(_) => return Err("tool_choice: Input should be a valid dictionary".to_owned()),
    };
    let stop = match req.get("stop_sequences") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => answer::read_stop(req.get("stop_sequences")),
        Some(_) => return Err("stop_sequences: Input should be a valid list of strings".to_owned()),
    };
    number_in(&req, "temperature", 0.0, 1.0)?;
    number_in(&req, "top_p", 0.0, 1.0)?;
    if req.get("top_k").is_some_and(|k| !k.is_null() && k.as_u64().is_none()) {
        return Err("top_k: Input should be an integer greater than or equal to 0".to_owned());
    }
    if req.get("metadata").is_some_and(|m| !m.is_null() && !m.is_object()) {
        return Err("metadata: Input should be a valid dictionary".to_owned());
    }
    let thinking = match req.get("thinking") {
        None | Some(Value::Null) => Thinking::Off,
        Some(Value::Object(t)) => {
            let omitted = t.get("display").and_then(Value::as_str) == Some("omitted");
            match t.get("type").and_then(Value::as_str) {
                Some("disabled") => Thinking::Off,
                Some("adaptive" | "between_tools") => Thinking::On { omitted },
                Some("enabled") => {
                    let budget = t.get("budget_tokens").and_then(Value::as_u64);
                    match budget {
                        Some(b) if b >= 1024 => {
                            if max_tokens.is_some_and(|m| b >= m) {
                                return Err(
                                    "`max_tokens` must be greater than `thinking.budget_tokens`".to_owned(),
                                );
                            }
                        }
                        Some(_) => {
                            return Err(
                                "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
                                    .to_owned(),
                            )
                        }
                        None => return Err("thinking.enabled.budget_tokens: Field required".to_owned()),
                    }
                    Thinking::On { omitted }
                }
                _ => {
                    return Err(
                        "thinking: Input tag found using 'type' does not match any of the expected tags: 'enabled', 'disabled', 'adaptive'"
                            .to_owned(),
                    )
                }
            }
        }
        Some(_) => return Err("thinking: Input should be a valid dictionary".to_owned()),
    };
    if matches!(thinking, Thinking::On { .. }) {
        if req.get("temperature").and_then(Value::as_f64).is_some_and(|t| t != 1.0) {
            return Err("`temperature` may only be set to 1 when thinking is enabled.".to_owned());
        }
        if req.get("top_k").is_some_and(|k| !k.is_null()) {
            return Err("`top_k` must be unset when thinking is enabled.".to_owned());
        }
        if req.get("top_p").and_then(Value::as_f64).is_some_and(|p| p < 0.95) {
            return Err("`top_p` must be greater than or equal to 0.95 when thinking is enabled.".to_owned());
        }
        if forced {
            return Err("Thinking may not be enabled when tool_choice forces tool use.".to_owned());
        }
        final_tool_turn_starts_with_thinking(messages)?;
    }
    let stream = match req.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err("stream: Input should be a valid boolean".to_owned()),
    };
    Ok(Parsed {
        model,
        max_tokens,
        cache: cache.map(|c| (c, breakpoints.one_hour)),
        msgs,
        tools,
        tool_choice,
        parallel,
        stop,
        thinking,
        stream,
    })
}

/// With thinking on, the assistant message whose `tool_use` blocks the conversation's last
/// `tool_result`s answer must start with a `thinking` (or `redacted_thinking`) block, as the API
/// requires (the reasoning of a tool-calling turn is returned intact).
fn final_tool_turn_starts_with_thinking(messages: &[Value]) -> Result<(), String> {
    let Some(i) = messages.iter().rposition(|m| m.get("role").and_then(Value::as_str) == Some("assistant")) else {
        return Ok(());
    };
    let blocks = messages[i].get("content").and_then(Value::as_array);
    let has_tool_use = blocks.is_some_and(|b| b.iter().any(|b| block_type(b) == Some("tool_use")));
    if !has_tool_use {
        return Ok(());
    }
    let first = blocks.and_then(|b| b.first()).and_then(block_type);
    if matches!(first, Some("thinking" | "redacted_thinking")) {
        return Ok(());
    }
    Err(format!(
        "messages.{i}.content.0.type: Expected `thinking` or `redacted_thinking`, but found `{}`. When `thinking` is enabled, a final `assistant` message must start with a thinking block (preceeding the lastmost set of `tool_use` and `tool_result` blocks). We recommend you include thinking blocks from previous turns. To avoid this requirement, disable `thinking`.",
        first.unwrap_or("text")
    ))
}

fn block_type(b: &Value) -> Option<&str> {
    b.get("type").and_then(Value::as_str)
}

/// One content block of the answer.
#[derive(Debug)]
enum Block {
    Thinking { pieces: Vec<String>, signature: String },
    Text { pieces: Vec<String> },
    ToolUse { id: String, name: String, input: String, fragments: Vec<String> },
}

impl Block {
    fn whole(&self) -> Value {
        match self {
            Block::Thinking { pieces, signature } => {
                json!({"type": "thinking", "thinking": pieces.concat(), "signature": signature})
            }
            Block::Text { pieces } => json!({"type": "text", "text": pieces.concat()}),
            Block::ToolUse { id, name, input, .. } => {
                let input: Value = serde_json::from_str(input).unwrap_or_else(|_| json!({}));
                json!({"type": "tool_use", "id": id, "name": name, "input": input})
            }
        }
    }

    fn start(&self) -> Value {
        match self {
            Block::Thinking { .. } => json!({"type": "thinking", "thinking": "", "signature": ""}),
            Block::Text { .. } => json!({"type": "text", "text": ""}),
            Block::ToolUse { id, name, .. } => {
                json!({"type": "tool_use", "id": id, "name": name, "input": {}})
            }
        }
    }

    fn deltas(&self) -> Vec<Value> {
        match self {
            Block::Thinking { pieces, signature } => pieces
                .iter()
                .map(|p| json!({"type": "thinking_delta", "thinking": p}))
                .chain(std::iter::once(
                    json!({"type": "signature_delta", "signature": signature}),
                ))
                .collect(),
            Block::Text { pieces } => pieces
                .iter()
                .map(|p| json!({"type": "text_delta", "text": p}))
                .collect(),
            Block::ToolUse { fragments, .. } => fragments
                .iter()
                .map(|f| json!({"type": "input_json_delta", "partial_json": f}))
                .collect(),
        }
    }
}

fn messages(ctx: &Ctx, body: &[u8]) -> Reply {
    let req = match parse(body, false) {
        Ok(r) => r,
        Err(message) => return invalid(ctx, &message),
    };
    let input = ChatInput {
        messages: req.msgs.clone(),
        tools: req.tools.clone(),
        tool_choice: req.tool_choice.clone(),
        parallel_tool_calls: req.parallel,
        max_tokens: None,
        stop: Vec::new(),
    };
    let ans = match answer::answer(&input) {
        Ok(a) => a,
        Err(name) => return invalid(ctx, &format!("tool_choice.tool.name: Tool '{name}' not found in tools")),
    };
    let mut blocks = Vec::new();
    let mut output_tokens = 0;
    if let Thinking::On { omitted } = req.thinking {
        let text = if omitted {
            String::new()
        } else {
            format!("Considering: {}", answer::last_user_text(&req.msgs))
        };
        let pieces = answer::pieces(&text);
        output_tokens += pieces.len() as u64;
        blocks.push(Block::Thinking {
            signature: signature(&text),
            pieces,
        });
    }
    let (stop_reason, stop_sequence) = match &ans {
        Answer::Tools { calls } => {
            for (i, c) in calls.iter().enumerate() {
                blocks.push(Block::ToolUse {
                    id: format!("toolu_emu{:06}_{i}", ctx.seq),
                    name: c.name.clone(),
                    input: c.arguments.clone(),
                    fragments: c.fragments(),
                });
            }
            output_tokens += ans.completion_tokens();
            ("tool_use", None)
        }
        Answer::Text { .. } => {
            let full = ans.text();
            let hit = req
                .stop
                .iter()
                .filter_map(|s| full.find(s.as_str()).map(|i| (i, s.clone())))
                .min_by_key(|(i, _)| *i);
            let shaped = answer::shape_text(&full, &req.stop, req.max_tokens);
            output_tokens += shaped.completion_tokens();
            if let Answer::Text { pieces, .. } = &shaped {
                if !pieces.is_empty() {
                    blocks.push(Block::Text {
                        pieces: pieces.clone(),
                    });
                }
            }
            match (shaped.finish(), hit) {
                (Finish::Length, _) => ("max_tokens", None),
                (_, Some((_, s))) => ("stop_sequence", Some(s)),
                _ => ("end_turn", None),
            }
        }
    };
    let (input_tokens, creation, read) = req.input_usage();
    let one_hour = req.cache.is_some_and(|(_, h)| h);
    let usage = |output: u64| {
        json!({"input_tokens": input_tokens, "output_tokens": output,
               "cache_creation_input_tokens": creation, "cache_read_input_tokens": read,
               "cache_creation": {"ephemeral_5m_input_tokens": if one_hour { 0 } else { creation },
                                  "ephemeral_1h_input_tokens": if one_hour { creation } else { 0 }},
               "service_tier": "standard"})
    };
    let id = format!("msg_emu{:06}", ctx.seq);
    let message = |content: Vec<Value>, stop_reason: Value, stop_sequence: Value, output: u64| {
        json!({"id": id, "type": "message", "role": "assistant", "model": req.model,
               "content": content, "stop_reason": stop_reason, "stop_sequence": stop_sequence,
               "usage": usage(output)})
    };
    if !req.stream {
        let content = blocks.iter().map(Block::whole).collect();
        let body = message(content, json!(stop_reason), json!(stop_sequence), output_tokens);
        return Reply::json(ctx, 200, &body);
    }
    let mut frames = vec![event(
        "message_start",
        &json!({"type": "message_start",
                "message": message(Vec::new(), Value::Null, Value::Null, output_tokens.min(1))}),
    )];
    let ping = || event("ping", &json!({"type": "ping"}));
    if blocks.is_empty() {
        frames.push(ping());
    }
    for (index, block) in blocks.iter().enumerate() {
        frames.push(event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": block.start()}),
        ));
        if index == 0 {
            frames.push(ping());
        }
        for delta in block.deltas() {
            frames.push(event(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": index, "delta": delta}),
            ));
        }
        frames.push(event(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": index}),
        ));
    }
    frames.push(event(
        "message_delta",
        &json!({"type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
                "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens,
                          "cache_creation_input_tokens": creation, "cache_read_input_tokens": read}}),
    ));
    frames.push(event("message_stop", &json!({"type": "message_stop"})));
    Reply::sse(ctx, frames)
}

fn count_tokens(ctx: &Ctx, body: &[u8]) -> Reply {
    match parse(body, true) {
        Ok(req) => Reply::json(
            ctx,
            200,
            &json!({"input_tokens": answer::prompt_tokens(&req.msgs)}),
        ),
        Err(message) => invalid(ctx, &message),
    }
}

fn model_info(id: &str, name: &str, created: &str) -> Value {
    json!({"type": "model", "id": id, "display_name": name, "created_at": created,
           "lifecycle": "active"})
}

fn models(ctx: &Ctx) -> Reply {
    let data: Vec<Value> = MODELS
        .iter()
        .map(|(id, name, created)| model_info(id, name, created))
        .collect();
    Reply::json(
        ctx,
        200,
        &json!({"data": data, "has_more": false,
                "first_id": MODELS.first().map(|m| m.0), "last_id": MODELS.last().map(|m| m.0)}),
    )
}

fn model(ctx: &Ctx, id: &str) -> Reply {
    match MODELS.iter().find(|m| m.0 == id) {
        Some((id, name, created)) => Reply::json(ctx, 200, &model_info(id, name, created)),
        None => error(ctx, 404, "not_found_error", &format!("model: {id}")),
    }
}
