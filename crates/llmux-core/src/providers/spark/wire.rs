//! Spark's WebSocket frames (PROTOCOLS.md §4.3): the request frame we send, the response
//! frames we parse into events, and the vendor's numeric error codes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Domain, ID};
use crate::codec::Frame;
use crate::error::{Error, ErrorKind, Result};
use crate::providers::body::Extra;
use crate::providers::openai_compat::describe;
use crate::providers::StreamParser;
use crate::stream::StreamEvent;
use crate::types::*;

/// Longest `header.uid` Spark accepts.
pub const MAX_UID_CHARS: usize = 32;

fn unsupported(what: &str) -> Error {
    Error::unsupported(format!("spark (WebSocket API) does not accept {what}")).with_provider(ID)
}

fn invalid(msg: String) -> Error {
    Error::invalid_request(msg).with_provider(ID)
}

fn message_text(i: usize, m: &Message) -> Result<std::borrow::Cow<'_, str>> {
    if m.content.has_images() {
        return Err(unsupported("image inputs"));
    }
    if !m.tool_calls.is_empty() || m.role == Role::Tool {
        return Err(unsupported(&format!(
            "tool calls or tool results in the conversation (messages[{i}]); it has no tool role — use spark-http"
        )));
    }
    Ok(m.content.text())
}

/// The request frame: `header`, `parameter.chat`, `payload`.
#[derive(Debug, Serialize)]
pub struct RequestFrame<'a> {
    /// App id and user id.
    pub header: FrameHeader<'a>,
    /// `{"chat": …}`.
    pub parameter: FrameParameter<'a>,
    /// The conversation and functions.
    pub payload: FramePayload<'a>,
}

/// `header`.
#[derive(Debug, Serialize)]
pub struct FrameHeader<'a> {
    /// The app id.
    pub app_id: &'a str,
    /// The end-user id (`user`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<&'a str>,
}

/// `parameter`.
#[derive(Debug, Serialize)]
pub struct FrameParameter<'a> {
    /// The chat options.
    pub chat: ChatParameter<'a>,
}

/// `parameter.chat`; `extra` fields go here (`chat_id`, `auditing`…).
#[derive(Debug, Serialize)]
pub struct ChatParameter<'a> {
    /// The domain (model).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<&'a str>,
    /// Temperature, (0, 1].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Output cap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Top-k, 1 to 6.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    /// Web search.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools: Option<[SearchTool; 1]>,
    /// Vendor fields from `extra`.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `{"type": "web_search", "web_search": {"enable": …}}`.
#[derive(Debug, Serialize)]
pub struct SearchTool {
    /// Always `web_search`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// On or off.
    pub web_search: SearchSwitch,
}

/// `web_search`.
#[derive(Debug, Serialize)]
pub struct SearchSwitch {
    /// Search on or off.
    pub enable: bool,
}

/// `payload`.
#[derive(Debug, Serialize)]
pub struct FramePayload<'a> {
    /// `{"text": [messages]}`.
    pub message: TextList<TextMessage<'a>>,
    /// `{"text": [functions]}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub functions: Option<TextList<FunctionSpec<'a>>>,
}

/// `{"text": […]}`.
#[derive(Debug, Serialize)]
pub struct TextList<T> {
    /// The items.
    pub text: Vec<T>,
}

/// One message.
#[derive(Debug, Serialize)]
pub struct TextMessage<'a> {
    /// `system`, `user` or `assistant`.
    pub role: &'static str,
    /// The text.
    pub content: std::borrow::Cow<'a, str>,
}

/// One function.
#[derive(Debug, Serialize)]
pub struct FunctionSpec<'a> {
    /// Name.
    pub name: &'a str,
    /// What it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<&'a str>,
    /// JSON Schema of the arguments.
    pub parameters: &'a Value,
}

/// Builds the request frame for `domain` (pure; the vectors compare it as a JSON value).
pub fn request_frame<'a>(
    app_id: &'a str,
    domain: &'a Domain,
    req: &'a ChatRequest,
) -> Result<RequestFrame<'a>> {
    req.validate_for(domain.name)
        .map_err(|e| e.with_provider(ID))?;
    if let Some(uid) = &req.user {
        if uid.chars().count() > MAX_UID_CHARS {
            return Err(invalid(format!(
                "`user` must be at most {MAX_UID_CHARS} characters for Spark, got {}",
                uid.chars().count()
            )));
        }
    }
    if let Some(t) = req.temperature {
        if !(t > 0.0 && t <= 1.0) {
            return Err(invalid(format!(
                "`temperature` must be in (0, 1] for Spark, got {t}"
            )));
        }
    }
    if let Some(m) = req.max_tokens {
        if m > domain.max_output {
            return Err(invalid(format!(
                "`max_tokens` must be between 1 and {} for Spark `{}`, got {m}",
                domain.max_output, domain.name
            )));
        }
    }
    if let Some(k) = req.top_k {
        if !(1..=6).contains(&k) {
            return Err(invalid(format!(
                "`top_k` must be between 1 and 6 for Spark, got {k}"
            )));
        }
    }
    let rejected = [
        ("`top_p`", req.top_p.is_some()),
        ("`stop`", !req.stop.is_empty()),
        ("`seed`", req.seed.is_some()),
        ("`presence_penalty`", req.presence_penalty.is_some()),
        ("`frequency_penalty`", req.frequency_penalty.is_some()),
        ("`repetition_penalty`", req.repetition_penalty.is_some()),
        ("`n` above 1", req.n.is_some_and(|n| n > 1)),
        ("`parallel_tool_calls`", req.parallel_tool_calls.is_some()),
        ("`thinking`", req.thinking.is_some_and(|t| !t.is_empty())),
        (
            "a JSON `response_format`",
            matches!(
                req.response_format,
                Some(ResponseFormat::JsonObject | ResponseFormat::JsonSchema { .. })
            ),
        ),
        (
            "a `tool_choice` other than auto",
            matches!(&req.tool_choice, Some(c) if *c != ToolChoice::Auto),
        ),
    ];
    if let Some((what, _)) = rejected.iter().find(|(_, set)| *set) {
        return Err(unsupported(what));
    }
    let ex = Extra::new(&req.extra);
    let chat = ChatParameter {
        domain: ex.typed("domain", Some(domain.name)),
        temperature: ex.typed("temperature", req.temperature),
        max_tokens: ex.typed("max_tokens", req.max_tokens),
        top_k: ex.typed("top_k", req.top_k),
        tools: ex.typed(
            "tools",
            req.enable_search.map(|enable| {
                [SearchTool {
                    kind: "web_search",
                    web_search: SearchSwitch { enable },
                }]
            }),
        ),
        extra: ex.fields(&[]),
    };

    let mut text = Vec::with_capacity(req.messages.len());
    for (i, m) in req.messages.iter().enumerate() {
        if m.role == Role::System && i != 0 {
            return Err(invalid(format!(
                "messages[{i}]: Spark takes one system message, and only as the first message"
            )));
        }
        text.push(TextMessage {
            role: m.role.as_str(),
            content: message_text(i, m)?,
        });
    }
    let functions = (!req.tools.is_empty()).then(|| TextList {
        text: req
            .tools
            .iter()
            .map(|t| FunctionSpec {
                name: &t.name,
                description: t.description.as_deref(),
                parameters: &t.parameters,
            })
            .collect(),
    });
    Ok(RequestFrame {
        header: FrameHeader {
            app_id,
            uid: req.user.as_deref(),
        },
        parameter: FrameParameter { chat },
        payload: FramePayload {
            message: TextList { text },
            functions,
        },
    })
}

/// The kind a Spark error code means (PROTOCOLS.md §4.3; the table is in docs/providers.md).
pub fn code_kind(code: i64) -> ErrorKind {
    match code {
        10013 | 10014 | 10019 | 10021 => ErrorKind::ContentFiltered,
        11200 | 11201 => ErrorKind::QuotaExhausted,
        11202 | 11203 | 10006 | 10007 | 10110 => ErrorKind::RateLimited,
        10907 => ErrorKind::ContextLengthExceeded,
        10003 | 10004 | 10005 | 10163 => ErrorKind::InvalidRequest,
        10015 | 10016 => ErrorKind::PermissionDenied,
        _ => ErrorKind::UpstreamServer,
    }
}

/// The error for a non-zero Spark `code` (in a frame, a handshake body or an HTTP 200 body).
pub fn code_error(id: &'static str, code: i64, message: &str, sid: Option<&str>) -> Error {
    let kind = code_kind(code);
    Error::new(kind, describe(kind, message))
        .with_provider(id)
        .with_code(code.to_string())
        .with_request_id(sid.filter(|s| !s.is_empty()).map(str::to_owned))
}

#[derive(Debug, Default, Deserialize)]
struct WireFrame {
    #[serde(default)]
    header: WireHeader,
    #[serde(default)]
    payload: Option<WirePayload>,
}

#[derive(Debug, Default, Deserialize)]
struct WireHeader {
    #[serde(default)]
    code: i64,
    #[serde(default)]
    message: String,
    #[serde(default)]
    sid: String,
    #[serde(default)]
    status: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
struct WirePayload {
    #[serde(default)]
    choices: Option<WireChoices>,
    #[serde(default)]
    usage: Option<WireUsageOuter>,
}

#[derive(Debug, Default, Deserialize)]
struct WireChoices {
    #[serde(default)]
    status: Option<i64>,
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default)]
    text: Vec<WireText>,
}

#[derive(Debug, Default, Deserialize)]
struct WireText {
    #[serde(default)]
    content: String,
    #[serde(default)]
    reasoning_content: String,
    #[serde(default)]
    function_call: Option<WireFunctionCall>,
}

#[derive(Debug, Default, Deserialize)]
struct WireFunctionCall {
    #[serde(default)]
    name: String,
    #[serde(default)]
    arguments: Value,
}

#[derive(Debug, Default, Deserialize)]
struct WireUsageOuter {
    #[serde(default)]
    text: WireUsage,
}

#[derive(Debug, Default, Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    total_tokens: Option<u64>,
}

/// Events of one frame, held until the frames before it (by `seq`) have been seen.
#[derive(Debug, Default)]
struct Pending {
    reasoning: String,
    text: String,
    calls: Vec<(String, String)>,
}

/// Turns Spark response frames into events: text in `seq` order, one tool call per
/// `function_call`, usage once at the end, and `header.code != 0` as an error.
#[derive(Debug, Default)]
pub struct SparkStreamParser {
    started: bool,
    done: bool,
    sid: String,
    next_seq: Option<u64>,
    arrival: u64,
    pending: BTreeMap<u64, Pending>,
    usage: Option<Usage>,
    calls: u32,
}

impl SparkStreamParser {
    /// A parser for one answer.
    pub fn new() -> Self {
        Self::default()
    }

    fn flush(&mut self, out: &mut Vec<StreamEvent>) {
        while let Some(next) = self.next_seq {
            let Some(p) = self.pending.remove(&next) else {
                break;
            };
            self.next_seq = Some(next + 1);
            if !p.reasoning.is_empty() {
                out.push(StreamEvent::ReasoningDelta { text: p.reasoning });
            }
            if !p.text.is_empty() {
                out.push(StreamEvent::TextDelta { text: p.text });
            }
            for (name, arguments) in p.calls {
                let index = self.calls;
                self.calls += 1;
                let id = if self.sid.is_empty() {
                    format!("call_{index}")
                } else {
                    format!("call_{}_{index}", self.sid)
                };
                out.push(StreamEvent::ToolCallDelta {
                    index,
                    id: Some(id),
                    name: Some(name),
                    arguments,
                });
            }
        }
    }
}

impl StreamParser for SparkStreamParser {
    fn on_frame(&mut self, frame: &Frame, out: &mut Vec<StreamEvent>) -> Result<()> {
        let data = frame.data.trim();
        if data.is_empty() {
            return Ok(());
        }
        if self.done {
            return Err(Error::protocol("spark sent a frame after the last one").with_provider(ID));
        }
        let f: WireFrame = serde_json::from_str(data).map_err(|e| {
            Error::protocol("spark sent a malformed frame")
                .with_provider(ID)
                .with_source(e)
        })?;
        if f.header.code != 0 {
            return Err(code_error(
                ID,
                f.header.code,
                &f.header.message,
                Some(&f.header.sid),
            ));
        }
        if !self.started {
            self.started = true;
            self.sid.clone_from(&f.header.sid);
            let sid = (!f.header.sid.is_empty()).then(|| f.header.sid.clone());
            out.push(StreamEvent::Started {
                id: f.header.sid.clone(),
                model: String::new(),
                request_id: sid,
            });
        }
        let mut last = f.header.status == Some(2);
        if let Some(payload) = f.payload {
            if let Some(u) = payload.usage {
                let u = u.text;
                self.usage = Some(Usage {
                    total_tokens: u
                        .total_tokens
                        .unwrap_or(u.prompt_tokens.saturating_add(u.completion_tokens)),
                    ..Usage::new(u.prompt_tokens, u.completion_tokens)
                });
            }
            if let Some(choices) = payload.choices {
                last |= choices.status == Some(2);
                let seq = choices.seq.unwrap_or(self.arrival);
                // `seq + 1` must stay in range here and in `flush`.
                if seq == u64::MAX {
                    return Err(Error::protocol(format!(
                        "spark sent frame seq {seq}, out of range"
                    ))
                    .with_provider(ID));
                }
                self.arrival = seq + 1;
                let next = *self.next_seq.get_or_insert(seq);
                if seq < next || self.pending.contains_key(&seq) {
                    return Err(Error::protocol(format!("spark repeated frame seq {seq}"))
                        .with_provider(ID));
                }
                let mut p = Pending::default();
                for t in choices.text {
                    p.reasoning.push_str(&t.reasoning_content);
                    match t.function_call {
                        Some(fc) => {
                            let args = match fc.arguments {
                                Value::String(s) => s,
                                Value::Null => String::new(),
                                other => other.to_string(),
                            };
                            p.calls.push((fc.name, args));
                            p.text.push_str(&t.content);
                        }
                        None => p.text.push_str(&t.content),
                    }
                }
                self.pending.insert(seq, p);
            }
        }
        self.flush(out);
        if last {
            if let Some(missing) = self.next_seq.filter(|_| !self.pending.is_empty()) {
                return Err(Error::protocol(format!(
                    "spark's last frame arrived but frame seq {missing} never did"
                ))
                .with_provider(ID));
            }
            self.done = true;
        }
        Ok(())
    }

    fn is_done(&self) -> bool {
        self.done
    }

    fn finish(&mut self, out: &mut Vec<StreamEvent>) -> Result<()> {
        if !self.done {
            return Err(Error::protocol(
                "the spark socket closed before the last frame (status 2)",
            )
            .with_provider(ID));
        }
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
        let reason = if self.calls > 0 {
            FinishReason::ToolCalls
        } else {
            FinishReason::Stop
        };
        out.push(StreamEvent::Finished { reason });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(json: &str) -> Frame {
        Frame::data(json.to_owned())
    }

    #[test]
    fn issue_13_fuzz_frame_seq_at_u64_max_is_an_error() {
        // `seq: u64::MAX` overflowed `seq + 1` (a panic with overflow checks).
        let mut p = SparkStreamParser::new();
        let mut out = Vec::new();
        let err = p
            .on_frame(
                &frame(r#"{"header":{"code":0,"message":"Success","sid":"s","status":1},"payload":{"choices":{"status":1,"seq":18446744073709551615,"text":[{"content":"hi","role":"assistant","index":0}]}}}"#),
                &mut out,
            )
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UpstreamProtocol, "{err:?}");
    }

    #[test]
    fn issue_13_fuzz_usage_without_total_saturates() {
        // `prompt_tokens: u64::MAX` without `total_tokens` overflowed the computed total.
        let mut p = SparkStreamParser::new();
        let mut out = Vec::new();
        p.on_frame(
            &frame(r#"{"header":{"code":0,"message":"Success","sid":"s","status":2},"payload":{"choices":{"status":2,"seq":0,"text":[{"content":"hi","role":"assistant","index":0}]},"usage":{"text":{"prompt_tokens":18446744073709551615,"completion_tokens":1}}}}"#),
            &mut out,
        )
        .unwrap();
        p.finish(&mut out).unwrap();
        let usage = out.iter().find_map(|e| match e {
            StreamEvent::Usage(u) => Some(*u),
            _ => None,
        });
        assert_eq!(usage.map(|u| u.total_tokens), Some(u64::MAX));
    }
}
