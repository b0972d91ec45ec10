//! The gateway's OpenAPI 3.1 description, generated from the code: the request types the
//! parsers deserialize into, the response types the handlers serialize, and the
//! `#[utoipa::path]` annotation on every handler. [`spec_json`] builds it once per process and
//! `GET /openapi.json` ([`openapi_json`]) answers it without auth.
//!
//! A copy is kept in the repository (`crates/llmux-gateway/openapi.json`); the `openapi` test
//! fails when the two differ (`UPDATE_OPENAPI=1 cargo test -p llmux-gateway --test openapi`
//! rewrites it), and the `openapi_schemathesis` test runs schemathesis against a live gateway
//! with it.

use std::sync::OnceLock;

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{Object, ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::RefOr;
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};

use crate::ingress::dashscope::DashScopeError;
use crate::ingress::openai::OpenAiError;

/// DashScope's multimodal generation path: the same handler and body as text generation.
const MULTIMODAL: &str = "/api/v1/services/aigc/multimodal-generation/generation";
const TEXT_GENERATION: &str = "/api/v1/services/aigc/text-generation/generation";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "llmux gateway",
        description = "OpenAI- (Chat and Responses), Anthropic-, Gemini- and DashScope-compatible ingress over many model \
            providers, with virtual keys, limits, failover and usage accounting. `/v1/*` speaks \
            the OpenAI protocol (errors as `{\"error\":{…}}`), `/v1/messages*` Anthropic's \
            Messages protocol (errors as `{\"type\":\"error\",\"error\":{…}}`), `/v1beta/*` the \
            Gemini API's (errors as `{\"error\":{\"code\",\"message\",\"status\"}}`), `/api/v1/*` \
            DashScope's (errors as `{\"code\",\"message\",\"request_id\"}`), `/admin/*` is the \
            admin API (errors in the OpenAI envelope). Every response carries `x-request-id`.",
        license(name = "MIT OR Apache-2.0", identifier = "MIT OR Apache-2.0"),
    ),
    paths(
        crate::ingress::openai::chat,
        crate::ingress::openai::embeddings,
        crate::ingress::completions::completions,
        crate::ingress::anthropic::messages,
        crate::ingress::anthropic::count_tokens,
        crate::ingress::responses::create,
        crate::ingress::responses::retrieve,
        crate::ingress::gemini::generate_content,
        crate::ingress::gemini::stream_generate_content,
        crate::ingress::gemini::count_tokens,
        crate::ingress::gemini::models::list,
        crate::ingress::gemini::models::get,
        crate::routes::models::list,
        crate::routes::models::one,
        crate::ingress::dashscope::generation,
        crate::ingress::dashscope::text_embedding,
        crate::routes::health::healthz,
        crate::routes::health::readyz,
        crate::routes::health::metrics,
        crate::routes::admin::channels,
        crate::routes::admin::enable_channel,
        crate::routes::channels::create_channel,
        crate::routes::channels::update_channel,
        crate::routes::channels::delete_channel,
        crate::routes::channels::test_channel,
        crate::routes::channels::discover_channel,
        crate::routes::admin::list_keys,
        crate::routes::admin::create_key,
        crate::routes::admin::update_key,
        crate::routes::admin::revoke_key,
        crate::routes::teams::list_teams,
        crate::routes::teams::create_team,
        crate::routes::teams::get_team,
        crate::routes::teams::update_team,
        crate::routes::teams::delete_team,
        crate::routes::admin::usage,
        crate::routes::admin::records,
        crate::routes::prices::list,
        crate::routes::prices::set,
        crate::routes::prices::delete,
        crate::routes::admin::usage_series,
        crate::routes::dashboard::index,
        crate::routes::dashboard::app_js,
        crate::routes::dashboard::style,
        openapi_json,
    ),
    components(schemas(
        crate::ingress::openai::stream::Chunk,
        crate::ingress::openai::OpenAiError,
        crate::ingress::dashscope::DashScopeError,
        crate::ingress::anthropic::AnthropicError,
        crate::ingress::anthropic::stream::MessageStreamEvent,
        crate::ingress::gemini::GoogleError,
    )),
    modifiers(&Gateway),
    tags(
        (name = "openai", description = "The OpenAI protocol: chat completions, embeddings, models."),
        (name = "anthropic", description = "Anthropic's Messages protocol: messages and token counts."),
        (name = "gemini", description = "The Gemini API's protocol: generateContent, streamGenerateContent, countTokens, models."),
        (name = "dashscope", description = "DashScope's native protocol: generation and embeddings."),
        (name = "admin", description = "The admin API, behind `server.admin_key`."),
        (name = "dashboard", description = "The web dashboard's static files (on when `server.admin_key` is set)."),
        (name = "operations", description = "Health, readiness, metrics and this description."),
    ),
)]
struct ApiDoc;

/// Security schemes, and the multimodal path (same handler as text generation).
struct Gateway;

impl Modify for Gateway {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "client_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A client key: one of `server.api_keys`, or a virtual key \
                         (`sk-llmux-…`) made through the admin API.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "x-api-key",
                "A client key, as Anthropic's SDKs send it (`x-goog-api-key` and the `key` \
                 query parameter are accepted too).",
            ))),
        );
        components.add_security_scheme(
            "goog_api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "x-goog-api-key",
                "A client key, as Google's SDKs send it (or as the `key` query parameter).",
            ))),
        );
        components.add_security_scheme(
            "admin_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("`server.admin_key`."))
                    .build(),
            ),
        );
        let text = api.paths.paths.get(TEXT_GENERATION).cloned();
        if let Some(mut item) = text {
            if let Some(op) = item.post.as_mut() {
                multimodal(op);
            }
            api.paths.paths.insert(MULTIMODAL.to_owned(), item);
        }
    }
}

fn multimodal(op: &mut Operation) {
    op.operation_id = Some("dashscopeMultimodalGeneration".to_owned());
    op.summary = Some("Multimodal generation (DashScope protocol)".to_owned());
    op.description = Some(
        "The same as text generation: `input.messages` content may hold `{\"image\": url}` \
         and `{\"text\": …}` parts."
            .to_owned(),
    );
}

fn string(description: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::String))
        .description(Some(description))
        .build()
}

/// The errors every model endpoint of the OpenAI dialect may answer (chat, embeddings).
#[derive(Debug, utoipa::IntoResponses)]
pub enum OpenAiModelErrors {
    /// 400.
    #[response(
        status = 400,
        description = "Invalid or unsupported request (the message and `param` name the field)."
    )]
    Invalid(OpenAiError),
    /// 401.
    #[response(
        status = 401,
        description = "No API key, or an unknown, revoked or expired one."
    )]
    Unauthorized(OpenAiError),
    /// 403.
    #[response(status = 403, description = "The key may not use this model.")]
    Forbidden(OpenAiError),
    /// 404.
    #[response(status = 404, description = "No such model here.")]
    UnknownModel(OpenAiError),
    /// 413.
    #[response(
        status = 413,
        description = "The body is over `server.max_body_bytes`."
    )]
    TooLarge(OpenAiError),
    /// 429.
    #[response(
        status = 429,
        description = "Over the key's RPM or TPM (with `Retry-After`), or over its budget (`insufficient_quota`)."
    )]
    Limited(OpenAiError),
    /// 500.
    #[response(status = 500, description = "A gateway fault.")]
    Fault(OpenAiError),
    /// 502.
    #[response(
        status = 502,
        description = "Every upstream tried failed or answered badly."
    )]
    Upstream(OpenAiError),
    /// 503.
    #[response(
        status = 503,
        description = "Every upstream's breaker is open, or usage accounting or the key store is unavailable (with `Retry-After` when known)."
    )]
    Unavailable(OpenAiError),
    /// 504.
    #[response(status = 504, description = "The upstream timed out.")]
    Timeout(OpenAiError),
}

/// The errors of the admin key every admin endpoint may answer, besides its own.
#[derive(Debug, utoipa::IntoResponses)]
pub enum AdminErrors {
    /// 401.
    #[response(status = 401, description = "Missing or wrong admin key.")]
    Unauthorized(OpenAiError),
    /// 403.
    #[response(
        status = 403,
        description = "The admin API is off (no `server.admin_key`)."
    )]
    Off(OpenAiError),
}

/// The store's failure, which every admin endpoint that reads or writes the database may answer
/// besides [`AdminErrors`] and its own.
#[derive(Debug, utoipa::IntoResponses)]
pub enum StoreFailed {
    /// 503.
    #[response(
        status = 503,
        description = "The store failed (details in the gateway's log)."
    )]
    StoreFailed(OpenAiError),
}

/// The errors every model endpoint of the DashScope dialect may answer.
#[derive(Debug, utoipa::IntoResponses)]
pub enum DashScopeModelErrors {
    /// 400.
    #[response(status = 400, description = "Invalid or unsupported request.")]
    Invalid(DashScopeError),
    /// 401.
    #[response(
        status = 401,
        description = "No API key, or an unknown, revoked or expired one."
    )]
    Unauthorized(DashScopeError),
    /// 403.
    #[response(status = 403, description = "The key may not use this model.")]
    Forbidden(DashScopeError),
    /// 404.
    #[response(status = 404, description = "No such model here.")]
    UnknownModel(DashScopeError),
    /// 413.
    #[response(
        status = 413,
        description = "The body is over `server.max_body_bytes`."
    )]
    TooLarge(DashScopeError),
    /// 429.
    #[response(
        status = 429,
        description = "Over the key's RPM or TPM (with `Retry-After`), or over its budget (`Throttling.AllocationQuota`)."
    )]
    Limited(DashScopeError),
    /// 500.
    #[response(status = 500, description = "A gateway fault.")]
    Fault(DashScopeError),
    /// 502.
    #[response(
        status = 502,
        description = "Every upstream tried failed or answered badly."
    )]
    Upstream(DashScopeError),
    /// 503.
    #[response(
        status = 503,
        description = "Every upstream's breaker is open, or usage accounting or the key store is unavailable (with `Retry-After` when known)."
    )]
    Unavailable(DashScopeError),
    /// 504.
    #[response(status = 504, description = "The upstream timed out.")]
    Timeout(DashScopeError),
}

/// One event of an OpenAI chat stream, as an SSE parser reads it.
#[derive(Debug)]
pub struct OpenAiStreamEvent;

impl PartialSchema for OpenAiStreamEvent {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .description(Some(
                "One server-sent event of an OpenAI chat stream. `data` is a JSON \
                 `ChatCompletionChunk` (see components), a JSON `OpenAiError` for a failure \
                 after the first chunk, or `[DONE]` last. `: ping` comments keep an idle \
                 stream alive.",
            ))
            .property(
                "data",
                string("A `ChatCompletionChunk` or an `OpenAiError` as JSON, or `[DONE]`."),
            )
            .required("data")
            .property("event", string("Not sent (the SSE default, `message`)."))
            .into()
    }
}

impl ToSchema for OpenAiStreamEvent {}

/// One event of a DashScope stream, as an SSE parser reads it.
#[derive(Debug)]
pub struct DashScopeStreamEvent;

impl PartialSchema for DashScopeStreamEvent {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .description(Some(
                "One server-sent event of a DashScope stream: `id:N`, `event:result` with a \
                 JSON `GenerationResponse` in `data` (`finish_reason` is the string `null` \
                 until the last frame), or `event:error` with a JSON `DashScopeError` for a \
                 failure after the first frame; each frame carries a `:HTTP_STATUS/N` comment.",
            ))
            .property(
                "data",
                string("A `GenerationResponse` or a `DashScopeError`, as JSON."),
            )
            .required("data")
            .property(
                "event",
                ObjectBuilder::new()
                    .schema_type(SchemaType::Type(Type::String))
                    .enum_values(Some(["result", "error"])),
            )
            .required("event")
            .property("id", string("The frame's sequence number, from 1."))
            .into()
    }
}

impl ToSchema for DashScopeStreamEvent {}

/// One event of an Anthropic Messages stream, as an SSE parser reads it.
#[derive(Debug)]
pub struct AnthropicStreamEvent;

impl PartialSchema for AnthropicStreamEvent {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .description(Some(
                "One server-sent event of a Messages stream: `event` names it and `data` is \
                 the JSON `MessageStreamEvent` of that `type` (see components): \
                 `message_start`, then per content block `content_block_start`, \
                 `content_block_delta`s and `content_block_stop`, `message_delta` with the stop \
                 reason and usage, `message_stop`; `ping` events keep an idle stream alive, and \
                 an upstream failure after the start is a last `error` event holding an \
                 `AnthropicError`.",
            ))
            .property(
                "data",
                string("A `MessageStreamEvent` or an `AnthropicError`, as JSON."),
            )
            .required("data")
            .property(
                "event",
                ObjectBuilder::new()
                    .schema_type(SchemaType::Type(Type::String))
                    .enum_values(Some([
                        "message_start",
                        "content_block_start",
                        "ping",
                        "content_block_delta",
                        "content_block_stop",
                        "message_delta",
                        "message_stop",
                        "error",
                    ])),
            )
            .required("event")
            .into()
    }
}

impl ToSchema for AnthropicStreamEvent {}

/// One event of a legacy completion stream, as an SSE parser reads it.
#[derive(Debug)]
pub struct CompletionStreamEvent;

impl PartialSchema for CompletionStreamEvent {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .description(Some(
                "One server-sent event of a legacy completion stream. `data` is a JSON \
                 `TextCompletion` chunk (the new text in `choices[0].text`), a chunk with \
                 `choices: []` and the usage last with `stream_options.include_usage`, a JSON \
                 `OpenAiError` for a failure after the first chunk, or `[DONE]` last.",
            ))
            .property(
                "data",
                string("A `TextCompletion` or an `OpenAiError` as JSON, or `[DONE]`."),
            )
            .required("data")
            .into()
    }
}

impl ToSchema for CompletionStreamEvent {}

/// `GET /openapi.json`: this description.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    operation_id = "openapi",
    summary = "This OpenAPI 3.1 description (no auth)",
    responses(
        (status = 200, description = "The description.", content((Object = "application/json"))),
    )
)]
pub async fn openapi_json() -> Response {
    let mut resp = spec_json().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// The description as a value.
pub fn spec() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The description, pretty-printed JSON with a final newline, built once per process.
pub fn spec_json() -> &'static str {
    static SPEC: OnceLock<String> = OnceLock::new();
    SPEC.get_or_init(|| match spec().to_pretty_json() {
        Ok(mut s) => {
            s.push('\n');
            s
        }
        Err(e) => {
            tracing::error!(error = %e, "the OpenAPI description could not be serialized");
            String::from("{}")
        }
    })
}

/// One event of a Responses stream, as an SSE parser reads it.
#[derive(Debug)]
pub struct ResponsesStreamEvent;

impl PartialSchema for ResponsesStreamEvent {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .description(Some(
                "One server-sent event of a Responses stream: `event` names its type and `data` \
                 is a JSON object with the same `type` and a `sequence_number` counting from 0 \
                 (`response.created`, `response.in_progress`, `response.output_item.added`, \
                 `response.content_part.added`, `response.output_text.delta`, \
                 `response.reasoning_text.delta`, `response.function_call_arguments.delta`, their \
                 `.done` events, `response.output_item.done`, then `response.completed` or \
                 `response.incomplete` with the whole `ResponseObject`; `error` and \
                 `response.failed` for a failure after the start). `: ping` comments keep an \
                 idle stream alive.",
            ))
            .property("event", string("The event's type."))
            .required("event")
            .property("data", string("The event, as JSON."))
            .required("data")
            .into()
    }
}

impl ToSchema for ResponsesStreamEvent {}

/// One event of a Gemini stream with `alt=sse`, as an SSE parser reads it.
#[derive(Debug)]
pub struct GeminiStreamEvent;

impl PartialSchema for GeminiStreamEvent {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .description(Some(
                "One server-sent event of a Gemini stream (`alt=sse`): `data` is a JSON \
                 `GeminiGenerateContentResponse` holding what is new (the last one carries the \
                 `finishReason`, the function calls and the `usageMetadata`), or a JSON \
                 `GoogleError` for a failure after the first chunk. No comments are sent.",
            ))
            .property(
                "data",
                string("A `GeminiGenerateContentResponse` or a `GoogleError`, as JSON."),
            )
            .required("data")
            .into()
    }
}

impl ToSchema for GeminiStreamEvent {}
