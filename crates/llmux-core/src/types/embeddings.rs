//! Embedding requests and responses, and the model list.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// Turn texts into vectors.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingRequest {
    /// `provider/model` for [`crate::Client::embed`]. The provider-level calls
    /// ([`crate::Client::embed_with`], [`crate::providers::Provider`]) take the upstream model
    /// name beside the request and do not read this field.
    pub model: String,
    /// The texts, in order.
    pub input: Vec<String>,
    /// Output dimension, for models that support several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<u32>,
    /// `query` or `document` (DashScope `text_type`), for asymmetric models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_type: Option<String>,
    /// End-user id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Vendor-specific fields, passed through; `null` removes a default field.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub extra: Map<String, Value>,
}

impl EmbeddingRequest {
    /// A request for `model` over `input`.
    pub fn new(model: impl Into<String>, input: Vec<String>) -> Self {
        EmbeddingRequest {
            model: model.into(),
            input,
            ..Default::default()
        }
    }

    /// A model named and input present.
    pub fn validate(&self) -> Result<()> {
        self.validate_for(&self.model)
    }

    /// [`EmbeddingRequest::validate`] for a request sent as `model` (the upstream model name
    /// that travels beside the request; the request's own `model` field is not read).
    pub fn validate_for(&self, model: &str) -> Result<()> {
        if model.trim().is_empty() {
            return Err(Error::invalid_request("`model` must not be empty"));
        }
        if self.input.is_empty() {
            return Err(Error::invalid_request("`input` must not be empty"));
        }
        Ok(())
    }
}

/// One vector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Embedding {
    /// Position of the text in the request.
    pub index: u32,
    /// The vector.
    pub vector: Vec<f32>,
}

/// The vectors, in input order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingResponse {
    /// Model that produced them.
    pub model: String,
    /// One per input text, sorted by index.
    pub data: Vec<Embedding>,
    /// Token usage (input only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<crate::Usage>,
    /// The upstream request id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// A model a provider offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// Model id as the provider names it.
    pub id: String,
    /// Who owns it, when said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owned_by: Option<String>,
    /// Creation time, unix seconds, when said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<i64>,
}
