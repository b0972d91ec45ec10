//! Helpers shared by the fuzz targets: input splitting, the providers built with fake
//! credentials, and feeding a body through a provider's framing into its stream parser.

use std::sync::{Arc, OnceLock};

use llmux_core::codec::{Frame, NdjsonDecoder, SseDecoder};
use llmux_core::providers::{Framing, Provider, ProviderSettings, ProviderSpec, REGISTRY};
use llmux_core::stream::StreamEvent;
use llmux_core::types::{ChatRequest, Message, Tool};

/// Splits `data` into chunks whose lengths come from `plan` (cycled; a 0 means 1 byte), so
/// the fuzzer chooses the split points.
pub fn chunks<'a>(plan: &[u8], mut data: &'a [u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut i = 0;
    while !data.is_empty() {
        let n = if plan.is_empty() {
            data.len()
        } else {
            usize::from(plan[i % plan.len()]).max(1)
        };
        i += 1;
        let (head, tail) = data.split_at(n.min(data.len()));
        out.push(head);
        data = tail;
    }
    out
}

/// Takes the split plan off the front of an input: the first byte says how many plan bytes
/// follow (0..=15).
pub fn take_plan(data: &[u8]) -> (&[u8], &[u8]) {
    let Some((&n, rest)) = data.split_first() else {
        return (&[], &[]);
    };
    let n = usize::from(n & 0x0f).min(rest.len());
    rest.split_at(n)
}

/// The chunking invariant of a byte decoder (the `sse` and `ndjson` targets): the first input
/// byte picks the frame bound (0: the production default, else 8 × the byte, so small bounds
/// exercise the size check), the next ones the split plan; the rest, fed split that way, must
/// give the same frames, tail and error as fed at once, and no frame may pass 3 × the bound
/// (lossy UTF-8 may turn one invalid byte into a 3-byte replacement character).
/// `push` answers false when the decoder reports an error.
pub fn check_decoder<D, T: PartialEq + std::fmt::Debug>(
    data: &[u8],
    new: impl Fn(usize) -> D,
    push: impl Fn(&mut D, &[u8], &mut Vec<Frame>) -> bool,
    finish: impl Fn(&mut D) -> T,
) {
    let Some((&bound, data)) = data.split_first() else {
        return;
    };
    let max = match bound {
        0 => llmux_core::codec::DEFAULT_MAX_FRAME,
        b => usize::from(b) * 8,
    };
    let decode = |parts: &[&[u8]]| -> (Vec<Frame>, Option<T>) {
        let mut d = new(max);
        let mut out = Vec::new();
        for p in parts {
            if !push(&mut d, p, &mut out) {
                return (out, None);
            }
        }
        (out, Some(finish(&mut d)))
    };
    let (plan, body) = take_plan(data);
    let whole = decode(&[body]);
    let split = decode(&chunks(plan, body));
    assert_eq!(whole, split, "chunking changed the frames");
    for f in &whole.0 {
        assert!(f.data.len() <= max * 3, "frame larger than its bound");
    }
}

/// Every registered provider, built once with placeholder credentials and its default
/// endpoint: the required credentials first, every credential when that is not enough (Pangu
/// takes one of two optional sets). Panics, naming the provider, when neither builds: the
/// registry changed and this helper must follow.
pub fn providers() -> &'static [(&'static ProviderSpec, Arc<dyn Provider>)] {
    static CELL: OnceLock<Vec<(&'static ProviderSpec, Arc<dyn Provider>)>> = OnceLock::new();
    CELL.get_or_init(|| {
        REGISTRY
            .iter()
            .map(|spec| {
                let build = |all: bool| {
                    let settings =
                        ProviderSettings::from_lookup(spec, |k| placeholder(spec, k, all));
                    (spec.build)(spec, settings)
                };
                match build(false).or_else(|_| build(true)) {
                    Ok(p) => (spec, p),
                    Err(e) => panic!(
                        "{} does not build with placeholder credentials: {e}",
                        spec.id
                    ),
                }
            })
            .collect()
    })
}

/// A value for a credential variable of `spec`: required ones only, or all when `all`.
fn placeholder(spec: &ProviderSpec, var: &str, all: bool) -> Option<String> {
    let cred = spec
        .credentials
        .iter()
        .find(|c| (all || !c.optional) && c.env.contains(&var))?;
    Some(format!("fuzz{}0000", cred.field.replace('_', "")))
}

/// The provider the selector byte names.
pub fn pick_provider(selector: u8) -> (&'static ProviderSpec, &'static Arc<dyn Provider>) {
    let list = providers();
    let (spec, p) = &list[usize::from(selector) % list.len()];
    (spec, p)
}

/// A chat request to `spec`'s first well-known model; `flags` bit 0 adds a tool, bit 1 a
/// reasoning-ish system prompt, so parsers that look at the request see both shapes.
pub fn request_for(spec: &ProviderSpec, flags: u8) -> ChatRequest {
    let model = spec.models.first().copied().unwrap_or("model");
    let mut messages = Vec::new();
    if flags & 2 != 0 {
        messages.push(Message::system("think step by step"));
    }
    messages.push(Message::user("hello"));
    let mut req = ChatRequest::new(model, messages);
    if flags & 1 != 0 {
        req.tools = vec![Tool {
            name: "get_weather".into(),
            description: Some("Get weather".into()),
            parameters: serde_json::json!({"type": "object", "properties": {"city": {"type": "string"}}}),
            strict: None,
        }];
    }
    req
}

/// Splits a body into frames the way `framing` would: SSE and NDJSON through the real
/// decoders, WebSocket messages at 0xFF bytes (which never occur in UTF-8 text).
pub fn frames(framing: Framing, plan: &[u8], body: &[u8], max_frame: usize) -> Vec<Frame> {
    let mut out = Vec::new();
    match framing {
        Framing::Sse => {
            let mut d = SseDecoder::new(max_frame);
            for c in chunks(plan, body) {
                if d.push(c, &mut out).is_err() {
                    return out;
                }
            }
            out.extend(d.finish().frame);
        }
        Framing::Ndjson => {
            let mut d = NdjsonDecoder::new(max_frame);
            for c in chunks(plan, body) {
                if d.push(c, &mut out).is_err() {
                    return out;
                }
            }
            out.extend(d.finish().frame);
        }
        Framing::WebSocket => {
            for msg in body.split(|&b| b == 0xff) {
                out.push(Frame::data(String::from_utf8_lossy(msg).into_owned()));
            }
        }
    }
    out
}

/// Runs frames through a stream parser as the client does: stop at an error or at the
/// vendor's end marker, then `finish`. Returns the events.
pub fn run_parser(
    parser: &mut dyn llmux_core::providers::StreamParser,
    frames: &[Frame],
) -> Vec<StreamEvent> {
    let mut events = Vec::new();
    for f in frames {
        if parser.on_frame(f, &mut events).is_err() {
            return events;
        }
        if parser.is_done() {
            break;
        }
    }
    let _ = parser.finish(&mut events);
    events
}
