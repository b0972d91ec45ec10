//! Alibaba Cloud POP signature v3 (`ACS3-HMAC-SHA256`), the signer of Alibaba Cloud's
//! control-plane OpenAPIs (for example Bailian workspace management; not DashScope inference,
//! which takes Bearer keys). A pure function: no provider uses it yet.
//!
//! Reproduces `shared/vectors/acs3.json`, including the official documentation example.
//!
//! ```
//! use llmux_core::providers::acs3::{sign, Acs3Request};
//! use llmux_core::SecretString;
//!
//! let headers = [
//!     ("host".to_owned(), "ecs.cn-shanghai.aliyuncs.com".to_owned()),
//!     ("x-acs-action".to_owned(), "RunInstances".to_owned()),
//!     ("x-acs-version".to_owned(), "2014-05-26".to_owned()),
//!     ("x-acs-date".to_owned(), "2023-10-26T10:22:32Z".to_owned()),
//!     ("x-acs-signature-nonce".to_owned(), "3156853299f313e23d1673dc12e1703d".to_owned()),
//! ];
//! let query = [
//!     ("ImageId".to_owned(), "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd".to_owned()),
//!     ("RegionId".to_owned(), "cn-shanghai".to_owned()),
//! ];
//! let req = Acs3Request { method: "POST", path: "/", query: &query, headers: &headers, body: b"" };
//! let sig = sign("YourAccessKeyId", &SecretString::new("YourAccessKeySecret"), &req);
//! assert_eq!(sig.signature, "06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0");
//! ```

use http::{HeaderMap, HeaderName, HeaderValue};

use super::canonical::{percent_decode, rfc3986_encode};
use super::signing::{hmac_sha256, sha256_hex};
use crate::error::{Error, Result};
use crate::SecretString;

/// The algorithm name, first line of the string to sign and of `Authorization`.
pub const ALGORITHM: &str = "ACS3-HMAC-SHA256";

/// What the signer reads of a request.
#[derive(Debug, Clone, Copy)]
pub struct Acs3Request<'a> {
    /// HTTP method (`GET`, `POST`).
    pub method: &'a str,
    /// URL path (`/` for RPC-style APIs); encoded per segment, `/` kept.
    pub path: &'a str,
    /// Query parameters, not encoded.
    pub query: &'a [(String, String)],
    /// Every header that will be sent and signed: at least `host`, the `x-acs-*` headers and
    /// `content-type` when there is a body. `x-acs-content-sha256` is added by the signer.
    pub headers: &'a [(String, String)],
    /// The exact body bytes that will be sent (empty when none).
    pub body: &'a [u8],
}

/// The signature and every intermediate value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acs3Signature {
    /// `x-acs-content-sha256`: hex SHA-256 of the body.
    pub content_sha256: String,
    /// The canonical URI.
    pub canonical_uri: String,
    /// The canonical query string.
    pub canonical_query_string: String,
    /// `name:value\n` per signed header.
    pub canonical_headers: String,
    /// Signed header names joined by `;`.
    pub signed_headers: String,
    /// The canonical request.
    pub canonical_request: String,
    /// Hex SHA-256 of the canonical request.
    pub hashed_canonical_request: String,
    /// `ACS3-HMAC-SHA256\n<hashed canonical request>`.
    pub string_to_sign: String,
    /// Hex HMAC-SHA256 of the string to sign under the AccessKey secret.
    pub signature: String,
    /// The `Authorization` header value.
    pub authorization: String,
}

impl Acs3Signature {
    /// Adds `x-acs-content-sha256` and `Authorization` (marked sensitive) to `headers`.
    pub fn apply(&self, headers: &mut HeaderMap) -> Result<()> {
        let bad = || Error::config("the AccessKey id is not valid header text");
        headers.insert(
            HeaderName::from_static("x-acs-content-sha256"),
            HeaderValue::from_str(&self.content_sha256).map_err(|_| bad())?,
        );
        let mut auth = HeaderValue::from_str(&self.authorization).map_err(|_| bad())?;
        auth.set_sensitive(true);
        headers.insert(http::header::AUTHORIZATION, auth);
        Ok(())
    }
}

/// The canonical URI: each path segment RFC 3986-encoded (after decoding any escapes), `/` kept.
pub fn canonical_uri(path: &str) -> String {
    if path.is_empty() {
        return "/".to_owned();
    }
    path.split('/')
        .map(|seg| rfc3986_encode(&percent_decode(seg)))
        .collect::<Vec<_>>()
        .join("/")
}

/// The canonical query: `enc(key)=enc(value)` sorted by key (then value), joined by `&`.
pub fn canonical_query(query: &[(String, String)]) -> String {
    let mut pairs: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| (rfc3986_encode(k), rfc3986_encode(v)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Signs a request. Pure: the date and nonce are whatever the `x-acs-*` headers say.
pub fn sign(
    access_key_id: &str,
    access_key_secret: &SecretString,
    req: &Acs3Request<'_>,
) -> Acs3Signature {
    let content_sha256 = sha256_hex(req.body);
    let mut headers: Vec<(String, String)> = req
        .headers
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("x-acs-content-sha256"))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    headers.push(("x-acs-content-sha256".to_owned(), content_sha256.clone()));
    headers.sort_by(|a, b| a.0.cmp(&b.0));
    // Repeated names become one line with the values joined by `,`.
    let mut merged: Vec<(String, String)> = Vec::with_capacity(headers.len());
    for (k, v) in headers {
        match merged.last_mut() {
            Some((last, values)) if *last == k => {
                values.push(',');
                values.push_str(&v);
            }
            _ => merged.push((k, v)),
        }
    }
    let canonical_headers: String = merged.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed_headers = merged
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let canonical_uri = canonical_uri(req.path);
    let canonical_query_string = canonical_query(req.query);
    let canonical_request = format!(
        "{}\n{canonical_uri}\n{canonical_query_string}\n{canonical_headers}\n{signed_headers}\n{content_sha256}",
        req.method.to_ascii_uppercase()
    );
    let hashed_canonical_request = sha256_hex(canonical_request.as_bytes());
    let string_to_sign = format!("{ALGORITHM}\n{hashed_canonical_request}");
    let signature = hex::encode(hmac_sha256(
        access_key_secret.expose().as_bytes(),
        string_to_sign.as_bytes(),
    ));
    let authorization = format!(
        "{ALGORITHM} Credential={access_key_id},SignedHeaders={signed_headers},Signature={signature}"
    );
    Acs3Signature {
        content_sha256,
        canonical_uri,
        canonical_query_string,
        canonical_headers,
        signed_headers,
        canonical_request,
        hashed_canonical_request,
        string_to_sign,
        signature,
        authorization,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_and_query_are_rfc3986_encoded() {
        assert_eq!(canonical_uri(""), "/");
        assert_eq!(canonical_uri("/api/v1/a b"), "/api/v1/a%20b");
        assert_eq!(canonical_uri("/api/v1/a%20b"), "/api/v1/a%20b");
        let q = [
            ("b".to_owned(), "x/y".to_owned()),
            ("a".to_owned(), "1 2".to_owned()),
        ];
        assert_eq!(canonical_query(&q), "a=1%202&b=x%2Fy");
    }

    #[test]
    fn repeated_headers_are_joined_and_values_trimmed() {
        let headers = [
            ("Host".to_owned(), " h ".to_owned()),
            ("x-acs-a".to_owned(), "1".to_owned()),
            ("X-Acs-A".to_owned(), "2".to_owned()),
        ];
        let req = Acs3Request {
            method: "get",
            path: "/",
            query: &[],
            headers: &headers,
            body: b"",
        };
        let sig = sign("id", &SecretString::new("s"), &req);
        assert!(sig.canonical_headers.starts_with("host:h\nx-acs-a:1,2\n"));
        assert_eq!(sig.signed_headers, "host;x-acs-a;x-acs-content-sha256");
        assert!(sig.canonical_request.starts_with("GET\n/\n\n"));
    }
}
