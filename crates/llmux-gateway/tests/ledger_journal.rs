//! The local usage journal (issue 14): what a killed gateway left in it is recorded at the
//! next start (completed requests once, requests in flight once as interrupted, a truncated
//! last line survived), two gateways never share one, and its segments are deleted once their
//! records are committed. Recovery runs on SQLite and on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Seek as _, SeekFrom, Write as _};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use llmux_gateway::store::{self, InflightRecord, NewKey, RecordQuery, Store, UsageRecord};
use llmux_gateway::usage::{
    JournalConfig, JournalError, LedgerJournal, RecorderConfig, Recovery, UsageRecorder,
};

on_both_stores!(issue_14_a_killed_gateways_journal_is_recorded_once_at_the_next_start,);

fn begin(id: &str, key_id: i64) -> InflightRecord {
    InflightRecord {
        request_id: id.to_owned(),
        instance: "dead".into(),
        at_ms: 1_767_225_600_000,
        key_id: Some(key_id),
        channel: "oa".into(),
        provider: "openai".into(),
        model: "m".into(),
        upstream_model: "m-up".into(),
        plan: "oa".into(),
        input_tokens: 30,
        output_tokens: 70,
        cost: 0.25,
        stream: false,
        client_request_id: Some(format!("client-{id}")),
        team_id: None,
    }
}

fn finished(id: &str, key_id: i64) -> UsageRecord {
    UsageRecord {
        request_id: id.to_owned(),
        at_ms: 1_767_225_600_000,
        key_id: Some(key_id),
        channel: "oa".into(),
        provider: "openai".into(),
        model: "m".into(),
        upstream_model: "m-up".into(),
        input_tokens: 5,
        output_tokens: 6,
        cost: 0.5,
        status: 200,
        ..UsageRecord::default()
    }
}

/// The bytes of a segment before its first zero byte (the reserved, unwritten rest).
fn used(path: &Path) -> Vec<u8> {
    let mut bytes = std::fs::read(path).unwrap();
    if let Some(end) = bytes.iter().position(|&b| b == 0) {
        bytes.truncate(end);
    }
    bytes
}

/// The segment files in a journal directory, sorted.
fn segment_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    v.sort();
    v
}

async fn issue_14_a_killed_gateways_journal_is_recorded_once_at_the_next_start(url: &str) {
    let store = store::open(url).await.unwrap();
    let (key, _) = store
        .create_key(NewKey {
            name: "k".into(),
            ..NewKey::default()
        })
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let jdir = dir.path().join("ledger");
    let (journal, first) = LedgerJournal::open(&jdir, JournalConfig::default(), store.as_ref())
        .await
        .unwrap();
    assert_eq!(first, Recovery::default(), "a new journal holds nothing");
    // Five requests: `done` and `flushed` completed (the writer committed `flushed`, not yet
    // `done`), `gone` ended before any upstream call, `open1` and `open2` were in flight.
    for id in ["done", "flushed", "gone", "open1", "open2"] {
        journal.begin(&begin(id, key.id)).unwrap();
    }
    journal.record(&finished("done", key.id)).unwrap();
    journal.record(&finished("flushed", key.id)).unwrap();
    assert!(journal.abandon("gone"));
    store
        .commit(&[], &[finished("flushed", key.id)], &[])
        .await
        .unwrap();
    // The process dies: nothing is closed, the last copy was cut in the middle (its bytes end
    // where the segment's unwritten, zero rest begins).
    drop(journal);
    let segs = segment_files(&jdir);
    assert_eq!(segs.len(), 1);
    let mut seg = std::fs::OpenOptions::new()
        .write(true)
        .open(&segs[0])
        .unwrap();
    seg.seek(SeekFrom::Start(used(&segs[0]).len() as u64))
        .unwrap();
    seg.write_all(br#"["r","torn",null,1767225600000,null,"oa","#)
        .unwrap();
    drop(seg);

    let (journal, rec) = LedgerJournal::open(&jdir, JournalConfig::default(), store.as_ref())
        .await
        .unwrap();
    assert_eq!(
        rec,
        Recovery {
            segments: 1,
            records: 2,
            interrupted: 2,
            skipped_lines: 1,
        }
    );
    let recs = store.records(RecordQuery::default()).await.unwrap();
    let mut ids: Vec<&str> = recs.iter().map(|r| r.request_id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        ["done", "flushed", "open1", "open2"],
        "every completed request once, every request in flight once, nothing for `gone`"
    );
    for r in &recs {
        if r.request_id.starts_with("open") {
            assert_eq!(r.error_kind.as_deref(), Some(store::INTERRUPTED), "{r:?}");
            assert_eq!((r.status, r.input_tokens, r.output_tokens), (0, 30, 70));
            assert!(r.usage_estimated);
            assert_eq!(
                r.client_request_id,
                Some(format!("client-{}", r.request_id))
            );
        } else {
            assert_eq!((r.status, r.input_tokens, r.output_tokens), (200, 5, 6));
            assert!(r.error_kind.is_none());
        }
    }
    let k = store.list_keys().await.unwrap().remove(0);
    assert_eq!(k.spent_tokens, 2 * 11 + 2 * 100, "debited once per record");
    assert!((k.spent_cost - (2.0 * 0.5 + 2.0 * 0.25)).abs() < 1e-9);
    // The old segment is gone; the new journal has one empty segment.
    let segs = segment_files(&jdir);
    assert_eq!(segs.len(), 1);
    assert!(used(&segs[0]).is_empty(), "it holds no line");

    // Killed again with nothing new: the next start records nothing more.
    drop(journal);
    let (journal, rec) = LedgerJournal::open(&jdir, JournalConfig::default(), store.as_ref())
        .await
        .unwrap();
    assert_eq!(rec.records + rec.interrupted, 0);
    assert_eq!(store.usage_count().await.unwrap(), 4);
    // A clean close with nothing pending leaves no segment.
    assert_eq!(journal.close(), 0);
    assert!(segment_files(&jdir).is_empty());
}

/// A record that reached the store before the crash is in the journal too; recovering it
/// again (and a begin whose record the store has) never doubles it.
#[tokio::test]
async fn issue_14_recovery_never_doubles_what_the_store_already_has() {
    let store = store::open("sqlite::memory:").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = LedgerJournal::open(dir.path(), JournalConfig::default(), store.as_ref())
        .await
        .unwrap();
    journal.begin(&begin("a", 1)).unwrap();
    journal.begin(&begin("b", 1)).unwrap();
    journal.record(&finished("a", 1)).unwrap();
    // `b` was recorded by another path (the store's journal fallback) and committed.
    store
        .commit(&[], &[finished("a", 1), finished("b", 1)], &[])
        .await
        .unwrap();
    drop(journal);
    let (_journal, rec) = LedgerJournal::open(dir.path(), JournalConfig::default(), store.as_ref())
        .await
        .unwrap();
    assert_eq!((rec.records, rec.interrupted), (1, 1));
    let recs = store.records(RecordQuery::default()).await.unwrap();
    assert_eq!(recs.len(), 2);
    assert!(
        recs.iter().all(|r| r.status == 200),
        "the committed records win: {recs:?}"
    );
}

#[tokio::test]
async fn issue_14_two_journals_on_one_directory_the_second_is_refused() {
    let store = store::open("sqlite::memory:").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (first, _) = LedgerJournal::open(dir.path(), JournalConfig::default(), store.as_ref())
        .await
        .unwrap();
    first.begin(&begin("x", 1)).unwrap();
    let err = LedgerJournal::open(dir.path(), JournalConfig::default(), store.as_ref())
        .await
        .unwrap_err();
    assert!(matches!(err, JournalError::Locked { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("in use by another gateway")
            && msg.contains(&dir.path().display().to_string())
            && msg.contains("server.usage_journal"),
        "{msg}"
    );
    // The refused start touched nothing: the first journal's begin is still there.
    assert_eq!(store.usage_count().await.unwrap(), 0);
    assert!(first.abandon("x"));
    assert_eq!(first.close(), 0);
    // Released at close: the next gateway may open it.
    let (again, rec) = LedgerJournal::open(dir.path(), JournalConfig::default(), store.as_ref())
        .await
        .unwrap();
    assert_eq!(rec, Recovery::default());
    again.close();
}

/// Under load the journal rolls many segments and deletes each once its records are
/// committed: the directory holds a few segments at any time, none after a clean shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_14_segments_are_deleted_once_committed_under_load() {
    const TASKS: usize = 16;
    const PER_TASK: usize = 1_000;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("usage.db").display());
    let store = store::open(&url).await.unwrap();
    let jdir = dir.path().join("ledger");
    let cfg = JournalConfig {
        segment_bytes: 16 * 1024,
        roll_after_flush_bytes: 4 * 1024,
    };
    let (journal, _) = LedgerJournal::open(&jdir, cfg, store.as_ref())
        .await
        .unwrap();
    let journal = Arc::new(journal);
    let recorder = UsageRecorder::spawn_journaled(
        store.clone(),
        RecorderConfig {
            batch_size: 128,
            ..RecorderConfig::default()
        },
        Arc::from("load"),
        journal.clone(),
    );
    let most = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let (recorder, most, jdir) = (recorder.clone(), most.clone(), jdir.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..PER_TASK {
                if i % 50 == 0 {
                    most.fetch_max(segment_files(&jdir).len(), Ordering::Relaxed);
                }
                let id = format!("t{t}-{i}");
                // Requests take time: at most a few hundred records wait for the writer.
                while recorder.backlog() > 256 {
                    tokio::task::yield_now().await;
                }
                let rx = recorder.journal(begin(&id, 1)).expect("journaled");
                assert!(recorder.wait_commit(rx).await, "durable at once");
                assert!(recorder.record_durably(finished(&id, 1)).await);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let last = segment_files(&jdir);
    let rolled: u64 = last
        .last()
        .and_then(|p| p.file_stem()?.to_str()?.strip_prefix("seg-")?.parse().ok())
        .unwrap();
    assert_eq!(
        recorder.clone().shutdown().await.unwrap(),
        (TASKS * PER_TASK) as u64
    );
    assert_eq!(
        store.usage_count().await.unwrap(),
        (TASKS * PER_TASK) as u64
    );
    assert!(
        rolled >= 100,
        "{rolled} segments for ~{} MB of lines",
        TASKS * PER_TASK * 300 / 1_000_000
    );
    let most = most.load(Ordering::Relaxed);
    eprintln!("{rolled} segments written, at most {most} on disk at once");
    assert!(
        most <= 24,
        "at most {most} segments at once while {rolled} were written"
    );
    assert!(
        segment_files(&jdir).is_empty(),
        "a clean shutdown that wrote everything leaves no segment"
    );
    assert_eq!(journal.pending(), 0);
}

/// A record the store never took stays in the journal through a shutdown and is recorded at
/// the next start.
#[tokio::test]
async fn issue_14_records_the_store_refused_at_shutdown_stay_in_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("usage.db").display());
    let store = store::open(&url).await.unwrap();
    let jdir = dir.path().join("ledger");
    let (journal, _) = LedgerJournal::open(&jdir, JournalConfig::default(), store.as_ref())
        .await
        .unwrap();
    let failing: Arc<dyn Store> = Arc::new(Refusing);
    let recorder = UsageRecorder::spawn_journaled(
        failing,
        RecorderConfig {
            max_retries: 0,
            ..RecorderConfig::default()
        },
        Arc::from("x"),
        Arc::new(journal),
    );
    let rx = recorder.journal(begin("kept", 1)).unwrap();
    assert!(recorder.wait_commit(rx).await);
    assert!(recorder.record_durably(finished("kept", 1)).await);
    assert!(recorder.shutdown().await.is_err(), "the store refused it");
    assert_eq!(segment_files(&jdir).len(), 1, "kept for the next start");
    let (_j, rec) = LedgerJournal::open(&jdir, JournalConfig::default(), store.as_ref())
        .await
        .unwrap();
    assert_eq!((rec.records, rec.interrupted), (1, 0));
    assert_eq!(store.usage_count().await.unwrap(), 1);
}

/// A store whose every write fails.
struct Refusing;

#[async_trait::async_trait]
impl Store for Refusing {
    async fn create_key(&self, _: NewKey) -> store::Result<(store::KeyRecord, String)> {
        Err(store::StoreError::Data("refused".into()))
    }
    async fn find_key(&self, _: &str) -> store::Result<Option<store::KeyRecord>> {
        Ok(None)
    }
    async fn list_keys(&self) -> store::Result<Vec<store::KeyRecord>> {
        Ok(vec![])
    }
    async fn revoke_key(&self, _: i64) -> store::Result<bool> {
        Ok(false)
    }
    async fn update_key(
        &self,
        _: i64,
        _: store::KeyUpdate,
    ) -> store::Result<Option<store::KeyRecord>> {
        Ok(None)
    }
    async fn record_usage(&self, _: &[UsageRecord]) -> store::Result<()> {
        Err(store::StoreError::Data("refused".into()))
    }
    async fn usage(
        &self,
        _: store::GroupBy,
        _: Option<&str>,
    ) -> store::Result<Vec<store::UsageRow>> {
        Ok(vec![])
    }
    async fn usage_count(&self) -> store::Result<u64> {
        Ok(0)
    }
    async fn records(&self, _: RecordQuery) -> store::Result<Vec<UsageRecord>> {
        Ok(vec![])
    }
    async fn prune(&self, _: i64) -> store::Result<u64> {
        Ok(0)
    }
}

/// An entry the file journal cannot take (here: a line over its 64 KiB bound) goes to the
/// database's journal and is waited for, so the request is still journaled before its
/// upstream call and its record durable before its answer ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_14_an_entry_the_file_journal_cannot_take_goes_to_the_database_journal() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("usage.db").display());
    let store = store::open(&url).await.unwrap();
    let jdir = dir.path().join("ledger");
    let (journal, _) = LedgerJournal::open(&jdir, JournalConfig::default(), store.as_ref())
        .await
        .unwrap();
    let journal = Arc::new(journal);
    let recorder = UsageRecorder::spawn_journaled(
        store.clone(),
        RecorderConfig {
            commit_timeout: std::time::Duration::from_secs(30),
            ..RecorderConfig::default()
        },
        Arc::from("x"),
        journal.clone(),
    );
    let huge = Some("x".repeat(70 * 1024));
    let oversized = |id: &str| InflightRecord {
        client_request_id: huge.clone(),
        ..begin(id, 1)
    };
    // Journaled in the database, committed before `wait_commit` returns.
    let rx = recorder.journal(oversized("big")).unwrap();
    assert!(recorder.wait_commit(rx).await);
    assert_eq!(store.inflight_count().await.unwrap(), 1);
    // Its record cannot be appended either: committed before `record_durably` returns, and
    // it replaces the database's journal row.
    let rec = UsageRecord {
        client_request_id: huge.clone(),
        ..finished("big", 1)
    };
    assert!(recorder.record_durably(rec).await);
    assert_eq!(store.usage_count().await.unwrap(), 1);
    assert_eq!(store.inflight_count().await.unwrap(), 0);
    // An oversized request that ends without a record clears its database row.
    let rx = recorder.journal(oversized("dropped")).unwrap();
    assert!(recorder.wait_commit(rx).await);
    assert_eq!(store.inflight_count().await.unwrap(), 1);
    recorder.abandon("dropped".to_owned());
    // Ordinary entries still use the file journal meanwhile.
    let rx = recorder.journal(begin("small", 1)).unwrap();
    assert!(recorder.wait_commit(rx).await);
    assert!(recorder.record_durably(finished("small", 1)).await);
    assert_eq!(recorder.shutdown().await.unwrap(), 2);
    assert_eq!(
        store.inflight_count().await.unwrap(),
        0,
        "the abandon cleared it"
    );
    assert_eq!(store.usage_count().await.unwrap(), 2);
    assert!(segment_files(&jdir).is_empty());
}
