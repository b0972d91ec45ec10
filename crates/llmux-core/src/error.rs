//! The one error type of the library, classified once into an [`ErrorKind`].
//!
//! Every failure, from a bad request to a vendor's mid-stream error event, becomes an [`Error`]
//! whose kind decides retry, HTTP status and metrics. Messages are safe to show a client;
//! raw upstream bodies live only in `source` (for logs at debug level).

use std::fmt;
use std::time::Duration;

/// Result alias used across the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, said once. Drives retry decisions, gateway status codes and metric labels.
///
/// Deliberately exhaustive: every classification of a kind (retry, failover, each ingress's
/// status and code, the CLI's batch error type) is a `match` without a wildcard arm, so a new
/// kind does not compile until each of them has decided what it means.
///
/// Two questions about an error are answered here, next to each other:
/// [`ErrorKind::is_retryable`] (may the *same* upstream succeed on a new attempt?) and
/// [`ErrorKind::concerns_upstream`] (may *another* upstream serve this request?).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request is malformed or has values out of range (HTTP 400).
    InvalidRequest,
    /// The provider or model cannot do what was asked (streaming, tools, embeddings…).
    Unsupported,
    /// The credential was rejected (HTTP 401).
    Authentication,
    /// The credential is valid but not allowed to do this (HTTP 403).
    PermissionDenied,
    /// The model or resource does not exist (HTTP 404).
    NotFound,
    /// The prompt plus the requested output does not fit the model's context window.
    ContextLengthExceeded,
    /// Input or output was blocked by the vendor's content moderation.
    ContentFiltered,
    /// Too many requests or tokens per unit of time; retry later (HTTP 429).
    RateLimited,
    /// The account is out of credit or quota; retrying will not help.
    QuotaExhausted,
    /// A timeout: connect, first event, idle gap or total.
    Timeout,
    /// The connection could not be made or was dropped before a response.
    Connect,
    /// The upstream failed (HTTP 5xx or a vendor internal error).
    UpstreamServer,
    /// The upstream answered something that is not its protocol (HTML page, bad JSON, cut stream).
    UpstreamProtocol,
    /// A circuit breaker is open for this upstream; the call was not attempted.
    CircuitOpen,
    /// The caller cancelled the request.
    Cancelled,
    /// Configuration is missing or wrong (unset API key, unknown provider, bad base URL).
    Config,
    /// A bug in llmux.
    Internal,
}

impl ErrorKind {
    /// Whether a new attempt may succeed. One exhaustive match: a new kind forces a decision.
    /// Whether anything was already streamed to the caller is checked separately.
    pub fn is_retryable(self) -> bool {
        match self {
            ErrorKind::RateLimited
            | ErrorKind::Timeout
            | ErrorKind::Connect
            | ErrorKind::UpstreamServer => true,
            ErrorKind::InvalidRequest
            | ErrorKind::Unsupported
            | ErrorKind::Authentication
            | ErrorKind::PermissionDenied
            | ErrorKind::NotFound
            | ErrorKind::ContextLengthExceeded
            | ErrorKind::ContentFiltered
            | ErrorKind::QuotaExhausted
            | ErrorKind::UpstreamProtocol
            | ErrorKind::CircuitOpen
            | ErrorKind::Cancelled
            | ErrorKind::Config
            | ErrorKind::Internal => false,
        }
    }

    /// Whether the error concerns the upstream that raised it rather than the request, so
    /// that another upstream (a router's next channel) may serve the same request: the
    /// upstream is unwell, busy, out of quota, refuses our credentials or is misconfigured.
    /// False when the request itself is the problem (every upstream would answer the same) or
    /// the caller left. One exhaustive match: a new kind forces a decision.
    ///
    /// Wider than [`ErrorKind::is_retryable`]: a rejected key or an exhausted quota is not
    /// worth a second attempt at the same upstream, but another upstream has its own.
    pub fn concerns_upstream(self) -> bool {
        match self {
            ErrorKind::RateLimited
            | ErrorKind::Timeout
            | ErrorKind::Connect
            | ErrorKind::UpstreamServer
            | ErrorKind::UpstreamProtocol
            | ErrorKind::CircuitOpen
            | ErrorKind::QuotaExhausted
            | ErrorKind::Authentication
            | ErrorKind::PermissionDenied
            | ErrorKind::Config => true,
            ErrorKind::InvalidRequest
            | ErrorKind::Unsupported
            | ErrorKind::NotFound
            | ErrorKind::ContextLengthExceeded
            | ErrorKind::ContentFiltered
            | ErrorKind::Cancelled
            | ErrorKind::Internal => false,
        }
    }

    /// A stable snake_case name, used as a metric label and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest => "invalid_request",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Authentication => "authentication",
            ErrorKind::PermissionDenied => "permission_denied",
            ErrorKind::NotFound => "not_found",
            ErrorKind::ContextLengthExceeded => "context_length_exceeded",
            ErrorKind::ContentFiltered => "content_filtered",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::QuotaExhausted => "quota_exhausted",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Connect => "connect",
            ErrorKind::UpstreamServer => "upstream_server",
            ErrorKind::UpstreamProtocol => "upstream_protocol",
            ErrorKind::CircuitOpen => "circuit_open",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Config => "config",
            ErrorKind::Internal => "internal",
        }
    }

    /// Every kind, in declaration order (for docs and golden tests).
    pub const ALL: [ErrorKind; 17] = [
        ErrorKind::InvalidRequest,
        ErrorKind::Unsupported,
        ErrorKind::Authentication,
        ErrorKind::PermissionDenied,
        ErrorKind::NotFound,
        ErrorKind::ContextLengthExceeded,
        ErrorKind::ContentFiltered,
        ErrorKind::RateLimited,
        ErrorKind::QuotaExhausted,
        ErrorKind::Timeout,
        ErrorKind::Connect,
        ErrorKind::UpstreamServer,
        ErrorKind::UpstreamProtocol,
        ErrorKind::CircuitOpen,
        ErrorKind::Cancelled,
        ErrorKind::Config,
        ErrorKind::Internal,
    ];
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The library's error: a kind, a client-safe message, and what the upstream said.
/// One pointer wide, so `Result`s stay small on hot paths.
pub struct Error {
    inner: Box<Inner>,
}

struct Inner {
    kind: ErrorKind,
    message: String,
    provider: Option<&'static str>,
    upstream_status: Option<u16>,
    upstream_code: Option<String>,
    param: Option<&'static str>,
    request_id: Option<String>,
    retry_after: Option<Duration>,
    retry_hint: Option<bool>,
    clock_skew: bool,
    source: Option<Source>,
}

impl Error {
    /// A new error of `kind` with a message that is safe to show a client.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            inner: Box::new(Inner {
                kind,
                message: message.into(),
                provider: None,
                upstream_status: None,
                upstream_code: None,
                param: None,
                request_id: None,
                retry_after: None,
                retry_hint: None,
                clock_skew: false,
                source: None,
            }),
        }
    }

    /// Shorthand for [`ErrorKind::InvalidRequest`].
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidRequest, message)
    }

    /// Shorthand for [`ErrorKind::Unsupported`].
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unsupported, message)
    }

    /// Shorthand for [`ErrorKind::UpstreamProtocol`].
    pub fn protocol(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::UpstreamProtocol, message)
    }

    /// Shorthand for [`ErrorKind::Config`].
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }

    /// Names the provider the error came from.
    pub fn with_provider(mut self, provider: &'static str) -> Self {
        self.inner.provider = Some(provider);
        self
    }

    /// Records the upstream HTTP status.
    pub fn with_status(mut self, status: u16) -> Self {
        self.inner.upstream_status = Some(status);
        self
    }

    /// Records the vendor's own error code (`InvalidApiKey`, `rate_limit_exceeded`…).
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        let code = code.into();
        if !code.is_empty() {
            self.inner.upstream_code = Some(code);
        }
        self
    }

    /// Names the request field at fault (`thinking_budget`, `reasoning_effort`…), for
    /// protocols whose error bodies carry one (OpenAI's `param`).
    pub fn with_param(mut self, param: &'static str) -> Self {
        self.inner.param = Some(param);
        self
    }

    /// The request field at fault, when one is named.
    pub fn param(&self) -> Option<&'static str> {
        self.inner.param
    }

    /// Records the upstream request id.
    pub fn with_request_id(mut self, id: Option<String>) -> Self {
        if id.is_some() {
            self.inner.request_id = id;
        }
        self
    }

    /// Records how long the upstream asked us to wait.
    pub fn with_retry_after(mut self, after: Option<Duration>) -> Self {
        if after.is_some() {
            self.inner.retry_after = after;
        }
        self
    }

    /// Records the upstream's own verdict on retrying (OpenAI's `x-should-retry` header), which
    /// overrides the kind's default in [`Error::is_retryable`].
    pub fn with_retry_hint(mut self, hint: Option<bool>) -> Self {
        if hint.is_some() {
            self.inner.retry_hint = hint;
        }
        self
    }

    /// Marks the error as a rejection for a skewed client clock (the client then syncs its
    /// clock to the response's `Date` and retries once).
    pub fn with_clock_skew(mut self) -> Self {
        self.inner.clock_skew = true;
        self
    }

    /// True when the upstream rejected the request because our clock is off.
    pub fn is_clock_skew(&self) -> bool {
        self.inner.clock_skew
    }

    /// Attaches the underlying error (for logs only; never shown to a client).
    pub fn with_source(mut self, source: impl Into<Source>) -> Self {
        self.inner.source = Some(source.into());
        self
    }

    /// The classification.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// The client-safe message.
    pub fn message(&self) -> &str {
        &self.inner.message
    }

    /// The provider id, when the error came from one.
    pub fn provider(&self) -> Option<&'static str> {
        self.inner.provider
    }

    /// The upstream HTTP status, when there was one.
    pub fn upstream_status(&self) -> Option<u16> {
        self.inner.upstream_status
    }

    /// The vendor's own error code, when it sent one.
    pub fn upstream_code(&self) -> Option<&str> {
        self.inner.upstream_code.as_deref()
    }

    /// The upstream request id, when known.
    pub fn request_id(&self) -> Option<&str> {
        self.inner.request_id.as_deref()
    }

    /// How long the upstream asked us to wait before retrying.
    pub fn retry_after(&self) -> Option<Duration> {
        self.inner.retry_after
    }

    /// Whether retrying may help: the upstream's verdict when it gave one (see
    /// [`Error::with_retry_hint`]), else [`ErrorKind::is_retryable`].
    pub fn is_retryable(&self) -> bool {
        self.inner
            .retry_hint
            .unwrap_or_else(|| self.inner.kind.is_retryable())
    }

    /// The upstream's verdict on retrying, if it gave one.
    pub fn retry_hint(&self) -> Option<bool> {
        self.inner.retry_hint
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.inner.kind)
            .field("message", &self.inner.message);
        if let Some(p) = self.inner.provider {
            d.field("provider", &p);
        }
        if let Some(s) = self.inner.upstream_status {
            d.field("upstream_status", &s);
        }
        if let Some(c) = &self.inner.upstream_code {
            d.field("upstream_code", c);
        }
        if let Some(p) = self.inner.param {
            d.field("param", &p);
        }
        if let Some(r) = &self.inner.request_id {
            d.field("request_id", r);
        }
        if let Some(h) = self.inner.retry_hint {
            d.field("retry_hint", &h);
        }
        if let Some(r) = self.inner.retry_after {
            d.field("retry_after", &r);
        }
        if let Some(s) = &self.inner.source {
            d.field("source", s);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(p) = self.inner.provider {
            write!(f, "{p}: ")?;
        }
        f.write_str(&self.inner.message)?;
        match (&self.inner.upstream_code, self.inner.upstream_status) {
            (Some(code), Some(status)) => write!(f, " ({code}, HTTP {status})"),
            (Some(code), None) => write!(f, " ({code})"),
            (None, Some(status)) => write!(f, " (HTTP {status})"),
            (None, None) => Ok(()),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner
            .source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

/// The kind a bare HTTP status suggests when the body says nothing more specific.
pub fn kind_for_status(status: u16) -> ErrorKind {
    match status {
        400 | 413 | 415 | 422 => ErrorKind::InvalidRequest,
        401 => ErrorKind::Authentication,
        402 => ErrorKind::QuotaExhausted,
        403 => ErrorKind::PermissionDenied,
        404 => ErrorKind::NotFound,
        408 => ErrorKind::Timeout,
        409 | 425 => ErrorKind::UpstreamServer,
        429 => ErrorKind::RateLimited,
        500..=599 => ErrorKind::UpstreamServer,
        _ => ErrorKind::UpstreamProtocol,
    }
}

/// Reads OpenAI's `x-should-retry: true|false` (the server's verdict on retrying this request,
/// which the official SDKs obey before looking at the status).
pub fn parse_should_retry(headers: &http::HeaderMap) -> Option<bool> {
    match headers.get("x-should-retry")?.to_str().ok()?.trim() {
        v if v.eq_ignore_ascii_case("true") => Some(true),
        v if v.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// Parses a `Retry-After` (seconds or HTTP date) or `retry-after-ms` header value.
pub fn parse_retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    if let Some(ms) = headers
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
    {
        if ms.is_finite() && ms >= 0.0 {
            return Some(saturating_secs(ms / 1000.0));
        }
    }
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| saturating_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// Finite, non-negative seconds as a `Duration`; a wait beyond `Duration`'s range (an
/// upstream's `Retry-After: 1e300`) is `Duration::MAX`, which every retry cap then refuses.
fn saturating_secs(secs: f64) -> Duration {
    Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_13_fuzz_retry_after_beyond_duration_range_saturates() {
        // Found by the provider_response fuzz target: a 40-digit `Retry-After` panicked in
        // `Duration::from_secs_f64` while classifying a 429.
        for (name, value) in [
            ("retry-after", "3555555555555555555555555555555555555555"),
            ("retry-after", "1e300"),
            ("retry-after-ms", "1e300"),
        ] {
            let mut headers = http::HeaderMap::new();
            headers.insert(name, http::HeaderValue::from_static(value));
            assert_eq!(
                parse_retry_after(&headers),
                Some(Duration::MAX),
                "{name}: {value}"
            );
        }
        let mut headers = http::HeaderMap::new();
        headers.insert("retry-after", http::HeaderValue::from_static("2.5"));
        assert_eq!(
            parse_retry_after(&headers),
            Some(Duration::from_millis(2500))
        );
    }

    #[test]
    fn retryable_kinds_are_exactly_the_transient_ones() {
        let retryable: Vec<_> = ErrorKind::ALL
            .iter()
            .filter(|k| k.is_retryable())
            .copied()
            .collect();
        assert_eq!(
            retryable,
            vec![
                ErrorKind::RateLimited,
                ErrorKind::Timeout,
                ErrorKind::Connect,
                ErrorKind::UpstreamServer
            ]
        );
    }

    #[test]
    fn issue_14_upstream_kinds_fail_over_and_request_kinds_do_not() {
        let other_upstream: Vec<_> = ErrorKind::ALL
            .iter()
            .filter(|k| k.concerns_upstream())
            .copied()
            .collect();
        assert_eq!(
            other_upstream,
            vec![
                ErrorKind::Authentication,
                ErrorKind::PermissionDenied,
                ErrorKind::RateLimited,
                ErrorKind::QuotaExhausted,
                ErrorKind::Timeout,
                ErrorKind::Connect,
                ErrorKind::UpstreamServer,
                ErrorKind::UpstreamProtocol,
                ErrorKind::CircuitOpen,
                ErrorKind::Config,
            ]
        );
        // Whatever the same upstream may retry, another upstream may serve.
        for k in ErrorKind::ALL {
            assert!(!k.is_retryable() || k.concerns_upstream(), "{k}");
        }
    }

    #[test]
    fn retry_after_reads_seconds_ms_and_dates() {
        let mut h = http::HeaderMap::new();
        h.insert("retry-after", "2".parse().unwrap());
        assert_eq!(parse_retry_after(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after-ms", "1500".parse().unwrap());
        assert_eq!(parse_retry_after(&h), Some(Duration::from_millis(1500)));
        let mut h = http::HeaderMap::new();
        let date = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(30));
        h.insert("retry-after", date.parse().unwrap());
        let d = parse_retry_after(&h).unwrap();
        assert!(
            d <= Duration::from_secs(30) && d >= Duration::from_secs(28),
            "{d:?}"
        );
    }

    #[test]
    fn display_names_provider_code_and_status() {
        let e = Error::new(ErrorKind::Authentication, "the API key was rejected")
            .with_provider("dashscope")
            .with_code("InvalidApiKey")
            .with_status(401);
        assert_eq!(
            e.to_string(),
            "dashscope: the API key was rejected (InvalidApiKey, HTTP 401)"
        );
    }
}
