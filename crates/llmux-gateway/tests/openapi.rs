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
    ("post", "/v1/responses"),
    ("get", "/v1/responses/{id}"),
    ("post", "/v1beta/models/{model}:generateContent"),
    ("post", "/v1beta/models/{model}:streamGenerateContent"),
    ("post", "/v1beta/models/{model}:countTokens"),
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
    ("get", "/admin/teams"),
    ("post", "/admin/teams"),
    ("get", "/admin/teams/{name}"),
    ("patch", "/admin/teams/{name}"),
    ("delete", "/admin/teams/{name}"),
    ("get", "/admin/usage"),
    ("get", "/admin/usage/records"),
    ("get", "/admin/usage/series"),
    ("post", "/admin/channels/{name}/enable"),
    ("post", "/admin/channels"),
    ("patch", "/admin/channels/{name}"),
    ("delete", "/admin/channels/{name}"),
    ("post", "/admin/channels/{name}/test"),
    ("get", "/admin/prices"),
    ("put", "/admin/prices/{model}"),
    ("delete", "/admin/prices/{model}"),
    ("post", "/admin/channels/{name}/discover"),
    ("get", "/v1beta/models"),
    ("get", "/v1beta/models/{model}"),
    ("get", "/dashboard"),
    ("get", "/dashboard/app.js"),
    ("get", "/dashboard/style.css"),
    ("get", "/openapi.json"),
];

/// Operations documented only for their refusal (the gateway stores no responses).
const REFUSALS: &[&str] = &["getResponse"];

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
            path.replace("{id}", "1")
                .replace("{name}", "oa")
                .replace("{model}", "gpt-4o-mini")
        );
        let req = match *method {
            "get" => gw.http.get(&url),
            "post" => gw.http.post(&url),
            "patch" => gw.http.patch(&url),
            "delete" => gw.http.delete(&url),
            "put" => gw.http.put(&url),
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
            // Routes kept only to say what the gateway does not offer have no success.
            assert!(
                responses.keys().any(|s| s.starts_with('2')) || REFUSALS.contains(&op_id),
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
            } else if path.starts_with("/v1beta/") {
                // Google's SDKs send `x-goog-api-key`; a bearer key works too.
                assert_eq!(
                    op["security"],
                    serde_json::json!([{"client_key": []}, {"goog_api_key": []}]),
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
            } else if path.starts_with("/v1beta/") {
                "#/components/schemas/GoogleError"
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
    for (method, path) in [
        ("post", "/v1/chat/completions"),
        ("post", "/v1/responses"),
        ("post", "/v1beta/models/{model}:streamGenerateContent"),
    ] {
        let stream = &paths[path][method]["responses"]["200"]["content"];
        assert!(stream.get("text/event-stream").is_some(), "{path}");
        assert!(stream.get("application/json").is_some(), "{path}");
    }
}

/// Every schema the description names is one type: utoipa names a component after its type
/// (or its `#[schema(as = …)]`), and a second type of the same name would silently replace the
/// first (two dialects' `OutputTokensDetails` once did, and `/v1/messages` answers then
/// violated their own description). Checked on the sources, where both types are visible.
#[test]
fn no_two_schema_types_share_a_name() {
    fn walk(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    let mut seen: std::collections::BTreeMap<String, String> = Default::default();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (i, l) in lines.iter().enumerate() {
            if !(l.contains("derive(") && l.contains("ToSchema")) {
                continue;
            }
            // The attributes around the derive, up to the item.
            let mut attrs = String::new();
            let mut j = i;
            while !lines[j].contains("struct ") && !lines[j].contains("enum ") {
                attrs.push_str(lines[j]);
                j += 1;
            }
            let mut k = i;
            while k > 0 && lines[k - 1].trim_start().starts_with("#[") {
                k -= 1;
                attrs.push_str(lines[k]);
            }
            let item = lines[j]
                .split_whitespace()
                .skip_while(|w| *w != "struct" && *w != "enum")
                .nth(1)
                .unwrap()
                .trim_end_matches(['{', '<', '(', ';'])
                .split('<')
                .next()
                .unwrap()
                .to_owned();
            let name = attrs
                .split("as = ")
                .nth(1)
                .map(|rest| {
                    rest.split(|c: char| !(c.is_alphanumeric() || c == '_'))
                        .next()
                        .unwrap()
                        .to_owned()
                })
                .unwrap_or(item);
            let at = format!("{}:{}", f.display(), j + 1);
            if let Some(first) = seen.insert(name.clone(), at.clone()) {
                panic!("schema `{name}` is defined twice: {first} and {at}");
            }
        }
    }
    assert!(
        seen.len() > 50,
        "the scan found only {} schemas",
        seen.len()
    );
}
