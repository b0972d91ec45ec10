//! [`ChatResponse`] → `chat.completion` (PROTOCOLS §2.3). The body is built as the typed
//! [`ChatCompletion`], whose schema is the one `/openapi.json` publishes.

use llmux_core::{ChatResponse, Usage};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// The OpenAI `usage` object.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct OpenAiUsage {
    /// Prompt tokens (cached ones included).
    pub prompt_tokens: u64,
    /// Generated tokens (reasoning ones included).
    pub completion_tokens: u64,
    /// Prompt plus completion.
    pub total_tokens: u64,
    /// Details of the prompt tokens.
    pub prompt_tokens_details: PromptTokensDetails,
    /// Details of the completion tokens.
    pub completion_tokens_details: CompletionTokensDetails,
}

/// `usage.prompt_tokens_details`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct PromptTokensDetails {
    /// Prompt tokens served from the vendor's cache (0 when not reported).
    pub cached_tokens: u64,
}

/// `usage.completion_tokens_details`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct CompletionTokensDetails {
    /// Reasoning tokens within `completion_tokens` (0 when not reported).
    pub reasoning_tokens: u64,
}

impl From<&Usage> for OpenAiUsage {
    fn from(u: &Usage) -> Self {
        OpenAiUsage {
            prompt_tokens: u.input_tokens,
            completion_tokens: u.output_tokens,
            total_tokens: u.total_tokens,
            prompt_tokens_details: PromptTokensDetails {
                cached_tokens: u.cached_tokens.unwrap_or(0),
            },
            completion_tokens_details: CompletionTokensDetails {
                reasoning_tokens: u.reasoning_tokens.unwrap_or(0),
            },
        }
    }
}

/// The OpenAI `usage` object, as JSON.
pub(crate) fn usage_json(u: &Usage) -> Value {
    serde_json::to_value(OpenAiUsage::from(u)).unwrap_or_default()
}

/// A `chat.completion` body.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ChatCompletion {
    /// `chatcmpl-` and the request id.
    pub id: String,
    /// Always `chat.completion`.
    #[schema(value_type = String)]
    pub object: &'static str,
    /// Unix seconds.
    pub created: i64,
    /// The public model name the client asked for.
    pub model: String,
    /// One choice.
    pub choices: Vec<CompletionChoice>,
    /// Always `null`.
    pub system_fingerprint: Option<String>,
    /// Token usage, when the upstream reported it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<OpenAiUsage>,
}

/// One choice of a `ChatCompletion`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct CompletionChoice {
    /// Its index (0).
    pub index: u32,
    /// The assistant's message.
    pub message: AssistantMessage,
    /// Always `null`.
    #[schema(value_type = Option<Object>)]
    pub logprobs: Option<Value>,
    /// `stop`, `length`, `tool_calls`, `content_filter`, …
    pub finish_reason: String,
}

/// The assistant's message in a `CompletionChoice`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AssistantMessage {
    /// Always `assistant`.
    #[schema(value_type = String)]
    pub role: &'static str,
    /// The text; `null` when the message is only tool calls.
    pub content: Option<String>,
    /// Always `null`.
    pub refusal: Option<String>,
    /// The tool calls, when the model made any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallOut>>,
    /// The reasoning text, for reasoning models that return it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
}

/// A tool call in an answer.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ToolCallOut {
    /// The call id.
    pub id: String,
    /// Always `function`.
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    pub kind: &'static str,
    /// The function and its arguments.
    pub function: FunctionCallOut,
}

/// The function of a `ToolCallOut`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct FunctionCallOut {
    /// The function's name.
    pub name: String,
    /// The arguments, a JSON string.
    pub arguments: String,
}

/// The `chat.completion` body; `id`, `created` and `model` are the gateway's.
pub fn encode_chat(resp: &ChatResponse, id: &str, created: i64, model: &str) -> ChatCompletion {
    let choices = resp
        .choices
        .iter()
        .map(|c| {
            let text = c.message.content.text();
            let has_calls = !c.message.tool_calls.is_empty();
            CompletionChoice {
                index: c.index,
                message: AssistantMessage {
                    role: "assistant",
                    content: (!has_calls || !text.is_empty()).then(|| text.into_owned()),
                    refusal: None,
                    tool_calls: has_calls.then(|| {
                        c.message
                            .tool_calls
                            .iter()
                            .map(|t| ToolCallOut {
                                id: t.id.clone(),
                                kind: "function",
                                function: FunctionCallOut {
                                    name: t.name.clone(),
                                    arguments: t.arguments.clone(),
                                },
                            })
                            .collect()
                    }),
                    reasoning_content: c.message.reasoning.clone(),
                },
                logprobs: None,
                finish_reason: c
                    .finish_reason
                    .as_ref()
                    .map_or("stop", |f| f.as_str())
                    .to_owned(),
            }
        })
        .collect();
    ChatCompletion {
        id: id.to_owned(),
        object: "chat.completion",
        created,
        model: model.to_owned(),
        choices,
        system_fingerprint: None,
        usage: resp.usage.as_ref().map(OpenAiUsage::from),
    }
}
