//! `llmux events tail` against the machine's NATS server (127.0.0.1:4222), on a stream of the
//! test's own: the events as JSON lines, `--from-start` and `--count`, and one-line errors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::run;
use llmux_gateway::events::config::EventsConfig;
use llmux_gateway::events::nats::NatsSink;
use llmux_gateway::events::{Delivery, EventSink, OutgoingEvent};

const NATS: &str = "nats://127.0.0.1:4222";

/// A stream and subject no other test uses.
fn names() -> (String, String) {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let id = format!("{}_{nanos}", std::process::id());
    (format!("T_CLI_{id}"), format!("llmuxclitest.u{id}"))
}

async fn sink(stream: &str, subject: &str) -> NatsSink {
    let mut cfg = EventsConfig::for_server(NATS).unwrap();
    cfg.stream = stream.to_owned();
    cfg.subject = subject.to_owned();
    let sink = NatsSink::connect(&cfg).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        while !sink.is_ready() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the machine's NATS server at 127.0.0.1:4222");
    sink.prepare().await.unwrap();
    sink
}

fn event(i: u32, provider: &str) -> OutgoingEvent {
    OutgoingEvent {
        id: format!("req-{i}"),
        token: provider.to_owned(),
        // Pretty-printed on purpose: the tail prints one line per event anyway.
        payload: bytes::Bytes::from(format!(
            "{{\n  \"schema\": 1,\n  \"request_id\": \"req-{i}\",\n  \"provider\": \"{provider}\"\n}}"
        )),
    }
}

async fn delete_stream(stream: &str) {
    let client = async_nats::connect(NATS).await.unwrap();
    let _ = async_nats::jetstream::new(client)
        .delete_stream(stream)
        .await;
}

#[tokio::test]
async fn tail_prints_the_streams_events_as_json_lines() {
    let (stream, subject) = names();
    let sink = sink(&stream, &subject).await;
    let sent = sink
        .publish(&[
            event(1, "openai"),
            event(2, "dashscope"),
            event(3, "openai"),
        ])
        .await;
    assert!(sent.iter().all(|r| *r == Ok(Delivery::Stored)), "{sent:?}");

    let out = run(
        &[
            "events",
            "tail",
            "--nats",
            NATS,
            "--stream",
            &stream,
            "--from-start",
            "--count",
            "3",
        ],
        &[],
        None,
    )
    .await;
    let lines: Vec<serde_json::Value> = out
        .ok()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids: Vec<&str> = lines
        .iter()
        .map(|v| v["request_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["req-1", "req-2", "req-3"]);
    assert_eq!(lines[1]["provider"], "dashscope");

    // A filter on one provider's subject, and the settings from a configuration file.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("llmux.toml");
    std::fs::write(
        &file,
        format!(
            "[events]\nnats = \"env:TEST_NATS\"\nstream = \"{stream}\"\nsubject = \"{subject}\"\n"
        ),
    )
    .unwrap();
    let filter = format!("{subject}.openai");
    let out = run(
        &[
            "events",
            "tail",
            "--config",
            file.to_str().unwrap(),
            "--filter",
            &filter,
            "--from-start",
            "--count",
            "2",
        ],
        &[("TEST_NATS", NATS.to_owned())],
        None,
    )
    .await;
    let ids: Vec<String> = out
        .ok()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["request_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(ids, ["req-1", "req-3"]);
    delete_stream(&stream).await;
}

#[tokio::test]
async fn tail_without_from_start_waits_for_the_next_event() {
    let (stream, subject) = names();
    let sink = sink(&stream, &subject).await;
    sink.publish(&[event(1, "openai")]).await;
    let home = tempfile::tempdir().unwrap();
    let mut cmd = common::command(home.path(), &[]);
    cmd.args([
        "events", "tail", "--nats", NATS, "--stream", &stream, "--count", "1",
    ])
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    // Publish until the tail has its consumer and prints (an event published before that is
    // not for it); each event has a new id.
    let mut i = 100;
    let out = tokio::time::timeout(Duration::from_secs(30), async {
        let wait = child.wait_with_output();
        tokio::pin!(wait);
        loop {
            tokio::select! {
                out = &mut wait => return out.unwrap(),
                () = tokio::time::sleep(Duration::from_millis(100)) => {
                    sink.publish(&[event(i, "openai")]).await;
                    i += 1;
                }
            }
        }
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_ne!(v["request_id"], "req-1", "the old event is not shown");
    assert_eq!(stdout.lines().count(), 1);
    delete_stream(&stream).await;
}

#[tokio::test]
async fn tail_errors_are_one_line_and_exit_1() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("nats://127.0.0.1:{closed}");
    let out = run(
        &["events", "tail", "--nats", &url, "--count", "1"],
        &[],
        None,
    )
    .await;
    let line = out.err_line();
    assert!(line.contains("cannot connect to NATS"), "{line}");

    let (stream, _) = names();
    let out = run(
        &[
            "events", "tail", "--nats", NATS, "--stream", &stream, "--count", "1",
        ],
        &[],
        None,
    )
    .await;
    let line = out.err_line();
    assert!(
        line.contains(&format!("the stream {stream} does not exist")),
        "{line}"
    );

    let out = run(
        &[
            "events",
            "tail",
            "--nats",
            "http://user:hunter2@h:1",
            "--stream",
            "a.b",
        ],
        &[],
        None,
    )
    .await;
    let line = out.err_line();
    assert!(
        line.contains("events.nats[0]") && line.contains("events.stream"),
        "{line}"
    );
    assert!(!line.contains("hunter2"), "{line}");
}
