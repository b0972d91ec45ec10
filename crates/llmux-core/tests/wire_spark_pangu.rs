//! Wire-level tests of `spark`, `spark-http` and `pangu` against the emulators on 127.0.0.1:0:
//! Spark over a real WebSocket (stream, fold, tool call, bad signature, skewed clock corrected
//! once, error frames, cut sockets) and Pangu over HTTP (one IAM token for 50 concurrent
//! requests, an expired token refreshed exactly once, AK/SK signing, signature-expired skew).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, SystemTime};

use futures::StreamExt;
use llmux_core::clock::Clock;
use llmux_core::providers::ProviderSettings;
use llmux_core::*;
use llmux_emulator::{Emulator, EmulatorConfig, Fault, FaultKind, Vendor};
use serde_json::json;

fn creds(pairs: &[(&str, &str)]) -> ProviderSettings {
    let mut s = ProviderSettings::default();
    for (k, v) in pairs {
        s.credentials.insert((*k).to_owned(), SecretString::new(*v));
    }
    s
}

// ---- Spark ----------------------------------------------------------------------------

async fn spark_emu() -> Emulator {
    Emulator::start(EmulatorConfig::new(Vendor::Spark))
        .await
        .unwrap()
}

fn spark_client(emu: &Emulator, secret: &str, clock: Option<Clock>) -> Client {
    let mut b = Client::builder()
        .without_env()
        .retry(llmux_core::resilience::RetryPolicy::none())
        .provider(
            "spark",
            creds(&[
                ("app_id", "emuappid"),
                ("api_key", "emu-api-key"),
                ("api_secret", secret),
            ])
            .base_url(emu.base_url()),
        );
    b = b.provider(
        "spark-http",
        ProviderSettings::with_api_key(Vendor::Spark.default_key())
            .base_url(emu.compat_base_url().unwrap()),
    );
    if let Some(c) = clock {
        b = b.clock(c);
    }
    b.build().unwrap()
}

fn ask(model: &str, text: &str) -> ChatRequest {
    ChatRequest::new(
        model,
        vec![Message::system("Be brief."), Message::user(text)],
    )
}

fn handshakes(emu: &Emulator) -> Vec<u16> {
    emu.requests()
        .iter()
        .filter(|r| r.method == "GET")
        .map(|r| r.status)
        .collect()
}

#[tokio::test]
async fn spark_streams_and_folds_over_the_websocket() {
    let emu = spark_emu().await;
    let client = spark_client(&emu, "emu-api-secret", None);
    let mut req = ask("spark/generalv3.5", "hi there");
    req.user = Some("user-1".into());
    req.temperature = Some(0.5);
    let events: Vec<_> = client
        .chat_stream(req.clone())
        .await
        .unwrap()
        .collect()
        .await;
    let events: Vec<StreamEvent> = events.into_iter().map(Result::unwrap).collect();
    assert!(
        matches!(&events[0], StreamEvent::Started { id, model, .. } if id.starts_with("cht") && model == "generalv3.5")
    );
    let deltas = events
        .iter()
        .filter(|e| matches!(e, StreamEvent::TextDelta { .. }))
        .count();
    assert!(deltas > 1, "incremental text: {events:?}");
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, StreamEvent::Usage(_)))
            .count(),
        1
    );
    assert!(matches!(
        events.last(),
        Some(StreamEvent::Finished {
            reason: FinishReason::Stop
        })
    ));

    let full = client.chat(req).await.unwrap();
    assert_eq!(full.text(), "You said: hi there");
    let u = full.usage.unwrap();
    assert_eq!(u.total_tokens, u.input_tokens + u.output_tokens);
    assert!(u.output_tokens > 0);

    let log = emu.requests();
    let first = log.iter().find(|r| r.method == "GET").unwrap();
    assert_eq!(first.path, "/v3.5/chat");
    assert_eq!(first.status, 101);
    let frame = first.json().unwrap();
    assert_eq!(
        frame["header"],
        json!({"app_id": "emuappid", "uid": "user-1"})
    );
    assert_eq!(frame["parameter"]["chat"]["domain"], "generalv3.5");
}

#[tokio::test]
async fn spark_function_call_becomes_a_tool_call() {
    let emu = spark_emu().await;
    let client = spark_client(&emu, "emu-api-secret", None);
    let mut req = ask("spark/4.0Ultra", "Hefei");
    req.tools = vec![Tool {
        name: "get_weather".into(),
        description: Some("Weather of a city".into()),
        parameters: json!({"type": "object", "properties": {"city": {"type": "string"}},
                           "required": ["city"]}),
        strict: None,
    }];
    let r = client.chat(req).await.unwrap();
    assert_eq!(r.finish_reason(), Some(&FinishReason::ToolCalls));
    let calls = r.tool_calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].name, "get_weather");
    let args: serde_json::Value = serde_json::from_str(&calls[0].arguments).unwrap();
    assert_eq!(args, json!({"city": "Hefei"}));
}

#[tokio::test]
async fn spark_bad_signature_is_an_authentication_error_without_retry() {
    let emu = spark_emu().await;
    let client = spark_client(&emu, "wrong-secret", None);
    let err = client.chat(ask("spark/lite", "hi")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Authentication, "{err}");
    assert_eq!(err.upstream_status(), Some(401));
    assert_eq!(handshakes(&emu), vec![401]);
}

#[tokio::test]
async fn spark_skewed_clock_is_corrected_once_from_the_date_header() {
    let emu = spark_emu().await;
    let skewed = Clock::fixed(SystemTime::now() - Duration::from_secs(600));
    let client = spark_client(&emu, "emu-api-secret", Some(skewed));
    let r = client.chat(ask("spark/generalv3", "hi")).await.unwrap();
    assert_eq!(r.text(), "You said: hi");
    assert_eq!(handshakes(&emu), vec![403, 101]);
    let offset = client.clock().offset_ms();
    assert!((590_000..=610_000).contains(&offset), "offset {offset}");
    // The corrected clock is kept: the next call needs one handshake.
    client.chat(ask("spark/generalv3", "again")).await.unwrap();
    assert_eq!(handshakes(&emu), vec![403, 101, 101]);
}

#[tokio::test]
async fn spark_error_frames_and_cut_sockets_end_the_stream_with_an_error() {
    let emu = spark_emu().await;
    let client = spark_client(&emu, "emu-api-secret", None);
    emu.push_fault(Fault::once(FaultKind::ErrorEvent { after: 1 }));
    let events: Vec<_> = client
        .chat_stream(ask("spark/generalv3.5", "one two three four"))
        .await
        .unwrap()
        .collect()
        .await;
    let err = events.last().unwrap().as_ref().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ContentFiltered);
    assert_eq!(err.upstream_code(), Some("10013"));

    emu.push_fault(Fault::once(FaultKind::StreamCutAfter(1)));
    let err = client
        .chat(ask("spark/generalv3.5", "one two three four"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UpstreamProtocol, "{err}");

    emu.push_fault(Fault::once(FaultKind::QuotaExhausted));
    let err = client
        .chat(ask("spark/generalv3.5", "hi"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::QuotaExhausted);

    let mut long = ask("spark/lite", "hi");
    long.messages[1] = Message::user("word ".repeat(9000));
    let err = client.chat(long).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ContextLengthExceeded);
}

#[tokio::test]
async fn spark_http_answers_and_reports_errors_in_200_bodies() {
    let emu = spark_emu().await;
    let client = spark_client(&emu, "emu-api-secret", None);
    let r = client
        .chat(ask("spark-http/generalv3.5", "hi"))
        .await
        .unwrap();
    assert_eq!(r.text(), "You said: hi");
    let events: Vec<_> = client
        .chat_stream(ask("spark-http/lite", "a b c"))
        .await
        .unwrap()
        .collect()
        .await;
    assert!(events.iter().all(Result::is_ok), "{events:?}");

    emu.push_fault(Fault::once(FaultKind::ErrorBody200));
    let err = client.chat(ask("spark-http/lite", "hi")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UpstreamServer);
    assert_eq!(err.upstream_code(), Some("10012"));

    emu.push_fault(Fault::once(FaultKind::QuotaExhausted));
    let err = client.chat(ask("spark-http/lite", "hi")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::QuotaExhausted);

    emu.push_fault(Fault::once(FaultKind::ErrorEvent { after: 1 }));
    let events: Vec<_> = client
        .chat_stream(ask("spark-http/lite", "one two three"))
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(
        events.last().unwrap().as_ref().unwrap_err().kind(),
        ErrorKind::ContentFiltered
    );
}

// ---- Pangu ----------------------------------------------------------------------------

const PROJECT: &str = "0a0b0c0d0e0f00010203040506070809";

async fn pangu_emu() -> Emulator {
    Emulator::start(EmulatorConfig::new(Vendor::Pangu))
        .await
        .unwrap()
}

fn iam_client(emu: &Emulator) -> Client {
    let mut s = creds(&[
        ("username", "emu-user"),
        ("password", "emu-password"),
        ("domain_name", "emu-account"),
        ("iam_endpoint", &emu.base_url()),
    ])
    .base_url(emu.base_url());
    s.region = Some("cn-southwest-2".into());
    Client::builder()
        .without_env()
        .retry(llmux_core::resilience::RetryPolicy::none())
        .provider("pangu", s)
        .build()
        .unwrap()
}

fn aksk_client(emu: &Emulator, clock: Option<Clock>) -> Client {
    let s = creds(&[
        ("ak", "EMUPANGUAK0000000001"),
        ("sk", "emu-pangu-secret-key-0000000000000000000"),
        ("project_id", PROJECT),
    ])
    .base_url(emu.base_url());
    let mut b = Client::builder()
        .without_env()
        .retry(llmux_core::resilience::RetryPolicy::none())
        .provider("pangu", s);
    if let Some(c) = clock {
        b = b.clock(c);
    }
    b.build().unwrap()
}

fn token_requests(emu: &Emulator) -> usize {
    emu.requests()
        .iter()
        .filter(|r| r.path == "/v3/auth/tokens")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pangu_fifty_concurrent_requests_fetch_one_iam_token() {
    let emu = pangu_emu().await;
    let client = iam_client(&emu);
    let calls = (0..50).map(|i| {
        let client = client.clone();
        async move {
            client
                .chat(ask("pangu/dep-001", &format!("hello {i}")))
                .await
        }
    });
    let results = futures::future::join_all(calls).await;
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r.as_ref().unwrap().text(), format!("You said: hello {i}"));
    }
    assert_eq!(token_requests(&emu), 1);
    let log = emu.requests();
    let token_req = log.iter().find(|r| r.path == "/v3/auth/tokens").unwrap();
    assert_eq!(token_req.query.as_deref(), Some("nocatalog=true"));
    assert_eq!(
        token_req.json().unwrap()["auth"]["scope"],
        json!({"project": {"name": "cn-southwest-2"}})
    );
    // No project id configured: the URL takes the token's project.
    let chats: Vec<_> = log
        .iter()
        .filter(|r| r.path.contains("/deployments/"))
        .collect();
    assert_eq!(chats.len(), 50);
    assert!(chats.iter().all(|r| r.status == 200
        && r.path == format!("/v1/{PROJECT}/deployments/dep-001/chat/completions")
        && r.header("x-auth-token").is_some()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pangu_expired_token_is_refreshed_exactly_once() {
    let emu = pangu_emu().await;
    let client = iam_client(&emu);
    client.chat(ask("pangu/dep-001", "first")).await.unwrap();
    assert_eq!(token_requests(&emu), 1);
    emu.expire_tokens();
    let calls = (0..20).map(|_| {
        let client = client.clone();
        async move { client.chat(ask("pangu/dep-001", "again")).await }
    });
    for r in futures::future::join_all(calls).await {
        assert_eq!(r.unwrap().text(), "You said: again");
    }
    assert_eq!(
        token_requests(&emu),
        2,
        "one refresh for every rejected request"
    );
    let rejected = emu.requests().iter().filter(|r| r.status == 401).count();
    assert!((1..=20).contains(&rejected), "{rejected}");
}

#[tokio::test]
async fn pangu_token_is_refreshed_ahead_of_expiry() {
    let emu = pangu_emu().await;
    emu.set_token_ttl(Duration::from_secs(100));
    let client = iam_client(&emu);
    client.chat(ask("pangu/dep-001", "one")).await.unwrap();
    // Lifetime 100 s, margin 10% = 10 s. Move tokio time (which the emulator clock and the
    // token cache both follow) 95 s ahead: the cache refreshes before sending.
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(95)).await;
    tokio::time::resume();
    client.chat(ask("pangu/dep-001", "two")).await.unwrap();
    assert_eq!(token_requests(&emu), 2);
    assert!(emu.requests().iter().all(|r| r.status != 401));
}

#[tokio::test]
async fn pangu_aksk_mode_signs_requests_and_streams() {
    let emu = pangu_emu().await;
    let client = aksk_client(&emu, None);
    let r = client.chat(ask("pangu/dep-001", "hi")).await.unwrap();
    assert_eq!(r.text(), "You said: hi");
    let events: Vec<_> = client
        .chat_stream(ask("pangu/dep-001", "one two"))
        .await
        .unwrap()
        .collect()
        .await;
    let folded = {
        let mut acc = StreamAccumulator::new();
        for e in &events {
            acc.push(e.as_ref().unwrap()).unwrap();
        }
        acc.finish().unwrap()
    };
    assert_eq!(folded.text(), "You said: one two");
    assert!(folded.usage.is_some());
    assert_eq!(token_requests(&emu), 0);
    let log = emu.requests();
    assert!(log.iter().all(|r| r.status == 200));
    assert!(log.iter().all(|r| r
        .header("authorization")
        .unwrap()
        .starts_with("SDK-HMAC-SHA256 Access=EMUPANGUAK0000000001, ")));
}

#[tokio::test]
async fn pangu_signature_expired_syncs_the_clock_and_retries_once() {
    let emu = pangu_emu().await;
    let skewed = Clock::fixed(SystemTime::now() - Duration::from_secs(20 * 60));
    let client = aksk_client(&emu, Some(skewed));
    let r = client.chat(ask("pangu/dep-001", "hi")).await.unwrap();
    assert_eq!(r.text(), "You said: hi");
    let statuses: Vec<u16> = emu.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![401, 200]);
}

#[tokio::test]
async fn pangu_wrong_password_and_faults_are_classified() {
    let emu = pangu_emu().await;
    let mut s = creds(&[
        ("username", "emu-user"),
        ("password", "not-the-password"),
        ("domain_name", "emu-account"),
        ("iam_endpoint", &emu.base_url()),
    ])
    .base_url(emu.base_url());
    s.region = Some("cn-southwest-2".into());
    let bad = Client::builder()
        .without_env()
        .retry(llmux_core::resilience::RetryPolicy::none())
        .provider("pangu", s)
        .build()
        .unwrap();
    let err = bad.chat(ask("pangu/dep-001", "hi")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Authentication, "{err}");
    assert!(!err.to_string().contains("not-the-password"));
    assert!(!format!("{err:?}").contains("not-the-password"));

    let client = aksk_client(&emu, None);
    emu.push_fault(Fault::once(FaultKind::Status {
        status: 429,
        body: None,
        retry_after: Some("3".into()),
    }));
    let err = client.chat(ask("pangu/dep-001", "hi")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RateLimited);
    assert_eq!(err.retry_after(), Some(Duration::from_secs(3)));
    emu.push_fault(Fault::once(FaultKind::ErrorBody200));
    let err = client.chat(ask("pangu/dep-001", "hi")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UpstreamServer);
    // The first frame carries only the role (a `Started` event): an error right after it comes
    // before any content, so the call itself fails (a router could still fail over).
    emu.push_fault(Fault::once(FaultKind::ErrorEvent { after: 1 }));
    let early = client
        .chat_stream(ask("pangu/dep-001", "one two three"))
        .await
        .err()
        .unwrap();
    assert_ne!(early.kind(), ErrorKind::Internal, "{early}");
    // After content, it ends the stream.
    emu.push_fault(Fault::once(FaultKind::ErrorEvent { after: 2 }));
    let events: Vec<_> = client
        .chat_stream(ask("pangu/dep-001", "one two three"))
        .await
        .unwrap()
        .collect()
        .await;
    assert!(events
        .iter()
        .any(|e| matches!(e, Ok(llmux_core::StreamEvent::TextDelta { .. }))));
    assert!(events.last().unwrap().is_err());
}
