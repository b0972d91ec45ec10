//! The usage ledger end to end (issue 13): a record's identity is the gateway's, never the
//! client's `X-Request-Id`, and a completed request's record is committed before the client
//! sees the end of its answer. Every scenario runs on SQLite and on PostgreSQL with the
//! database's journal, and on a SQLite file with the local file journal (issue 14), where the
//! record is in the journal before the answer ends and in the store after the writer's flush.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;

use common::*;
use llmux_emulator::Vendor;
use serde_json::{json, Value};

on_both_stores!(
    issue_13_one_client_request_id_twelve_times_is_twelve_records_and_twelve_debits,
    issue_13_one_client_request_id_on_two_keys_charges_both_keys,
    issue_13_a_completed_request_is_committed_before_its_answer_ends,
);

async fn key_spend(gw: &Harness, id: i64) -> (u64, f64) {
    let keys = admin_json(gw, "/admin/keys").await;
    let k = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id)
        .unwrap()
        .clone();
    (
        k["spent_tokens"].as_u64().unwrap(),
        k["spent_cost"].as_f64().unwrap(),
    )
}

/// One chat request with `X-Request-Id: client_id`, streamed or not; returns the status, the
/// response's `x-request-id` and `x-llmux-request-id`, and the whole body.
async fn chat(
    gw: &Harness,
    key: &str,
    client_id: &str,
    stream: bool,
) -> (u16, String, String, String) {
    let resp = gw
        .http
        .post(format!("{}/v1/chat/completions", gw.url))
        .bearer_auth(key)
        .header("x-request-id", client_id)
        .json(&json!({"model":"m","stream":stream,"max_tokens":8,
            "messages":[{"role":"user","content":"count my tokens please"}]}))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let h = |n: &str| {
        resp.headers()
            .get(n)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    let (echo, own) = (h("x-request-id"), h("x-llmux-request-id"));
    (status, echo, own, resp.text().await.unwrap())
}

fn sum_billed(records: &[llmux_gateway::store::UsageRecord]) -> (u64, f64) {
    records.iter().fold((0, 0.0), |(t, c), r| {
        (t + r.input_tokens + r.output_tokens, c + r.cost)
    })
}

const PRICES: &str = "[server.prices.m]\ninput_per_mtok = 1000.0\noutput_per_mtok = 2000.0\n";

async fn issue_13_one_client_request_id_twelve_times_is_twelve_records_and_twelve_debits(
    database: &str,
) {
    let oa = emulator(Vendor::OpenAi).await;
    let gw = start_with_database(
        database,
        &format!("{PRICES}{}", channel("oa", "openai", &oa, "[\"m\"]", "")),
    )
    .await;
    let (key, id) = create_key(&gw, json!({"name":"replayer"})).await;
    let mut own_ids = BTreeSet::new();
    for i in 0..12 {
        let (status, echo, own, body) = chat(&gw, &key, "dup-1", i % 2 == 0).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(echo, "dup-1", "the client's id is echoed for correlation");
        assert_eq!(own.len(), 36, "{own}");
        assert!(own_ids.insert(own.clone()), "the gateway id {own} repeats");
        if i % 2 == 1 {
            let v: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(
                v["id"],
                format!("chatcmpl-{}", own.replace('-', "")),
                "the completion id comes from the gateway's id"
            );
        }
    }
    let recs = records(&gw, 12).await;
    let rec_ids: BTreeSet<String> = recs.iter().map(|r| r.request_id.clone()).collect();
    assert_eq!(
        rec_ids, own_ids,
        "one record per request, under the gateway's ids"
    );
    for r in &recs {
        assert_eq!(r.client_request_id.as_deref(), Some("dup-1"), "{r:?}");
        assert_eq!(r.key_id, Some(id));
        assert!(r.input_tokens + r.output_tokens > 0, "{r:?}");
    }
    let (tokens, cost) = sum_billed(&recs);
    let (spent_tokens, spent_cost) = key_spend(&gw, id).await;
    assert_eq!(spent_tokens, tokens, "the key is debited once per record");
    assert!((spent_cost - cost).abs() < 1e-9, "{spent_cost} vs {cost}");
    assert!(cost > 0.0);
    assert_eq!(oa.requests().len(), 12);

    // The issue's reproduction: a budget of 100 tokens, the same id again and again. Every
    // 200 is a record and a debit, so the budget runs out instead of staying at one request.
    let (key, id) = create_key(&gw, json!({"name":"budget","budget_tokens":100})).await;
    let mut ok = 0u64;
    for i in 0..12 {
        let (status, ..) = chat(&gw, &key, "same-id", i % 2 == 0).await;
        match status {
            200 => ok += 1,
            429 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    let all = records(&gw, 12 + ok).await;
    let mine: Vec<_> = all.into_iter().filter(|r| r.key_id == Some(id)).collect();
    assert_eq!(mine.len() as u64, ok);
    let (tokens, _) = sum_billed(&mine);
    let (spent_tokens, _) = key_spend(&gw, id).await;
    assert_eq!(spent_tokens, tokens);
    assert!(
        ok < 12 && spent_tokens >= 100 - 40,
        "{ok} answered, {spent_tokens} tokens spent of a 100-token budget"
    );
}

async fn issue_13_one_client_request_id_on_two_keys_charges_both_keys(database: &str) {
    let oa = emulator(Vendor::OpenAi).await;
    let gw = start_with_database(
        database,
        &format!("{PRICES}{}", channel("oa", "openai", &oa, "[\"m\"]", "")),
    )
    .await;
    let (key_a, id_a) = create_key(&gw, json!({"name":"a"})).await;
    let (key_b, id_b) = create_key(&gw, json!({"name":"b"})).await;
    let (sa, ..) = chat(&gw, &key_a, "shared-id", false).await;
    let (sb, ..) = chat(&gw, &key_b, "shared-id", true).await;
    assert_eq!((sa, sb), (200, 200));
    let recs = records(&gw, 2).await;
    for id in [id_a, id_b] {
        let mine: Vec<_> = recs
            .iter()
            .filter(|r| r.key_id == Some(id))
            .cloned()
            .collect();
        assert_eq!(mine.len(), 1, "key {id}: {recs:?}");
        let (tokens, cost) = sum_billed(&mine);
        let (spent_tokens, spent_cost) = key_spend(&gw, id).await;
        assert!(tokens > 0);
        assert_eq!(spent_tokens, tokens, "key {id} is charged");
        assert!((spent_cost - cost).abs() < 1e-9);
    }
}

async fn issue_13_a_completed_request_is_committed_before_its_answer_ends(database: &str) {
    let oa = emulator(Vendor::OpenAi).await;
    let gw = start_with_database(database, &channel("oa", "openai", &oa, "[\"m\"]", "")).await;
    let store = gw.state.store.clone().unwrap();
    let (key, _) = create_key(&gw, json!({"name":"durable"})).await;
    for i in 0..6u64 {
        let (status, _, own, body) = chat(&gw, &key, &format!("c{i}"), i % 2 == 0).await;
        assert_eq!(status, 200, "{body}");
        // No polling: the record was committed before the last byte of the answer was sent,
        // and it replaced the request's journal row.
        assert_eq!(
            store.usage_count().await.unwrap(),
            i + 1,
            "after request {i}"
        );
        assert_eq!(
            store.inflight_count().await.unwrap(),
            0,
            "after request {i}"
        );
        let recs = store
            .records(llmux_gateway::store::RecordQuery {
                key_id: None,
                limit: 1,
            })
            .await
            .unwrap();
        assert_eq!(recs[0].request_id, own);
        assert_eq!(
            recs[0].client_request_id.as_deref(),
            Some(&*format!("c{i}"))
        );
    }
}

/// A SQLite file database (its file journal beside it) in `dir`.
fn sqlite_file(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}", dir.path().join("gw.sqlite3").display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn issue_14_file_journal_one_client_request_id_twelve_times_is_twelve_records() {
    let dir = tempfile::tempdir().unwrap();
    issue_13_one_client_request_id_twelve_times_is_twelve_records_and_twelve_debits(&sqlite_file(
        &dir,
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn issue_14_file_journal_one_client_request_id_on_two_keys_charges_both_keys() {
    let dir = tempfile::tempdir().unwrap();
    issue_13_one_client_request_id_on_two_keys_charges_both_keys(&sqlite_file(&dir)).await;
}

/// With the file journal a completed request's record is in the journal, under the gateway's
/// id, before the last byte of its answer is sent; nothing goes to the database's journal;
/// the store has every record after the writer's next flush.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn issue_14_with_the_file_journal_a_record_is_journaled_before_its_answer_ends() {
    let dir = tempfile::tempdir().unwrap();
    let oa = emulator(Vendor::OpenAi).await;
    let gw = start_with_database(
        &sqlite_file(&dir),
        &channel("oa", "openai", &oa, "[\"m\"]", ""),
    )
    .await;
    let journal = dir.path().join("gw.sqlite3-ledger");
    assert_eq!(
        gw.state
            .recorder
            .as_ref()
            .and_then(|r| r.file_journal())
            .map(|j| j.dir().to_owned()),
        Some(journal.clone()),
        "the default journal sits beside the database"
    );
    let store = gw.state.store.clone().unwrap();
    let (key, _) = create_key(&gw, json!({"name":"durable"})).await;
    for i in 0..6u64 {
        let (status, _, own, body) = chat(&gw, &key, &format!("c{i}"), i % 2 == 0).await;
        assert_eq!(status, 200, "{body}");
        // No polling: the line was appended before the answer's end was sent.
        let line = journal_lines(&journal)
            .into_iter()
            .find(|v| v[0] == "r" && v[1] == own.as_str())
            .unwrap_or_else(|| panic!("request {i} ({own}) has no record line"));
        assert_eq!(line[2], format!("c{i}"), "client_request_id");
        assert!(
            journal_lines(&journal)
                .iter()
                .any(|v| v[0] == "b" && v[1] == own.as_str()),
            "journaled before its upstream call"
        );
        assert_eq!(store.inflight_count().await.unwrap(), 0);
    }
    let recs = records(&gw, 6).await;
    for r in &recs {
        assert_eq!(r.status, 200, "{r:?}");
        assert!(r.input_tokens + r.output_tokens > 0, "{r:?}");
    }
}

/// Every line of every segment of a journal directory, parsed.
fn journal_lines(dir: &std::path::Path) -> Vec<Vec<Value>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|x| x == "jsonl") {
            let text = std::fs::read_to_string(&path).unwrap();
            // A live segment's reserved, unwritten rest reads as zero bytes.
            let text = text.split('\0').next().unwrap_or_default();
            for line in text.lines() {
                out.push(serde_json::from_str(line).unwrap());
            }
        }
    }
    out
}
