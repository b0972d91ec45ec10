//! PostgreSQL backend, optionally confined to one schema (`?schema=NAME` in the URL).
//!
//! With `schema=NAME`, the schema is created if missing and every pooled connection starts
//! with `search_path=NAME`, so the tables and sqlx's migration table live there. Tests use a
//! fresh schema each, so parallel runs against one database never collide.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool, Postgres};
use tokio::sync::MutexGuard;

use super::channels::sql_channel_impl;
use super::outbox::sql_outbox_impl;
use super::{sql_store_impl, Result, StoreError};
use crate::limits::period::BudgetCalendar;

const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        "ledger",
        include_str!("../../migrations/postgres/0002_ledger.sql"),
    ),
    (
        3,
        "channels",
        include_str!("../../migrations/postgres/0003_channels.sql"),
    ),
    (
        4,
        "prices",
        include_str!("../../migrations/postgres/0004_prices.sql"),
    ),
    (
        5,
        "teams",
        include_str!("../../migrations/postgres/0005_teams.sql"),
    ),
    (
        6,
        "response cache",
        include_str!("../../migrations/postgres/0006_cache.sql"),
    ),
    (
        7,
        "outbox",
        include_str!("../../migrations/postgres/0007_outbox.sql"),
    ),
];

/// The PostgreSQL store. Open it with [`super::open`] or [`PgStore::open`].
#[derive(Debug)]
pub struct PgStore {
    pool: PgPool,
    /// The periods of periodic budgets.
    calendar: BudgetCalendar,
    /// Inserted records queue their events in `gw_outbox`.
    outbox: bool,
}

/// Splits `schema=NAME` off the URL's query string.
fn split_schema(url: &str) -> Result<(String, Option<String>)> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), None));
    };
    let mut schema = None;
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.strip_prefix("schema=") {
            Some(name) => schema = Some(name.to_owned()),
            None => rest.push(pair),
        }
    }
    if let Some(name) = &schema {
        let valid = !name.is_empty()
            && name.len() <= 63
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            && !name.as_bytes()[0].is_ascii_digit();
        if !valid {
            return Err(StoreError::InvalidUrl(
                "`schema` must be 1-63 lowercase letters, digits or `_`, not starting with a digit"
                    .into(),
            ));
        }
    }
    let url = if rest.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    Ok((url, schema))
}

impl PgStore {
    /// Other connections write concurrently with a transaction.
    pub(crate) const EXCLUSIVE_WRITES: bool = false;

    /// Inserting a usage record clears its in-flight row by trigger (migration 0002).
    pub(crate) const INFLIGHT_TRIGGER: bool = true;

    /// Replicas claim outbox rows concurrently: each skips the rows another is claiming.
    pub(crate) const CLAIM_LOCK: &'static str = " FOR UPDATE SKIP LOCKED";

    /// Connects, creates the schema named in the URL if any, and runs migrations.
    pub async fn open(url: &str) -> Result<Self> {
        let (url, schema) = split_schema(url)?;
        // The driver's parse error could quote the URL, which may hold a password.
        let mut opts = PgConnectOptions::from_str(&url)
            .map_err(|_| StoreError::InvalidUrl("not a valid PostgreSQL URL".into()))?;
        let password = PgConnectOptions::from_str(&url)
            .ok()
            .and_then(|_| url.split_once("://"))
            .and_then(|(_, rest)| rest.split_once('@'))
            .and_then(|(userinfo, _)| userinfo.split_once(':'))
            .map(|(_, p)| p);
        let password: Vec<&str> = password.into_iter().collect();
        let connect_err = |e: sqlx::Error| StoreError::Connect {
            backend: "postgres",
            message: crate::redact::scrub(&e.to_string(), password.as_slice()),
        };
        if let Some(schema) = &schema {
            let mut conn = opts.connect().await.map_err(connect_err)?;
            let created = sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
                .execute(&mut conn)
                .await;
            // Two processes creating the same schema at once: one of them sees a duplicate.
            if let Err(e) = created {
                let exists = sqlx::query("SELECT 1 FROM pg_namespace WHERE nspname = $1")
                    .bind(schema)
                    .fetch_optional(&mut conn)
                    .await
                    .ok()
                    .flatten()
                    .is_some();
                if !exists {
                    return Err(StoreError::query("create the schema")(e));
                }
            }
            conn.close().await.map_err(connect_err)?;
            opts = opts.options([("search_path", schema.as_str())]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts)
            .await
            .map_err(connect_err)?;
        super::migrate(&pool, MIGRATIONS).await?;
        Ok(PgStore {
            pool,
            calendar: BudgetCalendar::utc(),
            outbox: false,
        })
    }

    /// The same store, counting periodic budgets in `calendar`'s periods (UTC by default).
    pub fn with_calendar(mut self, calendar: BudgetCalendar) -> Self {
        self.calendar = calendar;
        self
    }

    /// The same store; with `on`, inserted usage records queue their events in the outbox.
    pub fn with_outbox(mut self, on: bool) -> Self {
        self.outbox = on;
        self
    }

    fn writes(&self) -> &PgPool {
        &self.pool
    }

    async fn write_lock(&self) -> Option<MutexGuard<'_, ()>> {
        // PostgreSQL handles concurrent writers itself.
        None
    }

    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, Postgres>> {
        self.pool
            .begin()
            .await
            .map_err(StoreError::query("begin a transaction"))
    }
}

sql_store_impl!(PgStore, Postgres);
sql_channel_impl!(PgStore, Postgres);
sql_outbox_impl!(PgStore, Postgres);
super::analytics::sql_analytics_impl!(Postgres);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_is_split_off_and_validated() {
        let (u, s) = split_schema("postgres://u@h/db?schema=t_1&sslmode=disable").unwrap();
        assert_eq!(u, "postgres://u@h/db?sslmode=disable");
        assert_eq!(s.as_deref(), Some("t_1"));
        let (u, s) = split_schema("postgres://u@h/db").unwrap();
        assert_eq!((u.as_str(), s), ("postgres://u@h/db", None));
        assert!(split_schema("postgres://u@h/db?schema=a\";drop").is_err());
        assert!(split_schema("postgres://u@h/db?schema=1a").is_err());
        // PostgreSQL folds unquoted names in `search_path` to lowercase.
        assert!(split_schema("postgres://u@h/db?schema=Upper").is_err());
    }
}
