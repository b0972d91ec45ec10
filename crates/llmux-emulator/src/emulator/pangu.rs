//! Huawei Cloud Pangu (PROTOCOLS.md 5): IAM `POST /v3/auth/tokens`, V1 `POST /v1/{project_id}/deployments/
//! {deployment_id}/chat/completions` and V2 `POST /api/v2/chat/completions`, authenticated by `X-Auth-Token` or
//! APIG `SDK-HMAC-SHA256` signing.

use std::net::SocketAddr;

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::{Base, Dialect, EnvValue, ProviderEnv, VendorEmulator};
use crate::answer::{self, Answer, ChatInput, Usage};
use crate::auth::apig::{self, SignedRequest};
use crate::auth::iam::{self, Account, Scope};
use crate::reply::{Ctx, Incoming, Reply};
use crate::{sse, Shared, Vendor};

/// The Pangu emulator.
#[derive(Debug)]
struct Pangu;

impl Vendor {
    /// Huawei Cloud Pangu (V1 deployments, V2) with Huawei IAM tokens and APIG AK/SK signing;
    /// [`crate::Emulator::base_url`] is `http://127.0.0.1:P` (append `/v1/...`), which is also the IAM endpoint;
    /// provider id `pangu`. Default key: the static `X-Auth-Token` `emu-pangu-token`, which never expires.
    /// Credentials: `username` = `emu-user`, `password` = `emu-password`, `user_id` =
    /// `a0a1a2a3a4a5a6a7a8a9aaabacadaeaf`, `domain_name` = `emu-account`, `domain_id` =
    /// `d0d1d2d3d4d5d6d7d8d9dadbdcdddedf`, `project_name` = `cn-southwest-2`, `project_id` =
    /// `0a0b0c0d0e0f00010203040506070809`, `ak` = `EMUPANGUAK0000000001`, `sk` =
    /// `emu-pangu-secret-key-0000000000000000000`.
    ///
    /// * **IAM** `POST /v3/auth/tokens[?nocatalog=true]` (no auth) with the password identity (user `name` or
    ///   `id`, `password`, `domain.name` or `domain.id` matching the credentials) or `hw_ak_sk`
    ///   (`access.key`/`secret.key` = `ak`/`sk`); scope `project` by `name`/`id`, `domain` by `name`/`id`, or
    ///   none. Success: 201, header `X-Subject-Token: MII<256 base64 characters>`, body `{"token":{"expires_at",
    ///   "issued_at" (`2024-01-01T00:00:00.000000Z`),"methods":[<method>],"user":{domain,id,name,
    ///   password_expires_at},"project"{domain,id,name}|"domain"{id,name},"roles":[],"catalog"}}`; `catalog` (one
    ///   `pangu` service whose endpoint URL is `http://<Host header>`) is left out with `nocatalog=true`. Wrong
    ///   credentials: 401 `{"error":{"code":401,"message":"The username or password is wrong.",
    ///   "title":"Unauthorized"}}`; a body that is not a token request or a scope the account lacks: 400 in the
    ///   same shape. Tokens live 24 h ([`crate::Emulator::set_token_ttl`] changes it for tokens issued
    ///   afterwards) on the emulator clock; [`crate::Emulator::expire_tokens`] forgets every issued token. Token
    ///   requests are logged like any request (path `/v3/auth/tokens`), so a test can count them.
    /// * **Chat** V1 `POST /v1/{project_id}/deployments/{deployment_id}/chat/completions` and V2
    ///   `POST /api/v2/chat/completions` (`model` required). Authentication, in order: `X-Auth-Token` = an
    ///   issued, unexpired token or one of [`crate::EmulatorConfig::api_keys`] (static tokens); otherwise
    ///   `Authorization: SDK-HMAC-SHA256 …` verified per PROTOCOLS.md 5.2 with the `ak`/`sk` credentials (the
    ///   canonical request is rebuilt from the path and query as received and the exact body bytes; `host` and
    ///   `x-sdk-date` must be signed). Failures are 401 `{"error_code","error_msg","request_id"}`: no, unknown
    ///   or expired token → `APIG.1002` "Incorrect token or token resolution failed"; signing problems →
    ///   `APIG.0301` "Incorrect IAM authentication information: …" (`verify aksk signature fail, …` for a wrong
    ///   signature, `signature expired, …` when `X-Sdk-Date` is more than 15 min from the emulator clock, `ak not
    ///   found`, `Authorization format incorrect, …`). On V1, a token not scoped to the path's project (or
    ///   AK/SK with a path project other than `project_id`) → 403 `APIG.1005`.
    /// * **Body and answer** as PROTOCOLS.md 5.3 / the shared rules: `messages` (a missing role is `user`; roles
    ///   system/user/assistant/tool), `temperature` within [0, 1] (V2 [0, 2]), `top_p` [0, 1], `max_tokens` ≥ 1,
    ///   `stop`, `tools`, `tool_choice`, `parallel_tool_calls` (default false); violations → 400 `PANGU.0400`.
    ///   Answer `{"id":"chatcmpl-emu<seq as 6 digits>","object":"chat.completion","created","model"(V2 the
    ///   body's model, V1 the deployment id),"choices":[{"index":0,"message":{"role":"assistant","content"(""
    ///   for tool calls),"tool_calls"?},"logprobs":null,"finish_reason","stop_reason":null}],"usage":{…}}`.
    ///   Stream: `data: {chat.completion.chunk}` frames as OpenAI's (role chunk, one per piece or tool
    ///   fragment), a final chunk with `finish_reason` and `usage`, then `data: [DONE]`. Other paths: 404
    ///   `APIG.0101`.
    /// * **Faults** (apply to IAM requests too unless restricted with `path_contains`): Status without a body →
    ///   401 `APIG.1002`, 403 `APIG.1005`, 404 `APIG.0101`, 429 `APIG.0308`, 502/503 `APIG.0201`, 504
    ///   `APIG.0202`, other 5xx `PANGU.0500`, other 4xx `PANGU.0400` (on `/v3/...` a Keystone-style
    ///   `{"error":{code,message,title}}`); QuotaExhausted → 403 `PANGU.0403`; ErrorBody200 → 200 `PANGU.0500`;
    ///   ErrorEvent → 400 `PANGU.0451` (stream: a `data: {"error_code":"PANGU.0451",…}` event ends it). Request
    ///   ids (`request_id`, `x-request-id`) are the seq as 32 hex digits. The `APIG.*`/`PANGU.*` codes other
    ///   than `APIG.1002` and `APIG.0301` are the emulator's choice (the vendor's are unverified).
    #[expect(
        non_upper_case_globals,
        reason = "vendor constants keep the names of the enum variants they replaced, so callers did not change"
    )]
    pub const Pangu: Vendor = Vendor(&Pangu);
}

impl VendorEmulator for Pangu {
    fn id(&self) -> &'static str {
        "pangu"
    }

    fn default_key(&self) -> &'static str {
        "emu-pangu-token"
    }

    fn default_credentials(&self) -> &'static [(&'static str, &'static str)] {
        &[
            ("ak", "EMUPANGUAK0000000001"),
            ("domain_id", "d0d1d2d3d4d5d6d7d8d9dadbdcdddedf"),
            ("domain_name", "emu-account"),
            ("password", "emu-password"),
            ("project_id", "0a0b0c0d0e0f00010203040506070809"),
            ("project_name", "cn-southwest-2"),
            ("sk", "emu-pangu-secret-key-0000000000000000000"),
            ("user_id", "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf"),
            ("username", "emu-user"),
        ]
    }

    fn base_url(&self, addr: SocketAddr) -> String {
        format!("http://{addr}")
    }

    fn providers(&self) -> &'static [ProviderEnv] {
        &[ProviderEnv {
            id: "pangu",
            base: Base::Vendor,
            vars: &[
                ("PANGU_BASE_URL", EnvValue::BaseUrl),
                ("HUAWEICLOUD_IAM_ENDPOINT", EnvValue::BaseUrl),
                ("HUAWEICLOUD_USERNAME", EnvValue::Credential("username")),
                ("HUAWEICLOUD_PASSWORD", EnvValue::Credential("password")),
                (
                    "HUAWEICLOUD_DOMAIN_NAME",
                    EnvValue::Credential("domain_name"),
                ),
                ("HUAWEICLOUD_PROJECT_ID", EnvValue::Credential("project_id")),
                ("HUAWEICLOUD_REGION", EnvValue::Credential("project_name")),
            ],
        }]
    }

    fn dialect(&self, path: &str) -> &'static dyn Dialect {
        if path.starts_with("/v3/") {
            &Surface { iam: true }
        } else {
            &Surface { iam: false }
        }
    }
}

/// The chat APIs (`iam: false`) or Huawei IAM `/v3/...` (`iam: true`); they differ only in the body of a
/// status fault.
#[derive(Debug)]
struct Surface {
    iam: bool,
}

impl Dialect for Surface {
    fn request_id(&self, seq: u64) -> String {
        format!("{seq:032x}")
    }

    fn check_auth(&self, ctx: &Ctx, req: &Incoming<'_>, shared: &Shared) -> Option<Reply> {
        check_auth(ctx, req, shared)
    }

    fn handle(&self, ctx: &Ctx, req: &Incoming<'_>, shared: &Shared) -> Reply {
        handle(ctx, req, shared)
    }

    /// Keystone style on the IAM paths, APIG codes elsewhere.
    fn status_error(&self, ctx: &Ctx, status: u16) -> Reply {
        let reason = axum::http::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Error");
        if self.iam {
            return Reply::json(
                ctx,
                status,
                &json!({"error": {"code": status, "message": format!("{reason}."), "title": reason}}),
            );
        }
        status_error(ctx, status)
    }

    /// 403 `PANGU.0403`.
    fn quota_error(&self, ctx: &Ctx) -> Reply {
        error(
            ctx,
            403,
            "PANGU.0403",
            "Insufficient quota: the account is in arrears or its token quota is used up",
        )
    }

    /// 200 with a `PANGU.0500` body.
    fn error_body_200(&self, ctx: &Ctx) -> Reply {
        error(ctx, 200, "PANGU.0500", "Internal server error")
    }

    /// 400 `PANGU.0451`.
    fn content_filter_error(&self, ctx: &Ctx) -> Reply {
        error(ctx, 400, "PANGU.0451", FILTER_MESSAGE)
    }

    /// `data: {"error_code":"PANGU.0451",…}`.
    fn stream_error_frame(&self, ctx: &Ctx, _sent: usize) -> Bytes {
        sse::data(
            &json!({"error_code": "PANGU.0451", "error_msg": FILTER_MESSAGE, "request_id": ctx.request_id()}),
        )
    }

    fn malformed_frame(&self, _ctx: &Ctx, _sent: usize) -> Bytes {
        super::openai::malformed_chunk()
    }
}

/// The IAM token path.
const TOKENS: &str = "/v3/auth/tokens";
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
fn error(ctx: &Ctx, status: u16, code: &str, message: &str) -> Reply {
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

/// The APIG body for an HTTP status (`FaultKind::Status` without a body, unknown paths).
fn status_error(ctx: &Ctx, status: u16) -> Reply {
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

const FILTER_MESSAGE: &str = "The input or output contains sensitive content";

// ---------------------------------------------------------------- auth

/// Authenticates chat requests (`X-Auth-Token`, else `SDK-HMAC-SHA256`); IAM and unknown paths pass through.
fn check_auth(ctx: &Ctx, req: &Incoming<'_>, shared: &Shared) -> Option<Reply> {
    let api = api(req.path)?;
    let acct = account(shared);
    let now_ms = shared.clock.now_unix_ms();
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
fn handle(ctx: &Ctx, req: &Incoming<'_>, shared: &Shared) -> Reply {
    if req.path == TOKENS {
        return match req.method {
            "POST" => issue_token(ctx, req, shared),
            _ => ctx.dialect.status_error(ctx, 405),
        };
    }
    match (req.method, api(req.path)) {
        ("POST", Some(Api::V1 { deployment, .. })) => chat(ctx, req.body, Some(deployment)),
        ("POST", Some(Api::V2)) => chat(ctx, req.body, None),
        _ => ctx.dialect.status_error(ctx, 404),
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
        .issue(grant.scope.clone(), shared.clock.now_unix_ms());
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
        sse::data(&c)
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
    frames.push(sse::done());
    Reply::sse(ctx, frames)
}
