//! The shared backend: entries in the Redis of `server.redis`, so every gateway using it with
//! the same `server.redis_prefix` serves the answers any of them stored.
//!
//! One entry is one string key, `{prefix}cache:{<digest in hex>}` (`llmux:cache:{9f…}`), whose
//! value is the entry's JSON, written with `SET … PX <ttl>`: Redis drops it when its TTL
//! ends (the gateway also checks the expiry it holds on its own clock). The digest is the
//! key's hash tag, so on a Redis Cluster an entry is one key in one slot.
//!
//! Fail-open, like the shared limits: a get waits at most [`CALL_TIMEOUT`]; a failure (refused,
//! timed out, an error reply, a value that is not an entry) is a miss, counted in
//! `llmux_cache_backend_errors_total{op}`; three in a row make the cache skip Redis for
//! [`COOL_DOWN`], after which one request probes it again. Sets go out from a spawned task,
//! never on a request's path. How much Redis keeps is Redis's to bound (`maxmemory` with an
//! eviction policy such as `allkeys-lru`); entries are bounded by `cache.max_entry_bytes`.

use std::sync::Arc;
use std::time::Duration;

use llmux_core::resilience::{Breaker, BreakerConfig};
use llmux_core::ErrorKind;
use prometheus::IntCounter;
use tokio::time::Instant;

use super::{CacheConfig, CacheMetrics, Digest, Entry};
use crate::config::RedisConfig;
use crate::limits::RedisSetupError;
use crate::redis_conn::RedisConn;

/// Longest wait for one Redis call (connecting included) before it counts as a miss.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(500);
/// How long Redis is skipped after [`FAILURES_TO_SKIP`] failures in a row.
pub const COOL_DOWN: Duration = Duration::from_secs(2);
/// Failures in a row that make the cache skip Redis for [`COOL_DOWN`].
pub const FAILURES_TO_SKIP: u32 = 3;

/// A lazily connecting, auto-reconnecting connection to the Redis (one server or a Redis
/// Cluster) of `config`, whose calls fail fast ([`CALL_TIMEOUT`] to connect and to answer).
/// Building it does no IO, so a gateway starts while Redis is down.
pub fn connect(config: &RedisConfig) -> Result<RedisConn, RedisSetupError> {
    RedisConn::lazy(config, CALL_TIMEOUT)
}

/// The Redis key of an entry: the digest is the hash tag.
pub fn entry_key(prefix: &str, digest: &Digest) -> String {
    format!("{prefix}cache:{{{}}}", digest.hex())
}

/// The shared backend.
pub(super) struct RedisCache {
    shared: Arc<Shared>,
}

struct Shared {
    conn: RedisConn,
    prefix: String,
    max_entry_bytes: u64,
    breaker: Arc<Breaker>,
    get_errors: IntCounter,
    set_errors: IntCounter,
}

/// Why one call failed (never shows the URL).
#[derive(Debug)]
enum Failure {
    Redis(redis::RedisError),
    Timeout,
    Value(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Redis(e) => write!(f, "{e}"),
            Failure::Timeout => write!(f, "no answer within {} ms", CALL_TIMEOUT.as_millis()),
            Failure::Value(why) => write!(f, "a stored value is not a cache entry ({why})"),
        }
    }
}

impl RedisCache {
    pub(super) fn new(
        redis: &RedisConfig,
        config: &CacheConfig,
        metrics: &CacheMetrics,
    ) -> Result<RedisCache, RedisSetupError> {
        let breaker = Breaker::new(
            "redis cache",
            BreakerConfig {
                consecutive_failures: FAILURES_TO_SKIP,
                failure_rate: 0.0,
                cool_down: COOL_DOWN,
                half_open_probes: 1,
                ..BreakerConfig::default()
            },
        );
        Ok(RedisCache {
            shared: Arc::new(Shared {
                conn: connect(redis)?,
                prefix: redis.prefix.clone(),
                max_entry_bytes: config.max_entry_bytes,
                breaker,
                get_errors: metrics.backend_errors.with_label_values(&["get"]),
                set_errors: metrics.backend_errors.with_label_values(&["set"]),
            }),
        })
    }

    /// The entry under `digest`; `None` when there is none or Redis failed (counted).
    pub(super) async fn get(&self, digest: &Digest) -> Option<Arc<Entry>> {
        let s = &self.shared;
        let Ok(permit) = s.breaker.acquire(Instant::now()) else {
            s.get_errors.inc();
            return None;
        };
        let mut conn = s.conn.clone();
        let mut cmd = redis::cmd("GET");
        cmd.arg(entry_key(&s.prefix, digest));
        let reply =
            tokio::time::timeout(CALL_TIMEOUT, cmd.query_async::<Option<Vec<u8>>>(&mut conn)).await;
        let value = match reply {
            Ok(Ok(v)) => {
                permit.success(Instant::now());
                v?
            }
            Ok(Err(e)) => {
                s.failed(permit, &s.get_errors, &Failure::Redis(e));
                return None;
            }
            Err(_) => {
                s.failed(permit, &s.get_errors, &Failure::Timeout);
                return None;
            }
        };
        if value.len() as u64 > s.max_entry_bytes {
            s.get_errors.inc();
            tracing::warn!(
                bytes = value.len(),
                "a Redis cache entry is larger than cache.max_entry_bytes; it is not served"
            );
            return None;
        }
        match serde_json::from_slice::<Entry>(&value) {
            Ok(e) => Some(Arc::new(e)),
            Err(e) => {
                s.get_errors.inc();
                tracing::warn!(error = %Failure::Value(e.to_string()), "a Redis cache entry could not be read; it is not served");
                None
            }
        }
    }

    /// Writes an entry from a spawned task (the answer is not delayed by it).
    pub(super) fn spawn_set(&self, digest: Digest, bytes: Vec<u8>, ttl: Duration) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            self.shared.set_errors.inc();
            return;
        };
        let s = self.shared.clone();
        rt.spawn(async move {
            let Ok(permit) = s.breaker.acquire(Instant::now()) else {
                s.set_errors.inc();
                return;
            };
            let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
            let mut conn = s.conn.clone();
            let mut cmd = redis::cmd("SET");
            cmd.arg(entry_key(&s.prefix, &digest))
                .arg(bytes)
                .arg("PX")
                .arg(ttl_ms);
            match tokio::time::timeout(CALL_TIMEOUT, cmd.query_async::<()>(&mut conn)).await {
                Ok(Ok(())) => permit.success(Instant::now()),
                Ok(Err(e)) => {
                    s.failed(permit, &s.set_errors, &Failure::Redis(e));
                }
                Err(_) => {
                    s.failed(permit, &s.set_errors, &Failure::Timeout);
                }
            }
        });
    }
}

impl Shared {
    /// Records a failed call on the breaker and the counter, and logs it.
    fn failed(
        &self,
        permit: llmux_core::resilience::breaker::Permit,
        counter: &IntCounter,
        failure: &Failure,
    ) {
        permit.failure(
            Instant::now(),
            &llmux_core::Error::new(ErrorKind::Connect, "the Redis cache backend failed"),
        );
        counter.inc();
        // Only calls the breaker let through get here: a few in a row, then one probe per
        // COOL_DOWN, however many requests arrive.
        tracing::warn!(error = %failure, "the Redis response cache failed; requests are answered without it until it answers again");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_one_key_whose_hash_tag_is_its_digest() {
        let d = Digest([0xab; 32]);
        let k = entry_key("llmux:", &d);
        assert_eq!(k, format!("llmux:cache:{{{}}}", "ab".repeat(32)));
        // The hash tag is the first `{…}`: the digest alone.
        let open = k.find('{').unwrap();
        let close = k[open..].find('}').unwrap() + open;
        assert_eq!(&k[open + 1..close], d.hex());
    }
}
