//! Tencent Cloud API 3.0 signatures (TC3-HMAC-SHA256, PROTOCOLS 3.2), verified by recomputing them from the request.
//!
//! The emulator rebuilds the canonical request from what it received: the method, path `/`, the raw query, the
//! headers named in `SignedHeaders` (each `lowercase(name):lowercase(trim(value))`, in the order the client listed
//! them), and SHA-256 of the exact body bytes (or of `UNSIGNED-PAYLOAD` when `X-TC-Content-SHA256` says so).
//! The service comes from the credential scope, because on loopback the `Host` header is `127.0.0.1:P`.

use axum::http::HeaderMap;

use super::encoding::{self, constant_time_eq, hmac_sha256, sha256_hex};
use crate::clock::utc_date;

/// The algorithm name that starts the `Authorization` header and the string to sign.
pub(crate) const ALGORITHM: &str = "TC3-HMAC-SHA256";

/// Largest accepted difference between `X-TC-Timestamp` and the server clock, in seconds.
pub(crate) const MAX_SKEW_SECS: i64 = 300;

/// The fields of `Authorization: TC3-HMAC-SHA256 Credential=<id>/<date>/<service>/tc3_request, SignedHeaders=…,
/// Signature=…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Authorization {
    pub secret_id: String,
    pub date: String,
    pub service: String,
    pub signed_headers: String,
    pub signature: String,
}

/// Parses the `Authorization` header; `Err` says what is wrong.
pub(crate) fn parse_authorization(value: &str) -> Result<Authorization, String> {
    let rest = value
        .trim()
        .strip_prefix(ALGORITHM)
        .ok_or_else(|| format!("the algorithm must be {ALGORITHM}"))?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let Some((k, v)) = part.trim().split_once('=') else {
            continue;
        };
        match k.trim() {
            "Credential" => credential = Some(v.trim()),
            "SignedHeaders" => signed = Some(v.trim()),
            "Signature" => signature = Some(v.trim()),
            _ => {}
        }
    }
    let credential = credential.ok_or("Credential is missing")?;
    let scope: Vec<&str> = credential.split('/').collect();
    let [secret_id, date, service, terminator] = scope[..] else {
        return Err("Credential must be <SecretId>/<date>/<service>/tc3_request".to_owned());
    };
    if terminator != "tc3_request" || secret_id.is_empty() {
        return Err("Credential must be <SecretId>/<date>/<service>/tc3_request".to_owned());
    }
    Ok(Authorization {
        secret_id: secret_id.to_owned(),
        date: date.to_owned(),
        service: service.to_owned(),
        signed_headers: signed.ok_or("SignedHeaders is missing")?.to_owned(),
        signature: signature.ok_or("Signature is missing")?.to_owned(),
    })
}

/// `HashedRequestPayload`: SHA-256 of the body, or of the literal `UNSIGNED-PAYLOAD` when
/// `X-TC-Content-SHA256: UNSIGNED-PAYLOAD` is sent.
pub(crate) fn payload_hash(headers: &HeaderMap, body: &[u8]) -> String {
    let unsigned = headers
        .get("x-tc-content-sha256")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() == "UNSIGNED-PAYLOAD");
    sha256_hex(if unsigned { b"UNSIGNED-PAYLOAD" } else { body })
}

/// The canonical request; `Err` names a signed header the request does not carry.
pub(crate) fn canonical_request(
    method: &str,
    query: &str,
    headers: &HeaderMap,
    signed_headers: &str,
    payload_hash: &str,
) -> Result<String, String> {
    let mut canonical_headers = String::new();
    for name in signed_headers.split(';') {
        let name = name.trim().to_ascii_lowercase();
        let value = headers
            .get(name.as_str())
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| format!("signed header {name} is not in the request"))?;
        canonical_headers.push_str(&format!("{name}:{}\n", value.trim().to_lowercase()));
    }
    Ok(format!(
        "{method}\n/\n{query}\n{canonical_headers}\n{signed_headers}\n{payload_hash}"
    ))
}

/// `CredentialScope` = `<date>/<service>/tc3_request`.
pub(crate) fn credential_scope(date: &str, service: &str) -> String {
    format!("{date}/{service}/tc3_request")
}

/// The string to sign for a canonical request.
pub(crate) fn string_to_sign(timestamp: &str, scope: &str, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{timestamp}\n{scope}\n{}",
        sha256_hex(canonical_request.as_bytes())
    )
}

/// The key chain `[kDate, kService, kSigning]`.
pub(crate) fn signing_keys(secret_key: &str, date: &str, service: &str) -> [Vec<u8>; 3] {
    let k_date = hmac_sha256(format!("TC3{secret_key}").as_bytes(), date.as_bytes());
    let k_service = hmac_sha256(&k_date, service.as_bytes());
    let k_signing = hmac_sha256(&k_service, b"tc3_request");
    [k_date, k_service, k_signing]
}

/// Lower-case hex signature of a string to sign.
pub(crate) fn signature(
    secret_key: &str,
    date: &str,
    service: &str,
    string_to_sign: &str,
) -> String {
    let [_, _, k_signing] = signing_keys(secret_key, date, service);
    encoding::hex(&hmac_sha256(&k_signing, string_to_sign.as_bytes()))
}

/// The credentials a TC3 verifier accepts.
pub(crate) struct Credentials<'a> {
    pub secret_id: &'a str,
    pub secret_key: &'a str,
    /// When set, `X-TC-Token` must equal it.
    pub token: Option<&'a str>,
    /// The service the scope must name (`hunyuan`).
    pub service: &'a str,
}

/// Why a request failed verification; each maps to a Tencent error code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tc3Error {
    /// `AuthFailure.InvalidAuthorization`: the header is missing or not TC3.
    InvalidAuthorization(String),
    /// `MissingParameter`: no usable `X-TC-Timestamp`.
    MissingTimestamp,
    /// `AuthFailure.SignatureExpire`: the timestamp is more than [`MAX_SKEW_SECS`] away from `now`.
    Expired { timestamp: i64, now: i64 },
    /// `AuthFailure.SecretIdNotFound`.
    UnknownSecretId,
    /// `AuthFailure.TokenFailure`: `X-TC-Token` missing or wrong while a token is configured.
    TokenFailure,
    /// `AuthFailure.SignatureFailure`, with the reason (logged in the message).
    BadSignature(String),
}

impl Tc3Error {
    /// The Tencent error code.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            Tc3Error::InvalidAuthorization(_) => "AuthFailure.InvalidAuthorization",
            Tc3Error::MissingTimestamp => "MissingParameter",
            Tc3Error::Expired { .. } => "AuthFailure.SignatureExpire",
            Tc3Error::UnknownSecretId => "AuthFailure.SecretIdNotFound",
            Tc3Error::TokenFailure => "AuthFailure.TokenFailure",
            Tc3Error::BadSignature(_) => "AuthFailure.SignatureFailure",
        }
    }

    /// The error message.
    pub(crate) fn message(&self) -> String {
        match self {
            Tc3Error::InvalidAuthorization(why) => {
                format!("Authorization header is invalid: {why}.")
            }
            Tc3Error::MissingTimestamp => {
                "The request is missing a required parameter `X-TC-Timestamp`.".to_owned()
            }
            Tc3Error::Expired { timestamp, now } => format!(
                "Signature expired. Timestamp: {timestamp}, server time: {now}; they must be within {MAX_SKEW_SECS} seconds of each other."
            ),
            Tc3Error::UnknownSecretId => {
                "The SecretId is not found, please ensure that your SecretId is correct.".to_owned()
            }
            Tc3Error::TokenFailure => "Token verification failed.".to_owned(),
            Tc3Error::BadSignature(why) => format!(
                "The provided credentials could not be validated. Please check your signature is correct. ({why})"
            ),
        }
    }
}

/// Verifies a request's TC3 signature against `creds` at server time `now` (Unix seconds).
///
/// Order: header shape, timestamp presence, clock skew, SecretId, token, scope (service and date), signature.
pub(crate) fn verify(
    method: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
    creds: &Credentials<'_>,
    now: i64,
) -> Result<(), Tc3Error> {
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let auth = header("authorization")
        .ok_or_else(|| Tc3Error::InvalidAuthorization("the header is missing".to_owned()))
        .and_then(|v| parse_authorization(v).map_err(Tc3Error::InvalidAuthorization))?;
    let ts_text = header("x-tc-timestamp")
        .map(str::trim)
        .ok_or(Tc3Error::MissingTimestamp)?;
    let timestamp: i64 = ts_text.parse().map_err(|_| Tc3Error::MissingTimestamp)?;
    if (now - timestamp).abs() > MAX_SKEW_SECS {
        return Err(Tc3Error::Expired { timestamp, now });
    }
    if auth.secret_id != creds.secret_id {
        return Err(Tc3Error::UnknownSecretId);
    }
    if let Some(token) = creds.token {
        if header("x-tc-token") != Some(token) {
            return Err(Tc3Error::TokenFailure);
        }
    }
    if auth.service != creds.service {
        return Err(Tc3Error::BadSignature(format!(
            "the credential scope names service {:?}, expected {:?}",
            auth.service, creds.service
        )));
    }
    let date = utc_date(timestamp);
    if auth.date != date {
        return Err(Tc3Error::BadSignature(format!(
            "the credential date {} is not the UTC date {date} of X-TC-Timestamp",
            auth.date
        )));
    }
    let signed: Vec<String> = auth
        .signed_headers
        .split(';')
        .map(|s| s.trim().to_ascii_lowercase())
        .collect();
    for required in ["content-type", "host"] {
        if !signed.iter().any(|s| s == required) {
            return Err(Tc3Error::BadSignature(format!(
                "SignedHeaders must include {required}"
            )));
        }
    }
    let canonical = canonical_request(
        method,
        query,
        headers,
        &auth.signed_headers,
        &payload_hash(headers, body),
    )
    .map_err(Tc3Error::BadSignature)?;
    let sts = string_to_sign(ts_text, &credential_scope(&date, &auth.service), &canonical);
    let expected = signature(creds.secret_key, &date, &auth.service, &sts);
    if constant_time_eq(expected.as_bytes(), auth.signature.as_bytes()) {
        Ok(())
    } else {
        Err(Tc3Error::BadSignature("signature mismatch".to_owned()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use axum::http::{HeaderName, HeaderValue};
    use serde_json::Value;

    use super::*;

    fn vectors() -> Value {
        serde_json::from_str(include_str!("../../fixtures/hunyuan/tc3.json")).unwrap()
    }

    fn header_map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn s<'a>(v: &'a Value, k: &str) -> &'a str {
        v[k].as_str().unwrap_or_else(|| panic!("{k} missing"))
    }

    #[test]
    fn verifies_every_sdk_vector_and_its_intermediate_values() {
        let doc = vectors();
        let cases = doc["vectors"].as_array().unwrap();
        assert_eq!(cases.len(), 4);
        for case in cases {
            let name = s(case, "name");
            let (i, e) = (&case["inputs"], &case["expected"]);
            let pairs: Vec<(String, String)> = e["headers"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                .collect();
            let refs: Vec<(&str, &str)> = pairs
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let headers = header_map(&refs);
            let body = s(e, "request_body").as_bytes();
            let ts = i["timestamp"].as_i64().unwrap();
            let auth = parse_authorization(s(e, "authorization")).unwrap();
            assert_eq!(auth.signed_headers, s(e, "signed_headers"), "{name}");
            assert_eq!(utc_date(ts), s(e, "date"), "{name}");
            assert_eq!(payload_hash(&headers, body), s(e, "hashed_request_payload"));
            let canonical = canonical_request(
                s(i, "method"),
                s(e, "request_query"),
                &headers,
                &auth.signed_headers,
                s(e, "hashed_request_payload"),
            )
            .unwrap();
            assert_eq!(canonical, s(e, "canonical_request"), "{name}");
            assert_eq!(
                sha256_hex(canonical.as_bytes()),
                s(e, "hashed_canonical_request")
            );
            let scope = credential_scope(s(e, "date"), s(i, "service"));
            assert_eq!(scope, s(e, "credential_scope"));
            let sts = string_to_sign(&ts.to_string(), &scope, &canonical);
            assert_eq!(sts, s(e, "string_to_sign"), "{name}");
            let keys = signing_keys(s(i, "secret_key"), s(e, "date"), s(i, "service"));
            assert_eq!(encoding::hex(&keys[0]), s(e, "secret_date_hex"));
            assert_eq!(encoding::hex(&keys[1]), s(e, "secret_service_hex"));
            assert_eq!(encoding::hex(&keys[2]), s(e, "secret_signing_hex"));
            assert_eq!(
                signature(s(i, "secret_key"), s(e, "date"), s(i, "service"), &sts),
                s(e, "signature")
            );
            let creds = Credentials {
                secret_id: s(i, "secret_id"),
                secret_key: s(i, "secret_key"),
                token: i["token"].as_str(),
                service: s(i, "service"),
            };
            let method = s(i, "method");
            let query = s(e, "request_query");
            assert_eq!(
                verify(method, query, &headers, body, &creds, ts),
                Ok(()),
                "{name}"
            );
            assert_eq!(
                verify(method, query, &headers, body, &creds, ts + MAX_SKEW_SECS),
                Ok(())
            );
            // Tampering with anything signed breaks it.
            let mut tampered = body.to_vec();
            tampered.extend_from_slice(b" ");
            assert!(matches!(
                verify(method, query, &headers, &tampered, &creds, ts),
                Err(Tc3Error::BadSignature(_))
            ));
            let wrong_key = Credentials {
                secret_key: "nope",
                ..creds
            };
            assert!(matches!(
                verify(method, query, &headers, body, &wrong_key, ts),
                Err(Tc3Error::BadSignature(_))
            ));
            assert_eq!(
                verify(
                    method,
                    query,
                    &headers,
                    body,
                    &creds,
                    ts + MAX_SKEW_SECS + 1
                ),
                Err(Tc3Error::Expired {
                    timestamp: ts,
                    now: ts + MAX_SKEW_SECS + 1
                })
            );
            let other_id = Credentials {
                secret_id: "AKIDother",
                ..creds
            };
            assert_eq!(
                verify(method, query, &headers, body, &other_id, ts),
                Err(Tc3Error::UnknownSecretId)
            );
        }
    }

    #[test]
    fn reproduces_the_published_reference() {
        let doc = vectors();
        let r = &doc["published_reference"];
        let (i, e) = (&r["inputs"], &r["expected"]);
        let ts = i["timestamp"].as_i64().unwrap();
        let ts_text = ts.to_string();
        let headers = header_map(&[
            ("content-type", s(i, "content_type")),
            ("host", s(i, "host")),
            ("x-tc-action", "DescribeInstances"),
            ("x-tc-timestamp", &ts_text),
            ("authorization", s(e, "authorization")),
        ]);
        let body = s(i, "body").as_bytes();
        let creds = Credentials {
            secret_id: s(i, "secret_id"),
            secret_key: s(i, "secret_key"),
            token: None,
            service: "cvm",
        };
        assert_eq!(verify("POST", "", &headers, body, &creds, ts), Ok(()));
        assert_eq!(payload_hash(&headers, body), s(e, "hashed_request_payload"));
        // The newer revision also signs x-tc-action, whose value is lower-cased.
        let newer = &r["newer_revision"];
        let canonical = canonical_request(
            "POST",
            "",
            &headers,
            "content-type;host;x-tc-action",
            s(e, "hashed_request_payload"),
        )
        .unwrap();
        assert_eq!(canonical, s(newer, "canonical_request"));
        assert_eq!(
            sha256_hex(canonical.as_bytes()),
            s(newer, "hashed_canonical_request")
        );
    }

    #[test]
    fn rejects_malformed_headers_and_scopes() {
        let creds = Credentials {
            secret_id: "AKIDemulator",
            secret_key: "k",
            token: Some("tok"),
            service: "hunyuan",
        };
        let h = |auth: &str, extra: &[(&str, &str)]| {
            let mut pairs = vec![
                ("authorization", auth),
                ("x-tc-timestamp", "1700000000"),
                ("content-type", "application/json"),
                ("host", "127.0.0.1:1"),
            ];
            pairs.extend_from_slice(extra);
            header_map(&pairs)
        };
        let v = |headers: &HeaderMap| verify("POST", "", headers, b"{}", &creds, 1_700_000_000);
        assert!(matches!(
            v(&h("Bearer x", &[])),
            Err(Tc3Error::InvalidAuthorization(_))
        ));
        assert!(matches!(
            v(&h("TC3-HMAC-SHA256 Credential=AKIDemulator/2023-11-14/hunyuan, SignedHeaders=content-type;host, Signature=00", &[])),
            Err(Tc3Error::InvalidAuthorization(_))
        ));
        let good = "TC3-HMAC-SHA256 Credential=AKIDemulator/2023-11-14/hunyuan/tc3_request, SignedHeaders=content-type;host, Signature=00";
        assert_eq!(v(&h(good, &[])), Err(Tc3Error::TokenFailure));
        assert!(matches!(
            v(&h(good, &[("x-tc-token", "tok")])),
            Err(Tc3Error::BadSignature(m)) if m == "signature mismatch"
        ));
        let wrong_date = good.replace("2023-11-14", "2023-11-15");
        assert!(matches!(
            v(&h(&wrong_date, &[("x-tc-token", "tok")])),
            Err(Tc3Error::BadSignature(m)) if m.contains("date")
        ));
        let wrong_service = good.replace("/hunyuan/", "/cvm/");
        assert!(matches!(
            v(&h(&wrong_service, &[("x-tc-token", "tok")])),
            Err(Tc3Error::BadSignature(m)) if m.contains("service")
        ));
        let no_host = good.replace("content-type;host", "content-type");
        assert!(matches!(
            v(&h(&no_host, &[("x-tc-token", "tok")])),
            Err(Tc3Error::BadSignature(m)) if m.contains("host")
        ));
    }
}
