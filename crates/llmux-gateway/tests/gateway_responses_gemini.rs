//! The Responses and Gemini ingresses over HTTP, for what the SDK suites do not reach: Gemini's
//! JSON-array stream (no `alt=sse`), upstream failures after the first event (Responses' `error`
//! and `response.failed` events, Gemini's last error chunk) and how they are recorded, the
//! key forms Google's clients use, a hostile model path, and the errors raised before routing
//! (unknown methods, wrong HTTP methods, oversized bodies) in each dialect's own envelope.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use llmux_emulator::{Emulator, Fault, FaultKind, Vendor};
use serde_json::{json, Value};

const GENERATE: &str = "/v1beta/models/m:generateContent";
const STREAM: &str = "/v1beta/models/m:streamGenerateContent";

fn gemini_body() -> Value {
    json!({"contents": [{"role": "user", "parts": [{"text": "hi there"}]}]})
}

async fn gateway() -> (Harness, Emulator) {
    let oa = emulator(Vendor::OpenAi).await;
    let gw = start_with_store(&channel("oa", "openai", &oa, "[\"m\"]", "")).await;
    (gw, oa)
}

/// Google's envelope with `code` and `status`; returns the message.
fn google(v: &Value, code: u16, status: &str) -> String {
    assert_eq!(v["error"]["code"], code, "{v}");
    assert_eq!(v["error"]["status"], status, "{v}");
    v["error"]["message"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn gemini_streams_a_json_array_without_alt_sse() {
    let (gw, _oa) = gateway().await;
    let resp = gw.post(STREAM).json(&gemini_body()).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let chunks: Value = resp.json().await.unwrap();
    let chunks = chunks.as_array().unwrap();
    let text: String = chunks
        .iter()
        .filter_map(|c| c["candidates"][0]["content"]["parts"][0]["text"].as_str())
        .collect();
    assert_eq!(text, "You said: hi there");
    let last = chunks.last().unwrap();
    assert_eq!(last["candidates"][0]["finishReason"], "STOP");
    assert_eq!(last["usageMetadata"]["candidatesTokenCount"], 4);
    assert!(chunks.iter().all(|c| c["modelVersion"] == "m"));
    let recs = records(&gw, 1).await;
    assert!(recs[0].stream && recs[0].status == 200, "{recs:?}");
    assert_eq!(recs[0].output_tokens, 4);
}

#[tokio::test]
async fn an_upstream_failure_after_the_first_event_ends_each_stream_in_its_dialect() {
    let (gw, oa) = gateway().await;
    // Role chunk and "You " reach the gateway, then the upstream's error event.
    oa.push_fault(Fault::always(FaultKind::ErrorEvent { after: 2 }));

    // Responses: an `error` event, then `response.failed` with what was said so far.
    let body = gw
        .post("/v1/responses")
        .json(&json!({"model": "m", "input": "hi there", "stream": true}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events: Vec<(String, Value)> = sse_events(&body)
        .iter()
        .map(|e| {
            let name = e.lines().next().unwrap().strip_prefix("event: ").unwrap();
            (
                name.to_owned(),
                serde_json::from_str(data_of(e).unwrap()).unwrap(),
            )
        })
        .collect();
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names[0], "response.created", "{body}");
    assert!(names.contains(&"response.output_text.delta"), "{body}");
    assert_eq!(
        names[names.len() - 2..],
        ["error", "response.failed"],
        "{body}"
    );
    let failed = &events.last().unwrap().1["response"];
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["error"]["code"], "server_error", "{failed}");
    assert_eq!(
        failed["output"][0]["content"][0]["text"], "You ",
        "{failed}"
    );
    assert!(events
        .iter()
        .enumerate()
        .all(|(i, (_, d))| d["sequence_number"] == i as u64));

    // Gemini with alt=sse: a last chunk holding Google's error object.
    let body = gw
        .post(&format!("{STREAM}?alt=sse"))
        .json(&gemini_body())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // Gemini separates its events with CRLF pairs, as Google's servers do.
    assert!(body.ends_with("}\r\n\r\n"), "{body}");
    let chunks: Vec<Value> = sse_events(&body.replace("\r\n", "\n"))
        .iter()
        .map(|e| serde_json::from_str(data_of(e).unwrap()).unwrap())
        .collect();
    assert_eq!(
        chunks[0]["candidates"][0]["content"]["parts"][0]["text"],
        "You "
    );
    let last = chunks.last().unwrap();
    let message = google(last, 502, "UNAVAILABLE");
    assert!(message.contains("the upstream failed"), "{message}");

    // Gemini without alt=sse: the array still closes, its last element the error.
    let resp = gw.post(STREAM).json(&gemini_body()).send().await.unwrap();
    let chunks: Value = resp.json().await.unwrap();
    let last = chunks.as_array().unwrap().last().unwrap();
    google(last, 502, "UNAVAILABLE");

    // Each failed stream is recorded once, as failed after the start.
    let recs = records(&gw, 3).await;
    for r in &recs {
        assert!(r.stream, "{r:?}");
        assert_eq!(r.error_kind.as_deref(), Some("upstream_server"), "{r:?}");
        assert_eq!(r.status, 502, "{r:?}");
    }
}

#[tokio::test]
async fn google_clients_send_the_key_in_a_header_or_the_query() {
    let (gw, oa) = gateway().await;
    let url = format!("{}{GENERATE}", gw.url);
    for req in [
        gw.http.post(&url).header("x-goog-api-key", KEY),
        gw.http.post(format!("{url}?key={KEY}")),
        gw.http.post(&url).bearer_auth(KEY),
    ] {
        let resp = req.json(&gemini_body()).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(
            v["candidates"][0]["content"]["parts"][0]["text"],
            "You said: hi there"
        );
    }
    for req in [
        gw.http.post(&url),
        gw.http.post(&url).header("x-goog-api-key", "wrong"),
        gw.http.post(format!("{url}?key=wrong")),
    ] {
        let resp = req.json(&gemini_body()).send().await.unwrap();
        assert_eq!(resp.status(), 401);
        let v: Value = resp.json().await.unwrap();
        google(&v, 401, "UNAUTHENTICATED");
    }
    assert_eq!(oa.requests().len(), 3);
}

#[tokio::test]
async fn gemini_methods_are_served_under_v1_too_the_sdks_default_version() {
    let (gw, oa) = gateway().await;
    let resp = gw
        .post("/v1/models/m:generateContent")
        .header("x-goog-api-key", KEY)
        .json(&gemini_body())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        v["candidates"][0]["content"]["parts"][0]["text"],
        "You said: hi there"
    );
    let resp = gw
        .post("/v1/models/m:streamGenerateContent?alt=sse")
        .header("x-goog-api-key", KEY)
        .json(&gemini_body())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let body = resp.text().await.unwrap();
    assert!(body.contains("\"finishReason\":\"STOP\""), "{body}");
    // An unknown method there is Google's 404, and GET keeps the OpenAI model lookup.
    let resp = gw
        .post("/v1/models/m:embedEverything")
        .json(&gemini_body())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    google(&resp.json::<Value>().await.unwrap(), 404, "NOT_FOUND");
    let resp = gw.get("/v1/models/m").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["object"], "model");
    assert_eq!(oa.requests().len(), 2);
}

#[tokio::test]
async fn hostile_gemini_paths_are_refused_in_googles_envelope() {
    let (gw, oa) = gateway().await;
    let long = "a".repeat(300);
    for (path, status, google_status, needle) in [
        (
            format!("/v1beta/models/{long}:generateContent"),
            400,
            "INVALID_ARGUMENT",
            "256 bytes",
        ),
        (
            "/v1beta/models/a%20b:generateContent".into(),
            400,
            "INVALID_ARGUMENT",
            "spaces",
        ),
        (
            "/v1beta/models/a%00b:generateContent".into(),
            400,
            "INVALID_ARGUMENT",
            "control",
        ),
        (
            "/v1beta/models/m:embedContent".into(),
            404,
            "NOT_FOUND",
            "generateContent",
        ),
        ("/v1beta/models/m".into(), 404, "NOT_FOUND", "method"),
        (
            "/v1beta/models/unknown:generateContent".into(),
            404,
            "NOT_FOUND",
            "unknown",
        ),
        ("/v1beta/files".into(), 404, "NOT_FOUND", "/v1beta/files"),
    ] {
        let resp = gw.post(&path).json(&gemini_body()).send().await.unwrap();
        assert_eq!(resp.status(), status, "{path}");
        let v: Value = resp.json().await.unwrap();
        let message = google(&v, status, google_status);
        assert!(message.contains(needle), "{path}: {message}");
    }
    // A method the path does not take, and a body over the limit.
    let resp = gw.get(GENERATE).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    google(&resp.json().await.unwrap(), 405, "NOT_FOUND");
    let big = json!({"contents": [{"parts": [{"text": "x".repeat(70_000)}]}]});
    let gw_small = start(&channel("oa", "openai", &oa, "[\"m\"]", "")).await;
    let resp = gw_small.post(GENERATE).json(&big).send().await.unwrap();
    assert_eq!(resp.status(), 413);
    google(&resp.json().await.unwrap(), 413, "INVALID_ARGUMENT");
    assert!(oa.requests().is_empty());
}

#[tokio::test]
async fn gemini_count_tokens_checks_the_key_and_model_and_calls_no_upstream() {
    let (gw, oa) = gateway().await;
    let resp = gw
        .post("/v1beta/models/m:countTokens")
        .json(&gemini_body())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    // The gateway's estimate: 4 per message plus ≈ 4 ASCII characters per token.
    assert_eq!(v, json!({"totalTokens": 4 + 2}));
    let resp = gw
        .post("/v1beta/models/other:countTokens")
        .json(&gemini_body())
        .send()
        .await
        .unwrap();
    google(&resp.json().await.unwrap(), 404, "NOT_FOUND");
    assert!(oa.requests().is_empty());
    let recs = gw.state.store.clone().unwrap().usage_count().await.unwrap();
    assert_eq!(recs, 0, "nothing recorded");
}

#[tokio::test]
async fn stored_response_operations_are_404_after_the_key_check() {
    let (gw, oa) = gateway().await;
    for (method, path) in [
        (reqwest::Method::GET, "/v1/responses/resp_123"),
        (reqwest::Method::DELETE, "/v1/responses/resp_123"),
        (reqwest::Method::POST, "/v1/responses/resp_123/cancel"),
        (reqwest::Method::GET, "/v1/responses/resp_123/input_items"),
    ] {
        let url = format!("{}{path}", gw.url);
        let resp = gw.http.request(method.clone(), &url).send().await.unwrap();
        assert_eq!(resp.status(), 401, "{method} {path}");
        let resp = gw
            .http
            .request(method.clone(), &url)
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404, "{method} {path}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["code"], "response_not_found", "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("does not store"),
            "{v}"
        );
    }
    assert!(oa.requests().is_empty());
}
