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
        results[2].starts_with(&format!("Error: MCP server {dying:?} failed: ")),
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
        out.stderr.contains("[tool] die failed Error: MCP server"),
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
        format!("error: two MCP servers offer a tool named `add`: {one:?} and {two:?}")
    );
    let out = agent(&emu, &["--mcp", "'unbalanced", "--yes", "x"]).await;
    assert_eq!(
        out.err_line(),
        "error: --mcp \"'unbalanced\": not a command line (empty, or unbalanced quotes)"
    );
    let out = agent(&emu, &["--mcp", "/nonexistent/server", "--yes", "x"]).await;
    assert!(
        out.err_line().starts_with(
            "error: --mcp \"/nonexistent/server\": cannot start `/nonexistent/server`"
        ),
        "{out:#?}"
    );
    let out = agent(&emu, &["--mcp-url", "ftp://127.0.0.1/x", "--yes", "x"]).await;
    assert_eq!(
        out.err_line(),
        "error: --mcp-url \"ftp://127.0.0.1/x\": needs an http:// or https:// URL with a host"
    );
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
