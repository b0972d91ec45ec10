//! Per-key limits under real concurrency (multi-threaded runtime, tasks released together),
//! checked against the bounds written in `docs/limits.md`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use llmux_gateway::limits::{Admission, KeyLimits, LimitError};
use llmux_gateway::store::KeyRecord;
use tokio::sync::Barrier;

fn key(id: i64) -> KeyRecord {
    KeyRecord {
        id,
        name: format!("k{id}"),
        ..KeyRecord::default()
    }
}

/// Runs `n` admissions at once from `n` tasks; returns the results with each task's estimate.
async fn admit_concurrently(
    limits: &KeyLimits,
    key: &KeyRecord,
    n: usize,
    estimate: impl Fn(usize) -> u64,
) -> Vec<(u64, Result<Admission, LimitError>)> {
    let barrier = Arc::new(Barrier::new(n));
    let mut tasks = Vec::new();
    for i in 0..n {
        let (limits, key, barrier) = (limits.clone(), key.clone(), barrier.clone());
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundred_concurrent_admits_on_rpm_30_admit_exactly_30() {
    let limits = KeyLimits::new();
    let k = KeyRecord {
        rpm: Some(30),
        ..key(1)
    };
    let results = admit_concurrently(&limits, &k, 100, |_| 10).await;
    let admitted = results.iter().filter(|(_, r)| r.is_ok()).count();
    assert_eq!(admitted, 30);
    for (_, r) in &results {
        if let Err(e) = r {
            match e {
                LimitError::RateLimited { retry_after } => {
                    assert!(
                        *retry_after > Duration::ZERO && *retry_after <= Duration::from_secs(60)
                    )
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    // Another key is not affected.
    let other = KeyRecord {
        rpm: Some(30),
        ..key(2)
    };
    assert!(limits.admit(&other, 10).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn rpm_frees_when_the_window_slides() {
    let limits = KeyLimits::new();
    let k = KeyRecord {
        rpm: Some(2),
        ..key(1)
    };
    let _a = limits.admit(&k, 0).await.unwrap();
    tokio::time::advance(Duration::from_secs(30)).await;
    let _b = limits.admit(&k, 0).await.unwrap();
    match limits.admit(&k, 0).await {
        Err(LimitError::RateLimited { retry_after }) => {
            assert_eq!(retry_after, Duration::from_secs(30))
        }
        other => panic!("{other:?}"),
    }
    tokio::time::advance(Duration::from_secs(30)).await;
    assert!(limits.admit(&k, 0).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tpm_holds_under_200_concurrent_requests() {
    let limits = KeyLimits::new();
    let k = KeyRecord {
        tpm: Some(3_000),
        ..key(1)
    };
    let results = admit_concurrently(&limits, &k, 200, |i| 50 + (i as u64 * 37) % 100).await;
    let reserved: u64 = results
        .iter()
        .filter(|(_, r)| r.is_ok())
        .map(|(e, _)| *e)
        .sum();
    // Bound: reserved tokens in the window never exceed TPM.
    assert!(reserved <= 3_000, "{reserved} tokens reserved");
    // And the limiter is not overly strict: the window is filled to within one request.
    assert!(reserved > 3_000 - 150, "only {reserved} tokens admitted");

    // Settling with actual usage at most the estimate keeps the window within TPM: the next
    // request that does not fit is refused.
    let mut admitted = Vec::new();
    for (est, r) in results {
        if let Ok(a) = r {
            admitted.push((est, a));
        }
    }
    for (est, a) in admitted {
        limits.settle(a, est, 0.0);
    }
    assert!(matches!(
        limits.admit(&k, 200).await,
        Err(LimitError::RateLimited { .. })
    ));
    assert_eq!(limits.in_flight(1), (0, 0.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_larger_than_tpm_is_refused_as_too_large() {
    let limits = KeyLimits::new();
    let k = KeyRecord {
        tpm: Some(1_000),
        ..key(1)
    };
    assert_eq!(
        limits.admit(&k, 1_001).await.unwrap_err(),
        LimitError::TooLarge {
            needed: 1_001,
            limit: 1_000
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn token_budget_holds_under_200_concurrent_requests() {
    let limits = KeyLimits::new();
    let k = KeyRecord {
        budget_tokens: Some(10_000),
        spent_tokens: 9_000, // from the store
        ..key(1)
    };
    let results = admit_concurrently(&limits, &k, 200, |_| 100).await;
    let admitted: Vec<Admission> = results.into_iter().filter_map(|(_, r)| r.ok()).collect();
    assert_eq!(
        admitted.len(),
        10,
        "exactly the remaining 1,000 tokens reserved"
    );
    assert_eq!(limits.in_flight(1).0, 1_000);

    // Requests used 20 tokens more than estimated (a short prompt estimate): the documented
    // bound is budget + Σ(actual − estimate) over the in-flight requests.
    let n = admitted.len() as u64;
    for a in admitted {
        limits.settle(a, 120, 0.0);
    }
    let (spent, _) = limits.spent(1);
    assert_eq!(spent, 9_000 + n * 120);
    assert!(spent <= 10_000 + n * 20);
    // A stale key record from the store (still 9,000 spent) does not erase settled spend.
    assert_eq!(
        limits.admit(&k, 1).await.unwrap_err(),
        LimitError::BudgetExhausted
    );
    // A fresher record from the store that includes the same usage is not counted twice.
    let fresh = KeyRecord {
        spent_tokens: 9_000 + n * 120,
        budget_tokens: Some(20_000),
        ..k.clone()
    };
    let _held = limits.admit(&fresh, 8_000).await.unwrap();
    assert!(limits.admit(&fresh, 2_000).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cost_budget_holds_under_200_concurrent_requests() {
    // 1/1024 per token, so the arithmetic is exact: each request reserves 64/1024 = 0.0625.
    let limits = KeyLimits::with_cost_per_token(1.0 / 1024.0);
    let k = KeyRecord {
        budget_cost: Some(1.0),
        spent_cost: 0.5,
        ..key(7)
    };
    let results = admit_concurrently(&limits, &k, 200, |_| 64).await;
    let admitted: Vec<Admission> = results.into_iter().filter_map(|(_, r)| r.ok()).collect();
    assert_eq!(admitted.len(), 8);
    for a in admitted {
        assert_eq!(a.reserved_cost(), 0.0625);
        limits.settle(a, 64, 0.0625);
    }
    assert_eq!(limits.spent(7).1, 1.0);
    assert_eq!(
        limits.admit(&k, 1).await.unwrap_err(),
        LimitError::BudgetExhausted
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_a_cost_estimate_an_exhausted_cost_budget_still_refuses() {
    let limits = KeyLimits::new();
    let k = KeyRecord {
        budget_cost: Some(1.0),
        spent_cost: 1.0,
        ..key(3)
    };
    assert_eq!(
        limits.admit(&k, 10).await.unwrap_err(),
        LimitError::BudgetExhausted
    );
    // Another key with a little budget left (spend is monotonic per key, so a new id).
    let k = KeyRecord {
        budget_cost: Some(1.0),
        spent_cost: 0.99,
        ..key(4)
    };
    assert!(limits.admit(&k, 10).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn settling_below_the_estimate_and_dropping_release_reservations() {
    let limits = KeyLimits::new();
    let k = KeyRecord {
        budget_tokens: Some(1_000),
        ..key(1)
    };
    let a = limits.admit(&k, 900).await.unwrap();
    assert_eq!(
        limits.admit(&k, 200).await.unwrap_err(),
        LimitError::BudgetExhausted
    );
    limits.settle(a, 100, 0.0);
    let b = limits.admit(&k, 800).await.unwrap();
    assert_eq!(limits.in_flight(1).0, 800);
    drop(b); // abandoned without settling: nothing spent, reservation released
    assert_eq!(limits.in_flight(1).0, 0);
    assert_eq!(limits.spent(1).0, 100);
    assert!(limits.admit(&k, 900).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn edited_key_limits_take_effect() {
    let limits = KeyLimits::new();
    let k = KeyRecord {
        rpm: Some(1),
        ..key(1)
    };
    let _a = limits.admit(&k, 0).await.unwrap();
    assert!(limits.admit(&k, 0).await.is_err());
    let raised = KeyRecord { rpm: Some(5), ..k };
    assert!(limits.admit(&raised, 0).await.is_ok());
}
