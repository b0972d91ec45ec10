//! Step 4 for streams: the response body of a streamed answer, in any dialect.
//!
//! The core returns a stream only after its first content event, so failover happened before
//! any byte reached the client; the response head goes out with that first event. Encoded
//! events follow; keep-alive comments while the upstream is idle (when the dialect allows
//! them); a final error frame if the upstream fails after the first event. The record is
//! committed before the last frames (the finish, usage and `[DONE]` chunks, or the error
//! frame) are yielded. Dropping the body (client gone) drops the upstream stream and the
//! guard, which records the request as cancelled. A miss the response cache may keep tees its
//! events into a [`Tee`], which stores them once the stream finished (never after an error, a
//! cut or a client that left).

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::http::HeaderValue;
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use llmux_core::{ChatStream, ErrorKind, StreamEvent};
use tokio::time::Instant;

use super::RequestGuard;
use crate::cache::Tee;
use crate::error::ApiError;
use crate::ingress::StreamEncoder;
use crate::state::AppState;

/// The streamed response: head and body.
pub(super) fn response(
    state: &AppState,
    encoder: Box<dyn StreamEncoder>,
    upstream: ChatStream,
    guard: RequestGuard,
    tee: Option<Tee>,
) -> Response {
    let content_type = encoder.content_type();
    let keepalive = encoder.keepalive().then_some(state.server.keepalive);
    let mut resp = Response::new(Body::from_stream(body(
        encoder, keepalive, upstream, guard, tee,
    )));
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    h.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}

fn body(
    mut enc: Box<dyn StreamEncoder>,
    keepalive: Option<Duration>,
    mut upstream: ChatStream,
    mut guard: RequestGuard,
    mut tee: Option<Tee>,
) -> impl futures::Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    async_stream::stream! {
        let period = keepalive.unwrap_or(Duration::from_secs(3600));
        let sleep = tokio::time::sleep(period);
        tokio::pin!(sleep);
        let mut out: Vec<Bytes> = Vec::with_capacity(4);
        loop {
            tokio::select! {
                biased;
                next = upstream.next() => {
                    match next {
                        Some(Ok(ev)) => {
                            guard.saw(&ev);
                            let done = matches!(ev, StreamEvent::Finished { .. });
                            enc.push(&ev, &mut out);
                            if let Some(t) = tee.as_mut() {
                                t.push(ev);
                            }
                            if done {
                                guard.complete();
                                guard.finish().await;
                                if let Some(t) = tee.take() {
                                    t.finish().await;
                                }
                            }
                            for b in out.drain(..) {
                                yield Ok(b);
                            }
                            if done {
                                break;
                            }
                            sleep.as_mut().reset(Instant::now() + period);
                        }
                        Some(Err(e)) => {
                            let api = ApiError::from_upstream(&e);
                            tracing::warn!(request_id = %guard.request_id(), kind = %e.kind(), error = %e, "the upstream failed mid-stream");
                            guard.fail(api.kind, false);
                            guard.finish().await;
                            yield Ok(enc.error(&api));
                            break;
                        }
                        None => {
                            let api = ApiError::new(
                                ErrorKind::UpstreamProtocol,
                                "the upstream stream ended before the answer was complete",
                            );
                            guard.fail(api.kind, false);
                            guard.finish().await;
                            yield Ok(enc.error(&api));
                            break;
                        }
                    }
                }
                () = &mut sleep, if keepalive.is_some() => {
                    yield Ok(enc.ping());
                    sleep.as_mut().reset(Instant::now() + period);
                }
            }
        }
    }
}
