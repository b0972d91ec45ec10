//! [`ChatResponse`] → `GenerateContentResponse`: one candidate whose `model` content holds the
//! text, the thoughts (`thought: true`, only with `includeThoughts`) and the function calls
//! (`args` the parsed arguments), its `finishReason`, and `usageMetadata` in Gemini's terms
//! (`candidatesTokenCount` excludes the thoughts, counted in `thoughtsTokenCount`). A call
//! whose arguments are not a JSON object is not invented into one: the candidate finishes with
//! `MALFORMED_FUNCTION_CALL` and `finishMessage` holds the call as the model wrote it.

use llmux_core::{ChatResponse, FinishReason, ToolCall, Usage};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// A `GenerateContentResponse` (also each chunk of a stream).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = GeminiGenerateContentResponse)]
pub struct GenerateContentResponse {
    /// One candidate.
    pub candidates: Vec<Candidate>,
    /// Token usage (on a stream: the last chunk only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_metadata: Option<UsageMetadata>,
    /// The public model name.
    pub model_version: String,
    /// The gateway's request id.
    pub response_id: String,
}

/// A candidate answer.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = GeminiCandidate)]
pub struct Candidate {
    /// The model's parts (absent on a stream's last chunk when it adds none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<CandidateContent>,
    /// `STOP`, `MAX_TOKENS`, `SAFETY`, `MALFORMED_FUNCTION_CALL` or `OTHER` (absent until a
    /// stream's last chunk).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub finish_reason: Option<&'static str>,
    /// What was malformed, with `MALFORMED_FUNCTION_CALL`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finish_message: Option<String>,
    /// Always 0.
    pub index: u32,
}

/// The `model` content of a candidate.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(as = GeminiCandidateContent)]
pub struct CandidateContent {
    /// Always `model`.
    #[schema(value_type = String)]
    pub role: &'static str,
    /// Text, thought and function-call parts.
    pub parts: Vec<PartOut>,
}

/// An answer part.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = GeminiPartOut)]
pub struct PartOut {
    /// Text (or a thought's text).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// `true` on a thought.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thought: Option<bool>,
    /// A function call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function_call: Option<FunctionCallOut>,
}

impl PartOut {
    /// A text part.
    pub fn text(text: String) -> Self {
        PartOut {
            text: Some(text),
            thought: None,
            function_call: None,
        }
    }

    /// A thought part.
    pub fn thought(text: String) -> Self {
        PartOut {
            text: Some(text),
            thought: Some(true),
            function_call: None,
        }
    }
}

/// A function call of the answer.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(as = GeminiFunctionCallOut)]
pub struct FunctionCallOut {
    /// The upstream's call id (echo it in the `functionResponse`).
    pub id: String,
    /// The function.
    pub name: String,
    /// The arguments.
    #[schema(value_type = Object)]
    pub args: Value,
}

/// `usageMetadata`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = GeminiUsageMetadata)]
pub struct UsageMetadata {
    /// Prompt tokens (cached ones included).
    pub prompt_token_count: u64,
    /// Answer tokens, thoughts excluded.
    pub candidates_token_count: u64,
    /// Prompt plus answer plus thoughts.
    pub total_token_count: u64,
    /// Prompt tokens served from the upstream's cache, when reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cached_content_token_count: Option<u64>,
    /// Thinking tokens, when reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thoughts_token_count: Option<u64>,
}

impl From<&Usage> for UsageMetadata {
    fn from(u: &Usage) -> Self {
        let thoughts = u.reasoning_tokens.filter(|n| *n > 0);
        UsageMetadata {
            prompt_token_count: u.input_tokens,
            candidates_token_count: u.output_tokens.saturating_sub(thoughts.unwrap_or(0)),
            total_token_count: u.total_tokens,
            cached_content_token_count: u.cached_tokens,
            thoughts_token_count: thoughts,
        }
    }
}

/// Gemini's name of a finish reason.
pub fn finish_name(reason: Option<&FinishReason>) -> &'static str {
    match reason {
        Some(FinishReason::Stop | FinishReason::ToolCalls) | None => "STOP",
        Some(FinishReason::Length) => "MAX_TOKENS",
        Some(FinishReason::ContentFilter) => "SAFETY",
        Some(FinishReason::Other(_)) => "OTHER",
    }
}

/// The calls as parts; the calls whose arguments are not a JSON object, as a message.
pub fn call_parts<'a>(
    calls: impl Iterator<Item = &'a ToolCall>,
    parts: &mut Vec<PartOut>,
) -> Option<String> {
    let mut malformed = Vec::new();
    for c in calls {
        let args = if c.arguments.trim().is_empty() {
            Some(Value::Object(serde_json::Map::new()))
        } else {
            serde_json::from_str::<Value>(&c.arguments)
                .ok()
                .filter(Value::is_object)
        };
        match args {
            Some(args) => parts.push(PartOut {
                text: None,
                thought: None,
                function_call: Some(FunctionCallOut {
                    id: c.id.clone(),
                    name: c.name.clone(),
                    args,
                }),
            }),
            None => malformed.push(format!("{}({})", c.name, c.arguments)),
        }
    }
    (!malformed.is_empty()).then(|| {
        format!(
            "Malformed function call (arguments are not a JSON object): {}",
            malformed.join("; ")
        )
    })
}

/// The body of a whole answer; thoughts only with `include_thoughts`.
pub fn encode_generate(
    resp: &ChatResponse,
    model: &str,
    request_id: &str,
    include_thoughts: bool,
) -> GenerateContentResponse {
    let choice = resp.choices.first();
    let mut parts = Vec::new();
    let mut finish = finish_name(choice.and_then(|c| c.finish_reason.as_ref()));
    let mut finish_message = None;
    if let Some(c) = choice {
        let m = &c.message;
        if include_thoughts {
            if let Some(r) = m.reasoning.as_deref().filter(|r| !r.is_empty()) {
                parts.push(PartOut::thought(r.to_owned()));
            }
        }
        let text = m.content.text();
        if !text.is_empty() || m.tool_calls.is_empty() {
            parts.push(PartOut::text(text.into_owned()));
        }
        finish_message = call_parts(m.tool_calls.iter(), &mut parts);
        if finish_message.is_some() {
            finish = "MALFORMED_FUNCTION_CALL";
        }
    }
    GenerateContentResponse {
        candidates: vec![Candidate {
            content: Some(CandidateContent {
                role: "model",
                parts,
            }),
            finish_reason: Some(finish),
            finish_message,
            index: 0,
        }],
        usage_metadata: resp.usage.as_ref().map(UsageMetadata::from),
        model_version: model.to_owned(),
        response_id: request_id.to_owned(),
    }
}

/// A `countTokens` answer.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = GeminiCountTokensResponse)]
pub struct CountTokensResponse {
    /// The prompt's tokens.
    pub total_tokens: u64,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use llmux_core::Message;

    use super::*;
    use crate::ingress::testing::answer;

    #[test]
    fn text_thoughts_and_usage_in_gemini_terms() {
        let mut m = Message::assistant("Hello");
        m.reasoning = Some("pondering".into());
        let mut u = Usage::new(10, 7);
        u.reasoning_tokens = Some(3);
        u.cached_tokens = Some(2);
        let resp = answer(m, FinishReason::Stop, u);
        let v = serde_json::to_value(encode_generate(&resp, "gm", "rid", true)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "candidates": [{"content": {"role": "model", "parts": [
                    {"text": "pondering", "thought": true}, {"text": "Hello"}]},
                    "finishReason": "STOP", "index": 0}],
                "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 4,
                    "totalTokenCount": 17, "cachedContentTokenCount": 2, "thoughtsTokenCount": 3},
                "modelVersion": "gm", "responseId": "rid"
            })
        );
        // Without includeThoughts the thought is not returned (its tokens still are).
        let v = serde_json::to_value(encode_generate(&resp, "gm", "rid", false)).unwrap();
        assert_eq!(
            v["candidates"][0]["content"]["parts"],
            serde_json::json!([{"text": "Hello"}])
        );
        assert_eq!(v["usageMetadata"]["thoughtsTokenCount"], 3);
    }

    #[test]
    fn calls_become_function_call_parts_or_a_malformed_finish() {
        let mut m = Message::assistant("");
        m.tool_calls = vec![
            ToolCall {
                id: "call_0".into(),
                name: "f".into(),
                arguments: r#"{"city":"Paris"}"#.into(),
            },
            ToolCall {
                id: "call_1".into(),
                name: "g".into(),
                arguments: String::new(),
            },
        ];
        let v = serde_json::to_value(encode_generate(
            &answer(m.clone(), FinishReason::ToolCalls, Usage::new(1, 2)),
            "gm",
            "rid",
            false,
        ))
        .unwrap();
        let c = &v["candidates"][0];
        assert_eq!(c["finishReason"], "STOP");
        assert_eq!(
            c["content"]["parts"],
            serde_json::json!([
                {"functionCall": {"id": "call_0", "name": "f", "args": {"city": "Paris"}}},
                {"functionCall": {"id": "call_1", "name": "g", "args": {}}}
            ])
        );
        m.tool_calls[1].arguments = "{\"broken".into();
        let v = serde_json::to_value(encode_generate(
            &answer(m, FinishReason::ToolCalls, Usage::new(1, 2)),
            "gm",
            "rid",
            false,
        ))
        .unwrap();
        let c = &v["candidates"][0];
        assert_eq!(c["finishReason"], "MALFORMED_FUNCTION_CALL");
        assert!(
            c["finishMessage"].as_str().unwrap().contains("g({\"broken"),
            "{c}"
        );
        assert_eq!(c["content"]["parts"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn finish_reasons_use_gemini_names() {
        assert_eq!(finish_name(Some(&FinishReason::Length)), "MAX_TOKENS");
        assert_eq!(finish_name(Some(&FinishReason::ContentFilter)), "SAFETY");
        assert_eq!(finish_name(Some(&FinishReason::Other("x".into()))), "OTHER");
        assert_eq!(finish_name(Some(&FinishReason::ToolCalls)), "STOP");
    }
}
