//! Per-key limits that hold under concurrency: requests and tokens per minute (a core
//! [`Limiter`] per key, sliding 60 s window, reserve on admit) and lifetime token and cost
//! budgets (reserved on admit, trued up on settle). Bounds are in `docs/limits.md`.
//!
//! Every admission for a key happens under one lock, so checking and reserving are atomic:
//! - RPM: at most `rpm` admissions in any 60 s window, exactly.
//! - TPM: reserved tokens in any window never exceed `tpm`; actual tokens exceed it only by
//!   what requests used beyond their estimate (the estimate includes `max_tokens`, so only the
//!   prompt estimate can be short).
//! - Token budget: a request is admitted only if `spent + in-flight reservations + estimate ≤
//!   budget`; spend can pass the budget only by the sum over in-flight requests of
//!   `actual − estimate` where positive.
//! - Cost budget: the same, with the estimate priced at a conservative per-token cost
//!   ([`KeyLimits::with_cost_per_token`], or an explicit cost in [`KeyLimits::admit_with_cost`]).
//!   Without a cost estimate a request is admitted while `spent + reserved < budget`.
//!
//! `spent` is the larger of the key's counters read from the store and the spend settled
//! here, so usage settled but not yet flushed by the recorder is never forgotten, and usage
//! the store already holds is never counted twice.
//!
//! Two modes. In-process (the default), the state above lives in this gateway. With a
//! [`RedisLimits`] backend ([`KeyLimits::with_redis`], `server.redis`), the same checks run as
//! one Lua script on the Redis server, so they hold across every gateway sharing that Redis and
//! prefix; when Redis cannot answer, the request is decided in process instead (see
//! [`redis`] for the failure policy). Keys with no limits never touch Redis.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use llmux_core::resilience::{LimitConfig, Limiter, Reservation};
use tokio::time::Instant;

use crate::store::KeyRecord;

pub mod redis;

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
}

#[derive(Debug)]
struct KeyState {
    config: LimitConfig,
    limiter: Option<Arc<Limiter>>,
    spent_tokens: u64,
    spent_cost: f64,
    reserved_tokens: u64,
    reserved_cost: f64,
}

#[derive(Debug, Default)]
struct Inner {
    keys: Mutex<HashMap<i64, KeyState>>,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, HashMap<i64, KeyState>> {
        self.keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn release(&self, key_id: i64, tokens: u64, cost: f64, actual: Option<(u64, f64)>) {
        let mut keys = self.lock();
        if let Some(s) = keys.get_mut(&key_id) {
            s.reserved_tokens = s.reserved_tokens.saturating_sub(tokens);
            s.reserved_cost = (s.reserved_cost - cost).max(0.0);
            if let Some((t, c)) = actual {
                s.spent_tokens = s.spent_tokens.saturating_add(t);
                s.spent_cost += c;
            }
        }
    }
}

/// Limits of all keys. Share it with `Arc` (or clone: clones share state).
#[derive(Debug, Clone, Default)]
pub struct KeyLimits {
    inner: Arc<Inner>,
    cost_per_token: f64,
    shared: Option<Arc<redis::Shared>>,
}

/// An admitted request. Settle it with the actual usage; dropping it unsettled releases the
/// budget reservation without spending (the RPM/TPM slot stays until it ages out).
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
    /// In this process.
    Local {
        inner: Arc<Inner>,
        key_id: i64,
        reservation: Option<Reservation>,
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
            Ticket::Local { inner, key_id, .. } => {
                inner.release(*key_id, self.tokens, self.cost, None);
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
            inner: Arc::default(),
            cost_per_token: sane_cost(cost_per_token),
            shared: None,
        }
    }

    /// The same limits kept in Redis, shared with every gateway using the same Redis and
    /// prefix (admissions become one round trip; see [`redis`] for what happens when Redis
    /// fails).
    pub fn with_redis(mut self, backend: RedisLimits) -> Self {
        self.shared = Some(backend.shared);
        self
    }

    /// Which backend decides admissions now: `local` (no Redis configured), `redis`, or
    /// `redis_unavailable` (Redis failed repeatedly; this process decides until it answers).
    pub fn backend(&self) -> &'static str {
        self.shared.as_ref().map_or("local", |s| s.state())
    }

    /// Admits a request estimated at `estimated_tokens` (prompt + output reserve), reserving
    /// its tokens and estimated cost. With Redis this is one round trip.
    pub async fn admit(
        &self,
        key: &KeyRecord,
        estimated_tokens: u64,
    ) -> Result<Admission, LimitError> {
        let cost = estimated_tokens as f64 * self.cost_per_token;
        self.admit_with_cost(key, estimated_tokens, cost).await
    }

    /// Admits a request with an explicit cost estimate (for example from the model's price).
    pub async fn admit_with_cost(
        &self,
        key: &KeyRecord,
        estimated_tokens: u64,
        estimated_cost: f64,
    ) -> Result<Admission, LimitError> {
        let estimated_cost = sane_cost(estimated_cost);
        if let Some(limit) = key.tpm {
            if estimated_tokens > limit {
                return Err(LimitError::TooLarge {
                    needed: estimated_tokens,
                    limit,
                });
            }
        }
        let limited = key.rpm.is_some()
            || key.tpm.is_some()
            || key.budget_tokens.is_some()
            || key.budget_cost.is_some();
        if let (Some(shared), true) = (&self.shared, limited) {
            if let Some(decision) = shared.admit(key, estimated_tokens, estimated_cost).await {
                return decision.map(|t| Admission {
                    tokens: estimated_tokens,
                    cost: estimated_cost,
                    settled: false,
                    ticket: Ticket::Shared(t),
                });
            }
        }
        self.admit_local(key, estimated_tokens, estimated_cost)
    }

    /// The in-process decision: the only one without Redis, the fallback with it.
    fn admit_local(
        &self,
        key: &KeyRecord,
        estimated_tokens: u64,
        estimated_cost: f64,
    ) -> Result<Admission, LimitError> {
        let config = LimitConfig {
            rpm: key.rpm,
            tpm: key.tpm,
            wait: false,
        };
        let mut keys = self.inner.lock();
        let state = keys.entry(key.id).or_insert_with(|| KeyState {
            config,
            limiter: None,
            spent_tokens: 0,
            spent_cost: 0.0,
            reserved_tokens: 0,
            reserved_cost: 0.0,
        });
        if state.config != config {
            // The key's limits were edited: start a fresh window with the new limits.
            state.config = config;
            state.limiter = None;
        }
        state.spent_tokens = state.spent_tokens.max(key.spent_tokens);
        state.spent_cost = state.spent_cost.max(key.spent_cost);

        if let Some(budget) = key.budget_tokens {
            let committed = state.spent_tokens.saturating_add(state.reserved_tokens);
            if committed.saturating_add(estimated_tokens) > budget {
                return Err(LimitError::BudgetExhausted);
            }
        }
        if let Some(budget) = key.budget_cost {
            let committed = state.spent_cost + state.reserved_cost;
            let over = if estimated_cost > 0.0 {
                committed + estimated_cost > budget
            } else {
                committed >= budget
            };
            if over {
                return Err(LimitError::BudgetExhausted);
            }
        }
        let reservation = if config.rpm.is_some() || config.tpm.is_some() {
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
                Ok(r) => Some(r),
                Err(retry_after) => return Err(LimitError::RateLimited { retry_after }),
            }
        } else {
            None
        };
        state.reserved_tokens = state.reserved_tokens.saturating_add(estimated_tokens);
        state.reserved_cost += estimated_cost;
        Ok(Admission {
            tokens: estimated_tokens,
            cost: estimated_cost,
            settled: false,
            ticket: Ticket::Local {
                inner: self.inner.clone(),
                key_id: key.id,
                reservation,
            },
        })
    }

    /// Replaces the admission's reservations by the actual usage: the TPM window counts the
    /// actual tokens, and the budgets count them as spent. With Redis the update is sent from a
    /// spawned task (the caller never waits); [`KeyLimits::drain`] waits for those in flight.
    pub fn settle(&self, mut adm: Admission, actual_tokens: u64, actual_cost: f64) {
        adm.settled = true;
        let cost = sane_cost(actual_cost);
        let est = (adm.tokens, adm.cost);
        match &mut adm.ticket {
            Ticket::Local {
                inner,
                key_id,
                reservation,
            } => {
                if let Some(r) = reservation.take() {
                    r.settle(actual_tokens);
                }
                inner.release(*key_id, est.0, est.1, Some((actual_tokens, cost)));
            }
            Ticket::Shared(t) => t.settle(est, (actual_tokens, cost)),
        }
    }

    /// Waits until every settle and release sent to Redis has finished (at once without Redis).
    /// Shutdown calls it so settled usage reaches the shared counters before the process ends.
    pub async fn drain(&self) {
        if let Some(s) = &self.shared {
            s.drain().await;
        }
    }

    /// A key's spend and reservations as Redis holds them; `None` without Redis or when it
    /// cannot be read. Expired reservations still count until the key's next admission.
    pub async fn shared_usage(&self, key_id: i64) -> Option<KeyUsage> {
        match &self.shared {
            Some(s) => s.usage(key_id).await,
            None => None,
        }
    }

    /// Tokens and cost reserved by in-flight requests of a key admitted in this process.
    pub fn in_flight(&self, key_id: i64) -> (u64, f64) {
        self.inner
            .lock()
            .get(&key_id)
            .map_or((0, 0.0), |s| (s.reserved_tokens, s.reserved_cost))
    }

    /// Spend of a key as known in this process (store counters or usage settled here,
    /// whichever is larger).
    pub fn spent(&self, key_id: i64) -> (u64, f64) {
        self.inner
            .lock()
            .get(&key_id)
            .map_or((0, 0.0), |s| (s.spent_tokens, s.spent_cost))
    }
}
