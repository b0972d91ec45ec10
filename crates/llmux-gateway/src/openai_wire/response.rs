//! [`ChatResponse`] → `chat.completion` (PROTOCOLS §2.3).

use llmux_core::{ChatResponse, Usage};
use serde_json::{json, Value};

/// The OpenAI `usage` object.
pub(crate) fn usage_json(u: &Usage) -> Value {
    json!({
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.total_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens.unwrap_or(0)},
        "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens.unwrap_or(0)},
    })
}

/// The `chat.completion` body; `id`, `created` and `model` are the gateway's.
pub fn encode_chat(resp: &ChatResponse, id: &str, created: i64, model: &str) -> Value {
    let choices: Vec<Value> = resp
        .choices
        .iter()
        .map(|c| {
            let text = c.message.content.text();
            let has_calls = !c.message.tool_calls.is_empty();
            let mut message = json!({
                "role": "assistant",
                "content": if has_calls && text.is_empty() { Value::Null } else { Value::String(text.into_owned()) },
                "refusal": null,
            });
            if has_calls {
                message["tool_calls"] = c
                    .message
                    .tool_calls
                    .iter()
                    .map(|t| {
                        json!({"id": t.id, "type": "function",
                               "function": {"name": t.name, "arguments": t.arguments}})
                    })
                    .collect();
            }
            if let Some(r) = &c.message.reasoning {
                message["reasoning_content"] = Value::String(r.clone());
            }
            json!({
                "index": c.index,
                "message": message,
                "logprobs": null,
                "finish_reason": c.finish_reason.as_ref().map_or("stop", |f| f.as_str()),
            })
        })
        .collect();
    let mut out = json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": choices,
        "system_fingerprint": null,
    });
    if let Some(u) = &resp.usage {
        out["usage"] = usage_json(u);
    }
    out
}
