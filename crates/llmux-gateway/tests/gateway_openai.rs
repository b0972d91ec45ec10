//! OpenAI ingress end to end: chat (non-stream, stream with and without usage, tools),
//! embeddings (float and base64), models, request ids, and DashScope, Anthropic, Gemini and
//! DashScope Anthropic-compatible upstreams behind it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use base64::Engine;
use common::*;
use serde_json::{json, Value};

fn weather_tool() -> Value {
    json!([{"type":"function","function":{"name":"get_weather","description":"Weather",
        "parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}])
}

#[tokio::test]
async fn non_stream_chat_has_the_openai_shape_and_headers() {
    let (gw, _oa, _ds) = standard().await;
    let resp = gw
        .post("/v1/chat/completions")
        .header("x-request-id", "my-req-1")
        .json(&json!({"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi there"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-request-id"], "my-req-1");
    let added: f64 = resp.headers()["x-llmux-added-latency-ms"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(added >= 0.0);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "gpt-4o-mini");
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert!(body["created"].is_i64());
    let choice = &body["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["message"]["content"], "You said: hi there");
    assert_eq!(choice["finish_reason"], "stop");
    assert!(choice["logprobs"].is_null());
    let u = &body["usage"];
    assert_eq!(
        u["total_tokens"].as_u64().unwrap(),
        u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap()
    );
    assert!(u["prompt_tokens_details"]["cached_tokens"].is_u64());
}

#[tokio::test]
async fn request_ids_are_generated_when_absent() {
    let (gw, _oa, _ds) = standard().await;
    let resp = gw
        .post("/v1/chat/completions")
        .json(&json!({"model":"gpt-4o-mini","messages":[{"role":"user","content":"x"}]}))
        .send()
        .await
        .unwrap();
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(id.len(), 36, "{id}");
}

async fn stream_body(gw: &Harness, body: Value) -> (reqwest::header::HeaderMap, String) {
    let resp = gw
        .post("/v1/chat/completions")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let headers = resp.headers().clone();
    (headers, resp.text().await.unwrap())
}

#[tokio::test]
async fn stream_without_usage_has_role_chunk_pieces_finish_and_done() {
    let (gw, _oa, _ds) = standard().await;
    let (headers, text) = stream_body(
        &gw,
        json!({"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi there"}]}),
    )
    .await;
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let (chunks, done) = openai_chunks(&text);
    assert!(done, "{text}");
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role":"assistant","content":""})
    );
    let id = &chunks[0]["id"];
    let mut content = String::new();
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(&c["id"], id);
        assert_eq!(c["created"], chunks[0]["created"]);
        assert_eq!(c["model"], "gpt-4o-mini");
        assert!(c.get("usage").is_none());
        if let Some(t) = c["choices"][0]["delta"]["content"].as_str() {
            content.push_str(t);
        }
    }
    assert_eq!(content, "You said: hi there");
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert_eq!(last["choices"][0]["delta"], json!({}));
}

#[tokio::test]
async fn stream_with_include_usage_ends_with_a_usage_chunk() {
    let (gw, _oa, _ds) = standard().await;
    let (_, text) = stream_body(
        &gw,
        json!({"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},
               "messages":[{"role":"user","content":"hi"}]}),
    )
    .await;
    let (chunks, done) = openai_chunks(&text);
    assert!(done);
    let (last, rest) = chunks.split_last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert!(last["usage"]["total_tokens"].as_u64().unwrap() > 0);
    for c in rest {
        assert!(c.get("usage").is_some_and(Value::is_null), "{c}");
    }
    assert_eq!(rest.last().unwrap()["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn tools_non_stream_and_stream() {
    let (gw, _oa, _ds) = standard().await;
    let resp: Value = gw
        .post("/v1/chat/completions")
        .json(&json!({"model":"gpt-4o-mini","tools":weather_tool(),
                      "messages":[{"role":"user","content":"Paris"}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let msg = &resp["choices"][0]["message"];
    assert!(msg["content"].is_null());
    assert_eq!(msg["tool_calls"][0]["type"], "function");
    assert_eq!(msg["tool_calls"][0]["function"]["name"], "get_weather");
    let args: Value = serde_json::from_str(
        msg["tool_calls"][0]["function"]["arguments"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(args["city"], "Paris");
    assert_eq!(resp["choices"][0]["finish_reason"], "tool_calls");

    let (_, text) = stream_body(
        &gw,
        json!({"model":"gpt-4o-mini","stream":true,"tools":weather_tool(),
               "messages":[{"role":"user","content":"Paris"}]}),
    )
    .await;
    let (chunks, done) = openai_chunks(&text);
    assert!(done);
    let mut args = String::new();
    let mut first = None;
    for c in &chunks {
        if let Some(tc) = c["choices"][0]["delta"]["tool_calls"].get(0) {
            assert_eq!(tc["index"], 0);
            if first.is_none() {
                first = Some(tc.clone());
            } else {
                assert!(tc.get("id").is_none());
            }
            args.push_str(tc["function"]["arguments"].as_str().unwrap());
        }
    }
    let first = first.unwrap();
    assert_eq!(first["type"], "function");
    assert_eq!(first["function"]["name"], "get_weather");
    assert!(first["id"].as_str().unwrap().starts_with("call_"));
    let parsed: Value = serde_json::from_str(&args).unwrap();
    assert_eq!(parsed["city"], "Paris");
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "tool_calls"
    );
}

#[tokio::test]
async fn embeddings_float_and_base64_agree() {
    let (gw, _oa, _ds) = standard().await;
    let float: Value = gw
        .post("/v1/embeddings")
        .json(&json!({"model":"text-embedding-3-small","input":["hello","world"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(float["object"], "list");
    assert_eq!(float["model"], "text-embedding-3-small");
    assert_eq!(float["data"][1]["index"], 1);
    assert_eq!(float["data"][0]["object"], "embedding");
    assert!(float["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    let v: Vec<f32> = serde_json::from_value(float["data"][0]["embedding"].clone()).unwrap();
    assert_eq!(v.len(), 1536);

    let b64: Value = gw
        .post("/v1/embeddings")
        .json(&json!({"model":"text-embedding-3-small","input":"hello","encoding_format":"base64"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let decoded: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(decoded, v);
}

#[tokio::test]
async fn models_lists_public_names_and_unknown_is_404() {
    let (gw, _oa, _ds) = standard().await;
    let list: Value = gw
        .get("/v1/models")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["object"], "list");
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "gpt-4o-mini",
            "qwen-plus",
            "text-embedding-3-small",
            "text-embedding-v3"
        ]
    );
    assert_eq!(list["data"][1]["object"], "model");
    assert_eq!(list["data"][1]["owned_by"], "dashscope");
    let one = gw.get("/v1/models/qwen-plus").send().await.unwrap();
    assert_eq!(one.status(), 200);
    let missing = gw.get("/v1/models/nope").send().await.unwrap();
    assert_eq!(missing.status(), 404);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["code"], "model_not_found");
}

#[tokio::test]
async fn a_dashscope_upstream_serves_the_openai_ingress() {
    let (gw, _oa, ds) = standard().await;
    let body: Value = gw
        .post("/v1/chat/completions")
        .json(&json!({"model":"qwen-plus","messages":[{"role":"user","content":"你好"}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "You said: 你好");
    assert_eq!(body["model"], "qwen-plus");
    let (_, text) = stream_body(
        &gw,
        json!({"model":"qwen-plus","stream":true,"stream_options":{"include_usage":true},
               "messages":[{"role":"user","content":"hi there"}]}),
    )
    .await;
    let (chunks, done) = openai_chunks(&text);
    assert!(done);
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, "You said: hi there");
    assert!(
        chunks.last().unwrap()["usage"]["completion_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );
    // The upstream saw the native protocol.
    let reqs = ds.requests();
    assert!(
        reqs.iter().all(|r| r.path.contains("text-generation")),
        "{:?}",
        reqs.iter().map(|r| &r.path).collect::<Vec<_>>()
    );
    // And embeddings through the native embeddings path.
    let emb: Value = gw
        .post("/v1/embeddings")
        .json(&json!({"model":"text-embedding-v3","input":["a","b"],"encoding_format":"base64"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(emb["data"].as_array().unwrap().len(), 2);
    assert!(emb["data"][0]["embedding"].is_string());
}

#[tokio::test]
async fn a_mid_stream_upstream_error_becomes_a_final_error_chunk() {
    let (gw, oa, _ds) = standard().await;
    oa.push_fault(llmux_emulator::Fault::once(
        llmux_emulator::FaultKind::ErrorEvent { after: 2 },
    ));
    let (_, text) = stream_body(
        &gw,
        json!({"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"one two three four five"}]}),
    )
    .await;
    let (chunks, done) = openai_chunks(&text);
    assert!(!done, "{text}");
    let last = chunks.last().unwrap();
    assert!(last["error"]["message"].is_string(), "{last}");
    assert!(last["error"]["type"].is_string());
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
}

#[tokio::test]
async fn anthropic_gemini_and_dashscope_anthropic_upstreams_answer_behind_the_openai_ingress() {
    let an = emulator(llmux_emulator::Vendor::Anthropic).await;
    let gm = emulator(llmux_emulator::Vendor::Gemini).await;
    let ds = emulator(llmux_emulator::Vendor::DashScope).await;
    let text = format!(
        "{}{}{}",
        channel("an", "anthropic", &an, "[\"claude-sonnet-4-6\"]", ""),
        channel("gm", "gemini", &gm, "[\"gemini-2.5-flash\"]", ""),
        channel("dsa", "dashscope-anthropic", &ds, "[\"qwen-plus\"]", ""),
    );
    let gw = start_with_store(&text).await;
    for model in ["claude-sonnet-4-6", "gemini-2.5-flash", "qwen-plus"] {
        let resp = gw
            .post("/v1/chat/completions")
            .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi there"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{model}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(
            body["choices"][0]["message"]["content"], "You said: hi there",
            "{model}"
        );
        assert!(
            body["usage"]["completion_tokens"].as_u64().unwrap() > 0,
            "{model}"
        );

        let (_, text) = stream_body(
            &gw,
            json!({"model": model, "stream": true, "stream_options": {"include_usage": true},
                   "messages": [{"role": "user", "content": "hi there"}]}),
        )
        .await;
        let (chunks, done) = openai_chunks(&text);
        assert!(done, "{model}: {text}");
        let content: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(content, "You said: hi there", "{model}");
        assert!(
            chunks.last().unwrap()["usage"]["total_tokens"]
                .as_u64()
                .unwrap()
                > 0
        );

        // A tool call comes back in OpenAI's shape.
        let resp = gw
            .post("/v1/chat/completions")
            .json(&json!({"model": model, "tools": weather_tool(),
                          "messages": [{"role": "user", "content": "Hangzhou"}]}))
            .send()
            .await
            .unwrap();
        let body: Value = resp.json().await.unwrap();
        let choice = &body["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls", "{model}: {body}");
        let call = &choice["message"]["tool_calls"][0];
        assert_eq!(call["function"]["name"], "get_weather");
        let args: Value =
            serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(args["city"], "Hangzhou", "{model}");
    }
    // One usage record per request, under the provider that served it.
    let recs = records(&gw, 9).await;
    for provider in ["anthropic", "gemini", "dashscope-anthropic"] {
        let of: Vec<_> = recs.iter().filter(|r| r.provider == provider).collect();
        assert_eq!(of.len(), 3, "{provider}");
        assert!(of.iter().all(|r| r.input_tokens > 0 && r.output_tokens > 0));
    }
    assert_eq!(
        an.requests()[0].header("anthropic-version"),
        Some("2023-06-01")
    );
    assert!(gm.requests()[0].header("x-goog-api-key").is_some());
    assert!(ds.requests()[0].path.starts_with("/apps/anthropic/"));
}

#[tokio::test]
async fn issue_14_an_idle_upstream_gets_keep_alive_pings_between_its_frames() {
    let oa = emulator(llmux_emulator::Vendor::OpenAi).await;
    // `keepalive` lands in `[server]`, before the channel's table.
    let gw = start(&format!(
        "keepalive = \"40ms\"\n{}",
        channel("oa", "openai", &oa, "[\"gpt-4o-mini\"]", "")
    ))
    .await;
    let ask = json!({"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"one two three four"}]});
    // A pause of ten keep-alive intervals after the second frame: pings, then the rest.
    oa.push_fault(llmux_emulator::Fault::once(
        llmux_emulator::FaultKind::IdleAfter {
            after: 2,
            pause: std::time::Duration::from_millis(400),
        },
    ));
    let (_, idle) = stream_body(&gw, ask).await;
    assert!(idle.contains(": ping\n\n"), "{idle}");
    let (chunks, done) = openai_chunks(&idle);
    assert!(done, "{idle}");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "You said: one two three four");
    // The pings came during the pause: after the first content and before the finish.
    let first = idle.find("\"content\":\"You").unwrap();
    let ping = idle.find(": ping").unwrap();
    let finish = idle.find("\"finish_reason\":\"stop\"").unwrap();
    assert!(first < ping && ping < finish, "{idle}");
}

#[tokio::test]
async fn issue_14_a_long_stream_arrives_whole_and_in_order() {
    // Far more frames than one body chunk of the gateway joins (16 KiB): many wake-ups' worth.
    let (gw, _oa, _ds) = standard().await;
    let words: Vec<String> = (0..3000).map(|i| format!("w{i}")).collect();
    let prompt = words.join(" ");
    let (_, text) = stream_body(
        &gw,
        json!({"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},
               "messages":[{"role":"user","content":prompt}]}),
    )
    .await;
    let (chunks, done) = openai_chunks(&text);
    assert!(done, "{}", &text[text.len().saturating_sub(300)..]);
    assert!(text.len() > 64 * 1024, "{}", text.len());
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"].get(0)?["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, format!("You said: {prompt}"));
    assert!(
        chunks.last().unwrap()["usage"]["total_tokens"]
            .as_u64()
            .unwrap()
            > 3000
    );
}

/// The bytes of a chunked HTTP/1.1 body as its chunks' data, in order.
fn chunked_parts(mut body: &[u8]) -> Vec<Vec<u8>> {
    let mut parts = Vec::new();
    loop {
        let line_end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("a chunk-size line");
        let size =
            usize::from_str_radix(std::str::from_utf8(&body[..line_end]).unwrap().trim(), 16)
                .expect("a hex chunk size");
        body = &body[line_end + 2..];
        if size == 0 {
            return parts;
        }
        parts.push(body[..size].to_vec());
        assert_eq!(&body[size..size + 2], b"\r\n");
        body = &body[size + 2..];
    }
}

#[tokio::test]
async fn issue_14_an_upstream_answer_read_at_once_reaches_the_client_in_one_chunk() {
    // An upstream that writes its whole 20-event stream with one write, one HTTP chunk per event
    // as the vendors send it. hyper hands the gateway the chunks one at a time, but the frames
    // ready by the end of the runtime's turn go out together, with the response head: read on a
    // raw socket, the gateway's chunked body is one chunk (it was one per event).
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_addr = upstream.local_addr().unwrap();
    let chunk = |delta: &str, tail: &str| {
        format!("data: {{\"id\":\"chatcmpl-up\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"gpt-4o-mini\",\"choices\":[{{\"index\":0,\"delta\":{delta},\"finish_reason\":{tail}}}]}}\n\n")
    };
    let mut events = vec![chunk(r#"{"role":"assistant","content":""}"#, "null")];
    events.extend((0..18).map(|i| chunk(&format!(r#"{{"content":"tok{i} "}}"#), "null")));
    events.push(chunk("{}", "\"stop\"").replace(
        "}]}\n\n",
        "}],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":18,\"total_tokens\":23}}\n\n",
    ));
    events.push("data: [DONE]\n\n".to_owned());
    let mut answer =
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
            .to_vec();
    for e in &events {
        answer.extend_from_slice(format!("{:x}\r\n{e}\r\n", e.len()).as_bytes());
    }
    answer.extend_from_slice(b"0\r\n\r\n");
    tokio::spawn(async move {
        let (mut sock, _) = upstream.accept().await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        // The request: its head, then as many body bytes as it declares.
        loop {
            let n = sock.read(&mut buf).await.unwrap();
            assert!(n > 0, "the gateway closed before its request was complete");
            got.extend_from_slice(&buf[..n]);
            let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if got.len() >= end + 4 + len {
                break;
            }
        }
        sock.write_all(&answer).await.unwrap();
        let _ = sock.read(&mut buf).await;
    });
    let gw = start(&format!(
        "[[channels]]\nname = \"raw\"\nprovider = \"openai\"\napi_key = \"sk-up\"\nbase_url = \"http://{up_addr}/v1\"\nmodels = [\"gpt-4o-mini\"]\n"
    ))
    .await;
    let body =
        json!({"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]})
            .to_string();
    let mut client = tokio::net::TcpStream::connect(gw.url.trim_start_matches("http://"))
        .await
        .unwrap();
    client
        .write_all(
            format!(
                "POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {KEY}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut raw = Vec::new();
    client.read_to_end(&mut raw).await.unwrap();
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    let parts = chunked_parts(&raw[end + 4..]);
    let text = String::from_utf8(parts.concat()).unwrap();
    let (chunks, done) = openai_chunks(&text);
    assert!(done, "{text}");
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"].get(0)?["delta"]["content"].as_str())
        .collect();
    let want: String = (0..18).map(|i| format!("tok{i} ")).collect();
    assert_eq!(content, want);
    assert_eq!(
        parts.len(),
        1,
        "one body chunk, got {}: {text}",
        parts.len()
    );
}
