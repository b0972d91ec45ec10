//! Reads over the raw usage records for the dashboard and the admin API: a usage time series
//! ([`Store::usage_series`](super::Store::usage_series)) and a request-log search
//! ([`Store::search_records`](super::Store::search_records)), on both backends with the same SQL.
//!
//! Percentiles are exact and the same on SQLite and PostgreSQL: nearest-rank (the value at rank
//! ⌈p·n⌉ of the bucket's sorted values), computed in SQL with `ROW_NUMBER()` and `COUNT()`
//! window functions over each (bucket, series); no interpolation (`percentile_cont`), and
//! nothing fetched to the gateway but one row per (bucket, series). Requests without a latency
//! (interrupted ones, status 0) are left out of the latency percentiles, and requests without a
//! time to first token (not streamed, or failed first) out of the TTFT ones.
//!
//! Every query is bounded: a series spans at most [`SeriesQuery::MAX_BUCKETS`] buckets and
//! [`SeriesQuery::MAX_SERIES`] series (the groups past the busiest ones are summed under
//! [`OTHER`]); a search returns at most [`RecordQuery::MAX_LIMIT`](super::RecordQuery::MAX_LIMIT)
//! rows; every client value is a bound parameter, and the search text is LIKE-escaped.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::UsageRecord;

/// The width of one bucket of a usage series, aligned on UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Bucket {
    /// One minute.
    Minute,
    /// One hour.
    Hour,
    /// One UTC day.
    Day,
}

impl Bucket {
    /// Every width, narrowest first.
    pub const ALL: [Bucket; 3] = [Bucket::Minute, Bucket::Hour, Bucket::Day];

    /// The width in milliseconds.
    pub const fn millis(self) -> i64 {
        match self {
            Bucket::Minute => 60_000,
            Bucket::Hour => 3_600_000,
            Bucket::Day => 86_400_000,
        }
    }

    /// The name used in queries: `minute`, `hour` or `day`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Bucket::Minute => "minute",
            Bucket::Hour => "hour",
            Bucket::Day => "day",
        }
    }

    /// The width named `s`, if any.
    pub fn parse(s: &str) -> Option<Bucket> {
        Bucket::ALL.into_iter().find(|b| b.as_str() == s)
    }

    /// The narrowest width that covers `[from_ms, to_ms)` in at most
    /// [`SeriesQuery::MAX_BUCKETS`] buckets (`Day` when none does).
    pub fn fitting(from_ms: i64, to_ms: i64) -> Bucket {
        Bucket::ALL
            .into_iter()
            .find(|b| bucket_count(from_ms, to_ms, *b) <= SeriesQuery::MAX_BUCKETS)
            .unwrap_or(Bucket::Day)
    }
}

/// How many buckets of width `b` the range `[from_ms, to_ms)` touches.
fn bucket_count(from_ms: i64, to_ms: i64, b: Bucket) -> i64 {
    let w = b.millis();
    if to_ms <= from_ms {
        return 0;
    }
    (to_ms - 1).div_euclid(w) - from_ms.div_euclid(w) + 1
}

/// What a usage series is split by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SeriesBy {
    /// The public model name.
    Model,
    /// The channel that served the request.
    Channel,
    /// The virtual key (`none` for requests made with a static key).
    Key,
    /// The team of the key at the time of the request (`none` for requests outside a team).
    Team,
}

impl SeriesBy {
    /// The name used in queries: `model`, `channel`, `key` or `team`.
    pub const fn as_str(self) -> &'static str {
        match self {
            SeriesBy::Model => "model",
            SeriesBy::Channel => "channel",
            SeriesBy::Key => "key",
            SeriesBy::Team => "team",
        }
    }

    /// The split named `s`, if any.
    pub fn parse(s: &str) -> Option<SeriesBy> {
        [
            SeriesBy::Model,
            SeriesBy::Channel,
            SeriesBy::Key,
            SeriesBy::Team,
        ]
        .into_iter()
        .find(|b| b.as_str() == s)
    }

    /// The SQL expression of a record's series id (`u` is `gw_usage`) and of its label (`k` is
    /// the key joined on it, `t` the team). Constant text chosen by the enum, never client
    /// input.
    pub(crate) const fn sql(self) -> (&'static str, &'static str) {
        match self {
            SeriesBy::Model => ("u.model", "u.model"),
            SeriesBy::Channel => ("u.channel", "u.channel"),
            SeriesBy::Key => (
                "COALESCE(CAST(u.key_id AS TEXT), 'none')",
                "COALESCE(k.name, 'no key')",
            ),
            SeriesBy::Team => (
                "COALESCE(CAST(u.team_id AS TEXT), 'none')",
                "CASE WHEN u.team_id IS NULL THEN 'no team' ELSE COALESCE(t.name, 'deleted team') END",
            ),
        }
    }
}

/// The series id under which the groups past the busiest [`SeriesQuery::MAX_SERIES`]` - 1` are
/// summed (its label is `other`).
pub const OTHER: &str = "__other__";

/// Which usage series [`Store::usage_series`](super::Store::usage_series) computes: records with
/// `from_ms <= at_ms < to_ms`, in buckets of `bucket`, one series per group of `by`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeriesQuery {
    /// Start, unix milliseconds, inclusive.
    pub from_ms: i64,
    /// End, unix milliseconds, exclusive.
    pub to_ms: i64,
    /// The bucket width.
    pub bucket: Bucket,
    /// The split.
    pub by: SeriesBy,
}

impl SeriesQuery {
    /// The most buckets one series spans.
    pub const MAX_BUCKETS: i64 = 500;
    /// The most series one answer holds ([`OTHER`] included).
    pub const MAX_SERIES: usize = 20;
    /// The latest time a query may name: the year 9999.
    pub const MAX_TIME_MS: i64 = 253_402_300_799_999;

    /// Why the query cannot run, if it cannot: the range is empty or out of bounds, or spans
    /// more than [`SeriesQuery::MAX_BUCKETS`] buckets.
    pub fn check(&self) -> Result<(), String> {
        if self.from_ms < 0 || self.to_ms > Self::MAX_TIME_MS {
            return Err(format!(
                "the range must lie between unix millisecond 0 and {}",
                Self::MAX_TIME_MS
            ));
        }
        if self.to_ms <= self.from_ms {
            return Err("`to` must lie after `from`".to_owned());
        }
        let n = bucket_count(self.from_ms, self.to_ms, self.bucket);
        if n > Self::MAX_BUCKETS {
            return Err(format!(
                "the range spans {n} {} buckets, more than {}: choose a wider bucket or a \
                 shorter range",
                self.bucket.as_str(),
                Self::MAX_BUCKETS
            ));
        }
        Ok(())
    }
}

/// One series of a [`UsageSeries`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Series {
    /// Its id, as [`SeriesPoint::series`] names it: the model or channel name, the key id in
    /// decimal (`none` without a key), or [`OTHER`].
    pub id: String,
    /// What to show: the model or channel name, the key's name (`no key` without one), or
    /// `other`.
    pub label: String,
    /// Requests over the whole range.
    pub requests: u64,
}

/// One (bucket, series) of a [`UsageSeries`] that had requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SeriesPoint {
    /// Start of the bucket, unix milliseconds (a multiple of the bucket width).
    pub at_ms: i64,
    /// The series id ([`Series::id`]).
    pub series: String,
    /// Requests.
    pub requests: u64,
    /// Sum of input tokens.
    pub input_tokens: u64,
    /// Sum of output tokens.
    pub output_tokens: u64,
    /// Sum of cost.
    pub cost: f64,
    /// Requests that failed (status ≥ 400, an error kind, cancelled or interrupted).
    pub errors: u64,
    /// Median total latency (nearest rank), over the requests that have one.
    pub latency_p50_ms: Option<u64>,
    /// 99th percentile of total latency (nearest rank).
    pub latency_p99_ms: Option<u64>,
    /// Median time to first token (nearest rank), over the requests that have one.
    pub ttft_p50_ms: Option<u64>,
    /// 99th percentile of time to first token (nearest rank).
    pub ttft_p99_ms: Option<u64>,
}

/// A usage time series: per bucket and series, requests, tokens, cost, errors and latency
/// percentiles.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UsageSeries {
    /// Start, unix milliseconds, inclusive.
    pub from_ms: i64,
    /// End, unix milliseconds, exclusive.
    pub to_ms: i64,
    /// The bucket width.
    pub bucket: Bucket,
    /// The bucket width in milliseconds.
    pub bucket_ms: i64,
    /// The split.
    pub by: SeriesBy,
    /// The series, busiest first, [`OTHER`] last.
    pub series: Vec<Series>,
    /// The (bucket, series) pairs that had requests, by bucket then series id.
    pub points: Vec<SeriesPoint>,
}

/// Which statuses a search keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    /// One class: `Class(4)` keeps 400 to 499.
    Class(u16),
    /// One exact status.
    Exact(u16),
    /// Failed requests: status ≥ 400 or 0, or an error kind (cancelled ones included).
    Failed,
    /// Requests that succeeded: status below 400 (not 0) and no error kind.
    Succeeded,
}

impl StatusFilter {
    /// `2xx`…`5xx`, `error`, `ok`, or an exact status (100 to 599, or 0 for interrupted).
    pub fn parse(s: &str) -> Option<StatusFilter> {
        let s = s.trim().to_ascii_lowercase();
        match s.as_str() {
            "error" | "failed" => return Some(StatusFilter::Failed),
            "ok" | "success" => return Some(StatusFilter::Succeeded),
            _ => {}
        }
        if let Some(c) = s.strip_suffix("xx") {
            return match c.as_bytes() {
                [d @ b'1'..=b'5'] => Some(StatusFilter::Class(u16::from(d - b'0'))),
                _ => None,
            };
        }
        match s.parse::<u16>() {
            Ok(n) if n == 0 || (100..=599).contains(&n) => Some(StatusFilter::Exact(n)),
            _ => None,
        }
    }
}

/// A position in the request log, newest first: a search with `before` returns the records
/// after it in that order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// Records strictly older than this (unix milliseconds)…
    pub at_ms: i64,
    /// …or as old, with a smaller request id.
    pub request_id: Option<String>,
}

impl Cursor {
    /// The longest request id a cursor may carry, in bytes.
    pub const MAX_ID_BYTES: usize = 128;

    /// `AT_MS` (records before that time) or `AT_MS:REQUEST_ID` (a page's `next`).
    pub fn parse(s: &str) -> Option<Cursor> {
        let (at, id) = match s.split_once(':') {
            Some((at, id)) => (at, Some(id)),
            None => (s, None),
        };
        let at_ms = at.trim().parse::<i64>().ok()?;
        if let Some(id) = id {
            if id.is_empty() || id.len() > Self::MAX_ID_BYTES || id.chars().any(char::is_control) {
                return None;
            }
        }
        Some(Cursor {
            at_ms,
            request_id: id.map(str::to_owned),
        })
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.request_id {
            Some(id) => write!(f, "{}:{id}", self.at_ms),
            None => write!(f, "{}", self.at_ms),
        }
    }
}

/// A request-log search ([`Store::search_records`](super::Store::search_records)); every
/// filter set must hold. Newest first, ties by request id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordSearch {
    /// Records at or after this time, unix milliseconds.
    pub from_ms: Option<i64>,
    /// Records before this time, unix milliseconds.
    pub to_ms: Option<i64>,
    /// Only this key's records.
    pub key_id: Option<i64>,
    /// Only the records of keys with this exact name.
    pub key_name: Option<String>,
    /// Only this public model.
    pub model: Option<String>,
    /// Only this channel.
    pub channel: Option<String>,
    /// Only these statuses.
    pub status: Option<StatusFilter>,
    /// A substring (case-insensitive for ASCII letters) of the request id, the client's
    /// request id, the model, the channel, the error kind or the key name. At most
    /// [`RecordSearch::MAX_TEXT_CHARS`] characters.
    pub text: Option<String>,
    /// Only the records after this position (the previous page's `next`).
    pub before: Option<Cursor>,
    /// At most this many; 0 means [`RecordQuery::DEFAULT_LIMIT`](super::RecordQuery), and
    /// more than [`RecordQuery::MAX_LIMIT`](super::RecordQuery::MAX_LIMIT) means that.
    pub limit: u32,
}

impl RecordSearch {
    /// The longest search text, in characters.
    pub const MAX_TEXT_CHARS: usize = 200;
    /// The longest model, channel or key name a filter may hold, in bytes.
    pub const MAX_NAME_BYTES: usize = 256;

    /// The limit actually applied.
    pub fn effective_limit(&self) -> u32 {
        super::RecordQuery {
            key_id: None,
            limit: self.limit,
        }
        .effective_limit()
    }

    /// The search text as a LIKE pattern: lowercased, `\`, `%` and `_` escaped with `\`, inside
    /// `%…%` (for `LIKE … ESCAPE '\'`).
    pub fn like_pattern(text: &str) -> String {
        let mut p = String::with_capacity(text.len() + 2);
        p.push('%');
        for ch in text.to_lowercase().chars() {
            if matches!(ch, '\\' | '%' | '_') {
                p.push('\\');
            }
            p.push(ch);
        }
        p.push('%');
        p
    }
}

/// One record of a search, with the name of its key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RecordRow {
    /// The record.
    #[serde(flatten)]
    pub record: UsageRecord,
    /// The name of its key (`None` without a key).
    pub key_name: Option<String>,
}

/// One page of a search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RecordPage {
    /// The records, newest first.
    pub records: Vec<RecordRow>,
    /// Pass as `before` for the next page; `None` on the last page.
    pub next: Option<String>,
}

/// Columns of `gw_usage u` (and `k.name`) read into a [`RecordRow`].
pub(crate) const RECORD_COLUMNS: &str = "u.request_id, u.at_ms, u.key_id, u.channel, \
     u.provider, u.model, u.upstream_model, u.input_tokens, u.output_tokens, u.cached_tokens, \
     u.reasoning_tokens, u.cost, u.latency_ms, u.ttft_ms, u.status, u.error_kind, u.cancelled, \
     u.stream, u.usage_estimated, u.client_request_id, u.team_id, u.cache_hit, k.name AS key_name";

/// Implements the two reads for a backend module: free functions `usage_series` and
/// `search_records` over a `sqlx::Pool<$db>`, which the backend's `Store` impl calls.
macro_rules! sql_analytics_impl {
    ($db:ty) => {
        fn record_row(
            row: &<$db as sqlx::Database>::Row,
        ) -> $crate::store::Result<$crate::store::RecordRow> {
            use sqlx::Row as _;
            use $crate::store::StoreError;
            let g = |e: sqlx::Error| StoreError::Data(e.to_string());
            Ok($crate::store::RecordRow {
                record: usage_record_from_row(row)?,
                key_name: row.try_get("key_name").map_err(g)?,
            })
        }

        /// See [`Store::search_records`]($crate::store::Store::search_records).
        async fn search_records(
            pool: &sqlx::Pool<$db>,
            q: $crate::store::RecordSearch,
        ) -> $crate::store::Result<$crate::store::RecordPage> {
            use $crate::store::{Cursor, RecordPage, RecordSearch, StatusFilter, StoreError};
            let limit = q.effective_limit();
            let mut qb = sqlx::QueryBuilder::<$db>::new(format!(
                "SELECT {} FROM gw_usage u LEFT JOIN gw_keys k ON k.id = u.key_id WHERE 1 = 1",
                $crate::store::analytics::RECORD_COLUMNS
            ));
            if let Some(t) = q.from_ms {
                qb.push(" AND u.at_ms >= ").push_bind(t);
            }
            if let Some(t) = q.to_ms {
                qb.push(" AND u.at_ms < ").push_bind(t);
            }
            if let Some(id) = q.key_id {
                qb.push(" AND u.key_id = ").push_bind(id);
            }
            if let Some(name) = q.key_name {
                qb.push(" AND k.name = ").push_bind(name);
            }
            if let Some(m) = q.model {
                qb.push(" AND u.model = ").push_bind(m);
            }
            if let Some(c) = q.channel {
                qb.push(" AND u.channel = ").push_bind(c);
            }
            match q.status {
                None => {}
                Some(StatusFilter::Class(c)) => {
                    let lo = i64::from(c) * 100;
                    qb.push(" AND u.status >= ").push_bind(lo);
                    qb.push(" AND u.status < ").push_bind(lo + 100);
                }
                Some(StatusFilter::Exact(s)) => {
                    qb.push(" AND u.status = ").push_bind(i64::from(s));
                }
                Some(StatusFilter::Failed) => {
                    qb.push(
                        " AND (u.status >= 400 OR u.status = 0 OR u.error_kind IS NOT NULL)",
                    );
                }
                Some(StatusFilter::Succeeded) => {
                    qb.push(
                        " AND u.status < 400 AND u.status <> 0 AND u.error_kind IS NULL",
                    );
                }
            }
            if let Some(text) = q.text.as_deref().filter(|t| !t.is_empty()) {
                let p = RecordSearch::like_pattern(text);
                qb.push(" AND (");
                for (i, col) in [
                    "u.request_id",
                    "COALESCE(u.client_request_id, '')",
                    "u.model",
                    "u.channel",
                    "COALESCE(u.error_kind, '')",
                    "COALESCE(k.name, '')",
                ]
                .iter()
                .enumerate()
                {
                    if i > 0 {
                        qb.push(" OR ");
                    }
                    qb.push(format!("LOWER({col}) LIKE "))
                        .push_bind(p.clone())
                        .push(" ESCAPE '\\'");
                }
                qb.push(")");
            }
            if let Some(Cursor { at_ms, request_id }) = q.before {
                match request_id {
                    Some(id) => {
                        qb.push(" AND (u.at_ms < ").push_bind(at_ms);
                        qb.push(" OR (u.at_ms = ").push_bind(at_ms);
                        qb.push(" AND u.request_id < ").push_bind(id).push("))");
                    }
                    None => {
                        qb.push(" AND u.at_ms < ").push_bind(at_ms);
                    }
                }
            }
            qb.push(" ORDER BY u.at_ms DESC, u.request_id DESC LIMIT ")
                .push_bind(i64::from(limit) + 1);
            let rows = qb
                .build()
                .fetch_all(pool)
                .await
                .map_err(StoreError::query("search usage records"))?;
            let mut records = rows
                .iter()
                .map(record_row)
                .collect::<$crate::store::Result<Vec<_>>>()?;
            let more = records.len() > limit as usize;
            records.truncate(limit as usize);
            let next = match records.last() {
                Some(r) if more => Some(
                    Cursor {
                        at_ms: r.record.at_ms,
                        request_id: Some(r.record.request_id.clone()),
                    }
                    .to_string(),
                ),
                _ => None,
            };
            Ok(RecordPage { records, next })
        }

        /// See [`Store::usage_series`]($crate::store::Store::usage_series).
        async fn usage_series(
            pool: &sqlx::Pool<$db>,
            q: $crate::store::SeriesQuery,
        ) -> $crate::store::Result<$crate::store::UsageSeries> {
            use sqlx::Row as _;
            use $crate::store::{
                to_u64, Series, SeriesPoint, SeriesQuery, StoreError, UsageSeries, OTHER,
            };
            let g = |e: sqlx::Error| StoreError::Data(e.to_string());
            let (grp, label) = q.by.sql();
            // The busiest groups, one more than fit: if it is there, the tail becomes `other`.
            let mut top = sqlx::QueryBuilder::<$db>::new(format!(
                "SELECT {grp} AS grp, MAX({label}) AS label, COUNT(*) AS n FROM gw_usage u \
                 LEFT JOIN gw_keys k ON k.id = u.key_id LEFT JOIN gw_teams t ON t.id = u.team_id \
                 WHERE u.at_ms >= "
            ));
            top.push_bind(q.from_ms)
                .push(" AND u.at_ms < ")
                .push_bind(q.to_ms)
                .push(" GROUP BY 1 ORDER BY 3 DESC, 1 LIMIT ")
                .push_bind(i64::try_from(SeriesQuery::MAX_SERIES + 1).unwrap_or(21));
            let rows = top
                .build()
                .fetch_all(pool)
                .await
                .map_err(StoreError::query("find the busiest usage series"))?;
            let mut series = Vec::with_capacity(rows.len());
            for row in &rows {
                series.push(Series {
                    id: row.try_get("grp").map_err(g)?,
                    label: row.try_get("label").map_err(g)?,
                    requests: to_u64(row.try_get("n").map_err(g)?),
                });
            }
            let mut out = UsageSeries {
                from_ms: q.from_ms,
                to_ms: q.to_ms,
                bucket: q.bucket,
                bucket_ms: q.bucket.millis(),
                by: q.by,
                series: Vec::new(),
                points: Vec::new(),
            };
            if series.is_empty() {
                return Ok(out);
            }
            let overflow = series.len() > SeriesQuery::MAX_SERIES;
            if overflow {
                series.truncate(SeriesQuery::MAX_SERIES - 1);
            }
            let mut qb = sqlx::QueryBuilder::<$db>::new(
                "SELECT bucket, series, CAST(COUNT(*) AS BIGINT) AS requests, \
                 CAST(SUM(input_tokens) AS BIGINT) AS input_tokens, \
                 CAST(SUM(output_tokens) AS BIGINT) AS output_tokens, SUM(cost) AS cost, \
                 CAST(SUM(failed) AS BIGINT) AS errors, \
                 MAX(CASE WHEN lrn = (ln + 1) / 2 THEN latency_ms END) AS lat50, \
                 MAX(CASE WHEN lrn = (99 * ln + 99) / 100 THEN latency_ms END) AS lat99, \
                 MAX(CASE WHEN trn = (tn + 1) / 2 THEN ttft_ms END) AS ttft50, \
                 MAX(CASE WHEN trn = (99 * tn + 99) / 100 THEN ttft_ms END) AS ttft99 \
                 FROM (SELECT b.*, \
                 ROW_NUMBER() OVER (PARTITION BY bucket, series ORDER BY no_lat, latency_ms) AS lrn, \
                 SUM(1 - no_lat) OVER (PARTITION BY bucket, series) AS ln, \
                 ROW_NUMBER() OVER (PARTITION BY bucket, series ORDER BY no_ttft, ttft_ms) AS trn, \
                 SUM(1 - no_ttft) OVER (PARTITION BY bucket, series) AS tn \
                 FROM (SELECT (u.at_ms / ",
            );
            qb.push_bind(q.bucket.millis())
                .push(") * ")
                .push_bind(q.bucket.millis())
                .push(format!(" AS bucket, CASE WHEN {grp} IN ("));
            {
                let mut list = qb.separated(", ");
                for s in &series {
                    list.push_bind(s.id.clone());
                }
            }
            qb.push(format!(") THEN {grp} ELSE "))
                .push_bind(OTHER)
                .push(
                    " END AS series, u.input_tokens, u.output_tokens, u.cost, u.latency_ms, \
                     u.ttft_ms, \
                     CASE WHEN u.status >= 400 OR u.status = 0 OR u.error_kind IS NOT NULL \
                     THEN 1 ELSE 0 END AS failed, \
                     CASE WHEN u.status = 0 THEN 1 ELSE 0 END AS no_lat, \
                     CASE WHEN u.ttft_ms IS NULL THEN 1 ELSE 0 END AS no_ttft \
                     FROM gw_usage u WHERE u.at_ms >= ",
                )
                .push_bind(q.from_ms)
                .push(" AND u.at_ms < ")
                .push_bind(q.to_ms)
                .push(") b) w GROUP BY bucket, series ORDER BY bucket, series");
            let rows = qb
                .build()
                .fetch_all(pool)
                .await
                .map_err(StoreError::query("compute the usage series"))?;
            let opt = |v: Option<i64>| v.map(to_u64);
            for row in &rows {
                out.points.push(SeriesPoint {
                    at_ms: row.try_get("bucket").map_err(g)?,
                    series: row.try_get("series").map_err(g)?,
                    requests: to_u64(row.try_get("requests").map_err(g)?),
                    input_tokens: to_u64(row.try_get("input_tokens").map_err(g)?),
                    output_tokens: to_u64(row.try_get("output_tokens").map_err(g)?),
                    cost: row.try_get("cost").map_err(g)?,
                    errors: to_u64(row.try_get("errors").map_err(g)?),
                    latency_p50_ms: opt(row.try_get("lat50").map_err(g)?),
                    latency_p99_ms: opt(row.try_get("lat99").map_err(g)?),
                    ttft_p50_ms: opt(row.try_get("ttft50").map_err(g)?),
                    ttft_p99_ms: opt(row.try_get("ttft99").map_err(g)?),
                });
            }
            if overflow {
                let named: u64 = series.iter().map(|s| s.requests).sum();
                let total: u64 = out.points.iter().map(|p| p.requests).sum();
                series.push(Series {
                    id: OTHER.to_owned(),
                    label: "other".to_owned(),
                    requests: total.saturating_sub(named),
                });
            }
            out.series = series;
            Ok(out)
        }
    };
}
pub(crate) use sql_analytics_impl;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_escape_wildcards_and_lowercase() {
        assert_eq!(RecordSearch::like_pattern("Ab"), "%ab%");
        assert_eq!(RecordSearch::like_pattern("50%_\\"), "%50\\%\\_\\\\%");
    }

    #[test]
    fn statuses_parse_as_classes_exact_or_outcomes() {
        assert_eq!(StatusFilter::parse("4xx"), Some(StatusFilter::Class(4)));
        assert_eq!(StatusFilter::parse("5XX"), Some(StatusFilter::Class(5)));
        assert_eq!(StatusFilter::parse("429"), Some(StatusFilter::Exact(429)));
        assert_eq!(StatusFilter::parse("0"), Some(StatusFilter::Exact(0)));
        assert_eq!(StatusFilter::parse("error"), Some(StatusFilter::Failed));
        assert_eq!(StatusFilter::parse("ok"), Some(StatusFilter::Succeeded));
        for bad in ["", "6xx", "04xx", "xx", "99", "600", "-1", "4x"] {
            assert_eq!(StatusFilter::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn cursors_round_trip_and_refuse_junk() {
        let c = Cursor::parse("1700000000000:0190-abc").unwrap();
        assert_eq!(c.at_ms, 1_700_000_000_000);
        assert_eq!(c.to_string(), "1700000000000:0190-abc");
        assert_eq!(Cursor::parse("5").unwrap().request_id, None);
        assert!(Cursor::parse("x:1").is_none());
        assert!(Cursor::parse("5:").is_none());
        assert!(Cursor::parse(&format!("5:{}", "a".repeat(129))).is_none());
    }

    #[test]
    fn bucket_counts_and_fitting_widths() {
        let h = Bucket::Hour.millis();
        assert_eq!(bucket_count(0, h, Bucket::Hour), 1);
        assert_eq!(bucket_count(1, h + 1, Bucket::Hour), 2);
        assert_eq!(bucket_count(0, 24 * h, Bucket::Minute), 1440);
        assert_eq!(Bucket::fitting(0, 24 * h), Bucket::Hour);
        assert_eq!(Bucket::fitting(0, 60 * 60_000), Bucket::Minute);
        assert_eq!(Bucket::fitting(0, 30 * 24 * h), Bucket::Day);
        let q = SeriesQuery {
            from_ms: 0,
            to_ms: 24 * h,
            bucket: Bucket::Minute,
            by: SeriesBy::Model,
        };
        assert!(q.check().unwrap_err().contains("1440"));
        assert!(SeriesQuery {
            bucket: Bucket::Hour,
            ..q
        }
        .check()
        .is_ok());
        assert!(SeriesQuery { to_ms: 0, ..q }.check().is_err());
        assert!(SeriesQuery { from_ms: -1, ..q }.check().is_err());
    }
}
