//! The request log records method, path, query, headers, body and the answered status, in arrival order.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{send, OPENAI_KEY};
use serde_json::json;

#[tokio::test]
async fn log_records_headers_body_and_status() {
    let emu = common::openai().await;
    let auth = format!("Bearer {OPENAI_KEY}");
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).to_string();
    let url = format!("{}/chat/completions?trace=1", emu.base_url());
    let before = tokio::time::Instant::now();
    send(
        "POST",
        &url,
        &[("Authorization", &auth), ("X-Custom-Thing", "yes")],
        &body,
    )
    .await;
    send(
        "GET",
        &format!("{}/models", emu.base_url()),
        &[("authorization", &auth)],
        "",
    )
    .await;

    let log = emu.requests();
    assert_eq!(log.len(), 2);
    let first = &log[0];
    assert_eq!(first.method, "POST");
    assert_eq!(first.path, "/v1/chat/completions");
    assert_eq!(first.query.as_deref(), Some("trace=1"));
    assert_eq!(first.header("x-custom-thing"), Some("yes"));
    assert_eq!(first.header("AUTHORIZATION"), Some(auth.as_str()));
    assert_eq!(first.body.as_ref(), body.as_bytes());
    assert_eq!(first.json().unwrap()["model"], "m");
    assert_eq!(first.status, 200);
    assert!(first.at >= before);
    assert!(log[1].at >= first.at);
    assert_eq!(log[1].method, "GET");
    assert!(log[1].json().is_none());

    emu.clear_requests();
    assert!(emu.requests().is_empty());
}

#[tokio::test]
async fn base_urls_follow_vendor_shapes() {
    let oa = common::openai().await;
    assert_eq!(oa.base_url(), format!("http://{}/v1", oa.addr()));
    assert_eq!(oa.compat_base_url(), None);
    let ds = common::dashscope().await;
    assert_eq!(ds.base_url(), format!("http://{}/api/v1", ds.addr()));
    assert_eq!(
        ds.compat_base_url(),
        Some(format!("http://{}/compatible-mode/v1", ds.addr()))
    );
    assert!(ds.addr().ip().is_loopback());
}
