//! `/admin/*`, guarded by `server.admin_key`: `GET /admin/channels` lists channels with their
//! models, weights, priorities, enabled state, source and live breaker state (credentials
//! masked), and `POST /admin/channels/{name}/enable` puts a channel back in rotation (adding,
//! changing, deleting and testing channels is in [`super::channels`]); `POST/GET
//! /admin/keys`, `DELETE /admin/keys/{id}` manage virtual keys (a key may join a team by its
//! name, `team`; teams themselves are in [`super::teams`]); `GET /admin/usage` reports usage.

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
use crate::store::{KeyRecord, UsageRow};

/// `GET /admin/channels`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ChannelList {
    /// Every channel, disabled ones included: the file's in file order, then stored ones by
    /// name.
    pub channels: Vec<ChannelInfo>,
}

/// A channel as the admin API shows it (credentials only masked).
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
    /// When the upstream's model list is asked for: `on-demand` (only through `POST
    /// /admin/channels/{name}/discover`) or an interval such as `1h`.
    pub discover: String,
    /// The model ids the upstream last listed (served beside `models`), or `null` when its
    /// models were never discovered.
    pub discovered: Option<Vec<String>>,
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
    /// Whether the channel takes traffic (`PATCH /admin/channels/{name}` with `enabled`).
    pub enabled: bool,
    /// `file` (a `[[channels]]` table of llmux.toml) or `api` (stored in the database).
    #[schema(value_type = String)]
    pub source: &'static str,
    /// The rotation keys (`api_key`, then `api_keys`), masked (`sk-…abcd`).
    pub keys: Vec<String>,
    /// The other credential fields, masked, by field name.
    pub credentials: std::collections::BTreeMap<String, String>,
    /// Public models of this channel without a usable price (their requests cost 0): see
    /// `GET /admin/prices`.
    pub unpriced_models: Vec<String>,
}

/// `GET /admin/keys`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct KeyList {
    /// Every key, revoked ones included, by id.
    pub keys: Vec<KeyView>,
}

/// A key as the admin API shows it: the stored record, and its budget as it stands now.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct KeyView {
    /// The stored record.
    #[serde(flatten)]
    pub record: KeyRecord,
    /// The key's budget now: the current period's spend and when the budget resets.
    pub budget_now: crate::limits::BudgetNow,
}

impl KeyView {
    /// `record` with its budget at the gateway's time, in its budget time zone.
    pub(crate) fn new(state: &AppState, record: KeyRecord) -> KeyView {
        let now_ms = state.limits.clock().now_ms();
        let budget_now =
            state
                .limits
                .calendar()
                .budget_now(record.budget_period, now_ms, |label| {
                    record.budget_spend(label)
                });
        KeyView { record, budget_now }
    }
}

/// `POST /admin/keys`: the new key, in plaintext this once, and its record.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct CreatedKey {
    /// The key (`sk-llmux-…`); only its hash is stored.
    pub key: String,
    /// The stored record.
    pub record: KeyView,
}

/// `PATCH /admin/keys/{id}`: the updated record.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct UpdatedKey {
    /// The record as updated.
    pub record: KeyView,
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

/// `GET /admin/channels`.
#[utoipa::path(
    get,
    path = "/admin/channels",
    tag = "admin",
    operation_id = "adminChannels",
    summary = "Channels with their models, routing weights and breaker state",
    responses(
        (status = 200, description = "Every channel (never its credentials).", body = ChannelList),
        crate::openapi::AdminErrors,
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
    let routes = state.routes.current();
    let channels = routes
        .listed()
        .iter()
        .map(|c| channel_info(&state, &routes, c))
        .collect();
    Json(ChannelList { channels }).into_response()
}

/// One channel as the admin API shows it. `state` is `disabled` while the upstream's rejection
/// of the credentials keeps it out of rotation, `enabled` otherwise; `reason` says why the
/// breaker is open or disabled; `next_trial_in_ms` is the time until the next probe or trial.
pub(crate) fn channel_info(
    state: &AppState,
    routes: &crate::routing::Routes,
    c: &crate::config::Channel,
) -> ChannelInfo {
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
        discover: c.discover.map_or_else(
            || crate::discovery::ON_DEMAND.to_owned(),
            crate::discovery::format_interval,
        ),
        discovered: c.discovered().map(|d| d.to_vec()),
        state: if disabled { "disabled" } else { "enabled" },
        breaker: status.state.as_str(),
        reason: status.reason,
        next_trial_in_ms: status
            .retry_in
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        enabled: c.enabled,
        source: c.source.as_str(),
        keys: c.masked_keys.clone(),
        credentials: c.masked_credentials.clone(),
        unpriced_models: unpriced_models(state, c),
    }
}

/// The channel's public models that have no usable price.
fn unpriced_models(state: &AppState, c: &crate::config::Channel) -> Vec<String> {
    c.models
        .iter()
        .filter(|(public, upstream)| {
            state
                .prices
                .unpriced(public, c.provider_id, upstream)
                .is_some()
        })
        .map(|(public, _)| public.clone())
        .collect()
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
        (status = 404, description = "No channel has that name (`channel_not_found`).", body = OpenAiError),
        crate::openapi::AdminErrors,
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
        let routes = state.routes.current();
        let Some(ch) = routes.enable(&name) else {
            let mut e = ApiError::new(
                llmux_core::ErrorKind::NotFound,
                format!("no channel named `{name}`"),
            );
            e.code = Some("channel_not_found");
            return Err(e);
        };
        Ok(Json(EnabledChannel {
            channel: channel_info(&state, &routes, &ch),
        })
        .into_response())
    })
    .await
}

pub(super) fn store_of(state: &AppState) -> Result<&Arc<dyn crate::store::Store>, ApiError> {
    state.store.as_ref().ok_or_else(|| {
        ApiError::new(
            llmux_core::ErrorKind::Unsupported,
            "no database is configured (server.database)",
        )
    })
}

pub(crate) fn store_err(e: &crate::store::StoreError) -> ApiError {
    tracing::error!(error = %e, "admin: the store failed");
    let mut err = ApiError::new(
        llmux_core::ErrorKind::Internal,
        "the store failed; see the logs",
    );
    err.status = Some(http::StatusCode::SERVICE_UNAVAILABLE);
    err
}

/// A key field that breaks its rule: 400 naming the field.
pub(super) fn problem(p: crate::store::KeyProblem) -> ApiError {
    let e = ApiError::invalid(p.to_string());
    if p.field.is_empty() {
        e
    } else {
        e.param(p.field)
    }
}

/// 400 naming the `team` field when a key is to join a team that does not exist.
async fn check_team_exists(state: &AppState, team: Option<&str>) -> Result<(), ApiError> {
    let Some(name) = team else {
        return Ok(());
    };
    let found = store_of(state)?
        .find_team(name)
        .await
        .map_err(|e| store_err(&e))?;
    if found.is_none() {
        return Err(ApiError::invalid(format!(
            "no team named `{name}` (create it with POST /admin/teams)"
        ))
        .param("team"));
    }
    Ok(())
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

pub(crate) async fn guarded<F, Fut>(
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
        (status = 400, description = "Invalid input (the message and `param` name the field), or no database is configured (`unsupported`).", body = OpenAiError),
        (status = 413, description = "The body is too large.", body = OpenAiError),
        crate::openapi::AdminErrors,
        crate::openapi::StoreFailed,
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
        check_team_exists(&state, new.team.as_deref()).await?;
        let (record, key) = store_of(&state)?
            .create_key(new)
            .await
            .map_err(|e| store_err(&e))?;
        let record = KeyView::new(&state, record);
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
        (status = 400, description = "Invalid input (the message and `param` name the field), or no database is configured (`unsupported`).", body = OpenAiError),
        (status = 404, description = "No key with this id.", body = OpenAiError),
        (status = 413, description = "The body is too large.", body = OpenAiError),
        crate::openapi::AdminErrors,
        crate::openapi::StoreFailed,
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
                 budget_tokens, budget_cost, budget_period, team, cache, cache_ttl",
            ));
        }
        update.check(unix_now()).map_err(problem)?;
        check_team_exists(&state, update.team.as_ref().and_then(Option::as_deref)).await?;
        let Some(record) = store_of(&state)?
            .update_key(id, update)
            .await
            .map_err(|e| store_err(&e))?
        else {
            return Err(key_not_found(id));
        };
        state.auth.keys_changed();
        let record = KeyView::new(&state, record);
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
        crate::openapi::AdminErrors,
        crate::openapi::StoreFailed,
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
            .map_err(|e| store_err(&e))?
            .into_iter()
            .map(|k| KeyView::new(&state, k))
            .collect();
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
        (status = 404, description = "No key with this id.", body = OpenAiError),
        crate::openapi::AdminErrors,
        crate::openapi::StoreFailed,
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
    /// `key`, `model`, `day` or `team` (default `model`).
    #[serde(default)]
    #[param(pattern = "^(key|model|day|team)$")]
    by: Option<String>,
    /// `YYYY-MM-DD`, inclusive (UTC days).
    #[serde(default)]
    since: Option<String>,
}

/// `GET /admin/usage?by=key|model|day|team&since=YYYY-MM-DD`: by key, rows carry the key's
/// name; by team, the group is the team's name (requests of keys in a team only).
#[utoipa::path(
    get,
    path = "/admin/usage",
    tag = "admin",
    operation_id = "adminUsage",
    summary = "Usage grouped by key, model, day or team, from the daily rollups",
    params(UsageQuery),
    responses(
        (status = 200, description = "One row per group.", body = UsageReport),
        (status = 400, description = "Invalid input (the message and `param` name the field), or no database is configured (`unsupported`).", body = OpenAiError),
        crate::openapi::AdminErrors,
        crate::openapi::StoreFailed,
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
            Some("team") => crate::store::GroupBy::Team,
            Some(other) => {
                let shown: String = other.chars().take(32).collect();
                return Err(ApiError::invalid(format!(
                    "`by` must be key, model, day or team, got `{shown}`"
                ))
                .param("by"));
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
    /// Only this key: its id (an integer) or its exact name.
    #[serde(default)]
    key: Option<String>,
    /// At most this many records (a positive integer; default 100, at most 10,000).
    #[serde(default)]
    #[param(value_type = Option<u32>, minimum = 1)]
    limit: Option<String>,
    /// Records at or after this time, unix milliseconds.
    #[serde(default)]
    #[param(value_type = Option<i64>)]
    from: Option<String>,
    /// Records before this time, unix milliseconds.
    #[serde(default)]
    #[param(value_type = Option<i64>)]
    to: Option<String>,
    /// Only this public model (exact).
    #[serde(default)]
    model: Option<String>,
    /// Only this channel (exact).
    #[serde(default)]
    channel: Option<String>,
    /// `2xx`, `3xx`, `4xx`, `5xx`, `error` (failed, cancelled or interrupted), `ok`, or an
    /// exact status (0 for interrupted requests).
    #[serde(default)]
    status: Option<String>,
    /// Text contained (ASCII case-insensitively) in the request id, the client's request id,
    /// the model, the channel, the error kind or the key's name; at most 200 characters.
    #[serde(default)]
    q: Option<String>,
    /// The `next` of the previous page (`AT_MS:REQUEST_ID`), or a time in unix milliseconds:
    /// only records after it, newest first.
    #[serde(default)]
    before: Option<String>,
}

/// A unix-milliseconds query value between 0 and the year 9999.
fn millis_param(name: &'static str, v: &str) -> Result<i64, ApiError> {
    v.trim()
        .parse::<i64>()
        .ok()
        .filter(|t| (0..=crate::store::SeriesQuery::MAX_TIME_MS).contains(t))
        .ok_or_else(|| {
            ApiError::invalid(format!(
                "`{name}` must be a time in unix milliseconds (0 to {}), got `{}`",
                crate::store::SeriesQuery::MAX_TIME_MS,
                clip(v)
            ))
            .param(name)
        })
}

/// A client value quoted in an error message, cut to 64 characters.
fn clip(v: &str) -> String {
    let mut out: String = v.chars().take(64).collect();
    if v.chars().count() > 64 {
        out.push('…');
    }
    out
}

/// A name filter: non-empty, at most [`RecordSearch::MAX_NAME_BYTES`](crate::store::RecordSearch) bytes.
fn name_param(name: &'static str, v: Option<String>) -> Result<Option<String>, ApiError> {
    match v {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) if v.len() > crate::store::RecordSearch::MAX_NAME_BYTES => {
            Err(ApiError::invalid(format!(
                "`{name}` must be at most {} bytes",
                crate::store::RecordSearch::MAX_NAME_BYTES
            ))
            .param(name))
        }
        Some(v) => Ok(Some(v)),
    }
}

/// The search a `GET /admin/usage/records` query asks for, or the 400 that names the bad
/// parameter.
fn record_search(q: RecordsQuery) -> Result<crate::store::RecordSearch, ApiError> {
    use crate::store::{Cursor, RecordQuery, RecordSearch, StatusFilter};
    let mut s = RecordSearch::default();
    match name_param("key", q.key)? {
        None => {}
        Some(v) => match v.trim().parse::<i64>() {
            Ok(id) => s.key_id = Some(id),
            Err(_) => s.key_name = Some(v),
        },
    }
    if let Some(v) = q.limit.as_deref() {
        s.limit = v.parse::<u32>().ok().filter(|n| *n > 0).ok_or_else(|| {
            ApiError::invalid(format!(
                "`limit` must be a positive integer (at most {}), got `{}`",
                RecordQuery::MAX_LIMIT,
                clip(v)
            ))
            .param("limit")
        })?;
    }
    s.from_ms = q
        .from
        .as_deref()
        .map(|v| millis_param("from", v))
        .transpose()?;
    s.to_ms = q.to.as_deref().map(|v| millis_param("to", v)).transpose()?;
    s.model = name_param("model", q.model)?;
    s.channel = name_param("channel", q.channel)?;
    if let Some(v) = q.status.as_deref().filter(|v| !v.is_empty()) {
        s.status = Some(StatusFilter::parse(v).ok_or_else(|| {
            ApiError::invalid(format!(
                "`status` must be 2xx, 3xx, 4xx, 5xx, error, ok or a status code, got `{}`",
                clip(v)
            ))
            .param("status")
        })?);
    }
    if let Some(v) = q.q.filter(|v| !v.trim().is_empty()) {
        if v.chars().count() > RecordSearch::MAX_TEXT_CHARS {
            return Err(ApiError::invalid(format!(
                "`q` must be at most {} characters",
                RecordSearch::MAX_TEXT_CHARS
            ))
            .param("q"));
        }
        s.text = Some(v.trim().to_owned());
    }
    if let Some(v) = q.before.as_deref().filter(|v| !v.is_empty()) {
        s.before = Some(Cursor::parse(v).ok_or_else(|| {
            ApiError::invalid(format!(
                "`before` must be a page's `next` (AT_MS:REQUEST_ID) or a time in unix \
                 milliseconds, got `{}`",
                clip(v)
            ))
            .param("before")
        })?);
    }
    Ok(s)
}

/// `GET /admin/usage/records`: the request log, newest first, filtered and paged.
#[utoipa::path(
    get,
    path = "/admin/usage/records",
    tag = "admin",
    operation_id = "adminUsageRecords",
    summary = "Search the request log: raw usage records with their key names, newest first",
    params(RecordsQuery),
    responses(
        (status = 200, description = "One page of records; `next` continues it.", body = crate::store::RecordPage),
        (status = 400, description = "Invalid input (the message and `param` name the field), or no database is configured (`unsupported`).", body = OpenAiError),
        crate::openapi::AdminErrors,
        crate::openapi::StoreFailed,
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
        let search = record_search(q)?;
        let page = store_of(&state)?
            .search_records(search)
            .await
            .map_err(|e| store_err(&e))?;
        Ok(Json(page).into_response())
    })
    .await
}

/// Query of `GET /admin/usage/series`.
#[derive(Debug, serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SeriesParams {
    /// Start, unix milliseconds, inclusive (default: 24 hours before `to`).
    #[serde(default)]
    #[param(value_type = Option<i64>)]
    from: Option<String>,
    /// End, unix milliseconds, exclusive (default: now).
    #[serde(default)]
    #[param(value_type = Option<i64>)]
    to: Option<String>,
    /// `minute`, `hour` or `day` (default: the narrowest that needs at most 500 buckets).
    #[serde(default)]
    #[param(pattern = "^(minute|hour|day)$")]
    bucket: Option<String>,
    /// `model`, `channel`, `key` or `team` (default `model`).
    #[serde(default)]
    #[param(pattern = "^(model|channel|key|team)$")]
    by: Option<String>,
}

/// The series a `GET /admin/usage/series` query asks for, `now_ms` filling the defaults.
fn series_query(q: SeriesParams, now_ms: i64) -> Result<crate::store::SeriesQuery, ApiError> {
    use crate::store::{Bucket, SeriesBy, SeriesQuery};
    const DAY_MS: i64 = 86_400_000;
    let to_ms = match q.to.as_deref() {
        Some(v) => millis_param("to", v)?,
        None => now_ms,
    };
    let from_ms = match q.from.as_deref() {
        Some(v) => millis_param("from", v)?,
        None => to_ms.saturating_sub(DAY_MS).max(0),
    };
    let bucket = match q.bucket.as_deref() {
        None | Some("") => Bucket::fitting(from_ms, to_ms),
        Some(v) => Bucket::parse(v).ok_or_else(|| {
            ApiError::invalid(format!(
                "`bucket` must be minute, hour or day, got `{}`",
                clip(v)
            ))
            .param("bucket")
        })?,
    };
    let by = match q.by.as_deref() {
        None | Some("") => SeriesBy::Model,
        Some(v) => SeriesBy::parse(v).ok_or_else(|| {
            ApiError::invalid(format!(
                "`by` must be model, channel, key or team, got `{}`",
                clip(v)
            ))
            .param("by")
        })?,
    };
    let query = SeriesQuery {
        from_ms,
        to_ms,
        bucket,
        by,
    };
    query.check().map_err(|why| {
        let param = if to_ms <= from_ms { "to" } else { "bucket" };
        ApiError::invalid(why).param(param)
    })?;
    Ok(query)
}

/// `GET /admin/usage/series`: usage over time for the dashboard's charts.
#[utoipa::path(
    get,
    path = "/admin/usage/series",
    tag = "admin",
    operation_id = "adminUsageSeries",
    summary = "Usage over time per model, channel, key or team: requests, tokens, cost, errors, p50/p99 latency and TTFT",
    description = "From the raw records in `[from, to)`, in UTC-aligned buckets (at most 500), one series per group (at most 20: the groups past the 19 busiest are summed under `__other__`). Percentiles are exact nearest-rank values on both database backends.",
    params(SeriesParams),
    responses(
        (status = 200, description = "The series and their non-empty (bucket, series) points.", body = crate::store::UsageSeries),
        (status = 400, description = "Invalid input (the message and `param` name the field), or no database is configured (`unsupported`).", body = OpenAiError),
        crate::openapi::AdminErrors,
        crate::openapi::StoreFailed,
    ),
    security(("admin_key" = []))
)]
pub async fn usage_series(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestCtx>,
    axum::extract::Query(q): axum::extract::Query<SeriesParams>,
    headers: HeaderMap,
) -> Response {
    guarded(state, ctx, headers, |state| async move {
        let now_ms = unix_now().saturating_mul(1000);
        let query = series_query(q, now_ms)?;
        let series = store_of(&state)?
            .usage_series(query)
            .await
            .map_err(|e| store_err(&e))?;
        Ok(Json(series).into_response())
    })
    .await
}
