//! What only a Redis Cluster can show (the shared limits suite itself runs on a cluster too, in
//! `limits_redis*.rs` and `gateway_redis.rs`): one key's counters, and those of a key in a team
//! with its team, sit in one hash slot on one primary; a slot moved to another primary while
//! gateways hold the old slot map is followed (`MOVED`) with the counts intact; and with every
//! node down the gateways keep admitting under their in-process limits, then share again once
//! the cluster is back; with one primary down, the keys on the others stay shared even where
//! the limits scripts were never loaded. Each test starts its own local cluster of three
//! primaries.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use common::{LocalCluster, RedisKind, TestRedis};
use llmux_gateway::limits::{
    Admission, BudgetCalendar, BudgetPeriod, KeyLimits, LimitError, ManualClock, RedisLimits,
};
use llmux_gateway::metrics::limits_backend_errors;
use llmux_gateway::store::{KeyRecord, TeamRecord};
use prometheus::IntCounterVec;
use tokio::sync::Barrier;

/// 2026-01-31 12:00 UTC.
const JAN_31: i64 = 1_769_860_800_000;

fn key(id: i64) -> KeyRecord {
    KeyRecord {
        id,
        name: format!("k{id}"),
        ..KeyRecord::default()
    }
}

fn gateway(r: &TestRedis, errors: &IntCounterVec) -> KeyLimits {
    let backend = RedisLimits::new(&r.config(Duration::from_secs(900)), errors.clone()).unwrap();
    KeyLimits::new()
        .with_calendar(BudgetCalendar::new("UTC").unwrap())
        .with_clock(Arc::new(ManualClock::new(JAN_31)))
        .with_redis(backend)
}

/// `n` admissions of `k` at once, task `i` on gateway `i % 2`.
async fn admit_across(
    gateways: &[KeyLimits; 2],
    k: &KeyRecord,
    n: usize,
    estimate: u64,
) -> Vec<Result<Admission, LimitError>> {
    let barrier = Arc::new(Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (g, k, b) = (gateways[i % 2].clone(), k.clone(), barrier.clone());
            tokio::spawn(async move {
                b.wait().await;
                g.admit(&k, estimate).await
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_counters_of_a_key_and_of_a_team_with_its_keys_each_sit_in_one_slot() {
    let Some(r) = RedisKind::Cluster.start().await else {
        return;
    };
    let cluster = r.cluster.as_ref().unwrap();
    let errors = limits_backend_errors().unwrap();
    let g = gateway(&r, &errors);
    // Every kind of entry: a window (RPM), held reservations and a monthly budget's spend.
    let limited = |k: KeyRecord| KeyRecord {
        rpm: Some(100),
        budget_tokens: Some(10_000),
        budget_period: BudgetPeriod::Monthly,
        ..k
    };
    let team = TeamRecord {
        id: 3,
        name: "research".into(),
        rpm: Some(100),
        budget_tokens: Some(10_000),
        budget_period: BudgetPeriod::Monthly,
        ..TeamRecord::default()
    };
    let in_team = KeyRecord {
        team_id: Some(team.id),
        team: Some(team.name.clone()),
        team_record: Some(Arc::new(team)),
        ..limited(key(8))
    };
    let solo = limited(key(7));
    for k in [&solo, &in_team] {
        let settled = g.admit(k, 100).await.unwrap();
        assert!(settled.is_shared());
        g.settle(settled, 90, 0.0);
        // One left in flight, so its reservation is held.
        std::mem::forget(g.admit(k, 100).await.unwrap());
    }
    g.drain().await;
    assert_eq!(errors.with_label_values(&["admit"]).get(), 0);
    assert_eq!(errors.with_label_values(&["settle"]).get(), 0);

    let keys = r.keys();
    let p = &r.prefix;
    let groups = [
        // Key 7 alone: its own hash tag.
        (
            "{7}",
            vec![
                format!("{p}{{7}}:w"),
                format!("{p}{{7}}:h"),
                format!("{p}{{7}}:s"),
                format!("{p}{{7}}:p:m:2026-01"),
            ],
        ),
        // Key 8 in team 3, and the team: the team's tag for both.
        (
            "{t3}",
            vec![
                format!("{p}{{t3}}:k8:w"),
                format!("{p}{{t3}}:k8:h"),
                format!("{p}{{t3}}:k8:s"),
                format!("{p}{{t3}}:k8:p:m:2026-01"),
                format!("{p}{{t3}}:w"),
                format!("{p}{{t3}}:h"),
                format!("{p}{{t3}}:s"),
                format!("{p}{{t3}}:p:m:2026-01"),
            ],
        ),
    ];
    let expected: BTreeSet<&String> = groups.iter().flat_map(|(_, g)| g).collect();
    assert_eq!(keys.iter().collect::<BTreeSet<_>>(), expected);
    for (tag, names) in &groups {
        // The slot is the tag's: the prefix and the rest of the name do not move it.
        let slot = cluster.keyslot(tag);
        for name in names {
            assert_eq!(cluster.keyslot(name), slot, "{name} is not in {tag}'s slot");
        }
        // And all of them are on the primary that serves that slot, none elsewhere.
        let owner = cluster.owner(slot);
        for node in 0..cluster.len() {
            let here: BTreeSet<String> = cluster
                .keys_on(node, &format!("{p}{tag}*"))
                .into_iter()
                .collect();
            if node == owner {
                assert_eq!(here, names.iter().cloned().collect(), "node {node}");
            } else {
                assert!(here.is_empty(), "node {node} holds {here:?}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slot_moved_to_another_primary_is_followed_with_its_counts() {
    let Some(mut r) = RedisKind::Cluster.start().await else {
        return;
    };
    let errors = limits_backend_errors().unwrap();
    let gws = [gateway(&r, &errors), gateway(&r, &errors)];
    let k = KeyRecord {
        rpm: Some(10),
        budget_tokens: Some(10_000),
        ..key(1)
    };
    // Both gateways learn the slot map and hold 5 of the 10 requests and 500 tokens.
    let first: Vec<Admission> = admit_across(&gws, &k, 5, 100)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert!(first.iter().all(Admission::is_shared));

    let window = format!("{}{{1}}:w", r.prefix);
    let cluster = r.cluster.as_mut().unwrap();
    let slot = cluster.keyslot(&window);
    let from = cluster.owner(slot);
    let to = (from + 1) % cluster.len();
    cluster.move_slot(slot, to);
    assert!(cluster.keys_on(from, &format!("{}*", r.prefix)).is_empty());
    assert_eq!(cluster.keys_on(to, &format!("{}*", r.prefix)).len(), 3);

    // Settles sent to the old primary are redirected: the actual 50 tokens replace the 100
    // reserved on the new one.
    for (i, a) in first.into_iter().enumerate() {
        gws[i % 2].settle(a, 50, 0.0);
    }
    for g in &gws {
        g.drain().await;
    }
    let usage = gws[1].shared_usage(1).await.unwrap();
    assert_eq!(
        (
            usage.spent_tokens,
            usage.reserved_tokens,
            usage.window_tokens
        ),
        (250, 0, 250)
    );
    // The window moved with the slot: of 20 more at once, exactly the 5 left pass.
    let second = admit_across(&gws, &k, 20, 10).await;
    let admitted: Vec<&Admission> = second.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(admitted.len(), 5);
    assert!(admitted.iter().all(|a| a.is_shared()));
    // Redirects are not failures: nothing was decided in process.
    assert_eq!(errors.with_label_values(&["admit"]).get(), 0);
    assert_eq!(errors.with_label_values(&["settle"]).get(), 0);
    drop(second);
    for g in &gws {
        g.drain().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_every_node_down_admissions_stay_open_and_sharing_resumes_when_it_returns() {
    let Some(mut r) = RedisKind::Cluster.start().await else {
        return;
    };
    let errors = limits_backend_errors().unwrap();
    let g = gateway(&r, &errors);
    let rpm = |id, rpm| KeyRecord {
        rpm: Some(rpm),
        ..key(id)
    };
    assert!(g.admit(&rpm(1, 100), 10).await.unwrap().is_shared());
    assert_eq!(g.backend(), "redis");

    r.cluster.as_mut().unwrap().stop_all();
    // Admitted by this gateway alone, its in-process limits still holding.
    let k = rpm(2, 2);
    assert!(!g.admit(&k, 10).await.unwrap().is_shared());
    assert!(!g.admit(&k, 10).await.unwrap().is_shared());
    assert!(matches!(
        g.admit(&k, 10).await,
        Err(LimitError::RateLimited { .. })
    ));
    assert_eq!(errors.with_label_values(&["admit"]).get(), 3);
    assert_eq!(g.backend(), "redis_unavailable");

    tokio::task::block_in_place(|| r.cluster.as_mut().unwrap().restart_all());
    // Once the breaker lets a probe through, admissions are shared again (bounded wait).
    let k = rpm(3, 1_000);
    let back = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if g.admit(&k, 10).await.unwrap().is_shared() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(back.is_ok(), "limits did not return to the cluster");
    assert_eq!(g.backend(), "redis");
    assert!(g.admit(&k, 10).await.unwrap().is_shared());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_one_primary_down_the_keys_on_the_others_stay_shared() {
    // A cluster that serves the slots it still covers (as clusters without replicas are often
    // run).
    let Some(cluster) = tokio::task::spawn_blocking(|| {
        LocalCluster::start_with(None, &["--cluster-require-full-coverage", "no"])
    })
    .await
    .unwrap() else {
        return;
    };
    let mut r = TestRedis::on(cluster);
    let errors = limits_backend_errors().unwrap();
    let g = gateway(&r, &errors);
    let cluster = r.cluster.as_mut().unwrap();
    // A key served by each primary.
    let on = |node: usize| {
        (1..)
            .find(|id| cluster.owner(cluster.keyslot(&format!("{{{id}}}"))) == node)
            .unwrap()
    };
    let (up, down) = (on(0), on(2));
    let rpm = |id| KeyRecord {
        rpm: Some(100),
        ..key(id)
    };
    // The gateway is connected to every primary, and each has the scripts.
    assert!(g.admit(&rpm(up), 10).await.unwrap().is_shared());
    assert!(g.admit(&rpm(down), 10).await.unwrap().is_shared());
    // Both admissions were dropped at once; their releases run in spawned tasks and must reach
    // Redis before the fault, or the release of the key on the dead primary counts as lost.
    g.drain().await;
    assert_eq!(errors.with_label_values(&["settle"]).get(), 0);
    // Then one primary forgets them (as a restarted one does) and another one dies.
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query(&mut cluster.node_conn(0).unwrap())
        .unwrap();
    cluster.stop(2);

    // The script is sent to the key's own primary alone: the dead one is not needed.
    let a = g.admit(&rpm(up), 10).await.unwrap();
    assert!(
        a.is_shared(),
        "a key on a healthy primary was decided in process"
    );
    assert_eq!(errors.with_label_values(&["admit"]).get(), 0);
    // A key on the dead primary falls back, counted.
    assert!(!g.admit(&rpm(down), 10).await.unwrap().is_shared());
    assert_eq!(errors.with_label_values(&["admit"]).get(), 1);
    drop(a);
    g.drain().await;
    assert_eq!(errors.with_label_values(&["settle"]).get(), 0);
}
