//! The agent loop: send the conversation with tool definitions, run the tools the model calls
//! (concurrently when it calls several at once), feed the results back, and repeat until the
//! model answers without calling a tool or the step limit is reached.
//!
//! It works the same over every provider that supports tools, streamed or not: one loop
//! drives both [`Agent::run`] (whole answers through [`Client::chat`]) and
//! [`Agent::run_streaming`] (events through [`Client::chat_stream`] folded with
//! [`StreamAccumulator`]), so both build the same transcript.
//!
//! ```no_run
//! # async fn demo(client: llmux_core::Client) -> Result<(), llmux_core::agent::AgentError> {
//! use llmux_core::agent::{tool_fn, Agent, ToolError};
//! use llmux_core::Message;
//! use schemars::JsonSchema;
//! use serde::Deserialize;
//!
//! /// Current weather for a city.
//! #[derive(Deserialize, JsonSchema)]
//! struct GetWeather {
//!     city: String,
//! }
//!
//! let agent = Agent::new(client, "openai/gpt-4o-mini")
//!     .tool(tool_fn("get_weather", "", |a: GetWeather| async move {
//!         Ok::<_, ToolError>(format!("{}: 18 °C, sunny", a.city))
//!     }))
//!     .max_steps(5);
//! let run = agent.run(vec![Message::user("Weather in Paris?")]).await?;
//! println!("{} ({} steps, {} tokens)", run.text(), run.steps, run.usage.total_tokens);
//! # Ok(()) }
//! ```
//!
//! # Transcript
//!
//! The transcript is the input messages followed by, per step, the assistant message (text
//! and tool calls, as the provider returned it, with an id given to any call that had none)
//! and then one `tool` message per call, in the order of the calls (not the order the tools
//! finished), each with the call's `tool_call_id`. The last message is the final answer.
//!
//! A call to a tool that is not registered, arguments that do not parse into the tool's type,
//! and ordinary tool errors become the call's result (`Error: …`), so the model can correct
//! itself; a [`ToolError::fatal`] stops the run.
//!
//! # Bounds
//!
//! Every call runs under a timeout ([`Agent::tool_timeout`], default [`DEFAULT_TOOL_TIMEOUT`],
//! or [`Agent::tool_timeout_for`] one tool): a call still running then is dropped (cancelled)
//! and its result says it timed out. At most [`Agent::max_parallel_tools`] calls run at once
//! (default [`DEFAULT_MAX_PARALLEL_TOOLS`]); the others of the step wait for a free slot. A
//! tool that panics does not end the run: the panic is caught and its message becomes the
//! call's error result. An [`Agent::approval`] hook may refuse a call before it runs (the
//! model is told it was refused). With [`Agent::context_window`] the conversation is fitted
//! into the model's window by the [context manager](crate::context) before every model call;
//! the transcript keeps every message.

use std::any::Any;
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, Stream, StreamExt};

use crate::client::Client;
use crate::context::{ContextManager, FitReport};
use crate::error::{Error, Result};
use crate::providers::{BoxFuture, Provider};
use crate::stream::{StreamAccumulator, StreamEvent};
use crate::tokenize::Tokenizer;
use crate::types::{ChatRequest, ChatResponse, Message, Role, Tool, ToolCall, Usage};

mod tool;

pub use schemars;
pub use schemars::JsonSchema;
pub use tool::{
    parameters_schema, parse_arguments, tool_fn, DynTool, FnTool, Json, ToolError, ToolOutput,
    TypedTool,
};

/// The default maximum number of model calls in one run.
pub const DEFAULT_MAX_STEPS: usize = 10;

/// How long a tool call may run unless [`Agent::tool_timeout`] says otherwise.
pub const DEFAULT_TOOL_TIMEOUT: Duration = Duration::from_secs(120);

/// How many tool calls may run at once unless [`Agent::max_parallel_tools`] says otherwise.
pub const DEFAULT_MAX_PARALLEL_TOOLS: usize = 8;

/// Decides, before a tool call runs, whether it may (a confirmation prompt, an allow-list).
pub trait ToolApproval: Send + Sync {
    /// True to run `call`; false reports it to the model as refused. Not under the tool's
    /// timeout: a person may take their time to answer.
    fn approve<'a>(&'a self, call: &'a ToolCall) -> BoxFuture<'a, bool>;
}

/// Why an agent run failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The model was still calling tools after `max_steps` model calls.
    #[error("{}", step_limit_message(*max_steps, last_calls))]
    StepLimit {
        /// The limit that was reached (model calls made).
        max_steps: usize,
        /// The tool calls of the last step, which were not executed.
        last_calls: Vec<ToolCall>,
        /// The conversation so far, ending with the assistant message of those calls.
        transcript: Vec<Message>,
    },
    /// A tool failed with [`ToolError::fatal`].
    #[error("tool `{name}` (call `{call_id}`) failed: {message}")]
    Tool {
        /// The tool's name.
        name: String,
        /// The call's id.
        call_id: String,
        /// What the tool said.
        message: String,
    },
    /// A model call failed, or the agent is set up wrong (an invalid tool definition, two
    /// tools with one name): the library's own error, with its kind.
    #[error(transparent)]
    Llm(#[from] Error),
}

impl AgentError {
    /// The library error, when this is one.
    pub fn as_llm(&self) -> Option<&Error> {
        match self {
            AgentError::Llm(e) => Some(e),
            AgentError::StepLimit { .. } | AgentError::Tool { .. } => None,
        }
    }
}

fn step_limit_message(max_steps: usize, calls: &[ToolCall]) -> String {
    let names: Vec<String> = calls
        .iter()
        .map(|c| format!("`{}` (call `{}`)", c.name, c.id))
        .collect();
    format!(
        "the agent reached its step limit of {max_steps} model call{} without a final answer; \
         the model's last step still called {} (not executed)",
        if max_steps == 1 { "" } else { "s" },
        names.join(", ")
    )
}

/// The outcome of a run that ended with a final answer.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentRun {
    /// The last model response (the final answer, without tool calls).
    pub response: ChatResponse,
    /// The input messages, then every assistant and tool message of the run.
    pub transcript: Vec<Message>,
    /// Model calls made.
    pub steps: usize,
    /// Token usage summed over the steps (steps whose provider reported none add nothing).
    pub usage: Usage,
    input_len: usize,
}

impl AgentRun {
    /// The text of the final answer.
    pub fn text(&self) -> Cow<'_, str> {
        self.response.text()
    }

    /// The messages the run added after the input.
    pub fn new_messages(&self) -> &[Message] {
        self.transcript.get(self.input_len..).unwrap_or_default()
    }
}

/// One event of a streamed run ([`Agent::run_streaming`]).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum AgentEvent {
    /// Model call number `step` (from 1) is about to be sent.
    StepStarted {
        /// The step.
        step: usize,
    },
    /// An event of the model's streamed answer.
    Model(StreamEvent),
    /// The conversation was too long for [`Agent::context_window`] and was fitted before
    /// model call `step` (sent only when messages were left out or summarized).
    ContextFitted {
        /// The step about to be sent.
        step: usize,
        /// What the context manager did.
        report: FitReport,
    },
    /// A tool call is about to run, or to wait for a free slot under
    /// [`Agent::max_parallel_tools`] (all calls of a step are announced before any finishes).
    ToolStarted {
        /// The step whose answer made the call.
        step: usize,
        /// The call, as the model made it.
        call: ToolCall,
    },
    /// A tool call finished (in completion order; the transcript keeps call order).
    ToolFinished {
        /// The step whose answer made the call.
        step: usize,
        /// The call.
        call: ToolCall,
        /// The result sent back to the model.
        content: String,
        /// True when the result reports an error (unknown tool, bad arguments, tool error,
        /// timeout, panic, refusal).
        is_error: bool,
    },
    /// The run ended with a final answer; always the last event.
    Finished(Box<AgentRun>),
}

/// A stream of agent events; ends after [`AgentEvent::Finished`] or an error.
pub type AgentStream = Pin<Box<dyn Stream<Item = Result<AgentEvent, AgentError>> + Send>>;

/// A model with tools, run in a loop. Cheap to clone.
#[derive(Clone)]
pub struct Agent {
    client: Client,
    model: String,
    provider: Option<Arc<dyn Provider>>,
    tools: Vec<Arc<dyn DynTool>>,
    active: Option<Vec<String>>,
    max_steps: usize,
    options: ChatRequest,
    tool_timeout: Duration,
    tool_timeouts: HashMap<String, Duration>,
    max_parallel_tools: usize,
    window: Option<u64>,
    context: Option<Arc<ContextManager>>,
    approval: Option<Arc<dyn ToolApproval>>,
}

impl fmt::Debug for Agent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Agent")
            .field("model", &self.model)
            .field("provider", &self.provider.as_ref().map(|p| p.id()))
            .field("tools", &self.tools.len())
            .field("active", &self.active)
            .field("max_steps", &self.max_steps)
            .field("tool_timeout", &self.tool_timeout)
            .field("tool_timeouts", &self.tool_timeouts)
            .field("max_parallel_tools", &self.max_parallel_tools)
            .field("window", &self.window)
            .field("approval", &self.approval.is_some())
            .finish_non_exhaustive()
    }
}

impl Agent {
    /// An agent calling `model` (`provider/model`) through `client`, with no tools yet and
    /// a limit of [`DEFAULT_MAX_STEPS`] model calls.
    pub fn new(client: Client, model: impl Into<String>) -> Self {
        Agent {
            client,
            model: model.into(),
            provider: None,
            tools: Vec::new(),
            active: None,
            max_steps: DEFAULT_MAX_STEPS,
            options: ChatRequest::default(),
            tool_timeout: DEFAULT_TOOL_TIMEOUT,
            tool_timeouts: HashMap::new(),
            max_parallel_tools: DEFAULT_MAX_PARALLEL_TOOLS,
            window: None,
            context: None,
            approval: None,
        }
    }

    /// An agent calling a given provider (one not in the registry, or a wrapped one) through
    /// `client`'s retries and breakers; `model` is the upstream model name.
    pub fn with_provider(
        client: Client,
        provider: Arc<dyn Provider>,
        model: impl Into<String>,
    ) -> Self {
        Agent {
            provider: Some(provider),
            ..Agent::new(client, model)
        }
    }

    /// Adds a tool: a [`TypedTool`] (such as [`tool_fn`]) or any [`DynTool`].
    pub fn tool(mut self, tool: impl DynTool + 'static) -> Self {
        self.tools.push(Arc::new(tool));
        self
    }

    /// Adds a shared tool.
    pub fn shared_tool(mut self, tool: Arc<dyn DynTool>) -> Self {
        self.tools.push(tool);
        self
    }

    /// Offers the model only these of the registered tools (all of them by default), in
    /// registration order. Calls to the others are still answered if the model makes them.
    pub fn active_tools<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.active = Some(names.into_iter().map(Into::into).collect());
        self
    }

    /// The most model calls one run may make (at least 1). A model still calling tools at the
    /// limit ends the run with [`AgentError::StepLimit`].
    pub fn max_steps(mut self, steps: usize) -> Self {
        self.max_steps = steps.max(1);
        self
    }

    /// How long any tool call may run (at least 1 ms; default [`DEFAULT_TOOL_TIMEOUT`]). A call
    /// still running then is dropped and the model is told it timed out.
    pub fn tool_timeout(mut self, timeout: Duration) -> Self {
        self.tool_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// How long calls to the tool `name` may run, instead of [`Agent::tool_timeout`].
    pub fn tool_timeout_for(mut self, name: impl Into<String>, timeout: Duration) -> Self {
        self.tool_timeouts
            .insert(name.into(), timeout.max(Duration::from_millis(1)));
        self
    }

    /// The most tool calls that run at once (at least 1; default
    /// [`DEFAULT_MAX_PARALLEL_TOOLS`]); further calls of the same step wait for a slot.
    pub fn max_parallel_tools(mut self, max: usize) -> Self {
        self.max_parallel_tools = max.max(1);
        self
    }

    /// Fits the conversation into `window` tokens (prompt and answer; `max_tokens`, or
    /// 1024, is kept for the answer) before every model call, with the context manager set by
    /// [`Agent::context_manager`] or, by default, one counting with the model's tokenizer that
    /// keeps the newest turns (tool calls with their results) and drops the oldest.
    pub fn context_window(mut self, window: u64) -> Self {
        self.window = Some(window);
        self
    }

    /// The context manager [`Agent::context_window`] fits with (one with a summarizer or a
    /// retriever, say). Its running summary is shared by every run of this agent.
    pub fn context_manager(mut self, manager: Arc<ContextManager>) -> Self {
        self.context = Some(manager);
        self
    }

    /// Asks `approval` before each tool call runs; a refused call is reported to the model as
    /// refused (`Error: …`) and the run goes on.
    pub fn approval(mut self, approval: Arc<dyn ToolApproval>) -> Self {
        self.approval = Some(approval);
        self
    }

    /// Options for every model call: sampling, `max_tokens`, `parallel_tool_calls`, `extra`…
    /// Its model, messages and tools are replaced by the agent's; `n` is ignored (one
    /// answer); a `tool_choice` applies to the first step only, so a forced call cannot loop.
    pub fn options(mut self, options: ChatRequest) -> Self {
        self.options = options;
        self
    }

    /// Runs until a final answer, calling the model with whole (non-streamed) answers.
    pub async fn run(&self, messages: Vec<Message>) -> Result<AgentRun, AgentError> {
        let mut events = self.drive(messages, false);
        while let Some(ev) = events.next().await {
            if let AgentEvent::Finished(run) = ev? {
                return Ok(*run);
            }
        }
        Err(Error::new(
            crate::ErrorKind::Internal,
            "the agent loop ended without an answer",
        )
        .into())
    }

    /// Runs until a final answer with streamed model calls, yielding the model's events, tool
    /// events and finally [`AgentEvent::Finished`] with the same [`AgentRun`] [`Agent::run`]
    /// would return. Dropping the stream stops the run (and any tools in flight).
    pub fn run_streaming(&self, messages: Vec<Message>) -> AgentStream {
        self.drive(messages, true)
    }

    /// Every registered tool's definition (in registration order, checked: schemas usable,
    /// names unique) and the subset offered to the model.
    fn definitions(&self) -> Result<(Vec<Tool>, Vec<Tool>)> {
        let mut all = Vec::with_capacity(self.tools.len());
        let mut seen = HashSet::new();
        for t in &self.tools {
            let def = t.definition()?;
            if !seen.insert(def.name.clone()) {
                return Err(Error::invalid_request(format!(
                    "two tools are named `{}`",
                    def.name
                )));
            }
            all.push(def);
        }
        let mut offered = all.clone();
        if let Some(active) = &self.active {
            if let Some(missing) = active.iter().find(|n| !seen.contains(n.as_str())) {
                return Err(Error::invalid_request(format!(
                    "active tool `{missing}` is not registered"
                )));
            }
            offered.retain(|d| active.contains(&d.name));
        }
        Ok((all, offered))
    }

    fn request(&self, transcript: &[Message], defs: &[Tool], step: usize) -> ChatRequest {
        let mut req = self.options.clone();
        req.model.clone_from(&self.model);
        req.messages = transcript.to_vec();
        req.tools = defs.to_vec();
        req.n = None;
        if step > 1 || defs.is_empty() {
            req.tool_choice = None;
        }
        req
    }

    async fn complete(&self, req: ChatRequest) -> Result<ChatResponse> {
        match &self.provider {
            Some(p) => Box::pin(self.client.chat_with(p.as_ref(), &self.model, &req)).await,
            None => Box::pin(self.client.chat(req)).await,
        }
    }

    async fn open(&self, req: ChatRequest) -> Result<crate::ChatStream> {
        match &self.provider {
            Some(p) => Box::pin(self.client.stream_with(p.as_ref(), &self.model, &req)).await,
            None => Box::pin(self.client.chat_stream(req)).await,
        }
    }

    /// The timeout of calls to `name`.
    fn timeout_for(&self, name: &str) -> Duration {
        self.tool_timeouts
            .get(name)
            .copied()
            .unwrap_or(self.tool_timeout)
    }

    /// The context manager and window to fit each request with, if any.
    fn fitter(&self) -> Result<Option<(Arc<ContextManager>, u64)>> {
        let Some(window) = self.window else {
            return Ok(None);
        };
        let manager = match &self.context {
            Some(m) => m.clone(),
            None => {
                let tokenizer = match &self.provider {
                    Some(p) => Tokenizer::for_provider_model(p.id(), &self.model)?,
                    None => Tokenizer::for_model(&self.model)?,
                };
                Arc::new(ContextManager::new(tokenizer))
            }
        };
        Ok(Some((manager, window)))
    }

    /// Runs one call: unknown tools, refusals, non-fatal errors, timeouts and panics become
    /// an `Error: …` result. `all` are the registered definitions, in the order of
    /// `self.tools`.
    async fn execute(&self, call: &ToolCall, all: &[Tool]) -> Result<(String, bool), AgentError> {
        let tool = all
            .iter()
            .position(|d| d.name == call.name)
            .and_then(|i| self.tools.get(i));
        let Some(tool) = tool else {
            let names: Vec<&str> = all.iter().map(|d| d.name.as_str()).collect();
            return Ok((
                format!(
                    "Error: there is no tool named `{}`; the tools are: {}",
                    call.name,
                    names.join(", ")
                ),
                true,
            ));
        };
        if let Some(approval) = &self.approval {
            if !approval.approve(call).await {
                return Ok((
                    format!(
                        "Error: the call to `{}` was not approved, so it did not run",
                        call.name
                    ),
                    true,
                ));
            }
        }
        let limit = self.timeout_for(&call.name);
        // The call is made inside the guarded future, so a panic while building it is caught
        // as well as one while it runs.
        let guarded = AssertUnwindSafe(async { tool.invoke(&call.arguments).await }).catch_unwind();
        match tokio::time::timeout(limit, guarded).await {
            Err(_) => Ok((
                format!(
                    "Error: `{}` did not finish within {} and was cancelled (timed out)",
                    call.name,
                    show_duration(limit)
                ),
                true,
            )),
            Ok(Err(payload)) => Ok((
                format!(
                    "Error: `{}` panicked: {}",
                    call.name,
                    panic_message(payload.as_ref())
                ),
                true,
            )),
            Ok(Ok(Ok(content))) => Ok((content, false)),
            Ok(Ok(Err(e))) if e.is_fatal() => Err(AgentError::Tool {
                name: call.name.clone(),
                call_id: call.id.clone(),
                message: e.message().to_owned(),
            }),
            Ok(Ok(Err(e))) => Ok((format!("Error: {}", e.message()), true)),
        }
    }

    /// The loop, shared by the streamed and the whole-answer forms.
    fn drive(&self, messages: Vec<Message>, streaming: bool) -> AgentStream {
        let agent = self.clone();
        let stream = async_stream::try_stream! {
            let (all, defs) = agent.definitions()?;
            let fitter = agent.fitter()?;
            let input_len = messages.len();
            let mut transcript = messages;
            let mut usage = Usage::default();
            let mut step = 0;
            loop {
                step += 1;
                yield AgentEvent::StepStarted { step };
                let mut req = agent.request(&transcript, &defs, step);
                if let Some((manager, window)) = &fitter {
                    let reserve = req
                        .max_tokens
                        .map_or(crate::tokens::DEFAULT_OUTPUT_RESERVE, u64::from);
                    let (fitted, report) = manager.fit_with_report(&req, *window, reserve).await?;
                    req = fitted;
                    if report.dropped_messages > 0 || report.summary_tokens > 0 {
                        yield AgentEvent::ContextFitted { step, report };
                    }
                }
                let response = if streaming {
                    let mut events = agent.open(req).await?;
                    let mut acc = StreamAccumulator::new();
                    while let Some(ev) = events.next().await {
                        let ev = ev?;
                        acc.push(&ev)?;
                        yield AgentEvent::Model(ev);
                    }
                    acc.finish()?
                } else {
                    agent.complete(req).await?
                };
                if let Some(u) = response.usage {
                    add_usage(&mut usage, &u);
                }
                let mut message = response
                    .choices
                    .first()
                    .map(|c| c.message.clone())
                    .ok_or_else(|| Error::protocol("the model's answer has no choices"))?;
                message.role = Role::Assistant;
                name_calls(&mut message.tool_calls, step);
                let calls = message.tool_calls.clone();
                transcript.push(message);
                if calls.is_empty() {
                    yield AgentEvent::Finished(Box::new(AgentRun {
                        response,
                        transcript,
                        steps: step,
                        usage,
                        input_len,
                    }));
                    break;
                }
                if step >= agent.max_steps {
                    Err::<(), _>(AgentError::StepLimit {
                        max_steps: agent.max_steps,
                        last_calls: calls,
                        transcript,
                    })?;
                    break;
                }
                for call in &calls {
                    yield AgentEvent::ToolStarted { step, call: call.clone() };
                }
                // Collected first: a `map` closure kept in the stream's state would make the
                // whole run's future not `Send` (a higher-ranked lifetime rustc cannot prove).
                let calls_ready: Vec<_> = calls
                    .iter()
                    .enumerate()
                    .map(|(i, call)| {
                        let agent = &agent;
                        let all = &all;
                        async move { (i, agent.execute(call, all).await) }
                    })
                    .collect();
                let mut pending = futures::stream::iter(calls_ready)
                    .buffer_unordered(agent.max_parallel_tools);
                let mut results: Vec<Option<String>> = vec![None; calls.len()];
                while let Some((i, outcome)) = pending.next().await {
                    let (content, is_error) = outcome?;
                    yield AgentEvent::ToolFinished {
                        step,
                        call: calls[i].clone(),
                        content: content.clone(),
                        is_error,
                    };
                    results[i] = Some(content);
                }
                drop(pending);
                for (call, content) in calls.iter().zip(results) {
                    transcript.push(Message::tool_result(call.id.clone(), content.unwrap_or_default()));
                }
            }
        };
        Box::pin(stream)
    }
}

/// The text of a caught panic (`panic!` with a message gives a `&str` or a `String`).
fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

/// `2s`, `1.5s`, `250ms`.
fn show_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

/// Gives every call an id (`call_<step>_<i>` where the provider sent none), so each tool
/// result can name the call it answers.
fn name_calls(calls: &mut [ToolCall], step: usize) {
    for (i, c) in calls.iter_mut().enumerate() {
        if c.id.is_empty() {
            c.id = format!("call_{step}_{i}");
        }
    }
}

fn add_usage(total: &mut Usage, u: &Usage) {
    total.input_tokens += u.input_tokens;
    total.output_tokens += u.output_tokens;
    total.total_tokens += u.total_tokens;
    if let Some(c) = u.cached_tokens {
        *total.cached_tokens.get_or_insert(0) += c;
    }
    if let Some(r) = u.reasoning_tokens {
        *total.reasoning_tokens.get_or_insert(0) += r;
    }
}
