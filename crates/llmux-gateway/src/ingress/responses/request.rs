//! `POST /v1/responses` bodies → [`ChatRequest`], plus what the Response object echoes back.
//!
//! `input` is a string (one user message) or a list of items: messages (`user`, `system`,
//! `developer`, `assistant`; parts `input_text`, `input_image` by URL, `output_text`,
//! `refusal`), `function_call` items (an assistant turn's calls, merged into one assistant
//! message) and `function_call_output` items (tool messages). `reasoning` items are dropped:
//! no upstream takes earlier reasoning back. `instructions` becomes the first system message.
//! Everything that needs state the gateway does not keep (`previous_response_id`,
//! `conversation`, `item_reference`, files by id, `background`, prompt templates) and every
//! tool other than `function` is refused with a 400 naming it; fields that only tune OpenAI's
//! own service (`store`, `service_tier`, `include`, `text.verbosity`, `reasoning.summary`,
//! `prompt_cache_key`, `safety_identifier`, …) are accepted and dropped (docs/dialects.md).

use llmux_core::{
    ChatRequest, Content, ContentPart, Message, ResponseFormat, Role, Thinking, Tool, ToolCall,
    ToolChoice,
};
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::ingress::openai::request::{function_tool, WireFunction};
use crate::ingress::{from_value_at, type_at};

/// What the encoder needs beyond the core answer: the stream flag and the request fields a
/// Response object repeats.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResponsesOptions {
    /// `stream: true`.
    pub stream: bool,
    /// `instructions`, as given.
    pub instructions: Option<String>,
    /// `metadata`, as given (at most 16 pairs).
    pub metadata: Map<String, Value>,
    /// `parallel_tool_calls` (OpenAI's default: true).
    pub parallel_tool_calls: bool,
    /// `temperature`.
    pub temperature: Option<f64>,
    /// `top_p`.
    pub top_p: Option<f64>,
    /// `max_output_tokens`.
    pub max_output_tokens: Option<u32>,
    /// `tool_choice`, normalized (`"auto"` when absent).
    pub tool_choice: Value,
    /// The function tools, normalized.
    pub tools: Vec<Value>,
    /// `text.format`, normalized (`{"type":"text"}` when absent).
    pub text_format: Value,
    /// `reasoning.effort`.
    pub reasoning_effort: Option<String>,
    /// `user`.
    pub user: Option<String>,
}

/// A `POST /v1/responses` body. Fields not listed are accepted and ignored; see the module
/// docs for what is refused.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"model": "gpt-4o-mini", "input": "Hello", "instructions": "Be brief."}))]
pub(crate) struct CreateResponse {
    /// The public model name.
    #[schema(min_length = 1)]
    model: String,
    /// A string (one user message) or a list of input items: messages, `function_call` and
    /// `function_call_output` items (`reasoning` items are dropped).
    #[schema(schema_with = input_schema)]
    input: WireInput,
    /// A system message placed before the input.
    #[serde(default)]
    instructions: Option<String>,
    /// Answer as server-sent events.
    #[serde(default)]
    stream: Option<bool>,
    #[schema(minimum = 0, maximum = 2)]
    #[serde(default)]
    temperature: Option<f64>,
    #[schema(exclusive_minimum = 0, maximum = 1)]
    #[serde(default)]
    top_p: Option<f64>,
    #[schema(minimum = 1)]
    #[serde(default)]
    max_output_tokens: Option<u32>,
    /// Function tools (`type: function`); any other tool type is refused.
    #[serde(default)]
    #[schema(value_type = Option<Vec<Object>>)]
    tools: Option<Vec<Value>>,
    /// `none`, `auto`, `required`, `{"type":"function","name":…}` or
    /// `{"type":"allowed_tools","mode":…,"tools":[…]}`.
    #[serde(default)]
    tool_choice: Option<Value>,
    #[serde(default)]
    parallel_tool_calls: Option<bool>,
    /// `{"effort": "none"|"minimal"|"low"|"medium"|"high"|"xhigh"|"max"}`: the upstream's
    /// thinking mode and effort (docs/dialects.md).
    #[serde(default)]
    reasoning: Option<WireReasoning>,
    /// `{"format": {"type": "text"|"json_object"|"json_schema", …}}`.
    #[serde(default)]
    text: Option<WireText>,
    /// Accepted: this gateway never stores responses, whatever this says.
    #[expect(
        dead_code,
        reason = "read for the OpenAPI schema only: responses are never stored"
    )]
    #[serde(default)]
    store: Option<bool>,
    /// Refused: the gateway does not keep conversations.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    previous_response_id: Option<Value>,
    /// Refused: the gateway does not keep conversations.
    #[serde(default)]
    conversation: Option<Value>,
    /// Refused when true.
    #[serde(default)]
    background: Option<bool>,
    /// Refused: prompt templates live in OpenAI's dashboard.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    prompt: Option<Value>,
    /// Refused when above 0.
    #[serde(default)]
    top_logprobs: Option<u32>,
    /// `disabled` (the default); `auto` is refused: the gateway never truncates the input.
    #[serde(default)]
    truncation: Option<String>,
    /// Up to 16 string pairs, echoed in the answer.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    metadata: Option<Map<String, Value>>,
    #[serde(default)]
    user: Option<String>,
}

/// The OpenAPI schema of `input`: a string, or a list of item objects.
fn input_schema() -> utoipa::openapi::Schema {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, SchemaType, Type};
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(SchemaType::Type(Type::String))
                .description(Some("One user message.")),
        )
        .item(
            ArrayBuilder::new()
                .items(
                    ObjectBuilder::new()
                        .schema_type(SchemaType::Type(Type::Object))
                        .description(Some(
                            "A message (`role`, `content`), a `function_call` (`call_id`, \
                             `name`, `arguments`), a `function_call_output` (`call_id`, \
                             `output`) or a `reasoning` item (dropped).",
                        )),
                )
                .min_items(Some(1)),
        )
        .build()
        .into()
}

/// `input`: a string or a list of items.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum WireInput {
    Text(String),
    Items(Vec<Value>),
}

/// `reasoning`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = ResponsesReasoning)]
pub(crate) struct WireReasoning {
    #[serde(default)]
    effort: Option<String>,
}

/// `text`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = ResponsesText)]
pub(crate) struct WireText {
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    format: Option<Value>,
}

/// A message item (`type` is `message` or absent).
#[derive(Debug, Deserialize)]
struct WireMessage {
    role: String,
    content: WireContent,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum WireContent {
    Text(String),
    Parts(Vec<Value>),
}

#[derive(Debug, Deserialize)]
struct WireFunctionCall {
    call_id: String,
    name: String,
    #[serde(default)]
    arguments: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct WireFunctionCallOutput {
    call_id: String,
    output: WireContent,
}

#[derive(Debug, Deserialize)]
struct WireJsonSchemaFormat {
    name: String,
    #[serde(default)]
    schema: Option<Value>,
    #[serde(default)]
    strict: Option<bool>,
    #[serde(default)]
    description: Option<String>,
}

/// At most this many `metadata` pairs, with keys and values this long (OpenAI's limits).
const METADATA_PAIRS: usize = 16;
const METADATA_KEY: usize = 64;
const METADATA_VALUE: usize = 512;

/// Parses and validates a `POST /v1/responses` body.
pub fn decode_responses(body: &[u8]) -> Result<(ChatRequest, ResponsesOptions), ApiError> {
    let w: CreateResponse = crate::ingress::openai::from_json(body)?;
    refuse_stateful(&w)?;
    let mut messages = Vec::new();
    if let Some(text) = w.instructions.as_deref().filter(|s| !s.is_empty()) {
        messages.push(Message::system(text));
    }
    match w.input {
        WireInput::Text(t) => messages.push(Message::user(t)),
        WireInput::Items(items) => {
            for (i, item) in items.into_iter().enumerate() {
                input_item(i, item, &mut messages)?;
            }
        }
    }
    let (tools, tools_echo) = tools(w.tools.unwrap_or_default())?;
    let (tools, tool_choice, tool_choice_echo) = tool_choice(w.tool_choice, tools)?;
    let (response_format, text_format) = text_format(w.text.and_then(|t| t.format))?;
    let effort = w.reasoning.and_then(|r| r.effort);
    let thinking = effort
        .as_deref()
        .map(|e| thinking_for_effort(e).ok_or_else(|| bad_effort(e, "reasoning.effort")))
        .transpose()?;
    let metadata = metadata(w.metadata)?;
    let req = ChatRequest {
        model: w.model,
        messages,
        tools,
        tool_choice,
        parallel_tool_calls: w.parallel_tool_calls,
        temperature: w.temperature,
        top_p: w.top_p,
        max_tokens: w.max_output_tokens,
        user: w.user.clone(),
        response_format,
        thinking,
        stream_usage: Some(true),
        ..ChatRequest::default()
    };
    crate::ingress::openai::request::validate(&req)?;
    let opts = ResponsesOptions {
        stream: w.stream.unwrap_or(false),
        instructions: w.instructions,
        metadata,
        parallel_tool_calls: w.parallel_tool_calls.unwrap_or(true),
        temperature: w.temperature,
        top_p: w.top_p,
        max_output_tokens: w.max_output_tokens,
        tool_choice: tool_choice_echo,
        tools: tools_echo,
        text_format,
        reasoning_effort: effort,
        user: w.user,
    };
    Ok((req, opts))
}

/// Refuses what needs state the gateway does not keep, or a service it does not offer.
fn refuse_stateful(w: &CreateResponse) -> Result<(), ApiError> {
    if w.previous_response_id
        .as_ref()
        .is_some_and(|v| !v.is_null())
    {
        return Err(ApiError::invalid(
            "this gateway does not store responses or keep conversations, so \
             `previous_response_id` cannot be used: send the whole conversation in `input`",
        )
        .param("previous_response_id"));
    }
    if w.conversation.as_ref().is_some_and(|v| !v.is_null()) {
        return Err(ApiError::invalid(
            "this gateway does not keep conversations, so `conversation` cannot be used: send \
             the whole conversation in `input`",
        )
        .param("conversation"));
    }
    if w.background == Some(true) {
        return Err(unsupported(
            "background responses need stored responses, which this gateway does not keep",
            "background",
        ));
    }
    if w.prompt.as_ref().is_some_and(|v| !v.is_null()) {
        return Err(unsupported(
            "prompt templates (`prompt`) are not supported by this gateway: send \
             `instructions` and `input`",
            "prompt",
        ));
    }
    if w.top_logprobs.is_some_and(|n| n > 0) {
        return Err(unsupported(
            "log probabilities (`top_logprobs`) are not supported by this gateway",
            "top_logprobs",
        ));
    }
    match w.truncation.as_deref() {
        None | Some("disabled") => {}
        Some("auto") => {
            return Err(unsupported(
                "`truncation: auto` is not supported: this gateway never drops input items (an \
                 input over the model's window fails with context_length_exceeded)",
                "truncation",
            ))
        }
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "`truncation` must be `auto` or `disabled`, got `{other}`"
            ))
            .param("truncation"))
        }
    }
    Ok(())
}

fn unsupported(message: impl Into<String>, param: impl Into<String>) -> ApiError {
    ApiError::unsupported(message).param(param)
}

/// One input item, appended to `out`.
fn input_item(i: usize, item: Value, out: &mut Vec<Message>) -> Result<(), ApiError> {
    let at = format!("input[{i}]");
    if !item.is_object() {
        return Err(ApiError::invalid(format!("`{at}` must be an object")).param(at));
    }
    match type_at(&item, &at)?.as_deref() {
        None | Some("message") => {
            let m: WireMessage = from_value_at(item, &at)?;
            out.push(message(&at, m)?);
        }
        Some("function_call") => {
            let c: WireFunctionCall = from_value_at(item, &at)?;
            let call = ToolCall {
                id: c.call_id,
                name: c.name,
                arguments: match c.arguments {
                    None | Some(Value::Null) => String::new(),
                    Some(Value::String(s)) => s,
                    Some(other) => other.to_string(),
                },
            };
            match out.last_mut() {
                Some(m) if m.role == Role::Assistant => m.tool_calls.push(call),
                _ => {
                    let mut m = Message::assistant("");
                    m.tool_calls.push(call);
                    out.push(m);
                }
            }
        }
        Some("function_call_output") => {
            let o: WireFunctionCallOutput = from_value_at(item, &at)?;
            let text = match o.output {
                WireContent::Text(t) => t,
                WireContent::Parts(parts) => {
                    let mut s = String::new();
                    for (j, p) in parts.into_iter().enumerate() {
                        match part(&format!("{at}.output[{j}]"), p)? {
                            ContentPart::Text { text } => s.push_str(&text),
                            ContentPart::ImageUrl { .. } => {
                                return Err(unsupported(
                                    "images in a `function_call_output` are not supported by \
                                     this gateway: tool results are text",
                                    format!("{at}.output[{j}]"),
                                ))
                            }
                        }
                    }
                    s
                }
            };
            out.push(Message::tool_result(o.call_id, text));
        }
        // Earlier reasoning is not sent back upstream (no upstream takes it).
        Some("reasoning") => {}
        Some("item_reference") => {
            return Err(ApiError::invalid(
                "this gateway does not store items, so `item_reference` cannot be used: send the \
                 item itself",
            )
            .param(at))
        }
        Some(other) => {
            return Err(unsupported(
                format!(
                    "input items of type `{other}` are not supported by this gateway (messages, \
                     `function_call`, `function_call_output` and `reasoning` are)"
                ),
                format!("{at}.type"),
            ))
        }
    }
    Ok(())
}

fn message(at: &str, m: WireMessage) -> Result<Message, ApiError> {
    let role = match m.role.as_str() {
        "user" => Role::User,
        "assistant" => Role::Assistant,
        "system" | "developer" => Role::System,
        other => {
            return Err(ApiError::invalid(format!(
                "unknown message role `{other}` (expected user, assistant, system or developer)"
            ))
            .param(format!("{at}.role")))
        }
    };
    let content = match m.content {
        WireContent::Text(t) => Content::Text(t),
        WireContent::Parts(parts) => {
            let mut out = Vec::with_capacity(parts.len());
            for (j, p) in parts.into_iter().enumerate() {
                out.push(part(&format!("{at}.content[{j}]"), p)?);
            }
            Content::Parts(out)
        }
    };
    Ok(Message {
        role,
        content,
        name: None,
        tool_calls: Vec::new(),
        tool_call_id: None,
        reasoning: None,
        reasoning_signature: None,
    })
}

/// A content part: `input_text`, `output_text`, `refusal`, `input_image` (by URL).
fn part(at: &str, p: Value) -> Result<ContentPart, ApiError> {
    #[derive(Deserialize)]
    struct Text {
        text: String,
    }
    #[derive(Deserialize)]
    struct Refusal {
        refusal: String,
    }
    #[derive(Deserialize)]
    struct Image {
        #[serde(default)]
        image_url: Option<String>,
        #[serde(default)]
        file_id: Option<String>,
        #[serde(default)]
        detail: Option<String>,
    }
    match type_at(&p, at)?.as_deref() {
        Some("input_text" | "output_text" | "text") => {
            let t: Text = from_value_at(p, at)?;
            Ok(ContentPart::Text { text: t.text })
        }
        Some("refusal") => {
            let r: Refusal = from_value_at(p, at)?;
            Ok(ContentPart::Text { text: r.refusal })
        }
        Some("input_image") => {
            let img: Image = from_value_at(p, at)?;
            match (img.image_url, img.file_id) {
                (Some(url), _) => Ok(ContentPart::ImageUrl {
                    url,
                    detail: img.detail,
                }),
                (None, Some(_)) => Err(unsupported(
                    "images by `file_id` need OpenAI's file storage, which this gateway does not \
                     have: send `image_url` (an https: or data: URL)",
                    format!("{at}.file_id"),
                )),
                (None, None) => Err(ApiError::invalid("an `input_image` part needs `image_url`")
                    .param(format!("{at}.image_url"))),
            }
        }
        Some(other) => Err(unsupported(
            format!(
                "content parts of type `{other}` are not supported by this gateway \
                 (input_text, input_image and output_text are)"
            ),
            format!("{at}.type"),
        )),
        None => Err(ApiError::invalid("a content part needs `type`").param(format!("{at}.type"))),
    }
}

/// Function tools → core tools, and their normalized echo. Any other tool type is refused.
fn tools(raw: Vec<Value>) -> Result<(Vec<Tool>, Vec<Value>), ApiError> {
    let mut tools = Vec::with_capacity(raw.len());
    let mut echo = Vec::with_capacity(raw.len());
    for (i, t) in raw.into_iter().enumerate() {
        let at = format!("tools[{i}]");
        match type_at(&t, &at)?.as_deref() {
            Some("function") => {}
            Some(other) => {
                return Err(unsupported(
                    format!(
                        "tools of type `{other}` are not supported by this gateway: it runs no \
                         hosted tools; declare `function` tools and run them yourself"
                    ),
                    format!("{at}.type"),
                ))
            }
            None => {
                return Err(ApiError::invalid("a tool needs `type` (`function`)")
                    .param(format!("{at}.type")))
            }
        }
        let tool = function_tool(from_value_at::<WireFunction>(t, &at)?);
        echo.push(serde_json::json!({
            "type": "function",
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.parameters,
            "strict": tool.strict,
        }));
        tools.push(tool);
    }
    Ok((tools, echo))
}

/// `tool_choice` → the core choice (and the tools it leaves, for `allowed_tools`), plus its
/// echo.
fn tool_choice(
    raw: Option<Value>,
    mut tools: Vec<Tool>,
) -> Result<(Vec<Tool>, Option<ToolChoice>, Value), ApiError> {
    let Some(v) = raw.filter(|v| !v.is_null()) else {
        return Ok((tools, None, Value::String("auto".into())));
    };
    let mode = |m: &str| match m {
        "none" => Ok(ToolChoice::None),
        "auto" => Ok(ToolChoice::Auto),
        "required" => Ok(ToolChoice::Required),
        other => Err(ApiError::invalid(format!(
            "`tool_choice` must be none, auto, required or an object, got `{other}`"
        ))
        .param("tool_choice")),
    };
    if let Value::String(s) = &v {
        let choice = mode(s)?;
        return Ok((tools, Some(choice), v));
    }
    match type_at(&v, "tool_choice")?.as_deref() {
        Some("function") => {
            #[derive(Deserialize)]
            struct Named {
                name: String,
            }
            let n: Named = from_value_at(v.clone(), "tool_choice")?;
            Ok((tools, Some(ToolChoice::Function(n.name)), v))
        }
        Some("allowed_tools") => {
            #[derive(Deserialize)]
            struct Allowed {
                mode: String,
                tools: Vec<Value>,
            }
            let a: Allowed = from_value_at(v.clone(), "tool_choice")?;
            let mut names = Vec::with_capacity(a.tools.len());
            for (i, t) in a.tools.iter().enumerate() {
                let at = format!("tool_choice.tools[{i}]");
                match (
                    t.get("type").and_then(Value::as_str),
                    t.get("name").and_then(Value::as_str),
                ) {
                    (Some("function"), Some(name)) => names.push(name.to_owned()),
                    (Some("function"), None) => {
                        return Err(ApiError::invalid("an allowed function needs `name`")
                            .param(format!("{at}.name")))
                    }
                    _ => return Err(unsupported(
                        "only `function` tools can be allowed: this gateway runs no hosted tools",
                        at,
                    )),
                }
            }
            if let Some(missing) = names.iter().find(|n| !tools.iter().any(|t| &t.name == *n)) {
                return Err(ApiError::invalid(format!(
                    "`tool_choice.tools` names `{missing}`, which is not among `tools`"
                ))
                .param("tool_choice.tools"));
            }
            tools.retain(|t| names.contains(&t.name));
            let choice = match a.mode.as_str() {
                "auto" => ToolChoice::Auto,
                "required" => ToolChoice::Required,
                other => {
                    return Err(ApiError::invalid(format!(
                        "`tool_choice.mode` must be auto or required, got `{other}`"
                    ))
                    .param("tool_choice.mode"))
                }
            };
            Ok((tools, Some(choice), v))
        }
        Some(other) => Err(unsupported(
            format!(
                "`tool_choice` of type `{other}` is not supported by this gateway: it runs no \
                 hosted tools"
            ),
            "tool_choice.type",
        )),
        None => Err(ApiError::invalid("`tool_choice` needs `type`").param("tool_choice.type")),
    }
}

/// `text.format` → the core response format and its echo.
fn text_format(raw: Option<Value>) -> Result<(Option<ResponseFormat>, Value), ApiError> {
    let Some(v) = raw.filter(|v| !v.is_null()) else {
        return Ok((None, serde_json::json!({"type": "text"})));
    };
    match type_at(&v, "text.format")?.as_deref() {
        Some("text") => Ok((Some(ResponseFormat::Text), v)),
        Some("json_object") => Ok((Some(ResponseFormat::JsonObject), v)),
        Some("json_schema") => {
            let s: WireJsonSchemaFormat = from_value_at(v, "text.format")?;
            let schema = s.schema.unwrap_or_else(|| serde_json::json!({}));
            let echo = serde_json::json!({
                "type": "json_schema",
                "name": s.name,
                "schema": schema,
                "strict": s.strict,
                "description": s.description,
            });
            Ok((
                Some(ResponseFormat::JsonSchema {
                    name: s.name,
                    schema,
                    strict: s.strict,
                }),
                echo,
            ))
        }
        Some(other) => Err(ApiError::invalid(format!(
            "`text.format.type` must be text, json_object or json_schema, got `{other}`"
        ))
        .param("text.format.type")),
        None => Err(ApiError::invalid("`text.format` needs `type`").param("text.format.type")),
    }
}

fn metadata(raw: Option<Map<String, Value>>) -> Result<Map<String, Value>, ApiError> {
    let m = raw.unwrap_or_default();
    if m.len() > METADATA_PAIRS {
        return Err(ApiError::invalid(format!(
            "`metadata` takes at most {METADATA_PAIRS} pairs, got {}",
            m.len()
        ))
        .param("metadata"));
    }
    for (k, v) in &m {
        let ok = k.chars().count() <= METADATA_KEY
            && v.as_str()
                .is_some_and(|s| s.chars().count() <= METADATA_VALUE);
        if !ok {
            return Err(ApiError::invalid(format!(
                "`metadata` keys are at most {METADATA_KEY} characters and values strings of at \
                 most {METADATA_VALUE}"
            ))
            .param("metadata"));
        }
    }
    Ok(m)
}

/// The thinking setting of an OpenAI reasoning effort (and of a Gemini thinking level): off
/// for `none`, that level for `minimal` to `xhigh` (an upstream that takes budgets gets
/// [`llmux_core::ReasoningEffort::budget_tokens`]), on at the upstream's most for `max`. `None`
/// for a name that is not an effort.
pub fn thinking_for_effort(effort: &str) -> Option<Thinking> {
    Thinking::from_effort_name(effort)
}

fn bad_effort(effort: &str, param: &str) -> ApiError {
    ApiError::invalid(format!(
        "`{param}` must be none, minimal, low, medium, high, xhigh or max, got `{effort}`"
    ))
    .param(param)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use llmux_core::ErrorKind;

    use super::*;
    use crate::ingress::testing::assert_refused;

    fn decode(v: Value) -> Result<(ChatRequest, ResponsesOptions), ApiError> {
        decode_responses(&serde_json::to_vec(&v).unwrap())
    }

    fn refused(v: Value, kind: ErrorKind, param: &str, needle: &str) {
        assert_refused(decode(v), kind, param, needle);
    }

    #[test]
    fn a_string_input_is_one_user_message_after_the_instructions() {
        let (req, opts) =
            decode(serde_json::json!({"model": "m", "input": "hi", "instructions": "be brief"}))
                .unwrap();
        assert_eq!(
            req.messages,
            vec![Message::system("be brief"), Message::user("hi")]
        );
        assert_eq!(opts.instructions.as_deref(), Some("be brief"));
        assert!(!opts.stream && opts.parallel_tool_calls);
        assert_eq!(opts.tool_choice, "auto");
        assert_eq!(opts.text_format, serde_json::json!({"type": "text"}));
        assert_eq!(req.stream_usage, Some(true));
    }

    #[test]
    fn items_map_to_messages_calls_and_tool_results() {
        let (req, _) = decode(serde_json::json!({
            "model": "m",
            "input": [
                {"role": "developer", "content": "sys"},
                {"type": "message", "role": "user", "content": [
                    {"type": "input_text", "text": "look "},
                    {"type": "input_image", "image_url": "data:image/png;base64,AA", "detail": "low"}
                ]},
                {"type": "reasoning", "id": "rs_1", "summary": []},
                {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed",
                 "content": [{"type": "output_text", "text": "calling", "annotations": []}]},
                {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{\"a\":1}"},
                {"type": "function_call", "call_id": "c2", "name": "g", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "one"},
                {"type": "function_call_output", "call_id": "c2",
                 "output": [{"type": "input_text", "text": "t"}, {"type": "input_text", "text": "wo"}]}
            ]
        }))
        .unwrap();
        let m = &req.messages;
        assert_eq!(m.len(), 5, "{m:?}");
        assert_eq!(m[0], Message::system("sys"));
        assert_eq!(m[1].role, Role::User);
        assert_eq!(
            m[1].content,
            Content::Parts(vec![
                ContentPart::Text {
                    text: "look ".into()
                },
                ContentPart::ImageUrl {
                    url: "data:image/png;base64,AA".into(),
                    detail: Some("low".into())
                }
            ])
        );
        assert_eq!(m[2].role, Role::Assistant);
        assert_eq!(m[2].content.text(), "calling");
        let calls: Vec<(&str, &str, &str)> = m[2]
            .tool_calls
            .iter()
            .map(|c| (c.id.as_str(), c.name.as_str(), c.arguments.as_str()))
            .collect();
        assert_eq!(calls, [("c1", "f", "{\"a\":1}"), ("c2", "g", "{}")]);
        assert_eq!(m[3], Message::tool_result("c1", "one"));
        assert_eq!(m[4], Message::tool_result("c2", "two"));
    }

    #[test]
    fn a_call_without_a_preceding_assistant_message_opens_one() {
        let (req, _) = decode(serde_json::json!({"model": "m", "input": [
            {"role": "user", "content": "q"},
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c", "output": "r"}
        ]}))
        .unwrap();
        assert_eq!(req.messages[1].role, Role::Assistant);
        assert!(req.messages[1].content.is_empty());
        assert_eq!(req.messages[1].tool_calls[0].id, "c");
    }

    #[test]
    fn options_map_to_the_core_request() {
        let (req, opts) = decode(serde_json::json!({
            "model": "m", "input": "x", "stream": true, "temperature": 0.5, "top_p": 0.9,
            "max_output_tokens": 77, "parallel_tool_calls": false, "user": "u", "store": true,
            "metadata": {"k": "v"}, "reasoning": {"effort": "high", "summary": "auto"},
            "text": {"format": {"type": "json_schema", "name": "s", "schema": {"type": "object"}, "strict": true}},
            "tools": [{"type": "function", "name": "f", "parameters": null, "strict": false}],
            "tool_choice": {"type": "function", "name": "f"},
            "include": ["reasoning.encrypted_content"], "service_tier": "auto"
        }))
        .unwrap();
        assert!(opts.stream);
        assert_eq!(req.temperature, Some(0.5));
        assert_eq!(req.top_p, Some(0.9));
        assert_eq!(req.max_tokens, Some(77));
        assert_eq!(req.parallel_tool_calls, Some(false));
        assert_eq!(req.user.as_deref(), Some("u"));
        assert_eq!(
            req.thinking,
            Some(Thinking::effort(llmux_core::ReasoningEffort::High))
        );
        assert_eq!(
            req.response_format,
            Some(ResponseFormat::JsonSchema {
                name: "s".into(),
                schema: serde_json::json!({"type": "object"}),
                strict: Some(true)
            })
        );
        assert_eq!(req.tools[0].name, "f");
        assert_eq!(
            req.tools[0].parameters,
            serde_json::json!({"type": "object", "properties": {}})
        );
        assert_eq!(req.tool_choice, Some(ToolChoice::Function("f".into())));
        assert_eq!(opts.tools[0]["name"], "f");
        assert_eq!(opts.tool_choice["name"], "f");
        assert_eq!(opts.metadata["k"], "v");
        assert_eq!(opts.reasoning_effort.as_deref(), Some("high"));
        assert!(!opts.parallel_tool_calls);
    }

    #[test]
    fn efforts_map_to_the_core_setting_and_documented_budgets() {
        use llmux_core::ReasoningEffort as E;
        let setting =
            |e: &str| thinking_for_effort(e).map(|t| (t.wanted(), t.effort.map(E::budget_tokens)));
        assert_eq!(setting("none"), Some((Some(false), None)));
        assert_eq!(setting("minimal"), Some((Some(true), Some(512))));
        assert_eq!(setting("low"), Some((Some(true), Some(1024))));
        assert_eq!(setting("medium"), Some((Some(true), Some(8192))));
        assert_eq!(setting("HIGH"), Some((Some(true), Some(24_576))));
        assert_eq!(setting("xhigh"), Some((Some(true), Some(32_768))));
        assert_eq!(setting("max"), Some((Some(true), None)));
        assert_eq!(setting("extreme"), None);
        refused(
            serde_json::json!({"model": "m", "input": "x", "reasoning": {"effort": "extreme"}}),
            ErrorKind::InvalidRequest,
            "reasoning.effort",
            "extreme",
        );
    }

    #[test]
    fn text_formats_and_tool_choice_modes_map() {
        let with = |extra: Value| {
            let mut v = serde_json::json!({"model": "m", "input": "x",
                "tools": [{"type": "function", "name": "f"}]});
            for (k, val) in extra.as_object().unwrap() {
                v[k] = val.clone();
            }
            decode(v)
        };
        let (r, o) =
            with(serde_json::json!({"text": {"format": {"type": "json_object"}}})).unwrap();
        assert_eq!(r.response_format, Some(ResponseFormat::JsonObject));
        assert_eq!(o.text_format, serde_json::json!({"type": "json_object"}));
        let (r, _) =
            with(serde_json::json!({"text": {"format": {"type": "text"}, "verbosity": "low"}}))
                .unwrap();
        assert_eq!(r.response_format, Some(ResponseFormat::Text));
        for (mode, choice) in [
            ("none", ToolChoice::None),
            ("auto", ToolChoice::Auto),
            ("required", ToolChoice::Required),
        ] {
            let (r, o) = with(serde_json::json!({"tool_choice": mode})).unwrap();
            assert_eq!(r.tool_choice, Some(choice));
            assert_eq!(o.tool_choice, mode);
        }
        refused(
            serde_json::json!({"model": "m", "input": "x", "tool_choice": "sometimes"}),
            ErrorKind::InvalidRequest,
            "tool_choice",
            "sometimes",
        );
        refused(
            serde_json::json!({"model": "m", "input": "x", "text": {"format": {"type": "yaml"}}}),
            ErrorKind::InvalidRequest,
            "text.format.type",
            "yaml",
        );
        refused(
            serde_json::json!({"model": "m", "input": "x", "text": {"format": {"type": "json_schema"}}}),
            ErrorKind::InvalidRequest,
            "text.format",
            "name",
        );
    }

    #[test]
    fn allowed_tools_narrow_the_tools() {
        let (req, _) = decode(serde_json::json!({
            "model": "m", "input": "x",
            "tools": [{"type": "function", "name": "a"}, {"type": "function", "name": "b"}],
            "tool_choice": {"type": "allowed_tools", "mode": "required",
                            "tools": [{"type": "function", "name": "b"}]}
        }))
        .unwrap();
        assert_eq!(req.tools.len(), 1);
        assert_eq!(req.tools[0].name, "b");
        assert_eq!(req.tool_choice, Some(ToolChoice::Required));
        refused(
            serde_json::json!({"model": "m", "input": "x", "tools": [{"type": "function", "name": "a"}],
                "tool_choice": {"type": "allowed_tools", "mode": "auto", "tools": [{"type": "function", "name": "z"}]}}),
            ErrorKind::InvalidRequest,
            "tool_choice.tools",
            "`z`",
        );
    }

    #[test]
    fn stateful_and_hosted_features_are_refused_by_name() {
        let base = |extra: Value| {
            let mut v = serde_json::json!({"model": "m", "input": "x"});
            for (k, val) in extra.as_object().unwrap() {
                v[k] = val.clone();
            }
            v
        };
        refused(
            base(serde_json::json!({"previous_response_id": "resp_1"})),
            ErrorKind::InvalidRequest,
            "previous_response_id",
            "does not store responses",
        );
        refused(
            base(serde_json::json!({"conversation": "conv_1"})),
            ErrorKind::InvalidRequest,
            "conversation",
            "conversations",
        );
        refused(
            base(serde_json::json!({"tools": [{"type": "web_search"}]})),
            ErrorKind::Unsupported,
            "tools[0].type",
            "`web_search`",
        );
        refused(
            base(serde_json::json!({"tool_choice": {"type": "file_search"}})),
            ErrorKind::Unsupported,
            "tool_choice.type",
            "`file_search`",
        );
        refused(
            base(serde_json::json!({"background": true})),
            ErrorKind::Unsupported,
            "background",
            "background",
        );
        refused(
            base(serde_json::json!({"prompt": {"id": "pmpt_1"}})),
            ErrorKind::Unsupported,
            "prompt",
            "templates",
        );
        refused(
            base(serde_json::json!({"top_logprobs": 2})),
            ErrorKind::Unsupported,
            "top_logprobs",
            "log probabilities",
        );
        refused(
            base(serde_json::json!({"truncation": "auto"})),
            ErrorKind::Unsupported,
            "truncation",
            "never drops",
        );
        refused(
            base(serde_json::json!({"input": [{"type": "item_reference", "id": "msg_1"}]})),
            ErrorKind::InvalidRequest,
            "input[0]",
            "does not store items",
        );
        refused(
            base(serde_json::json!({"input": [{"type": "computer_call_output", "call_id": "c"}]})),
            ErrorKind::Unsupported,
            "input[0].type",
            "`computer_call_output`",
        );
        refused(
            base(
                serde_json::json!({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]}),
            ),
            ErrorKind::Unsupported,
            "input[0].content[0].type",
            "`input_file`",
        );
        refused(
            base(
                serde_json::json!({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f", "detail": "auto"}]}]}),
            ),
            ErrorKind::Unsupported,
            "input[0].content[0].file_id",
            "file storage",
        );
        refused(
            base(
                serde_json::json!({"input": [{"type": "function_call_output", "call_id": "c",
                "output": [{"type": "input_image", "image_url": "https://x/y.png"}]}]}),
            ),
            ErrorKind::Unsupported,
            "input[0].output[0]",
            "tool results are text",
        );
        // A null previous_response_id (as some SDK helpers send) is no request for state.
        assert!(decode(base(
            serde_json::json!({"previous_response_id": null, "store": false})
        ))
        .is_ok());
    }

    #[test]
    fn malformed_bodies_name_the_field() {
        refused(
            serde_json::json!({"model": "m", "input": [{"role": "wizard", "content": "x"}]}),
            ErrorKind::InvalidRequest,
            "input[0].role",
            "wizard",
        );
        refused(
            serde_json::json!({"model": "m", "input": [{"type": "function_call", "name": "f"}]}),
            ErrorKind::InvalidRequest,
            "input[0]",
            "call_id",
        );
        refused(
            serde_json::json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_text", "text": 5}]}]}),
            ErrorKind::InvalidRequest,
            "input[0].content[0].text",
            "invalid type",
        );
        refused(
            serde_json::json!({"model": "m", "input": "x", "metadata": {"k": 1}}),
            ErrorKind::InvalidRequest,
            "metadata",
            "strings",
        );
        let many: Map<String, Value> = (0..17)
            .map(|i| (format!("k{i}"), Value::from("v")))
            .collect();
        refused(
            serde_json::json!({"model": "m", "input": "x", "metadata": many}),
            ErrorKind::InvalidRequest,
            "metadata",
            "at most 16",
        );
        refused(
            serde_json::json!({"model": "m", "input": [5]}),
            ErrorKind::InvalidRequest,
            "input[0]",
            "object",
        );
        let e = decode(serde_json::json!({"model": "m"})).unwrap_err();
        assert!(e.message.contains("input"), "{}", e.message);
        let e = decode(serde_json::json!({"model": "m", "input": []})).unwrap_err();
        assert!(e.message.contains("at least one message"), "{}", e.message);
        let e = decode_responses(b"{nope").unwrap_err();
        assert!(e.message.contains("not valid JSON"), "{}", e.message);
    }
}
