//! Replays every exchange captured from the official SDKs and checks status, content type, framing and shape.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{frames, same_shape, send, Frame};
use llmux_emulator::{Emulator, EmulatorConfig, Fault, FaultKind, Vendor};
use serde_json::Value;

fn load(path: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    v["cases"].as_array().unwrap().clone()
}

/// Content types match when their media types (before `;`) are equal, case-insensitively.
fn media(ct: &str) -> String {
    ct.split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

fn data_frames(fs: &[Frame]) -> Vec<&Frame> {
    fs.iter()
        .filter(|f| f.data().is_some_and(|d| d != "[DONE]"))
        .collect()
}

/// Compares two SSE bodies: same frame layout (fields and comments), same first and last frames' layout and event
/// names, every emulator data frame shaped like some captured data frame, same ending.
fn check_stream(case: &str, expected: &str, actual: &str) {
    let ef = frames(expected);
    let af = frames(actual);
    assert!(!af.is_empty(), "{case}: empty stream");
    let layouts = |fs: &[Frame]| {
        let mut l: Vec<Vec<String>> = fs.iter().map(Frame::layout).collect();
        l.dedup();
        l.sort();
        l.dedup();
        l
    };
    assert_eq!(layouts(&ef), layouts(&af), "{case}: frame layouts differ");
    assert_eq!(
        ef.first().unwrap().field("event"),
        af.first().unwrap().field("event"),
        "{case}: first event name"
    );
    let e_data = data_frames(&ef);
    let a_data = data_frames(&af);
    for (i, a) in a_data.iter().enumerate() {
        let aj = a.json();
        let ok = e_data.iter().any(|e| same_shape(&e.json(), &aj).is_ok());
        assert!(ok, "{case}: frame {i} has no captured counterpart: {aj}");
    }
    same_shape(&e_data[0].json(), &a_data[0].json())
        .unwrap_or_else(|e| panic!("{case}: first frame: {e}"));
    same_shape(
        &e_data.last().unwrap().json(),
        &a_data.last().unwrap().json(),
    )
    .unwrap_or_else(|e| panic!("{case}: last frame: {e}"));
    // Ends the same way: `[DONE]` for OpenAI, a final finish_reason other than "null" for DashScope.
    let e_last = ef.last().unwrap();
    let a_last = af.last().unwrap();
    if e_last.data() == Some("[DONE]") {
        assert_eq!(
            a_last.data(),
            Some("[DONE]"),
            "{case}: must end with [DONE]"
        );
    } else {
        assert_ne!(
            a_last.data(),
            Some("[DONE]"),
            "{case}: must not send [DONE]"
        );
        assert_eq!(
            e_last.field("event"),
            a_last.field("event"),
            "{case}: last event"
        );
    }
}

async fn replay(vendor: Vendor, file: &str, good_key: &str) {
    for case in load(file) {
        let name = case["name"].as_str().unwrap().to_owned();
        let emu = Emulator::start(EmulatorConfig::new(vendor).with_keys([good_key]))
            .await
            .unwrap();
        if name == "stream_error_event" {
            emu.push_fault(Fault::once(FaultKind::ErrorEvent { after: 1 }));
        }
        for ex in case["exchanges"].as_array().unwrap() {
            let headers: Vec<(String, String)> = ex["headers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| {
                    (
                        h[0].as_str().unwrap().to_owned(),
                        h[1].as_str().unwrap().to_owned(),
                    )
                })
                .filter(|(n, _)| {
                    !["host", "content-length", "connection", "accept-encoding"]
                        .contains(&n.to_ascii_lowercase().as_str())
                })
                .collect();
            let hs: Vec<(&str, &str)> = headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            let url = format!("{}{}", emu.root_url(), ex["path"].as_str().unwrap());
            let body = ex["body_raw"].as_str().unwrap_or_default();
            let got = send(ex["method"].as_str().unwrap(), &url, &hs, body).await;
            let want = &ex["response"];
            assert_eq!(
                u64::from(got.status),
                want["status"].as_u64().unwrap(),
                "{name}: status; body {:?}",
                got.body
            );
            let want_ct = want["content_type"].as_str().unwrap();
            assert_eq!(
                media(&got.content_type),
                media(want_ct),
                "{name}: content type"
            );
            let want_body = want["body"].as_str().unwrap();
            if media(want_ct) == "text/event-stream" {
                check_stream(&name, want_body, got.text());
            } else {
                let expected: Value = serde_json::from_str(want_body).unwrap();
                same_shape(&expected, &got.json()).unwrap_or_else(|e| panic!("{name}: {e}"));
            }
            // The request log saw exactly what was sent.
            let log = emu.requests();
            let last = log.last().unwrap();
            assert_eq!(last.body.as_ref(), body.as_bytes(), "{name}: logged body");
            assert_eq!(u64::from(last.status), want["status"].as_u64().unwrap());
        }
    }
}

#[tokio::test]
async fn replays_openai_sdk_capture() {
    replay(
        Vendor::OpenAi,
        "fixtures/openai/sdk_capture.json",
        "sk-test-openai-0000",
    )
    .await;
}

#[tokio::test]
async fn replays_dashscope_sdk_capture() {
    replay(
        Vendor::DashScope,
        "fixtures/dashscope/sdk_capture.json",
        "sk-test-dashscope-0001",
    )
    .await;
}
