//! The shared OpenAI chat-completions codec, and the `OpenAiCompat` provider that serves every
//! vendor with an OpenAI-style endpoint. Vendor differences are data in a [`CompatSpec`].

pub mod wire;

use std::borrow::Cow;
use std::sync::Arc;

use base64::Engine;
use http::HeaderMap;
use serde::Deserialize;
use serde_json::Value;

use super::body::Extra;
use super::thinking::{EffortSupport, Switch, ThinkingSupport};
use super::{
    check_base_url, header_request_id, join_url, Capabilities, CredentialSpec, Provider,
    ProviderSettings, ProviderSpec, StreamParser,
};
use crate::codec::Frame;
use crate::error::{
    kind_for_status, parse_retry_after, parse_should_retry, Error, ErrorKind, Result,
};
use crate::http::{HttpRequest, HttpResponse};
use crate::stream::StreamEvent;
use crate::types::*;
use crate::SecretString;

/// Which non-OpenAI request fields a vendor accepts as top-level body fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extensions {
    /// `top_k`.
    pub top_k: bool,
    /// `repetition_penalty`.
    pub repetition_penalty: bool,
    /// `enable_search`.
    pub enable_search: bool,
}

impl Extensions {
    /// Plain OpenAI: none.
    pub const NONE: Extensions = Extensions {
        top_k: false,
        repetition_penalty: false,
        enable_search: false,
    };
}

/// The fields an OpenAI-style vendor takes its thinking settings in (what it takes at all is
/// [`CompatSpec::thinking`]). An effort always goes in `reasoning_effort`, a budget in
/// `thinking_budget`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThinkingFields {
    /// On or off as `enable_thinking` (DashScope's compatible mode).
    EnableThinking,
    /// On or off as `chat_template_kwargs.enable_thinking`, the chat template's switch (vLLM
    /// serving Qwen3 and other hybrid-thinking models).
    ChatTemplateKwargs,
    /// Off as `reasoning_effort: "none"` (OpenAI).
    ReasoningEffort,
}

/// The data that makes one vendor's OpenAI-style endpoint differ from OpenAI's.
#[derive(Debug, Clone, Copy)]
pub struct CompatSpec {
    /// Provider id.
    pub id: &'static str,
    /// Whether an API key is required (self-hosted servers often need none).
    pub key_required: bool,
    /// Extra request fields the vendor accepts.
    pub extensions: Extensions,
    /// The thinking settings the vendor takes.
    pub thinking: ThinkingSupport,
    /// The fields it takes them in.
    pub thinking_fields: ThinkingFields,
    /// Whether an assistant message's reasoning is sent back as `reasoning_content`
    /// (DeepSeek requires it on the assistant turns of a tool-calling exchange in thinking
    /// mode; others drop or refuse it).
    pub send_reasoning: bool,
    /// Whether embeddings may be requested base64-encoded (DashScope: float only).
    pub embeddings_base64: bool,
    /// The most texts one embeddings request may carry, as the vendor documents it (longer
    /// inputs are split into batches, [`Provider::embedding_batch_limit`]); `None` when no
    /// limit is documented.
    pub embeddings_max_inputs: Option<usize>,
    /// Vendor error codes that mean something more specific than the HTTP status.
    pub map_code: fn(&str) -> Option<ErrorKind>,
    /// What the endpoint can do.
    pub capabilities: Capabilities,
    /// The body field `enable_search` is sent as (Hunyuan: `enable_enhancement`).
    pub search_field: SearchField,
    /// Whether a stream request asks for usage with `stream_options.include_usage` (vendors
    /// that always send usage on the last chunk, or reject the field, set false).
    pub stream_options: bool,
}

/// The body field a vendor takes web search as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchField {
    /// `enable_search` (DashScope).
    EnableSearch,
    /// `enable_enhancement` (Hunyuan).
    EnableEnhancement,
}

const FULL: Capabilities = Capabilities {
    streaming: true,
    tools: true,
    vision: true,
    json_mode: true,
    embeddings: true,
    list_models: true,
};

/// The plain OpenAI spec.
pub const OPENAI: CompatSpec = CompatSpec {
    id: "openai",
    key_required: true,
    extensions: Extensions::NONE,
    // `reasoning_effort` (o-series, gpt-5): every level; off as `none`; no budget.
    thinking: ThinkingSupport {
        switch: Switch::OffAsEffortNone,
        budget: false,
        effort: EffortSupport::Levels(&ReasoningEffort::ALL),
    },
    thinking_fields: ThinkingFields::ReasoningEffort,
    send_reasoning: false,
    embeddings_base64: true,
    // OpenAI's embeddings reference: "any array must be 2048 dimensions or less" (an input
    // list holds at most 2048 entries).
    embeddings_max_inputs: Some(2048),
    map_code: openai_code,
    capabilities: FULL,
    search_field: SearchField::EnableSearch,
    stream_options: true,
};

/// OpenAI's own error codes.
pub fn openai_code(code: &str) -> Option<ErrorKind> {
    Some(match code {
        "invalid_api_key" | "invalid_authentication" => ErrorKind::Authentication,
        "insufficient_quota" | "billing_hard_limit_reached" => ErrorKind::QuotaExhausted,
        "rate_limit_exceeded" => ErrorKind::RateLimited,
        "context_length_exceeded" | "string_above_max_length" => ErrorKind::ContextLengthExceeded,
        "content_filter" | "content_policy_violation" => ErrorKind::ContentFiltered,
        "model_not_found" => ErrorKind::NotFound,
        "unsupported_parameter" | "unsupported_value" => ErrorKind::InvalidRequest,
        _ => return None,
    })
}

/// The provider for any OpenAI-style endpoint.
#[derive(Debug)]
pub struct OpenAiCompat {
    spec: CompatSpec,
    base_url: String,
    api_key: Option<SecretString>,
}

impl OpenAiCompat {
    /// A provider for `spec` at `base_url`.
    pub fn new(spec: CompatSpec, base_url: &str, api_key: Option<SecretString>) -> Result<Self> {
        if spec.key_required && api_key.is_none() {
            return Err(
                Error::config(format!("{} needs an API key", spec.id)).with_provider(spec.id)
            );
        }
        Ok(OpenAiCompat {
            spec,
            base_url: check_base_url(spec.id, base_url)?,
            api_key,
        })
    }

    /// Builds from a registry row and settings.
    pub fn from_settings(
        compat: CompatSpec,
        row: &ProviderSpec,
        settings: &ProviderSettings,
    ) -> Result<Arc<dyn Provider>> {
        let key = if compat.key_required {
            Some(settings.require(row, "api_key")?.clone())
        } else {
            settings.credentials.get("api_key").cloned()
        };
        let base = settings.base_url.as_deref().unwrap_or(row.default_base_url);
        Ok(Arc::new(OpenAiCompat::new(compat, base, key)?))
    }

    fn authed(&self, req: HttpRequest) -> Result<HttpRequest> {
        match &self.api_key {
            Some(k) => req.bearer(k),
            None => Ok(req),
        }
    }
}

pub(crate) fn unsupported_param(id: &'static str, name: &str) -> Error {
    Error::unsupported(format!("{id} does not accept `{name}`")).with_provider(id)
}

impl OpenAiCompat {
    /// The typed chat body for the upstream `model` (shared with tests and other modules).
    pub fn chat_body<'a>(
        &self,
        model: &'a str,
        req: &'a ChatRequest,
        stream: bool,
    ) -> Result<wire::ChatBody<'a>> {
        wire::chat_body(&self.spec, model, req, stream)
    }
}

impl Provider for OpenAiCompat {
    fn id(&self) -> &'static str {
        self.spec.id
    }

    fn capabilities(&self) -> Capabilities {
        self.spec.capabilities
    }

    fn base_url(&self) -> &str {
        &self.base_url
    }

    fn build_chat(&self, model: &str, req: &ChatRequest, stream: bool) -> Result<HttpRequest> {
        req.validate_for(model)
            .map_err(|e| e.with_provider(self.spec.id))?;
        let body = self.chat_body(model, req, stream)?;
        let r = HttpRequest::post_json(join_url(&self.base_url, "chat/completions"), &body)?
            .header("accept", "application/json")?;
        self.authed(r)
    }

    fn parse_chat(&self, resp: &HttpResponse) -> Result<ChatResponse> {
        // Read in place: strings borrow from the body, and only what the answer keeps is
        // copied out of it.
        let wire: WireResponse<'_> = parse_json_borrowed(self.spec.id, &resp.body)?;
        if let Some(err) = wire.error {
            return Err(self.error_from(resp.status, &resp.headers, *err));
        }
        let request_id = header_request_id(&resp.headers).or(wire.request_id.map(Str::into_owned));
        let choices = wire
            .choices
            .into_iter()
            .enumerate()
            .map(|(i, c)| Choice {
                index: c.index.unwrap_or(i as u32),
                message: c.message.unwrap_or_default().into_message(),
                finish_reason: c.finish_reason.as_deref().map(FinishReason::parse),
            })
            .collect();
        Ok(ChatResponse {
            id: wire
                .id
                .map(Str::into_owned)
                .or_else(|| request_id.clone())
                .unwrap_or_default(),
            model: wire.model.map(Str::into_owned).unwrap_or_default(),
            created: wire.created,
            choices,
            usage: wire.usage.map(WireUsage::into_usage),
            request_id,
        })
    }

    fn stream_parser(&self, _model: &str, _req: &ChatRequest) -> Box<dyn StreamParser> {
        Box::new(OpenAiStreamParser::new(self.spec))
    }

    fn classify_error(&self, status: u16, headers: &HeaderMap, body: &[u8]) -> Error {
        classify_openai_error(&self.spec, status, headers, body)
    }

    fn build_embeddings(&self, model: &str, req: &EmbeddingRequest) -> Result<HttpRequest> {
        if !self.spec.capabilities.embeddings {
            return Err(
                Error::unsupported(format!("{} does not offer embeddings", self.spec.id))
                    .with_provider(self.spec.id),
            );
        }
        req.validate_for(model)
            .map_err(|e| e.with_provider(self.spec.id))?;
        let fmt = if self.spec.embeddings_base64 {
            "base64"
        } else {
            "float"
        };
        let ex = Extra::new(&req.extra);
        let body = wire::EmbeddingsBody {
            model: ex.typed("model", Some(model)),
            input: ex.typed("input", Some(wire::EmbeddingInput::of(&req.input))),
            encoding_format: ex.typed("encoding_format", Some(fmt)),
            dimensions: ex.typed("dimensions", req.dimensions),
            user: ex.typed("user", req.user.as_deref()),
            extra: ex.fields(&[]),
        };
        let r = HttpRequest::post_json(join_url(&self.base_url, "embeddings"), &body)?
            .header("accept", "application/json")?;
        self.authed(r)
    }

    fn embedding_batch_limit(&self, _model: &str) -> Option<usize> {
        self.spec.embeddings_max_inputs
    }

    fn parse_embeddings(&self, resp: &HttpResponse) -> Result<EmbeddingResponse> {
        #[derive(Deserialize)]
        struct Item {
            #[serde(default)]
            index: Option<u32>,
            embedding: Value,
        }
        #[derive(Deserialize)]
        struct Wire {
            #[serde(default)]
            data: Vec<Item>,
            #[serde(default)]
            model: Option<String>,
            #[serde(default)]
            usage: Option<WireUsage>,
            #[serde(default)]
            error: Option<WireError>,
        }
        let w: Wire = parse_json(self.spec.id, &resp.body)?;
        if let Some(err) = w.error {
            return Err(self.error_from(resp.status, &resp.headers, err));
        }
        let mut data = Vec::with_capacity(w.data.len());
        for (i, item) in w.data.into_iter().enumerate() {
            let vector = decode_embedding(&item.embedding).ok_or_else(|| {
                Error::protocol("embedding is neither a float array nor base64 float32")
                    .with_provider(self.spec.id)
            })?;
            data.push(Embedding {
                index: item.index.unwrap_or(i as u32),
                vector,
            });
        }
        data.sort_by_key(|e| e.index);
        Ok(EmbeddingResponse {
            model: w.model.unwrap_or_default(),
            data,
            usage: w.usage.map(WireUsage::into_usage),
            request_id: header_request_id(&resp.headers),
        })
    }

    fn build_models(&self) -> Result<HttpRequest> {
        if !self.spec.capabilities.list_models {
            return Err(Error::unsupported(format!(
                "{} cannot list models over its API",
                self.spec.id
            ))
            .with_provider(self.spec.id));
        }
        let r = HttpRequest::get(join_url(&self.base_url, "models"))
            .header("accept", "application/json")?;
        self.authed(r)
    }

    fn parse_models(&self, resp: &HttpResponse) -> Result<Vec<ModelInfo>> {
        #[derive(Deserialize)]
        struct Wire {
            #[serde(default)]
            data: Vec<ModelInfo>,
        }
        let w: Wire = parse_json(self.spec.id, &resp.body)?;
        Ok(w.data)
    }
}

impl OpenAiCompat {
    fn error_from(&self, status: u16, headers: &HeaderMap, err: WireError) -> Error {
        error_from_envelope(
            &self.spec,
            if status == 200 { 0 } else { status },
            headers,
            err,
        )
    }
}

/// Decodes an embedding given as floats or as base64 little-endian float32.
pub fn decode_embedding(v: &Value) -> Option<Vec<f32>> {
    match v {
        Value::Array(xs) => xs.iter().map(|x| x.as_f64().map(|f| f as f32)).collect(),
        Value::String(s) => {
            let bytes = base64::engine::general_purpose::STANDARD.decode(s).ok()?;
            if bytes.len() % 4 != 0 {
                return None;
            }
            Some(
                bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            )
        }
        _ => None,
    }
}

pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    id: &'static str,
    body: &[u8],
) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| {
        Error::protocol(format!("{id} answered with malformed JSON"))
            .with_provider(id)
            .with_source(e)
    })
}

/// [`parse_json`] for a type that borrows from `body`.
pub(crate) fn parse_json_borrowed<'a, T: Deserialize<'a>>(
    id: &'static str,
    body: &'a [u8],
) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| {
        Error::protocol(format!("{id} answered with malformed JSON"))
            .with_provider(id)
            .with_source(e)
    })
}

/// OpenAI's error envelope `{"error":{"message","type","param","code"}}`.
#[derive(Debug, Default, Deserialize)]
pub struct WireError {
    /// Message.
    #[serde(default)]
    pub message: Option<String>,
    /// Type (`invalid_request_error`, `insufficient_quota`…).
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// Code; a string or a number depending on vendor.
    #[serde(default)]
    pub code: Option<Value>,
}

/// Classifies a non-2xx OpenAI-style response.
pub fn classify_openai_error(
    spec: &CompatSpec,
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
) -> Error {
    #[derive(Deserialize)]
    struct Envelope {
        error: Option<WireError>,
        #[serde(default)]
        request_id: Option<String>,
    }
    match serde_json::from_slice::<Envelope>(body) {
        Ok(Envelope {
            error: Some(err),
            request_id,
        }) => error_from_envelope(spec, status, headers, err)
            .with_request_id(header_request_id(headers).or(request_id)),
        _ => non_json_error(spec.id, status, headers, body),
    }
    .with_retry_hint(parse_should_retry(headers))
}

/// An error for a non-2xx response whose body is not the vendor's JSON (an HTML proxy page…).
pub fn non_json_error(id: &'static str, status: u16, headers: &HeaderMap, body: &[u8]) -> Error {
    let kind = kind_for_status(status);
    let ctype = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("no content type");
    let what = match kind {
        ErrorKind::Authentication => "the API key was rejected".to_owned(),
        ErrorKind::RateLimited => "rate limited by the upstream".to_owned(),
        _ => format!("the upstream answered HTTP {status} with a non-JSON body ({ctype})"),
    };
    let snippet: String = String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
    Error::new(kind, what)
        .with_provider(id)
        .with_status(status)
        .with_retry_after(parse_retry_after(headers))
        .with_request_id(header_request_id(headers))
        .with_source(snippet)
}

fn error_from_envelope(
    spec: &CompatSpec,
    status: u16,
    headers: &HeaderMap,
    err: WireError,
) -> Error {
    let code = match &err.code {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    };
    let typ = err.kind.clone().unwrap_or_default();
    let kind = (spec.map_code)(&code)
        .or_else(|| (spec.map_code)(&typ))
        .unwrap_or_else(|| {
            if status == 0 {
                ErrorKind::UpstreamServer
            } else {
                kind_for_status(status)
            }
        });
    let vendor_msg = err.message.unwrap_or_default();
    let message = describe(kind, &vendor_msg);
    let mut e = Error::new(kind, message)
        .with_provider(spec.id)
        .with_code(if code.is_empty() { typ } else { code })
        .with_retry_after(parse_retry_after(headers))
        .with_request_id(header_request_id(headers));
    if status != 0 {
        e = e.with_status(status);
    }
    e
}

/// A client-facing sentence for a kind, with the vendor's own message appended.
pub fn describe(kind: ErrorKind, vendor_msg: &str) -> String {
    let head = match kind {
        ErrorKind::Authentication => "the API key was rejected",
        ErrorKind::PermissionDenied => "the key is not allowed to do this",
        ErrorKind::NotFound => "not found",
        ErrorKind::RateLimited => "rate limited",
        ErrorKind::QuotaExhausted => "the account is out of quota or credit",
        ErrorKind::ContentFiltered => "blocked by content moderation",
        ErrorKind::ContextLengthExceeded => "the input is longer than the model's context window",
        ErrorKind::InvalidRequest => "the request was rejected as invalid",
        ErrorKind::UpstreamServer => "the upstream failed",
        ErrorKind::Timeout => "the upstream timed out",
        _ => "the upstream reported an error",
    };
    let vendor_msg = vendor_msg.trim();
    if vendor_msg.is_empty() {
        head.to_owned()
    } else {
        format!("{head}: {vendor_msg}")
    }
}

/// A `chat.completion`, read in place (strings borrow from the body unless they need
/// unescaping); a choice's `message` is read as a chunk's `delta` is.
#[derive(Debug, Default, Deserialize)]
struct WireResponse<'a> {
    #[serde(default, borrow)]
    id: Option<Str<'a>>,
    #[serde(default, borrow)]
    model: Option<Str<'a>>,
    #[serde(default)]
    created: Option<i64>,
    #[serde(default, borrow)]
    choices: Vec<WireChoice<'a>>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<Box<WireError>>,
    #[serde(default, borrow)]
    request_id: Option<Str<'a>>,
}

#[derive(Debug, Default, Deserialize)]
struct WireChoice<'a> {
    #[serde(default)]
    index: Option<u32>,
    #[serde(default, borrow)]
    message: Option<WireDelta<'a>>,
    #[serde(default, borrow)]
    finish_reason: Option<Str<'a>>,
}

impl WireDelta<'_> {
    /// The assistant message of a whole answer.
    fn into_message(self) -> Message {
        Message {
            role: Role::Assistant,
            content: Content::Text(
                self.content
                    .and_then(|c| c.0)
                    .unwrap_or_default()
                    .into_owned(),
            ),
            name: None,
            tool_calls: self
                .tool_calls
                .unwrap_or_default()
                .into_iter()
                .map(|c| {
                    let f = c.function.unwrap_or_default();
                    ToolCall {
                        id: c.id.unwrap_or_default(),
                        name: f.name.unwrap_or_default(),
                        arguments: f.arguments.map(args_string).unwrap_or_default(),
                    }
                })
                .collect(),
            tool_call_id: None,
            reasoning: self
                .reasoning_content
                .filter(|r| !r.is_empty())
                .map(Str::into_owned),
            reasoning_signature: None,
        }
    }
}

/// Tool-call arguments as the JSON string OpenAI uses (vendors that send an object get it
/// serialised).
pub(crate) fn args_string(v: Value) -> String {
    match v {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

/// A tool call as OpenAI-style vendors send it (DashScope native too).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct WireToolCall {
    #[serde(default)]
    pub(crate) index: Option<u32>,
    #[serde(default)]
    pub(crate) id: Option<String>,
    #[serde(default)]
    pub(crate) function: Option<WireFunction>,
}

/// The function part of a tool call; `arguments` is a JSON string or (some vendors) an object.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct WireFunction {
    #[serde(default)]
    pub(crate) name: Option<String>,
    #[serde(default)]
    pub(crate) arguments: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
struct WireDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
    #[serde(default)]
    reasoning_tokens: Option<u64>,
}

/// OpenAI-style usage.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    total_tokens: Option<u64>,
    #[serde(default)]
    prompt_tokens_details: Option<WireDetails>,
    #[serde(default)]
    completion_tokens_details: Option<WireDetails>,
}

impl WireUsage {
    pub(crate) fn into_usage(self) -> Usage {
        Usage {
            input_tokens: self.prompt_tokens,
            output_tokens: self.completion_tokens,
            total_tokens: self
                .total_tokens
                .unwrap_or(self.prompt_tokens.saturating_add(self.completion_tokens)),
            cached_tokens: self.prompt_tokens_details.and_then(|d| d.cached_tokens),
            reasoning_tokens: self
                .completion_tokens_details
                .and_then(|d| d.reasoning_tokens),
        }
    }
}

/// One `chat.completion.chunk`, read in place: strings borrow from the frame unless they
/// need unescaping, so a text piece costs one copy (into its event) and the fields only the
/// first chunk needs (`id`, `model`) cost nothing on the others.
#[derive(Debug, Default, Deserialize)]
struct WireChunk<'a> {
    #[serde(default, borrow)]
    id: Option<Str<'a>>,
    #[serde(default, borrow)]
    model: Option<Str<'a>>,
    #[serde(default, borrow)]
    choices: FirstChoices<'a>,
    // Boxed, as `error` and `message`: rare, and kept out of the struct every chunk moves.
    #[serde(default)]
    usage: Option<Box<WireUsage>>,
    #[serde(default)]
    error: Option<Box<WireError>>,
    #[serde(default, borrow)]
    request_id: Option<Str<'a>>,
}

#[derive(Debug, Default, Deserialize)]
struct WireChunkChoice<'a> {
    #[serde(default)]
    index: Option<u32>,
    #[serde(default, borrow)]
    delta: Option<WireDelta<'a>>,
    #[serde(default, borrow)]
    message: Option<Box<WireDelta<'a>>>,
    #[serde(default, borrow)]
    finish_reason: Option<Str<'a>>,
}

/// A chunk's `delta`, or a choice's `message`, borrowed.
#[derive(Debug, Default, Deserialize)]
struct WireDelta<'a> {
    #[serde(default, borrow)]
    content: Option<ContentText<'a>>,
    #[serde(default, borrow, alias = "reasoning")]
    reasoning_content: Option<Str<'a>>,
    #[serde(default)]
    tool_calls: Option<Vec<WireToolCall>>,
}

/// A JSON string, borrowed from the input unless it had escapes. (`Option<Cow<str>>` would
/// always copy: serde borrows a `Cow` only when it is not inside an `Option`.)
#[derive(Debug)]
struct Str<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> std::result::Result<Str<'de>, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> std::result::Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> std::result::Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

impl Str<'_> {
    fn into_owned(self) -> String {
        self.0.into_owned()
    }
}

impl std::ops::Deref for Str<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

/// The choices of a chunk the stream follows: those with index 0 (or none), in order. Every
/// element is still read (a malformed one fails the frame), but the others are not kept, and
/// the usual single choice is held without a heap allocation.
#[derive(Debug, Default)]
struct FirstChoices<'a> {
    first: Option<WireChunkChoice<'a>>,
    more: Vec<WireChunkChoice<'a>>,
}

impl<'a> IntoIterator for FirstChoices<'a> {
    type Item = WireChunkChoice<'a>;
    type IntoIter = std::iter::Chain<
        std::option::IntoIter<WireChunkChoice<'a>>,
        std::vec::IntoIter<WireChunkChoice<'a>>,
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.first.into_iter().chain(self.more)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for FirstChoices<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = FirstChoices<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list of choices")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<FirstChoices<'de>, A::Error> {
                let mut out = FirstChoices::default();
                while let Some(choice) = seq.next_element::<WireChunkChoice<'de>>()? {
                    if choice.index.unwrap_or(0) != 0 {
                        continue;
                    }
                    if out.first.is_none() {
                        out.first = Some(choice);
                    } else {
                        out.more.push(choice);
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_seq(V)
    }
}

/// The text of a message `content`: a string, or the
/// `text` strings of an array's parts joined; any other value has none.
#[derive(Debug, Default)]
struct ContentText<'a>(Option<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for ContentText<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        serde::de::DeserializeSeed::deserialize(TextAt::Content, d).map(ContentText)
    }
}

/// The text a value holds, if any.
type Found<'a> = Option<Cow<'a, str>>;

/// Where a value sits in a `content`, and so what text it has: the content itself (a string,
/// or an array of parts), one part of the array (an object's `text` key), or the value of
/// that key (a string). Values without text are read and dropped, never an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TextAt {
    Content,
    Part,
    PartValue,
}

impl<'de> serde::de::DeserializeSeed<'de> for TextAt {
    type Value = Found<'de>;

    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        d: D,
    ) -> std::result::Result<Found<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for TextAt {
    type Value = Found<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("message content")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> std::result::Result<Found<'de>, E> {
        Ok((self != TextAt::Part).then_some(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> std::result::Result<Found<'de>, E> {
        Ok((self != TextAt::Part).then(|| Cow::Owned(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> std::result::Result<Found<'de>, E> {
        Ok((self != TextAt::Part).then_some(Cow::Owned(v)))
    }

    fn visit_bool<E>(self, _: bool) -> std::result::Result<Found<'de>, E> {
        Ok(None)
    }

    fn visit_i64<E>(self, _: i64) -> std::result::Result<Found<'de>, E> {
        Ok(None)
    }

    fn visit_u64<E>(self, _: u64) -> std::result::Result<Found<'de>, E> {
        Ok(None)
    }

    fn visit_f64<E>(self, _: f64) -> std::result::Result<Found<'de>, E> {
        Ok(None)
    }

    fn visit_unit<E>(self) -> std::result::Result<Found<'de>, E> {
        Ok(None)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> std::result::Result<Found<'de>, A::Error> {
        if self != TextAt::Content {
            while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
            return Ok(None);
        }
        let mut text = String::new();
        while let Some(part) = seq.next_element_seed(TextAt::Part)? {
            if let Some(t) = part {
                text.push_str(&t);
            }
        }
        Ok(Some(Cow::Owned(text)))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<Found<'de>, A::Error> {
        // Only a part has a text key; as with JSON objects, the last one wins.
        let mut text = None;
        while let Some(IsText(is_text)) = map.next_key()? {
            if is_text && self == TextAt::Part {
                text = map.next_value_seed(TextAt::PartValue)?;
            } else {
                map.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        Ok(text)
    }
}

/// A map key: whether it is `text`.
struct IsText(bool);

impl<'de> Deserialize<'de> for IsText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Key;
        impl serde::de::Visitor<'_> for Key {
            type Value = IsText;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E>(self, v: &str) -> std::result::Result<IsText, E> {
                Ok(IsText(v == "text"))
            }
        }
        d.deserialize_str(Key)
    }
}

/// Parses OpenAI `chat.completion.chunk` frames into events.
///
/// Most frames of a stream are plain text chunks that differ from each other only in their
/// `content` string. The first such chunk is parsed whole, and the bytes around its text (a
/// `ContentShape`) are kept; a later frame made of the same bytes around another JSON string
/// is that string's text delta, read without parsing the rest again. Any other frame is parsed
/// whole, so the events are the same either way.
#[derive(Debug)]
pub struct OpenAiStreamParser {
    spec: CompatSpec,
    started: bool,
    done: bool,
    finish: Option<FinishReason>,
    usage: Option<Usage>,
    shape: Option<ContentShape>,
    /// How many more times a shape may be learned (a vendor whose chunks all differ, say by a
    /// random padding field, would otherwise pay for a new one on every chunk).
    learn: u8,
}

/// How many shapes one stream may learn.
const SHAPES_PER_STREAM: u8 = 4;

/// The bytes of a plain text chunk around its `content` string: `head` ends just before the
/// string's opening quote, `tail` starts just after its closing quote. Both come from a frame
/// whose whole parse gave exactly one text delta, no usage, no finish reason and no error, and
/// whose text is the string between them (the parser's own borrowed slice of the frame, so
/// it is that value and no look-alike); a frame with the same head and tail around another
/// JSON string therefore parses to that string's text delta alone.
#[derive(Debug)]
struct ContentShape {
    head: Box<str>,
    tail: Box<str>,
}

impl ContentShape {
    /// The shape of `data`, whose parsed text `text` is a slice of it.
    fn of(data: &str, text: &str) -> Option<Self> {
        let at = (text.as_ptr() as usize).checked_sub(data.as_ptr() as usize)?;
        let end = at.checked_add(text.len())?;
        let b = data.as_bytes();
        // A borrowed string lies between its quotes (unescaped text, so never a `\"`).
        if at == 0 || end >= b.len() || b[at - 1] != b'"' || b[end] != b'"' {
            return None;
        }
        Some(ContentShape {
            head: data.get(..at - 1)?.into(),
            tail: data.get(end + 1..)?.into(),
        })
    }

    /// The text of `data` when it has this shape; `None` sends it to the whole parse.
    fn text(&self, data: &str) -> Option<String> {
        let middle = data.strip_prefix(&*self.head)?.strip_suffix(&*self.tail)?;
        // One JSON string (whitespace around it is insignificant in the frame too); anything
        // else, such as an array of parts, is left to the whole parse.
        if !middle.trim_start().starts_with('"') {
            return None;
        }
        serde_json::from_str::<String>(middle).ok()
    }
}

impl OpenAiStreamParser {
    /// A parser for one stream.
    pub fn new(spec: CompatSpec) -> Self {
        OpenAiStreamParser {
            spec,
            started: false,
            done: false,
            finish: None,
            usage: None,
            shape: None,
            learn: SHAPES_PER_STREAM,
        }
    }
}

impl StreamParser for OpenAiStreamParser {
    fn on_frame(&mut self, frame: &Frame, out: &mut Vec<StreamEvent>) -> Result<()> {
        let data = frame.data.trim();
        if data == "[DONE]" {
            self.done = true;
            return Ok(());
        }
        if data.is_empty() {
            return Ok(());
        }
        if let Some(text) = self.shape.as_ref().and_then(|s| s.text(data)) {
            if !text.is_empty() {
                out.push(StreamEvent::TextDelta { text });
            }
            return Ok(());
        }
        let before = out.len();
        // The borrowed text of this frame's one content string, when it may teach a shape.
        let mut learnable: Option<&str> = None;
        let chunk: WireChunk<'_> = serde_json::from_str(data).map_err(|e| {
            Error::protocol(format!("{} sent a malformed stream frame", self.spec.id))
                .with_provider(self.spec.id)
                .with_source(e)
        })?;
        if let Some(err) = chunk.error {
            return Err(error_from_envelope(&self.spec, 0, &HeaderMap::new(), *err));
        }
        if !self.started {
            self.started = true;
            out.push(StreamEvent::Started {
                id: chunk.id.map(Str::into_owned).unwrap_or_default(),
                model: chunk.model.map(Str::into_owned).unwrap_or_default(),
                request_id: chunk.request_id.map(Str::into_owned),
            });
        }
        // Only index 0 is kept (see `FirstChoices`).
        for choice in chunk.choices {
            if let Some(delta) = choice.delta.or(choice.message.map(|m| *m)) {
                if let Some(r) = delta.reasoning_content.filter(|r| !r.is_empty()) {
                    out.push(StreamEvent::ReasoningDelta {
                        text: r.into_owned(),
                    });
                }
                if let Some(text) = delta.content.and_then(|c| c.0).filter(|t| !t.is_empty()) {
                    learnable = match &text {
                        Cow::Borrowed(t) => Some(*t),
                        Cow::Owned(_) => None,
                    };
                    out.push(StreamEvent::TextDelta {
                        text: text.into_owned(),
                    });
                }
                for (pos, tc) in delta.tool_calls.unwrap_or_default().into_iter().enumerate() {
                    let f = tc.function.unwrap_or_default();
                    out.push(StreamEvent::ToolCallDelta {
                        index: tc.index.unwrap_or(pos as u32),
                        id: tc.id.filter(|s| !s.is_empty()),
                        name: f.name.filter(|s| !s.is_empty()),
                        arguments: f.arguments.map(args_string).unwrap_or_default(),
                    });
                }
            }
            if let Some(fr) = choice
                .finish_reason
                .as_ref()
                .map(|s| &*s.0)
                .filter(|s| !s.is_empty())
            {
                self.finish = Some(FinishReason::parse(fr));
                learnable = None;
            }
        }
        if let Some(u) = chunk.usage {
            self.usage = Some(u.into_usage());
            learnable = None;
        }
        if self.learn > 0 && out.len() == before + 1 {
            if let Some(shape) = learnable.and_then(|t| ContentShape::of(data, t)) {
                self.shape = Some(shape);
                self.learn -= 1;
            }
        }
        Ok(())
    }

    fn is_done(&self) -> bool {
        self.done
    }

    fn finish(&mut self, out: &mut Vec<StreamEvent>) -> Result<()> {
        let reason = match (self.finish.take(), self.done) {
            (Some(r), _) => r,
            (None, true) => FinishReason::Stop,
            (None, false) => {
                return Err(Error::protocol(format!(
                    "{} stream ended before the answer was complete",
                    self.spec.id
                ))
                .with_provider(self.spec.id))
            }
        };
        if !self.started {
            out.push(StreamEvent::Started {
                id: String::new(),
                model: String::new(),
                request_id: None,
            });
        }
        if let Some(u) = self.usage.take() {
            out.push(StreamEvent::Usage(u));
        }
        out.push(StreamEvent::Finished { reason });
        Ok(())
    }
}

const fn compat_row(
    id: &'static str,
    description: &'static str,
    base: &'static str,
    base_env: &'static str,
    creds: &'static [CredentialSpec],
    models: &'static [&'static str],
    build: fn(&ProviderSpec, ProviderSettings) -> Result<Arc<dyn Provider>>,
) -> ProviderSpec {
    ProviderSpec {
        id,
        description,
        default_base_url: base,
        base_url_env: base_env,
        region_env: None,
        credentials: creds,
        models,
        build,
    }
}

/// Whether a DeepSeek model thinks: `deepseek-reasoner` does, `deepseek-chat` does not (the
/// API has no switch; the model is the choice).
fn deepseek_thinks(model: &str) -> bool {
    model.contains("reasoner")
}

const DEEPSEEK_COMPAT: CompatSpec = CompatSpec {
    id: "deepseek",
    embeddings_max_inputs: None,
    thinking: ThinkingSupport {
        switch: Switch::ByModel(deepseek_thinks),
        budget: false,
        effort: EffortSupport::None,
    },
    // Thinking mode with tools: the reasoning of the assistant turns goes back.
    send_reasoning: true,
    ..OPENAI
};
const MOONSHOT_COMPAT: CompatSpec = CompatSpec {
    id: "moonshot",
    embeddings_max_inputs: None,
    thinking: ThinkingSupport::NONE,
    ..OPENAI
};
const VLLM_COMPAT: CompatSpec = CompatSpec {
    id: "vllm",
    key_required: false,
    // A self-hosted server documents no list limit.
    embeddings_max_inputs: None,
    extensions: Extensions {
        top_k: true,
        repetition_penalty: true,
        enable_search: false,
    },
    // The chat template's switch (Qwen3 and other hybrid models), and vLLM's
    // `reasoning_effort` (low, medium, high; gpt-oss); no budget.
    thinking: ThinkingSupport {
        switch: Switch::Field,
        budget: false,
        effort: EffortSupport::Levels(&[
            ReasoningEffort::Low,
            ReasoningEffort::Medium,
            ReasoningEffort::High,
        ]),
    },
    thinking_fields: ThinkingFields::ChatTemplateKwargs,
    ..OPENAI
};

/// DeepSeek's OpenAI-compatible API.
pub const DEEPSEEK: ProviderSpec = compat_row(
    "deepseek",
    "DeepSeek (OpenAI-compatible)",
    "https://api.deepseek.com/v1",
    "DEEPSEEK_BASE_URL",
    &[CredentialSpec {
        field: "api_key",
        env: &["DEEPSEEK_API_KEY"],
        optional: false,
    }],
    &["deepseek-chat", "deepseek-reasoner"],
    |row, s| OpenAiCompat::from_settings(DEEPSEEK_COMPAT, row, &s),
);

/// Moonshot (Kimi) OpenAI-compatible API.
pub const MOONSHOT: ProviderSpec = compat_row(
    "moonshot",
    "Moonshot Kimi (OpenAI-compatible)",
    "https://api.moonshot.cn/v1",
    "MOONSHOT_BASE_URL",
    &[CredentialSpec {
        field: "api_key",
        env: &["MOONSHOT_API_KEY"],
        optional: false,
    }],
    &["moonshot-v1-8k", "moonshot-v1-32k", "kimi-k2-0711-preview"],
    |row, s| OpenAiCompat::from_settings(MOONSHOT_COMPAT, row, &s),
);

/// A self-hosted vLLM (or any OpenAI-compatible server), key optional.
pub const VLLM: ProviderSpec = compat_row(
    "vllm",
    "self-hosted vLLM or any OpenAI-compatible server (key optional)",
    "http://127.0.0.1:8000/v1",
    "VLLM_BASE_URL",
    &[CredentialSpec {
        field: "api_key",
        env: &["VLLM_API_KEY"],
        optional: true,
    }],
    &[],
    |row, s| OpenAiCompat::from_settings(VLLM_COMPAT, row, &s),
);

#[cfg(test)]
mod tests {
    use super::*;

    /// A message read into owned values (`content` as any JSON value, its text as DashScope's
    /// reading has it): the reading the borrowed [`WireDelta`] replaced, kept as the reference
    /// it must agree with.
    #[derive(Debug, Default, Deserialize)]
    struct WireMessage {
        #[serde(default)]
        content: Option<Value>,
        #[serde(default, alias = "reasoning")]
        reasoning_content: Option<String>,
    }

    impl WireMessage {
        fn text(&self) -> String {
            crate::providers::dashscope::content_text(&self.content)
        }
    }

    #[test]
    fn a_whole_answer_read_in_place_unescapes_and_keeps_every_choice() {
        let body = br#"{"id":"chatcmpl-\u0041b","object":"chat.completion","created":7,
            "model":"m\"q","system_fingerprint":"fp","choices":[
            {"index":0,"message":{"role":"assistant","content":"caf\u00e9 \ud83d\ude00\n",
              "reasoning":"why"},"logprobs":null,"finish_reason":"stop"},
            {"index":3,"message":{"content":[{"type":"text","text":"a"},{"text":"b"}],
              "tool_calls":[{"id":"c1","type":"function",
                "function":{"name":"f","arguments":{"x":1}}}]},"finish_reason":"tool_calls"},
            {"message":null}],
            "usage":{"prompt_tokens":3,"completion_tokens":4,
              "prompt_tokens_details":{"cached_tokens":1}}}"#;
        let resp = HttpResponse {
            status: 200,
            headers: HeaderMap::new(),
            body: bytes::Bytes::from_static(body),
        };
        let key = SecretString::new("sk-test".to_owned());
        let provider = OpenAiCompat::new(OPENAI, "http://127.0.0.1:9/v1", Some(key)).unwrap();
        let out = provider.parse_chat(&resp).unwrap();
        assert_eq!(out.id, "chatcmpl-Ab");
        assert_eq!(out.model, "m\"q");
        assert_eq!(out.created, Some(7));
        assert_eq!(out.choices.len(), 3);
        let first = &out.choices[0];
        assert_eq!(first.index, 0);
        assert_eq!(first.message.content, Content::Text("café 😀\n".into()));
        assert_eq!(first.message.reasoning.as_deref(), Some("why"));
        assert_eq!(first.finish_reason, Some(FinishReason::Stop));
        let second = &out.choices[1];
        assert_eq!(second.index, 3);
        assert_eq!(second.message.content, Content::Text("ab".into()));
        assert_eq!(second.message.tool_calls.len(), 1);
        assert_eq!(second.message.tool_calls[0].id, "c1");
        assert_eq!(second.message.tool_calls[0].arguments, r#"{"x":1}"#);
        assert_eq!(second.finish_reason, Some(FinishReason::ToolCalls));
        assert_eq!(out.choices[2].index, 2);
        assert_eq!(out.choices[2].message.content, Content::Text(String::new()));
        let usage = out.usage.unwrap();
        assert_eq!((usage.input_tokens, usage.output_tokens), (3, 4));
        assert_eq!((usage.total_tokens, usage.cached_tokens), (7, Some(1)));
    }

    #[test]
    fn issue_14_borrowed_chunk_content_reads_as_the_owned_message_does() {
        for content in [
            r#""plain""#,
            r#""esc\"aped \u00e9 \ud83d\ude00 \n""#,
            r#""""#,
            "null",
            "12",
            "true",
            r#"{"text": "an object is not an array of parts"}"#,
            r#"[]"#,
            r#"[{"type": "text", "text": "a"}, {"text": "b\u0021"}, "bare", 3, null]"#,
            r#"[{"text": {"text": "nested"}}, {"text": ["x"]}, {"text": 1}, [{"text": "deep"}]]"#,
            r#"[{"text": "first", "text": "last"}, {"image_url": {"url": "u"}, "text": "c"}]"#,
        ] {
            let body = format!(r#"{{"content": {content}, "reasoning": "r"}}"#);
            let owned: WireMessage = serde_json::from_str(&body).unwrap();
            let borrowed: WireDelta<'_> = serde_json::from_str(&body).unwrap();
            let text = borrowed.content.and_then(|c| c.0).unwrap_or_default();
            assert_eq!(text, owned.text(), "{content}");
            assert_eq!(
                borrowed.reasoning_content.as_deref(),
                owned.reasoning_content.as_deref()
            );
        }
        for bad in [r#"{"content": [1,}"#, r#"{"content": "x", "content": "y"}"#] {
            assert_eq!(
                serde_json::from_str::<WireDelta<'_>>(bad).is_err(),
                serde_json::from_str::<WireMessage>(bad).is_err(),
                "{bad}"
            );
        }
    }

    fn frame_events(data: &str) -> Result<Vec<StreamEvent>> {
        let mut p = OpenAiStreamParser::new(OPENAI);
        let mut out = Vec::new();
        p.on_frame(&Frame::data(data.to_owned()), &mut out)?;
        Ok(out)
    }

    #[test]
    fn issue_14_borrowed_chunks_unescape_and_keep_the_index_0_choices_in_order() {
        let events = frame_events(
            r#"{"id": "chatcmpl-\u0031", "model": "gpt\/4", "request_id": "r\"1", "choices": [
                {"index": 1, "delta": {"content": "other choice"}},
                {"index": 0, "delta": {"content": "a\u00e9", "reasoning": "why"}},
                {"delta": {"content": [{"text": "b"}]}, "finish_reason": "length"}]}"#,
        )
        .unwrap();
        assert_eq!(
            events,
            vec![
                StreamEvent::Started {
                    id: "chatcmpl-1".into(),
                    model: "gpt/4".into(),
                    request_id: Some("r\"1".into()),
                },
                StreamEvent::ReasoningDelta { text: "why".into() },
                StreamEvent::TextDelta { text: "aé".into() },
                StreamEvent::TextDelta { text: "b".into() },
            ]
        );
        // Wrong types are malformed frames, as with the owned structs.
        for bad in [
            r#"{"id": 5, "choices": []}"#,
            r#"{"choices": [{"index": "0"}]}"#,
            r#"{"choices": [{"index": 1, "finish_reason": 3}]}"#,
            r#"{"choices": {"index": 0}}"#,
        ] {
            let err = frame_events(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::UpstreamProtocol, "{bad}");
        }
    }

    #[test]
    fn issue_13_fuzz_usage_without_total_saturates() {
        // Found with the provider fuzz targets: `"prompt_tokens": 18446744073709551615` and no
        // `total_tokens` overflowed the computed total.
        let wire: WireUsage = serde_json::from_str(
            r#"{"prompt_tokens": 18446744073709551615, "completion_tokens": 1}"#,
        )
        .unwrap();
        let u = wire.into_usage();
        assert_eq!(
            (u.input_tokens, u.output_tokens, u.total_tokens),
            (u64::MAX, 1, u64::MAX)
        );
    }

    /// Events of `frames` through one parser, and through one that never learns a shape (so
    /// parses every frame whole); with how many frames the first read by their shape.
    fn with_and_without_shapes(
        frames: &[String],
    ) -> (Result<Vec<StreamEvent>>, Result<Vec<StreamEvent>>, usize) {
        fn run(p: &mut OpenAiStreamParser, frames: &[String]) -> Result<Vec<StreamEvent>> {
            let mut out = Vec::new();
            for f in frames {
                p.on_frame(&Frame::data(f.clone()), &mut out)?;
            }
            p.finish(&mut out)?;
            Ok(out)
        }
        let mut fast = OpenAiStreamParser::new(OPENAI);
        let mut whole = OpenAiStreamParser::new(OPENAI);
        whole.learn = 0;
        let mut shaped = 0;
        let mut probe = OpenAiStreamParser::new(OPENAI);
        for f in frames {
            let learned = probe.shape.is_some();
            let hit = probe
                .shape
                .as_ref()
                .and_then(|s| s.text(f.trim()))
                .is_some();
            shaped += usize::from(learned && hit);
            if probe
                .on_frame(&Frame::data(f.clone()), &mut Vec::new())
                .is_err()
            {
                break;
            }
        }
        (run(&mut fast, frames), run(&mut whole, frames), shaped)
    }

    fn text_chunk(text_json: &str) -> String {
        format!(
            r#"{{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{{"index":0,"delta":{{"content":{text_json}}},"logprobs":null,"finish_reason":null}}]}}"#
        )
    }

    #[test]
    fn issue_14_text_chunks_read_by_their_shape_give_the_events_of_a_whole_parse() {
        let role = r#"{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}"#;
        let finish = r#"{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#;
        let mut frames = vec![role.to_owned()];
        for t in [
            r#""Hello""#,
            r#"" world""#,
            r#""esc\"aped \u00e9 \ud83d\ude00 \n""#,
            r#""""#,
            r#" "spaced" "#,
            "null",
            r#"[{"type":"text","text":"parts"}]"#,
            r#"{"text":"an object"}"#,
            r#""a","role":"assistant""#,
            r#""中文""#,
            r#""back\\slash""#,
        ] {
            frames.push(text_chunk(t));
        }
        // Not the learned shape: another tail, a reasoning piece, a tool call.
        frames.push(
            text_chunk(r#""x""#).replace("\"finish_reason\":null", "\"finish_reason\":\"length\""),
        );
        frames.push(
            text_chunk(r#""y""#)
                .replace("\"content\":", "\"reasoning_content\":\"r\",\"content\":"),
        );
        frames.push(text_chunk(r#""after""#));
        frames.push(finish.to_owned());
        frames.push("[DONE]".to_owned());
        let (fast, whole, shaped) = with_and_without_shapes(&frames);
        assert_eq!(fast.unwrap(), whole.unwrap());
        // " world", the escaped text, "", " spaced " and the others in that shape after "Hello".
        assert!(shaped >= 6, "{shaped}");

        // A malformed middle is still a malformed frame.
        let mut bad = frames[..3].to_vec();
        bad.push(text_chunk(r#""open"#));
        let (fast, whole, _) = with_and_without_shapes(&bad);
        assert_eq!(fast.unwrap_err().kind(), whole.unwrap_err().kind());
    }

    #[test]
    fn issue_14_a_look_alike_content_string_teaches_no_shape_that_misreads() {
        // The text the parser read is the one whose position makes the shape: an extension
        // field holding a delta of its own, before or after the choices, changes nothing.
        let before = |ext: &str, text: &str| {
            format!(
                r#"{{"ext":{{"delta":{{"content":"{ext}"}}}},"choices":[{{"index":0,"delta":{{"content":"{text}"}}}}]}}"#
            )
        };
        let after = |ext: &str, text: &str| {
            format!(
                r#"{{"choices":[{{"index":0,"delta":{{"content":"{text}"}}}}],"ext":{{"delta":{{"content":"{ext}"}}}}}}"#
            )
        };
        let other = |ext: &str, text: &str| {
            format!(
                r#"{{"choices":[{{"index":1,"delta":{{"content":"{ext}"}}}},{{"index":0,"delta":{{"content":"{text}"}}}}]}}"#
            )
        };
        for shape in [before, after, other] {
            let frames = vec![
                shape("A", "A"),
                shape("A", "B"),
                shape("A", "C"),
                shape("B", "A"),
                shape("A", "A"),
                shape("A", "D"),
                "[DONE]".to_owned(),
            ];
            let (fast, whole, shaped) = with_and_without_shapes(&frames);
            assert_eq!(fast.unwrap(), whole.unwrap(), "{}", frames[0]);
            assert!(shaped >= 1, "{}", frames[0]);
        }
    }

    proptest::proptest! {
        #[test]
        fn issue_14_any_text_reads_the_same_by_shape_and_whole(
            texts in proptest::collection::vec(".{0,12}", 1..6)
        ) {
            let mut frames = vec![text_chunk(r#""first""#), text_chunk(r#""second""#)];
            for t in &texts {
                frames.push(text_chunk(&serde_json::to_string(t).unwrap()));
            }
            frames.push("[DONE]".to_owned());
            let (fast, whole, _) = with_and_without_shapes(&frames);
            proptest::prop_assert_eq!(fast.unwrap(), whole.unwrap());
        }
    }
}
