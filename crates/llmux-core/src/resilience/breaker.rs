//! Circuit breaker per upstream: closed → open after consecutive failures or a failure rate
//! over a window → half-open probes after a cool-down → closed on a successful probe.
//! A rejection of the credentials (401/403) is a property of the upstream, not a transient
//! failure: it disables the breaker at once, for a long cool-down that doubles after each
//! rejected trial, until a trial call succeeds or [`Breaker::reset`] is called.
//! A pure state machine over instants the caller passes in; the lock is never held across an await.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::retry::humantime_serde;
use crate::error::{Error, ErrorKind};

/// When a breaker opens and how it recovers. Defaults: 5 consecutive failures, or ≥ 50 %
/// failures among ≥ 20 calls in 60 s; 30 s cool-down; 1 probe; a credential rejection disables
/// it for 10 min, doubling after each rejected trial up to 2 h.
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
    /// Probes allowed at once while half-open (and trials while disabled).
    pub half_open_probes: u32,
    /// How long it stays disabled after the upstream rejected the credentials (401
    /// `authentication`, 403 `permission_denied`) before one trial call goes through; doubles
    /// after each rejected trial. Zero turns this trigger off (rejections then count as nothing).
    #[serde(with = "humantime_serde")]
    pub credentials_cool_down: Duration,
    /// The longest the doubling takes `credentials_cool_down`.
    #[serde(with = "humantime_serde")]
    pub credentials_max_cool_down: Duration,
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
            credentials_cool_down: Duration::from_secs(10 * 60),
            credentials_max_cool_down: Duration::from_secs(2 * 60 * 60),
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
    /// The upstream rejected the credentials: calls fail fast with that rejection's kind, and
    /// after each (long) cool-down one trial call goes through; a successful trial or
    /// [`Breaker::reset`] closes it.
    Disabled,
}

impl BreakerState {
    /// `closed`, `open`, `half_open`, `disabled`: for metrics and health views.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
            BreakerState::Disabled => "disabled",
        }
    }
}

/// What a call's outcome says about the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The upstream answered as itself: a success, or an error about the request or the
    /// account's limits. Not counted against it.
    Healthy,
    /// The upstream is failing (5xx, timeouts, refused connections, broken protocol).
    Unhealthy,
    /// The upstream rejected the credentials.
    CredentialsRejected,
}

/// The verdict of an error kind. One exhaustive match: a new kind forces a decision.
pub fn verdict(kind: ErrorKind) -> Verdict {
    match kind {
        ErrorKind::UpstreamServer
        | ErrorKind::Timeout
        | ErrorKind::Connect
        | ErrorKind::UpstreamProtocol => Verdict::Unhealthy,
        ErrorKind::Authentication | ErrorKind::PermissionDenied => Verdict::CredentialsRejected,
        ErrorKind::InvalidRequest
        | ErrorKind::Unsupported
        | ErrorKind::NotFound
        | ErrorKind::ContextLengthExceeded
        | ErrorKind::ContentFiltered
        | ErrorKind::RateLimited
        | ErrorKind::QuotaExhausted
        | ErrorKind::CircuitOpen
        | ErrorKind::Cancelled
        | ErrorKind::Config
        | ErrorKind::Internal => Verdict::Healthy,
    }
}

/// Whether an error says the upstream is unhealthy (client mistakes and rate limits do not;
/// credential rejections have their own verdict).
pub fn counts_as_failure(kind: ErrorKind) -> bool {
    verdict(kind) == Verdict::Unhealthy
}

/// A breaker's state with the why and the when, for admin views and waiting callers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerStatus {
    /// The state (an open breaker whose cool-down ended reads half-open).
    pub state: BreakerState,
    /// Why it is open or disabled; `None` when closed.
    pub reason: Option<String>,
    /// The kind of the credential rejection that disabled it.
    pub disabled_by: Option<ErrorKind>,
    /// How long until the next probe or trial may go through; zero when one may go now,
    /// `None` when closed.
    pub retry_in: Option<Duration>,
    /// How long it has not been closed (since it first opened or was disabled).
    pub not_closed_for: Option<Duration>,
    /// How many times it has opened or been disabled (reopening after a failed probe counts).
    pub trips: u64,
}

#[derive(Debug)]
struct Inner {
    state: BreakerState,
    opened_at: Option<Instant>,
    /// The cool-down of the current open or disabled period.
    cool_down: Duration,
    /// When it left the closed state (kept through reopenings).
    outage_since: Option<Instant>,
    reason: Option<String>,
    disabled_by: Option<ErrorKind>,
    /// Trials rejected in a row while disabled (the doubling exponent).
    rejections: u32,
    trips: u64,
    consecutive: u32,
    calls: VecDeque<(Instant, bool)>,
    /// Failures among `calls`, kept in step so recording is O(1) amortised.
    failed: u32,
    probes: u32,
}

impl Inner {
    fn close(&mut self) {
        self.state = BreakerState::Closed;
        self.opened_at = None;
        self.outage_since = None;
        self.reason = None;
        self.disabled_by = None;
        self.rejections = 0;
        self.consecutive = 0;
        self.calls.clear();
        self.failed = 0;
    }

    fn trip(&mut self, state: BreakerState, now: Instant, cool_down: Duration) {
        self.state = state;
        self.opened_at = Some(now);
        self.cool_down = cool_down;
        self.outage_since.get_or_insert(now);
        self.trips += 1;
    }

    /// When the current open or disabled period lets a call through.
    fn due(&self, now: Instant) -> Instant {
        self.opened_at.unwrap_or(now) + self.cool_down
    }
}

/// One upstream's breaker. Share it with `Arc`.
#[derive(Debug)]
pub struct Breaker {
    name: String,
    config: BreakerConfig,
    inner: Mutex<Inner>,
    /// Woken when a probe or trial decides the state, or on [`Breaker::reset`].
    settled: Notify,
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
        self.breaker.record(now, Verdict::Healthy, self.probe, None);
    }

    /// The call failed with `err`: upstream-health failures count, credential rejections
    /// disable the breaker, the rest count as nothing. A rejected timestamp (clock skew) is not a
    /// credential problem and counts as a failure.
    pub fn failure(mut self, now: Instant, err: &Error) {
        self.done = true;
        let v = if err.is_clock_skew() {
            Verdict::Unhealthy
        } else {
            verdict(err.kind())
        };
        self.breaker.record(now, v, self.probe, Some(err));
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
            inner: Mutex::new(Inner {
                state: BreakerState::Closed,
                opened_at: None,
                cool_down: config.cool_down,
                outage_since: None,
                reason: None,
                disabled_by: None,
                rejections: 0,
                trips: 0,
                consecutive: 0,
                calls: VecDeque::new(),
                failed: 0,
                probes: 0,
            }),
            config,
            settled: Notify::new(),
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

    /// The configuration.
    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    /// The state at `now` (an open breaker whose cool-down ended reads half-open; a disabled
    /// one reads disabled until a trial succeeds).
    pub fn state(&self, now: Instant) -> BreakerState {
        let g = self.lock();
        match g.state {
            BreakerState::Open if now >= g.due(now) => BreakerState::HalfOpen,
            s => s,
        }
    }

    /// The state at `now` with its reason and timing.
    pub fn status(&self, now: Instant) -> BreakerStatus {
        let g = self.lock();
        let state = match g.state {
            BreakerState::Open if now >= g.due(now) => BreakerState::HalfOpen,
            s => s,
        };
        let retry_in = match g.state {
            BreakerState::Closed => None,
            BreakerState::Open | BreakerState::HalfOpen | BreakerState::Disabled => {
                Some(g.due(now).saturating_duration_since(now))
            }
        };
        BreakerStatus {
            state,
            reason: g.reason.clone(),
            disabled_by: g.disabled_by,
            retry_in,
            not_closed_for: g.outage_since.map(|t| now.saturating_duration_since(t)),
            trips: g.trips,
        }
    }

    /// True when a call at `now` would fail fast: open or disabled, and the cool-down not over.
    pub fn fails_fast(&self, now: Instant) -> bool {
        let g = self.lock();
        match g.state {
            BreakerState::Open | BreakerState::Disabled => now < g.due(now),
            BreakerState::Closed | BreakerState::HalfOpen => false,
        }
    }

    /// Closes the breaker whatever its state (an operator re-enabling an upstream).
    pub fn reset(&self) {
        let was = {
            let mut g = self.lock();
            let was = g.state;
            g.close();
            was
        };
        if was != BreakerState::Closed {
            tracing::info!(breaker = %self.name, was = was.as_str(), "circuit breaker reset");
        }
        self.settled.notify_waiters();
    }

    /// Resolves at the next decisive probe or trial outcome, or reset. Create the future before
    /// the check it should follow, so a wake-up between the two is not missed.
    pub fn settled(&self) -> tokio::sync::futures::Notified<'_> {
        self.settled.notified()
    }

    fn disabled_error(&self, g: &Inner, retry_in: Duration) -> Error {
        let kind = g.disabled_by.unwrap_or(ErrorKind::Authentication);
        let reason = g
            .reason
            .as_deref()
            .unwrap_or("the upstream rejected the credentials");
        Error::new(
            kind,
            format!(
                "{} is disabled: {reason}; the next trial call is in {} s",
                self.name,
                retry_in.as_secs_f64().ceil() as u64
            ),
        )
        .with_retry_after(Some(retry_in))
    }

    /// Asks to make a call at `now`: a permit, or a fast error (`CircuitOpen`, or the kind of
    /// the credential rejection for a disabled breaker) that sends nothing.
    pub fn acquire(self: &Arc<Self>, now: Instant) -> Result<Permit, Error> {
        let mut g = self.lock();
        match g.state {
            BreakerState::Disabled => {
                let due = g.due(now);
                if now < due {
                    return Err(self.disabled_error(&g, due - now));
                }
                if g.probes >= self.config.half_open_probes.max(1) {
                    return Err(self.disabled_error(&g, Duration::ZERO));
                }
                g.probes += 1;
                return Ok(self.permit(true));
            }
            BreakerState::Open => {
                let reopen = g.due(now);
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
            BreakerState::Closed | BreakerState::HalfOpen => {}
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
            return Ok(self.permit(true));
        }
        Ok(self.permit(false))
    }

    fn permit(self: &Arc<Self>, probe: bool) -> Permit {
        Permit {
            breaker: self.clone(),
            probe,
            done: false,
        }
    }

    fn record(&self, now: Instant, verdict: Verdict, probe: bool, err: Option<&Error>) {
        let settled = self.record_locked(now, verdict, probe, err);
        if settled {
            self.settled.notify_waiters();
        }
    }

    /// Applies one outcome; true when it decided a probe or trial.
    fn record_locked(
        &self,
        now: Instant,
        verdict: Verdict,
        probe: bool,
        err: Option<&Error>,
    ) -> bool {
        let cfg = &self.config;
        let mut g = self.lock();
        if probe {
            g.probes = g.probes.saturating_sub(1);
        }
        if verdict == Verdict::CredentialsRejected && !cfg.credentials_cool_down.is_zero() {
            // Calls admitted before it was disabled say nothing new.
            if g.state != BreakerState::Disabled || probe {
                self.disable(&mut g, now, err);
            }
            return probe;
        }
        let ok = verdict != Verdict::Unhealthy;
        match g.state {
            BreakerState::Disabled if probe => {
                if ok {
                    tracing::info!(breaker = %self.name, "a trial call succeeded; the upstream is enabled again");
                    g.close();
                } else {
                    // Not a verdict on the credentials: try again after the same cool-down.
                    g.opened_at = Some(now);
                }
                return true;
            }
            BreakerState::HalfOpen if probe => {
                if ok {
                    g.close();
                } else {
                    g.reason = Some("the probe after the cool-down failed too".to_owned());
                    let cool = cfg.cool_down;
                    g.trip(BreakerState::Open, now, cool);
                }
                return true;
            }
            BreakerState::Open | BreakerState::HalfOpen | BreakerState::Disabled => return false,
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
            g.reason = Some(if by_count {
                format!("{} consecutive upstream failures", g.consecutive)
            } else {
                format!(
                    "{failed} of the last {total} calls failed within {} s",
                    cfg.window.as_secs()
                )
            });
            g.trip(BreakerState::Open, now, cfg.cool_down);
            tracing::warn!(breaker = %self.name, consecutive = g.consecutive, failed, total, "circuit breaker opened");
        }
        false
    }

    /// Disables the breaker after a credential rejection: the first time for
    /// `credentials_cool_down`, doubling after each rejected trial.
    fn disable(&self, g: &mut Inner, now: Instant, err: Option<&Error>) {
        let cfg = &self.config;
        let rejections = if g.state == BreakerState::Disabled {
            g.rejections.saturating_add(1)
        } else {
            0
        };
        let max = cfg.credentials_max_cool_down.max(cfg.credentials_cool_down);
        let cool = cfg
            .credentials_cool_down
            .checked_mul(1u32 << rejections.min(20))
            .map_or(max, |d| d.min(max));
        let kind = err.map_or(ErrorKind::Authentication, Error::kind);
        let status = err
            .and_then(Error::upstream_status)
            .map_or_else(String::new, |s| format!("{s} "));
        let reason = format!("the upstream rejected the credentials ({status}{kind})");
        tracing::warn!(
            breaker = %self.name,
            reason = %reason,
            cool_down_s = cool.as_secs(),
            "calls to this upstream stop until a trial call succeeds or it is re-enabled"
        );
        g.calls.clear();
        g.failed = 0;
        g.consecutive = 0;
        g.rejections = rejections;
        g.disabled_by = Some(kind);
        g.reason = Some(reason);
        g.trip(BreakerState::Disabled, now, cool);
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

    fn rejected(status: u16) -> Error {
        let kind = if status == 401 {
            ErrorKind::Authentication
        } else {
            ErrorKind::PermissionDenied
        };
        Error::new(kind, "Incorrect API key provided: sk-abc***xyz").with_status(status)
    }

    #[test]
    fn issue_13_a_credential_rejection_disables_it_until_a_trial_succeeds() {
        let t0 = Instant::now();
        let b = Breaker::new(
            "openai@test",
            BreakerConfig {
                credentials_cool_down: Duration::from_secs(60),
                credentials_max_cool_down: Duration::from_secs(200),
                ..Default::default()
            },
        );
        b.acquire(t0).unwrap().failure(t0, &rejected(401));
        let st = b.status(t0);
        assert_eq!(st.state, BreakerState::Disabled);
        assert_eq!(st.disabled_by, Some(ErrorKind::Authentication));
        assert_eq!(st.trips, 1);
        let reason = st.reason.unwrap();
        assert!(
            reason.contains("rejected the credentials (401 authentication)"),
            "{reason}"
        );
        assert!(
            !reason.contains("sk-"),
            "the upstream's message is not repeated: {reason}"
        );
        // Fails fast with the rejection's own kind (not a transient circuit_open).
        let err = b.acquire(t0 + Duration::from_secs(59)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Authentication);
        assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));
        assert!(b.fails_fast(t0 + Duration::from_secs(59)));
        // One trial after the cool-down; rejected again, the cool-down doubles, then caps.
        let mut now = t0;
        for (i, wait) in [60u64, 120, 200, 200].into_iter().enumerate() {
            now += Duration::from_secs(wait);
            assert!(!b.fails_fast(now), "trial {i} is due");
            assert_eq!(
                b.state(now),
                BreakerState::Disabled,
                "still disabled until it succeeds"
            );
            let trial = b.acquire(now).unwrap();
            assert_eq!(
                b.acquire(now).unwrap_err().kind(),
                ErrorKind::Authentication,
                "one trial at a time"
            );
            trial.failure(now, &rejected(401));
            assert_eq!(
                b.status(now).retry_in,
                Some(Duration::from_secs([120, 200, 200, 200][i]))
            );
        }
        // A 5xx during a trial is not a verdict on the credentials: same cool-down again.
        now += Duration::from_secs(200);
        b.acquire(now).unwrap().failure(now, &fail());
        assert_eq!(b.state(now), BreakerState::Disabled);
        assert_eq!(b.status(now).retry_in, Some(Duration::from_secs(200)));
        now += Duration::from_secs(200);
        b.acquire(now).unwrap().success(now);
        let st = b.status(now);
        assert_eq!(
            (st.state, st.reason, st.retry_in),
            (BreakerState::Closed, None, None)
        );
    }

    #[test]
    fn issue_13_reset_enables_a_disabled_breaker_and_403_disables_too() {
        let t0 = Instant::now();
        let b = Breaker::new("x", BreakerConfig::default());
        let in_flight = b.acquire(t0).unwrap();
        b.acquire(t0).unwrap().failure(t0, &rejected(403));
        assert_eq!(b.state(t0), BreakerState::Disabled);
        assert_eq!(b.status(t0).retry_in, Some(Duration::from_secs(600)));
        assert_eq!(
            b.acquire(t0).unwrap_err().kind(),
            ErrorKind::PermissionDenied
        );
        // A call admitted before the rejection changes nothing when it ends.
        in_flight.success(t0);
        assert_eq!(b.state(t0), BreakerState::Disabled);
        b.reset();
        assert_eq!(b.state(t0), BreakerState::Closed);
        b.acquire(t0).unwrap().success(t0);
        // With the trigger off, rejections count as nothing.
        let off = Breaker::new(
            "y",
            BreakerConfig {
                credentials_cool_down: Duration::ZERO,
                consecutive_failures: 1,
                ..Default::default()
            },
        );
        off.acquire(t0).unwrap().failure(t0, &rejected(401));
        assert_eq!(off.state(t0), BreakerState::Closed);
        // A rejected timestamp is a failure, not a credential verdict.
        let skew = Error::new(ErrorKind::Authentication, "skewed").with_clock_skew();
        off.acquire(t0).unwrap().failure(t0, &skew);
        assert_eq!(off.state(t0), BreakerState::Open);
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
