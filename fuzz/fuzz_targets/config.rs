//! The config loader: the input is `llmux.toml` text, parsed with a fixed environment (one
//! `LLMUX__…` override and the usual variables `env:VAR` references name), then resolved into
//! channels and clients. Every outcome is a config or an error list, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use llmux_gateway::{Config, RawConfig};

const ENV: &[(&str, &str)] = &[
    ("LLMUX__SERVER__RETENTION_DAYS", "30"),
    ("LLMUX_ADMIN_KEY", "fuzz-admin-key-0000"),
    ("LLMUX_API_KEY", "fuzz-api-key-0000"),
    ("OPENAI_API_KEY", "sk-fuzz-0000"),
    ("DASHSCOPE_API_KEY", "sk-fuzz-0001"),
];

fn env() -> impl Iterator<Item = (String, String)> {
    ENV.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(raw) = RawConfig::parse(text, env()) else {
        return;
    };
    if let Err(e) = Config::resolve(raw, |k| {
        ENV.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| (*v).to_owned())
    }) {
        let _ = e.to_string();
    }
});
