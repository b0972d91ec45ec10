//! `llmux keys` and `llmux usage` against a real gateway process and its SQLite database.

mod common;

use std::process::Stdio;

use common::{command, run};
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test]
async fn keys_created_on_the_cli_call_the_gateway_and_usage_is_read_back() {
    let emu = llmux_emulator::Emulator::start(llmux_emulator::EmulatorConfig::new(
        llmux_emulator::Vendor::OpenAi,
    ))
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gw.sqlite3");
    let file = dir.path().join("llmux.toml");
    std::fs::write(
        &file,
        format!(
            "[server]\ndatabase = \"sqlite://{}\"\n[server.prices.m]\ninput_per_mtok = 1.0\noutput_per_mtok = 2.0\n[[channels]]\nname = \"oa\"\nprovider = \"openai\"\nbase_url = \"{}\"\napi_key = \"sk-emulator-openai\"\nmodels = [\"m\", \"other\"]\n",
            db.display(),
            emu.base_url()
        ),
    )
    .unwrap();
    let cfg = file.to_str().unwrap();
    let out = run(
        &[
            "keys",
            "create",
            "--config",
            cfg,
            "--name",
            "app",
            "--rpm",
            "100",
            "--models",
            "m",
            "--expires",
            "2099-01-01",
        ],
        &[],
        None,
    )
    .await;
    let key = out.stdout.lines().last().unwrap().to_owned();
    assert!(
        out.status.success() && key.starts_with("sk-llmux-"),
        "{out:#?}"
    );
    let list = run(&["keys", "list", "--config", cfg], &[], None).await;
    assert!(list.ok().contains("app"), "{list:#?}");
    assert!(
        !list.stdout.contains(&key),
        "the key itself is never listed"
    );

    let home = tempfile::tempdir().unwrap();
    let mut child = command(home.path(), &[])
        .args(["serve", "--config", cfg, "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = loop {
        let line = lines
            .next_line()
            .await
            .unwrap()
            .expect("serve printed its address");
        if let Some(rest) = line.strip_prefix("llmux gateway listening on ") {
            break rest.to_owned();
        }
    };
    let http = reqwest::Client::new();
    let send = |model: &'static str| {
        http.post(format!("{url}/v1/chat/completions"))
            .bearer_auth(&key)
            .header("x-request-id", "cli-corr")
            .header("content-type", "application/json")
            .body(format!(
                r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}]}}"#
            ))
            .send()
    };
    for _ in 0..3 {
        assert_eq!(send("m").await.unwrap().status(), 200);
    }
    assert_eq!(
        send("other").await.unwrap().status(),
        403,
        "the key's model list holds"
    );
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id().unwrap()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    assert!(child.wait().await.unwrap().success());

    // SIGTERM flushed every record: three completed requests, one row for the key.
    let usage = run(
        &[
            "usage", "--config", cfg, "--by", "model", "--format", "json",
        ],
        &[],
        None,
    )
    .await;
    let rows: serde_json::Value = serde_json::from_str(usage.ok().trim()).unwrap();
    let m = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["group"] == "m")
        .unwrap();
    assert_eq!(m["requests"], 3, "{rows}");
    assert!(m["input_tokens"].as_u64().unwrap() > 0 && m["output_tokens"].as_u64().unwrap() > 0);
    // Rows carry their cost (issue 16): `m` is priced at 1 / 2 per 1M tokens.
    let expect = (m["input_tokens"].as_f64().unwrap() + 2.0 * m["output_tokens"].as_f64().unwrap())
        / 1_000_000.0;
    let cost = m["cost"].as_f64().expect("usage rows carry `cost`");
    assert!(cost > 0.0 && (cost - expect).abs() < 1e-12, "{rows}");
    let table = run(&["usage", "--config", cfg, "--by", "day"], &[], None).await;
    assert!(table.ok().starts_with("group"), "{table:#?}");
    // Keys are shown by name (with their id), not as bare ids.
    let by_key = run(&["usage", "--config", cfg, "--by", "key"], &[], None).await;
    assert!(by_key.ok().contains("app (#1)"), "{by_key:#?}");
    // Raw records: the gateway's own ids, the client's X-Request-Id kept beside them (issue
    // 13: one client id sent three times is three records).
    let recs = run(
        &["usage", "--config", cfg, "--records", "--format", "json"],
        &[],
        None,
    )
    .await;
    let recs: serde_json::Value = serde_json::from_str(recs.ok().trim()).unwrap();
    let mine: Vec<&serde_json::Value> = recs
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["client_request_id"] == "cli-corr")
        .collect();
    assert_eq!(mine.len(), 3, "{recs}");
    assert!(
        mine.iter()
            .all(|r| r["cost"].as_f64().is_some_and(|c| c > 0.0)),
        "records carry their cost: {recs}"
    );
    let ids: std::collections::BTreeSet<&str> = mine
        .iter()
        .map(|r| r["request_id"].as_str().unwrap())
        .collect();
    assert!(
        ids.iter().all(|id| id.len() == 36 && *id != "cli-corr"),
        "{ids:?}"
    );
    assert_eq!(ids.len(), 3);
    let table = run(&["usage", "--config", cfg, "--records"], &[], None).await;
    assert!(table.ok().contains("cli-corr"), "{table:#?}");
    assert!(
        table.ok().lines().skip(1).all(|l| l.contains(" app ")),
        "{table:#?}"
    );

    let revoked = run(&["keys", "revoke", "1", "--config", cfg], &[], None).await;
    assert!(revoked.ok().contains("revoked key 1"));
    let missing = run(&["keys", "revoke", "99", "--config", cfg], &[], None).await;
    assert!(missing.err_line().contains("no key with id 99"));
}

#[tokio::test]
async fn keys_update_changes_limits_and_models_and_explains_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("llmux.toml");
    std::fs::write(
        &file,
        format!(
            "[server]\ndatabase = \"sqlite://{}\"\n",
            dir.path().join("gw.sqlite3").display()
        ),
    )
    .unwrap();
    let cfg = file.to_str().unwrap();
    let created = run(
        &[
            "keys", "create", "--config", cfg, "--name", "app", "--rpm", "10", "--tpm", "500",
        ],
        &[],
        None,
    )
    .await;
    assert!(created.status.success(), "{created:#?}");

    let updated = run(
        &[
            "keys",
            "update",
            "1",
            "--config",
            cfg,
            "--rpm",
            "60",
            "--tpm",
            "none",
            "--budget-tokens",
            "100000",
            "--models",
            "a, b",
            "--name",
            "renamed",
        ],
        &[],
        None,
    )
    .await;
    let line = updated.ok();
    for part in [
        "renamed",
        "models=a,b",
        "rpm=60",
        "tpm=-",
        "budget_tokens=100000",
    ] {
        assert!(line.contains(part), "{part} missing from {line}");
    }
    // Fields not given stay; `all` lifts the model list.
    let again = run(
        &["keys", "update", "1", "--config", cfg, "--models", "all"],
        &[],
        None,
    )
    .await;
    let line = again.ok();
    assert!(line.contains("models=* rpm=60"), "{line}");
    let list = run(&["keys", "list", "--config", cfg], &[], None).await;
    assert!(list.ok().contains("renamed"), "{list:#?}");

    for (args, says) in [
        (vec!["99", "--rpm", "1"], "no key with id 99"),
        (vec!["1"], "nothing to change"),
        (vec!["1", "--rpm=-3"], "not a non-negative number"),
        (vec!["1", "--expires", "tomorrow"], "not a date"),
        (vec!["1", "--name", " "], "name cannot be empty"),
    ] {
        let mut argv = vec!["keys", "update"];
        argv.extend(args.iter().copied());
        argv.extend(["--config", cfg]);
        let out = run(&argv, &[], None).await;
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(out.stderr.contains(says), "{args:?}: {:#?}", out.stderr);
    }
}

#[tokio::test]
async fn teams_are_managed_on_the_cli_and_keys_join_them_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("llmux.toml");
    std::fs::write(
        &file,
        format!(
            "[server]\ndatabase = \"sqlite://{}\"\n",
            dir.path().join("gw.sqlite3").display()
        ),
    )
    .unwrap();
    let cfg = file.to_str().unwrap();
    let created = run(
        &[
            "teams",
            "create",
            "--config",
            cfg,
            "--name",
            "research",
            "--rpm",
            "100",
            "--budget-cost",
            "25",
            "--budget-period",
            "monthly",
        ],
        &[],
        None,
    )
    .await;
    let line = created.ok();
    for part in [
        "research",
        "rpm=100",
        "budget_cost=25",
        "budget_period=monthly",
    ] {
        assert!(line.contains(part), "{part} missing from {line}");
    }
    let key = run(
        &[
            "keys",
            "create",
            "--config",
            cfg,
            "--name",
            "app",
            "--team",
            "research",
            "--budget-tokens",
            "1000",
            "--budget-period",
            "daily",
        ],
        &[],
        None,
    )
    .await;
    assert!(key.status.success(), "{key:#?}");
    let list = run(&["keys", "list", "--config", cfg], &[], None).await;
    let line = list.ok();
    assert!(
        line.contains("team=research") && line.contains("budget_period=daily"),
        "{line}"
    );

    // Bad input is refused before anything is written, naming the flag.
    for (args, says) in [
        (
            vec!["keys", "create", "--name", "x", "--team", "nope"],
            "no team named `nope`",
        ),
        (
            vec!["keys", "create", "--name", "x", "--budget-period", "hourly"],
            "unknown budget period `hourly`",
        ),
        (
            vec!["teams", "create", "--name", "has space"],
            "--name must be 1 to 64",
        ),
        (
            vec!["teams", "create", "--name", "research"],
            "exists already",
        ),
        (
            vec!["teams", "create", "--name", "t", "--budget-cost=-1"],
            "--budget-cost must be a finite number of at least 0",
        ),
        (vec!["teams", "update", "research"], "nothing to change"),
        (
            vec!["teams", "update", "nope", "--rpm", "1"],
            "no team named `nope`",
        ),
        (
            vec!["teams", "delete", "research"],
            "still has 1 key(s): 1 (app)",
        ),
    ] {
        let mut argv = args.clone();
        argv.extend(["--config", cfg]);
        let out = run(&argv, &[], None).await;
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(out.stderr.contains(says), "{args:?}: {:#?}", out.stderr);
    }

    let updated = run(
        &[
            "teams", "update", "research", "--config", cfg, "--rpm", "none", "--name", "ml",
        ],
        &[],
        None,
    )
    .await;
    let line = updated.ok();
    assert!(line.starts_with("ml ") && line.contains("rpm=-"), "{line}");
    let teams = run(&["teams", "list", "--config", cfg], &[], None).await;
    assert!(teams.ok().contains("ml "), "{teams:#?}");
    let moved = run(
        &["keys", "update", "1", "--config", cfg, "--team", "none"],
        &[],
        None,
    )
    .await;
    assert!(moved.ok().contains("team=-"), "{moved:#?}");
    let deleted = run(&["teams", "delete", "ml", "--config", cfg], &[], None).await;
    assert!(deleted.ok().contains("deleted team ml"), "{deleted:#?}");
    let teams = run(&["teams", "list", "--config", cfg], &[], None).await;
    assert_eq!(teams.ok().trim(), "");
}
