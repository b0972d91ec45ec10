//! The OpenAI dialect (PROTOCOLS §2): `POST /v1/chat/completions` (whole answers and
//! `chat.completion.chunk` streams) and `POST /v1/embeddings` (float or base64), decoded into
//! core types and encoded back; its endpoints are declared here.

use axum::http::request::Parts;
use axum::response::Response;
use bytes::Bytes;
use llmux_core::{ChatRequest, ChatResponse, EmbeddingRequest, EmbeddingResponse, StreamEvent};

use super::{Decoded, Dialect, Egress, StreamEncoder};
use crate::error::{ApiError, ErrorEnvelope};
use crate::pipeline::{Call, Chat, Embed};
use crate::state::unix_now;

pub mod embeddings;
pub mod error;
pub mod request;
pub mod response;
pub mod stream;

pub use embeddings::{decode_embeddings, encode_embeddings, EncodingFormat};
pub use error::{OpenAiEnvelope, OpenAiError};
pub use request::{decode_chat, ChatOptions};
pub use response::encode_chat;
pub use stream::ChunkEncoder;

/// The OpenAI dialect.
#[derive(Debug)]
pub struct OpenAi;

impl Dialect<Chat> for OpenAi {
    const ENVELOPE: &'static dyn ErrorEnvelope = &OpenAiEnvelope;
    type Options = ChatOptions;
    type Body = response::ChatCompletion;

    fn decode(_head: &Parts, body: &[u8]) -> Result<Decoded<ChatRequest, ChatOptions>, ApiError> {
        let (request, options) = decode_chat(body)?;
        Ok(Decoded::new(request, options, options.stream))
    }

    fn encode(
        answer: &ChatResponse,
        e: &Egress<'_, ChatOptions>,
    ) -> Result<response::ChatCompletion, ApiError> {
        Ok(encode_chat(
            answer,
            &completion_id(e.request_id),
            unix_now(),
            e.model,
        ))
    }

    fn write_body(body: &response::ChatCompletion, out: &mut Vec<u8>) -> serde_json::Result<()> {
        body.write_json(out)
    }

    fn stream_encoder(e: &Egress<'_, ChatOptions>) -> Option<Box<dyn StreamEncoder>> {
        Some(Box::new(ChunkEncoder::new(
            completion_id(e.request_id),
            unix_now(),
            e.model.to_owned(),
            e.options.include_usage,
        )))
    }
}

impl Dialect<Embed> for OpenAi {
    const ENVELOPE: &'static dyn ErrorEnvelope = &OpenAiEnvelope;
    type Options = EncodingFormat;
    type Body = embeddings::EmbeddingList;

    fn decode(
        _head: &Parts,
        body: &[u8],
    ) -> Result<Decoded<EmbeddingRequest, EncodingFormat>, ApiError> {
        let (request, options) = decode_embeddings(body)?;
        Ok(Decoded {
            request,
            options,
            stream: false,
        })
    }

    fn encode(
        answer: &EmbeddingResponse,
        e: &Egress<'_, EncodingFormat>,
    ) -> Result<embeddings::EmbeddingList, ApiError> {
        Ok(encode_embeddings(answer, e.model, *e.options))
    }
}

impl StreamEncoder for ChunkEncoder {
    fn content_type(&self) -> &'static str {
        "text/event-stream"
    }

    fn keepalive(&self) -> bool {
        true
    }

    fn push(&mut self, ev: &StreamEvent, out: &mut Vec<Bytes>) {
        ChunkEncoder::push(self, ev, out);
    }

    fn error(&mut self, err: &ApiError) -> Bytes {
        ChunkEncoder::error(self, err)
    }
}

/// The OpenAI completion id for a request id: `chatcmpl-` and the id's hex digits.
pub fn completion_id(rid: &str) -> String {
    let mut s = String::with_capacity(9 + rid.len());
    s.push_str("chatcmpl-");
    s.extend(rid.chars().filter(|c| *c != '-'));
    s
}

/// `POST /v1/chat/completions`.
#[utoipa::path(
    post,
    path = "/v1/chat/completions",
    tag = "openai",
    operation_id = "createChatCompletion",
    summary = "Chat completion (OpenAI protocol)",
    description = "A chat completion, whole or (with `stream: true`) as server-sent events. \
        Failover to the next channel happens before the first byte; after it, an upstream error \
        is a last `data:` frame holding an error object.",
    request_body(content = crate::ingress::openai::request::ChatCompletionRequest, content_type = "application/json",
        examples(
            ("answer" = (summary = "A whole answer", value = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]}))),
            ("stream" = (summary = "A stream with usage", value = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}], "stream": true, "stream_options": {"include_usage": true}}))),
        )),
    responses(
        (status = 200, description = "The answer: JSON, or with `stream: true` an event stream of `chat.completion.chunk` frames ending with `data: [DONE]`.",
            content(
                (crate::ingress::openai::response::ChatCompletion = "application/json"),
                (crate::openapi::OpenAiStreamEvent = "text/event-stream"),
            )),
        crate::openapi::OpenAiModelErrors,
    ),
    security(("client_key" = []))
)]
pub async fn chat(call: Call) -> Response {
    call.serve::<Chat, OpenAi>().await
}

/// `POST /v1/embeddings`.
#[utoipa::path(
    post,
    path = "/v1/embeddings",
    tag = "openai",
    operation_id = "createEmbedding",
    summary = "Embeddings (OpenAI protocol)",
    request_body(content = crate::ingress::openai::embeddings::WireEmbeddingRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "One vector per input.", body = crate::ingress::openai::embeddings::EmbeddingList),
        crate::openapi::OpenAiModelErrors,
    ),
    security(("client_key" = []))
)]
pub async fn embeddings(call: Call) -> Response {
    call.serve::<Embed, OpenAi>().await
}

/// Parses JSON with the path of the first problem in the error (`messages[0].role: …`).
///
/// A body is parsed once without tracking its path, which costs about a third of the parse;
/// only a body that fails is parsed again, with the path tracked, to name where. Both parses
/// read the same bytes with the same rules, so the second meets the same first problem.
pub(crate) fn from_json<'a, T: serde::Deserialize<'a>>(
    body: &'a [u8],
) -> Result<T, crate::error::ApiError> {
    if let Ok(v) = T::deserialize(&mut serde_json::Deserializer::from_slice(body)) {
        return Ok(v);
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let msg = if inner.is_syntax() || inner.is_eof() {
            format!("the request body is not valid JSON: {inner}")
        } else if path == "." {
            format!("invalid request body: {inner}")
        } else {
            format!("invalid request body at `{path}`: {inner}")
        };
        let err = crate::error::ApiError::invalid(msg);
        if path == "." || inner.is_syntax() || inner.is_eof() {
            err
        } else {
            err.param(path)
        }
    })
}
