//! The REPL, driven through a pseudo-terminal: conversation kept, multi-line input, commands,
//! Ctrl-C at the prompt and Ctrl-C while an answer is on its way.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a failed setup must fail the test loudly"
)]

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use llmux_emulator::{Emulator, EmulatorConfig, Vendor};
use nix::pty::openpty;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

const DEADLINE: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(10);

/// The terminal side of a child running on a pty: what it wrote, and a way to type.
struct Terminal {
    input: File,
    screen: Arc<Mutex<String>>,
    /// Everything before this offset was already matched.
    seen: usize,
}

impl Terminal {
    fn spawn(cmd: &mut Command) -> (Child, Terminal) {
        let pty = openpty(None, None).unwrap();
        let slave = File::from(pty.slave);
        cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave));
        let child = cmd.spawn().unwrap();
        let master = File::from(pty.master);
        let mut reader = master.try_clone().unwrap();
        let mut answerer = master.try_clone().unwrap();
        let screen = Arc::new(Mutex::new(String::new()));
        let sink = screen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // Ends with EIO once the child has exited and closed the pty.
            while let Ok(n @ 1..) = reader.read(&mut buf) {
                let chunk = String::from_utf8_lossy(&buf[..n]).into_owned();
                // rustyline asks where the cursor is; answer like a terminal would.
                if chunk.contains("\x1b[6n") {
                    let _ = answerer.write_all(b"\x1b[1;1R");
                }
                sink.lock().unwrap().push_str(&chunk);
            }
        });
        (
            child,
            Terminal {
                input: master,
                screen,
                seen: 0,
            },
        )
    }

    fn screen(&self) -> String {
        self.screen.lock().unwrap().clone()
    }

    /// Waits until `needle` appears after what was already matched.
    fn expect(&mut self, needle: &str) {
        let start = tokio::time::Instant::now();
        loop {
            let screen = self.screen();
            if let Some(i) = screen[self.seen..].find(needle) {
                self.seen += i + needle.len();
                return;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "timed out waiting for {needle:?}; screen so far:\n{screen}"
            );
            std::thread::sleep(POLL);
        }
    }

    fn type_text(&mut self, text: &str) {
        self.input.write_all(text.as_bytes()).unwrap();
        self.input.flush().unwrap();
    }

    /// Types a line and presses Enter.
    fn line(&mut self, text: &str) {
        self.type_text(&format!("{text}\r"));
    }
}

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
    let (mut child, mut term) = Terminal::spawn(&mut cmd);

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
    let (mut child, mut term) = Terminal::spawn(&mut cmd);
    term.expect("error: dashscope: missing `api_key`: set DASHSCOPE_API_KEY");
    let status = wait_exit(&mut child);
    assert_eq!(status.code(), Some(1));
}
