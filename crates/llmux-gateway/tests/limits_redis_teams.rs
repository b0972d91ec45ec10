//! Periodic budgets and teams shared through Redis: two `KeyLimits` with one prefix and one
//! injected clock stand for two gateways; tasks released together are split across them, and
//! the results are checked against the bounds in `docs/limits.md`. Every scenario runs on the
//! shared server at 127.0.0.1:6379 (a random prefix, deleted when it ends) and on a local
//! three-primary Redis Cluster. Under `CI=true` a missing Redis fails.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{RedisKind, TestRedis};
use llmux_gateway::limits::{
    Admission, BudgetCalendar, BudgetPeriod, KeyLimits, LimitError, ManualClock, RedisLimits,
};
use llmux_gateway::metrics::limits_backend_errors;
use llmux_gateway::store::{KeyRecord, TeamRecord};
use prometheus::IntCounterVec;
use tokio::sync::Barrier;

/// 2026-01-31 23:59:59.999 in Berlin: the last millisecond of January there.
const JAN_END_BERLIN: i64 = 1_769_900_399_999;

fn key(id: i64) -> KeyRecord {
    KeyRecord {
        id,
        name: format!("k{id}"),
        ..KeyRecord::default()
    }
}

fn in_team(k: KeyRecord, team: &TeamRecord) -> KeyRecord {
    KeyRecord {
        team_id: Some(team.id),
        team: Some(team.name.clone()),
        team_record: Some(Arc::new(team.clone())),
        ..k
    }
}

struct Ctx {
    p: TestRedis,
    errors: IntCounterVec,
    clock: Arc<ManualClock>,
}

async fn ctx(kind: RedisKind) -> Option<Ctx> {
    Some(Ctx {
        p: kind.start().await?,
        errors: limits_backend_errors().unwrap(),
        clock: Arc::new(ManualClock::new(JAN_END_BERLIN)),
    })
}

impl Ctx {
    /// One "gateway": its own connection, the shared prefix and clock, Berlin's periods.
    fn gateway(&self) -> KeyLimits {
        let backend = RedisLimits::new(
            &self.p.config(Duration::from_secs(900)),
            self.errors.clone(),
        )
        .unwrap();
        KeyLimits::new()
            .with_calendar(BudgetCalendar::new("Europe/Berlin").unwrap())
            .with_clock(self.clock.clone())
            .with_redis(backend)
    }

    async fn finish(&self, gateways: &[KeyLimits]) {
        for g in gateways {
            g.drain().await;
        }
        for op in ["admit", "settle"] {
            assert_eq!(self.errors.with_label_values(&[op]).get(), 0, "{op} failed");
        }
    }
}

/// One admission per entry of `keys`, all at once, entry `i` on gateway `i % 2`.
async fn admit_across(
    gateways: &[KeyLimits; 2],
    keys: Vec<KeyRecord>,
    estimate: u64,
) -> Vec<Result<Admission, LimitError>> {
    let barrier = Arc::new(Barrier::new(keys.len()));
    let mut tasks = Vec::new();
    for (i, k) in keys.into_iter().enumerate() {
        let (limits, barrier) = (gateways[i % 2].clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            limits.admit(&k, estimate).await
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// Settles every admitted request at `tokens` on the gateway that made it, waits until Redis
/// has them, and returns how many there were.
async fn settle_all(
    gateways: &[KeyLimits; 2],
    results: Vec<Result<Admission, LimitError>>,
    tokens: u64,
) -> usize {
    let mut n = 0;
    for (i, r) in results.into_iter().enumerate() {
        if let Ok(a) = r {
            assert!(a.is_shared(), "decided in process, not by Redis");
            gateways[i % 2].settle(a, tokens, 0.0);
            n += 1;
        }
    }
    for g in gateways {
        g.drain().await;
    }
    n
}

on_redis_and_cluster!(
    a_monthly_key_budget_resets_at_the_boundary_across_two_gateways,
    a_monthly_team_budget_is_shared_by_two_keys_across_two_gateways,
    team_rpm_is_shared_by_two_keys_across_two_gateways_exactly,
);

async fn a_monthly_key_budget_resets_at_the_boundary_across_two_gateways(kind: RedisKind) {
    let Some(c) = ctx(kind).await else {
        return;
    };
    let gws = [c.gateway(), c.gateway()];
    let k = KeyRecord {
        budget_tokens: Some(1_000),
        budget_period: BudgetPeriod::Monthly,
        period: "m:2026-01".into(),
        period_tokens: 300,
        ..key(1)
    };
    let results = admit_across(&gws, vec![k.clone(); 200], 100).await;
    assert_eq!(settle_all(&gws, results, 100).await, 7);
    let results = admit_across(&gws, vec![k.clone(); 200], 100).await;
    assert!(results
        .iter()
        .all(|r| matches!(r, Err(LimitError::BudgetExhausted))));

    c.clock.advance(1);
    let results = admit_across(&gws, vec![k.clone(); 200], 100).await;
    assert_eq!(
        settle_all(&gws, results, 100).await,
        10,
        "February starts afresh"
    );
    assert_eq!(
        gws[1].admit(&k, 100).await.unwrap_err(),
        LimitError::BudgetExhausted
    );
    // Each month's spend is its own Redis key: nothing was swept or rewritten.
    let keys = c.p.keys();
    let jan = format!("{}{{1}}:p:m:2026-01", c.p.prefix);
    let feb = format!("{}{{1}}:p:m:2026-02", c.p.prefix);
    assert!(keys.contains(&jan) && keys.contains(&feb), "{keys:?}");
    c.finish(&gws).await;
}

async fn a_monthly_team_budget_is_shared_by_two_keys_across_two_gateways(kind: RedisKind) {
    let Some(c) = ctx(kind).await else {
        return;
    };
    let gws = [c.gateway(), c.gateway()];
    let team = TeamRecord {
        id: 3,
        name: "research".into(),
        budget_tokens: Some(1_000),
        budget_period: BudgetPeriod::Monthly,
        ..TeamRecord::default()
    };
    let a = in_team(key(1), &team);
    let b = in_team(
        KeyRecord {
            budget_tokens: Some(300),
            ..key(2)
        },
        &team,
    );
    // Entries alternate a, a, b, b, … so each key is served by both gateways.
    let keys: Vec<KeyRecord> = (0..200)
        .map(|i| {
            if (i / 2) % 2 == 0 {
                a.clone()
            } else {
                b.clone()
            }
        })
        .collect();
    let results = admit_across(&gws, keys.clone(), 100).await;
    let by_b = results
        .iter()
        .enumerate()
        .filter(|(i, r)| (i / 2) % 2 == 1 && r.is_ok())
        .count();
    assert!(by_b <= 3, "key 2 passed its own budget: {by_b}");
    assert_eq!(
        settle_all(&gws, results, 100).await,
        10,
        "the team's 1,000 tokens"
    );
    assert_eq!(
        gws[0].admit(&a, 1).await.unwrap_err(),
        LimitError::TeamBudgetExhausted
    );

    c.clock.advance(1);
    let results = admit_across(&gws, keys, 100).await;
    assert_eq!(settle_all(&gws, results, 100).await, 10);
    // Every key of the team lives under the team's hash tag (one Cluster slot).
    let tag = format!("{}{{t3}}:", c.p.prefix);
    let keys = c.p.keys();
    assert!(
        keys.iter().all(|k| k.starts_with(&tag)),
        "keys outside the team's slot: {keys:?}"
    );
    assert!(keys.contains(&format!("{tag}p:m:2026-02")), "{keys:?}");
    c.finish(&gws).await;
}

async fn team_rpm_is_shared_by_two_keys_across_two_gateways_exactly(kind: RedisKind) {
    let Some(c) = ctx(kind).await else {
        return;
    };
    let gws = [c.gateway(), c.gateway()];
    let team = TeamRecord {
        id: 4,
        name: "t".into(),
        rpm: Some(30),
        ..TeamRecord::default()
    };
    // Key 1 allows 20 of its own: the team's 30 are the binding limit for both together.
    let a = in_team(
        KeyRecord {
            rpm: Some(20),
            ..key(1)
        },
        &team,
    );
    let b = in_team(key(2), &team);
    let keys: Vec<KeyRecord> = (0..100)
        .map(|i| {
            if (i / 2) % 2 == 0 {
                a.clone()
            } else {
                b.clone()
            }
        })
        .collect();
    let results = admit_across(&gws, keys, 10).await;
    let by_a = results
        .iter()
        .enumerate()
        .filter(|(i, r)| (i / 2) % 2 == 0 && r.is_ok())
        .count();
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 30);
    assert!(by_a <= 20, "key 1 passed its own rpm: {by_a}");
    for r in &results {
        if let Err(e) = r {
            assert!(
                matches!(
                    e,
                    LimitError::TeamRateLimited { .. } | LimitError::RateLimited { .. }
                ),
                "{e:?}"
            );
        }
    }
    drop(results);
    c.finish(&gws).await;
}
