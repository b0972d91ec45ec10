//! The agent loop over the OpenAI, DashScope, Hunyuan, Ollama, Anthropic and Gemini emulators,
//! streamed and not.
//!
//! The two-tool task is a two-turn conversation: "Paris" → `get_weather`, then "And in
//! Fahrenheit?" → `convert_temperature`, each turn a full agent run (tool call, result, final
//! answer) continuing the previous transcript. It is shaped by what the emulators do, which
//! is what the vendors do at their simplest: a model calls tools only when the last message
//! is the user's (after a tool result it answers), and Hunyuan's native API and Ollama return
//! one call per answer (the first tool offered). So each turn offers one tool
//! ([`Agent::active_tools`]) and every provider produces the same transcript:
//!
//! `user, assistant→get_weather, tool, assistant, user, assistant→convert_temperature, tool,
//! assistant`.
//!
//! Several calls in one answer, run concurrently, are tested where the emulators make them:
//! OpenAI, Anthropic and Gemini by default and DashScope with `parallel_tool_calls: true`.
//!
//! Gemini takes a tool result as an object, so a text result goes back as `{"result": …}` and
//! the emulated model quotes it so.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod agent_common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_common::*;
use futures::StreamExt;
use llmux_core::agent::{tool_fn, Agent, AgentEvent, AgentRun, ToolError};
use llmux_core::*;

const PROVIDERS: [&str; 6] = [
    "openai",
    "dashscope",
    "hunyuan",
    "ollama",
    "anthropic",
    "gemini",
];

/// The emulated model's answer to these tool results, as provider `id` carries them.
fn answered(id: &str, results: &[&str]) -> String {
    let shown: Vec<String> = results
        .iter()
        .map(|r| {
            if id == "gemini" {
                serde_json::json!({ "result": r }).to_string()
            } else {
                (*r).to_owned()
            }
        })
        .collect();
    format!("Tool results: {}", shown.join("; "))
}

async fn run(agent: &Agent, messages: Vec<Message>, streaming: bool) -> AgentRun {
    if !streaming {
        return agent.run(messages).await.unwrap();
    }
    let mut events = agent.run_streaming(messages);
    let mut model_events = 0;
    let mut finished = None;
    while let Some(ev) = events.next().await {
        match ev.unwrap() {
            AgentEvent::Model(_) => model_events += 1,
            AgentEvent::Finished(run) => finished = Some(*run),
            _ => {}
        }
    }
    let run = finished.expect("the stream ends with Finished");
    assert!(model_events >= 2 * run.steps, "model events were streamed");
    run
}

/// The two-turn conversation; returns the final transcript.
async fn two_tool_task(s: &Subject, streaming: bool) -> Vec<Message> {
    let agent = Agent::new(s.client.clone(), s.addr())
        .tool(weather())
        .tool(convert())
        .max_steps(4);

    let first = run(
        &agent.clone().active_tools(["get_weather"]),
        vec![Message::user("Paris")],
        streaming,
    )
    .await;
    assert_eq!(first.steps, 2, "{}", s.id);
    assert_eq!(
        first.text(),
        answered(s.id, &["Paris: 18 °C, sunny"]),
        "{}",
        s.id
    );
    assert!(first.usage.total_tokens > 0, "{}: usage is summed", s.id);
    assert_eq!(first.new_messages().len(), 3);

    let mut messages = first.transcript;
    messages.push(Message::user("And in Fahrenheit?"));
    let second = run(
        &agent.active_tools(["convert_temperature"]),
        messages,
        streaming,
    )
    .await;
    assert_eq!(second.steps, 2, "{}", s.id);
    assert_eq!(
        second.text(),
        answered(s.id, &["1.5 °C = 34.7 °F"]),
        "{}",
        s.id
    );

    let bodies = s.bodies();
    assert_eq!(bodies.len(), 4, "{}: one request per step", s.id);
    for b in &bodies[..2] {
        assert!(
            !b.contains("convert_temperature"),
            "{}: turn one offers only get_weather: {b}",
            s.id
        );
    }
    second.transcript
}

fn expected_shape() -> Vec<(Role, Vec<String>)> {
    shape_of(&[
        (Role::User, &[]),
        (Role::Assistant, &["get_weather"]),
        (Role::Tool, &[]),
        (Role::Assistant, &[]),
        (Role::User, &[]),
        (Role::Assistant, &["convert_temperature"]),
        (Role::Tool, &[]),
        (Role::Assistant, &[]),
    ])
}

#[tokio::test]
async fn two_tool_task_has_the_same_transcript_shape_over_every_tool_provider() {
    for id in PROVIDERS {
        let mut transcripts = Vec::new();
        for streaming in [false, true] {
            let s = Subject::start(id).await;
            let t = two_tool_task(&s, streaming).await;
            assert_eq!(shape(&t), expected_shape(), "{id} (streaming: {streaming})");
            assert_results_answer_calls(&t);
            assert_eq!(t[2].content.text(), "Paris: 18 °C, sunny", "{id}");
            assert_eq!(t[6].content.text(), "1.5 °C = 34.7 °F", "{id}");
            transcripts.push(t);
        }
        assert_eq!(
            transcripts[0], transcripts[1],
            "{id}: streaming builds the same transcript as whole answers"
        );
    }
}

/// `first` waits until `second` has run, so the run only completes if both run at once;
/// `second` finishes first, yet the results stay in call order.
fn rendezvous_tools(agent: Agent) -> Agent {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let rx = Arc::new(tokio::sync::Mutex::new(Some(rx)));
    let tx = Arc::new(Mutex::new(Some(tx)));
    agent
        .tool(tool_fn("first", "", move |a: GetWeather| {
            let rx = rx.clone();
            async move {
                let rx = rx.lock().await.take().ok_or("called twice")?;
                rx.await.map_err(|_| ToolError::fatal("partner gone"))?;
                Ok::<_, ToolError>(format!("first({})", a.city))
            }
        }))
        .tool(tool_fn("second", "", move |a: GetWeather| {
            let tx = tx.lock().unwrap().take();
            async move {
                tx.ok_or("called twice")?
                    .send(())
                    .map_err(|_| ToolError::fatal("partner gone"))?;
                Ok::<_, ToolError>(format!("second({})", a.city))
            }
        }))
}

#[tokio::test]
async fn parallel_calls_of_one_answer_run_concurrently_and_keep_call_order() {
    for (id, parallel) in [
        ("openai", None),
        ("dashscope", Some(true)),
        ("anthropic", None),
        ("gemini", None),
    ] {
        for streaming in [false, true] {
            let s = Subject::start(id).await;
            let options = ChatRequest {
                parallel_tool_calls: parallel,
                ..Default::default()
            };
            let agent = rendezvous_tools(Agent::new(s.client.clone(), s.addr()).options(options));
            let mut events = agent.run_streaming_or_whole(streaming);
            let mut finished_order = Vec::new();
            let mut done = None;
            let drive = async {
                while let Some(ev) = events.next().await {
                    match ev.unwrap() {
                        AgentEvent::ToolFinished { call, .. } => finished_order.push(call.name),
                        AgentEvent::Finished(run) => done = Some(*run),
                        _ => {}
                    }
                }
            };
            tokio::time::timeout(Duration::from_secs(30), drive)
                .await
                .unwrap_or_else(|_| panic!("{id}: the tools did not run concurrently"));
            let run = done.unwrap();
            assert_eq!(
                shape(&run.transcript),
                shape_of(&[
                    (Role::User, &[]),
                    (Role::Assistant, &["first", "second"]),
                    (Role::Tool, &[]),
                    (Role::Tool, &[]),
                    (Role::Assistant, &[]),
                ]),
                "{id}"
            );
            assert_results_answer_calls(&run.transcript);
            if streaming {
                assert_eq!(finished_order, ["second", "first"], "{id}");
            }
            assert_eq!(
                run.text(),
                answered(id, &["first(Lyon)", "second(Lyon)"]),
                "{id}: results are fed back in call order"
            );
        }
    }
}

/// A stream of agent events from a streamed run, or from a whole-answer run (whose only
/// event is `Finished`), so one test body checks both.
trait RunEither {
    fn run_streaming_or_whole(
        &self,
        streaming: bool,
    ) -> futures::stream::BoxStream<
        'static,
        std::result::Result<AgentEvent, llmux_core::agent::AgentError>,
    >;
}

impl RunEither for Agent {
    fn run_streaming_or_whole(
        &self,
        streaming: bool,
    ) -> futures::stream::BoxStream<
        'static,
        std::result::Result<AgentEvent, llmux_core::agent::AgentError>,
    > {
        let messages = vec![Message::user("Lyon")];
        if streaming {
            return self.run_streaming(messages);
        }
        let agent = self.clone();
        futures::stream::once(async move {
            agent
                .run(messages)
                .await
                .map(|r| AgentEvent::Finished(Box::new(r)))
        })
        .boxed()
    }
}

#[tokio::test]
async fn usage_is_summed_over_the_steps() {
    let s = Subject::start("openai").await;
    let agent = Agent::new(s.client.clone(), s.addr())
        .tool(weather())
        .tool(convert());
    let run = agent.run(vec![Message::user("Paris")]).await.unwrap();
    assert_eq!(run.steps, 2);

    let tools: Vec<Tool> = run_tools(&s).await;
    let mut expected = Usage::default();
    for prefix in [1, 4] {
        let mut req = ChatRequest::new(s.addr(), run.transcript[..prefix].to_vec());
        req.tools = tools.clone();
        let u = s.client.chat(req).await.unwrap().usage.unwrap();
        expected.input_tokens += u.input_tokens;
        expected.output_tokens += u.output_tokens;
        expected.total_tokens += u.total_tokens;
    }
    assert_eq!(run.usage.input_tokens, expected.input_tokens);
    assert_eq!(run.usage.output_tokens, expected.output_tokens);
    assert_eq!(run.usage.total_tokens, expected.total_tokens);
    assert!(run.usage.total_tokens > 0);
}

/// The tool definitions the agent sent in its first request, read back from the emulator.
async fn run_tools(s: &Subject) -> Vec<Tool> {
    let sent: serde_json::Value = serde_json::from_slice(&s.emu.requests()[0].body).unwrap();
    sent["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| serde_json::from_value(t["function"].clone()).unwrap())
        .collect()
}

#[tokio::test]
async fn a_forced_tool_choice_applies_to_the_first_step_only() {
    let s = Subject::start("openai").await;
    let options = ChatRequest {
        tool_choice: Some(ToolChoice::Function("convert_temperature".into())),
        temperature: Some(0.2),
        ..Default::default()
    };
    let agent = Agent::new(s.client.clone(), s.addr())
        .tool(weather())
        .tool(convert())
        .options(options);
    let run = agent.run(vec![Message::user("Paris")]).await.unwrap();
    assert_eq!(
        shape(&run.transcript),
        shape_of(&[
            (Role::User, &[]),
            (Role::Assistant, &["convert_temperature"]),
            (Role::Tool, &[]),
            (Role::Assistant, &[]),
        ])
    );
    let sent: Vec<serde_json::Value> = s
        .emu
        .requests()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    assert_eq!(
        sent[0]["tool_choice"]["function"]["name"],
        "convert_temperature"
    );
    assert!(sent[1].get("tool_choice").is_none(), "{}", sent[1]);
    assert_eq!(
        sent[1]["temperature"], 0.2,
        "other options apply to every step"
    );
}
