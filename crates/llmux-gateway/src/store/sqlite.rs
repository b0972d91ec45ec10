//! SQLite backend: a file in WAL mode (or memory), with writers serialized in-process.
//!
//! SQLite allows one writer at a time. Writers here take an async mutex first and open
//! their transactions with `BEGIN IMMEDIATE`, so concurrent `record_usage` calls queue
//! instead of failing with `SQLITE_BUSY`; the 5 s busy timeout covers other processes.
//! Writes go through one dedicated connection (a file database; reads use a pool of their
//! own): SQLite drops a connection's page cache when another connection changed the database,
//! so writes rotating over a pool re-read their pages on every transaction.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool};
use tokio::sync::{Mutex, MutexGuard};

use super::channels::sql_channel_impl;
use super::outbox::sql_outbox_impl;
use super::{sql_store_impl, Result, StoreError};
use crate::limits::period::BudgetCalendar;

const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../../migrations/sqlite/0001_init.sql"),
    ),
    (
        2,
        "ledger",
        include_str!("../../migrations/sqlite/0002_ledger.sql"),
    ),
    (
        3,
        "channels",
        include_str!("../../migrations/sqlite/0003_channels.sql"),
    ),
    (
        4,
        "prices",
        include_str!("../../migrations/sqlite/0004_prices.sql"),
    ),
    (
        5,
        "teams",
        include_str!("../../migrations/sqlite/0005_teams.sql"),
    ),
    (
        6,
        "usage insert without trigger",
        include_str!("../../migrations/sqlite/0006_usage_insert_no_trigger.sql"),
    ),
    (
        7,
        "response cache",
        include_str!("../../migrations/sqlite/0007_cache.sql"),
    ),
    (
        8,
        "outbox",
        include_str!("../../migrations/sqlite/0008_outbox.sql"),
    ),
];

/// The SQLite store. Open it with [`super::open`] or [`SqliteStore::open`].
#[derive(Debug)]
pub struct SqliteStore {
    /// Reads (and, in memory, everything: one connection is the whole database).
    pool: SqlitePool,
    /// Writes: one connection, so its page cache stays warm.
    writes: SqlitePool,
    writer: Mutex<()>,
    /// The periods of periodic budgets.
    calendar: BudgetCalendar,
    /// Inserted records queue their events in `gw_outbox`.
    outbox: bool,
}

fn connect_err(e: sqlx::Error) -> StoreError {
    StoreError::Connect {
        backend: "sqlite",
        message: e.to_string(),
    }
}

impl SqliteStore {
    /// A write transaction (`BEGIN IMMEDIATE`) holds the database's write lock until it ends:
    /// no other connection or process writes meanwhile.
    pub(crate) const EXCLUSIVE_WRITES: bool = true;

    /// No trigger clears a record's in-flight row (migration 0006): the store does.
    pub(crate) const INFLIGHT_TRIGGER: bool = false;

    /// Writes are serialized (the write lock and `BEGIN IMMEDIATE`): an outbox claim needs no
    /// row locks.
    pub(crate) const CLAIM_LOCK: &'static str = "";

    /// Opens (creating if missing) the database at `sqlite://PATH` and runs migrations.
    pub async fn open(url: &str) -> Result<Self> {
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::InvalidUrl(e.to_string()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        // A local file: a ping before every acquire would only add a round trip to the
        // connection's worker thread on every write.
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .test_before_acquire(false)
            .connect_with(opts.clone())
            .await
            .map_err(connect_err)?;
        super::migrate(&pool, MIGRATIONS).await?;
        let writes = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(opts)
            .await
            .map_err(connect_err)?;
        Ok(SqliteStore {
            pool,
            writes,
            writer: Mutex::new(()),
            calendar: BudgetCalendar::utc(),
            outbox: false,
        })
    }

    /// An in-memory database on a single connection (gone when the store is dropped).
    pub async fn open_memory() -> Result<Self> {
        let opts = SqliteConnectOptions::from_str("sqlite::memory:")
            .map_err(|e| StoreError::InvalidUrl(e.to_string()))?;
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(opts)
            .await
            .map_err(connect_err)?;
        super::migrate(&pool, MIGRATIONS).await?;
        Ok(SqliteStore {
            writes: pool.clone(),
            pool,
            writer: Mutex::new(()),
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

    fn writes(&self) -> &SqlitePool {
        &self.writes
    }

    async fn write_lock(&self) -> Option<MutexGuard<'_, ()>> {
        Some(self.writer.lock().await)
    }

    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, Sqlite>> {
        self.writes
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(StoreError::query("begin a transaction"))
    }
}

sql_store_impl!(SqliteStore, Sqlite);
sql_channel_impl!(SqliteStore, Sqlite);
sql_outbox_impl!(SqliteStore, Sqlite);
super::analytics::sql_analytics_impl!(Sqlite);
