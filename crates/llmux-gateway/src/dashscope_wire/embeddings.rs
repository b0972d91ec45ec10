//! `POST /api/v1/services/embeddings/text-embedding/text-embedding` (PROTOCOLS §1.6).

use llmux_core::{EmbeddingRequest, EmbeddingResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ApiError;

#[derive(Debug, Deserialize)]
struct WireRequest {
    #[serde(default)]
    model: Option<String>,
    input: WireInput,
    #[serde(default)]
    parameters: Option<WireParameters>,
}

#[derive(Debug, Deserialize)]
struct WireInput {
    texts: Texts,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Texts {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Default, Deserialize)]
struct WireParameters {
    #[serde(default)]
    text_type: Option<String>,
    #[serde(default)]
    dimension: Option<u32>,
}

/// Parses a native embeddings request.
pub fn parse_embeddings(body: &[u8]) -> Result<EmbeddingRequest, ApiError> {
    let w: WireRequest = crate::openai_wire::from_json(body)?;
    let model = w.model.filter(|m| !m.trim().is_empty()).ok_or_else(|| {
        let mut e = ApiError::invalid("Model not specified.").param("model");
        e.dashscope_code = Some("BadRequest.EmptyModel");
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

/// The native response body.
pub fn encode_embeddings(resp: &EmbeddingResponse, request_id: &str) -> Value {
    let embeddings: Vec<Value> = resp
        .data
        .iter()
        .map(|e| json!({"text_index": e.index, "embedding": e.vector}))
        .collect();
    let tokens = resp.usage.map_or(0, |u| u.input_tokens.max(u.total_tokens));
    json!({
        "output": {"embeddings": embeddings},
        "usage": {"total_tokens": tokens},
        "request_id": request_id,
    })
}
