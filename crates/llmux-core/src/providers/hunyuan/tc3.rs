//! Tencent Cloud API 3.0 signature v3 (TC3-HMAC-SHA256), as a pure function of the request
//! parts, the exact body bytes and the timestamp (PROTOCOLS.md §3.2).

use std::fmt;

use crate::providers::signing::{
    hex_lower, hmac_sha256, hmac_sha256_hex, sha256_hex, utc_date_iso,
};

/// The algorithm name that opens the string to sign and the `Authorization` header.
pub const ALGORITHM: &str = "TC3-HMAC-SHA256";

/// What a TC3 signature covers, besides the body and the timestamp.
#[derive(Clone, Copy)]
pub struct Inputs<'a> {
    /// SecretId (appears in the `Authorization` header).
    pub secret_id: &'a str,
    /// SecretKey (never leaves the signer).
    pub secret_key: &'a str,
    /// Service name in the credential scope (`hunyuan`, `cvm`).
    pub service: &'a str,
    /// The `Host` header as sent (with `:port` when the URL has a non-default one).
    pub host: &'a str,
    /// `POST` or `GET`.
    pub method: &'a str,
    /// The query string exactly as sent (empty for POST).
    pub query: &'a str,
    /// The `Content-Type` header as sent.
    pub content_type: &'a str,
    /// Further signed headers as (name, value); names and values are lower-cased and trimmed.
    /// The official SDKs sign none (only `content-type;host`).
    pub extra_headers: &'a [(&'a str, &'a str)],
}

impl fmt::Debug for Inputs<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inputs")
            .field("secret_id", &self.secret_id)
            .field("secret_key", &"[REDACTED]")
            .field("service", &self.service)
            .field("host", &self.host)
            .field("method", &self.method)
            .field("query", &self.query)
            .field("content_type", &self.content_type)
            .field("extra_headers", &self.extra_headers)
            .finish()
    }
}

/// Every intermediate value of one signature, for tests against the vendor's vectors.
/// `Debug` leaves out the derived keys.
#[derive(Clone, PartialEq, Eq)]
pub struct Signed {
    /// Hex SHA-256 of the body.
    pub hashed_request_payload: String,
    /// `name:value\n` per signed header, sorted by name.
    pub canonical_headers: String,
    /// Signed header names joined by `;`.
    pub signed_headers: String,
    /// The canonical request.
    pub canonical_request: String,
    /// Hex SHA-256 of the canonical request.
    pub hashed_canonical_request: String,
    /// UTC date of the timestamp, `YYYY-MM-DD`.
    pub date: String,
    /// `date/service/tc3_request`.
    pub credential_scope: String,
    /// The string to sign.
    pub string_to_sign: String,
    /// Hex of `kDate` (a derived key: keep out of logs).
    pub secret_date_hex: String,
    /// Hex of `kService` (a derived key: keep out of logs).
    pub secret_service_hex: String,
    /// Hex of `kSigning` (a derived key: keep out of logs).
    pub secret_signing_hex: String,
    /// Hex HMAC of the string to sign.
    pub signature: String,
    /// The `Authorization` header value.
    pub authorization: String,
}

impl fmt::Debug for Signed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signed")
            .field("canonical_request", &self.canonical_request)
            .field("string_to_sign", &self.string_to_sign)
            .field("signature", &self.signature)
            .finish_non_exhaustive()
    }
}

/// Signs one request: `body` is the exact byte string that is sent (empty for GET),
/// `timestamp` the `X-TC-Timestamp` value in Unix seconds.
pub fn sign(inputs: &Inputs<'_>, body: &[u8], timestamp: u64) -> Signed {
    let hashed_request_payload = sha256_hex(body);
    let mut headers: Vec<(String, String)> = vec![
        (
            "content-type".to_owned(),
            inputs.content_type.trim().to_ascii_lowercase(),
        ),
        ("host".to_owned(), inputs.host.trim().to_ascii_lowercase()),
    ];
    for (name, value) in inputs.extra_headers {
        let name = name.trim().to_ascii_lowercase();
        let value = value.trim().to_ascii_lowercase();
        match headers.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => headers.push((name, value)),
        }
    }
    headers.sort_by(|a, b| a.0.cmp(&b.0));
    let canonical_headers: String = headers.iter().map(|(n, v)| format!("{n}:{v}\n")).collect();
    let signed_headers = headers
        .iter()
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let canonical_request = format!(
        "{}\n/\n{}\n{canonical_headers}\n{signed_headers}\n{hashed_request_payload}",
        inputs.method.to_ascii_uppercase(),
        inputs.query,
    );
    let hashed_canonical_request = sha256_hex(canonical_request.as_bytes());
    let date = utc_date_iso(timestamp);
    let credential_scope = format!("{date}/{}/tc3_request", inputs.service);
    let string_to_sign =
        format!("{ALGORITHM}\n{timestamp}\n{credential_scope}\n{hashed_canonical_request}");
    let k_date = hmac_sha256(
        format!("TC3{}", inputs.secret_key).as_bytes(),
        date.as_bytes(),
    );
    let k_service = hmac_sha256(&k_date, inputs.service.as_bytes());
    let k_signing = hmac_sha256(&k_service, b"tc3_request");
    let signature = hmac_sha256_hex(&k_signing, string_to_sign.as_bytes());
    let authorization = format!(
        "{ALGORITHM} Credential={}/{credential_scope}, SignedHeaders={signed_headers}, Signature={signature}",
        inputs.secret_id
    );
    Signed {
        hashed_request_payload,
        canonical_headers,
        signed_headers,
        canonical_request,
        hashed_canonical_request,
        date,
        credential_scope,
        string_to_sign,
        secret_date_hex: hex_lower(&k_date),
        secret_service_hex: hex_lower(&k_service),
        secret_signing_hex: hex_lower(&k_signing),
        signature,
        authorization,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_the_key_and_derived_keys() {
        let inputs = Inputs {
            secret_id: "AKIDx",
            secret_key: "very-secret-key",
            service: "hunyuan",
            host: "hunyuan.tencentcloudapi.com",
            method: "POST",
            query: "",
            content_type: "application/json",
            extra_headers: &[],
        };
        let signed = sign(&inputs, b"{}", 1_700_000_000);
        assert!(!format!("{inputs:?}").contains("very-secret"));
        let dbg = format!("{signed:?}");
        assert!(!dbg.contains(&signed.secret_signing_hex));
        assert!(!dbg.contains(&signed.secret_date_hex));
    }
}
