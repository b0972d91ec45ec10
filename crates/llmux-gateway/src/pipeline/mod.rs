//! The request pipeline: every model endpoint of every ingress dialect runs the same steps.
//!
//! ```text
//!   client ──HTTP──▶ conn.rs (timeouts, caps) ──▶ app.rs middleware (request id, log, metrics)
//!                                │
//!   ┌────────────────────────────▼─────────────────────────────────────────────────────────┐
//!   │ pipeline::serve::<Op, Dialect>                                                       │
//!   │  1. admission   authenticate → read body (size limit) → Dialect::decode (pure)       │
//!   │                 → model allow-list → route plan → key limits          (admission.rs) │
//!   │                 → response cache: a hit replays the stored answer, no upstream call  │
//!   │                   (a miss tees its final answer into the cache)   (crate::cache)     │
//!   │  2. ledger      RequestGuard::begin: journaled before any upstream call   (guard.rs) │
//!   │  3. routed call Routes::failover over the plan, Op::call per channel:                │
//!   │                 breaker, retries, timeouts inside the core client; one call for      │
//!   │                 whole and streamed answers                                (ops.rs)   │
//!   │  4. egress      whole:  Dialect::encode (pure) → JSON, record committed, answered    │
//!   │                 stream: Dialect::stream_encoder, event by event; the record is       │
//!   │                 committed before the last frames                       (stream.rs)   │
//!   │  5. usage       RequestGuard::finish / Drop: billed, limits settled, metrics, the    │
//!   │                 record handed to the recorder exactly once                (guard.rs) │
//!   └──────────────────────────────────────────────────────────────────────────────────────┘
//! ```
//!
//! An error at any step is answered in the dialect's format ([`Dialect::ENVELOPE`]); after
//! step 2 the guard records it. A dialect is one module of pure functions ([`crate::ingress`]);
//! an operation ([`Chat`], [`Embed`]) says what is asked of an upstream and how its usage is
//! read.

mod admission;
mod guard;
mod ops;
mod stream;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::request::Parts;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use llmux_core::{ErrorKind, SecretString};

pub use admission::{read_body, unknown_model};
pub use guard::{RequestGuard, RouteLabels};
pub use ops::{Chat, Embed, Estimate, Operation, Reply};

use crate::cache::{self, ResponseCache};
use crate::error::{ApiError, ErrorEnvelope};
use crate::ingress::{Dialect, Egress};
use crate::state::{AppState, RequestCtx, ADDED_LATENCY};

/// One call of a model endpoint, as the router hands it over: what [`serve`] needs. An
/// endpoint is `async fn e(call: Call) -> Response { call.serve::<Op, Dialect>().await }`.
#[derive(Debug)]
pub struct Call {
    state: Arc<AppState>,
    ctx: RequestCtx,
    /// Method, URI and headers (the decoder reads them: Gemini names the model in the path).
    head: Parts,
    /// The `key` query parameter, the one part of the query the pipeline reads.
    query_key: Option<SecretString>,
    body: Body,
}

impl Call {
    /// Runs the pipeline for operation `Op` in dialect `D`.
    pub async fn serve<Op: Operation, D: Dialect<Op>>(self) -> Response {
        Box::pin(serve::<Op, D>(
            self.state,
            self.ctx,
            self.head,
            self.query_key,
            self.body,
        ))
        .await
    }

    /// Step 1's checks alone, for an endpoint the gateway answers itself without calling an
    /// upstream (Anthropic's `count_tokens`): authentication, the body (size limit), `decode`,
    /// the key's model allow-list, and that the model is served. No limit is charged and no
    /// usage is recorded. Errors come back rendered in `envelope`.
    pub async fn check<R>(
        self,
        envelope: &'static dyn ErrorEnvelope,
        decode: fn(&Parts, &[u8]) -> Result<R, ApiError>,
        model: fn(&R) -> &str,
    ) -> Result<R, Response> {
        let checked = admission::check(
            &self.state,
            &self.ctx,
            &self.head,
            self.query_key.as_ref(),
            self.body,
            decode,
            model,
        )
        .await;
        checked.map_err(|e| fail(e, envelope, &self.ctx, None))
    }

    /// Answers `err` to an authenticated caller (a bad key gets its 401 first), in `envelope`:
    /// for routes the gateway keeps only to say what it does not offer (retrieving a stored
    /// response, say). Nothing is read, charged or recorded.
    pub async fn refuse(self, envelope: &'static dyn ErrorEnvelope, err: ApiError) -> Response {
        let auth = self
            .state
            .auth
            .authenticate(&self.head.headers, self.query_key.as_ref())
            .await;
        if let Some(caller) = auth
            .as_ref()
            .ok()
            .and_then(|p| self.state.metrics.caller(p))
        {
            let _ = self.ctx.caller.set(caller);
        }
        fail(auth.err().unwrap_or(err), envelope, &self.ctx, None)
    }
}

impl axum::extract::FromRequest<Arc<AppState>> for Call {
    type Rejection = Response;

    async fn from_request(
        req: axum::extract::Request,
        state: &Arc<AppState>,
    ) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let query_key = crate::auth::query_key(parts.uri.query());
        // The middleware in `app.rs` sets it on every request it routes.
        let Some(ctx) = parts.extensions.remove::<RequestCtx>() else {
            return Err(
                ApiError::new(ErrorKind::Internal, "request without a context")
                    .into_response_for(crate::ingress::DEFAULT_ENVELOPE, ""),
            );
        };
        Ok(Call {
            state: state.clone(),
            ctx,
            head: parts,
            query_key,
            body,
        })
    }
}

/// Serves one request of operation `Op` in dialect `D`: the whole pipeline.
pub async fn serve<Op: Operation, D: Dialect<Op>>(
    state: Arc<AppState>,
    ctx: RequestCtx,
    head: Parts,
    query_key: Option<SecretString>,
    body: Body,
) -> Response {
    let admitted =
        match admission::admit::<Op, D>(&state, &ctx, &head, query_key.as_ref(), body).await {
            Ok(a) => a,
            Err(e) => return fail(e, D::ENVELOPE, &ctx, None),
        };
    drop(head);
    let (decoded, plan, init, cache_plan) = (
        admitted.decoded,
        admitted.plan,
        admitted.guard,
        admitted.cache,
    );
    if !ctx.span.is_disabled() {
        ctx.span.record("gen_ai.operation.name", Op::OPERATION);
        ctx.span
            .record("gen_ai.request.model", Op::model(&decoded.request));
        ctx.span.record("llmux.stream", decoded.stream);
    }
    let prompt_estimate = init.prompt_estimate;
    let hit = cached::<Op>(&state, &cache_plan, decoded.stream).await;
    let mut init = init;
    init.cache_hit = hit.is_some();
    let mut guard = RequestGuard::begin(state.clone(), ctx.clone(), &plan, init).await;
    let (value, upstream_time, mut cache) = match hit {
        Some((value, entry)) => {
            guard.cache_hit(&entry.origin);
            let age = state.cache.as_ref().map(|c| entry.age_secs(c.now_ms()));
            let cache = CacheOutcome {
                status: Some(cache::Status::Hit),
                age,
                fill: None,
            };
            (value, Duration::ZERO, cache)
        }
        None => {
            let routed = ops::route::<Op>(&state, &plan, &decoded.request, decoded.stream).await;
            let r = match routed {
                Ok(r) => r,
                Err(f) => return failed(&state, &ctx, guard, f, D::ENVELOPE).await,
            };
            guard.routed(&r.channel, r.upstream.clone());
            let fill = state
                .cache
                .clone()
                .zip(cache_plan.ticket().cloned())
                .map(|(c, t)| {
                    let origin = cache::Origin {
                        provider: r.channel.provider_id.to_owned(),
                        channel: r.channel.name.to_string(),
                        upstream_model: r.upstream.to_string(),
                    };
                    (c, t, origin)
                });
            let cache = CacheOutcome {
                status: cache_plan.miss_status(),
                age: None,
                fill,
            };
            (r.value, r.upstream_time, cache)
        }
    };
    let egress = Egress {
        request_id: &ctx.id,
        model: Op::model(&decoded.request),
        options: &decoded.options,
        prompt_estimate,
    };
    let added = added_latency(&ctx, upstream_time);
    match value {
        Reply::Whole(answer) => {
            if let Some(u) = Op::usage(&answer) {
                guard.usage(u);
            }
            ctx.span
                .record("gen_ai.response.model", Op::response_model(&answer));
            let body = match D::encode(&answer, &egress) {
                Ok(body) => body,
                Err(err) => {
                    // The upstream answered (its usage is billed); the dialect cannot say it.
                    guard.fail(err.kind, true);
                    guard.finish().await;
                    return fail(err, D::ENVELOPE, &ctx, Some(guard.labels().clone()));
                }
            };
            let mut resp = json_response::<D, Op>(&body, &ctx.id);
            D::response_headers(&egress, resp.headers_mut());
            cache.stamp(&mut resp);
            stamp_added_latency(&state, &mut resp, added);
            guard.complete();
            // Durable before the client sees the answer.
            guard.finish().await;
            if let Some((c, ticket, origin)) = cache.fill {
                if let Some(stored) = Op::to_stored(answer) {
                    c.store(&ticket, origin, stored).await;
                }
            }
            resp.extensions_mut().insert(guard.labels().clone());
            resp
        }
        Reply::Stream(events) => {
            guard.ttft(ctx.arrived.elapsed());
            let Some(encoder) = D::stream_encoder(&egress) else {
                let err = ApiError::new(ErrorKind::Internal, "this endpoint cannot stream");
                guard.fail(err.kind, true);
                guard.finish().await;
                return fail(err, D::ENVELOPE, &ctx, Some(guard.labels().clone()));
            };
            let labels = guard.labels().clone();
            let tee = cache.fill.take().map(|(c, t, o)| c.tee(t, o));
            let mut resp = stream::response(&state, encoder, events, guard, tee).await;
            resp.extensions_mut().insert(labels);
            D::response_headers(&egress, resp.headers_mut());
            cache.stamp(&mut resp);
            stamp_added_latency(&state, &mut resp, added);
            resp
        }
    }
}

/// How the response cache took part in an answer.
struct CacheOutcome {
    /// The header's value (`None` without a cache).
    status: Option<cache::Status>,
    /// The entry's age, on a hit.
    age: Option<u64>,
    /// Where a miss's answer is stored.
    fill: Option<(ResponseCache, cache::Ticket, cache::Origin)>,
}

impl CacheOutcome {
    fn stamp(&self, resp: &mut Response) {
        if let Some(s) = self.status {
            s.stamp(resp.headers_mut(), self.age);
        }
    }
}

/// The cached answer to a request, when the cache holds one that fits it; counts the
/// request's cache outcome (hit, miss or bypass).
async fn cached<Op: Operation>(
    state: &AppState,
    plan: &cache::Plan,
    stream: bool,
) -> Option<(Reply<Op::Answer>, Arc<cache::Entry>)> {
    let c = state.cache.as_ref()?;
    let found = match plan.ticket() {
        Some(t) => c.lookup(t).await,
        None => None,
    };
    let hit = found.and_then(|e| Op::from_stored(&e.stored, stream).map(|r| (r, e)));
    let status = match (&hit, plan.miss_status()) {
        (Some(_), _) => Some(cache::Status::Hit),
        (None, s) => s,
    };
    if let Some(s) = status {
        c.metrics().count(s);
    }
    hit
}

/// A JSON response, serialized once into one buffer.
fn json_response<D: Dialect<Op>, Op: Operation>(body: &D::Body, request_id: &str) -> Response {
    // Most answers fit in 1 KiB: one allocation instead of growing from 128 bytes three times.
    let mut bytes = Vec::with_capacity(1024);
    match D::write_body(body, &mut bytes) {
        Ok(()) => {
            let mut resp = Response::new(Body::from(bytes));
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            resp
        }
        Err(e) => ApiError::new(
            ErrorKind::Internal,
            format!("could not encode the answer: {e}"),
        )
        .into_response_for(D::ENVELOPE, request_id),
    }
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
    if let Ok(v) = HeaderValue::try_from(millis_text(added)) {
        resp.headers_mut().insert(ADDED_LATENCY, v);
    }
}

/// `d` in milliseconds with three decimals (`0.042`), rounded to the microsecond: written
/// from integers, since formatting a float cost about 1 % of a proxied request.
fn millis_text(d: Duration) -> String {
    let us = u64::try_from(d.as_nanos().saturating_add(500) / 1000).unwrap_or(u64::MAX);
    let (whole, frac) = (us / 1000, us % 1000);
    let mut s = whole.to_string();
    s.push('.');
    for digit in [frac / 100, frac / 10 % 10, frac % 10] {
        s.push(char::from_digit(u32::try_from(digit).unwrap_or(0), 10).unwrap_or('0'));
    }
    s
}

/// An error response in the ingress format, labelled with its route when known.
pub(crate) fn fail(
    err: ApiError,
    envelope: &dyn ErrorEnvelope,
    ctx: &RequestCtx,
    labels: Option<RouteLabels>,
) -> Response {
    let mut resp = err.into_response_for(envelope, &ctx.id);
    if let Some(l) = labels {
        resp.extensions_mut().insert(l);
    }
    resp.into_response()
}

/// The response to a request that failed on every channel it was tried on: the guard records
/// it (billing nothing unless the upstream said so; committed before the answer goes out),
/// the error goes out in the ingress format. When no channel was tried at all, nothing is
/// recorded.
async fn failed(
    state: &Arc<AppState>,
    ctx: &RequestCtx,
    mut guard: RequestGuard,
    f: crate::routing::Failed,
    envelope: &dyn ErrorEnvelope,
) -> Response {
    let labels = match &f.channel {
        Some(ch) => {
            guard.routed(ch, f.upstream.clone().unwrap_or_else(|| Arc::from("")));
            guard.fail(f.error.kind, true);
            guard.finish().await;
            Some(guard.labels().clone())
        }
        None => {
            guard.abandon();
            None
        }
    };
    let mut resp = fail(f.error, envelope, ctx, labels);
    stamp_added_latency(state, &mut resp, added_latency(ctx, f.upstream_time));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_added_latency_header_is_milliseconds_with_three_decimals() {
        assert_eq!(millis_text(Duration::ZERO), "0.000");
        assert_eq!(millis_text(Duration::from_micros(42)), "0.042");
        assert_eq!(millis_text(Duration::from_nanos(1_499)), "0.001");
        assert_eq!(millis_text(Duration::from_nanos(1_500)), "0.002");
        assert_eq!(millis_text(Duration::from_nanos(1_234_567_890)), "1234.568");
        assert_eq!(millis_text(Duration::from_nanos(999_999_500)), "1000.000");
    }
}
