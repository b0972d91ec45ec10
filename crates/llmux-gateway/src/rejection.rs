//! Errors our handlers did not render, in the ingress protocol's format: axum's routing and
//! extractor rejections (405, 413 from a body limit, 415, 422, unparsable path or query values),
//! rewritten by the middleware in [`crate::app`]; hyper's own answers to request heads it cannot
//! parse (400, 414, 431), rewritten on the wire by [`crate::conn`]; and the 408 of a request body
//! that did not arrive within `server.body_read_timeout`.
//!
//! The envelope follows the path as it does for the router's fallback
//! ([`crate::ingress::envelope_for`]: the longest registered prefix wins).

use std::time::Duration;

use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::Response;
use llmux_core::ErrorKind;

use crate::error::{ApiError, ErrorEnvelope};
use crate::ingress::envelope_for;
use crate::state::REQUEST_ID;

/// The envelope of a request whose first bytes (`METHOD SP target …`) are `head`.
pub(crate) fn envelope_of_head(head: &[u8]) -> &'static dyn ErrorEnvelope {
    let start = head.iter().take(32).position(|b| *b == b' ');
    envelope_for(start.map_or(&[][..], |i| &head[i + 1..]))
}

/// An error with `status` and `message` (each envelope has its codes for the statuses the
/// gateway sets itself).
pub fn error_for_status(status: StatusCode, message: impl Into<String>) -> ApiError {
    let kind = if status.is_server_error() {
        ErrorKind::Internal
    } else {
        ErrorKind::InvalidRequest
    };
    let mut e = ApiError::new(kind, message);
    e.status = Some(status);
    e
}

/// Largest plain-text rejection body taken over as the message.
const MAX_MESSAGE: usize = 512;

/// Rewrites an error response that is not JSON (an axum rejection: its text becomes the
/// message) into `envelope`'s format, keeping its status and headers such as `Allow`.
pub async fn rewrite(
    resp: Response,
    envelope: &dyn ErrorEnvelope,
    request_id: &str,
    method: &Method,
    path: &str,
) -> Response {
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 4 * MAX_MESSAGE)
        .await
        .ok()
        .and_then(|b| String::from_utf8(b.to_vec()).ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let message = if parts.status == StatusCode::METHOD_NOT_ALLOWED {
        let allow = parts
            .headers
            .get(http::header::ALLOW)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        format!("The method {method} is not allowed for {path} (allowed: {allow}).")
    } else if text.is_empty() {
        parts
            .status
            .canonical_reason()
            .unwrap_or("request rejected")
            .to_owned()
    } else {
        let mut end = text.len().min(MAX_MESSAGE);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text[..end].to_owned()
    };
    let mut out = error_for_status(parts.status, message).into_response_for(envelope, request_id);
    for name in [http::header::ALLOW, http::header::RETRY_AFTER] {
        if let Some(v) = parts.headers.get(&name) {
            out.headers_mut().insert(name, v.clone());
        }
    }
    out
}

/// The 408 for a request body that did not arrive within `timeout`.
pub fn body_timeout(
    envelope: &dyn ErrorEnvelope,
    request_id: Option<HeaderValue>,
    timeout: Duration,
) -> Response {
    let rid = request_id
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let e = error_for_status(
        StatusCode::REQUEST_TIMEOUT,
        format!(
            "the request body did not arrive within {} ms (server.body_read_timeout)",
            timeout.as_millis()
        ),
    );
    let mut resp = e.into_response_for(envelope, &rid);
    if let Some(v) = request_id {
        resp.headers_mut().insert(REQUEST_ID, v);
    }
    resp.headers_mut()
        .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// A complete HTTP/1.1 response, closing the connection, for a request head hyper refused with
/// `status` before any handler saw it.
pub(crate) fn head_rejection(
    status: u16,
    envelope: &dyn ErrorEnvelope,
    max_header_bytes: usize,
) -> Vec<u8> {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let message = match status.as_u16() {
        431 => format!(
            "The request head is too large: at most {max_header_bytes} bytes and 100 header fields."
        ),
        414 => "The request URL is too long.".to_owned(),
        400 => "The request could not be parsed: a malformed request line or header field \
                (such as an invalid Content-Length)."
            .to_owned(),
        _ => status
            .canonical_reason()
            .unwrap_or("The request was rejected.")
            .to_owned(),
    };
    let e = error_for_status(status, message);
    let rid = crate::state::new_request_id();
    let r = envelope.render(&e, &rid);
    let mut out = format!(
        "HTTP/1.1 {} {}\r\n",
        r.status.as_u16(),
        r.status.canonical_reason().unwrap_or("")
    )
    .into_bytes();
    for (name, value) in &r.headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(
        format!(
            "content-length: {}\r\nx-request-id: {rid}\r\nconnection: close\r\n\r\n",
            r.body.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(&r.body);
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn heads_pick_the_envelope_by_path() {
        assert_eq!(
            envelope_of_head(b"POST /api/v1/services HTTP/1.1\r\n").name(),
            "dashscope"
        );
        assert_eq!(
            envelope_of_head(b"GET /admin/keys HTTP/1.1").name(),
            "openai"
        );
        assert_eq!(envelope_of_head(b"garbage").name(), "openai");
    }

    #[test]
    fn head_rejections_are_complete_json_responses() {
        let raw = head_rejection(431, envelope_for(b"/api/v1/x"), 8192);
        let text = String::from_utf8(raw).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(head.contains("content-type: application/json\r\n"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["code"], "BadRequest.TooLarge");
        assert!(v["request_id"].as_str().is_some_and(|s| !s.is_empty()));
    }
}
