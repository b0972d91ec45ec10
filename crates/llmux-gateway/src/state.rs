//! The gateway's shared state ([`AppState`]) and what every request carries ([`RequestCtx`]).
//! Everything here is plain data: the router, the middleware and the pipeline import it, it
//! imports none of them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::HeaderName;
use tokio::time::Instant;

use crate::auth::Authenticator;
use crate::cache::ResponseCache;
use crate::channels::ChannelCatalog;
use crate::config::{Config, ServerConfig};
use crate::error::ApiError;
use crate::limits::{KeyLimits, RedisLimits};
use crate::metrics::{Caller, Metrics};
use crate::routing::{RouteTable, Routes};
use crate::store::Store;
use crate::usage::{PriceTable, UsageRecorder};

/// `x-request-id`: the client's correlation id when it sent one, else the gateway's id.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// `x-llmux-request-id`: the gateway's id of the request (the usage record's id).
pub const GATEWAY_REQUEST_ID: HeaderName = HeaderName::from_static("x-llmux-request-id");
/// `x-llmux-added-latency-ms`: see [`crate::pipeline::added_latency`].
pub const ADDED_LATENCY: HeaderName = HeaderName::from_static("x-llmux-added-latency-ms");

/// A new request id: a UUID v7 (unix milliseconds, then 74 bits from the OS random number
/// generator), so ids never collide across replicas or restarts and sort by time.
pub fn new_request_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered completely.
    Complete,
    /// Ended with an error of this kind.
    Error(llmux_core::ErrorKind),
    /// The client went away first.
    Cancelled,
}

/// Shared state of one gateway.
pub struct AppState {
    /// Server settings.
    pub server: ServerConfig,
    /// The routing table (owns the channels): a snapshot swapped when channels change.
    pub routes: Arc<RouteTable>,
    /// Where the channels come from (file, database) and how they are reloaded.
    pub channels: ChannelCatalog,
    /// Metrics.
    pub metrics: Metrics,
    /// Client and admin authentication.
    pub auth: Authenticator,
    /// The store (virtual keys, usage), when `server.database` is set.
    pub store: Option<Arc<dyn Store>>,
    /// Usage records go here (never on the response path), when a store is configured.
    pub recorder: Option<UsageRecorder>,
    /// Per-key limits and budgets (in process, or shared through Redis).
    pub limits: KeyLimits,
    /// Prices for cost accounting (built-in, configured and API overrides).
    pub prices: PriceTable,
    /// The response cache, when `[cache]` is on.
    pub cache: Option<ResponseCache>,
    /// Set when shutdown begins (readiness turns 503).
    pub shutting_down: AtomicBool,
    /// Unix seconds at start (`created` of `/v1/models`).
    pub started_unix: i64,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("server", &self.server)
            .field("routes", &self.routes)
            .field("store", &self.store.is_some())
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// State from a resolved config; `auth` decides who may call; `store` and `recorder`
    /// are set when a database is configured.
    pub fn new(
        config: Config,
        auth: Authenticator,
        store: Option<Arc<dyn Store>>,
        recorder: Option<UsageRecorder>,
    ) -> Result<Arc<AppState>, ApiError> {
        Self::with_clock(
            config,
            auth,
            store,
            recorder,
            Arc::new(crate::limits::SystemClock),
        )
    }

    /// [`AppState::new`] with the clock that decides budget periods and stamps usage records.
    pub fn with_clock(
        config: Config,
        auth: Authenticator,
        store: Option<Arc<dyn Store>>,
        recorder: Option<UsageRecorder>,
        clock: Arc<dyn crate::limits::Clock>,
    ) -> Result<Arc<AppState>, ApiError> {
        let internal = |m: String| ApiError::new(llmux_core::ErrorKind::Internal, m);
        let metrics = Metrics::with_max_key_labels(config.server.metrics.max_key_labels)
            .map_err(|e| internal(format!("metrics: {e}")))?;
        let prices = PriceTable::new(
            config
                .server
                .prices
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
            config.server.money.clone(),
        )
        .map_err(|e| internal(e.to_string()))?;
        // Cost reservations are priced per request from its route (see `pipeline::admission`).
        let mut limits = KeyLimits::new()
            .with_calendar(config.server.budget_calendar.clone())
            .with_clock(clock.clone());
        if let Some(redis) = &config.server.redis {
            let backend = RedisLimits::new(redis, metrics.limits_backend_errors.clone())
                .map_err(|e| internal(e.to_string()))?;
            limits = limits.with_redis(backend);
        }
        let cache = match &config.server.cache {
            Some(c) => Some(
                ResponseCache::new(
                    c.clone(),
                    config.server.redis.as_ref(),
                    metrics.cache.clone(),
                    clock,
                )
                .map_err(|e| internal(e.to_string()))?,
            ),
            None => None,
        };
        let channels = ChannelCatalog::new(
            config.channel_defs,
            store.clone(),
            config.server.master_key.clone(),
            config.resilience,
            config.server.channel_refresh,
        );
        Ok(Arc::new(AppState {
            server: config.server,
            routes: Arc::new(RouteTable::new(Routes::new(config.channels))),
            channels,
            metrics,
            auth,
            store,
            recorder,
            limits,
            prices,
            cache,
            shutting_down: AtomicBool::new(false),
            started_unix: unix_now(),
        }))
    }

    /// True once shutdown started.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }
}

/// Unix seconds now.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

/// Per-request facts the handlers read: ids and arrival time, and who called once that is
/// known.
#[derive(Debug, Clone)]
pub struct RequestCtx {
    /// The request id, generated by the gateway: unique across replicas and restarts.
    pub id: Arc<str>,
    /// The client's `X-Request-Id` (≤ 128 visible ASCII characters), for correlation only.
    pub client_id: Option<Arc<str>>,
    /// When the request arrived.
    pub arrived: Instant,
    /// Who called: set by the pipeline once the key is checked (key id, key name, team and
    /// the key's metric series), read by the access log and the per-key request counter.
    /// Unset for requests refused before that and for open access.
    pub caller: Arc<OnceLock<Arc<Caller>>>,
    /// The request's span (see [`crate::telemetry::request_span`]): the pipeline records the
    /// model, channel, usage and outcome on it; disabled unless traces are exported.
    pub span: tracing::Span,
}

impl RequestCtx {
    /// A context for a request that arrived at `arrived`, no caller known yet.
    pub fn new(id: Arc<str>, client_id: Option<Arc<str>>, arrived: Instant) -> RequestCtx {
        RequestCtx {
            id,
            client_id,
            arrived,
            caller: Arc::new(OnceLock::new()),
            span: tracing::Span::none(),
        }
    }

    /// Who called, once known.
    pub fn caller(&self) -> Option<&Arc<Caller>> {
        self.caller.get()
    }
}
