//! Connection hardening (issue 13, item 2): slow or silent heads, oversized heads, idle
//! keep-alive connections, the connection cap, short bodies and shutdown with idle or half-open
//! connections, all over raw TCP against an in-process gateway with short timeouts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use futures::StreamExt;
use llmux_emulator::{Emulator, EmulatorConfig, Vendor};
use llmux_gateway::{Config, RawConfig};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// A gateway with the test keys, `server` lines added to `[server]`, and `rest` after it.
async fn gateway(server: &str, rest: &str) -> Harness {
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\napi_keys = [\"{KEY}\"]\nadmin_key = \"{ADMIN}\"\nmax_body_bytes = 65536\n{server}\n\n{rest}"
    );
    let raw = RawConfig::parse(&text, Vec::new()).expect("config parses");
    start_config(Config::resolve(raw, |_| None).expect("config resolves")).await
}

fn addr(gw: &Harness) -> SocketAddr {
    gw.url.trim_start_matches("http://").parse().unwrap()
}

/// What the peer did until `deadline`: the bytes it sent, and whether it closed (EOF or reset).
async fn read_until_closed(s: &mut TcpStream, deadline: Instant) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return (got, false),
            Ok(Ok(0) | Err(_)) => return (got, true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// One response read from a kept-alive connection: status, head, body (by `content-length`).
async fn read_response(s: &mut TcpStream) -> (u16, String, Vec<u8>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8(got[..end].to_vec()).unwrap();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .expect("a content-length");
            if got.len() >= end + 4 + len {
                let status = head[9..12].parse().unwrap();
                return (status, head, got[end + 4..end + 4 + len].to_vec());
            }
        }
        let n = tokio::time::timeout_at(deadline, s.read(&mut buf))
            .await
            .expect("a response within 10 s")
            .unwrap();
        assert!(n > 0, "closed before a whole response: {got:?}");
        got.extend_from_slice(&buf[..n]);
    }
}

/// Splits a raw response into status, head and JSON body.
fn parse_raw(raw: &[u8]) -> (u16, String, Value) {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let status = head[9..12].parse().unwrap();
    let body = serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, head.to_owned(), body)
}

fn assert_openai_error(v: &Value) {
    let e = &v["error"];
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    assert!(e["type"].is_string(), "{v}");
    assert!(e.get("param").is_some() && e.get("code").is_some(), "{v}");
}

fn assert_dashscope_error(v: &Value) {
    assert!(v["code"].as_str().is_some_and(|c| !c.is_empty()), "{v}");
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    assert!(v["request_id"].is_string(), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn issue_13_slow_and_silent_heads_are_closed_within_the_header_timeout() {
    let gw = gateway("header_read_timeout = \"1s\"\nidle_timeout = \"30s\"", "").await;
    let at = addr(&gw);
    let started = Instant::now();
    let mut conns = Vec::new();
    for i in 0..300 {
        let mut s = TcpStream::connect(at).await.unwrap();
        if i % 10 != 0 {
            // A slowloris client: part of a head, then nothing more.
            s.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Slow: a")
                .await
                .unwrap();
        }
        conns.push(s);
    }
    // Meanwhile normal requests are served.
    for _ in 0..5 {
        let r = gw.get("/healthz").send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    // Every slow or silent connection is closed, without an answer, well within the deadline.
    let deadline = started + Duration::from_secs(8);
    let results =
        futures::future::join_all(conns.iter_mut().map(|s| read_until_closed(s, deadline))).await;
    let open = results.iter().filter(|(_, closed)| !closed).count();
    assert_eq!(open, 0, "{open} of 300 slow connections were still open");
    assert!(results.iter().all(|(got, _)| got.is_empty()));
    // And the gateway still serves.
    assert_eq!(gw.get("/healthz").send().await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn issue_13_unfinished_huge_heads_are_refused_and_memory_stays_bounded() {
    let gw = gateway(
        "header_read_timeout = \"20s\"\nmax_header_bytes = 16384",
        "",
    )
    .await;
    let at = addr(&gw);
    let rss_before = rss_kib();
    // The attack: 300 connections each sending 390 KB of one header and never finishing it.
    let mut attack = b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    attack.resize(390_000, b'a');
    let attack = std::sync::Arc::new(attack);
    let mut tasks = Vec::new();
    for _ in 0..300 {
        let attack = attack.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(at).await.unwrap();
            // The server stops reading (and closes) long before all of it is sent.
            let _ = s.write_all(&attack).await;
            read_until_closed(&mut s, Instant::now() + Duration::from_secs(15)).await
        }));
    }
    let mut answered = 0;
    for t in tasks {
        let (got, closed) = t.await.unwrap();
        assert!(closed, "a connection with an oversized head stayed open");
        if !got.is_empty() {
            // When the answer beats the reset, it is the 431 in the OpenAI format.
            let (status, _, body) = parse_raw(&got);
            assert_eq!(status, 431);
            assert_openai_error(&body);
            answered += 1;
        }
    }
    let rss_after = rss_kib();
    eprintln!(
        "RSS {rss_before} KiB -> {rss_after} KiB; {answered} of 300 read the 431 before the reset"
    );
    // 300 × 390 KB held would be over 110 MB; each connection may buffer at most 16 KiB.
    assert!(
        rss_after.saturating_sub(rss_before) < 48 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
    assert_eq!(gw.get("/healthz").send().await.unwrap().status(), 200);
}

/// The resident set of this process (the gateway runs in it), in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn issue_13_idle_keep_alive_connections_close_after_the_idle_timeout() {
    let gw = gateway("header_read_timeout = \"30s\"\nidle_timeout = \"1s\"", "").await;
    let mut s = TcpStream::connect(addr(&gw)).await.unwrap();
    for _ in 0..2 {
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let (status, _, _) = read_response(&mut s).await;
        assert_eq!(status, 200, "the connection is kept alive between requests");
    }
    let (got, closed) = read_until_closed(&mut s, Instant::now() + Duration::from_secs(10)).await;
    assert!(closed, "the idle connection was never closed");
    assert!(got.is_empty());
}

#[tokio::test]
async fn issue_13_connections_over_the_cap_wait_until_one_closes() {
    let gw = gateway("max_connections = 2\nheader_read_timeout = \"60s\"", "").await;
    let at = addr(&gw);
    let first = TcpStream::connect(at).await.unwrap();
    let mut second = TcpStream::connect(at).await.unwrap();
    second
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_response(&mut second).await.0, 200);
    // The third waits in the backlog: its request is not answered while two are open.
    let mut third = TcpStream::connect(at).await.unwrap();
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let waited = tokio::time::timeout(Duration::from_millis(700), third.read(&mut buf)).await;
    assert!(
        waited.is_err(),
        "served over the connection cap: {waited:?}"
    );
    // One closes: the third is served.
    drop(first);
    assert_eq!(read_response(&mut third).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn issue_13_shutdown_closes_idle_and_half_open_connections_at_once() {
    let oa = Emulator::start(
        EmulatorConfig::new(Vendor::OpenAi).with_token_interval(Duration::from_millis(30)),
    )
    .await
    .unwrap();
    let mut gw = gateway(
        "shutdown_grace = \"60s\"\nheader_read_timeout = \"60s\"\nidle_timeout = \"60s\"",
        &channel("oa", "openai", &oa, "[\"m\"]", ""),
    )
    .await;
    let at = addr(&gw);
    // Idle kept-alive connections, half-open ones (an unfinished head) and silent ones.
    let mut idle = Vec::new();
    for _ in 0..10 {
        let mut s = TcpStream::connect(at).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(read_response(&mut s).await.0, 200);
        idle.push(s);
    }
    for i in 0..20 {
        let mut s = TcpStream::connect(at).await.unwrap();
        if i % 2 == 0 {
            s.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-")
                .await
                .unwrap();
        }
        idle.push(s);
    }
    // A stream in flight keeps its time.
    let resp = gw
        .post("/v1/chat/completions")
        .json(&json!({"model":"m","stream":true,"messages":[{"role":"user","content":"a b c d e f g h"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    gw.shutdown();
    let deadline = Instant::now() + Duration::from_secs(5);
    let results =
        futures::future::join_all(idle.iter_mut().map(|s| read_until_closed(s, deadline))).await;
    assert!(
        results.iter().all(|(_, closed)| *closed),
        "idle or half-open connections outlived the shutdown"
    );
    let mut rest = String::from_utf8(first.to_vec()).unwrap();
    while let Some(chunk) = body.next().await {
        rest.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    let (_, done) = openai_chunks(&rest);
    assert!(done, "the in-flight stream was cut: {rest}");
    // The gateway finished well within the 60 s grace.
    let task = gw.task.take().unwrap();
    tokio::time::timeout_at(deadline, task)
        .await
        .expect("shutdown waited for idle connections")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn issue_13_a_body_shorter_than_its_length_gets_408_in_the_ingress_format() {
    let gw = gateway("body_read_timeout = \"1s\"", "").await;
    let cases = [
        ("/v1/chat/completions", KEY, "openai"),
        (
            "/api/v1/services/aigc/text-generation/generation",
            KEY,
            "dashscope",
        ),
        ("/admin/keys", ADMIN, "admin"),
    ];
    for (path, key, shape) in cases {
        let mut s = TcpStream::connect(addr(&gw)).await.unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"model\":"
        );
        s.write_all(head.as_bytes()).await.unwrap();
        let (got, _) = read_until_closed(&mut s, Instant::now() + Duration::from_secs(10)).await;
        assert!(!got.is_empty(), "{path}: no answer to a short body");
        let (status, head, body) = parse_raw(&got);
        assert_eq!(status, 408, "{path}: {body}");
        assert!(
            head.to_ascii_lowercase().contains("x-request-id:"),
            "{head}"
        );
        match shape {
            "dashscope" => {
                assert_dashscope_error(&body);
                assert_eq!(body["code"], "RequestTimeOut");
            }
            _ => {
                assert_openai_error(&body);
                assert_eq!(body["error"]["code"], "request_timeout");
            }
        }
    }
}

#[tokio::test]
async fn h2c_is_served_with_json_errors_and_idle_h2_connections_close() {
    use http_body_util::BodyExt;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let gw = gateway("idle_timeout = \"1s\"", "").await;
    let tcp = TcpStream::connect(addr(&gw)).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let get = http::Request::get(format!("{}/healthz", gw.url))
        .body(String::new())
        .unwrap();
    let resp = send.send_request(get).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let delete = http::Request::delete(format!("{}/v1/chat/completions", gw.url))
        .body(String::new())
        .unwrap();
    let resp = send.send_request(delete).await.unwrap();
    assert_eq!(resp.status(), 405);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["code"], "method_not_allowed", "{v}");
    // With nothing in flight the server closes the HTTP/2 connection after idle_timeout.
    tokio::time::timeout(Duration::from_secs(10), conn)
        .await
        .expect("the idle HTTP/2 connection was never closed")
        .unwrap()
        .ok();
}
