//! The OpenAPI description: the copy kept in the repository is the one the code generates, it is
//! served at `GET /openapi.json` without auth, and it covers every operation the router serves.
//!
//! After changing a handler, a wire type or an annotation, regenerate the copy with
//! `UPDATE_OPENAPI=1 cargo test -p llmux-gateway --test openapi`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;

use common::*;
use serde_json::Value;

fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("openapi.json")
}

#[test]
fn the_committed_description_is_the_generated_one() {
    let generated = llmux_gateway::openapi::spec_json();
    let path = committed_path();
    if std::env::var_os("UPDATE_OPENAPI").is_some_and(|v| !v.is_empty() && v != "0") {
        std::fs::write(&path, generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is not the description the code generates. Regenerate it with \
         `UPDATE_OPENAPI=1 cargo test -p llmux-gateway --test openapi` and commit it.",
        path.display()
    );
}

/// Every route the router mounts, as (method, OpenAPI path).
const OPERATIONS: &[(&str, &str)] = &[
    ("post", "/v1/chat/completions"),
    ("post", "/v1/embeddings"),
    ("post", "/v1/completions"),
    ("post", "/v1/messages"),
    ("post", "/v1/messages/count_tokens"),
    ("get", "/v1/models"),
    ("get", "/v1/models/{id}"),
    ("post", "/api/v1/services/aigc/text-generation/generation"),
    (
        "post",
        "/api/v1/services/aigc/multimodal-generation/generation",
    ),
    (
        "post",
        "/api/v1/services/embeddings/text-embedding/text-embedding",
    ),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/admin/channels"),
    ("get", "/admin/keys"),
    ("post", "/admin/keys"),
    ("patch", "/admin/keys/{id}"),
    ("delete", "/admin/keys/{id}"),
    ("get", "/admin/usage"),
    ("get", "/admin/usage/records"),
    ("post", "/admin/channels/{name}/enable"),
    ("get", "/dashboard"),
    ("get", "/dashboard/app.js"),
    ("get", "/dashboard/style.css"),
    ("get", "/openapi.json"),
];

#[tokio::test]
async fn the_description_is_served_without_auth_and_covers_every_route() {
    let (gw, _oa, _ds) = standard().await;
    let resp = gw
        .http
        .get(format!("{}/openapi.json", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let served: Value = resp.json().await.unwrap();
    let generated: Value = serde_json::from_str(llmux_gateway::openapi::spec_json()).unwrap();
    assert_eq!(served, generated);
    assert_eq!(served["openapi"], "3.1.0");

    let paths = served["paths"].as_object().unwrap();
    let mut documented: Vec<(String, String)> = paths
        .iter()
        .flat_map(|(p, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|m| ["get", "post", "patch", "delete", "put"].contains(&m.as_str()))
                .map(move |m| (m.clone(), p.clone()))
        })
        .collect();
    documented.sort();
    let mut expected: Vec<(String, String)> = OPERATIONS
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    expected.sort();
    assert_eq!(documented, expected);

    // Each documented route is really served: a request to it is not the router's 404.
    for (method, path) in OPERATIONS {
        let url = format!(
            "{}{}",
            gw.url,
            path.replace("{id}", "1").replace("{name}", "oa")
        );
        let req = match *method {
            "get" => gw.http.get(&url),
            "post" => gw.http.post(&url),
            "patch" => gw.http.patch(&url),
            "delete" => gw.http.delete(&url),
            other => panic!("{other}"),
        };
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        assert!(
            !body.contains("unknown_url") && !body.contains("InvalidURL"),
            "{method} {path}: {status} {body}"
        );
    }

    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            let op_id = op["operationId"].as_str().unwrap_or_default();
            assert!(!op_id.is_empty(), "{method} {path} has no operationId");
            let responses = op["responses"].as_object().unwrap();
            assert!(
                responses.keys().any(|s| s.starts_with('2')),
                "{method} {path} documents no success"
            );
            // Operations behind a key say which, and document its rejection.
            if path.starts_with("/admin/") {
                assert_eq!(
                    op["security"],
                    serde_json::json!([{"admin_key": []}]),
                    "{path}"
                );
                assert!(responses.contains_key("401"), "{method} {path}");
            } else if path.starts_with("/v1/messages") {
                // Anthropic's SDKs send `x-api-key`; a bearer key works too.
                assert_eq!(
                    op["security"],
                    serde_json::json!([{"client_key": []}, {"api_key": []}]),
                    "{path}"
                );
                assert!(responses.contains_key("401"), "{method} {path}");
            } else if path.starts_with("/v1/") || path.starts_with("/api/") {
                assert_eq!(
                    op["security"],
                    serde_json::json!([{"client_key": []}]),
                    "{path}"
                );
                assert!(responses.contains_key("401"), "{method} {path}");
            } else {
                assert!(op.get("security").is_none(), "{method} {path}");
            }
            // Errors name the ingress's error schema.
            let error_schema = if path.starts_with("/api/") {
                "#/components/schemas/DashScopeError"
            } else if path.starts_with("/v1/messages") {
                "#/components/schemas/AnthropicError"
            } else {
                "#/components/schemas/OpenAiError"
            };
            for (status, r) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    if path == "/readyz" {
                        continue;
                    }
                    assert_eq!(
                        r["content"]["application/json"]["schema"]["$ref"], error_schema,
                        "{method} {path} {status}"
                    );
                }
            }
        }
    }
    let stream = &paths["/v1/chat/completions"]["post"]["responses"]["200"]["content"];
    assert!(stream.get("text/event-stream").is_some());
    assert!(stream.get("application/json").is_some());
}
