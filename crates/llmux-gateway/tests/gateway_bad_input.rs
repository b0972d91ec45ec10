//! The bad-input table: every malformed request is a 4xx in the ingress protocol's error
//! format (never a 500, never a panic), on both ingresses.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::Value;

const CHAT: &str = "/v1/chat/completions";
const GEN: &str = "/api/v1/services/aigc/text-generation/generation";

struct Case {
    name: &'static str,
    path: &'static str,
    body: Vec<u8>,
    auth: Option<&'static str>,
    status: u16,
    /// OpenAI `error.code` or DashScope `code`, when fixed.
    code: Option<&'static str>,
}

fn case(
    name: &'static str,
    path: &'static str,
    body: &str,
    status: u16,
    code: Option<&'static str>,
) -> Case {
    Case {
        name,
        path,
        body: body.as_bytes().to_vec(),
        auth: Some(KEY),
        status,
        code,
    }
}

fn table() -> Vec<Case> {
    let big = format!(
        r#"{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "x".repeat(100_000)
    );
    vec![
        case("malformed json", CHAT, "{\"model\":", 400, None),
        case("not an object", CHAT, "[1,2]", 400, None),
        case(
            "wrong type for messages",
            CHAT,
            r#"{"model":"gpt-4o-mini","messages":"hi"}"#,
            400,
            None,
        ),
        case(
            "wrong type for temperature",
            CHAT,
            r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"x"}],"temperature":"hot"}"#,
            400,
            None,
        ),
        case(
            "unknown role",
            CHAT,
            r#"{"model":"gpt-4o-mini","messages":[{"role":"wizard","content":"x"}]}"#,
            400,
            None,
        ),
        case(
            "missing model",
            CHAT,
            r#"{"messages":[{"role":"user","content":"x"}]}"#,
            400,
            None,
        ),
        case(
            "unknown model",
            CHAT,
            r#"{"model":"nope","messages":[{"role":"user","content":"x"}]}"#,
            404,
            Some("model_not_found"),
        ),
        case(
            "empty messages",
            CHAT,
            r#"{"model":"gpt-4o-mini","messages":[]}"#,
            400,
            None,
        ),
        case(
            "temperature out of range",
            CHAT,
            r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"x"}],"temperature":9}"#,
            400,
            None,
        ),
        case("empty body", CHAT, "", 400, None),
        Case {
            name: "oversized body",
            path: CHAT,
            body: big.clone().into_bytes(),
            auth: Some(KEY),
            status: 413,
            code: Some("request_too_large"),
        },
        Case {
            name: "missing auth header",
            path: CHAT,
            body: br#"{"model":"gpt-4o-mini","messages":[]}"#.to_vec(),
            auth: None,
            status: 401,
            code: Some("invalid_api_key"),
        },
        Case {
            name: "wrong key",
            path: CHAT,
            body: br#"{"model":"gpt-4o-mini","messages":[]}"#.to_vec(),
            auth: Some("sk-wrong"),
            status: 401,
            code: Some("invalid_api_key"),
        },
        case(
            "embeddings token ids",
            "/v1/embeddings",
            r#"{"model":"text-embedding-3-small","input":[1,2,3]}"#,
            400,
            Some("unsupported"),
        ),
        case(
            "embeddings bad format",
            "/v1/embeddings",
            r#"{"model":"text-embedding-3-small","input":"x","encoding_format":"int8"}"#,
            400,
            None,
        ),
        case("ds malformed json", GEN, "{", 400, Some("InvalidParameter")),
        case(
            "ds no input",
            GEN,
            r#"{"model":"qwen-plus"}"#,
            400,
            Some("BadRequest.EmptyInput"),
        ),
        case(
            "ds empty input",
            GEN,
            r#"{"model":"qwen-plus","input":{"messages":[]}}"#,
            400,
            Some("InvalidParameter"),
        ),
        case(
            "ds no model",
            GEN,
            r#"{"input":{"prompt":"x"}}"#,
            400,
            Some("BadRequest.EmptyModel"),
        ),
        case(
            "ds unknown model",
            GEN,
            r#"{"model":"nope","input":{"prompt":"x"}}"#,
            404,
            Some("ModelNotFound"),
        ),
        case(
            "ds wrong types",
            GEN,
            r#"{"model":"qwen-plus","input":{"prompt":5}}"#,
            400,
            Some("InvalidParameter"),
        ),
        case(
            "ds bad result_format",
            GEN,
            r#"{"model":"qwen-plus","input":{"prompt":"x"},"parameters":{"result_format":"xml"}}"#,
            400,
            Some("InvalidParameter"),
        ),
        Case {
            name: "ds oversized body",
            path: GEN,
            body: big.into_bytes(),
            auth: Some(KEY),
            status: 413,
            code: Some("BadRequest.TooLarge"),
        },
        Case {
            name: "ds missing auth",
            path: GEN,
            body: br#"{"model":"qwen-plus","input":{"prompt":"x"}}"#.to_vec(),
            auth: None,
            status: 401,
            code: Some("InvalidApiKey"),
        },
        case(
            "ds wrong path",
            "/api/v1/services/nope",
            "{}",
            400,
            Some("InvalidURL"),
        ),
        case("openai wrong path", "/v1/nope", "{}", 404, None),
    ]
}

#[tokio::test]
async fn bad_requests_get_4xx_in_the_ingress_format() {
    let (gw, oa, ds) = standard().await;
    for c in table() {
        let mut req = gw
            .http
            .post(format!("{}{}", gw.url, c.path))
            .header("content-type", "application/json")
            .body(c.body);
        if let Some(k) = c.auth {
            req = req.bearer_auth(k);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", c.name));
        assert_eq!(resp.status().as_u16(), c.status, "{}", c.name);
        let rid = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
        let body: Value = resp
            .json()
            .await
            .unwrap_or_else(|e| panic!("{}: body not JSON: {e}", c.name));
        if c.path.starts_with("/api/") {
            assert!(
                body["message"].as_str().is_some_and(|m| !m.is_empty()),
                "{}: {body}",
                c.name
            );
            assert_eq!(body["request_id"], rid, "{}", c.name);
            if let Some(code) = c.code {
                assert_eq!(body["code"], code, "{}: {body}", c.name);
            }
        } else {
            let e = &body["error"];
            assert!(
                e["message"].as_str().is_some_and(|m| !m.is_empty()),
                "{}: {body}",
                c.name
            );
            assert!(e["type"].is_string(), "{}", c.name);
            assert!(
                e.get("param").is_some() && e.get("code").is_some(),
                "{}: {body}",
                c.name
            );
            if let Some(code) = c.code {
                assert_eq!(e["code"], code, "{}: {body}", c.name);
            }
        }
    }
    // None of it reached an upstream.
    assert!(oa.requests().is_empty());
    assert!(ds.requests().is_empty());
    // The gateway is still healthy afterwards.
    let ok = gw
        .http
        .get(format!("{}/healthz", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn type_errors_name_the_field() {
    let (gw, _oa, _ds) = standard().await;
    let body: Value = gw
        .post(CHAT)
        .header("content-type", "application/json")
        .body(r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"x"}],"max_tokens":"ten"}"#)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["error"]["param"], "max_tokens");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("max_tokens"));
}

#[tokio::test]
async fn admin_endpoints_need_the_admin_key() {
    let (gw, _oa, _ds) = standard().await;
    let url = format!("{}/admin/channels", gw.url);
    assert_eq!(gw.http.get(&url).send().await.unwrap().status(), 401);
    assert_eq!(
        gw.http
            .get(&url)
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let ok: Value = gw
        .http
        .get(&url)
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ok["channels"].as_array().unwrap().len(), 2);
    assert!(
        !ok.to_string().contains("sk-emulator"),
        "no credentials in the admin view"
    );
}
