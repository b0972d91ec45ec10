//! Every registered provider's stream parser: byte 0 picks the provider, byte 1 the request
//! shape, then a split plan and the body, decoded with the provider's own framing (SSE,
//! NDJSON, or WebSocket messages split at 0xFF). The events must fold into a response
//! without a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use llmux_core::StreamAccumulator;
use llmux_fuzz::{frames, pick_provider, request_for, run_parser, take_plan};

fuzz_target!(|data: &[u8]| {
    let [selector, flags, rest @ ..] = data else {
        return;
    };
    let (spec, provider) = pick_provider(*selector);
    let req = request_for(spec, *flags);
    let (plan, body) = take_plan(rest);
    let frames = frames(provider.framing(), plan, body, 64 * 1024);
    let mut parser = provider.stream_parser(&req.model, &req);
    let events = run_parser(parser.as_mut(), &frames);
    let mut acc = StreamAccumulator::new();
    for ev in &events {
        if acc.push(ev).is_err() {
            return;
        }
    }
    let _ = acc.finish();
});
