//! Prices per model and the cost of a request, in the gateway's accounting currency.
//!
//! Three layers, highest first: overrides set through the admin API (kept in the store),
//! `[server.prices."MODEL"]` in the configuration, and the built-in table compiled from
//! `prices/prices.toml` ([`super::builtin_prices`]). A request is priced by the first layer
//! that knows it, asking each layer for its public model name, then for
//! `provider/upstream_model`; the built-in table is then asked for the upstream model among
//! that provider's rows (by model name, then the provider's `*` row).
//!
//! Prices are per 1M tokens, in the currency the vendor bills in. Cached input tokens are part
//! of the input count and are charged at the cached price (the input price when none is set);
//! reasoning tokens are part of the output count and are charged at the reasoning price (the
//! output price when none is set). A cost is converted into the accounting currency
//! (`server.currency`, USD by default) with `[server.exchange_rates]` when it is computed, so
//! every record and every budget holds one currency. A price in a currency with no rate cannot
//! be converted: its model is unpriced until a rate is configured. A model with no price costs
//! 0; it is logged once per process and listed per channel on `GET /admin/channels`.
//!
//! ```toml
//! [server]
//! currency = "USD"
//! [server.exchange_rates]
//! CNY = 0.14          # 1 CNY = 0.14 USD
//! [server.prices."qwen-plus"]
//! input_per_mtok = 0.8
//! output_per_mtok = 2.0
//! cached_input_per_mtok = 0.2
//! reasoning_per_mtok = 8.0
//! currency = "CNY"
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::builtin_prices::{self, BuiltinPrices};
use crate::store::UsageRecord;

/// The largest price accepted per 1M tokens (in any currency): far above any list price, low
/// enough that a typo in an override cannot overflow a budget.
pub const MAX_PRICE_PER_MTOK: f64 = 1_000_000.0;

/// A three-letter currency code (ISO 4217 style, upper case: `USD`, `CNY`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Currency([u8; 3]);

impl Currency {
    /// US dollars, the default accounting currency.
    pub const USD: Currency = Currency(*b"USD");

    /// The code, if `s` is three ASCII upper-case letters.
    pub fn parse(s: &str) -> Option<Currency> {
        let b = s.as_bytes();
        (b.len() == 3 && b.iter().all(u8::is_ascii_uppercase)).then(|| Currency([b[0], b[1], b[2]]))
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        // Only ASCII upper-case letters are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }
}

impl Default for Currency {
    fn default() -> Self {
        Currency::USD
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Currency::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "`{}` is not a currency code (three upper-case letters, e.g. USD or CNY)",
                s.chars().take(16).collect::<String>()
            ))
        })
    }
}

/// Prices of one model, per 1M tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelPrice {
    /// Per 1M input (prompt) tokens.
    pub input_per_mtok: f64,
    /// Per 1M output tokens.
    pub output_per_mtok: f64,
    /// Per 1M cached input tokens; absent = the input price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input_per_mtok: Option<f64>,
    /// Per 1M reasoning tokens (part of the output); absent = the output price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_per_mtok: Option<f64>,
    /// The currency of these prices; absent = the gateway's accounting currency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "CNY")]
    pub currency: Option<Currency>,
}

/// Tokens of one request, as a usage record counts them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tokens {
    /// Prompt tokens (cached ones included).
    pub input: u64,
    /// Output tokens (reasoning ones included).
    pub output: u64,
    /// Prompt tokens served from the vendor's cache.
    pub cached: u64,
    /// Reasoning tokens within the output.
    pub reasoning: u64,
}

impl ModelPrice {
    /// The cost of `t`, in this price's own currency.
    pub fn cost(&self, t: Tokens) -> f64 {
        let cached = t.cached.min(t.input);
        let reasoning = t.reasoning.min(t.output);
        let cached_price = self.cached_input_per_mtok.unwrap_or(self.input_per_mtok);
        let reasoning_price = self.reasoning_per_mtok.unwrap_or(self.output_per_mtok);
        ((t.input - cached) as f64 * self.input_per_mtok
            + cached as f64 * cached_price
            + (t.output - reasoning) as f64 * self.output_per_mtok
            + reasoning as f64 * reasoning_price)
            / 1_000_000.0
    }

    /// The highest of its per-token prices, in its own currency (for cost reservations).
    pub fn max_per_token(&self) -> f64 {
        self.input_per_mtok
            .max(self.output_per_mtok)
            .max(self.cached_input_per_mtok.unwrap_or(0.0))
            .max(self.reasoning_per_mtok.unwrap_or(0.0))
            / 1_000_000.0
    }

    /// Every price is a finite number in `0..=MAX_PRICE_PER_MTOK`.
    pub fn is_valid(&self) -> bool {
        let ok = |v: f64| v.is_finite() && (0.0..=MAX_PRICE_PER_MTOK).contains(&v);
        ok(self.input_per_mtok)
            && ok(self.output_per_mtok)
            && self.cached_input_per_mtok.is_none_or(ok)
            && self.reasoning_per_mtok.is_none_or(ok)
    }

    /// Every price is zero (free in any currency, so no exchange rate is needed).
    pub fn is_free(&self) -> bool {
        self.max_per_token() == 0.0
    }
}

/// A price, a currency code or an exchange rate is invalid.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PriceError {
    /// A price is negative, too large or not a number.
    #[error("the price of `{model}` is invalid: every price must be a finite number from 0 to {MAX_PRICE_PER_MTOK} per 1M tokens")]
    Price {
        /// The model whose price is wrong.
        model: String,
    },
    /// An exchange rate is not a finite number above 0.
    #[error("the exchange rate of {currency} must be a finite number above 0")]
    Rate {
        /// The currency whose rate is wrong.
        currency: Currency,
    },
    /// The built-in price table does not parse (a defect of the build).
    #[error("the built-in price table is invalid: {0}")]
    Builtin(String),
}

/// The accounting currency and the rates that convert vendor prices into it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Money {
    /// The currency every cost and budget is kept in.
    pub currency: Currency,
    /// Units of `currency` per unit of each other currency.
    pub rates: BTreeMap<Currency, f64>,
}

impl Money {
    /// Accounting in `currency` with `rates`, validated.
    pub fn new(currency: Currency, rates: BTreeMap<Currency, f64>) -> Result<Money, PriceError> {
        if let Some((c, _)) = rates.iter().find(|(_, r)| !(r.is_finite() && **r > 0.0)) {
            return Err(PriceError::Rate { currency: *c });
        }
        Ok(Money { currency, rates })
    }

    /// The factor from `from` into the accounting currency (1 for the same currency).
    pub fn rate(&self, from: Currency) -> Option<f64> {
        if from == self.currency {
            Some(1.0)
        } else {
            self.rates.get(&from).copied()
        }
    }

    /// `p` in the accounting currency: its currency set, its prices converted. `None` when its
    /// currency has no rate (a free price needs none).
    pub fn convert(&self, p: ModelPrice) -> Option<ModelPrice> {
        let from = p.currency.unwrap_or(self.currency);
        let rate = if p.is_free() { 1.0 } else { self.rate(from)? };
        Some(ModelPrice {
            input_per_mtok: p.input_per_mtok * rate,
            output_per_mtok: p.output_per_mtok * rate,
            cached_input_per_mtok: p.cached_input_per_mtok.map(|v| v * rate),
            reasoning_per_mtok: p.reasoning_per_mtok.map(|v| v * rate),
            currency: Some(self.currency),
        })
    }
}

/// Which layer of the table a price comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PriceSource {
    /// The compiled-in table (`prices/prices.toml`).
    Builtin,
    /// `[server.prices]` in the configuration.
    Config,
    /// An override set through `PUT /admin/prices/{model}`.
    Api,
}

/// The price a request was matched to.
#[derive(Debug, Clone, PartialEq)]
pub struct Matched {
    /// As written, in the vendor's currency (the currency always set).
    pub price: ModelPrice,
    /// Its layer.
    pub source: PriceSource,
    /// The key it was found under (`model`, `provider/model`, or `provider/*`).
    pub key: String,
}

/// Why a request has no usable price.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unpriced {
    /// No layer knows the model.
    Unknown,
    /// The built-in table lists the model without a price; the note says why.
    NoPrice(String),
    /// The price is in a currency without an exchange rate.
    NoRate(Currency),
}

impl fmt::Display for Unpriced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unpriced::Unknown => f.write_str("no price is known for this model"),
            Unpriced::NoPrice(note) => write!(f, "the built-in table has no price: {note}"),
            Unpriced::NoRate(c) => write!(
                f,
                "its price is in {c} and server.exchange_rates has no rate for {c}"
            ),
        }
    }
}

/// The price table. Share it through `AppState`.
#[derive(Debug)]
pub struct PriceTable {
    builtin: &'static BuiltinPrices,
    config: HashMap<String, ModelPrice>,
    api: RwLock<HashMap<String, ModelPrice>>,
    /// Bumped by every change made here ([`PriceTable::set_override`],
    /// [`PriceTable::remove_override`]), so a refresh read before the change cannot undo it.
    api_changes: AtomicU64,
    money: Money,
    warned: Mutex<BTreeSet<String>>,
    /// Bumped after every write to `api` (a refresh from the store included): what `memo`
    /// holds is valid for one value of it.
    generation: AtomicU64,
    memo: RwLock<Memo>,
}

/// The answers of [`PriceTable::price_in_account`] so far, by (model, provider, upstream
/// model): resolving a price through the three layers formats a key and searches the tables,
/// about 3,000 instructions, which every request paid twice. Bounded by [`Memo::MAX`] entries
/// of at most [`Memo::MAX_KEY_BYTES`] (past either, answers are computed each time); valid for
/// one generation of the API overrides.
#[derive(Debug, Default)]
struct Memo {
    generation: u64,
    len: usize,
    /// Keyed by `hasher`'s hash, which a seeded fast hasher spreads again (a model name can
    /// come from a client, but the memo is bounded: a bucket of colliding names is at most
    /// [`Memo::MAX`] entries long).
    by_hash: HashMap<u64, Vec<Arc<MemoEntry>>, foldhash::fast::RandomState>,
    hasher: foldhash::fast::RandomState,
}

impl Memo {
    const MAX: usize = 4096;
    const MAX_KEY_BYTES: usize = 768;

    fn hash(&self, model: &str, provider: &str, upstream: &str) -> u64 {
        self.hasher.hash_one((model, provider, upstream))
    }
}

#[derive(Debug)]
struct MemoEntry {
    model: Box<str>,
    provider: Box<str>,
    upstream: Box<str>,
    price: Result<ModelPrice, Unpriced>,
    /// Whether this entry's unpriced model was reported (see [`PriceTable::cost`]).
    warned: AtomicBool,
}

impl MemoEntry {
    fn is(&self, model: &str, provider: &str, upstream: &str) -> bool {
        &*self.model == model && &*self.provider == provider && &*self.upstream == upstream
    }
}

impl PriceTable {
    /// A table of the built-in prices under `config` overrides (public model or
    /// `provider/upstream_model` → price), accounting in `money`; validated.
    pub fn new(config: HashMap<String, ModelPrice>, money: Money) -> Result<Self, PriceError> {
        if let Some((model, _)) = config.iter().find(|(_, p)| !p.is_valid()) {
            return Err(PriceError::Price {
                model: model.clone(),
            });
        }
        let builtin = builtin_prices::table().map_err(PriceError::Builtin)?;
        Ok(PriceTable {
            builtin,
            config,
            api: RwLock::new(HashMap::new()),
            api_changes: AtomicU64::new(0),
            money,
            warned: Mutex::new(BTreeSet::new()),
            generation: AtomicU64::new(0),
            memo: RwLock::new(Memo::default()),
        })
    }

    /// The accounting currency and rates.
    pub fn money(&self) -> &Money {
        &self.money
    }

    /// The price of a request for the public `model`, served by `provider` as
    /// `upstream_model`, with its layer (see the module docs for the order).
    pub fn matched(&self, model: &str, provider: &str, upstream_model: &str) -> Option<Matched> {
        self.resolve(model, provider, upstream_model).ok()
    }

    fn resolve(&self, model: &str, provider: &str, upstream: &str) -> Result<Matched, Unpriced> {
        let qualified = format!("{provider}/{upstream}");
        let found = |map: &HashMap<String, ModelPrice>, source| {
            [model, qualified.as_str()].into_iter().find_map(|k| {
                map.get(k).map(|p| Matched {
                    price: with_currency(*p, self.money.currency),
                    source,
                    key: k.to_owned(),
                })
            })
        };
        let api = self.api.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(m) = found(&api, PriceSource::Api) {
            return Ok(m);
        }
        drop(api);
        if let Some(m) = found(&self.config, PriceSource::Config) {
            return Ok(m);
        }
        match self.builtin.find(provider, upstream) {
            Some((key, row)) => match row.price() {
                Some(price) => Ok(Matched {
                    price,
                    source: PriceSource::Builtin,
                    key,
                }),
                None => Err(Unpriced::NoPrice(row.note.clone().unwrap_or_default())),
            },
            None => Err(Unpriced::Unknown),
        }
    }

    /// The price in the accounting currency, or why there is none.
    pub fn price_in_account(
        &self,
        model: &str,
        provider: &str,
        upstream_model: &str,
    ) -> Result<ModelPrice, Unpriced> {
        self.memoized(model, provider, upstream_model).price.clone()
    }

    /// The memo's entry for the request, computed and kept when missing.
    fn memoized(&self, model: &str, provider: &str, upstream: &str) -> Arc<MemoEntry> {
        let generation = self.generation.load(Ordering::Acquire);
        let hash = {
            let memo = self.memo.read().unwrap_or_else(PoisonError::into_inner);
            let hash = memo.hash(model, provider, upstream);
            if memo.generation == generation {
                if let Some(e) = memo
                    .by_hash
                    .get(&hash)
                    .and_then(|v| v.iter().find(|e| e.is(model, provider, upstream)))
                {
                    return e.clone();
                }
            }
            hash
        };
        let entry = Arc::new(MemoEntry {
            model: model.into(),
            provider: provider.into(),
            upstream: upstream.into(),
            price: self.compute_in_account(model, provider, upstream),
            warned: AtomicBool::new(false),
        });
        let mut memo = self.memo.write().unwrap_or_else(PoisonError::into_inner);
        if memo.generation > generation {
            // Another request already keeps answers of a later generation.
            return entry;
        }
        if memo.generation < generation {
            memo.by_hash.clear();
            memo.len = 0;
            memo.generation = generation;
        }
        // A passthrough channel's model names come from clients: a long one is not kept.
        let room = memo.len < Memo::MAX
            && model.len() + provider.len() + upstream.len() <= Memo::MAX_KEY_BYTES;
        let bucket = memo.by_hash.entry(hash).or_default();
        if let Some(e) = bucket.iter().find(|e| e.is(model, provider, upstream)) {
            return e.clone();
        }
        if room {
            bucket.push(entry.clone());
            memo.len += 1;
        }
        entry
    }

    /// [`PriceTable::price_in_account`] without the memo.
    fn compute_in_account(
        &self,
        model: &str,
        provider: &str,
        upstream_model: &str,
    ) -> Result<ModelPrice, Unpriced> {
        let m = self.resolve(model, provider, upstream_model)?;
        let currency = m.price.currency.unwrap_or(self.money.currency);
        self.money
            .convert(m.price)
            .ok_or(Unpriced::NoRate(currency))
    }

    /// The cost of `tokens` in the accounting currency (0 when unpriced, without a warning).
    pub fn estimate(&self, model: &str, provider: &str, upstream_model: &str, t: Tokens) -> f64 {
        self.price_in_account(model, provider, upstream_model)
            .map_or(0.0, |p| p.cost(t))
    }

    /// The highest per-token price of a request in the accounting currency (0 when unpriced):
    /// what a cost budget reserves per estimated token.
    pub fn max_per_token(&self, model: &str, provider: &str, upstream_model: &str) -> f64 {
        self.price_in_account(model, provider, upstream_model)
            .map_or(0.0, |p| p.max_per_token())
    }

    /// The cost of a usage record in the accounting currency. An unpriced model costs 0 and
    /// is logged once per `provider/upstream_model` for the life of the process.
    pub fn cost(&self, rec: &UsageRecord) -> f64 {
        let tokens = Tokens {
            input: rec.input_tokens,
            output: rec.output_tokens,
            cached: rec.cached_tokens,
            reasoning: rec.reasoning_tokens,
        };
        let entry = self.memoized(&rec.model, &rec.provider, &rec.upstream_model);
        match &entry.price {
            Ok(p) => p.cost(tokens),
            Err(why) => {
                if !entry.warned.swap(true, Ordering::Relaxed) {
                    self.warn_unpriced(rec, why);
                }
                0.0
            }
        }
    }

    /// Why the public `model` (served by `provider` as `upstream_model`) has no usable price,
    /// or `None` when it has one.
    pub fn unpriced(&self, model: &str, provider: &str, upstream_model: &str) -> Option<Unpriced> {
        self.price_in_account(model, provider, upstream_model).err()
    }

    /// `provider/upstream_model` of every request costed at 0 for want of a price so far.
    pub fn unpriced_seen(&self) -> Vec<String> {
        self.warned
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }

    fn warn_unpriced(&self, rec: &UsageRecord, why: &Unpriced) {
        let key = format!("{}/{}", rec.provider, rec.upstream_model);
        let first = self
            .warned
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key);
        if first {
            tracing::warn!(
                model = %rec.model,
                provider = %rec.provider,
                upstream_model = %rec.upstream_model,
                reason = %why,
                "This model has no usable price: its requests are recorded at cost 0 \
                 (logged once per model; see GET /admin/prices and docs/prices.md)."
            );
        }
    }

    /// Replaces every API override (as read from the store).
    pub fn load_overrides(&self, overrides: HashMap<String, ModelPrice>) {
        let mut api = self.api.write().unwrap_or_else(PoisonError::into_inner);
        *api = overrides;
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// A marker of the local changes so far, to take before reading the store for
    /// [`PriceTable::refresh_overrides`].
    pub fn changes(&self) -> u64 {
        self.api_changes.load(Ordering::Acquire)
    }

    /// Replaces every API override with `overrides`, read from the store after
    /// [`PriceTable::changes`] answered `since`, unless an override was set or removed here
    /// meanwhile (the read may predate it; the next refresh brings both). `true` when applied.
    pub fn refresh_overrides(&self, since: u64, overrides: HashMap<String, ModelPrice>) -> bool {
        let mut api = self.api.write().unwrap_or_else(PoisonError::into_inner);
        if self.api_changes.load(Ordering::Acquire) != since {
            return false;
        }
        *api = overrides;
        self.generation.fetch_add(1, Ordering::AcqRel);
        true
    }

    /// Sets one API override.
    pub fn set_override(&self, model: &str, price: ModelPrice) {
        let mut api = self.api.write().unwrap_or_else(PoisonError::into_inner);
        api.insert(model.to_owned(), price);
        self.api_changes.fetch_add(1, Ordering::AcqRel);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Removes one API override; `true` when it existed.
    pub fn remove_override(&self, model: &str) -> bool {
        let mut api = self.api.write().unwrap_or_else(PoisonError::into_inner);
        self.api_changes.fetch_add(1, Ordering::AcqRel);
        self.generation.fetch_add(1, Ordering::AcqRel);
        api.remove(model).is_some()
    }

    /// The effective table, one entry per key, the highest layer winning: API overrides, then
    /// configured prices, then the built-in rows (as `provider/model`), sorted by key.
    pub fn entries(&self) -> Vec<PriceEntry> {
        let mut out: BTreeMap<String, PriceEntry> = BTreeMap::new();
        for (key, row) in self.builtin.keyed() {
            out.insert(
                key.clone(),
                PriceEntry {
                    model: key,
                    source: PriceSource::Builtin,
                    price: row.price(),
                    in_account: row.price().and_then(|p| self.money.convert(p)),
                    source_url: Some(row.source.clone()),
                    read: Some(row.read.clone()),
                    note: row.note.clone(),
                },
            );
        }
        let layer =
            |out: &mut BTreeMap<String, PriceEntry>, map: &HashMap<String, ModelPrice>, source| {
                for (key, p) in map {
                    let price = with_currency(*p, self.money.currency);
                    out.insert(
                        key.clone(),
                        PriceEntry {
                            model: key.clone(),
                            source,
                            price: Some(price),
                            in_account: self.money.convert(price),
                            source_url: None,
                            read: None,
                            note: None,
                        },
                    );
                }
            };
        layer(&mut out, &self.config, PriceSource::Config);
        let api = self
            .api
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        layer(&mut out, &api, PriceSource::Api);
        out.into_values().collect()
    }
}

fn with_currency(mut p: ModelPrice, default: Currency) -> ModelPrice {
    p.currency = Some(p.currency.unwrap_or(default));
    p
}

/// One entry of `GET /admin/prices`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct PriceEntry {
    /// The key: a public model name, `provider/upstream_model`, or `provider/*` (every model of
    /// a self-hosted provider).
    pub model: String,
    /// The layer the price comes from.
    pub source: PriceSource,
    /// The price as written, in its vendor's currency; absent for a built-in row whose price
    /// could not be confirmed (see `note`).
    pub price: Option<ModelPrice>,
    /// The same price in the accounting currency; absent when unpriced or when its currency has
    /// no exchange rate.
    pub in_account: Option<ModelPrice>,
    /// Built-in rows: the vendor page the price was read from.
    pub source_url: Option<String>,
    /// Built-in rows: the day it was read (`YYYY-MM-DD`).
    pub read: Option<String>,
    /// Built-in rows: tiers, caveats, or why the model is unpriced.
    pub note: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(input: f64, output: f64) -> ModelPrice {
        ModelPrice {
            input_per_mtok: input,
            output_per_mtok: output,
            ..Default::default()
        }
    }

    fn usd() -> Money {
        Money::new(
            Currency::USD,
            BTreeMap::from([(Currency::parse("CNY").unwrap(), 0.14)]),
        )
        .unwrap()
    }

    fn table(config: &[(&str, ModelPrice)]) -> PriceTable {
        PriceTable::new(
            config.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
            usd(),
        )
        .unwrap()
    }

    fn rec(model: &str, provider: &str, upstream: &str, t: Tokens) -> UsageRecord {
        UsageRecord {
            model: model.into(),
            provider: provider.into(),
            upstream_model: upstream.into(),
            input_tokens: t.input,
            output_tokens: t.output,
            cached_tokens: t.cached,
            reasoning_tokens: t.reasoning,
            ..Default::default()
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9 * b.abs().max(1.0)
    }

    fn tok(input: u64, output: u64, cached: u64, reasoning: u64) -> Tokens {
        Tokens {
            input,
            output,
            cached,
            reasoning,
        }
    }

    #[test]
    fn cost_prices_fresh_cached_output_and_reasoning_tokens_per_million() {
        let price = ModelPrice {
            input_per_mtok: 0.8,
            output_per_mtok: 2.0,
            cached_input_per_mtok: Some(0.2),
            reasoning_per_mtok: Some(8.0),
            currency: None,
        };
        // 600k fresh × 0.8 + 400k cached × 0.2 + 300k answer × 2 + 200k reasoning × 8
        let c = price.cost(tok(1_000_000, 500_000, 400_000, 200_000));
        assert!(close(c, 0.48 + 0.08 + 0.6 + 1.6), "{c}");
        // Cached beyond input and reasoning beyond output are clamped.
        assert!(close(
            price.cost(tok(100, 100, 1_000, 1_000)),
            100.0 * (0.2 + 8.0) / 1e6
        ));
        // Without the optional prices, cached = input and reasoning = output.
        assert!(close(p(1.0, 4.0).cost(tok(10, 10, 5, 5)), 50.0 / 1e6));
    }

    #[test]
    fn config_overrides_builtin_and_api_overrides_config() {
        let t = table(&[("my-gpt", p(7.0, 7.0))]);
        let tokens = tok(1_000_000, 0, 0, 0);
        // Built-in: OpenAI's gpt-4o-mini, found by provider and upstream model alone.
        let m = t.matched("my-gpt-mini", "openai", "gpt-4o-mini").unwrap();
        assert_eq!(m.source, PriceSource::Builtin);
        assert!(close(
            t.estimate("x", "openai", "gpt-4o-mini", tokens),
            0.15
        ));
        // Config, by public name, over the built-in row of the upstream model.
        let m = t.matched("my-gpt", "openai", "gpt-4o-mini").unwrap();
        assert_eq!((m.source, m.key.as_str()), (PriceSource::Config, "my-gpt"));
        // API over config, by provider/upstream_model.
        t.set_override("openai/gpt-4o-mini", p(9.0, 9.0));
        let m = t.matched("my-gpt", "openai", "gpt-4o-mini").unwrap();
        assert_eq!(
            (m.source, m.key.as_str()),
            (PriceSource::Api, "openai/gpt-4o-mini")
        );
        assert!(close(
            t.estimate("my-gpt", "openai", "gpt-4o-mini", tokens),
            9.0
        ));
        // Removing the override restores the config price.
        assert!(t.remove_override("openai/gpt-4o-mini"));
        assert!(!t.remove_override("openai/gpt-4o-mini"));
        assert!(close(
            t.estimate("my-gpt", "openai", "gpt-4o-mini", tokens),
            7.0
        ));
        // Within a layer the public name comes before provider/upstream_model.
        t.set_override("openai/gpt-4o", p(1.0, 1.0));
        t.set_override("alias", p(2.0, 2.0));
        assert_eq!(t.matched("alias", "openai", "gpt-4o").unwrap().key, "alias");
    }

    #[test]
    fn a_refresh_read_before_a_local_change_does_not_undo_it() {
        let t = table(&[]);
        let before = t.changes();
        t.set_override("m", p(1.0, 1.0));
        // The store was read before the change: its snapshot lacks `m`.
        assert!(!t.refresh_overrides(before, HashMap::new()));
        assert!(t.matched("m", "openai", "m").is_some());
        let now = t.changes();
        assert!(t.refresh_overrides(now, HashMap::from([("n".to_owned(), p(2.0, 2.0))])));
        assert!(t.matched("m", "openai", "m").is_none());
        assert!(t.matched("n", "openai", "n").is_some());
    }

    #[test]
    fn remembered_prices_follow_every_change_of_the_overrides() {
        let t = table(&[]);
        let tokens = tok(1_000_000, 0, 0, 0);
        assert!(close(
            t.estimate("m", "openai", "gpt-4o-mini", tokens),
            0.15
        ));
        // A refresh from the store, a load, a set and a removal each take effect at once.
        let now = t.changes();
        assert!(t.refresh_overrides(now, HashMap::from([("m".to_owned(), p(2.0, 2.0))])));
        assert!(close(t.estimate("m", "openai", "gpt-4o-mini", tokens), 2.0));
        t.load_overrides(HashMap::from([("m".to_owned(), p(3.0, 3.0))]));
        assert!(close(t.estimate("m", "openai", "gpt-4o-mini", tokens), 3.0));
        t.set_override("m", p(4.0, 4.0));
        assert!(close(t.estimate("m", "openai", "gpt-4o-mini", tokens), 4.0));
        assert!(t.remove_override("m"));
        assert!(close(
            t.estimate("m", "openai", "gpt-4o-mini", tokens),
            0.15
        ));
    }

    #[test]
    fn long_model_names_are_priced_without_being_kept() {
        let t = table(&[]);
        let tokens = tok(1_000_000, 0, 0, 0);
        let long = "m".repeat(Memo::MAX_KEY_BYTES);
        assert!(close(
            t.estimate(&long, "openai", "gpt-4o-mini", tokens),
            0.15
        ));
        assert!(close(
            t.estimate("m", "openai", "gpt-4o-mini", tokens),
            0.15
        ));
        assert_eq!(t.memo.read().unwrap().len, 1, "only the short name is kept");
    }

    #[test]
    fn builtin_rows_of_another_provider_do_not_match() {
        let t = table(&[]);
        assert!(t.matched("gpt-4o", "dashscope", "gpt-4o").is_none());
        assert_eq!(
            t.unpriced("gpt-4o", "dashscope", "gpt-4o"),
            Some(Unpriced::Unknown)
        );
        // A wildcard row prices every model of a self-hosted provider, at 0.
        let m = t.matched("anything", "ollama", "some-local-model").unwrap();
        assert_eq!(m.key, "ollama/*");
        assert!(t.unpriced("anything", "ollama", "x").is_none());
    }

    #[test]
    fn vendor_currency_is_converted_into_the_accounting_currency() {
        let t = table(&[]);
        // DeepSeek bills 2 CNY per 1M input tokens; 1 CNY = 0.14 USD.
        let c = t.estimate("d", "deepseek", "deepseek-chat", tok(1_000_000, 0, 0, 0));
        assert!(close(c, 0.28), "{c}");
        // Without a rate the model is unpriced, and says why.
        let no_rates = PriceTable::new(HashMap::new(), Money::default()).unwrap();
        assert_eq!(
            no_rates.unpriced("d", "deepseek", "deepseek-chat"),
            Some(Unpriced::NoRate(Currency::parse("CNY").unwrap()))
        );
        // A free price needs no rate.
        assert!(no_rates.unpriced("g", "zhipu", "glm-4-flash").is_none());
        // A configured price without a currency is in the accounting currency.
        let cny = Money::new(Currency::parse("CNY").unwrap(), BTreeMap::new()).unwrap();
        let t = PriceTable::new(HashMap::from([("m".to_owned(), p(1.0, 1.0))]), cny).unwrap();
        assert!(close(
            t.estimate("m", "openai", "m", tok(1_000_000, 0, 0, 0)),
            1.0
        ));
    }

    #[test]
    fn unpriced_models_cost_zero_and_are_remembered_once() {
        let t = table(&[]);
        let r = rec("mystery", "openai", "m", tok(10, 10, 0, 0));
        assert_eq!(t.cost(&r), 0.0);
        assert_eq!(t.cost(&r), 0.0);
        assert_eq!(t.cost(&rec("other", "openai", "m", tok(1, 1, 0, 0))), 0.0);
        assert_eq!(
            t.cost(&rec("x", "moonshot", "moonshot-v1-8k", tok(1, 1, 0, 0))),
            0.0
        );
        assert_eq!(
            t.unpriced_seen(),
            vec!["moonshot/moonshot-v1-8k", "openai/m"]
        );
        assert!(matches!(
            t.unpriced("x", "moonshot", "moonshot-v1-8k"),
            Some(Unpriced::NoPrice(note)) if note.contains("Unpriced")
        ));
    }

    #[test]
    fn invalid_prices_and_rates_are_rejected() {
        for v in [-1.0, f64::NAN, f64::INFINITY, MAX_PRICE_PER_MTOK * 2.0] {
            let bad = PriceTable::new(HashMap::from([("m".to_owned(), p(v, 0.0))]), usd());
            assert!(matches!(bad, Err(PriceError::Price { .. })), "{v}");
            let bad = ModelPrice {
                reasoning_per_mtok: Some(v),
                ..p(1.0, 1.0)
            };
            assert!(!bad.is_valid());
        }
        for r in [0.0, -1.0, f64::NAN] {
            let c = Currency::parse("EUR").unwrap();
            assert!(Money::new(Currency::USD, BTreeMap::from([(c, r)])).is_err());
        }
    }

    #[test]
    fn prices_deserialize_from_config_and_reject_unknown_fields_and_bad_currencies() {
        let p: ModelPrice = serde_json::from_str(
            r#"{"input_per_mtok":1,"output_per_mtok":2,"reasoning_per_mtok":3,"currency":"CNY"}"#,
        )
        .unwrap();
        assert_eq!(p.cached_input_per_mtok, None);
        assert_eq!(p.currency.map(|c| c.to_string()).as_deref(), Some("CNY"));
        for bad in [
            r#"{"input_per_mtok":1,"output_per_mtok":2,"typo":3}"#,
            r#"{"input_per_mtok":1,"output_per_mtok":2,"currency":"usd"}"#,
            r#"{"input_per_mtok":1,"output_per_mtok":2,"currency":"DOLLAR"}"#,
        ] {
            assert!(serde_json::from_str::<ModelPrice>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn entries_show_the_winning_layer_per_key() {
        let t = table(&[("openai/gpt-4o", p(1.0, 1.0))]);
        t.set_override("qwen-plus", p(3.0, 3.0));
        let entries = t.entries();
        let by = |k: &str| entries.iter().find(|e| e.model == k).unwrap();
        assert_eq!(by("openai/gpt-4o").source, PriceSource::Config);
        assert_eq!(by("qwen-plus").source, PriceSource::Api);
        let mini = by("openai/gpt-4o-mini");
        assert_eq!(mini.source, PriceSource::Builtin);
        assert!(mini.source_url.as_deref().unwrap().starts_with("https://"));
        let ds = by("deepseek/deepseek-chat");
        assert!(close(ds.in_account.unwrap().input_per_mtok, 0.28));
        assert!(by("moonshot/moonshot-v1-8k").price.is_none());
    }
}
