//! The web dashboard: three static files compiled into the binary (`src/dashboard/`), a page
//! over the admin API (usage charts, the searchable request log, channels and breakers, virtual
//! keys, usage totals). Served only when `server.admin_key` is set; the page holds no data
//! itself, and every call it makes carries the admin key the user types in. A strict Content-Security-Policy allows nothing but
//! these files and same-origin API calls.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;

use super::fail;
use crate::error::ApiError;
use crate::ingress::openai::{OpenAiEnvelope, OpenAiError};
use crate::state::{AppState, RequestCtx};

const INDEX: &str = include_str!("../dashboard/index.html");
const APP_JS: &str = include_str!("../dashboard/app.js");
const STYLE: &str = include_str!("../dashboard/style.css");

/// The policy on every dashboard file: scripts, styles and API calls from this origin only, no
/// inline code, no framing.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

fn file(
    state: &AppState,
    ctx: &RequestCtx,
    content_type: &'static str,
    body: &'static str,
) -> Response {
    if !state.auth.has_admin() {
        return fail(
            ApiError::new(
                llmux_core::ErrorKind::NotFound,
                "the dashboard is off: set server.admin_key to use it",
            ),
            &OpenAiEnvelope,
            ctx,
            None,
        );
    }
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

/// `GET /dashboard`.
#[utoipa::path(
    get,
    path = "/dashboard",
    tag = "dashboard",
    operation_id = "dashboardPage",
    summary = "The dashboard page (the page asks for the admin key and calls the admin API with it)",
    responses(
        (status = 200, description = "The file.", content((String = "text/html"))),
        (status = 404, description = "The dashboard is off (no `server.admin_key`).", body = OpenAiError),
    )
)]
pub async fn index(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestCtx>,
) -> Response {
    file(&state, &ctx, "text/html; charset=utf-8", INDEX)
}

/// `GET /dashboard/app.js`.
#[utoipa::path(
    get,
    path = "/dashboard/app.js",
    tag = "dashboard",
    operation_id = "dashboardScript",
    summary = "The dashboard's script (the page asks for the admin key and calls the admin API with it)",
    responses(
        (status = 200, description = "The file.", content((String = "text/javascript"))),
        (status = 404, description = "The dashboard is off (no `server.admin_key`).", body = OpenAiError),
    )
)]
pub async fn app_js(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestCtx>,
) -> Response {
    file(&state, &ctx, "text/javascript; charset=utf-8", APP_JS)
}

/// `GET /dashboard/style.css`.
#[utoipa::path(
    get,
    path = "/dashboard/style.css",
    tag = "dashboard",
    operation_id = "dashboardStylesheet",
    summary = "The dashboard's stylesheet (the page asks for the admin key and calls the admin API with it)",
    responses(
        (status = 200, description = "The file.", content((String = "text/css"))),
        (status = 404, description = "The dashboard is off (no `server.admin_key`).", body = OpenAiError),
    )
)]
pub async fn style(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestCtx>,
) -> Response {
    file(&state, &ctx, "text/css; charset=utf-8", STYLE)
}
