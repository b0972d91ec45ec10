//! The Gemini dialect: `POST /v1beta/models/{model}:generateContent`, `:streamGenerateContent`
//! (`?alt=sse` server-sent events, or one JSON array written as it comes without it) and
//! `:countTokens`, decoded into core types and encoded back; errors in Google's envelope
//! `{"error":{"code","message","status"}}`. The key comes as `x-goog-api-key` or `?key=` (or any
//! form [`crate::auth`] reads). The model and the method are in the path: one router row takes
//! `/v1beta/models/*` and [`models()`] hands each method to its endpoint; the decoder reads the
//! model (percent-decoded, bounded, validated) from the same path.

use axum::extract::Path;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::Json;
use llmux_core::{ChatRequest, ChatResponse, ErrorKind};

use super::{Decoded, Dialect, Egress, StreamEncoder};
use crate::error::{ApiError, ErrorEnvelope};
use crate::pipeline::{Call, Chat};

pub mod error;
pub mod models;
pub mod request;
pub mod response;
pub mod stream;

pub use error::{GeminiEnvelope, GoogleError};
pub use request::{decode_count, decode_generate, parse_target, Method};
pub use response::{encode_generate, CountTokensResponse, GenerateContentResponse};
pub use stream::ChunkEncoder;

/// The path prefix of the Gemini API's model methods.
pub const PREFIX: &str = "/v1beta/models/";

/// The same methods under `v1`, the google-genai SDK's default API version (`POST` on
/// `/v1/models/{model}:method`; `GET /v1/models/{id}` stays OpenAI's model lookup).
pub const V1_PREFIX: &str = "/v1/models/";

/// The Gemini dialect.
#[derive(Debug)]
pub struct Gemini;

/// How the answer is shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GeminiOptions {
    /// `?alt=sse`: a stream of `data:` events (else a streamed JSON array).
    pub sse: bool,
    /// `thinkingConfig.includeThoughts`: thoughts come back as `thought` parts.
    pub include_thoughts: bool,
}

/// The model and the method a request's path names.
fn target(head: &Parts) -> Result<(String, Method), ApiError> {
    let rest = head
        .uri
        .path()
        .strip_prefix(PREFIX)
        .or_else(|| head.uri.path().strip_prefix(V1_PREFIX))
        .ok_or_else(|| ApiError::new(ErrorKind::NotFound, "Not a Gemini model method."))?;
    let rest = percent_encoding::percent_decode_str(rest)
        .decode_utf8()
        .map_err(|_| {
            ApiError::invalid("the model name in the URL is not valid UTF-8").param("model")
        })?;
    let (model, method) = parse_target(&rest)?;
    Ok((model.to_owned(), method))
}

/// `alt` of the query: `sse` for server-sent events; `json` (the default) for a JSON array.
fn wants_sse(query: Option<&str>) -> Result<bool, ApiError> {
    let alt = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| pair.strip_prefix("alt="));
    match alt {
        None | Some("json" | "") => Ok(false),
        Some("sse") => Ok(true),
        Some(_) => Err(ApiError::invalid("`alt` must be `sse` or `json`").param("alt")),
    }
}

impl Dialect<Chat> for Gemini {
    const ENVELOPE: &'static dyn ErrorEnvelope = &GeminiEnvelope;
    type Options = GeminiOptions;
    type Body = GenerateContentResponse;

    fn decode(head: &Parts, body: &[u8]) -> Result<Decoded<ChatRequest, GeminiOptions>, ApiError> {
        let (model, method) = target(head)?;
        let stream = match method {
            Method::Generate => false,
            Method::Stream => true,
            Method::CountTokens => {
                return Err(ApiError::new(
                    ErrorKind::Internal,
                    "countTokens is not a generation",
                ))
            }
        };
        let sse = wants_sse(head.uri.query())?;
        let (request, include_thoughts) = decode_generate(&model, body)?;
        let options = GeminiOptions {
            sse,
            include_thoughts,
        };
        Ok(Decoded::new(request, options, stream))
    }

    fn encode(
        answer: &ChatResponse,
        e: &Egress<'_, GeminiOptions>,
    ) -> Result<GenerateContentResponse, ApiError> {
        Ok(encode_generate(
            answer,
            e.model,
            e.request_id,
            e.options.include_thoughts,
        ))
    }

    fn stream_encoder(e: &Egress<'_, GeminiOptions>) -> Option<Box<dyn StreamEncoder>> {
        Some(Box::new(ChunkEncoder::new(
            e.options.sse,
            e.options.include_thoughts,
            e.model.to_owned(),
            e.request_id.to_owned(),
        )))
    }
}

/// `POST /v1beta/models/{*}` (and `POST /v1/models/{*}`): each method to its endpoint; an unknown method or a bad model
/// name is answered (after the key is checked) in Google's envelope.
pub async fn models(Path(rest): Path<String>, call: Call) -> Response {
    match parse_target(&rest) {
        Ok((_, Method::Generate)) => generate_content(call).await,
        Ok((_, Method::Stream)) => stream_generate_content(call).await,
        Ok((_, Method::CountTokens)) => count_tokens(call).await,
        Err(e) => call.refuse(&GeminiEnvelope, e).await,
    }
}

/// `POST /v1beta/models/{model}:generateContent`.
#[utoipa::path(
    post,
    path = "/v1beta/models/{model}:generateContent",
    tag = "gemini",
    operation_id = "geminiGenerateContent",
    summary = "Generate content (Gemini protocol)",
    description = "A whole answer: one candidate with text, thought (with \
        `thinkingConfig.includeThoughts`) and `functionCall` parts, its `finishReason` and \
        `usageMetadata`. Any upstream serves it: fields that cannot be carried to another vendor \
        are refused with a 400 naming them (see docs/dialects.md).",
    params(("model" = String, Path, description = "The public model name (at most 256 bytes; no spaces, control characters or `:?#%\\`).", example = "gpt-4o-mini")),
    request_body(content = crate::ingress::gemini::request::GenerateContentRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The answer.", body = crate::ingress::gemini::GenerateContentResponse),
        crate::ingress::gemini::error::GeminiModelErrors,
    ),
    security(("client_key" = []), ("goog_api_key" = []))
)]
pub async fn generate_content(call: Call) -> Response {
    call.serve::<Chat, Gemini>().await
}

/// `POST /v1beta/models/{model}:streamGenerateContent`.
#[utoipa::path(
    post,
    path = "/v1beta/models/{model}:streamGenerateContent",
    tag = "gemini",
    operation_id = "geminiStreamGenerateContent",
    summary = "Stream generated content (Gemini protocol)",
    description = "The answer in chunks, each a `GenerateContentResponse` with what is new: \
        with `alt=sse` as `data:` events, without it as one JSON array written as it comes. \
        Function calls come whole in the last chunk, with the `finishReason` and the \
        `usageMetadata`. Failover happens before the first chunk; after it, an upstream error \
        is a last chunk holding a `GoogleError`.",
    params(
        ("model" = String, Path, description = "The public model name.", example = "gpt-4o-mini"),
        ("alt" = Option<String>, Query, description = "`sse` for server-sent events; `json` (the default) for a JSON array."),
    ),
    request_body(content = crate::ingress::gemini::request::GenerateContentRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The chunks.",
            content(
                (crate::openapi::GeminiStreamEvent = "text/event-stream"),
                (Vec<crate::ingress::gemini::GenerateContentResponse> = "application/json"),
            )),
        crate::ingress::gemini::error::GeminiModelErrors,
    ),
    security(("client_key" = []), ("goog_api_key" = []))
)]
pub async fn stream_generate_content(call: Call) -> Response {
    call.serve::<Chat, Gemini>().await
}

fn decode_count_head(head: &Parts, body: &[u8]) -> Result<ChatRequest, ApiError> {
    let (model, _) = target(head)?;
    decode_count(&model, body)
}

fn model_of(req: &ChatRequest) -> &str {
    &req.model
}

/// `POST /v1beta/models/{model}:countTokens`.
#[utoipa::path(
    post,
    path = "/v1beta/models/{model}:countTokens",
    tag = "gemini",
    operation_id = "geminiCountTokens",
    summary = "Count a prompt's tokens (Gemini protocol)",
    description = "The gateway's estimate of the prompt tokens of `contents` (or of a whole \
        `generateContentRequest`: system instruction and function declarations included), the \
        same estimate as Anthropic's `count_tokens`, not a vendor tokenizer's count. No upstream \
        is called, no usage is recorded and no limit is charged; the key and the model are \
        checked.",
    params(("model" = String, Path, description = "The public model name.", example = "gpt-4o-mini")),
    request_body(content = crate::ingress::gemini::request::CountTokensRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The estimate.", body = crate::ingress::gemini::CountTokensResponse),
        crate::ingress::gemini::error::GeminiCheckErrors,
    ),
    security(("client_key" = []), ("goog_api_key" = []))
)]
pub async fn count_tokens(call: Call) -> Response {
    match call
        .check(&GeminiEnvelope, decode_count_head, model_of)
        .await
    {
        Ok(req) => Json(CountTokensResponse {
            total_tokens: crate::ingress::anthropic::count_tokens_of(&req),
        })
        .into_response(),
        Err(resp) => resp,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn head(uri: &str) -> Parts {
        http::Request::post(uri).body(()).unwrap().into_parts().0
    }

    const BODY: &[u8] = br#"{"contents":[{"parts":[{"text":"hi"}]}]}"#;

    #[test]
    fn the_path_names_the_model_and_the_query_the_framing() {
        let d = <Gemini as Dialect<Chat>>::decode(
            &head("/v1beta/models/dashscope%2Fqwen-plus:streamGenerateContent?alt=sse&key=k"),
            BODY,
        )
        .unwrap();
        assert_eq!(d.request.model, "dashscope/qwen-plus");
        assert!(d.stream && d.options.sse && !d.options.include_thoughts);
        let d = <Gemini as Dialect<Chat>>::decode(
            &head("/v1beta/models/m:streamGenerateContent"),
            BODY,
        )
        .unwrap();
        assert!(d.stream && !d.options.sse);
        let d = <Gemini as Dialect<Chat>>::decode(&head("/v1beta/models/m:generateContent"), BODY)
            .unwrap();
        assert!(!d.stream);
        let e = <Gemini as Dialect<Chat>>::decode(
            &head("/v1beta/models/m:generateContent?alt=xml"),
            BODY,
        )
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("alt"));
        let e =
            <Gemini as Dialect<Chat>>::decode(&head("/v1beta/models/%FF%FE:generateContent"), BODY)
                .unwrap_err();
        assert!(e.message.contains("UTF-8"), "{}", e.message);
        let e =
            <Gemini as Dialect<Chat>>::decode(&head("/v1beta/models/a%20b:generateContent"), BODY)
                .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("model"));
    }

    #[test]
    fn count_tokens_reads_the_model_from_the_path() {
        let req = decode_count_head(&head("/v1beta/models/qwen-plus:countTokens"), BODY).unwrap();
        assert_eq!(req.model, "qwen-plus");
    }
}
