//! The shared limits backend: per-key RPM, TPM and budgets kept in Redis, so every gateway
//! that uses the same Redis and prefix enforces one set of limits.
//!
//! One admission is one round trip: `admit.lua` prunes the key's 60 s window and its expired
//! reservations, checks the budgets and the rates, and reserves, all atomically on the Redis
//! server with the server's clock. `settle.lua` replaces the request's reservation by its actual
//! usage; it runs in a spawned task (settling happens in `Drop` and must not delay the response),
//! counted so shutdown can wait for it ([`KeyLimits::drain`](super::KeyLimits::drain)).
//!
//! A request of a key in a team is decided for the key and the team in the same script call.
//! Both sets of counters share one hash tag, so one call touches one Cluster slot, and with
//! `server.redis = "redis+cluster://…"` it runs on the primary that owns that slot
//! ([`crate::redis_conn`]); the one plain command, the `HMGET` of `Shared::usage`, reads a
//! single key. Under the
//! prefix `llmux:`, virtual key 7 outside any team has `llmux:{7}:w` (window), `llmux:{7}:h`
//! (held reservations) and `llmux:{7}:s` (sums, and the spend of a lifetime budget); in team 3
//! the same key has `llmux:{t3}:k7:w`, `…:h`, `…:s`, and the team has `llmux:{t3}:w`, `:h`,
//! `:s`. The spend of a periodic budget is a hash per period, named by its label
//! ([`super::period`]): `llmux:{7}:p:m:2026-12`, `llmux:{t3}:p:d:2026-12-07`. A new period is a
//! new key that starts empty, so a boundary needs no sweep; a key moved to another team starts
//! with fresh Redis counters (the store's spend still counts). Every script call refreshes the
//! TTL of what it touches ([`key_ttl`]), so idle keys disappear.
//!
//! When Redis fails (connection refused, timeout, an error reply) the admission is decided by
//! the in-process limits instead; three failures in a row open a breaker that skips Redis for
//! [`COOL_DOWN`], after which one request probes it again. Each such admission and each failed
//! settle increments `llmux_limits_backend_errors_total`; warnings are logged at most once per
//! [`WARN_EVERY`].

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use llmux_core::resilience::{Breaker, BreakerConfig, BreakerState};
use llmux_core::ErrorKind;
use prometheus::{IntCounter, IntCounterVec};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{BudgetPeriod, LimitError, Scope, ScopeId};
use crate::config::RedisConfig;
pub use crate::redis_conn::RedisSetupError;
use crate::redis_conn::{LuaScript, RedisConn, ScriptCall};

/// Longest wait for one Redis call (connecting included) before the in-process limits decide.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(500);
/// How long Redis is skipped after [`FAILURES_TO_SKIP`] failures in a row.
pub const COOL_DOWN: Duration = Duration::from_secs(2);
/// Failures in a row that make admissions skip Redis for [`COOL_DOWN`].
pub const FAILURES_TO_SKIP: u32 = 3;
/// At most one warning about an unavailable Redis per this interval.
pub const WARN_EVERY: Duration = Duration::from_secs(10);
/// Shortest TTL of a key's Redis entries after its last use.
pub const MIN_KEY_TTL: Duration = Duration::from_secs(3600);

/// The TTL of a key's entries: long enough to outlive its longest reservation and its window.
pub fn key_ttl(reservation_ttl: Duration) -> Duration {
    reservation_ttl
        .saturating_add(Duration::from_secs(60))
        .max(MIN_KEY_TTL)
}

/// A handle to the shared backend, given to [`KeyLimits::with_redis`](super::KeyLimits::with_redis).
/// It connects lazily: building it does no IO, so a gateway starts while Redis is down.
#[derive(Clone)]
pub struct RedisLimits {
    pub(super) shared: Arc<Shared>,
}

impl std::fmt::Debug for RedisLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.shared.fmt(f)
    }
}

impl RedisLimits {
    /// A backend for `config` (the URL is only parsed here); failures are counted in `errors`
    /// (`llmux_limits_backend_errors_total{op}`).
    pub fn new(
        config: &RedisConfig,
        errors: IntCounterVec,
    ) -> Result<RedisLimits, RedisSetupError> {
        let conn = RedisConn::lazy(config, CALL_TIMEOUT)?;
        let breaker = Breaker::new(
            "redis limits",
            BreakerConfig {
                consecutive_failures: FAILURES_TO_SKIP,
                failure_rate: 0.0,
                cool_down: COOL_DOWN,
                half_open_probes: 1,
                ..BreakerConfig::default()
            },
        );
        let reservation_ms = millis(config.reservation_ttl);
        Ok(RedisLimits {
            shared: Arc::new(Shared {
                conn,
                admit: LuaScript::new(include_str!("admit.lua")),
                settle: LuaScript::new(include_str!("settle.lua")),
                prefix: config.prefix.clone(),
                reservation_ms,
                key_ttl_ms: millis(key_ttl(config.reservation_ttl)),
                breaker,
                admit_errors: errors.with_label_values(&["admit"]),
                settle_errors: errors.with_label_values(&["settle"]),
                warn: WarnGate::new(),
                pending: Pending::default(),
            }),
        })
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The state behind [`RedisLimits`], shared by every admission it made.
pub(super) struct Shared {
    conn: RedisConn,
    admit: LuaScript,
    settle: LuaScript,
    prefix: String,
    reservation_ms: u64,
    key_ttl_ms: u64,
    breaker: Arc<Breaker>,
    admit_errors: IntCounter,
    settle_errors: IntCounter,
    warn: WarnGate,
    pending: Pending,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The connection (and with it the URL) is left out on purpose.
        f.debug_struct("RedisLimits")
            .field("cluster", &self.conn.is_cluster())
            .field("prefix", &self.prefix)
            .field("reservation_ms", &self.reservation_ms)
            .field("key_ttl_ms", &self.key_ttl_ms)
            .field("pending_settles", &self.pending.count())
            .finish_non_exhaustive()
    }
}

/// The Redis keys of one scope (a key or a team) in one period.
struct Keys {
    window: String,
    held: String,
    state: String,
    spend: String,
}

impl Keys {
    /// The keys of `id` (whose key is in `team`, if any) with the spend of period `label`.
    fn new(prefix: &str, id: ScopeId, team: Option<i64>, label: &str) -> Keys {
        let base = match (id, team) {
            (ScopeId::Key(k), None) => format!("{prefix}{{{k}}}"),
            (ScopeId::Key(k), Some(t)) => format!("{prefix}{{t{t}}}:k{k}"),
            (ScopeId::Team(t), _) => format!("{prefix}{{t{t}}}"),
        };
        let state = format!("{base}:s");
        let spend = if label.is_empty() {
            state.clone()
        } else {
            format!("{base}:p:{label}")
        };
        Keys {
            window: format!("{base}:w"),
            held: format!("{base}:h"),
            state,
            spend,
        }
    }

    fn add_to(&self, inv: &mut ScriptCall<'_>) {
        inv.key(&self.window)
            .key(&self.held)
            .key(&self.state)
            .key(&self.spend);
    }
}

/// The team of a request's scopes, if one of them is a team.
fn team_of(scopes: impl IntoIterator<Item = ScopeId>) -> Option<i64> {
    scopes.into_iter().find_map(|s| match s {
        ScopeId::Team(t) => Some(t),
        ScopeId::Key(_) => None,
    })
}

/// Why one call failed.
#[derive(Debug)]
enum Failure {
    Redis(redis::RedisError),
    Timeout,
    Reply,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // Redis errors describe the failure (refused, timed out, an error reply); they do
            // not carry the URL.
            Failure::Redis(e) => write!(f, "{e}"),
            Failure::Timeout => write!(f, "no answer within {} ms", CALL_TIMEOUT.as_millis()),
            Failure::Reply => f.write_str("an unexpected reply from the limits script"),
        }
    }
}

/// Adds an optional limit: an empty string is "no limit" for the scripts.
fn opt_arg<T: redis::ToRedisArgs>(inv: &mut ScriptCall<'_>, v: Option<T>) {
    match v {
        Some(v) => inv.arg(v),
        None => inv.arg(""),
    };
}

/// A cost for the scripts: finite (infinities become the largest finite value, so a budget of
/// infinity is still a limit nobody reaches), never NaN (then `None`).
fn finite(v: f64) -> Option<f64> {
    (!v.is_nan()).then(|| v.clamp(-f64::MAX, f64::MAX))
}

impl Shared {
    async fn call<T: redis::FromRedisValue>(&self, inv: &ScriptCall<'_>) -> Result<T, Failure> {
        let mut conn = self.conn.clone();
        match tokio::time::timeout(CALL_TIMEOUT, inv.invoke::<T>(&mut conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(Failure::Redis(e)),
            Err(_) => Err(Failure::Timeout),
        }
    }

    /// The shared decision for a request of `scopes` (a key, then its team), or `None` when
    /// Redis could not decide (counted and logged; the caller decides in process).
    pub(super) async fn admit(
        self: &Arc<Self>,
        scopes: &[Scope],
        estimated_tokens: u64,
        estimated_cost: f64,
    ) -> Option<Result<Ticket, LimitError>> {
        let Ok(permit) = self.breaker.acquire(Instant::now()) else {
            self.admit_fallback(None);
            return None;
        };
        let team = team_of(scopes.iter().map(|s| s.id));
        let mut inv = self.admit.call();
        for s in scopes {
            Keys::new(&self.prefix, s.id, team, &s.label).add_to(&mut inv);
        }
        inv.arg(estimated_tokens)
            .arg(estimated_cost)
            .arg(self.reservation_ms)
            .arg(self.key_ttl_ms);
        for s in scopes {
            opt_arg(&mut inv, s.rpm);
            opt_arg(&mut inv, s.tpm);
            opt_arg(&mut inv, s.budget_tokens);
            opt_arg(&mut inv, s.budget_cost.and_then(finite));
            inv.arg(s.store_spent.0)
                .arg(finite(s.store_spent.1).unwrap_or(0.0).max(0.0));
        }
        let scope_at = |i: i64| {
            usize::try_from(i - 1)
                .ok()
                .and_then(|i| scopes.get(i))
                .map(|s| s.id)
        };
        let decision = match self.call::<Vec<i64>>(&inv).await {
            Ok(reply) => match reply.as_slice() {
                [0, id] => Ok(Ok(Ticket {
                    shared: self.clone(),
                    team,
                    scopes: scopes
                        .iter()
                        .map(|s| (s.id, s.period, s.label.clone()))
                        .collect(),
                    id: *id,
                })),
                [1, wait_ms, i] => match scope_at(*i) {
                    Some(id) => Ok(Err(id.rate_limited(Duration::from_millis(
                        u64::try_from(*wait_ms).unwrap_or(1).max(1),
                    )))),
                    None => Err(Failure::Reply),
                },
                [2, _, i] => match scope_at(*i) {
                    Some(id) => Ok(Err(id.budget_exhausted())),
                    None => Err(Failure::Reply),
                },
                _ => Err(Failure::Reply),
            },
            Err(f) => Err(f),
        };
        match decision {
            Ok(d) => {
                permit.success(Instant::now());
                Some(d)
            }
            Err(failure) => {
                permit.failure(
                    Instant::now(),
                    &llmux_core::Error::new(ErrorKind::Connect, "the Redis limits backend failed"),
                );
                self.admit_fallback(Some(&failure));
                None
            }
        }
    }

    /// Counts an admission decided in process (Redis failed, or is skipped after failures)
    /// and warns, at most once per [`WARN_EVERY`] together with settle failures.
    fn admit_fallback(&self, failure: Option<&Failure>) {
        self.admit_errors.inc();
        let Some(suppressed) = self.warn.allow() else {
            return;
        };
        match failure {
            Some(f) => tracing::warn!(
                error = %f, suppressed,
                "the Redis limits backend failed; this gateway decides limits alone until it answers again"
            ),
            None => tracing::warn!(
                suppressed,
                "the Redis limits backend is skipped after repeated failures; this gateway decides limits alone"
            ),
        }
    }

    /// Counts a settle or release that did not reach Redis, and warns like
    /// [`Shared::admit_fallback`].
    fn settle_lost(&self, failure: Option<&Failure>) {
        self.settle_errors.inc();
        let Some(suppressed) = self.warn.allow() else {
            return;
        };
        let error = failure.map_or_else(|| "no async runtime".to_owned(), ToString::to_string);
        tracing::warn!(
            %error, suppressed,
            "a limit settle did not reach Redis; its reservation is held until it expires"
        );
    }

    /// Settles (`actual` given, counted as spent in the periods `labels`, one per scope) or
    /// releases an admission in a spawned task, so the response is not delayed; [`Pending`]
    /// counts it until it finishes.
    fn spawn_settle(
        self: &Arc<Self>,
        ticket: &Ticket,
        est: (u64, f64),
        actual: Option<((u64, f64), Vec<String>)>,
    ) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            // No runtime (the process is exiting): the reservation expires on its own.
            self.settle_lost(None);
            return;
        };
        let guard = self.pending.enter(self.clone());
        let id = ticket.id;
        let keys: Vec<Keys> = ticket
            .scopes
            .iter()
            .enumerate()
            .map(|(i, (scope, _, admitted))| {
                let label = actual
                    .as_ref()
                    .and_then(|(_, labels)| labels.get(i))
                    .unwrap_or(admitted);
                Keys::new(&self.prefix, *scope, ticket.team, label)
            })
            .collect();
        rt.spawn(async move {
            let shared = guard.shared();
            let mut inv = shared.settle.call();
            for k in &keys {
                k.add_to(&mut inv);
            }
            inv.arg(id).arg(est.0).arg(est.1);
            match &actual {
                Some(((tokens, cost), _)) => inv.arg(*tokens).arg(*cost),
                None => inv.arg("").arg(""),
            };
            inv.arg(shared.key_ttl_ms);
            if let Err(f) = shared.call::<i64>(&inv).await {
                shared.settle_lost(Some(&f));
            }
        });
    }

    /// Whether admissions currently go to Redis (`redis`) or skip it after failures
    /// (`redis_unavailable`).
    pub(super) fn state(&self) -> &'static str {
        match self.breaker.state(Instant::now()) {
            BreakerState::Open | BreakerState::Disabled => "redis_unavailable",
            BreakerState::Closed | BreakerState::HalfOpen => "redis",
        }
    }

    pub(super) async fn drain(&self) {
        self.pending.wait().await;
    }

    /// Spend and reservations of a key as Redis holds them.
    pub(super) async fn usage(&self, key_id: i64) -> Option<super::KeyUsage> {
        let keys = Keys::new(&self.prefix, ScopeId::Key(key_id), None, "");
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(&keys.state).arg(&["st", "sc", "rt", "rc", "wt"]);
        let reply =
            tokio::time::timeout(CALL_TIMEOUT, cmd.query_async::<Vec<Option<f64>>>(&mut conn))
                .await
                .ok()?
                .ok()?;
        let at = |i: usize| reply.get(i).copied().flatten().unwrap_or(0.0);
        Some(super::KeyUsage {
            spent_tokens: at(0) as u64,
            spent_cost: at(1),
            reserved_tokens: at(2) as u64,
            reserved_cost: at(3),
            window_tokens: at(4) as u64,
        })
    }
}

/// An admission Redis made: enough to settle or release it.
#[derive(Debug)]
pub(super) struct Ticket {
    shared: Arc<Shared>,
    /// The team whose hash tag the keys share, if any.
    team: Option<i64>,
    /// Each scope with its period kind and the label it was admitted in.
    scopes: Vec<(ScopeId, BudgetPeriod, String)>,
    id: i64,
}

impl Ticket {
    /// The period kind of each scope, in order.
    pub(super) fn periods(&self) -> impl Iterator<Item = BudgetPeriod> + '_ {
        self.scopes.iter().map(|s| s.1)
    }

    /// Settles with the actual usage, spent in the periods `labels` (one per scope).
    pub(super) fn settle(&self, est: (u64, f64), actual: (u64, f64), labels: Vec<String>) {
        self.shared.spawn_settle(self, est, Some((actual, labels)));
    }

    pub(super) fn release(&self, est: (u64, f64)) {
        self.shared.spawn_settle(self, est, None);
    }
}

/// Settles in flight, so shutdown can wait for them.
#[derive(Debug, Default)]
struct Pending {
    count: AtomicUsize,
    idle: Notify,
}

/// One pending settle; dropping it (the task finished or was cancelled) ends it.
struct PendingGuard(Arc<Shared>);

impl PendingGuard {
    fn shared(&self) -> &Arc<Shared> {
        &self.0
    }
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        if self.0.pending.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.pending.idle.notify_waiters();
        }
    }
}

impl Pending {
    fn enter(&self, shared: Arc<Shared>) -> PendingGuard {
        self.count.fetch_add(1, Ordering::AcqRel);
        PendingGuard(shared)
    }

    fn count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    async fn wait(&self) {
        loop {
            let idle = self.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.count() == 0 {
                return;
            }
            idle.await;
        }
    }
}

/// Lets one warning through per [`WARN_EVERY`] and counts the ones it held back.
#[derive(Debug)]
struct WarnGate {
    start: Instant,
    next_ms: AtomicU64,
    suppressed: AtomicU64,
}

impl WarnGate {
    fn new() -> Self {
        WarnGate {
            start: Instant::now(),
            next_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(held back since the last one)` when a warning may be logged now.
    fn allow(&self) -> Option<u64> {
        let now = millis(self.start.elapsed());
        let next = self.next_ms.load(Ordering::Acquire);
        if now >= next
            && self
                .next_ms
                .compare_exchange(
                    next,
                    now.saturating_add(millis(WARN_EVERY)),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::AcqRel));
        }
        self.suppressed.fetch_add(1, Ordering::AcqRel);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_one_virtual_key_share_a_hash_tag() {
        let k = Keys::new("llmux:", ScopeId::Key(7), None, "");
        assert_eq!(k.window, "llmux:{7}:w");
        assert_eq!(k.held, "llmux:{7}:h");
        assert_eq!(k.state, "llmux:{7}:s");
        assert_eq!(k.spend, "llmux:{7}:s");
        let p = Keys::new("llmux:", ScopeId::Key(7), None, "m:2026-12");
        assert_eq!(p.spend, "llmux:{7}:p:m:2026-12");
    }

    #[test]
    fn a_key_and_its_team_share_the_team_hash_tag() {
        let k = Keys::new("llmux:", ScopeId::Key(7), Some(3), "d:2026-12-07");
        let t = Keys::new("llmux:", ScopeId::Team(3), Some(3), "m:2026-12");
        for name in [
            &k.window, &k.held, &k.state, &k.spend, &t.window, &t.held, &t.state, &t.spend,
        ] {
            assert!(name.starts_with("llmux:{t3}:"), "{name}");
        }
        assert_eq!(k.window, "llmux:{t3}:k7:w");
        assert_eq!(t.window, "llmux:{t3}:w");
        assert_eq!(t.spend, "llmux:{t3}:p:m:2026-12");
        // Every name differs.
        let all = [
            &k.window, &k.held, &k.state, &k.spend, &t.window, &t.held, &t.state, &t.spend,
        ];
        let set: std::collections::HashSet<_> = all.iter().collect();
        assert_eq!(set.len(), all.len());
    }

    #[test]
    fn key_ttl_outlives_reservations_and_the_window() {
        assert_eq!(key_ttl(Duration::from_secs(60)), MIN_KEY_TTL);
        assert_eq!(
            key_ttl(Duration::from_secs(7200)),
            Duration::from_secs(7260)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn warnings_are_rate_limited_and_count_what_they_held_back() {
        let gate = WarnGate::new();
        assert_eq!(gate.allow(), Some(0));
        assert_eq!(gate.allow(), None);
        assert_eq!(gate.allow(), None);
        tokio::time::advance(WARN_EVERY).await;
        assert_eq!(gate.allow(), Some(2));
    }

    #[test]
    fn costs_sent_to_the_scripts_are_finite() {
        assert_eq!(finite(f64::INFINITY), Some(f64::MAX));
        assert_eq!(finite(0.5), Some(0.5));
        assert_eq!(finite(f64::NAN), None);
    }
}
