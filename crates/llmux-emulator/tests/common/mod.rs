//! Shared helpers for the emulator's wire-level tests: a minimal HTTP client, SSE frame parsing and JSON shapes.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use llmux_emulator::{Emulator, EmulatorConfig, Vendor};
use serde_json::Value;

pub const OPENAI_KEY: &str = "sk-emulator-openai";
pub const DASHSCOPE_KEY: &str = "sk-emulator-dashscope";

pub async fn openai() -> Emulator {
    Emulator::start(EmulatorConfig::new(Vendor::OpenAi))
        .await
        .unwrap()
}

pub async fn dashscope() -> Emulator {
    Emulator::start(EmulatorConfig::new(Vendor::DashScope))
        .await
        .unwrap()
}

/// A complete response: status, content type, headers, body (or the body error).
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub content_type: String,
    pub headers: reqwest::header::HeaderMap,
    pub body: Result<String, String>,
}

impl Resp {
    pub fn text(&self) -> &str {
        self.body.as_deref().expect("body was cut")
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(self.text()).expect("body is JSON")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// Sends a request with the given headers and raw body and reads the whole answer.
pub async fn send(method: &str, url: &str, headers: &[(&str, &str)], body: &str) -> Resp {
    let mut req = client().request(method.parse().unwrap(), url);
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    if !body.is_empty() {
        req = req.body(body.to_owned());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = match resp.bytes().await {
        Ok(b) => Ok(String::from_utf8(b.to_vec()).unwrap()),
        Err(e) => Err(e.to_string()),
    };
    Resp {
        status,
        content_type,
        headers,
        body,
    }
}

/// POSTs JSON with a bearer key.
pub async fn post(url: &str, key: &str, body: &Value) -> Resp {
    let auth = format!("Bearer {key}");
    send(
        "POST",
        url,
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        &body.to_string(),
    )
    .await
}

/// POSTs a DashScope native streaming request (`X-DashScope-SSE: enable`).
pub async fn post_dashscope_sse(url: &str, body: &Value) -> Resp {
    let auth = format!("Bearer {DASHSCOPE_KEY}");
    send(
        "POST",
        url,
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
            ("accept", "text/event-stream"),
            ("x-dashscope-sse", "enable"),
        ],
        &body.to_string(),
    )
    .await
}

/// One SSE frame: its fields in order (comments as field ""), split the way PROTOCOLS section 0 says.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub lines: Vec<(String, String)>,
}

impl Frame {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.lines
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn data(&self) -> Option<&str> {
        self.field("data")
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(self.data().expect("frame has data")).expect("frame data is JSON")
    }

    /// The field names in order, comments included as ":<text>".
    pub fn layout(&self) -> Vec<String> {
        self.lines
            .iter()
            .map(|(n, v)| {
                if n.is_empty() {
                    format!(":{v}")
                } else {
                    n.clone()
                }
            })
            .collect()
    }
}

/// Splits an SSE body into frames; every frame must end with a blank line.
pub fn frames(body: &str) -> Vec<Frame> {
    assert!(
        body.is_empty() || body.ends_with("\n\n"),
        "stream does not end with a blank line: {body:?}"
    );
    body.split("\n\n")
        .filter(|f| !f.is_empty())
        .map(|f| Frame {
            lines: f
                .lines()
                .map(|l| match l.split_once(':') {
                    Some((n, v)) => (n.to_owned(), v.strip_prefix(' ').unwrap_or(v).to_owned()),
                    None => (l.to_owned(), String::new()),
                })
                .collect(),
        })
        .collect()
}

/// True when `actual` has at least the structure of `expected`: every key of an expected object is present with a
/// compatible value; arrays compare their first elements; `null` on either side matches anything; scalars match
/// when they are the same JSON type.
pub fn same_shape(expected: &Value, actual: &Value) -> Result<(), String> {
    fn walk(e: &Value, a: &Value, path: &str) -> Result<(), String> {
        match (e, a) {
            (Value::Null, _) | (_, Value::Null) => Ok(()),
            (Value::Object(eo), Value::Object(ao)) => {
                for (k, ev) in eo {
                    let av = ao.get(k).ok_or_else(|| format!("{path}.{k} missing"))?;
                    walk(ev, av, &format!("{path}.{k}"))?;
                }
                Ok(())
            }
            (Value::Array(ea), Value::Array(aa)) => match (ea.first(), aa.first()) {
                (Some(ev), Some(av)) => walk(ev, av, &format!("{path}[0]")),
                _ => Ok(()),
            },
            (Value::String(_), Value::String(_))
            | (Value::Number(_), Value::Number(_))
            | (Value::Bool(_), Value::Bool(_)) => Ok(()),
            _ => Err(format!("{path}: expected {e}, got {a}")),
        }
    }
    walk(expected, actual, "$")
}

/// Concatenates OpenAI stream content deltas.
pub fn openai_stream_text(frames: &[Frame]) -> String {
    frames
        .iter()
        .filter(|f| f.data() != Some("[DONE]"))
        .filter_map(|f| {
            f.json()["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}
