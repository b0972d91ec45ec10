//! Google's Gemini API (`v1beta`): `models/{model}:generateContent`,
//! `:streamGenerateContent?alt=sse`, `:batchEmbedContents` and the model list, with the key in
//! the `x-goog-api-key` header (never in the URL, which gets logged).
//!
//! Facts come from the official `google-genai` Python SDK: the request converters
//! (`contents`/`parts`, `systemInstruction`, `tools[].functionDeclarations`,
//! `toolConfig.functionCallingConfig`, `generationConfig`), `GenerateContentResponse` (which is
//! also each stream chunk: function calls arrive whole), and the error envelope
//! `{"error":{"code","message","status","details"}}`.

pub mod stream;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use serde_json::Value;

use super::openai_compat::{describe, non_json_error, parse_json};
use super::thinking::{EffortSupport, Switch, ThinkingSupport};
use super::{
    check_base_url, header_request_id, join_url, Capabilities, CredentialSpec, Provider,
    ProviderSettings, ProviderSpec, StreamParser,
};
use crate::error::{kind_for_status, parse_retry_after, Error, ErrorKind, Result};
use crate::http::{HttpRequest, HttpResponse};
use crate::types::*;
use crate::SecretString;

pub use stream::GeminiStreamParser;

const ID: &str = "gemini";

/// What Gemini takes for thinking (`generationConfig.thinkingConfig`): on (thoughts included)
/// or off (a budget of 0), `thinkingBudget` (Gemini 2.5), `thinkingLevel` (Gemini 3:
/// `MINIMAL`, `LOW`, `MEDIUM`, `HIGH`).
pub const THINKING: ThinkingSupport = ThinkingSupport {
    switch: Switch::Field,
    budget: true,
    effort: EffortSupport::Levels(&[
        ReasoningEffort::Minimal,
        ReasoningEffort::Low,
        ReasoningEffort::Medium,
        ReasoningEffort::High,
    ]),
};
/// The API version in every path.
pub const API_VERSION: &str = "v1beta";

/// The registry row.
pub const SPEC: ProviderSpec = ProviderSpec {
    id: ID,
    description: "Google Gemini API (x-goog-api-key)",
    default_base_url: "https://generativelanguage.googleapis.com",
    base_url_env: "GEMINI_BASE_URL",
    region_env: None,
    credentials: &[CredentialSpec {
        field: "api_key",
        env: &["GEMINI_API_KEY"],
        optional: false,
    }],
    models: &[
        "gemini-2.5-flash",
        "gemini-2.5-pro",
        "gemini-2.5-flash-lite",
        "gemini-3-flash-preview",
        "gemini-3.1-pro-preview",
        "gemini-embedding-001",
    ],
    build: |row, s| Ok(Arc::new(Gemini::from_settings(row, &s)?)),
};

/// The Gemini provider.
#[derive(Debug)]
pub struct Gemini {
    base_url: String,
    api_key: SecretString,
}

/// The resource path of a model: `models/<model>`, or the name as given when it already has
/// a collection (`models/…`, `tunedModels/…`). Only letters, digits, `-`, `_`, `.` and `/` are
/// accepted, so a model name cannot change the URL's path or query.
pub fn model_path(model: &str) -> Result<String> {
    let ok = !model.is_empty()
        && model
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'))
        && !model
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..");
    if !ok {
        return Err(Error::invalid_request(format!(
            "gemini model names take letters, digits, `-`, `_`, `.` and `/` only, got `{model}`"
        ))
        .with_provider(ID));
    }
    Ok(if model.contains('/') {
        model.to_owned()
    } else {
        format!("models/{model}")
    })
}

/// A `finishReason` as a finish reason: `STOP` is `tool_calls` when the answer made calls,
/// the safety and policy reasons are `content_filter`, others are kept in lower case;
/// `None` while the candidate is not finished.
pub fn finish_reason(reason: &str, made_calls: bool) -> Option<FinishReason> {
    Some(match reason {
        "" | "FINISH_REASON_UNSPECIFIED" => return None,
        "STOP" if made_calls => FinishReason::ToolCalls,
        "STOP" => FinishReason::Stop,
        "MAX_TOKENS" => FinishReason::Length,
        "SAFETY"
        | "RECITATION"
        | "BLOCKLIST"
        | "PROHIBITED_CONTENT"
        | "SPII"
        | "IMAGE_SAFETY"
        | "IMAGE_PROHIBITED_CONTENT"
        | "IMAGE_RECITATION" => FinishReason::ContentFilter,
        other => FinishReason::Other(other.to_ascii_lowercase()),
    })
}

/// The id of the `i`-th call of a candidate when the API gives none: stable for one answer
/// (built from the response id), so a stream and a whole answer name their calls alike.
pub fn call_id(response_id: Option<&str>, candidate: u32, i: usize) -> String {
    match (response_id.filter(|r| !r.is_empty()), candidate) {
        (Some(r), 0) => format!("call_{r}_{i}"),
        (Some(r), c) => format!("call_{r}_{c}_{i}"),
        (None, 0) => format!("call_{i}"),
        (None, c) => format!("call_{c}_{i}"),
    }
}

/// The error of a prompt Gemini refused to answer (`promptFeedback.blockReason`, no candidate).
pub(crate) fn blocked(w: &wire::GenerateContentResponse) -> Option<Error> {
    let reason = w.prompt_feedback.as_ref()?.block_reason.as_deref()?;
    if !w.candidates.is_empty() || reason.is_empty() || reason == "BLOCKED_REASON_UNSPECIFIED" {
        return None;
    }
    Some(
        Error::new(
            ErrorKind::ContentFiltered,
            describe(
                ErrorKind::ContentFiltered,
                &format!("gemini blocked the prompt ({reason})"),
            ),
        )
        .with_provider(ID)
        .with_code(reason),
    )
}

/// The kind of a Gemini error (`http` 0: reported inside a 2xx answer or stream).
fn kind_for(err: &wire::WireError, reason: Option<&str>, http: u16) -> ErrorKind {
    let msg = err
        .message
        .as_deref()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if matches!(reason, Some("API_KEY_INVALID" | "API_KEY_EXPIRED"))
        || msg.contains("api key not valid")
        || msg.contains("api key expired")
    {
        return ErrorKind::Authentication;
    }
    let too_long = msg.contains("exceeds the maximum number of tokens")
        || (msg.contains("token count") && msg.contains("exceed"));
    match err.status.as_deref().unwrap_or_default() {
        "INVALID_ARGUMENT" | "OUT_OF_RANGE" if too_long => ErrorKind::ContextLengthExceeded,
        "INVALID_ARGUMENT" | "OUT_OF_RANGE" | "ALREADY_EXISTS" => ErrorKind::InvalidRequest,
        // Billing or region preconditions of the account: another upstream may serve it.
        "FAILED_PRECONDITION" | "PERMISSION_DENIED" => ErrorKind::PermissionDenied,
        "UNAUTHENTICATED" => ErrorKind::Authentication,
        "NOT_FOUND" => ErrorKind::NotFound,
        "RESOURCE_EXHAUSTED" if quota_spent(err, &msg) => ErrorKind::QuotaExhausted,
        "RESOURCE_EXHAUSTED" => ErrorKind::RateLimited,
        "DEADLINE_EXCEEDED" => ErrorKind::Timeout,
        "UNIMPLEMENTED" => ErrorKind::Unsupported,
        "INTERNAL" | "UNAVAILABLE" | "UNKNOWN" | "ABORTED" | "DATA_LOSS" | "CANCELLED" => {
            ErrorKind::UpstreamServer
        }
        _ if http == 0 => ErrorKind::UpstreamServer,
        _ => kind_for_status(http),
    }
}

/// Whether a `RESOURCE_EXHAUSTED` means the quota is spent rather than a per-minute limit: a
/// daily quota named in `QuotaFailure`, or "exceeded your current quota" without a `RetryInfo`
/// saying when to come back.
fn quota_spent(err: &wire::WireError, lower_msg: &str) -> bool {
    let daily = err.details.iter().any(|d| {
        d.get("violations")
            .and_then(Value::as_array)
            .is_some_and(|v| {
                v.iter().any(|v| {
                    v.get("quotaId")
                        .and_then(Value::as_str)
                        .is_some_and(|q| q.contains("PerDay"))
                })
            })
    });
    daily
        || (lower_msg.contains("exceeded your current quota")
            && retry_delay(&err.details).is_none())
}

/// `RetryInfo.retryDelay` (`"12s"`, `"0.5s"`) from an error's details.
fn retry_delay(details: &[Value]) -> Option<Duration> {
    details
        .iter()
        .filter(|d| {
            d.get("@type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.ends_with("google.rpc.RetryInfo"))
        })
        .find_map(|d| {
            d.get("retryDelay")?
                .as_str()?
                .strip_suffix('s')?
                .parse::<f64>()
                .ok()
        })
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| Duration::try_from_secs_f64(s).unwrap_or(Duration::MAX))
}

/// An error from an error object; `http` 0 means it came inside a 2xx answer or a stream.
pub(crate) fn error_from(http: u16, headers: &HeaderMap, err: wire::WireError) -> Error {
    let reason = err
        .details
        .iter()
        .find_map(|d| d.get("reason").and_then(Value::as_str));
    let kind = kind_for(&err, reason, http);
    let code = reason
        .map(str::to_owned)
        .or_else(|| err.status.clone())
        .unwrap_or_default();
    let mut e = Error::new(
        kind,
        describe(kind, err.message.as_deref().unwrap_or_default()),
    )
    .with_provider(ID)
    .with_code(code)
    .with_retry_after(parse_retry_after(headers).or_else(|| retry_delay(&err.details)))
    .with_request_id(header_request_id(headers));
    if http != 0 {
        e = e.with_status(http);
    }
    e
}

impl Gemini {
    /// A provider at `base_url` (the host, without the API version).
    pub fn new(base_url: &str, api_key: SecretString) -> Result<Self> {
        Ok(Gemini {
            base_url: check_base_url(ID, base_url)?,
            api_key,
        })
    }

    /// Builds from a registry row and settings (`api_key`, base URL).
    pub fn from_settings(row: &ProviderSpec, s: &ProviderSettings) -> Result<Self> {
        let key = s.require(row, "api_key")?.clone();
        Gemini::new(s.base_url.as_deref().unwrap_or(row.default_base_url), key)
    }

    fn url(&self, rest: &str) -> String {
        join_url(&self.base_url, &format!("{API_VERSION}/{rest}"))
    }

    fn authed(&self, r: HttpRequest) -> Result<HttpRequest> {
        r.header("accept", "application/json")?
            .secret_header("x-goog-api-key", &self.api_key)
    }
}

impl Provider for Gemini {
    fn id(&self) -> &'static str {
        ID
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            streaming: true,
            tools: true,
            vision: true,
            json_mode: true,
            embeddings: true,
            list_models: true,
        }
    }

    fn base_url(&self) -> &str {
        &self.base_url
    }

    fn build_chat(&self, model: &str, req: &ChatRequest, stream: bool) -> Result<HttpRequest> {
        req.validate_for(model).map_err(|e| e.with_provider(ID))?;
        let path = model_path(model)?;
        let thinking = THINKING.resolve(ID, model, req.thinking.as_ref())?;
        let body = wire::chat_body(req, thinking)?;
        let rest = if stream {
            format!("{path}:streamGenerateContent?alt=sse")
        } else {
            format!("{path}:generateContent")
        };
        self.authed(HttpRequest::post_json(self.url(&rest), &body)?)
    }

    fn parse_chat(&self, resp: &HttpResponse) -> Result<ChatResponse> {
        let w: wire::GenerateContentResponse = parse_json(ID, &resp.body)?;
        if let Some(err) = w.error {
            return Err(error_from(0, &resp.headers, err));
        }
        if let Some(e) = blocked(&w) {
            return Err(e.with_request_id(header_request_id(&resp.headers)));
        }
        if w.candidates.is_empty() {
            return Err(Error::protocol("gemini answered without a candidate").with_provider(ID));
        }
        let rid = w.response_id.as_deref();
        let choices = w
            .candidates
            .into_iter()
            .enumerate()
            .map(|(pos, c)| {
                let index = c.index.unwrap_or(pos as u32);
                let mut text = String::new();
                let mut reasoning = String::new();
                let mut tool_calls = Vec::new();
                for part in c.content.map(|c| c.parts).unwrap_or_default() {
                    if let Some(fc) = part.function_call {
                        tool_calls.push(ToolCall {
                            id: fc
                                .id
                                .filter(|s| !s.is_empty())
                                .unwrap_or_else(|| call_id(rid, index, tool_calls.len())),
                            name: fc.name.unwrap_or_default(),
                            arguments: fc.args.map_or_else(|| "{}".to_owned(), |a| a.to_string()),
                        });
                    } else if let Some(t) = part.text {
                        if part.thought == Some(true) {
                            reasoning.push_str(&t);
                        } else {
                            text.push_str(&t);
                        }
                    }
                }
                let finish = c
                    .finish_reason
                    .as_deref()
                    .and_then(|r| finish_reason(r, !tool_calls.is_empty()));
                Choice {
                    index,
                    message: Message {
                        role: Role::Assistant,
                        content: Content::Text(text),
                        name: None,
                        tool_calls,
                        tool_call_id: None,
                        reasoning: (!reasoning.is_empty()).then_some(reasoning),
                        reasoning_signature: None,
                    },
                    finish_reason: finish,
                }
            })
            .collect();
        let request_id = header_request_id(&resp.headers);
        Ok(ChatResponse {
            id: w
                .response_id
                .or_else(|| request_id.clone())
                .unwrap_or_default(),
            model: w.model_version.unwrap_or_default(),
            created: None,
            choices,
            usage: w.usage_metadata.as_ref().map(wire::UsageMetadata::usage),
            request_id,
        })
    }

    fn stream_parser(&self, _model: &str, _req: &ChatRequest) -> Box<dyn StreamParser> {
        Box::new(GeminiStreamParser::new())
    }

    fn classify_error(&self, status: u16, headers: &HeaderMap, body: &[u8]) -> Error {
        match serde_json::from_slice::<wire::ErrorBody>(body)
            .ok()
            .and_then(wire::ErrorBody::into_error)
        {
            Some(err) => error_from(status, headers, err),
            None => non_json_error(ID, status, headers, body),
        }
    }

    fn build_embeddings(&self, model: &str, req: &EmbeddingRequest) -> Result<HttpRequest> {
        req.validate_for(model).map_err(|e| e.with_provider(ID))?;
        let path = model_path(model)?;
        let body = wire::embed_body(&path, req);
        self.authed(HttpRequest::post_json(
            self.url(&format!("{path}:batchEmbedContents")),
            &body,
        )?)
    }

    fn embedding_batch_limit(&self, _model: &str) -> Option<usize> {
        // `batchEmbedContents` takes at most 100 requests ("at most 100 requests can be in one
        // batch", the API's 400 past it).
        Some(100)
    }

    fn parse_embeddings(&self, resp: &HttpResponse) -> Result<EmbeddingResponse> {
        let w: wire::BatchEmbedResponse = parse_json(ID, &resp.body)?;
        let data = w
            .embeddings
            .into_iter()
            .enumerate()
            .map(|(i, e)| Embedding {
                index: i as u32,
                vector: e.values,
            })
            .collect();
        // Without counts the usage is left unset; the gateway then bills its own estimate of
        // the input, marked as estimated.
        let usage = w.usage_metadata.map(|u| {
            let input = u.prompt_token_count.or(u.total_token_count).unwrap_or(0);
            Usage::new(input, 0)
        });
        Ok(EmbeddingResponse {
            model: String::new(),
            data,
            usage,
            request_id: header_request_id(&resp.headers),
        })
    }

    fn build_models(&self) -> Result<HttpRequest> {
        self.authed(HttpRequest::get(self.url("models?pageSize=1000")))
    }

    fn parse_models(&self, resp: &HttpResponse) -> Result<Vec<ModelInfo>> {
        let page: wire::ModelsPage = parse_json(ID, &resp.body)?;
        Ok(page
            .models
            .into_iter()
            .map(|m| ModelInfo {
                id: m
                    .name
                    .strip_prefix("models/")
                    .map_or_else(|| m.name.clone(), str::to_owned),
                owned_by: None,
                created: None,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::{StreamAccumulator, StreamEvent};
    use serde_json::json;

    fn provider() -> Gemini {
        Gemini::new("http://127.0.0.1:1", "gm-test-key".into()).unwrap()
    }

    fn body(req: &ChatRequest) -> Value {
        let r = provider().build_chat("gemini-test", req, false).unwrap();
        serde_json::from_slice(&r.body).unwrap()
    }

    fn call(id: &str, name: &str, args: &str) -> ToolCall {
        ToolCall {
            id: id.into(),
            name: name.into(),
            arguments: args.into(),
        }
    }

    fn weather() -> Tool {
        Tool {
            name: "get_weather".into(),
            description: Some("Weather for a city".into()),
            parameters: json!({"type": "object", "properties": {"city": {"type": "string"}},
                               "required": ["city"], "additionalProperties": false}),
            strict: None,
        }
    }

    #[test]
    fn requests_name_the_model_in_the_path_and_the_key_only_in_a_header() {
        let req = ChatRequest::new("x", vec![Message::user("hi")]);
        let p = provider();
        let r = p.build_chat("gemini-2.5-flash", &req, false).unwrap();
        assert_eq!(
            r.url,
            "http://127.0.0.1:1/v1beta/models/gemini-2.5-flash:generateContent"
        );
        let r = p.build_chat("tunedModels/my-model", &req, true).unwrap();
        assert_eq!(
            r.url,
            "http://127.0.0.1:1/v1beta/tunedModels/my-model:streamGenerateContent?alt=sse"
        );
        assert_eq!(r.headers["x-goog-api-key"], "gm-test-key");
        assert!(r.headers["x-goog-api-key"].is_sensitive());
        assert!(!r.url.contains("gm-test-key"));
        assert_eq!(
            serde_json::from_slice::<Value>(&r.body).unwrap(),
            json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]})
        );
        for bad in ["gemini?key=x", "../models/x", "a b", "models//x", ""] {
            let err = p.build_chat(bad, &req, false).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{bad}");
        }
    }

    #[test]
    fn a_whole_conversation_maps_to_contents_and_generation_config() {
        let mut assistant = Message::assistant("Checking.");
        assistant.tool_calls = vec![
            call("call_a", "get_weather", r#"{"city":"Hangzhou"}"#),
            call("call_b", "get_time", ""),
        ];
        assistant.reasoning = Some("not sent".into());
        let mut req = ChatRequest::new(
            "x",
            vec![
                Message::system("Be brief."),
                Message::user(Content::Parts(vec![
                    ContentPart::Text {
                        text: "Weather here?".into(),
                    },
                    ContentPart::ImageUrl {
                        url: "data:image/jpeg;base64,/9j/4AAQ".into(),
                        detail: None,
                    },
                    ContentPart::ImageUrl {
                        url: "https://example.com/a.png?x=1".into(),
                        detail: None,
                    },
                ])),
                assistant,
                Message::tool_result("call_a", r#"{"temp": 21}"#),
                Message::tool_result("call_b", "noon"),
                Message::user("And tomorrow?"),
            ],
        );
        req.temperature = Some(0.3);
        req.top_p = Some(0.8);
        req.top_k = Some(40);
        req.max_tokens = Some(256);
        req.stop = vec!["END".into()];
        req.n = Some(2);
        req.seed = Some(7);
        req.presence_penalty = Some(0.1);
        req.frequency_penalty = Some(0.2);
        req.user = Some("not sent".into());
        req.tools = vec![weather()];
        req.tool_choice = Some(ToolChoice::Function("get_weather".into()));
        req.response_format = Some(ResponseFormat::JsonSchema {
            name: "w".into(),
            schema: json!({"type": "object"}),
            strict: Some(true),
        });
        req.thinking = Some(Thinking {
            enabled: Some(true),
            budget_tokens: Some(512),
            effort: None,
        });
        assert_eq!(
            body(&req),
            json!({
                "contents": [
                    {"role": "user", "parts": [
                        {"text": "Weather here?"},
                        {"inlineData": {"mimeType": "image/jpeg", "data": "/9j/4AAQ"}},
                        {"fileData": {"mimeType": "image/png", "fileUri": "https://example.com/a.png?x=1"}}
                    ]},
                    {"role": "model", "parts": [
                        {"text": "Checking."},
                        {"functionCall": {"id": "call_a", "name": "get_weather", "args": {"city": "Hangzhou"}},
                         "thoughtSignature": wire::SKIP_SIGNATURE},
                        {"functionCall": {"id": "call_b", "name": "get_time", "args": {}}}
                    ]},
                    {"role": "user", "parts": [
                        {"functionResponse": {"id": "call_a", "name": "get_weather", "response": {"temp": 21}}},
                        {"functionResponse": {"id": "call_b", "name": "get_time", "response": {"result": "noon"}}},
                        {"text": "And tomorrow?"}
                    ]}
                ],
                "systemInstruction": {"parts": [{"text": "Be brief."}]},
                "tools": [{"functionDeclarations": [{"name": "get_weather", "description": "Weather for a city",
                    "parametersJsonSchema": {"type": "object", "properties": {"city": {"type": "string"}},
                                             "required": ["city"], "additionalProperties": false}}]}],
                "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}},
                "generationConfig": {
                    "temperature": 0.3, "topP": 0.8, "topK": 40, "candidateCount": 2,
                    "maxOutputTokens": 256, "stopSequences": ["END"], "seed": 7,
                    "presencePenalty": 0.1, "frequencyPenalty": 0.2,
                    "responseMimeType": "application/json", "responseJsonSchema": {"type": "object"},
                    "thinkingConfig": {"includeThoughts": true, "thinkingBudget": 512}
                }
            })
        );
    }

    #[test]
    fn tool_choice_thinking_search_and_extra_map_as_documented() {
        let mut req = ChatRequest::new("x", vec![Message::user("hi")]);
        req.tools = vec![weather()];
        for (choice, mode) in [
            (ToolChoice::Auto, "AUTO"),
            (ToolChoice::Required, "ANY"),
            (ToolChoice::None, "NONE"),
        ] {
            req.tool_choice = Some(choice);
            assert_eq!(
                body(&req)["toolConfig"],
                json!({"functionCallingConfig": {"mode": mode}})
            );
        }
        req.tools.clear();
        assert!(body(&req).get("toolConfig").is_none());
        req.tool_choice = None;
        req.enable_search = Some(true);
        req.response_format = Some(ResponseFormat::JsonObject);
        req.thinking = Some(Thinking::switch(false));
        let b = body(&req);
        assert_eq!(b["tools"], json!([{"googleSearch": {}}]));
        assert_eq!(
            b["generationConfig"],
            json!({"responseMimeType": "application/json", "thinkingConfig": {"thinkingBudget": 0}})
        );

        // `extra`: top-level vendor fields flattened; `generationConfig` merged field by field.
        let mut req = ChatRequest::new("x", vec![Message::user("hi")]);
        req.temperature = Some(0.5);
        req.max_tokens = Some(10);
        req.extra.insert(
            "safetySettings".into(),
            json!([{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]),
        );
        req.extra.insert(
            "generationConfig".into(),
            json!({"temperature": 0.9, "maxOutputTokens": null, "responseModalities": ["TEXT"]}),
        );
        let raw = provider().build_chat("m", &req, false).unwrap().body;
        let text = std::str::from_utf8(&raw).unwrap();
        assert_eq!(text.matches("generationConfig").count(), 1, "{text}");
        assert_eq!(
            serde_json::from_slice::<Value>(&raw).unwrap(),
            json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}],
                   "generationConfig": {"temperature": 0.9, "responseModalities": ["TEXT"]},
                   "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]})
        );
        req.extra.insert("generationConfig".into(), Value::Null);
        assert!(body(&req).get("generationConfig").is_none());
    }

    #[test]
    fn requests_gemini_cannot_carry_fail_clearly() {
        let mut req = ChatRequest::new("x", vec![Message::user("hi")]);
        req.repetition_penalty = Some(1.1);
        req.parallel_tool_calls = Some(false);
        let err = provider().build_chat("m", &req, false).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported);
        assert!(err.message().contains("`repetition_penalty`"));
        assert!(err.message().contains("`parallel_tool_calls: false`"));

        let mut req = ChatRequest::new("x", vec![Message::user("hi")]);
        req.seed = Some(u64::from(u32::MAX));
        let err = provider().build_chat("m", &req, false).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidRequest);

        // A tool result for a call no assistant message made has no function name.
        let req = ChatRequest::new(
            "x",
            vec![Message::user("hi"), Message::tool_result("call_zz", "x")],
        );
        let err = provider().build_chat("m", &req, false).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidRequest);
        assert!(err.message().contains("call_zz"));
        // ...unless the message names it.
        let mut t = Message::tool_result("call_zz", "[1, 2]");
        t.name = Some("lookup".into());
        let req = ChatRequest::new("x", vec![Message::user("hi"), t]);
        assert_eq!(
            body(&req)["contents"][0]["parts"][1],
            json!({"functionResponse": {"id": "call_zz", "name": "lookup", "response": {"result": [1, 2]}}})
        );

        let mut a = Message::assistant("");
        a.tool_calls = vec![call("c", "f", "not json")];
        let req = ChatRequest::new("x", vec![Message::user("hi"), a]);
        let err = provider().build_chat("m", &req, false).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidRequest);
        assert!(err.message().contains("messages[1].tool_calls[0]"));
    }

    fn response(body: Value) -> HttpResponse {
        HttpResponse {
            status: 200,
            headers: HeaderMap::new(),
            body: serde_json::to_vec(&body).unwrap().into(),
        }
    }

    #[test]
    fn an_answer_maps_parts_calls_finish_and_usage() {
        let r = provider()
            .parse_chat(&response(json!({
                "candidates": [{
                    "content": {"role": "model", "parts": [
                        {"text": "Considering the city.", "thought": true},
                        {"text": "Let me check."},
                        {"functionCall": {"name": "get_weather", "args": {"city": "Hangzhou"}},
                         "thoughtSignature": "CiQB0e2Kb"},
                        {"functionCall": {"id": "fc-given", "name": "get_time"}}
                    ]},
                    "finishReason": "STOP",
                    "index": 0,
                    "safetyRatings": []
                }],
                "usageMetadata": {"promptTokenCount": 30, "candidatesTokenCount": 12,
                                  "thoughtsTokenCount": 8, "cachedContentTokenCount": 16,
                                  "totalTokenCount": 50,
                                  "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 30}]},
                "modelVersion": "gemini-2.5-flash",
                "responseId": "rsp-abc"
            })))
            .unwrap();
        assert_eq!(
            (r.id.as_str(), r.model.as_str()),
            ("rsp-abc", "gemini-2.5-flash")
        );
        assert_eq!(r.text(), "Let me check.");
        assert_eq!(
            r.choices[0].message.reasoning.as_deref(),
            Some("Considering the city.")
        );
        assert_eq!(r.finish_reason(), Some(&FinishReason::ToolCalls));
        assert_eq!(
            r.tool_calls(),
            [
                call("call_rsp-abc_0", "get_weather", r#"{"city":"Hangzhou"}"#),
                call("fc-given", "get_time", "{}")
            ]
        );
        let u = r.usage.unwrap();
        assert_eq!(
            (u.input_tokens, u.output_tokens, u.total_tokens),
            (30, 20, 50)
        );
        assert_eq!((u.cached_tokens, u.reasoning_tokens), (Some(16), Some(8)));
        for (reason, calls, expected) in [
            ("STOP", false, Some(FinishReason::Stop)),
            ("MAX_TOKENS", false, Some(FinishReason::Length)),
            ("SAFETY", false, Some(FinishReason::ContentFilter)),
            (
                "PROHIBITED_CONTENT",
                false,
                Some(FinishReason::ContentFilter),
            ),
            (
                "MALFORMED_FUNCTION_CALL",
                true,
                Some(FinishReason::Other("malformed_function_call".into())),
            ),
            ("FINISH_REASON_UNSPECIFIED", false, None),
        ] {
            assert_eq!(finish_reason(reason, calls), expected, "{reason}");
        }

        // A blocked prompt comes as a 200 without candidates.
        let err = provider()
            .parse_chat(&response(json!({
                "promptFeedback": {"blockReason": "SAFETY", "safetyRatings": []},
                "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9}
            })))
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ContentFiltered);
        assert_eq!(err.upstream_code(), Some("SAFETY"));
    }

    fn stream_events(body: &str) -> Vec<Result<StreamEvent>> {
        let (frames, tail) = crate::codec::sse::decode_all(body.as_bytes()).unwrap();
        let mut p = provider().stream_parser("m", &ChatRequest::default());
        let mut out = Vec::new();
        let mut events = Vec::new();
        for f in frames.iter().chain(tail.frame.iter()) {
            if let Err(e) = p.on_frame(f, &mut events) {
                out.extend(events.drain(..).map(Ok));
                out.push(Err(e));
                return out;
            }
        }
        let end = p.finish(&mut events);
        out.extend(events.drain(..).map(Ok));
        if let Err(e) = end {
            out.push(Err(e));
        }
        out
    }

    fn chunks(chunks: &[Value]) -> String {
        chunks
            .iter()
            .map(|c| format!("data: {c}\r\n\r\n"))
            .collect()
    }

    fn transcript() -> Vec<Value> {
        vec![
            json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Thinking about it", "thought": true}]}, "index": 0}],
                   "usageMetadata": {"promptTokenCount": 10, "totalTokenCount": 10}, "modelVersion": "gemini-2.5-flash", "responseId": "rsp-1"}),
            json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Hello"}]}, "index": 0}],
                   "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 1, "totalTokenCount": 11}, "modelVersion": "gemini-2.5-flash", "responseId": "rsp-1"}),
            json!({"candidates": [{"content": {"role": "model", "parts": [{"text": ", world"},
                        {"functionCall": {"name": "get_weather", "args": {"city": "北京"}}}]}, "index": 0}],
                   "modelVersion": "gemini-2.5-flash", "responseId": "rsp-1"}),
            json!({"candidates": [{"content": {"role": "model", "parts": [{"text": ""}]}, "finishReason": "STOP", "index": 0}],
                   "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 9, "thoughtsTokenCount": 4, "totalTokenCount": 23},
                   "modelVersion": "gemini-2.5-flash", "responseId": "rsp-1"}),
        ]
    }

    #[test]
    fn a_stream_folds_to_the_whole_answer_with_usage_once() {
        let events: Vec<StreamEvent> = stream_events(&chunks(&transcript()))
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            events[0],
            StreamEvent::Started {
                id: "rsp-1".into(),
                model: "gemini-2.5-flash".into(),
                request_id: None
            }
        );
        assert_eq!(
            events
                .iter()
                .filter(|e| matches!(e, StreamEvent::Usage(_)))
                .count(),
            1
        );
        let mut acc = StreamAccumulator::new();
        for e in &events {
            acc.push(e).unwrap();
        }
        let r = acc.finish().unwrap();
        assert_eq!(r.text(), "Hello, world");
        assert_eq!(
            r.choices[0].message.reasoning.as_deref(),
            Some("Thinking about it")
        );
        assert_eq!(r.finish_reason(), Some(&FinishReason::ToolCalls));
        assert_eq!(
            r.tool_calls(),
            [call("call_rsp-1_0", "get_weather", r#"{"city":"北京"}"#)]
        );
        let u = r.usage.unwrap();
        assert_eq!(
            (u.input_tokens, u.output_tokens, u.total_tokens),
            (10, 13, 23)
        );
        assert_eq!(u.reasoning_tokens, Some(4));
    }

    #[test]
    fn stream_errors_and_cuts_are_errors() {
        let mut t = transcript();
        t.pop();
        let err = stream_events(&chunks(&t)).pop().unwrap().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UpstreamProtocol);
        assert!(err
            .message()
            .contains("ended before the answer was complete"));

        let mut t = transcript();
        t.truncate(2);
        t.push(json!({"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}));
        let events = stream_events(&chunks(&t));
        assert!(matches!(&events[2], Ok(StreamEvent::TextDelta { text }) if text == "Hello"));
        let err = events.last().unwrap().as_ref().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UpstreamServer);
        assert_eq!(err.upstream_code(), Some("UNAVAILABLE"));

        let err = stream_events(&chunks(&[
            json!({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}}),
        ]))
        .pop()
        .unwrap()
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ContentFiltered);
    }

    fn classify(status: u16, body: Value) -> Error {
        provider().classify_error(status, &HeaderMap::new(), body.to_string().as_bytes())
    }

    #[test]
    fn error_statuses_map_to_kinds() {
        for (http, status, msg, kind) in [
            (400, "INVALID_ARGUMENT", "Request contains an invalid argument.", ErrorKind::InvalidRequest),
            (400, "INVALID_ARGUMENT", "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).", ErrorKind::ContextLengthExceeded),
            (400, "FAILED_PRECONDITION", "User location is not supported for the API use.", ErrorKind::PermissionDenied),
            (401, "UNAUTHENTICATED", "Request had invalid authentication credentials.", ErrorKind::Authentication),
            (403, "PERMISSION_DENIED", "The caller does not have permission", ErrorKind::PermissionDenied),
            (404, "NOT_FOUND", "models/gemini-x is not found for API version v1beta", ErrorKind::NotFound),
            (429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota).", ErrorKind::RateLimited),
            (429, "RESOURCE_EXHAUSTED", "You exceeded your current quota, please check your plan and billing details.", ErrorKind::QuotaExhausted),
            (500, "INTERNAL", "An internal error has occurred.", ErrorKind::UpstreamServer),
            (503, "UNAVAILABLE", "The model is overloaded.", ErrorKind::UpstreamServer),
            (504, "DEADLINE_EXCEEDED", "Deadline expired.", ErrorKind::Timeout),
        ] {
            let e = classify(http, json!({"error": {"code": http, "message": msg, "status": status}}));
            assert_eq!(e.kind(), kind, "{status}: {msg}");
            assert_eq!(e.upstream_code(), Some(status));
            assert_eq!(e.upstream_status(), Some(http));
            assert!(e.message().contains(msg));
        }
        // A bad key is a 400 INVALID_ARGUMENT whose detail says API_KEY_INVALID.
        let e = classify(
            400,
            json!([{"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.",
                    "status": "INVALID_ARGUMENT",
                    "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                                 "reason": "API_KEY_INVALID", "domain": "googleapis.com"}]}}]),
        );
        assert_eq!(e.kind(), ErrorKind::Authentication);
        assert_eq!(e.upstream_code(), Some("API_KEY_INVALID"));
        // The retry delay of a 429 comes from RetryInfo when no header gives one.
        let e = classify(
            429,
            json!({"error": {"code": 429, "message": "Resource has been exhausted", "status": "RESOURCE_EXHAUSTED",
                    "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "12.5s"}]}}),
        );
        assert_eq!(e.retry_after(), Some(Duration::from_millis(12_500)));
        // A per-minute quota comes back after its delay; a daily one does not.
        let per_minute = json!({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED",
            "message": "You exceeded your current quota, please check your plan and billing details.",
            "details": [{"@type": "type.googleapis.com/google.rpc.QuotaFailure",
                         "violations": [{"quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"}]},
                        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "17s"}]}});
        assert_eq!(
            classify(429, per_minute.clone()).kind(),
            ErrorKind::RateLimited
        );
        let mut daily = per_minute;
        daily["error"]["details"][0]["violations"][0]["quotaId"] =
            json!("GenerateRequestsPerDayPerProjectPerModel-FreeTier");
        assert_eq!(classify(429, daily).kind(), ErrorKind::QuotaExhausted);
        let e = provider().classify_error(502, &HeaderMap::new(), b"<html></html>");
        assert_eq!(e.kind(), ErrorKind::UpstreamServer);
    }

    #[test]
    fn embeddings_batch_one_request_per_text() {
        let mut req = EmbeddingRequest::new("x", vec!["a".into(), "b c".into()]);
        req.dimensions = Some(256);
        req.text_type = Some("query".into());
        req.extra.insert("title".into(), json!("doc"));
        let p = provider();
        let r = p.build_embeddings("gemini-embedding-001", &req).unwrap();
        assert_eq!(
            r.url,
            "http://127.0.0.1:1/v1beta/models/gemini-embedding-001:batchEmbedContents"
        );
        assert_eq!(r.headers["x-goog-api-key"], "gm-test-key");
        let one = |t: &str| {
            json!({"model": "models/gemini-embedding-001", "content": {"parts": [{"text": t}]},
                   "taskType": "RETRIEVAL_QUERY", "outputDimensionality": 256, "title": "doc"})
        };
        assert_eq!(
            serde_json::from_slice::<Value>(&r.body).unwrap(),
            json!({"requests": [one("a"), one("b c")]})
        );
        let e = p
            .parse_embeddings(&response(
                json!({"embeddings": [{"values": [0.5, -1.0]}, {"values": [0.25, 2.0]}]}),
            ))
            .unwrap();
        assert_eq!(e.data.len(), 2);
        assert_eq!(
            (e.data[1].index, e.data[1].vector.as_slice()),
            (1, &[0.25f32, 2.0][..])
        );
        assert_eq!(e.usage, None);
        let e = p
            .parse_embeddings(&response(json!({"embeddings": [{"values": [1.0]}],
                                               "usageMetadata": {"promptTokenCount": 3, "totalTokenCount": 3}})))
            .unwrap();
        assert_eq!(e.usage.map(|u| u.input_tokens), Some(3));
    }

    #[test]
    fn models_are_listed_without_their_collection_prefix() {
        let p = provider();
        assert_eq!(
            p.build_models().unwrap().url,
            "http://127.0.0.1:1/v1beta/models?pageSize=1000"
        );
        let models = p
            .parse_models(&response(json!({"models": [
                {"name": "models/gemini-2.5-flash", "displayName": "Gemini 2.5 Flash",
                 "supportedGenerationMethods": ["generateContent", "countTokens"]},
                {"name": "models/gemini-embedding-001"}]})))
            .unwrap();
        let ids: Vec<&str> = models.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["gemini-2.5-flash", "gemini-embedding-001"]);
    }
}
