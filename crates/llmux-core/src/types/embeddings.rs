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

    /// The same request over other texts (one batch of a split request).
    pub fn with_input(&self, input: Vec<String>) -> Self {
        EmbeddingRequest {
            model: self.model.clone(),
            input,
            dimensions: self.dimensions,
            text_type: self.text_type.clone(),
            user: self.user.clone(),
            extra: self.extra.clone(),
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

impl EmbeddingResponse {
    /// Joins the answers to consecutive batches of one input, each given with the number of
    /// texts its batch had: vectors in input order with their indexes renumbered from the
    /// batch's offset, usage summed (unset only when no batch reported any), the model and
    /// request id of the first batch. A batch answered with a vector count or an index that
    /// does not fit its texts is an [`crate::ErrorKind::UpstreamProtocol`] error, as no vector
    /// could then be matched to its text.
    pub fn join_batches(
        batches: impl IntoIterator<Item = (usize, EmbeddingResponse)>,
    ) -> Result<EmbeddingResponse> {
        let mut out: Option<EmbeddingResponse> = None;
        let mut offset = 0usize;
        for (texts, batch) in batches {
            let mut seen = vec![false; texts];
            for e in &batch.data {
                let i = e.index as usize;
                if i >= texts || std::mem::replace(&mut seen[i], true) {
                    return Err(Error::protocol(format!(
                        "the upstream answered a batch of {texts} texts with vector index {i}"
                    )));
                }
            }
            if batch.data.len() != texts {
                return Err(Error::protocol(format!(
                    "the upstream answered a batch of {texts} texts with {} vectors",
                    batch.data.len()
                )));
            }
            let base = u32::try_from(offset)
                .map_err(|_| Error::invalid_request("too many texts in one embeddings request"))?;
            let EmbeddingResponse {
                model,
                mut data,
                usage,
                request_id,
            } = batch;
            data.sort_by_key(|e| e.index);
            for e in &mut data {
                e.index += base;
            }
            match &mut out {
                None => {
                    out = Some(EmbeddingResponse {
                        model,
                        data,
                        usage,
                        request_id,
                    })
                }
                Some(acc) => {
                    acc.data.extend(data);
                    acc.usage = match (acc.usage, usage) {
                        (Some(a), Some(b)) => Some(a.plus(&b)),
                        (a, b) => a.or(b),
                    };
                    if acc.model.is_empty() {
                        acc.model = model;
                    }
                    if acc.request_id.is_none() {
                        acc.request_id = request_id;
                    }
                }
            }
            offset += texts;
        }
        out.ok_or_else(|| Error::invalid_request("`input` must not be empty"))
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(vectors: &[(u32, f32)], tokens: Option<u64>) -> EmbeddingResponse {
        EmbeddingResponse {
            model: "m".into(),
            data: vectors
                .iter()
                .map(|&(index, v)| Embedding {
                    index,
                    vector: vec![v],
                })
                .collect(),
            usage: tokens.map(|t| crate::Usage::new(t, 0)),
            request_id: Some(format!("r{}", vectors.len())),
        }
    }

    #[test]
    fn issue_18_batches_join_in_input_order_with_summed_usage() {
        // The second batch answers out of order: its own indexes decide the order.
        let joined = EmbeddingResponse::join_batches([
            (2, answer(&[(0, 0.0), (1, 1.0)], Some(3))),
            (3, answer(&[(2, 4.0), (0, 2.0), (1, 3.0)], Some(4))),
            (1, answer(&[(0, 5.0)], None)),
        ])
        .unwrap();
        let got: Vec<(u32, f32)> = joined.data.iter().map(|e| (e.index, e.vector[0])).collect();
        assert_eq!(
            got,
            [(0, 0.0), (1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0), (5, 5.0)]
        );
        let u = joined.usage.unwrap();
        assert_eq!((u.input_tokens, u.total_tokens), (7, 7));
        assert_eq!(joined.request_id.as_deref(), Some("r2"));
    }

    #[test]
    fn issue_18_a_batch_answer_that_does_not_fit_its_texts_is_refused() {
        for bad in [
            answer(&[(0, 0.0)], None),
            answer(&[(0, 0.0), (0, 1.0)], None),
            answer(&[(0, 0.0), (2, 1.0)], None),
            answer(&[(0, 0.0), (1, 1.0), (2, 2.0)], None),
        ] {
            let err = EmbeddingResponse::join_batches([(2, bad)]).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::UpstreamProtocol, "{err}");
        }
    }
}
