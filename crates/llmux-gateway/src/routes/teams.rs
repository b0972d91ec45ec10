//! `/admin/teams`, guarded by `server.admin_key`: list, create, read, change and delete teams.
//! A team groups virtual keys (`POST /admin/keys` with `team`, `PATCH /admin/keys/{id}` with
//! `team` or `team: null`); its rates and budgets are shared by its keys, on top of each key's
//! own. Deleting a team that still has keys is refused (409, naming them) unless the request
//! says `?detach=true`, which takes the keys out of the team first.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};

use super::admin::{guarded, problem, store_err, store_of};
use crate::error::ApiError;
use crate::ingress::openai::OpenAiError;
use crate::state::{AppState, RequestCtx};
use crate::store::{KeyRef, NewTeam, TeamDeletion, TeamRecord, TeamUpdate};

/// `GET /admin/teams`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct TeamList {
    /// Every team, by name.
    pub teams: Vec<TeamView>,
}

/// A team as the admin API shows it: the stored record, and its budget as it stands now.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct TeamView {
    /// The stored record.
    #[serde(flatten)]
    pub record: TeamRecord,
    /// The team's budget now: the current period's spend and when the budget resets.
    pub budget_now: crate::limits::BudgetNow,
}

impl TeamView {
    /// `record` with its budget at the gateway's time, in its budget time zone.
    fn new(state: &AppState, record: TeamRecord) -> TeamView {
        let now_ms = state.limits.clock().now_ms();
        let budget_now =
            state
                .limits
                .calendar()
                .budget_now(record.budget_period, now_ms, |label| {
                    record.budget_spend(label)
                });
        TeamView { record, budget_now }
    }
}

/// A team and its keys.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct TeamDetail {
    /// The team as stored, with its budget now.
    pub team: TeamView,
    /// Its keys (revoked ones included), by id.
    pub keys: Vec<KeyRef>,
}

/// `DELETE /admin/teams/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct DeletedTeam {
    /// The name of the deleted team.
    pub deleted: String,
    /// The keys taken out of it (`?detach=true`); they keep their own limits.
    pub detached: Vec<KeyRef>,
}

/// Query of `DELETE /admin/teams/{name}`.
#[derive(Debug, serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeleteQuery {
    /// `true` takes the team's keys out of it before deleting it; otherwise a team with keys is
    /// not deleted.
    #[serde(default)]
    #[param(value_type = Option<bool>)]
    detach: Option<String>,
}

/// 404 for a team name that does not exist.
pub(crate) fn team_not_found(name: &str) -> ApiError {
    let shown: String = name.chars().take(64).collect();
    let mut e = ApiError::new(
        llmux_core::ErrorKind::NotFound,
        format!("no team named `{shown}`"),
    );
    e.code = Some("team_not_found");
    e
}

/// 409 with a code.
fn conflict(code: &'static str, message: String) -> ApiError {
    let mut e = ApiError::invalid(message);
    e.status = Some(http::StatusCode::CONFLICT);
    e.code = Some(code);
    e
}

/// `GET /admin/teams`.
#[utoipa::path(
    get,
    path = "/admin/teams",
    tag = "admin",
    operation_id = "adminListTeams",
    summary = "Every team, with its limits, budget period and spend",
    responses(
        (status = 200, description = "The teams, by name.", body = TeamList),
        (status = 400, description = "No database is configured (`unsupported`).", body = OpenAiError),
        crate::openapi::AdminErrors,
        crate::openapi::StoreFailed,
    ),
    security(("admin_key" = []))
)]
pub async fn list_teams(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestCtx>,
    headers: HeaderMap,
) -> Response {
    guarded(state, ctx, headers, |state| async move {
        let teams = store_of(&state)?
            .list_teams()
            .await
            .map_err(|e| store_err(&e))?
            .into_iter()
            .map(|t| TeamView::new(&state, t))
            .collect();
        Ok(Json(TeamList { teams }).into_response())
    })
    .await
}

/// `POST /admin/teams` with a `NewTeam` body.
#[utoipa::path(
    post,
    path = "/admin/teams",
    tag = "admin",
    operation_id = "adminCreateTeam",
    summary = "Create a team",
    request_body(content = NewTeam, content_type = "application/json"),
    responses(
        (status = 201, description = "The team.", body = TeamDetail),
        (status = 400, description = "Invalid input (the message and `param` name the field), or no database is configured (`unsupported`).", body = OpenAiError),
        (status = 409, description = "A team has that name already (`team_exists`).", body = OpenAiError),
        (status = 413, description = "The body is too large.", body = OpenAiError),
        crate::openapi::AdminErrors,
        crate::openapi::StoreFailed,
    ),
    security(("admin_key" = []))
)]
pub async fn create_team(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestCtx>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    guarded(state, ctx, headers, |state| async move {
        let new: NewTeam = crate::ingress::openai::from_json(&body)?;
        new.check().map_err(problem)?;
        let name = new.name.clone();
        let Some(team) = store_of(&state)?
            .create_team(new)
            .await
            .map_err(|e| store_err(&e))?
        else {
            return Err(conflict(
                "team_exists",
                format!("a team named `{name}` exists already"),
            )
            .param("name"));
        };
        let detail = TeamDetail {
            team: TeamView::new(&state, team),
            keys: Vec::new(),
        };
        Ok((http::StatusCode::CREATED, Json(detail)).into_response())
    })
    .await
}

/// `GET /admin/teams/{name}`.
#[utoipa::path(
    get,
    path = "/admin/teams/{name}",
    tag = "admin",
    operation_id = "adminGetTeam",
    summary = "A team and its keys",
    params(("name" = String, Path, description = "The team's name.")),
    responses(
        (status = 200, description = "The team and its keys.", body = TeamDetail),
        (status = 400, description = "No database is configured (`unsupported`).", body = OpenAiError),
        (status = 404, description = "No team has that name (`team_not_found`).", body = OpenAiError),
        crate::openapi::AdminErrors,
        crate::openapi::StoreFailed,
    ),
    security(("admin_key" = []))
)]
pub async fn get_team(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestCtx>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    guarded(state, ctx, headers, |state| async move {
        let store = store_of(&state)?;
        let Some(team) = store.find_team(&name).await.map_err(|e| store_err(&e))? else {
            return Err(team_not_found(&name));
        };
        let keys = store.team_keys(team.id).await.map_err(|e| store_err(&e))?;
        let team = TeamView::new(&state, team);
        Ok(Json(TeamDetail { team, keys }).into_response())
    })
    .await
}

/// `PATCH /admin/teams/{name}` with a `TeamUpdate` body.
#[utoipa::path(
    patch,
    path = "/admin/teams/{name}",
    tag = "admin",
    operation_id = "adminUpdateTeam",
    summary = "Change a team's name, limits, budgets or budget period",
    params(("name" = String, Path, description = "The team's name.")),
    request_body(content = TeamUpdate, content_type = "application/json",
        description = "Absent fields stay as they are; `null` removes a limit."),
    responses(
        (status = 200, description = "The team as updated, and its keys.", body = TeamDetail),
        (status = 400, description = "Invalid input (the message and `param` name the field), or no database is configured (`unsupported`).", body = OpenAiError),
        (status = 404, description = "No team has that name (`team_not_found`).", body = OpenAiError),
        (status = 409, description = "Renaming onto the name of another team (`team_exists`).", body = OpenAiError),
        (status = 413, description = "The body is too large.", body = OpenAiError),
        crate::openapi::AdminErrors,
        crate::openapi::StoreFailed,
    ),
    security(("admin_key" = []))
)]
pub async fn update_team(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestCtx>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    guarded(state, ctx, headers, |state| async move {
        let update: TeamUpdate = crate::ingress::openai::from_json(&body)?;
        if update.is_empty() {
            return Err(ApiError::invalid(
                "nothing to change: send one or more of name, rpm, tpm, budget_tokens, \
                 budget_cost, budget_period",
            ));
        }
        update.check().map_err(problem)?;
        let store = store_of(&state)?;
        if let Some(new_name) = update.name.as_deref().filter(|n| *n != name) {
            if store
                .find_team(new_name)
                .await
                .map_err(|e| store_err(&e))?
                .is_some()
            {
                return Err(conflict(
                    "team_exists",
                    format!("a team named `{new_name}` exists already"),
                )
                .param("name"));
            }
        }
        let Some(team) = store
            .update_team(&name, update)
            .await
            .map_err(|e| store_err(&e))?
        else {
            return Err(team_not_found(&name));
        };
        // Cached keys carry their team's limits: read them again.
        state.auth.keys_changed();
        let keys = store.team_keys(team.id).await.map_err(|e| store_err(&e))?;
        let team = TeamView::new(&state, team);
        Ok(Json(TeamDetail { team, keys }).into_response())
    })
    .await
}

/// `DELETE /admin/teams/{name}[?detach=true]`.
#[utoipa::path(
    delete,
    path = "/admin/teams/{name}",
    tag = "admin",
    operation_id = "adminDeleteTeam",
    summary = "Delete a team (refused while it has keys, unless they are detached)",
    params(("name" = String, Path, description = "The team's name."), DeleteQuery),
    responses(
        (status = 200, description = "Deleted; the keys that were detached.", body = DeletedTeam),
        (status = 400, description = "Invalid `detach`, or no database is configured (`unsupported`).", body = OpenAiError),
        (status = 404, description = "No team has that name (`team_not_found`).", body = OpenAiError),
        (status = 409, description = "The team still has keys (`team_has_keys`; the message names them).", body = OpenAiError),
        crate::openapi::AdminErrors,
        crate::openapi::StoreFailed,
    ),
    security(("admin_key" = []))
)]
pub async fn delete_team(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestCtx>,
    Path(name): Path<String>,
    Query(q): Query<DeleteQuery>,
    headers: HeaderMap,
) -> Response {
    guarded(state, ctx, headers, |state| async move {
        let detach = match q.detach.as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                let shown: String = other.chars().take(32).collect();
                return Err(ApiError::invalid(format!(
                    "`detach` must be true or false, got `{shown}`"
                ))
                .param("detach"));
            }
        };
        let outcome = store_of(&state)?
            .delete_team(&name, detach)
            .await
            .map_err(|e| store_err(&e))?;
        match outcome {
            TeamDeletion::NotFound => Err(team_not_found(&name)),
            TeamDeletion::HasKeys(keys) => Err(conflict(
                "team_has_keys",
                format!(
                    "team `{name}` still has {} key(s): {}; move them to another team or out of \
                     it (PATCH /admin/keys/{{id}} with `team`), or delete with ?detach=true",
                    keys.len(),
                    key_list(&keys)
                ),
            )),
            TeamDeletion::Deleted(detached) => {
                state.auth.keys_changed();
                Ok(Json(DeletedTeam {
                    deleted: name,
                    detached,
                })
                .into_response())
            }
        }
    })
    .await
}

/// `7 (ci), 9 (batch)`, at most 20 keys named, then how many more.
pub(crate) fn key_list(keys: &[KeyRef]) -> String {
    const SHOWN: usize = 20;
    let mut s = keys
        .iter()
        .take(SHOWN)
        .map(|k| format!("{} ({})", k.id, k.name))
        .collect::<Vec<_>>()
        .join(", ");
    if keys.len() > SHOWN {
        s.push_str(&format!(" and {} more", keys.len() - SHOWN));
    }
    s
}
