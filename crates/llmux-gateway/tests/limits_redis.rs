//! Per-key limits shared through Redis: two `KeyLimits` with one prefix stand for two gateways,
//! tasks released together by a barrier are split across them, and the results are checked
//! against the bounds in `docs/limits.md`. Every scenario runs twice: on the shared server at
//! 127.0.0.1:6379 (its own random prefix, deleted when done) and on a local three-primary Redis
//! Cluster it starts. Under `CI=true` a missing Redis fails the test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{RedisKind, TestRedis, REDIS_URL};
use llmux_core::SecretString;
use llmux_gateway::config::RedisConfig;
use llmux_gateway::limits::{Admission, KeyLimits, LimitError, RedisLimits};
use llmux_gateway::metrics::limits_backend_errors;
use llmux_gateway::store::KeyRecord;
use prometheus::IntCounterVec;
use tokio::sync::Barrier;

fn key(id: i64) -> KeyRecord {
    KeyRecord {
        id,
        name: format!("k{id}"),
        ..KeyRecord::default()
    }
}

fn redis_config(url: &str, prefix: &str, reservation_ttl: Duration) -> RedisConfig {
    RedisConfig {
        url: SecretString::new(url),
        prefix: prefix.to_owned(),
        ca_pem: None,
        reservation_ttl,
    }
}

/// A test's own Redis (and prefix) and the error counter its gateways share.
struct Ctx {
    p: TestRedis,
    errors: IntCounterVec,
}

async fn ctx(kind: RedisKind) -> Option<Ctx> {
    Some(Ctx {
        p: kind.start().await?,
        errors: limits_backend_errors().unwrap(),
    })
}

impl Ctx {
    /// One "gateway": its own connection to Redis, the shared prefix.
    fn gateway_with(&self, cost_per_token: f64, reservation_ttl: Duration) -> KeyLimits {
        let backend =
            RedisLimits::new(&self.p.config(reservation_ttl), self.errors.clone()).unwrap();
        KeyLimits::with_cost_per_token(cost_per_token).with_redis(backend)
    }

    fn gateway(&self) -> KeyLimits {
        self.gateway_with(0.0, Duration::from_secs(900))
    }

    /// Waits until every release and settle the gateways sent has reached Redis (so the
    /// prefix's keys are deleted after the last write), and checks that Redis never failed.
    async fn finish(&self, gateways: &[KeyLimits]) {
        for g in gateways {
            g.drain().await;
        }
        for op in ["admit", "settle"] {
            assert_eq!(self.errors.with_label_values(&[op]).get(), 0, "{op} failed");
        }
    }
}

/// Runs `n` admissions at once, task `i` on gateway `i % 2`; returns each estimate and result.
async fn admit_across(
    gateways: &[KeyLimits; 2],
    key: &KeyRecord,
    n: usize,
    estimate: impl Fn(usize) -> u64,
) -> Vec<(u64, Result<Admission, LimitError>)> {
    let barrier = Arc::new(Barrier::new(n));
    let mut tasks = Vec::new();
    for i in 0..n {
        let (limits, key, barrier) = (gateways[i % 2].clone(), key.clone(), barrier.clone());
        let est = estimate(i);
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            (est, limits.admit(&key, est).await)
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

fn admitted(results: Vec<(u64, Result<Admission, LimitError>)>) -> Vec<(u64, Admission)> {
    results
        .into_iter()
        .filter_map(|(e, r)| r.ok().map(|a| (e, a)))
        .collect()
}

on_redis_and_cluster!(
    two_gateways_admit_exactly_30_of_100_concurrent_requests_on_rpm_30,
    tpm_holds_across_two_gateways_under_200_concurrent_requests,
    token_budget_across_two_gateways_admits_exactly_10_of_200,
    cost_budget_across_two_gateways_admits_exactly_8_of_200,
    settling_on_one_gateway_replaces_the_reservation_on_the_other,
    a_dropped_admission_releases_its_reservation_for_every_gateway,
    a_reservation_leaked_by_a_dead_gateway_expires,
    spend_is_seeded_from_the_store_so_a_flushed_redis_keeps_budgets,
    keys_without_limits_never_touch_redis_and_every_key_written_has_a_ttl,
    redis_down_falls_back_to_in_process_limits_and_counts_it,
);

async fn two_gateways_admit_exactly_30_of_100_concurrent_requests_on_rpm_30(kind: RedisKind) {
    let Some(c) = ctx(kind).await else {
        return;
    };
    let gws = [c.gateway(), c.gateway()];
    let k = KeyRecord {
        rpm: Some(30),
        ..key(1)
    };
    let results = admit_across(&gws, &k, 100, |_| 10).await;
    for (_, r) in &results {
        match r {
            Ok(a) => assert!(a.is_shared(), "admitted in process, not by Redis"),
            Err(LimitError::RateLimited { retry_after }) => {
                assert!(*retry_after > Duration::ZERO && *retry_after <= Duration::from_secs(60))
            }
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    let per_gateway = [0, 1].map(|g| {
        results
            .iter()
            .enumerate()
            .filter(|(i, (_, r))| i % 2 == g && r.is_ok())
            .count()
    });
    // Limits kept per process would admit 30 on each gateway; shared, 30 in all.
    assert_eq!(per_gateway[0] + per_gateway[1], 30, "{per_gateway:?}");
    // Another key is not affected, on either gateway.
    let other = KeyRecord {
        rpm: Some(30),
        ..key(2)
    };
    assert!(gws[0].admit(&other, 10).await.unwrap().is_shared());
    assert!(gws[1].admit(&other, 10).await.is_ok());
    drop(results);
    c.finish(&gws).await;
}

async fn tpm_holds_across_two_gateways_under_200_concurrent_requests(kind: RedisKind) {
    let Some(c) = ctx(kind).await else {
        return;
    };
    let gws = [c.gateway(), c.gateway()];
    let k = KeyRecord {
        tpm: Some(3_000),
        ..key(1)
    };
    let results = admit_across(&gws, &k, 200, |i| 50 + (i as u64 * 37) % 100).await;
    let ok = admitted(results);
    let reserved: u64 = ok.iter().map(|(e, _)| *e).sum();
    // Bound: reserved tokens in the window never exceed TPM, across both gateways.
    assert!(reserved <= 3_000, "{reserved} tokens reserved");
    // Not overly strict: the window is filled to within one request (the largest is 149).
    assert!(reserved > 3_000 - 150, "only {reserved} tokens admitted");
    assert_eq!(
        gws[0].shared_usage(1).await.unwrap().window_tokens,
        reserved
    );

    // Settled at their estimates, the window stays full: the next request is refused.
    for (i, (est, a)) in ok.into_iter().enumerate() {
        gws[i % 2].settle(a, est, 0.0);
    }
    gws[0].drain().await;
    gws[1].drain().await;
    assert_eq!(
        gws[1].shared_usage(1).await.unwrap().window_tokens,
        reserved
    );
    assert!(matches!(
        gws[1].admit(&k, 200).await,
        Err(LimitError::RateLimited { .. })
    ));
    c.finish(&gws).await;
}

async fn token_budget_across_two_gateways_admits_exactly_10_of_200(kind: RedisKind) {
    let Some(c) = ctx(kind).await else {
        return;
    };
    let gws = [c.gateway(), c.gateway()];
    let k = KeyRecord {
        budget_tokens: Some(10_000),
        spent_tokens: 9_000, // from the store
        ..key(1)
    };
    let ok = admitted(admit_across(&gws, &k, 200, |_| 100).await);
    assert_eq!(ok.len(), 10, "exactly the remaining 1,000 tokens reserved");
    let usage = gws[0].shared_usage(1).await.unwrap();
    assert_eq!((usage.reserved_tokens, usage.spent_tokens), (1_000, 9_000));

    // Requests used 20 tokens more than estimated: spend ≤ budget + Σ(actual − estimate).
    let n = ok.len() as u64;
    for (i, (_, a)) in ok.into_iter().enumerate() {
        gws[i % 2].settle(a, 120, 0.0);
    }
    gws[0].drain().await;
    gws[1].drain().await;
    let usage = gws[1].shared_usage(1).await.unwrap();
    assert_eq!(usage.spent_tokens, 9_000 + n * 120);
    assert_eq!(usage.reserved_tokens, 0);
    assert!(usage.spent_tokens <= 10_000 + n * 20);
    // A stale record from the store (still 9,000 spent) does not erase the settled spend.
    assert_eq!(
        gws[0].admit(&k, 1).await.unwrap_err(),
        LimitError::BudgetExhausted
    );
    // A fresher record that includes the same usage is not counted twice.
    let fresh = KeyRecord {
        spent_tokens: 9_000 + n * 120,
        budget_tokens: Some(20_000),
        ..k.clone()
    };
    let held = gws[0].admit(&fresh, 8_000).await.unwrap();
    assert_eq!(
        gws[1].admit(&fresh, 2_000).await.unwrap_err(),
        LimitError::BudgetExhausted
    );
    drop(held);
    c.finish(&gws).await;
}

async fn cost_budget_across_two_gateways_admits_exactly_8_of_200(kind: RedisKind) {
    let Some(c) = ctx(kind).await else {
        return;
    };
    // 1/1024 per token, so the arithmetic is exact: each request reserves 0.0625.
    let ttl = Duration::from_secs(900);
    let gws = [
        c.gateway_with(1.0 / 1024.0, ttl),
        c.gateway_with(1.0 / 1024.0, ttl),
    ];
    let k = KeyRecord {
        budget_cost: Some(1.0),
        spent_cost: 0.5,
        ..key(7)
    };
    let ok = admitted(admit_across(&gws, &k, 200, |_| 64).await);
    assert_eq!(ok.len(), 8);
    assert_eq!(gws[0].shared_usage(7).await.unwrap().reserved_cost, 0.5);
    for (i, (_, a)) in ok.into_iter().enumerate() {
        assert_eq!(a.reserved_cost(), 0.0625);
        gws[i % 2].settle(a, 64, 0.0625);
    }
    gws[0].drain().await;
    gws[1].drain().await;
    let usage = gws[0].shared_usage(7).await.unwrap();
    assert_eq!((usage.spent_cost, usage.reserved_cost), (1.0, 0.0));
    assert_eq!(
        gws[1].admit(&k, 1).await.unwrap_err(),
        LimitError::BudgetExhausted
    );
    c.finish(&gws).await;
}

async fn settling_on_one_gateway_replaces_the_reservation_on_the_other(kind: RedisKind) {
    let Some(c) = ctx(kind).await else {
        return;
    };
    let (a, b) = (c.gateway(), c.gateway());
    let k = KeyRecord {
        budget_tokens: Some(1_000),
        tpm: Some(1_000),
        ..key(3)
    };
    let first = a.admit(&k, 900).await.unwrap();
    assert!(first.is_shared());
    // Both the budget and the TPM window are held by the estimate.
    assert_eq!(
        b.admit(&k, 200).await.unwrap_err(),
        LimitError::BudgetExhausted
    );
    a.settle(first, 100, 0.0);
    a.drain().await;
    // The actual 100 tokens replaced the 900 reserved, in the budget and in the window.
    let usage = b.shared_usage(3).await.unwrap();
    assert_eq!(
        (
            usage.spent_tokens,
            usage.reserved_tokens,
            usage.window_tokens
        ),
        (100, 0, 100)
    );
    let second = b.admit(&k, 900).await.unwrap();
    assert_eq!(b.shared_usage(3).await.unwrap().reserved_tokens, 900);
    // The window now holds 100 + 900 = TPM: a further token is a rate limit (the budget,
    // 100 spent + 900 reserved, is also full, and budgets are checked first).
    assert_eq!(
        a.admit(&k, 1).await.unwrap_err(),
        LimitError::BudgetExhausted
    );
    drop(second);
    b.drain().await;
    assert!(matches!(
        a.admit(&k, 1).await.unwrap_err(),
        LimitError::RateLimited { .. }
    ));
    c.finish(&[a, b]).await;
}

async fn a_dropped_admission_releases_its_reservation_for_every_gateway(kind: RedisKind) {
    let Some(c) = ctx(kind).await else {
        return;
    };
    let (a, b) = (c.gateway(), c.gateway());
    let k = KeyRecord {
        budget_tokens: Some(1_000),
        ..key(4)
    };
    let held = a.admit(&k, 800).await.unwrap();
    assert_eq!(
        b.admit(&k, 300).await.unwrap_err(),
        LimitError::BudgetExhausted
    );
    drop(held); // abandoned without settling: nothing spent, reservation released
    a.drain().await;
    let usage = b.shared_usage(4).await.unwrap();
    assert_eq!((usage.spent_tokens, usage.reserved_tokens), (0, 0));
    assert!(b.admit(&k, 900).await.is_ok());
    c.finish(&[a, b]).await;
}

async fn a_reservation_leaked_by_a_dead_gateway_expires(kind: RedisKind) {
    let Some(c) = ctx(kind).await else {
        return;
    };
    let alive = c.gateway();
    let k = KeyRecord {
        budget_tokens: Some(1_000),
        ..key(5)
    };
    // A gateway that dies mid-request never settles nor releases: with the normal expiry its
    // reservation holds the budget...
    let dying = c.gateway();
    std::mem::forget(dying.admit(&k, 800).await.unwrap());
    assert_eq!(
        alive.admit(&k, 300).await.unwrap_err(),
        LimitError::BudgetExhausted
    );

    // ...until it expires. A gateway whose reservations expire at once stands for one whose
    // reservation has outlived `reservation_ttl`; the next admission anywhere drops it.
    let k = KeyRecord {
        budget_tokens: Some(1_000),
        ..key(6)
    };
    let expiring = c.gateway_with(0.0, Duration::ZERO);
    std::mem::forget(expiring.admit(&k, 800).await.unwrap());
    let after = alive.admit(&k, 900).await.unwrap();
    assert!(after.is_shared());
    assert_eq!(alive.shared_usage(6).await.unwrap().reserved_tokens, 900);
    drop(after);
    c.finish(&[alive, dying, expiring]).await;
}

async fn spend_is_seeded_from_the_store_so_a_flushed_redis_keeps_budgets(kind: RedisKind) {
    let Some(c) = ctx(kind).await else {
        return;
    };
    let g = c.gateway();
    // Nothing in Redis yet (as after a flush); the store says 9,950 of 10,000 are spent.
    let k = KeyRecord {
        budget_tokens: Some(10_000),
        spent_tokens: 9_950,
        ..key(8)
    };
    assert_eq!(
        g.admit(&k, 100).await.unwrap_err(),
        LimitError::BudgetExhausted
    );
    assert!(g.admit(&k, 50).await.is_ok());
    assert_eq!(g.shared_usage(8).await.unwrap().spent_tokens, 9_950);
    c.finish(&[g]).await;
}

async fn keys_without_limits_never_touch_redis_and_every_key_written_has_a_ttl(kind: RedisKind) {
    let Some(c) = ctx(kind).await else {
        return;
    };
    let g = c.gateway();
    let free = g.admit(&key(9), 100).await.unwrap();
    assert!(!free.is_shared());
    g.settle(free, 100, 0.0);
    g.drain().await;
    assert!(c.p.keys().is_empty(), "{:?}", c.p.keys());

    let limited = g
        .admit(
            &KeyRecord {
                rpm: Some(5),
                budget_tokens: Some(1_000),
                ..key(9)
            },
            100,
        )
        .await
        .unwrap();
    let with_ttl = || {
        let mut conn = c.p.conn();
        let keys = c.p.keys();
        for k in &keys {
            assert!(k.starts_with(&format!("{}{{9}}:", c.p.prefix)), "{k}");
            let ttl: i64 = redis::cmd("PTTL").arg(k).query(&mut *conn).unwrap();
            assert!(ttl > 0, "{k} has no TTL ({ttl})");
        }
        keys.len()
    };
    // The window, the held reservations and the sums.
    assert_eq!(with_ttl(), 3);
    g.settle(limited, 90, 0.0);
    g.drain().await;
    // Nothing held any more: Redis dropped the empty set.
    assert_eq!(with_ttl(), 2);
    c.finish(&[g]).await;
}

async fn redis_down_falls_back_to_in_process_limits_and_counts_it(kind: RedisKind) {
    // No Redis needed: the URL points at a loopback port nothing listens on.
    let errors: IntCounterVec = limits_backend_errors().unwrap();
    let backend = RedisLimits::new(
        &redis_config(&kind.closed_url(), "llmux-test:", Duration::from_secs(900)),
        errors.clone(),
    )
    .unwrap();
    let limits = KeyLimits::new().with_redis(backend);
    let k = KeyRecord {
        rpm: Some(2),
        ..key(1)
    };
    let a = limits.admit(&k, 10).await.unwrap();
    let b = limits.admit(&k, 10).await.unwrap();
    assert!(!a.is_shared() && !b.is_shared());
    // The in-process limits still hold.
    assert!(matches!(
        limits.admit(&k, 10).await,
        Err(LimitError::RateLimited { .. })
    ));
    assert_eq!(errors.with_label_values(&["admit"]).get(), 3);
    // Three failures in a row: Redis is skipped for a while (still counted).
    assert_eq!(limits.backend(), "redis_unavailable");
    let other = KeyRecord {
        rpm: Some(2),
        ..key(2)
    };
    assert!(!limits.admit(&other, 10).await.unwrap().is_shared());
    assert_eq!(errors.with_label_values(&["admit"]).get(), 4);
    limits.settle(a, 10, 0.0);
    limits.drain().await;
    assert_eq!(errors.with_label_values(&["settle"]).get(), 0);
}

#[test]
fn a_bad_redis_url_is_a_clear_error_without_the_url() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let in_rt = rt.enter();
    for url in [
        "redis://user:hunter2-secret@/0",
        "redis+cluster://user:hunter2-secret@h1:7000,h2:notaport",
        "redis+cluster://user:hunter2-secret@h1:7000,h2:7001/2",
    ] {
        let err = RedisLimits::new(
            &redis_config(url, "llmux:", Duration::from_secs(900)),
            limits_backend_errors().unwrap(),
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("server.redis"), "{msg}");
        assert!(!msg.contains("hunter2"), "{msg}");
    }
    drop(in_rt);
    // Outside a runtime: an error, not a panic.
    let err = RedisLimits::new(
        &redis_config(REDIS_URL, "llmux:", Duration::from_secs(900)),
        limits_backend_errors().unwrap(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("tokio runtime"), "{err}");
}
