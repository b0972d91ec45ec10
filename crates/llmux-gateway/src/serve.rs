//! Starting and stopping: load the configuration ([`load_raw`]), bind ([`Gateway::bind`]),
//! serve (connections, their limits and timeouts: [`crate::conn`]), and shut down gracefully: on
//! the signal the listener closes, `/readyz` turns 503, idle connections close at once, and
//! in-flight requests and streams get `server.shutdown_grace` to finish before the remaining
//! connections are dropped; then limit settles still on their way to Redis get a few seconds,
//! the usage recorder is flushed (which, with the file journal, deletes its segments) and the
//! instance's lease in the store is released (see [`crate::usage::lease`]).
//!
//! At start, before anything is served, the file journal's directory is locked and what a
//! previous process left in it is recorded ([`crate::usage::journal`]); then the lease is taken,
//! which records what dead instances left in the store's journal.
//!
//! With `[events]`, the store queues every record's event in its outbox and a
//! [`crate::events::Publisher`] drains it to NATS JetStream in the background; at shutdown it
//! gets a last drain of at most [`EVENTS_DRAIN`] after the recorder's flush.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::app::router;
use crate::auth::{Authenticator, KeyVerifier, StoreKeys};
use crate::config::{Config, ConfigError, RawConfig, UsageJournal};
use crate::state::AppState;
use crate::usage::{InstanceLease, JournalConfig, LedgerJournal, RecorderConfig, UsageRecorder};

/// How long shutdown waits for settles still being sent to Redis.
const SETTLE_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

/// How long shutdown lets the event publisher drain what the recorder committed last.
pub const EVENTS_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

/// Start-up options that are not configuration.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServeOptions {
    /// Admit every request without a key (`--insecure-no-auth`). Never in production.
    pub insecure_no_auth: bool,
}

/// Why the gateway could not start.
#[derive(Debug)]
pub enum ServeError {
    /// The configuration is invalid.
    Config(ConfigError),
    /// The listen address could not be bound (in use, not local, no permission).
    Bind {
        /// The address from `server.listen` (or `--listen`).
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Serving failed.
    Io(std::io::Error),
    /// No way to authenticate clients was configured.
    NoAuth,
    /// Something else (metrics set-up).
    Other(String),
}

impl std::fmt::Display for ServeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServeError::Config(e) => write!(f, "invalid configuration:\n{e}"),
            ServeError::Bind { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
            ServeError::Io(e) => write!(f, "{e}"),
            ServeError::NoAuth => f.write_str(
                "no client authentication is configured: set server.api_keys (or a database with virtual keys), \
                 or pass --insecure-no-auth to run open (never in production)",
            ),
            ServeError::Other(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for ServeError {}

/// The environment as `(name, value)` pairs (non-Unicode entries skipped).
pub fn env_pairs() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

/// The config file to use: `path`, else `LLMUX_CONFIG`, else none.
pub fn config_path(path: Option<&Path>) -> Option<PathBuf> {
    path.map(Path::to_path_buf).or_else(|| {
        std::env::var_os("LLMUX_CONFIG")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    })
}

/// Reads the raw configuration: the file when there is one (with `LLMUX__…` overrides),
/// otherwise channels from the provider variables that are set.
pub fn load_raw(path: Option<&Path>) -> Result<RawConfig, ConfigError> {
    match config_path(path) {
        Some(p) => {
            let text = std::fs::read_to_string(&p).map_err(|e| ConfigError {
                issues: vec![crate::config::ConfigIssue {
                    path: String::new(),
                    message: format!("cannot read {}: {e}", p.display()),
                }],
            })?;
            RawConfig::parse(&text, env_pairs())
        }
        None => RawConfig::from_provider_env(env_pairs(), |k| std::env::var(k).ok()),
    }
}

/// Resolves with the process environment for `env:VAR` references.
pub fn resolve(raw: RawConfig) -> Result<Config, ConfigError> {
    Config::resolve(raw, |k| std::env::var(k).ok())
}

/// A bound, not yet serving gateway.
#[derive(Debug)]
pub struct Gateway {
    state: Arc<AppState>,
    listener: TcpListener,
    addr: SocketAddr,
    lease: Option<InstanceLease>,
    /// The usage-event publisher, started by [`Gateway::run`].
    events: Option<crate::events::Publisher>,
}

impl Gateway {
    /// Opens the store (when `server.database` is set), starts the usage recorder and binds
    /// `config.server.listen` (port 0 picks a free port). Call it inside the serving runtime.
    pub async fn bind(config: Config, opts: ServeOptions) -> Result<Gateway, ServeError> {
        Self::bind_with_clock(config, opts, Arc::new(crate::limits::SystemClock)).await
    }

    /// [`Gateway::bind`] with the clock that decides budget periods (and stamps usage
    /// records), so tests can cross a period's boundary without waiting for it.
    pub async fn bind_with_clock(
        config: Config,
        opts: ServeOptions,
        clock: Arc<dyn crate::limits::Clock>,
    ) -> Result<Gateway, ServeError> {
        let options = crate::store::StoreOptions {
            outbox: config.server.events.is_some(),
        };
        let store = match &config.server.database {
            Some(url) => Some(
                crate::store::open_with_options(
                    url.expose(),
                    config.server.budget_calendar.clone(),
                    options,
                )
                .await
                .map_err(|e| ServeError::Other(e.to_string()))?,
            ),
            None => None,
        };
        // The sink connects in the background: a broker that is down delays nothing.
        let sink = match &config.server.events {
            Some(cfg) => Some(
                crate::events::nats::NatsSink::connect(cfg)
                    .await
                    .map_err(|e| ServeError::Other(format!("[events]: {e}")))?,
            ),
            None => None,
        };
        let verifier: Option<Arc<dyn KeyVerifier>> = store.as_ref().map(|s| {
            Arc::new(
                StoreKeys::new(s.clone(), config.server.limits, config.server.key_cache_ttl)
                    .stale_if_error(config.server.key_stale_if_error),
            ) as Arc<dyn KeyVerifier>
        });
        let auth = Authenticator::new(
            config.server.api_keys.clone(),
            verifier,
            opts.insecure_no_auth,
            config.server.admin_key.clone(),
        );
        if !auth.is_configured() {
            return Err(ServeError::NoAuth);
        }
        if opts.insecure_no_auth {
            tracing::warn!("running WITHOUT client authentication (--insecure-no-auth)");
        }
        // The file journal first: its leftovers (records, requests in flight) are recorded
        // before anything else writes, so a record it holds replaces the same request's row in
        // the store's journal instead of meeting it recovered as interrupted. In `relaxed` mode
        // the directory is still recovered (a crash under `sync`, then a switch), then closed.
        let journal = match (&store, &config.server.usage_journal) {
            (Some(s), UsageJournal::Directory(dir)) => {
                let (journal, _) = LedgerJournal::open(dir, JournalConfig::default(), s.as_ref())
                    .await
                    .map_err(|e| ServeError::Other(e.to_string()))?;
                Some(Arc::new(journal))
            }
            _ => None,
        };
        // Then the lease: journal rows are only written to the store under a live lease.
        // Taking it also records what dead instances left in flight there.
        let instance = crate::usage::recorder::new_instance_id();
        let lease = match &store {
            Some(s) => Some(
                InstanceLease::start(s.clone(), instance.clone(), config.server.instance_lease)
                    .await
                    .map_err(|e| ServeError::Other(e.to_string()))?,
            ),
            None => None,
        };
        let recorder_cfg = RecorderConfig {
            durability: config.server.usage_durability,
            commit_timeout: config.server.usage_commit_timeout,
            ..RecorderConfig::default()
        };
        let recorder = store.as_ref().map(|s| match journal {
            Some(j) => UsageRecorder::spawn_journaled(s.clone(), recorder_cfg, instance.clone(), j),
            None => UsageRecorder::spawn_as(s.clone(), recorder_cfg, instance.clone()),
        });
        let listen = config.server.listen;
        let state = AppState::with_clock(config, auth, store, recorder, clock)
            .map_err(|e| ServeError::Other(e.message))?;
        // The channels stored in the database join the file's before anything is served.
        state
            .channels
            .refresh(&state.routes)
            .await
            .map_err(|e| ServeError::Other(format!("reading the stored channels: {e}")))?;
        // Price overrides set through the admin API live in the store.
        if let Some(store) = &state.store {
            let overrides = store
                .list_price_overrides()
                .await
                .map_err(|e| ServeError::Other(format!("reading price overrides: {e}")))?;
            state.prices.load_overrides(overrides_map(overrides));
        }
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| ServeError::Bind {
                addr: listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(ServeError::Io)?;
        let events = match (sink, &state.store, &state.server.events) {
            (Some(sink), Some(store), Some(cfg)) => Some(crate::events::Publisher::new(
                store.clone(),
                Arc::new(sink),
                state.metrics.events.clone(),
                crate::events::PublisherConfig::new(cfg, state.server.money.currency.as_str()),
                &instance,
            )),
            _ => None,
        };
        Ok(Gateway {
            state,
            listener,
            addr,
            lease,
            events,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The shared state (metrics, routes).
    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// Serves until `shutdown` completes, then drains for up to `server.shutdown_grace`:
    /// connections with no request in flight close at once (see [`crate::conn`]).
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let state = self.state.clone();
        let grace = state.server.shutdown_grace;
        let flag = state.clone();
        let signal = async move {
            shutdown.await;
            flag.shutting_down.store(true, Ordering::Relaxed);
            tracing::info!("shutting down: no new connections; draining in-flight requests");
        };
        tracing::info!(addr = %self.addr, channels = state.routes.current().channels().len(), "llmux gateway listening");
        let pruner = state.store.clone().map(|store| {
            let days = i64::from(state.server.retention_days);
            tokio::spawn(prune_loop(store, days))
        });
        let poller = state.store.as_ref().map(|_| {
            let state = state.clone();
            tokio::spawn(async move { state.channels.poll(&state.routes).await })
        });
        let price_refresh = state
            .store
            .is_some()
            .then(|| tokio::spawn(price_refresh_loop(state.clone())));
        let events = self.events.map(crate::events::Publisher::spawn);
        let floor = tokio::spawn(timer_floor());
        crate::conn::serve(
            self.listener,
            router(state.clone()),
            state.server.connections,
            grace,
            signal,
        )
        .await;
        floor.abort();
        if let Some(p) = pruner {
            p.abort();
        }
        if let Some(p) = poller {
            p.abort();
        }
        state.channels.stop_discovery();
        if let Some(p) = price_refresh {
            p.abort();
        }
        // Every request's guard has run by now (or runs as its connection is dropped here).
        // Settles sent to Redis run in spawned tasks: give them a moment to land, so the shared
        // counters see this gateway's last usage. One still pending when this gives up is lost
        // to Redis only: its reservation expires, and its spend arrives through the store.
        if tokio::time::timeout(SETTLE_DRAIN, state.limits.drain())
            .await
            .is_err()
        {
            tracing::warn!("some limit settles were still pending in Redis at shutdown");
        }
        // Flush what the recorder holds.
        if let Some(rec) = state.recorder.clone() {
            match rec.shutdown().await {
                Ok(n) => tracing::info!(written = n, "usage recorder drained"),
                Err(e) => tracing::error!(error = %e, "usage recorder could not write everything"),
            }
        }
        // Then the events of those last records, while the broker answers.
        if let Some(events) = events {
            events.shutdown(EVENTS_DRAIN).await;
        }
        if let Some(lease) = self.lease {
            lease.release().await;
        }
        Ok(())
    }
}

/// Re-reads the configuration file's `[[channels]]` (at `path`, as [`load_raw`] finds it) and
/// swaps the routing table: what SIGHUP does. Other settings are read at start only. On an
/// invalid file the table stays as it is and the problems are returned.
pub async fn reload_channels(state: &AppState, path: Option<&Path>) -> Result<usize, ConfigError> {
    let raw = load_raw(path)?;
    state
        .channels
        .reload_file(&state.routes, raw.channels, |k| std::env::var(k).ok())
        .await
}

/// Reloads the file's channels on every SIGHUP until the process ends (Unix; elsewhere it
/// does nothing). Failures are logged and leave the table as it was.
pub fn spawn_sighup_reload(state: Arc<AppState>, path: Option<PathBuf>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; channels reload only on restart");
            return;
        };
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                match reload_channels(&state, path.as_deref()).await {
                    Ok(n) => tracing::info!(file_channels = n, "SIGHUP: channels reloaded"),
                    Err(e) => tracing::error!(
                        error = %e.to_string().replace('\n', "; "),
                        "SIGHUP: the configuration is invalid; channels unchanged"
                    ),
                }
            }
        });
    }
    #[cfg(not(unix))]
    {
        let _ = (state, path);
    }
}

/// How far ahead a timer is always due in the runtime's timer wheel (see [`timer_floor`]).
const TIMER_FLOOR: std::time::Duration = std::time::Duration::from_secs(5);

/// Keeps a timer due within [`TIMER_FLOOR`]. When tokio registers a timer due sooner than every
/// timer it last went to sleep for, it wakes its own IO driver: an eventfd write, and then an
/// `epoll_wait` that returns at once. With nothing else due, an idle gateway sleeps until its
/// connections' idle timeout, so every request's first-event timeout (60 s) was such a timer
/// after each idle moment, and a client sending one request at a time paid those two system
/// calls on every request. The request timers are longer than the floor, so none does now; the
/// cost is one wake-up of an idle gateway every five seconds.
async fn timer_floor() {
    let mut tick = tokio::time::interval(TIMER_FLOOR);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
    }
}

/// Deletes raw usage rows older than the retention, once an hour.
async fn prune_loop(store: Arc<dyn crate::store::Store>, days: i64) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        tick.tick().await;
        let cutoff = crate::state::unix_now().saturating_sub(days.saturating_mul(86_400)) * 1000;
        match store.prune(cutoff).await {
            Ok(n) if n > 0 => tracing::info!(deleted = n, "pruned usage rows past retention"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "pruning usage rows failed"),
        }
    }
}

/// How often price overrides are re-read from the store, so a change made through another
/// gateway's admin API applies here too.
pub const PRICE_REFRESH: std::time::Duration = std::time::Duration::from_secs(30);

fn overrides_map(
    rows: Vec<crate::store::PriceOverride>,
) -> std::collections::HashMap<String, crate::usage::ModelPrice> {
    rows.into_iter().map(|o| (o.model, o.price)).collect()
}

/// Re-reads the price overrides every [`PRICE_REFRESH`] (a failed read keeps the last ones).
async fn price_refresh_loop(state: Arc<AppState>) {
    let Some(store) = state.store.clone() else {
        return;
    };
    let mut tick = tokio::time::interval(PRICE_REFRESH);
    tick.tick().await;
    loop {
        tick.tick().await;
        let since = state.prices.changes();
        match store.list_price_overrides().await {
            Ok(rows) => {
                state.prices.refresh_overrides(since, overrides_map(rows));
            }
            Err(e) => tracing::warn!(error = %e, "re-reading price overrides failed"),
        }
    }
}

/// Completes on Ctrl-C or SIGTERM. The handlers are installed when this is called, not when
/// the future is first polled, so a signal sent right after the gateway printed its address is
/// already a graceful shutdown.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                _ => std::future::pending::<()>().await,
            }
        }
    }
    #[cfg(not(unix))]
    async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
