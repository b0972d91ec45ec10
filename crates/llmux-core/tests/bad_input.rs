//! The bad-input table: each case becomes a distinct, documented error kind with a clear message
//! (see docs/errors.md). Upstream cases run through the providers' pure classifiers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use llmux_core::providers::dashscope::DashScope;
use llmux_core::providers::openai_compat::{OpenAiCompat, OPENAI};
use llmux_core::providers::Provider;
use llmux_core::*;
use std::time::Duration;

fn openai() -> OpenAiCompat {
    OpenAiCompat::new(OPENAI, "http://127.0.0.1:1/v1", Some("k".into())).unwrap()
}

fn dashscope() -> DashScope {
    DashScope::new("http://127.0.0.1:1/api/v1", "k".into()).unwrap()
}

fn headers(pairs: &[(&'static str, &str)]) -> ::http::HeaderMap {
    let mut h = ::http::HeaderMap::new();
    for (k, v) in pairs {
        h.insert(*k, v.parse().unwrap());
    }
    h
}

fn resp(status: u16, ctype: &str, body: &str) -> llmux_core::http::HttpResponse {
    llmux_core::http::HttpResponse {
        status,
        headers: headers(&[("content-type", ctype)]),
        body: body.to_owned().into(),
    }
}

struct Case {
    name: &'static str,
    error: Error,
    kind: ErrorKind,
    message_has: &'static str,
}

fn table() -> Vec<Case> {
    let o = openai();
    let d = dashscope();
    let req = |msgs: Vec<Message>| ChatRequest::new("m", msgs);
    let mut hot = req(vec![Message::user("hi")]);
    hot.temperature = Some(3.0);
    vec![
        Case {
            name: "empty messages",
            error: o.build_chat("m", &req(vec![]), false).unwrap_err(),
            kind: ErrorKind::InvalidRequest,
            message_has: "`messages` must contain at least one message",
        },
        Case {
            name: "unknown role",
            error: Role::parse("robot").unwrap_err(),
            kind: ErrorKind::InvalidRequest,
            message_has: "unknown message role `robot`",
        },
        Case {
            name: "temperature out of range",
            error: d.build_chat(&hot.model, &hot, false).unwrap_err(),
            kind: ErrorKind::InvalidRequest,
            message_has: "`temperature` must be between 0 and 2, got 3",
        },
        Case {
            name: "malformed JSON from upstream",
            error: o.parse_chat(&resp(200, "application/json", "{\"id\": \"x\", \"choi")).unwrap_err(),
            kind: ErrorKind::UpstreamProtocol,
            message_has: "malformed JSON",
        },
        Case {
            name: "HTML 502 page from upstream",
            error: o.classify_error(
                502,
                &headers(&[("content-type", "text/html")]),
                b"<html><body><h1>502 Bad Gateway</h1></body></html>",
            ),
            kind: ErrorKind::UpstreamServer,
            message_has: "HTTP 502 with a non-JSON body (text/html)",
        },
        Case {
            name: "401",
            error: d.classify_error(
                401,
                &headers(&[]),
                br#"{"code":"InvalidApiKey","message":"Invalid API-key provided.","request_id":"r1"}"#,
            ),
            kind: ErrorKind::Authentication,
            message_has: "the API key was rejected",
        },
        Case {
            name: "429 with Retry-After",
            error: o.classify_error(
                429,
                &headers(&[("retry-after", "7")]),
                br#"{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#,
            ),
            kind: ErrorKind::RateLimited,
            message_has: "rate limited",
        },
        Case {
            name: "quota exhausted 429",
            error: o.classify_error(
                429,
                &headers(&[]),
                br#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#,
            ),
            kind: ErrorKind::QuotaExhausted,
            message_has: "out of quota",
        },
        Case {
            name: "DashScope DataInspectionFailed",
            error: d.classify_error(
                400,
                &headers(&[]),
                br#"{"code":"DataInspectionFailed","message":"Input data may contain inappropriate content.","request_id":"r2"}"#,
            ),
            kind: ErrorKind::ContentFiltered,
            message_has: "blocked by content moderation",
        },
        Case {
            name: "200 with an error body",
            error: d.parse_chat(&resp(200, "application/json", r#"{"code":"Throttling.RateQuota","message":"Requests rate limit exceeded","request_id":"r3"}"#)).unwrap_err(),
            kind: ErrorKind::RateLimited,
            message_has: "Requests rate limit exceeded",
        },
    ]
}

#[test]
fn bad_input_table_gives_distinct_documented_kinds() {
    let cases = table();
    let docs =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/errors.md"))
            .unwrap();
    for c in &cases {
        assert_eq!(c.error.kind(), c.kind, "{}: {:?}", c.name, c.error);
        assert!(
            c.error.message().contains(c.message_has),
            "{}: {}",
            c.name,
            c.error.message()
        );
        assert!(
            docs.contains(&format!("`{}`", c.kind.as_str())),
            "{}: kind {} not documented",
            c.name,
            c.kind
        );
    }
    // Every case has its own message; the upstream failures of the issue's table (malformed
    // JSON, HTML 502, 401, 429, DataInspectionFailed) each have their own kind.
    let mut messages: Vec<&str> = cases.iter().map(|c| c.error.message()).collect();
    messages.sort_unstable();
    messages.dedup();
    assert_eq!(messages.len(), cases.len());
    let upstream: Vec<ErrorKind> = cases[3..9]
        .iter()
        .filter(|c| c.name != "quota exhausted 429")
        .map(|c| c.kind)
        .collect();
    let mut dedup = upstream.clone();
    dedup.sort_by_key(|k| k.as_str());
    dedup.dedup();
    assert_eq!(dedup.len(), upstream.len(), "{upstream:?}");
    assert_eq!(upstream.len(), 5);
}

#[test]
fn retry_after_and_codes_are_kept() {
    let cases = table();
    let rl = cases
        .iter()
        .find(|c| c.name == "429 with Retry-After")
        .unwrap();
    assert_eq!(rl.error.retry_after(), Some(Duration::from_secs(7)));
    assert_eq!(rl.error.upstream_status(), Some(429));
    assert!(rl.error.is_retryable());
    let q = cases
        .iter()
        .find(|c| c.name == "quota exhausted 429")
        .unwrap();
    assert!(
        !q.error.is_retryable(),
        "quota exhaustion must not be retried"
    );
    let di = cases
        .iter()
        .find(|c| c.name == "DashScope DataInspectionFailed")
        .unwrap();
    assert_eq!(di.error.upstream_code(), Some("DataInspectionFailed"));
    assert_eq!(di.error.request_id(), Some("r2"));
    let auth = cases.iter().find(|c| c.name == "401").unwrap();
    assert_eq!(
        auth.error.to_string(),
        "dashscope: the API key was rejected: Invalid API-key provided. (InvalidApiKey, HTTP 401)"
    );
}

#[test]
fn secrets_never_show_in_debug_output() {
    let p = OpenAiCompat::new(
        OPENAI,
        "http://127.0.0.1:1/v1",
        Some("sk-super-secret-123".into()),
    )
    .unwrap();
    assert!(!format!("{p:?}").contains("super-secret"));
    let req = p
        .build_chat("m", &ChatRequest::new("m", vec![Message::user("x")]), false)
        .unwrap();
    assert!(!format!("{req:?}").contains("super-secret"), "{req:?}");
    let client = Client::builder()
        .without_env()
        .provider(
            "openai",
            providers::ProviderSettings::with_api_key("sk-super-secret-123"),
        )
        .build()
        .unwrap();
    client.provider("openai").unwrap();
    assert!(!format!("{client:?}").contains("super-secret"));
}

#[test]
fn missing_key_names_the_variable_and_unknown_provider_lists_known_ones() {
    let client = Client::builder().without_env().build().unwrap();
    let err = client.provider("dashscope").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(
        err.message().contains("DASHSCOPE_API_KEY"),
        "{}",
        err.message()
    );
    let err = client.resolve("nosuch/model").unwrap_err();
    assert!(
        err.message().contains("known providers: openai, dashscope"),
        "{}",
        err.message()
    );
}

#[test]
fn openai_x_should_retry_overrides_the_status_default() {
    let o = openai();
    let body = br#"{"error":{"message":"boom","type":"server_error","code":null}}"#;
    let classify = |status: u16, hint: Option<&str>| {
        let h = match hint {
            Some(v) => headers(&[("content-type", "application/json"), ("x-should-retry", v)]),
            None => headers(&[("content-type", "application/json")]),
        };
        o.classify_error(status, &h, body)
    };
    // The server's verdict wins over the status, as in the official SDKs.
    assert!(classify(500, None).is_retryable());
    let no = classify(500, Some("false"));
    assert_eq!(no.kind(), ErrorKind::UpstreamServer);
    assert!(!no.is_retryable());
    assert_eq!(no.retry_hint(), Some(false));
    assert!(classify(400, Some("true")).is_retryable());
    assert!(
        !classify(400, Some("maybe")).is_retryable(),
        "unknown values are ignored"
    );
    // The retry policy obeys it.
    let policy = resilience::RetryPolicy::default();
    assert!(policy.next_delay(&no, 1, false).is_err());
    assert!(policy.next_delay(&classify(500, None), 1, false).is_ok());
}
