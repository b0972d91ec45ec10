//! Context windows per model: a built-in table of the vendors' published limits (prompt plus
//! output, in tokens), overridable per model, with a conservative default.

use std::collections::BTreeMap;

use crate::providers;

/// Window used for a model the table does not know.
pub const DEFAULT_CONTEXT_WINDOW: u64 = 8_192;

/// Built-in rows: `(provider, model prefix, window)`. The longest matching prefix wins, so
/// `qwen-plus-latest` takes `qwen-plus`'s row. Figures are the vendors' published limits.
pub const BUILTIN_WINDOWS: &[(&str, &str, u64)] = &[
    ("openai", "gpt-3.5-turbo", 16_385),
    ("openai", "gpt-4", 8_192),
    ("openai", "gpt-4-turbo", 128_000),
    ("openai", "gpt-4o", 128_000),
    ("openai", "gpt-4o-mini", 128_000),
    ("openai", "gpt-4.1", 1_047_576),
    ("openai", "gpt-5", 400_000),
    ("openai", "o1", 200_000),
    ("openai", "o3", 200_000),
    ("openai", "o4-mini", 200_000),
    ("dashscope", "qwen-turbo", 1_000_000),
    ("dashscope", "qwen-flash", 1_000_000),
    ("dashscope", "qwen-plus", 131_072),
    ("dashscope", "qwen-max", 32_768),
    ("dashscope", "qwen-long", 10_000_000),
    ("dashscope", "qwen3-max", 262_144),
    ("dashscope", "qwen2.5-", 131_072),
    ("dashscope", "qwen3-", 131_072),
    ("zhipu", "glm-4", 128_000),
    ("zhipu", "glm-4-flash", 128_000),
    ("zhipu", "glm-4-plus", 128_000),
    ("zhipu", "glm-4-long", 1_000_000),
    ("zhipu", "glm-4.5", 128_000),
    ("hunyuan", "hunyuan-lite", 256_000),
    ("hunyuan", "hunyuan-standard", 32_000),
    ("hunyuan", "hunyuan-pro", 32_000),
    ("hunyuan", "hunyuan-turbo", 32_000),
    ("spark", "lite", 4_096),
    ("spark", "generalv3.5", 8_192),
    ("spark", "4.0Ultra", 8_192),
    ("spark", "max-32k", 32_768),
    ("deepseek", "deepseek-chat", 65_536),
    ("deepseek", "deepseek-reasoner", 65_536),
    ("moonshot", "moonshot-v1-8k", 8_192),
    ("moonshot", "moonshot-v1-32k", 32_768),
    ("moonshot", "moonshot-v1-128k", 131_072),
];

/// Context windows by model, from [`BUILTIN_WINDOWS`] plus overrides.
#[derive(Debug, Clone)]
pub struct ModelTable {
    rows: BTreeMap<(String, String), u64>,
    default: u64,
}

impl Default for ModelTable {
    fn default() -> Self {
        Self::builtin()
    }
}

impl ModelTable {
    /// The built-in table with [`DEFAULT_CONTEXT_WINDOW`] for unknown models.
    pub fn builtin() -> Self {
        let rows = BUILTIN_WINDOWS
            .iter()
            .map(|(p, m, w)| ((canonical(p).to_owned(), (*m).to_owned()), *w))
            .collect();
        ModelTable {
            rows,
            default: DEFAULT_CONTEXT_WINDOW,
        }
    }

    /// Sets the window of every `provider` model starting with `prefix`.
    pub fn with(mut self, provider: &str, prefix: &str, window: u64) -> Self {
        self.rows
            .insert((canonical(provider).to_owned(), prefix.to_owned()), window);
        self
    }

    /// Sets the window for models the table does not know.
    pub fn with_default(mut self, window: u64) -> Self {
        self.default = window;
        self
    }

    /// The window of `provider/model` (a bare model name gets the default).
    pub fn window(&self, addr: &str) -> u64 {
        match providers::split_model(addr) {
            Ok((p, m)) => self.window_of(p, m),
            Err(_) => self.default,
        }
    }

    /// The window of `model` served by `provider`: the longest matching prefix, else the default.
    pub fn window_of(&self, provider: &str, model: &str) -> u64 {
        let provider = canonical(provider);
        self.rows
            .iter()
            .filter(|((p, prefix), _)| p == provider && model.starts_with(prefix.as_str()))
            .max_by_key(|((_, prefix), _)| prefix.len())
            .map_or(self.default, |(_, w)| *w)
    }
}

/// Providers that serve the same models under another id.
fn canonical(provider: &str) -> &str {
    match provider {
        "dashscope-compat" => "dashscope",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_wins_and_unknown_models_get_the_default() {
        let t = ModelTable::builtin();
        assert_eq!(t.window("dashscope/qwen-plus"), 131_072);
        assert_eq!(t.window("dashscope/qwen-plus-latest"), 131_072);
        assert_eq!(t.window("dashscope-compat/qwen-turbo"), 1_000_000);
        assert_eq!(t.window("openai/gpt-4o-mini"), 128_000);
        assert_eq!(t.window("openai/gpt-4"), 8_192);
        assert_eq!(t.window("zhipu/glm-4-flash"), 128_000);
        assert_eq!(t.window("ollama/llama3"), DEFAULT_CONTEXT_WINDOW);
        assert_eq!(t.window("qwen-plus"), DEFAULT_CONTEXT_WINDOW);
        let t = t.with("ollama", "llama3", 8_000).with_default(4_096);
        assert_eq!(t.window("ollama/llama3.1"), 8_000);
        assert_eq!(t.window("pangu/x"), 4_096);
    }
}
