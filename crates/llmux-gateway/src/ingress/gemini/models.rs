//! The Gemini API's model list: `GET /v1beta/models` (paged by `pageSize`, default 50, at most
//! 1000, and `pageToken`) and `GET /v1beta/models/{model}`, in Google's shape
//! (`{"models":[{"name":"models/…","displayName","supportedGenerationMethods"}],
//! "nextPageToken"}`), over the same set as `GET /v1/models` (`routes::models::visible`):
//! the models the key may use that some channel serves. Errors are in Google's envelope; a model
//! the key may not use is a 404 like one that does not exist.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;
use utoipa::ToSchema;

use super::{GeminiEnvelope, GoogleError};
use crate::error::ApiError;
use crate::routes::fail;
use crate::routes::models::{may_see, query_param, visible};
use crate::state::{AppState, RequestCtx};

/// The default `pageSize`.
pub const DEFAULT_PAGE_SIZE: usize = 50;
/// The largest `pageSize`; larger values are read as this one, as Google does.
pub const MAX_PAGE_SIZE: usize = 1000;
/// The methods the gateway's Gemini endpoints serve for every model.
const METHODS: &[&str] = &["generateContent", "streamGenerateContent", "countTokens"];

/// One model in Google's shape.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GeminiModel {
    /// `models/` and the public model name.
    pub name: String,
    /// The public model name.
    pub display_name: String,
    /// The methods this gateway serves for it.
    #[schema(value_type = Vec<String>)]
    pub supported_generation_methods: &'static [&'static str],
}

impl GeminiModel {
    fn new(id: &str) -> Self {
        GeminiModel {
            name: format!("models/{id}"),
            display_name: id.to_owned(),
            supported_generation_methods: METHODS,
        }
    }
}

/// `GET /v1beta/models`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GeminiModelList {
    /// The models of this page, by name.
    pub models: Vec<GeminiModel>,
    /// The `pageToken` of the next page; absent on the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

/// The page of `models` (sorted) the query's `pageSize` and `pageToken` ask for. The token is
/// the last name of the previous page: the page starts after where it sorts.
pub fn page(models: &[String], query: Option<&str>) -> Result<GeminiModelList, ApiError> {
    let size = match query_param(query, "pageSize") {
        None => DEFAULT_PAGE_SIZE,
        Some(v) => match v.parse::<usize>() {
            Ok(0) => DEFAULT_PAGE_SIZE,
            Ok(n) => n.min(MAX_PAGE_SIZE),
            Err(_) => {
                return Err(
                    ApiError::invalid("pageSize must be a non-negative integer").param("pageSize")
                )
            }
        },
    };
    let start = query_param(query, "pageToken")
        .filter(|t| !t.is_empty())
        .map_or(0, |t| models.partition_point(|m| m.as_str() <= t.as_str()));
    let end = (start + size).min(models.len());
    let slice = &models[start..end];
    Ok(GeminiModelList {
        models: slice.iter().map(|m| GeminiModel::new(m)).collect(),
        next_page_token: (end < models.len())
            .then(|| slice.last().cloned())
            .flatten(),
    })
}

/// `GET /v1beta/models`.
#[utoipa::path(
    get,
    path = "/v1beta/models",
    tag = "gemini",
    operation_id = "geminiListModels",
    summary = "The models the calling key may use (Gemini protocol)",
    params(
        ("pageSize" = Option<u32>, Query, description = "Models per page: default 50, at most 1000 (larger values read as 1000)."),
        ("pageToken" = Option<String>, Query, description = "The previous page's `nextPageToken`."),
    ),
    responses(
        (status = 200, description = "A page of models, by name.", body = GeminiModelList),
        (status = 400, description = "A bad `pageSize` (`INVALID_ARGUMENT`).", body = GoogleError),
        (status = 401, description = "No API key, or an unknown, revoked or expired one (`UNAUTHENTICATED`).", body = GoogleError),
        (status = 503, description = "The key store is unavailable.", body = GoogleError),
    ),
    security(("client_key" = []), ("goog_api_key" = []))
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestCtx>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let answer = visible(&state, &headers, query.as_deref())
        .await
        .and_then(|(_, _, models)| page(&models, query.as_deref()));
    match answer {
        Ok(list) => Json(list).into_response(),
        Err(e) => fail(e, &GeminiEnvelope, &ctx, None),
    }
}

/// `GET /v1beta/models/{model}`.
#[utoipa::path(
    get,
    path = "/v1beta/models/{model}",
    tag = "gemini",
    operation_id = "geminiGetModel",
    summary = "One model the calling key may use (Gemini protocol)",
    params(("model" = String, Path, description = "The public model name (may contain `/`; a name ending in a method such as `:generateContent` is that method, which answers 405 to GET).", example = "gpt-4o-mini")),
    responses(
        (status = 200, description = "The model.", body = GeminiModel),
        (status = 401, description = "No API key, or an unknown, revoked or expired one (`UNAUTHENTICATED`).", body = GoogleError),
        (status = 404, description = "No such model here, or one the key may not use (`NOT_FOUND`).", body = GoogleError),
        (status = 405, description = "The path names a method (`{model}:generateContent`), which takes POST only.", body = GoogleError),
        (status = 503, description = "The key store is unavailable.", body = GoogleError),
    ),
    security(("client_key" = []), ("goog_api_key" = []))
)]
pub async fn get(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestCtx>,
    Path(model): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    if super::parse_target(&model).is_ok() {
        // `GET …/{model}:generateContent`: a method, which only takes POST. Left unrendered, so
        // the middleware answers it as every 405 is (Google's envelope, with `Allow`).
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(axum::http::header::ALLOW, "POST")],
        )
            .into_response();
    }
    let principal = match state
        .auth
        .authenticate(&headers, crate::auth::query_key(query.as_deref()).as_ref())
        .await
    {
        Ok(p) => p,
        Err(e) => return fail(e, &GeminiEnvelope, &ctx, None),
    };
    if !may_see(&state.routes.current(), &principal, &model) {
        return fail(ApiError::unknown_model(&model), &GeminiEnvelope, &ctx, None);
    }
    Json(GeminiModel::new(&model)).into_response()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn pages_follow_their_tokens() {
        let models: Vec<String> = ["a", "b/c", "d"].map(String::from).to_vec();
        let p = page(&models, Some("pageSize=2")).unwrap();
        assert_eq!(p.models[0].name, "models/a");
        assert_eq!(p.models[1].display_name, "b/c");
        assert_eq!(p.next_page_token.as_deref(), Some("b/c"));
        let p = page(&models, Some("pageSize=2&pageToken=b%2Fc")).unwrap();
        assert_eq!(p.models.len(), 1);
        assert_eq!(p.next_page_token, None);
        let p = page(&models, Some("pageSize=0")).unwrap();
        assert_eq!((p.models.len(), p.next_page_token), (3, None));
        let v = serde_json::to_value(page(&models, Some("pageSize=99999")).unwrap()).unwrap();
        assert_eq!(
            v["models"][0]["supportedGenerationMethods"][0],
            "generateContent"
        );
        assert!(v.get("nextPageToken").is_none());
        assert!(page(&models, Some("pageSize=-1")).is_err());
    }
}
