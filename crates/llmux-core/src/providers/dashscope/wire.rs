//! DashScope's native request bodies: generation (`model`, `input.prompt` or `input.messages`,
//! `parameters`) and text embedding (`input.texts`, `parameters`). `extra` fields go into
//! `parameters`.

use std::borrow::Cow;

use serde::Serialize;
use serde_json::{Map, Value};

use super::ID;
use crate::error::{Error, Result};
use crate::providers::body::Extra;
use crate::providers::openai_compat::wire::{
    encode_response_format, encode_tool_calls, encode_tool_choice, encode_tools,
    ResponseFormatSpec, ToolCallSpec, ToolChoiceSpec, ToolSpec,
};
use crate::types::*;

/// `POST …/generation`.
#[derive(Debug, Serialize)]
pub struct GenerationBody<'a> {
    /// The upstream model.
    pub model: &'a str,
    /// The prompt or the conversation.
    pub input: GenerationInput<'a>,
    /// Options (and `extra`).
    pub parameters: Parameters<'a>,
}

/// `input`: exactly one of `prompt` and `messages`.
#[derive(Debug, Serialize)]
pub struct GenerationInput<'a> {
    /// A single-turn prompt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<Cow<'a, str>>,
    /// The conversation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<DsMessage<'a>>>,
}

/// One message.
#[derive(Debug, Serialize)]
pub struct DsMessage<'a> {
    /// `system`, `user`, `assistant` or `tool`.
    pub role: &'static str,
    /// Text, or `[{"text"}|{"image"}]` on the multimodal path.
    pub content: DsContent<'a>,
    /// Author name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
    /// The assistant's calls (OpenAI shape).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallSpec<'a>>>,
    /// The call a tool message answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<&'a str>,
}

/// `content`.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum DsContent<'a> {
    /// Text.
    Text(Cow<'a, str>),
    /// Multimodal parts.
    Parts(Vec<DsPart<'a>>),
}

/// `{"text": …}` or `{"image": …}`.
#[derive(Debug, Serialize)]
pub struct DsPart<'a> {
    /// Text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<&'a str>,
    /// Image URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<&'a str>,
}

/// `parameters` of a generation.
#[derive(Debug, Default, Serialize)]
pub struct Parameters<'a> {
    /// `message` for the messages input.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result_format: Option<&'static str>,
    /// Streams only: deltas instead of cumulative text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incremental_output: Option<bool>,
    /// Web search.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_search: Option<bool>,
    /// Temperature.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Top-k.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    /// Output cap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Seed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Stop sequences.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop: Option<&'a [String]>,
    /// Repetition penalty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repetition_penalty: Option<f64>,
    /// Presence penalty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
    /// Choices.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    /// Functions (OpenAI shape).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<ToolSpec<'a>>>,
    /// Tool choice (OpenAI shape, no `required`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoiceSpec<'a>>,
    /// Several calls per answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    /// Output format.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormatSpec<'a>>,
    /// Thinking on or off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_thinking: Option<bool>,
    /// Thinking budget.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinking_budget: Option<u32>,
    /// Vendor fields from `extra`.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn unsupported(msg: &str) -> Error {
    Error::unsupported(msg).with_provider(ID)
}

/// The generation body of `req` for the upstream `model`. `incremental_output` is sent on
/// streams only (whatever `extra` says); `frequency_penalty` and `tool_choice: required` are
/// `unsupported`.
pub fn chat_body<'a>(
    model: &'a str,
    req: &'a ChatRequest,
    stream: bool,
) -> Result<GenerationBody<'a>> {
    let multimodal = req.messages.iter().any(|m| m.content.has_images());
    let (input, result_format) = match req.input_style {
        InputStyle::Prompt => {
            let (system, prompt) = req.prompt_parts()?;
            let input = match system {
                Some(s) => GenerationInput {
                    prompt: None,
                    messages: Some(vec![
                        text_message("system", s),
                        text_message("user", prompt),
                    ]),
                },
                None => GenerationInput {
                    prompt: Some(Cow::Owned(prompt)),
                    messages: None,
                },
            };
            (input, None)
        }
        InputStyle::Messages => (
            GenerationInput {
                prompt: None,
                messages: Some(encode_messages(&req.messages, multimodal)),
            },
            Some("message"),
        ),
    };
    if req.frequency_penalty.is_some() {
        return Err(unsupported(
            "dashscope does not accept `frequency_penalty` (use presence_penalty or repetition_penalty)",
        ));
    }
    if req.tool_choice == Some(ToolChoice::Required) {
        return Err(unsupported(
            "dashscope does not accept tool_choice `required` (use auto or name a function)",
        ));
    }
    let thinking = super::THINKING.resolve(ID, model, req.thinking.as_ref())?;
    let ex = Extra::new(&req.extra);
    let parameters = Parameters {
        result_format: ex.typed("result_format", result_format),
        incremental_output: ex.typed("incremental_output", stream.then_some(true)),
        enable_search: ex.typed("enable_search", req.enable_search),
        temperature: ex.typed("temperature", req.temperature),
        top_p: ex.typed("top_p", req.top_p),
        top_k: ex.typed("top_k", req.top_k),
        max_tokens: ex.typed("max_tokens", req.max_tokens),
        seed: ex.typed("seed", req.seed),
        stop: ex.typed(
            "stop",
            (!req.stop.is_empty()).then_some(req.stop.as_slice()),
        ),
        repetition_penalty: ex.typed("repetition_penalty", req.repetition_penalty),
        presence_penalty: ex.typed("presence_penalty", req.presence_penalty),
        n: ex.typed("n", req.n),
        tools: ex.typed(
            "tools",
            (!req.tools.is_empty()).then(|| encode_tools(&req.tools)),
        ),
        tool_choice: ex.typed(
            "tool_choice",
            req.tool_choice.as_ref().map(encode_tool_choice),
        ),
        parallel_tool_calls: ex.typed("parallel_tool_calls", req.parallel_tool_calls),
        response_format: ex.typed(
            "response_format",
            req.response_format.as_ref().map(encode_response_format),
        ),
        enable_thinking: ex.typed("enable_thinking", thinking.enabled),
        thinking_budget: ex.typed("thinking_budget", thinking.budget_tokens),
        // Not a streaming call: no `incremental_output`, even from `extra`.
        extra: ex.fields(if stream { &[] } else { &["incremental_output"] }),
    };
    Ok(GenerationBody {
        model,
        input,
        parameters,
    })
}

fn text_message(role: &'static str, text: String) -> DsMessage<'static> {
    DsMessage {
        role,
        content: DsContent::Text(Cow::Owned(text)),
        name: None,
        tool_calls: None,
        tool_call_id: None,
    }
}

/// `input.messages`: text content, or `[{"text"}|{"image"}]` parts on the multimodal path.
fn encode_messages(messages: &[Message], multimodal: bool) -> Vec<DsMessage<'_>> {
    messages
        .iter()
        .map(|m| DsMessage {
            role: m.role.as_str(),
            content: match (&m.content, multimodal) {
                (Content::Text(t), true) => DsContent::Parts(vec![DsPart {
                    text: Some(t),
                    image: None,
                }]),
                (Content::Parts(parts), true) => DsContent::Parts(
                    parts
                        .iter()
                        .map(|p| match p {
                            ContentPart::Text { text } => DsPart {
                                text: Some(text),
                                image: None,
                            },
                            ContentPart::ImageUrl { url, .. } => DsPart {
                                text: None,
                                image: Some(url),
                            },
                        })
                        .collect(),
                ),
                (c, false) => DsContent::Text(c.text()),
            },
            name: m.name.as_deref(),
            tool_calls: (!m.tool_calls.is_empty()).then(|| encode_tool_calls(&m.tool_calls)),
            tool_call_id: m.tool_call_id.as_deref(),
        })
        .collect()
}

/// `POST …/text-embedding`.
#[derive(Debug, Serialize)]
pub struct EmbeddingBody<'a> {
    /// The model.
    pub model: &'a str,
    /// `{"texts": […]}`.
    pub input: EmbeddingInput<'a>,
    /// Options (and `extra`).
    pub parameters: EmbeddingParameters<'a>,
}

/// `input` of an embedding.
#[derive(Debug, Serialize)]
pub struct EmbeddingInput<'a> {
    /// The texts.
    pub texts: &'a [String],
}

/// `parameters` of an embedding.
#[derive(Debug, Serialize)]
pub struct EmbeddingParameters<'a> {
    /// `query` or `document`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text_type: Option<&'a str>,
    /// Output dimension.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dimension: Option<u32>,
    /// Vendor fields from `extra`.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The text-embedding body of `req` for the upstream `model`.
pub fn embedding_body<'a>(model: &'a str, req: &'a EmbeddingRequest) -> EmbeddingBody<'a> {
    let ex = Extra::new(&req.extra);
    EmbeddingBody {
        model,
        input: EmbeddingInput { texts: &req.input },
        parameters: EmbeddingParameters {
            text_type: ex.typed("text_type", req.text_type.as_deref()),
            dimension: ex.typed("dimension", req.dimensions),
            extra: ex.fields(&[]),
        },
    }
}
