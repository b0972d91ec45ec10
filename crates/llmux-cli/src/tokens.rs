//! `llmux tokens`: counts the tokens of a file or stdin with the model's own tokenizer
//! (OpenAI's encodings, Qwen's or DeepSeek's vocabulary, or the documented estimate, which the
//! stderr line labels `ESTIMATE`), offline.
//!
//! The count is the last line of stdout; the tokenizer used goes to stderr. `--chat` reads a
//! JSON list of messages (or `{"messages": […], "tools": […]}`; any other input is one user
//! message) and adds the chat template's overhead and the reply priming.

use std::io::{Read, Write};
use std::path::PathBuf;

use clap::Args;
use llmux_core::tokenize::Tokenizer;
use llmux_core::{ChatRequest, Message, Tool};
use serde_json::Value;

use crate::error::{CliError, Result};

/// `llmux tokens` flags.
#[derive(Debug, Clone, Args)]
pub struct TokensArgs {
    /// The model whose tokenizer counts, as provider/model.
    #[arg(
        short,
        long,
        env = "LLMUX_MODEL",
        default_value = crate::request::DEFAULT_MODEL,
        value_name = "PROVIDER/MODEL"
    )]
    pub model: String,
    /// The text to count; `-` or nothing reads stdin.
    #[arg(value_name = "FILE|-")]
    pub file: Option<PathBuf>,
    /// Count the input as a chat request: template overhead per message and reply priming.
    #[arg(long)]
    pub chat: bool,
}

/// Counts and prints.
pub fn run(args: TokensArgs) -> Result<()> {
    let tokenizer = Tokenizer::for_model(&args.model)?;
    let input = read_input(args.file.as_ref())?;
    let count = if args.chat {
        let req = chat_request(&args.model, &input)?;
        // Surface a text the tokenizer cannot split instead of counting its upper bound.
        for m in &req.messages {
            tokenizer.try_count_text(&m.content.text())?;
        }
        tokenizer.count_request(&req)
    } else {
        tokenizer.try_count_text(&input)?
    };
    let mut err = std::io::stderr().lock();
    // Diagnostics only: a closed stderr must not hide the count.
    let _ = writeln!(err, "{}: {}", args.model, tokenizer.describe());
    let mut out = std::io::stdout().lock();
    writeln!(out, "{count}")
        .and_then(|()| out.flush())
        .map_err(|e| CliError::io("writing to stdout", e))
}

fn read_input(file: Option<&PathBuf>) -> Result<String> {
    let mut bytes = Vec::new();
    let what = match file {
        Some(p) if p.as_os_str() != "-" => {
            let what = format!("reading {}", p.display());
            bytes = std::fs::read(p).map_err(|e| CliError::io(what.clone(), e))?;
            what
        }
        _ => {
            std::io::stdin()
                .lock()
                .read_to_end(&mut bytes)
                .map_err(|e| CliError::io("reading stdin", e))?;
            "reading stdin".to_owned()
        }
    };
    String::from_utf8(bytes).map_err(|_| CliError::msg(format!("{what}: the input is not UTF-8")))
}

/// The messages (and tools) of `--chat` input.
fn chat_request(model: &str, input: &str) -> Result<ChatRequest> {
    let bad = |e: serde_json::Error| CliError::msg(format!("--chat input: {e}"));
    let mut req = ChatRequest::new(model, Vec::new());
    match serde_json::from_str::<Value>(input) {
        Ok(Value::Array(list)) => {
            req.messages = serde_json::from_value(Value::Array(list)).map_err(bad)?;
        }
        Ok(Value::Object(mut obj)) if obj.contains_key("messages") => {
            let messages = obj.remove("messages").unwrap_or_default();
            req.messages = serde_json::from_value::<Vec<Message>>(messages).map_err(bad)?;
            if let Some(tools) = obj.remove("tools") {
                req.tools = serde_json::from_value::<Vec<Tool>>(tools).map_err(bad)?;
            }
        }
        _ => req.messages.push(Message::user(input)),
    }
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_input_is_a_message_list_an_object_or_one_user_message() {
        let r = chat_request(
            "m",
            r#"[{"role":"system","content":"s"},{"role":"user","content":"u"}]"#,
        )
        .unwrap();
        assert_eq!(r.messages, [Message::system("s"), Message::user("u")]);
        let r = chat_request(
            "m",
            r#"{"messages":[{"role":"user","content":"u"}],"tools":[{"name":"f"}]}"#,
        )
        .unwrap();
        assert_eq!(r.messages, [Message::user("u")]);
        assert_eq!(r.tools[0].name, "f");
        let r = chat_request("m", "just text\n").unwrap();
        assert_eq!(r.messages, [Message::user("just text\n")]);
        let err = chat_request("m", r#"[{"role":"wizard"}]"#).unwrap_err();
        assert!(err.to_string().starts_with("--chat input: "), "{err}");
    }
}
