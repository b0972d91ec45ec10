//! The context settings of `llmux chat` (window, summary model, recall) and the one context
//! manager a conversation keeps for all its turns, so the running summary is written once per
//! window overflow and reused until the next one.
//!
//! Every chat turn, one-shot or REPL, goes through [`ChatContext::fit`]: the conversation with
//! the new message, fitted by [`llmux_core::context`] to the window with the model's tokenizer.
//! A summary written or messages left out are reported on stderr in one line. With a session
//! the settings and the running summary are stored with it ([`crate::session`]), and recall's
//! vectors in `recall.sqlite3` in the data directory, keyed by embedding model and content, so a
//! resumed session embeds only the turns dropped since and the query.

use std::sync::Arc;

use clap::Args;
use llmux_core::context::{
    ClientEmbedder, ContextManager, FitReport, MemoryIndex, ModelSummarizer, ModelTable, Retriever,
    SqliteIndex, SummaryState, VectorIndex,
};
use llmux_core::tokenize::Tokenizer;
use llmux_core::tokens::DEFAULT_OUTPUT_RESERVE;
use llmux_core::{ChatRequest, Client};
use serde::{Deserialize, Serialize};

use crate::conversation::Conversation;
use crate::error::{CliError, Result};
use crate::request::{RequestArgs, Toggle};

/// The smallest `--context-window` accepted.
pub const MIN_WINDOW: u64 = 256;

/// The largest `--context-window` accepted.
pub const MAX_WINDOW: u64 = 100_000_000;

/// The recall index file inside the data directory.
pub const RECALL_DB_FILE: &str = "recall.sqlite3";

/// Context flags of `llmux chat` (kept in a session; a flag given now replaces the stored
/// value).
#[derive(Debug, Clone, Default, Args)]
pub struct ContextArgs {
    /// The model's context window in tokens (default: the vendor's published limit from the
    /// built-in table, else 8192).
    #[arg(
        long,
        value_name = "TOKENS",
        value_parser = clap::value_parser!(u64).range(MIN_WINDOW..=MAX_WINDOW)
    )]
    pub context_window: Option<u64>,
    /// The model that writes the running summary of turns past the window (default: the chat
    /// model).
    #[arg(long, value_name = "PROVIDER/MODEL")]
    pub summary_model: Option<String>,
    /// Bring back the earlier turns most relevant to each message, found by embeddings.
    #[arg(
        long,
        value_name = "on|off",
        num_args = 0..=1,
        default_missing_value = "on"
    )]
    pub recall: Option<Toggle>,
    /// The embedding model recall uses (default: the provider's, where llmux knows one).
    #[arg(long, value_name = "PROVIDER/MODEL")]
    pub embed_model: Option<String>,
}

/// The context settings a session stores; unset ones take their defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContextSettings {
    /// The context window in tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<u64>,
    /// The summary model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary_model: Option<String>,
    /// Recall on or off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recall: Option<bool>,
    /// The embedding model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embed_model: Option<String>,
}

impl ContextSettings {
    /// `stored` with every flag given now in its place.
    pub fn merged(stored: Option<ContextSettings>, args: &ContextArgs) -> ContextSettings {
        let stored = stored.unwrap_or_default();
        ContextSettings {
            window: args.context_window.or(stored.window),
            summary_model: args.summary_model.clone().or(stored.summary_model),
            recall: args.recall.map(|t| t == Toggle::On).or(stored.recall),
            embed_model: args.embed_model.clone().or(stored.embed_model),
        }
    }
}

/// The embedding model of providers whose default llmux knows.
fn default_embed_model(provider: &str) -> Option<&'static str> {
    match provider {
        "openai" => Some("openai/text-embedding-3-small"),
        "dashscope" => Some("dashscope/text-embedding-v3"),
        "dashscope-compat" => Some("dashscope-compat/text-embedding-v3"),
        _ => None,
    }
}

/// Where recall keeps its vectors.
#[derive(Debug, Clone)]
pub enum RecallStore {
    /// In memory, for this run only.
    Memory,
    /// In a SQLite file (a session's data directory).
    File(std::path::PathBuf),
}

/// A conversation's context manager, its settings and what the last fit did.
pub struct ChatContext {
    settings: ContextSettings,
    model: String,
    tokenizer: Tokenizer,
    manager: ContextManager,
    client: Client,
    index: Option<Arc<dyn VectorIndex>>,
    recall_store: RecallStore,
    /// Prompt tokens of the last request sent.
    last_sent: Option<u64>,
    /// Messages left out of the last request.
    last_dropped: usize,
}

impl std::fmt::Debug for ChatContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatContext")
            .field("settings", &self.settings)
            .field("model", &self.model)
            .field("last_sent", &self.last_sent)
            .finish_non_exhaustive()
    }
}

impl ChatContext {
    /// The context of a conversation with `model`, sending summary and embedding calls through
    /// `client`; `summary` is a stored running summary to go on with.
    pub fn new(
        model: &str,
        settings: ContextSettings,
        client: &Client,
        recall_store: RecallStore,
        summary: Option<SummaryState>,
    ) -> Result<ChatContext> {
        let mut ctx = ChatContext {
            tokenizer: Tokenizer::for_model(model)?,
            manager: ContextManager::new(Tokenizer::estimate()),
            settings,
            model: model.to_owned(),
            client: client.clone(),
            index: None,
            recall_store,
            last_sent: None,
            last_dropped: 0,
        };
        ctx.rebuild(summary)?;
        Ok(ctx)
    }

    /// The context of a conversation kept in `session` (or of none): the stored settings with
    /// the flags given now over them, the stored running summary, recall's vectors in the data
    /// directory (in memory without a session).
    pub fn open(
        model: &str,
        session: Option<&crate::session::Session>,
        args: &ContextArgs,
        client: &Client,
    ) -> Result<ChatContext> {
        let stored = session.map(|s| s.context.clone()).unwrap_or_default();
        let settings = ContextSettings::merged(stored.settings, args);
        let store = match session {
            Some(_) if settings.recall == Some(true) => {
                RecallStore::File(crate::session::data_dir()?.join(RECALL_DB_FILE))
            }
            _ => RecallStore::Memory,
        };
        ChatContext::new(model, settings, client, store, stored.summary)
    }

    /// Puts the settings and the running summary into `session`, for its next save.
    pub fn store_in(&self, session: &mut crate::session::Session) {
        session.context = crate::session::StoredContext {
            settings: Some(self.settings.clone()),
            summary: self.summary_state(),
        };
    }

    /// The summary model: `--summary-model`, else the chat model.
    pub fn summary_model(&self) -> &str {
        self.settings
            .summary_model
            .as_deref()
            .unwrap_or(&self.model)
    }

    /// The embedding model recall uses, or why there is none.
    fn embed_model(&self) -> Result<String> {
        if let Some(m) = &self.settings.embed_model {
            return Ok(m.clone());
        }
        let provider = crate::request::provider_of(&self.model)?;
        default_embed_model(provider).map(str::to_owned).ok_or_else(|| {
            CliError::msg(format!(
                "recall needs an embedding model: llmux knows no default for {provider}; pass --embed-model PROVIDER/MODEL"
            ))
        })
    }

    /// The window: `--context-window`, else the built-in table's for the model.
    pub fn window(&self) -> u64 {
        self.settings
            .window
            .unwrap_or_else(|| ModelTable::builtin().window(&self.model))
    }

    /// Tokens kept free for the answer: `--max-tokens`, else 1024 but at most a quarter of the
    /// window.
    pub fn reserve(&self, args: &RequestArgs) -> u64 {
        args.max_tokens
            .map_or_else(|| DEFAULT_OUTPUT_RESERVE.min(self.window() / 4), u64::from)
    }

    /// Builds the manager for the current model and settings, with `summary` as its state.
    fn rebuild(&mut self, summary: Option<SummaryState>) -> Result<()> {
        self.client.resolve(self.summary_model())?;
        let summarizer = ModelSummarizer::new(self.client.clone(), self.summary_model());
        let mut manager = ContextManager::new(self.tokenizer).with_summarizer(Arc::new(summarizer));
        if self.settings.recall == Some(true) {
            let embed_model = self.embed_model()?;
            self.client.resolve(&embed_model)?;
            let index = match &self.index {
                Some(index) => index.clone(),
                None => {
                    let index: Arc<dyn VectorIndex> = match &self.recall_store {
                        RecallStore::Memory => Arc::new(MemoryIndex::new()),
                        RecallStore::File(path) => Arc::new(SqliteIndex::open(path)?),
                    };
                    self.index = Some(index.clone());
                    index
                }
            };
            let embedder = ClientEmbedder::new(self.client.clone(), embed_model.clone());
            manager = manager
                .with_retriever(Retriever::new(index, Arc::new(embedder)).namespace(embed_model));
        }
        manager.set_summary_state(summary);
        self.manager = manager;
        Ok(())
    }

    /// Switches to `model` (its tokenizer; its summary model unless one was set), sending
    /// through `client`; the running summary is kept.
    pub fn set_model(&mut self, model: &str, client: &Client) -> Result<()> {
        let tokenizer = Tokenizer::for_model(model)?;
        let (old_model, old_tokenizer) = (self.model.clone(), self.tokenizer);
        let old_client = std::mem::replace(&mut self.client, client.clone());
        self.model = model.to_owned();
        self.tokenizer = tokenizer;
        if let Err(e) = self.rebuild(self.summary_state()) {
            self.model = old_model;
            self.tokenizer = old_tokenizer;
            self.client = old_client;
            return Err(e);
        }
        Ok(())
    }

    /// The running summary to store.
    pub fn summary_state(&self) -> Option<SummaryState> {
        self.manager.summary_state()
    }

    /// Forgets the running summary (the conversation was cleared).
    pub fn clear(&mut self) {
        self.manager.set_summary_state(None);
        self.last_dropped = 0;
    }

    /// The request for this turn: the conversation with `user` appended, fitted to the window.
    /// A summary written or messages left out are reported on stderr in one line.
    pub async fn fit(
        &mut self,
        conv: &Conversation,
        user: &str,
        args: &RequestArgs,
    ) -> Result<ChatRequest> {
        let req = conv.request(user, args)?;
        let (fitted, report) = self
            .manager
            .fit_with_report(&req, self.window(), self.reserve(args))
            .await?;
        if let Some(line) = self.report_line(&report) {
            eprintln!("{line}");
        }
        self.last_dropped = report.dropped_messages;
        self.last_sent = Some(report.prompt_tokens);
        Ok(fitted)
    }

    /// The one stderr line about what the fit did: a summary written, or messages left out
    /// (when that number changed); `None` when neither happened.
    fn report_line(&self, r: &FitReport) -> Option<String> {
        let recalled = match r.retrieved_turns {
            0 => String::new(),
            1 => ", 1 earlier message recalled".to_owned(),
            n => format!(", {n} earlier messages recalled"),
        };
        let sent = format!(
            "{} of {} prompt tokens sent (window {})",
            r.prompt_tokens,
            r.limit,
            self.window()
        );
        if r.summarized_messages > 0 {
            Some(format!(
                "context: {} messages summarized ({} → {} tokens){recalled}, {sent}",
                r.summarized_messages, r.summarized_tokens, r.summary_tokens
            ))
        } else if r.dropped_messages != self.last_dropped && r.dropped_messages > 0 {
            Some(format!(
                "context: {} older messages left out{}{recalled}, {sent}",
                r.dropped_messages,
                if r.summary_tokens > 0 {
                    " (the running summary stands for them)"
                } else {
                    ""
                }
            ))
        } else {
            None
        }
    }

    /// The `/tokens` lines: the exact size of the next request before the message still to be
    /// typed (system prompt, running summary, recalled and kept turns), the last request sent,
    /// and whether the counts are exact.
    pub async fn tokens_lines(&self, conv: &Conversation, args: &RequestArgs) -> Result<String> {
        let mut req = ChatRequest::new(conv.model(), conv.all_messages());
        args.apply(&mut req);
        let (window, reserve) = (self.window(), self.reserve(args));
        let (_, r) = self.manager.preview(&req, window, reserve).await?;
        let mut out = format!(
            "next request: {} tokens before your message ({} messages kept, summary {} tokens, {} recalled {} tokens), limit {} = window {window} - {reserve} reserved for the answer",
            r.prompt_tokens, r.kept_messages, r.summary_tokens, r.retrieved_turns, r.retrieved_tokens, r.limit
        );
        if r.summary_pending {
            out.push_str(&format!(
                "\n  over the window: {} messages will be summarized before it is sent",
                r.summarized_messages
            ));
        }
        if let Some(n) = self.last_sent {
            out.push_str(&format!("\nlast request: {n} tokens"));
        }
        out.push_str(&format!(
            "\ncounted with {}: {}",
            self.model,
            if self.tokenizer.is_exact() {
                format!("exact ({})", self.tokenizer.describe())
            } else {
                self.tokenizer.describe()
            }
        ));
        Ok(out)
    }

    /// The `/context` lines: the settings and the running summary.
    pub fn describe(&self) -> String {
        let window = match self.settings.window {
            Some(w) => format!("{w} tokens (--context-window)"),
            None => format!("{} tokens (built-in table)", self.window()),
        };
        let recall = if self.settings.recall == Some(true) {
            format!(
                "on, with {}",
                self.embed_model()
                    .unwrap_or_else(|e| format!("no embedding model ({e})"))
            )
        } else {
            "off".to_owned()
        };
        let summary = match self.summary_state() {
            Some(s) => format!(
                "{} tokens covering {} messages",
                self.tokenizer.count_text(&s.text),
                s.covered
            ),
            None => "none yet".to_owned(),
        };
        format!(
            "window: {window}\nsummary model: {}\nrecall: {recall}\nrunning summary: {summary}",
            self.summary_model()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_given_now_replace_the_stored_settings() {
        let stored = ContextSettings {
            window: Some(4096),
            summary_model: Some("openai/gpt-4o-mini".into()),
            recall: Some(true),
            embed_model: None,
        };
        let args = ContextArgs {
            context_window: Some(1024),
            recall: Some(Toggle::Off),
            ..ContextArgs::default()
        };
        let merged = ContextSettings::merged(Some(stored), &args);
        assert_eq!(
            merged,
            ContextSettings {
                window: Some(1024),
                summary_model: Some("openai/gpt-4o-mini".into()),
                recall: Some(false),
                embed_model: None,
            }
        );
        let json = serde_json::to_string(&merged).unwrap();
        assert_eq!(
            serde_json::from_str::<ContextSettings>(&json).unwrap(),
            merged
        );
    }
}
