//! Usage events on NATS JetStream (issue 17), end to end: a run of requests through the
//! gateway, and a consumer of the stream that finds every usage record in it once, field for
//! field, including across a NATS outage (the test's own `nats-server`, stopped mid-run and
//! started again on the same port and store directory). Runs on SQLite and PostgreSQL; two
//! replicas on one PostgreSQL database drain one outbox without duplicates. Tests that need no
//! outage use the machine's NATS (127.0.0.1:4222) with a stream and subject of their own.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::*;
use llmux_emulator::Vendor;
use llmux_gateway::events::config::EventsConfig;
use llmux_gateway::events::nats::{NatsSink, Tail};
use llmux_gateway::events::{Delivery, EventSink, OutgoingEvent, UsageEvent, SCHEMA_VERSION};
use llmux_gateway::store::{RecordQuery, UsageRecord};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

/// The machine's NATS server, for tests that do not stop it.
const SHARED_NATS: &str = "nats://127.0.0.1:4222";

fn under_ci() -> bool {
    matches!(std::env::var("CI").as_deref(), Ok("true" | "1"))
}

fn nats_server_bin() -> Option<PathBuf> {
    let bin = std::env::var_os("NATS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/nats-server"));
    if bin.exists() {
        return Some(bin);
    }
    assert!(!under_ci(), "{} is required under CI=true", bin.display());
    eprintln!(
        "\n!!!!!!!! SKIPPING a NATS outage test: {} not found !!!!!!!!\n",
        bin.display()
    );
    None
}

/// A port the OS says is free now.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A `nats-server -js` of the test's own, on a free port with a temporary store directory;
/// stopped when dropped.
struct OwnNats {
    bin: PathBuf,
    port: u16,
    dir: tempfile::TempDir,
    child: Option<tokio::process::Child>,
}

impl OwnNats {
    async fn start() -> Option<OwnNats> {
        let bin = nats_server_bin()?;
        let mut n = OwnNats {
            bin,
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        n.run().await;
        Some(n)
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the server on its port and store directory; returns once it says it is ready.
    async fn run(&mut self) {
        let mut child = tokio::process::Command::new(&self.bin)
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let ready = tokio::time::timeout(Duration::from_secs(30), async {
            let mut seen = Vec::new();
            while let Some(line) = lines.next_line().await.unwrap() {
                if line.contains("Server is ready") {
                    return Ok(());
                }
                seen.push(line);
            }
            Err(seen)
        })
        .await;
        match ready {
            Ok(Ok(())) => {}
            other => panic!("nats-server did not start: {other:?}"),
        }
        // Keep reading its log so the pipe never fills.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.child = Some(child);
    }

    /// Kills the server and waits until it is gone.
    async fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().await.unwrap();
        }
    }
}

/// A stream and subject prefix no other test uses.
fn unique_names(tag: &str) -> (String, String) {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let id = format!("{}_{n}_{nanos}", std::process::id());
    (
        format!("T_{}_{id}", tag.to_uppercase()),
        format!("llmuxtest.{tag}{id}.usage"),
    )
}

fn events_config(nats: &str, stream: &str, subject: &str) -> EventsConfig {
    let mut c = EventsConfig::for_server(nats).unwrap();
    c.stream = stream.to_owned();
    c.subject = subject.to_owned();
    c
}

/// `[events]` for the gateway, polling quickly.
fn events_toml(nats: &str, stream: &str, subject: &str) -> String {
    format!(
        "[events]\nnats = \"{nats}\"\nstream = \"{stream}\"\nsubject = \"{subject}\"\npoll_interval = \"20ms\"\n"
    )
}

/// Deletes a stream of the shared server (at the end of a test).
async fn delete_stream(nats: &str, stream: &str) {
    let client = async_nats::connect(nats).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let _ = js.delete_stream(stream).await;
}

/// Messages the stream holds.
async fn stream_messages(nats: &str, stream: &str) -> u64 {
    let client = async_nats::connect(nats).await.unwrap();
    let js = async_nats::jetstream::new(client);
    js.get_stream(stream)
        .await
        .unwrap()
        .get_info()
        .await
        .unwrap()
        .state
        .messages
}

/// Waits (at most 90 s) until `check` holds, looking again every 20 ms.
async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let done = tokio::time::timeout(Duration::from_secs(90), async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(done.is_ok(), "timed out waiting until {what}");
}

async fn outbox_depth(gw: &Harness) -> u64 {
    gw.state
        .store
        .as_ref()
        .unwrap()
        .outbox()
        .unwrap()
        .outbox_depth()
        .await
        .unwrap()
}

/// Reads `n` events from the start of the stream (at most 30 s).
async fn read_events(cfg: &EventsConfig, n: usize) -> Vec<UsageEvent> {
    let mut tail = Tail::open(cfg, true, None).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        while out.len() < n {
            let body = tail.next().await.unwrap().unwrap();
            out.push(serde_json::from_slice::<UsageEvent>(&body).unwrap());
        }
    })
    .await
    .unwrap_or_else(|_| panic!("read {} of {n} events", out.len()));
    out
}

/// A chat request, streamed or not; asserts the 200 and returns the gateway's request id.
async fn chat(gw: &Harness, key: &str, i: usize) -> String {
    let stream = i % 2 == 0;
    let resp = gw
        .http
        .post(format!("{}/v1/chat/completions", gw.url))
        .bearer_auth(key)
        .json(&json!({"model":"m","stream":stream,"max_tokens":8,
            "messages":[{"role":"user","content":format!("event number {i}")}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let id = resp.headers()["x-llmux-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    resp.text().await.unwrap();
    id
}

/// Every stored record of `gw` has exactly one event, equal field for field, and no event
/// lacks a record.
async fn assert_one_to_one(gw: &Harness, events: &[UsageEvent], expected: usize) {
    let records = gw
        .state
        .store
        .as_ref()
        .unwrap()
        .records(RecordQuery {
            key_id: None,
            limit: 10_000,
        })
        .await
        .unwrap();
    assert_eq!(records.len(), expected, "stored records");
    let by_id: BTreeMap<&str, &UsageRecord> =
        records.iter().map(|r| (r.request_id.as_str(), r)).collect();
    let mut seen = BTreeSet::new();
    for e in events {
        assert_eq!(e.schema, SCHEMA_VERSION);
        assert_eq!(e.currency, "USD");
        assert!(
            seen.insert(e.record.request_id.clone()),
            "event {} twice",
            e.record.request_id
        );
        let stored = by_id
            .get(e.record.request_id.as_str())
            .unwrap_or_else(|| panic!("an event without a record: {e:?}"));
        assert_eq!(&e.record, *stored, "the event differs from its record");
    }
    assert_eq!(seen.len(), expected, "events");
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

const PRICES: &str = "[server.prices.m]\ninput_per_mtok = 1000.0\noutput_per_mtok = 2000.0\n";

on_both_stores!(issue_17_every_record_is_one_event_across_a_nats_outage);

async fn issue_17_every_record_is_one_event_across_a_nats_outage(database: &str) {
    let Some(mut nats) = OwnNats::start().await else {
        return;
    };
    let oa = emulator(Vendor::OpenAi).await;
    let (stream, subject) = ("LLMUX_USAGE", "llmux.usage");
    let gw = start_with_database(
        database,
        &format!(
            "{PRICES}{}{}",
            events_toml(&nats.url(), stream, subject),
            channel("oa", "openai", &oa, "[\"m\"]", "")
        ),
    )
    .await;
    let (key, key_id) = create_key(&gw, json!({"name":"events"})).await;
    let mut ids = Vec::new();
    let before = 12;
    for i in 0..before {
        ids.push(chat(&gw, &key, i).await);
    }
    wait_until("the first events are published", || async {
        outbox_depth(&gw).await == 0
    })
    .await;

    // The broker goes away; requests go on, and their events wait in the outbox.
    nats.stop().await;
    let during = 18;
    for i in before..before + during {
        ids.push(chat(&gw, &key, i).await);
    }
    assert_eq!(
        outbox_depth(&gw).await,
        during as u64,
        "the records of the outage are queued"
    );
    wait_until("the publisher noticed the outage", || async {
        let m = gw.metrics().await;
        ["connect", "prepare", "publish"]
            .iter()
            .map(|s| metric(&m, &format!("llmux_events_errors_total{{stage=\"{s}\"}}")))
            .sum::<f64>()
            > 0.0
    })
    .await;

    // Back on the same port and store: everything arrives, once.
    nats.run().await;
    wait_until("the queued events are published", || async {
        outbox_depth(&gw).await == 0
    })
    .await;
    let total = before + during;
    let cfg = events_config(&nats.url(), stream, subject);
    let events = read_events(&cfg, total).await;
    assert_eq!(
        stream_messages(&nats.url(), stream).await,
        total as u64,
        "no duplicates in the stream"
    );
    assert_one_to_one(&gw, &events, total).await;
    assert!(events.iter().all(|e| e.record.key_id == Some(key_id)));
    assert!(events.iter().any(|e| e.record.stream) && events.iter().any(|e| !e.record.stream));
    assert!(events.iter().all(|e| e.record.cost > 0.0));
    let got: BTreeSet<&str> = events
        .iter()
        .map(|e| e.record.request_id.as_str())
        .collect();
    let sent: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
    assert_eq!(got, sent, "one event per answered request");
    let m = gw.metrics().await;
    assert!(
        metric(&m, "llmux_events_published_total") >= total as f64,
        "{m}"
    );
    assert_eq!(metric(&m, "llmux_events_outbox_depth"), 0.0, "{m}");
}

/// Two gateways on one PostgreSQL database publish one outbox to one stream: each record's
/// event is in the stream once, whichever replica took it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn issue_17_two_replicas_drain_one_outbox_without_duplicates() {
    let Some(pg) = PgSchema::create().await else {
        return;
    };
    let (stream, subject) = unique_names("replicas");
    let oa = emulator(Vendor::OpenAi).await;
    let rest = format!(
        "{}{}",
        events_toml(SHARED_NATS, &stream, &subject),
        channel("oa", "openai", &oa, "[\"m\"]", "")
    );
    let a = start_with_database(&pg.url, &rest).await;
    let b = start_with_database(&pg.url, &rest).await;
    let per = 40;
    let (ra, rb) = (&a, &b);
    let sends = (0..per).map(|i| async move {
        let gw = if i % 2 == 0 { ra } else { rb };
        chat(gw, KEY, i).await
    });
    futures::future::join_all(sends).await;
    wait_until("both replicas emptied the outbox", || async {
        outbox_depth(&a).await == 0
    })
    .await;
    let cfg = events_config(SHARED_NATS, &stream, &subject);
    let events = read_events(&cfg, per).await;
    assert_eq!(stream_messages(SHARED_NATS, &stream).await, per as u64);
    assert_one_to_one(&a, &events, per).await;
    delete_stream(SHARED_NATS, &stream).await;
    pg.drop_schema().await;
}

/// Shutdown publishes what the last requests recorded: the publisher, idle for a minute,
/// drains the outbox after the recorder's final flush.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_publishes_the_last_records() {
    let (stream, subject) = unique_names("shutdown");
    let oa = emulator(Vendor::OpenAi).await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("gw.db").display());
    let events = events_toml(SHARED_NATS, &stream, &subject)
        .replace("poll_interval = \"20ms\"", "poll_interval = \"60s\"");
    let mut gw = start_with_database(
        &db,
        &format!("{events}{}", channel("oa", "openai", &oa, "[\"m\"]", "")),
    )
    .await;
    // The publisher's first round (at start) created the stream; wait for it so the requests
    // below are recorded while the publisher sleeps.
    let cfg = events_config(SHARED_NATS, &stream, &subject);
    wait_until("the stream exists", || async {
        let client = async_nats::connect(SHARED_NATS).await.unwrap();
        async_nats::jetstream::new(client)
            .get_stream(&stream)
            .await
            .is_ok()
    })
    .await;
    let n = 7;
    for i in 0..n {
        chat(&gw, KEY, i).await;
    }
    gw.shutdown();
    gw.task.take().unwrap().await.unwrap().unwrap();
    assert_eq!(stream_messages(SHARED_NATS, &stream).await, n as u64);
    let events = read_events(&cfg, n).await;
    assert_one_to_one(&gw, &events, n).await;
    delete_stream(SHARED_NATS, &stream).await;
}

/// Without `[events]` nothing is queued: the outbox stays empty.
#[tokio::test]
async fn without_events_nothing_is_queued() {
    let oa = emulator(Vendor::OpenAi).await;
    let gw = start_with_store(&channel("oa", "openai", &oa, "[\"m\"]", "")).await;
    chat(&gw, KEY, 1).await;
    assert_eq!(records(&gw, 1).await.len(), 1);
    assert_eq!(outbox_depth(&gw).await, 0);
}

/// The sink against the shared server: it creates the stream, publishing an id twice stores it
/// once, and an existing stream without the gateway's subjects gets them added.
#[tokio::test]
async fn the_nats_sink_creates_its_stream_and_stores_an_id_once() {
    let (stream, subject) = unique_names("sink");
    let cfg = events_config(SHARED_NATS, &stream, &subject);
    let sink = NatsSink::connect(&cfg).await.unwrap();
    wait_until("connected", || async { sink.is_ready() }).await;
    sink.prepare().await.unwrap();
    let ev = |id: &str| OutgoingEvent {
        id: id.to_owned(),
        token: "openai".into(),
        payload: bytes::Bytes::from(format!("{{\"request_id\":\"{id}\"}}")),
    };
    let first = sink.publish(&[ev("a"), ev("b")]).await;
    assert_eq!(first, vec![Ok(Delivery::Stored), Ok(Delivery::Stored)]);
    let again = sink.publish(&[ev("a"), ev("c")]).await;
    assert_eq!(again, vec![Ok(Delivery::Duplicate), Ok(Delivery::Stored)]);
    assert_eq!(stream_messages(SHARED_NATS, &stream).await, 3);
    let client = async_nats::connect(SHARED_NATS).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let info = js
        .get_stream(&stream)
        .await
        .unwrap()
        .get_info()
        .await
        .unwrap();
    assert_eq!(info.config.subjects, vec![format!("{subject}.>")]);
    assert_eq!(info.config.duplicate_window, Duration::from_secs(120));
    delete_stream(SHARED_NATS, &stream).await;

    // A stream made by someone else, on other subjects and a short window: the gateway adds
    // its subjects and widens the window, and keeps the rest.
    js.create_stream(async_nats::jetstream::stream::Config {
        name: stream.clone(),
        subjects: vec![format!("{stream}.other")],
        duplicate_window: Duration::from_secs(5),
        max_messages: 1000,
        ..Default::default()
    })
    .await
    .unwrap();
    sink.prepare().await.unwrap();
    let info = js
        .get_stream(&stream)
        .await
        .unwrap()
        .get_info()
        .await
        .unwrap();
    assert_eq!(
        info.config.subjects,
        vec![format!("{stream}.other"), format!("{subject}.>")]
    );
    assert_eq!(info.config.duplicate_window, Duration::from_secs(120));
    assert_eq!(info.config.max_messages, 1000);
    delete_stream(SHARED_NATS, &stream).await;
}

/// Unreachable brokers: the sink is created anyway (it connects in the background), is not
/// ready, and publishing reports the broker unavailable instead of waiting.
#[tokio::test]
async fn a_sink_without_a_broker_is_not_ready_and_refuses_quickly() {
    let port = free_port();
    let cfg = events_config(&format!("nats://127.0.0.1:{port}"), "S", "llmux.usage");
    let sink = NatsSink::connect(&cfg).await.unwrap();
    assert!(!sink.is_ready());
    let ev = OutgoingEvent {
        id: "x".into(),
        token: "t".into(),
        payload: bytes::Bytes::from_static(b"{}"),
    };
    let r = sink.publish(&[ev]).await;
    assert!(
        matches!(
            &r[..],
            [Err(llmux_gateway::events::SinkError::Unavailable(_))]
        ),
        "{r:?}"
    );
    let err = Tail::open(&cfg, true, None).await.unwrap_err().to_string();
    assert!(err.contains("cannot connect to NATS"), "{err}");
}
