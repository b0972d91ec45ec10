//! Limits that hold under concurrency, per virtual key and per team: requests and tokens per
//! minute (a core [`Limiter`] per key or team, sliding 60 s window, reserve on admit) and token
//! and cost budgets per period ([`period`]: the whole life, or each day, week or month in
//! `server.budget_timezone`), reserved on admit and trued up on settle. A request of a key in a
//! team is admitted only when both the key and the team allow it, and reserves on both. Bounds
//! are in `docs/limits.md`.
//!
//! Every admission happens under one lock, so checking and reserving are atomic across a key
//! and its team:
//! - RPM: at most `rpm` admissions in any 60 s window, exactly (per key, and per team over all
//!   its keys).
//! - TPM: reserved tokens in any window never exceed `tpm`; actual tokens exceed it only by
//!   what requests used beyond their estimate (the estimate includes `max_tokens`, so only the
//!   prompt estimate can be short).
//! - Token budget: a request is admitted only if `spent + in-flight reservations + estimate ≤
//!   budget`, where `spent` is the spend of the current period; spend can pass the budget only
//!   by the sum over in-flight requests of `actual − estimate` where positive.
//! - Cost budget: the same, with the estimate priced at a conservative per-token cost
//!   ([`KeyLimits::with_cost_per_token`], or an explicit cost in [`KeyLimits::admit_with_cost`]).
//!   Without a cost estimate a request is admitted while `spent + reserved < budget`.
//!
//! A periodic budget's spend is kept per period label: when the clock ([`KeyLimits::with_clock`])
//! enters a new period, the spend counted starts at zero (requests still in flight keep their
//! reservations and are counted in the period in which they settle, as their usage records are).
//!
//! `spent` is the larger of the counters read from the store (for the current period) and the
//! spend settled here, so usage settled but not yet flushed by the recorder is never forgotten,
//! and usage the store already holds is never counted twice.
//!
//! Two modes. In-process (the default), the state above lives in this gateway. With a
//! [`RedisLimits`] backend ([`KeyLimits::with_redis`], `server.redis`), the same checks run as
//! one Lua script on the Redis server, so they hold across every gateway sharing that Redis and
//! prefix; when Redis cannot answer, the request is decided in process instead (see
//! [`redis`] for the failure policy). Requests whose key and team have no limits never touch
//! Redis.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use llmux_core::resilience::{LimitConfig, Limiter, Reservation};
use tokio::time::Instant;

use crate::store::{KeyRecord, TeamRecord};

pub mod period;
pub mod redis;

pub use self::period::{BudgetCalendar, BudgetNow, BudgetPeriod, Clock, ManualClock, SystemClock};
pub use self::redis::{RedisLimits, RedisSetupError};

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LimitError {
    /// The key's requests or tokens per minute are used up; retry after the given time.
    #[error("rate limit of this key reached (requests or tokens per minute); retry after {} s", retry_after.as_secs().max(1))]
    RateLimited {
        /// When the request would fit.
        retry_after: Duration,
    },
    /// The key's token or cost budget cannot cover this request.
    #[error("the budget of this key is exhausted")]
    BudgetExhausted,
    /// The request alone needs more tokens than the key's tokens-per-minute limit; it can never
    /// be admitted (a client error, not a rate limit).
    #[error("the request needs about {needed} tokens, more than this key's limit of {limit} tokens per minute")]
    TooLarge {
        /// Estimated tokens of the request.
        needed: u64,
        /// The key's TPM.
        limit: u64,
    },
    /// The requests or tokens per minute of the key's team are used up.
    #[error("rate limit of this key's team reached (requests or tokens per minute); retry after {} s", retry_after.as_secs().max(1))]
    TeamRateLimited {
        /// When the request would fit.
        retry_after: Duration,
    },
    /// The team's token or cost budget cannot cover this request.
    #[error("the budget of this key's team is exhausted")]
    TeamBudgetExhausted,
    /// The request alone needs more tokens than the team's tokens-per-minute limit.
    #[error("the request needs about {needed} tokens, more than the team's limit of {limit} tokens per minute")]
    TeamTooLarge {
        /// Estimated tokens of the request.
        needed: u64,
        /// The team's TPM.
        limit: u64,
    },
}

/// Whose limits: a key's own, or its team's (shared by all its keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ScopeId {
    /// A virtual key.
    Key(i64),
    /// A team.
    Team(i64),
}

impl ScopeId {
    fn budget_exhausted(self) -> LimitError {
        match self {
            ScopeId::Key(_) => LimitError::BudgetExhausted,
            ScopeId::Team(_) => LimitError::TeamBudgetExhausted,
        }
    }

    fn rate_limited(self, retry_after: Duration) -> LimitError {
        match self {
            ScopeId::Key(_) => LimitError::RateLimited { retry_after },
            ScopeId::Team(_) => LimitError::TeamRateLimited { retry_after },
        }
    }
}

/// The limits of one key or team for one admission, with its spend as the store knows it for
/// the current period.
#[derive(Debug, Clone)]
pub(crate) struct Scope {
    pub(crate) id: ScopeId,
    pub(crate) rpm: Option<u32>,
    pub(crate) tpm: Option<u64>,
    pub(crate) budget_tokens: Option<u64>,
    pub(crate) budget_cost: Option<f64>,
    pub(crate) period: BudgetPeriod,
    /// The current period's label (`""` without a period).
    pub(crate) label: String,
    /// The store's spend for `label`.
    pub(crate) store_spent: (u64, f64),
}

impl Scope {
    fn of_key(k: &KeyRecord, label: String) -> Scope {
        Scope {
            id: ScopeId::Key(k.id),
            rpm: k.rpm,
            tpm: k.tpm,
            budget_tokens: k.budget_tokens,
            budget_cost: k.budget_cost,
            period: k.budget_period,
            store_spent: k.budget_spend(&label),
            label,
        }
    }

    fn of_team(t: &TeamRecord, label: String) -> Scope {
        Scope {
            id: ScopeId::Team(t.id),
            rpm: t.rpm,
            tpm: t.tpm,
            budget_tokens: t.budget_tokens,
            budget_cost: t.budget_cost,
            period: t.budget_period,
            store_spent: t.budget_spend(&label),
            label,
        }
    }

    pub(crate) fn has_rates(&self) -> bool {
        self.rpm.is_some() || self.tpm.is_some()
    }

    pub(crate) fn has_budgets(&self) -> bool {
        self.budget_tokens.is_some() || self.budget_cost.is_some()
    }

    /// Whether the budgets of this scope leave room for `tokens` and `cost` after `spent` and
    /// `reserved`.
    fn budget_fits(&self, spent: (u64, f64), reserved: (u64, f64), tokens: u64, cost: f64) -> bool {
        if let Some(budget) = self.budget_tokens {
            let committed = spent.0.saturating_add(reserved.0);
            if committed.saturating_add(tokens) > budget {
                return false;
            }
        }
        if let Some(budget) = self.budget_cost {
            let committed = spent.1 + reserved.1;
            let over = if cost > 0.0 {
                committed + cost > budget
            } else {
                committed >= budget
            };
            if over {
                return false;
            }
        }
        true
    }
}

#[derive(Debug)]
struct ScopeState {
    config: LimitConfig,
    limiter: Option<Arc<Limiter>>,
    /// The period `spent_*` count (`""`: lifetime).
    period: String,
    spent_tokens: u64,
    spent_cost: f64,
    reserved_tokens: u64,
    reserved_cost: f64,
}

impl ScopeState {
    /// Moves to the period labelled `label`: the spend of another period no longer counts.
    fn enter(&mut self, label: &str) {
        if self.period != label {
            label.clone_into(&mut self.period);
            self.spent_tokens = 0;
            self.spent_cost = 0.0;
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    scopes: Mutex<HashMap<ScopeId, ScopeState>>,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, HashMap<ScopeId, ScopeState>> {
        self.scopes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Releases a reservation; with `actual`, counts it as spent in the period `actual.2`.
    fn release(&self, id: ScopeId, tokens: u64, cost: f64, actual: Option<(u64, f64, &str)>) {
        let mut scopes = self.lock();
        if let Some(s) = scopes.get_mut(&id) {
            s.reserved_tokens = s.reserved_tokens.saturating_sub(tokens);
            s.reserved_cost = (s.reserved_cost - cost).max(0.0);
            if let Some((t, c, label)) = actual {
                s.enter(label);
                s.spent_tokens = s.spent_tokens.saturating_add(t);
                s.spent_cost += c;
            }
        }
    }
}

/// Limits of all keys and teams. Share it with `Arc` (or clone: clones share state).
#[derive(Debug, Clone)]
pub struct KeyLimits {
    inner: Arc<Inner>,
    cost_per_token: f64,
    shared: Option<Arc<redis::Shared>>,
    calendar: Arc<BudgetCalendar>,
    clock: Arc<dyn Clock>,
}

impl Default for KeyLimits {
    fn default() -> Self {
        KeyLimits {
            inner: Arc::default(),
            cost_per_token: 0.0,
            shared: None,
            calendar: Arc::new(BudgetCalendar::utc()),
            clock: Arc::new(SystemClock),
        }
    }
}

/// An admitted request. Settle it with the actual usage; dropping it unsettled releases the
/// budget reservations without spending (the RPM/TPM slots stay until they age out).
#[derive(Debug)]
pub struct Admission {
    tokens: u64,
    cost: f64,
    settled: bool,
    ticket: Ticket,
}

/// Where an admission was made.
#[derive(Debug)]
enum Ticket {
    /// In this process: each scope with its period kind and its RPM/TPM reservation.
    Local {
        inner: Arc<Inner>,
        calendar: Arc<BudgetCalendar>,
        clock: Arc<dyn Clock>,
        scopes: Vec<(ScopeId, BudgetPeriod, Option<Reservation>)>,
    },
    /// In Redis, shared with other gateways.
    Shared(redis::Ticket),
}

/// A key's spend and reservations as the shared backend holds them
/// ([`KeyLimits::shared_usage`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KeyUsage {
    /// Tokens spent (the store's counter or the settled spend, whichever is larger).
    pub spent_tokens: u64,
    /// Cost spent.
    pub spent_cost: f64,
    /// Tokens reserved by requests in flight.
    pub reserved_tokens: u64,
    /// Cost reserved by requests in flight.
    pub reserved_cost: f64,
    /// Tokens counted in the TPM window.
    pub window_tokens: u64,
}

impl Admission {
    /// Tokens reserved at admission.
    pub fn reserved_tokens(&self) -> u64 {
        self.tokens
    }

    /// Cost reserved at admission.
    pub fn reserved_cost(&self) -> f64 {
        self.cost
    }

    /// True when Redis made this admission (false: this process did, including as the fallback
    /// while Redis is unavailable).
    pub fn is_shared(&self) -> bool {
        matches!(self.ticket, Ticket::Shared(_))
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        match &self.ticket {
            Ticket::Local { inner, scopes, .. } => {
                for (id, _, _) in scopes {
                    inner.release(*id, self.tokens, self.cost, None);
                }
            }
            Ticket::Shared(t) => t.release((self.tokens, self.cost)),
        }
    }
}

/// A cost as the limits use it: finite and not negative.
fn sane_cost(cost: f64) -> f64 {
    if cost.is_finite() {
        cost.max(0.0)
    } else {
        0.0
    }
}

impl KeyLimits {
    /// Limits with no cost estimate per token (see the module docs for cost budgets).
    pub fn new() -> Self {
        Self::default()
    }

    /// Limits that reserve `estimated_tokens × cost_per_token` against cost budgets (use
    /// [`crate::usage::PriceTable::max_per_token`] for a conservative value).
    pub fn with_cost_per_token(cost_per_token: f64) -> Self {
        KeyLimits {
            cost_per_token: sane_cost(cost_per_token),
            ..KeyLimits::default()
        }
    }

    /// The same limits kept in Redis, shared with every gateway using the same Redis and
    /// prefix (admissions become one round trip; see [`redis`] for what happens when Redis
    /// fails).
    pub fn with_redis(mut self, backend: RedisLimits) -> Self {
        self.shared = Some(backend.shared);
        self
    }

    /// Budget periods in `calendar`'s time zone (UTC by default).
    pub fn with_calendar(mut self, calendar: BudgetCalendar) -> Self {
        self.calendar = Arc::new(calendar);
        self
    }

    /// Reads the time that decides budget periods from `clock` (the system clock by default).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The clock budget periods are decided by.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The calendar of budget periods.
    pub fn calendar(&self) -> &BudgetCalendar {
        &self.calendar
    }

    /// Which backend decides admissions now: `local` (no Redis configured), `redis`, or
    /// `redis_unavailable` (Redis failed repeatedly; this process decides until it answers).
    pub fn backend(&self) -> &'static str {
        self.shared.as_ref().map_or("local", |s| s.state())
    }

    /// Admits a request estimated at `estimated_tokens` (prompt + output reserve), reserving
    /// its tokens and estimated cost on the key and on its team
    /// ([`KeyRecord::team_record`]). With Redis this is one round trip.
    pub async fn admit(
        &self,
        key: &KeyRecord,
        estimated_tokens: u64,
    ) -> Result<Admission, LimitError> {
        let cost = estimated_tokens as f64 * self.cost_per_token;
        self.admit_with_cost(key, estimated_tokens, cost).await
    }

    /// The scopes of a request of `key` now: the key's, then its team's.
    fn scopes(&self, key: &KeyRecord) -> Vec<Scope> {
        let now = self.clock.now_ms();
        let mut scopes = Vec::with_capacity(2);
        scopes.push(Scope::of_key(
            key,
            self.calendar.label(key.budget_period, now),
        ));
        if let Some(team) = &key.team_record {
            scopes.push(Scope::of_team(
                team,
                self.calendar.label(team.budget_period, now),
            ));
        }
        scopes
    }

    /// Admits a request with an explicit cost estimate (for example from the model's price).
    pub async fn admit_with_cost(
        &self,
        key: &KeyRecord,
        estimated_tokens: u64,
        estimated_cost: f64,
    ) -> Result<Admission, LimitError> {
        let estimated_cost = sane_cost(estimated_cost);
        let scopes = self.scopes(key);
        for s in &scopes {
            if let Some(limit) = s.tpm {
                if estimated_tokens > limit {
                    return Err(match s.id {
                        ScopeId::Key(_) => LimitError::TooLarge {
                            needed: estimated_tokens,
                            limit,
                        },
                        ScopeId::Team(_) => LimitError::TeamTooLarge {
                            needed: estimated_tokens,
                            limit,
                        },
                    });
                }
            }
        }
        let limited = scopes.iter().any(|s| s.has_rates() || s.has_budgets());
        if let (Some(shared), true) = (&self.shared, limited) {
            if let Some(decision) = shared
                .admit(&scopes, estimated_tokens, estimated_cost)
                .await
            {
                return decision.map(|t| Admission {
                    tokens: estimated_tokens,
                    cost: estimated_cost,
                    settled: false,
                    ticket: Ticket::Shared(t),
                });
            }
        }
        self.admit_local(&scopes, estimated_tokens, estimated_cost)
    }

    /// The in-process decision: the only one without Redis, the fallback with it.
    fn admit_local(
        &self,
        scopes: &[Scope],
        estimated_tokens: u64,
        estimated_cost: f64,
    ) -> Result<Admission, LimitError> {
        let mut states = self.inner.lock();
        for s in scopes {
            let config = LimitConfig {
                rpm: s.rpm,
                tpm: s.tpm,
                wait: false,
            };
            let state = states.entry(s.id).or_insert_with(|| ScopeState {
                config,
                limiter: None,
                period: s.label.clone(),
                spent_tokens: 0,
                spent_cost: 0.0,
                reserved_tokens: 0,
                reserved_cost: 0.0,
            });
            if state.config != config {
                // The limits were edited: start a fresh window with the new limits.
                state.config = config;
                state.limiter = None;
            }
            state.enter(&s.label);
            state.spent_tokens = state.spent_tokens.max(s.store_spent.0);
            state.spent_cost = state.spent_cost.max(s.store_spent.1);
            let fits = s.budget_fits(
                (state.spent_tokens, state.spent_cost),
                (state.reserved_tokens, state.reserved_cost),
                estimated_tokens,
                estimated_cost,
            );
            if !fits {
                return Err(s.id.budget_exhausted());
            }
        }
        // Rates, scope by scope; a refusal takes back what the earlier scopes reserved (their
        // reservations are the newest in their windows: every admission holds this lock).
        let mut reservations: Vec<Option<Reservation>> = Vec::with_capacity(scopes.len());
        for s in scopes {
            let state = match states.get_mut(&s.id) {
                Some(state) if s.has_rates() => state,
                _ => {
                    reservations.push(None);
                    continue;
                }
            };
            let config = state.config;
            let limiter = state
                .limiter
                .get_or_insert_with(|| Limiter::new(config))
                .clone();
            let tokens = if config.tpm.is_some() {
                estimated_tokens
            } else {
                0
            };
            match limiter.try_admit(tokens, Instant::now()) {
                Ok(r) => reservations.push(Some(r)),
                Err(retry_after) => {
                    for r in reservations.into_iter().flatten() {
                        r.cancel();
                    }
                    return Err(s.id.rate_limited(retry_after));
                }
            }
        }
        let mut held = Vec::with_capacity(scopes.len());
        for (s, r) in scopes.iter().zip(reservations) {
            if let Some(state) = states.get_mut(&s.id) {
                state.reserved_tokens = state.reserved_tokens.saturating_add(estimated_tokens);
                state.reserved_cost += estimated_cost;
            }
            held.push((s.id, s.period, r));
        }
        Ok(Admission {
            tokens: estimated_tokens,
            cost: estimated_cost,
            settled: false,
            ticket: Ticket::Local {
                inner: self.inner.clone(),
                calendar: self.calendar.clone(),
                clock: self.clock.clone(),
                scopes: held,
            },
        })
    }

    /// Replaces the admission's reservations by the actual usage: the TPM windows count the
    /// actual tokens, and the budgets count them as spent in the period current now. With
    /// Redis the update is sent from a spawned task (the caller never waits);
    /// [`KeyLimits::drain`] waits for those in flight.
    pub fn settle(&self, mut adm: Admission, actual_tokens: u64, actual_cost: f64) {
        adm.settled = true;
        let cost = sane_cost(actual_cost);
        let est = (adm.tokens, adm.cost);
        match &mut adm.ticket {
            Ticket::Local {
                inner,
                calendar,
                clock,
                scopes,
            } => {
                let now = clock.now_ms();
                for (id, period, reservation) in scopes.iter_mut() {
                    if let Some(r) = reservation.take() {
                        r.settle(actual_tokens);
                    }
                    let label = calendar.label(*period, now);
                    inner.release(*id, est.0, est.1, Some((actual_tokens, cost, &label)));
                }
            }
            Ticket::Shared(t) => {
                let now = self.clock.now_ms();
                let labels: Vec<String> =
                    t.periods().map(|p| self.calendar.label(p, now)).collect();
                t.settle(est, (actual_tokens, cost), labels);
            }
        }
    }

    /// Waits until every settle and release sent to Redis has finished (at once without Redis).
    /// Shutdown calls it so settled usage reaches the shared counters before the process ends.
    pub async fn drain(&self) {
        if let Some(s) = &self.shared {
            s.drain().await;
        }
    }

    /// A key's spend and reservations as Redis holds them, for a key outside any team with a
    /// lifetime budget; `None` without Redis or when it cannot be read. Expired reservations
    /// still count until the key's next admission.
    pub async fn shared_usage(&self, key_id: i64) -> Option<KeyUsage> {
        match &self.shared {
            Some(s) => s.usage(key_id).await,
            None => None,
        }
    }

    /// Tokens and cost reserved by in-flight requests of a key admitted in this process.
    pub fn in_flight(&self, key_id: i64) -> (u64, f64) {
        self.reserved(ScopeId::Key(key_id))
    }

    /// Tokens and cost reserved by in-flight requests of a team admitted in this process.
    pub fn team_in_flight(&self, team_id: i64) -> (u64, f64) {
        self.reserved(ScopeId::Team(team_id))
    }

    fn reserved(&self, id: ScopeId) -> (u64, f64) {
        self.inner
            .lock()
            .get(&id)
            .map_or((0, 0.0), |s| (s.reserved_tokens, s.reserved_cost))
    }

    /// Spend of a key in its current period as known in this process (store counters or
    /// usage settled here, whichever is larger).
    pub fn spent(&self, key_id: i64) -> (u64, f64) {
        self.spent_of(ScopeId::Key(key_id))
    }

    /// Spend of a team in its current period as known in this process.
    pub fn team_spent(&self, team_id: i64) -> (u64, f64) {
        self.spent_of(ScopeId::Team(team_id))
    }

    fn spent_of(&self, id: ScopeId) -> (u64, f64) {
        self.inner
            .lock()
            .get(&id)
            .map_or((0, 0.0), |s| (s.spent_tokens, s.spent_cost))
    }
}
