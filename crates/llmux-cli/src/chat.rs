//! `llmux chat`: one question from the argument or stdin, answered as it streams; with no
//! prompt on a terminal, the REPL.

use std::io::{self, IsTerminal, Read, Write};

use clap::Args;
use futures::StreamExt;
use llmux_core::stream::response_to_events;
use llmux_core::{ChatRequest, ChatResponse, Client};
use tokio::runtime::Runtime;

use crate::context::ChatContext;
use crate::conversation::Conversation;
use crate::error::{CliError, Result};
use crate::output::{Mode, Renderer, Style};
use crate::request::{self, RequestArgs, DEFAULT_MODEL};
use crate::session::Session;

/// `llmux chat` flags.
#[derive(Debug, Clone, Args)]
pub struct ChatArgs {
    /// The prompt (several words are joined with spaces). Without it the prompt is read from
    /// stdin when stdin is not a terminal; on a terminal a REPL opens.
    #[arg(value_name = "PROMPT")]
    pub prompt: Vec<String>,
    /// The model, as provider/model.
    #[arg(
        short,
        long,
        env = "LLMUX_MODEL",
        default_value = DEFAULT_MODEL,
        value_name = "PROVIDER/MODEL"
    )]
    pub model: String,
    /// Wait for the complete answer instead of streaming it.
    #[arg(long)]
    pub no_stream: bool,
    /// Print the complete response object as JSON (a streamed answer is collected first).
    #[arg(long)]
    pub json: bool,
    /// Print each stream event as one JSON line as it arrives.
    #[arg(long, conflicts_with = "json")]
    pub json_events: bool,
    /// Print token usage to stderr when the answer is complete (also with -v).
    #[arg(long)]
    pub usage: bool,
    /// Endpoint of the provider named in --model (overrides PROVIDER_BASE_URL).
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
    /// Answer from a built-in emulator of the provider: offline, no key needed.
    #[arg(long, conflicts_with = "base_url")]
    pub emulate: bool,
    /// The variables pointing at the emulator started by --emulate.
    #[arg(skip)]
    pub emulated_env: Option<Vec<(String, String)>>,
    #[command(flatten)]
    pub request: RequestArgs,
    #[command(flatten)]
    pub resilience: request::ResilienceArgs,
    #[command(flatten)]
    pub sessions: crate::session::SessionArgs,
}

impl ChatArgs {
    /// How answers are rendered.
    pub fn style(&self, verbose: u8) -> Style {
        let mode = if self.json {
            Mode::Json
        } else if self.json_events {
            Mode::Events
        } else {
            Mode::Text
        };
        Style {
            mode,
            // https://no-color.org: any non-empty NO_COLOR turns styling off.
            dim: io::stderr().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
            usage: self.usage || verbose > 0,
        }
    }
}

/// Runs `llmux chat`: one-shot when there is a prompt (argument or piped stdin), REPL otherwise.
pub fn main(rt: &Runtime, mut args: ChatArgs, verbose: u8) -> Result<()> {
    // With --emulate, the emulator lives until the chat ends (the REPL starts more when
    // `/model` names another provider).
    let mut emulators = Vec::new();
    if args.emulate {
        let pid = request::provider_of(&args.model)?;
        let (emu, env) = rt.block_on(crate::emulate::start_for(pid))?;
        args.emulated_env = Some(env);
        emulators.push(emu);
    }
    let prompt = if !args.prompt.is_empty() {
        Some(args.prompt.join(" "))
    } else if !io::stdin().is_terminal() {
        Some(read_stdin()?)
    } else {
        None
    };
    match prompt {
        Some(p) => rt.block_on(one_shot(&args, &p, verbose)),
        None => crate::repl::run(rt, &args, verbose, emulators),
    }
}

fn read_stdin() -> Result<String> {
    let mut s = String::new();
    io::stdin()
        .read_to_string(&mut s)
        .map_err(|e| CliError::io("reading the prompt from stdin", e))?;
    let prompt = s.trim_end_matches(['\n', '\r']).to_owned();
    if prompt.trim().is_empty() {
        return Err(CliError::msg(
            "the prompt read from stdin is empty; pass a PROMPT argument or pipe some text",
        ));
    }
    Ok(prompt)
}

async fn one_shot(args: &ChatArgs, prompt: &str, verbose: u8) -> Result<()> {
    let pid = request::provider_of(&args.model)?;
    let (mut session, mut conv) = match &args.sessions.session {
        Some(name) => {
            let (s, c) = Session::open(name, &args.model, args.request.system.clone())?;
            (Some(s), c)
        }
        None => (
            None,
            Conversation::new(args.model.as_str(), args.request.system.clone()),
        ),
    };
    let client = request::build_client_with(
        pid,
        args.base_url.as_deref(),
        args.emulated_env.as_deref(),
        &args.resilience,
    )?;
    let mut context = ChatContext::open(
        &args.model,
        session.as_ref(),
        &args.sessions.context,
        &client,
    )?;
    let req = context.fit(&conv, prompt, &args.request).await?;
    // Builds the provider now, so a missing key is reported before anything is sent.
    client.resolve(&args.model)?;
    let mut out = Renderer::new(io::stdout(), io::stderr(), args.style(verbose));
    let result = Box::pin(cancellable(answer(&client, req, !args.no_stream, &mut out))).await;
    out.close()?;
    let resp = result?;
    if let Some(s) = &mut session {
        conv.record(prompt, &resp);
        s.count_turn(resp.usage.as_ref());
        context.store_in(s);
        s.save(&conv)?;
    }
    Ok(())
}

/// Runs `fut` until it completes or Ctrl-C is pressed ([`CliError::Cancelled`]); dropping the
/// future drops the upstream request.
pub async fn cancellable<T>(fut: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::select! {
        r = fut => r,
        () = ctrl_c() => Err(CliError::Cancelled),
    }
}

async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        // No signal handling on this platform: never cancel.
        std::future::pending::<()>().await;
    }
}

/// Sends `req` (`provider/model`) and renders the answer; returns it once complete.
pub async fn answer<O: Write, E: Write>(
    client: &Client,
    req: ChatRequest,
    stream: bool,
    out: &mut Renderer<O, E>,
) -> Result<ChatResponse> {
    if stream {
        let mut events = client.chat_stream(req).await?;
        while let Some(ev) = events.next().await {
            out.event(&ev?)?;
        }
    } else {
        let resp = client.chat(req).await?;
        if out.prints_whole_response() {
            return out.response(resp);
        }
        for ev in response_to_events(&resp) {
            out.event(&ev)?;
        }
    }
    out.finish()
}
