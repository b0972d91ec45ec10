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

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use llmux_core::resilience::{LimitConfig, Limiter, Reservation};
use tokio::time::Instant;

use crate::store::KeyRecord;

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
}

/// An admitted request. Settle it with the actual usage; dropping it unsettled releases the
/// budget reservation without spending (the RPM/TPM slot stays until it ages out).
#[derive(Debug)]
pub struct Admission {
    inner: Arc<Inner>,
    key_id: i64,
    reservation: Option<Reservation>,
    tokens: u64,
    cost: f64,
    settled: bool,
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
}

impl Drop for Admission {
    fn drop(&mut self) {
        if !self.settled {
            self.inner
                .release(self.key_id, self.tokens, self.cost, None);
        }
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
            cost_per_token: if cost_per_token.is_finite() {
                cost_per_token.max(0.0)
            } else {
                0.0
            },
        }
    }

    /// Admits a request estimated at `estimated_tokens` (prompt + output reserve), reserving
    /// its tokens and estimated cost.
    pub fn admit(&self, key: &KeyRecord, estimated_tokens: u64) -> Result<Admission, LimitError> {
        let cost = estimated_tokens as f64 * self.cost_per_token;
        self.admit_with_cost(key, estimated_tokens, cost)
    }

    /// Admits a request with an explicit cost estimate (for example from the model's price).
    pub fn admit_with_cost(
        &self,
        key: &KeyRecord,
        estimated_tokens: u64,
        estimated_cost: f64,
    ) -> Result<Admission, LimitError> {
        let estimated_cost = if estimated_cost.is_finite() {
            estimated_cost.max(0.0)
        } else {
            0.0
        };
        let config = LimitConfig {
            rpm: key.rpm,
            tpm: key.tpm,
            wait: false,
        };
        if let Some(limit) = key.tpm {
            if estimated_tokens > limit {
                return Err(LimitError::TooLarge {
                    needed: estimated_tokens,
                    limit,
                });
            }
        }
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
            inner: self.inner.clone(),
            key_id: key.id,
            reservation,
            tokens: estimated_tokens,
            cost: estimated_cost,
            settled: false,
        })
    }

    /// Replaces the admission's reservations by the actual usage: the TPM window counts the
    /// actual tokens, and the budgets count them as spent.
    pub fn settle(&self, mut adm: Admission, actual_tokens: u64, actual_cost: f64) {
        adm.settled = true;
        if let Some(r) = adm.reservation.take() {
            r.settle(actual_tokens);
        }
        let cost = if actual_cost.is_finite() {
            actual_cost.max(0.0)
        } else {
            0.0
        };
        adm.inner.release(
            adm.key_id,
            adm.tokens,
            adm.cost,
            Some((actual_tokens, cost)),
        );
    }

    /// Tokens and cost reserved by in-flight requests of a key.
    pub fn in_flight(&self, key_id: i64) -> (u64, f64) {
        self.inner
            .lock()
            .get(&key_id)
            .map_or((0, 0.0), |s| (s.reserved_tokens, s.reserved_cost))
    }

    /// Spend of a key as known here (store counters or settled usage, whichever is larger).
    pub fn spent(&self, key_id: i64) -> (u64, f64) {
        self.inner
            .lock()
            .get(&key_id)
            .map_or((0, 0.0), |s| (s.spent_tokens, s.spent_cost))
    }
}
