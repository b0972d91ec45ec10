//! `llmux batch`: the built binary against the OpenAI emulator — faults, kill -9 and resume,
//! both line formats, bad lines, `-m`, `--dry-run`, failed lines and `--retry-failed`, progress.
//!
//! Faults: "5% 500s and 2% 429s" are queued deterministically. The emulator hands each arriving
//! request the first queued fault, so the queue is a schedule by arrival order: in every 100
//! arrivals, a 500 at 0, 20, 40, 60, 80 and a 429 at 10 and 50, the arrivals between them taking
//! a pass-through fault (`DelayFirstByte(0)`, which answers normally). Retries arrive later and
//! take whatever comes next, so a retry can hit a fault too; `--max-retries 5` makes a line that
//! fails six times in a row (with faults at least ten arrivals apart) practically impossible.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashSet;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::{command, emulator, env_for, run};
use llmux_emulator::{Emulator, EmulatorConfig, Fault, FaultKind, Vendor};
use serde_json::{json, Value};

const LINES: usize = 2000;
const DEADLINE: Duration = Duration::from_secs(120);

fn status(status: u16) -> FaultKind {
    FaultKind::Status {
        status,
        body: None,
        retry_after: None,
    }
}

/// Queues the 5% 500 / 2% 429 schedule over the first `arrivals` requests.
fn queue_faults(emu: &Emulator, arrivals: usize) {
    let pass = |n: u32| Fault::once(FaultKind::DelayFirstByte(Duration::ZERO)).times(n);
    for _ in 0..arrivals.div_ceil(100) {
        for (at, kind) in [
            (0, status(500)),
            (10, status(429)),
            (20, status(500)),
            (40, status(500)),
            (50, status(429)),
            (60, status(500)),
            (80, status(500)),
        ] {
            emu.push_fault(Fault::once(kind));
            let next = match at {
                0 => 10,
                10 => 20,
                20 => 40,
                40 => 50,
                50 => 60,
                60 => 80,
                _ => 100,
            };
            emu.push_fault(pass(next - at - 1));
        }
    }
}

/// `n` short-form lines `{"custom_id": "req-i", "prompt": "question i"}`.
fn short_lines(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "{}\n",
                json!({"custom_id": format!("req-{i}"), "prompt": format!("question {i}")})
            )
        })
        .collect()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// The output lines, parsed (a partial last line is not counted).
fn output_lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |i| &text[..=i]);
    complete
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad output line {l}: {e}")))
        .collect()
}

/// Asserts exactly one output line per `req-0..req-n`, every one a success.
fn assert_one_success_per_input(path: &Path, n: usize) {
    let lines = output_lines(path);
    let ids: Vec<&str> = lines
        .iter()
        .map(|l| l["custom_id"].as_str().unwrap())
        .collect();
    let unique: HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(ids.len(), unique.len(), "duplicate custom_id in the output");
    let expected: HashSet<String> = (0..n).map(|i| format!("req-{i}")).collect();
    let got: HashSet<String> = unique.iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(got, expected);
    for l in &lines {
        assert_eq!(l["error"], Value::Null, "{l}");
        assert_eq!(l["response"]["status_code"], 200, "{l}");
        let i = l["custom_id"].as_str().unwrap().trim_start_matches("req-");
        assert_eq!(
            l["response"]["body"]["choices"][0]["message"]["content"],
            format!("You said: question {i}"),
            "the answer belongs to its own line: {l}"
        );
    }
}

fn statuses(emu: &Emulator, code: u16) -> usize {
    emu.requests().iter().filter(|r| r.status == code).count()
}

fn env(emu: &Emulator) -> Vec<(&'static str, String)> {
    env_for(emu, Vendor::OpenAi)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_still_give_every_line_exactly_one_output_line() {
    let emu = emulator(Vendor::OpenAi).await;
    queue_faults(&emu, LINES);
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "in.jsonl", &short_lines(LINES));
    let out = dir.path().join("out.jsonl");
    let result = run(
        &[
            "batch",
            input.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "-m",
            "openai/gpt-4o-mini",
            "--concurrency",
            "32",
            "--max-retries",
            "5",
            "--progress-interval",
            "20ms",
        ],
        &env(&emu),
        None,
    )
    .await;
    assert!(result.status.success(), "{result:#?}");
    assert_eq!(result.stdout, "");
    assert_one_success_per_input(&out, LINES);
    // The whole schedule was served: 100 × 500 and 40 × 429, each retried to a 200.
    assert_eq!(statuses(&emu, 500), 100);
    assert_eq!(statuses(&emu, 429), 40);
    assert_eq!(statuses(&emu, 200), LINES);
    // Not a terminal: periodic progress lines, then the summary.
    let progress = result
        .stderr
        .lines()
        .filter(|l| l.starts_with("batch: ") && l.contains("/s · ETA"))
        .count();
    assert!(progress >= 2, "{}", result.stderr);
    assert!(
        result
            .stderr
            .contains("batch: 2000/2000 (100%) ok 2000 failed 0"),
        "{}",
        result.stderr
    );
    assert!(
        result
            .stderr
            .contains("batch done: ok 2000, failed 0, skipped (already done) 0, bad lines 0"),
        "{}",
        result.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_midway_then_rerun_gives_one_line_per_input() {
    // A little latency so the run lasts long enough to be killed in the middle.
    let emu = llmux_emulator::Emulator::start(
        EmulatorConfig::new(Vendor::OpenAi).with_latency(Duration::from_millis(20)),
    )
    .await
    .unwrap();
    queue_faults(&emu, LINES);
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "in.jsonl", &short_lines(LINES));
    let out = dir.path().join("out.jsonl");
    let args = [
        "batch",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "-m",
        "openai/gpt-4o-mini",
        "--concurrency",
        "32",
        "--max-retries",
        "5",
    ];
    let env = env(&emu);

    let mut child = command(dir.path(), &env)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = tokio::time::Instant::now();
    loop {
        if output_lines(&out).len() >= LINES / 2 {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the batch ended before it could be killed: {status}");
        }
        assert!(start.elapsed() < DEADLINE, "the output never reached half");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    child.start_kill().unwrap(); // SIGKILL
    let status = child.wait().await.unwrap();
    assert_eq!(status.signal(), Some(9), "{status}");
    let done_before = output_lines(&out).len();
    assert!(
        (LINES / 2..LINES).contains(&done_before),
        "{done_before} lines before the kill"
    );
    // As if the kill had landed in the middle of a write.
    let mut text = std::fs::read(&out).unwrap();
    text.extend_from_slice(br#"{"id":"batch_req_x","custom_id":"req-"#);
    std::fs::write(&out, text).unwrap();

    emu.clear_requests();
    emu.set_latency(Duration::ZERO);
    let mut rerun_args = args.to_vec();
    rerun_args.extend(["--progress-interval", "1h"]);
    let result = run(&rerun_args, &env, None).await;
    assert!(result.status.success(), "{result:#?}");
    assert_one_success_per_input(&out, LINES);
    // Only the rest was sent again, each to exactly one success.
    assert_eq!(statuses(&emu, 200), LINES - done_before);
    assert!(
        result.stderr.contains("removed a partial last line"),
        "{}",
        result.stderr
    );
    assert!(
        result
            .stderr
            .contains(&format!("skipped (already done) {done_before},")),
        "{}",
        result.stderr
    );

    // A third run has nothing left to do.
    emu.clear_requests();
    let again = run(&rerun_args, &env, None).await;
    assert!(again.status.success(), "{again:#?}");
    assert!(emu.requests().is_empty());
    assert_one_success_per_input(&out, LINES);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_batch_lines_and_bad_lines_reported_with_line_numbers() {
    let emu = emulator(Vendor::OpenAi).await;
    let dir = tempfile::tempdir().unwrap();
    let chat = |id: &str, text: &str| {
        json!({"custom_id": id, "method": "POST", "url": "/v1/chat/completions",
               "body": {"model": "gpt-4o-mini", "max_tokens": 20,
                        "messages": [{"role": "system", "content": "be brief"},
                                     {"role": "user", "content": text}]}})
        .to_string()
    };
    let text = [
        chat("a", "one"),
        "{oops".to_owned(),
        json!({"custom_id": "b", "prompt": "two", "model": "gpt-4o-mini"}).to_string(),
        chat("a", "dup"),
        json!({"custom_id": "e", "method": "POST", "url": "/v1/embeddings", "body": {"model": "m", "input": "x"}}).to_string(),
    ]
    .join("\n");
    let input = write(dir.path(), "in.jsonl", &text);
    let out = dir.path().join("out.jsonl");
    // A bare `-m openai` gives the lines' bare model names their provider.
    let result = run(
        &[
            "batch",
            input.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "-m",
            "openai",
            "--progress-interval",
            "1h",
        ],
        &env(&emu),
        None,
    )
    .await;
    assert_eq!(result.status.code(), Some(1), "{result:#?}");
    let shown = input.display().to_string();
    let stderr = &result.stderr;
    assert!(
        stderr.contains(&format!("{shown}:2: skipped: not valid JSON")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{shown}:4: skipped: duplicate custom_id `a` (first on line 1)"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{shown}:5: skipped: `url` /v1/embeddings")),
        "{stderr}"
    );
    let last = stderr.lines().last().unwrap();
    assert_eq!(last, "error: bad input lines skipped: 3", "{stderr}");

    let lines = output_lines(&out);
    let mut ids: Vec<&str> = lines
        .iter()
        .map(|l| l["custom_id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, ["a", "b"]);
    for l in &lines {
        assert!(l["id"].as_str().unwrap().starts_with("batch_req_"), "{l}");
        assert_eq!(l["response"]["body"]["object"], "chat.completion", "{l}");
        assert!(
            l["response"]["body"]["usage"]["total_tokens"]
                .as_u64()
                .unwrap()
                > 0,
            "{l}"
        );
    }
    let mut bodies: Vec<Value> = emu.requests().iter().map(|r| r.json().unwrap()).collect();
    bodies.sort_by_key(|b| b["messages"].as_array().unwrap().len());
    assert_eq!(bodies.len(), 2);
    assert_eq!(bodies[0]["model"], "gpt-4o-mini");
    assert_eq!(
        bodies[0]["messages"],
        json!([{"role": "user", "content": "two"}])
    );
    assert_eq!(bodies[1]["messages"][0]["content"], "be brief");
    assert_eq!(bodies[1]["max_tokens"], 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_flag_overrides_every_line_with_base_url_and_limits() {
    let emu = emulator(Vendor::OpenAi).await;
    let dir = tempfile::tempdir().unwrap();
    let text = [
        json!({"custom_id": "x", "prompt": "p", "model": "openai/gpt-4o"}),
        json!({"custom_id": "y", "messages": [{"role": "user", "content": "q"}], "model": "dashscope/qwen-plus"}),
    ]
    .map(|v| v.to_string())
    .join("\n");
    let input = write(dir.path(), "in.jsonl", &text);
    let out = dir.path().join("out.jsonl");
    let result = run(
        &[
            "batch",
            input.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "-m",
            "openai/gpt-4o-mini",
            "--base-url",
            &emu.base_url(),
            "--rpm",
            "6000",
            "--tpm",
            "100000000",
        ],
        // The key only: the endpoint comes from --base-url.
        &[("OPENAI_API_KEY", Vendor::OpenAi.default_key().to_owned())],
        None,
    )
    .await;
    assert!(result.status.success(), "{result:#?}");
    let models: Vec<Value> = emu
        .requests()
        .iter()
        .map(|r| r.json().unwrap()["model"].clone())
        .collect();
    assert_eq!(models, [json!("gpt-4o-mini"), json!("gpt-4o-mini")]);
    assert_eq!(output_lines(&out).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_prints_the_estimate_and_sends_nothing() {
    let emu = emulator(Vendor::OpenAi).await;
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{}\n{}\n",
        json!({"custom_id": "a", "prompt": "hello world!", "max_tokens": 10}),
        json!({"custom_id": "b", "prompt": "hello world!"})
    );
    let input = write(dir.path(), "in.jsonl", &text);
    let out = dir.path().join("out.jsonl");
    let result = run(
        &[
            "batch",
            input.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "-m",
            "openai/gpt-4o-mini",
            "--dry-run",
            "--price-in",
            "1",
            "--price-out",
            "2",
        ],
        &env(&emu),
        None,
    )
    .await;
    let stdout = result.ok();
    assert!(stdout.contains("dry run: 2 requests to send"), "{stdout}");
    // 2 × (4 overhead + 3 for "hello world!") in; 10 + 1024 reserved out.
    assert!(stdout.contains("estimated input tokens: 14\n"), "{stdout}");
    assert!(stdout.contains("output tokens reserved: 1034 "), "{stdout}");
    assert!(
        stdout.contains("estimated cost: at most $0.0021"),
        "{stdout}"
    );
    assert!(emu.requests().is_empty());
    assert!(!out.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_lines_are_output_lines_and_retry_failed_redoes_them() {
    let emu = emulator(Vendor::OpenAi).await;
    // Two requests rejected as invalid: not retryable, so two failed lines.
    emu.push_fault(Fault::once(status(400)).times(2));
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "in.jsonl", &short_lines(5));
    let out = dir.path().join("out.jsonl");
    let args = [
        "batch",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "-m",
        "openai/gpt-4o-mini",
        "--concurrency",
        "1",
    ];
    let env = env(&emu);
    let first = run(&args, &env, None).await;
    let last = first.stderr.lines().last().unwrap();
    assert!(
        last.starts_with("error: 2 requests failed") && last.contains("--retry-failed"),
        "{first:#?}"
    );
    assert_eq!(first.status.code(), Some(1));
    let lines = output_lines(&out);
    assert_eq!(lines.len(), 5);
    let failed: Vec<&Value> = lines.iter().filter(|l| !l["error"].is_null()).collect();
    assert_eq!(failed.len(), 2);
    assert_eq!(failed[0]["response"]["status_code"], 400, "{}", failed[0]);
    assert!(failed[0]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("openai"));

    // Without --retry-failed the failures stand: nothing is sent.
    emu.clear_requests();
    let second = run(&args, &env, None).await;
    assert_eq!(second.status.code(), Some(1), "{second:#?}");
    assert!(emu.requests().is_empty());

    let mut retry = args.to_vec();
    retry.push("--retry-failed");
    let third = run(&retry, &env, None).await;
    assert!(third.status.success(), "{third:#?}");
    assert_eq!(emu.requests().len(), 2);
    assert_one_success_per_input(&out, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_13_a_burst_of_500s_opens_the_breaker_and_the_batch_waits_it_out() {
    let emu = emulator(Vendor::OpenAi).await;
    // 15 consecutive 500s: the breaker (5 consecutive failures) opens, and every probe after
    // its cool-down meets one of the remaining 500s until they run out.
    emu.push_fault(Fault::once(status(500)).times(15));
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "in.jsonl", &short_lines(300));
    let out = dir.path().join("out.jsonl");
    let result = run(
        &[
            "batch",
            input.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "-m",
            "openai/gpt-4o-mini",
            "--concurrency",
            "8",
            "--breaker-cool-down",
            "300ms",
        ],
        &env(&emu),
        None,
    )
    .await;
    assert!(result.status.success(), "{result:#?}");
    assert_one_success_per_input(&out, 300);
    assert_eq!(statuses(&emu, 500), 15);
    assert_eq!(statuses(&emu, 200), 300);
    // The breaker did open, and the progress output said the batch was waiting for it.
    let stderr = &result.stderr;
    let waiting = format!(
        "batch: waiting for openai@{}: circuit open (",
        emu.base_url()
    );
    assert!(stderr.contains(&waiting), "{stderr}");
    assert!(
        stderr.contains("consecutive upstream failures), retry in "),
        "{stderr}"
    );
    assert!(
        stderr.contains("recovered; lines are flowing again"),
        "{stderr}"
    );
    assert!(stderr.contains("batch done: ok 300, failed 0,"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_key_is_one_error_before_anything_is_sent() {
    let emu = emulator(Vendor::OpenAi).await;
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "in.jsonl", &short_lines(3));
    let out = dir.path().join("out.jsonl");
    let result = run(
        &[
            "batch",
            input.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "-m",
            "openai/gpt-4o-mini",
            "--base-url",
            &emu.base_url(),
        ],
        &[],
        None,
    )
    .await;
    let line = result.err_line();
    assert!(line.contains("OPENAI_API_KEY"), "{line}");
    assert!(emu.requests().is_empty());
    assert_eq!(std::fs::read_to_string(&out).unwrap_or_default(), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_terminal_progress_is_a_bar() {
    use std::io::Read;

    // Slow answers, so the bar is drawn while requests are in flight.
    let emu = llmux_emulator::Emulator::start(
        EmulatorConfig::new(Vendor::OpenAi).with_latency(Duration::from_millis(300)),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "in.jsonl", &short_lines(3));
    let out = dir.path().join("out.jsonl");
    let pty = nix::pty::openpty(None, None).unwrap();
    let mut env = env(&emu);
    env.push(("TERM", "xterm".to_owned()));
    let mut cmd = command(dir.path(), &env);
    cmd.args([
        "batch",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "-m",
        "openai/gpt-4o-mini",
        "--concurrency",
        "1",
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::from(std::fs::File::from(pty.slave)));
    let mut child = cmd.spawn().unwrap();
    drop(cmd); // closes our copy of the terminal's slave side
    let mut master = std::fs::File::from(pty.master);
    let screen = tokio::task::spawn_blocking(move || {
        let mut screen = Vec::new();
        let mut buf = [0u8; 4096];
        // Ends with EIO once the child has exited and closed the terminal.
        while let Ok(n @ 1..) = master.read(&mut buf) {
            screen.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&screen).into_owned()
    });
    let status = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .unwrap()
        .unwrap();
    let screen = screen.await.unwrap();
    assert!(status.success(), "{status}: {screen}");
    assert!(screen.contains("/3 ") && screen.contains("ETA"), "{screen}");
    assert!(
        !screen.contains("batch: "),
        "no log lines on a terminal: {screen}"
    );
    assert!(screen.contains("batch done: ok 3"), "{screen}");
    assert_one_success_per_input(&out, 3);
}
