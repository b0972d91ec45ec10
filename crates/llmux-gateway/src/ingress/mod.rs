//! Ingress dialects: the protocols clients speak to the gateway. Each dialect is one module
//! that decodes its requests into core types and encodes core answers (whole, streamed, or an
//! error) back into its own format. Decoders and encoders are pure: no IO, no state, no
//! authentication, no routing; the [`crate::pipeline`] does the rest, the same way for every
//! dialect. A dialect implements [`Dialect`] once per operation it serves
//! ([`crate::pipeline::Chat`], [`crate::pipeline::Embed`]) and declares its HTTP endpoints
//! (with their OpenAPI description) in its `mod.rs`; the router gets one row per endpoint.

pub mod dashscope;
pub mod gemini;
pub mod openai;
pub mod responses;

use axum::http::HeaderMap;
use bytes::Bytes;
use llmux_core::StreamEvent;
use serde::Serialize;

use crate::error::{ApiError, Ingress};
use crate::pipeline::Operation;

/// What a dialect's decoder found in a request.
#[derive(Debug)]
pub struct Decoded<R, O> {
    /// The core request (its `model` is the public model name the client asked for).
    pub request: R,
    /// How the client wants the answer shaped (result format, usage chunk, encoding…).
    pub options: O,
    /// The client asked for a stream.
    pub stream: bool,
}

/// What an encoder knows of the request it answers.
#[derive(Debug)]
pub struct Egress<'a, O> {
    /// The gateway's request id.
    pub request_id: &'a str,
    /// The public model name, as the client asked for it.
    pub model: &'a str,
    /// The decoder's options.
    pub options: &'a O,
    /// Prompt tokens as estimated before the call (some dialects report them until the
    /// upstream does).
    pub prompt_estimate: u64,
}

/// One operation in one client dialect.
pub trait Dialect<Op: Operation>: Send + Sync + 'static {
    /// The error envelope of the dialect.
    const INGRESS: Ingress;
    /// How the client wants the answer shaped.
    type Options: Send + Sync + 'static;
    /// The JSON body of a whole answer.
    type Body: Serialize;

    /// The request's head and body → the core request. Bounded by the body size limit the
    /// pipeline applies before; every field is validated here, with errors naming it.
    fn decode(
        head: &HeaderMap,
        body: &[u8],
    ) -> Result<Decoded<Op::Request, Self::Options>, ApiError>;

    /// A whole answer → the response body.
    fn encode(answer: &Op::Answer, egress: &Egress<'_, Self::Options>) -> Self::Body;

    /// The encoder of a streamed answer, for dialects that stream this operation (the decoder
    /// only sets [`Decoded::stream`] when they do).
    fn stream_encoder(egress: &Egress<'_, Self::Options>) -> Option<Box<dyn StreamEncoder>> {
        let _ = egress;
        None
    }
}

/// Encodes one streamed answer, event by event.
pub trait StreamEncoder: Send + 'static {
    /// The response's `Content-Type`.
    fn content_type(&self) -> &'static str;
    /// Whether keep-alive comments may be sent while the upstream is idle (a dialect whose
    /// clients choke on SSE comments says no).
    fn keepalive(&self) -> bool;
    /// Appends the frames of one event to `out` (a `Finished` event also yields whatever ends
    /// the stream: a usage frame, `[DONE]`…).
    fn push(&mut self, ev: &StreamEvent, out: &mut Vec<Bytes>);
    /// The last frame of a stream the upstream broke after it started.
    fn error(&mut self, err: &ApiError) -> Bytes;
    /// The comment frame sent to keep an idle stream open.
    fn ping(&self) -> Bytes {
        Bytes::from_static(b": ping\n\n")
    }
}
