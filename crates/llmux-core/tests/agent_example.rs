//! The `agent` example's setup (`examples/agent/setup.rs`, included here) for every registered
//! provider: a model is chosen or a clear error asks for `--model` (never a panic), and the
//! example's agent runs against the provider's emulator to a final answer, or, for a provider
//! whose API cannot carry the tool results (Spark's WebSocket API), stops with `Unsupported`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../examples/agent/setup.rs"]
mod setup;

use llmux_core::providers::REGISTRY;
use llmux_core::{ErrorKind, Message};

#[tokio::test]
async fn the_agent_example_runs_for_every_provider() {
    let mut finished = Vec::new();
    let mut unsupported = Vec::new();
    for spec in REGISTRY {
        let id = spec.id;
        let model = match setup::choose_model(id, None) {
            Ok(m) => m,
            Err(e) => {
                assert_eq!(
                    e,
                    format!(
                        "provider `{id}` has no default or well-known model; name one with --model MODEL"
                    )
                );
                assert!(spec.models.is_empty(), "{id}");
                setup::choose_model(id, Some("emulated-model")).unwrap()
            }
        };
        let (_emu, client) = setup::start(id).await.unwrap();
        let agent = setup::agent(client, id, &model);
        match agent.run(vec![Message::user("Paris")]).await {
            Ok(run) => {
                assert!(
                    run.text().contains("Paris: 18 °C, sunny"),
                    "{id}: {}",
                    run.text()
                );
                finished.push(id);
            }
            Err(e) => {
                let kind = e.as_llm().map(|l| l.kind());
                assert_eq!(kind, Some(ErrorKind::Unsupported), "{id}: {e}");
                unsupported.push(id);
            }
        }
    }
    assert!(
        finished.contains(&"openai") && finished.contains(&"pangu"),
        "{finished:?}"
    );
    // Spark's WebSocket API has no tool role: the run stops when the results would be sent.
    assert_eq!(unsupported, ["spark"]);
    assert_eq!(finished.len() + unsupported.len(), REGISTRY.len());
}

#[test]
fn a_provider_without_a_default_model_asks_for_one() {
    let err = setup::choose_model("pangu", None).unwrap_err();
    assert!(err.contains("name one with --model MODEL"), "{err}");
    assert_eq!(setup::choose_model("pangu", Some(" m1 ")).unwrap(), "m1");
    assert_eq!(
        setup::choose_model("pangu", Some(" ")).unwrap_err(),
        "--model needs a model name"
    );
    assert!(setup::choose_model("nope", None)
        .unwrap_err()
        .starts_with("unknown provider `nope`"));
}
