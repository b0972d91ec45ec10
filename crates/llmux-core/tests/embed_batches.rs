//! Issue 18, part 2: `Client::embed` splits an input longer than the provider's documented
//! batch limit, sends the batches and joins their answers in order. The emulators refuse an
//! oversized batch as the vendors do, so every success here proves the split.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use llmux_core::providers::ProviderSettings;
use llmux_core::resilience::RetryPolicy;
use llmux_core::*;
use llmux_emulator::{Emulator, EmulatorConfig, Fault, FaultKind, Vendor};

async fn setup(vendor: Vendor) -> (Emulator, Client) {
    let emu = Emulator::start(EmulatorConfig::new(vendor)).await.unwrap();
    let mut b = Client::builder()
        .without_env()
        .retry(RetryPolicy::none())
        .breaker(None);
    for id in vendor.provider_ids() {
        let Some(base) = emu.base_url_for(id) else {
            continue;
        };
        b = b.provider(
            id,
            ProviderSettings::with_api_key(vendor.default_key()).base_url(base),
        );
    }
    (emu, b.build().unwrap())
}

fn texts(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("text number {i} 文本")).collect()
}

/// The texts of each request the emulator received, in order (a lone text may be sent as a
/// string).
fn batches(emu: &Emulator, pointer: &str) -> Vec<Vec<String>> {
    emu.requests()
        .iter()
        .map(|r| match r.json().unwrap().pointer(pointer).unwrap() {
            serde_json::Value::String(one) => vec![one.clone()],
            many => many
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_str().unwrap().to_owned())
                .collect(),
        })
        .collect()
}

/// Vectors for `input` sent one text at a time: what each joined vector must equal.
async fn one_by_one(client: &Client, model: &str, input: &[String], at: &[usize]) -> Vec<Vec<f32>> {
    let mut out = Vec::new();
    for &i in at {
        let r = client
            .embed(EmbeddingRequest::new(model, vec![input[i].clone()]))
            .await
            .unwrap();
        out.push(r.data[0].vector.clone());
    }
    out
}

#[tokio::test]
async fn issue_18_embedding_25_texts_through_dashscope_v3_goes_in_batches_of_at_most_10() {
    let (emu, client) = setup(Vendor::DashScope).await;
    let input = texts(25);
    let r = client
        .embed(EmbeddingRequest::new(
            "dashscope/text-embedding-v3",
            input.clone(),
        ))
        .await
        .unwrap();
    let sent = batches(&emu, "/input/texts");
    assert_eq!(sent.iter().map(Vec::len).collect::<Vec<_>>(), [10, 10, 5]);
    assert_eq!(sent.concat(), input, "every text sent once, in order");
    assert!(emu.requests().iter().all(|r| r.status == 200));
    assert_eq!(
        r.data.iter().map(|d| d.index).collect::<Vec<_>>(),
        (0..25).collect::<Vec<u32>>()
    );
    // Usage is the sum of the batches' (the emulator counts each text's pieces).
    let mut per_batch = 0;
    for chunk in input.chunks(10) {
        per_batch += client
            .embed(EmbeddingRequest::new(
                "dashscope/text-embedding-v3",
                chunk.to_vec(),
            ))
            .await
            .unwrap()
            .usage
            .unwrap()
            .input_tokens;
    }
    assert_eq!(r.usage.unwrap().input_tokens, per_batch);
    // Each vector belongs to its own text, across batch boundaries.
    emu.clear_requests();
    let at = [0, 9, 10, 19, 20, 24];
    let alone = one_by_one(&client, "dashscope/text-embedding-v3", &input, &at).await;
    for (v, &i) in alone.iter().zip(&at) {
        assert_eq!(&r.data[i].vector, v, "text {i}");
    }
}

#[tokio::test]
async fn issue_18_dashscope_v2_batches_25_and_compatible_mode_10() {
    let (emu, client) = setup(Vendor::DashScope).await;
    let r = client
        .embed(EmbeddingRequest::new(
            "dashscope/text-embedding-v2",
            texts(30),
        ))
        .await
        .unwrap();
    assert_eq!(r.data.len(), 30);
    let sent = batches(&emu, "/input/texts");
    assert_eq!(sent.iter().map(Vec::len).collect::<Vec<_>>(), [25, 5]);

    emu.clear_requests();
    let r = client
        .embed(EmbeddingRequest::new(
            "dashscope-compat/text-embedding-v4",
            texts(21),
        ))
        .await
        .unwrap();
    assert_eq!(
        r.data.iter().map(|d| d.index).collect::<Vec<_>>(),
        (0..21).collect::<Vec<u32>>()
    );
    let sent = batches(&emu, "/input");
    assert_eq!(sent.iter().map(Vec::len).collect::<Vec<_>>(), [10, 10, 1]);
    assert_eq!(sent.concat(), texts(21));
}

#[tokio::test]
async fn issue_18_gemini_batch_embeds_at_most_100_requests() {
    let (emu, client) = setup(Vendor::Gemini).await;
    let r = client
        .embed(EmbeddingRequest::new(
            "gemini/gemini-embedding-001",
            texts(230),
        ))
        .await
        .unwrap();
    assert_eq!(r.data.len(), 230);
    assert_eq!(r.data[229].index, 229);
    let sizes: Vec<usize> = emu
        .requests()
        .iter()
        .map(|r| r.json().unwrap()["requests"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, [100, 100, 30]);
}

#[tokio::test]
async fn issue_18_a_failed_batch_fails_the_whole_call() {
    let (emu, client) = setup(Vendor::DashScope).await;
    emu.push_fault(Fault::once(FaultKind::Status {
        status: 500,
        body: None,
        retry_after: None,
    }));
    let err = client
        .embed(EmbeddingRequest::new(
            "dashscope/text-embedding-v3",
            texts(25),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UpstreamServer, "{err}");
    // No partial answer, and the batches after the failure were not all sent.
    let log = emu.requests();
    assert!(log.iter().any(|r| r.status == 500), "{log:?}");
    assert!(log.len() <= 3);
}

#[tokio::test]
async fn issue_18_an_input_within_the_limit_is_one_request() {
    let (emu, client) = setup(Vendor::DashScope).await;
    let r = client
        .embed(EmbeddingRequest::new(
            "dashscope/text-embedding-v3",
            texts(10),
        ))
        .await
        .unwrap();
    assert_eq!(r.data.len(), 10);
    assert_eq!(emu.requests().len(), 1);
}
