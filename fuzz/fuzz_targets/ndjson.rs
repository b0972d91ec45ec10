//! The NDJSON decoder: any input, split where the fuzzer says, gives the same lines, tail and
//! error as the same input fed at once; no panic, no line over the bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use llmux_core::codec::{Frame, NdjsonDecoder, Tail};
use llmux_fuzz::{chunks, take_plan};

fn decode(max: usize, parts: &[&[u8]]) -> (Vec<Frame>, Option<Tail>) {
    let mut d = NdjsonDecoder::new(max);
    let mut out = Vec::new();
    for p in parts {
        if d.push(p, &mut out).is_err() {
            return (out, None);
        }
    }
    let tail = d.finish();
    (out, Some(tail))
}

fuzz_target!(|data: &[u8]| {
    let Some((&bound, data)) = data.split_first() else {
        return;
    };
    let max = match bound {
        0 => llmux_core::codec::DEFAULT_MAX_FRAME,
        b => usize::from(b) * 8,
    };
    let (plan, body) = take_plan(data);
    let whole = decode(max, &[body]);
    let split = decode(max, &chunks(plan, body));
    assert_eq!(whole, split, "chunking changed the lines");
    for f in &whole.0 {
        // Lossy UTF-8 may turn one invalid byte into a 3-byte replacement character.
        assert!(f.data.len() <= max * 3, "line larger than its bound");
    }
});
