//! Two in-process gateways behind an imaginary load balancer: one SQLite file as their store,
//! one Redis prefix for their limits. A virtual key's RPM holds across both; with Redis down a
//! gateway still serves, deciding limits on its own, and counts it. Each scenario runs on one
//! Redis server and on a local three-primary Redis Cluster (`server.redis = "redis+cluster://…"`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use llmux_emulator::{Emulator, Vendor};
use llmux_gateway::config::UsageJournal;
use llmux_gateway::{Config, RawConfig};
use serde_json::{json, Value};

fn gateway_config(database: &str, redis: &str, prefix: &str, oa: &Emulator) -> Config {
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_key = \"{ADMIN}\"\ndatabase = \"{database}\"\nredis = \"{redis}\"\nredis_prefix = \"{prefix}\"\nshutdown_grace = \"10s\"\n\n{}",
        channel("oa", "openai", oa, "[\"gpt-4o-mini\"]", "")
    );
    Config::resolve(RawConfig::parse(&text, Vec::new()).unwrap(), |_| None).unwrap()
}

async fn create_key(gw: &Harness, body: Value) -> (String, i64) {
    let resp = gw
        .http
        .post(format!("{}/admin/keys", gw.url))
        .bearer_auth(ADMIN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let v: Value = resp.json().await.unwrap();
    (
        v["key"].as_str().unwrap().to_owned(),
        v["record"]["id"].as_i64().unwrap(),
    )
}

async fn chat(gw: &Harness, key: &str) -> reqwest::Response {
    gw.http
        .post(format!("{}/v1/chat/completions", gw.url))
        .bearer_auth(key)
        .json(&json!({"model":"gpt-4o-mini","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}))
        .send()
        .await
        .unwrap()
}

async fn readyz(gw: &Harness) -> (u16, Value) {
    let resp = gw
        .http
        .get(format!("{}/readyz", gw.url))
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

/// Shuts a gateway down and waits for it (settles still on their way to Redis included).
async fn stop(mut gw: Harness) {
    gw.shutdown();
    gw.task.take().unwrap().await.unwrap().unwrap();
}

on_redis_and_cluster!(
    two_gateways_sharing_redis_admit_exactly_the_keys_rpm,
    with_redis_down_requests_are_served_under_in_process_limits_and_counted,
);

async fn two_gateways_sharing_redis_admit_exactly_the_keys_rpm(kind: RedisKind) {
    let Some(p) = kind.start().await else {
        return;
    };
    let oa = emulator(Vendor::OpenAi).await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("gateway.sqlite3").display());
    // One SQLite file, but a usage journal each: two gateways never share one (the default
    // beside the database is locked by the first).
    let config = |journal: &str| {
        let mut c = gateway_config(&db, &p.url, &p.prefix, &oa);
        c.server.usage_journal = UsageJournal::Directory(dir.path().join(journal));
        c
    };
    let a = start_config(config("journal-a")).await;
    let b = start_config(config("journal-b")).await;
    // The key is created on one gateway; the other finds it in the shared store.
    let (key, id) = create_key(&a, json!({"name":"shared","rpm":10})).await;

    let gateways = [&a, &b];
    let responses = futures::future::join_all((0..30).map(|i| chat(gateways[i % 2], &key))).await;
    let mut served = [0, 0];
    let mut limited = 0;
    for (i, resp) in responses.into_iter().enumerate() {
        match resp.status().as_u16() {
            200 => served[i % 2] += 1,
            429 => {
                limited += 1;
                let wait: u64 = resp.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!((1..=60).contains(&wait), "Retry-After: {wait}");
                let body: Value = resp.json().await.unwrap();
                assert_eq!(body["error"]["code"], "rate_limit_exceeded");
            }
            other => panic!("status {other}: {}", resp.text().await.unwrap()),
        }
    }
    // Per-process limits would serve 10 on each gateway; shared, 10 in all.
    assert_eq!(served[0] + served[1], 10, "served per gateway: {served:?}");
    assert_eq!(limited, 20);
    for gw in gateways {
        let (status, body) = readyz(gw).await;
        assert_eq!((status, body["limits"].as_str()), (200, Some("redis")));
        let metrics = gw.metrics().await;
        for op in ["admit", "settle"] {
            let series = format!("llmux_limits_backend_errors_total{{op=\"{op}\"}} 0");
            assert!(metrics.lines().any(|l| l == series), "{metrics}");
        }
    }
    stop(a).await;
    stop(b).await;
    // Shutdown waited for the settles: the ten requests' tokens are in the shared spend.
    let mut conn = p.conn();
    let spent: Option<u64> = redis::cmd("HGET")
        .arg(format!("{}{{{id}}}:s", p.prefix))
        .arg("st")
        .query(&mut *conn)
        .unwrap();
    let spent = spent.unwrap_or(0);
    assert!(spent >= 10, "{spent} tokens settled");
}

async fn with_redis_down_requests_are_served_under_in_process_limits_and_counted(kind: RedisKind) {
    let oa = emulator(Vendor::OpenAi).await;
    let gw = start_config(gateway_config(
        "sqlite::memory:",
        &kind.closed_url(),
        "llmux-test:",
        &oa,
    ))
    .await;
    let (key, _) = create_key(&gw, json!({"name":"k","rpm":2})).await;
    assert_eq!(chat(&gw, &key).await.status(), 200);
    assert_eq!(chat(&gw, &key).await.status(), 200);
    // The gateway's own limits still apply.
    let resp = chat(&gw, &key).await;
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().get("retry-after").is_some());

    let metrics = gw.metrics().await;
    let count = metrics
        .lines()
        .find_map(|l| l.strip_prefix("llmux_limits_backend_errors_total{op=\"admit\"} "))
        .unwrap_or_else(|| panic!("no admit fallback counted:\n{metrics}"));
    assert_eq!(count, "3");
    // Still ready: requests are served, only the limits are per gateway for now.
    let (status, body) = readyz(&gw).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["limits"], "redis_unavailable");
    stop(gw).await;
}
