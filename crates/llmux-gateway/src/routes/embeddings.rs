//! Embeddings on both ingresses: `POST /v1/embeddings` (float or base64) and DashScope's
//! text-embedding path. Upstreams are always asked for floats; base64 is encoded here.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};

use super::{fail, failed, stamp_added_latency, GuardInit, RequestGuard};
use crate::app::{AppState, RequestCtx};
use crate::error::{ApiError, DashScopeError, Ingress, OpenAiError};
use crate::openai_wire::EncodingFormat;

/// `POST /v1/embeddings`.
#[utoipa::path(
    post,
    path = "/v1/embeddings",
    tag = "openai",
    operation_id = "createEmbedding",
    summary = "Embeddings (OpenAI protocol)",
    request_body(content = crate::openai_wire::embeddings::WireEmbeddingRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "One vector per input.", body = crate::openai_wire::embeddings::EmbeddingList),
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

/// `POST /api/v1/services/embeddings/text-embedding/text-embedding`.
#[utoipa::path(
    post,
    path = "/api/v1/services/embeddings/text-embedding/text-embedding",
    tag = "dashscope",
    operation_id = "dashscopeTextEmbedding",
    summary = "Text embeddings (DashScope protocol)",
    request_body(content = crate::dashscope_wire::embeddings::WireRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "One vector per text.", body = crate::dashscope_wire::embeddings::EmbeddingAnswer),
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
            crate::dashscope_wire::parse_embeddings(&bytes).map(|r| (r, EncodingFormat::Float))
        }
        Ingress::OpenAi | Ingress::Admin => crate::openai_wire::parse_embeddings(&bytes),
    };
    let (req, format) = match parsed {
        Ok(x) => x,
        Err(e) => return fail(e, ingress, &ctx, None),
    };
    if let Err(e) = principal.allows(&req.model) {
        return fail(e, ingress, &ctx, None);
    }
    let Some(plan) = state.routes.plan(&req.model) else {
        return fail(ApiError::unknown_model(&req.model), ingress, &ctx, None);
    };
    let prompt_estimate: u64 = req
        .input
        .iter()
        .map(|t| llmux_core::tokens::estimate_text(t))
        .sum();
    let admission = match super::admit(&state, &principal, prompt_estimate).await {
        Ok(a) => a,
        Err(e) => return fail(e, ingress, &ctx, None),
    };
    let public_model = req.model.clone();
    let req = Arc::new(req);
    let key_id = principal.key_id();
    let mut guard = RequestGuard::begin(
        state.clone(),
        ctx.clone(),
        &plan,
        GuardInit {
            key_id,
            admission,
            stream: false,
            prompt_estimate,
            estimate: prompt_estimate,
        },
    )
    .await;
    let metrics = state.metrics.clone();
    let routed = state
        .routes
        .failover(
            &plan,
            |ch, up| {
                let r = Arc::clone(&req);
                async move { Box::pin(ch.client.embed_with(ch.provider.as_ref(), &up, &r)).await }
            },
            |ch, err| {
                metrics
                    .failovers
                    .with_label_values(&[ch.provider_id, &ch.name, err.kind().as_str()])
                    .inc();
            },
        )
        .await;
    match routed {
        Ok(r) => {
            guard.routed(&r.channel, r.upstream.clone());
            if let Some(u) = r.value.usage {
                let mut u = u;
                if u.input_tokens == 0 {
                    u.input_tokens = u.total_tokens;
                }
                guard.usage(u);
            }
            let mut resp =
                match ingress {
                    Ingress::DashScope => {
                        Json(crate::dashscope_wire::encode_embeddings(&r.value, &ctx.id))
                            .into_response()
                    }
                    Ingress::OpenAi | Ingress::Admin => Json(
                        crate::openai_wire::encode_embeddings(&r.value, &public_model, format),
                    )
                    .into_response(),
                };
            stamp_added_latency(
                &state,
                &mut resp,
                super::added_latency(&ctx, r.upstream_time),
            );
            guard.complete();
            guard.finish().await;
            resp
        }
        Err(f) => failed(&state, &ctx, guard, f, ingress).await,
    }
}
