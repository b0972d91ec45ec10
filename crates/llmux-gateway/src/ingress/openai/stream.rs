//! Core [`StreamEvent`]s → `chat.completion.chunk` SSE frames (PROTOCOLS §2.4): a role chunk
//! first, content and tool-call deltas, a finish chunk, an optional `choices: []` usage chunk,
//! then `data: [DONE]`. `id`, `created` and `model` are the same on every chunk.

use bytes::Bytes;
use llmux_core::{FinishReason, StreamEvent, Usage};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ApiError;

/// Turns one response's events into SSE frames.
#[derive(Debug)]
pub struct ChunkEncoder {
    id: String,
    created: i64,
    model: String,
    include_usage: bool,
    usage: Option<Usage>,
    started: bool,
    /// `data: {…,"choices":[{"index":0,"delta":{"content":` for this stream: everything
    /// before a text delta's content, serialized once.
    content_head: Vec<u8>,
}

/// What follows a text delta's content on an ordinary chunk, without and with `usage: null`.
const CONTENT_TAIL: &[u8] = b"},\"logprobs\":null,\"finish_reason\":null}]}\n\n";
const CONTENT_TAIL_USAGE: &[u8] =
    b"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n";

/// One `data:` frame of an OpenAI stream: a `chat.completion.chunk`. The stream is a role
/// chunk, content, reasoning and tool-call deltas, a chunk with `finish_reason`, with
/// `stream_options.include_usage` a last chunk with `choices: []` and the `usage`, then
/// `data: [DONE]`. An error after the first chunk is a last `data:` frame holding an
/// `OpenAiError`; `: ping` comment lines keep an idle stream alive.
#[derive(Serialize, ToSchema)]
#[schema(as = ChatCompletionChunk)]
pub(crate) struct Chunk<'a> {
    /// The same on every chunk of a stream.
    id: &'a str,
    /// Always `chat.completion.chunk`.
    #[schema(value_type = String)]
    object: &'static str,
    /// Unix seconds.
    created: i64,
    /// The public model name.
    model: &'a str,
    /// Always `null`.
    system_fingerprint: Option<&'a str>,
    /// One delta, or none on the usage chunk.
    #[schema(value_type = Vec<ChoiceDelta>)]
    choices: &'a [ChoiceDelta<'a>],
    /// Present (and `null` until the usage chunk) only with `stream_options.include_usage`.
    #[serde(skip_serializing_if = "UsageField::skip")]
    #[schema(value_type = Option<super::response::OpenAiUsage>)]
    usage: UsageField,
}

/// `usage` is absent without include_usage, `null` on ordinary chunks with it.
enum UsageField {
    Absent,
    Null,
    Some(serde_json::Value),
}

impl UsageField {
    fn skip(&self) -> bool {
        matches!(self, UsageField::Absent)
    }
}

impl Serialize for UsageField {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            UsageField::Absent | UsageField::Null => s.serialize_none(),
            UsageField::Some(v) => v.serialize(s),
        }
    }
}

/// The choice of a `ChatCompletionChunk`.
#[derive(Serialize, ToSchema)]
pub(crate) struct ChoiceDelta<'a> {
    /// Always 0.
    index: u32,
    /// What is new.
    delta: Delta<'a>,
    /// Always `null`.
    #[schema(value_type = Option<Object>)]
    logprobs: Option<()>,
    /// `null` until the finish chunk.
    finish_reason: Option<&'a str>,
}

/// What a `ChoiceDelta` adds.
#[derive(Serialize, Default, ToSchema)]
pub(crate) struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<ToolCallDelta>>)]
    tool_calls: Option<[ToolCallDelta<'a>; 1]>,
}

/// A piece of a tool call: the first carries `id`, `type` and `name`.
#[derive(Serialize, ToSchema)]
pub(crate) struct ToolCallDelta<'a> {
    index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    kind: Option<&'static str>,
    function: FunctionDelta<'a>,
}

/// The function part of a `ToolCallDelta`.
#[derive(Serialize, ToSchema)]
pub(crate) struct FunctionDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    arguments: &'a str,
}

/// `data: [DONE]`.
pub const DONE: &[u8] = b"data: [DONE]\n\n";

/// An SSE keep-alive comment.
pub const PING: &[u8] = b": ping\n\n";

/// One `data:` frame holding `value` as JSON (an error object if it cannot be serialized).
pub(crate) fn frame(value: &impl Serialize) -> Bytes {
    let mut buf = Vec::with_capacity(256);
    buf.extend_from_slice(b"data: ");
    if serde_json::to_writer(&mut buf, value).is_err() {
        buf.truncate(6);
        buf.extend_from_slice(br#"{"error":{"message":"could not encode a chunk","type":"server_error","param":null,"code":null}}"#);
    }
    buf.extend_from_slice(b"\n\n");
    Bytes::from(buf)
}

impl ChunkEncoder {
    /// An encoder for one response.
    pub fn new(id: String, created: i64, model: String, include_usage: bool) -> Self {
        let mut content_head = Vec::with_capacity(160 + id.len() + model.len());
        content_head.extend_from_slice(b"data: {\"id\":");
        // Strings always serialize.
        let _ = serde_json::to_writer(&mut content_head, &id);
        content_head.extend_from_slice(b",\"object\":\"chat.completion.chunk\",\"created\":");
        content_head.extend_from_slice(created.to_string().as_bytes());
        content_head.extend_from_slice(b",\"model\":");
        let _ = serde_json::to_writer(&mut content_head, &model);
        content_head.extend_from_slice(
            b",\"system_fingerprint\":null,\"choices\":[{\"index\":0,\"delta\":{\"content\":",
        );
        ChunkEncoder {
            id,
            created,
            model,
            include_usage,
            usage: None,
            started: false,
            content_head,
        }
    }

    /// A text delta's chunk: the stream's prefix, the escaped text, the fixed tail. The same
    /// bytes `chunk` would serialize (a test holds them equal), without walking the struct.
    fn content_chunk(&self, text: &str) -> Bytes {
        let tail = if self.include_usage {
            CONTENT_TAIL_USAGE
        } else {
            CONTENT_TAIL
        };
        let mut buf = Vec::with_capacity(self.content_head.len() + text.len() + 8 + tail.len());
        buf.extend_from_slice(&self.content_head);
        let _ = serde_json::to_writer(&mut buf, text);
        buf.extend_from_slice(tail);
        Bytes::from(buf)
    }

    fn chunk(&self, delta: Delta<'_>, finish: Option<&str>) -> Bytes {
        let choices = [ChoiceDelta {
            index: 0,
            delta,
            logprobs: None,
            finish_reason: finish,
        }];
        frame(&Chunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            system_fingerprint: None,
            choices: &choices,
            usage: if self.include_usage {
                UsageField::Null
            } else {
                UsageField::Absent
            },
        })
    }

    fn role_chunk(&mut self, out: &mut Vec<Bytes>) {
        if !self.started {
            self.started = true;
            out.push(self.chunk(
                Delta {
                    role: Some("assistant"),
                    content: Some(""),
                    ..Delta::default()
                },
                None,
            ));
        }
    }

    /// Frames for one event (a `Finished` event also yields the usage chunk and `[DONE]`).
    pub fn push(&mut self, ev: &StreamEvent, out: &mut Vec<Bytes>) {
        match ev {
            StreamEvent::Started { .. } => self.role_chunk(out),
            // The Chat Completions format has no place for a reasoning signature.
            StreamEvent::ReasoningSignature { .. } => {}
            StreamEvent::TextDelta { text } => {
                self.role_chunk(out);
                if !text.is_empty() {
                    out.push(self.content_chunk(text));
                }
            }
            StreamEvent::ReasoningDelta { text } => {
                self.role_chunk(out);
                out.push(self.chunk(
                    Delta {
                        reasoning_content: Some(text),
                        ..Delta::default()
                    },
                    None,
                ));
            }
            StreamEvent::ToolCallDelta {
                index,
                id,
                name,
                arguments,
            } => {
                self.role_chunk(out);
                let first = id.as_deref().is_some_and(|s| !s.is_empty());
                out.push(self.chunk(
                    Delta {
                        tool_calls: Some([ToolCallDelta {
                            index: *index,
                            id: id.as_deref().filter(|s| !s.is_empty()),
                            kind: first.then_some("function"),
                            function: FunctionDelta {
                                name: name.as_deref().filter(|s| !s.is_empty()),
                                arguments,
                            },
                        }]),
                        ..Delta::default()
                    },
                    None,
                ));
            }
            StreamEvent::Usage(u) => self.usage = Some(*u),
            StreamEvent::Finished { reason } => {
                self.role_chunk(out);
                out.push(self.chunk(Delta::default(), Some(finish_str(reason))));
                if self.include_usage {
                    let u = self.usage.unwrap_or_default();
                    out.push(frame(&Chunk {
                        id: &self.id,
                        object: "chat.completion.chunk",
                        created: self.created,
                        model: &self.model,
                        system_fingerprint: None,
                        choices: &[],
                        usage: UsageField::Some(super::response::usage_json(&u)),
                    }));
                }
                out.push(Bytes::from_static(DONE));
            }
        }
    }

    /// The final frame for an error after the stream started.
    pub fn error(&self, err: &ApiError) -> Bytes {
        frame(&super::OpenAiError::from(err))
    }

    /// Usage seen so far.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }
}

fn finish_str(r: &FinishReason) -> &str {
    r.as_str()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn issue_14_text_chunks_are_the_bytes_the_struct_serializes() {
        for include_usage in [false, true] {
            for (id, model) in [("chatcmpl-1", "m"), ("chatcmpl-\"q\"", "qwen/\u{1F600}\\x")] {
                let enc = ChunkEncoder::new(id.into(), -7, model.into(), include_usage);
                for text in [
                    "Hi",
                    "a \"quote\"\n\ttab \\ \u{7}",
                    "中文 \u{1F600}",
                    "</script>",
                ] {
                    let fast = enc.content_chunk(text);
                    let slow = enc.chunk(
                        Delta {
                            content: Some(text),
                            ..Delta::default()
                        },
                        None,
                    );
                    assert_eq!(
                        std::str::from_utf8(&fast).unwrap(),
                        std::str::from_utf8(&slow).unwrap()
                    );
                }
            }
        }
    }

    fn frames(include_usage: bool, evs: &[StreamEvent]) -> Vec<serde_json::Value> {
        let mut enc = ChunkEncoder::new("chatcmpl-1".into(), 7, "m".into(), include_usage);
        let mut out = Vec::new();
        for e in evs {
            enc.push(e, &mut out);
        }
        out.iter()
            .map(|b| {
                let s = std::str::from_utf8(b).unwrap();
                let d = s.strip_prefix("data: ").unwrap().trim_end();
                if d == "[DONE]" {
                    serde_json::Value::String("DONE".into())
                } else {
                    serde_json::from_str(d).unwrap()
                }
            })
            .collect()
    }

    #[test]
    fn chunks_have_role_first_finish_usage_and_done() {
        let evs = [
            StreamEvent::Started {
                id: "x".into(),
                model: "up".into(),
                request_id: None,
            },
            StreamEvent::TextDelta { text: "Hi".into() },
            StreamEvent::ToolCallDelta {
                index: 0,
                id: Some("c".into()),
                name: Some("f".into()),
                arguments: String::new(),
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                id: None,
                name: None,
                arguments: "{}".into(),
            },
            StreamEvent::Usage(Usage::new(3, 2)),
            StreamEvent::Finished {
                reason: FinishReason::ToolCalls,
            },
        ];
        let f = frames(true, &evs);
        assert_eq!(
            f[0]["choices"][0]["delta"],
            serde_json::json!({"role":"assistant","content":""})
        );
        assert!(f[0]["usage"].is_null() && f[0].get("usage").is_some());
        assert_eq!(f[1]["choices"][0]["delta"]["content"], "Hi");
        assert_eq!(
            f[2]["choices"][0]["delta"]["tool_calls"][0]["type"],
            "function"
        );
        assert!(f[3]["choices"][0]["delta"]["tool_calls"][0]
            .get("id")
            .is_none());
        assert_eq!(f[4]["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(f[5]["choices"], serde_json::json!([]));
        assert_eq!(f[5]["usage"]["total_tokens"], 5);
        assert_eq!(f[6], "DONE");
        assert!(f[..6]
            .iter()
            .all(|c| c["id"] == "chatcmpl-1" && c["created"] == 7 && c["model"] == "m"));
        let f = frames(false, &evs);
        assert!(f[0].get("usage").is_none());
        assert_eq!(f.len(), 6);
    }
}
