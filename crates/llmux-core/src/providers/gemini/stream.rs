//! Gemini's SSE stream to stream events: every `data:` chunk is a whole
//! `GenerateContentResponse` carrying the new text, thoughts and whole function calls of
//! candidate 0; the finish reason arrives on the last chunk, usage (cumulative) on any. There
//! is no end marker: a body that ends before a finish reason is a cut stream.

use http::HeaderMap;

use super::wire::{GenerateContentResponse, UsageMetadata};
use super::{blocked, call_id, error_from, finish_reason, ID};
use crate::codec::Frame;
use crate::error::{Error, Result};
use crate::providers::StreamParser;
use crate::stream::StreamEvent;
use crate::types::FinishReason;

/// Function calls one stream may make before it is treated as malformed.
const MAX_TOOL_CALLS: u32 = 1024;

/// Per-stream state.
#[derive(Debug, Default)]
pub struct GeminiStreamParser {
    started: bool,
    calls: u32,
    finish: Option<FinishReason>,
    usage: Option<UsageMetadata>,
}

impl GeminiStreamParser {
    /// A parser for one stream.
    pub fn new() -> Self {
        Self::default()
    }
}

impl StreamParser for GeminiStreamParser {
    fn on_frame(&mut self, frame: &Frame, out: &mut Vec<StreamEvent>) -> Result<()> {
        let data = frame.data.trim();
        if data.is_empty() {
            return Ok(());
        }
        let chunk: GenerateContentResponse = serde_json::from_str(data).map_err(|e| {
            Error::protocol("gemini sent a malformed stream frame")
                .with_provider(ID)
                .with_source(e)
        })?;
        if let Some(err) = chunk.error {
            return Err(error_from(0, &HeaderMap::new(), err));
        }
        if let Some(e) = blocked(&chunk) {
            return Err(e);
        }
        if !self.started {
            self.started = true;
            out.push(StreamEvent::Started {
                id: chunk.response_id.clone().unwrap_or_default(),
                model: chunk.model_version.clone().unwrap_or_default(),
                request_id: None,
            });
        }
        if let Some(u) = chunk.usage_metadata {
            self.usage = Some(u);
        }
        let rid = chunk.response_id.as_deref();
        // Only candidate 0 is streamed, as with every other provider.
        let Some(cand) = chunk
            .candidates
            .into_iter()
            .find(|c| c.index.unwrap_or(0) == 0)
        else {
            return Ok(());
        };
        for part in cand.content.map(|c| c.parts).unwrap_or_default() {
            if let Some(fc) = part.function_call {
                if self.calls >= MAX_TOOL_CALLS {
                    return Err(Error::protocol(
                        "gemini sent more function calls than a stream may carry",
                    )
                    .with_provider(ID));
                }
                let index = self.calls;
                self.calls += 1;
                out.push(StreamEvent::ToolCallDelta {
                    index,
                    id: Some(
                        fc.id
                            .filter(|s| !s.is_empty())
                            .unwrap_or_else(|| call_id(rid, 0, index as usize)),
                    ),
                    name: fc.name.filter(|s| !s.is_empty()),
                    arguments: fc.args.map_or_else(|| "{}".to_owned(), |a| a.to_string()),
                });
            } else if let Some(text) = part.text.filter(|t| !t.is_empty()) {
                if part.thought == Some(true) {
                    out.push(StreamEvent::ReasoningDelta { text });
                } else {
                    out.push(StreamEvent::TextDelta { text });
                }
            }
        }
        if let Some(r) = cand
            .finish_reason
            .as_deref()
            .and_then(|r| finish_reason(r, self.calls > 0))
        {
            self.finish = Some(r);
        }
        Ok(())
    }

    fn is_done(&self) -> bool {
        false
    }

    fn finish(&mut self, out: &mut Vec<StreamEvent>) -> Result<()> {
        let Some(reason) = self.finish.take() else {
            return Err(
                Error::protocol("gemini stream ended before the answer was complete")
                    .with_provider(ID),
            );
        };
        if !self.started {
            self.started = true;
            out.push(StreamEvent::Started {
                id: String::new(),
                model: String::new(),
                request_id: None,
            });
        }
        if let Some(u) = self.usage.take() {
            out.push(StreamEvent::Usage(u.usage()));
        }
        out.push(StreamEvent::Finished { reason });
        Ok(())
    }
}
