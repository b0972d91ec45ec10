//! Ollama native API (PROTOCOLS 7): `/api/chat`, `/api/generate`, `/api/embed`, `/api/embeddings`, `/api/tags`,
//! with NDJSON streams; `/v1/...` is the OpenAI-compatible endpoint (an OpenAI-style [`openai::Spec`]).

use std::net::SocketAddr;

use axum::http::StatusCode;
use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::openai;
use super::{Base, Dialect, EnvValue, ProviderEnv, VendorEmulator};
use crate::answer::{self, Answer, ChatInput, Finish, Msg, ToolChoice, Usage};
use crate::clock::rfc3339_ms;
use crate::ndjson;
use crate::reply::{Ctx, Incoming, Reply, ReplyBody};
use crate::{Shared, Vendor};

/// The Ollama emulator.
#[derive(Debug)]
struct Ollama;

impl Vendor {
    /// Ollama, base `/` ([`crate::Emulator::base_url`] `http://127.0.0.1:P`), OpenAI-compatible `/v1`
    /// ([`crate::Emulator::compat_base_url`]); provider id `ollama` (variable `OLLAMA_HOST`). No authentication
    /// on any path; the default key `ollama` is what Ollama's docs tell OpenAI clients to send. Models:
    /// [`crate::EmulatorConfig::models`] (default [`crate::OLLAMA_MODELS`]).
    ///
    /// * **Endpoints:** `POST /api/chat`, `POST /api/generate`, `POST /api/embed`, `POST /api/embeddings`
    ///   (legacy), `GET /api/tags`, `GET /api/version`, `GET /` ("Ollama is running"); OpenAI-compatible
    ///   `/v1/chat/completions`, `/v1/embeddings` (any model) and `/v1/models`, `/v1/models/{id}` (the
    ///   configured models). Any other path: 404 `404 page not found` (text/plain).
    /// * **Ids:** `x-request-id: req_emu<seq as 12 hex>`, only as a header.
    /// * **Answers:** PROTOCOLS 7. Non-stream `application/json`; stream (`stream` defaults to **true**)
    ///   `application/x-ndjson`, one object per `\n`-terminated line: `{"model","created_at","message":{"role",
    ///   "content":piece},"done":false}` (generate: `response`), tool calls whole in one line with `arguments`
    ///   as a JSON object (first tool only), then `{"done":true,"done_reason":"stop"|"length",
    ///   "total_duration","load_duration","prompt_eval_count","prompt_eval_duration","eval_count",
    ///   "eval_duration"}` (generate adds `context`: token ids 1..=total). Durations are deterministic: load
    ///   1 ms, 0.1 ms per prompt token, 1 ms per completion token. `options.num_predict` (negative = unlimited)
    ///   and `options.stop` shape the reply. `/api/generate` treats `system` + `prompt` as a system and a user
    ///   message; a chat without messages (or a generate without prompt) only loads the model:
    ///   `done_reason: "load"`, empty answer.
    /// * **Errors** `{"error":"…"}`: unknown model → 404 `model 'x' not found` (`x` = `x:latest`); no `model`
    ///   or bad JSON → 400.
    /// * **Embeddings:** `dimensions`, else 768; `/api/embed` returns one vector per input and `[]` for no
    ///   input; legacy `/api/embeddings` one `embedding`, `[]` for an empty prompt.
    /// * **Faults:** streams count NDJSON lines as frames; the mid-stream error is the line `{"error":"an error
    ///   was encountered while running the model: unexpected EOF"}`; `QuotaExhausted` is a plain 429
    ///   `{"error":"quota exhausted"}` (Ollama has no quotas); `ErrorEvent` on a whole answer → 500 with the
    ///   runner error (Ollama does not moderate); `ErrorBody200` → 200 with the runner error.
    #[expect(
        non_upper_case_globals,
        reason = "vendor constants keep the names of the enum variants they replaced, so callers did not change"
    )]
    pub const Ollama: Vendor = Vendor(&Ollama);
}

impl VendorEmulator for Ollama {
    fn id(&self) -> &'static str {
        "ollama"
    }

    fn default_key(&self) -> &'static str {
        "ollama"
    }

    fn default_models(&self) -> &'static [&'static str] {
        crate::OLLAMA_MODELS
    }

    fn base_url(&self, addr: SocketAddr) -> String {
        format!("http://{addr}")
    }

    fn compat_base_url(&self, addr: SocketAddr) -> Option<String> {
        Some(format!("http://{addr}/v1"))
    }

    fn providers(&self) -> &'static [ProviderEnv] {
        &[ProviderEnv {
            id: "ollama",
            base: Base::Vendor,
            vars: &[("OLLAMA_HOST", EnvValue::BaseUrl)],
        }]
    }

    fn dialect(&self, path: &str) -> &'static dyn Dialect {
        if path.starts_with("/v1/") {
            &COMPAT
        } else {
            &Native
        }
    }
}

/// The OpenAI-compatible endpoint `/v1`: no auth, the configured models.
const COMPAT: openai::Spec = openai::Spec {
    bearer_auth: false,
    models_route: Some(openai_models),
    ..openai::OPENAI
};

/// The error Ollama reports when the model runner fails (mid-stream and for `FaultKind::ErrorEvent`).
const RUNNER_ERROR: &str = "an error was encountered while running the model: unexpected EOF";

/// The native API.
#[derive(Debug)]
struct Native;

impl Dialect for Native {
    fn request_id(&self, seq: u64) -> String {
        super::emu_request_id(seq)
    }

    fn check_auth(&self, _ctx: &Ctx, _req: &Incoming<'_>, _shared: &Shared) -> Option<Reply> {
        None
    }

    fn handle(&self, ctx: &Ctx, req: &Incoming<'_>, shared: &Shared) -> Reply {
        handle(ctx, req, &shared.models)
    }

    fn status_error(&self, ctx: &Ctx, status: u16) -> Reply {
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

    /// Ollama has no quotas, so a plain 429.
    fn quota_error(&self, ctx: &Ctx) -> Reply {
        error(ctx, 429, "quota exhausted")
    }

    /// HTTP 200 whose body is `{"error":"…"}`.
    fn error_body_200(&self, ctx: &Ctx) -> Reply {
        error(ctx, 200, RUNNER_ERROR)
    }

    /// Ollama does not moderate, so the runner fails (500).
    fn content_filter_error(&self, ctx: &Ctx) -> Reply {
        error(ctx, 500, RUNNER_ERROR)
    }

    /// The line `{"error":"…"}` after which the stream ends.
    fn stream_error_frame(&self, _ctx: &Ctx, _sent: usize) -> Bytes {
        ndjson::line(&json!({ "error": RUNNER_ERROR }))
    }

    /// A line whose JSON is cut short.
    fn malformed_frame(&self, _ctx: &Ctx, _sent: usize) -> Bytes {
        Bytes::from_static(b"{\"model\":\"malformed\",\"message\":{\"role\":\n")
    }
}

/// The version `/api/version` reports.
const VERSION: &str = "0.6.3";
/// Embedding size when the request names no `dimensions`.
const EMBED_DIM: usize = 768;
/// Nanoseconds charged for loading the model.
const LOAD_NS: u64 = 1_000_000;
/// Nanoseconds charged per prompt token.
const PROMPT_NS_PER_TOKEN: u64 = 100_000;
/// Nanoseconds charged per generated token.
const EVAL_NS_PER_TOKEN: u64 = 1_000_000;

/// Ollama's error body `{"error":"…"}`.
fn error(ctx: &Ctx, status: u16, message: &str) -> Reply {
    Reply::json(ctx, status, &json!({ "error": message }))
}

/// True when `name` is one of `models` (empty = any), treating `x` and `x:latest` as the same model.
fn known(models: &[String], name: &str) -> bool {
    let norm = |m: &str| m.strip_suffix(":latest").unwrap_or(m).to_owned();
    models.is_empty() || models.iter().any(|m| norm(m) == norm(name))
}

/// Routes a native Ollama request.
fn handle(ctx: &Ctx, req: &Incoming<'_>, models: &[String]) -> Reply {
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

/// The compatible endpoint's `GET /v1/models` (the configured models) and `GET /v1/models/{id}`.
fn openai_models(ctx: &Ctx, shared: &Shared, id: Option<&str>) -> Reply {
    let entry = |m: &str| json!({"id": tagged(m), "object": "model", "created": 1_704_067_200, "owned_by": "library"});
    match id {
        None => {
            let data: Vec<Value> = shared.models.iter().map(|m| entry(m)).collect();
            Reply::json(ctx, 200, &json!({"object": "list", "data": data}))
        }
        Some(id) if known(&shared.models, id) => Reply::json(ctx, 200, &entry(id)),
        Some(id) => Reply::json(
            ctx,
            404,
            &json!({"error": {"message": format!("model '{id}' not found"),
                              "type": "api_error", "param": null, "code": null}}),
        ),
    }
}
