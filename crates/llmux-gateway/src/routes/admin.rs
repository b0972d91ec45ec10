//! `/admin/*`, guarded by `server.admin_key`: `GET /admin/channels` lists channels with their
//! models, weights, priorities and live breaker state (never credentials).

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{json, Value};

use super::fail;
use crate::app::{AppState, RequestCtx};
use crate::error::Ingress;

/// `GET /admin/channels`.
pub async fn channels(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestCtx>,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = state.auth.admin(&headers) {
        return fail(e, Ingress::Admin, &ctx, None);
    }
    let routes = &state.routes;
    let list: Vec<Value> = routes
        .channels()
        .iter()
        .map(|c| {
            json!({
                "name": &*c.name,
                "provider": c.provider_id,
                "base_url": c.provider.base_url(),
                "models": c.models,
                "weight": c.weight,
                "priority": c.priority,
                "passthrough": c.passthrough,
                "breaker": routes.breaker_state(c).as_str(),
            })
        })
        .collect();
    Json(json!({"channels": list})).into_response()
}
