//! Anthropic's Messages wire format, as the official `anthropic` SDK declares it: the typed
//! `POST /v1/messages` body built from a [`ChatRequest`], the `Message` answer, the stream
//! events and the error envelope.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::MessagesSpec;
use crate::error::{Error, Result};
use crate::providers::body::Extra;
use crate::providers::thinking::ThinkingSupport;
use crate::types::*;

/// `max_tokens` sent when the request sets none (the API requires it): this many answer
/// tokens, plus the thinking budget when thinking is on.
pub const DEFAULT_MAX_TOKENS: u32 = 4096;
/// The thinking budget sent when thinking is turned on without one (the API's minimum).
pub const DEFAULT_THINKING_BUDGET: u32 = 1024;

/// What the Messages API takes for thinking: `thinking` enabled with a `budget_tokens` (at least
/// 1024; [`DEFAULT_THINKING_BUDGET`] when none is given) or disabled; an effort is sent as its
/// budget.
pub const THINKING: ThinkingSupport = ThinkingSupport::SWITCH_AND_BUDGET;

/// The `POST /v1/messages` body. Every field but the vendor ones may be replaced or removed
/// through `extra` (see [`Extra`]).
#[derive(Debug, Serialize)]
pub struct MessagesRequest<'a> {
    /// The upstream model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<&'a str>,
    /// Output cap (required by the API).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// The system messages, gathered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<MessageContent<'a>>,
    /// The conversation, in alternating turns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<InputMessage<'a>>>,
    /// `true` for a stream (omitted otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Sampling temperature, 0 to 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Top-k sampling.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    /// Stop sequences.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_sequences: Option<&'a [String]>,
    /// Client tools.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<ToolParam<'a>>>,
    /// Tool choice (and `disable_parallel_tool_use`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoiceParam<'a>>,
    /// Extended thinking.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinking: Option<ThinkingParam>,
    /// `user_id` for abuse monitoring.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata<'a>>,
    /// Structured output (a JSON schema).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_config: Option<OutputConfig<'a>>,
    /// Vendor fields from `extra`, verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One turn of the conversation.
#[derive(Debug, Serialize)]
pub struct InputMessage<'a> {
    /// `user` or `assistant`.
    pub role: &'static str,
    /// A string, or content blocks.
    pub content: MessageContent<'a>,
}

/// Content as a plain string or as blocks (also the shape of `system` and of a tool result's
/// `content`).
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum MessageContent<'a> {
    /// Plain text.
    Text(Cow<'a, str>),
    /// Content blocks.
    Blocks(Vec<Block<'a>>),
}

/// An input content block.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Block<'a> {
    /// The reasoning of an earlier assistant turn, returned with the signature the API gave
    /// it (required before the turn's `tool_use` blocks while thinking is on).
    Thinking {
        /// The reasoning text, as the API returned it.
        thinking: &'a str,
        /// The API's signature of it.
        signature: &'a str,
    },
    /// Text.
    Text {
        /// The text (never empty: the API rejects empty text blocks).
        text: Cow<'a, str>,
    },
    /// An image, inline or by URL.
    Image {
        /// Where the image is.
        source: ImageSource<'a>,
    },
    /// A tool call the assistant made.
    ToolUse {
        /// The call id.
        id: &'a str,
        /// The tool name.
        name: &'a str,
        /// The arguments, a JSON object.
        input: Value,
    },
    /// The result of a tool call, in a user turn.
    ToolResult {
        /// The id of the call answered.
        tool_use_id: &'a str,
        /// What the tool returned.
        content: MessageContent<'a>,
    },
}

/// An image source.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ImageSource<'a> {
    /// Base64 bytes from a `data:` URL.
    Base64 {
        /// `image/png`, `image/jpeg`…
        media_type: &'a str,
        /// The base64 data.
        data: &'a str,
    },
    /// An `http(s)` URL the API fetches.
    Url {
        /// The URL.
        url: &'a str,
    },
}

/// A client tool.
#[derive(Debug, Serialize)]
pub struct ToolParam<'a> {
    /// Tool name.
    pub name: &'a str,
    /// What it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<&'a str>,
    /// JSON Schema of the input (the request's `parameters`).
    pub input_schema: &'a Value,
    /// Strict schema adherence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// `tool_choice`.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToolChoiceParam<'a> {
    /// The model decides.
    Auto {
        /// `parallel_tool_calls: false`.
        #[serde(skip_serializing_if = "Option::is_none")]
        disable_parallel_tool_use: Option<bool>,
    },
    /// Some tool must be called (`required`).
    Any {
        /// `parallel_tool_calls: false`.
        #[serde(skip_serializing_if = "Option::is_none")]
        disable_parallel_tool_use: Option<bool>,
    },
    /// This tool must be called.
    Tool {
        /// The tool.
        name: &'a str,
        /// `parallel_tool_calls: false`.
        #[serde(skip_serializing_if = "Option::is_none")]
        disable_parallel_tool_use: Option<bool>,
    },
    /// No tool may be called.
    None,
}

/// `thinking`.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ThinkingParam {
    /// Thinking on, with a token budget.
    Enabled {
        /// Reasoning tokens allowed (at least 1024, less than `max_tokens`).
        budget_tokens: u32,
    },
    /// Thinking off.
    Disabled,
}

/// `metadata`.
#[derive(Debug, Serialize)]
pub struct Metadata<'a> {
    /// The end-user id (the request's `user`).
    pub user_id: &'a str,
}

/// `output_config`.
#[derive(Debug, Serialize)]
pub struct OutputConfig<'a> {
    /// The output format.
    pub format: OutputFormat<'a>,
}

/// `output_config.format`.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutputFormat<'a> {
    /// JSON matching a schema.
    JsonSchema {
        /// The schema.
        schema: &'a Value,
    },
}

fn invalid(spec: &MessagesSpec, msg: String) -> Error {
    Error::invalid_request(msg).with_provider(spec.id)
}

/// The `POST /v1/messages` body of `req` for the upstream `model`. Options the Messages API
/// lacks fail with `Unsupported`, naming every one; assistant `reasoning` goes back as a
/// thinking block when it carries the signature the API gave it, and is not sent otherwise.
pub fn chat_body<'a>(
    spec: &MessagesSpec,
    model: &'a str,
    req: &'a ChatRequest,
    stream: bool,
) -> Result<MessagesRequest<'a>> {
    let mut lacking: Vec<&str> = Vec::new();
    for (set, name) in [
        (req.presence_penalty.is_some(), "presence_penalty"),
        (req.frequency_penalty.is_some(), "frequency_penalty"),
        (req.repetition_penalty.is_some(), "repetition_penalty"),
        (req.seed.is_some(), "seed"),
        (req.n.is_some_and(|n| n > 1), "n (more than one choice)"),
        (req.enable_search.is_some(), "enable_search"),
        (
            matches!(req.response_format, Some(ResponseFormat::JsonObject)),
            "response_format `json_object` (give a JSON schema)",
        ),
        (
            !spec.structured_output
                && matches!(req.response_format, Some(ResponseFormat::JsonSchema { .. })),
            "response_format `json_schema`",
        ),
    ] {
        if set {
            lacking.push(name);
        }
    }
    if !lacking.is_empty() {
        return Err(Error::unsupported(format!(
            "{} does not accept {}",
            spec.id,
            lacking
                .iter()
                .map(|l| format!("`{l}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .with_provider(spec.id));
    }
    if let Some(t) = req.temperature.filter(|t| *t > 1.0) {
        return Err(invalid(
            spec,
            format!("{} takes a `temperature` between 0 and 1, got {t}", spec.id),
        ));
    }
    let ex = Extra::new(&req.extra);
    let (system, messages) = encode_conversation(spec, &req.messages)?;
    let plan = THINKING.resolve(spec.id, model, req.thinking.as_ref())?;
    let thinking = plan.enabled.map(|on| {
        if on {
            ThinkingParam::Enabled {
                budget_tokens: plan.budget_tokens.unwrap_or(DEFAULT_THINKING_BUDGET),
            }
        } else {
            ThinkingParam::Disabled
        }
    });
    let budget = match thinking {
        Some(ThinkingParam::Enabled { budget_tokens }) => budget_tokens,
        _ => 0,
    };
    let max_tokens = req
        .max_tokens
        .unwrap_or_else(|| DEFAULT_MAX_TOKENS.saturating_add(budget));
    let (tools, tool_choice) = encode_tools(req);
    Ok(MessagesRequest {
        model: ex.typed("model", Some(model)),
        max_tokens: ex.typed("max_tokens", Some(max_tokens)),
        system: ex.typed("system", system),
        messages: ex.typed("messages", Some(messages)),
        stream: ex.typed("stream", stream.then_some(true)),
        temperature: ex.typed("temperature", req.temperature),
        top_p: ex.typed("top_p", req.top_p),
        top_k: ex.typed("top_k", req.top_k),
        stop_sequences: ex.typed(
            "stop_sequences",
            (!req.stop.is_empty()).then_some(req.stop.as_slice()),
        ),
        tools: ex.typed("tools", tools),
        tool_choice: ex.typed("tool_choice", tool_choice),
        thinking: ex.typed("thinking", thinking),
        metadata: ex.typed(
            "metadata",
            req.user.as_deref().map(|user_id| Metadata { user_id }),
        ),
        output_config: ex.typed(
            "output_config",
            match &req.response_format {
                Some(ResponseFormat::JsonSchema { schema, .. }) => Some(OutputConfig {
                    format: OutputFormat::JsonSchema { schema },
                }),
                _ => None,
            },
        ),
        extra: ex.fields(&[]),
    })
}

/// `tools` and `tool_choice`; without tools no choice is sent (the API has nothing to choose).
fn encode_tools(req: &ChatRequest) -> (Option<Vec<ToolParam<'_>>>, Option<ToolChoiceParam<'_>>) {
    if req.tools.is_empty() {
        return (None, None);
    }
    let tools = req
        .tools
        .iter()
        .map(|t| ToolParam {
            name: &t.name,
            description: t.description.as_deref(),
            input_schema: &t.parameters,
            strict: t.strict,
        })
        .collect();
    let disable = (req.parallel_tool_calls == Some(false)).then_some(true);
    let choice = match (&req.tool_choice, disable) {
        (None, None) => None,
        (None | Some(ToolChoice::Auto), _) => Some(ToolChoiceParam::Auto {
            disable_parallel_tool_use: disable,
        }),
        (Some(ToolChoice::Required), _) => Some(ToolChoiceParam::Any {
            disable_parallel_tool_use: disable,
        }),
        (Some(ToolChoice::Function(name)), _) => Some(ToolChoiceParam::Tool {
            name,
            disable_parallel_tool_use: disable,
        }),
        (Some(ToolChoice::None), _) => Some(ToolChoiceParam::None),
    };
    (Some(tools), choice)
}

/// System messages gathered into `system` (one string, or text blocks for several), and the
/// rest as alternating turns: tool results become `tool_result` blocks of a user turn, and
/// consecutive messages of one role share a turn (tool results first, as the API requires
/// after a `tool_use`).
fn encode_conversation<'a>(
    spec: &MessagesSpec,
    messages: &'a [Message],
) -> Result<(Option<MessageContent<'a>>, Vec<InputMessage<'a>>)> {
    let mut system: Vec<Cow<'a, str>> = Vec::new();
    let mut turns: Vec<(&'static str, Vec<Block<'a>>)> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let (role, blocks) = match m.role {
            Role::System => {
                if m.content.has_images() {
                    return Err(invalid(
                        spec,
                        format!("messages[{i}]: a system message takes text only"),
                    ));
                }
                system.push(m.content.text());
                continue;
            }
            Role::User => ("user", content_blocks(spec, i, &m.content)?),
            Role::Assistant => {
                if m.content.has_images() {
                    return Err(invalid(
                        spec,
                        format!("messages[{i}]: an assistant message takes text only"),
                    ));
                }
                let mut blocks = Vec::with_capacity(2 + m.tool_calls.len());
                // Reasoning goes back only with its signature: the API verifies it, and a
                // block without one (reasoning from another vendor) would be refused.
                if let (Some(thinking), Some(signature)) =
                    (m.reasoning.as_deref(), m.reasoning_signature.as_deref())
                {
                    blocks.push(Block::Thinking {
                        thinking,
                        signature,
                    });
                }
                let text = m.content.text();
                if !text.is_empty() {
                    blocks.push(Block::Text { text });
                }
                for (j, c) in m.tool_calls.iter().enumerate() {
                    blocks.push(Block::ToolUse {
                        id: &c.id,
                        name: &c.name,
                        input: tool_input(spec, i, j, c)?,
                    });
                }
                ("assistant", blocks)
            }
            Role::Tool => {
                let id = m.tool_call_id.as_deref().unwrap_or_default();
                let content = match &m.content {
                    Content::Text(t) => MessageContent::Text(Cow::Borrowed(t)),
                    Content::Parts(_) => {
                        MessageContent::Blocks(content_blocks(spec, i, &m.content)?)
                    }
                };
                (
                    "user",
                    vec![Block::ToolResult {
                        tool_use_id: id,
                        content,
                    }],
                )
            }
        };
        match turns.last_mut() {
            Some((last, prev)) if *last == role => prev.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    }
    system.retain(|t| !t.is_empty());
    let system = match system.len() {
        0 => None,
        1 => system.pop().map(MessageContent::Text),
        _ => Some(MessageContent::Blocks(
            system
                .into_iter()
                .map(|text| Block::Text { text })
                .collect(),
        )),
    };
    let messages = turns
        .into_iter()
        .map(|(role, mut blocks)| {
            let content = match blocks.as_slice() {
                [Block::Text { .. }] => match blocks.pop() {
                    Some(Block::Text { text }) => MessageContent::Text(text),
                    _ => MessageContent::Blocks(blocks),
                },
                [] => MessageContent::Text(Cow::Borrowed("")),
                _ => MessageContent::Blocks(blocks),
            };
            InputMessage { role, content }
        })
        .collect();
    Ok((system, messages))
}

/// Text and image blocks of a user (or tool result) content; empty text parts are skipped.
fn content_blocks<'a>(spec: &MessagesSpec, i: usize, c: &'a Content) -> Result<Vec<Block<'a>>> {
    match c {
        Content::Text(t) => Ok(vec![Block::Text {
            text: Cow::Borrowed(t),
        }]),
        Content::Parts(parts) => parts
            .iter()
            .filter(|p| !matches!(p, ContentPart::Text { text } if text.is_empty()))
            .map(|p| match p {
                ContentPart::Text { text } => Ok(Block::Text {
                    text: Cow::Borrowed(text),
                }),
                ContentPart::ImageUrl { url, .. } => Ok(Block::Image {
                    source: image_source(spec, i, url)?,
                }),
            })
            .collect(),
    }
}

/// A `data:<type>;base64,<data>` URL as inline bytes, an `http(s)` URL as a URL source.
fn image_source<'a>(spec: &MessagesSpec, i: usize, url: &'a str) -> Result<ImageSource<'a>> {
    if let Some(rest) = url.strip_prefix("data:") {
        let (meta, data) = rest.split_once(',').unwrap_or((rest, ""));
        let media_type = meta.strip_suffix(";base64").unwrap_or_default();
        if media_type.is_empty() || data.is_empty() {
            return Err(invalid(
                spec,
                format!(
                    "messages[{i}]: an image `data:` URL must be `data:<media type>;base64,<data>`"
                ),
            ));
        }
        return Ok(ImageSource::Base64 { media_type, data });
    }
    if url.starts_with("https://") || url.starts_with("http://") {
        return Ok(ImageSource::Url { url });
    }
    Err(invalid(
        spec,
        format!("messages[{i}]: an image must be an http(s) URL or a base64 `data:` URL"),
    ))
}

/// A tool call's `arguments` as the JSON object `tool_use.input` is: empty means `{}`.
fn tool_input(spec: &MessagesSpec, i: usize, j: usize, c: &ToolCall) -> Result<Value> {
    let args = c.arguments.trim();
    if args.is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    match serde_json::from_str::<Value>(args) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(invalid(
            spec,
            format!(
                "messages[{i}].tool_calls[{j}] (`{}`): `arguments` must be a JSON object",
                c.name
            ),
        )),
        Err(e) => Err(invalid(
            spec,
            format!(
                "messages[{i}].tool_calls[{j}] (`{}`): `arguments` is not valid JSON ({e})",
                c.name
            ),
        )),
    }
}

/// A `Message` answer (also `message_start.message`), or an error envelope in a 2xx body.
#[derive(Debug, Default, Deserialize)]
pub struct MessageResponse {
    /// `message`, or `error`.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// The message id.
    #[serde(default)]
    pub id: Option<String>,
    /// The model that answered.
    #[serde(default)]
    pub model: Option<String>,
    /// The content blocks.
    #[serde(default)]
    pub content: Vec<ResponseBlock>,
    /// Why the model stopped (null in `message_start`).
    #[serde(default)]
    pub stop_reason: Option<String>,
    /// Token usage.
    #[serde(default)]
    pub usage: Option<WireUsage>,
    /// An error (for `type: error`).
    #[serde(default)]
    pub error: Option<WireError>,
}

/// An output content block; server-tool blocks and other kinds are read and ignored.
#[derive(Debug, Deserialize)]
#[serde(tag = "type")]
pub enum ResponseBlock {
    /// Text.
    #[serde(rename = "text")]
    Text {
        /// The text.
        #[serde(default)]
        text: String,
    },
    /// Reasoning.
    #[serde(rename = "thinking")]
    Thinking {
        /// The reasoning text.
        #[serde(default)]
        thinking: String,
        /// Its signature (empty at a stream's `content_block_start`).
        #[serde(default)]
        signature: String,
    },
    /// A tool call.
    #[serde(rename = "tool_use")]
    ToolUse {
        /// The call id.
        #[serde(default)]
        id: String,
        /// The tool name.
        #[serde(default)]
        name: String,
        /// The arguments object.
        #[serde(default)]
        input: Option<Value>,
    },
    /// Anything else (`redacted_thinking`, `server_tool_use`, …).
    #[serde(other)]
    Other,
}

/// `usage`, in a `Message` or a `message_delta` event.
#[derive(Debug, Default, Clone, Copy, Deserialize)]
pub struct WireUsage {
    /// Input tokens not read from or written to the cache.
    #[serde(default)]
    pub input_tokens: Option<u64>,
    /// Output tokens (reasoning included).
    #[serde(default)]
    pub output_tokens: Option<u64>,
    /// Input tokens written to the cache.
    #[serde(default)]
    pub cache_creation_input_tokens: Option<u64>,
    /// Input tokens read from the cache.
    #[serde(default)]
    pub cache_read_input_tokens: Option<u64>,
    /// The reasoning part of the output.
    #[serde(default)]
    pub output_tokens_details: Option<OutputDetails>,
}

/// `usage.output_tokens_details`.
#[derive(Debug, Default, Clone, Copy, Deserialize)]
pub struct OutputDetails {
    /// Reasoning tokens within `output_tokens`.
    #[serde(default)]
    pub thinking_tokens: Option<u64>,
}

impl WireUsage {
    /// Later counts (a `message_delta`'s cumulative usage) over earlier ones.
    pub fn merge(&mut self, later: WireUsage) {
        fn over(a: &mut Option<u64>, b: Option<u64>) {
            if b.is_some() {
                *a = b;
            }
        }
        over(&mut self.input_tokens, later.input_tokens);
        over(&mut self.output_tokens, later.output_tokens);
        over(
            &mut self.cache_creation_input_tokens,
            later.cache_creation_input_tokens,
        );
        over(
            &mut self.cache_read_input_tokens,
            later.cache_read_input_tokens,
        );
        if later.output_tokens_details.is_some() {
            self.output_tokens_details = later.output_tokens_details;
        }
    }

    /// Core usage: input counts every prompt token (uncached, cache reads and cache writes),
    /// as OpenAI's `prompt_tokens` does, with the cache reads as `cached_tokens`.
    pub fn usage(&self) -> Usage {
        let read = self.cache_read_input_tokens;
        let input = self
            .input_tokens
            .unwrap_or(0)
            .saturating_add(read.unwrap_or(0))
            .saturating_add(self.cache_creation_input_tokens.unwrap_or(0));
        let mut u = Usage::new(input, self.output_tokens.unwrap_or(0));
        u.cached_tokens = read;
        u.reasoning_tokens = self.output_tokens_details.and_then(|d| d.thinking_tokens);
        u
    }
}

/// `{"type": "…_error", "message": "…"}`.
#[derive(Debug, Default, Deserialize)]
pub struct WireError {
    /// The error type (`rate_limit_error`, `overloaded_error`…).
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// The message.
    #[serde(default)]
    pub message: Option<String>,
}

/// An error body: Anthropic's `{"type":"error","error":{…},"request_id"}`, or a compatible
/// endpoint's own `{"code","message","request_id"}`.
#[derive(Debug, Default, Deserialize)]
pub struct ErrorEnvelope {
    /// The error.
    #[serde(default)]
    pub error: Option<WireError>,
    /// A vendor code (compatible endpoints).
    #[serde(default)]
    pub code: Option<Value>,
    /// A vendor message (compatible endpoints).
    #[serde(default)]
    pub message: Option<String>,
    /// The request id.
    #[serde(default)]
    pub request_id: Option<String>,
}

/// One stream event (the `data` of an SSE frame).
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamFrame {
    /// The message begins: id, model, input usage.
    MessageStart {
        /// The message so far.
        message: MessageResponse,
    },
    /// A content block begins.
    ContentBlockStart {
        /// The block's position in the message.
        index: u32,
        /// The block (text, thinking, tool_use with an empty input…).
        content_block: ResponseBlock,
    },
    /// A piece of a block.
    ContentBlockDelta {
        /// The block's position.
        index: u32,
        /// The piece.
        delta: BlockDelta,
    },
    /// A block ends.
    ContentBlockStop {
        /// The block's position.
        index: u32,
    },
    /// The stop reason and cumulative output usage.
    MessageDelta {
        /// `stop_reason`.
        #[serde(default)]
        delta: MessageDeltaBody,
        /// Cumulative usage.
        #[serde(default)]
        usage: Option<WireUsage>,
    },
    /// The end marker.
    MessageStop,
    /// Keep-alive.
    Ping,
    /// A failure after the stream began.
    Error {
        /// What failed.
        #[serde(default)]
        error: WireError,
    },
    /// An event type added later: ignored, as the SDK does.
    #[serde(other)]
    Other,
}

/// `message_delta.delta`.
#[derive(Debug, Default, Deserialize)]
pub struct MessageDeltaBody {
    /// Why the model stopped.
    #[serde(default)]
    pub stop_reason: Option<String>,
}

/// `content_block_delta.delta`.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BlockDelta {
    /// Answer text.
    TextDelta {
        /// The text.
        #[serde(default)]
        text: String,
    },
    /// A fragment of a tool call's input JSON.
    InputJsonDelta {
        /// The fragment.
        #[serde(default)]
        partial_json: String,
    },
    /// Reasoning text.
    ThinkingDelta {
        /// The text.
        #[serde(default)]
        thinking: String,
    },
    /// The signature of a thinking block.
    SignatureDelta {
        /// The signature (or a piece of it).
        #[serde(default)]
        signature: String,
    },
    /// Citations and later kinds: ignored.
    #[serde(other)]
    Other,
}

/// `GET /v1/models`.
#[derive(Debug, Default, Deserialize)]
pub struct ModelsPage {
    /// The models.
    #[serde(default)]
    pub data: Vec<ModelEntry>,
}

/// One model of the list.
#[derive(Debug, Deserialize)]
pub struct ModelEntry {
    /// Model id.
    pub id: String,
    /// RFC 3339 release time.
    #[serde(default)]
    pub created_at: Option<String>,
}
