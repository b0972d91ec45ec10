//! The in-flight journal and the recovery of interrupted requests (issue 13), on SQLite (a
//! temp file) and PostgreSQL (a fresh schema): rows of an instance whose lease lapsed become
//! `interrupted` records billed at their estimate, exactly once, even when several gateways
//! recover at the same time; rows of live instances and finished requests stay untouched.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use llmux_gateway::store::{self, InflightRecord, NewKey, RecordQuery, Store, UsageRecord};

on_both_stores!(
    issue_13_journal_rows_of_a_dead_instance_are_recorded_once_as_interrupted,
    issue_13_concurrent_recoveries_record_each_interrupted_request_once,
    a_replayed_batch_is_written_once_with_its_journal_rows_and_clears,
);

fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// A store on `url`; for SQLite memory URLs a temp file instead, so several handles (replicas)
/// can share it. The temp dir lives as long as the returned guard.
async fn open_shared(url: &str) -> (String, Option<tempfile::TempDir>) {
    if url.starts_with("sqlite") {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("ledger.db").display());
        (url, Some(dir))
    } else {
        (url.to_owned(), None)
    }
}

fn journal(id: &str, instance: &str, key_id: i64) -> InflightRecord {
    InflightRecord {
        request_id: id.to_owned(),
        instance: instance.to_owned(),
        at_ms: now_ms(),
        key_id: Some(key_id),
        channel: "oa".into(),
        provider: "openai".into(),
        model: "m".into(),
        upstream_model: "m-up".into(),
        plan: "oa,backup".into(),
        input_tokens: 30,
        output_tokens: 70,
        cost: 0.25,
        stream: true,
        client_request_id: Some(format!("client-{id}")),
        team_id: None,
    }
}

fn finished(id: &str, key_id: i64) -> UsageRecord {
    UsageRecord {
        request_id: id.to_owned(),
        at_ms: now_ms(),
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

/// A store on `url` (see [`open_shared`]) with one key, `k`.
async fn store_with_key(
    url: &str,
) -> (Arc<dyn Store>, store::KeyRecord, Option<tempfile::TempDir>) {
    let (url, dir) = open_shared(url).await;
    let store = store::open(&url).await.unwrap();
    let (key, _) = store
        .create_key(NewKey {
            name: "k".into(),
            ..NewKey::default()
        })
        .await
        .unwrap();
    (store, key, dir)
}

async fn spent(store: &dyn Store, id: i64) -> (u64, f64) {
    let k = store
        .list_keys()
        .await
        .unwrap()
        .into_iter()
        .find(|k| k.id == id)
        .unwrap();
    (k.spent_tokens, k.spent_cost)
}

async fn issue_13_journal_rows_of_a_dead_instance_are_recorded_once_as_interrupted(url: &str) {
    let (store, key, _dir) = store_with_key(url).await;
    let now = now_ms();
    store.renew_lease("alive", now, now + 60_000).await.unwrap();
    store
        .renew_lease("dead", now - 120_000, now - 1)
        .await
        .unwrap();
    // The dead instance journaled four requests: one finished (its record replaced its row in
    // the same commit), one abandoned, two were in flight when it died. The live instance has
    // one in flight.
    store
        .commit(
            &[
                journal("d1", "dead", key.id),
                journal("d2", "dead", key.id),
                journal("d3", "dead", key.id),
                journal("d4", "dead", key.id),
                journal("a1", "alive", key.id),
            ],
            &[],
            &[],
        )
        .await
        .unwrap();
    // d1's record replaces its row by itself; d4 ended without one.
    store
        .commit(&[], &[finished("d1", key.id)], &["d4".into()])
        .await
        .unwrap();
    assert_eq!(store.inflight_count().await.unwrap(), 3);
    assert_eq!(spent(store.as_ref(), key.id).await, (11, 0.5));

    let recovered = store.recover_interrupted(now_ms()).await.unwrap();
    let mut ids: Vec<&str> = recovered.iter().map(|r| r.request_id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["d2", "d3"]);
    assert_eq!(
        store.inflight_count().await.unwrap(),
        1,
        "the live instance's row stays"
    );
    let recs = store.records(RecordQuery::default()).await.unwrap();
    assert_eq!(recs.len(), 3);
    for r in recs.iter().filter(|r| r.request_id != "d1") {
        assert_eq!(r.error_kind.as_deref(), Some(store::INTERRUPTED), "{r:?}");
        assert_eq!(r.status, 0);
        assert_eq!((r.input_tokens, r.output_tokens), (30, 70));
        assert!(r.usage_estimated && r.stream && !r.cancelled);
        assert_eq!(
            r.client_request_id,
            Some(format!("client-{}", r.request_id))
        );
        assert_eq!(r.channel, "oa");
    }
    // Spend: the finished record plus both interrupted ones at their estimate.
    let (tokens, cost) = spent(store.as_ref(), key.id).await;
    assert_eq!(tokens, 11 + 2 * 100);
    assert!((cost - (0.5 + 2.0 * 0.25)).abs() < 1e-9, "{cost}");

    // Nothing twice: a second recovery finds nothing; the rollups agree with the records.
    assert!(store
        .recover_interrupted(now_ms())
        .await
        .unwrap()
        .is_empty());
    let by_key = store.usage(store::GroupBy::Key, None).await.unwrap();
    assert_eq!(by_key.len(), 1);
    assert_eq!(by_key[0].requests, 3);
    assert_eq!(by_key[0].input_tokens + by_key[0].output_tokens, 211);

    // The live instance's row is recovered once its lease lapses (or is released).
    store.release_lease("alive").await.unwrap();
    let late = store.recover_interrupted(now_ms()).await.unwrap();
    assert_eq!(late.len(), 1);
    assert_eq!(late[0].request_id, "a1");
    assert_eq!(store.inflight_count().await.unwrap(), 0);
    assert_eq!(store.usage_count().await.unwrap(), 4);
}

async fn issue_13_concurrent_recoveries_record_each_interrupted_request_once(url: &str) {
    let (url, _dir) = open_shared(url).await;
    // Four replicas on one database.
    let mut replicas: Vec<Arc<dyn Store>> = Vec::new();
    for _ in 0..4 {
        replicas.push(store::open(&url).await.unwrap());
    }
    let (key, _) = replicas[0]
        .create_key(NewKey {
            name: "k".into(),
            ..NewKey::default()
        })
        .await
        .unwrap();
    let now = now_ms();
    replicas[0]
        .renew_lease("gone", now - 60_000, now - 1)
        .await
        .unwrap();
    let rows: Vec<InflightRecord> = (0..300)
        .map(|i| journal(&format!("r{i:03}"), "gone", key.id))
        .collect();
    replicas[0].commit(&rows, &[], &[]).await.unwrap();

    let mut tasks = Vec::new();
    for r in &replicas {
        let r = r.clone();
        tasks.push(tokio::spawn(async move {
            r.recover_interrupted(now_ms()).await
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap().unwrap().len();
    }
    assert_eq!(
        total, 300,
        "each interrupted request is recovered by exactly one replica"
    );
    let store = &replicas[0];
    assert_eq!(store.usage_count().await.unwrap(), 300);
    assert_eq!(store.inflight_count().await.unwrap(), 0);
    let (tokens, cost) = spent(store.as_ref(), key.id).await;
    assert_eq!(tokens, 300 * 100);
    assert!((cost - 300.0 * 0.25).abs() < 1e-6, "{cost}");
}

/// A commit whose batch repeats records already stored (a replay) beside new ones: each record,
/// journal row and clear takes effect once. On SQLite the commit first assumes every record is
/// new, finds the replay by the row count, rolls back and runs again looking the stored ids up;
/// nothing of the first run may survive.
async fn a_replayed_batch_is_written_once_with_its_journal_rows_and_clears(url: &str) {
    let (store, key, _dir) = store_with_key(url).await;
    let a = finished("a", key.id);
    let b = finished("b", key.id);
    let c = finished("c", key.id);
    store
        .commit(&[], &[a.clone(), b.clone()], &[])
        .await
        .unwrap();
    store
        .commit(
            &[journal("j1", "me", key.id), journal("j2", "me", key.id)],
            &[b.clone(), c.clone(), a.clone()],
            &[],
        )
        .await
        .unwrap();
    assert_eq!(store.usage_count().await.unwrap(), 3);
    assert_eq!(store.inflight_count().await.unwrap(), 2);
    assert_eq!(spent(&*store, key.id).await, (33, 1.5));
    // A replay of the whole batch with a clear: the clear applies, nothing is counted again.
    store
        .commit(&[], &[c.clone(), b, a], &["j1".to_owned()])
        .await
        .unwrap();
    assert_eq!(store.usage_count().await.unwrap(), 3);
    assert_eq!(store.inflight_count().await.unwrap(), 1);
    assert_eq!(spent(&*store, key.id).await, (33, 1.5));
    let by_key = store.usage(store::GroupBy::Key, None).await.unwrap();
    assert_eq!(by_key.len(), 1);
    assert_eq!(
        (
            by_key[0].requests,
            by_key[0].input_tokens,
            by_key[0].output_tokens
        ),
        (3, 15, 18)
    );
    // And a new record after the replays is counted once.
    store
        .commit(&[], &[finished("d", key.id)], &[])
        .await
        .unwrap();
    assert_eq!(store.usage_count().await.unwrap(), 4);
    assert_eq!(spent(&*store, key.id).await, (44, 2.0));
}
