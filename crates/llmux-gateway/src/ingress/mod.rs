//! Ingress dialects: the protocols clients speak to the gateway. Each dialect is one module
//! that decodes its requests into core types and encodes core answers (whole, streamed, or an
//! error) back into its own format. Decoders and encoders are pure: no IO, no state, no
//! authentication, no routing; the [`crate::pipeline`] does the rest, the same way for every
//! dialect. A dialect implements [`Dialect`] once per operation it serves
//! ([`crate::pipeline::Chat`], [`crate::pipeline::Embed`]) and declares its HTTP endpoints
//! (with their OpenAPI description) in its `mod.rs`; the router gets one row per endpoint.
//!
//! Each dialect also brings its error envelope ([`ErrorEnvelope`]): the pipeline renders a
//! request's errors with [`Dialect::ENVELOPE`], and errors raised before any route is known
//! (a refused request head, an unknown path, a wrong method, a slow body) with the envelope
//! [`envelope_for`] finds for the path in [`ENVELOPES`], one row per dialect's path prefix.

pub mod anthropic;
pub mod completions;
pub mod dashscope;
pub mod gemini;
pub mod openai;
pub mod responses;

use axum::http::request::Parts;
use axum::http::HeaderMap;
use bytes::Bytes;
use llmux_core::{StreamEvent, ToolCall};
use serde::Serialize;
use serde_json::Value;

use crate::error::ApiError;
pub use crate::error::ErrorEnvelope;
use crate::pipeline::Operation;

/// Which error envelope answers for which paths, for errors raised before routing: the
/// longest matching prefix wins, [`DEFAULT_ENVELOPE`] when none matches. A dialect adds its
/// row here (and its endpoints in [`crate::app::router`]).
pub static ENVELOPES: &[(&str, &dyn ErrorEnvelope)] = &[
    ("/v1/", &openai::OpenAiEnvelope),
    ("/v1/messages", &anthropic::AnthropicEnvelope),
    ("/v1beta/", &gemini::GeminiEnvelope),
    ("/api/", &dashscope::DashScopeEnvelope),
    // The admin API and the dashboard answer in the OpenAI envelope.
    ("/admin", &openai::OpenAiEnvelope),
];

/// The envelope of paths no row of [`ENVELOPES`] claims (health, metrics, unknown paths).
pub static DEFAULT_ENVELOPE: &dyn ErrorEnvelope = &openai::OpenAiEnvelope;

/// The error envelope of a request path (see [`ENVELOPES`]).
pub fn envelope_for(path: &[u8]) -> &'static dyn ErrorEnvelope {
    longest_prefix(ENVELOPES, path)
}

fn longest_prefix(
    table: &[(&str, &'static dyn ErrorEnvelope)],
    path: &[u8],
) -> &'static dyn ErrorEnvelope {
    table
        .iter()
        .filter(|(prefix, _)| path.starts_with(prefix.as_bytes()))
        .max_by_key(|(prefix, _)| prefix.len())
        .map_or(DEFAULT_ENVELOPE, |(_, e)| *e)
}

/// A part of a request body as `T`, errors naming the field from `at` (the part's own path, such
/// as `input[3]`) on: for bodies whose parts are told apart by a field (`type`) and decoded one
/// by one.
pub(crate) fn from_value_at<T: serde::de::DeserializeOwned>(
    v: Value,
    at: &str,
) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let inner = e.path().to_string();
        let path = if inner == "." {
            at.to_owned()
        } else if inner.starts_with('[') {
            format!("{at}{inner}")
        } else {
            format!("{at}.{inner}")
        };
        ApiError::invalid(format!(
            "invalid request body at `{path}`: {}",
            e.into_inner()
        ))
        .param(path)
    })
}

/// The `type` of a body part at `at` (`None` when absent or null).
pub(crate) fn type_at(v: &Value, at: &str) -> Result<Option<String>, ApiError> {
    match v.get("type") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => {
            Err(ApiError::invalid(format!("`{at}.type` must be a string"))
                .param(format!("{at}.type")))
        }
    }
}

/// Most tool calls one streamed answer may hold (the core's own accumulator refuses more).
const MAX_STREAMED_CALLS: usize = 1024;

/// The tool calls of a streamed answer, assembled from their fragments (core indexes; the
/// first fragment of a call names it): for encoders that send calls whole or re-send them.
#[derive(Debug, Default)]
pub(crate) struct StreamedCalls(Vec<ToolCall>);

impl StreamedCalls {
    /// Adds a fragment; the call's position, or `None` for an index past the bound (ignored).
    pub(crate) fn push(
        &mut self,
        index: u32,
        id: Option<&str>,
        name: Option<&str>,
        arguments: &str,
    ) -> Option<usize> {
        let i = usize::try_from(index)
            .ok()
            .filter(|i| *i <= MAX_STREAMED_CALLS)?;
        if self.0.len() <= i {
            self.0.resize_with(i + 1, || ToolCall {
                id: String::new(),
                name: String::new(),
                arguments: String::new(),
            });
        }
        let call = &mut self.0[i];
        if let Some(id) = id.filter(|s| !s.is_empty()) {
            id.clone_into(&mut call.id);
        }
        if let Some(name) = name.filter(|s| !s.is_empty()) {
            name.clone_into(&mut call.name);
        }
        call.arguments.push_str(arguments);
        Some(i)
    }

    /// The calls, in index order.
    pub(crate) fn into_vec(self) -> Vec<ToolCall> {
        self.0
    }
}

impl std::ops::Deref for StreamedCalls {
    type Target = [ToolCall];

    fn deref(&self) -> &[ToolCall] {
        &self.0
    }
}

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

impl<R, O> Decoded<R, O> {
    /// A decoded request.
    pub fn new(request: R, options: O, stream: bool) -> Self {
        Decoded {
            request,
            options,
            stream,
        }
    }
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
    /// The dialect's error envelope.
    const ENVELOPE: &'static dyn ErrorEnvelope;
    /// How the client wants the answer shaped.
    type Options: Send + Sync + 'static;
    /// The JSON body of a whole answer.
    type Body: Serialize;

    /// The request's head (method, URI, headers) and body → the core request. Bounded by the
    /// body size limit the pipeline applies before; every field is validated here, with errors
    /// naming it.
    fn decode(head: &Parts, body: &[u8]) -> Result<Decoded<Op::Request, Self::Options>, ApiError>;

    /// A whole answer → the response body, or the error the client gets instead when the
    /// answer cannot be expressed in the dialect (the upstream's usage is still recorded).
    fn encode(
        answer: &Op::Answer,
        egress: &Egress<'_, Self::Options>,
    ) -> Result<Self::Body, ApiError>;

    /// Writes `body` as JSON to `out`. A dialect whose body is on the hot path may write it
    /// faster than serde's derive does, as long as the bytes are the same.
    fn write_body(body: &Self::Body, out: &mut Vec<u8>) -> serde_json::Result<()> {
        serde_json::to_writer(out, body)
    }

    /// Headers the dialect adds to a successful answer, whole or streamed (errors get theirs
    /// from [`Dialect::ENVELOPE`]).
    fn response_headers(egress: &Egress<'_, Self::Options>, headers: &mut HeaderMap) {
        let _ = (egress, headers);
    }

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

/// Helpers for the dialects' unit tests.
#[cfg(test)]
pub(crate) mod testing {
    #![allow(clippy::panic)]
    use llmux_core::{ChatResponse, Choice, ErrorKind, FinishReason, Message, StreamEvent, Usage};

    use crate::error::ApiError;

    /// A one-choice answer.
    pub(crate) fn answer(message: Message, finish: FinishReason, usage: Usage) -> ChatResponse {
        ChatResponse {
            id: "up".into(),
            model: "upstream-model".into(),
            created: None,
            choices: vec![Choice {
                index: 0,
                message,
                finish_reason: Some(finish),
            }],
            usage: Some(usage),
            request_id: None,
        }
    }

    /// The `Started` event of a stream.
    pub(crate) fn started() -> StreamEvent {
        StreamEvent::Started {
            id: "x".into(),
            model: "up".into(),
            request_id: None,
        }
    }

    /// A decode that failed with `kind`, naming `param`, its message holding `needle`.
    pub(crate) fn assert_refused<T: std::fmt::Debug>(
        r: Result<T, ApiError>,
        kind: ErrorKind,
        param: &str,
        needle: &str,
    ) {
        let e = match r {
            Ok(v) => panic!("decoded, expected a refusal naming `{param}`: {v:?}"),
            Err(e) => e,
        };
        assert_eq!(e.kind, kind, "{}", e.message);
        assert_eq!(e.param.as_deref(), Some(param), "{}", e.message);
        assert!(e.message.contains(needle), "{}", e.message);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn paths_pick_their_envelope() {
        assert_eq!(envelope_for(b"/api/v1/x").name(), "dashscope");
        assert_eq!(envelope_for(b"/api/").name(), "dashscope");
        assert_eq!(envelope_for(b"/admin/keys/1").name(), "openai");
        assert_eq!(envelope_for(b"/v1/chat/completions").name(), "openai");
        assert_eq!(envelope_for(b"/v1/completions").name(), "openai");
        assert_eq!(envelope_for(b"/v1/messages").name(), "anthropic");
        assert_eq!(
            envelope_for(b"/v1/messages/count_tokens").name(),
            "anthropic"
        );
        assert_eq!(envelope_for(b"/healthz").name(), "openai");
        assert_eq!(envelope_for(b"").name(), "openai");
    }

    #[test]
    fn the_longest_prefix_wins_whatever_the_order() {
        let table: &[(&str, &'static dyn ErrorEnvelope)] = &[
            ("/v1/", &openai::OpenAiEnvelope),
            ("/v1/special", &dashscope::DashScopeEnvelope),
            ("/v", &openai::OpenAiEnvelope),
        ];
        assert_eq!(longest_prefix(table, b"/v1/special/x").name(), "dashscope");
        assert_eq!(longest_prefix(table, b"/v1/other").name(), "openai");
        assert_eq!(longest_prefix(table, b"/x").name(), "openai");
    }
}
