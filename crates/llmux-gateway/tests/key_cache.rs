//! The in-memory cache of virtual keys (`server.key_cache_ttl`): one store lookup per key and
//! TTL however many requests arrive together, misses never cached, expiry checked on every
//! request, revocations through the gateway applied at once, and a failing store answered
//! from a key's last known record (`server.key_stale_if_error`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use llmux_gateway::auth::{KeyVerifier, Principal, StoreKeys};
use llmux_gateway::config::RawLimits;
use llmux_gateway::store::{
    self, GroupBy, KeyRecord, KeyUpdate, NewKey, RecordQuery, Store, UsageRecord, UsageRow,
};

/// A real SQLite store that counts key lookups, and fails them while `down` is set.
struct Counting {
    inner: Arc<dyn Store>,
    finds: AtomicU32,
    down: AtomicBool,
}

#[async_trait::async_trait]
impl Store for Counting {
    async fn create_key(&self, new: NewKey) -> store::Result<(KeyRecord, String)> {
        self.inner.create_key(new).await
    }
    async fn find_key(&self, plaintext: &str) -> store::Result<Option<KeyRecord>> {
        self.finds.fetch_add(1, Ordering::SeqCst);
        // Give concurrent callers time to pile up behind the first lookup.
        tokio::task::yield_now().await;
        if self.down.load(Ordering::SeqCst) {
            // What a restarting database gives: the query fails, nothing is read.
            return Err(store::StoreError::Query {
                op: "look up a key",
                message: "connection reset by peer".into(),
            });
        }
        self.inner.find_key(plaintext).await
    }
    async fn list_keys(&self) -> store::Result<Vec<KeyRecord>> {
        self.inner.list_keys().await
    }
    async fn revoke_key(&self, id: i64) -> store::Result<bool> {
        self.inner.revoke_key(id).await
    }
    async fn update_key(&self, id: i64, update: KeyUpdate) -> store::Result<Option<KeyRecord>> {
        self.inner.update_key(id, update).await
    }
    async fn record_usage(&self, batch: &[UsageRecord]) -> store::Result<()> {
        self.inner.record_usage(batch).await
    }
    async fn usage(&self, by: GroupBy, since: Option<&str>) -> store::Result<Vec<UsageRow>> {
        self.inner.usage(by, since).await
    }
    async fn usage_count(&self) -> store::Result<u64> {
        self.inner.usage_count().await
    }
    async fn records(&self, query: RecordQuery) -> store::Result<Vec<UsageRecord>> {
        self.inner.records(query).await
    }
    async fn prune(&self, older_than_ms: i64) -> store::Result<u64> {
        self.inner.prune(older_than_ms).await
    }
}

async fn counting_store() -> Arc<Counting> {
    let inner = store::open("sqlite::memory:").await.unwrap();
    Arc::new(Counting {
        inner,
        finds: AtomicU32::new(0),
        down: AtomicBool::new(false),
    })
}

fn new_key(name: &str, expires_at: Option<i64>) -> NewKey {
    NewKey {
        name: name.into(),
        expires_at,
        models: vec![],
        rpm: None,
        tpm: Some(5_000),
        budget_tokens: None,
        budget_cost: None,
        ..NewKey::default()
    }
}

fn id_of(p: &Principal) -> i64 {
    p.key_id().expect("a virtual key")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_first_uses_make_one_lookup() {
    let store = counting_store().await;
    let (rec, key) = store.create_key(new_key("app", None)).await.unwrap();
    let keys = Arc::new(StoreKeys::new(
        store.clone(),
        RawLimits {
            rpm: Some(77),
            ..RawLimits::default()
        },
        Duration::from_secs(60),
    ));
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let (keys, key) = (keys.clone(), key.clone());
            tokio::spawn(async move { keys.verify(&key).await })
        })
        .collect();
    for t in tasks {
        let p = t.await.unwrap().unwrap().expect("the key is known");
        assert_eq!(id_of(&p), rec.id);
        // The record carries the server defaults and the key's own limits.
        let r = p.record().unwrap();
        assert_eq!((r.rpm, r.tpm), (Some(77), Some(5_000)));
    }
    assert_eq!(store.finds.load(Ordering::SeqCst), 1);
    for _ in 0..50 {
        keys.verify(&key).await.unwrap().unwrap();
    }
    assert_eq!(
        store.finds.load(Ordering::SeqCst),
        1,
        "later uses hit the cache"
    );
}

#[tokio::test]
async fn unknown_keys_are_not_cached_so_a_key_created_elsewhere_works_at_once() {
    let store = counting_store().await;
    let keys = StoreKeys::new(store.clone(), RawLimits::default(), Duration::from_secs(60));
    let absent = format!("sk-llmux-{}", "Z".repeat(40));
    assert!(keys.verify(&absent).await.unwrap().is_none());
    assert!(keys.verify(&absent).await.unwrap().is_none());
    assert_eq!(store.finds.load(Ordering::SeqCst), 2);
    // Not key-shaped: refused without touching the store.
    assert!(keys.verify("sk-other").await.unwrap().is_none());
    assert_eq!(store.finds.load(Ordering::SeqCst), 2);

    // Created after a miss (as `llmux keys create` or another gateway would): usable at once.
    let (rec, key) = store.create_key(new_key("late", None)).await.unwrap();
    let p = keys.verify(&key).await.unwrap().expect("found");
    assert_eq!(id_of(&p), rec.id);
}

#[tokio::test]
async fn expiry_is_checked_on_every_request_even_when_cached() {
    let store = counting_store().await;
    let keys = StoreKeys::new(store.clone(), RawLimits::default(), Duration::from_secs(60));
    let (_, expired) = store
        .create_key(new_key("old", Some(1_000_000_000)))
        .await
        .unwrap();
    for _ in 0..3 {
        let err = keys.verify(&expired).await.unwrap_err();
        assert_eq!(err.kind, llmux_core::ErrorKind::Authentication, "{err:?}");
    }
    assert_eq!(
        store.finds.load(Ordering::SeqCst),
        1,
        "the expired key came from the cache after the first lookup"
    );
}

#[tokio::test]
async fn revocations_elsewhere_apply_within_the_ttl_and_through_the_gateway_at_once() {
    let store = counting_store().await;
    let (rec, key) = store.create_key(new_key("app", None)).await.unwrap();

    // Cached: a revocation written straight to the store (the CLI, another gateway) is not
    // seen until the entry expires or the gateway is told.
    let cached = StoreKeys::new(store.clone(), RawLimits::default(), Duration::from_secs(60));
    assert!(cached.verify(&key).await.unwrap().is_some());
    assert!(store.revoke_key(rec.id).await.unwrap());
    assert!(cached.verify(&key).await.unwrap().is_some());
    cached.forget_cached();
    let err = cached.verify(&key).await.unwrap_err();
    assert_eq!(err.kind, llmux_core::ErrorKind::Authentication);

    // `key_cache_ttl = "0s"`: every request reads the store.
    let (_, key2) = store.create_key(new_key("b", None)).await.unwrap();
    let before = store.finds.load(Ordering::SeqCst);
    let uncached = StoreKeys::new(store.clone(), RawLimits::default(), Duration::ZERO);
    for _ in 0..5 {
        assert!(uncached.verify(&key2).await.unwrap().is_some());
    }
    assert_eq!(store.finds.load(Ordering::SeqCst), before + 5);
}

#[tokio::test]
async fn a_failing_store_is_answered_from_the_last_known_record_within_the_bound() {
    let store = counting_store().await;
    let (rec, key) = store.create_key(new_key("app", None)).await.unwrap();
    let (_, never_read) = store.create_key(new_key("new", None)).await.unwrap();
    // No cache at all, so every request goes to the store: only the last known record helps.
    let keys = StoreKeys::new(store.clone(), RawLimits::default(), Duration::ZERO);
    assert_eq!(id_of(&keys.verify(&key).await.unwrap().unwrap()), rec.id);

    store.down.store(true, Ordering::SeqCst);
    let before = store.finds.load(Ordering::SeqCst);
    let p = keys
        .verify(&key)
        .await
        .unwrap()
        .expect("served from its last known record");
    assert_eq!(id_of(&p), rec.id);
    assert_eq!(
        store.finds.load(Ordering::SeqCst),
        before + 1,
        "the store was asked first"
    );
    // A key this gateway never read cannot be vouched for.
    let err = keys.verify(&never_read).await.unwrap_err();
    assert_eq!(
        err.status,
        Some(http::StatusCode::SERVICE_UNAVAILABLE),
        "{err:?}"
    );
    // Told that keys changed (a revocation through the admin API): nothing stale is kept.
    keys.forget_cached();
    let err = keys.verify(&key).await.unwrap_err();
    assert_eq!(
        err.status,
        Some(http::StatusCode::SERVICE_UNAVAILABLE),
        "{err:?}"
    );

    // Once the store answers again, it is read again.
    store.down.store(false, Ordering::SeqCst);
    let before = store.finds.load(Ordering::SeqCst);
    assert!(keys.verify(&key).await.unwrap().is_some());
    assert_eq!(store.finds.load(Ordering::SeqCst), before + 1);

    // `key_stale_if_error = "0s"`: a failing store is a 503 at once.
    let strict = StoreKeys::new(store.clone(), RawLimits::default(), Duration::ZERO)
        .stale_if_error(Duration::ZERO);
    store.down.store(false, Ordering::SeqCst);
    assert!(strict.verify(&key).await.unwrap().is_some());
    store.down.store(true, Ordering::SeqCst);
    let err = strict.verify(&key).await.unwrap_err();
    assert_eq!(
        err.status,
        Some(http::StatusCode::SERVICE_UNAVAILABLE),
        "{err:?}"
    );
}
