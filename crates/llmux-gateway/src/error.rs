//! Client-facing errors: [`ApiError`], the gateway's own status of each [`ErrorKind`]
//! ([`status_for`]), and [`ErrorEnvelope`], the way a protocol renders an error.
//!
//! An `ApiError` is protocol-neutral: a kind, a message safe to show, optionally the field at
//! fault, a status override and a `Retry-After`. It is rendered by the error envelope of the
//! ingress it arrived on: every dialect in [`crate::ingress`] brings its own (the OpenAI
//! envelope `{"error":{"message","type","param","code"}}`, DashScope's
//! `{"code","message","request_id"}`, …), each with its own exhaustive mapping from kinds to
//! statuses and codes, and errors raised before routing pick the envelope by path
//! ([`crate::ingress::envelope_for`]). Upstream errors keep their kind, but an upstream's
//! rejection of the *gateway's* credentials is never reported as the client's bad key.

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use llmux_core::{Error, ErrorKind};

/// The gateway's status for a kind, whatever the ingress: the status of a usage record and
/// of [`ApiError::status`]. The OpenAI API's statuses; a dialect whose vendor answers some
/// kinds with other statuses says so in its own envelope.
pub fn status_for(kind: ErrorKind) -> StatusCode {
    use ErrorKind as K;
    match kind {
        K::InvalidRequest | K::Unsupported | K::ContextLengthExceeded | K::ContentFiltered => {
            StatusCode::BAD_REQUEST
        }
        K::Authentication => StatusCode::UNAUTHORIZED,
        K::PermissionDenied => StatusCode::FORBIDDEN,
        K::NotFound => StatusCode::NOT_FOUND,
        K::RateLimited | K::QuotaExhausted => StatusCode::TOO_MANY_REQUESTS,
        K::Timeout => StatusCode::GATEWAY_TIMEOUT,
        K::Connect | K::UpstreamServer | K::UpstreamProtocol => StatusCode::BAD_GATEWAY,
        K::CircuitOpen => StatusCode::SERVICE_UNAVAILABLE,
        K::Cancelled => client_closed(),
        K::Config | K::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// 499, the status of a request its client abandoned.
pub fn client_closed() -> StatusCode {
    StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST)
}

/// An error for the client.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The classification (metrics label).
    pub kind: ErrorKind,
    /// Safe to show.
    pub message: String,
    /// The request field at fault, when known.
    pub param: Option<String>,
    /// Overrides the mapped status (413 for an oversized body, 405, 503…); envelopes also
    /// derive their codes for such statuses from it.
    pub status: Option<StatusCode>,
    /// Overrides the envelope's code for the kind, in the vocabulary of the envelope that
    /// renders the error: set only where that envelope is known (a dialect's own decoder, the
    /// admin API), never on errors raised for every ingress.
    pub code: Option<&'static str>,
    /// `Retry-After` for rate limits.
    pub retry_after: Option<Duration>,
}

impl ApiError {
    /// An error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            message: message.into(),
            param: None,
            status: None,
            code: None,
            retry_after: None,
        }
    }

    /// A malformed or invalid request.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidRequest, message)
    }

    /// A feature of the client's protocol this gateway cannot carry to an upstream.
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unsupported, message)
    }

    /// Names the offending field.
    pub fn param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// Sets the envelope's code (see [`ApiError::code`]).
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    /// The body is over the limit.
    pub fn too_large(limit: usize) -> Self {
        let mut e = Self::invalid(format!(
            "the request body is larger than the gateway's limit of {limit} bytes"
        ));
        e.status = Some(StatusCode::PAYLOAD_TOO_LARGE);
        e
    }

    /// No model of that name is served here.
    pub fn unknown_model(model: &str) -> Self {
        Self::new(
            ErrorKind::NotFound,
            format!("The model `{model}` does not exist or you do not have access to it."),
        )
        .param("model")
    }

    /// Most `provider/model` choices a 404 lists ([`ApiError::unknown_model_among`]).
    pub const MAX_MODEL_CHOICES: usize = 8;

    /// No model of that name is served here, but `choices` (the `provider/model` names that
    /// end in it) are: the message lists them (at most [`ApiError::MAX_MODEL_CHOICES`]).
    pub fn unknown_model_among(model: &str, choices: &[&str]) -> Self {
        let mut err = Self::unknown_model(model);
        if let Some((first, rest)) = choices.split_first() {
            let shown = rest.len().min(Self::MAX_MODEL_CHOICES - 1);
            let mut list = format!("`{first}`");
            for c in &rest[..shown] {
                list.push_str(&format!(", `{c}`"));
            }
            if rest.len() > shown {
                list.push_str(&format!(" and {} more", rest.len() - shown));
            }
            err.message = if rest.is_empty() {
                format!("The model `{model}` is not served under that name; ask for {list}.")
            } else {
                format!("The model `{model}` is ambiguous here; choose one of {list}.")
            };
        }
        err
    }

    /// The gateway's status ([`status_for`], or the override).
    pub fn status(&self) -> StatusCode {
        self.status.unwrap_or_else(|| status_for(self.kind))
    }

    /// The response in `envelope`'s format, with `Retry-After` when set and the kind attached
    /// for the logging and metrics middleware.
    pub fn into_response_for(self, envelope: &dyn ErrorEnvelope, request_id: &str) -> Response {
        let r = envelope.render(&self, request_id);
        let mut resp = Response::new(Body::from(r.body));
        *resp.status_mut() = r.status;
        *resp.headers_mut() = r.headers;
        resp.extensions_mut().insert(ErrorKindExt(self.kind));
        resp
    }

    /// A core error about the request itself (validation), keeping its kind, message and the
    /// field it names.
    pub fn from_core(err: &Error) -> Self {
        let mut e = ApiError::new(err.kind(), err.message());
        e.param = err.param().map(str::to_owned);
        e
    }

    /// An upstream error, as the client should see it: an upstream's rejection of the gateway's
    /// own credentials or configuration is a bad gateway, not the client's fault.
    pub fn from_upstream(err: &Error) -> Self {
        let kind = match err.kind() {
            ErrorKind::Authentication | ErrorKind::PermissionDenied | ErrorKind::Config
                if err.provider().is_some() =>
            {
                return ApiError::new(
                    ErrorKind::UpstreamServer,
                    "the upstream provider rejected the gateway's credentials for this channel",
                );
            }
            k => k,
        };
        let mut e = ApiError::new(kind, err.message());
        e.retry_after = err.retry_after();
        e.param = err.param().map(str::to_owned);
        e
    }
}

/// An error as one protocol writes it: status, headers and JSON body.
#[derive(Debug)]
pub struct Rendered {
    /// The status.
    pub status: StatusCode,
    /// `Content-Type`, `Retry-After` and whatever the protocol adds.
    pub headers: HeaderMap,
    /// The JSON body.
    pub body: Vec<u8>,
}

/// How one protocol reports errors: part of a dialect (each dialect in [`crate::ingress`]
/// implements it once; [`crate::ingress::ENVELOPES`] says which paths use which for errors
/// raised before routing). The mapping from kinds to the protocol's statuses and codes is an
/// exhaustive `match` inside the implementation.
pub trait ErrorEnvelope: Send + Sync + 'static {
    /// A short name for logs and tests (`openai`, `dashscope`, …).
    fn name(&self) -> &'static str;

    /// The HTTP status of `err` in this protocol (the override when `err` has one).
    fn status(&self, err: &ApiError) -> StatusCode;

    /// The JSON body of `err`.
    fn body(&self, err: &ApiError, request_id: &str) -> Vec<u8>;

    /// Headers the protocol adds to an error response (beyond `Content-Type` and
    /// `Retry-After`, which [`ErrorEnvelope::render`] sets).
    fn headers(&self, request_id: &str, headers: &mut HeaderMap) {
        let _ = (request_id, headers);
    }

    /// The error for a path no route serves, as the protocol reports it.
    fn unknown_route(&self, method: &Method, path: &str) -> ApiError;

    /// Status, headers and body of `err`.
    fn render(&self, err: &ApiError, request_id: &str) -> Rendered {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(after) = err.retry_after {
            let secs = after.as_secs_f64().ceil().max(1.0) as u64;
            headers.insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
        }
        self.headers(request_id, &mut headers);
        Rendered {
            status: self.status(err),
            headers,
            body: self.body(err, request_id),
        }
    }
}

/// Marks a response with the error kind, for the logging and metrics middleware.
#[derive(Debug, Clone, Copy)]
pub struct ErrorKindExt(pub ErrorKind);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    /// The golden table of the gateway's own statuses.
    #[test]
    fn every_error_kind_has_a_status() {
        let golden: &[(&str, u16)] = &[
            ("invalid_request", 400),
            ("unsupported", 400),
            ("authentication", 401),
            ("permission_denied", 403),
            ("not_found", 404),
            ("context_length_exceeded", 400),
            ("content_filtered", 400),
            ("rate_limited", 429),
            ("quota_exhausted", 429),
            ("timeout", 504),
            ("connect", 502),
            ("upstream_server", 502),
            ("upstream_protocol", 502),
            ("circuit_open", 503),
            ("cancelled", 499),
            ("config", 500),
            ("internal", 500),
        ];
        assert_eq!(golden.len(), ErrorKind::ALL.len());
        for (kind, row) in ErrorKind::ALL.iter().zip(golden) {
            assert_eq!(kind.as_str(), row.0);
            assert_eq!(status_for(*kind).as_u16(), row.1, "{kind}");
        }
    }

    #[test]
    fn upstream_credential_rejections_are_bad_gateway() {
        let e = Error::new(ErrorKind::Authentication, "bad key").with_provider("openai");
        let api = ApiError::from_upstream(&e);
        assert_eq!(api.status(), StatusCode::BAD_GATEWAY);
        let e = Error::new(ErrorKind::RateLimited, "slow down")
            .with_provider("openai")
            .with_retry_after(Some(Duration::from_secs(3)));
        let api = ApiError::from_upstream(&e);
        assert_eq!(api.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(api.retry_after, Some(Duration::from_secs(3)));
    }

    #[test]
    fn overrides_win_over_the_mapping() {
        let e = ApiError::too_large(10);
        assert_eq!(e.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(e.kind, ErrorKind::InvalidRequest);
    }

    #[test]
    fn issue_16_an_unknown_plain_model_names_a_bounded_list_of_choices() {
        let e = ApiError::unknown_model_among("m", &[]);
        assert_eq!(e.message, ApiError::unknown_model("m").message);
        let e = ApiError::unknown_model_among("m", &["a/m"]);
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert_eq!(e.param.as_deref(), Some("model"));
        assert_eq!(
            e.message,
            "The model `m` is not served under that name; ask for `a/m`."
        );
        let many: Vec<String> = (0..20).map(|i| format!("p{i:02}/m")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let e = ApiError::unknown_model_among("m", &many);
        assert_eq!(
            e.message,
            "The model `m` is ambiguous here; choose one of `p00/m`, `p01/m`, `p02/m`, `p03/m`, \
             `p04/m`, `p05/m`, `p06/m`, `p07/m` and 12 more."
        );
    }
}
