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

impl ChatCompletion {
    /// This body as JSON: the bytes `serde_json::to_writer` writes for it, with the field
    /// names and punctuation copied as constants rather than escaped one by one (serializing
    /// through the derive cost about 6 % of a proxied request). Strings and any `logprobs`
    /// value still go through `serde_json`.
    pub(crate) fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        put(out, b"{\"id\":", &self.id)?;
        put(out, b",\"object\":", self.object)?;
        put(out, b",\"created\":", &self.created)?;
        put(out, b",\"model\":", &self.model)?;
        out.extend_from_slice(b",\"choices\":[");
        for (i, c) in self.choices.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            put(out, b"{\"index\":", &c.index)?;
            let m = &c.message;
            put(out, b",\"message\":{\"role\":", m.role)?;
            put(out, b",\"content\":", &m.content)?;
            put(out, b",\"refusal\":", &m.refusal)?;
            if let Some(calls) = &m.tool_calls {
                put(out, b",\"tool_calls\":", calls)?;
            }
            if let Some(r) = &m.reasoning_content {
                put(out, b",\"reasoning_content\":", r)?;
            }
            put(out, b"},\"logprobs\":", &c.logprobs)?;
            put(out, b",\"finish_reason\":", &c.finish_reason)?;
            out.push(b'}');
        }
        put(out, b"],\"system_fingerprint\":", &self.system_fingerprint)?;
        if let Some(u) = &self.usage {
            put(out, b",\"usage\":{\"prompt_tokens\":", &u.prompt_tokens)?;
            put(out, b",\"completion_tokens\":", &u.completion_tokens)?;
            put(out, b",\"total_tokens\":", &u.total_tokens)?;
            put(
                out,
                b",\"prompt_tokens_details\":{\"cached_tokens\":",
                &u.prompt_tokens_details.cached_tokens,
            )?;
            put(
                out,
                b"},\"completion_tokens_details\":{\"reasoning_tokens\":",
                &u.completion_tokens_details.reasoning_tokens,
            )?;
            out.extend_from_slice(b"}}");
        }
        out.push(b'}');
        Ok(())
    }
}

/// Appends `key` (the punctuation and field name before a value, copied as is) and `value` as
/// `serde_json` writes it.
fn put<T: Serialize + ?Sized>(out: &mut Vec<u8>, key: &[u8], value: &T) -> serde_json::Result<()> {
    out.extend_from_slice(key);
    serde_json::to_writer(&mut *out, value)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn completion(choices: Vec<CompletionChoice>, usage: Option<OpenAiUsage>) -> ChatCompletion {
        ChatCompletion {
            id: "chatcmpl-\"quoted\"\\id".into(),
            object: "chat.completion",
            created: -17,
            model: "qwen/plus\u{1F600}\n".into(),
            choices,
            system_fingerprint: None,
            usage,
        }
    }

    fn choice(index: u32, message: AssistantMessage, logprobs: Option<Value>) -> CompletionChoice {
        CompletionChoice {
            index,
            message,
            logprobs,
            finish_reason: "tool_calls".into(),
        }
    }

    fn message(
        content: Option<&str>,
        calls: Option<Vec<ToolCallOut>>,
        reasoning: Option<&str>,
    ) -> AssistantMessage {
        AssistantMessage {
            role: "assistant",
            content: content.map(str::to_owned),
            refusal: None,
            tool_calls: calls,
            reasoning_content: reasoning.map(str::to_owned),
        }
    }

    #[test]
    fn the_written_body_is_byte_for_byte_what_serde_writes() {
        let call = |id: &str| ToolCallOut {
            id: id.into(),
            kind: "function",
            function: FunctionCallOut {
                name: "get_weather".into(),
                arguments: "{\"city\":\"Hangzhou\\n\"}".into(),
            },
        };
        let usage = OpenAiUsage {
            prompt_tokens: 12,
            completion_tokens: u64::MAX,
            total_tokens: 0,
            prompt_tokens_details: PromptTokensDetails { cached_tokens: 3 },
            completion_tokens_details: CompletionTokensDetails {
                reasoning_tokens: 7,
            },
        };
        let mut with_fingerprint = completion(vec![], Some(usage.clone()));
        with_fingerprint.system_fingerprint = Some("fp_\u{7}".into());
        let mut refused = message(None, None, None);
        refused.refusal = Some("no".into());
        let bodies = [
            completion(vec![], None),
            completion(vec![], Some(usage.clone())),
            with_fingerprint,
            completion(
                vec![choice(
                    0,
                    message(Some("Hi \"there\"\t\u{0}\u{2028}é"), None, None),
                    None,
                )],
                Some(usage.clone()),
            ),
            completion(
                vec![
                    choice(
                        0,
                        message(None, Some(vec![call("a"), call("b")]), None),
                        None,
                    ),
                    choice(
                        1,
                        message(Some(""), Some(vec![]), Some("thinking…")),
                        Some(serde_json::json!({"content": [{"token": "a", "logprob": -0.5}]})),
                    ),
                    choice(u32::MAX, refused, Some(Value::Null)),
                ],
                None,
            ),
        ];
        for body in &bodies {
            let mut fast = Vec::new();
            body.write_json(&mut fast).unwrap();
            let slow = serde_json::to_vec(body).unwrap();
            assert_eq!(
                String::from_utf8_lossy(&fast),
                String::from_utf8_lossy(&slow)
            );
            assert_eq!(fast, slow);
        }
    }
}
