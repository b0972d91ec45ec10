//! Routing: a public model name → the channels that serve it, in the order to try them.
//!
//! Order: channels are grouped by `priority` (highest first); within a group, channels whose
//! breaker lets calls through come first, in a weighted random order (`weight`, drawn without
//! replacement); channels whose breaker is open, or disabled because the upstream rejected the
//! credentials, go last until their cool-down ends (they fail fast, so a request still gets a
//! definite answer when everything is down). When the cool-down ends the channel takes its
//! place again, and the next request is its probe (or trial). [`Routes::failover`] walks that order and
//! moves to the next channel on errors that concern the channel rather than the request
//! ([`ErrorKind::concerns_upstream`]). Callers only invoke it before anything was sent to the client.
//!
//! What a channel serves: its configured `models`, plus the models its upstream last listed
//! ([`Routes::set_discovered`], kept by [`crate::discovery`]). A discovered upstream id that a
//! configured mapping already names is served under that public name only; any other is served
//! as `name/<id>` on a passthrough channel (the address passthrough already routes) and as
//! `<id>` elsewhere. A channel whose `models` are the provider's built-in list
//! ([`Channel::builtin_models`]) serves the discovered list instead of it once one arrives.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use llmux_core::resilience::{BreakerState, BreakerStatus};
use llmux_core::{Error, ErrorKind};
use tokio::time::Instant;

use crate::config::Channel;
use crate::error::ApiError;

/// One way to serve a model: a channel and the upstream model name.
#[derive(Debug, Clone)]
pub struct Target {
    /// Index into [`Routes::channels`].
    pub channel: usize,
    /// The upstream model.
    pub upstream: Arc<str>,
}

/// Public model name → (its label, its targets in channel order).
type ModelMap = HashMap<String, (Arc<str>, Vec<Target>)>;

/// The routing table.
#[derive(Debug)]
pub struct Routes {
    channels: Vec<Arc<Channel>>,
    /// Rebuilt (and swapped whole) when a channel's discovered list changes.
    by_model: RwLock<Arc<ModelMap>>,
    by_name: HashMap<Arc<str>, usize>,
    /// Per channel (same index): the upstream ids it last listed, when discovery succeeded.
    discovered: RwLock<Vec<Option<Arc<[String]>>>>,
}

/// A resolved request: the metrics label for the model and the targets in order.
#[derive(Debug)]
pub struct Plan {
    /// Low-cardinality model label (the public name, or `channel/*` for passthrough).
    pub label: Arc<str>,
    /// Targets in the order to try.
    pub targets: Vec<Target>,
}

/// The successful outcome of [`Routes::failover`].
#[derive(Debug)]
pub struct Routed<T> {
    /// The value.
    pub value: T,
    /// The channel that served it.
    pub channel: Arc<Channel>,
    /// The upstream model it was asked for.
    pub upstream: Arc<str>,
    /// Time spent inside upstream calls, failed attempts included.
    pub upstream_time: Duration,
}

/// The failed outcome: the last error, and the last channel tried.
#[derive(Debug)]
pub struct Failed {
    /// The client-facing error.
    pub error: ApiError,
    /// The last channel tried.
    pub channel: Option<Arc<Channel>>,
    /// The upstream model of the last channel tried.
    pub upstream: Option<Arc<str>>,
    /// Time spent inside upstream calls.
    pub upstream_time: Duration,
}

impl Routes {
    /// Builds the table from the configured channels.
    pub fn new(channels: Vec<Channel>) -> Self {
        let channels: Vec<Arc<Channel>> = channels.into_iter().map(Arc::new).collect();
        let by_name = channels
            .iter()
            .enumerate()
            .map(|(i, ch)| (ch.name.clone(), i))
            .collect();
        let discovered = vec![None; channels.len()];
        let by_model = build_map(&channels, &discovered);
        Routes {
            channels,
            by_model: RwLock::new(Arc::new(by_model)),
            by_name,
            discovered: RwLock::new(discovered),
        }
    }

    /// All channels.
    pub fn channels(&self) -> &[Arc<Channel>] {
        &self.channels
    }

    /// The channel named `name`.
    pub fn channel(&self, name: &str) -> Option<&Arc<Channel>> {
        self.by_name.get(name).map(|&i| &self.channels[i])
    }

    fn map(&self) -> Arc<ModelMap> {
        self.by_model
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Public model names, sorted.
    pub fn models(&self) -> Vec<String> {
        let mut v: Vec<String> = self.map().keys().cloned().collect();
        v.sort_unstable();
        v
    }

    /// The public model names a caller may see, sorted: every listed name when `allowed` is
    /// `None`, else the names of `allowed` that are served here (a passthrough address
    /// included: the channel serves it, though it is never listed on its own).
    pub fn models_for(&self, allowed: Option<&[String]>) -> Vec<String> {
        match allowed {
            None => self.models(),
            Some(names) => names
                .iter()
                .filter(|m| self.serves(m))
                .cloned()
                .collect::<BTreeSet<String>>()
                .into_iter()
                .collect(),
        }
    }

    /// The provider id of the first channel (in configuration order) that serves `model`.
    pub fn owner(&self, model: &str) -> Option<&'static str> {
        let (_, targets) = self.lookup(model)?;
        let first = targets.iter().map(|t| t.channel).min()?;
        Some(self.channels[first].provider_id)
    }

    /// Public name → upstream model, for everything the channel named `name` serves now
    /// (configured and discovered); `None` for an unknown channel.
    pub fn served_by(&self, name: &str) -> Option<Vec<(String, String)>> {
        let &i = self.by_name.get(name)?;
        let discovered = self
            .discovered
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        Some(served(&self.channels[i], discovered[i].as_deref()))
    }

    /// The upstream ids the channel named `name` last listed, if discovery ever succeeded.
    pub fn discovered(&self, name: &str) -> Option<Arc<[String]>> {
        let &i = self.by_name.get(name)?;
        self.discovered
            .read()
            .unwrap_or_else(PoisonError::into_inner)[i]
            .clone()
    }

    /// Records what the channel named `name` lists now (already checked and bounded by
    /// [`crate::discovery`]) and makes it routable; `false` for an unknown channel.
    pub fn set_discovered(&self, name: &str, ids: Arc<[String]>) -> bool {
        let Some(&i) = self.by_name.get(name) else {
            return false;
        };
        let mut discovered = self
            .discovered
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if discovered[i].as_deref() == Some(&*ids) {
            return true;
        }
        discovered[i] = Some(ids);
        let map = build_map(&self.channels, &discovered);
        *self
            .by_model
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(map);
        true
    }

    /// True when `model` is served here.
    pub fn serves(&self, model: &str) -> bool {
        self.lookup(model).is_some()
    }

    fn lookup(&self, model: &str) -> Option<(Arc<str>, Vec<Target>)> {
        if let Some((label, targets)) = self.map().get(model) {
            return Some((label.clone(), targets.clone()));
        }
        let (name, upstream) = model.split_once('/')?;
        let &i = self.by_name.get(name)?;
        let ch = &self.channels[i];
        if !ch.passthrough || upstream.is_empty() {
            return None;
        }
        Some((
            Arc::from(format!("{name}/*")),
            vec![Target {
                channel: i,
                upstream: Arc::from(upstream),
            }],
        ))
    }

    /// The breaker state of a channel (closed when it was never used).
    pub fn breaker_state(&self, ch: &Channel) -> BreakerState {
        ch.client
            .breaker_for(ch.provider.as_ref())
            .map_or(BreakerState::Closed, |b| b.state(Instant::now()))
    }

    /// The breaker state of a channel with its reason and timing.
    pub fn breaker_status(&self, ch: &Channel) -> BreakerStatus {
        match ch.client.breaker_for(ch.provider.as_ref()) {
            Some(b) => b.status(Instant::now()),
            None => BreakerStatus {
                state: BreakerState::Closed,
                reason: None,
                disabled_by: None,
                retry_in: None,
                not_closed_for: None,
                trips: 0,
            },
        }
    }

    /// Whether calls to a channel fail fast right now (breaker open or disabled, cool-down
    /// not over).
    fn fails_fast(&self, ch: &Channel) -> bool {
        ch.client
            .breaker_for(ch.provider.as_ref())
            .is_some_and(|b| b.fails_fast(Instant::now()))
    }

    /// The channel named `name`, back in rotation (its breaker closed, whatever its state);
    /// `None` for an unknown name.
    pub fn enable(&self, name: &str) -> Option<Arc<Channel>> {
        let &i = self.by_name.get(name)?;
        let ch = self.channels[i].clone();
        if let Some(b) = ch.client.breaker_for(ch.provider.as_ref()) {
            b.reset();
        }
        tracing::info!(channel = %ch.name, "channel enabled by an admin");
        Some(ch)
    }

    /// The targets for `model` in the order to try, or `None` for an unknown model.
    pub fn plan(&self, model: &str) -> Option<Plan> {
        let (label, targets) = self.lookup(model)?;
        let mut keyed: Vec<(i32, bool, Target)> = targets
            .into_iter()
            .map(|t| {
                let ch = &self.channels[t.channel];
                (ch.priority, self.fails_fast(ch), t)
            })
            .collect();
        // Failing fast last, then by priority (highest first).
        keyed.sort_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)));
        let mut ordered = Vec::with_capacity(keyed.len());
        let mut start = 0;
        while start < keyed.len() {
            let (prio, open) = (keyed[start].0, keyed[start].1);
            let end = keyed[start..]
                .iter()
                .position(|k| k.0 != prio || k.1 != open)
                .map_or(keyed.len(), |p| start + p);
            let mut group: Vec<Target> = keyed[start..end].iter().map(|k| k.2.clone()).collect();
            weighted_shuffle(&mut group, |t| self.channels[t.channel].weight);
            ordered.extend(group);
            start = end;
        }
        Some(Plan {
            label,
            targets: ordered,
        })
    }

    /// Calls `call(channel, upstream model)` along the plan until one succeeds or an error
    /// that concerns the request (not the channel) stops it. `on_failover` sees every error
    /// that moved to the next channel.
    pub async fn failover<T, F, Fut>(
        &self,
        plan: &Plan,
        mut call: F,
        mut on_failover: impl FnMut(&Channel, &Error),
    ) -> Result<Routed<T>, Failed>
    where
        F: FnMut(Arc<Channel>, Arc<str>) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let mut upstream_time = Duration::ZERO;
        let mut last: Option<(Error, Arc<Channel>, Arc<str>)> = None;
        for (n, t) in plan.targets.iter().enumerate() {
            let ch = self.channels[t.channel].clone();
            let began = Instant::now();
            let result = call(ch.clone(), t.upstream.clone()).await;
            upstream_time += began.elapsed();
            match result {
                Ok(value) => {
                    return Ok(Routed {
                        value,
                        channel: ch,
                        upstream: t.upstream.clone(),
                        upstream_time,
                    })
                }
                Err(err) => {
                    let more = n + 1 < plan.targets.len();
                    if !err.kind().concerns_upstream() {
                        return Err(Failed {
                            error: ApiError::from_upstream(&err),
                            channel: Some(ch),
                            upstream: Some(t.upstream.clone()),
                            upstream_time,
                        });
                    }
                    tracing::warn!(
                        channel = %ch.name,
                        provider = ch.provider_id,
                        kind = %err.kind(),
                        error = %err,
                        next = more,
                        "channel failed; trying the next one"
                    );
                    on_failover(&ch, &err);
                    last = Some((err, ch, t.upstream.clone()));
                }
            }
        }
        match last {
            Some((err, ch, upstream)) => Err(Failed {
                error: ApiError::from_upstream(&err),
                channel: Some(ch),
                upstream: Some(upstream),
                upstream_time,
            }),
            None => Err(Failed {
                error: ApiError::new(ErrorKind::CircuitOpen, "no channel serves this model"),
                channel: None,
                upstream: None,
                upstream_time,
            }),
        }
    }
}

/// Public name → upstream model for what `ch` serves, given the ids it last listed.
fn served(ch: &Channel, discovered: Option<&[String]>) -> Vec<(String, String)> {
    let keep_configured = !(ch.builtin_models && discovered.is_some());
    let mut out: Vec<(String, String)> = Vec::new();
    let mut names: HashSet<String> = HashSet::new();
    let mut mapped: HashSet<&str> = HashSet::new();
    if keep_configured {
        for (public, upstream) in &ch.models {
            out.push((public.clone(), upstream.clone()));
            names.insert(public.clone());
            mapped.insert(upstream);
        }
    }
    for id in discovered.unwrap_or_default() {
        if mapped.contains(id.as_str()) {
            continue;
        }
        let public = if ch.passthrough {
            format!("{}/{id}", ch.name)
        } else {
            id.clone()
        };
        if names.insert(public.clone()) {
            out.push((public, id.clone()));
        }
    }
    out
}

/// The model map of `channels` given what each last listed.
fn build_map(channels: &[Arc<Channel>], discovered: &[Option<Arc<[String]>>]) -> ModelMap {
    let mut by_model: ModelMap = HashMap::new();
    for (i, ch) in channels.iter().enumerate() {
        let listed = discovered.get(i).and_then(|d| d.as_deref());
        for (public, upstream) in served(ch, listed) {
            by_model
                .entry(public)
                .or_insert_with_key(|p| (Arc::from(p.as_str()), Vec::new()))
                .1
                .push(Target {
                    channel: i,
                    upstream: Arc::from(upstream.as_str()),
                });
        }
    }
    by_model
}

/// Orders `items` by repeated weighted draws without replacement; weight-0 items go last.
fn weighted_shuffle<T>(items: &mut [T], weight: impl Fn(&T) -> u32) {
    let n = items.len();
    for i in 0..n {
        let total: u64 = items[i..].iter().map(|t| u64::from(weight(t))).sum();
        if total == 0 {
            break;
        }
        let mut pick = fastrand::u64(0..total);
        let mut chosen = i;
        for (j, t) in items[i..].iter().enumerate() {
            let w = u64::from(weight(t));
            if pick < w {
                chosen = i + j;
                break;
            }
            pick -= w;
        }
        items.swap(i, chosen);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn weighted_shuffle_follows_weights_and_puts_zero_last() {
        let mut first_a = 0;
        for _ in 0..2000 {
            let mut v = vec![("a", 3u32), ("b", 1), ("z", 0)];
            weighted_shuffle(&mut v, |t| t.1);
            assert_eq!(v[2].0, "z");
            if v[0].0 == "a" {
                first_a += 1;
            }
        }
        // Expect about 75 %.
        assert!((1300..1700).contains(&first_a), "{first_a}");
    }
}
