//! `llmux check-config` and `llmux serve` as processes.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a failed setup must fail the test loudly"
)]

mod common;

use std::process::Stdio;

use common::{command, run};
use tokio::io::{AsyncBufReadExt, BufReader};

type StderrLines = tokio::io::Lines<BufReader<tokio::process::ChildStderr>>;

/// Spawns `llmux serve ARGS --listen 127.0.0.1:0` and waits for its address line.
async fn spawn_serve(
    home: &std::path::Path,
    env: &[(&str, String)],
    args: &[&str],
) -> (tokio::process::Child, String, StderrLines) {
    let mut cmd = command(home, env);
    cmd.arg("serve")
        .args(args)
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
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
    (child, url, lines)
}

fn sigterm(child: &tokio::process::Child) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id().unwrap()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
}

#[tokio::test]
async fn check_config_accepts_the_example() {
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../llmux-gateway/examples/llmux.toml"
    );
    let env: Vec<(&str, String)> = [
        "LLMUX_ADMIN_KEY",
        "LLMUX_API_KEY",
        "DASHSCOPE_API_KEY",
        "DASHSCOPE_BACKUP_API_KEY",
        "OPENAI_API_KEY",
        "TENCENTCLOUD_SECRET_ID",
        "TENCENTCLOUD_SECRET_KEY",
    ]
    .iter()
    .map(|k| (*k, "x".to_owned()))
    .collect();
    let out = run(&["check-config", example], &env, None).await;
    assert!(out.ok().starts_with("OK: "), "{out:#?}");
}

#[tokio::test]
async fn check_config_reports_errors_with_their_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "[[channels]]\nname = \"a\"\nprovider = \"openai\"\napi_key = \"k\"\nmodels = [\"m\"]\nweight = \"heavy\"\n",
    )
    .unwrap();
    let out = run(&["check-config", file.to_str().unwrap()], &[], None).await;
    let line = out.err_line();
    assert!(line.contains("channels[0].weight: invalid type"), "{line}");

    std::fs::write(
        &file,
        "[[channels]]\nname = \"a\"\nprovider = \"nope\"\nmodels = [\"m\"]\n",
    )
    .unwrap();
    let out = run(&["check-config", file.to_str().unwrap()], &[], None).await;
    let line = out.err_line();
    assert!(
        line.contains("channels[0].provider: unknown provider `nope`"),
        "{line}"
    );
}

#[tokio::test]
async fn serve_starts_answers_and_stops_on_sigterm() {
    let emu = llmux_emulator::Emulator::start(llmux_emulator::EmulatorConfig::new(
        llmux_emulator::Vendor::OpenAi,
    ))
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("llmux.toml");
    std::fs::write(
        &file,
        format!(
            "[server]\napi_keys = [\"env:GW_KEY\"]\ndatabase = \"none\"\n[[channels]]\nname = \"oa\"\nprovider = \"openai\"\nbase_url = \"{}\"\napi_key = \"sk-emulator-openai\"\nmodels = [\"m\"]\n",
            emu.base_url()
        ),
    )
    .unwrap();
    let home = tempfile::tempdir().unwrap();
    let (mut child, url, mut lines) = spawn_serve(
        home.path(),
        &[("GW_KEY", "sk-test-key".to_owned())],
        &["--config", file.to_str().unwrap()],
    )
    .await;
    let resp = reqwest::Client::new()
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth("sk-test-key")
        .header("content-type", "application/json")
        .body(r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let all = String::new() + &resp.text().await.unwrap();
    assert!(all.contains("You said: hi"));
    sigterm(&child);
    let status = child.wait().await.unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        !home
            .path()
            .join(".local/share/llmux/gateway.sqlite3")
            .exists(),
        "database = \"none\" turns the embedded database off"
    );
    // Secrets never reach the log.
    let mut rest = String::new();
    while let Ok(Some(l)) = lines.next_line().await {
        rest.push_str(&l);
    }
    assert!(
        !rest.contains("sk-test-key") && !rest.contains("sk-emulator-openai"),
        "{rest}"
    );
}

#[tokio::test]
async fn serve_emulate_is_an_offline_gateway_with_a_printed_key() {
    let home = tempfile::tempdir().unwrap();
    let (mut child, url, mut err_lines) = spawn_serve(home.path(), &[], &["--emulate"]).await;
    let mut out_lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let key = out_lines
        .next_line()
        .await
        .unwrap()
        .expect("serve printed a key");
    assert!(key.starts_with("sk-llmux-"), "{key}");
    let http = reqwest::Client::new();
    // The demo has an admin key of its own, printed with the dashboard's address.
    let (dashboard, admin) = loop {
        let line = err_lines
            .next_line()
            .await
            .unwrap()
            .expect("serve printed the dashboard line");
        if let Some(rest) = line.strip_prefix("dashboard: ") {
            let (u, k) = rest.split_once(" (admin key for this run: ").unwrap();
            break (u.to_owned(), k.trim_end_matches(')').to_owned());
        }
    };
    assert_eq!(dashboard, format!("{url}/dashboard"));
    assert!(admin.starts_with("adm-llmux-"), "{admin}");
    assert_eq!(http.get(&dashboard).send().await.unwrap().status(), 200);
    let channels = http
        .get(format!("{url}/admin/channels"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(channels.status(), 200);
    let wrong = http
        .get(format!("{url}/admin/channels"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401, "a client key is not an admin key");
    for model in [
        "dashscope/qwen-plus",
        "openai/gpt-4o-mini",
        "hunyuan/hunyuan-lite",
    ] {
        let resp = http
            .post(format!("{url}/v1/chat/completions"))
            .bearer_auth(&key)
            .header("content-type", "application/json")
            .body(format!(
                r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}]}}"#
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{model}");
        assert!(
            resp.text().await.unwrap().contains("You said: hi"),
            "{model}"
        );
    }
    let wrong = http
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth("sk-llmux-not-a-key")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    sigterm(&child);
    assert!(child.wait().await.unwrap().success());
    assert!(
        !home
            .path()
            .join(".local/share/llmux/gateway.sqlite3")
            .exists(),
        "the demo keeps its keys in memory, away from the default database"
    );
}

/// Issue 13: a key printed by `serve --emulate` dies with the demo; a later real `serve` on the
/// default database rejects it (before the fix the demo wrote an active, unlimited key there).
#[tokio::test]
async fn issue_13_demo_key_is_rejected_by_a_real_serve() {
    let home = tempfile::tempdir().unwrap();
    let (mut child, _, _err) = spawn_serve(home.path(), &[], &["--emulate"]).await;
    let mut out_lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let key = out_lines.next_line().await.unwrap().expect("a demo key");
    sigterm(&child);
    assert!(child.wait().await.unwrap().success());

    // A real gateway on the default database, one channel from a provider variable.
    let emu = llmux_emulator::Emulator::start(llmux_emulator::EmulatorConfig::new(
        llmux_emulator::Vendor::OpenAi,
    ))
    .await
    .unwrap();
    let vars = emu.env_for("openai").unwrap();
    let env: Vec<(&str, String)> = vars.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let (mut child, url, _err) = spawn_serve(home.path(), &env, &[]).await;
    let resp = reqwest::Client::new()
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body(r#"{"model":"openai/gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        401,
        "the demo key must not open a real gateway"
    );
    assert!(emu.requests().is_empty(), "nothing reached the upstream");
    sigterm(&child);
    assert!(child.wait().await.unwrap().success());
}

/// SIGTERM while many requests are in flight: the gateway drains them, flushes the usage
/// recorder, and the database holds exactly one record per request a client saw completed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_loses_no_usage_record() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    let emu = llmux_emulator::Emulator::start(
        llmux_emulator::EmulatorConfig::new(llmux_emulator::Vendor::OpenAi)
            .with_token_interval(std::time::Duration::from_millis(3)),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("usage.sqlite3");
    let file = dir.path().join("llmux.toml");
    std::fs::write(
        &file,
        format!(
            "[server]\napi_keys = [\"sk-load\"]\ndatabase = \"sqlite://{}\"\n[[channels]]\nname = \"oa\"\nprovider = \"openai\"\nbase_url = \"{}\"\napi_key = \"sk-emulator-openai\"\nmodels = [\"m\"]\n",
            db.display(),
            emu.base_url()
        ),
    )
    .unwrap();
    let home = tempfile::tempdir().unwrap();
    let (mut child, url, _lines) =
        spawn_serve(home.path(), &[], &["--config", file.to_str().unwrap()]).await;

    // 24 clients, each sending requests back to back (streams and non-streams alternating)
    // until the gateway stops answering. A request counts as completed only when its whole
    // answer arrived.
    let completed = Arc::new(AtomicU64::new(0));
    let progress = Arc::new(tokio::sync::Notify::new());
    let mut workers = Vec::new();
    for w in 0..24u32 {
        let (url, completed, progress) = (url.clone(), completed.clone(), progress.clone());
        workers.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut statuses = Vec::new();
            for i in 0u32.. {
                let stream = (w + i) % 2 == 0;
                let sent = http
                    .post(format!("{url}/v1/chat/completions"))
                    .bearer_auth("sk-load")
                    .header("content-type", "application/json")
                    .body(format!(
                        r#"{{"model":"m","stream":{stream},"messages":[{{"role":"user","content":"load {w} {i} a b c d e f"}}]}}"#
                    ))
                    .send()
                    .await;
                let Ok(resp) = sent else { break };
                let status = resp.status().as_u16();
                let Ok(text) = resp.text().await else { break };
                if status != 200 {
                    statuses.push((status, text));
                    break;
                }
                let whole = if stream {
                    text.contains("data: [DONE]")
                } else {
                    text.contains("You said: load")
                };
                assert!(whole, "a 200 with a partial answer: {text}");
                completed.fetch_add(1, Ordering::SeqCst);
                progress.notify_one();
            }
            statuses
        }));
    }
    // Terminate once the load is well under way.
    tokio::time::timeout(std::time::Duration::from_secs(120), async {
        while completed.load(Ordering::SeqCst) < 150 {
            progress.notified().await;
        }
    })
    .await
    .expect("the load never reached 150 completed requests");
    sigterm(&child);
    let mut refused = Vec::new();
    for w in workers {
        refused.extend(w.await.unwrap());
    }
    let status = child.wait().await.unwrap();
    assert!(status.success(), "{status:?}");
    // Nothing was answered with an error while draining: clients either got their whole
    // answer or could not connect any more.
    assert!(refused.is_empty(), "{refused:?}");
    let completed = completed.load(Ordering::SeqCst);
    assert!(completed >= 150);

    let out = run(
        &[
            "usage",
            "--config",
            file.to_str().unwrap(),
            "--by",
            "model",
            "--format",
            "json",
        ],
        &[],
        None,
    )
    .await;
    let rows: serde_json::Value = serde_json::from_str(out.ok()).unwrap();
    let recorded: u64 = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(recorded, completed, "{rows}");
    assert_eq!(emu.requests().len() as u64, completed);
}
