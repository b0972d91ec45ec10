//! The one stream event type every provider produces, and the fold from events to a response.
//!
//! Invariants (tested per provider): exactly one `Finished`, and it is last; `Started` comes
//! first; usage is reported at most once, with final (not running) numbers; tool-call argument
//! fragments with the same `index` concatenate to the full JSON.

use std::pin::Pin;

use futures::Stream;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::types::{ChatResponse, Choice, Content, FinishReason, Message, Role, ToolCall, Usage};

/// One event of a streamed answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamEvent {
    /// The upstream accepted the request and started answering.
    Started {
        /// Response id.
        id: String,
        /// Model that answers.
        model: String,
        /// Upstream request id, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<String>,
    },
    /// A piece of answer text.
    TextDelta {
        /// The new text.
        text: String,
    },
    /// A piece of reasoning text.
    ReasoningDelta {
        /// The new text.
        text: String,
    },
    /// A piece of the signature of the reasoning so far (Anthropic's `signature_delta`): kept
    /// on the message so the reasoning can be sent back intact in a later turn.
    ReasoningSignature {
        /// The signature piece.
        signature: String,
    },
    /// A piece of a tool call; fragments with the same index belong to one call.
    ToolCallDelta {
        /// Which call (0, 1, … in the order the model made them).
        index: u32,
        /// The call id (first fragment).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// The function name (first fragment).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// An arguments fragment.
        arguments: String,
    },
    /// Final token usage.
    Usage(Usage),
    /// The answer is complete.
    Finished {
        /// Why it stopped.
        reason: FinishReason,
    },
}

/// A boxed stream of events, as every provider returns.
pub type ChatStream = Pin<Box<dyn Stream<Item = Result<StreamEvent>> + Send + 'static>>;

#[derive(Debug, Default)]
struct PartialCall {
    id: String,
    name: String,
    arguments: String,
}

/// Folds stream events into a [`ChatResponse`], checking the stream invariants on the way.
#[derive(Debug, Default)]
pub struct StreamAccumulator {
    id: String,
    model: String,
    request_id: Option<String>,
    text: String,
    reasoning: String,
    signature: String,
    calls: Vec<PartialCall>,
    usage: Option<Usage>,
    finish: Option<FinishReason>,
}

impl StreamAccumulator {
    /// An empty accumulator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one event. Fails on events after `Finished` or a second usage report.
    pub fn push(&mut self, event: &StreamEvent) -> Result<()> {
        if self.finish.is_some() {
            return Err(Error::protocol("stream event after the stream finished"));
        }
        match event {
            StreamEvent::Started {
                id,
                model,
                request_id,
            } => {
                self.id.clone_from(id);
                self.model.clone_from(model);
                self.request_id.clone_from(request_id);
            }
            StreamEvent::TextDelta { text } => self.text.push_str(text),
            StreamEvent::ReasoningDelta { text } => self.reasoning.push_str(text),
            StreamEvent::ReasoningSignature { signature } => self.signature.push_str(signature),
            StreamEvent::ToolCallDelta {
                index,
                id,
                name,
                arguments,
            } => {
                let i = *index as usize;
                if i > 1024 {
                    return Err(Error::protocol("tool call index out of range"));
                }
                if self.calls.len() <= i {
                    self.calls.resize_with(i + 1, PartialCall::default);
                }
                let call = &mut self.calls[i];
                if let Some(id) = id.as_deref().filter(|s| !s.is_empty()) {
                    call.id = id.to_owned();
                }
                if let Some(name) = name.as_deref().filter(|s| !s.is_empty()) {
                    call.name = name.to_owned();
                }
                call.arguments.push_str(arguments);
            }
            StreamEvent::Usage(u) => {
                if self.usage.is_some() {
                    return Err(Error::protocol("usage reported twice in one stream"));
                }
                self.usage = Some(*u);
            }
            StreamEvent::Finished { reason } => self.finish = Some(reason.clone()),
        }
        Ok(())
    }

    /// True once `Finished` was seen.
    pub fn is_finished(&self) -> bool {
        self.finish.is_some()
    }

    /// The text so far.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Usage, when reported.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// The response. Fails if the stream never finished.
    pub fn finish(self) -> Result<ChatResponse> {
        let Some(finish) = self.finish else {
            return Err(Error::protocol(
                "stream ended before the answer was complete",
            ));
        };
        let tool_calls = self
            .calls
            .into_iter()
            .map(|c| ToolCall {
                id: c.id,
                name: c.name,
                arguments: c.arguments,
            })
            .collect();
        let message = Message {
            role: Role::Assistant,
            content: Content::Text(self.text),
            name: None,
            tool_calls,
            tool_call_id: None,
            reasoning: (!self.reasoning.is_empty()).then_some(self.reasoning),
            reasoning_signature: (!self.signature.is_empty()).then_some(self.signature),
        };
        Ok(ChatResponse {
            id: self.id,
            model: self.model,
            created: None,
            choices: vec![Choice {
                index: 0,
                message,
                finish_reason: Some(finish),
            }],
            usage: self.usage,
            request_id: self.request_id,
        })
    }
}

/// Turns a complete response into the events a stream of it would have produced
/// (used when a vendor answers a stream request with a plain JSON body).
pub fn response_to_events(resp: &ChatResponse) -> Vec<StreamEvent> {
    let mut out = vec![StreamEvent::Started {
        id: resp.id.clone(),
        model: resp.model.clone(),
        request_id: resp.request_id.clone(),
    }];
    let mut reason = FinishReason::Stop;
    if let Some(choice) = resp.choices.first() {
        if let Some(r) = &choice.message.reasoning {
            out.push(StreamEvent::ReasoningDelta { text: r.clone() });
        }
        if let Some(s) = &choice.message.reasoning_signature {
            out.push(StreamEvent::ReasoningSignature {
                signature: s.clone(),
            });
        }
        let text = choice.message.content.text();
        if !text.is_empty() {
            out.push(StreamEvent::TextDelta {
                text: text.into_owned(),
            });
        }
        for (i, c) in choice.message.tool_calls.iter().enumerate() {
            out.push(StreamEvent::ToolCallDelta {
                index: i as u32,
                id: Some(c.id.clone()),
                name: Some(c.name.clone()),
                arguments: c.arguments.clone(),
            });
        }
        if let Some(r) = &choice.finish_reason {
            reason = r.clone();
        }
    }
    if let Some(u) = resp.usage {
        out.push(StreamEvent::Usage(u));
    }
    out.push(StreamEvent::Finished { reason });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_call_fragments_reassemble_by_index() {
        let mut acc = StreamAccumulator::new();
        let evs = [
            StreamEvent::ToolCallDelta {
                index: 0,
                id: Some("a".into()),
                name: Some("f".into()),
                arguments: "{\"x\":".into(),
            },
            StreamEvent::ToolCallDelta {
                index: 1,
                id: Some("b".into()),
                name: Some("g".into()),
                arguments: "{}".into(),
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                id: None,
                name: None,
                arguments: "1}".into(),
            },
            StreamEvent::Finished {
                reason: FinishReason::ToolCalls,
            },
        ];
        for e in &evs {
            acc.push(e).unwrap();
        }
        let r = acc.finish().unwrap();
        let calls = r.tool_calls();
        assert_eq!(calls[0].arguments, "{\"x\":1}");
        assert_eq!(calls[1].name, "g");
        serde_json::from_str::<serde_json::Value>(&calls[0].arguments).unwrap();
    }

    #[test]
    fn unfinished_stream_is_an_error() {
        let mut acc = StreamAccumulator::new();
        acc.push(&StreamEvent::TextDelta { text: "x".into() })
            .unwrap();
        assert_eq!(
            acc.finish().unwrap_err().kind(),
            crate::ErrorKind::UpstreamProtocol
        );
    }
}
