//! Prometheus metrics, one registry per gateway (so tests can run several in one process).
//! Labels are low-cardinality only: `provider`, `channel`, `model` (configured public names,
//! or `channel/*` for passthrough addresses, or empty before routing) and `kind`.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::routing::Routes;

/// Every series the gateway exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// `llmux_requests_total{provider,channel,model}`: routed requests, by the channel that served (or last failed).
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
    /// A fresh registry with every series registered.
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let route = &["provider", "channel", "model"];
        let requests =
            IntCounterVec::new(Opts::new("llmux_requests_total", "Routed requests."), route)?;
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
        })
    }

    /// The text exposition, with breaker gauges refreshed.
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
