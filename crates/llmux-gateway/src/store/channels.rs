//! Channels stored in the database (`gw_channels`, migration 0003): definitions created through
//! the admin API, with their credentials sealed ([`crate::channels::crypto`]), and the enabled
//! state an admin set on channels of `llmux.toml`. Every change bumps the one-row revision in
//! `gw_channel_rev` in the same transaction; gateways poll it ([`ChannelStore::channel_revision`])
//! and reload their routing table when it moves.

use std::fmt;

use super::Result;

/// One `gw_channels` row.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredChannel {
    /// The channel's unique name.
    pub name: String,
    /// `api` (a whole definition) or `file` (only `enabled`, for a channel of the file).
    pub source: String,
    /// Whether it takes traffic.
    pub enabled: bool,
    /// The definition without credentials, as JSON (`api` rows).
    pub spec: Option<String>,
    /// The credentials, sealed with the master key (`api` rows that have any).
    pub secrets: Option<String>,
    /// Bumped by every change of the row (optimistic concurrency for updates).
    pub version: i64,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds.
    pub updated_at: i64,
}

impl fmt::Debug for StoredChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredChannel")
            .field("name", &self.name)
            .field("source", &self.source)
            .field("enabled", &self.enabled)
            .field("spec", &self.spec)
            .field("secrets", &self.secrets.as_ref().map(|_| "<sealed>"))
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// What [`ChannelStore::insert_channel`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// The row was added.
    Added,
    /// A row with this name exists.
    Duplicate,
    /// The table already holds the most rows allowed.
    Full,
}

/// The channel table. Every write is one transaction that also bumps the revision.
#[async_trait::async_trait]
pub trait ChannelStore: Send + Sync {
    /// The revision: it changes whenever any stored channel does (one row, one query).
    async fn channel_revision(&self) -> Result<i64>;
    /// At most `limit` rows, by name.
    async fn list_channels(&self, limit: u32) -> Result<Vec<StoredChannel>>;
    /// One row.
    async fn get_channel(&self, name: &str) -> Result<Option<StoredChannel>>;
    /// Adds a row unless its name is taken or the table holds `max_rows` rows already.
    async fn insert_channel(&self, ch: &StoredChannel, max_rows: u32) -> Result<Inserted>;
    /// Replaces a row's `enabled`, `spec` and `secrets` if its version is still `expected`;
    /// `false` when the row is gone or changed meanwhile.
    async fn replace_channel(&self, ch: &StoredChannel, expected: i64) -> Result<bool>;
    /// Sets a row's enabled state, creating a `source` row for it when there is none.
    async fn set_channel_enabled(&self, name: &str, source: &str, enabled: bool) -> Result<()>;
    /// Deletes a row; `false` when there was none.
    async fn delete_channel(&self, name: &str) -> Result<bool>;
}

/// Unix milliseconds now.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Implements [`ChannelStore`] for a backend of [`super::sql_store_impl`] (same inherent
/// methods: `pool`, `write_lock()`, `begin_write()`).
macro_rules! sql_channel_impl {
    ($ty:ty, $db:ty) => {
        fn channel_from_row(
            row: &<$db as sqlx::Database>::Row,
        ) -> $crate::store::Result<$crate::store::channels::StoredChannel> {
            use sqlx::Row as _;
            let g = |e: sqlx::Error| $crate::store::StoreError::Data(e.to_string());
            Ok($crate::store::channels::StoredChannel {
                name: row.try_get("name").map_err(g)?,
                source: row.try_get("source").map_err(g)?,
                enabled: row.try_get("enabled").map_err(g)?,
                spec: row.try_get("spec").map_err(g)?,
                secrets: row.try_get("secrets").map_err(g)?,
                version: row.try_get("version").map_err(g)?,
                created_at: row.try_get("created_at").map_err(g)?,
                updated_at: row.try_get("updated_at").map_err(g)?,
            })
        }

        async fn bump_channel_revision(
            conn: &mut <$db as sqlx::Database>::Connection,
        ) -> $crate::store::Result<()> {
            sqlx::query("UPDATE gw_channel_rev SET rev = rev + 1 WHERE id = 1")
                .execute(&mut *conn)
                .await
                .map_err($crate::store::StoreError::query("bump the channel revision"))?;
            Ok(())
        }

        #[async_trait::async_trait]
        impl $crate::store::channels::ChannelStore for $ty {
            async fn channel_revision(&self) -> $crate::store::Result<i64> {
                use sqlx::Row as _;
                let row = sqlx::query("SELECT rev FROM gw_channel_rev WHERE id = 1")
                    .fetch_one(&self.pool)
                    .await
                    .map_err($crate::store::StoreError::query("read the channel revision"))?;
                row.try_get("rev")
                    .map_err(|e| $crate::store::StoreError::Data(e.to_string()))
            }

            async fn list_channels(
                &self,
                limit: u32,
            ) -> $crate::store::Result<Vec<$crate::store::channels::StoredChannel>> {
                let rows = sqlx::query(
                    "SELECT name, source, enabled, spec, secrets, version, created_at, updated_at \
                     FROM gw_channels ORDER BY name LIMIT $1",
                )
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err($crate::store::StoreError::query("list channels"))?;
                rows.iter().map(channel_from_row).collect()
            }

            async fn get_channel(
                &self,
                name: &str,
            ) -> $crate::store::Result<Option<$crate::store::channels::StoredChannel>> {
                let row = sqlx::query(
                    "SELECT name, source, enabled, spec, secrets, version, created_at, updated_at \
                     FROM gw_channels WHERE name = $1",
                )
                .bind(name)
                .fetch_optional(&self.pool)
                .await
                .map_err($crate::store::StoreError::query("read a channel"))?;
                row.as_ref().map(channel_from_row).transpose()
            }

            async fn insert_channel(
                &self,
                ch: &$crate::store::channels::StoredChannel,
                max_rows: u32,
            ) -> $crate::store::Result<$crate::store::channels::Inserted> {
                use sqlx::Row as _;
                use $crate::store::channels::{now_ms, Inserted};
                use $crate::store::StoreError;
                let _w = self.write_lock().await;
                let mut tx = self.begin_write().await?;
                let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM gw_channels")
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(StoreError::query("count channels"))?
                    .try_get("n")
                    .map_err(|e| StoreError::Data(e.to_string()))?;
                if n >= i64::from(max_rows) {
                    return Ok(Inserted::Full);
                }
                let now = now_ms();
                let done = sqlx::query(
                    "INSERT INTO gw_channels (name, source, enabled, spec, secrets, version, \
                     created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 1, $6, $6) \
                     ON CONFLICT (name) DO NOTHING",
                )
                .bind(&ch.name)
                .bind(&ch.source)
                .bind(ch.enabled)
                .bind(&ch.spec)
                .bind(&ch.secrets)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::query("add a channel"))?;
                if done.rows_affected() == 0 {
                    return Ok(Inserted::Duplicate);
                }
                bump_channel_revision(&mut tx).await?;
                tx.commit()
                    .await
                    .map_err(StoreError::query("commit a channel"))?;
                Ok(Inserted::Added)
            }

            async fn replace_channel(
                &self,
                ch: &$crate::store::channels::StoredChannel,
                expected: i64,
            ) -> $crate::store::Result<bool> {
                use $crate::store::StoreError;
                let _w = self.write_lock().await;
                let mut tx = self.begin_write().await?;
                let done = sqlx::query(
                    "UPDATE gw_channels SET enabled = $2, spec = $3, secrets = $4, \
                     version = version + 1, updated_at = $5 WHERE name = $1 AND version = $6",
                )
                .bind(&ch.name)
                .bind(ch.enabled)
                .bind(&ch.spec)
                .bind(&ch.secrets)
                .bind($crate::store::channels::now_ms())
                .bind(expected)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::query("update a channel"))?;
                if done.rows_affected() == 0 {
                    return Ok(false);
                }
                bump_channel_revision(&mut tx).await?;
                tx.commit()
                    .await
                    .map_err(StoreError::query("commit a channel"))?;
                Ok(true)
            }

            async fn set_channel_enabled(
                &self,
                name: &str,
                source: &str,
                enabled: bool,
            ) -> $crate::store::Result<()> {
                use $crate::store::StoreError;
                let _w = self.write_lock().await;
                let mut tx = self.begin_write().await?;
                sqlx::query(
                    "INSERT INTO gw_channels (name, source, enabled, version, created_at, \
                     updated_at) VALUES ($1, $2, $3, 1, $4, $4) ON CONFLICT (name) DO UPDATE SET \
                     enabled = excluded.enabled, version = gw_channels.version + 1, \
                     updated_at = excluded.updated_at",
                )
                .bind(name)
                .bind(source)
                .bind(enabled)
                .bind($crate::store::channels::now_ms())
                .execute(&mut *tx)
                .await
                .map_err(StoreError::query("enable or disable a channel"))?;
                bump_channel_revision(&mut tx).await?;
                tx.commit()
                    .await
                    .map_err(StoreError::query("commit a channel"))?;
                Ok(())
            }

            async fn delete_channel(&self, name: &str) -> $crate::store::Result<bool> {
                use $crate::store::StoreError;
                let _w = self.write_lock().await;
                let mut tx = self.begin_write().await?;
                let done = sqlx::query("DELETE FROM gw_channels WHERE name = $1")
                    .bind(name)
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::query("delete a channel"))?;
                if done.rows_affected() == 0 {
                    return Ok(false);
                }
                bump_channel_revision(&mut tx).await?;
                tx.commit()
                    .await
                    .map_err(StoreError::query("commit a channel"))?;
                Ok(true)
            }
        }
    };
}
pub(crate) use sql_channel_impl;
