//! The in-memory index of the virtual keys found in the store, on the path of every request
//! that presents one.
//!
//! A presented key is known here by its [`Tag`]: a 128-bit SipHash-2-4 of the key under a
//! secret drawn once per process. That is a keyed pseudo-random function, so without the
//! secret no one can make a string whose tag equals a cached key's, two keys meet on one tag
//! with probability 2⁻¹²⁸, and the plaintext is never held. (The store indexes keys by their
//! SHA-256, which a miss still computes; SHA-256 on every hit was most of what a virtual key
//! cost a request.)
//!
//! A hit is a read lock and one hash lookup. Entries live `ttl` from when their lookup began; a
//! key wanted by many requests at once is looked up once, the others waiting on that lookup
//! ([`KeyCache::get_or_load`]); failed lookups are shared with those waiting but not kept.
//! [`KeyCache::clear`] forgets every entry and every lookup in flight: a lookup that began
//! before it is answered to its own requests but not kept, so a revocation through this gateway
//! is never undone by a lookup that raced with it. At most `capacity` entries are held; a full
//! cache first drops its expired entries, then arbitrary ones.

use std::collections::HashMap;
use std::future::Future;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use siphasher::sip128::SipHasher;
use tokio::sync::OnceCell;
use tokio::time::Instant;

/// A key as this cache knows it ([`Tagger::tag`]).
pub(super) type Tag = u128;

/// Tags keys under a secret of this process.
pub(super) struct Tagger(SipHasher);

impl Tagger {
    /// A tagger with a fresh secret, taken from std's per-process random hashing keys (seeded
    /// from the operating system's random source).
    pub(super) fn new() -> Tagger {
        let seed = std::collections::hash_map::RandomState::new();
        Tagger(SipHasher::new_with_keys(
            seed.hash_one(0x6b65_795f_6361_6368_u64),
            seed.hash_one(0x655f_7461_675f_6b31_u64),
        ))
    }

    /// The tag of `key`.
    pub(super) fn tag(&self, key: &str) -> Tag {
        self.0.hash(key.as_bytes()).into()
    }
}

impl std::fmt::Debug for Tagger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tagger(..)")
    }
}

/// The tags are already uniformly distributed: a map over them hashes their low half alone.
#[derive(Debug, Clone, Copy, Default)]
struct ByTag;

impl BuildHasher for ByTag {
    type Hasher = TagHasher;

    fn build_hasher(&self) -> TagHasher {
        TagHasher(0)
    }
}

/// See [`ByTag`].
#[derive(Debug, Clone, Copy)]
struct TagHasher(u64);

impl std::hash::Hasher for TagHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u128` keys are hashed here (`write_u128`); any other input still hashes.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u128(&mut self, i: u128) {
        // Truncation intended: the low 64 bits of a pseudo-random tag.
        self.0 = i as u64;
    }
}

/// One cached entry.
struct Cached<V> {
    value: V,
    until: Instant,
}

/// One lookup in flight, shared by the requests that want the same key.
struct Load<V, E> {
    /// The cache's generation when the lookup was started: its result is kept only if no
    /// [`KeyCache::clear`] happened since.
    generation: u64,
    /// When the lookup was started: a value it finds lives `ttl` from then.
    started: Instant,
    result: OnceCell<Result<V, E>>,
}

/// The lookups in flight, by tag.
type Loads<V, E> = HashMap<Tag, Arc<Load<V, E>>, ByTag>;

/// The entries, and how many times the cache was cleared.
struct Entries<V> {
    generation: u64,
    map: HashMap<Tag, Cached<V>, ByTag>,
}

/// See the module documentation.
pub(super) struct KeyCache<V, E> {
    ttl: Duration,
    capacity: usize,
    entries: RwLock<Entries<V>>,
    loads: Mutex<Loads<V, E>>,
}

impl<V, E> std::fmt::Debug for KeyCache<V, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCache")
            .field("ttl", &self.ttl)
            .field("entries", &self.len())
            .finish_non_exhaustive()
    }
}

impl<V, E> KeyCache<V, E> {
    /// How many entries are held (expired ones included until they are dropped).
    pub(super) fn len(&self) -> usize {
        self.read().map.len()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Entries<V>> {
        self.entries.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_loads(&self) -> MutexGuard<'_, Loads<V, E>> {
        self.loads.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<V: Clone, E: Clone> KeyCache<V, E> {
    /// An empty cache whose entries live `ttl`, holding at most `capacity` (at least one).
    pub(super) fn new(ttl: Duration, capacity: usize) -> Self {
        KeyCache {
            ttl,
            capacity: capacity.max(1),
            entries: RwLock::new(Entries {
                generation: 0,
                map: HashMap::with_hasher(ByTag),
            }),
            loads: Mutex::new(HashMap::with_hasher(ByTag)),
        }
    }

    /// The value of `tag`: the cached one while it lives, else the result of `load` — or of the
    /// lookup of the same tag already in flight, which this call then waits on. A value loaded
    /// is kept for `ttl`; an error is returned and not kept.
    pub(super) async fn get_or_load<F>(&self, tag: Tag, load: F) -> Result<V, E>
    where
        F: Future<Output = Result<V, E>>,
    {
        let generation = {
            let entries = self.read();
            if let Some(hit) = entries.map.get(&tag) {
                if Instant::now() < hit.until {
                    return Ok(hit.value.clone());
                }
            }
            entries.generation
        };
        let joined = Joined::new(self, tag, generation);
        let result = joined.load.result.get_or_init(|| load).await.clone();
        if let Ok(value) = &result {
            self.insert(
                tag,
                value.clone(),
                joined.load.started,
                joined.load.generation,
            );
        }
        result
    }

    /// Keeps `value` for `tag`, for `ttl` from now.
    pub(super) fn put(&self, tag: Tag, value: V) {
        let generation = self.read().generation;
        self.insert(tag, value, Instant::now(), generation);
    }

    /// Forgets every entry and every lookup in flight (their results are not kept).
    pub(super) fn clear(&self) {
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        entries.generation += 1;
        entries.map.clear();
        drop(entries);
        self.lock_loads().clear();
    }

    /// Keeps `value`, found by a lookup begun at `started` in `generation`, unless the cache
    /// was cleared since.
    fn insert(&self, tag: Tag, value: V, started: Instant, generation: u64) {
        let until = started + self.ttl;
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if entries.generation != generation {
            return;
        }
        if entries.map.len() >= self.capacity && !entries.map.contains_key(&tag) {
            let now = Instant::now();
            entries.map.retain(|_, c| now < c.until);
            // Still full of live entries: make room for a sixteenth more at once, so a full
            // cache does not scan itself on every insert.
            let excess = entries.map.len() + 1 + self.capacity / 16;
            let drop_n = excess.saturating_sub(self.capacity);
            let victims: Vec<Tag> = entries.map.keys().take(drop_n).copied().collect();
            for victim in victims {
                entries.map.remove(&victim);
            }
        }
        entries.map.insert(tag, Cached { value, until });
    }
}

/// A request's share of a lookup in flight. Dropping it (the lookup finished, or the request
/// went away) removes the lookup from the map once it has a result or no one else waits on it,
/// so lookups abandoned by their requests do not accumulate.
struct Joined<'a, V: Clone, E: Clone> {
    cache: &'a KeyCache<V, E>,
    tag: Tag,
    load: Arc<Load<V, E>>,
}

impl<'a, V: Clone, E: Clone> Joined<'a, V, E> {
    fn new(cache: &'a KeyCache<V, E>, tag: Tag, generation: u64) -> Self {
        let load = cache
            .lock_loads()
            .entry(tag)
            .or_insert_with(|| {
                Arc::new(Load {
                    generation,
                    started: Instant::now(),
                    result: OnceCell::new(),
                })
            })
            .clone();
        Joined { cache, tag, load }
    }
}

impl<V: Clone, E: Clone> Drop for Joined<'_, V, E> {
    fn drop(&mut self) {
        let mut loads = self.cache.lock_loads();
        let ours = loads
            .get(&self.tag)
            .is_some_and(|l| Arc::ptr_eq(l, &self.load));
        // Every clone and drop of a load's `Arc` but this one happens under this lock, so the
        // count is exact here: 2 is the map's and ours.
        if ours && (self.load.result.initialized() || Arc::strong_count(&self.load) <= 2) {
            loads.remove(&self.tag);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    type Cache = KeyCache<u32, &'static str>;

    #[test]
    fn tags_differ_by_key_and_by_process_secret() {
        let (a, b) = (Tagger::new(), Tagger::new());
        let key = "sk-llmux-0123456789012345678901234567890123456789";
        assert_eq!(a.tag(key), a.tag(key));
        assert_ne!(
            a.tag(key),
            a.tag("sk-llmux-0123456789012345678901234567890123456788")
        );
        assert_ne!(a.tag(key), b.tag(key), "each tagger has its own secret");
        assert_eq!(format!("{a:?}"), "Tagger(..)");
    }

    #[tokio::test]
    async fn a_hit_does_not_load_and_an_error_is_not_kept() {
        let cache = Cache::new(Duration::from_secs(60), 10);
        let loads = AtomicU32::new(0);
        let load = |v: Result<u32, &'static str>| {
            loads.fetch_add(1, Ordering::SeqCst);
            std::future::ready(v)
        };
        assert_eq!(cache.get_or_load(1, load(Err("down"))).await, Err("down"));
        assert_eq!(cache.get_or_load(1, load(Ok(7))).await, Ok(7));
        assert_eq!(cache.get_or_load(1, load(Ok(8))).await, Ok(7), "cached");
        assert_eq!(
            loads.load(Ordering::SeqCst),
            3,
            "each call built its future"
        );
        assert_eq!(cache.len(), 1);
        assert!(cache.lock_loads().is_empty(), "no lookup is left behind");
    }

    #[tokio::test(start_paused = true)]
    async fn an_entry_lives_its_ttl_then_is_loaded_again() {
        let cache = Cache::new(Duration::from_secs(30), 10);
        assert_eq!(cache.get_or_load(1, async { Ok(1) }).await, Ok(1));
        tokio::time::advance(Duration::from_secs(29)).await;
        assert_eq!(cache.get_or_load(1, async { Ok(2) }).await, Ok(1));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(cache.get_or_load(1, async { Ok(3) }).await, Ok(3));
    }

    #[tokio::test]
    async fn a_lookup_that_raced_with_clear_is_answered_but_not_kept() {
        let cache = Cache::new(Duration::from_secs(60), 10);
        let got = cache
            .get_or_load(1, async {
                cache.clear();
                Ok(1)
            })
            .await;
        assert_eq!(got, Ok(1));
        assert_eq!(
            cache.len(),
            0,
            "a revocation is not undone by a racing lookup"
        );
        assert_eq!(cache.get_or_load(1, async { Ok(2) }).await, Ok(2));
        assert_eq!(cache.get_or_load(1, async { Ok(3) }).await, Ok(2));
    }

    #[tokio::test]
    async fn a_full_cache_stays_within_its_capacity() {
        let cache = Cache::new(Duration::from_secs(60), 32);
        for tag in 0..1_000u32 {
            assert_eq!(
                cache
                    .get_or_load(u128::from(tag), async move { Ok(tag) })
                    .await,
                Ok(tag)
            );
            assert!(cache.len() <= 32, "{} entries", cache.len());
        }
        // The newest entry is always kept.
        assert_eq!(cache.get_or_load(999, async { Ok(0) }).await, Ok(999));
    }

    #[tokio::test]
    async fn an_abandoned_lookup_is_not_left_behind() {
        let cache = Cache::new(Duration::from_secs(60), 10);
        let pending = cache.get_or_load(5, std::future::pending());
        let mut pending = Box::pin(pending);
        // Polled once: the lookup is in flight, then its only request goes away.
        assert!(futures::poll!(pending.as_mut()).is_pending());
        assert_eq!(cache.lock_loads().len(), 1);
        drop(pending);
        assert!(cache.lock_loads().is_empty());
        assert_eq!(cache.get_or_load(5, async { Ok(5) }).await, Ok(5));
    }
}
