//! `llmux`: chat with any provider from the terminal, start offline emulators, list models.
#![allow(
    clippy::print_stdout,
    clippy::allow_attributes,
    reason = "a CLI prints to stdout; `expect` would fail where a module happens not to print"
)]

mod admin;
mod batch;
mod chat;
mod conversation;
mod emulate;
mod error;
mod input;
mod models;
mod output;
mod repl;
mod request;
mod serve;
mod session;
mod tokens;

use std::process::ExitCode;

use clap::{ArgAction, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::error::{CliError, Result};

/// mimalloc instead of the system allocator: the gateway allocates and frees small buffers per
/// request and per stream chunk, where glibc's malloc and free were a sixth of the instructions
/// (bench/README.md, "Profile"). Built without transparent huge pages (`no_thp`): with them an
/// idle gateway's resident memory was 22 MB instead of 16 MB.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// llmux: one interface to many LLM providers.
///
/// Keys come from PROVIDER_API_KEY, endpoints from PROVIDER_BASE_URL.
/// Run `llmux emulate` to try everything offline.
#[derive(Debug, Parser)]
#[command(name = "llmux", version, propagate_version = true)]
struct Cli {
    /// Print token usage and log to stderr (-vv for more); RUST_LOG also enables logging.
    #[arg(short, long, action = ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a JSONL file of chat requests (OpenAI Batch format); resumable.
    Batch(Box<batch::BatchArgs>),
    /// Ask a model; streams the answer. Without a prompt on a terminal, opens a REPL.
    Chat(Box<chat::ChatArgs>),
    /// Start an emulator of every vendor; print each provider's base URL and key, and an export line.
    Emulate(emulate::EmulateArgs),
    /// List providers and their known models.
    Models(models::ModelsArgs),
    /// Run the gateway: OpenAI-, Anthropic-, Gemini- and DashScope-compatible HTTP endpoints over the configured channels.
    Serve(serve::ServeArgs),
    /// Validate a gateway configuration file; prints OK or each problem with its path (exit 1).
    CheckConfig(serve::CheckConfigArgs),
    /// Count the tokens of a file or stdin with the model's tokenizer (offline).
    Tokens(tokens::TokensArgs),
    /// Create, list and revoke the gateway's virtual keys.
    Keys(admin::KeysArgs),
    /// The gateway's usage, grouped by key, model or day.
    Usage(admin::UsageArgs),
    /// List or delete the chat sessions kept by `llmux chat --session NAME`.
    Sessions(session::SessionsArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose, matches!(cli.command, Command::Serve(_)));
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // `llmux chat … | head`: the reader left, nothing more to say.
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(CliError::Cancelled) => {
            eprintln!("[cancelled]");
            ExitCode::from(error::EXIT_CANCELLED)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(args) => return serve::serve(args),
        Command::CheckConfig(args) => return serve::check_config(&args),
        Command::Sessions(args) => return session::run(args),
        _ => {}
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::io("starting the async runtime", e))?;
    match cli.command {
        Command::Batch(args) => batch::main(&rt, *args),
        Command::Chat(args) => chat::main(&rt, *args, cli.verbose),
        Command::Emulate(args) => rt.block_on(emulate::run(args)),
        Command::Models(args) => rt.block_on(models::run(args)),
        Command::Serve(_) | Command::CheckConfig(_) | Command::Sessions(_) => Ok(()),
        Command::Tokens(args) => tokens::run(args),
        Command::Keys(args) => rt.block_on(admin::keys(args)),
        Command::Usage(args) => rt.block_on(admin::usage(args)),
    }
}

/// Logs to stderr: off unless RUST_LOG is set or -v is given; `serve` logs at info by default.
fn init_logging(verbose: u8, server: bool) {
    let filter = match (std::env::var("RUST_LOG"), verbose) {
        (Ok(spec), _) if !spec.is_empty() => EnvFilter::new(spec),
        (_, 0) if server => EnvFilter::new("info"),
        (_, 0) => return,
        (_, 1) => EnvFilter::new("warn,llmux_core=info,llmux_cli=info,llmux_emulator=info"),
        _ => EnvFilter::new("info,llmux_core=debug,llmux_cli=debug,llmux_emulator=debug"),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn chat_flags_parse() {
        let cli = Cli::try_parse_from([
            "llmux",
            "chat",
            "hi",
            "there",
            "-m",
            "openai/gpt-4o",
            "--stop",
            "a",
            "--stop",
            "b",
            "--extra",
            "x=1",
            "--presence-penalty",
            "-1.5",
            "--thinking",
            "off",
            "--response-format",
            "json-object",
        ])
        .unwrap();
        let Command::Chat(args) = cli.command else {
            panic!("not chat")
        };
        assert_eq!(args.prompt, ["hi", "there"]);
        assert_eq!(args.request.stop, ["a", "b"]);
        assert_eq!(args.request.presence_penalty, Some(-1.5));
    }

    #[test]
    fn json_and_json_events_conflict() {
        assert!(Cli::try_parse_from(["llmux", "chat", "x", "--json", "--json-events"]).is_err());
    }
}
