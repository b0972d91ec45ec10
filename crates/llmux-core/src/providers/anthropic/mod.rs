//! Anthropic's Messages API (`POST /v1/messages`, plain and SSE, `GET /v1/models`) with
//! `x-api-key` and `anthropic-version`, and every endpoint that speaks it: the module serves
//! any [`MessagesSpec`] (Anthropic's own; DashScope's Anthropic-compatible endpoint is the
//! `dashscope-anthropic` row in [`super::dashscope`]).
//!
//! Facts come from the official `anthropic` Python SDK: request and response types, the stream
//! events (`message_start`, `content_block_start`/`_delta`/`_stop`, `message_delta`,
//! `message_stop`, `ping`, `error`) and the error envelope `{"type":"error","error":{…}}`.
//! The Messages API has no embeddings.

pub mod stream;
pub mod wire;

use std::sync::Arc;

use http::HeaderMap;

use super::openai_compat::{describe, non_json_error, parse_json};
use super::{
    check_base_url, header_request_id, join_url, Capabilities, CredentialSpec, Provider,
    ProviderSettings, ProviderSpec, StreamParser,
};
use crate::error::{
    kind_for_status, parse_retry_after, parse_should_retry, Error, ErrorKind, Result,
};
use crate::http::{HttpRequest, HttpResponse};
use crate::providers::canonical::parse_iso8601_utc;
use crate::types::*;
use crate::SecretString;

pub use stream::AnthropicStreamParser;

/// The `anthropic-version` header sent with every request.
pub const API_VERSION: &str = "2023-06-01";

/// What makes one Messages-API endpoint differ from Anthropic's own.
#[derive(Debug, Clone, Copy)]
pub struct MessagesSpec {
    /// Provider id.
    pub id: &'static str,
    /// What the endpoint can do.
    pub capabilities: Capabilities,
    /// Whether `output_config.format` (a JSON schema) is accepted.
    pub structured_output: bool,
    /// The endpoint's own error codes, beyond Anthropic's error types.
    pub map_code: fn(&str) -> Option<ErrorKind>,
}

fn no_codes(_: &str) -> Option<ErrorKind> {
    None
}

/// Anthropic's own endpoint.
pub const ANTHROPIC: MessagesSpec = MessagesSpec {
    id: "anthropic",
    capabilities: Capabilities {
        streaming: true,
        tools: true,
        vision: true,
        json_mode: true,
        embeddings: false,
        list_models: true,
    },
    structured_output: true,
    map_code: no_codes,
};

/// The registry row.
pub const SPEC: ProviderSpec = ProviderSpec {
    id: "anthropic",
    description: "Anthropic Claude, Messages API (x-api-key)",
    default_base_url: "https://api.anthropic.com",
    base_url_env: "ANTHROPIC_BASE_URL",
    region_env: None,
    credentials: &[CredentialSpec {
        field: "api_key",
        env: &["ANTHROPIC_API_KEY"],
        optional: false,
    }],
    models: &[
        "claude-opus-4-7",
        "claude-sonnet-4-6",
        "claude-haiku-4-5",
        "claude-opus-4-5",
        "claude-sonnet-4-5",
    ],
    build: |row, s| Anthropic::from_settings(ANTHROPIC, row, &s),
};

/// A provider for one Messages-API endpoint.
#[derive(Debug)]
pub struct Anthropic {
    spec: MessagesSpec,
    base_url: String,
    api_key: SecretString,
}

impl Anthropic {
    /// A provider for `spec` at `base_url` (the host, without `/v1`).
    pub fn new(spec: MessagesSpec, base_url: &str, api_key: SecretString) -> Result<Self> {
        Ok(Anthropic {
            spec,
            base_url: check_base_url(spec.id, base_url)?,
            api_key,
        })
    }

    /// Builds from a registry row and settings (`api_key`, base URL).
    pub fn from_settings(
        spec: MessagesSpec,
        row: &ProviderSpec,
        s: &ProviderSettings,
    ) -> Result<Arc<dyn Provider>> {
        let key = s.require(row, "api_key")?.clone();
        let base = s.base_url.as_deref().unwrap_or(row.default_base_url);
        Ok(Arc::new(Anthropic::new(spec, base, key)?))
    }

    /// The typed body of a chat of `req` for the upstream `model`.
    pub fn chat_body<'a>(
        &self,
        model: &'a str,
        req: &'a ChatRequest,
        stream: bool,
    ) -> Result<wire::MessagesRequest<'a>> {
        wire::chat_body(&self.spec, model, req, stream)
    }

    fn authed(&self, r: HttpRequest) -> Result<HttpRequest> {
        r.header("anthropic-version", API_VERSION)?
            .secret_header("x-api-key", &self.api_key)
    }
}

/// A `stop_reason` as a finish reason: `end_turn`/`stop_sequence` stop, `max_tokens` and
/// `model_context_window_exceeded` are `length`, `tool_use` is `tool_calls`, `refusal` is
/// `content_filter`; others (`pause_turn`) are kept verbatim.
pub fn finish_reason(stop_reason: &str) -> FinishReason {
    match stop_reason {
        "end_turn" | "stop_sequence" => FinishReason::Stop,
        "max_tokens" | "model_context_window_exceeded" => FinishReason::Length,
        "tool_use" => FinishReason::ToolCalls,
        "refusal" => FinishReason::ContentFilter,
        other => FinishReason::Other(other.to_owned()),
    }
}

/// The kind of an Anthropic error type (`status` 0: reported inside a 2xx answer or stream).
fn kind_for(spec: &MessagesSpec, typ: &str, message: &str, status: u16) -> ErrorKind {
    let lower = message.to_ascii_lowercase();
    let too_long = [
        "prompt is too long",
        "context limit",
        "context window",
        "context length",
    ]
    .iter()
    .any(|n| lower.contains(n));
    match typ {
        "invalid_request_error" if too_long => ErrorKind::ContextLengthExceeded,
        "invalid_request_error" if lower.contains("credit balance") => ErrorKind::QuotaExhausted,
        "invalid_request_error" | "request_too_large" => ErrorKind::InvalidRequest,
        "authentication_error" => ErrorKind::Authentication,
        "permission_error" => ErrorKind::PermissionDenied,
        "not_found_error" => ErrorKind::NotFound,
        "rate_limit_error" => ErrorKind::RateLimited,
        "billing_error" => ErrorKind::QuotaExhausted,
        "timeout_error" => ErrorKind::Timeout,
        "api_error" | "overloaded_error" => ErrorKind::UpstreamServer,
        other => match (spec.map_code)(other) {
            Some(ErrorKind::InvalidRequest) if too_long => ErrorKind::ContextLengthExceeded,
            Some(k) => k,
            None if status == 0 => ErrorKind::UpstreamServer,
            None => kind_for_status(status),
        },
    }
}

/// An error from an error body; `status` 0 means it came inside a 2xx answer or a stream.
pub(crate) fn error_from(
    spec: &MessagesSpec,
    status: u16,
    headers: &HeaderMap,
    env: wire::ErrorEnvelope,
) -> Error {
    let (code, message) = match env.error {
        Some(e) => (e.kind.unwrap_or_default(), e.message.unwrap_or_default()),
        None => (
            match env.code {
                Some(serde_json::Value::String(s)) => s,
                Some(serde_json::Value::Number(n)) => n.to_string(),
                _ => String::new(),
            },
            env.message.unwrap_or_default(),
        ),
    };
    let kind = kind_for(spec, &code, &message, status);
    let mut e = Error::new(kind, describe(kind, &message))
        .with_provider(spec.id)
        .with_code(code)
        .with_retry_after(parse_retry_after(headers))
        .with_request_id(header_request_id(headers).or(env.request_id))
        .with_retry_hint(parse_should_retry(headers));
    if status != 0 {
        e = e.with_status(status);
    }
    e
}

impl Provider for Anthropic {
    fn id(&self) -> &'static str {
        self.spec.id
    }

    fn capabilities(&self) -> Capabilities {
        self.spec.capabilities
    }

    fn base_url(&self) -> &str {
        &self.base_url
    }

    fn build_chat(&self, model: &str, req: &ChatRequest, stream: bool) -> Result<HttpRequest> {
        req.validate_for(model)
            .map_err(|e| e.with_provider(self.spec.id))?;
        let body = self.chat_body(model, req, stream)?;
        let accept = if stream {
            "text/event-stream"
        } else {
            "application/json"
        };
        let r = HttpRequest::post_json(join_url(&self.base_url, "v1/messages"), &body)?
            .header("accept", accept)?;
        self.authed(r)
    }

    fn parse_chat(&self, resp: &HttpResponse) -> Result<ChatResponse> {
        let w: wire::MessageResponse = parse_json(self.spec.id, &resp.body)?;
        if w.error.is_some() || w.kind.as_deref() == Some("error") {
            let env = wire::ErrorEnvelope {
                error: w.error,
                ..Default::default()
            };
            return Err(error_from(&self.spec, 0, &resp.headers, env));
        }
        let mut text = String::new();
        let mut reasoning = String::new();
        let mut signature = String::new();
        let mut tool_calls = Vec::new();
        for block in w.content {
            match block {
                wire::ResponseBlock::Text { text: t } => text.push_str(&t),
                wire::ResponseBlock::Thinking {
                    thinking,
                    signature: s,
                } => {
                    reasoning.push_str(&thinking);
                    signature.push_str(&s);
                }
                wire::ResponseBlock::ToolUse { id, name, input } => tool_calls.push(ToolCall {
                    id,
                    name,
                    arguments: input.map_or_else(|| "{}".to_owned(), |v| v.to_string()),
                }),
                wire::ResponseBlock::Other => {}
            }
        }
        let request_id = header_request_id(&resp.headers);
        Ok(ChatResponse {
            id: w.id.or_else(|| request_id.clone()).unwrap_or_default(),
            model: w.model.unwrap_or_default(),
            created: None,
            choices: vec![Choice {
                index: 0,
                message: Message {
                    role: Role::Assistant,
                    content: Content::Text(text),
                    name: None,
                    tool_calls,
                    tool_call_id: None,
                    reasoning: (!reasoning.is_empty()).then_some(reasoning),
                    reasoning_signature: (!signature.is_empty()).then_some(signature),
                },
                finish_reason: w.stop_reason.as_deref().map(finish_reason),
            }],
            usage: w.usage.as_ref().map(wire::WireUsage::usage),
            request_id,
        })
    }

    fn stream_parser(&self, _model: &str, _req: &ChatRequest) -> Box<dyn StreamParser> {
        Box::new(AnthropicStreamParser::new(self.spec))
    }

    fn classify_error(&self, status: u16, headers: &HeaderMap, body: &[u8]) -> Error {
        match serde_json::from_slice::<wire::ErrorEnvelope>(body) {
            Ok(env) if env.error.is_some() || env.code.is_some() => {
                error_from(&self.spec, status, headers, env)
            }
            _ => non_json_error(self.spec.id, status, headers, body)
                .with_retry_hint(parse_should_retry(headers)),
        }
    }

    fn build_models(&self) -> Result<HttpRequest> {
        if !self.spec.capabilities.list_models {
            return Err(Error::unsupported(format!(
                "{} cannot list models over its API",
                self.spec.id
            ))
            .with_provider(self.spec.id));
        }
        let r = HttpRequest::get(join_url(&self.base_url, "v1/models?limit=1000"))
            .header("accept", "application/json")?;
        self.authed(r)
    }

    fn parse_models(&self, resp: &HttpResponse) -> Result<Vec<ModelInfo>> {
        let page: wire::ModelsPage = parse_json(self.spec.id, &resp.body)?;
        Ok(page
            .data
            .into_iter()
            .map(|m| ModelInfo {
                created: m
                    .created_at
                    .as_deref()
                    .and_then(parse_iso8601_utc)
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .and_then(|d| i64::try_from(d.as_secs()).ok()),
                id: m.id,
                owned_by: None,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::{StreamAccumulator, StreamEvent};
    use serde_json::{json, Value};

    fn provider() -> Anthropic {
        Anthropic::new(ANTHROPIC, "http://127.0.0.1:1/", "sk-ant-test".into()).unwrap()
    }

    fn body(req: &ChatRequest, stream: bool) -> Value {
        let r = provider().build_chat("claude-test", req, stream).unwrap();
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
            parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}}),
            strict: None,
        }
    }

    #[test]
    fn the_request_goes_to_v1_messages_with_the_key_and_version_headers() {
        let req = ChatRequest::new("x", vec![Message::user("hi")]);
        let r = provider().build_chat("claude-test", &req, true).unwrap();
        assert_eq!(r.url, "http://127.0.0.1:1/v1/messages");
        assert_eq!(r.headers["x-api-key"], "sk-ant-test");
        assert!(r.headers["x-api-key"].is_sensitive());
        assert_eq!(r.headers["anthropic-version"], API_VERSION);
        assert_eq!(r.headers["content-type"], "application/json");
        assert_eq!(r.headers["accept"], "text/event-stream");
        assert!(r.headers.get("authorization").is_none());
        assert_eq!(
            body(&req, true),
            json!({"model": "claude-test", "max_tokens": DEFAULT_MAX,
                   "messages": [{"role": "user", "content": "hi"}], "stream": true})
        );
    }

    const DEFAULT_MAX: u32 = wire::DEFAULT_MAX_TOKENS;

    #[test]
    fn a_whole_conversation_maps_to_alternating_turns() {
        let mut assistant = Message::assistant("Let me look.");
        assistant.tool_calls = vec![
            call("toolu_1", "get_weather", r#"{"city":"Hangzhou"}"#),
            call("toolu_2", "get_time", ""),
        ];
        assistant.reasoning = Some("thinking without a signature is not sent".into());
        let mut req = ChatRequest::new(
            "x",
            vec![
                Message::system("Be brief."),
                Message::user(Content::Parts(vec![
                    ContentPart::Text {
                        text: "What is here?".into(),
                    },
                    ContentPart::ImageUrl {
                        url: "data:image/png;base64,iVBORw0KGgo=".into(),
                        detail: None,
                    },
                    ContentPart::ImageUrl {
                        url: "https://example.com/a.jpg".into(),
                        detail: Some("high".into()),
                    },
                ])),
                assistant,
                Message::tool_result("toolu_1", "sunny"),
                Message::tool_result("toolu_2", "noon"),
                Message::user("Thanks. And tomorrow?"),
                Message::system("Answer in English."),
            ],
        );
        req.temperature = Some(0.2);
        req.top_p = Some(0.9);
        req.top_k = Some(5);
        req.stop = vec!["END".into()];
        req.user = Some("user-7".into());
        req.tools = vec![weather()];
        req.tool_choice = Some(ToolChoice::Auto);
        req.parallel_tool_calls = Some(false);
        assert_eq!(
            body(&req, false),
            json!({
                "model": "claude-test",
                "max_tokens": DEFAULT_MAX,
                "system": [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Answer in English."}],
                "messages": [
                    {"role": "user", "content": [
                        {"type": "text", "text": "What is here?"},
                        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}}
                    ]},
                    {"role": "assistant", "content": [
                        {"type": "text", "text": "Let me look."},
                        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Hangzhou"}},
                        {"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {}}
                    ]},
                    {"role": "user", "content": [
                        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                        {"type": "tool_result", "tool_use_id": "toolu_2", "content": "noon"},
                        {"type": "text", "text": "Thanks. And tomorrow?"}
                    ]}
                ],
                "temperature": 0.2,
                "top_p": 0.9,
                "top_k": 5,
                "stop_sequences": ["END"],
                "tools": [{"name": "get_weather", "description": "Weather for a city",
                           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
                "tool_choice": {"type": "auto", "disable_parallel_tool_use": true},
                "metadata": {"user_id": "user-7"}
            })
        );
    }

    #[test]
    fn tool_choice_thinking_schema_and_extra_map_as_documented() {
        let mut req = ChatRequest::new("x", vec![Message::user("hi")]);
        req.tools = vec![weather()];
        for (choice, expected) in [
            (ToolChoice::Required, json!({"type": "any"})),
            (ToolChoice::None, json!({"type": "none"})),
            (
                ToolChoice::Function("get_weather".into()),
                json!({"type": "tool", "name": "get_weather"}),
            ),
        ] {
            req.tool_choice = Some(choice);
            assert_eq!(body(&req, false)["tool_choice"], expected);
        }
        // No tools: no choice is sent.
        req.tools.clear();
        req.tool_choice = Some(ToolChoice::Required);
        assert!(body(&req, false).get("tool_choice").is_none());

        req.tool_choice = None;
        req.thinking = Some(Thinking {
            enabled: Some(true),
            budget_tokens: Some(2048),
            effort: None,
        });
        let b = body(&req, false);
        assert_eq!(
            b["thinking"],
            json!({"type": "enabled", "budget_tokens": 2048})
        );
        assert_eq!(b["max_tokens"], json!(DEFAULT_MAX + 2048));
        req.thinking = Some(Thinking::switch(true));
        req.max_tokens = Some(9000);
        let b = body(&req, false);
        assert_eq!(
            b["thinking"],
            json!({"type": "enabled", "budget_tokens": wire::DEFAULT_THINKING_BUDGET})
        );
        assert_eq!(b["max_tokens"], json!(9000));
        req.thinking = Some(Thinking::switch(false));
        assert_eq!(body(&req, false)["thinking"], json!({"type": "disabled"}));

        req.response_format = Some(ResponseFormat::JsonSchema {
            name: "s".into(),
            schema: json!({"type": "object"}),
            strict: None,
        });
        assert_eq!(
            body(&req, false)["output_config"],
            json!({"format": {"type": "json_schema", "schema": {"type": "object"}}})
        );

        // `extra`: vendor fields flattened, a typed field replaced, a default removed.
        let mut req = ChatRequest::new("x", vec![Message::user("hi")]);
        req.temperature = Some(0.5);
        req.extra.insert("service_tier".into(), json!("auto"));
        req.extra.insert("temperature".into(), json!(0.7));
        req.extra.insert("max_tokens".into(), Value::Null);
        let raw = provider()
            .build_chat("claude-test", &req, false)
            .unwrap()
            .body;
        let text = std::str::from_utf8(&raw).unwrap();
        assert_eq!(text.matches("temperature").count(), 1, "{text}");
        assert_eq!(
            serde_json::from_slice::<Value>(&raw).unwrap(),
            json!({"model": "claude-test", "messages": [{"role": "user", "content": "hi"}],
                   "service_tier": "auto", "temperature": 0.7})
        );
    }

    #[test]
    fn options_the_api_lacks_are_refused_and_bad_arguments_are_invalid() {
        let mut req = ChatRequest::new("x", vec![Message::user("hi")]);
        req.seed = Some(1);
        req.presence_penalty = Some(0.5);
        req.response_format = Some(ResponseFormat::JsonObject);
        let err = provider().build_chat("m", &req, false).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported);
        for name in ["`seed`", "`presence_penalty`", "json_object"] {
            assert!(err.message().contains(name), "{}", err.message());
        }

        let mut req = ChatRequest::new("x", vec![Message::user("hi")]);
        req.temperature = Some(1.5);
        let err = provider().build_chat("m", &req, false).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidRequest);
        assert!(err.message().contains("between 0 and 1"));

        for (args, needle) in [
            ("{\"city\": ", "not valid JSON"),
            ("[1, 2]", "must be a JSON object"),
        ] {
            let mut a = Message::assistant("");
            a.tool_calls = vec![call("toolu_1", "get_weather", args)];
            let req = ChatRequest::new(
                "x",
                vec![Message::user("hi"), a, Message::tool_result("toolu_1", "x")],
            );
            let err = provider().build_chat("m", &req, false).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{args}");
            assert!(err.message().contains(needle), "{}", err.message());
            assert!(err.message().contains("messages[1].tool_calls[0]"));
        }
    }

    fn response(body: Value, headers: &[(&'static str, &str)]) -> HttpResponse {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(*k, v.parse().unwrap());
        }
        HttpResponse {
            status: 200,
            headers: h,
            body: serde_json::to_vec(&body).unwrap().into(),
        }
    }

    #[test]
    fn a_message_answer_maps_text_thinking_tool_use_and_cache_usage() {
        let r = provider()
            .parse_chat(&response(
                json!({
                    "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
                    "type": "message",
                    "role": "assistant",
                    "model": "claude-sonnet-4-5",
                    "content": [
                        {"type": "thinking", "thinking": "The user wants weather.", "signature": "EqQBCgIYAhIM"},
                        {"type": "text", "text": "Checking "},
                        {"type": "text", "text": "now."},
                        {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}},
                        {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather",
                         "input": {"city": "Hangzhou"}}
                    ],
                    "stop_reason": "tool_use",
                    "stop_sequence": null,
                    "usage": {"input_tokens": 20, "cache_creation_input_tokens": 5,
                              "cache_read_input_tokens": 100, "output_tokens": 42,
                              "output_tokens_details": {"thinking_tokens": 12}}
                }),
                &[("request-id", "req_018EeWyXxfu5pfWkrYcMdjWG")],
            ))
            .unwrap();
        assert_eq!(r.id, "msg_01XFDUDYJgAACzvnptvVoYEL");
        assert_eq!(r.model, "claude-sonnet-4-5");
        assert_eq!(
            r.request_id.as_deref(),
            Some("req_018EeWyXxfu5pfWkrYcMdjWG")
        );
        assert_eq!(r.text(), "Checking now.");
        assert_eq!(
            r.choices[0].message.reasoning.as_deref(),
            Some("The user wants weather.")
        );
        assert_eq!(r.finish_reason(), Some(&FinishReason::ToolCalls));
        assert_eq!(
            r.tool_calls(),
            [call(
                "toolu_01A09q90qw90lq917835lq9",
                "get_weather",
                r#"{"city":"Hangzhou"}"#
            )]
        );
        let u = r.usage.unwrap();
        assert_eq!(
            (u.input_tokens, u.output_tokens, u.total_tokens),
            (125, 42, 167)
        );
        assert_eq!((u.cached_tokens, u.reasoning_tokens), (Some(100), Some(12)));
        for (stop, reason) in [
            ("end_turn", FinishReason::Stop),
            ("stop_sequence", FinishReason::Stop),
            ("max_tokens", FinishReason::Length),
            ("model_context_window_exceeded", FinishReason::Length),
            ("refusal", FinishReason::ContentFilter),
            ("pause_turn", FinishReason::Other("pause_turn".into())),
        ] {
            assert_eq!(finish_reason(stop), reason);
        }
    }

    fn sse(events: &[Value]) -> String {
        events
            .iter()
            .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap()))
            .collect()
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
            if p.is_done() {
                break;
            }
        }
        let end = p.finish(&mut events);
        out.extend(events.drain(..).map(Ok));
        if let Err(e) = end {
            out.push(Err(e));
        }
        out
    }

    /// A transcript shaped as the API streams it: thinking, text, a tool call with its input
    /// in fragments, a no-argument tool call, pings, cumulative usage in `message_delta`.
    fn transcript() -> Vec<Value> {
        vec![
            json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
                   "content": [], "model": "claude-sonnet-4-5", "stop_reason": null, "stop_sequence": null,
                   "usage": {"input_tokens": 25, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 10, "output_tokens": 1}}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
            json!({"type": "ping"}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Weather"}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "EqQB"}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Let me "}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "check."}}),
            json!({"type": "content_block_stop", "index": 1}),
            json!({"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}}),
            json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": ""}}),
            json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "{\"city\": \"Han"}}),
            json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "gzhou\"}"}}),
            json!({"type": "content_block_stop", "index": 2}),
            json!({"type": "content_block_start", "index": 3, "content_block": {"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {}}}),
            json!({"type": "content_block_stop", "index": 3}),
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null},
                   "usage": {"output_tokens": 89, "output_tokens_details": {"thinking_tokens": 7}}}),
            json!({"type": "message_stop"}),
        ]
    }

    #[test]
    fn a_stream_folds_to_the_same_answer_with_usage_once_and_finished_last() {
        let events: Vec<StreamEvent> = stream_events(&sse(&transcript()))
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            events[0],
            StreamEvent::Started {
                id: "msg_1".into(),
                model: "claude-sonnet-4-5".into(),
                request_id: None
            }
        );
        assert_eq!(
            events.last(),
            Some(&StreamEvent::Finished {
                reason: FinishReason::ToolCalls
            })
        );
        let mut acc = StreamAccumulator::new();
        for e in &events {
            acc.push(e).unwrap();
        }
        let r = acc.finish().unwrap();
        assert_eq!(r.text(), "Let me check.");
        assert_eq!(r.choices[0].message.reasoning.as_deref(), Some("Weather"));
        assert_eq!(
            r.tool_calls(),
            [
                call("toolu_1", "get_weather", r#"{"city": "Hangzhou"}"#),
                call("toolu_2", "get_time", "{}")
            ]
        );
        let u = r.usage.unwrap();
        assert_eq!((u.input_tokens, u.output_tokens), (35, 89));
        assert_eq!((u.cached_tokens, u.reasoning_tokens), (Some(10), Some(7)));
    }

    #[test]
    fn stream_errors_and_cuts_are_errors_never_a_silent_success() {
        let mut t = transcript();
        t.truncate(9);
        t.push(json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}));
        let events = stream_events(&sse(&t));
        let err = events.last().unwrap().as_ref().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UpstreamServer);
        assert_eq!(err.upstream_code(), Some("overloaded_error"));
        assert!(err.is_retryable());
        // Text streamed before the error reached the caller.
        assert!(events
            .iter()
            .any(|e| matches!(e, Ok(StreamEvent::TextDelta { text }) if text == "check.")));

        // Cut before `message_stop` (even after `message_delta`).
        let mut t = transcript();
        t.pop();
        let events = stream_events(&sse(&t));
        let err = events.last().unwrap().as_ref().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UpstreamProtocol);
        assert!(err
            .message()
            .contains("ended before the answer was complete"));

        // Tool input for a block that never started is malformed.
        let t = vec![
            transcript().remove(0),
            json!({"type": "content_block_delta", "index": 4, "delta": {"type": "input_json_delta", "partial_json": "{}"}}),
        ];
        let err = stream_events(&sse(&t)).pop().unwrap().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UpstreamProtocol);
    }

    fn classify(status: u16, body: &str, headers: &[(&'static str, &str)]) -> Error {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(*k, v.parse().unwrap());
        }
        provider().classify_error(status, &h, body.as_bytes())
    }

    fn envelope(typ: &str, msg: &str) -> String {
        json!({"type": "error", "error": {"type": typ, "message": msg}, "request_id": "req_body"})
            .to_string()
    }

    #[test]
    fn error_types_map_to_kinds() {
        for (status, typ, msg, kind) in [
            (
                400,
                "invalid_request_error",
                "messages: roles must alternate",
                ErrorKind::InvalidRequest,
            ),
            (
                400,
                "invalid_request_error",
                "prompt is too long: 208474 tokens > 200000 maximum",
                ErrorKind::ContextLengthExceeded,
            ),
            (
                400,
                "invalid_request_error",
                "Your credit balance is too low to access the Anthropic API.",
                ErrorKind::QuotaExhausted,
            ),
            (
                401,
                "authentication_error",
                "invalid x-api-key",
                ErrorKind::Authentication,
            ),
            (402, "billing_error", "billing", ErrorKind::QuotaExhausted),
            (
                403,
                "permission_error",
                "no access",
                ErrorKind::PermissionDenied,
            ),
            (
                404,
                "not_found_error",
                "model: claude-x",
                ErrorKind::NotFound,
            ),
            (
                413,
                "request_too_large",
                "Request exceeds the maximum allowed number of bytes.",
                ErrorKind::InvalidRequest,
            ),
            (
                429,
                "rate_limit_error",
                "Number of request tokens has exceeded your per-minute rate limit",
                ErrorKind::RateLimited,
            ),
            (
                500,
                "api_error",
                "Internal server error",
                ErrorKind::UpstreamServer,
            ),
            (
                504,
                "timeout_error",
                "Request timed out",
                ErrorKind::Timeout,
            ),
            (
                529,
                "overloaded_error",
                "Overloaded",
                ErrorKind::UpstreamServer,
            ),
            (418, "brand_new_error", "?", ErrorKind::UpstreamProtocol),
        ] {
            let e = classify(status, &envelope(typ, msg), &[]);
            assert_eq!(e.kind(), kind, "{typ}: {msg}");
            assert_eq!(e.upstream_code(), Some(typ));
            assert_eq!(e.upstream_status(), Some(status));
            assert_eq!(e.request_id(), Some("req_body"));
            assert!(e.message().contains(msg), "{}", e.message());
        }
        let e = classify(
            429,
            &envelope("rate_limit_error", "slow down"),
            &[
                ("retry-after", "7"),
                ("request-id", "req_header"),
                ("x-should-retry", "true"),
            ],
        );
        assert_eq!(e.retry_after(), Some(std::time::Duration::from_secs(7)));
        assert_eq!(e.request_id(), Some("req_header"));
        assert_eq!(e.retry_hint(), Some(true));
        let e = classify(
            502,
            "<html>bad gateway</html>",
            &[("content-type", "text/html")],
        );
        assert_eq!(e.kind(), ErrorKind::UpstreamServer);
        assert!(e.message().contains("non-JSON"));
        // An error envelope inside a 200 is an error too.
        let err = provider()
            .parse_chat(&response(
                json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
                &[],
            ))
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UpstreamServer);
    }

    #[test]
    fn models_are_listed_with_their_release_time() {
        let p = provider();
        let r = p.build_models().unwrap();
        assert_eq!(r.url, "http://127.0.0.1:1/v1/models?limit=1000");
        assert_eq!(r.headers["x-api-key"], "sk-ant-test");
        let models = p
            .parse_models(&response(
                json!({"data": [{"type": "model", "id": "claude-sonnet-4-5", "display_name": "Claude Sonnet 4.5",
                                 "created_at": "2025-09-29T00:00:00Z"},
                                {"type": "model", "id": "claude-x", "display_name": "X", "created_at": "soon"}],
                       "has_more": false, "first_id": "claude-sonnet-4-5", "last_id": "claude-x"}),
                &[],
            ))
            .unwrap();
        assert_eq!(models[0].id, "claude-sonnet-4-5");
        assert_eq!(models[0].created, Some(1_759_104_000));
        assert_eq!(models[1].created, None);
        assert!(!p.capabilities().embeddings);
        let err = p
            .build_embeddings("m", &EmbeddingRequest::new("m", vec!["a".into()]))
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported);
    }
}
