//! Routing: failover from a failing channel to a healthy one before the first byte, the
//! failing channel's breaker opening (visible on the admin endpoint), and priorities.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use llmux_emulator::{Fault, FaultKind, Vendor};
use serde_json::{json, Value};

const RESILIENCE: &str = "[resilience.retry]\nmax_attempts = 1\n[resilience.breaker]\nconsecutive_failures = 2\ncool_down = \"10m\"\n";

fn status_500() -> Fault {
    Fault::always(FaultKind::Status {
        status: 500,
        body: None,
        retry_after: None,
    })
}

async fn admin_channels(gw: &Harness) -> Value {
    admin_json(gw, "/admin/channels").await
}

fn breaker_of(channels: &Value, name: &str) -> String {
    channels["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap()["breaker"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn channel_a_500s_fail_over_to_b_and_open_a_breaker() {
    let a = emulator(Vendor::OpenAi).await;
    let b = emulator(Vendor::OpenAi).await;
    a.push_fault(status_500());
    let text = format!(
        "{RESILIENCE}{}{}",
        channel("a", "openai", &a, "[\"m\"]", "priority = 10"),
        channel("b", "openai", &b, "[\"m\"]", "priority = 0"),
    );
    let gw = start_with_store(&text).await;
    assert_eq!(breaker_of(&admin_channels(&gw).await, "a"), "closed");

    for stream in [false, true] {
        let resp = gw
            .post("/v1/chat/completions")
            .json(&json!({"model":"m","stream":stream,"messages":[{"role":"user","content":"hi"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "stream={stream}");
        let text = resp.text().await.unwrap();
        let ok = if stream {
            text.contains("data: [DONE]")
        } else {
            text.contains("You said: hi")
        };
        assert!(ok, "{text}");
    }
    assert_eq!(a.requests().len(), 2);
    assert_eq!(b.requests().len(), 2);
    let channels = admin_channels(&gw).await;
    assert_eq!(breaker_of(&channels, "a"), "open");
    assert_eq!(breaker_of(&channels, "b"), "closed");

    // With A open, B is tried first and A is not called at all.
    let resp = gw
        .post("/v1/chat/completions")
        .json(&json!({"model":"m","messages":[{"role":"user","content":"hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(a.requests().len(), 2);
    assert_eq!(b.requests().len(), 3);

    let m = gw.metrics().await;
    assert!(
        m.contains(
            "llmux_failovers_total{channel=\"a\",kind=\"upstream_server\",provider=\"openai\"} 2"
        ),
        "{m}"
    );
    assert!(
        m.contains("llmux_breaker_state{channel=\"a\",provider=\"openai\"} 2"),
        "{m}"
    );
    // One usage record per client request, each naming the channel that served it.
    let recs = records(&gw, 3).await;
    assert!(
        recs.iter().all(|r| r.channel == "b"
            && r.provider == "openai"
            && r.status == 200
            && r.error_kind.is_none()
            && r.output_tokens > 0),
        "{recs:?}"
    );
    assert_eq!(recs.iter().filter(|r| r.stream).count(), 1);
}

#[tokio::test]
async fn when_every_channel_fails_the_client_gets_the_error_in_its_format() {
    let a = emulator(Vendor::OpenAi).await;
    a.push_fault(status_500());
    let text = format!("{RESILIENCE}{}", channel("a", "openai", &a, "[\"m\"]", ""));
    let gw = start(&text).await;
    let resp = gw
        .post("/v1/chat/completions")
        .json(&json!({"model":"m","messages":[{"role":"user","content":"hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "api_error");
    let resp = gw
        .post("/api/v1/services/aigc/text-generation/generation")
        .json(&json!({"model":"m","input":{"prompt":"hi"}}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_server_error());
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["code"].is_string() && body["request_id"].is_string(),
        "{body}"
    );
}

#[tokio::test]
async fn client_errors_do_not_fail_over() {
    let a = emulator(Vendor::OpenAi).await;
    let b = emulator(Vendor::OpenAi).await;
    a.push_fault(Fault::always(FaultKind::Status {
        status: 400,
        body: None,
        retry_after: None,
    }));
    let text = format!(
        "{RESILIENCE}{}{}",
        channel("a", "openai", &a, "[\"m\"]", "priority = 10"),
        channel("b", "openai", &b, "[\"m\"]", "priority = 0"),
    );
    let gw = start(&text).await;
    let resp = gw
        .post("/v1/chat/completions")
        .json(&json!({"model":"m","messages":[{"role":"user","content":"hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(b.requests().len(), 0);
}

#[tokio::test]
async fn weights_spread_traffic_within_a_priority() {
    let a = emulator(Vendor::OpenAi).await;
    let b = emulator(Vendor::OpenAi).await;
    let text = format!(
        "{}{}",
        channel("a", "openai", &a, "{ pub = \"m\" }", "weight = 1"),
        channel("b", "openai", &b, "{ pub = \"m\" }", "weight = 1"),
    );
    let gw = start(&text).await;
    for _ in 0..40 {
        let resp = gw
            .post("/v1/chat/completions")
            .json(&json!({"model":"pub","messages":[{"role":"user","content":"hi"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    // Both get traffic (the chance that one gets none of 40 is 2^-39).
    assert!(!a.requests().is_empty() && !b.requests().is_empty());
    assert_eq!(a.requests().len() + b.requests().len(), 40);
    // The upstream saw its own model name.
    assert_eq!(a.requests()[0].json().unwrap()["model"], "m");
}

#[tokio::test]
async fn issue_14_failover_sends_each_channel_its_upstream_model_with_the_whole_request() {
    let (a, b, c) = (
        emulator(Vendor::OpenAi).await,
        emulator(Vendor::OpenAi).await,
        emulator(Vendor::OpenAi).await,
    );
    a.push_fault(status_500());
    b.push_fault(status_500());
    // Breakers stay closed, so every call walks all three channels.
    let resilience =
        "[resilience.retry]\nmax_attempts = 1\n[resilience.breaker]\nconsecutive_failures = 100\n";
    let text = format!(
        "{resilience}{}{}{}",
        channel("a", "openai", &a, "{ m = \"up-a\" }", "priority = 30"),
        channel("b", "openai", &b, "{ m = \"up-b\" }", "priority = 20"),
        channel("c", "openai", &c, "{ m = \"up-c\" }", "priority = 10"),
    );
    let gw = start_with_store(&text).await;
    let big = "y".repeat(512 * 1024);
    for stream in [false, true] {
        let resp = gw
            .post("/v1/chat/completions")
            .json(&json!({"model":"m","stream":stream,"messages":[{"role":"user","content":big}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "stream={stream}");
        let body = resp.text().await.unwrap();
        // The client sees its public model name, whatever the upstream was called.
        assert!(body.contains("\"model\":\"m\""), "stream={stream}");
    }
    let resp = gw
        .post("/v1/embeddings")
        .json(&json!({"model":"m","input":[big]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    for (emu, model, status) in [(&a, "up-a", 500), (&b, "up-b", 500), (&c, "up-c", 200)] {
        let log = emu.requests();
        assert_eq!(log.len(), 3, "{model}: chat, stream, embeddings");
        for r in &log {
            assert_eq!(r.status, status, "{model} {}", r.path);
            let body = r.json().unwrap();
            assert_eq!(body["model"], model, "{}", r.path);
            // One embeddings input goes upstream as a plain string.
            let sent = if r.path.ends_with("/embeddings") {
                &body["input"]
            } else {
                &body["messages"][0]["content"]
            };
            assert_eq!(sent.as_str(), Some(big.as_str()), "{model} {}", r.path);
        }
    }
}
