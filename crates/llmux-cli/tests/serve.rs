//! `llmux check-config` and `llmux serve` as processes.

mod common;

use std::process::Stdio;

use common::{command, run};
use tokio::io::{AsyncBufReadExt, BufReader};

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
    let mut cmd = command(home.path(), &[("GW_KEY", "sk-test-key".to_owned())]);
    cmd.args([
        "serve",
        "--config",
        file.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ])
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
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id().unwrap()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
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
    let mut cmd = command(home.path(), &[]);
    cmd.args(["serve", "--emulate", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut err_lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = loop {
        let line = err_lines
            .next_line()
            .await
            .unwrap()
            .expect("serve printed its address");
        if let Some(rest) = line.strip_prefix("llmux gateway listening on ") {
            break rest.to_owned();
        }
    };
    let mut out_lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let key = out_lines
        .next_line()
        .await
        .unwrap()
        .expect("serve printed a key");
    assert!(key.starts_with("sk-llmux-"), "{key}");
    let http = reqwest::Client::new();
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
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id().unwrap()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    assert!(child.wait().await.unwrap().success());
    assert!(
        home.path()
            .join(".local/share/llmux/gateway.sqlite3")
            .exists(),
        "embedded SQLite by default"
    );
}
