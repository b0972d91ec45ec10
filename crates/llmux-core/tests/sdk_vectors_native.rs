//! Every exchange of `shared/vectors/zhipu_jwt.json` (`sdk_wire_capture`) and every case of
//! `shared/vectors/ollama_sdk_capture.json`: given the call the official SDK made, we send an
//! equivalent request (method, path, protocol headers, JSON body compared as values) and parse
//! the canned response or stream to the result the SDK reports.
//!
//! Normalisations, both "absent means default" on the server: zhipuai sends unset
//! `response_format`/`thinking` as `null`, and the ollama client sends `"tools": []`; we omit
//! both, so those keys are dropped from the captured body before comparing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, UNIX_EPOCH};

use base64::Engine;
use common::*;
use llmux_core::clock::Clock;
use llmux_core::codec::{Frame, NdjsonDecoder, SseDecoder};
use llmux_core::http::{HttpRequest, Transport, TransportConfig};
use llmux_core::providers::ollama::Ollama;
use llmux_core::providers::zhipu::{Zhipu, ZhipuAuth};
use llmux_core::providers::{AuthContext, Framing, Provider};
use llmux_core::*;
use serde_json::{json, Map, Value};

/// The captures were recorded against a loopback recorder; only paths, headers and bodies are compared.
const BASE_HOST: &str = "http://sdk-capture.invalid";

fn load(file: &str) -> Value {
    let path = vectors_dir().join(file);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn header<'a>(exchange: &'a Value, name: &str) -> Option<&'a str> {
    exchange["headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h[0].as_str().unwrap().eq_ignore_ascii_case(name))
        .map(|h| h[1].as_str().unwrap())
}

/// The captured exchange with its body normalised (see the module docs).
fn normalised(exchange: &Value, drop_null: bool, drop_empty_tools: bool) -> Value {
    let mut ex = exchange.clone();
    let raw = ex["body_raw"].as_str().unwrap().to_owned();
    if raw.is_empty() {
        return ex;
    }
    let mut body: Map<String, Value> = serde_json::from_str(&raw).unwrap();
    if drop_null {
        body.retain(|_, v| !v.is_null());
    }
    if drop_empty_tools && body.get("tools") == Some(&json!([])) {
        body.remove("tools");
    }
    ex["body_raw"] = Value::from(Value::Object(body).to_string());
    ex
}

/// Runs a whole body through a provider's parser in chunks of `split` bytes (0 = whole), with
/// the decoder its framing needs, as the client does.
fn run_stream(
    provider: &dyn Provider,
    req: &ChatRequest,
    body: &[u8],
    split: usize,
) -> Vec<Result<StreamEvent>> {
    enum Dec {
        Sse(SseDecoder),
        Nd(NdjsonDecoder),
    }
    let mut dec = match provider.framing() {
        Framing::Ndjson => Dec::Nd(NdjsonDecoder::default()),
        _ => Dec::Sse(SseDecoder::default()),
    };
    let mut parser = provider.stream_parser(&req.model, req);
    let mut out = Vec::new();
    let mut frames: Vec<Frame> = Vec::new();
    let mut events = Vec::new();
    let chunks: Vec<&[u8]> = if split == 0 {
        vec![body]
    } else {
        body.chunks(split).collect()
    };
    'outer: for c in chunks {
        match &mut dec {
            Dec::Sse(d) => d.push(c, &mut frames).unwrap(),
            Dec::Nd(d) => d.push(c, &mut frames).unwrap(),
        }
        for f in frames.drain(..) {
            let r = parser.on_frame(&f, &mut events);
            out.extend(events.drain(..).map(Ok));
            if let Err(e) = r {
                out.push(Err(e));
                return out;
            }
            if parser.is_done() {
                break 'outer;
            }
        }
    }
    if !parser.is_done() {
        let tail = match &mut dec {
            Dec::Sse(d) => d.finish().frame,
            Dec::Nd(d) => d.finish().frame,
        };
        if let Some(f) = tail {
            if let Err(e) = parser.on_frame(&f, &mut events) {
                out.extend(events.drain(..).map(Ok));
                out.push(Err(e));
                return out;
            }
        }
    }
    let r = parser.finish(&mut events);
    out.extend(events.drain(..).map(Ok));
    if let Err(e) = r {
        out.push(Err(e));
    }
    out
}

/// Stream invariants: `Started` first, exactly one `Finished` and it is last, usage at most once.
fn assert_invariants(name: &str, events: &[Result<StreamEvent>]) {
    assert!(
        matches!(events.first(), Some(Ok(StreamEvent::Started { .. }))),
        "{name}: Started first"
    );
    let finished = events
        .iter()
        .filter(|e| matches!(e, Ok(StreamEvent::Finished { .. })))
        .count();
    assert_eq!(finished, 1, "{name}: one Finished");
    assert!(
        matches!(events.last(), Some(Ok(StreamEvent::Finished { .. }))),
        "{name}: Finished last"
    );
    let usage = events
        .iter()
        .filter(|e| matches!(e, Ok(StreamEvent::Usage(_))))
        .count();
    assert!(usage <= 1, "{name}: usage once");
}

fn auth_ctx(now_ms: u64) -> AuthContext {
    AuthContext {
        clock: Clock::fixed(UNIX_EPOCH + Duration::from_millis(now_ms)),
        transport: Transport::new(TransportConfig::default()).unwrap(),
    }
}

/// The `timestamp` inside a captured JWT (the SDK's clock when it signed).
fn jwt_timestamp(bearer: &str) -> Option<u64> {
    let payload = bearer.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice::<Value>(&bytes).ok()?["timestamp"].as_u64()
}

/// The core request for a zhipuai `chat.completions.create` call, read back from the body the
/// SDK sent: OpenAI fields map to ours, Zhipu's own (`request_id`, `do_sample`, …) go to `extra`.
fn zhipu_chat_request(body: &Map<String, Value>) -> (ChatRequest, bool) {
    let mut r = ChatRequest::new(
        body["model"].as_str().unwrap(),
        serde_json::from_value(body["messages"].clone()).unwrap(),
    );
    let mut stream = false;
    for (k, v) in body {
        match k.as_str() {
            "model" | "messages" => {}
            "stream" => stream = v.as_bool().unwrap(),
            "temperature" => r.temperature = v.as_f64(),
            "top_p" => r.top_p = v.as_f64(),
            "max_tokens" => r.max_tokens = v.as_u64().map(|x| x as u32),
            "stop" => {
                r.stop = v
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s.as_str().unwrap().to_owned())
                    .collect()
            }
            _ if v.is_null() => {}
            _ => {
                r.extra.insert(k.clone(), v.clone());
            }
        }
    }
    (r, stream)
}

#[tokio::test]
async fn zhipu_sdk_wire_capture_is_reproduced() {
    let file = load("zhipu_jwt.json");
    let cap = &file["sdk_wire_capture"];
    let api_key = cap["api_key"].as_str().unwrap();
    let exchanges = cap["exchanges"].as_array().unwrap();
    assert!(!exchanges.is_empty());
    for (n, ex) in exchanges.iter().enumerate() {
        let name = format!("zhipu exchange {n}");
        let bearer = header(ex, "authorization")
            .unwrap()
            .trim_start_matches("Bearer ");
        let (auth, now_ms) = if bearer == api_key {
            (ZhipuAuth::ApiKey, 1_700_000_000_000)
        } else {
            (ZhipuAuth::Jwt, jwt_timestamp(bearer).unwrap())
        };
        let p = Zhipu::new(&format!("{BASE_HOST}/api/paas/v4"), api_key.into(), auth).unwrap();
        let ctx = auth_ctx(now_ms);
        let body: Map<String, Value> =
            serde_json::from_str(ex["body_raw"].as_str().unwrap()).unwrap();
        let expected = normalised(ex, true, false);
        let resp = http_response(ex);
        let canned: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
        let path = ex["path"].as_str().unwrap();
        if path.ends_with("/embeddings") {
            let input: Vec<String> = match &body["input"] {
                Value::String(s) => vec![s.clone()],
                Value::Array(a) => a.iter().map(|s| s.as_str().unwrap().to_owned()).collect(),
                other => panic!("{name}: input {other}"),
            };
            let mut req = EmbeddingRequest::new(body["model"].as_str().unwrap(), input);
            req.dimensions = body
                .get("dimensions")
                .and_then(Value::as_u64)
                .map(|d| d as u32);
            let built = p
                .authorize(p.build_embeddings(&req.model, &req).unwrap(), &ctx)
                .await;
            assert_same_request(&name, &built.unwrap(), &expected, &["authorization"]);
            let got = p.parse_embeddings(&resp).unwrap();
            for (g, e) in got.data.iter().zip(canned["data"].as_array().unwrap()) {
                let ev: Vec<f32> = e["embedding"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap() as f32)
                    .collect();
                assert_eq!(g.vector, ev, "{name}");
            }
            assert_eq!(got.data.len(), canned["data"].as_array().unwrap().len());
            assert_eq!(
                got.usage.unwrap().input_tokens,
                canned["usage"]["prompt_tokens"].as_u64().unwrap()
            );
            continue;
        }
        let (req, stream) = zhipu_chat_request(&body);
        let built = p
            .authorize(p.build_chat(&req.model, &req, stream).unwrap(), &ctx)
            .await;
        assert_same_request(
            &name,
            &built.unwrap(),
            &expected,
            &["authorization", "accept"],
        );
        if stream {
            // What the SDK's iterator yields, folded: content pieces, last finish reason.
            let mut text = String::new();
            let mut finish = None;
            let mut frames = Vec::new();
            SseDecoder::default().push(&resp.body, &mut frames).unwrap();
            for f in frames.iter().filter(|f| f.data != "[DONE]") {
                let c: Value = serde_json::from_str(&f.data).unwrap();
                text.push_str(c["choices"][0]["delta"]["content"].as_str().unwrap_or(""));
                if let Some(r) = c["choices"][0]["finish_reason"].as_str() {
                    finish = Some(r.to_owned());
                }
            }
            for split in [0, 1, 7] {
                let events = run_stream(&p, &req, &resp.body, split);
                assert_invariants(&name, &events);
                let got = fold(&events).unwrap();
                assert_eq!(got.text(), text, "{name} split {split}");
                assert_eq!(
                    got.finish_reason().map(|f| f.as_str().to_owned()),
                    finish,
                    "{name}"
                );
            }
        } else {
            let got = p.parse_chat(&resp).unwrap();
            let choice = &canned["choices"][0];
            assert_eq!(got.text(), choice["message"]["content"].as_str().unwrap());
            assert_eq!(
                got.finish_reason().unwrap().as_str(),
                choice["finish_reason"].as_str().unwrap()
            );
            let u = got.usage.unwrap();
            let cu = &canned["usage"];
            assert_eq!(
                (u.input_tokens, u.output_tokens, u.total_tokens),
                (
                    cu["prompt_tokens"].as_u64().unwrap(),
                    cu["completion_tokens"].as_u64().unwrap(),
                    cu["total_tokens"].as_u64().unwrap()
                ),
                "{name}"
            );
            assert_eq!(got.id, canned["id"].as_str().unwrap());
        }
    }
}

/// The core request for an ollama `chat(**args)` / `generate(**args)` call. Ollama options we
/// have fields for map to them; other options and `keep_alive` go through `extra`.
fn ollama_chat_request(op: &str, args: &Value) -> (ChatRequest, bool) {
    let model = args["model"].as_str().unwrap();
    let mut r = if op == "generate" {
        let mut msgs = Vec::new();
        if let Some(s) = args["system"].as_str() {
            msgs.push(Message::system(s));
        }
        msgs.push(Message::user(args["prompt"].as_str().unwrap()));
        let mut r = ChatRequest::new(model, msgs);
        r.input_style = InputStyle::Prompt;
        r
    } else {
        ChatRequest::new(
            model,
            serde_json::from_value(args["messages"].clone()).unwrap(),
        )
    };
    let mut rest = Map::new();
    if let Some(opts) = args["options"].as_object() {
        for (k, v) in opts {
            match k.as_str() {
                "temperature" => r.temperature = v.as_f64(),
                "top_p" => r.top_p = v.as_f64(),
                "top_k" => r.top_k = v.as_u64().map(|x| x as u32),
                "num_predict" => r.max_tokens = v.as_u64().map(|x| x as u32),
                "seed" => r.seed = v.as_u64(),
                "repeat_penalty" => r.repetition_penalty = v.as_f64(),
                "presence_penalty" => r.presence_penalty = v.as_f64(),
                "frequency_penalty" => r.frequency_penalty = v.as_f64(),
                "stop" => {
                    r.stop = v
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|s| s.as_str().unwrap().to_owned())
                        .collect()
                }
                _ => {
                    rest.insert(k.clone(), v.clone());
                }
            }
        }
    }
    if !rest.is_empty() {
        r.extra.insert("options".into(), Value::Object(rest));
    }
    match &args["format"] {
        Value::String(s) if s == "json" => r.response_format = Some(ResponseFormat::JsonObject),
        Value::Object(_) => {
            r.response_format = Some(ResponseFormat::JsonSchema {
                name: "response".into(),
                schema: args["format"].clone(),
                strict: None,
            })
        }
        _ => {}
    }
    for k in ["keep_alive", "raw", "suffix", "template", "context"] {
        if let Some(v) = args.get(k) {
            r.extra.insert(k.into(), v.clone());
        }
    }
    if let Some(t) = args["think"].as_bool() {
        r.thinking = Some(Thinking {
            enabled: Some(t),
            budget_tokens: None,
            effort: None,
        });
    }
    if let Some(tools) = args["tools"].as_array() {
        r.tools = tools
            .iter()
            .map(|t| {
                let f = &t["function"];
                Tool {
                    name: f["name"].as_str().unwrap().to_owned(),
                    description: f["description"].as_str().map(str::to_owned),
                    parameters: f["parameters"].clone(),
                    strict: None,
                }
            })
            .collect();
    }
    (r, args["stream"].as_bool().unwrap_or(false))
}

/// What the SDK result says, and ours: text, reasoning, finish, calls (name, args as JSON), usage.
#[derive(Debug, PartialEq)]
struct Outcome {
    text: String,
    finish: String,
    calls: Vec<(String, Value)>,
    usage: (u64, u64),
}

fn sdk_outcome(results: &[Value]) -> Outcome {
    let mut text = String::new();
    let mut calls = Vec::new();
    let mut finish = String::new();
    let mut usage = (0, 0);
    for r in results {
        let piece = r["message"]["content"]
            .as_str()
            .or(r["response"].as_str())
            .unwrap_or("");
        text.push_str(piece);
        for c in r["message"]["tool_calls"].as_array().into_iter().flatten() {
            calls.push((
                c["function"]["name"].as_str().unwrap().to_owned(),
                c["function"]["arguments"].clone(),
            ));
        }
        if r["done"].as_bool() == Some(true) {
            // PROTOCOLS §7: `length` stays, otherwise stop (tool_calls when calls were made).
            finish = match r["done_reason"].as_str() {
                Some("length") => "length".into(),
                _ if !calls.is_empty() => "tool_calls".into(),
                _ => "stop".into(),
            };
            usage = (
                r["prompt_eval_count"].as_u64().unwrap_or(0),
                r["eval_count"].as_u64().unwrap_or(0),
            );
        }
    }
    Outcome {
        text,
        finish,
        calls,
        usage,
    }
}

fn our_outcome(r: &ChatResponse) -> Outcome {
    let u = r.usage.unwrap();
    assert_eq!(u.total_tokens, u.input_tokens + u.output_tokens);
    Outcome {
        text: r.text().into_owned(),
        finish: r.finish_reason().unwrap().as_str().to_owned(),
        calls: r
            .tool_calls()
            .iter()
            .map(|c| {
                assert!(!c.id.is_empty());
                (c.name.clone(), serde_json::from_str(&c.arguments).unwrap())
            })
            .collect(),
        usage: (u.input_tokens, u.output_tokens),
    }
}

#[test]
fn ollama_sdk_capture_cases_are_reproduced() {
    let file = load("ollama_sdk_capture.json");
    let cases = file["cases"].as_array().unwrap();
    assert!(!cases.is_empty());
    let p = Ollama::new(BASE_HOST).unwrap();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let args = &case["sdk_call_args"];
        let ex = &case["exchanges"][0];
        let expected = normalised(ex, false, true);
        let resp = http_response(ex);
        let result = &case["sdk_result"];
        let op = case["op"].as_str().unwrap();
        match op {
            "chat" | "generate" => {
                let (req, stream) = ollama_chat_request(op, args);
                let built = p.build_chat(&req.model, &req, stream).unwrap();
                assert_same_request(name, &built, &expected, &["content-type", "accept"]);
                if stream {
                    let sdk = sdk_outcome(result.as_array().unwrap());
                    let pieces: String = result
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|r| {
                            r["message"]["content"]
                                .as_str()
                                .or(r["response"].as_str())
                                .unwrap_or("")
                        })
                        .collect();
                    for split in [0, 1, 3, 7] {
                        let events = run_stream(&p, &req, &resp.body, split);
                        assert_invariants(name, &events);
                        let got = fold(&events).unwrap();
                        assert_eq!(our_outcome(&got), sdk, "{name} split {split}");
                        assert_eq!(got.text(), pieces, "{name}");
                        assert_eq!(got.model, result[0]["model"].as_str().unwrap());
                    }
                } else {
                    let got = p.parse_chat(&resp).unwrap();
                    assert_eq!(
                        our_outcome(&got),
                        sdk_outcome(std::slice::from_ref(result)),
                        "{name}"
                    );
                    assert_eq!(got.model, result["model"].as_str().unwrap());
                }
            }
            "embed" => {
                let input: Vec<String> = match &args["input"] {
                    Value::String(s) => vec![s.clone()],
                    Value::Array(a) => a.iter().map(|s| s.as_str().unwrap().to_owned()).collect(),
                    other => panic!("{name}: input {other}"),
                };
                let mut req = EmbeddingRequest::new(args["model"].as_str().unwrap(), input);
                req.dimensions = args["dimensions"].as_u64().map(|d| d as u32);
                for k in ["truncate", "keep_alive", "options"] {
                    if let Some(v) = args.get(k) {
                        req.extra.insert(k.into(), v.clone());
                    }
                }
                let built = p.build_embeddings(&req.model, &req).unwrap();
                assert_same_request(name, &built, &expected, &["content-type", "accept"]);
                let got = p.parse_embeddings(&resp).unwrap();
                let vectors: Vec<Vec<f32>> = got.data.iter().map(|e| e.vector.clone()).collect();
                let theirs: Vec<Vec<f32>> =
                    serde_json::from_value(result["embeddings"].clone()).unwrap();
                assert_eq!(vectors, theirs, "{name}");
                assert_eq!(
                    got.usage.map(|u| u.input_tokens),
                    result["prompt_eval_count"].as_u64(),
                    "{name}"
                );
                assert_eq!(got.model, result["model"].as_str().unwrap());
            }
            "list" => {
                let built = p.build_models().unwrap();
                assert_same_request(name, &built, &expected, &["accept"]);
                let got = p.parse_models(&resp).unwrap();
                let ids: Vec<&str> = got.iter().map(|m| m.id.as_str()).collect();
                let theirs: Vec<&str> = result["models"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| m["model"].as_str().unwrap())
                    .collect();
                assert_eq!(ids, theirs, "{name}");
            }
            other => panic!("{name}: unknown op {other}"),
        }
    }
}

/// A request sent unsigned would not be what the capture shows: building alone adds no auth.
#[test]
fn zhipu_builds_without_credentials_until_authorized() {
    let p = Zhipu::new(
        &format!("{BASE_HOST}/api/paas/v4"),
        "id.secret".into(),
        ZhipuAuth::ApiKey,
    )
    .unwrap();
    let req = ChatRequest::new("glm-4-flash", vec![Message::user("hi")]);
    let built: HttpRequest = p.build_chat(&req.model, &req, false).unwrap();
    assert!(built.headers.get("authorization").is_none());
}
