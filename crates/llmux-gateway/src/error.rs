//! Client-facing errors: [`ApiError`], and the two mappings from [`ErrorKind`] to an HTTP
//! status plus the ingress protocol's codes ([`openai_mapping`], [`dashscope_mapping`]).
//!
//! An `ApiError` is rendered in the format of the ingress it arrived on ([`Ingress`]): the
//! OpenAI envelope `{"error":{"message","type","param","code"}}` or DashScope's
//! `{"code","message","request_id"}`. Upstream errors keep their kind, but an upstream's
//! rejection of the *gateway's* credentials is never reported as the client's bad key.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use llmux_core::{Error, ErrorKind};
use serde::Serialize;
use utoipa::ToSchema;

/// Which protocol a request came in on; errors and responses follow it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingress {
    /// `/v1/*`.
    OpenAi,
    /// `/api/v1/*`.
    DashScope,
    /// `/admin/*`, health and metrics: plain OpenAI envelope.
    Admin,
}

/// Status, OpenAI `type` and OpenAI `code` of a kind.
pub fn openai_mapping(kind: ErrorKind) -> (StatusCode, &'static str, Option<&'static str>) {
    use ErrorKind as K;
    match kind {
        K::InvalidRequest => (StatusCode::BAD_REQUEST, "invalid_request_error", None),
        K::Unsupported => (
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("unsupported"),
        ),
        K::Authentication => (
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            Some("invalid_api_key"),
        ),
        K::PermissionDenied => (
            StatusCode::FORBIDDEN,
            "permission_error",
            Some("permission_denied"),
        ),
        K::NotFound => (
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            Some("model_not_found"),
        ),
        K::ContextLengthExceeded => (
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("context_length_exceeded"),
        ),
        K::ContentFiltered => (
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("content_filter"),
        ),
        K::RateLimited => (
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            Some("rate_limit_exceeded"),
        ),
        K::QuotaExhausted => (
            StatusCode::TOO_MANY_REQUESTS,
            "insufficient_quota",
            Some("insufficient_quota"),
        ),
        K::Timeout => (StatusCode::GATEWAY_TIMEOUT, "api_error", Some("timeout")),
        K::Connect => (
            StatusCode::BAD_GATEWAY,
            "api_error",
            Some("upstream_connect_error"),
        ),
        K::UpstreamServer => (StatusCode::BAD_GATEWAY, "api_error", Some("upstream_error")),
        K::UpstreamProtocol => (
            StatusCode::BAD_GATEWAY,
            "api_error",
            Some("upstream_protocol_error"),
        ),
        K::CircuitOpen => (
            StatusCode::SERVICE_UNAVAILABLE,
            "api_error",
            Some("upstream_unavailable"),
        ),
        K::Cancelled => (client_closed(), "api_error", Some("cancelled")),
        K::Config => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            Some("configuration_error"),
        ),
        K::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "server_error", None),
    }
}

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

fn client_closed() -> StatusCode {
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
    /// Overrides the mapped status (413 for an oversized body).
    pub status: Option<StatusCode>,
    /// Overrides the mapped OpenAI code.
    pub openai_code: Option<&'static str>,
    /// Overrides the mapped DashScope code.
    pub dashscope_code: Option<&'static str>,
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
            openai_code: None,
            dashscope_code: None,
            retry_after: None,
        }
    }

    /// A malformed or invalid request.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidRequest, message)
    }

    /// Names the offending field.
    pub fn param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// The body is over the limit.
    pub fn too_large(limit: usize) -> Self {
        let mut e = Self::invalid(format!(
            "the request body is larger than the gateway's limit of {limit} bytes"
        ));
        e.status = Some(StatusCode::PAYLOAD_TOO_LARGE);
        e.openai_code = Some("request_too_large");
        e.dashscope_code = Some("BadRequest.TooLarge");
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

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status.unwrap_or_else(|| openai_mapping(self.kind).0)
    }

    /// The DashScope status (its own mapping, same overrides).
    fn dashscope_status(&self) -> StatusCode {
        self.status
            .unwrap_or_else(|| dashscope_mapping(self.kind).0)
    }

    /// The OpenAI envelope, typed.
    pub fn openai_error(&self) -> OpenAiError {
        let (_, ty, code) = openai_mapping(self.kind);
        OpenAiError {
            error: OpenAiErrorDetail {
                message: self.message.clone(),
                kind: ty.to_owned(),
                param: self.param.clone(),
                code: self.openai_code.or(code).map(str::to_owned),
            },
        }
    }

    /// The OpenAI envelope.
    pub fn openai_body(&self) -> serde_json::Value {
        serde_json::to_value(self.openai_error()).unwrap_or_default()
    }

    /// The DashScope body, typed.
    pub fn dashscope_error(&self, request_id: &str) -> DashScopeError {
        let code = self
            .dashscope_code
            .unwrap_or_else(|| dashscope_mapping(self.kind).1);
        DashScopeError {
            code: code.to_owned(),
            message: self.message.clone(),
            request_id: request_id.to_owned(),
        }
    }

    /// The DashScope body.
    pub fn dashscope_body(&self, request_id: &str) -> serde_json::Value {
        serde_json::to_value(self.dashscope_error(request_id)).unwrap_or_default()
    }

    /// The response in `ingress`'s format.
    pub fn into_response_for(self, ingress: Ingress, request_id: &str) -> Response {
        let mut resp = match ingress {
            Ingress::DashScope => (
                self.dashscope_status(),
                axum::Json(self.dashscope_error(request_id)),
            )
                .into_response(),
            Ingress::OpenAi | Ingress::Admin => {
                (self.status(), axum::Json(self.openai_error())).into_response()
            }
        };
        if let Some(after) = self.retry_after {
            let secs = after.as_secs_f64().ceil().max(1.0) as u64;
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(http::header::RETRY_AFTER, v);
            }
        }
        resp.extensions_mut().insert(ErrorKindExt(self.kind));
        resp
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
        e
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

/// Marks a response with the error kind, for the logging and metrics middleware.
#[derive(Debug, Clone, Copy)]
pub struct ErrorKindExt(pub ErrorKind);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    /// The golden table: every kind's status and codes in both ingress formats.
    #[test]
    fn every_error_kind_maps_to_a_status_and_codes() {
        type Row = (
            &'static str,
            u16,
            &'static str,
            Option<&'static str>,
            u16,
            &'static str,
        );
        let golden: &[Row] = &[
            (
                "invalid_request",
                400,
                "invalid_request_error",
                None,
                400,
                "InvalidParameter",
            ),
            (
                "unsupported",
                400,
                "invalid_request_error",
                Some("unsupported"),
                400,
                "UnsupportedOperation",
            ),
            (
                "authentication",
                401,
                "invalid_request_error",
                Some("invalid_api_key"),
                401,
                "InvalidApiKey",
            ),
            (
                "permission_denied",
                403,
                "permission_error",
                Some("permission_denied"),
                403,
                "AccessDenied",
            ),
            (
                "not_found",
                404,
                "invalid_request_error",
                Some("model_not_found"),
                404,
                "ModelNotFound",
            ),
            (
                "context_length_exceeded",
                400,
                "invalid_request_error",
                Some("context_length_exceeded"),
                400,
                "InvalidParameter",
            ),
            (
                "content_filtered",
                400,
                "invalid_request_error",
                Some("content_filter"),
                400,
                "DataInspectionFailed",
            ),
            (
                "rate_limited",
                429,
                "rate_limit_error",
                Some("rate_limit_exceeded"),
                429,
                "Throttling.RateQuota",
            ),
            (
                "quota_exhausted",
                429,
                "insufficient_quota",
                Some("insufficient_quota"),
                429,
                "Throttling.AllocationQuota",
            ),
            (
                "timeout",
                504,
                "api_error",
                Some("timeout"),
                504,
                "RequestTimeOut",
            ),
            (
                "connect",
                502,
                "api_error",
                Some("upstream_connect_error"),
                502,
                "InternalError",
            ),
            (
                "upstream_server",
                502,
                "api_error",
                Some("upstream_error"),
                502,
                "InternalError",
            ),
            (
                "upstream_protocol",
                502,
                "api_error",
                Some("upstream_protocol_error"),
                502,
                "InternalError",
            ),
            (
                "circuit_open",
                503,
                "api_error",
                Some("upstream_unavailable"),
                503,
                "ServiceUnavailable",
            ),
            (
                "cancelled",
                499,
                "api_error",
                Some("cancelled"),
                499,
                "RequestCancelled",
            ),
            (
                "config",
                500,
                "server_error",
                Some("configuration_error"),
                500,
                "InternalError",
            ),
            ("internal", 500, "server_error", None, 500, "InternalError"),
        ];
        assert_eq!(golden.len(), ErrorKind::ALL.len());
        for (kind, row) in ErrorKind::ALL.iter().zip(golden) {
            assert_eq!(kind.as_str(), row.0);
            let (s, ty, code) = openai_mapping(*kind);
            assert_eq!((s.as_u16(), ty, code), (row.1, row.2, row.3), "{kind}");
            let (ds, dcode) = dashscope_mapping(*kind);
            assert_eq!((ds.as_u16(), dcode), (row.4, row.5), "{kind}");
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
    fn bodies_have_the_protocol_shapes() {
        let e = ApiError::too_large(10);
        let b = e.openai_body();
        assert_eq!(b["error"]["code"], "request_too_large");
        assert!(b["error"]["param"].is_null());
        let d = e.dashscope_body("rid");
        assert_eq!(d["code"], "BadRequest.TooLarge");
        assert_eq!(d["request_id"], "rid");
    }
}
