//! What the READMEs promise a newcomer, checked against the code (issue 16): the commands of
//! the top README do not assume where cargo puts its build, and the CLI README shows what
//! `llmux emulate` prints.
#![expect(
    clippy::expect_used,
    reason = "test helpers: a failed setup must fail the test loudly"
)]

mod common;

use std::process::Stdio;

use common::command;
use tokio::io::{AsyncBufReadExt, BufReader};

const TOP_README: &str = include_str!("../../../README.md");
const CLI_README: &str = include_str!("../README.md");

/// The lines of the fenced code blocks of a Markdown text.
fn code_lines(markdown: &str) -> Vec<&str> {
    let mut inside = false;
    let mut lines = Vec::new();
    for line in markdown.lines() {
        if line.starts_with("```") {
            inside = !inside;
        } else if inside {
            lines.push(line);
        }
    }
    lines
}

/// `./target/release/llmux` only exists when cargo builds into `./target`; with
/// `CARGO_TARGET_DIR` set it does not (unless `.ci/run` linked it). The README's commands go
/// through `cargo run`, which works in both cases.
#[test]
fn issue_16_readme_commands_do_not_assume_the_target_directory() {
    for line in code_lines(TOP_README) {
        let command = line.split('#').next().unwrap_or_default().trim();
        assert!(
            !command.starts_with("./target/") && !command.starts_with("target/"),
            "README runs a path that depends on CARGO_TARGET_DIR: {line}"
        );
    }
    assert!(TOP_README.contains("cargo run --release -- emulate"));
}

/// The example under "Stdout is" in the CLI README: its endpoint lines and its export line.
fn readme_banner() -> Vec<&'static str> {
    let (_, after) = CLI_README
        .split_once("`llmux emulate [--port N]")
        .expect("the README documents llmux emulate");
    let block = after.split("```").nth(1).expect("an example block");
    block.lines().filter(|l| !l.trim().is_empty()).collect()
}

/// Issue 16: the README said "exactly four lines" when `emulate` printed one per provider.
/// The example it shows now has the lines `llmux emulate` prints: the same providers in the
/// same order, each `ID URL key KEY`, then one `export` line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_16_the_cli_readme_shows_what_emulate_prints() {
    let home = tempfile::tempdir().unwrap();
    let mut child = command(home.path(), &[])
        .arg("emulate")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    while let Some(line) = stdout.next_line().await.unwrap() {
        let done = line.starts_with("export ");
        printed.push(line);
        if done {
            break;
        }
    }
    child.kill().await.unwrap();

    let documented = readme_banner();
    assert_eq!(
        documented.len(),
        printed.len(),
        "{documented:#?}\n{printed:#?}"
    );
    let ids = |lines: &[&str]| -> Vec<String> {
        lines[..lines.len() - 1]
            .iter()
            .map(|l| {
                let words: Vec<&str> = l.split_whitespace().collect();
                assert_eq!(words.len(), 4, "{l}");
                assert_eq!(words[2], "key", "{l}");
                words[0].to_owned()
            })
            .collect()
    };
    let printed_refs: Vec<&str> = printed.iter().map(String::as_str).collect();
    assert_eq!(ids(&documented), ids(&printed_refs));
    assert!(documented.last().unwrap().starts_with("export "));
}
