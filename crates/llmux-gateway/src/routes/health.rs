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
use serde_json::json;

use crate::app::AppState;

/// `GET /healthz`.
pub async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// `GET /readyz`.
pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state.is_shutting_down() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "shutting_down"})),
        )
            .into_response();
    }
    let routes = &state.routes;
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
        Json(json!({
            "status": if usable > 0 { "ready" } else { "no_usable_channel" },
            "channels": routes.channels().len(),
            "usable_channels": usable,
            "limits": state.limits.backend(),
        })),
    )
        .into_response()
}

/// `GET /metrics`.
pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let text = state.metrics.render(&state.routes);
    let mut resp = text.into_response();
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}
