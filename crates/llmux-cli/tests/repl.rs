//! The REPL, driven through a pseudo-terminal: conversation kept, multi-line input, commands,
//! Ctrl-C at the prompt and Ctrl-C while an answer is on its way.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a failed setup must fail the test loudly"
)]

mod common;

use std::process::{Child, Command};
use std::time::Duration;

use common::pty::Terminal;
use llmux_emulator::{Emulator, EmulatorConfig, Vendor};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

const DEADLINE: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(10);

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = tokio::time::Instant::now();
    while !done() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(POLL);
    }
}

fn last_messages(emu: &Emulator) -> Vec<Value> {
    let req = emu.requests().pop().unwrap();
    req.json().unwrap()["messages"].as_array().unwrap().clone()
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let start = tokio::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(start.elapsed() < DEADLINE, "the REPL did not exit");
        std::thread::sleep(POLL);
    }
}

#[test]
fn repl_keeps_the_conversation_and_survives_ctrl_c() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let emu = rt
        .block_on(Emulator::start(EmulatorConfig::new(Vendor::OpenAi)))
        .unwrap();
    let home = tempfile::tempdir().unwrap();
    let save = home.path().join("conversation.json");
    let mut cmd = Command::new(common::BIN);
    cmd.env_clear()
        .env("HOME", home.path())
        .env("TERM", "xterm")
        .env("OPENAI_BASE_URL", emu.base_url())
        .env("OPENAI_API_KEY", Vendor::OpenAi.default_key())
        .args(["chat", "-m", "openai/gpt-4o", "--system", "be brief"]);
    let (mut child, mut term) = Terminal::spawn(&mut cmd, DEADLINE);

    term.expect("/help for commands");
    term.expect("> ");
    term.line("hello");
    term.expect("You said: hello");
    term.expect("> ");
    term.line("again");
    term.expect("You said: again");
    term.expect("> ");
    let roles: Vec<Value> = last_messages(&emu)
        .iter()
        .map(|m| m["role"].clone())
        .collect();
    assert_eq!(
        roles,
        [
            json!("system"),
            json!("user"),
            json!("assistant"),
            json!("user")
        ]
    );

    // A trailing backslash continues the message on the next line.
    term.line("one\\");
    term.expect("... ");
    term.line("two");
    term.expect("You said: one");
    term.expect("> ");
    assert_eq!(last_messages(&emu).last().unwrap()["content"], "one\ntwo");

    term.line("/clear");
    term.expect("conversation cleared");
    term.expect("> ");

    // Ctrl-C at the prompt throws the half-typed line away.
    term.type_text("abc");
    term.expect("abc");
    term.type_text("\x03");
    term.expect("> ");
    term.line("third");
    term.expect("You said: third");
    term.expect("> ");
    let messages = last_messages(&emu);
    assert_eq!(messages.len(), 2, "{messages:#?}");
    assert_eq!(messages[0]["content"], "be brief");
    assert_eq!(messages[1]["content"], "third");

    // Ctrl-C while waiting for an answer cancels it and keeps the REPL.
    emu.set_latency(Duration::from_secs(600));
    let before = emu.requests().len();
    term.line("slow");
    wait_until("the slow request", || emu.requests().len() > before);
    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap());
    kill(pid, Signal::SIGINT).unwrap();
    term.expect("[cancelled]");
    term.expect("> ");
    emu.set_latency(Duration::ZERO);

    // The cancelled exchange is not part of the conversation.
    term.line(&format!("/save {}", save.display()));
    term.expect("saved 3 messages");
    term.expect("> ");
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&save).unwrap()).unwrap();
    assert_eq!(
        saved,
        json!({
            "model": "openai/gpt-4o",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "third"},
                {"role": "assistant", "content": "You said: third"},
            ]
        })
    );

    term.line("/model nosuch/x");
    term.expect("unknown provider `nosuch`");
    term.expect("> ");
    term.line("/frobnicate");
    term.expect("unknown command /frobnicate");
    term.expect("> ");
    term.line("/exit");
    let status = wait_exit(&mut child);
    assert!(status.success(), "{status:?}\n{}", term.screen());
}

#[test]
fn repl_without_a_key_fails_before_prompting() {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(common::BIN);
    cmd.env_clear()
        .env("HOME", home.path())
        .env("TERM", "xterm")
        .args(["chat", "-m", "dashscope/qwen-plus"]);
    let (mut child, mut term) = Terminal::spawn(&mut cmd, DEADLINE);
    term.expect("error: dashscope: missing `api_key`: set DASHSCOPE_API_KEY");
    let status = wait_exit(&mut child);
    assert_eq!(status.code(), Some(1));
}

/// A REPL command with an empty environment but for a temporary HOME, a terminal type and
/// `env`.
fn repl_command(home: &std::path::Path, env: &[(&str, String)], args: &[&str]) -> Command {
    let mut cmd = Command::new(common::BIN);
    cmd.env_clear().env("HOME", home).env("TERM", "xterm");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.arg("chat").args(args);
    cmd
}

/// Issue 16: with `--emulate` every provider is emulated, so `/model` may name any of them.
#[test]
fn issue_16_model_switches_provider_under_emulate() {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = repl_command(home.path(), &[], &["--emulate", "-m", "openai/gpt-4o-mini"]);
    let (mut child, mut term) = Terminal::spawn(&mut cmd, DEADLINE);
    term.expect("> ");
    term.line("hello");
    term.expect("You said: hello");
    term.expect("> ");
    for (model, text) in [
        ("dashscope/qwen-plus", "from qwen"),
        ("hunyuan/hunyuan-lite", "from hunyuan"),
        ("dashscope-compat/qwen-max", "from compat"),
        ("openai/gpt-4o", "back home"),
    ] {
        term.line(&format!("/model {model}"));
        term.expect(&format!("model: {model}"));
        term.expect("> ");
        term.line(text);
        term.expect(&format!("You said: {text}"));
        term.expect("> ");
    }
    term.line("/exit");
    let status = wait_exit(&mut child);
    assert!(status.success(), "{status:?}\n{}", term.screen());
    assert!(!term.screen().contains("error"), "{}", term.screen());
}

/// Issue 16: outside `--emulate`, switching to a provider without credentials is one clear
/// error line; the model stays and the REPL goes on.
#[test]
fn issue_16_switching_to_a_provider_without_a_key_keeps_the_repl() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let emu = rt
        .block_on(Emulator::start(EmulatorConfig::new(Vendor::OpenAi)))
        .unwrap();
    let home = tempfile::tempdir().unwrap();
    let env = [
        ("OPENAI_BASE_URL", emu.base_url()),
        ("OPENAI_API_KEY", Vendor::OpenAi.default_key().to_owned()),
    ];
    let mut cmd = repl_command(home.path(), &env, &["-m", "openai/gpt-4o"]);
    let (mut child, mut term) = Terminal::spawn(&mut cmd, DEADLINE);
    term.expect("> ");
    term.line("/model dashscope/qwen-plus");
    term.expect("error: dashscope: missing `api_key`: set DASHSCOPE_API_KEY");
    term.expect("> ");
    term.line("/model");
    term.expect("model: openai/gpt-4o");
    term.expect("> ");
    term.line("still here");
    term.expect("You said: still here");
    term.expect("> ");
    term.line("/exit");
    let status = wait_exit(&mut child);
    assert!(status.success(), "{status:?}\n{}", term.screen());
    assert_eq!(
        term.screen().matches("error:").count(),
        1,
        "{}",
        term.screen()
    );
}

/// The entries of a rustyline history file (after its version line).
fn history_entries(path: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("#V2"), "{text}");
    lines.map(str::to_owned).collect()
}

/// Issue 16: the REPL's lines are kept across runs in a file readable by its owner only, at
/// most `HISTORY_SIZE` (1000) of them; a line starting with a space is not kept.
#[test]
fn issue_16_line_history_is_kept_across_runs() {
    use std::os::unix::fs::PermissionsExt;

    let home = tempfile::tempdir().unwrap();
    // A directory that does not exist yet: the REPL creates it.
    let file = home.path().join("hist/llmux-history");
    let env = [("LLMUX_HISTORY_FILE", file.display().to_string())];
    let args = ["--emulate", "-m", "openai/gpt-4o-mini"];

    let mut cmd = repl_command(home.path(), &env, &args);
    let (mut child, mut term) = Terminal::spawn(&mut cmd, DEADLINE);
    term.expect("> ");
    term.line("remember me");
    term.expect("You said: remember me");
    term.expect("> ");
    term.line(" my secret");
    term.expect("You said:  my secret");
    term.expect("> ");
    term.line("/exit");
    assert!(wait_exit(&mut child).success(), "{}", term.screen());
    assert_eq!(history_entries(&file), ["remember me", "/exit"]);
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");

    // The next run recalls it: Up twice (past `/exit`) and Enter sends it again.
    let mut cmd = repl_command(home.path(), &env, &args);
    let (mut child, mut term) = Terminal::spawn(&mut cmd, DEADLINE);
    term.expect("> ");
    term.type_text("\x1b[A");
    term.expect("/exit");
    term.type_text("\x1b[A");
    term.expect("remember me");
    term.type_text("\r");
    term.expect("You said: remember me");
    term.expect("> ");
    term.line("/exit");
    assert!(wait_exit(&mut child).success(), "{}", term.screen());

    // A long history is cut to the newest 1000 lines.
    let mut text = String::from("#V2\n");
    for i in 0..1500 {
        text.push_str(&format!("old {i}\n"));
    }
    std::fs::write(&file, text).unwrap();
    let mut cmd = repl_command(home.path(), &env, &args);
    let (mut child, mut term) = Terminal::spawn(&mut cmd, DEADLINE);
    term.expect("> ");
    term.line("newest");
    term.expect("You said: newest");
    term.expect("> ");
    term.line("/exit");
    assert!(wait_exit(&mut child).success(), "{}", term.screen());
    let entries = history_entries(&file);
    assert_eq!(entries.len(), 1000, "{:?}", &entries[..3]);
    assert_eq!(entries[entries.len() - 2..], ["newest", "/exit"]);
    assert_eq!(entries[0], "old 502");
}

/// Without `LLMUX_HISTORY_FILE` the history lives in the data directory.
#[test]
fn issue_16_line_history_defaults_to_the_data_directory() {
    let home = tempfile::tempdir().unwrap();
    let data = home.path().join("data");
    let env = [("LLMUX_DATA_DIR", data.display().to_string())];
    let mut cmd = repl_command(home.path(), &env, &["--emulate", "-m", "openai/gpt-4o"]);
    let (mut child, mut term) = Terminal::spawn(&mut cmd, DEADLINE);
    term.expect("> ");
    term.line("/exit");
    assert!(wait_exit(&mut child).success(), "{}", term.screen());
    assert_eq!(history_entries(&data.join("history.txt")), ["/exit"]);
}
