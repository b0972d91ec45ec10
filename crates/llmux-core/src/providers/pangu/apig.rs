//! Huawei Cloud APIG AK/SK request signing (`SDK-HMAC-SHA256`, PROTOCOLS.md §5.2), as the
//! official `huaweicloudsdkcore` signer computes it. Pure: the caller supplies the date.
//!
//! Reproduces every case of `shared/vectors/huawei_sdk_hmac_sha256.json`.

use crate::providers::canonical::{percent_decode, rfc3986_encode};
use crate::providers::signing::{hmac_sha256, sha256_hex};
use crate::SecretString;

/// The algorithm name.
pub const ALGORITHM: &str = "SDK-HMAC-SHA256";
/// The payload hash used for bodies that are neither JSON nor BSON.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// What the signer reads of a request.
#[derive(Debug, Clone, Copy)]
pub struct ApigRequest<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// `Host` as sent (with the port when it is not the scheme's default).
    pub host: &'a str,
    /// The request path as sent (escapes are decoded before canonical re-encoding).
    pub path: &'a str,
    /// Query parameters, not encoded; a repeated name is a list value.
    pub query: &'a [(String, String)],
    /// The headers that will be sent besides `Host`, `X-Sdk-Date` and `Authorization`.
    pub headers: &'a [(String, String)],
    /// The exact body bytes.
    pub body: &'a [u8],
}

/// The signature, every intermediate value, and the headers to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApigSignature {
    /// The canonical URI (always ends with `/`).
    pub canonical_uri: String,
    /// The canonical query string.
    pub canonical_query_string: String,
    /// `name:value\n` per signed header.
    pub canonical_headers: String,
    /// Signed header names joined by `;`.
    pub signed_headers: String,
    /// Hex SHA-256 of the body, or `UNSIGNED-PAYLOAD`.
    pub hashed_payload: String,
    /// The canonical request.
    pub canonical_request: String,
    /// Hex SHA-256 of the canonical request.
    pub hashed_canonical_request: String,
    /// `SDK-HMAC-SHA256\n<date>\n<hashed canonical request>`.
    pub string_to_sign: String,
    /// Hex HMAC-SHA256 of the string to sign, keyed by the SK itself.
    pub signature: String,
    /// The `Authorization` header value.
    pub authorization: String,
    /// The request line target: the original path plus `?` and the canonical query, if any.
    pub request_uri: String,
    /// Headers the signer added and that must be sent: `X-Sdk-Date`, `X-Sdk-Content-Sha256`
    /// (only for unsigned payloads), `Host`, `Authorization`.
    pub added_headers: Vec<(String, String)>,
}

fn is_json_or_bson(content_type: &str) -> bool {
    content_type.starts_with("application/json") || content_type.starts_with("application/bson")
}

/// The canonical URI: decode, RFC 3986-encode each segment, and end with `/`.
pub fn canonical_uri(path: &str) -> String {
    let mut uri = percent_decode(path)
        .split('/')
        .map(rfc3986_encode)
        .collect::<Vec<_>>()
        .join("/");
    if !uri.ends_with('/') {
        uri.push('/');
    }
    uri
}

/// The canonical query: sorted by name then value, `enc(name)=enc(value)` joined by `&`.
pub fn canonical_query(query: &[(String, String)]) -> String {
    let mut pairs: Vec<&(String, String)> = query.iter().collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", rfc3986_encode(k), rfc3986_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Signs a request with an AK/SK pair at `x_sdk_date` (`YYYYMMDDTHHMMSSZ`).
pub fn sign(ak: &str, sk: &SecretString, x_sdk_date: &str, req: &ApigRequest<'_>) -> ApigSignature {
    let managed = |name: &str| {
        name.eq_ignore_ascii_case("host")
            || name.eq_ignore_ascii_case("x-sdk-date")
            || name.eq_ignore_ascii_case("authorization")
            || name.eq_ignore_ascii_case("x-sdk-content-sha256")
    };
    let mut all: Vec<(String, String)> = req
        .headers
        .iter()
        .filter(|(k, _)| !managed(k))
        .cloned()
        .collect();
    let content_type = req
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.as_str());
    let mut added = vec![("X-Sdk-Date".to_owned(), x_sdk_date.to_owned())];
    let unsigned = matches!(content_type, Some(ct) if !is_json_or_bson(ct));
    let hashed_payload = if unsigned {
        added.push((
            "X-Sdk-Content-Sha256".to_owned(),
            UNSIGNED_PAYLOAD.to_owned(),
        ));
        UNSIGNED_PAYLOAD.to_owned()
    } else {
        sha256_hex(req.body)
    };
    added.push(("Host".to_owned(), req.host.to_owned()));
    all.extend(added.iter().cloned());

    let mut signed: Vec<(String, String)> = all
        .iter()
        .filter(|(k, _)| !k.contains('_'))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    signed.sort_by(|a, b| a.0.cmp(&b.0));
    let canonical_headers: String = signed.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed_headers = signed
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let canonical_uri = canonical_uri(req.path);
    let canonical_query_string = canonical_query(req.query);
    let canonical_request = format!(
        "{}\n{canonical_uri}\n{canonical_query_string}\n{canonical_headers}\n{signed_headers}\n{hashed_payload}",
        req.method.to_ascii_uppercase()
    );
    let hashed_canonical_request = sha256_hex(canonical_request.as_bytes());
    let string_to_sign = format!("{ALGORITHM}\n{x_sdk_date}\n{hashed_canonical_request}");
    let signature = hex::encode(hmac_sha256(
        sk.expose().as_bytes(),
        string_to_sign.as_bytes(),
    ));
    let authorization =
        format!("{ALGORITHM} Access={ak}, SignedHeaders={signed_headers}, Signature={signature}");
    added.push(("Authorization".to_owned(), authorization.clone()));
    let request_uri = if canonical_query_string.is_empty() {
        req.path.to_owned()
    } else {
        format!("{}?{canonical_query_string}", req.path)
    };
    ApigSignature {
        canonical_uri,
        canonical_query_string,
        canonical_headers,
        signed_headers,
        hashed_payload,
        canonical_request,
        hashed_canonical_request,
        string_to_sign,
        signature,
        authorization,
        request_uri,
        added_headers: added,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_uri_ends_with_a_slash_once() {
        assert_eq!(canonical_uri("/a/b"), "/a/b/");
        assert_eq!(canonical_uri("/a/b/"), "/a/b/");
        assert_eq!(canonical_uri("/a%20b"), "/a%20b/");
    }

    #[test]
    fn headers_with_underscores_are_sent_but_not_signed() {
        let headers = [
            ("Content-Type".to_owned(), "application/json".to_owned()),
            ("X_Custom".to_owned(), "1".to_owned()),
        ];
        let req = ApigRequest {
            method: "POST",
            host: "h",
            path: "/p",
            query: &[],
            headers: &headers,
            body: b"{}",
        };
        let sig = sign("ak", &SecretString::new("sk"), "20240101T000000Z", &req);
        assert_eq!(sig.signed_headers, "content-type;host;x-sdk-date");
        assert_eq!(sig.hashed_payload, sha256_hex(b"{}"));
    }

    #[test]
    fn list_query_values_sort_by_value() {
        let q = [
            ("b".to_owned(), "2".to_owned()),
            ("a".to_owned(), "z".to_owned()),
            ("a".to_owned(), "y".to_owned()),
        ];
        assert_eq!(canonical_query(&q), "a=y&a=z&b=2");
    }
}
