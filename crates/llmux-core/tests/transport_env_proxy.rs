//! The transport honours the proxy environment variables as reqwest does: a destination they
//! route through a proxy reaches the proxy, one in `NO_PROXY` is sent directly. Its own test
//! binary: the variables are set for a child process running the ignored test below.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use llmux_core::http::{HttpRequest, Transport, TransportConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A loopback server that answers each connection's first request with its head as the body,
/// and counts the connections it accepted.
async fn echo_head_server() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 64 * 1024 {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).into_owned();
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{head}",
                    head.len()
                );
                let _ = sock.write_all(reply.as_bytes()).await;
            });
        }
    });
    (format!("http://{addr}"), accepted)
}

async fn first_line(t: &Transport, url: String) -> String {
    let body = t
        .send(HttpRequest::get(url))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap()
        .body;
    let text = String::from_utf8_lossy(&body).into_owned();
    text.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn proxy_variables_route_requests_through_the_proxy_except_no_proxy() {
    let (proxy, proxy_accepted) = echo_head_server().await;
    let (upstream, upstream_accepted) = echo_head_server().await;
    // The variables are set for a child process only: this process's environment is left alone.
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap());
    child
        .args([
            "--exact",
            "sends_with_the_environment_proxy",
            "--ignored",
            "--nocapture",
        ])
        .env("HTTP_PROXY", &proxy)
        .env("http_proxy", &proxy)
        .env("NO_PROXY", "127.0.0.1")
        .env("LLMUX_TEST_UPSTREAM", &upstream);
    for name in [
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
        "no_proxy",
        "REQUEST_METHOD",
    ] {
        child.env_remove(name);
    }
    let out = tokio::time::timeout(Duration::from_secs(60), child.output())
        .await
        .unwrap()
        .unwrap();
    let log =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("1 passed"), "{log}");
    assert_eq!(proxy_accepted.load(Ordering::SeqCst), 1);
    assert_eq!(upstream_accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
#[ignore = "run by proxy_variables_route_requests_through_the_proxy_except_no_proxy, with the variables set"]
async fn sends_with_the_environment_proxy() {
    let upstream = std::env::var("LLMUX_TEST_UPSTREAM").unwrap();
    let t = Transport::new(TransportConfig {
        connect_timeout: Duration::from_secs(5),
        ..TransportConfig::default()
    })
    .unwrap();
    // `.invalid` never resolves: only the proxy can have answered, and in absolute form.
    let line = first_line(&t, "http://upstream.invalid/v1/models".into()).await;
    assert_eq!(line, "GET http://upstream.invalid/v1/models HTTP/1.1");
    // 127.0.0.1 is in NO_PROXY: sent directly, in origin form.
    let line = first_line(&t, format!("{upstream}/v1/models")).await;
    assert_eq!(line, "GET /v1/models HTTP/1.1");
}
