//! Token counting with the vendors' real tokenizers, offline: OpenAI's `cl100k_base` and
//! `o200k_base`, Qwen's vocabulary from the DashScope SDK, DeepSeek's from its published
//! `tokenizer.json`, and a documented estimate, labelled as one ([`ESTIMATE_DESCRIPTION`],
//! [`Tokenizer::is_exact`]), for models whose vocabulary llmux does not ship: Zhipu GLM (its
//! vocabulary is published only beside the model weights, in no package registry or public source
//! repository), Hunyuan (published in Tencent's source repositories, but under a licence that
//! excludes the EU, the UK and South Korea and binds every recipient to its use policy, which an
//! MIT/Apache-licensed binary cannot pass on), Spark, Pangu, Moonshot, Anthropic and Gemini (no
//! public vocabulary). `vocab/README.md` has the sources and licences.
//!
//! [`Tokenizer::for_model`] picks the tokenizer and chat template for `provider/model`:
//!
//! | provider | model | tokenizer | template |
//! | --- | --- | --- | --- |
//! | `openai` | `gpt-4o*`, `gpt-4.1*`, `gpt-4.5*`, `gpt-5*`, `o1*`, `o3*`, `o4*`, `chatgpt-4o*`, anything unknown | `o200k_base` | OpenAI |
//! | `openai` | `gpt-4*`, `gpt-3.5*`, `text-embedding-3*`, `text-embedding-ada-002` | `cl100k_base` | OpenAI |
//! | `dashscope`, `dashscope-compat` | `qwen*`, `qwq*`, `qvq*` | Qwen | ChatML |
//! | `ollama`, `vllm` | names containing `qwen` | Qwen | ChatML |
//! | `deepseek` | every model | DeepSeek | DeepSeek |
//! | `dashscope`, `dashscope-compat`, `vllm` | `deepseek-v3*`, `deepseek-v4*`, `deepseek-r1*` (after the last `/`), not `*distill*` | DeepSeek | DeepSeek |
//! | `ollama` | `deepseek-v3*`, `deepseek-v4*`, `deepseek-r1:671b*` | DeepSeek | DeepSeek |
//! | any other registered provider or model | | estimate | estimate |
//!
//! Counts of raw text equal the reference tokenizers' exactly (`tests/tokenize_reference.rs`
//! compares them with Python `tiktoken`, the DashScope SDK and Hugging Face `tokenizers` on
//! DeepSeek's `tokenizer.json`); chat overhead follows [`template`]. The estimate is
//! [`crate::tokens::estimate_text`]: ASCII ≈ 4 characters per token, any other character 1 token
//! (CJK text runs at about 1–1.5 characters per token in the vendors' vocabularies, so it
//! over-counts rather than under-counts).

mod bpe;
mod deepseek;
pub mod template;

pub use bpe::{Encoding, ENCODINGS, QWEN_PATTERN, QWEN_SPECIAL_START};
pub use deepseek::{DEEPSEEK_BOS, DEEPSEEK_PATTERN, DEEPSEEK_VOCAB};
pub use template::ChatTemplate;

use crate::error::Result;
use crate::providers;
use crate::tokens::estimate_text;
use crate::types::{ChatRequest, Message, Tool};

/// How [`Tokenizer::describe`] labels the estimate.
pub const ESTIMATE_DESCRIPTION: &str = "ESTIMATE, not an exact count: no tokenizer vocabulary ships for this model (ASCII/4 + 1 per other character)";

/// Counts tokens for one model: an exact encoding or the estimate, plus its chat template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tokenizer {
    encoding: Option<Encoding>,
    template: ChatTemplate,
}

impl Tokenizer {
    /// The tokenizer for `provider/model` (see the module table). An unknown provider is an
    /// error that lists the known ones; a known provider without a public tokenizer gets the
    /// estimate.
    pub fn for_model(addr: &str) -> Result<Tokenizer> {
        let (provider, model) = providers::split_model(addr)?;
        Self::for_provider_model(provider, model)
    }

    /// The tokenizer for `model` served by `provider`.
    pub fn for_provider_model(provider: &str, model: &str) -> Result<Tokenizer> {
        providers::spec(provider)?;
        let m = model.to_ascii_lowercase();
        let pick = match provider {
            "openai" => {
                let cl100k = [
                    "gpt-4",
                    "gpt-3.5",
                    "text-embedding-3",
                    "text-embedding-ada-002",
                ]
                .iter()
                .any(|p| m.starts_with(p))
                    && !["gpt-4o", "gpt-4.1", "gpt-4.5"]
                        .iter()
                        .any(|p| m.starts_with(p));
                let enc = if cl100k {
                    Encoding::Cl100kBase
                } else {
                    Encoding::O200kBase
                };
                Some((enc, ChatTemplate::OpenAi))
            }
            "dashscope" | "dashscope-compat"
                if ["qwen", "qwq", "qvq"].iter().any(|p| m.starts_with(p)) =>
            {
                Some((Encoding::Qwen, ChatTemplate::ChatMl))
            }
            "ollama" | "vllm" if m.contains("qwen") => Some((Encoding::Qwen, ChatTemplate::ChatMl)),
            // DeepSeek serves only its own models; elsewhere only DeepSeek's own weights, not
            // the R1 "distill" models (Qwen and Llama with their own vocabularies) that Ollama's
            // `deepseek-r1` tags other than 671b are.
            "deepseek" => Some((Encoding::DeepSeek, ChatTemplate::DeepSeek)),
            "dashscope" | "dashscope-compat" | "vllm"
                if is_deepseek_v3_family(m.rsplit('/').next().unwrap_or(&m)) =>
            {
                Some((Encoding::DeepSeek, ChatTemplate::DeepSeek))
            }
            "ollama"
                if m.starts_with("deepseek-v3")
                    || m.starts_with("deepseek-v4")
                    || m.starts_with("deepseek-r1:671b") =>
            {
                Some((Encoding::DeepSeek, ChatTemplate::DeepSeek))
            }
            _ => None,
        };
        match pick {
            Some((enc, template)) => Self::exact(enc, template),
            None => Ok(Self::estimate()),
        }
    }

    /// An exact tokenizer (loads the vocabulary now).
    pub fn exact(encoding: Encoding, template: ChatTemplate) -> Result<Tokenizer> {
        encoding.load()?;
        Ok(Tokenizer {
            encoding: Some(encoding),
            template,
        })
    }

    /// The documented estimate.
    pub fn estimate() -> Tokenizer {
        Tokenizer {
            encoding: None,
            template: ChatTemplate::Estimate,
        }
    }

    /// The encoding, when counts are exact.
    pub fn encoding(&self) -> Option<Encoding> {
        self.encoding
    }

    /// The chat template.
    pub fn template(&self) -> ChatTemplate {
        self.template
    }

    /// True when text counts are exact (a real vocabulary), false for the estimate.
    pub fn is_exact(&self) -> bool {
        self.encoding.is_some()
    }

    /// A one-line description (`qwen tokenizer, chatml template`), or
    /// [`ESTIMATE_DESCRIPTION`].
    pub fn describe(&self) -> String {
        match self.encoding {
            Some(e) => format!("{} tokenizer, {} template", e.name(), self.template.name()),
            None => ESTIMATE_DESCRIPTION.to_owned(),
        }
    }

    /// Tokens of raw text, or an error when the tokenizer cannot split it (the reference
    /// tokenizers fail the same way: a run of about a million spaces overflows the
    /// pre-tokenizer's backtracking stack in Python `tiktoken` too).
    pub fn try_count_text(&self, text: &str) -> Result<u64> {
        match self.encoding {
            Some(e) => Ok(e.encode(text)?.len() as u64),
            None => Ok(estimate_text(text)),
        }
    }

    /// Tokens of raw text; where [`try_count_text`](Self::try_count_text) fails, the number of
    /// bytes (an upper bound: a byte-level BPE token covers at least one byte).
    pub fn count_text(&self, text: &str) -> u64 {
        match self.encoding {
            Some(e) => e.encode(text).map_or_else(
                // Byte-level BPE never makes more tokens than bytes: a safe upper bound.
                |_| text.len() as u64,
                |ids| ids.len() as u64,
            ),
            None => estimate_text(text),
        }
    }

    /// Tokens of a rendered template (special tokens allowed).
    fn count_template(&self, e: Encoding, rendered: &str) -> u64 {
        e.encode_template(rendered)
            .map_or(rendered.len() as u64, |ids| ids.len() as u64)
    }

    /// Tokens one message costs in a request, template overhead included.
    pub fn count_message(&self, m: &Message) -> u64 {
        let images = template::images(&m.content) * template::IMAGE_TOKENS;
        match (self.encoding, self.template) {
            (Some(e), ChatTemplate::ChatMl) => {
                self.count_template(e, &template::render_chatml(m)) + images
            }
            (Some(e), ChatTemplate::DeepSeek) => {
                self.count_template(e, &template::render_deepseek_message(m)) + images
            }
            (_, ChatTemplate::OpenAi) => {
                let mut n = template::OPENAI_TOKENS_PER_MESSAGE
                    + self.count_text(m.role.as_str())
                    + self.count_text(&m.content.text());
                if let Some(name) = &m.name {
                    n += template::OPENAI_TOKENS_PER_NAME + self.count_text(name);
                }
                for c in &m.tool_calls {
                    n += 3
                        + self.count_text(&c.id)
                        + self.count_text(&c.name)
                        + self.count_text(&c.arguments);
                }
                if let Some(id) = &m.tool_call_id {
                    n += self.count_text(id);
                }
                n + images
            }
            _ => {
                let mut n =
                    template::ESTIMATE_TOKENS_PER_MESSAGE + estimate_text(&m.content.text());
                if let Some(name) = &m.name {
                    n += 1 + estimate_text(name);
                }
                for c in &m.tool_calls {
                    n += 3 + estimate_text(&c.id) + estimate_text(&c.name);
                    n += estimate_text(&c.arguments);
                }
                if let Some(id) = &m.tool_call_id {
                    n += estimate_text(id);
                }
                n + images
            }
        }
    }

    /// Tokens of the reply priming every request ends with (for DeepSeek also the
    /// `<｜begin▁of▁sentence｜>` every request opens with).
    pub fn reply_priming(&self) -> u64 {
        match (self.encoding, self.template) {
            (Some(e), ChatTemplate::ChatMl) => self.count_template(e, template::CHATML_PRIMING),
            (Some(e), ChatTemplate::DeepSeek) => self.count_template(
                e,
                &format!("{}{}", template::DEEPSEEK_BOS, template::DEEPSEEK_PRIMING),
            ),
            (_, ChatTemplate::OpenAi) => template::OPENAI_REPLY_PRIMING,
            _ => template::ESTIMATE_REPLY_PRIMING,
        }
    }

    /// Tokens the tool definitions add.
    pub fn count_tools(&self, tools: &[Tool]) -> u64 {
        if tools.is_empty() {
            return 0;
        }
        match (self.encoding, self.template) {
            (Some(_), ChatTemplate::ChatMl) => {
                self.count_text(&template::render_chatml_tools(tools))
            }
            (Some(_), _) => {
                3 + tools
                    .iter()
                    .map(|t| self.count_text(&template::tool_json(t)))
                    .sum::<u64>()
            }
            (None, _) => tools
                .iter()
                .map(|t| 3 + estimate_text(&template::tool_json(t)))
                .sum(),
        }
    }

    /// Tokens of a conversation sent as a request: every message plus the reply priming.
    pub fn count_messages(&self, messages: &[Message]) -> u64 {
        messages.iter().map(|m| self.count_message(m)).sum::<u64>() + self.reply_priming()
    }

    /// Prompt tokens of a request: messages, reply priming and tool definitions.
    pub fn count_request(&self, req: &ChatRequest) -> u64 {
        self.count_messages(&req.messages) + self.count_tools(&req.tools)
    }

    /// The longest prefix of `text` that counts at most `max_tokens`.
    pub fn truncate(&self, text: &str, max_tokens: u64) -> String {
        if self.count_text(text) <= max_tokens {
            return text.to_owned();
        }
        // Binary search over character boundaries; counts grow with the prefix up to BPE
        // merges at the cut, so the result is checked again below.
        let bounds: Vec<usize> = text
            .char_indices()
            .map(|(i, _)| i)
            .chain(std::iter::once(text.len()))
            .collect();
        let (mut lo, mut hi) = (0usize, bounds.len() - 1);
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            if self.count_text(&text[..bounds[mid]]) <= max_tokens {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        let mut end = lo;
        while end > 0 && self.count_text(&text[..bounds[end]]) > max_tokens {
            end -= 1;
        }
        text[..bounds[end]].to_owned()
    }
}

/// DeepSeek's own V3/R1/V4 models (`deepseek-v3.2`, `deepseek-r1-0528`), not the R1 distills.
fn is_deepseek_v3_family(model: &str) -> bool {
    ["deepseek-v3", "deepseek-v4", "deepseek-r1"]
        .iter()
        .any(|p| model.starts_with(p))
        && !model.contains("distill")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::ToolCall;

    #[test]
    fn models_pick_their_vendor_tokenizer() {
        let t = |m: &str| Tokenizer::for_model(m).unwrap();
        assert_eq!(
            t("openai/gpt-4o-mini").encoding(),
            Some(Encoding::O200kBase)
        );
        assert_eq!(
            t("openai/gpt-4-turbo").encoding(),
            Some(Encoding::Cl100kBase)
        );
        assert_eq!(t("openai/gpt-4.1").encoding(), Some(Encoding::O200kBase));
        assert_eq!(t("openai/o3-mini").encoding(), Some(Encoding::O200kBase));
        assert_eq!(t("dashscope/qwen-plus").encoding(), Some(Encoding::Qwen));
        assert_eq!(t("dashscope/qwen-plus").template(), ChatTemplate::ChatMl);
        assert_eq!(t("ollama/qwen2.5:7b").encoding(), Some(Encoding::Qwen));
        assert!(!t("zhipu/glm-4-flash").is_exact());
        assert!(!t("hunyuan/hunyuan-lite").is_exact());
        assert!(t("zhipu/glm-4-flash").describe().starts_with("ESTIMATE"));
        for ds in [
            "deepseek/deepseek-chat",
            "deepseek/deepseek-reasoner",
            "dashscope/deepseek-r1",
            "dashscope-compat/deepseek-v3.2",
            "vllm/deepseek-ai/DeepSeek-V3",
            "ollama/deepseek-v3:671b",
            "ollama/deepseek-r1:671b",
        ] {
            assert_eq!(t(ds).encoding(), Some(Encoding::DeepSeek), "{ds}");
            assert_eq!(t(ds).template(), ChatTemplate::DeepSeek, "{ds}");
        }
        // R1 distills are Qwen or Llama underneath, with their own vocabularies.
        assert!(!t("dashscope/deepseek-r1-distill-llama-70b").is_exact());
        assert_ne!(
            t("ollama/deepseek-r1:7b").encoding(),
            Some(Encoding::DeepSeek)
        );
        let err = Tokenizer::for_model("nope/x").unwrap_err();
        assert!(
            err.message().contains("known providers"),
            "{}",
            err.message()
        );
        assert!(Tokenizer::for_model("qwen-plus").is_err());
    }

    #[test]
    fn openai_overhead_follows_the_cookbook() {
        // The cookbook's example: "You are a helpful assistant." etc. Here: one message,
        // 3 per message + role "user" (1) + "Hello world" (2) + 3 priming.
        let t = Tokenizer::exact(Encoding::Cl100kBase, ChatTemplate::OpenAi).unwrap();
        assert_eq!(
            t.count_messages(&[Message::user("Hello world")]),
            3 + 1 + 2 + 3
        );
        let mut named = Message::user("Hello world");
        named.name = Some("bob".into());
        assert_eq!(t.count_message(&named), 3 + 1 + 2 + 1 + 1);
    }

    #[test]
    fn chatml_counts_are_the_rendered_template_and_add_up() {
        let t = Tokenizer::for_model("dashscope/qwen-plus").unwrap();
        // <|im_start|> user \n Hello world <|im_end|> \n
        assert_eq!(
            t.count_message(&Message::user("Hello world")),
            1 + 1 + 1 + 2 + 1 + 1
        );
        assert_eq!(t.reply_priming(), 3);
        let mut call = Message::assistant("");
        call.tool_calls.push(ToolCall {
            id: "c1".into(),
            name: "get_weather".into(),
            arguments: r#"{"city":"杭州"}"#.into(),
        });
        let msgs = vec![
            Message::system("你是一个助手。"),
            Message::user("杭州天气?"),
            call,
            Message::tool_result("c1", "晴, 25°C"),
            Message::assistant("杭州今天晴, 25°C。 👍"),
        ];
        let whole: String =
            msgs.iter().map(template::render_chatml).collect::<String>() + template::CHATML_PRIMING;
        let e = Encoding::Qwen;
        assert_eq!(
            t.count_messages(&msgs),
            e.encode_template(&whole).unwrap().len() as u64
        );
    }

    #[test]
    fn deepseek_counts_render_its_template() {
        let t = Tokenizer::for_model("deepseek/deepseek-chat").unwrap();
        // <｜begin▁of▁sentence｜> <｜User｜> Hello world <｜Assistant｜>
        assert_eq!(
            t.count_messages(&[Message::user("Hello world")]),
            1 + 1 + 2 + 1
        );
        assert_eq!(t.reply_priming(), 2);
        let mut call = Message::assistant("");
        for (id, city) in [("c1", "杭州"), ("c2", "北京")] {
            call.tool_calls.push(ToolCall {
                id: id.into(),
                name: "get_weather".into(),
                arguments: format!(r#"{{"city":"{city}"}}"#),
            });
        }
        let msgs = vec![
            Message::system("你是一个助手。"),
            Message::user("杭州和北京天气?"),
            call,
            Message::tool_result("c1", "晴, 25°C"),
            Message::tool_result("c2", "多云, 18°C"),
            Message::assistant("<think>两地都查到了</think>杭州晴, 北京多云。"),
            Message::user("谢谢"),
        ];
        let whole = template::render_deepseek(&msgs);
        assert!(whole.starts_with("<｜begin▁of▁sentence｜>你是一个助手。<｜User｜>杭州"));
        // The two results share one output block; the answer after them has no
        // <｜Assistant｜> and loses its reasoning.
        assert_eq!(whole.matches("<｜tool▁outputs▁begin｜>").count(), 1);
        assert!(whole.contains(
            "<｜tool▁output▁end｜><｜tool▁outputs▁end｜>杭州晴, 北京多云。<｜end▁of▁sentence｜>"
        ));
        assert!(whole.ends_with("<｜User｜>谢谢<｜Assistant｜>"));
        // Message by message, the counts add up to the whole rendering's.
        let exact = Encoding::DeepSeek.encode(&whole).unwrap().len() as u64;
        assert_eq!(t.count_messages(&msgs), exact);
        let mut pending = msgs.clone();
        pending.truncate(5);
        let whole = template::render_deepseek(&pending);
        assert!(whole.ends_with("<｜tool▁output▁end｜><｜tool▁outputs▁end｜>"));
        let exact = Encoding::DeepSeek.encode(&whole).unwrap().len() as u64;
        assert_eq!(t.count_messages(&pending), exact);
    }

    #[test]
    fn estimate_is_the_documented_heuristic() {
        let t = Tokenizer::estimate();
        assert_eq!(t.count_text("hello world!"), 3);
        assert_eq!(t.count_message(&Message::user("你好")), 4 + 2);
        assert_eq!(t.reply_priming(), 3);
    }

    #[test]
    fn truncate_keeps_the_longest_prefix_within_the_budget() {
        for t in [
            Tokenizer::for_model("dashscope/qwen-plus").unwrap(),
            Tokenizer::for_model("openai/gpt-4o").unwrap(),
            Tokenizer::estimate(),
        ] {
            let text = "The quick brown fox 跳过了懒狗 🦊 and ran away.";
            for n in 0..12 {
                let cut = t.truncate(text, n);
                assert!(t.count_text(&cut) <= n);
                assert!(text.starts_with(&cut));
            }
            assert_eq!(t.truncate(text, 1000), text);
        }
    }
}
