//! OpenTelemetry traces over OTLP/HTTP (protobuf), when `[telemetry] otlp_endpoint` is set.
//!
//! Spans are ordinary `tracing` spans with the target [`llmux_core::SPAN_TARGET`]: the
//! middleware opens one per request (server kind, [`request_span`]), continuing the trace of an
//! incoming W3C `traceparent`; the core client opens one per upstream attempt (client kind),
//! its child. [`Tracing::layer`] turns them into OpenTelemetry spans; without it no subscriber
//! enables the target, every span is disabled at its call site and costs one cached check.
//!
//! Export is batched on the SDK's own thread (a bounded queue: when it is full, spans are
//! dropped, never waited for); each batch is posted with the reqwest client on the serving
//! runtime, with a timeout, so a collector that is down or slow costs requests nothing.
//! Attributes carry names, ids, models and counts, never a key, a header value or a body.

use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{HttpClient, HttpError};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider,
};
use opentelemetry_sdk::Resource;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use crate::config::TelemetryConfig;

/// How long one export request may take before it is abandoned.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the batch is sent when it does not fill first.
const EXPORT_INTERVAL: Duration = Duration::from_secs(2);
/// Spans waiting for export at most; more are dropped.
const MAX_QUEUED_SPANS: usize = 4096;
/// The largest collector answer read (they are small protobuf messages).
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// How long shutdown waits for the last batch.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

/// The trace exporter of one process: started by [`Tracing::start`], flushed by
/// [`Tracing::shutdown`].
#[derive(Debug)]
pub struct Tracing {
    provider: SdkTracerProvider,
}

impl Tracing {
    /// Starts exporting to `config.otlp_traces_url`; `Ok(None)` when no endpoint is set. Call
    /// it inside the runtime that serves: export requests run on it.
    pub fn start(config: &TelemetryConfig) -> Result<Option<Tracing>, String> {
        let Some(url) = &config.otlp_traces_url else {
            return Ok(None);
        };
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| "traces need a running async runtime".to_owned())?;
        let http = reqwest::Client::builder()
            .timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|e| format!("building the OTLP client: {e}"))?;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(Poster { http, runtime })
            .with_endpoint(url.clone())
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|e| format!("telemetry.otlp_endpoint: {e}"))?;
        let batch = BatchConfigBuilder::default()
            .with_max_queue_size(MAX_QUEUED_SPANS)
            .with_scheduled_delay(EXPORT_INTERVAL)
            .build();
        let processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(batch)
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                config.sample_ratio,
            ))))
            .with_resource(
                Resource::builder()
                    .with_service_name(config.service_name.clone())
                    .build(),
            )
            .build();
        Ok(Some(Tracing { provider }))
    }

    /// The layer that turns llmux's spans (and only those) into exported OpenTelemetry spans.
    pub fn layer<S>(&self) -> impl Layer<S> + Send + Sync + 'static
    where
        S: tracing::Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
    {
        tracing_opentelemetry::layer()
            .with_tracer(self.provider.tracer("llmux"))
            .with_location(false)
            .with_threads(false)
            .with_tracked_inactivity(false)
            .with_filter(Targets::new().with_target(llmux_core::SPAN_TARGET, tracing::Level::TRACE))
    }

    /// Exports what is still queued (waiting at most a few seconds) and stops the exporter.
    pub async fn shutdown(self) {
        let provider = self.provider;
        let flush =
            tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(SHUTDOWN_WAIT));
        match tokio::time::timeout(SHUTDOWN_WAIT + Duration::from_secs(1), flush).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "the last spans could not be exported"),
            Ok(Err(_)) | Err(_) => tracing::warn!("the last spans could not be exported in time"),
        }
    }

    /// Exports every span ended so far (for tests; waits at most a few seconds).
    pub async fn flush(&self) {
        let provider = self.provider.clone();
        let flush = tokio::task::spawn_blocking(move || provider.force_flush());
        let _ = tokio::time::timeout(SHUTDOWN_WAIT, flush).await;
    }
}

/// The span of one request (server kind), continuing the trace of the request's `traceparent`
/// header when it has a valid one. Disabled, and free, unless traces are exported.
pub fn request_span(method: &http::Method, path: &str, headers: &HeaderMap) -> tracing::Span {
    let span = tracing::info_span!(
        target: llmux_core::SPAN_TARGET,
        "request",
        otel.name = Empty,
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = method.as_str(),
        url.path = path,
        http.response.status_code = Empty,
        llmux.request_id = Empty,
        gen_ai.operation.name = Empty,
        gen_ai.request.model = Empty,
        gen_ai.response.model = Empty,
        gen_ai.provider.name = Empty,
        gen_ai.system = Empty,
        gen_ai.usage.input_tokens = Empty,
        gen_ai.usage.output_tokens = Empty,
        error.type = Empty,
        llmux.stream = Empty,
        llmux.channel = Empty,
        llmux.key = Empty,
        llmux.team = Empty,
    );
    if span.is_disabled() {
        return span;
    }
    span.record("otel.name", format!("{method} {path}").as_str());
    if headers.contains_key("traceparent") {
        let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
        let _ = span.set_parent(parent);
    }
    span
}

/// Reads W3C trace context from request headers.
struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// Posts export requests with reqwest on the serving runtime (the SDK calls it from its own
/// thread and waits for the task).
#[derive(Debug)]
struct Poster {
    http: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl HttpClient for Poster {
    async fn send_bytes(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, HttpError> {
        let http = self.http.clone();
        let task = self.runtime.spawn(async move {
            let (head, body) = request.into_parts();
            let mut resp = http
                .request(head.method, head.uri.to_string())
                .headers(head.headers)
                .body(body)
                .send()
                .await?;
            let mut answer = http::Response::builder().status(resp.status());
            if let Some(h) = answer.headers_mut() {
                *h = std::mem::take(resp.headers_mut());
            }
            let mut body = Vec::new();
            while let Some(chunk) = resp.chunk().await? {
                if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                    break;
                }
                body.extend_from_slice(&chunk);
            }
            Ok::<_, HttpError>(answer.body(Bytes::from(body))?)
        });
        task.await?
    }
}
