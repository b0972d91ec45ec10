//! The provider contract and the registry table: one row per provider id.
//!
//! Providers are pure: they build [`HttpRequest`]s and read [`HttpResponse`]s and frames;
//! [`crate::http`] sends. Adding a provider is one module plus one row in [`REGISTRY`].

use std::collections::BTreeMap;
use std::sync::Arc;

use http::HeaderMap;

use crate::codec::Frame;
use crate::error::{Error, Result};
use crate::http::{HttpRequest, HttpResponse};
use crate::stream::StreamEvent;
use crate::types::{ChatRequest, ChatResponse, EmbeddingRequest, EmbeddingResponse, ModelInfo};
use crate::SecretString;

pub mod acs3;
pub mod anthropic;
pub mod body;
pub mod canonical;
pub mod dashscope;
pub mod gemini;
pub mod hunyuan;
pub mod ollama;
pub mod openai;
pub mod openai_compat;
pub mod pangu;
pub mod signing;
pub mod spark;
pub mod thinking;
pub mod zhipu;

/// What a provider can do; the conformance suite uses it to pick which cases apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Streaming chat.
    pub streaming: bool,
    /// Tool calling.
    pub tools: bool,
    /// Image inputs.
    pub vision: bool,
    /// JSON mode / schemas.
    pub json_mode: bool,
    /// Embeddings.
    pub embeddings: bool,
    /// Listing models over the API.
    pub list_models: bool,
}

/// How a streamed answer is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Server-sent events over HTTP.
    Sse,
    /// Newline-delimited JSON over HTTP.
    Ndjson,
    /// Text messages over a WebSocket ([`Provider::build_ws`]); non-streaming calls fold the stream.
    WebSocket,
}

/// What signing and token exchange may use: the shared clock and the sender.
#[derive(Debug, Clone)]
pub struct AuthContext {
    /// The clock every signer reads (corrected after a clock-skew rejection).
    pub clock: crate::clock::Clock,
    /// The sender, for token exchanges (IAM and the like).
    pub transport: crate::http::Transport,
}

/// A WebSocket call: the (signed) URL, extra handshake headers, and the first text message.
#[derive(Debug, Clone)]
pub struct WsRequest {
    /// `ws://` or `wss://` URL, query included.
    pub url: String,
    /// Extra handshake headers.
    pub headers: HeaderMap,
    /// The request frame sent after the handshake.
    pub message: String,
}

/// A boxed future, as async trait methods return.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Per-stream state that turns frames into events.
pub trait StreamParser: Send {
    /// Handles one frame, appending events to `out`.
    fn on_frame(&mut self, frame: &Frame, out: &mut Vec<StreamEvent>) -> Result<()>;
    /// True when the vendor's end marker was seen and the rest of the body can be ignored.
    fn is_done(&self) -> bool;
    /// The body ended: emit what was held back (usage, `Finished`) or fail if the stream was cut.
    fn finish(&mut self, out: &mut Vec<StreamEvent>) -> Result<()>;
}

/// One provider: pure functions from core types to the vendor's wire and back.
///
/// The methods that build a call take the upstream `model` beside the request: the model
/// to send is the caller's (a gateway channel's upstream name, the model part of
/// `provider/model`), and a request's own `model` field is never read here, so one request
/// can be sent to several upstreams without being copied.
pub trait Provider: Send + Sync + std::fmt::Debug {
    /// The stable lowercase id (`openai`, `dashscope`).
    fn id(&self) -> &'static str;
    /// What it can do.
    fn capabilities(&self) -> Capabilities;
    /// The base URL requests go to.
    fn base_url(&self) -> &str;
    /// Builds the chat request (stream or not) of `req` for the upstream `model`.
    fn build_chat(&self, model: &str, req: &ChatRequest, stream: bool) -> Result<HttpRequest>;
    /// Reads a complete chat response (2xx); vendors that report errors with 200 fail here.
    fn parse_chat(&self, resp: &HttpResponse) -> Result<ChatResponse>;
    /// How streams are framed.
    fn framing(&self) -> Framing {
        Framing::Sse
    }
    /// Signs or authorizes a built request just before it is sent (and again on a retry):
    /// request signing reads `ctx.clock`; token schemes may exchange credentials over
    /// `ctx.transport`. The default sends the request as built.
    fn authorize<'a>(
        &'a self,
        req: HttpRequest,
        _ctx: &'a AuthContext,
    ) -> BoxFuture<'a, Result<HttpRequest>> {
        Box::pin(std::future::ready(Ok(req)))
    }
    /// The upstream rejected our credential: drop cached tokens. Returns true when a fresh
    /// credential can be obtained, so one retry makes sense.
    fn invalidate_credentials(&self) -> bool {
        false
    }
    /// For [`Framing::WebSocket`] providers: the signed URL and first message of a chat of
    /// `req` for the upstream `model`.
    fn build_ws(&self, _model: &str, _req: &ChatRequest, _ctx: &AuthContext) -> Result<WsRequest> {
        Err(
            Error::unsupported(format!("{} does not speak WebSocket", self.id()))
                .with_provider(self.id()),
        )
    }
    /// A fresh parser for one stream of `req` sent as the upstream `model`.
    fn stream_parser(&self, model: &str, req: &ChatRequest) -> Box<dyn StreamParser>;
    /// Classifies a non-2xx response (reads the body, not only the status).
    fn classify_error(&self, status: u16, headers: &HeaderMap, body: &[u8]) -> Error;
    /// Builds the embeddings request of `req` for the upstream `model`.
    fn build_embeddings(&self, _model: &str, _req: &EmbeddingRequest) -> Result<HttpRequest> {
        Err(
            Error::unsupported(format!("{} does not offer embeddings", self.id()))
                .with_provider(self.id()),
        )
    }
    /// The most texts one embeddings request for the upstream `model` may carry, as the
    /// vendor documents it: [`crate::Client::embed_with`] splits a longer input into batches of
    /// this size and joins their answers. `None` (the default) when no limit is documented:
    /// the input is sent whole.
    fn embedding_batch_limit(&self, _model: &str) -> Option<usize> {
        None
    }
    /// Reads an embeddings response.
    fn parse_embeddings(&self, _resp: &HttpResponse) -> Result<EmbeddingResponse> {
        Err(
            Error::unsupported(format!("{} does not offer embeddings", self.id()))
                .with_provider(self.id()),
        )
    }
    /// Builds a request listing the models.
    fn build_models(&self) -> Result<HttpRequest> {
        Err(
            Error::unsupported(format!("{} cannot list models over its API", self.id()))
                .with_provider(self.id()),
        )
    }
    /// Reads the model list.
    fn parse_models(&self, _resp: &HttpResponse) -> Result<Vec<ModelInfo>> {
        Err(
            Error::unsupported(format!("{} cannot list models over its API", self.id()))
                .with_provider(self.id()),
        )
    }
}

/// Credentials and endpoint for one provider, from config or environment.
#[derive(Debug, Clone, Default)]
pub struct ProviderSettings {
    /// Endpoint override (the vendor's base URL as in PROTOCOLS.md tables).
    pub base_url: Option<String>,
    /// Region (selects a regional host when no base URL is given).
    pub region: Option<String>,
    /// Secrets and ids by field name (`api_key`, `secret_id`, …).
    pub credentials: BTreeMap<String, SecretString>,
}

impl ProviderSettings {
    /// Settings with an API key.
    pub fn with_api_key(key: impl Into<SecretString>) -> Self {
        let mut s = ProviderSettings::default();
        s.credentials.insert("api_key".into(), key.into());
        s
    }

    /// Sets the base URL.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = Some(url.into());
        self
    }

    /// Reads the settings a registry row names from the environment.
    pub fn from_env(spec: &ProviderSpec) -> Self {
        Self::from_lookup(spec, |k| std::env::var(k).ok())
    }

    /// Reads the settings a registry row names through `lookup` (environment or a config map).
    pub fn from_lookup(spec: &ProviderSpec, lookup: impl Fn(&str) -> Option<String>) -> Self {
        let mut s = ProviderSettings::default();
        for cred in spec.credentials {
            if let Some(v) = cred
                .env
                .iter()
                .find_map(|e| lookup(e))
                .filter(|v| !v.is_empty())
            {
                s.credentials
                    .insert(cred.field.to_owned(), SecretString::new(v));
            }
        }
        s.base_url = lookup(spec.base_url_env).filter(|v| !v.is_empty());
        if let Some(env) = spec.region_env {
            s.region = lookup(env).filter(|v| !v.is_empty());
        }
        s
    }

    /// A required credential, or a config error naming the variable to set.
    pub fn require(&self, spec: &ProviderSpec, field: &str) -> Result<&SecretString> {
        if let Some(v) = self.credentials.get(field) {
            return Ok(v);
        }
        let env = spec
            .credentials
            .iter()
            .find(|c| c.field == field)
            .and_then(|c| c.env.first())
            .copied()
            .unwrap_or("the provider's key variable");
        Err(Error::config(format!(
            "missing `{field}`: set {env} (for example `export {env}=...`)"
        ))
        .with_provider(spec.id))
    }
}

/// A credential a provider needs, and the env vars it is read from (first set wins).
#[derive(Debug, Clone, Copy)]
pub struct CredentialSpec {
    /// Field name in config (`api_key`, `secret_id`).
    pub field: &'static str,
    /// Environment variables, in order of preference.
    pub env: &'static [&'static str],
    /// Whether the provider can work without it.
    pub optional: bool,
}

/// One row of the registry.
#[derive(Debug, Clone, Copy)]
pub struct ProviderSpec {
    /// Stable id.
    pub id: &'static str,
    /// One line for `llmux models`.
    pub description: &'static str,
    /// Default base URL.
    pub default_base_url: &'static str,
    /// Env var overriding the base URL.
    pub base_url_env: &'static str,
    /// Env var giving the region, when regions exist.
    pub region_env: Option<&'static str>,
    /// Credentials.
    pub credentials: &'static [CredentialSpec],
    /// Well-known models.
    pub models: &'static [&'static str],
    /// Builds the provider.
    pub build: fn(&ProviderSpec, ProviderSettings) -> Result<Arc<dyn Provider>>,
}

impl ProviderSpec {
    /// The env var that carries this provider's API key, when it has one.
    pub fn api_key_env(&self) -> Option<&'static str> {
        self.credentials
            .iter()
            .find(|c| c.field == "api_key")
            .and_then(|c| c.env.first())
            .copied()
    }
}

/// The registry: every provider llmux speaks.
pub static REGISTRY: &[ProviderSpec] = &[
    openai::SPEC,
    dashscope::SPEC,
    dashscope::COMPAT_SPEC,
    openai_compat::DEEPSEEK,
    openai_compat::MOONSHOT,
    openai_compat::VLLM,
    hunyuan::SPEC,
    hunyuan::OPENAI_SPEC,
    spark::SPEC,
    spark::HTTP_SPEC,
    pangu::SPEC,
    zhipu::SPEC,
    ollama::SPEC,
    anthropic::SPEC,
    dashscope::ANTHROPIC_SPEC,
    gemini::SPEC,
];

/// The row for `id`, or an error listing the known ids.
pub fn spec(id: &str) -> Result<&'static ProviderSpec> {
    REGISTRY.iter().find(|s| s.id == id).ok_or_else(|| {
        Error::config(format!(
            "unknown provider `{id}`; known providers: {}",
            known_ids().join(", ")
        ))
    })
}

/// All registered ids.
pub fn known_ids() -> Vec<&'static str> {
    REGISTRY.iter().map(|s| s.id).collect()
}

/// Splits `provider/model` at the first `/` (model names may contain more slashes).
pub fn split_model(addr: &str) -> Result<(&str, &str)> {
    match addr.split_once('/') {
        Some((p, m)) if !p.is_empty() && !m.is_empty() => Ok((p, m)),
        _ => Err(Error::invalid_request(format!(
            "model `{addr}` must be addressed as provider/model (for example dashscope/qwen-plus); known providers: {}",
            known_ids().join(", ")
        ))),
    }
}

/// Joins a base URL and a path without doubling or dropping the slash.
pub(crate) fn join_url(base: &str, path: &str) -> String {
    let base = base.trim_end_matches('/');
    let path = path.trim_start_matches('/');
    let mut url = String::with_capacity(base.len() + 1 + path.len());
    url.push_str(base);
    url.push('/');
    url.push_str(path);
    url
}

/// Checks a base URL is absolute http(s).
pub(crate) fn check_base_url(id: &str, url: &str) -> Result<String> {
    let u = url.trim();
    if !(u.starts_with("http://") || u.starts_with("https://")) {
        return Err(Error::config(format!(
            "{id}: base URL `{u}` must start with http:// or https://"
        )));
    }
    Ok(u.trim_end_matches('/').to_owned())
}

/// The request id headers vendors use.
pub(crate) fn header_request_id(headers: &HeaderMap) -> Option<String> {
    // Names made once: looking a header up by `&str` parses the name on every call.
    static NAMES: [http::HeaderName; 4] = [
        http::HeaderName::from_static("x-request-id"),
        http::HeaderName::from_static("x-dashscope-request-id"),
        http::HeaderName::from_static("request-id"),
        http::HeaderName::from_static("x-tc-requestid"),
    ];
    NAMES
        .iter()
        .find_map(|h| headers.get(h).and_then(|v| v.to_str().ok()))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_provider_lists_the_known_ones() {
        let err = spec("nope").unwrap_err();
        assert!(err.message().contains("unknown provider `nope`"));
        assert!(err.message().contains("dashscope"));
        assert!(err.message().contains("openai"));
    }

    #[test]
    fn model_addresses_split_at_the_first_slash() {
        assert_eq!(
            split_model("vllm/Qwen/Qwen2.5-7B").unwrap(),
            ("vllm", "Qwen/Qwen2.5-7B")
        );
        assert!(split_model("qwen-plus").is_err());
    }

    #[test]
    fn anthropic_gemini_and_dashscope_anthropic_read_their_conventional_variables() {
        for (id, vars, base) in [
            (
                "anthropic",
                [
                    ("ANTHROPIC_API_KEY", "sk-ant-x"),
                    ("ANTHROPIC_BASE_URL", "http://a.test/"),
                ],
                "http://a.test",
            ),
            (
                "gemini",
                [
                    ("GEMINI_API_KEY", "g-x"),
                    ("GEMINI_BASE_URL", "http://g.test"),
                ],
                "http://g.test",
            ),
            (
                "dashscope-anthropic",
                [
                    ("DASHSCOPE_API_KEY", "sk-x"),
                    (
                        "DASHSCOPE_ANTHROPIC_BASE_URL",
                        "http://d.test/apps/anthropic",
                    ),
                ],
                "http://d.test/apps/anthropic",
            ),
        ] {
            let row = spec(id).unwrap();
            let s = ProviderSettings::from_lookup(row, |k| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| (*v).to_owned())
            });
            let p = (row.build)(row, s).unwrap();
            assert_eq!((p.id(), p.base_url()), (id, base));
            // Without the key, the error names the variable to set.
            let err = (row.build)(row, ProviderSettings::default()).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::Config, "{id}");
            assert!(err.message().contains(vars[0].0), "{}", err.message());
        }
        // DashScope's region picks the Anthropic-compatible host too.
        let row = spec("dashscope-anthropic").unwrap();
        let mut s = ProviderSettings::with_api_key("sk-x");
        s.region = Some("ap-southeast-1".into());
        assert_eq!(
            (row.build)(row, s).unwrap().base_url(),
            "https://dashscope-intl.aliyuncs.com/apps/anthropic"
        );
    }

    #[test]
    fn ids_are_unique_and_lowercase() {
        let ids = known_ids();
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), ids.len());
        assert!(ids
            .iter()
            .all(|i| i.chars().all(|c| c.is_ascii_lowercase() || c == '-')));
    }
}
