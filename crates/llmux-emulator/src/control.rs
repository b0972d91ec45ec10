//! The HTTP control surface under `/__emulator/`: fault queue, request log, latency, clock offset and IAM tokens,
//! for out-of-process tests.

use std::time::{Duration, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{header, HeaderValue, Response, StatusCode};
use serde_json::{json, Value};

use crate::{Fault, Shared};

/// Paths starting with this are control routes.
pub(crate) const PREFIX: &str = "/__emulator/";

fn respond(status: StatusCode, body: Option<Value>) -> Response<Body> {
    let mut resp = match body {
        Some(v) => {
            let mut r = Response::new(Body::from(v.to_string()));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
        None => Response::new(Body::empty()),
    };
    *resp.status_mut() = status;
    resp
}

fn bad_request(message: String) -> Response<Body> {
    respond(StatusCode::BAD_REQUEST, Some(json!({"error": message})))
}

/// Answers a control request.
pub(crate) fn handle(shared: &Shared, method: &str, path: &str, body: &[u8]) -> Response<Body> {
    let route = path.strip_prefix(PREFIX).unwrap_or_default();
    match (method, route) {
        ("POST", "faults") => {
            let faults = match serde_json::from_slice::<Value>(body) {
                Ok(Value::Array(a)) => a
                    .into_iter()
                    .map(serde_json::from_value::<Fault>)
                    .collect::<Result<Vec<_>, _>>(),
                Ok(v) => serde_json::from_value::<Fault>(v).map(|f| vec![f]),
                Err(e) => Err(e),
            };
            match faults {
                Ok(faults) => {
                    let n = faults.len();
                    faults.into_iter().for_each(|f| shared.push_fault(f));
                    respond(StatusCode::OK, Some(json!({"queued": n})))
                }
                Err(e) => bad_request(format!("invalid fault: {e}")),
            }
        }
        ("GET", "faults") => respond(
            StatusCode::OK,
            Some(serde_json::to_value(shared.faults()).unwrap_or(Value::Null)),
        ),
        ("DELETE", "faults") => {
            shared.clear_faults();
            respond(StatusCode::NO_CONTENT, None)
        }
        ("GET", "requests") => {
            let log: Vec<Value> = shared
                .requests()
                .iter()
                .map(|r| {
                    json!({
                        "method": r.method, "path": r.path, "query": r.query,
                        "headers": r.headers.iter().map(|(n, v)| json!([n, v])).collect::<Vec<_>>(),
                        "body": String::from_utf8_lossy(&r.body),
                        "status": r.status,
                        "unix_ms": r.wall.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64),
                    })
                })
                .collect();
            respond(StatusCode::OK, Some(Value::Array(log)))
        }
        ("DELETE", "requests") => {
            shared.clear_requests();
            respond(StatusCode::NO_CONTENT, None)
        }
        ("PUT", "latency") => match serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v.get("ms").and_then(Value::as_u64))
        {
            Some(ms) => {
                shared.set_latency(Duration::from_millis(ms));
                respond(StatusCode::NO_CONTENT, None)
            }
            None => bad_request("expected {\"ms\": <integer>}".to_owned()),
        },
        ("PUT", "clock") => match serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v.get("offset_secs").and_then(Value::as_i64))
        {
            Some(secs) => {
                shared.auth.clock.set_offset_secs(secs);
                respond(StatusCode::NO_CONTENT, None)
            }
            None => bad_request("expected {\"offset_secs\": <integer>}".to_owned()),
        },
        ("PUT", "token_ttl") => match serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v.get("secs").and_then(Value::as_u64))
        {
            Some(secs) => {
                shared.auth.tokens.set_ttl(Duration::from_secs(secs));
                respond(StatusCode::NO_CONTENT, None)
            }
            None => bad_request("expected {\"secs\": <integer>}".to_owned()),
        },
        ("POST", "tokens/expire") => {
            shared.auth.tokens.expire_all();
            respond(StatusCode::NO_CONTENT, None)
        }
        _ => respond(
            StatusCode::NOT_FOUND,
            Some(json!({"error": format!("no control route {method} {path}")})),
        ),
    }
}
