//! The typed OpenAI chat-completions and embeddings request bodies, shared by every
//! OpenAI-style vendor (and, piece by piece, by the DashScope and Pangu codecs).

use serde::Serialize;
use serde_json::{Map, Value};

use super::{unsupported_param, CompatSpec, SearchField, ThinkingFields};
use crate::error::Result;
use crate::providers::body::Extra;
use crate::types::*;

/// `POST /chat/completions`. Every field may be replaced or removed through `extra`.
#[derive(Debug, Default, Serialize)]
pub struct ChatBody<'a> {
    /// The upstream model (absent where the URL names it, as Pangu's deployments do).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<&'a str>,
    /// The conversation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<ChatMessage<'a>>>,
    /// `true` for a stream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// `{"include_usage": true}` to get usage on a stream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// Temperature.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Output cap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Stop sequences.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop: Option<&'a [String]>,
    /// Sampling seed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Presence penalty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
    /// Frequency penalty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f64>,
    /// Choices.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    /// End-user id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<&'a str>,
    /// Functions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<ToolSpec<'a>>>,
    /// Tool choice.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoiceSpec<'a>>,
    /// Several calls per answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    /// Output format.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormatSpec<'a>>,
    /// Top-k (vendor extension).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    /// Repetition penalty (vendor extension).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repetition_penalty: Option<f64>,
    /// Web search (vendor extension, DashScope's name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_search: Option<bool>,
    /// Web search (vendor extension, Hunyuan's name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_enhancement: Option<bool>,
    /// Thinking on or off (vendor extension).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_thinking: Option<bool>,
    /// Thinking budget (vendor extension).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinking_budget: Option<u32>,
    /// Reasoning effort (OpenAI; vLLM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<&'static str>,
    /// The chat template's arguments (vLLM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chat_template_kwargs: Option<ChatTemplateKwargs>,
    /// Vendor fields from `extra`, verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `chat_template_kwargs`: arguments of the model's chat template.
#[derive(Debug, Serialize)]
pub struct ChatTemplateKwargs {
    /// The hybrid-thinking switch of Qwen3-style templates.
    pub enable_thinking: bool,
}

/// `stream_options`.
#[derive(Debug, Serialize)]
pub struct StreamOptions {
    /// Usage on the last chunk.
    pub include_usage: bool,
}

/// One message.
#[derive(Debug, Serialize)]
pub struct ChatMessage<'a> {
    /// `system`, `user`, `assistant` or `tool`.
    pub role: &'static str,
    /// Text, parts, or `null` (an assistant message that only calls tools).
    pub content: Option<MessageContent<'a>>,
    /// Author name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
    /// The assistant's calls.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallSpec<'a>>>,
    /// The call a tool message answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<&'a str>,
    /// An assistant message's reasoning, sent back where the vendor requires it (DeepSeek).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<&'a str>,
}

/// `content`: a string or parts.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum MessageContent<'a> {
    /// Text.
    Text(&'a str),
    /// Text and image parts.
    Parts(Vec<ContentPartSpec<'a>>),
}

/// One content part.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPartSpec<'a> {
    /// Text.
    Text {
        /// The text.
        text: &'a str,
    },
    /// An image.
    ImageUrl {
        /// Where it is.
        image_url: ImageUrlSpec<'a>,
    },
}

/// `image_url`.
#[derive(Debug, Serialize)]
pub struct ImageUrlSpec<'a> {
    /// The URL (`https://…` or `data:`).
    pub url: &'a str,
    /// `low`, `high`, `auto`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<&'a str>,
}

/// An assistant tool call.
#[derive(Debug, Serialize)]
pub struct ToolCallSpec<'a> {
    /// Call id.
    pub id: &'a str,
    /// Always `function`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Name and arguments.
    pub function: FunctionCallSpec<'a>,
}

/// `tool_calls[].function`.
#[derive(Debug, Serialize)]
pub struct FunctionCallSpec<'a> {
    /// Function name.
    pub name: &'a str,
    /// Arguments as a JSON string.
    pub arguments: &'a str,
}

/// A tool.
#[derive(Debug, Serialize)]
pub struct ToolSpec<'a> {
    /// Always `function`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The function.
    pub function: FunctionSpec<'a>,
}

/// `tools[].function`.
#[derive(Debug, Serialize)]
pub struct FunctionSpec<'a> {
    /// Name.
    pub name: &'a str,
    /// What it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<&'a str>,
    /// JSON Schema of the arguments.
    pub parameters: &'a Value,
    /// Strict schema adherence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// `tool_choice`: a mode or a named function.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum ToolChoiceSpec<'a> {
    /// `none`, `auto`, `required`.
    Mode(&'static str),
    /// This function.
    Function {
        /// Always `function`.
        #[serde(rename = "type")]
        kind: &'static str,
        /// Its name.
        function: FunctionName<'a>,
    },
}

/// `{"name": …}`.
#[derive(Debug, Serialize)]
pub struct FunctionName<'a> {
    /// The function name.
    pub name: &'a str,
}

/// `response_format`.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormatSpec<'a> {
    /// Free text.
    Text,
    /// Any JSON object.
    JsonObject,
    /// JSON matching a schema.
    JsonSchema {
        /// The schema and its name.
        json_schema: JsonSchemaSpec<'a>,
    },
}

/// `response_format.json_schema`.
#[derive(Debug, Serialize)]
pub struct JsonSchemaSpec<'a> {
    /// Schema name.
    pub name: &'a str,
    /// The schema.
    pub schema: &'a Value,
    /// Strict adherence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// The `messages` array (assistant reasoning is not sent: see [`encode_messages_with`]).
pub fn encode_messages(messages: &[Message]) -> Vec<ChatMessage<'_>> {
    encode_messages_with(messages, false)
}

/// The `messages` array; with `send_reasoning`, each assistant message's reasoning goes back
/// as `reasoning_content`.
pub fn encode_messages_with(messages: &[Message], send_reasoning: bool) -> Vec<ChatMessage<'_>> {
    messages
        .iter()
        .map(|m| ChatMessage {
            role: m.role.as_str(),
            content: match &m.content {
                Content::Text(t) if t.is_empty() && !m.tool_calls.is_empty() => None,
                Content::Text(t) => Some(MessageContent::Text(t)),
                Content::Parts(parts) => Some(MessageContent::Parts(
                    parts
                        .iter()
                        .map(|p| match p {
                            ContentPart::Text { text } => ContentPartSpec::Text { text },
                            ContentPart::ImageUrl { url, detail } => ContentPartSpec::ImageUrl {
                                image_url: ImageUrlSpec {
                                    url,
                                    detail: detail.as_deref(),
                                },
                            },
                        })
                        .collect(),
                )),
            },
            name: m.name.as_deref(),
            tool_calls: (!m.tool_calls.is_empty()).then(|| encode_tool_calls(&m.tool_calls)),
            tool_call_id: m.tool_call_id.as_deref(),
            reasoning_content: m
                .reasoning
                .as_deref()
                .filter(|_| send_reasoning && m.role == Role::Assistant),
        })
        .collect()
}

/// Assistant tool calls.
pub fn encode_tool_calls(calls: &[ToolCall]) -> Vec<ToolCallSpec<'_>> {
    calls
        .iter()
        .map(|c| ToolCallSpec {
            id: &c.id,
            kind: "function",
            function: FunctionCallSpec {
                name: &c.name,
                arguments: &c.arguments,
            },
        })
        .collect()
}

/// `tools`.
pub fn encode_tools(tools: &[Tool]) -> Vec<ToolSpec<'_>> {
    tools
        .iter()
        .map(|t| ToolSpec {
            kind: "function",
            function: FunctionSpec {
                name: &t.name,
                description: t.description.as_deref(),
                parameters: &t.parameters,
                strict: t.strict,
            },
        })
        .collect()
}

/// `tool_choice`.
pub fn encode_tool_choice(choice: &ToolChoice) -> ToolChoiceSpec<'_> {
    match choice {
        ToolChoice::None => ToolChoiceSpec::Mode("none"),
        ToolChoice::Auto => ToolChoiceSpec::Mode("auto"),
        ToolChoice::Required => ToolChoiceSpec::Mode("required"),
        ToolChoice::Function(name) => ToolChoiceSpec::Function {
            kind: "function",
            function: FunctionName { name },
        },
    }
}

/// `response_format`.
pub fn encode_response_format(rf: &ResponseFormat) -> ResponseFormatSpec<'_> {
    match rf {
        ResponseFormat::Text => ResponseFormatSpec::Text,
        ResponseFormat::JsonObject => ResponseFormatSpec::JsonObject,
        ResponseFormat::JsonSchema {
            name,
            schema,
            strict,
        } => ResponseFormatSpec::JsonSchema {
            json_schema: JsonSchemaSpec {
                name,
                schema,
                strict: *strict,
            },
        },
    }
}

/// The chat body of `req` for `spec`'s endpoint: extension fields and thinking settings the
/// vendor lacks fail with `Unsupported`.
pub fn chat_body<'a>(
    spec: &CompatSpec,
    model: &'a str,
    req: &'a ChatRequest,
    stream: bool,
) -> Result<ChatBody<'a>> {
    let ext = spec.extensions;
    for (set, allowed, name) in [
        (req.top_k.is_some(), ext.top_k, "top_k"),
        (
            req.repetition_penalty.is_some(),
            ext.repetition_penalty,
            "repetition_penalty",
        ),
        (
            req.enable_search.is_some(),
            ext.enable_search,
            "enable_search",
        ),
    ] {
        if set && !allowed {
            return Err(unsupported_param(spec.id, name));
        }
    }
    let thinking = spec
        .thinking
        .resolve(spec.id, model, req.thinking.as_ref())?;
    let (enable_thinking, template_switch, effort_off) = match spec.thinking_fields {
        ThinkingFields::EnableThinking => (thinking.enabled, None, false),
        ThinkingFields::ChatTemplateKwargs => (None, thinking.enabled, false),
        ThinkingFields::ReasoningEffort => (None, None, thinking.enabled == Some(false)),
    };
    let reasoning_effort = thinking
        .effort
        .map(ReasoningEffort::as_str)
        .or(effort_off.then_some("none"));
    let ex = Extra::new(&req.extra);
    let (search, enhancement) = match spec.search_field {
        SearchField::EnableSearch => (req.enable_search, None),
        SearchField::EnableEnhancement => (None, req.enable_search),
    };
    Ok(ChatBody {
        model: ex.typed("model", Some(model)),
        messages: ex.typed(
            "messages",
            Some(encode_messages_with(&req.messages, spec.send_reasoning)),
        ),
        stream: ex.typed("stream", stream.then_some(true)),
        stream_options: ex.typed(
            "stream_options",
            (stream && spec.stream_options && req.stream_usage != Some(false)).then_some(
                StreamOptions {
                    include_usage: true,
                },
            ),
        ),
        temperature: ex.typed("temperature", req.temperature),
        top_p: ex.typed("top_p", req.top_p),
        max_tokens: ex.typed("max_tokens", req.max_tokens),
        stop: ex.typed(
            "stop",
            (!req.stop.is_empty()).then_some(req.stop.as_slice()),
        ),
        seed: ex.typed("seed", req.seed),
        presence_penalty: ex.typed("presence_penalty", req.presence_penalty),
        frequency_penalty: ex.typed("frequency_penalty", req.frequency_penalty),
        n: ex.typed("n", req.n),
        user: ex.typed("user", req.user.as_deref()),
        tools: ex.typed(
            "tools",
            (!req.tools.is_empty()).then(|| encode_tools(&req.tools)),
        ),
        tool_choice: ex.typed(
            "tool_choice",
            req.tool_choice.as_ref().map(encode_tool_choice),
        ),
        parallel_tool_calls: ex.typed("parallel_tool_calls", req.parallel_tool_calls),
        response_format: ex.typed(
            "response_format",
            req.response_format.as_ref().map(encode_response_format),
        ),
        top_k: ex.typed("top_k", req.top_k),
        repetition_penalty: ex.typed("repetition_penalty", req.repetition_penalty),
        enable_search: ex.typed("enable_search", search),
        enable_enhancement: ex.typed("enable_enhancement", enhancement),
        enable_thinking: ex.typed("enable_thinking", enable_thinking),
        thinking_budget: ex.typed("thinking_budget", thinking.budget_tokens),
        reasoning_effort: ex.typed("reasoning_effort", reasoning_effort),
        chat_template_kwargs: ex.typed(
            "chat_template_kwargs",
            template_switch.map(|enable_thinking| ChatTemplateKwargs { enable_thinking }),
        ),
        extra: ex.fields(&[]),
    })
}

/// `POST /embeddings`.
#[derive(Debug, Serialize)]
pub struct EmbeddingsBody<'a> {
    /// The model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<&'a str>,
    /// One text, or several.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<EmbeddingInput<'a>>,
    /// `float` or `base64`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding_format: Option<&'static str>,
    /// Output dimension.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<u32>,
    /// End-user id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<&'a str>,
    /// Vendor fields from `extra`.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `input`: a string for one text, a list otherwise.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum EmbeddingInput<'a> {
    /// One text.
    One(&'a str),
    /// Several.
    Many(&'a [String]),
}

impl<'a> EmbeddingInput<'a> {
    /// One text as a string, several (or none) as a list.
    pub fn of(input: &'a [String]) -> Self {
        match input {
            [one] => EmbeddingInput::One(one),
            many => EmbeddingInput::Many(many),
        }
    }
}
