//! REPL input as pure functions: joining continued lines and `"""` blocks into one message,
//! and parsing `/commands`.

/// What one or more typed lines amount to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A message for the model.
    Message(String),
    /// A REPL command.
    Command(Command),
}

/// REPL commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Forget the conversation, keep the system prompt.
    Clear,
    /// Switch to `provider/model`, or show the current model.
    Model(Option<String>),
    /// Set the system prompt, or remove it when no text is given.
    System(Option<String>),
    /// Write the conversation as JSON to this file.
    Save(String),
    /// Show the exact size of the next request against the context window.
    Tokens,
    /// Show the context settings and the running summary.
    Context,
    /// List the stored sessions.
    Sessions,
    /// List the commands.
    Help,
    /// Leave.
    Exit,
}

/// The `/help` text.
pub const HELP: &str = "\
messages:
  type a line and press Enter; end a line with \\ to continue on the next one;
  a block between two lines of \"\"\" is one message; start with // to send a line beginning with /
commands:
  /clear            forget the conversation (the system prompt stays)
  /model [P/M]      switch to provider/model, or show the current one
  /system [TEXT]    set the system prompt, or remove it
  /save FILE        write the conversation as JSON ({\"model\":…,\"messages\":[…]})
  /tokens           exact tokens of the next request (summary, recalled and kept turns) and the window
  /context          the context window, summary model, recall and the running summary
  /sessions         list the stored sessions (`llmux sessions delete NAME` deletes one)
  /help             this text
  /exit             leave (or Ctrl-D)
keys:
  Ctrl-C            cancel the answer being written, or clear the line being typed
  Up, Down, Ctrl-R  earlier lines, also from past runs (a line starting with a space is not kept)";

const BLOCK: &str = "\"\"\"";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
enum State {
    #[default]
    Idle,
    /// Lines ended with `\` so far.
    Continued(String),
    /// Inside a `"""` block.
    Block(String),
}

/// Joins typed lines into messages and commands.
#[derive(Debug, Default)]
pub struct LineAssembler {
    state: State,
}

impl LineAssembler {
    /// A fresh assembler.
    pub fn new() -> Self {
        Self::default()
    }

    /// True while a continued line or a `"""` block is open (the prompt shows `...`).
    pub fn is_pending(&self) -> bool {
        self.state != State::Idle
    }

    /// Drops a half-typed message (Ctrl-C at the prompt).
    pub fn reset(&mut self) {
        self.state = State::Idle;
    }

    /// Adds what the line editor returned, which holds several lines when text was pasted
    /// (bracketed paste keeps the newlines). A paste at the prompt is one message, unless it
    /// opens a `"""` block; inside a block or a continued line it is taken line by line.
    pub fn push_text(&mut self, text: &str) -> Vec<Result<Input, String>> {
        let text = text.replace("\r\n", "\n").replace('\r', "\n");
        if !text.contains('\n') {
            return self.push(&text).into_iter().collect();
        }
        let first = text.lines().next().unwrap_or_default();
        if self.state == State::Idle && first.trim() != BLOCK {
            return message(text.trim_end_matches('\n').to_owned())
                .into_iter()
                .collect();
        }
        text.lines().filter_map(|line| self.push(line)).collect()
    }

    /// Adds one typed line. Returns what is complete: `None` while more lines are expected or
    /// the line was blank, `Some(Err(..))` for a command that does not parse.
    pub fn push(&mut self, line: &str) -> Option<Result<Input, String>> {
        match std::mem::take(&mut self.state) {
            State::Idle => {
                if line.trim() == BLOCK {
                    self.state = State::Block(String::new());
                    return None;
                }
                if let Some(head) = line.strip_suffix('\\') {
                    self.state = State::Continued(format!("{head}\n"));
                    return None;
                }
                let trimmed = line.trim();
                if trimmed.is_empty() {
                    return None;
                }
                if let Some(rest) = trimmed.strip_prefix("//") {
                    return Some(Ok(Input::Message(format!("/{rest}"))));
                }
                if trimmed.starts_with('/') {
                    return Some(parse_command(trimmed).map(Input::Command));
                }
                Some(Ok(Input::Message(line.to_owned())))
            }
            State::Continued(mut buf) => {
                if let Some(head) = line.strip_suffix('\\') {
                    buf.push_str(head);
                    buf.push('\n');
                    self.state = State::Continued(buf);
                    return None;
                }
                buf.push_str(line);
                message(buf)
            }
            State::Block(mut buf) => {
                if line.trim() == BLOCK {
                    if buf.ends_with('\n') {
                        buf.pop();
                    }
                    return message(buf);
                }
                buf.push_str(line);
                buf.push('\n');
                self.state = State::Block(buf);
                None
            }
        }
    }
}

fn message(text: String) -> Option<Result<Input, String>> {
    (!text.trim().is_empty()).then_some(Ok(Input::Message(text)))
}

/// Parses a line starting with `/`.
pub fn parse_command(line: &str) -> Result<Command, String> {
    let line = line.trim();
    let (name, rest) = match line.split_once(char::is_whitespace) {
        Some((n, r)) => (n, r.trim()),
        None => (line, ""),
    };
    let arg = (!rest.is_empty()).then(|| rest.to_owned());
    match name {
        "/clear" | "/reset" => Ok(Command::Clear),
        "/model" => Ok(Command::Model(arg)),
        "/system" => Ok(Command::System(arg)),
        "/save" => arg
            .map(Command::Save)
            .ok_or_else(|| "usage: /save FILE".to_owned()),
        "/tokens" => Ok(Command::Tokens),
        "/context" => Ok(Command::Context),
        "/sessions" => Ok(Command::Sessions),
        "/help" | "/?" => Ok(Command::Help),
        "/exit" | "/quit" | "/q" => Ok(Command::Exit),
        other => Err(format!(
            "unknown command {other}; /help lists the commands (start with // to send a message beginning with /)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(lines: &[&str]) -> Vec<Result<Input, String>> {
        let mut a = LineAssembler::new();
        lines.iter().filter_map(|l| a.push(l)).collect()
    }

    fn msg(s: &str) -> Result<Input, String> {
        Ok(Input::Message(s.to_owned()))
    }

    #[test]
    fn single_lines_are_messages_and_blank_lines_are_ignored() {
        assert_eq!(
            feed(&["hello", "", "  ", "again"]),
            [msg("hello"), msg("again")]
        );
    }

    #[test]
    fn backslash_continues_the_message() {
        assert_eq!(
            feed(&["first\\", "second\\", "third"]),
            [msg("first\nsecond\nthird")]
        );
    }

    #[test]
    fn triple_quote_block_is_one_message() {
        let mut a = LineAssembler::new();
        assert_eq!(a.push("\"\"\""), None);
        assert!(a.is_pending());
        assert_eq!(a.push("/not a command"), None);
        assert_eq!(a.push(""), None);
        assert_eq!(a.push("end\\"), None);
        assert_eq!(a.push("\"\"\""), Some(msg("/not a command\n\nend\\")));
        assert!(!a.is_pending());
        assert_eq!(feed(&["\"\"\"", "\"\"\""]), []);
    }

    #[test]
    fn a_paste_is_one_message_unless_it_is_a_block() {
        let mut a = LineAssembler::new();
        assert_eq!(
            a.push_text("line one\nline two\n"),
            [msg("line one\nline two")]
        );
        assert_eq!(
            a.push_text("\"\"\"\r\na\r\nb\r\n\"\"\"\r\nafter"),
            [msg("a\nb"), msg("after")]
        );
        assert_eq!(a.push_text("x\\"), []);
        assert_eq!(a.push_text("y\nz"), [msg("x\ny"), msg("z")]);
        assert_eq!(a.push_text("/clear"), [Ok(Input::Command(Command::Clear))]);
    }

    #[test]
    fn reset_drops_a_half_typed_message() {
        let mut a = LineAssembler::new();
        assert_eq!(a.push("abc\\"), None);
        a.reset();
        assert_eq!(a.push("x"), Some(msg("x")));
    }

    #[test]
    fn commands_parse_with_and_without_arguments() {
        let cmd = |s: &str| parse_command(s);
        assert_eq!(cmd("/clear"), Ok(Command::Clear));
        assert_eq!(
            cmd("/model  openai/gpt-4o "),
            Ok(Command::Model(Some("openai/gpt-4o".into())))
        );
        assert_eq!(cmd("/model"), Ok(Command::Model(None)));
        assert_eq!(
            cmd("/system be brief"),
            Ok(Command::System(Some("be brief".into())))
        );
        assert_eq!(cmd("/system"), Ok(Command::System(None)));
        assert_eq!(cmd("/save out.json"), Ok(Command::Save("out.json".into())));
        assert!(cmd("/save").unwrap_err().contains("usage"));
        assert_eq!(cmd("/tokens"), Ok(Command::Tokens));
        assert_eq!(cmd("/context"), Ok(Command::Context));
        assert_eq!(cmd("/sessions"), Ok(Command::Sessions));
        assert_eq!(cmd("/exit"), Ok(Command::Exit));
        assert_eq!(cmd("/help"), Ok(Command::Help));
        assert!(cmd("/frobnicate")
            .unwrap_err()
            .contains("unknown command /frobnicate"));
    }

    #[test]
    fn double_slash_sends_a_literal_slash() {
        assert_eq!(feed(&["//usr/bin"]), [msg("/usr/bin")]);
        assert_eq!(feed(&[" /clear "]), [Ok(Input::Command(Command::Clear))]);
    }
}
