//! Batch input lines: the OpenAI Batch API form (`custom_id`, `method`, `url`, `body`) and the
//! short form (`{"custom_id", "messages"|"prompt", …}`), turned into core [`ChatRequest`]s.
//!
//! Parsing is pure: each line either becomes an [`Item`] or a [`BadLine`] that says why, with its
//! line number; one bad line never stops the others.

use std::collections::HashMap;

use llmux_core::{
    ChatRequest, Content, ContentPart, Message, ResponseFormat, Role, Tool, ToolCall, ToolChoice,
};
use serde_json::{Map, Value};

/// The only endpoint a batch line may name (`url`), as in OpenAI's Batch API.
pub const CHAT_URL: &str = "/v1/chat/completions";

/// One runnable line.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// 1-based line number in the input file.
    pub line: usize,
    /// The caller's id, echoed in the output line.
    pub custom_id: String,
    /// The request, `model` as `provider/model`.
    pub request: ChatRequest,
}

/// A line that cannot run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    /// 1-based line number in the input file.
    pub line: usize,
    /// Why, as one sentence.
    pub reason: String,
}

/// What `-m` says about each line's model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelFlag {
    /// No `-m`: every line names `provider/model` itself.
    None,
    /// `-m provider`: prefixes the line's bare model name (`gpt-4o-mini` → `openai/gpt-4o-mini`).
    Provider(String),
    /// `-m provider/model`: replaces every line's model.
    Model(String),
}

impl ModelFlag {
    /// Reads the `-m` value.
    pub fn parse(flag: Option<&str>) -> ModelFlag {
        match flag {
            None => ModelFlag::None,
            Some(m) if m.contains('/') => ModelFlag::Model(m.to_owned()),
            Some(p) => ModelFlag::Provider(p.to_owned()),
        }
    }

    /// The `provider/model` a line runs with, given the model the line names.
    fn resolve(&self, line_model: Option<&str>) -> Result<String, String> {
        let model = match (self, line_model) {
            (ModelFlag::Model(m), _) => m.clone(),
            (ModelFlag::Provider(p), Some(m)) if !m.contains('/') => format!("{p}/{m}"),
            (_, Some(m)) if m.contains('/') => m.to_owned(),
            (ModelFlag::Provider(_), _) | (ModelFlag::None, None) => {
                return Err(
                    "no model: give `model` as provider/model or pass -m provider/model".into(),
                )
            }
            (ModelFlag::None, Some(m)) => {
                return Err(format!(
                    "model `{m}` names no provider: write provider/model \
                     (for example openai/{m}) or pass -m PROVIDER"
                ))
            }
        };
        crate::request::provider_of(&model).map_err(|e| e.to_string())?;
        Ok(model)
    }
}

/// Every line of the input, parsed: runnable items in input order and the bad lines. Blank
/// lines are skipped silently; a `custom_id` seen before is a bad line (the first one runs).
pub fn parse_all(text: &str, model: &ModelFlag) -> (Vec<Item>, Vec<BadLine>) {
    let mut items = Vec::new();
    let mut bad = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        match parse_line(raw, model) {
            Ok((custom_id, request)) => {
                if let Some(first) = seen.get(&custom_id) {
                    bad.push(BadLine {
                        line,
                        reason: format!(
                            "duplicate custom_id `{custom_id}` (first on line {first})"
                        ),
                    });
                    continue;
                }
                seen.insert(custom_id.clone(), line);
                items.push(Item {
                    line,
                    custom_id,
                    request,
                });
            }
            Err(reason) => bad.push(BadLine { line, reason }),
        }
    }
    (items, bad)
}

/// One line → `(custom_id, request)`, or why not.
pub fn parse_line(raw: &str, model: &ModelFlag) -> Result<(String, ChatRequest), String> {
    let value: Value = serde_json::from_str(raw).map_err(|e| format!("not valid JSON ({e})"))?;
    let Value::Object(mut obj) = value else {
        return Err("not a JSON object".into());
    };
    let custom_id = match obj.remove("custom_id") {
        Some(Value::String(s)) if !s.trim().is_empty() => s,
        Some(Value::String(_)) => return Err("`custom_id` is empty".into()),
        Some(_) => return Err("`custom_id` must be a string".into()),
        None => return Err("no `custom_id`".into()),
    };
    let short_form = !(obj.contains_key("body") || obj.contains_key("url"));
    let body = if short_form { obj } else { openai_body(obj)? };
    let mut request = chat_request(body, short_form)?;
    request.model = model.resolve(Some(request.model.as_str()).filter(|m| !m.is_empty()))?;
    request.validate().map_err(|e| e.message().to_owned())?;
    Ok((custom_id, request))
}

/// The `body` of an OpenAI Batch line, after checking `method` and `url`.
fn openai_body(mut obj: Map<String, Value>) -> Result<Map<String, Value>, String> {
    match obj.remove("method") {
        None => {}
        Some(Value::String(m)) if m.eq_ignore_ascii_case("POST") => {}
        Some(other) => return Err(format!("`method` must be \"POST\", not {other}")),
    }
    match obj.remove("url") {
        Some(Value::String(u)) if u == CHAT_URL || u == "/chat/completions" => {}
        Some(Value::String(u)) => {
            return Err(format!(
                "`url` {u} is not supported; batch runs chat completions ({CHAT_URL})"
            ))
        }
        Some(_) => return Err("`url` must be a string".into()),
        None => return Err(format!("no `url` (expected \"{CHAT_URL}\")")),
    }
    match obj.remove("body") {
        Some(Value::Object(body)) => Ok(body),
        Some(_) => Err("`body` must be a JSON object".into()),
        None => Err("no `body`".into()),
    }
}

/// An OpenAI chat-completions body (plus `prompt` in the short form) → a core request. Fields
/// llmux does not model go to `extra` verbatim; `stream` is dropped (batch answers are whole).
fn chat_request(mut body: Map<String, Value>, short_form: bool) -> Result<ChatRequest, String> {
    let mut req = ChatRequest::default();
    if let Some(m) = body.remove("model") {
        req.model = string("model", m)?;
    }
    let prompt = if short_form {
        body.remove("prompt")
    } else {
        None
    };
    req.messages = match (body.remove("messages"), prompt) {
        (Some(_), Some(_)) => return Err("give `messages` or `prompt`, not both".into()),
        (Some(Value::Array(ms)), None) => ms
            .into_iter()
            .enumerate()
            .map(|(i, m)| message(m).map_err(|e| format!("messages[{i}]: {e}")))
            .collect::<Result<_, _>>()?,
        (Some(_), None) => return Err("`messages` must be an array".into()),
        (None, Some(p)) => vec![Message::user(string("prompt", p)?)],
        (None, None) if short_form => return Err("no `messages` or `prompt`".into()),
        (None, None) => return Err("`body` has no `messages`".into()),
    };
    body.remove("stream");
    body.remove("stream_options");
    for (key, value) in body {
        if value.is_null() {
            continue;
        }
        set_option(&mut req, &key, value)?;
    }
    Ok(req)
}

fn set_option(req: &mut ChatRequest, key: &str, value: Value) -> Result<(), String> {
    match key {
        "temperature" => req.temperature = Some(number(key, &value)?),
        "top_p" => req.top_p = Some(number(key, &value)?),
        "presence_penalty" => req.presence_penalty = Some(number(key, &value)?),
        "frequency_penalty" => req.frequency_penalty = Some(number(key, &value)?),
        "repetition_penalty" => req.repetition_penalty = Some(number(key, &value)?),
        "top_k" => req.top_k = Some(small(key, &value)?),
        "max_tokens" | "max_completion_tokens" => req.max_tokens = Some(small(key, &value)?),
        "n" => req.n = Some(small(key, &value)?),
        "seed" => req.seed = Some(value.as_u64().ok_or(format!("`{key}` must be a number"))?),
        "user" => req.user = Some(string(key, value)?),
        "parallel_tool_calls" => req.parallel_tool_calls = Some(boolean(key, &value)?),
        "enable_search" => req.enable_search = Some(boolean(key, &value)?),
        "stop" => {
            req.stop = match value {
                Value::String(s) => vec![s],
                Value::Array(a) => a
                    .into_iter()
                    .map(|s| string("stop", s))
                    .collect::<Result<_, _>>()?,
                _ => return Err("`stop` must be a string or an array of strings".into()),
            }
        }
        "response_format" => req.response_format = Some(response_format(value)?),
        "tools" => {
            let Value::Array(tools) = value else {
                return Err("`tools` must be an array".into());
            };
            req.tools = tools
                .into_iter()
                .enumerate()
                .map(|(i, t)| tool(t).map_err(|e| format!("tools[{i}]: {e}")))
                .collect::<Result<_, _>>()?;
        }
        "tool_choice" => req.tool_choice = Some(tool_choice(value)?),
        _ => {
            req.extra.insert(key.to_owned(), value);
        }
    }
    Ok(())
}

fn string(key: &str, v: Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s),
        _ => Err(format!("`{key}` must be a string")),
    }
}

fn number(key: &str, v: &Value) -> Result<f64, String> {
    v.as_f64()
        .ok_or_else(|| format!("`{key}` must be a number"))
}

fn small(key: &str, v: &Value) -> Result<u32, String> {
    v.as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| format!("`{key}` must be a non-negative integer"))
}

fn boolean(key: &str, v: &Value) -> Result<bool, String> {
    v.as_bool()
        .ok_or_else(|| format!("`{key}` must be true or false"))
}

fn object(what: &str, v: Value) -> Result<Map<String, Value>, String> {
    match v {
        Value::Object(o) => Ok(o),
        _ => Err(format!("{what} must be an object")),
    }
}

/// An OpenAI message object → a core message.
fn message(v: Value) -> Result<Message, String> {
    let mut m = object("a message", v)?;
    let role = m.remove("role").ok_or("no `role`").and_then(|r| {
        r.as_str()
            .map(str::to_owned)
            .ok_or("`role` must be a string")
    })?;
    let role = Role::parse(&role).map_err(|e| e.message().to_owned())?;
    let content = match m.remove("content") {
        None | Some(Value::Null) => Content::default(),
        Some(Value::String(s)) => Content::Text(s),
        Some(Value::Array(parts)) => Content::Parts(
            parts
                .into_iter()
                .map(content_part)
                .collect::<Result<_, _>>()?,
        ),
        Some(_) => return Err("`content` must be a string or an array of parts".into()),
    };
    let mut msg = Message::user(content);
    msg.role = role;
    if let Some(name) = m.remove("name").filter(|v| !v.is_null()) {
        msg.name = Some(string("name", name)?);
    }
    if let Some(id) = m.remove("tool_call_id").filter(|v| !v.is_null()) {
        msg.tool_call_id = Some(string("tool_call_id", id)?);
    }
    match m.remove("tool_calls") {
        None | Some(Value::Null) => {}
        Some(Value::Array(calls)) => {
            msg.tool_calls = calls.into_iter().map(tool_call).collect::<Result<_, _>>()?;
        }
        Some(_) => return Err("`tool_calls` must be an array".into()),
    }
    Ok(msg)
}

fn content_part(v: Value) -> Result<ContentPart, String> {
    let mut p = object("a content part", v)?;
    match p.get("type").and_then(Value::as_str) {
        Some("text") => Ok(ContentPart::Text {
            text: string("text", p.remove("text").unwrap_or(Value::Null))?,
        }),
        Some("image_url") => match p.remove("image_url") {
            Some(Value::String(url)) => Ok(ContentPart::ImageUrl { url, detail: None }),
            Some(Value::Object(mut img)) => Ok(ContentPart::ImageUrl {
                url: string("image_url.url", img.remove("url").unwrap_or(Value::Null))?,
                detail: img
                    .remove("detail")
                    .and_then(|d| d.as_str().map(str::to_owned)),
            }),
            _ => Err("`image_url` must be an object with `url`".into()),
        },
        Some(other) => Err(format!("content parts of type `{other}` are not supported")),
        None => Err("a content part has no `type`".into()),
    }
}

fn tool_call(v: Value) -> Result<ToolCall, String> {
    let mut c = object("a tool call", v)?;
    let id = string("tool_calls[].id", c.remove("id").unwrap_or(Value::Null))?;
    let mut f = object(
        "`tool_calls[].function`",
        c.remove("function").unwrap_or(Value::Null),
    )?;
    let name = string("function.name", f.remove("name").unwrap_or(Value::Null))?;
    let arguments = match f.remove("arguments") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s,
        Some(other) => other.to_string(),
    };
    Ok(ToolCall {
        id,
        name,
        arguments,
    })
}

fn tool(v: Value) -> Result<Tool, String> {
    let mut t = object("a tool", v)?;
    if let Some(kind) = t.get("type").and_then(Value::as_str) {
        if kind != "function" {
            return Err(format!("tools of type `{kind}` are not supported"));
        }
    }
    let mut f = object("`function`", t.remove("function").unwrap_or(Value::Null))?;
    Ok(Tool {
        name: string("function.name", f.remove("name").unwrap_or(Value::Null))?,
        description: f
            .remove("description")
            .and_then(|d| d.as_str().map(str::to_owned)),
        parameters: f
            .remove("parameters")
            .unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}})),
        strict: f.remove("strict").and_then(|s| s.as_bool()),
    })
}

fn tool_choice(v: Value) -> Result<ToolChoice, String> {
    match v {
        Value::String(s) => match s.as_str() {
            "none" => Ok(ToolChoice::None),
            "auto" => Ok(ToolChoice::Auto),
            "required" => Ok(ToolChoice::Required),
            other => Err(format!("unknown `tool_choice` \"{other}\"")),
        },
        Value::Object(mut o) => {
            let mut f = object(
                "`tool_choice.function`",
                o.remove("function").unwrap_or(Value::Null),
            )?;
            Ok(ToolChoice::Function(string(
                "tool_choice.function.name",
                f.remove("name").unwrap_or(Value::Null),
            )?))
        }
        _ => Err("`tool_choice` must be a string or an object".into()),
    }
}

fn response_format(v: Value) -> Result<ResponseFormat, String> {
    let mut o = object("`response_format`", v)?;
    match o.get("type").and_then(Value::as_str) {
        Some("text") => Ok(ResponseFormat::Text),
        Some("json_object") => Ok(ResponseFormat::JsonObject),
        Some("json_schema") => {
            let mut s = object(
                "`response_format.json_schema`",
                o.remove("json_schema").unwrap_or(Value::Null),
            )?;
            Ok(ResponseFormat::JsonSchema {
                name: string("json_schema.name", s.remove("name").unwrap_or(Value::Null))?,
                schema: s.remove("schema").unwrap_or_else(|| serde_json::json!({})),
                strict: s.remove("strict").and_then(|v| v.as_bool()),
            })
        }
        _ => Err("`response_format.type` must be text, json_object or json_schema".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value, flag: &ModelFlag) -> Result<(String, ChatRequest), String> {
        parse_line(&v.to_string(), flag)
    }

    #[test]
    fn openai_batch_line_becomes_a_request() {
        let line = json!({
            "custom_id": "r1", "method": "POST", "url": "/v1/chat/completions",
            "body": {
                "model": "openai/gpt-4o-mini",
                "messages": [
                    {"role": "developer", "content": "be brief"},
                    {"role": "user", "content": [{"type": "text", "text": "hi"},
                        {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}}]},
                    {"role": "assistant", "content": null, "tool_calls": [
                        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                    {"role": "tool", "tool_call_id": "c1", "content": "42"}
                ],
                "max_completion_tokens": 50, "stop": "END", "temperature": 0.5, "seed": 7,
                "response_format": {"type": "json_object"},
                "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
                "tool_choice": {"type": "function", "function": {"name": "f"}},
                "stream": true, "logprobs": true, "metadata": null
            }
        });
        let (id, req) = parse(line, &ModelFlag::None).unwrap();
        assert_eq!(id, "r1");
        assert_eq!(req.model, "openai/gpt-4o-mini");
        assert_eq!(req.messages.len(), 4);
        assert_eq!(req.messages[0].role, Role::System);
        assert!(req.messages[1].content.has_images());
        assert_eq!(req.messages[2].tool_calls[0].name, "f");
        assert_eq!(req.messages[3].tool_call_id.as_deref(), Some("c1"));
        assert_eq!(req.max_tokens, Some(50));
        assert_eq!(req.stop, ["END"]);
        assert_eq!(req.seed, Some(7));
        assert_eq!(req.response_format, Some(ResponseFormat::JsonObject));
        assert_eq!(req.tool_choice, Some(ToolChoice::Function("f".into())));
        assert_eq!(req.extra.get("logprobs"), Some(&json!(true)));
        assert!(!req.extra.contains_key("stream") && !req.extra.contains_key("metadata"));
    }

    #[test]
    fn short_form_takes_a_prompt_or_messages() {
        let (_, req) = parse(
            json!({"custom_id": "a", "prompt": "hello", "model": "dashscope/qwen-plus", "max_tokens": 5}),
            &ModelFlag::None,
        )
        .unwrap();
        assert_eq!(req.messages, [Message::user("hello")]);
        assert_eq!(req.max_tokens, Some(5));
        let (_, req) = parse(
            json!({"custom_id": "b", "messages": [{"role": "user", "content": "x"}]}),
            &ModelFlag::parse(Some("openai/gpt-4o")),
        )
        .unwrap();
        assert_eq!(req.model, "openai/gpt-4o");
        let err = parse(
            json!({"custom_id": "c", "prompt": "x", "messages": []}),
            &ModelFlag::None,
        )
        .unwrap_err();
        assert!(err.contains("not both"), "{err}");
    }

    #[test]
    fn model_flag_overrides_or_supplies_the_provider() {
        let line = json!({"custom_id": "a", "prompt": "x", "model": "gpt-4o-mini"});
        let err = parse(line.clone(), &ModelFlag::None).unwrap_err();
        assert!(
            err.contains("names no provider") && err.contains("openai/gpt-4o-mini"),
            "{err}"
        );
        let (_, r) = parse(line.clone(), &ModelFlag::parse(Some("openai"))).unwrap();
        assert_eq!(r.model, "openai/gpt-4o-mini");
        let (_, r) = parse(line, &ModelFlag::parse(Some("dashscope/qwen-max"))).unwrap();
        assert_eq!(r.model, "dashscope/qwen-max");
        let err = parse(
            json!({"custom_id": "a", "prompt": "x", "model": "nope/m"}),
            &ModelFlag::None,
        )
        .unwrap_err();
        assert!(err.contains("unknown provider `nope`"), "{err}");
        let err = parse(json!({"custom_id": "a", "prompt": "x"}), &ModelFlag::None).unwrap_err();
        assert!(err.contains("no model"), "{err}");
    }

    #[test]
    fn bad_lines_say_why_with_their_line_number() {
        let text = [
            r#"{"custom_id": "a", "prompt": "x", "model": "openai/m"}"#,
            "",
            "{not json",
            r#"{"custom_id": "a", "prompt": "y", "model": "openai/m"}"#,
            r#"{"prompt": "y", "model": "openai/m"}"#,
            r#"{"custom_id": "u", "method": "POST", "url": "/v1/embeddings", "body": {}}"#,
            r#"{"custom_id": "t", "prompt": "y", "model": "openai/m", "temperature": 9}"#,
            r#"[1]"#,
            r#"{"custom_id": "ok", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "openai/m", "messages": [{"role": "user", "content": "z"}]}}"#,
        ]
        .join("\n");
        let (items, bad) = parse_all(&text, &ModelFlag::None);
        let ids: Vec<_> = items
            .iter()
            .map(|i| (i.line, i.custom_id.as_str()))
            .collect();
        assert_eq!(ids, [(1, "a"), (9, "ok")]);
        let lines: Vec<_> = bad.iter().map(|b| b.line).collect();
        assert_eq!(lines, [3, 4, 5, 6, 7, 8]);
        assert!(bad[0].reason.contains("not valid JSON"), "{bad:?}");
        assert!(
            bad[1]
                .reason
                .contains("duplicate custom_id `a` (first on line 1)"),
            "{bad:?}"
        );
        assert!(bad[2].reason.contains("no `custom_id`"), "{bad:?}");
        assert!(bad[3].reason.contains("/v1/embeddings"), "{bad:?}");
        assert!(bad[4].reason.contains("temperature"), "{bad:?}");
        assert!(bad[5].reason.contains("not a JSON object"), "{bad:?}");
    }
}
