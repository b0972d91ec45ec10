//! The usage-event outbox of the store (issue 17), on SQLite (a temp file) and PostgreSQL (a
//! fresh schema of 127.0.0.1:5432): queued in the record's own transaction, never twice for a
//! replayed record, claimed under a lease that other claimers respect (and that lapses), and
//! deleted only when acknowledged. On PostgreSQL, concurrent claimers take disjoint rows.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::PgSchema;
use llmux_gateway::limits::BudgetCalendar;
use llmux_gateway::store::{self, InflightRecord, OutboxStore, Store, StoreOptions, UsageRecord};

/// A store with the outbox on (or off) over `url`.
async fn open(url: &str, outbox: bool) -> Arc<dyn Store> {
    store::open_with_options(url, BudgetCalendar::utc(), StoreOptions { outbox })
        .await
        .unwrap()
}

fn rec(id: &str) -> UsageRecord {
    UsageRecord {
        request_id: id.to_owned(),
        at_ms: 1_740_787_200_000,
        channel: "oa".into(),
        provider: "openai".into(),
        model: "m".into(),
        upstream_model: "m".into(),
        input_tokens: 10,
        output_tokens: 5,
        cost: 0.25,
        status: 200,
        ..UsageRecord::default()
    }
}

fn outbox(s: &Arc<dyn Store>) -> &dyn OutboxStore {
    s.outbox().expect("SQL stores keep an outbox")
}

macro_rules! on_both {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let dir = tempfile::tempdir().unwrap();
                    let url = format!("sqlite://{}", dir.path().join("gw.db").display());
                    super::$case(&url).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let Some(pg) = super::PgSchema::create().await else { return };
                    super::$case(&pg.url).await;
                    pg.drop_schema().await;
                }
            )*
        }
    };
}

on_both!(
    records_queue_their_events_once_in_their_own_transaction,
    claims_hold_until_released_acknowledged_or_lapsed,
    interrupted_requests_queue_their_events_too,
);

async fn records_queue_their_events_once_in_their_own_transaction(url: &str) {
    // Off: nothing queued.
    let off = open(url, false).await;
    off.record_usage(&[rec("off-1")]).await.unwrap();
    assert!(!outbox(&off).outbox_enabled());
    assert_eq!(outbox(&off).outbox_depth().await.unwrap(), 0);
    drop(off);

    let s = open(url, true).await;
    assert!(outbox(&s).outbox_enabled());
    let batch: Vec<UsageRecord> = (0..5).map(|i| rec(&format!("r-{i}"))).collect();
    s.record_usage(&batch).await.unwrap();
    assert_eq!(outbox(&s).outbox_depth().await.unwrap(), 5);
    // A replayed batch, and a record already stored before the outbox was on: nothing new.
    s.record_usage(&batch).await.unwrap();
    s.record_usage(&[rec("off-1"), rec("r-5")]).await.unwrap();
    assert_eq!(outbox(&s).outbox_depth().await.unwrap(), 6);
    let rows = outbox(&s).claim_outbox("me", 1, 1_000, 100).await.unwrap();
    let ids: Vec<&str> = rows.iter().map(|r| r.request_id.as_str()).collect();
    assert_eq!(
        ids,
        ["r-0", "r-1", "r-2", "r-3", "r-4", "r-5"],
        "in insertion order"
    );
    let first: UsageRecord = serde_json::from_str(&rows[0].payload).unwrap();
    assert_eq!(first, batch[0], "the payload is the record");
    assert!(rows.iter().all(|r| r.attempts == 1));
    assert_eq!(
        s.records(store::RecordQuery::default())
            .await
            .unwrap()
            .len(),
        7,
        "six records and the one from before"
    );

    // One transaction: when queuing the event fails, the record is not stored either (and
    // the key's spend does not move); once it works, the replay stores both.
    let (key, _) = s
        .create_key(store::NewKey {
            name: "k".into(),
            ..store::NewKey::default()
        })
        .await
        .unwrap();
    let with_key = UsageRecord {
        key_id: Some(key.id),
        ..rec("atomic-1")
    };
    refuse_outbox_inserts(url, true).await;
    assert!(s
        .record_usage(std::slice::from_ref(&with_key))
        .await
        .is_err());
    let find = |s: Arc<dyn Store>| async move {
        s.records(store::RecordQuery::default())
            .await
            .unwrap()
            .into_iter()
            .any(|r| r.request_id == "atomic-1")
    };
    assert!(!find(s.clone()).await, "no record without its event");
    assert_eq!(s.list_keys().await.unwrap()[0].spent_tokens, 0);
    refuse_outbox_inserts(url, false).await;
    s.record_usage(std::slice::from_ref(&with_key))
        .await
        .unwrap();
    assert!(find(s.clone()).await);
    assert_eq!(s.list_keys().await.unwrap()[0].spent_tokens, 15);
    assert_eq!(outbox(&s).outbox_depth().await.unwrap(), 7);
}

/// Adds (or drops) a trigger that makes every insert into `gw_outbox` fail, straight in the
/// test's database.
async fn refuse_outbox_inserts(url: &str, refuse: bool) {
    use sqlx::Connection as _;
    if let Some(path) = url.strip_prefix("sqlite://") {
        let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{path}"))
            .await
            .unwrap();
        let sql = if refuse {
            "CREATE TRIGGER refuse_outbox BEFORE INSERT ON gw_outbox \
             BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
        } else {
            "DROP TRIGGER refuse_outbox"
        };
        sqlx::query(sql).execute(&mut c).await.unwrap();
    } else {
        let (base, schema) = url.split_once("?schema=").unwrap();
        let mut c = sqlx::PgConnection::connect(base).await.unwrap();
        let sql = if refuse {
            format!(
                "CREATE FUNCTION \"{schema}\".refuse_outbox() RETURNS trigger LANGUAGE plpgsql AS \
                 $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$; \
                 CREATE TRIGGER refuse_outbox BEFORE INSERT ON \"{schema}\".gw_outbox \
                 FOR EACH ROW EXECUTE FUNCTION \"{schema}\".refuse_outbox()"
            )
        } else {
            format!(
                "DROP TRIGGER refuse_outbox ON \"{schema}\".gw_outbox; \
                 DROP FUNCTION \"{schema}\".refuse_outbox()"
            )
        };
        sqlx::raw_sql(&sql).execute(&mut c).await.unwrap();
    }
}

async fn claims_hold_until_released_acknowledged_or_lapsed(url: &str) {
    let s = open(url, true).await;
    let batch: Vec<UsageRecord> = (0..10).map(|i| rec(&format!("c-{i:02}"))).collect();
    s.record_usage(&batch).await.unwrap();
    let o = outbox(&s);
    let now = 10_000;
    let a = o.claim_outbox("a", now, now + 30_000, 4).await.unwrap();
    let b = o.claim_outbox("b", now, now + 30_000, 4).await.unwrap();
    let ids = |rows: &[store::OutboxRow]| -> Vec<String> {
        rows.iter().map(|r| r.request_id.clone()).collect()
    };
    assert_eq!(ids(&a), ["c-00", "c-01", "c-02", "c-03"]);
    assert_eq!(
        ids(&b),
        ["c-04", "c-05", "c-06", "c-07"],
        "b skips a's claim"
    );
    // a publishes two and hands back the other two; b's lapse.
    let a_seqs: Vec<i64> = a.iter().map(|r| r.seq).collect();
    assert_eq!(o.ack_outbox(&a_seqs[..2]).await.unwrap(), 2);
    // Only the claimer hands rows back.
    o.release_outbox("b", &a_seqs[2..]).await.unwrap();
    let c = o
        .claim_outbox("c", now + 1, now + 30_000, 10)
        .await
        .unwrap();
    assert_eq!(ids(&c), ["c-08", "c-09"], "a's and b's claims still hold");
    o.release_outbox("a", &a_seqs[2..]).await.unwrap();
    let d = o
        .claim_outbox("d", now + 2, now + 30_000, 10)
        .await
        .unwrap();
    assert_eq!(ids(&d), ["c-02", "c-03"], "handed back: claimable at once");
    assert!(d.iter().all(|r| r.attempts == 2), "{d:?}");
    // After the lease, b's rows (and everyone's) are claimable again.
    let e = o
        .claim_outbox("e", now + 30_001, now + 60_000, 100)
        .await
        .unwrap();
    assert_eq!(
        ids(&e),
        ["c-02", "c-03", "c-04", "c-05", "c-06", "c-07", "c-08", "c-09"]
    );
    let all: Vec<i64> = e.iter().map(|r| r.seq).collect();
    assert_eq!(o.ack_outbox(&all).await.unwrap(), 8);
    assert_eq!(
        o.ack_outbox(&all).await.unwrap(),
        0,
        "acknowledging twice is harmless"
    );
    assert_eq!(o.outbox_depth().await.unwrap(), 0);
    assert_eq!(
        s.records(store::RecordQuery::default())
            .await
            .unwrap()
            .len(),
        10,
        "the records stay"
    );
}

async fn interrupted_requests_queue_their_events_too(url: &str) {
    let s = open(url, true).await;
    let row = InflightRecord {
        request_id: "lost-1".into(),
        instance: "dead".into(),
        at_ms: 1_740_787_200_000,
        channel: "oa".into(),
        provider: "openai".into(),
        model: "m".into(),
        upstream_model: "m".into(),
        plan: "oa".into(),
        input_tokens: 7,
        output_tokens: 9,
        cost: 0.5,
        ..InflightRecord::default()
    };
    s.commit(std::slice::from_ref(&row), &[], &[])
        .await
        .unwrap();
    let recovered = s.recover_interrupted(i64::MAX).await.unwrap();
    assert_eq!(recovered.len(), 1);
    let rows = outbox(&s).claim_outbox("me", 1, 2, 10).await.unwrap();
    assert_eq!(rows.len(), 1);
    let queued: UsageRecord = serde_json::from_str(&rows[0].payload).unwrap();
    assert_eq!(queued, recovered[0]);
    assert_eq!(queued.error_kind.as_deref(), Some(store::INTERRUPTED));
}

/// PostgreSQL: eight claimers at once take disjoint rows (`FOR UPDATE SKIP LOCKED`), and
/// together all of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claims_on_postgres_take_disjoint_rows() {
    let Some(pg) = PgSchema::create().await else {
        return;
    };
    let s = open(&pg.url, true).await;
    let batch: Vec<UsageRecord> = (0..200).map(|i| rec(&format!("p-{i:03}"))).collect();
    s.record_usage(&batch).await.unwrap();
    // Several stores (pools) on one database, as replicas are.
    let mut stores = Vec::new();
    for _ in 0..4 {
        stores.push(open(&pg.url, true).await);
    }
    let mut tasks = Vec::new();
    for w in 0..8 {
        let s = stores[w % stores.len()].clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let rows = s
                    .outbox()
                    .unwrap()
                    .claim_outbox(&format!("w{w}"), 1, 1_000_000, 7)
                    .await
                    .unwrap();
                if rows.is_empty() {
                    return mine;
                }
                mine.extend(rows.into_iter().map(|r| r.request_id));
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let unique: BTreeSet<&String> = all.iter().collect();
    assert_eq!(all.len(), 200, "every row claimed once");
    assert_eq!(unique.len(), 200);
    drop(stores);
    drop(s);
    pg.drop_schema().await;
}
