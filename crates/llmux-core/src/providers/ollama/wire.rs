//! Ollama's request bodies: `/api/chat` and `/api/generate` (model, stream, messages or prompt,
//! tools, format, think, `options`) and `/api/embed`; `extra` split between top-level fields
//! and `options`.

use std::borrow::Cow;

use serde::Serialize;
use serde_json::{Map, Value};

use super::OPTION_NAMES;
use crate::providers::body::Extra;
use crate::providers::openai_compat::wire::ToolSpec;

/// `/api/chat` or `/api/generate`.
#[derive(Debug, Default, Serialize)]
pub struct ChatBody<'a> {
    /// The model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<&'a str>,
    /// Always sent: the server streams by default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// `/api/generate`: the prompt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// `/api/generate`: the system text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// `/api/generate`: base64 images.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub images: Option<Vec<&'a str>>,
    /// `/api/chat`: the conversation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<ChatMessage<'a>>>,
    /// `/api/chat`: functions (OpenAI shape).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<ToolSpec<'a>>>,
    /// `"json"` or a JSON schema.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<Format<'a>>,
    /// Thinking on or off, or its level.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub think: Option<Think>,
    /// Sampling options.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<Options<'a>>,
    /// Top-level vendor fields from `extra` (`keep_alive`, `raw`…).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `format`.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Format<'a> {
    /// `"json"`.
    Json(&'static str),
    /// A JSON schema.
    Schema(&'a Value),
}

/// One `/api/chat` message.
#[derive(Debug, Serialize)]
pub struct ChatMessage<'a> {
    /// Role.
    pub role: &'static str,
    /// Text.
    pub content: Cow<'a, str>,
    /// Base64 images.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub images: Option<Vec<&'a str>>,
    /// The assistant's calls (arguments as objects).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallSpec<'a>>>,
    /// The function a tool result answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_name: Option<&'a str>,
}

/// `tool_calls[]`.
#[derive(Debug, Serialize)]
pub struct ToolCallSpec<'a> {
    /// Name and arguments.
    pub function: FunctionCallSpec<'a>,
}

/// `tool_calls[].function`.
#[derive(Debug, Serialize)]
pub struct FunctionCallSpec<'a> {
    /// Function name.
    pub name: &'a str,
    /// Arguments object.
    pub arguments: Value,
}

/// `options`.
#[derive(Debug, Default, Serialize)]
pub struct Options<'a> {
    /// Temperature.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Top-k.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    /// Output cap (`max_tokens`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_predict: Option<u32>,
    /// Seed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Stop sequences.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop: Option<&'a [String]>,
    /// Repetition penalty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repeat_penalty: Option<f64>,
    /// Presence penalty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
    /// Frequency penalty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f64>,
    /// Other option names from `extra`.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Options<'_> {
    fn is_empty(&self) -> bool {
        self.temperature.is_none()
            && self.top_p.is_none()
            && self.top_k.is_none()
            && self.num_predict.is_none()
            && self.seed.is_none()
            && self.stop.is_none()
            && self.repeat_penalty.is_none()
            && self.presence_penalty.is_none()
            && self.frequency_penalty.is_none()
            && self.extra.is_empty()
    }
}

/// A request's `extra`, split: option names, `options.<name>` keys and an `options` object go
/// into `options`, everything else is a top-level field; `null` removes, as everywhere, and
/// `options: null` drops the options set so far (keys are read in sorted order).
#[derive(Debug, Default)]
pub struct SplitExtra {
    /// Top-level fields (values and removals).
    pub top: Map<String, Value>,
    /// Option fields (values and removals).
    pub options: Map<String, Value>,
    /// Whether `options: null` dropped the typed options.
    pub options_cleared: bool,
}

impl SplitExtra {
    /// Splits `extra`.
    pub fn new(extra: &Map<String, Value>) -> Self {
        let mut s = SplitExtra::default();
        for (k, v) in extra {
            if k == "options" {
                match v {
                    Value::Object(o) => {
                        s.options
                            .extend(o.iter().map(|(k, v)| (k.clone(), v.clone())));
                    }
                    Value::Null => {
                        s.options.clear();
                        s.options_cleared = true;
                    }
                    other => {
                        s.top.insert(k.clone(), other.clone());
                    }
                }
            } else if let Some(name) = k.strip_prefix("options.") {
                s.options.insert(name.to_owned(), v.clone());
            } else if OPTION_NAMES.contains(&k.as_str()) {
                s.options.insert(k.clone(), v.clone());
            } else {
                s.top.insert(k.clone(), v.clone());
            }
        }
        s
    }

    /// The options object: the typed options (unless dropped) under the `extra` ones, `None`
    /// when empty. A non-object `extra.options` is sent instead only when nothing else is.
    pub fn options<'a>(&self, typed: Options<'a>) -> Option<Options<'a>> {
        let ox = Extra::new(&self.options);
        let typed = if self.options_cleared {
            Options::default()
        } else {
            typed
        };
        let o = Options {
            temperature: ox.typed("temperature", typed.temperature),
            top_p: ox.typed("top_p", typed.top_p),
            top_k: ox.typed("top_k", typed.top_k),
            num_predict: ox.typed("num_predict", typed.num_predict),
            seed: ox.typed("seed", typed.seed),
            stop: ox.typed("stop", typed.stop),
            repeat_penalty: ox.typed("repeat_penalty", typed.repeat_penalty),
            presence_penalty: ox.typed("presence_penalty", typed.presence_penalty),
            frequency_penalty: ox.typed("frequency_penalty", typed.frequency_penalty),
            extra: ox.fields(&[]),
        };
        (!o.is_empty()).then_some(o)
    }

    /// The top-level fields to flatten; `options` from `extra` yields to a non-empty options
    /// object.
    pub fn top_fields(&self, has_options: bool) -> Map<String, Value> {
        Extra::new(&self.top).fields(if has_options { &["options"] } else { &[] })
    }
}

/// `/api/embed`.
#[derive(Debug, Serialize)]
pub struct EmbedBody<'a> {
    /// The model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<&'a str>,
    /// The texts (always a list).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<&'a [String]>,
    /// Output dimension.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<u32>,
    /// Options from `extra`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<Options<'a>>,
    /// Top-level vendor fields from `extra`.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `think`: on or off, or a level (`low`, `medium`, `high`).
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(untagged)]
pub enum Think {
    /// On or off.
    On(bool),
    /// A level.
    Level(&'static str),
}
