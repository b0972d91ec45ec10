//! The agent's bounds over the OpenAI emulator (whose model calls every offered tool at once):
//! a tool that never answers times out and the model is told so, a tool that panics is
//! reported as an error result and the run goes on, no more tools run at once than the cap
//! (counted, not timed), a refused call is reported as refused, and a conversation too long
//! for the context window is fitted before each model call.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod agent_common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_common::*;
use futures::StreamExt;
use llmux_core::agent::{tool_fn, Agent, AgentEvent, JsonSchema, ToolApproval, ToolError};
use llmux_core::providers::BoxFuture;
use llmux_core::*;
use serde::Deserialize;

/// Any text.
#[derive(Debug, Deserialize, JsonSchema)]
struct Text {
    /// The text.
    text: String,
}

/// The tool messages the emulator received in request `i` (0-based), in order.
fn tool_results_sent(s: &Subject, i: usize) -> Vec<String> {
    let body: serde_json::Value = serde_json::from_slice(&s.emu.requests()[i].body).unwrap();
    body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_hanging_tool_times_out_and_the_model_sees_the_timeout() {
    for streaming in [false, true] {
        let s = Subject::start("openai").await;
        let agent = Agent::new(s.client.clone(), s.addr())
            .tool(weather())
            .tool(tool_fn("hang", "Never answers.", |_: Text| async {
                futures::future::pending::<()>().await;
                Ok::<_, ToolError>("unreachable")
            }))
            .tool_timeout(Duration::from_secs(3600))
            .tool_timeout_for("hang", Duration::from_millis(50));
        let run = if streaming {
            let mut events = agent.run_streaming(vec![Message::user("Paris")]);
            let mut flags = Vec::new();
            let mut run = None;
            while let Some(ev) = events.next().await {
                match ev.unwrap() {
                    AgentEvent::ToolFinished { call, is_error, .. } => {
                        flags.push((call.name, is_error))
                    }
                    AgentEvent::Finished(r) => run = Some(*r),
                    _ => {}
                }
            }
            flags.sort();
            assert_eq!(
                flags,
                [("get_weather".to_owned(), false), ("hang".to_owned(), true)]
            );
            run.unwrap()
        } else {
            agent.run(vec![Message::user("Paris")]).await.unwrap()
        };
        let timed_out = "Error: `hang` did not finish within 50ms and was cancelled (timed out)";
        assert_eq!(
            tool_results_sent(&s, 1),
            ["Paris: 18 °C, sunny", timed_out],
            "the model was sent both results, the timeout in the hanging call's place"
        );
        assert_eq!(
            run.text(),
            format!("Tool results: Paris: 18 °C, sunny; {timed_out}")
        );
        assert_eq!(run.steps, 2);
    }
}

#[tokio::test]
async fn a_panicking_tool_is_reported_to_the_model_and_the_run_goes_on() {
    let s = Subject::start("openai").await;
    let agent = Agent::new(s.client.clone(), s.addr())
        .tool(tool_fn("explode", "Panics.", |a: Text| async move {
            if !a.text.is_empty() {
                panic!("the explode tool blew up on {:?}", a.text);
            }
            Ok::<_, ToolError>("quiet")
        }))
        .tool(weather());
    let run = agent.run(vec![Message::user("Paris")]).await.unwrap();
    let reported = r#"Error: `explode` panicked: the explode tool blew up on "Paris""#;
    assert_eq!(tool_results_sent(&s, 1), [reported, "Paris: 18 °C, sunny"]);
    assert_eq!(
        run.text(),
        format!("Tool results: {reported}; Paris: 18 °C, sunny")
    );
}

/// A tool that counts how many calls are running: it enters, yields to the executor a few
/// times (so every call the loop lets run gets polled before any finishes), and leaves.
fn counted(
    name: &'static str,
    running: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
) -> impl agent::DynTool {
    tool_fn(name, "Counts.", move |a: Text| {
        let running = running.clone();
        let peak = peak.clone();
        async move {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            for _ in 0..5 {
                tokio::task::yield_now().await;
            }
            running.fetch_sub(1, Ordering::SeqCst);
            Ok::<_, ToolError>(a.text)
        }
    })
}

#[tokio::test]
async fn no_more_tools_run_at_once_than_the_cap() {
    const NAMES: [&str; 5] = ["t1", "t2", "t3", "t4", "t5"];
    for (cap, expected_peak) in [(None, 5), (Some(2), 2), (Some(1), 1)] {
        let s = Subject::start("openai").await;
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let mut agent = Agent::new(s.client.clone(), s.addr());
        for name in NAMES {
            agent = agent.tool(counted(name, running.clone(), peak.clone()));
        }
        if let Some(cap) = cap {
            agent = agent.max_parallel_tools(cap);
        }
        let run = agent.run(vec![Message::user("x")]).await.unwrap();
        assert_eq!(
            peak.load(Ordering::SeqCst),
            expected_peak,
            "cap {cap:?}: most calls running at once"
        );
        assert_eq!(run.transcript[1].tool_calls.len(), 5);
        assert_eq!(tool_results_sent(&s, 1), ["x", "x", "x", "x", "x"]);
    }
}

/// Refuses every call to one tool and remembers what it was asked.
struct RefuseOne {
    refuse: &'static str,
    asked: Mutex<Vec<String>>,
}

impl ToolApproval for RefuseOne {
    fn approve<'a>(&'a self, call: &'a ToolCall) -> BoxFuture<'a, bool> {
        self.asked.lock().unwrap().push(call.name.clone());
        Box::pin(async move { call.name != self.refuse })
    }
}

#[tokio::test]
async fn a_refused_call_does_not_run_and_the_model_is_told() {
    let s = Subject::start("openai").await;
    let ran = Arc::new(AtomicUsize::new(0));
    let counter = ran.clone();
    let approval = Arc::new(RefuseOne {
        refuse: "delete_city",
        asked: Mutex::new(Vec::new()),
    });
    let agent = Agent::new(s.client.clone(), s.addr())
        .tool(weather())
        .tool(tool_fn("delete_city", "", move |_: Text| {
            counter.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, ToolError>("deleted") }
        }))
        .approval(approval.clone());
    let run = agent.run(vec![Message::user("Paris")]).await.unwrap();
    assert_eq!(ran.load(Ordering::SeqCst), 0, "the refused tool never ran");
    let mut asked = approval.asked.lock().unwrap().clone();
    asked.sort();
    assert_eq!(asked, ["delete_city", "get_weather"]);
    assert_eq!(
        tool_results_sent(&s, 1),
        [
            "Paris: 18 °C, sunny",
            "Error: the call to `delete_city` was not approved, so it did not run"
        ]
    );
    assert_eq!(run.steps, 2);
}

#[tokio::test]
async fn a_long_conversation_is_fitted_into_the_window_before_each_model_call() {
    let s = Subject::start("openai").await;
    let filler = "lorem ipsum dolor sit amet ".repeat(40);
    let mut input = vec![Message::system("You are terse.")];
    for i in 0..20 {
        input.push(Message::user(format!("question {i}: {filler}")));
        input.push(Message::assistant(format!("answer {i}: {filler}")));
    }
    input.push(Message::user("Paris"));
    let agent = Agent::new(s.client.clone(), s.addr())
        .tool(weather())
        .context_window(3000);
    let mut events = agent.run_streaming(input.clone());
    let mut fitted = Vec::new();
    let mut run = None;
    while let Some(ev) = events.next().await {
        match ev.unwrap() {
            AgentEvent::ContextFitted { step, report } => fitted.push((step, report)),
            AgentEvent::Finished(r) => run = Some(*r),
            _ => {}
        }
    }
    let run = run.unwrap();
    assert_eq!(run.text(), "Tool results: Paris: 18 °C, sunny");
    assert_eq!(
        run.transcript.len(),
        input.len() + 3,
        "the transcript keeps every message"
    );
    assert_eq!(fitted.len(), 2, "both model calls were fitted: {fitted:?}");
    for (i, (step, report)) in fitted.iter().enumerate() {
        assert_eq!(*step, i + 1);
        assert!(report.dropped_messages > 0, "{report:?}");
        assert!(report.prompt_tokens <= 3000 - 1024, "{report:?}");
        let body: serde_json::Value = serde_json::from_slice(&s.emu.requests()[i].body).unwrap();
        let sent = body["messages"].as_array().unwrap();
        assert_eq!(sent.len(), report.kept_messages, "{report:?}");
        assert!(sent.len() < input.len(), "messages were left out");
        assert_eq!(
            sent[0]["content"], "You are terse.",
            "the system prompt is kept"
        );
    }
    let first: serde_json::Value = serde_json::from_slice(&s.emu.requests()[0].body).unwrap();
    let msgs = first["messages"].as_array().unwrap();
    assert_eq!(
        msgs.last().unwrap()["content"],
        "Paris",
        "the newest turn is kept"
    );
}
