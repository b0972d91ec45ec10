//! The client: resolves `provider/model`, builds providers from settings or the environment,
//! sends through [`Transport`], and turns response bodies into events.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use futures::StreamExt;

use http::HeaderMap;

use crate::clock::Clock;
use crate::codec::{Frame, NdjsonDecoder, SseDecoder, Tail, DEFAULT_MAX_FRAME};
use crate::error::{Error, ErrorKind, Result};
use crate::http::{HttpRequest, HttpResponse, StreamingResponse, Transport, TransportConfig};
use crate::providers::{self, AuthContext, Framing, Provider, ProviderSettings, StreamParser};
use crate::resilience::{
    Breaker, BreakerConfig, BreakerState, BreakerStatus, LimitConfig, Limiter, Reservation,
    RetryPolicy, Timeouts,
};
use crate::stream::{response_to_events, ChatStream, StreamEvent};
use crate::types::{ChatRequest, ChatResponse, EmbeddingRequest, EmbeddingResponse, ModelInfo};

/// Builds a [`Client`].
#[derive(Debug)]
pub struct ClientBuilder {
    settings: HashMap<String, ProviderSettings>,
    no_env: bool,
    transport: TransportConfig,
    max_frame: Option<usize>,
    clock: Option<Clock>,
    retry: RetryPolicy,
    timeouts: Timeouts,
    breaker: Option<BreakerConfig>,
    limits: HashMap<String, LimitConfig>,
    batch_breaker_wait: Duration,
}

/// How long a batch item waits out open circuit breakers by default.
pub const DEFAULT_BATCH_BREAKER_WAIT: Duration = Duration::from_secs(10 * 60);

/// The longest model list [`Client::models`] reads: 8 MiB (a hostile or broken upstream could
/// otherwise send an endless one).
pub const MAX_MODEL_LIST_BYTES: usize = 8 * 1024 * 1024;

/// How many batches of one split embeddings request ([`Client::embed_with`]) are in flight
/// at once: a small bound, so a long input neither waits on one batch at a time nor bursts
/// past an upstream's concurrency limit.
pub const EMBED_BATCH_CONCURRENCY: usize = 2;

/// How long a batch item waits for a probe's outcome when the breaker gave no time.
const PROBE_POLL: Duration = Duration::from_secs(1);

impl Default for ClientBuilder {
    fn default() -> Self {
        ClientBuilder {
            settings: HashMap::new(),
            no_env: false,
            transport: TransportConfig::default(),
            max_frame: None,
            clock: None,
            retry: RetryPolicy::default(),
            timeouts: Timeouts::default(),
            breaker: Some(BreakerConfig::default()),
            limits: HashMap::new(),
            batch_breaker_wait: DEFAULT_BATCH_BREAKER_WAIT,
        }
    }
}

impl ClientBuilder {
    /// Explicit settings for provider `id`; fields set here override the environment.
    pub fn provider(mut self, id: &str, settings: ProviderSettings) -> Self {
        self.settings.insert(id.to_owned(), settings);
        self
    }

    /// Do not read provider settings from environment variables.
    pub fn without_env(mut self) -> Self {
        self.no_env = true;
        self
    }

    /// Connection settings.
    pub fn transport(mut self, config: TransportConfig) -> Self {
        self.transport = config;
        self
    }

    /// Largest stream frame accepted (default 8 MiB).
    pub fn max_frame(mut self, bytes: usize) -> Self {
        self.max_frame = Some(bytes);
        self
    }

    /// The clock signers read (default: the system clock).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// When to retry (default: 3 attempts, full-jitter backoff, `Retry-After` honoured).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Connect, first-event, idle and total timeouts (a zero duration disables one).
    pub fn timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// Circuit breakers per upstream (on by default with [`BreakerConfig::default`]).
    pub fn breaker(mut self, config: Option<BreakerConfig>) -> Self {
        self.breaker = config;
        self
    }

    /// How long [`Client::batch`] items wait out an open circuit breaker (its cool-down, then
    /// the probe) before failing with `circuit_open`, counted from when the breaker first
    /// opened (default 10 min; zero = fail at once, as single calls do).
    pub fn batch_breaker_wait(mut self, wait: Duration) -> Self {
        self.batch_breaker_wait = wait;
        self
    }

    /// Client-side requests/tokens per minute for provider `id`.
    pub fn limit(mut self, id: &str, limits: LimitConfig) -> Self {
        self.limits.insert(id.to_owned(), limits);
        self
    }

    /// The client.
    pub fn build(mut self) -> Result<Client> {
        if !self.timeouts.connect.is_zero() {
            self.transport.connect_timeout = self.timeouts.connect;
        }
        let limiters = self
            .limits
            .into_iter()
            .map(|(id, cfg)| (id, Limiter::new(cfg)))
            .collect();
        Ok(Client {
            inner: Arc::new(Inner {
                retry: self.retry,
                timeouts: self.timeouts,
                breaker: self.breaker,
                batch_breaker_wait: self.batch_breaker_wait,
                breakers: Mutex::new(BreakerMap::default()),
                limiters,
                transport: Transport::new(self.transport)?,
                settings: self.settings,
                use_env: !self.no_env,
                providers: Mutex::new(HashMap::new()),
                max_frame: self.max_frame.unwrap_or(DEFAULT_MAX_FRAME),
                clock: self.clock.unwrap_or_default(),
            }),
        })
    }
}

/// Per provider id: (base URL, breaker) pairs, looked up without allocating. Looked up on
/// every call: hashed with a seeded fast hasher (the keys are the registry's provider ids).
type BreakerMap = HashMap<&'static str, Vec<(String, Arc<Breaker>)>, foldhash::fast::RandomState>;

#[derive(Debug)]
struct Inner {
    transport: Transport,
    settings: HashMap<String, ProviderSettings>,
    use_env: bool,
    providers: Mutex<HashMap<&'static str, Arc<dyn Provider>>>,
    max_frame: usize,
    clock: Clock,
    retry: RetryPolicy,
    timeouts: Timeouts,
    breaker: Option<BreakerConfig>,
    batch_breaker_wait: Duration,
    breakers: Mutex<BreakerMap>,
    /// Looked up on every call, by provider id (configuration, not client input).
    limiters: HashMap<String, Arc<Limiter>, foldhash::fast::RandomState>,
}

/// Calls any registered provider. Cheap to clone (shared connection pool).
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl Client {
    /// A builder.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// A client that reads provider settings from the environment.
    pub fn from_env() -> Result<Client> {
        Client::builder().build()
    }

    /// The provider for `id`, built on first use from settings and environment.
    pub fn provider(&self, id: &str) -> Result<Arc<dyn Provider>> {
        let spec = providers::spec(id)?;
        let mut cache = self
            .inner
            .providers
            .lock()
            .map_err(|_| Error::new(ErrorKind::Internal, "provider cache poisoned"))?;
        if let Some(p) = cache.get(spec.id) {
            return Ok(p.clone());
        }
        let mut settings = if self.inner.use_env {
            ProviderSettings::from_env(spec)
        } else {
            ProviderSettings::default()
        };
        if let Some(explicit) = self.inner.settings.get(spec.id) {
            if explicit.base_url.is_some() {
                settings.base_url.clone_from(&explicit.base_url);
            }
            if explicit.region.is_some() {
                settings.region.clone_from(&explicit.region);
            }
            for (k, v) in &explicit.credentials {
                settings.credentials.insert(k.clone(), v.clone());
            }
        }
        let provider = (spec.build)(spec, settings)?;
        cache.insert(spec.id, provider.clone());
        Ok(provider)
    }

    /// Resolves `provider/model` to the provider and the upstream model name.
    pub fn resolve<'a>(&self, model: &'a str) -> Result<(Arc<dyn Provider>, &'a str)> {
        let (pid, m) = providers::split_model(model)?;
        Ok((self.provider(pid)?, m))
    }

    /// A complete answer. `req.model` is `provider/model`.
    pub async fn chat(&self, req: ChatRequest) -> Result<ChatResponse> {
        let (provider, model) = self.resolve(&req.model)?;
        Box::pin(self.chat_with(provider.as_ref(), model, &req)).await
    }

    /// A streamed answer. `req.model` is `provider/model`.
    pub async fn chat_stream(&self, req: ChatRequest) -> Result<ChatStream> {
        let (provider, model) = self.resolve(&req.model)?;
        Box::pin(self.stream_with(provider.as_ref(), model, &req)).await
    }

    /// Runs many requests (`model` = `provider/model` each) with at most `concurrency` in
    /// flight, through the same retries, breakers and rate limits as single calls. Results come
    /// in input order; one item's failure never stops the others. An open circuit breaker does
    /// not fail the items: they wait for its cool-down and the probe's outcome, and fail with
    /// `circuit_open` only once the upstream has been failing for longer than
    /// [`ClientBuilder::batch_breaker_wait`]. Dropping the future stops new work and drops the
    /// requests in flight.
    pub async fn batch(
        &self,
        reqs: Vec<ChatRequest>,
        concurrency: usize,
    ) -> Vec<Result<ChatResponse>> {
        let n = reqs.len();
        let mut out: Vec<Option<Result<ChatResponse>>> = (0..n).map(|_| None).collect();
        let mut results = self.batch_stream(reqs, concurrency);
        while let Some((i, r)) = results.next().await {
            out[i] = Some(r);
        }
        out.into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::new(ErrorKind::Internal, "batch item lost"))))
            .collect()
    }

    /// Like [`Client::batch`], as a stream of `(input index, result)` in completion order, so a
    /// caller can write each result as soon as it is ready.
    pub fn batch_stream<I>(
        &self,
        reqs: I,
        concurrency: usize,
    ) -> std::pin::Pin<Box<dyn futures::Stream<Item = (usize, Result<ChatResponse>)> + Send>>
    where
        I: IntoIterator<Item = ChatRequest>,
        I::IntoIter: Send + 'static,
    {
        let client = self.clone();
        let stream = futures::stream::iter(reqs.into_iter().enumerate())
            .map(move |(i, req)| {
                let client = client.clone();
                async move { (i, Box::pin(client.chat_waiting_out_breakers(req)).await) }
            })
            .buffer_unordered(concurrency.max(1));
        Box::pin(stream)
    }

    /// One batch item: [`Client::chat`], except that an open breaker is waited out (see
    /// [`Client::batch`]).
    async fn chat_waiting_out_breakers(&self, req: ChatRequest) -> Result<ChatResponse> {
        let (provider, model) = self.resolve(&req.model)?;
        let patience = self.inner.batch_breaker_wait;
        loop {
            let breaker = self.breaker_for(provider.as_ref());
            // Created before the call, so a probe that settles meanwhile still wakes us.
            let settled = breaker.as_ref().map(|b| b.settled());
            let err = match Box::pin(self.chat_with(provider.as_ref(), model, &req)).await {
                Err(e) if e.kind() == ErrorKind::CircuitOpen => e,
                other => return other,
            };
            let (Some(b), Some(settled)) = (&breaker, settled) else {
                return Err(err);
            };
            let status = b.status(Instant::now());
            if status.state == BreakerState::Closed {
                continue;
            }
            let left = patience.saturating_sub(status.not_closed_for.unwrap_or_default());
            if left.is_zero() {
                return Err(err);
            }
            let wait = err.retry_after().unwrap_or(PROBE_POLL).min(left);
            tracing::debug!(
                breaker = b.name(),
                wait_ms = wait.as_millis() as u64,
                "batch item waits for the circuit breaker"
            );
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = settled => {}
            }
        }
    }

    /// Embeddings. `req.model` is `provider/model`.
    pub async fn embed(&self, req: EmbeddingRequest) -> Result<EmbeddingResponse> {
        let (provider, model) = self.resolve(&req.model)?;
        self.embed_with(provider.as_ref(), model, &req).await
    }

    fn auth_context(&self) -> AuthContext {
        AuthContext {
            clock: self.inner.clock.clone(),
            transport: self.inner.transport.clone(),
        }
    }

    /// The clock signers read (shared by every provider of this client).
    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    /// After a failed first attempt: syncs the clock on a skew rejection, or refreshes a
    /// rejected token. True when one more attempt makes sense.
    fn recover_auth(&self, provider: &dyn Provider, err: &Error, headers: &HeaderMap) -> bool {
        if err.is_clock_skew() {
            let date = headers
                .get(::http::header::DATE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| httpdate::parse_http_date(v).ok());
            if let Some(server_now) = date {
                let offset = self.inner.clock.sync_to(server_now);
                tracing::warn!(
                    provider = provider.id(),
                    offset_ms = offset,
                    "the upstream rejected our timestamp as skewed; synced the clock to its Date header and retrying once"
                );
                return true;
            }
            return false;
        }
        if err.kind() == ErrorKind::Authentication && provider.invalidate_credentials() {
            tracing::info!(
                provider = provider.id(),
                "credential rejected; refreshing it and retrying once"
            );
            return true;
        }
        false
    }

    /// Builds, authorizes and sends; on a 2xx returns the unread response. A clock-skew or
    /// token rejection is retried once.
    async fn exchange<F>(&self, provider: &dyn Provider, build: F) -> Result<StreamingResponse>
    where
        F: Fn() -> Result<HttpRequest>,
    {
        let id = provider.id();
        let ctx = self.auth_context();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let req = provider.authorize(build()?, &ctx).await?;
            let send = self.inner.transport.send(req);
            let resp = within(
                self.inner.timeouts.first_event,
                "the upstream sent nothing within the first-event timeout",
                send,
            )
            .await
            .map_err(|e| e.with_provider(id))?;
            if (200..300).contains(&resp.status) {
                if tracing::enabled!(target: crate::SPAN_TARGET, tracing::Level::INFO) {
                    tracing::Span::current().record("http.response.status_code", resp.status);
                }
                return Ok(resp);
            }
            let r = resp.collect().await.map_err(|e| e.with_provider(id))?;
            let err = provider.classify_error(r.status, &r.headers, &r.body);
            if attempt == 1 && self.recover_auth(provider, &err, &r.headers) {
                continue;
            }
            return Err(err);
        }
    }

    /// Sends and reads a whole 2xx body, then `parse`s it; errors found by `parse` (a vendor
    /// error in a 200) get the same single auth recovery as status errors.
    async fn exchange_parsed<T, F, P>(
        &self,
        provider: &dyn Provider,
        build: F,
        parse: P,
    ) -> Result<T>
    where
        F: Fn() -> Result<HttpRequest>,
        P: Fn(&HttpResponse) -> Result<T>,
    {
        let id = provider.id();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let resp = self.exchange(provider, &build).await?;
            let full = resp.collect().await.map_err(|e| e.with_provider(id))?;
            match parse(&full) {
                Err(err) if attempt == 1 && self.recover_auth(provider, &err, &full.headers) => {
                    continue
                }
                other => return other,
            }
        }
    }

    /// The breaker of `provider`'s upstream (provider id and base URL), when breakers are on.
    pub fn breaker_for(&self, provider: &dyn Provider) -> Option<Arc<Breaker>> {
        let config = self.inner.breaker.as_ref()?;
        let base = provider.base_url();
        let mut map = self
            .inner
            .breakers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let list = map.entry(provider.id()).or_default();
        if let Some((_, b)) = list.iter().find(|(url, _)| url == base) {
            return Some(b.clone());
        }
        let b = Breaker::new(format!("{}@{base}", provider.id()), config.clone());
        list.push((base.to_owned(), b.clone()));
        Some(b)
    }

    /// Every upstream's breaker (`provider@base_url`) and its state, for health views and metrics.
    pub fn breaker_states(&self) -> Vec<(String, BreakerState)> {
        self.breaker_statuses()
            .into_iter()
            .map(|(name, status)| (name, status.state))
            .collect()
    }

    /// Every upstream's breaker (`provider@base_url`) with its reason and timing.
    pub fn breaker_statuses(&self) -> Vec<(String, BreakerStatus)> {
        let now = Instant::now();
        let map = self
            .inner
            .breakers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut v: Vec<_> = map
            .values()
            .flatten()
            .map(|(_, b)| (b.name().to_owned(), b.status(now)))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Logs a failed attempt and says how long to wait before the next, or gives up.
    fn retry_delay(&self, id: &str, err: &Error, attempt: u32, streamed: bool) -> Option<Duration> {
        match self.inner.retry.next_delay(err, attempt, streamed) {
            Ok(delay) => {
                tracing::warn!(
                    provider = id,
                    attempt,
                    kind = %err.kind(),
                    delay_ms = delay.as_millis() as u64,
                    error = %err,
                    "attempt failed; retrying"
                );
                Some(delay)
            }
            Err(why) => {
                tracing::debug!(provider = id, attempt, kind = %err.kind(), reason = ?why, "attempt failed; not retrying");
                None
            }
        }
    }

    /// A complete answer from a given provider, asking for the upstream `model` (`req.model`
    /// is not read: one request serves any number of attempts and upstreams, never copied).
    /// Applies the circuit breaker, client-side limits, timeouts and the retry policy.
    pub async fn chat_with(
        &self,
        provider: &dyn Provider,
        model: &str,
        req: &ChatRequest,
    ) -> Result<ChatResponse> {
        self.attempts(
            provider,
            Call::new("chat", model),
            || crate::tokens::estimate_request(req),
            self.total_deadline(),
            move || self.chat_once(provider, model, req),
            |resp, reservation, span| {
                record_answer(&span, &resp.model, resp.usage);
                settle(reservation, resp.usage);
                resp
            },
        )
        .await
    }

    /// A streamed answer from a given provider, asking for the upstream `model` (`req.model`
    /// is not read, as in [`Client::chat_with`]).
    ///
    /// Returns once the first content event arrived (anything after `Started`, which is held
    /// back until then, so nothing has reached the caller before the answer really began):
    /// failures before it (status, auth, timeouts, a stream that breaks before any content)
    /// are retried per the policy and returned here, where a router can still fail over;
    /// after it, errors end the stream with an `Err` item and are never retried (the caller
    /// has seen output). The stream enforces the idle and total timeouts. Dropping it
    /// drops the upstream connection.
    pub async fn stream_with(
        &self,
        provider: &dyn Provider,
        model: &str,
        req: &ChatRequest,
    ) -> Result<ChatStream> {
        let id = provider.id();
        let t = self.inner.timeouts;
        let first_event = Deadline {
            limit: t.first_event,
            what: "the upstream sent nothing within the first-event timeout",
        };
        self.attempts(
            provider,
            Call::new("chat", model),
            || crate::tokens::estimate_request(req),
            first_event,
            move || {
                let started = Instant::now();
                async move {
                    let mut s = Box::pin(self.open_stream(provider, model, req)).await?;
                    let head = first_content(&mut s).await?;
                    Ok((s, head, started))
                }
            },
            // The reservation rides with the stream and settles on its usage event; the
            // attempt's span lasts as long as the stream.
            |(s, head, started), reservation, span| {
                guard_stream(id, head, s, t, started, reservation, span)
            },
        )
        .await
    }

    /// Embeddings from a given provider, asking for the upstream `model` (`req.model` is not
    /// read, as in [`Client::chat_with`]). Applies the circuit breaker, client-side limits,
    /// timeouts and the retry policy, as chats do.
    ///
    /// An input longer than the provider's documented batch limit
    /// ([`Provider::embedding_batch_limit`]) is sent as consecutive batches of at most that
    /// many texts, [`EMBED_BATCH_CONCURRENCY`] at a time, each with its own attempts; the
    /// answer joins them in input order (indexes renumbered, usage summed). A batch that fails
    /// fails the whole call with its error: no partial answer is returned.
    pub async fn embed_with(
        &self,
        provider: &dyn Provider,
        model: &str,
        req: &EmbeddingRequest,
    ) -> Result<EmbeddingResponse> {
        match provider.embedding_batch_limit(model) {
            Some(limit) if limit > 0 && req.input.len() > limit => {
                self.embed_batches(provider, model, req, limit).await
            }
            _ => self.embed_batch(provider, model, req).await,
        }
    }

    /// [`Client::embed_with`] over batches of at most `limit` texts.
    async fn embed_batches(
        &self,
        provider: &dyn Provider,
        model: &str,
        req: &EmbeddingRequest,
        limit: usize,
    ) -> Result<EmbeddingResponse> {
        let batches = req.input.len().div_ceil(limit);
        tracing::debug!(
            provider = provider.id(),
            model,
            texts = req.input.len(),
            limit,
            batches,
            "splitting an embeddings request into batches"
        );
        let mut chunks = req.input.chunks(limit);
        let mut in_flight = futures::stream::FuturesOrdered::new();
        let mut parts = Vec::with_capacity(batches);
        loop {
            while in_flight.len() < EMBED_BATCH_CONCURRENCY {
                let Some(texts) = chunks.next() else { break };
                in_flight.push_back(self.embed_texts(provider, model, req, texts));
            }
            // The first failure ends the call; the batches still in flight are dropped.
            match in_flight.next().await {
                Some(part) => parts.push(part?),
                None => break,
            }
        }
        EmbeddingResponse::join_batches(parts).map_err(|e| e.with_provider(provider.id()))
    }

    /// One batch of a split request: `req` over `texts`, and how many texts it had.
    async fn embed_texts(
        &self,
        provider: &dyn Provider,
        model: &str,
        req: &EmbeddingRequest,
        texts: &[String],
    ) -> Result<(usize, EmbeddingResponse)> {
        let batch = req.with_input(texts.to_vec());
        let answer = Box::pin(self.embed_batch(provider, model, &batch)).await?;
        Ok((texts.len(), answer))
    }

    /// One embeddings request as it is sent.
    async fn embed_batch(
        &self,
        provider: &dyn Provider,
        model: &str,
        req: &EmbeddingRequest,
    ) -> Result<EmbeddingResponse> {
        self.attempts(
            provider,
            Call::new("embeddings", model),
            || crate::tokens::estimate_embeddings(req),
            self.total_deadline(),
            move || self.embed_once(provider, model, req),
            |resp, reservation, span| {
                record_answer(&span, &resp.model, resp.usage);
                settle(reservation, resp.usage);
                resp
            },
        )
        .await
    }

    /// One attempt of every call, bounded by the total timeout.
    fn total_deadline(&self) -> Deadline {
        Deadline {
            limit: self.inner.timeouts.total,
            what: "the call took longer than its total timeout",
        }
    }

    /// The attempt loop every call goes through. Per attempt: a span (client kind, see
    /// [`crate::SPAN_TARGET`]), the upstream's breaker admits it (or the call fails fast), the
    /// provider's rate limiter reserves `estimate()` tokens, and `attempt()` runs within
    /// `deadline`. A success is reported to the breaker and handed to `finish` with the
    /// reservation and the span, to settle it from the value (or carry both on, as a stream
    /// does). A failure is reported to the breaker and on the span, releases its reservation,
    /// and is retried after the policy's delay or returned.
    async fn attempts<V, T, F, Fut>(
        &self,
        provider: &dyn Provider,
        call: Call<'_>,
        estimate: impl Fn() -> u64,
        deadline: Deadline,
        mut attempt: F,
        finish: impl FnOnce(V, Option<Reservation>, tracing::Span) -> T,
    ) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<V>>,
    {
        use tracing::Instrument;
        let id = provider.id();
        let breaker = self.breaker_for(provider);
        let limiter = self.inner.limiters.get(id);
        let mut n = 0;
        loop {
            n += 1;
            let span = call.span(provider, n);
            let permit = match &breaker {
                Some(b) => Some(b.acquire(Instant::now()).map_err(|e| e.with_provider(id))?),
                None => None,
            };
            let reservation = match limiter {
                Some(l) => Some(l.admit(estimate()).await?),
                None => None,
            };
            let run = Box::pin(attempt().instrument(span.clone()));
            let err = match within(deadline.limit, deadline.what, run).await {
                Ok(value) => {
                    if let Some(p) = permit {
                        p.success(Instant::now());
                    }
                    return Ok(finish(value, reservation, span));
                }
                Err(e) => e.with_provider(id),
            };
            record_error(&span, &err);
            if let Some(p) = permit {
                p.failure(Instant::now(), &err);
            }
            settle(reservation, None);
            match self.retry_delay(id, &err, n, false) {
                Some(delay) => tokio::time::sleep(delay).await,
                None => return Err(err),
            }
        }
    }

    /// One attempt at a complete answer.
    async fn chat_once(
        &self,
        provider: &dyn Provider,
        model: &str,
        req: &ChatRequest,
    ) -> Result<ChatResponse> {
        tracing::debug!(provider = provider.id(), model, "sending chat request");
        if provider.framing() == Framing::WebSocket {
            // Boxed: the WebSocket path's future is ten times the size of the HTTP one, and
            // every HTTP call would otherwise carry (and copy) its size.
            return collect_stream(Box::pin(self.open_stream(provider, model, req)).await?).await;
        }
        let mut out = self
            .exchange_parsed(
                provider,
                || provider.build_chat(model, req, false),
                |r| provider.parse_chat(r),
            )
            .await?;
        if out.model.is_empty() {
            model.clone_into(&mut out.model);
        }
        Ok(out)
    }

    /// One attempt at embeddings.
    async fn embed_once(
        &self,
        provider: &dyn Provider,
        model: &str,
        req: &EmbeddingRequest,
    ) -> Result<EmbeddingResponse> {
        tracing::debug!(
            provider = provider.id(),
            model,
            "sending embeddings request"
        );
        let mut out = self
            .exchange_parsed(
                provider,
                || provider.build_embeddings(model, req),
                |r| provider.parse_embeddings(r),
            )
            .await?;
        if out.model.is_empty() {
            model.clone_into(&mut out.model);
        }
        Ok(out)
    }

    /// The models a provider lists over its API. An answer longer than
    /// [`MAX_MODEL_LIST_BYTES`] is refused (an [`ErrorKind::UpstreamProtocol`] error) without
    /// being read to its end.
    pub async fn models(&self, provider_id: &str) -> Result<Vec<ModelInfo>> {
        let p = self.provider(provider_id)?;
        let id = p.id();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let resp = self.exchange(p.as_ref(), || p.build_models()).await?;
            let full = resp
                .collect_at_most(MAX_MODEL_LIST_BYTES)
                .await
                .map_err(|e| e.with_provider(id))?;
            match p.parse_models(&full) {
                Err(err) if attempt == 1 && self.recover_auth(p.as_ref(), &err, &full.headers) => {
                    continue
                }
                other => return other,
            }
        }
    }

    /// One attempt at opening a stream: returns once the response head arrived.
    async fn open_stream(
        &self,
        provider: &dyn Provider,
        model: &str,
        req: &ChatRequest,
    ) -> Result<ChatStream> {
        let id = provider.id();
        if !provider.capabilities().streaming {
            return Err(Error::unsupported(format!("{id} does not stream")).with_provider(id));
        }
        tracing::debug!(provider = id, model, "sending streaming chat request");
        let framing = provider.framing();
        if framing == Framing::WebSocket {
            // Boxed, as in `chat_once`: the WebSocket handshake's future is large.
            return Box::pin(crate::ws::open(
                provider,
                model,
                req,
                &self.auth_context(),
                self.inner.max_frame,
                self.inner.transport.config().connect_timeout,
                |p, e, h| self.recover_auth(p, e, h),
            ))
            .await;
        }
        let mut attempt = 0;
        let resp = loop {
            attempt += 1;
            let resp = self
                .exchange(provider, || provider.build_chat(model, req, true))
                .await?;
            if !resp.content_type().starts_with("application/json") {
                break resp;
            }
            // A plain body where a stream was asked for: an error in a 200, or a whole answer.
            let r = resp.collect().await.map_err(|e| e.with_provider(id))?;
            match provider.parse_chat(&r) {
                Err(err) if attempt == 1 && self.recover_auth(provider, &err, &r.headers) => {
                    continue
                }
                Err(err) => return Err(err),
                Ok(mut full) => {
                    if full.model.is_empty() {
                        model.clone_into(&mut full.model);
                    }
                    let events: Vec<Result<StreamEvent>> =
                        response_to_events(&full).into_iter().map(Ok).collect();
                    return Ok(Box::pin(futures::stream::iter(events)));
                }
            }
        };
        let header_rid = providers::header_request_id(&resp.headers);
        let parser = provider.stream_parser(model, req);
        let body = resp.bytes_stream();
        Ok(drive(
            id,
            framing,
            body,
            parser,
            self.inner.max_frame,
            model.to_owned(),
            header_rid,
        ))
    }
}

/// How long one attempt may take (zero = no limit) and what a miss is called.
#[derive(Debug, Clone, Copy)]
struct Deadline {
    limit: Duration,
    what: &'static str,
}

/// Trues a rate-limit reservation up to the tokens used (none for a failed attempt).
fn settle(reservation: Option<Reservation>, usage: Option<crate::Usage>) {
    if let Some(r) = reservation {
        r.settle(usage.map_or(0, |u| u.total_tokens));
    }
}

/// Runs `fut` within `limit` (zero = no limit); a miss is a `Timeout` error.
async fn within<T>(
    limit: Duration,
    what: &str,
    fut: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    if limit.is_zero() {
        return fut.await;
    }
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r,
        Err(_) => Err(Error::new(
            ErrorKind::Timeout,
            format!("{what} ({} ms)", limit.as_millis()),
        )),
    }
}

/// Reads a stream up to its first content event: the `Started` event (if any) and the event
/// after it. A stream that fails or ends before that is an error, as if it never opened.
async fn first_content(s: &mut ChatStream) -> Result<Vec<StreamEvent>> {
    let mut head = Vec::with_capacity(2);
    loop {
        match s.next().await {
            Some(Ok(ev)) => {
                let started = matches!(ev, StreamEvent::Started { .. });
                head.push(ev);
                // At most one `Started` is held back (the invariant allows no second one).
                if !started || head.len() > 1 {
                    return Ok(head);
                }
            }
            Some(Err(e)) => return Err(e),
            None if head.is_empty() => {
                return Err(Error::protocol("the stream ended without any event"))
            }
            None => {
                return Err(Error::protocol(
                    "the stream ended before its first content event",
                ))
            }
        }
    }
}

/// The stream after its first content event: idle gaps and the total time are bounded, usage
/// trues up the rate-limit reservation, and a timeout ends the stream with an error (dropping
/// the upstream).
fn guard_stream(
    id: &'static str,
    head: Vec<StreamEvent>,
    inner: ChatStream,
    t: Timeouts,
    started: Instant,
    reservation: Option<Reservation>,
    span: tracing::Span,
) -> ChatStream {
    Box::pin(Guard {
        id,
        head: head.into_iter(),
        inner,
        deadlines: Deadlines::new(t, started),
        timer: None,
        waiting_since: None,
        reservation,
        ended: false,
        span,
    })
}

/// [`guard_stream`]'s stream, a plain state machine (this is every streamed event's path).
///
/// One timer serves the whole stream, made on the first wait. An event does not touch it (it
/// only clears the note of when the wait for it began); when the timer fires, the deadline is
/// worked out again from the current wait's start, and either it has passed (the timeout) or
/// the timer is set to it. So a stream whose events come well within the idle timeout costs
/// no timer work per event.
struct Guard {
    id: &'static str,
    /// Events read before the stream was handed out (`Started` and the first content).
    head: std::vec::IntoIter<StreamEvent>,
    inner: ChatStream,
    deadlines: Option<Deadlines>,
    timer: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    /// When the wait for the next event began (set by the first poll of that wait that found
    /// no event).
    waiting_since: Option<Instant>,
    reservation: Option<Reservation>,
    /// An error, a timeout or the end was handed out: nothing follows.
    ended: bool,
    /// The attempt's span: it ends when the stream is dropped, with the stream's usage and
    /// response model, or its error.
    span: tracing::Span,
}

impl futures::Stream for Guard {
    type Item = Result<StreamEvent>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::future::Future;
        use std::task::Poll;
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        if let Some(ev) = this.head.next() {
            settle_on_usage(&ev, &mut this.reservation, &this.span);
            return Poll::Ready(Some(Ok(ev)));
        }
        match this.inner.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(ev))) => {
                this.waiting_since = None;
                settle_on_usage(&ev, &mut this.reservation, &this.span);
                return Poll::Ready(Some(Ok(ev)));
            }
            Poll::Ready(other) => {
                this.ended = true;
                if let Some(Err(e)) = &other {
                    record_error(&this.span, e);
                }
                return Poll::Ready(other);
            }
            Poll::Pending => {}
        }
        let Some(deadlines) = this.deadlines else {
            return Poll::Pending;
        };
        // The wait began with the first poll that found nothing (an event that was ready
        // costs no clock read).
        let since = *this.waiting_since.get_or_insert_with(Instant::now);
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadlines.after(since).0)));
        while timer.as_mut().poll(cx).is_ready() {
            let (at, what) = deadlines.after(since);
            if Instant::now() >= at {
                this.ended = true;
                let err = Error::new(ErrorKind::Timeout, what).with_provider(this.id);
                record_error(&this.span, &err);
                return Poll::Ready(Some(Err(err)));
            }
            timer.as_mut().reset(at);
        }
        Poll::Pending
    }
}

/// Trues the stream's rate-limit reservation up to its usage, when `ev` reports it, and notes
/// the usage and the response model on the attempt's span. (The reservation is taken only by
/// a usage event: any other event leaves it in place.)
fn settle_on_usage(ev: &StreamEvent, reservation: &mut Option<Reservation>, span: &tracing::Span) {
    match ev {
        StreamEvent::Usage(u) => {
            if let Some(r) = reservation.take() {
                r.settle(u.total_tokens);
            }
            record_usage(span, u);
        }
        StreamEvent::Started { model, .. } => {
            span.record("gen_ai.response.model", model.as_str());
        }
        _ => {}
    }
}

/// What one upstream call is, for its attempts' spans: the GenAI operation and the upstream
/// model asked for.
#[derive(Debug, Clone, Copy)]
struct Call<'a> {
    operation: &'static str,
    model: &'a str,
}

impl<'a> Call<'a> {
    fn new(operation: &'static str, model: &'a str) -> Self {
        Call { operation, model }
    }

    /// The span of attempt `n` (client kind), a child of the current span, with the GenAI
    /// semantic-convention attributes known before the call. Disabled (and free) unless a
    /// trace exporter enables [`crate::SPAN_TARGET`]. No secret is ever recorded: the
    /// upstream is named by host alone.
    fn span(&self, provider: &dyn Provider, n: u32) -> tracing::Span {
        use tracing::field::Empty;
        let id = provider.id();
        let span = tracing::info_span!(
            target: crate::SPAN_TARGET,
            "upstream attempt",
            otel.name = Empty,
            otel.kind = "client",
            otel.status_code = Empty,
            gen_ai.operation.name = self.operation,
            gen_ai.provider.name = id,
            gen_ai.system = id,
            gen_ai.request.model = self.model,
            gen_ai.response.model = Empty,
            gen_ai.usage.input_tokens = Empty,
            gen_ai.usage.output_tokens = Empty,
            server.address = Empty,
            http.response.status_code = Empty,
            error.type = Empty,
            llmux.attempt = n,
        );
        if !span.is_disabled() {
            span.record(
                "otel.name",
                format!("{} {}", self.operation, self.model).as_str(),
            );
            if let Some(host) = provider
                .base_url()
                .parse::<http::Uri>()
                .ok()
                .and_then(|u| u.host().map(str::to_owned))
            {
                span.record("server.address", host.as_str());
            }
        }
        span
    }
}

/// Notes a whole answer's model and usage on its attempt's span.
fn record_answer(span: &tracing::Span, model: &str, usage: Option<crate::Usage>) {
    if span.is_disabled() {
        return;
    }
    if !model.is_empty() {
        span.record("gen_ai.response.model", model);
    }
    if let Some(u) = usage {
        record_usage(span, &u);
    }
}

fn record_usage(span: &tracing::Span, u: &crate::Usage) {
    span.record("gen_ai.usage.input_tokens", u.input_tokens);
    span.record("gen_ai.usage.output_tokens", u.output_tokens);
}

/// Notes a failed attempt on its span: the error's kind as `error.type`, the upstream's status.
fn record_error(span: &tracing::Span, err: &Error) {
    if span.is_disabled() {
        return;
    }
    span.record("otel.status_code", "error");
    span.record("error.type", err.kind().as_str());
    if let Some(status) = err.upstream_status() {
        span.record("http.response.status_code", status);
    }
}

/// What bounds the wait for each event of a stream (when any timeout does).
#[derive(Debug, Clone, Copy)]
enum Deadlines {
    /// The idle timeout alone.
    Idle(Duration),
    /// The end of the total time alone.
    Total(Instant),
    /// Both: whichever comes first.
    Both(Duration, Instant),
}

impl Deadlines {
    /// The bounds of a stream that started at `started`; `None` when both timeouts are off.
    fn new(t: Timeouts, started: Instant) -> Option<Self> {
        let end = (!t.total.is_zero()).then(|| started + t.total);
        match (t.idle.is_zero(), end) {
            (false, None) => Some(Deadlines::Idle(t.idle)),
            (true, Some(end)) => Some(Deadlines::Total(end)),
            (false, Some(end)) => Some(Deadlines::Both(t.idle, end)),
            (true, None) => None,
        }
    }

    /// When a wait that began at `waiting_since` must end, and what missing it is called
    /// (the idle timeout when both fall at the same instant).
    fn after(self, waiting_since: Instant) -> (Instant, &'static str) {
        const IDLE: &str = "the upstream stream went idle";
        const TOTAL: &str = "the stream took longer than its total timeout";
        match self {
            Deadlines::Idle(idle) => (waiting_since + idle, IDLE),
            Deadlines::Total(end) => (end, TOTAL),
            Deadlines::Both(idle, end) if end < waiting_since + idle => (end, TOTAL),
            Deadlines::Both(idle, _) => (waiting_since + idle, IDLE),
        }
    }
}

/// One decoder for whichever framing the body uses.
enum Decoder {
    Sse(SseDecoder),
    Ndjson(NdjsonDecoder),
}

impl Decoder {
    fn push(&mut self, chunk: &[u8], out: &mut Vec<Frame>) -> Result<()> {
        match self {
            Decoder::Sse(d) => d.push(chunk, out),
            Decoder::Ndjson(d) => d.push(chunk, out),
        }
    }

    fn finish(&mut self) -> Tail {
        match self {
            Decoder::Sse(d) => d.finish(),
            Decoder::Ndjson(d) => d.finish(),
        }
    }
}

/// Bytes → frames → events, ending with the parser's verdict on how the body ended.
fn drive(
    id: &'static str,
    framing: Framing,
    body: impl futures::Stream<Item = Result<bytes::Bytes>> + Send + 'static,
    parser: Box<dyn StreamParser>,
    max_frame: usize,
    model: String,
    header_rid: Option<String>,
) -> ChatStream {
    let decoder = match framing {
        Framing::Ndjson => Decoder::Ndjson(NdjsonDecoder::new(max_frame)),
        Framing::Sse | Framing::WebSocket => Decoder::Sse(SseDecoder::new(max_frame)),
    };
    Box::pin(Drive {
        id,
        body: Box::pin(body),
        decoder,
        parser,
        frames: Vec::new(),
        ready: Vec::new(),
        state: DriveState::Reading,
        model,
        header_rid,
    })
}

/// [`drive`]'s stream, a plain state machine (this is every streamed chunk's path). A body
/// chunk is decoded and parsed whole, and its events handed out before the next chunk is
/// read. A failure (of the body, the decoder or the parser) is the last item, and the events
/// of the chunk it came in go with it.
struct Drive<B> {
    id: &'static str,
    body: std::pin::Pin<Box<B>>,
    decoder: Decoder,
    parser: Box<dyn StreamParser>,
    frames: Vec<Frame>,
    /// Events not handed out yet, last first (so each is a `pop`).
    ready: Vec<StreamEvent>,
    state: DriveState,
    model: String,
    header_rid: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DriveState {
    /// Reading the body.
    Reading,
    /// The body ended, or the parser saw the vendor's end marker (`done`, the rest unread).
    Ended { done: bool },
    /// The parser's verdict is in (or a failure was handed out).
    Finished,
}

impl<B> Drive<B> {
    /// Decodes and parses one body chunk.
    fn read(&mut self, chunk: &[u8]) -> Result<()> {
        self.decoder
            .push(chunk, &mut self.frames)
            .map_err(|e| e.with_provider(self.id))?;
        for frame in self.frames.drain(..) {
            self.parser.on_frame(&frame, &mut self.ready)?;
            if self.parser.is_done() {
                self.state = DriveState::Ended { done: true };
                break;
            }
        }
        Ok(())
    }

    /// The body ended (or is not read further): the last frame, and the parser's verdict.
    fn finish(&mut self, done: bool) -> Result<()> {
        if !done {
            if let Some(frame) = self.decoder.finish().frame {
                self.parser.on_frame(&frame, &mut self.ready)?;
            }
        }
        self.parser.finish(&mut self.ready)
    }
}

impl<B> futures::Stream for Drive<B>
where
    B: futures::Stream<Item = Result<bytes::Bytes>>,
{
    type Item = Result<StreamEvent>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let this = self.get_mut();
        loop {
            if let Some(ev) = this.ready.pop() {
                return Poll::Ready(Some(Ok(fill_started(ev, &this.model, &this.header_rid))));
            }
            let step = match this.state {
                DriveState::Finished => return Poll::Ready(None),
                DriveState::Reading => match this.body.as_mut().poll_next(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Some(Ok(chunk))) => this.read(&chunk),
                    Poll::Ready(Some(Err(e))) => Err(e.with_provider(this.id)),
                    Poll::Ready(None) => {
                        this.state = DriveState::Ended { done: false };
                        Ok(())
                    }
                },
                DriveState::Ended { done } => {
                    this.state = DriveState::Finished;
                    this.finish(done)
                }
            };
            if let Err(e) = step {
                this.state = DriveState::Finished;
                this.ready.clear();
                return Poll::Ready(Some(Err(e)));
            }
            this.ready.reverse();
        }
    }
}

fn fill_started(ev: StreamEvent, model: &str, header_rid: &Option<String>) -> StreamEvent {
    match ev {
        StreamEvent::Started {
            mut id,
            model: m,
            request_id,
        } => {
            let request_id = request_id.or_else(|| header_rid.clone());
            if id.is_empty() {
                id = request_id.clone().unwrap_or_default();
            }
            StreamEvent::Started {
                id,
                model: if m.is_empty() { model.to_owned() } else { m },
                request_id,
            }
        }
        other => other,
    }
}

/// Collects a stream into a complete response (checks the stream invariants).
pub async fn collect_stream(mut stream: ChatStream) -> Result<ChatResponse> {
    let mut acc = crate::stream::StreamAccumulator::new();
    while let Some(ev) = stream.next().await {
        acc.push(&ev?)?;
    }
    acc.finish()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::providers::openai_compat::{OpenAiCompat, OPENAI};

    /// The emulator's answer to the gateway benchmark's streamed request (`llmux-bench`):
    /// 24 chunks (role, 21 text pieces, finish, usage) and `[DONE]`.
    const OPENAI_STREAM: &[u8] = include_bytes!("../benches/openai_stream.sse");

    /// Text events after each of `gaps`.
    fn paced(gaps: Vec<u64>) -> ChatStream {
        Box::pin(async_stream::stream! {
            for gap in gaps {
                tokio::time::sleep(Duration::from_secs(gap)).await;
                yield Ok(StreamEvent::TextDelta { text: "x".into() });
            }
        })
    }

    fn timeouts(idle: u64, total: u64) -> Timeouts {
        Timeouts {
            idle: Duration::from_secs(idle),
            total: Duration::from_secs(total),
            ..Timeouts::default()
        }
    }

    /// The guarded stream's items: the number of events, then the error (if any) and when it
    /// came, in seconds from the start.
    async fn guarded(gaps: Vec<u64>, t: Timeouts) -> (usize, Option<(String, u64)>) {
        let began = Instant::now();
        let mut s = guard_stream(
            "openai",
            Vec::new(),
            paced(gaps),
            t,
            began,
            None,
            tracing::Span::none(),
        );
        let mut n = 0;
        while let Some(item) = s.next().await {
            match item {
                Ok(_) => n += 1,
                Err(e) => {
                    assert_eq!(e.kind(), ErrorKind::Timeout);
                    assert!(s.next().await.is_none(), "a timeout ends the stream");
                    return (n, Some((e.message().to_owned(), began.elapsed().as_secs())));
                }
            }
        }
        (n, None)
    }

    #[tokio::test(start_paused = true)]
    async fn issue_14_events_within_the_idle_timeout_never_time_out_whatever_the_timer_lags() {
        // The one timer was set for 60 s after the start; each event moves the deadline on.
        assert_eq!(guarded(vec![40; 12], timeouts(60, 0)).await, (12, None));
        assert_eq!(
            guarded(vec![59, 1, 59, 59], timeouts(60, 0)).await,
            (4, None)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn issue_14_an_idle_gap_times_out_one_idle_timeout_after_the_last_event() {
        let (n, err) = guarded(vec![40, 40, 61, 1], timeouts(60, 0)).await;
        assert_eq!(n, 2);
        assert_eq!(
            err,
            Some(("the upstream stream went idle".to_owned(), 80 + 60))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn issue_14_the_total_timeout_ends_a_stream_that_keeps_sending() {
        let (n, err) = guarded(vec![10; 20], timeouts(60, 95)).await;
        assert_eq!(n, 9);
        assert_eq!(
            err,
            Some((
                "the stream took longer than its total timeout".to_owned(),
                95
            ))
        );
        // No timeouts: nothing bounds the stream.
        assert_eq!(guarded(vec![1000, 1000], timeouts(0, 0)).await, (2, None));
        // When both fall at once, the idle timeout names it.
        let (_, err) = guarded(vec![40, 100], timeouts(60, 100)).await;
        assert_eq!(err, Some(("the upstream stream went idle".to_owned(), 100)));
    }

    /// What `drive` makes of these body chunks through the OpenAI parser: each item as an
    /// event's short name (`text:…`) or `err`.
    async fn driven(chunks: &[&'static str]) -> Vec<String> {
        let provider =
            OpenAiCompat::new(OPENAI, "http://127.0.0.1:1/v1", Some("k".into())).unwrap();
        let body = futures::stream::iter(
            chunks
                .iter()
                .map(|c| Ok(bytes::Bytes::from_static(c.as_bytes())))
                .collect::<Vec<_>>(),
        );
        let req = ChatRequest::new("m", vec![]);
        let parser = provider.stream_parser("m", &req);
        let s = drive("openai", Framing::Sse, body, parser, 1024, "m".into(), None);
        s.map(|item| match item {
            Ok(StreamEvent::Started { model, .. }) => format!("started:{model}"),
            Ok(StreamEvent::TextDelta { text }) => format!("text:{text}"),
            Ok(StreamEvent::Finished { reason }) => format!("finished:{reason:?}"),
            Ok(other) => format!("{other:?}"),
            Err(e) => format!("err:{}", e.kind()),
        })
        .collect()
        .await
    }

    const A: &str = "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n";
    const B: &str = "data: {\"choices\":[{\"delta\":{\"content\":\"b\"}}]}\n\n";

    #[tokio::test]
    async fn issue_14_drive_hands_out_chunks_in_order_and_stops_at_the_end_marker() {
        let stop = "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n";
        // Two events in one chunk, one split across two; nothing after `[DONE]` is read.
        let b_split = B.split_at(20);
        let got = driven(&[
            A,
            b_split.0,
            b_split.1,
            stop,
            "data: [DONE]\n\ndata: {oops\n\n",
        ])
        .await;
        assert_eq!(got, ["started:m", "text:a", "text:b", "finished:Stop"]);
        // A last frame without its blank line still counts; a body cut before the end fails.
        let got = driven(&[A, "data: [DONE]"]).await;
        assert_eq!(got, ["started:m", "text:a", "finished:Stop"]);
        let got = driven(&[A, B]).await;
        assert_eq!(
            got,
            ["started:m", "text:a", "text:b", "err:upstream_protocol"]
        );
    }

    #[tokio::test]
    async fn issue_14_drive_ends_with_a_failure_and_drops_the_events_of_its_chunk() {
        // The malformed frame's chunk also carried `b`: it goes with the failure, as before.
        let b_then_bad: &'static str = Box::leak(format!("{B}data: {{oops\n\n").into_boxed_str());
        let got = driven(&[A, b_then_bad, B]).await;
        assert_eq!(got, ["started:m", "text:a", "err:upstream_protocol"]);
        // An oversized frame is a failure of the decoder.
        let big: &'static str =
            Box::leak(format!("data: {}\n\n", "x".repeat(2048)).into_boxed_str());
        let got = driven(&[A, big]).await;
        assert_eq!(got, ["started:m", "text:a", "err:upstream_protocol"]);
    }

    /// A response body whose every chunk is pending once (its waker woken at once) before it
    /// is ready, as a socket read waits for the upstream's next write.
    struct Arriving {
        chunks: &'static [bytes::Bytes],
        next: usize,
        ready: bool,
    }

    impl futures::Stream for Arriving {
        type Item = Result<bytes::Bytes>;

        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            let Some(chunk) = self.chunks.get(self.next) else {
                return std::task::Poll::Ready(None);
            };
            if !self.ready {
                self.ready = true;
                cx.waker().wake_by_ref();
                return std::task::Poll::Pending;
            }
            let chunk = chunk.clone();
            self.ready = false;
            self.next += 1;
            std::task::Poll::Ready(Some(Ok(chunk)))
        }
    }

    /// The core's whole per-chunk path of a streamed answer, without the network: body chunks
    /// (one SSE event each, each pending once as if it came off a socket) → `drive` (SSE
    /// decoder, OpenAI stream parser) → first content → `guard_stream` (idle and total
    /// timeouts) → consumer, run
    /// `LLMUX_HOT_PATH_STREAMS` times (default 10,000) on one thread. A benchmark for
    /// instruction counts, not a timed assert:
    ///
    /// ```sh
    /// cargo test --release -p llmux-core --lib --no-run   # prints the test binary's path
    /// valgrind --tool=callgrind --callgrind-out-file=hot.out BINARY --ignored --exact \
    ///     client::tests::stream_hot_path
    /// callgrind_annotate hot.out | head -40
    /// ```
    #[test]
    #[ignore = "a benchmark: run it under callgrind"]
    fn stream_hot_path() {
        let streams: usize = std::env::var("LLMUX_HOT_PATH_STREAMS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(10_000);
        // 'static, as a response body is: the stream below borrows nothing.
        let chunks: &'static [bytes::Bytes] = OPENAI_STREAM
            .split_inclusive(|b| *b == b'\n')
            .collect::<Vec<_>>()
            .chunks(2)
            .map(|c| bytes::Bytes::from(c.concat()))
            .collect::<Vec<_>>()
            .leak();
        assert_eq!(chunks.len(), 25, "one chunk per SSE event");
        let provider =
            OpenAiCompat::new(OPENAI, "http://127.0.0.1:1/v1", Some("k".into())).unwrap();
        let req = ChatRequest::new("gpt-4o-mini", vec![]);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let events = rt.block_on(async {
            let mut events = 0;
            for _ in 0..streams {
                let body = Arriving {
                    chunks,
                    next: 0,
                    ready: false,
                };
                let parser = provider.stream_parser("gpt-4o-mini", &req);
                let mut s = drive(
                    "openai",
                    Framing::Sse,
                    body,
                    parser,
                    DEFAULT_MAX_FRAME,
                    "gpt-4o-mini".to_owned(),
                    None,
                );
                let head = first_content(&mut s).await.unwrap();
                let t = Timeouts::default();
                let mut s = guard_stream(
                    "openai",
                    head,
                    s,
                    t,
                    Instant::now(),
                    None,
                    tracing::Span::none(),
                );
                while let Some(ev) = s.next().await {
                    ev.unwrap();
                    events += 1;
                }
            }
            events
        });
        // Started, 21 text deltas (the role chunk's empty content is none), usage, finished.
        assert_eq!(events, streams * 24);
    }
}
