//! `POST /api/v1/services/embeddings/text-embedding/text-embedding` (PROTOCOLS §1.6).

use llmux_core::{EmbeddingRequest, EmbeddingResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;

/// A DashScope text-embedding body.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = DashScopeEmbeddingRequest, example = json!({"model": "text-embedding-v3", "input": {"texts": ["Hello"]}}))]
pub(crate) struct WireRequest {
    /// The public model name (required: `BadRequest.EmptyModel` without it).
    #[serde(default)]
    #[schema(required = true, nullable = false, min_length = 1)]
    model: Option<String>,
    input: WireInput,
    #[serde(default)]
    parameters: Option<WireParameters>,
}

/// `input`: the texts to embed.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = DashScopeEmbeddingInput)]
pub(crate) struct WireInput {
    texts: Texts,
}

/// One text or several.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
#[schema(as = DashScopeTexts)]
pub(crate) enum Texts {
    One(String),
    Many(Vec<String>),
}

/// `parameters`: `text_type` (`query` or `document`) and `dimension`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[schema(as = DashScopeEmbeddingParameters)]
pub(crate) struct WireParameters {
    #[serde(default)]
    text_type: Option<String>,
    #[serde(default)]
    dimension: Option<u32>,
}

/// Parses a native embeddings request.
pub fn decode_embeddings(body: &[u8]) -> Result<EmbeddingRequest, ApiError> {
    let w: WireRequest = crate::ingress::openai::from_json(body)?;
    let model = w.model.filter(|m| !m.trim().is_empty()).ok_or_else(|| {
        let mut e = ApiError::invalid("Model not specified.").param("model");
        e.code = Some("BadRequest.EmptyModel");
        e
    })?;
    let p = w.parameters.unwrap_or_default();
    let input = match w.input.texts {
        Texts::One(s) => vec![s],
        Texts::Many(v) => v,
    };
    let req = EmbeddingRequest {
        model,
        input,
        dimensions: p.dimension,
        text_type: p.text_type,
        ..EmbeddingRequest::default()
    };
    req.validate()
        .map_err(|e| ApiError::new(e.kind(), e.message()).param("input.texts"))?;
    Ok(req)
}

/// A DashScope text-embedding answer.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(as = DashScopeEmbeddingResponse)]
pub struct EmbeddingAnswer {
    /// The vectors.
    pub output: EmbeddingOutput,
    /// Token usage.
    pub usage: EmbeddingUsage,
    /// The request id.
    pub request_id: String,
}

/// `output` of an `DashScopeEmbeddingResponse`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(as = DashScopeEmbeddingOutput)]
pub struct EmbeddingOutput {
    /// One vector per input text.
    pub embeddings: Vec<TextEmbedding>,
}

/// One vector.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(as = DashScopeTextEmbedding)]
pub struct TextEmbedding {
    /// Index of the input text.
    pub text_index: u32,
    /// The vector.
    pub embedding: Vec<f32>,
}

/// `usage` of an `DashScopeEmbeddingResponse`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(as = DashScopeEmbeddingUsage)]
pub struct EmbeddingUsage {
    /// Tokens in the input.
    pub total_tokens: u64,
}

/// The native response body.
pub fn encode_embeddings(resp: &EmbeddingResponse, request_id: &str) -> EmbeddingAnswer {
    let embeddings = resp
        .data
        .iter()
        .map(|e| TextEmbedding {
            text_index: e.index,
            embedding: e.vector.clone(),
        })
        .collect();
    let tokens = resp.usage.map_or(0, |u| u.input_tokens.max(u.total_tokens));
    EmbeddingAnswer {
        output: EmbeddingOutput { embeddings },
        usage: EmbeddingUsage {
            total_tokens: tokens,
        },
        request_id: request_id.to_owned(),
    }
}
