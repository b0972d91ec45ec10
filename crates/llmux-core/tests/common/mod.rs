//! Shared helpers for the core's integration tests: locating `shared/vectors`, mapping the
//! official SDKs' call arguments onto core requests, and running stream bodies through parsers.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use llmux_core::codec::SseDecoder;
use llmux_core::providers::Provider;
use llmux_core::*;
use serde_json::{Map, Value};

/// `../shared/vectors` beside the repository (or `LLMUX_VECTORS_DIR`).
pub fn vectors_dir() -> PathBuf {
    if let Ok(d) = std::env::var("LLMUX_VECTORS_DIR") {
        return PathBuf::from(d);
    }
    let mut dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    loop {
        let candidate = dir.join("shared").join("vectors");
        if candidate.is_dir() {
            return candidate;
        }
        let sibling = dir.join("..").join("shared").join("vectors");
        if sibling.is_dir() {
            return sibling;
        }
        assert!(
            dir.pop(),
            "shared/vectors not found above {}",
            env!("CARGO_MANIFEST_DIR")
        );
    }
}

pub fn load_cases(file: &str) -> Vec<Value> {
    let path = vectors_dir().join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let v: Value = serde_json::from_str(&text).unwrap();
    v["cases"].as_array().unwrap().clone()
}

fn tools_from(v: &Value) -> Vec<Tool> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|t| {
                    let f = &t["function"];
                    Tool {
                        name: f["name"].as_str().unwrap().to_owned(),
                        description: f["description"].as_str().map(str::to_owned),
                        parameters: f["parameters"].clone(),
                        strict: f["strict"].as_bool(),
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

fn tool_choice_from(v: &Value) -> Option<ToolChoice> {
    match v {
        Value::String(s) if s == "auto" => Some(ToolChoice::Auto),
        Value::String(s) if s == "none" => Some(ToolChoice::None),
        Value::String(s) if s == "required" => Some(ToolChoice::Required),
        Value::Object(_) => Some(ToolChoice::Function(
            v["function"]["name"].as_str().unwrap().to_owned(),
        )),
        _ => None,
    }
}

fn messages_from(v: &Value) -> Vec<Message> {
    serde_json::from_value(v.clone()).unwrap()
}

/// The core request equivalent to an `openai` SDK `chat.completions.create(**args)` call.
pub fn openai_chat_request(args: &Value) -> (ChatRequest, bool) {
    let mut r = ChatRequest::new(
        args["model"].as_str().unwrap(),
        messages_from(&args["messages"]),
    );
    r.temperature = args["temperature"].as_f64();
    r.top_p = args["top_p"].as_f64();
    r.max_tokens = args["max_tokens"].as_u64().map(|x| x as u32);
    r.stop = match &args["stop"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().map(|s| s.as_str().unwrap().to_owned()).collect(),
        _ => vec![],
    };
    r.seed = args["seed"].as_u64();
    r.presence_penalty = args["presence_penalty"].as_f64();
    r.frequency_penalty = args["frequency_penalty"].as_f64();
    r.user = args["user"].as_str().map(str::to_owned);
    r.n = args["n"].as_u64().map(|x| x as u32);
    r.tools = tools_from(&args["tools"]);
    r.tool_choice = tool_choice_from(&args["tool_choice"]);
    let stream = args["stream"].as_bool().unwrap_or(false);
    r.stream_usage = Some(
        args["stream_options"]["include_usage"]
            .as_bool()
            .unwrap_or(false),
    );
    (r, stream)
}

/// The core request equivalent to a `dashscope` SDK `Generation.call(**args)` call.
pub fn dashscope_chat_request(args: &Value) -> (ChatRequest, bool) {
    let model = args["model"].as_str().unwrap();
    let mut r = match args.get("prompt").and_then(Value::as_str) {
        Some(p) => {
            let mut r = ChatRequest::new(model, vec![Message::user(p)]);
            r.input_style = InputStyle::Prompt;
            r
        }
        None => ChatRequest::new(model, messages_from(&args["messages"])),
    };
    let stream = args["stream"].as_bool().unwrap_or(false);
    let mut extra = Map::new();
    match args.get("result_format") {
        Some(v) => {
            extra.insert("result_format".into(), v.clone());
        }
        None if r.input_style == InputStyle::Messages => {
            extra.insert("result_format".into(), Value::Null);
        }
        None => {}
    }
    if stream {
        // Absent: the SDK sends nothing (cumulative). Explicit true: incremental. Explicit
        // false: the SDK itself sends true for most models and re-accumulates; llmux callers
        // always receive deltas, so our default (incremental) is the equivalent call.
        match args.get("incremental_output") {
            None => {
                extra.insert("incremental_output".into(), Value::Null);
            }
            Some(Value::Bool(true)) => {
                extra.insert("incremental_output".into(), Value::Bool(true));
            }
            Some(_) => {}
        }
    }
    r.extra = extra;
    r.temperature = args["temperature"].as_f64();
    r.top_p = args["top_p"].as_f64();
    r.top_k = args["top_k"].as_u64().map(|x| x as u32);
    r.seed = args["seed"].as_u64();
    r.max_tokens = args["max_tokens"].as_u64().map(|x| x as u32);
    r.stop = args["stop"]
        .as_array()
        .map(|a| a.iter().map(|s| s.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default();
    r.repetition_penalty = args["repetition_penalty"].as_f64();
    r.presence_penalty = args["presence_penalty"].as_f64();
    r.enable_search = args["enable_search"].as_bool();
    r.tools = tools_from(&args["tools"]);
    r.tool_choice = tool_choice_from(&args["tool_choice"]);
    (r, stream)
}

/// Runs a whole SSE body through a provider's stream parser, byte-split at `split`
/// (0 = whole), as the client does.
pub fn parse_stream(
    provider: &dyn Provider,
    req: &ChatRequest,
    body: &[u8],
    split: usize,
) -> Vec<Result<StreamEvent>> {
    let mut parser = provider.stream_parser(&req.model, req);
    let mut decoder = SseDecoder::default();
    let mut out: Vec<Result<StreamEvent>> = Vec::new();
    let mut frames = Vec::new();
    let mut events = Vec::new();
    let chunks: Vec<&[u8]> = if split == 0 {
        vec![body]
    } else {
        body.chunks(split).collect()
    };
    for c in chunks {
        decoder.push(c, &mut frames).unwrap();
        for f in frames.drain(..) {
            if let Err(e) = parser.on_frame(&f, &mut events) {
                out.extend(events.drain(..).map(Ok));
                out.push(Err(e));
                return out;
            }
            if parser.is_done() {
                break;
            }
        }
        out.extend(events.drain(..).map(Ok));
        if parser.is_done() {
            break;
        }
    }
    if !parser.is_done() {
        if let Some(f) = decoder.finish().frame {
            if let Err(e) = parser.on_frame(&f, &mut events) {
                out.extend(events.drain(..).map(Ok));
                out.push(Err(e));
                return out;
            }
        }
    }
    match parser.finish(&mut events) {
        Ok(()) => out.extend(events.drain(..).map(Ok)),
        Err(e) => {
            out.extend(events.drain(..).map(Ok));
            out.push(Err(e));
        }
    }
    out
}

/// Folds parsed events into a response.
pub fn fold(events: &[Result<StreamEvent>]) -> Result<ChatResponse> {
    let mut acc = StreamAccumulator::new();
    for e in events {
        match e {
            Ok(ev) => acc.push(ev)?,
            Err(e) => return Err(Error::new(e.kind(), e.message())),
        }
    }
    acc.finish()
}

/// Compares a request we built against a captured one: method, path, the named headers, body as JSON.
pub fn assert_same_request(
    name: &str,
    ours: &llmux_core::http::HttpRequest,
    exchange: &Value,
    headers: &[&str],
) {
    assert_eq!(
        ours.method.as_str(),
        exchange["method"].as_str().unwrap(),
        "{name}: method"
    );
    let url = reqwest_path(&ours.url);
    assert_eq!(url, exchange["path"].as_str().unwrap(), "{name}: path");
    let captured: Vec<(String, String)> = exchange["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h[0].as_str().unwrap().to_ascii_lowercase(),
                h[1].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for h in headers {
        let theirs = captured
            .iter()
            .find(|(k, _)| k == h)
            .map(|(_, v)| v.as_str());
        let mine = ours.headers.get(*h).map(|v| v.to_str().unwrap());
        assert_eq!(mine, theirs, "{name}: header {h}");
    }
    let raw = exchange["body_raw"].as_str().unwrap();
    if raw.is_empty() {
        assert!(ours.body.is_empty(), "{name}: body should be empty");
    } else {
        let theirs: Value = serde_json::from_str(raw).unwrap();
        let mine: Value = serde_json::from_slice(&ours.body).unwrap();
        assert_eq!(mine, theirs, "{name}: body");
    }
}

fn reqwest_path(url: &str) -> String {
    let after_scheme = url.split_once("://").map(|x| x.1).unwrap_or(url);
    let path = after_scheme
        .find('/')
        .map(|i| &after_scheme[i..])
        .unwrap_or("/");
    path.to_owned()
}

/// A response value as the providers see it.
pub fn http_response(exchange: &Value) -> llmux_core::http::HttpResponse {
    let resp = &exchange["response"];
    let mut headers = ::http::HeaderMap::new();
    headers.insert(
        "content-type",
        resp["content_type"].as_str().unwrap().parse().unwrap(),
    );
    llmux_core::http::HttpResponse {
        status: resp["status"].as_u64().unwrap() as u16,
        headers,
        body: bytes::Bytes::from(resp["body"].as_str().unwrap().to_owned()),
    }
}
