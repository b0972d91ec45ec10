//! `llmux tokens`: counts from a file or stdin equal the Python references' counts committed
//! in llmux-core (`tests/reference/expected_counts.json`), `--chat` adds the template overhead,
//! and errors are one line with a non-zero exit.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::run;
use serde_json::Value;

fn reference(file: &str) -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../llmux-core/tests/reference/"
    );
    serde_json::from_str(&std::fs::read_to_string(format!("{path}{file}")).unwrap()).unwrap()
}

fn last_line(s: &str) -> &str {
    s.lines().last().unwrap_or_default()
}

#[tokio::test]
async fn counts_a_file_or_stdin_like_the_vendor_tokenizers() {
    let corpus = reference("corpus.json");
    let expected = reference("expected_counts.json");
    let dir = tempfile::tempdir().unwrap();
    for (model, encoding) in [
        ("dashscope/qwen-plus", "qwen"),
        ("openai/gpt-4o", "o200k_base"),
        ("openai/gpt-4", "cl100k_base"),
        ("deepseek/deepseek-chat", "deepseek"),
    ] {
        for case in ["chinese-prose", "emoji", "rust-code", "nfc-decomposed"] {
            let text = corpus["cases"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["id"] == case)
                .unwrap()["text"]
                .as_str()
                .unwrap();
            let want = expected["counts"][encoding][case]
                .as_u64()
                .unwrap()
                .to_string();
            let out = run(&["tokens", "-m", model], &[], Some(text)).await;
            assert!(out.status.success(), "{out:#?}");
            assert_eq!(last_line(&out.stdout), want, "{model} {case} from stdin");
            assert!(
                out.stderr.contains(&format!("{encoding} tokenizer")),
                "{out:#?}"
            );

            let file = dir.path().join(format!("{case}.txt"));
            std::fs::write(&file, text).unwrap();
            let out = run(&["tokens", "-m", model, file.to_str().unwrap()], &[], None).await;
            assert_eq!(last_line(&out.stdout), want, "{model} {case} from a file");
        }
    }
}

#[tokio::test]
async fn chat_adds_the_template_overhead() {
    let messages = r#"[{"role":"user","content":"Hello world"}]"#;
    // ChatML: <|im_start|> user \n Hello world <|im_end|> \n = 7, priming <|im_start|> assistant \n = 3.
    let out = run(
        &["tokens", "-m", "dashscope/qwen-plus", "--chat", "-"],
        &[],
        Some(messages),
    )
    .await;
    assert_eq!(out.stdout, "10\n", "{out:#?}");
    // OpenAI: 3 per message + "user" 1 + "Hello world" 2, priming 3.
    let out = run(
        &["tokens", "-m", "openai/gpt-4o", "--chat"],
        &[],
        Some(messages),
    )
    .await;
    assert_eq!(out.stdout, "9\n", "{out:#?}");
    // Plain text with --chat is one user message.
    let out = run(
        &["tokens", "-m", "openai/gpt-4o", "--chat"],
        &[],
        Some("Hello world"),
    )
    .await;
    assert_eq!(out.stdout, "9\n", "{out:#?}");
    let out = run(&["tokens", "-m", "openai/gpt-4o"], &[], Some("Hello world")).await;
    assert_eq!(out.stdout, "2\n", "{out:#?}");
    // DeepSeek: <｜begin▁of▁sentence｜> + <｜User｜> Hello world + <｜Assistant｜> = 1 + 1 + 2 + 1.
    let out = run(
        &["tokens", "-m", "deepseek/deepseek-chat", "--chat"],
        &[],
        Some(messages),
    )
    .await;
    assert_eq!(out.stdout, "5\n", "{out:#?}");
}

#[tokio::test]
async fn providers_without_a_public_tokenizer_get_the_estimate() {
    let out = run(
        &["tokens", "-m", "zhipu/glm-4-flash"],
        &[],
        Some("hello world!你好"),
    )
    .await;
    assert_eq!(out.stdout, "5\n", "{out:#?}");
    assert!(
        out.stderr
            .contains("zhipu/glm-4-flash: ESTIMATE, not an exact count"),
        "{out:#?}"
    );
}

#[tokio::test]
async fn errors_are_one_line_with_a_non_zero_exit() {
    let out = run(&["tokens", "-m", "nope/x"], &[], Some("hi")).await;
    assert!(out.err_line().contains("unknown provider `nope`"));
    let out = run(&["tokens", "-m", "qwen-plus"], &[], Some("hi")).await;
    assert!(out.err_line().contains("provider/model"));
    let out = run(&["tokens", "/nonexistent/file.txt"], &[], None).await;
    assert!(out.err_line().contains("reading /nonexistent/file.txt"));
    let out = run(&["tokens", "--chat"], &[], Some(r#"[{"role":"wizard"}]"#)).await;
    assert!(out.err_line().contains("--chat input"));
}
