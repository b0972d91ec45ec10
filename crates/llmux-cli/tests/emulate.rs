//! `llmux emulate` (the README round trip) and `llmux models`.

mod common;

use std::collections::HashMap;
use std::process::Stdio;

use common::{command, emulator, env_for, run};
use llmux_emulator::Vendor;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

/// What `llmux emulate` printed: `id -> (url, key)` and the `export` assignments.
struct Banner {
    endpoints: HashMap<String, (String, String)>,
    exports: Vec<(String, String)>,
}

fn parse_banner(lines: &[String]) -> Result<Banner, String> {
    let mut endpoints = HashMap::new();
    let mut exports = Vec::new();
    for line in lines {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["export", assignments @ ..] => {
                for a in assignments {
                    let (k, v) = a
                        .split_once('=')
                        .ok_or_else(|| format!("`{a}` is not an assignment"))?;
                    exports.push((k.to_owned(), v.to_owned()));
                }
            }
            [id, url, "key", key] => {
                endpoints.insert((*id).to_owned(), ((*url).to_owned(), (*key).to_owned()));
            }
            other => return Err(format!("unexpected banner line {other:?}")),
        }
    }
    Ok(Banner { endpoints, exports })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_round_trip_emulate_then_chat() {
    let home = tempfile::tempdir().unwrap();
    let mut child = command(home.path(), &[])
        .args(["emulate", "--latency-ms", "1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Poll stdout until the last banner line (the export line) arrives.
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut lines = Vec::new();
    while let Some(line) = stdout.next_line().await.unwrap() {
        let done = line.starts_with("export ");
        lines.push(line);
        if done {
            break;
        }
    }
    let banner = parse_banner(&lines).unwrap();
    for spec in llmux_core::providers::REGISTRY {
        assert!(
            banner.endpoints.contains_key(spec.id),
            "no banner line for {}: {lines:#?}",
            spec.id
        );
    }
    assert_eq!(
        lines.len(),
        llmux_core::providers::REGISTRY.len() + 1,
        "banner: {lines:#?}"
    );
    let (openai_url, openai_key) = &banner.endpoints["openai"];
    assert!(openai_url.starts_with("http://127.0.0.1:") && openai_url.ends_with("/v1"));
    assert_eq!(openai_key, "sk-emulator-openai");
    let (ds_url, ds_key) = &banner.endpoints["dashscope"];
    assert!(ds_url.ends_with("/api/v1"), "{ds_url}");
    assert_eq!(ds_key, "sk-emulator-dashscope");
    let (compat_url, _) = &banner.endpoints["dashscope-compat"];
    assert!(compat_url.ends_with("/compatible-mode/v1"), "{compat_url}");
    assert!(banner.endpoints["spark"].0.starts_with("ws://127.0.0.1:"));

    // The export line is all a newcomer needs: every provider answers through it.
    let env: Vec<(&str, String)> = banner
        .exports
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    for model in [
        "dashscope/qwen-plus",
        "dashscope-compat/qwen-plus",
        "openai/gpt-4o-mini",
        "deepseek/deepseek-chat",
        "hunyuan/hunyuan-lite",
        "hunyuan-openai/hunyuan-turbo",
        "spark/generalv3.5",
        "spark-http/generalv3.5",
        "pangu/my-deployment",
        "zhipu/glm-4-flash",
        "ollama/llama3.2",
        "anthropic/claude-sonnet-4-6",
        "dashscope-anthropic/qwen-plus",
        "gemini/gemini-2.5-flash",
    ] {
        let out = run(&["chat", "-m", model, "hello offline"], &env, None).await;
        assert_eq!(out.ok(), "You said: hello offline\n", "{model}");
    }
    // And the URL columns work with --base-url.
    let key = vec![("OPENAI_API_KEY", openai_key.clone())];
    let out = run(
        &[
            "chat",
            "-m",
            "openai/gpt-4o",
            "--base-url",
            openai_url,
            "--no-stream",
            "x",
        ],
        &key,
        None,
    )
    .await;
    assert_eq!(out.ok(), "You said: x\n");

    let pid = Pid::from_raw(i32::try_from(child.id().unwrap()).unwrap());
    kill(pid, Signal::SIGTERM).unwrap();
    let status = child.wait().await.unwrap();
    assert!(status.success(), "{status:?}");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    assert!(stderr.contains("llmux chat -m"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_lists_every_registered_provider() {
    let out = run(&["models"], &[("OPENAI_API_KEY", "x".into())], None).await;
    let text = out.ok();
    for spec in llmux_core::providers::REGISTRY {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("{} ", spec.id))),
            "{} missing from\n{text}",
            spec.id
        );
    }
    assert!(text.contains("OPENAI_API_KEY (set)"), "{text}");
    assert!(text.contains("DASHSCOPE_API_KEY (not set)"), "{text}");
    assert!(text.contains("dashscope/qwen-plus"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_for_an_unknown_provider_lists_the_known_ones() {
    let out = run(&["models", "--provider", "nosuch"], &[], None).await;
    let line = out.err_line();
    assert!(
        line.contains("unknown provider `nosuch`") && line.contains("openai"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_remote_asks_the_provider() {
    let emu = emulator(Vendor::OpenAi).await;
    let env = env_for(&emu, Vendor::OpenAi);
    let out = run(&["models", "--provider", "openai", "--remote"], &env, None).await;
    let ids: Vec<&str> = out.ok().lines().collect();
    assert!(ids.contains(&"gpt-4o-mini"), "{ids:?}");
    let req = common::only_request(&emu);
    assert_eq!(
        (req.method.as_str(), req.path.as_str()),
        ("GET", "/v1/models")
    );
}
