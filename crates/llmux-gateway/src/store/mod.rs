//! Storage for the gateway: virtual keys, raw usage records, daily rollups and retention,
//! behind one [`Store`] trait with a SQLite and a PostgreSQL backend.
//!
//! [`open`] picks the backend from the URL and runs the embedded migrations:
//!
//! | URL | Backend |
//! |-----|---------|
//! | `sqlite://PATH` (or `sqlite:PATH`) | SQLite file, created if missing, WAL journal, 5 s busy timeout |
//! | `sqlite::memory:` | SQLite in memory, one connection (gone when the store is dropped) |
//! | `postgres://USER[:PASS]@HOST[:PORT]/DB[?schema=NAME]` | PostgreSQL; `schema=NAME` (lowercase letters, digits, `_`) creates the schema if needed and puts every table in it, so tests and tenants can share a database |
//!
//! Both backends run the same SQL (numbered `$n` parameters, `ON CONFLICT`, `RETURNING`),
//! written once in this module and instantiated per backend.
//!
//! Accounting invariants, tested against both backends:
//! - a usage batch is one transaction: raw rows, rollups and the key's spent counters move
//!   together or not at all;
//! - raw rows are idempotent on `request_id`, so a replayed batch never counts twice;
//! - [`Store::usage`] reads the daily rollups, which [`Store::prune`] never touches.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::keys::RngError;

mod postgres;
mod sqlite;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// Result alias of the storage layer.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A virtual key as stored (never the plaintext key; only its hash is kept, and is not exposed).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct KeyRecord {
    /// Row id (≥ 1).
    pub id: i64,
    /// Human-readable name.
    pub name: String,
    /// First 12 characters of the key (`sk-llmux-` + 3), for display.
    pub prefix: String,
    /// Creation time, unix seconds.
    pub created_at: i64,
    /// Expiry, unix seconds; `None` = never.
    pub expires_at: Option<i64>,
    /// Revoked keys are rejected.
    pub revoked: bool,
    /// Public model names this key may use; empty = all.
    pub models: Vec<String>,
    /// Requests per minute; `None` = unlimited.
    pub rpm: Option<u32>,
    /// Tokens (input + output) per minute; `None` = unlimited.
    pub tpm: Option<u64>,
    /// Lifetime token budget (input + output); `None` = unlimited.
    pub budget_tokens: Option<u64>,
    /// Lifetime cost budget, in the price table's currency; `None` = unlimited.
    pub budget_cost: Option<f64>,
    /// Tokens (input + output) recorded so far.
    pub spent_tokens: u64,
    /// Cost recorded so far.
    pub spent_cost: f64,
}

impl KeyRecord {
    /// True when the key is neither revoked nor expired at `now` (unix seconds).
    pub fn is_active(&self, now: i64) -> bool {
        !self.revoked && self.expires_at.is_none_or(|e| now < e)
    }

    /// True when the key may call the public model `model`.
    pub fn allows_model(&self, model: &str) -> bool {
        self.models.is_empty() || self.models.iter().any(|m| m == model)
    }
}

/// What to create a key with; absent fields take their defaults (no name, every model, no
/// limits).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct NewKey {
    /// Human-readable name.
    pub name: String,
    /// Expiry, unix seconds; `None` = never.
    pub expires_at: Option<i64>,
    /// Allowed public model names; empty = all.
    pub models: Vec<String>,
    /// Requests per minute.
    pub rpm: Option<u32>,
    /// Tokens per minute.
    pub tpm: Option<u64>,
    /// Lifetime token budget.
    pub budget_tokens: Option<u64>,
    /// Lifetime cost budget.
    pub budget_cost: Option<f64>,
}

/// One finished (or abandoned) request, as billed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UsageRecord {
    /// Unique per request; the idempotency key of the record.
    pub request_id: String,
    /// When the request started, unix milliseconds (decides the rollup day, UTC).
    pub at_ms: i64,
    /// The virtual key, if the request had one.
    pub key_id: Option<i64>,
    /// The upstream channel that served (or last failed) the request, by its configured name.
    pub channel: String,
    /// Provider id that served the request.
    pub provider: String,
    /// Public model name the client asked for.
    pub model: String,
    /// Model name sent upstream.
    pub upstream_model: String,
    /// Prompt tokens (including cached ones).
    pub input_tokens: u64,
    /// Generated tokens (including reasoning ones).
    pub output_tokens: u64,
    /// Prompt tokens served from the vendor's cache.
    pub cached_tokens: u64,
    /// Reasoning tokens within `output_tokens`.
    pub reasoning_tokens: u64,
    /// Cost from the price table.
    pub cost: f64,
    /// Total latency.
    pub latency_ms: u64,
    /// Time to first token, for streams.
    pub ttft_ms: Option<u64>,
    /// HTTP status returned to the client.
    pub status: u16,
    /// `ErrorKind` name when the request failed.
    pub error_kind: Option<String>,
    /// The client went away before the end.
    pub cancelled: bool,
    /// A streaming request.
    pub stream: bool,
    /// Token counts are estimates (the upstream reported none).
    pub usage_estimated: bool,
}

impl UsageRecord {
    /// Tokens charged against a key's token budget and TPM: input + output.
    pub fn billed_tokens(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }
}

/// Which raw records [`Store::records`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordQuery {
    /// Only this key's records.
    pub key_id: Option<i64>,
    /// At most this many (newest first); 0 means [`RecordQuery::DEFAULT_LIMIT`].
    pub limit: u32,
}

impl RecordQuery {
    /// Records returned when no limit is given.
    pub const DEFAULT_LIMIT: u32 = 100;
    /// The most records one query returns.
    pub const MAX_LIMIT: u32 = 10_000;

    /// The limit actually applied.
    pub fn effective_limit(&self) -> u32 {
        match self.limit {
            0 => Self::DEFAULT_LIMIT,
            n => n.min(Self::MAX_LIMIT),
        }
    }
}

/// How [`Store::usage`] groups rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    /// By key id, in decimal (`"none"` for requests made without a key).
    Key,
    /// By public model name.
    Model,
    /// By UTC day, `YYYY-MM-DD`.
    Day,
}

/// One group of a usage report, sorted by `group`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UsageRow {
    /// The group value: a key id in decimal (`none` for requests without a key), a public
    /// model name, or a UTC day (`YYYY-MM-DD`).
    pub group: String,
    /// Number of requests.
    pub requests: u64,
    /// Sum of input tokens.
    pub input_tokens: u64,
    /// Sum of output tokens.
    pub output_tokens: u64,
    /// Sum of cost.
    pub cost: f64,
}

/// A storage failure. Messages never contain keys or database passwords.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The URL names no supported backend.
    #[error(
        "unsupported store URL: expected `sqlite://PATH`, `sqlite::memory:` or `postgres://…`"
    )]
    UnsupportedUrl,
    /// The URL could not be parsed.
    #[error("invalid store URL: {0}")]
    InvalidUrl(String),
    /// The database could not be reached or refused the connection.
    #[error("could not connect to the {backend} database: {message}")]
    Connect {
        /// `sqlite` or `postgres`.
        backend: &'static str,
        /// What the driver said (password redacted).
        message: String,
    },
    /// A migration failed.
    #[error("database migration failed: {0}")]
    Migrate(String),
    /// A query failed.
    #[error("database error while trying to {op}: {message}")]
    Query {
        /// What the store was doing.
        op: &'static str,
        /// What the driver said.
        message: String,
    },
    /// A stored value could not be encoded or decoded.
    #[error("could not encode or decode a stored value: {0}")]
    Data(String),
    /// Key generation failed.
    #[error(transparent)]
    Rng(#[from] RngError),
}

impl StoreError {
    pub(crate) fn query(op: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
        move |e| StoreError::Query {
            op,
            message: e.to_string(),
        }
    }
}

/// Changes to a key ([`Store::update_key`]); `None` leaves a field as it is. For the limits and
/// the expiry, `Some(None)` removes the limit (JSON `null`), `Some(Some(v))` sets it; absent
/// JSON fields are left alone. `models: []` allows every model.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(
    description = "Changes to a key: absent fields stay as they are, `null` removes a limit \
    or the expiry, `models: []` allows every model. At least one field."
)]
pub struct KeyUpdate {
    /// New name.
    #[serde(default)]
    pub name: Option<String>,
    /// New expiry (unix seconds), or none.
    #[serde(default, deserialize_with = "set_or_clear")]
    pub expires_at: Option<Option<i64>>,
    /// New model allow-list (empty = all).
    #[serde(default)]
    pub models: Option<Vec<String>>,
    /// New requests per minute, or none.
    #[serde(default, deserialize_with = "set_or_clear")]
    pub rpm: Option<Option<u32>>,
    /// New tokens per minute, or none.
    #[serde(default, deserialize_with = "set_or_clear")]
    pub tpm: Option<Option<u64>>,
    /// New lifetime token budget, or none.
    #[serde(default, deserialize_with = "set_or_clear")]
    pub budget_tokens: Option<Option<u64>>,
    /// New lifetime cost budget, or none.
    #[serde(default, deserialize_with = "set_or_clear")]
    pub budget_cost: Option<Option<f64>>,
}

impl KeyUpdate {
    /// True when it changes nothing.
    pub fn is_empty(&self) -> bool {
        *self == KeyUpdate::default()
    }

    /// Why this update cannot be applied, if it cannot: it changes nothing, or a field breaks
    /// its rule ([`KeyProblem`]). `now` is unix seconds (an expiry must lie after it).
    pub fn check(&self, now: i64) -> std::result::Result<(), KeyProblem> {
        if self.is_empty() {
            return Err(KeyProblem::new("", "nothing to change"));
        }
        check_fields(
            KeyFields {
                name: self.name.as_deref(),
                expires_at: self.expires_at.flatten(),
                models: self.models.as_deref(),
                rpm: self.rpm.flatten(),
                tpm: self.tpm.flatten(),
                budget_tokens: self.budget_tokens.flatten(),
                budget_cost: self.budget_cost.flatten(),
            },
            now,
        )
    }
}

impl NewKey {
    /// Why this key cannot be created, if it cannot ([`KeyProblem`]); `now` is unix seconds.
    pub fn check(&self, now: i64) -> std::result::Result<(), KeyProblem> {
        check_fields(
            KeyFields {
                name: Some(&self.name),
                expires_at: self.expires_at,
                models: Some(&self.models),
                rpm: self.rpm,
                tpm: self.tpm,
                budget_tokens: self.budget_tokens,
                budget_cost: self.budget_cost,
            },
            now,
        )
    }
}

/// A field of a key that breaks its rule: `field` names it as in the JSON body (empty when the
/// problem is the request as a whole), `rule` says what it must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyProblem {
    /// The JSON field name.
    pub field: &'static str,
    /// The rule it breaks, as a sentence fragment.
    pub rule: String,
}

impl KeyProblem {
    fn new(field: &'static str, rule: impl Into<String>) -> Self {
        KeyProblem {
            field,
            rule: rule.into(),
        }
    }
}

impl std::fmt::Display for KeyProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.rule)
        } else {
            write!(f, "`{}` {}", self.field, self.rule)
        }
    }
}

/// The longest key name, in characters.
pub const MAX_KEY_NAME_CHARS: usize = 200;
/// The most models one key may list.
pub const MAX_KEY_MODELS: usize = 1_000;
/// The longest model name a key may list, in bytes.
pub const MAX_MODEL_NAME_BYTES: usize = 256;
/// The largest token count a limit or budget may hold (the stores keep signed 64-bit integers).
pub const MAX_TOKEN_LIMIT: u64 = i64::MAX as u64;

/// The fields of a new key or of an update (absent ones are `None`).
struct KeyFields<'a> {
    name: Option<&'a str>,
    expires_at: Option<i64>,
    models: Option<&'a [String]>,
    rpm: Option<u32>,
    tpm: Option<u64>,
    budget_tokens: Option<u64>,
    budget_cost: Option<f64>,
}

/// The rules every key obeys, for creation and update alike.
fn check_fields(k: KeyFields<'_>, now: i64) -> std::result::Result<(), KeyProblem> {
    if let Some(name) = k.name {
        if name.trim().is_empty() {
            return Err(KeyProblem::new("name", "cannot be empty"));
        }
        if name.chars().count() > MAX_KEY_NAME_CHARS {
            return Err(KeyProblem::new(
                "name",
                format!("must be at most {MAX_KEY_NAME_CHARS} characters"),
            ));
        }
        if name.chars().any(char::is_control) {
            return Err(KeyProblem::new("name", "cannot contain control characters"));
        }
    }
    if let Some(at) = k.expires_at {
        if at <= now {
            return Err(KeyProblem::new(
                "expires_at",
                format!("must lie in the future (after unix second {now})"),
            ));
        }
    }
    if let Some(models) = k.models {
        if models.len() > MAX_KEY_MODELS {
            return Err(KeyProblem::new(
                "models",
                format!("may list at most {MAX_KEY_MODELS} models"),
            ));
        }
        if models
            .iter()
            .any(|m| m.trim().is_empty() || m.len() > MAX_MODEL_NAME_BYTES)
        {
            return Err(KeyProblem::new(
                "models",
                format!(
                    "entries must be non-empty model names of at most {MAX_MODEL_NAME_BYTES} bytes"
                ),
            ));
        }
    }
    if k.rpm == Some(0) {
        return Err(KeyProblem::new(
            "rpm",
            "must be at least 1 (remove the limit for none, or revoke the key to stop it)",
        ));
    }
    if k.tpm == Some(0) {
        return Err(KeyProblem::new(
            "tpm",
            "must be at least 1 (remove the limit for none, or revoke the key to stop it)",
        ));
    }
    for (field, v) in [("tpm", k.tpm), ("budget_tokens", k.budget_tokens)] {
        if v.is_some_and(|v| v > MAX_TOKEN_LIMIT) {
            return Err(KeyProblem::new(
                field,
                format!("must be at most {MAX_TOKEN_LIMIT}"),
            ));
        }
    }
    if let Some(c) = k.budget_cost {
        if !c.is_finite() || c < 0.0 {
            return Err(KeyProblem::new(
                "budget_cost",
                "must be a finite number of at least 0",
            ));
        }
    }
    Ok(())
}

/// A present JSON field (`null` included) is `Some`; an absent one stays `None` by `default`.
fn set_or_clear<'de, D, T>(d: D) -> std::result::Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// The gateway's storage. Every method is one round trip or one transaction.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Creates a key and returns it with its plaintext (`sk-llmux-…`), which is not stored
    /// and cannot be recovered.
    async fn create_key(&self, new: NewKey) -> Result<(KeyRecord, String)>;
    /// Finds a key by its plaintext (hashed, then looked up by hash). Revoked and expired keys
    /// are returned too: check [`KeyRecord::is_active`].
    async fn find_key(&self, plaintext: &str) -> Result<Option<KeyRecord>>;
    /// All keys, by id.
    async fn list_keys(&self) -> Result<Vec<KeyRecord>>;
    /// Revokes a key; `false` when no key has this id.
    async fn revoke_key(&self, id: i64) -> Result<bool>;
    /// Changes a key's name, expiry, models or limits in one statement (spend and revocation
    /// stay); the record as updated, `None` when no key has this id.
    async fn update_key(&self, id: i64, update: KeyUpdate) -> Result<Option<KeyRecord>>;
    /// Records a batch in one transaction: inserts raw rows (a `request_id` already stored is
    /// skipped, so a replayed batch never double-counts), upserts the daily rollups per
    /// (day, key, model) and adds tokens and cost to the keys' spent counters.
    async fn record_usage(&self, batch: &[UsageRecord]) -> Result<()>;
    /// Usage grouped by key, model or day, from the rollups; `since_day` (`YYYY-MM-DD`,
    /// inclusive) filters by UTC day.
    async fn usage(&self, by: GroupBy, since_day: Option<&str>) -> Result<Vec<UsageRow>>;
    /// Number of raw usage records.
    async fn usage_count(&self) -> Result<u64>;
    /// Raw usage records, newest first (ties by request id), as written.
    async fn records(&self, query: RecordQuery) -> Result<Vec<UsageRecord>>;
    /// Deletes raw records older than `older_than_ms` (unix ms); rollups and key counters stay.
    /// Returns the number of rows deleted.
    async fn prune(&self, older_than_ms: i64) -> Result<u64>;
}

/// Opens the store named by `url` (see the module docs) and runs its migrations.
pub async fn open(url: &str) -> Result<Arc<dyn Store>> {
    if url == "sqlite::memory:" {
        Ok(Arc::new(SqliteStore::open_memory().await?))
    } else if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::open(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PgStore::open(url).await?))
    } else {
        Err(StoreError::UnsupportedUrl)
    }
}

/// Current unix time in seconds.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The UTC day (`YYYY-MM-DD`) of a unix-milliseconds timestamp.
pub fn utc_day(at_ms: i64) -> String {
    // Howard Hinnant's civil_from_days.
    let z = at_ms.div_euclid(86_400_000) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Unix seconds of 00:00 UTC on the day `YYYY-MM-DD` (years 1970 to 9999), or `None` when `s`
/// is not such a day (`2026-02-30` is not).
pub fn parse_day(s: &str) -> Option<i64> {
    let s = s.trim();
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let yy = if m <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let secs = (era * 146_097 + doe - 719_468) * 86_400;
    // A day past the month's end rolls over into the next month: refuse it.
    (utc_day(secs * 1000) == s).then_some(secs)
}

/// Saturating u64 → i64 for storage.
pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Clamping i64 → u64 when reading (negative values never occur; they read as 0).
pub(crate) fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// Sums of one rollup row or one key's spend, accumulated in memory before the upserts.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Agg {
    pub requests: i64,
    pub errors: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cached_tokens: i64,
    pub reasoning_tokens: i64,
    pub cost: f64,
}

impl Agg {
    fn add(&mut self, r: &UsageRecord) {
        self.requests += 1;
        if r.status >= 400 || r.error_kind.is_some() {
            self.errors += 1;
        }
        self.input_tokens = self.input_tokens.saturating_add(to_i64(r.input_tokens));
        self.output_tokens = self.output_tokens.saturating_add(to_i64(r.output_tokens));
        self.cached_tokens = self.cached_tokens.saturating_add(to_i64(r.cached_tokens));
        self.reasoning_tokens = self
            .reasoning_tokens
            .saturating_add(to_i64(r.reasoning_tokens));
        self.cost += r.cost;
    }
}

/// Rollup deltas by (day, key id or 0, model) and spend deltas by key id, in sorted order so
/// concurrent transactions lock rows in the same order (no deadlocks on PostgreSQL).
pub(crate) type Deltas = (
    BTreeMap<(String, i64, String), Agg>,
    BTreeMap<i64, (i64, f64)>,
);

/// Aggregates the records that were actually inserted.
pub(crate) fn deltas<'a>(inserted: impl Iterator<Item = &'a UsageRecord>) -> Deltas {
    let mut daily: BTreeMap<(String, i64, String), Agg> = BTreeMap::new();
    let mut spend: BTreeMap<i64, (i64, f64)> = BTreeMap::new();
    for r in inserted {
        let key = r.key_id.unwrap_or(0);
        daily
            .entry((utc_day(r.at_ms), key, r.model.clone()))
            .or_default()
            .add(r);
        if let Some(id) = r.key_id {
            let s = spend.entry(id).or_default();
            s.0 = s.0.saturating_add(to_i64(r.billed_tokens()));
            s.1 += r.cost;
        }
    }
    (daily, spend)
}

/// The batch without duplicate request ids (first occurrence wins), sorted by request id so
/// concurrent inserts take unique-index locks in the same order.
pub(crate) fn dedup_sorted(batch: &[UsageRecord]) -> Vec<&UsageRecord> {
    let mut v: Vec<&UsageRecord> = batch.iter().collect();
    v.sort_by(|a, b| a.request_id.cmp(&b.request_id));
    v.dedup_by(|a, b| a.request_id == b.request_id);
    v
}

/// Rows per multi-row INSERT (20 parameters each; well under both backends' limits).
pub(crate) const INSERT_CHUNK: usize = 200;

/// Embedded migrations, fed to sqlx's migrator (no files are read at run time).
#[derive(Debug)]
pub(crate) struct Embedded(pub &'static [(i64, &'static str, &'static str)]);

impl<'s> sqlx::migrate::MigrationSource<'s> for Embedded {
    fn resolve(
        self,
    ) -> futures_core_box::BoxFuture<
        's,
        std::result::Result<Vec<sqlx::migrate::Migration>, sqlx::error::BoxDynError>,
    > {
        Box::pin(async move {
            Ok(self
                .0
                .iter()
                .map(|(version, desc, sql)| {
                    sqlx::migrate::Migration::new(
                        *version,
                        std::borrow::Cow::Borrowed(*desc),
                        sqlx::migrate::MigrationType::Simple,
                        std::borrow::Cow::Borrowed(*sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

mod futures_core_box {
    //! The boxed-future type sqlx's `MigrationSource` expects.
    pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
}

/// Runs the embedded migrations on a pool.
pub(crate) async fn migrate<DB>(
    pool: &sqlx::Pool<DB>,
    migrations: &'static [(i64, &'static str, &'static str)],
) -> Result<()>
where
    DB: sqlx::Database,
    DB::Connection: sqlx::migrate::Migrate,
{
    let migrator = sqlx::migrate::Migrator::new(Embedded(migrations))
        .await
        .map_err(|e| StoreError::Migrate(e.to_string()))?;
    migrator
        .run(pool)
        .await
        .map_err(|e| StoreError::Migrate(e.to_string()))
}

/// Column list of `gw_keys` as read into a [`KeyRecord`].
pub(crate) const KEY_COLUMNS: &str = "id, name, prefix, created_at, expires_at, revoked, models, \
     rpm, tpm, budget_tokens, budget_cost, spent_tokens, spent_cost";

/// Implements [`Store`] for a backend struct with a `pool: sqlx::Pool<$db>` field and two
/// inherent methods: `write_lock()` (serializes writers where the backend needs it) and
/// `begin_write()` (opens a write transaction). The SQL is shared by both backends.
macro_rules! sql_store_impl {
    ($ty:ty, $db:ty) => {
        fn key_from_row(row: &<$db as sqlx::Database>::Row) -> $crate::store::Result<$crate::store::KeyRecord> {
            use sqlx::Row as _;
            use $crate::store::{to_u64, StoreError};
            let g = |e: sqlx::Error| StoreError::Data(e.to_string());
            let models: String = row.try_get("models").map_err(g)?;
            let models: Vec<String> =
                serde_json::from_str(&models).map_err(|e| StoreError::Data(e.to_string()))?;
            let rpm: Option<i64> = row.try_get("rpm").map_err(g)?;
            let tpm: Option<i64> = row.try_get("tpm").map_err(g)?;
            let budget_tokens: Option<i64> = row.try_get("budget_tokens").map_err(g)?;
            Ok($crate::store::KeyRecord {
                id: row.try_get("id").map_err(g)?,
                name: row.try_get("name").map_err(g)?,
                prefix: row.try_get("prefix").map_err(g)?,
                created_at: row.try_get("created_at").map_err(g)?,
                expires_at: row.try_get("expires_at").map_err(g)?,
                revoked: row.try_get("revoked").map_err(g)?,
                models,
                rpm: rpm.map(|v| u32::try_from(v).unwrap_or(u32::MAX)),
                tpm: tpm.map(to_u64),
                budget_tokens: budget_tokens.map(to_u64),
                budget_cost: row.try_get("budget_cost").map_err(g)?,
                spent_tokens: to_u64(row.try_get("spent_tokens").map_err(g)?),
                spent_cost: row.try_get("spent_cost").map_err(g)?,
            })
        }

        #[async_trait::async_trait]
        impl $crate::store::Store for $ty {
            async fn create_key(
                &self,
                new: $crate::store::NewKey,
            ) -> $crate::store::Result<($crate::store::KeyRecord, String)> {
                use $crate::store::{to_i64, unix_now, StoreError, KEY_COLUMNS};
                let plaintext = $crate::keys::generate()?;
                let models = serde_json::to_string(&new.models)
                    .map_err(|e| StoreError::Data(e.to_string()))?;
                let sql = format!(
                    "INSERT INTO gw_keys (name, key_hash, prefix, created_at, expires_at, models, \
                     rpm, tpm, budget_tokens, budget_cost) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING {KEY_COLUMNS}"
                );
                let _w = self.write_lock().await;
                let row = sqlx::query(&sql)
                    .bind(new.name)
                    .bind($crate::keys::hash(&plaintext))
                    .bind($crate::keys::display_prefix(&plaintext))
                    .bind(unix_now())
                    .bind(new.expires_at)
                    .bind(models)
                    .bind(new.rpm.map(i64::from))
                    .bind(new.tpm.map(to_i64))
                    .bind(new.budget_tokens.map(to_i64))
                    .bind(new.budget_cost)
                    .fetch_one(&self.pool)
                    .await
                    .map_err(StoreError::query("create a key"))?;
                Ok((key_from_row(&row)?, plaintext))
            }

            async fn find_key(
                &self,
                plaintext: &str,
            ) -> $crate::store::Result<Option<$crate::store::KeyRecord>> {
                use $crate::store::{StoreError, KEY_COLUMNS};
                if !$crate::keys::looks_like_key(plaintext) {
                    return Ok(None);
                }
                let sql = format!("SELECT {KEY_COLUMNS} FROM gw_keys WHERE key_hash = $1");
                let row = sqlx::query(&sql)
                    .bind($crate::keys::hash(plaintext))
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(StoreError::query("look up a key"))?;
                row.as_ref().map(key_from_row).transpose()
            }

            async fn list_keys(&self) -> $crate::store::Result<Vec<$crate::store::KeyRecord>> {
                use $crate::store::{StoreError, KEY_COLUMNS};
                let sql = format!("SELECT {KEY_COLUMNS} FROM gw_keys ORDER BY id");
                let rows = sqlx::query(&sql)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(StoreError::query("list keys"))?;
                rows.iter().map(key_from_row).collect()
            }

            async fn revoke_key(&self, id: i64) -> $crate::store::Result<bool> {
                let _w = self.write_lock().await;
                let res = sqlx::query("UPDATE gw_keys SET revoked = TRUE WHERE id = $1")
                    .bind(id)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::store::StoreError::query("revoke a key"))?;
                Ok(res.rows_affected() > 0)
            }

            async fn update_key(
                &self,
                id: i64,
                update: $crate::store::KeyUpdate,
            ) -> $crate::store::Result<Option<$crate::store::KeyRecord>> {
                use $crate::store::{to_i64, StoreError, KEY_COLUMNS};
                let models = update
                    .models
                    .as_ref()
                    .map(serde_json::to_string)
                    .transpose()
                    .map_err(|e| StoreError::Data(e.to_string()))?;
                // One statement: each column is replaced only when its flag is set, so
                // concurrent edits of different fields do not undo each other.
                let sql = format!(
                    "UPDATE gw_keys SET \
                     name = CASE WHEN $2 THEN $3 ELSE name END, \
                     expires_at = CASE WHEN $4 THEN $5 ELSE expires_at END, \
                     models = CASE WHEN $6 THEN $7 ELSE models END, \
                     rpm = CASE WHEN $8 THEN $9 ELSE rpm END, \
                     tpm = CASE WHEN $10 THEN $11 ELSE tpm END, \
                     budget_tokens = CASE WHEN $12 THEN $13 ELSE budget_tokens END, \
                     budget_cost = CASE WHEN $14 THEN $15 ELSE budget_cost END \
                     WHERE id = $1 RETURNING {KEY_COLUMNS}"
                );
                let _w = self.write_lock().await;
                let row = sqlx::query(&sql)
                    .bind(id)
                    .bind(update.name.is_some())
                    .bind(update.name)
                    .bind(update.expires_at.is_some())
                    .bind(update.expires_at.flatten())
                    .bind(models.is_some())
                    .bind(models)
                    .bind(update.rpm.is_some())
                    .bind(update.rpm.flatten().map(i64::from))
                    .bind(update.tpm.is_some())
                    .bind(update.tpm.flatten().map(to_i64))
                    .bind(update.budget_tokens.is_some())
                    .bind(update.budget_tokens.flatten().map(to_i64))
                    .bind(update.budget_cost.is_some())
                    .bind(update.budget_cost.flatten())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(StoreError::query("update a key"))?;
                row.as_ref().map(key_from_row).transpose()
            }

            async fn record_usage(
                &self,
                batch: &[$crate::store::UsageRecord],
            ) -> $crate::store::Result<()> {
                use sqlx::Row as _;
                use $crate::store::{deltas, dedup_sorted, to_i64, utc_day, StoreError, INSERT_CHUNK};
                if batch.is_empty() {
                    return Ok(());
                }
                let records = dedup_sorted(batch);
                let _w = self.write_lock().await;
                let mut tx = self.begin_write().await?;
                let mut inserted = std::collections::HashSet::new();
                for chunk in records.chunks(INSERT_CHUNK) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO gw_usage (request_id, at_ms, day, key_id, channel, provider, \
                         model, upstream_model, input_tokens, output_tokens, cached_tokens, \
                         reasoning_tokens, cost, latency_ms, ttft_ms, status, error_kind, \
                         cancelled, stream, usage_estimated) ",
                    );
                    qb.push_values(chunk, |mut b, r| {
                        b.push_bind(r.request_id.clone())
                            .push_bind(r.at_ms)
                            .push_bind(utc_day(r.at_ms))
                            .push_bind(r.key_id)
                            .push_bind(r.channel.clone())
                            .push_bind(r.provider.clone())
                            .push_bind(r.model.clone())
                            .push_bind(r.upstream_model.clone())
                            .push_bind(to_i64(r.input_tokens))
                            .push_bind(to_i64(r.output_tokens))
                            .push_bind(to_i64(r.cached_tokens))
                            .push_bind(to_i64(r.reasoning_tokens))
                            .push_bind(r.cost)
                            .push_bind(to_i64(r.latency_ms))
                            .push_bind(r.ttft_ms.map(to_i64))
                            .push_bind(i64::from(r.status))
                            .push_bind(r.error_kind.clone())
                            .push_bind(r.cancelled)
                            .push_bind(r.stream)
                            .push_bind(r.usage_estimated);
                    });
                    qb.push(" ON CONFLICT (request_id) DO NOTHING RETURNING request_id");
                    let rows = qb
                        .build()
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(StoreError::query("insert usage records"))?;
                    for row in rows {
                        let id: String = row
                            .try_get(0)
                            .map_err(|e| StoreError::Data(e.to_string()))?;
                        inserted.insert(id);
                    }
                }
                let (daily, spend) = deltas(
                    records
                        .iter()
                        .copied()
                        .filter(|r| inserted.contains(&r.request_id)),
                );
                for ((day, key_id, model), a) in daily {
                    sqlx::query(
                        "INSERT INTO gw_usage_daily (day, key_id, model, requests, errors, \
                         input_tokens, output_tokens, cached_tokens, reasoning_tokens, cost) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                         ON CONFLICT (day, key_id, model) DO UPDATE SET \
                         requests = gw_usage_daily.requests + excluded.requests, \
                         errors = gw_usage_daily.errors + excluded.errors, \
                         input_tokens = gw_usage_daily.input_tokens + excluded.input_tokens, \
                         output_tokens = gw_usage_daily.output_tokens + excluded.output_tokens, \
                         cached_tokens = gw_usage_daily.cached_tokens + excluded.cached_tokens, \
                         reasoning_tokens = gw_usage_daily.reasoning_tokens + excluded.reasoning_tokens, \
                         cost = gw_usage_daily.cost + excluded.cost",
                    )
                    .bind(day)
                    .bind(key_id)
                    .bind(model)
                    .bind(a.requests)
                    .bind(a.errors)
                    .bind(a.input_tokens)
                    .bind(a.output_tokens)
                    .bind(a.cached_tokens)
                    .bind(a.reasoning_tokens)
                    .bind(a.cost)
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::query("update daily usage rollups"))?;
                }
                for (key_id, (tokens, cost)) in spend {
                    sqlx::query(
                        "UPDATE gw_keys SET spent_tokens = spent_tokens + $1, \
                         spent_cost = spent_cost + $2 WHERE id = $3",
                    )
                    .bind(tokens)
                    .bind(cost)
                    .bind(key_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::query("update key spend"))?;
                }
                tx.commit()
                    .await
                    .map_err(StoreError::query("commit usage records"))
            }

            async fn usage(
                &self,
                by: $crate::store::GroupBy,
                since_day: Option<&str>,
            ) -> $crate::store::Result<Vec<$crate::store::UsageRow>> {
                use sqlx::Row as _;
                use $crate::store::{to_u64, GroupBy, StoreError, UsageRow};
                let col = match by {
                    GroupBy::Key => "CAST(key_id AS TEXT)",
                    GroupBy::Model => "model",
                    GroupBy::Day => "day",
                };
                let sql = format!(
                    "SELECT {col} AS grp, CAST(SUM(requests) AS BIGINT) AS requests, \
                     CAST(SUM(input_tokens) AS BIGINT) AS input_tokens, \
                     CAST(SUM(output_tokens) AS BIGINT) AS output_tokens, SUM(cost) AS cost \
                     FROM gw_usage_daily WHERE day >= $1 GROUP BY {col} ORDER BY {col}"
                );
                let rows = sqlx::query(&sql)
                    .bind(since_day.unwrap_or(""))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(StoreError::query("read usage rollups"))?;
                let g = |e: sqlx::Error| StoreError::Data(e.to_string());
                let mut out = Vec::with_capacity(rows.len());
                for row in rows {
                    let mut group: String = row.try_get("grp").map_err(g)?;
                    if by == GroupBy::Key && group == "0" {
                        group = "none".to_owned();
                    }
                    out.push(UsageRow {
                        group,
                        requests: to_u64(row.try_get("requests").map_err(g)?),
                        input_tokens: to_u64(row.try_get("input_tokens").map_err(g)?),
                        output_tokens: to_u64(row.try_get("output_tokens").map_err(g)?),
                        cost: row.try_get("cost").map_err(g)?,
                    });
                }
                if by == GroupBy::Key {
                    // Numeric order of ids rather than text order.
                    out.sort_by_key(|r| r.group.parse::<i64>().unwrap_or(0));
                }
                Ok(out)
            }

            async fn usage_count(&self) -> $crate::store::Result<u64> {
                use sqlx::Row as _;
                use $crate::store::StoreError;
                let row = sqlx::query("SELECT COUNT(*) AS n FROM gw_usage")
                    .fetch_one(&self.pool)
                    .await
                    .map_err(StoreError::query("count usage records"))?;
                let n: i64 = row
                    .try_get("n")
                    .map_err(|e| StoreError::Data(e.to_string()))?;
                Ok($crate::store::to_u64(n))
            }

            async fn records(
                &self,
                query: $crate::store::RecordQuery,
            ) -> $crate::store::Result<Vec<$crate::store::UsageRecord>> {
                use sqlx::Row as _;
                use $crate::store::{to_u64, StoreError, UsageRecord};
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "SELECT request_id, at_ms, key_id, channel, provider, model, upstream_model, \
                     input_tokens, output_tokens, cached_tokens, reasoning_tokens, cost, \
                     latency_ms, ttft_ms, status, error_kind, cancelled, stream, usage_estimated \
                     FROM gw_usage",
                );
                if let Some(id) = query.key_id {
                    qb.push(" WHERE key_id = ").push_bind(id);
                }
                qb.push(" ORDER BY at_ms DESC, request_id DESC LIMIT ")
                    .push_bind(i64::from(query.effective_limit()));
                let rows = qb
                    .build()
                    .fetch_all(&self.pool)
                    .await
                    .map_err(StoreError::query("read usage records"))?;
                let g = |e: sqlx::Error| StoreError::Data(e.to_string());
                let mut out = Vec::with_capacity(rows.len());
                for row in rows {
                    let ttft: Option<i64> = row.try_get("ttft_ms").map_err(g)?;
                    let status: i64 = row.try_get("status").map_err(g)?;
                    out.push(UsageRecord {
                        request_id: row.try_get("request_id").map_err(g)?,
                        at_ms: row.try_get("at_ms").map_err(g)?,
                        key_id: row.try_get("key_id").map_err(g)?,
                        channel: row.try_get("channel").map_err(g)?,
                        provider: row.try_get("provider").map_err(g)?,
                        model: row.try_get("model").map_err(g)?,
                        upstream_model: row.try_get("upstream_model").map_err(g)?,
                        input_tokens: to_u64(row.try_get("input_tokens").map_err(g)?),
                        output_tokens: to_u64(row.try_get("output_tokens").map_err(g)?),
                        cached_tokens: to_u64(row.try_get("cached_tokens").map_err(g)?),
                        reasoning_tokens: to_u64(row.try_get("reasoning_tokens").map_err(g)?),
                        cost: row.try_get("cost").map_err(g)?,
                        latency_ms: to_u64(row.try_get("latency_ms").map_err(g)?),
                        ttft_ms: ttft.map(to_u64),
                        status: u16::try_from(status).unwrap_or(0),
                        error_kind: row.try_get("error_kind").map_err(g)?,
                        cancelled: row.try_get("cancelled").map_err(g)?,
                        stream: row.try_get("stream").map_err(g)?,
                        usage_estimated: row.try_get("usage_estimated").map_err(g)?,
                    });
                }
                Ok(out)
            }

            async fn prune(&self, older_than_ms: i64) -> $crate::store::Result<u64> {
                let _w = self.write_lock().await;
                let res = sqlx::query("DELETE FROM gw_usage WHERE at_ms < $1")
                    .bind(older_than_ms)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::store::StoreError::query("prune usage records"))?;
                Ok(res.rows_affected())
            }
        }
    };
}
pub(crate) use sql_store_impl;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_day_matches_known_dates() {
        assert_eq!(utc_day(0), "1970-01-01");
        assert_eq!(utc_day(86_399_999), "1970-01-01");
        assert_eq!(utc_day(86_400_000), "1970-01-02");
        assert_eq!(utc_day(951_782_400_000), "2000-02-29");
        assert_eq!(utc_day(1_709_251_199_000), "2024-02-29");
        assert_eq!(utc_day(1_735_689_600_000), "2025-01-01");
        assert_eq!(utc_day(-1), "1969-12-31");
    }

    #[test]
    fn dedup_keeps_one_record_per_request_id() {
        let r = |id: &str, t: u64| UsageRecord {
            request_id: id.into(),
            input_tokens: t,
            ..Default::default()
        };
        let batch = vec![r("b", 1), r("a", 2), r("b", 3)];
        let v = dedup_sorted(&batch);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].request_id, "a");
        assert_eq!(v[1].request_id, "b");
    }

    #[test]
    fn key_activity_and_model_scope() {
        let k = KeyRecord {
            id: 1,
            name: "k".into(),
            prefix: "sk-llmux-abc".into(),
            created_at: 0,
            expires_at: Some(100),
            revoked: false,
            models: vec!["m1".into()],
            rpm: None,
            tpm: None,
            budget_tokens: None,
            budget_cost: None,
            spent_tokens: 0,
            spent_cost: 0.0,
        };
        assert!(k.is_active(99));
        assert!(!k.is_active(100));
        assert!(k.allows_model("m1"));
        assert!(!k.allows_model("m2"));
        let all = KeyRecord {
            models: vec![],
            revoked: true,
            ..k
        };
        assert!(all.allows_model("anything"));
        assert!(!all.is_active(0));
    }
}
