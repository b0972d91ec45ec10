//! Core [`StreamEvent`]s → DashScope SSE frames (PROTOCOLS §1.5):
//! `id:N\nevent:result\n:HTTP_STATUS/200\ndata:{…}\n\n`, `finish_reason` the string `"null"`
//! until the last frame, no `[DONE]`. Incremental mode sends only the new piece; cumulative mode
//! (the default) sends everything generated so far in every frame.
//!
//! Every frame carries `usage`, as DashScope's do, with running `output_tokens`. Core streams
//! report usage once, just before `Finished`, so frames before it carry the gateway's running
//! count: the prompt estimate in, and out one token per upstream piece so far (a piece holds at
//! least one token, so the count only grows and the upstream's final figure, on the last frame,
//! is never below it; a text-length estimate can overshoot and would make the count go back).
//! With no usage from the upstream the last frame keeps that count.

use bytes::Bytes;
use llmux_core::{StreamEvent, Usage};
use serde_json::{json, Value};

use super::{GenerationOptions, ResultFormat};
use crate::error::{ApiError, ErrorEnvelope};

/// Turns one response's events into DashScope frames.
#[derive(Debug)]
pub struct FrameEncoder {
    opts: GenerationOptions,
    request_id: String,
    seq: u64,
    text: String,
    reasoning: String,
    calls: crate::ingress::StreamedCalls,
    usage: Option<Usage>,
    prompt_estimate: u64,
    pieces: u64,
}

enum Piece<'a> {
    Text(&'a str),
    Reasoning(&'a str),
    Call(usize, &'a str, bool),
    Final(&'a str),
}

impl FrameEncoder {
    /// An encoder; `request_id` goes into every frame.
    pub fn new(opts: GenerationOptions, request_id: String) -> Self {
        FrameEncoder {
            opts,
            request_id,
            seq: 0,
            text: String::new(),
            reasoning: String::new(),
            calls: crate::ingress::StreamedCalls::default(),
            usage: None,
            prompt_estimate: 0,
            pieces: 0,
        }
    }

    /// The estimated prompt tokens, reported as `input_tokens` until the upstream reports usage.
    pub fn with_prompt_estimate(mut self, tokens: u64) -> Self {
        self.prompt_estimate = tokens;
        self
    }

    /// The usage to put on a frame: the upstream's, else the running count.
    fn running_usage(&self) -> Usage {
        let out = self.pieces;
        match self.usage {
            // The upstream counts its output: its figures.
            Some(u) if u.output_tokens > 0 || out == 0 => u,
            // It reported the prompt only: its input, the counted output.
            Some(u) => Usage {
                output_tokens: out,
                total_tokens: u.input_tokens + out,
                ..u
            },
            None => Usage::new(self.prompt_estimate, out),
        }
    }

    fn frame(&mut self, event: &str, status: u16, data: &Value) -> Bytes {
        self.seq += 1;
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(
            format!(
                "id:{}\nevent:{event}\n:HTTP_STATUS/{status}\ndata:",
                self.seq
            )
            .as_bytes(),
        );
        if serde_json::to_writer(&mut buf, data).is_err() {
            buf.extend_from_slice(b"{}");
        }
        buf.extend_from_slice(b"\n\n");
        Bytes::from(buf)
    }

    fn data(&self, piece: &Piece<'_>) -> Value {
        let finish = match piece {
            Piece::Final(f) => *f,
            _ => "null",
        };
        let inc = self.opts.incremental;
        let (text, reasoning): (&str, &str) = match (inc, piece) {
            (false, _) => (&self.text, &self.reasoning),
            (true, Piece::Text(t)) => (t, ""),
            (true, Piece::Reasoning(r)) => ("", r),
            (true, _) => ("", ""),
        };
        let output = match self.opts.result_format {
            ResultFormat::Text => json!({"finish_reason": finish, "text": text}),
            ResultFormat::Message => {
                let mut message = json!({"role": "assistant", "content": text});
                if !reasoning.is_empty() || matches!(piece, Piece::Reasoning(_)) {
                    message["reasoning_content"] = Value::String(reasoning.to_owned());
                }
                match (inc, piece) {
                    (true, Piece::Call(i, args, first)) => {
                        let c = self.calls.get(*i);
                        let first = *first;
                        message["tool_calls"] = json!([{
                            "index": i,
                            "id": if first { c.map_or("", |c| c.id.as_str()) } else { "" },
                            "type": "function",
                            "function": if first {
                                json!({"name": c.map_or("", |c| c.name.as_str()), "arguments": args})
                            } else {
                                json!({"arguments": args})
                            },
                        }]);
                    }
                    (false, _) if !self.calls.is_empty() => {
                        message["tool_calls"] =
                            super::response::tool_calls_json(self.calls.iter().enumerate());
                    }
                    _ => {}
                }
                json!({"choices": [{"finish_reason": finish, "message": message}]})
            }
        };
        json!({
            "output": output,
            "usage": super::response::usage_json(&self.running_usage()),
            "request_id": self.request_id,
        })
    }

    /// Frames for one event.
    pub fn push(&mut self, ev: &StreamEvent, out: &mut Vec<Bytes>) {
        let piece = match ev {
            // DashScope has no signed reasoning: nothing to carry.
            StreamEvent::Started { .. } | StreamEvent::ReasoningSignature { .. } => return,
            StreamEvent::Usage(u) => {
                self.usage = Some(*u);
                return;
            }
            StreamEvent::TextDelta { text } => {
                if text.is_empty() {
                    return;
                }
                self.text.push_str(text);
                self.pieces += 1;
                Piece::Text(text)
            }
            StreamEvent::ReasoningDelta { text } => {
                self.reasoning.push_str(text);
                self.pieces += u64::from(!text.is_empty());
                Piece::Reasoning(text)
            }
            StreamEvent::ToolCallDelta {
                index,
                id,
                name,
                arguments,
            } => {
                if self.opts.result_format == ResultFormat::Text {
                    return;
                }
                let first = id.as_deref().is_some_and(|s| !s.is_empty());
                let Some(i) = self
                    .calls
                    .push(*index, id.as_deref(), name.as_deref(), arguments)
                else {
                    return;
                };
                self.pieces += u64::from(!arguments.is_empty());
                Piece::Call(i, arguments, first)
            }
            StreamEvent::Finished { reason } => {
                let data = self.data(&Piece::Final(reason.as_str()));
                let f = self.frame("result", 200, &data);
                out.push(f);
                return;
            }
        };
        let data = self.data(&piece);
        let f = self.frame("result", 200, &data);
        out.push(f);
    }

    /// The `event:error` frame for a failure after the stream started.
    pub fn error(&mut self, err: &ApiError) -> Bytes {
        let body = serde_json::to_value(super::DashScopeError::new(err, &self.request_id))
            .unwrap_or_default();
        let status = super::DashScopeEnvelope.status(err).as_u16();
        self.frame("error", status, &body)
    }

    /// Usage seen so far.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use llmux_core::FinishReason;

    fn run(opts: GenerationOptions, evs: &[StreamEvent]) -> Vec<String> {
        let mut enc = FrameEncoder::new(opts, "rid".into());
        let mut out = Vec::new();
        for e in evs {
            enc.push(e, &mut out);
        }
        out.iter()
            .map(|b| String::from_utf8(b.to_vec()).unwrap())
            .collect()
    }

    fn data(frame: &str) -> Value {
        let line = frame.lines().find_map(|l| l.strip_prefix("data:")).unwrap();
        serde_json::from_str(line).unwrap()
    }

    fn text_events() -> Vec<StreamEvent> {
        vec![
            StreamEvent::Started {
                id: "x".into(),
                model: "m".into(),
                request_id: None,
            },
            StreamEvent::TextDelta { text: "Hel".into() },
            StreamEvent::TextDelta { text: "lo".into() },
            StreamEvent::Usage(Usage::new(10, 2)),
            StreamEvent::Finished {
                reason: FinishReason::Stop,
            },
        ]
    }

    #[test]
    fn incremental_frames_carry_pieces() {
        let opts = GenerationOptions {
            result_format: ResultFormat::Text,
            incremental: true,
        };
        let f = run(opts, &text_events());
        assert_eq!(f.len(), 3);
        assert!(
            f[0].starts_with("id:1\nevent:result\n:HTTP_STATUS/200\ndata:{"),
            "{}",
            f[0]
        );
        assert_eq!(
            data(&f[0])["output"],
            json!({"finish_reason":"null","text":"Hel"})
        );
        assert_eq!(data(&f[1])["output"]["text"], "lo");
        assert_eq!(
            data(&f[2])["output"],
            json!({"finish_reason":"stop","text":""})
        );
        assert_eq!(data(&f[2])["usage"]["output_tokens"], 2);
        assert_eq!(data(&f[2])["request_id"], "rid");
    }

    #[test]
    fn every_frame_has_running_usage_and_the_last_the_upstreams() {
        let opts = GenerationOptions {
            result_format: ResultFormat::Message,
            incremental: true,
        };
        let mut enc = FrameEncoder::new(opts, "rid".into()).with_prompt_estimate(9);
        let mut out = Vec::new();
        for text in ["Hello, ", "world", "。你好"] {
            enc.push(&StreamEvent::TextDelta { text: text.into() }, &mut out);
        }
        let usage: Vec<Value> = out
            .iter()
            .map(|b| data(std::str::from_utf8(b).unwrap())["usage"].clone())
            .collect();
        // One token per piece so far, the prompt estimate in.
        assert_eq!(
            usage,
            vec![
                json!({"input_tokens": 9, "output_tokens": 1, "total_tokens": 10}),
                json!({"input_tokens": 9, "output_tokens": 2, "total_tokens": 11}),
                json!({"input_tokens": 9, "output_tokens": 3, "total_tokens": 12}),
            ]
        );
        enc.push(&StreamEvent::Usage(Usage::new(12, 5)), &mut out);
        enc.push(
            &StreamEvent::Finished {
                reason: FinishReason::Stop,
            },
            &mut out,
        );
        let last = data(std::str::from_utf8(out.last().unwrap()).unwrap());
        assert_eq!(
            last["usage"],
            json!({"input_tokens": 12, "output_tokens": 5, "total_tokens": 17})
        );
        // No upstream usage at all: the last frame keeps the count.
        let f = run(
            GenerationOptions {
                result_format: ResultFormat::Text,
                incremental: true,
            },
            &[
                StreamEvent::TextDelta {
                    text: "abcd efgh".into(),
                },
                StreamEvent::Finished {
                    reason: FinishReason::Stop,
                },
            ],
        );
        assert_eq!(data(&f[1])["usage"]["output_tokens"], 1);
    }

    #[test]
    fn cumulative_frames_repeat_everything_so_far() {
        let opts = GenerationOptions {
            result_format: ResultFormat::Message,
            incremental: false,
        };
        let f = run(opts, &text_events());
        let c = |i: usize| data(&f[i])["output"]["choices"][0].clone();
        assert_eq!(c(0)["message"]["content"], "Hel");
        assert_eq!(c(1)["message"]["content"], "Hello");
        assert_eq!(c(2)["message"]["content"], "Hello");
        assert_eq!(c(2)["finish_reason"], "stop");
        assert_eq!(c(1)["finish_reason"], "null");
    }
}
