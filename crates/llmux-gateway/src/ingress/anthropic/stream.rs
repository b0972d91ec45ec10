//! Core [`StreamEvent`]s → the Messages API's server-sent events: `message_start` (usage with
//! the prompt estimate), then per content block `content_block_start`, deltas
//! (`thinking_delta`, `text_delta`, `input_json_delta`) and `content_block_stop`, a `ping`
//! after the first block starts (and as keep-alive while the upstream is idle),
//! `message_delta` with the `stop_reason` and the final usage, and `message_stop`. An error
//! after the stream started is a last `event: error` frame.
//!
//! Blocks follow the order the upstream produces: a text, thinking or tool-call piece of
//! another kind than the open block closes it and opens the next. A fragment of a tool call
//! whose block was already closed (an upstream interleaving two calls) cannot be expressed
//! and ends the stream with an error event instead of splitting the call's input. Without
//! usage from the upstream, the final usage is the gateway's estimate, as it bills it.

use bytes::Bytes;
use llmux_core::{StreamEvent, Usage};
use serde::Serialize;
use utoipa::ToSchema;

use super::response::{
    message_id, stop_reason, tool_use_id, AnthropicUsage, ContentBlock, MessageObject,
};
use super::AnthropicError;
use crate::error::ApiError;
use crate::ingress::StreamEncoder;
use crate::usage::OutputTally;

/// One event of a Messages stream (the `data` of an SSE frame whose `event` is its `type`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MessageStreamEvent<'a> {
    /// First: the message, without content.
    MessageStart {
        /// The message so far.
        message: MessageObject,
    },
    /// A content block begins (empty).
    ContentBlockStart {
        /// Its position in `content`.
        index: usize,
        /// The block, empty.
        content_block: ContentBlock,
    },
    /// Keep-alive.
    Ping,
    /// A piece of the open block.
    ContentBlockDelta {
        /// The block's position.
        index: usize,
        /// What is new.
        delta: BlockDelta<'a>,
    },
    /// The block is complete.
    ContentBlockStop {
        /// The block's position.
        index: usize,
    },
    /// The stop reason and the final usage.
    MessageDelta {
        /// The stop reason.
        delta: MessageDelta<'a>,
        /// The final usage (cumulative).
        usage: AnthropicUsage,
    },
    /// Last.
    MessageStop,
}

/// A piece of a content block.
#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BlockDelta<'a> {
    /// Answer text.
    TextDelta {
        /// The new text.
        text: &'a str,
    },
    /// A fragment of a tool call's input JSON.
    InputJsonDelta {
        /// The fragment.
        partial_json: &'a str,
    },
    /// Reasoning text.
    ThinkingDelta {
        /// The new reasoning.
        thinking: &'a str,
    },
    /// The signature of the thinking block (the upstream's).
    SignatureDelta {
        /// The signature.
        signature: &'a str,
    },
}

/// `message_delta.delta`.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageDelta<'a> {
    /// Why the model stopped.
    pub stop_reason: &'a str,
    /// Always `null`.
    pub stop_sequence: Option<&'a str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Text,
    Thinking,
    Tool(u32),
}

/// Turns one response's events into Messages API frames.
#[derive(Debug)]
pub struct EventEncoder {
    request_id: String,
    model: String,
    show_thinking: bool,
    prompt_estimate: u64,
    started: bool,
    pinged: bool,
    /// The open block: its index and kind.
    open: Option<(usize, Open)>,
    next: usize,
    /// Core indices of the tool calls that had a block.
    tools: Vec<u32>,
    usage: Option<Usage>,
    tally: OutputTally,
    done: bool,
}

fn frame(event: &MessageStreamEvent<'_>) -> Bytes {
    let name = match event {
        MessageStreamEvent::MessageStart { .. } => "message_start",
        MessageStreamEvent::ContentBlockStart { .. } => "content_block_start",
        MessageStreamEvent::Ping => "ping",
        MessageStreamEvent::ContentBlockDelta { .. } => "content_block_delta",
        MessageStreamEvent::ContentBlockStop { .. } => "content_block_stop",
        MessageStreamEvent::MessageDelta { .. } => "message_delta",
        MessageStreamEvent::MessageStop => "message_stop",
    };
    named_frame(name, event)
}

fn named_frame<T: Serialize>(name: &str, data: &T) -> Bytes {
    let mut buf = Vec::with_capacity(128);
    buf.extend_from_slice(b"event: ");
    buf.extend_from_slice(name.as_bytes());
    buf.extend_from_slice(b"\ndata: ");
    if serde_json::to_writer(&mut buf, data).is_err() {
        buf.extend_from_slice(b"{}");
    }
    buf.extend_from_slice(b"\n\n");
    Bytes::from(buf)
}

impl EventEncoder {
    /// An encoder for request `request_id` answering as `model`; `prompt_estimate` is the
    /// input usage until the upstream reports its own.
    pub fn new(request_id: &str, model: &str, show_thinking: bool, prompt_estimate: u64) -> Self {
        EventEncoder {
            request_id: request_id.to_owned(),
            model: model.to_owned(),
            show_thinking,
            prompt_estimate,
            started: false,
            pinged: false,
            open: None,
            next: 0,
            tools: Vec::new(),
            usage: None,
            tally: OutputTally::default(),
            done: false,
        }
    }

    fn start(&mut self, out: &mut Vec<Bytes>) {
        if self.started {
            return;
        }
        self.started = true;
        out.push(frame(&MessageStreamEvent::MessageStart {
            message: MessageObject {
                id: message_id(&self.request_id),
                kind: "message",
                role: "assistant",
                model: self.model.clone(),
                content: Vec::new(),
                stop_reason: None,
                stop_sequence: None,
                usage: AnthropicUsage::estimated(self.prompt_estimate),
            },
        }));
    }

    fn close(&mut self, out: &mut Vec<Bytes>) {
        if let Some((index, _)) = self.open.take() {
            out.push(frame(&MessageStreamEvent::ContentBlockStop { index }));
        }
    }

    /// Makes `kind` the open block (opening it with `block` when it is not), returns its index.
    fn ensure(
        &mut self,
        kind: Open,
        block: impl FnOnce() -> ContentBlock,
        out: &mut Vec<Bytes>,
    ) -> usize {
        if let Some((index, open)) = self.open {
            if open == kind {
                return index;
            }
        }
        self.start(out);
        self.close(out);
        let index = self.next;
        self.next += 1;
        self.open = Some((index, kind));
        out.push(frame(&MessageStreamEvent::ContentBlockStart {
            index,
            content_block: block(),
        }));
        if !self.pinged {
            self.pinged = true;
            out.push(frame(&MessageStreamEvent::Ping));
        }
        index
    }

    fn delta(index: usize, delta: BlockDelta<'_>, out: &mut Vec<Bytes>) {
        out.push(frame(&MessageStreamEvent::ContentBlockDelta {
            index,
            delta,
        }));
    }
}

impl StreamEncoder for EventEncoder {
    fn content_type(&self) -> &'static str {
        "text/event-stream; charset=utf-8"
    }

    fn keepalive(&self) -> bool {
        true
    }

    /// Appends the frames of one event to `out`.
    fn push(&mut self, ev: &StreamEvent, out: &mut Vec<Bytes>) {
        if self.done {
            return;
        }
        match ev {
            StreamEvent::Started { .. } => self.start(out),
            StreamEvent::TextDelta { text } => {
                if text.is_empty() {
                    return;
                }
                self.tally.push(text);
                let i = self.ensure(
                    Open::Text,
                    || ContentBlock::Text {
                        text: String::new(),
                    },
                    out,
                );
                Self::delta(i, BlockDelta::TextDelta { text }, out);
            }
            StreamEvent::ReasoningDelta { text } => {
                if text.is_empty() {
                    return;
                }
                self.tally.push_reasoning(text);
                let i = self.ensure(
                    Open::Thinking,
                    || ContentBlock::Thinking {
                        thinking: String::new(),
                        signature: String::new(),
                    },
                    out,
                );
                if self.show_thinking {
                    Self::delta(i, BlockDelta::ThinkingDelta { thinking: text }, out);
                }
            }
            StreamEvent::ReasoningSignature { signature } => {
                if signature.is_empty() {
                    return;
                }
                let i = self.ensure(
                    Open::Thinking,
                    || ContentBlock::Thinking {
                        thinking: String::new(),
                        signature: String::new(),
                    },
                    out,
                );
                Self::delta(i, BlockDelta::SignatureDelta { signature }, out);
            }
            StreamEvent::ToolCallDelta {
                index,
                id,
                name,
                arguments,
            } => {
                self.tally.push(arguments);
                let open = self.open.filter(|(_, k)| *k == Open::Tool(*index));
                let i = match open {
                    Some((i, _)) => i,
                    None if self.tools.contains(index) => {
                        let err = ApiError::new(
                            llmux_core::ErrorKind::UpstreamProtocol,
                            "the upstream interleaved the fragments of two tool calls, which \
                             Messages content blocks cannot carry",
                        );
                        out.push(self.error(&err));
                        return;
                    }
                    None => {
                        self.tools.push(*index);
                        let block = ContentBlock::ToolUse {
                            id: id
                                .clone()
                                .filter(|s| !s.is_empty())
                                .unwrap_or_else(|| tool_use_id(&self.request_id, *index as usize)),
                            name: name.clone().unwrap_or_default(),
                            input: serde_json::Value::Object(Default::default()),
                        };
                        self.ensure(Open::Tool(*index), || block, out)
                    }
                };
                if !arguments.is_empty() {
                    Self::delta(
                        i,
                        BlockDelta::InputJsonDelta {
                            partial_json: arguments,
                        },
                        out,
                    );
                }
            }
            StreamEvent::Usage(u) => self.usage = Some(*u),
            StreamEvent::Finished { reason } => {
                self.start(out);
                self.close(out);
                let usage = match &self.usage {
                    Some(u) => AnthropicUsage::from(u),
                    None => AnthropicUsage {
                        output_tokens: self.tally.tokens(),
                        ..AnthropicUsage::estimated(self.prompt_estimate)
                    },
                };
                out.push(frame(&MessageStreamEvent::MessageDelta {
                    delta: MessageDelta {
                        stop_reason: stop_reason(reason),
                        stop_sequence: None,
                    },
                    usage,
                }));
                out.push(frame(&MessageStreamEvent::MessageStop));
                self.done = true;
            }
        }
    }

    /// The `event: error` frame for a failure after the stream started; nothing follows it.
    fn error(&mut self, err: &ApiError) -> Bytes {
        self.done = true;
        named_frame("error", &AnthropicError::new(err, &self.request_id))
    }

    /// Anthropic's own keep-alive event (the SDKs skip it).
    fn ping(&self) -> Bytes {
        frame(&MessageStreamEvent::Ping)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use llmux_core::FinishReason;

    fn run(enc: &mut EventEncoder, evs: &[StreamEvent]) -> String {
        let mut out = Vec::new();
        for e in evs {
            enc.push(e, &mut out);
        }
        out.iter()
            .map(|b| std::str::from_utf8(b).unwrap())
            .collect()
    }

    fn started() -> StreamEvent {
        StreamEvent::Started {
            id: "up".into(),
            model: "up".into(),
            request_id: None,
        }
    }

    fn text(t: &str) -> StreamEvent {
        StreamEvent::TextDelta { text: t.into() }
    }

    /// A fragment of tool call 0; the first names the call.
    fn tool(first: Option<(&str, &str)>, arguments: &str) -> StreamEvent {
        StreamEvent::ToolCallDelta {
            index: 0,
            id: first.map(|f| f.0.to_owned()),
            name: first.map(|f| f.1.to_owned()),
            arguments: arguments.to_owned(),
        }
    }

    /// The exact bytes of a stream with thinking, text and a tool call.
    #[test]
    fn the_event_sequence_is_anthropics_byte_for_byte() {
        let mut enc = EventEncoder::new("01-ab", "claude-x", true, 12);
        let mut u = Usage::new(20, 9);
        u.cached_tokens = Some(5);
        let got = run(
            &mut enc,
            &[
                started(),
                StreamEvent::ReasoningDelta { text: "hm".into() },
                text("Hi"),
                text(""),
                text(" there"),
                tool(Some(("call_1", "get")), ""),
                tool(None, "{\"q\":"),
                tool(None, "1}"),
                StreamEvent::Usage(u),
                StreamEvent::Finished {
                    reason: FinishReason::ToolCalls,
                },
            ],
        );
        let want = concat!(
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01ab\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-x\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":12,\"output_tokens\":0,\"cache_creation_input_tokens\":null,\"cache_read_input_tokens\":null}}}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\",\"signature\":\"\"}}\n\n",
            "event: ping\ndata: {\"type\":\"ping\"}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"hm\"}}\n\n",
            "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\" there\"}}\n\n",
            "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":2,\"content_block\":{\"type\":\"tool_use\",\"id\":\"call_1\",\"name\":\"get\",\"input\":{}}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"q\\\":\"}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"1}\"}}\n\n",
            "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":2}\n\n",
            "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"input_tokens\":15,\"output_tokens\":9,\"cache_creation_input_tokens\":null,\"cache_read_input_tokens\":5}}\n\n",
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        );
        assert_eq!(got, want);
    }

    #[test]
    fn without_upstream_usage_the_estimate_is_reported() {
        let mut enc = EventEncoder::new("r", "m", true, 7);
        let got = run(
            &mut enc,
            &[
                started(),
                text("abcdefgh"),
                StreamEvent::Finished {
                    reason: FinishReason::Stop,
                },
            ],
        );
        assert!(got.contains(
            "\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"input_tokens\":7,\"output_tokens\":2,"
        ), "{got}");
    }

    #[test]
    fn omitted_thinking_keeps_an_empty_block() {
        let mut enc = EventEncoder::new("r", "m", false, 0);
        let got = run(
            &mut enc,
            &[
                started(),
                StreamEvent::ReasoningDelta {
                    text: "secret".into(),
                },
                text("ok"),
            ],
        );
        assert!(!got.contains("secret"));
        assert!(got.contains("\"content_block\":{\"type\":\"thinking\""));
        assert!(got.contains("\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"ok\"}"));
    }

    #[test]
    fn errors_and_interleaved_tool_calls_end_the_stream_with_an_error_event() {
        let mut enc = EventEncoder::new("rid", "m", true, 0);
        let call = |index, args: &str| StreamEvent::ToolCallDelta {
            index,
            id: Some(format!("c{index}")),
            name: Some("f".into()),
            arguments: args.into(),
        };
        let got = run(
            &mut enc,
            &[
                started(),
                call(0, "{"),
                call(1, "{}"),
                call(0, "}"),
                text("never"),
                StreamEvent::Finished {
                    reason: FinishReason::ToolCalls,
                },
            ],
        );
        let tail = got.rsplit("\n\n").nth(1).unwrap();
        assert!(
            tail.starts_with(
                "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\""
            ),
            "{got}"
        );
        assert!(!got.contains("never") && !got.contains("message_stop"));

        let mut enc = EventEncoder::new("rid", "m", true, 0);
        run(&mut enc, &[started(), text("x")]);
        let f = enc.error(&ApiError::new(
            llmux_core::ErrorKind::RateLimited,
            "slow down",
        ));
        assert_eq!(
            std::str::from_utf8(&f).unwrap(),
            "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\",\"message\":\"slow down\"},\"request_id\":\"rid\"}\n\n"
        );
        assert_eq!(
            &enc.ping()[..],
            b"event: ping\ndata: {\"type\":\"ping\"}\n\n"
        );
    }
}
