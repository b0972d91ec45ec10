//! `GET /v1/models` and `GET /v1/models/{id}`: the public model names this gateway serves.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{json, Value};

use super::fail;
use crate::app::{AppState, RequestCtx};
use crate::error::{ApiError, Ingress};

fn model_json(state: &AppState, id: &str) -> Value {
    let owner = state
        .routes
        .channels()
        .iter()
        .find(|c| c.models.contains_key(id))
        .map_or("llmux", |c| c.provider_id);
    json!({"id": id, "object": "model", "created": state.started_unix, "owned_by": owner})
}

/// `GET /v1/models`.
pub async fn list(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestCtx>,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = state.auth.authenticate(&headers).await {
        return fail(e, Ingress::OpenAi, &ctx, None);
    }
    let data: Vec<Value> = state
        .routes
        .models()
        .into_iter()
        .map(|m| model_json(&state, m))
        .collect();
    Json(json!({"object": "list", "data": data})).into_response()
}

/// `GET /v1/models/{id}` (ids may contain slashes).
pub async fn one(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestCtx>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = state.auth.authenticate(&headers).await {
        return fail(e, Ingress::OpenAi, &ctx, None);
    }
    if !state.routes.serves(&id) {
        return fail(ApiError::unknown_model(&id), Ingress::OpenAi, &ctx, None);
    }
    Json(model_json(&state, &id)).into_response()
}
