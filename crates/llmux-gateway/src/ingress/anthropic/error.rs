//! Anthropic's error envelope `{"type":"error","error":{"type","message"},"request_id"}`, with
//! the request id also in the `request-id` header (where the official SDKs read it), on
//! `/v1/messages*`. Error types and statuses as the Messages API uses them: `overloaded_error`
//! is its 529, a spent budget its 402 `billing_error`.

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use llmux_core::ErrorKind;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{client_closed, ApiError, ErrorEnvelope};

/// Anthropic's envelope.
#[derive(Debug, Clone, Copy)]
pub struct AnthropicEnvelope;

/// 529, Anthropic's "overloaded".
fn overloaded() -> StatusCode {
    StatusCode::from_u16(529).unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
}

/// Status and Anthropic error `type` of a kind.
pub fn anthropic_mapping(kind: ErrorKind) -> (StatusCode, &'static str) {
    use ErrorKind as K;
    match kind {
        K::InvalidRequest | K::Unsupported | K::ContextLengthExceeded | K::ContentFiltered => {
            (StatusCode::BAD_REQUEST, "invalid_request_error")
        }
        K::Authentication => (StatusCode::UNAUTHORIZED, "authentication_error"),
        K::PermissionDenied => (StatusCode::FORBIDDEN, "permission_error"),
        K::NotFound => (StatusCode::NOT_FOUND, "not_found_error"),
        K::RateLimited => (StatusCode::TOO_MANY_REQUESTS, "rate_limit_error"),
        K::QuotaExhausted => (StatusCode::PAYMENT_REQUIRED, "billing_error"),
        K::Timeout => (StatusCode::GATEWAY_TIMEOUT, "timeout_error"),
        K::Connect | K::UpstreamServer | K::UpstreamProtocol => {
            (StatusCode::BAD_GATEWAY, "api_error")
        }
        K::CircuitOpen => (overloaded(), "overloaded_error"),
        K::Cancelled => (client_closed(), "api_error"),
        K::Config | K::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "api_error"),
    }
}

/// The error type of an error whose status the gateway set itself.
fn status_type(status: Option<StatusCode>) -> Option<&'static str> {
    match status?.as_u16() {
        408 => Some("timeout_error"),
        413 => Some("request_too_large"),
        503 | 529 => Some("overloaded_error"),
        400..=499 => Some("invalid_request_error"),
        _ => None,
    }
}

impl AnthropicError {
    /// The body of `e`.
    pub fn new(e: &ApiError, request_id: &str) -> Self {
        let ty = e
            .code
            .or_else(|| status_type(e.status))
            .unwrap_or_else(|| anthropic_mapping(e.kind).1);
        // The envelope has no `param`: the message names the field, as Anthropic's do.
        let message = match e.param.as_deref() {
            Some(p) if !e.message.contains(p) => format!("{p}: {}", e.message),
            _ => e.message.clone(),
        };
        AnthropicError {
            kind: "error",
            error: AnthropicErrorDetail {
                kind: ty.to_owned(),
                message,
            },
            request_id: (!request_id.is_empty()).then(|| request_id.to_owned()),
        }
    }
}

impl ErrorEnvelope for AnthropicEnvelope {
    fn name(&self) -> &'static str {
        "anthropic"
    }

    fn status(&self, err: &ApiError) -> StatusCode {
        err.status.unwrap_or_else(|| anthropic_mapping(err.kind).0)
    }

    fn body(&self, err: &ApiError, request_id: &str) -> Vec<u8> {
        serde_json::to_vec(&AnthropicError::new(err, request_id)).unwrap_or_default()
    }

    fn headers(&self, request_id: &str, headers: &mut HeaderMap) {
        if let Ok(v) = HeaderValue::from_str(request_id) {
            if !request_id.is_empty() {
                headers.insert("request-id", v);
            }
        }
    }

    fn unknown_route(&self, method: &Method, path: &str) -> ApiError {
        ApiError::new(ErrorKind::NotFound, format!("Not found: {method} {path}"))
    }
}

/// Anthropic's error body, on `/v1/messages*` (and, as an `event: error` frame, after a stream
/// started).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AnthropicError {
    /// Always `error`.
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    pub kind: &'static str,
    /// The error.
    pub error: AnthropicErrorDetail,
    /// The gateway's request id (also in the `request-id` header).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// The inside of an `AnthropicError`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AnthropicErrorDetail {
    /// `invalid_request_error`, `authentication_error`, `billing_error`, `permission_error`,
    /// `not_found_error`, `request_too_large`, `rate_limit_error`, `timeout_error`,
    /// `api_error` or `overloaded_error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// What went wrong, safe to show.
    pub message: String,
}

/// The errors `POST /v1/messages` may answer.
#[derive(Debug, utoipa::IntoResponses)]
pub enum AnthropicModelErrors {
    /// 400.
    #[response(
        status = 400,
        description = "Invalid request, a missing `anthropic-version`, or a field that cannot be carried to another vendor (`invalid_request_error`; the message names the field)."
    )]
    Invalid(AnthropicError),
    /// 401.
    #[response(
        status = 401,
        description = "No API key, or an unknown, revoked or expired one (`authentication_error`)."
    )]
    Unauthorized(AnthropicError),
    /// 402.
    #[response(
        status = 402,
        description = "The key's budget is spent (`billing_error`)."
    )]
    Budget(AnthropicError),
    /// 403.
    #[response(
        status = 403,
        description = "The key may not use this model (`permission_error`)."
    )]
    Forbidden(AnthropicError),
    /// 404.
    #[response(status = 404, description = "No such model here (`not_found_error`).")]
    UnknownModel(AnthropicError),
    /// 413.
    #[response(
        status = 413,
        description = "The body is over `server.max_body_bytes` (`request_too_large`)."
    )]
    TooLarge(AnthropicError),
    /// 429.
    #[response(
        status = 429,
        description = "Over the key's RPM or TPM, with `Retry-After` (`rate_limit_error`)."
    )]
    Limited(AnthropicError),
    /// 500.
    #[response(status = 500, description = "A gateway fault (`api_error`).")]
    Fault(AnthropicError),
    /// 502.
    #[response(
        status = 502,
        description = "Every upstream tried failed or answered badly (`api_error`)."
    )]
    Upstream(AnthropicError),
    /// 503.
    #[response(
        status = 503,
        description = "Usage accounting or the key store is unavailable (`overloaded_error`, with `Retry-After` when known)."
    )]
    Unavailable(AnthropicError),
    /// 504.
    #[response(
        status = 504,
        description = "The upstream timed out (`timeout_error`)."
    )]
    Timeout(AnthropicError),
    /// 529.
    #[response(
        status = 529,
        description = "Every upstream's breaker is open (`overloaded_error`)."
    )]
    Overloaded(AnthropicError),
}

/// The errors `POST /v1/messages/count_tokens` may answer (it calls no upstream).
#[derive(Debug, utoipa::IntoResponses)]
pub enum AnthropicCheckErrors {
    /// 400.
    #[response(
        status = 400,
        description = "Invalid request or a missing `anthropic-version` (`invalid_request_error`)."
    )]
    Invalid(AnthropicError),
    /// 401.
    #[response(
        status = 401,
        description = "No API key, or an unknown, revoked or expired one (`authentication_error`)."
    )]
    Unauthorized(AnthropicError),
    /// 403.
    #[response(
        status = 403,
        description = "The key may not use this model (`permission_error`)."
    )]
    Forbidden(AnthropicError),
    /// 404.
    #[response(status = 404, description = "No such model here (`not_found_error`).")]
    UnknownModel(AnthropicError),
    /// 413.
    #[response(
        status = 413,
        description = "The body is over `server.max_body_bytes` (`request_too_large`)."
    )]
    TooLarge(AnthropicError),
    /// 503.
    #[response(
        status = 503,
        description = "The key store is unavailable (`overloaded_error`)."
    )]
    Unavailable(AnthropicError),
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    /// The golden table: every kind's status and error type.
    #[test]
    fn every_error_kind_maps_to_a_status_and_type() {
        let golden: &[(&str, u16, &str)] = &[
            ("invalid_request", 400, "invalid_request_error"),
            ("unsupported", 400, "invalid_request_error"),
            ("authentication", 401, "authentication_error"),
            ("permission_denied", 403, "permission_error"),
            ("not_found", 404, "not_found_error"),
            ("context_length_exceeded", 400, "invalid_request_error"),
            ("content_filtered", 400, "invalid_request_error"),
            ("rate_limited", 429, "rate_limit_error"),
            ("quota_exhausted", 402, "billing_error"),
            ("timeout", 504, "timeout_error"),
            ("connect", 502, "api_error"),
            ("upstream_server", 502, "api_error"),
            ("upstream_protocol", 502, "api_error"),
            ("circuit_open", 529, "overloaded_error"),
            ("cancelled", 499, "api_error"),
            ("config", 500, "api_error"),
            ("internal", 500, "api_error"),
        ];
        assert_eq!(golden.len(), ErrorKind::ALL.len());
        for (kind, row) in ErrorKind::ALL.iter().zip(golden) {
            assert_eq!(kind.as_str(), row.0);
            let r = AnthropicEnvelope.render(&ApiError::new(*kind, "m"), "rid");
            assert_eq!(r.status.as_u16(), row.1, "{kind}");
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(v["type"], "error");
            assert_eq!(v["error"]["type"], row.2, "{kind}");
            assert_eq!(v["error"]["message"], "m");
            assert_eq!(v["request_id"], "rid");
            assert_eq!(r.headers["request-id"], "rid");
        }
    }

    #[test]
    fn statuses_set_by_the_gateway_have_their_types() {
        let b = AnthropicError::new(&ApiError::too_large(10), "r");
        assert_eq!(b.error.kind, "request_too_large");
        let b = AnthropicError::new(
            &ApiError::invalid("must be an object").param("tools[0]"),
            "r",
        );
        assert_eq!(b.error.message, "tools[0]: must be an object");
        let b = AnthropicError::new(&ApiError::invalid("`top_k` is wrong").param("top_k"), "r");
        assert_eq!(b.error.message, "`top_k` is wrong");
        let mut e = ApiError::new(ErrorKind::Internal, "the key store is unavailable");
        e.status = Some(StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(AnthropicError::new(&e, "r").error.kind, "overloaded_error");
        assert_eq!(
            AnthropicEnvelope.status(&e),
            StatusCode::SERVICE_UNAVAILABLE
        );
        let e = crate::rejection::error_for_status(StatusCode::METHOD_NOT_ALLOWED, "no");
        assert_eq!(
            AnthropicError::new(&e, "r").error.kind,
            "invalid_request_error"
        );
        let e = AnthropicEnvelope.unknown_route(&Method::GET, "/v1/messages/x");
        assert_eq!(AnthropicEnvelope.status(&e), StatusCode::NOT_FOUND);
        assert_eq!(AnthropicError::new(&e, "r").error.kind, "not_found_error");
    }
}
