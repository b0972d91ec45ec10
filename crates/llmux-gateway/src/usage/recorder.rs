//! The batching usage recorder: request handlers hand it records without waiting; one
//! background task writes them to the [`Store`] in batches.
//!
//! Guarantees:
//! - [`UsageRecorder::record`] never blocks and never drops a record. It tries the bounded
//!   channel (`channel_capacity`, default 65,536); when that is full it appends to an overflow
//!   queue. The overflow queue is not capped, because a cap would have to drop or block;
//!   instead the *backlog* (records accepted but not yet written, including failed batches
//!   waiting for a retry) is exposed by [`UsageRecorder::backlog`], and past
//!   `channel_capacity + overflow_limit` (default 131,072 records, roughly 50 MB)
//!   [`UsageRecorder::is_saturated`] turns true and an error is logged: the gateway should then
//!   refuse new requests (503) rather than let memory grow. That is the documented bound.
//! - A failed batch is retried with exponential backoff (`max_retries`, default 5). If it
//!   still fails it is kept and retried on every later flush; nothing is discarded while the
//!   recorder runs. Replays are safe: the store ignores a `request_id` it already has.
//! - [`UsageRecorder::shutdown`] stops the task after draining the channel, the overflow queue
//!   and the kept batches, retrying each failing batch `max_retries` times. Records it still
//!   could not write are logged at error level and returned in the error, so the caller can
//!   dump them (they are never silently lost).
//!
//! Call `shutdown` after the HTTP server has stopped and its in-flight requests have ended
//! (their usage guards have fired); a record handed over after the final drain is logged as
//! an error with its request id.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinHandle;

use crate::store::{Store, StoreError, UsageRecord};

/// Recorder settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecorderConfig {
    /// Records per store write (default 256).
    pub batch_size: usize,
    /// A partial batch is written after this long (default 1 s).
    pub flush_interval: Duration,
    /// Capacity of the channel from handlers to the writer (default 65,536).
    pub channel_capacity: usize,
    /// Backlog beyond the channel above which the recorder reports saturation (default 65,536).
    pub overflow_limit: usize,
    /// Retries of a failed batch before it is set aside (default 5).
    pub max_retries: u32,
    /// First retry delay, doubled each retry (default 100 ms).
    pub retry_base: Duration,
    /// Longest retry delay (default 5 s).
    pub retry_max: Duration,
}

impl Default for RecorderConfig {
    fn default() -> Self {
        RecorderConfig {
            batch_size: 256,
            flush_interval: Duration::from_secs(1),
            channel_capacity: 65_536,
            overflow_limit: 65_536,
            max_retries: 5,
            retry_base: Duration::from_millis(100),
            retry_max: Duration::from_secs(5),
        }
    }
}

/// The recorder could not write everything at shutdown.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecorderError {
    /// Some records could not be written after retries; they are handed back.
    #[error("{} usage records could not be written: {error}", records.len())]
    Unwritten {
        /// The records not written (serialize them somewhere safe).
        records: Vec<UsageRecord>,
        /// The last store error.
        error: StoreError,
    },
    /// The writer task ended abnormally (a panic in the store); records may be lost.
    #[error("the usage writer task failed: {0}")]
    WriterFailed(String),
}

#[derive(Debug, Default)]
struct Shared {
    overflow: Mutex<VecDeque<UsageRecord>>,
    backlog: AtomicUsize,
    written: AtomicU64,
    closed: AtomicBool,
    saturated: AtomicBool,
    wake: Notify,
}

impl Shared {
    fn overflow(&self) -> MutexGuard<'_, VecDeque<UsageRecord>> {
        self.overflow
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

type Control = Option<(oneshot::Sender<()>, JoinHandle<Result<u64, RecorderError>>)>;

/// A handle to the recorder; clone it freely.
#[derive(Debug, Clone)]
pub struct UsageRecorder {
    tx: mpsc::Sender<UsageRecord>,
    shared: Arc<Shared>,
    cfg: RecorderConfig,
    control: Arc<Mutex<Control>>,
}

impl UsageRecorder {
    /// Starts the writer task. Call it from within the tokio runtime that serves the gateway.
    pub fn spawn(store: Arc<dyn Store>, cfg: RecorderConfig) -> UsageRecorder {
        let cfg = RecorderConfig {
            batch_size: cfg.batch_size.max(1),
            channel_capacity: cfg.channel_capacity.max(1),
            ..cfg
        };
        let (tx, rx) = mpsc::channel(cfg.channel_capacity);
        let (stop_tx, stop_rx) = oneshot::channel();
        let shared = Arc::new(Shared::default());
        let writer = Writer {
            store,
            rx,
            shared: shared.clone(),
            cfg,
            kept: Vec::new(),
        };
        let handle = tokio::spawn(writer.run(stop_rx));
        UsageRecorder {
            tx,
            shared,
            cfg,
            control: Arc::new(Mutex::new(Some((stop_tx, handle)))),
        }
    }

    /// Hands a record to the writer. Never blocks, never drops (see the module docs).
    pub fn record(&self, rec: UsageRecord) {
        if self.shared.closed.load(Ordering::Acquire) {
            tracing::error!(
                request_id = %rec.request_id,
                "A usage record arrived after the recorder shut down; it is not stored."
            );
            return;
        }
        let backlog = self.shared.backlog.fetch_add(1, Ordering::AcqRel) + 1;
        if let Err(err) = self.tx.try_send(rec) {
            let rec = match err {
                mpsc::error::TrySendError::Full(r) | mpsc::error::TrySendError::Closed(r) => r,
            };
            self.shared.overflow().push_back(rec);
            self.shared.wake.notify_one();
        }
        let limit = self.cfg.channel_capacity + self.cfg.overflow_limit;
        if backlog > limit && !self.shared.saturated.swap(true, Ordering::AcqRel) {
            tracing::error!(
                backlog,
                limit,
                "The usage recorder is saturated (the store is slow or down); new requests should be refused."
            );
        }
    }

    /// Records accepted but not yet written.
    pub fn backlog(&self) -> usize {
        self.shared.backlog.load(Ordering::Acquire)
    }

    /// True when the backlog exceeds `channel_capacity + overflow_limit`.
    pub fn is_saturated(&self) -> bool {
        self.backlog() > self.cfg.channel_capacity + self.cfg.overflow_limit
    }

    /// Records written since the recorder started.
    pub fn written(&self) -> u64 {
        self.shared.written.load(Ordering::Acquire)
    }

    /// Drains everything, stops the writer and returns the number of records written since
    /// the start. A second call (from another clone) returns the same count.
    pub async fn shutdown(self) -> Result<u64, RecorderError> {
        let control = self
            .control
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let Some((stop, handle)) = control else {
            return Ok(self.written());
        };
        // The writer may already have stopped (all other handles dropped); that is fine.
        let _ = stop.send(());
        match handle.await {
            Ok(result) => result,
            Err(e) => {
                tracing::error!(error = %e, "The usage writer task failed; usage records may be lost.");
                Err(RecorderError::WriterFailed(e.to_string()))
            }
        }
    }
}

struct Writer {
    store: Arc<dyn Store>,
    rx: mpsc::Receiver<UsageRecord>,
    shared: Arc<Shared>,
    cfg: RecorderConfig,
    /// Batches that failed all their retries, retried at every flush.
    kept: Vec<Vec<UsageRecord>>,
}

impl Writer {
    async fn run(mut self, mut stop: oneshot::Receiver<()>) -> Result<u64, RecorderError> {
        let mut tick = tokio::time::interval(self.cfg.flush_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut batch: Vec<UsageRecord> = Vec::with_capacity(self.cfg.batch_size);
        loop {
            tokio::select! {
                biased;
                _ = &mut stop => break,
                got = self.rx.recv() => match got {
                    Some(rec) => {
                        batch.push(rec);
                        self.fill(&mut batch);
                        if batch.len() >= self.cfg.batch_size {
                            self.flush(std::mem::take(&mut batch)).await;
                        }
                    }
                    None => break,
                },
                () = self.shared.wake.notified() => {
                    self.fill(&mut batch);
                    if batch.len() >= self.cfg.batch_size {
                        self.flush(std::mem::take(&mut batch)).await;
                    }
                }
                _ = tick.tick() => {
                    self.retry_kept().await;
                    self.fill(&mut batch);
                    if !batch.is_empty() {
                        self.flush(std::mem::take(&mut batch)).await;
                    }
                }
            }
        }
        self.drain(batch).await
    }

    /// Tops the batch up from the overflow queue (older records first), then the channel.
    fn fill(&mut self, batch: &mut Vec<UsageRecord>) {
        let room = self.cfg.batch_size.saturating_sub(batch.len());
        if room > 0 {
            let mut overflow = self.shared.overflow();
            let n = room.min(overflow.len());
            batch.extend(overflow.drain(..n));
        }
        while batch.len() < self.cfg.batch_size {
            match self.rx.try_recv() {
                Ok(rec) => batch.push(rec),
                Err(_) => break,
            }
        }
    }

    /// Writes a batch with retries; keeps it for later if every attempt fails.
    async fn flush(&mut self, batch: Vec<UsageRecord>) {
        if let Err((batch, _)) = self.write(batch).await {
            self.kept.push(batch);
        }
    }

    async fn retry_kept(&mut self) {
        for batch in std::mem::take(&mut self.kept) {
            self.flush(batch).await;
        }
    }

    async fn write(&self, batch: Vec<UsageRecord>) -> Result<(), (Vec<UsageRecord>, StoreError)> {
        let mut attempt = 0u32;
        loop {
            match self.store.record_usage(&batch).await {
                Ok(()) => {
                    let n = batch.len();
                    self.shared.written.fetch_add(n as u64, Ordering::AcqRel);
                    let left = self.shared.backlog.fetch_sub(n, Ordering::AcqRel) - n;
                    if left <= self.cfg.channel_capacity + self.cfg.overflow_limit {
                        self.shared.saturated.store(false, Ordering::Release);
                    }
                    return Ok(());
                }
                Err(e) if attempt < self.cfg.max_retries => {
                    let delay = self
                        .cfg
                        .retry_base
                        .saturating_mul(1u32 << attempt.min(20))
                        .min(self.cfg.retry_max);
                    tracing::warn!(
                        error = %e,
                        attempt = attempt + 1,
                        records = batch.len(),
                        "Writing usage records failed; retrying."
                    );
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(e) => {
                    tracing::error!(
                        error = %e,
                        records = batch.len(),
                        "Writing usage records failed after all retries; keeping them for the next flush."
                    );
                    return Err((batch, e));
                }
            }
        }
    }

    /// Final drain: closes intake, writes everything left, reports what could not be written.
    async fn drain(mut self, mut batch: Vec<UsageRecord>) -> Result<u64, RecorderError> {
        self.shared.closed.store(true, Ordering::Release);
        self.rx.close();
        let mut unwritten = Vec::new();
        let mut last_error = None;
        let mut pending = std::mem::take(&mut self.kept);
        loop {
            self.fill(&mut batch);
            if !batch.is_empty() {
                pending.push(std::mem::take(&mut batch));
            }
            if pending.is_empty() {
                break;
            }
            for b in std::mem::take(&mut pending) {
                if let Err((b, e)) = self.write(b).await {
                    unwritten.extend(b);
                    last_error = Some(e);
                }
            }
        }
        let written = self.shared.written.load(Ordering::Acquire);
        match last_error {
            None => {
                tracing::info!(written, "Usage recorder drained and stopped.");
                Ok(written)
            }
            Some(error) => {
                tracing::error!(
                    unwritten = unwritten.len(),
                    written,
                    error = %error,
                    "USAGE RECORDS LOST FROM THE STORE: the recorder could not write them at shutdown; they are returned to the caller."
                );
                Err(RecorderError::Unwritten {
                    records: unwritten,
                    error,
                })
            }
        }
    }
}
