//! Spark's frame builder and frame parser (status/seq order, usage once, function calls,
//! error frames, handshake rejections), `spark-http`'s errors in 200 bodies, and Pangu's
//! codec, error mapping and AK/SK signing of the bytes it sends.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use llmux_core::clock::Clock;
use llmux_core::codec::Frame;
use llmux_core::http::{HttpResponse, Transport, TransportConfig};
use llmux_core::providers::pangu::{apig, Pangu};
use llmux_core::providers::spark::{Spark, SparkHttp, SparkStreamParser};
use llmux_core::providers::{AuthContext, Provider, StreamParser};
use llmux_core::*;
use serde_json::{json, Value};

// ---- Spark frames -----------------------------------------------------------------------

fn frame(sid: &str, status: i64, seq: u64, content: &str) -> String {
    json!({"header": {"code": 0, "message": "Success", "sid": sid, "status": status},
           "payload": {"choices": {"status": status, "seq": seq,
               "text": [{"content": content, "role": "assistant", "index": 0}]}}})
    .to_string()
}

fn with_usage(f: String, prompt: u64, completion: u64) -> String {
    let mut v: Value = serde_json::from_str(&f).unwrap();
    v["payload"]["usage"] = json!({"text": {"question_tokens": 4, "prompt_tokens": prompt,
        "completion_tokens": completion, "total_tokens": prompt + completion}});
    v.to_string()
}

/// Feeds WebSocket messages to a fresh parser as `ws.rs` does; stops at the first error.
fn run(messages: &[String]) -> Vec<Result<StreamEvent>> {
    let mut p = SparkStreamParser::new();
    let mut out = Vec::new();
    let mut events = Vec::new();
    for m in messages {
        match p.on_frame(&Frame::data(m.clone()), &mut events) {
            Ok(()) => out.extend(events.drain(..).map(Ok)),
            Err(e) => {
                out.push(Err(e));
                return out;
            }
        }
        if p.is_done() {
            break;
        }
    }
    match p.finish(&mut events) {
        Ok(()) => out.extend(events.drain(..).map(Ok)),
        Err(e) => out.push(Err(e)),
    }
    out
}

fn texts(events: &[Result<StreamEvent>]) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            Ok(StreamEvent::TextDelta { text }) => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

fn err_of(events: &[Result<StreamEvent>]) -> &Error {
    events
        .iter()
        .find_map(|e| e.as_ref().err())
        .expect("an error")
}

#[test]
fn spark_text_stream_is_incremental_with_usage_once_and_finished_last() {
    let events = run(&[
        frame("cht0001", 0, 0, "你"),
        frame("cht0001", 1, 1, "好"),
        with_usage(frame("cht0001", 2, 2, "！"), 5, 9),
    ]);
    assert!(events.iter().all(Result::is_ok), "{events:?}");
    assert_eq!(texts(&events), "你好！");
    assert!(
        matches!(&events[0], Ok(StreamEvent::Started { id, request_id: Some(r), .. }) if id == "cht0001" && r == "cht0001")
    );
    let usage: Vec<_> = events
        .iter()
        .filter(|e| matches!(e, Ok(StreamEvent::Usage(_))))
        .collect();
    assert_eq!(usage.len(), 1);
    assert!(
        matches!(usage[0], Ok(StreamEvent::Usage(u)) if u.input_tokens == 5 && u.output_tokens == 9 && u.total_tokens == 14)
    );
    assert!(matches!(
        events.last(),
        Some(Ok(StreamEvent::Finished {
            reason: FinishReason::Stop
        }))
    ));
    let r = common::fold(&events).unwrap();
    assert_eq!(r.text(), "你好！");
}

#[test]
fn spark_frames_are_put_back_in_seq_order() {
    let events = run(&[
        frame("s", 0, 0, "a"),
        frame("s", 1, 2, "c"),
        frame("s", 1, 1, "b"),
        frame("s", 2, 3, "d"),
    ]);
    assert_eq!(texts(&events), "abcd");
    assert!(events.iter().all(Result::is_ok));
}

#[test]
fn spark_repeated_or_missing_seq_is_a_protocol_error() {
    let events = run(&[frame("s", 0, 0, "a"), frame("s", 1, 0, "a")]);
    assert_eq!(err_of(&events).kind(), ErrorKind::UpstreamProtocol);
    let events = run(&[frame("s", 0, 0, "a"), frame("s", 2, 2, "c")]);
    assert_eq!(err_of(&events).kind(), ErrorKind::UpstreamProtocol);
}

#[test]
fn spark_socket_closed_before_status_2_is_an_error() {
    let events = run(&[frame("s", 0, 0, "a"), frame("s", 1, 1, "b")]);
    assert_eq!(texts(&events), "ab");
    let err = err_of(&events);
    assert_eq!(err.kind(), ErrorKind::UpstreamProtocol);
    assert!(err.message().contains("status 2"), "{}", err.message());
}

#[test]
fn spark_function_call_is_one_tool_call_delta() {
    let call = json!({"header": {"code": 0, "message": "Success", "sid": "cht9", "status": 2},
        "payload": {"choices": {"status": 2, "seq": 0, "text": [{"content": "", "content_type": "text",
            "role": "assistant", "index": 0,
            "function_call": {"name": "get_weather", "arguments": "{\"city\":\"合肥\"}"}}]},
        "usage": {"text": {"question_tokens": 0, "prompt_tokens": 50, "completion_tokens": 10, "total_tokens": 60}}}});
    let events = run(&[call.to_string()]);
    let deltas: Vec<_> = events
        .iter()
        .filter(|e| matches!(e, Ok(StreamEvent::ToolCallDelta { .. })))
        .collect();
    assert_eq!(deltas.len(), 1);
    let r = common::fold(&events).unwrap();
    assert_eq!(r.finish_reason(), Some(&FinishReason::ToolCalls));
    let calls = r.tool_calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].name, "get_weather");
    assert_eq!(calls[0].arguments, "{\"city\":\"合肥\"}");
    assert!(!calls[0].id.is_empty());
    assert_eq!(r.usage.unwrap().total_tokens, 60);
}

#[test]
fn spark_search_plugin_frames_without_choices_are_skipped() {
    let plugin = json!({"header": {"code": 0, "message": "Success", "sid": "s", "status": 1},
        "payload": {"plugins": {"text": [{"name": "ifly_search", "content": "[]"}]}}});
    let events = run(&[plugin.to_string(), frame("s", 2, 0, "ok")]);
    assert_eq!(texts(&events), "ok");
    assert!(events.iter().all(Result::is_ok));
}

#[test]
fn spark_error_frames_map_by_code() {
    for (code, kind) in [
        (10013, ErrorKind::ContentFiltered),
        (10014, ErrorKind::ContentFiltered),
        (10019, ErrorKind::ContentFiltered),
        (10021, ErrorKind::ContentFiltered),
        (11200, ErrorKind::QuotaExhausted),
        (11201, ErrorKind::QuotaExhausted),
        (11202, ErrorKind::RateLimited),
        (11203, ErrorKind::RateLimited),
        (10007, ErrorKind::RateLimited),
        (10110, ErrorKind::RateLimited),
        (10907, ErrorKind::ContextLengthExceeded),
        (10005, ErrorKind::InvalidRequest),
        (10015, ErrorKind::PermissionDenied),
        (10222, ErrorKind::UpstreamServer),
    ] {
        let msg = json!({"header": {"code": code, "message": "vendor says no", "sid": "cht77", "status": 2}});
        let events = run(&[frame("cht77", 0, 0, "partial"), msg.to_string()]);
        let err = err_of(&events);
        assert_eq!(err.kind(), kind, "{code}");
        assert_eq!(err.upstream_code(), Some(code.to_string().as_str()));
        assert_eq!(err.request_id(), Some("cht77"));
        assert!(err.message().contains("vendor says no"));
    }
}

#[test]
fn spark_malformed_frame_is_a_protocol_error() {
    let events = run(&["{not json".to_owned()]);
    assert_eq!(err_of(&events).kind(), ErrorKind::UpstreamProtocol);
}

// ---- Spark request frames -------------------------------------------------------------

fn spark() -> Spark {
    Spark::new(
        "wss://spark-api.xf-yun.com",
        "app",
        "key",
        SecretString::new("secret"),
    )
    .unwrap()
}

fn ctx() -> AuthContext {
    AuthContext {
        clock: Clock::fixed(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
        transport: Transport::new(TransportConfig::default()).unwrap(),
    }
}

fn ws_frame(req: &ChatRequest) -> Result<Value> {
    let ws = spark().build_ws(&req.model, req, &ctx())?;
    Ok(serde_json::from_str(&ws.message).unwrap())
}

fn req(model: &str) -> ChatRequest {
    ChatRequest::new(model, vec![Message::user("hi")])
}

#[test]
fn spark_domain_picks_the_path() {
    for (domain, path) in [
        ("lite", "/v1.1/chat"),
        ("generalv3", "/v3.1/chat"),
        ("pro-128k", "/chat/pro-128k"),
        ("generalv3.5", "/v3.5/chat"),
        ("max-32k", "/chat/max-32k"),
        ("4.0Ultra", "/v4.0/chat"),
        ("general", "/v1.1/chat"),
        ("generalv2", "/v2.1/chat"),
    ] {
        let ws = spark().build_ws(domain, &req(domain), &ctx()).unwrap();
        assert!(
            ws.url
                .starts_with(&format!("wss://spark-api.xf-yun.com{path}?authorization=")),
            "{domain}: {}",
            ws.url
        );
        let f: Value = serde_json::from_str(&ws.message).unwrap();
        assert_eq!(f["parameter"]["chat"]["domain"], domain);
    }
    let err = spark()
        .build_ws("gpt-4", &req("gpt-4"), &ctx())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.message().contains("generalv3.5"));
}

#[test]
fn spark_rejects_out_of_range_and_unsupported_options() {
    let check = |f: &dyn Fn(&mut ChatRequest), kind: ErrorKind, needle: &str| {
        let mut r = req("generalv3.5");
        f(&mut r);
        let err = ws_frame(&r).unwrap_err();
        assert_eq!(err.kind(), kind, "{needle}: {}", err.message());
        assert!(err.message().contains(needle), "{}", err.message());
    };
    check(
        &|r| r.temperature = Some(0.0),
        ErrorKind::InvalidRequest,
        "temperature",
    );
    check(
        &|r| r.temperature = Some(1.5),
        ErrorKind::InvalidRequest,
        "temperature",
    );
    check(&|r| r.top_k = Some(7), ErrorKind::InvalidRequest, "top_k");
    check(
        &|r| r.max_tokens = Some(8193),
        ErrorKind::InvalidRequest,
        "max_tokens",
    );
    check(
        &|r| r.user = Some("u".repeat(33)),
        ErrorKind::InvalidRequest,
        "user",
    );
    check(&|r| r.top_p = Some(0.5), ErrorKind::Unsupported, "top_p");
    check(
        &|r| r.tool_choice = Some(ToolChoice::Required),
        ErrorKind::Unsupported,
        "tool_choice",
    );
    check(
        &|r| r.messages.push(Message::system("late")),
        ErrorKind::InvalidRequest,
        "system",
    );
    check(
        &|r| r.messages.push(Message::tool_result("c1", "42")),
        ErrorKind::Unsupported,
        "tool",
    );
    check(
        &|r| {
            r.messages = vec![Message::user(Content::Parts(vec![ContentPart::ImageUrl {
                url: "https://x/y.png".into(),
                detail: None,
            }]))]
        },
        ErrorKind::Unsupported,
        "image",
    );
    let mut lite = req("lite");
    lite.max_tokens = Some(4097);
    assert_eq!(
        ws_frame(&lite).unwrap_err().kind(),
        ErrorKind::InvalidRequest
    );
}

#[test]
fn spark_frame_carries_functions_search_and_extra_fields() {
    let mut r = req("4.0Ultra");
    r.tools = vec![Tool {
        name: "get_weather".into(),
        description: Some("weather".into()),
        parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}}),
        strict: None,
    }];
    r.tool_choice = Some(ToolChoice::Auto);
    r.enable_search = Some(true);
    r.extra.insert("chat_id".into(), json!("c-1"));
    r.extra.insert("auditing".into(), json!("default"));
    let f = ws_frame(&r).unwrap();
    assert_eq!(
        f["payload"]["functions"]["text"],
        json!([{"name": "get_weather", "description": "weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}])
    );
    assert_eq!(
        f["parameter"]["chat"]["tools"][0]["web_search"]["enable"],
        true
    );
    assert_eq!(f["parameter"]["chat"]["chat_id"], "c-1");
    assert_eq!(f["parameter"]["chat"]["auditing"], "default");
    assert!(f["header"].get("uid").is_none());
}

#[test]
fn spark_handshake_rejections_are_classified() {
    let p = spark();
    let h = ::http::HeaderMap::new();
    let e = p.classify_error(401, &h, br#"{"message":"HMAC signature does not match"}"#);
    assert_eq!(e.kind(), ErrorKind::Authentication);
    assert!(!e.is_clock_skew());
    let e = p.classify_error(
        403,
        &h,
        br#"{"message":"HMAC signature cannot be verified, a valid date or x-date header is required for HMAC Authentication"}"#,
    );
    assert_eq!(e.kind(), ErrorKind::Authentication);
    assert!(e.is_clock_skew());
    let e = p.classify_error(403, &h, br#"{"message":"IP not allowed"}"#);
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    assert!(!e.is_clock_skew());
    let e = p.classify_error(502, &h, b"<html>bad gateway</html>");
    assert_eq!(e.kind(), ErrorKind::UpstreamServer);
    assert!(p.build_chat("lite", &req("lite"), false).is_err());
}

// ---- spark-http -----------------------------------------------------------------------

fn resp(status: u16, body: &str) -> HttpResponse {
    HttpResponse {
        status,
        headers: ::http::HeaderMap::new(),
        body: Bytes::from(body.to_owned()),
    }
}

#[test]
fn spark_http_reports_errors_inside_200_bodies() {
    let p = SparkHttp::new(
        "https://spark-api-open.xf-yun.com/v1",
        SecretString::new("pw"),
    )
    .unwrap();
    let e = p
        .parse_chat(&resp(
            200,
            r#"{"code":10013,"message":"input audit failed","sid":"cha000b0001","choices":[]}"#,
        ))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ContentFiltered);
    assert_eq!(e.request_id(), Some("cha000b0001"));
    let ok = p
        .parse_chat(&resp(
            200,
            r#"{"code":0,"message":"Success","sid":"cha1","choices":[{"message":{"role":"assistant","content":"hi"},"index":0}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#,
        ))
        .unwrap();
    assert_eq!(ok.text(), "hi");
    let body = "data:{\"code\":0,\"message\":\"Success\",\"sid\":\"s\",\"id\":\"s\",\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"he\"},\"index\":0}]}\n\n\
                data:{\"code\":11202,\"message\":\"qps limit\",\"sid\":\"s\"}\n\n";
    let events = common::parse_stream(&p, &req("lite"), body.as_bytes(), 7);
    assert_eq!(err_of(&events).kind(), ErrorKind::RateLimited);
    let e = p.classify_error(
        401,
        &::http::HeaderMap::new(),
        br#"{"error":{"message":"invalid user","type":"api_error","param":null,"code":null}}"#,
    );
    assert_eq!(e.kind(), ErrorKind::Authentication);
    let built = p
        .build_chat("generalv3.5", &req("generalv3.5"), true)
        .unwrap();
    assert_eq!(
        built.url,
        "https://spark-api-open.xf-yun.com/v1/chat/completions"
    );
    assert_eq!(
        built.headers["authorization"].to_str().unwrap(),
        "Bearer pw"
    );
}

// ---- Pangu ----------------------------------------------------------------------------

const BASE: &str = "https://pangu.cn-southwest-2.myhuaweicloud.com";
const PROJECT: &str = "0123456789abcdef0123456789abcdef";

fn pangu() -> Pangu {
    Pangu::with_aksk(
        BASE,
        PROJECT,
        "AKEXAMPLE",
        SecretString::new("SKEXAMPLE"),
        None,
    )
    .unwrap()
}

#[test]
fn pangu_body_is_openai_shaped_without_model() {
    let mut r = req("dep-001");
    r.temperature = Some(0.3);
    r.max_tokens = Some(256);
    r.user = Some("u1".into());
    let built = pangu().build_chat(&r.model, &r, true).unwrap();
    assert_eq!(
        built.url,
        format!("{BASE}/v1/{PROJECT}/deployments/dep-001/chat/completions")
    );
    let body: Value = serde_json::from_slice(&built.body).unwrap();
    assert_eq!(
        body,
        json!({"messages": [{"role": "user", "content": "hi"}], "temperature": 0.3,
               "max_tokens": 256, "user": "u1", "stream": true})
    );
    let mut hot = req("dep-001");
    hot.temperature = Some(1.5);
    assert_eq!(
        pangu()
            .build_chat(&hot.model, &hot, false)
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidRequest
    );
    let mut topk = req("dep-001");
    topk.top_k = Some(3);
    assert_eq!(
        pangu()
            .build_chat(&topk.model, &topk, false)
            .unwrap_err()
            .kind(),
        ErrorKind::Unsupported
    );
}

#[test]
fn pangu_parses_responses_streams_and_errors_in_bodies() {
    let p = pangu();
    let ok = p
        .parse_chat(&resp(
            200,
            r#"{"id":"c1","object":"chat.completion","created":1,"model":"pangu","choices":[{"index":0,"message":{"role":"assistant","content":"你好"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#,
        ))
        .unwrap();
    assert_eq!(ok.text(), "你好");
    assert_eq!(ok.usage.unwrap().total_tokens, 5);
    let e = p
        .parse_chat(&resp(
            200,
            r#"{"error_code":"PANGU.0001","error_msg":"internal"}"#,
        ))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::UpstreamServer);
    assert_eq!(e.upstream_code(), Some("PANGU.0001"));

    let body = "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"你\"}}]}\n\n\
                data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"好\"},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5}}\n\n\
                data: [DONE]\n\n";
    for split in [0, 1, 5] {
        let events = common::parse_stream(&p, &req("dep"), body.as_bytes(), split);
        let r = common::fold(&events).unwrap();
        assert_eq!(r.text(), "你好");
        assert_eq!(r.usage.unwrap().total_tokens, 5);
    }
    let body = "data: {\"error_code\":\"APIG.0308\",\"error_msg\":\"throttled\"}\n\n";
    let events = common::parse_stream(&p, &req("dep"), body.as_bytes(), 0);
    assert_eq!(err_of(&events).kind(), ErrorKind::RateLimited);
}

#[test]
fn pangu_huawei_errors_are_classified() {
    let p = pangu();
    let h = ::http::HeaderMap::new();
    let e = p.classify_error(
        401,
        &h,
        br#"{"error_code":"APIG.0301","error_msg":"Incorrect IAM authentication information: verify aksk signature fail","request_id":"r1"}"#,
    );
    assert_eq!(e.kind(), ErrorKind::Authentication);
    assert!(!e.is_clock_skew());
    assert_eq!(e.request_id(), Some("r1"));
    let e = p.classify_error(
        401,
        &h,
        br#"{"error_code":"APIG.0301","error_msg":"Incorrect IAM authentication information: signature expired"}"#,
    );
    assert_eq!(e.kind(), ErrorKind::Authentication);
    assert!(e.is_clock_skew());
    let e = p.classify_error(401, &h, br#"{"error_code":"APIG.1002","error_msg":"Incorrect authentication information: frequency"}"#);
    assert_eq!(e.kind(), ErrorKind::Authentication);
    let e = p.classify_error(
        429,
        &h,
        br#"{"error_code":"PANGU.9999","error_msg":"too many"}"#,
    );
    assert_eq!(e.kind(), ErrorKind::RateLimited);
    let e = p.classify_error(
        401,
        &h,
        br#"{"error":{"code":401,"message":"The username or password is wrong.","title":"Unauthorized"}}"#,
    );
    assert_eq!(e.kind(), ErrorKind::Authentication);
    let e = p.classify_error(503, &h, b"<html>busy</html>");
    assert_eq!(e.kind(), ErrorKind::UpstreamServer);
    assert!(!p.invalidate_credentials(), "AK/SK has nothing to refresh");
}

#[tokio::test]
async fn pangu_aksk_signs_the_bytes_it_sends() {
    let p = Pangu::with_aksk(
        BASE,
        PROJECT,
        "AKEXAMPLE",
        SecretString::new("SKEXAMPLE"),
        Some(SecretString::new("sts-token")),
    )
    .unwrap();
    let at = UNIX_EPOCH + Duration::from_secs(1_704_067_200); // 2024-01-01T00:00:00Z
    let ctx = AuthContext {
        clock: Clock::fixed(at),
        transport: Transport::new(TransportConfig::default()).unwrap(),
    };
    let built = p.build_chat("dep-001", &req("dep-001"), false).unwrap();
    let sent = p.authorize(built, &ctx).await.unwrap();
    assert_eq!(sent.headers["x-sdk-date"], "20240101T000000Z");
    assert_eq!(
        sent.headers["host"],
        "pangu.cn-southwest-2.myhuaweicloud.com"
    );
    assert_eq!(sent.headers["x-project-id"], PROJECT);
    assert!(sent.headers["x-security-token"].is_sensitive());
    let auth = sent.headers["authorization"].to_str().unwrap().to_owned();
    assert!(auth.starts_with(
        "SDK-HMAC-SHA256 Access=AKEXAMPLE, SignedHeaders=accept;content-type;host;x-project-id;x-sdk-date;x-security-token, Signature="
    ), "{auth}");
    // Re-sign what will go on the wire: same signature.
    let headers: Vec<(String, String)> = sent
        .headers
        .iter()
        .filter(|(k, _)| !["authorization", "host", "x-sdk-date"].contains(&k.as_str()))
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap().to_owned()))
        .collect();
    let again = apig::sign(
        "AKEXAMPLE",
        &SecretString::new("SKEXAMPLE"),
        "20240101T000000Z",
        &apig::ApigRequest {
            method: "POST",
            host: "pangu.cn-southwest-2.myhuaweicloud.com",
            path: &format!("/v1/{PROJECT}/deployments/dep-001/chat/completions"),
            query: &[],
            headers: &headers,
            body: &sent.body,
        },
    );
    assert_eq!(auth, again.authorization);
    assert!(!format!("{p:?}").contains("SKEXAMPLE"));
}

#[test]
fn pangu_needs_one_complete_credential_set() {
    let spec = llmux_core::providers::spec("pangu").unwrap();
    let lookup = |vars: &'static [(&'static str, &'static str)]| {
        move |k: &str| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        }
    };
    let none = llmux_core::providers::ProviderSettings::from_lookup(spec, lookup(&[]));
    let err = (spec.build)(spec, none).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.message().contains("HUAWEICLOUD_SDK_AK"));
    let aksk_no_project = llmux_core::providers::ProviderSettings::from_lookup(
        spec,
        lookup(&[("HUAWEICLOUD_SDK_AK", "a"), ("HUAWEICLOUD_SDK_SK", "s")]),
    );
    assert!((spec.build)(spec, aksk_no_project)
        .unwrap_err()
        .message()
        .contains("HUAWEICLOUD_PROJECT_ID"));
    let iam = llmux_core::providers::ProviderSettings::from_lookup(
        spec,
        lookup(&[
            ("HUAWEICLOUD_USERNAME", "u"),
            ("HUAWEICLOUD_PASSWORD", "hunter2"),
            ("HUAWEICLOUD_DOMAIN_NAME", "acct"),
            ("HUAWEICLOUD_REGION", "cn-north-4"),
        ]),
    );
    let p = (spec.build)(spec, iam).unwrap();
    assert_eq!(p.base_url(), "https://pangu.cn-north-4.myhuaweicloud.com");
    assert!(!format!("{p:?}").contains("hunter2"));
}
