//! The usage-event outbox (`gw_outbox`, SQLite migration 0007, PostgreSQL 0006): with
//! `[events]` configured, every usage record the store inserts also queues its event here, in
//! the same transaction ([`crate::store::StoreOptions::outbox`]), so the broker being down never
//! loses an event and never holds up a request. The publisher
//! ([`crate::events::Publisher`]) drains it:
//! [`OutboxStore::claim_outbox`] leases a batch (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so
//! replicas draining one database take different rows), the events are published with
//! acknowledgements, and only then [`OutboxStore::ack_outbox`] deletes them; a batch that
//! could not be published is handed back ([`OutboxStore::release_outbox`]), and the rows of a
//! publisher that died become claimable again when its lease lapses.

use super::Result;

/// One queued event: the usage record as JSON, under the outbox's own sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    /// Position in the outbox (claims go in this order).
    pub seq: i64,
    /// The record's request id: the event's idempotency key at the broker.
    pub request_id: String,
    /// The [`crate::store::UsageRecord`] as JSON.
    pub payload: String,
    /// Claims so far, this one included.
    pub attempts: u32,
}

/// The outbox table. Both SQL backends implement it (see [`crate::store::Store::outbox`]).
#[async_trait::async_trait]
pub trait OutboxStore: Send + Sync {
    /// True when usage records queue events here (the store was opened with
    /// [`crate::store::StoreOptions::outbox`]).
    fn outbox_enabled(&self) -> bool;
    /// Claims up to `limit` rows, oldest first, among those no live claim holds at `now_ms`:
    /// they are `owner`'s until `lease_until_ms` (unix ms). Rows another transaction is
    /// claiming at the same moment are skipped, not waited for.
    async fn claim_outbox(
        &self,
        owner: &str,
        now_ms: i64,
        lease_until_ms: i64,
        limit: u32,
    ) -> Result<Vec<OutboxRow>>;
    /// Deletes published rows (the broker acknowledged them). Returns how many were deleted.
    async fn ack_outbox(&self, seqs: &[i64]) -> Result<u64>;
    /// Hands back rows `owner` claimed but could not publish: claimable again at once.
    async fn release_outbox(&self, owner: &str, seqs: &[i64]) -> Result<()>;
    /// Rows waiting (claimed or not).
    async fn outbox_depth(&self) -> Result<u64>;
}

/// Rows per multi-row outbox insert (three parameters each). A power of two: see
/// [`crate::store::pow2_chunks`].
pub(crate) const OUTBOX_CHUNK: usize = 128;

/// Ids per `IN (…)` list of an acknowledgement or release.
pub(crate) const ID_CHUNK: usize = 512;

/// Implements [`OutboxStore`] for a backend (as `sql_store_impl!` does for `Store`), and the
/// module-level `insert_outbox` that `insert_usage` calls inside its transaction. The backend
/// declares `CLAIM_LOCK`, the row-lock clause of the claim's subquery.
macro_rules! sql_outbox_impl {
    ($ty:ty, $db:ty) => {
        /// Queues the events of `records` (records this transaction inserted), at most one per
        /// request id.
        async fn insert_outbox(
            conn: &mut <$db as sqlx::Database>::Connection,
            records: &[&$crate::store::UsageRecord],
        ) -> $crate::store::Result<()> {
            use $crate::store::outbox::OUTBOX_CHUNK;
            use $crate::store::StoreError;
            if records.is_empty() {
                return Ok(());
            }
            let now = $crate::store::channels::now_ms();
            let mut rows = Vec::with_capacity(records.len());
            for r in records.iter().copied() {
                let payload = serde_json::to_string(r)
                    .map_err(|e| StoreError::Data(format!("encoding a usage event: {e}")))?;
                rows.push((r.request_id.as_str(), payload));
            }
            for chunk in $crate::store::pow2_chunks(&rows, OUTBOX_CHUNK) {
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO gw_outbox (request_id, created_ms, payload) ",
                );
                qb.push_values(chunk, |mut b, (id, payload)| {
                    b.push_bind(*id);
                    b.push_bind(now);
                    b.push_bind(payload.as_str());
                });
                qb.push(" ON CONFLICT (request_id) DO NOTHING");
                qb.build()
                    .execute(&mut *conn)
                    .await
                    .map_err(StoreError::query("queue usage events"))?;
            }
            Ok(())
        }

        #[async_trait::async_trait]
        impl $crate::store::outbox::OutboxStore for $ty {
            fn outbox_enabled(&self) -> bool {
                self.outbox
            }

            async fn claim_outbox(
                &self,
                owner: &str,
                now_ms: i64,
                lease_until_ms: i64,
                limit: u32,
            ) -> $crate::store::Result<Vec<$crate::store::outbox::OutboxRow>> {
                use sqlx::Row as _;
                use $crate::store::StoreError;
                static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
                let sql = SQL.get_or_init(|| {
                    format!(
                        "UPDATE gw_outbox SET claimed_by = $1, claimed_until = $2, \
                         attempts = attempts + 1 \
                         WHERE seq IN (SELECT seq FROM gw_outbox WHERE claimed_until < $3 \
                         ORDER BY seq LIMIT $4{}) \
                         RETURNING seq, request_id, payload, attempts",
                        <$ty>::CLAIM_LOCK
                    )
                });
                let _w = self.write_lock().await;
                let rows = sqlx::query(sql)
                    .bind(owner)
                    .bind(lease_until_ms)
                    .bind(now_ms)
                    .bind(i64::from(limit))
                    .fetch_all(self.writes())
                    .await
                    .map_err(StoreError::query("claim queued usage events"))?;
                let g = |e: sqlx::Error| StoreError::Data(e.to_string());
                let mut out = Vec::with_capacity(rows.len());
                for row in rows {
                    let attempts: i32 = row.try_get("attempts").map_err(g)?;
                    out.push($crate::store::outbox::OutboxRow {
                        seq: row.try_get("seq").map_err(g)?,
                        request_id: row.try_get("request_id").map_err(g)?,
                        payload: row.try_get("payload").map_err(g)?,
                        attempts: u32::try_from(attempts).unwrap_or(0),
                    });
                }
                out.sort_by_key(|r| r.seq);
                Ok(out)
            }

            async fn ack_outbox(&self, seqs: &[i64]) -> $crate::store::Result<u64> {
                use $crate::store::outbox::ID_CHUNK;
                use $crate::store::StoreError;
                let _w = self.write_lock().await;
                let mut deleted = 0;
                for chunk in seqs.chunks(ID_CHUNK) {
                    let mut qb =
                        sqlx::QueryBuilder::<$db>::new("DELETE FROM gw_outbox WHERE seq IN (");
                    let mut list = qb.separated(", ");
                    for s in chunk {
                        list.push_bind(*s);
                    }
                    qb.push(")");
                    deleted += qb
                        .build()
                        .execute(self.writes())
                        .await
                        .map_err(StoreError::query("delete published usage events"))?
                        .rows_affected();
                }
                Ok(deleted)
            }

            async fn release_outbox(
                &self,
                owner: &str,
                seqs: &[i64],
            ) -> $crate::store::Result<()> {
                use $crate::store::outbox::ID_CHUNK;
                use $crate::store::StoreError;
                let _w = self.write_lock().await;
                for chunk in seqs.chunks(ID_CHUNK) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(
                        "UPDATE gw_outbox SET claimed_by = NULL, claimed_until = 0 WHERE claimed_by = ",
                    );
                    qb.push_bind(owner);
                    qb.push(" AND seq IN (");
                    let mut list = qb.separated(", ");
                    for s in chunk {
                        list.push_bind(*s);
                    }
                    qb.push(")");
                    qb.build()
                        .execute(self.writes())
                        .await
                        .map_err(StoreError::query("release queued usage events"))?;
                }
                Ok(())
            }

            async fn outbox_depth(&self) -> $crate::store::Result<u64> {
                count_rows(
                    &self.pool,
                    "SELECT COUNT(*) AS n FROM gw_outbox",
                    "count queued usage events",
                )
                .await
            }
        }
    };
}

pub(crate) use sql_outbox_impl;
