//! `llmux`: chat with any provider from the terminal, start offline emulators, list models.
#![allow(
    clippy::print_stdout,
    clippy::allow_attributes,
    reason = "a CLI prints to stdout; `expect` would fail where a module happens not to print"
)]

mod admin;
mod agent;
mod batch;
mod channels;
mod chat;
mod context;
mod conversation;
mod emulate;
mod error;
mod events;
mod input;
mod logging;
mod models;
mod output;
mod repl;
mod request;
mod serve;
mod session;
mod tokens;

use std::process::ExitCode;

use clap::{ArgAction, Parser, Subcommand};

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
    /// Run a task with a model and the tools of MCP servers (stdio or streamable HTTP).
    Agent(Box<agent::AgentArgs>),
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
    /// Create, list, update and delete the gateway's teams (keys that share limits and budgets).
    Teams(admin::TeamsArgs),
    /// The gateway's usage, grouped by key, model, day or team.
    Usage(admin::UsageArgs),
    /// The gateway's usage events on NATS JetStream (`events tail`).
    Events(events::EventsArgs),
    /// List, add, change, enable, disable, delete and test a running gateway's channels
    /// (through its admin API).
    Channels(channels::ChannelsArgs),
    /// List or delete the chat sessions kept by `llmux chat --session NAME`.
    Sessions(session::SessionsArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `serve` starts logging itself once it has read its configuration (the log format and
    // the trace exporter are configured there).
    if !matches!(cli.command, Command::Serve(_)) {
        logging::init(cli.verbose, false, Default::default(), None);
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // `llmux chat … | head`: the reader left, nothing more to say.
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(CliError::Cancelled) => {
            eprintln!("[cancelled]");
            ExitCode::from(error::EXIT_CANCELLED)
        }
        Err(e) if logging::is_json() => {
            tracing::error!(error = %e, "llmux stopped with an error");
            ExitCode::from(e.exit_code())
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(args) => return serve::serve(args, cli.verbose),
        Command::CheckConfig(args) => return serve::check_config(&args),
        Command::Sessions(args) => return session::run(args),
        _ => {}
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::io("starting the async runtime", e))?;
    match cli.command {
        Command::Agent(args) => {
            let result = agent::main(&rt, *args);
            // A confirmation question still waiting for its line (after Ctrl-C) must not keep
            // the process alive: dropping the runtime would wait for that read.
            rt.shutdown_background();
            result
        }
        Command::Batch(args) => batch::main(&rt, *args),
        Command::Chat(args) => chat::main(&rt, *args, cli.verbose),
        Command::Emulate(args) => rt.block_on(emulate::run(args)),
        Command::Models(args) => rt.block_on(models::run(args)),
        Command::Serve(_) | Command::CheckConfig(_) | Command::Sessions(_) => Ok(()),
        Command::Tokens(args) => tokens::run(args),
        Command::Keys(args) => rt.block_on(admin::keys(args)),
        Command::Teams(args) => rt.block_on(admin::teams(args)),
        Command::Usage(args) => rt.block_on(admin::usage(args)),
        Command::Events(args) => rt.block_on(events::run(args)),
        Command::Channels(args) => rt.block_on(channels::run(args)),
    }
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
