//! Chat-template overhead: how many tokens a message costs beyond its text, per vendor format.
//!
//! - [`ChatTemplate::OpenAi`]: OpenAI's documented accounting for chat models (the cookbook's
//!   `num_tokens_from_messages`): 3 tokens per message, plus the tokens of the role and of every
//!   field value, plus 1 when `name` is set, plus 3 for the reply priming
//!   (`<|start|>assistant<|message|>`). Tool calls and tool definitions are not documented by
//!   OpenAI; we count the call's id, name and arguments plus 3, and the tools' JSON plus 3.
//! - [`ChatTemplate::ChatMl`]: Qwen's ChatML, counted by rendering each message as
//!   `<|im_start|>{role}\n{content}<|im_end|>\n` and tokenizing it with special tokens allowed;
//!   the reply priming is `<|im_start|>assistant\n` (3 tokens). Each rendered message starts and
//!   ends at a special token, so the count of a conversation is exactly the sum of its
//!   messages' counts. Tool calls and results use the Qwen2.5 Hermes format (`<tool_call>`,
//!   `<tool_response>` inside a `user` turn); tools go in the system prompt's `# Tools` block.
//! - [`ChatTemplate::Estimate`]: 4 tokens per message, 3 for the priming, text through
//!   [`crate::tokens::estimate_text`].
//!
//! Images are not tokenized: each costs [`IMAGE_TOKENS`] (a 1024×1024 high-detail image on
//! OpenAI). The vendor's reported `Usage` remains the ground truth.

use crate::types::{Content, ContentPart, Message, Role, Tool};

/// Tokens charged for one image part, whatever its size.
pub const IMAGE_TOKENS: u64 = 765;

/// Tokens per message under OpenAI's accounting.
pub const OPENAI_TOKENS_PER_MESSAGE: u64 = 3;
/// Extra token when a message carries `name`, under OpenAI's accounting.
pub const OPENAI_TOKENS_PER_NAME: u64 = 1;
/// Reply priming under OpenAI's accounting.
pub const OPENAI_REPLY_PRIMING: u64 = 3;
/// Tokens per message of the fallback estimate.
pub const ESTIMATE_TOKENS_PER_MESSAGE: u64 = 4;
/// Reply priming of the fallback estimate.
pub const ESTIMATE_REPLY_PRIMING: u64 = 3;

/// The text Qwen2.5's template puts before the tool list in the system prompt.
const QWEN_TOOLS_HEAD: &str = "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>";
/// The text Qwen2.5's template puts after the tool list.
const QWEN_TOOLS_TAIL: &str = "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call>";

/// A vendor's chat format, for the per-message overhead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChatTemplate {
    /// OpenAI chat models (documented constants).
    OpenAi,
    /// ChatML as Qwen renders it (counted by rendering).
    ChatMl,
    /// The fallback for vendors without a public tokenizer.
    Estimate,
}

impl ChatTemplate {
    /// A short name for messages (`openai`, `chatml`, `estimate`).
    pub fn name(self) -> &'static str {
        match self {
            ChatTemplate::OpenAi => "openai",
            ChatTemplate::ChatMl => "chatml",
            ChatTemplate::Estimate => "estimate",
        }
    }
}

/// The ChatML rendering of one message (Qwen2.5 conventions).
pub fn render_chatml(m: &Message) -> String {
    let mut s = String::from("<|im_start|>");
    match m.role {
        Role::Tool => {
            s.push_str("user\n<tool_response>\n");
            s.push_str(&m.content.text());
            s.push_str("\n</tool_response>");
        }
        role => {
            s.push_str(role.as_str());
            s.push('\n');
            s.push_str(&m.content.text());
            for call in &m.tool_calls {
                s.push_str("\n<tool_call>\n{\"name\": ");
                s.push_str(&serde_json::Value::String(call.name.clone()).to_string());
                s.push_str(", \"arguments\": ");
                s.push_str(&call.arguments);
                s.push_str("}\n</tool_call>");
            }
        }
    }
    s.push_str("<|im_end|>\n");
    s
}

/// The ChatML reply priming.
pub const CHATML_PRIMING: &str = "<|im_start|>assistant\n";

/// The text tool definitions add to the system prompt under ChatML.
pub fn render_chatml_tools(tools: &[Tool]) -> String {
    if tools.is_empty() {
        return String::new();
    }
    let mut s = String::from(QWEN_TOOLS_HEAD);
    for t in tools {
        s.push('\n');
        s.push_str(&tool_json(t));
    }
    s.push_str(QWEN_TOOLS_TAIL);
    s
}

/// A tool as OpenAI's `{"type":"function","function":{…}}` JSON.
pub fn tool_json(t: &Tool) -> String {
    let mut f = serde_json::Map::new();
    f.insert("name".into(), t.name.clone().into());
    if let Some(d) = &t.description {
        f.insert("description".into(), d.clone().into());
    }
    f.insert("parameters".into(), t.parameters.clone());
    serde_json::json!({"type": "function", "function": f}).to_string()
}

/// Number of image parts of a message.
pub fn images(content: &Content) -> u64 {
    match content {
        Content::Text(_) => 0,
        Content::Parts(parts) => parts
            .iter()
            .filter(|p| matches!(p, ContentPart::ImageUrl { .. }))
            .count() as u64,
    }
}
