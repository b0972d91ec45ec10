//! `llmux agent`: a model with the tools of MCP servers, run in the library's agent loop.
//!
//! Tools come from MCP servers started as child processes (`--mcp 'CMD ARGS…'`, stdio) or
//! reached over streamable HTTP (`--mcp-url URL`), through the `rmcp` client. Every tool of
//! every server is offered to the model with its JSON schema; two servers offering one name is
//! an error naming both. Each call is confirmed on the terminal (`run TOOL ARGS? [y/N]`) unless
//! `--yes` or `--allow TOOL` says it may run; without a terminal and without either, the command
//! refuses to start instead of waiting for an answer that cannot come. The assistant's text is
//! streamed to stdout; each tool call and its result is one line on stderr.

use std::collections::{HashMap, HashSet};
use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use futures::StreamExt;
use llmux_core::agent::{
    Agent, AgentError, AgentEvent, DynTool, ToolApproval, ToolError, DEFAULT_MAX_PARALLEL_TOOLS,
    DEFAULT_MAX_STEPS, DEFAULT_TOOL_TIMEOUT,
};
use llmux_core::providers::BoxFuture;
use llmux_core::{ChatRequest, Message, StreamEvent, Tool, ToolCall};
use rmcp::model::{CallToolRequestParams, CallToolResult, ContentBlock};
use rmcp::service::{Peer, RoleClient, RunningService};
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::ServiceExt;
use serde_json::Value;
use tokio::runtime::Runtime;

use crate::error::{CliError, Result};
use crate::request::{self, RequestArgs, ResilienceArgs, DEFAULT_MODEL};

/// How long starting a server, its handshake and its tool list may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long closing a server's session may take at the end.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// The most tools all servers together may offer.
const MAX_TOOLS: usize = 256;
/// The most characters of a tool result sent to the model; the rest is cut with a note.
const MAX_RESULT_CHARS: usize = 100_000;
/// The most characters of arguments or results shown on one stderr line.
const SHOWN_CHARS: usize = 200;
/// The most bytes read for one confirmation answer.
const MAX_ANSWER_BYTES: u64 = 1024;

/// `llmux agent` flags.
#[derive(Debug, Clone, Args)]
pub struct AgentArgs {
    /// The task (several words are joined with spaces). Without it the task is read from
    /// stdin when stdin is not a terminal.
    #[arg(value_name = "TASK")]
    pub task: Vec<String>,
    /// The model, as provider/model.
    #[arg(
        short,
        long,
        env = "LLMUX_MODEL",
        default_value = DEFAULT_MODEL,
        value_name = "PROVIDER/MODEL"
    )]
    pub model: String,
    /// Endpoint of the provider named in --model (overrides PROVIDER_BASE_URL).
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
    /// Answer from a built-in emulator of the provider: offline, no key needed.
    #[arg(long, conflicts_with = "base_url")]
    pub emulate: bool,
    /// An MCP server to start and talk to over stdio, as a shell-quoted command line
    /// (repeatable).
    #[arg(long = "mcp", value_name = "'CMD ARGS…'")]
    pub mcp: Vec<String>,
    /// An MCP server to reach over streamable HTTP (repeatable).
    #[arg(long = "mcp-url", value_name = "URL")]
    pub mcp_url: Vec<String>,
    /// How long one tool call may run, e.g. 30s or 2m; a call still running then is cancelled
    /// and the model told it timed out. Default 2m.
    #[arg(long, value_name = "DURATION", value_parser = parse_positive_duration)]
    pub tool_timeout: Option<Duration>,
    /// The most tool calls that run at once. Default 8.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub max_parallel_tools: Option<u16>,
    /// The most model calls in the run. Default 10.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub max_steps: Option<u16>,
    /// Fit the conversation into this many tokens (prompt and answer) before each model call,
    /// dropping the oldest turns first.
    #[arg(long, value_name = "TOKENS", value_parser = clap::value_parser!(u64).range(256..))]
    pub context_window: Option<u64>,
    /// Run every tool call without asking.
    #[arg(short, long)]
    pub yes: bool,
    /// Run calls to this tool without asking (repeatable).
    #[arg(long, value_name = "TOOL")]
    pub allow: Vec<String>,
    #[command(flatten)]
    pub request: RequestArgs,
    #[command(flatten)]
    pub resilience: ResilienceArgs,
}

fn parse_positive_duration(s: &str) -> std::result::Result<Duration, String> {
    let d = llmux_core::resilience::retry::humantime_serde::parse_duration(s)?;
    if d.is_zero() {
        return Err("must be more than 0".to_owned());
    }
    Ok(d)
}

/// Runs `llmux agent`.
pub fn main(rt: &Runtime, args: AgentArgs) -> Result<()> {
    if args.mcp.is_empty() && args.mcp_url.is_empty() {
        return Err(CliError::msg(
            "no tools: name an MCP server with --mcp 'CMD ARGS…' or --mcp-url URL",
        ));
    }
    let stdin_is_terminal = io::stdin().is_terminal();
    let task = if !args.task.is_empty() {
        args.task.join(" ")
    } else if !stdin_is_terminal {
        read_task()?
    } else {
        return Err(CliError::msg(
            "no task: pass it as arguments (llmux agent --mcp … 'TASK') or pipe it on stdin",
        ));
    };
    // A piped task leaves no terminal to confirm calls on either.
    let can_ask = !args.task.is_empty() && stdin_is_terminal;
    if !args.yes && args.allow.is_empty() && !can_ask {
        return Err(CliError::msg(
            "no terminal to confirm tool calls on: pass --yes to run every call, or --allow TOOL \
             for each tool that may run",
        ));
    }
    rt.block_on(crate::chat::cancellable(run(&args, &task, can_ask)))
}

fn read_task() -> Result<String> {
    let mut s = String::new();
    io::stdin()
        .take(1 << 20)
        .read_to_string(&mut s)
        .map_err(|e| CliError::io("reading the task from stdin", e))?;
    let task = s.trim().to_owned();
    if task.is_empty() {
        return Err(CliError::msg(
            "the task read from stdin is empty; pass a TASK argument or pipe some text",
        ));
    }
    Ok(task)
}

async fn run(args: &AgentArgs, task: &str, can_ask: bool) -> Result<()> {
    let pid = request::provider_of(&args.model)?;
    let mut emulators = Vec::new();
    let mut emulated_env = None;
    if args.emulate {
        let (emu, env) = crate::emulate::start_for(pid).await?;
        emulated_env = Some(env);
        emulators.push(emu);
    }
    let client = request::build_client_with(
        pid,
        args.base_url.as_deref(),
        emulated_env.as_deref(),
        &args.resilience,
    )?;
    // Builds the provider now, so a missing key is reported before any server starts.
    client.resolve(&args.model)?;

    let mut servers = Vec::new();
    let result = async {
        for (i, command) in args.mcp.iter().enumerate() {
            servers.push(connect_stdio(i + 1, command).await?);
        }
        for (i, url) in args.mcp_url.iter().enumerate() {
            servers.push(connect_http(i + 1, url).await?);
        }
        let tools = collect_tools(&servers).await?;
        if let Some(missing) = args
            .allow
            .iter()
            .find(|a| !tools.iter().any(|t| &t.def.name == *a))
        {
            let names: Vec<&str> = tools.iter().map(|t| t.def.name.as_str()).collect();
            return Err(CliError::msg(format!(
                "--allow {missing}: no server offers a tool by that name; the tools are: {}",
                names.join(", ")
            )));
        }
        let mut options = ChatRequest::default();
        args.request.apply(&mut options);
        let mut agent = Agent::new(client, args.model.clone())
            .options(options)
            .tool_timeout(args.tool_timeout.unwrap_or(DEFAULT_TOOL_TIMEOUT))
            .max_parallel_tools(
                args.max_parallel_tools
                    .map_or(DEFAULT_MAX_PARALLEL_TOOLS, usize::from),
            )
            .max_steps(args.max_steps.map_or(DEFAULT_MAX_STEPS, usize::from))
            .approval(Arc::new(Confirm {
                all: args.yes,
                allowed: args.allow.iter().cloned().collect(),
                can_ask,
                asking: tokio::sync::Mutex::new(()),
            }));
        if let Some(window) = args.context_window {
            agent = agent.context_window(window);
        }
        for t in tools {
            agent = agent.tool(t);
        }
        let mut messages = Vec::new();
        if let Some(system) = &args.request.system {
            messages.push(Message::system(system.clone()));
        }
        messages.push(Message::user(task));
        drive(&agent, messages).await
    }
    .await;
    for server in servers {
        server.close().await;
    }
    drop(emulators);
    result
}

/// Runs the agent, streaming its text to stdout and one line per tool event to stderr.
async fn drive(agent: &Agent, messages: Vec<Message>) -> Result<()> {
    {
        let mut events = agent.run_streaming(messages);
        let mut out = io::stdout().lock();
        let mut err = io::stderr();
        let mut open_line = false;
        let write_err = |e| CliError::io("writing the answer", e);
        while let Some(ev) = events.next().await {
            match ev.map_err(agent_error)? {
                AgentEvent::Model(StreamEvent::TextDelta { text }) => {
                    out.write_all(text.as_bytes()).map_err(write_err)?;
                    out.flush().map_err(write_err)?;
                    open_line = !text.ends_with('\n');
                }
                AgentEvent::ToolStarted { call, .. } => {
                    if open_line {
                        writeln!(out).map_err(write_err)?;
                        open_line = false;
                    }
                    let _ = writeln!(err, "[tool] {} {}", call.name, shown(&call.arguments));
                }
                AgentEvent::ToolFinished {
                    call,
                    content,
                    is_error,
                    ..
                } => {
                    let verb = if is_error { "failed" } else { "->" };
                    let _ = writeln!(err, "[tool] {} {verb} {}", call.name, shown(&content));
                }
                AgentEvent::ContextFitted { step, report } => {
                    let _ = writeln!(
                        err,
                        "[context] step {step}: {} earlier messages left out to fit {} tokens",
                        report.dropped_messages, report.limit
                    );
                }
                AgentEvent::Finished(run) => {
                    if open_line {
                        writeln!(out).map_err(write_err)?;
                        open_line = false;
                    }
                    tracing::debug!(
                        steps = run.steps,
                        total_tokens = run.usage.total_tokens,
                        "the agent finished"
                    );
                }
                _ => {}
            }
        }
        if open_line {
            writeln!(out).map_err(write_err)?;
        }
        Ok(())
    }
}

fn agent_error(e: AgentError) -> CliError {
    match e {
        AgentError::Llm(e) => e.into(),
        other => CliError::msg(other.to_string()),
    }
}

/// One line of at most [`SHOWN_CHARS`] characters, newlines shown as spaces.
fn shown(text: &str) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    cut(&one_line, SHOWN_CHARS)
}

/// The first `max` characters of `text`, with `…` when it was longer.
fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

/// An MCP server the agent talks to.
struct Server {
    /// How the user named it (the command line or the URL), for messages.
    label: String,
    service: RunningService<RoleClient, ()>,
}

impl Server {
    async fn close(self) {
        let label = self.label;
        match tokio::time::timeout(CLOSE_TIMEOUT, self.service.cancel()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::debug!(server = %label, error = %e, "closing an MCP server"),
            Err(_) => tracing::debug!(server = %label, "an MCP server did not close in time"),
        }
    }
}

/// Starts `--mcp` number `n` (from 1). Messages name the server by its program and position,
/// never by its whole command line, whose arguments may hold a secret.
async fn connect_stdio(n: usize, command_line: &str) -> Result<Server> {
    let words = shlex::split(command_line)
        .filter(|w| !w.is_empty())
        .ok_or_else(|| {
            CliError::msg(format!(
                "--mcp #{n}: not a command line (empty, or unbalanced quotes)"
            ))
        })?;
    let program = &words[0];
    let name = Path::new(program)
        .file_name()
        .map_or_else(|| program.clone(), |f| f.to_string_lossy().into_owned());
    let mut command = tokio::process::Command::new(program);
    command.args(&words[1..]);
    let transport = TokioChildProcess::new(command)
        .map_err(|e| CliError::msg(format!("--mcp #{n}: cannot start `{program}`: {e}")))?;
    let label = format!("`{name}` (--mcp #{n})");
    handshake(label, ().serve(transport), |e| e).await
}

/// Connects to `--mcp-url` number `n` (from 1). Messages show the URL without its user
/// information and query, which may hold a secret.
async fn connect_http(n: usize, url: &str) -> Result<Server> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| CliError::msg(format!("--mcp-url #{n}: not a URL: {e}")))?;
    let Some(host) = parsed
        .host_str()
        .filter(|_| matches!(parsed.scheme(), "http" | "https"))
    else {
        return Err(CliError::msg(format!(
            "--mcp-url #{n}: needs an http:// or https:// URL with a host"
        )));
    };
    let port = parsed.port().map(|p| format!(":{p}")).unwrap_or_default();
    let shown = format!("{}://{host}{port}{}", parsed.scheme(), parsed.path());
    install_crypto_provider();
    let transport = StreamableHttpClientTransport::from_uri(url);
    let label = format!("{shown} (--mcp-url #{n})");
    let query = parsed.query().filter(|q| !q.is_empty()).map(str::to_owned);
    let redact = move |msg: String| match &query {
        Some(q) => msg.replace(q.as_str(), "…"),
        None => msg,
    };
    handshake(label, ().serve(transport), redact).await
}

/// Secure connections to MCP servers use rustls with the same *ring* provider as the rest of
/// llmux; installing it twice is harmless.
fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Waits for the session to start; `redact` cleans the transport's error text.
async fn handshake<E: std::fmt::Display>(
    label: String,
    serving: impl std::future::Future<Output = std::result::Result<RunningService<RoleClient, ()>, E>>,
    redact: impl Fn(String) -> String,
) -> Result<Server> {
    match tokio::time::timeout(CONNECT_TIMEOUT, serving).await {
        Ok(Ok(service)) => Ok(Server { label, service }),
        Ok(Err(e)) => Err(CliError::msg(format!(
            "MCP server {label} did not start a session: {}",
            redact(e.to_string())
        ))),
        Err(_) => Err(CliError::msg(format!(
            "MCP server {label} did not start a session within {}s",
            CONNECT_TIMEOUT.as_secs()
        ))),
    }
}

/// Every tool of every server; a name offered twice is an error naming both servers.
async fn collect_tools(servers: &[Server]) -> Result<Vec<McpTool>> {
    let mut tools: Vec<McpTool> = Vec::new();
    let mut owner: HashMap<String, String> = HashMap::new();
    for server in servers {
        let listed = tokio::time::timeout(CONNECT_TIMEOUT, server.service.peer().list_all_tools())
            .await
            .map_err(|_| {
                CliError::msg(format!(
                    "MCP server {} did not list its tools within {}s",
                    server.label,
                    CONNECT_TIMEOUT.as_secs()
                ))
            })?
            .map_err(|e| {
                CliError::msg(format!(
                    "MCP server {} did not list its tools: {e}",
                    server.label
                ))
            })?;
        for t in listed {
            let name = t.name.to_string();
            if let Some(first) = owner.insert(name.clone(), server.label.clone()) {
                return Err(CliError::msg(format!(
                    "two MCP servers offer a tool named `{name}`: {first} and {}",
                    server.label
                )));
            }
            if tools.len() == MAX_TOOLS {
                return Err(CliError::msg(format!(
                    "the MCP servers offer more than {MAX_TOOLS} tools"
                )));
            }
            tools.push(McpTool {
                server: server.label.clone(),
                peer: server.service.peer().clone(),
                def: Tool {
                    name,
                    description: t
                        .description
                        .as_ref()
                        .map(|d| d.to_string())
                        .filter(|d| !d.is_empty()),
                    parameters: Value::Object((*t.input_schema).clone()),
                    strict: None,
                },
            });
        }
    }
    Ok(tools)
}

/// A tool of an MCP server, as the agent loop runs it.
struct McpTool {
    server: String,
    peer: Peer<RoleClient>,
    def: Tool,
}

impl DynTool for McpTool {
    fn definition(&self) -> llmux_core::Result<Tool> {
        Ok(self.def.clone())
    }

    fn invoke<'a>(
        &'a self,
        arguments: &'a str,
    ) -> BoxFuture<'a, std::result::Result<String, ToolError>> {
        Box::pin(async move {
            let text = if arguments.trim().is_empty() {
                "{}"
            } else {
                arguments
            };
            let args = match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(o)) => o,
                Ok(_) => {
                    return Err(ToolError::new(format!(
                        "the arguments of `{}` must be a JSON object",
                        self.def.name
                    )))
                }
                Err(e) => {
                    return Err(ToolError::new(format!(
                        "invalid arguments for `{}`: {e}",
                        self.def.name
                    )))
                }
            };
            let params = CallToolRequestParams::new(self.def.name.clone()).with_arguments(args);
            let result =
                self.peer.call_tool(params).await.map_err(|e| {
                    ToolError::new(format!("MCP server {} failed: {e}", self.server))
                })?;
            let content = result_text(&result);
            if result.is_error == Some(true) {
                return Err(ToolError::new(content));
            }
            Ok(content)
        })
    }
}

/// The text of a tool result: its text blocks joined by newlines (other blocks named), or its
/// structured content as JSON when it has no blocks; cut at [`MAX_RESULT_CHARS`].
fn result_text(result: &CallToolResult) -> String {
    let mut parts: Vec<String> = result
        .content
        .iter()
        .map(|block| match block {
            ContentBlock::Text(t) => t.text.clone(),
            ContentBlock::Image(_) => "[an image]".to_owned(),
            ContentBlock::Audio(_) => "[audio]".to_owned(),
            ContentBlock::Resource(_) => "[an embedded resource]".to_owned(),
            ContentBlock::ResourceLink(r) => format!("[a resource link: {}]", r.uri),
            _ => "[content of a kind llmux does not read]".to_owned(),
        })
        .collect();
    if parts.is_empty() {
        if let Some(v) = &result.structured_content {
            parts.push(v.to_string());
        }
    }
    let text = parts.join("\n");
    if text.chars().nth(MAX_RESULT_CHARS).is_some() {
        format!(
            "{} [cut: the result was longer than {MAX_RESULT_CHARS} characters]",
            cut(&text, MAX_RESULT_CHARS)
        )
    } else {
        text
    }
}

/// Says whether a call may run: `--yes`, `--allow`, or the user's answer on the terminal (one
/// question at a time).
struct Confirm {
    all: bool,
    allowed: HashSet<String>,
    can_ask: bool,
    asking: tokio::sync::Mutex<()>,
}

impl ToolApproval for Confirm {
    fn approve<'a>(&'a self, call: &'a ToolCall) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            if self.all || self.allowed.contains(&call.name) {
                return true;
            }
            if !self.can_ask {
                let _ = writeln!(
                    io::stderr(),
                    "[tool] {} refused: not allowed by --allow, and no terminal to ask on",
                    call.name
                );
                return false;
            }
            let _turn = self.asking.lock().await;
            let question = format!("run {} {}? [y/N] ", call.name, shown(&call.arguments));
            let answer = tokio::task::spawn_blocking(move || ask(&question)).await;
            matches!(answer, Ok(Some(a)) if is_yes(&a))
        })
    }
}

/// Writes `question` on stderr and reads one answer line from stdin (None at its end).
fn ask(question: &str) -> Option<String> {
    let mut err = io::stderr();
    let _ = err.write_all(question.as_bytes());
    let _ = err.flush();
    let mut line = String::new();
    match io::stdin()
        .lock()
        .take(MAX_ANSWER_BYTES)
        .read_line(&mut line)
    {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line),
    }
}

fn is_yes(answer: &str) -> bool {
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_y_or_yes_runs_a_tool() {
        for yes in ["y", "Y\n", " yes ", "YES\r\n"] {
            assert!(is_yes(yes), "{yes:?}");
        }
        for no in ["", "\n", "n", "no", "yep", "y y"] {
            assert!(!is_yes(no), "{no:?}");
        }
    }

    #[test]
    fn shown_text_is_one_short_line() {
        assert_eq!(shown("a\nb\tc"), "a b c");
        let long = "é".repeat(SHOWN_CHARS + 5);
        let s = shown(&long);
        assert_eq!(s.chars().count(), SHOWN_CHARS + 1);
        assert!(s.ends_with('…'));
    }

    #[test]
    fn long_results_are_cut_with_a_note() {
        let mut r =
            CallToolResult::success(vec![ContentBlock::text("x".repeat(MAX_RESULT_CHARS + 1))]);
        let text = result_text(&r);
        assert!(text.ends_with("[cut: the result was longer than 100000 characters]"));
        r.content = vec![ContentBlock::text("a"), ContentBlock::text("b")];
        assert_eq!(result_text(&r), "a\nb");
    }
}
