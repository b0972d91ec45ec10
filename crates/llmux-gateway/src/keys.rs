//! Virtual API keys: generation from the OS RNG, hashing for storage, and format checks.
//!
//! A key is `sk-llmux-` followed by 40 base62 characters (≈238 bits of entropy). Only
//! `hex(SHA-256(key))` is stored; the plaintext is shown once, at creation. Lookups go by hash,
//! so the database never compares secrets; where two hashes are compared in memory,
//! [`hashes_equal`] does it in constant time.

use sha2::{Digest, Sha256};

/// Prefix of every gateway key.
pub const KEY_PREFIX: &str = "sk-llmux-";
/// Number of random base62 characters after the prefix.
pub const KEY_RANDOM_LEN: usize = 40;
/// Length of the displayable prefix stored with a key (`sk-llmux-` plus 3 random characters).
pub const DISPLAY_PREFIX_LEN: usize = 12;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The OS random number generator failed (reported, never papered over with a weak RNG).
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random number generator failed: {0}")]
pub struct RngError(String);

/// A new key: `sk-llmux-` + 40 base62 characters from the OS RNG, without modulo bias
/// (bytes ≥ 248 are rejected and redrawn).
pub fn generate() -> Result<String, RngError> {
    let mut out = String::with_capacity(KEY_PREFIX.len() + KEY_RANDOM_LEN);
    out.push_str(KEY_PREFIX);
    let mut buf = [0u8; 64];
    while out.len() < KEY_PREFIX.len() + KEY_RANDOM_LEN {
        getrandom::fill(&mut buf).map_err(|e| RngError(e.to_string()))?;
        for b in buf {
            if out.len() == KEY_PREFIX.len() + KEY_RANDOM_LEN {
                break;
            }
            // 248 = 4 * 62: accepting only bytes below it keeps every character equally likely.
            if b < 248 {
                out.push(char::from(BASE62[usize::from(b % 62)]));
            }
        }
    }
    Ok(out)
}

/// `hex(SHA-256(key))`, the only form in which a key is stored.
pub fn hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// The first [`DISPLAY_PREFIX_LEN`] characters of a key, for display in listings.
pub fn display_prefix(key: &str) -> String {
    key.chars().take(DISPLAY_PREFIX_LEN).collect()
}

/// True when `s` has the shape of a gateway key (prefix, 40 base62 characters).
/// Use it to tell gateway keys from other bearer tokens before touching the store.
pub fn looks_like_key(s: &str) -> bool {
    s.strip_prefix(KEY_PREFIX).is_some_and(|rest| {
        rest.len() == KEY_RANDOM_LEN && rest.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn hashes_equal(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_have_the_documented_shape_and_differ() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 49);
        assert!(looks_like_key(&a), "{a}");
        assert_eq!(display_prefix(&a).len(), DISPLAY_PREFIX_LEN);
        assert!(a.starts_with(&display_prefix(&a)));
    }

    #[test]
    fn looks_like_key_rejects_other_tokens() {
        assert!(!looks_like_key("sk-proj-abc"));
        assert!(!looks_like_key(&format!("sk-llmux-{}", "a".repeat(39))));
        assert!(!looks_like_key(&format!("sk-llmux-{}!", "a".repeat(39))));
        assert!(looks_like_key(&format!("sk-llmux-{}", "a".repeat(40))));
    }

    #[test]
    fn hash_is_hex_sha256_and_comparison_is_exact() {
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(hashes_equal(&hash("x"), &hash("x")));
        assert!(!hashes_equal(&hash("x"), &hash("y")));
        assert!(!hashes_equal("ab", "abc"));
    }

    #[test]
    fn characters_are_spread_over_the_whole_alphabet() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..50 {
            seen.extend(generate().unwrap().bytes().skip(KEY_PREFIX.len()));
        }
        assert!(seen.len() > 55, "only {} distinct characters", seen.len());
    }
}
