//! `POST /v1/messages` and `POST /v1/messages/count_tokens` bodies → [`ChatRequest`].
//!
//! What maps (see `docs/dialects.md` for the whole table): `system` (a string or text blocks)
//! and `role: "system"` messages → system messages; text and image blocks (base64 → a `data:`
//! URL, or a URL) → content parts; an assistant's `tool_use` blocks → tool calls (their `input`
//! as the arguments JSON); `tool_result` blocks → tool messages (text content; `is_error: true`
//! puts `Error: ` before it); an assistant's `thinking` blocks → its reasoning and the block's
//! `signature` (sent back to an upstream that verifies it, Anthropic; kept in the transcript
//! otherwise, never sent upstream as text); `tools` (`input_schema` → parameters),
//! `tool_choice` (auto/any/tool/none, `disable_parallel_tool_use` → no parallel calls),
//! `max_tokens` (required, as by the Messages API; marked advisory, so an upstream without an
//! output cap is sent none rather than refusing), `stop_sequences`, `temperature`, `top_p`, `top_k`, `thinking` (enabled with a
//! budget, adaptive → on without one, disabled → off), `output_config.format` (a JSON schema),
//! `metadata.user_id` → user.
//!
//! Dropped on purpose (they change cost or placement, not the answer): `cache_control`
//! anywhere, `citations` on text blocks, `redacted_thinking` blocks (opaque to every other
//! vendor), `service_tier`, `speed`, `inference_geo`, `output_config.effort`, `diagnostics`,
//! `user_profile_id`, `workspace_id`. Refused with a 400 naming the field: what no upstream
//! could honour (server tools, `container`, `mcp_servers`, `context_management`, documents,
//! search results, file sources, images inside tool results, `max_tokens: 0`).

use llmux_core::{
    ChatRequest, Content, ContentPart, ErrorKind, Message, ResponseFormat, Thinking, Tool,
    ToolCall, ToolChoice,
};
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::error::ApiError;

/// What the request asks of the response, beyond the chat itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MessagesOptions {
    /// `stream: true`.
    pub stream: bool,
    /// `thinking.display` is not `omitted`: thinking text goes to the client.
    pub show_thinking: bool,
}

/// A `POST /v1/messages` body, as the Messages API defines it. Fields not listed here are
/// ignored; listed fields that cannot be carried to another vendor are refused or dropped
/// (module docs).
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"model": "gpt-4o-mini", "max_tokens": 256, "messages": [{"role": "user", "content": "Hello"}]}))]
pub(crate) struct MessagesRequest {
    /// The public model name.
    #[schema(min_length = 1)]
    model: String,
    /// The conversation, oldest first.
    #[schema(min_items = 1)]
    messages: Vec<WireMessage>,
    /// Required, at least 1.
    #[schema(minimum = 1)]
    max_tokens: Option<u32>,
    #[serde(default)]
    system: Option<WireSystem>,
    #[serde(default)]
    stop_sequences: Option<Vec<String>>,
    /// Answer as server-sent events.
    #[serde(default)]
    stream: Option<bool>,
    #[schema(minimum = 0, maximum = 1)]
    #[serde(default)]
    temperature: Option<f64>,
    #[schema(exclusive_minimum = 0, maximum = 1)]
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default)]
    top_k: Option<u32>,
    #[serde(default)]
    metadata: Option<WireMetadata>,
    #[serde(default)]
    tools: Option<Vec<WireTool>>,
    #[serde(default)]
    tool_choice: Option<WireToolChoice>,
    #[serde(default)]
    thinking: Option<WireThinking>,
    #[serde(default)]
    output_config: Option<WireOutputConfig>,
    /// Not supported: a 400 when present.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    container: Option<Value>,
    /// Not supported: a 400 when present.
    #[serde(default)]
    #[schema(value_type = Option<Vec<Object>>)]
    mcp_servers: Option<Value>,
    /// Not supported: a 400 when present.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    context_management: Option<Value>,
}

/// A `POST /v1/messages/count_tokens` body: the same conversation, without the generation
/// settings.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]}))]
pub(crate) struct CountTokensRequest {
    /// The public model name.
    #[schema(min_length = 1)]
    model: String,
    /// The conversation, oldest first.
    #[schema(min_items = 1)]
    messages: Vec<WireMessage>,
    #[serde(default)]
    system: Option<WireSystem>,
    #[serde(default)]
    tools: Option<Vec<WireTool>>,
    #[serde(default)]
    tool_choice: Option<WireToolChoice>,
    #[serde(default)]
    thinking: Option<WireThinking>,
}

/// `system`: a string, or text blocks.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
#[schema(as = AnthropicSystem)]
pub(crate) enum WireSystem {
    Text(String),
    Blocks(Vec<WireBlock>),
}

/// `metadata`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = AnthropicMetadata)]
pub(crate) struct WireMetadata {
    /// An opaque id of the end user (passed upstream as the user).
    #[serde(default)]
    user_id: Option<String>,
}

/// One message: `user`, `assistant` (or `system`), with a string or content blocks.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = AnthropicMessage)]
pub(crate) struct WireMessage {
    /// `user`, `assistant` or `system`.
    #[schema(pattern = "^(user|assistant|system)$")]
    role: String,
    content: WireContent,
}

/// A message's content: a string, or content blocks.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
#[schema(as = AnthropicContent)]
pub(crate) enum WireContent {
    Text(String),
    Blocks(Vec<WireBlock>),
}

/// A content block. `type` says which fields it has: `text` (`text`), `image` (`source`),
/// `tool_use` (`id`, `name`, `input`), `tool_result` (`tool_use_id`, `content`, `is_error`),
/// `thinking` (`thinking`, `signature`), `redacted_thinking` (dropped).
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = AnthropicContentBlock)]
pub(crate) struct WireBlock {
    #[serde(rename = "type")]
    #[schema(
        pattern = "^(text|image|tool_use|tool_result|thinking|redacted_thinking|document|search_result)$"
    )]
    kind: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    source: Option<WireImageSource>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    input: Option<Value>,
    #[serde(default)]
    tool_use_id: Option<String>,
    #[serde(default)]
    #[schema(no_recursion)]
    content: Option<WireContent>,
    #[serde(default)]
    is_error: Option<bool>,
    #[serde(default)]
    thinking: Option<String>,
    #[serde(default)]
    signature: Option<String>,
}

/// An image's source: `{"type":"base64","media_type","data"}` or `{"type":"url","url"}`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = AnthropicImageSource)]
pub(crate) struct WireImageSource {
    /// `base64` or `url`.
    #[serde(rename = "type")]
    #[schema(pattern = "^(base64|url)$")]
    kind: String,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    data: Option<String>,
    #[serde(default)]
    url: Option<String>,
}

/// A tool: a client tool (`name`, `description`, `input_schema`; `type` absent or `custom`).
/// Anthropic's server tools (`bash_…`, `web_search_…`, …) are refused.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = AnthropicTool)]
pub(crate) struct WireTool {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    input_schema: Option<Value>,
    #[serde(default)]
    strict: Option<bool>,
}

/// `tool_choice`: `{"type":"auto"|"any"|"none"}` or `{"type":"tool","name"}`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = AnthropicToolChoice)]
pub(crate) struct WireToolChoice {
    /// `auto`, `any`, `tool` or `none`.
    #[serde(rename = "type")]
    #[schema(pattern = "^(auto|any|tool|none)$")]
    kind: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    disable_parallel_tool_use: Option<bool>,
}

/// `thinking`: `{"type":"enabled","budget_tokens"}`, `{"type":"adaptive"}` or
/// `{"type":"disabled"}`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = AnthropicThinking)]
pub(crate) struct WireThinking {
    /// `enabled`, `adaptive` or `disabled`.
    #[serde(rename = "type")]
    #[schema(pattern = "^(enabled|adaptive|disabled)$")]
    kind: String,
    #[serde(default)]
    budget_tokens: Option<u32>,
    /// `summarized` (thinking text is returned) or `omitted` (thinking blocks are empty).
    #[serde(default)]
    display: Option<String>,
}

/// `output_config`: `format` (a JSON schema the answer must follow) is carried; `effort` is
/// dropped.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = AnthropicOutputConfig)]
pub(crate) struct WireOutputConfig {
    #[serde(default)]
    format: Option<WireOutputFormat>,
}

/// `output_config.format`: `{"type":"json_schema","schema"}`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = AnthropicOutputFormat)]
pub(crate) struct WireOutputFormat {
    /// `json_schema`.
    #[serde(rename = "type")]
    #[schema(pattern = "^json_schema$")]
    kind: String,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    schema: Option<Value>,
}

fn unsupported(field: impl Into<String>, message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorKind::Unsupported, message).param(field)
}

/// Parses and validates a Messages request.
pub fn decode_messages(body: &[u8]) -> Result<(ChatRequest, MessagesOptions), ApiError> {
    let w: MessagesRequest = crate::ingress::openai::from_json(body)?;
    for (field, present) in [
        ("container", w.container.is_some()),
        ("mcp_servers", w.mcp_servers.is_some()),
        ("context_management", w.context_management.is_some()),
    ] {
        if present {
            return Err(unsupported(
                field,
                format!("`{field}` is an Anthropic-only feature this gateway cannot provide"),
            ));
        }
    }
    let max_tokens = match w.max_tokens {
        None => return Err(ApiError::invalid("max_tokens: Field required").param("max_tokens")),
        Some(0) => {
            return Err(ApiError::invalid(
                "`max_tokens` must be at least 1 (a request that only warms a prompt cache \
                 cannot be carried to other vendors)",
            )
            .param("max_tokens"))
        }
        Some(n) => n,
    };
    if let Some(t) = w.temperature.filter(|t| !(0.0..=1.0).contains(t)) {
        return Err(
            ApiError::invalid(format!("`temperature` must be between 0 and 1, got {t}"))
                .param("temperature"),
        );
    }
    let (thinking, show_thinking) = thinking(w.thinking)?;
    let mut req = ChatRequest {
        model: w.model,
        messages: conversation(w.system, w.messages)?,
        tools: tools(w.tools)?,
        max_tokens: Some(max_tokens),
        // Required by the protocol, so clients send one whether they want a cap or not.
        max_tokens_advisory: true,
        stop: w.stop_sequences.unwrap_or_default(),
        temperature: w.temperature,
        top_p: w.top_p,
        top_k: w.top_k,
        user: w.metadata.and_then(|m| m.user_id),
        thinking,
        response_format: w
            .output_config
            .and_then(|o| o.format)
            .map(output_format)
            .transpose()?,
        stream_usage: Some(true),
        ..ChatRequest::default()
    };
    tool_choice(&mut req, w.tool_choice)?;
    crate::ingress::openai::request::validate(&req)?;
    let options = MessagesOptions {
        stream: w.stream.unwrap_or(false),
        show_thinking,
    };
    Ok((req, options))
}

/// Parses a count_tokens request into the request it counts.
pub fn decode_count_tokens(body: &[u8]) -> Result<ChatRequest, ApiError> {
    let w: CountTokensRequest = crate::ingress::openai::from_json(body)?;
    let mut req = ChatRequest {
        model: w.model,
        messages: conversation(w.system, w.messages)?,
        tools: tools(w.tools)?,
        thinking: thinking(w.thinking)?.0,
        ..ChatRequest::default()
    };
    tool_choice(&mut req, w.tool_choice)?;
    crate::ingress::openai::request::validate(&req)?;
    Ok(req)
}

/// `thinking` → core thinking, and whether thinking text is shown.
fn thinking(t: Option<WireThinking>) -> Result<(Option<Thinking>, bool), ApiError> {
    let Some(t) = t else {
        return Ok((None, true));
    };
    let show = match t.display.as_deref() {
        None | Some("summarized") => true,
        Some("omitted") => false,
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "`thinking.display` must be summarized or omitted, got `{other}`"
            ))
            .param("thinking.display"))
        }
    };
    let thinking = match t.kind.as_str() {
        "enabled" => {
            let budget = t.budget_tokens.ok_or_else(|| {
                ApiError::invalid("thinking.budget_tokens: Field required")
                    .param("thinking.budget_tokens")
            })?;
            Thinking {
                enabled: Some(true),
                budget_tokens: Some(budget),
                effort: None,
            }
        }
        "adaptive" => Thinking::switch(true),
        "disabled" => Thinking::switch(false),
        other => {
            return Err(ApiError::invalid(format!(
                "`thinking.type` must be enabled, adaptive or disabled, got `{other}`"
            ))
            .param("thinking.type"))
        }
    };
    Ok((Some(thinking), show))
}

fn output_format(f: WireOutputFormat) -> Result<ResponseFormat, ApiError> {
    if f.kind != "json_schema" {
        return Err(ApiError::invalid(format!(
            "`output_config.format.type` must be json_schema, got `{}`",
            f.kind
        ))
        .param("output_config.format.type"));
    }
    let schema = f.schema.ok_or_else(|| {
        ApiError::invalid("output_config.format.schema: Field required")
            .param("output_config.format.schema")
    })?;
    Ok(ResponseFormat::JsonSchema {
        name: "output".to_owned(),
        schema,
        strict: Some(true),
    })
}

fn tools(tools: Option<Vec<WireTool>>) -> Result<Vec<Tool>, ApiError> {
    let mut out = Vec::new();
    for (i, t) in tools.unwrap_or_default().into_iter().enumerate() {
        if let Some(kind) = t.kind.as_deref().filter(|k| *k != "custom") {
            return Err(unsupported(
                format!("tools[{i}].type"),
                format!(
                    "server tools (`{kind}`) run inside Anthropic's API and cannot be carried \
                     to other vendors; only client tools (`input_schema`) are supported"
                ),
            ));
        }
        let parameters = t.input_schema.ok_or_else(|| {
            ApiError::invalid(format!("tools.{i}.input_schema: Field required"))
                .param(format!("tools[{i}].input_schema"))
        })?;
        out.push(Tool {
            name: t.name,
            description: t.description,
            parameters,
            strict: t.strict,
        });
    }
    Ok(out)
}

fn tool_choice(req: &mut ChatRequest, c: Option<WireToolChoice>) -> Result<(), ApiError> {
    let Some(c) = c else {
        return Ok(());
    };
    req.tool_choice = Some(match c.kind.as_str() {
        "auto" => ToolChoice::Auto,
        "any" => ToolChoice::Required,
        "none" => ToolChoice::None,
        "tool" => ToolChoice::Function(c.name.ok_or_else(|| {
            ApiError::invalid("tool_choice.name: Field required").param("tool_choice.name")
        })?),
        other => {
            return Err(ApiError::invalid(format!(
                "`tool_choice.type` must be auto, any, tool or none, got `{other}`"
            ))
            .param("tool_choice.type"))
        }
    });
    if c.disable_parallel_tool_use == Some(true) {
        req.parallel_tool_calls = Some(false);
    }
    Ok(())
}

/// `system` and `messages` → the core conversation.
fn conversation(
    system: Option<WireSystem>,
    messages: Vec<WireMessage>,
) -> Result<Vec<Message>, ApiError> {
    let mut out = Vec::with_capacity(messages.len() + 1);
    if let Some(s) = system {
        let content = match s {
            WireSystem::Text(t) => Content::Text(t),
            WireSystem::Blocks(blocks) => system_blocks(blocks, "system")?,
        };
        if !content.is_empty() {
            out.push(Message::system(content));
        }
    }
    for (i, m) in messages.into_iter().enumerate() {
        let at = format!("messages[{i}]");
        match m.role.as_str() {
            "user" => user(&mut out, m.content, &at)?,
            "assistant" => out.push(assistant(m.content, &at)?),
            "system" => out.push(Message::system(match m.content {
                WireContent::Text(t) => Content::Text(t),
                WireContent::Blocks(b) => system_blocks(b, &format!("{at}.content"))?,
            })),
            other => {
                return Err(ApiError::invalid(format!(
                    "`role` must be user or assistant, got `{other}`"
                ))
                .param(format!("{at}.role")))
            }
        }
    }
    Ok(out)
}

/// Text blocks of a system prompt: one block is its text, several stay separate parts.
fn system_blocks(blocks: Vec<WireBlock>, at: &str) -> Result<Content, ApiError> {
    let mut parts = Vec::with_capacity(blocks.len());
    for (j, b) in blocks.into_iter().enumerate() {
        if b.kind != "text" {
            return Err(ApiError::invalid(format!(
                "a system prompt holds text blocks only, got `{}`",
                b.kind
            ))
            .param(format!("{at}[{j}].type")));
        }
        parts.push(ContentPart::Text {
            text: required(b.text, &format!("{at}[{j}].text"))?,
        });
    }
    Ok(match parts.len() {
        1 => match parts.pop() {
            Some(ContentPart::Text { text }) => Content::Text(text),
            _ => Content::Parts(parts),
        },
        _ => Content::Parts(parts),
    })
}

fn required<T>(v: Option<T>, at: &str) -> Result<T, ApiError> {
    v.ok_or_else(|| ApiError::invalid(format!("{at}: Field required")).param(at))
}

/// A user turn: text and images stay one user message; each `tool_result` becomes a tool
/// message, in order.
fn user(out: &mut Vec<Message>, content: WireContent, at: &str) -> Result<(), ApiError> {
    let blocks = match content {
        WireContent::Text(t) => {
            out.push(Message::user(t));
            return Ok(());
        }
        WireContent::Blocks(b) => b,
    };
    let mut parts: Vec<ContentPart> = Vec::new();
    for (j, b) in blocks.into_iter().enumerate() {
        let here = format!("{at}.content[{j}]");
        match b.kind.as_str() {
            "tool_result" => {
                if !parts.is_empty() {
                    out.push(Message::user(Content::Parts(std::mem::take(&mut parts))));
                }
                let id = required(b.tool_use_id, &format!("{here}.tool_use_id"))?;
                let mut text = tool_result_text(b.content, &here)?;
                if b.is_error == Some(true) {
                    text.insert_str(0, "Error: ");
                }
                out.push(Message::tool_result(id, text));
            }
            _ => parts.push(user_part(b, &here)?),
        }
    }
    if !parts.is_empty() {
        out.push(Message::user(Content::Parts(parts)));
    }
    Ok(())
}

/// A text or image block of a user turn.
fn user_part(b: WireBlock, at: &str) -> Result<ContentPart, ApiError> {
    match b.kind.as_str() {
        "text" => Ok(ContentPart::Text {
            text: required(b.text, &format!("{at}.text"))?,
        }),
        "image" => image(required(b.source, &format!("{at}.source"))?, at),
        "tool_use" | "thinking" | "redacted_thinking" => Err(ApiError::invalid(format!(
            "`{}` blocks belong in assistant turns",
            b.kind
        ))
        .param(format!("{at}.type"))),
        other => Err(unsupported(
            format!("{at}.type"),
            format!("content blocks of type `{other}` are not supported by this gateway"),
        )),
    }
}

fn image(src: WireImageSource, at: &str) -> Result<ContentPart, ApiError> {
    let url = match src.kind.as_str() {
        "base64" => {
            let media = required(src.media_type, &format!("{at}.source.media_type"))?;
            let data = required(src.data, &format!("{at}.source.data"))?;
            format!("data:{media};base64,{data}")
        }
        "url" => required(src.url, &format!("{at}.source.url"))?,
        other => {
            return Err(unsupported(
                format!("{at}.source.type"),
                format!("image sources of type `{other}` are not supported; use base64 or url"),
            ))
        }
    };
    Ok(ContentPart::ImageUrl { url, detail: None })
}

/// A tool result's content as text: a string, or text blocks joined (images and other blocks
/// are refused: most vendors take text tool results only).
fn tool_result_text(content: Option<WireContent>, at: &str) -> Result<String, ApiError> {
    match content {
        None => Ok(String::new()),
        Some(WireContent::Text(t)) => Ok(t),
        Some(WireContent::Blocks(blocks)) => {
            let mut text = String::new();
            for (k, b) in blocks.into_iter().enumerate() {
                if b.kind != "text" {
                    return Err(unsupported(
                        format!("{at}.content[{k}].type"),
                        format!(
                            "tool results may hold text only here, got a `{}` block",
                            b.kind
                        ),
                    ));
                }
                text.push_str(&required(b.text, &format!("{at}.content[{k}].text"))?);
            }
            Ok(text)
        }
    }
}

/// An assistant turn: text, tool calls and thinking.
fn assistant(content: WireContent, at: &str) -> Result<Message, ApiError> {
    let blocks = match content {
        WireContent::Text(t) => return Ok(Message::assistant(t)),
        WireContent::Blocks(b) => b,
    };
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut signature = String::new();
    let mut calls = Vec::new();
    for (j, b) in blocks.into_iter().enumerate() {
        let here = format!("{at}.content[{j}]");
        match b.kind.as_str() {
            "text" => text.push_str(&required(b.text, &format!("{here}.text"))?),
            "tool_use" => {
                let input = b.input.unwrap_or_else(|| Value::Object(Default::default()));
                if !input.is_object() {
                    return Err(ApiError::invalid("a tool_use `input` must be an object")
                        .param(format!("{here}.input")));
                }
                calls.push(ToolCall {
                    id: required(b.id, &format!("{here}.id"))?,
                    name: required(b.name, &format!("{here}.name"))?,
                    arguments: input.to_string(),
                });
            }
            // The signature (Anthropic's proof that its model wrote the block) travels with
            // the reasoning: an Anthropic upstream gets the block back (it requires it in a
            // tool-calling turn while thinking is on); other vendors never see it.
            "thinking" => {
                reasoning.push_str(b.thinking.as_deref().unwrap_or(""));
                signature.push_str(b.signature.as_deref().unwrap_or(""));
            }
            // Opaque, encrypted by Anthropic: no other vendor can read it.
            "redacted_thinking" => {}
            "tool_result" => {
                return Err(
                    ApiError::invalid("`tool_result` blocks belong in user turns")
                        .param(format!("{here}.type")),
                )
            }
            "image" => {
                return Err(unsupported(
                    format!("{here}.type"),
                    "images in assistant turns are not supported",
                ))
            }
            other => {
                return Err(unsupported(
                    format!("{here}.type"),
                    format!("content blocks of type `{other}` are not supported by this gateway"),
                ))
            }
        }
    }
    let mut m = Message::assistant(text);
    m.tool_calls = calls;
    m.reasoning = (!reasoning.is_empty()).then_some(reasoning);
    m.reasoning_signature = (!signature.is_empty()).then_some(signature);
    Ok(m)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use llmux_core::Role;

    fn decode(v: serde_json::Value) -> Result<(ChatRequest, MessagesOptions), ApiError> {
        decode_messages(&serde_json::to_vec(&v).unwrap())
    }

    fn refused(v: serde_json::Value, param: &str) -> ApiError {
        let e = decode(v).unwrap_err();
        assert_eq!(e.param.as_deref(), Some(param), "{}", e.message);
        e
    }

    #[test]
    fn every_field_maps_to_the_core_request() {
        let (req, opts) = decode(serde_json::json!({
            "model": "m",
            "max_tokens": 300,
            "system": [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "look"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}},
                    {"type": "image", "source": {"type": "url", "url": "https://x.invalid/a.png"}}
                ]},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                    {"type": "redacted_thinking", "data": "opaque"},
                    {"type": "text", "text": "calling"},
                    {"type": "tool_use", "id": "toolu_1", "name": "get", "input": {"q": 1}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "4"}, {"type": "text", "text": "2"}]},
                    {"type": "tool_result", "tool_use_id": "toolu_2", "content": "boom", "is_error": true},
                    {"type": "text", "text": "go on"}
                ]}
            ],
            "stop_sequences": ["END"],
            "temperature": 0.5,
            "top_p": 0.9,
            "top_k": 40,
            "metadata": {"user_id": "u-1"},
            "tools": [{"name": "get", "description": "d", "input_schema": {"type": "object"}, "cache_control": {"type": "ephemeral"}}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
            "thinking": {"type": "enabled", "budget_tokens": 2048},
            "output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}, "effort": "high"},
            "service_tier": "auto",
            "stream": true
        }))
        .unwrap();
        assert!(opts.stream && opts.show_thinking);
        assert_eq!(req.model, "m");
        assert_eq!(req.max_tokens, Some(300));
        assert!(req.max_tokens_advisory);
        assert_eq!(req.stop, vec!["END"]);
        assert_eq!(
            (req.temperature, req.top_p, req.top_k),
            (Some(0.5), Some(0.9), Some(40))
        );
        assert_eq!(req.user.as_deref(), Some("u-1"));
        assert_eq!(
            req.tools[0].parameters,
            serde_json::json!({"type": "object"})
        );
        assert_eq!(req.tool_choice, Some(ToolChoice::Required));
        assert_eq!(req.parallel_tool_calls, Some(false));
        assert_eq!(
            req.thinking,
            Some(Thinking {
                enabled: Some(true),
                budget_tokens: Some(2048),
                effort: None
            })
        );
        assert!(matches!(
            req.response_format,
            Some(ResponseFormat::JsonSchema { .. })
        ));
        let m = &req.messages;
        assert_eq!(m.len(), 6, "{m:#?}");
        assert_eq!(
            (m[0].role, m[0].content.text().as_ref()),
            (Role::System, "be brief")
        );
        let Content::Parts(parts) = &m[1].content else {
            panic!("parts")
        };
        assert_eq!(
            parts[1],
            ContentPart::ImageUrl {
                url: "data:image/png;base64,iVBOR".into(),
                detail: None
            }
        );
        assert!(
            matches!(&parts[2], ContentPart::ImageUrl { url, .. } if url == "https://x.invalid/a.png")
        );
        assert_eq!(m[2].role, Role::Assistant);
        assert_eq!(m[2].content.text(), "calling");
        assert_eq!(m[2].reasoning.as_deref(), Some("hmm"));
        assert_eq!(m[2].tool_calls[0].id, "toolu_1");
        assert_eq!(m[2].tool_calls[0].arguments, r#"{"q":1}"#);
        assert_eq!(m[3].role, Role::Tool);
        assert_eq!(m[3].tool_call_id.as_deref(), Some("toolu_1"));
        assert_eq!(m[3].content.text(), "42");
        assert_eq!(m[4].content.text(), "Error: boom");
        assert_eq!(
            (m[5].role, m[5].content.text().as_ref()),
            (Role::User, "go on")
        );
    }

    #[test]
    fn choices_and_thinking_modes() {
        let base = |extra: serde_json::Value| {
            let mut v = serde_json::json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}],
                "tools": [{"name": "f", "input_schema": {"type": "object"}}]});
            v.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            decode(v).unwrap()
        };
        let (r, _) = base(serde_json::json!({"tool_choice": {"type": "tool", "name": "f"}}));
        assert_eq!(r.tool_choice, Some(ToolChoice::Function("f".into())));
        assert_eq!(r.parallel_tool_calls, None);
        let (r, _) = base(serde_json::json!({"tool_choice": {"type": "none"}}));
        assert_eq!(r.tool_choice, Some(ToolChoice::None));
        let (r, _) = base(serde_json::json!({"tool_choice": {"type": "auto"}}));
        assert_eq!(r.tool_choice, Some(ToolChoice::Auto));
        let (r, o) = base(serde_json::json!({"thinking": {"type": "disabled"}}));
        assert_eq!(r.thinking.and_then(|t| t.enabled), Some(false));
        assert!(o.show_thinking);
        let (r, o) =
            base(serde_json::json!({"thinking": {"type": "adaptive", "display": "omitted"}}));
        assert_eq!(r.thinking, Some(Thinking::switch(true)));
        assert!(!o.show_thinking);
        let (r, _) = base(
            serde_json::json!({"system": "plain", "messages": [{"role": "system", "content": "more"}, {"role": "user", "content": "x"}]}),
        );
        assert_eq!(r.messages[0].content.text(), "plain");
        assert_eq!(r.messages[1].role, Role::System);
    }

    #[test]
    fn what_cannot_be_carried_is_refused_naming_the_field() {
        let msg = serde_json::json!([{"role": "user", "content": "x"}]);
        let e = refused(
            serde_json::json!({"model": "m", "messages": msg}),
            "max_tokens",
        );
        assert!(e.message.contains("max_tokens"));
        refused(
            serde_json::json!({"model": "m", "max_tokens": 0, "messages": msg}),
            "max_tokens",
        );
        refused(
            serde_json::json!({"model": "m", "max_tokens": 5, "messages": msg, "temperature": 1.5}),
            "temperature",
        );
        let e = refused(
            serde_json::json!({"model": "m", "max_tokens": 5, "messages": msg,
                "tools": [{"type": "web_search_20250305", "name": "web_search"}]}),
            "tools[0].type",
        );
        assert_eq!(e.kind, ErrorKind::Unsupported);
        refused(
            serde_json::json!({"model": "m", "max_tokens": 5, "messages": msg, "container": "c"}),
            "container",
        );
        refused(
            serde_json::json!({"model": "m", "max_tokens": 5, "messages": msg, "mcp_servers": []}),
            "mcp_servers",
        );
        refused(
            serde_json::json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [
                {"type": "document", "source": {"type": "text", "data": "x", "media_type": "text/plain"}}]}]}),
            "messages[0].content[0].type",
        );
        refused(
            serde_json::json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [
                {"type": "image", "source": {"type": "file", "file_id": "f"}}]}]}),
            "messages[0].content[0].source.type",
        );
        refused(
            serde_json::json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t", "content": [{"type": "image", "source": {"type": "url", "url": "u"}}]}]}]}),
            "messages[0].content[0].content[0].type",
        );
        refused(
            serde_json::json!({"model": "m", "max_tokens": 5, "messages": [{"role": "assistant", "content": [
                {"type": "tool_use", "id": "t", "name": "f", "input": [1]}]}]}),
            "messages[0].content[0].input",
        );
        refused(
            serde_json::json!({"model": "m", "max_tokens": 5, "messages": msg, "thinking": {"type": "enabled"}}),
            "thinking.budget_tokens",
        );
        refused(
            serde_json::json!({"model": "m", "max_tokens": 5, "messages": [{"role": "wizard", "content": "x"}]}),
            "messages[0].role",
        );
        let e = decode_messages(b"{").unwrap_err();
        assert!(e.message.contains("not valid JSON"));
    }

    #[test]
    fn count_tokens_needs_no_max_tokens() {
        let r = decode_count_tokens(
            br#"{"model":"m","system":"s","messages":[{"role":"user","content":"hi"}]}"#,
        )
        .unwrap();
        assert_eq!(r.messages.len(), 2);
        assert_eq!(r.max_tokens, None);
    }
}
