//! Every case of `shared/vectors/{openai,dashscope}_sdk_capture.json`: given the same call as
//! the official SDK, we send an equivalent request (method, path, protocol headers, JSON body
//! as values) and parse the canned response or stream to the result the SDK reports.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use llmux_core::providers::dashscope::DashScope;
use llmux_core::providers::openai_compat::{OpenAiCompat, OPENAI};
use llmux_core::providers::Provider;
use llmux_core::*;
use serde_json::Value;

/// The captures were recorded against a loopback recorder; only paths, headers and bodies are compared.
const BASE_HOST: &str = "http://sdk-capture.invalid";

fn bearer_of(exchange: &Value) -> String {
    exchange["headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h[0].as_str().unwrap().eq_ignore_ascii_case("authorization"))
        .map(|h| {
            h[1].as_str()
                .unwrap()
                .trim_start_matches("Bearer ")
                .to_owned()
        })
        .unwrap_or_default()
}

/// What both sides agree a chat result is: text, finish reason, tool calls, usage.
#[derive(Debug, PartialEq)]
struct Outcome {
    text: String,
    finish: Option<String>,
    calls: Vec<(String, String, String)>,
    usage: Option<(u64, u64, u64)>,
}

fn ours(r: &ChatResponse) -> Outcome {
    Outcome {
        text: r.text().into_owned(),
        finish: r.finish_reason().map(|f| f.as_str().to_owned()),
        calls: r
            .tool_calls()
            .iter()
            .map(|c| (c.id.clone(), c.name.clone(), c.arguments.clone()))
            .collect(),
        usage: r
            .usage
            .map(|u| (u.input_tokens, u.output_tokens, u.total_tokens)),
    }
}

fn openai_outcome(v: &Value) -> Outcome {
    let msg = &v["choices"][0]["message"];
    Outcome {
        text: msg["content"].as_str().unwrap_or("").to_owned(),
        finish: v["choices"][0]["finish_reason"].as_str().map(str::to_owned),
        calls: msg["tool_calls"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|c| {
                        (
                            c["id"].as_str().unwrap().to_owned(),
                            c["function"]["name"].as_str().unwrap().to_owned(),
                            c["function"]["arguments"].as_str().unwrap().to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default(),
        usage: v["usage"].as_object().map(|u| {
            (
                u["prompt_tokens"].as_u64().unwrap(),
                u["completion_tokens"].as_u64().unwrap(),
                u["total_tokens"].as_u64().unwrap(),
            )
        }),
    }
}

/// The SDK's per-event results folded as a caller would: text concatenated (incremental) or
/// the last one (cumulative), tool-call fragments joined by index, last finish and usage.
fn dashscope_outcome(events: &[Value], incremental: bool) -> Outcome {
    let mut text = String::new();
    let mut finish = None;
    let mut calls: Vec<(String, String, String)> = Vec::new();
    let mut usage = None;
    for ev in events {
        let out = &ev["output"];
        let (t, f, tc) = match out["choices"].as_array() {
            Some(ch) if !ch.is_empty() => (
                ch[0]["message"]["content"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
                ch[0]["finish_reason"].as_str().map(str::to_owned),
                ch[0]["message"]["tool_calls"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
            ),
            _ => (
                out["text"].as_str().unwrap_or("").to_owned(),
                out["finish_reason"].as_str().map(str::to_owned),
                vec![],
            ),
        };
        if incremental {
            text.push_str(&t);
        } else {
            text = t;
        }
        for (pos, c) in tc.iter().enumerate() {
            let i = c["index"].as_u64().unwrap_or(pos as u64) as usize;
            if calls.len() <= i {
                calls.resize(i + 1, Default::default());
            }
            let slot = &mut calls[i];
            if let Some(id) = c["id"].as_str().filter(|s| !s.is_empty()) {
                slot.0 = id.to_owned();
            }
            if let Some(n) = c["function"]["name"].as_str().filter(|s| !s.is_empty()) {
                slot.1 = n.to_owned();
            }
            let args = c["function"]["arguments"].as_str().unwrap_or("");
            if incremental {
                slot.2.push_str(args);
            } else {
                slot.2 = args.to_owned();
            }
        }
        if let Some(f) = f.filter(|f| f != "null") {
            finish = Some(f);
        }
        if let Some(u) = ev["usage"].as_object() {
            let i = u["input_tokens"].as_u64().unwrap_or(0);
            let o = u["output_tokens"].as_u64().unwrap_or(0);
            usage = Some((i, o, u["total_tokens"].as_u64().unwrap_or(i + o)));
        }
    }
    Outcome {
        text,
        finish,
        calls,
        usage,
    }
}

#[test]
fn openai_sdk_capture_cases_are_reproduced() {
    let cases = load_cases("openai_sdk_capture.json");
    assert!(!cases.is_empty());
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let args = &case["sdk_call_args"];
        let ex = &case["exchanges"][0];
        let key = bearer_of(ex);
        let p = OpenAiCompat::new(OPENAI, &format!("{BASE_HOST}/v1"), Some(key.into())).unwrap();
        let headers = ["authorization", "content-type", "accept"];
        match case["op"].as_str().unwrap() {
            "chat" => {
                let (req, stream) = openai_chat_request(args);
                let built = p.build_chat(&req.model, &req, stream).unwrap();
                assert_same_request(name, &built, ex, &headers);
                let resp = http_response(ex);
                let result = &case["sdk_result"];
                if resp.status >= 400 {
                    let err = p.classify_error(resp.status, &resp.headers, &resp.body);
                    assert_eq!(
                        err.upstream_status(),
                        result["status_code"].as_u64().map(|s| s as u16),
                        "{name}"
                    );
                    assert_eq!(err.upstream_code(), result["code"].as_str(), "{name}");
                    assert_eq!(err.kind(), ErrorKind::Authentication, "{name}");
                    assert!(
                        err.message()
                            .contains(result["body"]["message"].as_str().unwrap()),
                        "{name}"
                    );
                } else if stream {
                    let expected = openai_outcome(&result["accumulated_final"]);
                    for split in [0, 1, 7] {
                        let events = parse_stream(&p, &req, &resp.body, split);
                        let got = fold(&events).unwrap();
                        assert_eq!(ours(&got), expected, "{name} split {split}");
                        // Deltas concatenate to the text; exactly one Finished, last.
                        let finished = events
                            .iter()
                            .filter(|e| matches!(e, Ok(StreamEvent::Finished { .. })))
                            .count();
                        assert_eq!(finished, 1, "{name}");
                        assert!(
                            matches!(events.last(), Some(Ok(StreamEvent::Finished { .. }))),
                            "{name}"
                        );
                    }
                    // The chunks the SDK saw: every content piece we emitted, in order.
                    let pieces: String = result["chunks"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
                        .collect();
                    assert_eq!(pieces, expected.text, "{name}");
                } else {
                    let got = p.parse_chat(&resp).unwrap();
                    assert_eq!(ours(&got), openai_outcome(result), "{name}");
                    assert_eq!(got.id, result["id"].as_str().unwrap());
                    assert_eq!(got.model, result["model"].as_str().unwrap());
                }
            }
            "embeddings" => {
                let input = match &args["input"] {
                    Value::String(s) => vec![s.clone()],
                    Value::Array(a) => a.iter().map(|s| s.as_str().unwrap().to_owned()).collect(),
                    _ => panic!("{name}: input"),
                };
                let mut req = EmbeddingRequest::new(args["model"].as_str().unwrap(), input);
                if let Some(f) = args.get("encoding_format") {
                    req.extra.insert("encoding_format".into(), f.clone());
                }
                let built = p.build_embeddings(&req.model, &req).unwrap();
                assert_same_request(name, &built, ex, &headers);
                let got = p.parse_embeddings(&http_response(ex)).unwrap();
                let expected = case["sdk_result"]["data"].as_array().unwrap();
                assert_eq!(got.data.len(), expected.len(), "{name}");
                for (g, e) in got.data.iter().zip(expected) {
                    let ev: Vec<f32> = e["embedding"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|x| x.as_f64().unwrap() as f32)
                        .collect();
                    assert_eq!(g.vector, ev, "{name}");
                    assert_eq!(u64::from(g.index), e["index"].as_u64().unwrap());
                }
                let u = got.usage.unwrap();
                assert_eq!(
                    u.input_tokens,
                    case["sdk_result"]["usage"]["prompt_tokens"]
                        .as_u64()
                        .unwrap()
                );
            }
            "models" => {
                let built = p.build_models().unwrap();
                assert_same_request(name, &built, ex, &["authorization", "accept"]);
                let got = p.parse_models(&http_response(ex)).unwrap();
                let ids: Vec<&str> = got.iter().map(|m| m.id.as_str()).collect();
                let expected: Vec<&str> = case["sdk_result"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| m["id"].as_str().unwrap())
                    .collect();
                assert_eq!(ids, expected, "{name}");
            }
            other => panic!("{name}: unknown op {other}"),
        }
    }
}

#[test]
fn dashscope_sdk_capture_cases_are_reproduced() {
    let cases = load_cases("dashscope_sdk_capture.json");
    assert!(!cases.is_empty());
    let headers = [
        "authorization",
        "content-type",
        "accept",
        "x-dashscope-sse",
        "x-accel-buffering",
    ];
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let args = &case["sdk_call_args"];
        let ex = &case["exchanges"][0];
        let key = args["api_key"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| bearer_of(ex));
        let p = DashScope::new(&format!("{BASE_HOST}/api/v1"), key.into()).unwrap();
        let result = &case["sdk_result"];
        match case["op"].as_str().unwrap() {
            "generation" => {
                let (req, stream) = dashscope_chat_request(args);
                let built = p.build_chat(&req.model, &req, stream).unwrap();
                assert_same_request(name, &built, ex, &headers);
                let resp = http_response(ex);
                if resp.status >= 400 {
                    let err = p.classify_error(resp.status, &resp.headers, &resp.body);
                    assert_eq!(err.upstream_status(), Some(resp.status), "{name}");
                    assert_eq!(err.upstream_code(), result["code"].as_str(), "{name}");
                    assert_eq!(err.request_id(), result["request_id"].as_str(), "{name}");
                    assert_eq!(err.kind(), ErrorKind::Authentication, "{name}");
                } else if stream {
                    let sdk_events = result.as_array().unwrap();
                    let body: Value = serde_json::from_slice(&built.body).unwrap();
                    let incremental =
                        body["parameters"]["incremental_output"].as_bool() == Some(true);
                    let failed = sdk_events
                        .iter()
                        .find(|e| e["status_code"].as_u64() != Some(200));
                    let ok_events: Vec<Value> = sdk_events
                        .iter()
                        .filter(|e| e["status_code"].as_u64() == Some(200))
                        .cloned()
                        .collect();
                    let expected = dashscope_outcome(&ok_events, incremental);
                    for split in [0, 1, 5] {
                        let events = parse_stream(&p, &req, &resp.body, split);
                        match failed {
                            Some(f) => {
                                let text: String = events
                                    .iter()
                                    .filter_map(|e| match e {
                                        Ok(StreamEvent::TextDelta { text }) => Some(text.as_str()),
                                        _ => None,
                                    })
                                    .collect();
                                assert_eq!(text, expected.text, "{name}");
                                let err = events.last().unwrap().as_ref().unwrap_err();
                                assert_eq!(err.upstream_code(), f["code"].as_str(), "{name}");
                                assert_eq!(
                                    err.upstream_status(),
                                    f["status_code"].as_u64().map(|s| s as u16),
                                    "{name}"
                                );
                                assert_eq!(err.kind(), ErrorKind::ContentFiltered, "{name}");
                            }
                            None => {
                                let got = fold(&events).unwrap();
                                assert_eq!(ours(&got), expected, "{name} split {split}");
                                assert_eq!(
                                    got.request_id.as_deref(),
                                    ok_events[0]["request_id"].as_str()
                                );
                            }
                        }
                    }
                } else {
                    let got = p.parse_chat(&resp).unwrap();
                    assert_eq!(
                        ours(&got),
                        dashscope_outcome(std::slice::from_ref(result), true),
                        "{name}"
                    );
                    assert_eq!(got.request_id.as_deref(), result["request_id"].as_str());
                }
            }
            "embedding" => {
                let input = match &args["input"] {
                    Value::String(s) => vec![s.clone()],
                    Value::Array(a) => a.iter().map(|s| s.as_str().unwrap().to_owned()).collect(),
                    _ => panic!("{name}: input"),
                };
                let mut req = EmbeddingRequest::new(args["model"].as_str().unwrap(), input);
                req.dimensions = args["dimension"].as_u64().map(|d| d as u32);
                req.text_type = args["text_type"].as_str().map(str::to_owned);
                let built = p.build_embeddings(&req.model, &req).unwrap();
                assert_same_request(
                    name,
                    &built,
                    ex,
                    &["authorization", "content-type", "accept"],
                );
                let got = p.parse_embeddings(&http_response(ex)).unwrap();
                let expected = result["output"]["embeddings"].as_array().unwrap();
                let mut expected: Vec<(u64, Vec<f32>)> = expected
                    .iter()
                    .map(|e| {
                        (
                            e["text_index"].as_u64().unwrap(),
                            e["embedding"]
                                .as_array()
                                .unwrap()
                                .iter()
                                .map(|x| x.as_f64().unwrap() as f32)
                                .collect(),
                        )
                    })
                    .collect();
                expected.sort_by_key(|e| e.0);
                let got: Vec<(u64, Vec<f32>)> = got
                    .data
                    .iter()
                    .map(|e| (u64::from(e.index), e.vector.clone()))
                    .collect();
                assert_eq!(got, expected, "{name}");
            }
            other => panic!("{name}: unknown op {other}"),
        }
    }
}
