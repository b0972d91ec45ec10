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
//!    [`ModelSummarizer`], asks a configurable model): written once per window overflow with
//!    only the turns dropped since and the previous summary, then reused by later calls until
//!    the next overflow ([`ContextManager::fit_with_report`]); [`SummaryState`] carries it
//!    across runs;
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

/// The smallest summary budget worth asking a model for: a window that leaves the summary
/// fewer tokens than this is refused as too small (see [`ContextManager::fit_with_report`]).
pub const MIN_SUMMARY_TOKENS: u64 = 32;

/// Tokens allowed for the text joining a heading and its block to the system prompt.
const JOIN_SLACK: u64 = 8;

/// Knobs of the context manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextOptions {
    /// Upper bound on the running summary's tokens. The summary gets at most a quarter of the
    /// prompt's share of the window (`window - reserve_output`) besides, and that share is
    /// reserved out of the window when a summarizer is set. Default 1024.
    pub summary_max_tokens: u64,
    /// After an overflow, the newest turns kept verbatim take at most this percentage of the
    /// space left for turns, so the following turns fit beside the new summary without
    /// another summary call. Default 50.
    pub keep_percent_after_summary: u64,
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
            keep_percent_after_summary: 50,
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
    /// Messages newly summarized by this call (0 when the running summary was reused).
    pub summarized_messages: usize,
    /// Tokens the summarizer was given: the newly summarized messages plus the previous
    /// summary (0 when no summary was written).
    pub summarized_tokens: u64,
    /// [`ContextManager::preview`] only: the request overflows the window, so sending it will
    /// first write a new summary (the count is then the one before that summary).
    pub summary_pending: bool,
    /// Earlier turns brought back by retrieval.
    pub retrieved_turns: usize,
    /// Tokens of the retrieved turns' text.
    pub retrieved_tokens: u64,
}

#[derive(Debug, Clone)]
struct RunningSummary {
    /// The first `covered` messages after the leading system messages are summarized.
    covered: usize,
    /// Hash of those messages.
    fingerprint: [u8; 32],
    text: String,
}

/// The running summary as it is stored between runs (e.g. in a chat session), so a resumed
/// conversation goes on with it instead of summarizing its dropped turns again.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SummaryState {
    /// How many messages after the leading system messages the summary covers.
    pub covered: usize,
    /// SHA-256 (hex) of those messages: a conversation whose start changed does not reuse it.
    pub fingerprint: String,
    /// The summary text.
    pub text: String,
}

#[derive(Debug, Default)]
struct State {
    summary: Option<RunningSummary>,
    /// Index keys of the turns the last fit brought back by retrieval.
    recalled: Vec<String>,
}

/// Whether a fit may call the summarizer and the embedder and change the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Send,
    Preview,
}

/// Fits conversations into a model's context window (see the module docs).
pub struct ContextManager {
    tokenizer: Tokenizer,
    summarizer: Option<Arc<dyn Summarizer>>,
    retriever: Option<Retriever>,
    options: ContextOptions,
    state: Mutex<State>,
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

fn poisoned() -> Error {
    Error::new(ErrorKind::Internal, "context manager state poisoned")
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
            state: Mutex::new(State::default()),
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
            .and_then(|s| s.summary.as_ref().map(|s| s.text.clone()))
    }

    /// The running summary with what it covers, to be stored and handed to
    /// [`set_summary_state`](Self::set_summary_state) by a later run.
    pub fn summary_state(&self) -> Option<SummaryState> {
        let state = self.state.lock().ok()?;
        state.summary.as_ref().map(|s| SummaryState {
            covered: s.covered,
            fingerprint: hex::encode(s.fingerprint),
            text: s.text.clone(),
        })
    }

    /// Restores a stored running summary (`None` forgets it, e.g. when the conversation is
    /// cleared). It is used only while the conversation still starts with the messages it
    /// covers; a fingerprint that is not a SHA-256 hex string is ignored.
    pub fn set_summary_state(&self, stored: Option<SummaryState>) {
        let summary = stored.and_then(|s| {
            let mut fingerprint = [0u8; 32];
            hex::decode_to_slice(&s.fingerprint, &mut fingerprint).ok()?;
            Some(RunningSummary {
                covered: s.covered,
                fingerprint,
                text: s.text,
            })
        });
        if let Ok(mut state) = self.state.lock() {
            state.summary = summary;
            state.recalled.clear();
        }
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
    ///
    /// With a summarizer, the running summary is written once per overflow: when the turns
    /// after the current summary no longer fit beside it, the turns that must go are summarized
    /// together with the previous summary (never the whole dropped history again), and the
    /// newest turns kept verbatim take at most
    /// [`keep_percent_after_summary`](ContextOptions::keep_percent_after_summary) of the room
    /// left for turns, so later calls reuse the summary until the next overflow. The summary
    /// gets at most `min(summary_max_tokens, (window - reserve_output) / 4)` tokens; a window
    /// that leaves it fewer than [`MIN_SUMMARY_TOKENS`] is refused (`ContextLengthExceeded`)
    /// rather than sending a summary cut to a few words.
    pub async fn fit_with_report(
        &self,
        conversation: &ChatRequest,
        window: u64,
        reserve_output: u64,
    ) -> Result<(ChatRequest, FitReport)> {
        self.fit_inner(conversation, window, reserve_output, Mode::Send)
            .await
    }

    /// The request the next [`fit_with_report`](Self::fit_with_report) of `conversation` would
    /// build, without calling the summarizer or the embedder and without changing the state:
    /// the current running summary, the turns the last fit retrieved (when they are still
    /// dropped) and the kept turns. When the conversation overflows past the current summary,
    /// [`FitReport::summary_pending`] says a summary will be written first.
    pub async fn preview(
        &self,
        conversation: &ChatRequest,
        window: u64,
        reserve_output: u64,
    ) -> Result<(ChatRequest, FitReport)> {
        self.fit_inner(conversation, window, reserve_output, Mode::Preview)
            .await
    }

    async fn fit_inner(
        &self,
        conversation: &ChatRequest,
        window: u64,
        reserve_output: u64,
        mode: Mode,
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
        let base = fixed + head_cost;
        let total = base + units.iter().map(unit_cost).sum::<u64>();
        if total <= limit {
            let report = FitReport {
                prompt_tokens: total,
                limit,
                kept_messages: msgs.len(),
                ..FitReport::default()
            };
            return Ok((conversation.clone(), report));
        }
        let too_long = |need: u64, what: &str| {
            Error::new(
                ErrorKind::ContextLengthExceeded,
                format!(
                    "the system prompt, tools and newest turn{what} need {need} tokens; the window leaves {limit}"
                ),
            )
        };
        let Some(newest) = units.last() else {
            return Err(too_long(base, ""));
        };

        // What the summary and the retrieved turns may take, out of the window.
        let block_cost = |heading: &str| tk.count_text(heading) + JOIN_SLACK;
        let summary_budget = match &self.summarizer {
            Some(_) => {
                let budget = self.options.summary_max_tokens.min(limit / 4);
                if budget < MIN_SUMMARY_TOKENS {
                    return Err(Error::new(
                        ErrorKind::ContextLengthExceeded,
                        format!(
                            "a {window}-token window with {reserve_output} reserved for the answer is too small to summarize the earlier conversation into (the summary would get {budget} tokens, at least {MIN_SUMMARY_TOKENS} are needed); use a larger window"
                        ),
                    ));
                }
                budget
            }
            None => 0,
        };
        let summary_reserve = match &self.summarizer {
            Some(_) => summary_budget + block_cost(&self.options.summary_heading),
            None => 0,
        };
        let mut retrieval_budget = self
            .retriever
            .as_ref()
            .map_or(0, |r| r.budget_tokens.min(limit / 4));
        let retrieval_reserve = |budget: u64| match &self.retriever {
            Some(_) if budget > 0 => budget + block_cost(&self.options.retrieval_heading),
            _ => 0,
        };
        if base + summary_reserve + retrieval_reserve(retrieval_budget) + unit_cost(newest) > limit
        {
            // Retrieval gives way to the newest turn; the summary does not.
            retrieval_budget = 0;
            if base + summary_reserve + unit_cost(newest) > limit {
                let what = if summary_reserve > 0 {
                    " beside the summary"
                } else {
                    ""
                };
                return Err(too_long(base + summary_reserve + unit_cost(newest), what));
            }
        }
        let turn_budget = limit - base - summary_reserve - retrieval_reserve(retrieval_budget);

        // The newest units whose cost fits `budget`: the index of the first one.
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
        let at_user = |first: usize| {
            if self.options.start_with_user {
                (first..units.len())
                    .find(|&f| msgs[units[f].start].role == Role::User)
                    .unwrap_or(first)
            } else {
                first
            }
        };

        // A running summary of an earlier call applies while the conversation only grew.
        let previous = self
            .state
            .lock()
            .map_err(|_| poisoned())?
            .summary
            .clone()
            .filter(|s| {
                let end = head_len + s.covered;
                s.covered > 0
                    && units.iter().any(|u| u.start == end)
                    && fingerprint(&msgs[head_len..end]) == s.fingerprint
            });
        let prev_first = previous
            .as_ref()
            .and_then(|p| units.iter().position(|u| u.start == head_len + p.covered));

        let mut first;
        let mut summary = None;
        let (mut summarized_messages, mut summarized_tokens, mut summary_pending) = (0, 0, false);
        match &self.summarizer {
            None => first = at_user(choose(turn_budget)),
            Some(summarizer) => {
                let reuse = match (&previous, prev_first) {
                    (Some(p), Some(pf)) => {
                        let text = tk.truncate(&p.text, summary_budget);
                        let kept: u64 = units[pf..].iter().map(unit_cost).sum();
                        let need = base
                            + tk.count_text(&text)
                            + block_cost(&self.options.summary_heading)
                            + retrieval_reserve(retrieval_budget)
                            + kept;
                        (need <= limit).then_some((pf, text))
                    }
                    _ => None,
                };
                if let Some((pf, text)) = reuse {
                    first = pf;
                    summary = Some(text);
                } else {
                    // An overflow: keep the newest turns within the keep share and summarize
                    // the rest (after what the previous summary covers).
                    let keep = turn_budget
                        .saturating_mul(self.options.keep_percent_after_summary.min(100))
                        / 100;
                    first = choose(keep);
                    if first == units.len() {
                        first = choose(turn_budget);
                    }
                    first = at_user(first).max(prev_first.unwrap_or(0));
                    let cut = units[first].start;
                    let (prev_text, from) = match (&previous, prev_first) {
                        (Some(p), Some(_)) => (Some(p.text.as_str()), head_len + p.covered),
                        _ => (None, head_len),
                    };
                    if mode == Mode::Preview {
                        summary_pending = true;
                        summary = prev_text.map(|t| tk.truncate(t, summary_budget));
                        if from < cut {
                            // Not yet summarized: counted as if they were dropped.
                            summarized_messages = cut - from;
                        }
                    } else if from < cut {
                        summarized_tokens = costs[from..cut].iter().sum::<u64>()
                            + prev_text.map_or(0, |t| tk.count_text(t));
                        let text = summarizer
                            .summarize(SummaryRequest {
                                previous: prev_text,
                                messages: &msgs[from..cut],
                                max_tokens: summary_budget,
                            })
                            .await?;
                        let text = tk.truncate(text.trim(), summary_budget);
                        if text.trim().is_empty() {
                            return Err(Error::protocol(
                                "the summary model answered with an empty summary",
                            ));
                        }
                        summarized_messages = cut - from;
                        let mut state = self.state.lock().map_err(|_| poisoned())?;
                        state.summary = Some(RunningSummary {
                            covered: cut - head_len,
                            fingerprint: fingerprint(&msgs[head_len..cut]),
                            text: text.clone(),
                        });
                        summary = Some(text);
                    } else {
                        summary = prev_text.map(|t| tk.truncate(t, summary_budget));
                    }
                }
            }
        }
        let cut = units[first].start;

        let mut retrieved = match &self.retriever {
            Some(r) if retrieval_budget > 0 => match mode {
                Mode::Send => {
                    let found = self
                        .retrieve(r, msgs, &units[..first], cut, retrieval_budget)
                        .await?;
                    let keys = found.iter().map(|(_, _, k)| k.clone()).collect();
                    self.state.lock().map_err(|_| poisoned())?.recalled = keys;
                    found
                }
                Mode::Preview => self.recalled_again(r, msgs, &units[..first])?,
            },
            _ => Vec::new(),
        };

        // Check the real count and trim until it fits: retrieved turns first, then the summary
        // (never below MIN_SUMMARY_TOKENS), then the oldest kept turns.
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
                    summarized_messages,
                    summarized_tokens,
                    summary_pending,
                    retrieved_turns: retrieved.len(),
                    retrieved_tokens: retrieved.iter().map(|(_, c, _)| c).sum(),
                };
                return Ok((request, report));
            }
            let over = total - limit;
            if retrieved.pop().is_some() {
                continue;
            }
            if let Some(s) = &summary {
                let target = tk.count_text(s).saturating_sub(over);
                if target >= MIN_SUMMARY_TOKENS {
                    summary = Some(tk.truncate(s, target));
                    continue;
                }
            }
            if first + 1 < units.len() {
                first += 1;
                continue;
            }
            return Err(too_long(total, ""));
        }
    }

    /// The leading system messages with the summary and retrieved turns appended to the last
    /// one (or as a new first message).
    fn head(
        &self,
        msgs: &[Message],
        head_len: usize,
        summary: Option<&str>,
        retrieved: &[Recalled],
    ) -> Vec<Message> {
        let mut head = msgs[..head_len].to_vec();
        let mut block = String::new();
        if let Some(s) = summary.filter(|s| !s.is_empty()) {
            block.push_str(&self.options.summary_heading);
            block.push('\n');
            block.push_str(s);
        }
        if !retrieved.is_empty() {
            let mut turns: Vec<&Range<usize>> = retrieved.iter().map(|(r, _, _)| r).collect();
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

    /// The dropped turns most relevant to the newest user message, best first, within
    /// `budget` tokens, each with its token cost and index key.
    async fn retrieve(
        &self,
        r: &Retriever,
        msgs: &[Message],
        dropped: &[Range<usize>],
        cut: usize,
        budget: u64,
    ) -> Result<Vec<Recalled>> {
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
            .map(|u| (r.key(&msgs[u.clone()]), u))
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
            let Some((key, u)) = keyed.iter().find(|(k, _)| *k == hit.key) else {
                continue;
            };
            let cost = self.tokenizer.count_text(&transcript(&msgs[(*u).clone()]));
            if used + cost <= budget {
                used += cost;
                out.push(((*u).clone(), cost, key.clone()));
            }
        }
        Ok(out)
    }

    /// The turns the last fit retrieved that are still among `dropped` (for a preview).
    fn recalled_again(
        &self,
        r: &Retriever,
        msgs: &[Message],
        dropped: &[Range<usize>],
    ) -> Result<Vec<Recalled>> {
        let keys = self.state.lock().map_err(|_| poisoned())?.recalled.clone();
        let mut out = Vec::new();
        for key in keys {
            if let Some(u) = dropped.iter().find(|u| r.key(&msgs[(*u).clone()]) == key) {
                let cost = self.tokenizer.count_text(&transcript(&msgs[u.clone()]));
                out.push((u.clone(), cost, key));
            }
        }
        Ok(out)
    }
}

/// A retrieved turn: its messages, the tokens of its transcript, its index key.
type Recalled = (Range<usize>, u64, String);

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
pub(crate) fn fingerprint(msgs: &[Message]) -> [u8; 32] {
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
