//! `GET /v1/models` and `GET /v1/models/{id}`: the models the calling key may use and some
//! enabled channel serves, in OpenAI's shape, or in Anthropic's when the client sends
//! `anthropic-version` (as Anthropic's SDKs do). The Gemini API's lists
//! (`GET /v1beta/models[/{model}]`) are in `crate::ingress::gemini::models`; all of them read
//! the same set ([`visible`]) from one routing snapshot.
//!
//! What a key sees: a key with an allow-list sees the names of its list that some enabled
//! channel serves (configured or discovered, a passthrough address such as `openai/gpt-5`
//! included when the key lists it); a key without one (and a static key) sees every model the
//! enabled channels list. A model the key may not use, or that nothing serves, is a 404 in the
//! dialect's envelope, never a 403 that would confirm it exists.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;
use utoipa::ToSchema;

use super::fail;
use crate::auth::{query_key, Principal};
use crate::error::{ApiError, ErrorEnvelope};
use crate::ingress::anthropic::models::{AnthropicModel, AnthropicModelList};
use crate::ingress::anthropic::AnthropicEnvelope;
use crate::ingress::openai::{OpenAiEnvelope, OpenAiError};
use crate::routing::Routes;
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

/// `GET /v1/models`: OpenAI's list, or Anthropic's page when `anthropic-version` is sent.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(untagged)]
pub enum ModelListAnswer {
    /// OpenAI's shape (the default).
    OpenAi(ModelList),
    /// Anthropic's shape.
    Anthropic(AnthropicModelList),
}

/// `GET /v1/models/{id}`: OpenAI's model, or Anthropic's when `anthropic-version` is sent.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(untagged)]
pub enum ModelAnswer {
    /// OpenAI's shape (the default).
    OpenAi(Model),
    /// Anthropic's shape.
    Anthropic(AnthropicModel),
}

/// The caller (authenticated from the headers or the `key` query parameter), the routing
/// snapshot read, and the public model names the caller may see in it, sorted.
pub(crate) async fn visible(
    state: &AppState,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<(Principal, Arc<Routes>, Vec<String>), ApiError> {
    let principal = state
        .auth
        .authenticate(headers, query_key(query).as_ref())
        .await?;
    let routes = state.routes.current();
    let models = routes.models_for(principal.allowed_models());
    Ok((principal, routes, models))
}

/// Whether `principal` may call `model` and some enabled channel of `routes` serves it.
pub(crate) fn may_see(routes: &Routes, principal: &Principal, model: &str) -> bool {
    principal.allows(model).is_ok() && routes.serves(model)
}

/// The value of the first `name` parameter of a query string (`+` is a space, `%XX` a byte);
/// `None` when absent or not UTF-8.
pub(crate) fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k != name {
            return None;
        }
        let v = v.replace('+', " ");
        percent_encoding::percent_decode_str(&v)
            .decode_utf8()
            .ok()
            .map(|s| s.into_owned())
    })
}

/// True when the client speaks Anthropic's protocol (its SDKs always send `anthropic-version`).
fn wants_anthropic(headers: &HeaderMap) -> bool {
    headers.contains_key("anthropic-version")
}

fn envelope_for(anthropic: bool) -> &'static dyn ErrorEnvelope {
    if anthropic {
        &AnthropicEnvelope
    } else {
        &OpenAiEnvelope
    }
}

fn model_json(state: &AppState, routes: &Routes, id: &str) -> Model {
    Model {
        id: id.to_owned(),
        object: "model",
        created: state.started_unix,
        owned_by: routes.owner(id).unwrap_or("llmux"),
    }
}

/// `GET /v1/models`.
#[utoipa::path(
    get,
    path = "/v1/models",
    tag = "openai",
    operation_id = "listModels",
    summary = "The models the calling key may use",
    description = "The models the key may call (its allow-list, or every model for a key \
        without one) that some enabled channel serves (configured, or discovered from its \
        upstream), sorted by name. With an `anthropic-version` header the answer is Anthropic's \
        page instead (`data`, `has_more`, `first_id`, `last_id`; `limit` 1–1000, default 20, \
        with `after_id` or `before_id`), and errors are in Anthropic's envelope.",
    responses(
        (status = 200, description = "The models.", body = ModelListAnswer),
        (status = 400, description = "A bad `limit`, or both `after_id` and `before_id` (Anthropic's shape only).", body = OpenAiError),
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
    let anthropic = wants_anthropic(&headers);
    let envelope = envelope_for(anthropic);
    let (routes, models) = match visible(&state, &headers, query.as_deref()).await {
        Ok((_, routes, models)) => (routes, models),
        Err(e) => return fail(e, envelope, &ctx, None),
    };
    let answer = if anthropic {
        match crate::ingress::anthropic::models::page(&models, query.as_deref(), state.started_unix)
        {
            Ok(page) => ModelListAnswer::Anthropic(page),
            Err(e) => return fail(e, envelope, &ctx, None),
        }
    } else {
        ModelListAnswer::OpenAi(ModelList {
            object: "list",
            data: models
                .iter()
                .map(|m| model_json(&state, &routes, m))
                .collect(),
        })
    };
    Json(answer).into_response()
}

/// `GET /v1/models/{id}` (ids may contain slashes).
#[utoipa::path(
    get,
    path = "/v1/models/{id}",
    tag = "openai",
    operation_id = "retrieveModel",
    summary = "One model the calling key may use",
    description = "With an `anthropic-version` header the answer is Anthropic's model object, \
        and errors are in Anthropic's envelope.",
    params(("id" = String, Path, description = "The public model name (may contain `/`).")),
    responses(
        (status = 200, description = "The model.", body = ModelAnswer),
        (status = 401, description = "No API key, or an unknown, revoked or expired one.", body = OpenAiError),
        (status = 404, description = "No such model here, or one the key may not use.", body = OpenAiError),
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
    let anthropic = wants_anthropic(&headers);
    let envelope = envelope_for(anthropic);
    let principal = match state
        .auth
        .authenticate(&headers, query_key(query.as_deref()).as_ref())
        .await
    {
        Ok(p) => p,
        Err(e) => return fail(e, envelope, &ctx, None),
    };
    let routes = state.routes.current();
    if !may_see(&routes, &principal, &id) {
        let err = crate::pipeline::unknown_model(&state, &principal, &id);
        return fail(err, envelope, &ctx, None);
    }
    let answer = if anthropic {
        ModelAnswer::Anthropic(AnthropicModel::new(&id, state.started_unix))
    } else {
        ModelAnswer::OpenAi(model_json(&state, &routes, &id))
    };
    Json(answer).into_response()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn query_params_are_decoded_and_the_first_wins() {
        let q = Some("a=1&limit=5&after_id=openai%2Fgpt+x&limit=7&flag");
        assert_eq!(query_param(q, "limit").as_deref(), Some("5"));
        assert_eq!(query_param(q, "after_id").as_deref(), Some("openai/gpt x"));
        assert_eq!(query_param(q, "flag").as_deref(), Some(""));
        assert_eq!(query_param(q, "none"), None);
        assert_eq!(query_param(Some("x=%FF"), "x"), None);
        assert_eq!(query_param(None, "x"), None);
    }
}
