//! Zhipu GLM (BigModel open platform, `open.bigmodel.cn/api/paas/v4`): the shared OpenAI codec
//! plus Zhipu's parameter rules, error codes and its two auth schemes — the raw API key as a
//! bearer (default, as zhipuai ≥ 2.1 sends) or a short-lived HS256 JWT derived from it
//! (`auth = "jwt"`). PROTOCOLS.md §6.
//!
//! Selecting the scheme: the `auth` setting (config field `auth`, env `ZHIPUAI_AUTH`) is
//! `api_key` (default) or `jwt`. JWTs are signed in [`Provider::authorize`] from the shared
//! clock, cached until 30 s before they expire, and dropped when the server rejects them.

pub mod wire;

use std::sync::{Arc, Mutex};

use http::HeaderMap;

use super::body::Extra;
use super::openai_compat::{
    self, classify_openai_error, CompatSpec, Extensions, OpenAiCompat, OpenAiStreamParser,
    ThinkingFields, OPENAI,
};
use super::thinking::ThinkingSupport;
use super::{
    check_base_url, join_url, AuthContext, BoxFuture, Capabilities, CredentialSpec, Provider,
    ProviderSettings, ProviderSpec, StreamParser,
};
use crate::codec::Frame;
use crate::error::{Error, ErrorKind, Result};
use crate::http::{HttpRequest, HttpResponse};
use crate::stream::StreamEvent;
use crate::types::*;
use crate::SecretString;

const ID: &str = "zhipu";

/// The token lifetime the SDK uses: 3 minutes of cache plus 30 s, in milliseconds.
pub const JWT_TTL_MS: u64 = 210_000;
/// A cached token is replaced this long before it expires.
pub const JWT_REFRESH_MARGIN_MS: u64 = 30_000;

/// The codec data: OpenAI paths; usage always on the last stream chunk (no `stream_options`);
/// embeddings as floats.
pub const COMPAT: CompatSpec = CompatSpec {
    id: ID,
    key_required: false,
    extensions: Extensions::NONE,
    // `thinking: {"type": "enabled" | "disabled"}` (GLM-4.5 and later); no budget, no level.
    thinking: ThinkingSupport::SWITCH,
    thinking_fields: ThinkingFields::EnableThinking,
    embeddings_base64: false,
    // BigModel's embeddings reference: an input array of at most 64 texts (error 1214
    // "input数组最大不得超过64条" past it).
    embeddings_max_inputs: Some(64),
    map_code: zhipu_code,
    capabilities: Capabilities {
        streaming: true,
        tools: true,
        vision: true,
        json_mode: true,
        embeddings: true,
        list_models: false,
    },
    stream_options: false,
    ..OPENAI
};

const CREDS: &[CredentialSpec] = &[
    CredentialSpec {
        field: "api_key",
        env: &["ZHIPUAI_API_KEY", "ZHIPU_API_KEY"],
        optional: false,
    },
    CredentialSpec {
        field: "auth",
        env: &["ZHIPUAI_AUTH"],
        optional: true,
    },
];

/// The registry row.
pub const SPEC: ProviderSpec = ProviderSpec {
    id: ID,
    description: "Zhipu GLM / BigModel (API key as bearer, or HS256 JWT with auth = \"jwt\")",
    default_base_url: "https://open.bigmodel.cn/api/paas/v4",
    base_url_env: "ZHIPU_BASE_URL",
    region_env: None,
    credentials: CREDS,
    models: &[
        "glm-4-plus",
        "glm-4-air",
        "glm-4-airx",
        "glm-4-flash",
        "glm-4-long",
        "glm-4v-plus",
        "glm-4.5",
        "glm-4.5-air",
        "glm-z1-air",
        "embedding-3",
    ],
    build: |row, s| Ok(Arc::new(Zhipu::from_settings(row, &s)?)),
};

/// Zhipu's numeric error codes (`{"error":{"code":"1113",…}}`) to kinds. The table follows
/// third-party summaries of the platform docs (unverified); unknown codes fall back to the
/// HTTP status.
pub fn zhipu_code(code: &str) -> Option<ErrorKind> {
    Some(match code {
        "1000" | "1001" | "1002" | "1003" | "1004" | "1100" => ErrorKind::Authentication,
        "1110" | "1111" | "1112" | "1120" | "1220" | "1221" | "1222" => ErrorKind::PermissionDenied,
        "1113" | "1304" | "1308" | "1309" | "1310" => ErrorKind::QuotaExhausted,
        "1211" => ErrorKind::NotFound,
        "1212" => ErrorKind::Unsupported,
        "1210" | "1213" | "1214" | "1215" => ErrorKind::InvalidRequest,
        "1261" => ErrorKind::ContextLengthExceeded,
        "1300" | "1301" => ErrorKind::ContentFiltered,
        "1302" | "1303" | "1305" => ErrorKind::RateLimited,
        "500" | "1230" | "1234" => ErrorKind::UpstreamServer,
        _ => return None,
    })
}

/// One JWT and every intermediate value (for the vectors).
#[derive(Clone, PartialEq, Eq)]
pub struct Jwt {
    /// The key id (before the `.`).
    pub id: String,
    /// Header JSON, keys sorted as PyJWT writes them.
    pub header_json: String,
    /// Payload JSON: `api_key`, `exp`, `timestamp` (milliseconds).
    pub payload_json: String,
    /// `b64url(header).b64url(payload)`.
    pub signing_input: String,
    /// `b64url(HMAC-SHA256(secret, signing_input))`.
    pub signature_b64url: String,
    /// The token.
    pub token: SecretString,
}

impl std::fmt::Debug for Jwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwt")
            .field("id", &self.id)
            .field("payload_json", &self.payload_json)
            .finish_non_exhaustive()
    }
}

/// The JWT `zhipuai` builds from `api_key` (`<id>.<secret>`) at `now_ms`, valid `ttl_ms`.
pub fn jwt(api_key: &str, now_ms: u64, ttl_ms: u64) -> Result<Jwt> {
    use super::signing::{b64url_nopad, hmac_sha256, py_json_str};
    let mut parts = api_key.split('.');
    let (Some(id), Some(secret), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(Error::config(
            "zhipu: the API key must be `<id>.<secret>` (exactly one `.`) to build a JWT",
        )
        .with_provider(ID));
    };
    let header_json = r#"{"alg":"HS256","sign_type":"SIGN","typ":"JWT"}"#.to_owned();
    let payload_json = format!(
        r#"{{"api_key":{},"exp":{},"timestamp":{now_ms}}}"#,
        py_json_str(id),
        now_ms.saturating_add(ttl_ms)
    );
    let signing_input = format!(
        "{}.{}",
        b64url_nopad(header_json.as_bytes()),
        b64url_nopad(payload_json.as_bytes())
    );
    let signature_b64url = b64url_nopad(&hmac_sha256(secret.as_bytes(), signing_input.as_bytes()));
    let token = SecretString::new(format!("{signing_input}.{signature_b64url}"));
    Ok(Jwt {
        id: id.to_owned(),
        header_json,
        payload_json,
        signing_input,
        signature_b64url,
        token,
    })
}

/// How requests are authorized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZhipuAuth {
    /// `Authorization: Bearer <api key>` (default).
    ApiKey,
    /// `Authorization: Bearer <HS256 JWT>` built from the key.
    Jwt,
}

impl ZhipuAuth {
    /// Parses the `auth` setting: `api_key` (or `key`, `bearer`) and `jwt` (or `token`).
    pub fn parse(s: &str) -> Result<ZhipuAuth> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "api_key" | "apikey" | "key" | "bearer" => Ok(ZhipuAuth::ApiKey),
            "jwt" | "token" => Ok(ZhipuAuth::Jwt),
            other => Err(Error::config(format!(
                "zhipu: unknown auth scheme `{other}` (expected `api_key` or `jwt`)"
            ))
            .with_provider(ID)),
        }
    }
}

#[derive(Debug)]
struct Cached {
    token: SecretString,
    issued_ms: u64,
    exp_ms: u64,
}

/// The Zhipu provider.
#[derive(Debug)]
pub struct Zhipu {
    compat: OpenAiCompat,
    base_url: String,
    api_key: SecretString,
    auth: ZhipuAuth,
    cache: Mutex<Option<Cached>>,
}

impl Zhipu {
    /// A provider at `base_url` (`…/api/paas/v4`).
    pub fn new(base_url: &str, api_key: SecretString, auth: ZhipuAuth) -> Result<Self> {
        if auth == ZhipuAuth::Jwt {
            // Fail at construction, not on the first request.
            jwt(api_key.expose(), 0, 0)?;
        }
        let base_url = check_base_url(ID, base_url)?;
        Ok(Zhipu {
            compat: OpenAiCompat::new(COMPAT, &base_url, None)?,
            base_url,
            api_key,
            auth,
            cache: Mutex::new(None),
        })
    }

    /// Builds from a registry row and settings (`api_key`, optional `auth`).
    pub fn from_settings(row: &ProviderSpec, s: &ProviderSettings) -> Result<Self> {
        let key = s.require(row, "api_key")?.clone();
        let auth = match s.credentials.get("auth") {
            Some(a) => ZhipuAuth::parse(a.expose())?,
            None => ZhipuAuth::ApiKey,
        };
        Zhipu::new(
            s.base_url.as_deref().unwrap_or(row.default_base_url),
            key,
            auth,
        )
    }

    /// The auth scheme in use.
    pub fn auth(&self) -> ZhipuAuth {
        self.auth
    }

    /// The bearer credential at `now_ms`: the key, or a cached or fresh JWT.
    pub fn credential(&self, now_ms: u64) -> Result<SecretString> {
        if self.auth == ZhipuAuth::ApiKey {
            return Ok(self.api_key.clone());
        }
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cache.as_ref() {
            if c.issued_ms <= now_ms && now_ms.saturating_add(JWT_REFRESH_MARGIN_MS) < c.exp_ms {
                return Ok(c.token.clone());
            }
        }
        let t = jwt(self.api_key.expose(), now_ms, JWT_TTL_MS)?;
        *cache = Some(Cached {
            token: t.token.clone(),
            issued_ms: now_ms,
            exp_ms: now_ms.saturating_add(JWT_TTL_MS),
        });
        Ok(t.token)
    }

    /// The chat body for the upstream `model`: the OpenAI codec plus Zhipu's rules (see
    /// `docs/providers.md`).
    pub fn chat_body<'a>(
        &self,
        model: &'a str,
        req: &'a ChatRequest,
        stream: bool,
    ) -> Result<wire::ZhipuBody<'a>> {
        let mut lacking = Vec::new();
        for (set, name) in [
            (req.presence_penalty.is_some(), "presence_penalty"),
            (req.frequency_penalty.is_some(), "frequency_penalty"),
            (req.seed.is_some(), "seed"),
            (req.n.is_some_and(|n| n > 1), "n (more than one choice)"),
            (req.parallel_tool_calls.is_some(), "parallel_tool_calls"),
            (
                matches!(
                    req.tool_choice,
                    Some(ToolChoice::None | ToolChoice::Required | ToolChoice::Function(_))
                ),
                "tool_choice other than `auto`",
            ),
        ] {
            if set {
                lacking.push(format!("`{name}`"));
            }
        }
        if !lacking.is_empty() {
            return Err(Error::unsupported(format!(
                "zhipu does not accept {}",
                lacking.join(", ")
            ))
            .with_provider(ID));
        }
        let thinking = COMPAT.thinking.resolve(ID, model, req.thinking.as_ref())?;
        let mut base = openai_compat::wire::chat_body(&COMPAT, model, req, stream)?;
        // `n` (one choice at most, checked above) and `user` are not OpenAI's here; thinking
        // is Zhipu's own object.
        base.n = None;
        base.user = None;
        base.enable_thinking = None;
        base.thinking_budget = None;
        base.reasoning_effort = None;
        base.chat_template_kwargs = None;
        // The SDK's sampling rules: temperature <= 0 means greedy (`do_sample: false`), and
        // both values are kept inside the open interval the server accepts.
        let do_sample = req.temperature.filter(|t| *t <= 0.0).map(|_| false);
        base.temperature = base.temperature.map(|t| {
            if t <= 0.0 {
                0.01
            } else if t >= 1.0 {
                0.99
            } else {
                t
            }
        });
        base.top_p = base.top_p.map(|p| if p >= 1.0 { 0.99 } else { p });
        let ex = Extra::new(&req.extra);
        Ok(wire::ZhipuBody {
            base,
            do_sample: ex.typed("do_sample", do_sample),
            user_id: ex.typed("user_id", req.user.as_deref()),
            thinking: ex.typed(
                "thinking",
                thinking.enabled.map(|on| wire::ThinkingType {
                    kind: if on { "enabled" } else { "disabled" },
                }),
            ),
        })
    }
}

/// Wraps the OpenAI parser: a `network_error` finish reason (the model failed mid-answer)
/// becomes an `upstream_server` error instead of a normal end.
struct ZhipuStreamParser {
    inner: OpenAiStreamParser,
}

fn network_error() -> Error {
    Error::new(
        ErrorKind::UpstreamServer,
        "the upstream failed: zhipu ended the answer with finish_reason network_error",
    )
    .with_provider(ID)
    .with_code("network_error")
}

impl StreamParser for ZhipuStreamParser {
    fn on_frame(&mut self, frame: &Frame, out: &mut Vec<StreamEvent>) -> Result<()> {
        self.inner.on_frame(frame, out)
    }

    fn is_done(&self) -> bool {
        self.inner.is_done()
    }

    fn finish(&mut self, out: &mut Vec<StreamEvent>) -> Result<()> {
        let mut tail = Vec::new();
        self.inner.finish(&mut tail)?;
        if let Some(StreamEvent::Finished {
            reason: FinishReason::Other(r),
        }) = tail.last()
        {
            if r == "network_error" {
                out.extend(tail.into_iter().filter(|e| {
                    !matches!(e, StreamEvent::Finished { .. } | StreamEvent::Usage(_))
                }));
                return Err(network_error());
            }
        }
        out.extend(tail);
        Ok(())
    }
}

impl Provider for Zhipu {
    fn id(&self) -> &'static str {
        ID
    }

    fn capabilities(&self) -> Capabilities {
        COMPAT.capabilities
    }

    fn base_url(&self) -> &str {
        &self.base_url
    }

    fn build_chat(&self, model: &str, req: &ChatRequest, stream: bool) -> Result<HttpRequest> {
        req.validate_for(model).map_err(|e| e.with_provider(ID))?;
        let body = self.chat_body(model, req, stream)?;
        HttpRequest::post_json(join_url(&self.base_url, "chat/completions"), &body)?
            .header("accept", "application/json")
    }

    fn authorize<'a>(
        &'a self,
        req: HttpRequest,
        ctx: &'a AuthContext,
    ) -> BoxFuture<'a, Result<HttpRequest>> {
        let signed = self
            .credential(ctx.clock.unix_millis())
            .and_then(|c| req.bearer(&c));
        Box::pin(std::future::ready(signed))
    }

    fn invalidate_credentials(&self) -> bool {
        if self.auth != ZhipuAuth::Jwt {
            return false;
        }
        *self.cache.lock().unwrap_or_else(|p| p.into_inner()) = None;
        true
    }

    fn parse_chat(&self, resp: &HttpResponse) -> Result<ChatResponse> {
        let r = self.compat.parse_chat(resp)?;
        if r.finish_reason() == Some(&FinishReason::Other("network_error".into())) {
            return Err(network_error().with_request_id(r.request_id));
        }
        Ok(r)
    }

    fn stream_parser(&self, _model: &str, _req: &ChatRequest) -> Box<dyn StreamParser> {
        Box::new(ZhipuStreamParser {
            inner: OpenAiStreamParser::new(COMPAT),
        })
    }

    fn classify_error(&self, status: u16, headers: &HeaderMap, body: &[u8]) -> Error {
        let e = classify_openai_error(&COMPAT, status, headers, body);
        // A JWT minted just now that the server calls expired (1003) means our clock is off:
        // the client then syncs to the response's `Date` and retries once.
        if self.auth == ZhipuAuth::Jwt && e.upstream_code() == Some("1003") {
            return e.with_clock_skew();
        }
        e
    }

    fn build_embeddings(&self, model: &str, req: &EmbeddingRequest) -> Result<HttpRequest> {
        req.validate_for(model).map_err(|e| e.with_provider(ID))?;
        if req.text_type.is_some() {
            return Err(
                Error::unsupported("zhipu embeddings do not accept `text_type`").with_provider(ID),
            );
        }
        // `input` is always a list here; `user` is not sent.
        let ex = Extra::new(&req.extra);
        let body = openai_compat::wire::EmbeddingsBody {
            model: ex.typed("model", Some(model)),
            input: ex.typed(
                "input",
                Some(openai_compat::wire::EmbeddingInput::Many(&req.input)),
            ),
            encoding_format: None,
            dimensions: ex.typed("dimensions", req.dimensions),
            user: None,
            extra: ex.fields(&[]),
        };
        HttpRequest::post_json(join_url(&self.base_url, "embeddings"), &body)?
            .header("accept", "application/json")
    }

    fn embedding_batch_limit(&self, _model: &str) -> Option<usize> {
        COMPAT.embeddings_max_inputs
    }

    fn parse_embeddings(&self, resp: &HttpResponse) -> Result<EmbeddingResponse> {
        self.compat.parse_embeddings(resp)
    }
}
