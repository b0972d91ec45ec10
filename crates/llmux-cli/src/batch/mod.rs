//! `llmux batch IN.jsonl -o OUT.jsonl`: many chat requests through the core batch API
//! (concurrency, RPM/TPM limits, retries, breakers), one OpenAI Batch output line per input
//! line, written as each finishes, resumable after a crash or Ctrl-C.
//!
//! Semantics, decided once:
//! * Every runnable input line gets exactly one output line. A request that still fails after
//!   the client's retries is written with `error` set (OpenAI's Batch API reports failures as
//!   output lines too) and counts as done; `--retry-failed` drops those lines from OUT on the
//!   next run and sends them again.
//! * Resuming reads OUT, cuts off a partial last line (a kill mid-write), and skips every
//!   `custom_id` already there. Requests in flight when the process dies have no line yet and
//!   run again, so none is lost and none is written twice.
//! * Bad input lines (not JSON, no `custom_id`, a duplicate `custom_id`, an unsupported `url`,
//!   invalid values) are reported with their line number and skipped.
//! * An open circuit breaker (repeated upstream failures) does not fail lines: they wait for
//!   its cool-down and probe, and the progress output says so; only when the upstream has been
//!   failing for longer than `--breaker-wait` do the waiting lines fail with `circuit_open`.
//!   Lines that fail on their own merits (after retries) are written as errors at once.
//! * The exit status is 0 only when every input line has a successful output line; otherwise
//!   the run still completes and ends with one `error:` line saying what is missing.

mod input;
mod output;
mod progress;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::time::Duration;

use clap::Args;
use futures::StreamExt;
use llmux_core::providers::{self, ProviderSettings};
use llmux_core::resilience::LimitConfig;
use llmux_core::tokens::{estimate_request, DEFAULT_OUTPUT_RESERVE};
use llmux_core::{ChatRequest, Client};
use tokio::runtime::Runtime;
use tokio::time::Instant;

use crate::error::{CliError, Result};
use crate::request::ResilienceArgs;

use input::{parse_all, Item, ModelFlag};
use output::{failure_line, success_line, Resume, Writer};
use progress::{BreakerWatch, Prices, Progress, Tally};

/// `llmux batch` flags.
#[derive(Debug, Clone, Args)]
pub struct BatchArgs {
    /// Requests, one JSON object per line: OpenAI Batch API lines (`custom_id`, `method`,
    /// `url`, `body`) or the short form `{"custom_id", "messages"|"prompt", "model", …}`.
    #[arg(value_name = "IN.jsonl")]
    pub input: PathBuf,
    /// Where output lines are appended; rerunning with the same file resumes.
    #[arg(
        short,
        long,
        value_name = "OUT.jsonl",
        required_unless_present = "dry_run"
    )]
    pub output: Option<PathBuf>,
    /// `provider/model` replaces every line's model; a bare `provider` prefixes the lines' own
    /// model names (`-m openai` runs `gpt-4o-mini` as `openai/gpt-4o-mini`).
    #[arg(short, long, value_name = "PROVIDER[/MODEL]")]
    pub model: Option<String>,
    /// Endpoint of the provider the lines use (they must all use one).
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
    /// Requests in flight at once.
    #[arg(long, value_name = "N", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub concurrency: u32,
    /// Requests per minute, per provider (waits for budget instead of failing).
    #[arg(long, value_name = "N")]
    pub rpm: Option<u32>,
    /// Tokens per minute, per provider (estimated prompt + max_tokens, trued up on completion).
    #[arg(long, value_name = "N")]
    pub tpm: Option<u64>,
    /// Send again the lines OUT records as failed (their old lines are removed first).
    #[arg(long)]
    pub retry_failed: bool,
    /// Parse, report bad lines and print the token (and cost) estimate; send nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Price of input tokens, USD per million (with --price-out, shows cost).
    #[arg(long, value_name = "USD", requires = "price_out")]
    pub price_in: Option<f64>,
    /// Price of output tokens, USD per million.
    #[arg(long, value_name = "USD", requires = "price_in")]
    pub price_out: Option<f64>,
    /// How long lines wait out an open circuit breaker, counted from when it opened, before
    /// they fail with `circuit_open` (0 = fail at once), e.g. 30m.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration)]
    pub breaker_wait: Duration,
    /// When stderr is not a terminal: time between progress lines, e.g. 10s or 500ms.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub progress_interval: Duration,
    #[command(flatten)]
    pub resilience: ResilienceArgs,
}

fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    llmux_core::resilience::retry::humantime_serde::parse_duration(s)
}

impl BatchArgs {
    fn prices(&self) -> Prices {
        Prices {
            input: self.price_in,
            output: self.price_out,
        }
    }
}

/// Runs `llmux batch`.
pub fn main(rt: &Runtime, args: BatchArgs) -> Result<()> {
    let text = std::fs::read_to_string(&args.input)
        .map_err(|e| CliError::io(format!("reading {}", args.input.display()), e))?;
    let (items, bad) = parse_all(&text, &ModelFlag::parse(args.model.as_deref()));
    for b in &bad {
        eprintln!("{}:{}: skipped: {}", args.input.display(), b.line, b.reason);
    }
    let resume = match &args.output {
        Some(out) => Resume::load(out, args.retry_failed, !args.dry_run)?,
        None => Resume::default(),
    };
    if resume.truncated_bytes > 0 && !args.dry_run {
        eprintln!(
            "removed a partial last line ({} bytes) left by an interrupted run",
            resume.truncated_bytes
        );
    }
    let total_items = items.len();
    let pending: Vec<Item> = items
        .into_iter()
        .filter(|i| !resume.done.contains(&i.custom_id))
        .collect();
    let tally = Tally {
        to_run: pending.len(),
        resumed: total_items - pending.len(),
        bad: bad.len(),
        ..Tally::default()
    };
    if args.dry_run {
        println!("{}", estimate(&pending, &tally, &args.prices()));
        return Ok(());
    }
    let out = args
        .output
        .as_deref()
        .ok_or_else(|| CliError::msg("-o OUT.jsonl is required"))?;
    rt.block_on(run(&args, out, pending, tally, resume.failed_kept))
}

/// The `--dry-run` report.
fn estimate(pending: &[Item], tally: &Tally, prices: &Prices) -> String {
    let mut input = 0u64;
    let mut output = 0u64;
    for item in pending {
        let whole = estimate_request(&item.request);
        let reserve = item
            .request
            .max_tokens
            .map_or(DEFAULT_OUTPUT_RESERVE, u64::from);
        output += reserve;
        input += whole.saturating_sub(reserve);
    }
    let cost = match prices.cost(input, output) {
        Some(c) => format!("at most ${c:.4}"),
        None => "n/a (pass --price-in and --price-out, USD per million tokens)".to_owned(),
    };
    format!(
        "dry run: {} requests to send ({} already done, {} bad lines); nothing sent\n\
         estimated input tokens: {input}\n\
         output tokens reserved: {output} (max_tokens, or {DEFAULT_OUTPUT_RESERVE} where unset)\n\
         estimated cost: {cost}",
        tally.to_run, tally.resumed, tally.bad
    )
}

/// The client for the pending lines: one provider may get `--base-url`; every provider gets the
/// RPM/TPM limits. Each provider is resolved now, so a missing key is one error, not a failed
/// line per request.
fn client_for(args: &BatchArgs, pending: &[Item]) -> Result<Client> {
    let models: BTreeSet<&str> = pending.iter().map(|i| i.request.model.as_str()).collect();
    let mut pids = BTreeSet::new();
    for m in &models {
        pids.insert(providers::split_model(m)?.0);
    }
    let mut builder = args
        .resilience
        .apply(Client::builder())
        .batch_breaker_wait(args.breaker_wait);
    if let Some(url) = &args.base_url {
        let mut it = pids.iter();
        match (it.next(), it.next()) {
            (Some(pid), None) => {
                builder = builder.provider(pid, ProviderSettings::default().base_url(url));
            }
            (Some(_), Some(_)) => {
                let list: Vec<&str> = pids.iter().copied().collect();
                return Err(CliError::msg(format!(
                    "--base-url needs the lines to use one provider; they use {}",
                    list.join(", ")
                )));
            }
            (None, _) => {}
        }
    }
    if args.rpm.is_some() || args.tpm.is_some() {
        for pid in &pids {
            builder = builder.limit(
                pid,
                LimitConfig {
                    rpm: args.rpm,
                    tpm: args.tpm,
                    wait: true,
                },
            );
        }
    }
    let client = builder.build()?;
    for m in &models {
        client.resolve(m)?;
    }
    Ok(client)
}

/// How often the breakers are looked at for the progress display.
const BREAKER_POLL: Duration = Duration::from_millis(100);

async fn run(
    args: &BatchArgs,
    out: &Path,
    pending: Vec<Item>,
    mut tally: Tally,
    failed_kept: usize,
) -> Result<()> {
    let prices = args.prices();
    let started = Instant::now();
    if pending.is_empty() {
        eprintln!(
            "{}",
            progress::summary(&tally, Duration::ZERO, &prices, false)
        );
        return outcome(&tally, failed_kept, out);
    }
    let client = client_for(args, &pending)?;
    let mut writer = Writer::open(out)?;
    let run_id = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
    );
    let (ids, reqs): (Vec<(String, usize)>, Vec<ChatRequest>) = pending
        .into_iter()
        .map(|i| ((i.custom_id, i.line), i.request))
        .unzip();
    let mut bar = Progress::new(tally.to_run, args.progress_interval);
    let mut results = client.batch_stream(reqs, args.concurrency as usize);
    let mut interrupt = pin!(ctrl_c());
    let mut interrupted = false;
    let mut watch = BreakerWatch::default();
    let mut tick = tokio::time::interval(BREAKER_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let next = tokio::select! {
            next = results.next() => next,
            () = &mut interrupt => {
                interrupted = true;
                None
            }
            _ = tick.tick() => {
                if let Some(note) = watch.observe(&client.breaker_statuses()) {
                    bar.note(&note);
                }
                continue;
            }
        };
        let Some((i, result)) = next else { break };
        let Some((custom_id, line)) = ids.get(i) else {
            continue;
        };
        let id = format!("batch_req_{run_id}_{line}");
        let out_line = match &result {
            Ok(resp) => {
                tally.ok += 1;
                if let Some(u) = &resp.usage {
                    tally.input_tokens += u.input_tokens;
                    tally.output_tokens += u.output_tokens;
                }
                success_line(&id, custom_id, resp)
            }
            Err(e) => {
                tally.failed += 1;
                failure_line(&id, custom_id, e)
            }
        };
        if let Err(e) = writer.write(&out_line) {
            bar.finish(&tally, started, &prices);
            return Err(e);
        }
        bar.update(&tally, started, &prices);
    }
    // Stop what is in flight before reporting: those lines are not written and run again.
    drop(results);
    let synced = writer.sync();
    bar.finish(&tally, started, &prices);
    eprintln!(
        "{}",
        progress::summary(&tally, started.elapsed(), &prices, interrupted)
    );
    synced?;
    if interrupted {
        eprintln!(
            "{} of {} lines written to {}; rerun the same command to send the rest",
            tally.finished(),
            tally.to_run,
            out.display()
        );
        return Err(CliError::Cancelled);
    }
    outcome(&tally, failed_kept, out)
}

/// Ok when every input line has a successful output line; otherwise one error saying what is
/// missing.
fn outcome(tally: &Tally, failed_kept: usize, out: &Path) -> Result<()> {
    let failed = tally.failed + failed_kept;
    if failed == 0 && tally.bad == 0 {
        return Ok(());
    }
    let mut parts = Vec::new();
    if failed > 0 {
        parts.push(format!(
            "{failed} requests failed (their lines in {} have `error` set; rerun with \
             --retry-failed to send them again)",
            out.display()
        ));
    }
    if tally.bad > 0 {
        parts.push(format!("bad input lines skipped: {}", tally.bad));
    }
    Err(CliError::msg(parts.join("; ")))
}

async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use llmux_core::tokens::estimate_text as text_tokens;

    #[test]
    fn dry_run_estimate_counts_prompt_and_reserve() {
        let text = r#"{"custom_id":"a","prompt":"hello world!","model":"openai/m","max_tokens":10}
{"custom_id":"b","prompt":"hello world!","model":"openai/m"}"#;
        let (items, bad) = parse_all(text, &ModelFlag::None);
        assert!(bad.is_empty());
        let tally = Tally {
            to_run: 2,
            ..Tally::default()
        };
        let prompt = 2 * (4 + text_tokens("hello world!"));
        let prices = Prices {
            input: Some(1.0),
            output: Some(2.0),
        };
        let report = estimate(&items, &tally, &prices);
        assert!(
            report.contains(&format!("estimated input tokens: {prompt}\n")),
            "{report}"
        );
        assert!(report.contains("output tokens reserved: 1034 "), "{report}");
        let cost = (prompt as f64 + 2.0 * 1034.0) / 1e6;
        assert!(report.contains(&format!("at most ${cost:.4}")), "{report}");
        assert!(estimate(&items, &tally, &Prices::default()).contains("n/a"));
    }

    #[test]
    fn outcome_is_ok_only_when_everything_succeeded() {
        let out = Path::new("o.jsonl");
        assert!(outcome(&Tally::default(), 0, out).is_ok());
        let err = outcome(&Tally::default(), 2, out).unwrap_err().to_string();
        assert!(
            err.contains("2 requests failed") && err.contains("--retry-failed"),
            "{err}"
        );
        let t = Tally {
            bad: 1,
            ..Tally::default()
        };
        let err = outcome(&t, 0, out).unwrap_err().to_string();
        assert!(err.contains("bad input lines skipped: 1"), "{err}");
    }
}
