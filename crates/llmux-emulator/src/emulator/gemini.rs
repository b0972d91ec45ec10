//! Google Gemini API (`/v1beta/models/{model}:generateContent` and its siblings), written from the official
//! `google-genai` SDK's request and response shapes: camelCase JSON (snake_case read too, as Google's parser
//! does), `x-goog-api-key` or `?key=` auth, `alt=sse` streams of whole `GenerateContentResponse` chunks, and
//! Google's `{"error":{code,message,status}}`.

use std::net::SocketAddr;

use base64::Engine as _;
use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::{Base, Dialect, EnvValue, ProviderEnv, VendorEmulator};
use crate::answer::{self, Answer, ChatInput, Finish, Msg, ToolChoice, ToolDef};
use crate::auth::encoding::{query_pairs, sha256};
use crate::reply::{Ctx, Incoming, Reply};
use crate::{Shared, Vendor};

/// The Gemini emulator.
#[derive(Debug)]
struct Gemini;

impl Vendor {
    /// Google Gemini (the Gemini Developer API), base URL `http://127.0.0.1:P` (the SDK and `GEMINI_BASE_URL`
    /// append the API version); provider id `gemini` (`GEMINI_API_KEY`, `GEMINI_BASE_URL`). Default key
    /// `gemini-emulator-key`. Every path is served under the API versions `v1beta`, `v1` (the SDK's default)
    /// and `v1alpha` alike.
    ///
    /// * **Endpoints:** `POST /{v}/models/{model}:generateContent`, `:streamGenerateContent` (SSE with
    ///   `alt=sse`), `:countTokens`, `:embedContent`, `:batchEmbedContents`; `GET /{v}/models` and
    ///   `GET /{v}/models/{model}` (the listed models; any model name is answered by the methods). Any other
    ///   path: 404 `NOT_FOUND`.
    /// * **Auth:** `x-goog-api-key` header, else the `key` query parameter, must be a configured key. As the real
    ///   API answers: no key → 403 `PERMISSION_DENIED` ("Method doesn't allow unregistered callers …"); a wrong
    ///   key → 400 `INVALID_ARGUMENT` "API key not valid. Please pass a valid API key." with an `ErrorInfo`
    ///   detail whose `reason` is `API_KEY_INVALID`.
    /// * **Request** (camelCase; every field is also read under its snake_case name, as Google's JSON parser
    ///   does and as the SDK sends nested config objects such as `thinkingConfig`'s): `contents` (required, non-empty) of `{role: user|model, parts}` (a missing role
    ///   is `user`); a part is one of `text`, `inlineData{mimeType,data}`, `fileData{fileUri}`,
    ///   `functionCall{name,args}` (model turns only), `functionResponse{name,response}` (user turns, right after
    ///   a model turn with as many function calls), with optional `thought`/`thoughtSignature`;
    ///   `systemInstruction` a content; `tools[].functionDeclarations[{name,description,parameters |
    ///   parametersJsonSchema}]` (other tools are accepted and never called; OpenAPI type names such as `STRING`
    ///   are read case-insensitively); `toolConfig.functionCallingConfig{mode: AUTO|ANY|NONE|VALIDATED,
    ///   allowedFunctionNames}`; `generationConfig{temperature 0–2, topP 0–1, topK ≥ 0, maxOutputTokens ≥ 1,
    ///   stopSequences (at most 5), candidateCount ≥ 1, responseMimeType text/plain|application/json|
    ///   text/x.enum, responseSchema | responseJsonSchema, thinkingConfig{thinkingBudget, includeThoughts,
    ///   thinkingLevel}}`; `safetySettings`, `cachedContent`. Violations: 400 `INVALID_ARGUMENT` naming the
    ///   field.
    /// * **Answer:** the shared rules: `systemInstruction` is a system message, a `functionResponse` part a tool
    ///   result (its text the compact JSON of `response`), text parts (not thoughts) give a turn's text. Every
    ///   declared function is called (Gemini calls functions in parallel) unless `mode` is `NONE`; `ANY` with one
    ///   allowed name calls only that one, `allowedFunctionNames` otherwise narrows the declarations. With
    ///   `responseMimeType: application/json` the text is the JSON built from the response schema (as tool
    ///   arguments are), or without one the reply as a JSON string. One candidate whatever `candidateCount` says:
    ///   `{"candidates":[{"content":{"parts":[…],"role":"model"},"finishReason","index":0}],"usageMetadata",
    ///   "modelVersion","responseId"}`; `functionCall` parts carry `name` and `args` (no `id`, as the Gemini API
    ///   sends them); `finishReason` `STOP` (also for function calls and stop sequences) or `MAX_TOKENS`.
    ///   Thinking is on when `thinkingConfig` has `includeThoughts: true` or a `thinkingBudget`, unless that budget
    ///   is 0: its
    ///   text is `"Considering: " + the last user text`, counted in `thoughtsTokenCount` and sent as a first part
    ///   `{"text","thought":true}` only with `includeThoughts`; function-call parts then carry a
    ///   `thoughtSignature`.
    /// * **Usage:** `promptTokenCount` (the shared prompt count, with `promptTokensDetails`),
    ///   `candidatesTokenCount`, `thoughtsTokenCount` (when thinking), `totalTokenCount` = their sum; with
    ///   `cachedContent` set, `cachedContentTokenCount` = half the prompt count, rounded down (part of
    ///   `promptTokenCount`, as the API reports it). `countTokens` (`contents`, or a `generateContentRequest`)
    ///   answers `{"totalTokens"}`.
    /// * **Stream:** `data: <GenerateContentResponse>\r\n\r\n` chunks: thought pieces, then one chunk per text
    ///   piece or one chunk with every function call; each chunk carries the cumulative `usageMetadata`; the
    ///   last one the `finishReason`.
    /// * **Embeddings:** `:embedContent` `{content, outputDimensionality?}` → `{"embedding":{"values"}}`;
    ///   `:batchEmbedContents` `{requests:[{model: "models/<the path's model>", content, …}]}` (at most 100) →
    ///   `{"embeddings":[{"values"}]}`; the text is the parts' texts joined; dimensions `outputDimensionality`
    ///   (1–3072), else 3072 for models named `gemini-embedding*` and 768 otherwise; no usage (the API sends
    ///   none).
    /// * **Errors** `{"error":{"code","message","status"}}`: `Status` faults without a body use 400
    ///   `INVALID_ARGUMENT`, 401 `UNAUTHENTICATED`, 403 `PERMISSION_DENIED`, 404 `NOT_FOUND`, 429
    ///   `RESOURCE_EXHAUSTED`, 500 `INTERNAL`, 503 `UNAVAILABLE`, 504 `DEADLINE_EXCEEDED`. `QuotaExhausted` → 429
    ///   `RESOURCE_EXHAUSTED` "You exceeded your current quota …"; `ErrorEvent` → a 200 answer blocked by
    ///   `promptFeedback.blockReason: "SAFETY"` (no candidates), mid-stream a `data: {"error":{…"INTERNAL"}}`
    ///   chunk; `ErrorBody200` → 200 with an `INTERNAL` error body.
    #[expect(
        non_upper_case_globals,
        reason = "vendor constants keep the names of the enum variants they replaced, so callers did not change"
    )]
    pub const Gemini: Vendor = Vendor(&Gemini);
}

impl VendorEmulator for Gemini {
    fn id(&self) -> &'static str {
        "gemini"
    }

    fn default_key(&self) -> &'static str {
        "gemini-emulator-key"
    }

    fn base_url(&self, addr: SocketAddr) -> String {
        format!("http://{addr}")
    }

    fn providers(&self) -> &'static [ProviderEnv] {
        &[ProviderEnv {
            id: "gemini",
            base: Base::Vendor,
            vars: &[
                ("GEMINI_BASE_URL", EnvValue::BaseUrl),
                ("GEMINI_API_KEY", EnvValue::Key),
            ],
        }]
    }

    fn dialect(&self, _path: &str) -> &'static dyn Dialect {
        &Api
    }
}

/// API versions served.
const VERSIONS: &[&str] = &["v1beta", "v1", "v1alpha"];

/// Models `GET /{v}/models` lists: (name, display name, input limit, output limit, methods).
const MODELS: &[(&str, &str, u64, u64, &[&str])] = &[
    (
        "gemini-2.5-flash",
        "Gemini 2.5 Flash",
        1_048_576,
        65_536,
        &["generateContent", "countTokens"],
    ),
    (
        "gemini-2.5-pro",
        "Gemini 2.5 Pro",
        1_048_576,
        65_536,
        &["generateContent", "countTokens"],
    ),
    (
        "gemini-2.0-flash",
        "Gemini 2.0 Flash",
        1_048_576,
        8_192,
        &["generateContent", "countTokens"],
    ),
    (
        "gemini-embedding-001",
        "Gemini Embedding 001",
        2_048,
        1,
        &["embedContent", "countTokens"],
    ),
    (
        "text-embedding-004",
        "Text Embedding 004",
        2_048,
        1,
        &["embedContent"],
    ),
];

/// Most requests in one `batchEmbedContents`.
const MAX_BATCH: usize = 100;
/// Most stop sequences.
const MAX_STOP_SEQUENCES: usize = 5;

/// The Gemini REST API.
#[derive(Debug)]
struct Api;

impl Dialect for Api {
    fn request_id(&self, seq: u64) -> String {
        format!("emu{seq:012x}")
    }

    fn check_auth(&self, ctx: &Ctx, req: &Incoming<'_>, shared: &Shared) -> Option<Reply> {
        let key = req.header("x-goog-api-key").map(str::to_owned).or_else(|| {
            query_pairs(req.query.unwrap_or_default(), true)
                .into_iter()
                .find(|(n, _)| n == "key")
                .map(|(_, v)| v)
        });
        match key {
            Some(k) if shared.api_keys.contains(&k) => None,
            Some(_) => Some(Reply::json(
                ctx,
                400,
                &json!({"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.",
                    "status": "INVALID_ARGUMENT",
                    "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                                 "reason": "API_KEY_INVALID", "domain": "googleapis.com",
                                 "metadata": {"service": "generativelanguage.googleapis.com"}}]}}),
            )),
            None => Some(error(
                ctx,
                403,
                "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
            )),
        }
    }

    fn handle(&self, ctx: &Ctx, req: &Incoming<'_>, _shared: &Shared) -> Reply {
        let Some((version, rest)) = req
            .path
            .strip_prefix('/')
            .and_then(|p| p.split_once('/'))
            .filter(|(v, _)| VERSIONS.contains(v))
        else {
            return not_found(ctx, req.path);
        };
        let Some(rest) = rest.strip_prefix("models") else {
            return not_found(ctx, req.path);
        };
        match (req.method, rest) {
            ("GET", "") => models(ctx),
            ("GET", r) if r.starts_with('/') && !r[1..].contains([':', '/']) => {
                model(ctx, &r[1..], version)
            }
            ("POST", r) => match r.strip_prefix('/').and_then(|r| r.split_once(':')) {
                Some((m, method)) if !m.is_empty() && !m.contains('/') => {
                    let stream = method == "streamGenerateContent";
                    match method {
                        "generateContent" | "streamGenerateContent" => {
                            generate(ctx, req, m, stream)
                        }
                        "countTokens" => count_tokens(ctx, req.body),
                        "embedContent" => embed(ctx, req.body, m),
                        "batchEmbedContents" => batch_embed(ctx, req.body, m),
                        _ => not_found(ctx, req.path),
                    }
                }
                _ => not_found(ctx, req.path),
            },
            _ => not_found(ctx, req.path),
        }
    }

    fn status_error(&self, ctx: &Ctx, status: u16) -> Reply {
        let message = match status {
            400 => "Request contains an invalid argument.",
            401 => "Request had invalid authentication credentials.",
            403 => "The caller does not have permission",
            404 => "Requested entity was not found.",
            429 => "Resource has been exhausted (e.g. check quota).",
            503 => "The model is overloaded. Please try again later.",
            504 => "The request timed out. Please try again.",
            s if s >= 500 => "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
            _ => "Request contains an invalid argument.",
        };
        error(ctx, status, message)
    }

    fn quota_error(&self, ctx: &Ctx) -> Reply {
        error(
            ctx,
            429,
            "You exceeded your current quota, please check your plan and billing details. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.",
        )
    }

    fn error_body_200(&self, ctx: &Ctx) -> Reply {
        Reply::json(ctx, 200, &error_body(500, "Internal error encountered."))
    }

    /// A 200 answer whose prompt was blocked.
    fn content_filter_error(&self, ctx: &Ctx) -> Reply {
        Reply::json(
            ctx,
            200,
            &json!({"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": [
                        {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": true}]},
                    "usageMetadata": {"promptTokenCount": 0, "totalTokenCount": 0},
                    "responseId": ctx.request_id()}),
        )
    }

    fn stream_error_frame(&self, _ctx: &Ctx, _sent: usize) -> Bytes {
        frame(&error_body(
            500,
            "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
        ))
    }

    fn malformed_frame(&self, _ctx: &Ctx, _sent: usize) -> Bytes {
        Bytes::from_static(b"data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\":\r\n\r\n")
    }
}

/// A field as Google's JSON parser reads it: by its lowerCamelCase name or by the proto's snake_case name (the
/// SDK sends nested config objects, such as `thinkingConfig`'s, in snake_case).
trait Fields {
    fn field(&self, camel: &str) -> Option<&Value>;
}

impl Fields for Map<String, Value> {
    fn field(&self, camel: &str) -> Option<&Value> {
        self.get(camel).or_else(|| {
            let mut snake = String::with_capacity(camel.len() + 4);
            for c in camel.chars() {
                if c.is_ascii_uppercase() {
                    snake.push('_');
                    snake.push(c.to_ascii_lowercase());
                } else {
                    snake.push(c);
                }
            }
            self.get(&snake)
        })
    }
}

impl Fields for Value {
    fn field(&self, camel: &str) -> Option<&Value> {
        self.as_object()?.field(camel)
    }
}

/// One SSE chunk as Gemini writes it: `data: <json>\r\n\r\n`.
fn frame(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\r\n\r\n"))
}

/// Google's canonical status name for an HTTP status.
fn status_name(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        s if s >= 500 => "INTERNAL",
        _ => "FAILED_PRECONDITION",
    }
}

fn error_body(status: u16, message: &str) -> Value {
    json!({"error": {"code": status, "message": message, "status": status_name(status)}})
}

/// The error envelope with this HTTP status.
fn error(ctx: &Ctx, status: u16, message: &str) -> Reply {
    Reply::json(ctx, status, &error_body(status, message))
}

/// 400 `INVALID_ARGUMENT`.
fn invalid(ctx: &Ctx, message: &str) -> Reply {
    error(ctx, 400, message)
}

fn not_found(ctx: &Ctx, path: &str) -> Reply {
    error(
        ctx,
        404,
        &format!("The requested URL {path} was not found on this server."),
    )
}

fn parse_object(body: &[u8]) -> Result<Map<String, Value>, String> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err("Invalid JSON payload received. Expected an object.".to_owned()),
        Err(e) => Err(format!("Invalid JSON payload received. {e}")),
    }
}

/// A thought signature: base64 of SHA-256 over a fixed label and the thought text.
fn thought_signature(thought: &str) -> String {
    let mut input = b"llmux-emulator thought signature\n".to_vec();
    input.extend_from_slice(thought.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha256(&input))
}

/// Lower-cases every `type` of an OpenAPI-style schema (`STRING` → `string`), so the shared argument builder
/// reads it.
fn json_schema(schema: &Value) -> Value {
    match schema {
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| {
                    let v = match (k.as_str(), v) {
                        ("type", Value::String(t)) => Value::String(t.to_ascii_lowercase()),
                        ("type", Value::Array(ts)) => Value::Array(
                            ts.iter()
                                .map(|t| match t {
                                    Value::String(t) => Value::String(t.to_ascii_lowercase()),
                                    other => other.clone(),
                                })
                                .collect(),
                        ),
                        _ => json_schema(v),
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(json_schema).collect()),
        other => other.clone(),
    }
}

fn valid_function_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.:-".contains(c))
}

/// The texts of a content's parts (thoughts left out), joined.
fn parts_text(parts: &[Value]) -> String {
    parts
        .iter()
        .filter(|p| p.get("thought").and_then(Value::as_bool) != Some(true))
        .filter_map(|p| p.get("text").and_then(Value::as_str))
        .collect()
}

/// Validates `systemInstruction` and `contents` into [`Msg`]s.
fn read_contents(req: &Map<String, Value>, required: bool) -> Result<Vec<Msg>, String> {
    let mut msgs = Vec::new();
    match req.field("systemInstruction") {
        None | Some(Value::Null) => {}
        Some(Value::Object(s)) => {
            let parts = s
                .get("parts")
                .and_then(Value::as_array)
                .ok_or("* GenerateContentRequest.system_instruction.parts: parts must be a list")?;
            msgs.push(Msg {
                role: "system".to_owned(),
                text: parts_text(parts),
            });
        }
        Some(_) => {
            return Err(
                "Invalid JSON payload received. Unknown name \"systemInstruction\": Proto field is not repeating, cannot start list."
                    .to_owned(),
            )
        }
    }
    let contents = match req.get("contents") {
        None | Some(Value::Null) if !required => return Ok(msgs),
        None | Some(Value::Null) => {
            return Err("* GenerateContentRequest.contents: contents is not specified".to_owned())
        }
        Some(Value::Array(a)) if a.is_empty() && required => {
            return Err("* GenerateContentRequest.contents: contents is not specified".to_owned())
        }
        Some(Value::Array(a)) => a,
        Some(_) => return Err("Invalid JSON payload received. \"contents\" must be a list.".to_owned()),
    };
    let mut previous_calls = 0usize;
    for (i, c) in contents.iter().enumerate() {
        let at = format!("* GenerateContentRequest.contents[{i}]");
        let role = match c.get("role") {
            None | Some(Value::Null) => "user",
            Some(Value::String(r)) if r == "user" || r == "model" => r.as_str(),
            Some(_) => return Err("Please use a valid role: user, model.".to_owned()),
        };
        let parts = match c.get("parts") {
            Some(Value::Array(p)) if !p.is_empty() => p,
            Some(Value::Array(_)) | None | Some(Value::Null) => {
                return Err(format!("{at}.parts: contents.parts must not be empty."))
            }
            Some(_) => return Err(format!("{at}.parts: parts must be a list")),
        };
        let mut calls = 0usize;
        let mut responses = Vec::new();
        for (j, p) in parts.iter().enumerate() {
            let pat = format!("{at}.parts[{j}]");
            let p = p
                .as_object()
                .ok_or_else(|| format!("{pat}: part must be an object"))?;
            let data: Vec<&str> = [
                "text",
                "inlineData",
                "fileData",
                "functionCall",
                "functionResponse",
                "executableCode",
                "codeExecutionResult",
            ]
            .into_iter()
            .filter(|k| p.field(k).is_some())
            .collect();
            match data.as_slice() {
                [_] => {}
                [] => return Err(format!("{pat}.data: required oneof field 'data' must have one initialized field")),
                _ => return Err(format!("{pat}.data: oneof field 'data' is already set. Cannot set '{}'", data[1])),
            }
            if let Some(t) = p.get("text") {
                if !t.is_string() {
                    return Err(format!("{pat}.text: Invalid value, expected a string"));
                }
            }
            if let Some(d) = p.field("inlineData") {
                if !d.field("mimeType").is_some_and(Value::is_string)
                    || !d.get("data").and_then(Value::as_str).is_some_and(|s| {
                        base64::engine::general_purpose::STANDARD.decode(s).is_ok()
                    })
                {
                    return Err(format!("{pat}.inline_data: mimeType and base64 data are required"));
                }
            }
            if let Some(f) = p.field("functionCall") {
                if role != "model" {
                    return Err(format!("{pat}.function_call: function calls can only be in model turns"));
                }
                if !f.get("name").and_then(Value::as_str).is_some_and(valid_function_name) {
                    return Err(format!("{pat}.function_call.name: Invalid function name."));
                }
                if f.get("args").is_some_and(|a| !a.is_object() && !a.is_null()) {
                    return Err(format!("{pat}.function_call.args: must be an object"));
                }
                calls += 1;
            }
            if let Some(f) = p.field("functionResponse") {
                if !f.get("name").and_then(Value::as_str).is_some_and(valid_function_name) {
                    return Err(format!("{pat}.function_response.name: Invalid function name."));
                }
                let response = f.get("response").filter(|r| r.is_object()).ok_or_else(|| {
                    format!("{pat}.function_response.response: must be an object")
                })?;
                responses.push(response.to_string());
            }
        }
        if !responses.is_empty() {
            if previous_calls == 0 {
                return Err(
                    "Please ensure that function response turn comes immediately after a function call turn."
                        .to_owned(),
                );
            }
            if responses.len() != previous_calls {
                return Err(
                    "Please ensure that the number of function response parts is equal to the number of function call parts of the function call turn."
                        .to_owned(),
                );
            }
        }
        let has_text = parts.iter().any(|p| {
            p.get("thought").and_then(Value::as_bool) != Some(true)
                && (p.get("text").is_some() || p.field("inlineData").is_some() || p.field("fileData").is_some())
        });
        for r in responses.iter() {
            msgs.push(Msg {
                role: "tool".to_owned(),
                text: r.clone(),
            });
        }
        if has_text || role == "model" || responses.is_empty() {
            msgs.push(Msg {
                role: if role == "model" { "assistant" } else { "user" }.to_owned(),
                text: parts_text(parts),
            });
        }
        previous_calls = calls;
    }
    Ok(msgs)
}

/// Function declarations of `tools` (other tools are skipped).
fn read_tools(req: &Map<String, Value>) -> Result<Vec<ToolDef>, String> {
    let list = match req.get("tools") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(l)) => l,
        Some(_) => return Err("Invalid JSON payload received. \"tools\" must be a list.".to_owned()),
    };
    let mut out: Vec<ToolDef> = Vec::new();
    for (i, t) in list.iter().enumerate() {
        let Some(decls) = t.field("functionDeclarations") else {
            continue;
        };
        let decls = decls
            .as_array()
            .ok_or_else(|| format!("* GenerateContentRequest.tools[{i}].function_declarations: must be a list"))?;
        for (j, d) in decls.iter().enumerate() {
            let at = format!("* GenerateContentRequest.tools[{i}].function_declarations[{j}]");
            let name = d.get("name").and_then(Value::as_str).unwrap_or_default();
            if !valid_function_name(name) {
                return Err(format!(
                    "{at}.name: Invalid function name. Must start with a letter or an underscore. Must be a-z, A-Z, 0-9, or contain underscores, dots, colons and dashes, with a maximum length of 128."
                ));
            }
            if out.iter().any(|t| t.name == name) {
                return Err(format!("{at}.name: Duplicate function declaration: {name}"));
            }
            let parameters = match (d.get("parameters"), d.field("parametersJsonSchema")) {
                (Some(_), Some(_)) => {
                    return Err(format!("{at}: only one of parameters and parametersJsonSchema may be set"))
                }
                (Some(p), None) => json_schema(p),
                (None, Some(p)) => p.clone(),
                (None, None) => Value::Null,
            };
            out.push(ToolDef {
                name: name.to_owned(),
                parameters,
            });
        }
    }
    Ok(out)
}

/// Applies `toolConfig.functionCallingConfig` to the declarations: (tools, choice).
fn tool_config(
    req: &Map<String, Value>,
    tools: Vec<ToolDef>,
) -> Result<(Vec<ToolDef>, ToolChoice), String> {
    let Some(cfg) = req
        .field("toolConfig")
        .and_then(|t| t.field("functionCallingConfig"))
        .filter(|c| !c.is_null())
    else {
        return Ok((tools, ToolChoice::Auto));
    };
    let mode = cfg.get("mode").and_then(Value::as_str).unwrap_or("AUTO");
    let allowed: Vec<&str> = match cfg.field("allowedFunctionNames") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => {
            a.iter().filter_map(Value::as_str).collect()
        }
        Some(_) => {
            return Err("* GenerateContentRequest.tool_config.function_calling_config.allowed_function_names: must be a list of strings".to_owned())
        }
    };
    if let Some(unknown) = allowed.iter().find(|n| !tools.iter().any(|t| t.name == **n)) {
        return Err(format!(
            "* GenerateContentRequest.tool_config.function_calling_config.allowed_function_names: function {unknown} is not declared"
        ));
    }
    match mode {
        "NONE" => Ok((tools, ToolChoice::None)),
        "AUTO" | "MODE_UNSPECIFIED" if allowed.is_empty() => Ok((tools, ToolChoice::Auto)),
        "AUTO" | "MODE_UNSPECIFIED" => Err(
            "* GenerateContentRequest.tool_config.function_calling_config.allowed_function_names: allowed_function_names may only be set when mode is ANY or VALIDATED"
                .to_owned(),
        ),
        "ANY" | "VALIDATED" if allowed.len() == 1 => {
            Ok((tools, ToolChoice::Named(allowed[0].to_owned())))
        }
        "ANY" | "VALIDATED" if allowed.is_empty() => Ok((tools, ToolChoice::Auto)),
        "ANY" | "VALIDATED" => Ok((
            tools
                .into_iter()
                .filter(|t| allowed.contains(&t.name.as_str()))
                .collect(),
            ToolChoice::Auto,
        )),
        other => Err(format!(
            "Invalid value at 'tool_config.function_calling_config.mode' (type.googleapis.com/google.ai.generativelanguage.v1beta.FunctionCallingConfig.Mode), \"{other}\""
        )),
    }
}

/// `generationConfig`, validated.
#[derive(Debug, Default)]
struct GenConfig {
    max_tokens: Option<u64>,
    stop: Vec<String>,
    json: Option<Option<Value>>,
    thinking: bool,
    include_thoughts: bool,
}

fn generation_config(req: &Map<String, Value>) -> Result<GenConfig, String> {
    let Some(cfg) = req.field("generationConfig").filter(|c| !c.is_null()) else {
        return Ok(GenConfig::default());
    };
    let cfg = cfg
        .as_object()
        .ok_or("Invalid JSON payload received. \"generationConfig\" must be an object.")?;
    let at = "* GenerateContentRequest.generation_config";
    let range = |name: &str, lo: f64, hi: f64| match cfg.get(name) {
        None | Some(Value::Null) => Ok(()),
        Some(v) if v.as_f64().is_some_and(|x| (lo..=hi).contains(&x)) => Ok(()),
        Some(_) => Err(format!("{at}.{name}: must be between {lo} and {hi}")),
    };
    range("temperature", 0.0, 2.0)?;
    range("topP", 0.0, 1.0)?;
    let positive = |name: &str, min: u64| match cfg.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if n >= min => Ok(Some(n)),
            _ => Err(format!("{at}.{name}: must be an integer of at least {min}")),
        },
    };
    positive("topK", 0)?;
    positive("candidateCount", 1)?;
    let max_tokens = positive("maxOutputTokens", 1)?;
    let stop = match cfg.field("stopSequences") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) if a.len() > MAX_STOP_SEQUENCES => {
            return Err(format!("{at}.stop_sequences: at most {MAX_STOP_SEQUENCES} stop sequences are allowed"))
        }
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => answer::read_stop(cfg.field("stopSequences")),
        Some(_) => return Err(format!("{at}.stop_sequences: must be a list of strings")),
    };
    let json = match cfg.field("responseMimeType").and_then(Value::as_str) {
        None | Some("text/plain" | "text/x.enum") => None,
        Some("application/json") => Some(
            cfg.field("responseJsonSchema")
                .cloned()
                .or_else(|| cfg.field("responseSchema").map(json_schema)),
        ),
        Some(other) => {
            return Err(format!(
                "{at}.response_mime_type: allowed mimetypes are `text/plain`, `application/json`, `application/xml`, `application/yaml` and `text/x.enum`, got {other}"
            ))
        }
    };
    let (thinking, include_thoughts) = match cfg.field("thinkingConfig").filter(|t| !t.is_null()) {
        None => (false, false),
        Some(t) => {
            let include = t.field("includeThoughts").and_then(Value::as_bool) == Some(true);
            let budget = match t.field("thinkingBudget") {
                None | Some(Value::Null) => None,
                Some(b) => Some(
                    b.as_i64()
                        .filter(|b| *b >= -1)
                        .ok_or(format!("{at}.thinking_config.thinking_budget: must be -1 or a non-negative integer"))?,
                ),
            };
            // A zero budget turns thinking off whatever `includeThoughts` says.
            let on = budget != Some(0) && (include || budget.is_some());
            (on, on && include)
        }
    };
    Ok(GenConfig {
        max_tokens,
        stop,
        json,
        thinking,
        include_thoughts,
    })
}

/// `usageMetadata`.
fn usage_json(prompt: u64, candidates: u64, thoughts: u64, cached: Option<u64>) -> Value {
    let mut u = json!({"promptTokenCount": prompt, "candidatesTokenCount": candidates,
                       "totalTokenCount": prompt + candidates + thoughts,
                       "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}]});
    if thoughts > 0 {
        u["thoughtsTokenCount"] = json!(thoughts);
    }
    if let Some(c) = cached {
        u["cachedContentTokenCount"] = json!(c);
    }
    u
}

fn generate(ctx: &Ctx, req: &Incoming<'_>, model: &str, stream: bool) -> Reply {
    let body = match parse_object(req.body) {
        Ok(b) => b,
        Err(m) => return invalid(ctx, &m),
    };
    let parsed = read_contents(&body, true).and_then(|msgs| {
        let tools = read_tools(&body)?;
        let (tools, choice) = tool_config(&body, tools)?;
        Ok((msgs, tools, choice, generation_config(&body)?))
    });
    let (msgs, tools, tool_choice, cfg) = match parsed {
        Ok(p) => p,
        Err(m) => return invalid(ctx, &m),
    };
    let input = ChatInput {
        messages: msgs,
        tools,
        tool_choice,
        parallel_tool_calls: true,
        max_tokens: cfg.max_tokens,
        stop: cfg.stop.clone(),
    };
    let ans = match answer::answer(&input) {
        Ok(a) => a,
        Err(name) => return invalid(ctx, &format!("function {name} is not declared")),
    };
    let user_text = answer::last_user_text(&input.messages);
    let ans = match (&cfg.json, ans) {
        (Some(schema), Answer::Text { .. }) => {
            let text = match schema {
                Some(s) => answer::tool_arguments(s, &user_text).to_string(),
                None => Value::String(format!("You said: {user_text}")).to_string(),
            };
            answer::shape_text(&text, &cfg.stop, cfg.max_tokens)
        }
        (_, ans) => ans,
    };
    let prompt = answer::prompt_tokens(&input.messages);
    let cached = body
        .field("cachedContent")
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty())
        .map(|_| prompt / 2);
    let thought = cfg
        .thinking
        .then(|| format!("Considering: {user_text}"));
    let thought_pieces = thought.as_deref().map(answer::pieces).unwrap_or_default();
    let thoughts = thought_pieces.len() as u64;
    let signature = thought.as_deref().map(thought_signature);
    let finish = match ans.finish() {
        Finish::Length => "MAX_TOKENS",
        Finish::Stop | Finish::ToolCalls => "STOP",
    };
    let call_parts: Vec<Value> = match &ans {
        Answer::Tools { calls } => calls
            .iter()
            .map(|c| {
                let args: Value = serde_json::from_str(&c.arguments).unwrap_or_else(|_| json!({}));
                let mut part = json!({"functionCall": {"name": c.name, "args": args}});
                if let Some(s) = &signature {
                    part["thoughtSignature"] = json!(s);
                }
                part
            })
            .collect(),
        Answer::Text { .. } => Vec::new(),
    };
    let model_version = model.to_owned();
    let response_id = ctx.request_id();
    let chunk = |parts: Vec<Value>, finish: Option<&str>, candidates: u64, thoughts: u64| {
        let mut candidate = json!({"content": {"parts": parts, "role": "model"}, "index": 0});
        if let Some(f) = finish {
            candidate["finishReason"] = json!(f);
        }
        json!({"candidates": [candidate], "usageMetadata": usage_json(prompt, candidates, thoughts, cached),
               "modelVersion": model_version, "responseId": response_id})
    };
    let completion = ans.completion_tokens();
    if !stream {
        let mut parts = Vec::new();
        if cfg.include_thoughts {
            if let Some(t) = &thought {
                parts.push(json!({"text": t, "thought": true}));
            }
        }
        match &ans {
            Answer::Text { .. } => parts.push(json!({"text": ans.text()})),
            Answer::Tools { .. } => parts.extend(call_parts),
        }
        return Reply::json(ctx, 200, &chunk(parts, Some(finish), completion, thoughts));
    }
    let mut chunks = Vec::new();
    if cfg.include_thoughts {
        for (i, p) in thought_pieces.iter().enumerate() {
            chunks.push(chunk(vec![json!({"text": p, "thought": true})], None, 0, i as u64 + 1));
        }
    }
    match &ans {
        Answer::Text { pieces, .. } => {
            for (i, p) in pieces.iter().enumerate() {
                let last = i + 1 == pieces.len();
                chunks.push(chunk(
                    vec![json!({"text": p})],
                    last.then_some(finish),
                    i as u64 + 1,
                    thoughts,
                ));
            }
            if pieces.is_empty() {
                chunks.push(chunk(vec![json!({"text": ""})], Some(finish), 0, thoughts));
            }
        }
        Answer::Tools { .. } => chunks.push(chunk(call_parts, Some(finish), completion, thoughts)),
    }
    let frames = chunks.iter().map(frame).collect();
    Reply::sse(ctx, frames)
}

fn count_tokens(ctx: &Ctx, body: &[u8]) -> Reply {
    let body = match parse_object(body) {
        Ok(b) => b,
        Err(m) => return invalid(ctx, &m),
    };
    let counted = match (body.get("contents"), body.field("generateContentRequest")) {
        (Some(_), Some(_)) => Err("Only one of contents and generate_content_request may be set.".to_owned()),
        (None, Some(Value::Object(g))) => read_contents(g, true),
        (None, Some(_)) => Err("* CountTokensRequest.generate_content_request: must be an object".to_owned()),
        (_, None) => read_contents(&body, false),
    };
    match counted {
        Ok(msgs) => {
            let total = answer::prompt_tokens(&msgs);
            Reply::json(
                ctx,
                200,
                &json!({"totalTokens": total,
                        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": total}]}),
            )
        }
        Err(m) => invalid(ctx, &m),
    }
}

/// The text and dimension of one embedding request.
fn embed_request(r: &Map<String, Value>, model: &str, at: &str) -> Result<(String, usize), String> {
    let parts = r
        .get("content")
        .and_then(|c| c.get("parts"))
        .and_then(Value::as_array)
        .ok_or_else(|| format!("{at}.content: content with parts is required"))?;
    let default = if model.starts_with("gemini-embedding") { 3072 } else { 768 };
    let dim = match r.field("outputDimensionality") {
        None | Some(Value::Null) => default,
        Some(v) => match v.as_u64() {
            Some(d) if (1..=3072).contains(&d) => d,
            _ => return Err(format!("{at}.output_dimensionality: must be between 1 and 3072")),
        },
    };
    Ok((parts_text(parts), usize::try_from(dim).unwrap_or(768)))
}

fn embed(ctx: &Ctx, body: &[u8], model: &str) -> Reply {
    let result = parse_object(body).and_then(|b| embed_request(&b, model, "* EmbedContentRequest"));
    match result {
        Ok((text, dim)) => Reply::json(
            ctx,
            200,
            &json!({"embedding": {"values": answer::floats_json(&answer::embedding(&text, dim))}}),
        ),
        Err(m) => invalid(ctx, &m),
    }
}

fn batch_embed(ctx: &Ctx, body: &[u8], model: &str) -> Reply {
    let body = match parse_object(body) {
        Ok(b) => b,
        Err(m) => return invalid(ctx, &m),
    };
    let requests = match body.get("requests") {
        Some(Value::Array(r)) if r.len() > MAX_BATCH => {
            return invalid(
                ctx,
                &format!("* BatchEmbedContentsRequest.requests: at most {MAX_BATCH} requests can be in one batch"),
            )
        }
        Some(Value::Array(r)) if !r.is_empty() => r,
        _ => return invalid(ctx, "* BatchEmbedContentsRequest.requests: requests must not be empty"),
    };
    let full = format!("models/{model}");
    let mut embeddings = Vec::with_capacity(requests.len());
    for (i, r) in requests.iter().enumerate() {
        let at = format!("* BatchEmbedContentsRequest.requests[{i}]");
        let Some(r) = r.as_object() else {
            return invalid(ctx, &format!("{at}: must be an object"));
        };
        if r.get("model").and_then(Value::as_str) != Some(full.as_str()) {
            return invalid(
                ctx,
                &format!("{at}.model: the model in each request must be the batch's model, {full}"),
            );
        }
        match embed_request(r, model, &at) {
            Ok((text, dim)) => embeddings.push(
                json!({"values": answer::floats_json(&answer::embedding(&text, dim))}),
            ),
            Err(m) => return invalid(ctx, &m),
        }
    }
    Reply::json(ctx, 200, &json!({ "embeddings": embeddings }))
}

fn model_info(m: &(&str, &str, u64, u64, &[&str])) -> Value {
    let (name, display, input, output, methods) = *m;
    json!({"name": format!("models/{name}"), "version": "001", "displayName": display,
           "description": display, "inputTokenLimit": input, "outputTokenLimit": output,
           "supportedGenerationMethods": methods})
}

fn models(ctx: &Ctx) -> Reply {
    let list: Vec<Value> = MODELS.iter().map(model_info).collect();
    Reply::json(ctx, 200, &json!({ "models": list }))
}

fn model(ctx: &Ctx, name: &str, version: &str) -> Reply {
    match MODELS.iter().find(|m| m.0 == name) {
        Some(m) => Reply::json(ctx, 200, &model_info(m)),
        None => error(
            ctx,
            404,
            &format!(
                "models/{name} is not found for API version {version}, or is not supported for generateContent. Call ListModels to see the list of available models and their supported methods."
            ),
        ),
    }
}
