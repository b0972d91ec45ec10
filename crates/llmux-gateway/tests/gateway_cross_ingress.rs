//! One conversation, five ingress dialects: OpenAI chat, DashScope native, OpenAI Responses,
//! Anthropic Messages and Gemini send the same messages for the same model to the same
//! upstream, whole and streamed. The upstream must receive the same request each time, and the
//! usage records (tokens, cost, key, model, channel) and the key's limits must not care which
//! dialect the request came in.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use llmux_emulator::Vendor;
use serde_json::{json, Value};

const PRICES: &str = "[server.prices.m]\ninput_per_mtok = 1000.0\noutput_per_mtok = 2000.0\n";
const SYSTEM: &str = "You are terse.";
const USER: &str = "hi there";

/// One ingress: its path for a whole and a streamed answer, its request body, and the headers
/// it needs beyond the key.
struct Dialect {
    name: &'static str,
    whole: &'static str,
    stream: &'static str,
    body: fn(bool) -> Value,
    headers: &'static [(&'static str, &'static str)],
    stream_headers: &'static [(&'static str, &'static str)],
}

const DIALECTS: [Dialect; 5] = [
    Dialect {
        name: "openai",
        whole: "/v1/chat/completions",
        stream: "/v1/chat/completions",
        body: |stream| {
            json!({"model": "m", "max_tokens": 64, "stream": stream,
                   "stream_options": if stream { json!({"include_usage": true}) } else { Value::Null },
                   "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}]})
        },
        headers: &[],
        stream_headers: &[],
    },
    Dialect {
        name: "dashscope",
        whole: "/api/v1/services/aigc/text-generation/generation",
        stream: "/api/v1/services/aigc/text-generation/generation",
        body: |stream| {
            json!({"model": "m",
                   "input": {"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}]},
                   "parameters": {"max_tokens": 64, "result_format": "message", "incremental_output": stream}})
        },
        headers: &[],
        stream_headers: &[("X-DashScope-SSE", "enable")],
    },
    Dialect {
        name: "responses",
        whole: "/v1/responses",
        stream: "/v1/responses",
        body: |stream| {
            json!({"model": "m", "instructions": SYSTEM, "input": USER, "max_output_tokens": 64,
                   "stream": stream, "store": false})
        },
        headers: &[],
        stream_headers: &[],
    },
    Dialect {
        name: "anthropic",
        whole: "/v1/messages",
        stream: "/v1/messages",
        body: |stream| {
            json!({"model": "m", "system": SYSTEM, "max_tokens": 64, "stream": stream,
                   "messages": [{"role": "user", "content": USER}]})
        },
        headers: &[("anthropic-version", "2023-06-01")],
        stream_headers: &[("anthropic-version", "2023-06-01")],
    },
    Dialect {
        name: "gemini",
        whole: "/v1beta/models/m:generateContent",
        stream: "/v1beta/models/m:streamGenerateContent?alt=sse",
        body: |_| {
            json!({"systemInstruction": {"parts": [{"text": SYSTEM}]},
                   "contents": [{"role": "user", "parts": [{"text": USER}]}],
                   "generationConfig": {"maxOutputTokens": 64}})
        },
        headers: &[],
        stream_headers: &[],
    },
];

async fn send(gw: &Harness, key: &str, d: &Dialect, stream: bool) -> reqwest::Response {
    let path = if stream { d.stream } else { d.whole };
    let mut req = gw
        .http
        .post(format!("{}{path}", gw.url))
        .bearer_auth(key)
        .json(&(d.body)(stream));
    for (k, v) in if stream { d.stream_headers } else { d.headers } {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

/// The upstream request without what only says whether to stream.
fn upstream_request(body: &[u8]) -> Value {
    let mut v: Value = serde_json::from_slice(body).unwrap();
    let o = v.as_object_mut().unwrap();
    o.remove("stream");
    o.remove("stream_options");
    v
}

on_both_stores!(the_same_conversation_is_recorded_and_limited_alike_through_every_ingress);

async fn the_same_conversation_is_recorded_and_limited_alike_through_every_ingress(database: &str) {
    let oa = emulator(Vendor::OpenAi).await;
    let gw = start_with_database(
        database,
        &format!("{PRICES}\n{}", channel("oa", "openai", &oa, "[\"m\"]", "")),
    )
    .await;
    let (key, id) = create_key(&gw, json!({"name": "every dialect", "rpm": 10})).await;

    for d in &DIALECTS {
        for stream in [false, true] {
            let resp = send(&gw, &key, d, stream).await;
            assert_eq!(resp.status(), 200, "{} stream={stream}", d.name);
            let text = resp.text().await.unwrap();
            // Every dialect carried the whole answer ("You said: hi there"), however framed.
            for piece in ["You", "said:", "hi", "there"] {
                assert!(text.contains(piece), "{} stream={stream}: {text}", d.name);
            }
        }
    }

    // The upstream saw one request, ten times.
    let sent: Vec<Value> = oa
        .requests()
        .iter()
        .map(|r| upstream_request(&r.body))
        .collect();
    assert_eq!(sent.len(), 10);
    for (i, s) in sent.iter().enumerate() {
        assert_eq!(
            *s,
            sent[0],
            "{} (stream={}) sent another upstream request",
            DIALECTS[i / 2].name,
            i % 2 == 1
        );
    }

    // Ten records that differ only in identity, timing and the stream flag.
    let recs = records(&gw, 10).await;
    let first = &recs[0];
    assert!(
        first.input_tokens > 0 && first.output_tokens > 0,
        "{first:?}"
    );
    assert!(first.cost > 0.0, "{first:?}");
    for r in &recs {
        assert_eq!(r.key_id, Some(id), "{r:?}");
        assert_eq!(
            (
                r.channel.as_str(),
                r.provider.as_str(),
                r.model.as_str(),
                r.upstream_model.as_str()
            ),
            ("oa", "openai", "m", "m"),
            "{r:?}"
        );
        assert_eq!(
            (
                r.input_tokens,
                r.output_tokens,
                r.cached_tokens,
                r.reasoning_tokens
            ),
            (
                first.input_tokens,
                first.output_tokens,
                first.cached_tokens,
                first.reasoning_tokens
            ),
            "{r:?}"
        );
        assert!((r.cost - first.cost).abs() < 1e-12, "{r:?}");
        assert_eq!(
            (r.status, r.error_kind.as_deref(), r.cancelled),
            (200, None, false),
            "{r:?}"
        );
    }
    assert_eq!(recs.iter().filter(|r| r.stream).count(), 5);

    // The key spent exactly the ten records, and its RPM of 10 counted every dialect: the next
    // request is refused whichever dialect sends it, each in its own format.
    let keys = admin_json(&gw, "/admin/keys").await;
    let k = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id)
        .unwrap()
        .clone();
    assert_eq!(k["spent_tokens"], 10 * first.billed_tokens(), "{k}");
    assert!(
        (k["spent_cost"].as_f64().unwrap() - 10.0 * first.cost).abs() < 1e-9,
        "{k}"
    );
    for d in &DIALECTS {
        let resp = send(&gw, &key, d, false).await;
        assert_eq!(resp.status(), 429, "{}", d.name);
        assert!(resp.headers().get("retry-after").is_some(), "{}", d.name);
        let body: Value = resp.json().await.unwrap();
        let said = match d.name {
            "dashscope" => body["code"].clone(),
            "anthropic" => body["error"]["type"].clone(),
            "gemini" => body["error"]["status"].clone(),
            _ => body["error"]["code"].clone(),
        };
        let expected = match d.name {
            "dashscope" => "Throttling.RateQuota",
            "anthropic" => "rate_limit_error",
            "gemini" => "RESOURCE_EXHAUSTED",
            _ => "rate_limit_exceeded",
        };
        assert_eq!(said, expected, "{}: {body}", d.name);
    }
    assert_eq!(
        oa.requests().len(),
        10,
        "refused requests never reached the upstream"
    );
    assert_eq!(records(&gw, 10).await.len(), 10, "and were not recorded");
}
