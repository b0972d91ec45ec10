//! Periodic budgets and teams end to end: concurrent HTTP requests through a real gateway
//! (keys and teams in SQLite or PostgreSQL, an emulator behind), with the clock injected so a
//! month's boundary is crossed without waiting, checked against the bounds in `docs/limits.md`
//! and the usage records; and the `/admin/teams` API with its bad input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use common::*;
use llmux_emulator::{Emulator, Vendor};
use llmux_gateway::limits::ManualClock;
use serde_json::{json, Value};

/// 2026-01-31 23:59:59.999 in Berlin: the last millisecond of January there.
const JAN_END_BERLIN: i64 = 1_769_900_399_999;
/// The gateway's estimate of every request below: `4 + estimate("hi") + max_tokens` (20).
const ESTIMATE: u64 = 25;

fn body() -> Value {
    json!({"model":"m","max_tokens":20,"messages":[{"role":"user","content":"hi"}]})
}

async fn gateway(database: &str, clock: &Arc<ManualClock>, oa: &Emulator) -> Harness {
    start_with_database_and_clock(
        database,
        &format!(
            "budget_timezone = \"Europe/Berlin\"\nusage_journal = \"database\"\n\n{}",
            channel("oa", "openai", oa, "[\"m\"]", "")
        ),
        clock.clone(),
    )
    .await
}

/// Sends one request per key at once; returns the statuses with the error codes.
async fn burst(gw: &Harness, keys: &[String]) -> Vec<(u16, Value)> {
    let mut tasks = Vec::with_capacity(keys.len());
    for key in keys {
        let req = gw
            .http
            .post(format!("{}/v1/chat/completions", gw.url))
            .bearer_auth(key)
            .json(&body());
        tasks.push(tokio::spawn(async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap())
        }));
    }
    let mut out = Vec::with_capacity(keys.len());
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// Sends `keys` at once, then one request at a time (cycling over the keys) until a budget
/// refuses; every refusal must be the quota error. Returns the number served.
async fn exhaust(gw: &Harness, keys: &[String], n: usize) -> usize {
    let many: Vec<String> = keys.iter().cycle().take(n).cloned().collect();
    let results = burst(gw, &many).await;
    let mut ok = 0;
    for (status, body) in &results {
        match status {
            200 => ok += 1,
            429 => assert_eq!(body["error"]["code"], "insufficient_quota", "{body}"),
            other => panic!("status {other}: {body}"),
        }
    }
    for key in keys.iter().cycle() {
        let (status, body) = burst(gw, std::slice::from_ref(key)).await.remove(0);
        match status {
            200 => ok += 1,
            429 => {
                assert_eq!(body["error"]["code"], "insufficient_quota", "{body}");
                break;
            }
            other => panic!("status {other}: {body}"),
        }
        assert!(ok < n, "the budget never ran out");
    }
    ok
}

async fn admin(
    gw: &Harness,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = gw
        .http
        .request(method, format!("{}{path}", gw.url))
        .bearer_auth(ADMIN);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Spent tokens of the records of `key_id` (or of every key in `team_id`), from the store.
fn spent(
    recs: &[llmux_gateway::store::UsageRecord],
    pick: impl Fn(&llmux_gateway::store::UsageRecord) -> bool,
) -> u64 {
    recs.iter()
        .filter(|r| pick(r))
        .map(|r| r.billed_tokens())
        .sum()
}

/// The scenario on one database; `shared` is true when a second gateway can open the same
/// database (not for an in-memory one).
async fn monthly_budgets_reset_at_the_boundary(database: &str, shared: bool) {
    const BUDGET: u64 = 1_000;
    let oa = emulator(Vendor::OpenAi).await;
    let clock = Arc::new(ManualClock::new(JAN_END_BERLIN));
    let gw = gateway(database, &clock, &oa).await;

    let (status, team) = admin(
        &gw,
        reqwest::Method::POST,
        "/admin/teams",
        Some(json!({"name":"research","budget_tokens":BUDGET,"budget_period":"monthly"})),
    )
    .await;
    assert_eq!(status, 201, "{team}");
    let team_id = team["team"]["id"].as_i64().unwrap();
    let (solo, solo_id) = create_key(
        &gw,
        json!({"name":"solo","budget_tokens":BUDGET,"budget_period":"monthly"}),
    )
    .await;
    let (a, a_id) = create_key(&gw, json!({"name":"a","team":"research"})).await;
    let (b, b_id) = create_key(&gw, json!({"name":"b","team":"research"})).await;

    // January: a key's own monthly budget, then the team's shared by its two keys, each under
    // 200 concurrent requests.
    let solo_jan = exhaust(&gw, std::slice::from_ref(&solo), 200).await;
    let team_jan = exhaust(&gw, &[a.clone(), b.clone()], 200).await;
    let recs = records(&gw, (solo_jan + team_jan) as u64).await;
    assert_eq!(oa.requests().len(), solo_jan + team_jan);
    assert!(
        recs.iter().all(|r| r.billed_tokens() <= ESTIMATE),
        "{recs:?}"
    );
    for (name, used) in [
        ("key", spent(&recs, |r| r.key_id == Some(solo_id))),
        ("team", spent(&recs, |r| r.team_id == Some(team_id))),
    ] {
        // Every actual ≤ estimate, so the documented overshoot is 0; and the last refusal
        // came when the next estimate no longer fitted.
        assert!(used <= BUDGET, "{name} spent {used} of {BUDGET}");
        assert!(
            used + ESTIMATE > BUDGET,
            "{name} refused with {used} of {BUDGET}"
        );
    }
    assert!(recs
        .iter()
        .filter(|r| r.key_id == Some(a_id) || r.key_id == Some(b_id))
        .all(|r| r.team_id == Some(team_id)));
    let jan_team = spent(&recs, |r| r.team_id == Some(team_id));

    // The admin API says what each budget counts now and when it starts again: at February's
    // first millisecond in Berlin.
    let keys = admin_json(&gw, "/admin/keys").await;
    let key_now = |id: i64| {
        keys["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["id"] == id)
            .unwrap()["budget_now"]
            .clone()
    };
    let solo_now = key_now(solo_id);
    assert_eq!(solo_now["period"], "m:2026-01", "{solo_now}");
    assert_eq!(
        solo_now["spent_tokens"],
        spent(&recs, |r| r.key_id == Some(solo_id)),
        "{solo_now}"
    );
    assert_eq!(solo_now["resets_at_ms"], JAN_END_BERLIN + 1, "{solo_now}");
    assert_eq!(solo_now["period_start_ms"], 1_767_222_000_000_i64); // 2026-01-01T00:00 Berlin
    assert_eq!(solo_now["timezone"], "Europe/Berlin");
    // A key without a budget period counts its whole life and never resets.
    let a_now = key_now(a_id);
    assert_eq!(a_now["period"], "", "{a_now}");
    assert!(a_now["resets_at_ms"].is_null(), "{a_now}");
    assert_eq!(
        a_now["spent_tokens"],
        spent(&recs, |r| r.key_id == Some(a_id)),
        "{a_now}"
    );
    let teams = admin_json(&gw, "/admin/teams").await;
    let team_now = &teams["teams"][0]["budget_now"];
    assert_eq!(team_now["spent_tokens"], jan_team, "{teams}");
    assert_eq!(team_now["resets_at_ms"], JAN_END_BERLIN + 1, "{teams}");

    // One millisecond later it is February in Berlin: both budgets start again.
    clock.advance(1);
    // Before anything is spent in February, the API shows the new period empty (the counters
    // still hold January's), resetting on March 1st in Berlin.
    let team_row = admin_json(&gw, "/admin/teams/research").await;
    let now = &team_row["team"]["budget_now"];
    assert_eq!(now["period"], "m:2026-02", "{team_row}");
    assert_eq!(now["spent_tokens"], 0, "{team_row}");
    assert_eq!(now["resets_at_ms"], 1_772_319_600_000_i64, "{team_row}");
    assert_eq!(team_row["team"]["period"], "m:2026-01", "{team_row}");
    assert_eq!(team_row["team"]["spent_tokens"], jan_team, "{team_row}");
    let solo_feb = exhaust(&gw, std::slice::from_ref(&solo), 200).await;
    let team_feb = exhaust(&gw, &[a.clone(), b.clone()], 200).await;
    assert!(
        solo_feb as u64 >= BUDGET / ESTIMATE,
        "only {solo_feb} in February"
    );
    assert!(
        team_feb as u64 >= BUDGET / ESTIMATE,
        "only {team_feb} in February"
    );
    let total = solo_jan + team_jan + solo_feb + team_feb;
    let recs = records(&gw, total as u64).await;

    // The store counts each budget in its period: February's spend, labelled February.
    let keys = admin_json(&gw, "/admin/keys").await;
    let solo_row = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == solo_id)
        .unwrap()
        .clone();
    assert_eq!(solo_row["period"], "m:2026-02", "{solo_row}");
    let feb_solo = spent(&recs, |r| {
        r.key_id == Some(solo_id) && r.at_ms > JAN_END_BERLIN
    });
    assert_eq!(solo_row["period_tokens"], feb_solo, "{solo_row}");
    assert_eq!(
        solo_row["budget_now"]["spent_tokens"], feb_solo,
        "{solo_row}"
    );
    assert_eq!(solo_row["budget_now"]["period"], "m:2026-02", "{solo_row}");
    assert!(feb_solo <= BUDGET && feb_solo + ESTIMATE > BUDGET);
    let team_row = admin_json(&gw, "/admin/teams/research").await;
    assert_eq!(team_row["team"]["period"], "m:2026-02", "{team_row}");
    let feb_team = spent(&recs, |r| r.team_id == Some(team_id)) - jan_team;
    assert_eq!(team_row["team"]["period_tokens"], feb_team, "{team_row}");
    assert_eq!(
        team_row["team"]["budget_now"]["spent_tokens"], feb_team,
        "{team_row}"
    );
    assert_eq!(team_row["team"]["spent_tokens"], feb_team + jan_team);
    let names: Vec<&str> = team_row["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "b"]);

    // Usage by team names the team.
    let usage = admin_json(&gw, "/admin/usage?by=team").await;
    assert_eq!(usage["usage"][0]["group"], "research", "{usage}");
    assert_eq!(
        usage["usage"][0]["input_tokens"].as_u64().unwrap()
            + usage["usage"][0]["output_tokens"].as_u64().unwrap(),
        jan_team + feb_team
    );
    let by_key = admin_json(&gw, "/admin/usage?by=key").await;
    assert!(
        by_key["usage"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "solo"),
        "{by_key}"
    );

    if shared {
        // Another gateway on the same database (a restart, or a replica without Redis) knows
        // February's spend from the store: no new budget until March.
        let gw2 = gateway(database, &clock, &oa).await;
        let refused = burst(&gw2, &[solo.clone(), a.clone()]).await;
        for (status, body) in &refused {
            assert_eq!(*status, 429, "served in February: {body}");
            assert_eq!(body["error"]["code"], "insufficient_quota", "{body}");
        }
        clock.set(1_772_319_600_000); // 2026-03-01T00:00 in Berlin
        let served = burst(&gw2, &[solo.clone(), a.clone()]).await;
        assert!(served.iter().all(|(s, _)| *s == 200), "{served:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn monthly_key_and_team_budgets_reset_at_the_boundary_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("gw.sqlite3").display());
    monthly_budgets_reset_at_the_boundary(&url, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn monthly_key_and_team_budgets_reset_at_the_boundary_on_postgres() {
    let Some(pg) = PgSchema::create().await else {
        return;
    };
    monthly_budgets_reset_at_the_boundary(&pg.url, true).await;
    pg.drop_schema().await;
}

on_both_stores!(
    team_rpm_is_shared_by_two_keys,
    teams_admin_api_and_its_bad_input,
);

async fn team_rpm_is_shared_by_two_keys(database: &str) {
    let oa = emulator(Vendor::OpenAi).await;
    let clock = Arc::new(ManualClock::new(JAN_END_BERLIN));
    let gw = gateway(database, &clock, &oa).await;
    let (status, _) = admin(
        &gw,
        reqwest::Method::POST,
        "/admin/teams",
        Some(json!({"name":"t","rpm":30})),
    )
    .await;
    assert_eq!(status, 201);
    let (a, _) = create_key(&gw, json!({"name":"a","team":"t"})).await;
    let (b, _) = create_key(&gw, json!({"name":"b","team":"t"})).await;
    let keys: Vec<String> = [a, b].iter().cycle().take(100).cloned().collect();
    let results = burst(&gw, &keys).await;
    let ok = results.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!(ok, 30, "{results:?}");
    for (status, body) in &results {
        if *status != 200 {
            assert_eq!(*status, 429);
            assert_eq!(body["error"]["code"], "rate_limit_exceeded", "{body}");
            assert!(
                body["error"]["message"].as_str().unwrap().contains("team"),
                "{body}"
            );
        }
    }
    assert_eq!(oa.requests().len(), 30);
}

async fn teams_admin_api_and_its_bad_input(database: &str) {
    use reqwest::Method;
    let oa = emulator(Vendor::OpenAi).await;
    let clock = Arc::new(ManualClock::new(JAN_END_BERLIN));
    let gw = gateway(database, &clock, &oa).await;
    let post = |body: Value| admin(&gw, Method::POST, "/admin/teams", Some(body));

    // Bad input: each refusal names its field.
    for (body, param, says) in [
        (json!({"name": "x".repeat(65)}), "name", "1 to 64"),
        (json!({"name": "has space"}), "name", "ASCII letters"),
        (json!({"name": ""}), "name", "1 to 64"),
        (
            json!({"name":"t","budget_cost": -1.0}),
            "budget_cost",
            "at least 0",
        ),
        (
            json!({"name":"t","budget_tokens": -5}),
            "budget_tokens",
            "invalid value",
        ),
        (
            json!({"name":"t","budget_period": "hourly"}),
            "budget_period",
            "unknown variant `hourly`",
        ),
        (json!({"name":"t","rpm": 0}), "rpm", "at least 1"),
        (json!({"name":"t","budgett": 1}), "budgett", "unknown field"),
    ] {
        let (status, err) = post(body.clone()).await;
        assert_eq!(status, 400, "{body} → {err}");
        assert_eq!(err["error"]["param"], param, "{body} → {err}");
        let msg = err["error"]["message"].as_str().unwrap();
        assert!(msg.contains(says), "{body} → {msg}");
        assert!(msg.len() < 300, "{msg}");
    }

    let (status, t) =
        post(json!({"name":"ml","tpm":5000,"budget_cost":2.5,"budget_period":"weekly"})).await;
    assert_eq!(status, 201, "{t}");
    assert_eq!(t["team"]["budget_period"], "weekly");
    // Its week started on Monday 2026-01-26 in Berlin and ends a week later.
    assert_eq!(
        (
            t["team"]["budget_now"]["period"].as_str(),
            t["team"]["budget_now"]["resets_at_ms"].as_i64()
        ),
        (Some("w:2026-01-26"), Some(1_769_986_800_000)),
        "{t}"
    );
    assert_eq!(t["team"]["tpm"], 5000);
    let (status, dup) = post(json!({"name":"ml"})).await;
    assert_eq!(status, 409, "{dup}");
    assert_eq!(dup["error"]["code"], "team_exists");

    // Keys join by name; an unknown team is refused naming the field.
    let (status, err) = admin(
        &gw,
        Method::POST,
        "/admin/keys",
        Some(json!({"name":"k","team":"nope"})),
    )
    .await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["param"], "team");
    let (key, id) = create_key(
        &gw,
        json!({"name":"k1","team":"ml","budget_period":"daily"}),
    )
    .await;
    let keys = admin_json(&gw, "/admin/keys").await;
    let row = &keys["keys"][0];
    assert_eq!(
        (row["team"].as_str(), row["budget_period"].as_str()),
        (Some("ml"), Some("daily")),
        "{row}"
    );
    assert_eq!(
        row["budget_now"]["resets_at_ms"],
        JAN_END_BERLIN + 1,
        "{row}"
    );
    assert!(
        row.get("team_record").is_none(),
        "internal fields stay out of the API: {row}"
    );
    // The key serves, and its record carries the team.
    let served = burst(&gw, std::slice::from_ref(&key)).await;
    assert_eq!(served[0].0, 200, "{served:?}");
    let recs = records(&gw, 1).await;
    assert_eq!(recs[0].team_id, t["team"]["id"].as_i64());
    // The charts split by team name it.
    let series = admin_json(
        &gw,
        &format!(
            "/admin/usage/series?by=team&from={}&to={}",
            JAN_END_BERLIN - 3_600_000,
            JAN_END_BERLIN + 3_600_000
        ),
    )
    .await;
    assert_eq!(series["by"], "team", "{series}");
    assert_eq!(series["series"].as_array().unwrap().len(), 1, "{series}");
    assert_eq!(series["series"][0]["label"], "ml", "{series}");
    assert_eq!(
        series["series"][0]["id"],
        t["team"]["id"].as_i64().unwrap().to_string(),
        "{series}"
    );
    assert_eq!(series["points"][0]["requests"], 1, "{series}");

    // Rename and change the team; a rename onto another team's name is a conflict.
    post(json!({"name":"other"})).await;
    let (status, err) = admin(
        &gw,
        Method::PATCH,
        "/admin/teams/ml",
        Some(json!({"name":"other"})),
    )
    .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (409, Some("team_exists")),
        "{err}"
    );
    let (status, t2) = admin(
        &gw,
        Method::PATCH,
        "/admin/teams/ml",
        Some(json!({"name":"ml2","tpm":null,"budget_period":"monthly"})),
    )
    .await;
    assert_eq!(status, 200, "{t2}");
    assert_eq!(t2["team"]["name"], "ml2");
    assert!(t2["team"]["tpm"].is_null());
    assert_eq!(t2["keys"][0]["id"], id);
    let (status, _) = admin(&gw, Method::PATCH, "/admin/teams/ml2", Some(json!({}))).await;
    assert_eq!(status, 400);
    let (status, err) = admin(&gw, Method::GET, "/admin/teams/ml", None).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (404, Some("team_not_found"))
    );

    // Deleting a team with keys is refused, naming them; detaching deletes it.
    let (status, err) = admin(&gw, Method::DELETE, "/admin/teams/ml2", None).await;
    assert_eq!(status, 409, "{err}");
    assert_eq!(err["error"]["code"], "team_has_keys");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("{id} (k1)")),
        "{err}"
    );
    let (status, err) = admin(&gw, Method::DELETE, "/admin/teams/ml2?detach=maybe", None).await;
    assert_eq!(
        (status, err["error"]["param"].as_str()),
        (400, Some("detach"))
    );
    let (status, done) = admin(&gw, Method::DELETE, "/admin/teams/ml2?detach=true", None).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["detached"][0]["id"], id);
    let keys = admin_json(&gw, "/admin/keys").await;
    assert!(keys["keys"][0]["team"].is_null(), "{keys}");
    // Moving a key into a team and out again.
    let (status, k) = admin(
        &gw,
        Method::PATCH,
        &format!("/admin/keys/{id}"),
        Some(json!({"team":"other"})),
    )
    .await;
    assert_eq!(
        (status, k["record"]["team"].as_str()),
        (200, Some("other")),
        "{k}"
    );
    let (status, k) = admin(
        &gw,
        Method::PATCH,
        &format!("/admin/keys/{id}"),
        Some(json!({"team":null})),
    )
    .await;
    assert_eq!(status, 200);
    assert!(k["record"]["team"].is_null(), "{k}");
    let (status, _) = admin(&gw, Method::DELETE, "/admin/teams/other", None).await;
    assert_eq!(status, 200);
    let list = admin_json(&gw, "/admin/teams").await;
    assert_eq!(list["teams"].as_array().unwrap().len(), 0, "{list}");
    // Usage by an unknown grouping is refused clearly.
    let (status, err) = admin(&gw, Method::GET, "/admin/usage?by=colour", None).await;
    assert_eq!(
        (status, err["error"]["param"].as_str()),
        (400, Some("by")),
        "{err}"
    );
}
