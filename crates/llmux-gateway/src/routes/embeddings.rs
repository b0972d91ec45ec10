//! Embeddings on both ingresses: `POST /v1/embeddings` (float or base64) and DashScope's
//! text-embedding path. Upstreams are always asked for floats; base64 is encoded here.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use llmux_core::EmbeddingRequest;

use super::{fail, failed, stamp_added_latency, GuardInit, RequestGuard};
use crate::app::{AppState, RequestCtx};
use crate::error::{ApiError, Ingress};
use crate::openai_wire::EncodingFormat;

/// `POST /v1/embeddings`.
pub async fn openai(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestCtx>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    Box::pin(handle(state, ctx, headers, body, Ingress::OpenAi)).await
}

/// `POST /api/v1/services/embeddings/text-embedding/text-embedding`.
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
            |ch, upstream| {
                let mut r: EmbeddingRequest = (*req).clone();
                upstream.as_ref().clone_into(&mut r.model);
                async move { Box::pin(ch.client.embed_with(ch.provider.as_ref(), &r)).await }
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
            let body = match ingress {
                Ingress::DashScope => crate::dashscope_wire::encode_embeddings(&r.value, &ctx.id),
                Ingress::OpenAi | Ingress::Admin => {
                    crate::openai_wire::encode_embeddings(&r.value, &public_model, format)
                }
            };
            let mut resp = Json(body).into_response();
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
