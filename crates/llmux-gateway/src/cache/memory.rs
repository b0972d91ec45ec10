//! The in-process backend: a moka cache weighed in bytes (each entry by its serialized size),
//! bounded by `cache.max_bytes`; moka's TinyLFU policy picks what to evict, and each entry
//! expires after its own TTL. Evictions and the bytes held are counted in the `llmux_cache_*`
//! series.

use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;
use moka::notification::RemovalCause;
use moka::Expiry;

use super::{CacheConfig, CacheMetrics, Digest, Entry};

/// What the map holds: the entry with its weight and TTL.
#[derive(Clone)]
struct Held {
    entry: Arc<Entry>,
    /// Serialized size plus the key, in bytes (what `max_bytes` bounds).
    weight: u32,
    ttl: Duration,
}

/// Each entry expires after its own TTL (the request's key may have set it).
struct OwnTtl;

impl Expiry<Digest, Held> for OwnTtl {
    #[expect(
        clippy::disallowed_types,
        reason = "moka's Expiry trait names std's Instant; the value is not read"
    )]
    fn expire_after_create(
        &self,
        _key: &Digest,
        value: &Held,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// The in-process backend.
pub(super) struct Memory {
    cache: Cache<Digest, Held>,
    metrics: CacheMetrics,
}

impl Memory {
    pub(super) fn new(config: &CacheConfig, metrics: &CacheMetrics) -> Memory {
        let m = metrics.clone();
        let cache = Cache::builder()
            .max_capacity(config.max_bytes)
            .weigher(|_k: &Digest, v: &Held| v.weight)
            .expire_after(OwnTtl)
            .eviction_listener(move |_k, v: Held, cause| {
                m.bytes.sub(i64::from(v.weight));
                m.entries.dec();
                let reason = match cause {
                    RemovalCause::Size => "size",
                    RemovalCause::Expired => "expired",
                    RemovalCause::Explicit | RemovalCause::Replaced => return,
                };
                m.evictions.with_label_values(&[reason]).inc();
            })
            .build();
        Memory {
            cache,
            metrics: metrics.clone(),
        }
    }

    pub(super) async fn get(&self, key: &Digest) -> Option<Arc<Entry>> {
        self.cache.get(key).await.map(|h| h.entry)
    }

    /// Inserts an entry of `size` serialized bytes (at most `cache.max_entry_bytes`, so well
    /// within `u32`).
    pub(super) async fn insert(&self, key: Digest, entry: Entry, size: u64, ttl: Duration) {
        let weight = u32::try_from(size.saturating_add(32)).unwrap_or(u32::MAX);
        self.metrics.bytes.add(i64::from(weight));
        self.metrics.entries.inc();
        let held = Held {
            entry: Arc::new(entry),
            weight,
            ttl,
        };
        self.cache.insert(key, held).await;
    }

    pub(super) async fn sync(&self) {
        self.cache.run_pending_tasks().await;
    }
}
