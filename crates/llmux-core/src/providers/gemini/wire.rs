//! The Gemini API's wire format (`v1beta`), as the official `google-genai` SDK declares it:
//! the typed `generateContent` and `batchEmbedContents` bodies built from core requests, the
//! `GenerateContentResponse` (also each stream chunk), the embeddings answer and the error
//! envelope.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::ID;
use crate::error::{Error, Result};
use crate::providers::body::Extra;
use crate::providers::thinking::ThinkingPlan;
use crate::types::*;

/// The value Google documents for a replayed `functionCall` part whose thought signature is
/// not known (core messages do not keep signatures): it tells Gemini 3 models to skip the
/// signature check instead of rejecting the turn.
pub const SKIP_SIGNATURE: &str = "skip_thought_signature_validator";

/// The `generateContent` / `streamGenerateContent` body. Every field may be replaced or
/// removed through `extra`; an `extra.generationConfig` object is laid over the typed
/// `generationConfig` field by field.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerateContentRequest<'a> {
    /// The conversation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contents: Option<Vec<Turn<'a>>>,
    /// The system messages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_instruction: Option<Turn<'a>>,
    /// Function declarations (and Google Search for `enable_search`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<ToolDecl<'a>>>,
    /// Function calling mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_config: Option<ToolConfig<'a>>,
    /// Sampling and output options.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation_config: Option<GenerationConfig<'a>>,
    /// Vendor fields (`safetySettings`, `cachedContent`…), verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One turn, a `Content` object of the API (or the system instruction, without a role).
#[derive(Debug, Serialize)]
pub struct Turn<'a> {
    /// `user` or `model`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    /// The parts.
    pub parts: Vec<Part<'a>>,
}

/// One part: exactly one of its data fields is set.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Part<'a> {
    /// Text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<Cow<'a, str>>,
    /// Inline bytes (an image from a `data:` URL).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inline_data: Option<Blob<'a>>,
    /// A file by URI (an image URL).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_data: Option<FileData<'a>>,
    /// A call the model made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function_call: Option<FunctionCall<'a>>,
    /// A tool's result.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function_response: Option<FunctionResponse<'a>>,
    /// The thought signature of a replayed call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thought_signature: Option<&'static str>,
}

/// `inlineData`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Blob<'a> {
    /// IANA media type.
    pub mime_type: &'a str,
    /// Base64 bytes.
    pub data: &'a str,
}

/// `fileData`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FileData<'a> {
    /// IANA media type, when the URL's extension tells it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<&'static str>,
    /// The URL.
    pub file_uri: &'a str,
}

/// `functionCall`.
#[derive(Debug, Serialize)]
pub struct FunctionCall<'a> {
    /// The call id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<&'a str>,
    /// The function.
    pub name: &'a str,
    /// The arguments object.
    pub args: Value,
}

/// `functionResponse`.
#[derive(Debug, Serialize)]
pub struct FunctionResponse<'a> {
    /// The id of the call answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<&'a str>,
    /// The function that was called.
    pub name: &'a str,
    /// The result, a JSON object.
    pub response: Value,
}

/// One entry of `tools`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolDecl<'a> {
    /// Client functions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function_declarations: Option<Vec<FunctionDeclaration<'a>>>,
    /// Grounding with Google Search (`{}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub google_search: Option<Map<String, Value>>,
}

/// A function the model may call.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionDeclaration<'a> {
    /// Name.
    pub name: &'a str,
    /// What it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<&'a str>,
    /// The arguments' JSON Schema, as given (`parametersJsonSchema` takes JSON Schema;
    /// `parameters` only the OpenAPI subset).
    pub parameters_json_schema: &'a Value,
}

/// `toolConfig`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolConfig<'a> {
    /// The function calling mode.
    pub function_calling_config: FunctionCallingConfig<'a>,
}

/// `toolConfig.functionCallingConfig`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionCallingConfig<'a> {
    /// `AUTO`, `ANY` or `NONE`.
    pub mode: &'static str,
    /// The one function a named `tool_choice` allows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_function_names: Option<[&'a str; 1]>,
}

/// `generationConfig`.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerationConfig<'a> {
    /// Temperature.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Top-k sampling.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    /// Candidates (`n`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub candidate_count: Option<u32>,
    /// Output cap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u32>,
    /// Stop sequences.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_sequences: Option<&'a [String]>,
    /// Sampling seed (int32).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<i32>,
    /// Presence penalty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
    /// Frequency penalty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f64>,
    /// `application/json` for JSON output.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_mime_type: Option<&'static str>,
    /// The JSON Schema of the output.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_json_schema: Option<&'a Value>,
    /// Thinking.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinking_config: Option<ThinkingConfig>,
    /// Vendor fields of `extra.generationConfig`.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl GenerationConfig<'_> {
    fn is_empty(&self) -> bool {
        self.temperature.is_none()
            && self.top_p.is_none()
            && self.top_k.is_none()
            && self.candidate_count.is_none()
            && self.max_output_tokens.is_none()
            && self.stop_sequences.is_none()
            && self.seed.is_none()
            && self.presence_penalty.is_none()
            && self.frequency_penalty.is_none()
            && self.response_mime_type.is_none()
            && self.response_json_schema.is_none()
            && self.thinking_config.is_none()
            && self.extra.is_empty()
    }
}

/// `generationConfig.thinkingConfig`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ThinkingConfig {
    /// Return thought summaries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub include_thoughts: Option<bool>,
    /// Reasoning tokens (0 turns thinking off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinking_budget: Option<u32>,
    /// How much to think (Gemini 3): `MINIMAL`, `LOW`, `MEDIUM`, `HIGH`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinking_level: Option<&'static str>,
}

/// The `thinkingLevel` of an effort (the API's enum names).
fn thinking_level(effort: ReasoningEffort) -> &'static str {
    match effort {
        ReasoningEffort::Minimal => "MINIMAL",
        ReasoningEffort::Low => "LOW",
        ReasoningEffort::Medium => "MEDIUM",
        ReasoningEffort::High => "HIGH",
        // Not among the levels `THINKING` declares, so never resolved into a plan.
        ReasoningEffort::XHigh => "HIGH",
    }
}

fn invalid(msg: String) -> Error {
    Error::invalid_request(msg).with_provider(ID)
}

/// The `generateContent` body of `req`, with its thinking settings as
/// [`super::THINKING`] resolved them. Options Gemini lacks fail with `Unsupported`, naming
/// every one; `user` and assistant `reasoning` are not sent.
pub fn chat_body(req: &ChatRequest, thinking: ThinkingPlan) -> Result<GenerateContentRequest<'_>> {
    let mut lacking: Vec<&str> = Vec::new();
    for (set, name) in [
        (req.repetition_penalty.is_some(), "repetition_penalty"),
        (
            req.parallel_tool_calls == Some(false),
            "parallel_tool_calls: false",
        ),
    ] {
        if set {
            lacking.push(name);
        }
    }
    if !lacking.is_empty() {
        return Err(Error::unsupported(format!(
            "gemini does not accept {}",
            lacking
                .iter()
                .map(|l| format!("`{l}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .with_provider(ID));
    }
    let seed =
        match req.seed {
            None => None,
            Some(s) => Some(i32::try_from(s).map_err(|_| {
                invalid(format!("gemini takes a `seed` up to {}, got {s}", i32::MAX))
            })?),
        };
    let ex = Extra::new(&req.extra);
    let (system, contents) = encode_contents(&req.messages)?;

    let mut tools = Vec::new();
    if !req.tools.is_empty() {
        tools.push(ToolDecl {
            function_declarations: Some(
                req.tools
                    .iter()
                    .map(|t| FunctionDeclaration {
                        name: &t.name,
                        description: t.description.as_deref(),
                        parameters_json_schema: &t.parameters,
                    })
                    .collect(),
            ),
            google_search: None,
        });
    }
    if req.enable_search == Some(true) {
        tools.push(ToolDecl {
            function_declarations: None,
            google_search: Some(Map::new()),
        });
    }
    let tool_config = match (&req.tool_choice, req.tools.is_empty()) {
        (None, _) | (_, true) => None,
        (Some(choice), false) => {
            let (mode, only) = match choice {
                ToolChoice::Auto => ("AUTO", None),
                ToolChoice::Required => ("ANY", None),
                ToolChoice::None => ("NONE", None),
                ToolChoice::Function(name) => ("ANY", Some([name.as_str()])),
            };
            Some(ToolConfig {
                function_calling_config: FunctionCallingConfig {
                    mode,
                    allowed_function_names: only,
                },
            })
        }
    };

    let (mime, schema) = match &req.response_format {
        None | Some(ResponseFormat::Text) => (None, None),
        Some(ResponseFormat::JsonObject) => (Some("application/json"), None),
        Some(ResponseFormat::JsonSchema { schema, .. }) => (Some("application/json"), Some(schema)),
    };
    let thinking = thinking.enabled.map(|on| {
        if on {
            ThinkingConfig {
                include_thoughts: Some(true),
                thinking_budget: thinking.budget_tokens,
                thinking_level: thinking.effort.map(thinking_level),
            }
        } else {
            ThinkingConfig {
                include_thoughts: None,
                thinking_budget: Some(0),
                thinking_level: None,
            }
        }
    });
    // `extra.generationConfig` as an object is merged field by field; `null` or another
    // value replaces the whole object.
    let nested = match ex.get("generationConfig") {
        Some(Some(Value::Object(m))) => Some(m),
        _ => None,
    };
    let empty = Map::new();
    let gx = Extra::new(nested.unwrap_or(&empty));
    let config = GenerationConfig {
        temperature: gx.typed("temperature", req.temperature),
        top_p: gx.typed("topP", req.top_p),
        top_k: gx.typed("topK", req.top_k),
        candidate_count: gx.typed("candidateCount", req.n),
        max_output_tokens: gx.typed("maxOutputTokens", req.max_tokens),
        stop_sequences: gx.typed(
            "stopSequences",
            (!req.stop.is_empty()).then_some(req.stop.as_slice()),
        ),
        seed: gx.typed("seed", seed),
        presence_penalty: gx.typed("presencePenalty", req.presence_penalty),
        frequency_penalty: gx.typed("frequencyPenalty", req.frequency_penalty),
        response_mime_type: gx.typed("responseMimeType", mime),
        response_json_schema: gx.typed("responseJsonSchema", schema),
        thinking_config: gx.typed("thinkingConfig", thinking),
        extra: gx.fields(&[]),
    };
    let config = (!config.is_empty()).then_some(config);
    let (generation_config, except): (_, &[&str]) = match nested {
        Some(_) => (config, &["generationConfig"]),
        None => (ex.typed("generationConfig", config), &[]),
    };
    Ok(GenerateContentRequest {
        contents: ex.typed("contents", Some(contents)),
        system_instruction: ex.typed("systemInstruction", system),
        tools: ex.typed("tools", (!tools.is_empty()).then_some(tools)),
        tool_config: ex.typed("toolConfig", tool_config),
        generation_config,
        extra: ex.fields(except),
    })
}

/// System messages as `systemInstruction` parts, the rest as `user`/`model` turns: tool
/// results are `functionResponse` parts of a user turn, named after the assistant call they
/// answer; consecutive messages of one role share a turn; messages with nothing to send (an
/// empty assistant message) are skipped.
fn encode_contents(messages: &[Message]) -> Result<(Option<Turn<'_>>, Vec<Turn<'_>>)> {
    let mut system: Vec<Part<'_>> = Vec::new();
    let mut turns: Vec<Turn<'_>> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let (role, parts) = match m.role {
            Role::System => {
                if m.content.has_images() {
                    return Err(invalid(format!(
                        "messages[{i}]: a system message takes text only"
                    )));
                }
                let text = m.content.text();
                if !text.is_empty() {
                    system.push(text_part(text));
                }
                continue;
            }
            Role::User => ("user", content_parts(i, &m.content)?),
            Role::Assistant => {
                if m.content.has_images() {
                    return Err(invalid(format!(
                        "messages[{i}]: an assistant message takes text only"
                    )));
                }
                let mut parts = Vec::with_capacity(1 + m.tool_calls.len());
                let text = m.content.text();
                if !text.is_empty() {
                    parts.push(text_part(text));
                }
                for (j, c) in m.tool_calls.iter().enumerate() {
                    parts.push(Part {
                        function_call: Some(FunctionCall {
                            id: Some(c.id.as_str()).filter(|s| !s.is_empty()),
                            name: &c.name,
                            args: call_args(i, j, c)?,
                        }),
                        // Gemini puts a signature on the first call of a turn only.
                        thought_signature: (j == 0).then_some(SKIP_SIGNATURE),
                        ..Part::default()
                    });
                }
                ("model", parts)
            }
            Role::Tool => {
                if m.content.has_images() {
                    return Err(Error::unsupported(format!(
                        "messages[{i}]: gemini takes text tool results only"
                    ))
                    .with_provider(ID));
                }
                let id = m.tool_call_id.as_deref().unwrap_or_default();
                let name = called_name(&messages[..i], id)
                    .or(m.name.as_deref())
                    .ok_or_else(|| {
                        invalid(format!(
                            "messages[{i}]: the tool result answers call `{id}`, which no earlier assistant message made (gemini needs the function name)"
                        ))
                    })?;
                let part = Part {
                    function_response: Some(FunctionResponse {
                        id: Some(id).filter(|s| !s.is_empty()),
                        name,
                        response: response_object(&m.content.text()),
                    }),
                    ..Part::default()
                };
                ("user", vec![part])
            }
        };
        if parts.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some(last) if last.role == Some(role) => last.parts.extend(parts),
            _ => turns.push(Turn {
                role: Some(role),
                parts,
            }),
        }
    }
    let system = (!system.is_empty()).then_some(Turn {
        role: None,
        parts: system,
    });
    Ok((system, turns))
}

fn text_part(text: Cow<'_, str>) -> Part<'_> {
    Part {
        text: Some(text),
        ..Part::default()
    }
}

/// The name of the latest assistant call with this id.
fn called_name<'a>(earlier: &'a [Message], id: &str) -> Option<&'a str> {
    earlier
        .iter()
        .rev()
        .filter(|m| m.role == Role::Assistant)
        .flat_map(|m| m.tool_calls.iter())
        .find(|c| c.id == id)
        .map(|c| c.name.as_str())
}

/// A tool result as the object `functionResponse.response` must be: a JSON object as is,
/// other JSON or plain text wrapped as `{"result": …}`.
pub fn response_object(text: &str) -> Value {
    match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::Object(_)) => v,
        Ok(v) => serde_json::json!({ "result": v }),
        Err(_) => serde_json::json!({ "result": text }),
    }
}

/// A tool call's `arguments` as the object `functionCall.args` is: empty means `{}`.
fn call_args(i: usize, j: usize, c: &ToolCall) -> Result<Value> {
    let args = c.arguments.trim();
    if args.is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    match serde_json::from_str::<Value>(args) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(invalid(format!(
            "messages[{i}].tool_calls[{j}] (`{}`): `arguments` must be a JSON object",
            c.name
        ))),
        Err(e) => Err(invalid(format!(
            "messages[{i}].tool_calls[{j}] (`{}`): `arguments` is not valid JSON ({e})",
            c.name
        ))),
    }
}

/// Text and image parts of a user message; empty text parts are skipped.
fn content_parts(i: usize, c: &Content) -> Result<Vec<Part<'_>>> {
    match c {
        Content::Text(t) => Ok(vec![text_part(Cow::Borrowed(t))]),
        Content::Parts(parts) => parts
            .iter()
            .filter(|p| !matches!(p, ContentPart::Text { text } if text.is_empty()))
            .map(|p| match p {
                ContentPart::Text { text } => Ok(text_part(Cow::Borrowed(text))),
                ContentPart::ImageUrl { url, .. } => image_part(i, url),
            })
            .collect(),
    }
}

/// A `data:<type>;base64,<data>` URL as `inlineData`, an `http(s)` URL as `fileData`.
fn image_part(i: usize, url: &str) -> Result<Part<'_>> {
    if let Some(rest) = url.strip_prefix("data:") {
        let (meta, data) = rest.split_once(',').unwrap_or((rest, ""));
        let mime_type = meta.strip_suffix(";base64").unwrap_or_default();
        if mime_type.is_empty() || data.is_empty() {
            return Err(invalid(format!(
                "messages[{i}]: an image `data:` URL must be `data:<media type>;base64,<data>`"
            )));
        }
        return Ok(Part {
            inline_data: Some(Blob { mime_type, data }),
            ..Part::default()
        });
    }
    if url.starts_with("https://") || url.starts_with("http://") {
        return Ok(Part {
            file_data: Some(FileData {
                mime_type: image_type(url),
                file_uri: url,
            }),
            ..Part::default()
        });
    }
    Err(invalid(format!(
        "messages[{i}]: an image must be an http(s) URL or a base64 `data:` URL"
    )))
}

/// The media type an image URL's extension names.
fn image_type(url: &str) -> Option<&'static str> {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let ext = path.rsplit_once('.')?.1.to_ascii_lowercase();
    Some(match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "heic" => "image/heic",
        "heif" => "image/heif",
        _ => return None,
    })
}

/// The `batchEmbedContents` body: one request per input text, `extra` fields in each.
#[derive(Debug, Serialize)]
pub struct BatchEmbedRequest<'a> {
    /// One entry per text.
    pub requests: Vec<EmbedRequest<'a>>,
}

/// One text to embed.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EmbedRequest<'a> {
    /// `models/<model>`.
    pub model: &'a str,
    /// The text as one part.
    pub content: Turn<'a>,
    /// `RETRIEVAL_QUERY`, `RETRIEVAL_DOCUMENT`… (from `text_type`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_type: Option<&'a str>,
    /// Output dimension.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_dimensionality: Option<u32>,
    /// Vendor fields (`title`…).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The `batchEmbedContents` body of `req` for the model path `models/<model>`. `text_type`
/// `query` and `document` are `RETRIEVAL_QUERY` and `RETRIEVAL_DOCUMENT`; any other value is
/// sent as the task type verbatim.
pub fn embed_body<'a>(model_path: &'a str, req: &'a EmbeddingRequest) -> BatchEmbedRequest<'a> {
    let ex = Extra::new(&req.extra);
    let task = req.text_type.as_deref().map(|t| match t {
        "query" => "RETRIEVAL_QUERY",
        "document" => "RETRIEVAL_DOCUMENT",
        other => other,
    });
    BatchEmbedRequest {
        requests: req
            .input
            .iter()
            .map(|text| EmbedRequest {
                model: model_path,
                content: Turn {
                    role: None,
                    parts: vec![text_part(Cow::Borrowed(text))],
                },
                task_type: ex.typed("taskType", task),
                output_dimensionality: ex.typed("outputDimensionality", req.dimensions),
                extra: ex.fields(&[]),
            })
            .collect(),
    }
}

/// A `GenerateContentResponse` (the whole answer, or one stream chunk), or an error envelope.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerateContentResponse {
    /// The candidates.
    #[serde(default)]
    pub candidates: Vec<Candidate>,
    /// Why the prompt was blocked, when it was.
    #[serde(default)]
    pub prompt_feedback: Option<PromptFeedback>,
    /// Token counts.
    #[serde(default)]
    pub usage_metadata: Option<UsageMetadata>,
    /// The model version that answered.
    #[serde(default)]
    pub model_version: Option<String>,
    /// The response id.
    #[serde(default)]
    pub response_id: Option<String>,
    /// An error (a stream's error chunk).
    #[serde(default)]
    pub error: Option<WireError>,
}

/// One candidate.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Candidate {
    /// The content.
    #[serde(default)]
    pub content: Option<CandidateContent>,
    /// `STOP`, `MAX_TOKENS`, `SAFETY`… (absent until the end).
    #[serde(default)]
    pub finish_reason: Option<String>,
    /// Position among the candidates.
    #[serde(default)]
    pub index: Option<u32>,
}

/// `candidate.content`.
#[derive(Debug, Default, Deserialize)]
pub struct CandidateContent {
    /// The parts.
    #[serde(default)]
    pub parts: Vec<ResponsePart>,
}

/// An output part; kinds other than text and function calls are read and ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResponsePart {
    /// Text (reasoning when `thought`).
    #[serde(default)]
    pub text: Option<String>,
    /// Whether the text is a thought summary.
    #[serde(default)]
    pub thought: Option<bool>,
    /// A function call (always whole, also in streams).
    #[serde(default)]
    pub function_call: Option<ResponseFunctionCall>,
}

/// `functionCall` in an answer.
#[derive(Debug, Default, Deserialize)]
pub struct ResponseFunctionCall {
    /// The call id, when the API gives one.
    #[serde(default)]
    pub id: Option<String>,
    /// The function.
    #[serde(default)]
    pub name: Option<String>,
    /// The arguments object.
    #[serde(default)]
    pub args: Option<Value>,
}

/// `promptFeedback`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PromptFeedback {
    /// `SAFETY`, `BLOCKLIST`…
    #[serde(default)]
    pub block_reason: Option<String>,
}

/// `usageMetadata` (generation and embeddings).
#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageMetadata {
    /// Prompt tokens (cached ones included).
    #[serde(default)]
    pub prompt_token_count: Option<u64>,
    /// Prompt tokens served from the context cache.
    #[serde(default)]
    pub cached_content_token_count: Option<u64>,
    /// Answer tokens (thoughts excluded).
    #[serde(default)]
    pub candidates_token_count: Option<u64>,
    /// Thought tokens.
    #[serde(default)]
    pub thoughts_token_count: Option<u64>,
    /// Prompt tokens of tool results the API ran itself.
    #[serde(default)]
    pub tool_use_prompt_token_count: Option<u64>,
    /// Everything.
    #[serde(default)]
    pub total_token_count: Option<u64>,
}

impl UsageMetadata {
    /// Core usage: output counts the thoughts too (as every provider reports reasoning inside
    /// `output_tokens`), with them as `reasoning_tokens`; input counts tool-use prompt tokens.
    pub fn usage(&self) -> Usage {
        let input = self
            .prompt_token_count
            .unwrap_or(0)
            .saturating_add(self.tool_use_prompt_token_count.unwrap_or(0));
        let output = self
            .candidates_token_count
            .unwrap_or(0)
            .saturating_add(self.thoughts_token_count.unwrap_or(0));
        let mut u = Usage::new(input, output);
        if let Some(t) = self.total_token_count {
            u.total_tokens = t;
        }
        u.cached_tokens = self.cached_content_token_count;
        u.reasoning_tokens = self.thoughts_token_count;
        u
    }
}

/// `{"code": 400, "message": "…", "status": "INVALID_ARGUMENT", "details": […]}`.
#[derive(Debug, Default, Deserialize)]
pub struct WireError {
    /// The HTTP status as a number.
    #[serde(default)]
    pub code: Option<Value>,
    /// The message.
    #[serde(default)]
    pub message: Option<String>,
    /// The canonical status name.
    #[serde(default)]
    pub status: Option<String>,
    /// `ErrorInfo` (with a `reason`), `RetryInfo` (with a `retryDelay`)…
    #[serde(default)]
    pub details: Vec<Value>,
}

/// An error body: `{"error": {…}}`, or (as some proxies send it) a list of one.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ErrorBody {
    /// A list of envelopes (tried first: a derived struct also reads from a JSON array).
    Many(Vec<ErrorEnvelope>),
    /// One envelope.
    One(ErrorEnvelope),
}

/// `{"error": {…}}`.
#[derive(Debug, Default, Deserialize)]
pub struct ErrorEnvelope {
    /// The error.
    #[serde(default)]
    pub error: Option<WireError>,
}

impl ErrorBody {
    /// The first error it holds.
    pub fn into_error(self) -> Option<WireError> {
        match self {
            ErrorBody::One(e) => e.error,
            ErrorBody::Many(v) => v.into_iter().find_map(|e| e.error),
        }
    }
}

/// The `batchEmbedContents` answer.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchEmbedResponse {
    /// One vector per input, in order.
    #[serde(default)]
    pub embeddings: Vec<EmbeddingValues>,
    /// Token counts, when the API reports them.
    #[serde(default)]
    pub usage_metadata: Option<UsageMetadata>,
}

/// One vector.
#[derive(Debug, Default, Deserialize)]
pub struct EmbeddingValues {
    /// The components.
    #[serde(default)]
    pub values: Vec<f32>,
}

/// `GET /v1beta/models`.
#[derive(Debug, Default, Deserialize)]
pub struct ModelsPage {
    /// The models.
    #[serde(default)]
    pub models: Vec<ModelEntry>,
}

/// One model of the list.
#[derive(Debug, Deserialize)]
pub struct ModelEntry {
    /// `models/<id>`.
    pub name: String,
}
