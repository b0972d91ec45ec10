//! DashScope's error body `{"code","message","request_id"}` (PROTOCOLS §1), on `/api/*`.

use axum::http::{Method, StatusCode};
use llmux_core::ErrorKind;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{client_closed, ApiError, ErrorEnvelope};

/// DashScope's envelope.
#[derive(Debug, Clone, Copy)]
pub struct DashScopeEnvelope;

/// Status and DashScope `code` of a kind (codes as DashScope documents them).
pub fn dashscope_mapping(kind: ErrorKind) -> (StatusCode, &'static str) {
    use ErrorKind as K;
    match kind {
        K::InvalidRequest | K::ContextLengthExceeded => {
            (StatusCode::BAD_REQUEST, "InvalidParameter")
        }
        K::Unsupported => (StatusCode::BAD_REQUEST, "UnsupportedOperation"),
        K::Authentication => (StatusCode::UNAUTHORIZED, "InvalidApiKey"),
        K::PermissionDenied => (StatusCode::FORBIDDEN, "AccessDenied"),
        K::NotFound => (StatusCode::NOT_FOUND, "ModelNotFound"),
        K::ContentFiltered => (StatusCode::BAD_REQUEST, "DataInspectionFailed"),
        K::RateLimited => (StatusCode::TOO_MANY_REQUESTS, "Throttling.RateQuota"),
        K::QuotaExhausted => (StatusCode::TOO_MANY_REQUESTS, "Throttling.AllocationQuota"),
        K::Timeout => (StatusCode::GATEWAY_TIMEOUT, "RequestTimeOut"),
        K::Connect | K::UpstreamServer | K::UpstreamProtocol => {
            (StatusCode::BAD_GATEWAY, "InternalError")
        }
        K::CircuitOpen => (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable"),
        K::Cancelled => (client_closed(), "RequestCancelled"),
        K::Config | K::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
    }
}

/// The DashScope code of an error whose status the gateway set itself.
fn status_code(status: Option<StatusCode>) -> Option<&'static str> {
    match status?.as_u16() {
        405 => Some("MethodNotAllowed"),
        408 => Some("RequestTimeOut"),
        413 | 414 | 431 => Some("BadRequest.TooLarge"),
        415 => Some("InvalidParameter"),
        _ => None,
    }
}

impl DashScopeError {
    /// The body of `e`.
    pub fn new(e: &ApiError, request_id: &str) -> Self {
        let code = e
            .code
            .or_else(|| status_code(e.status))
            .unwrap_or_else(|| dashscope_mapping(e.kind).1);
        DashScopeError {
            code: code.to_owned(),
            message: e.message.clone(),
            request_id: request_id.to_owned(),
        }
    }
}

impl ErrorEnvelope for DashScopeEnvelope {
    fn name(&self) -> &'static str {
        "dashscope"
    }

    fn status(&self, err: &ApiError) -> StatusCode {
        err.status.unwrap_or_else(|| dashscope_mapping(err.kind).0)
    }

    fn body(&self, err: &ApiError, request_id: &str) -> Vec<u8> {
        serde_json::to_vec(&DashScopeError::new(err, request_id)).unwrap_or_default()
    }

    fn unknown_route(&self, _method: &Method, path: &str) -> ApiError {
        ApiError::invalid(format!("The requested URL `{path}` is not supported."))
            .with_code("InvalidURL")
    }
}

/// The DashScope error body, on `/api/v1/*`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct DashScopeError {
    /// DashScope's error code (`InvalidApiKey`, `InvalidParameter`, `ModelNotFound`, …).
    pub code: String,
    /// What went wrong, safe to show.
    pub message: String,
    /// The request id (also in the `x-request-id` header).
    pub request_id: String,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    /// The golden table: every kind's status and code.
    #[test]
    fn every_error_kind_maps_to_a_status_and_code() {
        let golden: &[(&str, u16, &str)] = &[
            ("invalid_request", 400, "InvalidParameter"),
            ("unsupported", 400, "UnsupportedOperation"),
            ("authentication", 401, "InvalidApiKey"),
            ("permission_denied", 403, "AccessDenied"),
            ("not_found", 404, "ModelNotFound"),
            ("context_length_exceeded", 400, "InvalidParameter"),
            ("content_filtered", 400, "DataInspectionFailed"),
            ("rate_limited", 429, "Throttling.RateQuota"),
            ("quota_exhausted", 429, "Throttling.AllocationQuota"),
            ("timeout", 504, "RequestTimeOut"),
            ("connect", 502, "InternalError"),
            ("upstream_server", 502, "InternalError"),
            ("upstream_protocol", 502, "InternalError"),
            ("circuit_open", 503, "ServiceUnavailable"),
            ("cancelled", 499, "RequestCancelled"),
            ("config", 500, "InternalError"),
            ("internal", 500, "InternalError"),
        ];
        assert_eq!(golden.len(), ErrorKind::ALL.len());
        for (kind, row) in ErrorKind::ALL.iter().zip(golden) {
            assert_eq!(kind.as_str(), row.0);
            let r = DashScopeEnvelope.render(&ApiError::new(*kind, "m"), "rid");
            assert_eq!(r.status.as_u16(), row.1, "{kind}");
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(v["code"], row.2, "{kind}");
            assert_eq!(v["request_id"], "rid");
        }
    }

    #[test]
    fn statuses_set_by_the_gateway_have_their_codes() {
        let d = DashScopeError::new(&ApiError::too_large(10), "rid");
        assert_eq!(d.code, "BadRequest.TooLarge");
        assert_eq!(d.request_id, "rid");
        let e = DashScopeEnvelope.unknown_route(&Method::POST, "/api/v2/x");
        assert_eq!(DashScopeEnvelope.status(&e), StatusCode::BAD_REQUEST);
        assert_eq!(DashScopeError::new(&e, "r").code, "InvalidURL");
    }
}
