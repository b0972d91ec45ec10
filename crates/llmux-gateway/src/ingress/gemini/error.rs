//! Google's error envelope `{"error":{"code","message","status"}}` on `/v1beta/*` (and, as the
//! last chunk, after a stream started). `code` is the HTTP status, the gateway's own for the
//! kind ([`crate::error::status_for`], so a request is recorded with the same status whatever
//! its dialect), and `status` Google's canonical name for that HTTP status, as google.rpc.Code
//! pairs them (400 `INVALID_ARGUMENT`, 401 `UNAUTHENTICATED`, 429 `RESOURCE_EXHAUSTED`, …).

use axum::http::{Method, StatusCode};
use llmux_core::ErrorKind;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorEnvelope};

/// Google's envelope.
#[derive(Debug, Clone, Copy)]
pub struct GeminiEnvelope;

/// Google's error body.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct GoogleError {
    /// The error.
    pub error: GoogleErrorDetail,
}

/// The inside of a `GoogleError`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct GoogleErrorDetail {
    /// The HTTP status.
    pub code: u16,
    /// What went wrong, safe to show.
    pub message: String,
    /// The canonical status name (`INVALID_ARGUMENT`, `UNAUTHENTICATED`, `PERMISSION_DENIED`,
    /// `NOT_FOUND`, `RESOURCE_EXHAUSTED`, `UNAVAILABLE`, `DEADLINE_EXCEEDED`, `INTERNAL`, …).
    #[schema(value_type = String)]
    pub status: &'static str,
}

/// Google's canonical status name for an HTTP status.
pub fn google_status(http: u16) -> &'static str {
    match http {
        400 | 411 | 413 | 414 | 415 | 422 | 431 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 | 405 => "NOT_FOUND",
        408 | 504 => "DEADLINE_EXCEEDED",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        501 => "UNIMPLEMENTED",
        502 | 503 => "UNAVAILABLE",
        _ if http >= 500 => "INTERNAL",
        _ => "FAILED_PRECONDITION",
    }
}

/// The Google body of an error (an [`ApiError::code`] set for this envelope names the status).
pub fn google_error(err: &ApiError) -> GoogleError {
    let code = err.status().as_u16();
    GoogleError {
        error: GoogleErrorDetail {
            code,
            message: err.message.clone(),
            status: err.code.unwrap_or_else(|| google_status(code)),
        },
    }
}

impl ErrorEnvelope for GeminiEnvelope {
    fn name(&self) -> &'static str {
        "gemini"
    }

    fn status(&self, err: &ApiError) -> StatusCode {
        err.status()
    }

    fn body(&self, err: &ApiError, _request_id: &str) -> Vec<u8> {
        serde_json::to_vec(&google_error(err)).unwrap_or_default()
    }

    fn unknown_route(&self, method: &Method, path: &str) -> ApiError {
        ApiError::new(
            ErrorKind::NotFound,
            format!(
                "Method not found: {method} {path} (this gateway serves POST \
                 /v1beta/models/{{model}}:generateContent, :streamGenerateContent and :countTokens)."
            ),
        )
    }
}

/// The errors a Gemini model endpoint may answer.
#[derive(Debug, utoipa::IntoResponses)]
pub enum GeminiModelErrors {
    /// 400.
    #[response(
        status = 400,
        description = "Invalid request, or a feature this gateway cannot carry to another vendor (`INVALID_ARGUMENT`; the message names the field)."
    )]
    Invalid(GoogleError),
    /// 401.
    #[response(
        status = 401,
        description = "No API key, or an unknown, revoked or expired one (`UNAUTHENTICATED`)."
    )]
    Unauthorized(GoogleError),
    /// 403.
    #[response(
        status = 403,
        description = "The key may not use this model (`PERMISSION_DENIED`)."
    )]
    Forbidden(GoogleError),
    /// 404.
    #[response(
        status = 404,
        description = "No such model here, or no such method (`NOT_FOUND`)."
    )]
    UnknownModel(GoogleError),
    /// 413.
    #[response(
        status = 413,
        description = "The body is over `server.max_body_bytes` (`INVALID_ARGUMENT`)."
    )]
    TooLarge(GoogleError),
    /// 429.
    #[response(
        status = 429,
        description = "Over the key's RPM or TPM (with `Retry-After`) or its budget (`RESOURCE_EXHAUSTED`)."
    )]
    Limited(GoogleError),
    /// 500.
    #[response(status = 500, description = "A gateway fault (`INTERNAL`).")]
    Fault(GoogleError),
    /// 502.
    #[response(
        status = 502,
        description = "Every upstream tried failed or answered badly (`UNAVAILABLE`)."
    )]
    Upstream(GoogleError),
    /// 503.
    #[response(
        status = 503,
        description = "Every upstream's breaker is open, or usage accounting or the key store is unavailable (`UNAVAILABLE`, with `Retry-After` when known)."
    )]
    Unavailable(GoogleError),
    /// 504.
    #[response(
        status = 504,
        description = "The upstream timed out (`DEADLINE_EXCEEDED`)."
    )]
    Timeout(GoogleError),
}

/// The errors `:countTokens` may answer (it calls no upstream).
#[derive(Debug, utoipa::IntoResponses)]
pub enum GeminiCheckErrors {
    /// 400.
    #[response(status = 400, description = "Invalid request (`INVALID_ARGUMENT`).")]
    Invalid(GoogleError),
    /// 401.
    #[response(
        status = 401,
        description = "No API key, or an unknown, revoked or expired one (`UNAUTHENTICATED`)."
    )]
    Unauthorized(GoogleError),
    /// 403.
    #[response(
        status = 403,
        description = "The key may not use this model (`PERMISSION_DENIED`)."
    )]
    Forbidden(GoogleError),
    /// 404.
    #[response(status = 404, description = "No such model here (`NOT_FOUND`).")]
    UnknownModel(GoogleError),
    /// 413.
    #[response(
        status = 413,
        description = "The body is over `server.max_body_bytes` (`INVALID_ARGUMENT`)."
    )]
    TooLarge(GoogleError),
    /// 503.
    #[response(
        status = 503,
        description = "The key store is unavailable (`UNAVAILABLE`)."
    )]
    Unavailable(GoogleError),
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    /// The golden table: every kind's status and name in Google's envelope.
    #[test]
    fn every_error_kind_has_a_status_and_a_google_name() {
        let golden: &[(u16, &str)] = &[
            (400, "INVALID_ARGUMENT"),   // invalid_request
            (400, "INVALID_ARGUMENT"),   // unsupported
            (401, "UNAUTHENTICATED"),    // authentication
            (403, "PERMISSION_DENIED"),  // permission_denied
            (404, "NOT_FOUND"),          // not_found
            (400, "INVALID_ARGUMENT"),   // context_length_exceeded
            (400, "INVALID_ARGUMENT"),   // content_filtered
            (429, "RESOURCE_EXHAUSTED"), // rate_limited
            (429, "RESOURCE_EXHAUSTED"), // quota_exhausted
            (504, "DEADLINE_EXCEEDED"),  // timeout
            (502, "UNAVAILABLE"),        // connect
            (502, "UNAVAILABLE"),        // upstream_server
            (502, "UNAVAILABLE"),        // upstream_protocol
            (503, "UNAVAILABLE"),        // circuit_open
            (499, "CANCELLED"),          // cancelled
            (500, "INTERNAL"),           // config
            (500, "INTERNAL"),           // internal
        ];
        assert_eq!(golden.len(), ErrorKind::ALL.len());
        for (kind, (code, status)) in ErrorKind::ALL.iter().zip(golden) {
            let e = ApiError::new(*kind, "m");
            let v: serde_json::Value =
                serde_json::from_slice(&GeminiEnvelope.body(&e, "rid")).unwrap();
            assert_eq!(
                v,
                serde_json::json!({"error": {"code": code, "message": "m", "status": status}}),
                "{kind}"
            );
            assert_eq!(GeminiEnvelope.status(&e).as_u16(), *code, "{kind}");
        }
    }

    #[test]
    fn statuses_the_gateway_sets_keep_their_code() {
        let v = google_error(&ApiError::too_large(5));
        assert_eq!((v.error.code, v.error.status), (413, "INVALID_ARGUMENT"));
        let mut e = ApiError::invalid("slow body");
        e.status = Some(StatusCode::REQUEST_TIMEOUT);
        assert_eq!(google_error(&e).error.status, "DEADLINE_EXCEEDED");
        let e = GeminiEnvelope.unknown_route(&Method::GET, "/v1beta/files");
        assert_eq!(google_error(&e).error.status, "NOT_FOUND");
    }
}
