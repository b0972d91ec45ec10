//! The response cache (issue 17), end to end against the emulators: hits skip the upstream
//! (asserted on the emulator's request log), `Cache-Control` is honoured, entries expire, streams
//! replay as streams, failed answers are never stored, two gateways share entries through the
//! real Redis (one server, and a local Redis Cluster), hits are recorded once at cost 0 with
//! `cache_hit`, and the metrics count it all.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use llmux_emulator::{Emulator, Fault, FaultKind, Vendor};
use llmux_gateway::limits::ManualClock;
use llmux_gateway::{Config, RawConfig};
use serde_json::{json, Value};

/// No retries, so every emulator request is one gateway attempt.
const ONE_ATTEMPT: &str = "[resilience.retry]\nmax_attempts = 1\n";

fn oa_channel(oa: &Emulator) -> String {
    channel(
        "oa",
        "openai",
        oa,
        "[\"gpt-4o-mini\", \"text-embedding-3-small\"]",
        "",
    )
}

/// A gateway with `cache` as its `[cache]` table.
async fn gateway(oa: &Emulator, cache: &str) -> Harness {
    start(&format!(
        "[cache]\n{cache}\n{ONE_ATTEMPT}{}",
        oa_channel(oa)
    ))
    .await
}

fn body(text: &str, stream: bool) -> Value {
    json!({
        "model": "gpt-4o-mini",
        "max_tokens": 20,
        "stream": stream,
        "messages": [{"role": "user", "content": text}],
    })
}

async fn chat_as(
    gw: &Harness,
    key: &str,
    text: &str,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = gw
        .http
        .post(format!("{}/v1/chat/completions", gw.url))
        .bearer_auth(key)
        .json(&body(text, false));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

async fn chat(gw: &Harness, text: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    chat_as(gw, KEY, text, headers).await
}

fn cache_header(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("x-llmux-cache")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// The answer's text and its cache header (asserting 200).
async fn answer(resp: reqwest::Response) -> (String, String) {
    assert_eq!(resp.status(), 200);
    let h = cache_header(&resp);
    let v: Value = resp.json().await.unwrap();
    (
        v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_owned(),
        h,
    )
}

async fn stream(gw: &Harness, text: &str) -> (Vec<Value>, String) {
    let resp = gw
        .post("/v1/chat/completions")
        .json(&body(text, true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let h = cache_header(&resp);
    let (chunks, done) = openai_chunks(&resp.text().await.unwrap());
    assert!(done, "the stream ends with [DONE]");
    (chunks, h)
}

/// The streamed text.
fn text_of(chunks: &[Value]) -> String {
    chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect()
}

/// A chunk without the fields that differ per request (its id and creation time).
fn shape(mut chunk: Value) -> Value {
    let o = chunk.as_object_mut().unwrap();
    o.remove("id");
    o.remove("created");
    chunk
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_request_is_answered_from_the_cache_without_an_upstream_call() {
    let oa = emulator(Vendor::OpenAi).await;
    let gw = gateway(&oa, "").await;
    let first = chat(&gw, "hello cache", &[]).await;
    assert!(first.headers().get("age").is_none());
    let (a, h) = answer(first).await;
    assert_eq!(h, "miss");
    let second = chat(&gw, "hello cache", &[]).await;
    assert_eq!(second.headers()["age"], "0");
    let (b, h) = answer(second).await;
    assert_eq!((b.as_str(), h.as_str()), (a.as_str(), "hit"));
    assert_eq!(oa.requests().len(), 1, "the hit called no upstream");
    // Another question is another entry.
    let (_, h) = answer(chat(&gw, "something else", &[]).await).await;
    assert_eq!(h, "miss");
    assert_eq!(oa.requests().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_store_bypasses_the_cache_and_no_cache_refreshes_it() {
    let oa = emulator(Vendor::OpenAi).await;
    let gw = gateway(&oa, "").await;
    let (_, h) = answer(chat(&gw, "q", &[("cache-control", "no-store")]).await).await;
    assert_eq!(h, "bypass");
    // Nothing was stored: the next request is a miss.
    let (_, h) = answer(chat(&gw, "q", &[]).await).await;
    assert_eq!(h, "miss");
    assert_eq!(oa.requests().len(), 2);
    // Stored now, but no-cache (and HTTP/1.0's Pragma) goes upstream again.
    let (_, h) = answer(chat(&gw, "q", &[("cache-control", "no-cache")]).await).await;
    assert_eq!(h, "miss");
    let (_, h) = answer(chat(&gw, "q", &[("pragma", "no-cache")]).await).await;
    assert_eq!(h, "miss");
    assert_eq!(oa.requests().len(), 4);
    // A no-store request is not served from the cache either.
    let (_, h) = answer(chat(&gw, "q", &[("cache-control", "no-store")]).await).await;
    assert_eq!(h, "bypass");
    assert_eq!(oa.requests().len(), 5);
    let (_, h) = answer(chat(&gw, "q", &[]).await).await;
    assert_eq!(h, "hit");
    assert_eq!(oa.requests().len(), 5);
    // A client-sent cache key or namespace names nothing: only the request does.
    let (_, h) = answer(
        chat(
            &gw,
            "q",
            &[("x-llmux-cache", "hit"), ("cache-key", "other")],
        )
        .await,
    )
    .await;
    assert_eq!(h, "hit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_expire_after_their_ttl_and_max_age_asks_for_fresher_ones() {
    let oa = emulator(Vendor::OpenAi).await;
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let gw = start_with_database_and_clock(
        "sqlite::memory:",
        &format!(
            "[cache]\nttl = \"60s\"\nmax_ttl = \"90s\"\n{ONE_ATTEMPT}{}",
            oa_channel(&oa)
        ),
        clock.clone(),
    )
    .await;
    assert_eq!(answer(chat(&gw, "t", &[]).await).await.1, "miss");
    clock.advance(30_000);
    let resp = chat(&gw, "t", &[]).await;
    assert_eq!(resp.headers()["age"], "30");
    assert_eq!(answer(resp).await.1, "hit");
    // The client accepts nothing older than 10 s: a miss, whose answer replaces the entry.
    assert_eq!(
        answer(chat(&gw, "t", &[("cache-control", "max-age=10")]).await)
            .await
            .1,
        "miss"
    );
    assert_eq!(oa.requests().len(), 2);
    assert_eq!(answer(chat(&gw, "t", &[]).await).await.1, "hit");
    clock.advance(60_001);
    assert_eq!(answer(chat(&gw, "t", &[]).await).await.1, "miss");
    assert_eq!(oa.requests().len(), 3);
    // A key's own TTL, and one cut to max_ttl.
    let (short, _) = create_key(&gw, json!({"name": "short", "cache_ttl": 10})).await;
    let (long, _) = create_key(&gw, json!({"name": "long", "cache_ttl": 3600})).await;
    assert_eq!(answer(chat_as(&gw, &short, "s", &[]).await).await.1, "miss");
    assert_eq!(answer(chat_as(&gw, &long, "l", &[]).await).await.1, "miss");
    clock.advance(9_000);
    assert_eq!(answer(chat_as(&gw, &short, "s", &[]).await).await.1, "hit");
    clock.advance(2_000);
    assert_eq!(answer(chat_as(&gw, &short, "s", &[]).await).await.1, "miss");
    assert_eq!(answer(chat_as(&gw, &long, "l", &[]).await).await.1, "hit");
    clock.advance(80_000);
    assert_eq!(answer(chat_as(&gw, &long, "l", &[]).await).await.1, "miss");
    assert_eq!(oa.requests().len(), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_is_replayed_as_a_stream_with_the_same_event_shapes() {
    let oa = emulator(Vendor::OpenAi).await;
    let gw = gateway(&oa, "").await;
    let (live, h) = stream(&gw, "stream me please").await;
    assert_eq!(h, "miss");
    assert!(live.len() > 3, "{live:?}");
    let (replayed, h) = stream(&gw, "stream me please").await;
    assert_eq!(h, "hit");
    assert_eq!(oa.requests().len(), 1);
    let live: Vec<Value> = live.into_iter().map(shape).collect();
    let replayed: Vec<Value> = replayed.into_iter().map(shape).collect();
    assert_eq!(replayed, live, "the same chunks, event for event");
    // The whole answer to the same question is the same answer, from the same entry.
    let (whole, h) = answer(chat(&gw, "stream me please", &[]).await).await;
    assert_eq!(h, "hit");
    assert_eq!(whole, text_of(&live));
    assert_eq!(oa.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_answer_serves_a_later_stream_request() {
    let oa = emulator(Vendor::OpenAi).await;
    let gw = gateway(&oa, "").await;
    let (whole, h) = answer(chat(&gw, "first whole", &[]).await).await;
    assert_eq!(h, "miss");
    let (chunks, h) = stream(&gw, "first whole").await;
    assert_eq!(h, "hit");
    assert_eq!(oa.requests().len(), 1);
    assert_eq!(text_of(&chunks), whole);
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
    }
    let last_choice = chunks
        .iter()
        .rev()
        .find(|c| !c["choices"].as_array().unwrap().is_empty())
        .unwrap();
    assert!(last_choice["choices"][0]["finish_reason"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_and_cut_upstream_answers_are_not_cached() {
    let oa = emulator(Vendor::OpenAi).await;
    let gw = gateway(&oa, "").await;
    oa.push_fault(Fault::once(FaultKind::Status {
        status: 500,
        body: None,
        retry_after: None,
    }));
    let resp = chat(&gw, "fragile", &[]).await;
    assert_eq!(resp.status(), 502, "the upstream failure is a bad gateway");
    assert_eq!(answer(chat(&gw, "fragile", &[]).await).await.1, "miss");
    assert_eq!(oa.requests().len(), 2);
    // A stream cut after its first frames ends in an error frame; nothing is kept.
    oa.push_fault(Fault::once(FaultKind::StreamCutAfter(3)));
    let resp = gw
        .post("/v1/chat/completions")
        .json(&body("cut short somewhere in the middle", true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(text.contains("\"error\""), "{text}");
    let (_, h) = stream(&gw, "cut short somewhere in the middle").await;
    assert_eq!(h, "miss");
    // A mid-stream error event is not kept either.
    oa.push_fault(Fault::once(FaultKind::ErrorEvent { after: 2 }));
    let resp = gw
        .post("/v1/chat/completions")
        .json(&body("an error midway through", true))
        .send()
        .await
        .unwrap();
    assert!(resp.text().await.unwrap().contains("\"error\""));
    let (_, h) = stream(&gw, "an error midway through").await;
    assert_eq!(h, "miss");
    assert_eq!(oa.requests().len(), 6);
    assert_eq!(metric(&gw.metrics().await, "llmux_cache_hits_total"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_are_cached_too() {
    let oa = emulator(Vendor::OpenAi).await;
    let gw = gateway(&oa, "").await;
    let embed = || async {
        let resp = gw
            .post("/v1/embeddings")
            .json(&json!({"model": "text-embedding-3-small", "input": ["a", "b"]}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let h = cache_header(&resp);
        let v: Value = resp.json().await.unwrap();
        (v["data"].clone(), h)
    };
    let (a, h) = embed().await;
    assert_eq!(h, "miss");
    let (b, h) = embed().await;
    assert_eq!((b, h.as_str()), (a, "hit"));
    assert_eq!(oa.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_opt_in_or_out_and_scope_key_keeps_keys_apart() {
    let oa = emulator(Vendor::OpenAi).await;
    let gw = start_with_store(&format!(
        "[cache]\nmode = \"default_off\"\nscope = \"key\"\n{ONE_ATTEMPT}{}",
        oa_channel(&oa)
    ))
    .await;
    let (on, on_id) = create_key(&gw, json!({"name": "on", "cache": true})).await;
    let (plain, _) = create_key(&gw, json!({"name": "plain"})).await;
    let (other_on, _) = create_key(&gw, json!({"name": "other", "cache": true})).await;
    // A key without a setting follows mode = default_off.
    assert_eq!(
        answer(chat_as(&gw, &plain, "k", &[]).await).await.1,
        "bypass"
    );
    assert_eq!(
        answer(chat_as(&gw, &plain, "k", &[]).await).await.1,
        "bypass"
    );
    assert_eq!(answer(chat_as(&gw, &on, "k", &[]).await).await.1, "miss");
    assert_eq!(answer(chat_as(&gw, &on, "k", &[]).await).await.1, "hit");
    // scope = "key": another key's entries are not its own.
    assert_eq!(
        answer(chat_as(&gw, &other_on, "k", &[]).await).await.1,
        "miss"
    );
    assert_eq!(oa.requests().len(), 4);
    // Turned off through the admin API, the key bypasses it.
    let resp = gw
        .http
        .patch(format!("{}/admin/keys/{on_id}", gw.url))
        .bearer_auth(ADMIN)
        .json(&json!({"cache": false, "cache_ttl": 30}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        (
            v["record"]["cache"].clone(),
            v["record"]["cache_ttl"].clone()
        ),
        (json!(false), json!(30))
    );
    // The gateway that changed the key applies it at once.
    assert_eq!(answer(chat_as(&gw, &on, "k", &[]).await).await.1, "bypass");
    // A TTL out of bounds is refused with the field named.
    let resp = gw
        .http
        .patch(format!("{}/admin/keys/{on_id}", gw.url))
        .bearer_auth(ADMIN)
        .json(&json!({"cache_ttl": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cache_ttl"),
        "{v}"
    );
}

/// Usage of a miss and a hit: two records, exactly once each; the hit's at cost 0 with
/// `cache_hit`, its tokens those of the stored answer, left out of the key's spend; the hit
/// still takes an RPM slot.
async fn hits_are_recorded_at_cost_zero_and_count_against_rpm(db: &str) {
    let oa = emulator(Vendor::OpenAi).await;
    let gw = start_with_database(db, &format!("[cache]\n{ONE_ATTEMPT}{}", oa_channel(&oa))).await;
    let (key, id) = create_key(&gw, json!({"name": "k", "rpm": 2, "budget_tokens": 100000})).await;
    assert_eq!(
        answer(chat_as(&gw, &key, "bill me once", &[]).await)
            .await
            .1,
        "miss"
    );
    assert_eq!(
        answer(chat_as(&gw, &key, "bill me once", &[]).await)
            .await
            .1,
        "hit"
    );
    // The third request would be a hit, but the key's RPM is spent by the first two.
    let resp = chat_as(&gw, &key, "bill me once", &[]).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(oa.requests().len(), 1);
    let recs = records(&gw, 2).await;
    let hit = recs.iter().find(|r| r.cache_hit).expect("a hit record");
    let miss = recs.iter().find(|r| !r.cache_hit).expect("a miss record");
    assert!(miss.cost > 0.0, "{miss:?}");
    assert_eq!(hit.cost, 0.0);
    assert_eq!(hit.status, 200);
    assert_eq!(hit.key_id, Some(id));
    assert_eq!(
        (hit.channel.as_str(), hit.provider.as_str()),
        ("oa", "openai")
    );
    assert_eq!(
        (hit.input_tokens, hit.output_tokens),
        (miss.input_tokens, miss.output_tokens)
    );
    assert_ne!(hit.request_id, miss.request_id);
    let keys = admin_json(&gw, "/admin/keys").await;
    let k = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id)
        .unwrap()
        .clone();
    assert_eq!(
        k["spent_tokens"].as_u64().unwrap(),
        miss.input_tokens + miss.output_tokens,
        "only the miss is spent"
    );
    assert!((k["spent_cost"].as_f64().unwrap() - miss.cost).abs() < 1e-12);
}

on_both_stores!(hits_are_recorded_at_cost_zero_and_count_against_rpm);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_series_count_hits_misses_bytes_and_evictions() {
    let oa = emulator(Vendor::OpenAi).await;
    // Room for a few small answers only.
    let gw = gateway(&oa, "max_bytes = 4096\nmax_entry_bytes = 2048").await;
    answer(chat(&gw, "m0", &[]).await).await;
    answer(chat(&gw, "m0", &[]).await).await;
    answer(chat(&gw, "m1", &[("cache-control", "no-store")]).await).await;
    let m = gw.metrics().await;
    assert_eq!(metric(&m, "llmux_cache_hits_total"), 1.0);
    assert_eq!(metric(&m, "llmux_cache_misses_total"), 1.0);
    assert_eq!(metric(&m, "llmux_cache_bypasses_total"), 1.0);
    assert_eq!(metric(&m, "llmux_cache_stores_total"), 1.0);
    assert!(metric(&m, "llmux_cache_stored_bytes_total") > 100.0);
    assert!(metric(&m, "llmux_cache_bytes") > 100.0);
    assert_eq!(metric(&m, "llmux_cache_entries"), 1.0);
    // Enough distinct answers to pass max_bytes: some are evicted, the total stays bounded.
    for i in 0..20 {
        answer(chat(&gw, &format!("fill {i}"), &[]).await).await;
    }
    gw.state.cache.as_ref().unwrap().sync().await;
    let m = gw.metrics().await;
    assert!(
        metric(&m, "llmux_cache_evictions_total{reason=\"size\"}") > 0.0,
        "{m}"
    );
    assert!(metric(&m, "llmux_cache_bytes") <= 4096.0);
    assert_eq!(metric(&m, "llmux_cache_stores_total"), 21.0);
}

fn redis_gateway_config(redis: &str, prefix: &str, oa: &Emulator) -> Config {
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\napi_keys = [\"{KEY}\"]\nredis = \"{redis}\"\nredis_prefix = \"{prefix}\"\nshutdown_grace = \"10s\"\n\n[cache]\nbackend = \"redis\"\n{ONE_ATTEMPT}{}",
        oa_channel(oa)
    );
    Config::resolve(RawConfig::parse(&text, Vec::new()).unwrap(), |_| None).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_gateways_share_entries_through_redis() {
    let Some(p) = redis_prefix().await else {
        return;
    };
    let oa = emulator(Vendor::OpenAi).await;
    let a = start_config(redis_gateway_config(REDIS_URL, &p.prefix, &oa)).await;
    let b = start_config(redis_gateway_config(REDIS_URL, &p.prefix, &oa)).await;
    let (text, h) = answer(chat(&a, "shared question", &[]).await).await;
    assert_eq!(h, "miss");
    // The entry is written after the answer, off the request's path: wait for it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let key = loop {
        let keys = p.keys();
        if let Some(k) = keys.iter().find(|k| k.contains("cache:")) {
            break k.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no entry in Redis: {keys:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // One key, hash-tagged by its digest, with the TTL of cache.ttl.
    assert!(
        key.starts_with(&format!("{}cache:{{", p.prefix)) && key.ends_with('}'),
        "{key}"
    );
    let client = redis::Client::open(REDIS_URL).unwrap();
    let mut conn = client.get_connection().unwrap();
    let ttl: i64 = redis::cmd("PTTL").arg(&key).query(&mut conn).unwrap();
    assert!((3_500_000..=3_600_000).contains(&ttl), "{ttl}");
    let (shared, h) = answer(chat(&b, "shared question", &[]).await).await;
    assert_eq!((shared.as_str(), h.as_str()), (text.as_str(), "hit"));
    // A stream request on either gateway replays the same entry.
    let (chunks, h) = stream(&b, "shared question").await;
    assert_eq!(h, "hit");
    assert_eq!(text_of(&chunks), text);
    assert_eq!(
        oa.requests().len(),
        1,
        "one upstream call for three answers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_gateways_share_entries_through_a_redis_cluster() {
    let Some(cluster) = tokio::task::spawn_blocking(|| LocalCluster::start(None))
        .await
        .unwrap()
    else {
        return;
    };
    let oa = emulator(Vendor::OpenAi).await;
    let url = cluster.url();
    let a = start_config(redis_gateway_config(&url, "llmux:", &oa)).await;
    let b = start_config(redis_gateway_config(&url, "llmux:", &oa)).await;
    let (text, h) = answer(chat(&a, "a question for the cluster", &[]).await).await;
    assert_eq!(h, "miss");
    // The entry is written off the request's path: wait for it on whichever primary holds it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let (node, key) = loop {
        let found: Vec<(usize, String)> = tokio::task::block_in_place(|| {
            (0..cluster.len())
                .flat_map(|i| {
                    cluster
                        .keys_on(i, "llmux:cache:*")
                        .into_iter()
                        .map(move |k| (i, k))
                })
                .collect()
        });
        if let Some(first) = found.first() {
            assert_eq!(found.len(), 1, "one key per entry: {found:?}");
            break first.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no entry on any primary"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // It lives on the primary that owns its slot (the cluster client routed it there).
    let owner = tokio::task::block_in_place(|| cluster.owner(cluster.keyslot(&key)));
    assert_eq!(node, owner, "{key}");
    let (shared, h) = answer(chat(&b, "a question for the cluster", &[]).await).await;
    assert_eq!((shared.as_str(), h.as_str()), (text.as_str(), "hit"));
    let (chunks, h) = stream(&b, "a question for the cluster").await;
    assert_eq!(h, "hit");
    assert_eq!(text_of(&chunks), text);
    assert_eq!(
        oa.requests().len(),
        1,
        "one upstream call for three answers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_redis_is_a_miss_never_an_error() {
    let oa = emulator(Vendor::OpenAi).await;
    let gw = start_config(redis_gateway_config(&closed_redis_url(), "llmux:", &oa)).await;
    for _ in 0..4 {
        let (_, h) = answer(chat(&gw, "no redis", &[]).await).await;
        assert_eq!(h, "miss");
    }
    assert_eq!(oa.requests().len(), 4);
    let m = gw.metrics().await;
    assert!(
        metric(&m, "llmux_cache_backend_errors_total{op=\"get\"}") >= 4.0,
        "{m}"
    );
    assert_eq!(metric(&m, "llmux_cache_misses_total"), 4.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_stored_from_one_dialect_is_served_to_the_others_in_their_own_format() {
    let oa = emulator(Vendor::OpenAi).await;
    let gw = gateway(&oa, "").await;
    let (text, h) = answer(chat(&gw, "x", &[]).await).await;
    assert_eq!(h, "miss");
    let send = |path: &'static str, body: Value| {
        let gw = &gw;
        async move {
            let r = gw.post(path).json(&body).send().await.unwrap();
            assert_eq!(r.status(), 200, "{path}");
            let h = cache_header(&r);
            (h, r.text().await.unwrap())
        }
    };
    // The same conversation (one user turn, 20 tokens at most) in three other dialects.
    let (h, b) = send(
        "/v1/responses",
        json!({"model": "gpt-4o-mini", "max_output_tokens": 20, "input": "x"}),
    )
    .await;
    assert_eq!(h, "hit");
    let v: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v["object"], "response");
    assert_eq!(v["output"][0]["content"][0]["text"], text.as_str());
    let (h, b) = send(
        "/v1beta/models/gpt-4o-mini:generateContent",
        json!({"contents": [{"role": "user", "parts": [{"text": "x"}]}],
               "generationConfig": {"maxOutputTokens": 20}}),
    )
    .await;
    assert_eq!(h, "hit");
    let v: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(
        v["candidates"][0]["content"]["parts"][0]["text"],
        text.as_str()
    );
    let (h, b) = send(
        "/api/v1/services/aigc/text-generation/generation",
        json!({"model": "gpt-4o-mini", "input": {"messages": [{"role": "user", "content": "x"}]},
               "parameters": {"max_tokens": 20, "result_format": "message"}}),
    )
    .await;
    assert_eq!(h, "hit");
    let v: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(
        v["output"]["choices"][0]["message"]["content"],
        text.as_str()
    );
    // And as a Responses event stream.
    let (h, b) = send(
        "/v1/responses",
        json!({"model": "gpt-4o-mini", "max_output_tokens": 20, "input": "x", "stream": true}),
    )
    .await;
    assert_eq!(h, "hit");
    assert!(b.contains("event: response.output_text.delta"), "{b}");
    assert!(b.contains("event: response.completed"), "{b}");
    assert_eq!(oa.requests().len(), 1, "one upstream call for five answers");
}
