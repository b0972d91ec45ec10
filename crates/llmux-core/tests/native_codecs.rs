//! Codec tests for Hunyuan, Zhipu and Ollama without a network: request bodies against the
//! SDK vectors' parameters, stream-parser invariants (one `Finished`, last; usage once; tool
//! fragments reassembling to JSON; any byte split gives the same events), and the tables of
//! vendor error codes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use llmux_core::codec::{Frame, NdjsonDecoder};
use llmux_core::http::HttpResponse;
use llmux_core::providers::hunyuan::{hunyuan_code, Hunyuan};
use llmux_core::providers::ollama::{parse_host, Ollama, DEFAULT_HOST};
use llmux_core::providers::zhipu::{zhipu_code, Zhipu, ZhipuAuth};
use llmux_core::providers::Provider;
use llmux_core::*;
use proptest::prelude::*;
use serde_json::{json, Value};

fn hunyuan() -> Hunyuan {
    Hunyuan::new(
        "https://hunyuan.tencentcloudapi.com/",
        "AKID".into(),
        "key".into(),
    )
    .unwrap()
}

fn zhipu() -> Zhipu {
    Zhipu::new(
        "https://open.bigmodel.cn/api/paas/v4",
        "id.secret".into(),
        ZhipuAuth::ApiKey,
    )
    .unwrap()
}

fn ollama() -> Ollama {
    Ollama::new(DEFAULT_HOST).unwrap()
}

fn json_response(status: u16, body: &str) -> HttpResponse {
    let mut headers = ::http::HeaderMap::new();
    headers.insert("content-type", "application/json".parse().unwrap());
    headers.insert("x-tc-requestid", "rid-h".parse().unwrap());
    HttpResponse {
        status,
        headers,
        body: bytes::Bytes::from(body.to_owned()),
    }
}

/// Schema strings are compared as JSON (the SDK kept the caller's key order).
fn schema_strings_as_json(mut v: Value) -> Value {
    for key in ["Tools"] {
        if let Some(tools) = v.get_mut(key).and_then(Value::as_array_mut) {
            for t in tools {
                let p = &mut t["Function"]["Parameters"];
                *p = serde_json::from_str(p.as_str().unwrap()).unwrap();
            }
        }
    }
    v
}

#[test]
fn hunyuan_bodies_match_the_sdk_vector_params() {
    let file: Value =
        serde_json::from_str(&std::fs::read_to_string(vectors_dir().join("tc3.json")).unwrap())
            .unwrap();
    let p = hunyuan();
    let mut seen = 0;
    for v in file["vectors"].as_array().unwrap() {
        let params = &v["inputs"]["params"];
        if v["inputs"]["action"] != "ChatCompletions" {
            continue;
        }
        seen += 1;
        let msgs = params["Messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                let role = Role::parse(&m["Role"].as_str().unwrap().to_lowercase()).unwrap();
                Message {
                    role,
                    ..Message::user(m["Content"].as_str().unwrap())
                }
            })
            .collect();
        let mut req = ChatRequest::new(params["Model"].as_str().unwrap(), msgs);
        req.temperature = params["Temperature"].as_f64();
        req.top_p = params["TopP"].as_f64();
        for t in params["Tools"].as_array().into_iter().flatten() {
            let f = &t["Function"];
            req.tools.push(Tool {
                name: f["Name"].as_str().unwrap().into(),
                description: f["Description"].as_str().map(Into::into),
                parameters: serde_json::from_str(f["Parameters"].as_str().unwrap()).unwrap(),
                strict: None,
            });
        }
        if params["ToolChoice"] == "auto" {
            req.tool_choice = Some(ToolChoice::Auto);
        }
        let stream = params["Stream"].as_bool().unwrap_or(false);
        let built = p.build_chat(&req.model, &req, stream).unwrap();
        assert_eq!(built.headers["x-tc-action"], "ChatCompletions");
        assert_eq!(built.headers["x-tc-version"], "2023-09-01");
        assert_eq!(built.headers["content-type"], "application/json");
        assert!(built.headers.get("authorization").is_none(), "signed later");
        let ours: Value = serde_json::from_slice(&built.body).unwrap();
        assert_eq!(
            schema_strings_as_json(ours),
            schema_strings_as_json(params.clone()),
            "{}",
            v["name"]
        );
    }
    assert_eq!(seen, 3);
}

#[test]
fn hunyuan_rejects_what_it_lacks_naming_every_field() {
    let mut req = ChatRequest::new("hunyuan-lite", vec![Message::user("hi")]);
    req.max_tokens = Some(5);
    req.presence_penalty = Some(0.5);
    req.tool_choice = Some(ToolChoice::Required);
    req.tools = vec![Tool {
        name: "f".into(),
        description: None,
        parameters: json!({}),
        strict: None,
    }];
    let err = hunyuan().build_chat(&req.model, &req, false).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    for name in ["max_tokens", "presence_penalty", "required"] {
        assert!(err.message().contains(name), "{}", err.message());
    }
    let mut req = ChatRequest::new("hunyuan-lite", vec![Message::user("hi")]);
    req.seed = Some(20_000);
    assert_eq!(
        hunyuan()
            .build_chat(&req.model, &req, false)
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidRequest
    );
    let mut req = ChatRequest::new("hunyuan-lite", vec![Message::user("hi")]);
    req.enable_search = Some(true);
    req.thinking = Some(Thinking::switch(true));
    req.seed = Some(7);
    req.stop = vec!["END".into()];
    req.extra.insert("StreamModeration".into(), json!(true));
    let body: Value =
        serde_json::from_slice(&hunyuan().build_chat(&req.model, &req, true).unwrap().body)
            .unwrap();
    assert_eq!(body["EnableEnhancement"], true);
    assert_eq!(body["EnableThinking"], true);
    assert_eq!(body["Seed"], 7);
    assert_eq!(body["Stop"], json!(["END"]));
    assert_eq!(body["StreamModeration"], true);
    assert_eq!(body["Stream"], true);
}

#[test]
fn hunyuan_parses_answers_and_errors_in_200() {
    let p = hunyuan();
    let ok = r#"{"Response":{"RequestId":"r1","Id":"id1","Created":1710902312,"Note":"n",
        "Choices":[{"FinishReason":"tool_calls","Message":{"Role":"assistant","Content":"",
        "ReasoningContent":"think","ToolCalls":[{"Id":"c1","Type":"function","Index":0,
        "Function":{"Name":"f","Arguments":"{\"a\":1}"}}]}}],
        "Usage":{"PromptTokens":3,"CompletionTokens":14,"TotalTokens":17}}}"#;
    let r = p.parse_chat(&json_response(200, ok)).unwrap();
    assert_eq!(r.id, "id1");
    assert_eq!(r.request_id.as_deref(), Some("r1"));
    assert_eq!(r.finish_reason(), Some(&FinishReason::ToolCalls));
    assert_eq!(r.tool_calls()[0].arguments, "{\"a\":1}");
    assert_eq!(r.choices[0].message.reasoning.as_deref(), Some("think"));
    assert_eq!(r.usage.unwrap().total_tokens, 17);

    let expire = r#"{"Response":{"Error":{"Code":"AuthFailure.SignatureExpire","Message":"Signature expired"},"RequestId":"r2"}}"#;
    let err = p.parse_chat(&json_response(200, expire)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Authentication);
    assert!(err.is_clock_skew());
    assert_eq!(err.request_id(), Some("r2"));
    assert_eq!(err.upstream_status(), None, "it came in an HTTP 200");
    let bad = r#"{"Response":{"Error":{"Code":"AuthFailure.SignatureFailure","Message":"x"},"RequestId":"r3"}}"#;
    let err = p.parse_chat(&json_response(200, bad)).unwrap_err();
    assert!(!err.is_clock_skew());
    let err = p.classify_error(502, &::http::HeaderMap::new(), b"<html>bad gateway</html>");
    assert_eq!(err.kind(), ErrorKind::UpstreamServer);
}

#[test]
fn hunyuan_error_codes_map_to_kinds() {
    let table = [
        ("AuthFailure.SignatureFailure", ErrorKind::Authentication),
        ("AuthFailure.SignatureExpire", ErrorKind::Authentication),
        ("AuthFailure.SecretIdNotFound", ErrorKind::Authentication),
        ("AuthFailure.InvalidSecretId", ErrorKind::Authentication),
        ("AuthFailure.TokenFailure", ErrorKind::Authentication),
        (
            "AuthFailure.UnauthorizedOperation",
            ErrorKind::Authentication,
        ),
        ("InvalidParameter", ErrorKind::InvalidRequest),
        ("InvalidParameterValue", ErrorKind::InvalidRequest),
        ("MissingParameter", ErrorKind::InvalidRequest),
        ("RequestSizeLimitExceeded", ErrorKind::InvalidRequest),
        ("RequestLimitExceeded", ErrorKind::RateLimited),
        ("LimitExceeded", ErrorKind::RateLimited),
        (
            "FailedOperation.EngineServerLimitExceeded",
            ErrorKind::RateLimited,
        ),
        (
            "FailedOperation.ResourcePackExhausted",
            ErrorKind::QuotaExhausted,
        ),
        (
            "FailedOperation.FreeResourcePackExhausted",
            ErrorKind::QuotaExhausted,
        ),
        (
            "FailedOperation.ServiceStopArrears",
            ErrorKind::QuotaExhausted,
        ),
        (
            "FailedOperation.ServiceNotActivated",
            ErrorKind::PermissionDenied,
        ),
        ("UnauthorizedOperation", ErrorKind::PermissionDenied),
        ("FailedOperation.EngineRequestTimeout", ErrorKind::Timeout),
        (
            "FailedOperation.EngineServerError",
            ErrorKind::UpstreamServer,
        ),
        ("InternalError", ErrorKind::UpstreamServer),
        ("ResourceInsufficient", ErrorKind::UpstreamServer),
        ("UnsupportedOperation", ErrorKind::Unsupported),
        ("InvalidAction", ErrorKind::InvalidRequest),
    ];
    for (code, kind) in table {
        assert_eq!(hunyuan_code(code), Some(kind), "{code}");
    }
    assert_eq!(hunyuan_code("SomethingNew"), None);
}

const HUNYUAN_TOOL_STREAM: &str = concat!(
    "data: {\"Id\":\"s1\",\"Created\":1,\"Choices\":[{\"FinishReason\":\"\",\"Delta\":{\"Role\":\"assistant\",\"Content\":\"\",\"ToolCalls\":[{\"Id\":\"call_a\",\"Type\":\"function\",\"Index\":0,\"Function\":{\"Name\":\"get_weather\",\"Arguments\":\"{\\\"ci\"}}]}}],\"Usage\":{\"PromptTokens\":5,\"CompletionTokens\":1,\"TotalTokens\":6}}\n\n",
    "data: {\"Id\":\"s1\",\"Created\":1,\"Choices\":[{\"FinishReason\":\"\",\"Delta\":{\"Role\":\"assistant\",\"ToolCalls\":[{\"Id\":\"call_a\",\"Index\":0,\"Function\":{\"Name\":\"get_weather\",\"Arguments\":\"ty\\\":\\\"深圳\\\"}\"}}]}}],\"Usage\":{\"PromptTokens\":5,\"CompletionTokens\":2,\"TotalTokens\":7}}\n\n",
    "data: {\"Id\":\"s1\",\"Created\":1,\"Choices\":[{\"FinishReason\":\"\",\"Delta\":{\"ToolCalls\":[{\"Id\":\"call_b\",\"Index\":1,\"Function\":{\"Name\":\"get_time\",\"Arguments\":\"{}\"}}]}}],\"Usage\":{\"PromptTokens\":5,\"CompletionTokens\":3,\"TotalTokens\":8}}\n\n",
    "data: {\"Id\":\"s1\",\"Created\":1,\"Choices\":[{\"FinishReason\":\"tool_calls\",\"Delta\":{\"Content\":\"\"}}],\"Usage\":{\"PromptTokens\":5,\"CompletionTokens\":4,\"TotalTokens\":9}}\n\n",
);

fn check_invariants(events: &[Result<StreamEvent>]) {
    let finished = events
        .iter()
        .filter(|e| matches!(e, Ok(StreamEvent::Finished { .. })))
        .count();
    assert_eq!(finished, 1);
    assert!(matches!(
        events.last(),
        Some(Ok(StreamEvent::Finished { .. }))
    ));
    assert!(matches!(
        events.first(),
        Some(Ok(StreamEvent::Started { .. }))
    ));
    let usage = events
        .iter()
        .filter(|e| matches!(e, Ok(StreamEvent::Usage(_))))
        .count();
    assert_eq!(usage, 1);
}

#[test]
fn hunyuan_stream_merges_tool_calls_and_reports_final_usage_once() {
    let p = hunyuan();
    let req = ChatRequest::new("hunyuan-functioncall", vec![Message::user("x")]);
    let whole = parse_stream(&p, &req, HUNYUAN_TOOL_STREAM.as_bytes(), 0);
    for split in [1, 2, 3, 5, 13] {
        let events = parse_stream(&p, &req, HUNYUAN_TOOL_STREAM.as_bytes(), split);
        assert_eq!(events.len(), whole.len(), "split {split}");
        check_invariants(&events);
        let r = fold(&events).unwrap();
        assert_eq!(r.finish_reason(), Some(&FinishReason::ToolCalls));
        let calls = r.tool_calls();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].id, "call_a");
        assert_eq!(calls[0].name, "get_weather");
        let args: Value = serde_json::from_str(&calls[0].arguments).unwrap();
        assert_eq!(args, json!({"city": "深圳"}));
        assert_eq!(calls[1].name, "get_time");
        let u = r.usage.unwrap();
        assert_eq!((u.input_tokens, u.output_tokens, u.total_tokens), (5, 4, 9));
        assert_eq!(r.id, "s1");
    }
}

#[test]
fn hunyuan_stream_errors_and_cuts_are_errors() {
    let p = hunyuan();
    let req = ChatRequest::new("hunyuan-lite", vec![Message::user("x")]);
    let text = "data: {\"Choices\":[{\"FinishReason\":\"\",\"Delta\":{\"Content\":\"很好\"}}],\"Usage\":{\"PromptTokens\":1,\"CompletionTokens\":1,\"TotalTokens\":2}}\n\n";
    // Cut before a finish reason.
    let events = parse_stream(&p, &req, text.as_bytes(), 0);
    let err = events.last().unwrap().as_ref().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UpstreamProtocol);
    // A mid-stream ErrorMsg.
    for (code, kind) in [
        (4000, ErrorKind::UpstreamServer),
        (4001, ErrorKind::Timeout),
    ] {
        let body = format!(
            "{text}data: {{\"Choices\":[],\"ErrorMsg\":{{\"Code\":{code},\"Msg\":\"boom\"}}}}\n\n"
        );
        let events = parse_stream(&p, &req, body.as_bytes(), 0);
        assert!(matches!(events[1], Ok(StreamEvent::TextDelta { .. })));
        let err = events.last().unwrap().as_ref().unwrap_err();
        assert_eq!(err.kind(), kind);
        assert_eq!(err.upstream_code(), Some(code.to_string().as_str()));
    }
    // A moderated end.
    let body = format!("{text}data: {{\"Choices\":[{{\"FinishReason\":\"sensitive\",\"Delta\":{{\"Content\":\"\"}}}}]}}\n\n");
    let r = fold(&parse_stream(&p, &req, body.as_bytes(), 0)).unwrap();
    assert_eq!(r.finish_reason(), Some(&FinishReason::ContentFilter));
    assert_eq!(r.text(), "很好");
    // Garbage.
    let events = parse_stream(&p, &req, b"data: {not json\n\n", 0);
    assert_eq!(
        events.last().unwrap().as_ref().unwrap_err().kind(),
        ErrorKind::UpstreamProtocol
    );
}

#[test]
fn zhipu_rules_and_error_codes() {
    let p = zhipu();
    let mut req = ChatRequest::new("glm-4-flash", vec![Message::user("hi")]);
    req.temperature = Some(0.0);
    req.top_p = Some(1.0);
    req.user = Some("u1".into());
    req.thinking = Some(Thinking::switch(false));
    let body: Value =
        serde_json::from_slice(&p.build_chat(&req.model, &req, true).unwrap().body).unwrap();
    assert_eq!(body["do_sample"], false);
    assert_eq!(body["temperature"], 0.01);
    assert_eq!(body["top_p"], 0.99);
    assert_eq!(body["user_id"], "u1");
    assert_eq!(body["thinking"], json!({"type": "disabled"}));
    assert!(body.get("stream_options").is_none());
    assert!(body.get("user").is_none());

    let mut req = ChatRequest::new("glm-4-flash", vec![Message::user("hi")]);
    req.seed = Some(1);
    req.frequency_penalty = Some(0.1);
    let err = p.build_chat(&req.model, &req, false).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    assert!(err.message().contains("seed") && err.message().contains("frequency_penalty"));

    for (code, kind) in [
        ("1000", ErrorKind::Authentication),
        ("1002", ErrorKind::Authentication),
        ("1003", ErrorKind::Authentication),
        ("1113", ErrorKind::QuotaExhausted),
        ("1211", ErrorKind::NotFound),
        ("1261", ErrorKind::ContextLengthExceeded),
        ("1301", ErrorKind::ContentFiltered),
        ("1302", ErrorKind::RateLimited),
        ("1303", ErrorKind::RateLimited),
        ("1305", ErrorKind::RateLimited),
        ("1214", ErrorKind::InvalidRequest),
    ] {
        assert_eq!(zhipu_code(code), Some(kind), "{code}");
        let body = format!(r#"{{"error":{{"code":"{code}","message":"m"}}}}"#);
        let e = p.classify_error(400, &::http::HeaderMap::new(), body.as_bytes());
        assert_eq!(e.kind(), kind, "{code}");
        assert_eq!(e.upstream_code(), Some(code));
        assert!(!e.is_clock_skew(), "raw-key mode");
    }
    let jwt = Zhipu::new("http://x/api/paas/v4", "id.s".into(), ZhipuAuth::Jwt).unwrap();
    let e = jwt.classify_error(
        401,
        &::http::HeaderMap::new(),
        br#"{"error":{"code":"1003","message":"expired"}}"#,
    );
    assert!(e.is_clock_skew());
    assert!(Zhipu::new("http://x", "no-dot".into(), ZhipuAuth::Jwt).is_err());
    assert!(ZhipuAuth::parse("weird").is_err());
}

#[test]
fn zhipu_network_error_finish_is_an_error() {
    let p = zhipu();
    let req = ChatRequest::new("glm-4-flash", vec![Message::user("hi")]);
    let body = "data: {\"id\":\"1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\n\ndata: {\"id\":\"1\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"network_error\"}]}\n\ndata: [DONE]\n\n";
    let events = parse_stream(&p, &req, body.as_bytes(), 0);
    let err = events.last().unwrap().as_ref().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UpstreamServer);
    assert!(!events
        .iter()
        .any(|e| matches!(e, Ok(StreamEvent::Finished { .. }))));
}

#[test]
fn ollama_host_is_parsed_like_the_python_client() {
    for (given, want) in [
        ("", "http://127.0.0.1:11434"),
        ("1.2.3.4", "http://1.2.3.4:11434"),
        (":56789", "http://127.0.0.1:56789"),
        ("0.0.0.0:11434", "http://127.0.0.1:11434"),
        ("1.2.3.4:56789", "http://1.2.3.4:56789"),
        ("http://1.2.3.4", "http://1.2.3.4:80"),
        ("https://1.2.3.4", "https://1.2.3.4:443"),
        ("https://1.2.3.4:56789", "https://1.2.3.4:56789"),
        ("example.com:56789/path/", "http://example.com:56789/path"),
        ("[::1]:8080", "http://[::1]:8080"),
        ("[::]", "http://[::1]:11434"),
        ("http://127.0.0.1:11434", "http://127.0.0.1:11434"),
    ] {
        assert_eq!(parse_host(given), want, "{given}");
    }
}

#[test]
fn ollama_options_format_and_extra_mapping() {
    let p = ollama();
    let mut req = ChatRequest::new("llama3.2", vec![Message::user("hi")]);
    req.max_tokens = Some(10);
    req.repetition_penalty = Some(1.1);
    req.top_k = Some(5);
    req.response_format = Some(ResponseFormat::JsonSchema {
        name: "x".into(),
        schema: json!({"type": "object"}),
        strict: None,
    });
    req.thinking = Some(Thinking::switch(true));
    req.extra.insert("keep_alive".into(), json!(0));
    req.extra.insert("mirostat".into(), json!(2));
    req.extra.insert("options.num_ctx".into(), json!(8192));
    req.extra.insert("options".into(), json!({"top_k": null}));
    let b: Value =
        serde_json::from_slice(&p.build_chat(&req.model, &req, false).unwrap().body).unwrap();
    assert_eq!(
        b["options"],
        json!({"num_predict": 10, "repeat_penalty": 1.1, "mirostat": 2, "num_ctx": 8192})
    );
    assert_eq!(b["format"], json!({"type": "object"}));
    assert_eq!(b["think"], true);
    assert_eq!(b["keep_alive"], 0);
    assert_eq!(b["stream"], false);

    let mut req = ChatRequest::new("llama3.2", vec![Message::user("hi")]);
    req.response_format = Some(ResponseFormat::JsonObject);
    let b: Value =
        serde_json::from_slice(&p.build_chat(&req.model, &req, true).unwrap().body).unwrap();
    assert_eq!(b["format"], "json");
    assert!(b.get("options").is_none());

    // Tool round trip: arguments go back as an object, the result names its function.
    let mut asst = Message::assistant("");
    asst.tool_calls = vec![ToolCall {
        id: "call_0".into(),
        name: "get_weather".into(),
        arguments: "{\"city\":\"Paris\"}".into(),
    }];
    let req = ChatRequest::new(
        "llama3.2",
        vec![
            Message::user("w?"),
            asst,
            Message::tool_result("call_0", "sunny"),
        ],
    );
    let b: Value =
        serde_json::from_slice(&p.build_chat(&req.model, &req, false).unwrap().body).unwrap();
    assert_eq!(
        b["messages"][1]["tool_calls"][0]["function"]["arguments"],
        json!({"city": "Paris"})
    );
    assert_eq!(b["messages"][2]["tool_name"], "get_weather");

    let mut req = ChatRequest::new("llama3.2", vec![Message::user("hi")]);
    req.n = Some(2);
    req.tool_choice = Some(ToolChoice::Required);
    let err = p.build_chat(&req.model, &req, false).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    assert!(err.message().contains("n (more") && err.message().contains("required"));
    let req = ChatRequest::new(
        "llava",
        vec![Message::user(Content::Parts(vec![ContentPart::ImageUrl {
            url: "https://example.com/cat.png".into(),
            detail: None,
        }]))],
    );
    assert_eq!(
        p.build_chat(&req.model, &req, false).unwrap_err().kind(),
        ErrorKind::Unsupported
    );
}

fn ndjson_events(p: &Ollama, body: &[u8], split: usize) -> Vec<Result<StreamEvent>> {
    let req = ChatRequest::new("llama3.2", vec![Message::user("x")]);
    let mut parser = p.stream_parser(&req.model, &req);
    let mut dec = NdjsonDecoder::default();
    let mut frames: Vec<Frame> = Vec::new();
    let mut out = Vec::new();
    let mut evs = Vec::new();
    for c in body.chunks(split.max(1)) {
        dec.push(c, &mut frames).unwrap();
        for f in frames.drain(..) {
            if parser.is_done() {
                break;
            }
            let r = parser.on_frame(&f, &mut evs);
            out.extend(evs.drain(..).map(Ok));
            if let Err(e) = r {
                out.push(Err(e));
                return out;
            }
        }
    }
    if !parser.is_done() {
        if let Some(f) = dec.finish().frame {
            if let Err(e) = parser.on_frame(&f, &mut evs) {
                out.extend(evs.drain(..).map(Ok));
                out.push(Err(e));
                return out;
            }
        }
    }
    let r = parser.finish(&mut evs);
    out.extend(evs.drain(..).map(Ok));
    if let Err(e) = r {
        out.push(Err(e));
    }
    out
}

const OLLAMA_TOOL_STREAM: &str = concat!(
    "{\"model\":\"llama3.2\",\"message\":{\"role\":\"assistant\",\"content\":\"\",\"thinking\":\"hm\"},\"done\":false}\n",
    "{\"model\":\"llama3.2\",\"message\":{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"function\":{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Zürich\"}}}]},\"done\":false}\n",
    "{\"model\":\"llama3.2\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,\"done_reason\":\"stop\",\"eval_count\":3}\n",
);

#[test]
fn ollama_stream_tool_calls_usage_and_errors() {
    let p = ollama();
    let whole = ndjson_events(&p, OLLAMA_TOOL_STREAM.as_bytes(), usize::MAX);
    check_invariants(&whole);
    let r = fold(&whole).unwrap();
    assert_eq!(r.finish_reason(), Some(&FinishReason::ToolCalls));
    assert_eq!(
        serde_json::from_str::<Value>(&r.tool_calls()[0].arguments).unwrap(),
        json!({"city": "Zürich"})
    );
    assert_eq!(r.choices[0].message.reasoning.as_deref(), Some("hm"));
    let u = r.usage.unwrap();
    assert_eq!(
        (u.input_tokens, u.output_tokens),
        (0, 3),
        "absent count is 0"
    );

    let cut = &OLLAMA_TOOL_STREAM[..OLLAMA_TOOL_STREAM.len() - 40];
    let events = ndjson_events(&p, cut.as_bytes(), 7);
    assert_eq!(
        events.last().unwrap().as_ref().unwrap_err().kind(),
        ErrorKind::UpstreamProtocol
    );
    let body = "{\"model\":\"llama3.2\",\"message\":{\"content\":\"a\"},\"done\":false}\n{\"error\":\"an error was encountered while running the model\"}\n";
    let events = ndjson_events(&p, body.as_bytes(), 5);
    assert!(matches!(events[1], Ok(StreamEvent::TextDelta { .. })));
    assert_eq!(
        events.last().unwrap().as_ref().unwrap_err().kind(),
        ErrorKind::UpstreamServer
    );
    let e = p.classify_error(
        404,
        &::http::HeaderMap::new(),
        br#"{"error":"model 'x' not found"}"#,
    );
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let e = p.classify_error(
        400,
        &::http::HeaderMap::new(),
        br#"{"error":"registry.ollama.ai/library/gemma:2b does not support tools"}"#,
    );
    assert_eq!(e.kind(), ErrorKind::Unsupported);
    let e = p.classify_error(404, &::http::HeaderMap::new(), b"404 page not found");
    assert_eq!(e.kind(), ErrorKind::NotFound);
}

proptest! {
    #[test]
    fn ollama_stream_is_the_same_under_any_chunking(
        pieces in proptest::collection::vec("[a-zé中😀 ]{0,6}", 1..8),
        split in 1usize..40,
    ) {
        let p = ollama();
        let mut body = String::new();
        for piece in &pieces {
            body.push_str(&json!({"model":"m","message":{"role":"assistant","content":piece},"done":false}).to_string());
            body.push('\n');
        }
        body.push_str("{\"model\":\"m\",\"message\":{\"content\":\"\"},\"done\":true,\"done_reason\":\"length\",\"prompt_eval_count\":2,\"eval_count\":5}\n");
        let whole = ndjson_events(&p, body.as_bytes(), usize::MAX);
        let parts = ndjson_events(&p, body.as_bytes(), split);
        let a: Vec<_> = whole.iter().map(|e| e.as_ref().ok().cloned()).collect();
        let b: Vec<_> = parts.iter().map(|e| e.as_ref().ok().cloned()).collect();
        prop_assert_eq!(&a, &b);
        let r = fold(&parts).unwrap();
        prop_assert_eq!(r.text(), pieces.concat());
        prop_assert_eq!(r.finish_reason(), Some(&FinishReason::Length));
    }

    #[test]
    fn hunyuan_stream_is_the_same_under_any_chunking(split in 1usize..64) {
        let p = hunyuan();
        let req = ChatRequest::new("m", vec![Message::user("x")]);
        let whole = parse_stream(&p, &req, HUNYUAN_TOOL_STREAM.as_bytes(), 0);
        let parts = parse_stream(&p, &req, HUNYUAN_TOOL_STREAM.as_bytes(), split);
        let a: Vec<_> = whole.iter().map(|e| e.as_ref().ok().cloned()).collect();
        let b: Vec<_> = parts.iter().map(|e| e.as_ref().ok().cloned()).collect();
        prop_assert_eq!(a, b);
    }
}
