//! The processes under test: `llmux emulate` and `llmux serve`, started from the built `llmux`
//! binary on loopback, and what `/proc` says about them (CPU ticks, peak RSS).
//!
//! Both children are killed when their handle is dropped, so an error in the middle of a run
//! leaves nothing behind.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::time::Instant;

/// A boxed error with a message for people.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A child process that is terminated (SIGTERM, then SIGKILL) when dropped.
#[derive(Debug)]
pub struct Managed {
    child: Child,
    name: &'static str,
}

impl Managed {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails when the process has already exited.
    pub fn ensure_running(&mut self) -> Result<(), BoxError> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => Err(format!("{} exited early: {status}", self.name).into()),
        }
    }

    /// Asks the process to stop and waits up to `grace` before killing it.
    pub fn stop(&mut self, grace: Duration) {
        if let Ok(None) = self.child.try_wait() {
            if let Ok(pid) = i32::try_from(self.child.id()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
            let deadline = std::time::Duration::from_millis(20);
            let mut waited = Duration::ZERO;
            while waited < grace {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(deadline);
                waited += deadline;
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for Managed {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(2));
    }
}

/// The running emulator: its OpenAI endpoint and the control surface.
#[derive(Debug)]
pub struct EmulatorProc {
    /// The process.
    pub proc: Managed,
    /// `http://127.0.0.1:PORT/v1`.
    pub openai_base: String,
    /// The key it accepts.
    pub openai_key: String,
    /// Kept open so the emulator never writes to a closed pipe.
    _stdout: BufReader<ChildStdout>,
}

impl EmulatorProc {
    /// `llmux emulate` on free ports; reads the banner for the OpenAI endpoint.
    pub fn start(llmux: &Path) -> Result<EmulatorProc, BoxError> {
        let mut child = Command::new(llmux)
            .args(["emulate", "--latency-ms", "0"])
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting {} emulate: {e}", llmux.display()))?;
        let stdout = child.stdout.take().ok_or("the emulator has no stdout")?;
        let proc = Managed {
            child,
            name: "llmux emulate",
        };
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Err("llmux emulate exited before printing its endpoints".into());
            }
            // `openai            http://127.0.0.1:PORT/v1     key sk-emulator-openai`
            let words: Vec<&str> = line.split_whitespace().collect();
            if let ["openai", url, "key", key] = words.as_slice() {
                return Ok(EmulatorProc {
                    proc,
                    openai_base: (*url).to_owned(),
                    openai_key: (*key).to_owned(),
                    _stdout: reader,
                });
            }
        }
    }

    /// `http://127.0.0.1:PORT` (the control surface lives under `/__emulator/`).
    pub fn root(&self) -> &str {
        self.openai_base
            .strip_suffix("/v1")
            .unwrap_or(&self.openai_base)
    }

    /// Sets the delay before every response.
    pub async fn set_latency(&self, http: &reqwest::Client, ms: u64) -> Result<(), BoxError> {
        let resp = http
            .put(format!("{}/__emulator/latency", self.root()))
            .header("content-type", "application/json")
            .body(format!("{{\"ms\":{ms}}}"))
            .send()
            .await?;
        if !resp.status().is_success() {
            return Err(format!("setting the emulator latency: HTTP {}", resp.status()).into());
        }
        Ok(())
    }

    /// Empties the emulator's request log (it records every request, which would grow).
    pub async fn clear_log(&self, http: &reqwest::Client) -> Result<(), BoxError> {
        let resp = http
            .delete(format!("{}/__emulator/requests", self.root()))
            .send()
            .await?;
        if !resp.status().is_success() {
            return Err(format!("clearing the emulator log: HTTP {}", resp.status()).into());
        }
        Ok(())
    }
}

/// The key the bench's clients present to the gateway.
pub const GATEWAY_KEY: &str = "sk-llmux-bench";
/// The public model routed to the emulator.
pub const MODEL: &str = "gpt-4o-mini";

/// How the gateway under test is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Accounting {
    /// No database; the client uses a static key.
    Off,
    /// `database = "sqlite://…"` in a temporary directory: every request is recorded (the
    /// default `server.usage_durability = "sync"`: journaled, and committed before the end of
    /// each answer); the client still uses a static key.
    On,
    /// As `on` with `server.usage_durability = "relaxed"` (records flushed every second, no
    /// journal, no waiting): what `sync` costs is `on` against this.
    Relaxed,
    /// As `on`, and the client uses a virtual key (made by `llmux keys create`) with RPM, TPM
    /// and token-budget limits set far above what the bench sends: every request pays the key
    /// lookup, the limit admission and the settle.
    Keys,
}

impl Accounting {
    /// The name in the table.
    pub fn label(self) -> &'static str {
        match self {
            Accounting::Off => "off",
            Accounting::On => "on",
            Accounting::Relaxed => "relaxed",
            Accounting::Keys => "keys",
        }
    }
}

/// A running gateway.
#[derive(Debug)]
pub struct GatewayProc {
    /// The process.
    pub proc: Managed,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The SQLite file when accounting is on.
    pub database: Option<PathBuf>,
    /// The client key to send (the static key, or the virtual key made for `keys`).
    pub key: String,
    /// Where its stderr (logs) goes.
    pub log: PathBuf,
}

impl GatewayProc {
    /// Writes a config into `dir` and starts `llmux serve` with it; waits for `/healthz`.
    pub async fn start(
        llmux: &Path,
        dir: &Path,
        emulator: &EmulatorProc,
        accounting: Accounting,
        rust_log: Option<&str>,
    ) -> Result<GatewayProc, BoxError> {
        let port = free_port()?;
        let tag = format!("acct-{}", accounting.label());
        let database = (accounting != Accounting::Off).then(|| dir.join(format!("usage-{tag}.db")));
        let db_line = database
            .as_ref()
            .map(|p| format!("database = \"sqlite://{}\"\n", p.display()))
            // `none` turns accounting off (without it `llmux serve` uses its embedded SQLite).
            .unwrap_or_else(|| "database = \"none\"\n".to_owned());
        let durability = if accounting == Accounting::Relaxed {
            "usage_durability = \"relaxed\"\n"
        } else {
            ""
        };
        let config = format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\napi_keys = [\"{GATEWAY_KEY}\"]\n{db_line}{durability}\
             shutdown_grace = \"2s\"\n\n\
             [[channels]]\nname = \"emulator\"\nprovider = \"openai\"\nbase_url = \"{}\"\n\
             api_key = \"{}\"\nmodels = [\"{MODEL}\"]\n",
            emulator.openai_base, emulator.openai_key
        );
        let config_path = dir.join(format!("llmux-{tag}.toml"));
        std::fs::write(&config_path, config)?;
        let key = match accounting {
            Accounting::Keys => create_virtual_key(llmux, &config_path)?,
            Accounting::Off | Accounting::On | Accounting::Relaxed => GATEWAY_KEY.to_owned(),
        };
        let log = dir.join(format!("gateway-{tag}.log"));
        let mut cmd = Command::new(llmux);
        cmd.arg("serve")
            .arg("--config")
            .arg(&config_path)
            .env_remove("LLMUX_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?);
        match rust_log {
            Some(spec) => cmd.env("RUST_LOG", spec),
            None => cmd.env_remove("RUST_LOG"),
        };
        let child = cmd
            .spawn()
            .map_err(|e| format!("starting {} serve: {e}", llmux.display()))?;
        let mut gw = GatewayProc {
            proc: Managed {
                child,
                name: "llmux serve",
            },
            url: format!("http://127.0.0.1:{port}"),
            database,
            key,
            log,
        };
        gw.wait_healthy().await?;
        Ok(gw)
    }

    async fn wait_healthy(&mut self) -> Result<(), BoxError> {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Err(e) = self.proc.ensure_running() {
                let tail = std::fs::read_to_string(&self.log).unwrap_or_default();
                return Err(format!("{e}; its log:\n{tail}").into());
            }
            if let Ok(r) = http.get(format!("{}/healthz", self.url)).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(format!("the gateway at {} never became healthy", self.url).into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether the configured database file exists and is not empty (accounting is wired).
    pub fn database_written(&self) -> Option<bool> {
        self.database
            .as_ref()
            .map(|p| std::fs::metadata(p).is_ok_and(|m| m.len() > 0))
    }
}

/// Runs `llmux keys create` on the gateway's config and returns the key it prints last. The
/// limits are real (checked on every request) but far above what any cell sends.
fn create_virtual_key(llmux: &Path, config: &Path) -> Result<String, BoxError> {
    let out = Command::new(llmux)
        .args(["keys", "create", "--config"])
        .arg(config)
        .args([
            "--name",
            "bench",
            "--rpm",
            "1000000000",
            "--tpm",
            "1000000000000",
            "--budget-tokens",
            "1000000000000000",
        ])
        .env_remove("LLMUX_CONFIG")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running {} keys create: {e}", llmux.display()))?;
    if !out.status.success() {
        return Err(format!(
            "llmux keys create failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .map(|l| l.trim().to_owned())
        .filter(|k| k.starts_with("sk-llmux-"))
        .ok_or_else(|| "llmux keys create printed no key".into())
}

/// A free loopback port (bound and released; the gateway binds it right after).
fn free_port() -> Result<u16, BoxError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// CPU time (user + system) of `pid` so far, from `/proc/PID/stat` (clock-tick resolution).
pub fn cpu_time(pid: u32, ticks_per_sec: u64) -> Result<Duration, BoxError> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or("unexpected /proc/PID/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); utime and stime are fields 14 and 15.
    let utime: u64 = fields.get(11).ok_or("no utime")?.parse()?;
    let stime: u64 = fields.get(12).ok_or("no stime")?.parse()?;
    let ticks = utime + stime;
    let tps = ticks_per_sec.max(1);
    Ok(
        Duration::from_secs(ticks / tps)
            + Duration::from_nanos((ticks % tps) * 1_000_000_000 / tps),
    )
}

/// Nanoseconds on CPU per thread of `pid` (`/proc/PID/task/TID/schedstat`, first field).
pub type ThreadCpu = BTreeMap<u32, u64>;

/// Reads [`ThreadCpu`]; `None` when the kernel has no schedstat.
pub fn thread_cpu(pid: u32) -> Option<ThreadCpu> {
    let mut out = ThreadCpu::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let Ok(entry) = entry else { continue };
        let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        // A thread may exit between the listing and the read.
        let Ok(text) = std::fs::read_to_string(entry.path().join("schedstat")) else {
            continue;
        };
        let ns = text.split_whitespace().next()?.parse().ok()?;
        out.insert(tid, ns);
    }
    (!out.is_empty()).then_some(out)
}

/// CPU used between two [`thread_cpu`] readings: threads in both count their difference, new
/// threads all of theirs. (Time of threads that exited in between is lost; the gateway's
/// runtime threads live for the whole run.)
pub fn thread_cpu_delta(before: &ThreadCpu, after: &ThreadCpu) -> Duration {
    let ns: u64 = after
        .iter()
        .map(|(tid, now)| now.saturating_sub(before.get(tid).copied().unwrap_or(0)))
        .sum();
    Duration::from_nanos(ns)
}

/// CPU use of a process, precise when per-thread schedstat exists, else in clock ticks.
#[derive(Debug, Clone)]
pub enum CpuReading {
    /// Per-thread nanoseconds.
    Threads(ThreadCpu),
    /// Process total from `/proc/PID/stat`.
    Ticks(Duration),
}

impl CpuReading {
    /// Reads the CPU use of `pid` now.
    pub fn now(pid: u32, ticks_per_sec: u64) -> Result<CpuReading, BoxError> {
        match thread_cpu(pid) {
            Some(t) => Ok(CpuReading::Threads(t)),
            None => Ok(CpuReading::Ticks(cpu_time(pid, ticks_per_sec)?)),
        }
    }

    /// CPU used from `self` to `later`.
    pub fn until(&self, later: &CpuReading) -> Duration {
        match (self, later) {
            (CpuReading::Threads(a), CpuReading::Threads(b)) => thread_cpu_delta(a, b),
            (CpuReading::Ticks(a), CpuReading::Ticks(b)) => b.saturating_sub(*a),
            _ => Duration::ZERO,
        }
    }
}

/// `VmHWM` (peak resident set) of `pid`, in KiB.
pub fn peak_rss_kib(pid: u32) -> Result<u64, BoxError> {
    status_kib(pid, "VmHWM:")
}

/// `VmRSS` (current resident set) of `pid`, in KiB.
pub fn rss_kib(pid: u32) -> Result<u64, BoxError> {
    status_kib(pid, "VmRSS:")
}

fn status_kib(pid: u32, field: &str) -> Result<u64, BoxError> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .ok_or_else(|| format!("no {field} in /proc/{pid}/status"))?;
    let kib = line
        .split_whitespace()
        .nth(1)
        .ok_or("malformed status line")?
        .parse()?;
    Ok(kib)
}

/// Resets the peak RSS of `pid` to its current RSS (`echo 5 > /proc/PID/clear_refs`), so each
/// cell reports its own peak. Returns false when the kernel does not allow it.
pub fn reset_peak_rss(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// Clock ticks per second for `/proc/PID/stat` (`getconf CLK_TCK`, else 100).
pub fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// One line describing the machine: CPU model, cores, memory, kernel.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU", |(_, m)| m.trim())
        .to_owned();
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or(0.0, |kib| kib as f64 / 1024.0 / 1024.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    format!("{model}, {cores} cores, {mem_gib:.0} GiB RAM, Linux {kernel}")
}

/// `/proc/loadavg`'s 1-, 5- and 15-minute averages (other work on the machine skews results).
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
