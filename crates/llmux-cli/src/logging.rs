//! Log lines on stderr, as text or as JSON objects, plus (for `serve`) the layer that exports
//! spans when tracing is configured.

use std::sync::atomic::{AtomicBool, Ordering};

use llmux_gateway::config::LogFormat;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// A layer over the plain registry (the log lines, or the span exporter).
pub type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

static JSON: AtomicBool = AtomicBool::new(false);

/// True once log lines are JSON: then whatever else goes to stderr should be a log event too.
pub fn is_json() -> bool {
    JSON.load(Ordering::Relaxed)
}

/// The log filter: RUST_LOG when set, else by `-v`; `serve` logs at info by default, other
/// commands nothing. The spans made for trace export never show in log lines.
fn filter(verbose: u8, server: bool) -> Option<EnvFilter> {
    let filter = match (std::env::var("RUST_LOG"), verbose) {
        (Ok(spec), _) if !spec.is_empty() => EnvFilter::new(spec),
        (_, 0) if server => EnvFilter::new("info"),
        (_, 0) => return None,
        (_, 1) => EnvFilter::new("warn,llmux_core=info,llmux_cli=info,llmux_emulator=info"),
        _ => EnvFilter::new("info,llmux_core=debug,llmux_cli=debug,llmux_emulator=debug"),
    };
    Some(match format!("{}=off", llmux_core::SPAN_TARGET).parse() {
        Ok(off) => filter.add_directive(off),
        Err(_) => filter,
    })
}

/// Installs the process's subscriber: log lines in `format` (when the filter enables any) and
/// `spans`, the trace exporter's layer, when given.
pub fn init(verbose: u8, server: bool, format: LogFormat, spans: Option<BoxedLayer>) {
    let mut layers: Vec<BoxedLayer> = Vec::with_capacity(2);
    if let Some(filter) = filter(verbose, server) {
        let stderr = std::io::stderr;
        layers.push(match format {
            LogFormat::Text => tracing_subscriber::fmt::layer()
                .with_writer(stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_filter(filter)
                .boxed(),
            LogFormat::Json => {
                JSON.store(true, Ordering::Relaxed);
                // `timestamp` is RFC 3339 (UTC, microseconds); the event's fields sit at the
                // top level beside `level`, `target` and `message`, as in the text line.
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_writer(stderr)
                    .with_filter(filter)
                    .boxed()
            }
        });
    }
    layers.extend(spans);
    if !layers.is_empty() {
        // Fails only when a subscriber is already set, which `main` never does twice.
        let _ = tracing_subscriber::registry().with(layers).try_init();
    }
}
