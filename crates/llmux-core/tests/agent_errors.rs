//! How the agent loop fails and recovers: the step limit stops a model that keeps calling
//! tools; unknown tools, arguments that do not parse and tool errors go back to the model as
//! results; fatal tool errors and bad setups stop the run with a clear error. All over the
//! OpenAI emulator, some through a wrapper provider that changes what the model does.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod agent_common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use agent_common::*;
use futures::StreamExt;
use llmux_core::agent::{
    parse_arguments, tool_fn, Agent, AgentError, AgentEvent, AgentRun, DynTool, ToolError,
};
use llmux_core::providers::BoxFuture;
use llmux_core::*;
use serde::Deserialize;
use serde_json::json;

/// Runs whole or streamed; a streamed run also returns its tool results' error flags.
async fn run_either(
    agent: &Agent,
    messages: Vec<Message>,
    streaming: bool,
) -> (std::result::Result<AgentRun, AgentError>, Vec<bool>) {
    if !streaming {
        return (agent.run(messages).await, Vec::new());
    }
    let mut events = agent.run_streaming(messages);
    let mut flags = Vec::new();
    while let Some(ev) = events.next().await {
        match ev {
            Ok(AgentEvent::ToolFinished { is_error, .. }) => flags.push(is_error),
            Ok(AgentEvent::Finished(run)) => return (Ok(*run), flags),
            Ok(_) => {}
            Err(e) => return (Err(e), flags),
        }
    }
    panic!("the stream ended without Finished or an error");
}

#[tokio::test]
async fn step_limit_stops_a_model_that_keeps_calling_tools() {
    for streaming in [false, true] {
        let s = Subject::start("openai").await;
        let looping = Wrapped::looping(s.client.provider("openai").unwrap());
        let agent = Agent::with_provider(s.client.clone(), looping, &s.model)
            .tool(weather())
            .max_steps(3);
        let (result, _) = run_either(&agent, vec![Message::user("Paris")], streaming).await;
        let err = result.unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("step limit of 3 model calls without a final answer"),
            "{msg}"
        );
        assert!(
            msg.contains("`get_weather` (call `call_0`) (not executed)"),
            "{msg}"
        );
        let AgentError::StepLimit {
            max_steps,
            last_calls,
            transcript,
        } = err
        else {
            panic!("not a step limit: {err:?}");
        };
        assert_eq!(max_steps, 3);
        assert_eq!(last_calls.len(), 1);
        assert_eq!(last_calls[0].arguments, r#"{"city":"Once more."}"#);
        assert_eq!(
            shape(&transcript),
            shape_of(&[
                (Role::User, &[]),
                (Role::Assistant, &["get_weather"]),
                (Role::Tool, &[]),
                (Role::Assistant, &["get_weather"]),
                (Role::Tool, &[]),
                (Role::Assistant, &["get_weather"]),
            ])
        );
        assert_eq!(s.emu.requests().len(), 3, "exactly max_steps model calls");
    }
}

fn bad_arguments(mut c: ToolCall) -> ToolCall {
    c.arguments = r#"{"city":42}"#.into();
    c.id.clear();
    c
}

#[tokio::test]
async fn arguments_that_do_not_parse_are_fed_back_as_an_error_result() {
    for streaming in [false, true] {
        let s = Subject::start("openai").await;
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let tampering = Wrapped::tampering(s.client.provider("openai").unwrap(), bad_arguments);
        let agent = Agent::with_provider(s.client.clone(), tampering, &s.model).tool(tool_fn(
            "get_weather",
            "",
            move |a: GetWeather| {
                counter.fetch_add(1, Ordering::SeqCst);
                async move { Ok::<_, ToolError>(a.city) }
            },
        ));
        let (result, flags) = run_either(&agent, vec![Message::user("Paris")], streaming).await;
        let run = result.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 0, "the handler never ran");
        let t = &run.transcript;
        assert_eq!(
            t[1].tool_calls[0].id, "call_1_0",
            "a call without id gets one"
        );
        assert_eq!(t[2].tool_call_id.as_deref(), Some("call_1_0"));
        let content = t[2].content.text();
        assert!(
            content.starts_with("Error: invalid arguments for `get_weather`: invalid type: integer `42`, expected a string"),
            "{content}"
        );
        assert_eq!(run.text(), format!("Tool results: {content}"));
        if streaming {
            assert_eq!(flags, [true]);
        }
    }
}

fn unknown_name(mut c: ToolCall) -> ToolCall {
    c.name = "get_wether".into();
    c
}

#[tokio::test]
async fn a_call_to_an_unknown_tool_is_fed_back_naming_the_tools() {
    let s = Subject::start("openai").await;
    let tampering = Wrapped::tampering(s.client.provider("openai").unwrap(), unknown_name);
    let agent = Agent::with_provider(s.client.clone(), tampering, &s.model)
        .tool(weather())
        .tool(convert())
        .active_tools(["get_weather"]);
    let run = agent.run(vec![Message::user("Paris")]).await.unwrap();
    assert_eq!(
        run.transcript[2].content.text(),
        "Error: there is no tool named `get_wether`; the tools are: get_weather, convert_temperature"
    );
    assert_eq!(run.steps, 2);
}

#[tokio::test]
async fn tool_errors_are_fed_back_and_fatal_ones_stop_the_run() {
    let s = Subject::start("openai").await;
    let agent = Agent::new(s.client.clone(), s.addr()).tool(tool_fn(
        "get_weather",
        "",
        |a: GetWeather| async move {
            match a.city.as_str() {
                "Atlantis" => Err(ToolError::new("no such city")),
                "Mordor" => Err(ToolError::fatal("weather service unreachable")),
                _ => Ok(a.city),
            }
        },
    ));
    let run = agent.run(vec![Message::user("Atlantis")]).await.unwrap();
    assert_eq!(run.transcript[2].content.text(), "Error: no such city");
    assert_eq!(run.text(), "Tool results: Error: no such city");

    for streaming in [false, true] {
        let (result, _) = run_either(&agent, vec![Message::user("Mordor")], streaming).await;
        let err = result.unwrap_err();
        assert_eq!(
            err.to_string(),
            "tool `get_weather` (call `call_0`) failed: weather service unreachable"
        );
        assert!(matches!(err, AgentError::Tool { .. }));
    }
}

/// A tool with a hand-written schema, implemented on raw arguments.
struct Echo;

impl DynTool for Echo {
    fn definition(&self) -> Result<Tool> {
        Ok(Tool {
            name: "echo".into(),
            description: Some("Echoes its text.".into()),
            parameters: json!({
                "type": "object",
                "properties": {"text": {"type": "string"}},
                "required": ["text"]
            }),
            strict: None,
        })
    }

    fn invoke<'a>(
        &'a self,
        arguments: &'a str,
    ) -> BoxFuture<'a, std::result::Result<String, ToolError>> {
        #[derive(Deserialize)]
        struct Args {
            text: String,
        }
        Box::pin(async move {
            let a: Args = parse_arguments("echo", arguments)?;
            Ok(a.text.to_uppercase())
        })
    }
}

#[tokio::test]
async fn hand_written_tools_run_beside_typed_ones() {
    let s = Subject::start("openai").await;
    let agent = Agent::new(s.client.clone(), s.addr())
        .tool(Echo)
        .tool(weather());
    let run = agent.run(vec![Message::user("hello")]).await.unwrap();
    assert_eq!(run.text(), "Tool results: HELLO; hello: 18 °C, sunny");
    let sent: serde_json::Value = serde_json::from_slice(&s.emu.requests()[0].body).unwrap();
    assert_eq!(
        sent["tools"][0]["function"]["description"],
        "Echoes its text."
    );
    assert_eq!(
        sent["tools"][1]["function"]["description"],
        "Current weather for a city."
    );
    assert_eq!(
        sent["tools"][1]["function"]["parameters"]["properties"]["city"]["type"],
        "string"
    );
}

#[tokio::test]
async fn bad_setups_fail_before_any_model_call() {
    let s = Subject::start("openai").await;
    let base = Agent::new(s.client.clone(), s.addr()).tool(weather());
    let cases: Vec<(Agent, &str)> = vec![
        (base.clone().tool(weather()), "two tools are named `get_weather`"),
        (
            base.clone().active_tools(["get_time"]),
            "active tool `get_time` is not registered",
        ),
        (
            base.clone().tool(tool_fn("shout", "", |s: String| async move {
                Ok::<_, ToolError>(s)
            })),
            "tool `shout`: the arguments type must be a struct (a JSON object schema), got \"string\"",
        ),
    ];
    for (agent, expected) in cases {
        let err = agent.run(vec![Message::user("hi")]).await.unwrap_err();
        let llm = err.as_llm().expect("a library error");
        assert_eq!(llm.kind(), ErrorKind::InvalidRequest);
        assert_eq!(llm.message(), expected);
    }
    assert!(s.emu.requests().is_empty());
}

#[tokio::test]
async fn a_model_error_ends_the_run_with_its_kind() {
    let s = Subject::start("openai").await;
    s.emu.push_fault(llmux_emulator::Fault::once(
        llmux_emulator::FaultKind::QuotaExhausted,
    ));
    let agent = Agent::new(s.client.clone(), s.addr()).tool(weather());
    let err = agent.run(vec![Message::user("Paris")]).await.unwrap_err();
    assert_eq!(err.as_llm().unwrap().kind(), ErrorKind::QuotaExhausted);
}
