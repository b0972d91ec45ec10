//! `POST /api/v1/services/aigc/text-generation/generation` bodies → [`ChatRequest`].

use llmux_core::{ChatRequest, InputStyle, Message, Role, Thinking};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::ingress::openai::request::{
    message, response_format, tool_choice, tools, Stop, WireMessage, WireResponseFormat, WireTool,
    WireToolChoice,
};

/// `parameters.result_format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResultFormat {
    /// `output.text` (the legacy default).
    #[default]
    Text,
    /// `output.choices[].message`.
    Message,
}

/// How to shape the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GenerationOptions {
    /// `text` or `message`.
    pub result_format: ResultFormat,
    /// `parameters.incremental_output` (streams only; false = cumulative).
    pub incremental: bool,
}

/// A DashScope text-generation body (also the multimodal path). Fields not listed here are
/// accepted and ignored; `X-DashScope-SSE: enable` asks for a stream.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"model": "qwen-plus", "input": {"prompt": "Hello"}}))]
pub(crate) struct GenerationRequest {
    /// The public model name (required: `BadRequest.EmptyModel` without it).
    #[serde(default)]
    #[schema(required = true, nullable = false, min_length = 1)]
    model: Option<String>,
    /// The prompt or messages (required: `BadRequest.EmptyInput` without it).
    #[serde(default)]
    #[schema(required = true, nullable = false)]
    input: Option<Input>,
    #[serde(default)]
    parameters: Option<Parameters>,
}

/// `input`: a `prompt`, or `messages` (which win when both are given).
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = GenerationInput)]
pub(crate) struct Input {
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    messages: Option<Vec<WireMessage>>,
}

/// `parameters`: sampling, tools and the answer's shape (`result_format`,
/// `incremental_output` for streams).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[schema(as = GenerationParameters)]
pub(crate) struct Parameters {
    /// `text` (the default) or `message`.
    #[schema(pattern = "^(text|message)$")]
    #[serde(default)]
    result_format: Option<String>,
    /// Streams only: each frame holds only the new piece (default: everything so far).
    #[serde(default)]
    incremental_output: Option<bool>,
    #[serde(default)]
    enable_search: Option<bool>,
    #[serde(default)]
    seed: Option<u64>,
    #[schema(minimum = 0, maximum = 2)]
    #[serde(default)]
    temperature: Option<f64>,
    #[schema(exclusive_minimum = 0, maximum = 1)]
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default)]
    top_k: Option<u32>,
    #[schema(minimum = 1)]
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    stop: Option<Stop>,
    #[schema(exclusive_minimum = 0)]
    #[serde(default)]
    repetition_penalty: Option<f64>,
    #[schema(minimum = -2, maximum = 2)]
    #[serde(default)]
    presence_penalty: Option<f64>,
    #[serde(default)]
    tools: Option<Vec<WireTool>>,
    #[serde(default)]
    tool_choice: Option<WireToolChoice>,
    #[serde(default)]
    parallel_tool_calls: Option<bool>,
    #[serde(default)]
    response_format: Option<WireResponseFormat>,
    #[serde(default)]
    enable_thinking: Option<bool>,
    #[serde(default)]
    thinking_budget: Option<u32>,
    /// One choice only: at most 1.
    #[schema(minimum = 1, maximum = 1)]
    #[serde(default)]
    n: Option<u32>,
}

fn code(mut e: ApiError, code: &'static str) -> ApiError {
    e.code = Some(code);
    e
}

/// Parses and validates a generation request.
pub fn decode_generation(body: &[u8]) -> Result<(ChatRequest, GenerationOptions), ApiError> {
    let w: GenerationRequest = crate::ingress::openai::from_json(body)?;
    let model = w.model.filter(|m| !m.trim().is_empty()).ok_or_else(|| {
        code(
            ApiError::invalid("Model not specified.").param("model"),
            "BadRequest.EmptyModel",
        )
    })?;
    let input = w.input.ok_or_else(|| {
        code(
            ApiError::invalid("Input can't be empty.").param("input"),
            "BadRequest.EmptyInput",
        )
    })?;
    let p = w.parameters.unwrap_or_default();
    let result_format = match p.result_format.as_deref() {
        None | Some("text") => ResultFormat::Text,
        Some("message") => ResultFormat::Message,
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "`parameters.result_format` must be text or message, got `{other}`"
            ))
            .param("parameters.result_format"))
        }
    };
    let (messages, style) = match (input.prompt, input.messages) {
        (_, Some(msgs)) if !msgs.is_empty() => {
            let mut out = Vec::with_capacity(msgs.len());
            for (i, m) in msgs.into_iter().enumerate() {
                out.push(message(i, m)?);
            }
            (out, InputStyle::Messages)
        }
        (Some(prompt), _) => (vec![Message::user(prompt)], InputStyle::Prompt),
        _ => {
            return Err(ApiError::invalid(
                "Either \"prompt\" or \"messages\" must exist and cannot both be none",
            )
            .param("input"))
        }
    };
    if style == InputStyle::Prompt && messages.iter().any(|m| m.role != Role::User) {
        return Err(ApiError::invalid("prompt input is a single user turn"));
    }
    let req = ChatRequest {
        model,
        messages,
        input_style: style,
        tools: tools(p.tools)?,
        tool_choice: p.tool_choice.map(tool_choice).transpose()?,
        parallel_tool_calls: p.parallel_tool_calls,
        temperature: p.temperature,
        top_p: p.top_p,
        top_k: p.top_k,
        max_tokens: p.max_tokens,
        stop: p.stop.map(Stop::into_vec).unwrap_or_default(),
        seed: p.seed,
        repetition_penalty: p.repetition_penalty,
        presence_penalty: p.presence_penalty,
        n: p.n,
        response_format: p.response_format.map(response_format).transpose()?,
        enable_search: p.enable_search,
        thinking: Some(Thinking {
            enabled: p.enable_thinking,
            budget_tokens: p.thinking_budget,
            effort: None,
        })
        .filter(|t| !t.is_empty()),
        stream_usage: Some(true),
        ..ChatRequest::default()
    };
    crate::ingress::openai::request::validate(&req)?;
    Ok((
        req,
        GenerationOptions {
            result_format,
            incremental: p.incremental_output.unwrap_or(false),
        },
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn prompt_and_messages_forms() {
        let (r, o) = decode_generation(br#"{"model":"qwen-plus","input":{"prompt":"hi"},"parameters":{"incremental_output":true}}"#).unwrap();
        assert_eq!(r.input_style, InputStyle::Prompt);
        assert!(o.incremental);
        assert_eq!(o.result_format, ResultFormat::Text);
        let (r, o) = decode_generation(br#"{"model":"q","input":{"messages":[{"role":"system","content":"s"},{"role":"user","content":"u"}]},"parameters":{"result_format":"message","stop":["x"]}}"#).unwrap();
        assert_eq!(r.messages.len(), 2);
        assert_eq!(o.result_format, ResultFormat::Message);
        assert_eq!(r.stop, vec!["x"]);
    }

    #[test]
    fn missing_input_is_the_dashscope_error() {
        let e = decode_generation(br#"{"model":"q","input":{}}"#).unwrap_err();
        assert!(e.message.contains("Either \"prompt\" or \"messages\""));
        let e = decode_generation(br#"{"input":{"prompt":"x"}}"#).unwrap_err();
        assert_eq!(e.code, Some("BadRequest.EmptyModel"));
    }
}
