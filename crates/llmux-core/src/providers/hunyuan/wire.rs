//! Hunyuan's PascalCase wire format: the `ChatCompletions` and `GetEmbedding` request bodies
//! and the `{"Response":{…}}` envelope (also the shape of a stream event, unwrapped).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::ID;
use crate::error::{Error, Result};
use crate::providers::body::Extra;
use crate::types::*;

/// The largest `Seed` Hunyuan accepts (the smallest is 1).
pub const MAX_SEED: u64 = 10_000;

/// The `ChatCompletions` body for `req` sent as the upstream `model`. Fields Hunyuan lacks fail
/// with `Unsupported`, naming every one of them; `extra` keys are merged at the top level
/// (PascalCase, verbatim).
pub fn chat_body<'a>(model: &'a str, req: &'a ChatRequest, stream: bool) -> Result<ChatBody<'a>> {
    let mut lacking: Vec<&str> = Vec::new();
    if req.top_k.is_some() {
        lacking.push("top_k");
    }
    // Hunyuan has no output cap: a cap the client chose is refused, one its protocol made it
    // send (`max_tokens_advisory`) is left out.
    if req.max_tokens.is_some() && !req.max_tokens_advisory {
        lacking.push("max_tokens");
    }
    if req.repetition_penalty.is_some() {
        lacking.push("repetition_penalty");
    }
    if req.presence_penalty.is_some() {
        lacking.push("presence_penalty");
    }
    if req.frequency_penalty.is_some() {
        lacking.push("frequency_penalty");
    }
    if req.n.is_some_and(|n| n > 1) {
        lacking.push("n (more than one choice)");
    }
    if req.parallel_tool_calls.is_some() {
        lacking.push("parallel_tool_calls");
    }
    if matches!(
        req.response_format,
        Some(ResponseFormat::JsonObject | ResponseFormat::JsonSchema { .. })
    ) {
        lacking.push("response_format (JSON mode)");
    }
    if req.tool_choice == Some(ToolChoice::Required) {
        lacking.push("tool_choice `required` (use auto or name a function)");
    }
    if !lacking.is_empty() {
        return Err(Error::unsupported(format!(
            "hunyuan does not accept {}",
            lacking
                .iter()
                .map(|l| format!("`{l}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .with_provider(ID));
    }
    let thinking = super::THINKING.resolve(ID, model, req.thinking.as_ref())?;
    let seed = match req.seed {
        Some(seed) if !(1..=MAX_SEED).contains(&seed) => {
            return Err(Error::invalid_request(format!(
                "hunyuan takes a `seed` between 1 and {MAX_SEED}, got {seed}"
            ))
            .with_provider(ID))
        }
        s => s,
    };
    let (tool_choice, custom_tool) = match &req.tool_choice {
        None | Some(ToolChoice::Required) => (None, None),
        Some(ToolChoice::None) => (Some("none"), None),
        Some(ToolChoice::Auto) => (Some("auto"), None),
        Some(ToolChoice::Function(name)) => {
            let tool = req.tools.iter().find(|t| &t.name == name).ok_or_else(|| {
                Error::invalid_request(format!(
                    "`tool_choice` names `{name}`, which is not among `tools`"
                ))
                .with_provider(ID)
            })?;
            (Some("custom"), Some(encode_tool(tool)))
        }
    };
    let ex = Extra::new(&req.extra);
    Ok(ChatBody {
        model: ex.typed("Model", Some(model)),
        messages: ex.typed("Messages", Some(encode_messages(&req.messages))),
        // Omitted when false, as the SDK does (the server's default).
        stream: ex.typed("Stream", stream.then_some(true)),
        temperature: ex.typed("Temperature", req.temperature),
        top_p: ex.typed("TopP", req.top_p),
        seed: ex.typed("Seed", seed),
        stop: ex.typed(
            "Stop",
            (!req.stop.is_empty()).then_some(req.stop.as_slice()),
        ),
        tools: ex.typed(
            "Tools",
            (!req.tools.is_empty()).then(|| req.tools.iter().map(encode_tool).collect()),
        ),
        tool_choice: ex.typed("ToolChoice", tool_choice),
        custom_tool: ex.typed("CustomTool", custom_tool),
        enable_enhancement: ex.typed("EnableEnhancement", req.enable_search),
        enable_thinking: ex.typed("EnableThinking", thinking.enabled),
        extra: ex.fields(&[]),
    })
}

/// The `ChatCompletions` body (PascalCase).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ChatBody<'a> {
    /// The model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<&'a str>,
    /// The conversation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<HyMessage<'a>>>,
    /// `true` for a stream (omitted otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Temperature.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Seed, 1 to [`MAX_SEED`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Stop sequences.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop: Option<&'a [String]>,
    /// Functions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<HyTool<'a>>>,
    /// `none`, `auto` or `custom`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<&'static str>,
    /// The function a `custom` choice names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_tool: Option<HyTool<'a>>,
    /// Web search (`enable_search`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_enhancement: Option<bool>,
    /// Thinking on or off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_thinking: Option<bool>,
    /// Vendor fields from `extra` (PascalCase, verbatim).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One message.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct HyMessage<'a> {
    /// Role.
    pub role: &'static str,
    /// Text (messages without images).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<Cow<'a, str>>,
    /// Parts (messages with images).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contents: Option<Vec<HyPart<'a>>>,
    /// The call a tool message answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<&'a str>,
    /// The assistant's calls.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<HyToolCall<'a>>>,
}

/// One part of `Contents`.
#[derive(Debug, Serialize)]
#[serde(tag = "Type")]
pub enum HyPart<'a> {
    /// Text.
    #[serde(rename = "text")]
    Text {
        /// The text.
        #[serde(rename = "Text")]
        text: &'a str,
    },
    /// An image.
    #[serde(rename = "image_url")]
    ImageUrl {
        /// `{"Url": …}`.
        #[serde(rename = "ImageUrl")]
        image_url: HyUrl<'a>,
    },
}

/// `{"Url": …}`.
#[derive(Debug, Serialize)]
pub struct HyUrl<'a> {
    /// The URL.
    #[serde(rename = "Url")]
    pub url: &'a str,
}

/// An assistant tool call.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct HyToolCall<'a> {
    /// Call id.
    pub id: &'a str,
    /// Always `function`.
    #[serde(rename = "Type")]
    pub kind: &'static str,
    /// Name and arguments.
    pub function: HyFunctionCall<'a>,
}

/// `ToolCalls[].Function`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct HyFunctionCall<'a> {
    /// Name.
    pub name: &'a str,
    /// Arguments, a JSON string.
    pub arguments: &'a str,
}

/// A tool (`Tools[]`, `CustomTool`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct HyTool<'a> {
    /// Always `function`.
    #[serde(rename = "Type")]
    pub kind: &'static str,
    /// The function.
    pub function: HyFunction<'a>,
}

/// `Tools[].Function`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct HyFunction<'a> {
    /// Name.
    pub name: &'a str,
    /// What it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<&'a str>,
    /// The JSON Schema, as a string (Hunyuan takes it so).
    pub parameters: String,
}

fn encode_tool(t: &Tool) -> HyTool<'_> {
    HyTool {
        kind: "function",
        function: HyFunction {
            name: &t.name,
            description: t.description.as_deref(),
            parameters: t.parameters.to_string(),
        },
    }
}

fn encode_messages(messages: &[Message]) -> Vec<HyMessage<'_>> {
    messages
        .iter()
        .map(|m| {
            let (content, contents) = if m.content.has_images() {
                let parts = match &m.content {
                    Content::Parts(parts) => parts
                        .iter()
                        .map(|p| match p {
                            ContentPart::Text { text } => HyPart::Text { text },
                            ContentPart::ImageUrl { url, .. } => HyPart::ImageUrl {
                                image_url: HyUrl { url },
                            },
                        })
                        .collect(),
                    Content::Text(t) => vec![HyPart::Text { text: t }],
                };
                (None, Some(parts))
            } else {
                (Some(m.content.text()), None)
            };
            HyMessage {
                role: m.role.as_str(),
                content,
                contents,
                tool_call_id: m.tool_call_id.as_deref(),
                tool_calls: (!m.tool_calls.is_empty()).then(|| {
                    m.tool_calls
                        .iter()
                        .map(|c| HyToolCall {
                            id: &c.id,
                            kind: "function",
                            function: HyFunctionCall {
                                name: &c.name,
                                arguments: &c.arguments,
                            },
                        })
                        .collect()
                }),
            }
        })
        .collect()
}

/// The `GetEmbedding` body: `Input` for one text, `InputList` for several.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EmbeddingBody<'a> {
    /// One text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<&'a str>,
    /// Several texts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_list: Option<&'a [String]>,
    /// Vendor fields from `extra`.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The `GetEmbedding` body of `req`.
pub fn embedding_body(req: &EmbeddingRequest) -> Result<EmbeddingBody<'_>> {
    let mut lacking = Vec::new();
    if req.dimensions.is_some() {
        lacking.push("`dimensions` (hunyuan-embedding is fixed at 1024)");
    }
    if req.text_type.is_some() {
        lacking.push("`text_type`");
    }
    if !lacking.is_empty() {
        return Err(Error::unsupported(format!(
            "hunyuan embeddings do not accept {}",
            lacking.join(", ")
        ))
        .with_provider(ID));
    }
    let ex = Extra::new(&req.extra);
    let (one, many) = match req.input.as_slice() {
        [one] => (Some(one.as_str()), None),
        many => (None, Some(many)),
    };
    Ok(EmbeddingBody {
        input: ex.typed("Input", one),
        input_list: ex.typed("InputList", many),
        extra: ex.fields(&[]),
    })
}

/// `{"Response": …}`.
#[derive(Debug, Default, Deserialize)]
pub(super) struct Envelope {
    #[serde(default, rename = "Response")]
    pub response: Option<WireResponse>,
}

/// A response body (inside `Response`), or one stream event (not wrapped).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct WireResponse {
    #[serde(default)]
    pub request_id: Option<String>,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub created: Option<i64>,
    #[serde(default)]
    pub choices: Vec<WireChoice>,
    #[serde(default)]
    pub usage: Option<WireUsage>,
    #[serde(default)]
    pub error: Option<WireError>,
    #[serde(default)]
    pub error_msg: Option<WireErrorMsg>,
    /// A stream event that is a whole error envelope.
    #[serde(default)]
    pub response: Option<Box<WireResponse>>,
    /// `GetEmbedding` vectors.
    #[serde(default)]
    pub data: Vec<WireEmbedding>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct WireChoice {
    #[serde(default)]
    pub finish_reason: Option<String>,
    #[serde(default)]
    pub message: Option<WireMessage>,
    #[serde(default)]
    pub delta: Option<WireMessage>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct WireMessage {
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default)]
    pub reasoning_content: Option<String>,
    #[serde(default)]
    pub tool_calls: Option<Vec<WireToolCall>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct WireToolCall {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub index: Option<u32>,
    #[serde(default)]
    pub function: Option<WireFunction>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct WireFunction {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub arguments: Option<Value>,
}

impl WireFunction {
    /// Arguments as a JSON string (a non-string value is serialised).
    pub fn arguments_string(&self) -> String {
        match &self.arguments {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        }
    }
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct WireUsage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub total_tokens: Option<u64>,
}

impl WireUsage {
    pub fn usage(self) -> Usage {
        Usage {
            input_tokens: self.prompt_tokens,
            output_tokens: self.completion_tokens,
            total_tokens: self
                .total_tokens
                .unwrap_or(self.prompt_tokens.saturating_add(self.completion_tokens)),
            cached_tokens: None,
            reasoning_tokens: None,
        }
    }
}

/// `{"Code":"AuthFailure.SignatureFailure","Message":"…"}`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct WireError {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

/// A mid-stream failure: `{"Code":4000,"Msg":"…"}`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct WireErrorMsg {
    #[serde(default)]
    pub code: Option<Value>,
    #[serde(default)]
    pub msg: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct WireEmbedding {
    #[serde(default)]
    pub index: Option<u32>,
    #[serde(default)]
    pub embedding: Vec<f32>,
}

/// A vendor finish reason, `None` while it is still `""`.
pub(super) fn finish_reason(s: Option<&str>) -> Option<FinishReason> {
    match s.map(str::trim) {
        None | Some("") => None,
        Some(r) => Some(FinishReason::parse(r)),
    }
}

impl WireMessage {
    pub fn into_message(self) -> Message {
        Message {
            role: Role::Assistant,
            content: Content::Text(self.content.unwrap_or_default()),
            name: None,
            tool_calls: self
                .tool_calls
                .unwrap_or_default()
                .into_iter()
                .map(|c| {
                    let f = c.function.unwrap_or_default();
                    ToolCall {
                        id: c.id.unwrap_or_default(),
                        arguments: f.arguments_string(),
                        name: f.name.unwrap_or_default(),
                    }
                })
                .collect(),
            tool_call_id: None,
            reasoning: self.reasoning_content.filter(|r| !r.is_empty()),
            reasoning_signature: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_13_fuzz_usage_without_total_saturates() {
        // `PromptTokens: u64::MAX` without `TotalTokens` overflowed the computed total.
        let wire: WireUsage = serde_json::from_str(
            r#"{"PromptTokens": 18446744073709551615, "CompletionTokens": 1}"#,
        )
        .unwrap();
        assert_eq!(wire.usage().total_tokens, u64::MAX);
    }

    #[test]
    fn a_cap_the_client_chose_is_refused_one_its_protocol_required_is_left_out() {
        let mut req = ChatRequest::new("m", vec![Message::user("hi")]);
        req.max_tokens = Some(64);
        let err = chat_body("hunyuan-lite", &req, false).unwrap_err();
        assert!(err.message().contains("`max_tokens`"), "{}", err.message());
        req.max_tokens_advisory = true;
        let body = serde_json::to_value(chat_body("hunyuan-lite", &req, false).unwrap()).unwrap();
        let o = body.as_object().unwrap();
        assert!(
            o.keys().all(|k| !k.to_ascii_lowercase().contains("token")),
            "{body}"
        );
    }
}
