//! The billing policy for abnormal streams (`docs/billing.md`), end to end: what lands in the
//! database when clients go away mid-stream or the upstream fails after the 200.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use futures::StreamExt;
use llmux_core::tokens::estimate_text;
use llmux_emulator::{Emulator, EmulatorConfig, Fault, FaultKind, Vendor};
use serde_json::{json, Value};

/// A prompt whose echoed answer takes a while at 20 ms per token.
fn long_prompt() -> String {
    (0..60)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ")
}

async fn slow_openai() -> Emulator {
    Emulator::start(
        EmulatorConfig::new(Vendor::OpenAi).with_token_interval(Duration::from_millis(20)),
    )
    .await
    .unwrap()
}

/// Reads the body until `needle` has been seen, returns what was read and the rest of the
/// stream (not yet read).
async fn read_until(
    resp: reqwest::Response,
    needle: &str,
) -> (
    String,
    impl futures::Stream<Item = reqwest::Result<impl AsRef<[u8]>>>,
) {
    let mut body = Box::pin(resp.bytes_stream());
    let mut seen = String::new();
    while !seen.contains(needle) {
        let chunk = body.next().await.expect("stream ended early").unwrap();
        seen.push_str(std::str::from_utf8(chunk.as_ref()).unwrap());
    }
    (seen, body)
}

async fn spent_tokens(gw: &Harness, id: i64) -> u64 {
    let keys: Value = admin_json(gw, "/admin/keys").await;
    keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id)
        .unwrap()["spent_tokens"]
        .as_u64()
        .unwrap()
}

on_both_stores!(
    two_overlapping_streams_cancelled_by_the_client_are_billed_once_each_per_policy,
    streams_that_finish_or_fail_after_the_200_are_billed_per_policy,
);

async fn two_overlapping_streams_cancelled_by_the_client_are_billed_once_each_per_policy(
    database: &str,
) {
    let oa = slow_openai().await;
    let gw = start_with_database(database, &channel("oa", "openai", &oa, "[\"m\"]", "")).await;
    let (key, id) = create_key(&gw, json!({"name":"cancel"})).await;
    let prompt = long_prompt();

    // Stream 1 on the OpenAI ingress (asking for usage, which only the last chunk would carry)
    // and stream 2 on the DashScope ingress, both open at once.
    let s1 = gw
        .http
        .post(format!("{}/v1/chat/completions", gw.url))
        .bearer_auth(&key)
        .json(
            &json!({"model":"m","stream":true,"stream_options":{"include_usage":true},
                      "messages":[{"role":"user","content":prompt}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(s1.status(), 200);
    let s2 = gw
        .http
        .post(format!(
            "{}/api/v1/services/aigc/text-generation/generation",
            gw.url
        ))
        .bearer_auth(&key)
        .header("X-DashScope-SSE", "enable")
        .json(
            &json!({"model":"m","input":{"messages":[{"role":"user","content":prompt}]},
                      "parameters":{"incremental_output":true,"result_format":"message"}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(s2.status(), 200);
    // Some text has reached each client ("You said: w0 …") before it goes away.
    let (seen1, rest1) = read_until(s1, "w1").await;
    let (seen2, rest2) = read_until(s2, "w1").await;
    assert_eq!(gw.state.metrics.inflight_streams.get(), 2);
    drop(rest1);
    drop(rest2);
    assert!(
        !seen1.contains("[DONE]") && !seen1.contains("\"usage\":{"),
        "{seen1}"
    );
    assert!(
        seen2.contains("event:result") && !seen2.contains("\"stop\""),
        "{seen2}"
    );

    let recs = records(&gw, 2).await;
    // Policy row "no usage, output streamed, client disconnect": prompt estimate in, estimate
    // of the streamed text out, marked estimated and cancelled.
    let prompt_estimate = 4 + estimate_text(&prompt);
    let full_answer = estimate_text(&format!("You said: {prompt}"));
    for r in &recs {
        assert_eq!(r.key_id, Some(id), "{r:?}");
        assert!(r.cancelled && r.stream && r.usage_estimated, "{r:?}");
        assert_eq!(
            (r.status, r.error_kind.as_deref()),
            (499, Some("cancelled")),
            "{r:?}"
        );
        assert_eq!(r.input_tokens, prompt_estimate, "{r:?}");
        assert!(
            r.output_tokens > 0 && r.output_tokens < full_answer,
            "streamed part only, never zero: {r:?} (full answer ≈ {full_answer})"
        );
    }
    // Billed once each: the key's spend is exactly the two records.
    let billed: u64 = recs.iter().map(|r| r.billed_tokens()).sum();
    assert_eq!(spent_tokens(&gw, id).await, billed);
    // Each stream reached the upstream once (no retry after the first byte).
    assert_eq!(oa.requests().len(), 2);
    assert_eq!(gw.state.metrics.inflight_streams.get(), 0);
}

async fn streams_that_finish_or_fail_after_the_200_are_billed_per_policy(database: &str) {
    let oa = emulator(Vendor::OpenAi).await;
    let gw = start_with_database(database, &channel("oa", "openai", &oa, "[\"m\"]", "")).await;
    let (key, id) = create_key(&gw, json!({"name":"ends"})).await;
    let prompt = long_prompt();
    let stream = |gw: &Harness| {
        gw.http
            .post(format!("{}/v1/chat/completions", gw.url))
            .bearer_auth(&key)
            .json(
                &json!({"model":"m","stream":true,"stream_options":{"include_usage":true},
                          "messages":[{"role":"user","content":prompt}]}),
            )
    };

    // 1. A complete stream: the upstream's reported usage, exactly as the client saw it.
    let body = stream(&gw).send().await.unwrap().text().await.unwrap();
    let (chunks, done) = openai_chunks(&body);
    assert!(done);
    let usage = chunks.last().unwrap()["usage"].clone();
    assert!(usage["completion_tokens"].as_u64().unwrap() > 0, "{body}");

    // 2. The upstream cuts the stream after 5 frames (after the 200): no usage arrives, so the
    // streamed text is estimated; the client gets an error event, nobody cancelled.
    oa.push_fault(Fault::once(FaultKind::StreamCutAfter(5)));
    let body = stream(&gw).send().await.unwrap().text().await.unwrap();
    assert!(body.contains("\"error\""), "{body}");

    let recs = records(&gw, 2).await;
    let cut = recs
        .iter()
        .find(|r| r.usage_estimated)
        .expect("the cut stream");
    let complete = recs
        .iter()
        .find(|r| !r.usage_estimated)
        .expect("the full stream");
    assert!(!complete.cancelled, "{complete:?}");
    assert_eq!(
        complete.input_tokens,
        usage["prompt_tokens"].as_u64().unwrap()
    );
    assert_eq!(
        complete.output_tokens,
        usage["completion_tokens"].as_u64().unwrap()
    );
    assert_eq!(complete.error_kind, None);

    assert!(!cut.cancelled, "{cut:?}");
    assert!(cut.error_kind.is_some(), "{cut:?}");
    assert_eq!(cut.input_tokens, 4 + estimate_text(&prompt), "{cut:?}");
    assert!(
        cut.output_tokens > 0 && cut.output_tokens < complete.output_tokens,
        "{cut:?}"
    );
    let billed: u64 = recs.iter().map(|r| r.billed_tokens()).sum();
    assert_eq!(spent_tokens(&gw, id).await, billed);
}
