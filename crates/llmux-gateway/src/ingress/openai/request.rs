//! `POST /v1/chat/completions` request bodies → [`ChatRequest`]. Strict about the fields it
//! knows, tolerant of the ones it does not (they are ignored).

use llmux_core::{
    ChatRequest, Content, ContentPart, Message, ResponseFormat, Role, Thinking, Tool, ToolCall,
    ToolChoice,
};
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::error::ApiError;

/// What the request asks of the response, beyond the chat itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChatOptions {
    /// `stream: true`.
    pub stream: bool,
    /// `stream_options.include_usage: true`.
    pub include_usage: bool,
}

/// A `POST /v1/chat/completions` body, as the OpenAI API defines it. Fields not listed here are
/// accepted and ignored.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]}))]
pub(crate) struct ChatCompletionRequest {
    /// The public model name.
    #[schema(min_length = 1)]
    model: String,
    /// The conversation, oldest first.
    #[schema(min_items = 1)]
    messages: Vec<WireMessage>,
    /// Answer as server-sent events.
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[schema(minimum = 0, maximum = 2)]
    #[serde(default)]
    temperature: Option<f64>,
    #[schema(exclusive_minimum = 0, maximum = 1)]
    #[serde(default)]
    top_p: Option<f64>,
    /// One choice only: at most 1.
    #[schema(minimum = 1, maximum = 1)]
    #[serde(default)]
    n: Option<u32>,
    #[serde(default)]
    stop: Option<Stop>,
    /// Deprecated by OpenAI in favour of `max_completion_tokens` (which wins).
    #[schema(minimum = 1)]
    #[serde(default)]
    max_tokens: Option<u32>,
    #[schema(minimum = 1)]
    #[serde(default)]
    max_completion_tokens: Option<u32>,
    #[schema(minimum = -2, maximum = 2)]
    #[serde(default)]
    presence_penalty: Option<f64>,
    #[schema(minimum = -2, maximum = 2)]
    #[serde(default)]
    frequency_penalty: Option<f64>,
    #[schema(minimum = 0)]
    #[serde(default)]
    seed: Option<i64>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    tools: Option<Vec<WireTool>>,
    #[serde(default)]
    tool_choice: Option<WireToolChoice>,
    #[serde(default)]
    parallel_tool_calls: Option<bool>,
    #[serde(default)]
    response_format: Option<WireResponseFormat>,
    // Vendor knobs clients send through OpenAI SDKs' `extra_body` (DashScope compatible mode).
    #[serde(default)]
    top_k: Option<u32>,
    /// DashScope compatible mode (sent through `extra_body`).
    #[schema(exclusive_minimum = 0)]
    #[serde(default)]
    repetition_penalty: Option<f64>,
    #[serde(default)]
    enable_search: Option<bool>,
    /// How much a reasoning model thinks: `none` (off), `minimal`, `low`, `medium`, `high`,
    /// `xhigh`.
    #[serde(default)]
    #[schema(pattern = "^(none|minimal|low|medium|high|xhigh)$")]
    reasoning_effort: Option<String>,
    /// Thinking on or off, with an optional budget (Anthropic's and Zhipu's shape, sent through
    /// `extra_body`).
    #[serde(default)]
    thinking: Option<WireThinking>,
    /// Thinking on or off (DashScope compatible mode, through `extra_body`).
    #[serde(default)]
    enable_thinking: Option<bool>,
    /// Most reasoning tokens; turns thinking on (DashScope compatible mode).
    #[schema(minimum = 1)]
    #[serde(default)]
    thinking_budget: Option<u32>,
}

/// `thinking`: `{"type": "enabled" | "disabled", "budget_tokens"?: N}`.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct WireThinking {
    /// `enabled` or `disabled`.
    #[serde(rename = "type")]
    #[schema(pattern = "^(enabled|disabled)$")]
    kind: String,
    /// Most reasoning tokens.
    #[schema(minimum = 1)]
    #[serde(default)]
    budget_tokens: Option<u32>,
}

#[derive(Debug, Deserialize, ToSchema)]
/// `stream_options`.
pub(crate) struct StreamOptions {
    #[serde(default)]
    pub(crate) include_usage: Option<bool>,
}

/// One stop sequence or several.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum Stop {
    One(String),
    Many(Vec<String>),
}

impl Stop {
    pub(crate) fn into_vec(self) -> Vec<String> {
        match self {
            Stop::One(s) => vec![s],
            Stop::Many(v) => v,
        }
    }
}

/// A chat message.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct WireMessage {
    /// `system`, `developer`, `user`, `assistant` or `tool`.
    #[schema(pattern = "^(system|developer|user|assistant|tool)$")]
    pub(crate) role: String,
    #[serde(default)]
    pub(crate) content: Option<WireContent>,
    #[serde(default)]
    pub(crate) name: Option<String>,
    #[serde(default)]
    pub(crate) tool_calls: Option<Vec<WireToolCall>>,
    #[serde(default)]
    pub(crate) tool_call_id: Option<String>,
    /// An assistant message's reasoning, as DeepSeek returns it (and requires back during
    /// tool use in thinking mode).
    #[serde(default)]
    pub(crate) reasoning_content: Option<String>,
}

/// A message's content: text, or a list of parts.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum WireContent {
    Text(String),
    Parts(Vec<WirePart>),
}

/// A content part: `{"type":"text","text":…}`, `{"type":"image_url","image_url":…}`, or
/// DashScope's `{"text":…}` / `{"image":…}`.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct WirePart {
    /// `text`, `image_url` or `image`.
    #[serde(rename = "type", default)]
    #[schema(pattern = "^(text|image_url|image)$")]
    kind: Option<String>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    image_url: Option<WireImageUrl>,
    // DashScope multimodal parts: {"text": …} / {"image": url}.
    #[serde(default)]
    image: Option<String>,
}

/// An image URL (or `data:` URL), bare or with a `detail` level.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum WireImageUrl {
    Url(String),
    Object {
        url: String,
        #[serde(default)]
        detail: Option<String>,
    },
}

/// A tool call the assistant made (in the conversation history).
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct WireToolCall {
    #[serde(default)]
    id: Option<String>,
    function: WireFunctionCall,
}

/// The function of a tool call; `arguments` is a JSON string (or a JSON value).
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct WireFunctionCall {
    name: String,
    #[serde(default)]
    arguments: Option<Value>,
}

/// A tool the model may call (`type` is `function`).
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct WireTool {
    /// `function`.
    #[serde(rename = "type", default)]
    #[schema(pattern = "^function$")]
    kind: Option<String>,
    function: WireFunction,
}

/// A function tool: name, description and JSON-schema parameters.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct WireFunction {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<Value>,
    #[serde(default)]
    strict: Option<bool>,
}

/// `none`, `auto`, `required`, or `{"type":"function","function":{"name":…}}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum WireToolChoice {
    Mode(String),
    Named { function: NamedFunction },
}

/// The function a named tool choice forces.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct NamedFunction {
    name: String,
}

/// `response_format`: `text`, `json_object` or `json_schema`.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct WireResponseFormat {
    /// `text`, `json_object` or `json_schema` (which needs `json_schema`).
    #[serde(rename = "type")]
    #[schema(pattern = "^(text|json_object|json_schema)$")]
    kind: String,
    #[serde(default)]
    json_schema: Option<WireJsonSchema>,
}

/// The schema of a `json_schema` response format.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct WireJsonSchema {
    name: String,
    #[serde(default)]
    schema: Option<Value>,
    #[serde(default)]
    strict: Option<bool>,
}

/// Parses and validates a chat request.
pub fn decode_chat(body: &[u8]) -> Result<(ChatRequest, ChatOptions), ApiError> {
    let w: ChatCompletionRequest = super::from_json(body)?;
    let opts = ChatOptions {
        stream: w.stream.unwrap_or(false),
        include_usage: w
            .stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false),
    };
    let mut messages = Vec::with_capacity(w.messages.len());
    for (i, m) in w.messages.into_iter().enumerate() {
        messages.push(message(i, m)?);
    }
    let seed = match w.seed {
        Some(s) if s < 0 => {
            return Err(ApiError::invalid("`seed` must not be negative").param("seed"))
        }
        Some(s) => Some(s.unsigned_abs()),
        None => None,
    };
    let req = ChatRequest {
        model: w.model,
        messages,
        tools: tools(w.tools)?,
        tool_choice: w.tool_choice.map(tool_choice).transpose()?,
        parallel_tool_calls: w.parallel_tool_calls,
        temperature: w.temperature,
        top_p: w.top_p,
        top_k: w.top_k,
        max_tokens: w.max_completion_tokens.or(w.max_tokens),
        stop: w.stop.map(Stop::into_vec).unwrap_or_default(),
        seed,
        repetition_penalty: w.repetition_penalty,
        presence_penalty: w.presence_penalty,
        frequency_penalty: w.frequency_penalty,
        n: w.n,
        user: w.user,
        response_format: w.response_format.map(response_format).transpose()?,
        enable_search: w.enable_search,
        thinking: thinking(
            w.reasoning_effort.as_deref(),
            w.thinking,
            w.enable_thinking,
            w.thinking_budget,
        )?,
        stream_usage: Some(true),
        ..ChatRequest::default()
    };
    validate(&req)?;
    Ok((req, opts))
}

/// The thinking settings of a chat request, from every field clients send them in:
/// `reasoning_effort` (OpenAI), `thinking` (Anthropic's and Zhipu's object), `enable_thinking`
/// and `thinking_budget` (DashScope's). Fields that disagree are a 400 naming them; nothing
/// set is `None`.
pub(crate) fn thinking(
    effort: Option<&str>,
    object: Option<WireThinking>,
    enable_thinking: Option<bool>,
    thinking_budget: Option<u32>,
) -> Result<Option<Thinking>, ApiError> {
    let mut t = Thinking {
        enabled: enable_thinking,
        budget_tokens: thinking_budget,
        effort: None,
    };
    if let Some(obj) = object {
        let on = match obj.kind.as_str() {
            "enabled" => true,
            "disabled" => false,
            other => {
                return Err(ApiError::invalid(format!(
                    "`thinking.type` must be enabled or disabled, got `{other}`"
                ))
                .param("thinking.type"))
            }
        };
        t.enabled = agree(t.enabled, Some(on), "enable_thinking", "thinking.type")?;
        t.budget_tokens = agree(
            t.budget_tokens,
            obj.budget_tokens,
            "thinking_budget",
            "thinking.budget_tokens",
        )?;
    }
    if let Some(name) = effort {
        let e = Thinking::from_effort_name(name).ok_or_else(|| {
            ApiError::invalid(format!(
                "`reasoning_effort` must be none, minimal, low, medium, high or xhigh, got `{name}`"
            ))
            .param("reasoning_effort")
        })?;
        t.enabled = agree(t.enabled, e.enabled, "thinking", "reasoning_effort")?;
        t.effort = e.effort;
    }
    Ok((!t.is_empty()).then_some(t))
}

/// One value from two fields that may both give it: they must not disagree.
fn agree<T: PartialEq + Copy>(
    a: Option<T>,
    b: Option<T>,
    a_name: &str,
    b_name: &'static str,
) -> Result<Option<T>, ApiError> {
    match (a, b) {
        (Some(x), Some(y)) if x != y => {
            Err(ApiError::invalid(format!("`{a_name}` and `{b_name}` disagree")).param(b_name))
        }
        (x, y) => Ok(x.or(y)),
    }
}

/// Core validation, as a client error.
pub(crate) fn validate(req: &ChatRequest) -> Result<(), ApiError> {
    if req.n.is_some_and(|n| n > 1) {
        return Err(ApiError::invalid("this gateway returns one choice: `n` must be 1").param("n"));
    }
    req.validate().map_err(|e| ApiError::from_core(&e))
}

pub(crate) fn message(i: usize, m: WireMessage) -> Result<Message, ApiError> {
    let role = Role::parse(&m.role)
        .map_err(|e| ApiError::invalid(e.message()).param(format!("messages[{i}].role")))?;
    let content = match m.content {
        None => Content::Text(String::new()),
        Some(WireContent::Text(t)) => Content::Text(t),
        Some(WireContent::Parts(parts)) => {
            let mut out = Vec::with_capacity(parts.len());
            for (j, p) in parts.into_iter().enumerate() {
                out.push(part(i, j, p)?);
            }
            Content::Parts(out)
        }
    };
    let tool_calls = m
        .tool_calls
        .unwrap_or_default()
        .into_iter()
        .map(|c| ToolCall {
            id: c.id.unwrap_or_default(),
            name: c.function.name,
            arguments: match c.function.arguments {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => s,
                Some(other) => other.to_string(),
            },
        })
        .collect();
    Ok(Message {
        role,
        content,
        name: m.name,
        tool_calls,
        tool_call_id: m.tool_call_id,
        reasoning: m
            .reasoning_content
            .filter(|r| role == Role::Assistant && !r.is_empty()),
        reasoning_signature: None,
    })
}

fn part(i: usize, j: usize, p: WirePart) -> Result<ContentPart, ApiError> {
    let at = || format!("messages[{i}].content[{j}]");
    match (p.kind.as_deref(), p.text, p.image_url, p.image) {
        (Some("text") | None, Some(text), _, _) => Ok(ContentPart::Text { text }),
        (Some("image_url") | None, _, Some(img), _) => Ok(match img {
            WireImageUrl::Url(url) => ContentPart::ImageUrl { url, detail: None },
            WireImageUrl::Object { url, detail } => ContentPart::ImageUrl { url, detail },
        }),
        (Some("image") | None, _, _, Some(url)) => Ok(ContentPart::ImageUrl { url, detail: None }),
        (Some(other), _, _, _) => Err(ApiError::new(
            llmux_core::ErrorKind::Unsupported,
            format!("content parts of type `{other}` are not supported by this gateway"),
        )
        .param(at())),
        (None, _, _, _) => Err(ApiError::invalid("a content part needs `type`").param(at())),
    }
}

pub(crate) fn tools(tools: Option<Vec<WireTool>>) -> Result<Vec<Tool>, ApiError> {
    let mut out = Vec::new();
    for (i, t) in tools.unwrap_or_default().into_iter().enumerate() {
        if let Some(kind) = t.kind.as_deref().filter(|k| *k != "function") {
            return Err(ApiError::new(
                llmux_core::ErrorKind::Unsupported,
                format!("tools of type `{kind}` are not supported; use `function`"),
            )
            .param(format!("tools[{i}].type")));
        }
        out.push(function_tool(t.function));
    }
    Ok(out)
}

/// A function's definition → the core tool (without parameters: an empty object schema).
pub(crate) fn function_tool(f: WireFunction) -> Tool {
    Tool {
        name: f.name,
        description: f.description,
        parameters: f
            .parameters
            .unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}})),
        strict: f.strict,
    }
}

pub(crate) fn tool_choice(c: WireToolChoice) -> Result<ToolChoice, ApiError> {
    match c {
        WireToolChoice::Mode(m) => match m.as_str() {
            "none" => Ok(ToolChoice::None),
            "auto" => Ok(ToolChoice::Auto),
            "required" => Ok(ToolChoice::Required),
            other => Err(ApiError::invalid(format!(
                "`tool_choice` must be none, auto, required or a function, got `{other}`"
            ))
            .param("tool_choice")),
        },
        WireToolChoice::Named { function } => Ok(ToolChoice::Function(function.name)),
    }
}

pub(crate) fn response_format(f: WireResponseFormat) -> Result<ResponseFormat, ApiError> {
    match f.kind.as_str() {
        "text" => Ok(ResponseFormat::Text),
        "json_object" => Ok(ResponseFormat::JsonObject),
        "json_schema" => {
            let s = f.json_schema.ok_or_else(|| {
                ApiError::invalid("`response_format.json_schema` is required for json_schema")
                    .param("response_format.json_schema")
            })?;
            Ok(ResponseFormat::JsonSchema {
                name: s.name,
                schema: s.schema.unwrap_or_else(|| serde_json::json!({})),
                strict: s.strict,
            })
        }
        other => Err(ApiError::invalid(format!(
            "`response_format.type` must be text, json_object or json_schema, got `{other}`"
        ))
        .param("response_format.type")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn parses_the_sdk_shapes() {
        let body = br#"{"model":"m","messages":[{"role":"developer","content":"s"},
            {"role":"user","content":[{"type":"text","text":"hi"},{"type":"image_url","image_url":{"url":"data:x"}}]},
            {"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]},
            {"role":"tool","tool_call_id":"c1","content":"ok"}],
            "stream":true,"stream_options":{"include_usage":true},"stop":"x","max_completion_tokens":5,
            "tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],
            "tool_choice":{"type":"function","function":{"name":"f"}},"metadata":{"a":"b"},"store":false}"#;
        let (req, opts) = decode_chat(body).unwrap();
        assert!(opts.stream && opts.include_usage);
        assert_eq!(req.messages[0].role, Role::System);
        assert_eq!(req.messages[2].tool_calls[0].name, "f");
        assert_eq!(req.stop, vec!["x"]);
        assert_eq!(req.max_tokens, Some(5));
        assert_eq!(req.tool_choice, Some(ToolChoice::Function("f".into())));
    }

    #[test]
    fn errors_name_the_field() {
        let e =
            decode_chat(br#"{"model":"m","messages":[{"role":"user","content":5}]}"#).unwrap_err();
        assert!(e.message.contains("messages[0].content"), "{}", e.message);
        let e = decode_chat(br#"{"model":"m","messages":[{"role":"wizard","content":"x"}]}"#)
            .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0].role"));
        let e = decode_chat(br#"{"model":"m","messages":[]}"#).unwrap_err();
        assert!(e.message.contains("at least one message"));
        let e = decode_chat(b"{not json").unwrap_err();
        assert!(e.message.contains("not valid JSON"));
        let e = decode_chat(br#"{"messages":[]}"#).unwrap_err();
        assert!(e.message.contains("model"), "{}", e.message);
    }
}
