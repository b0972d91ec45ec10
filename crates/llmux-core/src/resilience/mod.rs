//! Resilience as data plus pure state machines: retry policy with backoff and jitter,
//! timeouts, circuit breakers and client-side rate limits. The client applies them; all take
//! their time from tokio so tests run under paused time.

pub mod breaker;
pub mod limiter;
pub mod retry;
pub mod timeouts;

pub use breaker::{Breaker, BreakerConfig, BreakerState, BreakerStatus, Verdict};
pub use limiter::{LimitConfig, Limiter, Reservation};
pub use retry::RetryPolicy;
pub use timeouts::Timeouts;
