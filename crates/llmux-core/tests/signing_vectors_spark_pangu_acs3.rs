//! Every case of `shared/vectors/{spark_ws_url,huawei_sdk_hmac_sha256,huawei_iam_token,acs3}.json`,
//! reproduced byte for byte: each intermediate value, the final URL or header, and the
//! request we would send (frames and bodies compared as JSON values).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use llmux_core::clock::Clock;
use llmux_core::http::{HttpRequest, Transport, TransportConfig};
use llmux_core::providers::pangu::{apig, iam};
use llmux_core::providers::spark::{self, Spark};
use llmux_core::providers::{acs3, AuthContext, Provider};
use llmux_core::*;
use serde_json::Value;

fn vectors(file: &str) -> Vec<Value> {
    let path = common::vectors_dir().join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let v: Value = serde_json::from_str(&text).unwrap();
    let cases = v["vectors"].as_array().unwrap().clone();
    assert!(!cases.is_empty(), "{file} has no vectors");
    cases
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

fn pairs_of(v: &Value) -> Vec<(String, String)> {
    match v {
        Value::Object(m) => m
            .iter()
            .flat_map(|(k, v)| match v {
                Value::Array(items) => items
                    .iter()
                    .map(|i| (k.clone(), s(i).to_owned()))
                    .collect::<Vec<_>>(),
                other => vec![(k.clone(), s(other).to_owned())],
            })
            .collect(),
        Value::Array(items) => items
            .iter()
            .map(|p| (s(&p[0]).to_owned(), s(&p[1]).to_owned()))
            .collect(),
        Value::Null => Vec::new(),
        other => panic!("not pairs: {other}"),
    }
}

fn ctx_at(at: SystemTime) -> AuthContext {
    AuthContext {
        clock: Clock::fixed(at),
        transport: Transport::new(TransportConfig::default()).unwrap(),
    }
}

fn spark_request(frame: &Value) -> ChatRequest {
    let messages = serde_json::from_value(frame["messages"].clone()).unwrap();
    let mut req = ChatRequest::new(s(&frame["domain"]), messages);
    req.user = frame["uid"].as_str().map(str::to_owned);
    let p = &frame["chat_params"];
    req.temperature = p["temperature"].as_f64();
    req.max_tokens = p["max_tokens"].as_u64().map(|v| v as u32);
    req.top_k = p["top_k"].as_u64().map(|v| v as u32);
    req
}

#[test]
fn spark_ws_url_vectors() {
    let mut reproduced = 0;
    for case in vectors("spark_ws_url.json") {
        let name = s(&case["name"]);
        let inp = &case["inputs"];
        let exp = &case["expected"];
        let at = UNIX_EPOCH + Duration::from_secs(inp["unix_time"].as_u64().unwrap());
        let secret = SecretString::new(s(&inp["api_secret"]));
        let url = s(&inp["spark_url"]);
        let signed = spark::sign_url(url, s(&inp["api_key"]), &secret, at).unwrap();
        assert_eq!(signed.host, s(&exp["host"]), "{name}: host");
        assert_eq!(signed.path, s(&exp["path"]), "{name}: path");
        assert_eq!(signed.date, s(&exp["date"]), "{name}: date");
        assert_eq!(
            signed.signature_origin,
            s(&exp["signature_origin"]),
            "{name}"
        );
        assert_eq!(signed.signature_b64, s(&exp["signature_b64"]), "{name}");
        assert_eq!(
            signed.authorization_origin,
            s(&exp["authorization_origin"]),
            "{name}"
        );
        assert_eq!(
            signed.authorization_b64,
            s(&exp["authorization_b64"]),
            "{name}"
        );
        assert_eq!(signed.url, s(&exp["url"]), "{name}: url");

        // The provider reaches the same URL from base URL + domain, at the clock's time.
        let path = s(&exp["path"]);
        let base = url.strip_suffix(path).unwrap();
        let dom = spark::DOMAINS.iter().find(|d| d.path == path).unwrap();
        let provider = Spark::new(base, s(&inp["app_id"]), s(&inp["api_key"]), secret).unwrap();
        let req = match &inp["frame"] {
            Value::Null => ChatRequest::new(dom.name, vec![Message::user("hi")]),
            frame => spark_request(frame),
        };
        assert_eq!(req.model, dom.name, "{name}: the domain picks the path");
        let ws = provider.build_ws(&req.model, &req, &ctx_at(at)).unwrap();
        assert_eq!(ws.url, s(&exp["url"]), "{name}: provider url");
        if !exp["request_frame"].is_null() {
            let sent: Value = serde_json::from_str(&ws.message).unwrap();
            assert_eq!(sent, exp["request_frame"], "{name}: request frame");
            let from_json: Value = serde_json::from_str(s(&exp["request_frame_json"])).unwrap();
            assert_eq!(sent, from_json, "{name}: request_frame_json");
        }
        reproduced += 1;
    }
    assert_eq!(reproduced, 4);
}

#[test]
fn huawei_apig_vectors() {
    let mut reproduced = 0;
    for case in vectors("huawei_sdk_hmac_sha256.json") {
        let name = s(&case["name"]);
        let inp = &case["inputs"];
        let exp = &case["expected"];
        let query = pairs_of(&inp["query"]);
        let headers = pairs_of(&inp["headers"]);
        let body = inp["body"].as_str().unwrap_or("").as_bytes();
        let sk = SecretString::new(s(&inp["sk"]));
        let req = apig::ApigRequest {
            method: s(&inp["method"]),
            host: s(&inp["host"]),
            path: s(&inp["path"]),
            query: &query,
            headers: &headers,
            body,
        };
        let sig = apig::sign(s(&inp["ak"]), &sk, s(&inp["x_sdk_date"]), &req);
        for (field, ours) in [
            ("canonical_uri", &sig.canonical_uri),
            ("canonical_query_string", &sig.canonical_query_string),
            ("canonical_headers", &sig.canonical_headers),
            ("signed_headers", &sig.signed_headers),
            ("hashed_payload", &sig.hashed_payload),
            ("canonical_request", &sig.canonical_request),
            ("hashed_canonical_request", &sig.hashed_canonical_request),
            ("string_to_sign", &sig.string_to_sign),
            ("signature", &sig.signature),
            ("authorization", &sig.authorization),
            ("request_uri", &sig.request_uri),
        ] {
            assert_eq!(ours, s(&exp[field]), "{name}: {field}");
        }
        let mut sent: Vec<(String, String)> = headers.clone();
        sent.extend(sig.added_headers.iter().cloned());
        sent.sort();
        let mut expected = pairs_of(&exp["headers"]);
        expected.sort();
        assert_eq!(sent, expected, "{name}: headers sent");

        // The same signature through an HttpRequest, as the provider signs before sending.
        let mut url = format!("https://{}{}", s(&inp["host"]), s(&inp["path"]));
        if !query.is_empty() {
            url.push('?');
            url.push_str(&apig::canonical_query(&query));
        }
        let mut http_req = HttpRequest::get(url);
        http_req.method = s(&inp["method"]).parse().unwrap();
        http_req.body = bytes::Bytes::copy_from_slice(body);
        for (k, v) in &headers {
            http_req.headers.insert(
                ::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        let signed = llmux_core::providers::pangu::sign_request(
            s(&inp["ak"]),
            &sk,
            s(&inp["x_sdk_date"]),
            http_req,
        )
        .unwrap();
        assert_eq!(
            signed.headers["authorization"].to_str().unwrap(),
            s(&exp["authorization"]),
            "{name}: signed HttpRequest"
        );
        assert!(signed.headers["authorization"].is_sensitive());
        reproduced += 1;
    }
    assert_eq!(reproduced, 4);
}

#[test]
fn huawei_iam_token_vectors() {
    let mut reproduced = 0;
    for case in vectors("huawei_iam_token.json") {
        let name = s(&case["name"]);
        let inp = &case["inputs"];
        let exp = &case["expected"];
        let sc = &inp["scope"];
        let scope = if let Some(v) = sc["project_id"].as_str() {
            iam::Scope::ProjectId(v.into())
        } else if let Some(v) = sc["project_name"].as_str() {
            iam::Scope::ProjectName(v.into())
        } else if let Some(v) = sc["domain_name"].as_str() {
            iam::Scope::DomainName(v.into())
        } else if let Some(v) = sc["domain_id"].as_str() {
            iam::Scope::DomainId(v.into())
        } else {
            iam::Scope::Unscoped
        };
        let creds = iam::PasswordCredentials {
            domain_name: s(&inp["domain_name"]).into(),
            user_name: s(&inp["user_name"]).into(),
            password: SecretString::new(s(&inp["password"])),
            scope,
        };
        let nocatalog = inp["nocatalog"].as_bool().unwrap_or(false);
        let req = iam::token_request("https://iam.example.test", &creds, nocatalog).unwrap();
        assert_eq!(req.method.as_str(), s(&exp["method"]), "{name}");
        assert_eq!(
            req.url,
            format!("https://iam.example.test{}", s(&exp["path"])),
            "{name}: url"
        );
        assert_eq!(
            req.headers["content-type"].to_str().unwrap(),
            s(&exp["content_type"]),
            "{name}: content type"
        );
        // The bytes in the request are what is sent; they must mean the SDK's body.
        let sent: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(sent, exp["body_json"], "{name}: body");
        let wire: Value = serde_json::from_str(s(&exp["body_wire"])).unwrap();
        assert_eq!(sent, wire, "{name}: body_wire");
        reproduced += 1;
    }
    assert_eq!(reproduced, 3);
}

#[test]
fn acs3_vectors() {
    let mut reproduced = 0;
    for case in vectors("acs3.json") {
        let name = s(&case["name"]);
        let inp = &case["inputs"];
        let exp = &case["expected"];
        let query = pairs_of(&inp["query"]);
        let headers = pairs_of(&inp["headers"]);
        let req = acs3::Acs3Request {
            method: s(&inp["method"]),
            path: s(&inp["path"]),
            query: &query,
            headers: &headers,
            body: inp["body"].as_str().unwrap_or("").as_bytes(),
        };
        let sig = acs3::sign(
            s(&inp["access_key_id"]),
            &SecretString::new(s(&inp["access_key_secret"])),
            &req,
        );
        for (field, ours) in [
            ("x-acs-content-sha256", &sig.content_sha256),
            ("canonical_query_string", &sig.canonical_query_string),
            ("canonical_headers", &sig.canonical_headers),
            ("signed_headers", &sig.signed_headers),
            ("canonical_request", &sig.canonical_request),
            ("hashed_canonical_request", &sig.hashed_canonical_request),
            ("string_to_sign", &sig.string_to_sign),
            ("signature", &sig.signature),
            ("authorization", &sig.authorization),
        ] {
            assert_eq!(ours, s(&exp[field]), "{name}: {field}");
        }
        let mut h = ::http::HeaderMap::new();
        sig.apply(&mut h).unwrap();
        assert_eq!(
            h["authorization"].to_str().unwrap(),
            s(&exp["authorization"])
        );
        reproduced += 1;
    }
    assert_eq!(reproduced, 4);
}
