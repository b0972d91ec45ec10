//! HTTP and WebSocket emulators of LLM vendors for wire-level tests: one emulator per [`Vendor`]
//! ([`Vendor::ALL`] lists them; each constant, such as [`Vendor::OpenAi`], documents its vendor).
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
//! # Vendors
//!
//! Each vendor is documented on its [`Vendor`] constant: endpoints and base URLs, authentication (bearer keys,
//! TC3 and APIG signatures, JWTs, signed WebSocket URLs, IAM tokens), default key and credentials, request ids,
//! wire shapes, validation, and what each fault looks like in its format. The sections below are the rules
//! every vendor shares. (In the source, a vendor is one file under `src/emulator/` and one row of the table in
//! `src/emulator/mod.rs`.)
//!
//! # Authentication
//!
//! Authentication is checked after fault selection and before routing and validation. A bearer-key vendor
//! accepts the keys of [`EmulatorConfig::api_keys`] (default: [`Vendor::default_key`]) and answers a missing or
//! wrong key with its own 401 body.
//!
//! # Credentials
//!
//! [`EmulatorConfig::new`] fills [`EmulatorConfig::credentials`] with the vendor's defaults
//! ([`Vendor::default_credentials`]; a field missing from the map also falls back to its default);
//! [`EmulatorConfig::with_credential`] overrides one. Each vendor constant lists its fields.
//!
//! # Clock
//!
//! Every vendor reads one *emulator clock*: the wall clock when the emulator started, plus **tokio** time elapsed
//! since then, plus a signed offset in milliseconds ([`EmulatorConfig::clock_offset_ms`],
//! [`Emulator::set_clock_offset_ms`] or its whole-seconds form [`Emulator::set_clock_offset`],
//! `PUT /__emulator/clock`). Outside paused time tokio time runs with the real clock, so the emulator clock is the
//! system clock plus the offset; under paused time (`#[tokio::test(start_paused = true)]`) it moves only with
//! `tokio::time::advance` (or tokio's auto-advance while every task is idle), so token expiry can be tested
//! without sleeping. [`Emulator::now`] and [`Emulator::now_unix_ms`] read it.
//!
//! It decides signature timestamp skew, JWT and token expiry (each vendor documents its window), and fills
//! `created`/`Created`/`created_at`. While the offset is non-zero every HTTP response carries a `Date` header
//! from it (so a client can correct its own clock after a skew rejection); a WebSocket handshake keeps the
//! server's own `Date`.
//!
//! # Ids
//!
//! Requests are numbered 1, 2, … per emulator (`seq`, control routes excluded); each vendor derives its request
//! ids from `seq` (see its constant). Tool-call ids are `call_<i>` with `i` the 0-based position of the call in
//! the answer.
//!
//! # Deterministic answers
//!
//! * **Pieces.** Text is split into pieces: a run of non-whitespace, non-CJK characters plus the whitespace that
//!   follows it is one piece; each CJK character (CJK ideographs, kana, hangul, CJK/full-width punctuation) plus the
//!   whitespace that follows it is one piece; leading whitespace joins the first piece. Pieces concatenate to the
//!   text. `"You said: hi there"` → `"You "`, `"said: "`, `"hi "`, `"there"`; `"你好"` → `"你"`, `"好"`.
//! * **Message text.** A string `content` as is; an array of parts → the concatenation of the parts' string `text`
//!   fields; otherwise "" (vendors with other message shapes say how they read them).
//! * **Reply.** If the request has tools, the tool choice is not "none" and the last message is `user`: tool
//!   calls (below). Else if the last message is `tool` (a tool result): `"Tool results: "` + the contents of the
//!   trailing run of tool results joined by `"; "`. Else `"You said: "` + the text of the last user message (""
//!   if none).
//! * **stop** (string or strings) cuts the reply before the earliest match (finish `stop`); then **max tokens**
//!   (the vendor's option) keeps the first N pieces, finish `length` if any were dropped. Otherwise finish
//!   `stop`.
//! * **Usage.** prompt tokens = Σ over all input messages (every role) of (pieces of its text + 4);
//!   completion tokens = number of reply pieces, or for tool calls Σ per call (1 + argument fragments);
//!   total = prompt + completion. Embeddings: tokens = Σ pieces of each input (token-id inputs: number of ids).
//! * **Tool calls.** Tools answered: only the one a tool choice names (unknown name → the vendor's 400); else
//!   all tools in order when parallel tool calls are on, only the first otherwise (each vendor documents its
//!   default). Arguments are compact JSON of an object built from the function's `parameters.properties` in
//!   lexicographic key order: the *key string* (first name in `required` whose type is `string` without
//!   `enum`, else the first such property) gets the last user message's text; other strings get their first
//!   `enum` value or `"sample"`; `integer` 1, `number` 1.5, `boolean` true, `array` [], `object` {}, `null`
//!   null, no type `"sample"` (a `type` array uses its first non-null entry). Streamed arguments are cut into
//!   fragments of 8 characters.
//! * **Embeddings.** Vector = for seed FNV-1a-64(UTF-8 text), component i = i-th splitmix64 output `z`,
//!   `(z >> 40) / 2^23 - 1`, then divided by the L2 norm, as f32 (JSON numbers are the shortest f32 decimal;
//!   base64 encodings are of little-endian f32). Token-id inputs hash the compact JSON of the id array. Each
//!   vendor documents its default dimensions.
//! * Unknown fields are ignored. Only one choice is produced whatever `n` says.
//!
//! # Faults
//!
//! Faults queue in order; a request takes the *first* queued fault whose `path_contains` matches (control routes
//! never match), its `times` is decremented and it is removed when it reaches 0 (`times: 0` = forever). At most
//! one fault applies per request. Status, Html, QuotaExhausted and ErrorBody200 replace the answer (before auth);
//! the others shape the normal answer. For streams, "frames" count every stream frame as sent (OpenAI: the role
//! chunk is frame 1 and `[DONE]` is a frame; NDJSON streams count lines), and `after`/`N` is clamped to
//! frames − 1 so the fault always lands before the stream's last frame. [`FaultKind`] documents each kind and its
//! JSON shape, each vendor constant the bodies and frames it answers with. Every request is logged with the
//! status that was answered.
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
//! * `PUT /__emulator/clock` with `{"offset_ms":N}` or `{"offset_secs":N}` (signed; `offset_ms` wins if both are
//!   given) → 204, same as [`Emulator::set_clock_offset_ms`]; `GET /__emulator/clock` → `{"offset_ms","unix_ms"}`
//!   (the offset and the emulator clock now).
//! * `PUT /__emulator/token_ttl` with `{"secs":N}` → 204; same as [`Emulator::set_token_ttl`].
//! * `POST /__emulator/tokens/expire` → 204; same as [`Emulator::expire_tokens`].

mod answer;
mod auth;
mod clock;
mod control;
mod emulator;
mod env;
mod fault;
mod ndjson;
mod reply;
pub mod sdk;
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

/// The vendor an emulator speaks: one row of the emulator table. Each vendor is a constant (`Vendor::OpenAi`,
/// `Vendor::DashScope`, …) defined and documented in its own emulator file; [`Vendor::ALL`] lists them.
/// Vendors compare equal when their ids do.
#[derive(Clone, Copy)]
pub struct Vendor(&'static dyn emulator::VendorEmulator);

impl PartialEq for Vendor {
    fn eq(&self, other: &Vendor) -> bool {
        self.id() == other.id()
    }
}

impl Eq for Vendor {}

impl std::hash::Hash for Vendor {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.id().hash(state);
    }
}

impl fmt::Debug for Vendor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Vendor").field(&self.id()).finish()
    }
}

impl Vendor {
    /// The stable provider id (`openai`, `dashscope`, `hunyuan`, `zhipu`, `ollama`, `spark`, `pangu`, …).
    pub fn id(self) -> &'static str {
        self.0.id()
    }

    /// The key an [`EmulatorConfig::new`] accepts by default (each vendor constant says what kind of key it is:
    /// a bearer key, an API password, a static token, …).
    pub fn default_key(self) -> &'static str {
        self.0.default_key()
    }

    /// The credentials an [`EmulatorConfig::new`] starts with (field, value), as listed on each vendor
    /// constant; none for vendors that only check keys.
    pub fn default_credentials(self) -> Vec<(&'static str, &'static str)> {
        self.0.default_credentials().to_vec()
    }

    /// The models an [`EmulatorConfig::new`] knows: Ollama [`OLLAMA_MODELS`]; empty (any model) for the others.
    pub fn default_models(self) -> Vec<String> {
        self.0
            .default_models()
            .iter()
            .map(|m| (*m).to_owned())
            .collect()
    }
}

// Vendor defaults that callers name directly (the vendor files read them from here).

/// Default Hunyuan `SecretId` (credential field `secret_id`).
pub const HUNYUAN_SECRET_ID: &str = "AKIDemulator";
/// Default Hunyuan `SecretKey` (credential field `secret_key`).
pub const HUNYUAN_SECRET_KEY: &str = "emulator-secret-key";
/// Models a default Ollama emulator has pulled.
pub const OLLAMA_MODELS: &[&str] = &["llama3.2", "qwen2.5:7b", "nomic-embed-text"];

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
    /// Models the emulator knows; requests naming another get the vendor's not-found error. Only vendors that
    /// check model names read it (Ollama, default [`OLLAMA_MODELS`]); empty = any model.
    pub models: Vec<String>,
    /// Offset of the emulator clock from the real clock, in milliseconds (negative = behind). Used for signature
    /// and token expiry checks, `created` fields and, when non-zero, the `Date` header; default 0 (crate docs,
    /// "Clock").
    pub clock_offset_ms: i64,
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
            .field("models", &self.models)
            .field("clock_offset_ms", &self.clock_offset_ms)
            .finish()
    }
}

impl EmulatorConfig {
    /// Defaults: the vendor's default key ([`Vendor::default_key`]), credentials
    /// ([`Vendor::default_credentials`]) and models ([`Vendor::default_models`]), `127.0.0.1:0`, no latency, no
    /// token interval, no clock offset.
    pub fn new(vendor: Vendor) -> Self {
        EmulatorConfig {
            vendor,
            api_keys: vec![vendor.default_key().to_owned()],
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            latency: Duration::ZERO,
            token_interval: Duration::ZERO,
            credentials: vendor
                .default_credentials()
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            models: vendor.default_models(),
            clock_offset_ms: 0,
        }
    }

    /// Replaces the known models (empty = any model).
    pub fn with_models<I, S>(mut self, models: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.models = models.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the offset of the emulator clock from the real clock, in milliseconds (negative = behind).
    pub fn with_clock_offset_ms(mut self, offset_ms: i64) -> Self {
        self.clock_offset_ms = offset_ms;
        self
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
    /// Models the emulator knows (Ollama).
    models: Vec<String>,
    /// The emulator clock every vendor reads (signature skew, token expiry, `created` fields, `Date`).
    clock: clock::Clock,
    /// Vendor credentials and issued IAM tokens.
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
            models: cfg.models,
            clock: clock::Clock::new(cfg.clock_offset_ms),
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

    /// The vendor's base URL (each vendor constant says which it is), e.g. OpenAI `http://127.0.0.1:P/v1`,
    /// DashScope native `http://127.0.0.1:P/api/v1`, Spark `ws://127.0.0.1:P`.
    pub fn base_url(&self) -> String {
        self.vendor.0.base_url(self.addr)
    }

    /// The base URL of the vendor's OpenAI-compatible endpoint, if it has one (e.g. DashScope
    /// `http://127.0.0.1:P/compatible-mode/v1`, Hunyuan `http://127.0.0.1:P/v1`; OpenAI itself: `None`).
    pub fn compat_base_url(&self) -> Option<String> {
        self.vendor.0.compat_base_url(self.addr)
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

    /// Moves the emulator clock `offset_ms` milliseconds away from the real clock (negative = behind), e.g. to
    /// make a client's TC3 timestamps, Spark `date` or APIG `X-Sdk-Date` look skewed, to accept a recorded JWT, or
    /// to jump past IAM token expiry. Replaces the previous offset.
    pub fn set_clock_offset_ms(&self, offset_ms: i64) {
        self.shared.clock.set_offset_ms(offset_ms);
    }

    /// [`Emulator::set_clock_offset_ms`] in whole seconds (a convenience for second-resolution schemes).
    pub fn set_clock_offset(&self, offset_secs: i64) {
        self.set_clock_offset_ms(offset_secs.saturating_mul(1000));
    }

    /// The current clock offset in milliseconds.
    pub fn clock_offset_ms(&self) -> i64 {
        self.shared.clock.offset_ms()
    }

    /// The emulator clock now: wall time at start + tokio time since start + the offset (crate docs, "Clock").
    pub fn now(&self) -> SystemTime {
        self.shared.clock.now()
    }

    /// [`Emulator::now`] as Unix milliseconds.
    pub fn now_unix_ms(&self) -> i64 {
        self.shared.clock.now_unix_ms()
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

/// Every request lands here: control routes, then the dialect for the path, fault selection, auth, the dialect's
/// handler, timing.
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

    let now_ms = shared.clock.now_unix_ms();
    let ctx = Ctx {
        dialect: shared.vendor.0.dialect(&path),
        seq,
        created: u64::try_from(now_ms.div_euclid(1000)).unwrap_or(0),
        now_ms,
    };
    if let Some(takeover) = ctx.dialect.takeover() {
        return takeover(shared, parts, ctx).await;
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
        None => ctx
            .dialect
            .check_auth(&ctx, &incoming, &shared)
            .unwrap_or_else(|| ctx.dialect.handle(&ctx, &incoming, &shared)),
    };
    if shared.clock.offset_ms() != 0 {
        reply = reply.with_header("date", clock::format_rfc1123(now_ms.div_euclid(1000)));
    }
    if matches!(fault, Some(FaultKind::ErrorEvent { .. }))
        && !reply.is_stream()
        && reply.status == 200
        && !ctx.dialect.is_http_200_error(&reply)
    {
        reply = ctx.dialect.content_filter_error(&ctx);
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
