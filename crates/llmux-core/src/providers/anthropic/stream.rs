//! Anthropic's SSE stream to stream events: `message_start` gives the id, model and input
//! usage; content blocks stream text, reasoning and tool-call input JSON by block index;
//! `message_delta` carries the stop reason and the cumulative usage; `message_stop` ends it.

use http::HeaderMap;

use super::wire::{self, BlockDelta, ResponseBlock, StreamFrame, WireUsage};
use super::{error_from, finish_reason, MessagesSpec};
use crate::codec::Frame;
use crate::error::{Error, Result};
use crate::providers::StreamParser;
use crate::stream::StreamEvent;
use crate::types::FinishReason;

/// Tool calls one stream may make before it is treated as malformed.
const MAX_TOOL_CALLS: usize = 1024;

/// A `tool_use` block of the stream.
#[derive(Debug)]
struct ToolBlock {
    /// Its content-block index.
    block: u32,
    /// Whether any input fragment was sent.
    args_sent: bool,
    /// The input given in `content_block_start` (sent at the block's end when no fragment came).
    start_input: Option<String>,
}

/// Per-stream state.
#[derive(Debug)]
pub struct AnthropicStreamParser {
    spec: MessagesSpec,
    started: bool,
    done: bool,
    tools: Vec<ToolBlock>,
    stop_reason: Option<String>,
    usage: Option<WireUsage>,
}

impl AnthropicStreamParser {
    /// A parser for one stream of `spec`'s endpoint.
    pub fn new(spec: MessagesSpec) -> Self {
        AnthropicStreamParser {
            spec,
            started: false,
            done: false,
            tools: Vec::new(),
            stop_reason: None,
            usage: None,
        }
    }

    fn start(&mut self, id: Option<String>, model: Option<String>, out: &mut Vec<StreamEvent>) {
        if !self.started {
            self.started = true;
            out.push(StreamEvent::Started {
                id: id.unwrap_or_default(),
                model: model.unwrap_or_default(),
                request_id: None,
            });
        }
    }

    fn protocol(&self, what: &str) -> Error {
        Error::protocol(format!("{} sent {what}", self.spec.id)).with_provider(self.spec.id)
    }

    fn tool(&mut self, block: u32) -> Option<(u32, &mut ToolBlock)> {
        self.tools
            .iter_mut()
            .enumerate()
            .find(|(_, t)| t.block == block)
            .map(|(i, t)| (i as u32, t))
    }
}

impl StreamParser for AnthropicStreamParser {
    fn on_frame(&mut self, frame: &Frame, out: &mut Vec<StreamEvent>) -> Result<()> {
        let data = frame.data.trim();
        if data.is_empty() {
            return Ok(());
        }
        if frame.event.as_deref() == Some("error") {
            let env: wire::ErrorEnvelope = serde_json::from_str(data).unwrap_or_default();
            return Err(error_from(&self.spec, 0, &HeaderMap::new(), env));
        }
        let ev: StreamFrame = serde_json::from_str(data)
            .map_err(|e| self.protocol("a malformed stream frame").with_source(e))?;
        match ev {
            StreamFrame::MessageStart { message } => {
                self.start(message.id, message.model, out);
                self.usage = message.usage;
            }
            StreamFrame::ContentBlockStart {
                index,
                content_block,
            } => {
                self.start(None, None, out);
                match content_block {
                    ResponseBlock::Text { text } if !text.is_empty() => {
                        out.push(StreamEvent::TextDelta { text });
                    }
                    ResponseBlock::Thinking {
                        thinking,
                        signature,
                    } if !thinking.is_empty() || !signature.is_empty() => {
                        if !thinking.is_empty() {
                            out.push(StreamEvent::ReasoningDelta { text: thinking });
                        }
                        if !signature.is_empty() {
                            out.push(StreamEvent::ReasoningSignature { signature });
                        }
                    }
                    ResponseBlock::ToolUse { id, name, input } => {
                        if self.tools.len() >= MAX_TOOL_CALLS {
                            return Err(self.protocol("more tool calls than a stream may carry"));
                        }
                        if self.tool(index).is_some() {
                            return Err(self.protocol("two content blocks with one index"));
                        }
                        let start_input = input
                            .filter(|v| v.as_object().is_some_and(|o| !o.is_empty()))
                            .map(|v| v.to_string());
                        out.push(StreamEvent::ToolCallDelta {
                            index: self.tools.len() as u32,
                            id: Some(id).filter(|s| !s.is_empty()),
                            name: Some(name).filter(|s| !s.is_empty()),
                            arguments: String::new(),
                        });
                        self.tools.push(ToolBlock {
                            block: index,
                            args_sent: false,
                            start_input,
                        });
                    }
                    ResponseBlock::Text { .. }
                    | ResponseBlock::Thinking { .. }
                    | ResponseBlock::Other => {}
                }
            }
            StreamFrame::ContentBlockDelta { index, delta } => {
                self.start(None, None, out);
                match delta {
                    BlockDelta::TextDelta { text } if !text.is_empty() => {
                        out.push(StreamEvent::TextDelta { text });
                    }
                    BlockDelta::ThinkingDelta { thinking } if !thinking.is_empty() => {
                        out.push(StreamEvent::ReasoningDelta { text: thinking });
                    }
                    BlockDelta::SignatureDelta { signature } if !signature.is_empty() => {
                        out.push(StreamEvent::ReasoningSignature { signature });
                    }
                    BlockDelta::InputJsonDelta { partial_json } => {
                        let Some((i, tool)) = self.tool(index) else {
                            return Err(
                                self.protocol("tool input for a block that is not a tool call")
                            );
                        };
                        if !partial_json.is_empty() {
                            tool.args_sent = true;
                            out.push(StreamEvent::ToolCallDelta {
                                index: i,
                                id: None,
                                name: None,
                                arguments: partial_json,
                            });
                        }
                    }
                    BlockDelta::TextDelta { .. }
                    | BlockDelta::ThinkingDelta { .. }
                    | BlockDelta::SignatureDelta { .. }
                    | BlockDelta::Other => {}
                }
            }
            StreamFrame::ContentBlockStop { index } => {
                // A tool call whose input came whole in its start (or is empty) gets it now.
                if let Some((i, tool)) = self.tool(index) {
                    if !tool.args_sent {
                        tool.args_sent = true;
                        let arguments = tool.start_input.take().unwrap_or_else(|| "{}".into());
                        out.push(StreamEvent::ToolCallDelta {
                            index: i,
                            id: None,
                            name: None,
                            arguments,
                        });
                    }
                }
            }
            StreamFrame::MessageDelta { delta, usage } => {
                if let Some(r) = delta.stop_reason.filter(|r| !r.is_empty()) {
                    self.stop_reason = Some(r);
                }
                if let Some(u) = usage {
                    self.usage.get_or_insert_with(WireUsage::default).merge(u);
                }
            }
            StreamFrame::MessageStop => self.done = true,
            StreamFrame::Error { error } => {
                let env = wire::ErrorEnvelope {
                    error: Some(error),
                    ..Default::default()
                };
                return Err(error_from(&self.spec, 0, &HeaderMap::new(), env));
            }
            StreamFrame::Ping | StreamFrame::Other => {}
        }
        Ok(())
    }

    fn is_done(&self) -> bool {
        self.done
    }

    fn finish(&mut self, out: &mut Vec<StreamEvent>) -> Result<()> {
        if !self.done {
            return Err(self.protocol("a stream that ended before the answer was complete"));
        }
        self.start(None, None, out);
        if let Some(u) = self.usage.take() {
            out.push(StreamEvent::Usage(u.usage()));
        }
        let reason = self
            .stop_reason
            .take()
            .map_or(FinishReason::Stop, |r| finish_reason(&r));
        out.push(StreamEvent::Finished { reason });
        Ok(())
    }
}
