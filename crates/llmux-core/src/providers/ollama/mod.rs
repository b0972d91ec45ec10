//! Ollama's native API (PROTOCOLS.md §7): `/api/chat` (or `/api/generate` for
//! [`InputStyle::Prompt`]), `/api/embed`, `/api/tags`; no auth; streams are NDJSON ending with
//! a `done: true` object that carries `done_reason` and the token counts.
//!
//! Sampling settings go into `options` (`max_tokens` → `num_predict`, `repetition_penalty` →
//! `repeat_penalty`); `stream` is always sent (the server defaults to streaming). `extra`
//! keys are top-level fields (`keep_alive`, `raw`, `suffix`…), except Ollama's option names
//! (`num_ctx`, `mirostat`…), an `options` object, and `options.<name>` keys, which go into
//! `options`.

pub mod wire;

use std::sync::Arc;

use http::HeaderMap;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::body::Extra;
use super::openai_compat::wire::encode_tools;
use super::openai_compat::{describe, parse_json};
use super::thinking::{EffortSupport, Switch, ThinkingSupport};
use super::{
    check_base_url, header_request_id, join_url, Capabilities, CredentialSpec, Framing, Provider,
    ProviderSpec, StreamParser,
};
use crate::codec::Frame;
use crate::error::{kind_for_status, Error, ErrorKind, Result};
use crate::http::{HttpRequest, HttpResponse};
use crate::stream::StreamEvent;
use crate::types::*;

const ID: &str = "ollama";

/// Where Ollama listens when `OLLAMA_HOST` is unset.
pub const DEFAULT_HOST: &str = "http://127.0.0.1:11434";
const DEFAULT_PORT: u16 = 11434;

/// The names Ollama accepts inside `options` (an `extra` key with one of these names goes there).
pub const OPTION_NAMES: &[&str] = &[
    "num_ctx",
    "num_predict",
    "temperature",
    "top_k",
    "top_p",
    "min_p",
    "typical_p",
    "seed",
    "stop",
    "repeat_penalty",
    "repeat_last_n",
    "presence_penalty",
    "frequency_penalty",
    "mirostat",
    "mirostat_tau",
    "mirostat_eta",
    "num_keep",
    "num_batch",
    "num_gpu",
    "main_gpu",
    "num_thread",
    "use_mmap",
    "numa",
    "penalize_newline",
    "low_vram",
    "vocab_only",
    "use_mlock",
    "tfs_z",
];

/// What Ollama takes for thinking: `think` as `true`/`false`, or as a level `low`, `medium`,
/// `high` (the levels of gpt-oss models; PROTOCOLS.md 7 and the API reference); no budget.
pub const THINKING: ThinkingSupport = ThinkingSupport {
    switch: Switch::Field,
    budget: false,
    effort: EffortSupport::Levels(&[
        ReasoningEffort::Low,
        ReasoningEffort::Medium,
        ReasoningEffort::High,
    ]),
};

/// The registry row.
pub const SPEC: ProviderSpec = ProviderSpec {
    id: ID,
    description: "Ollama, native API (local models, no key; OLLAMA_HOST may omit the scheme)",
    default_base_url: DEFAULT_HOST,
    base_url_env: "OLLAMA_HOST",
    region_env: None,
    credentials: &[] as &[CredentialSpec],
    models: &[
        "llama3.2",
        "llama3.1",
        "qwen2.5",
        "qwen3",
        "mistral",
        "gemma3",
        "deepseek-r1",
        "nomic-embed-text",
    ],
    build: |row, s| {
        Ok(Arc::new(Ollama::new(
            s.base_url.as_deref().unwrap_or(row.default_base_url),
        )?))
    },
};

/// Normalises an `OLLAMA_HOST` value the way the official Python client does: the scheme
/// defaults to `http`, the host to `127.0.0.1`, the port to 11434 (80/443 when a scheme is
/// given without one); a path is kept. A bind-all address (`0.0.0.0`, `[::]`) is dialled on
/// loopback.
pub fn parse_host(host: &str) -> String {
    let host = host.trim();
    let (scheme, rest, explicit_scheme) = match host.split_once("://") {
        Some((s, r)) => (s.to_ascii_lowercase(), r, true),
        None => ("http".to_owned(), host, false),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    let default_port = match (explicit_scheme, scheme.as_str()) {
        (false, _) => DEFAULT_PORT,
        (true, "https") => 443,
        (true, _) => 80,
    };
    let (name, port) = if let Some(v6) = authority.strip_prefix('[') {
        match v6.split_once(']') {
            Some((addr, tail)) => (
                format!("[{addr}]"),
                tail.strip_prefix(':').and_then(|p| p.parse::<u16>().ok()),
            ),
            None => (authority.to_owned(), None),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((n, p)) => (n.to_owned(), p.parse::<u16>().ok()),
            None => (authority.to_owned(), None),
        }
    };
    let name = match name.as_str() {
        "" | "0.0.0.0" => "127.0.0.1".to_owned(),
        "[::]" => "[::1]".to_owned(),
        _ => name,
    };
    format!("{scheme}://{name}:{}{path}", port.unwrap_or(default_port))
}

/// The Ollama provider.
#[derive(Debug)]
pub struct Ollama {
    base_url: String,
}

impl Ollama {
    /// A provider for `host` (`http://127.0.0.1:11434`, or an `OLLAMA_HOST`-style value).
    pub fn new(host: &str) -> Result<Self> {
        Ok(Ollama {
            base_url: check_base_url(ID, &parse_host(host))?,
        })
    }

    fn post<B: serde::Serialize>(&self, path: &str, body: &B) -> Result<HttpRequest> {
        HttpRequest::post_json(join_url(&self.base_url, path), body)?
            .header("accept", "application/json")
    }

    /// The `/api/chat` or `/api/generate` body for `req` sent to the upstream `model`.
    pub fn chat_body<'a>(
        &self,
        model: &'a str,
        req: &'a ChatRequest,
        stream: bool,
    ) -> Result<wire::ChatBody<'a>> {
        let mut lacking = Vec::new();
        for (set, name) in [
            (req.n.is_some_and(|n| n > 1), "n (more than one choice)"),
            (req.parallel_tool_calls.is_some(), "parallel_tool_calls"),
            (req.enable_search.is_some(), "enable_search"),
            (
                matches!(
                    req.tool_choice,
                    Some(ToolChoice::Required | ToolChoice::Function(_))
                ),
                "tool_choice `required` or a named function",
            ),
            (
                req.input_style == InputStyle::Prompt && !req.tools.is_empty(),
                "tools with prompt input (/api/generate)",
            ),
        ] {
            if set {
                lacking.push(format!("`{name}`"));
            }
        }
        if !lacking.is_empty() {
            return Err(Error::unsupported(format!(
                "ollama does not accept {}",
                lacking.join(", ")
            ))
            .with_provider(ID));
        }
        let thinking = THINKING.resolve(ID, model, req.thinking.as_ref())?;
        let split = wire::SplitExtra::new(&req.extra);
        let tx = Extra::new(&split.top);
        let mut body = wire::ChatBody {
            model: tx.typed("model", Some(model)),
            stream: tx.typed("stream", Some(stream)),
            ..wire::ChatBody::default()
        };
        match req.input_style {
            InputStyle::Prompt => {
                let (system, prompt) = req.prompt_parts()?;
                body.prompt = tx.typed("prompt", Some(prompt));
                body.system = tx.typed("system", system);
                let images = prompt_images(req)?;
                body.images = tx.typed("images", (!images.is_empty()).then_some(images));
            }
            InputStyle::Messages => {
                body.messages = tx.typed("messages", Some(encode_messages(&req.messages)?));
                // tool_choice `none`: the model gets no tools to call.
                if !req.tools.is_empty() && req.tool_choice != Some(ToolChoice::None) {
                    body.tools = tx.typed("tools", Some(encode_tools(&req.tools)));
                }
            }
        }
        body.format = tx.typed(
            "format",
            match &req.response_format {
                None | Some(ResponseFormat::Text) => None,
                Some(ResponseFormat::JsonObject) => Some(wire::Format::Json("json")),
                Some(ResponseFormat::JsonSchema { schema, .. }) => {
                    Some(wire::Format::Schema(schema))
                }
            },
        );
        body.think = tx.typed(
            "think",
            match (thinking.effort, thinking.enabled) {
                (Some(level), _) => Some(wire::Think::Level(level.as_str())),
                (None, on) => on.map(wire::Think::On),
            },
        );
        body.options = split.options(wire::Options {
            temperature: req.temperature,
            top_p: req.top_p,
            top_k: req.top_k,
            num_predict: req.max_tokens,
            seed: req.seed,
            stop: (!req.stop.is_empty()).then_some(req.stop.as_slice()),
            repeat_penalty: req.repetition_penalty,
            presence_penalty: req.presence_penalty,
            frequency_penalty: req.frequency_penalty,
            extra: Map::new(),
        });
        body.extra = split.top_fields(body.options.is_some());
        Ok(body)
    }
}

/// An image part as Ollama wants it: bare base64 (from a `data:` URL).
fn image_base64(url: &str) -> Result<&str> {
    url.strip_prefix("data:")
        .and_then(|rest| rest.split_once(";base64,"))
        .map(|(_, b64)| b64)
        .ok_or_else(|| {
            Error::unsupported(
                "ollama takes images only inline, as base64 `data:` URLs (it cannot fetch URLs)",
            )
            .with_provider(ID)
        })
}

fn images_of(content: &Content) -> Result<Vec<&str>> {
    match content {
        Content::Text(_) => Ok(Vec::new()),
        Content::Parts(parts) => parts
            .iter()
            .filter_map(|p| match p {
                ContentPart::ImageUrl { url, .. } => Some(image_base64(url)),
                ContentPart::Text { .. } => None,
            })
            .collect(),
    }
}

fn prompt_images(req: &ChatRequest) -> Result<Vec<&str>> {
    let mut out = Vec::new();
    for m in &req.messages {
        out.extend(images_of(&m.content)?);
    }
    Ok(out)
}

fn encode_messages(messages: &[Message]) -> Result<Vec<wire::ChatMessage<'_>>> {
    let mut out = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        let images = images_of(&m.content)?;
        let mut calls = Vec::with_capacity(m.tool_calls.len());
        for c in &m.tool_calls {
            let arguments: Value = if c.arguments.trim().is_empty() {
                Value::Object(Map::new())
            } else {
                serde_json::from_str(&c.arguments).map_err(|_| {
                    Error::invalid_request(format!(
                        "messages[{i}]: tool call `{}` has arguments that are not JSON (ollama needs an object)",
                        c.name
                    ))
                    .with_provider(ID)
                })?
            };
            calls.push(wire::ToolCallSpec {
                function: wire::FunctionCallSpec {
                    name: &c.name,
                    arguments,
                },
            });
        }
        // Ollama names the function a result answers; find it by the call id.
        let tool_name = (m.role == Role::Tool)
            .then(|| {
                m.name.as_deref().or_else(|| {
                    let id = m.tool_call_id.as_deref()?;
                    messages[..i]
                        .iter()
                        .rev()
                        .flat_map(|p| p.tool_calls.iter())
                        .find(|c| c.id == id)
                        .map(|c| c.name.as_str())
                })
            })
            .flatten();
        out.push(wire::ChatMessage {
            role: m.role.as_str(),
            content: m.content.text(),
            images: (!images.is_empty()).then_some(images),
            tool_calls: (!calls.is_empty()).then_some(calls),
            tool_name,
        });
    }
    Ok(out)
}

#[derive(Debug, Default, Deserialize)]
struct WireReply {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    message: Option<WireMessage>,
    /// `/api/generate` text.
    #[serde(default)]
    response: Option<String>,
    /// `/api/generate` reasoning.
    #[serde(default)]
    thinking: Option<String>,
    #[serde(default)]
    done: bool,
    #[serde(default)]
    done_reason: Option<String>,
    #[serde(default)]
    prompt_eval_count: Option<u64>,
    #[serde(default)]
    eval_count: Option<u64>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
struct WireMessage {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    thinking: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<WireToolCall>>,
}

#[derive(Debug, Default, Deserialize)]
struct WireToolCall {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: WireFunction,
}

#[derive(Debug, Default, Deserialize)]
struct WireFunction {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<Value>,
}

/// Tool-call arguments as a JSON string: Ollama sends an object.
fn arguments_string(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "{}".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

impl WireReply {
    fn usage(&self) -> Usage {
        Usage::new(
            self.prompt_eval_count.unwrap_or(0),
            self.eval_count.unwrap_or(0),
        )
    }

    fn finish_reason(&self, has_calls: bool) -> FinishReason {
        match self.done_reason.as_deref() {
            Some("length") => FinishReason::Length,
            _ if has_calls => FinishReason::ToolCalls,
            _ => FinishReason::Stop,
        }
    }

    fn text(&self) -> Option<&str> {
        self.message
            .as_ref()
            .and_then(|m| m.content.as_deref())
            .or(self.response.as_deref())
    }

    fn reasoning(&self) -> Option<&str> {
        self.message
            .as_ref()
            .and_then(|m| m.thinking.as_deref())
            .or(self.thinking.as_deref())
    }

    fn tool_calls(&self) -> &[WireToolCall] {
        self.message
            .as_ref()
            .and_then(|m| m.tool_calls.as_deref())
            .unwrap_or_default()
    }
}

fn call_id(c: &WireToolCall, index: usize) -> String {
    c.id.clone()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| format!("call_{index}"))
}

/// An `{"error": …}` body or stream line.
fn error_value(v: &Value, status: u16, headers: &HeaderMap) -> Error {
    let msg = match v {
        Value::String(s) => s.clone(),
        Value::Object(o) => o
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        other => other.to_string(),
    };
    let lower = msg.to_ascii_lowercase();
    let kind = if lower.contains("does not support") {
        ErrorKind::Unsupported
    } else if lower.contains("not found") && (status == 404 || status == 0) {
        ErrorKind::NotFound
    } else if lower.contains("context length") || lower.contains("context window") {
        ErrorKind::ContextLengthExceeded
    } else if status == 0 {
        ErrorKind::UpstreamServer
    } else {
        kind_for_status(status)
    };
    let mut e = Error::new(kind, describe(kind, &msg))
        .with_provider(ID)
        .with_request_id(header_request_id(headers));
    if status != 0 {
        e = e.with_status(status);
    }
    e
}

impl Provider for Ollama {
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
            list_models: true,
        }
    }

    fn base_url(&self) -> &str {
        &self.base_url
    }

    fn framing(&self) -> Framing {
        Framing::Ndjson
    }

    fn build_chat(&self, model: &str, req: &ChatRequest, stream: bool) -> Result<HttpRequest> {
        req.validate_for(model).map_err(|e| e.with_provider(ID))?;
        let body = self.chat_body(model, req, stream)?;
        let path = match req.input_style {
            InputStyle::Prompt => "api/generate",
            InputStyle::Messages => "api/chat",
        };
        self.post(path, &body)
    }

    fn parse_chat(&self, resp: &HttpResponse) -> Result<ChatResponse> {
        let w: WireReply = parse_json(ID, &resp.body)?;
        if let Some(err) = &w.error {
            let status = if resp.status == 200 { 0 } else { resp.status };
            return Err(error_value(err, status, &resp.headers));
        }
        let tool_calls: Vec<ToolCall> = w
            .tool_calls()
            .iter()
            .enumerate()
            .map(|(i, c)| ToolCall {
                id: call_id(c, i),
                name: c.function.name.clone().unwrap_or_default(),
                arguments: arguments_string(c.function.arguments.as_ref()),
            })
            .collect();
        let finish = w.finish_reason(!tool_calls.is_empty());
        let request_id = header_request_id(&resp.headers);
        Ok(ChatResponse {
            id: request_id.clone().unwrap_or_default(),
            model: w.model.clone().unwrap_or_default(),
            created: None,
            choices: vec![Choice {
                index: 0,
                message: Message {
                    role: Role::Assistant,
                    content: Content::Text(w.text().unwrap_or_default().to_owned()),
                    name: None,
                    tool_calls,
                    tool_call_id: None,
                    reasoning: w.reasoning().filter(|r| !r.is_empty()).map(str::to_owned),
                    reasoning_signature: None,
                },
                finish_reason: Some(finish),
            }],
            usage: Some(w.usage()),
            request_id,
        })
    }

    fn stream_parser(&self, _model: &str, _req: &ChatRequest) -> Box<dyn StreamParser> {
        Box::new(OllamaStreamParser::default())
    }

    fn classify_error(&self, status: u16, headers: &HeaderMap, body: &[u8]) -> Error {
        #[derive(Deserialize)]
        struct Body {
            error: Value,
        }
        match serde_json::from_slice::<Body>(body) {
            Ok(b) => error_value(&b.error, status, headers),
            Err(_) => {
                if body.is_empty() || body.starts_with(b"<") {
                    return super::openai_compat::non_json_error(ID, status, headers, body);
                }
                // Ollama answers some failures (404 on an unknown path) in plain text.
                let text = String::from_utf8_lossy(&body[..body.len().min(512)]);
                error_value(&Value::from(text.trim()), status, headers)
            }
        }
    }

    fn build_embeddings(&self, model: &str, req: &EmbeddingRequest) -> Result<HttpRequest> {
        req.validate_for(model).map_err(|e| e.with_provider(ID))?;
        if req.text_type.is_some() {
            return Err(
                Error::unsupported("ollama embeddings do not accept `text_type`").with_provider(ID),
            );
        }
        let split = wire::SplitExtra::new(&req.extra);
        let tx = Extra::new(&split.top);
        let options = split.options(wire::Options::default());
        let body = wire::EmbedBody {
            model: tx.typed("model", Some(model)),
            input: tx.typed("input", Some(req.input.as_slice())),
            dimensions: tx.typed("dimensions", req.dimensions),
            extra: split.top_fields(options.is_some()),
            options,
        };
        self.post("api/embed", &body)
    }

    fn parse_embeddings(&self, resp: &HttpResponse) -> Result<EmbeddingResponse> {
        #[derive(Deserialize)]
        struct Wire {
            #[serde(default)]
            model: Option<String>,
            #[serde(default)]
            embeddings: Vec<Vec<f32>>,
            #[serde(default)]
            prompt_eval_count: Option<u64>,
            #[serde(default)]
            error: Option<Value>,
        }
        let w: Wire = parse_json(ID, &resp.body)?;
        if let Some(err) = &w.error {
            let status = if resp.status == 200 { 0 } else { resp.status };
            return Err(error_value(err, status, &resp.headers));
        }
        Ok(EmbeddingResponse {
            model: w.model.unwrap_or_default(),
            data: w
                .embeddings
                .into_iter()
                .enumerate()
                .map(|(i, vector)| Embedding {
                    index: i as u32,
                    vector,
                })
                .collect(),
            usage: w.prompt_eval_count.map(|n| Usage::new(n, 0)),
            request_id: header_request_id(&resp.headers),
        })
    }

    fn build_models(&self) -> Result<HttpRequest> {
        HttpRequest::get(join_url(&self.base_url, "api/tags")).header("accept", "application/json")
    }

    fn parse_models(&self, resp: &HttpResponse) -> Result<Vec<ModelInfo>> {
        #[derive(Deserialize)]
        struct Item {
            #[serde(default)]
            name: Option<String>,
            #[serde(default)]
            model: Option<String>,
        }
        #[derive(Deserialize)]
        struct Wire {
            #[serde(default)]
            models: Vec<Item>,
        }
        let w: Wire = parse_json(ID, &resp.body)?;
        Ok(w.models
            .into_iter()
            .filter_map(|m| m.model.or(m.name))
            .map(|id| ModelInfo {
                id,
                owned_by: None,
                created: None,
            })
            .collect())
    }
}

/// Turns Ollama NDJSON lines into events; the `done: true` line ends the stream.
#[derive(Debug, Default)]
pub struct OllamaStreamParser {
    started: bool,
    done: bool,
    calls: u32,
}

impl StreamParser for OllamaStreamParser {
    fn on_frame(&mut self, frame: &Frame, out: &mut Vec<StreamEvent>) -> Result<()> {
        let data = frame.data.trim();
        if data.is_empty() || self.done {
            return Ok(());
        }
        let w: WireReply = serde_json::from_str(data).map_err(|e| {
            Error::protocol("ollama sent a malformed stream line")
                .with_provider(ID)
                .with_source(e)
        })?;
        if let Some(err) = &w.error {
            return Err(error_value(err, 0, &HeaderMap::new()));
        }
        if !self.started {
            self.started = true;
            out.push(StreamEvent::Started {
                id: String::new(),
                model: w.model.clone().unwrap_or_default(),
                request_id: None,
            });
        }
        if let Some(r) = w.reasoning().filter(|r| !r.is_empty()) {
            out.push(StreamEvent::ReasoningDelta { text: r.to_owned() });
        }
        if let Some(t) = w.text().filter(|t| !t.is_empty()) {
            out.push(StreamEvent::TextDelta { text: t.to_owned() });
        }
        for c in w.tool_calls() {
            let index = self.calls;
            if index >= 1024 {
                return Err(Error::protocol("ollama sent too many tool calls").with_provider(ID));
            }
            self.calls += 1;
            out.push(StreamEvent::ToolCallDelta {
                index,
                id: Some(call_id(c, index as usize)),
                name: c.function.name.clone(),
                arguments: arguments_string(c.function.arguments.as_ref()),
            });
        }
        if w.done {
            self.done = true;
            out.push(StreamEvent::Usage(w.usage()));
            out.push(StreamEvent::Finished {
                reason: w.finish_reason(self.calls > 0),
            });
        }
        Ok(())
    }

    fn is_done(&self) -> bool {
        self.done
    }

    fn finish(&mut self, _out: &mut Vec<StreamEvent>) -> Result<()> {
        if self.done {
            Ok(())
        } else {
            Err(
                Error::protocol("ollama stream ended before its `done: true` line")
                    .with_provider(ID),
            )
        }
    }
}
