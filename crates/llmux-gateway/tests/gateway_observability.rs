//! What operators read: the access log names the channel that answered and the key (by name),
//! the Prometheus series carry the status class and the key under a cardinality guard, and
//! the process's CPU and memory are exported.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use llmux_emulator::{Fault, FaultKind, Vendor};
use serde_json::json;

#[derive(Clone, Default)]
struct LogBuffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogBuffer {
    fn lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

fn chat_body(model: &str, stream: bool) -> serde_json::Value {
    json!({"model": model, "stream": stream, "messages":[{"role":"user","content":"hi"}]})
}

async fn chat(gw: &Harness, key: &str, model: &str, stream: bool) -> reqwest::StatusCode {
    let resp = gw
        .http
        .post(format!("{}/v1/chat/completions", gw.url))
        .bearer_auth(key)
        .json(&chat_body(model, stream))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    resp.text().await.unwrap();
    status
}

/// The access line of a successful request (whole and streamed) names its channel, provider,
/// model and key name; a request refused before routing names no channel; the key's secret is
/// never in the log.
#[tokio::test(flavor = "current_thread")]
async fn the_access_log_names_the_channel_and_the_key() {
    let logs = LogBuffer::default();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .finish();
    // The runtime is single-threaded: the gateway's tasks log through this thread's default.
    let _guard = tracing::subscriber::set_default(subscriber);

    let oa = emulator(Vendor::OpenAi).await;
    let gw = start_with_store(&channel("oa", "openai", &oa, "[\"gpt-4o-mini\"]", "")).await;
    let (key, id) = create_key(&gw, json!({"name":"billing-service"})).await;
    assert_eq!(chat(&gw, &key, "gpt-4o-mini", false).await, 200);
    assert_eq!(chat(&gw, &key, "gpt-4o-mini", true).await, 200);
    assert_eq!(chat(&gw, KEY, "gpt-4o-mini", false).await, 200);
    assert_eq!(chat(&gw, &key, "nope", false).await, 404);

    let lines = logs.lines();
    let answered: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("request answered") && l.contains("path=\"/v1/chat/completions\""))
        .collect();
    assert_eq!(answered.len(), 4, "{lines:#?}");
    for line in &answered[..2] {
        for field in [
            "status=200",
            "channel=\"oa\"",
            "provider=\"openai\"",
            "model=\"gpt-4o-mini\"",
            "key=\"billing-service\"",
            &format!("key_id={id}"),
        ] {
            assert!(line.contains(field), "no {field} in {line}");
        }
        assert!(!line.contains("team="), "no team yet: {line}");
    }
    assert!(
        answered[2].contains("key=\"server.api_keys[0]\"")
            && answered[2].contains("channel=\"oa\""),
        "{}",
        answered[2]
    );
    let refused = answered[3];
    assert!(refused.contains("status=404"), "{refused}");
    assert!(refused.contains("key=\"billing-service\""), "{refused}");
    assert!(!refused.contains("channel="), "not routed: {refused}");
    assert!(!lines.iter().any(|l| l.contains(&key)), "the key leaked");
}

/// `llmux_requests_total` carries the status class; the per-key series carry the key's name;
/// past `metrics.max_key_labels` keys share `key="other"`; process CPU and memory are there.
#[tokio::test]
async fn metrics_carry_status_class_and_keys_under_a_cardinality_guard() {
    let oa = emulator(Vendor::OpenAi).await;
    let gw = start_with_store(&format!(
        "[metrics]\nmax_key_labels = 2\n\n{}",
        channel("oa", "openai", &oa, "[\"gpt-4o-mini\"]", "")
    ))
    .await;
    let mut keys = Vec::new();
    for name in ["k1", "k2", "k3", "k4"] {
        keys.push(create_key(&gw, json!({"name": name, "rpm": 1})).await.0);
    }
    for key in &keys {
        assert_eq!(chat(&gw, key, "gpt-4o-mini", false).await, 200);
    }
    // Over its rpm: refused by the key's limits, counted as the key's 4xx.
    assert_eq!(chat(&gw, &keys[0], "gpt-4o-mini", false).await, 429);
    // A routed request that the upstream fails: a 5xx in the route's series.
    oa.push_fault(
        Fault::always(FaultKind::Status {
            status: 500,
            body: None,
            retry_after: None,
        })
        .times(4),
    );
    assert_eq!(chat(&gw, KEY, "gpt-4o-mini", false).await.as_u16() / 100, 5);

    let m = gw.metrics().await;
    for series in [
        "llmux_requests_total{channel=\"oa\",model=\"gpt-4o-mini\",provider=\"openai\",status=\"2xx\"} 4",
        "llmux_requests_total{channel=\"oa\",model=\"gpt-4o-mini\",provider=\"openai\",status=\"5xx\"} 1",
        "llmux_key_requests_total{key=\"k1\",status=\"2xx\",team=\"\"} 1",
        "llmux_key_requests_total{key=\"k1\",status=\"4xx\",team=\"\"} 1",
        "llmux_key_requests_total{key=\"k2\",status=\"2xx\",team=\"\"} 1",
        "llmux_key_requests_total{key=\"other\",status=\"2xx\",team=\"\"} 2",
        "llmux_key_requests_total{key=\"other\",status=\"5xx\",team=\"\"} 1",
        "llmux_key_tokens_total{key=\"k1\",kind=\"input\",team=\"\"}",
        "llmux_key_tokens_total{key=\"other\",kind=\"output\",team=\"\"}",
        "process_cpu_seconds_total ",
        "process_resident_memory_bytes ",
    ] {
        assert!(m.contains(series), "missing {series} in\n{m}");
    }
    for name in ["k3", "k4", "server.api_keys[0]"] {
        assert!(
            !m.contains(&format!("key=\"{name}\"")),
            "{name} is past the guard:\n{m}"
        );
    }
    let key_series = m
        .lines()
        .filter(|l| l.starts_with("llmux_key_requests_total{"))
        .count();
    assert_eq!(key_series, 5, "{m}");
}
