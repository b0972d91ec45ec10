//! Small hashing and encoding helpers shared by the request signers (TC3, JWT, AK/SK schemes):
//! lowercase hex, SHA-256, HMAC-SHA256, unpadded base64url and UTC calendar dates.
//!
//! Every function here is pure: same bytes in, same bytes out. Signers call them on the exact
//! bytes that are sent.

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// Lowercase hex of `bytes`.
pub fn hex_lower(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// Lowercase hex of SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex_lower(&sha256(data))
}

/// HMAC-SHA256 of `data` under `key` (any key length).
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail here; the fallback keeps
    // this function total without a panic path.
    match HmacSha256::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(data);
            mac.finalize().into_bytes().into()
        }
        Err(_) => [0; 32],
    }
}

/// Lowercase hex of HMAC-SHA256 of `data` under `key`.
pub fn hmac_sha256_hex(key: &[u8], data: &[u8]) -> String {
    hex_lower(&hmac_sha256(key, data))
}

/// Base64url without `=` padding (JWT segments).
pub fn b64url_nopad(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

/// Standard base64 with padding.
pub fn b64_std(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// A JSON string literal as Python's `json.dumps` writes it by default (`ensure_ascii`):
/// quotes, `\"`, `\\`, `\n`-style escapes for control characters and `\uXXXX` (surrogate
/// pairs above the BMP) for everything outside printable ASCII.
pub fn py_json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
        }
    }
    out.push('"');
    out
}

/// The UTC calendar date `(year, month, day)` of a Unix timestamp in seconds.
pub fn utc_date(unix_secs: u64) -> (i64, u32, u32) {
    // Howard Hinnant's days-to-civil algorithm.
    let days = (unix_secs / 86_400) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The UTC date of a Unix timestamp as `YYYY-MM-DD`.
pub fn utc_date_iso(unix_secs: u64) -> String {
    let (y, m, d) = utc_date(unix_secs);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_and_hmac_match_known_values() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        // RFC 4231 test case 2.
        assert_eq!(
            hmac_sha256_hex(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // RFC 4231 test case 6: a key longer than the block size.
        assert_eq!(
            hmac_sha256_hex(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            ),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn python_json_strings_escape_non_ascii() {
        assert_eq!(py_json_str("ab"), "\"ab\"");
        assert_eq!(py_json_str("你好"), "\"\\u4f60\\u597d\"");
        assert_eq!(
            py_json_str("\"\\\n\u{1}😀"),
            "\"\\\"\\\\\\n\\u0001\\ud83d\\ude00\""
        );
    }

    #[test]
    fn base64url_drops_padding() {
        assert_eq!(b64url_nopad(b"\xfb\xff"), "-_8");
        assert_eq!(b64_std(b"\xfb\xff"), "+/8=");
    }

    #[test]
    fn utc_dates_roll_over_at_midnight_and_leap_days() {
        assert_eq!(utc_date_iso(0), "1970-01-01");
        assert_eq!(utc_date_iso(1_704_067_199), "2023-12-31");
        assert_eq!(utc_date_iso(1_704_067_200), "2024-01-01");
        assert_eq!(utc_date_iso(1_709_164_800), "2024-02-29");
        assert_eq!(utc_date_iso(1_551_113_065), "2019-02-25");
        assert_eq!(utc_date_iso(4_107_542_400), "2100-03-01");
    }
}
