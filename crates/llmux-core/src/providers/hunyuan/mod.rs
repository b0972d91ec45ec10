//! Tencent Hunyuan: the native `ChatCompletions` action (API 3.0, Version 2023-09-01) signed
//! with TC3-HMAC-SHA256, `GetEmbedding`, and the registry row for Hunyuan's OpenAI-compatible
//! endpoint (`hunyuan-openai`). PROTOCOLS.md §3.
//!
//! Requests are built unsigned; [`Provider::authorize`] stamps `X-TC-Timestamp` from the
//! shared clock and signs the exact body bytes that are sent. Errors arrive in HTTP 200
//! bodies (`{"Response":{"Error":{…}}}`); `AuthFailure.SignatureExpire` is marked as a clock
//! skew so the client syncs to the server's `Date` and retries once.

pub mod stream;
pub mod tc3;
pub mod wire;

use std::sync::Arc;

use http::{HeaderMap, HeaderValue};

use super::openai_compat::{
    describe, non_json_error, openai_code, parse_json, CompatSpec, Extensions, OpenAiCompat,
    SearchField, OPENAI,
};
use super::thinking::ThinkingSupport;
use super::{
    check_base_url, header_request_id, join_url, AuthContext, BoxFuture, Capabilities,
    CredentialSpec, Provider, ProviderSpec, StreamParser,
};
use crate::error::{parse_retry_after, Error, ErrorKind, Result};
use crate::http::{HttpRequest, HttpResponse};
use crate::types::*;
use crate::SecretString;

pub use stream::HunyuanStreamParser;

const ID: &str = "hunyuan";
/// The TC3 service name of Hunyuan (the credential scope), whatever host the URL names.
pub const SERVICE: &str = "hunyuan";
/// The API version of `ChatCompletions` and `GetEmbedding`.
pub const VERSION: &str = "2023-09-01";
/// The region sent when none is configured.
pub const DEFAULT_REGION: &str = "ap-guangzhou";

const CREDS: &[CredentialSpec] = &[
    CredentialSpec {
        field: "secret_id",
        env: &["TENCENTCLOUD_SECRET_ID"],
        optional: false,
    },
    CredentialSpec {
        field: "secret_key",
        env: &["TENCENTCLOUD_SECRET_KEY"],
        optional: false,
    },
    CredentialSpec {
        field: "session_token",
        env: &["TENCENTCLOUD_SESSION_TOKEN"],
        optional: true,
    },
];

const MODELS: &[&str] = &[
    "hunyuan-lite",
    "hunyuan-standard",
    "hunyuan-pro",
    "hunyuan-turbo",
    "hunyuan-turbos-latest",
    "hunyuan-functioncall",
    "hunyuan-t1-latest",
    "hunyuan-vision",
    "hunyuan-embedding",
];

/// The registry row for the native (TC3-signed) API.
pub const SPEC: ProviderSpec = ProviderSpec {
    id: ID,
    description: "Tencent Hunyuan, native API 3.0 (TC3-HMAC-SHA256 signed)",
    default_base_url: "https://hunyuan.tencentcloudapi.com/",
    base_url_env: "HUNYUAN_BASE_URL",
    region_env: Some("TENCENTCLOUD_REGION"),
    credentials: CREDS,
    models: MODELS,
    build: |row, s| {
        let secret_id = s.require(row, "secret_id")?.clone();
        let secret_key = s.require(row, "secret_key")?.clone();
        let base = s.base_url.as_deref().unwrap_or(row.default_base_url);
        let mut p = Hunyuan::new(base, secret_id, secret_key)?;
        p.session_token = s
            .credentials
            .get("session_token")
            .filter(|t| !t.is_empty())
            .cloned();
        if let Some(r) = s.region.as_deref().filter(|r| !r.is_empty()) {
            r.clone_into(&mut p.region);
        }
        Ok(Arc::new(p))
    },
};

/// What the native `ChatCompletions` takes for thinking: `EnableThinking` on or off (PROTOCOLS.md
/// 3.3); no budget, no level.
pub const THINKING: ThinkingSupport = ThinkingSupport::SWITCH;

/// Hunyuan's OpenAI-compatible endpoint: `enable_search` is sent as `enable_enhancement`.
pub const OPENAI_COMPAT: CompatSpec = CompatSpec {
    id: "hunyuan-openai",
    extensions: Extensions {
        top_k: false,
        repetition_penalty: false,
        enable_search: true,
    },
    // The compatible endpoint documents no thinking field.
    thinking: ThinkingSupport::NONE,
    search_field: SearchField::EnableEnhancement,
    embeddings_base64: false,
    // The compatible endpoint documents no list limit (the native `GetEmbedding` does).
    embeddings_max_inputs: None,
    map_code: hunyuan_openai_code,
    capabilities: Capabilities {
        list_models: false,
        ..OPENAI.capabilities
    },
    ..OPENAI
};

/// The registry row for the OpenAI-compatible endpoint (console-issued API key).
pub const OPENAI_SPEC: ProviderSpec = ProviderSpec {
    id: "hunyuan-openai",
    description: "Tencent Hunyuan, OpenAI-compatible endpoint (API key)",
    default_base_url: "https://api.hunyuan.cloud.tencent.com/v1",
    base_url_env: "HUNYUAN_OPENAI_BASE_URL",
    region_env: None,
    credentials: &[CredentialSpec {
        field: "api_key",
        env: &["HUNYUAN_API_KEY"],
        optional: false,
    }],
    models: MODELS,
    build: |row, s| OpenAiCompat::from_settings(OPENAI_COMPAT, row, &s),
};

/// Error codes of the compatible endpoint: OpenAI's, then Tencent Cloud's.
pub fn hunyuan_openai_code(code: &str) -> Option<ErrorKind> {
    openai_code(code).or_else(|| hunyuan_code(code))
}

/// Tencent Cloud API 3.0 error codes (PROTOCOLS.md §3.3) to kinds.
pub fn hunyuan_code(code: &str) -> Option<ErrorKind> {
    Some(match code {
        c if c.starts_with("AuthFailure") => ErrorKind::Authentication,
        "RequestSizeLimitExceeded" => ErrorKind::InvalidRequest,
        c if c.ends_with("LimitExceeded") || c.starts_with("LimitExceeded") => {
            ErrorKind::RateLimited
        }
        c if c.contains("ResourcePackExhausted")
            || c.contains("Arrears")
            || c.contains("InsufficientBalance") =>
        {
            ErrorKind::QuotaExhausted
        }
        "FailedOperation.ServiceNotActivated"
        | "FailedOperation.ServiceStop"
        | "ResourceUnavailable.NotActivated" => ErrorKind::PermissionDenied,
        c if c.starts_with("UnauthorizedOperation") || c.starts_with("OperationDenied") => {
            ErrorKind::PermissionDenied
        }
        "FailedOperation.EngineRequestTimeout" | "RequestTimeout" => ErrorKind::Timeout,
        c if c.starts_with("InvalidParameter")
            || c.starts_with("MissingParameter")
            || c.starts_with("UnknownParameter")
            || c == "InvalidAction"
            || c == "InvalidRequest"
            || c == "UnsupportedProtocol"
            || c == "UnsupportedRequest" =>
        {
            ErrorKind::InvalidRequest
        }
        c if c.starts_with("UnsupportedOperation") => ErrorKind::Unsupported,
        c if c.starts_with("ResourceNotFound") => ErrorKind::NotFound,
        c if c.starts_with("InternalError")
            || c.starts_with("FailedOperation")
            || c.starts_with("ResourceInsufficient")
            || c == "ResourceUnavailable" =>
        {
            ErrorKind::UpstreamServer
        }
        _ => return None,
    })
}

/// An error from a `{"Code","Message"}` object; `status` 0 means it came in an HTTP 200.
fn error_from(
    err: wire::WireError,
    request_id: Option<String>,
    status: u16,
    headers: &HeaderMap,
) -> Error {
    let code = err.code.unwrap_or_default();
    let msg = err.message.unwrap_or_default();
    let kind = hunyuan_code(&code).unwrap_or_else(|| {
        if status == 0 {
            ErrorKind::UpstreamServer
        } else {
            crate::error::kind_for_status(status)
        }
    });
    let head = if code == "AuthFailure.SignatureExpire" {
        "the request timestamp was rejected as outside the allowed clock skew".to_owned()
    } else if kind == ErrorKind::Authentication {
        "the SecretId/SecretKey signature was rejected".to_owned()
    } else {
        describe(kind, "")
    };
    let message = match msg.trim() {
        "" => head,
        m => format!("{head}: {m}"),
    };
    let mut e = Error::new(kind, message)
        .with_provider(ID)
        .with_retry_after(parse_retry_after(headers))
        .with_request_id(request_id.or_else(|| header_request_id(headers)));
    if code == "AuthFailure.SignatureExpire" {
        e = e.with_clock_skew();
    }
    e = e.with_code(code);
    if status != 0 {
        e = e.with_status(status);
    }
    e
}

/// The native Hunyuan provider.
#[derive(Debug)]
pub struct Hunyuan {
    base_url: String,
    host: String,
    secret_id: SecretString,
    secret_key: SecretString,
    session_token: Option<SecretString>,
    region: String,
}

/// The `Host` a URL is sent with: its authority without userinfo, with `:port` unless the
/// port is the scheme's default.
pub fn host_of(url: &str) -> Result<String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| Error::config(format!("{ID}: base URL `{url}` has no scheme")))?;
    let authority = rest
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default()
        .rsplit('@')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "https" => ":443",
        _ => ":80",
    };
    let host = authority
        .strip_suffix(default_port)
        .map(str::to_owned)
        .unwrap_or(authority);
    if host.is_empty() {
        return Err(Error::config(format!("{ID}: base URL `{url}` has no host")));
    }
    Ok(host)
}

impl Hunyuan {
    /// A provider for the API endpoint `base_url` (`https://hunyuan.tencentcloudapi.com/`).
    pub fn new(base_url: &str, secret_id: SecretString, secret_key: SecretString) -> Result<Self> {
        let base_url = check_base_url(ID, base_url)?;
        if secret_id.is_empty() || secret_key.is_empty() {
            return Err(Error::config(
                "hunyuan needs TENCENTCLOUD_SECRET_ID and TENCENTCLOUD_SECRET_KEY",
            )
            .with_provider(ID));
        }
        Ok(Hunyuan {
            host: host_of(&base_url)?,
            base_url,
            secret_id,
            secret_key,
            session_token: None,
            region: DEFAULT_REGION.to_owned(),
        })
    }

    /// Sets the temporary-credential session token (`X-TC-Token`).
    pub fn with_session_token(mut self, token: Option<SecretString>) -> Self {
        self.session_token = token;
        self
    }

    /// Sets the region (`X-TC-Region`).
    pub fn with_region(mut self, region: &str) -> Self {
        region.clone_into(&mut self.region);
        self
    }

    /// The host that is signed and sent.
    pub fn host(&self) -> &str {
        &self.host
    }

    fn action<B: serde::Serialize>(&self, action: &str, body: &B) -> Result<HttpRequest> {
        HttpRequest::post_json(join_url(&self.base_url, ""), body)?
            .header("x-tc-action", action)?
            .header("x-tc-version", VERSION)?
            .header("x-tc-region", &self.region)
    }

    /// Signs `req` for `timestamp`: adds `X-TC-Timestamp`, `Authorization` and, with
    /// temporary credentials, `X-TC-Token`. The body bytes are signed as they are.
    pub fn sign(&self, mut req: HttpRequest, timestamp: u64) -> Result<HttpRequest> {
        let content_type = req
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json")
            .to_owned();
        let query = req
            .url
            .split_once('?')
            .map(|(_, q)| q.split('#').next().unwrap_or_default())
            .unwrap_or_default()
            .to_owned();
        let signed = tc3::sign(
            &tc3::Inputs {
                secret_id: self.secret_id.expose(),
                secret_key: self.secret_key.expose(),
                service: SERVICE,
                host: &self.host,
                method: req.method.as_str(),
                query: &query,
                content_type: &content_type,
                extra_headers: &[],
            },
            &req.body,
            timestamp,
        );
        req = req.header("x-tc-timestamp", &timestamp.to_string())?;
        let mut auth = HeaderValue::from_str(&signed.authorization).map_err(|_| {
            Error::config("the SecretId contains characters not allowed in a header")
                .with_provider(ID)
        })?;
        auth.set_sensitive(true);
        req.headers.insert(http::header::AUTHORIZATION, auth);
        if let Some(token) = &self.session_token {
            let mut v = HeaderValue::from_str(token.expose()).map_err(|_| {
                Error::config("the session token contains characters not allowed in a header")
                    .with_provider(ID)
            })?;
            v.set_sensitive(true);
            req.headers.insert("x-tc-token", v);
        }
        Ok(req)
    }

    fn parse_envelope(&self, resp: &HttpResponse) -> Result<wire::WireResponse> {
        let env: wire::Envelope = parse_json(ID, &resp.body)?;
        let mut r = env.response.ok_or_else(|| {
            Error::protocol("hunyuan answered without a `Response` object").with_provider(ID)
        })?;
        if let Some(err) = r.error.take() {
            let status = if resp.status == 200 { 0 } else { resp.status };
            return Err(error_from(err, r.request_id.take(), status, &resp.headers));
        }
        Ok(r)
    }
}

impl Provider for Hunyuan {
    fn id(&self) -> &'static str {
        ID
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            streaming: true,
            tools: true,
            vision: true,
            json_mode: false,
            embeddings: true,
            list_models: false,
        }
    }

    fn base_url(&self) -> &str {
        &self.base_url
    }

    fn build_chat(&self, model: &str, req: &ChatRequest, stream: bool) -> Result<HttpRequest> {
        req.validate_for(model).map_err(|e| e.with_provider(ID))?;
        let body = wire::chat_body(model, req, stream)?;
        self.action("ChatCompletions", &body)
    }

    fn authorize<'a>(
        &'a self,
        req: HttpRequest,
        ctx: &'a AuthContext,
    ) -> BoxFuture<'a, Result<HttpRequest>> {
        Box::pin(std::future::ready(self.sign(req, ctx.clock.unix_secs())))
    }

    fn parse_chat(&self, resp: &HttpResponse) -> Result<ChatResponse> {
        let r = self.parse_envelope(resp)?;
        let request_id = r
            .request_id
            .clone()
            .or_else(|| header_request_id(&resp.headers));
        let choices = r
            .choices
            .into_iter()
            .enumerate()
            .map(|(i, c)| Choice {
                index: i as u32,
                message: c.message.or(c.delta).unwrap_or_default().into_message(),
                finish_reason: wire::finish_reason(c.finish_reason.as_deref()),
            })
            .collect();
        Ok(ChatResponse {
            id: r.id.or_else(|| request_id.clone()).unwrap_or_default(),
            model: String::new(),
            created: r.created,
            choices,
            usage: r.usage.map(wire::WireUsage::usage),
            request_id,
        })
    }

    fn stream_parser(&self, _model: &str, _req: &ChatRequest) -> Box<dyn StreamParser> {
        Box::new(HunyuanStreamParser::new())
    }

    fn classify_error(&self, status: u16, headers: &HeaderMap, body: &[u8]) -> Error {
        match serde_json::from_slice::<wire::Envelope>(body) {
            Ok(wire::Envelope {
                response:
                    Some(wire::WireResponse {
                        error: Some(err),
                        request_id,
                        ..
                    }),
            }) => error_from(err, request_id, status, headers),
            _ => non_json_error(ID, status, headers, body),
        }
    }

    fn build_embeddings(&self, model: &str, req: &EmbeddingRequest) -> Result<HttpRequest> {
        // The body names no model (GetEmbedding serves one), but one must be given.
        req.validate_for(model).map_err(|e| e.with_provider(ID))?;
        let body = wire::embedding_body(req)?;
        self.action("GetEmbedding", &body)
    }

    fn embedding_batch_limit(&self, _model: &str) -> Option<usize> {
        // The `GetEmbedding` reference (API 2023-09-01, as the tencentcloud SDKs carry it):
        // `InputList` "输入数组总长度不超过 50".
        Some(50)
    }

    fn parse_embeddings(&self, resp: &HttpResponse) -> Result<EmbeddingResponse> {
        let r = self.parse_envelope(resp)?;
        let mut data: Vec<Embedding> = r
            .data
            .into_iter()
            .enumerate()
            .map(|(i, d)| Embedding {
                index: d.index.unwrap_or(i as u32),
                vector: d.embedding,
            })
            .collect();
        data.sort_by_key(|e| e.index);
        Ok(EmbeddingResponse {
            model: String::new(),
            data,
            usage: r.usage.map(|u| Usage {
                total_tokens: u.total_tokens.unwrap_or(u.prompt_tokens),
                ..Usage::new(u.prompt_tokens, 0)
            }),
            request_id: r.request_id.or_else(|| header_request_id(&resp.headers)),
        })
    }
}
