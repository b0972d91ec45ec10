//! `/healthz` (the process answers), `/readyz` (it can serve: not shutting down and some
//! channel's breaker is not open; an unavailable Redis does not make it unready, since limits
//! then fall back to this process, and shows as `"limits": "redis_unavailable"`) and
//! `/metrics` (Prometheus text exposition, no auth: expose it on an internal network only).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use llmux_core::resilience::BreakerState;
use serde::Serialize;
use utoipa::ToSchema;

use crate::state::AppState;

/// The answer of `/healthz`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    #[schema(value_type = String)]
    pub status: &'static str,
}

/// The answer of `/readyz`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Readiness {
    /// `ready`, `no_usable_channel` or `shutting_down`.
    #[schema(value_type = String)]
    pub status: &'static str,
    /// Configured channels (absent while shutting down).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channels: Option<usize>,
    /// Channels whose breaker is not open (absent while shutting down).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usable_channels: Option<usize>,
    /// Where limits are decided: `local`, `redis` or `redis_unavailable` (absent while
    /// shutting down).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub limits: Option<&'static str>,
}

/// `GET /healthz`.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    operation_id = "healthz",
    summary = "Liveness: the process answers",
    responses((status = 200, description = "Alive.", body = Health))
)]
pub async fn healthz() -> Response {
    Json(Health { status: "ok" }).into_response()
}

/// `GET /readyz`.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    operation_id = "readyz",
    summary = "Readiness: not shutting down, and some channel's breaker is not open",
    responses(
        (status = 200, description = "Ready.", body = Readiness),
        (status = 503, description = "Shutting down, or no usable channel.", body = Readiness),
    )
)]
pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state.is_shutting_down() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Readiness {
                status: "shutting_down",
                channels: None,
                usable_channels: None,
                limits: None,
            }),
        )
            .into_response();
    }
    let routes = state.routes.current();
    let usable = routes
        .channels()
        .iter()
        .filter(|c| {
            !matches!(
                routes.breaker_state(c),
                BreakerState::Open | BreakerState::Disabled
            )
        })
        .count();
    let status = if usable > 0 {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Readiness {
            status: if usable > 0 {
                "ready"
            } else {
                "no_usable_channel"
            },
            channels: Some(routes.channels().len()),
            usable_channels: Some(usable),
            limits: Some(state.limits.backend()),
        }),
    )
        .into_response()
}

/// `GET /metrics`.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    operation_id = "metrics",
    summary = "Prometheus metrics (no auth: expose on an internal network only)",
    responses(
        (status = 200, description = "The Prometheus text exposition format 0.0.4.",
            content((String = "text/plain"))),
    )
)]
pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let text = state.metrics.render(&state.routes.current());
    let mut resp = text.into_response();
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}
