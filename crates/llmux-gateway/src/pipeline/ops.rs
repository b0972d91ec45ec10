//! Step 3 of the pipeline: what an operation asks of an upstream, and the one routed call.
//!
//! An [`Operation`] names the core request and answer types, how a request is estimated and an
//! answer's usage read, and how one channel is called. [`route`] walks the plan with failover;
//! breakers, retries and timeouts happen inside the core client, once per channel.

use std::future::Future;
use std::io;
use std::pin::Pin;

use llmux_core::stream::response_to_events;
use llmux_core::tokens::{estimate_request, estimate_text};
use llmux_core::{
    ChatRequest, ChatResponse, ChatStream, EmbeddingRequest, EmbeddingResponse, Error,
    FinishReason, StreamAccumulator, Usage,
};
use serde::Serialize;

use crate::cache::Stored;
use crate::config::Channel;
use crate::routing::{Failed, Plan, Routed};
use crate::state::AppState;

/// A token estimate made before the call.
#[derive(Debug, Clone, Copy)]
pub struct Estimate {
    /// The prompt (billed when nothing better is known).
    pub prompt: u64,
    /// Prompt plus the output reserve (what limits admit).
    pub total: u64,
}

/// What one channel answered.
pub enum Reply<A> {
    /// A whole answer.
    Whole(A),
    /// A stream whose first content event has arrived (nothing was sent to the client yet).
    Stream(ChatStream),
}

impl<A> std::fmt::Debug for Reply<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Reply::Whole(_) => "Reply::Whole",
            Reply::Stream(_) => "Reply::Stream",
        })
    }
}

/// A boxed call future.
pub type CallFuture<'a, A> = Pin<Box<dyn Future<Output = Result<Reply<A>, Error>> + Send + 'a>>;

/// What is asked of an upstream.
pub trait Operation: Send + Sync + 'static {
    /// The core request.
    type Request: Send + Sync + 'static;
    /// The core whole answer.
    type Answer: Send + 'static;
    /// The GenAI semantic conventions' `gen_ai.operation.name` of this operation.
    const OPERATION: &'static str;
    /// The public model the request names.
    fn model(req: &Self::Request) -> &str;
    /// The token estimate for limits and fallback billing.
    fn estimate(req: &Self::Request) -> Estimate;
    /// The usage an answer reports.
    fn usage(answer: &Self::Answer) -> Option<Usage>;
    /// The model an answer says produced it.
    fn response_model(answer: &Self::Answer) -> &str;
    /// One call on `channel` for its `upstream` model (passed beside the request, which is
    /// borrowed, never copied); `stream` when the client asked for one.
    fn call<'a>(
        channel: &'a Channel,
        upstream: &'a str,
        req: &'a Self::Request,
        stream: bool,
    ) -> CallFuture<'a, Self::Answer>;
    /// Writes the request as the response cache keys it: JSON of every field that shapes the
    /// answer (not the model, which the route stands for; not the end-user id or stream
    /// options). `Ok(false)`: such a request is never cached.
    fn cache_key(req: &Self::Request, out: &mut dyn io::Write) -> io::Result<bool>;
    /// A complete answer as the cache keeps it (`None`: not kept).
    fn to_stored(answer: Self::Answer) -> Option<Stored>;
    /// A stored answer as the reply to a request (a stream when `stream`); `None` when it
    /// cannot answer it.
    fn from_stored(stored: &Stored, stream: bool) -> Option<Reply<Self::Answer>>;
}

/// A stream of already known events.
fn replay(events: Vec<llmux_core::StreamEvent>) -> ChatStream {
    Box::pin(futures::stream::iter(events.into_iter().map(Ok)))
}

/// Chat completions, whole or streamed.
#[derive(Debug)]
pub struct Chat;

impl Operation for Chat {
    type Request = ChatRequest;
    type Answer = ChatResponse;
    const OPERATION: &'static str = "chat";

    fn model(req: &ChatRequest) -> &str {
        &req.model
    }

    fn estimate(req: &ChatRequest) -> Estimate {
        Estimate {
            prompt: req
                .messages
                .iter()
                .map(|m| 4 + estimate_text(&m.content.text()))
                .sum(),
            total: estimate_request(req),
        }
    }

    fn usage(answer: &ChatResponse) -> Option<Usage> {
        answer.usage
    }

    fn response_model(answer: &ChatResponse) -> &str {
        &answer.model
    }

    fn call<'a>(
        ch: &'a Channel,
        upstream: &'a str,
        req: &'a ChatRequest,
        stream: bool,
    ) -> CallFuture<'a, ChatResponse> {
        Box::pin(async move {
            let up = ch.pick();
            let provider = up.provider.as_ref();
            if stream {
                up.client
                    .stream_with(provider, upstream, req)
                    .await
                    .map(Reply::Stream)
            } else {
                up.client
                    .chat_with(provider, upstream, req)
                    .await
                    .map(Reply::Whole)
            }
        })
    }

    fn cache_key(req: &ChatRequest, out: &mut dyn io::Write) -> io::Result<bool> {
        // Every field is named: a field added to the request fails to compile here until it
        // is decided whether it shapes the answer.
        let ChatRequest {
            model: _,
            messages,
            input_style,
            tools,
            tool_choice,
            parallel_tool_calls,
            temperature,
            top_p,
            top_k,
            max_tokens,
            max_tokens_advisory,
            stop,
            seed,
            repetition_penalty,
            presence_penalty,
            frequency_penalty,
            n,
            user: _,
            response_format,
            enable_search,
            thinking,
            stream_usage: _,
            extra,
        } = req;
        // Several choices are not replayed as a stream (a stream carries one).
        if n.is_some_and(|n| n > 1) {
            return Ok(false);
        }
        let key = (
            messages,
            input_style,
            tools,
            tool_choice,
            parallel_tool_calls,
            (temperature, top_p, top_k, max_tokens, max_tokens_advisory),
            (
                stop,
                seed,
                repetition_penalty,
                presence_penalty,
                frequency_penalty,
                n,
            ),
            (response_format, enable_search, thinking),
            extra,
        );
        write_json(out, &key)
    }

    fn to_stored(answer: ChatResponse) -> Option<Stored> {
        let moderated = answer
            .choices
            .iter()
            .any(|c| c.finish_reason == Some(FinishReason::ContentFilter));
        (!moderated).then_some(Stored::Chat { answer })
    }

    fn from_stored(stored: &Stored, stream: bool) -> Option<Reply<ChatResponse>> {
        match (stored, stream) {
            (Stored::Chat { answer }, false) => Some(Reply::Whole(answer.clone())),
            (Stored::Chat { answer }, true) => (answer.choices.len() <= 1)
                .then(|| Reply::Stream(replay(response_to_events(answer)))),
            (Stored::Events { events }, true) => Some(Reply::Stream(replay(events.clone()))),
            (Stored::Events { events }, false) => {
                let mut acc = StreamAccumulator::new();
                for ev in events {
                    acc.push(ev).ok()?;
                }
                acc.finish().ok().map(Reply::Whole)
            }
            (Stored::Embedding { .. }, _) => None,
        }
    }
}

/// Writes `value` as JSON (a request that cannot be written is not cached).
fn write_json(out: &mut dyn io::Write, value: &impl Serialize) -> io::Result<bool> {
    serde_json::to_writer(out, value).map_err(io::Error::other)?;
    Ok(true)
}

/// Embeddings.
#[derive(Debug)]
pub struct Embed;

impl Operation for Embed {
    type Request = EmbeddingRequest;
    type Answer = EmbeddingResponse;
    const OPERATION: &'static str = "embeddings";

    fn model(req: &EmbeddingRequest) -> &str {
        &req.model
    }

    fn estimate(req: &EmbeddingRequest) -> Estimate {
        let prompt = req.input.iter().map(|t| estimate_text(t)).sum();
        Estimate {
            prompt,
            total: prompt,
        }
    }

    fn usage(answer: &EmbeddingResponse) -> Option<Usage> {
        answer.usage.map(|mut u| {
            // Some upstreams report only a total for embeddings: it is all input.
            if u.input_tokens == 0 {
                u.input_tokens = u.total_tokens;
            }
            u
        })
    }

    fn response_model(answer: &EmbeddingResponse) -> &str {
        &answer.model
    }

    fn call<'a>(
        ch: &'a Channel,
        upstream: &'a str,
        req: &'a EmbeddingRequest,
        _stream: bool,
    ) -> CallFuture<'a, EmbeddingResponse> {
        Box::pin(async move {
            let up = ch.pick();
            up.client
                .embed_with(up.provider.as_ref(), upstream, req)
                .await
                .map(Reply::Whole)
        })
    }

    fn cache_key(req: &EmbeddingRequest, out: &mut dyn io::Write) -> io::Result<bool> {
        let EmbeddingRequest {
            model: _,
            input,
            dimensions,
            text_type,
            user: _,
            extra,
        } = req;
        write_json(out, &(input, dimensions, text_type, extra))
    }

    fn to_stored(answer: EmbeddingResponse) -> Option<Stored> {
        Some(Stored::Embedding { answer })
    }

    fn from_stored(stored: &Stored, _stream: bool) -> Option<Reply<EmbeddingResponse>> {
        match stored {
            Stored::Embedding { answer } => Some(Reply::Whole(answer.clone())),
            Stored::Chat { .. } | Stored::Events { .. } => None,
        }
    }
}

/// The one routed call: the plan's channels in order until one answers or an error that
/// concerns the request (not the channel) stops it; every failover is counted.
pub(super) async fn route<Op: Operation>(
    state: &AppState,
    plan: &Plan,
    req: &Op::Request,
    stream: bool,
) -> Result<Routed<Reply<Op::Answer>>, Failed> {
    let metrics = &state.metrics;
    let routes = state.routes.current();
    routes
        .failover(
            plan,
            |ch, upstream| async move { Op::call(&ch, &upstream, req, stream).await },
            |ch, err| {
                metrics
                    .failovers
                    .with_label_values(&[ch.provider_id, &ch.name, err.kind().as_str()])
                    .inc();
            },
        )
        .await
}
