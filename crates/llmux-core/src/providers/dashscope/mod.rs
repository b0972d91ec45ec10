//! Alibaba DashScope (Qwen), native protocol: text and multimodal generation with
//! `input.prompt`/`input.messages` and `parameters`, SSE streaming switched on by the
//! `X-DashScope-SSE` header (incremental or cumulative), native embeddings; plus the
//! registry rows for DashScope's OpenAI-compatible mode and its Anthropic-compatible endpoint.

pub mod wire;

use std::sync::Arc;

use http::HeaderMap;
use serde::Deserialize;
use serde_json::Value;

use super::anthropic::{Anthropic, MessagesSpec};
use super::openai_compat::ThinkingFields;
use super::openai_compat::{
    args_string, classify_openai_error, describe, non_json_error, parse_json, CompatSpec,
    Extensions, OpenAiCompat, WireToolCall, OPENAI,
};
use super::thinking::ThinkingSupport;
use super::{
    check_base_url, header_request_id, join_url, Capabilities, CredentialSpec, Provider,
    ProviderSpec, StreamParser,
};
use crate::codec::Frame;
use crate::error::{kind_for_status, parse_retry_after, Error, ErrorKind, Result};
use crate::http::{HttpRequest, HttpResponse};
use crate::stream::StreamEvent;
use crate::types::*;
use crate::SecretString;

const ID: &str = "dashscope";

/// Regions and their hosts (PROTOCOLS.md §1.1).
pub const REGIONS: &[(&[&str], &str)] = &[
    (
        &["cn-beijing", "cn", "beijing"],
        "https://dashscope.aliyuncs.com",
    ),
    (
        &["ap-southeast-1", "intl", "singapore", "sg"],
        "https://dashscope-intl.aliyuncs.com",
    ),
    (
        &["us-east-1", "us", "virginia"],
        "https://dashscope-us.aliyuncs.com",
    ),
];

fn region_host(region: Option<&str>) -> Result<&'static str> {
    let Some(region) = region else {
        return Ok(REGIONS[0].1);
    };
    REGIONS
        .iter()
        .find(|(names, _)| names.contains(&region))
        .map(|(_, host)| *host)
        .ok_or_else(|| {
            let known: Vec<&str> = REGIONS.iter().map(|(n, _)| n[0]).collect();
            Error::config(format!(
                "unknown DashScope region `{region}`; known regions: {} (or set DASHSCOPE_BASE_URL)",
                known.join(", ")
            ))
            .with_provider(ID)
        })
}

const CREDS: &[CredentialSpec] = &[
    CredentialSpec {
        field: "api_key",
        env: &["DASHSCOPE_API_KEY"],
        optional: false,
    },
    CredentialSpec {
        field: "workspace",
        env: &["DASHSCOPE_WORKSPACE"],
        optional: true,
    },
];

const MODELS: &[&str] = &[
    "qwen-max",
    "qwen-plus",
    "qwen-turbo",
    "qwen-long",
    "qwen3-max",
    "qwen3-coder-plus",
    "qwq-plus",
    "qwen-vl-max",
    "qwen-vl-plus",
    "text-embedding-v3",
    "text-embedding-v4",
];

/// The registry row for the native protocol.
pub const SPEC: ProviderSpec = ProviderSpec {
    id: ID,
    description:
        "Alibaba DashScope / Qwen, native protocol (regions: cn-beijing, ap-southeast-1, us-east-1)",
    default_base_url: "https://dashscope.aliyuncs.com/api/v1",
    base_url_env: "DASHSCOPE_BASE_URL",
    region_env: Some("DASHSCOPE_REGION"),
    credentials: CREDS,
    models: MODELS,
    build: |row, s| {
        let key = s.require(row, "api_key")?.clone();
        let base = match &s.base_url {
            Some(b) => check_base_url(ID, b)?,
            None => format!("{}/api/v1", region_host(s.region.as_deref())?),
        };
        Ok(Arc::new(DashScope {
            base_url: base,
            api_key: key,
            workspace: s.credentials.get("workspace").cloned(),
        }))
    },
};

/// What DashScope takes for thinking, natively (`parameters`) and in compatible mode alike:
/// `enable_thinking` and `thinking_budget` (hybrid-thinking Qwen models, PROTOCOLS.md 1.2); a
/// reasoning effort is sent as its budget.
pub const THINKING: ThinkingSupport = ThinkingSupport::SWITCH_AND_BUDGET;

/// DashScope's OpenAI-compatible mode as its own provider id.
pub const COMPAT: CompatSpec = CompatSpec {
    id: "dashscope-compat",
    key_required: true,
    extensions: Extensions {
        top_k: true,
        repetition_penalty: true,
        enable_search: true,
    },
    thinking: THINKING,
    thinking_fields: ThinkingFields::EnableThinking,
    embeddings_base64: false,
    // Compatible mode embeds with text-embedding-v3/v4 only: at most 10 texts a request
    // (PROTOCOLS.md 1.6; Model Studio's text-embedding API reference, "最大行数").
    embeddings_max_inputs: Some(10),
    map_code: dashscope_code,
    capabilities: OPENAI.capabilities,
    ..OPENAI
};

/// The registry row for compatible mode (`…/compatible-mode/v1`).
pub const COMPAT_SPEC: ProviderSpec = ProviderSpec {
    id: "dashscope-compat",
    description: "Alibaba DashScope / Qwen, OpenAI-compatible mode",
    default_base_url: "https://dashscope.aliyuncs.com/compatible-mode/v1",
    base_url_env: "DASHSCOPE_COMPAT_BASE_URL",
    region_env: Some("DASHSCOPE_REGION"),
    credentials: CREDS,
    models: MODELS,
    build: |row, s| {
        let key = s.require(row, "api_key")?.clone();
        let base = match &s.base_url {
            Some(b) => b.clone(),
            None => format!("{}/compatible-mode/v1", region_host(s.region.as_deref())?),
        };
        Ok(Arc::new(OpenAiCompat::new(COMPAT, &base, Some(key))?))
    },
};

/// DashScope's Anthropic-compatible endpoint: the Messages API codec with DashScope's error
/// codes; no model list and no structured output (not documented there).
pub const ANTHROPIC_COMPAT: MessagesSpec = MessagesSpec {
    id: "dashscope-anthropic",
    capabilities: Capabilities {
        streaming: true,
        tools: true,
        vision: true,
        json_mode: false,
        embeddings: false,
        list_models: false,
    },
    structured_output: false,
    map_code: dashscope_code,
};

/// The registry row for the Anthropic-compatible endpoint (`…/apps/anthropic`, key in
/// `x-api-key`, as DashScope's documentation sends it).
pub const ANTHROPIC_SPEC: ProviderSpec = ProviderSpec {
    id: "dashscope-anthropic",
    description: "Alibaba DashScope / Qwen, Anthropic-compatible Messages API",
    default_base_url: "https://dashscope.aliyuncs.com/apps/anthropic",
    base_url_env: "DASHSCOPE_ANTHROPIC_BASE_URL",
    region_env: Some("DASHSCOPE_REGION"),
    credentials: CREDS,
    models: &[
        "qwen-plus",
        "qwen-max",
        "qwen-flash",
        "qwen-turbo",
        "qwen3-max",
        "qwen3-coder-plus",
        "qwen-vl-plus",
    ],
    build: |row, s| {
        let key = s.require(row, "api_key")?.clone();
        let base = match &s.base_url {
            Some(b) => b.clone(),
            None => format!("{}/apps/anthropic", region_host(s.region.as_deref())?),
        };
        Ok(Arc::new(Anthropic::new(ANTHROPIC_COMPAT, &base, key)?))
    },
};

/// DashScope error codes (native and compatible mode) to kinds.
pub fn dashscope_code(code: &str) -> Option<ErrorKind> {
    Some(match code {
        "InvalidApiKey" | "invalid_api_key" => ErrorKind::Authentication,
        "AccessDenied" | "AccessDenied.Unpurchased" | "access_denied" => {
            ErrorKind::PermissionDenied
        }
        "DataInspectionFailed" | "data_inspection_failed" => ErrorKind::ContentFiltered,
        "Arrearage" | "arrearage" | "insufficient_quota" => ErrorKind::QuotaExhausted,
        "Throttling"
        | "Throttling.RateQuota"
        | "Throttling.AllocationQuota"
        | "Throttling.User"
        | "limit_requests"
        | "rate_limit_exceeded" => ErrorKind::RateLimited,
        "ModelNotFound" | "model_not_found" | "InvalidURL" => ErrorKind::NotFound,
        "RequestTimeOut" => ErrorKind::Timeout,
        "InternalError" | "InternalError.Algo" | "internal_error" | "ServiceUnavailable" => {
            ErrorKind::UpstreamServer
        }
        "UnsupportedOperation" => ErrorKind::Unsupported,
        c if c.starts_with("InvalidParameter")
            || c.starts_with("BadRequest")
            || c == "invalid_parameter_error"
            || c == "invalid_request_error" =>
        {
            ErrorKind::InvalidRequest
        }
        _ => return None,
    })
}

fn kind_for(code: &str, message: &str, status: u16) -> ErrorKind {
    let lower = message.to_ascii_lowercase();
    if lower.contains("range of input length") || lower.contains("context length") {
        return ErrorKind::ContextLengthExceeded;
    }
    dashscope_code(code).unwrap_or_else(|| {
        if status == 0 || status == 200 {
            ErrorKind::UpstreamServer
        } else {
            kind_for_status(status)
        }
    })
}

#[derive(Debug, Default, Deserialize)]
struct WireError {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    request_id: Option<String>,
}

fn error_from(err: WireError, status: u16, headers: &HeaderMap) -> Error {
    let code = err.code.unwrap_or_default();
    let msg = err.message.unwrap_or_default();
    let kind = kind_for(&code, &msg, status);
    let mut e = Error::new(kind, describe(kind, &msg))
        .with_provider(ID)
        .with_code(code)
        .with_retry_after(parse_retry_after(headers))
        .with_request_id(err.request_id.or_else(|| header_request_id(headers)));
    if status != 0 {
        e = e.with_status(status);
    }
    e
}

/// The native DashScope provider.
#[derive(Debug)]
pub struct DashScope {
    base_url: String,
    api_key: SecretString,
    workspace: Option<SecretString>,
}

impl DashScope {
    /// A provider at `base_url` (`…/api/v1`) with `api_key`.
    pub fn new(base_url: &str, api_key: SecretString) -> Result<Self> {
        Ok(DashScope {
            base_url: check_base_url(ID, base_url)?,
            api_key,
            workspace: None,
        })
    }

    fn request<B: serde::Serialize>(
        &self,
        path: &str,
        body: &B,
        stream: bool,
    ) -> Result<HttpRequest> {
        let mut r = HttpRequest::post_json(join_url(&self.base_url, path), body)?
            .header("content-type", "application/json; charset=utf-8")?
            .bearer(&self.api_key)?;
        if stream {
            r = r
                .header("accept", "text/event-stream")?
                .header("x-dashscope-sse", "enable")?
                .header("x-accel-buffering", "no")?;
        } else {
            r = r.header("accept", "application/json; charset=utf-8")?;
        }
        if let Some(ws) = &self.workspace {
            r = r.header("x-dashscope-workspace", ws.expose())?;
        }
        Ok(r)
    }

    /// The typed generation body for the upstream `model`.
    pub fn chat_body<'a>(
        &self,
        model: &'a str,
        req: &'a ChatRequest,
        stream: bool,
    ) -> Result<wire::GenerationBody<'a>> {
        wire::chat_body(model, req, stream)
    }
}

/// Whether a stream of `req` is incremental: our default, unless `extra` sets
/// `incremental_output` to false or removes it with `null` (then the server sends cumulative text).
pub fn stream_is_incremental(req: &ChatRequest) -> bool {
    match req.extra_field("incremental_output") {
        None => true,
        Some(v) => v.and_then(Value::as_bool).unwrap_or(false),
    }
}

#[derive(Debug, Default, Deserialize)]
struct WireGeneration {
    #[serde(default)]
    output: Option<WireOutput>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    request_id: Option<String>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct WireOutput {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    finish_reason: Option<String>,
    #[serde(default)]
    choices: Option<Vec<WireChoice>>,
}

#[derive(Debug, Default, Deserialize)]
struct WireChoice {
    #[serde(default)]
    finish_reason: Option<String>,
    #[serde(default)]
    message: Option<WireMessage>,
}

#[derive(Debug, Default, Deserialize)]
struct WireMessage {
    #[serde(default)]
    content: Option<Value>,
    #[serde(default)]
    reasoning_content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<WireToolCall>>,
}

#[derive(Debug, Default, Deserialize)]
struct WireDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
    #[serde(default)]
    reasoning_tokens: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
struct WireUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    total_tokens: Option<u64>,
    #[serde(default)]
    prompt_tokens_details: Option<WireDetails>,
    #[serde(default)]
    output_tokens_details: Option<WireDetails>,
}

impl WireUsage {
    fn usage(&self) -> Usage {
        let i = self.input_tokens.unwrap_or(0);
        let o = self.output_tokens.unwrap_or(0);
        Usage {
            input_tokens: i,
            output_tokens: o,
            total_tokens: self.total_tokens.unwrap_or(i + o),
            cached_tokens: self
                .prompt_tokens_details
                .as_ref()
                .and_then(|d| d.cached_tokens),
            reasoning_tokens: self
                .output_tokens_details
                .as_ref()
                .and_then(|d| d.reasoning_tokens),
        }
    }
}

/// The text of a message `content`: a string as is, the `text` strings of an array's parts
/// joined, anything else none.
pub(crate) fn content_text(v: &Option<Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    }
}

fn finish(s: Option<&str>) -> Option<FinishReason> {
    match s {
        None | Some("") | Some("null") => None,
        Some(r) => Some(FinishReason::parse(r)),
    }
}

fn body_error(w: &mut WireGeneration, status: u16, headers: &HeaderMap) -> Option<Error> {
    let code = w.code.take().filter(|c| !c.is_empty())?;
    Some(error_from(
        WireError {
            code: Some(code),
            message: w.message.take(),
            request_id: w.request_id.clone(),
        },
        status,
        headers,
    ))
}

impl Provider for DashScope {
    fn id(&self) -> &'static str {
        ID
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            streaming: true,
            tools: true,
            vision: true,
            json_mode: true,
            embeddings: true,
            list_models: false,
        }
    }

    fn base_url(&self) -> &str {
        &self.base_url
    }

    fn build_chat(&self, model: &str, req: &ChatRequest, stream: bool) -> Result<HttpRequest> {
        req.validate_for(model).map_err(|e| e.with_provider(ID))?;
        let body = self.chat_body(model, req, stream)?;
        let multimodal = req.messages.iter().any(|m| m.content.has_images());
        let path = if multimodal {
            "services/aigc/multimodal-generation/generation"
        } else {
            "services/aigc/text-generation/generation"
        };
        self.request(path, &body, stream)
    }

    fn parse_chat(&self, resp: &HttpResponse) -> Result<ChatResponse> {
        let mut w: WireGeneration = parse_json(ID, &resp.body)?;
        if let Some(e) = body_error(&mut w, resp.status, &resp.headers) {
            return Err(e);
        }
        let request_id = w
            .request_id
            .clone()
            .or_else(|| header_request_id(&resp.headers));
        let out = w.output.ok_or_else(|| {
            Error::protocol("dashscope answered without `output`").with_provider(ID)
        })?;
        let choices = match out.choices {
            Some(choices) => choices
                .into_iter()
                .enumerate()
                .map(|(i, c)| {
                    let m = c.message.unwrap_or_default();
                    Choice {
                        index: i as u32,
                        message: Message {
                            role: Role::Assistant,
                            content: Content::Text(content_text(&m.content)),
                            name: None,
                            tool_calls: m
                                .tool_calls
                                .unwrap_or_default()
                                .into_iter()
                                .map(|t| {
                                    let f = t.function.unwrap_or_default();
                                    ToolCall {
                                        id: t.id.unwrap_or_default(),
                                        name: f.name.unwrap_or_default(),
                                        arguments: f.arguments.map(args_string).unwrap_or_default(),
                                    }
                                })
                                .collect(),
                            tool_call_id: None,
                            reasoning: m.reasoning_content.filter(|r| !r.is_empty()),
                            reasoning_signature: None,
                        },
                        finish_reason: finish(c.finish_reason.as_deref()),
                    }
                })
                .collect(),
            None => vec![Choice {
                index: 0,
                message: Message::assistant(out.text.unwrap_or_default()),
                finish_reason: finish(out.finish_reason.as_deref()),
            }],
        };
        Ok(ChatResponse {
            id: request_id.clone().unwrap_or_default(),
            model: String::new(),
            created: None,
            choices,
            usage: w.usage.as_ref().map(WireUsage::usage),
            request_id,
        })
    }

    fn stream_parser(&self, _model: &str, req: &ChatRequest) -> Box<dyn StreamParser> {
        Box::new(DashScopeStreamParser::new(stream_is_incremental(req)))
    }

    fn classify_error(&self, status: u16, headers: &HeaderMap, body: &[u8]) -> Error {
        match serde_json::from_slice::<WireError>(body) {
            Ok(w) if w.code.is_some() || w.message.is_some() => error_from(w, status, headers),
            _ => {
                // Compatible-mode style envelope or an SSE error body, else a proxy page.
                if body.starts_with(b"{") {
                    return classify_openai_error(&COMPAT, status, headers, body);
                }
                if let Ok((frames, tail)) = crate::codec::sse::decode_all(body) {
                    if let Some(f) = frames.into_iter().chain(tail.frame).next() {
                        if let Ok(w) = serde_json::from_str::<WireError>(&f.data) {
                            if w.code.is_some() {
                                return error_from(w, status, headers);
                            }
                        }
                    }
                }
                non_json_error(ID, status, headers, body)
            }
        }
    }

    fn build_embeddings(&self, model: &str, req: &EmbeddingRequest) -> Result<HttpRequest> {
        req.validate_for(model).map_err(|e| e.with_provider(ID))?;
        let body = wire::embedding_body(model, req);
        self.request(
            "services/embeddings/text-embedding/text-embedding",
            &body,
            false,
        )
    }

    fn embedding_batch_limit(&self, model: &str) -> Option<usize> {
        Some(embedding_batch_limit(model))
    }

    fn parse_embeddings(&self, resp: &HttpResponse) -> Result<EmbeddingResponse> {
        #[derive(Deserialize)]
        struct Item {
            text_index: u32,
            embedding: Vec<f32>,
        }
        #[derive(Deserialize, Default)]
        struct Out {
            #[serde(default)]
            embeddings: Vec<Item>,
        }
        #[derive(Deserialize)]
        struct Wire {
            #[serde(default)]
            output: Option<Out>,
            #[serde(default)]
            usage: Option<WireUsage>,
            #[serde(default)]
            request_id: Option<String>,
            #[serde(default)]
            code: Option<String>,
            #[serde(default)]
            message: Option<String>,
        }
        let w: Wire = parse_json(ID, &resp.body)?;
        if let Some(code) = w.code.filter(|c| !c.is_empty()) {
            return Err(error_from(
                WireError {
                    code: Some(code),
                    message: w.message,
                    request_id: w.request_id,
                },
                resp.status,
                &resp.headers,
            ));
        }
        let mut data: Vec<Embedding> = w
            .output
            .unwrap_or_default()
            .embeddings
            .into_iter()
            .map(|e| Embedding {
                index: e.text_index,
                vector: e.embedding,
            })
            .collect();
        data.sort_by_key(|e| e.index);
        let usage = w.usage.map(|u| {
            let total = u.total_tokens.or(u.input_tokens).unwrap_or(0);
            Usage::new(total, 0)
        });
        Ok(EmbeddingResponse {
            model: String::new(),
            data,
            usage,
            request_id: w.request_id.or_else(|| header_request_id(&resp.headers)),
        })
    }
}

/// The most texts one native embeddings request of `model` may carry (PROTOCOLS.md 1.6, from
/// Model Studio's text-embedding API reference, "最大行数"): 25 for text-embedding-v1/v2, 10
/// for v3, v4 and any later or unknown model (the smaller limit, so a batch is never refused).
pub fn embedding_batch_limit(model: &str) -> usize {
    match model {
        "text-embedding-v1" | "text-embedding-v2" => 25,
        _ => 10,
    }
}

/// Turns DashScope SSE events (incremental or cumulative) into deltas.
#[derive(Debug)]
pub struct DashScopeStreamParser {
    incremental: bool,
    started: bool,
    text_sent: String,
    reasoning_sent: String,
    calls: Vec<(bool, String)>,
    finish: Option<FinishReason>,
    usage: Option<Usage>,
}

impl DashScopeStreamParser {
    /// A parser; `incremental` says whether events carry only new text.
    pub fn new(incremental: bool) -> Self {
        DashScopeStreamParser {
            incremental,
            started: false,
            text_sent: String::new(),
            reasoning_sent: String::new(),
            calls: Vec::new(),
            finish: None,
            usage: None,
        }
    }

    fn delta(incremental: bool, sent: &mut String, now: &str) -> Option<String> {
        if incremental {
            sent.push_str(now);
            return (!now.is_empty()).then(|| now.to_owned());
        }
        let common = common_prefix(sent, now);
        let fresh = &now[common..];
        let out = (!fresh.is_empty()).then(|| fresh.to_owned());
        if now.len() >= sent.len() {
            sent.clear();
            sent.push_str(now);
        }
        out
    }
}

fn common_prefix(a: &str, b: &str) -> usize {
    let mut n = 0;
    for ((i, ca), cb) in a.char_indices().zip(b.chars()) {
        if ca != cb {
            return i;
        }
        n = i + ca.len_utf8();
    }
    n
}

impl StreamParser for DashScopeStreamParser {
    fn on_frame(&mut self, frame: &Frame, out: &mut Vec<StreamEvent>) -> Result<()> {
        let status = frame
            .comment
            .as_deref()
            .and_then(|c| c.strip_prefix("HTTP_STATUS/"))
            .and_then(|s| s.trim().parse::<u16>().ok())
            .unwrap_or(0);
        if frame.event.as_deref() == Some("error") {
            let w: WireError = serde_json::from_str(&frame.data).unwrap_or_default();
            let status = if status == 200 { 0 } else { status };
            return Err(error_from(w, status, &HeaderMap::new()));
        }
        let mut w: WireGeneration = serde_json::from_str(&frame.data).map_err(|e| {
            Error::protocol("dashscope sent a malformed stream frame")
                .with_provider(ID)
                .with_source(e)
        })?;
        if let Some(e) = body_error(
            &mut w,
            if status == 200 { 0 } else { status },
            &HeaderMap::new(),
        ) {
            return Err(e);
        }
        if !self.started {
            self.started = true;
            out.push(StreamEvent::Started {
                id: w.request_id.clone().unwrap_or_default(),
                model: String::new(),
                request_id: w.request_id.clone(),
            });
        }
        if let Some(u) = &w.usage {
            self.usage = Some(u.usage());
        }
        let Some(output) = w.output else {
            return Ok(());
        };
        let inc = self.incremental;
        let (text, reasoning, calls, fr) = match output.choices {
            Some(mut choices) if !choices.is_empty() => {
                let c = choices.swap_remove(0);
                let m = c.message.unwrap_or_default();
                (
                    content_text(&m.content),
                    m.reasoning_content,
                    m.tool_calls,
                    c.finish_reason,
                )
            }
            _ => (
                output.text.unwrap_or_default(),
                None,
                None,
                output.finish_reason,
            ),
        };
        if let Some(r) = reasoning {
            if let Some(d) = Self::delta(inc, &mut self.reasoning_sent, &r) {
                out.push(StreamEvent::ReasoningDelta { text: d });
            }
        }
        if let Some(d) = Self::delta(inc, &mut self.text_sent, &text) {
            out.push(StreamEvent::TextDelta { text: d });
        }
        for (pos, tc) in calls.unwrap_or_default().into_iter().enumerate() {
            let index = tc.index.unwrap_or(pos as u32);
            let i = index as usize;
            if i > 1024 {
                return Err(
                    Error::protocol("dashscope tool call index out of range").with_provider(ID)
                );
            }
            if self.calls.len() <= i {
                self.calls.resize_with(i + 1, || (false, String::new()));
            }
            let f = tc.function.unwrap_or_default();
            let (announced, args_sent) = &mut self.calls[i];
            let id = tc.id.filter(|s| !s.is_empty());
            let name = f.name.filter(|s| !s.is_empty());
            let (id, name) = if *announced && !inc {
                (None, None)
            } else {
                (id, name)
            };
            let args_now = f.arguments.map(args_string).unwrap_or_default();
            let args = Self::delta(inc, args_sent, &args_now).unwrap_or_default();
            if id.is_some() || name.is_some() || !args.is_empty() {
                *announced = true;
                out.push(StreamEvent::ToolCallDelta {
                    index,
                    id,
                    name,
                    arguments: args,
                });
            }
        }
        if let Some(r) = finish(fr.as_deref()) {
            self.finish = Some(r);
        }
        Ok(())
    }

    fn is_done(&self) -> bool {
        false
    }

    fn finish(&mut self, out: &mut Vec<StreamEvent>) -> Result<()> {
        let Some(reason) = self.finish.take() else {
            return Err(
                Error::protocol("dashscope stream ended before the answer was complete")
                    .with_provider(ID),
            );
        };
        if let Some(u) = self.usage.take() {
            out.push(StreamEvent::Usage(u));
        }
        out.push(StreamEvent::Finished { reason });
        Ok(())
    }
}
