//! The context manager on long conversations with tool calls: the fitted request keeps the
//! system prompt, the newest turns and a running summary, never exceeds the window by one token
//! (counted with the model's real tokenizer), and never orphans a tool result.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use llmux_core::context::{
    ContextManager, ContextOptions, Embedder, FitReport, MemoryIndex, Retriever, SqliteIndex,
    Summarizer, SummaryRequest, VectorIndex,
};
use llmux_core::tokenize::{template, Encoding, Tokenizer};
use llmux_core::{ChatRequest, ErrorKind, Message, Role, Tool, ToolCall};

const SYSTEM: &str = "You are a careful travel assistant. 你是一个细心的旅行助手。";

/// A 200-turn conversation; every fifth turn calls one or two tools.
fn conversation(turns: usize) -> ChatRequest {
    let cities = ["杭州", "Beijing", "上海", "Chengdu", "Xi'an", "深圳"];
    let mut msgs = vec![Message::system(SYSTEM)];
    for i in 0..turns {
        let city = cities[i % cities.len()];
        let pad = "and please keep it short ".repeat(i % 4);
        msgs.push(Message::user(format!(
            "Turn {i}: what should I see in {city}? 我想去{city}玩 {} 天, {pad}🙂",
            i % 7 + 1
        )));
        if i % 5 == 0 {
            let mut call = Message::assistant("");
            let n = 1 + i % 2;
            for k in 0..n {
                call.tool_calls.push(ToolCall {
                    id: format!("call_{i}_{k}"),
                    name: "get_weather".into(),
                    arguments: format!(r#"{{"city":"{city}","day":{k}}}"#),
                });
            }
            msgs.push(call);
            for k in 0..n {
                msgs.push(Message::tool_result(
                    format!("call_{i}_{k}"),
                    format!(
                        r#"{{"city":"{city}","day":{k},"forecast":"晴","high_c":{}}}"#,
                        20 + i % 10
                    ),
                ));
            }
        }
        msgs.push(Message::assistant(format!(
            "In {city} ({i}) visit the old town, the museum and the night market. 推荐: 西湖、博物馆、夜市。 {}",
            "Bring an umbrella. ".repeat(i % 3)
        )));
    }
    let mut req = ChatRequest::new("dashscope/qwen-plus", msgs);
    req.tools.push(Tool {
        name: "get_weather".into(),
        description: Some("Weather forecast for a city".into()),
        parameters: serde_json::json!({"type":"object","properties":{"city":{"type":"string"},"day":{"type":"integer"}}}),
        strict: None,
    });
    req
}

/// A deterministic summarizer that records what it was asked.
#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<(Option<String>, usize)>>,
}

impl Summarizer for Recorder {
    fn summarize<'a>(&'a self, r: SummaryRequest<'a>) -> BoxFuture<'a, llmux_core::Result<String>> {
        let mut calls = self.calls.lock().unwrap();
        calls.push((r.previous.map(str::to_owned), r.messages.len()));
        let n = calls.len();
        let text = format!(
            "[summary {n}] The user asked about {} earlier messages; 用户问了天气和景点。",
            r.messages.len()
        );
        Box::pin(async move { Ok(text) })
    }
}

/// Checks the invariants; returns the index in the conversation where the kept turns start.
fn check(tk: &Tokenizer, conv: &ChatRequest, fitted: &ChatRequest, report: &FitReport) -> usize {
    let counted = tk.count_request(fitted);
    assert_eq!(counted, report.prompt_tokens);
    assert!(counted <= report.limit, "{counted} > {}", report.limit);
    // System prompt kept verbatim at the start.
    assert_eq!(fitted.messages[0].role, Role::System);
    assert!(fitted.messages[0].content.text().starts_with(SYSTEM));
    // The rest is a suffix of the conversation, ending with its newest message.
    let kept = &fitted.messages[1..];
    let cut = conv.messages.len() - kept.len();
    assert_eq!(kept, &conv.messages[cut..]);
    // No orphan: every tool result answers a call in the request, every call has its results.
    let mut calls = HashSet::new();
    for (i, m) in fitted.messages.iter().enumerate() {
        for c in &m.tool_calls {
            calls.insert(c.id.clone());
            assert!(
                fitted.messages[i + 1..]
                    .iter()
                    .any(|r| r.tool_call_id.as_deref() == Some(&c.id)),
                "call {} lost its result",
                c.id
            );
        }
        if m.role == Role::Tool {
            assert!(
                calls.contains(m.tool_call_id.as_deref().unwrap()),
                "orphan tool result {:?}",
                m.tool_call_id
            );
        }
    }
    // Kept turns start at a user message unless the window only holds turns without one.
    assert!(kept[0].role == Role::User || kept.iter().all(|m| m.role != Role::User));
    cut
}

#[tokio::test]
async fn two_hundred_turns_fit_8k_with_system_prompt_newest_turns_and_summary() {
    let conv = conversation(200);
    for model in ["dashscope/qwen-plus", "openai/gpt-4o", "zhipu/glm-4-flash"] {
        let tk = Tokenizer::for_model(model).unwrap();
        let summarizer = Arc::new(Recorder::default());
        let cm = ContextManager::new(tk).with_summarizer(summarizer.clone());
        let (fitted, report) = cm.fit_with_report(&conv, 8192, 1024).await.unwrap();
        let cut = check(&tk, &conv, &fitted, &report);
        assert!(report.dropped_messages > 300, "{model}: {report:?}");
        assert_eq!(report.dropped_messages, cut - 1);
        assert!(fitted.messages[0]
            .content
            .text()
            .contains("Summary of the earlier conversation:\n[summary 1]"));
        assert_eq!(*summarizer.calls.lock().unwrap(), [(None, cut - 1)]);
        // The conversation was far over the window; after the overflow the kept turns take
        // about half the room left for turns, so the next turns fit without a new summary.
        assert!(
            tk.count_request(&conv) > 8192 * 2,
            "{}",
            tk.count_request(&conv)
        );
        assert!(
            report.prompt_tokens > (7168 - 1024) / 2 - 200,
            "{model}: {report:?}"
        );
        assert!(report.prompt_tokens < 7168 - 1024, "{model}: {report:?}");
    }
}

#[tokio::test]
async fn exact_counts_for_qwen_match_the_rendered_chatml() {
    let conv = conversation(200);
    let tk = Tokenizer::for_model("dashscope/qwen-plus").unwrap();
    let cm = ContextManager::new(tk).with_summarizer(Arc::new(Recorder::default()));
    let (fitted, report) = cm.fit_with_report(&conv, 8192, 1024).await.unwrap();
    // Independently: render the whole request as ChatML and tokenize it in one go.
    let rendered: String = fitted
        .messages
        .iter()
        .map(template::render_chatml)
        .collect::<String>()
        + template::CHATML_PRIMING;
    let whole = Encoding::Qwen.encode_template(&rendered).unwrap().len() as u64;
    let tools = tk.count_text(&template::render_chatml_tools(&conv.tools));
    assert_eq!(report.prompt_tokens, whole + tools);
    // Pinned numbers: a change in tokenizer, template or policy shows up here. 3070 of 7168:
    // after an overflow the kept turns take half of what the summary reserve (1024) leaves,
    // and this summary is 23 tokens.
    assert_eq!(
        (
            report.prompt_tokens,
            report.kept_messages,
            report.dropped_messages,
            report.summary_tokens
        ),
        (3070, 72, 429, 23)
    );
    assert_eq!(fitted.messages.len(), 72);
}

#[tokio::test]
async fn never_exceeds_the_window_by_one_token() {
    let conv = conversation(12);
    let tk = Tokenizer::for_model("dashscope/qwen-plus").unwrap();
    let full = tk.count_request(&conv);
    // At exactly the full size nothing is dropped; one token less and something must go.
    let cm = ContextManager::new(tk);
    let (same, r) = cm.fit_with_report(&conv, full + 10, 10).await.unwrap();
    assert_eq!(same, conv);
    assert_eq!(r.prompt_tokens, full);
    let (_, r) = cm.fit_with_report(&conv, full - 1 + 10, 10).await.unwrap();
    assert!(r.dropped_messages > 0 && r.prompt_tokens < full);
    // Every window from tiny to full: within the limit, exactly counted, no orphans.
    for model in [
        "dashscope/qwen-plus",
        "openai/gpt-4o-mini",
        "deepseek/deepseek-reasoner",
        "hunyuan/hunyuan-lite",
    ] {
        let tk = Tokenizer::for_model(model).unwrap();
        let full = tk.count_request(&conv);
        let summarizer = Arc::new(Recorder::default());
        let cm = ContextManager::new(tk)
            .with_summarizer(summarizer)
            .with_options(ContextOptions {
                summary_max_tokens: 40,
                ..ContextOptions::default()
            });
        let mut fitted_any = 0;
        for window in (200..=full + 50).step_by(7) {
            match cm.fit_with_report(&conv, window + 50, 50).await {
                Ok((fitted, report)) => {
                    assert_eq!(report.limit, window);
                    check(&tk, &conv, &fitted, &report);
                    fitted_any += 1;
                }
                Err(e) => assert_eq!(e.kind(), ErrorKind::ContextLengthExceeded, "{e}"),
            }
        }
        assert!(fitted_any > 10, "{model}");
    }
}

#[tokio::test]
async fn the_running_summary_grows_with_only_the_newly_dropped_turns() {
    let tk = Tokenizer::for_model("dashscope/qwen-plus").unwrap();
    let summarizer = Arc::new(Recorder::default());
    let cm = ContextManager::new(tk).with_summarizer(summarizer.clone());
    let conv = conversation(200);
    let head = conv.messages.len() / 2;
    let mut first_half = conv.clone();
    first_half.messages.truncate(head);
    while first_half.messages.last().unwrap().role != Role::Assistant
        || !first_half.messages.last().unwrap().tool_calls.is_empty()
    {
        first_half.messages.pop();
    }
    let (_, r1) = cm.fit_with_report(&first_half, 8192, 1024).await.unwrap();
    let s1 = cm.running_summary().unwrap();
    let (fitted, r2) = cm.fit_with_report(&conv, 8192, 1024).await.unwrap();
    let calls = summarizer.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0], (None, r1.dropped_messages));
    assert_eq!(
        calls[1],
        (Some(s1), r2.dropped_messages - r1.dropped_messages)
    );
    assert!(fitted.messages[0].content.text().contains("[summary 2]"));
    // Fitting the same conversation again reuses the summary without asking the model.
    cm.fit(&conv, 8192, 1024).await.unwrap();
    assert_eq!(summarizer.calls.lock().unwrap().len(), 2);
}

/// Bag-of-words vectors: deterministic and good enough to find a keyword.
struct Words {
    embedded: Mutex<usize>,
}

impl Embedder for Words {
    fn embed<'a>(
        &'a self,
        texts: &'a [String],
    ) -> BoxFuture<'a, llmux_core::Result<Vec<Vec<f32>>>> {
        *self.embedded.lock().unwrap() += texts.len();
        let out = texts
            .iter()
            .map(|t| {
                let mut v = vec![0f32; 64];
                for w in t.split(|c: char| !c.is_alphanumeric() && c != '-') {
                    if w.len() > 3 {
                        let h = w.bytes().fold(0xcbf29ce484222325u64, |h, b| {
                            (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
                        });
                        v[(h % 64) as usize] += 1.0;
                    }
                }
                v
            })
            .collect();
        Box::pin(async move { Ok(out) })
    }
}

#[tokio::test]
async fn retrieval_brings_back_the_relevant_dropped_turn_from_a_sqlite_index() {
    let mut conv = conversation(200);
    conv.messages[3] = Message::user("Remember my locker code PINEAPPLE-42 for the station.");
    conv.messages.push(Message::user(
        "What was my locker code PINEAPPLE-42 again? the station one",
    ));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("turns.sqlite");
    let tk = Tokenizer::for_model("dashscope/qwen-plus").unwrap();
    let embedder = Arc::new(Words {
        embedded: Mutex::new(0),
    });
    let index = Arc::new(SqliteIndex::open(&path).unwrap());
    let cm = ContextManager::new(tk)
        .with_summarizer(Arc::new(Recorder::default()))
        .with_retriever(Retriever::new(index.clone(), embedder.clone()).top_k(2));
    let (fitted, report) = cm.fit_with_report(&conv, 8192, 1024).await.unwrap();
    let system = fitted.messages[0].content.text();
    assert!(system.contains("Relevant earlier messages:\n"), "{system}");
    assert!(system.contains("[user] Remember my locker code PINEAPPLE-42"));
    assert!(report.retrieved_turns >= 1);
    assert!(report.prompt_tokens <= report.limit);
    assert_eq!(tk.count_request(&fitted), report.prompt_tokens);
    let stored = index.len();
    assert!(stored > 100);
    let first_pass = *embedder.embedded.lock().unwrap();
    assert_eq!(first_pass, stored + 1);

    // A new manager over the reopened file embeds only the query.
    drop(cm);
    let reopened = Arc::new(SqliteIndex::open(&path).unwrap());
    assert_eq!(reopened.len(), stored);
    let cm =
        ContextManager::new(tk).with_retriever(Retriever::new(reopened, embedder.clone()).top_k(2));
    let again = cm.fit(&conv, 8192, 1024).await.unwrap();
    assert!(again.messages[0]
        .content
        .text()
        .contains("PINEAPPLE-42 for the station"));
    assert_eq!(*embedder.embedded.lock().unwrap(), first_pass + 1);

    // The in-memory index behaves the same.
    let memory: Arc<dyn VectorIndex> = Arc::new(MemoryIndex::new());
    let cm = ContextManager::new(tk).with_retriever(Retriever::new(memory, embedder).top_k(2));
    let mem = cm.fit(&conv, 8192, 1024).await.unwrap();
    assert_eq!(mem.messages[0], again.messages[0]);
}

#[tokio::test]
async fn a_newest_turn_larger_than_the_window_is_a_context_length_error() {
    let tk = Tokenizer::for_model("openai/gpt-4o").unwrap();
    let conv = ChatRequest::new(
        "openai/gpt-4o",
        vec![
            Message::system("s"),
            Message::user("old"),
            Message::user("word ".repeat(500)),
        ],
    );
    let err = ContextManager::new(tk)
        .fit(&conv, 300, 50)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ContextLengthExceeded);
    let err = ContextManager::new(tk)
        .fit(&conv, 300, 300)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);
}

/// A summarizer that answers like the emulators do: it echoes its whole prompt, so its answer
/// is always longer than the budget and is cut to it.
struct Echo {
    calls: Mutex<usize>,
}

impl Summarizer for Echo {
    fn summarize<'a>(&'a self, r: SummaryRequest<'a>) -> BoxFuture<'a, llmux_core::Result<String>> {
        *self.calls.lock().unwrap() += 1;
        let mut text = String::from("You said: ");
        if let Some(p) = r.previous {
            text.push_str(&format!("Previous summary:\n{p}\n\n"));
        }
        text.push_str("New messages:\n");
        text.push_str(&llmux_core::context::transcript(r.messages));
        Box::pin(async move { Ok(text) })
    }
}

/// Grows a conversation one exchange at a time, fitting before each answer as the REPL does.
#[tokio::test]
async fn one_summary_call_per_overflow_not_per_turn() {
    let tk = Tokenizer::for_model("openai/gpt-4o").unwrap();
    let echo = Arc::new(Echo {
        calls: Mutex::new(0),
    });
    let cm = ContextManager::new(tk).with_summarizer(echo.clone());
    let mut conv = ChatRequest::new("openai/gpt-4o", vec![Message::system("Be brief.")]);
    let (window, reserve) = (600, 100);
    let mut overflows = 0;
    let mut previous_covered = 0;
    for i in 0..60 {
        conv.messages.push(Message::user(format!(
            "Message {i}: tell me something about the number {i} and its neighbours."
        )));
        let (fitted, report) = cm.fit_with_report(&conv, window, reserve).await.unwrap();
        assert!(report.prompt_tokens <= report.limit);
        assert_eq!(tk.count_request(&fitted), report.prompt_tokens);
        if report.summarized_messages > 0 {
            overflows += 1;
            // Only the turns dropped since the last summary went to the summarizer.
            let covered = cm.summary_state().unwrap().covered;
            assert_eq!(report.summarized_messages, covered - previous_covered);
            previous_covered = covered;
            // Never a husk: the summary fills its budget (a quarter of 500).
            assert!(report.summary_tokens > 100, "{report:?}");
        }
        conv.messages.push(Message::assistant(format!(
            "The number {i} sits between {} and {}.",
            i + 1,
            i + 2
        )));
    }
    let calls = *echo.calls.lock().unwrap();
    assert_eq!(calls, overflows);
    assert!(calls >= 3, "{calls}");
    // One call per overflow: far fewer than the turns past the window.
    assert!(calls * 3 < 60, "{calls} summary calls for 60 turns");
}

#[tokio::test]
async fn a_window_too_small_for_a_summary_is_a_clear_error() {
    let tk = Tokenizer::for_model("openai/gpt-4o").unwrap();
    let cm = ContextManager::new(tk).with_summarizer(Arc::new(Echo {
        calls: Mutex::new(0),
    }));
    let mut msgs = vec![Message::system("s")];
    for i in 0..20 {
        msgs.push(Message::user(format!("turn {i} with a few words")));
    }
    let conv = ChatRequest::new("openai/gpt-4o", msgs);
    let err = cm.fit(&conv, 200, 80).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ContextLengthExceeded);
    assert!(err.to_string().contains("too small to summarize"), "{err}");
}

#[tokio::test]
async fn a_stored_summary_is_reused_by_a_new_manager_and_previewed_without_calls() {
    let tk = Tokenizer::for_model("openai/gpt-4o").unwrap();
    let conv = conversation(30);
    let first = Arc::new(Recorder::default());
    let cm = ContextManager::new(tk).with_summarizer(first.clone());
    let (fitted, _) = cm.fit_with_report(&conv, 2048, 256).await.unwrap();
    let state = cm.summary_state().unwrap();
    assert!(state.text.starts_with("[summary 1]"));
    assert_eq!(first.calls.lock().unwrap().len(), 1);

    // A resumed conversation: a new manager, the stored state, one more turn.
    let mut grown = conv.clone();
    grown.messages.push(Message::user("And one more thing."));
    let second = Arc::new(Recorder::default());
    let cm = ContextManager::new(tk).with_summarizer(second.clone());
    cm.set_summary_state(Some(state.clone()));
    let (preview, p) = cm.preview(&grown, 2048, 256).await.unwrap();
    assert!(!p.summary_pending);
    let (again, r) = cm.fit_with_report(&grown, 2048, 256).await.unwrap();
    assert!(second.calls.lock().unwrap().is_empty());
    assert_eq!(preview, again);
    assert_eq!(p.prompt_tokens, r.prompt_tokens);
    assert_eq!(again.messages[0], fitted.messages[0]);

    // A conversation that changed at its start does not reuse it.
    let mut changed = grown.clone();
    changed.messages[1] = Message::user("something else entirely");
    let (_, p) = cm.preview(&changed, 2048, 256).await.unwrap();
    assert!(p.summary_pending);
    assert!(second.calls.lock().unwrap().is_empty());
}
