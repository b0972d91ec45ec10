//! Deterministic answers shared by every emulator: reply text, stream pieces, usage, tool-call arguments and embeddings.
//!
//! The rules are documented in the crate docs (`lib.rs`, "Deterministic answers"); keep the two in step.

use serde_json::{Map, Value};

/// Arguments of a streamed tool call are cut into fragments of this many characters.
pub(crate) const ARG_FRAGMENT_CHARS: usize = 8;

/// Tokens charged per input message on top of the pieces of its text.
pub(crate) const TOKENS_PER_MESSAGE: u64 = 4;

/// One input message reduced to what the answer rules look at.
#[derive(Debug, Clone)]
pub(crate) struct Msg {
    pub role: String,
    pub text: String,
}

/// Which tools the request allows.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ToolChoice {
    Auto,
    None,
    Named(String),
}

/// A function tool from the request.
#[derive(Debug, Clone)]
pub(crate) struct ToolDef {
    pub name: String,
    pub parameters: Value,
}

/// A chat request reduced to what the answer rules look at, the same for every vendor.
#[derive(Debug, Clone)]
pub(crate) struct ChatInput {
    pub messages: Vec<Msg>,
    pub tools: Vec<ToolDef>,
    pub tool_choice: ToolChoice,
    pub parallel_tool_calls: bool,
    pub max_tokens: Option<u64>,
    pub stop: Vec<String>,
}

/// Why the answer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Finish {
    Stop,
    Length,
    ToolCalls,
}

impl Finish {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Finish::Stop => "stop",
            Finish::Length => "length",
            Finish::ToolCalls => "tool_calls",
        }
    }
}

/// One tool call of an answer.
#[derive(Debug, Clone)]
pub(crate) struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

impl ToolCall {
    /// The argument string cut into fragments of [`ARG_FRAGMENT_CHARS`] characters (at least one).
    pub(crate) fn fragments(&self) -> Vec<String> {
        let chars: Vec<char> = self.arguments.chars().collect();
        if chars.is_empty() {
            return vec![String::new()];
        }
        chars
            .chunks(ARG_FRAGMENT_CHARS)
            .map(|c| c.iter().collect())
            .collect()
    }
}

/// The emulator's answer to a chat request.
#[derive(Debug, Clone)]
pub(crate) enum Answer {
    Text { pieces: Vec<String>, finish: Finish },
    Tools { calls: Vec<ToolCall> },
}

impl Answer {
    /// The full reply text (empty for tool calls).
    pub(crate) fn text(&self) -> String {
        match self {
            Answer::Text { pieces, .. } => pieces.concat(),
            Answer::Tools { .. } => String::new(),
        }
    }

    pub(crate) fn finish(&self) -> Finish {
        match self {
            Answer::Text { finish, .. } => *finish,
            Answer::Tools { .. } => Finish::ToolCalls,
        }
    }

    /// Completion tokens: the number of text pieces, or for tool calls one per call plus one per argument fragment.
    pub(crate) fn completion_tokens(&self) -> u64 {
        match self {
            Answer::Text { pieces, .. } => pieces.len() as u64,
            Answer::Tools { calls } => calls.iter().map(|c| 1 + c.fragments().len() as u64).sum(),
        }
    }
}

/// Token usage of one answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Usage {
    pub prompt: u64,
    pub completion: u64,
}

impl Usage {
    pub(crate) fn total(self) -> u64 {
        self.prompt + self.completion
    }
}

/// True for characters that count as one piece on their own (CJK ideographs, kana, hangul, CJK and full-width punctuation).
pub(crate) fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3000..=0x303F
        | 0x3040..=0x30FF
        | 0x3400..=0x4DBF
        | 0x4E00..=0x9FFF
        | 0xAC00..=0xD7AF
        | 0xF900..=0xFAFF
        | 0xFF00..=0xFFEF
        | 0x20000..=0x2FA1F)
}

/// Splits text into stream pieces: a run of non-space, non-CJK characters plus the whitespace after it is one piece;
/// each CJK character plus the whitespace after it is one piece; leading whitespace joins the first piece.
/// The pieces concatenate to the input exactly.
pub(crate) fn pieces(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut cur = String::new();
    // What the current piece holds: nothing yet, leading whitespace, a word, a CJK char, or trailing whitespace.
    #[derive(PartialEq, Clone, Copy)]
    enum State {
        Empty,
        Lead,
        Word,
        Cjk,
        Trail,
    }
    let mut state = State::Empty;
    for c in text.chars() {
        if c.is_whitespace() {
            state = match state {
                State::Empty | State::Lead => State::Lead,
                _ => State::Trail,
            };
            cur.push(c);
        } else if is_cjk(c) {
            if matches!(state, State::Word | State::Cjk | State::Trail) {
                out.push(std::mem::take(&mut cur));
            }
            cur.push(c);
            state = State::Cjk;
        } else {
            if matches!(state, State::Cjk | State::Trail) {
                out.push(std::mem::take(&mut cur));
            }
            cur.push(c);
            state = State::Word;
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The text of a message `content`: a string as is; an array of parts as the concatenation of every part's
/// string `text` field (OpenAI `{"type":"text","text":..}` and DashScope `{"text":..}` alike); anything else "".
pub(crate) fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    }
}

/// Reads `messages` (OpenAI or DashScope shape) into [`Msg`]s; entries without a role get role "".
pub(crate) fn read_messages(messages: &[Value]) -> Vec<Msg> {
    messages
        .iter()
        .map(|m| Msg {
            role: m
                .get("role")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            text: content_text(m.get("content")),
        })
        .collect()
}

/// Reads OpenAI-style `tools` (function tools only; others are skipped).
pub(crate) fn read_tools(tools: Option<&Value>) -> Vec<ToolDef> {
    let Some(Value::Array(tools)) = tools else {
        return Vec::new();
    };
    tools
        .iter()
        .filter_map(|t| {
            let f = t.get("function")?;
            Some(ToolDef {
                name: f.get("name")?.as_str()?.to_owned(),
                parameters: f.get("parameters").cloned().unwrap_or(Value::Null),
            })
        })
        .collect()
}

/// Reads `tool_choice`: "none" → None; an object naming a function → Named; anything else → Auto.
pub(crate) fn read_tool_choice(v: Option<&Value>) -> ToolChoice {
    match v {
        Some(Value::String(s)) if s == "none" => ToolChoice::None,
        Some(Value::Object(o)) => o
            .get("function")
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
            .map_or(ToolChoice::Auto, |n| ToolChoice::Named(n.to_owned())),
        _ => ToolChoice::Auto,
    }
}

/// Reads `stop`: a string or an array whose string entries are kept (token-id arrays are ignored).
pub(crate) fn read_stop(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) if !s.is_empty() => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

/// The text of the last `user` message, or "".
pub(crate) fn last_user_text(messages: &[Msg]) -> String {
    messages
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .map(|m| m.text.clone())
        .unwrap_or_default()
}

/// Prompt tokens: for every input message, its number of pieces plus [`TOKENS_PER_MESSAGE`].
pub(crate) fn prompt_tokens(messages: &[Msg]) -> u64 {
    messages
        .iter()
        .map(|m| pieces(&m.text).len() as u64 + TOKENS_PER_MESSAGE)
        .sum()
}

/// Computes the answer; `Err(name)` when `tool_choice` names a tool that is not in `tools`.
pub(crate) fn answer(input: &ChatInput) -> Result<Answer, String> {
    let last = input.messages.last();
    let last_role = last.map(|m| m.role.as_str()).unwrap_or_default();
    if last_role == "user" && !input.tools.is_empty() && input.tool_choice != ToolChoice::None {
        let user_text = last_user_text(&input.messages);
        let chosen: Vec<&ToolDef> = match &input.tool_choice {
            ToolChoice::Named(name) => match input.tools.iter().find(|t| &t.name == name) {
                Some(t) => vec![t],
                None => return Err(name.clone()),
            },
            _ if input.parallel_tool_calls => input.tools.iter().collect(),
            _ => input.tools.iter().take(1).collect(),
        };
        let calls = chosen
            .into_iter()
            .enumerate()
            .map(|(i, t)| ToolCall {
                id: format!("call_{i}"),
                name: t.name.clone(),
                arguments: tool_arguments(&t.parameters, &user_text).to_string(),
            })
            .collect();
        return Ok(Answer::Tools { calls });
    }
    let full = if last_role == "tool" {
        let results: Vec<&str> = input
            .messages
            .iter()
            .rev()
            .take_while(|m| m.role == "tool")
            .map(|m| m.text.as_str())
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        format!("Tool results: {}", results.join("; "))
    } else {
        format!("You said: {}", last_user_text(&input.messages))
    };
    Ok(shape_text(&full, &input.stop, input.max_tokens))
}

/// Applies `stop` (cut before the earliest match, finish stop) then `max_tokens` (keep N pieces, finish length).
pub(crate) fn shape_text(full: &str, stop: &[String], max_tokens: Option<u64>) -> Answer {
    let cut = stop.iter().filter_map(|s| full.find(s.as_str())).min();
    let text = cut.map_or(full, |i| &full[..i]);
    let mut ps = pieces(text);
    let mut finish = Finish::Stop;
    if let Some(max) = max_tokens {
        let max = usize::try_from(max).unwrap_or(usize::MAX);
        if ps.len() > max {
            ps.truncate(max);
            finish = Finish::Length;
        }
    }
    Answer::Text { pieces: ps, finish }
}

/// Builds tool-call arguments from a JSON schema's `properties` (names in lexicographic order).
///
/// The *key string* property (the first name in `required` whose type is string without `enum`, else the first
/// such string property)
/// gets `user_text`; other strings get the first `enum` value or "sample"; integer 1, number 1.5, boolean true,
/// array [], object {}, null null; a property without a usable type gets "sample".
pub(crate) fn tool_arguments(schema: &Value, user_text: &str) -> Value {
    let empty = Map::new();
    let props = schema
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let is_string = |name: &str| {
        props
            .get(name)
            .is_some_and(|p| prop_type(p) == "string" && p.get("enum").is_none())
    };
    let key = schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .find(|n| is_string(n))
        .or_else(|| props.keys().map(String::as_str).find(|n| is_string(n)))
        .map(str::to_owned);
    let mut out = Map::new();
    for (name, p) in props {
        let v = match prop_type(p) {
            "string" if key.as_deref() == Some(name.as_str()) => {
                Value::String(user_text.to_owned())
            }
            "string" => p
                .get("enum")
                .and_then(Value::as_array)
                .and_then(|e| e.first())
                .cloned()
                .unwrap_or_else(|| Value::String("sample".to_owned())),
            "integer" => Value::from(1),
            "number" => Value::from(1.5),
            "boolean" => Value::Bool(true),
            "array" => Value::Array(Vec::new()),
            "object" => Value::Object(Map::new()),
            "null" => Value::Null,
            _ => Value::String("sample".to_owned()),
        };
        out.insert(name.clone(), v);
    }
    Value::Object(out)
}

/// The JSON-schema type of a property: `type` as a string, or the first non-"null" entry of a `type` array.
fn prop_type(p: &Value) -> &str {
    match p.get("type") {
        Some(Value::String(s)) => s,
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null"),
        _ => "",
    }
}

/// FNV-1a 64-bit hash.
pub(crate) fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A deterministic unit-length embedding: seed = FNV-1a-64 of the UTF-8 text; component i is the i-th output of
/// splitmix64 from that seed mapped to [-1, 1) (top 24 bits / 2^23 - 1); the vector is then divided by its L2 norm.
pub(crate) fn embedding(text: &str, dim: usize) -> Vec<f32> {
    let mut state = fnv1a64(text.as_bytes());
    let mut v: Vec<f64> = (0..dim)
        .map(|_| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            (z >> 40) as f64 / f64::from(1u32 << 23) - 1.0
        })
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v.into_iter().map(|x| x as f32).collect()
}

/// A JSON array of f32 values written in their shortest round-trip decimal form (`0.1`, not `0.10000000149011612`).
pub(crate) fn floats_json(v: &[f32]) -> Value {
    Value::Array(
        v.iter()
            .map(|x| {
                format!("{x}")
                    .parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map_or(Value::Null, Value::Number)
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_split_words_and_cjk() {
        assert_eq!(
            pieces("You said: hi there"),
            ["You ", "said: ", "hi ", "there"]
        );
        assert_eq!(pieces("  a b"), ["  a ", "b"]);
        assert_eq!(pieces("你好 ok"), ["你", "好 ", "ok"]);
        assert_eq!(pieces("ab你c"), ["ab", "你", "c"]);
        assert!(pieces("").is_empty());
        for t in ["x  y\n", "你好，世界!", " lead", "trail  "] {
            assert_eq!(pieces(t).concat(), t);
        }
    }

    #[test]
    fn stop_and_max_tokens_shape_text() {
        let a = shape_text("You said: a END b", &["END".into()], None);
        assert_eq!(a.text(), "You said: a ");
        assert_eq!(a.finish(), Finish::Stop);
        let a = shape_text("You said: a b c", &[], Some(2));
        assert_eq!(a.text(), "You said: ");
        assert_eq!(a.finish(), Finish::Length);
    }

    #[test]
    fn tool_arguments_follow_schema() {
        let schema = serde_json::json!({"type":"object","properties":{
            "city":{"type":"string"},"unit":{"type":"string","enum":["c","f"]},"n":{"type":"integer"},
            "x":{"type":"number"},"b":{"type":"boolean"},"l":{"type":"array"},"o":{"type":"object"}},
            "required":["unit","city"]});
        let v = tool_arguments(&schema, "Paris");
        assert_eq!(
            v.to_string(),
            r#"{"b":true,"city":"Paris","l":[],"n":1,"o":{},"unit":"c","x":1.5}"#
        );
    }

    #[test]
    fn embeddings_are_unit_and_deterministic() {
        let a = embedding("hello", 16);
        assert_eq!(a, embedding("hello", 16));
        assert_ne!(a, embedding("world", 16));
        let n: f32 = a.iter().map(|x| x * x).sum();
        assert!((n - 1.0).abs() < 1e-4);
    }
}
