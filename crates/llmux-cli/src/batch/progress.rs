//! Batch progress: the running tally, a progress bar on a terminal (rate, ETA, tokens, cost) or
//! periodic one-line reports when stderr is not a terminal, and the closing summary.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::Duration;

use llmux_core::resilience::{BreakerState, BreakerStatus};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::time::Instant;

/// Prices in USD per million tokens; no built-in table, so cost is known only when given.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Prices {
    /// Input (prompt) tokens.
    pub input: Option<f64>,
    /// Output (completion) tokens.
    pub output: Option<f64>,
}

impl Prices {
    /// The cost of these tokens, when prices were given.
    pub fn cost(&self, input_tokens: u64, output_tokens: u64) -> Option<f64> {
        if self.input.is_none() && self.output.is_none() {
            return None;
        }
        let per = |tokens: u64, price: Option<f64>| tokens as f64 * price.unwrap_or(0.0) / 1e6;
        Some(per(input_tokens, self.input) + per(output_tokens, self.output))
    }

    /// `$1.2345`, or `n/a` without prices.
    pub fn show(&self, input_tokens: u64, output_tokens: u64) -> String {
        self.cost(input_tokens, output_tokens)
            .map_or_else(|| "n/a".to_owned(), |c| format!("${c:.4}"))
    }
}

/// Counts for one run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Lines this run sends.
    pub to_run: usize,
    /// Answered.
    pub ok: usize,
    /// Failed after retries (written with `error`).
    pub failed: usize,
    /// Already in the output file from an earlier run.
    pub resumed: usize,
    /// Input lines that could not run.
    pub bad: usize,
    /// Input tokens the upstream reported.
    pub input_tokens: u64,
    /// Output tokens the upstream reported.
    pub output_tokens: u64,
}

impl Tally {
    /// Lines finished this run.
    pub fn finished(&self) -> usize {
        self.ok + self.failed
    }
}

/// Requests per second and the time left at that rate.
fn rate_and_eta(t: &Tally, elapsed: Duration) -> (f64, Option<Duration>) {
    let secs = elapsed.as_secs_f64();
    let done = t.finished();
    if done == 0 || secs <= 0.0 {
        return (0.0, None);
    }
    let rate = done as f64 / secs;
    let left = t.to_run.saturating_sub(done) as f64 / rate;
    (rate, Some(Duration::from_secs_f64(left)))
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// One progress report: `batch: 1000/2000 (50%) ok 998 failed 2 · 812.3/s · ETA 1.2s · tokens
/// 12000 in, 3400 out · cost n/a`.
pub fn report_line(t: &Tally, elapsed: Duration, prices: &Prices) -> String {
    let (rate, eta) = rate_and_eta(t, elapsed);
    let pct = (t.finished() * 100).checked_div(t.to_run).unwrap_or(100);
    format!(
        "batch: {}/{} ({pct}%) ok {} failed {} · {rate:.1}/s · ETA {} · tokens {} in, {} out · cost {}",
        t.finished(),
        t.to_run,
        t.ok,
        t.failed,
        eta.map_or_else(|| "?".to_owned(), secs),
        t.input_tokens,
        t.output_tokens,
        prices.show(t.input_tokens, t.output_tokens),
    )
}

/// The closing summary.
pub fn summary(t: &Tally, elapsed: Duration, prices: &Prices, interrupted: bool) -> String {
    let (rate, _) = rate_and_eta(t, elapsed);
    let head = if interrupted {
        "batch interrupted"
    } else {
        "batch done"
    };
    format!(
        "{head}: ok {}, failed {}, skipped (already done) {}, bad lines {}; \
         tokens {} in, {} out; cost {}; {} elapsed, {rate:.1} requests/s",
        t.ok,
        t.failed,
        t.resumed,
        t.bad,
        t.input_tokens,
        t.output_tokens,
        prices.show(t.input_tokens, t.output_tokens),
        secs(elapsed),
    )
}

/// Notices circuit breakers opening and recovering, for the progress display: lines waiting
/// for a breaker are not stuck, and the user should see why.
#[derive(Debug, Default)]
pub struct BreakerWatch {
    /// Trips seen per breaker.
    trips: HashMap<String, u64>,
    /// Breakers reported as not closed and not yet reported as recovered.
    waiting: HashMap<String, BreakerState>,
}

impl BreakerWatch {
    /// A note when a breaker opened (or reopened after a failed probe), was disabled, or
    /// recovered since the last look; `None` when nothing changed.
    pub fn observe(&mut self, statuses: &[(String, BreakerStatus)]) -> Option<String> {
        let mut notes = Vec::new();
        for (name, st) in statuses {
            let seen = self.trips.insert(name.clone(), st.trips).unwrap_or(0);
            let tripped = st.trips > seen;
            match st.state {
                BreakerState::Closed => {
                    if self.waiting.remove(name).is_some() {
                        notes.push(format!("{name} recovered; lines are flowing again"));
                    } else if tripped {
                        notes.push(format!("{name}: circuit opened and recovered"));
                    }
                }
                BreakerState::Open | BreakerState::HalfOpen if tripped => {
                    self.waiting.insert(name.clone(), st.state);
                    let retry = st.retry_in.unwrap_or_default();
                    notes.push(format!(
                        "waiting for {name}: circuit open ({}), retry in {:.1}s",
                        st.reason.as_deref().unwrap_or("upstream failures"),
                        retry.as_secs_f64()
                    ));
                }
                BreakerState::Disabled if tripped => {
                    self.waiting.insert(name.clone(), st.state);
                    notes.push(format!(
                        "{name} is disabled: {}; its lines fail until a trial call succeeds (in {:.0}s)",
                        st.reason.as_deref().unwrap_or("the upstream rejected the credentials"),
                        st.retry_in.unwrap_or_default().as_secs_f64()
                    ));
                }
                BreakerState::Open | BreakerState::HalfOpen | BreakerState::Disabled => {}
            }
        }
        (!notes.is_empty()).then(|| notes.join("; "))
    }
}

/// How progress is shown.
#[derive(Debug)]
pub enum Progress {
    /// An `indicatif` bar on a terminal.
    Bar(ProgressBar),
    /// A report line on stderr every `every`.
    Lines {
        /// The interval.
        every: Duration,
        /// When the last line was printed.
        last: Instant,
    },
}

impl Progress {
    /// A bar when stderr is a terminal that can draw one, periodic lines otherwise (also on a
    /// terminal without `TERM` or with `TERM=dumb`, where `indicatif` would draw nothing).
    pub fn new(total: usize, every: Duration) -> Progress {
        let can_draw = std::env::var("TERM").is_ok_and(|t| !t.is_empty() && t != "dumb");
        if !(std::io::stderr().is_terminal() && can_draw) {
            return Progress::Lines {
                every,
                last: Instant::now(),
            };
        }
        let bar = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(
            "{elapsed_precise} {wide_bar} {pos}/{len} {per_sec} ETA {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        // Redraws while nothing finishes, so elapsed time and ETA keep moving.
        bar.enable_steady_tick(Duration::from_millis(250));
        Progress::Bar(bar)
    }

    /// Shows the tally.
    pub fn update(&mut self, t: &Tally, started: Instant, prices: &Prices) {
        match self {
            Progress::Bar(bar) => {
                bar.set_position(t.finished() as u64);
                bar.set_message(format!(
                    "· ok {} failed {} · tokens {} in, {} out · cost {}",
                    t.ok,
                    t.failed,
                    t.input_tokens,
                    t.output_tokens,
                    prices.show(t.input_tokens, t.output_tokens)
                ));
            }
            Progress::Lines { every, last } => {
                let now = Instant::now();
                if now.duration_since(*last) >= *every {
                    *last = now;
                    eprintln!("{}", report_line(t, now.duration_since(started), prices));
                }
            }
        }
    }

    /// Shows a note about the run (a breaker opened or recovered): the bar's message, or a line.
    pub fn note(&mut self, note: &str) {
        match self {
            Progress::Bar(bar) => bar.println(format!("batch: {note}")),
            Progress::Lines { .. } => eprintln!("batch: {note}"),
        }
    }

    /// Removes the bar (the summary follows), or prints a last report line.
    pub fn finish(&mut self, t: &Tally, started: Instant, prices: &Prices) {
        match self {
            Progress::Bar(bar) => bar.finish_and_clear(),
            Progress::Lines { .. } => {
                eprintln!("{}", report_line(t, started.elapsed(), prices));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_is_known_only_with_prices() {
        let none = Prices::default();
        assert_eq!(none.show(1_000_000, 1_000_000), "n/a");
        let p = Prices {
            input: Some(0.15),
            output: Some(0.6),
        };
        assert_eq!(p.show(2_000_000, 1_000_000), "$0.9000");
    }

    #[test]
    fn report_shows_rate_eta_and_tokens() {
        let t = Tally {
            to_run: 100,
            ok: 48,
            failed: 2,
            input_tokens: 500,
            output_tokens: 70,
            ..Tally::default()
        };
        let line = report_line(&t, Duration::from_secs(5), &Prices::default());
        assert_eq!(
            line,
            "batch: 50/100 (50%) ok 48 failed 2 · 10.0/s · ETA 5.0s · tokens 500 in, 70 out · cost n/a"
        );
        let s = summary(&t, Duration::from_secs(5), &Prices::default(), true);
        assert!(s.starts_with("batch interrupted: ok 48, failed 2"), "{s}");
    }
}
