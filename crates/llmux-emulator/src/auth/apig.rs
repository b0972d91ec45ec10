//! Huawei Cloud APIG AK/SK request signing, `SDK-HMAC-SHA256` (PROTOCOLS.md 5.2): the emulator rebuilds the
//! canonical request from what arrived and checks the `Authorization` signature and the `X-Sdk-Date` window.

use crate::auth::encoding;

/// The algorithm name that starts `Authorization` and the string to sign.
pub(crate) const ALGORITHM: &str = "SDK-HMAC-SHA256";

/// Largest allowed distance between `X-Sdk-Date` and the emulator clock.
pub(crate) const MAX_SKEW_SECS: i64 = 15 * 60;

/// A request as it arrived, for signature checks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SignedRequest<'a> {
    pub method: &'a str,
    /// The path as sent (percent-encoded or not), without the query.
    pub path: &'a str,
    /// The raw query string.
    pub query: Option<&'a str>,
    /// Headers with lower-case names.
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

impl SignedRequest<'_> {
    /// All values of a header joined by `,`, or `None` when absent.
    fn header(&self, name: &str) -> Option<String> {
        let values: Vec<&str> = self
            .headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect();
        (!values.is_empty()).then(|| values.join(","))
    }
}

/// Why a signed request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ApigError {
    /// `Authorization` is not `SDK-HMAC-SHA256 Access=…, SignedHeaders=…, Signature=…`, `host` or
    /// `x-sdk-date` is not signed, or a signed header is missing.
    Malformed,
    /// `Access` is not the configured AK.
    UnknownAk,
    /// `X-Sdk-Date` is unparseable or more than [`MAX_SKEW_SECS`] from the emulator clock.
    Expired,
    /// The signature does not match.
    BadSignature,
}

impl ApigError {
    /// `error_msg` of the 401 body (`error_code` is always `APIG.0301`).
    pub(crate) fn message(self) -> &'static str {
        match self {
            ApigError::Malformed => "Incorrect IAM authentication information: Authorization format incorrect, expected SDK-HMAC-SHA256 Access=..., SignedHeaders=..., Signature=... with host and x-sdk-date signed",
            ApigError::UnknownAk => "Incorrect IAM authentication information: ak not found",
            ApigError::Expired => "Incorrect IAM authentication information: signature expired, X-Sdk-Date is more than 15 minutes from the server time",
            ApigError::BadSignature => "Incorrect IAM authentication information: verify aksk signature fail, the signature does not match the canonical request",
        }
    }
}

/// Canonical URI: percent-decode, RFC 3986-encode each `/` segment, and end with `/`.
pub(crate) fn canonical_uri(path: &str) -> String {
    let decoded = String::from_utf8_lossy(&encoding::percent_decode(path, false)).into_owned();
    let mut uri = decoded
        .split('/')
        .map(|seg| encoding::rfc3986(seg.as_bytes()))
        .collect::<Vec<_>>()
        .join("/");
    if !uri.ends_with('/') {
        uri.push('/');
    }
    uri
}

/// Canonical query: decoded pairs sorted by name then value, each RFC 3986-encoded as `name=value`, joined by `&`.
pub(crate) fn canonical_query(query: Option<&str>) -> String {
    let mut pairs = encoding::query_pairs(query.unwrap_or_default(), false);
    pairs.sort();
    pairs
        .iter()
        .map(|(n, v)| {
            format!(
                "{}={}",
                encoding::rfc3986(n.as_bytes()),
                encoding::rfc3986(v.as_bytes())
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Hex SHA-256 of the body, or `UNSIGNED-PAYLOAD` when `X-Sdk-Content-Sha256` says so.
pub(crate) fn payload_hash(req: &SignedRequest<'_>) -> String {
    if req.header("x-sdk-content-sha256").as_deref() == Some("UNSIGNED-PAYLOAD") {
        "UNSIGNED-PAYLOAD".to_owned()
    } else {
        encoding::hex(&encoding::sha256(req.body))
    }
}

/// The canonical request over `signed` (lower-case names in the given order); `None` if one is absent.
pub(crate) fn canonical_request(req: &SignedRequest<'_>, signed: &[String]) -> Option<String> {
    let mut headers = String::new();
    for name in signed {
        let value = req.header(name)?;
        headers.push_str(&format!("{name}:{}\n", value.trim()));
    }
    Some(format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method,
        canonical_uri(req.path),
        canonical_query(req.query),
        headers,
        signed.join(";"),
        payload_hash(req)
    ))
}

/// `SDK-HMAC-SHA256\n<date>\n<hex sha256 of the canonical request>`.
pub(crate) fn string_to_sign(sdk_date: &str, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{sdk_date}\n{}",
        encoding::hex(&encoding::sha256(canonical_request.as_bytes()))
    )
}

/// The parts of an `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Authorization {
    pub access: String,
    pub signed_headers: Vec<String>,
    pub signature: String,
}

/// Parses `SDK-HMAC-SHA256 Access=<AK>, SignedHeaders=<h1;h2>, Signature=<hex>`.
pub(crate) fn parse_authorization(v: &str) -> Option<Authorization> {
    let rest = v.trim().strip_prefix(ALGORITHM)?.strip_prefix(' ')?;
    let (mut access, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (k, val) = part.trim().split_once('=')?;
        match k {
            "Access" => access = Some(val.to_owned()),
            "SignedHeaders" => signed = Some(val.to_owned()),
            "Signature" => signature = Some(val.to_owned()),
            _ => return None,
        }
    }
    let signed_headers: Vec<String> = signed?.split(';').map(str::to_owned).collect();
    Some(Authorization {
        access: access?,
        signed_headers,
        signature: signature?,
    })
}

/// Verifies a signed request against one AK/SK pair at `now` (Unix seconds).
pub(crate) fn verify(
    req: &SignedRequest<'_>,
    ak: &str,
    sk: &str,
    now: i64,
) -> Result<(), ApigError> {
    let auth = req
        .header("authorization")
        .as_deref()
        .and_then(parse_authorization)
        .ok_or(ApigError::Malformed)?;
    let signs = |h: &str| auth.signed_headers.iter().any(|s| s == h);
    if !signs("host") || !signs("x-sdk-date") {
        return Err(ApigError::Malformed);
    }
    let date = req.header("x-sdk-date").ok_or(ApigError::Malformed)?;
    let at = crate::clock::parse_compact(&date).ok_or(ApigError::Expired)?;
    if (now - at).abs() > MAX_SKEW_SECS {
        return Err(ApigError::Expired);
    }
    if auth.access != ak {
        return Err(ApigError::UnknownAk);
    }
    let canonical = canonical_request(req, &auth.signed_headers).ok_or(ApigError::Malformed)?;
    let expected = encoding::unhex(&auth.signature).ok_or(ApigError::BadSignature)?;
    let sts = string_to_sign(&date, &canonical);
    if encoding::hmac_sha256_verify(sk.as_bytes(), sts.as_bytes(), &expected) {
        Ok(())
    } else {
        Err(ApigError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::Value;

    struct Case {
        name: String,
        ak: String,
        sk: String,
        now: i64,
        method: String,
        path: String,
        query: Option<String>,
        headers: Vec<(String, String)>,
        body: String,
        expected: Value,
    }

    fn cases() -> Vec<Case> {
        let v: Value =
            serde_json::from_str(include_str!("../../fixtures/pangu/sdk_hmac_sha256.json"))
                .unwrap();
        v["vectors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                let i = &v["inputs"];
                let e = &v["expected"];
                let s = |x: &Value| x.as_str().unwrap().to_owned();
                let request_uri = s(&e["request_uri"]);
                let (path, query) = match request_uri.split_once('?') {
                    Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
                    None => (request_uri, None),
                };
                Case {
                    name: s(&v["name"]),
                    ak: s(&i["ak"]),
                    sk: s(&i["sk"]),
                    now: crate::clock::parse_compact(i["x_sdk_date"].as_str().unwrap()).unwrap(),
                    method: s(&i["method"]),
                    path,
                    query,
                    headers: e["headers"]
                        .as_object()
                        .unwrap()
                        .iter()
                        .map(|(n, v)| (n.to_ascii_lowercase(), s(v)))
                        .collect(),
                    body: i["body"].as_str().unwrap_or_default().to_owned(),
                    expected: e.clone(),
                }
            })
            .collect()
    }

    fn req(c: &Case) -> SignedRequest<'_> {
        SignedRequest {
            method: &c.method,
            path: &c.path,
            query: c.query.as_deref(),
            headers: &c.headers,
            body: c.body.as_bytes(),
        }
    }

    #[test]
    fn every_vector_rebuilds_the_canonical_request_and_verifies() {
        let cases = cases();
        assert!(cases.len() >= 4);
        for c in &cases {
            let r = req(c);
            let e = &c.expected;
            let auth = parse_authorization(e["authorization"].as_str().unwrap()).unwrap();
            assert_eq!(
                auth.signed_headers.join(";"),
                e["signed_headers"],
                "{}",
                c.name
            );
            assert_eq!(canonical_uri(&c.path), e["canonical_uri"], "{}", c.name);
            assert_eq!(
                canonical_query(c.query.as_deref()),
                e["canonical_query_string"]
            );
            assert_eq!(payload_hash(&r), e["hashed_payload"], "{}", c.name);
            let canonical = canonical_request(&r, &auth.signed_headers).unwrap();
            assert_eq!(canonical, e["canonical_request"], "{}", c.name);
            let date = r.header("x-sdk-date").unwrap();
            assert_eq!(string_to_sign(&date, &canonical), e["string_to_sign"]);
            assert_eq!(verify(&r, &c.ak, &c.sk, c.now), Ok(()), "{}", c.name);
            assert_eq!(verify(&r, &c.ak, &c.sk, c.now + 900), Ok(()));
            assert_eq!(
                verify(&r, &c.ak, &c.sk, c.now - 901),
                Err(ApigError::Expired)
            );
            assert_eq!(
                verify(&r, "OTHERAK", &c.sk, c.now),
                Err(ApigError::UnknownAk)
            );
            assert_eq!(
                verify(&r, &c.ak, "other-sk", c.now),
                Err(ApigError::BadSignature)
            );
        }
    }

    #[test]
    fn tampering_with_body_path_query_or_signed_headers_fails() {
        let cases = cases();
        let c = cases
            .iter()
            .find(|c| c.name == "pangu_chat_post_json")
            .unwrap();
        let mut r = req(c);
        r.body = b"{\"messages\":[]}";
        assert_eq!(
            verify(&r, &c.ak, &c.sk, c.now),
            Err(ApigError::BadSignature)
        );
        let mut r = req(c);
        r.path = "/v1/other/deployments/dep-001/chat/completions";
        assert_eq!(
            verify(&r, &c.ak, &c.sk, c.now),
            Err(ApigError::BadSignature)
        );
        let mut r = req(c);
        r.query = Some("x=1");
        assert_eq!(
            verify(&r, &c.ak, &c.sk, c.now),
            Err(ApigError::BadSignature)
        );
        let mut headers = c.headers.clone();
        headers.retain(|(n, _)| n != "x-project-id");
        let mut r = req(c);
        r.headers = &headers;
        assert_eq!(verify(&r, &c.ak, &c.sk, c.now), Err(ApigError::Malformed));
        let mut headers = c.headers.clone();
        headers.retain(|(n, _)| n != "authorization");
        let mut r = req(c);
        r.headers = &headers;
        assert_eq!(verify(&r, &c.ak, &c.sk, c.now), Err(ApigError::Malformed));
        // A percent-encoded path on the wire canonicalises like the raw one.
        let c = cases
            .iter()
            .find(|c| c.name == "path_needs_encoding")
            .unwrap();
        let mut r = req(c);
        r.path = "/v1/items/%E6%B5%8B%E8%AF%95%20item";
        assert_eq!(verify(&r, &c.ak, &c.sk, c.now), Ok(()));
    }

    #[test]
    fn authorization_needs_all_three_parts() {
        assert!(
            parse_authorization("SDK-HMAC-SHA256 Access=a, SignedHeaders=host, Signature=00")
                .is_some()
        );
        assert!(parse_authorization("SDK-HMAC-SHA256 Access=a, Signature=00").is_none());
        assert!(
            parse_authorization("HMAC-SHA256 Access=a, SignedHeaders=host, Signature=00").is_none()
        );
    }
}
