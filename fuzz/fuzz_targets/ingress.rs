//! The gateway's ingress request parsers: byte 0 picks the parser (OpenAI chat, OpenAI
//! embeddings, DashScope generation, DashScope embeddings) and, for a parsed request, the
//! provider whose request builder then sees it, as a channel would; the rest is the body.
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
            if let Ok((mut req, opts)) = openai::decode_chat(body) {
                req.model = model.to_owned();
                let _ = provider.build_chat(&req, opts.stream);
            }
        }
        1 => {
            if let Ok((mut req, _)) = openai::decode_embeddings(body) {
                req.model = model.to_owned();
                let _ = provider.build_embeddings(&req);
            }
        }
        2 => {
            // DashScope streams are asked for with a header, not in the body: build both.
            if let Ok((mut req, _)) = dashscope::decode_generation(body) {
                req.model = model.to_owned();
                let _ = provider.build_chat(&req, false);
                let _ = provider.build_chat(&req, true);
            }
        }
        _ => {
            if let Ok(mut req) = dashscope::decode_embeddings(body) {
                req.model = model.to_owned();
                let _ = provider.build_embeddings(&req);
            }
        }
    }
});
