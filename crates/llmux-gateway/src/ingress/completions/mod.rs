//! The legacy OpenAI Completions dialect: `POST /v1/completions` (prompt in, text out; whole
//! answers and `text_completion` chunk streams), with the OpenAI error envelope; decoded into
//! core types and encoded back by its own functions; its endpoint is declared here.

use axum::http::HeaderMap;
use axum::response::Response;
use llmux_core::{ChatRequest, ChatResponse};

use super::{Decoded, Dialect, Egress, StreamEncoder};
use crate::error::{ApiError, ErrorEnvelope};
use crate::ingress::openai::OpenAiEnvelope;
use crate::pipeline::{Call, Chat};
use crate::state::unix_now;

pub mod request;
pub mod response;

pub use request::{decode_completion, CompletionOptions, DEFAULT_MAX_TOKENS};
pub use response::{completion_id, encode_completion, CompletionEncoder, TextCompletion};

/// The legacy Completions dialect.
#[derive(Debug)]
pub struct Completions;

impl Dialect<Chat> for Completions {
    const ENVELOPE: &'static dyn ErrorEnvelope = &OpenAiEnvelope;
    type Options = CompletionOptions;
    type Body = TextCompletion;

    fn decode(
        _head: &HeaderMap,
        body: &[u8],
    ) -> Result<Decoded<ChatRequest, CompletionOptions>, ApiError> {
        let (request, options) = decode_completion(body)?;
        Ok(Decoded::new(request, options, options.stream))
    }

    fn encode(
        answer: &ChatResponse,
        e: &Egress<'_, CompletionOptions>,
    ) -> Result<TextCompletion, ApiError> {
        Ok(encode_completion(
            answer,
            &completion_id(e.request_id),
            unix_now(),
            e.model,
        ))
    }

    fn stream_encoder(e: &Egress<'_, CompletionOptions>) -> Option<Box<dyn StreamEncoder>> {
        Some(Box::new(CompletionEncoder::new(
            completion_id(e.request_id),
            unix_now(),
            e.model.to_owned(),
            e.options.include_usage,
        )))
    }
}

/// `POST /v1/completions`.
#[utoipa::path(
    post,
    path = "/v1/completions",
    tag = "openai",
    operation_id = "createCompletion",
    summary = "Legacy text completion (OpenAI protocol)",
    description = "Prompt in, text out, whole or (with `stream: true`) as server-sent \
        `text_completion` chunks ending with `data: [DONE]`. The prompt is sent upstream as \
        one user message (a single-turn prompt where the vendor has one); `max_tokens` \
        defaults to 16. Several prompts, token-id prompts, `n`/`best_of` above 1, `echo`, \
        `logprobs`, `suffix` and `logit_bias` are refused with a 400 naming the field.",
    request_body(content = crate::ingress::completions::request::CompletionRequest, content_type = "application/json",
        examples(
            ("answer" = (summary = "A whole answer", value = json!({"model": "gpt-4o-mini", "prompt": "Say this is a test", "max_tokens": 7}))),
            ("stream" = (summary = "A stream with usage", value = json!({"model": "gpt-4o-mini", "prompt": "Say this is a test", "stream": true, "stream_options": {"include_usage": true}}))),
        )),
    responses(
        (status = 200, description = "The completion: JSON, or with `stream: true` an event stream of `text_completion` chunks ending with `data: [DONE]`.",
            content(
                (crate::ingress::completions::response::TextCompletion = "application/json"),
                (crate::openapi::CompletionStreamEvent = "text/event-stream"),
            )),
        crate::openapi::OpenAiModelErrors,
    ),
    security(("client_key" = []))
)]
pub async fn completions(call: Call) -> Response {
    call.serve::<Chat, Completions>().await
}
