//! Circuit breaker per upstream: closed → open after consecutive failures or a failure rate
//! over a window → half-open probes after a cool-down → closed on a successful probe.
//! A pure state machine over instants the caller passes in; the lock is never held across an await.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::retry::humantime_serde;
use crate::error::{Error, ErrorKind};

/// When a breaker opens and how it recovers. Defaults: 5 consecutive failures, or ≥ 50 %
/// failures among ≥ 20 calls in 60 s; 30 s cool-down; 1 probe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker (0 disables this trigger).
    pub consecutive_failures: u32,
    /// Failure ratio over the window that opens it (0 or above 1 disables this trigger).
    pub failure_rate: f64,
    /// Calls needed in the window before the ratio counts.
    pub min_calls: u32,
    /// The window for the ratio.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// How long it stays open before letting probes through.
    #[serde(with = "humantime_serde")]
    pub cool_down: Duration,
    /// Probes allowed at once while half-open.
    pub half_open_probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            consecutive_failures: 5,
            failure_rate: 0.5,
            min_calls: 20,
            window: Duration::from_secs(60),
            cool_down: Duration::from_secs(30),
            half_open_probes: 1,
        }
    }
}

/// The observable state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Calls flow.
    Closed,
    /// Calls fail fast until the cool-down ends.
    Open,
    /// A limited number of probes may go through.
    HalfOpen,
}

impl BreakerState {
    /// `closed`, `open`, `half_open`: for metrics and health views.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug)]
struct Inner {
    state: BreakerState,
    opened_at: Option<Instant>,
    consecutive: u32,
    calls: VecDeque<(Instant, bool)>,
    /// Failures among `calls`, kept in step so recording is O(1) amortised.
    failed: u32,
    probes: u32,
}

/// One upstream's breaker. Share it with `Arc`.
#[derive(Debug)]
pub struct Breaker {
    name: String,
    config: BreakerConfig,
    inner: Mutex<Inner>,
}

/// Whether an error says the upstream is unhealthy (client mistakes and rate limits do not).
pub fn counts_as_failure(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::UpstreamServer
            | ErrorKind::Timeout
            | ErrorKind::Connect
            | ErrorKind::UpstreamProtocol
    )
}

/// Permission for one call; report the outcome, or drop it to release a probe slot unjudged.
#[derive(Debug)]
pub struct Permit {
    breaker: Arc<Breaker>,
    probe: bool,
    done: bool,
}

impl Permit {
    /// The call succeeded.
    pub fn success(mut self, now: Instant) {
        self.done = true;
        self.breaker.record(now, true, self.probe);
    }

    /// The call failed with `err`; only upstream-health failures count.
    pub fn failure(mut self, now: Instant, err: &Error) {
        self.done = true;
        let failed = counts_as_failure(err.kind());
        self.breaker.record(now, !failed, self.probe);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.done && self.probe {
            let mut g = self.breaker.lock();
            g.probes = g.probes.saturating_sub(1);
        }
    }
}

impl Breaker {
    /// A closed breaker named `name` (used in its error message and metrics).
    pub fn new(name: impl Into<String>, config: BreakerConfig) -> Arc<Self> {
        Arc::new(Breaker {
            name: name.into(),
            config,
            inner: Mutex::new(Inner {
                state: BreakerState::Closed,
                opened_at: None,
                consecutive: 0,
                calls: VecDeque::new(),
                failed: 0,
                probes: 0,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The name given at creation.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The state at `now` (an open breaker whose cool-down ended reads half-open).
    pub fn state(&self, now: Instant) -> BreakerState {
        let g = self.lock();
        match (g.state, g.opened_at) {
            (BreakerState::Open, Some(at)) if now >= at + self.config.cool_down => {
                BreakerState::HalfOpen
            }
            (s, _) => s,
        }
    }

    /// Asks to make a call at `now`: a permit, or a fast `CircuitOpen` error.
    pub fn acquire(self: &Arc<Self>, now: Instant) -> Result<Permit, Error> {
        let mut g = self.lock();
        if g.state == BreakerState::Open {
            let at = g.opened_at.unwrap_or(now);
            let reopen = at + self.config.cool_down;
            if now < reopen {
                return Err(Error::new(
                    ErrorKind::CircuitOpen,
                    format!(
                        "circuit breaker for {} is open after repeated upstream failures",
                        self.name
                    ),
                )
                .with_retry_after(Some(reopen - now)));
            }
            g.state = BreakerState::HalfOpen;
            g.probes = 0;
        }
        if g.state == BreakerState::HalfOpen {
            if g.probes >= self.config.half_open_probes.max(1) {
                return Err(Error::new(
                    ErrorKind::CircuitOpen,
                    format!(
                        "circuit breaker for {} is half-open and already probing",
                        self.name
                    ),
                ));
            }
            g.probes += 1;
            return Ok(Permit {
                breaker: self.clone(),
                probe: true,
                done: false,
            });
        }
        Ok(Permit {
            breaker: self.clone(),
            probe: false,
            done: false,
        })
    }

    fn record(&self, now: Instant, ok: bool, probe: bool) {
        let cfg = &self.config;
        let mut g = self.lock();
        if probe {
            g.probes = g.probes.saturating_sub(1);
        }
        match g.state {
            BreakerState::HalfOpen if probe => {
                if ok {
                    g.state = BreakerState::Closed;
                    g.opened_at = None;
                    g.consecutive = 0;
                    g.calls.clear();
                    g.failed = 0;
                } else {
                    g.state = BreakerState::Open;
                    g.opened_at = Some(now);
                }
                return;
            }
            BreakerState::Open | BreakerState::HalfOpen => return,
            BreakerState::Closed => {}
        }
        g.consecutive = if ok { 0 } else { g.consecutive + 1 };
        g.calls.push_back((now, ok));
        if !ok {
            g.failed += 1;
        }
        while g.calls.front().is_some_and(|(t, _)| *t + cfg.window <= now) {
            if let Some((_, was_ok)) = g.calls.pop_front() {
                if !was_ok {
                    g.failed = g.failed.saturating_sub(1);
                }
            }
        }
        let total = g.calls.len() as u32;
        let failed = g.failed;
        let by_count = cfg.consecutive_failures > 0 && g.consecutive >= cfg.consecutive_failures;
        let by_rate = cfg.failure_rate > 0.0
            && cfg.failure_rate <= 1.0
            && total >= cfg.min_calls.max(1)
            && f64::from(failed) / f64::from(total) >= cfg.failure_rate;
        if by_count || by_rate {
            g.state = BreakerState::Open;
            g.opened_at = Some(now);
            tracing::warn!(breaker = %self.name, consecutive = g.consecutive, failed, total, "circuit breaker opened");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fail() -> Error {
        Error::new(ErrorKind::UpstreamServer, "x")
    }

    #[test]
    fn opens_fails_fast_half_opens_and_closes() {
        let t0 = Instant::now();
        let b = Breaker::new(
            "openai@test",
            BreakerConfig {
                consecutive_failures: 3,
                ..Default::default()
            },
        );
        for i in 0..3 {
            b.acquire(t0)
                .unwrap()
                .failure(t0 + Duration::from_secs(i), &fail());
        }
        assert_eq!(b.state(t0), BreakerState::Open);
        let err = b.acquire(t0 + Duration::from_secs(10)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::CircuitOpen);
        assert!(err.retry_after().unwrap() <= Duration::from_secs(30));
        let t1 = t0 + Duration::from_secs(2) + Duration::from_secs(30);
        assert_eq!(b.state(t1), BreakerState::HalfOpen);
        let probe = b.acquire(t1).unwrap();
        assert_eq!(
            b.acquire(t1).unwrap_err().kind(),
            ErrorKind::CircuitOpen,
            "one probe at a time"
        );
        probe.success(t1);
        assert_eq!(b.state(t1), BreakerState::Closed);
    }

    #[test]
    fn client_errors_do_not_trip_it_and_a_dropped_probe_frees_its_slot() {
        let t0 = Instant::now();
        let b = Breaker::new(
            "x",
            BreakerConfig {
                consecutive_failures: 2,
                ..Default::default()
            },
        );
        for _ in 0..10 {
            b.acquire(t0)
                .unwrap()
                .failure(t0, &Error::invalid_request("bad"));
        }
        assert_eq!(b.state(t0), BreakerState::Closed);
        b.acquire(t0).unwrap().failure(t0, &fail());
        b.acquire(t0).unwrap().failure(t0, &fail());
        let t1 = t0 + Duration::from_secs(31);
        drop(b.acquire(t1).unwrap());
        let p = b.acquire(t1).unwrap();
        p.failure(t1, &fail());
        assert_eq!(b.state(t1), BreakerState::Open, "a failed probe reopens");
    }

    #[test]
    fn failure_rate_opens_it() {
        let t0 = Instant::now();
        let b = Breaker::new(
            "x",
            BreakerConfig {
                consecutive_failures: 0,
                failure_rate: 0.5,
                min_calls: 10,
                ..Default::default()
            },
        );
        for i in 0..10 {
            let p = b.acquire(t0).unwrap();
            if i % 2 == 0 {
                p.failure(t0, &fail())
            } else {
                p.success(t0)
            }
        }
        assert_eq!(b.state(t0), BreakerState::Open);
    }

    proptest! {
        #[test]
        fn never_half_opens_before_its_cool_down(
            outcomes in proptest::collection::vec((any::<bool>(), 0u64..20_000), 1..200),
            cool_ms in 1u64..60_000,
        ) {
            let t0 = Instant::now();
            let cfg = BreakerConfig { consecutive_failures: 3, cool_down: Duration::from_millis(cool_ms), ..Default::default() };
            let b = Breaker::new("p", cfg);
            let mut now = t0;
            let mut opened_at: Option<Instant> = None;
            for (ok, step) in outcomes {
                now += Duration::from_millis(step);
                if let Ok(p) = b.acquire(now) {
                    if let Some(at) = opened_at {
                        prop_assert!(now >= at + Duration::from_millis(cool_ms), "admitted before the cool-down ended");
                    }
                    if ok { p.success(now) } else { p.failure(now, &fail()) }
                    // After a recorded call the breaker is open only if it opened just now.
                    opened_at = (b.state(now) == BreakerState::Open).then_some(now);
                } else {
                    prop_assert!(opened_at.is_some());
                }
            }
        }
    }
}
