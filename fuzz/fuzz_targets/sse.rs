//! The SSE decoder: any input, split where the fuzzer says, gives the same frames, tail and
//! error as the same input fed at once; no panic, no frame over the bound
//! (`llmux_fuzz::check_decoder`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use llmux_core::codec::SseDecoder;

fuzz_target!(|data: &[u8]| {
    llmux_fuzz::check_decoder(
        data,
        SseDecoder::new,
        |d, p, out| d.push(p, out).is_ok(),
        SseDecoder::finish,
    );
});
