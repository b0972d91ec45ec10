//! The batching usage recorder: nothing lost under load, a full channel, failing writes,
//! lost acknowledgements or shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use llmux_gateway::store::{
    self, GroupBy, KeyRecord, KeyUpdate, NewKey, Store, StoreError, UsageRecord, UsageRow,
};
use llmux_gateway::usage::{RecorderConfig, RecorderError, UsageRecorder};
use tokio::sync::Semaphore;

fn rec(id: String) -> UsageRecord {
    UsageRecord {
        request_id: id,
        at_ms: 1_740_787_200_000,
        model: "qwen-plus".into(),
        input_tokens: 3,
        output_tokens: 2,
        status: 200,
        ..Default::default()
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Fault {
    /// Fail without writing.
    Fail,
    /// Write, then report a failure (a lost acknowledgement): the retry is a replay.
    WriteThenFail,
}

/// An in-memory store keyed by request id, failing its first `fail_first` writes, optionally
/// blocking writes until `gate` has permits.
struct FakeStore {
    rows: Mutex<HashMap<String, UsageRecord>>,
    calls: AtomicU32,
    fail_first: u32,
    fault: Fault,
    gate: Option<Semaphore>,
}

impl FakeStore {
    fn new(fail_first: u32, fault: Fault) -> Arc<Self> {
        Arc::new(FakeStore {
            rows: Mutex::new(HashMap::new()),
            calls: AtomicU32::new(0),
            fail_first,
            fault,
            gate: None,
        })
    }

    fn count(&self) -> usize {
        self.rows.lock().unwrap().len()
    }
}

fn unsupported() -> StoreError {
    StoreError::Data("not supported by the fake store".into())
}

#[async_trait::async_trait]
impl Store for FakeStore {
    async fn create_key(&self, _: NewKey) -> store::Result<(KeyRecord, String)> {
        Err(unsupported())
    }
    async fn find_key(&self, _: &str) -> store::Result<Option<KeyRecord>> {
        Ok(None)
    }
    async fn list_keys(&self) -> store::Result<Vec<KeyRecord>> {
        Ok(vec![])
    }
    async fn revoke_key(&self, _: i64) -> store::Result<bool> {
        Ok(false)
    }
    async fn update_key(&self, _: i64, _: KeyUpdate) -> store::Result<Option<KeyRecord>> {
        Err(unsupported())
    }
    async fn record_usage(&self, batch: &[UsageRecord]) -> store::Result<()> {
        if let Some(gate) = &self.gate {
            gate.acquire().await.unwrap().forget();
        }
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let failing = n < self.fail_first;
        if failing && self.fault == Fault::Fail {
            return Err(StoreError::Data(format!("injected failure {n}")));
        }
        let mut rows = self.rows.lock().unwrap();
        for r in batch {
            rows.entry(r.request_id.clone())
                .or_insert_with(|| r.clone());
        }
        if failing {
            return Err(StoreError::Data(format!("injected lost ack {n}")));
        }
        Ok(())
    }
    async fn usage(&self, _: GroupBy, _: Option<&str>) -> store::Result<Vec<UsageRow>> {
        Ok(vec![])
    }
    async fn usage_count(&self) -> store::Result<u64> {
        Ok(self.count() as u64)
    }
    async fn records(&self, _: store::RecordQuery) -> store::Result<Vec<UsageRecord>> {
        Err(unsupported())
    }
    async fn prune(&self, _: i64) -> store::Result<u64> {
        Ok(0)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_records_from_many_tasks_are_all_in_sqlite_after_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("usage.db").display());
    let store = store::open(&url).await.unwrap();
    let recorder = UsageRecorder::spawn(store.clone(), RecorderConfig::default());
    let mut tasks = Vec::new();
    for t in 0..50 {
        let recorder = recorder.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..200 {
                recorder.record(rec(format!("req-{t}-{i}")));
                if i % 16 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(recorder.clone().shutdown().await.unwrap(), 10_000);
    assert_eq!(store.usage_count().await.unwrap(), 10_000);
    let by_model = store.usage(GroupBy::Model, None).await.unwrap();
    assert_eq!(by_model[0].requests, 10_000);
    assert_eq!(by_model[0].input_tokens, 30_000);
    assert_eq!(recorder.backlog(), 0);
}

#[tokio::test(start_paused = true)]
async fn failed_writes_are_retried_until_every_record_is_stored() {
    // 12 failures: more than one batch's 5 retries, so a batch is set aside and retried on a
    // later flush.
    let fake = FakeStore::new(12, Fault::Fail);
    let recorder = UsageRecorder::spawn(fake.clone(), RecorderConfig::default());
    for i in 0..1_000 {
        recorder.record(rec(format!("r{i}")));
    }
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(
        fake.count(),
        1_000,
        "written while running, before shutdown"
    );
    assert_eq!(recorder.clone().shutdown().await.unwrap(), 1_000);
    assert!(fake.calls.load(Ordering::SeqCst) > 12);
}

#[tokio::test(start_paused = true)]
async fn lost_acknowledgements_replay_without_double_counting() {
    let fake = FakeStore::new(3, Fault::WriteThenFail);
    let recorder = UsageRecorder::spawn(fake.clone(), RecorderConfig::default());
    for i in 0..600 {
        recorder.record(rec(format!("r{i}")));
    }
    assert_eq!(recorder.shutdown().await.unwrap(), 600);
    assert_eq!(fake.count(), 600);
}

#[tokio::test(start_paused = true)]
async fn shutdown_returns_the_records_it_could_not_write() {
    let fake = FakeStore::new(u32::MAX, Fault::Fail);
    let recorder = UsageRecorder::spawn(fake.clone(), RecorderConfig::default());
    for i in 0..300 {
        recorder.record(rec(format!("r{i}")));
    }
    match recorder.shutdown().await {
        Err(RecorderError::Unwritten { mut records, .. }) => {
            records.sort_by(|a, b| a.request_id.cmp(&b.request_id));
            records.dedup_by(|a, b| a.request_id == b.request_id);
            assert_eq!(records.len(), 300);
        }
        other => panic!("expected the unwritten records back, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_full_channel_overflows_instead_of_blocking_or_dropping() {
    let fake = Arc::new(FakeStore {
        gate: Some(Semaphore::new(0)),
        ..Arc::into_inner(FakeStore::new(0, Fault::Fail)).unwrap()
    });
    let cfg = RecorderConfig {
        channel_capacity: 4,
        overflow_limit: 10,
        batch_size: 8,
        ..RecorderConfig::default()
    };
    let recorder = UsageRecorder::spawn(fake.clone(), cfg);
    // The writer is stuck on the gate; every call must still return at once.
    for i in 0..100 {
        recorder.record(rec(format!("r{i}")));
    }
    assert_eq!(recorder.backlog(), 100);
    assert!(recorder.is_saturated());
    fake.gate.as_ref().unwrap().add_permits(1_000);
    assert_eq!(recorder.clone().shutdown().await.unwrap(), 100);
    assert_eq!(fake.count(), 100);
    assert_eq!(recorder.backlog(), 0);
    assert!(!recorder.is_saturated());
}

#[tokio::test(start_paused = true)]
async fn a_partial_batch_is_written_after_the_flush_interval() {
    let fake = FakeStore::new(0, Fault::Fail);
    let recorder = UsageRecorder::spawn(fake.clone(), RecorderConfig::default());
    for i in 0..3 {
        recorder.record(rec(format!("r{i}")));
    }
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(fake.count(), 3);
    assert_eq!(recorder.written(), 3);
    // Dropping every handle stops the writer after a final drain.
    recorder.record(rec("last".into()));
    drop(recorder);
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(fake.count(), 4);
}

/// `sync` durability is a group commit: requests that arrive while a commit runs share the
/// next transaction, and each waiter is told when its own record is committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_13_sync_mode_commits_concurrent_requests_in_shared_transactions() {
    let fake = Arc::new(FakeStore {
        gate: Some(Semaphore::new(0)),
        ..Arc::into_inner(FakeStore::new(0, Fault::Fail)).unwrap()
    });
    let cfg = RecorderConfig {
        commit_timeout: Duration::from_secs(60),
        ..RecorderConfig::default()
    };
    let recorder = UsageRecorder::spawn(fake.clone(), cfg);
    // Commits are held at the gate until all 100 records are queued: a writer committing each
    // record on its own would need 100 transactions.
    let first = {
        let r = recorder.clone();
        tokio::spawn(async move { r.record_durably(rec("r0".into())).await })
    };
    let mut rest = Vec::new();
    for i in 1..100 {
        let r = recorder.clone();
        rest.push(tokio::spawn(async move {
            r.record_durably(rec(format!("r{i}"))).await
        }));
    }
    while recorder.backlog() < 100 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        fake.count(),
        0,
        "nothing is committed while the gate is shut"
    );
    fake.gate.as_ref().unwrap().add_permits(1_000);
    assert!(first.await.unwrap(), "told of its commit");
    for t in rest {
        assert!(t.await.unwrap(), "every waiter is told of its commit");
    }
    assert_eq!(fake.count(), 100);
    let calls = fake.calls.load(Ordering::SeqCst);
    assert!(
        calls <= 3,
        "100 concurrent records took {calls} transactions, not one each"
    );
    recorder.shutdown().await.unwrap();
}

/// A waiter gives up after `commit_timeout` when the store hangs; the record is not lost: it
/// is written once the store answers again.
#[tokio::test(start_paused = true)]
async fn issue_13_a_stuck_store_bounds_the_wait_and_keeps_the_record() {
    let fake = Arc::new(FakeStore {
        gate: Some(Semaphore::new(0)),
        ..Arc::into_inner(FakeStore::new(0, Fault::Fail)).unwrap()
    });
    let cfg = RecorderConfig {
        commit_timeout: Duration::from_millis(500),
        ..RecorderConfig::default()
    };
    let recorder = UsageRecorder::spawn(fake.clone(), cfg);
    let started = tokio::time::Instant::now();
    assert!(!recorder.record_durably(rec("slow".into())).await);
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(recorder.backlog(), 1, "still queued");
    fake.gate.as_ref().unwrap().add_permits(10);
    assert_eq!(recorder.shutdown().await.unwrap(), 1);
    assert_eq!(fake.count(), 1);
}

/// `relaxed` durability never waits and keeps no journal.
#[tokio::test(start_paused = true)]
async fn relaxed_mode_neither_waits_nor_journals() {
    let fake = FakeStore::new(0, Fault::Fail);
    let cfg = RecorderConfig {
        durability: llmux_gateway::usage::Durability::Relaxed,
        ..RecorderConfig::default()
    };
    let recorder = UsageRecorder::spawn(fake.clone(), cfg);
    assert!(recorder
        .journal(llmux_gateway::store::InflightRecord::default())
        .is_none());
    assert!(!recorder.record_durably(rec("a".into())).await);
    assert_eq!(fake.count(), 0, "written at the next flush, not at once");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(fake.count(), 1);
    recorder.shutdown().await.unwrap();
}
