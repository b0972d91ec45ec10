//! Operations: health and readiness, Prometheus exposition, graceful shutdown draining an
//! in-flight stream, client disconnects recorded as cancelled, and start-up refusing to run
//! without any client authentication.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use futures::StreamExt;
use llmux_emulator::{Emulator, EmulatorConfig, Vendor};
use llmux_gateway::{Config, Gateway, RawConfig, ServeError, ServeOptions};
use serde_json::{json, Value};

#[tokio::test]
async fn health_readiness_and_metrics() {
    let (gw, _oa, _ds) = standard().await;
    let h = gw
        .http
        .get(format!("{}/healthz", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(h.status(), 200);
    let r: Value = gw
        .http
        .get(format!("{}/readyz", gw.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["status"], "ready");
    let resp = gw
        .post("/v1/chat/completions")
        .json(&json!({"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}))
        .send()
        .await
        .unwrap();
    resp.text().await.unwrap();
    gw.post("/v1/chat/completions")
        .json(&json!({"model":"nope","messages":[{"role":"user","content":"hi"}]}))
        .send()
        .await
        .unwrap();
    let m = gw.metrics().await;
    for series in [
        "llmux_requests_total{channel=\"oa\",model=\"gpt-4o-mini\",provider=\"openai\",status=\"2xx\"} 1",
        "llmux_errors_total{channel=\"\",kind=\"not_found\",model=\"\",provider=\"\"} 1",
        "llmux_tokens_total{channel=\"oa\",kind=\"output\",model=\"gpt-4o-mini\",provider=\"openai\"}",
        "llmux_request_duration_seconds_bucket{channel=\"oa\"",
        "llmux_ttft_seconds_count{channel=\"oa\",model=\"gpt-4o-mini\",provider=\"openai\"} 1",
        "llmux_added_latency_seconds_count",
        "llmux_breaker_state{channel=\"ds\",provider=\"dashscope\"} 0",
        "llmux_inflight_streams 0",
    ] {
        assert!(m.contains(series), "missing {series} in\n{m}");
    }
}

async fn slow_openai() -> Emulator {
    Emulator::start(
        EmulatorConfig::new(Vendor::OpenAi).with_token_interval(Duration::from_millis(30)),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn graceful_shutdown_drains_an_in_flight_stream() {
    let oa = slow_openai().await;
    let mut gw = start(&channel("oa", "openai", &oa, "[\"m\"]", "")).await;
    let resp = gw
        .post("/v1/chat/completions")
        .json(&json!({"model":"m","stream":true,"messages":[{"role":"user","content":"a b c d e f g h"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    assert!(std::str::from_utf8(&first)
        .unwrap()
        .contains("chat.completion.chunk"));
    gw.shutdown();
    // Readiness flips while the stream is still being served.
    let mut rest = String::from_utf8(first.to_vec()).unwrap();
    while let Some(chunk) = body.next().await {
        rest.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    let (chunks, done) = openai_chunks(&rest);
    assert!(done, "the stream was cut: {rest}");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "You said: a b c d e f g h");
    let task = gw.task.take().unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(gw.state.is_shutting_down());
    // The listener is closed.
    assert!(reqwest::get(format!("{}/healthz", gw.url)).await.is_err());
}

#[tokio::test]
async fn a_client_disconnect_is_recorded_as_cancelled() {
    let oa = slow_openai().await;
    let gw = start(&channel("oa", "openai", &oa, "[\"m\"]", "")).await;
    let resp = gw
        .post("/v1/chat/completions")
        .json(&json!({"model":"m","stream":true,"messages":[{"role":"user","content":"a b c d e f g h i j k l"}]}))
        .send()
        .await
        .unwrap();
    let mut body = resp.bytes_stream();
    body.next().await.unwrap().unwrap();
    assert_eq!(gw.state.metrics.inflight_streams.get(), 1);
    drop(body);
    // The gateway notices on its next write; wait for the guard (bounded, no fixed sleep).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let m = gw.metrics().await;
        if m.contains("llmux_errors_total{channel=\"oa\",kind=\"cancelled\",model=\"m\",provider=\"openai\"} 1") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "cancellation never recorded:\n{m}"
        );
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(gw.state.metrics.inflight_streams.get(), 0);
}

#[tokio::test]
async fn serving_without_any_auth_is_refused_unless_insecure() {
    let oa = common::emulator(Vendor::OpenAi).await;
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n{}",
        channel("oa", "openai", &oa, "[\"m\"]", "")
    );
    let cfg = || Config::resolve(RawConfig::parse(&text, Vec::new()).unwrap(), |_| None).unwrap();
    let err = Gateway::bind(cfg(), ServeOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, ServeError::NoAuth));
    assert!(err.to_string().contains("--insecure-no-auth"));
    let gw = Gateway::bind(
        cfg(),
        ServeOptions {
            insecure_no_auth: true,
        },
    )
    .await
    .unwrap();
    let url = format!("http://{}", gw.local_addr());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(gw.run(async move {
        let _ = rx.await;
    }));
    let resp = reqwest::Client::new()
        .post(format!("{url}/v1/chat/completions"))
        .json(&json!({"model":"m","messages":[{"role":"user","content":"hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    tx.send(()).unwrap();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn an_address_in_use_is_named_in_the_error() {
    let oa = common::emulator(Vendor::OpenAi).await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let text = format!(
        "[server]\nlisten = \"{addr}\"\n{}",
        channel("oa", "openai", &oa, "[\"m\"]", "")
    );
    let cfg = Config::resolve(RawConfig::parse(&text, Vec::new()).unwrap(), |_| None).unwrap();
    let err = Gateway::bind(
        cfg,
        ServeOptions {
            insecure_no_auth: true,
        },
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, ServeError::Bind { addr: a, .. } if a == addr),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("cannot listen on {addr}: ")),
        "{msg}"
    );
    drop(taken);
}
