//! [`ChatResponse`] → the DashScope generation body in `text` or `message` format (PROTOCOLS §1.3).

use llmux_core::{ChatResponse, ToolCall, Usage};
use serde_json::{json, Value};

use super::ResultFormat;

/// The DashScope `usage` object.
pub(crate) fn usage_json(u: &Usage) -> Value {
    let mut v = json!({
        "input_tokens": u.input_tokens,
        "output_tokens": u.output_tokens,
        "total_tokens": u.total_tokens,
    });
    if let Some(c) = u.cached_tokens {
        v["prompt_tokens_details"] = json!({"cached_tokens": c});
    }
    if let Some(r) = u.reasoning_tokens {
        v["output_tokens_details"] = json!({"reasoning_tokens": r});
    }
    v
}

pub(crate) fn tool_calls_json<'a>(calls: impl Iterator<Item = (usize, &'a ToolCall)>) -> Value {
    calls
        .map(|(i, t)| {
            json!({"index": i, "id": t.id, "type": "function",
                   "function": {"name": t.name, "arguments": t.arguments}})
        })
        .collect()
}

/// The whole answer.
pub fn encode_generation(resp: &ChatResponse, format: ResultFormat, request_id: &str) -> Value {
    let finish = resp.finish_reason().map_or("stop", |f| f.as_str());
    let output = match format {
        ResultFormat::Text => json!({"finish_reason": finish, "text": resp.text()}),
        ResultFormat::Message => {
            let choices: Vec<Value> = resp
                .choices
                .iter()
                .map(|c| {
                    let mut message = json!({
                        "role": "assistant",
                        "content": c.message.content.text(),
                    });
                    if !c.message.tool_calls.is_empty() {
                        message["tool_calls"] =
                            tool_calls_json(c.message.tool_calls.iter().enumerate());
                    }
                    if let Some(r) = &c.message.reasoning {
                        message["reasoning_content"] = Value::String(r.clone());
                    }
                    json!({
                        "finish_reason": c.finish_reason.as_ref().map_or("stop", |f| f.as_str()),
                        "message": message,
                    })
                })
                .collect();
            json!({"choices": choices})
        }
    };
    let mut out = json!({"output": output, "request_id": request_id});
    if let Some(u) = &resp.usage {
        out["usage"] = usage_json(u);
    }
    out
}
