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

/// A log line of `--log-format json`: one JSON object with an RFC 3339 UTC timestamp, a level
/// and a message.
fn json_line(line: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(line)
        .map_err(|e| format!("not a JSON line ({e}): {line}"))
        .unwrap();
    let ts = v["timestamp"].as_str().unwrap_or_default();
    let b = ts.as_bytes();
    assert!(
        b.len() >= 20
            && b[4] == b'-'
            && b[7] == b'-'
            && b[10] == b'T'
            && b[13] == b':'
            && ts.ends_with('Z'),
        "timestamp is not RFC 3339: {line}"
    );
    assert!(v["level"].is_string() && v["message"].is_string(), "{line}");
    v
}

#[tokio::test]
async fn serve_log_format_json_writes_one_json_object_per_line() {
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
    let mut cmd = command(home.path(), &[("GW_KEY", "sk-test-key".to_owned())]);
    cmd.args(["serve", "--log-format", "json", "--listen", "127.0.0.1:0"])
        .args(["--config", file.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    let url = loop {
        let line = lines
            .next_line()
            .await
            .unwrap()
            .expect("serve logged its address");
        let v = json_line(&line);
        seen.push(v.clone());
        if v["message"] == "llmux gateway listening" {
            break format!("http://{}", v["addr"].as_str().unwrap());
        }
    };
    let http = reqwest::Client::new();
    for stream in [false, true] {
        let resp = http
            .post(format!("{url}/v1/chat/completions"))
            .bearer_auth("sk-test-key")
            .json(&serde_json::json!({"model":"m","stream":stream,"messages":[{"role":"user","content":"hi"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.text().await.unwrap();
    }
    let resp = http
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth("sk-wrong")
        .json(&serde_json::json!({"model":"m","messages":[]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    sigterm(&child);
    assert!(child.wait().await.unwrap().success());
    while let Some(line) = lines.next_line().await.unwrap() {
        assert!(!line.contains("sk-test-key"), "{line}");
        seen.push(json_line(&line));
    }
    let answered: Vec<&serde_json::Value> = seen
        .iter()
        .filter(|v| v["message"] == "request answered")
        .collect();
    assert_eq!(answered.len(), 3, "{seen:#?}");
    for v in &answered[..2] {
        assert_eq!(v["status"], 200, "{v}");
        assert_eq!(v["channel"], "oa", "{v}");
        assert_eq!(v["provider"], "openai", "{v}");
        assert_eq!(v["model"], "m", "{v}");
        assert_eq!(v["key"], "server.api_keys[0]", "{v}");
        assert_eq!(v["path"], "/v1/chat/completions", "{v}");
        assert!(v["request_id"].is_string() && v["ms"].is_number(), "{v}");
    }
    assert_eq!(answered[2]["status"], 401);
    assert!(answered[2].get("channel").is_none(), "{}", answered[2]);
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
    // The demo lists what the emulators have: Ollama's own models (its channel asks at start),
    // never the provider's built-in names the emulator does not serve.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let list: serde_json::Value = http
            .get(format!("{url}/v1/models"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let ids: Vec<&str> = list["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m["id"].as_str())
            .collect();
        let ollama: Vec<&str> = ids
            .iter()
            .copied()
            .filter(|m| m.starts_with("ollama/"))
            .collect();
        if ollama
            == [
                "ollama/llama3.2:latest",
                "ollama/nomic-embed-text:latest",
                "ollama/qwen2.5:7b",
            ]
        {
            assert!(ids.contains(&"dashscope/qwen-plus"), "{ids:?}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{ollama:?}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
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

/// `LLMUX__SERVER__LISTEN` (any `LLMUX__` setting) applies with `--emulate` as without it.
#[tokio::test]
async fn serve_emulate_listens_where_llmux_server_listen_says() {
    let home = tempfile::tempdir().unwrap();
    // The port is picked free and released for the gateway to bind; a test running beside
    // this one may take it in between, so a bind refused as "in use" picks another (a few
    // times), and anything else fails with what the gateway said.
    for _attempt in 0..5 {
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = free.local_addr().unwrap();
        drop(free);
        let mut child = command(home.path(), &[("LLMUX__SERVER__LISTEN", addr.to_string())])
            .args(["serve", "--emulate"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut said = Vec::new();
        let url = loop {
            let Some(line) = lines.next_line().await.unwrap() else {
                break None;
            };
            if let Some(rest) = line.strip_prefix("llmux gateway listening on ") {
                break Some(rest.to_owned());
            }
            said.push(line);
        };
        let Some(url) = url else {
            let status = child.wait().await.unwrap();
            let said = said.join("\n");
            assert!(
                said.contains(&format!("cannot listen on {addr}")) && said.contains("in use"),
                "serve exited ({status}) without printing its address:\n{said}"
            );
            continue;
        };
        assert_eq!(url, format!("http://{addr}"));
        sigterm(&child);
        assert!(child.wait().await.unwrap().success());
        return;
    }
    panic!("five free ports in a row were taken before the gateway could bind them");
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

/// SIGKILL under load (issue 13): 120 clients (streams and non-streams) against `llmux serve`
/// on SQLite with the database's own journal (`usage_journal = "database"`, PostgreSQL's
/// default; issue 14's test below covers the file journal), the process killed once 150
/// answers were complete, then restarted on the same database. Every answer a client received in full has its record, every request the upstream
/// saw has one (complete, or `interrupted` at its reserved estimate, recovered once the dead
/// instance's lease lapsed), no request is recorded twice and the key's spend is the sum of
/// its records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_13_sigkill_under_load_loses_no_completed_usage() {
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    const CLIENTS: u32 = 120;
    const KILL_AFTER: u64 = 150;

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
            "[server]\nadmin_key = \"adm-kill\"\ndatabase = \"sqlite://{}\"\nusage_journal = \"database\"\ninstance_lease = \"1s\"\n[[channels]]\nname = \"oa\"\nprovider = \"openai\"\nbase_url = \"{}\"\napi_key = \"sk-emulator-openai\"\nmodels = [\"m\"]\n",
            db.display(),
            emu.base_url()
        ),
    )
    .unwrap();
    let created = run(
        &[
            "keys",
            "create",
            "--config",
            file.to_str().unwrap(),
            "--name",
            "load",
        ],
        &[],
        None,
    )
    .await;
    assert!(created.status.success(), "{created:#?}");
    let key = created.stdout.lines().last().unwrap().trim().to_owned();
    assert!(key.starts_with("sk-llmux-"), "{key}");
    let home = tempfile::tempdir().unwrap();
    let (mut child, url, _lines) =
        spawn_serve(home.path(), &[], &["--config", file.to_str().unwrap()]).await;

    // Each client sends requests back to back (streams and non-streams alternating), each with
    // its own X-Request-Id `w-i`, until the gateway stops answering. An answer counts as
    // received in full only when the whole body arrived.
    let completed = Arc::new(Mutex::new(BTreeSet::<String>::new()));
    let count = Arc::new(AtomicU64::new(0));
    let progress = Arc::new(tokio::sync::Notify::new());
    let mut workers = Vec::new();
    for w in 0..CLIENTS {
        let (url, key) = (url.clone(), key.clone());
        let (completed, count, progress) = (completed.clone(), count.clone(), progress.clone());
        workers.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut errors = Vec::new();
            for i in 0u32.. {
                let stream = (w + i) % 2 == 0;
                let sent = http
                    .post(format!("{url}/v1/chat/completions"))
                    .bearer_auth(&key)
                    .header("x-request-id", format!("{w}-{i}"))
                    .header("content-type", "application/json")
                    .body(format!(
                        r#"{{"model":"m","stream":{stream},"max_tokens":40,"messages":[{{"role":"user","content":"load {w} {i} a b c d e f"}}]}}"#
                    ))
                    .send()
                    .await;
                let Ok(resp) = sent else { break };
                let status = resp.status().as_u16();
                let Ok(text) = resp.text().await else { break };
                if status != 200 {
                    errors.push((status, text));
                    break;
                }
                let whole = if stream {
                    text.contains("data: [DONE]")
                } else {
                    text.contains("You said: load")
                };
                if !whole {
                    // Cut by the kill mid-body: not received in full.
                    break;
                }
                completed.lock().unwrap().insert(format!("{w}-{i}"));
                count.fetch_add(1, Ordering::SeqCst);
                progress.notify_one();
            }
            errors
        }));
    }
    tokio::time::timeout(std::time::Duration::from_secs(180), async {
        while count.load(Ordering::SeqCst) < KILL_AFTER {
            progress.notified().await;
        }
    })
    .await
    .expect("the load never reached the kill point");
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id().unwrap()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    let status = child.wait().await.unwrap();
    assert!(!status.success(), "{status:?}");
    let mut errors = Vec::new();
    for w in workers {
        errors.extend(w.await.unwrap());
    }
    assert!(
        errors.is_empty(),
        "answers other than 200 before the kill: {errors:?}"
    );
    let completed = completed.lock().unwrap().clone();

    // What the upstream saw, by the client id written into each prompt.
    let upstream: BTreeSet<String> = emu
        .requests()
        .iter()
        .map(|r| {
            let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            let text = body["messages"][0]["content"].as_str().unwrap().to_owned();
            let mut words = text.split(' ').skip(1);
            format!("{}-{}", words.next().unwrap(), words.next().unwrap())
        })
        .collect();
    assert_eq!(
        upstream.len(),
        emu.requests().len(),
        "one upstream call per request"
    );

    // Restart on the same database; once the dead instance's lease (1 s) lapsed, its journal
    // rows are recorded as interrupted.
    let home = tempfile::tempdir().unwrap();
    let (mut child, url, _lines) =
        spawn_serve(home.path(), &[], &["--config", file.to_str().unwrap()]).await;
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let records = loop {
        let v: serde_json::Value = http
            .get(format!("{url}/admin/usage/records?limit=10000"))
            .bearer_auth("adm-kill")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let records = v["records"].as_array().unwrap().clone();
        let have: BTreeSet<&str> = records
            .iter()
            .filter_map(|r| r["client_request_id"].as_str())
            .collect();
        // Done once every upstream request has a record (the checks below say what is
        // missing if that never happens).
        if upstream.iter().all(|id| have.contains(id.as_str()))
            || tokio::time::Instant::now() > deadline
        {
            break records;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };

    let mut by_client: BTreeMap<String, Vec<&serde_json::Value>> = BTreeMap::new();
    for r in &records {
        let cid = r["client_request_id"].as_str().unwrap().to_owned();
        by_client.entry(cid).or_default().push(r);
    }
    let twice: Vec<_> = by_client.iter().filter(|(_, v)| v.len() > 1).collect();
    assert!(twice.is_empty(), "requests recorded twice: {twice:?}");
    let lost: Vec<&String> = completed
        .iter()
        .filter(|id| {
            by_client
                .get(*id)
                .is_none_or(|v| v[0]["status"] != 200 || !v[0]["error_kind"].is_null())
        })
        .collect();
    let interrupted = records
        .iter()
        .filter(|r| r["error_kind"] == "interrupted")
        .count();
    let tokens: u64 = records
        .iter()
        .map(|r| r["input_tokens"].as_u64().unwrap() + r["output_tokens"].as_u64().unwrap())
        .sum();
    eprintln!(
        "SIGKILL under load: {CLIENTS} clients, {} answers received in full, {} upstream requests, \
         {} records ({} complete, {interrupted} interrupted), {} completed answers without a record",
        completed.len(),
        upstream.len(),
        records.len(),
        records.iter().filter(|r| r["status"] == 200).count(),
        lost.len()
    );
    assert!(
        lost.is_empty(),
        "answers received in full without their record: {lost:?}"
    );
    let missing: Vec<&String> = upstream
        .iter()
        .filter(|id| !by_client.contains_key(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "upstream requests without a record: {missing:?}"
    );
    assert!(completed.len() as u64 >= KILL_AFTER);
    assert!(
        interrupted > 0,
        "{CLIENTS} clients were in flight at the kill; some must be recorded as interrupted"
    );
    let keys: serde_json::Value = http
        .get(format!("{url}/admin/keys"))
        .bearer_auth("adm-kill")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        keys["keys"][0]["spent_tokens"], tokens,
        "key spend = Σ records"
    );
    sigterm(&child);
    assert!(child.wait().await.unwrap().success());
}

/// The segment files of a usage journal directory (none when it does not exist).
fn journal_segments(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The gateway ids of the usage records written in a journal's segments.
fn journal_record_ids(dir: &std::path::Path) -> std::collections::BTreeSet<String> {
    let mut ids = std::collections::BTreeSet::new();
    for seg in journal_segments(dir) {
        for line in std::fs::read_to_string(&seg).unwrap().lines() {
            if let Ok(serde_json::Value::Array(v)) = serde_json::from_str(line) {
                if v.first().is_some_and(|k| k == "r") {
                    ids.insert(v[1].as_str().unwrap().to_owned());
                }
            }
        }
    }
    ids
}

/// Issue 14: with the local usage journal (the default beside a SQLite file), a request's
/// record is durable once appended to the journal, before the store has it. SIGKILL under 64
/// concurrent clients, with completed requests whose records were only in the journal and
/// requests in flight, and a last line cut in the middle; the restarted gateway records the
/// journal before it serves: every completed request once, every request the upstream saw
/// once (in flight ones as interrupted), none twice, spend = Σ records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_14_sigkill_with_records_only_in_the_journal_loses_and_doubles_nothing() {
    use std::collections::{BTreeMap, BTreeSet};
    use std::io::Write as _;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    const CLIENTS: u32 = 64;
    const KILL_AFTER: u64 = 150;

    let emu = llmux_emulator::Emulator::start(
        llmux_emulator::EmulatorConfig::new(llmux_emulator::Vendor::OpenAi)
            .with_token_interval(std::time::Duration::from_millis(3)),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("usage.sqlite3");
    let journal = dir.path().join("usage.sqlite3-ledger");
    let file = dir.path().join("llmux.toml");
    std::fs::write(
        &file,
        format!(
            "[server]\nadmin_key = \"adm-kill\"\ndatabase = \"sqlite://{}\"\n[[channels]]\nname = \"oa\"\nprovider = \"openai\"\nbase_url = \"{}\"\napi_key = \"sk-emulator-openai\"\nmodels = [\"m\"]\n",
            db.display(),
            emu.base_url()
        ),
    )
    .unwrap();
    let created = run(
        &[
            "keys",
            "create",
            "--config",
            file.to_str().unwrap(),
            "--name",
            "load",
        ],
        &[],
        None,
    )
    .await;
    assert!(created.status.success(), "{created:#?}");
    let key = created.stdout.lines().last().unwrap().trim().to_owned();
    let home = tempfile::tempdir().unwrap();
    let (mut child, url, _lines) =
        spawn_serve(home.path(), &[], &["--config", file.to_str().unwrap()]).await;
    assert_eq!(journal_segments(&journal).len(), 1, "the journal is in use");

    let completed = Arc::new(Mutex::new(BTreeSet::<String>::new()));
    let count = Arc::new(AtomicU64::new(0));
    let progress = Arc::new(tokio::sync::Notify::new());
    let mut workers = Vec::new();
    for w in 0..CLIENTS {
        let (url, key) = (url.clone(), key.clone());
        let (completed, count, progress) = (completed.clone(), count.clone(), progress.clone());
        workers.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut errors = Vec::new();
            for i in 0u32.. {
                let stream = (w + i) % 2 == 0;
                let sent = http
                    .post(format!("{url}/v1/chat/completions"))
                    .bearer_auth(&key)
                    .header("x-request-id", format!("{w}-{i}"))
                    .header("content-type", "application/json")
                    .body(format!(
                        r#"{{"model":"m","stream":{stream},"max_tokens":40,"messages":[{{"role":"user","content":"load {w} {i} a b c d e f"}}]}}"#
                    ))
                    .send()
                    .await;
                let Ok(resp) = sent else { break };
                let status = resp.status().as_u16();
                let Ok(text) = resp.text().await else { break };
                if status != 200 {
                    errors.push((status, text));
                    break;
                }
                let whole = if stream {
                    text.contains("data: [DONE]")
                } else {
                    text.contains("You said: load")
                };
                if !whole {
                    break;
                }
                completed.lock().unwrap().insert(format!("{w}-{i}"));
                count.fetch_add(1, Ordering::SeqCst);
                progress.notify_one();
            }
            errors
        }));
    }
    tokio::time::timeout(std::time::Duration::from_secs(180), async {
        while count.load(Ordering::SeqCst) < KILL_AFTER {
            progress.notified().await;
        }
    })
    .await
    .expect("the load never reached the kill point");
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id().unwrap()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    assert!(!child.wait().await.unwrap().success());
    let mut errors = Vec::new();
    for w in workers {
        errors.extend(w.await.unwrap());
    }
    assert!(errors.is_empty(), "answers other than 200: {errors:?}");
    let completed = completed.lock().unwrap().clone();
    let upstream: BTreeSet<String> = emu
        .requests()
        .iter()
        .map(|r| {
            let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            let text = body["messages"][0]["content"].as_str().unwrap().to_owned();
            let mut words = text.split(' ').skip(1);
            format!("{}-{}", words.next().unwrap(), words.next().unwrap())
        })
        .collect();

    // What the dead gateway left: records the store has, and records only its journal has.
    let out = run(
        &[
            "usage",
            "--config",
            file.to_str().unwrap(),
            "--records",
            "--limit",
            "10000",
            "--format",
            "json",
        ],
        &[],
        None,
    )
    .await;
    let stored: Vec<serde_json::Value> = serde_json::from_str(out.ok()).unwrap();
    let stored: BTreeSet<String> = stored
        .iter()
        .map(|r| r["request_id"].as_str().unwrap().to_owned())
        .collect();
    let only_in_journal: BTreeSet<String> = journal_record_ids(&journal)
        .difference(&stored)
        .cloned()
        .collect();
    assert!(
        !only_in_journal.is_empty(),
        "the kill came with records the store did not have yet"
    );
    // The process died in the middle of a write.
    let newest = journal_segments(&journal).pop().unwrap();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&newest)
        .unwrap()
        .write_all(br#"["r","cut-short",null,17672256"#)
        .unwrap();

    // Restart: the journal is recorded before the gateway serves, so no waiting here.
    let home = tempfile::tempdir().unwrap();
    let (mut child, url, _lines) =
        spawn_serve(home.path(), &[], &["--config", file.to_str().unwrap()]).await;
    assert_eq!(
        journal_segments(&journal).len(),
        1,
        "the old segments are gone, a new one is open"
    );
    let http = reqwest::Client::new();
    let v: serde_json::Value = http
        .get(format!("{url}/admin/usage/records?limit=10000"))
        .bearer_auth("adm-kill")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let records = v["records"].as_array().unwrap().clone();
    let mut by_client: BTreeMap<String, Vec<&serde_json::Value>> = BTreeMap::new();
    for r in &records {
        let cid = r["client_request_id"].as_str().unwrap().to_owned();
        by_client.entry(cid).or_default().push(r);
    }
    let twice: Vec<_> = by_client.iter().filter(|(_, v)| v.len() > 1).collect();
    assert!(twice.is_empty(), "requests recorded twice: {twice:?}");
    let lost: Vec<&String> = completed
        .iter()
        .filter(|id| {
            by_client
                .get(*id)
                .is_none_or(|v| v[0]["status"] != 200 || !v[0]["error_kind"].is_null())
        })
        .collect();
    assert!(
        lost.is_empty(),
        "answers received in full without their record: {lost:?}"
    );
    let missing: Vec<&String> = upstream
        .iter()
        .filter(|id| !by_client.contains_key(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "upstream requests without a record: {missing:?}"
    );
    let ids: BTreeSet<&str> = records
        .iter()
        .map(|r| r["request_id"].as_str().unwrap())
        .collect();
    assert!(
        only_in_journal.iter().all(|id| ids.contains(id.as_str())),
        "every record only the journal held is in the store"
    );
    let interrupted = records
        .iter()
        .filter(|r| r["error_kind"] == "interrupted")
        .count();
    assert!(
        interrupted > 0,
        "{CLIENTS} clients were in flight at the kill; some must be recorded as interrupted"
    );
    eprintln!(
        "SIGKILL with the file journal: {} answers in full, {} upstream requests, {} records \
         ({interrupted} interrupted), {} records only in the journal at the kill",
        completed.len(),
        upstream.len(),
        records.len(),
        only_in_journal.len()
    );
    let tokens: u64 = records
        .iter()
        .map(|r| r["input_tokens"].as_u64().unwrap() + r["output_tokens"].as_u64().unwrap())
        .sum();
    let keys: serde_json::Value = http
        .get(format!("{url}/admin/keys"))
        .bearer_auth("adm-kill")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        keys["keys"][0]["spent_tokens"], tokens,
        "key spend = Σ records"
    );
    // A clean stop with everything written leaves no segment behind.
    sigterm(&child);
    assert!(child.wait().await.unwrap().success());
    assert!(journal_segments(&journal).is_empty());
}

/// Issue 14: two gateways never share one usage journal; the second refuses to start and
/// says why, and the first keeps serving and recording.
#[tokio::test]
async fn issue_14_a_second_gateway_on_the_same_journal_refuses_to_start() {
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
            "[server]\napi_keys = [\"sk-one\"]\ndatabase = \"sqlite://{}\"\n[[channels]]\nname = \"oa\"\nprovider = \"openai\"\nbase_url = \"{}\"\napi_key = \"sk-emulator-openai\"\nmodels = [\"m\"]\n",
            dir.path().join("gw.sqlite3").display(),
            emu.base_url()
        ),
    )
    .unwrap();
    let home = tempfile::tempdir().unwrap();
    let (mut first, url, _lines) =
        spawn_serve(home.path(), &[], &["--config", file.to_str().unwrap()]).await;
    let second = run(
        &[
            "serve",
            "--config",
            file.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        &[],
        None,
    )
    .await;
    assert!(!second.status.success(), "{second:#?}");
    let journal = dir.path().join("gw.sqlite3-ledger");
    assert!(
        second.stderr.contains("in use by another gateway")
            && second.stderr.contains(&journal.display().to_string())
            && second.stderr.contains("server.usage_journal"),
        "{second:#?}"
    );
    let resp = reqwest::Client::new()
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth("sk-one")
        .header("content-type", "application/json")
        .body(r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "the first gateway is unaffected");
    sigterm(&first);
    assert!(first.wait().await.unwrap().success());
    let out = run(
        &[
            "usage",
            "--config",
            file.to_str().unwrap(),
            "--records",
            "--format",
            "json",
        ],
        &[],
        None,
    )
    .await;
    let recs: Vec<serde_json::Value> = serde_json::from_str(out.ok()).unwrap();
    assert_eq!(recs.len(), 1, "the first gateway's record: {recs:?}");
}

/// POSTs a one-message chat for `model`; returns the status and the body.
async fn chat(url: &str, key: Option<&str>, model: &str) -> (u16, serde_json::Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{url}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(format!(
            r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}]}}"#
        ));
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

/// Issue 16: in the demo a plain model name that one upstream serves answers, through that
/// upstream's native channel; a plain name nothing serves is still a 404.
#[tokio::test]
async fn issue_16_plain_model_names_answer_in_the_demo() {
    let home = tempfile::tempdir().unwrap();
    let (mut child, url, mut err_lines) = spawn_serve(home.path(), &[], &["--emulate"]).await;
    let mut out_lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let key = out_lines.next_line().await.unwrap().expect("a demo key");
    let admin = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        loop {
            let line = err_lines.next_line().await.unwrap().expect("an admin key");
            if let Some((_, k)) = line.split_once("(admin key for this run: ") {
                break k.trim_end_matches(')').to_owned();
            }
        }
    })
    .await
    .expect("serve printed the dashboard line with an admin key");
    // Keep reading its log, so the gateway never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = err_lines.next_line().await {} });
    for model in ["qwen-plus", "gpt-4o-mini", "hunyuan-lite", "glm-4-flash"] {
        let (status, body) = chat(&url, Some(&key), model).await;
        assert_eq!(status, 200, "{model}: {body}");
        assert_eq!(
            body["choices"][0]["message"]["content"], "You said: hi",
            "{model}"
        );
    }
    // Each went to its vendor's native channel (`dashscope`, not `dashscope-compat` or
    // `dashscope-anthropic`; `hunyuan`, not `hunyuan-openai`).
    // Usage reaches the store in batches: poll, with a deadline.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    let records = loop {
        let records: serde_json::Value = reqwest::Client::new()
            .get(format!("{url}/admin/usage/records?limit=10"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if records["records"].as_array().is_some_and(|r| r.len() >= 4) {
            break records;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "usage records: {records}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let mut served: Vec<(String, String)> = records["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["model"].as_str().unwrap().to_owned(),
                r["channel"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    served.sort();
    assert_eq!(
        served,
        [
            ("glm-4-flash".to_owned(), "zhipu".to_owned()),
            ("gpt-4o-mini".to_owned(), "openai".to_owned()),
            ("hunyuan-lite".to_owned(), "hunyuan".to_owned()),
            ("qwen-plus".to_owned(), "dashscope".to_owned()),
        ]
    );
    let (status, body) = chat(&url, Some(&key), "no-such-model").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "model_not_found", "{body}");
    sigterm(&child);
    assert!(child.wait().await.unwrap().success());
}

/// Issue 16: a plain name that several channels list as `channel/name` is ambiguous: 404, with
/// the choices in the message (also from `GET /v1/models/{id}`).
#[tokio::test]
async fn issue_16_an_ambiguous_plain_name_lists_its_choices() {
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("llmux.toml");
    std::fs::write(
        &file,
        r#"
[server]
database = "none"

[[channels]]
name = "a"
provider = "openai"
api_key = "sk-test"
base_url = "http://127.0.0.1:9/v1"
models = { "a/shared" = "gpt-4o-mini", "a/only-a" = "gpt-4o" }

[[channels]]
name = "b"
provider = "deepseek"
api_key = "sk-test"
base_url = "http://127.0.0.1:9/v1"
models = { "b/shared" = "deepseek-chat" }
"#,
    )
    .unwrap();
    let (child, url, _err) = spawn_serve(
        home.path(),
        &[],
        &["--config", file.to_str().unwrap(), "--insecure-no-auth"],
    )
    .await;
    let (status, body) = chat(&url, None, "shared").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(
        body["error"]["message"],
        "The model `shared` is ambiguous here; choose one of `a/shared`, `b/shared`."
    );
    let (status, body) = chat(&url, None, "only-a").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(
        body["error"]["message"],
        "The model `only-a` is not served under that name; ask for `a/only-a`."
    );
    let resp = reqwest::Client::new()
        .get(format!("{url}/v1/models/shared"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`a/shared`, `b/shared`"),
        "{body}"
    );
    sigterm(&child);
}
