//! HTTP handlers, one file per endpoint family, and what they share: body reading with the
//! size limit, route labels, the added-latency measure and the per-request usage guard.

pub mod admin;
pub mod chat;
pub mod embeddings;
pub mod health;
pub mod models;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use llmux_core::{ErrorKind, Usage};

use crate::app::{AppState, Outcome, RequestCtx, UsageEvent, ADDED_LATENCY};
use crate::config::Channel;
use crate::error::{ApiError, Ingress};

/// The labels of a routed request, attached to its response for the middleware.
#[derive(Debug, Clone)]
pub struct RouteLabels {
    /// Provider id.
    pub provider: &'static str,
    /// Channel name.
    pub channel: Arc<str>,
    /// Public model label.
    pub model: Arc<str>,
}

impl RouteLabels {
    pub(crate) fn new(ch: &Channel, model: Arc<str>) -> Self {
        RouteLabels {
            provider: ch.provider_id,
            channel: ch.name.clone(),
            model,
        }
    }
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

/// Added latency: time from the request's arrival until its response head is ready, minus the
/// time spent inside upstream calls (every attempt on every channel, retries and backoff
/// included). What is left is the gateway's own work: auth, parsing, routing and encoding.
pub fn added_latency(ctx: &RequestCtx, upstream: Duration) -> Duration {
    ctx.arrived.elapsed().saturating_sub(upstream)
}

/// Sets `x-llmux-added-latency-ms` (milliseconds, three decimals) and records the histogram.
pub(crate) fn stamp_added_latency(state: &AppState, resp: &mut Response, added: Duration) {
    state.metrics.added_latency.observe(added.as_secs_f64());
    let ms = added.as_secs_f64() * 1000.0;
    if let Ok(v) = HeaderValue::from_str(&format!("{ms:.3}")) {
        resp.headers_mut().insert(ADDED_LATENCY, v);
    }
}

/// An error response in the ingress format, labelled with its route when known.
pub(crate) fn fail(
    err: ApiError,
    ingress: Ingress,
    ctx: &RequestCtx,
    labels: Option<RouteLabels>,
) -> Response {
    let mut resp = err.into_response_for(ingress, &ctx.id);
    if let Some(l) = labels {
        resp.extensions_mut().insert(l);
    }
    resp
}

/// Records one routed request exactly once: on [`RequestGuard::complete`] or
/// [`RequestGuard::fail`], or, when dropped before either (the client went away mid-stream),
/// as cancelled. Metrics and the usage sink are updated in `Drop`, off the response path.
#[derive(Debug)]
pub struct RequestGuard {
    state: Arc<AppState>,
    labels: RouteLabels,
    ctx: RequestCtx,
    key_id: Option<String>,
    stream: bool,
    usage: Option<Usage>,
    ttft: Option<Duration>,
    outcome: Option<Outcome>,
    /// The error was already answered (and counted by the middleware).
    answered: bool,
}

impl RequestGuard {
    pub(crate) fn new(
        state: Arc<AppState>,
        labels: RouteLabels,
        ctx: RequestCtx,
        key_id: Option<String>,
        stream: bool,
    ) -> Self {
        if stream {
            state.metrics.inflight_streams.inc();
        }
        RequestGuard {
            state,
            labels,
            ctx,
            key_id,
            stream,
            usage: None,
            ttft: None,
            outcome: None,
            answered: false,
        }
    }

    /// Usage as reported.
    pub(crate) fn usage(&mut self, u: Usage) {
        self.usage = Some(u);
    }

    /// Time to first event.
    pub(crate) fn ttft(&mut self, d: Duration) {
        self.ttft = Some(d);
    }

    /// Answered completely.
    pub(crate) fn complete(&mut self) {
        self.outcome = Some(Outcome::Complete);
    }

    /// Ended with an error; `answered` when an error response carried it (counted elsewhere).
    pub(crate) fn fail(&mut self, kind: ErrorKind, answered: bool) {
        self.outcome = Some(Outcome::Error(kind));
        self.answered = answered;
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let m = &self.state.metrics;
        let l = &self.labels;
        let route = [l.provider, &*l.channel, &*l.model];
        if self.stream {
            m.inflight_streams.dec();
        }
        let outcome = self.outcome.unwrap_or(Outcome::Cancelled);
        m.requests.with_label_values(&route).inc();
        match outcome {
            Outcome::Complete => {}
            Outcome::Error(kind) if !self.answered => {
                m.errors
                    .with_label_values(&[l.provider, &l.channel, &l.model, kind.as_str()])
                    .inc();
            }
            Outcome::Error(_) => {}
            Outcome::Cancelled => {
                m.errors
                    .with_label_values(&[l.provider, &l.channel, &l.model, "cancelled"])
                    .inc();
            }
        }
        let usage = self.usage.unwrap_or_default();
        if usage.input_tokens > 0 {
            m.tokens
                .with_label_values(&[l.provider, &l.channel, &l.model, "input"])
                .inc_by(usage.input_tokens);
        }
        if usage.output_tokens > 0 {
            m.tokens
                .with_label_values(&[l.provider, &l.channel, &l.model, "output"])
                .inc_by(usage.output_tokens);
        }
        let elapsed = self.ctx.arrived.elapsed();
        m.duration
            .with_label_values(&route)
            .observe(elapsed.as_secs_f64());
        if let Some(t) = self.ttft {
            m.ttft.with_label_values(&route).observe(t.as_secs_f64());
        }
        if let Some(sink) = &self.state.usage {
            sink.record(UsageEvent {
                request_id: self.ctx.id.clone(),
                key_id: self.key_id.take(),
                model: l.model.clone(),
                channel: l.channel.clone(),
                provider: l.provider,
                usage,
                outcome,
                stream: self.stream,
                latency_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
                ttft_ms: self
                    .ttft
                    .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
            });
        }
        if outcome == Outcome::Cancelled {
            tracing::info!(request_id = %self.ctx.id, channel = %l.channel, "the client went away before the answer was complete");
        }
    }
}
