//! The context manager: turns a conversation that may be too long into a request that fits the
//! model's context window, counted with the model's own tokenizer ([`crate::tokenize`]).
//!
//! [`ContextManager::fit`] keeps
//! 1. the leading system message(s), verbatim;
//! 2. the newest turns, as a sliding window by tokens over *atomic groups*: an assistant message
//!    that calls tools travels with all the tool results answering it, so a tool result is
//!    never orphaned and a call never loses its results; the kept part starts at a user message
//!    when it can (vendors such as Hunyuan require user/assistant alternation);
//! 3. a running summary of the dropped turns, written by a [`Summarizer`] (the real one,
//!    [`ModelSummarizer`], asks a configurable model; the summary is extended with only the
//!    newly dropped turns on each call);
//! 4. optionally the earlier turns most relevant to the newest one, found by embeddings in a
//!    [`VectorIndex`] ([`Retriever`]).
//!
//! The summary and retrieved turns are appended to the last leading system message (or form
//! one when there is none) rather than sent as extra system messages, which several vendors
//! reject mid-conversation. The result never exceeds `window - reserve_output` tokens as
//! [`Tokenizer::count_request`] counts them: the manager checks the final request and trims
//! retrieved turns, then the summary, then the oldest kept turns until it fits. Everything is
//! deterministic given a deterministic summarizer and embedder.

pub mod retrieval;
pub mod summary;
pub mod window;

use std::collections::HashSet;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

#[cfg(feature = "sqlite")]
pub use retrieval::SqliteIndex;
pub use retrieval::{ClientEmbedder, Embedder, Hit, MemoryIndex, Retriever, VectorIndex};
pub use summary::{transcript, ModelSummarizer, Summarizer, SummaryRequest};
pub use window::{ModelTable, DEFAULT_CONTEXT_WINDOW};

use crate::error::{Error, ErrorKind, Result};
use crate::tokenize::Tokenizer;
use crate::types::{ChatRequest, Content, ContentPart, Message, Role};

/// Knobs of the context manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextOptions {
    /// Upper bound on the running summary's tokens (reserved out of the window when a
    /// summarizer is set). Default 1024.
    pub summary_max_tokens: u64,
    /// Start the kept turns at a user message when possible. Default true.
    pub start_with_user: bool,
    /// Line introducing the summary in the system prompt.
    pub summary_heading: String,
    /// Line introducing the retrieved turns in the system prompt.
    pub retrieval_heading: String,
}

impl Default for ContextOptions {
    fn default() -> Self {
        ContextOptions {
            summary_max_tokens: 1024,
            start_with_user: true,
            summary_heading: "Summary of the earlier conversation:".to_owned(),
            retrieval_heading: "Relevant earlier messages:".to_owned(),
        }
    }
}

/// What [`ContextManager::fit_with_report`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FitReport {
    /// Prompt tokens of the fitted request, as the model's tokenizer counts them.
    pub prompt_tokens: u64,
    /// `window - reserve_output`: what `prompt_tokens` must not exceed.
    pub limit: u64,
    /// Messages of the conversation left out of the request.
    pub dropped_messages: usize,
    /// Conversation messages sent verbatim (system prompt included).
    pub kept_messages: usize,
    /// Tokens of the running summary text (0 when none was sent).
    pub summary_tokens: u64,
    /// Earlier turns brought back by retrieval.
    pub retrieved_turns: usize,
}

#[derive(Debug, Clone)]
struct RunningSummary {
    /// Messages `[..covered]` are summarized (system prompt included in the fingerprint).
    covered: usize,
    fingerprint: [u8; 32],
    text: String,
}

/// Fits conversations into a model's context window (see the module docs).
pub struct ContextManager {
    tokenizer: Tokenizer,
    summarizer: Option<Arc<dyn Summarizer>>,
    retriever: Option<Retriever>,
    options: ContextOptions,
    state: Mutex<Option<RunningSummary>>,
}

impl std::fmt::Debug for ContextManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContextManager")
            .field("tokenizer", &self.tokenizer)
            .field("summarizer", &self.summarizer.is_some())
            .field("retriever", &self.retriever)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl ContextManager {
    /// A manager counting with `tokenizer`, without summary or retrieval (dropped turns are
    /// simply left out).
    pub fn new(tokenizer: Tokenizer) -> Self {
        ContextManager {
            tokenizer,
            summarizer: None,
            retriever: None,
            options: ContextOptions::default(),
            state: Mutex::new(None),
        }
    }

    /// A manager with the tokenizer of `provider/model`.
    pub fn for_model(addr: &str) -> Result<Self> {
        Ok(Self::new(Tokenizer::for_model(addr)?))
    }

    /// Summarizes dropped turns with `summarizer`.
    pub fn with_summarizer(mut self, summarizer: Arc<dyn Summarizer>) -> Self {
        self.summarizer = Some(summarizer);
        self
    }

    /// Brings back relevant earlier turns with `retriever`.
    pub fn with_retriever(mut self, retriever: Retriever) -> Self {
        self.retriever = Some(retriever);
        self
    }

    /// Replaces the options.
    pub fn with_options(mut self, options: ContextOptions) -> Self {
        self.options = options;
        self
    }

    /// The tokenizer counts are made with.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The current running summary, if any.
    pub fn running_summary(&self) -> Option<String> {
        self.state
            .lock()
            .ok()
            .and_then(|s| s.as_ref().map(|s| s.text.clone()))
    }

    /// The request that fits `window` tokens with `reserve_output` left for the answer.
    pub async fn fit(
        &self,
        conversation: &ChatRequest,
        window: u64,
        reserve_output: u64,
    ) -> Result<ChatRequest> {
        Ok(self
            .fit_with_report(conversation, window, reserve_output)
            .await?
            .0)
    }

    /// Like [`fit`](Self::fit), with the window from `table` for `conversation.model`
    /// (`provider/model`) and `max_tokens` (or 1024) reserved for the answer.
    pub async fn fit_for_model(
        &self,
        conversation: &ChatRequest,
        table: &ModelTable,
    ) -> Result<ChatRequest> {
        let reserve = conversation
            .max_tokens
            .map_or(crate::tokens::DEFAULT_OUTPUT_RESERVE, u64::from);
        self.fit(conversation, table.window(&conversation.model), reserve)
            .await
    }

    /// [`fit`](Self::fit), and what was done.
    pub async fn fit_with_report(
        &self,
        conversation: &ChatRequest,
        window: u64,
        reserve_output: u64,
    ) -> Result<(ChatRequest, FitReport)> {
        let limit = window
            .checked_sub(reserve_output)
            .filter(|l| *l > 0)
            .ok_or_else(|| {
                Error::invalid_request(format!(
                    "the output reserve ({reserve_output} tokens) leaves nothing of the {window}-token window"
                ))
            })?;
        let tk = &self.tokenizer;
        let msgs = &conversation.messages;
        let head_len = msgs.iter().take_while(|m| m.role == Role::System).count();
        let costs: Vec<u64> = msgs.iter().map(|m| tk.count_message(m)).collect();
        let fixed = tk.reply_priming() + tk.count_tools(&conversation.tools);
        let head_cost: u64 = costs[..head_len].iter().sum();
        let units = atomic_groups(msgs, head_len);
        let unit_cost = |u: &Range<usize>| costs[u.clone()].iter().sum::<u64>();
        let total = fixed + head_cost + units.iter().map(unit_cost).sum::<u64>();
        if total <= limit {
            let report = FitReport {
                prompt_tokens: total,
                limit,
                dropped_messages: 0,
                kept_messages: msgs.len(),
                summary_tokens: 0,
                retrieved_turns: 0,
            };
            return Ok((conversation.clone(), report));
        }
        let too_long = |need: u64| {
            Error::new(
                ErrorKind::ContextLengthExceeded,
                format!(
                    "the system prompt, tools and newest turn need {need} tokens; the window leaves {limit}"
                ),
            )
        };
        let Some(newest) = units.last() else {
            return Err(too_long(fixed + head_cost));
        };

        // The newest turns that fit beside the summary and retrieval reserves.
        let base = fixed + head_cost;
        let mut reserve = 0;
        if self.summarizer.is_some() {
            reserve += self.options.summary_max_tokens
                + tk.count_message(&Message::system(self.options.summary_heading.clone()));
        }
        if let Some(r) = &self.retriever {
            reserve += r.budget_tokens + tk.count_text(&self.options.retrieval_heading) + 2;
        }
        let choose = |budget: u64| {
            let (mut used, mut first) = (0, units.len());
            for (i, u) in units.iter().enumerate().rev() {
                used += unit_cost(u);
                if used > budget {
                    break;
                }
                first = i;
            }
            first
        };
        let mut first = choose(limit.saturating_sub(base + reserve));
        if first == units.len() {
            // Not even the newest turn fits beside the reserves: they get what is left.
            first = choose(limit.saturating_sub(base));
            if first == units.len() {
                return Err(too_long(base + unit_cost(newest)));
            }
        }
        if self.options.start_with_user {
            if let Some(f) = (first..units.len()).find(|&f| msgs[units[f].start].role == Role::User)
            {
                first = f;
            }
        }

        // A running summary of an earlier call still applies when the conversation only grew.
        let previous = self
            .state
            .lock()
            .map_err(|_| Error::new(ErrorKind::Internal, "context manager state poisoned"))?
            .clone()
            .filter(|s| {
                units.iter().any(|u| u.start == s.covered)
                    && fingerprint(&msgs[..s.covered]) == s.fingerprint
            });
        if let Some(f) = previous
            .as_ref()
            .and_then(|p| units.iter().position(|u| u.start == p.covered))
        {
            first = first.max(f);
        }
        let cut = units[first].start;

        let mut summary = None;
        if let Some(summarizer) = &self.summarizer {
            let (prev_text, from) = match &previous {
                Some(p) if p.covered <= cut => (Some(p.text.as_str()), p.covered),
                _ => (None, head_len),
            };
            if from == cut {
                summary = prev_text.map(str::to_owned);
            } else {
                let max = self.options.summary_max_tokens;
                let text = summarizer
                    .summarize(SummaryRequest {
                        previous: prev_text,
                        messages: &msgs[from..cut],
                        max_tokens: max,
                    })
                    .await?;
                let text = tk.truncate(text.trim(), max);
                if let Ok(mut state) = self.state.lock() {
                    *state = Some(RunningSummary {
                        covered: cut,
                        fingerprint: fingerprint(&msgs[..cut]),
                        text: text.clone(),
                    });
                }
                summary = Some(text);
            }
        }

        let mut retrieved = match &self.retriever {
            Some(r) => self.retrieve(r, msgs, &units[..first], cut).await?,
            None => Vec::new(),
        };

        // Check the real count and trim until it fits.
        loop {
            let kept = &msgs[units[first].start..];
            let head = self.head(msgs, head_len, summary.as_deref(), &retrieved);
            let total = fixed
                + head.iter().map(|m| tk.count_message(m)).sum::<u64>()
                + kept.iter().map(|m| tk.count_message(m)).sum::<u64>();
            if total <= limit {
                let summary_tokens = summary.as_deref().map_or(0, |s| tk.count_text(s));
                let mut request = conversation.clone();
                request.messages = head;
                request.messages.extend_from_slice(kept);
                let report = FitReport {
                    prompt_tokens: total,
                    limit,
                    dropped_messages: units[first].start - head_len,
                    kept_messages: head_len + kept.len(),
                    summary_tokens,
                    retrieved_turns: retrieved.len(),
                };
                return Ok((request, report));
            }
            let over = total - limit;
            if retrieved.pop().is_some() {
                continue;
            }
            if let Some(s) = summary.take() {
                let target = tk.count_text(&s).saturating_sub(over);
                if target > 0 {
                    summary = Some(tk.truncate(&s, target)).filter(|s| !s.is_empty());
                }
                continue;
            }
            if first + 1 < units.len() {
                first += 1;
                continue;
            }
            return Err(too_long(total));
        }
    }

    /// The leading system messages with the summary and retrieved turns appended to the last
    /// one (or as a new first message).
    fn head(
        &self,
        msgs: &[Message],
        head_len: usize,
        summary: Option<&str>,
        retrieved: &[(Range<usize>, u64)],
    ) -> Vec<Message> {
        let mut head = msgs[..head_len].to_vec();
        let mut block = String::new();
        if let Some(s) = summary.filter(|s| !s.is_empty()) {
            block.push_str(&self.options.summary_heading);
            block.push('\n');
            block.push_str(s);
        }
        if !retrieved.is_empty() {
            let mut turns: Vec<&Range<usize>> = retrieved.iter().map(|(r, _)| r).collect();
            turns.sort_by_key(|r| r.start);
            if !block.is_empty() {
                block.push_str("\n\n");
            }
            block.push_str(&self.options.retrieval_heading);
            block.push('\n');
            for r in turns {
                block.push_str(&transcript(&msgs[r.clone()]));
            }
        }
        if block.is_empty() {
            return head;
        }
        match head.last_mut() {
            Some(last) => match &mut last.content {
                Content::Text(t) => {
                    t.push_str("\n\n");
                    t.push_str(&block);
                }
                Content::Parts(parts) => parts.push(ContentPart::Text {
                    text: format!("\n\n{block}"),
                }),
            },
            None => head.push(Message::system(block)),
        }
        head
    }

    /// The dropped turns most relevant to the newest user message, best first, within the
    /// retriever's budget, each with its token cost.
    async fn retrieve(
        &self,
        r: &Retriever,
        msgs: &[Message],
        dropped: &[Range<usize>],
        cut: usize,
    ) -> Result<Vec<(Range<usize>, u64)>> {
        if dropped.is_empty() || r.top_k == 0 {
            return Ok(Vec::new());
        }
        let query = msgs[cut..]
            .iter()
            .rev()
            .find(|m| m.role == Role::User)
            .or_else(|| msgs.last())
            .map(|m| m.content.text().into_owned())
            .unwrap_or_default();
        let keyed: Vec<(String, &Range<usize>)> = dropped
            .iter()
            .map(|u| (hex::encode(fingerprint(&msgs[u.clone()])), u))
            .collect();
        let mut texts = Vec::new();
        let mut missing = Vec::new();
        for (key, u) in &keyed {
            if !r.index.contains(key)? && !missing.contains(key) {
                missing.push(key.clone());
                texts.push(transcript(&msgs[(*u).clone()]));
            }
        }
        texts.push(query);
        let vectors = r.embedder.embed(&texts).await?;
        if vectors.len() != texts.len() {
            return Err(Error::protocol(format!(
                "the embedder returned {} vectors for {} texts",
                vectors.len(),
                texts.len()
            )));
        }
        for (key, v) in missing.iter().zip(&vectors) {
            r.index.insert(key, v)?;
        }
        let query_vec = vectors.last().map(Vec::as_slice).unwrap_or_default();
        let allowed: HashSet<&str> = keyed.iter().map(|(k, _)| k.as_str()).collect();
        let hits = r
            .index
            .search(query_vec, r.top_k, &|k| allowed.contains(k))?;
        let mut out = Vec::new();
        let mut used = 0;
        for hit in hits {
            let Some((_, u)) = keyed.iter().find(|(k, _)| *k == hit.key) else {
                continue;
            };
            let cost = self.tokenizer.count_text(&transcript(&msgs[(*u).clone()]));
            if used + cost <= r.budget_tokens {
                used += cost;
                out.push(((*u).clone(), cost));
            }
        }
        Ok(out)
    }
}

/// Splits `msgs[start..]` into atomic groups: an assistant message with tool calls together
/// with the tool results that follow it; every other message alone. A tool result without a
/// preceding call (malformed input) joins the group before it, so it is never sent alone.
pub fn atomic_groups(msgs: &[Message], start: usize) -> Vec<Range<usize>> {
    let mut groups: Vec<Range<usize>> = Vec::new();
    let mut i = start;
    while i < msgs.len() {
        let mut end = i + 1;
        if msgs[i].role == Role::Tool {
            if let Some(last) = groups.last_mut() {
                while end < msgs.len() && msgs[end].role == Role::Tool {
                    end += 1;
                }
                last.end = end;
                i = end;
                continue;
            }
        }
        if !msgs[i].tool_calls.is_empty() {
            while end < msgs.len() && msgs[end].role == Role::Tool {
                end += 1;
            }
        }
        groups.push(i..end);
        i = end;
    }
    groups
}

/// A content hash of messages (their JSON), for the running summary and index keys.
fn fingerprint(msgs: &[Message]) -> [u8; 32] {
    let mut h = Sha256::new();
    for m in msgs {
        // Serializing a `Message` cannot fail (no maps with non-string keys).
        h.update(serde_json::to_vec(m).unwrap_or_default());
        h.update([0u8]);
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::ToolCall;

    fn call(id: &str) -> Message {
        let mut m = Message::assistant("");
        m.tool_calls.push(ToolCall {
            id: id.into(),
            name: "f".into(),
            arguments: "{}".into(),
        });
        m
    }

    #[test]
    fn tool_calls_and_their_results_form_one_group() {
        let msgs = vec![
            Message::system("s"),
            Message::user("u"),
            call("a"),
            Message::tool_result("a", "1"),
            Message::tool_result("a", "2"),
            Message::assistant("done"),
            Message::tool_result("x", "orphan"),
            Message::user("u2"),
        ];
        assert_eq!(atomic_groups(&msgs, 1), vec![1..2, 2..5, 5..7, 7..8]);
    }
}
