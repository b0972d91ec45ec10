//! Stream invariants over the pure parsers: DashScope cumulative and incremental modes give
//! identical deltas; a cut stream ends with an error, never a silent success; tool-call
//! fragments reassemble to valid JSON; any byte split gives the same events.
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
