//! Resilience scenarios against the emulators under paused tokio time: every case asserts on
//! the emulator's request log (attempt count and spacing), never on wall-clock time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use futures::StreamExt;
use llmux_core::providers::ProviderSettings;
use llmux_core::resilience::{BreakerConfig, BreakerState, LimitConfig, RetryPolicy, Timeouts};
use llmux_core::*;
use llmux_emulator::{Emulator, EmulatorConfig, Fault, FaultKind, Vendor};

const MODEL: &str = "openai/gpt-4o-mini";

fn no_timeouts() -> Timeouts {
    Timeouts {
        connect: Duration::from_secs(10),
        first_event: Duration::ZERO,
        idle: Duration::ZERO,
        total: Duration::ZERO,
    }
}

async fn setup(configure: impl FnOnce(ClientBuilder) -> ClientBuilder) -> (Emulator, Client) {
    let emu = Emulator::start(EmulatorConfig::new(Vendor::OpenAi))
        .await
        .unwrap();
    let b = Client::builder()
        .without_env()
        .timeouts(no_timeouts())
        .provider(
            "openai",
            ProviderSettings::with_api_key(Vendor::OpenAi.default_key()).base_url(emu.base_url()),
        );
    let client = configure(b).build().unwrap();
    (emu, client)
}

fn ask(text: &str) -> ChatRequest {
    ChatRequest::new(MODEL, vec![Message::user(text)])
}

fn status(status: u16, retry_after: Option<&str>) -> FaultKind {
    FaultKind::Status {
        status,
        body: None,
        retry_after: retry_after.map(str::to_owned),
    }
}

fn gaps(emu: &Emulator) -> Vec<Duration> {
    let log = emu.requests();
    log.windows(2).map(|w| w[1].at - w[0].at).collect()
}

#[tokio::test(start_paused = true)]
async fn two_500s_then_success_on_attempt_3() {
    let (emu, client) = setup(|b| b.breaker(None)).await;
    emu.push_fault(Fault::once(status(500, None)).times(2));
    let r = client.chat(ask("hi")).await.unwrap();
    assert_eq!(r.text(), "You said: hi");
    let log = emu.requests();
    assert_eq!(
        log.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![500, 500, 200]
    );
    let policy = RetryPolicy::default();
    for (i, gap) in gaps(&emu).into_iter().enumerate() {
        assert!(
            gap <= policy.cap(i as u32 + 1),
            "gap {i} = {gap:?} exceeds the backoff cap"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn retries_429_after_retry_after() {
    let (emu, client) = setup(|b| b).await;
    emu.push_fault(Fault::once(status(429, Some("2"))));
    client.chat(ask("hi")).await.unwrap();
    let g = gaps(&emu);
    assert_eq!(g.len(), 1);
    assert!(
        g[0] >= Duration::from_secs(2),
        "second attempt after {:?}",
        g[0]
    );
}

#[tokio::test(start_paused = true)]
async fn quota_exhausted_429_is_not_retried() {
    let (emu, client) = setup(|b| b).await;
    emu.push_fault(Fault::once(FaultKind::QuotaExhausted));
    let err = client.chat(ask("hi")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::QuotaExhausted);
    assert_eq!(emu.requests().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn stream_cut_after_3_events_reaches_the_caller_and_is_not_retried() {
    let (emu, client) = setup(|b| b).await;
    emu.push_fault(Fault::once(FaultKind::StreamCutAfter(3)));
    let s = client
        .chat_stream(ask("one two three four five six seven"))
        .await
        .unwrap();
    let events: Vec<_> = s.collect().await;
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Ok(StreamEvent::TextDelta { .. }))),
        "{events:?}"
    );
    let err = events.last().unwrap().as_ref().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UpstreamProtocol);
    assert_eq!(
        emu.requests().len(),
        1,
        "nothing is retried after the first event"
    );
}

#[tokio::test(start_paused = true)]
async fn slow_first_byte_times_out_on_the_first_event() {
    let (emu, client) = setup(|b| {
        b.retry(RetryPolicy {
            max_attempts: 2,
            ..RetryPolicy::default()
        })
        .timeouts(Timeouts {
            first_event: Duration::from_secs(10),
            ..no_timeouts()
        })
    })
    .await;
    emu.push_fault(Fault::always(FaultKind::DelayFirstByte(
        Duration::from_secs(30),
    )));
    let started = tokio::time::Instant::now();
    let err = client.chat_stream(ask("hi")).await.err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err:?}");
    assert!(err.message().contains("first-event timeout"), "{err}");
    assert_eq!(emu.requests().len(), 2, "a first-event timeout is retried");
    let elapsed = tokio::time::Instant::now() - started;
    assert!(
        elapsed >= Duration::from_secs(20) && elapsed < Duration::from_secs(30),
        "{elapsed:?}"
    );
    let err = client.chat(ask("hi")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
}

#[tokio::test(start_paused = true)]
async fn idle_stream_ends_with_an_idle_timeout() {
    let (emu, client) = setup(|b| {
        b.timeouts(Timeouts {
            idle: Duration::from_secs(5),
            ..no_timeouts()
        })
    })
    .await;
    emu.push_fault(Fault::once(FaultKind::IdleAfter {
        after: 3,
        pause: Duration::from_secs(120),
    }));
    let s = client.chat_stream(ask("a b c d e f g h")).await.unwrap();
    let events: Vec<_> = s.collect().await;
    let err = events.last().unwrap().as_ref().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert!(err.message().contains("idle"), "{err}");
    assert_eq!(emu.requests().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn breaker_opens_fails_fast_half_opens_and_closes() {
    let cfg = BreakerConfig {
        consecutive_failures: 3,
        cool_down: Duration::from_secs(30),
        ..BreakerConfig::default()
    };
    let (emu, client) = setup(|b| b.retry(RetryPolicy::none()).breaker(Some(cfg))).await;
    emu.push_fault(Fault::always(status(500, None)));
    for _ in 0..3 {
        assert_eq!(
            client.chat(ask("x")).await.unwrap_err().kind(),
            ErrorKind::UpstreamServer
        );
    }
    assert_eq!(client.breaker_states()[0].1, BreakerState::Open);
    let err = client.chat(ask("x")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CircuitOpen);
    assert_eq!(
        emu.requests().len(),
        3,
        "an open breaker fails fast without a request"
    );
    tokio::time::advance(Duration::from_secs(31)).await;
    assert_eq!(client.breaker_states()[0].1, BreakerState::HalfOpen);
    emu.clear_faults();
    client.chat(ask("x")).await.unwrap();
    assert_eq!(client.breaker_states()[0].1, BreakerState::Closed);
    assert_eq!(emu.requests().len(), 4);
}

#[tokio::test(start_paused = true)]
async fn batch_loses_and_duplicates_nothing_and_keeps_input_order() {
    let (emu, client) = setup(|b| b).await;
    emu.set_latency(Duration::from_millis(20));
    emu.push_fault(Fault::once(status(500, None)).times(3));
    let reqs: Vec<_> = (0..1000).map(|i| ask(&format!("item {i}"))).collect();
    let results = client.batch(reqs, 50).await;
    assert_eq!(results.len(), 1000);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r.as_ref().unwrap().text(), format!("You said: item {i}"));
    }
    let ok = emu.requests().iter().filter(|r| r.status == 200).count();
    assert_eq!(ok, 1000, "exactly one successful upstream call per item");
}

#[tokio::test(start_paused = true)]
async fn batch_with_an_rpm_limit_never_exceeds_it() {
    let limits = LimitConfig {
        rpm: Some(30),
        tpm: None,
        wait: true,
    };
    let (emu, client) = setup(|b| b.limit("openai", limits)).await;
    let reqs: Vec<_> = (0..100).map(|i| ask(&format!("n{i}"))).collect();
    let results = client.batch(reqs, 50).await;
    assert!(results.iter().all(Result::is_ok));
    let log = emu.requests();
    assert_eq!(log.len(), 100);
    for (i, first) in log.iter().enumerate() {
        let in_window = log[i..]
            .iter()
            .take_while(|r| r.at < first.at + Duration::from_secs(60))
            .count();
        assert!(
            in_window <= 30,
            "{in_window} requests within 60 s of request {i}"
        );
    }
    let span = log.last().unwrap().at - log[0].at;
    assert!(
        span >= Duration::from_secs(180),
        "100 requests at 30 rpm take at least 3 minutes: {span:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn dropping_a_batch_stops_new_work() {
    let (emu, client) = setup(|b| b).await;
    emu.set_latency(Duration::from_secs(1));
    let reqs: Vec<_> = (0..100).map(|i| ask(&format!("n{i}"))).collect();
    let mut s = client.batch_stream(reqs, 10);
    let (_, first) = s.next().await.unwrap();
    first.unwrap();
    drop(s);
    tokio::time::advance(Duration::from_secs(10)).await;
    let n = emu.requests().len();
    assert!(
        n <= 20,
        "{n} requests were sent after the batch was dropped"
    );
}

#[tokio::test(start_paused = true)]
async fn issue_13_a_stream_cut_before_content_fails_the_call_not_the_stream() {
    let (emu, client) = setup(|b| b).await;
    // The first frame is the role-only chunk (`Started`); the cut comes before any content, so
    // nothing has reached the caller and the call itself fails (a router can still fail over).
    emu.push_fault(Fault::once(FaultKind::StreamCutAfter(1)));
    let err = client.chat_stream(ask("hi")).await.err().unwrap();
    assert_eq!(err.kind(), ErrorKind::UpstreamProtocol, "{err}");
    assert_eq!(emu.requests().len(), 1, "a cut stream is not retried");
    // The next stream holds `Started` back until content and delivers everything.
    let events: Vec<_> = client.chat_stream(ask("hi")).await.unwrap().collect().await;
    let mut acc = stream::StreamAccumulator::new();
    for e in &events {
        acc.push(e.as_ref().unwrap()).unwrap();
    }
    assert_eq!(acc.finish().unwrap().text(), "You said: hi");
    assert!(
        matches!(events[0], Ok(StreamEvent::Started { .. })),
        "{events:?}"
    );
}

fn short_breaker() -> BreakerConfig {
    BreakerConfig {
        consecutive_failures: 5,
        cool_down: Duration::from_secs(4),
        ..BreakerConfig::default()
    }
}

#[tokio::test(start_paused = true)]
async fn issue_13_batch_waits_out_an_open_breaker_instead_of_failing_items() {
    let (emu, client) = setup(|b| b.breaker(Some(short_breaker()))).await;
    emu.set_latency(Duration::from_millis(10));
    emu.push_fault(Fault::once(status(500, None)).times(15));
    let reqs: Vec<_> = (0..300).map(|i| ask(&format!("item {i}"))).collect();
    let results = client.batch(reqs, 8).await;
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r.as_ref().unwrap().text(), format!("You said: item {i}"));
    }
    let log = emu.requests();
    assert_eq!(log.iter().filter(|r| r.status == 500).count(), 15);
    assert_eq!(log.iter().filter(|r| r.status == 200).count(), 300);
    let (_, st) = &client.breaker_statuses()[0];
    assert!(st.trips >= 1, "the breaker opened: {st:?}");
    assert_eq!(st.state, BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn issue_13_batch_stops_waiting_once_the_upstream_failed_for_the_breaker_wait() {
    let (emu, client) = setup(|b| {
        b.breaker(Some(short_breaker()))
            .batch_breaker_wait(Duration::from_secs(60))
    })
    .await;
    emu.push_fault(Fault::always(status(500, None)));
    let began = tokio::time::Instant::now();
    let reqs: Vec<_> = (0..50).map(|i| ask(&format!("item {i}"))).collect();
    let results = client.batch(reqs, 8).await;
    let took = began.elapsed();
    assert!(results.iter().all(|r| matches!(
        r.as_ref().map_err(Error::kind),
        Err(ErrorKind::CircuitOpen | ErrorKind::UpstreamServer)
    )));
    assert!(
        took >= Duration::from_secs(60) && took < Duration::from_secs(90),
        "items wait the breaker wait, then fail fast: {took:?}"
    );
    // One probe per cool-down while waiting, not a request per item.
    let n = emu.requests().len();
    assert!(n < 8 * 3 + 60 / 4 + 2, "{n} upstream requests");
    // Single calls never wait.
    let err = client.chat(ask("x")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CircuitOpen);
}

/// A request whose messages are large (256 KiB), addressed by a name no upstream knows: the
/// model to send travels beside it.
fn large_request() -> (ChatRequest, String) {
    let text = "x".repeat(256 * 1024);
    let req = ChatRequest::new("public-name", vec![Message::user(text.clone())]);
    (req, text)
}

/// Every attempt in the emulator's log asked for `model` and carried the whole conversation.
fn assert_each_attempt_sent(emu: &Emulator, model: &str, text: &str, statuses: &[u16]) {
    let log = emu.requests();
    assert_eq!(
        log.iter().map(|r| r.status).collect::<Vec<_>>(),
        statuses,
        "attempts"
    );
    for (i, r) in log.iter().enumerate() {
        let body = r.json().unwrap();
        assert_eq!(body["model"], model, "attempt {i}");
        assert_eq!(body["messages"][0]["content"], text, "attempt {i}");
    }
}

#[tokio::test(start_paused = true)]
async fn issue_14_every_retry_of_a_borrowed_request_sends_the_model_given_beside_it() {
    let (emu, client) = setup(|b| b.breaker(None)).await;
    let provider = client.provider("openai").unwrap();
    let (req, text) = large_request();

    emu.push_fault(Fault::once(status(500, None)).times(2));
    let r = client
        .chat_with(provider.as_ref(), "gpt-upstream", &req)
        .await
        .unwrap();
    assert_eq!(r.model, "gpt-upstream");
    assert_each_attempt_sent(&emu, "gpt-upstream", &text, &[500, 500, 200]);

    emu.clear_requests();
    emu.push_fault(Fault::once(status(503, None)).times(2));
    let events: Vec<_> = client
        .stream_with(provider.as_ref(), "gpt-streamed", &req)
        .await
        .unwrap()
        .collect()
        .await;
    let started = events.iter().find_map(|e| match e {
        Ok(StreamEvent::Started { model, .. }) => Some(model.clone()),
        _ => None,
    });
    assert_eq!(started.as_deref(), Some("gpt-streamed"));
    assert!(events.iter().all(Result::is_ok), "{:?}", events.last());
    assert_each_attempt_sent(&emu, "gpt-streamed", &text, &[503, 503, 200]);

    // Borrowed, never rewritten: the caller's request is as it was.
    assert_eq!(req.model, "public-name");
    assert_eq!(req.messages[0].content.text(), text);
}

#[tokio::test(start_paused = true)]
async fn issue_14_an_empty_upstream_model_is_an_invalid_request_before_any_send() {
    let (emu, client) = setup(|b| b).await;
    let provider = client.provider("openai").unwrap();
    // The request's own model is set; the one beside it, the one sent, is not.
    let err = client
        .chat_with(provider.as_ref(), " ", &ask("hi"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{err}");
    let emb = EmbeddingRequest::new("openai/text-embedding-3-small", vec!["a".into()]);
    let err = client
        .embed_with(provider.as_ref(), "", &emb)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{err}");
    assert!(emu.requests().is_empty());
}

#[tokio::test(start_paused = true)]
async fn issue_14_embeddings_send_the_model_given_beside_the_request() {
    let (emu, client) = setup(|b| b).await;
    let provider = client.provider("openai").unwrap();
    let req = EmbeddingRequest::new("public-name", vec!["a".into(), "b".into()]);
    let r = client
        .embed_with(provider.as_ref(), "embed-upstream", &req)
        .await
        .unwrap();
    assert_eq!(r.data.len(), 2);
    let log = emu.requests();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].json().unwrap()["model"], "embed-upstream");
    assert_eq!(req.model, "public-name");
}

#[tokio::test(start_paused = true)]
async fn issue_14_embeddings_are_retried_and_counted_by_the_breaker_like_chats() {
    let breaker = BreakerConfig {
        consecutive_failures: 3,
        cool_down: Duration::from_secs(30),
        ..BreakerConfig::default()
    };
    let (emu, client) = setup(|b| b.breaker(Some(breaker))).await;
    let provider = client.provider("openai").unwrap();
    let req = EmbeddingRequest::new("public-name", vec!["a".into(), "b".into()]);

    // Transient failures are retried per the policy, each attempt with the upstream model.
    emu.push_fault(Fault::once(status(500, None)).times(2));
    let r = client
        .embed_with(provider.as_ref(), "embed-upstream", &req)
        .await
        .unwrap();
    assert_eq!(r.data.len(), 2);
    let log = emu.requests();
    assert_eq!(
        log.iter().map(|r| r.status).collect::<Vec<_>>(),
        [500, 500, 200]
    );
    assert!(log
        .iter()
        .all(|r| r.json().unwrap()["model"] == "embed-upstream"));

    // A failing upstream opens the breaker; the next call fails fast and sends nothing.
    emu.clear_requests();
    emu.push_fault(Fault::always(status(500, None)));
    let addressed = EmbeddingRequest::new("openai/embed-upstream", vec!["a".into()]);
    let err = client.embed(addressed.clone()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UpstreamServer, "{err}");
    assert_eq!(emu.requests().len(), 3, "max_attempts");
    let err = client.embed(addressed).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CircuitOpen, "{err}");
    assert_eq!(emu.requests().len(), 3);
    assert_eq!(client.breaker_states()[0].1, BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn issue_14_embeddings_go_through_the_client_side_rate_limit() {
    let limits = LimitConfig {
        rpm: Some(2),
        tpm: None,
        wait: false,
    };
    let (emu, client) = setup(|b| b.limit("openai", limits)).await;
    let req = EmbeddingRequest::new("openai/text-embedding-3-small", vec!["a".into()]);
    client.embed(req.clone()).await.unwrap();
    // A chat and an embedding share the provider's budget.
    client.chat(ask("hi")).await.unwrap();
    let err = client.embed(req).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RateLimited, "{err}");
    assert!(err.retry_after().is_some());
    assert_eq!(emu.requests().len(), 2, "the limited call sent nothing");
}

#[tokio::test(start_paused = true)]
async fn issue_14_a_streams_usage_trues_up_its_token_reservation() {
    // Each stream reserves its estimate (a few prompt tokens + 1,024 for the output); its
    // usage event replaces that by what it used (a few dozen), so a third stream fits in a
    // budget two reservations would nearly fill.
    let limits = LimitConfig {
        rpm: None,
        tpm: Some(2_100),
        wait: false,
    };
    let (_emu, client) = setup(|b| b.limit("openai", limits)).await;
    for i in 0..3 {
        let events: Vec<_> = client
            .chat_stream(ask("hi"))
            .await
            .unwrap_or_else(|e| panic!("stream {i}: {e}"))
            .collect()
            .await;
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Ok(StreamEvent::Usage(_)))),
            "{events:?}"
        );
    }
}

/// An emulator of `vendor` serving provider `id`, and a client of it (breaker off).
async fn setup_vendor(vendor: Vendor, id: &'static str) -> (Emulator, Client) {
    let emu = Emulator::start(EmulatorConfig::new(vendor)).await.unwrap();
    let client = Client::builder()
        .without_env()
        .timeouts(no_timeouts())
        .breaker(None)
        .provider(
            id,
            ProviderSettings::with_api_key(vendor.default_key()).base_url(emu.base_url()),
        )
        .build()
        .unwrap();
    (emu, client)
}

#[tokio::test(start_paused = true)]
async fn anthropic_overloaded_529_is_retried_and_a_spent_credit_is_not() {
    let (emu, client) = setup_vendor(Vendor::Anthropic, "anthropic").await;
    emu.push_fault(Fault::once(status(529, None)).times(2));
    let model = "anthropic/claude-sonnet-4-6";
    let r = client
        .chat(ChatRequest::new(model, vec![Message::user("hi")]))
        .await
        .unwrap();
    assert_eq!(r.text(), "You said: hi");
    assert_eq!(
        emu.requests().iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![529, 529, 200]
    );
    emu.push_fault(Fault::once(FaultKind::QuotaExhausted));
    let err = client
        .chat(ChatRequest::new(model, vec![Message::user("hi")]))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::QuotaExhausted);
    assert_eq!(emu.requests().len(), 4, "not retried");
}

#[tokio::test(start_paused = true)]
async fn gemini_429_waits_out_the_retry_delay_of_its_body() {
    let (emu, client) = setup_vendor(Vendor::Gemini, "gemini").await;
    let body = r#"{"error": {"code": 429, "status": "RESOURCE_EXHAUSTED",
        "message": "You exceeded your current quota, please check your plan and billing details.",
        "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "3s"}]}}"#;
    emu.push_fault(Fault::once(FaultKind::Status {
        status: 429,
        body: Some(body.to_owned()),
        retry_after: None,
    }));
    client
        .chat(ChatRequest::new(
            "gemini/gemini-2.5-flash",
            vec![Message::user("hi")],
        ))
        .await
        .unwrap();
    let g = gaps(&emu);
    assert_eq!(g.len(), 1);
    assert!(
        g[0] >= Duration::from_secs(3),
        "second attempt after {:?}",
        g[0]
    );
}
