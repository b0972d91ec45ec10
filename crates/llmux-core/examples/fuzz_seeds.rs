//! Writes the seed corpora of the fuzz targets in `fuzz/` from what the vendors really send:
//! every registered provider's requests go to its emulator (signed, as in production), and the
//! raw bodies that come back (answers, streams, tool calls, embeddings, model lists, and the
//! emulators' injected errors) become seeds in the byte layout each target reads. The SDK
//! captures in `crates/llmux-emulator/fixtures` seed the ingress parsers, and the TOML in
//! `crates/llmux-gateway/examples` and `docs/` seeds the config loader.
//!
//! `cargo run -p llmux-core --example fuzz_seeds -- fuzz/corpus` (what `fuzz/seed.sh` runs).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::path::{Path, PathBuf};

use futures::{SinkExt, StreamExt};
use llmux_core::clock::Clock;
use llmux_core::http::{Transport, TransportConfig};
use llmux_core::providers::{AuthContext, Framing, Provider, ProviderSettings, REGISTRY};
use llmux_core::types::{ChatRequest, EmbeddingRequest, Message, Tool};
use llmux_emulator::{Emulator, EmulatorConfig, Fault, FaultKind, Vendor};
use serde_json::Value;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// Seeds collected so far: (target, name, bytes).
#[derive(Default)]
struct Seeds(Vec<(&'static str, String, Vec<u8>)>);

impl Seeds {
    fn add(&mut self, target: &'static str, name: String, bytes: Vec<u8>) {
        self.0.push((target, name, bytes));
    }

    fn write(&self, root: &Path) -> std::io::Result<()> {
        for (target, name, bytes) in &self.0 {
            let dir = root.join(target);
            std::fs::create_dir_all(&dir)?;
            std::fs::write(dir.join(name), bytes)?;
        }
        Ok(())
    }
}

fn cat(head: &[u8], body: &[u8]) -> Vec<u8> {
    let mut v = head.to_vec();
    v.extend_from_slice(body);
    v
}

fn weather_tool() -> Tool {
    Tool {
        name: "get_weather".into(),
        description: Some("Get weather".into()),
        parameters: serde_json::json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
        strict: None,
    }
}

fn chat(model: &str, tools: bool) -> ChatRequest {
    let mut req = ChatRequest::new(model, vec![Message::user("Paris, please")]);
    if tools {
        req.tools = vec![weather_tool()];
    }
    req
}

/// Sends `req` through the provider's signer and returns status, headers as `name: value`
/// lines, and the whole body.
async fn exchange(
    provider: &dyn Provider,
    ctx: &AuthContext,
    req: llmux_core::http::HttpRequest,
) -> Option<(u16, Vec<u8>, Vec<u8>)> {
    let req = provider.authorize(req, ctx).await.ok()?;
    let resp = ctx.transport.send(req).await.ok()?.collect().await.ok()?;
    let mut head = Vec::new();
    for (k, v) in &resp.headers {
        if matches!(
            k.as_str(),
            "retry-after"
                | "x-request-id"
                | "x-dashscope-request-id"
                | "request-id"
                | "content-type"
        ) {
            head.extend_from_slice(k.as_str().as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(v.as_bytes());
            head.push(b'\n');
        }
    }
    Some((resp.status, head, resp.body.to_vec()))
}

/// Runs one WebSocket chat and returns the text messages joined by 0xFF.
async fn ws_exchange(
    provider: &dyn Provider,
    ctx: &AuthContext,
    req: &ChatRequest,
) -> Option<Vec<u8>> {
    let ws = provider.build_ws(&req.model, req, ctx).ok()?;
    let mut request = ws.url.as_str().into_client_request().ok()?;
    request.headers_mut().extend(ws.headers);
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.ok()?;
    socket.send(WsMessage::Text(ws.message.into())).await.ok()?;
    let mut out = Vec::new();
    while let Some(Ok(msg)) = socket.next().await {
        match msg {
            WsMessage::Text(t) => {
                if !out.is_empty() {
                    out.push(0xff);
                }
                out.extend_from_slice(t.as_bytes());
            }
            WsMessage::Close(_) => break,
            _ => {}
        }
    }
    Some(out)
}

async fn provider_seeds(index: u8, id: &'static str, seeds: &mut Seeds) {
    let spec = llmux_core::providers::spec(id).unwrap();
    let vendor = Vendor::for_provider(id).unwrap();
    let emu = Emulator::start(EmulatorConfig::new(vendor)).await.unwrap();
    let env: std::collections::HashMap<String, String> =
        emu.env_for(id).unwrap().into_iter().collect();
    let settings = ProviderSettings::from_lookup(spec, |k| env.get(k).cloned());
    let provider = (spec.build)(spec, settings).unwrap();
    let ctx = AuthContext {
        clock: Clock::system(),
        transport: Transport::new(TransportConfig::default()).unwrap(),
    };
    let model = vendor
        .default_models()
        .first()
        .cloned()
        .or_else(|| spec.models.first().map(|m| (*m).to_owned()))
        .unwrap_or_else(|| "model".to_owned());
    let caps = provider.capabilities();
    let p = provider.as_ref();

    for (n, tools) in [(0u8, false), (1, true)] {
        if tools && !caps.tools {
            continue;
        }
        let req = chat(&model, tools);
        // Non-stream answers (WebSocket providers fold their stream; seed their frames only).
        if provider.framing() != Framing::WebSocket {
            if let Some((_, _, body)) =
                exchange(p, &ctx, p.build_chat(&req.model, &req, false).unwrap()).await
            {
                seeds.add(
                    "provider_response",
                    format!("{id}-chat-{n}"),
                    cat(&[index, 0, 200, 0], &body),
                );
            }
        }
        if !caps.streaming {
            continue;
        }
        let body = match provider.framing() {
            Framing::WebSocket => ws_exchange(p, &ctx, &req).await,
            _ => exchange(p, &ctx, p.build_chat(&req.model, &req, true).unwrap())
                .await
                .map(|(_, _, b)| b),
        };
        let Some(body) = body else { continue };
        seeds.add(
            "provider_stream",
            format!("{id}-stream-{n}"),
            cat(&[index, n, 0], &body),
        );
        match provider.framing() {
            Framing::Sse => seeds.add("sse", format!("{id}-{n}"), cat(&[0, 0], &body)),
            Framing::Ndjson => seeds.add("ndjson", format!("{id}-{n}"), cat(&[0, 0], &body)),
            Framing::WebSocket => seeds.add("spark_ws", format!("{id}-{n}"), body),
        }
    }

    // Streams that end in a vendor error event or a malformed frame.
    if caps.streaming && provider.framing() != Framing::WebSocket {
        for (name, kind) in [
            ("error-event", FaultKind::ErrorEvent { after: 1 }),
            ("malformed", FaultKind::MalformedFrame { after: 1 }),
        ] {
            emu.push_fault(Fault::once(kind));
            if let Some((_, _, body)) = exchange(
                p,
                &ctx,
                p.build_chat(&model, &chat(&model, false), true).unwrap(),
            )
            .await
            {
                seeds.add(
                    "provider_stream",
                    format!("{id}-{name}"),
                    cat(&[index, 0, 0], &body),
                );
            }
        }
    }

    // Error answers, with the headers `classify_error` reads.
    let faults = [
        (
            "429",
            FaultKind::Status {
                status: 429,
                body: None,
                retry_after: Some("3".into()),
            },
        ),
        (
            "401",
            FaultKind::Status {
                status: 401,
                body: None,
                retry_after: None,
            },
        ),
        (
            "400",
            FaultKind::Status {
                status: 400,
                body: None,
                retry_after: None,
            },
        ),
        ("html", FaultKind::Html { status: 502 }),
        ("quota", FaultKind::QuotaExhausted),
        ("error-200", FaultKind::ErrorBody200),
    ];
    if provider.framing() != Framing::WebSocket {
        for (name, kind) in faults {
            emu.push_fault(Fault::once(kind));
            let Some((status, head, body)) = exchange(
                p,
                &ctx,
                p.build_chat(&model, &chat(&model, false), false).unwrap(),
            )
            .await
            else {
                continue;
            };
            let [lo, hi] = status.to_le_bytes();
            let op = if status == 200 { 0x80 } else { 0x81 };
            let mut bytes = vec![index, op, lo, hi];
            bytes.extend_from_slice(&head);
            bytes.extend_from_slice(b"\n\n");
            bytes.extend_from_slice(&body);
            seeds.add("provider_response", format!("{id}-error-{name}"), bytes);
        }
    }

    if caps.embeddings {
        let model = vendor
            .default_models()
            .into_iter()
            .find(|m| m.contains("embed"))
            .unwrap_or_else(|| model.clone());
        let req = EmbeddingRequest::new(model, vec!["hello".into(), "world".into()]);
        if let Ok(built) = p.build_embeddings(&req.model, &req) {
            if let Some((_, _, body)) = exchange(p, &ctx, built).await {
                seeds.add(
                    "provider_response",
                    format!("{id}-embeddings"),
                    cat(&[index, 2, 200, 0], &body),
                );
            }
        }
    }
    if caps.list_models {
        if let Ok(built) = p.build_models() {
            if let Some((_, _, body)) = exchange(p, &ctx, built).await {
                seeds.add(
                    "provider_response",
                    format!("{id}-models"),
                    cat(&[index, 3, 200, 0], &body),
                );
            }
        }
    }
}

/// The request shapes the `openai` SDK's `responses.create` and the `google-genai` SDK send, in
/// `ingress_dialects`' layout (selector byte; Gemini: the path after `/v1beta/models/`, a
/// newline, the body).
fn dialect_seeds(seeds: &mut Seeds) {
    let responses = [
        r#"{"model":"m","input":"hi","instructions":"be brief","max_output_tokens":64,"store":false}"#,
        r#"{"model":"m","input":[{"role":"user","content":[{"type":"input_text","text":"look"},{"type":"input_image","image_url":"data:image/png;base64,AA","detail":"auto"}]},{"type":"reasoning","id":"rs_1","summary":[]},{"type":"function_call","call_id":"c1","name":"get_weather","arguments":"{\"city\":\"Paris\"}"},{"type":"function_call_output","call_id":"c1","output":"sunny"}],"tools":[{"type":"function","name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}},"strict":false}],"tool_choice":{"type":"allowed_tools","mode":"auto","tools":[{"type":"function","name":"get_weather"}]},"reasoning":{"effort":"low"},"text":{"format":{"type":"json_schema","name":"s","schema":{"type":"object"}}},"stream":true}"#,
    ];
    for (i, body) in responses.iter().enumerate() {
        seeds.add(
            "ingress_dialects",
            format!("responses-{i}"),
            cat(&[0], body.as_bytes()),
        );
    }
    let generate = r#"{"contents":[{"parts":[{"text":"hi"},{"inlineData":{"data":"iVBORw==","mime_type":"image/png"}}],"role":"user"},{"parts":[{"functionCall":{"args":{"city":"Paris"},"name":"get_weather"}}],"role":"model"},{"parts":[{"functionResponse":{"name":"get_weather","response":{"result":"sunny"}}}],"role":"user"}],"systemInstruction":{"parts":[{"text":"be brief"}],"role":"user"},"tools":[{"functionDeclarations":[{"name":"get_weather","parameters":{"type":"OBJECT","properties":{"city":{"type":"STRING","nullable":true}},"required":["city"]}}]}],"toolConfig":{"functionCallingConfig":{"mode":"ANY","allowedFunctionNames":["get_weather"]}},"generationConfig":{"temperature":0.5,"topK":20.0,"maxOutputTokens":100,"responseMimeType":"application/json","responseSchema":{"type":"OBJECT","properties":{"a":{"type":"STRING"}}},"thinkingConfig":{"include_thoughts":true,"thinking_budget":128}}}"#;
    for (i, target) in [
        "gemini-2.5-flash:generateContent",
        "models/m:streamGenerateContent",
    ]
    .iter()
    .enumerate()
    {
        seeds.add(
            "ingress_dialects",
            format!("gemini-{i}"),
            cat(&[1], format!("{target}\n{generate}").as_bytes()),
        );
    }
    seeds.add(
        "ingress_dialects",
        "gemini-count".into(),
        cat(
            &[2],
            b"m:countTokens\n{\"contents\":[{\"parts\":[{\"text\":\"hello\"}]}]}",
        ),
    );
    seeds.add(
        "ingress_dialects",
        "gemini-schema".into(),
        cat(&[3], br#"{"type":"OBJECT","properties":{"a":{"type":"ARRAY","items":{"type":"STRING"},"nullable":true}},"anyOf":[{"type":"INTEGER"}]}"#),
    );
}

/// Request bodies of the SDK captures: OpenAI ones seed the OpenAI ingress parsers,
/// DashScope ones the DashScope ingress parsers.
fn ingress_seeds(fixtures: &Path, seeds: &mut Seeds) {
    for (file, chat_sel, embed_sel) in [
        ("openai/sdk_capture.json", 0u8, 1u8),
        ("dashscope/sdk_capture.json", 2, 3),
    ] {
        let text = std::fs::read_to_string(fixtures.join(file)).unwrap();
        let doc: Value = serde_json::from_str(&text).unwrap();
        let cases = doc["cases"].as_array().cloned().unwrap_or_default();
        for case in cases {
            let name = case["name"].as_str().unwrap_or("case").to_owned();
            for ex in case["exchanges"].as_array().into_iter().flatten() {
                let (Some(path), Some(body)) = (ex["path"].as_str(), ex["body_raw"].as_str())
                else {
                    continue;
                };
                let sel = if path.contains("embedding") {
                    embed_sel
                } else {
                    chat_sel
                };
                if body.is_empty() {
                    continue;
                }
                seeds.add(
                    "ingress",
                    format!("{}-{name}", file.split('/').next().unwrap_or("x")),
                    cat(&[sel], body.as_bytes()),
                );
            }
        }
    }
}

/// The example config, and the TOML raw strings (`r#"…"#` holding `[[channels]]` or
/// `[server`) of the gateway's and the CLI's tests.
fn config_seeds(root: &Path, seeds: &mut Seeds) {
    let example = root.join("crates/llmux-gateway/examples/llmux.toml");
    if let Ok(text) = std::fs::read(&example) {
        seeds.add("config", "example-llmux.toml".into(), text);
    }
    let mut files = Vec::new();
    let mut dirs: Vec<PathBuf> = [
        "crates/llmux-gateway/src",
        "crates/llmux-gateway/tests",
        "crates/llmux-cli/tests",
    ]
    .iter()
    .map(|d| root.join(d))
    .collect();
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut n = 0;
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let mut rest = text.as_str();
        while let Some(start) = rest.find("r#\"") {
            rest = &rest[start + 3..];
            let Some(end) = rest.find("\"#") else { break };
            let body = &rest[..end];
            rest = &rest[end + 2..];
            if body.contains("[[channels]]") || body.contains("[server") {
                seeds.add("config", format!("test-{n}.toml"), body.as_bytes().to_vec());
                n += 1;
            }
        }
    }
}

#[tokio::main]
async fn main() {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "fuzz/corpus".into()),
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut seeds = Seeds::default();
    for (i, spec) in REGISTRY.iter().enumerate() {
        provider_seeds(u8::try_from(i).unwrap(), spec.id, &mut seeds).await;
    }
    ingress_seeds(&root.join("crates/llmux-emulator/fixtures"), &mut seeds);
    dialect_seeds(&mut seeds);
    config_seeds(&root, &mut seeds);
    seeds.write(&out).unwrap();
    let mut per: std::collections::BTreeMap<&str, (usize, usize)> = Default::default();
    for (t, _, b) in &seeds.0 {
        let e = per.entry(t).or_default();
        e.0 += 1;
        e.1 += b.len();
    }
    for (t, (n, bytes)) in per {
        println!("{t}: {n} seeds, {bytes} bytes");
    }
}
