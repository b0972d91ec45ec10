//! Chat requests and responses, independent of any vendor's wire format.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions for the model (OpenAI's `developer` role maps here too).
    #[serde(alias = "developer")]
    System,
    /// The human or calling program.
    User,
    /// The model.
    Assistant,
    /// The result of a tool call.
    Tool,
}

impl Role {
    /// The lowercase wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }

    /// Parses a role name; `developer` is accepted as `system`.
    pub fn parse(s: &str) -> Result<Role> {
        match s {
            "system" | "developer" => Ok(Role::System),
            "user" => Ok(Role::User),
            "assistant" => Ok(Role::Assistant),
            "tool" => Ok(Role::Tool),
            other => Err(Error::invalid_request(format!(
                "unknown message role `{other}` (expected system, user, assistant or tool)"
            ))),
        }
    }
}

/// One part of a multi-part message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    /// Plain text.
    Text {
        /// The text.
        text: String,
    },
    /// An image given by URL (`https://…` or a `data:` URL).
    ImageUrl {
        /// Where the image is.
        url: String,
        /// OpenAI's `detail` hint (`low`, `high`, `auto`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
}

/// Message content: a string or a list of parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Text and image parts.
    Parts(Vec<ContentPart>),
}

impl Default for Content {
    fn default() -> Self {
        Content::Text(String::new())
    }
}

impl Content {
    /// The text of the content, parts joined without separator (images skipped).
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Content::Text(t) => std::borrow::Cow::Borrowed(t),
            Content::Parts(parts) => {
                let mut s = String::new();
                for p in parts {
                    if let ContentPart::Text { text } = p {
                        s.push_str(text);
                    }
                }
                std::borrow::Cow::Owned(s)
            }
        }
    }

    /// True when there is no text and no image.
    pub fn is_empty(&self) -> bool {
        match self {
            Content::Text(t) => t.is_empty(),
            Content::Parts(p) => p.is_empty(),
        }
    }

    /// True when any part is an image.
    pub fn has_images(&self) -> bool {
        matches!(self, Content::Parts(p) if p.iter().any(|p| matches!(p, ContentPart::ImageUrl { .. })))
    }
}

impl From<&str> for Content {
    fn from(s: &str) -> Self {
        Content::Text(s.to_owned())
    }
}

impl From<String> for Content {
    fn from(s: String) -> Self {
        Content::Text(s)
    }
}

/// A call the model asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The call id, echoed back in the tool result message.
    pub id: String,
    /// The function name.
    pub name: String,
    /// The arguments as a JSON string (as the model produced it).
    pub arguments: String,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// What it says.
    #[serde(default)]
    pub content: Content,
    /// Optional author name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Tool calls made by the assistant in this message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// For a tool result: the id of the call it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// Reasoning text a thinking model produced. Sent back upstream only where the vendor
    /// requires the reasoning of a tool-calling turn to be returned (DeepSeek's
    /// `reasoning_content`; Anthropic's thinking block, with [`Message::reasoning_signature`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<String>,
    /// The opaque signature the vendor gave with that reasoning (Anthropic's thinking-block
    /// `signature`), returned with it unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_signature: Option<String>,
}

impl Message {
    fn of(role: Role, content: impl Into<Content>) -> Self {
        Message {
            role,
            content: content.into(),
            name: None,
            tool_calls: Vec::new(),
            tool_call_id: None,
            reasoning: None,
            reasoning_signature: None,
        }
    }

    /// A system message.
    pub fn system(content: impl Into<Content>) -> Self {
        Self::of(Role::System, content)
    }

    /// A user message.
    pub fn user(content: impl Into<Content>) -> Self {
        Self::of(Role::User, content)
    }

    /// An assistant message.
    pub fn assistant(content: impl Into<Content>) -> Self {
        Self::of(Role::Assistant, content)
    }

    /// A tool result answering call `call_id`.
    pub fn tool_result(call_id: impl Into<String>, content: impl Into<Content>) -> Self {
        let mut m = Self::of(Role::Tool, content);
        m.tool_call_id = Some(call_id.into());
        m
    }
}

/// A function the model may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    /// Function name.
    pub name: String,
    /// What it does, for the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON Schema of the arguments.
    #[serde(default = "empty_object_schema")]
    pub parameters: Value,
    /// OpenAI's strict schema adherence flag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

fn empty_object_schema() -> Value {
    serde_json::json!({"type": "object", "properties": {}})
}

/// Whether and which tool the model must call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolChoice {
    /// Never call a tool.
    None,
    /// The model decides.
    Auto,
    /// The model must call some tool.
    Required,
    /// The model must call this function.
    Function(String),
}

/// The shape of the answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    /// Free text.
    Text,
    /// Any JSON object.
    JsonObject,
    /// JSON matching a schema.
    JsonSchema {
        /// Schema name.
        name: String,
        /// The JSON Schema.
        schema: Value,
        /// Strict adherence.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        strict: Option<bool>,
    },
}

/// How much a reasoning model thinks: OpenAI's `reasoning_effort` levels (Gemini's
/// `thinkingLevel`, Ollama's `think` levels). Turning thinking off is [`Thinking::enabled`]
/// `false`, not an effort.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReasoningEffort {
    /// As little as the model allows.
    Minimal,
    /// Low.
    Low,
    /// Medium (OpenAI's default).
    Medium,
    /// High.
    High,
    /// Above high, where a model offers it.
    #[serde(rename = "xhigh")]
    XHigh,
}

impl ReasoningEffort {
    /// Every level, lowest first.
    pub const ALL: [ReasoningEffort; 5] = [
        ReasoningEffort::Minimal,
        ReasoningEffort::Low,
        ReasoningEffort::Medium,
        ReasoningEffort::High,
        ReasoningEffort::XHigh,
    ];

    /// The lowercase name (`minimal`, `low`, `medium`, `high`, `xhigh`).
    pub fn as_str(self) -> &'static str {
        match self {
            ReasoningEffort::Minimal => "minimal",
            ReasoningEffort::Low => "low",
            ReasoningEffort::Medium => "medium",
            ReasoningEffort::High => "high",
            ReasoningEffort::XHigh => "xhigh",
        }
    }

    /// The level of a name, any case.
    pub fn parse(name: &str) -> Option<ReasoningEffort> {
        Self::ALL
            .into_iter()
            .find(|e| e.as_str().eq_ignore_ascii_case(name))
    }

    /// The thinking budget a vendor that takes budgets but no levels (DashScope, Anthropic)
    /// is sent for this level: 512, 1,024, 8,192, 24,576 and 32,768 tokens.
    pub fn budget_tokens(self) -> u32 {
        match self {
            ReasoningEffort::Minimal => 512,
            ReasoningEffort::Low => 1024,
            ReasoningEffort::Medium => 8192,
            ReasoningEffort::High => 24_576,
            ReasoningEffort::XHigh => 32_768,
        }
    }
}

impl std::fmt::Display for ReasoningEffort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The thinking (reasoning) settings of a request: on or off, a budget, an effort. Each unset
/// part is the model's default. Each provider maps them to its own fields, and a setting its
/// API cannot take fails the request as `unsupported`, naming the field (never dropped).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Thinking {
    /// Turn thinking on or off (`None`: the model's default, or on when a budget or an effort
    /// is given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Most reasoning tokens, for vendors that take a budget (`thinking_budget`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_tokens: Option<u32>,
    /// How much to think, for vendors that take a level (`reasoning_effort`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effort: Option<ReasoningEffort>,
}

impl Thinking {
    /// Thinking turned on or off.
    pub fn switch(on: bool) -> Thinking {
        Thinking {
            enabled: Some(on),
            ..Thinking::default()
        }
    }

    /// Thinking on with a budget.
    pub fn budget(tokens: u32) -> Thinking {
        Thinking {
            budget_tokens: Some(tokens),
            ..Thinking::default()
        }
    }

    /// Thinking at an effort level.
    pub fn effort(effort: ReasoningEffort) -> Thinking {
        Thinking {
            effort: Some(effort),
            ..Thinking::default()
        }
    }

    /// The setting an OpenAI-style effort name stands for: `none` turns thinking off, `max`
    /// on without a level (the upstream's most), a level is that effort. `None` for any other
    /// name.
    pub fn from_effort_name(name: &str) -> Option<Thinking> {
        if name.eq_ignore_ascii_case("none") {
            return Some(Thinking::switch(false));
        }
        if name.eq_ignore_ascii_case("max") {
            return Some(Thinking::switch(true));
        }
        ReasoningEffort::parse(name).map(Thinking::effort)
    }

    /// True when nothing is set.
    pub fn is_empty(&self) -> bool {
        self.enabled.is_none() && self.budget_tokens.is_none() && self.effort.is_none()
    }

    /// Whether thinking is asked on or off: [`Thinking::enabled`], or on when a budget or an
    /// effort is given.
    pub fn wanted(&self) -> Option<bool> {
        self.enabled
            .or_else(|| (self.budget_tokens.is_some() || self.effort.is_some()).then_some(true))
    }

    /// Checks the parts agree: no budget or effort with thinking off, not both a budget and
    /// an effort, no zero budget.
    pub fn validate(&self) -> Result<()> {
        if self.enabled == Some(false) && (self.budget_tokens.is_some() || self.effort.is_some()) {
            let what = if self.budget_tokens.is_some() {
                "`thinking_budget`"
            } else {
                "`reasoning_effort`"
            };
            return Err(Error::invalid_request(format!(
                "thinking is turned off, but {what} is given"
            ))
            .with_param(if self.budget_tokens.is_some() {
                "thinking_budget"
            } else {
                "reasoning_effort"
            }));
        }
        if self.budget_tokens.is_some() && self.effort.is_some() {
            return Err(Error::invalid_request(
                "give `thinking_budget` or `reasoning_effort`, not both",
            )
            .with_param("reasoning_effort"));
        }
        if self.budget_tokens == Some(0) {
            return Err(Error::invalid_request(
                "`thinking_budget` must be at least 1 (turn thinking off instead)",
            )
            .with_param("thinking_budget"));
        }
        Ok(())
    }
}

/// How the conversation is sent when a vendor has two input shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputStyle {
    /// A list of messages (the default).
    #[default]
    Messages,
    /// A single-turn prompt (DashScope `input.prompt`, Ollama `/api/generate`): at most one
    /// system message and exactly one user message. Vendors without a prompt form send messages.
    Prompt,
}

/// A chat request, the same for every provider.
///
/// `model` is the upstream model name; [`crate::Client::chat`] also accepts `provider/model`.
/// Unset options are not sent. `extra` carries vendor-specific fields verbatim (into the
/// vendor's parameter object); an `extra` value of `null` removes a field the provider would
/// otherwise send by default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// `provider/model` for [`crate::Client::chat`] and [`crate::Client::chat_stream`]. The
    /// provider-level calls ([`crate::Client::chat_with`], [`crate::providers::Provider`]) take
    /// the upstream model name beside the request and do not read this field.
    pub model: String,
    /// The conversation.
    pub messages: Vec<Message>,
    /// Messages or single-turn prompt.
    #[serde(default)]
    pub input_style: InputStyle,
    /// Functions the model may call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<Tool>,
    /// Tool choice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    /// Allow several tool calls in one answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    /// Sampling temperature, 0 to 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling, (0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Candidate set size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    /// Output token cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// `max_tokens` is a ceiling the client's protocol made it send (Anthropic's Messages API
    /// requires one; the legacy Completions API defaults to 16), not a limit the client chose:
    /// a provider that has no output cap leaves it out instead of refusing the request.
    /// Providers that have a cap send it either way.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub max_tokens_advisory: bool,
    /// Stop sequences.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
    /// Sampling seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Repetition penalty (1.0 = none; DashScope, Ollama `repeat_penalty`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repetition_penalty: Option<f64>,
    /// Presence penalty, -2 to 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
    /// Frequency penalty, -2 to 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f64>,
    /// Number of choices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    /// End-user id for the vendor's abuse monitoring.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Text, JSON object or JSON schema output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat>,
    /// Web search augmentation (DashScope `enable_search`, Hunyuan `EnableEnhancement`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_search: Option<bool>,
    /// Thinking on or off, budget, effort.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<Thinking>,
    /// Ask for usage in the stream (OpenAI `stream_options.include_usage`). Defaults to true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_usage: Option<bool>,
    /// Vendor-specific fields, passed through; `null` removes a default field.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub extra: Map<String, Value>,
}

impl ChatRequest {
    /// A request for `model` with these messages.
    pub fn new(model: impl Into<String>, messages: Vec<Message>) -> Self {
        ChatRequest {
            model: model.into(),
            messages,
            ..Default::default()
        }
    }

    /// Checks what every provider needs: a model named, messages present, roles in a sensible
    /// order, sampling values in range. Providers check their own narrower limits.
    pub fn validate(&self) -> Result<()> {
        self.validate_for(&self.model)
    }

    /// [`ChatRequest::validate`] for a request sent as `model` (the upstream model name that
    /// travels beside the request; the request's own `model` field is not read).
    pub fn validate_for(&self, model: &str) -> Result<()> {
        if model.trim().is_empty() {
            return Err(Error::invalid_request("`model` must not be empty"));
        }
        if self.messages.is_empty() {
            return Err(Error::invalid_request(
                "`messages` must contain at least one message",
            ));
        }
        range("temperature", self.temperature, 0.0, 2.0)?;
        if let Some(p) = self.top_p {
            if !(p > 0.0 && p <= 1.0) {
                return Err(Error::invalid_request(format!(
                    "`top_p` must be in (0, 1], got {p}"
                )));
            }
        }
        range("presence_penalty", self.presence_penalty, -2.0, 2.0)?;
        range("frequency_penalty", self.frequency_penalty, -2.0, 2.0)?;
        if let Some(r) = self.repetition_penalty {
            if !(r > 0.0 && r.is_finite()) {
                return Err(Error::invalid_request(format!(
                    "`repetition_penalty` must be greater than 0, got {r}"
                )));
            }
        }
        if self.max_tokens == Some(0) {
            return Err(Error::invalid_request("`max_tokens` must be at least 1"));
        }
        if self.n == Some(0) {
            return Err(Error::invalid_request("`n` must be at least 1"));
        }
        for (i, m) in self.messages.iter().enumerate() {
            if m.role == Role::Tool && m.tool_call_id.is_none() {
                return Err(Error::invalid_request(format!(
                    "messages[{i}]: a tool message needs `tool_call_id`"
                )));
            }
            if m.content.is_empty() && m.tool_calls.is_empty() && m.role == Role::User {
                return Err(Error::invalid_request(format!(
                    "messages[{i}]: a user message must not be empty"
                )));
            }
        }
        if let Some(ToolChoice::Function(name)) = &self.tool_choice {
            if !self.tools.iter().any(|t| &t.name == name) {
                return Err(Error::invalid_request(format!(
                    "`tool_choice` names `{name}`, which is not among `tools`"
                )));
            }
        }
        if self.input_style == InputStyle::Prompt {
            self.prompt_parts()?;
        }
        if let Some(t) = &self.thinking {
            t.validate()?;
        }
        Ok(())
    }

    /// For [`InputStyle::Prompt`]: the optional system text and the user prompt.
    pub fn prompt_parts(&self) -> Result<(Option<String>, String)> {
        let mut system = None;
        let mut prompt = None;
        for m in &self.messages {
            match m.role {
                Role::System if system.is_none() && prompt.is_none() => {
                    system = Some(m.content.text().into_owned())
                }
                Role::User if prompt.is_none() => prompt = Some(m.content.text().into_owned()),
                _ => return Err(Error::invalid_request(
                    "prompt input takes at most one system message followed by one user message",
                )),
            }
        }
        let prompt = prompt
            .ok_or_else(|| Error::invalid_request("prompt input needs exactly one user message"))?;
        Ok((system, prompt))
    }

    /// The value of a vendor-specific field: `Some(None)` when `extra` removes it with `null`.
    pub fn extra_field(&self, key: &str) -> Option<Option<&Value>> {
        self.extra
            .get(key)
            .map(|v| if v.is_null() { None } else { Some(v) })
    }
}

fn range(name: &str, v: Option<f64>, lo: f64, hi: f64) -> Result<()> {
    match v {
        Some(x) if !(x >= lo && x <= hi) => Err(Error::invalid_request(format!(
            "`{name}` must be between {lo} and {hi}, got {x}"
        ))),
        _ => Ok(()),
    }
}

/// Why the model stopped.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FinishReason {
    /// Natural end or a stop sequence.
    Stop,
    /// The output cap or the context window was reached.
    Length,
    /// The model called tools.
    ToolCalls,
    /// Output was cut by content moderation.
    ContentFilter,
    /// Anything else the vendor said, verbatim.
    Other(String),
}

impl FinishReason {
    /// Maps a vendor's finish reason string (OpenAI names and common vendor synonyms).
    pub fn parse(s: &str) -> FinishReason {
        match s {
            "stop" | "eos" | "end_turn" | "stop_sequence" => FinishReason::Stop,
            "length" | "max_tokens" => FinishReason::Length,
            "tool_calls" | "function_call" | "tool_use" => FinishReason::ToolCalls,
            "content_filter" | "sensitive" => FinishReason::ContentFilter,
            other => FinishReason::Other(other.to_owned()),
        }
    }

    /// The OpenAI name.
    pub fn as_str(&self) -> &str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::ToolCalls => "tool_calls",
            FinishReason::ContentFilter => "content_filter",
            FinishReason::Other(s) => s,
        }
    }
}

impl Serialize for FinishReason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for FinishReason {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = std::borrow::Cow::<str>::deserialize(d)?;
        Ok(FinishReason::parse(&s))
    }
}

/// Token usage of one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Generated tokens (including reasoning tokens).
    pub output_tokens: u64,
    /// Input plus output, as the vendor reports it (computed when absent).
    pub total_tokens: u64,
    /// Prompt tokens served from the vendor's cache, when reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_tokens: Option<u64>,
    /// Reasoning tokens within `output_tokens`, when reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_tokens: Option<u64>,
}

impl Usage {
    /// Usage from input and output counts, total computed.
    pub fn new(input_tokens: u64, output_tokens: u64) -> Self {
        Usage {
            input_tokens,
            output_tokens,
            // Counts come from upstream JSON: a sum past u64::MAX saturates, never wraps.
            total_tokens: input_tokens.saturating_add(output_tokens),
            cached_tokens: None,
            reasoning_tokens: None,
        }
    }
}

impl Usage {
    /// The usage of two requests together (counts saturate; an optional count is kept when
    /// either reports it).
    pub fn plus(&self, other: &Usage) -> Usage {
        let add = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(a), Some(b)) => Some(a.saturating_add(b)),
            (a, b) => a.or(b),
        };
        Usage {
            input_tokens: self.input_tokens.saturating_add(other.input_tokens),
            output_tokens: self.output_tokens.saturating_add(other.output_tokens),
            total_tokens: self.total_tokens.saturating_add(other.total_tokens),
            cached_tokens: add(self.cached_tokens, other.cached_tokens),
            reasoning_tokens: add(self.reasoning_tokens, other.reasoning_tokens),
        }
    }
}

/// One answer among the `n` requested.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    /// Position among the choices.
    pub index: u32,
    /// The assistant message (text, reasoning, tool calls).
    pub message: Message,
    /// Why generation stopped.
    pub finish_reason: Option<FinishReason>,
}

/// A complete chat answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    /// The response id (the vendor's, or the request id when the vendor has none).
    pub id: String,
    /// The model that answered.
    pub model: String,
    /// Creation time, unix seconds, when the vendor says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<i64>,
    /// The answers.
    pub choices: Vec<Choice>,
    /// Token usage, when the vendor reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// The upstream request id, for support tickets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl ChatResponse {
    /// The text of the first choice (empty when there is none).
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        self.choices
            .first()
            .map(|c| c.message.content.text())
            .unwrap_or_default()
    }

    /// The tool calls of the first choice.
    pub fn tool_calls(&self) -> &[ToolCall] {
        self.choices
            .first()
            .map(|c| c.message.tool_calls.as_slice())
            .unwrap_or_default()
    }

    /// The finish reason of the first choice.
    pub fn finish_reason(&self) -> Option<&FinishReason> {
        self.choices.first().and_then(|c| c.finish_reason.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_13_fuzz_usage_total_saturates() {
        // Vendors' token counts are u64 from their JSON; prompt_tokens = u64::MAX made the
        // total overflow (a panic with overflow checks, a wrapped total without).
        let u = Usage::new(u64::MAX, 1);
        assert_eq!(u.total_tokens, u64::MAX);
        assert_eq!(Usage::new(2, 3).total_tokens, 5);
    }

    fn check_invalid(req: ChatRequest, needle: &str) {
        let err = req.validate().unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::InvalidRequest);
        assert!(err.message().contains(needle), "{}", err.message());
    }

    #[test]
    fn validation_rejects_bad_requests_with_clear_messages() {
        check_invalid(ChatRequest::new("m", vec![]), "at least one message");
        let mut r = ChatRequest::new("m", vec![Message::user("hi")]);
        r.temperature = Some(2.5);
        check_invalid(r, "`temperature` must be between 0 and 2");
        let mut r = ChatRequest::new("m", vec![Message::user("hi")]);
        r.top_p = Some(0.0);
        check_invalid(r, "`top_p`");
        let mut r = ChatRequest::new("m", vec![Message::user("hi")]);
        r.temperature = Some(f64::NAN);
        check_invalid(r, "temperature");
        let r = ChatRequest::new("m", vec![Message::tool_result("x", "y")]);
        assert!(r.validate().is_ok());
        let mut m = Message::user("y");
        m.role = Role::Tool;
        check_invalid(ChatRequest::new("m", vec![m]), "tool_call_id");
    }

    #[test]
    fn unknown_role_is_an_invalid_request() {
        let err = Role::parse("wizard").unwrap_err();
        assert!(err.message().contains("unknown message role `wizard`"));
        let err = serde_json::from_str::<Message>(r#"{"role":"wizard","content":"x"}"#);
        assert!(err.is_err());
        assert_eq!(Role::parse("developer").unwrap(), Role::System);
    }

    #[test]
    fn prompt_input_takes_system_then_user() {
        let mut r = ChatRequest::new("m", vec![Message::system("s"), Message::user("u")]);
        r.input_style = InputStyle::Prompt;
        assert_eq!(r.prompt_parts().unwrap(), (Some("s".into()), "u".into()));
        r.messages.push(Message::assistant("a"));
        assert!(r.validate().is_err());
    }

    #[test]
    fn finish_reasons_map_vendor_synonyms() {
        assert_eq!(
            FinishReason::parse("sensitive"),
            FinishReason::ContentFilter
        );
        assert_eq!(FinishReason::parse("tool_calls"), FinishReason::ToolCalls);
        assert_eq!(
            FinishReason::parse("weird"),
            FinishReason::Other("weird".into())
        );
    }
}
