//! Every answer is in the ingress protocol's format (issue 13, item 8): axum's rejections
//! (405, the admin body limit's 413, unparsable path and query values) and hyper's refusals of
//! unparsable heads (431 for big or many header fields, 400 for a bad `Content-Length` or
//! request line), on the OpenAI, Anthropic and DashScope ingresses and the admin API.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CHAT: &str = "/v1/chat/completions";
const GEN: &str = "/api/v1/services/aigc/text-generation/generation";
const MESSAGES: &str = "/v1/messages";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Shape {
    OpenAi,
    DashScope,
    Anthropic,
}

fn shape_of(path: &str) -> Shape {
    if path.starts_with("/api/") {
        Shape::DashScope
    } else if path.starts_with("/v1/messages") {
        Shape::Anthropic
    } else {
        // /v1 and /admin share the OpenAI envelope.
        Shape::OpenAi
    }
}

/// Asserts the body is the error shape of `shape`; returns its code.
fn assert_shape(shape: Shape, v: &Value) -> String {
    match shape {
        Shape::OpenAi => {
            let e = &v["error"];
            assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
            assert!(e["type"].is_string(), "{v}");
            assert!(e.get("param").is_some(), "{v}");
            e["code"].as_str().unwrap_or("").to_owned()
        }
        Shape::DashScope => {
            assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
            assert!(v["request_id"].is_string(), "{v}");
            v["code"].as_str().unwrap().to_owned()
        }
        Shape::Anthropic => {
            assert_eq!(v["type"], "error", "{v}");
            let e = &v["error"];
            assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
            assert!(v["request_id"].is_string(), "{v}");
            e["type"].as_str().unwrap().to_owned()
        }
    }
}

async fn check(resp: reqwest::Response, status: u16, shape: Shape) -> Value {
    assert_eq!(resp.status().as_u16(), status);
    assert!(
        resp.headers()
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json")),
        "{:?}",
        resp.headers()
    );
    let v: Value = resp.json().await.unwrap();
    assert_shape(shape, &v);
    v
}

#[tokio::test]
async fn issue_13_method_not_allowed_is_json_on_every_ingress() {
    let gw = start("").await;
    for (method, path) in [
        (reqwest::Method::DELETE, CHAT),
        (reqwest::Method::GET, GEN),
        (reqwest::Method::PUT, "/admin/keys"),
        (reqwest::Method::POST, "/v1/models"),
        (reqwest::Method::GET, MESSAGES),
        (reqwest::Method::PUT, "/v1/messages/count_tokens"),
    ] {
        let resp = gw
            .http
            .request(method.clone(), format!("{}{path}", gw.url))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap();
        assert!(resp.headers().contains_key("allow"), "{method} {path}");
        let v = check(resp, 405, shape_of(path)).await;
        let code = assert_shape(shape_of(path), &v);
        let want = match shape_of(path) {
            Shape::OpenAi => "method_not_allowed",
            Shape::DashScope => "MethodNotAllowed",
            Shape::Anthropic => "invalid_request_error",
        };
        assert_eq!(code, want, "{v}");
    }
}

/// Paths no route serves answer in the envelope their prefix claims (longest prefix wins).
#[tokio::test]
async fn unknown_paths_answer_in_the_envelope_of_their_prefix() {
    let gw = start("").await;
    for (path, shape, status, code) in [
        ("/v1/nope", Shape::OpenAi, 404, "unknown_url"),
        (
            "/v1/messages/batches",
            Shape::Anthropic,
            404,
            "not_found_error",
        ),
        ("/api/v2/x", Shape::DashScope, 400, "InvalidURL"),
        ("/elsewhere", Shape::OpenAi, 404, "unknown_url"),
    ] {
        let resp = gw.get(path).send().await.unwrap();
        let anthropic = shape == Shape::Anthropic;
        assert_eq!(
            resp.headers().contains_key("request-id"),
            anthropic,
            "{path}"
        );
        let v = check(resp, status, shape).await;
        assert_eq!(assert_shape(shape, &v), code, "{path}: {v}");
    }
}

#[tokio::test]
async fn issue_13_admin_extractor_rejections_are_json() {
    let gw = start_with_store("").await;
    let admin = |m: reqwest::Method, p: &str| {
        gw.http
            .request(m, format!("{}{p}", gw.url))
            .bearer_auth(ADMIN)
    };
    // A path value that is not an id.
    let v = check(
        admin(reqwest::Method::PATCH, "/admin/keys/abc")
            .body("{}")
            .send()
            .await
            .unwrap(),
        400,
        Shape::OpenAi,
    )
    .await;
    assert!(
        v["error"]["message"].as_str().unwrap().contains("abc"),
        "{v}"
    );
    check(
        admin(reqwest::Method::DELETE, "/admin/keys/abc")
            .send()
            .await
            .unwrap(),
        400,
        Shape::OpenAi,
    )
    .await;
    // A query that does not deserialize.
    check(
        admin(reqwest::Method::GET, "/admin/usage?by=key&by=model")
            .send()
            .await
            .unwrap(),
        400,
        Shape::OpenAi,
    )
    .await;
    // The admin body limit ("Failed to buffer the request body").
    let v = check(
        admin(reqwest::Method::POST, "/admin/keys")
            .header("content-type", "application/json")
            .body(vec![b' '; 3 * 1024 * 1024])
            .send()
            .await
            .unwrap(),
        413,
        Shape::OpenAi,
    )
    .await;
    assert_eq!(v["error"]["code"], "request_too_large");
}

/// Sends `raw` on a fresh connection and reads until the gateway closes it.
async fn raw_exchange(addr: SocketAddr, raw: &[u8]) -> (u16, String, Value) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(raw).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got))
        .await
        .expect("the gateway answers and closes")
        .unwrap();
    let text = String::from_utf8_lossy(&got).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head: {text:?}"));
    let status = head[9..12].parse().unwrap();
    let body = serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, head.to_owned(), body)
}

#[tokio::test]
async fn issue_13_hyper_refusals_are_json_in_the_ingress_format() {
    let text = config_text("").replace(
        "max_body_bytes = 65536\n",
        "max_body_bytes = 65536\nmax_header_bytes = 16384\n",
    );
    let raw = llmux_gateway::RawConfig::parse(&text, Vec::new()).unwrap();
    let gw = start_config(llmux_gateway::Config::resolve(raw, |_| None).unwrap()).await;
    let addr: SocketAddr = gw.url.trim_start_matches("http://").parse().unwrap();
    for path in [CHAT, GEN, MESSAGES, "/admin/keys"] {
        let shape = shape_of(path);
        // A head over max_header_bytes (exactly the buffer, so nothing is left unread).
        let mut big = format!("POST {path} HTTP/1.1\r\nHost: x\r\nX-Big: ").into_bytes();
        big.resize(16384, b'a');
        let (status, head, v) = raw_exchange(addr, &big).await;
        assert_eq!(status, 431, "{path}: {v}");
        assert!(head.contains("x-request-id:"), "{head}");
        assert_eq!(
            head.contains("\r\nrequest-id: "),
            shape == Shape::Anthropic,
            "{head}"
        );
        let code = assert_shape(shape, &v);
        let want = match shape {
            Shape::OpenAi => "request_header_fields_too_large",
            Shape::DashScope => "BadRequest.TooLarge",
            Shape::Anthropic => "invalid_request_error",
        };
        assert_eq!(code, want, "{v}");
        // More than 100 header fields.
        let mut many = format!("GET {path} HTTP/1.1\r\nHost: x\r\n");
        for i in 0..120 {
            many.push_str(&format!("X-H{i}: v\r\n"));
        }
        many.push_str("\r\n");
        let (status, _, v) = raw_exchange(addr, many.as_bytes()).await;
        assert_eq!(status, 431, "{path}: {v}");
        assert_shape(shape, &v);
        // A Content-Length that is not a number.
        let bad_len = format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n");
        let (status, _, v) = raw_exchange(addr, bad_len.as_bytes()).await;
        assert_eq!(status, 400, "{path}: {v}");
        assert_shape(shape, &v);
    }
    // A request line that is not HTTP: OpenAI's format (the default ingress).
    let (status, _, v) = raw_exchange(addr, b"NOT A REQUEST\r\n\r\n").await;
    assert_eq!(status, 400, "{v}");
    assert_shape(Shape::OpenAi, &v);
    // The gateway still serves.
    assert_eq!(gw.get("/healthz").send().await.unwrap().status(), 200);
}
