//! The only code that sends requests: a pooled hyper client (rustls, HTTP/1.1 and HTTP/2 by
//! ALPN), request/response values the pure provider functions build and read, and the byte
//! stream of a response. A destination that the environment's proxy settings (`HTTP_PROXY`,
//! `HTTPS_PROXY`, `ALL_PROXY`, `NO_PROXY`) send through a proxy goes through a reqwest client
//! instead, which speaks to proxies.
//!
//! Dropping a response or its body stream drops the upstream request.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use http::{HeaderMap, HeaderValue, Method, Uri};
use http_body_util::Full;
use hyper::body::{Body as _, Incoming};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::{TokioExecutor, TokioTimer};

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
        let secret = key.expose();
        let mut text = String::with_capacity(7 + secret.len());
        text.push_str("Bearer ");
        text.push_str(secret);
        let mut v = HeaderValue::try_from(text).map_err(|_| {
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

/// The direct sender: hyper's pooled client over rustls (or plain TCP for `http://`).
type DirectClient = hyper_util::client::legacy::Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The pooled HTTP sender.
#[derive(Clone)]
pub struct Transport {
    direct: DirectClient,
    /// Sends the destinations that `proxies` routes through a proxy.
    proxied: reqwest::Client,
    /// `None` when no proxy is configured: nothing is proxied, and nothing is checked.
    proxies: Option<Arc<Matcher>>,
    user_agent: HeaderValue,
    config: TransportConfig,
    urls: Arc<UriCache>,
}

impl std::fmt::Debug for Transport {
    // The cached URLs and the proxies are left out: either may carry a credential.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Parsed upstream URLs by their text. A provider sends every request of an operation to the
/// same few URLs; a cached `Uri` costs a few reference-count increments to clone, where
/// parsing a URL with its host's IDNA mapping cost about 20,000 instructions. Bounded: past
/// [`UriCache::MAX`] entries, or for a text longer than [`UriCache::MAX_TEXT`] (a URL may carry
/// a client's model name), a URL is parsed on every use instead of kept. Looked up on every
/// call, so hashed with a seeded fast hasher (bounded, so even colliding keys cost at most a
/// scan of it).
#[derive(Default)]
struct UriCache(
    std::sync::RwLock<std::collections::HashMap<Box<str>, Dest, foldhash::fast::RandomState>>,
);

/// A parsed upstream URL, and for a plain `http://` one (always HTTP/1.1: HTTP/2 is only
/// negotiated by TLS) the `Host` header it is sent with, made once rather than per request.
#[derive(Debug, Clone, PartialEq)]
struct Dest {
    uri: Uri,
    host: Option<HeaderValue>,
}

impl Dest {
    fn new(uri: Uri) -> Self {
        let host = (uri.scheme_str() == Some("http"))
            .then(|| host_header(&uri))
            .flatten();
        Dest { uri, host }
    }
}

/// The `Host` header of an HTTP/1.1 request to `uri`: its host, with the port when it is not
/// the scheme's default (what the connection pool would otherwise build for each request).
fn host_header(uri: &Uri) -> Option<HeaderValue> {
    let host = uri.host()?;
    let default = match uri.scheme_str() {
        Some("https") => 443,
        _ => 80,
    };
    match uri.port_u16() {
        Some(port) if port != default => HeaderValue::try_from(format!("{host}:{port}")).ok(),
        _ => HeaderValue::from_str(host).ok(),
    }
}

impl UriCache {
    const MAX: usize = 1024;
    const MAX_TEXT: usize = 2048;

    fn parse(&self, text: &str) -> Result<Dest> {
        if let Ok(map) = self.0.read() {
            if let Some(dest) = map.get(text) {
                return Ok(dest.clone());
            }
        }
        let dest = Dest::new(parse_uri(text)?);
        if text.len() > Self::MAX_TEXT {
            return Ok(dest);
        }
        if let Ok(mut map) = self.0.write() {
            if map.len() < Self::MAX {
                map.insert(text.into(), dest.clone());
            }
        }
        Ok(dest)
    }
}

/// An absolute `http`/`https` URL as a `Uri`. Text that is not already a valid URI (a
/// non-ASCII host, a space in the query) is normalized the way a browser would first.
fn parse_uri(text: &str) -> Result<Uri> {
    // Without its query, which may carry a credential.
    let shown = || text.split('?').next().unwrap_or_default().to_owned();
    let uri = match text.parse::<Uri>() {
        Ok(uri) => uri,
        Err(_) => {
            let url = reqwest::Url::parse(text)
                .map_err(|e| Error::config(format!("invalid URL `{}`: {e}", shown())))?;
            url.as_str()
                .parse::<Uri>()
                .map_err(|e| Error::config(format!("invalid URL `{}`: {e}", shown())))?
        }
    };
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(host)) if !host.is_empty() => Ok(uri),
        _ => Err(Error::config(format!(
            "invalid URL `{}`: not an absolute http or https URL",
            shown()
        ))),
    }
}

/// A response whose body has not been read yet.
pub struct StreamingResponse {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: HeaderMap,
    inner: ResponseBody,
}

impl std::fmt::Debug for StreamingResponse {
    // The headers are left out: an upstream may set a cookie or echo a credential.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamingResponse")
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

enum ResponseBody {
    Direct(DirectBody),
    Proxied(reqwest::Response),
}

impl ResponseBody {
    /// The length the upstream declared (`Content-Length`), if it did.
    fn declared_len(&self) -> Option<u64> {
        match self {
            ResponseBody::Direct(b) => b.body.size_hint().exact(),
            ResponseBody::Proxied(r) => r.content_length(),
        }
    }

    /// The next chunk of the body, `None` at its end; errors as [`StreamingResponse::collect`]'s.
    async fn chunk(&mut self) -> Result<Option<Bytes>> {
        match self {
            ResponseBody::Direct(b) => b.next().await.transpose().map_err(map_body_collect),
            ResponseBody::Proxied(r) => r.chunk().await.map_err(map_reqwest),
        }
    }
}

/// Why a direct response body ended early.
enum BodyError {
    /// The whole-request deadline passed.
    Timeout,
    /// The connection failed or closed before the body was complete.
    Cut(hyper::Error),
}

/// The body of a direct response as a stream of data chunks, cut at the request's deadline.
/// Dropping it drops hyper's body: an HTTP/1.1 connection is then closed rather than pooled
/// half-read, an HTTP/2 stream is reset.
struct DirectBody {
    body: Incoming,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    done: bool,
}

impl Stream for DirectBody {
    type Item = std::result::Result<Bytes, BodyError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if let Some(deadline) = this.deadline.as_mut() {
            if deadline.as_mut().poll(cx).is_ready() {
                this.done = true;
                return Poll::Ready(Some(Err(BodyError::Timeout)));
            }
        }
        loop {
            match Pin::new(&mut this.body).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    this.done = true;
                    return Poll::Ready(None);
                }
                Poll::Ready(Some(Err(e))) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(BodyError::Cut(e))));
                }
                Poll::Ready(Some(Ok(frame))) => {
                    // Trailers carry nothing a caller reads.
                    if let Ok(data) = frame.into_data() {
                        return Poll::Ready(Some(Ok(data)));
                    }
                }
            }
        }
    }
}

impl StreamingResponse {
    /// Reads the whole body.
    pub async fn collect(self) -> Result<HttpResponse> {
        let status = self.status;
        let headers = self.headers;
        let body = match self.inner {
            ResponseBody::Proxied(r) => r.bytes().await.map_err(map_reqwest)?,
            ResponseBody::Direct(mut body) => {
                // One chunk (the usual case) is kept as it is; more are joined.
                let mut first: Option<Bytes> = None;
                let mut joined: Option<BytesMut> = None;
                while let Some(chunk) = body.next().await {
                    let chunk = chunk.map_err(map_body_collect)?;
                    if let Some(buf) = joined.as_mut() {
                        buf.extend_from_slice(&chunk);
                    } else if let Some(f) = first.take() {
                        let mut buf = BytesMut::with_capacity(f.len() + chunk.len());
                        buf.extend_from_slice(&f);
                        buf.extend_from_slice(&chunk);
                        joined = Some(buf);
                    } else {
                        first = Some(chunk);
                    }
                }
                match joined {
                    Some(buf) => buf.freeze(),
                    None => first.unwrap_or_default(),
                }
            }
        };
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
            .declared_len()
            .is_some_and(|n| n > u64::try_from(max).unwrap_or(u64::MAX))
        {
            return Err(too_long());
        }
        let mut body = bytes::BytesMut::new();
        while let Some(chunk) = self.inner.chunk().await? {
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
        match self.inner {
            ResponseBody::Direct(body) => body.map(|r| r.map_err(map_body_stream)).left_stream(),
            ResponseBody::Proxied(r) => r
                .bytes_stream()
                .map(|r| r.map_err(map_reqwest_body))
                .right_stream(),
        }
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
    /// A transport with these settings (rustls with the webpki roots, HTTP/1.1 and HTTP/2 by
    /// ALPN, TCP_NODELAY, pooled), honouring the proxy environment variables.
    pub fn new(config: TransportConfig) -> Result<Self> {
        // Without any of these set, the matcher proxies nothing (whatever `NO_PROXY` says), and
        // asking it costs ~700 instructions a request.
        let configured = [
            "HTTP_PROXY",
            "http_proxy",
            "HTTPS_PROXY",
            "https_proxy",
            "ALL_PROXY",
            "all_proxy",
        ]
        .iter()
        .any(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()));
        Self::build(config, configured.then(Matcher::from_env), None)
    }

    /// `proxies` decides which destinations go through a proxy; `proxy` is given to the proxied
    /// client in place of the environment's settings (tests).
    fn build(
        config: TransportConfig,
        proxies: Option<Matcher>,
        proxy: Option<reqwest::Proxy>,
    ) -> Result<Self> {
        let user_agent = HeaderValue::from_str(&config.user_agent)
            .map_err(|_| Error::config("the User-Agent is not valid header text"))?;

        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(config.connect_timeout));
        let tls = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
            .map_err(|e| Error::new(ErrorKind::Internal, "could not set up TLS").with_source(e))?
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(tcp);
        let direct = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(config.pool_max_idle_per_host)
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(tls);

        let mut b = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .pool_max_idle_per_host(config.pool_max_idle_per_host)
            .tcp_nodelay(true)
            .user_agent(config.user_agent.clone());
        if let Some(t) = config.request_timeout {
            b = b.timeout(t);
        }
        if let Some(p) = proxy {
            b = b.proxy(p);
        }
        let proxied = b.build().map_err(|e| {
            Error::new(ErrorKind::Internal, "could not build the HTTP client").with_source(e)
        })?;
        Ok(Transport {
            direct,
            proxied,
            proxies: proxies.map(Arc::new),
            user_agent,
            config,
            urls: Arc::default(),
        })
    }

    /// The settings.
    pub fn config(&self) -> &TransportConfig {
        &self.config
    }

    /// Whether requests to `uri` go through a proxy.
    fn is_proxied(&self, uri: &Uri) -> bool {
        self.proxies
            .as_ref()
            .is_some_and(|m| m.intercept(uri).is_some())
    }

    /// Sends a request and returns once the response head arrived.
    pub async fn send(&self, req: HttpRequest) -> Result<StreamingResponse> {
        let Dest { uri, host } = self.urls.parse(&req.url)?;
        if self.is_proxied(&uri) {
            return self.send_proxied(req).await;
        }
        let deadline = self
            .config
            .request_timeout
            .map(|t| tokio::time::Instant::now() + t);
        let mut request = http::Request::new(Full::new(req.body));
        *request.method_mut() = req.method;
        *request.uri_mut() = uri;
        *request.headers_mut() = req.headers;
        let headers = request.headers_mut();
        // As reqwest did: the client's defaults unless the provider set its own.
        headers
            .entry(http::header::USER_AGENT)
            .or_insert_with(|| self.user_agent.clone());
        headers
            .entry(http::header::ACCEPT)
            .or_insert_with(|| HeaderValue::from_static("*/*"));
        if let Some(host) = host {
            // Unless the provider set (and signed) its own.
            headers.entry(http::header::HOST).or_insert(host);
        }
        let sent = self.direct.request(request);
        let resp = match deadline {
            Some(at) => tokio::time::timeout_at(at, sent)
                .await
                .map_err(|_| Error::new(ErrorKind::Timeout, TIMEOUT_MSG))?,
            None => sent.await,
        }
        .map_err(map_send)?;
        let (head, body) = resp.into_parts();
        Ok(StreamingResponse {
            status: head.status.as_u16(),
            headers: head.headers,
            inner: ResponseBody::Direct(DirectBody {
                body,
                deadline: deadline.map(|at| Box::pin(tokio::time::sleep_until(at))),
                done: false,
            }),
        })
    }

    async fn send_proxied(&self, req: HttpRequest) -> Result<StreamingResponse> {
        let url = reqwest::Url::parse(&req.url).map_err(|e| {
            let shown = req.url.split('?').next().unwrap_or_default();
            Error::config(format!("invalid URL `{shown}`: {e}"))
        })?;
        let mut resp = self
            .proxied
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
            inner: ResponseBody::Proxied(resp),
        })
    }
}

const TIMEOUT_MSG: &str = "the upstream did not answer in time";
const CONNECT_MSG: &str = "could not reach the upstream";
const BODY_CUT_MSG: &str = "the upstream response body was cut or unreadable";
const STREAM_TIMEOUT_MSG: &str = "the upstream stream timed out";
const STREAM_CUT_MSG: &str = "the upstream connection was closed in the middle of the response";

/// Whether an I/O time-out (the connect timeout) caused `e`.
fn timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::TimedOut {
                return true;
            }
        }
        cur = err.source();
    }
    false
}

/// A failure before the response head: a time-out, or the upstream could not be reached (DNS,
/// TCP, TLS, or the connection closed before answering). hyper's errors carry no URL.
fn map_send(e: hyper_util::client::legacy::Error) -> Error {
    if timed_out(&e) {
        Error::new(ErrorKind::Timeout, TIMEOUT_MSG).with_source(e)
    } else {
        Error::new(ErrorKind::Connect, CONNECT_MSG).with_source(e)
    }
}

fn map_body_collect(e: BodyError) -> Error {
    match e {
        BodyError::Timeout => Error::new(ErrorKind::Timeout, TIMEOUT_MSG),
        BodyError::Cut(e) => Error::new(ErrorKind::UpstreamProtocol, BODY_CUT_MSG).with_source(e),
    }
}

fn map_body_stream(e: BodyError) -> Error {
    match e {
        BodyError::Timeout => Error::new(ErrorKind::Timeout, STREAM_TIMEOUT_MSG),
        BodyError::Cut(e) => Error::new(ErrorKind::UpstreamProtocol, STREAM_CUT_MSG).with_source(e),
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
        ErrorKind::Timeout => TIMEOUT_MSG,
        ErrorKind::UpstreamProtocol => BODY_CUT_MSG,
        _ => CONNECT_MSG,
    };
    Error::new(kind, msg).with_source(e.without_url())
}

fn map_reqwest_body(e: reqwest::Error) -> Error {
    if e.is_timeout() {
        return Error::new(ErrorKind::Timeout, STREAM_TIMEOUT_MSG).with_source(e.without_url());
    }
    Error::new(ErrorKind::UpstreamProtocol, STREAM_CUT_MSG).with_source(e.without_url())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// Reads one request head (bounded) from `sock`.
    async fn read_head(sock: &mut TcpStream) -> String {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 64 * 1024 {
            let n = sock.read(&mut chunk).await.unwrap();
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        String::from_utf8_lossy(&buf).into_owned()
    }

    /// A loopback server that answers each connection's first request with its head as the
    /// body, and counts the connections it accepted.
    async fn echo_head_server() -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let head = read_head(&mut sock).await;
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{head}",
                        head.len()
                    );
                    let _ = sock.write_all(reply.as_bytes()).await;
                });
            }
        });
        (format!("http://{addr}"), accepted)
    }

    fn config() -> TransportConfig {
        TransportConfig {
            connect_timeout: Duration::from_secs(5),
            ..TransportConfig::default()
        }
    }

    #[tokio::test]
    async fn a_proxied_destination_goes_through_the_proxy() {
        let (proxy, accepted) = echo_head_server().await;
        let matcher = Matcher::builder().http(proxy.clone()).build();
        let t = Transport::build(
            config(),
            Some(matcher),
            Some(reqwest::Proxy::http(&proxy).unwrap()),
        )
        .unwrap();
        let uri: Uri = "http://upstream.invalid/v1/models".parse().unwrap();
        assert!(t.is_proxied(&uri));
        let resp = t
            .send(HttpRequest::get("http://upstream.invalid/v1/models".into()))
            .await
            .unwrap();
        assert_eq!(resp.status, 200);
        let body = resp.collect().await.unwrap().body;
        let head = String::from_utf8_lossy(&body);
        // The absolute form in the request line is what a client sends to a proxy.
        assert!(
            head.starts_with("GET http://upstream.invalid/v1/models HTTP/1.1\r\n"),
            "{head}"
        );
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_destination_in_no_proxy_goes_direct_with_the_user_agent() {
        let (proxy, proxy_accepted) = echo_head_server().await;
        let (upstream, accepted) = echo_head_server().await;
        let matcher = Matcher::builder()
            .http(proxy.clone())
            .no("127.0.0.1")
            .build();
        let t = Transport::build(
            config(),
            Some(matcher),
            Some(reqwest::Proxy::http(&proxy).unwrap()),
        )
        .unwrap();
        let url = format!("{upstream}/v1/chat?x=1");
        assert!(!t.is_proxied(&url.parse().unwrap()));
        let req = HttpRequest::post_json(url, &serde_json::json!({"a": 1})).unwrap();
        let resp = t.send(req).await.unwrap();
        assert_eq!(resp.content_type(), "text/plain");
        let head = String::from_utf8_lossy(&resp.collect().await.unwrap().body).into_owned();
        assert!(head.starts_with("POST /v1/chat?x=1 HTTP/1.1\r\n"), "{head}");
        let lower = head.to_ascii_lowercase();
        assert!(lower.contains("user-agent: llmux/"), "{head}");
        assert!(lower.contains("content-length: 7\r\n"), "{head}");
        assert!(
            lower.contains("content-type: application/json\r\n"),
            "{head}"
        );
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert_eq!(proxy_accepted.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn without_proxy_settings_nothing_is_proxied() {
        for matcher in [None, Some(Matcher::builder().no("example.org").build())] {
            let t = Transport::build(config(), matcher, None).unwrap();
            assert!(!t.is_proxied(&"https://api.example.com/v1".parse().unwrap()));
            assert!(!t.is_proxied(&"http://api.example.com/v1".parse().unwrap()));
        }
        // An https-only proxy leaves http alone.
        let matcher = Matcher::builder().https("http://127.0.0.1:9").build();
        let t = Transport::build(config(), Some(matcher), None).unwrap();
        assert!(t.is_proxied(&"https://api.example.com/v1".parse().unwrap()));
        assert!(!t.is_proxied(&"http://api.example.com/v1".parse().unwrap()));
    }

    #[tokio::test]
    async fn an_unreachable_upstream_is_a_connect_error_without_the_query() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let t = Transport::new(config()).unwrap();
        let err = t
            .send(HttpRequest::get(format!("http://{addr}/v1?key=hunter2")))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Connect);
        assert!(!format!("{err:?} {err}").contains("hunter2"));
    }

    #[tokio::test]
    async fn an_upstream_that_never_answers_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let _ = read_head(&mut sock).await;
            // Holds the connection open, unanswered, until the test ends.
            let _ = rx.await;
        });
        let t = Transport::new(TransportConfig {
            request_timeout: Some(Duration::from_millis(300)),
            ..config()
        })
        .unwrap();
        let err = t
            .send(HttpRequest::get(format!("http://{addr}/")))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout);
        drop(tx);
    }

    /// A server that sends `head`, then `body`, then either closes or waits for the client to
    /// close (reporting the close through the returned channel).
    async fn partial_server(
        head: &'static str,
        body: &'static str,
    ) -> (String, tokio::sync::oneshot::Receiver<bool>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let _ = read_head(&mut sock).await;
            sock.write_all(head.as_bytes()).await.unwrap();
            sock.write_all(body.as_bytes()).await.unwrap();
            // Closed by the client: the read ends with 0 bytes (or a reset).
            let mut b = [0u8; 16];
            let closed = matches!(
                tokio::time::timeout(Duration::from_secs(10), sock.read(&mut b)).await,
                Ok(Ok(0) | Err(_))
            );
            let _ = tx.send(closed);
        });
        (format!("http://{addr}/"), rx)
    }

    #[tokio::test]
    async fn a_cut_body_is_an_upstream_protocol_error() {
        let t = Transport::new(config()).unwrap();
        let head = "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n";
        let (url, _closed) = cut_server(head, "hello").await;
        let err = t
            .send(HttpRequest::get(url))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UpstreamProtocol);
        assert_eq!(err.to_string(), BODY_CUT_MSG);

        let (url, _closed) = cut_server(head, "hello").await;
        let mut s = Box::pin(t.send(HttpRequest::get(url)).await.unwrap().bytes_stream());
        assert_eq!(
            s.next().await.unwrap().unwrap(),
            Bytes::from_static(b"hello")
        );
        let err = s.next().await.unwrap().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UpstreamProtocol);
        assert_eq!(err.to_string(), STREAM_CUT_MSG);
    }

    /// Like [`partial_server`], but closes right after the partial body.
    async fn cut_server(
        head: &'static str,
        body: &'static str,
    ) -> (String, tokio::sync::oneshot::Receiver<bool>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let _ = read_head(&mut sock).await;
            sock.write_all(head.as_bytes()).await.unwrap();
            sock.write_all(body.as_bytes()).await.unwrap();
            drop(sock);
            let _ = tx.send(true);
        });
        (format!("http://{addr}/"), rx)
    }

    #[tokio::test]
    async fn dropping_the_body_stream_closes_the_upstream_connection() {
        let t = Transport::new(config()).unwrap();
        let (url, closed) = partial_server(
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n",
            "6\r\ndata:1\r\n",
        )
        .await;
        let resp = t.send(HttpRequest::get(url)).await.unwrap();
        assert_eq!(resp.content_type(), "text/event-stream");
        let mut s = Box::pin(resp.bytes_stream());
        assert_eq!(
            s.next().await.unwrap().unwrap(),
            Bytes::from_static(b"data:1")
        );
        drop(s);
        assert!(closed.await.unwrap(), "the upstream connection stayed open");
    }

    #[tokio::test]
    async fn the_request_timeout_bounds_the_body_too() {
        let t = Transport::new(TransportConfig {
            request_timeout: Some(Duration::from_millis(300)),
            ..config()
        })
        .unwrap();
        let (url, _closed) = partial_server(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
            "6\r\ndata:1\r\n",
        )
        .await;
        let mut s = Box::pin(t.send(HttpRequest::get(url)).await.unwrap().bytes_stream());
        assert_eq!(
            s.next().await.unwrap().unwrap(),
            Bytes::from_static(b"data:1")
        );
        let err = s.next().await.unwrap().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout);
        assert_eq!(err.to_string(), STREAM_TIMEOUT_MSG);
        assert!(s.next().await.is_none());
    }

    #[tokio::test]
    async fn collect_at_most_refuses_a_long_body_without_reading_it_to_the_end() {
        let t = Transport::new(config()).unwrap();
        // Declared too long: refused at the head, though the upstream never sends the rest.
        let (url, _closed) = partial_server(
            "HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n",
            "0123456789",
        )
        .await;
        let resp = t.send(HttpRequest::get(url)).await.unwrap();
        let err = resp.collect_at_most(100).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UpstreamProtocol);
        assert!(err.to_string().contains("longer than 100 bytes"), "{err}");
        // Chunked, no length: refused once the chunks read pass the bound.
        let (url, _closed) = partial_server(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
            "8\r\n01234567\r\n8\r\n89abcdef\r\n",
        )
        .await;
        let resp = t.send(HttpRequest::get(url)).await.unwrap();
        let err = resp.collect_at_most(12).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UpstreamProtocol);
        // Within the bound: the whole body.
        let (url, _closed) = cut_server(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
            "4\r\nab\"}\r\n3\r\nxyz\r\n0\r\n\r\n",
        )
        .await;
        let resp = t.send(HttpRequest::get(url)).await.unwrap();
        let full = resp.collect_at_most(7).await.unwrap();
        assert_eq!(&full.body[..], b"ab\"}xyz");
    }

    #[tokio::test]
    async fn https_speaks_tls() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let first = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut b = [0u8; 1];
            sock.read_exact(&mut b).await.unwrap();
            b[0]
        });
        let t = Transport::new(config()).unwrap();
        let err = t
            .send(HttpRequest::get(format!("https://{addr}/")))
            .await
            .unwrap_err();
        // A TLS record of type handshake (the ClientHello), not plain HTTP.
        assert_eq!(first.await.unwrap(), 0x16);
        assert_eq!(err.kind(), ErrorKind::Connect);
    }

    #[test]
    fn urls_are_checked_and_normalized_without_showing_the_query() {
        let err = parse_uri("ftp://host/x?key=hunter2").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(!err.to_string().contains("hunter2"));
        let err = parse_uri("not a url?key=hunter2").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(!err.to_string().contains("hunter2"));
        let uri = parse_uri("https://bücher.example/a b?q=x y").unwrap();
        assert_eq!(uri.host(), Some("xn--bcher-kva.example"));
        assert_eq!(uri.path(), "/a%20b");
        let cache = UriCache::default();
        let a = cache.parse("https://api.example.com/v1/chat").unwrap();
        assert_eq!(cache.parse("https://api.example.com/v1/chat").unwrap(), a);
    }

    #[test]
    fn a_plain_http_url_carries_its_host_header_with_a_non_default_port() {
        let host = |url: &str| {
            Dest::new(parse_uri(url).unwrap())
                .host
                .map(|h| h.to_str().unwrap().to_owned())
        };
        for (url, want) in [
            ("http://127.0.0.1:8080/v1", "127.0.0.1:8080"),
            ("http://ollama.local/api/chat", "ollama.local"),
            ("http://ollama.local:80/api", "ollama.local"),
            ("http://[::1]:11434/api", "[::1]:11434"),
            ("http://h:443/", "h:443"),
        ] {
            assert_eq!(host(url).as_deref(), Some(want), "{url}");
        }
        // TLS may negotiate HTTP/2, whose authority is not a header: left to the pool.
        assert_eq!(host("https://api.example.com:8443/v1"), None);
    }
}
