//! Zhipu bearer credentials (PROTOCOLS 6): a raw API key `<id>.<secret>` or an HS256 JWT signed with the secret.
//!
//! A JWT's header must say `alg: HS256` and `sign_type: SIGN`; its payload names the key id in `api_key` and carries
//! `exp` and `timestamp` in **milliseconds**. The signature is checked before the expiry.

use base64::Engine as _;
use serde_json::Value;

use super::encoding::{constant_time_eq, hmac_sha256};

/// Why a Zhipu credential was refused; each maps to a Zhipu error code (HTTP 401).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ZhipuAuthError {
    /// 1000: unknown API key or key id.
    UnknownKey,
    /// 1001: no `Authorization` header.
    Missing,
    /// 1002: the token is not a well-formed Zhipu JWT.
    Malformed(&'static str),
    /// 1003: `exp` is in the past.
    Expired,
    /// 1004: the signature does not match.
    BadSignature,
}

impl ZhipuAuthError {
    /// Zhipu's error code.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            ZhipuAuthError::UnknownKey => "1000",
            ZhipuAuthError::Missing => "1001",
            ZhipuAuthError::Malformed(_) => "1002",
            ZhipuAuthError::Expired => "1003",
            ZhipuAuthError::BadSignature => "1004",
        }
    }

    /// Zhipu's error message.
    pub(crate) fn message(&self) -> String {
        match self {
            ZhipuAuthError::UnknownKey => "身份验证失败。".to_owned(),
            ZhipuAuthError::Missing => {
                "Header中未收到Authorization参数，无法进行身份验证。".to_owned()
            }
            ZhipuAuthError::Malformed(why) => {
                format!("Authorization Token非法，请确认Authorization Token正确传递。({why})")
            }
            ZhipuAuthError::Expired => "Authorization Token已过期，请重新生成/获取。".to_owned(),
            ZhipuAuthError::BadSignature => "通过提供的Authorization Token认证失败。".to_owned(),
        }
    }
}

fn b64url(part: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .ok()
}

/// The secret of the key with this id among `<id>.<secret>` keys.
fn secret_of<'a>(keys: &'a [String], id: &str) -> Option<&'a str> {
    keys.iter()
        .filter_map(|k| k.split_once('.'))
        .find(|(kid, _)| *kid == id)
        .map(|(_, secret)| secret)
}

/// Verifies a bearer credential (`None` = no header) against the configured `<id>.<secret>` keys at `now_ms`.
pub(crate) fn verify(
    credential: Option<&str>,
    keys: &[String],
    now_ms: i64,
) -> Result<(), ZhipuAuthError> {
    let credential = credential.ok_or(ZhipuAuthError::Missing)?;
    if credential.matches('.').count() != 2 {
        return if keys.iter().any(|k| k == credential) {
            Ok(())
        } else {
            Err(ZhipuAuthError::UnknownKey)
        };
    }
    let mut parts = credential.split('.');
    let (Some(h), Some(p), Some(sig)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(ZhipuAuthError::Malformed("expected three parts"));
    };
    let json = |part: &str| {
        b64url(part)
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .filter(Value::is_object)
    };
    let header = json(h).ok_or(ZhipuAuthError::Malformed("header is not base64url JSON"))?;
    let payload = json(p).ok_or(ZhipuAuthError::Malformed("payload is not base64url JSON"))?;
    if header["alg"] != "HS256" {
        return Err(ZhipuAuthError::Malformed("alg must be HS256"));
    }
    if header["sign_type"] != "SIGN" {
        return Err(ZhipuAuthError::Malformed("sign_type must be SIGN"));
    }
    let id = payload["api_key"]
        .as_str()
        .ok_or(ZhipuAuthError::Malformed("payload has no api_key"))?;
    let exp = payload["exp"].as_i64().ok_or(ZhipuAuthError::Malformed(
        "exp must be an integer (milliseconds)",
    ))?;
    payload["timestamp"]
        .as_i64()
        .ok_or(ZhipuAuthError::Malformed(
            "timestamp must be an integer (milliseconds)",
        ))?;
    let secret = secret_of(keys, id).ok_or(ZhipuAuthError::UnknownKey)?;
    let sig = b64url(sig).ok_or(ZhipuAuthError::Malformed("signature is not base64url"))?;
    let expected = hmac_sha256(secret.as_bytes(), format!("{h}.{p}").as_bytes());
    if !constant_time_eq(&expected, &sig) {
        return Err(ZhipuAuthError::BadSignature);
    }
    if exp < now_ms {
        return Err(ZhipuAuthError::Expired);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn doc() -> Value {
        serde_json::from_str(include_str!("../../fixtures/zhipu/jwt.json")).unwrap()
    }

    fn enc(v: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
    }

    #[test]
    fn accepts_every_sdk_token_until_it_expires() {
        let doc = doc();
        let vectors = doc["vectors"].as_array().unwrap();
        assert_eq!(vectors.len(), 3);
        for v in vectors {
            let name = v["name"].as_str().unwrap();
            let key = v["inputs"]["api_key"].as_str().unwrap().to_owned();
            let now = v["inputs"]["now_ms"].as_i64().unwrap();
            let e = &v["expected"];
            let token = e["token"].as_str().unwrap();
            let exp = e["payload"]["exp"].as_i64().unwrap();
            let keys = vec![key.clone()];
            assert_eq!(verify(Some(token), &keys, now), Ok(()), "{name}");
            assert_eq!(verify(Some(token), &keys, exp), Ok(()), "{name}");
            assert_eq!(
                verify(Some(token), &keys, exp + 1),
                Err(ZhipuAuthError::Expired)
            );
            assert_eq!(verify(Some(&key), &keys, now), Ok(()), "{name}: raw key");
            // The signing input is what the SDK produced.
            let (si, sig) = token.rsplit_once('.').unwrap();
            assert_eq!(si, e["signing_input"].as_str().unwrap());
            assert_eq!(sig, e["signature_b64url"].as_str().unwrap());
            assert_eq!(
                si.split_once('.').unwrap().0,
                enc(e["header_json"].as_str().unwrap())
            );
            // A different secret for the same id fails the signature; an unknown id is unknown.
            let id = e["id"].as_str().unwrap();
            let other = vec![format!("{id}.not-the-secret")];
            assert_eq!(
                verify(Some(token), &other, now),
                Err(ZhipuAuthError::BadSignature)
            );
            let stranger = vec!["someone.else".to_owned()];
            assert_eq!(
                verify(Some(token), &stranger, now),
                Err(ZhipuAuthError::UnknownKey)
            );
        }
    }

    #[test]
    fn accepts_the_wire_capture_credentials() {
        let doc = doc();
        let cap = &doc["sdk_wire_capture"];
        let keys = vec![cap["api_key"].as_str().unwrap().to_owned()];
        for ex in cap["exchanges"].as_array().unwrap() {
            let auth = ex["headers"]
                .as_array()
                .unwrap()
                .iter()
                .find(|h| h[0] == "Authorization")
                .unwrap()[1]
                .as_str()
                .unwrap();
            let bearer = auth.strip_prefix("Bearer ").unwrap();
            assert_eq!(verify(Some(bearer), &keys, 1_700_000_000_000), Ok(()));
        }
    }

    #[test]
    fn rejects_bad_headers_and_payloads() {
        let keys = vec!["kid.secret".to_owned()];
        let sign = |h: &str, p: &str| {
            let si = format!("{}.{}", enc(h), enc(p));
            let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(hmac_sha256(b"secret", si.as_bytes()));
            format!("{si}.{sig}")
        };
        let good_h = r#"{"alg":"HS256","sign_type":"SIGN","typ":"JWT"}"#;
        let good_p = r#"{"api_key":"kid","exp":2000,"timestamp":1000}"#;
        assert_eq!(verify(Some(&sign(good_h, good_p)), &keys, 1500), Ok(()));
        assert_eq!(verify(None, &keys, 0), Err(ZhipuAuthError::Missing));
        assert_eq!(
            verify(Some("kid.wrong"), &keys, 0),
            Err(ZhipuAuthError::UnknownKey)
        );
        let no_sign_type = r#"{"alg":"HS256","typ":"JWT"}"#;
        assert!(matches!(
            verify(Some(&sign(no_sign_type, good_p)), &keys, 1500),
            Err(ZhipuAuthError::Malformed(_))
        ));
        let none_alg = r#"{"alg":"none","sign_type":"SIGN"}"#;
        assert!(matches!(
            verify(Some(&sign(none_alg, good_p)), &keys, 1500),
            Err(ZhipuAuthError::Malformed(_))
        ));
        let seconds_as_float = r#"{"api_key":"kid","exp":2.5,"timestamp":1000}"#;
        assert!(matches!(
            verify(Some(&sign(good_h, seconds_as_float)), &keys, 1500),
            Err(ZhipuAuthError::Malformed(_))
        ));
        assert!(matches!(
            verify(Some("a.b.c"), &keys, 0),
            Err(ZhipuAuthError::Malformed(_))
        ));
    }
}
