//! Removing secrets from messages that may quote them (driver errors, URLs), by structure:
//! the password part of every `scheme://user:password@host` in the text, and each known secret
//! value of at least [`MIN_SECRET_LEN`] bytes, as given and percent-decoded. A shorter secret is
//! never replaced as a substring: replacing a one-letter password would mangle every word that
//! holds the letter, and a short secret quoted outside a URL cannot be told from ordinary text.

/// Secrets shorter than this are only removed where the text's structure marks them (a URL's
/// password part), never as bare substrings.
pub const MIN_SECRET_LEN: usize = 8;

/// What stands where a secret was.
pub const REDACTED: &str = "[REDACTED]";

/// `message` without URL passwords and without the given secrets (see the module docs).
pub fn scrub(message: &str, secrets: &[&str]) -> String {
    let mut out = scrub_url_passwords(message);
    for secret in secrets.iter().filter(|s| s.len() >= MIN_SECRET_LEN) {
        out = out.replace(secret, REDACTED);
        let decoded = percent_encoding::percent_decode_str(secret).decode_utf8_lossy();
        if decoded.len() >= MIN_SECRET_LEN && decoded != *secret {
            out = out.replace(&*decoded, REDACTED);
        }
    }
    out
}

/// Replaces the password of every `scheme://user:password@…` in `text`.
fn scrub_url_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        // The authority ends at the first `/`, `?`, `#`, quote or white space.
        let end = tail
            .find(|c: char| matches!(c, '/' | '?' | '#' | '"' | '\'' | '`') || c.is_whitespace())
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                match userinfo.split_once(':') {
                    Some((user, _)) => {
                        out.push_str(user);
                        out.push(':');
                        out.push_str(REDACTED);
                    }
                    None => out.push_str(userinfo),
                }
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_13_short_secrets_do_not_mangle_words() {
        let msg = "pool timed out while waiting for an open connection";
        assert_eq!(scrub(msg, &["p"]), msg);
        assert_eq!(scrub(msg, &["open"]), msg);
    }

    #[test]
    fn url_passwords_go_whatever_their_length() {
        assert_eq!(
            scrub(
                "cannot reach postgres://app:p@db:5432/x?sslmode=require now",
                &[]
            ),
            "cannot reach postgres://app:[REDACTED]@db:5432/x?sslmode=require now"
        );
        assert_eq!(
            scrub("redis://:s3cr%40t@h/0 and \"rediss://u:pw@h\"", &[]),
            "redis://:[REDACTED]@h/0 and \"rediss://u:[REDACTED]@h\""
        );
        // No password, no change; an `@` after the authority is not userinfo.
        let plain = "https://example.invalid/a@b and postgres://app@db/x";
        assert_eq!(scrub(plain, &[]), plain);
    }

    #[test]
    fn long_secrets_go_as_given_and_decoded() {
        assert_eq!(
            scrub("auth failed for hunter2-long", &["hunter2-long"]),
            "auth failed for [REDACTED]"
        );
        assert_eq!(
            scrub("password s3cr@t-value rejected", &["s3cr%40t-value"]),
            "password [REDACTED] rejected"
        );
    }
}
