//! Model discovery: a channel asks its upstream which models it has (through
//! [`llmux_core::Client::models`], the provider's own list: OpenAI-compatible `GET /models`,
//! Ollama `/api/tags`, Anthropic's and Gemini's lists…) and the answer becomes routable through
//! that channel ([`Routes::set_discovered`]).
//!
//! When: on demand (`POST /admin/channels/{name}/discover`, [`discover`]), and for a channel with
//! `discover = "1h"` on a schedule ([`spawn`]): first within a few seconds of start, then every
//! interval ± 10 % (jittered, so replicas do not ask together). Each attempt is bounded by
//! [`TIMEOUT`]; a failure keeps the last good list, and a run of failures is logged once when it
//! begins and once when it ends.
//!
//! Bounds, because an upstream's answer is not trusted: the body is read up to
//! `MAX_MODEL_LIST_BYTES` of `llmux_core` (8 MiB); a list of more than [`MAX_MODELS`] entries is
//! refused whole (the last good list stays: a cut list would drop models at random); an id that
//! is empty, longer than [`MAX_ID_BYTES`] or holds whitespace or control characters is skipped
//! (and counted); duplicates count once.
//!
//! What the discovered ids are served as, and how a provider's built-in model list gives way to
//! them, is described in [`crate::routing`].

use std::sync::Arc;
use std::time::Duration;

use llmux_core::resilience::retry::humantime_serde::parse_duration;
use llmux_core::ErrorKind;
use serde::{Deserialize, Deserializer, Serialize};
use tokio::task::JoinHandle;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::routing::Routes;

/// The schedule of channels made from provider variables whose provider needs no credential
/// (self-hosted runtimes such as Ollama): every hour.
pub const DEFAULT_ENV_INTERVAL: Duration = Duration::from_secs(3600);
/// The shortest accepted `discover` interval.
pub const MIN_INTERVAL: Duration = Duration::from_secs(60);
/// The longest accepted `discover` interval.
pub const MAX_INTERVAL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Most entries an upstream's list may hold; a longer list is refused whole.
pub const MAX_MODELS: usize = 4096;
/// Longest model id kept, in bytes; longer ones are skipped.
pub const MAX_ID_BYTES: usize = 256;
/// How long one discovery may take.
pub const TIMEOUT: Duration = Duration::from_secs(30);
/// The first scheduled discovery happens within this long after start (spread at random).
const FIRST_WITHIN: Duration = Duration::from_secs(3);

/// Reads `discover = "1h"` (a duration within [`MIN_INTERVAL`]..=[`MAX_INTERVAL`]).
pub fn deserialize_interval<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(d)?;
    let every = parse_duration(&text).map_err(serde::de::Error::custom)?;
    if !(MIN_INTERVAL..=MAX_INTERVAL).contains(&every) {
        return Err(serde::de::Error::custom(format!(
            "`{text}` is outside 1m..=7d"
        )));
    }
    Ok(Some(every))
}

/// `POST /admin/channels/{name}/discover`: what the upstream listed and what the channel
/// serves now.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Discovered {
    /// The channel's name.
    pub channel: String,
    /// The upstream's model ids as kept (sorted, distinct, within the bounds).
    pub upstream: Vec<String>,
    /// Ids the upstream listed that were skipped (empty, too long, or with whitespace or
    /// control characters).
    pub skipped: usize,
    /// The public model names the channel serves now (configured and discovered), sorted.
    pub models: Vec<String>,
}

/// Checks an upstream's list against the bounds: the kept ids (sorted, distinct) and how many
/// were skipped, or the error refusing a list that is too long.
pub fn check(ids: Vec<String>) -> Result<(Vec<String>, usize), ApiError> {
    if ids.len() > MAX_MODELS {
        return Err(ApiError::new(
            ErrorKind::UpstreamProtocol,
            format!(
                "the upstream listed {} models, more than the {MAX_MODELS} accepted; the last good list is kept",
                ids.len()
            ),
        ));
    }
    let total = ids.len();
    let mut kept: Vec<String> = ids.into_iter().filter(|id| valid_id(id)).collect();
    let skipped = total - kept.len();
    kept.sort_unstable();
    kept.dedup();
    Ok((kept, skipped))
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_BYTES
        && !id.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Discovers the models of the channel named `name` now and makes them routable.
pub async fn discover(routes: &Routes, name: &str) -> Result<Discovered, ApiError> {
    let Some(ch) = routes.channel(name).cloned() else {
        let mut e = ApiError::new(ErrorKind::NotFound, format!("no channel named `{name}`"));
        e.code = Some("channel_not_found");
        return Err(e);
    };
    if !ch.provider.capabilities().list_models {
        return Err(ApiError::new(
            ErrorKind::Unsupported,
            format!(
                "provider `{}` cannot list its models; list them in the channel's `models`",
                ch.provider_id
            ),
        ));
    }
    let listed = match tokio::time::timeout(TIMEOUT, ch.client.models(ch.provider_id)).await {
        Ok(Ok(list)) => list,
        Ok(Err(e)) => {
            tracing::debug!(channel = %ch.name, error = ?e, "model discovery failed");
            let base = ApiError::from_upstream(&e);
            return Err(ApiError::new(
                ErrorKind::UpstreamServer,
                format!(
                    "the upstream's model list failed ({}): {}",
                    e.kind(),
                    base.message
                ),
            ));
        }
        Err(_) => {
            return Err(ApiError::new(
                ErrorKind::Timeout,
                format!("the upstream did not list its models within {TIMEOUT:?}"),
            ))
        }
    };
    let (upstream, skipped) = check(listed.into_iter().map(|m| m.id).collect())?;
    if skipped > 0 {
        tracing::warn!(channel = %ch.name, skipped, "discovery skipped model ids that are empty, too long or not printable");
    }
    routes.set_discovered(name, Arc::from(upstream.clone()));
    let mut models: Vec<String> = routes
        .served_by(name)
        .unwrap_or_default()
        .into_iter()
        .map(|(public, _)| public)
        .collect();
    models.sort_unstable();
    Ok(Discovered {
        channel: name.to_owned(),
        upstream,
        skipped,
        models,
    })
}

/// Starts the scheduled discovery of every channel that has a `discover` interval and whose
/// provider can list models; the tasks run until aborted.
pub fn spawn(state: Arc<crate::state::AppState>) -> Vec<JoinHandle<()>> {
    state
        .routes
        .channels()
        .iter()
        .filter(|ch| ch.provider.capabilities().list_models)
        .filter_map(|ch| Some((ch.name.clone(), ch.discover?)))
        .map(|(name, every)| tokio::spawn(run(state.clone(), name, every)))
        .collect()
}

/// `every` ± 10 %.
fn jittered(every: Duration) -> Duration {
    every.mul_f64(0.9 + fastrand::f64() * 0.2)
}

async fn run(state: Arc<crate::state::AppState>, name: Arc<str>, every: Duration) {
    tokio::time::sleep(FIRST_WITHIN.mul_f64(fastrand::f64())).await;
    let mut failing = false;
    loop {
        match discover(&state.routes, &name).await {
            Ok(d) => {
                if failing {
                    tracing::info!(channel = %name, models = d.upstream.len(), "model discovery works again");
                } else {
                    tracing::debug!(channel = %name, models = d.upstream.len(), "models discovered");
                }
                failing = false;
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(
                        channel = %name,
                        kind = %e.kind,
                        error = %e.message,
                        "model discovery failed; the last good list is kept (logged again when it works)"
                    );
                }
                failing = true;
            }
        }
        tokio::time::sleep(jittered(every)).await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn lists_are_bounded() {
        let (kept, skipped) = check(vec![
            "b".into(),
            "a".into(),
            "a".into(),
            String::new(),
            "x".repeat(MAX_ID_BYTES + 1),
            "has space".into(),
            "ctl\u{7}".into(),
            "x".repeat(MAX_ID_BYTES),
        ])
        .unwrap();
        assert_eq!(
            kept,
            ["a".to_owned(), "b".to_owned(), "x".repeat(MAX_ID_BYTES)]
        );
        assert_eq!(skipped, 4);
        let many: Vec<String> = (0..=MAX_MODELS).map(|i| format!("m{i}")).collect();
        let e = check(many).unwrap_err();
        assert_eq!(e.kind, ErrorKind::UpstreamProtocol);
        assert!(e.message.contains("4097"), "{}", e.message);
        let most: Vec<String> = (0..MAX_MODELS).map(|i| format!("m{i}")).collect();
        assert_eq!(check(most).unwrap().0.len(), MAX_MODELS);
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        for _ in 0..1000 {
            let d = jittered(Duration::from_secs(100));
            assert!((Duration::from_secs(90)..=Duration::from_secs(110)).contains(&d));
        }
    }
}
