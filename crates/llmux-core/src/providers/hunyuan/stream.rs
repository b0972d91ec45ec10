//! The Hunyuan stream parser: unwrapped `data: {…}` events, `FinishReason` `""` until the end,
//! cumulative `Usage` on every event (reported once, the last), tool-call fragments merged per
//! call `Id`/`Index`, `ErrorMsg` events as errors, and no `[DONE]`: the body ends at EOF.

use http::HeaderMap;

use super::wire::{finish_reason, WireResponse};
use super::{error_from, ID};
use crate::codec::Frame;
use crate::error::{Error, ErrorKind, Result};
use crate::providers::openai_compat::describe;
use crate::providers::StreamParser;
use crate::stream::StreamEvent;
use crate::types::{FinishReason, Usage};

/// The most tool calls one answer may carry (bounds memory on hostile input).
const MAX_CALLS: usize = 1024;

#[derive(Debug, Default)]
struct CallSlot {
    id: Option<String>,
    wire_index: Option<u32>,
    id_sent: bool,
    name_sent: bool,
}

/// Turns Hunyuan SSE events into [`StreamEvent`]s.
#[derive(Debug, Default)]
pub struct HunyuanStreamParser {
    started: bool,
    done: bool,
    calls: Vec<CallSlot>,
    finish: Option<FinishReason>,
    usage: Option<Usage>,
}

impl HunyuanStreamParser {
    /// A parser for one stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// The slot (our index) a fragment belongs to: same `Id`, else same `Index`, else the
    /// call in progress when the fragment names neither; a new slot otherwise.
    fn slot_for(&mut self, id: Option<&str>, wire_index: Option<u32>) -> Result<usize> {
        if let Some(id) = id {
            if let Some(i) = self.calls.iter().position(|c| c.id.as_deref() == Some(id)) {
                return Ok(i);
            }
            if let Some(i) = wire_index.and_then(|w| {
                self.calls
                    .iter()
                    .position(|c| c.wire_index == Some(w) && c.id.is_none())
            }) {
                self.calls[i].id = Some(id.to_owned());
                return Ok(i);
            }
        } else if let Some(w) = wire_index {
            if let Some(i) = self.calls.iter().position(|c| c.wire_index == Some(w)) {
                return Ok(i);
            }
        } else if !self.calls.is_empty() {
            return Ok(self.calls.len() - 1);
        }
        if self.calls.len() >= MAX_CALLS {
            return Err(Error::protocol("hunyuan sent too many tool calls").with_provider(ID));
        }
        self.calls.push(CallSlot {
            id: id.map(str::to_owned),
            wire_index,
            id_sent: false,
            name_sent: false,
        });
        Ok(self.calls.len() - 1)
    }
}

/// Classifies a mid-stream `ErrorMsg` (4000 internal error, 4001 model timeout).
pub(super) fn stream_error(code: &str, msg: &str) -> Error {
    let kind = match code {
        "4001" => ErrorKind::Timeout,
        _ => ErrorKind::UpstreamServer,
    };
    Error::new(kind, describe(kind, msg))
        .with_provider(ID)
        .with_code(code)
}

impl StreamParser for HunyuanStreamParser {
    fn on_frame(&mut self, frame: &Frame, out: &mut Vec<StreamEvent>) -> Result<()> {
        let data = frame.data.trim();
        if data.is_empty() {
            return Ok(());
        }
        if data == "[DONE]" {
            // Not part of Hunyuan's protocol; tolerated from proxies that add it.
            self.done = true;
            return Ok(());
        }
        let mut ev: WireResponse = serde_json::from_str(data).map_err(|e| {
            Error::protocol("hunyuan sent a malformed stream event")
                .with_provider(ID)
                .with_source(e)
        })?;
        if let Some(inner) = ev.response.take() {
            ev = *inner;
        }
        if let Some(err) = ev.error.take() {
            return Err(error_from(err, ev.request_id.take(), 0, &HeaderMap::new()));
        }
        if let Some(em) = ev.error_msg.take() {
            let code = match &em.code {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(serde_json::Value::Number(n)) => n.to_string(),
                _ => String::new(),
            };
            let msg = em.msg.unwrap_or_default();
            if !(code.is_empty() || code == "0") || !msg.is_empty() {
                return Err(stream_error(&code, &msg).with_request_id(ev.request_id));
            }
        }
        if !self.started {
            self.started = true;
            out.push(StreamEvent::Started {
                id: ev.id.clone().unwrap_or_default(),
                model: String::new(),
                request_id: ev.request_id.clone(),
            });
        }
        if let Some(u) = ev.usage {
            self.usage = Some(u.usage());
        }
        let Some(choice) = ev.choices.into_iter().next() else {
            return Ok(());
        };
        if let Some(delta) = choice.delta.or(choice.message) {
            if let Some(r) = delta.reasoning_content.filter(|r| !r.is_empty()) {
                out.push(StreamEvent::ReasoningDelta { text: r });
            }
            if let Some(t) = delta.content.filter(|t| !t.is_empty()) {
                out.push(StreamEvent::TextDelta { text: t });
            }
            for tc in delta.tool_calls.unwrap_or_default() {
                let id = tc.id.filter(|s| !s.is_empty());
                let slot = self.slot_for(id.as_deref(), tc.index)?;
                let f = tc.function.unwrap_or_default();
                let arguments = f.arguments_string();
                let name = f.name.filter(|n| !n.is_empty());
                let s = &mut self.calls[slot];
                let announce_id = if s.id_sent { None } else { s.id.clone() };
                s.id_sent |= announce_id.is_some();
                let name = if s.name_sent { None } else { name };
                s.name_sent |= name.is_some();
                if name.is_some() || announce_id.is_some() || !arguments.is_empty() {
                    out.push(StreamEvent::ToolCallDelta {
                        index: slot as u32,
                        id: announce_id,
                        name,
                        arguments,
                    });
                }
            }
        }
        if let Some(r) = finish_reason(choice.finish_reason.as_deref()) {
            self.finish = Some(r);
        }
        Ok(())
    }

    fn is_done(&self) -> bool {
        self.done
    }

    fn finish(&mut self, out: &mut Vec<StreamEvent>) -> Result<()> {
        let Some(reason) = self.finish.take() else {
            return Err(Error::protocol(
                "hunyuan stream ended before a finish reason (the body was cut)",
            )
            .with_provider(ID));
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
            out.push(StreamEvent::Usage(u));
        }
        out.push(StreamEvent::Finished { reason });
        Ok(())
    }
}
