//! Step 1 of the pipeline: who is asking, what, and may they. Authentication, the body (with
//! the size limit), the dialect's decoder, the key's model allow-list, the route plan and the
//! key's limits, in that order, once for every dialect and operation.

use std::time::Duration;

use axum::body::Body;
use axum::http::request::Parts;
use axum::http::HeaderMap;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use llmux_core::{ErrorKind, SecretString};

use super::guard::GuardInit;
use super::Operation;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::ingress::{Decoded, Dialect};
use crate::limits::{Admission, LimitError};
use crate::routing::Plan;
use crate::state::{AppState, RequestCtx};

/// An admitted request: decoded, routable, within its key's limits.
pub(super) struct Admitted<R, O> {
    pub(super) decoded: Decoded<R, O>,
    pub(super) plan: Plan,
    pub(super) guard: GuardInit,
    /// What the response cache does for it.
    pub(super) cache: crate::cache::Plan,
}

/// Admits one request of `Op` in dialect `D`, or says why not (in no particular format: the
/// caller renders it in the dialect's).
pub(super) async fn admit<Op: Operation, D: Dialect<Op>>(
    state: &AppState,
    ctx: &RequestCtx,
    head: &Parts,
    query_key: Option<&SecretString>,
    body: Body,
) -> Result<Admitted<Op::Request, D::Options>, ApiError> {
    let (principal, body) = authenticate(state, ctx, head, query_key, body).await?;
    let bytes = read_body(body, &head.headers, state.server.max_body_bytes).await?;
    let decoded = D::decode(head, &bytes)?;
    drop(bytes);
    let model = Op::model(&decoded.request);
    principal.allows(model)?;
    let plan = state
        .routes
        .plan(model)
        .ok_or_else(|| unknown_model(state, &principal, model))?;
    let estimate = Op::estimate(&decoded.request);
    let cost_per_token = plan_cost_per_token(state, model, &plan);
    let admission = admit_key(state, &principal, estimate.total, cost_per_token).await?;
    let cache = match &state.cache {
        Some(c) => c.plan::<Op>(&head.headers, &principal, &plan, &decoded.request),
        None => crate::cache::Plan::Off,
    };
    let guard = GuardInit {
        key_id: principal.key_id(),
        team_id: principal.record().and_then(|k| k.team_id),
        admission,
        stream: decoded.stream,
        prompt_estimate: estimate.prompt,
        estimate: estimate.total,
        cache_hit: false,
    };
    Ok(Admitted {
        decoded,
        plan,
        guard,
        cache,
    })
}

/// The checks of [`admit`] for a request that calls no upstream: who, the body, `decode`, the
/// model allow-list, and that the model is served (no limits, no route plan kept).
pub(super) async fn check<R>(
    state: &AppState,
    ctx: &RequestCtx,
    head: &Parts,
    query_key: Option<&SecretString>,
    body: Body,
    decode: fn(&Parts, &[u8]) -> Result<R, ApiError>,
    model: fn(&R) -> &str,
) -> Result<R, ApiError> {
    let (principal, body) = authenticate(state, ctx, head, query_key, body).await?;
    let bytes = read_body(body, &head.headers, state.server.max_body_bytes).await?;
    let decoded = decode(head, &bytes)?;
    let name = model(&decoded);
    principal.allows(name)?;
    if !state.routes.serves(name) {
        return Err(unknown_model(state, &principal, name));
    }
    Ok(decoded)
}

/// The 404 for a model no channel serves. For a plain name (`qwen-plus`) the message names the
/// served `provider/model` names that end in it and that `principal` may use, so an ambiguous
/// name says what to choose from.
pub fn unknown_model(state: &AppState, principal: &Principal, model: &str) -> ApiError {
    let routes = state.routes.current();
    let choices: Vec<&str> = routes
        .qualified_names(model)
        .into_iter()
        .filter(|c| principal.allows(c).is_ok())
        .collect();
    ApiError::unknown_model_among(model, &choices)
}

/// Reads the body, enforcing `limit` (413 in the ingress format when over it). An oversized
/// body is drained (up to 4× the limit) before answering, so clients that are still sending
/// see the 413 instead of a reset connection.
pub async fn read_body(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let mut stream = body.into_data_stream();
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(0).min(limit));
    let mut seen = 0usize;
    let mut over = declared.is_some_and(|n| n > limit);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|e| ApiError::invalid(format!("could not read the request body: {e}")))?;
        seen = seen.saturating_add(chunk.len());
        if seen > limit {
            over = true;
        }
        if over {
            buf.clear();
            if seen > limit.saturating_mul(4) {
                break;
            }
            continue;
        }
        buf.extend_from_slice(&chunk);
    }
    if over {
        return Err(ApiError::too_large(limit));
    }
    Ok(buf.freeze())
}

/// Admits a request under its key's limits (none for static keys and open access): 429 with
/// `Retry-After` over a rate, 429 `insufficient_quota` over a budget, 400 when it can never fit.
/// With Redis configured this is one round trip to it (see [`crate::limits::redis`]).
async fn admit_key(
    state: &AppState,
    principal: &Principal,
    estimated_tokens: u64,
    cost_per_token: f64,
) -> Result<Option<Admission>, ApiError> {
    if state.recorder.as_ref().is_some_and(|r| r.is_saturated()) {
        // Usage could not be recorded: refuse rather than serve unaccounted requests.
        let mut err = ApiError::new(
            ErrorKind::Internal,
            "usage accounting is saturated (the database is slow or down); try again later",
        );
        err.status = Some(http::StatusCode::SERVICE_UNAVAILABLE);
        err.retry_after = Some(Duration::from_secs(5));
        return Err(err);
    }
    let Some(record) = principal.record() else {
        return Ok(None);
    };
    let estimated_cost = estimated_tokens as f64 * cost_per_token;
    match state
        .limits
        .admit_with_cost(record, estimated_tokens, estimated_cost)
        .await
    {
        Ok(a) => Ok(Some(a)),
        Err(
            e @ (LimitError::RateLimited { retry_after }
            | LimitError::TeamRateLimited { retry_after }),
        ) => {
            let mut err = ApiError::new(ErrorKind::RateLimited, e.to_string());
            err.retry_after = Some(retry_after);
            Err(err)
        }
        Err(e @ (LimitError::BudgetExhausted | LimitError::TeamBudgetExhausted)) => {
            Err(ApiError::new(ErrorKind::QuotaExhausted, format!("{e}.")))
        }
        Err(e @ (LimitError::TooLarge { .. } | LimitError::TeamTooLarge { .. })) => {
            Err(ApiError::invalid(e.to_string()))
        }
    }
}

/// Who sent the request, noted in the request's context ([`RequestCtx::caller`]) for the
/// access log and the per-key metrics. A request refused here still has its body read (and
/// dropped) within the same bounds before the refusal is sent: hyper closes a connection whose
/// request body was left unread without a `Connection: close`, so a client that reuses its
/// pooled connection would see it closed under its next request.
pub(super) async fn authenticate(
    state: &AppState,
    ctx: &RequestCtx,
    head: &Parts,
    query_key: Option<&SecretString>,
    body: Body,
) -> Result<(Principal, Body), ApiError> {
    match state.auth.authenticate(&head.headers, query_key).await {
        Ok(principal) => {
            if let Some(caller) = state.metrics.caller(&principal) {
                let _ = ctx.caller.set(caller);
            }
            Ok((principal, body))
        }
        Err(e) => {
            let _ = read_body(body, &head.headers, state.server.max_body_bytes).await;
            Err(e)
        }
    }
}

/// The cost per token a key's cost budget reserves for a request of the public `model`: the
/// highest per-token price, in the accounting currency, among the channels its plan may try
/// (0 when none is priced: such a request is admitted while the budget is not yet spent).
fn plan_cost_per_token(state: &AppState, model: &str, plan: &Plan) -> f64 {
    plan.targets
        .iter()
        .map(|t| {
            state
                .prices
                .max_per_token(model, t.channel.provider_id, &t.upstream)
        })
        .fold(0.0, f64::max)
}
