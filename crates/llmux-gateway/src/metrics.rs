//! Prometheus metrics, one registry per gateway (so tests can run several in one process).
//! Route labels are low-cardinality only: `provider`, `channel`, `model` (configured public
//! names, or `channel/*` for passthrough addresses, or empty before routing), `kind` and
//! `status` (the class: `2xx`, `4xx`, `5xx`).
//!
//! The per-key series (`llmux_key_*`) carry `key` (the key's name) and `team` under a
//! cardinality guard: the first `metrics.max_key_labels` distinct keys a gateway sees get a
//! label of their own, every later key is counted under `key="other"`. Each key's series are
//! looked up once and cached ([`Caller`]), so a request updates them without building labels.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use prometheus::{
    Counter, CounterVec, Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter,
    IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::auth::Principal;
use crate::routing::Routes;

/// The `key` label of every key past `metrics.max_key_labels`.
pub const OTHER_KEY: &str = "other";

/// The class of an HTTP status, as the `status` label says it (`2xx`, `4xx`, `5xx`…).
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

fn class_index(status: u16) -> usize {
    usize::from((status / 100).clamp(1, 5) - 1)
}

/// Who made a request, as the access log, metrics and traces name it, with the key's cached
/// metric series. Made once per key (see [`Metrics::caller`]) and shared by its requests.
#[derive(Debug)]
pub struct Caller {
    /// The virtual key's id (`None` for a static key).
    pub key_id: Option<i64>,
    /// The key's name (a static key is `server.api_keys[N]`).
    pub key: Arc<str>,
    /// The key's team, when keys belong to teams ([`Principal::team`]).
    pub team: Option<Arc<str>>,
    series: Arc<KeySeries>,
}

impl Caller {
    /// Counts one answered request of this key by its status class.
    pub fn count_request(&self, status: u16) {
        self.series.request(status).inc();
    }

    /// Counts billed tokens and cost of this key.
    pub fn count_usage(&self, input: u64, output: u64, cost: f64) {
        let s = &self.series;
        if input > 0 {
            s.tokens(0).inc_by(input);
        }
        if output > 0 {
            s.tokens(1).inc_by(output);
        }
        if cost > 0.0 && cost.is_finite() {
            s.cost.inc_by(cost);
        }
    }
}

/// The series of one `key` label (one key, or every key under `other`), each made on first
/// use so that unused status classes do not show up as zeros.
#[derive(Debug)]
struct KeySeries {
    key: Arc<str>,
    team: Arc<str>,
    families: KeyFamilies,
    requests: [OnceLock<IntCounter>; 5],
    tokens: [OnceLock<IntCounter>; 2],
    cost: Counter,
}

impl KeySeries {
    fn new(families: &KeyFamilies, key: Arc<str>, team: Arc<str>) -> KeySeries {
        let cost = families.cost.with_label_values(&[&*key, &*team]);
        KeySeries {
            key,
            team,
            families: families.clone(),
            requests: Default::default(),
            tokens: Default::default(),
            cost,
        }
    }

    fn request(&self, status: u16) -> &IntCounter {
        self.requests[class_index(status)].get_or_init(|| {
            self.families.requests.with_label_values(&[
                &*self.key,
                &*self.team,
                status_class(status),
            ])
        })
    }

    fn tokens(&self, i: usize) -> &IntCounter {
        self.tokens[i].get_or_init(|| {
            let kind = if i == 0 { "input" } else { "output" };
            self.families
                .tokens
                .with_label_values(&[&*self.key, &*self.team, kind])
        })
    }
}

/// The per-key families.
#[derive(Debug, Clone)]
struct KeyFamilies {
    requests: IntCounterVec,
    tokens: IntCounterVec,
    cost: CounterVec,
}

/// Which key: a virtual key's id or a static key's position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum KeyIdent {
    Virtual(i64),
    Static(usize),
}

/// The callers seen so far, one per key, at most `max` with series of their own.
#[derive(Debug)]
struct Callers {
    max: usize,
    known: RwLock<HashMap<KeyIdent, Arc<Caller>>>,
    other: OnceLock<Arc<KeySeries>>,
}

/// The request families labelled by route (`provider`, `channel`, `model`).
#[derive(Debug, Clone)]
struct RouteFamilies {
    requests: IntCounterVec,
    tokens: IntCounterVec,
    duration: HistogramVec,
    ttft: HistogramVec,
}

/// The series one route's requests update (`llmux_requests_total` by status class,
/// `llmux_tokens_total`, `llmux_request_duration_seconds`, `llmux_ttft_seconds`), each made on
/// first use so that unused status classes do not show up as zeros. Cached per route
/// ([`Metrics::route`]): a request updates them without hashing its labels again.
#[derive(Debug)]
pub struct RouteSeries {
    provider: &'static str,
    channel: Arc<str>,
    model: Arc<str>,
    families: RouteFamilies,
    requests: [OnceLock<IntCounter>; 5],
    tokens: [OnceLock<IntCounter>; 2],
    duration: OnceLock<Histogram>,
    ttft: OnceLock<Histogram>,
}

impl RouteSeries {
    fn labels(&self) -> [&str; 3] {
        [self.provider, &self.channel, &self.model]
    }

    /// Counts one routed request by the class of the status it ended with.
    pub fn count_request(&self, status: u16) {
        self.requests[class_index(status)]
            .get_or_init(|| {
                let [p, c, m] = self.labels();
                self.families
                    .requests
                    .with_label_values(&[p, c, m, status_class(status)])
            })
            .inc();
    }

    /// Counts tokens: `output` false for input tokens, true for output tokens.
    pub fn count_tokens(&self, output: bool, tokens: u64) {
        self.tokens[usize::from(output)]
            .get_or_init(|| {
                let [p, c, m] = self.labels();
                let kind = if output { "output" } else { "input" };
                self.families.tokens.with_label_values(&[p, c, m, kind])
            })
            .inc_by(tokens);
    }

    /// Observes a request's duration, arrival to last byte.
    pub fn observe_duration(&self, seconds: f64) {
        self.duration
            .get_or_init(|| self.families.duration.with_label_values(&self.labels()))
            .observe(seconds);
    }

    /// Observes a stream's time to its first event.
    pub fn observe_ttft(&self, seconds: f64) {
        self.ttft
            .get_or_init(|| self.families.ttft.with_label_values(&self.labels()))
            .observe(seconds);
    }
}

/// Route series by channel, then model (then provider, almost always one), at most
/// [`RouteCache::MAX`] of them; a route past that gets series that are not kept.
#[derive(Debug, Default)]
struct RouteCache {
    by_channel: RwLock<FastMap<Arc<str>, ByModel>>,
    len: std::sync::atomic::AtomicUsize,
}

/// A map on the seeded fast hasher (its keys are the configuration's names).
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// One channel's route series, by model label (then provider).
type ByModel = FastMap<Arc<str>, Vec<Arc<RouteSeries>>>;

impl RouteCache {
    /// Routes kept: the metrics' own label sets are bounded by the configuration (channels
    /// and public model names), so this is a guard, not a limit a working gateway meets.
    const MAX: usize = 4096;

    fn get(&self, provider: &str, channel: &str, model: &str) -> Option<Arc<RouteSeries>> {
        let map = self
            .by_channel
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(channel)?
            .get(model)?
            .iter()
            .find(|s| s.provider == provider)
            .cloned()
    }
}

/// Every series the gateway exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// `llmux_requests_total{provider,channel,model,status}`: routed requests, by the channel
    /// that served (or last failed) and the class of the status the request ended with (a
    /// client that left is `4xx`, as its record's 499).
    pub requests: IntCounterVec,
    /// `llmux_errors_total{provider,channel,model,kind}`: errors answered to clients and mid-stream errors.
    pub errors: IntCounterVec,
    /// `llmux_failovers_total{provider,channel,kind}`: channel errors that moved a request on.
    pub failovers: IntCounterVec,
    /// `llmux_tokens_total{provider,channel,model,kind="input"|"output"}`.
    pub tokens: IntCounterVec,
    /// `llmux_request_duration_seconds{provider,channel,model}`: arrival to last byte.
    pub duration: HistogramVec,
    /// `llmux_ttft_seconds{provider,channel,model}`: arrival to the first content event of a
    /// stream (the upstream's start marker alone does not count).
    pub ttft: HistogramVec,
    /// `llmux_added_latency_seconds`: time spent in the gateway itself before the response head.
    pub added_latency: Histogram,
    /// `llmux_breaker_state{provider,channel}`: 0 closed, 1 half-open, 2 open, 3 disabled (the
    /// upstream rejected the credentials).
    pub breaker: IntGaugeVec,
    /// `llmux_channel_disabled{provider,channel,reason}`: 1 while the channel is out of rotation
    /// because the upstream rejected its credentials, by the rejection's kind
    /// (`authentication`, `permission_denied`); 0 otherwise.
    pub channel_disabled: IntGaugeVec,
    /// `llmux_inflight_streams`.
    pub inflight_streams: IntGauge,
    /// `llmux_limits_backend_errors_total{op="admit"|"settle"}`: admissions decided in this
    /// process because the shared limits backend (Redis) failed or was skipped after failures,
    /// and settles that could not reach it.
    pub limits_backend_errors: IntCounterVec,
    /// The usage-event publisher's series ([`crate::events::EventMetrics`]).
    pub events: crate::events::EventMetrics,
    /// `llmux_key_requests_total{key,team,status}`, `llmux_key_tokens_total{key,team,kind}`
    /// and `llmux_key_cost_total{key,team}`: requests (every one its key was checked for,
    /// refusals by limits included), billed tokens and cost per key, under the cardinality
    /// guard.
    key_families: KeyFamilies,
    callers: Arc<Callers>,
    routes: Arc<RouteCache>,
    /// The response cache's `llmux_cache_*` series (see [`crate::cache::CacheMetrics`]).
    pub cache: crate::cache::CacheMetrics,
}

const LATENCY_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];
const ADDED_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
];

/// A fresh, unregistered `llmux_limits_backend_errors_total{op}` (the shared limits backend
/// makes one of its own when it is built outside a gateway).
pub fn limits_backend_errors() -> Result<IntCounterVec, prometheus::Error> {
    IntCounterVec::new(
        Opts::new(
            "llmux_limits_backend_errors_total",
            "Limit operations that could not use the shared backend (Redis): admissions decided in this process instead, settles lost.",
        ),
        &["op"],
    )
}

impl Metrics {
    /// A fresh registry with every series registered, and at most
    /// [`crate::config::DEFAULT_MAX_KEY_LABELS`] keys labelled.
    pub fn new() -> Result<Metrics, prometheus::Error> {
        Metrics::with_max_key_labels(crate::config::DEFAULT_MAX_KEY_LABELS)
    }

    /// A fresh registry with every series registered; at most `max_key_labels` distinct keys
    /// get a `key` label of their own, the rest share `key="other"`.
    pub fn with_max_key_labels(max_key_labels: usize) -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let route = &["provider", "channel", "model"];
        let requests = IntCounterVec::new(
            Opts::new("llmux_requests_total", "Routed requests, by status class."),
            &["provider", "channel", "model", "status"],
        )?;
        let errors = IntCounterVec::new(
            Opts::new("llmux_errors_total", "Errors, by kind."),
            &["provider", "channel", "model", "kind"],
        )?;
        let failovers = IntCounterVec::new(
            Opts::new(
                "llmux_failovers_total",
                "Channel errors that moved a request to the next channel.",
            ),
            &["provider", "channel", "kind"],
        )?;
        let tokens = IntCounterVec::new(
            Opts::new("llmux_tokens_total", "Tokens, input and output."),
            &["provider", "channel", "model", "kind"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new("llmux_request_duration_seconds", "Arrival to last byte.")
                .buckets(LATENCY_BUCKETS.to_vec()),
            route,
        )?;
        let ttft = HistogramVec::new(
            HistogramOpts::new("llmux_ttft_seconds", "Arrival to the first streamed event.")
                .buckets(LATENCY_BUCKETS.to_vec()),
            route,
        )?;
        let added_latency = Histogram::with_opts(
            HistogramOpts::new(
                "llmux_added_latency_seconds",
                "Time spent in the gateway before the response head, upstream time excluded.",
            )
            .buckets(ADDED_BUCKETS.to_vec()),
        )?;
        let breaker = IntGaugeVec::new(
            Opts::new(
                "llmux_breaker_state",
                "Circuit breaker: 0 closed, 1 half-open, 2 open, 3 disabled (credentials rejected).",
            ),
            &["provider", "channel"],
        )?;
        let channel_disabled = IntGaugeVec::new(
            Opts::new(
                "llmux_channel_disabled",
                "1 while the upstream's rejection of the channel's credentials keeps it out of rotation.",
            ),
            &["provider", "channel", "reason"],
        )?;
        let inflight_streams =
            IntGauge::with_opts(Opts::new("llmux_inflight_streams", "Streams being served."))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(failovers.clone()))?;
        registry.register(Box::new(tokens.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(ttft.clone()))?;
        registry.register(Box::new(added_latency.clone()))?;
        registry.register(Box::new(breaker.clone()))?;
        registry.register(Box::new(channel_disabled.clone()))?;
        let limits_backend_errors = limits_backend_errors()?;
        registry.register(Box::new(inflight_streams.clone()))?;
        registry.register(Box::new(limits_backend_errors.clone()))?;
        let key_families = KeyFamilies {
            requests: IntCounterVec::new(
                Opts::new(
                    "llmux_key_requests_total",
                    "Requests per key and team, by status class (keys past metrics.max_key_labels are key=\"other\").",
                ),
                &["key", "team", "status"],
            )?,
            tokens: IntCounterVec::new(
                Opts::new("llmux_key_tokens_total", "Billed tokens per key and team, input and output."),
                &["key", "team", "kind"],
            )?,
            cost: CounterVec::new(
                Opts::new("llmux_key_cost_total", "Billed cost per key and team, in the price table's currency."),
                &["key", "team"],
            )?,
        };
        registry.register(Box::new(key_families.requests.clone()))?;
        registry.register(Box::new(key_families.tokens.clone()))?;
        registry.register(Box::new(key_families.cost.clone()))?;
        let cache = crate::cache::CacheMetrics::new()?;
        for c in cache.collectors() {
            registry.register(c)?;
        }
        register_process_metrics(&registry)?;
        let events = crate::events::EventMetrics::register(&registry)?;
        Ok(Metrics {
            registry,
            requests,
            errors,
            failovers,
            tokens,
            duration,
            ttft,
            added_latency,
            breaker,
            channel_disabled,
            inflight_streams,
            limits_backend_errors,
            events,
            key_families,
            callers: Arc::new(Callers {
                max: max_key_labels,
                known: RwLock::new(HashMap::new()),
                other: OnceLock::new(),
            }),
            routes: Arc::default(),
            cache,
        })
    }

    /// The caller of an authenticated request, with its key's series: cached per key (a
    /// lookup under a read lock, no allocation), refreshed when the key's name or team
    /// changed. `None` for open access.
    pub fn caller(&self, principal: &Principal) -> Option<Arc<Caller>> {
        let (ident, key_id) = match principal {
            Principal::Open => return None,
            Principal::Static(i) => (KeyIdent::Static(*i), None),
            Principal::Virtual(k) => (KeyIdent::Virtual(k.record.id), Some(k.record.id)),
        };
        let team = principal.team();
        let current = |c: &Caller| match principal {
            Principal::Virtual(k) => *c.key == *k.record.name && c.team.as_deref() == team,
            Principal::Static(_) | Principal::Open => true,
        };
        let callers = &*self.callers;
        let full = {
            let known = callers
                .known
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match known.get(&ident) {
                Some(c) if current(c) => return Some(c.clone()),
                Some(_) => false,
                None => known.len() >= callers.max,
            }
        };
        let key: Arc<str> = Arc::from(principal.key_name().as_ref());
        let team: Option<Arc<str>> = team.map(Arc::from);
        if full {
            // Over the guard: counted under `other` and not remembered (the key's own name is
            // still logged; each such request costs a small allocation, never a label).
            let other = callers.other.get_or_init(|| {
                Arc::new(KeySeries::new(
                    &self.key_families,
                    Arc::from(OTHER_KEY),
                    Arc::from(""),
                ))
            });
            return Some(Arc::new(Caller {
                key_id,
                key,
                team,
                series: other.clone(),
            }));
        }
        let label_team = team.clone().unwrap_or_else(|| Arc::from(""));
        let caller = Arc::new(Caller {
            key_id,
            key: key.clone(),
            team,
            series: Arc::new(KeySeries::new(&self.key_families, key, label_team)),
        });
        let mut known = callers
            .known
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Two first requests of a key may race here: the second entry replaces the first,
        // both hold handles to the same series.
        if known.len() < callers.max || known.contains_key(&ident) {
            known.insert(ident, caller.clone());
        }
        Some(caller)
    }

    /// The series of the route (`provider`, `channel`, `model` labels): cached per route (a
    /// lookup under a read lock, no allocation once the route was seen).
    pub fn route(
        &self,
        provider: &'static str,
        channel: &Arc<str>,
        model: &Arc<str>,
    ) -> Arc<RouteSeries> {
        let cache = &*self.routes;
        if let Some(s) = cache.get(provider, channel, model) {
            return s;
        }
        let series = Arc::new(RouteSeries {
            provider,
            channel: channel.clone(),
            model: model.clone(),
            families: RouteFamilies {
                requests: self.requests.clone(),
                tokens: self.tokens.clone(),
                duration: self.duration.clone(),
                ttft: self.ttft.clone(),
            },
            requests: Default::default(),
            tokens: Default::default(),
            duration: OnceLock::new(),
            ttft: OnceLock::new(),
        });
        use std::sync::atomic::Ordering;
        if cache.len.load(Ordering::Relaxed) >= RouteCache::MAX {
            return series;
        }
        let mut map = cache
            .by_channel
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let same = map
            .entry(channel.clone())
            .or_default()
            .entry(model.clone())
            .or_default();
        // Two first requests of a route may race here: the first one kept wins, and both
        // count into the same labelled series either way.
        if let Some(kept) = same.iter().find(|s| s.provider == provider) {
            return kept.clone();
        }
        same.push(series.clone());
        cache.len.fetch_add(1, Ordering::Relaxed);
        series
    }

    /// The text exposition, with breaker gauges refreshed (and, on Linux, the process's CPU
    /// time and memory read at that moment).
    pub fn render(&self, routes: &Routes) -> String {
        use llmux_core::resilience::{breaker::verdict, BreakerState, Verdict};
        for ch in routes.channels() {
            let status = routes.breaker_status(ch);
            let v = match status.state {
                BreakerState::Closed => 0,
                BreakerState::HalfOpen => 1,
                BreakerState::Open => 2,
                BreakerState::Disabled => 3,
            };
            self.breaker
                .with_label_values(&[ch.provider_id, &ch.name])
                .set(v);
            let credential_kinds = llmux_core::ErrorKind::ALL
                .into_iter()
                .filter(|k| verdict(*k) == Verdict::CredentialsRejected);
            for kind in credential_kinds {
                let on = status.state == BreakerState::Disabled && status.disabled_by == Some(kind);
                self.channel_disabled
                    .with_label_values(&[ch.provider_id, &ch.name, kind.as_str()])
                    .set(i64::from(on));
            }
        }
        let mut buf = Vec::with_capacity(8192);
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::warn!("could not encode metrics: {e}");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// `process_cpu_seconds_total`, `process_resident_memory_bytes` and the rest of the standard
/// process series, read from `/proc/self` at each scrape (Linux only).
fn register_process_metrics(registry: &Registry) -> Result<(), prometheus::Error> {
    #[cfg(target_os = "linux")]
    registry.register(Box::new(
        prometheus::process_collector::ProcessCollector::for_self(),
    ))?;
    #[cfg(not(target_os = "linux"))]
    let _ = registry;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exposition(m: &Metrics) -> String {
        m.render(&Routes::new(Vec::new()))
    }

    #[test]
    fn a_routes_series_are_made_once_and_count_under_its_labels() {
        let m = Metrics::new().unwrap();
        let (channel, model): (Arc<str>, Arc<str>) = (Arc::from("ch-a"), Arc::from("gpt-x"));
        let first = m.route("openai", &channel, &model);
        let again = m.route("openai", &Arc::from("ch-a"), &Arc::from("gpt-x"));
        assert!(
            Arc::ptr_eq(&first, &again),
            "a seen route is looked up, not made again"
        );
        let other_provider = m.route("deepseek", &channel, &model);
        assert!(!Arc::ptr_eq(&first, &other_provider));
        first.count_request(200);
        again.count_request(503);
        again.count_request(299);
        first.count_tokens(false, 12);
        first.count_tokens(true, 30);
        first.observe_duration(0.2);
        other_provider.observe_ttft(0.05);
        let text = exposition(&m);
        for line in [
            r#"llmux_requests_total{channel="ch-a",model="gpt-x",provider="openai",status="2xx"} 2"#,
            r#"llmux_requests_total{channel="ch-a",model="gpt-x",provider="openai",status="5xx"} 1"#,
            r#"llmux_tokens_total{channel="ch-a",kind="input",model="gpt-x",provider="openai"} 12"#,
            r#"llmux_tokens_total{channel="ch-a",kind="output",model="gpt-x",provider="openai"} 30"#,
            r#"llmux_request_duration_seconds_count{channel="ch-a",model="gpt-x",provider="openai"} 1"#,
            r#"llmux_ttft_seconds_count{channel="ch-a",model="gpt-x",provider="deepseek"} 1"#,
        ] {
            assert!(text.contains(line), "missing `{line}` in\n{text}");
        }
        // Unused classes and series are not exported as zeros.
        assert!(!text.contains(r#"status="4xx""#));
        assert!(!text.contains(
            r#"llmux_ttft_seconds_count{channel="ch-a",model="gpt-x",provider="openai"}"#
        ));
    }

    #[test]
    fn past_the_bound_a_route_is_counted_without_being_kept() {
        let m = Metrics::new().unwrap();
        m.routes
            .len
            .store(RouteCache::MAX, std::sync::atomic::Ordering::Relaxed);
        let (channel, model): (Arc<str>, Arc<str>) = (Arc::from("late"), Arc::from("m"));
        let a = m.route("openai", &channel, &model);
        let b = m.route("openai", &channel, &model);
        assert!(!Arc::ptr_eq(&a, &b), "nothing is kept past the bound");
        a.count_request(200);
        b.count_request(200);
        let text = exposition(&m);
        let line =
            r#"llmux_requests_total{channel="late",model="m",provider="openai",status="2xx"} 2"#;
        assert!(text.contains(line), "missing `{line}` in\n{text}");
    }
}
