//! The built-in price table: `prices/prices.toml`, compiled in and parsed once.
//!
//! Each row names the provider ids that serve a model under one name, the model, its list
//! prices per 1M tokens in the vendor's currency, the vendor page they were read from and the
//! day they were read; a row without prices records a model whose price could not be
//! confirmed, with a note saying why. `model = "*"` covers every model of its providers.
//! `[[unpriced_provider]]` rows say why a provider has no priced model at all.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::Deserialize;

use super::price::{Currency, ModelPrice};

/// The data file, as committed.
pub const PRICES_TOML: &str = include_str!("../../prices/prices.toml");

/// One `[[price]]` row.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceRow {
    /// Provider ids (registry ids) whose upstream serves the model under this name.
    pub providers: Vec<String>,
    /// The upstream model name, or `*` for every model of these providers.
    pub model: String,
    /// The currency the vendor bills in (required when priced).
    #[serde(default)]
    pub currency: Option<Currency>,
    /// Per 1M input tokens.
    #[serde(default)]
    pub input_per_mtok: Option<f64>,
    /// Per 1M output tokens.
    #[serde(default)]
    pub output_per_mtok: Option<f64>,
    /// Per 1M cached input tokens (absent = the input price).
    #[serde(default)]
    pub cached_input_per_mtok: Option<f64>,
    /// Per 1M reasoning tokens (absent = the output price).
    #[serde(default)]
    pub reasoning_per_mtok: Option<f64>,
    /// The vendor page the price was read from.
    pub source: String,
    /// The day it was read, `YYYY-MM-DD`.
    pub read: String,
    /// Tiers, caveats, or why the row has no price.
    #[serde(default)]
    pub note: Option<String>,
}

impl PriceRow {
    /// The price, when the row has one (input, output and currency all given).
    pub fn price(&self) -> Option<ModelPrice> {
        Some(ModelPrice {
            input_per_mtok: self.input_per_mtok?,
            output_per_mtok: self.output_per_mtok?,
            cached_input_per_mtok: self.cached_input_per_mtok,
            reasoning_per_mtok: self.reasoning_per_mtok,
            currency: Some(self.currency?),
        })
    }
}

/// One `[[unpriced_provider]]` row.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnpricedProvider {
    /// The provider id.
    pub provider: String,
    /// Why none of its models is priced.
    pub reason: String,
}

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceFile {
    /// Model rows.
    #[serde(default)]
    pub price: Vec<PriceRow>,
    /// Providers without a priced model.
    #[serde(default)]
    pub unpriced_provider: Vec<UnpricedProvider>,
}

/// The file, indexed by provider id and model.
#[derive(Debug, Default)]
pub struct BuiltinPrices {
    /// The rows as parsed.
    pub file: PriceFile,
    by_provider: HashMap<String, HashMap<String, usize>>,
}

impl BuiltinPrices {
    /// Parses and indexes `text`; a later row for the same provider and model is an error.
    pub fn parse(text: &str) -> Result<BuiltinPrices, String> {
        let file: PriceFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut by_provider: HashMap<String, HashMap<String, usize>> = HashMap::new();
        for (i, row) in file.price.iter().enumerate() {
            for p in &row.providers {
                if by_provider
                    .entry(p.clone())
                    .or_default()
                    .insert(row.model.clone(), i)
                    .is_some()
                {
                    return Err(format!("`{p}/{}` has more than one row", row.model));
                }
            }
        }
        Ok(BuiltinPrices { file, by_provider })
    }

    /// The row of `provider`'s `model` (else its `*` row), with its key.
    pub fn find(&self, provider: &str, model: &str) -> Option<(String, &PriceRow)> {
        let rows = self.by_provider.get(provider)?;
        let (name, i) = rows
            .get_key_value(model)
            .or_else(|| rows.get_key_value("*"))?;
        Some((format!("{provider}/{name}"), self.file.price.get(*i)?))
    }

    /// Every `provider/model` key with its row.
    pub fn keyed(&self) -> impl Iterator<Item = (String, &PriceRow)> {
        self.by_provider.iter().flat_map(move |(p, rows)| {
            rows.iter().filter_map(move |(m, i)| {
                self.file.price.get(*i).map(|row| (format!("{p}/{m}"), row))
            })
        })
    }
}

/// The compiled-in table, parsed on first use.
pub fn table() -> Result<&'static BuiltinPrices, String> {
    static TABLE: OnceLock<Result<BuiltinPrices, String>> = OnceLock::new();
    TABLE
        .get_or_init(|| BuiltinPrices::parse(PRICES_TOML))
        .as_ref()
        .map_err(Clone::clone)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use llmux_core::providers::REGISTRY;

    use super::*;

    fn is_day(s: &str) -> bool {
        crate::store::parse_day(s).is_some() && s.len() == 10
    }

    #[test]
    fn every_row_parses_and_has_a_source_url_a_date_and_a_price_or_a_reason() {
        let t = table().unwrap();
        assert!(t.file.price.len() > 40, "{} rows", t.file.price.len());
        let ids: BTreeSet<&str> = REGISTRY.iter().map(|s| s.id).collect();
        for row in &t.file.price {
            let at = format!("{:?}/{}", row.providers, row.model);
            assert!(
                row.source.starts_with("https://"),
                "{at}: source {}",
                row.source
            );
            assert!(is_day(&row.read), "{at}: read {}", row.read);
            assert!(!row.providers.is_empty(), "{at}: no provider");
            for p in &row.providers {
                assert!(
                    ids.contains(p.as_str()),
                    "{at}: `{p}` is not a registered provider"
                );
            }
            match row.price() {
                Some(p) => assert!(p.is_valid(), "{at}: invalid price"),
                None => {
                    // Unpriced: no partial numbers, and a note saying why.
                    assert!(
                        row.note.as_deref().is_some_and(|n| n.contains("Unpriced")),
                        "{at}: an unpriced row needs a note starting the reason with `Unpriced`"
                    );
                    assert!(row.input_per_mtok.is_none() && row.output_per_mtok.is_none());
                }
            }
        }
        for u in &t.file.unpriced_provider {
            assert!(ids.contains(u.provider.as_str()), "{}", u.provider);
            assert!(u.reason.len() > 20, "{}: give a reason", u.provider);
        }
    }

    #[test]
    fn every_registered_provider_has_a_priced_model_or_a_stated_reason() {
        let t = table().unwrap();
        for spec in REGISTRY {
            let priced = t
                .file
                .price
                .iter()
                .any(|r| r.providers.iter().any(|p| p == spec.id) && r.price().is_some());
            let reason = t
                .file
                .unpriced_provider
                .iter()
                .any(|u| u.provider == spec.id);
            assert!(
                priced || reason,
                "provider `{}` has no priced model and no [[unpriced_provider]] reason",
                spec.id
            );
            assert!(
                !(priced && reason),
                "`{}` is priced and says it is not",
                spec.id
            );
        }
    }

    #[test]
    fn every_known_model_has_a_row_unless_its_provider_says_why_not() {
        let t = table().unwrap();
        for spec in REGISTRY {
            if t.file
                .unpriced_provider
                .iter()
                .any(|u| u.provider == spec.id)
            {
                continue;
            }
            for m in spec.models {
                assert!(
                    t.find(spec.id, m).is_some(),
                    "`{}/{m}` (a known model of the registry) has no row in prices.toml",
                    spec.id
                );
            }
        }
    }

    #[test]
    fn duplicate_rows_and_unknown_fields_are_refused() {
        let row = "[[price]]\nproviders=[\"openai\"]\nmodel=\"m\"\nsource=\"https://x\"\nread=\"2026-01-01\"\n";
        assert!(BuiltinPrices::parse(&format!("{row}{row}")).is_err());
        assert!(BuiltinPrices::parse(&format!("{row}typo = 1\n")).is_err());
        assert!(BuiltinPrices::parse(row).is_ok());
    }
}
