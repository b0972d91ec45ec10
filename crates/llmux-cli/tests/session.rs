//! `llmux chat --session NAME`: the conversation persists across runs of the built binary (in
//! the data directory, overridable with `LLMUX_DATA_DIR`), and `/tokens` in the REPL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::pty::Terminal;
use common::{emulator, env_for, run};
use llmux_emulator::{Emulator, Fault, FaultKind, Vendor};
use serde_json::{json, Value};

const DEADLINE: Duration = Duration::from_secs(30);

fn env(emu: &Emulator, data: &Path) -> Vec<(&'static str, String)> {
    let mut env = env_for(emu, Vendor::OpenAi);
    env.push(("LLMUX_DATA_DIR", data.display().to_string()));
    env
}

fn last_messages(emu: &Emulator) -> Value {
    emu.requests().pop().unwrap().json().unwrap()["messages"].clone()
}

async fn ask(env: &[(&str, String)], extra: &[&str], prompt: &str) -> common::Output {
    let mut args = vec!["chat", "-m", "openai/gpt-4o-mini"];
    args.extend(extra);
    args.push(prompt);
    run(&args, env, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_resumes_across_one_shot_runs() {
    let emu = emulator(Vendor::OpenAi).await;
    let data = tempfile::tempdir().unwrap();
    let env = env(&emu, data.path());
    let s = ["--session", "work", "--system", "be brief"];
    assert_eq!(ask(&env, &s, "first").await.ok(), "You said: first\n");
    assert!(data.path().join("sessions.sqlite3").exists());

    // No --system this time: the session remembers it.
    let out = ask(&env, &["--session", "work"], "second").await;
    assert_eq!(out.ok(), "You said: second\n");
    assert_eq!(
        last_messages(&emu),
        json!([
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "You said: first"},
            {"role": "user", "content": "second"},
        ])
    );

    // Another name, or no session, starts from nothing.
    ask(&env, &["--session", "other"], "x").await.ok();
    assert_eq!(
        last_messages(&emu),
        json!([{"role": "user", "content": "x"}])
    );
    ask(&env, &[], "y").await.ok();
    assert_eq!(
        last_messages(&emu),
        json!([{"role": "user", "content": "y"}])
    );

    ask(&env, &["--session", "work"], "third").await.ok();
    assert_eq!(last_messages(&emu).as_array().unwrap().len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_answer_is_not_kept() {
    let emu = emulator(Vendor::OpenAi).await;
    let data = tempfile::tempdir().unwrap();
    let env = env(&emu, data.path());
    let s = ["--session", "s", "--max-retries", "0"];
    ask(&env, &s, "one").await.ok();
    emu.push_fault(Fault::once(FaultKind::Status {
        status: 400,
        body: None,
        retry_after: None,
    }));
    let failed = ask(&env, &s, "lost").await;
    failed.err_line();
    ask(&env, &s, "two").await.ok();
    let contents: Vec<Value> = last_messages(&emu)
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].clone())
        .collect();
    assert_eq!(
        contents,
        [json!("one"), json!("You said: one"), json!("two")]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_llmux_data_dir_sessions_live_in_xdg_data_home() {
    let emu = emulator(Vendor::OpenAi).await;
    let xdg = tempfile::tempdir().unwrap();
    let mut env = env_for(&emu, Vendor::OpenAi);
    env.push(("XDG_DATA_HOME", xdg.path().display().to_string()));
    ask(&env, &["--session", "x"], "hi").await.ok();
    assert!(xdg.path().join("llmux/sessions.sqlite3").exists());
    ask(&env, &["--session", "x"], "again").await.ok();
    assert_eq!(last_messages(&emu).as_array().unwrap().len(), 3);
}

#[test]
fn the_repl_resumes_a_session_and_shows_tokens() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let emu = rt.block_on(emulator(Vendor::OpenAi));
    let data = tempfile::tempdir().unwrap();
    let env = env(&emu, data.path());
    let first = rt.block_on(ask(&env, &["--session", "work"], "hello world!"));
    first.ok();

    let home = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(common::BIN);
    cmd.env_clear()
        .env("HOME", home.path())
        .env("TERM", "xterm")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .args([
            "chat",
            "-m",
            "openai/gpt-4o-mini",
            "--session",
            "work",
            "--context-window",
            "1000",
            "--max-tokens",
            "100",
        ]);
    let (mut child, mut term) = Terminal::spawn(&mut cmd, DEADLINE);
    term.expect("session work: resumed 2 messages");
    term.expect("> ");
    term.type_text("/tokens\r");
    // The exact count of the next request before the new message, with gpt-4o-mini's tokenizer.
    let tk = llmux_core::tokenize::Tokenizer::for_model("openai/gpt-4o-mini").unwrap();
    let stored = llmux_core::ChatRequest::new(
        "openai/gpt-4o-mini",
        vec![
            llmux_core::Message::user("hello world!"),
            llmux_core::Message::assistant("You said: hello world!"),
        ],
    );
    term.expect(&format!(
        "next request: {} tokens before your message (2 messages kept",
        tk.count_request(&stored)
    ));
    term.expect("limit 900 = window 1000 - 100 reserved for the answer");
    term.expect("exact (o200k_base");
    term.expect("over 1 turns");
    term.expect("> ");
    term.type_text("more\r");
    term.expect("You said: more");
    term.expect("> ");
    term.type_text("/tokens\r");
    term.expect("4 messages kept");
    let sent = emu.requests().pop().unwrap().json().unwrap();
    let messages: Vec<llmux_core::Message> =
        serde_json::from_value(sent["messages"].clone()).unwrap();
    let sent = llmux_core::ChatRequest::new("openai/gpt-4o-mini", messages);
    term.expect(&format!("last request: {} tokens", tk.count_request(&sent)));
    term.expect("last answer: ");
    term.expect("over 2 turns");
    term.expect("> ");
    // Issue 16: `/sessions` lists what is stored, this session with its new turn included.
    term.type_text("/sessions\r");
    term.expect("work ");
    term.expect("openai/gpt-4o-mini");
    term.expect("4 messages");
    term.expect("> ");
    term.type_text("/exit\r");
    let start = tokio::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(start.elapsed() < DEADLINE, "the REPL did not exit");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success());

    // The REPL's turn was kept: the next one-shot run carries all of it.
    rt.block_on(ask(&env, &["--session", "work"], "last")).ok();
    assert_eq!(last_messages(&emu).as_array().unwrap().len(), 5);
}

/// Issue 16: `llmux sessions list` shows the stored sessions, `llmux sessions delete NAME`
/// removes one (its messages too: the name starts afresh).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_16_sessions_are_listed_and_deleted() {
    let emu = emulator(Vendor::OpenAi).await;
    let data = tempfile::tempdir().unwrap();
    let env = env(&emu, data.path());
    let data_env = [("LLMUX_DATA_DIR", data.path().display().to_string())];

    // Nothing stored yet: an empty list, and no database created by looking.
    assert_eq!(run(&["sessions", "list"], &data_env, None).await.ok(), "");
    assert!(!data.path().join("sessions.sqlite3").exists());

    ask(&env, &["--session", "work"], "one").await.ok();
    ask(&env, &["--session", "work"], "two").await.ok();
    ask(&env, &["--session", "play time"], "x").await.ok();

    let out = run(&["sessions", "list"], &data_env, None).await;
    let lines: Vec<&str> = out.ok().lines().collect();
    assert_eq!(lines.len(), 2, "{lines:#?}");
    let work = lines.iter().find(|l| l.starts_with("work ")).unwrap();
    let words: Vec<&str> = work.split_whitespace().collect();
    assert_eq!(
        words[..6],
        ["work", "openai/gpt-4o-mini", "4", "messages", "2", "turns"],
        "{work}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("play time ")),
        "{lines:#?}"
    );

    let out = run(&["sessions", "list", "--json"], &data_env, None).await;
    let list: Value = serde_json::from_str(out.ok()).unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2);
    assert!(names.contains(&"work") && names.contains(&"play time"));
    let work = list
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "work")
        .unwrap();
    assert_eq!(work["messages"], 4);
    assert_eq!(work["turns"], 2);
    assert!(work["input_tokens"].as_u64().unwrap() > 0, "{work}");

    let out = run(&["sessions", "delete", "work"], &data_env, None).await;
    assert_eq!(out.ok(), "deleted session work\n");
    let out = run(&["sessions", "list"], &data_env, None).await;
    assert_eq!(out.ok().lines().count(), 1);
    let out = run(&["sessions", "delete", "work"], &data_env, None).await;
    assert!(
        out.err_line().contains("no session named \"work\""),
        "{out:#?}"
    );

    // The deleted name starts a new conversation.
    ask(&env, &["--session", "work"], "fresh").await.ok();
    assert_eq!(
        last_messages(&emu),
        json!([{"role": "user", "content": "fresh"}])
    );
}
