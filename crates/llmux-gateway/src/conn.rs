//! Client connections, before any request reaches the router (and so before authentication):
//! the accept loop on hyper-util (HTTP/1.1 and h2c, one task per connection, `TCP_NODELAY` on
//! every socket) with the limits of `[server]`:
//!
//! * at most `max_connections` open connections; beyond it the gateway stops accepting and new
//!   connections wait in the kernel's listen backlog until one closes;
//! * `header_read_timeout`: a new connection must complete its first request head within it,
//!   and a kept-alive connection a head it has begun; otherwise it is closed without an answer;
//! * `idle_timeout`: a kept-alive connection with no request in flight is closed after it;
//! * `max_header_bytes`: the HTTP/1 read buffer holds at most this much of an unfinished head
//!   (so memory per connection stays bounded), HTTP/2 header lists likewise; a larger head, more
//!   than 100 header fields, a malformed request line or header (such as a bad `Content-Length`)
//!   or an over-long URL get hyper's refusal, which the socket wrapper here rewrites into the
//!   ingress's JSON;
//! * `body_read_timeout`: a request body must arrive whole within it once the gateway reads it;
//!   otherwise the answer is a 408 in the ingress's format;
//! * on shutdown a connection with no request in flight (idle, or with an unfinished head or
//!   nothing sent yet) closes at once; one with requests in flight finishes them (HTTP/1: then
//!   closes; HTTP/2: `GOAWAY`) within `server.shutdown_grace`.
//!
//! Per request this adds no task and no allocation: the timers are one per connection, the
//! request body's deadline lives inline in its (already boxed) body.
//!
//! The protocol of a connection is told from its first bytes, peeked at without reading them
//! (`sniff`): hyper-util's detection reads them itself and hands them to hyper's HTTP/1
//! connection as a short first read, after which hyper's read buffer doubles to 16 KiB, for
//! every connection. Only when the first bytes do not decide (an unfinished HTTP/2 preface)
//! does hyper-util's detection run.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use bytes::Bytes;
use futures::task::AtomicWaker;
use http::{Request, Response};
use http_body::Frame;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};

use crate::config::ConnectionLimits;
use crate::error::ErrorEnvelope;
use crate::rejection;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Serves `router` on `listener` until `shutdown` completes; then stops accepting, closes the
/// connections with nothing in flight at once and gives the others `grace` to finish (after
/// which they are dropped). Returns whether every connection finished within the grace.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    grace: Duration,
    shutdown: impl Future<Output = ()>,
) -> bool {
    let builders = Arc::new(Builders::new(&limits));
    let (close_tx, close_rx) = watch::channel(());
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(done) = conns.join_next(), if !conns.is_empty() => {
                if let Err(e) = done {
                    tracing::error!(error = %e, "a connection task failed");
                }
            }
            accepted = listener.accept(), if conns.len() < limits.max_connections => {
                match accepted {
                    Ok((tcp, _peer)) => {
                        if let Err(e) = tcp.set_nodelay(true) {
                            tracing::debug!("could not set TCP_NODELAY: {e}");
                        }
                        conns.spawn(connection(
                            builders.clone(),
                            tcp,
                            router.clone(),
                            limits,
                            close_rx.clone(),
                        ));
                    }
                    Err(e) => accept_error(e).await,
                }
            }
        }
    }
    drop(listener);
    drop(close_rx);
    // Closes the receivers' channel: every connection task sees it.
    drop(close_tx);
    let drained = tokio::time::timeout(grace, async { while conns.join_next().await.is_some() {} })
        .await
        .is_ok();
    if !drained {
        tracing::warn!(
            connections = conns.len(),
            grace_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX),
            "shutdown grace expired; dropping the remaining connections"
        );
        conns.shutdown().await;
    }
    drained
}

/// The hyper builders of every connection: by the protocol its first bytes showed, or the one
/// that detects it when they did not tell.
struct Builders {
    http1: auto::Builder<TokioExecutor>,
    http2: auto::Builder<TokioExecutor>,
    detect: auto::Builder<TokioExecutor>,
}

impl Builders {
    fn new(limits: &ConnectionLimits) -> Self {
        Builders {
            http1: builder(limits).http1_only(),
            http2: builder(limits).http2_only(),
            detect: builder(limits),
        }
    }

    fn get(&self, sniffed: Option<Sniffed>) -> &auto::Builder<TokioExecutor> {
        match sniffed {
            Some(Sniffed::Http1) => &self.http1,
            Some(Sniffed::Http2) => &self.http2,
            None => &self.detect,
        }
    }
}

/// The protocol a connection's first bytes show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sniffed {
    Http1,
    Http2,
}

/// What every HTTP/2 connection without TLS (h2c with prior knowledge) starts with.
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The protocol of `bytes`, the first bytes a client sent: HTTP/2 when they are the whole
/// preface, HTTP/1 as soon as they differ from it; `None` while they are a part of it (or empty,
/// or failed to arrive), which hyper-util's detection then settles by reading.
fn protocol_of(bytes: &[u8]) -> Option<Sniffed> {
    let n = bytes.len().min(H2_PREFACE.len());
    if bytes[..n] != H2_PREFACE[..n] {
        Some(Sniffed::Http1)
    } else if n == H2_PREFACE.len() {
        Some(Sniffed::Http2)
    } else {
        None
    }
}

/// Peeks at the first bytes of `tcp` (waiting until some arrive) and tells their protocol.
async fn sniff(tcp: &TcpStream) -> Option<Sniffed> {
    let mut first = [0u8; 24];
    let n = tcp.peek(&mut first).await.ok()?;
    if n == 0 {
        return None;
    }
    protocol_of(&first[..n])
}

/// The hyper builder for `limits`.
fn builder(limits: &ConnectionLimits) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .keep_alive(true)
        .max_buf_size(limits.max_header_bytes)
        // The connection's own timers (in `Io`) apply instead, so hyper needs none.
        .header_read_timeout(None);
    b.http2()
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    b
}

/// Like hyper's former server: errors of one connection are skipped; others (such as running
/// out of file descriptors) are logged and accepting pauses for a moment.
async fn accept_error(e: io::Error) {
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accepting a connection failed; pausing for a second");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Serves one connection until it ends, or until shutdown: then at once when nothing is in
/// flight, else after its requests finish.
async fn connection(
    builders: Arc<Builders>,
    tcp: TcpStream,
    router: Router,
    limits: ConnectionLimits,
    mut close: watch::Receiver<()>,
) {
    let shared = Arc::new(Shared::default());
    let io = Io::new(tcp, shared.clone(), limits);
    // Bounded by the head's deadline; nothing is in flight yet, so shutdown closes at once.
    let sniffed = tokio::select! {
        sniffed = tokio::time::timeout_at(io.deadline, sniff(&io.tcp)) => sniffed.ok().flatten(),
        _ = close.changed() => return,
    };
    let svc = Svc {
        router,
        shared: shared.clone(),
        body_timeout: limits.body_read_timeout,
    };
    let conn = builders
        .get(sniffed)
        .serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        tokio::select! {
            done = conn.as_mut() => {
                if let Err(e) = done {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = close.changed(), if !closing => {
                closing = true;
                if !shared.busy() {
                    return;
                }
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// What the pieces of one connection share: requests in flight, body timeouts, and the waker
/// of the connection's reads (woken when the last request in flight ends, so the idle timer is
/// armed even when hyper is not reading).
#[derive(Debug, Default)]
struct Shared {
    active: AtomicUsize,
    body_timeouts: AtomicU64,
    reader: AtomicWaker,
}

impl Shared {
    fn busy(&self) -> bool {
        self.active.load(Ordering::Acquire) > 0
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.active.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }
}

/// One request in flight, from its head until its response body is done or dropped.
#[derive(Debug)]
struct InFlight(Arc<Shared>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.reader.wake();
        }
    }
}

/// What a connection with no request in flight is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// A request is in flight: no connection timer runs.
    Busy,
    /// Kept alive, nothing of the next request yet: `idle_timeout`.
    Idle,
    /// A new connection, or a begun head: `header_read_timeout`.
    Head,
}

/// The socket as hyper sees it: it runs the connection's header and idle timers on reads, and
/// replaces hyper's empty-bodied refusals of unparsable heads with JSON ones.
struct Io {
    tcp: TcpStream,
    shared: Arc<Shared>,
    limits: ConnectionLimits,
    wait: Wait,
    deadline: Instant,
    timer: Pin<Box<Sleep>>,
    timer_at: Instant,
    fresh: bool,
    h2: bool,
    envelope: &'static dyn ErrorEnvelope,
    /// Our answer in place of hyper's refusal, and how much of it is written.
    rewrite: Option<(Vec<u8>, usize)>,
}

impl Io {
    fn new(tcp: TcpStream, shared: Arc<Shared>, limits: ConnectionLimits) -> Self {
        let deadline = Instant::now() + limits.header_read_timeout;
        Io {
            tcp,
            shared,
            limits,
            wait: Wait::Head,
            deadline,
            timer: Box::pin(tokio::time::sleep_until(deadline)),
            timer_at: deadline,
            fresh: true,
            h2: false,
            envelope: crate::ingress::DEFAULT_ENVELOPE,
            rewrite: None,
        }
    }

    /// Bytes arrived: a new head begins when nothing was in flight and nothing had arrived.
    fn received(&mut self, got: &[u8]) {
        let head_begins = self.fresh || self.wait == Wait::Idle;
        if self.fresh {
            self.fresh = false;
            self.h2 = got.starts_with(b"PRI * HTTP/2");
        }
        if head_begins && !self.h2 {
            self.envelope = rejection::envelope_of_head(got);
            if self.wait == Wait::Idle {
                self.wait = Wait::Head;
                self.deadline = Instant::now() + self.limits.header_read_timeout;
            }
        }
    }

    /// Whether the current wait's deadline has passed (registering the timer otherwise).
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        if self.timer_at != self.deadline {
            self.timer.as_mut().reset(self.deadline);
            self.timer_at = self.deadline;
        }
        self.timer.as_mut().poll(cx).is_ready()
    }

    /// Starts replacing hyper's refusal when `first` (the start of a write) is one.
    fn intercept(&mut self, first: &[u8]) -> bool {
        if self.rewrite.is_some() {
            return true;
        }
        if self.shared.busy() {
            return false;
        }
        match refusal_status(first) {
            Some(status) => {
                tracing::debug!(status, "refused an unparsable request head");
                self.rewrite = Some((
                    rejection::head_rejection(status, self.envelope, self.limits.max_header_bytes),
                    0,
                ));
                true
            }
            None => false,
        }
    }

    fn poll_rewrite(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some((bytes, at)) = &mut self.rewrite {
            while *at < bytes.len() {
                let n = ready!(Pin::new(&mut self.tcp).poll_write(cx, &bytes[*at..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                *at += n;
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// The status of a response head hyper wrote on its own: a 4xx/5xx head, complete in `buf`,
/// without the `x-request-id` every response of the router carries (hyper writes header names
/// in lower case).
fn refusal_status(buf: &[u8]) -> Option<u16> {
    let rest = buf
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| buf.strip_prefix(b"HTTP/1.0 "))?;
    let code = rest.get(..3)?;
    if !matches!(code[0], b'4' | b'5') || !code.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = &buf[..end + 2];
    if head.windows(15).any(|w| w == b"\r\nx-request-id:") {
        return None;
    }
    std::str::from_utf8(code).ok()?.parse().ok()
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.shared.busy() {
            this.wait = Wait::Busy;
        } else if this.wait == Wait::Busy {
            this.wait = Wait::Idle;
            this.deadline = Instant::now() + this.limits.idle_timeout;
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.tcp).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.received(&buf.filled()[before..]);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                this.shared.reader.register(cx.waker());
                if this.wait != Wait::Busy && this.expired(cx) {
                    let what = if this.wait == Wait::Idle {
                        "idle_timeout"
                    } else {
                        "header_read_timeout"
                    };
                    tracing::debug!(timeout = what, "closing a connection that waited too long");
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("server.{what} expired"),
                    )));
                }
                Poll::Pending
            }
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.intercept(buf) {
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let first = bufs
            .iter()
            .find(|b| !b.is_empty())
            .map_or(&[][..], |b| &**b);
        if this.intercept(first) {
            return Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum()));
        }
        Pin::new(&mut this.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_rewrite(cx))?;
        Pin::new(&mut this.tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_rewrite(cx))?;
        Pin::new(&mut this.tcp).poll_shutdown(cx)
    }
}

/// The router as hyper's service on one connection: counts the request in flight, bounds the
/// time its body may take, and turns the answer to a body that timed out into a 408.
#[derive(Clone)]
struct Svc {
    router: Router,
    shared: Arc<Shared>,
    body_timeout: Duration,
}

impl hyper::service::Service<Request<Incoming>> for Svc {
    type Response = Response<Tracked>;
    type Error = Infallible;
    type Future = SvcFuture;

    fn call(&self, req: Request<Incoming>) -> SvcFuture {
        let in_flight = self.shared.begin();
        let envelope = crate::ingress::envelope_for(req.uri().path().as_bytes());
        let timeouts = self.shared.body_timeouts.load(Ordering::Acquire);
        let req = req.map(|inner| TimedBody {
            inner,
            sleep: None,
            timeout: self.body_timeout,
            shared: self.shared.clone(),
            done: false,
        });
        let mut router = self.router.clone();
        SvcFuture {
            inner: tower_service::Service::call(&mut router, req),
            in_flight: Some(in_flight),
            envelope,
            timeouts,
            body_timeout: self.body_timeout,
        }
    }
}

pin_project! {
    /// The router's future for one request, holding its in-flight mark.
    struct SvcFuture {
        #[pin]
        inner: axum::routing::future::RouteFuture<Infallible>,
        in_flight: Option<InFlight>,
        envelope: &'static dyn ErrorEnvelope,
        timeouts: u64,
        body_timeout: Duration,
    }
}

impl Future for SvcFuture {
    type Output = Result<Response<Tracked>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(mut resp) = ready!(this.inner.poll(cx));
        let shared = this.in_flight.as_ref().map(|f| &f.0);
        // A body that timed out on this connection during the request made the handler fail
        // reading it: the answer is a 408. (On HTTP/2 the count is per connection, so a
        // concurrent stream's timeout could turn this request's own 4xx into a 408.)
        if resp.status().is_client_error()
            && shared.is_some_and(|s| s.body_timeouts.load(Ordering::Acquire) != *this.timeouts)
        {
            let rid = resp.headers().get(crate::state::REQUEST_ID).cloned();
            resp = rejection::body_timeout(*this.envelope, rid, *this.body_timeout);
        }
        let in_flight = this.in_flight.take();
        Poll::Ready(Ok(resp.map(|body| Tracked {
            body,
            _in_flight: in_flight,
        })))
    }
}

pin_project! {
    /// A response body that keeps its request in flight until it is done or dropped.
    struct Tracked {
        #[pin]
        body: Body,
        _in_flight: Option<InFlight>,
    }
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        self.project().body.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// The request body did not arrive within `server.body_read_timeout`.
#[derive(Debug)]
pub struct BodyTimedOut(pub Duration);

impl std::fmt::Display for BodyTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the request body did not arrive within {} ms",
            self.0.as_millis()
        )
    }
}

impl std::error::Error for BodyTimedOut {}

pin_project! {
    /// A request body that must arrive whole within `timeout` of the first time reading it
    /// had to wait.
    struct TimedBody {
        #[pin]
        inner: Incoming,
        #[pin]
        sleep: Option<Sleep>,
        timeout: Duration,
        shared: Arc<Shared>,
        done: bool,
    }
}

impl http_body::Body for TimedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        match this.inner.poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending => {
                if this.sleep.is_none() {
                    this.sleep.set(Some(tokio::time::sleep(*this.timeout)));
                }
                let fired = this
                    .sleep
                    .as_mut()
                    .as_pin_mut()
                    .is_some_and(|s| s.poll(cx).is_ready());
                if !fired {
                    return Poll::Pending;
                }
                *this.done = true;
                this.shared.body_timeouts.fetch_add(1, Ordering::AcqRel);
                Poll::Ready(Some(Err(Box::new(BodyTimedOut(*this.timeout)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn the_first_bytes_tell_the_protocol_once_they_can() {
        assert_eq!(protocol_of(b"POST /v1/chat"), Some(Sniffed::Http1));
        assert_eq!(protocol_of(b"GET / HTTP/1.1\r\n"), Some(Sniffed::Http1));
        // `P` could still begin the preface; `PO` cannot.
        assert_eq!(protocol_of(b"P"), None);
        assert_eq!(protocol_of(b"PO"), Some(Sniffed::Http1));
        assert_eq!(protocol_of(b"PRI * HTTP/2.0\r\n"), None);
        assert_eq!(protocol_of(H2_PREFACE), Some(Sniffed::Http2));
        assert_eq!(
            protocol_of(b"PRI * HTTP/2.0\r\n\r\nSX\r\n\r\n"),
            Some(Sniffed::Http1)
        );
        assert_eq!(protocol_of(b""), None);
    }

    #[test]
    fn only_hypers_own_refusals_are_rewritten() {
        let hyper_431 =
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        assert_eq!(refusal_status(hyper_431), Some(431));
        assert_eq!(
            refusal_status(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n"),
            Some(400)
        );
        // The router's answers carry x-request-id; successes and bodies are never touched.
        assert_eq!(
            refusal_status(b"HTTP/1.1 400 Bad Request\r\nx-request-id: a\r\n\r\n{}"),
            None
        );
        assert_eq!(refusal_status(b"HTTP/1.1 200 OK\r\n\r\n"), None);
        assert_eq!(refusal_status(b"{\"HTTP/1.1 400\"}"), None);
        assert_eq!(refusal_status(b"HTTP/1.1 400 Bad"), None);
    }
}
