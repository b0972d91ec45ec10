//! Ollama native API (PROTOCOLS 7): `/api/chat`, `/api/generate`, `/api/embed`, `/api/embeddings`, `/api/tags`,
//! with NDJSON streams; `/v1/...` is the OpenAI-compatible endpoint (the OpenAI emulator, dialect `OllamaCompat`).
//!
//! No authentication. `stream` defaults to true. Models outside the configured list get 404
//! `{"error":"model 'x' not found"}` (`x` and `x:latest` name the same model).

use axum::http::StatusCode;
use bytes::Bytes;
use serde_json::{json, Map, Value};

use crate::answer::{self, Answer, ChatInput, Finish, Msg, ToolChoice, Usage};
use crate::clock::rfc3339_ms;
use crate::ndjson;
use crate::reply::{Ctx, Dialect, Incoming, Reply, ReplyBody};

/// The version `/api/version` reports.
pub(crate) const VERSION: &str = "0.6.3";
/// Embedding size when the request names no `dimensions`.
pub(crate) const EMBED_DIM: usize = 768;
/// Nanoseconds charged for loading the model.
const LOAD_NS: u64 = 1_000_000;
/// Nanoseconds charged per prompt token.
const PROMPT_NS_PER_TOKEN: u64 = 100_000;
/// Nanoseconds charged per generated token.
const EVAL_NS_PER_TOKEN: u64 = 1_000_000;

/// Ollama's error body `{"error":"…"}`.
pub(crate) fn error(ctx: &Ctx, status: u16, message: &str) -> Reply {
    Reply::json(ctx, status, &json!({ "error": message }))
}

/// The vendor's error body for an HTTP status (used by `FaultKind::Status` without a body).
pub(crate) fn status_error(ctx: &Ctx, status: u16) -> Reply {
    let message = match status {
        503 => "server busy, please try again.  maximum pending requests exceeded".to_owned(),
        s => StatusCode::from_u16(s)
            .ok()
            .and_then(|c| c.canonical_reason())
            .unwrap_or("error")
            .to_lowercase(),
    };
    error(ctx, status, &message)
}

/// `FaultKind::QuotaExhausted`: Ollama has no quotas, so a plain 429.
pub(crate) fn quota_error(ctx: &Ctx) -> Reply {
    error(ctx, 429, "quota exhausted")
}

/// `FaultKind::ErrorBody200`: HTTP 200 whose body is `{"error":"…"}`.
pub(crate) fn error_body_200(ctx: &Ctx) -> Reply {
    error(ctx, 200, ndjson::RUNNER_ERROR)
}

/// `FaultKind::ErrorEvent` on a non-stream request: Ollama does not moderate, so the runner fails (500).
pub(crate) fn content_filter_error(ctx: &Ctx) -> Reply {
    error(ctx, 500, ndjson::RUNNER_ERROR)
}

/// True when `name` is one of `models` (empty = any), treating `x` and `x:latest` as the same model.
fn known(models: &[String], name: &str) -> bool {
    let norm = |m: &str| m.strip_suffix(":latest").unwrap_or(m).to_owned();
    models.is_empty() || models.iter().any(|m| norm(m) == norm(name))
}

/// Routes an Ollama request.
pub(crate) fn handle(ctx: &Ctx, req: &Incoming<'_>, models: &[String]) -> Reply {
    if ctx.dialect == Dialect::OllamaCompat {
        return match (req.method, req.path) {
            ("GET", "/v1/models") => openai_models(ctx, models),
            _ => super::openai::handle(ctx, req),
        };
    }
    match (req.method, req.path) {
        ("GET" | "HEAD", "/") => Reply {
            status: 200,
            content_type: "text/plain; charset=utf-8",
            headers: Vec::new(),
            body: ReplyBody::Full(Bytes::from_static(b"Ollama is running")),
        },
        ("GET", "/api/version") => Reply::json(ctx, 200, &json!({ "version": VERSION })),
        ("GET", "/api/tags") => tags(ctx, models),
        ("POST", "/api/chat") => chat(ctx, req.body, models, false),
        ("POST", "/api/generate") => chat(ctx, req.body, models, true),
        ("POST", "/api/embed") => embed(ctx, req.body, models, false),
        ("POST", "/api/embeddings") => embed(ctx, req.body, models, true),
        _ => Reply {
            status: 404,
            content_type: "text/plain",
            headers: Vec::new(),
            body: ReplyBody::Full(Bytes::from_static(b"404 page not found")),
        },
    }
}

fn parse(ctx: &Ctx, body: &[u8], models: &[String]) -> Result<(Map<String, Value>, String), Reply> {
    let req = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => o,
        Ok(_) => {
            return Err(error(
                ctx,
                400,
                "invalid request body: expected a JSON object",
            ))
        }
        Err(e) => return Err(error(ctx, 400, &format!("invalid request body: {e}"))),
    };
    let model = match req.get("model").and_then(Value::as_str) {
        Some(m) if !m.is_empty() => m.to_owned(),
        _ => return Err(error(ctx, 400, "model is required")),
    };
    if !known(models, &model) {
        return Err(error(ctx, 404, &format!("model '{model}' not found")));
    }
    Ok((req, model))
}

/// Durations (ns) and counts of the final object.
fn counters(usage: Usage) -> Value {
    let prompt_ns = PROMPT_NS_PER_TOKEN * usage.prompt;
    let eval_ns = EVAL_NS_PER_TOKEN * usage.completion;
    json!({"total_duration": LOAD_NS + prompt_ns + eval_ns, "load_duration": LOAD_NS,
           "prompt_eval_count": usage.prompt, "prompt_eval_duration": prompt_ns,
           "eval_count": usage.completion, "eval_duration": eval_ns})
}

fn merge(mut a: Value, b: Value) -> Value {
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}

fn chat(ctx: &Ctx, body: &[u8], models: &[String], generate: bool) -> Reply {
    let (req, model) = match parse(ctx, body, models) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let stream = match req.get("stream") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => return error(ctx, 400, "stream must be a boolean"),
    };
    let messages: Vec<Msg> = if generate {
        let prompt = match req.get("prompt") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(p)) => p.clone(),
            Some(_) => return error(ctx, 400, "prompt must be a string"),
        };
        let mut m = Vec::new();
        if let Some(system) = req.get("system").and_then(Value::as_str) {
            m.push(Msg {
                role: "system".to_owned(),
                text: system.to_owned(),
            });
        }
        if !prompt.is_empty() {
            m.push(Msg {
                role: "user".to_owned(),
                text: prompt,
            });
        }
        m
    } else {
        match req.get("messages") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => answer::read_messages(a),
            Some(_) => return error(ctx, 400, "messages must be an array"),
        }
    };
    let base = json!({"model": model, "created_at": rfc3339_ms(ctx.now_ms)});
    let field = if generate { "response" } else { "message" };
    let text_value = |t: &str| {
        if generate {
            json!(t)
        } else {
            json!({"role": "assistant", "content": t})
        }
    };
    // No prompt at all loads the model and answers nothing (`done_reason: "load"`).
    if messages.iter().all(|m| m.role == "system") {
        let body = merge(
            base,
            json!({field: text_value(""), "done_reason": "load", "done": true}),
        );
        return if stream {
            ndjson::reply(ctx, vec![ndjson::line(&body)])
        } else {
            Reply::json(ctx, 200, &body)
        };
    }
    let options = req.get("options");
    let input = ChatInput {
        tools: if generate {
            Vec::new()
        } else {
            answer::read_tools(req.get("tools"))
        },
        tool_choice: ToolChoice::Auto,
        parallel_tool_calls: false,
        max_tokens: options
            .and_then(|o| o.get("num_predict"))
            .and_then(Value::as_i64)
            .filter(|n| *n >= 0)
            .and_then(|n| u64::try_from(n).ok()),
        stop: answer::read_stop(options.and_then(|o| o.get("stop"))),
        messages,
    };
    let ans = match answer::answer(&input) {
        Ok(a) => a,
        Err(name) => return error(ctx, 400, &format!("tool '{name}' not found")),
    };
    let usage = Usage {
        prompt: answer::prompt_tokens(&input.messages),
        completion: ans.completion_tokens(),
    };
    let done_reason = if ans.finish() == Finish::Length {
        "length"
    } else {
        "stop"
    };
    let mut last = merge(
        merge(
            base.clone(),
            json!({"done": true, "done_reason": done_reason}),
        ),
        counters(usage),
    );
    if generate {
        let context: Vec<u64> = (1..=usage.total()).collect();
        last["context"] = json!(context);
    }
    let tool_calls = match &ans {
        Answer::Tools { calls } => Some(
            calls
                .iter()
                .map(|c| {
                    let args: Value =
                        serde_json::from_str(&c.arguments).unwrap_or_else(|_| json!({}));
                    json!({"function": {"name": c.name, "arguments": args}})
                })
                .collect::<Vec<_>>(),
        ),
        Answer::Text { .. } => None,
    };
    let with_calls = |mut v: Value| {
        if let Some(calls) = &tool_calls {
            v["tool_calls"] = json!(calls);
        }
        v
    };
    if !stream {
        last[field] = with_calls(text_value(&ans.text()));
        return Reply::json(ctx, 200, &reorder(last, field));
    }
    let piece = |v: Value| merge(base.clone(), json!({field: v, "done": false}));
    let mut lines: Vec<Bytes> = match &ans {
        Answer::Text { pieces, .. } => pieces
            .iter()
            .map(|p| ndjson::line(&piece(text_value(p))))
            .collect(),
        Answer::Tools { .. } => vec![ndjson::line(&piece(with_calls(text_value(""))))],
    };
    last[field] = text_value("");
    lines.push(ndjson::line(&reorder(last, field)));
    ndjson::reply(ctx, lines)
}

/// Puts `model`, `created_at` and the answer field first, as Ollama writes them.
fn reorder(v: Value, field: &str) -> Value {
    let Value::Object(mut o) = v else {
        return v;
    };
    let mut out = Map::new();
    for k in ["model", "created_at", field] {
        if let Some(x) = o.remove(k) {
            out.insert(k.to_owned(), x);
        }
    }
    out.extend(o);
    Value::Object(out)
}

fn embed(ctx: &Ctx, body: &[u8], models: &[String], legacy: bool) -> Reply {
    let (req, model) = match parse(ctx, body, models) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let dim = req
        .get("dimensions")
        .and_then(Value::as_u64)
        .filter(|d| *d > 0)
        .and_then(|d| usize::try_from(d).ok())
        .unwrap_or(EMBED_DIM)
        .min(16_384);
    if legacy {
        let prompt = req
            .get("prompt")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let v = if prompt.is_empty() {
            Vec::new()
        } else {
            answer::embedding(prompt, dim)
        };
        return Reply::json(ctx, 200, &json!({"embedding": answer::floats_json(&v)}));
    }
    let texts: Vec<&str> = match req.get("input") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => {
            a.iter().filter_map(Value::as_str).collect()
        }
        Some(_) => return error(ctx, 400, "invalid input type"),
    };
    let tokens: u64 = texts.iter().map(|t| answer::pieces(t).len() as u64).sum();
    let embeddings: Vec<Value> = texts
        .iter()
        .map(|t| answer::floats_json(&answer::embedding(t, dim)))
        .collect();
    Reply::json(
        ctx,
        200,
        &json!({"model": model, "embeddings": embeddings,
                "total_duration": LOAD_NS + PROMPT_NS_PER_TOKEN * tokens, "load_duration": LOAD_NS,
                "prompt_eval_count": tokens}),
    )
}

/// `x` → `x:latest`; names with a tag stay as they are.
fn tagged(name: &str) -> String {
    if name.contains(':') {
        name.to_owned()
    } else {
        format!("{name}:latest")
    }
}

fn tags(ctx: &Ctx, models: &[String]) -> Reply {
    let list: Vec<Value> = models
        .iter()
        .map(|m| {
            let name = tagged(m);
            let family: String = m.chars().take_while(char::is_ascii_alphabetic).collect();
            let tag = name.rsplit(':').next().unwrap_or_default();
            let parameter_size =
                if tag.ends_with('b') && tag.starts_with(|c: char| c.is_ascii_digit()) {
                    tag.to_uppercase()
                } else {
                    "unknown".to_owned()
                };
            json!({"name": name, "model": name, "modified_at": "2024-01-01T00:00:00Z",
                   "size": 1_000_000_000 + answer::fnv1a64(name.as_bytes()) % 1_000_000_000,
                   "digest": crate::auth::encoding::sha256_hex(name.as_bytes()),
                   "details": {"parent_model": "", "format": "gguf", "family": family,
                               "families": [family], "parameter_size": parameter_size,
                               "quantization_level": "Q4_K_M"}})
        })
        .collect();
    Reply::json(ctx, 200, &json!({ "models": list }))
}

fn openai_models(ctx: &Ctx, models: &[String]) -> Reply {
    let data: Vec<Value> = models
        .iter()
        .map(|m| json!({"id": tagged(m), "object": "model", "created": 1_704_067_200, "owned_by": "library"}))
        .collect();
    Reply::json(ctx, 200, &json!({"object": "list", "data": data}))
}
