//! The axum application: the router and the request-id and logging middleware.
//!
//! Every request gets an id generated here (a UUID v7: time-ordered, 74 random bits from the
//! OS random number generator), which is the identity of its usage record, the DashScope
//! `request_id` and the OpenAI `chatcmpl-` id, and is sent back as `x-llmux-request-id`. The
//! `X-Request-Id` a client sends is only a correlation field: it is echoed in `x-request-id`
//! (when sane) and stored beside the record, but never identifies anything, so no client id
//! can merge, suppress or overwrite a record. Without one, `x-request-id` is the gateway's id.
//! Errors are rendered by the handlers in the ingress protocol's format and tagged with their
//! kind, which this middleware counts and logs.
//! An error response no handler rendered (an axum rejection) is rewritten into that format here
//! ([`crate::rejection`]).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use tokio::time::Instant;
use tracing::Instrument;

use crate::error::ErrorKindExt;
use crate::pipeline::RouteLabels;
use crate::routes;
use crate::state::{new_request_id, AppState, RequestCtx, GATEWAY_REQUEST_ID, REQUEST_ID};

fn sane_id(v: &HeaderValue) -> Option<&str> {
    let s = v.to_str().ok()?;
    (!s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic())).then_some(s)
}

/// Assigns the request id, logs the outcome, counts errors by kind.
async fn observe(State(state): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let arrived = Instant::now();
    let id: Arc<str> = Arc::from(new_request_id());
    let client_id: Option<Arc<str>> = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(sane_id)
        .map(Arc::from);
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let span = crate::telemetry::request_span(&method, &path, req.headers());
    let mut ctx = RequestCtx::new(id.clone(), client_id.clone(), arrived);
    let caller_slot = ctx.caller.clone();
    if !span.is_disabled() {
        span.record("llmux.request_id", &*id);
        ctx.span = span.clone();
    }
    req.extensions_mut().insert(ctx);
    let mut resp = next.run(req).instrument(span.clone()).await;
    if needs_rewrite(&resp) {
        let envelope = crate::ingress::envelope_for(path.as_bytes());
        resp = crate::rejection::rewrite(resp, envelope, &id, &method, &path).await;
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(GATEWAY_REQUEST_ID, v.clone());
        if client_id.is_none() {
            resp.headers_mut().insert(REQUEST_ID, v);
        }
    }
    if let Some(v) = client_id
        .as_deref()
        .and_then(|c| HeaderValue::from_str(c).ok())
    {
        resp.headers_mut().insert(REQUEST_ID, v);
    }
    let status = resp.status().as_u16();
    let kind = resp.extensions().get::<ErrorKindExt>().map(|k| k.0);
    let route = resp.extensions().get::<RouteLabels>().cloned();
    if let Some(kind) = kind {
        let (p, c, m) = route
            .as_ref()
            .map_or(("", "", ""), |r| (r.provider, &*r.channel, &*r.model));
        state
            .metrics
            .errors
            .with_label_values(&[p, c, m, kind.as_str()])
            .inc();
    }
    let caller = caller_slot.get();
    if let Some(c) = caller {
        c.count_request(status);
    }
    if !span.is_disabled() {
        record_outcome(&span, status, kind, caller.map(|c| &**c));
    }
    let ms = arrived.elapsed().as_secs_f64() * 1000.0;
    let channel = route.as_ref().map(|r| &*r.channel);
    let provider = route.as_ref().map(|r| r.provider);
    let model = route.as_ref().map(|r| &*r.model);
    let key = caller.map(|c| &*c.key);
    let key_id = caller.and_then(|c| c.key_id);
    let team = caller.and_then(|c| c.team.as_deref());
    // A server-side failure is a warning; everything else, client errors included, is info.
    // Fields without a value (no key, not routed) are left out of the line.
    if let Some(kind) = kind.filter(|_| status >= 500) {
        tracing::warn!(
            request_id = %id, client_request_id = client_id.as_deref(), %method, path, status, kind = %kind, ms,
            channel, provider, model, key, key_id, team,
            "request failed"
        );
    } else {
        tracing::info!(
            request_id = %id, client_request_id = client_id.as_deref(), %method, path, status,
            kind = kind.map(|k| k.as_str()), ms, channel, provider, model, key, key_id, team,
            "request answered"
        );
    }
    resp
}

/// The end of a request on its span: status, error kind, key and team (a streamed answer's
/// span stays open until its body ends).
fn record_outcome(
    span: &tracing::Span,
    status: u16,
    kind: Option<llmux_core::ErrorKind>,
    caller: Option<&crate::metrics::Caller>,
) {
    span.record("http.response.status_code", status);
    if let Some(kind) = kind {
        span.record("error.type", kind.as_str());
    }
    if status >= 500 {
        span.record("otel.status_code", "error");
    }
    if let Some(c) = caller {
        span.record("llmux.key", &*c.key);
        if let Some(team) = &c.team {
            span.record("llmux.team", &**team);
        }
    }
}

/// An error response no handler rendered (axum's rejections: 405, a body limit's 413, path,
/// query and JSON extractor errors): not tagged with a kind, and not JSON.
fn needs_rewrite(resp: &Response) -> bool {
    let status = resp.status();
    (status.is_client_error() || status.is_server_error())
        && resp.extensions().get::<ErrorKindExt>().is_none()
        && !resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json"))
}

/// The router with every route and the middleware.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(crate::ingress::openai::chat))
        .route("/v1/embeddings", post(crate::ingress::openai::embeddings))
        .route(
            "/v1/completions",
            post(crate::ingress::completions::completions),
        )
        .route("/v1/messages", post(crate::ingress::anthropic::messages))
        .route(
            "/v1/messages/count_tokens",
            post(crate::ingress::anthropic::count_tokens),
        )
        .route("/v1/responses", post(crate::ingress::responses::create))
        .route(
            "/v1/responses/{*id}",
            get(crate::ingress::responses::retrieve)
                .post(crate::ingress::responses::retrieve)
                .delete(crate::ingress::responses::retrieve),
        )
        .route(
            "/v1beta/models/{*target}",
            get(crate::ingress::gemini::models::get).post(crate::ingress::gemini::models),
        )
        .route("/v1beta/models", get(crate::ingress::gemini::models::list))
        .route("/v1/models", get(routes::models::list))
        .route(
            "/v1/models/{*id}",
            get(routes::models::one).post(crate::ingress::gemini::models),
        )
        .route(
            "/api/v1/services/aigc/text-generation/generation",
            post(crate::ingress::dashscope::generation),
        )
        .route(
            "/api/v1/services/aigc/multimodal-generation/generation",
            post(crate::ingress::dashscope::generation),
        )
        .route(
            "/api/v1/services/embeddings/text-embedding/text-embedding",
            post(crate::ingress::dashscope::text_embedding),
        )
        .route("/healthz", get(routes::health::healthz))
        .route("/readyz", get(routes::health::readyz))
        .route("/metrics", get(routes::health::metrics))
        .route(
            "/admin/channels",
            get(routes::admin::channels).post(routes::channels::create_channel),
        )
        .route(
            "/admin/channels/{name}",
            axum::routing::patch(routes::channels::update_channel)
                .delete(routes::channels::delete_channel),
        )
        .route(
            "/admin/channels/{name}/test",
            post(routes::channels::test_channel),
        )
        .route(
            "/admin/channels/{name}/enable",
            post(routes::admin::enable_channel),
        )
        .route(
            "/admin/channels/{name}/discover",
            post(routes::channels::discover_channel),
        )
        .route(
            "/admin/keys",
            get(routes::admin::list_keys).post(routes::admin::create_key),
        )
        .route(
            "/admin/keys/{id}",
            axum::routing::delete(routes::admin::revoke_key).patch(routes::admin::update_key),
        )
        .route(
            "/admin/teams",
            get(routes::teams::list_teams).post(routes::teams::create_team),
        )
        .route(
            "/admin/teams/{name}",
            get(routes::teams::get_team)
                .patch(routes::teams::update_team)
                .delete(routes::teams::delete_team),
        )
        .route("/admin/usage", get(routes::admin::usage))
        .route("/admin/usage/records", get(routes::admin::records))
        .route("/admin/prices", get(routes::prices::list))
        .route(
            "/admin/prices/{*model}",
            axum::routing::put(routes::prices::set).delete(routes::prices::delete),
        )
        .route("/admin/usage/series", get(routes::admin::usage_series))
        .route("/dashboard", get(routes::dashboard::index))
        .route("/dashboard/app.js", get(routes::dashboard::app_js))
        .route("/dashboard/style.css", get(routes::dashboard::style))
        .route("/openapi.json", get(crate::openapi::openapi_json))
        .fallback(fallback)
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// A path no route serves, in the envelope of its path.
async fn fallback(req: Request) -> Response {
    let rid = req
        .extensions()
        .get::<RequestCtx>()
        .map_or_else(|| Arc::from(""), |c| c.id.clone());
    let path = req.uri().path();
    let envelope = crate::ingress::envelope_for(path.as_bytes());
    envelope
        .unknown_route(req.method(), path)
        .into_response_for(envelope, &rid)
}
