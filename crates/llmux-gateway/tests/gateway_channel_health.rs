//! Channel health (issue 13): a channel whose upstream rejects its credentials leaves the
//! rotation (visible on `/admin/channels` and in metrics) until a trial succeeds or an admin
//! re-enables it; a stream cut before its first content event fails over like any other error.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use llmux_emulator::{Fault, FaultKind, Vendor};
use serde_json::{json, Value};

const GEN: &str = "/api/v1/services/aigc/text-generation/generation";

/// No retries inside a channel, so every emulator request is one gateway attempt.
const ONE_ATTEMPT: &str = "[resilience.retry]\nmax_attempts = 1\n";

fn channel_of<'a>(channels: &'a Value, name: &str) -> &'a Value {
    channels["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap()
}

async fn chat(gw: &Harness, stream: bool) -> String {
    let resp = gw
        .post("/v1/chat/completions")
        .json(&json!({"model":"m","stream":stream,"messages":[{"role":"user","content":"hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "stream={stream}");
    let body = resp.text().await.unwrap();
    let complete = if stream {
        body.ends_with("data: [DONE]\n\n") && !body.contains("\"error\"")
    } else {
        body.contains("You said: hi")
    };
    assert!(complete, "{body}");
    body
}

async fn enable(gw: &Harness, name: &str, key: &str) -> reqwest::Response {
    gw.http
        .post(format!("{}/admin/channels/{name}/enable", gw.url))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
}

/// A channel configured with a key its upstream rejects.
fn bad_key_channel(name: &str, emu: &llmux_emulator::Emulator, extra: &str) -> String {
    channel(name, "openai", emu, "[\"m\"]", extra).replace(
        Vendor::OpenAi.default_key(),
        "sk-wrong-key-that-the-upstream-rejects",
    )
}

#[tokio::test]
async fn issue_13_rejected_credentials_take_a_channel_out_of_rotation_until_enabled() {
    let a = emulator(Vendor::OpenAi).await;
    let b = emulator(Vendor::OpenAi).await;
    let text = format!(
        "{ONE_ATTEMPT}{}{}",
        bad_key_channel("a", &a, "priority = 10"),
        channel("b", "openai", &b, "[\"m\"]", "priority = 0"),
    );
    let gw = start_with_store(&text).await;
    let before = admin_json(&gw, "/admin/channels").await;
    assert_eq!(channel_of(&before, "a")["state"], "enabled", "{before}");

    // The first request meets the 401 and fails over; the next ones never reach A.
    for i in 0..10 {
        chat(&gw, i % 2 == 1).await;
    }
    assert_eq!(a.requests().len(), 1, "only the first request reached A");
    assert_eq!(a.requests()[0].status, 401);
    assert_eq!(b.requests().len(), 10);

    let channels = admin_json(&gw, "/admin/channels").await;
    let ch = channel_of(&channels, "a");
    assert_eq!(ch["state"], "disabled", "{ch}");
    assert_eq!(ch["breaker"], "disabled", "{ch}");
    let reason = ch["reason"].as_str().unwrap();
    assert!(
        reason.contains("rejected the credentials") && reason.contains("401"),
        "{reason}"
    );
    assert!(
        !reason.contains("sk-wrong"),
        "the key never shows: {reason}"
    );
    assert!(ch["next_trial_in_ms"].as_u64().unwrap() > 0, "{ch}");
    assert_eq!(channel_of(&channels, "b")["state"], "enabled");

    let m = gw.metrics().await;
    assert!(
        m.contains("llmux_breaker_state{channel=\"a\",provider=\"openai\"} 3"),
        "{m}"
    );
    assert!(
        m.contains(
            "llmux_channel_disabled{channel=\"a\",provider=\"openai\",reason=\"authentication\"} 1"
        ),
        "{m}"
    );
    assert!(
        m.contains(
            "llmux_failovers_total{channel=\"a\",kind=\"authentication\",provider=\"openai\"} 1"
        ),
        "{m}"
    );
    // Usage names B for every request.
    let recs = records(&gw, 10).await;
    assert!(
        recs.iter().all(|r| r.channel == "b" && r.status == 200),
        "{recs:?}"
    );

    // Enabling is the admin's: wrong key, unknown channel, then the real thing.
    let resp = enable(&gw, "a", KEY).await;
    assert_eq!(resp.status(), 401);
    let resp = enable(&gw, "nope", ADMIN).await;
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error"]["message"].as_str().unwrap().contains("nope"),
        "{body}"
    );
    let resp = enable(&gw, "a", ADMIN).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["channel"]["state"], "enabled", "{body}");
    let m = gw.metrics().await;
    assert!(
        m.contains(
            "llmux_channel_disabled{channel=\"a\",provider=\"openai\",reason=\"authentication\"} 0"
        ),
        "{m}"
    );

    // Back in rotation: the next request tries A first (still the wrong key, so it is
    // disabled again after that one attempt).
    chat(&gw, false).await;
    assert_eq!(a.requests().len(), 2);
    chat(&gw, false).await;
    assert_eq!(a.requests().len(), 2);
    let channels = admin_json(&gw, "/admin/channels").await;
    assert_eq!(channel_of(&channels, "a")["state"], "disabled");
}

#[tokio::test]
async fn issue_13_a_disabled_channel_returns_after_a_successful_trial() {
    let a = emulator(Vendor::OpenAi).await;
    let b = emulator(Vendor::OpenAi).await;
    // A forbids the first two calls (the account was suspended, then restored).
    a.push_fault(
        Fault::once(FaultKind::Status {
            status: 403,
            body: None,
            retry_after: None,
        })
        .times(2),
    );
    let text = format!(
        "{ONE_ATTEMPT}[resilience.breaker]\ncredentials_cool_down = \"100ms\"\n{}{}",
        channel("a", "openai", &a, "[\"m\"]", "priority = 10"),
        channel("b", "openai", &b, "[\"m\"]", "priority = 0"),
    );
    let gw = start(&text).await;
    chat(&gw, false).await;
    assert_eq!(a.requests().len(), 1);
    let channels = admin_json(&gw, "/admin/channels").await;
    let ch = channel_of(&channels, "a");
    assert_eq!(ch["state"], "disabled", "{ch}");
    assert!(ch["reason"].as_str().unwrap().contains("403"), "{ch}");

    // After the cool-down a request tries A once (a trial); the second trial succeeds and puts
    // A back. Each client request still gets its answer.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        chat(&gw, false).await;
        if a.requests().iter().any(|r| r.status == 200) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "A never came back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let statuses: Vec<u16> = a.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [403, 403, 200], "one trial per cool-down");
    let channels = admin_json(&gw, "/admin/channels").await;
    let ch = channel_of(&channels, "a");
    assert_eq!(ch["state"], "enabled", "{ch}");
    assert_eq!(ch["reason"], Value::Null, "{ch}");
    chat(&gw, true).await;
    assert_eq!(a.requests().len(), 4, "A is first again");
}

/// Channel A's stream is cut after its first frame (the role-only chunk, no content).
async fn cut_before_content() -> (Harness, llmux_emulator::Emulator, llmux_emulator::Emulator) {
    let a = emulator(Vendor::OpenAi).await;
    let b = emulator(Vendor::OpenAi).await;
    a.push_fault(Fault::once(FaultKind::StreamCutAfter(1)));
    let text = format!(
        "{ONE_ATTEMPT}{}{}",
        channel("a", "openai", &a, "[\"m\"]", "priority = 10"),
        channel("b", "openai", &b, "[\"m\"]", "priority = 0"),
    );
    (start_with_store(&text).await, a, b)
}

async fn assert_failed_over_to_b(
    gw: &Harness,
    a: &llmux_emulator::Emulator,
    b: &llmux_emulator::Emulator,
) {
    assert_eq!(a.requests().len(), 1);
    assert_eq!(b.requests().len(), 1);
    let recs = records(gw, 1).await;
    assert_eq!(recs[0].channel, "b", "{recs:?}");
    assert_eq!(recs[0].status, 200, "{recs:?}");
    assert!(
        recs[0].error_kind.is_none() && recs[0].output_tokens > 0,
        "{recs:?}"
    );
    let m = gw.metrics().await;
    assert!(
        m.lines()
            .any(|l| l.starts_with("llmux_failovers_total{channel=\"a\"") && l.ends_with(" 1")),
        "{m}"
    );
}

#[tokio::test]
async fn issue_13_openai_stream_cut_before_content_fails_over() {
    let (gw, a, b) = cut_before_content().await;
    let resp = gw
        .post("/v1/chat/completions")
        .json(&json!({"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (chunks, done) = openai_chunks(&resp.text().await.unwrap());
    assert!(done, "the stream ends with [DONE]");
    assert!(
        chunks.iter().all(|c| c.get("error").is_none()),
        "{chunks:?}"
    );
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "You said: hi");
    let roles = chunks
        .iter()
        .filter(|c| c["choices"][0]["delta"]["role"] == "assistant")
        .count();
    assert_eq!(roles, 1, "one role chunk, from B: {chunks:?}");
    assert_failed_over_to_b(&gw, &a, &b).await;
}

#[tokio::test]
async fn issue_13_dashscope_stream_cut_before_content_fails_over() {
    let (gw, a, b) = cut_before_content().await;
    let resp = gw
        .post(GEN)
        .header("X-DashScope-SSE", "enable")
        .json(
            &json!({"model":"m","input":{"prompt":"hi"},"parameters":{"incremental_output":true}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.text().await.unwrap();
    assert!(!body.contains("event:error"), "{body}");
    let datas: Vec<Value> = sse_events(&body)
        .iter()
        .filter_map(|e| data_of(e).map(|d| serde_json::from_str(d).unwrap()))
        .collect();
    let text: String = datas
        .iter()
        .filter_map(|d| d["output"]["text"].as_str())
        .collect();
    assert_eq!(text, "You said: hi", "{body}");
    assert_eq!(
        datas.last().unwrap()["output"]["finish_reason"],
        "stop",
        "{body}"
    );
    assert_failed_over_to_b(&gw, &a, &b).await;
}
