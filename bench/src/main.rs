//! `llmux-bench`: the gateway's added latency, throughput, CPU and memory, measured against
//! the same load sent straight to the upstream in the same run.
//!
//! It starts `llmux emulate` and one `llmux serve` per accounting setting as separate
//! processes on 127.0.0.1 (so `/proc` gives the gateway's CPU and peak RSS alone), then for
//! every upstream latency × mode × concurrency sends the same load directly to the emulator
//! and through each gateway, and prints a Markdown table. See `bench/README.md`.
#![allow(
    clippy::print_stdout,
    clippy::allow_attributes,
    reason = "a command-line benchmark: the table goes to stdout (progress goes to stderr)"
)]

mod load;
mod procs;
mod report;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use tokio::time::Instant;

use crate::load::{Load, Measured, Target};
use crate::procs::{Accounting, BoxError, CpuReading, EmulatorProc, GatewayProc};
use crate::report::{Report, Row, RunInfo};

/// Response mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// One JSON answer.
    NonStream,
    /// Server-sent events.
    Stream,
}

/// Benchmarks `llmux serve` in front of `llmux emulate` against direct calls to the emulator.
#[derive(Debug, Parser)]
#[command(name = "llmux-bench", version)]
struct Args {
    /// The `llmux` binary (default: `llmux` next to this executable, i.e. the same target dir).
    #[arg(long, value_name = "PATH")]
    llmux: Option<PathBuf>,
    /// Upstream (emulator) latency values, ms.
    #[arg(long, value_delimiter = ',', default_value = "0,50")]
    latency: Vec<u64>,
    /// Response modes.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "non-stream,stream"
    )]
    mode: Vec<Mode>,
    /// Concurrency levels.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64,256")]
    concurrency: Vec<usize>,
    /// Gateway settings: `off` (no database, static key), `on` (SQLite usage records, static
    /// key, default `sync` durability), `relaxed` (as `on` with `usage_durability = "relaxed"`),
    /// `keys` (SQLite and a virtual key with RPM, TPM and budget limits).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "off,on,keys")]
    accounting: Vec<Accounting>,
    /// Measured seconds per measurement (each cell has one direct and one gateway measurement
    /// per accounting setting).
    #[arg(long, default_value_t = 2.0, value_name = "SECS")]
    duration: f64,
    /// Unmeasured warm-up seconds before each measurement.
    #[arg(long, default_value_t = 0.5, value_name = "SECS")]
    warmup: f64,
    /// Smoke run: 0.3 s per measurement, 0.1 s warm-up, concurrency 1 and 16.
    #[arg(long)]
    quick: bool,
    /// `RUST_LOG` for the gateway (default: unset, so `llmux serve` logs at info).
    #[arg(long, value_name = "FILTER")]
    gateway_log: Option<String>,
    /// Also write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Keep the temporary directory (configs, gateway logs, databases) and print its path.
    #[arg(long)]
    keep_temp: bool,
}

fn main() -> ExitCode {
    let mut args = Args::parse();
    if args.quick {
        args.duration = 0.3;
        args.warmup = 0.1;
        if args.concurrency == [1, 16, 64, 256] {
            args.concurrency = vec![1, 16];
        }
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("llmux-bench: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("llmux-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn find_llmux(arg: Option<PathBuf>) -> Result<PathBuf, BoxError> {
    if let Some(p) = arg {
        return Ok(p);
    }
    let exe = std::env::current_exe()?;
    let sibling = exe.with_file_name(format!("llmux{}", std::env::consts::EXE_SUFFIX));
    if sibling.is_file() {
        Ok(sibling)
    } else {
        Err(format!(
            "no llmux binary at {}: build it with `cargo build --release -p llmux-cli -p llmux-bench` \
             (same target directory) or pass --llmux PATH",
            sibling.display()
        )
        .into())
    }
}

fn secs(v: f64, what: &str) -> Result<Duration, BoxError> {
    Duration::try_from_secs_f64(v).map_err(|e| format!("--{what} {v}: {e}").into())
}

async fn run(args: Args) -> Result<(), BoxError> {
    let began = Instant::now();
    let load_before = procs::load_average();
    let llmux = find_llmux(args.llmux.clone())?;
    let warmup = secs(args.warmup, "warmup")?;
    let duration = secs(args.duration, "duration")?;
    if args.concurrency.contains(&0) {
        return Err("--concurrency values must be at least 1".into());
    }
    let ticks = procs::clock_ticks();
    let tmp = tempfile::Builder::new().prefix("llmux-bench-").tempdir()?;
    let measurements =
        args.latency.len() * args.mode.len() * args.concurrency.len() * (1 + args.accounting.len());
    eprintln!(
        "llmux-bench: {} measurements of {:.1}+{:.1} s (≈{:.0} s); llmux = {}",
        measurements,
        args.warmup,
        args.duration,
        measurements as f64 * (args.warmup + args.duration),
        llmux.display()
    );

    let control = load::client(4)?;
    let mut emulator = EmulatorProc::start(&llmux)?;
    let mut gateways: Vec<(Accounting, GatewayProc)> = Vec::new();
    let mut startup_rss = Vec::new();
    for &acct in &args.accounting {
        let gw = GatewayProc::start(
            &llmux,
            tmp.path(),
            &emulator,
            acct,
            args.gateway_log.as_deref(),
        )
        .await?;
        startup_rss.push((acct, procs::rss_kib(gw.proc.pid())? as f64 / 1024.0));
        gateways.push((acct, gw));
    }
    let direct = Target {
        url: format!("{}/chat/completions", emulator.openai_base),
        key: emulator.openai_key.clone(),
    };
    let mut peak_rss_per_cell = true;
    let mut rows = Vec::new();
    for &latency in &args.latency {
        emulator.set_latency(&control, latency).await?;
        for &mode in &args.mode {
            for &concurrency in &args.concurrency {
                emulator.proc.ensure_running()?;
                let load = Load {
                    stream: mode == Mode::Stream,
                    concurrency,
                    warmup,
                    duration,
                };
                let d = load::run(&direct, load).await?;
                report_errors("direct", &d);
                for (accounting, gw) in &mut gateways {
                    gw.proc.ensure_running()?;
                    let target = Target {
                        url: format!("{}/v1/chat/completions", gw.url),
                        key: gw.key.clone(),
                    };
                    let pid = gw.proc.pid();
                    peak_rss_per_cell &= procs::reset_peak_rss(pid);
                    let t0 = Instant::now();
                    let probe = tokio::spawn(async move {
                        tokio::time::sleep_until(t0 + warmup).await;
                        (Instant::now(), CpuReading::now(pid, ticks))
                    });
                    let g = load::run(&target, load).await?;
                    let cpu_end = CpuReading::now(pid, ticks)?;
                    let t_end = Instant::now();
                    let (t_start, cpu_start) = probe.await?;
                    let cpu = cpu_start?.until(&cpu_end);
                    let window = t_end.saturating_duration_since(t_start).as_secs_f64();
                    let peak = procs::peak_rss_kib(pid)? as f64 / 1024.0;
                    report_errors("gateway", &g);
                    let row = Row {
                        upstream_latency_ms: latency,
                        stream: load.stream,
                        concurrency,
                        accounting: *accounting,
                        added_p50_ms: g.p50_ms - d.p50_ms,
                        added_p99_ms: g.p99_ms - d.p99_ms,
                        added_ttft_p50_ms: g.ttft_p50_ms.zip(d.ttft_p50_ms).map(|(g, d)| g - d),
                        gateway_cpu_s_per_1k: if g.requests == 0 {
                            f64::NAN
                        } else {
                            cpu.as_secs_f64() * 1000.0 / g.requests as f64
                        },
                        gateway_cpu_cores: if window > 0.0 {
                            cpu.as_secs_f64() / window
                        } else {
                            f64::NAN
                        },
                        gateway_peak_rss_mib: peak,
                        direct: d.clone(),
                        gateway: g,
                    };
                    eprintln!(
                        "  {:>3} ms {:<10} c={:<3} acct={:<4}  direct {:>7.0} rps p50 {:>7.2}  gw {:>7.0} rps p50 {:>7.2}  added {:+.2} ms  cpu {:.3} s/1k  rss {:.1} MiB",
                        latency,
                        if load.stream { "stream" } else { "non-stream" },
                        concurrency,
                        accounting.label(),
                        row.direct.rps,
                        row.direct.p50_ms,
                        row.gateway.rps,
                        row.gateway.p50_ms,
                        row.added_p50_ms,
                        row.gateway_cpu_s_per_1k,
                        row.gateway_peak_rss_mib
                    );
                    rows.push(row);
                }
                emulator.clear_log(&control).await?;
            }
        }
    }
    let accounting_database_written = gateways
        .iter()
        .filter_map(|(_, gw)| gw.database_written())
        .reduce(|a, b| a && b);
    for (_, gw) in &mut gateways {
        gw.proc.stop(Duration::from_secs(3));
    }
    if accounting_database_written == Some(false) {
        eprintln!(
            "llmux-bench: warning: accounting was on but a gateway never wrote its database; \
             its rows measure a gateway without usage recording"
        );
    }
    let report = Report {
        info: RunInfo {
            machine: procs::machine(),
            llmux: llmux.display().to_string(),
            warmup_s: args.warmup,
            duration_s: args.duration,
            gateway_log: args.gateway_log.clone(),
            peak_rss_per_cell,
            accounting_database_written,
            gateway_startup_rss_mib: startup_rss,
            wall_s: began.elapsed().as_secs_f64(),
            load_average: (load_before, procs::load_average()),
        },
        rows,
    };
    println!("{}", report.markdown());
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
        eprintln!("llmux-bench: wrote {}", path.display());
    }
    if args.keep_temp {
        let kept = tmp.keep();
        eprintln!(
            "llmux-bench: kept {} (configs, gateway logs, databases)",
            kept.display()
        );
    }
    Ok(())
}

fn report_errors(what: &str, m: &Measured) {
    if m.errors > 0 {
        eprintln!(
            "llmux-bench: {what}: {} failed requests; first: {}",
            m.errors,
            m.first_error.as_deref().unwrap_or("?")
        );
    }
}
