//! Huawei Cloud Pangu NLP chat (PROTOCOLS.md §5.3), V1 deployments:
//! `POST {base}/v1/{project_id}/deployments/{deployment_id}/chat/completions`, addressed as
//! `pangu/<deployment_id>`. OpenAI-shaped body, response and SSE stream.
//!
//! Two auth modes, chosen by which credentials are set: AK/SK request signing
//! ([`apig`], `HUAWEICLOUD_SDK_AK` + `HUAWEICLOUD_SDK_SK`), or an IAM password token
//! ([`iam`], `HUAWEICLOUD_USERNAME` + `HUAWEICLOUD_PASSWORD` + `HUAWEICLOUD_DOMAIN_NAME`),
//! cached and refreshed ahead of expiry with one refresh in flight.

pub mod apig;
pub mod iam;

use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use serde_json::Value;

use super::body::Extra;
use super::canonical::{rfc3986_encode, UtcTime};
use super::openai_compat::wire::{encode_messages, encode_tool_choice, encode_tools, ChatBody};
use super::openai_compat::{
    describe, non_json_error, CompatSpec, Extensions, OpenAiCompat, OpenAiStreamParser,
};
use super::thinking::ThinkingSupport;
use super::{
    check_base_url, header_request_id, join_url, AuthContext, BoxFuture, Capabilities,
    CredentialSpec, Provider, ProviderSettings, ProviderSpec, StreamParser,
};
use crate::codec::Frame;
use crate::error::{kind_for_status, parse_retry_after, Error, ErrorKind, Result};
use crate::http::{HttpRequest, HttpResponse};
use crate::stream::StreamEvent;
use crate::types::*;
use crate::SecretString;

use iam::{PasswordCredentials, Scope, TokenCache};

const ID: &str = "pangu";
/// The default region (Pangu is served from Guiyang).
pub const DEFAULT_REGION: &str = "cn-southwest-2";
/// Stands for the project id in a built URL until an IAM token names it.
const PROJECT_PLACEHOLDER: &str = "{project_id}";

const CREDS: &[CredentialSpec] = &[
    CredentialSpec {
        field: "ak",
        env: &["HUAWEICLOUD_SDK_AK"],
        optional: true,
    },
    CredentialSpec {
        field: "sk",
        env: &["HUAWEICLOUD_SDK_SK"],
        optional: true,
    },
    CredentialSpec {
        field: "security_token",
        env: &["HUAWEICLOUD_SDK_SECURITY_TOKEN"],
        optional: true,
    },
    CredentialSpec {
        field: "username",
        env: &["HUAWEICLOUD_USERNAME"],
        optional: true,
    },
    CredentialSpec {
        field: "password",
        env: &["HUAWEICLOUD_PASSWORD"],
        optional: true,
    },
    CredentialSpec {
        field: "domain_name",
        env: &["HUAWEICLOUD_DOMAIN_NAME"],
        optional: true,
    },
    CredentialSpec {
        field: "project_id",
        env: &["HUAWEICLOUD_PROJECT_ID"],
        optional: true,
    },
    CredentialSpec {
        field: "iam_endpoint",
        env: &["HUAWEICLOUD_IAM_ENDPOINT"],
        optional: true,
    },
];

/// The registry row.
pub const SPEC: ProviderSpec = ProviderSpec {
    id: ID,
    description:
        "Huawei Cloud Pangu NLP (V1 deployments; model = deployment id; AK/SK or IAM password)",
    default_base_url: "https://pangu.cn-southwest-2.myhuaweicloud.com",
    base_url_env: "PANGU_BASE_URL",
    region_env: Some("HUAWEICLOUD_REGION"),
    credentials: CREDS,
    models: &[],
    build: |row, s| Ok(Arc::new(Pangu::from_settings(row, &s)?)),
};

/// How requests are authorized.
#[derive(Debug)]
enum Auth {
    /// APIG AK/SK signing.
    AkSk {
        ak: String,
        sk: SecretString,
        security_token: Option<SecretString>,
    },
    /// An IAM password token in `X-Auth-Token`.
    Iam {
        endpoint: String,
        creds: PasswordCredentials,
        cache: TokenCache,
    },
}

/// The Pangu provider.
#[derive(Debug)]
pub struct Pangu {
    base_url: String,
    project_id: Option<String>,
    auth: Auth,
    codec: OpenAiCompat,
}

const CAPS: Capabilities = Capabilities {
    streaming: true,
    tools: true,
    vision: false,
    json_mode: false,
    embeddings: false,
    list_models: false,
};

const COMPAT: CompatSpec = CompatSpec {
    id: ID,
    key_required: false,
    extensions: Extensions::NONE,
    thinking: ThinkingSupport::NONE,
    embeddings_base64: false,
    map_code: huawei_code,
    capabilities: CAPS,
    ..super::openai_compat::OPENAI
};

impl Pangu {
    /// AK/SK mode: every request is signed (`X-Project-Id` is sent and signed).
    pub fn with_aksk(
        base_url: &str,
        project_id: &str,
        ak: &str,
        sk: SecretString,
        security_token: Option<SecretString>,
    ) -> Result<Self> {
        Self::new(
            base_url,
            Some(project_id.to_owned()),
            Auth::AkSk {
                ak: ak.to_owned(),
                sk,
                security_token,
            },
        )
    }

    /// IAM password mode: a token from `iam_endpoint` (`https://iam.<region>.myhuaweicloud.com`),
    /// scoped as `creds.scope` says. Without `project_id`, the URL takes the token's project.
    pub fn with_password(
        base_url: &str,
        project_id: Option<String>,
        iam_endpoint: &str,
        creds: PasswordCredentials,
    ) -> Result<Self> {
        let endpoint = check_base_url(ID, iam_endpoint)?;
        Self::new(
            base_url,
            project_id,
            Auth::Iam {
                endpoint,
                creds,
                cache: TokenCache::new(),
            },
        )
    }

    fn new(base_url: &str, project_id: Option<String>, auth: Auth) -> Result<Self> {
        Ok(Pangu {
            base_url: check_base_url(ID, base_url)?,
            project_id,
            auth,
            codec: OpenAiCompat::new(COMPAT, base_url, None)?,
        })
    }

    /// Builds from a registry row and settings: AK/SK when both are set, else IAM password.
    pub fn from_settings(row: &ProviderSpec, s: &ProviderSettings) -> Result<Self> {
        let get = |f: &str| s.credentials.get(f).map(|v| v.expose().to_owned());
        let region = s
            .region
            .clone()
            .unwrap_or_else(|| DEFAULT_REGION.to_owned());
        let base = match &s.base_url {
            Some(b) => b.clone(),
            None if s.region.is_some() => format!("https://pangu.{region}.myhuaweicloud.com"),
            None => row.default_base_url.to_owned(),
        };
        let project_id = get("project_id");
        if let (Some(ak), Some(sk)) = (get("ak"), s.credentials.get("sk")) {
            let project_id = project_id.ok_or_else(|| {
                Error::config("pangu with AK/SK needs the project id: set HUAWEICLOUD_PROJECT_ID")
                    .with_provider(ID)
            })?;
            return Self::with_aksk(
                &base,
                &project_id,
                &ak,
                sk.clone(),
                s.credentials.get("security_token").cloned(),
            );
        }
        match (
            get("username"),
            s.credentials.get("password"),
            get("domain_name"),
        ) {
            (Some(user_name), Some(password), Some(domain_name)) => {
                let scope = match &project_id {
                    Some(id) => Scope::ProjectId(id.clone()),
                    None => Scope::ProjectName(region.clone()),
                };
                let iam = get("iam_endpoint")
                    .unwrap_or_else(|| format!("https://iam.{region}.myhuaweicloud.com"));
                let creds = PasswordCredentials {
                    domain_name,
                    user_name,
                    password: password.clone(),
                    scope,
                };
                Self::with_password(&base, project_id, &iam, creds)
            }
            _ => Err(Error::config(
                "pangu needs credentials: set HUAWEICLOUD_SDK_AK, HUAWEICLOUD_SDK_SK and \
                 HUAWEICLOUD_PROJECT_ID (AK/SK signing), or HUAWEICLOUD_USERNAME, \
                 HUAWEICLOUD_PASSWORD and HUAWEICLOUD_DOMAIN_NAME (IAM token)",
            )
            .with_provider(ID)),
        }
    }

    /// The chat body as JSON for the deployment `model` (OpenAI-shaped, naming no model: the
    /// deployment is in the path).
    pub fn chat_body<'a>(
        &self,
        model: &'a str,
        req: &'a ChatRequest,
        stream: bool,
    ) -> Result<ChatBody<'a>> {
        req.validate_for(model).map_err(|e| e.with_provider(ID))?;
        let unsupported = |what: &str| {
            Error::unsupported(format!("pangu does not accept {what}")).with_provider(ID)
        };
        if req.messages.iter().any(|m| m.content.has_images()) {
            return Err(unsupported("image inputs"));
        }
        if let Some(t) = req.temperature {
            if !(0.0..=1.0).contains(&t) {
                return Err(Error::invalid_request(format!(
                    "`temperature` must be between 0 and 1 for Pangu, got {t}"
                ))
                .with_provider(ID));
            }
        }
        let rejected = [
            ("`top_k`", req.top_k.is_some()),
            ("`repetition_penalty`", req.repetition_penalty.is_some()),
            ("`enable_search`", req.enable_search.is_some()),
            ("`thinking`", req.thinking.is_some_and(|t| !t.is_empty())),
            ("`seed`", req.seed.is_some()),
            ("`parallel_tool_calls`", req.parallel_tool_calls.is_some()),
            (
                "a JSON `response_format`",
                matches!(
                    req.response_format,
                    Some(ResponseFormat::JsonObject | ResponseFormat::JsonSchema { .. })
                ),
            ),
        ];
        if let Some((what, _)) = rejected.iter().find(|(_, set)| *set) {
            return Err(unsupported(what));
        }
        let ex = Extra::new(&req.extra);
        Ok(ChatBody {
            messages: ex.typed("messages", Some(encode_messages(&req.messages))),
            temperature: ex.typed("temperature", req.temperature),
            top_p: ex.typed("top_p", req.top_p),
            max_tokens: ex.typed("max_tokens", req.max_tokens),
            presence_penalty: ex.typed("presence_penalty", req.presence_penalty),
            frequency_penalty: ex.typed("frequency_penalty", req.frequency_penalty),
            n: ex.typed("n", req.n),
            user: ex.typed("user", req.user.as_deref()),
            stop: ex.typed(
                "stop",
                (!req.stop.is_empty()).then_some(req.stop.as_slice()),
            ),
            tools: ex.typed(
                "tools",
                (!req.tools.is_empty()).then(|| encode_tools(&req.tools)),
            ),
            tool_choice: ex.typed(
                "tool_choice",
                req.tool_choice.as_ref().map(encode_tool_choice),
            ),
            stream: ex.typed("stream", stream.then_some(true)),
            extra: ex.fields(&[]),
            ..ChatBody::default()
        })
    }

    fn chat_url(&self, deployment: &str) -> String {
        let project = self.project_id.as_deref().unwrap_or(PROJECT_PLACEHOLDER);
        join_url(
            &self.base_url,
            &format!(
                "v1/{project}/deployments/{}/chat/completions",
                rfc3986_encode(deployment)
            ),
        )
    }

    async fn authorize_inner(
        &self,
        mut req: HttpRequest,
        ctx: &AuthContext,
    ) -> Result<HttpRequest> {
        match &self.auth {
            Auth::AkSk {
                ak,
                sk,
                security_token,
            } => {
                if let Some(p) = &self.project_id {
                    req = req.header("x-project-id", p)?;
                }
                if let Some(t) = security_token {
                    let mut v = HeaderValue::from_str(t.expose()).map_err(|_| {
                        Error::config("the security token is not valid header text")
                            .with_provider(ID)
                    })?;
                    v.set_sensitive(true);
                    req.headers
                        .insert(HeaderName::from_static("x-security-token"), v);
                }
                sign_request(
                    ak,
                    sk,
                    UtcTime::from_system(ctx.clock.now()).compact().as_str(),
                    req,
                )
            }
            Auth::Iam {
                endpoint,
                creds,
                cache,
            } => {
                let token = cache
                    .get(ctx.clock.now(), || async {
                        let treq = iam::token_request(endpoint, creds, true)?;
                        let resp = ctx.transport.send(treq).await?.collect().await?;
                        iam::parse_token_response(&resp, classify_iam_error)
                    })
                    .await
                    .map_err(|e| e.with_provider(ID))?;
                if req.url.contains(PROJECT_PLACEHOLDER) {
                    let project = token.project_id.as_deref().ok_or_else(|| {
                        Error::config(
                            "pangu: the IAM token names no project; set HUAWEICLOUD_PROJECT_ID",
                        )
                        .with_provider(ID)
                    })?;
                    req.url = req
                        .url
                        .replace(PROJECT_PLACEHOLDER, &rfc3986_encode(project));
                }
                let mut v = HeaderValue::from_str(token.token.expose()).map_err(|_| {
                    Error::protocol("IAM issued a token that is not valid header text")
                        .with_provider(ID)
                })?;
                v.set_sensitive(true);
                req.headers
                    .insert(HeaderName::from_static("x-auth-token"), v);
                Ok(req)
            }
        }
    }
}

/// Signs `req` in place with APIG AK/SK at `x_sdk_date`: adds `X-Sdk-Date`, `Host`,
/// `Authorization` (and `X-Sdk-Content-Sha256` for non-JSON bodies). The exact body bytes of
/// `req` are hashed, so what is signed is what is sent.
pub fn sign_request(
    ak: &str,
    sk: &SecretString,
    x_sdk_date: &str,
    mut req: HttpRequest,
) -> Result<HttpRequest> {
    let url = reqwest::Url::parse(&req.url)
        .map_err(|e| Error::config(format!("invalid URL `{}`: {e}", req.url)).with_provider(ID))?;
    let host = match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        (None, _) => return Err(Error::config("the Pangu URL has no host").with_provider(ID)),
    };
    let query: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let headers: Vec<(String, String)> = req
        .headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let method = req.method.as_str().to_owned();
    let sig = apig::sign(
        ak,
        sk,
        x_sdk_date,
        &apig::ApigRequest {
            method: &method,
            host: &host,
            path: url.path(),
            query: &query,
            headers: &headers,
            body: &req.body,
        },
    );
    for (name, value) in sig.added_headers {
        let name = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
            .map_err(|_| Error::new(ErrorKind::Internal, "bad signer header name"))?;
        let mut v = HeaderValue::from_str(&value)
            .map_err(|_| Error::config("the AK is not valid header text").with_provider(ID))?;
        if name == http::header::AUTHORIZATION {
            v.set_sensitive(true);
        }
        req.headers.insert(name, v);
    }
    Ok(req)
}

impl Provider for Pangu {
    fn id(&self) -> &'static str {
        ID
    }

    fn capabilities(&self) -> Capabilities {
        CAPS
    }

    fn base_url(&self) -> &str {
        &self.base_url
    }

    fn build_chat(&self, model: &str, req: &ChatRequest, stream: bool) -> Result<HttpRequest> {
        let body = self.chat_body(model, req, stream)?;
        let r = HttpRequest::post_json(self.chat_url(model), &body)?;
        if stream {
            Ok(r)
        } else {
            r.header("accept", "application/json")
        }
    }

    fn authorize<'a>(
        &'a self,
        req: HttpRequest,
        ctx: &'a AuthContext,
    ) -> BoxFuture<'a, Result<HttpRequest>> {
        Box::pin(self.authorize_inner(req, ctx))
    }

    fn invalidate_credentials(&self) -> bool {
        match &self.auth {
            Auth::Iam { cache, .. } => cache.invalidate(),
            Auth::AkSk { .. } => false,
        }
    }

    fn parse_chat(&self, resp: &HttpResponse) -> Result<ChatResponse> {
        if let Some(err) = huawei_body_error(resp.status, &resp.headers, &resp.body) {
            return Err(err);
        }
        self.codec.parse_chat(resp)
    }

    fn stream_parser(&self, _model: &str, _req: &ChatRequest) -> Box<dyn StreamParser> {
        Box::new(PanguStreamParser {
            inner: OpenAiStreamParser::new(COMPAT),
        })
    }

    fn classify_error(&self, status: u16, headers: &HeaderMap, body: &[u8]) -> Error {
        classify_huawei_error(ID, status, headers, body)
    }
}

/// The OpenAI chunk parser, failing on a Huawei error object sent as a stream event.
struct PanguStreamParser {
    inner: OpenAiStreamParser,
}

impl StreamParser for PanguStreamParser {
    fn on_frame(&mut self, frame: &Frame, out: &mut Vec<StreamEvent>) -> Result<()> {
        if let Some(err) = huawei_body_error(0, &HeaderMap::new(), frame.data.trim().as_bytes()) {
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

/// Huawei error codes that mean more than their HTTP status (table in docs/providers.md).
pub fn huawei_code(code: &str) -> Option<ErrorKind> {
    Some(match code {
        "APIG.0301" | "APIG.0307" | "APIG.1002" | "APIGW.0301" | "APIGW.0307" | "APIGW.1002" => {
            ErrorKind::Authentication
        }
        "APIG.0302" | "APIG.0303" | "APIGW.0302" | "APIGW.0303" => ErrorKind::PermissionDenied,
        "APIG.0308" | "APIGW.0308" => ErrorKind::RateLimited,
        "APIG.0101" | "APIGW.0101" => ErrorKind::NotFound,
        _ => return None,
    })
}

#[derive(Debug, Default, Deserialize)]
struct HuaweiBody {
    #[serde(default)]
    error_code: Option<String>,
    #[serde(default)]
    error_msg: Option<String>,
    #[serde(default)]
    request_id: Option<String>,
    /// IAM's and OpenAI's nested form.
    #[serde(default)]
    error: Option<NestedError>,
}

#[derive(Debug, Default, Deserialize)]
struct NestedError {
    #[serde(default)]
    code: Option<Value>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

fn huawei_error(
    id: &'static str,
    status: u16,
    headers: &HeaderMap,
    code: &str,
    msg: &str,
    request_id: Option<String>,
) -> Error {
    let lower = msg.to_ascii_lowercase();
    let skew = lower.contains("signature expired") || lower.contains("request expired");
    let kind = if skew {
        ErrorKind::Authentication
    } else if lower.contains("context length") || lower.contains("maximum context") {
        ErrorKind::ContextLengthExceeded
    } else {
        huawei_code(code).unwrap_or(match status {
            0 | 200 => ErrorKind::UpstreamServer,
            s => kind_for_status(s),
        })
    };
    let message = match kind {
        ErrorKind::Authentication if skew => {
            format!("the request signature expired (our clock is off from the gateway's): {msg}")
        }
        ErrorKind::Authentication if msg.trim().is_empty() => {
            "the Huawei Cloud credential was rejected".to_owned()
        }
        ErrorKind::Authentication => {
            format!("the Huawei Cloud credential was rejected: {}", msg.trim())
        }
        _ => describe(kind, msg),
    };
    let mut e = Error::new(kind, message)
        .with_provider(id)
        .with_code(code)
        .with_retry_after(parse_retry_after(headers))
        .with_request_id(header_request_id(headers).or(request_id));
    if status != 0 && status != 200 {
        e = e.with_status(status);
    }
    if skew {
        e = e.with_clock_skew();
    }
    e
}

/// A Huawei error found in a body (`{"error_code","error_msg"}` or `{"error":{…}}`), if any.
fn huawei_body_error(status: u16, headers: &HeaderMap, body: &[u8]) -> Option<Error> {
    let b: HuaweiBody = serde_json::from_slice(body).ok()?;
    if let Some(code) = b.error_code.filter(|c| !c.is_empty()) {
        let msg = b.error_msg.unwrap_or_default();
        return Some(huawei_error(ID, status, headers, &code, &msg, b.request_id));
    }
    let err = b.error?;
    let code = match err.code {
        Some(Value::String(s)) => s,
        Some(Value::Number(n)) => n.to_string(),
        _ => err.kind.unwrap_or_default(),
    };
    Some(huawei_error(
        ID,
        status,
        headers,
        &code,
        err.message.as_deref().unwrap_or_default(),
        b.request_id,
    ))
}

/// Classifies a non-2xx Huawei Cloud response (APIG, Pangu or IAM).
pub fn classify_huawei_error(
    id: &'static str,
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
) -> Error {
    match huawei_body_error(status, headers, body) {
        Some(e) => e,
        None => non_json_error(id, status, headers, body),
    }
}

fn classify_iam_error(status: u16, headers: &HeaderMap, body: &[u8]) -> Error {
    let e = classify_huawei_error(ID, status, headers, body);
    let what = match e.kind() {
        ErrorKind::Authentication => "IAM rejected the user name, password or account name",
        ErrorKind::PermissionDenied => {
            "IAM refused a token (no permission, or the account is frozen)"
        }
        _ => return e,
    };
    let mut out = Error::new(e.kind(), what)
        .with_provider(ID)
        .with_status(status);
    if let Some(c) = e.upstream_code() {
        out = out.with_code(c.to_owned());
    }
    out
}
