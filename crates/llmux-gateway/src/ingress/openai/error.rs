//! The OpenAI error envelope `{"error":{"message","type","param","code"}}` (PROTOCOLS §2), on
//! `/v1/*`, on the admin API and the dashboard, and for every path no other dialect claims.

use axum::http::{Method, StatusCode};
use llmux_core::ErrorKind;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorEnvelope};

/// The OpenAI envelope.
#[derive(Debug, Clone, Copy)]
pub struct OpenAiEnvelope;

/// OpenAI `type` and `code` of a kind (the status is the gateway's, [`crate::error::status_for`]).
pub fn openai_mapping(kind: ErrorKind) -> (&'static str, Option<&'static str>) {
    use ErrorKind as K;
    match kind {
        K::InvalidRequest => ("invalid_request_error", None),
        K::Unsupported => ("invalid_request_error", Some("unsupported")),
        K::Authentication => ("invalid_request_error", Some("invalid_api_key")),
        K::PermissionDenied => ("permission_error", Some("permission_denied")),
        K::NotFound => ("invalid_request_error", Some("model_not_found")),
        K::ContextLengthExceeded => ("invalid_request_error", Some("context_length_exceeded")),
        K::ContentFiltered => ("invalid_request_error", Some("content_filter")),
        K::RateLimited => ("rate_limit_error", Some("rate_limit_exceeded")),
        K::QuotaExhausted => ("insufficient_quota", Some("insufficient_quota")),
        K::Timeout => ("api_error", Some("timeout")),
        K::Connect => ("api_error", Some("upstream_connect_error")),
        K::UpstreamServer => ("api_error", Some("upstream_error")),
        K::UpstreamProtocol => ("api_error", Some("upstream_protocol_error")),
        K::CircuitOpen => ("api_error", Some("upstream_unavailable")),
        K::Cancelled => ("api_error", Some("cancelled")),
        K::Config => ("server_error", Some("configuration_error")),
        K::Internal => ("server_error", None),
    }
}

/// The OpenAI code of an error whose status the gateway set itself (a refused request head, a
/// body over the limit, a slow body, a wrong method).
fn status_code(status: Option<StatusCode>) -> Option<&'static str> {
    match status?.as_u16() {
        405 => Some("method_not_allowed"),
        408 => Some("request_timeout"),
        413 => Some("request_too_large"),
        414 => Some("uri_too_long"),
        415 => Some("unsupported_media_type"),
        431 => Some("request_header_fields_too_large"),
        _ => None,
    }
}

impl From<&ApiError> for OpenAiError {
    fn from(e: &ApiError) -> Self {
        let (ty, code) = openai_mapping(e.kind);
        OpenAiError {
            error: OpenAiErrorDetail {
                message: e.message.clone(),
                kind: ty.to_owned(),
                param: e.param.clone(),
                code: e
                    .code
                    .or_else(|| status_code(e.status))
                    .or(code)
                    .map(str::to_owned),
            },
        }
    }
}

impl ErrorEnvelope for OpenAiEnvelope {
    fn name(&self) -> &'static str {
        "openai"
    }

    fn status(&self, err: &ApiError) -> StatusCode {
        err.status()
    }

    fn body(&self, err: &ApiError, _request_id: &str) -> Vec<u8> {
        serde_json::to_vec(&OpenAiError::from(err)).unwrap_or_default()
    }

    fn unknown_route(&self, method: &Method, path: &str) -> ApiError {
        ApiError::new(
            ErrorKind::NotFound,
            format!("Unknown request URL: {method} {path}."),
        )
        .with_code("unknown_url")
    }
}

/// The OpenAI error envelope, on `/v1/*` and (the same shape) on `/admin/*`, the dashboard and
/// every unknown path outside `/api/`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct OpenAiError {
    /// The error.
    pub error: OpenAiErrorDetail,
}

/// The inside of `OpenAiError`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct OpenAiErrorDetail {
    /// What went wrong, safe to show.
    pub message: String,
    /// `invalid_request_error`, `permission_error`, `rate_limit_error`, `insufficient_quota`,
    /// `api_error` or `server_error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The request field at fault, when known.
    pub param: Option<String>,
    /// A machine-readable code (`invalid_api_key`, `model_not_found`, …), when there is one.
    pub code: Option<String>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    /// The golden table: every kind's status, type and code.
    #[test]
    fn every_error_kind_maps_to_a_status_type_and_code() {
        type Row = (&'static str, u16, &'static str, Option<&'static str>);
        let golden: &[Row] = &[
            ("invalid_request", 400, "invalid_request_error", None),
            (
                "unsupported",
                400,
                "invalid_request_error",
                Some("unsupported"),
            ),
            (
                "authentication",
                401,
                "invalid_request_error",
                Some("invalid_api_key"),
            ),
            (
                "permission_denied",
                403,
                "permission_error",
                Some("permission_denied"),
            ),
            (
                "not_found",
                404,
                "invalid_request_error",
                Some("model_not_found"),
            ),
            (
                "context_length_exceeded",
                400,
                "invalid_request_error",
                Some("context_length_exceeded"),
            ),
            (
                "content_filtered",
                400,
                "invalid_request_error",
                Some("content_filter"),
            ),
            (
                "rate_limited",
                429,
                "rate_limit_error",
                Some("rate_limit_exceeded"),
            ),
            (
                "quota_exhausted",
                429,
                "insufficient_quota",
                Some("insufficient_quota"),
            ),
            ("timeout", 504, "api_error", Some("timeout")),
            ("connect", 502, "api_error", Some("upstream_connect_error")),
            ("upstream_server", 502, "api_error", Some("upstream_error")),
            (
                "upstream_protocol",
                502,
                "api_error",
                Some("upstream_protocol_error"),
            ),
            (
                "circuit_open",
                503,
                "api_error",
                Some("upstream_unavailable"),
            ),
            ("cancelled", 499, "api_error", Some("cancelled")),
            ("config", 500, "server_error", Some("configuration_error")),
            ("internal", 500, "server_error", None),
        ];
        assert_eq!(golden.len(), ErrorKind::ALL.len());
        for (kind, row) in ErrorKind::ALL.iter().zip(golden) {
            assert_eq!(kind.as_str(), row.0);
            let e = ApiError::new(*kind, "m");
            let r = OpenAiEnvelope.render(&e, "rid");
            assert_eq!(r.status.as_u16(), row.1, "{kind}");
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(v["error"]["type"], row.2, "{kind}");
            assert_eq!(v["error"]["code"].as_str(), row.3, "{kind}");
            assert_eq!(v["error"]["message"], "m");
        }
    }

    #[test]
    fn statuses_set_by_the_gateway_have_their_codes() {
        let b = OpenAiError::from(&ApiError::too_large(10));
        assert_eq!(b.error.code.as_deref(), Some("request_too_large"));
        assert!(b.error.param.is_none());
        let e = OpenAiEnvelope.unknown_route(&Method::GET, "/nope");
        let b = OpenAiError::from(&e);
        assert_eq!(b.error.code.as_deref(), Some("unknown_url"));
        assert_eq!(OpenAiEnvelope.status(&e), StatusCode::NOT_FOUND);
    }
}
