//! The request bodies of the official `anthropic` and `google-genai` SDKs
//! (`fixtures/{anthropic,gemini}_sdk_requests.json`, recorded by
//! `fixtures/capture_sdk_requests.py`): for each case, the core request that means the same
//! call builds a body equal to the SDK's, as JSON values, to the same path.
//!
//! Known differences, normalized before comparing: the Gemini SDK writes the fields of nested
//! objects it passes through in snake_case (`parameters_json_schema`, `thinking_budget`,
//! `mime_type`), which Google's JSON parser reads as their camelCase names, and a number it
//! typed as a float (`topK: 40.0`); it gives `systemInstruction` a `user` role, which we leave
//! out, and sends an empty `generationConfig` when its config holds only tools; and we send a
//! `thoughtSignature` on replayed calls (core keeps no signature). The SDKs'
//! `anthropic-version` (their own pinned date) and auth header are not compared: we send
//! `anthropic-version: 2023-06-01` and `x-api-key`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use llmux_core::providers::anthropic::{Anthropic, ANTHROPIC};
use llmux_core::providers::gemini::Gemini;
use llmux_core::providers::Provider;
use llmux_core::*;
use serde_json::{Map, Value};

fn cases(file: &str) -> Vec<Value> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(file);
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let cases = v["cases"].as_array().unwrap().clone();
    assert!(!cases.is_empty(), "{}", path.display());
    cases
}

/// Builds our request for a case and checks path and headers; returns our body.
fn ours(p: &dyn Provider, case: &Value) -> Value {
    let name = case["name"].as_str().unwrap();
    let req: ChatRequest = serde_json::from_value(case["core"].clone()).unwrap();
    let stream = case["stream"].as_bool().unwrap();
    let built = p.build_chat(&req.model, &req, stream).unwrap();
    let sdk = &case["request"];
    assert!(
        built.url.ends_with(sdk["path"].as_str().unwrap()),
        "{name}: {} vs {}",
        built.url,
        sdk["path"]
    );
    for h in sdk["headers"].as_object().unwrap().keys() {
        assert!(built.headers.contains_key(h.as_str()), "{name}: no {h}");
    }
    serde_json::from_slice(&built.body).unwrap()
}

#[test]
fn anthropic_sdk_bodies_are_reproduced() {
    let p = Anthropic::new(ANTHROPIC, "http://sdk-capture.invalid", "k".into()).unwrap();
    for case in cases("anthropic_sdk_requests.json") {
        let name = case["name"].as_str().unwrap();
        assert_eq!(ours(&p, &case), case["request"]["body"], "{name}");
    }
}

/// `snake_case` → `camelCase`.
fn camel(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut upper = false;
    for c in key.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// The known differences of the module docs, normalized away.
fn normalize(v: &Value, parent: &str) -> Value {
    match v {
        Value::Object(o) => Value::Object(
            o.iter()
                .filter(|(k, v)| {
                    *k != "thoughtSignature"
                        && !(parent == "systemInstruction" && *k == "role")
                        && !(*k == "generationConfig" && v.as_object().is_some_and(Map::is_empty))
                })
                .map(|(k, v)| {
                    // JSON Schemas are user data: their keys stay as written.
                    let inner = if k.ends_with("schema") || k.ends_with("Schema") {
                        v.clone()
                    } else {
                        normalize(v, &camel(k))
                    };
                    (camel(k), inner)
                })
                .collect::<Map<_, _>>(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(|v| normalize(v, parent)).collect()),
        Value::Number(n) => n
            .as_f64()
            .and_then(serde_json::Number::from_f64)
            .map_or_else(|| v.clone(), Value::Number),
        other => other.clone(),
    }
}

#[test]
fn gemini_sdk_bodies_are_reproduced() {
    let p = Gemini::new("http://sdk-capture.invalid", "k".into()).unwrap();
    for case in cases("gemini_sdk_requests.json") {
        let name = case["name"].as_str().unwrap();
        let body = ours(&p, &case);
        assert_eq!(
            normalize(&body, ""),
            normalize(&case["request"]["body"], ""),
            "{name}"
        );
        // What the normalization forgives is only what it says.
        if name == "tool_round_trip" {
            assert_eq!(
                body["contents"][1]["parts"][0]["thoughtSignature"],
                "skip_thought_signature_validator"
            );
        }
    }
}
