//! `POST /v1/embeddings`: requests → [`EmbeddingRequest`], responses in `float` or `base64`
//! (little-endian f32, what the official Python SDK asks for by default).

use base64::Engine;
use llmux_core::{EmbeddingRequest, EmbeddingResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

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

/// A `POST /v1/embeddings` body. Fields not listed here are accepted and ignored.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = EmbeddingRequest, example = json!({"model": "text-embedding-3-small", "input": "Hello"}))]
pub(crate) struct WireEmbeddingRequest {
    /// The public model name.
    #[schema(min_length = 1)]
    model: String,
    input: Input,
    /// `float` (the default) or `base64` (little-endian f32).
    #[serde(default)]
    #[schema(pattern = "^(float|base64)$")]
    encoding_format: Option<String>,
    #[serde(default)]
    dimensions: Option<u32>,
    #[serde(default)]
    user: Option<String>,
}

/// One text, several texts, or token ids (not supported: answered with a 400).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
#[schema(as = EmbeddingInput)]
pub(crate) enum Input {
    /// One text.
    One(String),
    /// Several texts.
    Many(Vec<String>),
    /// Token ids (`[1, 2]` or `[[1, 2]]`): not supported, but recognised for a clear error.
    #[schema(value_type = Vec<i64>)]
    Tokens(#[expect(dead_code, reason = "only the shape matters")] Vec<serde::de::IgnoredAny>),
}

/// Parses an embeddings request.
pub fn decode_embeddings(body: &[u8]) -> Result<(EmbeddingRequest, EncodingFormat), ApiError> {
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

/// A `POST /v1/embeddings` answer.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct EmbeddingList {
    /// Always `list`.
    #[schema(value_type = String)]
    pub object: &'static str,
    /// One vector per input.
    pub data: Vec<EmbeddingItem>,
    /// The public model name.
    pub model: String,
    /// Token usage.
    pub usage: EmbeddingUsage,
}

/// One vector of an `EmbeddingList`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct EmbeddingItem {
    /// Always `embedding`.
    #[schema(value_type = String)]
    pub object: &'static str,
    /// Index of the input.
    pub index: u32,
    /// The vector: numbers, or base64 of little-endian f32 with `encoding_format: base64`.
    pub embedding: EmbeddingVector,
}

/// A vector as numbers or as base64.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(untagged)]
pub enum EmbeddingVector {
    /// `encoding_format: float`.
    Float(Vec<f32>),
    /// `encoding_format: base64`.
    Base64(String),
}

/// `usage` of an `EmbeddingList`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct EmbeddingUsage {
    /// Tokens in the input.
    pub prompt_tokens: u64,
    /// The same.
    pub total_tokens: u64,
}

/// The `list` body.
pub fn encode_embeddings(
    resp: &EmbeddingResponse,
    model: &str,
    format: EncodingFormat,
) -> EmbeddingList {
    let data = resp
        .data
        .iter()
        .map(|e| EmbeddingItem {
            object: "embedding",
            index: e.index,
            embedding: match format {
                EncodingFormat::Float => EmbeddingVector::Float(e.vector.clone()),
                EncodingFormat::Base64 => EmbeddingVector::Base64(base64_f32(&e.vector)),
            },
        })
        .collect();
    let tokens = resp.usage.map_or(0, |u| u.input_tokens.max(u.total_tokens));
    EmbeddingList {
        object: "list",
        data,
        model: model.to_owned(),
        usage: EmbeddingUsage {
            prompt_tokens: tokens,
            total_tokens: tokens,
        },
    }
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
            decode_embeddings(br#"{"model":"m","input":"a","encoding_format":"base64"}"#).unwrap();
        assert_eq!(r.input, vec!["a"]);
        assert_eq!(f, EncodingFormat::Base64);
        assert!(decode_embeddings(br#"{"model":"m","input":[1,2]}"#).is_err());
        assert!(decode_embeddings(br#"{"model":"m","input":[]}"#).is_err());
    }
}
