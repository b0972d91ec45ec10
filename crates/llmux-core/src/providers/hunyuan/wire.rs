//! Hunyuan's PascalCase wire format: the `ChatCompletions` and `GetEmbedding` request bodies
//! and the `{"Response":{…}}` envelope (also the shape of a stream event, unwrapped).

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::ID;
use crate::error::{Error, Result};
use crate::providers::openai_compat::merge_extra;
use crate::types::*;

/// The largest `Seed` Hunyuan accepts (the smallest is 1).
pub const MAX_SEED: u64 = 10_000;

/// The `ChatCompletions` body for `req` sent as the upstream `model`. Fields Hunyuan lacks fail
/// with `Unsupported`, naming every one of them; `extra` keys are merged at the top level
/// (PascalCase, verbatim).
pub fn chat_body(model: &str, req: &ChatRequest, stream: bool) -> Result<Value> {
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
    if req.thinking.is_some_and(|t| t.budget_tokens.is_some()) {
        lacking.push("thinking.budget_tokens");
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
    let mut o = Map::new();
    o.insert("Model".into(), Value::from(model));
    o.insert("Messages".into(), encode_messages(&req.messages));
    if stream {
        // Omitted when false, as the SDK does (the server's default).
        o.insert("Stream".into(), Value::Bool(true));
    }
    if let Some(t) = req.temperature {
        o.insert("Temperature".into(), Value::from(t));
    }
    if let Some(p) = req.top_p {
        o.insert("TopP".into(), Value::from(p));
    }
    if let Some(seed) = req.seed {
        if !(1..=MAX_SEED).contains(&seed) {
            return Err(Error::invalid_request(format!(
                "hunyuan takes a `seed` between 1 and {MAX_SEED}, got {seed}"
            ))
            .with_provider(ID));
        }
        o.insert("Seed".into(), Value::from(seed));
    }
    if !req.stop.is_empty() {
        o.insert("Stop".into(), json!(req.stop));
    }
    if !req.tools.is_empty() {
        o.insert(
            "Tools".into(),
            Value::Array(req.tools.iter().map(encode_tool).collect()),
        );
    }
    match &req.tool_choice {
        None | Some(ToolChoice::Required) => {}
        Some(ToolChoice::None) => {
            o.insert("ToolChoice".into(), Value::from("none"));
        }
        Some(ToolChoice::Auto) => {
            o.insert("ToolChoice".into(), Value::from("auto"));
        }
        Some(ToolChoice::Function(name)) => {
            let tool = req.tools.iter().find(|t| &t.name == name).ok_or_else(|| {
                Error::invalid_request(format!(
                    "`tool_choice` names `{name}`, which is not among `tools`"
                ))
                .with_provider(ID)
            })?;
            o.insert("ToolChoice".into(), Value::from("custom"));
            o.insert("CustomTool".into(), encode_tool(tool));
        }
    }
    if let Some(s) = req.enable_search {
        o.insert("EnableEnhancement".into(), Value::from(s));
    }
    if let Some(t) = req.thinking {
        o.insert("EnableThinking".into(), Value::from(t.enabled));
    }
    merge_extra(&mut o, &req.extra);
    Ok(Value::Object(o))
}

fn encode_tool(t: &Tool) -> Value {
    let mut f = Map::new();
    f.insert("Name".into(), Value::from(t.name.as_str()));
    if let Some(d) = &t.description {
        f.insert("Description".into(), Value::from(d.as_str()));
    }
    // Hunyuan takes the JSON Schema as a string.
    f.insert("Parameters".into(), Value::from(t.parameters.to_string()));
    json!({"Type": "function", "Function": f})
}

fn encode_messages(messages: &[Message]) -> Value {
    Value::Array(
        messages
            .iter()
            .map(|m| {
                let mut o = Map::new();
                o.insert("Role".into(), Value::from(m.role.as_str()));
                if m.content.has_images() {
                    let parts = match &m.content {
                        Content::Parts(parts) => parts
                            .iter()
                            .map(|p| match p {
                                ContentPart::Text { text } => json!({"Type": "text", "Text": text}),
                                ContentPart::ImageUrl { url, .. } => {
                                    json!({"Type": "image_url", "ImageUrl": {"Url": url}})
                                }
                            })
                            .collect(),
                        Content::Text(t) => vec![json!({"Type": "text", "Text": t})],
                    };
                    o.insert("Contents".into(), Value::Array(parts));
                } else {
                    o.insert("Content".into(), Value::from(m.content.text().into_owned()));
                }
                if let Some(id) = &m.tool_call_id {
                    o.insert("ToolCallId".into(), Value::from(id.as_str()));
                }
                if !m.tool_calls.is_empty() {
                    o.insert(
                        "ToolCalls".into(),
                        Value::Array(
                            m.tool_calls
                                .iter()
                                .map(|c| {
                                    json!({"Id": c.id, "Type": "function",
                                           "Function": {"Name": c.name, "Arguments": c.arguments}})
                                })
                                .collect(),
                        ),
                    );
                }
                Value::Object(o)
            })
            .collect(),
    )
}

/// The `GetEmbedding` body: `Input` for one text, `InputList` for several.
pub fn embedding_body(req: &EmbeddingRequest) -> Result<Value> {
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
    let mut o = Map::new();
    match req.input.as_slice() {
        [one] => {
            o.insert("Input".into(), Value::from(one.as_str()));
        }
        many => {
            o.insert("InputList".into(), json!(many));
        }
    }
    merge_extra(&mut o, &req.extra);
    Ok(Value::Object(o))
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
        let body = chat_body("hunyuan-lite", &req, false).unwrap();
        let o = body.as_object().unwrap();
        assert!(
            o.keys().all(|k| !k.to_ascii_lowercase().contains("token")),
            "{body}"
        );
    }
}
