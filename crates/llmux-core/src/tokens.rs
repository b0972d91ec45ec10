//! Token estimates for rate limiting before the real count is known: a documented heuristic
//! (ASCII text ≈ 4 characters per token, other characters ≈ 1 token each, 4 tokens of
//! overhead per message) plus the output reservation.

use crate::types::{ChatRequest, EmbeddingRequest};

/// Output tokens reserved when a request sets no `max_tokens`.
pub const DEFAULT_OUTPUT_RESERVE: u64 = 1024;

/// Estimated prompt tokens of a text.
pub fn estimate_text(text: &str) -> u64 {
    let (mut ascii, mut other) = (0u64, 0u64);
    for c in text.chars() {
        if c.is_ascii() {
            ascii += 1;
        } else {
            other += 1;
        }
    }
    ascii.div_ceil(4) + other
}

/// Estimated prompt tokens plus the output reservation (`max_tokens` or the default).
pub fn estimate_request(req: &ChatRequest) -> u64 {
    let prompt: u64 = req
        .messages
        .iter()
        .map(|m| 4 + estimate_text(&m.content.text()))
        .sum();
    prompt + req.max_tokens.map_or(DEFAULT_OUTPUT_RESERVE, u64::from)
}

/// Estimated tokens of an embeddings request: its input texts (there is no output to reserve).
pub fn estimate_embeddings(req: &EmbeddingRequest) -> u64 {
    req.input.iter().map(|t| estimate_text(t)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Message;

    #[test]
    fn estimates_are_conservative_for_cjk_and_include_the_reserve() {
        assert_eq!(estimate_text("hello world!"), 3);
        assert_eq!(estimate_text("你好世界"), 4);
        let mut r = ChatRequest::new("m", vec![Message::user("hello world!")]);
        r.max_tokens = Some(10);
        assert_eq!(estimate_request(&r), 4 + 3 + 10);
    }
}
