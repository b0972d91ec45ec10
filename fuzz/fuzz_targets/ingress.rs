//! The gateway's ingress request parsers: the low three bits of byte 0 pick the parser (OpenAI
//! chat, OpenAI embeddings, DashScope generation, DashScope embeddings, Anthropic messages,
//! Anthropic count_tokens, legacy completions) and the rest of it, for a parsed request, the
//! provider whose request builder then sees it with the provider's first model beside it, as a
//! channel would; the rest is the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use llmux_fuzz::pick_provider;
use llmux_gateway::ingress::{anthropic, completions, dashscope, openai};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let (spec, provider) = pick_provider(selector >> 3);
    let model = spec.models.first().copied().unwrap_or("model");
    match selector & 0x07 {
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
        3 => {
            if let Ok(req) = dashscope::decode_embeddings(body) {
                let _ = provider.build_embeddings(model, &req);
            }
        }
        4 => {
            if let Ok((req, opts)) = anthropic::decode_messages(body) {
                let _ = provider.build_chat(model, &req, opts.stream);
            }
        }
        5 => {
            if let Ok(req) = anthropic::decode_count_tokens(body) {
                let _ = anthropic::count_tokens_of(&req);
            }
        }
        _ => {
            if let Ok((req, opts)) = completions::decode_completion(body) {
                let _ = provider.build_chat(model, &req, opts.stream);
            }
        }
    }
});
