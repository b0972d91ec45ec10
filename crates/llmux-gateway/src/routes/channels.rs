//! `/admin/channels` writes and tests, guarded by `server.admin_key` like the rest of
//! `/admin/*`: `POST /admin/channels` adds a channel (the fields of a `[[channels]]` table of
//! llmux.toml, as JSON), `PATCH /admin/channels/{name}` changes any of them (`enabled`
//! included), `DELETE /admin/channels/{name}` removes one, and `POST
//! /admin/channels/{name}/test` makes a real one-token call through it, and `POST
//! /admin/channels/{name}/discover` asks its upstream for its models now (see
//! [`crate::discovery`]). Changes are stored in
//! the database and applied at once here, and by every other gateway on the same database
//! within its `server.channel_refresh` (see [`crate::channels`] for the sources and their
//! precedence). Credentials are sealed before they are stored and only ever shown masked.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use llmux_core::{ChatRequest, ErrorKind, Message};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::admin::{channel_info, guarded, store_err, ChannelInfo};
use crate::channels::{
    StoreChannelError, MAX_BODY_BYTES, MAX_CHANNELS, MAX_CHANNEL_MODELS, MAX_CREDENTIAL_BYTES,
    MAX_KEYS, MAX_MODEL_BYTES, MAX_NAME_BYTES, MAX_URL_BYTES,
};
use crate::config::{check_channel, ChannelSource, RawChannel, RawModels};
use crate::error::ApiError;
use crate::ingress::openai::OpenAiError;
use crate::state::{AppState, RequestCtx};
use crate::store::channels::{ChannelStore, Inserted};

/// The longest a channel test waits for its upstream.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(60);

/// `POST`/`PATCH /admin/channels…`: the channel as it is now.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ChannelAnswer {
    /// The channel (credentials masked).
    pub channel: ChannelInfo,
}

/// `DELETE /admin/channels/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct DeletedChannel {
    /// The name of the deleted channel.
    pub deleted: String,
}

/// `POST /admin/channels/{name}/test`: how a one-token call through the channel went.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ChannelTest {
    /// The call succeeded.
    pub ok: bool,
    /// Time of the call, in milliseconds.
    pub latency_ms: u64,
    /// The model asked for (as the channel names it publicly, or as given).
    pub model: String,
    /// The model sent upstream.
    pub upstream_model: String,
    /// Why it failed (client-safe text), when it did.
    pub error: Option<String>,
    /// The failure's kind (`authentication`, `timeout`, …), when it failed.
    pub kind: Option<String>,
}

/// The JSON body of `POST /admin/channels` (documentation only: the handler reads the body
/// itself, so errors name the field).
#[derive(Debug, ToSchema)]
#[schema(
    description = "The fields of a `[[channels]]` table of llmux.toml. Credentials are the \
    provider's fields (`api_key`, `secret_id`, …) written directly in the object, literal values \
    only (no `env:`); `api_keys` adds keys used in rotation."
)]
pub struct NewChannel {
    /// Unique name: 1 to 64 ASCII letters, digits, `.`, `_` or `-`.
    pub name: String,
    /// Provider id (`openai`, `dashscope`, …).
    pub provider: String,
    /// Endpoint override.
    pub base_url: Option<String>,
    /// Region (selects a regional host when no base URL is given).
    pub region: Option<String>,
    /// A list of model names, or an object of public name → upstream name (at most 1,000).
    #[schema(value_type = Object)]
    pub models: Option<Value>,
    /// Relative share of traffic within its priority (default 1).
    pub weight: Option<u32>,
    /// Higher priorities are tried first (default 0).
    pub priority: Option<i32>,
    /// Also serve `name/<any model>` (default false).
    pub passthrough: Option<bool>,
    /// The API key (for providers that take one).
    pub api_key: Option<String>,
    /// More keys, used in rotation with `api_key` (at most 32 keys in all).
    pub api_keys: Option<Vec<String>>,
    /// Whether it takes traffic (default true).
    pub enabled: Option<bool>,
    /// Ask the upstream for its models (served beside `models`) when the channel starts and
    /// then about this often: an interval from `1m` to `168h` such as `6h`, or `on-demand`
    /// (the default: only through `POST /admin/channels/{name}/discover`). With it, `models`
    /// may be empty. The provider must have a model list.
    pub discover: Option<String>,
}

/// The optional body of `POST /admin/channels/{name}/test`.
#[derive(Debug, Default, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestRequest {
    /// The model to call: one of the channel's public or upstream names (any model for a
    /// passthrough channel); default its first model.
    #[serde(default)]
    pub model: Option<String>,
}

fn conflict(code: &'static str, message: impl Into<String>) -> ApiError {
    let mut e = ApiError::invalid(message).with_code(code);
    e.status = Some(http::StatusCode::CONFLICT);
    e
}

fn not_found(name: &str) -> ApiError {
    let mut e = ApiError::new(ErrorKind::NotFound, format!("no channel named `{name}`"));
    e.code = Some("channel_not_found");
    e
}

fn no_database() -> ApiError {
    ApiError::new(
        ErrorKind::Unsupported,
        "channels can be changed only with a database (server.database); without one, edit llmux.toml and send SIGHUP",
    )
}

fn channel_store(state: &AppState) -> Result<&dyn ChannelStore, ApiError> {
    state.channels.store().ok_or_else(no_database)
}

/// The body as a JSON object, within [`MAX_BODY_BYTES`].
fn body_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(ApiError::too_large(MAX_BODY_BYTES));
    }
    crate::ingress::openai::from_json(body)
}

/// Every credential field name of any registered provider.
fn is_credential(field: &str) -> bool {
    llmux_core::providers::REGISTRY
        .iter()
        .any(|s| s.credentials.iter().any(|c| c.field == field))
}

/// A channel table from a JSON object: the bounds first (without echoing any credential),
/// then the same checks as the file's channels. Errors are 400 naming the field.
fn parse_channel(mut obj: Map<String, Value>) -> Result<RawChannel, ApiError> {
    let bad =
        |field: &str, rule: String| ApiError::invalid(format!("`{field}` {rule}")).param(field);
    let mut credentials = Map::new();
    let fields: Vec<String> = obj.keys().cloned().collect();
    for field in fields {
        if !is_credential(&field) {
            continue;
        }
        let Some(v) = obj.remove(&field) else {
            continue;
        };
        match v {
            Value::String(s) => {
                check_secret(&field, &s)?;
                credentials.insert(field, Value::String(s));
            }
            _ => return Err(bad(&field, "must be a string".into())),
        }
    }
    if obj.contains_key("credentials") {
        return Err(bad(
            "credentials",
            "is not a field here: write the provider's credential fields (`api_key`, …) directly"
                .into(),
        ));
    }
    if let Some(keys) = obj.get("api_keys") {
        let Some(list) = keys.as_array() else {
            return Err(bad("api_keys", "must be a list of strings".into()));
        };
        for (i, k) in list.iter().enumerate() {
            let Some(s) = k.as_str() else {
                return Err(bad("api_keys", "must be a list of strings".into()));
            };
            check_secret(&format!("api_keys[{i}]"), s)?;
        }
        let total = list.len() + usize::from(credentials.contains_key("api_key"));
        if total > MAX_KEYS {
            return Err(bad(
                "api_keys",
                format!("may hold at most {MAX_KEYS} keys with `api_key`"),
            ));
        }
    }
    match obj.get("name") {
        Some(Value::String(n)) => check_name(n)?,
        Some(_) => return Err(bad("name", "must be a string".into())),
        None => return Err(bad("name", "is required".into())),
    }
    for field in ["base_url", "region"] {
        if let Some(Value::String(s)) = obj.get(field) {
            if s.len() > MAX_URL_BYTES {
                return Err(bad(field, format!("must be at most {MAX_URL_BYTES} bytes")));
            }
        }
    }
    if let Some(models) = obj.get("models") {
        let names: Vec<&str> = match models {
            Value::Array(v) => v.iter().filter_map(Value::as_str).collect(),
            Value::Object(m) => m
                .iter()
                .flat_map(|(k, v)| [k.as_str(), v.as_str().unwrap_or("")])
                .collect(),
            _ => Vec::new(),
        };
        let count = match models {
            Value::Array(v) => v.len(),
            Value::Object(m) => m.len(),
            _ => 0,
        };
        if count > MAX_CHANNEL_MODELS {
            return Err(bad(
                "models",
                format!("may list at most {MAX_CHANNEL_MODELS} models"),
            ));
        }
        if names.iter().any(|n| n.len() > MAX_MODEL_BYTES) {
            return Err(bad(
                "models",
                format!("names must be at most {MAX_MODEL_BYTES} bytes"),
            ));
        }
    }
    if !credentials.is_empty() {
        obj.insert("credentials".into(), Value::Object(credentials));
    }
    let raw: RawChannel = serde_path_to_error::deserialize(Value::Object(obj)).map_err(|e| {
        let path = e.path().to_string();
        ApiError::invalid(format!("invalid channel at `{path}`: {}", e.inner())).param(path)
    })?;
    let mut issues = Vec::new();
    check_channel("", raw.clone(), ChannelSource::Api, &|_| None, &mut issues);
    if let Some(issue) = issues.into_iter().next() {
        return Err(
            ApiError::invalid(format!("`{}` {}", issue.path, issue.message)).param(issue.path),
        );
    }
    Ok(raw)
}

/// Credential values: literal, non-empty and bounded. The message never repeats the value.
fn check_secret(field: &str, value: &str) -> Result<(), ApiError> {
    let rule = if value.is_empty() {
        "must not be empty"
    } else if value.len() > MAX_CREDENTIAL_BYTES {
        "is too long (at most 4096 bytes)"
    } else if value.starts_with("env:") {
        "must be the value itself: `env:` references are read only from llmux.toml"
    } else {
        return Ok(());
    };
    Err(ApiError::invalid(format!("`{field}` {rule}")).param(field))
}

fn check_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "`name` must be 1 to {MAX_NAME_BYTES} ASCII letters, digits, `.`, `_` or `-`"
        ))
        .param("name"))
    }
}

/// A channel table as the JSON object `POST` takes (credentials included: only ever used to
/// merge a `PATCH`, never answered).
fn raw_to_object(raw: &RawChannel) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("name".into(), raw.name.clone().into());
    m.insert("provider".into(), raw.provider.clone().into());
    if let Some(u) = &raw.base_url {
        m.insert("base_url".into(), u.clone().into());
    }
    if let Some(r) = &raw.region {
        m.insert("region".into(), r.clone().into());
    }
    let models = match &raw.models {
        RawModels::List(v) => Value::from(v.clone()),
        RawModels::Table(t) => Value::Object(
            t.iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect(),
        ),
    };
    m.insert("models".into(), models);
    m.insert("weight".into(), raw.weight.into());
    m.insert("priority".into(), raw.priority.into());
    m.insert("passthrough".into(), raw.passthrough.into());
    m.insert("enabled".into(), raw.enabled.into());
    if let Some(every) = raw.discover {
        m.insert(
            "discover".into(),
            crate::discovery::format_interval(every).into(),
        );
    }
    for (f, v) in &raw.credentials {
        m.insert(f.clone(), v.clone().into());
    }
    if !raw.api_keys.is_empty() {
        m.insert("api_keys".into(), Value::from(raw.api_keys.clone()));
    }
    m
}

fn seal_err(e: StoreChannelError) -> ApiError {
    match e {
        StoreChannelError::NoMasterKey => {
            ApiError::invalid(e.to_string()).with_code("master_key_missing")
        }
        other => {
            tracing::error!(error = %other, "admin: sealing channel credentials failed");
            ApiError::new(
                ErrorKind::Internal,
                "could not seal the credentials; see the logs",
            )
        }
    }
}

/// Reloads this gateway's table after a change, then answers with `name` as it is now.
async fn answer_channel(
    state: &AppState,
    name: &str,
    status: http::StatusCode,
) -> Result<Response, ApiError> {
    state
        .channels
        .refresh(&state.routes)
        .await
        .map_err(|e| store_err(&e))?;
    let routes = state.routes.current();
    let Some(ch) = routes.find(name) else {
        // Stored, but it cannot be built here (logged by the reload).
        return Err(ApiError::new(
            ErrorKind::Internal,
            format!("channel `{name}` is stored but could not be loaded; see the logs"),
        ));
    };
    Ok((
        status,
        Json(ChannelAnswer {
            channel: channel_info(state, &routes, ch),
        }),
    )
        .into_response())
}

/// `POST /admin/channels`: adds a channel (stored in the database, credentials sealed).
#[utoipa::path(
    post,
    path = "/admin/channels",
    tag = "admin",
    operation_id = "adminCreateChannel",
    summary = "Add a channel",
    request_body(content = NewChannel, content_type = "application/json"),
    responses(
        (status = 201, description = "The channel, credentials masked.", body = ChannelAnswer),
        (status = 400, description = "Invalid input (the message and `param` name the field), credentials without `LLMUX_MASTER_KEY` (`master_key_missing`), or no database is configured (`unsupported`).", body = OpenAiError),
        (status = 409, description = "A channel of that name exists (`channel_exists`), or the most channels are stored (`too_many_channels`).", body = OpenAiError),
        (status = 413, description = "The body is too large.", body = OpenAiError),
        crate::openapi::AdminErrors,
        crate::openapi::StoreFailed,
    ),
    security(("admin_key" = []))
)]
pub async fn create_channel(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestCtx>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    guarded(state, ctx, headers, |state| async move {
        let obj = body_object(&body)?;
        let cs = channel_store(&state)?;
        let raw = parse_channel(obj)?;
        if state.channels.in_file(&raw.name) {
            return Err(conflict(
                "channel_exists",
                format!("channel `{}` exists (defined in llmux.toml)", raw.name),
            ));
        }
        let row = state.channels.encode(&raw).map_err(seal_err)?;
        match cs
            .insert_channel(&row, MAX_CHANNELS)
            .await
            .map_err(|e| store_err(&e))?
        {
            Inserted::Added => {}
            Inserted::Duplicate => {
                return Err(conflict(
                    "channel_exists",
                    format!("channel `{}` exists", raw.name),
                ))
            }
            Inserted::Full => {
                return Err(conflict(
                    "too_many_channels",
                    format!("at most {MAX_CHANNELS} channels can be stored"),
                ))
            }
        }
        tracing::info!(channel = %raw.name, provider = %raw.provider, "channel added by an admin");
        answer_channel(&state, &raw.name, http::StatusCode::CREATED).await
    })
    .await
}

/// `PATCH /admin/channels/{name}`: changes any fields of a stored channel (`null` removes an
/// optional one); on a channel of llmux.toml only `enabled`.
#[utoipa::path(
    patch,
    path = "/admin/channels/{name}",
    tag = "admin",
    operation_id = "adminUpdateChannel",
    summary = "Change a channel, or enable or disable it",
    params(("name" = String, Path, description = "The channel's name.")),
    request_body(content = NewChannel, content_type = "application/json",
        description = "Any subset of the fields of `POST /admin/channels` (not `name`); `null` removes an optional field. `{\"enabled\": false}` disables the channel, `{\"enabled\": true}` enables it (and closes its breakers)."),
    responses(
        (status = 200, description = "The channel as changed, credentials masked.", body = ChannelAnswer),
        (status = 400, description = "Invalid input (the message and `param` name the field), credentials without `LLMUX_MASTER_KEY` (`master_key_missing`), or no database is configured (`unsupported`).", body = OpenAiError),
        (status = 404, description = "No channel has that name (`channel_not_found`).", body = OpenAiError),
        (status = 409, description = "The channel is defined in llmux.toml and only `enabled` can change (`channel_in_file`), or it changed meanwhile (`channel_changed`).", body = OpenAiError),
        (status = 413, description = "The body is too large.", body = OpenAiError),
        crate::openapi::AdminErrors,
        crate::openapi::StoreFailed,
    ),
    security(("admin_key" = []))
)]
pub async fn update_channel(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestCtx>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    guarded(state, ctx, headers, |state| async move {
        let patch = body_object(&body)?;
        if patch.is_empty() {
            return Err(ApiError::invalid("nothing to change: send one or more fields of the channel"));
        }
        if patch.get("name").is_some_and(|n| n.as_str() != Some(name.as_str())) {
            return Err(ApiError::invalid("`name` cannot change: delete the channel and add it anew").param("name"));
        }
        let enabled = match patch.get("enabled") {
            None => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => return Err(ApiError::invalid("`enabled` must be true or false").param("enabled")),
        };
        let cs = channel_store(&state)?;
        if state.channels.in_file(&name) {
            if patch.keys().any(|k| k != "enabled" && k != "name") {
                return Err(conflict(
                    "channel_in_file",
                    format!("channel `{name}` is defined in llmux.toml: change it there (and send SIGHUP); through the API only `enabled` can change"),
                ));
            }
            let Some(on) = enabled else {
                return Err(ApiError::invalid("nothing to change: send `enabled`"));
            };
            cs.set_channel_enabled(&name, ChannelSource::File.as_str(), on)
                .await
                .map_err(|e| store_err(&e))?;
        } else {
            let row = cs
                .get_channel(&name)
                .await
                .map_err(|e| store_err(&e))?
                .filter(|r| r.source == ChannelSource::Api.as_str())
                .ok_or_else(|| not_found(&name))?;
            let current = state.channels.stored_raw(&row).map_err(|e| {
                tracing::error!(channel = %name, error = %e, "admin: a stored channel cannot be read");
                ApiError::new(ErrorKind::Internal, format!("channel `{name}` cannot be read here; see the logs"))
            })?;
            let mut merged = raw_to_object(&current);
            for (k, v) in patch {
                if v.is_null() {
                    merged.remove(&k);
                } else {
                    merged.insert(k, v);
                }
            }
            let raw = parse_channel(merged)?;
            let new_row = state.channels.encode(&raw).map_err(seal_err)?;
            if !cs
                .replace_channel(&new_row, row.version)
                .await
                .map_err(|e| store_err(&e))?
            {
                return Err(conflict(
                    "channel_changed",
                    format!("channel `{name}` changed or was deleted meanwhile; read it and try again"),
                ));
            }
        }
        tracing::info!(channel = %name, "channel changed by an admin");
        let answer = answer_channel(&state, &name, http::StatusCode::OK).await?;
        if enabled == Some(true) {
            if let Some(ch) = state.routes.current().find(&name) {
                ch.reset_breakers();
            }
        }
        Ok(answer)
    })
    .await
}

/// `DELETE /admin/channels/{name}`: deletes a stored channel.
#[utoipa::path(
    delete,
    path = "/admin/channels/{name}",
    tag = "admin",
    operation_id = "adminDeleteChannel",
    summary = "Delete a channel",
    params(("name" = String, Path, description = "The channel's name.")),
    responses(
        (status = 200, description = "Deleted; requests in flight on it finish.", body = DeletedChannel),
        (status = 400, description = "No database is configured (`unsupported`).", body = OpenAiError),
        (status = 404, description = "No channel has that name (`channel_not_found`).", body = OpenAiError),
        (status = 409, description = "The channel is defined in llmux.toml (`channel_in_file`).", body = OpenAiError),
        crate::openapi::AdminErrors,
        crate::openapi::StoreFailed,
    ),
    security(("admin_key" = []))
)]
pub async fn delete_channel(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestCtx>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    guarded(state, ctx, headers, |state| async move {
        let cs = channel_store(&state)?;
        if state.channels.in_file(&name) {
            return Err(conflict(
                "channel_in_file",
                format!(
                    "channel `{name}` is defined in llmux.toml: remove it there (and send SIGHUP)"
                ),
            ));
        }
        let is_api = cs
            .get_channel(&name)
            .await
            .map_err(|e| store_err(&e))?
            .is_some_and(|r| r.source == ChannelSource::Api.as_str());
        if !is_api || !cs.delete_channel(&name).await.map_err(|e| store_err(&e))? {
            return Err(not_found(&name));
        }
        tracing::info!(channel = %name, "channel deleted by an admin");
        state
            .channels
            .refresh(&state.routes)
            .await
            .map_err(|e| store_err(&e))?;
        Ok(Json(DeletedChannel { deleted: name }).into_response())
    })
    .await
}

/// `POST /admin/channels/{name}/test`: a real one-token chat through the channel (its next
/// key in rotation), enabled or not; answers 200 whether or not the call succeeded.
#[utoipa::path(
    post,
    path = "/admin/channels/{name}/test",
    tag = "admin",
    operation_id = "adminTestChannel",
    summary = "Test a channel with a one-token chat",
    params(("name" = String, Path, description = "The channel's name.")),
    request_body(content = TestRequest, content_type = "application/json",
        description = "Optional: `{\"model\": …}`, one of the channel's models (default its first)."),
    responses(
        (status = 200, description = "How the call went (`ok`, `latency_ms`, `error`).", body = ChannelTest),
        (status = 400, description = "Invalid input (`model` not served by the channel).", body = OpenAiError),
        (status = 404, description = "No channel has that name (`channel_not_found`).", body = OpenAiError),
        (status = 413, description = "The body is too large.", body = OpenAiError),
        crate::openapi::AdminErrors,
    ),
    security(("admin_key" = []))
)]
pub async fn test_channel(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestCtx>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    guarded(state, ctx, headers, |state| async move {
        let req: TestRequest = if body.iter().all(u8::is_ascii_whitespace) {
            TestRequest::default()
        } else if body.len() > MAX_BODY_BYTES {
            return Err(ApiError::too_large(MAX_BODY_BYTES));
        } else {
            crate::ingress::openai::from_json(&body)?
        };
        let routes = state.routes.current();
        let ch = routes.find(&name).ok_or_else(|| not_found(&name))?.clone();
        let (model, upstream) = match req.model {
            Some(m) if m.len() > MAX_MODEL_BYTES || m.trim().is_empty() => {
                return Err(ApiError::invalid(format!("`model` must be a model name of at most {MAX_MODEL_BYTES} bytes")).param("model"))
            }
            Some(m) => match ch.models.get(&m) {
                Some(up) => (m.clone(), up.clone()),
                None if ch.passthrough
                    || ch.models.values().any(|u| *u == m)
                    || ch.discovered().is_some_and(|d| d.contains(&m)) =>
                {
                    (m.clone(), m)
                }
                None => {
                    return Err(ApiError::invalid(format!("channel `{name}` does not serve `{m}`")).param("model"))
                }
            },
            None => match ch.models.iter().next() {
                Some((p, u)) => (p.clone(), u.clone()),
                None if ch.discovered().is_some_and(|d| !d.is_empty()) => {
                    let first = ch.discovered().and_then(|d| d.first().cloned()).unwrap_or_default();
                    (first.clone(), first)
                }
                None => {
                    return Err(ApiError::invalid(format!("channel `{name}` lists no model: give one in `model`")).param("model"))
                }
            },
        };
        let mut chat = ChatRequest::new(upstream.clone(), vec![Message::user("ping")]);
        chat.max_tokens = Some(1);
        let up = ch.pick();
        let began = tokio::time::Instant::now();
        let result = tokio::time::timeout(
            TEST_TIMEOUT,
            up.client.chat_with(up.provider.as_ref(), &upstream, &chat),
        )
        .await;
        let latency_ms = u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX);
        let (ok, error, kind) = match result {
            Ok(Ok(_)) => (true, None, None),
            Ok(Err(e)) => (false, Some(e.message().to_owned()), Some(e.kind().as_str().to_owned())),
            Err(_) => (
                false,
                Some(format!("no answer within {}s", TEST_TIMEOUT.as_secs())),
                Some(ErrorKind::Timeout.as_str().to_owned()),
            ),
        };
        tracing::info!(channel = %name, ok, latency_ms, kind = kind.as_deref().unwrap_or(""), "channel tested by an admin");
        Ok(Json(ChannelTest {
            ok,
            latency_ms,
            model,
            upstream_model: upstream,
            error,
            kind,
        })
        .into_response())
    })
    .await
}

/// `POST /admin/channels/{name}/discover`: asks the channel's upstream for its models now; the
/// listed models become routable through the channel (see [`crate::discovery`]). Works on any
/// channel, file or API, enabled or not (a disabled one serves them once enabled).
#[utoipa::path(
    post,
    path = "/admin/channels/{name}/discover",
    tag = "admin",
    operation_id = "adminDiscoverChannelModels",
    summary = "Ask a channel's upstream for its models and serve them",
    params(("name" = String, Path, description = "The channel's name.")),
    responses(
        (status = 200, description = "What the upstream listed (bounded) and what the channel serves now.", body = crate::discovery::Discovered),
        (status = 400, description = "The channel's provider cannot list its models (`unsupported`).", body = OpenAiError),
        (status = 404, description = "No channel has that name (`channel_not_found`).", body = OpenAiError),
        (status = 502, description = "The upstream failed to list its models, or listed more than the gateway accepts; the last good list is kept.", body = OpenAiError),
        (status = 504, description = "The upstream did not list its models in time; the last good list is kept.", body = OpenAiError),
        crate::openapi::AdminErrors,
    ),
    security(("admin_key" = []))
)]
pub async fn discover_channel(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestCtx>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    guarded(state, ctx, headers, |state| async move {
        let found = crate::discovery::discover(&state.routes, &name).await?;
        tracing::info!(channel = %name, models = found.upstream.len(), skipped = found.skipped, "channel models discovered by an admin");
        Ok(Json(found).into_response())
    })
    .await
}
