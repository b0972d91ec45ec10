//! iFlytek Spark: the WebSocket chat API (signed URL, one request frame, incremental response
//! frames; PROTOCOLS.md §4) as provider `spark`, and the HTTP OpenAI-compatible endpoint as
//! provider `spark-http`.
//!
//! `spark` is addressed by domain: `-m spark/generalv3.5` connects to `/v3.5/chat` and sends
//! `parameter.chat.domain = "generalv3.5"`. Non-streaming calls fold the stream.

pub mod auth;
pub mod wire;

use std::sync::Arc;

use http::HeaderMap;
use serde::Deserialize;

use super::openai_compat::{
    describe, non_json_error, CompatSpec, Extensions, OpenAiCompat, OpenAiStreamParser,
};
use super::thinking::ThinkingSupport;
use super::{
    header_request_id, AuthContext, Capabilities, CredentialSpec, Framing, Provider, ProviderSpec,
    StreamParser, WsRequest,
};
use crate::codec::Frame;
use crate::error::{kind_for_status, parse_retry_after, Error, ErrorKind, Result};
use crate::http::{HttpRequest, HttpResponse};
use crate::stream::StreamEvent;
use crate::types::{ChatRequest, ChatResponse};
use crate::SecretString;

pub use auth::{sign_url, SignedUrl};
pub use wire::{code_kind, request_frame, SparkStreamParser};

pub(crate) const ID: &str = "spark";
const HTTP_ID: &str = "spark-http";

/// One Spark domain (model) and where it is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Domain {
    /// `parameter.chat.domain`, also the model name llmux users give.
    pub name: &'static str,
    /// The WebSocket path.
    pub path: &'static str,
    /// The largest `max_tokens` it accepts.
    pub max_output: u32,
    /// The product name.
    pub product: &'static str,
}

/// Every documented domain, legacy ones included (PROTOCOLS.md §4.1).
pub const DOMAINS: &[Domain] = &[
    Domain {
        name: "lite",
        path: "/v1.1/chat",
        max_output: 4096,
        product: "Spark Lite",
    },
    Domain {
        name: "generalv3",
        path: "/v3.1/chat",
        max_output: 8192,
        product: "Spark Pro",
    },
    Domain {
        name: "pro-128k",
        path: "/chat/pro-128k",
        max_output: 4096,
        product: "Spark Pro-128K",
    },
    Domain {
        name: "generalv3.5",
        path: "/v3.5/chat",
        max_output: 8192,
        product: "Spark Max",
    },
    Domain {
        name: "max-32k",
        path: "/chat/max-32k",
        max_output: 8192,
        product: "Spark Max-32K",
    },
    Domain {
        name: "4.0Ultra",
        path: "/v4.0/chat",
        max_output: 8192,
        product: "Spark 4.0 Ultra",
    },
    Domain {
        name: "general",
        path: "/v1.1/chat",
        max_output: 4096,
        product: "Spark V1.5 (legacy)",
    },
    Domain {
        name: "generalv2",
        path: "/v2.1/chat",
        max_output: 8192,
        product: "Spark V2.0 (legacy)",
    },
];

/// The domain named `model`, or a not-found error listing the known ones.
pub fn domain(model: &str) -> Result<&'static Domain> {
    DOMAINS.iter().find(|d| d.name == model).ok_or_else(|| {
        let known: Vec<&str> = DOMAINS.iter().map(|d| d.name).collect();
        Error::new(
            ErrorKind::NotFound,
            format!(
                "unknown Spark domain `{model}`; known domains: {}",
                known.join(", ")
            ),
        )
        .with_provider(ID)
    })
}

const CREDS: &[CredentialSpec] = &[
    CredentialSpec {
        field: "app_id",
        env: &["SPARK_APP_ID"],
        optional: false,
    },
    CredentialSpec {
        field: "api_key",
        env: &["SPARK_API_KEY"],
        optional: false,
    },
    CredentialSpec {
        field: "api_secret",
        env: &["SPARK_API_SECRET"],
        optional: false,
    },
];

const MODELS: &[&str] = &[
    "lite",
    "generalv3",
    "pro-128k",
    "generalv3.5",
    "max-32k",
    "4.0Ultra",
];

/// The registry row for the WebSocket API.
pub const SPEC: ProviderSpec = ProviderSpec {
    id: ID,
    description: "iFlytek Spark, WebSocket API (signed URL; model = domain, e.g. generalv3.5)",
    default_base_url: "wss://spark-api.xf-yun.com",
    base_url_env: "SPARK_BASE_URL",
    region_env: None,
    credentials: CREDS,
    models: MODELS,
    build: |row, s| {
        let base = s.base_url.as_deref().unwrap_or(row.default_base_url);
        Ok(Arc::new(Spark::new(
            base,
            s.require(row, "app_id")?.expose(),
            s.require(row, "api_key")?.expose(),
            s.require(row, "api_secret")?.clone(),
        )?))
    },
};

/// The Spark WebSocket provider.
#[derive(Debug)]
pub struct Spark {
    base_url: String,
    app_id: String,
    api_key: SecretString,
    api_secret: SecretString,
}

impl Spark {
    /// A provider for the WebSocket API at `base_url` (`wss://host[:port]`, or `ws://` for a
    /// local endpoint; the domain's version path is appended).
    pub fn new(
        base_url: &str,
        app_id: &str,
        api_key: &str,
        api_secret: SecretString,
    ) -> Result<Self> {
        let base = base_url.trim().trim_end_matches('/');
        auth::split_ws_url(base).map_err(|e| e.with_provider(ID))?;
        Ok(Spark {
            base_url: base.to_owned(),
            app_id: app_id.to_owned(),
            api_key: SecretString::new(api_key),
            api_secret,
        })
    }
}

const CAPS: Capabilities = Capabilities {
    streaming: true,
    tools: true,
    vision: false,
    json_mode: false,
    embeddings: false,
    list_models: false,
};

impl Provider for Spark {
    fn id(&self) -> &'static str {
        ID
    }

    fn capabilities(&self) -> Capabilities {
        CAPS
    }

    fn base_url(&self) -> &str {
        &self.base_url
    }

    fn framing(&self) -> Framing {
        Framing::WebSocket
    }

    fn build_chat(&self, _model: &str, _req: &ChatRequest, _stream: bool) -> Result<HttpRequest> {
        Err(Error::unsupported(
            "spark speaks WebSocket only; use the client (it calls build_ws) or spark-http",
        )
        .with_provider(ID))
    }

    fn parse_chat(&self, _resp: &HttpResponse) -> Result<ChatResponse> {
        Err(
            Error::unsupported("spark answers over WebSocket frames, not HTTP bodies")
                .with_provider(ID),
        )
    }

    fn build_ws(&self, model: &str, req: &ChatRequest, ctx: &AuthContext) -> Result<WsRequest> {
        let d = domain(model)?;
        let frame = request_frame(&self.app_id, d, req)?;
        let message = serde_json::to_string(&frame).map_err(|e| {
            Error::new(ErrorKind::Internal, "could not encode the Spark frame").with_source(e)
        })?;
        let url = format!("{}{}", self.base_url, d.path);
        let signed = sign_url(
            &url,
            self.api_key.expose(),
            &self.api_secret,
            ctx.clock.now(),
        )
        .map_err(|e| e.with_provider(ID))?;
        Ok(WsRequest {
            url: signed.url,
            headers: HeaderMap::new(),
            message,
        })
    }

    fn stream_parser(&self, _model: &str, _req: &ChatRequest) -> Box<dyn StreamParser> {
        Box::new(SparkStreamParser::new())
    }

    fn classify_error(&self, status: u16, headers: &HeaderMap, body: &[u8]) -> Error {
        classify_handshake(status, headers, body)
    }
}

#[derive(Debug, Default, Deserialize)]
struct HandshakeBody {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    header: Option<HandshakeHeader>,
}

#[derive(Debug, Default, Deserialize)]
struct HandshakeHeader {
    #[serde(default)]
    code: i64,
    #[serde(default)]
    message: String,
    #[serde(default)]
    sid: String,
}

/// True when a rejection text blames the request date (clock skew).
fn blames_date(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    m.contains("date") || m.contains("clock") || m.contains("skew") || m.contains("expired")
}

/// Classifies a rejected WebSocket handshake: 401 is a bad signature or key; a 403 that
/// blames the date is clock skew (the client syncs to `Date` and retries once).
pub fn classify_handshake(status: u16, headers: &HeaderMap, body: &[u8]) -> Error {
    let parsed: Option<HandshakeBody> = serde_json::from_slice(body).ok();
    if let Some(h) = parsed.as_ref().and_then(|b| b.header.as_ref()) {
        if h.code != 0 {
            return wire::code_error(ID, h.code, &h.message, Some(&h.sid)).with_status(status);
        }
    }
    let msg = parsed.and_then(|b| b.message).unwrap_or_default();
    let retry_after = parse_retry_after(headers);
    let rid = header_request_id(headers);
    let base = |kind: ErrorKind, text: String| {
        Error::new(kind, text)
            .with_provider(ID)
            .with_status(status)
            .with_retry_after(retry_after)
            .with_request_id(rid.clone())
    };
    match status {
        401 if msg.is_empty() => base(
            ErrorKind::Authentication,
            "the Spark APIKey/APISecret signature was rejected".to_owned(),
        ),
        401 => base(
            ErrorKind::Authentication,
            format!("the Spark APIKey/APISecret signature was rejected: {msg}"),
        ),
        403 if blames_date(&msg) => base(
            ErrorKind::Authentication,
            format!("spark rejected the request date (clock skew?): {msg}"),
        )
        .with_clock_skew(),
        _ if msg.is_empty() => non_json_error(ID, status, headers, body),
        _ => {
            let kind = kind_for_status(status);
            base(kind, describe(kind, &msg))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// spark-http: the OpenAI-compatible endpoint.

/// Spark error codes as strings (`"10013"`), for the compatible endpoint's error envelopes.
pub fn spark_code(code: &str) -> Option<ErrorKind> {
    let n: i64 = code.trim().parse().ok()?;
    (n != 0).then(|| code_kind(n))
}

/// The compatible endpoint's quirks.
pub const HTTP_COMPAT: CompatSpec = CompatSpec {
    id: HTTP_ID,
    key_required: true,
    extensions: Extensions {
        top_k: true,
        repetition_penalty: false,
        enable_search: false,
    },
    thinking: ThinkingSupport::NONE,
    embeddings_base64: false,
    map_code: spark_code,
    capabilities: Capabilities {
        streaming: true,
        tools: true,
        vision: false,
        json_mode: true,
        embeddings: false,
        list_models: false,
    },
    ..super::openai_compat::OPENAI
};

/// The registry row for the HTTP OpenAI-compatible endpoint.
pub const HTTP_SPEC: ProviderSpec = ProviderSpec {
    id: HTTP_ID,
    description: "iFlytek Spark, HTTP OpenAI-compatible endpoint (Bearer APIPassword)",
    default_base_url: "https://spark-api-open.xf-yun.com/v1",
    base_url_env: "SPARK_HTTP_BASE_URL",
    region_env: None,
    credentials: &[CredentialSpec {
        field: "api_key",
        env: &["SPARK_API_PASSWORD"],
        optional: false,
    }],
    models: MODELS,
    build: |row, s| {
        let key = s.require(row, "api_key")?.clone();
        let base = s.base_url.as_deref().unwrap_or(row.default_base_url);
        Ok(Arc::new(SparkHttp::new(base, key)?))
    },
};

/// `spark-http`: the shared OpenAI codec plus Spark's `code`/`message` envelope, which reports
/// failures inside HTTP 200 bodies and stream events.
#[derive(Debug)]
pub struct SparkHttp {
    inner: OpenAiCompat,
}

impl SparkHttp {
    /// A provider at `base_url` with the APIPassword.
    pub fn new(base_url: &str, api_password: SecretString) -> Result<Self> {
        Ok(SparkHttp {
            inner: OpenAiCompat::new(HTTP_COMPAT, base_url, Some(api_password))?,
        })
    }
}

#[derive(Debug, Default, Deserialize)]
struct CodeEnvelope {
    #[serde(default)]
    code: Option<serde_json::Value>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    sid: Option<String>,
}

/// The error a Spark `{"code": non-zero, "message", "sid"}` body carries, if any.
fn body_code_error(body: &[u8]) -> Option<Error> {
    let env: CodeEnvelope = serde_json::from_slice(body).ok()?;
    let code = match env.code? {
        serde_json::Value::Number(n) => n.as_i64()?,
        serde_json::Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    (code != 0).then(|| {
        wire::code_error(
            HTTP_ID,
            code,
            env.message.as_deref().unwrap_or_default(),
            env.sid.as_deref(),
        )
    })
}

/// Wraps the OpenAI stream parser, failing on a frame that carries a non-zero `code`.
struct SparkHttpStreamParser {
    inner: OpenAiStreamParser,
}

impl StreamParser for SparkHttpStreamParser {
    fn on_frame(&mut self, frame: &Frame, out: &mut Vec<StreamEvent>) -> Result<()> {
        if let Some(err) = body_code_error(frame.data.trim().as_bytes()) {
            return Err(err);
        }
        self.inner.on_frame(frame, out)
    }

    fn is_done(&self) -> bool {
        self.inner.is_done()
    }

    fn finish(&mut self, out: &mut Vec<StreamEvent>) -> Result<()> {
        self.inner.finish(out)
    }
}

impl Provider for SparkHttp {
    fn id(&self) -> &'static str {
        HTTP_ID
    }

    fn capabilities(&self) -> Capabilities {
        HTTP_COMPAT.capabilities
    }

    fn base_url(&self) -> &str {
        self.inner.base_url()
    }

    fn build_chat(&self, model: &str, req: &ChatRequest, stream: bool) -> Result<HttpRequest> {
        if let Some(k) = req.top_k {
            if !(1..=6).contains(&k) {
                return Err(Error::invalid_request(format!(
                    "`top_k` must be between 1 and 6 for Spark, got {k}"
                ))
                .with_provider(HTTP_ID));
            }
        }
        self.inner.build_chat(model, req, stream)
    }

    fn parse_chat(&self, resp: &HttpResponse) -> Result<ChatResponse> {
        if let Some(err) = body_code_error(&resp.body) {
            return Err(err.with_request_id(header_request_id(&resp.headers)));
        }
        self.inner.parse_chat(resp)
    }

    fn stream_parser(&self, _model: &str, _req: &ChatRequest) -> Box<dyn StreamParser> {
        Box::new(SparkHttpStreamParser {
            inner: OpenAiStreamParser::new(HTTP_COMPAT),
        })
    }

    fn classify_error(&self, status: u16, headers: &HeaderMap, body: &[u8]) -> Error {
        match body_code_error(body) {
            Some(err) => err
                .with_status(status)
                .with_retry_after(parse_retry_after(headers)),
            None => self.inner.classify_error(status, headers, body),
        }
    }
}
