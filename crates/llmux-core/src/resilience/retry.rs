//! The retry policy: which failures are retried, how many times, and how long to wait
//! (exponential backoff with full jitter and a cap, or the upstream's `Retry-After`).
//! The only place backoff is computed.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// When and how to retry. Defaults suit production: 3 attempts in all, 250 ms base, 8 s cap,
/// `Retry-After` honoured up to 60 s.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = never retry).
    pub max_attempts: u32,
    /// Backoff base: the cap of attempt `n`'s delay is `base · 2^(n-1)`.
    #[serde(with = "humantime_serde")]
    pub base_delay: Duration,
    /// No computed delay exceeds this.
    #[serde(with = "humantime_serde")]
    pub max_delay: Duration,
    /// Wait what the upstream asked (`Retry-After`, vendor hints) instead of the computed delay.
    pub honor_retry_after: bool,
    /// A `Retry-After` longer than this is not waited for: the error is returned instead.
    #[serde(with = "humantime_serde")]
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(8),
            honor_retry_after: true,
            max_retry_after: Duration::from_secs(60),
        }
    }
}

/// Why an attempt is not retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoRetry {
    /// The error kind is not transient (quota, content filter, auth, invalid request…).
    NotRetryable,
    /// Something was already streamed to the caller.
    AlreadyStreamed,
    /// The attempt budget is spent.
    Exhausted,
    /// The upstream asked to wait longer than `max_retry_after`.
    RetryAfterTooLong,
}

impl RetryPolicy {
    /// Never retry.
    pub fn none() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// The cap of the jittered delay before attempt `attempt + 1`, after `attempt` failures
    /// (`attempt` ≥ 1): `min(max_delay, base · 2^(attempt-1))`. Non-decreasing in `attempt`.
    pub fn cap(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(30);
        self.base_delay
            .saturating_mul(1u32 << exp)
            .min(self.max_delay)
    }

    /// The delay before the next attempt: full jitter, uniform in `[0, cap(attempt)]`,
    /// drawn with `unit` in `[0, 1)`.
    pub fn backoff(&self, attempt: u32, unit: f64) -> Duration {
        let unit = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self.cap(attempt).mul_f64(unit)
    }

    /// Decides whether to retry after `err` on attempt `attempt` (1-based), and how long to
    /// wait. `streamed` says whether any event already reached the caller.
    pub fn next_delay(
        &self,
        err: &Error,
        attempt: u32,
        streamed: bool,
    ) -> Result<Duration, NoRetry> {
        if streamed {
            return Err(NoRetry::AlreadyStreamed);
        }
        if !err.is_retryable() {
            return Err(NoRetry::NotRetryable);
        }
        if attempt >= self.max_attempts {
            return Err(NoRetry::Exhausted);
        }
        if self.honor_retry_after {
            if let Some(after) = err.retry_after() {
                if after > self.max_retry_after {
                    return Err(NoRetry::RetryAfterTooLong);
                }
                return Ok(after);
            }
        }
        Ok(self.backoff(attempt, fastrand::f64()))
    }
}

/// `Duration` as human-friendly text in config (`"250ms"`, `"8s"`, `"1m"`) or plain seconds.
pub mod humantime_serde {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes `"<n>ms"`.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}ms", d.as_millis()))
    }

    /// Reads `"250ms"`, `"8s"`, `"2m"`, `"1h"`, or a number of seconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Secs(f64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Secs(s) => Duration::try_from_secs_f64(s)
                .map_err(|_| serde::de::Error::custom(format!("invalid duration {s}"))),
            Raw::Text(t) => parse_duration(&t).map_err(serde::de::Error::custom),
        }
    }

    /// Parses `"250ms"`, `"8s"`, `"2m"`, `"1h"` or a bare number of seconds.
    pub fn parse_duration(text: &str) -> Result<Duration, String> {
        let t = text.trim();
        let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: f64 = num
            .trim()
            .parse()
            .map_err(|_| format!("invalid duration `{text}` (use e.g. 500ms, 30s, 2m)"))?;
        if !(n.is_finite() && n >= 0.0) {
            return Err(format!("invalid duration `{text}`"));
        }
        let secs = match unit.trim() {
            "" | "s" | "sec" | "secs" => n,
            "ms" => n / 1000.0,
            "m" | "min" => n * 60.0,
            "h" => n * 3600.0,
            other => {
                return Err(format!(
                    "unknown duration unit `{other}` in `{text}` (ms, s, m, h)"
                ))
            }
        };
        Duration::try_from_secs_f64(secs).map_err(|_| format!("duration `{text}` is too long"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn issue_13_fuzz_config_durations_beyond_range_are_errors() {
        // The config fuzz target's input class: `connect = 1e300` (or "1e20h") in llmux.toml
        // panicked in `Duration::from_secs_f64` instead of being reported.
        #[derive(Debug, serde::Deserialize)]
        struct T {
            #[serde(with = "humantime_serde")]
            d: Duration,
        }
        assert!(serde_json::from_str::<T>(r#"{"d": 1e300}"#).is_err());
        assert!(serde_json::from_str::<T>(r#"{"d": -1}"#).is_err());
        let err = humantime_serde::parse_duration("100000000000000000000h").unwrap_err();
        assert!(err.contains("too long"), "{err}");
        assert_eq!(
            humantime_serde::parse_duration("1.5s"),
            Ok(Duration::from_millis(1500))
        );
        assert_eq!(
            serde_json::from_str::<T>(r#"{"d": 2}"#).map(|t| t.d).ok(),
            Some(Duration::from_secs(2))
        );
    }
    use proptest::prelude::*;

    #[test]
    fn retries_only_transient_errors_before_streaming() {
        let p = RetryPolicy::default();
        let e = Error::new(ErrorKind::UpstreamServer, "x");
        assert!(p.next_delay(&e, 1, false).is_ok());
        assert_eq!(p.next_delay(&e, 1, true), Err(NoRetry::AlreadyStreamed));
        assert_eq!(p.next_delay(&e, 3, false), Err(NoRetry::Exhausted));
        let q = Error::new(ErrorKind::QuotaExhausted, "x");
        assert_eq!(p.next_delay(&q, 1, false), Err(NoRetry::NotRetryable));
        let r =
            Error::new(ErrorKind::RateLimited, "x").with_retry_after(Some(Duration::from_secs(2)));
        assert_eq!(p.next_delay(&r, 1, false), Ok(Duration::from_secs(2)));
        let long = Error::new(ErrorKind::RateLimited, "x")
            .with_retry_after(Some(Duration::from_secs(600)));
        assert_eq!(
            p.next_delay(&long, 1, false),
            Err(NoRetry::RetryAfterTooLong)
        );
    }

    #[test]
    fn durations_parse_from_config_text() {
        assert_eq!(
            humantime_serde::parse_duration("250ms").unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!(
            humantime_serde::parse_duration("60s").unwrap(),
            Duration::from_secs(60)
        );
        assert_eq!(
            humantime_serde::parse_duration("2m").unwrap(),
            Duration::from_secs(120)
        );
        assert_eq!(
            humantime_serde::parse_duration("1.5").unwrap(),
            Duration::from_millis(1500)
        );
        assert!(humantime_serde::parse_duration("5 parsecs").is_err());
    }

    proptest! {
        #[test]
        fn backoff_is_within_zero_and_cap_and_caps_do_not_decrease(
            base_ms in 1u64..5_000, max_ms in 1u64..120_000, attempt in 1u32..40, unit in 0.0f64..1.0
        ) {
            let p = RetryPolicy { base_delay: Duration::from_millis(base_ms), max_delay: Duration::from_millis(max_ms), ..RetryPolicy::default() };
            let d = p.backoff(attempt, unit);
            prop_assert!(d <= p.cap(attempt));
            prop_assert!(p.cap(attempt) <= p.max_delay);
            prop_assert!(p.cap(attempt) <= p.cap(attempt + 1));
        }
    }
}
