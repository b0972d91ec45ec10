//! `llmux agent`: the built binary against the in-process OpenAI emulator, with the tools of a
//! Python MCP server (`tests/fixtures/mcp_tools.py`, on the PyPI `mcp` package pinned in
//! `.ci/requirements-mcp.txt`) over stdio and over streamable HTTP.
//!
//! The emulated model calls every offered tool at once when the last message is the user's, and
//! answers `Tool results: R1; R2…` after tool results, so each test chooses its task by the tools
//! the server offers (the script's arguments). The interpreter is `LLMUX_PYTHON` (else the
//! venv's); without it, or without `mcp` in it, a test fails under `CI=true` and is skipped with
//! a loud line elsewhere.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::{emulator, env_for, run, Output};
use llmux_emulator::{sdk, Emulator, Vendor};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/mcp_tools.py");

/// The interpreter with the `mcp` package, or `None` (skipped) outside CI.
fn python() -> Option<PathBuf> {
    let Some(py) = sdk::python() else {
        sdk::unavailable(
            "the MCP agent tests",
            "no Python interpreter (set LLMUX_PYTHON)",
        );
        return None;
    };
    let imports = std::process::Command::new(&py)
        .args(["-c", "import mcp.server.mcpserver"])
        .output()
        .unwrap();
    if !imports.status.success() {
        sdk::unavailable(
            "the MCP agent tests",
            "the `mcp` package is not installed (pip install -r .ci/requirements-mcp.txt)",
        );
        return None;
    }
    Some(py)
}

/// `--mcp` for the fixture server offering `tools`.
fn server(py: &Path, tools: &[&str]) -> String {
    let mut words = vec![py.to_str().unwrap(), SCRIPT];
    words.extend(tools);
    shlex::try_join(words).unwrap()
}

/// The interpreter's file name, as `llmux agent` names a server.
fn program(py: &Path) -> String {
    py.file_name().unwrap().to_string_lossy().into_owned()
}

/// Runs `llmux agent` on the OpenAI emulator with `args` after the model option.
async fn agent(emu: &Emulator, args: &[&str]) -> Output {
    let env = env_for(emu, Vendor::OpenAi);
    let mut all = vec!["agent", "-m", "openai/gpt-4o-mini"];
    all.extend(args);
    run(&all, &env, None).await
}

/// The contents of the tool messages the emulator received in request `i`.
fn tool_results_sent(emu: &Emulator, i: usize) -> Vec<String> {
    let body: Value = emu.requests()[i].json().unwrap();
    body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap().to_owned())
        .collect()
}

/// The stderr lines, sorted (tool calls of one step finish in any order).
fn sorted_lines(stderr: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = stderr.lines().collect();
    lines.sort_unstable();
    lines
}

fn assert_success(out: &Output) {
    assert!(out.status.success(), "failed: {out:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_tool_task_completes_with_both_results() {
    let Some(py) = python() else { return };
    let emu = emulator(Vendor::OpenAi).await;
    let mcp = server(&py, &["add", "lookup_capital"]);
    let out = agent(&emu, &["--mcp", &mcp, "--yes", "France"]).await;
    assert_success(&out);
    assert_eq!(
        out.stdout,
        "Tool results: 2; The capital of France is Paris.\n"
    );
    assert_eq!(
        sorted_lines(&out.stderr),
        [
            "[tool] add -> 2",
            r#"[tool] add {"a":1,"b":1}"#,
            "[tool] lookup_capital -> The capital of France is Paris.",
            r#"[tool] lookup_capital {"country":"France"}"#,
        ],
        "{out:#?}"
    );
    let reqs = emu.requests();
    assert_eq!(
        reqs.len(),
        2,
        "one model call for the tools, one for the answer"
    );
    let first: Value = reqs[0].json().unwrap();
    let offered: Vec<&str> = first["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(offered, ["add", "lookup_capital"]);
    assert_eq!(
        first["tools"][0]["function"]["parameters"]["properties"]["a"]["type"], "integer",
        "the server's JSON schema is offered as is"
    );
    assert_eq!(
        first["tools"][0]["function"]["description"],
        "Adds two integers."
    );
    assert_eq!(
        tool_results_sent(&emu, 1),
        ["2", "The capital of France is Paris."]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_tool_times_out_and_the_run_finishes() {
    let Some(py) = python() else { return };
    let emu = emulator(Vendor::OpenAi).await;
    let mcp = server(&py, &["hang", "lookup_capital"]);
    let out = agent(
        &emu,
        &["--mcp", &mcp, "--yes", "--tool-timeout", "500ms", "Japan"],
    )
    .await;
    assert_success(&out);
    let timed_out = "Error: `hang` did not finish within 500ms and was cancelled (timed out)";
    assert_eq!(
        out.stdout,
        format!("Tool results: {timed_out}; The capital of Japan is Tokyo.\n")
    );
    assert!(
        out.stderr
            .lines()
            .any(|l| l == format!("[tool] hang failed {timed_out}")),
        "{out:#?}"
    );
    assert_eq!(
        tool_results_sent(&emu, 1),
        [timed_out, "The capital of Japan is Tokyo."]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raising_tool_and_a_dying_server_do_not_end_the_run() {
    let Some(py) = python() else { return };
    let emu = emulator(Vendor::OpenAi).await;
    let steady = server(&py, &["fail", "add"]);
    let dying = server(&py, &["die"]);
    let out = agent(&emu, &["--mcp", &steady, "--mcp", &dying, "--yes", "Peru"]).await;
    assert_success(&out);
    let results = tool_results_sent(&emu, 1);
    assert_eq!(results.len(), 3, "{results:?}");
    assert_eq!(results[0], "Error: Error executing tool fail");
    assert_eq!(results[1], "2");
    assert!(
        results[2].starts_with(&format!(
            "Error: MCP server `{}` (--mcp #2) failed: ",
            program(&py)
        )),
        "{results:?}"
    );
    assert_eq!(
        out.stdout,
        format!("Tool results: {}\n", results.join("; "))
    );
    assert!(
        out.stderr
            .contains("[tool] fail failed Error: Error executing tool fail"),
        "{out:#?}"
    );
    assert!(
        out.stderr.contains(&format!(
            "[tool] die failed Error: MCP server `{}` (--mcp #2) failed: ",
            program(&py)
        )),
        "{out:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_terminal_calls_need_yes_or_allow() {
    let Some(py) = python() else { return };
    let emu = emulator(Vendor::OpenAi).await;
    let mcp = server(&py, &["add", "lookup_capital"]);
    let out = agent(&emu, &["--mcp", &mcp, "France"]).await;
    assert_eq!(
        out.err_line(),
        "error: no terminal to confirm tool calls on: pass --yes to run every call, or \
         --allow TOOL for each tool that may run"
    );
    assert!(emu.requests().is_empty());

    // With --allow, the other tools are refused and the model is told.
    let out = agent(&emu, &["--mcp", &mcp, "--allow", "add", "France"]).await;
    assert_success(&out);
    let refused = "Error: the call to `lookup_capital` was not approved, so it did not run";
    assert_eq!(tool_results_sent(&emu, 1), ["2", refused]);
    assert_eq!(out.stdout, format!("Tool results: 2; {refused}\n"));
    assert!(
        out.stderr.lines().any(|l| l
            == "[tool] lookup_capital refused: not allowed by --allow, and no terminal to ask on"),
        "{out:#?}"
    );

    let out = agent(&emu, &["--mcp", &mcp, "--allow", "ad", "France"]).await;
    assert_eq!(
        out.err_line(),
        "error: --allow ad: no server offers a tool by that name; the tools are: add, lookup_capital"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_servers_are_one_line_errors() {
    let Some(py) = python() else { return };
    let emu = emulator(Vendor::OpenAi).await;
    let one = server(&py, &["add"]);
    let two = server(&py, &["add", "fail"]);
    let out = agent(&emu, &["--mcp", &one, "--mcp", &two, "--yes", "x"]).await;
    assert_eq!(
        out.err_line(),
        format!(
            "error: two MCP servers offer a tool named `add`: `{prog}` (--mcp #1) and `{prog}` \
             (--mcp #2)",
            prog = program(&py)
        )
    );
    let out = agent(&emu, &["--mcp", "'unbalanced", "--yes", "x"]).await;
    assert_eq!(
        out.err_line(),
        "error: --mcp #1: not a command line (empty, or unbalanced quotes)"
    );
    let out = agent(&emu, &["--mcp", "/nonexistent/server", "--yes", "x"]).await;
    assert!(
        out.err_line()
            .starts_with("error: --mcp #1: cannot start `/nonexistent/server`: "),
        "{out:#?}"
    );
    let out = agent(&emu, &["--mcp-url", "ftp://127.0.0.1/x", "--yes", "x"]).await;
    assert_eq!(
        out.err_line(),
        "error: --mcp-url #1: needs an http:// or https:// URL with a host"
    );
    // A server that does not speak MCP: the error shows its URL without the query.
    let not_mcp = emulator(Vendor::OpenAi).await;
    let url = format!("{}/mcp?token=sekrit-123", not_mcp.base_url());
    let out = agent(&emu, &["--mcp-url", &url, "--yes", "x"]).await;
    let line = out.err_line();
    assert!(
        line.starts_with(&format!(
            "error: MCP server {}/mcp (--mcp-url #1) did not start a session: ",
            not_mcp.base_url()
        )),
        "{line}"
    );
    assert!(!line.contains("sekrit-123"), "{line}");
    assert!(!not_mcp.requests().is_empty(), "it was asked");
    let out = agent(&emu, &["--yes", "x"]).await;
    assert_eq!(
        out.err_line(),
        "error: no tools: name an MCP server with --mcp 'CMD ARGS…' or --mcp-url URL"
    );
    assert!(emu.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_over_streamable_http() {
    let Some(py) = python() else { return };
    let mut child = tokio::process::Command::new(&py)
        .args([SCRIPT, "--http", "add", "lookup_capital"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next_line().await.unwrap().expect("the server's port");
    let port: u16 = first.strip_prefix("port ").unwrap().parse().unwrap();
    let url = format!("http://127.0.0.1:{port}/mcp");

    let emu = emulator(Vendor::OpenAi).await;
    let out = agent(&emu, &["--mcp-url", &url, "--yes", "France"]).await;
    assert_success(&out);
    assert_eq!(
        out.stdout,
        "Tool results: 2; The capital of France is Paris.\n"
    );
    assert_eq!(
        tool_results_sent(&emu, 1),
        ["2", "The capital of France is Paris."]
    );
    child.kill().await.unwrap();
}

/// What a child on a pseudo-terminal wrote, read by a thread until the child closes it.
struct Screen(std::sync::Arc<std::sync::Mutex<String>>);

impl Screen {
    /// Waits (polling, bounded) until `done` holds for the text so far, and returns it.
    fn wait_for(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let start = tokio::time::Instant::now();
        loop {
            let text = self.0.lock().unwrap().clone();
            if done(&text) {
                return text;
            }
            assert!(
                start.elapsed() < std::time::Duration::from_secs(60),
                "timed out waiting for {what}; screen so far:\n{text}"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

/// On a terminal each call is asked about: `y` runs it, `n` refuses it and the model is told.
#[test]
fn on_a_terminal_each_call_is_confirmed() {
    use std::fs::File;
    use std::io::{Read, Write};

    let Some(py) = python() else { return };
    let home = tempfile::tempdir().unwrap();
    let pty = nix::pty::openpty(None, None).unwrap();
    let slave = File::from(pty.slave);
    let mut child = std::process::Command::new(common::BIN)
        .env_clear()
        .env("HOME", home.path())
        .env("TERM", "xterm")
        .env("NO_COLOR", "1")
        .args(["agent", "--emulate", "-m", "openai/gpt-4o-mini", "--mcp"])
        .arg(server(&py, &["add", "lookup_capital"]))
        .arg("France")
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave))
        .spawn()
        .unwrap();
    let mut master = File::from(pty.master);
    let mut reader = master.try_clone().unwrap();
    let text = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = text.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = reader.read(&mut buf) {
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let screen = Screen(text);
    let add = r#"run add {"a":1,"b":1}? [y/N] "#;
    let capital = r#"run lookup_capital {"country":"France"}? [y/N] "#;
    // The two calls are asked one at a time, in whichever order they reach the prompt.
    let mut answered = 0;
    while answered < 2 {
        let shown = screen.wait_for("a question", |t| t.matches("? [y/N] ").count() > answered);
        let last = &shown[shown.rfind("run ").unwrap()..];
        let answer = if last.starts_with(add) {
            "y\r"
        } else {
            assert!(last.starts_with(capital), "{shown}");
            "n\r"
        };
        master.write_all(answer.as_bytes()).unwrap();
        answered += 1;
    }
    let refused = "Error: the call to `lookup_capital` was not approved, so it did not run";
    let shown = screen.wait_for("the answer", |t| t.contains("Tool results: "));
    let status = child.wait().unwrap();
    assert!(status.success(), "{shown}");
    let shown = screen.wait_for("the whole answer", |t| {
        t.contains(&format!("Tool results: 2; {refused}"))
    });
    assert!(shown.contains("[tool] add -> 2"), "{shown}");
    assert!(
        shown.contains(&format!("[tool] lookup_capital failed {refused}")),
        "{shown}"
    );
}
