//! [`ChatResponse`] → a Messages API `message` object: content blocks (`thinking` from the
//! reasoning, `text`, `tool_use` with `input` parsed from the arguments JSON), `stop_reason`
//! and `usage`, typed as [`MessageObject`] (the schema `/openapi.json` publishes).
//!
//! Usage follows Anthropic's accounting: `input_tokens` excludes the prompt tokens read from a
//! cache, which are `cache_read_input_tokens`; `output_tokens_details.thinking_tokens` carries
//! the reasoning tokens when the upstream reports them. The core usage has no cache-write
//! count: `cache_creation_input_tokens` is `null`. Thinking blocks carry the upstream's
//! `signature` when it gave one (Anthropic), else an empty one (no other vendor signs).

use llmux_core::{ChatResponse, ErrorKind, FinishReason, Usage};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::error::ApiError;

/// A `message` object.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct MessageObject {
    /// `msg_` and the gateway's request id.
    pub id: String,
    /// Always `message`.
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    pub kind: &'static str,
    /// Always `assistant`.
    #[schema(value_type = String)]
    pub role: &'static str,
    /// The public model name the client asked for.
    pub model: String,
    /// Thinking, text and tool_use blocks, in that order.
    pub content: Vec<ContentBlock>,
    /// `end_turn`, `max_tokens`, `tool_use`, `refusal`, … (`null` only on `message_start`).
    pub stop_reason: Option<String>,
    /// Always `null`: the upstreams do not say which stop sequence matched.
    pub stop_sequence: Option<String>,
    /// Token usage.
    pub usage: AnthropicUsage,
}

/// A content block of an answer.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentBlock {
    /// Reasoning text.
    Thinking {
        /// The reasoning.
        thinking: String,
        /// The upstream's signature, or empty (see the module docs).
        signature: String,
    },
    /// Answer text.
    Text {
        /// The text.
        text: String,
    },
    /// A tool call.
    ToolUse {
        /// The call id, echoed back in the `tool_result`.
        id: String,
        /// The tool's name.
        name: String,
        /// The arguments.
        #[schema(value_type = Object)]
        input: Value,
    },
}

/// The `usage` object.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AnthropicUsage {
    /// Prompt tokens not read from a cache.
    pub input_tokens: u64,
    /// Generated tokens (thinking included).
    pub output_tokens: u64,
    /// Always `null`: no cache-write count reaches the gateway.
    pub cache_creation_input_tokens: Option<u64>,
    /// Prompt tokens read from the upstream's cache (`null` when not reported).
    pub cache_read_input_tokens: Option<u64>,
    /// The thinking tokens within `output_tokens`, when reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_tokens_details: Option<OutputTokensDetails>,
}

/// `usage.output_tokens_details`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct OutputTokensDetails {
    /// Thinking tokens.
    pub thinking_tokens: u64,
}

impl From<&Usage> for AnthropicUsage {
    fn from(u: &Usage) -> Self {
        AnthropicUsage {
            input_tokens: u.input_tokens.saturating_sub(u.cached_tokens.unwrap_or(0)),
            output_tokens: u.output_tokens,
            cache_creation_input_tokens: None,
            cache_read_input_tokens: u.cached_tokens,
            output_tokens_details: u
                .reasoning_tokens
                .map(|t| OutputTokensDetails { thinking_tokens: t }),
        }
    }
}

impl AnthropicUsage {
    /// Usage before the upstream reported any: the gateway's prompt estimate.
    pub fn estimated(prompt: u64) -> Self {
        AnthropicUsage {
            input_tokens: prompt,
            output_tokens: 0,
            cache_creation_input_tokens: None,
            cache_read_input_tokens: None,
            output_tokens_details: None,
        }
    }
}

/// Anthropic's `stop_reason` for a finish reason: `end_turn` for a natural stop (or a stop
/// sequence: the upstreams do not tell them apart), `max_tokens`, `tool_use`, `refusal` for
/// content filtering; any other reason verbatim.
pub fn stop_reason(r: &FinishReason) -> &str {
    match r {
        FinishReason::Stop => "end_turn",
        FinishReason::Length => "max_tokens",
        FinishReason::ToolCalls => "tool_use",
        FinishReason::ContentFilter => "refusal",
        FinishReason::Other(s) => s,
    }
}

/// The `msg_` id of a request.
pub fn message_id(rid: &str) -> String {
    let mut s = String::with_capacity(4 + rid.len());
    s.push_str("msg_");
    s.extend(rid.chars().filter(|c| *c != '-'));
    s
}

/// The id of a tool call the upstream gave none.
pub(crate) fn tool_use_id(rid: &str, i: usize) -> String {
    let mut s = String::with_capacity(8 + rid.len());
    s.push_str("toolu_");
    s.extend(rid.chars().filter(|c| *c != '-'));
    s.push('_');
    s.push_str(&i.to_string());
    s
}

/// A tool call's arguments as a `tool_use` input: a JSON object (empty arguments are `{}`). An
/// upstream whose model wrote anything else gets a 502 rather than a made-up input.
pub(crate) fn tool_input(name: &str, arguments: &str) -> Result<Value, ApiError> {
    if arguments.trim().is_empty() {
        return Ok(Value::Object(Default::default()));
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(ApiError::new(
            ErrorKind::UpstreamProtocol,
            format!(
                "the model's call of tool `{name}` has arguments that are not a JSON object, \
                 which a tool_use block cannot carry"
            ),
        )),
    }
}

/// Encodes a whole answer. `prompt_estimate` stands for the input tokens when the upstream
/// reported no usage (as the gateway then bills).
pub fn encode_message(
    answer: &ChatResponse,
    request_id: &str,
    model: &str,
    show_thinking: bool,
    prompt_estimate: u64,
) -> Result<MessageObject, ApiError> {
    let mut content = Vec::new();
    let choice = answer.choices.first();
    if let Some(m) = choice.map(|c| &c.message) {
        if let Some(r) = m.reasoning.as_deref().filter(|r| !r.is_empty()) {
            content.push(ContentBlock::Thinking {
                thinking: if show_thinking {
                    r.to_owned()
                } else {
                    String::new()
                },
                signature: m.reasoning_signature.clone().unwrap_or_default(),
            });
        }
        let text = m.content.text();
        if !text.is_empty() {
            content.push(ContentBlock::Text {
                text: text.into_owned(),
            });
        }
        for (i, c) in m.tool_calls.iter().enumerate() {
            content.push(ContentBlock::ToolUse {
                id: if c.id.is_empty() {
                    tool_use_id(request_id, i)
                } else {
                    c.id.clone()
                },
                name: c.name.clone(),
                input: tool_input(&c.name, &c.arguments)?,
            });
        }
    }
    let reason = choice
        .and_then(|c| c.finish_reason.as_ref())
        .map_or("end_turn", stop_reason);
    Ok(MessageObject {
        id: message_id(request_id),
        kind: "message",
        role: "assistant",
        model: model.to_owned(),
        content,
        stop_reason: Some(reason.to_owned()),
        stop_sequence: None,
        usage: answer.usage.as_ref().map_or_else(
            || AnthropicUsage::estimated(prompt_estimate),
            AnthropicUsage::from,
        ),
    })
}

/// A count_tokens answer.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct TokenCount {
    /// The estimated prompt tokens of the request (see `docs/dialects.md`: an estimate, not a
    /// vendor tokenizer's count).
    pub input_tokens: u64,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use llmux_core::{Choice, Message, ToolCall};

    fn answer(m: Message, reason: FinishReason, usage: Option<Usage>) -> ChatResponse {
        ChatResponse {
            id: "up".into(),
            model: "up-model".into(),
            created: None,
            choices: vec![Choice {
                index: 0,
                message: m,
                finish_reason: Some(reason),
            }],
            usage,
            request_id: None,
        }
    }

    #[test]
    fn a_whole_answer_is_a_message_with_blocks_and_anthropic_usage() {
        let mut m = Message::assistant("Let me check.");
        m.reasoning = Some("thinking…".into());
        m.tool_calls = vec![
            ToolCall {
                id: "call_1".into(),
                name: "get".into(),
                arguments: r#"{"q":"x"}"#.into(),
            },
            ToolCall {
                id: String::new(),
                name: "now".into(),
                arguments: String::new(),
            },
        ];
        let mut u = Usage::new(100, 30);
        u.cached_tokens = Some(60);
        u.reasoning_tokens = Some(12);
        let msg = encode_message(
            &answer(m, FinishReason::ToolCalls, Some(u)),
            "0193-ab",
            "pub",
            true,
            7,
        )
        .unwrap();
        let v = serde_json::to_value(&msg).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "id": "msg_0193ab", "type": "message", "role": "assistant", "model": "pub",
                "content": [
                    {"type": "thinking", "thinking": "thinking…", "signature": ""},
                    {"type": "text", "text": "Let me check."},
                    {"type": "tool_use", "id": "call_1", "name": "get", "input": {"q": "x"}},
                    {"type": "tool_use", "id": "toolu_0193ab_1", "name": "now", "input": {}}
                ],
                "stop_reason": "tool_use", "stop_sequence": null,
                "usage": {"input_tokens": 40, "output_tokens": 30,
                    "cache_creation_input_tokens": null, "cache_read_input_tokens": 60,
                    "output_tokens_details": {"thinking_tokens": 12}}
            })
        );
    }

    #[test]
    fn stop_reasons_and_missing_usage() {
        for (r, s) in [
            (FinishReason::Stop, "end_turn"),
            (FinishReason::Length, "max_tokens"),
            (FinishReason::ContentFilter, "refusal"),
            (FinishReason::Other("pause_turn".into()), "pause_turn"),
        ] {
            let msg = encode_message(&answer(Message::assistant("x"), r, None), "r", "m", true, 9)
                .unwrap();
            assert_eq!(msg.stop_reason.as_deref(), Some(s));
            assert_eq!(msg.usage, AnthropicUsage::estimated(9));
        }
        // Omitted thinking keeps the block, without its text.
        let mut m = Message::assistant("x");
        m.reasoning = Some("secret".into());
        let msg = encode_message(&answer(m, FinishReason::Stop, None), "r", "m", false, 0).unwrap();
        assert_eq!(
            msg.content[0],
            ContentBlock::Thinking {
                thinking: String::new(),
                signature: String::new()
            }
        );
    }

    #[test]
    fn tool_arguments_that_are_not_an_object_are_an_upstream_error() {
        let mut m = Message::assistant("");
        m.tool_calls = vec![ToolCall {
            id: "c".into(),
            name: "f".into(),
            arguments: "[1, 2".into(),
        }];
        let e = encode_message(&answer(m, FinishReason::ToolCalls, None), "r", "m", true, 0)
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::UpstreamProtocol);
        assert!(e.message.contains("`f`"));
    }
}
