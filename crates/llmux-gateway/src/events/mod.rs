//! Usage events: every usage record the store inserts is also published to an event broker
//! (NATS JetStream, [`nats`]), for billing and analytics pipelines.
//!
//! The path of an event (see `docs/events.md`):
//! 1. the store inserts a record and, in the same transaction, queues its event in the outbox
//!    (`gw_outbox`, [`crate::store::outbox`]); a request never waits for the broker;
//! 2. the [`Publisher`], one background task per gateway, claims a batch of queued rows (a
//!    lease, so replicas on one database take different rows), publishes each as a
//!    [`UsageEvent`] through an [`EventSink`] with the record's `request_id` as its message id,
//!    and deletes the rows the broker acknowledged; the others are handed back and retried with
//!    the backoff of [`RetryPolicy`];
//! 3. the broker stores a message id once within its duplicate window, so a batch published
//!    twice (an acknowledgement lost, a publisher that died after publishing) is stored once.
//!
//! Delivery is at least once into the broker, deduplicated by id within the window; nothing is
//! lost while the broker is down (the outbox grows, `llmux_events_outbox_depth` shows it).
//!
//! Another broker is one module implementing [`EventSink`], and one line where `serve` builds
//! the sink.

pub mod config;
pub mod nats;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use llmux_core::resilience::RetryPolicy;
use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use config::{EventsConfig, RawEvents};

use crate::store::{OutboxRow, Store, UsageRecord};

/// The version of [`UsageEvent`]'s shape. Adding a field keeps it; renaming, removing or
/// changing the meaning of one raises it.
pub const SCHEMA_VERSION: u32 = 1;

/// One usage event, as published (JSON): the schema version, the accounting currency, and the
/// usage record's fields at the top level (documented field by field in `docs/events.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageEvent {
    /// [`SCHEMA_VERSION`] of the gateway that published it.
    pub schema: u32,
    /// The currency of `cost` (`server.currency`).
    pub currency: String,
    /// The record.
    #[serde(flatten)]
    pub record: UsageRecord,
}

/// An event ready to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingEvent {
    /// The idempotency key (the record's `request_id`).
    pub id: String,
    /// The last subject token (the record's provider, made subject-safe).
    pub token: String,
    /// The JSON body.
    pub payload: Bytes,
}

/// What the broker said about one published event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Stored.
    Stored,
    /// Already stored under the same id (within the duplicate window): not stored again.
    Duplicate,
}

/// A broker failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// The broker is not reachable (not connected, timed out).
    #[error("the event broker is unavailable: {0}")]
    Unavailable(String),
    /// The broker refused (no such stream, a permission, a configuration conflict).
    #[error("the event broker refused: {0}")]
    Refused(String),
    /// The sink's settings are unusable.
    #[error("invalid event broker settings: {0}")]
    Config(String),
}

/// Where usage events go. Publishing must be idempotent on [`OutgoingEvent::id`] (within the
/// broker's duplicate window), since a batch can be published again.
#[async_trait::async_trait]
pub trait EventSink: Send + Sync + 'static {
    /// What the sink publishes to, for log lines (no credentials).
    fn describe(&self) -> String;
    /// True while the sink can publish (connected); a publisher does not claim rows otherwise.
    fn is_ready(&self) -> bool;
    /// Makes sure the destination exists and takes the events (creating or updating it);
    /// called before the first publish and again after a failed one.
    async fn prepare(&self) -> Result<(), SinkError>;
    /// Publishes `events` and waits for the broker's acknowledgements: one result per event,
    /// in order.
    async fn publish(&self, events: &[OutgoingEvent]) -> Vec<Result<Delivery, SinkError>>;
}

/// The last subject token of a record: its provider id, with anything outside
/// `[A-Za-z0-9_-]` replaced by `_` (at most 64 bytes; `none` when empty).
pub fn subject_token(provider: &str) -> String {
    let token: String = provider
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if token.is_empty() {
        "none".into()
    } else {
        token
    }
}

/// The event of an outbox row (the record as JSON), or why it cannot be built.
pub fn encode(row: &OutboxRow, currency: &str) -> Result<OutgoingEvent, String> {
    let record: UsageRecord = serde_json::from_str(&row.payload)
        .map_err(|e| format!("the queued record does not decode: {e}"))?;
    let token = subject_token(&record.provider);
    let event = UsageEvent {
        schema: SCHEMA_VERSION,
        currency: currency.to_owned(),
        record,
    };
    let payload = serde_json::to_vec(&event).map_err(|e| e.to_string())?;
    Ok(OutgoingEvent {
        id: row.request_id.clone(),
        token,
        payload: Bytes::from(payload),
    })
}

/// The publisher's series.
#[derive(Debug, Clone)]
pub struct EventMetrics {
    /// `llmux_events_published_total`: events the broker acknowledged (and the outbox let go),
    /// duplicates included.
    pub published: IntCounter,
    /// `llmux_events_duplicates_total`: acknowledged events the broker already had (same id
    /// within its duplicate window): published again, stored once.
    pub duplicates: IntCounter,
    /// `llmux_events_outbox_depth`: events waiting in the outbox (of every replica on the
    /// database), as last counted.
    pub outbox_depth: IntGauge,
    /// `llmux_events_errors_total{stage}`: failed attempts: `connect` (the broker unreachable),
    /// `prepare` (the stream could not be checked or created), `store` (the outbox could not
    /// be read or updated), `encode` (a queued row that does not decode), and `publish`, one per
    /// event not acknowledged.
    pub errors: IntCounterVec,
}

/// The `stage` labels of `llmux_events_errors_total`.
pub const ERROR_STAGES: [&str; 5] = ["connect", "prepare", "store", "encode", "publish"];

impl EventMetrics {
    /// The series, registered in `registry`.
    pub fn register(registry: &Registry) -> Result<EventMetrics, prometheus::Error> {
        let m = EventMetrics {
            published: IntCounter::with_opts(Opts::new(
                "llmux_events_published_total",
                "Usage events the broker acknowledged (duplicates included).",
            ))?,
            duplicates: IntCounter::with_opts(Opts::new(
                "llmux_events_duplicates_total",
                "Acknowledged usage events the broker already had (deduplicated by id).",
            ))?,
            outbox_depth: IntGauge::with_opts(Opts::new(
                "llmux_events_outbox_depth",
                "Usage events waiting in the outbox, as last counted.",
            ))?,
            errors: IntCounterVec::new(
                Opts::new(
                    "llmux_events_errors_total",
                    "Failed usage-event publishing attempts, by stage.",
                ),
                &["stage"],
            )?,
        };
        registry.register(Box::new(m.published.clone()))?;
        registry.register(Box::new(m.duplicates.clone()))?;
        registry.register(Box::new(m.outbox_depth.clone()))?;
        registry.register(Box::new(m.errors.clone()))?;
        for stage in ERROR_STAGES {
            m.errors.with_label_values(&[stage]);
        }
        Ok(m)
    }

    fn error(&self, stage: &str, n: u64) {
        self.errors.with_label_values(&[stage]).inc_by(n);
    }
}

/// The publisher's settings.
#[derive(Debug, Clone)]
pub struct PublisherConfig {
    /// Events per batch.
    pub batch_size: usize,
    /// Outbox poll interval when it was empty.
    pub poll_interval: Duration,
    /// How long a claim on a batch lasts.
    pub lease: Duration,
    /// The currency events name.
    pub currency: String,
    /// Backoff while the broker or the store fails (only `base_delay` and `max_delay` count;
    /// attempts are unbounded: nothing is ever dropped).
    pub retry: RetryPolicy,
}

impl PublisherConfig {
    /// The settings of `[events]`, with events in `currency`.
    pub fn new(cfg: &EventsConfig, currency: &str) -> PublisherConfig {
        PublisherConfig {
            batch_size: cfg.batch_size,
            poll_interval: cfg.poll_interval,
            lease: config::CLAIM_LEASE,
            currency: currency.to_owned(),
            retry: backoff_policy(),
        }
    }
}

/// The backoff of the publisher and of the NATS client's reconnects: 100 ms doubling to 5 s,
/// with full jitter.
pub fn backoff_policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: u32::MAX,
        base_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(5),
        ..RetryPolicy::default()
    }
}

/// How one round of draining ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Round {
    /// A full batch went out: there may be more.
    More,
    /// The outbox had nothing (more) to claim.
    Idle,
    /// Something failed: back off.
    Failed,
}

/// Drains the outbox into an [`EventSink`] (see the module docs).
pub struct Publisher {
    store: Arc<dyn Store>,
    sink: Arc<dyn EventSink>,
    metrics: EventMetrics,
    cfg: PublisherConfig,
    /// Who claims (the gateway instance id).
    owner: String,
    /// The destination was prepared since the last failure.
    prepared: bool,
    /// Rows published but not yet deleted (the store failed at that moment).
    unacked: Vec<i64>,
    /// Backoff attempt (0: the last round went well).
    failures: u32,
    last_depth: Option<Instant>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("sink", &self.sink.describe())
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

/// A running [`Publisher`].
#[derive(Debug)]
pub struct PublisherHandle {
    stop: oneshot::Sender<Duration>,
    task: JoinHandle<u64>,
}

impl PublisherHandle {
    /// Stops the publisher after a last drain of at most `grace` (what the recorder committed
    /// last goes out now when the broker is up). Returns the events left in the outbox as last
    /// counted: the next gateway on this database publishes them.
    pub async fn shutdown(self, grace: Duration) -> u64 {
        let _ = self.stop.send(grace);
        self.task.await.unwrap_or(0)
    }
}

impl Publisher {
    /// A publisher of `store`'s outbox to `sink`, claiming as `owner`.
    pub fn new(
        store: Arc<dyn Store>,
        sink: Arc<dyn EventSink>,
        metrics: EventMetrics,
        cfg: PublisherConfig,
        owner: &str,
    ) -> Publisher {
        Publisher {
            store,
            sink,
            metrics,
            cfg,
            owner: owner.to_owned(),
            prepared: false,
            unacked: Vec::new(),
            failures: 0,
            last_depth: None,
        }
    }

    /// Runs the publisher in a task of the current runtime.
    pub fn spawn(self) -> PublisherHandle {
        let (stop, rx) = oneshot::channel();
        let task = tokio::spawn(self.run(rx));
        PublisherHandle { stop, task }
    }

    async fn run(mut self, mut stop: oneshot::Receiver<Duration>) -> u64 {
        tracing::info!(sink = %self.sink.describe(), "publishing usage events");
        let until_after =
            |grace: Result<Duration, _>| Instant::now() + grace.unwrap_or(Duration::ZERO);
        let deadline = loop {
            // A round in progress when the stop comes still gets the grace to finish.
            let (round, stopped) = {
                let round = self.round();
                tokio::pin!(round);
                tokio::select! {
                    biased;
                    r = &mut round => (r, None),
                    grace = &mut stop => {
                        let until = until_after(grace);
                        let r = tokio::time::timeout_at(until, round).await;
                        (r.unwrap_or(Round::Failed), Some(until))
                    }
                }
            };
            if let Some(until) = stopped {
                break until;
            }
            let wait = self.next_wait(round);
            self.refresh_depth(false).await;
            tokio::select! {
                biased;
                grace = &mut stop => break until_after(grace),
                () = tokio::time::sleep(wait) => {}
            }
        };
        // The last drain: what the recorder committed at shutdown, while the broker answers.
        let drained = tokio::time::timeout_at(deadline, async {
            while self.round().await == Round::More {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!("the last drain of the usage-event outbox ran out of time");
        }
        self.refresh_depth(true).await;
        let left = u64::try_from(self.metrics.outbox_depth.get()).unwrap_or(0);
        if left > 0 {
            tracing::warn!(
                left,
                "usage events are still queued in the outbox; a gateway on this database publishes them"
            );
        }
        left
    }

    /// How long to wait after `round`.
    fn next_wait(&mut self, round: Round) -> Duration {
        match round {
            Round::More => {
                self.failures = 0;
                Duration::ZERO
            }
            Round::Idle => {
                self.failures = 0;
                self.cfg.poll_interval
            }
            Round::Failed => {
                self.failures = self.failures.saturating_add(1);
                self.cfg.retry.backoff(self.failures, fastrand::f64())
            }
        }
    }

    /// Counts the outbox at most once per poll interval (or now, when `force`).
    async fn refresh_depth(&mut self, force: bool) {
        let due = self
            .last_depth
            .is_none_or(|t| t.elapsed() >= self.cfg.poll_interval.max(Duration::from_secs(1)));
        if !(due || force) {
            return;
        }
        let Some(outbox) = self.store.outbox() else {
            return;
        };
        self.last_depth = Some(Instant::now());
        match outbox.outbox_depth().await {
            Ok(n) => self
                .metrics
                .outbox_depth
                .set(i64::try_from(n).unwrap_or(i64::MAX)),
            Err(e) => {
                self.metrics.error("store", 1);
                tracing::warn!(error = %e, "counting the usage-event outbox failed");
            }
        }
    }

    /// One claim, publish and acknowledgement.
    async fn round(&mut self) -> Round {
        let Some(outbox) = self.store.outbox() else {
            return Round::Idle;
        };
        if !self.unacked.is_empty() {
            match outbox.ack_outbox(&self.unacked).await {
                Ok(_) => self.unacked.clear(),
                Err(e) => {
                    self.metrics.error("store", 1);
                    tracing::warn!(error = %e, "deleting published usage events from the outbox failed; retrying");
                    return Round::Failed;
                }
            }
        }
        if !self.sink.is_ready() {
            self.metrics.error("connect", 1);
            if self.failures == 0 {
                tracing::warn!(sink = %self.sink.describe(), "the event broker is unreachable; usage events wait in the outbox");
            }
            return Round::Failed;
        }
        if !self.prepared {
            if let Err(e) = self.sink.prepare().await {
                self.metrics.error("prepare", 1);
                tracing::warn!(error = %e, sink = %self.sink.describe(), "preparing the event stream failed; retrying");
                return Round::Failed;
            }
            self.prepared = true;
        }
        let now = crate::store::channels::now_ms();
        let lease_ms = i64::try_from(self.cfg.lease.as_millis()).unwrap_or(i64::MAX);
        let limit = u32::try_from(self.cfg.batch_size).unwrap_or(u32::MAX);
        let rows = match outbox
            .claim_outbox(&self.owner, now, now.saturating_add(lease_ms), limit)
            .await
        {
            Ok(rows) => rows,
            Err(e) => {
                self.metrics.error("store", 1);
                tracing::warn!(error = %e, "claiming queued usage events failed; retrying");
                return Round::Failed;
            }
        };
        if rows.is_empty() {
            return Round::Idle;
        }
        let full = rows.len() >= self.cfg.batch_size;
        let mut events = Vec::with_capacity(rows.len());
        let mut sent = Vec::with_capacity(rows.len());
        for row in &rows {
            match encode(row, &self.cfg.currency) {
                Ok(e) => {
                    events.push(e);
                    sent.push(row);
                }
                // Kept claimed: it comes back when its claim lapses, and never holds up the
                // others.
                Err(why) => {
                    self.metrics.error("encode", 1);
                    tracing::error!(request_id = %row.request_id, seq = row.seq, attempts = row.attempts, error = %why, "a queued usage event cannot be published; it stays in the outbox");
                }
            }
        }
        if events.is_empty() {
            return if full { Round::More } else { Round::Idle };
        }
        let results = self.sink.publish(&events).await;
        let mut acked = Vec::with_capacity(events.len());
        let mut failed = Vec::new();
        let mut first_error = None;
        for (i, row) in sent.iter().enumerate() {
            match results.get(i) {
                Some(Ok(delivery)) => {
                    acked.push(row.seq);
                    self.metrics.published.inc();
                    if *delivery == Delivery::Duplicate {
                        self.metrics.duplicates.inc();
                    }
                }
                Some(Err(e)) => {
                    if row.attempts >= STUCK_ATTEMPTS {
                        tracing::error!(request_id = %row.request_id, attempts = row.attempts, error = %e, "a usage event keeps failing to publish; it stays in the outbox");
                    }
                    first_error.get_or_insert_with(|| e.clone());
                    failed.push(row.seq);
                }
                None => failed.push(row.seq),
            }
        }
        if !failed.is_empty() {
            self.metrics
                .error("publish", u64::try_from(failed.len()).unwrap_or(u64::MAX));
            // The stream may have been deleted or changed: check it again first.
            self.prepared = false;
            tracing::warn!(
                failed = failed.len(),
                published = acked.len(),
                error = %first_error.map_or_else(|| "no acknowledgement".to_owned(), |e| e.to_string()),
                "publishing usage events failed; they stay in the outbox"
            );
        }
        if !acked.is_empty() {
            if let Err(e) = outbox.ack_outbox(&acked).await {
                self.metrics.error("store", 1);
                tracing::warn!(error = %e, "deleting published usage events from the outbox failed; retrying");
                self.unacked = acked;
                return Round::Failed;
            }
        }
        if failed.is_empty() {
            return if full { Round::More } else { Round::Idle };
        }
        if !acked.is_empty() {
            // Some went through: the broker works, these few did not. They keep their claim
            // and come back when it lapses, so an event the broker keeps refusing never holds
            // up the others.
            return Round::Idle;
        }
        // Nothing went through: hand the batch back (another replica may publish it) and back
        // off.
        if let Err(e) = outbox.release_outbox(&self.owner, &failed).await {
            // Their claim lapses on its own.
            self.metrics.error("store", 1);
            tracing::warn!(error = %e, "handing back unpublished usage events failed");
        }
        Round::Failed
    }
}

/// Claims after which an event that still fails to publish is logged at error level.
const STUCK_ATTEMPTS: u32 = 10;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_tokens_are_safe_single_tokens() {
        assert_eq!(subject_token("openai"), "openai");
        assert_eq!(subject_token("dashscope-compat"), "dashscope-compat");
        assert_eq!(subject_token(""), "none");
        assert_eq!(subject_token("a.b *>c"), "a_b___c");
        assert_eq!(subject_token(&"x".repeat(100)).len(), 64);
    }

    #[test]
    fn an_event_is_the_record_with_its_schema_and_currency() {
        let record = UsageRecord {
            request_id: "0192-abc".into(),
            provider: "openai".into(),
            model: "m".into(),
            input_tokens: 3,
            output_tokens: 5,
            cost: 0.1 + 0.2,
            status: 200,
            ..UsageRecord::default()
        };
        let row = OutboxRow {
            seq: 7,
            request_id: record.request_id.clone(),
            payload: serde_json::to_string(&record).unwrap(),
            attempts: 1,
        };
        let e = encode(&row, "USD").unwrap();
        assert_eq!(e.id, "0192-abc");
        assert_eq!(e.token, "openai");
        let v: serde_json::Value = serde_json::from_slice(&e.payload).unwrap();
        assert_eq!(v["schema"], SCHEMA_VERSION);
        assert_eq!(v["currency"], "USD");
        assert_eq!(v["request_id"], "0192-abc");
        assert_eq!(v["input_tokens"], 3);
        let back: UsageEvent = serde_json::from_slice(&e.payload).unwrap();
        assert_eq!(back.record, record, "the cost round-trips exactly");
        let bad = OutboxRow {
            payload: "{".into(),
            ..row
        };
        assert!(encode(&bad, "USD").is_err());
    }
}
