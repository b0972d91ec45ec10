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
//! A channel that rotates several keys is tried again with its next key when the upstream
//! rejected the credentials of the one used (the rejected key's breaker keeps it out).
//!
//! The table is a snapshot ([`Routes`]) behind a [`RouteTable`] that can be swapped at run
//! time: a request takes the current snapshot once, and its [`Plan`] holds the channels it
//! may use, so a reload never changes or drops a request in flight.
//!
//! What a channel serves: its configured `models`, plus the models its upstream last listed
//! ([`Channel::discovered`], kept by [`crate::discovery`] on the channel itself, so it carries
//! over every snapshot that reuses the channel). A discovered upstream id that a configured
//! mapping already names is served under that public name only; any other is served as
//! `name/<id>` on a passthrough channel (the address passthrough already routes) and as `<id>`
//! elsewhere. A channel whose `models` are the provider's built-in list
//! ([`Channel::builtin_models`]) serves the discovered list instead of it once one arrives.
//! Disabled channels serve nothing. Every snapshot is built by [`RouteTable::rebuild_from`]
//! (one writer at a time), so a discovered list set before a rebuild is always in the table
//! that rebuild makes.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use llmux_core::resilience::{BreakerState, BreakerStatus};
use llmux_core::{Error, ErrorKind};
use tokio::time::Instant;

use crate::config::Channel;
use crate::error::ApiError;

/// One way to serve a model: a channel and the upstream model name.
#[derive(Debug, Clone)]
pub struct Target {
    /// The channel (of the snapshot the plan was made from).
    pub channel: Arc<Channel>,
    /// The upstream model.
    pub upstream: Arc<str>,
}

/// The routing table: one immutable snapshot of the channels.
#[derive(Debug, Default)]
pub struct Routes {
    /// Enabled channels (the ones that take traffic).
    channels: Vec<Arc<Channel>>,
    /// Every channel, disabled ones included, in order.
    listed: Vec<Arc<Channel>>,
    by_model: HashMap<String, (Arc<str>, Vec<Target>)>,
    by_name: HashMap<Arc<str>, usize>,
}

/// The current [`Routes`], swappable at run time. Readers take an `Arc` of the snapshot (a
/// read lock held for one reference-count increment); a swap never waits for them.
#[derive(Debug)]
pub struct RouteTable {
    current: RwLock<Arc<Routes>>,
    /// Held while a snapshot is built and swapped: one writer at a time, so a snapshot built
    /// from channels read earlier never replaces one that saw a later change.
    writer: Mutex<()>,
}

impl RouteTable {
    /// A table starting with `routes`.
    pub fn new(routes: Routes) -> Self {
        RouteTable {
            current: RwLock::new(Arc::new(routes)),
            writer: Mutex::new(()),
        }
    }

    /// Builds a snapshot of `listed` (reusing the channels as they are, see
    /// [`Routes::from_shared`]) and makes it the one new requests see. The snapshot reads each
    /// channel's discovered models while no other writer runs.
    pub fn rebuild_from(&self, listed: Vec<Arc<Channel>>) {
        let _one = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let routes = Routes::from_shared(listed);
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(routes);
    }

    /// Rebuilds the current snapshot's channels (after a channel's discovered models changed).
    pub fn rebuild(&self) {
        let _one = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let listed = self.current().listed().to_vec();
        let routes = Routes::from_shared(listed);
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(routes);
    }

    /// The current snapshot; requests keep the one they took until they end.
    pub fn current(&self) -> Arc<Routes> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// [`Routes::serves`] on the current snapshot.
    pub fn serves(&self, model: &str) -> bool {
        self.current().serves(model)
    }

    /// [`Routes::plan`] on the current snapshot.
    pub fn plan(&self, model: &str) -> Option<Plan> {
        self.current().plan(model)
    }
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
        Routes::from_shared(channels.into_iter().map(Arc::new).collect())
    }

    /// Builds the table from channels that may be shared with an earlier snapshot (their
    /// clients, breakers and rotation carry over). Disabled ones are listed only.
    pub fn from_shared(listed: Vec<Arc<Channel>>) -> Self {
        let channels: Vec<Arc<Channel>> = listed.iter().filter(|c| c.enabled).cloned().collect();
        let mut by_model: HashMap<String, (Arc<str>, Vec<Target>)> = HashMap::new();
        let mut by_name = HashMap::new();
        for (i, ch) in channels.iter().enumerate() {
            by_name.insert(ch.name.clone(), i);
            let discovered = ch.discovered();
            for (public, upstream) in served(ch, discovered.as_deref()) {
                by_model
                    .entry(public)
                    .or_insert_with_key(|p| (Arc::from(p.as_str()), Vec::new()))
                    .1
                    .push(Target {
                        channel: ch.clone(),
                        upstream: Arc::from(upstream.as_str()),
                    });
            }
        }
        Routes {
            channels,
            listed,
            by_model,
            by_name,
        }
    }

    /// The channels that take traffic (enabled).
    pub fn channels(&self) -> &[Arc<Channel>] {
        &self.channels
    }

    /// Every channel, disabled ones included.
    pub fn listed(&self) -> &[Arc<Channel>] {
        &self.listed
    }

    /// The channel named `name`, enabled or not.
    pub fn find(&self, name: &str) -> Option<&Arc<Channel>> {
        self.listed.iter().find(|c| &*c.name == name)
    }

    /// Public model names, sorted.
    pub fn models(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.by_model.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }

    /// True when `model` is served here.
    pub fn serves(&self, model: &str) -> bool {
        self.lookup(model).is_some()
    }

    /// The public model names a caller may see, sorted: every listed name when `allowed` is
    /// `None`, else the names of `allowed` that are served here (a passthrough address
    /// included: an enabled channel serves it, though it is never listed on its own).
    pub fn models_for(&self, allowed: Option<&[String]>) -> Vec<String> {
        match allowed {
            None => self.models().into_iter().map(str::to_owned).collect(),
            Some(names) => names
                .iter()
                .filter(|m| self.serves(m))
                .cloned()
                .collect::<BTreeSet<String>>()
                .into_iter()
                .collect(),
        }
    }

    /// The provider id of the first enabled channel (in listed order) that serves `model`.
    pub fn owner(&self, model: &str) -> Option<&'static str> {
        let (_, targets) = self.lookup(model)?;
        self.channels
            .iter()
            .find(|c| targets.iter().any(|t| Arc::ptr_eq(&t.channel, c)))
            .map(|c| c.provider_id)
    }

    /// Public name → upstream model, sorted by public name, for everything the channel named
    /// `name` serves (configured and discovered) when it is enabled; `None` for an unknown
    /// channel.
    pub fn served_by(&self, name: &str) -> Option<Vec<(String, String)>> {
        let ch = self.find(name)?;
        let mut v = if ch.enabled {
            served(ch, ch.discovered().as_deref())
        } else {
            Vec::new()
        };
        v.sort_unstable();
        Some(v)
    }

    /// The listed public names of the form `prefix/plain` for a plain name (one without `/`),
    /// sorted: what a client that asked for `plain` may have meant. Empty for a name with a `/`.
    pub fn qualified_names(&self, plain: &str) -> Vec<&str> {
        if plain.is_empty() || plain.contains('/') {
            return Vec::new();
        }
        let mut v: Vec<&str> = self
            .by_model
            .keys()
            .map(String::as_str)
            .filter(|name| name.split_once('/').is_some_and(|(_, rest)| rest == plain))
            .collect();
        v.sort_unstable();
        v
    }

    fn lookup(&self, model: &str) -> Option<(Arc<str>, Vec<Target>)> {
        if let Some((label, targets)) = self.by_model.get(model) {
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
                channel: ch.clone(),
                upstream: Arc::from(upstream),
            }],
        ))
    }

    /// The breaker state of a channel (closed when it was never used; with several keys, that
    /// of its healthiest key).
    pub fn breaker_state(&self, ch: &Channel) -> BreakerState {
        ch.breaker_status().state
    }

    /// The breaker state of a channel with its reason and timing.
    pub fn breaker_status(&self, ch: &Channel) -> BreakerStatus {
        ch.breaker_status()
    }

    /// Whether calls to a channel fail fast right now (every key's breaker open or disabled,
    /// cool-down not over).
    fn fails_fast(&self, ch: &Channel) -> bool {
        ch.fails_fast()
    }

    /// The channel named `name` (enabled or not), its breakers closed, whatever their state;
    /// `None` for an unknown name.
    pub fn enable(&self, name: &str) -> Option<Arc<Channel>> {
        let ch = self.find(name)?.clone();
        ch.reset_breakers();
        tracing::info!(channel = %ch.name, "channel breakers reset by an admin");
        Some(ch)
    }

    /// The targets for `model` in the order to try, or `None` for an unknown model.
    pub fn plan(&self, model: &str) -> Option<Plan> {
        let (label, targets) = self.lookup(model)?;
        let mut keyed: Vec<(i32, bool, Target)> = targets
            .into_iter()
            .map(|t| (t.channel.priority, self.fails_fast(&t.channel), t))
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
            weighted_shuffle(&mut group, |t| t.channel.weight);
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
            let ch = t.channel.clone();
            let began = Instant::now();
            let mut result = call(ch.clone(), t.upstream.clone()).await;
            // A rejected key of a rotating channel: its breaker now keeps it out, so the
            // channel's other keys are tried before moving on.
            let mut keys_left = ch.upstreams().len().saturating_sub(1);
            while keys_left > 0
                && result.as_ref().is_err_and(|e| {
                    llmux_core::resilience::breaker::verdict(e.kind())
                        == llmux_core::resilience::Verdict::CredentialsRejected
                })
                && !ch.fails_fast()
            {
                keys_left -= 1;
                result = call(ch.clone(), t.upstream.clone()).await;
            }
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
