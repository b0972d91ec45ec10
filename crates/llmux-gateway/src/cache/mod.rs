//! The response cache: a complete, successful answer is kept under a digest of the normalized
//! request, and the same request is answered from it without calling an upstream.
//!
//! A pipeline stage between admission and the routed call ([`crate::pipeline`]):
//! - at admission, [`ResponseCache::plan`] decides what the cache does for the request: nothing
//!   (its key opted out, `Cache-Control: no-store`, a request that is never cached), look up
//!   and store, or only store (`Cache-Control: no-cache`); and computes the request's
//!   [`Digest`];
//! - a hit ([`ResponseCache::lookup`]) skips the upstream: the stored answer is replayed in the
//!   client's dialect, as a whole answer or as a stream of the same events;
//! - a miss tees the final answer into the cache ([`ResponseCache::store`] for a whole answer,
//!   [`Tee`] for a stream), only when it completed successfully.
//!
//! Entries hold core types ([`Stored`]: a `ChatResponse`, the event sequence of a stream, an
//! `EmbeddingResponse`), never a dialect's bytes, so an answer stored from one dialect is served
//! to any other, and a stream request can be answered from a whole answer (and the reverse).
//!
//! The digest is SHA-256 over the entry format, the operation, the cache scope (nothing,
//! the team or the key: `cache.scope`), the model after routing (the plan's public name and
//! the upstream model names it may be sent as) and the request's JSON without the model, the
//! end-user id and stream options. No client-sent value names an entry: a client can only
//! change the request it sends. Entries are bounded (`cache.max_entry_bytes`), and so are their
//! TTLs (`cache.max_ttl`) and, in process, their total size (`cache.max_bytes`).
//!
//! Backends: `memory` (in process, moka, bounded by bytes with eviction) and `redis`
//! (shared by every gateway on the same Redis and prefix; fail-open: an unavailable Redis is
//! a miss, never an error, and delays a request by at most one call timeout).

pub mod config;
mod memory;
pub mod redis;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use llmux_core::{ChatResponse, EmbeddingResponse, FinishReason, StreamEvent};
use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

pub use self::config::{Backend, CacheConfig, Mode, RawCache, Scope};
use crate::auth::Principal;
use crate::limits::Clock;
use crate::pipeline::Operation;

/// `x-llmux-cache: hit | miss | bypass` on answers of a gateway with a cache (see
/// `docs/cache.md`).
pub const CACHE_HEADER: HeaderName = HeaderName::from_static("x-llmux-cache");

/// The format of entries; part of every digest, so a new format never reads an old entry.
pub const FORMAT: u32 = 1;

/// SHA-256 of a normalized request: the identity of its entry.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digest([u8; 32]);

impl Digest {
    /// Lowercase hex.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl std::fmt::Debug for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.hex())
    }
}

/// A stored answer, in core types.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Stored {
    /// A whole chat answer.
    Chat {
        /// The answer.
        answer: ChatResponse,
    },
    /// A streamed chat answer: every event, `Started` first and `Finished` last.
    Events {
        /// The events.
        events: Vec<StreamEvent>,
    },
    /// Embeddings.
    Embedding {
        /// The answer.
        answer: EmbeddingResponse,
    },
}

/// Where a stored answer came from (its usage records on a hit name it, marked `cache_hit`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Origin {
    /// Provider id of the channel that answered.
    pub provider: String,
    /// That channel's name.
    pub channel: String,
    /// The upstream model it was asked for.
    pub upstream_model: String,
}

/// One entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// [`FORMAT`] when written.
    pub format: u32,
    /// When it was stored, unix milliseconds (the gateway's clock).
    pub created_ms: i64,
    /// When it stops being served, unix milliseconds.
    pub expires_ms: i64,
    /// Who answered.
    pub origin: Origin,
    /// The answer.
    pub stored: Stored,
}

impl Entry {
    /// Age in whole seconds at `now_ms` (the `Age` header of a hit).
    pub fn age_secs(&self, now_ms: i64) -> u64 {
        u64::try_from(now_ms.saturating_sub(self.created_ms) / 1000).unwrap_or(0)
    }
}

/// How a request's answer related to the cache: the value of [`CACHE_HEADER`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Served from the cache; no upstream was called.
    Hit,
    /// Answered by an upstream and offered to the cache.
    Miss,
    /// The cache neither served nor stored it (opted out, `no-store`, never cacheable).
    Bypass,
}

impl Status {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Hit => "hit",
            Status::Miss => "miss",
            Status::Bypass => "bypass",
        }
    }

    /// Sets [`CACHE_HEADER`] (and `Age` on a hit) on an answer's headers.
    pub fn stamp(self, headers: &mut HeaderMap, age_secs: Option<u64>) {
        headers.insert(CACHE_HEADER, HeaderValue::from_static(self.as_str()));
        if let Some(age) = age_secs {
            headers.insert(http::header::AGE, HeaderValue::from(age));
        }
    }
}

/// What the cache does for one request, decided at admission.
#[derive(Debug, Clone)]
pub enum Plan {
    /// No cache configured: no header either.
    Off,
    /// Neither looked up nor stored.
    Bypass,
    /// Looked up (unless `no-cache`) and stored when it is answered.
    Use(Ticket),
}

impl Plan {
    /// The ticket, when the cache is used.
    pub fn ticket(&self) -> Option<&Ticket> {
        match self {
            Plan::Use(t) => Some(t),
            Plan::Off | Plan::Bypass => None,
        }
    }

    /// The header a miss carries (`None` without a cache).
    pub fn miss_status(&self) -> Option<Status> {
        match self {
            Plan::Off => None,
            Plan::Bypass => Some(Status::Bypass),
            Plan::Use(_) => Some(Status::Miss),
        }
    }
}

/// A request's entry and how it may use it.
#[derive(Debug, Clone)]
pub struct Ticket {
    /// The entry's identity.
    pub digest: Digest,
    /// Whether a stored answer may serve it (false under `no-cache`).
    pub read: bool,
    /// The oldest entry it accepts (`Cache-Control: max-age`), in milliseconds.
    pub max_age_ms: Option<u64>,
    /// How long its answer is kept.
    pub ttl: Duration,
}

/// The `Cache-Control` (and HTTP/1.0 `Pragma: no-cache`) request directives the cache honours.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Directives {
    /// `no-store`: not served from, nor stored in, the cache.
    pub no_store: bool,
    /// `no-cache`: not served from the cache; the fresh answer is stored.
    pub no_cache: bool,
    /// `max-age=N`: only an entry at most N seconds old may serve it.
    pub max_age: Option<u64>,
}

impl Directives {
    /// Reads the directives of every `Cache-Control` field (names case-insensitive, unknown
    /// ones and unreadable values ignored; `max-age` saturates instead of overflowing).
    pub fn of(headers: &HeaderMap) -> Directives {
        let mut d = Directives::default();
        for value in headers.get_all(http::header::CACHE_CONTROL) {
            let Ok(text) = value.to_str() else { continue };
            for part in text.split(',') {
                let (name, arg) = match part.split_once('=') {
                    Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
                    None => (part.trim(), None),
                };
                if name.eq_ignore_ascii_case("no-store") {
                    d.no_store = true;
                } else if name.eq_ignore_ascii_case("no-cache") {
                    d.no_cache = true;
                } else if name.eq_ignore_ascii_case("max-age") {
                    if let Some(secs) = arg.and_then(parse_seconds) {
                        d.max_age = Some(d.max_age.map_or(secs, |m| m.min(secs)));
                    }
                }
            }
        }
        let pragma = headers.get_all(http::header::PRAGMA).iter().any(|v| {
            v.to_str().is_ok_and(|t| {
                t.split(',')
                    .any(|p| p.trim().eq_ignore_ascii_case("no-cache"))
            })
        });
        d.no_cache |= pragma;
        d
    }
}

/// A delta-seconds value: digits only, saturating at `u64::MAX`.
fn parse_seconds(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.parse::<u64>().unwrap_or(u64::MAX))
}

/// Feeds what is written into a SHA-256 hasher.
pub struct HashWriter<'a>(&'a mut Sha256);

impl io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Counts what is written (the size of an entry without building its bytes).
#[derive(Default)]
struct CountWriter(u64);

impl io::Write for CountWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 = self.0.saturating_add(buf.len() as u64);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The `llmux_cache_*` series (registered by [`crate::metrics::Metrics`], zero without a
/// cache).
#[derive(Debug, Clone)]
pub struct CacheMetrics {
    /// `llmux_cache_hits_total`: answers served from the cache.
    pub hits: IntCounter,
    /// `llmux_cache_misses_total`: cacheable requests answered by an upstream.
    pub misses: IntCounter,
    /// `llmux_cache_bypasses_total`: requests the cache neither served nor stored.
    pub bypasses: IntCounter,
    /// `llmux_cache_stores_total`: answers written to the cache.
    pub stores: IntCounter,
    /// `llmux_cache_stored_bytes_total`: bytes of the answers written.
    pub stored_bytes: IntCounter,
    /// `llmux_cache_not_stored_total{reason="too_large"|"incomplete"}`: answers of misses
    /// that were not kept.
    pub not_stored: IntCounterVec,
    /// `llmux_cache_bytes`: bytes held by the in-process backend.
    pub bytes: IntGauge,
    /// `llmux_cache_entries`: entries held by the in-process backend.
    pub entries: IntGauge,
    /// `llmux_cache_evictions_total{reason="size"|"expired"}`: entries the in-process
    /// backend dropped.
    pub evictions: IntCounterVec,
    /// `llmux_cache_backend_errors_total{op="get"|"set"}`: Redis calls that failed or were
    /// skipped after failures (a failed get is a miss).
    pub backend_errors: IntCounterVec,
}

impl CacheMetrics {
    /// Fresh, unregistered series.
    pub fn new() -> Result<CacheMetrics, prometheus::Error> {
        let counter = |name: &str, help: &str| IntCounter::with_opts(Opts::new(name, help));
        let gauge = |name: &str, help: &str| IntGauge::with_opts(Opts::new(name, help));
        Ok(CacheMetrics {
            hits: counter(
                "llmux_cache_hits_total",
                "Answers served from the response cache.",
            )?,
            misses: counter(
                "llmux_cache_misses_total",
                "Cacheable requests answered by an upstream.",
            )?,
            bypasses: counter(
                "llmux_cache_bypasses_total",
                "Requests the response cache neither served nor stored.",
            )?,
            stores: counter(
                "llmux_cache_stores_total",
                "Answers written to the response cache.",
            )?,
            stored_bytes: counter(
                "llmux_cache_stored_bytes_total",
                "Bytes of the answers written to the response cache.",
            )?,
            not_stored: IntCounterVec::new(
                Opts::new(
                    "llmux_cache_not_stored_total",
                    "Answers of cache misses not kept, by reason.",
                ),
                &["reason"],
            )?,
            bytes: gauge(
                "llmux_cache_bytes",
                "Bytes held by the in-process response cache.",
            )?,
            entries: gauge(
                "llmux_cache_entries",
                "Entries held by the in-process response cache.",
            )?,
            evictions: IntCounterVec::new(
                Opts::new(
                    "llmux_cache_evictions_total",
                    "Entries the in-process response cache dropped, by reason.",
                ),
                &["reason"],
            )?,
            backend_errors: IntCounterVec::new(
                Opts::new(
                    "llmux_cache_backend_errors_total",
                    "Response cache calls to Redis that failed or were skipped after failures.",
                ),
                &["op"],
            )?,
        })
    }

    /// Every series, for registration.
    pub fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![
            Box::new(self.hits.clone()),
            Box::new(self.misses.clone()),
            Box::new(self.bypasses.clone()),
            Box::new(self.stores.clone()),
            Box::new(self.stored_bytes.clone()),
            Box::new(self.not_stored.clone()),
            Box::new(self.bytes.clone()),
            Box::new(self.entries.clone()),
            Box::new(self.evictions.clone()),
            Box::new(self.backend_errors.clone()),
        ]
    }

    /// Counts a request's outcome.
    pub fn count(&self, status: Status) {
        match status {
            Status::Hit => self.hits.inc(),
            Status::Miss => self.misses.inc(),
            Status::Bypass => self.bypasses.inc(),
        }
    }
}

/// Where entries live.
enum Store {
    Memory(memory::Memory),
    Redis(redis::RedisCache),
}

struct Inner {
    config: CacheConfig,
    store: Store,
    metrics: CacheMetrics,
    clock: Arc<dyn Clock>,
}

/// The response cache of a gateway (cheap to clone: clones share it).
#[derive(Clone)]
pub struct ResponseCache {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ResponseCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseCache")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// Why the cache could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum CacheSetupError {
    /// `cache.backend = "redis"` without `server.redis`.
    #[error("cache.backend = \"redis\" needs server.redis")]
    NoRedis,
    /// The Redis connection could not be prepared.
    #[error(transparent)]
    Redis(#[from] crate::limits::RedisSetupError),
}

impl ResponseCache {
    /// The cache `config` describes; `redis` is `server.redis` (needed by the Redis backend,
    /// which connects lazily: building it does no IO). Times come from `clock`.
    pub fn new(
        config: CacheConfig,
        redis: Option<&crate::config::RedisConfig>,
        metrics: CacheMetrics,
        clock: Arc<dyn Clock>,
    ) -> Result<ResponseCache, CacheSetupError> {
        let store = match config.backend {
            Backend::Memory => Store::Memory(memory::Memory::new(&config, &metrics)),
            Backend::Redis => {
                let redis = redis.ok_or(CacheSetupError::NoRedis)?;
                Store::Redis(redis::RedisCache::new(redis, &config, &metrics)?)
            }
        };
        Ok(ResponseCache {
            inner: Arc::new(Inner {
                config,
                store,
                metrics,
                clock,
            }),
        })
    }

    /// The checked `[cache]` table.
    pub fn config(&self) -> &CacheConfig {
        &self.inner.config
    }

    /// The series.
    pub fn metrics(&self) -> &CacheMetrics {
        &self.inner.metrics
    }

    /// Now, in unix milliseconds, on the gateway's clock.
    pub fn now_ms(&self) -> i64 {
        self.inner.clock.now_ms()
    }

    /// What the cache does for a request of `Op` from `principal` with these request headers,
    /// routed by `route`.
    pub fn plan<Op: Operation>(
        &self,
        headers: &HeaderMap,
        principal: &Principal,
        route: &crate::routing::Plan,
        request: &Op::Request,
    ) -> Plan {
        let c = &self.inner.config;
        let record = principal.record();
        let enabled = record
            .and_then(|k| k.cache)
            .unwrap_or(c.mode == Mode::DefaultOn);
        let directives = Directives::of(headers);
        if !enabled || directives.no_store {
            return Plan::Bypass;
        }
        let upstreams = route.targets.iter().map(|t| &*t.upstream);
        let Some(digest) = digest::<Op>(c.scope, principal, &route.label, upstreams, request)
        else {
            return Plan::Bypass;
        };
        let ttl = record
            .and_then(|k| k.cache_ttl)
            .map_or(c.ttl, Duration::from_secs)
            .min(c.max_ttl);
        Plan::Use(Ticket {
            digest,
            read: !directives.no_cache,
            max_age_ms: directives.max_age.map(|s| s.saturating_mul(1000)),
            ttl,
        })
    }

    /// The entry that may serve `ticket`, if one does: stored, of this format, not expired on
    /// the gateway's clock, and not older than the request's `max-age`. A backend failure is
    /// a miss.
    pub async fn lookup(&self, ticket: &Ticket) -> Option<Arc<Entry>> {
        if !ticket.read {
            return None;
        }
        let entry = match &self.inner.store {
            Store::Memory(m) => m.get(&ticket.digest).await,
            Store::Redis(r) => r.get(&ticket.digest).await,
        }?;
        let now = self.now_ms();
        let age_ms = u64::try_from(now.saturating_sub(entry.created_ms)).unwrap_or(0);
        let fresh = entry.format == FORMAT
            && now < entry.expires_ms
            && ticket.max_age_ms.is_none_or(|m| age_ms <= m);
        fresh.then_some(entry)
    }

    /// Stores the answer of a miss (the memory backend before returning, Redis from a spawned
    /// task, so the answer is not delayed). An answer larger than `cache.max_entry_bytes` is
    /// not kept.
    pub async fn store(&self, ticket: &Ticket, origin: Origin, stored: Stored) {
        let now = self.now_ms();
        let ttl_ms = i64::try_from(ticket.ttl.as_millis()).unwrap_or(i64::MAX);
        let entry = Entry {
            format: FORMAT,
            created_ms: now,
            expires_ms: now.saturating_add(ttl_ms),
            origin,
            stored,
        };
        let max = self.inner.config.max_entry_bytes;
        let m = &self.inner.metrics;
        match &self.inner.store {
            Store::Memory(mem) => {
                let mut size = CountWriter::default();
                if serde_json::to_writer(&mut size, &entry).is_err() || size.0 > max {
                    m.not_stored.with_label_values(&["too_large"]).inc();
                    return;
                }
                m.stores.inc();
                m.stored_bytes.inc_by(size.0);
                mem.insert(ticket.digest, entry, size.0, ticket.ttl).await;
            }
            Store::Redis(r) => match serde_json::to_vec(&entry) {
                Ok(bytes) if bytes.len() as u64 <= max => {
                    m.stores.inc();
                    m.stored_bytes.inc_by(bytes.len() as u64);
                    r.spawn_set(ticket.digest, bytes, ticket.ttl);
                }
                _ => m.not_stored.with_label_values(&["too_large"]).inc(),
            },
        }
    }

    /// A tee for the events of a streamed miss.
    pub fn tee(&self, ticket: Ticket, origin: Origin) -> Tee {
        Tee {
            cache: self.clone(),
            ticket,
            origin,
            events: Vec::new(),
            approx_bytes: 0,
            over: false,
        }
    }

    /// Applies the in-process backend's pending evictions now (so its gauges are exact).
    pub async fn sync(&self) {
        if let Store::Memory(m) = &self.inner.store {
            m.sync().await;
        }
    }
}

/// The digest of a request, or `None` when such a request is never cached.
fn digest<'a, Op: Operation>(
    scope: Scope,
    principal: &Principal,
    label: &str,
    upstreams: impl Iterator<Item = &'a str>,
    request: &Op::Request,
) -> Option<Digest> {
    fn field(h: &mut Sha256, bytes: &[u8]) {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    }
    let mut h = Sha256::new();
    field(&mut h, b"llmux-cache");
    field(&mut h, &FORMAT.to_le_bytes());
    field(&mut h, Op::OPERATION.as_bytes());
    let who = match (scope, principal) {
        (Scope::Global, _) => String::new(),
        (Scope::Team, Principal::Virtual(k)) => match k.record.team_id {
            Some(t) => format!("team:{t}"),
            None => format!("key:{}", k.record.id),
        },
        (Scope::Key, Principal::Virtual(k)) => format!("key:{}", k.record.id),
        (Scope::Team | Scope::Key, Principal::Static(i)) => format!("static:{i}"),
        (Scope::Team | Scope::Key, Principal::Open) => "open".to_owned(),
    };
    field(&mut h, who.as_bytes());
    field(&mut h, label.as_bytes());
    let mut upstreams: Vec<&str> = upstreams.collect();
    upstreams.sort_unstable();
    upstreams.dedup();
    field(&mut h, &(upstreams.len() as u64).to_le_bytes());
    for u in upstreams {
        field(&mut h, u.as_bytes());
    }
    let cacheable = Op::cache_key(request, &mut HashWriter(&mut h)).ok()?;
    cacheable.then(|| Digest(h.finalize().into()))
}

/// A lower bound on what an event adds to a stored entry (its strings, unescaped, and the
/// shortest event envelope), for cutting a tee off as soon as the entry must be too large.
fn event_bytes(ev: &StreamEvent) -> u64 {
    let text = match ev {
        StreamEvent::TextDelta { text } | StreamEvent::ReasoningDelta { text } => text.len(),
        StreamEvent::ReasoningSignature { signature } => signature.len(),
        StreamEvent::ToolCallDelta {
            id,
            name,
            arguments,
            ..
        } => {
            arguments.len()
                + id.as_ref().map_or(0, String::len)
                + name.as_ref().map_or(0, String::len)
        }
        StreamEvent::Started {
            id,
            model,
            request_id,
        } => id.len() + model.len() + request_id.as_ref().map_or(0, String::len),
        StreamEvent::Usage(_) | StreamEvent::Finished { .. } => 0,
    };
    (text as u64).saturating_add(16)
}

/// Collects a streamed miss's events and stores them once the stream finished successfully.
/// Events are moved in after they were encoded, never copied; collection stops (and nothing
/// is stored) once the entry could exceed `cache.max_entry_bytes`.
pub struct Tee {
    cache: ResponseCache,
    ticket: Ticket,
    origin: Origin,
    events: Vec<StreamEvent>,
    approx_bytes: u64,
    over: bool,
}

impl std::fmt::Debug for Tee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tee")
            .field("events", &self.events.len())
            .field("over", &self.over)
            .finish_non_exhaustive()
    }
}

impl Tee {
    /// Adds the next event.
    pub fn push(&mut self, ev: StreamEvent) {
        if self.over {
            return;
        }
        self.approx_bytes = self.approx_bytes.saturating_add(event_bytes(&ev));
        // A lower bound: past the limit, the entry can only be too large (the exact size is
        // checked when storing).
        if self.approx_bytes > self.cache.inner.config.max_entry_bytes {
            self.over = true;
            self.events = Vec::new();
            return;
        }
        self.events.push(ev);
    }

    /// The stream ended with `Finished`: stores it, unless the answer was cut by content
    /// moderation or grew too large.
    pub async fn finish(self) {
        let m = &self.cache.inner.metrics;
        if self.over {
            m.not_stored.with_label_values(&["too_large"]).inc();
            return;
        }
        let complete = matches!(self.events.first(), Some(StreamEvent::Started { .. }))
            && matches!(
                self.events.last(),
                Some(StreamEvent::Finished { reason }) if *reason != FinishReason::ContentFilter
            );
        if !complete {
            m.not_stored.with_label_values(&["incomplete"]).inc();
            return;
        }
        self.cache
            .store(
                &self.ticket,
                self.origin,
                Stored::Events {
                    events: self.events,
                },
            )
            .await;
    }
}

#[cfg(test)]
mod tests;
