//! Results: one [`Row`] per cell (upstream latency × mode × concurrency × accounting), rendered
//! as a Markdown table or serialised as JSON.

use std::fmt::Write as _;

use serde::Serialize;

use crate::load::Measured;
use crate::procs::Accounting;

/// One cell: the same load sent directly to the emulator and through the gateway.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Emulator delay before each response, ms.
    pub upstream_latency_ms: u64,
    /// Streamed or not.
    pub stream: bool,
    /// Concurrent clients.
    pub concurrency: usize,
    /// Gateway setup: no database, usage records, or usage records and a limited virtual key.
    pub accounting: Accounting,
    /// Straight to the emulator.
    pub direct: Measured,
    /// Through the gateway.
    pub gateway: Measured,
    /// Gateway p50 − direct p50, ms.
    pub added_p50_ms: f64,
    /// Gateway p99 − direct p99, ms.
    pub added_p99_ms: f64,
    /// Gateway TTFT p50 − direct TTFT p50, ms (streams).
    pub added_ttft_p50_ms: Option<f64>,
    /// Gateway CPU (user + system) per 1000 requests, seconds.
    pub gateway_cpu_s_per_1k: f64,
    /// Gateway CPU over the window, in cores (1.0 = one core busy).
    pub gateway_cpu_cores: f64,
    /// Gateway peak RSS during the cell, MiB.
    pub gateway_peak_rss_mib: f64,
}

/// Facts about the run printed above the table.
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    /// CPU, cores, memory, kernel.
    pub machine: String,
    /// The `llmux` binary used.
    pub llmux: String,
    /// Warm-up per measurement, s.
    pub warmup_s: f64,
    /// Measured window per measurement, s.
    pub duration_s: f64,
    /// `RUST_LOG` given to the gateway (none = its default, `info`).
    pub gateway_log: Option<String>,
    /// Whether the per-cell peak RSS could be reset (`/proc/PID/clear_refs`).
    pub peak_rss_per_cell: bool,
    /// With accounting on: whether every gateway with a database wrote it (None = none ran).
    pub accounting_database_written: Option<bool>,
    /// Gateway RSS right after start-up, MiB, per setup.
    pub gateway_startup_rss_mib: Vec<(Accounting, f64)>,
    /// Wall time of the whole run, s.
    pub wall_s: f64,
    /// Load average before and after the run (on a shared machine, other work skews results).
    pub load_average: (String, String),
}

/// Everything the run produced.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The run.
    pub info: RunInfo,
    /// The cells.
    pub rows: Vec<Row>,
}

fn ms(v: f64) -> String {
    if v.is_nan() {
        "–".to_owned()
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn signed_ms(v: f64) -> String {
    if v.is_nan() {
        "–".to_owned()
    } else {
        format!("{v:+.2}")
    }
}

fn opt(v: Option<f64>, f: fn(f64) -> String) -> String {
    v.map_or_else(|| "–".to_owned(), f)
}

impl Report {
    /// The Markdown table (with a short header describing the run).
    pub fn markdown(&self) -> String {
        let i = &self.info;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "Machine: {}; load average before/after the run: {} / {}.  ",
            i.machine, i.load_average.0, i.load_average.1
        );
        let _ = writeln!(
            s,
            "Per measurement: {:.1} s warm-up, {:.1} s measured; gateway log level: {}; whole run {:.0} s.  ",
            i.warmup_s,
            i.duration_s,
            i.gateway_log.as_deref().unwrap_or("info (default)"),
            i.wall_s
        );
        if let Some(written) = i.accounting_database_written {
            let _ = writeln!(
                s,
                "Accounting on and keys: `database = \"sqlite://…\"`; the gateways {} the database file.  ",
                if written {
                    "wrote"
                } else {
                    "did NOT create or write"
                }
            );
        }
        if !i.gateway_startup_rss_mib.is_empty() {
            let parts: Vec<String> = i
                .gateway_startup_rss_mib
                .iter()
                .map(|(acct, mib)| format!("{mib:.1} MiB (accounting {})", acct.label()))
                .collect();
            let _ = writeln!(s, "Gateway RSS after start-up: {}.  ", parts.join(", "));
        }
        let _ = writeln!(
            s,
            "Latencies in ms. added = gateway − direct. TTFT = first body byte. self = the gateway's \
             own `x-llmux-added-latency-ms` (p50). CPU and RSS are the gateway process alone{}.\n",
            if i.peak_rss_per_cell {
                "; peak RSS is per cell"
            } else {
                "; peak RSS is cumulative (could not reset it per cell)"
            }
        );
        s.push_str(
            "| upstream | mode | conc | acct | rps direct | rps gw | p50 direct | p50 gw | p99 direct | p99 gw \
             | added p50 | added p99 | TTFT p50 direct | TTFT p50 gw | added TTFT | self p50 \
             | gw CPU s/1k req | gw CPU cores | gw peak RSS MiB | errors d/gw |\n",
        );
        s.push_str(
            "|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for r in &self.rows {
            let _ = writeln!(
                s,
                "| {} ms | {} | {} | {} | {:.0} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.3} | {:.2} | {:.1} | {}/{} |",
                r.upstream_latency_ms,
                if r.stream { "stream" } else { "non-stream" },
                r.concurrency,
                r.accounting.label(),
                r.direct.rps,
                r.gateway.rps,
                ms(r.direct.p50_ms),
                ms(r.gateway.p50_ms),
                ms(r.direct.p99_ms),
                ms(r.gateway.p99_ms),
                signed_ms(r.added_p50_ms),
                signed_ms(r.added_p99_ms),
                opt(r.direct.ttft_p50_ms, ms),
                opt(r.gateway.ttft_p50_ms, ms),
                opt(r.added_ttft_p50_ms, signed_ms),
                opt(r.gateway.self_added_p50_ms, ms),
                r.gateway_cpu_s_per_1k,
                r.gateway_cpu_cores,
                r.gateway_peak_rss_mib,
                r.direct.errors,
                r.gateway.errors,
            );
        }
        s
    }
}
