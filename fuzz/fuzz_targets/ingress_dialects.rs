//! The gateway's OpenAI Responses and Gemini request parsers: byte 0 picks the parser
//! (Responses, Gemini generateContent, Gemini countTokens, the Gemini Schema → JSON Schema
//! conversion) and, for a parsed request, the provider whose request builder then sees it with
//! the provider's first model beside it, as a channel would. For Gemini the input up to the
//! first newline is the path after `/v1beta/models/` (the model and the method, as the client
//! controls them), the rest the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use llmux_fuzz::pick_provider;
use llmux_gateway::ingress::{gemini, responses};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let (spec, provider) = pick_provider(selector >> 2);
    let model = spec.models.first().copied().unwrap_or("model");
    let gemini_parts = || {
        let cut = rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
        let target = std::str::from_utf8(&rest[..cut]).ok()?;
        let body = rest.get(cut + 1..).unwrap_or_default();
        Some((target, body))
    };
    match selector & 0x03 {
        0 => {
            if let Ok((req, opts)) = responses::decode_responses(rest) {
                let _ = provider.build_chat(model, &req, opts.stream);
            }
        }
        1 => {
            let Some((target, body)) = gemini_parts() else {
                return;
            };
            let Ok((name, method)) = gemini::parse_target(target) else {
                return;
            };
            if let Ok((req, _)) = gemini::decode_generate(name, body) {
                let stream = method == gemini::Method::Stream;
                let _ = provider.build_chat(model, &req, stream);
            }
        }
        2 => {
            let Some((target, body)) = gemini_parts() else {
                return;
            };
            if let Ok((name, _)) = gemini::parse_target(target) {
                let _ = gemini::decode_count(name, body);
            }
        }
        _ => {
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(rest) {
                let _ = gemini::request::json_schema(v);
            }
        }
    }
});
