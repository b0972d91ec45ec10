//! [`ChatResponse`] → the Response object (`object: "response"`): output items (`reasoning`
//! when the upstream returned reasoning text, one assistant `message` with an `output_text`
//! part, one `function_call` per tool call), `status` (`incomplete` with the reason when the
//! output cap or a content filter cut the answer) and `usage`. The stream encoder builds the
//! same object from the same item types.

use llmux_core::{ChatResponse, FinishReason, Usage};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::request::ResponsesOptions;

/// The ids of one response and its items, all from the gateway's request id.
#[derive(Debug, Clone)]
pub struct Ids {
    hex: String,
}

impl Ids {
    /// The ids for the request `request_id` (its hex digits).
    pub fn new(request_id: &str) -> Self {
        Ids {
            hex: request_id.chars().filter(|c| *c != '-').collect(),
        }
    }

    /// `resp_…`.
    pub fn response(&self) -> String {
        format!("resp_{}", self.hex)
    }

    /// `msg_…`: the one assistant message.
    pub fn message(&self) -> String {
        format!("msg_{}", self.hex)
    }

    /// `rs_…`: the one reasoning item.
    pub fn reasoning(&self) -> String {
        format!("rs_{}", self.hex)
    }

    /// `fc_…_N`: the function call with core index `index`.
    pub fn function_call(&self, index: u32) -> String {
        format!("fc_{}_{index}", self.hex)
    }
}

/// A Response object, as `POST /v1/responses` answers it and the stream's lifecycle events
/// carry it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ResponseObject {
    /// `resp_` and the request id's hex digits.
    pub id: String,
    /// Always `response`.
    #[schema(value_type = String)]
    pub object: &'static str,
    /// Unix seconds.
    pub created_at: i64,
    /// `completed`, `incomplete`, `in_progress` (stream start) or `failed` (stream error).
    #[schema(value_type = String)]
    pub status: &'static str,
    /// Why the answer is incomplete.
    pub incomplete_details: Option<IncompleteDetails>,
    /// What failed (`response.failed` only).
    pub error: Option<ResponseError>,
    /// The public model name.
    pub model: String,
    /// The output items, in order.
    pub output: Vec<OutputItem>,
    /// The request's `instructions`.
    pub instructions: Option<String>,
    /// The request's `metadata`.
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
    /// The request's `parallel_tool_calls`.
    pub parallel_tool_calls: bool,
    /// The request's `temperature`.
    pub temperature: Option<f64>,
    /// The request's `top_p`.
    pub top_p: Option<f64>,
    /// The request's `max_output_tokens`.
    pub max_output_tokens: Option<u32>,
    /// The request's `tool_choice`: `auto`, `none`, `required` or an object.
    pub tool_choice: Value,
    /// The request's function tools.
    #[schema(value_type = Vec<Object>)]
    pub tools: Vec<Value>,
    /// `{"format": …}` as requested.
    #[schema(value_type = Object)]
    pub text: Value,
    /// `{"effort": …, "summary": null}`.
    #[schema(value_type = Object)]
    pub reasoning: Value,
    /// Always `null`: the gateway keeps no conversations.
    #[schema(value_type = Option<String>)]
    pub previous_response_id: Option<()>,
    /// Always `false`: the gateway never stores responses.
    pub store: bool,
    /// Always `false`.
    pub background: bool,
    /// Always `disabled`.
    #[schema(value_type = String)]
    pub truncation: &'static str,
    /// Token usage (absent until the answer is complete).
    pub usage: Option<ResponseUsage>,
    /// The request's `user`.
    pub user: Option<String>,
}

/// `incomplete_details`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct IncompleteDetails {
    /// `max_output_tokens` or `content_filter`.
    #[schema(value_type = String)]
    pub reason: &'static str,
}

/// `error` of a failed response.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ResponseError {
    /// `server_error` or `rate_limit_exceeded`.
    #[schema(value_type = String)]
    pub code: &'static str,
    /// What went wrong, safe to show.
    pub message: String,
}

/// One output item.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutputItem {
    /// Reasoning text the upstream returned.
    Reasoning {
        /// `rs_…`.
        id: String,
        /// Always empty (the upstream's reasoning is in `content`).
        #[schema(value_type = Vec<Object>)]
        summary: Vec<Value>,
        /// One `reasoning_text` part.
        content: Vec<ReasoningText>,
        /// `in_progress` or `completed`.
        #[schema(value_type = String)]
        status: &'static str,
    },
    /// The assistant's message.
    Message {
        /// `msg_…`.
        id: String,
        /// Always `assistant`.
        #[schema(value_type = String)]
        role: &'static str,
        /// `in_progress`, `completed` or `incomplete`.
        #[schema(value_type = String)]
        status: &'static str,
        /// One `output_text` part (none while a stream has not started it).
        content: Vec<OutputText>,
    },
    /// A call of a function tool.
    FunctionCall {
        /// `fc_…`.
        id: String,
        /// The call id to answer with a `function_call_output`.
        call_id: String,
        /// The function.
        name: String,
        /// The arguments, a JSON string.
        arguments: String,
        /// `in_progress` or `completed`.
        #[schema(value_type = String)]
        status: &'static str,
    },
}

/// A `reasoning_text` part.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ReasoningText {
    /// Always `reasoning_text`.
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    pub kind: &'static str,
    /// The reasoning.
    pub text: String,
}

/// An `output_text` part.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct OutputText {
    /// Always `output_text`.
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    pub kind: &'static str,
    /// The text.
    pub text: String,
    /// Always empty.
    #[schema(value_type = Vec<Object>)]
    pub annotations: Vec<Value>,
}

impl OutputText {
    /// A part holding `text`.
    pub fn new(text: String) -> Self {
        OutputText {
            kind: "output_text",
            text,
            annotations: Vec::new(),
        }
    }
}

impl ReasoningText {
    /// A part holding `text`.
    pub fn new(text: String) -> Self {
        ReasoningText {
            kind: "reasoning_text",
            text,
        }
    }
}

/// The Responses `usage` object.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(as = ResponsesUsage)]
pub struct ResponseUsage {
    /// Prompt tokens (cached ones included).
    pub input_tokens: u64,
    /// Details of the input.
    pub input_tokens_details: InputTokensDetails,
    /// Generated tokens (reasoning ones included).
    pub output_tokens: u64,
    /// Details of the output.
    pub output_tokens_details: OutputTokensDetails,
    /// Input plus output.
    pub total_tokens: u64,
}

/// `usage.input_tokens_details`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(as = ResponsesInputTokensDetails)]
pub struct InputTokensDetails {
    /// Input tokens served from the upstream's cache (0 when not reported).
    pub cached_tokens: u64,
    /// Always 0: no upstream reports cache writes through the core usage.
    pub cache_write_tokens: u64,
}

/// `usage.output_tokens_details`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(as = ResponsesOutputTokensDetails)]
pub struct OutputTokensDetails {
    /// Reasoning tokens within `output_tokens` (0 when not reported).
    pub reasoning_tokens: u64,
}

impl From<&Usage> for ResponseUsage {
    fn from(u: &Usage) -> Self {
        ResponseUsage {
            input_tokens: u.input_tokens,
            input_tokens_details: InputTokensDetails {
                cached_tokens: u.cached_tokens.unwrap_or(0),
                cache_write_tokens: 0,
            },
            output_tokens: u.output_tokens,
            output_tokens_details: OutputTokensDetails {
                reasoning_tokens: u.reasoning_tokens.unwrap_or(0),
            },
            total_tokens: u.total_tokens,
        }
    }
}

/// `status` and `incomplete_details` for a finish reason.
pub fn status_of(reason: Option<&FinishReason>) -> (&'static str, Option<IncompleteDetails>) {
    match reason {
        Some(FinishReason::Length) => (
            "incomplete",
            Some(IncompleteDetails {
                reason: "max_output_tokens",
            }),
        ),
        Some(FinishReason::ContentFilter) => (
            "incomplete",
            Some(IncompleteDetails {
                reason: "content_filter",
            }),
        ),
        Some(FinishReason::Stop | FinishReason::ToolCalls | FinishReason::Other(_)) | None => {
            ("completed", None)
        }
    }
}

/// The parts of a Response object that do not depend on the answer.
#[derive(Debug, Clone)]
pub struct Shell<'a> {
    /// The ids.
    pub ids: &'a Ids,
    /// Unix seconds.
    pub created_at: i64,
    /// The public model name.
    pub model: &'a str,
    /// The request's echoed fields.
    pub options: &'a ResponsesOptions,
}

impl Shell<'_> {
    /// A Response object with these items, status and usage.
    pub fn response(
        &self,
        status: &'static str,
        incomplete_details: Option<IncompleteDetails>,
        output: Vec<OutputItem>,
        usage: Option<&Usage>,
    ) -> ResponseObject {
        let o = self.options;
        ResponseObject {
            id: self.ids.response(),
            object: "response",
            created_at: self.created_at,
            status,
            incomplete_details,
            error: None,
            model: self.model.to_owned(),
            output,
            instructions: o.instructions.clone(),
            metadata: o.metadata.clone(),
            parallel_tool_calls: o.parallel_tool_calls,
            temperature: o.temperature,
            top_p: o.top_p,
            max_output_tokens: o.max_output_tokens,
            tool_choice: o.tool_choice.clone(),
            tools: o.tools.clone(),
            text: serde_json::json!({"format": o.text_format}),
            reasoning: serde_json::json!({"effort": o.reasoning_effort, "summary": null}),
            previous_response_id: None,
            store: false,
            background: false,
            truncation: "disabled",
            usage: usage.map(ResponseUsage::from),
            user: o.user.clone(),
        }
    }
}

/// The Response object of a whole answer.
pub fn encode_response(resp: &ChatResponse, shell: &Shell<'_>) -> ResponseObject {
    let choice = resp.choices.first();
    let (status, incomplete) = status_of(choice.and_then(|c| c.finish_reason.as_ref()));
    let mut output = Vec::new();
    if let Some(c) = choice {
        let m = &c.message;
        if let Some(r) = m.reasoning.as_deref().filter(|r| !r.is_empty()) {
            output.push(OutputItem::Reasoning {
                id: shell.ids.reasoning(),
                summary: Vec::new(),
                content: vec![ReasoningText::new(r.to_owned())],
                status: "completed",
            });
        }
        let text = m.content.text();
        if !text.is_empty() || m.tool_calls.is_empty() {
            output.push(OutputItem::Message {
                id: shell.ids.message(),
                role: "assistant",
                status: if status == "completed" {
                    "completed"
                } else {
                    "incomplete"
                },
                content: vec![OutputText::new(text.into_owned())],
            });
        }
        for (i, call) in m.tool_calls.iter().enumerate() {
            output.push(OutputItem::FunctionCall {
                id: shell
                    .ids
                    .function_call(u32::try_from(i).unwrap_or(u32::MAX)),
                call_id: call.id.clone(),
                name: call.name.clone(),
                arguments: call.arguments.clone(),
                status: "completed",
            });
        }
    }
    shell.response(status, incomplete, output, resp.usage.as_ref())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use llmux_core::{Message, ToolCall};

    use super::*;
    use crate::ingress::testing::answer;

    fn encode(resp: &ChatResponse, opts: &ResponsesOptions) -> Value {
        let ids = Ids::new("0190-ab");
        let shell = Shell {
            ids: &ids,
            created_at: 7,
            model: "public",
            options: opts,
        };
        serde_json::to_value(encode_response(resp, &shell)).unwrap()
    }

    #[test]
    fn text_reasoning_and_usage_become_items() {
        let mut m = Message::assistant("Hello");
        m.reasoning = Some("think".into());
        let mut u = Usage::new(10, 5);
        u.cached_tokens = Some(4);
        u.reasoning_tokens = Some(2);
        let opts = ResponsesOptions {
            instructions: Some("be brief".into()),
            parallel_tool_calls: true,
            tool_choice: "auto".into(),
            text_format: serde_json::json!({"type": "text"}),
            reasoning_effort: Some("low".into()),
            ..ResponsesOptions::default()
        };
        let v = encode(&answer(m, FinishReason::Stop, u), &opts);
        assert_eq!(v["id"], "resp_0190ab");
        assert_eq!(v["object"], "response");
        assert_eq!(v["created_at"], 7);
        assert_eq!(v["status"], "completed");
        assert!(v["incomplete_details"].is_null() && v["error"].is_null());
        assert_eq!(v["model"], "public");
        assert_eq!(v["instructions"], "be brief");
        assert_eq!(v["reasoning"]["effort"], "low");
        assert_eq!(v["text"]["format"]["type"], "text");
        assert_eq!(v["store"], false);
        let out = v["output"].as_array().unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0]["type"], "reasoning");
        assert_eq!(out[0]["id"], "rs_0190ab");
        assert_eq!(
            out[0]["content"][0],
            serde_json::json!({"type": "reasoning_text", "text": "think"})
        );
        assert_eq!(out[1]["type"], "message");
        assert_eq!(out[1]["id"], "msg_0190ab");
        assert_eq!(out[1]["role"], "assistant");
        assert_eq!(out[1]["status"], "completed");
        assert_eq!(
            out[1]["content"][0],
            serde_json::json!({"type": "output_text", "text": "Hello", "annotations": []})
        );
        assert_eq!(
            v["usage"],
            serde_json::json!({
                "input_tokens": 10, "input_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 0},
                "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 2},
                "total_tokens": 15
            })
        );
    }

    #[test]
    fn tool_calls_are_function_call_items_without_an_empty_message() {
        let mut m = Message::assistant("");
        m.tool_calls = vec![
            ToolCall {
                id: "call_a".into(),
                name: "f".into(),
                arguments: "{\"x\":1}".into(),
            },
            ToolCall {
                id: "call_b".into(),
                name: "g".into(),
                arguments: "{}".into(),
            },
        ];
        let v = encode(
            &answer(m, FinishReason::ToolCalls, Usage::new(1, 2)),
            &ResponsesOptions::default(),
        );
        assert_eq!(v["status"], "completed");
        let out = v["output"].as_array().unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(
            out[0],
            serde_json::json!({"type": "function_call", "id": "fc_0190ab_0", "call_id": "call_a",
                "name": "f", "arguments": "{\"x\":1}", "status": "completed"})
        );
        assert_eq!(out[1]["id"], "fc_0190ab_1");
    }

    #[test]
    fn a_cut_answer_is_incomplete_with_the_reason() {
        let v = encode(
            &answer(
                Message::assistant("Hel"),
                FinishReason::Length,
                Usage::new(1, 1),
            ),
            &ResponsesOptions::default(),
        );
        assert_eq!(v["status"], "incomplete");
        assert_eq!(v["incomplete_details"]["reason"], "max_output_tokens");
        assert_eq!(v["output"][0]["status"], "incomplete");
        let v = encode(
            &answer(
                Message::assistant(""),
                FinishReason::ContentFilter,
                Usage::new(1, 0),
            ),
            &ResponsesOptions::default(),
        );
        assert_eq!(v["incomplete_details"]["reason"], "content_filter");
        // An empty answer still has its message, so `output_text` is "".
        assert_eq!(v["output"][0]["content"][0]["text"], "");
    }
}
