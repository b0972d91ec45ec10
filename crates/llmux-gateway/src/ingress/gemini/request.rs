//! `POST /v1beta/models/{model}:generateContent` (and `:streamGenerateContent`,
//! `:countTokens`) bodies → [`ChatRequest`]. The JSON is Google's REST form: camelCase names,
//! with the snake_case spellings the `google-genai` SDK sends inside some objects
//! (`inlineData.mime_type`, `parameters_json_schema`, `thinkingConfig.thinking_budget`) accepted
//! too, as Google's own parser does.
//!
//! `contents` map to messages: `user` (or no role) parts become a user message, except
//! `functionResponse` parts, which become tool messages first; `model` parts become one
//! assistant message (text, `functionCall`s as tool calls; `thought` parts are dropped, as no
//! upstream takes earlier reasoning). A function call without an `id` gets
//! `call_<content>_<part>`; a `functionResponse` without one answers the first unanswered call
//! of that name in the model turn before it. `inlineData` images become `data:` URLs.
//! `systemInstruction` is the system message, `tools[].functionDeclarations` the tools (a
//! Gemini `Schema` converted to JSON Schema), `toolConfig.functionCallingConfig` the tool
//! choice, `generationConfig` the sampling options and the output format, and `thinkingConfig`
//! the thinking mode. `safetySettings` are dropped (the upstream's own moderation applies);
//! `cachedContent`, hosted tools (Google Search, code execution, …), more than one candidate,
//! log probabilities and non-text output are refused with a 400 naming them (docs/dialects.md).

use llmux_core::{
    ChatRequest, Content, ContentPart, ErrorKind, Message, ResponseFormat, Thinking, Tool,
    ToolCall, ToolChoice,
};
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::ingress::responses::thinking_for_effort;

/// Longest model name accepted in the path.
pub const MAX_MODEL_LEN: usize = 256;

/// What a Gemini method asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `:generateContent`.
    Generate,
    /// `:streamGenerateContent`.
    Stream,
    /// `:countTokens`.
    CountTokens,
}

/// Splits the path after `/v1beta/models/` into the model and the method, validating both.
pub fn parse_target(rest: &str) -> Result<(&str, Method), ApiError> {
    let Some((model, method)) = rest.rsplit_once(':') else {
        return Err(not_found(
            "The URL needs a method: `models/{model}:generateContent`, `:streamGenerateContent` \
             or `:countTokens`.",
        ));
    };
    let method = match method {
        "generateContent" => Method::Generate,
        "streamGenerateContent" => Method::Stream,
        "countTokens" => Method::CountTokens,
        _ => {
            return Err(not_found(
                "This gateway serves `:generateContent`, `:streamGenerateContent` and \
                 `:countTokens` only.",
            ))
        }
    };
    let model = model.strip_prefix("models/").unwrap_or(model);
    if model.is_empty() || model.len() > MAX_MODEL_LEN {
        return Err(ApiError::invalid(format!(
            "the model name in the URL must be 1 to {MAX_MODEL_LEN} bytes long"
        ))
        .param("model"));
    }
    if model
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || matches!(c, ':' | '?' | '#' | '%' | '\\'))
    {
        return Err(ApiError::invalid(
            "the model name in the URL may not contain spaces, control characters or any of \
             `:?#%\\`",
        )
        .param("model"));
    }
    Ok((model, method))
}

fn not_found(message: &str) -> ApiError {
    ApiError::new(ErrorKind::NotFound, message)
}

fn unsupported(message: impl Into<String>, param: impl Into<String>) -> ApiError {
    ApiError::unsupported(message).param(param)
}

/// A `generateContent` body. Fields not listed are accepted and ignored.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = GeminiGenerateContentRequest, example = json!({"contents": [{"role": "user", "parts": [{"text": "Hello"}]}]}))]
pub(crate) struct GenerateContentRequest {
    /// The conversation, oldest first.
    #[serde(default)]
    #[schema(min_items = 1)]
    contents: Vec<WireContent>,
    /// The system instruction (text parts).
    #[serde(default, alias = "system_instruction")]
    system_instruction: Option<WireContent>,
    /// `functionDeclarations` only; hosted tools are refused.
    #[serde(default)]
    #[schema(value_type = Option<Vec<Object>>)]
    tools: Option<Vec<Map<String, Value>>>,
    #[serde(default, alias = "tool_config")]
    tool_config: Option<WireToolConfig>,
    #[serde(default, alias = "generation_config")]
    generation_config: Option<WireGenerationConfig>,
    /// Accepted and dropped: the upstream's own moderation applies.
    #[expect(
        dead_code,
        reason = "read for the OpenAPI schema only: accepted and dropped"
    )]
    #[serde(default, alias = "safety_settings")]
    #[schema(value_type = Option<Vec<Object>>)]
    safety_settings: Option<Value>,
    /// Refused: the gateway keeps no cached contents.
    #[serde(default, alias = "cached_content")]
    #[schema(value_type = Option<String>)]
    cached_content: Option<Value>,
}

/// A `Content`: a role and parts.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = GeminiContent)]
pub(crate) struct WireContent {
    /// `user` (the default) or `model`.
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    parts: Vec<WirePart>,
}

/// A `Part`: one of `text`, `inlineData`, `fileData`, `functionCall`, `functionResponse`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = GeminiPart)]
pub(crate) struct WirePart {
    #[serde(default)]
    text: Option<String>,
    /// A thought of the model's (dropped from history).
    #[serde(default)]
    thought: Option<bool>,
    #[serde(default, alias = "inline_data")]
    inline_data: Option<WireBlob>,
    #[serde(default, alias = "file_data")]
    file_data: Option<WireFileData>,
    #[serde(default, alias = "function_call")]
    function_call: Option<WireFunctionCall>,
    #[serde(default, alias = "function_response")]
    function_response: Option<WireFunctionResponse>,
    #[serde(default, alias = "executable_code")]
    #[schema(value_type = Option<Object>)]
    executable_code: Option<Value>,
    #[serde(default, alias = "code_execution_result")]
    #[schema(value_type = Option<Object>)]
    code_execution_result: Option<Value>,
}

/// Inline bytes: base64 `data` and its MIME type.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = GeminiBlob)]
pub(crate) struct WireBlob {
    #[serde(alias = "mime_type")]
    mime_type: String,
    data: String,
}

/// A file by URI.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = GeminiFileData)]
pub(crate) struct WireFileData {
    #[serde(default, alias = "mime_type")]
    mime_type: Option<String>,
    #[serde(alias = "file_uri")]
    file_uri: String,
}

/// A call the model made (in the history).
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = GeminiFunctionCall)]
pub(crate) struct WireFunctionCall {
    #[serde(default)]
    id: Option<String>,
    name: String,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    args: Option<Value>,
}

/// The result of a call.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = GeminiFunctionResponse)]
pub(crate) struct WireFunctionResponse {
    #[serde(default)]
    id: Option<String>,
    name: String,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    response: Option<Value>,
}

/// A function the model may call.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireFunctionDeclaration {
    name: String,
    #[serde(default)]
    description: Option<String>,
    /// A Gemini `Schema` (uppercase types).
    #[serde(default)]
    parameters: Option<Value>,
    /// A JSON Schema.
    #[serde(default, alias = "parameters_json_schema")]
    parameters_json_schema: Option<Value>,
}

/// `toolConfig`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = GeminiToolConfig)]
pub(crate) struct WireToolConfig {
    #[serde(default, alias = "function_calling_config")]
    function_calling_config: Option<WireFunctionCallingConfig>,
}

/// `toolConfig.functionCallingConfig`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = GeminiFunctionCallingConfig)]
pub(crate) struct WireFunctionCallingConfig {
    /// `AUTO`, `ANY`, `NONE` or `VALIDATED`.
    #[serde(default)]
    mode: Option<String>,
    #[serde(default, alias = "allowed_function_names")]
    allowed_function_names: Option<Vec<String>>,
}

/// `generationConfig`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = GeminiGenerationConfig)]
pub(crate) struct WireGenerationConfig {
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default, alias = "top_p")]
    top_p: Option<f64>,
    /// A whole number (the SDK sends it as a float).
    #[serde(default, alias = "top_k")]
    top_k: Option<f64>,
    /// At most 1.
    #[serde(default, alias = "candidate_count")]
    candidate_count: Option<u32>,
    #[serde(default, alias = "max_output_tokens")]
    max_output_tokens: Option<u32>,
    #[serde(default, alias = "stop_sequences")]
    stop_sequences: Option<Vec<String>>,
    #[serde(default)]
    seed: Option<i64>,
    #[serde(default, alias = "presence_penalty")]
    presence_penalty: Option<f64>,
    #[serde(default, alias = "frequency_penalty")]
    frequency_penalty: Option<f64>,
    /// `text/plain` or `application/json`.
    #[serde(default, alias = "response_mime_type")]
    response_mime_type: Option<String>,
    /// A Gemini `Schema` for JSON output.
    #[serde(default, alias = "response_schema")]
    #[schema(value_type = Option<Object>)]
    response_schema: Option<Value>,
    /// A JSON Schema for JSON output.
    #[serde(default, alias = "response_json_schema")]
    #[schema(value_type = Option<Object>)]
    response_json_schema: Option<Value>,
    #[serde(default, alias = "thinking_config")]
    thinking_config: Option<WireThinkingConfig>,
    /// `TEXT` only.
    #[serde(default, alias = "response_modalities")]
    response_modalities: Option<Vec<String>>,
    /// Refused when true.
    #[serde(default, alias = "response_logprobs")]
    response_logprobs: Option<bool>,
    /// Refused.
    #[serde(default)]
    logprobs: Option<i64>,
    /// Refused.
    #[serde(default, alias = "speech_config")]
    #[schema(value_type = Option<Object>)]
    speech_config: Option<Value>,
    /// Refused.
    #[serde(default, alias = "image_config")]
    #[schema(value_type = Option<Object>)]
    image_config: Option<Value>,
}

/// `generationConfig.thinkingConfig`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = GeminiThinkingConfig)]
pub(crate) struct WireThinkingConfig {
    /// 0 turns thinking off, -1 lets the model decide, N caps it at N tokens.
    #[serde(default, alias = "thinking_budget")]
    thinking_budget: Option<i64>,
    /// Return the model's thoughts as `thought` parts.
    #[serde(default, alias = "include_thoughts")]
    include_thoughts: Option<bool>,
    /// `MINIMAL`, `LOW`, `MEDIUM`, `HIGH` or `XHIGH` (the reasoning efforts of the same names).
    #[serde(default, alias = "thinking_level")]
    thinking_level: Option<String>,
}

/// Parses and validates a `generateContent` body for `model`; also says whether the client
/// wants thoughts back (`thinkingConfig.includeThoughts`).
pub fn decode_generate(model: &str, body: &[u8]) -> Result<(ChatRequest, bool), ApiError> {
    let w: GenerateContentRequest = crate::ingress::openai::from_json(body)?;
    to_core(model, w)
}

/// A `countTokens` body: `contents`, or a whole `generateContentRequest`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = GeminiCountTokensRequest, example = json!({"contents": [{"role": "user", "parts": [{"text": "Hello"}]}]}))]
pub(crate) struct CountTokensRequest {
    #[serde(default)]
    contents: Option<Vec<WireContent>>,
    #[serde(default, alias = "generate_content_request")]
    generate_content_request: Option<GenerateContentRequest>,
}

/// Parses a `countTokens` body for `model` into the request whose prompt is counted.
pub fn decode_count(model: &str, body: &[u8]) -> Result<ChatRequest, ApiError> {
    let w: CountTokensRequest = crate::ingress::openai::from_json(body)?;
    let inner = match (w.contents, w.generate_content_request) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "give `contents` or `generateContentRequest`, not both",
            ))
        }
        (Some(contents), None) => GenerateContentRequest {
            contents,
            ..GenerateContentRequest::default()
        },
        (None, Some(g)) => g,
        (None, None) => {
            return Err(
                ApiError::invalid("`contents` (or `generateContentRequest`) is required")
                    .param("contents"),
            )
        }
    };
    to_core(model, inner).map(|(req, _)| req)
}

fn to_core(model: &str, w: GenerateContentRequest) -> Result<(ChatRequest, bool), ApiError> {
    if w.cached_content
        .as_ref()
        .is_some_and(|v| !v.is_null() && v.as_str() != Some(""))
    {
        return Err(unsupported(
            "this gateway keeps no cached contents, so `cachedContent` cannot be used: send the \
             contents themselves",
            "cachedContent",
        ));
    }
    let mut messages = Vec::with_capacity(w.contents.len() + 1);
    if let Some(sys) = w.system_instruction {
        let text = system_text(sys)?;
        if !text.is_empty() {
            messages.push(Message::system(text));
        }
    }
    contents(w.contents, &mut messages)?;
    let tools = tools(w.tools.unwrap_or_default())?;
    let (tools, tool_choice) = tool_choice(w.tool_config, tools)?;
    let g = w.generation_config.unwrap_or_default();
    let (thinking, include_thoughts) = thinking(g.thinking_config.as_ref())?;
    let req = ChatRequest {
        model: model.to_owned(),
        messages,
        tools,
        tool_choice,
        temperature: g.temperature,
        top_p: g.top_p,
        top_k: g.top_k.map(top_k).transpose()?,
        max_tokens: g.max_output_tokens,
        stop: g.stop_sequences.clone().unwrap_or_default(),
        seed: match g.seed {
            Some(s) if s < 0 => {
                return Err(ApiError::invalid(
                    "`generationConfig.seed` must not be negative on this gateway",
                )
                .param("generationConfig.seed"))
            }
            Some(s) => Some(s.unsigned_abs()),
            None => None,
        },
        presence_penalty: g.presence_penalty,
        frequency_penalty: g.frequency_penalty,
        response_format: output_format(&g)?,
        thinking,
        stream_usage: Some(true),
        ..ChatRequest::default()
    };
    crate::ingress::openai::request::validate(&req)?;
    Ok((req, include_thoughts))
}

fn system_text(c: WireContent) -> Result<String, ApiError> {
    let mut parts = Vec::with_capacity(c.parts.len());
    for (j, p) in c.parts.into_iter().enumerate() {
        match p.text {
            Some(t) if p.inline_data.is_none() && p.function_call.is_none() => parts.push(t),
            _ => {
                return Err(
                    ApiError::invalid("`systemInstruction` takes text parts only")
                        .param(format!("systemInstruction.parts[{j}]")),
                )
            }
        }
    }
    Ok(parts.join("\n"))
}

/// `contents` → messages, appended to `out`.
fn contents(contents: Vec<WireContent>, out: &mut Vec<Message>) -> Result<(), ApiError> {
    // The calls of the latest model turn not answered yet: (id, name).
    let mut pending: Vec<(String, String)> = Vec::new();
    for (i, c) in contents.into_iter().enumerate() {
        let at = format!("contents[{i}]");
        if c.parts.is_empty() {
            return Err(ApiError::invalid(format!("`{at}.parts` must not be empty"))
                .param(format!("{at}.parts")));
        }
        match c.role.as_deref() {
            None | Some("user" | "function") => user_turn(&at, c.parts, &mut pending, out)?,
            Some("model") => {
                pending.clear();
                out.push(model_turn(i, &at, c.parts, &mut pending)?);
            }
            Some(other) => {
                return Err(ApiError::invalid(format!(
                    "unknown content role `{other}` (expected user or model)"
                ))
                .param(format!("{at}.role")))
            }
        }
    }
    Ok(())
}

/// A user turn: tool messages for its `functionResponse` parts, then a user message with the
/// rest.
fn user_turn(
    at: &str,
    parts: Vec<WirePart>,
    pending: &mut Vec<(String, String)>,
    out: &mut Vec<Message>,
) -> Result<(), ApiError> {
    let mut rest = Vec::new();
    for (j, p) in parts.into_iter().enumerate() {
        let pat = format!("{at}.parts[{j}]");
        if let Some(fr) = p.function_response {
            let id = match fr.id.filter(|s| !s.is_empty()) {
                Some(id) => {
                    pending.retain(|(pid, _)| *pid != id);
                    id
                }
                None => match pending.iter().position(|(_, n)| *n == fr.name) {
                    Some(k) => pending.remove(k).0,
                    None => {
                        return Err(ApiError::invalid(format!(
                            "this `functionResponse` for `{}` answers no `functionCall` of the \
                             model turn before it (give the call's `id` to match it)",
                            fr.name
                        ))
                        .param(format!("{pat}.functionResponse")))
                    }
                },
            };
            let content = fr.response.unwrap_or(Value::Object(Map::new())).to_string();
            let mut m = Message::tool_result(id, content);
            m.name = Some(fr.name);
            out.push(m);
            continue;
        }
        if p.thought == Some(true) {
            continue;
        }
        if p.function_call.is_some() {
            return Err(
                ApiError::invalid("a `functionCall` belongs in a `model` turn")
                    .param(format!("{pat}.functionCall")),
            );
        }
        rest.push(media_part(&pat, p)?);
    }
    if !rest.is_empty() {
        out.push(Message::user(content_of(rest)));
    }
    Ok(())
}

/// A model turn: one assistant message (text and calls; thoughts dropped).
fn model_turn(
    i: usize,
    at: &str,
    parts: Vec<WirePart>,
    pending: &mut Vec<(String, String)>,
) -> Result<Message, ApiError> {
    let mut text = String::new();
    let mut calls = Vec::new();
    for (j, p) in parts.into_iter().enumerate() {
        let pat = format!("{at}.parts[{j}]");
        if let Some(fc) = p.function_call {
            let id = fc
                .id
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| format!("call_{i}_{j}"));
            let arguments = match fc.args {
                None | Some(Value::Null) => "{}".to_owned(),
                Some(v @ Value::Object(_)) => v.to_string(),
                Some(_) => {
                    return Err(ApiError::invalid("`functionCall.args` must be an object")
                        .param(format!("{pat}.functionCall.args")))
                }
            };
            pending.push((id.clone(), fc.name.clone()));
            calls.push(ToolCall {
                id,
                name: fc.name,
                arguments,
            });
            continue;
        }
        if p.function_response.is_some() {
            return Err(
                ApiError::invalid("a `functionResponse` belongs in a `user` turn")
                    .param(format!("{pat}.functionResponse")),
            );
        }
        match p.text {
            Some(_) if p.thought == Some(true) => {}
            Some(t) => text.push_str(&t),
            None => {
                return Err(unsupported(
                    "a `model` turn may hold text and `functionCall` parts only",
                    pat,
                ))
            }
        }
    }
    let mut m = Message::assistant(text);
    m.tool_calls = calls;
    Ok(m)
}

/// A user part that is text or an image.
fn media_part(at: &str, p: WirePart) -> Result<ContentPart, ApiError> {
    if let Some(t) = p.text {
        return Ok(ContentPart::Text { text: t });
    }
    if let Some(b) = p.inline_data {
        if !b.mime_type.starts_with("image/") {
            return Err(unsupported(
                format!(
                    "inline data of type `{}` is not supported by this gateway: images only",
                    b.mime_type
                ),
                format!("{at}.inlineData.mimeType"),
            ));
        }
        return Ok(ContentPart::ImageUrl {
            url: format!("data:{};base64,{}", b.mime_type, b.data),
            detail: None,
        });
    }
    if let Some(f) = p.file_data {
        let image = f
            .mime_type
            .as_deref()
            .is_none_or(|m| m.starts_with("image/"));
        let web = f.file_uri.starts_with("https://") || f.file_uri.starts_with("http://");
        if image && web && !f.file_uri.contains("generativelanguage.googleapis.com") {
            return Ok(ContentPart::ImageUrl {
                url: f.file_uri,
                detail: None,
            });
        }
        return Err(unsupported(
            "files are not supported by this gateway, except images at a public http(s) URL \
             (Gemini Files API URIs cannot be read by other upstreams)",
            format!("{at}.fileData"),
        ));
    }
    if p.executable_code.is_some() || p.code_execution_result.is_some() {
        return Err(unsupported(
            "code execution parts are not supported by this gateway",
            at.to_owned(),
        ));
    }
    Err(ApiError::invalid(
        "a part needs `text`, `inlineData`, `fileData`, `functionCall` or `functionResponse`",
    )
    .param(at.to_owned()))
}

/// One text part stays a string; anything else is a list of parts.
fn content_of(mut parts: Vec<ContentPart>) -> Content {
    if parts.len() == 1 {
        if let Some(ContentPart::Text { .. }) = parts.first() {
            if let Some(ContentPart::Text { text }) = parts.pop() {
                return Content::Text(text);
            }
        }
    }
    Content::Parts(parts)
}

/// `tools` → function tools; hosted tools are refused by name.
fn tools(raw: Vec<Map<String, Value>>) -> Result<Vec<Tool>, ApiError> {
    let mut out = Vec::new();
    for (i, t) in raw.into_iter().enumerate() {
        for (key, v) in t {
            let at = format!("tools[{i}].{key}");
            match key.as_str() {
                "functionDeclarations" | "function_declarations" => {
                    let decls: Vec<WireFunctionDeclaration> =
                        crate::ingress::from_value_at(v, &at)?;
                    for d in decls {
                        let parameters = match (d.parameters_json_schema, d.parameters) {
                            (Some(s), _) if !s.is_null() => s,
                            (_, Some(s)) if !s.is_null() => json_schema(s),
                            _ => serde_json::json!({"type": "object", "properties": {}}),
                        };
                        out.push(Tool {
                            name: d.name,
                            description: d.description,
                            parameters,
                            strict: None,
                        });
                    }
                }
                other => {
                    return Err(unsupported(
                        format!(
                            "the `{other}` tool is not supported by this gateway: it runs no \
                             hosted tools; declare `functionDeclarations` and run them yourself"
                        ),
                        at,
                    ))
                }
            }
        }
    }
    Ok(out)
}

/// A Gemini `Schema` (OpenAPI subset: uppercase `type`, `nullable`, `propertyOrdering`) as
/// JSON Schema.
pub fn json_schema(v: Value) -> Value {
    let Value::Object(map) = v else {
        return v;
    };
    let mut out = Map::with_capacity(map.len());
    let mut nullable = false;
    for (k, v) in map {
        let key = match k.as_str() {
            "any_of" => "anyOf",
            "min_items" => "minItems",
            "max_items" => "maxItems",
            "min_length" => "minLength",
            "max_length" => "maxLength",
            "min_properties" => "minProperties",
            "max_properties" => "maxProperties",
            other => other,
        }
        .to_owned();
        match key.as_str() {
            "type" => match v {
                Value::String(s) if s == "TYPE_UNSPECIFIED" => {}
                Value::String(s) => {
                    out.insert(key, Value::String(s.to_ascii_lowercase()));
                }
                other => {
                    out.insert(key, other);
                }
            },
            "nullable" => nullable = v.as_bool() == Some(true),
            "propertyOrdering" | "property_ordering" => {}
            "properties" => {
                let props = match v {
                    Value::Object(p) => Value::Object(
                        p.into_iter()
                            .map(|(name, s)| (name, json_schema(s)))
                            .collect(),
                    ),
                    other => other,
                };
                out.insert(key, props);
            }
            "items" => {
                out.insert(key, json_schema(v));
            }
            "anyOf" => {
                let list = match v {
                    Value::Array(a) => Value::Array(a.into_iter().map(json_schema).collect()),
                    other => other,
                };
                out.insert(key, list);
            }
            _ => {
                out.insert(key, v);
            }
        }
    }
    if nullable {
        if let Some(Value::String(t)) = out.get("type").cloned() {
            out.insert("type".into(), serde_json::json!([t, "null"]));
        }
    }
    Value::Object(out)
}

/// `toolConfig.functionCallingConfig` → the tool choice (and the tools it allows).
fn tool_choice(
    config: Option<WireToolConfig>,
    mut tools: Vec<Tool>,
) -> Result<(Vec<Tool>, Option<ToolChoice>), ApiError> {
    let Some(fc) = config.and_then(|c| c.function_calling_config) else {
        return Ok((tools, None));
    };
    let at = "toolConfig.functionCallingConfig";
    let allowed = fc.allowed_function_names.unwrap_or_default();
    if let Some(missing) = allowed
        .iter()
        .find(|n| !tools.iter().any(|t| &t.name == *n))
    {
        return Err(ApiError::invalid(format!(
            "`allowedFunctionNames` names `{missing}`, which is not among the declared functions"
        ))
        .param(format!("{at}.allowedFunctionNames")));
    }
    if !allowed.is_empty() {
        tools.retain(|t| allowed.contains(&t.name));
    }
    let mode = fc.mode.as_deref().map(str::to_ascii_uppercase);
    let choice = match mode.as_deref() {
        None | Some("MODE_UNSPECIFIED") => None,
        Some("AUTO" | "VALIDATED") => Some(ToolChoice::Auto),
        Some("NONE") => Some(ToolChoice::None),
        Some("ANY") if allowed.len() == 1 => Some(ToolChoice::Function(allowed[0].clone())),
        Some("ANY") => Some(ToolChoice::Required),
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "`mode` must be AUTO, ANY, NONE or VALIDATED, got `{other}`"
            ))
            .param(format!("{at}.mode")))
        }
    };
    Ok((tools, choice))
}

/// `thinkingConfig` → the core thinking setting, and whether thoughts are returned.
fn thinking(c: Option<&WireThinkingConfig>) -> Result<(Option<Thinking>, bool), ApiError> {
    let Some(c) = c else {
        return Ok((None, false));
    };
    let at = "generationConfig.thinkingConfig";
    let level = c
        .thinking_level
        .as_deref()
        .filter(|l| !l.eq_ignore_ascii_case("THINKING_LEVEL_UNSPECIFIED"));
    let thinking = match (c.thinking_budget, level) {
        (Some(_), Some(_)) => {
            return Err(
                ApiError::invalid("give `thinkingBudget` or `thinkingLevel`, not both").param(at),
            )
        }
        (Some(0), None) => Some(Thinking::switch(false)),
        (Some(-1), None) => Some(Thinking::switch(true)),
        (Some(n), None) => match u32::try_from(n) {
            Ok(b) => Some(Thinking {
                enabled: Some(true),
                budget_tokens: Some(b),
                effort: None,
            }),
            Err(_) => {
                return Err(ApiError::invalid(format!(
                    "`thinkingBudget` must be -1, 0 or a positive token count, got {n}"
                ))
                .param(format!("{at}.thinkingBudget")))
            }
        },
        (None, Some(l)) if l.eq_ignore_ascii_case("none") => None,
        (None, Some(l)) => Some(thinking_for_effort(l).ok_or_else(|| {
            ApiError::invalid(format!(
                "`thinkingLevel` must be MINIMAL, LOW, MEDIUM, HIGH or XHIGH, got `{l}`"
            ))
            .param(format!("{at}.thinkingLevel"))
        })?),
        (None, None) => None,
    };
    Ok((thinking, c.include_thoughts.unwrap_or(false)))
}

fn top_k(k: f64) -> Result<u32, ApiError> {
    if k.is_finite() && k >= 0.0 && k.fract() == 0.0 && k <= f64::from(u32::MAX) {
        // A whole number within range: exact.
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "checked above: whole, non-negative and at most u32::MAX"
        )]
        Ok(k as u32)
    } else {
        Err(ApiError::invalid(format!(
            "`topK` must be a whole number of at least 0, got {k}"
        ))
        .param("generationConfig.topK"))
    }
}

/// The output format, and the generation features this gateway cannot carry.
fn output_format(g: &WireGenerationConfig) -> Result<Option<ResponseFormat>, ApiError> {
    let at = "generationConfig";
    if g.candidate_count.is_some_and(|n| n > 1) {
        return Err(unsupported(
            "this gateway returns one candidate: `candidateCount` must be 1",
            format!("{at}.candidateCount"),
        ));
    }
    if g.response_logprobs == Some(true) || g.logprobs.is_some() {
        return Err(unsupported(
            "log probabilities are not supported by this gateway",
            format!("{at}.responseLogprobs"),
        ));
    }
    if g.speech_config.as_ref().is_some_and(|v| !v.is_null()) {
        return Err(unsupported(
            "speech output is not supported by this gateway",
            format!("{at}.speechConfig"),
        ));
    }
    if g.image_config.as_ref().is_some_and(|v| !v.is_null()) {
        return Err(unsupported(
            "image output is not supported by this gateway",
            format!("{at}.imageConfig"),
        ));
    }
    if let Some(m) = g
        .response_modalities
        .iter()
        .flatten()
        .find(|m| !m.eq_ignore_ascii_case("TEXT"))
    {
        return Err(unsupported(
            format!("this gateway answers with text only, not `{m}`"),
            format!("{at}.responseModalities"),
        ));
    }
    let schema = match (&g.response_json_schema, &g.response_schema) {
        (Some(s), _) if !s.is_null() => Some(s.clone()),
        (_, Some(s)) if !s.is_null() => Some(json_schema(s.clone())),
        _ => None,
    };
    match g.response_mime_type.as_deref() {
        Some("application/json") => Ok(Some(match schema {
            Some(schema) => ResponseFormat::JsonSchema {
                name: "response".into(),
                schema,
                strict: None,
            },
            None => ResponseFormat::JsonObject,
        })),
        None | Some("" | "text/plain") if schema.is_some() => Err(ApiError::invalid(
            "`responseSchema` needs `responseMimeType: application/json`",
        )
        .param(format!("{at}.responseMimeType"))),
        None | Some("") => Ok(None),
        Some("text/plain") => Ok(Some(ResponseFormat::Text)),
        Some(other) => Err(unsupported(
            format!(
                "`responseMimeType` `{other}` is not supported by this gateway (text/plain and \
                 application/json are)"
            ),
            format!("{at}.responseMimeType"),
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use llmux_core::Role;

    use super::*;

    fn decode(v: Value) -> Result<(ChatRequest, bool), ApiError> {
        decode_generate("gemini-2.5-flash", &serde_json::to_vec(&v).unwrap())
    }

    fn refused(v: Value, kind: ErrorKind, param: &str, needle: &str) {
        crate::ingress::testing::assert_refused(decode(v), kind, param, needle);
    }

    #[test]
    fn targets_split_into_model_and_method() {
        assert_eq!(
            parse_target("gemini-2.5-flash:generateContent").unwrap(),
            ("gemini-2.5-flash", Method::Generate)
        );
        assert_eq!(
            parse_target("dashscope/qwen-plus:streamGenerateContent").unwrap(),
            ("dashscope/qwen-plus", Method::Stream)
        );
        assert_eq!(
            parse_target("models/m:countTokens").unwrap(),
            ("m", Method::CountTokens)
        );
        assert_eq!(parse_target("m").unwrap_err().kind, ErrorKind::NotFound);
        assert_eq!(
            parse_target("m:embedContent").unwrap_err().kind,
            ErrorKind::NotFound
        );
        let long = format!("{}:generateContent", "a".repeat(MAX_MODEL_LEN + 1));
        assert_eq!(
            parse_target(&long).unwrap_err().param.as_deref(),
            Some("model")
        );
        for bad in [
            ":generateContent",
            "a b:generateContent",
            "a\u{0}:generateContent",
            "a%2F:generateContent",
            "a:b:generateContent",
        ] {
            let e = parse_target(bad).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidRequest, "{bad}");
        }
    }

    /// The body the google-genai SDK (3.3.0) sends for a conversation with an image, a call
    /// and its result, and every generation option.
    #[test]
    fn the_sdk_request_shape_maps_to_the_core_request() {
        let (req, include) = decode(serde_json::json!({
            "contents": [
                {"parts": [{"text": "hi"}, {"inlineData": {"data": "iVBORw==", "mime_type": "image/png"}}], "role": "user"},
                {"parts": [{"functionCall": {"args": {"city": "Paris"}, "name": "get_weather"}}], "role": "model"},
                {"parts": [{"functionResponse": {"name": "get_weather", "response": {"result": "sunny"}}}], "role": "user"}
            ],
            "systemInstruction": {"parts": [{"text": "be brief"}], "role": "user"},
            "safetySettings": [{"category": "HARM_CATEGORY_HATE_SPEECH", "threshold": "BLOCK_NONE"}],
            "tools": [{"functionDeclarations": [{"description": "Weather of a city.", "name": "get_weather",
                "parameters_json_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
                "response_json_schema": {"type": "string"}}]}],
            "toolConfig": {"functionCallingConfig": {"allowedFunctionNames": ["get_weather"], "mode": "ANY"}},
            "generationConfig": {"temperature": 0.5, "topP": 0.9, "topK": 20.0, "candidateCount": 1,
                "maxOutputTokens": 100, "stopSequences": ["x"], "seed": 7,
                "responseMimeType": "application/json",
                "responseSchema": {"properties": {"a": {"type": "STRING", "nullable": true}}, "type": "OBJECT", "propertyOrdering": ["a"]},
                "thinkingConfig": {"include_thoughts": true, "thinking_budget": 128}}
        }))
        .unwrap();
        assert!(include);
        assert_eq!(req.model, "gemini-2.5-flash");
        let m = &req.messages;
        assert_eq!(m.len(), 4, "{m:?}");
        assert_eq!(m[0], Message::system("be brief"));
        assert_eq!(
            m[1].content,
            Content::Parts(vec![
                ContentPart::Text { text: "hi".into() },
                ContentPart::ImageUrl {
                    url: "data:image/png;base64,iVBORw==".into(),
                    detail: None
                }
            ])
        );
        assert_eq!(m[2].role, Role::Assistant);
        assert_eq!(
            m[2].tool_calls,
            vec![ToolCall {
                id: "call_1_0".into(),
                name: "get_weather".into(),
                arguments: r#"{"city":"Paris"}"#.into()
            }]
        );
        assert_eq!(m[3].role, Role::Tool);
        assert_eq!(m[3].tool_call_id.as_deref(), Some("call_1_0"));
        assert_eq!(m[3].content.text(), r#"{"result":"sunny"}"#);
        assert_eq!(req.tools[0].name, "get_weather");
        assert_eq!(
            req.tools[0].parameters["required"],
            serde_json::json!(["city"])
        );
        assert_eq!(
            req.tool_choice,
            Some(ToolChoice::Function("get_weather".into()))
        );
        assert_eq!(req.temperature, Some(0.5));
        assert_eq!(req.top_p, Some(0.9));
        assert_eq!(req.top_k, Some(20));
        assert_eq!(req.max_tokens, Some(100));
        assert_eq!(req.stop, vec!["x"]);
        assert_eq!(req.seed, Some(7));
        assert_eq!(
            req.thinking,
            Some(Thinking {
                enabled: Some(true),
                budget_tokens: Some(128),
                effort: None
            })
        );
        assert_eq!(
            req.response_format,
            Some(ResponseFormat::JsonSchema {
                name: "response".into(),
                schema: serde_json::json!({"type": "object", "properties": {"a": {"type": ["string", "null"]}}}),
                strict: None
            })
        );
    }

    #[test]
    fn calls_and_results_pair_by_id_then_by_name() {
        let (req, _) = decode(serde_json::json!({"contents": [
            {"role": "user", "parts": [{"text": "q"}]},
            {"role": "model", "parts": [
                {"text": "thinking…", "thought": true},
                {"text": "two calls"},
                {"functionCall": {"name": "f", "args": {}}},
                {"functionCall": {"id": "x9", "name": "f"}},
                {"functionCall": {"name": "g", "args": {"a": 1}}}
            ]},
            {"role": "user", "parts": [
                {"functionResponse": {"id": "x9", "name": "f", "response": {"r": 2}}},
                {"functionResponse": {"name": "g", "response": {"r": 3}}},
                {"functionResponse": {"name": "f", "response": {"r": 1}}},
                {"text": "and now?"}
            ]}
        ]}))
        .unwrap();
        let m = &req.messages;
        assert_eq!(m[1].content.text(), "two calls");
        let ids: Vec<&str> = m[1].tool_calls.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["call_1_2", "x9", "call_1_4"]);
        assert_eq!(m[1].tool_calls[1].arguments, "{}");
        let answered: Vec<&str> = m[2..5]
            .iter()
            .map(|t| t.tool_call_id.as_deref().unwrap())
            .collect();
        assert_eq!(answered, ["x9", "call_1_4", "call_1_2"]);
        assert_eq!(m[5], Message::user("and now?"));
        assert_eq!(m.len(), 6);
        refused(
            serde_json::json!({"contents": [
                {"role": "user", "parts": [{"text": "q"}]},
                {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {}}}]}
            ]}),
            ErrorKind::InvalidRequest,
            "contents[1].parts[0].functionResponse",
            "answers no `functionCall`",
        );
    }

    #[test]
    fn tool_config_modes_map_to_choices() {
        let with = |cfg: Value| {
            decode(serde_json::json!({
                "contents": [{"parts": [{"text": "q"}]}],
                "tools": [{"functionDeclarations": [{"name": "a"}, {"name": "b",
                    "parameters": {"type": "OBJECT", "properties": {"n": {"type": "INTEGER"}}}}]}],
                "toolConfig": {"functionCallingConfig": cfg}
            }))
        };
        let (r, _) = with(serde_json::json!({"mode": "AUTO"})).unwrap();
        assert_eq!(r.tool_choice, Some(ToolChoice::Auto));
        assert_eq!(r.tools.len(), 2);
        assert_eq!(
            r.tools[1].parameters,
            serde_json::json!({"type": "object", "properties": {"n": {"type": "integer"}}})
        );
        assert_eq!(
            r.tools[0].parameters,
            serde_json::json!({"type": "object", "properties": {}})
        );
        let (r, _) = with(serde_json::json!({"mode": "none"})).unwrap();
        assert_eq!(r.tool_choice, Some(ToolChoice::None));
        let (r, _) = with(serde_json::json!({"mode": "ANY"})).unwrap();
        assert_eq!(r.tool_choice, Some(ToolChoice::Required));
        let (r, _) =
            with(serde_json::json!({"mode": "ANY", "allowedFunctionNames": ["a", "b"]})).unwrap();
        assert_eq!(r.tool_choice, Some(ToolChoice::Required));
        let (r, _) =
            with(serde_json::json!({"mode": "ANY", "allowedFunctionNames": ["b"]})).unwrap();
        assert_eq!(r.tool_choice, Some(ToolChoice::Function("b".into())));
        assert_eq!(r.tools.len(), 1);
        let e =
            with(serde_json::json!({"mode": "ANY", "allowedFunctionNames": ["zz"]})).unwrap_err();
        assert!(e.message.contains("`zz`"), "{}", e.message);
        let e = with(serde_json::json!({"mode": "SOMETIMES"})).unwrap_err();
        assert_eq!(
            e.param.as_deref(),
            Some("toolConfig.functionCallingConfig.mode")
        );
    }

    #[test]
    fn thinking_settings_map_to_core_thinking() {
        let with = |tc: Value| {
            decode(serde_json::json!({"contents": [{"parts": [{"text": "q"}]}],
                "generationConfig": {"thinkingConfig": tc}}))
        };
        let t = |enabled: bool, budget_tokens| {
            Some(Thinking {
                enabled: Some(enabled),
                budget_tokens,
                effort: None,
            })
        };
        assert_eq!(
            with(serde_json::json!({"thinkingBudget": 0}))
                .unwrap()
                .0
                .thinking,
            t(false, None)
        );
        assert_eq!(
            with(serde_json::json!({"thinkingBudget": -1}))
                .unwrap()
                .0
                .thinking,
            t(true, None)
        );
        assert_eq!(
            with(serde_json::json!({"thinkingBudget": 2048}))
                .unwrap()
                .0
                .thinking,
            t(true, Some(2048))
        );
        assert_eq!(
            with(serde_json::json!({"thinkingLevel": "LOW"}))
                .unwrap()
                .0
                .thinking,
            Some(Thinking::effort(llmux_core::ReasoningEffort::Low))
        );
        let (r, include) = with(serde_json::json!({"includeThoughts": true})).unwrap();
        assert!(include && r.thinking.is_none());
        assert!(with(serde_json::json!({"thinkingBudget": -5})).is_err());
        assert!(with(serde_json::json!({"thinkingBudget": 5, "thinkingLevel": "HIGH"})).is_err());
        assert!(with(serde_json::json!({"thinkingLevel": "ENORMOUS"})).is_err());
        // No thinkingConfig: the model's default, thoughts not returned.
        let (r, include) =
            decode(serde_json::json!({"contents": [{"parts": [{"text": "q"}]}]})).unwrap();
        assert!(!include && r.thinking.is_none());
    }

    #[test]
    fn output_formats_map_and_refusals_name_the_field() {
        let cfg = |g: Value| {
            decode(
                serde_json::json!({"contents": [{"parts": [{"text": "q"}]}], "generationConfig": g}),
            )
        };
        assert_eq!(
            cfg(serde_json::json!({"responseMimeType": "application/json"}))
                .unwrap()
                .0
                .response_format,
            Some(ResponseFormat::JsonObject)
        );
        assert_eq!(
            cfg(serde_json::json!({"responseMimeType": "application/json", "responseJsonSchema": {"type": "object"}}))
                .unwrap().0.response_format,
            Some(ResponseFormat::JsonSchema { name: "response".into(), schema: serde_json::json!({"type": "object"}), strict: None })
        );
        assert_eq!(
            cfg(serde_json::json!({"responseMimeType": "text/plain"}))
                .unwrap()
                .0
                .response_format,
            Some(ResponseFormat::Text)
        );
        let base = |g: Value| serde_json::json!({"contents": [{"parts": [{"text": "q"}]}], "generationConfig": g});
        refused(
            base(serde_json::json!({"responseSchema": {"type": "OBJECT"}})),
            ErrorKind::InvalidRequest,
            "generationConfig.responseMimeType",
            "application/json",
        );
        refused(
            base(serde_json::json!({"responseMimeType": "text/x.enum"})),
            ErrorKind::Unsupported,
            "generationConfig.responseMimeType",
            "text/x.enum",
        );
        refused(
            base(serde_json::json!({"candidateCount": 2})),
            ErrorKind::Unsupported,
            "generationConfig.candidateCount",
            "one candidate",
        );
        refused(
            base(serde_json::json!({"responseLogprobs": true})),
            ErrorKind::Unsupported,
            "generationConfig.responseLogprobs",
            "log probabilities",
        );
        refused(
            base(serde_json::json!({"responseModalities": ["TEXT", "IMAGE"]})),
            ErrorKind::Unsupported,
            "generationConfig.responseModalities",
            "`IMAGE`",
        );
        refused(
            base(serde_json::json!({"speechConfig": {"voiceConfig": {}}})),
            ErrorKind::Unsupported,
            "generationConfig.speechConfig",
            "speech",
        );
        refused(
            base(serde_json::json!({"imageConfig": {"aspectRatio": "1:1"}})),
            ErrorKind::Unsupported,
            "generationConfig.imageConfig",
            "image output",
        );
        refused(
            base(serde_json::json!({"topK": 2.5})),
            ErrorKind::InvalidRequest,
            "generationConfig.topK",
            "whole number",
        );
        refused(
            base(serde_json::json!({"seed": -3})),
            ErrorKind::InvalidRequest,
            "generationConfig.seed",
            "negative",
        );
        let e = cfg(serde_json::json!({"temperature": 3.0})).unwrap_err();
        assert!(e.message.contains("`temperature`"), "{}", e.message);
    }

    #[test]
    fn unsupported_features_are_refused_by_name() {
        let q = serde_json::json!([{"parts": [{"text": "q"}]}]);
        refused(
            serde_json::json!({"contents": q, "cachedContent": "cachedContents/abc"}),
            ErrorKind::Unsupported,
            "cachedContent",
            "cached contents",
        );
        refused(
            serde_json::json!({"contents": q, "tools": [{"googleSearch": {}}]}),
            ErrorKind::Unsupported,
            "tools[0].googleSearch",
            "`googleSearch`",
        );
        refused(
            serde_json::json!({"contents": q, "tools": [{"codeExecution": {}}]}),
            ErrorKind::Unsupported,
            "tools[0].codeExecution",
            "`codeExecution`",
        );
        refused(
            serde_json::json!({"contents": [{"parts": [{"inlineData": {"mimeType": "audio/wav", "data": "AA"}}]}]}),
            ErrorKind::Unsupported,
            "contents[0].parts[0].inlineData.mimeType",
            "audio/wav",
        );
        refused(
            serde_json::json!({"contents": [{"parts": [{"fileData": {"mimeType": "application/pdf", "fileUri": "https://x/y.pdf"}}]}]}),
            ErrorKind::Unsupported,
            "contents[0].parts[0].fileData",
            "files",
        );
        refused(
            serde_json::json!({"contents": [{"parts": [{"executableCode": {"code": "1"}}]}]}),
            ErrorKind::Unsupported,
            "contents[0].parts[0]",
            "code execution",
        );
        refused(
            serde_json::json!({"contents": [{"role": "critic", "parts": [{"text": "x"}]}]}),
            ErrorKind::InvalidRequest,
            "contents[0].role",
            "critic",
        );
        refused(
            serde_json::json!({"contents": [{"role": "user", "parts": []}]}),
            ErrorKind::InvalidRequest,
            "contents[0].parts",
            "empty",
        );
        refused(
            serde_json::json!({"contents": [{"parts": [{"videoMetadata": {}}]}]}),
            ErrorKind::InvalidRequest,
            "contents[0].parts[0]",
            "a part needs",
        );
        refused(
            serde_json::json!({"contents": q, "tools": [{"functionDeclarations": [{"description": "no name"}]}]}),
            ErrorKind::InvalidRequest,
            "tools[0].functionDeclarations[0]",
            "name",
        );
        // Dropped, not refused: safety settings; an image at a public URL is an image.
        let (r, _) = decode(serde_json::json!({"contents": [{"parts": [{"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/a.jpg"}}]}],
            "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]})).unwrap();
        assert!(r.messages[0].content.has_images());
        let e = decode_generate("m", b"[1]").unwrap_err();
        assert!(e.message.contains("invalid"), "{}", e.message);
        let e = decode(serde_json::json!({"contents": []})).unwrap_err();
        assert!(e.message.contains("at least one message"), "{}", e.message);
    }

    #[test]
    fn count_tokens_takes_contents_or_a_whole_request() {
        let r = decode_count("m", br#"{"contents":[{"parts":[{"text":"hello"}]}]}"#).unwrap();
        assert_eq!(r.messages, vec![Message::user("hello")]);
        let r = decode_count(
            "m",
            br#"{"generateContentRequest":{"model":"models/m","contents":[{"role":"user","parts":[{"text":"a"}]}],"systemInstruction":{"parts":[{"text":"s"}]}}}"#,
        )
        .unwrap();
        assert_eq!(r.messages, vec![Message::system("s"), Message::user("a")]);
        assert!(decode_count("m", b"{}").is_err());
    }
}
