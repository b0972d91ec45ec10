//! Periodic budgets and teams in process, under real concurrency (multi-threaded runtime, tasks
//! released together), with the clock injected so a period's boundary is crossed without
//! waiting; checked against the bounds in `docs/limits.md`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use llmux_gateway::limits::{
    Admission, BudgetCalendar, BudgetPeriod, KeyLimits, LimitError, ManualClock,
};
use llmux_gateway::store::{KeyRecord, TeamRecord};
use tokio::sync::Barrier;

/// 2026-01-31 23:59:59.999 in Berlin (UTC+1): the last millisecond of January there.
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

fn berlin_limits(clock: &Arc<ManualClock>) -> KeyLimits {
    KeyLimits::new()
        .with_calendar(BudgetCalendar::new("Europe/Berlin").unwrap())
        .with_clock(clock.clone())
}

/// Runs one admission per entry of `keys` at once; returns the results in order.
async fn admit_concurrently(
    limits: &KeyLimits,
    keys: Vec<KeyRecord>,
    estimate: u64,
) -> Vec<Result<Admission, LimitError>> {
    let barrier = Arc::new(Barrier::new(keys.len()));
    let mut tasks = Vec::new();
    for k in keys {
        let (limits, barrier) = (limits.clone(), barrier.clone());
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

/// Settles every admitted request at its estimate; returns how many there were.
fn settle_all(
    limits: &KeyLimits,
    results: Vec<Result<Admission, LimitError>>,
    tokens: u64,
) -> usize {
    let mut n = 0;
    for a in results.into_iter().flatten() {
        limits.settle(a, tokens, 0.0);
        n += 1;
    }
    n
}

#[test]
fn the_test_instant_is_the_end_of_january_in_berlin() {
    let c = BudgetCalendar::new("Europe/Berlin").unwrap();
    assert_eq!(c.label(BudgetPeriod::Monthly, JAN_END_BERLIN), "m:2026-01");
    assert_eq!(
        c.label(BudgetPeriod::Monthly, JAN_END_BERLIN + 1),
        "m:2026-02"
    );
    // Still January in UTC: the boundary is Berlin's.
    assert_eq!(
        BudgetCalendar::utc().label(BudgetPeriod::Monthly, JAN_END_BERLIN + 1),
        "m:2026-01"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_monthly_key_budget_resets_at_the_boundary_exactly_under_200_concurrent_requests() {
    let clock = Arc::new(ManualClock::new(JAN_END_BERLIN));
    let limits = berlin_limits(&clock);
    let k = KeyRecord {
        budget_tokens: Some(1_000),
        budget_period: BudgetPeriod::Monthly,
        // The store holds 300 tokens of January already.
        period: "m:2026-01".into(),
        period_tokens: 300,
        spent_tokens: 50_000, // lifetime spend does not count against a monthly budget
        ..key(1)
    };
    let results = admit_concurrently(&limits, vec![k.clone(); 200], 100).await;
    assert_eq!(
        settle_all(&limits, results, 100),
        7,
        "exactly the 700 tokens left"
    );
    let results = admit_concurrently(&limits, vec![k.clone(); 200], 100).await;
    assert!(results
        .iter()
        .all(|r| matches!(r, Err(LimitError::BudgetExhausted))));
    assert_eq!(limits.spent(1), (1_000, 0.0));

    // One millisecond later it is February in Berlin: the budget starts again, although the
    // store's record (still January's) says 300 and this process settled 700.
    clock.advance(1);
    let results = admit_concurrently(&limits, vec![k.clone(); 200], 100).await;
    assert_eq!(
        settle_all(&limits, results, 100),
        10,
        "a whole budget again"
    );
    assert!(limits.admit(&k, 100).await.is_err());
    assert_eq!(limits.spent(1), (1_000, 0.0));

    // A fresher store record for February is not counted twice; an older one does not erase
    // what was settled here.
    let fresh = KeyRecord {
        period: "m:2026-02".into(),
        period_tokens: 1_000,
        budget_tokens: Some(1_200),
        ..k.clone()
    };
    let results = admit_concurrently(&limits, vec![fresh; 200], 100).await;
    assert_eq!(settle_all(&limits, results, 100), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_daily_cost_budget_resets_at_local_midnight() {
    // Shanghai midnight is 16:00 UTC.
    let before_midnight = 1_796_572_799_000; // 2026-12-06T15:59:59Z
    let clock = Arc::new(ManualClock::new(before_midnight));
    let limits = KeyLimits::with_cost_per_token(1.0 / 1024.0)
        .with_calendar(BudgetCalendar::new("Asia/Shanghai").unwrap())
        .with_clock(clock.clone());
    let k = KeyRecord {
        budget_cost: Some(1.0),
        budget_period: BudgetPeriod::Daily,
        ..key(2)
    };
    // 64 tokens cost 1/16: 16 requests fill the day.
    let results = admit_concurrently(&limits, vec![k.clone(); 200], 64).await;
    let admitted: Vec<Admission> = results.into_iter().filter_map(Result::ok).collect();
    assert_eq!(admitted.len(), 16);
    for a in admitted {
        limits.settle(a, 64, 64.0 / 1024.0);
    }
    clock.advance(999);
    assert!(limits.admit(&k, 64).await.is_err(), "still the same day");
    clock.advance(1);
    let results = admit_concurrently(&limits, vec![k.clone(); 200], 64).await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_team_budget_is_shared_by_its_keys_and_resets_monthly() {
    let clock = Arc::new(ManualClock::new(JAN_END_BERLIN));
    let limits = berlin_limits(&clock);
    let team = TeamRecord {
        id: 9,
        name: "research".into(),
        budget_tokens: Some(1_000),
        budget_period: BudgetPeriod::Monthly,
        ..TeamRecord::default()
    };
    let a = in_team(key(1), &team);
    // Key 2 has a smaller budget of its own (lifetime): it can take 3 requests at most.
    let b = in_team(
        KeyRecord {
            budget_tokens: Some(300),
            ..key(2)
        },
        &team,
    );
    let mut keys = Vec::new();
    for i in 0..200 {
        keys.push(if i % 2 == 0 { a.clone() } else { b.clone() });
    }
    let results = admit_concurrently(&limits, keys.clone(), 100).await;
    let by_b = results
        .iter()
        .enumerate()
        .filter(|(i, r)| i % 2 == 1 && r.is_ok())
        .count();
    assert!(by_b <= 3, "key 2 passed its own budget: {by_b}");
    for r in &results {
        if let Err(e) = r {
            assert!(
                matches!(
                    e,
                    LimitError::TeamBudgetExhausted | LimitError::BudgetExhausted
                ),
                "{e:?}"
            );
        }
    }
    assert_eq!(
        settle_all(&limits, results, 100),
        10,
        "the team's 1,000 tokens, exactly"
    );
    assert_eq!(limits.team_spent(9), (1_000, 0.0));
    assert_eq!(limits.team_in_flight(9), (0, 0.0));
    assert_eq!(
        limits.admit(&a, 1).await.unwrap_err(),
        LimitError::TeamBudgetExhausted
    );

    // February: the team's budget starts again; key 2's lifetime budget does not.
    clock.advance(1);
    let results = admit_concurrently(&limits, keys, 100).await;
    let by_b_after = results
        .iter()
        .enumerate()
        .filter(|(i, r)| i % 2 == 1 && r.is_ok())
        .count();
    assert!(
        by_b + by_b_after <= 3,
        "key 2's lifetime budget: {by_b} + {by_b_after}"
    );
    assert_eq!(settle_all(&limits, results, 100), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn team_rpm_is_shared_by_two_keys_exactly() {
    let limits = KeyLimits::new();
    let team = TeamRecord {
        id: 4,
        name: "t".into(),
        rpm: Some(30),
        ..TeamRecord::default()
    };
    let a = in_team(key(1), &team);
    let b = in_team(key(2), &team);
    let mut keys = Vec::new();
    for i in 0..100 {
        keys.push(if i % 2 == 0 { a.clone() } else { b.clone() });
    }
    let results = admit_concurrently(&limits, keys, 10).await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 30);
    for r in &results {
        if let Err(e) = r {
            match e {
                LimitError::TeamRateLimited { retry_after } => {
                    assert!(!retry_after.is_zero())
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    // A key outside the team is not affected.
    assert!(limits
        .admit(
            &KeyRecord {
                rpm: Some(1),
                ..key(3)
            },
            10
        )
        .await
        .is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_team_refusal_takes_back_the_keys_reservation() {
    let limits = KeyLimits::new();
    let team = TeamRecord {
        id: 5,
        name: "t".into(),
        rpm: Some(10),
        ..TeamRecord::default()
    };
    let a = in_team(
        KeyRecord {
            rpm: Some(20),
            ..key(1)
        },
        &team,
    );
    let results = admit_concurrently(&limits, vec![a.clone(); 50], 0).await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 10);
    // The team's limit is raised (a fresh window): the key has 10 of its 20 left, which it
    // would not if the 40 refused requests had kept their key slots.
    let wider = TeamRecord {
        rpm: Some(1_000),
        ..team
    };
    let a = in_team(a, &wider);
    let results = admit_concurrently(&limits, vec![a; 50], 0).await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 10);
    for r in &results {
        if let Err(e) = r {
            assert!(matches!(e, LimitError::RateLimited { .. }), "{e:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_larger_than_the_team_tpm_is_too_large() {
    let limits = KeyLimits::new();
    let team = TeamRecord {
        id: 6,
        name: "t".into(),
        tpm: Some(500),
        ..TeamRecord::default()
    };
    let a = in_team(key(1), &team);
    assert_eq!(
        limits.admit(&a, 501).await.unwrap_err(),
        LimitError::TeamTooLarge {
            needed: 501,
            limit: 500
        }
    );
}
