//! `GET /v1/models` and `GET /v1/models/{id}`: the public model names this gateway serves.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;
use utoipa::ToSchema;

use super::fail;
use crate::auth::query_key;
use crate::ingress::openai::{OpenAiEnvelope, OpenAiError};
use crate::state::{AppState, RequestCtx};

/// A model this gateway serves.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Model {
    /// The public model name (may contain `/`).
    pub id: String,
    /// Always `model`.
    #[schema(value_type = String)]
    pub object: &'static str,
    /// When the gateway started, unix seconds.
    pub created: i64,
    /// The provider id of the first channel serving it.
    #[schema(value_type = String)]
    pub owned_by: &'static str,
}

/// `GET /v1/models`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ModelList {
    /// Always `list`.
    #[schema(value_type = String)]
    pub object: &'static str,
    /// The models, by name.
    pub data: Vec<Model>,
}

fn model_json(state: &AppState, id: &str) -> Model {
    let owner = state
        .routes
        .current()
        .channels()
        .iter()
        .find(|c| c.models.contains_key(id))
        .map_or("llmux", |c| c.provider_id);
    Model {
        id: id.to_owned(),
        object: "model",
        created: state.started_unix,
        owned_by: owner,
    }
}

/// `GET /v1/models`.
#[utoipa::path(
    get,
    path = "/v1/models",
    tag = "openai",
    operation_id = "listModels",
    summary = "The models this gateway serves",
    responses(
        (status = 200, description = "Every public model name, sorted.", body = ModelList),
        (status = 401, description = "No API key, or an unknown, revoked or expired one.", body = OpenAiError),
        (status = 503, description = "The key store is unavailable.", body = OpenAiError),
    ),
    security(("client_key" = []))
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestCtx>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = state
        .auth
        .authenticate(&headers, query_key(query.as_deref()).as_ref())
        .await
    {
        return fail(e, &OpenAiEnvelope, &ctx, None);
    }
    let routes = state.routes.current();
    let data = routes
        .models()
        .into_iter()
        .map(|m| model_json(&state, m))
        .collect();
    Json(ModelList {
        object: "list",
        data,
    })
    .into_response()
}

/// `GET /v1/models/{id}` (ids may contain slashes).
#[utoipa::path(
    get,
    path = "/v1/models/{id}",
    tag = "openai",
    operation_id = "retrieveModel",
    summary = "One model",
    params(("id" = String, Path, description = "The public model name (may contain `/`).")),
    responses(
        (status = 200, description = "The model.", body = Model),
        (status = 401, description = "No API key, or an unknown, revoked or expired one.", body = OpenAiError),
        (status = 404, description = "No such model here.", body = OpenAiError),
        (status = 503, description = "The key store is unavailable.", body = OpenAiError),
    ),
    security(("client_key" = []))
)]
pub async fn one(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestCtx>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let principal = match state
        .auth
        .authenticate(&headers, query_key(query.as_deref()).as_ref())
        .await
    {
        Ok(p) => p,
        Err(e) => return fail(e, &OpenAiEnvelope, &ctx, None),
    };
    if !state.routes.serves(&id) {
        let err = crate::pipeline::unknown_model(&state, &principal, &id);
        return fail(err, &OpenAiEnvelope, &ctx, None);
    }
    Json(model_json(&state, &id)).into_response()
}
