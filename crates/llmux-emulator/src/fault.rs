//! Fault scenarios: the public `Fault`/`FaultKind` types, their JSON shape, and how they reshape a response.

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderName, HeaderValue, Response, StatusCode};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::reply::{Ctx, Reply, ReplyBody};

/// A queued fault: applies to the next `times` matching requests (`0` = every matching request, forever).
///
/// JSON (control route `POST /__emulator/faults`): `{"kind": <FaultKind>, "times": 1, "path_contains": "/chat"}`;
/// `times` defaults to 1 and `path_contains` to null (match every path).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    /// What goes wrong.
    pub kind: FaultKind,
    /// How many matching requests it applies to; 0 = forever.
    #[serde(default = "one")]
    pub times: u32,
    /// Only requests whose path contains this string match; `None` matches every path.
    #[serde(default)]
    pub path_contains: Option<String>,
}

fn one() -> u32 {
    1
}

impl Fault {
    /// A fault for the next matching request only.
    pub fn once(kind: FaultKind) -> Fault {
        Fault {
            kind,
            times: 1,
            path_contains: None,
        }
    }

    /// A fault for every matching request until cleared.
    pub fn always(kind: FaultKind) -> Fault {
        Fault {
            kind,
            times: 0,
            path_contains: None,
        }
    }

    /// Sets how many matching requests it applies to (0 = forever).
    pub fn times(mut self, times: u32) -> Fault {
        self.times = times;
        self
    }

    /// Restricts the fault to paths containing `s`.
    pub fn on_path(mut self, s: impl Into<String>) -> Fault {
        self.path_contains = Some(s.into());
        self
    }

    pub(crate) fn matches(&self, path: &str) -> bool {
        self.path_contains
            .as_deref()
            .is_none_or(|p| path.contains(p))
    }
}

/// What a fault does. JSON is internally tagged by `type` (snake_case); durations are integer milliseconds:
///
/// | variant | JSON |
/// |---|---|
/// | `Status` | `{"type":"status","status":429,"body":null,"retry_after":"2"}` (`body`, `retry_after` optional) |
/// | `Html` | `{"type":"html","status":502}` |
/// | `QuotaExhausted` | `{"type":"quota_exhausted"}` |
/// | `DelayFirstByte` | `{"type":"delay_first_byte","ms":500}` |
/// | `StreamCutAfter` | `{"type":"stream_cut_after","after":3}` |
/// | `MalformedFrame` | `{"type":"malformed_frame","after":2}` |
/// | `ErrorEvent` | `{"type":"error_event","after":1}` |
/// | `ErrorBody200` | `{"type":"error_body_200"}` |
/// | `IdleAfter` | `{"type":"idle_after","after":2,"pause_ms":1000}` |
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "FaultKindWire", into = "FaultKindWire")]
pub enum FaultKind {
    /// Answer with this status; `body` replaces the vendor's own error body for the status; `retry_after` sets the
    /// `Retry-After` header.
    Status {
        /// HTTP status.
        status: u16,
        /// Raw body (content type `application/json` if it parses as JSON, else `text/plain`); `None` = vendor body.
        body: Option<String>,
        /// Value of `Retry-After`.
        retry_after: Option<String>,
    },
    /// An HTML error page from a proxy (`text/html`).
    Html {
        /// HTTP status.
        status: u16,
    },
    /// Out of credit: the vendor's own quota or arrears error (each [`crate::Vendor`] constant documents it, e.g.
    /// OpenAI 429 `insufficient_quota`, DashScope 400 `Arrearage`).
    QuotaExhausted,
    /// Sleep this long before the response head (on top of the configured latency).
    DelayFirstByte(Duration),
    /// Stream: send N frames then reset the connection. Non-stream: send half the body then reset.
    StreamCutAfter(u32),
    /// Stream: after N frames, send one frame whose data is truncated JSON, then the rest of the stream.
    /// Non-stream: 200 with the first half of the body only (a complete HTTP message that is not valid JSON).
    MalformedFrame {
        /// Frames sent before the bad one.
        after: u32,
    },
    /// Stream: after N frames, send the vendor's mid-stream error and end the stream. Non-stream: the vendor's
    /// content-moderation error (each [`crate::Vendor`] constant documents both, e.g. OpenAI 400
    /// `content_filter`).
    ErrorEvent {
        /// Frames sent before the error.
        after: u32,
    },
    /// HTTP 200 whose body is the vendor's error body (server error).
    ErrorBody200,
    /// Stream: stall `pause` after N frames. Non-stream: send the head, stall `pause`, then send the body.
    IdleAfter {
        /// Frames sent before the stall.
        after: u32,
        /// Length of the stall.
        pause: Duration,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum FaultKindWire {
    Status {
        status: u16,
        #[serde(default)]
        body: Option<String>,
        #[serde(default)]
        retry_after: Option<String>,
    },
    Html {
        status: u16,
    },
    QuotaExhausted,
    DelayFirstByte {
        ms: u64,
    },
    StreamCutAfter {
        after: u32,
    },
    MalformedFrame {
        after: u32,
    },
    ErrorEvent {
        after: u32,
    },
    #[serde(rename = "error_body_200")]
    ErrorBody200,
    IdleAfter {
        after: u32,
        pause_ms: u64,
    },
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl From<FaultKindWire> for FaultKind {
    fn from(w: FaultKindWire) -> FaultKind {
        match w {
            FaultKindWire::Status {
                status,
                body,
                retry_after,
            } => FaultKind::Status {
                status,
                body,
                retry_after,
            },
            FaultKindWire::Html { status } => FaultKind::Html { status },
            FaultKindWire::QuotaExhausted => FaultKind::QuotaExhausted,
            FaultKindWire::DelayFirstByte { ms } => {
                FaultKind::DelayFirstByte(Duration::from_millis(ms))
            }
            FaultKindWire::StreamCutAfter { after } => FaultKind::StreamCutAfter(after),
            FaultKindWire::MalformedFrame { after } => FaultKind::MalformedFrame { after },
            FaultKindWire::ErrorEvent { after } => FaultKind::ErrorEvent { after },
            FaultKindWire::ErrorBody200 => FaultKind::ErrorBody200,
            FaultKindWire::IdleAfter { after, pause_ms } => FaultKind::IdleAfter {
                after,
                pause: Duration::from_millis(pause_ms),
            },
        }
    }
}

impl From<FaultKind> for FaultKindWire {
    fn from(k: FaultKind) -> FaultKindWire {
        match k {
            FaultKind::Status {
                status,
                body,
                retry_after,
            } => FaultKindWire::Status {
                status,
                body,
                retry_after,
            },
            FaultKind::Html { status } => FaultKindWire::Html { status },
            FaultKind::QuotaExhausted => FaultKindWire::QuotaExhausted,
            FaultKind::DelayFirstByte(d) => FaultKindWire::DelayFirstByte { ms: millis(d) },
            FaultKind::StreamCutAfter(after) => FaultKindWire::StreamCutAfter { after },
            FaultKind::MalformedFrame { after } => FaultKindWire::MalformedFrame { after },
            FaultKind::ErrorEvent { after } => FaultKindWire::ErrorEvent { after },
            FaultKind::ErrorBody200 => FaultKindWire::ErrorBody200,
            FaultKind::IdleAfter { after, pause } => FaultKindWire::IdleAfter {
                after,
                pause_ms: millis(pause),
            },
        }
    }
}

/// The reply a replacing fault answers with instead of the vendor handler, or `None` for shaping faults.
pub(crate) fn replacement(kind: &FaultKind, ctx: &Ctx) -> Option<Reply> {
    match kind {
        FaultKind::Status {
            status,
            body,
            retry_after,
        } => {
            let mut r = match body {
                Some(b) => Reply {
                    status: *status,
                    content_type: if serde_json::from_str::<serde_json::Value>(b).is_ok() {
                        "application/json"
                    } else {
                        "text/plain; charset=utf-8"
                    },
                    headers: vec![(ctx.dialect.request_id_header(), ctx.request_id())],
                    body: ReplyBody::Full(Bytes::from(b.clone())),
                },
                None => ctx.dialect.status_error(ctx, *status),
            };
            if let Some(ra) = retry_after {
                r = r.set_header("retry-after", ra.clone());
            }
            Some(r)
        }
        FaultKind::Html { status } => {
            let reason = StatusCode::from_u16(*status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("Error");
            Some(Reply {
                status: *status,
                content_type: "text/html",
                headers: Vec::new(),
                body: ReplyBody::Full(Bytes::from(format!(
                    "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n<center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
                ))),
            })
        }
        FaultKind::QuotaExhausted => Some(ctx.dialect.quota_error(ctx)),
        FaultKind::ErrorBody200 => Some(ctx.dialect.error_body_200(ctx)),
        FaultKind::DelayFirstByte(_)
        | FaultKind::StreamCutAfter(_)
        | FaultKind::MalformedFrame { .. }
        | FaultKind::ErrorEvent { .. }
        | FaultKind::IdleAfter { .. } => None,
    }
}

fn cut_error() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::ConnectionReset,
        "emulator fault: connection cut",
    )
}

/// Returns `Pending` a few times so hyper flushes what it buffered before the body fails: hyper drops its write
/// buffer when a body errors, so without this the client would not see the frames sent before a cut.
async fn flush_point() {
    for _ in 0..4 {
        tokio::task::yield_now().await;
    }
}

fn clamp(after: u32, len: usize) -> usize {
    usize::try_from(after)
        .unwrap_or(usize::MAX)
        .min(len.saturating_sub(1))
}

/// Builds the HTTP response, applying a shaping fault and the stream token interval.
pub(crate) fn into_response(
    reply: Reply,
    shaping: Option<FaultKind>,
    ctx: Ctx,
    token_interval: Duration,
) -> Response<Body> {
    let Reply {
        status,
        content_type,
        headers,
        body,
    } = reply;
    let mut content_length: Option<usize> = None;
    let body = match body {
        ReplyBody::Full(bytes) => {
            let half = bytes.slice(..bytes.len() / 2);
            match shaping {
                Some(FaultKind::StreamCutAfter(_)) => {
                    content_length = Some(bytes.len());
                    Body::from_stream(async_stream::stream! {
                        yield Ok::<Bytes, std::io::Error>(half);
                        flush_point().await;
                        yield Err(cut_error());
                    })
                }
                Some(FaultKind::MalformedFrame { .. }) => Body::from(half),
                Some(FaultKind::IdleAfter { pause, .. }) => {
                    content_length = Some(bytes.len());
                    Body::from_stream(async_stream::stream! {
                        tokio::time::sleep(pause).await;
                        yield Ok::<Bytes, std::io::Error>(bytes);
                    })
                }
                _ => Body::from(bytes),
            }
        }
        ReplyBody::Sse(frames) => {
            let len = frames.len();
            Body::from_stream(async_stream::stream! {
                for (i, frame) in frames.into_iter().enumerate() {
                    if i > 0 && !token_interval.is_zero() {
                        tokio::time::sleep(token_interval).await;
                    }
                    match &shaping {
                        Some(FaultKind::StreamCutAfter(n)) if i == clamp(*n, len) => {
                            flush_point().await;
                            yield Err(cut_error());
                            return;
                        }
                        Some(FaultKind::ErrorEvent { after }) if i == clamp(*after, len) => {
                            yield Ok(ctx.dialect.stream_error_frame(&ctx, i));
                            return;
                        }
                        Some(FaultKind::MalformedFrame { after }) if i == clamp(*after, len) => {
                            yield Ok(ctx.dialect.malformed_frame(&ctx, i));
                        }
                        Some(FaultKind::IdleAfter { after, pause }) if i == clamp(*after, len) => {
                            tokio::time::sleep(*pause).await;
                        }
                        _ => {}
                    }
                    yield Ok::<Bytes, std::io::Error>(frame);
                }
            })
        }
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Some(n) = content_length {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    }
    if matches!(content_type, t if t.starts_with("text/event-stream")) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.append(HeaderName::from_static(name), v);
        }
    }
    resp
}
