//! The Anthropic Messages dialect: `POST /v1/messages` (a whole `message`, or with
//! `stream: true` its server-sent events) and `POST /v1/messages/count_tokens`, decoded into
//! core types and encoded back; its endpoints are declared here.
//!
//! Headers as the Messages API takes them: the key in `x-api-key` (or any form
//! [`crate::auth`] reads); `anthropic-version` is required, as Anthropic's API requires it (any
//! non-blank value is accepted: the gateway speaks the `2023-06-01` version the official SDKs
//! send); `anthropic-beta` is ignored (beta features are not carried across vendors).

use axum::http::request::Parts;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use llmux_core::{ChatRequest, ChatResponse};

use super::{Decoded, Dialect, Egress, StreamEncoder};
use crate::error::{ApiError, ErrorEnvelope};
use crate::pipeline::{Call, Chat, Operation};

pub mod error;
pub mod models;
pub mod request;
pub mod response;
pub mod stream;

pub use error::{AnthropicEnvelope, AnthropicError};
pub use request::{decode_count_tokens, decode_messages, MessagesOptions};
pub use response::{encode_message, MessageObject, TokenCount};
pub use stream::EventEncoder;

/// The Anthropic Messages dialect.
#[derive(Debug)]
pub struct Anthropic;

/// The `anthropic-version` header, required as by Anthropic's API.
pub fn check_version(head: &HeaderMap) -> Result<(), ApiError> {
    let given = head
        .get("anthropic-version")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| !v.trim().is_empty());
    if given {
        Ok(())
    } else {
        Err(ApiError::invalid("anthropic-version: header is required").param("anthropic-version"))
    }
}

impl Dialect<Chat> for Anthropic {
    const ENVELOPE: &'static dyn ErrorEnvelope = &AnthropicEnvelope;
    type Options = MessagesOptions;
    type Body = MessageObject;

    fn decode(
        head: &Parts,
        body: &[u8],
    ) -> Result<Decoded<ChatRequest, MessagesOptions>, ApiError> {
        check_version(&head.headers)?;
        let (request, options) = decode_messages(body)?;
        Ok(Decoded::new(request, options, options.stream))
    }

    fn encode(
        answer: &ChatResponse,
        e: &Egress<'_, MessagesOptions>,
    ) -> Result<MessageObject, ApiError> {
        encode_message(
            answer,
            e.request_id,
            e.model,
            e.options.show_thinking,
            e.prompt_estimate,
        )
    }

    /// `request-id`, where Anthropic's SDKs read a response's id.
    fn response_headers(e: &Egress<'_, MessagesOptions>, headers: &mut HeaderMap) {
        if let Ok(v) = axum::http::HeaderValue::from_str(e.request_id) {
            headers.insert("request-id", v);
        }
    }

    fn stream_encoder(e: &Egress<'_, MessagesOptions>) -> Option<Box<dyn StreamEncoder>> {
        Some(Box::new(EventEncoder::new(
            e.request_id,
            e.model,
            e.options.show_thinking,
            e.prompt_estimate,
        )))
    }
}

/// `POST /v1/messages`.
#[utoipa::path(
    post,
    path = "/v1/messages",
    tag = "anthropic",
    operation_id = "createMessage",
    summary = "Create a message (Anthropic Messages protocol)",
    description = "A message, whole or (with `stream: true`) as server-sent events: \
        `message_start`, per content block `content_block_start`, deltas and \
        `content_block_stop`, `message_delta` with the stop reason and usage, `message_stop`. \
        Failover to the next channel happens before the first byte; after it, an upstream \
        error is a last `event: error` frame. Any upstream serves it: fields that cannot be \
        carried to another vendor are refused with a 400 naming them (see docs/dialects.md).",
    params(
        ("anthropic-version" = String, Header, description = "Required, as by Anthropic's API; any non-blank value (the gateway speaks `2023-06-01`).", example = "2023-06-01"),
        ("anthropic-beta" = Option<String>, Header, description = "Ignored."),
    ),
    request_body(content = crate::ingress::anthropic::request::MessagesRequest, content_type = "application/json",
        examples(
            ("answer" = (summary = "A whole answer", value = json!({"model": "gpt-4o-mini", "max_tokens": 256, "messages": [{"role": "user", "content": "Hello"}]}))),
            ("stream" = (summary = "A stream", value = json!({"model": "gpt-4o-mini", "max_tokens": 256, "stream": true, "messages": [{"role": "user", "content": "Hello"}]}))),
        )),
    responses(
        (status = 200, description = "The message: JSON, or with `stream: true` an event stream.",
            content(
                (crate::ingress::anthropic::response::MessageObject = "application/json"),
                (crate::openapi::AnthropicStreamEvent = "text/event-stream"),
            )),
        crate::ingress::anthropic::error::AnthropicModelErrors,
    ),
    security(("client_key" = []), ("api_key" = []))
)]
pub async fn messages(call: Call) -> Response {
    call.serve::<Chat, Anthropic>().await
}

fn decode_count(head: &Parts, body: &[u8]) -> Result<ChatRequest, ApiError> {
    check_version(&head.headers)?;
    decode_count_tokens(body)
}

fn model_of(req: &ChatRequest) -> &str {
    &req.model
}

/// The estimated prompt tokens of a request: the gateway's estimate of its messages (as the
/// pipeline reserves and, without upstream usage, bills them) plus its tool definitions.
pub fn count_tokens_of(req: &ChatRequest) -> u64 {
    let tools: u64 = req
        .tools
        .iter()
        .map(|t| {
            llmux_core::tokens::estimate_text(&t.name)
                + t.description
                    .as_deref()
                    .map_or(0, llmux_core::tokens::estimate_text)
                + llmux_core::tokens::estimate_text(&t.parameters.to_string())
        })
        .sum();
    Chat::estimate(req).prompt + tools
}

/// `POST /v1/messages/count_tokens`.
#[utoipa::path(
    post,
    path = "/v1/messages/count_tokens",
    tag = "anthropic",
    operation_id = "countMessageTokens",
    summary = "Count a message's input tokens (Anthropic Messages protocol)",
    description = "The gateway's estimate of the prompt tokens (messages, system prompt and \
        tool definitions; ASCII text ≈ 4 characters per token, other characters 1 token \
        each, 4 per message), not a vendor tokenizer's count. No upstream is called, no \
        usage is recorded and no limit is charged; the key and the model are checked.",
    params(
        ("anthropic-version" = String, Header, description = "Required, as by Anthropic's API.", example = "2023-06-01"),
    ),
    request_body(content = crate::ingress::anthropic::request::CountTokensRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The estimate.", body = crate::ingress::anthropic::response::TokenCount),
        crate::ingress::anthropic::error::AnthropicCheckErrors,
    ),
    security(("client_key" = []), ("api_key" = []))
)]
pub async fn count_tokens(call: Call) -> Response {
    match call.check(&AnthropicEnvelope, decode_count, model_of).await {
        Ok(req) => Json(TokenCount {
            input_tokens: count_tokens_of(&req),
        })
        .into_response(),
        Err(resp) => resp,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn the_version_header_is_required() {
        let mut h = HeaderMap::new();
        let e = check_version(&h).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("anthropic-version"));
        h.insert("anthropic-version", " ".parse().unwrap());
        assert!(check_version(&h).is_err());
        h.insert("anthropic-version", "2023-06-01".parse().unwrap());
        assert!(check_version(&h).is_ok());
        let body = br#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"x"}]}"#;
        let head = |h: &HeaderMap| {
            let (mut parts, ()) = http::Request::new(()).into_parts();
            parts.headers = h.clone();
            parts
        };
        assert!(<Anthropic as Dialect<Chat>>::decode(&head(&h), body).is_ok());
        assert!(<Anthropic as Dialect<Chat>>::decode(&head(&HeaderMap::new()), body).is_err());
    }

    #[test]
    fn count_tokens_adds_tools_to_the_prompt_estimate() {
        let mut req = decode_count_tokens(
            br#"{"model":"m","messages":[{"role":"user","content":"hello world!"}]}"#,
        )
        .unwrap();
        assert_eq!(count_tokens_of(&req), 4 + 3);
        req.tools.push(llmux_core::Tool {
            name: "abcd".into(),
            description: None,
            parameters: serde_json::json!({}),
            strict: None,
        });
        assert_eq!(count_tokens_of(&req), 4 + 3 + 1 + 1);
    }
}
