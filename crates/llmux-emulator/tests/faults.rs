//! Every fault kind, fault matching and counting, timing under paused tokio time, and the HTTP control surface.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{frames, post, post_dashscope_sse, send, DASHSCOPE_KEY, OPENAI_KEY};
use futures::StreamExt as _;
use llmux_emulator::{Emulator, EmulatorConfig, Fault, FaultKind, Vendor};
use serde_json::{json, Value};

fn chat(emu: &Emulator) -> String {
    format!("{}/chat/completions", emu.base_url())
}

fn ds_gen(emu: &Emulator) -> String {
    format!(
        "{}/services/aigc/text-generation/generation",
        emu.base_url()
    )
}

fn hello() -> Value {
    json!({"model": "m", "messages": [{"role": "user", "content": "a b c"}]})
}

fn hello_stream() -> Value {
    json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "a b c"}]})
}

fn ds_hello() -> Value {
    json!({"model": "qwen-plus", "input": {"prompt": "a b c"}, "parameters": {"incremental_output": true}})
}

/// Reads a streamed body chunk by chunk; returns what arrived and whether the body ended with an error.
async fn read_until_error(url: &str, body: &Value) -> (String, bool) {
    let resp = common::client()
        .post(url)
        .header("authorization", format!("Bearer {OPENAI_KEY}"))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(b) => got.extend_from_slice(&b),
            Err(_) => return (String::from_utf8(got).unwrap(), true),
        }
    }
    (String::from_utf8(got).unwrap(), false)
}

#[tokio::test]
async fn status_fault_uses_vendor_body_retry_after_and_counts_down() {
    let emu = common::openai().await;
    emu.push_fault(
        Fault::once(FaultKind::Status {
            status: 429,
            body: None,
            retry_after: Some("2".into()),
        })
        .times(2),
    );
    for _ in 0..2 {
        let r = post(&chat(&emu), OPENAI_KEY, &hello()).await;
        assert_eq!(r.status, 429);
        assert_eq!(r.header("retry-after"), Some("2"));
        assert_eq!(r.json()["error"]["code"], "rate_limit_exceeded");
    }
    assert_eq!(post(&chat(&emu), OPENAI_KEY, &hello()).await.status, 200);
    let statuses: Vec<u16> = emu.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [429, 429, 200]);

    let ds = common::dashscope().await;
    ds.push_fault(Fault::once(FaultKind::Status {
        status: 500,
        body: None,
        retry_after: None,
    }));
    let r = post(&ds_gen(&ds), DASHSCOPE_KEY, &ds_hello()).await;
    assert_eq!(r.status, 500);
    assert_eq!(r.json()["code"], "InternalError");
    assert!(r.json()["request_id"].is_string());
    ds.push_fault(Fault::once(FaultKind::Status {
        status: 429,
        body: Some("slow down".into()),
        retry_after: None,
    }));
    let r = post(&ds_gen(&ds), DASHSCOPE_KEY, &ds_hello()).await;
    assert_eq!((r.status, r.text()), (429, "slow down"));
}

#[tokio::test]
async fn html_fault_is_a_proxy_page() {
    let emu = common::dashscope().await;
    emu.push_fault(Fault::once(FaultKind::Html { status: 502 }));
    let r = post(&ds_gen(&emu), DASHSCOPE_KEY, &ds_hello()).await;
    assert_eq!(r.status, 502);
    assert_eq!(r.content_type, "text/html");
    assert!(r.text().contains("502 Bad Gateway"));
}

#[tokio::test]
async fn quota_exhausted_per_vendor() {
    let oa = common::openai().await;
    oa.push_fault(Fault::once(FaultKind::QuotaExhausted));
    let r = post(&chat(&oa), OPENAI_KEY, &hello()).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["error"]["type"], "insufficient_quota");
    assert_eq!(r.json()["error"]["code"], "insufficient_quota");

    let ds = common::dashscope().await;
    ds.push_fault(Fault::always(FaultKind::QuotaExhausted));
    let r = post(&ds_gen(&ds), DASHSCOPE_KEY, &ds_hello()).await;
    assert_eq!(
        (r.status, r.json()["code"].clone()),
        (400, json!("Arrearage"))
    );
    let compat = format!("{}/chat/completions", ds.compat_base_url().unwrap());
    let r = post(&compat, DASHSCOPE_KEY, &hello()).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["code"], "Arrearage");
    assert!(r.json()["request_id"].is_string());
    ds.clear_faults();
    assert_eq!(post(&compat, DASHSCOPE_KEY, &hello()).await.status, 200);
}

#[tokio::test(start_paused = true)]
async fn delay_first_byte_and_latency_sleep_on_tokio_time() {
    let emu =
        Emulator::start(EmulatorConfig::new(Vendor::OpenAi).with_latency(Duration::from_secs(3)))
            .await
            .unwrap();
    emu.push_fault(Fault::once(FaultKind::DelayFirstByte(Duration::from_secs(
        60,
    ))));
    let start = tokio::time::Instant::now();
    assert_eq!(post(&chat(&emu), OPENAI_KEY, &hello()).await.status, 200);
    assert!(start.elapsed() >= Duration::from_secs(63));
    emu.set_latency(Duration::ZERO);
    let start = tokio::time::Instant::now();
    assert_eq!(post(&chat(&emu), OPENAI_KEY, &hello()).await.status, 200);
    assert!(start.elapsed() < Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn idle_after_and_token_interval_sleep_on_tokio_time() {
    let emu = Emulator::start(
        EmulatorConfig::new(Vendor::OpenAi).with_token_interval(Duration::from_secs(1)),
    )
    .await
    .unwrap();
    emu.push_fault(Fault::once(FaultKind::IdleAfter {
        after: 2,
        pause: Duration::from_secs(100),
    }));
    let start = tokio::time::Instant::now();
    let r = post(&chat(&emu), OPENAI_KEY, &hello_stream()).await;
    // 8 frames (role, 5 pieces, finish, [DONE]): 7 token intervals plus the 100 s stall.
    let n = frames(r.text()).len() as u64;
    assert_eq!(n, 8);
    let elapsed = start.elapsed();
    assert!(elapsed >= Duration::from_secs(100 + n - 1), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(100 + n + 1), "{elapsed:?}");
}

#[tokio::test]
async fn stream_cut_drops_the_connection_mid_body() {
    let emu = common::openai().await;
    emu.push_fault(Fault::once(FaultKind::StreamCutAfter(2)));
    let (got, errored) = read_until_error(&chat(&emu), &hello_stream()).await;
    assert!(errored, "the body must end with an error");
    assert_eq!(frames(&got).len(), 2);
    assert!(!got.contains("[DONE]"));

    // Non-stream: half the body, then the connection drops.
    emu.push_fault(Fault::once(FaultKind::StreamCutAfter(0)));
    let r = post(&chat(&emu), OPENAI_KEY, &hello()).await;
    assert_eq!(r.status, 200);
    assert!(r.body.is_err());
    assert_eq!(emu.requests().last().unwrap().status, 200);
}

#[tokio::test]
async fn malformed_frame_is_not_json() {
    let emu = common::openai().await;
    emu.push_fault(Fault::once(FaultKind::MalformedFrame { after: 1 }));
    let fs = frames(post(&chat(&emu), OPENAI_KEY, &hello_stream()).await.text());
    assert!(serde_json::from_str::<Value>(fs[1].data().unwrap()).is_err());
    assert_eq!(fs.last().unwrap().data(), Some("[DONE]"));

    let ds = common::dashscope().await;
    ds.push_fault(Fault::once(FaultKind::MalformedFrame { after: 0 }));
    let fs = frames(post_dashscope_sse(&ds_gen(&ds), &ds_hello()).await.text());
    assert_eq!(fs[0].field("id"), Some("1"));
    assert!(serde_json::from_str::<Value>(fs[0].data().unwrap()).is_err());
}

#[tokio::test]
async fn error_event_mid_stream_per_vendor() {
    let emu = common::openai().await;
    emu.push_fault(Fault::once(FaultKind::ErrorEvent { after: 2 }));
    let fs = frames(post(&chat(&emu), OPENAI_KEY, &hello_stream()).await.text());
    assert_eq!(fs.len(), 3);
    assert_eq!(fs[2].json()["error"]["type"], "server_error");

    let ds = common::dashscope().await;
    ds.push_fault(Fault::once(FaultKind::ErrorEvent { after: 1 }));
    let r = post_dashscope_sse(&ds_gen(&ds), &ds_hello()).await;
    assert_eq!(r.status, 200);
    let fs = frames(r.text());
    assert_eq!(fs.len(), 2);
    assert_eq!(fs[1].layout(), ["id", "event", ":HTTP_STATUS/400", "data"]);
    assert_eq!(fs[1].field("id"), Some("2"));
    assert_eq!(fs[1].field("event"), Some("error"));
    assert_eq!(fs[1].json()["code"], "DataInspectionFailed");

    // On a non-stream request it is the vendor's moderation error.
    ds.push_fault(Fault::once(FaultKind::ErrorEvent { after: 1 }));
    let r = post(&ds_gen(&ds), DASHSCOPE_KEY, &ds_hello()).await;
    assert_eq!(
        (r.status, r.json()["code"].clone()),
        (400, json!("DataInspectionFailed"))
    );
}

#[tokio::test]
async fn error_body_with_status_200() {
    let emu = common::openai().await;
    emu.push_fault(Fault::once(FaultKind::ErrorBody200));
    let r = post(&chat(&emu), OPENAI_KEY, &hello()).await;
    assert_eq!(r.status, 200);
    assert!(r.json()["error"]["message"].is_string());
    let ds = common::dashscope().await;
    ds.push_fault(Fault::once(FaultKind::ErrorBody200));
    let r = post(&ds_gen(&ds), DASHSCOPE_KEY, &ds_hello()).await;
    assert_eq!(
        (r.status, r.json()["code"].clone()),
        (200, json!("InternalError"))
    );
}

#[tokio::test]
async fn faults_match_paths_in_queue_order() {
    let emu = common::openai().await;
    emu.push_fault(Fault::once(FaultKind::Html { status: 503 }).on_path("/embeddings"));
    emu.push_fault(Fault::once(FaultKind::Html { status: 502 }));
    assert_eq!(post(&chat(&emu), OPENAI_KEY, &hello()).await.status, 502);
    assert_eq!(post(&chat(&emu), OPENAI_KEY, &hello()).await.status, 200);
    let emb = format!("{}/embeddings", emu.base_url());
    let r = post(
        &emb,
        OPENAI_KEY,
        &json!({"model": "text-embedding-3-small", "input": "x"}),
    )
    .await;
    assert_eq!(r.status, 503);
}

#[test]
fn fault_json_shapes_round_trip() {
    let cases = [
        (
            FaultKind::Status {
                status: 429,
                body: None,
                retry_after: Some("2".into()),
            },
            json!({"type": "status", "status": 429, "body": null, "retry_after": "2"}),
        ),
        (
            FaultKind::Html { status: 502 },
            json!({"type": "html", "status": 502}),
        ),
        (
            FaultKind::QuotaExhausted,
            json!({"type": "quota_exhausted"}),
        ),
        (
            FaultKind::DelayFirstByte(Duration::from_millis(500)),
            json!({"type": "delay_first_byte", "ms": 500}),
        ),
        (
            FaultKind::StreamCutAfter(3),
            json!({"type": "stream_cut_after", "after": 3}),
        ),
        (
            FaultKind::MalformedFrame { after: 2 },
            json!({"type": "malformed_frame", "after": 2}),
        ),
        (
            FaultKind::ErrorEvent { after: 1 },
            json!({"type": "error_event", "after": 1}),
        ),
        (FaultKind::ErrorBody200, json!({"type": "error_body_200"})),
        (
            FaultKind::IdleAfter {
                after: 2,
                pause: Duration::from_secs(1),
            },
            json!({"type": "idle_after", "after": 2, "pause_ms": 1000}),
        ),
    ];
    for (kind, wire) in cases {
        assert_eq!(serde_json::to_value(&kind).unwrap(), wire);
        assert_eq!(serde_json::from_value::<FaultKind>(wire).unwrap(), kind);
    }
    let f: Fault = serde_json::from_value(json!({"kind": {"type": "quota_exhausted"}})).unwrap();
    assert_eq!(f, Fault::once(FaultKind::QuotaExhausted));
}

#[tokio::test]
async fn control_surface_drives_faults_and_reads_the_log() {
    let emu = common::openai().await;
    let root = emu.root_url();
    let r = send(
        "POST",
        &format!("{root}/__emulator/faults"),
        &[],
        &json!([{"kind": {"type": "status", "status": 503}, "times": 1, "path_contains": "/chat"}])
            .to_string(),
    )
    .await;
    assert_eq!((r.status, r.json()), (200, json!({"queued": 1})));
    let r = send("GET", &format!("{root}/__emulator/faults"), &[], "").await;
    assert_eq!(r.json()[0]["kind"]["status"], 503);
    assert_eq!(post(&chat(&emu), OPENAI_KEY, &hello()).await.status, 503);

    send(
        "POST",
        &format!("{root}/__emulator/faults"),
        &[],
        &json!({"kind": {"type": "html", "status": 502}, "times": 0}).to_string(),
    )
    .await;
    assert_eq!(
        send("DELETE", &format!("{root}/__emulator/faults"), &[], "")
            .await
            .status,
        204
    );
    assert_eq!(post(&chat(&emu), OPENAI_KEY, &hello()).await.status, 200);
    assert_eq!(
        send(
            "POST",
            &format!("{root}/__emulator/faults"),
            &[],
            "{\"kind\":1}"
        )
        .await
        .status,
        400
    );

    let log = send("GET", &format!("{root}/__emulator/requests"), &[], "")
        .await
        .json();
    let log = log.as_array().unwrap();
    assert_eq!(log.len(), 2, "control routes are not logged");
    assert_eq!(log[0]["status"], 503);
    assert_eq!(log[1]["path"], "/v1/chat/completions");
    assert_eq!(
        serde_json::from_str::<Value>(log[1]["body"].as_str().unwrap()).unwrap(),
        hello()
    );
    assert!(log[1]["headers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|h| h[0] == "authorization"));

    assert_eq!(
        send("DELETE", &format!("{root}/__emulator/requests"), &[], "")
            .await
            .status,
        204
    );
    assert!(emu.requests().is_empty());
    assert_eq!(
        send(
            "PUT",
            &format!("{root}/__emulator/latency"),
            &[],
            "{\"ms\":0}"
        )
        .await
        .status,
        204
    );
}

#[tokio::test(start_paused = true)]
async fn one_clock_takes_ms_and_secs_offsets_and_follows_tokio_time() {
    let emu = Emulator::start(EmulatorConfig::new(Vendor::OpenAi).with_clock_offset_ms(1_500))
        .await
        .unwrap();
    assert_eq!(emu.clock_offset_ms(), 1_500);
    let t0 = emu.now_unix_ms();
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(emu.now_unix_ms() - t0, 10_000);
    emu.set_clock_offset(-2);
    assert_eq!(emu.clock_offset_ms(), -2_000);
    assert_eq!(emu.now_unix_ms() - t0, 10_000 - 3_500);

    let url = format!("{}/__emulator/clock", emu.root_url());
    assert_eq!(
        send("PUT", &url, &[], r#"{"offset_secs": 3}"#).await.status,
        204
    );
    assert_eq!(emu.clock_offset_ms(), 3_000);
    assert_eq!(
        send("PUT", &url, &[], r#"{"offset_ms": -250}"#)
            .await
            .status,
        204
    );
    let r = send("GET", &url, &[], "").await;
    assert_eq!(r.json()["offset_ms"], -250);
    assert!(r.json()["unix_ms"].as_i64().unwrap() >= t0 + 10_000 - 1_750);
    assert_eq!(send("PUT", &url, &[], r#"{"offset": 1}"#).await.status, 400);

    // `created` comes from the same clock.
    emu.set_clock_offset_ms(-86_400_000);
    let before = emu.now_unix_ms() / 1000;
    let created = post(&chat(&emu), OPENAI_KEY, &hello()).await.json()["created"]
        .as_i64()
        .unwrap();
    assert!((before..=emu.now_unix_ms() / 1000).contains(&created));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashscope_stream_cut_on_a_multi_thread_runtime() {
    let ds = common::dashscope().await;
    ds.push_fault(Fault::once(FaultKind::StreamCutAfter(3)));
    let resp = common::client()
        .post(ds_gen(&ds))
        .header("authorization", format!("Bearer {DASHSCOPE_KEY}"))
        .header("x-dashscope-sse", "enable")
        .body(ds_hello().to_string())
        .send()
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut stream = resp.bytes_stream();
    let mut errored = false;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(b) => got.extend_from_slice(&b),
            Err(_) => {
                errored = true;
                break;
            }
        }
    }
    assert!(errored);
    let fs = frames(std::str::from_utf8(&got).unwrap());
    assert_eq!(fs.len(), 3);
    assert!(fs
        .iter()
        .all(|f| f.json()["output"]["finish_reason"] == "null"));
}
