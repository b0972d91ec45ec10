//! Core [`StreamEvent`]s → the Responses API's server-sent events, each `event: <type>` plus a
//! `data:` object with that `type` and a `sequence_number` counting from 0:
//!
//! ```text
//! response.created, response.in_progress                       (the Response, in_progress)
//! per item, opened where its first delta arrives (output_index = order of opening):
//!   reasoning: response.output_item.added, response.content_part.added (reasoning_text),
//!              response.reasoning_text.delta …
//!   message:   response.output_item.added, response.content_part.added (output_text),
//!              response.output_text.delta …
//!   call:      response.output_item.added (call_id, name), response.function_call_arguments.delta …
//! at the finish, every item closed in output_index order:
//!   …text.done / reasoning_text.done / function_call_arguments.done, response.content_part.done,
//!   response.output_item.done
//! response.completed (or response.incomplete when cut by the output cap or a filter), with
//! the whole Response and its usage
//! ```
//!
//! One reasoning item and one message item at most (later deltas of the same kind extend
//! them); one function-call item per core tool-call index. An upstream failure after the start
//! is an `error` event followed by `response.failed`.

use bytes::Bytes;
use llmux_core::{ErrorKind, StreamEvent, Usage};
use serde::Serialize;
use serde_json::Value;

use super::request::ResponsesOptions;
use super::response::{
    status_of, Ids, OutputItem, OutputText, ReasoningText, ResponseError, ResponseObject, Shell,
};
use crate::error::ApiError;
use crate::ingress::StreamEncoder;

/// One item being streamed.
#[derive(Debug)]
enum Slot {
    Reasoning(String),
    Message(String),
    Call {
        index: u32,
        call_id: String,
        name: String,
        arguments: String,
    },
}

/// Turns one response's events into Responses SSE frames.
#[derive(Debug)]
pub struct EventEncoder {
    ids: Ids,
    created_at: i64,
    model: String,
    options: ResponsesOptions,
    seq: u64,
    started: bool,
    slots: Vec<Slot>,
    reasoning: Option<usize>,
    message: Option<usize>,
    usage: Option<Usage>,
}

/// A part inside `response.content_part.*` events.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Part<'a> {
    OutputText {
        text: &'a str,
        annotations: &'a [Value],
    },
    ReasoningText {
        text: &'a str,
    },
}

/// The events, as their `data:` objects.
#[derive(Serialize)]
#[serde(tag = "type")]
enum Event<'a> {
    #[serde(rename = "response.created")]
    Created {
        sequence_number: u64,
        response: &'a ResponseObject,
    },
    #[serde(rename = "response.in_progress")]
    InProgress {
        sequence_number: u64,
        response: &'a ResponseObject,
    },
    #[serde(rename = "response.completed")]
    Completed {
        sequence_number: u64,
        response: &'a ResponseObject,
    },
    #[serde(rename = "response.incomplete")]
    Incomplete {
        sequence_number: u64,
        response: &'a ResponseObject,
    },
    #[serde(rename = "response.failed")]
    Failed {
        sequence_number: u64,
        response: &'a ResponseObject,
    },
    #[serde(rename = "response.output_item.added")]
    ItemAdded {
        sequence_number: u64,
        output_index: usize,
        item: &'a OutputItem,
    },
    #[serde(rename = "response.output_item.done")]
    ItemDone {
        sequence_number: u64,
        output_index: usize,
        item: &'a OutputItem,
    },
    #[serde(rename = "response.content_part.added")]
    PartAdded {
        sequence_number: u64,
        item_id: &'a str,
        output_index: usize,
        content_index: u32,
        part: Part<'a>,
    },
    #[serde(rename = "response.content_part.done")]
    PartDone {
        sequence_number: u64,
        item_id: &'a str,
        output_index: usize,
        content_index: u32,
        part: Part<'a>,
    },
    #[serde(rename = "response.output_text.delta")]
    TextDelta {
        sequence_number: u64,
        item_id: &'a str,
        output_index: usize,
        content_index: u32,
        delta: &'a str,
        logprobs: &'a [Value],
    },
    #[serde(rename = "response.output_text.done")]
    TextDone {
        sequence_number: u64,
        item_id: &'a str,
        output_index: usize,
        content_index: u32,
        text: &'a str,
        logprobs: &'a [Value],
    },
    #[serde(rename = "response.reasoning_text.delta")]
    ReasoningDelta {
        sequence_number: u64,
        item_id: &'a str,
        output_index: usize,
        content_index: u32,
        delta: &'a str,
    },
    #[serde(rename = "response.reasoning_text.done")]
    ReasoningDone {
        sequence_number: u64,
        item_id: &'a str,
        output_index: usize,
        content_index: u32,
        text: &'a str,
    },
    #[serde(rename = "response.function_call_arguments.delta")]
    ArgumentsDelta {
        sequence_number: u64,
        item_id: &'a str,
        output_index: usize,
        delta: &'a str,
    },
    #[serde(rename = "response.function_call_arguments.done")]
    ArgumentsDone {
        sequence_number: u64,
        item_id: &'a str,
        output_index: usize,
        name: &'a str,
        arguments: &'a str,
    },
    #[serde(rename = "error")]
    Error {
        sequence_number: u64,
        code: Option<&'a str>,
        message: &'a str,
        param: Option<&'a str>,
    },
}

impl Event<'_> {
    fn name(&self) -> &'static str {
        match self {
            Event::Created { .. } => "response.created",
            Event::InProgress { .. } => "response.in_progress",
            Event::Completed { .. } => "response.completed",
            Event::Incomplete { .. } => "response.incomplete",
            Event::Failed { .. } => "response.failed",
            Event::ItemAdded { .. } => "response.output_item.added",
            Event::ItemDone { .. } => "response.output_item.done",
            Event::PartAdded { .. } => "response.content_part.added",
            Event::PartDone { .. } => "response.content_part.done",
            Event::TextDelta { .. } => "response.output_text.delta",
            Event::TextDone { .. } => "response.output_text.done",
            Event::ReasoningDelta { .. } => "response.reasoning_text.delta",
            Event::ReasoningDone { .. } => "response.reasoning_text.done",
            Event::ArgumentsDelta { .. } => "response.function_call_arguments.delta",
            Event::ArgumentsDone { .. } => "response.function_call_arguments.done",
            Event::Error { .. } => "error",
        }
    }
}

/// `event: <type>` and `data: <json>` lines of one event, appended to `buf`.
fn write_event(buf: &mut Vec<u8>, ev: &Event<'_>) {
    buf.extend_from_slice(b"event: ");
    buf.extend_from_slice(ev.name().as_bytes());
    buf.extend_from_slice(b"\ndata: ");
    let start = buf.len();
    if serde_json::to_writer(&mut *buf, ev).is_err() {
        buf.truncate(start);
        buf.extend_from_slice(
            br#"{"type":"error","sequence_number":0,"code":"server_error","message":"could not encode an event","param":null}"#,
        );
    }
    buf.extend_from_slice(b"\n\n");
}

impl EventEncoder {
    /// An encoder for the response to request `request_id`.
    pub fn new(
        request_id: &str,
        created_at: i64,
        model: String,
        options: ResponsesOptions,
    ) -> Self {
        EventEncoder {
            ids: Ids::new(request_id),
            created_at,
            model,
            options,
            seq: 0,
            started: false,
            slots: Vec::new(),
            reasoning: None,
            message: None,
            usage: None,
        }
    }

    fn next_seq(&mut self) -> u64 {
        let s = self.seq;
        self.seq += 1;
        s
    }

    fn shell(&self) -> Shell<'_> {
        Shell {
            ids: &self.ids,
            created_at: self.created_at,
            model: &self.model,
            options: &self.options,
        }
    }

    fn emit(&mut self, out: &mut Vec<Bytes>, f: impl FnOnce(&Self, u64, &mut Vec<u8>)) {
        let seq = self.next_seq();
        let mut buf = Vec::with_capacity(256);
        f(self, seq, &mut buf);
        out.push(Bytes::from(buf));
    }

    fn start(&mut self, out: &mut Vec<Bytes>) {
        if self.started {
            return;
        }
        self.started = true;
        let resp = self.shell().response("in_progress", None, Vec::new(), None);
        self.emit(out, |_, seq, buf| {
            write_event(
                buf,
                &Event::Created {
                    sequence_number: seq,
                    response: &resp,
                },
            );
        });
        self.emit(out, |_, seq, buf| {
            write_event(
                buf,
                &Event::InProgress {
                    sequence_number: seq,
                    response: &resp,
                },
            );
        });
    }

    /// The item a slot stands for; `done` picks its final status and content.
    fn item(&self, slot: &Slot, done: bool, status_done: &'static str) -> OutputItem {
        let status = if done { status_done } else { "in_progress" };
        match slot {
            Slot::Reasoning(text) => OutputItem::Reasoning {
                id: self.ids.reasoning(),
                summary: Vec::new(),
                content: if done {
                    vec![ReasoningText::new(text.clone())]
                } else {
                    Vec::new()
                },
                status: if done { "completed" } else { "in_progress" },
            },
            Slot::Message(text) => OutputItem::Message {
                id: self.ids.message(),
                role: "assistant",
                status,
                content: if done {
                    vec![OutputText::new(text.clone())]
                } else {
                    Vec::new()
                },
            },
            Slot::Call {
                index,
                call_id,
                name,
                arguments,
            } => OutputItem::FunctionCall {
                id: self.ids.function_call(*index),
                call_id: call_id.clone(),
                name: name.clone(),
                arguments: if done {
                    arguments.clone()
                } else {
                    String::new()
                },
                status: if done { "completed" } else { "in_progress" },
            },
        }
    }

    fn item_id(&self, slot: usize) -> String {
        match &self.slots[slot] {
            Slot::Reasoning(_) => self.ids.reasoning(),
            Slot::Message(_) => self.ids.message(),
            Slot::Call { index, .. } => self.ids.function_call(*index),
        }
    }

    /// Opens a slot: its `output_item.added` (and `content_part.added` for text).
    fn open(&mut self, slot: Slot, out: &mut Vec<Bytes>) -> usize {
        let at = self.slots.len();
        let item = self.item(&slot, false, "in_progress");
        let part = match &slot {
            Slot::Reasoning(_) => Some(Part::ReasoningText { text: "" }),
            Slot::Message(_) => Some(Part::OutputText {
                text: "",
                annotations: &[],
            }),
            Slot::Call { .. } => None,
        };
        self.slots.push(slot);
        self.emit(out, |_, seq, buf| {
            write_event(
                buf,
                &Event::ItemAdded {
                    sequence_number: seq,
                    output_index: at,
                    item: &item,
                },
            );
        });
        if let Some(part) = part {
            let id = self.item_id(at);
            self.emit(out, |_, seq, buf| {
                write_event(
                    buf,
                    &Event::PartAdded {
                        sequence_number: seq,
                        item_id: &id,
                        output_index: at,
                        content_index: 0,
                        part,
                    },
                );
            });
        }
        at
    }

    fn text(&mut self, text: &str, out: &mut Vec<Bytes>) {
        let at = match self.message {
            Some(at) => at,
            None => {
                let at = self.open(Slot::Message(String::new()), out);
                self.message = Some(at);
                at
            }
        };
        if let Slot::Message(t) = &mut self.slots[at] {
            t.push_str(text);
        }
        let id = self.ids.message();
        self.emit(out, |_, seq, buf| {
            write_event(
                buf,
                &Event::TextDelta {
                    sequence_number: seq,
                    item_id: &id,
                    output_index: at,
                    content_index: 0,
                    delta: text,
                    logprobs: &[],
                },
            );
        });
    }

    fn reasoning_delta(&mut self, text: &str, out: &mut Vec<Bytes>) {
        let at = match self.reasoning {
            Some(at) => at,
            None => {
                let at = self.open(Slot::Reasoning(String::new()), out);
                self.reasoning = Some(at);
                at
            }
        };
        if let Slot::Reasoning(t) = &mut self.slots[at] {
            t.push_str(text);
        }
        let id = self.ids.reasoning();
        self.emit(out, |_, seq, buf| {
            write_event(
                buf,
                &Event::ReasoningDelta {
                    sequence_number: seq,
                    item_id: &id,
                    output_index: at,
                    content_index: 0,
                    delta: text,
                },
            );
        });
    }

    fn call(
        &mut self,
        index: u32,
        id: Option<&str>,
        name: Option<&str>,
        arguments: &str,
        out: &mut Vec<Bytes>,
    ) {
        let found = self
            .slots
            .iter()
            .position(|s| matches!(s, Slot::Call { index: i, .. } if *i == index));
        let at = match found {
            Some(at) => {
                if let Slot::Call { name: n, .. } = &mut self.slots[at] {
                    if n.is_empty() {
                        if let Some(name) = name {
                            name.clone_into(n);
                        }
                    }
                }
                at
            }
            None => {
                let call_id = id.map_or_else(
                    || format!("call_{}_{index}", self.ids.response()),
                    str::to_owned,
                );
                self.open(
                    Slot::Call {
                        index,
                        call_id,
                        name: name.unwrap_or_default().to_owned(),
                        arguments: String::new(),
                    },
                    out,
                )
            }
        };
        if arguments.is_empty() {
            return;
        }
        if let Slot::Call { arguments: a, .. } = &mut self.slots[at] {
            a.push_str(arguments);
        }
        let id = self.item_id(at);
        self.emit(out, |_, seq, buf| {
            write_event(
                buf,
                &Event::ArgumentsDelta {
                    sequence_number: seq,
                    item_id: &id,
                    output_index: at,
                    delta: arguments,
                },
            );
        });
    }

    /// Closes every slot (in output_index order) with `status_done` for the message.
    fn close_all(&mut self, status_done: &'static str, out: &mut Vec<Bytes>) -> Vec<OutputItem> {
        let mut items = Vec::with_capacity(self.slots.len());
        for at in 0..self.slots.len() {
            let id = self.item_id(at);
            let item = self.item(&self.slots[at], true, status_done);
            match &self.slots[at] {
                Slot::Reasoning(text) | Slot::Message(text) => {
                    let reasoning = matches!(self.slots[at], Slot::Reasoning(_));
                    let text = text.clone();
                    self.emit(out, |_, seq, buf| {
                        let ev = if reasoning {
                            Event::ReasoningDone {
                                sequence_number: seq,
                                item_id: &id,
                                output_index: at,
                                content_index: 0,
                                text: &text,
                            }
                        } else {
                            Event::TextDone {
                                sequence_number: seq,
                                item_id: &id,
                                output_index: at,
                                content_index: 0,
                                text: &text,
                                logprobs: &[],
                            }
                        };
                        write_event(buf, &ev);
                    });
                    self.emit(out, |_, seq, buf| {
                        let part = if reasoning {
                            Part::ReasoningText { text: &text }
                        } else {
                            Part::OutputText {
                                text: &text,
                                annotations: &[],
                            }
                        };
                        write_event(
                            buf,
                            &Event::PartDone {
                                sequence_number: seq,
                                item_id: &id,
                                output_index: at,
                                content_index: 0,
                                part,
                            },
                        );
                    });
                }
                Slot::Call {
                    name, arguments, ..
                } => {
                    let (name, arguments) = (name.clone(), arguments.clone());
                    self.emit(out, |_, seq, buf| {
                        write_event(
                            buf,
                            &Event::ArgumentsDone {
                                sequence_number: seq,
                                item_id: &id,
                                output_index: at,
                                name: &name,
                                arguments: &arguments,
                            },
                        );
                    });
                }
            }
            self.emit(out, |_, seq, buf| {
                write_event(
                    buf,
                    &Event::ItemDone {
                        sequence_number: seq,
                        output_index: at,
                        item: &item,
                    },
                );
            });
            items.push(item);
        }
        items
    }
}

impl StreamEncoder for EventEncoder {
    fn content_type(&self) -> &'static str {
        "text/event-stream"
    }

    fn keepalive(&self) -> bool {
        true
    }

    /// Frames for one event (`Finished` closes the items and sends the final Response).
    fn push(&mut self, ev: &StreamEvent, out: &mut Vec<Bytes>) {
        self.start(out);
        match ev {
            // Responses reasoning items carry no vendor signature (nothing is stored).
            StreamEvent::Started { .. } | StreamEvent::ReasoningSignature { .. } => {}
            StreamEvent::TextDelta { text } => {
                if !text.is_empty() {
                    self.text(text, out);
                }
            }
            StreamEvent::ReasoningDelta { text } => {
                if !text.is_empty() {
                    self.reasoning_delta(text, out);
                }
            }
            StreamEvent::ToolCallDelta {
                index,
                id,
                name,
                arguments,
            } => self.call(
                *index,
                id.as_deref().filter(|s| !s.is_empty()),
                name.as_deref().filter(|s| !s.is_empty()),
                arguments,
                out,
            ),
            StreamEvent::Usage(u) => self.usage = Some(*u),
            StreamEvent::Finished { reason } => {
                let has_call = self.slots.iter().any(|s| matches!(s, Slot::Call { .. }));
                if self.message.is_none() && !has_call {
                    let at = self.open(Slot::Message(String::new()), out);
                    self.message = Some(at);
                }
                let (status, incomplete) = status_of(Some(reason));
                let message_status = if status == "completed" {
                    "completed"
                } else {
                    "incomplete"
                };
                let items = self.close_all(message_status, out);
                let usage = self.usage;
                let resp = self
                    .shell()
                    .response(status, incomplete, items, usage.as_ref());
                self.emit(out, |_, seq, buf| {
                    let ev = if status == "completed" {
                        Event::Completed {
                            sequence_number: seq,
                            response: &resp,
                        }
                    } else {
                        Event::Incomplete {
                            sequence_number: seq,
                            response: &resp,
                        }
                    };
                    write_event(buf, &ev);
                });
            }
        }
    }

    /// The last frames for an error after the stream started: an `error` event, then
    /// `response.failed` with the items so far (incomplete).
    fn error(&mut self, err: &ApiError) -> Bytes {
        let mut frames = Vec::new();
        self.start(&mut frames);
        let body = crate::ingress::openai::OpenAiError::from(err);
        let code = body.error.code;
        self.emit(&mut frames, |_, seq, buf| {
            write_event(
                buf,
                &Event::Error {
                    sequence_number: seq,
                    code: code.as_deref(),
                    message: &err.message,
                    param: err.param.as_deref(),
                },
            );
        });
        let items: Vec<OutputItem> = self
            .slots
            .iter()
            .map(|s| match self.item(s, true, "incomplete") {
                OutputItem::Reasoning {
                    id,
                    summary,
                    content,
                    ..
                } => OutputItem::Reasoning {
                    id,
                    summary,
                    content,
                    status: "incomplete",
                },
                OutputItem::FunctionCall {
                    id,
                    call_id,
                    name,
                    arguments,
                    ..
                } => OutputItem::FunctionCall {
                    id,
                    call_id,
                    name,
                    arguments,
                    status: "incomplete",
                },
                m @ OutputItem::Message { .. } => m,
            })
            .collect();
        let mut resp = self
            .shell()
            .response("failed", None, items, self.usage.as_ref());
        resp.error = Some(ResponseError {
            code: match err.kind {
                ErrorKind::RateLimited => "rate_limit_exceeded",
                _ => "server_error",
            },
            message: err.message.clone(),
        });
        self.emit(&mut frames, |_, seq, buf| {
            write_event(
                buf,
                &Event::Failed {
                    sequence_number: seq,
                    response: &resp,
                },
            );
        });
        let mut all = Vec::with_capacity(frames.iter().map(Bytes::len).sum());
        for f in frames {
            all.extend_from_slice(&f);
        }
        Bytes::from(all)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use llmux_core::FinishReason;

    use super::*;
    use crate::ingress::testing::started;

    /// Every (event name, data) of the frames, checking each frame's `event:` line matches its
    /// data's `type` and sequence numbers count from 0.
    fn events(frames: &[Bytes]) -> Vec<Value> {
        let mut out = Vec::new();
        for f in frames {
            let text = std::str::from_utf8(f).unwrap();
            for ev in text.split("\n\n").filter(|e| !e.is_empty()) {
                let mut lines = ev.lines();
                let name = lines.next().unwrap().strip_prefix("event: ").unwrap();
                let data: Value =
                    serde_json::from_str(lines.next().unwrap().strip_prefix("data: ").unwrap())
                        .unwrap();
                assert_eq!(data["type"], name);
                assert_eq!(data["sequence_number"], out.len() as u64, "{data}");
                out.push(data);
            }
        }
        out
    }

    fn run(evs: &[StreamEvent]) -> Vec<Value> {
        let opts = ResponsesOptions {
            parallel_tool_calls: true,
            tool_choice: "auto".into(),
            text_format: serde_json::json!({"type": "text"}),
            ..ResponsesOptions::default()
        };
        let mut enc = EventEncoder::new("01-ff", 9, "m".into(), opts);
        let mut out = Vec::new();
        for e in evs {
            enc.push(e, &mut out);
        }
        events(&out)
    }

    fn types(evs: &[Value]) -> Vec<&str> {
        evs.iter().map(|e| e["type"].as_str().unwrap()).collect()
    }

    #[test]
    fn text_stream_has_the_sdk_event_sequence() {
        let evs = run(&[
            started(),
            StreamEvent::TextDelta { text: "Hel".into() },
            StreamEvent::TextDelta { text: "lo".into() },
            StreamEvent::Usage(Usage::new(3, 2)),
            StreamEvent::Finished {
                reason: FinishReason::Stop,
            },
        ]);
        assert_eq!(
            types(&evs),
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.completed"
            ]
        );
        assert_eq!(evs[0]["response"]["status"], "in_progress");
        assert_eq!(evs[0]["response"]["id"], "resp_01ff");
        assert!(evs[0]["response"]["usage"].is_null());
        assert_eq!(evs[2]["item"]["id"], "msg_01ff");
        assert_eq!(evs[2]["item"]["content"], serde_json::json!([]));
        assert_eq!(
            evs[3]["part"],
            serde_json::json!({"type": "output_text", "text": "", "annotations": []})
        );
        assert_eq!(evs[4]["delta"], "Hel");
        assert_eq!(evs[4]["item_id"], "msg_01ff");
        assert_eq!(evs[4]["output_index"], 0);
        assert_eq!(evs[6]["text"], "Hello");
        assert_eq!(evs[8]["item"]["content"][0]["text"], "Hello");
        assert_eq!(evs[8]["item"]["status"], "completed");
        let done = &evs[9]["response"];
        assert_eq!(done["status"], "completed");
        assert_eq!(done["output"][0]["content"][0]["text"], "Hello");
        assert_eq!(done["usage"]["total_tokens"], 5);
        assert_eq!(done["id"], "resp_01ff");
    }

    #[test]
    fn reasoning_then_tool_calls_are_separate_items() {
        let evs = run(&[
            started(),
            StreamEvent::ReasoningDelta { text: "hmm".into() },
            StreamEvent::ToolCallDelta {
                index: 0,
                id: Some("call_1".into()),
                name: Some("f".into()),
                arguments: String::new(),
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                id: None,
                name: None,
                arguments: "{\"a\":".into(),
            },
            StreamEvent::ToolCallDelta {
                index: 1,
                id: Some("call_2".into()),
                name: Some("g".into()),
                arguments: "{}".into(),
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                id: None,
                name: None,
                arguments: "1}".into(),
            },
            StreamEvent::Usage(Usage::new(3, 2)),
            StreamEvent::Finished {
                reason: FinishReason::ToolCalls,
            },
        ]);
        assert_eq!(
            types(&evs),
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.reasoning_text.delta",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.delta",
                "response.reasoning_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed"
            ]
        );
        assert_eq!(evs[5]["item"]["call_id"], "call_1");
        assert_eq!(evs[5]["item"]["name"], "f");
        assert_eq!(evs[5]["output_index"], 1);
        assert_eq!(evs[7]["output_index"], 2);
        assert_eq!(evs[9]["output_index"], 1);
        assert_eq!(evs[13]["arguments"], "{\"a\":1}");
        assert_eq!(evs[13]["name"], "f");
        assert_eq!(evs[14]["item"]["arguments"], "{\"a\":1}");
        assert_eq!(evs[14]["item"]["id"], "fc_01ff_0");
        let out = evs[17]["response"]["output"].as_array().unwrap();
        assert_eq!(out.len(), 3, "no empty message beside the calls");
        assert_eq!(out[0]["content"][0]["text"], "hmm");
        assert_eq!(out[2]["call_id"], "call_2");
    }

    #[test]
    fn an_empty_answer_still_has_a_message_and_a_cut_one_is_incomplete() {
        let evs = run(&[
            started(),
            StreamEvent::Finished {
                reason: FinishReason::Length,
            },
        ]);
        assert_eq!(evs.last().unwrap()["type"], "response.incomplete");
        let r = &evs.last().unwrap()["response"];
        assert_eq!(r["status"], "incomplete");
        assert_eq!(r["incomplete_details"]["reason"], "max_output_tokens");
        assert_eq!(r["output"][0]["content"][0]["text"], "");
        assert_eq!(r["output"][0]["status"], "incomplete");
    }

    #[test]
    fn an_error_mid_stream_is_an_error_event_then_response_failed() {
        let mut enc = EventEncoder::new("01", 9, "m".into(), ResponsesOptions::default());
        let mut out = Vec::new();
        enc.push(&StreamEvent::TextDelta { text: "Hi".into() }, &mut out);
        out.push(enc.error(&ApiError::new(ErrorKind::UpstreamServer, "boom")));
        let evs = events(&out);
        let n = evs.len();
        assert_eq!(evs[n - 2]["type"], "error");
        assert_eq!(evs[n - 2]["code"], "upstream_error");
        assert_eq!(evs[n - 2]["message"], "boom");
        let r = &evs[n - 1]["response"];
        assert_eq!(evs[n - 1]["type"], "response.failed");
        assert_eq!(r["status"], "failed");
        assert_eq!(
            r["error"],
            serde_json::json!({"code": "server_error", "message": "boom"})
        );
        assert_eq!(r["output"][0]["content"][0]["text"], "Hi");
        // An error before anything was pushed still starts the stream properly.
        let mut enc = EventEncoder::new("01", 9, "m".into(), ResponsesOptions::default());
        let evs = events(&[enc.error(&ApiError::new(ErrorKind::RateLimited, "slow"))]);
        assert_eq!(
            types(&evs),
            [
                "response.created",
                "response.in_progress",
                "error",
                "response.failed"
            ]
        );
        assert_eq!(evs[3]["response"]["error"]["code"], "rate_limit_exceeded");
    }
}
