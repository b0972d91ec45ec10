//! HTTP emulators of LLM vendors (OpenAI; DashScope native and OpenAI-compatible mode) for wire-level tests.
//!
//! Each [`Emulator`] is an axum server on `127.0.0.1:0` that speaks one vendor's wire format, written from the
//! vendors' docs and the captured official-SDK traffic in `shared/vectors/*_sdk_capture.json` (it does not use
//! `llmux-core`, so it checks our codecs instead of mirroring them). It records every request, answers
//! deterministically, and can be told to misbehave with queued [`Fault`]s, in process or over HTTP.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use llmux_emulator::{Emulator, EmulatorConfig, Fault, FaultKind, Vendor};
//! let emu = Emulator::start(EmulatorConfig::new(Vendor::OpenAi)).await?;
//! emu.push_fault(Fault::once(FaultKind::Status { status: 429, body: None, retry_after: Some("1".into()) }));
//! let base = emu.base_url(); // http://127.0.0.1:PORT/v1, key "sk-emulator-openai"
//! # let _ = base; Ok(()) }
//! ```
//!
//! # Endpoints
//!
//! * OpenAI ([`Vendor::OpenAi`], base `/v1`): `POST /v1/chat/completions`, `POST /v1/embeddings`,
//!   `GET /v1/models`, `GET /v1/models/{id}`; any other path is a 404 OpenAI error.
//! * DashScope ([`Vendor::DashScope`]), native base `/api/v1`:
//!   `POST /api/v1/services/aigc/text-generation/generation`,
//!   `POST /api/v1/services/aigc/multimodal-generation/generation`,
//!   `POST /api/v1/services/embeddings/text-embedding/text-embedding` (any other path: 400 `InvalidURL`);
//!   compatible mode base `/compatible-mode/v1`: `chat/completions`, `embeddings`, `models`, `models/{id}`.
//!
//! # Authentication
//!
//! Every vendor request needs `Authorization: Bearer <key>` with a key from [`EmulatorConfig::api_keys`].
//! Otherwise 401 with the vendor's body:
//! * OpenAI, wrong key: `{"error":{"message":"Incorrect API key provided: <masked>.","type":"invalid_request_error",
//!   "param":null,"code":"invalid_api_key"}}`; keys longer than 8 characters are masked as first 3 characters,
//!   `*` for each hidden character, last 4 (`sk-bad` stays as is). Missing header: message
//!   "You didn't provide an API key. ...", `code` null.
//! * DashScope native: `{"code":"InvalidApiKey","message":"Invalid API-key provided.","request_id":"<id>"}`.
//! * DashScope compatible mode: OpenAI envelope, `code` `invalid_api_key`, plus top-level `request_id`.
//!
//! Authentication is checked after fault selection and before routing and validation.
//!
//! # Ids
//!
//! Requests are numbered 1, 2, … per emulator (`seq`, control routes excluded). DashScope request ids are
//! `00000000-0000-4000-8000-<seq as 12 hex digits>` (body `request_id` and header `x-request-id`; compatible mode
//! also returns it as `request_id` in errors and `id` in embeddings). OpenAI: header `x-request-id:
//! req_emu<seq as 12 hex>`, chat id `chatcmpl-emu<seq as 6 digits>`, `created` = Unix seconds at arrival.
//! Tool-call ids are `call_<i>` with `i` the 0-based position of the call in the answer.
//!
//! # Deterministic answers
//!
//! * **Pieces.** Text is split into pieces: a run of non-whitespace, non-CJK characters plus the whitespace that
//!   follows it is one piece; each CJK character (CJK ideographs, kana, hangul, CJK/full-width punctuation) plus the
//!   whitespace that follows it is one piece; leading whitespace joins the first piece. Pieces concatenate to the
//!   text. `"You said: hi there"` → `"You "`, `"said: "`, `"hi "`, `"there"`; `"你好"` → `"你"`, `"好"`.
//! * **Message text.** A string `content` as is; an array of parts → the concatenation of the parts' string `text`
//!   fields; otherwise "". DashScope `input.prompt` is one user message.
//! * **Reply.** If the request has tools, `tool_choice` is not `"none"` and the last message is `user`: tool calls
//!   (below). Else if the last message is `tool`: `"Tool results: "` + the contents of the trailing run of tool
//!   messages joined by `"; "`. Else `"You said: "` + the text of the last user message ("" if none).
//! * **stop** (string or strings) cuts the reply before the earliest match (finish `stop`); then **max_tokens**
//!   (OpenAI `max_completion_tokens`, else `max_tokens`; DashScope `parameters.max_tokens`) keeps the first N
//!   pieces, finish `length` if any were dropped. Otherwise finish `stop`.
//! * **Usage.** prompt tokens = Σ over all input messages (every role) of (pieces of its text + 4);
//!   completion tokens = number of reply pieces, or for tool calls Σ per call (1 + argument fragments);
//!   total = prompt + completion. Embeddings: tokens = Σ pieces of each input (token-id inputs: number of ids).
//! * **Tool calls.** Tools answered: only the one named by an object `tool_choice` (unknown name → 400); else all
//!   tools in order when `parallel_tool_calls` is true, only the first otherwise. `parallel_tool_calls` defaults to
//!   true for OpenAI and false for DashScope (native and compatible mode), as the vendors document. Arguments are
//!   compact JSON of an object built from the function's `parameters.properties` in lexicographic key order:
//!   the *key string* (first name in `required` whose type is `string` without `enum`, else the first such
//!   property) gets the last user message's text; other strings get their first `enum` value or `"sample"`;
//!   `integer` 1, `number` 1.5, `boolean` true, `array` [], `object` {}, `null` null, no type `"sample"` (a `type`
//!   array uses its first non-null entry). Streamed arguments are cut into fragments of 8 characters.
//!   DashScope answers with tools only for `result_format: "message"` (and multimodal); text format ignores tools.
//! * **Embeddings.** Vector = for seed FNV-1a-64(UTF-8 text), component i = i-th splitmix64 output `z`,
//!   `(z >> 40) / 2^23 - 1`, then divided by the L2 norm, as f32 (JSON numbers are the shortest f32 decimal;
//!   OpenAI `encoding_format:"base64"` = base64 of little-endian f32). Token-id inputs hash the compact JSON of
//!   the id array. Dimensions: OpenAI `dimensions`, else 3072 for `text-embedding-3-large`, else 1536;
//!   compatible mode `dimensions` else 1024; DashScope native `parameters.dimension`, default 1024 for models
//!   containing `v3`/`v4`, else 1536 (v1/v2 allow only 1536; v3 1024/768/512/256/128/64; v4 also 2048/1536).
//!
//! # Wire shapes
//!
//! * OpenAI chat non-stream: PROTOCOLS 2.3 (`message.refusal` null, usage details zero, `system_fingerprint` null;
//!   tool answers have `content` null). Stream: `data: <chunk>\n\n` frames: `{"role":"assistant","content":""}`,
//!   one `{"content":piece}` per piece, `{}` with the finish reason, then with `stream_options.include_usage` a
//!   `choices:[]` usage chunk (and `"usage":null` on every other chunk), then `data: [DONE]`. Tool streams: per
//!   call a fragment with `index`, `id`, `type`, `function.name`, `arguments:""` (the first also carries
//!   `role:"assistant","content":null`), then one `{"index":i,"function":{"arguments":fragment}}` per fragment.
//! * DashScope native non-stream: PROTOCOLS 1.3; `result_format` defaults to `text`; multimodal is always the
//!   message format with `content: [{"text": ...}]` (`[]` for tool calls). Streaming only with header
//!   `X-DashScope-SSE: enable` (a body `stream` field is ignored): `id:N\nevent:result\n:HTTP_STATUS/200\ndata:..`
//!   frames, one per piece (one empty frame for an empty reply) or, for tools, per call one frame with id and
//!   name then one per fragment (continuations have `"id":""` and no name); `finish_reason` `"null"` until the
//!   last frame, which carries the finish reason itself; running usage on every frame; no `[DONE]`.
//!   `parameters.incremental_output: true` sends only the new piece, otherwise everything so far.
//! * Validation: malformed JSON → 400; OpenAI: missing/empty `model` or `messages` → 400
//!   `invalid_request_error`; DashScope: missing `model` → 400 `BadRequest.EmptyModel`; `input` with neither
//!   `prompt` nor non-empty `messages` → 400 `InvalidParameter` "Either \"prompt\" or \"messages\" must exist and
//!   cannot both be none"; embeddings: v3/v4 more than 10 texts, v1/v2 more than 25 → 400 `InvalidParameter`;
//!   compatible-mode embeddings: `encoding_format` other than `float` → 400, more than 10 inputs → 400.
//!   Unknown fields are ignored. Only one choice is produced whatever `n` says.
//!
//! # Faults
//!
//! Faults queue in order; a request takes the *first* queued fault whose `path_contains` matches (control routes
//! never match), its `times` is decremented and it is removed when it reaches 0 (`times: 0` = forever). At most
//! one fault applies per request. Status, Html, QuotaExhausted and ErrorBody200 replace the answer (before auth);
//! the others shape the normal answer. For streams, "frames" count every SSE frame as sent (OpenAI: the role chunk
//! is frame 1 and `[DONE]` is a frame), and `after`/`N` is clamped to frames − 1 so the fault always lands before
//! the stream's last frame. [`FaultKind`] documents each kind and its JSON shape. Every request is logged with
//! the status that was answered.
//!
//! # Timing
//!
//! `latency` (and `DelayFirstByte`) sleep before the response head; `token_interval` sleeps between stream frames.
//! All sleeps are `tokio::time::sleep`, so tests under paused time drive them. Accepted sockets get TCP_NODELAY.
//!
//! # Control surface (no auth, not logged)
//!
//! * `POST /__emulator/faults` with a [`Fault`] or an array of them → `200 {"queued":N}`; bad JSON → 400.
//! * `GET /__emulator/faults` → the queue; `DELETE /__emulator/faults` → 204, queue cleared.
//! * `GET /__emulator/requests` → `[{"method","path","query","headers":[[name,value],...],"body":"<utf-8, lossy>",
//!   "status","unix_ms"}]` in arrival order; `DELETE /__emulator/requests` → 204, log cleared.
//! * `PUT /__emulator/latency` with `{"ms":N}` → 204.

mod answer;
mod auth;
mod clock;
mod control;
mod emulator;
mod fault;
mod reply;
mod sse;

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::Response;
use axum::serve::ListenerExt as _;
use axum::Router;
use bytes::Bytes;

pub use fault::{Fault, FaultKind};

use reply::{Ctx, Incoming};

/// Largest request body the emulator reads (larger bodies are treated as empty).
const MAX_BODY: usize = 32 * 1024 * 1024;

/// The vendor an emulator speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Vendor {
    /// OpenAI `/v1`.
    OpenAi,
    /// Alibaba DashScope: native `/api/v1` and OpenAI-compatible `/compatible-mode/v1`.
    DashScope,
    /// iFlytek Spark: WebSocket chat (`/v3.5/chat`, …) and the OpenAI-compatible HTTP API `/v1`.
    Spark,
    /// Huawei Cloud Pangu (V1 deployments, V2) with Huawei IAM tokens and APIG AK/SK signing.
    Pangu,
}

impl Vendor {
    /// The stable provider id (`openai`, `dashscope`, `spark`, `pangu`).
    pub fn id(self) -> &'static str {
        match self {
            Vendor::OpenAi => "openai",
            Vendor::DashScope => "dashscope",
            Vendor::Spark => "spark",
            Vendor::Pangu => "pangu",
        }
    }

    /// The key an [`EmulatorConfig::new`] accepts by default: a bearer key; for Spark the HTTP API password
    /// (`emu-api-password`, also the default `api_password` credential); for Pangu a static `X-Auth-Token`
    /// (`emu-pangu-token`) that never expires.
    pub fn default_key(self) -> &'static str {
        match self {
            Vendor::OpenAi => "sk-emulator-openai",
            Vendor::DashScope => "sk-emulator-dashscope",
            Vendor::Spark => "emu-api-password",
            Vendor::Pangu => "emu-pangu-token",
        }
    }
}

/// How to start an [`Emulator`]. `Debug` redacts the keys.
#[derive(Clone)]
pub struct EmulatorConfig {
    /// The vendor to speak.
    pub vendor: Vendor,
    /// Accepted bearer keys.
    pub api_keys: Vec<String>,
    /// Listen address; default `127.0.0.1:0`.
    pub bind: SocketAddr,
    /// Sleep before every response head; default zero.
    pub latency: Duration,
    /// Sleep between stream frames; default zero.
    pub token_interval: Duration,
    /// Vendor credentials other than bearer keys, by field name (`secret_id`, `secret_key`,
    /// `app_id`, `api_secret`, …); each vendor documents the fields it reads.
    pub credentials: std::collections::BTreeMap<String, String>,
}

impl fmt::Debug for EmulatorConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmulatorConfig")
            .field("vendor", &self.vendor)
            .field(
                "api_keys",
                &format_args!("[{} redacted]", self.api_keys.len()),
            )
            .field("bind", &self.bind)
            .field("latency", &self.latency)
            .field("token_interval", &self.token_interval)
            .field("credentials", &self.credentials.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl EmulatorConfig {
    /// Defaults: the vendor's default key ([`Vendor::default_key`]), `127.0.0.1:0`, no latency, no token interval,
    /// and the vendor's default credentials (crate docs, "Credentials").
    pub fn new(vendor: Vendor) -> Self {
        EmulatorConfig {
            vendor,
            api_keys: vec![vendor.default_key().to_owned()],
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            latency: Duration::ZERO,
            token_interval: Duration::ZERO,
            credentials: auth::state::default_credentials(vendor)
                .iter()
                .map(|(f, v)| ((*f).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    /// Sets a vendor credential (`secret_id`, `secret_key`, …).
    pub fn with_credential(mut self, field: impl Into<String>, value: impl Into<String>) -> Self {
        self.credentials.insert(field.into(), value.into());
        self
    }

    /// Replaces the accepted keys.
    pub fn with_keys<I, S>(mut self, keys: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.api_keys = keys.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the listen address.
    pub fn with_bind(mut self, bind: SocketAddr) -> Self {
        self.bind = bind;
        self
    }

    /// Sets the sleep before every response head.
    pub fn with_latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// Sets the sleep between stream frames.
    pub fn with_token_interval(mut self, interval: Duration) -> Self {
        self.token_interval = interval;
        self
    }
}

/// One request as the emulator received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// HTTP method.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Raw query string, if any.
    pub query: Option<String>,
    /// Headers in arrival order, names lower-case.
    pub headers: Vec<(String, String)>,
    /// Raw body.
    pub body: Bytes,
    /// Arrival time on tokio's clock.
    pub at: tokio::time::Instant,
    /// Arrival wall-clock time.
    pub wall: SystemTime,
    /// Status the emulator answered (0 while the answer is still being prepared).
    pub status: u16,
}

impl RecordedRequest {
    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// State shared by the server task and the handle.
pub(crate) struct Shared {
    vendor: Vendor,
    api_keys: Vec<String>,
    token_interval: Duration,
    latency: Mutex<Duration>,
    seq: AtomicU64,
    /// (seq, request), arrival order.
    log: Mutex<Vec<(u64, RecordedRequest)>>,
    faults: Mutex<Vec<Fault>>,
    /// Vendor credentials, the emulator clock and issued tokens.
    auth: auth::state::AuthState,
}

/// Locks a mutex, ignoring poisoning (the data stays usable: every critical section is a plain update).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    pub(crate) fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.log).iter().map(|(_, r)| r.clone()).collect()
    }

    pub(crate) fn clear_requests(&self) {
        lock(&self.log).clear();
    }

    pub(crate) fn push_fault(&self, fault: Fault) {
        lock(&self.faults).push(fault);
    }

    pub(crate) fn faults(&self) -> Vec<Fault> {
        lock(&self.faults).clone()
    }

    pub(crate) fn clear_faults(&self) {
        lock(&self.faults).clear();
    }

    pub(crate) fn set_latency(&self, d: Duration) {
        *lock(&self.latency) = d;
    }

    /// Takes the first fault matching `path`, decrementing its count.
    fn take_fault(&self, path: &str) -> Option<FaultKind> {
        let mut q = lock(&self.faults);
        let i = q.iter().position(|f| f.matches(path))?;
        let kind = q[i].kind.clone();
        match q[i].times {
            0 => {}
            1 => {
                q.remove(i);
            }
            _ => q[i].times -= 1,
        }
        Some(kind)
    }

    fn set_status(&self, seq: u64, status: u16) {
        if let Some((_, r)) = lock(&self.log).iter_mut().rev().find(|(s, _)| *s == seq) {
            r.status = status;
        }
    }
}

/// A running emulator. Dropping it stops the server (the accept task is aborted).
pub struct Emulator {
    addr: SocketAddr,
    vendor: Vendor,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl fmt::Debug for Emulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Emulator")
            .field("vendor", &self.vendor)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Emulator {
    /// Binds `cfg.bind` and serves in a background task of the current tokio runtime.
    pub async fn start(cfg: EmulatorConfig) -> std::io::Result<Emulator> {
        let listener = tokio::net::TcpListener::bind(cfg.bind).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            vendor: cfg.vendor,
            api_keys: cfg.api_keys,
            token_interval: cfg.token_interval,
            latency: Mutex::new(cfg.latency),
            seq: AtomicU64::new(0),
            log: Mutex::new(Vec::new()),
            faults: Mutex::new(Vec::new()),
            auth: auth::state::AuthState::new(cfg.vendor, cfg.credentials),
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let listener = listener.tap_io(|tcp| {
            if let Err(err) = tcp.set_nodelay(true) {
                tracing::debug!("could not set TCP_NODELAY on an accepted socket: {err}");
            }
        });
        let task = tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app).await {
                tracing::warn!("emulator server stopped: {err}");
            }
        });
        Ok(Emulator {
            addr,
            vendor: cfg.vendor,
            shared,
            task,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:P` without any path.
    pub fn root_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The vendor's base URL: OpenAI `http://127.0.0.1:P/v1`, DashScope native `http://127.0.0.1:P/api/v1`,
    /// Spark `ws://127.0.0.1:P` (append `/v3.5/chat`, …), Pangu `http://127.0.0.1:P` (append `/v1/...`; also the
    /// IAM endpoint).
    pub fn base_url(&self) -> String {
        match self.vendor {
            Vendor::OpenAi => format!("http://{}/v1", self.addr),
            Vendor::DashScope => format!("http://{}/api/v1", self.addr),
            Vendor::Spark => format!("ws://{}", self.addr),
            Vendor::Pangu => format!("http://{}", self.addr),
        }
    }

    /// DashScope: `http://127.0.0.1:P/compatible-mode/v1`; Spark: `http://127.0.0.1:P/v1`; others `None`.
    pub fn compat_base_url(&self) -> Option<String> {
        match self.vendor {
            Vendor::OpenAi | Vendor::Pangu => None,
            Vendor::DashScope => Some(format!("http://{}/compatible-mode/v1", self.addr)),
            Vendor::Spark => Some(format!("http://{}/v1", self.addr)),
        }
    }

    /// The request log, in arrival order (control routes excluded).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests()
    }

    /// Empties the request log.
    pub fn clear_requests(&self) {
        self.shared.clear_requests();
    }

    /// Queues a fault.
    pub fn push_fault(&self, fault: Fault) {
        self.shared.push_fault(fault);
    }

    /// Empties the fault queue.
    pub fn clear_faults(&self) {
        self.shared.clear_faults();
    }

    /// Changes the sleep before every response head.
    pub fn set_latency(&self, d: Duration) {
        self.shared.set_latency(d);
    }

    /// Moves the emulator clock `offset_secs` seconds ahead of the real clock (negative: behind). The clock
    /// checks Spark `date`, APIG `X-Sdk-Date` and IAM token expiry; it also follows tokio time, so paused-time
    /// tests can move it with `tokio::time::advance`.
    pub fn set_clock_offset(&self, offset_secs: i64) {
        self.shared.auth.clock.set_offset_secs(offset_secs);
    }

    /// The emulator clock now (real start time + tokio time since start + the clock offset).
    pub fn now(&self) -> SystemTime {
        self.shared.auth.clock.now()
    }

    /// Sets the lifetime of IAM tokens issued from now on (default 24 h).
    pub fn set_token_ttl(&self, ttl: Duration) {
        self.shared.auth.tokens.set_ttl(ttl);
    }

    /// Invalidates every IAM token issued so far: they answer 401 `APIG.1002` from now on.
    pub fn expire_tokens(&self) {
        self.shared.auth.tokens.expire_all();
    }
}

/// Every request lands here: control routes, then fault selection, auth, the vendor handler, timing.
async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, MAX_BODY)
        .await
        .unwrap_or_default();
    let path = parts.uri.path().to_owned();
    if path.starts_with(control::PREFIX) {
        return control::handle(&shared, parts.method.as_str(), &path, &body);
    }
    let seq = shared.seq.fetch_add(1, Ordering::Relaxed) + 1;
    let wall = SystemTime::now();
    let recorded = RecordedRequest {
        method: parts.method.to_string(),
        path: path.clone(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.clone(),
        at: tokio::time::Instant::now(),
        wall,
        status: 0,
    };
    lock(&shared.log).push((seq, recorded));

    let ctx = Ctx {
        dialect: emulator::dialect(shared.vendor, &path),
        seq,
        created: wall
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    };
    if ctx.dialect == reply::Dialect::SparkWs {
        return emulator::spark::websocket(shared, parts, ctx).await;
    }
    let incoming = Incoming {
        method: parts.method.as_str(),
        path: &path,
        query: parts.uri.query(),
        headers: &parts.headers,
        body: &body,
    };
    let fault = shared.take_fault(&path);
    let mut reply = match fault.as_ref().and_then(|f| fault::replacement(f, &ctx)) {
        Some(r) => r,
        None => emulator::check_auth(&ctx, &incoming, &shared)
            .unwrap_or_else(|| emulator::route(&ctx, &incoming, &shared)),
    };
    if matches!(fault, Some(FaultKind::ErrorEvent { .. }))
        && !reply.is_stream()
        && reply.status == 200
    {
        reply = fault::content_filter(&ctx);
    }
    shared.set_status(seq, reply.status);

    let latency = *lock(&shared.latency);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if let Some(FaultKind::DelayFirstByte(d)) = fault {
        tokio::time::sleep(d).await;
    }
    fault::into_response(reply, fault, ctx, shared.token_interval)
}
