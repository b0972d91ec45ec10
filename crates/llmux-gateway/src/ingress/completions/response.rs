//! [`ChatResponse`] → a legacy `text_completion` body, and core [`StreamEvent`]s → its
//! server-sent `text_completion` chunks (the text in `choices[0].text`, a chunk with the
//! `finish_reason`, with `stream_options.include_usage` a `choices: []` chunk with the usage,
//! then `data: [DONE]`). Reasoning is not part of the legacy format and is not sent; the
//! answer's text is.

use bytes::Bytes;
use llmux_core::{ChatResponse, StreamEvent, Usage};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::ingress::openai::response::OpenAiUsage;
use crate::ingress::openai::stream::frame;
use crate::ingress::openai::OpenAiError;
use crate::ingress::StreamEncoder;

/// A `text_completion` body (and, with `stream: true`, each chunk).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct TextCompletion {
    /// `cmpl-` and the request id (the same on every chunk).
    pub id: String,
    /// Always `text_completion`.
    #[schema(value_type = String)]
    pub object: &'static str,
    /// Unix seconds.
    pub created: i64,
    /// The public model name the client asked for.
    pub model: String,
    /// One choice (none on the usage chunk of a stream).
    pub choices: Vec<TextChoice>,
    /// Always `null`.
    pub system_fingerprint: Option<String>,
    /// Token usage: on a whole answer when the upstream reported it, on the last chunk of a
    /// stream with `stream_options.include_usage`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<OpenAiUsage>,
}

/// One choice of a `TextCompletion`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct TextChoice {
    /// The text (on a chunk: the new text).
    pub text: String,
    /// Always 0.
    pub index: u32,
    /// Always `null`.
    #[schema(value_type = Option<Object>)]
    pub logprobs: Option<()>,
    /// `stop`, `length`, `content_filter`, … (`null` on chunks before the last).
    pub finish_reason: Option<String>,
}

/// The `cmpl-` id of a request.
pub fn completion_id(rid: &str) -> String {
    let mut s = String::with_capacity(5 + rid.len());
    s.push_str("cmpl-");
    s.extend(rid.chars().filter(|c| *c != '-'));
    s
}

/// The whole answer.
pub fn encode_completion(
    resp: &ChatResponse,
    id: &str,
    created: i64,
    model: &str,
) -> TextCompletion {
    let choice = resp.choices.first();
    TextCompletion {
        id: id.to_owned(),
        object: "text_completion",
        created,
        model: model.to_owned(),
        choices: vec![TextChoice {
            text: choice
                .map(|c| c.message.content.text().into_owned())
                .unwrap_or_default(),
            index: 0,
            logprobs: None,
            finish_reason: Some(
                choice
                    .and_then(|c| c.finish_reason.as_ref())
                    .map_or("stop", |f| f.as_str())
                    .to_owned(),
            ),
        }],
        system_fingerprint: None,
        usage: resp.usage.as_ref().map(OpenAiUsage::from),
    }
}

/// Turns one response's events into `text_completion` chunks.
#[derive(Debug)]
pub struct CompletionEncoder {
    id: String,
    created: i64,
    model: String,
    include_usage: bool,
    usage: Option<Usage>,
}

impl CompletionEncoder {
    /// An encoder for one response.
    pub fn new(id: String, created: i64, model: String, include_usage: bool) -> Self {
        CompletionEncoder {
            id,
            created,
            model,
            include_usage,
            usage: None,
        }
    }

    fn chunk(&self, choices: Vec<TextChoice>, usage: Option<OpenAiUsage>) -> Bytes {
        frame(&TextCompletion {
            id: self.id.clone(),
            object: "text_completion",
            created: self.created,
            model: self.model.clone(),
            choices,
            system_fingerprint: None,
            usage,
        })
    }

    fn text_chunk(&self, text: &str, finish: Option<&str>) -> Bytes {
        self.chunk(
            vec![TextChoice {
                text: text.to_owned(),
                index: 0,
                logprobs: None,
                finish_reason: finish.map(str::to_owned),
            }],
            None,
        )
    }
}

impl StreamEncoder for CompletionEncoder {
    fn content_type(&self) -> &'static str {
        "text/event-stream"
    }

    fn keepalive(&self) -> bool {
        true
    }

    /// Frames for one event (`Finished` also yields the usage chunk and `[DONE]`).
    fn push(&mut self, ev: &StreamEvent, out: &mut Vec<Bytes>) {
        match ev {
            StreamEvent::TextDelta { text } if !text.is_empty() => {
                out.push(self.text_chunk(text, None));
            }
            StreamEvent::Usage(u) => self.usage = Some(*u),
            StreamEvent::Finished { reason } => {
                out.push(self.text_chunk("", Some(reason.as_str())));
                if self.include_usage {
                    let u = self.usage.unwrap_or_default();
                    out.push(self.chunk(Vec::new(), Some(OpenAiUsage::from(&u))));
                }
                out.push(Bytes::from_static(crate::ingress::openai::stream::DONE));
            }
            // No reasoning and no tool calls in the legacy format (no tools can be sent).
            StreamEvent::Started { .. }
            | StreamEvent::TextDelta { .. }
            | StreamEvent::ReasoningDelta { .. }
            | StreamEvent::ReasoningSignature { .. }
            | StreamEvent::ToolCallDelta { .. } => {}
        }
    }

    /// The final frame for an error after the stream started.
    fn error(&mut self, err: &ApiError) -> Bytes {
        frame(&OpenAiError::from(err))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use llmux_core::{Choice, FinishReason, Message};

    #[test]
    fn a_whole_answer_is_a_text_completion() {
        let mut u = Usage::new(5, 2);
        u.cached_tokens = Some(1);
        let resp = ChatResponse {
            id: "x".into(),
            model: "up".into(),
            created: None,
            choices: vec![Choice {
                index: 0,
                message: Message::assistant("hello"),
                finish_reason: Some(FinishReason::Length),
            }],
            usage: Some(u),
            request_id: None,
        };
        let v = serde_json::to_value(encode_completion(&resp, "cmpl-1", 7, "pub")).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"id": "cmpl-1", "object": "text_completion", "created": 7, "model": "pub",
                "choices": [{"text": "hello", "index": 0, "logprobs": null, "finish_reason": "length"}],
                "system_fingerprint": null,
                "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7,
                    "prompt_tokens_details": {"cached_tokens": 1},
                    "completion_tokens_details": {"reasoning_tokens": 0}}})
        );
    }

    #[test]
    fn a_stream_is_text_chunks_a_finish_usage_and_done() {
        let mut enc = CompletionEncoder::new("cmpl-1".into(), 7, "m".into(), true);
        let mut out = Vec::new();
        for ev in [
            StreamEvent::Started {
                id: "u".into(),
                model: "u".into(),
                request_id: None,
            },
            StreamEvent::ReasoningDelta { text: "hm".into() },
            StreamEvent::TextDelta { text: "Hi".into() },
            StreamEvent::Usage(Usage::new(3, 1)),
            StreamEvent::Finished {
                reason: FinishReason::Stop,
            },
        ] {
            enc.push(&ev, &mut out);
        }
        let text: String = out
            .iter()
            .map(|b| std::str::from_utf8(b).unwrap())
            .collect();
        assert_eq!(
            text,
            concat!(
                "data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":7,\"model\":\"m\",\"choices\":[{\"text\":\"Hi\",\"index\":0,\"logprobs\":null,\"finish_reason\":null}],\"system_fingerprint\":null}\n\n",
                "data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":7,\"model\":\"m\",\"choices\":[{\"text\":\"\",\"index\":0,\"logprobs\":null,\"finish_reason\":\"stop\"}],\"system_fingerprint\":null}\n\n",
                "data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":7,\"model\":\"m\",\"choices\":[],\"system_fingerprint\":null,\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1,\"total_tokens\":4,\"prompt_tokens_details\":{\"cached_tokens\":0},\"completion_tokens_details\":{\"reasoning_tokens\":0}}}\n\n",
                "data: [DONE]\n\n",
            )
        );
        let e = enc.error(&ApiError::new(llmux_core::ErrorKind::Timeout, "late"));
        assert!(std::str::from_utf8(&e)
            .unwrap()
            .starts_with("data: {\"error\":{\"message\":\"late\",\"type\":\"api_error\""));
    }
}
