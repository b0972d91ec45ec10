//! `/admin/*`, guarded by `server.admin_key`: `GET /admin/channels` lists channels with their
//! models, weights, priorities and live breaker state (never credentials), and `POST
//! /admin/channels/{name}/enable` puts a channel back in rotation, `POST
//! /admin/channels/{name}/discover` asks its upstream for its models; `POST/GET
//! /admin/keys`, `DELETE /admin/keys/{id}` manage virtual keys; `GET /admin/usage` reports usage.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::fail;
use crate::error::ApiError;
use crate::ingress::openai::{OpenAiEnvelope, OpenAiError};
use crate::state::{unix_now, AppState, RequestCtx};
use crate::store::{KeyRecord, UsageRecord, UsageRow};

/// `GET /admin/channels`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ChannelList {
    /// Every configured channel, in configuration order.
    pub channels: Vec<ChannelInfo>,
}

/// A channel as the admin API shows it (never its credentials).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ChannelInfo {
    /// The configured name.
    pub name: String,
    /// The provider id.
    #[schema(value_type = String)]
    pub provider: &'static str,
    /// The upstream base URL.
    pub base_url: String,
    /// Public model name → upstream model name.
    pub models: std::collections::BTreeMap<String, String>,
    /// Routing weight within its priority.
    pub weight: u32,
    /// Routing priority (higher first).
    pub priority: i32,
    /// Unknown models are passed through to this channel.
    pub passthrough: bool,
    /// `disabled` while the upstream's rejection of the credentials keeps the channel out of
    /// rotation, `enabled` otherwise.
    #[schema(value_type = String)]
    pub state: &'static str,
    /// The breaker: `closed`, `open`, `half_open` or `disabled`.
    #[schema(value_type = String)]
    pub breaker: &'static str,
    /// Why the breaker is open or disabled.
    pub reason: Option<String>,
    /// Milliseconds until the next probe or trial, while open or disabled.
    pub next_trial_in_ms: Option<u64>,
}

/// `GET /admin/keys`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct KeyList {
    /// Every key, revoked ones included, by id.
    pub keys: Vec<KeyRecord>,
}

/// `POST /admin/keys`: the new key, in plaintext this once, and its record.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct CreatedKey {
    /// The key (`sk-llmux-…`); only its hash is stored.
    pub key: String,
    /// The stored record.
    pub record: KeyRecord,
}

/// `PATCH /admin/keys/{id}`: the updated record.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct UpdatedKey {
    /// The record as updated.
    pub record: KeyRecord,
}

/// `DELETE /admin/keys/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct RevokedKey {
    /// The id of the revoked key.
    pub revoked: i64,
}

/// `GET /admin/usage`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct UsageReport {
    /// One row per group, sorted by group.
    pub usage: Vec<UsageRow>,
}

/// `GET /admin/usage/records`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct RecordList {
    /// Raw records, newest first.
    pub records: Vec<UsageRecord>,
}

/// `GET /admin/channels`.
#[utoipa::path(
    get,
    path = "/admin/channels",
    tag = "admin",
    operation_id = "adminChannels",
    summary = "Channels with their models, routing weights and breaker state",
    responses(
        (status = 200, description = "Every channel (never its credentials).", body = ChannelList),
        (status = 401, description = "Missing or wrong admin key.", body = OpenAiError),
        (status = 403, description = "The admin API is off (no `server.admin_key`).", body = OpenAiError),
    ),
    security(("admin_key" = []))
)]
pub async fn channels(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestCtx>,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = state.auth.admin(&headers) {
        return fail(e, &OpenAiEnvelope, &ctx, None);
    }
    let routes = &state.routes;
    let channels = routes
        .channels()
        .iter()
        .map(|c| channel_info(routes, c))
        .collect();
    Json(ChannelList { channels }).into_response()
}

/// One channel as the admin API shows it. `state` is `disabled` while the upstream's rejection
/// of the credentials keeps it out of rotation, `enabled` otherwise; `reason` says why the
/// breaker is open or disabled; `next_trial_in_ms` is the time until the next probe or trial.
fn channel_info(routes: &crate::routing::Routes, c: &crate::config::Channel) -> ChannelInfo {
    let status = routes.breaker_status(c);
    let disabled = status.state == llmux_core::resilience::BreakerState::Disabled;
    ChannelInfo {
        name: c.name.to_string(),
        provider: c.provider_id,
        base_url: c.provider.base_url().to_owned(),
        models: c.models.clone(),
        weight: c.weight,
        priority: c.priority,
        passthrough: c.passthrough,
        state: if disabled { "disabled" } else { "enabled" },
        breaker: status.state.as_str(),
        reason: status.reason,
        next_trial_in_ms: status
            .retry_in
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
    }
}

/// `POST /admin/channels/{name}/enable`: the channel as it is now.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct EnabledChannel {
    /// The channel, enabled.
    pub channel: ChannelInfo,
}

/// `POST /admin/channels/{name}/enable`: closes the channel's breaker (disabled after a
/// credential rejection, or open after failures), so the next request tries it in its place.
#[utoipa::path(
    post,
    path = "/admin/channels/{name}/enable",
    tag = "admin",
    operation_id = "adminEnableChannel",
    summary = "Put a channel back into rotation (closes its breaker, open or disabled)",
    params(("name" = String, Path, description = "The channel's configured name.")),
    responses(
        (status = 200, description = "The channel, enabled.", body = EnabledChannel),
        (status = 401, description = "Missing or wrong admin key.", body = OpenAiError),
        (status = 403, description = "The admin API is off (no `server.admin_key`).", body = OpenAiError),
        (status = 404, description = "No channel has that name (`channel_not_found`).", body = OpenAiError),
    ),
    security(("admin_key" = []))
)]
pub async fn enable_channel(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestCtx>,
    axum::extract::Path(name): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Response {
    guarded(state, ctx, headers, |state| async move {
        let Some(ch) = state.routes.enable(&name) else {
            let mut e = ApiError::new(
                llmux_core::ErrorKind::NotFound,
                format!("no channel named `{name}`"),
            );
            e.code = Some("channel_not_found");
            return Err(e);
        };
        Ok(Json(EnabledChannel {
            channel: channel_info(&state.routes, &ch),
        })
        .into_response())
    })
    .await
}

/// `POST /admin/channels/{name}/discover`: asks the channel's upstream for its models now; the
/// listed models become routable through the channel (see [`crate::discovery`]).
#[utoipa::path(
    post,
    path = "/admin/channels/{name}/discover",
    tag = "admin",
    operation_id = "adminDiscoverChannelModels",
    summary = "Ask a channel's upstream for its models and serve them",
    params(("name" = String, Path, description = "The channel's configured name.")),
    responses(
        (status = 200, description = "What the upstream listed (bounded) and what the channel serves now.", body = crate::discovery::Discovered),
        (status = 400, description = "The channel's provider cannot list its models (`unsupported`).", body = OpenAiError),
        (status = 401, description = "Missing or wrong admin key.", body = OpenAiError),
        (status = 403, description = "The admin API is off (no `server.admin_key`).", body = OpenAiError),
        (status = 404, description = "No channel has that name (`channel_not_found`).", body = OpenAiError),
        (status = 502, description = "The upstream failed to list its models, or listed more than the gateway accepts; the last good list is kept.", body = OpenAiError),
        (status = 504, description = "The upstream did not list its models in time; the last good list is kept.", body = OpenAiError),
    ),
    security(("admin_key" = []))
)]
pub async fn discover_channel(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestCtx>,
    axum::extract::Path(name): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Response {
    guarded(state, ctx, headers, |state| async move {
        let found = crate::discovery::discover(&state.routes, &name).await?;
        Ok(Json(found).into_response())
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

/// A key field that breaks its rule: 400 naming the field.
fn problem(p: crate::store::KeyProblem) -> ApiError {
    let e = ApiError::invalid(p.to_string());
    if p.field.is_empty() {
        e
    } else {
        e.param(p.field)
    }
}

/// 404 for a key id that does not exist.
fn key_not_found(id: i64) -> ApiError {
    let mut e = ApiError::new(
        llmux_core::ErrorKind::NotFound,
        format!("no key with id {id}"),
    );
    e.code = Some("key_not_found");
    e
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
        return fail(e, &OpenAiEnvelope, &ctx, None);
    }
    match f(state).await {
        Ok(r) => r,
        Err(e) => fail(e, &OpenAiEnvelope, &ctx, None),
    }
}

/// `POST /admin/keys` with a `NewKey` body: creates a virtual key; the plaintext is in the
/// answer once and never again.
#[utoipa::path(
    post,
    path = "/admin/keys",
    tag = "admin",
    operation_id = "adminCreateKey",
    summary = "Create a virtual key",
    request_body(content = crate::store::NewKey, content_type = "application/json"),
    responses(
        (status = 201, description = "The key, in plaintext this once, and its record.", body = CreatedKey),
        (status = 400, description = "Invalid input (the message and `param` name the field), or no database is configured (`unsupported`).", body = OpenAiError),        (status = 401, description = "Missing or wrong admin key.", body = OpenAiError),
        (status = 403, description = "The admin API is off (no `server.admin_key`).", body = OpenAiError),
        (status = 413, description = "The body is too large.", body = OpenAiError),
        (status = 503, description = "The store failed (details in the gateway's log).", body = OpenAiError),
    ),
    security(("admin_key" = []))
)]
pub async fn create_key(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestCtx>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    guarded(state, ctx, headers, |state| async move {
        // Absent fields take their defaults (no models list = every model, no limits).
        let given: serde_json::Map<String, Value> = crate::ingress::openai::from_json(&body)?;
        let mut merged = serde_json::to_value(crate::store::NewKey::default())
            .map_err(|e| ApiError::invalid(e.to_string()))?;
        if let Value::Object(m) = &mut merged {
            m.extend(given);
        }
        let new: crate::store::NewKey = serde_path_to_error::deserialize(merged).map_err(|e| {
            ApiError::invalid(format!("invalid key at `{}`: {}", e.path(), e.inner()))
        })?;
        new.check(unix_now()).map_err(problem)?;
        let (record, key) = store_of(&state)?
            .create_key(new)
            .await
            .map_err(|e| store_err(&e))?;
        Ok((http::StatusCode::CREATED, Json(CreatedKey { key, record })).into_response())
    })
    .await
}

/// `PATCH /admin/keys/{id}` with a `KeyUpdate` body: changes a key's name, expiry, models or
/// limits (absent fields stay, `null` removes a limit); answers the updated record.
#[utoipa::path(
    patch,
    path = "/admin/keys/{id}",
    tag = "admin",
    operation_id = "adminUpdateKey",
    summary = "Change a key's name, expiry, models or limits",
    params(("id" = i64, Path, description = "The key's id.")),
    request_body(content = crate::store::KeyUpdate, content_type = "application/json",
        description = "Absent fields stay as they are; `null` removes a limit or the expiry; `models: []` allows every model."),
    responses(
        (status = 200, description = "The record as updated.", body = UpdatedKey),
        (status = 400, description = "Invalid input (the message and `param` name the field), or no database is configured (`unsupported`).", body = OpenAiError),        (status = 401, description = "Missing or wrong admin key.", body = OpenAiError),
        (status = 403, description = "The admin API is off (no `server.admin_key`).", body = OpenAiError),
        (status = 404, description = "No key with this id.", body = OpenAiError),
        (status = 413, description = "The body is too large.", body = OpenAiError),
        (status = 503, description = "The store failed (details in the gateway's log).", body = OpenAiError),
    ),
    security(("admin_key" = []))
)]
pub async fn update_key(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestCtx>,
    axum::extract::Path(id): axum::extract::Path<i64>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    guarded(state, ctx, headers, |state| async move {
        let update: crate::store::KeyUpdate = crate::ingress::openai::from_json(&body)?;
        if update.is_empty() {
            return Err(ApiError::invalid(
                "nothing to change: send one or more of name, expires_at, models, rpm, tpm, \
                 budget_tokens, budget_cost",
            ));
        }
        update.check(unix_now()).map_err(problem)?;
        let Some(record) = store_of(&state)?
            .update_key(id, update)
            .await
            .map_err(|e| store_err(&e))?
        else {
            return Err(key_not_found(id));
        };
        state.auth.keys_changed();
        Ok(Json(UpdatedKey { record }).into_response())
    })
    .await
}

/// `GET /admin/keys`.
#[utoipa::path(
    get,
    path = "/admin/keys",
    tag = "admin",
    operation_id = "adminListKeys",
    summary = "Every virtual key (records, never the keys)",
    responses(
        (status = 200, description = "The keys, by id.", body = KeyList),
        (status = 400, description = "No database is configured (`unsupported`).", body = OpenAiError),
        (status = 401, description = "Missing or wrong admin key.", body = OpenAiError),
        (status = 403, description = "The admin API is off (no `server.admin_key`).", body = OpenAiError),        (status = 503, description = "The store failed (details in the gateway's log).", body = OpenAiError),
    ),
    security(("admin_key" = []))
)]
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
        Ok(Json(KeyList { keys }).into_response())
    })
    .await
}

/// `DELETE /admin/keys/{id}`: revokes a key.
#[utoipa::path(
    delete,
    path = "/admin/keys/{id}",
    tag = "admin",
    operation_id = "adminRevokeKey",
    summary = "Revoke a virtual key",
    params(("id" = i64, Path, description = "The key's id.")),
    responses(
        (status = 200, description = "Revoked (the record stays, marked revoked).", body = RevokedKey),
        (status = 400, description = "Invalid id, or no database is configured (`unsupported`).", body = OpenAiError),
        (status = 401, description = "Missing or wrong admin key.", body = OpenAiError),
        (status = 403, description = "The admin API is off (no `server.admin_key`).", body = OpenAiError),
        (status = 404, description = "No key with this id.", body = OpenAiError),
        (status = 503, description = "The store failed (details in the gateway's log).", body = OpenAiError),
    ),
    security(("admin_key" = []))
)]
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
            return Err(key_not_found(id));
        }
        Ok(Json(RevokedKey { revoked: id }).into_response())
    })
    .await
}

/// Query of `GET /admin/usage`.
#[derive(Debug, serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// `key`, `model` or `day` (default `model`).
    #[serde(default)]
    #[param(pattern = "^(key|model|day)$")]
    by: Option<String>,
    /// `YYYY-MM-DD`, inclusive (UTC days).
    #[serde(default)]
    since: Option<String>,
}

/// `GET /admin/usage?by=key|model|day&since=YYYY-MM-DD`.
#[utoipa::path(
    get,
    path = "/admin/usage",
    tag = "admin",
    operation_id = "adminUsage",
    summary = "Usage grouped by key, model or day, from the daily rollups",
    params(UsageQuery),
    responses(
        (status = 200, description = "One row per group.", body = UsageReport),
        (status = 400, description = "Invalid input (the message and `param` name the field), or no database is configured (`unsupported`).", body = OpenAiError),        (status = 401, description = "Missing or wrong admin key.", body = OpenAiError),
        (status = 403, description = "The admin API is off (no `server.admin_key`).", body = OpenAiError),        (status = 503, description = "The store failed (details in the gateway's log).", body = OpenAiError),
    ),
    security(("admin_key" = []))
)]
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
        if let Some(since) = q.since.as_deref() {
            if crate::store::parse_day(since).is_none() {
                return Err(ApiError::invalid(format!(
                    "`since` must be a day as YYYY-MM-DD, got `{since}`"
                ))
                .param("since"));
            }
        }
        let rows = store_of(&state)?
            .usage(by, q.since.as_deref().map(str::trim))
            .await
            .map_err(|e| store_err(&e))?;
        Ok(Json(UsageReport { usage: rows }).into_response())
    })
    .await
}

/// Query of `GET /admin/usage/records` (strings, so a bad value gets our error, not axum's).
#[derive(Debug, serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RecordsQuery {
    /// Only this key id (an integer).
    #[serde(default)]
    #[param(value_type = Option<i64>)]
    key: Option<String>,
    /// At most this many records (a positive integer; default 100, at most 10,000).
    #[serde(default)]
    #[param(value_type = Option<u32>, minimum = 1)]
    limit: Option<String>,
}

/// `GET /admin/usage/records?key=ID&limit=N`: raw usage records, newest first.
#[utoipa::path(
    get,
    path = "/admin/usage/records",
    tag = "admin",
    operation_id = "adminUsageRecords",
    summary = "Raw usage records, newest first",
    params(RecordsQuery),
    responses(
        (status = 200, description = "The records.", body = RecordList),
        (status = 400, description = "Invalid input (the message and `param` name the field), or no database is configured (`unsupported`).", body = OpenAiError),        (status = 401, description = "Missing or wrong admin key.", body = OpenAiError),
        (status = 403, description = "The admin API is off (no `server.admin_key`).", body = OpenAiError),        (status = 503, description = "The store failed (details in the gateway's log).", body = OpenAiError),
    ),
    security(("admin_key" = []))
)]
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
        Ok(Json(RecordList { records }).into_response())
    })
    .await
}
