//! Stream invariants over the pure parsers: DashScope cumulative and incremental modes give
//! identical deltas; a cut stream ends with an error, never a silent success; tool-call
//! fragments reassemble to valid JSON; any byte split gives the same events (DashScope,
//! OpenAI, Anthropic's named events and Gemini's whole-response chunks).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use llmux_core::providers::dashscope::DashScope;
use llmux_core::providers::openai_compat::{OpenAiCompat, OPENAI};
use llmux_core::*;
use serde_json::json;

fn dashscope() -> DashScope {
    DashScope::new("http://127.0.0.1:1/api/v1", "k".into()).unwrap()
}

fn ds_request(incremental: bool) -> ChatRequest {
    let mut r = ChatRequest::new("qwen-plus", vec![Message::user("hi")]);
    r.extra
        .insert("incremental_output".into(), json!(incremental));
    r
}

/// A DashScope SSE body for these text pieces and tool-argument pieces, in either mode.
fn ds_body(pieces: &[&str], arg_pieces: &[&str], incremental: bool) -> String {
    let mut body = String::new();
    let mut text = String::new();
    let mut args = String::new();
    let n = pieces.len() + arg_pieces.len();
    for i in 0..n {
        let last = i + 1 == n;
        let mut msg = json!({"role": "assistant", "content": ""});
        if i < pieces.len() {
            text.push_str(pieces[i]);
            msg["content"] = json!(if incremental {
                pieces[i].to_owned()
            } else {
                text.clone()
            });
        } else {
            let a = arg_pieces[i - pieces.len()];
            args.push_str(a);
            let first = i == pieces.len();
            msg["content"] = json!(if incremental {
                String::new()
            } else {
                text.clone()
            });
            msg["tool_calls"] = json!([{"index": 0, "id": if first || !incremental { "call_1" } else { "" }, "type": "function",
                "function": {"name": if first || !incremental { "lookup" } else { "" }, "arguments": if incremental { a.to_owned() } else { args.clone() }}}]);
        }
        let finish = if !last {
            "null"
        } else if arg_pieces.is_empty() {
            "stop"
        } else {
            "tool_calls"
        };
        let data = json!({"output": {"choices": [{"message": msg, "finish_reason": finish}]},
            "usage": {"input_tokens": 5, "output_tokens": i + 1, "total_tokens": 6 + i}, "request_id": "rid"});
        body.push_str(&format!(
            "id:{}\nevent:result\n:HTTP_STATUS/200\ndata:{}\n\n",
            i + 1,
            data
        ));
    }
    body
}

#[test]
fn dashscope_cumulative_and_incremental_give_identical_deltas() {
    let p = dashscope();
    let pieces = ["你好", "，世界", "! ", "😀 emoji", " done"];
    let args = ["{\"q\":", " \"北京", "\"}"];
    for arg_pieces in [&args[..], &[][..]] {
        let inc = parse_stream(
            &p,
            &ds_request(true),
            ds_body(&pieces, arg_pieces, true).as_bytes(),
            0,
        );
        let cum = parse_stream(
            &p,
            &ds_request(false),
            ds_body(&pieces, arg_pieces, false).as_bytes(),
            0,
        );
        let inc: Vec<StreamEvent> = inc.into_iter().map(Result::unwrap).collect();
        let cum: Vec<StreamEvent> = cum.into_iter().map(Result::unwrap).collect();
        assert_eq!(inc, cum);
        let deltas: Vec<&str> = inc
            .iter()
            .filter_map(|e| match e {
                StreamEvent::TextDelta { text } => Some(text.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(deltas, pieces);
        let r = fold(&inc.into_iter().map(Ok).collect::<Vec<_>>()).unwrap();
        assert_eq!(r.text(), pieces.concat());
        assert_eq!(
            r.usage.unwrap().output_tokens,
            (pieces.len() + arg_pieces.len()) as u64
        );
        if !arg_pieces.is_empty() {
            let call = &r.tool_calls()[0];
            assert_eq!((call.id.as_str(), call.name.as_str()), ("call_1", "lookup"));
            let v: serde_json::Value = serde_json::from_str(&call.arguments).unwrap();
            assert_eq!(v["q"], "北京");
        }
    }
}

#[test]
fn dashscope_stream_deltas_match_non_stream_text_under_any_split() {
    let p = dashscope();
    let pieces = ["Ab", "c d", "é中", "文"];
    let body = ds_body(&pieces, &[], true);
    let whole = parse_stream(&p, &ds_request(true), body.as_bytes(), 0);
    for split in 1..9 {
        let got = parse_stream(&p, &ds_request(true), body.as_bytes(), split);
        assert_eq!(format!("{got:?}"), format!("{whole:?}"), "split {split}");
    }
}

#[test]
fn cut_streams_end_with_an_error_never_a_silent_success() {
    let p = dashscope();
    let body = ds_body(&["a", "b", "c"], &[], true);
    // Cut after the second event: no finish reason was seen.
    let cut = body.split("id:3").next().unwrap();
    let events = parse_stream(&p, &ds_request(true), cut.as_bytes(), 0);
    let err = events.last().unwrap().as_ref().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UpstreamProtocol);
    assert!(err
        .message()
        .contains("ended before the answer was complete"));

    let o = OpenAiCompat::new(OPENAI, "http://127.0.0.1:1/v1", Some("k".into())).unwrap();
    let req = ChatRequest::new("m", vec![Message::user("x")]);
    let chunk = |d: serde_json::Value| {
        format!(
            "data: {}\n\n",
            json!({"id": "c", "model": "m", "choices": [{"index": 0, "delta": d, "finish_reason": null}]})
        )
    };
    let body = format!(
        "{}{}",
        chunk(json!({"role": "assistant", "content": ""})),
        chunk(json!({"content": "Hel"}))
    );
    let events = parse_stream(&o, &req, body.as_bytes(), 0);
    assert_eq!(
        events.last().unwrap().as_ref().unwrap_err().kind(),
        ErrorKind::UpstreamProtocol
    );
    // A frame cut in the middle of its JSON is malformed, also an error.
    let events = parse_stream(&o, &req, b"data: {\"id\":\"c\",\"choi", 0);
    assert_eq!(
        events.last().unwrap().as_ref().unwrap_err().kind(),
        ErrorKind::UpstreamProtocol
    );
}

#[test]
fn openai_tool_call_fragments_reassemble_to_valid_json() {
    let o = OpenAiCompat::new(OPENAI, "http://127.0.0.1:1/v1", Some("k".into())).unwrap();
    let req = ChatRequest::new("m", vec![Message::user("x")]);
    let frag = |i: u32, first: bool, a: &str| {
        let mut tc = json!({"index": i, "function": {"arguments": a}});
        if first {
            tc["id"] = json!(format!("call_{i}"));
            tc["type"] = json!("function");
            tc["function"]["name"] = json!(format!("f{i}"));
        }
        format!(
            "data: {}\n\n",
            json!({"id": "c", "model": "m", "choices": [{"index": 0, "delta": {"tool_calls": [tc]}, "finish_reason": null}]})
        )
    };
    let mut body = String::new();
    body += &frag(0, true, "");
    body += &frag(1, true, "{\"b\"");
    body += &frag(0, false, "{\"a\": [1,");
    body += &frag(1, false, ": \"中\"}");
    body += &frag(0, false, " 2]}");
    body += &format!(
        "data: {}\n\n",
        json!({"id": "c", "model": "m", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
    );
    body += "data: [DONE]\n\n";
    for split in [0, 1, 3] {
        let r = fold(&parse_stream(&o, &req, body.as_bytes(), split)).unwrap();
        assert_eq!(r.finish_reason(), Some(&FinishReason::ToolCalls));
        let calls = r.tool_calls();
        assert_eq!(calls.len(), 2);
        for c in calls {
            serde_json::from_str::<serde_json::Value>(&c.arguments).unwrap();
        }
        assert_eq!(calls[0].arguments, "{\"a\": [1, 2]}");
        assert_eq!(calls[1].name, "f1");
    }
}

fn anthropic() -> llmux_core::providers::anthropic::Anthropic {
    use llmux_core::providers::anthropic::{Anthropic, ANTHROPIC};
    Anthropic::new(ANTHROPIC, "http://127.0.0.1:1", "k".into()).unwrap()
}

/// An Anthropic SSE body: text pieces, then (optionally) one tool call with its input in
/// fragments, with the API's framing (`event:` lines, a ping, cumulative `message_delta` usage).
fn anthropic_body(pieces: &[&str], arg_pieces: &[&str]) -> String {
    let mut events = vec![
        json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
               "content": [], "model": "claude-x", "stop_reason": null, "usage": {"input_tokens": 7, "output_tokens": 1}}}),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        json!({"type": "ping"}),
    ];
    for p in pieces {
        events.push(json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}}));
    }
    events.push(json!({"type": "content_block_stop", "index": 0}));
    if !arg_pieces.is_empty() {
        events.push(json!({"type": "content_block_start", "index": 1,
            "content_block": {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {}}}));
        for a in arg_pieces {
            events.push(json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": a}}));
        }
        events.push(json!({"type": "content_block_stop", "index": 1}));
    }
    let stop = if arg_pieces.is_empty() {
        "end_turn"
    } else {
        "tool_use"
    };
    events.push(json!({"type": "message_delta", "delta": {"stop_reason": stop}, "usage": {"output_tokens": 12}}));
    events.push(json!({"type": "message_stop"}));
    events
        .iter()
        .map(|e| {
            format!(
                "event: {}\r\ndata: {e}\r\n\r\n",
                e["type"].as_str().unwrap()
            )
        })
        .collect()
}

fn gemini() -> llmux_core::providers::gemini::Gemini {
    llmux_core::providers::gemini::Gemini::new("http://127.0.0.1:1", "k".into()).unwrap()
}

/// A Gemini SSE body: one chunk per text piece, then (optionally) a chunk with a whole function
/// call; the finish reason and final usage on the last chunk.
fn gemini_body(pieces: &[&str], call: bool) -> String {
    let mut chunks: Vec<serde_json::Value> = pieces
        .iter()
        .map(|p| json!({"candidates": [{"content": {"role": "model", "parts": [{"text": p}]}, "index": 0}],
                        "usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7}, "responseId": "r1", "modelVersion": "g"}))
        .collect();
    if call {
        chunks.push(json!({"candidates": [{"content": {"role": "model", "parts": [
            {"functionCall": {"name": "lookup", "args": {"q": "北京"}}}]}, "index": 0}], "responseId": "r1"}));
    }
    chunks.push(json!({"candidates": [{"content": {"role": "model", "parts": [{"text": ""}]}, "finishReason": "STOP", "index": 0}],
                       "usageMetadata": {"promptTokenCount": 7, "candidatesTokenCount": 12, "totalTokenCount": 19}, "responseId": "r1"}));
    chunks
        .iter()
        .map(|c| format!("data: {c}\r\n\r\n"))
        .collect()
}

#[test]
fn anthropic_and_gemini_streams_fold_the_same_under_any_split() {
    let req = ChatRequest::new("m", vec![Message::user("x")]);
    let pieces = ["Ab", "c d", "é中", "文"];
    let a = anthropic();
    let g = gemini();
    let cases: [(&dyn llmux_core::providers::Provider, String); 4] = [
        (&a, anthropic_body(&pieces, &[])),
        (&a, anthropic_body(&pieces, &["{\"q\":", " \"北京", "\"}"])),
        (&g, gemini_body(&pieces, false)),
        (&g, gemini_body(&pieces, true)),
    ];
    for (i, (p, body)) in cases.iter().enumerate() {
        let whole = parse_stream(*p, &req, body.as_bytes(), 0);
        for split in [1, 2, 3, 7, 64] {
            let got = parse_stream(*p, &req, body.as_bytes(), split);
            assert_eq!(
                format!("{got:?}"),
                format!("{whole:?}"),
                "case {i}, split {split}"
            );
        }
        let r = fold(&whole).unwrap();
        assert_eq!(r.text(), pieces.concat(), "case {i}");
        let u = r.usage.unwrap();
        assert_eq!((u.input_tokens, u.output_tokens), (7, 12), "case {i}");
        if i % 2 == 1 {
            assert_eq!(
                r.finish_reason(),
                Some(&FinishReason::ToolCalls),
                "case {i}"
            );
            let v: serde_json::Value = serde_json::from_str(&r.tool_calls()[0].arguments).unwrap();
            assert_eq!(v["q"], "北京", "case {i}");
        } else {
            assert_eq!(r.finish_reason(), Some(&FinishReason::Stop), "case {i}");
        }
    }
}

#[test]
fn anthropic_and_gemini_cut_streams_are_errors() {
    let req = ChatRequest::new("m", vec![Message::user("x")]);
    let body = anthropic_body(&["a", "b"], &[]);
    let cut = body.split("event: message_stop").next().unwrap();
    let events = parse_stream(&anthropic(), &req, cut.as_bytes(), 0);
    let err = events.last().unwrap().as_ref().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UpstreamProtocol);
    // Cut in the middle of a frame's JSON: malformed, also an error.
    let events = parse_stream(&anthropic(), &req, &body.as_bytes()[..body.len() / 2], 0);
    assert!(events.last().unwrap().is_err());

    let body = gemini_body(&["a", "b"], false);
    let cut = body.rsplit_once("data: ").unwrap().0;
    let events = parse_stream(&gemini(), &req, cut.as_bytes(), 0);
    let err = events.last().unwrap().as_ref().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UpstreamProtocol);
    assert!(err
        .message()
        .contains("ended before the answer was complete"));
}
