//! The REPL's context management end to end: the real `llmux chat` REPL with a 512-token window,
//! a summary model and recall, against the OpenAI emulator, asserting on the emulator's request
//! log. It runs on a pseudo-terminal because `llmux chat` with a piped stdin is a one-shot chat.
//!
//! One summary call per window overflow (never per turn), each given only the newly dropped
//! messages and the previous summary; the running summary kept in the session and reused after
//! resuming; a fact dropped from the window brought back by recall; `/tokens` equal to the
//! count of the requests the emulator received, with the model's own tokenizer.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers: a failed setup must fail the test loudly"
)]

mod common;

use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use common::pty::Terminal;
use llmux_core::context::transcript;
use llmux_core::tokenize::Tokenizer;
use llmux_core::{ChatRequest, Message};
use llmux_emulator::{Emulator, EmulatorConfig, RecordedRequest, Vendor};
use serde_json::{json, Value};

const DEADLINE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(10);

const MODEL: &str = "openai/gpt-4o";
const SUMMARY_MODEL: &str = "gpt-4o-mini";
const EMBED_MODEL: &str = "text-embedding-3-small";
const SUMMARY_HEADING: &str = "Summary of the earlier conversation:\n";
const RECALL_HEADING: &str = "Relevant earlier messages:\n";
const FACT: &str = "Remember this: my locker code is PINEAPPLE-42.";

/// Sends a message and waits for its answer and the next prompt; returns what was shown.
fn say(term: &mut Terminal, text: &str) -> String {
    term.line(text);
    let shown = term.expect(&format!("You said: {}", &text[..text.len().min(20)]));
    shown + &term.expect("> ")
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

fn repl(home: &Path, emu: &Emulator, args: &[&str]) -> (Child, Terminal) {
    let mut cmd = Command::new(common::BIN);
    cmd.env_clear()
        .env("HOME", home)
        .env("TERM", "xterm")
        .env("NO_COLOR", "1")
        .env("LLMUX_DATA_DIR", home.join("data"))
        .env("OPENAI_BASE_URL", emu.base_url())
        .env("OPENAI_API_KEY", Vendor::OpenAi.default_key())
        .args(["chat", "-m", MODEL])
        .args(args);
    Terminal::spawn(&mut cmd, DEADLINE)
}

fn body(r: &RecordedRequest) -> Value {
    r.json().unwrap()
}

fn is_chat(r: &RecordedRequest, model: &str) -> bool {
    r.path.ends_with("/chat/completions") && body(r)["model"] == model
}

fn chats(emu: &Emulator) -> Vec<Value> {
    emu.requests()
        .iter()
        .filter(|r| is_chat(r, "gpt-4o"))
        .map(body)
        .collect()
}

fn summaries(emu: &Emulator) -> Vec<Value> {
    emu.requests()
        .iter()
        .filter(|r| is_chat(r, SUMMARY_MODEL))
        .map(body)
        .collect()
}

fn embeddings(emu: &Emulator) -> Vec<Value> {
    emu.requests()
        .iter()
        .filter(|r| r.path.ends_with("/embeddings"))
        .map(body)
        .collect()
}

/// The texts of an embeddings request (`input` is a string or a list of them).
fn inputs(e: &Value) -> Vec<Value> {
    match &e["input"] {
        Value::Array(items) => items.clone(),
        one => vec![one.clone()],
    }
}

fn system_text(chat: &Value) -> String {
    assert_eq!(chat["messages"][0]["role"], "system", "{chat:#}");
    chat["messages"][0]["content"].as_str().unwrap().to_owned()
}

/// The running summary a chat request carries (the text under the summary heading).
fn summary_in(chat: &Value) -> Option<String> {
    let system = system_text(chat);
    let (_, rest) = system.split_once(SUMMARY_HEADING)?;
    Some(match rest.split_once(&format!("\n\n{RECALL_HEADING}")) {
        Some((summary, _)) => summary.to_owned(),
        None => rest.to_owned(),
    })
}

/// The exact count of a request as the emulator received it, with gpt-4o's tokenizer.
fn count(chat: &Value, drop_last: bool) -> u64 {
    let mut messages: Vec<Message> = serde_json::from_value(chat["messages"].clone()).unwrap();
    if drop_last {
        messages.pop();
    }
    Tokenizer::for_model(MODEL)
        .unwrap()
        .count_request(&ChatRequest::new(MODEL, messages))
}

fn number_after(text: &str, label: &str) -> u64 {
    let at = text
        .find(label)
        .unwrap_or_else(|| panic!("{label:?} not in {text:?}"));
    let rest = &text[at + label.len()..];
    rest.split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// The emulator's embedding of each text (its vectors are deterministic).
async fn embed(emu: &Emulator, texts: &[String]) -> Vec<Vec<f64>> {
    let resp: Value = reqwest::Client::new()
        .post(format!("{}/embeddings", emu.base_url()))
        .bearer_auth(Vendor::OpenAi.default_key())
        .json(&json!({"model": EMBED_MODEL, "input": texts}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    resp["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            d["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        })
        .collect()
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

/// The emulator's vectors are a hash of the text, not of its meaning; so the question is one
/// whose vector is nearest to the fact's among every earlier message, found the way the REPL
/// will look (the transcript of each earlier message against the question).
async fn question_nearest_to_the_fact(earlier: &[Message]) -> String {
    let scratch = Emulator::start(EmulatorConfig::new(Vendor::OpenAi))
        .await
        .unwrap();
    let texts: Vec<String> = earlier
        .iter()
        .map(|m| transcript(std::slice::from_ref(m)))
        .collect();
    let vectors = embed(&scratch, &texts).await;
    let candidates: Vec<String> = (0..400)
        .map(|n| format!("What was my locker code again? ({n})"))
        .collect();
    let questions = embed(&scratch, &candidates).await;
    for (q, qv) in candidates.iter().zip(&questions) {
        let best = texts
            .iter()
            .zip(&vectors)
            .max_by(|a, b| cosine(qv, a.1).total_cmp(&cosine(qv, b.1)))
            .unwrap();
        if best.0.contains("PINEAPPLE-42") {
            return q.clone();
        }
    }
    panic!("no candidate question is nearest to the fact")
}

#[test]
fn repl_summarizes_once_per_overflow_keeps_the_summary_recalls_and_counts_exactly() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let emu = rt
        .block_on(Emulator::start(EmulatorConfig::new(Vendor::OpenAi)))
        .unwrap();
    let home = tempfile::tempdir().unwrap();

    // The script: the fact, then enough turns to overflow the window several times.
    let fillers: Vec<String> = (0..14)
        .map(|i| format!("Filler number {i}: the weather was mild and the train was on time."))
        .collect();
    let mut earlier = vec![
        Message::user(FACT),
        Message::assistant(format!("You said: {FACT}")),
    ];
    for f in &fillers {
        earlier.push(Message::user(f.as_str()));
        earlier.push(Message::assistant(format!("You said: {f}")));
    }
    let question = rt.block_on(question_nearest_to_the_fact(&earlier));

    let args = [
        "--session",
        "trip",
        "--system",
        "Be brief.",
        "--context-window",
        "512",
        "--max-tokens",
        "64",
        "--summary-model",
        "openai/gpt-4o-mini",
        "--recall",
        "--embed-model",
        "openai/text-embedding-3-small",
    ];
    let (mut child, mut term) = repl(home.path(), &emu, &args);
    term.expect("session trip: new");
    term.expect("> ");
    let mut summarized_lines = say(&mut term, FACT).matches("messages summarized").count();
    for f in &fillers {
        summarized_lines += say(&mut term, f).matches("messages summarized").count();
    }

    // One summary call per overflow, each reported in one stderr line.
    let summary_calls = summaries(&emu);
    let turns = chats(&emu);
    assert_eq!(turns.len(), 15);
    assert_eq!(summary_calls.len(), summarized_lines, "{}", term.screen());
    assert!(summary_calls.len() >= 2, "{}", term.screen());
    // Far fewer than the turns past the first overflow: later turns reuse the summary.
    let first_summarized = turns.iter().position(|c| summary_in(c).is_some()).unwrap();
    assert!(
        summary_calls.len() * 2 < turns.len() - first_summarized,
        "{} summary calls for {} turns past the window",
        summary_calls.len(),
        turns.len() - first_summarized
    );
    // Between two summary calls every turn sends the same summary; each new call extends the
    // summary sent before it with only the messages dropped since.
    let distinct: Vec<String> =
        turns
            .iter()
            .filter_map(summary_in)
            .fold(Vec::new(), |mut acc, s| {
                if acc.last() != Some(&s) {
                    acc.push(s);
                }
                acc
            });
    assert_eq!(distinct.len(), summary_calls.len(), "{distinct:#?}");
    for (i, call) in summary_calls.iter().enumerate() {
        let prompt = call["messages"][1]["content"].as_str().unwrap();
        assert!(prompt.contains("New messages:\n"), "{prompt}");
        if i == 0 {
            assert!(!prompt.contains("Previous summary:"), "{prompt}");
            assert!(prompt.contains(FACT), "{prompt}");
        } else {
            assert!(
                prompt.starts_with(&format!("Previous summary:\n{}\n\n", distinct[i - 1])),
                "{prompt}"
            );
            let new_part = prompt.rsplit_once("New messages:\n").unwrap().1;
            assert!(
                !new_part.contains(FACT),
                "re-sent dropped history: {prompt}"
            );
        }
        // Never an empty husk: the summary fills its budget (a quarter of 512 - 64).
        let sent = &distinct[i];
        let tokens = Tokenizer::for_model(MODEL).unwrap().count_text(sent);
        assert!(tokens > 64, "{tokens}: {sent:?}");
    }

    // Recall: the fact left the window long ago and comes back for the question.
    let last = turns.last().unwrap();
    assert!(
        last["messages"]
            .as_array()
            .unwrap()
            .iter()
            .skip(1)
            .all(|m| !m["content"].as_str().unwrap().contains("PINEAPPLE-42")),
        "the fact is still among the kept turns: {last:#}"
    );
    say(&mut term, &question);
    let asked = chats(&emu).pop().unwrap();
    let system = system_text(&asked);
    let recalled = system.split_once(RECALL_HEADING).unwrap().1;
    assert!(recalled.contains("PINEAPPLE-42"), "{system}");

    // `/tokens`: the last request as the emulator received it, counted with gpt-4o's tokenizer.
    term.line("/tokens");
    let report = term.expect("> ");
    assert_eq!(
        number_after(&report, "last request: "),
        count(&asked, false)
    );
    assert!(report.contains("exact (o200k_base"), "{report}");
    // End right after an overflow, so the next turns fit beside the stored summary.
    for extra in 0.. {
        assert!(extra < 10, "no overflow: {}", term.screen());
        let shown = say(
            &mut term,
            &format!("Extra line {extra} to fill up the window a little."),
        );
        if shown.contains("messages summarized") {
            break;
        }
    }
    let last = chats(&emu).pop().unwrap();
    term.line("/exit");
    assert!(wait_exit(&mut child).success(), "{}", term.screen());

    // The session keeps the settings and the running summary the last request carried.
    let db = rusqlite::Connection::open(home.path().join("data/sessions.sqlite3")).unwrap();
    let (settings, summary): (String, String) = db
        .query_row(
            "SELECT settings, summary FROM session_context WHERE session = 'trip'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let settings: Value = serde_json::from_str(&settings).unwrap();
    assert_eq!(
        settings,
        json!({"window": 512, "summary_model": "openai/gpt-4o-mini", "recall": true,
               "embed_model": "openai/text-embedding-3-small"})
    );
    let summary: Value = serde_json::from_str(&summary).unwrap();
    let stored = summary["text"].as_str().unwrap().to_owned();
    assert_eq!(Some(stored.clone()), summary_in(&last));
    let vectors_before = embeddings(&emu)
        .iter()
        .map(|e| inputs(e).len())
        .sum::<usize>();
    assert!(vectors_before > 10);

    // Resumed with only the name: the settings, the summary and the vectors are still there.
    let calls_before = summaries(&emu).len();
    let embed_calls_before = embeddings(&emu).len();
    // (`--max-tokens` is a request option, not a stored setting: the same reserve as before.)
    let (mut child, mut term) = repl(
        home.path(),
        &emu,
        &["--session", "trip", "--max-tokens", "64"],
    );
    term.expect("session trip: resumed");
    term.expect("> ");
    term.line("/context");
    let shown = term.expect("> ");
    assert!(shown.contains("window: 512 tokens"), "{shown}");
    assert!(
        shown.contains("summary model: openai/gpt-4o-mini"),
        "{shown}"
    );
    assert!(
        shown.contains("recall: on, with openai/text-embedding-3-small"),
        "{shown}"
    );
    say(&mut term, "Back again after a break.");
    let resumed = chats(&emu).pop().unwrap();
    assert_eq!(summary_in(&resumed), Some(stored.clone()));
    assert_eq!(summaries(&emu).len(), calls_before);
    // Only the question was embedded: the dropped turns' vectors were kept.
    let new_embeds = &embeddings(&emu)[embed_calls_before..];
    assert_eq!(new_embeds.len(), 1);
    assert_eq!(inputs(&new_embeds[0]), [json!("Back again after a break.")]);
    term.line("/exit");
    assert!(wait_exit(&mut child).success(), "{}", term.screen());

    // `/tokens` before a message: the next request is exactly that plus the message (recall
    // off, so nothing depends on the message itself).
    let args = ["--session", "trip", "--max-tokens", "64", "--recall", "off"];
    let (mut child, mut term) = repl(home.path(), &emu, &args);
    term.expect("> ");
    term.line("/tokens");
    let report = term.expect("> ");
    assert!(!report.contains("will be summarized"), "{report}");
    let next = number_after(&report, "next request: ");
    say(&mut term, "One more short line.");
    let sent = chats(&emu).pop().unwrap();
    assert_eq!(summary_in(&sent), Some(stored));
    assert_eq!(count(&sent, true), next, "{report}");
    assert_eq!(
        sent["messages"].as_array().unwrap().last().unwrap()["content"],
        "One more short line."
    );
    term.line("/exit");
    assert!(wait_exit(&mut child).success(), "{}", term.screen());
}

#[test]
fn a_window_too_small_is_a_clear_error() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let emu = rt
        .block_on(Emulator::start(EmulatorConfig::new(Vendor::OpenAi)))
        .unwrap();
    let home = tempfile::tempdir().unwrap();
    let (mut child, mut term) = repl(home.path(), &emu, &["--context-window", "100"]);
    term.expect("100 is not in 256..=100000000");
    assert_eq!(wait_exit(&mut child).code(), Some(2));
}
