//! [`ChatResponse`] → the DashScope generation body in `text` or `message` format (PROTOCOLS §1.3).
//! The body is built as the typed [`GenerationResponse`], whose schema `/openapi.json` publishes.

use llmux_core::{ChatResponse, ToolCall, Usage};
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use super::ResultFormat;

/// The DashScope `usage` object.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(as = DashScopeUsage)]
pub struct DsUsage {
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Generated tokens.
    pub output_tokens: u64,
    /// Input plus output.
    pub total_tokens: u64,
    /// Cached prompt tokens, when the upstream reported them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<DsPromptDetails>,
    /// Reasoning tokens, when the upstream reported them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_tokens_details: Option<DsOutputDetails>,
}

/// `usage.prompt_tokens_details`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(as = DashScopePromptDetails)]
pub struct DsPromptDetails {
    /// Prompt tokens served from the vendor's cache.
    pub cached_tokens: u64,
}

/// `usage.output_tokens_details`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(as = DashScopeOutputDetails)]
pub struct DsOutputDetails {
    /// Reasoning tokens within `output_tokens`.
    pub reasoning_tokens: u64,
}

impl From<&Usage> for DsUsage {
    fn from(u: &Usage) -> Self {
        DsUsage {
            input_tokens: u.input_tokens,
            output_tokens: u.output_tokens,
            total_tokens: u.total_tokens,
            prompt_tokens_details: u
                .cached_tokens
                .map(|c| DsPromptDetails { cached_tokens: c }),
            output_tokens_details: u.reasoning_tokens.map(|r| DsOutputDetails {
                reasoning_tokens: r,
            }),
        }
    }
}

/// The DashScope `usage` object, as JSON.
pub(crate) fn usage_json(u: &Usage) -> Value {
    serde_json::to_value(DsUsage::from(u)).unwrap_or_default()
}

pub(crate) fn tool_calls_json<'a>(calls: impl Iterator<Item = (usize, &'a ToolCall)>) -> Value {
    calls
        .map(|(i, t)| {
            json!({"index": i, "id": t.id, "type": "function",
                   "function": {"name": t.name, "arguments": t.arguments}})
        })
        .collect()
}

/// A generation answer: the whole answer, and (with `X-DashScope-SSE: enable`) the `data:` of
/// every `event:result` frame, where `finish_reason` is the string `"null"` until the last one.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct GenerationResponse {
    /// The answer, in the requested `result_format`.
    pub output: GenerationOutput,
    /// Token usage, when reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<DsUsage>,
    /// The request id.
    pub request_id: String,
}

/// `output`: `{"finish_reason","text"}` for `result_format: text` (the default), `{"choices"}`
/// for `message`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(untagged)]
pub enum GenerationOutput {
    /// `result_format: text`.
    Text {
        /// `stop`, `length`, `tool_calls`, …
        finish_reason: String,
        /// The generated text.
        text: String,
    },
    /// `result_format: message`.
    Message {
        /// One choice.
        choices: Vec<GenerationChoice>,
    },
}

/// One choice of a `message`-format answer.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct GenerationChoice {
    /// `stop`, `length`, `tool_calls`, …
    pub finish_reason: String,
    /// The assistant's message.
    pub message: GenerationMessage,
}

/// The assistant's message of a `GenerationChoice`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct GenerationMessage {
    /// Always `assistant`.
    #[schema(value_type = String)]
    pub role: &'static str,
    /// The text.
    pub content: String,
    /// The tool calls, when the model made any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<GenerationToolCall>>,
    /// The reasoning text, for reasoning models that return it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
}

/// A tool call in a DashScope answer.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct GenerationToolCall {
    /// Position of the call.
    pub index: usize,
    /// The call id.
    pub id: String,
    /// Always `function`.
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    pub kind: &'static str,
    /// The function and its arguments.
    pub function: crate::ingress::openai::response::FunctionCallOut,
}

/// The whole answer.
pub fn encode_generation(
    resp: &ChatResponse,
    format: ResultFormat,
    request_id: &str,
) -> GenerationResponse {
    let finish = resp.finish_reason().map_or("stop", |f| f.as_str());
    let output = match format {
        ResultFormat::Text => GenerationOutput::Text {
            finish_reason: finish.to_owned(),
            text: resp.text().into_owned(),
        },
        ResultFormat::Message => GenerationOutput::Message {
            choices: resp
                .choices
                .iter()
                .map(|c| GenerationChoice {
                    finish_reason: c
                        .finish_reason
                        .as_ref()
                        .map_or("stop", |f| f.as_str())
                        .to_owned(),
                    message: GenerationMessage {
                        role: "assistant",
                        content: c.message.content.text().into_owned(),
                        tool_calls: (!c.message.tool_calls.is_empty()).then(|| {
                            c.message
                                .tool_calls
                                .iter()
                                .enumerate()
                                .map(|(i, t)| GenerationToolCall {
                                    index: i,
                                    id: t.id.clone(),
                                    kind: "function",
                                    function: crate::ingress::openai::response::FunctionCallOut {
                                        name: t.name.clone(),
                                        arguments: t.arguments.clone(),
                                    },
                                })
                                .collect()
                        }),
                        reasoning_content: c.message.reasoning.clone(),
                    },
                })
                .collect(),
        },
    };
    GenerationResponse {
        output,
        usage: resp.usage.as_ref().map(DsUsage::from),
        request_id: request_id.to_owned(),
    }
}
