//! Step 4 for streams: the response body of a streamed answer, in any dialect.
//!
//! The core returns a stream only after its first content event, so failover happened before
//! any byte reached the client. The events the upstream has ready by the end of the runtime's
//! turn are read before the response head is handed to hyper, so the head goes out in the same
//! write as their frames. Encoded events follow, the frames of all the events ready by the end
//! of a turn joined into one body chunk (so one write, not one per frame; hyper hands an
//! upstream body over one chunk at a time, so "ready" waits for the turn, see `Turn`);
//! keep-alive comments while the upstream is idle (when the dialect allows them); a final error
//! frame if the upstream fails after the first
//! event. The record is
//! committed before the last frames (the finish, usage and `[DONE]` chunks, or the error
//! frame) are yielded. Dropping the body (client gone) drops the upstream stream and the
//! guard, which records the request as cancelled. A miss the response cache may keep tees its
//! events into a [`Tee`], which stores them once the stream finished (never after an error, a
//! cut or a client that left).

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use axum::body::Body;
use axum::http::HeaderValue;
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use llmux_core::{ChatStream, ErrorKind, StreamEvent};
use tokio::time::Instant;

use super::RequestGuard;
use crate::cache::Tee;
use crate::error::ApiError;
use crate::ingress::StreamEncoder;
use crate::state::AppState;

/// The streamed response: head and body. The events the upstream has ready by the end of the
/// runtime's turn are read before the head is handed to hyper, so the head goes out in the same
/// write as their frames.
pub(super) async fn response(
    state: &AppState,
    encoder: Box<dyn StreamEncoder>,
    mut upstream: ChatStream,
    guard: RequestGuard,
    tee: Option<Tee>,
) -> Response {
    let content_type = encoder.content_type();
    let keepalive = encoder.keepalive().then_some(state.server.keepalive);
    let (early, ended) = ready_now(&mut upstream).await;
    let upstream: ChatStream = if ended {
        Box::pin(futures::stream::iter(early))
    } else {
        Box::pin(futures::stream::iter(early).chain(upstream))
    };
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

/// The events `upstream` yields until the end of this turn of the runtime (see `Turn`), at
/// most `MAX_EARLY_EVENTS`, and whether it ended (`None`: nothing may poll it again). A
/// failure or the finish is the last event read.
async fn ready_now(upstream: &mut ChatStream) -> (Vec<llmux_core::Result<StreamEvent>>, bool) {
    let mut early = Vec::new();
    let mut turn = Turn::default();
    while early.len() < MAX_EARLY_EVENTS {
        match next_in_turn(upstream, Some(&mut turn)).await {
            None => break,
            Some(None) => return (early, true),
            Some(Some(ev)) => {
                let last = matches!(ev, Ok(StreamEvent::Finished { .. }) | Err(_));
                early.push(ev);
                if last {
                    break;
                }
            }
        }
    }
    (early, false)
}

/// The upstream's next item (`Some(None)`: it ended) if it has one by the end of `turn`, or
/// `None` once the turn ended without one; with no turn, only an item ready now.
async fn next_in_turn(
    upstream: &mut ChatStream,
    mut turn: Option<&mut Turn>,
) -> Option<Option<llmux_core::Result<StreamEvent>>> {
    std::future::poll_fn(|cx| {
        if let Poll::Ready(n) = upstream.poll_next_unpin(cx) {
            return Poll::Ready(Some(n));
        }
        match turn.as_deref_mut() {
            Some(turn) => turn.poll(cx).map(|()| None),
            None => Poll::Ready(None),
        }
    })
    .await
}

/// At most this many events are read before the head is sent.
const MAX_EARLY_EVENTS: usize = 256;

fn body(
    mut enc: Box<dyn StreamEncoder>,
    keepalive: Option<Duration>,
    mut upstream: ChatStream,
    mut guard: RequestGuard,
    mut tee: Option<Tee>,
) -> impl futures::Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    async_stream::stream! {
        let period = keepalive.unwrap_or(Duration::from_secs(3600));
        // Armed once; an event does not reset it. When it fires, the idle time is measured
        // from the last frames sent, and it either pings or is set to that deadline.
        let sleep = tokio::time::sleep(period);
        tokio::pin!(sleep);
        let mut sent_at = Instant::now();
        let mut out: Vec<Bytes> = Vec::with_capacity(4);
        // The events of the first batch were read to the end of a turn already (`ready_now`).
        let mut first = true;
        loop {
            tokio::select! {
                biased;
                next = upstream.next() => {
                    // Every event ready at this wake-up is encoded before anything is yielded,
                    // so their frames go out as one body chunk (one write), up to
                    // `MAX_JOINED_BYTES`: an upstream that is always ready (or one body chunk
                    // holding many events) is still forwarded as it is read, and the frames
                    // waiting here stay bounded.
                    let mut next = next;
                    let mut ready = 0;
                    let mut done = false;
                    let mut failed = None;
                    loop {
                        match next {
                            Some(Ok(ev)) => {
                                guard.saw(&ev);
                                done = matches!(ev, StreamEvent::Finished { .. });
                                let had = out.len();
                                enc.push(&ev, &mut out);
                                ready += out[had..].iter().map(Bytes::len).sum::<usize>();
                                if let Some(t) = tee.as_mut() {
                                    t.push(ev);
                                }
                            }
                            Some(Err(e)) => {
                                let api = ApiError::from_upstream(&e);
                                tracing::warn!(request_id = %guard.request_id(), kind = %e.kind(), error = %e, "the upstream failed mid-stream");
                                failed = Some(api);
                            }
                            None => {
                                failed = Some(ApiError::new(
                                    ErrorKind::UpstreamProtocol,
                                    "the upstream stream ended before the answer was complete",
                                ));
                            }
                        }
                        if done || failed.is_some() || ready >= MAX_JOINED_BYTES {
                            break;
                        }
                        // Another event already there? (Polled with this task's waker, so a
                        // `Pending` leaves it registered as the `select!` would.) If not, the
                        // upstream connection's task may hold the next chunk already read:
                        // hyper hands a body over one chunk at a time, so it can pass the next
                        // one only after this task took the last. The frames wait until the
                        // runtime has run the tasks that were ready; whatever reaches the
                        // upstream stream until then joins them.
                        // A fresh turn for each wait: under load the runtime polls its IO
                        // driver every few dozen tasks, which ends a turn; one turn for the
                        // whole batch cut it there (10 writes a stream at c=16, not 3.6).
                        let mut turn = Turn::default();
                        match next_in_turn(&mut upstream, (!first).then_some(&mut turn)).await {
                            Some(n) => next = n,
                            None => break,
                        }
                    }
                    if done {
                        guard.complete();
                        guard.finish().await;
                        if let Some(t) = tee.take() {
                            t.finish().await;
                        }
                    }
                    first = false;
                    if let Some(b) = joined(&mut out) {
                        yield Ok(b);
                    }
                    if let Some(api) = failed {
                        guard.fail(api.kind, false);
                        guard.finish().await;
                        yield Ok(enc.error(&api));
                        break;
                    }
                    if done {
                        break;
                    }
                    sent_at = Instant::now();
                }
                () = &mut sleep, if keepalive.is_some() => {
                    let due = sent_at + period;
                    if Instant::now() >= due {
                        yield Ok(enc.ping());
                        sent_at = Instant::now();
                        sleep.as_mut().reset(sent_at + period);
                    } else {
                        sleep.as_mut().reset(due);
                    }
                }
            }
        }
    }
}

/// Ends once the runtime has run every task that was ready when it was first polled.
///
/// Its wake-up is deferred the way `tokio::task::yield_now` defers one: the scheduler wakes it
/// when it has nothing else to run, before it waits for IO. Polls before that stay pending
/// (hyper polls a pending body a second time in the same turn, which a self-wake would let
/// through at once).
#[derive(Default)]
struct Turn(Option<Arc<TurnWaker>>);

struct TurnWaker {
    ended: AtomicBool,
    task: Waker,
}

impl Wake for TurnWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.ended.store(true, Ordering::Release);
        self.task.wake_by_ref();
    }
}

impl Turn {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match &self.0 {
            Some(w) if w.ended.load(Ordering::Acquire) => Poll::Ready(()),
            Some(_) => Poll::Pending,
            None => {
                let w = Arc::new(TurnWaker {
                    ended: AtomicBool::new(false),
                    task: cx.waker().clone(),
                });
                let waker = Waker::from(w.clone());
                // Its first poll hands `waker` to the scheduler's deferred wake-ups (or wakes
                // it at once outside a runtime) and is pending; it keeps nothing after that.
                let yielded = std::pin::pin!(tokio::task::yield_now());
                let _ = yielded.poll(&mut Context::from_waker(&waker));
                self.0 = Some(w);
                Poll::Pending
            }
        }
    }
}

/// How many bytes of frames one wake-up joins before it yields them.
const MAX_JOINED_BYTES: usize = 16 * 1024;

/// The frames in `out` as one buffer (taken from `out`); `None` when there are none.
fn joined(out: &mut Vec<Bytes>) -> Option<Bytes> {
    match out.len() {
        0 => None,
        1 => out.pop(),
        _ => {
            let mut buf = BytesMut::with_capacity(out.iter().map(Bytes::len).sum());
            for b in out.drain(..) {
                buf.extend_from_slice(&b);
            }
            Some(buf.freeze())
        }
    }
}
