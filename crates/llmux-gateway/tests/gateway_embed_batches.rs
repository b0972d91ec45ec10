//! Issue 18, part 2, through the gateway: an embeddings request longer than the upstream's
//! documented batch limit is split by the core client and answered whole, in order. The
//! DashScope emulator refuses more than 10 texts for text-embedding-v3, as the vendor does.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::{json, Value};

fn texts(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("document {i}: 你好")).collect()
}

/// The texts of each request the DashScope emulator received.
fn batches(emu: &llmux_emulator::Emulator) -> Vec<Vec<String>> {
    emu.requests()
        .iter()
        .map(|r| {
            r.json().unwrap()["input"]["texts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_str().unwrap().to_owned())
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn issue_18_embedding_25_texts_through_the_openai_ingress_goes_to_dashscope_in_batches_of_10()
{
    let (gw, _oa, ds) = standard().await;
    let input = texts(25);
    let resp = gw
        .post("/v1/embeddings")
        .json(&json!({"model": "text-embedding-v3", "input": input, "encoding_format": "float"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 25);
    for (i, d) in data.iter().enumerate() {
        assert_eq!(d["index"], i);
        assert_eq!(d["embedding"].as_array().unwrap().len(), 1024);
    }
    let sent = batches(&ds);
    assert_eq!(sent.iter().map(Vec::len).collect::<Vec<_>>(), [10, 10, 5]);
    assert_eq!(sent.concat(), input);
    assert!(ds.requests().iter().all(|r| r.status == 200));
    assert!(body["usage"]["prompt_tokens"].as_u64().unwrap() > 0);

    // The vector of a text in the last batch is the one that text gets alone.
    ds.clear_requests();
    let alone: Value = gw
        .post("/v1/embeddings")
        .json(
            &json!({"model": "text-embedding-v3", "input": input[23], "encoding_format": "float"}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(alone["data"][0]["embedding"], data[23]["embedding"]);
}

#[tokio::test]
async fn issue_18_the_dashscope_ingress_embeds_25_texts_in_batches_too() {
    let (gw, _oa, ds) = standard().await;
    let resp = gw
        .post("/api/v1/services/embeddings/text-embedding/text-embedding")
        .json(&json!({"model": "text-embedding-v3", "input": {"texts": texts(25)}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let indexes: Vec<u64> = body["output"]["embeddings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["text_index"].as_u64().unwrap())
        .collect();
    assert_eq!(indexes, (0..25).collect::<Vec<u64>>());
    assert_eq!(
        batches(&ds).iter().map(Vec::len).collect::<Vec<_>>(),
        [10, 10, 5]
    );
}
