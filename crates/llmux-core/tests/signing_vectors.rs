//! Byte-for-byte signature vectors from `shared/vectors`: every TC3 case of `tc3.json`
//! (including the published worked example and its newer revision) and every Zhipu JWT of
//! `zhipu_jwt.json`, plus the provider-level signing path (`authorize`) on the same inputs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, UNIX_EPOCH};

use common::vectors_dir;
use llmux_core::clock::Clock;
use llmux_core::http::{HttpRequest, Transport, TransportConfig};
use llmux_core::providers::hunyuan::{tc3, Hunyuan};
use llmux_core::providers::{AuthContext, Provider};
use serde_json::Value;

fn load(file: &str) -> Value {
    let path = vectors_dir().join(file);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str()
        .unwrap_or_else(|| panic!("missing string `{k}`"))
}

#[test]
fn every_tc3_vector_is_reproduced_byte_for_byte() {
    let file = load("tc3.json");
    let vectors = file["vectors"].as_array().unwrap();
    assert!(!vectors.is_empty());
    for v in vectors {
        let name = s(v, "name");
        let i = &v["inputs"];
        let e = &v["expected"];
        let method = s(i, "method");
        let content_type = if method == "GET" {
            "application/x-www-form-urlencoded"
        } else {
            "application/json"
        };
        assert_eq!(s(&e["headers"], "Content-Type"), content_type, "{name}");
        let body = s(e, "request_body");
        let signed = tc3::sign(
            &tc3::Inputs {
                secret_id: s(i, "secret_id"),
                secret_key: s(i, "secret_key"),
                service: s(i, "service"),
                host: s(i, "host"),
                method,
                query: s(e, "request_query"),
                content_type,
                extra_headers: &[],
            },
            body.as_bytes(),
            i["timestamp"].as_u64().unwrap(),
        );
        let checks = [
            ("hashed_request_payload", &signed.hashed_request_payload),
            ("canonical_headers", &signed.canonical_headers),
            ("signed_headers", &signed.signed_headers),
            ("canonical_request", &signed.canonical_request),
            ("hashed_canonical_request", &signed.hashed_canonical_request),
            ("date", &signed.date),
            ("credential_scope", &signed.credential_scope),
            ("string_to_sign", &signed.string_to_sign),
            ("secret_date_hex", &signed.secret_date_hex),
            ("secret_service_hex", &signed.secret_service_hex),
            ("secret_signing_hex", &signed.secret_signing_hex),
            ("signature", &signed.signature),
            ("authorization", &signed.authorization),
        ];
        for (field, ours) in checks {
            assert_eq!(ours.as_str(), s(e, field), "{name}: {field}");
        }
        assert_eq!(
            signed.authorization,
            s(&e["headers"], "Authorization"),
            "{name}"
        );
    }
}

#[test]
fn tc3_published_reference_and_newer_revision_are_reproduced() {
    let file = load("tc3.json");
    let r = &file["published_reference"];
    let i = &r["inputs"];
    let e = &r["expected"];
    let inputs = tc3::Inputs {
        secret_id: s(i, "secret_id"),
        secret_key: s(i, "secret_key"),
        service: s(i, "service"),
        host: s(i, "host"),
        method: s(i, "method"),
        query: "",
        content_type: s(i, "content_type"),
        extra_headers: &[],
    };
    let body = s(i, "body").as_bytes();
    let ts = i["timestamp"].as_u64().unwrap();
    let signed = tc3::sign(&inputs, body, ts);
    assert_eq!(
        signed.hashed_request_payload,
        s(e, "hashed_request_payload")
    );
    assert_eq!(
        signed.hashed_canonical_request,
        s(e, "hashed_canonical_request")
    );
    assert_eq!(signed.signature, s(e, "signature"));
    assert_eq!(signed.authorization, s(e, "authorization"));

    let newer = &r["newer_revision"];
    let signed = tc3::sign(
        &tc3::Inputs {
            extra_headers: &[("X-TC-Action", "DescribeInstances")],
            ..inputs
        },
        body,
        ts,
    );
    assert_eq!(signed.canonical_request, s(newer, "canonical_request"));
    assert_eq!(
        signed.hashed_canonical_request,
        s(newer, "hashed_canonical_request")
    );
}

fn ctx_at(ts: u64) -> AuthContext {
    AuthContext {
        clock: Clock::fixed(UNIX_EPOCH + Duration::from_secs(ts)),
        transport: Transport::new(TransportConfig::default()).unwrap(),
    }
}

/// The provider's own signing path: a request carrying the vector's exact body, authorized at
/// the vector's timestamp, carries the vector's headers.
#[tokio::test]
async fn hunyuan_authorize_signs_the_sent_bytes_like_the_sdk() {
    let file = load("tc3.json");
    for v in file["vectors"].as_array().unwrap() {
        let name = s(v, "name");
        let i = &v["inputs"];
        let e = &v["expected"];
        if s(i, "method") != "POST" || s(i, "service") != "hunyuan" {
            continue;
        }
        let p = Hunyuan::new(
            &format!("https://{}/", s(i, "host")),
            s(i, "secret_id").into(),
            s(i, "secret_key").into(),
        )
        .unwrap()
        .with_region(s(i, "region"))
        .with_session_token(i["token"].as_str().map(Into::into));
        let mut req = HttpRequest::post_json(format!("https://{}/", s(i, "host")), &Value::Null)
            .unwrap()
            .header("x-tc-action", s(i, "action"))
            .unwrap();
        req.body = bytes::Bytes::from(s(e, "request_body").to_owned());
        let ctx = ctx_at(i["timestamp"].as_u64().unwrap());
        let signed = p.authorize(req, &ctx).await.unwrap();
        let headers = &e["headers"];
        for h in [
            "Authorization",
            "Content-Type",
            "X-TC-Timestamp",
            "X-TC-Token",
        ] {
            assert_eq!(
                signed.headers.get(h).map(|v| v.to_str().unwrap()),
                headers[h].as_str(),
                "{name}: {h}"
            );
        }
        assert!(signed.headers["authorization"].is_sensitive());
        assert_eq!(p.host(), s(headers, "Host"));
    }
}

#[test]
fn every_zhipu_jwt_vector_is_reproduced_byte_for_byte() {
    use llmux_core::providers::zhipu::{jwt, JWT_TTL_MS};
    let file = load("zhipu_jwt.json");
    let vectors = file["vectors"].as_array().unwrap();
    assert!(!vectors.is_empty());
    for v in vectors {
        let name = s(v, "name");
        let i = &v["inputs"];
        let e = &v["expected"];
        let now = i["now_ms"].as_u64().unwrap();
        let t = jwt(s(i, "api_key"), now, JWT_TTL_MS).unwrap();
        assert_eq!(t.id, s(e, "id"), "{name}");
        assert_eq!(t.header_json, s(e, "header_json"), "{name}");
        assert_eq!(t.payload_json, s(e, "payload_json"), "{name}");
        let payload: Value = serde_json::from_str(&t.payload_json).unwrap();
        assert_eq!(payload, e["payload"], "{name}");
        assert_eq!(t.signing_input, s(e, "signing_input"), "{name}");
        assert_eq!(t.signature_b64url, s(e, "signature_b64url"), "{name}");
        assert_eq!(t.token.expose(), s(e, "token"), "{name}");
        assert_eq!(
            format!("Bearer {}", t.token.expose()),
            s(e, "authorization"),
            "{name}"
        );
        assert!(!format!("{t:?}").contains(&t.signature_b64url), "{name}");
    }
}

/// The provider path: `authorize` at the vector's clock sends the vector's header, reuses the
/// cached token until 30 s before expiry, and mints a new one after.
#[tokio::test]
async fn zhipu_authorize_sends_the_vector_token_and_caches_it() {
    use llmux_core::providers::zhipu::{Zhipu, ZhipuAuth};
    let file = load("zhipu_jwt.json");
    for v in file["vectors"].as_array().unwrap() {
        let name = s(v, "name");
        let i = &v["inputs"];
        let e = &v["expected"];
        let now_ms = i["now_ms"].as_u64().unwrap();
        let p = Zhipu::new(
            "https://open.bigmodel.cn/api/paas/v4",
            s(i, "api_key").into(),
            ZhipuAuth::Jwt,
        )
        .unwrap();
        let at = |ms: u64| AuthContext {
            clock: Clock::fixed(UNIX_EPOCH + Duration::from_millis(ms)),
            transport: Transport::new(TransportConfig::default()).unwrap(),
        };
        let req = || HttpRequest::get("https://open.bigmodel.cn/api/paas/v4/x".into());
        let auth = |r: HttpRequest| r.headers["authorization"].to_str().unwrap().to_owned();
        let first = auth(p.authorize(req(), &at(now_ms)).await.unwrap());
        assert_eq!(first, s(e, "authorization"), "{name}");
        let cached = auth(p.authorize(req(), &at(now_ms + 170_000)).await.unwrap());
        assert_eq!(cached, first, "{name}: reused while fresh");
        let renewed = auth(p.authorize(req(), &at(now_ms + 181_000)).await.unwrap());
        assert_ne!(renewed, first, "{name}: renewed near expiry");
        assert!(p.invalidate_credentials());
        let again = auth(p.authorize(req(), &at(now_ms)).await.unwrap());
        assert_eq!(again, first, "{name}: a dropped cache mints the same token");
    }
}
