//! `/admin/*`, guarded by `server.admin_key`: `GET /admin/channels` lists channels with their
//! models, weights, priorities and live breaker state (never credentials), and `POST
//! /admin/channels/{name}/enable` puts a channel back in rotation; `POST/GET
//! /admin/keys`, `DELETE /admin/keys/{id}` manage virtual keys; `GET /admin/usage` reports usage.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{json, Value};

use super::fail;
use crate::app::{AppState, RequestCtx};
use crate::error::{ApiError, Ingress};

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
        .map(|c| channel_json(routes, c))
        .collect();
    Json(json!({"channels": list})).into_response()
}

/// One channel as the admin API shows it. `state` is `disabled` while the upstream's rejection
/// of the credentials keeps it out of rotation, `enabled` otherwise; `reason` says why the
/// breaker is open or disabled; `next_trial_in_ms` is the time until the next probe or trial.
fn channel_json(routes: &crate::routing::Routes, c: &crate::config::Channel) -> Value {
    let status = routes.breaker_status(c);
    let disabled = status.state == llmux_core::resilience::BreakerState::Disabled;
    json!({
        "name": &*c.name,
        "provider": c.provider_id,
        "base_url": c.provider.base_url(),
        "models": c.models,
        "weight": c.weight,
        "priority": c.priority,
        "passthrough": c.passthrough,
        "state": if disabled { "disabled" } else { "enabled" },
        "breaker": status.state.as_str(),
        "reason": status.reason,
        "next_trial_in_ms": status.retry_in.map(|d| d.as_millis() as u64),
    })
}

/// `POST /admin/channels/{name}/enable`: closes the channel's breaker (disabled after a
/// credential rejection, or open after failures), so the next request tries it in its place.
pub async fn enable_channel(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestCtx>,
    axum::extract::Path(name): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Response {
    guarded(state, ctx, headers, |state| async move {
        let Some(ch) = state.routes.enable(&name) else {
            return Err(ApiError::new(
                llmux_core::ErrorKind::NotFound,
                format!("no channel named `{name}`"),
            ));
        };
        Ok(Json(json!({"channel": channel_json(&state.routes, &ch)})).into_response())
    })
    .await
}

fn store_of(state: &AppState) -> Result<&Arc<dyn crate::store::Store>, ApiError> {
    state.store.as_ref().ok_or_else(|| {
        ApiError::new(
            llmux_core::ErrorKind::Unsupported,
            "no database is configured (server.database)",
        )
    })
}

fn store_err(e: &crate::store::StoreError) -> ApiError {
    tracing::error!(error = %e, "admin: the store failed");
    let mut err = ApiError::new(
        llmux_core::ErrorKind::Internal,
        "the store failed; see the logs",
    );
    err.status = Some(http::StatusCode::SERVICE_UNAVAILABLE);
    err
}

async fn guarded<F, Fut>(
    state: Arc<AppState>,
    ctx: RequestCtx,
    headers: HeaderMap,
    f: F,
) -> Response
where
    F: FnOnce(Arc<AppState>) -> Fut,
    Fut: std::future::Future<Output = Result<Response, ApiError>>,
{
    if let Err(e) = state.auth.admin(&headers) {
        return fail(e, Ingress::Admin, &ctx, None);
    }
    match f(state).await {
        Ok(r) => r,
        Err(e) => fail(e, Ingress::Admin, &ctx, None),
    }
}

/// `POST /admin/keys` with a `NewKey` body: creates a virtual key; the plaintext is in the
/// answer once and never again.
pub async fn create_key(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestCtx>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    guarded(state, ctx, headers, |state| async move {
        // Absent fields take their defaults (no models list = every model, no limits).
        let given: serde_json::Map<String, Value> = crate::openai_wire::from_json(&body)?;
        let mut merged = serde_json::to_value(crate::store::NewKey::default())
            .map_err(|e| ApiError::invalid(e.to_string()))?;
        if let Value::Object(m) = &mut merged {
            m.extend(given);
        }
        let new: crate::store::NewKey = serde_path_to_error::deserialize(merged).map_err(|e| {
            ApiError::invalid(format!("invalid key at `{}`: {}", e.path(), e.inner()))
        })?;
        let (record, key) = store_of(&state)?
            .create_key(new)
            .await
            .map_err(|e| store_err(&e))?;
        Ok((
            http::StatusCode::CREATED,
            Json(json!({"key": key, "record": record})),
        )
            .into_response())
    })
    .await
}

/// `PATCH /admin/keys/{id}` with a `KeyUpdate` body: changes a key's name, expiry, models or
/// limits (absent fields stay, `null` removes a limit); answers the updated record.
pub async fn update_key(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestCtx>,
    axum::extract::Path(id): axum::extract::Path<i64>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    guarded(state, ctx, headers, |state| async move {
        let update: crate::store::KeyUpdate = crate::openai_wire::from_json(&body)?;
        match update.problem() {
            Some(p) if update.is_empty() => {
                return Err(ApiError::invalid(format!(
                    "{p}: send one or more of name, expires_at, models, rpm, tpm, \
                     budget_tokens, budget_cost"
                )))
            }
            Some(p) => return Err(ApiError::invalid(p).param("name")),
            None => {}
        }
        let Some(record) = store_of(&state)?
            .update_key(id, update)
            .await
            .map_err(|e| store_err(&e))?
        else {
            return Err(ApiError::new(
                llmux_core::ErrorKind::NotFound,
                format!("no key with id {id}"),
            ));
        };
        state.auth.keys_changed();
        Ok(Json(json!({"record": record})).into_response())
    })
    .await
}

/// `GET /admin/keys`.
pub async fn list_keys(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestCtx>,
    headers: HeaderMap,
) -> Response {
    guarded(state, ctx, headers, |state| async move {
        let keys = store_of(&state)?
            .list_keys()
            .await
            .map_err(|e| store_err(&e))?;
        Ok(Json(json!({"keys": keys})).into_response())
    })
    .await
}

/// `DELETE /admin/keys/{id}`: revokes a key.
pub async fn revoke_key(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestCtx>,
    axum::extract::Path(id): axum::extract::Path<i64>,
    headers: HeaderMap,
) -> Response {
    guarded(state, ctx, headers, |state| async move {
        let found = store_of(&state)?
            .revoke_key(id)
            .await
            .map_err(|e| store_err(&e))?;
        state.auth.keys_changed();
        if !found {
            return Err(ApiError::new(
                llmux_core::ErrorKind::NotFound,
                format!("no key with id {id}"),
            ));
        }
        Ok(Json(json!({"revoked": id})).into_response())
    })
    .await
}

/// Query of `GET /admin/usage`.
#[derive(Debug, serde::Deserialize)]
pub struct UsageQuery {
    /// `key`, `model` or `day` (default `model`).
    #[serde(default)]
    by: Option<String>,
    /// `YYYY-MM-DD`, inclusive.
    #[serde(default)]
    since: Option<String>,
}

/// `GET /admin/usage?by=key|model|day&since=YYYY-MM-DD`.
pub async fn usage(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestCtx>,
    axum::extract::Query(q): axum::extract::Query<UsageQuery>,
    headers: HeaderMap,
) -> Response {
    guarded(state, ctx, headers, |state| async move {
        let by = match q.by.as_deref() {
            None | Some("model") => crate::store::GroupBy::Model,
            Some("key") => crate::store::GroupBy::Key,
            Some("day") => crate::store::GroupBy::Day,
            Some(other) => {
                return Err(ApiError::invalid(format!(
                    "`by` must be key, model or day, got `{other}`"
                ))
                .param("by"))
            }
        };
        let rows = store_of(&state)?
            .usage(by, q.since.as_deref())
            .await
            .map_err(|e| store_err(&e))?;
        Ok(Json(json!({"usage": rows})).into_response())
    })
    .await
}

/// Query of `GET /admin/usage/records` (strings, so a bad value gets our error, not axum's).
#[derive(Debug, serde::Deserialize)]
pub struct RecordsQuery {
    /// Only this key id.
    #[serde(default)]
    key: Option<String>,
    /// At most this many records (default 100, at most 10,000).
    #[serde(default)]
    limit: Option<String>,
}

/// `GET /admin/usage/records?key=ID&limit=N`: raw usage records, newest first.
pub async fn records(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestCtx>,
    axum::extract::Query(q): axum::extract::Query<RecordsQuery>,
    headers: HeaderMap,
) -> Response {
    guarded(state, ctx, headers, |state| async move {
        let key_id = match q.key.as_deref() {
            None => None,
            Some(v) => Some(v.parse::<i64>().map_err(|_| {
                ApiError::invalid(format!("`key` must be a key id (an integer), got `{v}`"))
                    .param("key")
            })?),
        };
        let limit = match q.limit.as_deref() {
            None => 0,
            Some(v) => v.parse::<u32>().ok().filter(|n| *n > 0).ok_or_else(|| {
                ApiError::invalid(format!(
                    "`limit` must be a positive integer (at most {}), got `{v}`",
                    crate::store::RecordQuery::MAX_LIMIT
                ))
                .param("limit")
            })?,
        };
        let records = store_of(&state)?
            .records(crate::store::RecordQuery { key_id, limit })
            .await
            .map_err(|e| store_err(&e))?;
        Ok(Json(json!({"records": records})).into_response())
    })
    .await
}
