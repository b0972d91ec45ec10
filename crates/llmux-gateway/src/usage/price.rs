//! Prices per model, from configuration, and the cost of a request.
//!
//! Prices are per 1M tokens: input, output and (optionally) cached input. A model is looked up
//! by its public name first, then as `provider/upstream_model`. Cached input tokens are part of
//! the input count and are charged at the cached price instead of the input price (at the
//! input price when no cached price is set). A model with no price costs 0, with a warning
//! logged once per model name.
//!
//! ```toml
//! [prices."qwen-plus"]
//! input_per_mtok = 0.8
//! output_per_mtok = 2.0
//! cached_input_per_mtok = 0.16
//! ```

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::store::UsageRecord;

/// Prices of one model, per 1M tokens, in the gateway's currency.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPrice {
    /// Per 1M input (prompt) tokens.
    pub input_per_mtok: f64,
    /// Per 1M output tokens (reasoning included).
    pub output_per_mtok: f64,
    /// Per 1M cached input tokens; `None` = the input price.
    #[serde(default)]
    pub cached_input_per_mtok: Option<f64>,
}

impl ModelPrice {
    /// Cost of `input` tokens (of which `cached` came from the cache) and `output` tokens.
    pub fn cost(&self, input: u64, output: u64, cached: u64) -> f64 {
        let cached = cached.min(input);
        let fresh = input - cached;
        let cached_price = self.cached_input_per_mtok.unwrap_or(self.input_per_mtok);
        (fresh as f64 * self.input_per_mtok
            + cached as f64 * cached_price
            + output as f64 * self.output_per_mtok)
            / 1_000_000.0
    }

    /// The highest of its per-token prices (for conservative cost reservations).
    pub fn max_per_token(&self) -> f64 {
        self.input_per_mtok
            .max(self.output_per_mtok)
            .max(self.cached_input_per_mtok.unwrap_or(0.0))
            / 1_000_000.0
    }
}

/// A price is negative or not a number.
#[derive(Debug, thiserror::Error)]
#[error("price of `{model}` is invalid: every price must be a finite number ≥ 0")]
pub struct PriceError {
    /// The model whose price is wrong.
    pub model: String,
}

/// The price table. Share it with `Arc`.
#[derive(Debug, Default)]
pub struct PriceTable {
    prices: HashMap<String, ModelPrice>,
    warned: Mutex<BTreeSet<String>>,
}

impl PriceTable {
    /// A table from `model (or provider/model) → price`, validated.
    pub fn new(prices: HashMap<String, ModelPrice>) -> Result<Self, PriceError> {
        for (model, p) in &prices {
            let ok = |v: f64| v.is_finite() && v >= 0.0;
            if !ok(p.input_per_mtok)
                || !ok(p.output_per_mtok)
                || !p.cached_input_per_mtok.is_none_or(ok)
            {
                return Err(PriceError {
                    model: model.clone(),
                });
            }
        }
        Ok(PriceTable {
            prices,
            warned: Mutex::new(BTreeSet::new()),
        })
    }

    /// The price of a public model, else of `provider/upstream_model`.
    pub fn price(&self, model: &str, provider: &str, upstream_model: &str) -> Option<ModelPrice> {
        self.prices
            .get(model)
            .or_else(|| self.prices.get(&format!("{provider}/{upstream_model}")))
            .copied()
    }

    /// The cost of a usage record (0, with a one-time warning, for an unpriced model).
    pub fn cost(&self, rec: &UsageRecord) -> f64 {
        match self.price(&rec.model, &rec.provider, &rec.upstream_model) {
            Some(p) => p.cost(rec.input_tokens, rec.output_tokens, rec.cached_tokens),
            None => {
                self.warn_unknown(&rec.model);
                0.0
            }
        }
    }

    /// Models seen without a price, each warned about once.
    pub fn unpriced_models(&self) -> Vec<String> {
        self.warned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }

    /// The highest per-token price in the table (0 when empty): a conservative cost per
    /// token for [`crate::limits::KeyLimits::with_cost_per_token`].
    pub fn max_per_token(&self) -> f64 {
        self.prices
            .values()
            .map(ModelPrice::max_per_token)
            .fold(0.0, f64::max)
    }

    fn warn_unknown(&self, model: &str) {
        let mut warned = self
            .warned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if warned.insert(model.to_owned()) {
            tracing::warn!(
                model,
                "No price is configured for this model; its cost is recorded as 0."
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> PriceTable {
        PriceTable::new(HashMap::from([
            (
                "qwen-plus".to_owned(),
                ModelPrice {
                    input_per_mtok: 0.8,
                    output_per_mtok: 2.0,
                    cached_input_per_mtok: Some(0.2),
                },
            ),
            (
                "zhipu/glm-4".to_owned(),
                ModelPrice {
                    input_per_mtok: 1.0,
                    output_per_mtok: 4.0,
                    cached_input_per_mtok: None,
                },
            ),
        ]))
        .unwrap()
    }

    fn rec(model: &str, provider: &str, upstream: &str, i: u64, o: u64, c: u64) -> UsageRecord {
        UsageRecord {
            model: model.into(),
            provider: provider.into(),
            upstream_model: upstream.into(),
            input_tokens: i,
            output_tokens: o,
            cached_tokens: c,
            ..Default::default()
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn cost_uses_input_output_and_cached_prices_per_million() {
        let t = table();
        // 600k fresh input * 0.8 + 400k cached * 0.2 + 500k output * 2.0 = 0.48 + 0.08 + 1.0
        let c = t.cost(&rec(
            "qwen-plus",
            "dashscope",
            "qwen-plus",
            1_000_000,
            500_000,
            400_000,
        ));
        assert!(close(c, 1.56), "{c}");
        let c = t.cost(&rec("qwen-plus", "dashscope", "x", 1_000, 0, 0));
        assert!(close(c, 0.0008), "{c}");
    }

    #[test]
    fn provider_slash_model_is_the_fallback_and_cached_defaults_to_input_price() {
        let t = table();
        let c = t.cost(&rec(
            "my-alias", "zhipu", "glm-4", 1_000_000, 1_000_000, 500_000,
        ));
        assert!(close(c, 5.0), "{c}");
        assert!(t.price("glm-4", "dashscope", "glm-4").is_none());
    }

    #[test]
    fn unknown_models_cost_zero_and_are_remembered_once() {
        let t = table();
        assert_eq!(t.cost(&rec("mystery", "openai", "m", 10, 10, 0)), 0.0);
        assert_eq!(t.cost(&rec("mystery", "openai", "m", 10, 10, 0)), 0.0);
        assert_eq!(t.cost(&rec("other", "openai", "m", 10, 10, 0)), 0.0);
        assert_eq!(t.unpriced_models(), vec!["mystery", "other"]);
    }

    #[test]
    fn cached_tokens_beyond_input_are_clamped() {
        let p = ModelPrice {
            input_per_mtok: 1.0,
            output_per_mtok: 0.0,
            cached_input_per_mtok: Some(0.0),
        };
        assert_eq!(p.cost(100, 0, 1_000), 0.0);
    }

    #[test]
    fn invalid_prices_are_rejected_and_max_per_token_is_conservative() {
        let bad = |v: f64| {
            PriceTable::new(HashMap::from([(
                "m".to_owned(),
                ModelPrice {
                    input_per_mtok: v,
                    ..Default::default()
                },
            )]))
        };
        assert!(bad(-1.0).is_err());
        assert!(bad(f64::NAN).is_err());
        assert!(bad(f64::INFINITY).is_err());
        assert!(close(table().max_per_token(), 4.0e-6));
    }

    #[test]
    fn prices_deserialize_from_config_and_reject_unknown_fields() {
        let p: ModelPrice =
            serde_json::from_str(r#"{"input_per_mtok":1,"output_per_mtok":2}"#).unwrap();
        assert_eq!(p.cached_input_per_mtok, None);
        assert!(serde_json::from_str::<ModelPrice>(
            r#"{"input_per_mtok":1,"output_per_mtok":2,"typo":3}"#
        )
        .is_err());
    }
}
