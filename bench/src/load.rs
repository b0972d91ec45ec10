//! The load generator: N concurrent workers on one keep-alive client, each sending the same
//! chat request back to back for a warm-up and then a measured window; per-request latency,
//! time to first body byte (streams) and the gateway's own `x-llmux-added-latency-ms`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use tokio::time::Instant;

use crate::procs::MODEL;

/// Where to send requests.
#[derive(Debug, Clone)]
pub struct Target {
    /// `…/v1/chat/completions`.
    pub url: String,
    /// Bearer key.
    pub key: String,
}

/// How one measurement runs.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// Streamed (`stream: true`) or not.
    pub stream: bool,
    /// Concurrent workers (and connections).
    pub concurrency: usize,
    /// Unrecorded time first (opens the connections, warms pools).
    pub warmup: Duration,
    /// Recorded time: requests started in this window are measured.
    pub duration: Duration,
}

/// The request body: a short chat with a ~25-token answer (the emulator echoes the prompt).
pub fn body(stream: bool) -> Bytes {
    let prompt = "Please summarise the quarterly report for the benchmark harness in a few short \
                  sentences and keep the answer brief";
    let extra = if stream {
        ",\"stream\":true,\"stream_options\":{\"include_usage\":true}"
    } else {
        ""
    };
    Bytes::from(format!(
        "{{\"model\":\"{MODEL}\",\"messages\":[{{\"role\":\"user\",\"content\":\"{prompt}\"}}],\"max_tokens\":64{extra}}}"
    ))
}

/// Results of one measurement.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Measured {
    /// Successful requests in the window.
    pub requests: u64,
    /// Failed requests in the window (status, transport or truncated stream).
    pub errors: u64,
    /// The first error seen, for the log.
    pub first_error: Option<String>,
    /// Requests per second.
    pub rps: f64,
    /// Latency to the last body byte, ms.
    pub p50_ms: f64,
    /// Latency to the last body byte, ms.
    pub p99_ms: f64,
    /// Time to the first body byte (streams only), ms.
    pub ttft_p50_ms: Option<f64>,
    /// Time to the first body byte (streams only), ms.
    pub ttft_p99_ms: Option<f64>,
    /// The gateway's self-reported added latency (header), median, ms.
    pub self_added_p50_ms: Option<f64>,
}

#[derive(Debug, Default)]
struct WorkerOut {
    total_us: Vec<u64>,
    ttft_us: Vec<u64>,
    self_added_ms: Vec<f64>,
    errors: u64,
    first_error: Option<String>,
    last_finish: Option<Instant>,
}

/// A client as a load generator wants it: keep-alive, no idle limit, TCP_NODELAY.
pub fn client(concurrency: usize) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency.max(1) * 2)
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
}

/// Runs `load` against `target` and summarises it.
pub async fn run(target: &Target, load: Load) -> Result<Measured, reqwest::Error> {
    let http = client(load.concurrency)?;
    let body = body(load.stream);
    let start = Instant::now();
    let measure_from = start + load.warmup;
    let stop_at = measure_from + load.duration;
    let target = Arc::new(target.clone());
    let mut tasks = Vec::with_capacity(load.concurrency);
    for _ in 0..load.concurrency {
        let http = http.clone();
        let body = body.clone();
        let target = target.clone();
        tasks.push(tokio::spawn(async move {
            worker(http, &target, body, load.stream, measure_from, stop_at).await
        }));
    }
    let mut all = WorkerOut::default();
    for t in tasks {
        let Ok(out) = t.await else {
            all.errors += 1;
            continue;
        };
        all.total_us.extend(out.total_us);
        all.ttft_us.extend(out.ttft_us);
        all.self_added_ms.extend(out.self_added_ms);
        all.errors += out.errors;
        if all.first_error.is_none() {
            all.first_error = out.first_error;
        }
        all.last_finish = all.last_finish.max(out.last_finish);
    }
    Ok(summarise(all, measure_from))
}

async fn worker(
    http: reqwest::Client,
    target: &Target,
    body: Bytes,
    stream: bool,
    measure_from: Instant,
    stop_at: Instant,
) -> WorkerOut {
    let mut out = WorkerOut::default();
    loop {
        let began = Instant::now();
        if began >= stop_at {
            break;
        }
        let result = one(&http, target, body.clone(), stream, began).await;
        let finished = Instant::now();
        if began < measure_from {
            continue;
        }
        out.last_finish = Some(finished);
        match result {
            Ok(r) => {
                out.total_us.push(micros(finished - began));
                if let Some(t) = r.ttft {
                    out.ttft_us.push(micros(t));
                }
                if let Some(a) = r.self_added_ms {
                    out.self_added_ms.push(a);
                }
            }
            Err(e) => {
                out.errors += 1;
                if out.first_error.is_none() {
                    out.first_error = Some(e);
                }
                // Do not spin on a refused connection.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    out
}

struct OneResult {
    ttft: Option<Duration>,
    self_added_ms: Option<f64>,
}

async fn one(
    http: &reqwest::Client,
    target: &Target,
    body: Bytes,
    stream: bool,
    began: Instant,
) -> Result<OneResult, String> {
    let mut resp = http
        .post(&target.url)
        .bearer_auth(&target.key)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| format!("send: {e}"))?;
    let status = resp.status();
    let self_added_ms = resp
        .headers()
        .get("x-llmux-added-latency-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<f64>().ok());
    if !status.is_success() {
        let text = resp.text().await.unwrap_or_default();
        return Err(format!("HTTP {status}: {}", truncate(&text, 300)));
    }
    if !stream {
        let bytes = resp.bytes().await.map_err(|e| format!("body: {e}"))?;
        if !bytes.starts_with(b"{") || !contains(&bytes, b"\"choices\"") {
            return Err(format!(
                "unexpected body: {}",
                truncate(&String::from_utf8_lossy(&bytes), 300)
            ));
        }
        return Ok(OneResult {
            ttft: None,
            self_added_ms,
        });
    }
    let mut ttft = None;
    // The last few bytes, to check the stream ended with `data: [DONE]`.
    let mut tail: Vec<u8> = Vec::with_capacity(64);
    while let Some(chunk) = resp.chunk().await.map_err(|e| format!("stream: {e}"))? {
        if ttft.is_none() && !chunk.is_empty() {
            ttft = Some(began.elapsed());
        }
        tail.extend_from_slice(&chunk);
        if tail.len() > 64 {
            tail.drain(..tail.len() - 64);
        }
    }
    if !contains(&tail, b"[DONE]") {
        return Err(format!(
            "stream ended without [DONE]: …{}",
            String::from_utf8_lossy(&tail)
        ));
    }
    Ok(OneResult {
        ttft,
        self_added_ms,
    })
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The `q`-quantile (nearest rank) of sorted microseconds, in ms.
fn quantile_ms(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    let idx = rank.clamp(1, sorted.len()) - 1;
    sorted[idx] as f64 / 1000.0
}

fn summarise(mut all: WorkerOut, measure_from: Instant) -> Measured {
    all.total_us.sort_unstable();
    all.ttft_us.sort_unstable();
    all.self_added_ms.sort_unstable_by(f64::total_cmp);
    let requests = all.total_us.len() as u64;
    let window = all.last_finish.map_or(Duration::ZERO, |t| {
        t.saturating_duration_since(measure_from)
    });
    let rps = if window.is_zero() {
        0.0
    } else {
        requests as f64 / window.as_secs_f64()
    };
    let ttft = (!all.ttft_us.is_empty()).then_some(&all.ttft_us);
    Measured {
        requests,
        errors: all.errors,
        first_error: all.first_error,
        rps,
        p50_ms: quantile_ms(&all.total_us, 0.50),
        p99_ms: quantile_ms(&all.total_us, 0.99),
        ttft_p50_ms: ttft.map(|t| quantile_ms(t, 0.50)),
        ttft_p99_ms: ttft.map(|t| quantile_ms(t, 0.99)),
        self_added_p50_ms: (!all.self_added_ms.is_empty())
            .then(|| all.self_added_ms[(all.self_added_ms.len() - 1) / 2]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let v: Vec<u64> = (1..=100).map(|i| i * 1000).collect();
        assert!((quantile_ms(&v, 0.5) - 50.0).abs() < 1e-9);
        assert!((quantile_ms(&v, 0.99) - 99.0).abs() < 1e-9);
        assert!((quantile_ms(&[7000], 0.99) - 7.0).abs() < 1e-9);
        assert!(quantile_ms(&[], 0.5).is_nan());
    }

    #[test]
    fn bodies_are_json() {
        for stream in [false, true] {
            let v: serde_json::Value = serde_json::from_slice(&body(stream)).unwrap();
            assert_eq!(v["model"], MODEL);
            assert_eq!(v.get("stream").is_some(), stream);
        }
    }
}
