//! iFlytek Spark WebSocket URL authentication (PROTOCOLS.md §4.2): an HMAC-SHA256 over the
//! host, the RFC 1123 date and the request line, carried in the query string.
//!
//! Reproduces every case of `shared/vectors/spark_ws_url.json`.

use std::time::SystemTime;

use base64::Engine;

use crate::error::{Error, Result};
use crate::providers::canonical::form_encode;
use crate::providers::signing::hmac_sha256;
use crate::SecretString;

/// A signed URL and every intermediate value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedUrl {
    /// The URL authority (host, and port when the URL has one).
    pub host: String,
    /// The URL path.
    pub path: String,
    /// RFC 1123 date, `Tue, 14 Nov 2023 22:13:20 GMT`.
    pub date: String,
    /// `host: …\ndate: …\nGET <path> HTTP/1.1`.
    pub signature_origin: String,
    /// Base64 of the HMAC-SHA256 of `signature_origin` under the APISecret.
    pub signature_b64: String,
    /// `api_key="…", algorithm="hmac-sha256", headers="host date request-line", signature="…"`.
    pub authorization_origin: String,
    /// Base64 of `authorization_origin`.
    pub authorization_b64: String,
    /// `<url>?authorization=…&date=…&host=…`, form-urlencoded.
    pub url: String,
}

/// Splits `ws[s]://authority/path` into scheme, authority and path (path `/` when absent).
pub fn split_ws_url(url: &str) -> Result<(&str, &str, &str)> {
    let (scheme, rest) = url
        .split_once("://")
        .filter(|(s, _)| *s == "ws" || *s == "wss")
        .ok_or_else(|| {
            Error::config(format!(
                "spark: URL `{url}` must start with wss:// (or ws:// for a local endpoint)"
            ))
        })?;
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') || path.starts_with(['?', '#']) {
        return Err(Error::config(format!(
            "spark: URL `{url}` must be scheme://host[:port]/path without user info or query"
        )));
    }
    Ok((scheme, authority, path))
}

/// Signs `spark_url` (no query) with the APIKey and APISecret at time `at`.
pub fn sign_url(
    spark_url: &str,
    api_key: &str,
    api_secret: &SecretString,
    at: SystemTime,
) -> Result<SignedUrl> {
    let (_, host, path) = split_ws_url(spark_url)?;
    let date = httpdate::fmt_http_date(at);
    let signature_origin = format!("host: {host}\ndate: {date}\nGET {path} HTTP/1.1");
    let b64 = base64::engine::general_purpose::STANDARD;
    let signature_b64 = b64.encode(hmac_sha256(
        api_secret.expose().as_bytes(),
        signature_origin.as_bytes(),
    ));
    let authorization_origin = format!(
        "api_key=\"{api_key}\", algorithm=\"hmac-sha256\", headers=\"host date request-line\", signature=\"{signature_b64}\""
    );
    let authorization_b64 = b64.encode(authorization_origin.as_bytes());
    let url = format!(
        "{spark_url}?authorization={}&date={}&host={}",
        form_encode(&authorization_b64),
        form_encode(&date),
        form_encode(host)
    );
    Ok(SignedUrl {
        host: host.to_owned(),
        path: path.to_owned(),
        date,
        signature_origin,
        signature_b64,
        authorization_origin,
        authorization_b64,
        url,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_endpoints_sign_the_port_too() {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let s = sign_url(
            "ws://127.0.0.1:9/v3.5/chat",
            "k",
            &SecretString::new("s"),
            at,
        )
        .unwrap();
        assert_eq!(s.host, "127.0.0.1:9");
        assert!(s.signature_origin.starts_with("host: 127.0.0.1:9\n"));
        assert!(s.url.ends_with("&host=127.0.0.1%3A9"));
    }

    #[test]
    fn other_schemes_and_queries_are_config_errors() {
        let at = std::time::UNIX_EPOCH;
        for bad in [
            "https://h/v1.1/chat",
            "wss://",
            "wss://h?x=1",
            "wss://u@h/p",
        ] {
            let err = sign_url(bad, "k", &SecretString::new("s"), at).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::Config, "{bad}");
        }
    }
}
