//! The OpenAI Responses dialect: `POST /v1/responses` (a whole Response object, or with
//! `stream: true` the `response.*` event stream), decoded into core types and encoded back;
//! errors in the OpenAI envelope. The gateway stores no responses: `GET /v1/responses/{id}`
//! (and the other stored-response operations) answer 404 saying so, and
//! `previous_response_id` is refused (docs/dialects.md).

use axum::http::request::Parts;
use axum::response::Response;
use llmux_core::{ChatRequest, ChatResponse, ErrorKind};

use super::{Decoded, Dialect, Egress, StreamEncoder};
use crate::error::{ApiError, ErrorEnvelope};
use crate::ingress::openai::OpenAiEnvelope;
use crate::pipeline::{Call, Chat};
use crate::state::unix_now;

pub mod request;
pub mod response;
pub mod stream;

pub use request::{decode_responses, thinking_for_effort, ResponsesOptions};
pub use response::{encode_response, ResponseObject};
pub use stream::EventEncoder;

/// The Responses dialect.
#[derive(Debug)]
pub struct Responses;

impl Dialect<Chat> for Responses {
    const ENVELOPE: &'static dyn ErrorEnvelope = &OpenAiEnvelope;
    type Options = ResponsesOptions;
    type Body = ResponseObject;

    fn decode(
        _head: &Parts,
        body: &[u8],
    ) -> Result<Decoded<ChatRequest, ResponsesOptions>, ApiError> {
        let (request, options) = decode_responses(body)?;
        let stream = options.stream;
        Ok(Decoded::new(request, options, stream))
    }

    fn encode(
        answer: &ChatResponse,
        e: &Egress<'_, ResponsesOptions>,
    ) -> Result<ResponseObject, ApiError> {
        let ids = response::Ids::new(e.request_id);
        Ok(encode_response(
            answer,
            &response::Shell {
                ids: &ids,
                created_at: unix_now(),
                model: e.model,
                options: e.options,
            },
        ))
    }

    fn stream_encoder(e: &Egress<'_, ResponsesOptions>) -> Option<Box<dyn StreamEncoder>> {
        Some(Box::new(EventEncoder::new(
            e.request_id,
            unix_now(),
            e.model.to_owned(),
            e.options.clone(),
        )))
    }
}

/// `POST /v1/responses`.
#[utoipa::path(
    post,
    path = "/v1/responses",
    tag = "openai",
    operation_id = "createResponse",
    summary = "Create a response (OpenAI Responses protocol)",
    description = "A response, whole or (with `stream: true`) as server-sent events: \
        `response.created`, `response.in_progress`, output items with their deltas, then \
        `response.completed` (or `response.incomplete`) with the whole Response and its usage. \
        Failover to the next channel happens before the first event; after it, an upstream error \
        is an `error` event followed by `response.failed`. Nothing is stored: \
        `previous_response_id` is refused with a 400.",
    request_body(content = crate::ingress::responses::request::CreateResponse, content_type = "application/json",
        examples(
            ("answer" = (summary = "A whole answer", value = json!({"model": "gpt-4o-mini", "input": "Hello", "instructions": "Be brief."}))),
            ("stream" = (summary = "A stream", value = json!({"model": "gpt-4o-mini", "input": [{"role": "user", "content": "Hello"}], "stream": true}))),
        )),
    responses(
        (status = 200, description = "The Response object: JSON, or with `stream: true` an event stream.",
            content(
                (crate::ingress::responses::ResponseObject = "application/json"),
                (crate::openapi::ResponsesStreamEvent = "text/event-stream"),
            )),
        crate::openapi::OpenAiModelErrors,
    ),
    security(("client_key" = []))
)]
pub async fn create(call: Call) -> Response {
    call.serve::<Chat, Responses>().await
}

/// `GET /v1/responses/{id}` (and `DELETE`, `POST …/cancel`, `GET …/input_items`): always 404,
/// since no response is stored; a bad key still gets its 401 first.
#[utoipa::path(
    get,
    path = "/v1/responses/{id}",
    tag = "openai",
    operation_id = "getResponse",
    summary = "Retrieve a response: always 404 (responses are not stored)",
    description = "This gateway stores no responses, so retrieving one (and deleting or \
        cancelling one, or listing its input items) answers 404 `response_not_found` to an \
        authenticated caller.",
    params(("id" = String, Path, description = "A response id.")),
    responses(
        (status = 404, description = "This gateway does not store responses.", body = crate::ingress::openai::OpenAiError),
        (status = 401, description = "No API key, or an unknown, revoked or expired one.", body = crate::ingress::openai::OpenAiError),
    ),
    security(("client_key" = []))
)]
pub async fn retrieve(call: Call) -> Response {
    call.refuse(&OpenAiEnvelope, not_stored()).await
}

/// The 404 of every stored-response operation.
pub fn not_stored() -> ApiError {
    ApiError::new(
        ErrorKind::NotFound,
        "This gateway does not store responses, so none can be retrieved, listed, cancelled or \
         deleted; keep the Response object from the answer.",
    )
    .with_code("response_not_found")
}
