//! Upstream credentials at rest: AES-256-GCM (ring) under the master key from
//! `LLMUX_MASTER_KEY`, a fresh random 96-bit nonce per sealed value, and the channel's name as
//! associated data, so a sealed value copied onto another channel's row does not open.
//!
//! A sealed value is `v1:` followed by the URL-safe base64 (no padding) of nonce ‖ ciphertext ‖
//! tag. The master key is 32 bytes, given as standard or URL-safe base64 (`openssl rand
//! -base64 32`) or as 64 hex digits.

use std::fmt;
use std::sync::Arc;

use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};

/// The environment variable holding the master key.
pub const MASTER_KEY_ENV: &str = "LLMUX_MASTER_KEY";

const PREFIX: &str = "v1:";

/// The key that seals stored credentials. `Debug` shows nothing of it.
#[derive(Clone)]
pub struct MasterKey(Arc<LessSafeKey>);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

/// Why a value could not be sealed or opened. Never holds key material or plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The system's random number generator failed.
    #[error("no random nonce: {0}")]
    Rng(String),
    /// The value is not a sealed value of a known version.
    #[error("not a sealed value (expected `v1:…`)")]
    Format,
    /// Wrong key, wrong channel, or altered bytes.
    #[error("cannot decrypt: the master key differs from the one that sealed it, or the value was altered")]
    Open,
}

impl MasterKey {
    /// Reads a 32-byte key from base64 or hex text. The error never repeats the text.
    pub fn parse(text: &str) -> Result<MasterKey, String> {
        let text = text.trim();
        let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(text).ok()
        } else {
            let b64 = base64::engine::general_purpose::STANDARD;
            let url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            b64.decode(text)
                .or_else(|_| url.decode(text.trim_end_matches('=')))
                .ok()
        };
        match bytes {
            Some(b) if b.len() == 32 => MasterKey::from_bytes(&b),
            _ => Err(
                "must be 32 random bytes as base64 (`openssl rand -base64 32`) or 64 hex digits"
                    .into(),
            ),
        }
    }

    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<MasterKey, String> {
        let key =
            UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| "must be 32 bytes".to_owned())?;
        Ok(MasterKey(Arc::new(LessSafeKey::new(key))))
    }

    /// Seals `plaintext` bound to `context` (the channel name).
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> Result<String, CryptoError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| CryptoError::Rng(e.to_string()))?;
        let mut buf = plaintext.to_vec();
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut buf,
            )
            .map_err(|_| CryptoError::Open)?;
        let mut out = Vec::with_capacity(NONCE_LEN + buf.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buf);
        Ok(format!(
            "{PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(out)
        ))
    }

    /// Opens a value [`MasterKey::seal`] made for the same `context`.
    pub fn open(&self, context: &str, sealed: &str) -> Result<Vec<u8>, CryptoError> {
        let body = sealed.strip_prefix(PREFIX).ok_or(CryptoError::Format)?;
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| CryptoError::Format)?;
        if raw.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return Err(CryptoError::Format);
        }
        let (nonce, rest) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::Format)?;
        let mut buf = rest.to_vec();
        let plain = self
            .0
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut buf)
            .map_err(|_| CryptoError::Open)?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn key(byte: u8) -> MasterKey {
        MasterKey::from_bytes(&[byte; 32]).unwrap()
    }

    #[test]
    fn sealed_values_open_only_with_their_key_and_channel() {
        let k = key(7);
        let a = k.seal("chan-a", b"sk-secret-value").unwrap();
        let b = k.seal("chan-a", b"sk-secret-value").unwrap();
        assert_ne!(a, b, "a fresh nonce per value");
        assert!(!a.contains("secret"));
        assert_eq!(k.open("chan-a", &a).unwrap(), b"sk-secret-value");
        assert_eq!(k.open("chan-b", &a), Err(CryptoError::Open));
        assert_eq!(key(8).open("chan-a", &a), Err(CryptoError::Open));
        let mut altered = a.clone().into_bytes();
        let last = altered.len() - 3;
        altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            k.open("chan-a", std::str::from_utf8(&altered).unwrap()),
            Err(CryptoError::Open)
        );
        assert_eq!(k.open("chan-a", "plain"), Err(CryptoError::Format));
    }

    #[test]
    fn master_keys_parse_from_base64_or_hex_and_never_echo() {
        let b64 = base64::engine::general_purpose::STANDARD.encode([3u8; 32]);
        assert!(MasterKey::parse(&b64).is_ok());
        assert!(MasterKey::parse(&hex::encode([3u8; 32])).is_ok());
        let err = MasterKey::parse("too-short-secret-text").unwrap_err();
        assert!(!err.contains("too-short"), "{err}");
        assert_eq!(format!("{:?}", key(1)), "MasterKey(<redacted>)");
    }
}
