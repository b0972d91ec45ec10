//! Client-side rate limits per upstream: requests and tokens per minute over a sliding
//! 60-second window. Tokens are reserved on admission (estimated prompt + max output) and
//! trued up to the actual usage on completion; callers may wait for budget or fail fast.
//!
//! Bound: the admitted requests in any 60 s window never exceed `rpm`; reserved tokens never
//! exceed `tpm`. Actual tokens can exceed `tpm` only by what completions used beyond their
//! reservation (a true-up adds the difference; the next admissions wait for it to age out).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::error::{Error, ErrorKind};

const WINDOW: Duration = Duration::from_secs(60);

/// Limits of one upstream (or one key, in the gateway). `None` = unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LimitConfig {
    /// Requests per minute.
    pub rpm: Option<u32>,
    /// Tokens per minute (input + output).
    pub tpm: Option<u64>,
    /// Wait for budget instead of failing with `RateLimited`.
    pub wait: bool,
}

#[derive(Debug)]
struct Entry {
    id: u64,
    at: Instant,
    tokens: u64,
}

/// The window: entries in admission order, so ids are consecutive from the front's (a settle
/// finds its entry by subtraction), and the running sum of their tokens (no scan per call).
#[derive(Debug, Default)]
struct State {
    entries: VecDeque<Entry>,
    next_id: u64,
    tokens: u64,
}

impl State {
    fn entry_mut(&mut self, id: u64) -> Option<&mut Entry> {
        let front = self.entries.front()?.id;
        let idx = usize::try_from(id.checked_sub(front)?).ok()?;
        self.entries.get_mut(idx)
    }
}

/// A sliding-window limiter. Share it with `Arc`.
#[derive(Debug)]
pub struct Limiter {
    config: LimitConfig,
    state: Mutex<State>,
}

/// An admitted call; settle it with the actual usage (dropping it keeps the reservation).
#[derive(Debug)]
pub struct Reservation {
    limiter: Arc<Limiter>,
    id: u64,
    reserved: u64,
}

impl Reservation {
    /// Tokens reserved at admission.
    pub fn reserved(&self) -> u64 {
        self.reserved
    }

    /// Replaces the reservation by the tokens actually used.
    pub fn settle(self, actual_tokens: u64) {
        let mut g = self.limiter.lock();
        // An entry that already aged out of the window no longer counts either way.
        if let Some(e) = g.entry_mut(self.id) {
            let before = std::mem::replace(&mut e.tokens, actual_tokens);
            g.tokens = g.tokens - before + actual_tokens;
        }
    }
}

impl Reservation {
    /// Takes the admission back as if it had never happened (its request slot and tokens
    /// included), when it is still the limiter's newest one; `false` (and nothing changes
    /// beyond dropping it) otherwise. For callers that admit on several limiters under one
    /// lock of their own and must undo the first when a later one refuses.
    pub fn cancel(self) -> bool {
        let mut g = self.limiter.lock();
        if g.entries.back().is_some_and(|e| e.id == self.id) {
            if let Some(e) = g.entries.pop_back() {
                g.tokens -= e.tokens;
                g.next_id -= 1;
            }
            true
        } else {
            false
        }
    }
}

impl Limiter {
    /// A limiter with these limits.
    pub fn new(config: LimitConfig) -> Arc<Self> {
        Arc::new(Limiter {
            config,
            state: Mutex::new(State::default()),
        })
    }

    /// The limits.
    pub fn config(&self) -> LimitConfig {
        self.config
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Admits a call needing `tokens` now, or says how long until it could be admitted.
    pub fn try_admit(self: &Arc<Self>, tokens: u64, now: Instant) -> Result<Reservation, Duration> {
        let mut g = self.lock();
        while g.entries.front().is_some_and(|e| e.at + WINDOW <= now) {
            if let Some(e) = g.entries.pop_front() {
                g.tokens -= e.tokens;
            }
        }
        let mut wait = Duration::ZERO;
        if let Some(rpm) = self.config.rpm {
            let rpm = rpm as usize;
            if rpm == 0 {
                // Nothing is ever admitted; a full window is the honest wait.
                wait = WINDOW;
            } else if g.entries.len() >= rpm {
                // The call fits once enough of the oldest entries have aged out.
                let idx = g.entries.len() - rpm;
                wait = wait.max(g.entries[idx].at + WINDOW - now);
            }
        }
        if let Some(tpm) = self.config.tpm {
            let used = g.tokens;
            if tokens > tpm {
                // Can never fit: callers get a full window as the wait (`admit` rejects it outright).
                return Err(WINDOW);
            }
            if used + tokens > tpm {
                let mut freed = 0;
                for e in &g.entries {
                    freed += e.tokens;
                    if used - freed + tokens <= tpm {
                        wait = wait.max(e.at + WINDOW - now);
                        break;
                    }
                }
            }
        }
        if !wait.is_zero() {
            return Err(wait);
        }
        let id = g.next_id;
        g.next_id += 1;
        g.entries.push_back(Entry {
            id,
            at: now,
            tokens,
        });
        g.tokens += tokens;
        Ok(Reservation {
            limiter: self.clone(),
            id,
            reserved: tokens,
        })
    }

    /// Admits a call needing `tokens`, waiting for budget when the config says so.
    pub async fn admit(self: &Arc<Self>, tokens: u64) -> Result<Reservation, Error> {
        if let Some(tpm) = self.config.tpm {
            if tokens > tpm {
                return Err(Error::invalid_request(format!(
                    "the request needs about {tokens} tokens, more than the limit of {tpm} tokens per minute"
                )));
            }
        }
        loop {
            match self.try_admit(tokens, Instant::now()) {
                Ok(r) => return Ok(r),
                Err(wait) if self.config.wait => tokio::time::sleep(wait).await,
                Err(wait) => {
                    return Err(Error::new(
                        ErrorKind::RateLimited,
                        "client-side rate limit reached (requests or tokens per minute)",
                    )
                    .with_retry_after(Some(wait)))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cancelling_the_newest_admission_frees_its_slot_and_tokens() {
        let t0 = Instant::now();
        let l = Limiter::new(LimitConfig {
            rpm: Some(2),
            tpm: Some(100),
            ..Default::default()
        });
        let a = l.try_admit(40, t0).unwrap();
        let b = l.try_admit(60, t0).unwrap();
        assert!(l.try_admit(0, t0).is_err());
        // Only the newest can be taken back.
        assert!(!a.cancel());
        assert!(b.cancel());
        let c = l.try_admit(60, t0).unwrap();
        // Ids stay consecutive: settling the readmitted one finds its entry.
        c.settle(10);
        assert!(l.try_admit(0, t0).is_err(), "rpm 2 is used again");
        assert_eq!(l.lock().tokens, 50);
    }

    #[test]
    fn rpm_admits_at_most_the_budget_then_frees_after_a_minute() {
        let t0 = Instant::now();
        let l = Limiter::new(LimitConfig {
            rpm: Some(3),
            ..Default::default()
        });
        for _ in 0..3 {
            l.try_admit(0, t0).unwrap();
        }
        let wait = l.try_admit(0, t0 + Duration::from_secs(10)).unwrap_err();
        assert_eq!(wait, Duration::from_secs(50));
        assert!(l.try_admit(0, t0 + Duration::from_secs(60)).is_ok());
    }

    #[test]
    fn rpm_zero_refuses_every_call_with_a_full_window_wait() {
        let t0 = Instant::now();
        let l = Limiter::new(LimitConfig {
            rpm: Some(0),
            ..Default::default()
        });
        assert_eq!(l.try_admit(0, t0).unwrap_err(), WINDOW);
        assert_eq!(l.try_admit(0, t0 + WINDOW).unwrap_err(), WINDOW);
    }

    #[test]
    fn a_request_larger_than_the_tpm_budget_is_never_admitted() {
        let t0 = Instant::now();
        let l = Limiter::new(LimitConfig {
            tpm: Some(100),
            ..Default::default()
        });
        assert!(l.try_admit(101, t0).is_err());
        assert!(l.try_admit(100, t0).is_ok());
    }

    #[test]
    fn tokens_are_reserved_then_trued_up() {
        let t0 = Instant::now();
        let l = Limiter::new(LimitConfig {
            tpm: Some(1000),
            ..Default::default()
        });
        let r = l.try_admit(800, t0).unwrap();
        assert!(l.try_admit(300, t0).is_err());
        r.settle(100);
        assert!(l.try_admit(300, t0).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_callers_are_admitted_when_budget_frees() {
        let l = Limiter::new(LimitConfig {
            rpm: Some(2),
            wait: true,
            ..Default::default()
        });
        let start = Instant::now();
        for _ in 0..5 {
            l.admit(0).await.unwrap();
        }
        assert!(Instant::now() - start >= Duration::from_secs(120));
        let strict = Limiter::new(LimitConfig {
            rpm: Some(1),
            ..Default::default()
        });
        strict.admit(0).await.unwrap();
        let err = strict.admit(0).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::RateLimited);
        assert!(err.retry_after().is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn never_admits_more_than_the_budget_in_any_window_under_200_callers() {
        let l = Limiter::new(LimitConfig {
            rpm: Some(30),
            tpm: Some(3000),
            wait: true,
        });
        let times = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..200u64 {
            let l = l.clone();
            let times = times.clone();
            tasks.push(tokio::spawn(async move {
                let r = l.admit(50 + i % 100).await.unwrap();
                times.lock().unwrap().push((Instant::now(), r.reserved()));
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let mut v = times.lock().unwrap().clone();
        v.sort_by_key(|x| x.0);
        for (i, (start, _)) in v.iter().enumerate() {
            let in_window: Vec<_> = v[i..]
                .iter()
                .take_while(|(t, _)| *t < *start + WINDOW)
                .collect();
            assert!(
                in_window.len() <= 30,
                "{} requests in one window",
                in_window.len()
            );
            let tokens: u64 = in_window.iter().map(|(_, t)| t).sum();
            assert!(tokens <= 3000, "{tokens} tokens in one window");
        }
    }

    /// The naive window the limiter must agree with: every admitted call with its current
    /// tokens, summed afresh at each decision.
    #[derive(Default)]
    struct Model {
        calls: Vec<(Instant, u64)>,
    }

    impl Model {
        fn admits(&self, now: Instant, tokens: u64, rpm: u32, tpm: u64) -> bool {
            let live: Vec<_> = self
                .calls
                .iter()
                .filter(|(at, _)| *at + WINDOW > now)
                .collect();
            (live.len() as u32) < rpm && live.iter().map(|(_, t)| t).sum::<u64>() + tokens <= tpm
        }
    }

    proptest! {
        #[test]
        fn admissions_and_settles_agree_with_a_naive_window(
            ops in proptest::collection::vec((0u64..20_000, 1u64..400, any::<bool>(), 0usize..8, 0u64..500), 1..300),
            rpm in 1u32..40, tpm in 400u64..5_000,
        ) {
            let l = Limiter::new(LimitConfig { rpm: Some(rpm), tpm: Some(tpm), wait: false });
            let mut now = Instant::now();
            let mut model = Model::default();
            let mut open: Vec<(usize, Reservation)> = Vec::new();
            for (step, tokens, settle, pick, actual) in ops {
                now += Duration::from_millis(step);
                if settle && !open.is_empty() {
                    // Settle some earlier call, possibly one that has aged out already.
                    let (at, r) = open.remove(pick % open.len());
                    r.settle(actual);
                    model.calls[at].1 = actual;
                    continue;
                }
                let expected = model.admits(now, tokens, rpm, tpm);
                let got = l.try_admit(tokens, now);
                prop_assert_eq!(got.is_ok(), expected, "at {:?}", now);
                if let Ok(r) = got {
                    model.calls.push((now, tokens));
                    open.push((model.calls.len() - 1, r));
                }
            }
        }

        #[test]
        fn no_window_holds_more_than_the_budget(
            calls in proptest::collection::vec((0u64..5_000, 1u64..400), 1..300),
            rpm in 1u32..50, tpm in 400u64..5_000,
        ) {
            let t0 = Instant::now();
            let l = Limiter::new(LimitConfig { rpm: Some(rpm), tpm: Some(tpm), wait: false });
            let mut now = t0;
            let mut admitted: Vec<(Instant, u64)> = Vec::new();
            for (step, tokens) in calls {
                now += Duration::from_millis(step);
                if l.try_admit(tokens, now).is_ok() {
                    admitted.push((now, tokens));
                }
            }
            for (i, (start, _)) in admitted.iter().enumerate() {
                let w: Vec<_> = admitted[i..].iter().take_while(|(t, _)| *t < *start + WINDOW).collect();
                prop_assert!(w.len() as u32 <= rpm);
                prop_assert!(w.iter().map(|(_, t)| *t).sum::<u64>() <= tpm);
            }
        }
    }
}
