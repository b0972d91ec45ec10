//! Throughput of the SSE decoder alone and of decoder + stream parser, for DashScope and
//! OpenAI bodies, fed in network-sized chunks. Run: `cargo bench -p llmux-core --bench stream_decode`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use llmux_core::codec::SseDecoder;
use llmux_core::providers::dashscope::DashScopeStreamParser;
use llmux_core::providers::openai_compat::{OpenAiStreamParser, OPENAI};
use llmux_core::providers::StreamParser;
use serde_json::json;

const EVENTS: usize = 4000;
const CHUNK: usize = 1400;

fn dashscope_body() -> Vec<u8> {
    let mut s = String::new();
    for i in 0..EVENTS {
        let finish = if i + 1 == EVENTS { "stop" } else { "null" };
        let data = json!({"output": {"choices": [{"message": {"role": "assistant", "content": "通义千问 says hello "}, "finish_reason": finish}]},
            "usage": {"input_tokens": 10, "output_tokens": i + 1, "total_tokens": 11 + i}, "request_id": "7b5ee80d-0000-4000-8000-000000000001"});
        s.push_str(&format!(
            "id:{}\nevent:result\n:HTTP_STATUS/200\ndata:{}\n\n",
            i + 1,
            data
        ));
    }
    s.into_bytes()
}

fn openai_body() -> Vec<u8> {
    let mut s = String::new();
    for i in 0..EVENTS {
        let finish = if i + 1 == EVENTS {
            json!("stop")
        } else {
            json!(null)
        };
        let data = json!({"id": "chatcmpl-000", "object": "chat.completion.chunk", "created": 1_700_000_000, "model": "gpt-4o-mini",
            "system_fingerprint": null, "choices": [{"index": 0, "delta": {"content": "hello world, "}, "logprobs": null, "finish_reason": finish}], "usage": null});
        s.push_str(&format!("data: {data}\n\n"));
    }
    s.push_str("data: [DONE]\n\n");
    s.into_bytes()
}

fn run(body: &[u8], parser: Option<&mut dyn StreamParser>) -> usize {
    let mut dec = SseDecoder::default();
    let mut frames = Vec::with_capacity(16);
    let mut events = Vec::with_capacity(16);
    let mut n = 0;
    let mut parser = parser;
    for chunk in body.chunks(CHUNK) {
        dec.push(chunk, &mut frames).unwrap();
        for f in frames.drain(..) {
            match parser.as_deref_mut() {
                Some(p) => p.on_frame(&f, &mut events).unwrap(),
                None => n += f.data.len(),
            }
        }
        n += events.len();
        events.clear();
    }
    if let Some(p) = parser {
        p.finish(&mut events).unwrap();
    }
    n + events.len()
}

fn bench(c: &mut Criterion) {
    let ds = dashscope_body();
    let oa = openai_body();
    let mut g = c.benchmark_group("sse");
    g.throughput(Throughput::Bytes(ds.len() as u64));
    g.bench_function("decoder_only/dashscope", |b| b.iter(|| run(&ds, None)));
    g.bench_function("decoder+parser/dashscope_incremental", |b| {
        b.iter(|| {
            let mut p = DashScopeStreamParser::new(true);
            run(&ds, Some(&mut p))
        })
    });
    g.throughput(Throughput::Bytes(oa.len() as u64));
    g.bench_function("decoder+parser/openai", |b| {
        b.iter(|| {
            let mut p = OpenAiStreamParser::new(OPENAI);
            run(&oa, Some(&mut p))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
