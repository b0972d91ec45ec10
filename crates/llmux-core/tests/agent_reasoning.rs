//! Issue 18, part 3: reasoning that a vendor requires back during multi-step tool use is carried
//! on the assistant message and sent back by the agent loop. The emulators refuse the second
//! step without it, as the vendors do (Anthropic: a thinking block with the signature it issued
//! must open the tool-calling turn; DeepSeek's reasoner: `reasoning_content` on every assistant
//! message with tool calls).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod agent_common;

use agent_common::*;
use futures::StreamExt;
use llmux_core::agent::{Agent, AgentEvent, AgentRun};
use llmux_core::*;
use serde_json::Value;

async fn run(agent: &Agent, streaming: bool) -> AgentRun {
    let messages = vec![Message::user("Paris")];
    if !streaming {
        return agent.run(messages).await.unwrap();
    }
    let mut events = agent.run_streaming(messages);
    while let Some(ev) = events.next().await {
        if let AgentEvent::Finished(run) = ev.unwrap() {
            return *run;
        }
    }
    panic!("the stream ended without Finished")
}

fn bodies(s: &Subject) -> Vec<Value> {
    s.emu.requests().iter().map(|r| r.json().unwrap()).collect()
}

#[tokio::test]
async fn issue_18_anthropic_thinking_blocks_go_back_with_their_signature_across_agent_steps() {
    for streaming in [false, true] {
        let s = Subject::start("anthropic").await;
        let options = ChatRequest {
            thinking: Some(Thinking::budget(2048)),
            ..ChatRequest::default()
        };
        let agent = Agent::new(s.client.clone(), s.addr())
            .tool(weather())
            .options(options)
            .max_steps(3);
        let run = run(&agent, streaming).await;
        assert_eq!(run.steps, 2, "streaming: {streaming}");
        let call = &run.transcript[1];
        assert_eq!(call.reasoning.as_deref(), Some("Considering: Paris"));
        let signature = call.reasoning_signature.clone().expect("signature kept");

        let sent = bodies(&s);
        assert_eq!(sent.len(), 2);
        let turn = &sent[1]["messages"][1];
        assert_eq!(turn["role"], "assistant");
        assert_eq!(
            turn["content"][0],
            serde_json::json!({"type": "thinking", "thinking": "Considering: Paris", "signature": signature}),
            "streaming: {streaming}"
        );
        assert_eq!(turn["content"][1]["type"], "tool_use");
    }
}

#[tokio::test]
async fn issue_18_a_tool_turn_without_its_thinking_block_is_what_anthropic_refuses() {
    // The same second step with the reasoning dropped: the emulator answers as the API does.
    let s = Subject::start("anthropic").await;
    let mut first = ChatRequest::new(s.addr(), vec![Message::user("Paris")]);
    first.thinking = Some(Thinking::budget(2048));
    first.tools = vec![llmux_core::agent::DynTool::definition(&weather()).unwrap()];
    let answer = s.client.chat(first.clone()).await.unwrap();
    let mut call = answer.choices[0].message.clone();
    assert!(call.reasoning_signature.is_some());
    call.reasoning_signature = None;
    let mut next = first;
    next.messages.push(call.clone());
    next.messages.push(Message::tool_result(
        call.tool_calls[0].id.clone(),
        "Paris: 18 °C, sunny",
    ));
    let err = s.client.chat(next).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{err}");
    assert!(
        err.message().contains("must start with a thinking block"),
        "{err}"
    );
}

#[tokio::test]
async fn issue_18_deepseek_reasoning_content_goes_back_across_agent_steps() {
    for streaming in [false, true] {
        let mut s = Subject::start("deepseek").await;
        s.model = "deepseek-reasoner".into();
        let agent = Agent::new(s.client.clone(), s.addr())
            .tool(weather())
            .max_steps(3);
        let run = run(&agent, streaming).await;
        assert_eq!(run.steps, 2, "streaming: {streaming}");
        assert_eq!(
            run.transcript[1].reasoning.as_deref(),
            Some("Considering: Paris")
        );
        let sent = bodies(&s);
        assert_eq!(sent.len(), 2);
        let turn = &sent[1]["messages"][1];
        assert_eq!(turn["role"], "assistant");
        assert_eq!(turn["reasoning_content"], "Considering: Paris");
        assert!(turn["tool_calls"].is_array());
        // The user's message carries none.
        assert!(sent[1]["messages"][0].get("reasoning_content").is_none());
    }
}

#[tokio::test]
async fn issue_18_other_vendors_are_not_sent_reasoning() {
    // OpenAI neither takes nor needs it: the assistant message goes back without it.
    let s = Subject::start("openai").await;
    let mut m = Message::assistant("");
    m.reasoning = Some("earlier thoughts".into());
    m.reasoning_signature = Some("sig".into());
    m.tool_calls = vec![ToolCall {
        id: "call_1".into(),
        name: "get_weather".into(),
        arguments: r#"{"city":"Paris"}"#.into(),
    }];
    let req = ChatRequest::new(
        s.addr(),
        vec![
            Message::user("Paris"),
            m,
            Message::tool_result("call_1", "sunny"),
        ],
    );
    s.client.chat(req).await.unwrap();
    let sent = &bodies(&s)[0];
    assert!(
        sent["messages"][1].get("reasoning_content").is_none(),
        "{sent}"
    );
    assert!(!sent.to_string().contains("earlier thoughts"));
}
