//! The gateway's ingress request parsers: byte 0 picks the parser (OpenAI chat, OpenAI
//! embeddings, DashScope generation, DashScope embeddings) and, for a parsed request, the
//! provider whose request builder then sees it with the provider's first model beside it, as a
//! channel would; the rest is the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use llmux_fuzz::pick_provider;
use llmux_gateway::ingress::{dashscope, openai};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let (spec, provider) = pick_provider(selector >> 2);
    let model = spec.models.first().copied().unwrap_or("model");
    match selector & 0x03 {
        0 => {
            if let Ok((req, opts)) = openai::decode_chat(body) {
                let _ = provider.build_chat(model, &req, opts.stream);
            }
        }
        1 => {
            if let Ok((req, _)) = openai::decode_embeddings(body) {
                let _ = provider.build_embeddings(model, &req);
            }
        }
        2 => {
            // DashScope streams are asked for with a header, not in the body: build both.
            if let Ok((req, _)) = dashscope::decode_generation(body) {
                let _ = provider.build_chat(model, &req, false);
                let _ = provider.build_chat(model, &req, true);
            }
        }
        _ => {
            if let Ok(req) = dashscope::decode_embeddings(body) {
                let _ = provider.build_embeddings(model, &req);
            }
        }
    }
});
