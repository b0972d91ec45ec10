//! Model discovery: a channel asks its upstream which models it has (through
//! [`llmux_core::Client::models`], the provider's own list: OpenAI-compatible `GET /models`,
//! Ollama `/api/tags`, DashScope's compatible-mode list, Anthropic's and Gemini's lists…) and
//! the answer becomes routable through that channel.
//!
//! Where the list lives: on the channel ([`Channel::set_discovered`]), shared by every copy of
//! it, so a reload that keeps the channel (its definition unchanged) keeps the list; a changed
//! list rebuilds the routing snapshot ([`RouteTable::rebuild`]). What the ids are served as is
//! described in [`crate::routing`]. A disabled channel keeps its list but serves nothing.
//!
//! When: on demand (`POST /admin/channels/{name}/discover`, [`discover`]), and for a channel
//! with `discover = "1h"` on a schedule: one task per enabled channel, started by
//! [`Scheduler::sync`] each time the catalog rebuilds the table (start, SIGHUP, admin API,
//! another gateway's change), asking at once and then every interval ± 10 % (jittered, so
//! replicas do not ask together). A channel that is deleted, disabled or redefined has its task
//! aborted at that sync (a redefined one gets a new task); every task ends with the gateway.
//! Each attempt is bounded by [`TIMEOUT`]; a failure keeps the last good list, and a run of
//! failures is logged once when it begins and once when it ends.
//!
//! Bounds, because an upstream's answer is not trusted: the body is read up to
//! `MAX_MODEL_LIST_BYTES` of `llmux_core` (8 MiB); a list of more than [`MAX_MODELS`] entries
//! is refused whole (the last good list stays: a cut list would drop models at random); an id
//! that is empty, longer than [`MAX_ID_BYTES`] or holds whitespace or control characters is
//! skipped (and counted); duplicates count once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use llmux_core::resilience::retry::humantime_serde::parse_duration;
use llmux_core::ErrorKind;
use serde::{Deserialize, Deserializer, Serialize};
use tokio::task::JoinHandle;
use utoipa::ToSchema;

use crate::config::Channel;
use crate::error::ApiError;
use crate::routing::RouteTable;

/// The schedule of channels made from provider variables whose provider needs no credential
/// (self-hosted runtimes such as Ollama): every hour.
pub const DEFAULT_ENV_INTERVAL: Duration = Duration::from_secs(3600);
/// The shortest accepted `discover` interval.
pub const MIN_INTERVAL: Duration = Duration::from_secs(60);
/// The longest accepted `discover` interval (7 days).
pub const MAX_INTERVAL: Duration = Duration::from_secs(7 * 24 * 3600);
/// The `discover` value that means "only when asked" (the same as leaving it out).
pub const ON_DEMAND: &str = "on-demand";
/// Most entries an upstream's list may hold; a longer list is refused whole.
pub const MAX_MODELS: usize = 4096;
/// Longest model id kept, in bytes; longer ones are skipped.
pub const MAX_ID_BYTES: usize = 256;
/// How long one discovery may take.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// Reads `discover`: `"on-demand"` (`None`) or an interval such as `"1h"` within
/// [`MIN_INTERVAL`]..=[`MAX_INTERVAL`].
pub fn deserialize_interval<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(d)?;
    parse_interval(&text).map_err(serde::de::Error::custom)
}

/// [`deserialize_interval`] on a string.
pub fn parse_interval(text: &str) -> Result<Option<Duration>, String> {
    if text.trim() == ON_DEMAND {
        return Ok(None);
    }
    let every = parse_duration(text).map_err(|e| format!("{e}, or \"{ON_DEMAND}\""))?;
    if !(MIN_INTERVAL..=MAX_INTERVAL).contains(&every) {
        return Err(format!(
            "`{text}` is outside 1m..=168h (or use \"{ON_DEMAND}\")"
        ));
    }
    Ok(Some(every))
}

/// An interval as `discover` takes it back (`"6h"`, `"90m"`, `"75s"`).
pub fn format_interval(every: Duration) -> String {
    let s = every.as_secs();
    if s % 3600 == 0 {
        format!("{}h", s / 3600)
    } else if s % 60 == 0 {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
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
    /// The public model names the channel serves now (configured and discovered), sorted;
    /// empty while the channel is disabled.
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

fn not_found(name: &str) -> ApiError {
    let mut e = ApiError::new(ErrorKind::NotFound, format!("no channel named `{name}`"));
    e.code = Some("channel_not_found");
    e
}

/// Discovers the models of the channel named `name` (enabled or not) now and makes them
/// routable.
pub async fn discover(routes: &RouteTable, name: &str) -> Result<Discovered, ApiError> {
    let ch = routes
        .current()
        .find(name)
        .cloned()
        .ok_or_else(|| not_found(name))?;
    let (upstream, skipped) = fetch(&ch).await?;
    if skipped > 0 {
        tracing::warn!(channel = %ch.name, skipped, "discovery skipped model ids that are empty, too long or not printable");
    }
    if ch.set_discovered(Arc::from(upstream.clone())) {
        routes.rebuild();
    }
    let models = routes
        .current()
        .served_by(name)
        .unwrap_or_default()
        .into_iter()
        .map(|(public, _)| public)
        .collect();
    Ok(Discovered {
        channel: name.to_owned(),
        upstream,
        skipped,
        models,
    })
}

/// Asks `ch`'s upstream for its models, within [`TIMEOUT`] and the bounds.
async fn fetch(ch: &Channel) -> Result<(Vec<String>, usize), ApiError> {
    if !ch.provider.capabilities().list_models {
        return Err(ApiError::new(
            ErrorKind::Unsupported,
            format!(
                "provider `{}` cannot list its models; list them in the channel's `models`",
                ch.provider_id
            ),
        ));
    }
    let up = ch.pick();
    let listed = match tokio::time::timeout(TIMEOUT, up.client.models(ch.provider_id)).await {
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
                format!(
                    "the upstream did not list its models within {}s",
                    TIMEOUT.as_secs()
                ),
            ))
        }
    };
    check(listed.into_iter().map(|m| m.id).collect())
}

/// A scheduled discovery task, aborted when dropped.
#[derive(Debug)]
struct Task {
    channel: Arc<Channel>,
    handle: JoinHandle<()>,
}

impl Drop for Task {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// The scheduled discovery tasks of one gateway, one per enabled channel with a `discover`
/// interval whose provider can list.
#[derive(Debug, Default)]
pub struct Scheduler {
    tasks: Mutex<HashMap<Arc<str>, Task>>,
}

impl Scheduler {
    /// Starts, keeps or stops tasks so that exactly the enabled channels of `routes` with an
    /// interval have one (a task of a channel built anew is replaced). Needs a Tokio runtime;
    /// without one it schedules nothing.
    pub fn sync(&self, routes: &Arc<RouteTable>) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let snapshot = routes.current();
        let wanted: Vec<(Arc<Channel>, Duration)> = snapshot
            .channels()
            .iter()
            .filter(|ch| ch.provider.capabilities().list_models)
            .filter_map(|ch| Some((ch.clone(), ch.discover?)))
            .collect();
        let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        tasks.retain(|name, task| {
            let keep = wanted
                .iter()
                .any(|(ch, _)| ch.name == *name && ch.same_build(&task.channel));
            if !keep {
                tracing::debug!(channel = %name, "scheduled model discovery stopped");
            }
            keep
        });
        for (ch, every) in wanted {
            if tasks.contains_key(&ch.name) {
                continue;
            }
            let handle = rt.spawn(run(Arc::downgrade(routes), ch.clone(), every));
            tracing::debug!(channel = %ch.name, every_s = every.as_secs(), "scheduled model discovery started");
            tasks.insert(
                ch.name.clone(),
                Task {
                    channel: ch,
                    handle,
                },
            );
        }
    }

    /// The channels with a running scheduled discovery, sorted.
    pub fn scheduled(&self) -> Vec<String> {
        let tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        let mut v: Vec<String> = tasks
            .iter()
            .filter(|(_, t)| !t.handle.is_finished())
            .map(|(n, _)| n.to_string())
            .collect();
        v.sort_unstable();
        v
    }

    /// Stops every task (shutdown).
    pub fn stop(&self) {
        self.tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

/// `every` ± 10 %.
fn jittered(every: Duration) -> Duration {
    every.mul_f64(0.9 + fastrand::f64() * 0.2)
}

/// One channel's schedule: ask now, then every `every` ± 10 %, until aborted or the table is
/// gone.
async fn run(routes: std::sync::Weak<RouteTable>, ch: Arc<Channel>, every: Duration) {
    let mut failing = false;
    loop {
        let Some(table) = routes.upgrade() else {
            return;
        };
        let outcome = fetch(&ch).await;
        match outcome {
            Ok((upstream, skipped)) => {
                if skipped > 0 && !failing {
                    tracing::warn!(channel = %ch.name, skipped, "discovery skipped model ids that are empty, too long or not printable");
                }
                let n = upstream.len();
                if ch.set_discovered(Arc::from(upstream)) {
                    table.rebuild();
                }
                if failing {
                    tracing::info!(channel = %ch.name, models = n, "model discovery works again");
                } else {
                    tracing::debug!(channel = %ch.name, models = n, "models discovered");
                }
                failing = false;
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(
                        channel = %ch.name,
                        kind = %e.kind,
                        error = %e.message,
                        "model discovery failed; the last good list is kept (logged again when it works)"
                    );
                }
                failing = true;
            }
        }
        drop(table);
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
    fn intervals_are_bounded_and_round_trip() {
        assert_eq!(parse_interval("on-demand").unwrap(), None);
        assert_eq!(
            parse_interval("90m").unwrap(),
            Some(Duration::from_secs(5400))
        );
        for bad in ["10s", "169h", "soon", ""] {
            assert!(parse_interval(bad).is_err(), "{bad}");
        }
        for secs in [60, 75, 5400, 7200, 7 * 24 * 3600] {
            let d = Duration::from_secs(secs);
            assert_eq!(parse_interval(&format_interval(d)).unwrap(), Some(d));
        }
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        for _ in 0..1000 {
            let d = jittered(Duration::from_secs(100));
            assert!((Duration::from_secs(90)..=Duration::from_secs(110)).contains(&d));
        }
    }
}
