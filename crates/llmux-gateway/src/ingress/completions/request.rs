//! `POST /v1/completions` bodies → [`ChatRequest`].
//!
//! The prompt becomes one user message, sent as a single-turn prompt
//! ([`InputStyle::Prompt`]: DashScope's `input.prompt`, Ollama's `/api/generate`; every other
//! vendor gets the one message). `max_tokens` defaults to 16, as the legacy API's does (that default is
//! advisory: an upstream without an output cap is sent none; a `max_tokens` the client sets is
//! a cap, refused by such an upstream).
//! What the gateway cannot do honestly is refused with a 400 naming the field: several
//! prompts or token-id prompts, `n` or `best_of` above 1, `echo`, `logprobs`, `suffix`,
//! `logit_bias`.

use llmux_core::{ChatRequest, ErrorKind, InputStyle, Message};
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::ingress::openai::request::Stop;

/// The legacy API's `max_tokens` when a request sets none.
pub const DEFAULT_MAX_TOKENS: u32 = 16;

/// What the request asks of the response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompletionOptions {
    /// `stream: true`.
    pub stream: bool,
    /// `stream_options.include_usage: true`.
    pub include_usage: bool,
}

/// A `POST /v1/completions` body, as the legacy Completions API defines it. Fields not listed
/// here are ignored.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"model": "gpt-4o-mini", "prompt": "Say this is a test", "max_tokens": 7}))]
pub(crate) struct CompletionRequest {
    /// The public model name.
    #[schema(min_length = 1)]
    model: String,
    /// One prompt: a string (or a list holding one string).
    #[schema(value_type = String)]
    prompt: Value,
    /// At most this many tokens (default 16).
    #[schema(minimum = 1)]
    #[serde(default)]
    max_tokens: Option<u32>,
    #[schema(minimum = 0, maximum = 2)]
    #[serde(default)]
    temperature: Option<f64>,
    #[schema(exclusive_minimum = 0, maximum = 1)]
    #[serde(default)]
    top_p: Option<f64>,
    /// One completion only: at most 1.
    #[schema(minimum = 1, maximum = 1)]
    #[serde(default)]
    n: Option<u32>,
    #[serde(default)]
    stop: Option<Stop>,
    /// Answer as server-sent events.
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<crate::ingress::openai::request::StreamOptions>,
    #[schema(minimum = -2, maximum = 2)]
    #[serde(default)]
    presence_penalty: Option<f64>,
    #[schema(minimum = -2, maximum = 2)]
    #[serde(default)]
    frequency_penalty: Option<f64>,
    #[schema(minimum = 0)]
    #[serde(default)]
    seed: Option<i64>,
    #[serde(default)]
    user: Option<String>,
    /// Not supported above 1.
    #[schema(minimum = 1, maximum = 1)]
    #[serde(default)]
    best_of: Option<u32>,
    /// Not supported: must be absent or false.
    #[serde(default)]
    echo: Option<bool>,
    /// Not supported: must be absent or null.
    #[serde(default)]
    #[schema(value_type = Option<u32>)]
    logprobs: Option<Value>,
    /// Not supported: must be absent, null or empty.
    #[serde(default)]
    suffix: Option<String>,
    /// Not supported: must be absent, null or empty.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    logit_bias: Option<Value>,
}

fn unsupported(field: &str, message: &str) -> ApiError {
    ApiError::new(ErrorKind::Unsupported, message.to_owned()).param(field)
}

/// The one prompt of `prompt`.
fn prompt(v: Value) -> Result<String, ApiError> {
    let bad =
        || ApiError::invalid("`prompt` must be a string or a list of one string").param("prompt");
    match v {
        Value::String(s) => Ok(s),
        Value::Array(mut items) => match items.len() {
            0 => Err(ApiError::invalid("`prompt` must not be an empty list").param("prompt")),
            1 => match items.pop() {
                Some(Value::String(s)) => Ok(s),
                Some(Value::Number(_) | Value::Array(_)) => Err(unsupported(
                    "prompt",
                    "token-id prompts are not supported: send the prompt as text",
                )),
                _ => Err(bad()),
            },
            _ if items.iter().all(Value::is_number) => Err(unsupported(
                "prompt",
                "token-id prompts are not supported: send the prompt as text",
            )),
            _ => Err(unsupported(
                "prompt",
                "one prompt per request: this gateway does not batch several prompts",
            )),
        },
        _ => Err(bad()),
    }
}

/// Parses and validates a legacy completion request.
pub fn decode_completion(body: &[u8]) -> Result<(ChatRequest, CompletionOptions), ApiError> {
    let w: CompletionRequest = crate::ingress::openai::from_json(body)?;
    if w.best_of.is_some_and(|b| b > 1) {
        return Err(unsupported(
            "best_of",
            "`best_of` above 1 is not supported by this gateway",
        ));
    }
    if w.echo == Some(true) {
        return Err(unsupported(
            "echo",
            "`echo` is not supported by this gateway",
        ));
    }
    if w.logprobs.as_ref().is_some_and(|v| !v.is_null()) {
        return Err(unsupported(
            "logprobs",
            "`logprobs` is not supported by this gateway",
        ));
    }
    if w.suffix.as_deref().is_some_and(|s| !s.is_empty()) {
        return Err(unsupported(
            "suffix",
            "`suffix` (insertion) is not supported by this gateway",
        ));
    }
    if w.logit_bias
        .as_ref()
        .is_some_and(|v| !v.is_null() && !v.as_object().is_some_and(|m| m.is_empty()))
    {
        return Err(unsupported(
            "logit_bias",
            "`logit_bias` is not supported by this gateway",
        ));
    }
    let seed = match w.seed {
        Some(s) if s < 0 => {
            return Err(ApiError::invalid("`seed` must not be negative").param("seed"))
        }
        Some(s) => Some(s.unsigned_abs()),
        None => None,
    };
    let options = CompletionOptions {
        stream: w.stream.unwrap_or(false),
        include_usage: w
            .stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false),
    };
    let req = ChatRequest {
        model: w.model,
        messages: vec![Message::user(prompt(w.prompt)?)],
        input_style: InputStyle::Prompt,
        max_tokens: Some(w.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS)),
        // The legacy default is a ceiling the client did not choose: an upstream without an
        // output cap is sent none. A cap the client set is a cap.
        max_tokens_advisory: w.max_tokens.is_none(),
        temperature: w.temperature,
        top_p: w.top_p,
        n: w.n,
        stop: w.stop.map(Stop::into_vec).unwrap_or_default(),
        presence_penalty: w.presence_penalty,
        frequency_penalty: w.frequency_penalty,
        seed,
        user: w.user,
        stream_usage: Some(true),
        ..ChatRequest::default()
    };
    crate::ingress::openai::request::validate(&req)?;
    Ok((req, options))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn decode(v: serde_json::Value) -> Result<(ChatRequest, CompletionOptions), ApiError> {
        decode_completion(&serde_json::to_vec(&v).unwrap())
    }

    #[test]
    fn every_field_maps_and_max_tokens_defaults_to_16() {
        let (r, o) = decode(serde_json::json!({
            "model": "m", "prompt": ["Say hi"], "temperature": 0.2, "top_p": 0.5, "n": 1,
            "stop": "\n", "stream": true, "stream_options": {"include_usage": true},
            "presence_penalty": 0.1, "frequency_penalty": 0.3, "seed": 4, "user": "u",
            "best_of": 1, "echo": false, "logprobs": null, "suffix": "", "logit_bias": {}
        }))
        .unwrap();
        assert!(o.stream && o.include_usage);
        assert_eq!(r.messages, vec![Message::user("Say hi")]);
        assert_eq!(r.input_style, InputStyle::Prompt);
        assert_eq!(r.max_tokens, Some(DEFAULT_MAX_TOKENS));
        assert!(r.max_tokens_advisory);
        assert_eq!(
            (r.temperature, r.top_p, r.n),
            (Some(0.2), Some(0.5), Some(1))
        );
        assert_eq!(r.stop, vec!["\n"]);
        assert_eq!(
            (r.presence_penalty, r.frequency_penalty, r.seed),
            (Some(0.1), Some(0.3), Some(4))
        );
        assert_eq!(r.user.as_deref(), Some("u"));
        let (r, o) =
            decode(serde_json::json!({"model": "m", "prompt": "x", "max_tokens": 5})).unwrap();
        assert_eq!(r.max_tokens, Some(5));
        assert!(!r.max_tokens_advisory);
        assert!(!o.stream && !o.include_usage);
    }

    #[test]
    fn what_cannot_be_done_is_refused_naming_the_field() {
        for (extra, field) in [
            (serde_json::json!({"prompt": ["a", "b"]}), "prompt"),
            (serde_json::json!({"prompt": [1, 2, 3]}), "prompt"),
            (serde_json::json!({"prompt": [[1, 2]]}), "prompt"),
            (serde_json::json!({"prompt": []}), "prompt"),
            (serde_json::json!({"prompt": 5}), "prompt"),
            (serde_json::json!({"best_of": 2}), "best_of"),
            (serde_json::json!({"echo": true}), "echo"),
            (serde_json::json!({"logprobs": 0}), "logprobs"),
            (serde_json::json!({"suffix": "end"}), "suffix"),
            (
                serde_json::json!({"logit_bias": {"50256": -100}}),
                "logit_bias",
            ),
            (serde_json::json!({"n": 2}), "n"),
            (serde_json::json!({"seed": -1}), "seed"),
        ] {
            let mut v = serde_json::json!({"model": "m", "prompt": "x"});
            v.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            let e = decode(v).unwrap_err();
            assert_eq!(e.param.as_deref(), Some(field), "{extra}: {}", e.message);
        }
        let e = decode_completion(br#"{"model":"m"}"#).unwrap_err();
        assert!(e.message.contains("prompt"), "{}", e.message);
    }
}
