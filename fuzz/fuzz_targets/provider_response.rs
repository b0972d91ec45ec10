//! Every registered provider's response readers: byte 0 picks the provider, byte 1 the
//! reader (`parse_chat`, `classify_error`, `parse_embeddings`, `parse_models`), bytes 2-3 the
//! status. With bit 0x80 of byte 1 set, `name: value` header lines up to a blank line come
//! before the body (retry-after, request ids and the like are read from headers).
#![no_main]

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use llmux_core::http::HttpResponse;
use llmux_fuzz::pick_provider;

fn split_headers(data: &[u8]) -> (HeaderMap, &[u8]) {
    let mut headers = HeaderMap::new();
    let Some(end) = data.windows(2).position(|w| w == b"\n\n") else {
        return (headers, data);
    };
    for line in data[..end].split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let value = line[colon + 1..]
            .strip_prefix(b" ")
            .unwrap_or(&line[colon + 1..]);
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(value),
        ) {
            headers.append(n, v);
        }
    }
    (headers, &data[end + 2..])
}

fuzz_target!(|data: &[u8]| {
    let [selector, op, s0, s1, rest @ ..] = data else {
        return;
    };
    let (_, provider) = pick_provider(*selector);
    let status = u16::from_le_bytes([*s0, *s1]) % 600;
    let (headers, body) = if op & 0x80 != 0 {
        split_headers(rest)
    } else {
        (HeaderMap::new(), rest)
    };
    match op & 0x03 {
        0 => {
            let resp = HttpResponse {
                status: 200,
                headers,
                body: Bytes::copy_from_slice(body),
            };
            let _ = provider.parse_chat(&resp);
        }
        1 => {
            let err = provider.classify_error(status, &headers, body);
            // The error's text is shown to clients: it must render.
            let _ = err.to_string();
        }
        2 => {
            let resp = HttpResponse {
                status: 200,
                headers,
                body: Bytes::copy_from_slice(body),
            };
            let _ = provider.parse_embeddings(&resp);
        }
        _ => {
            let resp = HttpResponse {
                status: 200,
                headers,
                body: Bytes::copy_from_slice(body),
            };
            let _ = provider.parse_models(&resp);
        }
    }
});
