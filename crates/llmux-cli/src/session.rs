//! Named chat sessions (`llmux chat --session NAME`): the conversation kept in SQLite in the
//! user's data directory and resumed by the next run, with its context settings and running
//! summary ([`crate::context`]).
//!
//! The data directory is `$LLMUX_DATA_DIR`, else `$XDG_DATA_HOME/llmux`, else
//! `$HOME/.local/share/llmux`; the database is `sessions.sqlite3` in it. A session row keeps the
//! last model and system prompt and the tokens the upstream reported over the session's turns;
//! messages are stored in order as core `Message` JSON; `session_context` keeps the context
//! settings and the running summary as JSON. Each save rewrites the session in one transaction,
//! so a crash leaves the previous turn or the new one, never half.

use std::path::{Path, PathBuf};

use clap::Args;
use llmux_core::context::SummaryState;
use llmux_core::{Message, Usage};
use rusqlite::{params, Connection, OptionalExtension};

use crate::context::{ContextArgs, ContextSettings};
use crate::conversation::Conversation;
use crate::error::{CliError, Result};

/// The database file inside the data directory.
pub const DB_FILE: &str = "sessions.sqlite3";

const SCHEMA_VERSION: i64 = 2;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sessions (
    name          TEXT PRIMARY KEY,
    model         TEXT NOT NULL,
    system        TEXT,
    input_tokens  INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    turns         INTEGER NOT NULL DEFAULT 0,
    created_unix  INTEGER NOT NULL,
    updated_unix  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    session TEXT NOT NULL REFERENCES sessions(name) ON DELETE CASCADE,
    seq     INTEGER NOT NULL,
    message TEXT NOT NULL,
    PRIMARY KEY (session, seq)
);
CREATE TABLE IF NOT EXISTS session_context (
    session  TEXT PRIMARY KEY REFERENCES sessions(name) ON DELETE CASCADE,
    settings TEXT NOT NULL,
    summary  TEXT
);";

/// Session flags of `llmux chat`.
#[derive(Debug, Clone, Default, Args)]
pub struct SessionArgs {
    /// Keep the conversation under this name and resume it next time (stored in SQLite in the
    /// data directory: $LLMUX_DATA_DIR, $XDG_DATA_HOME/llmux or ~/.local/share/llmux).
    #[arg(long, value_name = "NAME")]
    pub session: Option<String>,
    #[command(flatten)]
    pub context: ContextArgs,
}

/// `llmux sessions`.
#[derive(Debug, Args)]
pub struct SessionsArgs {
    #[command(subcommand)]
    pub command: SessionsCommand,
}

/// `llmux sessions` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum SessionsCommand {
    /// List the stored sessions, most recently used first: name, model, messages, turns,
    /// reported tokens, last update.
    List {
        /// A JSON list of sessions instead of the aligned lines.
        #[arg(long)]
        json: bool,
    },
    /// Delete a session and its messages.
    Delete {
        /// The session's name (as given to `--session`).
        #[arg(value_name = "NAME")]
        name: String,
    },
}

/// Runs `llmux sessions …`.
pub fn run(args: SessionsArgs) -> Result<()> {
    let db = db_path()?;
    match args.command {
        SessionsCommand::List { json } => {
            let sessions = list_at(&db)?;
            if json {
                let text = serde_json::to_string_pretty(&sessions)
                    .map_err(|e| CliError::msg(format!("cannot encode the sessions: {e}")))?;
                println!("{text}");
            } else {
                for s in &sessions {
                    println!("{}", s.line());
                }
            }
        }
        SessionsCommand::Delete { name } => {
            if !delete_at(&db, &name)? {
                return Err(CliError::msg(format!(
                    "no session named {name:?} (`llmux sessions list` shows them)"
                )));
            }
            println!("deleted session {name}");
        }
    }
    Ok(())
}

/// Where llmux keeps its data, from an environment lookup (see the module docs).
pub fn data_dir_from(var: impl Fn(&str) -> Option<String>) -> Result<PathBuf> {
    let set = |k: &str| var(k).filter(|v| !v.is_empty());
    if let Some(dir) = set("LLMUX_DATA_DIR") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(xdg) = set("XDG_DATA_HOME") {
        return Ok(Path::new(&xdg).join("llmux"));
    }
    if let Some(home) = set("HOME") {
        return Ok(Path::new(&home).join(".local/share/llmux"));
    }
    Err(CliError::msg(
        "no data directory for sessions: set LLMUX_DATA_DIR (or HOME)",
    ))
}

/// Where llmux keeps its data, from the process environment.
pub fn data_dir() -> Result<PathBuf> {
    data_dir_from(|k| std::env::var(k).ok())
}

fn db_err(context: &str, e: rusqlite::Error) -> CliError {
    CliError::msg(format!("session store: {context}: {e}"))
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Tokens the upstream reported over a session's turns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionUsage {
    /// Input tokens, summed over turns.
    pub input_tokens: u64,
    /// Output tokens, summed over turns.
    pub output_tokens: u64,
    /// Completed turns.
    pub turns: u64,
}

/// An open session: its name, its row in the store, its usage so far.
#[derive(Debug)]
pub struct Session {
    conn: Connection,
    name: String,
    /// Tokens reported so far.
    pub usage: SessionUsage,
    /// Messages that were resumed from the store when it was opened.
    pub resumed: usize,
    /// The context settings and running summary, stored by the next [`Session::save`].
    pub context: StoredContext,
}

/// What a session keeps of its context: the settings and the running summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredContext {
    /// The settings (`None` for a session stored before they were kept).
    pub settings: Option<ContextSettings>,
    /// The running summary.
    pub summary: Option<SummaryState>,
}

impl Session {
    /// Opens (or creates) session `name` in the data directory and returns it with its
    /// conversation: the stored messages, with `model` (this run's model) and the system prompt
    /// given now, else the stored one.
    pub fn open(
        name: &str,
        model: &str,
        system: Option<String>,
    ) -> Result<(Session, Conversation)> {
        let dir = data_dir()?;
        std::fs::create_dir_all(&dir)
            .map_err(|e| CliError::io(format!("creating {}", dir.display()), e))?;
        Self::open_at(&dir.join(DB_FILE), name, model, system)
    }

    /// Like [`Session::open`], with the database at `db`.
    pub fn open_at(
        db: &Path,
        name: &str,
        model: &str,
        system: Option<String>,
    ) -> Result<(Session, Conversation)> {
        if name.trim().is_empty() || name.chars().any(char::is_control) {
            return Err(CliError::msg(format!(
                "session name {name:?} must be non-empty printable text"
            )));
        }
        let conn = open_db(db)?;
        let row: Option<(Option<String>, i64, i64, i64)> = conn
            .query_row(
                "SELECT system, input_tokens, output_tokens, turns FROM sessions WHERE name = ?1",
                params![name],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
            .map_err(|e| db_err("reading the session", e))?;
        let (stored_system, usage) = match row {
            Some((sys, i, o, t)) => (
                sys,
                SessionUsage {
                    input_tokens: i.unsigned_abs(),
                    output_tokens: o.unsigned_abs(),
                    turns: t.unsigned_abs(),
                },
            ),
            None => (None, SessionUsage::default()),
        };
        let messages = load_messages(&conn, name)?;
        let context = load_context(&conn, name)?;
        let conv = Conversation::restore(model, system.or(stored_system), messages);
        let session = Session {
            conn,
            name: name.to_owned(),
            usage,
            resumed: conv.messages().len(),
            context,
        };
        Ok((session, conv))
    }

    /// The session's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Counts a completed turn and the tokens the upstream reported for it (kept by the next
    /// [`Session::save`]).
    pub fn count_turn(&mut self, usage: Option<&Usage>) {
        self.usage.turns += 1;
        if let Some(u) = usage {
            self.usage.input_tokens += u.input_tokens;
            self.usage.output_tokens += u.output_tokens;
        }
    }

    /// Stores `conv` (model, system prompt, messages) and the usage as the session's state.
    pub fn save(&mut self, conv: &Conversation) -> Result<()> {
        let now = now_unix();
        let tx = self
            .conn
            .transaction()
            .map_err(|e| db_err("starting a transaction", e))?;
        let clamp = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        tx.execute(
            "INSERT INTO sessions (name, model, system, input_tokens, output_tokens, turns,
                                   created_unix, updated_unix)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)
             ON CONFLICT(name) DO UPDATE SET model = ?2, system = ?3, input_tokens = ?4,
                 output_tokens = ?5, turns = ?6, updated_unix = ?7",
            params![
                self.name,
                conv.model(),
                conv.system(),
                clamp(self.usage.input_tokens),
                clamp(self.usage.output_tokens),
                clamp(self.usage.turns),
                now
            ],
        )
        .map_err(|e| db_err("saving the session", e))?;
        tx.execute(
            "DELETE FROM messages WHERE session = ?1",
            params![self.name],
        )
        .map_err(|e| db_err("saving the messages", e))?;
        for (seq, m) in conv.messages().iter().enumerate() {
            let json = serde_json::to_string(m)
                .map_err(|e| CliError::msg(format!("cannot encode a message: {e}")))?;
            tx.execute(
                "INSERT INTO messages (session, seq, message) VALUES (?1, ?2, ?3)",
                params![self.name, clamp(seq as u64), json],
            )
            .map_err(|e| db_err("saving the messages", e))?;
        }
        let encode = |what: &str, e: serde_json::Error| {
            CliError::msg(format!("cannot encode the {what}: {e}"))
        };
        let settings = serde_json::to_string(&self.context.settings.clone().unwrap_or_default())
            .map_err(|e| encode("context settings", e))?;
        let summary = self
            .context
            .summary
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| encode("running summary", e))?;
        tx.execute(
            "INSERT INTO session_context (session, settings, summary) VALUES (?1, ?2, ?3)
             ON CONFLICT(session) DO UPDATE SET settings = ?2, summary = ?3",
            params![self.name, settings, summary],
        )
        .map_err(|e| db_err("saving the context", e))?;
        tx.commit().map_err(|e| db_err("committing", e))
    }
}

/// One stored session, as `llmux sessions list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SessionInfo {
    /// The session's name.
    pub name: String,
    /// The model of its last run.
    pub model: String,
    /// Stored messages.
    pub messages: u64,
    /// Completed turns.
    pub turns: u64,
    /// Input tokens the upstream reported over its turns.
    pub input_tokens: u64,
    /// Output tokens the upstream reported over its turns.
    pub output_tokens: u64,
    /// Last saved, Unix seconds.
    pub updated_unix: i64,
    /// Last saved, `YYYY-MM-DD HH:MM` in UTC.
    pub updated: String,
}

impl SessionInfo {
    /// One aligned line: name, model, messages, turns, tokens, when it was last saved.
    pub fn line(&self) -> String {
        format!(
            "{:<20} {:<28} {:>5} messages {:>4} turns {:>8} in {:>8} out  updated {} UTC",
            self.name,
            self.model,
            self.messages,
            self.turns,
            self.input_tokens,
            self.output_tokens,
            self.updated
        )
    }
}

/// The sessions stored in the database at `db`, most recently saved first (none when the file
/// does not exist: listing creates nothing).
pub fn list_at(db: &Path) -> Result<Vec<SessionInfo>> {
    if !db.exists() {
        return Ok(Vec::new());
    }
    let conn = open_db(db)?;
    let mut stmt = conn
        .prepare(
            "SELECT s.name, s.model, s.turns, s.input_tokens, s.output_tokens, s.updated_unix,
                    strftime('%Y-%m-%d %H:%M', s.updated_unix, 'unixepoch'),
                    (SELECT COUNT(*) FROM messages m WHERE m.session = s.name)
             FROM sessions s ORDER BY s.updated_unix DESC, s.name",
        )
        .map_err(|e| db_err("listing the sessions", e))?;
    let rows = stmt
        .query_map([], |r| {
            Ok(SessionInfo {
                name: r.get(0)?,
                model: r.get(1)?,
                turns: r.get::<_, i64>(2)?.unsigned_abs(),
                input_tokens: r.get::<_, i64>(3)?.unsigned_abs(),
                output_tokens: r.get::<_, i64>(4)?.unsigned_abs(),
                updated_unix: r.get(5)?,
                updated: r.get::<_, Option<String>>(6)?.unwrap_or_default(),
                messages: r.get::<_, i64>(7)?.unsigned_abs(),
            })
        })
        .map_err(|e| db_err("listing the sessions", e))?;
    rows.collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| db_err("listing the sessions", e))
}

/// Deletes session `name` and its messages from the database at `db`; `false` when there is no
/// such session.
pub fn delete_at(db: &Path, name: &str) -> Result<bool> {
    if !db.exists() {
        return Ok(false);
    }
    let conn = open_db(db)?;
    // Messages go with their session (`ON DELETE CASCADE`, foreign keys are on).
    let n = conn
        .execute("DELETE FROM sessions WHERE name = ?1", params![name])
        .map_err(|e| db_err("deleting the session", e))?;
    Ok(n > 0)
}

/// The session database in the data directory.
pub fn db_path() -> Result<PathBuf> {
    Ok(data_dir()?.join(DB_FILE))
}

fn open_db(db: &Path) -> Result<Connection> {
    let conn = Connection::open(db).map_err(|e| db_err(&format!("opening {}", db.display()), e))?;
    init(&conn)?;
    Ok(conn)
}

fn init(conn: &Connection) -> Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(|e| db_err("configuring", e))?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| db_err("reading the schema version", e))?;
    if version > SCHEMA_VERSION {
        return Err(CliError::msg(format!(
            "session store: schema version {version} is newer than this llmux understands \
             ({SCHEMA_VERSION}); upgrade llmux"
        )));
    }
    conn.execute_batch(SCHEMA)
        .and_then(|()| conn.pragma_update(None, "user_version", SCHEMA_VERSION))
        .and_then(|()| conn.pragma_update(None, "foreign_keys", true))
        .map_err(|e| db_err("creating the tables", e))
}

fn load_context(conn: &Connection, name: &str) -> Result<StoredContext> {
    let row: Option<(String, Option<String>)> = conn
        .query_row(
            "SELECT settings, summary FROM session_context WHERE session = ?1",
            params![name],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(|e| db_err("reading the context", e))?;
    let Some((settings, summary)) = row else {
        return Ok(StoredContext::default());
    };
    let unreadable = |what: &str, e: serde_json::Error| {
        CliError::msg(format!(
            "session `{name}`: the stored {what} cannot be read ({e})"
        ))
    };
    Ok(StoredContext {
        settings: Some(
            serde_json::from_str(&settings).map_err(|e| unreadable("context settings", e))?,
        ),
        summary: summary
            .map(|s| serde_json::from_str(&s))
            .transpose()
            .map_err(|e| unreadable("running summary", e))?,
    })
}

fn load_messages(conn: &Connection, name: &str) -> Result<Vec<Message>> {
    let mut stmt = conn
        .prepare("SELECT seq, message FROM messages WHERE session = ?1 ORDER BY seq")
        .map_err(|e| db_err("reading the messages", e))?;
    let rows = stmt
        .query_map(params![name], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })
        .map_err(|e| db_err("reading the messages", e))?;
    let mut messages = Vec::new();
    for row in rows {
        let (seq, json) = row.map_err(|e| db_err("reading the messages", e))?;
        let m = serde_json::from_str(&json).map_err(|e| {
            CliError::msg(format!(
                "session `{name}`: stored message {seq} cannot be read ({e})"
            ))
        })?;
        messages.push(m);
    }
    Ok(messages)
}

#[cfg(test)]
mod tests {
    use super::*;
    use llmux_core::{ChatResponse, Choice, FinishReason};

    fn answer(text: &str) -> ChatResponse {
        ChatResponse {
            id: "r".into(),
            model: "m".into(),
            created: None,
            choices: vec![Choice {
                index: 0,
                message: Message::assistant(text),
                finish_reason: Some(FinishReason::Stop),
            }],
            usage: Some(Usage::new(10, 3)),
            request_id: None,
        }
    }

    #[test]
    fn data_dir_prefers_llmux_then_xdg_then_home() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        const ALL: &[(&str, &str)] = &[
            ("LLMUX_DATA_DIR", "/d"),
            ("XDG_DATA_HOME", "/x"),
            ("HOME", "/h"),
        ];
        assert_eq!(data_dir_from(env(ALL)).unwrap(), Path::new("/d"));
        assert_eq!(
            data_dir_from(env(&ALL[1..])).unwrap(),
            Path::new("/x/llmux")
        );
        assert_eq!(
            data_dir_from(env(&ALL[2..])).unwrap(),
            Path::new("/h/.local/share/llmux")
        );
        assert!(data_dir_from(env(&[])).is_err());
    }

    #[test]
    fn a_session_resumes_its_messages_system_prompt_and_usage() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join(DB_FILE);
        let (mut s, mut conv) =
            Session::open_at(&db, "work", "openai/gpt-4o", Some("be brief".into())).unwrap();
        assert_eq!(s.resumed, 0);
        let resp = answer("You said: hi");
        conv.record("hi", &resp);
        s.count_turn(resp.usage.as_ref());
        s.save(&conv).unwrap();

        // Another name is another conversation.
        let (_, other) = Session::open_at(&db, "play", "openai/gpt-4o", None).unwrap();
        assert!(other.messages().is_empty());

        let (s, conv) = Session::open_at(&db, "work", "dashscope/qwen-plus", None).unwrap();
        assert_eq!(s.resumed, 2);
        assert_eq!(conv.model(), "dashscope/qwen-plus");
        assert_eq!(conv.system(), Some("be brief"));
        assert_eq!(
            s.usage,
            SessionUsage {
                input_tokens: 10,
                output_tokens: 3,
                turns: 1
            }
        );
        // A system prompt given now replaces the stored one.
        let (_, conv) = Session::open_at(&db, "work", "m/x", Some("new".into())).unwrap();
        assert_eq!(conv.system(), Some("new"));
    }

    #[test]
    fn clearing_and_saving_empties_the_stored_conversation() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join(DB_FILE);
        let (mut s, mut conv) = Session::open_at(&db, "w", "openai/gpt-4o", None).unwrap();
        conv.record("a", &answer("b"));
        s.save(&conv).unwrap();
        conv.clear();
        s.save(&conv).unwrap();
        let (s, conv) = Session::open_at(&db, "w", "openai/gpt-4o", None).unwrap();
        assert!(conv.messages().is_empty());
        assert_eq!(s.usage.turns, 0);
        assert!(Session::open_at(&db, " ", "openai/gpt-4o", None).is_err());
    }

    #[test]
    fn context_settings_and_running_summary_are_kept_with_the_session() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join(DB_FILE);
        let (mut s, mut conv) = Session::open_at(&db, "w", "openai/gpt-4o", None).unwrap();
        assert_eq!(s.context, StoredContext::default());
        conv.record("a", &answer("b"));
        let context = StoredContext {
            settings: Some(ContextSettings {
                window: Some(512),
                summary_model: Some("openai/gpt-4o-mini".into()),
                recall: Some(true),
                embed_model: None,
            }),
            summary: Some(SummaryState {
                covered: 2,
                fingerprint: "ab".repeat(32),
                text: "the user said a".into(),
            }),
        };
        s.context = context.clone();
        s.save(&conv).unwrap();
        let (s, _) = Session::open_at(&db, "w", "openai/gpt-4o", None).unwrap();
        assert_eq!(s.context, context);
        // Deleting the session deletes its context too.
        assert!(delete_at(&db, "w").unwrap());
        let (s, _) = Session::open_at(&db, "w", "openai/gpt-4o", None).unwrap();
        assert_eq!(s.context, StoredContext::default());
    }
}
