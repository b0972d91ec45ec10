//! Anthropic's model list shape, served by `GET /v1/models[/{id}]` when the client sends
//! `anthropic-version` ([`crate::routes::models`]): `{"data":[{"type":"model","id",
//! "display_name","created_at"}],"has_more","first_id","last_id"}`, paged by `limit` (1–1000,
//! default 20) and `after_id` or `before_id`. Models are ordered by name; a page id need not
//! be a listed model (the page starts after, or ends before, where it would sort).

use llmux_core::providers::canonical::UtcTime;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::routes::models::query_param;

/// The default page size.
pub const DEFAULT_LIMIT: usize = 20;
/// The largest page size.
pub const MAX_LIMIT: usize = 1000;

/// One model in Anthropic's shape.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AnthropicModel {
    /// Always `model`.
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    pub kind: &'static str,
    /// The public model name.
    pub id: String,
    /// The name to show (the public name).
    pub display_name: String,
    /// When the gateway started (RFC 3339).
    pub created_at: String,
}

impl AnthropicModel {
    /// The model `id`, created at `created` (unix seconds).
    pub fn new(id: &str, created: i64) -> Self {
        let at = std::time::UNIX_EPOCH
            + std::time::Duration::from_secs(u64::try_from(created).unwrap_or(0));
        AnthropicModel {
            kind: "model",
            id: id.to_owned(),
            display_name: id.to_owned(),
            created_at: UtcTime::from_system(at).iso8601(),
        }
    }
}

/// One page of Anthropic's model list.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AnthropicModelList {
    /// The models of this page.
    pub data: Vec<AnthropicModel>,
    /// More models follow in the paging direction.
    pub has_more: bool,
    /// The first id of this page (`after_id`'s opposite when paging back).
    pub first_id: Option<String>,
    /// The last id of this page (the next page's `after_id`).
    pub last_id: Option<String>,
}

/// The page of `models` (sorted) that the query's `limit`, `after_id` and `before_id` ask for.
pub fn page(
    models: &[String],
    query: Option<&str>,
    created: i64,
) -> Result<AnthropicModelList, ApiError> {
    let limit = match query_param(query, "limit") {
        None => DEFAULT_LIMIT,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                ApiError::invalid(format!("must be an integer from 1 to {MAX_LIMIT}"))
                    .param("limit")
            })?,
    };
    let after = query_param(query, "after_id");
    let before = query_param(query, "before_id");
    let (slice, has_more) = match (after, before) {
        (Some(_), Some(_)) => {
            return Err(
                ApiError::invalid("give `after_id` or `before_id`, not both").param("after_id"),
            )
        }
        (None, Some(b)) => {
            let end = models.partition_point(|m| m.as_str() < b.as_str());
            let start = end.saturating_sub(limit);
            (&models[start..end], start > 0)
        }
        (after, None) => {
            let start = after.map_or(0, |a| models.partition_point(|m| m.as_str() <= a.as_str()));
            let end = (start + limit).min(models.len());
            (&models[start..end], end < models.len())
        }
    };
    Ok(AnthropicModelList {
        data: slice
            .iter()
            .map(|m| AnthropicModel::new(m, created))
            .collect(),
        has_more,
        first_id: slice.first().cloned(),
        last_id: slice.last().cloned(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn ids(p: &AnthropicModelList) -> Vec<&str> {
        p.data.iter().map(|m| m.id.as_str()).collect()
    }

    #[test]
    fn pages_walk_forward_and_back() {
        let models: Vec<String> = ["a", "b", "c", "d", "e"].map(String::from).to_vec();
        let p = page(&models, Some("limit=2"), 0).unwrap();
        assert_eq!((ids(&p), p.has_more), (vec!["a", "b"], true));
        assert_eq!(p.last_id.as_deref(), Some("b"));
        let p = page(&models, Some("limit=2&after_id=b"), 0).unwrap();
        assert_eq!((ids(&p), p.has_more), (vec!["c", "d"], true));
        let p = page(&models, Some("limit=2&after_id=d"), 0).unwrap();
        assert_eq!((ids(&p), p.has_more), (vec!["e"], false));
        let p = page(&models, Some("limit=2&before_id=c"), 0).unwrap();
        assert_eq!((ids(&p), p.has_more), (vec!["a", "b"], false));
        let p = page(&models, Some("limit=2&before_id=e"), 0).unwrap();
        assert_eq!((ids(&p), p.has_more), (vec!["c", "d"], true));
        let p = page(&models, None, 0).unwrap();
        assert_eq!((ids(&p).len(), p.has_more), (5, false));
        assert_eq!(p.data[0].created_at, "1970-01-01T00:00:00Z");
        let p = page(&[], None, 0).unwrap();
        assert_eq!((p.first_id, p.last_id, p.has_more), (None, None, false));
        for bad in ["limit=0", "limit=1001", "limit=x", "after_id=a&before_id=b"] {
            assert!(page(&models, Some(bad), 0).is_err(), "{bad}");
        }
    }
}
