//! One storage suite, run against SQLite (a temp file) and PostgreSQL (127.0.0.1:5432,
//! database `test`, a fresh schema per test). Under `CI=true` an unreachable PostgreSQL fails
//! the test; on a developer machine without one the PostgreSQL cases skip with a loud line.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use llmux_gateway::keys;
use llmux_gateway::store::{
    self, utc_day, Bucket, Cursor, GroupBy, KeyUpdate, NewKey, RecordQuery, RecordSearch, SeriesBy,
    SeriesQuery, StatusFilter, Store, StoreError, UsageRecord, OTHER,
};
use sqlx::{Connection, Row};

const DAY_MS: i64 = 86_400_000;
/// 2025-03-01T00:00:00Z.
const T0: i64 = 1_740_787_200_000;

enum Kind {
    Sqlite(tempfile::TempDir),
    Postgres { admin_url: String, schema: String },
}

struct Backend {
    store: Arc<dyn Store>,
    kind: Kind,
}

impl Backend {
    /// Every byte the database holds (SQLite: all files; PostgreSQL: every row of every table
    /// in the test's schema, as text).
    async fn raw_dump(&self) -> Vec<u8> {
        match &self.kind {
            Kind::Sqlite(dir) => {
                let mut out = Vec::new();
                for entry in std::fs::read_dir(dir.path()).unwrap() {
                    out.extend(std::fs::read(entry.unwrap().path()).unwrap());
                }
                out
            }
            Kind::Postgres { admin_url, schema } => {
                let mut conn = sqlx::PgConnection::connect(admin_url).await.unwrap();
                let tables: Vec<String> = sqlx::query(
                    "SELECT table_name::text AS t FROM information_schema.tables \
                     WHERE table_schema = $1",
                )
                .bind(schema)
                .fetch_all(&mut conn)
                .await
                .unwrap()
                .iter()
                .map(|r| r.get("t"))
                .collect();
                assert!(tables.iter().any(|t| t == "gw_keys"), "{tables:?}");
                let mut out = Vec::new();
                for t in tables {
                    let rows = sqlx::query(&format!(
                        "SELECT CAST(x AS TEXT) AS row FROM \"{schema}\".\"{t}\" x"
                    ))
                    .fetch_all(&mut conn)
                    .await
                    .unwrap();
                    for r in rows {
                        out.extend(r.get::<String, _>("row").into_bytes());
                    }
                }
                out
            }
        }
    }

    async fn cleanup(self) {
        drop(self.store);
        if let Kind::Postgres { admin_url, schema } = self.kind {
            let mut conn = sqlx::PgConnection::connect(&admin_url).await.unwrap();
            sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
                .execute(&mut conn)
                .await
                .unwrap();
        }
    }
}

async fn sqlite_backend() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("gw.db").display());
    let store = store::open(&url).await.unwrap();
    Backend {
        store,
        kind: Kind::Sqlite(dir),
    }
}

static SCHEMA_SEQ: AtomicU32 = AtomicU32::new(0);

/// A store in a fresh schema of the shared PostgreSQL, trying user `postgres` then `root`.
async fn pg_backend() -> Option<Backend> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let schema = format!(
        "llmux_test_{}_{}_{nanos}",
        std::process::id(),
        SCHEMA_SEQ.fetch_add(1, Ordering::Relaxed)
    );
    let mut errors = Vec::new();
    for user in ["postgres", "root"] {
        let admin_url = format!("postgres://{user}@127.0.0.1:5432/test");
        match store::open(&format!("{admin_url}?schema={schema}")).await {
            Ok(store) => {
                return Some(Backend {
                    store,
                    kind: Kind::Postgres { admin_url, schema },
                })
            }
            Err(e) => errors.push(format!("{user}: {e}")),
        }
    }
    if matches!(std::env::var("CI").as_deref(), Ok("true" | "1")) {
        panic!(
            "PostgreSQL at 127.0.0.1:5432 (database `test`) is required under CI=true: {errors:?}"
        );
    }
    // Straight to stderr: the test harness captures `eprintln!`, and this line must be seen.
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!(
            "\n!!!!!!!! SKIPPING a PostgreSQL store test: 127.0.0.1:5432 unreachable ({errors:?}). \
             Start it with `pg_ctlcluster --skip-systemctl-redirect <version> main start`. !!!!!!!!\n"
        )
        .as_bytes(),
    );
    None
}

fn rec(id: &str, at_ms: i64, key_id: Option<i64>, model: &str, i: u64, o: u64) -> UsageRecord {
    UsageRecord {
        request_id: id.to_owned(),
        client_request_id: Some(format!("client-{id}")),
        at_ms,
        key_id,
        channel: "openai".into(),
        provider: "dashscope".into(),
        model: model.to_owned(),
        upstream_model: format!("up-{model}"),
        input_tokens: i,
        output_tokens: o,
        cached_tokens: i / 4,
        reasoning_tokens: o / 8,
        cost: (i + 2 * o) as f64 * 1e-6,
        latency_ms: 120,
        ttft_ms: Some(40),
        status: 200,
        error_kind: None,
        cancelled: false,
        stream: true,
        usage_estimated: false,
        cache_hit: false,
        team_id: None,
    }
}

fn limited_key(name: &str) -> NewKey {
    NewKey {
        name: name.into(),
        expires_at: Some(4_102_444_800),
        models: vec!["qwen-plus".into(), "glm-4".into()],
        rpm: Some(30),
        tpm: Some(10_000),
        budget_tokens: Some(1_000_000),
        budget_cost: Some(12.5),
        budget_period: Default::default(),
        team: None,
        cache: Some(true),
        cache_ttl: Some(120),
    }
}

async fn keys_are_found_by_plaintext_and_hashed_at_rest(b: &Backend) {
    let s = &b.store;
    let (k, plaintext) = s.create_key(limited_key("team-a")).await.unwrap();
    assert!(keys::looks_like_key(&plaintext), "{plaintext}");
    assert_eq!(k.prefix, &plaintext[..12]);
    assert_eq!((k.cache, k.cache_ttl), (Some(true), Some(120)));
    assert_eq!(k.name, "team-a");
    assert_eq!(k.models, vec!["qwen-plus", "glm-4"]);
    assert_eq!(
        (k.rpm, k.tpm, k.budget_tokens, k.budget_cost),
        (Some(30), Some(10_000), Some(1_000_000), Some(12.5))
    );
    assert_eq!((k.spent_tokens, k.spent_cost, k.revoked), (0, 0.0, false));
    assert!(k.id >= 1);

    let found = s.find_key(&plaintext).await.unwrap().unwrap();
    assert_eq!(found, k);
    let (other, _) = keys::generate().map(|g| (g, ())).unwrap();
    assert_eq!(s.find_key(&other).await.unwrap(), None);
    assert_eq!(s.find_key("Bearer nonsense").await.unwrap(), None);
    assert_eq!(s.find_key(&keys::hash(&plaintext)).await.unwrap(), None);

    let dump = b.raw_dump().await;
    let contains = |needle: &str| dump.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(
        contains(&keys::hash(&plaintext)),
        "the dump must see the stored hash, or the next check proves nothing"
    );
    assert!(!contains(&plaintext), "the plaintext key is stored");
    assert!(
        !contains(&plaintext[12..]),
        "the secret part of the key is stored"
    );
}

async fn keys_revoke_expire_and_list(b: &Backend) {
    let s = &b.store;
    let (a, pa) = s.create_key(limited_key("a")).await.unwrap();
    let (bk, pb) = s
        .create_key(NewKey {
            name: "b".into(),
            expires_at: Some(1_000),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(bk.id > a.id);
    assert_eq!(bk.expires_at, Some(1_000));
    assert!(!bk.is_active(1_000) && bk.is_active(999));
    assert!(bk.models.is_empty() && bk.rpm.is_none() && bk.budget_cost.is_none());

    assert!(s.revoke_key(a.id).await.unwrap());
    assert!(!s.revoke_key(a.id + 1_000).await.unwrap());
    let a2 = s.find_key(&pa).await.unwrap().unwrap();
    assert!(a2.revoked && !a2.is_active(0));
    assert!(!s.find_key(&pb).await.unwrap().unwrap().revoked);

    let list = s.list_keys().await.unwrap();
    assert_eq!(
        list.iter().map(|k| (k.id, k.revoked)).collect::<Vec<_>>(),
        vec![(a.id, true), (bk.id, false)]
    );
}

async fn keys_update_only_the_fields_given(b: &Backend) {
    let s = &b.store;
    let (k, plaintext) = s.create_key(limited_key("a")).await.unwrap();
    s.record_usage(&[rec("u1", T0, Some(k.id), "glm-4", 7, 3)])
        .await
        .unwrap();

    // Set some fields, clear others, leave the rest.
    let updated = s
        .update_key(
            k.id,
            KeyUpdate {
                name: Some("renamed".into()),
                rpm: Some(Some(600)),
                tpm: Some(None),
                budget_cost: Some(None),
                models: Some(vec!["qwen-max".into()]),
                cache: Some(Some(false)),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .expect("the key exists");
    assert_eq!(updated.id, k.id);
    assert_eq!((updated.cache, updated.cache_ttl), (Some(false), Some(120)));
    assert_eq!(updated.name, "renamed");
    assert_eq!((updated.rpm, updated.tpm), (Some(600), None));
    assert_eq!(updated.budget_cost, None);
    assert_eq!(updated.models, vec!["qwen-max".to_owned()]);
    // Untouched: expiry, token budget, spend, prefix, revocation.
    assert_eq!(updated.expires_at, k.expires_at);
    assert_eq!(updated.budget_tokens, Some(1_000_000));
    assert_eq!((updated.spent_tokens, updated.revoked), (10, false));
    assert_eq!(updated.prefix, k.prefix);
    // What the key's holder sees is the same record.
    assert_eq!(s.find_key(&plaintext).await.unwrap().unwrap(), updated);

    // JSON semantics: absent = unchanged, null = removed.
    let from_json: KeyUpdate = serde_json::from_value(serde_json::json!(
        {"expires_at": null, "budget_tokens": 5, "cache": null, "cache_ttl": null}
    ))
    .unwrap();
    assert_eq!(from_json.rpm, None);
    let again = s.update_key(k.id, from_json).await.unwrap().unwrap();
    assert_eq!(
        (again.expires_at, again.budget_tokens, again.rpm),
        (None, Some(5), Some(600))
    );
    assert_eq!((again.cache, again.cache_ttl), (None, None));
    assert!(serde_json::from_value::<KeyUpdate>(serde_json::json!({"spent_tokens": 0})).is_err());

    assert_eq!(
        s.update_key(k.id + 1_000, KeyUpdate::default())
            .await
            .unwrap(),
        None
    );
}

async fn record_usage_is_idempotent_and_charges_keys_once(b: &Backend) {
    let s = &b.store;
    let (k, plaintext) = s.create_key(limited_key("k")).await.unwrap();
    let batch: Vec<_> = (0..50)
        .map(|i| rec(&format!("r{i}"), T0 + i, Some(k.id), "qwen-plus", 100, 10))
        .collect();
    s.record_usage(&batch).await.unwrap();
    s.record_usage(&batch).await.unwrap();
    // A replay overlapping new records, with a duplicate inside the batch itself.
    let mut overlap: Vec<_> = batch[40..].to_vec();
    overlap.push(rec("r50", T0, Some(k.id), "qwen-plus", 100, 10));
    overlap.push(rec("r50", T0, Some(k.id), "qwen-plus", 100, 10));
    s.record_usage(&overlap).await.unwrap();
    s.record_usage(&[]).await.unwrap();

    assert_eq!(s.usage_count().await.unwrap(), 51);
    let key = s.find_key(&plaintext).await.unwrap().unwrap();
    assert_eq!(key.spent_tokens, 51 * 110);
    assert!(
        (key.spent_cost - 51.0 * 120e-6).abs() < 1e-9,
        "{}",
        key.spent_cost
    );
    let by_key = s.usage(GroupBy::Key, None).await.unwrap();
    assert_eq!(by_key.len(), 1);
    assert_eq!(by_key[0].group, k.id.to_string());
    assert_eq!(
        (
            by_key[0].requests,
            by_key[0].input_tokens,
            by_key[0].output_tokens
        ),
        (51, 5_100, 510)
    );
}

#[derive(Default, Debug, PartialEq)]
struct Sums {
    requests: u64,
    input: u64,
    output: u64,
    cost_micro: i64,
}

fn expected(
    records: &[UsageRecord],
    group: impl Fn(&UsageRecord) -> String,
) -> BTreeMap<String, Sums> {
    let mut m: BTreeMap<String, Sums> = BTreeMap::new();
    for r in records {
        let e = m.entry(group(r)).or_default();
        e.requests += 1;
        e.input += r.input_tokens;
        e.output += r.output_tokens;
        e.cost_micro += (r.cost * 1e6).round() as i64;
    }
    m
}

async fn actual(s: &Arc<dyn Store>, by: GroupBy, since: Option<&str>) -> BTreeMap<String, Sums> {
    s.usage(by, since)
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            (
                r.group,
                Sums {
                    requests: r.requests,
                    input: r.input_tokens,
                    output: r.output_tokens,
                    cost_micro: (r.cost * 1e6).round() as i64,
                },
            )
        })
        .collect()
}

fn mixed_records(k1: i64, k2: i64) -> Vec<UsageRecord> {
    let models = ["qwen-plus", "glm-4", "gpt-4o-mini"];
    let keys = [Some(k1), Some(k2), None];
    (0..90u64)
        .map(|i| {
            let mut r = rec(
                &format!("mix-{i}"),
                T0 + (i % 3) as i64 * DAY_MS + i as i64 * 1_000,
                keys[(i % 7 % 3) as usize],
                models[(i % 5 % 3) as usize],
                10 + i,
                1 + i % 13,
            );
            if i % 11 == 0 {
                r.status = 502;
                r.error_kind = Some("upstream_server".into());
            }
            r
        })
        .collect()
}

async fn rollups_by_key_model_and_day_match_raw_sums(b: &Backend) {
    let s = &b.store;
    let (k1, _) = s.create_key(limited_key("k1")).await.unwrap();
    let (k2, _) = s.create_key(limited_key("k2")).await.unwrap();
    let records = mixed_records(k1.id, k2.id);
    for chunk in records.chunks(17) {
        s.record_usage(chunk).await.unwrap();
    }
    let key_group = |r: &UsageRecord| r.key_id.map_or("none".to_owned(), |k| k.to_string());
    assert_eq!(
        actual(s, GroupBy::Key, None).await,
        expected(&records, key_group)
    );
    assert_eq!(
        actual(s, GroupBy::Model, None).await,
        expected(&records, |r| r.model.clone())
    );
    let by_day = actual(s, GroupBy::Day, None).await;
    assert_eq!(by_day, expected(&records, |r| utc_day(r.at_ms)));
    assert_eq!(
        by_day.keys().collect::<Vec<_>>(),
        vec!["2025-03-01", "2025-03-02", "2025-03-03"]
    );
    let since: Vec<_> = records
        .iter()
        .filter(|r| utc_day(r.at_ms).as_str() >= "2025-03-02")
        .cloned()
        .collect();
    assert_eq!(
        actual(s, GroupBy::Model, Some("2025-03-02")).await,
        expected(&since, |r| r.model.clone())
    );
    let rows = s.usage(GroupBy::Key, None).await.unwrap();
    let groups: Vec<_> = rows.iter().map(|r| r.group.clone()).collect();
    assert_eq!(
        groups,
        vec!["none".to_owned(), k1.id.to_string(), k2.id.to_string()]
    );
}

async fn prune_deletes_old_raw_rows_and_keeps_rollups(b: &Backend) {
    let s = &b.store;
    let (k1, p1) = s.create_key(limited_key("k1")).await.unwrap();
    let (k2, _) = s.create_key(limited_key("k2")).await.unwrap();
    let records = mixed_records(k1.id, k2.id);
    s.record_usage(&records).await.unwrap();
    let before_day = actual(s, GroupBy::Day, None).await;
    let before_key = s.find_key(&p1).await.unwrap().unwrap();

    let cutoff = T0 + DAY_MS; // everything on 2025-03-01
    let old = records.iter().filter(|r| r.at_ms < cutoff).count() as u64;
    assert!(old > 0);
    assert_eq!(s.prune(cutoff).await.unwrap(), old);
    assert_eq!(s.usage_count().await.unwrap(), records.len() as u64 - old);
    assert_eq!(s.prune(cutoff).await.unwrap(), 0);
    assert_eq!(actual(s, GroupBy::Day, None).await, before_day);
    assert_eq!(s.find_key(&p1).await.unwrap().unwrap(), before_key);

    // A pruned record replayed is counted again: retention must exceed the replay horizon.
    // Records newer than the cutoff stay idempotent.
    let recent: Vec<_> = records
        .iter()
        .filter(|r| r.at_ms >= cutoff)
        .cloned()
        .collect();
    s.record_usage(&recent).await.unwrap();
    assert_eq!(actual(s, GroupBy::Day, None).await, before_day);
}

async fn concurrent_record_usage_from_many_tasks_counts_every_record_once(b: &Backend) {
    let s = &b.store;
    let (k, p) = s.create_key(limited_key("hot")).await.unwrap();
    let mut tasks = Vec::new();
    for t in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut prev: Vec<UsageRecord> = Vec::new();
            for n in 0..25 {
                let mut batch: Vec<_> = (0..20)
                    .map(|i| {
                        let model = if i % 2 == 0 { "qwen-plus" } else { "glm-4" };
                        rec(&format!("c-{t}-{n}-{i}"), T0 + i, Some(k.id), model, 7, 3)
                    })
                    .collect();
                // Replay the previous batch alongside, as a retry after a lost ack would.
                batch.extend(prev.iter().cloned());
                s.record_usage(&batch).await.unwrap();
                prev = batch[..20].to_vec();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(s.usage_count().await.unwrap(), 8 * 25 * 20);
    let key = s.find_key(&p).await.unwrap().unwrap();
    assert_eq!(key.spent_tokens, 4_000 * 10);
    let by_model = s.usage(GroupBy::Model, None).await.unwrap();
    assert_eq!(
        by_model
            .iter()
            .map(|r| (r.group.as_str(), r.requests))
            .collect::<Vec<_>>(),
        vec![("glm-4", 2_000), ("qwen-plus", 2_000)]
    );
}

async fn records_read_back_every_field_newest_first(b: &Backend) {
    let s = &b.store;
    let (k, _) = s.create_key(limited_key("k")).await.unwrap();
    let mut odd = rec("odd", T0 + 5, None, "glm-4", 7, 0);
    odd.ttft_ms = None;
    odd.status = 499;
    odd.error_kind = Some("cancelled".into());
    odd.cancelled = true;
    odd.stream = false;
    odd.usage_estimated = true;
    odd.channel = "backup-b".into();
    let mut batch: Vec<_> = (0..5)
        .map(|i| {
            rec(
                &format!("r{i}"),
                T0 + i,
                Some(k.id),
                "qwen-plus",
                100 + i as u64,
                10,
            )
        })
        .collect();
    batch.push(odd.clone());
    s.record_usage(&batch).await.unwrap();

    let all = s.records(RecordQuery::default()).await.unwrap();
    let ids: Vec<&str> = all.iter().map(|r| r.request_id.as_str()).collect();
    assert_eq!(ids, ["odd", "r4", "r3", "r2", "r1", "r0"]);
    assert_eq!(all[0], odd, "every field round-trips");
    assert_eq!(all[1], batch[4]);

    let mine = s
        .records(RecordQuery {
            key_id: Some(k.id),
            limit: 2,
        })
        .await
        .unwrap();
    let ids: Vec<&str> = mine.iter().map(|r| r.request_id.as_str()).collect();
    assert_eq!(ids, ["r4", "r3"]);
    assert!(s
        .records(RecordQuery {
            key_id: Some(k.id + 1000),
            limit: 0,
        })
        .await
        .unwrap()
        .is_empty());
}

const HOUR_MS: i64 = 3_600_000;

/// Latencies 1..=100 ms in the first hour (TTFT on even ones only), three requests in the
/// second hour (one failed, one interrupted), two keys, one request without a key, and one
/// request just outside the range on each side.
async fn series_fixture(s: &Arc<dyn Store>) -> (i64, i64) {
    let (a, _) = s.create_key(limited_key("alice")).await.unwrap();
    let (b, _) = s.create_key(limited_key("bob")).await.unwrap();
    let mut batch = Vec::new();
    for i in 1..=100u64 {
        let mut r = rec(
            &format!("h0-{i:03}"),
            T0 + i as i64 * 1000,
            Some(a.id),
            "qwen-plus",
            10,
            1,
        );
        r.latency_ms = 101 - i; // stored out of order
        r.ttft_ms = (i % 2 == 0).then_some(i);
        batch.push(r);
    }
    let mut slow = rec("h1-a", T0 + HOUR_MS + 5, Some(b.id), "glm-4", 1, 1);
    slow.latency_ms = 30;
    slow.ttft_ms = None;
    let mut failed = rec("h1-b", T0 + HOUR_MS + 6, Some(b.id), "glm-4", 2, 0);
    failed.latency_ms = 10;
    failed.status = 502;
    failed.error_kind = Some("UpstreamServer".into());
    let mut gone = rec("h1-c", T0 + HOUR_MS + 7, None, "glm-4", 3, 3);
    gone.latency_ms = 0;
    gone.status = 0;
    gone.ttft_ms = None;
    gone.error_kind = Some(store::INTERRUPTED.into());
    let mut ok = rec("h1-d", T0 + HOUR_MS + 8, Some(b.id), "glm-4", 1, 1);
    ok.latency_ms = 20;
    batch.extend([slow, failed, gone, ok]);
    batch.push(rec("before", T0 - 1, Some(a.id), "qwen-plus", 1, 1));
    batch.push(rec(
        "after",
        T0 + 2 * HOUR_MS,
        Some(a.id),
        "qwen-plus",
        1,
        1,
    ));
    s.record_usage(&batch).await.unwrap();
    (a.id, b.id)
}

async fn usage_series_buckets_sums_and_exact_percentiles(b: &Backend) {
    let s = &b.store;
    let (a, bob) = series_fixture(s).await;
    let q = SeriesQuery {
        from_ms: T0,
        to_ms: T0 + 2 * HOUR_MS,
        bucket: Bucket::Hour,
        by: SeriesBy::Model,
    };
    let out = s.usage_series(q).await.unwrap();
    let ids: Vec<(&str, u64)> = out
        .series
        .iter()
        .map(|x| (x.id.as_str(), x.requests))
        .collect();
    assert_eq!(
        ids,
        [("qwen-plus", 100), ("glm-4", 4)],
        "busiest first, range bounded"
    );
    assert_eq!(out.bucket_ms, HOUR_MS);
    assert_eq!(out.points.len(), 2, "{:?}", out.points);
    let p0 = &out.points[0];
    assert_eq!((p0.at_ms, p0.series.as_str()), (T0, "qwen-plus"));
    assert_eq!(
        (p0.requests, p0.input_tokens, p0.output_tokens, p0.errors),
        (100, 1000, 100, 0)
    );
    assert!((p0.cost - 100.0 * 12e-6).abs() < 1e-12, "{}", p0.cost);
    // Nearest rank over 1..=100: the 50th and the 99th value.
    assert_eq!((p0.latency_p50_ms, p0.latency_p99_ms), (Some(50), Some(99)));
    // TTFT on the even ones only: 2, 4, …, 100 (50 values): ranks 25 and 50.
    assert_eq!((p0.ttft_p50_ms, p0.ttft_p99_ms), (Some(50), Some(100)));
    let p1 = &out.points[1];
    assert_eq!((p1.at_ms, p1.series.as_str()), (T0 + HOUR_MS, "glm-4"));
    assert_eq!(
        (p1.requests, p1.errors),
        (4, 2),
        "the 502 and the interrupted one"
    );
    // The interrupted request has no latency: 10, 20, 30 → ranks 2 and 3.
    assert_eq!((p1.latency_p50_ms, p1.latency_p99_ms), (Some(20), Some(30)));
    assert_eq!((p1.ttft_p50_ms, p1.ttft_p99_ms), (Some(40), Some(40)));

    // By key: ids with names; the keyless request is `none`, labelled `no key`.
    let out = s
        .usage_series(SeriesQuery {
            by: SeriesBy::Key,
            ..q
        })
        .await
        .unwrap();
    let labels: Vec<(&str, &str)> = out
        .series
        .iter()
        .map(|x| (x.id.as_str(), x.label.as_str()))
        .collect();
    let a_id = a.to_string();
    let b_id = bob.to_string();
    assert_eq!(
        labels,
        [
            (a_id.as_str(), "alice"),
            (b_id.as_str(), "bob"),
            ("none", "no key")
        ]
    );
    // By channel, in minutes over the first hour only.
    let out = s
        .usage_series(SeriesQuery {
            to_ms: T0 + HOUR_MS,
            bucket: Bucket::Minute,
            by: SeriesBy::Channel,
            ..q
        })
        .await
        .unwrap();
    assert_eq!(out.series.len(), 1);
    let per_minute: Vec<(i64, u64)> = out
        .points
        .iter()
        .map(|p| ((p.at_ms - T0) / 60_000, p.requests))
        .collect();
    assert_eq!(per_minute, [(0, 59), (1, 41)]);
    // An empty range is empty, not an error.
    let none = s
        .usage_series(SeriesQuery {
            from_ms: T0 + 10 * HOUR_MS,
            to_ms: T0 + 11 * HOUR_MS,
            ..q
        })
        .await
        .unwrap();
    assert!(none.series.is_empty() && none.points.is_empty());
}

async fn usage_series_sums_the_tail_under_other(b: &Backend) {
    let s = &b.store;
    // 25 models, model i with i + 1 requests in one minute.
    let mut batch = Vec::new();
    for m in 0..25u64 {
        for j in 0..=m {
            let mut r = rec(
                &format!("m{m}-{j}"),
                T0 + j as i64,
                None,
                &format!("model-{m:02}"),
                1,
                0,
            );
            r.latency_ms = m * 100 + j;
            batch.push(r);
        }
    }
    s.record_usage(&batch).await.unwrap();
    let out = s
        .usage_series(SeriesQuery {
            from_ms: T0,
            to_ms: T0 + 60_000,
            bucket: Bucket::Minute,
            by: SeriesBy::Model,
        })
        .await
        .unwrap();
    assert_eq!(out.series.len(), SeriesQuery::MAX_SERIES);
    assert_eq!(out.series[0].id, "model-24");
    assert_eq!(out.series[18].id, "model-06");
    let other = out.series.last().unwrap();
    // Models 0..=5 hold 1 + 2 + … + 6 = 21 requests.
    assert_eq!(
        (other.id.as_str(), other.label.as_str(), other.requests),
        (OTHER, "other", 21)
    );
    let p = out.points.iter().find(|p| p.series == OTHER).unwrap();
    assert_eq!(p.requests, 21);
    // Latencies of the tail: m*100 + j for m in 0..=5, j in 0..=m; sorted, 0 | 100 101 |
    // 200 201 202 | 300 … 303 | 400 …: rank 11 of 21 is 400, rank 21 is 505.
    assert_eq!((p.latency_p50_ms, p.latency_p99_ms), (Some(400), Some(505)));
    let total: u64 = out.points.iter().map(|p| p.requests).sum();
    assert_eq!(total, (1..=25).sum::<u64>());
}

async fn search_records_filters_escapes_and_pages(b: &Backend) {
    let s = &b.store;
    let (a, bob) = series_fixture(s).await;
    let ids = |page: &store::RecordPage| -> Vec<String> {
        page.records
            .iter()
            .map(|r| r.record.request_id.clone())
            .collect()
    };
    // Names beside ids.
    let page = s
        .search_records(RecordSearch {
            key_id: Some(bob),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(&page), ["h1-d", "h1-b", "h1-a"]);
    assert!(page
        .records
        .iter()
        .all(|r| r.key_name.as_deref() == Some("bob")));
    assert_eq!(page.next, None);
    let by_name = s
        .search_records(RecordSearch {
            key_name: Some("bob".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(&by_name), ids(&page));
    // Time range, model, status class, exact status, outcome.
    let q = |f: fn(&mut RecordSearch)| {
        let mut r = RecordSearch::default();
        f(&mut r);
        r
    };
    let got = s
        .search_records(q(|r| {
            r.from_ms = Some(T0 + HOUR_MS);
            r.to_ms = Some(T0 + HOUR_MS + 7);
        }))
        .await
        .unwrap();
    assert_eq!(ids(&got), ["h1-b", "h1-a"]);
    let got = s
        .search_records(q(|r| r.status = Some(StatusFilter::Class(5))))
        .await
        .unwrap();
    assert_eq!(ids(&got), ["h1-b"]);
    let got = s
        .search_records(q(|r| r.status = Some(StatusFilter::Exact(0))))
        .await
        .unwrap();
    assert_eq!(ids(&got), ["h1-c"]);
    assert_eq!(got.records[0].key_name, None);
    let got = s
        .search_records(q(|r| r.status = Some(StatusFilter::Failed)))
        .await
        .unwrap();
    assert_eq!(ids(&got), ["h1-c", "h1-b"]);
    let got = s
        .search_records(q(|r| {
            r.status = Some(StatusFilter::Succeeded);
            r.model = Some("glm-4".into());
        }))
        .await
        .unwrap();
    assert_eq!(ids(&got), ["h1-d", "h1-a"]);
    // Text: any case, over the error kind, the key name and the ids; wildcards are literal.
    let got = s
        .search_records(q(|r| r.text = Some("upstreamSERVER".into())))
        .await
        .unwrap();
    assert_eq!(ids(&got), ["h1-b"]);
    let got = s
        .search_records(q(|r| r.text = Some("BOB".into())))
        .await
        .unwrap();
    assert_eq!(got.records.len(), 3);
    let got = s
        .search_records(q(|r| r.text = Some("client-h0-05".into())))
        .await
        .unwrap();
    assert_eq!(got.records.len(), 10, "client-h0-050 … 059");
    for wild in ["%", "_", "h_-", "\\", "' OR 1=1 --"] {
        let got = s
            .search_records(RecordSearch {
                text: Some(wild.into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(got.records.is_empty(), "{wild} matched {:?}", ids(&got));
    }
    // Pages of 7 over alice's 102 records: each once, in order, then no `next`.
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = s
            .search_records(RecordSearch {
                key_id: Some(a),
                before: before.clone(),
                limit: 7,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(page.records.len() <= 7);
        seen.extend(ids(&page));
        match page.next {
            Some(n) => before = Some(Cursor::parse(&n).unwrap()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 102);
    assert_eq!(seen.first().map(String::as_str), Some("after"));
    assert_eq!(seen.last().map(String::as_str), Some("before"));
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 102, "no record twice");
    // A bare time as cursor: strictly older.
    let got = s
        .search_records(q(|r| {
            r.before = Some(Cursor {
                at_ms: T0 + 3000,
                request_id: None,
            })
        }))
        .await
        .unwrap();
    assert_eq!(ids(&got), ["h0-002", "h0-001", "before"]);
}

macro_rules! suite {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let b = super::sqlite_backend().await;
                    super::$case(&b).await;
                    b.cleanup().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(b) = super::pg_backend().await else { return };
                    super::$case(&b).await;
                    b.cleanup().await;
                }
            )*
        }
    };
}

suite!(
    keys_are_found_by_plaintext_and_hashed_at_rest,
    keys_revoke_expire_and_list,
    keys_update_only_the_fields_given,
    record_usage_is_idempotent_and_charges_keys_once,
    rollups_by_key_model_and_day_match_raw_sums,
    prune_deletes_old_raw_rows_and_keeps_rollups,
    concurrent_record_usage_from_many_tasks_counts_every_record_once,
    records_read_back_every_field_newest_first,
    usage_series_buckets_sums_and_exact_percentiles,
    usage_series_sums_the_tail_under_other,
    search_records_filters_escapes_and_pages,
);

#[tokio::test]
async fn in_memory_sqlite_runs_the_same_sql() {
    let s = store::open("sqlite::memory:").await.unwrap();
    let (k, p) = s.create_key(limited_key("m")).await.unwrap();
    s.record_usage(&[rec("x", T0, Some(k.id), "glm-4", 5, 5)])
        .await
        .unwrap();
    assert_eq!(s.usage_count().await.unwrap(), 1);
    assert_eq!(s.find_key(&p).await.unwrap().unwrap().spent_tokens, 10);
}

#[tokio::test]
async fn unknown_url_schemes_are_rejected() {
    let err = store::open("mysql://localhost/x").await.err().unwrap();
    assert!(matches!(err, StoreError::UnsupportedUrl), "{err}");
}

#[tokio::test]
async fn postgres_errors_never_show_the_password() {
    // A role that does not exist: the server refuses it whatever the auth method.
    let url = "postgres://llmux_no_such_role:hunter2-very-secret@127.0.0.1:5432/test";
    match store::open(url).await {
        Ok(_) => panic!("a non-existent role was accepted"),
        Err(e) => {
            let msg = format!("{e} {e:?}");
            assert!(!msg.contains("hunter2-very-secret"), "{msg}");
            assert!(matches!(e, StoreError::Connect { .. }), "{msg}");
        }
    }
}
