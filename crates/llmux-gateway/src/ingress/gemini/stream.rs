//! Core [`StreamEvent`]s → `streamGenerateContent` chunks, each a whole
//! `GenerateContentResponse` holding what is new: a chunk per text delta (and per thought
//! delta with `includeThoughts`); function calls are buffered until complete, since Gemini sends
//! each call whole with its `args` object, and go out in the last chunk with the
//! `finishReason` and the `usageMetadata`.
//!
//! With `?alt=sse` each chunk is a `data:` event (no comments: the SDK's reader does not skip
//! them, so no keep-alives either); without it the chunks form one JSON array written as they
//! come (`[`, chunks separated by `,\r\n`, `]`), as Gemini streams without `alt=sse`. An
//! upstream failure after the start is a last chunk holding Google's `{"error": …}` object.

use bytes::Bytes;
use llmux_core::{StreamEvent, ToolCall, Usage};

use super::error::google_error;
use super::response::{
    call_parts, finish_name, Candidate, CandidateContent, GenerateContentResponse, PartOut,
    UsageMetadata,
};
use crate::error::ApiError;
use crate::ingress::{StreamEncoder, StreamedCalls};

/// Turns one answer's events into Gemini stream chunks.
#[derive(Debug)]
pub struct ChunkEncoder {
    sse: bool,
    include_thoughts: bool,
    model: String,
    response_id: String,
    /// A JSON-array stream has written its `[`.
    opened: bool,
    calls: StreamedCalls,
    usage: Option<Usage>,
}

impl ChunkEncoder {
    /// An encoder; `sse` for `?alt=sse`, else a JSON array.
    pub fn new(sse: bool, include_thoughts: bool, model: String, response_id: String) -> Self {
        ChunkEncoder {
            sse,
            include_thoughts,
            model,
            response_id,
            opened: false,
            calls: StreamedCalls::default(),
            usage: None,
        }
    }

    /// One chunk (or the error object) framed for the stream, with `close` ending a JSON array.
    fn frame(&mut self, value: &impl serde::Serialize, close: bool) -> Bytes {
        let mut buf = Vec::with_capacity(256);
        if self.sse {
            buf.extend_from_slice(b"data: ");
        } else if self.opened {
            buf.extend_from_slice(b",\r\n");
        } else {
            buf.push(b'[');
            self.opened = true;
        }
        let start = buf.len();
        if serde_json::to_writer(&mut buf, value).is_err() {
            buf.truncate(start);
            buf.extend_from_slice(
                br#"{"error":{"code":500,"message":"could not encode a chunk","status":"INTERNAL"}}"#,
            );
        }
        if self.sse {
            buf.extend_from_slice(b"\r\n\r\n");
        } else if close {
            buf.extend_from_slice(b"]");
        }
        Bytes::from(buf)
    }

    fn chunk(
        &self,
        parts: Option<Vec<PartOut>>,
        finish: Option<&'static str>,
        finish_message: Option<String>,
        usage: Option<UsageMetadata>,
    ) -> GenerateContentResponse {
        GenerateContentResponse {
            candidates: vec![Candidate {
                content: parts.map(|parts| CandidateContent {
                    role: "model",
                    parts,
                }),
                finish_reason: finish,
                finish_message,
                index: 0,
            }],
            usage_metadata: usage,
            model_version: self.model.clone(),
            response_id: self.response_id.clone(),
        }
    }
}

impl StreamEncoder for ChunkEncoder {
    fn content_type(&self) -> &'static str {
        if self.sse {
            "text/event-stream"
        } else {
            "application/json"
        }
    }

    /// The SDK's reader takes a comment line for a chunk, and a JSON array has no comments.
    fn keepalive(&self) -> bool {
        false
    }

    /// Chunks for one event (`Finished` also ends a JSON array).
    fn push(&mut self, ev: &StreamEvent, out: &mut Vec<Bytes>) {
        match ev {
            // Gemini's thought signatures are its own; another vendor's signature is not one.
            StreamEvent::Started { .. } | StreamEvent::ReasoningSignature { .. } => {}
            StreamEvent::TextDelta { text } => {
                if !text.is_empty() {
                    let c = self.chunk(Some(vec![PartOut::text(text.clone())]), None, None, None);
                    out.push(self.frame(&c, false));
                }
            }
            StreamEvent::ReasoningDelta { text } => {
                if self.include_thoughts && !text.is_empty() {
                    let c =
                        self.chunk(Some(vec![PartOut::thought(text.clone())]), None, None, None);
                    out.push(self.frame(&c, false));
                }
            }
            StreamEvent::ToolCallDelta {
                index,
                id,
                name,
                arguments,
            } => {
                // An index past the bound is ignored (the core refuses such a stream).
                let _ = self
                    .calls
                    .push(*index, id.as_deref(), name.as_deref(), arguments);
            }
            StreamEvent::Usage(u) => self.usage = Some(*u),
            StreamEvent::Finished { reason } => {
                let mut parts = Vec::new();
                let calls: Vec<ToolCall> = std::mem::take(&mut self.calls)
                    .into_vec()
                    .into_iter()
                    .enumerate()
                    .filter(|(_, c)| !c.name.is_empty())
                    .map(|(i, mut c)| {
                        if c.id.is_empty() {
                            c.id = format!("call_{i}");
                        }
                        c
                    })
                    .collect();
                let malformed = call_parts(calls.iter(), &mut parts);
                let finish = if malformed.is_some() {
                    "MALFORMED_FUNCTION_CALL"
                } else {
                    finish_name(Some(reason))
                };
                let usage = self.usage.as_ref().map(UsageMetadata::from);
                let c = self.chunk(
                    (!parts.is_empty()).then_some(parts),
                    Some(finish),
                    malformed,
                    usage,
                );
                out.push(self.frame(&c, true));
            }
        }
    }

    /// The last chunk for an error after the stream started.
    fn error(&mut self, err: &ApiError) -> Bytes {
        self.frame(&google_error(err), true)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use llmux_core::{ErrorKind, FinishReason};
    use serde_json::Value;

    use super::*;

    fn events() -> Vec<StreamEvent> {
        vec![
            crate::ingress::testing::started(),
            StreamEvent::ReasoningDelta { text: "hm".into() },
            StreamEvent::TextDelta { text: "Hi".into() },
            StreamEvent::ToolCallDelta {
                index: 0,
                id: Some("call_a".into()),
                name: Some("f".into()),
                arguments: "{\"c\":".into(),
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                id: None,
                name: None,
                arguments: "1}".into(),
            },
            StreamEvent::Usage(Usage::new(5, 3)),
            StreamEvent::Finished {
                reason: FinishReason::ToolCalls,
            },
        ]
    }

    fn run(sse: bool, thoughts: bool, evs: &[StreamEvent]) -> (ChunkEncoder, String) {
        let mut enc = ChunkEncoder::new(sse, thoughts, "gm".into(), "rid".into());
        let mut out = Vec::new();
        for e in evs {
            enc.push(e, &mut out);
        }
        let body: Vec<u8> = out.iter().flat_map(|b| b.to_vec()).collect();
        (enc, String::from_utf8(body).unwrap())
    }

    fn sse_chunks(body: &str) -> Vec<Value> {
        body.split("\r\n\r\n")
            .filter(|e| !e.is_empty())
            .map(|e| serde_json::from_str(e.strip_prefix("data: ").unwrap()).unwrap())
            .collect()
    }

    #[test]
    fn sse_chunks_carry_text_then_whole_calls_with_the_finish_and_usage() {
        let (enc, body) = run(true, false, &events());
        assert_eq!(enc.content_type(), "text/event-stream");
        let c = sse_chunks(&body);
        assert_eq!(c.len(), 2, "{body}");
        assert_eq!(
            c[0],
            serde_json::json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Hi"}]}, "index": 0}],
                "modelVersion": "gm", "responseId": "rid"})
        );
        let last = &c[1]["candidates"][0];
        assert_eq!(last["finishReason"], "STOP");
        assert_eq!(
            last["content"]["parts"],
            serde_json::json!([{"functionCall": {"id": "call_a", "name": "f", "args": {"c": 1}}}])
        );
        assert_eq!(c[1]["usageMetadata"]["totalTokenCount"], 8);
        assert!(c[0].get("usageMetadata").is_none());
    }

    #[test]
    fn without_alt_sse_the_chunks_are_one_json_array() {
        let (enc, body) = run(false, true, &events());
        assert_eq!(enc.content_type(), "application/json");
        let v: Value = serde_json::from_str(&body).unwrap();
        let a = v.as_array().unwrap();
        assert_eq!(a.len(), 3);
        assert_eq!(
            a[0]["candidates"][0]["content"]["parts"][0],
            serde_json::json!({"text": "hm", "thought": true})
        );
        assert_eq!(a[1]["candidates"][0]["content"]["parts"][0]["text"], "Hi");
        assert_eq!(a[2]["candidates"][0]["finishReason"], "STOP");
    }

    #[test]
    fn a_text_answer_ends_with_a_finish_chunk_without_content() {
        let evs = [
            StreamEvent::TextDelta { text: "Hi".into() },
            StreamEvent::Finished {
                reason: FinishReason::Length,
            },
        ];
        let (_, body) = run(true, false, &evs);
        let c = sse_chunks(&body);
        assert_eq!(c[1]["candidates"][0]["finishReason"], "MAX_TOKENS");
        assert!(c[1]["candidates"][0].get("content").is_none());
        assert!(c[1].get("usageMetadata").is_none());
    }

    #[test]
    fn errors_after_the_start_end_the_stream_in_googles_envelope() {
        let err = ApiError::new(ErrorKind::UpstreamServer, "boom");
        let mut enc = ChunkEncoder::new(true, false, "gm".into(), "rid".into());
        let mut out = Vec::new();
        enc.push(&StreamEvent::TextDelta { text: "Hi".into() }, &mut out);
        out.push(enc.error(&err));
        let body: String = out
            .iter()
            .map(|b| String::from_utf8(b.to_vec()).unwrap())
            .collect();
        let c = sse_chunks(&body);
        assert_eq!(
            c[1],
            serde_json::json!({"error": {"code": 502, "message": "boom", "status": "UNAVAILABLE"}})
        );
        let mut enc = ChunkEncoder::new(false, false, "gm".into(), "rid".into());
        let mut out = Vec::new();
        enc.push(&StreamEvent::TextDelta { text: "Hi".into() }, &mut out);
        out.push(enc.error(&err));
        let body: String = out
            .iter()
            .map(|b| String::from_utf8(b.to_vec()).unwrap())
            .collect();
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v[1]["error"]["status"], "UNAVAILABLE");
        // An error as the very first chunk is still a well-formed array.
        let mut enc = ChunkEncoder::new(false, false, "gm".into(), "rid".into());
        let v: Value = serde_json::from_slice(&enc.error(&err)).unwrap();
        assert_eq!(v[0]["error"]["code"], 502);
    }
}
