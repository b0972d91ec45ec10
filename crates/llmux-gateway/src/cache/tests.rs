//! Unit tests of the cache's pure parts and of the in-process backend.

use std::sync::Arc;
use std::time::Duration;

use llmux_core::{
    ChatRequest, ChatResponse, Choice, Content, FinishReason, Message, Role, StreamEvent, Usage,
};

use super::*;
use crate::auth::VirtualKey;
use crate::limits::ManualClock;
use crate::pipeline::{Chat, Embed, Reply};
use crate::store::KeyRecord;

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(*k, HeaderValue::from_static(v));
    }
    h
}

#[test]
fn cache_control_directives_are_read_case_insensitively_across_fields() {
    let d = Directives::of(&headers(&[("cache-control", "No-Store")]));
    assert!(d.no_store && !d.no_cache);
    let d = Directives::of(&headers(&[
        ("cache-control", "max-age=60, private"),
        ("cache-control", "no-cache, max-age=\"30\""),
    ]));
    assert!(d.no_cache && !d.no_store);
    assert_eq!(d.max_age, Some(30), "the smallest max-age wins");
    let d = Directives::of(&headers(&[("pragma", "no-cache")]));
    assert!(d.no_cache);
    // Unreadable values are ignored, huge ones saturate.
    let d = Directives::of(&headers(&[("cache-control", "max-age=-1, max-age=1e3")]));
    assert_eq!(d.max_age, None);
    let d = Directives::of(&headers(&[(
        "cache-control",
        "max-age=99999999999999999999999999",
    )]));
    assert_eq!(d.max_age, Some(u64::MAX));
    assert_eq!(Directives::of(&HeaderMap::new()), Directives::default());
}

fn request(text: &str) -> ChatRequest {
    ChatRequest::new("gpt-4o-mini", vec![Message::user(text)])
}

fn key(id: i64, team: Option<i64>) -> Principal {
    Principal::Virtual(Arc::new(VirtualKey {
        record: KeyRecord {
            id,
            team_id: team,
            ..KeyRecord::default()
        },
    }))
}

fn chat_digest(scope: Scope, who: &Principal, label: &str, req: &ChatRequest) -> Option<Digest> {
    digest::<Chat>(scope, who, label, ["gpt-4o-mini"].into_iter(), req)
}

#[test]
fn the_digest_covers_what_shapes_the_answer_and_nothing_else() {
    let who = key(1, None);
    let base = request("hi");
    let d = chat_digest(Scope::Global, &who, "gpt-4o-mini", &base).unwrap();
    // The model the client wrote, its end-user id and stream options do not change it.
    let mut same = base.clone();
    same.model = "openai/gpt-4o-mini".into();
    same.user = Some("u-42".into());
    same.stream_usage = Some(false);
    assert_eq!(
        chat_digest(Scope::Global, &who, "gpt-4o-mini", &same),
        Some(d)
    );
    // Another caller shares it under the global scope.
    assert_eq!(
        chat_digest(Scope::Global, &key(2, None), "gpt-4o-mini", &base),
        Some(d)
    );
    // Messages, sampling parameters, tools, vendor fields and the route all do.
    let mut other = vec![request("hello")];
    let mut t = base.clone();
    t.temperature = Some(0.5);
    other.push(t);
    let mut t = base.clone();
    t.max_tokens = Some(10);
    other.push(t);
    let mut t = base.clone();
    t.tools = vec![llmux_core::Tool {
        name: "f".into(),
        description: None,
        parameters: serde_json::json!({"type": "object"}),
        strict: None,
    }];
    other.push(t);
    let mut t = base.clone();
    t.extra
        .insert("enable_thinking".into(), serde_json::json!(true));
    other.push(t);
    for o in &other {
        assert_ne!(
            chat_digest(Scope::Global, &who, "gpt-4o-mini", o),
            Some(d),
            "{o:?}"
        );
    }
    assert_ne!(
        chat_digest(Scope::Global, &who, "qwen-plus", &base),
        Some(d)
    );
    let via_other_upstream = digest::<Chat>(
        Scope::Global,
        &who,
        "gpt-4o-mini",
        ["gpt-4o-mini-2024-07-18"].into_iter(),
        &base,
    );
    assert_ne!(via_other_upstream, Some(d));
}

#[test]
fn scopes_separate_keys_and_teams() {
    let req = request("hi");
    let d = |scope, who: &Principal| chat_digest(scope, who, "m", &req).unwrap();
    let (k1, k2) = (key(1, Some(9)), key(2, Some(9)));
    assert_ne!(d(Scope::Key, &k1), d(Scope::Key, &k2));
    assert_eq!(d(Scope::Team, &k1), d(Scope::Team, &k2));
    assert_ne!(d(Scope::Team, &k1), d(Scope::Team, &key(3, Some(8))));
    // A key outside any team is its own scope, not the global one.
    assert_ne!(
        d(Scope::Team, &key(4, None)),
        d(Scope::Global, &key(4, None))
    );
    assert_ne!(
        d(Scope::Key, &Principal::Static(0)),
        d(Scope::Key, &Principal::Static(1))
    );
}

#[test]
fn several_choices_are_never_cached() {
    let mut req = request("hi");
    req.n = Some(2);
    assert_eq!(
        chat_digest(Scope::Global, &Principal::Open, "m", &req),
        None
    );
    req.n = Some(1);
    assert!(chat_digest(Scope::Global, &Principal::Open, "m", &req).is_some());
}

fn answer(text: &str, reason: FinishReason) -> ChatResponse {
    ChatResponse {
        id: "chatcmpl-1".into(),
        model: "gpt-4o-mini".into(),
        created: None,
        choices: vec![Choice {
            index: 0,
            message: Message {
                role: Role::Assistant,
                content: Content::Text(text.into()),
                name: None,
                tool_calls: Vec::new(),
                tool_call_id: None,
                reasoning: None,
                reasoning_signature: None,
            },
            finish_reason: Some(reason),
        }],
        usage: Some(Usage::new(5, 2)),
        request_id: None,
    }
}

async fn collect(reply: Reply<ChatResponse>) -> Vec<StreamEvent> {
    use futures::StreamExt;
    match reply {
        Reply::Stream(s) => s.map(|e| e.unwrap()).collect().await,
        Reply::Whole(_) => panic!("a whole answer where a stream was asked for"),
    }
}

#[tokio::test]
async fn stored_answers_replay_as_whole_answers_and_as_streams() {
    let a = answer("Hello there", FinishReason::Stop);
    let stored = Chat::to_stored(a.clone()).unwrap();
    match Chat::from_stored(&stored, false) {
        Some(Reply::Whole(w)) => assert_eq!(w, a),
        other => panic!("{other:?}"),
    }
    let events = collect(Chat::from_stored(&stored, true).unwrap()).await;
    assert_eq!(events, llmux_core::stream::response_to_events(&a));
    // A stored stream replays event for event, and folds into the same whole answer.
    let streamed = vec![
        StreamEvent::Started {
            id: "chatcmpl-1".into(),
            model: "gpt-4o-mini".into(),
            request_id: None,
        },
        StreamEvent::TextDelta {
            text: "Hello ".into(),
        },
        StreamEvent::TextDelta {
            text: "there".into(),
        },
        StreamEvent::Usage(Usage::new(5, 2)),
        StreamEvent::Finished {
            reason: FinishReason::Stop,
        },
    ];
    let stored = Stored::Events {
        events: streamed.clone(),
    };
    assert_eq!(
        collect(Chat::from_stored(&stored, true).unwrap()).await,
        streamed
    );
    match Chat::from_stored(&stored, false) {
        Some(Reply::Whole(w)) => {
            assert_eq!(w.text(), "Hello there");
            assert_eq!(w.usage, Some(Usage::new(5, 2)));
        }
        other => panic!("{other:?}"),
    }
    // Moderated answers are not kept; an embedding entry answers no chat request.
    assert!(Chat::to_stored(answer("", FinishReason::ContentFilter)).is_none());
    let emb = Stored::Embedding {
        answer: llmux_core::EmbeddingResponse {
            model: "m".into(),
            data: Vec::new(),
            usage: None,
            request_id: None,
        },
    };
    assert!(Chat::from_stored(&emb, false).is_none());
    assert!(matches!(
        Embed::from_stored(&emb, false),
        Some(Reply::Whole(_))
    ));
}

fn memory_cache(max_bytes: u64, max_entry_bytes: u64, clock: Arc<ManualClock>) -> ResponseCache {
    let config = CacheConfig {
        backend: Backend::Memory,
        ttl: Duration::from_secs(60),
        max_ttl: Duration::from_secs(3600),
        max_bytes,
        max_entry_bytes,
        scope: Scope::Global,
        mode: Mode::DefaultOn,
    };
    ResponseCache::new(config, None, CacheMetrics::new().unwrap(), clock).unwrap()
}

fn ticket(n: u8) -> Ticket {
    Ticket {
        digest: Digest([n; 32]),
        read: true,
        max_age_ms: None,
        ttl: Duration::from_secs(60),
    }
}

fn origin() -> Origin {
    Origin {
        provider: "openai".into(),
        channel: "oa".into(),
        upstream_model: "gpt-4o-mini".into(),
    }
}

#[tokio::test]
async fn entries_expire_on_the_gateways_clock_and_honour_max_age() {
    let clock = Arc::new(ManualClock::new(1_000_000));
    let cache = memory_cache(1 << 20, 1 << 16, clock.clone());
    let t = ticket(1);
    assert!(cache.lookup(&t).await.is_none());
    let stored = Chat::to_stored(answer("hi", FinishReason::Stop)).unwrap();
    cache.store(&t, origin(), stored.clone()).await;
    let e = cache.lookup(&t).await.unwrap();
    assert_eq!(e.stored, stored);
    assert_eq!(e.origin, origin());
    clock.advance(30_000);
    assert_eq!(cache.lookup(&t).await.unwrap().age_secs(cache.now_ms()), 30);
    // max-age=10 refuses a 30 s old entry; no-cache reads nothing.
    let strict = Ticket {
        max_age_ms: Some(10_000),
        ..t.clone()
    };
    assert!(cache.lookup(&strict).await.is_none());
    let no_cache = Ticket {
        read: false,
        ..t.clone()
    };
    assert!(cache.lookup(&no_cache).await.is_none());
    clock.advance(30_000);
    assert!(cache.lookup(&t).await.is_none(), "served after its TTL");
    assert_eq!(cache.metrics().stores.get(), 1);
}

#[tokio::test]
async fn entries_over_the_size_bound_are_not_kept_and_the_total_is_bounded() {
    let clock = Arc::new(ManualClock::new(0));
    let cache = memory_cache(8 * 1024, 2048, clock);
    let big = Chat::to_stored(answer(&"x".repeat(4096), FinishReason::Stop)).unwrap();
    cache.store(&ticket(1), origin(), big).await;
    assert!(cache.lookup(&ticket(1)).await.is_none());
    let m = cache.metrics();
    assert_eq!(m.not_stored.with_label_values(&["too_large"]).get(), 1);
    // Each entry is about 1.1 KiB: twenty of them cannot all stay within 8 KiB.
    for n in 0..20 {
        let a = Chat::to_stored(answer(&"y".repeat(1000), FinishReason::Stop)).unwrap();
        cache.store(&ticket(n + 2), origin(), a).await;
    }
    cache.sync().await;
    assert!(m.bytes.get() <= 8 * 1024, "{} bytes held", m.bytes.get());
    assert!(m.bytes.get() > 0);
    assert!(m.evictions.with_label_values(&["size"]).get() >= 12);
    assert_eq!(
        m.entries.get() + m.evictions.with_label_values(&["size"]).get() as i64,
        20
    );
}

#[tokio::test]
async fn a_tee_stores_only_streams_that_finished_well() {
    let clock = Arc::new(ManualClock::new(0));
    let cache = memory_cache(1 << 20, 4096, clock);
    let started = || StreamEvent::Started {
        id: "c".into(),
        model: "m".into(),
        request_id: None,
    };
    let text = |t: &str| StreamEvent::TextDelta { text: t.into() };
    let finished = |reason| StreamEvent::Finished { reason };
    // Complete: kept.
    let mut tee = cache.tee(ticket(1), origin());
    for ev in [started(), text("a"), finished(FinishReason::Stop)] {
        tee.push(ev);
    }
    tee.finish().await;
    assert!(cache.lookup(&ticket(1)).await.is_some());
    // Moderated: not kept.
    let mut tee = cache.tee(ticket(2), origin());
    for ev in [started(), finished(FinishReason::ContentFilter)] {
        tee.push(ev);
    }
    tee.finish().await;
    assert!(cache.lookup(&ticket(2)).await.is_none());
    // Larger than the entry bound: collection stops early, nothing kept.
    let mut tee = cache.tee(ticket(3), origin());
    tee.push(started());
    for _ in 0..100 {
        tee.push(text(&"z".repeat(100)));
    }
    assert!(tee.events.is_empty() && tee.over);
    tee.push(finished(FinishReason::Stop));
    tee.finish().await;
    assert!(cache.lookup(&ticket(3)).await.is_none());
    let m = cache.metrics();
    assert_eq!(m.not_stored.with_label_values(&["incomplete"]).get(), 1);
    assert_eq!(m.not_stored.with_label_values(&["too_large"]).get(), 1);
}

#[test]
fn entries_round_trip_through_json() {
    let e = Entry {
        format: FORMAT,
        created_ms: 1,
        expires_ms: 2,
        origin: origin(),
        stored: Stored::Events {
            events: vec![
                StreamEvent::Usage(Usage::new(1, 2)),
                StreamEvent::Finished {
                    reason: FinishReason::Length,
                },
            ],
        },
    };
    let bytes = serde_json::to_vec(&e).unwrap();
    assert_eq!(serde_json::from_slice::<Entry>(&bytes).unwrap(), e);
}
