//! Authentication: wrong or missing keys get each vendor's own 401 body; configured keys pass.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{post, send};
use llmux_emulator::{Emulator, EmulatorConfig, Vendor};
use serde_json::json;

fn hello() -> serde_json::Value {
    json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
}

#[tokio::test]
async fn openai_rejects_wrong_and_missing_keys() {
    let emu = Emulator::start(EmulatorConfig::new(Vendor::OpenAi).with_keys(["sk-a", "sk-b"]))
        .await
        .unwrap();
    let url = format!("{}/chat/completions", emu.base_url());
    assert_eq!(post(&url, "sk-b", &hello()).await.status, 200);

    let r = post(&url, "sk-proj-abcdefghijkl1234", &hello()).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.json(),
        json!({"error": {"message": "Incorrect API key provided: sk-*****************1234.",
                         "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}})
    );
    let r = post(&url, "sk-bad", &hello()).await;
    assert_eq!(
        r.json()["error"]["message"],
        "Incorrect API key provided: sk-bad."
    );

    let r = send(
        "POST",
        &url,
        &[("content-type", "application/json")],
        &hello().to_string(),
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["type"], "invalid_request_error");
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("You didn't provide an API key"));

    let r = send(
        "GET",
        &format!("{}/models", emu.base_url()),
        &[("authorization", "Basic sk-a")],
        "",
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(
        emu.requests().iter().map(|r| r.status).collect::<Vec<_>>(),
        [200, 401, 401, 401, 401]
    );
}

#[tokio::test]
async fn dashscope_native_and_compat_reject_wrong_keys() {
    let emu = common::dashscope().await;
    let native = format!(
        "{}/services/aigc/text-generation/generation",
        emu.base_url()
    );
    let r = post(
        &native,
        "sk-wrong",
        &json!({"model": "qwen-plus", "input": {"prompt": "hi"}}),
    )
    .await;
    assert_eq!(r.status, 401);
    let j = r.json();
    assert_eq!(j["code"], "InvalidApiKey");
    assert_eq!(j["message"], "Invalid API-key provided.");
    assert_eq!(j["request_id"], r.header("x-request-id").unwrap());
    assert_eq!(j["request_id"], "00000000-0000-4000-8000-000000000001");

    let compat = format!("{}/chat/completions", emu.compat_base_url().unwrap());
    let r = send("POST", &compat, &[], &hello().to_string()).await;
    assert_eq!(r.status, 401);
    let j = r.json();
    assert_eq!(j["error"]["code"], "invalid_api_key");
    assert_eq!(j["request_id"], "00000000-0000-4000-8000-000000000002");
}

#[test]
fn config_debug_redacts_keys() {
    let cfg = EmulatorConfig::new(Vendor::DashScope).with_keys(["sk-very-secret"]);
    let dbg = format!("{cfg:?}");
    assert!(!dbg.contains("sk-very-secret"), "{dbg}");
    assert!(dbg.contains("redacted"));
}
