//! `llmux events tail`: print the gateway's usage events from its NATS JetStream stream, one
//! JSON object per line, through an ephemeral ordered consumer (nothing is acknowledged or left
//! behind on the server).

use std::io::Write as _;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use llmux_gateway::events::config::{resolve, RawEvents, DEFAULT_NATS};
use llmux_gateway::events::nats::Tail;
use llmux_gateway::serve as gw;

use crate::error::{CliError, Result};

/// `llmux events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    #[command(subcommand)]
    pub command: EventsCommand,
}

/// `llmux events` subcommands.
#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Print usage events as they are published (or all the stream holds, with --from-start),
    /// one JSON object per line.
    Tail(TailArgs),
}

/// `llmux events tail` flags.
#[derive(Debug, Args)]
pub struct TailArgs {
    /// The gateway configuration file whose events table to read (default: $LLMUX_CONFIG; without
    /// either, nats://127.0.0.1:4222 and the stream LLMUX_USAGE).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The NATS server(s), over the configuration's `events.nats`.
    #[arg(long, value_name = "URL")]
    pub nats: Option<String>,
    /// The stream, over the configuration's `events.stream`.
    #[arg(long, value_name = "NAME")]
    pub stream: Option<String>,
    /// Only events on subjects matching this (e.g. `llmux.usage.openai`; default: everything
    /// the stream holds).
    #[arg(long, value_name = "SUBJECT")]
    pub filter: Option<String>,
    /// Start from the oldest event the stream holds instead of the next one published.
    #[arg(long)]
    pub from_start: bool,
    /// Stop after this many events.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
}

/// Runs `llmux events`.
pub async fn run(args: EventsArgs) -> Result<()> {
    match args.command {
        EventsCommand::Tail(args) => tail(args).await,
    }
}

/// `[events]` from the configuration (when there is one), with the flags over it.
fn settings(args: &TailArgs) -> Result<llmux_gateway::events::EventsConfig> {
    let mut raw = match gw::config_path(args.config.as_deref()) {
        Some(path) => gw::load_raw(Some(&path))
            .map_err(|e| {
                CliError::msg(format!(
                    "invalid configuration: {}",
                    e.to_string().replace('\n', "; ")
                ))
            })?
            .events
            .unwrap_or_default(),
        None => RawEvents::default(),
    };
    // Reading needs no publishing: a configuration with `enabled = false` names the stream too.
    raw.enabled = true;
    if let Some(nats) = &args.nats {
        raw.nats = Some(nats.clone());
    }
    raw.nats.get_or_insert_with(|| DEFAULT_NATS.to_owned());
    if let Some(stream) = &args.stream {
        raw.stream = stream.clone();
    }
    let mut issues = Vec::new();
    let lookup = |k: &str| std::env::var(k).ok();
    match resolve(Some(raw), &lookup, &mut issues) {
        Some(cfg) if issues.is_empty() => Ok(cfg),
        _ => Err(CliError::msg(format!(
            "invalid [events] settings: {}",
            issues
                .iter()
                .map(|i| format!("{}: {}", i.path, i.message))
                .collect::<Vec<_>>()
                .join("; ")
        ))),
    }
}

async fn tail(args: TailArgs) -> Result<()> {
    if args.count == Some(0) {
        return Ok(());
    }
    let cfg = settings(&args)?;
    let mut reader = Tail::open(&cfg, args.from_start, args.filter.as_deref())
        .await
        .map_err(|e| CliError::msg(e.to_string()))?;
    let mut printed = 0u64;
    let mut out = std::io::stdout();
    loop {
        let next = tokio::select! {
            next = reader.next() => next,
            _ = tokio::signal::ctrl_c() => return Err(CliError::Cancelled),
        };
        let body = match next {
            None => {
                return Err(CliError::msg(format!(
                    "the stream {} closed after {printed} events",
                    cfg.stream
                )))
            }
            Some(Err(e)) => return Err(CliError::msg(e.to_string())),
            Some(Ok(body)) => body,
        };
        // One line per event, whatever the publisher's formatting.
        let line = match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(v) => v.to_string(),
            Err(e) => {
                eprintln!("skipping a message that is not JSON ({e})");
                continue;
            }
        };
        writeln!(out, "{line}")
            .and_then(|()| out.flush())
            .map_err(|e| CliError::io("writing to stdout", e))?;
        printed += 1;
        if args.count.is_some_and(|n| printed >= n) {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(nats: Option<&str>, stream: Option<&str>) -> TailArgs {
        TailArgs {
            config: Some(PathBuf::from("/nonexistent/llmux.toml")),
            nats: nats.map(str::to_owned),
            stream: stream.map(str::to_owned),
            filter: None,
            from_start: false,
            count: None,
        }
    }

    #[test]
    fn an_unreadable_configuration_is_one_line() {
        let e = settings(&args(None, None)).unwrap_err().to_string();
        assert!(e.starts_with("invalid configuration: cannot read"), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn flags_are_checked_like_the_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("llmux.toml");
        std::fs::write(
            &file,
            "[events]\nenabled = false\nnats = \"nats://cfg:4222\"\nstream = \"FROM_FILE\"\n",
        )
        .unwrap();
        let mut a = args(None, None);
        a.config = Some(file.clone());
        let c = settings(&a).unwrap();
        assert_eq!(c.stream, "FROM_FILE");
        assert_eq!(c.servers[0].expose(), "nats://cfg:4222");
        let mut a = args(Some("nats://flag:4222"), Some("FROM_FLAG"));
        a.config = Some(file);
        let c = settings(&a).unwrap();
        assert_eq!(c.stream, "FROM_FLAG");
        assert_eq!(c.servers[0].expose(), "nats://flag:4222");
        let empty = dir.path().join("empty.toml");
        std::fs::write(&empty, "").unwrap();
        let mut a = args(None, None);
        a.config = Some(empty.clone());
        let c = settings(&a).unwrap();
        assert_eq!(
            (c.stream.as_str(), c.servers[0].expose()),
            ("LLMUX_USAGE", DEFAULT_NATS)
        );
        let mut a = args(Some("http://x"), Some("a.b"));
        a.config = Some(empty);
        let e = settings(&a).unwrap_err().to_string();
        assert!(
            e.contains("events.nats[0]") && e.contains("events.stream"),
            "{e}"
        );
    }
}
