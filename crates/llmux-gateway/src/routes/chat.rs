//! Chat on both ingresses: `POST /v1/chat/completions` and DashScope's text-generation path.
//!
//! Flow: authenticate → read the body (size limit) → parse into a core `ChatRequest` → plan
//! the channels → call them with failover. For streams the core returns only after the first
//! event, so failover happens before any byte reaches the client; the response head is sent
//! with that first event. After it, an error becomes the protocol's final error frame.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bytes::Bytes;
use futures::StreamExt;
use llmux_core::tokens::estimate_request;
use llmux_core::{ChatStream, ErrorKind, StreamEvent};
use tokio::time::Instant;

use super::{fail, failed, stamp_added_latency, GuardInit, RequestGuard};
use crate::app::{unix_now, AppState, RequestCtx};
use crate::dashscope_wire::{self, FrameEncoder, GenerationOptions};
use crate::error::{ApiError, DashScopeError, Ingress, OpenAiError};
use crate::openai_wire::{self, stream::PING, ChatOptions, ChunkEncoder};

/// How the answer is shaped.
#[derive(Debug, Clone, Copy)]
enum Shape {
    OpenAi(ChatOptions),
    DashScope(GenerationOptions),
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
    request_body(content = crate::openai_wire::request::ChatCompletionRequest, content_type = "application/json",
        examples(
            ("answer" = (summary = "A whole answer", value = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]}))),
            ("stream" = (summary = "A stream with usage", value = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}], "stream": true, "stream_options": {"include_usage": true}}))),
        )),
    responses(
        (status = 200, description = "The answer: JSON, or with `stream: true` an event stream of `chat.completion.chunk` frames ending with `data: [DONE]`.",
            content(
                (crate::openai_wire::response::ChatCompletion = "application/json"),
                (crate::openapi::OpenAiStreamEvent = "text/event-stream"),
            )),
        (status = 400, description = "Invalid or unsupported request (the message and `param` name the field).", body = OpenAiError),
        (status = 401, description = "No API key, or an unknown, revoked or expired one.", body = OpenAiError),
        (status = 403, description = "The key may not use this model.", body = OpenAiError),
        (status = 404, description = "No such model here.", body = OpenAiError),
        (status = 413, description = "The body is over `server.max_body_bytes`.", body = OpenAiError),
        (status = 429, description = "Over the key's RPM or TPM (with `Retry-After`), or over its budget (`insufficient_quota`).", body = OpenAiError),
        (status = 500, description = "A gateway fault.", body = OpenAiError),
        (status = 502, description = "Every upstream tried failed or answered badly.", body = OpenAiError),
        (status = 503, description = "Every upstream's breaker is open, or usage accounting or the key store is unavailable (with `Retry-After` when known).", body = OpenAiError),
        (status = 504, description = "The upstream timed out.", body = OpenAiError),
    ),
    security(("client_key" = []))
)]
pub async fn openai(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestCtx>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    Box::pin(handle(state, ctx, headers, body, Ingress::OpenAi)).await
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
    request_body(content = crate::dashscope_wire::request::GenerationRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The answer: JSON, or with `X-DashScope-SSE: enable` an event stream.",
            content(
                (crate::dashscope_wire::response::GenerationResponse = "application/json"),
                (crate::openapi::DashScopeStreamEvent = "text/event-stream"),
            )),
        (status = 400, description = "Invalid or unsupported request.", body = DashScopeError),
        (status = 401, description = "No API key, or an unknown, revoked or expired one.", body = DashScopeError),
        (status = 403, description = "The key may not use this model.", body = DashScopeError),
        (status = 404, description = "No such model here.", body = DashScopeError),
        (status = 413, description = "The body is over `server.max_body_bytes`.", body = DashScopeError),
        (status = 429, description = "Over the key's RPM or TPM (with `Retry-After`), or over its budget (`Throttling.AllocationQuota`).", body = DashScopeError),
        (status = 500, description = "A gateway fault.", body = DashScopeError),
        (status = 502, description = "Every upstream tried failed or answered badly.", body = DashScopeError),
        (status = 503, description = "Every upstream's breaker is open, or usage accounting or the key store is unavailable (with `Retry-After` when known).", body = DashScopeError),
        (status = 504, description = "The upstream timed out.", body = DashScopeError),
    ),
    security(("client_key" = []))
)]
pub async fn dashscope(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestCtx>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    Box::pin(handle(state, ctx, headers, body, Ingress::DashScope)).await
}

fn wants_dashscope_sse(headers: &HeaderMap) -> bool {
    headers
        .get("x-dashscope-sse")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("enable"))
}

async fn handle(
    state: Arc<AppState>,
    ctx: RequestCtx,
    headers: HeaderMap,
    body: Body,
    ingress: Ingress,
) -> Response {
    let principal = match state.auth.authenticate(&headers).await {
        Ok(p) => p,
        Err(e) => return fail(e, ingress, &ctx, None),
    };
    let bytes = match super::read_body(body, &headers, state.server.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => return fail(e, ingress, &ctx, None),
    };
    let parsed = match ingress {
        Ingress::DashScope => {
            dashscope_wire::parse_generation(&bytes).map(|(r, o)| (r, Shape::DashScope(o)))
        }
        Ingress::OpenAi | Ingress::Admin => {
            openai_wire::parse_chat(&bytes).map(|(r, o)| (r, Shape::OpenAi(o)))
        }
    };
    let (req, shape) = match parsed {
        Ok(x) => x,
        Err(e) => return fail(e, ingress, &ctx, None),
    };
    drop(bytes);
    if let Err(e) = principal.allows(&req.model) {
        return fail(e, ingress, &ctx, None);
    }
    let Some(plan) = state.routes.plan(&req.model) else {
        return fail(ApiError::unknown_model(&req.model), ingress, &ctx, None);
    };
    let estimate = estimate_request(&req);
    let admission = match super::admit(&state, &principal, estimate).await {
        Ok(a) => a,
        Err(e) => return fail(e, ingress, &ctx, None),
    };
    let prompt_estimate = super::prompt_estimate(&req);
    let public_model = req.model.clone();
    let stream = match shape {
        Shape::OpenAi(o) => o.stream,
        Shape::DashScope(_) => wants_dashscope_sse(&headers),
    };
    let key_id = principal.key_id();
    let metrics = state.metrics.clone();
    let on_failover = |ch: &crate::config::Channel, err: &llmux_core::Error| {
        metrics
            .failovers
            .with_label_values(&[ch.provider_id, &ch.name, err.kind().as_str()])
            .inc();
    };
    let req = Arc::new(req);
    // From here on the request is accounted for: journaled (in `sync` durability) before the
    // first upstream call, and recorded exactly once however it ends.
    let mut guard = RequestGuard::begin(
        state.clone(),
        ctx.clone(),
        &plan,
        GuardInit {
            key_id,
            admission,
            stream,
            prompt_estimate,
            estimate,
        },
    )
    .await;

    if !stream {
        let routed = state
            .routes
            .failover(
                &plan,
                |ch, upstream| {
                    let req = Arc::clone(&req);
                    async move {
                        Box::pin(ch.client.chat_with(ch.provider.as_ref(), &upstream, &req)).await
                    }
                },
                on_failover,
            )
            .await;
        return match routed {
            Ok(r) => {
                guard.routed(&r.channel, r.upstream.clone());
                if let Some(u) = r.value.usage {
                    guard.usage(u);
                }
                let mut resp = match shape {
                    Shape::OpenAi(_) => Json(openai_wire::encode_chat(
                        &r.value,
                        &completion_id(&ctx.id),
                        unix_now(),
                        &public_model,
                    ))
                    .into_response(),
                    Shape::DashScope(o) => Json(dashscope_wire::encode_generation(
                        &r.value,
                        o.result_format,
                        &ctx.id,
                    ))
                    .into_response(),
                };
                stamp_added_latency(
                    &state,
                    &mut resp,
                    super::added_latency(&ctx, r.upstream_time),
                );
                guard.complete();
                // Durable before the client sees the answer.
                guard.finish().await;
                resp
            }
            Err(f) => failed(&state, &ctx, guard, f, ingress).await,
        };
    }

    let routed = state
        .routes
        .failover(
            &plan,
            |ch, upstream| {
                let req = Arc::clone(&req);
                async move {
                    Box::pin(ch.client.stream_with(ch.provider.as_ref(), &upstream, &req)).await
                }
            },
            on_failover,
        )
        .await;
    match routed {
        Ok(r) => {
            guard.routed(&r.channel, r.upstream.clone());
            guard.ttft(ctx.arrived.elapsed());
            let content_type = match shape {
                Shape::OpenAi(_) => "text/event-stream",
                Shape::DashScope(_) => "text/event-stream;charset=UTF-8",
            };
            let body = sse_body(
                state.clone(),
                &ctx,
                shape,
                &public_model,
                prompt_estimate,
                r.value,
                guard,
            );
            let mut resp = Response::new(Body::from_stream(body));
            let h = resp.headers_mut();
            h.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static(content_type),
            );
            h.insert(
                http::header::CACHE_CONTROL,
                HeaderValue::from_static("no-cache"),
            );
            h.insert("x-accel-buffering", HeaderValue::from_static("no"));
            stamp_added_latency(
                &state,
                &mut resp,
                super::added_latency(&ctx, r.upstream_time),
            );
            resp
        }
        Err(f) => failed(&state, &ctx, guard, f, ingress).await,
    }
}

/// The OpenAI completion id for a request id.
fn completion_id(rid: &str) -> String {
    let mut s = String::with_capacity(9 + rid.len());
    s.push_str("chatcmpl-");
    s.extend(rid.chars().filter(|c| *c != '-'));
    s
}

enum Encoder {
    OpenAi(ChunkEncoder),
    DashScope(FrameEncoder),
}

impl Encoder {
    fn push(&mut self, ev: &StreamEvent, out: &mut Vec<Bytes>) {
        match self {
            Encoder::OpenAi(e) => e.push(ev, out),
            Encoder::DashScope(e) => e.push(ev, out),
        }
    }

    fn error(&mut self, err: &ApiError) -> Bytes {
        match self {
            Encoder::OpenAi(e) => e.error(err),
            Encoder::DashScope(e) => e.error(err),
        }
    }
}

/// The response body of a stream: encoded events, keep-alive comments while the upstream is
/// idle (OpenAI ingress only: DashScope's SDK does not expect comments), and a final error
/// frame if the upstream fails after the first event. The record is committed before the
/// last frames (the finish, usage and `[DONE]` chunks, or the error frame) are yielded.
/// Dropping it (client gone) drops the upstream stream and the guard, which records the
/// request as cancelled.
fn sse_body(
    state: Arc<AppState>,
    ctx: &RequestCtx,
    shape: Shape,
    model: &str,
    prompt_estimate: u64,
    mut upstream: ChatStream,
    mut guard: RequestGuard,
) -> impl futures::Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    let (mut enc, keepalive) = match shape {
        Shape::OpenAi(o) => (
            Encoder::OpenAi(ChunkEncoder::new(
                completion_id(&ctx.id),
                unix_now(),
                model.to_owned(),
                o.include_usage,
            )),
            Some(state.server.keepalive),
        ),
        Shape::DashScope(o) => (
            Encoder::DashScope(
                FrameEncoder::new(o, ctx.id.to_string()).with_prompt_estimate(prompt_estimate),
            ),
            None,
        ),
    };
    async_stream::stream! {
        let period = keepalive.unwrap_or(std::time::Duration::from_secs(3600));
        let sleep = tokio::time::sleep(period);
        tokio::pin!(sleep);
        let mut out: Vec<Bytes> = Vec::with_capacity(4);
        loop {
            tokio::select! {
                biased;
                next = upstream.next() => {
                    match next {
                        Some(Ok(ev)) => {
                            guard.saw(&ev);
                            let done = matches!(ev, StreamEvent::Finished { .. });
                            enc.push(&ev, &mut out);
                            if done {
                                guard.complete();
                                guard.finish().await;
                            }
                            for b in out.drain(..) {
                                yield Ok(b);
                            }
                            if done {
                                break;
                            }
                            sleep.as_mut().reset(Instant::now() + period);
                        }
                        Some(Err(e)) => {
                            let api = ApiError::from_upstream(&e);
                            tracing::warn!(request_id = %guard.request_id(), kind = %e.kind(), error = %e, "the upstream failed mid-stream");
                            guard.fail(api.kind, false);
                            guard.finish().await;
                            yield Ok(enc.error(&api));
                            break;
                        }
                        None => {
                            let api = ApiError::new(
                                ErrorKind::UpstreamProtocol,
                                "the upstream stream ended before the answer was complete",
                            );
                            guard.fail(api.kind, false);
                            guard.finish().await;
                            yield Ok(enc.error(&api));
                            break;
                        }
                    }
                }
                () = &mut sleep, if keepalive.is_some() => {
                    yield Ok(Bytes::from_static(PING));
                    sleep.as_mut().reset(Instant::now() + period);
                }
            }
        }
        drop(state);
    }
}
