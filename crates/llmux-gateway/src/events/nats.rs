//! The NATS JetStream sink ([`NatsSink`]) and reader ([`Tail`], behind `llmux events tail`),
//! with the `async-nats` client.
//!
//! - The stream (`events.stream`, taking `<events.subject>.>`) is created when absent, file
//!   storage, with `events.duplicate_window` and `events.max_age`. An existing stream is kept
//!   as its operator configured it, except that the gateway's subjects are added when it does
//!   not take them and its duplicate window is widened when shorter than the configured one.
//! - Each event goes to `<subject>.<provider>` with the header `Nats-Msg-Id: <request_id>` (the
//!   server stores an id once within the duplicate window) and `Nats-Expected-Stream`, so an
//!   event is never acknowledged by another stream that happens to take the subject.
//! - The client connects in the background and reconnects forever, its delays from
//!   [`crate::events::backoff_policy`]; while it is not connected, nothing is claimed from the
//!   outbox.

use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;
use futures::StreamExt as _;

use super::config::{EventsConfig, NatsAuth};
use super::{backoff_policy, Delivery, EventSink, OutgoingEvent, SinkError};

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The JetStream error code of a missing stream.
const STREAM_NOT_FOUND: u64 = 10059;

/// Publishes usage events to a JetStream stream.
pub struct NatsSink {
    client: async_nats::Client,
    js: jetstream::Context,
    stream: String,
    subject: String,
    /// `<subject>.>`: what the stream must take.
    filter: String,
    duplicate_window: Duration,
    max_age: Duration,
    /// The connection's secrets, scrubbed from error texts.
    secrets: Vec<String>,
}

impl std::fmt::Debug for NatsSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsSink")
            .field("stream", &self.stream)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

/// The secrets of `cfg` (server URLs, password, token), for scrubbing error texts.
fn secrets_of(cfg: &EventsConfig) -> Vec<String> {
    let mut s: Vec<String> = cfg.servers.iter().map(|u| u.expose().to_owned()).collect();
    match &cfg.auth {
        NatsAuth::Token(t) => s.push(t.expose().to_owned()),
        NatsAuth::UserPassword(_, p) => s.push(p.expose().to_owned()),
        NatsAuth::None | NatsAuth::CredentialsFile(_) => {}
    }
    s
}

/// An error's text without the connection's secrets.
fn scrubbed(e: &dyn std::fmt::Display, secrets: &[String]) -> String {
    let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
    crate::redact::scrub(&e.to_string(), &refs)
}

/// The client options of `cfg`: name, credentials, CA, timeouts, and reconnect delays from the
/// one backoff policy.
async fn options(cfg: &EventsConfig, name: &str) -> Result<async_nats::ConnectOptions, SinkError> {
    let mut opts = match &cfg.auth {
        NatsAuth::None => async_nats::ConnectOptions::new(),
        NatsAuth::Token(t) => async_nats::ConnectOptions::with_token(t.expose().to_owned()),
        NatsAuth::UserPassword(u, p) => {
            async_nats::ConnectOptions::with_user_and_password(u.clone(), p.expose().to_owned())
        }
        NatsAuth::CredentialsFile(path) => async_nats::ConnectOptions::with_credentials_file(path)
            .await
            .map_err(|e| {
                SinkError::Config(format!(
                    "cannot use the credentials file {}: {e}",
                    path.display()
                ))
            })?,
    };
    if let Some(ca) = &cfg.ca_file {
        opts = opts.add_root_certificates(ca.clone());
    }
    let policy = backoff_policy();
    Ok(opts
        .name(name)
        .connection_timeout(CONNECT_TIMEOUT)
        .max_reconnects(None)
        .reconnect_delay_callback(move |attempt| {
            policy.backoff(u32::try_from(attempt).unwrap_or(u32::MAX), fastrand::f64())
        }))
}

/// The server list of `cfg`.
fn servers(cfg: &EventsConfig) -> Vec<String> {
    cfg.servers.iter().map(|s| s.expose().to_owned()).collect()
}

/// True when the subject pattern `pattern` (a stream's subject, wildcards allowed) matches
/// every subject `filter` matches.
pub fn covers(pattern: &str, filter: &str) -> bool {
    let mut p = pattern.split('.');
    let mut f = filter.split('.');
    loop {
        match (p.next(), f.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(t)) if t != ">" => {}
            (Some(a), Some(b)) if a == b && a != "*" => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

impl NatsSink {
    /// A sink for `cfg`, connecting in the background (it returns at once, with the broker up
    /// or not). Fails only on unusable settings (an unreadable credentials file).
    pub async fn connect(cfg: &EventsConfig) -> Result<NatsSink, SinkError> {
        let secrets = secrets_of(cfg);
        let opts = options(cfg, "llmux-gateway")
            .await?
            .retry_on_initial_connect();
        let client = opts
            .connect(servers(cfg))
            .await
            .map_err(|e| SinkError::Config(scrubbed(&e, &secrets)))?;
        let js = jetstream::ContextBuilder::new()
            .timeout(cfg.ack_timeout)
            .build(client.clone());
        Ok(NatsSink {
            client,
            js,
            stream: cfg.stream.clone(),
            subject: cfg.subject.clone(),
            filter: cfg.stream_filter(),
            duplicate_window: cfg.duplicate_window,
            max_age: cfg.max_age,
            secrets,
        })
    }

    fn err(&self, e: &dyn std::fmt::Display) -> String {
        scrubbed(e, &self.secrets)
    }

    /// The stream configuration the gateway creates.
    fn stream_config(&self) -> stream::Config {
        stream::Config {
            name: self.stream.clone(),
            subjects: vec![self.filter.clone()],
            storage: stream::StorageType::File,
            duplicate_window: self.duplicate_window,
            max_age: self.max_age,
            description: Some("llmux usage events".into()),
            ..stream::Config::default()
        }
    }
}

#[async_trait::async_trait]
impl EventSink for NatsSink {
    fn describe(&self) -> String {
        format!("NATS JetStream stream {} ({})", self.stream, self.filter)
    }

    fn is_ready(&self) -> bool {
        self.client.connection_state() == State::Connected
    }

    async fn prepare(&self) -> Result<(), SinkError> {
        let filter = &self.filter;
        let info = match self.js.get_stream(&self.stream).await {
            Ok(s) => s.cached_info().clone(),
            Err(e) if is_not_found(&e) => {
                match self.js.create_stream(self.stream_config()).await {
                    Ok(_) => {
                        tracing::info!(stream = %self.stream, subjects = %filter, "created the usage-event stream");
                        return Ok(());
                    }
                    // Another replica created it at the same moment: use that one.
                    Err(create) => match self.js.get_stream(&self.stream).await {
                        Ok(s) => s.cached_info().clone(),
                        Err(_) => return Err(SinkError::Refused(self.err(&create))),
                    },
                }
            }
            Err(e) => return Err(SinkError::Unavailable(self.err(&e))),
        };
        let mut config = info.config;
        let mut changed = Vec::new();
        if !config.subjects.iter().any(|s| covers(s, filter)) {
            config.subjects.push(filter.clone());
            changed.push("subjects");
        }
        if config.duplicate_window < self.duplicate_window {
            config.duplicate_window = self.duplicate_window;
            changed.push("duplicate_window");
        }
        if !changed.is_empty() {
            self.js
                .update_stream(&config)
                .await
                .map_err(|e| SinkError::Refused(self.err(&e)))?;
            tracing::info!(stream = %self.stream, changed = ?changed, "updated the usage-event stream");
        }
        Ok(())
    }

    async fn publish(&self, events: &[OutgoingEvent]) -> Vec<Result<Delivery, SinkError>> {
        if !self.is_ready() {
            let e = SinkError::Unavailable("not connected".into());
            return events.iter().map(|_| Err(e.clone())).collect();
        }
        // Send every message first, then wait for the acknowledgements together.
        let mut pending = Vec::with_capacity(events.len());
        for e in events {
            let msg = jetstream::message::PublishMessage::build()
                .payload(e.payload.clone())
                .message_id(&e.id)
                .expected_stream(&self.stream);
            let subject = format!("{}.{}", self.subject, e.token);
            pending.push(self.js.send_publish(subject, msg).await);
        }
        let acks = futures::future::join_all(pending.into_iter().map(|sent| async move {
            match sent {
                Ok(ack) => ack.await.map_err(|e| (e.kind(), e.to_string())),
                Err(e) => Err((e.kind(), e.to_string())),
            }
        }))
        .await;
        acks.into_iter()
            .map(|a| match a {
                Ok(ack) if ack.stream != self.stream => Err(SinkError::Refused(format!(
                    "acknowledged by stream {} instead of {}",
                    ack.stream, self.stream
                ))),
                Ok(ack) if ack.duplicate => Ok(Delivery::Duplicate),
                Ok(_) => Ok(Delivery::Stored),
                Err((kind, text)) => {
                    let text = self.err(&text);
                    Err(match kind {
                        jetstream::context::PublishErrorKind::TimedOut
                        | jetstream::context::PublishErrorKind::BrokenPipe
                        | jetstream::context::PublishErrorKind::MaxAckPending => {
                            SinkError::Unavailable(text)
                        }
                        _ => SinkError::Refused(text),
                    })
                }
            })
            .collect()
    }
}

fn is_not_found(e: &jetstream::context::GetStreamError) -> bool {
    matches!(
        e.kind(),
        jetstream::context::GetStreamErrorKind::JetStream(j)
            if j.error_code() == jetstream::ErrorCode(STREAM_NOT_FOUND)
    )
}

/// Reads a usage-event stream from an ephemeral ordered consumer: what `llmux events tail`
/// prints.
pub struct Tail {
    messages: consumer::pull::Ordered,
    secrets: Vec<String>,
    /// Kept so the connection lives as long as the reader.
    _client: async_nats::Client,
}

impl std::fmt::Debug for Tail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tail").finish_non_exhaustive()
    }
}

impl Tail {
    /// Connects to `cfg`'s servers (failing at once when none answers within a few seconds),
    /// and reads `cfg.stream` from its first event (`from_start`) or from the next one
    /// published: every subject of the stream, or only those matching `filter`.
    pub async fn open(
        cfg: &EventsConfig,
        from_start: bool,
        filter: Option<&str>,
    ) -> Result<Tail, SinkError> {
        let secrets = secrets_of(cfg);
        let opts = options(cfg, "llmux-events-tail").await?;
        let client = opts.connect(servers(cfg)).await.map_err(|e| {
            SinkError::Unavailable(format!(
                "cannot connect to NATS: {}",
                scrubbed(&e, &secrets)
            ))
        })?;
        let js = jetstream::ContextBuilder::new()
            .timeout(CONNECT_TIMEOUT)
            .build(client.clone());
        let stream = js.get_stream(&cfg.stream).await.map_err(|e| {
            if is_not_found(&e) {
                SinkError::Refused(format!(
                    "the stream {} does not exist (a gateway with [events] creates it when it starts)",
                    cfg.stream
                ))
            } else {
                SinkError::Unavailable(format!(
                    "cannot read the stream {}: {}",
                    cfg.stream,
                    scrubbed(&e, &secrets)
                ))
            }
        })?;
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                deliver_policy: if from_start {
                    consumer::DeliverPolicy::All
                } else {
                    consumer::DeliverPolicy::New
                },
                filter_subject: filter.unwrap_or_default().to_owned(),
                ..consumer::pull::OrderedConfig::default()
            })
            .await
            .map_err(|e| {
                SinkError::Refused(format!(
                    "cannot create a consumer on {}: {}",
                    cfg.stream,
                    scrubbed(&e, &secrets)
                ))
            })?;
        let messages = consumer.messages().await.map_err(|e| {
            SinkError::Unavailable(format!(
                "cannot read {}: {}",
                cfg.stream,
                scrubbed(&e, &secrets)
            ))
        })?;
        Ok(Tail {
            messages,
            secrets,
            _client: client,
        })
    }

    /// The next event's body; `None` when the stream ended (the connection closed for good).
    pub async fn next(&mut self) -> Option<Result<Bytes, SinkError>> {
        let item = self.messages.next().await?;
        Some(
            item.map(|m| m.message.payload.clone())
                .map_err(|e| SinkError::Unavailable(scrubbed(&e, &self.secrets))),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::covers;

    #[test]
    fn stream_subjects_cover_the_gateways_filter() {
        let f = "llmux.usage.>";
        for yes in [">", "llmux.>", "llmux.usage.>", "*.usage.>", "llmux.*.>"] {
            assert!(covers(yes, f), "{yes}");
        }
        for no in [
            "llmux.usage.*",
            "llmux.usage",
            "other.>",
            "llmux.usage.openai",
            "llmux.usage.*.>",
        ] {
            assert!(!covers(no, f), "{no}");
        }
    }
}
