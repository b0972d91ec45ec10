//! The DashScope native dialect (PROTOCOLS §1): text generation (`text`/`message` result
//! formats; `X-DashScope-SSE` streams, incremental or cumulative) and native text embeddings,
//! decoded into core types and encoded back; its endpoints are declared here.

use axum::http::HeaderMap;
use axum::response::Response;
use bytes::Bytes;
use llmux_core::{ChatRequest, ChatResponse, EmbeddingRequest, EmbeddingResponse, StreamEvent};

use super::{Decoded, Dialect, Egress, StreamEncoder};
use crate::error::{ApiError, ErrorEnvelope};
use crate::pipeline::{Call, Chat, Embed};

pub mod embeddings;
pub mod error;
pub mod request;
pub mod response;
pub mod stream;

pub use embeddings::{decode_embeddings, encode_embeddings};
pub use error::{DashScopeEnvelope, DashScopeError};
pub use request::{decode_generation, GenerationOptions, ResultFormat};
pub use response::encode_generation;
pub use stream::FrameEncoder;

/// The DashScope dialect.
#[derive(Debug)]
pub struct DashScope;

/// `X-DashScope-SSE: enable` asks for a stream.
fn wants_sse(head: &HeaderMap) -> bool {
    head.get("x-dashscope-sse")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("enable"))
}

impl Dialect<Chat> for DashScope {
    const ENVELOPE: &'static dyn ErrorEnvelope = &DashScopeEnvelope;
    type Options = GenerationOptions;
    type Body = response::GenerationResponse;

    fn decode(
        head: &HeaderMap,
        body: &[u8],
    ) -> Result<Decoded<ChatRequest, GenerationOptions>, ApiError> {
        let (request, options) = decode_generation(body)?;
        Ok(Decoded {
            request,
            options,
            stream: wants_sse(head),
        })
    }

    fn encode(
        answer: &ChatResponse,
        e: &Egress<'_, GenerationOptions>,
    ) -> Result<response::GenerationResponse, ApiError> {
        Ok(encode_generation(
            answer,
            e.options.result_format,
            e.request_id,
        ))
    }

    fn stream_encoder(e: &Egress<'_, GenerationOptions>) -> Option<Box<dyn StreamEncoder>> {
        Some(Box::new(
            FrameEncoder::new(*e.options, e.request_id.to_owned())
                .with_prompt_estimate(e.prompt_estimate),
        ))
    }
}

impl Dialect<Embed> for DashScope {
    const ENVELOPE: &'static dyn ErrorEnvelope = &DashScopeEnvelope;
    type Options = ();
    type Body = embeddings::EmbeddingAnswer;

    fn decode(_head: &HeaderMap, body: &[u8]) -> Result<Decoded<EmbeddingRequest, ()>, ApiError> {
        Ok(Decoded {
            request: decode_embeddings(body)?,
            options: (),
            stream: false,
        })
    }

    fn encode(
        answer: &EmbeddingResponse,
        e: &Egress<'_, ()>,
    ) -> Result<embeddings::EmbeddingAnswer, ApiError> {
        Ok(encode_embeddings(answer, e.request_id))
    }
}

impl StreamEncoder for FrameEncoder {
    fn content_type(&self) -> &'static str {
        "text/event-stream;charset=UTF-8"
    }

    /// The dashscope SDK does not expect SSE comments.
    fn keepalive(&self) -> bool {
        false
    }

    fn push(&mut self, ev: &StreamEvent, out: &mut Vec<Bytes>) {
        FrameEncoder::push(self, ev, out);
    }

    fn error(&mut self, err: &ApiError) -> Bytes {
        FrameEncoder::error(self, err)
    }
}

/// `POST /api/v1/services/aigc/text-generation/generation` (and the multimodal path).
#[utoipa::path(
    post,
    path = "/api/v1/services/aigc/text-generation/generation",
    tag = "dashscope",
    operation_id = "dashscopeGeneration",
    summary = "Text generation (DashScope protocol)",
    description = "A generation, whole or (with `X-DashScope-SSE: enable`) as server-sent events: \
        `event:result` frames, cumulative unless `parameters.incremental_output` is true, and \
        an `event:error` frame if the upstream fails after the first one.",
    params(
        ("X-DashScope-SSE" = Option<String>, Header, description = "`enable` asks for a stream.", example = "enable"),
    ),
    request_body(content = crate::ingress::dashscope::request::GenerationRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The answer: JSON, or with `X-DashScope-SSE: enable` an event stream.",
            content(
                (crate::ingress::dashscope::response::GenerationResponse = "application/json"),
                (crate::openapi::DashScopeStreamEvent = "text/event-stream"),
            )),
        crate::openapi::DashScopeModelErrors,
    ),
    security(("client_key" = []))
)]
pub async fn generation(call: Call) -> Response {
    call.serve::<Chat, DashScope>().await
}

/// `POST /api/v1/services/embeddings/text-embedding/text-embedding`.
#[utoipa::path(
    post,
    path = "/api/v1/services/embeddings/text-embedding/text-embedding",
    tag = "dashscope",
    operation_id = "dashscopeTextEmbedding",
    summary = "Text embeddings (DashScope protocol)",
    request_body(content = crate::ingress::dashscope::embeddings::WireRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "One vector per text.", body = crate::ingress::dashscope::embeddings::EmbeddingAnswer),
        crate::openapi::DashScopeModelErrors,
    ),
    security(("client_key" = []))
)]
pub async fn text_embedding(call: Call) -> Response {
    call.serve::<Embed, DashScope>().await
}
