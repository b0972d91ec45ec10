//! The interactive chat: rustyline input with a line history kept across runs, a kept
//! conversation, `/commands`, and Ctrl-C that cancels the answer being written without leaving.
//!
//! The history file is `$LLMUX_HISTORY_FILE`, else `history.txt` in the data directory (see
//! [`crate::session`]); it keeps the last [`HISTORY_SIZE`] lines, is readable by its owner only
//! (0600), is appended after every line (so several REPLs share it), and leaves out lines that
//! start with a space and repeats of the line before.

use std::io;
use std::path::PathBuf;

use llmux_core::{Client, Usage};
use llmux_emulator::Emulator;
use rustyline::error::ReadlineError;
use rustyline::DefaultEditor;
use tokio::runtime::Runtime;

use crate::chat::{answer, cancellable, ChatArgs};
use crate::context::ChatContext;
use crate::conversation::Conversation;
use crate::error::{CliError, Result};
use crate::input::{Command, Input, LineAssembler, HELP};
use crate::output::Renderer;
use crate::request;
use crate::session::{self, Session};

const PROMPT: &str = "> ";
const CONTINUE: &str = "... ";

/// Lines the history keeps; older ones are dropped.
pub const HISTORY_SIZE: usize = 1000;

/// The variable that names the history file.
pub const HISTORY_ENV: &str = "LLMUX_HISTORY_FILE";

/// The history file name inside the data directory.
pub const HISTORY_FILE: &str = "history.txt";

/// The history file, from an environment lookup: `$LLMUX_HISTORY_FILE` when set and not empty,
/// else [`HISTORY_FILE`] in the data directory.
pub fn history_path_from(var: impl Fn(&str) -> Option<String>) -> Result<PathBuf> {
    if let Some(path) = var(HISTORY_ENV).filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    Ok(session::data_dir_from(var)?.join(HISTORY_FILE))
}

/// An editor with the history configured and loaded; the path to append to, or `None` when
/// the history cannot be used (said once on stderr; the REPL works without it).
fn editor_with_history() -> Result<(DefaultEditor, Option<PathBuf>)> {
    let config = rustyline::Config::builder()
        .max_history_size(HISTORY_SIZE)
        .and_then(|b| b.history_ignore_dups(true))
        .map(|b| b.history_ignore_space(true).build())
        .map_err(|e| CliError::msg(format!("configuring the line editor: {e}")))?;
    let mut editor = DefaultEditor::with_config(config)
        .map_err(|e| CliError::msg(format!("cannot open the terminal for the REPL: {e}")))?;
    let path = match history_path_from(|k| std::env::var(k).ok()) {
        Ok(path) => path,
        Err(e) => {
            eprintln!("note: no line history: {e}");
            return Ok((editor, None));
        }
    };
    match editor.load_history(&path) {
        Ok(()) => {}
        Err(ReadlineError::Io(e)) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                if let Err(e) = std::fs::create_dir_all(dir) {
                    eprintln!("note: no line history: creating {}: {e}", dir.display());
                    return Ok((editor, None));
                }
            }
        }
        // A file that cannot be read is not overwritten.
        Err(e) => {
            eprintln!("note: no line history: reading {}: {e}", path.display());
            return Ok((editor, None));
        }
    }
    Ok((editor, Some(path)))
}

/// Whether the loop goes on.
enum Flow {
    Continue,
    Exit,
}

struct Repl<'a> {
    rt: &'a Runtime,
    args: &'a ChatArgs,
    verbose: u8,
    client: Client,
    conv: Conversation,
    /// The named session the conversation is kept in (`--session`).
    session: Option<Session>,
    /// The conversation's context manager, kept across turns.
    context: ChatContext,
    /// What the upstream reported for the last answer.
    last_usage: Option<Usage>,
    /// With `--emulate`: the emulators started so far (one more for each provider `/model`
    /// names that none of them serves).
    emulators: Vec<Emulator>,
}

/// Runs the REPL until `/exit` or Ctrl-D. With `--emulate`, `emulators` holds the one started
/// for `-m`'s provider.
pub fn run(rt: &Runtime, args: &ChatArgs, verbose: u8, emulators: Vec<Emulator>) -> Result<()> {
    let pid = request::provider_of(&args.model)?;
    let client = request::build_client_with(
        pid,
        args.base_url.as_deref(),
        args.emulated_env.as_deref(),
        &args.resilience,
    )?;
    // A missing key is reported now, not after the first question is typed.
    client.resolve(&args.model)?;
    let (mut editor, mut history) = editor_with_history()?;
    let (session, conv) = match &args.sessions.session {
        Some(name) => {
            let (s, c) = Session::open(name, &args.model, args.request.system.clone())?;
            (Some(s), c)
        }
        None => (
            None,
            Conversation::new(args.model.as_str(), args.request.system.clone()),
        ),
    };
    let context = ChatContext::open(
        &args.model,
        session.as_ref(),
        &args.sessions.context,
        &client,
    )?;
    let mut repl = Repl {
        rt,
        args,
        verbose,
        client,
        conv,
        session,
        context,
        last_usage: None,
        emulators,
    };
    eprintln!(
        "llmux chat with {} — /help for commands, Ctrl-D to leave",
        repl.conv.model()
    );
    if let Some(s) = &repl.session {
        match s.resumed {
            0 => eprintln!("session {}: new", s.name()),
            n => eprintln!("session {}: resumed {n} messages", s.name()),
        }
    }
    let mut lines = LineAssembler::new();
    loop {
        let prompt = if lines.is_pending() { CONTINUE } else { PROMPT };
        let line = match editor.readline(prompt) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => {
                lines.reset();
                continue;
            }
            Err(ReadlineError::Eof) => return Ok(()),
            Err(e) => return Err(CliError::msg(format!("reading input: {e}"))),
        };
        if !line.trim().is_empty() {
            // History is a convenience; failing to record an entry is not worth stopping for.
            let _ = editor.add_history_entry(line.as_str());
            if let Some(path) = &history {
                if let Err(e) = editor.append_history(path) {
                    eprintln!("note: line history not saved to {}: {e}", path.display());
                    history = None;
                }
            }
        }
        let mut flow = Flow::Continue;
        for input in lines.push_text(&line) {
            flow = match input {
                Err(problem) => {
                    eprintln!("error: {problem}");
                    Flow::Continue
                }
                Ok(Input::Message(text)) => repl.turn(&text)?,
                Ok(Input::Command(cmd)) => repl.command(cmd),
            };
            if let Flow::Exit = flow {
                break;
            }
        }
        if let Flow::Exit = flow {
            return Ok(());
        }
    }
}

impl Repl<'_> {
    /// Sends one message and keeps the exchange if the answer completes. Only an unusable
    /// stdout ends the REPL; any other failure is reported and the REPL goes on.
    fn turn(&mut self, text: &str) -> Result<Flow> {
        let fitted = self.context.fit(&self.conv, text, &self.args.request);
        let req = match self.rt.block_on(fitted) {
            Ok(req) => req,
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(Flow::Continue);
            }
        };
        let mut out = Renderer::new(io::stdout(), io::stderr(), self.args.style(self.verbose));
        let stream = !self.args.no_stream;
        let result = self
            .rt
            .block_on(cancellable(answer(&self.client, req, stream, &mut out)));
        out.close()?;
        match result {
            Ok(resp) => {
                self.conv.record(text, &resp);
                self.last_usage = resp.usage;
                if let Some(s) = &mut self.session {
                    s.count_turn(resp.usage.as_ref());
                }
                self.persist();
            }
            Err(CliError::Cancelled) => eprintln!("[cancelled]"),
            Err(e) if e.is_broken_pipe() => return Err(e),
            Err(e) => eprintln!("error: {e}"),
        }
        Ok(Flow::Continue)
    }

    fn command(&mut self, cmd: Command) -> Flow {
        match cmd {
            Command::Exit => return Flow::Exit,
            Command::Help => eprintln!("{HELP}"),
            Command::Clear => {
                self.conv.clear();
                self.context.clear();
                self.persist();
                eprintln!("conversation cleared");
            }
            Command::Model(None) => eprintln!("model: {}", self.conv.model()),
            Command::Model(Some(model)) => match self.switch_model(&model) {
                Ok(()) => {
                    self.persist();
                    eprintln!("model: {model}");
                }
                Err(e) => eprintln!("error: {e}"),
            },
            Command::System(system) => {
                let what = if system.is_some() { "set" } else { "removed" };
                self.conv.set_system(system);
                self.persist();
                eprintln!("system prompt {what}");
            }
            Command::Save(path) => match self.save(&path) {
                Ok(n) => eprintln!("saved {n} messages to {path}"),
                Err(e) => eprintln!("error: {e}"),
            },
            Command::Sessions => match session::db_path().and_then(|db| session::list_at(&db)) {
                Ok(list) if list.is_empty() => eprintln!("no sessions stored"),
                Ok(list) => {
                    for s in list {
                        eprintln!("{}", s.line());
                    }
                }
                Err(e) => eprintln!("error: {e}"),
            },
            Command::Tokens => match self.tokens() {
                Ok(text) => eprintln!("{text}"),
                Err(e) => eprintln!("error: {e}"),
            },
            Command::Context => eprintln!("{}", self.context.describe()),
        }
        Flow::Continue
    }

    /// Stores the conversation in its session, if it has one; a failure is reported, and the
    /// REPL goes on.
    fn persist(&mut self) {
        if let Some(s) = &mut self.session {
            self.context.store_in(s);
            if let Err(e) = s.save(&self.conv) {
                eprintln!("error: {e}");
            }
        }
    }

    /// Switches to `model`, whatever its provider: with `--emulate` that provider's emulator is
    /// started when none serves it yet (every provider is emulated); otherwise its credentials
    /// come from the environment, and a missing one is an error that leaves the model as it was.
    fn switch_model(&mut self, model: &str) -> Result<()> {
        let pid = request::provider_of(model)?;
        let client = if self.args.emulate {
            self.emulated_client(pid)?
        } else {
            self.client.clone()
        };
        client.resolve(model)?;
        self.context.set_model(model, &client)?;
        self.client = client;
        self.conv.set_model(model);
        Ok(())
    }

    /// A client for provider `pid` pointed at its emulator, started now if needed.
    fn emulated_client(&mut self, pid: &str) -> Result<Client> {
        let env = match self.emulators.iter().find_map(|e| e.env_for(pid)) {
            Some(env) => env,
            None => {
                let (emu, env) = self.rt.block_on(crate::emulate::start_for(pid))?;
                self.emulators.push(emu);
                env
            }
        };
        request::build_client_with(pid, None, Some(&env), &self.args.resilience)
    }

    /// The `/tokens` report: the exact size of the next request, then what the upstream
    /// reported for the last answer and the session.
    fn tokens(&self) -> Result<String> {
        let lines = self.context.tokens_lines(&self.conv, &self.args.request);
        let mut out = self.rt.block_on(lines)?;
        if let Some(u) = &self.last_usage {
            out.push_str(&format!(
                "\nlast answer: {} in, {} out (reported by the upstream)",
                u.input_tokens, u.output_tokens
            ));
        }
        if let Some(s) = &self.session {
            out.push_str(&format!(
                "\nsession {}: {} in, {} out over {} turns",
                s.name(),
                s.usage.input_tokens,
                s.usage.output_tokens,
                s.usage.turns
            ));
        }
        Ok(out)
    }

    fn save(&self, path: &str) -> Result<usize> {
        let doc = self.conv.to_json();
        let n = doc["messages"].as_array().map_or(0, Vec::len);
        let mut text = serde_json::to_string_pretty(&doc)
            .map_err(|e| CliError::msg(format!("cannot encode the conversation: {e}")))?;
        text.push('\n');
        std::fs::write(path, text).map_err(|e| CliError::io(format!("writing {path}"), e))?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn history_file_is_the_variable_else_in_the_data_directory() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        assert_eq!(
            history_path_from(env(&[("LLMUX_HISTORY_FILE", "/h/x"), ("HOME", "/home")])).unwrap(),
            Path::new("/h/x")
        );
        // Empty is unset.
        assert_eq!(
            history_path_from(env(&[("LLMUX_HISTORY_FILE", ""), ("LLMUX_DATA_DIR", "/d")]))
                .unwrap(),
            Path::new("/d/history.txt")
        );
        assert_eq!(
            history_path_from(env(&[("HOME", "/home")])).unwrap(),
            Path::new("/home/.local/share/llmux/history.txt")
        );
        assert!(history_path_from(env(&[])).is_err());
    }
}
