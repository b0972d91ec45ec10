//! Huawei Cloud Pangu (PROTOCOLS.md 5): IAM `POST /v3/auth/tokens`, V1 `POST /v1/{project_id}/deployments/
//! {deployment_id}/chat/completions` and V2 `POST /api/v2/chat/completions`, authenticated by `X-Auth-Token` or
//! APIG `SDK-HMAC-SHA256` signing.

use bytes::Bytes;
use serde_json::{json, Map, Value};

use crate::answer::{self, Answer, ChatInput, Usage};
use crate::auth::apig::{self, SignedRequest};
use crate::auth::iam::{self, Account, Scope};
use crate::reply::{Ctx, Dialect, Incoming, Reply};
use crate::sse;
use crate::Shared;

/// Credentials `EmulatorConfig::new(Vendor::Pangu)` starts with.
pub(crate) const DEFAULT_CREDENTIALS: &[(&str, &str)] = &[
    ("ak", "EMUPANGUAK0000000001"),
    ("domain_id", "d0d1d2d3d4d5d6d7d8d9dadbdcdddedf"),
    ("domain_name", "emu-account"),
    ("password", "emu-password"),
    ("project_id", "0a0b0c0d0e0f00010203040506070809"),
    ("project_name", "cn-southwest-2"),
    ("sk", "emu-pangu-secret-key-0000000000000000000"),
    ("user_id", "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf"),
    ("username", "emu-user"),
];

/// The IAM token path.
pub(crate) const TOKENS: &str = "/v3/auth/tokens";
/// The V2 (OpenAI format) chat path.
const V2_CHAT: &str = "/api/v2/chat/completions";

/// The account the emulator's IAM and AK/SK checks use.
fn account(shared: &Shared) -> Account<'_> {
    let c = |f| shared.auth.credential(f);
    Account {
        username: c("username"),
        password: c("password"),
        user_id: c("user_id"),
        domain_name: c("domain_name"),
        domain_id: c("domain_id"),
        project_name: c("project_name"),
        project_id: c("project_id"),
        ak: c("ak"),
        sk: c("sk"),
    }
}

/// Which chat API a path is: V1 with (project_id, deployment_id), or V2.
enum Api<'a> {
    V1 {
        project: &'a str,
        deployment: &'a str,
    },
    V2,
}

fn api(path: &str) -> Option<Api<'_>> {
    if path == V2_CHAT {
        return Some(Api::V2);
    }
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        ["", "v1", project, "deployments", deployment, "chat", "completions"]
            if !project.is_empty() && !deployment.is_empty() =>
        {
            Some(Api::V1 {
                project,
                deployment,
            })
        }
        _ => None,
    }
}

// ---------------------------------------------------------------- errors

/// Huawei's error body `{"error_code","error_msg","request_id"}`.
pub(crate) fn error(ctx: &Ctx, status: u16, code: &str, message: &str) -> Reply {
    Reply::json(
        ctx,
        status,
        &json!({"error_code": code, "error_msg": message, "request_id": ctx.request_id()}),
    )
}

/// 401 for a missing, unknown or expired `X-Auth-Token`.
fn token_error(ctx: &Ctx) -> Reply {
    error(
        ctx,
        401,
        "APIG.1002",
        "Incorrect token or token resolution failed",
    )
}

fn scope_error(ctx: &Ctx, project: &str) -> Reply {
    error(
        ctx,
        403,
        "APIG.1005",
        &format!("No permissions to request this API: the credentials are not scoped to project {project}"),
    )
}

fn invalid(ctx: &Ctx, message: &str) -> Reply {
    error(ctx, 400, "PANGU.0400", message)
}

/// The vendor's body for an HTTP status (`FaultKind::Status` without a body); Keystone style on the IAM path.
pub(crate) fn status_error(ctx: &Ctx, status: u16) -> Reply {
    let reason = axum::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    if ctx.dialect == Dialect::PanguIam {
        return Reply::json(
            ctx,
            status,
            &json!({"error": {"code": status, "message": format!("{reason}."), "title": reason}}),
        );
    }
    let (code, message) = match status {
        401 => ("APIG.1002", "Incorrect token or token resolution failed"),
        403 => ("APIG.1005", "No permissions to request this API"),
        404 => (
            "APIG.0101",
            "The API does not exist or has not been published in the environment",
        ),
        429 => ("APIG.0308", "The throttling threshold has been reached"),
        502 | 503 => ("APIG.0201", "Backend unavailable"),
        504 => ("APIG.0202", "Backend timeout"),
        s if s >= 500 => ("PANGU.0500", "Internal server error"),
        _ => ("PANGU.0400", "Bad request"),
    };
    error(ctx, status, code, message)
}

/// `FaultKind::QuotaExhausted`: 403 `PANGU.0403`.
pub(crate) fn quota_error(ctx: &Ctx) -> Reply {
    error(
        ctx,
        403,
        "PANGU.0403",
        "Insufficient quota: the account is in arrears or its token quota is used up",
    )
}

/// `FaultKind::ErrorBody200`: 200 with a `PANGU.0500` body.
pub(crate) fn error_body_200(ctx: &Ctx) -> Reply {
    error(ctx, 200, "PANGU.0500", "Internal server error")
}

const FILTER_MESSAGE: &str = "The input or output contains sensitive content";

/// `FaultKind::ErrorEvent` on a non-stream request: 400 `PANGU.0451`.
pub(crate) fn content_filter_error(ctx: &Ctx) -> Reply {
    error(ctx, 400, "PANGU.0451", FILTER_MESSAGE)
}

/// The mid-stream error event: `data: {"error_code":"PANGU.0451",…}`.
pub(crate) fn sse_error_frame(ctx: &Ctx) -> Bytes {
    sse::openai_frame(
        &json!({"error_code": "PANGU.0451", "error_msg": FILTER_MESSAGE, "request_id": ctx.request_id()}),
    )
}

// ---------------------------------------------------------------- auth

/// Authenticates chat requests (`X-Auth-Token`, else `SDK-HMAC-SHA256`); IAM and unknown paths pass through.
pub(crate) fn check_auth(ctx: &Ctx, req: &Incoming<'_>, shared: &Shared) -> Option<Reply> {
    let api = api(req.path)?;
    let acct = account(shared);
    let now_ms = shared.auth.clock.now_unix_ms();
    let project_ok = |scope: &Scope| match (&api, scope) {
        (Api::V2, _) => true,
        (Api::V1 { project, .. }, Scope::Project { id, .. }) => id == project,
        (Api::V1 { .. }, _) => false,
    };
    let denied = |ctx: &Ctx| match &api {
        Api::V1 { project, .. } => scope_error(ctx, project),
        Api::V2 => scope_error(ctx, acct.project_id),
    };
    if let Some(token) = req.header("x-auth-token") {
        if shared.api_keys.iter().any(|k| k == token) {
            return None;
        }
        return match shared.auth.tokens.lookup(token, now_ms) {
            None => Some(token_error(ctx)),
            Some(t) if !project_ok(&t.scope) => Some(denied(ctx)),
            Some(_) => None,
        };
    }
    let signed = req
        .header("authorization")
        .is_some_and(|a| a.trim_start().starts_with(apig::ALGORITHM));
    if !signed {
        return Some(token_error(ctx));
    }
    let headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let sreq = SignedRequest {
        method: req.method,
        path: req.path,
        query: req.query,
        headers: &headers,
        body: req.body,
    };
    if let Err(e) = apig::verify(&sreq, acct.ak, acct.sk, now_ms.div_euclid(1000)) {
        return Some(error(ctx, 401, "APIG.0301", e.message()));
    }
    let scope = Scope::Project {
        id: acct.project_id.to_owned(),
        name: acct.project_name.to_owned(),
    };
    (!project_ok(&scope)).then(|| denied(ctx))
}

// ---------------------------------------------------------------- routes

/// Routes an authenticated Pangu or IAM request.
pub(crate) fn handle(ctx: &Ctx, req: &Incoming<'_>, shared: &Shared) -> Reply {
    if req.path == TOKENS {
        return match req.method {
            "POST" => issue_token(ctx, req, shared),
            _ => status_error(ctx, 405),
        };
    }
    match (req.method, api(req.path)) {
        ("POST", Some(Api::V1 { deployment, .. })) => chat(ctx, req.body, Some(deployment)),
        ("POST", Some(Api::V2)) => chat(ctx, req.body, None),
        _ => status_error(ctx, 404),
    }
}

fn issue_token(ctx: &Ctx, req: &Incoming<'_>, shared: &Shared) -> Reply {
    let acct = account(shared);
    let grant = match iam::check(req.body, &acct) {
        Ok(g) => g,
        Err(e) => return Reply::json(ctx, e.status(), &e.body()),
    };
    let nocatalog = crate::auth::encoding::query_pairs(req.query.unwrap_or_default(), true)
        .iter()
        .any(|(n, v)| n == "nocatalog" && v == "true");
    let (value, token) = shared
        .auth
        .tokens
        .issue(grant.scope.clone(), shared.auth.clock.now_unix_ms());
    let url = req.header("host").map(|h| format!("http://{h}"));
    let catalog = if nocatalog { None } else { url.as_deref() };
    let body = iam::token_body(&grant, &token, &acct, catalog);
    Reply::json(ctx, 201, &body).with_header("x-subject-token", value)
}

/// V1 (`deployment` set, no `model`) or V2 (`model` required) chat.
fn chat(ctx: &Ctx, body: &[u8], deployment: Option<&str>) -> Reply {
    let req: Map<String, Value> = match serde_json::from_slice(body) {
        Ok(Value::Object(o)) => o,
        _ => return invalid(ctx, "The request body is not a valid JSON object."),
    };
    let model = match (deployment, req.get("model").and_then(Value::as_str)) {
        (_, Some(m)) if !m.is_empty() => m.to_owned(),
        (Some(d), _) => d.to_owned(),
        (None, _) => return invalid(ctx, "model is required."),
    };
    let mut messages = match req.get("messages").and_then(Value::as_array) {
        Some(m) if !m.is_empty() => answer::read_messages(m),
        _ => return invalid(ctx, "messages must be a non-empty array."),
    };
    for m in &mut messages {
        if m.role.is_empty() {
            m.role = "user".to_owned();
        }
        if !["system", "user", "assistant", "tool"].contains(&m.role.as_str()) {
            return invalid(ctx, &format!("Invalid role in messages: {:?}.", m.role));
        }
    }
    let max_temperature = if deployment.is_some() { 1.0 } else { 2.0 };
    let in_range = |name: &str, lo: f64, hi: f64| {
        req.get(name)
            .filter(|v| !v.is_null())
            .is_none_or(|v| v.as_f64().is_some_and(|x| (lo..=hi).contains(&x)))
    };
    if !in_range("temperature", 0.0, max_temperature) {
        return invalid(
            ctx,
            &format!("temperature must be within [0, {max_temperature}]."),
        );
    }
    if !in_range("top_p", 0.0, 1.0) {
        return invalid(ctx, "top_p must be within [0, 1].");
    }
    if req
        .get("max_tokens")
        .filter(|v| !v.is_null())
        .is_some_and(|v| v.as_u64().is_none_or(|n| n == 0))
    {
        return invalid(ctx, "max_tokens must be a positive integer.");
    }
    let input = ChatInput {
        tools: answer::read_tools(req.get("tools")),
        tool_choice: answer::read_tool_choice(req.get("tool_choice")),
        parallel_tool_calls: req
            .get("parallel_tool_calls")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        max_tokens: req.get("max_tokens").and_then(Value::as_u64),
        stop: answer::read_stop(req.get("stop")),
        messages,
    };
    let ans = match answer::answer(&input) {
        Ok(a) => a,
        Err(name) => {
            return invalid(
                ctx,
                &format!("tool_choice names a function that is not in tools: {name}."),
            )
        }
    };
    let usage = Usage {
        prompt: answer::prompt_tokens(&input.messages),
        completion: ans.completion_tokens(),
    };
    let usage_json = json!({"prompt_tokens": usage.prompt, "completion_tokens": usage.completion,
                            "total_tokens": usage.total()});
    let id = format!("chatcmpl-emu{:06}", ctx.seq);
    if req.get("stream").and_then(Value::as_bool) != Some(true) {
        let mut message = json!({"role": "assistant", "content": ans.text()});
        if let Answer::Tools { calls } = &ans {
            message["tool_calls"] = calls
                .iter()
                .map(|c| {
                    json!({"id": c.id, "type": "function",
                                "function": {"name": c.name, "arguments": c.arguments}})
                })
                .collect();
        }
        return Reply::json(
            ctx,
            200,
            &json!({"id": id, "object": "chat.completion", "created": ctx.created, "model": model,
                    "choices": [{"index": 0, "message": message, "logprobs": null,
                                 "finish_reason": ans.finish().as_str(), "stop_reason": null}],
                    "usage": usage_json}),
        );
    }
    let chunk = |delta: Value, finish: Option<&str>, usage: Option<&Value>| {
        let mut c = json!({"id": id, "object": "chat.completion.chunk", "created": ctx.created,
                           "model": model,
                           "choices": [{"index": 0, "delta": delta, "logprobs": null,
                                        "finish_reason": finish}]});
        if let Some(u) = usage {
            c["usage"] = u.clone();
        }
        sse::openai_frame(&c)
    };
    let mut frames = Vec::new();
    match &ans {
        Answer::Text { pieces, .. } => {
            frames.push(chunk(
                json!({"role": "assistant", "content": ""}),
                None,
                None,
            ));
            frames.extend(
                pieces
                    .iter()
                    .map(|p| chunk(json!({"content": p}), None, None)),
            );
        }
        Answer::Tools { calls } => {
            for (i, c) in calls.iter().enumerate() {
                let mut delta = json!({"tool_calls": [{"index": i, "id": c.id, "type": "function",
                                        "function": {"name": c.name, "arguments": ""}}]});
                if i == 0 {
                    delta["role"] = json!("assistant");
                    delta["content"] = json!("");
                }
                frames.push(chunk(delta, None, None));
                for f in c.fragments() {
                    frames.push(chunk(
                        json!({"tool_calls": [{"index": i, "function": {"arguments": f}}]}),
                        None,
                        None,
                    ));
                }
            }
        }
    }
    frames.push(chunk(
        json!({}),
        Some(ans.finish().as_str()),
        Some(&usage_json),
    ));
    frames.push(sse::openai_done());
    Reply::sse(ctx, frames)
}
