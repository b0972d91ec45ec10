//! Shared helpers for the CLI tests: run the built `llmux` binary with a controlled environment
//! against in-process emulators.
#![allow(
    dead_code,
    clippy::allow_attributes,
    reason = "each test binary uses a different subset of the helpers"
)]
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers: a failed setup must fail the test loudly"
)]

use std::process::{ExitStatus, Stdio};

use llmux_emulator::{Emulator, EmulatorConfig, RecordedRequest, Vendor};
use serde_json::Value;
use tokio::io::AsyncWriteExt;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_llmux");

/// What one run of the binary produced.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Asserts exit 0 and an empty stderr, and returns stdout.
    pub fn ok(&self) -> &str {
        assert!(self.status.success(), "failed: {self:#?}");
        assert_eq!(self.stderr, "", "unexpected stderr: {self:#?}");
        &self.stdout
    }

    /// Asserts a non-zero exit with exactly one `error: …` line on stderr and nothing on stdout;
    /// returns that line.
    pub fn err_line(&self) -> &str {
        assert!(!self.status.success(), "unexpectedly succeeded: {self:#?}");
        assert_eq!(self.status.code(), Some(1), "{self:#?}");
        assert_eq!(self.stdout, "", "{self:#?}");
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "expected one stderr line: {self:#?}");
        assert!(lines[0].starts_with("error: "), "{self:#?}");
        lines[0]
    }
}

/// A command with an empty environment (plus a temporary HOME) and the given variables.
pub fn command(home: &std::path::Path, env: &[(&str, String)]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.env_clear()
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("NO_COLOR", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.kill_on_drop(true);
    cmd
}

/// Runs `llmux ARGS` with `env`, feeding `stdin` (or an empty stdin), and collects the output.
pub async fn run(args: &[&str], env: &[(&str, String)], stdin: Option<&str>) -> Output {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = command(home.path(), env);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        // The process may exit (e.g. on a usage error) before reading its input.
        if let Err(e) = input.write_all(text.as_bytes()).await {
            assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
        }
    }
    drop(input);
    let out = child.wait_with_output().await.unwrap();
    Output {
        status: out.status,
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// An emulator for `vendor` on 127.0.0.1:0.
pub async fn emulator(vendor: Vendor) -> Emulator {
    Emulator::start(EmulatorConfig::new(vendor)).await.unwrap()
}

/// The environment pointing `vendor`'s provider at `emu`, with the right key.
pub fn env_for(emu: &Emulator, vendor: Vendor) -> Vec<(&'static str, String)> {
    if vendor == Vendor::OpenAi {
        vec![
            ("OPENAI_BASE_URL", emu.base_url()),
            ("OPENAI_API_KEY", vendor.default_key().to_owned()),
        ]
    } else {
        vec![
            ("DASHSCOPE_BASE_URL", emu.base_url()),
            ("DASHSCOPE_COMPAT_BASE_URL", emu.compat_base_url().unwrap()),
            ("DASHSCOPE_API_KEY", vendor.default_key().to_owned()),
        ]
    }
}

/// The body of the only request the emulator received.
pub fn only_request(emu: &Emulator) -> RecordedRequest {
    let reqs = emu.requests();
    assert_eq!(reqs.len(), 1, "expected one request, got {reqs:#?}");
    reqs.into_iter().next().unwrap()
}

/// The JSON body of the only request the emulator received.
pub fn only_body(emu: &Emulator) -> Value {
    let req = only_request(emu);
    req.json()
        .unwrap_or_else(|| panic!("request body is not JSON: {req:#?}"))
}

pub mod pty;
