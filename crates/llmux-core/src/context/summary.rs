//! Running summaries of the turns the context manager drops: the [`Summarizer`] trait, the
//! model-backed [`ModelSummarizer`], and the plain-text transcript both it and retrieval use.

use futures::future::BoxFuture;

use crate::client::Client;
use crate::error::Result;
use crate::types::{ChatRequest, Message, Role};

/// What a summarizer is asked for.
#[derive(Debug, Clone, Copy)]
pub struct SummaryRequest<'a> {
    /// The summary of the turns dropped before, to be extended.
    pub previous: Option<&'a str>,
    /// The turns dropped since, oldest first (whole tool-call groups).
    pub messages: &'a [Message],
    /// Upper bound on the summary's tokens (the manager truncates longer answers).
    pub max_tokens: u64,
}

/// Turns dropped messages into a running summary.
pub trait Summarizer: Send + Sync {
    /// The new running summary: `previous` extended with `messages`.
    fn summarize<'a>(&'a self, request: SummaryRequest<'a>) -> BoxFuture<'a, Result<String>>;
}

/// The instructions [`ModelSummarizer`] sends by default.
pub const DEFAULT_SUMMARY_INSTRUCTIONS: &str = "You maintain the running summary of a conversation whose earlier turns no longer fit in the model's context window. Merge the previous summary (if any) with the new messages into one concise summary. Keep facts, names, numbers, decisions, open questions, and tool results that later turns may rely on. Write in the conversation's language. Reply with the summary only.";

/// A summarizer that asks a model through a [`Client`] (any provider, configurable model).
#[derive(Debug, Clone)]
pub struct ModelSummarizer {
    client: Client,
    model: String,
    instructions: String,
}

impl ModelSummarizer {
    /// Summarizes with `model` (`provider/model`, e.g. `dashscope/qwen-turbo`).
    pub fn new(client: Client, model: impl Into<String>) -> Self {
        ModelSummarizer {
            client,
            model: model.into(),
            instructions: DEFAULT_SUMMARY_INSTRUCTIONS.to_owned(),
        }
    }

    /// Replaces the system instructions.
    pub fn with_instructions(mut self, instructions: impl Into<String>) -> Self {
        self.instructions = instructions.into();
        self
    }

    /// The request sent to the model (public so callers can see exactly what is asked).
    pub fn request(&self, req: SummaryRequest<'_>) -> ChatRequest {
        let mut prompt = String::new();
        if let Some(prev) = req.previous {
            prompt.push_str("Previous summary:\n");
            prompt.push_str(prev);
            prompt.push_str("\n\n");
        }
        prompt.push_str("New messages:\n");
        prompt.push_str(&transcript(req.messages));
        let mut chat = ChatRequest::new(
            self.model.clone(),
            vec![
                Message::system(self.instructions.clone()),
                Message::user(prompt),
            ],
        );
        chat.max_tokens = Some(u32::try_from(req.max_tokens).unwrap_or(u32::MAX).max(1));
        chat.temperature = Some(0.0);
        chat
    }
}

impl Summarizer for ModelSummarizer {
    fn summarize<'a>(&'a self, request: SummaryRequest<'a>) -> BoxFuture<'a, Result<String>> {
        let chat = self.request(request);
        Box::pin(async move {
            let resp = self.client.chat(chat).await?;
            Ok(resp.text().trim().to_owned())
        })
    }
}

/// Messages as plain text, one block per message: `[role] text`, tool calls as
/// `[assistant → tool name] arguments`, tool results as `[tool result id] text`.
pub fn transcript(messages: &[Message]) -> String {
    let mut s = String::new();
    for m in messages {
        let text = m.content.text();
        match m.role {
            Role::Tool => {
                let id = m.tool_call_id.as_deref().unwrap_or("");
                s.push_str(&format!("[tool result {id}] {text}\n"));
            }
            role => {
                if !text.is_empty() || m.tool_calls.is_empty() {
                    s.push_str(&format!("[{}] {text}\n", role.as_str()));
                }
                for c in &m.tool_calls {
                    s.push_str(&format!(
                        "[{} → tool {} {}] {}\n",
                        role.as_str(),
                        c.name,
                        c.id,
                        c.arguments
                    ));
                }
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::ToolCall;

    #[test]
    fn transcript_shows_roles_calls_and_results() {
        let mut call = Message::assistant("");
        call.tool_calls.push(ToolCall {
            id: "c1".into(),
            name: "weather".into(),
            arguments: "{}".into(),
        });
        let t = transcript(&[
            Message::user("hi"),
            call,
            Message::tool_result("c1", "sunny"),
        ]);
        assert_eq!(
            t,
            "[user] hi\n[assistant → tool weather c1] {}\n[tool result c1] sunny\n"
        );
    }

    #[test]
    fn model_summarizer_asks_for_a_bounded_deterministic_answer() {
        let client = Client::builder().without_env().build().unwrap();
        let s = ModelSummarizer::new(client, "dashscope/qwen-turbo");
        let msgs = [Message::user("hello")];
        let r = s.request(SummaryRequest {
            previous: Some("earlier"),
            messages: &msgs,
            max_tokens: 300,
        });
        assert_eq!(r.model, "dashscope/qwen-turbo");
        assert_eq!(r.max_tokens, Some(300));
        assert_eq!(r.temperature, Some(0.0));
        assert_eq!(
            r.messages[1].content.text(),
            "Previous summary:\nearlier\n\nNew messages:\n[user] hello\n"
        );
    }
}
