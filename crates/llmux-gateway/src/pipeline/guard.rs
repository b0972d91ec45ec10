//! Steps 2 and 5 of the pipeline: the per-request usage guard, opened before the first
//! upstream call and closed exactly once, however the request ends.

use std::sync::Arc;
use std::time::Duration;

use llmux_core::{ErrorKind, Usage};

use crate::config::Channel;
use crate::limits::Admission;
use crate::state::{AppState, Outcome, RequestCtx};
use crate::store::{InflightRecord, UsageRecord};
use crate::usage::{bill, BilledUsage, OutputTally, StreamOutcome};

/// The labels of a routed request, attached to its response for the middleware.
#[derive(Debug, Clone)]
pub struct RouteLabels {
    /// Provider id.
    pub provider: &'static str,
    /// Channel name.
    pub channel: Arc<str>,
    /// Public model label.
    pub model: Arc<str>,
}

impl RouteLabels {
    pub(crate) fn new(ch: &Channel, model: Arc<str>) -> Self {
        RouteLabels {
            provider: ch.provider_id,
            channel: ch.name.clone(),
            model,
        }
    }
}

/// Records one routed request exactly once: on `RequestGuard::finish` after `complete` or
/// `fail`, or, when dropped before (the client went away), as cancelled. It applies the
/// billing policy ([`crate::usage::bill`]), settles the key's limit admission, updates metrics
/// and hands a [`UsageRecord`] to the recorder.
///
/// The guard is opened with `RequestGuard::begin` before the first upstream call: in `sync`
/// durability that journals the request (awaited, bounded), so a crash after that point leaves
/// a row the next start records as interrupted. `finish` waits (bounded) until the record is
/// committed, so handlers call it before the end of the response goes out; a guard dropped
/// without `finish` hands its record over without waiting.
#[derive(Debug)]
pub struct RequestGuard {
    state: Arc<AppState>,
    labels: RouteLabels,
    upstream_model: Arc<str>,
    ctx: RequestCtx,
    key_id: Option<i64>,
    team_id: Option<i64>,
    admission: Option<Admission>,
    stream: bool,
    usage: Option<Usage>,
    tally: OutputTally,
    prompt_estimate: u64,
    ttft: Option<Duration>,
    outcome: Option<Outcome>,
    /// The error was already answered (and counted by the middleware).
    answered: bool,
    /// A journal row was handed over for this request (its record replaces it; abandoning the
    /// request clears it).
    journaled: bool,
    /// The record was handed over (or the request abandoned).
    done: bool,
    /// Answered from the response cache: cost 0, no upstream tokens spent.
    cache_hit: bool,
}

/// What a guard needs to know about the request.
#[derive(Debug)]
pub(crate) struct GuardInit {
    pub(crate) key_id: Option<i64>,
    /// The key's team, if any.
    pub(crate) team_id: Option<i64>,
    pub(crate) admission: Option<Admission>,
    pub(crate) stream: bool,
    /// Prompt tokens as estimated (billed when nothing better is known).
    pub(crate) prompt_estimate: u64,
    /// The whole estimate admitted: prompt plus output reserve.
    pub(crate) estimate: u64,
    /// The response cache answers it (no upstream call: nothing to journal).
    pub(crate) cache_hit: bool,
}

impl RequestGuard {
    /// Now, in unix milliseconds, from the clock that decides budget periods (so a record
    /// counts in the period its settle counted it in).
    fn now_ms(&self) -> i64 {
        self.state.limits.clock().now_ms()
    }

    /// Opens the guard of an admitted request before its first upstream call, labelled with
    /// the plan's first channel, and journals it in `sync` durability (waiting at most
    /// `server.usage_commit_timeout` for the commit).
    pub(crate) async fn begin(
        state: Arc<AppState>,
        ctx: RequestCtx,
        plan: &crate::routing::Plan,
        init: GuardInit,
    ) -> Self {
        let first = plan.targets.first().map(|t| (&t.channel, t));
        let (labels, upstream_model) = match first {
            Some((ch, t)) => (RouteLabels::new(ch, plan.label.clone()), t.upstream.clone()),
            None => (
                RouteLabels {
                    provider: "",
                    channel: Arc::from(""),
                    model: plan.label.clone(),
                },
                Arc::from(""),
            ),
        };
        let routable = first.is_some();
        if init.stream {
            state.metrics.inflight_streams.inc();
        }
        let mut guard = RequestGuard {
            state,
            labels,
            upstream_model,
            ctx,
            key_id: init.key_id,
            team_id: init.team_id,
            admission: init.admission,
            stream: init.stream,
            usage: None,
            tally: OutputTally::default(),
            prompt_estimate: init.prompt_estimate,
            ttft: None,
            outcome: None,
            answered: false,
            journaled: false,
            done: false,
            cache_hit: false,
        };
        let journal = guard.state.recorder.clone().filter(|r| {
            r.durability() == crate::usage::Durability::Sync && routable && !init.cache_hit
        });
        if let Some(recorder) = journal {
            let reserve = init.estimate.saturating_sub(init.prompt_estimate);
            if let Some(journaled) = recorder.journal(guard.journal_row(plan, reserve)) {
                // Set before waiting: if the client leaves during the wait, the dropped guard
                // still records the request, and its record replaces the row.
                guard.journaled = true;
                recorder.wait_commit(journaled).await;
            }
        }
        guard
    }

    /// The in-flight journal row of this request: its first channel, the whole plan, and the
    /// estimate it would be billed if its gateway died before it ended.
    fn journal_row(&self, plan: &crate::routing::Plan, output_reserve: u64) -> InflightRecord {
        let mut plan_names = String::new();
        for (i, t) in plan.targets.iter().enumerate() {
            if i > 0 {
                plan_names.push(',');
            }
            plan_names.push_str(&t.channel.name);
        }
        let mut row = InflightRecord {
            request_id: String::from(&*self.ctx.id),
            instance: String::new(),
            at_ms: self.now_ms(),
            key_id: self.key_id,
            team_id: self.team_id,
            channel: String::from(&*self.labels.channel),
            provider: self.labels.provider.to_owned(),
            model: String::from(&*self.labels.model),
            upstream_model: String::from(&*self.upstream_model),
            plan: plan_names,
            input_tokens: self.prompt_estimate,
            output_tokens: output_reserve,
            cost: 0.0,
            stream: self.stream,
            client_request_id: self.ctx.client_id.as_deref().map(str::to_owned),
        };
        row.cost = self.state.prices.estimate(
            &row.model,
            &row.provider,
            &row.upstream_model,
            crate::usage::Tokens {
                input: row.input_tokens,
                output: row.output_tokens,
                ..Default::default()
            },
        );
        row
    }

    /// The channel that served (or last failed) the request, and its upstream model.
    pub(crate) fn routed(&mut self, ch: &Channel, upstream: Arc<str>) {
        self.labels = RouteLabels::new(ch, self.labels.model.clone());
        self.upstream_model = upstream;
        let span = &self.ctx.span;
        if !span.is_disabled() {
            span.record("gen_ai.provider.name", ch.provider_id);
            span.record("gen_ai.system", ch.provider_id);
            span.record("llmux.channel", &*ch.name);
        }
    }

    /// The request is answered from the response cache: recorded under the channel that
    /// produced the stored answer, marked `cache_hit`, at cost 0; its tokens count against
    /// no budget, TPM or token metric (they were spent once, by the request that filled the
    /// entry).
    pub(crate) fn cache_hit(&mut self, origin: &crate::cache::Origin) {
        let provider = llmux_core::providers::REGISTRY
            .iter()
            .find(|p| p.id == origin.provider)
            .map_or("", |p| p.id);
        self.labels = RouteLabels {
            provider,
            channel: Arc::from(origin.channel.as_str()),
            model: self.labels.model.clone(),
        };
        self.upstream_model = Arc::from(origin.upstream_model.as_str());
        self.cache_hit = true;
    }

    /// The request ended before any channel was tried: no record, the journal row is cleared
    /// and the admission released.
    pub(crate) fn abandon(mut self) {
        self.done = true;
        if self.journaled {
            if let Some(r) = &self.state.recorder {
                r.abandon(String::from(&*self.ctx.id));
            }
        }
    }

    /// Usage as reported.
    pub(crate) fn usage(&mut self, u: Usage) {
        self.usage = Some(u);
    }

    /// Counts streamed output (for billing when no usage arrives).
    pub(crate) fn saw(&mut self, ev: &llmux_core::StreamEvent) {
        match ev {
            llmux_core::StreamEvent::TextDelta { text } => self.tally.push(text),
            llmux_core::StreamEvent::ReasoningDelta { text } => self.tally.push_reasoning(text),
            llmux_core::StreamEvent::ToolCallDelta {
                name, arguments, ..
            } => {
                if let Some(n) = name {
                    self.tally.push(n);
                }
                self.tally.push(arguments);
            }
            llmux_core::StreamEvent::Usage(u) => self.usage = Some(*u),
            llmux_core::StreamEvent::Started { model, .. } => {
                self.ctx
                    .span
                    .record("gen_ai.response.model", model.as_str());
            }
            // A signature is not output the client is billed for.
            llmux_core::StreamEvent::Finished { .. }
            | llmux_core::StreamEvent::ReasoningSignature { .. } => {}
        }
    }

    /// Time to first event.
    pub(crate) fn ttft(&mut self, d: Duration) {
        self.ttft = Some(d);
    }

    /// Answered completely.
    pub(crate) fn complete(&mut self) {
        self.outcome = Some(Outcome::Complete);
    }

    /// Ended with an error; `answered` when an error response carried it (counted elsewhere).
    pub(crate) fn fail(&mut self, kind: ErrorKind, answered: bool) {
        self.outcome = Some(Outcome::Error(kind));
        self.answered = answered;
    }

    /// The route labels (the channel that served or last failed).
    pub(crate) fn labels(&self) -> &RouteLabels {
        &self.labels
    }

    /// The request id.
    pub(crate) fn request_id(&self) -> &Arc<str> {
        &self.ctx.id
    }

    /// Records the request now and, in `sync` durability, waits (at most
    /// `server.usage_commit_timeout`) until the record is committed. Call it after `complete`
    /// or `fail` and before the end of the response is sent. A second call does nothing.
    pub(crate) async fn finish(&mut self) {
        if self.done {
            return;
        }
        let rec = self.conclude();
        if let Some(r) = self.state.recorder.clone() {
            r.record_durably(rec).await;
        }
    }

    /// Bills, settles, counts and builds the record (once).
    fn conclude(&mut self) -> UsageRecord {
        self.done = true;
        let outcome = self.outcome.unwrap_or(Outcome::Cancelled);
        let (status, error_kind) = match outcome {
            Outcome::Complete => (200, None),
            Outcome::Error(kind) => (
                crate::error::status_for(kind).as_u16(),
                Some(kind.as_str().to_owned()),
            ),
            Outcome::Cancelled => (499, Some("cancelled".to_owned())),
        };
        let billed = bill(&StreamOutcome {
            reported: self.usage,
            output: self.tally,
            prompt_estimate: self.prompt_estimate,
            client_disconnected: outcome == Outcome::Cancelled,
            upstream_error: matches!(outcome, Outcome::Error(_)),
            finished: outcome == Outcome::Complete,
        });
        let elapsed = self.ctx.arrived.elapsed();
        self.count(outcome, status, &billed, elapsed);
        let span = &self.ctx.span;
        if !span.is_disabled() {
            span.record("gen_ai.usage.input_tokens", billed.input_tokens);
            span.record("gen_ai.usage.output_tokens", billed.output_tokens);
            if let Some(kind) = &error_kind {
                span.record("error.type", kind.as_str());
            }
            if status >= 500 {
                span.record("otel.status_code", "error");
            }
        }
        let l = &self.labels;
        let mut rec = UsageRecord {
            request_id: String::from(&*self.ctx.id),
            client_request_id: self.ctx.client_id.as_deref().map(str::to_owned),
            at_ms: self.now_ms(),
            key_id: self.key_id,
            team_id: self.team_id,
            channel: String::from(&*l.channel),
            provider: l.provider.to_owned(),
            model: String::from(&*l.model),
            upstream_model: String::from(&*self.upstream_model),
            input_tokens: billed.input_tokens,
            output_tokens: billed.output_tokens,
            cached_tokens: billed.cached_tokens,
            reasoning_tokens: billed.reasoning_tokens,
            cost: 0.0,
            latency_ms: ms(elapsed),
            ttft_ms: self.ttft.map(ms),
            status,
            error_kind,
            cancelled: billed.cancelled,
            stream: self.stream,
            usage_estimated: billed.usage_estimated,
            cache_hit: self.cache_hit,
        };
        if self.cache_hit {
            // Nothing was spent upstream: the admission settles at zero (its RPM slot stays).
            if let Some(adm) = self.admission.take() {
                self.state.limits.settle(adm, 0, 0.0);
            }
        } else {
            rec.cost = self.state.prices.cost(&rec);
            if let Some(caller) = self.ctx.caller() {
                caller.count_usage(rec.input_tokens, rec.output_tokens, rec.cost);
            }
            if let Some(adm) = self.admission.take() {
                self.state.limits.settle(adm, billed.total(), rec.cost);
            }
        }
        if outcome == Outcome::Cancelled {
            tracing::info!(request_id = %self.ctx.id, channel = %l.channel, "the client went away before the answer was complete");
        }
        rec
    }
}

impl RequestGuard {
    /// The request's metrics: one request, by its status class; its error kind, unless an error response carried it
    /// (the middleware counts those); its billed tokens, duration and time to first event.
    fn count(&self, outcome: Outcome, status: u16, billed: &BilledUsage, elapsed: Duration) {
        let m = &self.state.metrics;
        let l = &self.labels;
        let route = m.route(l.provider, &l.channel, &l.model);
        route.count_request(status);
        let error = match outcome {
            Outcome::Complete => None,
            Outcome::Error(kind) => (!self.answered).then_some(kind.as_str()),
            Outcome::Cancelled => Some("cancelled"),
        };
        if let Some(kind) = error {
            m.errors
                .with_label_values(&[l.provider, &l.channel, &l.model, kind])
                .inc();
        }
        if !self.cache_hit {
            for (tokens, output) in [(billed.input_tokens, false), (billed.output_tokens, true)] {
                if tokens > 0 {
                    route.count_tokens(output, tokens);
                }
            }
        }
        route.observe_duration(elapsed.as_secs_f64());
        if let Some(t) = self.ttft {
            route.observe_ttft(t.as_secs_f64());
        }
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        if self.stream {
            self.state.metrics.inflight_streams.dec();
        }
        if self.done {
            return;
        }
        let rec = self.conclude();
        if let Some(r) = &self.state.recorder {
            r.record(rec);
        }
    }
}
