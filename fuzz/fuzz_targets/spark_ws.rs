//! Spark's WebSocket response frames: the input is a sequence of text messages separated by
//! 0xFF bytes, fed to `SparkStreamParser` as the WebSocket sender does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use llmux_core::codec::Frame;
use llmux_core::providers::spark::wire::SparkStreamParser;
use llmux_core::StreamAccumulator;
use llmux_fuzz::run_parser;

fuzz_target!(|data: &[u8]| {
    let frames: Vec<Frame> = data
        .split(|&b| b == 0xff)
        .map(|m| Frame::data(String::from_utf8_lossy(m).into_owned()))
        .collect();
    let mut parser = SparkStreamParser::new();
    let events = run_parser(&mut parser, &frames);
    let mut acc = StreamAccumulator::new();
    for ev in &events {
        if acc.push(ev).is_err() {
            return;
        }
    }
    let _ = acc.finish();
});
