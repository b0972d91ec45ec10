//! The interactive chat: rustyline input, a kept conversation, `/commands`, and Ctrl-C that
//! cancels the answer being written without leaving.

use std::io;

use llmux_core::{Client, Usage};
use rustyline::error::ReadlineError;
use rustyline::DefaultEditor;
use tokio::runtime::Runtime;

use crate::chat::{answer, cancellable, ChatArgs};
use crate::conversation::Conversation;
use crate::error::{CliError, Result};
use crate::input::{Command, Input, LineAssembler, HELP};
use crate::output::Renderer;
use crate::request;
use crate::session::{self, Session};

const PROMPT: &str = "> ";
const CONTINUE: &str = "... ";

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
    /// What the upstream reported for the last answer.
    last_usage: Option<Usage>,
}

/// Runs the REPL until `/exit` or Ctrl-D.
pub fn run(rt: &Runtime, args: &ChatArgs, verbose: u8) -> Result<()> {
    let pid = request::provider_of(&args.model)?;
    let client = request::build_client_with(
        pid,
        args.base_url.as_deref(),
        args.emulated_env.as_deref(),
        &args.resilience,
    )?;
    // A missing key is reported now, not after the first question is typed.
    client.resolve(&args.model)?;
    let mut editor = DefaultEditor::new()
        .map_err(|e| CliError::msg(format!("cannot open the terminal for the REPL: {e}")))?;
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
    let mut repl = Repl {
        rt,
        args,
        verbose,
        client,
        conv,
        session,
        last_usage: None,
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
        let fitted = session::fit_to_window(&self.conv, text, &self.args.request, &self.client);
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
            Command::Tokens => eprintln!(
                "{}",
                session::tokens_report(
                    &self.conv,
                    self.args.sessions.context_window,
                    self.args.request.max_tokens,
                    self.last_usage.as_ref(),
                    self.session.as_ref().map(|s| (s.name(), &s.usage)),
                )
            ),
        }
        Flow::Continue
    }

    /// Stores the conversation in its session, if it has one; a failure is reported, and the
    /// REPL goes on.
    fn persist(&mut self) {
        if let Some(s) = &mut self.session {
            if let Err(e) = s.save(&self.conv) {
                eprintln!("error: {e}");
            }
        }
    }

    fn switch_model(&mut self, model: &str) -> Result<()> {
        request::provider_of(model)?;
        self.client.resolve(model)?;
        self.conv.set_model(model);
        Ok(())
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
