//! The only code that sends requests: a pooled reqwest client (rustls), request/response
//! values the pure provider functions build and read, and the byte stream of a response.
//!
//! Dropping a response or its body stream drops the upstream request.

use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use http::{HeaderMap, HeaderValue, Method};

use crate::error::{Error, ErrorKind, Result};

/// A request a provider built, ready to send. The body bytes are exactly what is signed and sent.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    /// HTTP method.
    pub method: Method,
    /// Absolute URL.
    pub url: String,
    /// Headers (auth included: never log them).
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

impl HttpRequest {
    /// A POST with a JSON body (a typed wire body or a JSON value), serialized once: these
    /// bytes are what is signed and sent.
    pub fn post_json<T: serde::Serialize + ?Sized>(url: String, body: &T) -> Result<Self> {
        let body = serde_json::to_vec(body).map_err(|e| {
            Error::new(ErrorKind::Internal, "could not encode request").with_source(e)
        })?;
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        Ok(HttpRequest {
            method: Method::POST,
            url,
            headers,
            body: body.into(),
        })
    }

    /// A GET without body.
    pub fn get(url: String) -> Self {
        HttpRequest {
            method: Method::GET,
            url,
            headers: HeaderMap::new(),
            body: Bytes::new(),
        }
    }

    /// Sets a header; the value must be valid header text.
    pub fn header(mut self, name: &'static str, value: &str) -> Result<Self> {
        let v = HeaderValue::from_str(value).map_err(|_| {
            Error::config(format!(
                "header `{name}` has a value that is not valid header text"
            ))
        })?;
        self.headers.insert(name, v);
        Ok(self)
    }

    /// Sets a header that carries a secret (`x-api-key`, `x-goog-api-key`), marked sensitive
    /// so it is never printed.
    pub fn secret_header(mut self, name: &'static str, key: &crate::SecretString) -> Result<Self> {
        let mut v = HeaderValue::from_str(key.expose()).map_err(|_| {
            Error::config("the API key contains characters not allowed in a header")
        })?;
        v.set_sensitive(true);
        self.headers.insert(name, v);
        Ok(self)
    }

    /// Sets `Authorization: Bearer <key>`, marked sensitive so it is never printed.
    pub fn bearer(mut self, key: &crate::SecretString) -> Result<Self> {
        let mut v = HeaderValue::from_str(&format!("Bearer {}", key.expose())).map_err(|_| {
            Error::config("the API key contains characters not allowed in a header")
        })?;
        v.set_sensitive(true);
        self.headers.insert(http::header::AUTHORIZATION, v);
        Ok(self)
    }
}

/// A complete response (status, headers, whole body).
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl HttpResponse {
    /// A header value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Connection settings of the sender.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// Time allowed to establish a connection.
    pub connect_timeout: Duration,
    /// Time allowed for a whole non-streaming request (streams are bounded by idle gaps).
    pub request_timeout: Option<Duration>,
    /// Idle pooled connections kept per host.
    pub pool_max_idle_per_host: usize,
    /// `User-Agent` sent upstream.
    pub user_agent: String,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            connect_timeout: Duration::from_secs(10),
            request_timeout: None,
            pool_max_idle_per_host: 64,
            user_agent: concat!("llmux/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

/// The pooled HTTP sender.
#[derive(Clone)]
pub struct Transport {
    client: reqwest::Client,
    config: TransportConfig,
    urls: std::sync::Arc<UrlCache>,
}

impl std::fmt::Debug for Transport {
    // The cached URLs are left out: a URL may carry a credential in its query.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Parsed upstream URLs by their text. A provider sends every request of an operation to the
/// same few URLs, and parsing one (with its host's IDNA mapping) cost about 20,000 instructions,
/// an eighth of a whole proxied request. Bounded: past [`UrlCache::MAX`] entries a URL is parsed
/// on every use instead of kept.
#[derive(Default)]
struct UrlCache(std::sync::RwLock<std::collections::HashMap<Box<str>, reqwest::Url>>);

impl UrlCache {
    const MAX: usize = 1024;

    fn parse(&self, text: &str) -> Result<reqwest::Url> {
        if let Ok(map) = self.0.read() {
            if let Some(url) = map.get(text) {
                return Ok(url.clone());
            }
        }
        let url = reqwest::Url::parse(text).map_err(|e| {
            // Without its query, which may carry a credential.
            let shown = text.split('?').next().unwrap_or_default();
            Error::config(format!("invalid URL `{shown}`: {e}"))
        })?;
        if let Ok(mut map) = self.0.write() {
            if map.len() < Self::MAX {
                map.insert(text.into(), url.clone());
            }
        }
        Ok(url)
    }
}

/// A response whose body has not been read yet.
pub struct StreamingResponse {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: HeaderMap,
    inner: reqwest::Response,
}

impl StreamingResponse {
    /// Reads the whole body.
    pub async fn collect(self) -> Result<HttpResponse> {
        let status = self.status;
        let headers = self.headers;
        let body = self.inner.bytes().await.map_err(map_reqwest)?;
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }

    /// Reads the whole body, refusing one longer than `max` bytes: an
    /// [`ErrorKind::UpstreamProtocol`] error as soon as the length (declared or read so far)
    /// passes `max`, without reading the rest.
    pub async fn collect_at_most(mut self, max: usize) -> Result<HttpResponse> {
        let too_long =
            || Error::protocol(format!("the upstream answer is longer than {max} bytes"));
        if self
            .inner
            .content_length()
            .is_some_and(|n| n > u64::try_from(max).unwrap_or(u64::MAX))
        {
            return Err(too_long());
        }
        let mut body = bytes::BytesMut::new();
        while let Some(chunk) = self.inner.chunk().await.map_err(map_reqwest)? {
            if body.len() + chunk.len() > max {
                return Err(too_long());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(HttpResponse {
            status: self.status,
            headers: self.headers,
            body: body.freeze(),
        })
    }

    /// The body as a stream of chunks.
    pub fn bytes_stream(self) -> impl Stream<Item = Result<Bytes>> + Send + 'static {
        self.inner
            .bytes_stream()
            .map(|r| r.map_err(map_reqwest_body))
    }

    /// The `Content-Type` header.
    pub fn content_type(&self) -> &str {
        self.headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

impl Transport {
    /// A transport with these settings (rustls, HTTP/1.1 and HTTP/2, TCP_NODELAY, pooled).
    pub fn new(config: TransportConfig) -> Result<Self> {
        let mut b = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .pool_max_idle_per_host(config.pool_max_idle_per_host)
            .tcp_nodelay(true)
            .user_agent(config.user_agent.clone());
        if let Some(t) = config.request_timeout {
            b = b.timeout(t);
        }
        let client = b.build().map_err(|e| {
            Error::new(ErrorKind::Internal, "could not build the HTTP client").with_source(e)
        })?;
        Ok(Transport {
            client,
            config,
            urls: std::sync::Arc::default(),
        })
    }

    /// The settings.
    pub fn config(&self) -> &TransportConfig {
        &self.config
    }

    /// Sends a request and returns once the response head arrived.
    pub async fn send(&self, req: HttpRequest) -> Result<StreamingResponse> {
        let url = self.urls.parse(&req.url)?;
        let mut resp = self
            .client
            .request(req.method, url)
            .headers(req.headers)
            .body(req.body)
            .send()
            .await
            .map_err(map_reqwest)?;
        // The head is moved out, not copied: the body is all that is read from `inner`.
        let headers = std::mem::take(resp.headers_mut());
        Ok(StreamingResponse {
            status: resp.status().as_u16(),
            headers,
            inner: resp,
        })
    }
}

fn map_reqwest(e: reqwest::Error) -> Error {
    let kind = if e.is_timeout() {
        ErrorKind::Timeout
    } else if e.is_connect() || e.is_request() {
        ErrorKind::Connect
    } else if e.is_body() || e.is_decode() {
        ErrorKind::UpstreamProtocol
    } else {
        ErrorKind::Connect
    };
    let msg = match kind {
        ErrorKind::Timeout => "the upstream did not answer in time",
        ErrorKind::UpstreamProtocol => "the upstream response body was cut or unreadable",
        _ => "could not reach the upstream",
    };
    Error::new(kind, msg).with_source(e.without_url())
}

fn map_reqwest_body(e: reqwest::Error) -> Error {
    if e.is_timeout() {
        return Error::new(ErrorKind::Timeout, "the upstream stream timed out")
            .with_source(e.without_url());
    }
    Error::new(
        ErrorKind::UpstreamProtocol,
        "the upstream connection was closed in the middle of the response",
    )
    .with_source(e.without_url())
}
