//! iFlytek Spark WebSocket URL authentication (PROTOCOLS.md 4.2): the query carries `authorization`, `date` and
//! `host`; the server recomputes the HMAC-SHA256 over `host`, `date` and the request line.
//!
//! Failures answer like the vendor's Kong gateway: a short JSON `{"message": …}` with 401 or 403 (see
//! [`UrlAuthError::message`]).

use base64::Engine as _;

use crate::auth::encoding;

/// Largest allowed distance between the `date` parameter and the emulator clock.
pub(crate) const MAX_SKEW_SECS: i64 = 300;

/// Why a handshake was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UrlAuthError {
    /// `authorization`, `date` or `host` missing, or `authorization` not base64 of the documented form.
    Missing,
    /// `date` unparseable or more than [`MAX_SKEW_SECS`] from the emulator clock.
    DateSkew,
    /// `api_key` is not the configured one, or `algorithm`/`headers` are not the documented values.
    Unverifiable,
    /// The signature does not match.
    BadSignature,
}

impl UrlAuthError {
    /// The HTTP status of the refused upgrade.
    pub(crate) fn status(self) -> u16 {
        match self {
            UrlAuthError::DateSkew => 403,
            UrlAuthError::Missing | UrlAuthError::Unverifiable | UrlAuthError::BadSignature => 401,
        }
    }

    /// The `message` of the JSON body.
    pub(crate) fn message(self) -> &'static str {
        match self {
            UrlAuthError::Missing => "Unauthorized",
            UrlAuthError::DateSkew => "HMAC signature cannot be verified, a valid date or x-date header is required for HMAC Authentication",
            UrlAuthError::Unverifiable => "HMAC signature cannot be verified",
            UrlAuthError::BadSignature => "HMAC signature does not match",
        }
    }
}

/// `host: <host>\ndate: <date>\nGET <path> HTTP/1.1`.
pub(crate) fn signature_origin(host: &str, date: &str, path: &str) -> String {
    format!("host: {host}\ndate: {date}\nGET {path} HTTP/1.1")
}

/// base64(HMAC-SHA256(api_secret, signature_origin)).
#[cfg(test)]
pub(crate) fn signature(api_secret: &str, host: &str, date: &str, path: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(encoding::hmac_sha256(
        api_secret.as_bytes(),
        signature_origin(host, date, path).as_bytes(),
    ))
}

/// Parses `k="v", k="v", …` (any whitespace around the commas, as sparkai's LLM client writes it).
fn parse_fields(s: &str) -> Option<Vec<(&str, &str)>> {
    s.split(',')
        .map(|part| {
            let (k, v) = part.trim().split_once('=')?;
            let v = v.strip_prefix('"')?.strip_suffix('"')?;
            Some((k, v))
        })
        .collect()
}

/// Verifies the query of a handshake to `path` against one key pair, at `now` (Unix seconds).
pub(crate) fn verify(
    path: &str,
    query: Option<&str>,
    api_key: &str,
    api_secret: &str,
    now: i64,
) -> Result<(), UrlAuthError> {
    let pairs = encoding::query_pairs(query.unwrap_or_default(), true);
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let (Some(authorization), Some(date), Some(host)) =
        (get("authorization"), get("date"), get("host"))
    else {
        return Err(UrlAuthError::Missing);
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(authorization)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or(UrlAuthError::Missing)?;
    let fields = parse_fields(&decoded).ok_or(UrlAuthError::Missing)?;
    let field = |name: &str| fields.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
    let at = crate::clock::parse_rfc1123(date).ok_or(UrlAuthError::DateSkew)?;
    if (now - at).abs() > MAX_SKEW_SECS {
        return Err(UrlAuthError::DateSkew);
    }
    if field("api_key") != Some(api_key)
        || field("algorithm") != Some("hmac-sha256")
        || field("headers") != Some("host date request-line")
    {
        return Err(UrlAuthError::Unverifiable);
    }
    let sig = field("signature")
        .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
        .ok_or(UrlAuthError::BadSignature)?;
    let origin = signature_origin(host, date, path);
    if encoding::hmac_sha256_verify(api_secret.as_bytes(), origin.as_bytes(), &sig) {
        Ok(())
    } else {
        Err(UrlAuthError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::Value;

    fn vectors() -> Vec<Value> {
        let v: Value =
            serde_json::from_str(include_str!("../../fixtures/spark/ws_url.json")).unwrap();
        v["vectors"].as_array().unwrap().clone()
    }

    /// (path, query) of a `wss://host/path?query` URL.
    fn split(url: &str) -> (&str, &str) {
        let rest = url.split_once("://").unwrap().1;
        let path_q = &rest[rest.find('/').unwrap()..];
        path_q.split_once('?').unwrap()
    }

    #[test]
    fn every_vector_verifies_canonical_and_sparkai_variant_urls() {
        let vs = vectors();
        assert!(vs.len() >= 4);
        for v in vs {
            let name = v["name"].as_str().unwrap();
            let i = &v["inputs"];
            let e = &v["expected"];
            let (key, secret) = (
                i["api_key"].as_str().unwrap(),
                i["api_secret"].as_str().unwrap(),
            );
            let now = i["unix_time"].as_i64().unwrap();
            let (host, date, path) = (
                e["host"].as_str().unwrap(),
                e["date"].as_str().unwrap(),
                e["path"].as_str().unwrap(),
            );
            assert_eq!(crate::clock::format_rfc1123(now), date, "{name}");
            assert_eq!(
                signature_origin(host, date, path),
                e["signature_origin"],
                "{name}"
            );
            assert_eq!(
                signature(secret, host, date, path),
                e["signature_b64"],
                "{name}"
            );
            for url_field in ["url", "sparkai_llm_variant_url"] {
                let (p, q) = split(e[url_field].as_str().unwrap());
                assert_eq!(p, path);
                assert_eq!(
                    verify(p, Some(q), key, secret, now),
                    Ok(()),
                    "{name} {url_field}"
                );
                assert_eq!(verify(p, Some(q), key, secret, now + 300), Ok(()));
                assert_eq!(verify(p, Some(q), key, secret, now - 300), Ok(()));
                assert_eq!(
                    verify(p, Some(q), key, secret, now + 301),
                    Err(UrlAuthError::DateSkew)
                );
                assert_eq!(
                    verify(p, Some(q), key, "wrong-secret", now),
                    Err(UrlAuthError::BadSignature)
                );
                assert_eq!(
                    verify(p, Some(q), "other-key", secret, now),
                    Err(UrlAuthError::Unverifiable)
                );
                assert_eq!(
                    verify("/v9.9/chat", Some(q), key, secret, now),
                    Err(UrlAuthError::BadSignature)
                );
            }
        }
    }

    #[test]
    fn missing_or_garbled_parameters_are_unauthorized() {
        let now = 1_700_000_000;
        assert_eq!(
            verify("/v3.5/chat", None, "k", "s", now),
            Err(UrlAuthError::Missing)
        );
        let date = "Tue%2C+14+Nov+2023+22%3A13%3A20+GMT";
        let q = format!("authorization=%%%&date={date}&host=h");
        assert_eq!(
            verify("/v3.5/chat", Some(&q), "k", "s", now),
            Err(UrlAuthError::Missing)
        );
        let q = format!("authorization=YQ%3D%3D&date={date}&host=h");
        assert_eq!(
            verify("/v3.5/chat", Some(&q), "k", "s", now),
            Err(UrlAuthError::Missing)
        );
        let auth = base64::engine::general_purpose::STANDARD.encode(
            r#"api_key="k", algorithm="hmac-sha256", headers="host date request-line", signature="AA==""#,
        );
        let q = format!(
            "authorization={}&date=yesterday&host=h",
            auth.replace('=', "%3D")
        );
        assert_eq!(
            verify("/v3.5/chat", Some(&q), "k", "s", now),
            Err(UrlAuthError::DateSkew)
        );
        let q = format!(
            "authorization={}&date={date}&host=h",
            auth.replace('=', "%3D")
        );
        assert_eq!(
            verify("/v3.5/chat", Some(&q), "k", "s", now),
            Err(UrlAuthError::BadSignature)
        );
        assert_eq!(
            verify("/v3.5/chat", Some(&q), "k2", "s", now),
            Err(UrlAuthError::Unverifiable)
        );
    }
}
