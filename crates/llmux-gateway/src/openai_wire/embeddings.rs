//! `POST /v1/embeddings`: requests → [`EmbeddingRequest`], responses in `float` or `base64`
//! (little-endian f32, what the official Python SDK asks for by default).

use base64::Engine;
use llmux_core::{EmbeddingRequest, EmbeddingResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ApiError;

/// How vectors are returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EncodingFormat {
    /// JSON numbers.
    #[default]
    Float,
    /// Base64 of little-endian f32.
    Base64,
}

#[derive(Debug, Deserialize)]
struct WireEmbeddingRequest {
    model: String,
    input: Input,
    #[serde(default)]
    encoding_format: Option<String>,
    #[serde(default)]
    dimensions: Option<u32>,
    #[serde(default)]
    user: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Input {
    One(String),
    Many(Vec<String>),
    /// Token ids (`[1, 2]` or `[[1, 2]]`): not supported, but recognised for a clear error.
    Tokens(#[expect(dead_code, reason = "only the shape matters")] Vec<serde::de::IgnoredAny>),
}

/// Parses an embeddings request.
pub fn parse_embeddings(body: &[u8]) -> Result<(EmbeddingRequest, EncodingFormat), ApiError> {
    let w: WireEmbeddingRequest = super::from_json(body)?;
    let input = match w.input {
        Input::One(s) => vec![s],
        Input::Many(v) => v,
        Input::Tokens(_) => {
            return Err(ApiError::new(
                llmux_core::ErrorKind::Unsupported,
                "token-id input is not supported by this gateway; send text",
            )
            .param("input"))
        }
    };
    let format = match w.encoding_format.as_deref() {
        None | Some("float") => EncodingFormat::Float,
        Some("base64") => EncodingFormat::Base64,
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "`encoding_format` must be float or base64, got `{other}`"
            ))
            .param("encoding_format"))
        }
    };
    let req = EmbeddingRequest {
        model: w.model,
        input,
        dimensions: w.dimensions,
        user: w.user,
        ..EmbeddingRequest::default()
    };
    req.validate()
        .map_err(|e| ApiError::new(e.kind(), e.message()).param("input"))?;
    Ok((req, format))
}

/// Base64 of the vector as little-endian f32.
pub fn base64_f32(v: &[f32]) -> String {
    let mut bytes = Vec::with_capacity(v.len() * 4);
    for x in v {
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The `list` body.
pub fn encode_embeddings(resp: &EmbeddingResponse, model: &str, format: EncodingFormat) -> Value {
    let data: Vec<Value> = resp
        .data
        .iter()
        .map(|e| {
            let embedding = match format {
                EncodingFormat::Float => json!(e.vector),
                EncodingFormat::Base64 => Value::String(base64_f32(&e.vector)),
            };
            json!({"object": "embedding", "index": e.index, "embedding": embedding})
        })
        .collect();
    let tokens = resp.usage.map_or(0, |u| u.input_tokens.max(u.total_tokens));
    json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn base64_is_little_endian_f32() {
        let s = base64_f32(&[1.0, -2.5]);
        let bytes = base64::engine::general_purpose::STANDARD.decode(s).unwrap();
        assert_eq!(
            bytes,
            [1.0f32.to_le_bytes(), (-2.5f32).to_le_bytes()].concat()
        );
    }

    #[test]
    fn input_shapes() {
        let (r, f) =
            parse_embeddings(br#"{"model":"m","input":"a","encoding_format":"base64"}"#).unwrap();
        assert_eq!(r.input, vec!["a"]);
        assert_eq!(f, EncodingFormat::Base64);
        assert!(parse_embeddings(br#"{"model":"m","input":[1,2]}"#).is_err());
        assert!(parse_embeddings(br#"{"model":"m","input":[]}"#).is_err());
    }
}
