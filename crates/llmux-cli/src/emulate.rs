//! `llmux emulate`: the OpenAI and DashScope emulators on localhost, for trying llmux offline.
//!
//! Stdout is stable and machine-readable, one endpoint per line (`ID URL key KEY`), then one
//! `export …` line to paste into a shell; it is flushed before the emulators start answering.
//! Hints for people go to stderr.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;
use llmux_emulator::{Emulator, EmulatorConfig, Vendor};

use crate::error::{CliError, Result};

/// `llmux emulate` flags.
#[derive(Debug, Clone, Args)]
pub struct EmulateArgs {
    /// Port of the OpenAI emulator; DashScope listens on the next one (default: any free ports).
    #[arg(long, value_name = "N")]
    pub port: Option<u16>,
    /// Delay before every response, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub latency_ms: u64,
    /// Delay between streamed tokens, in milliseconds (to watch streaming happen).
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub token_interval_ms: u64,
}

/// The endpoints of the running emulators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// OpenAI `…/v1`.
    pub openai: String,
    /// DashScope native `…/api/v1`.
    pub dashscope: String,
    /// DashScope compatible mode `…/compatible-mode/v1`.
    pub dashscope_compat: String,
}

/// The lines `llmux emulate` prints.
pub fn banner(e: &Endpoints) -> String {
    let openai_key = Vendor::OpenAi.default_key();
    let ds_key = Vendor::DashScope.default_key();
    let rows = [
        ("openai", &e.openai, openai_key),
        ("dashscope", &e.dashscope, ds_key),
        ("dashscope-compat", &e.dashscope_compat, ds_key),
    ];
    let mut s = String::new();
    for (id, url, key) in rows {
        s.push_str(&format!("{id:<17} {url:<44} key {key}\n"));
    }
    s.push_str(&format!(
        "export OPENAI_BASE_URL={} OPENAI_API_KEY={openai_key} DASHSCOPE_BASE_URL={} \
         DASHSCOPE_API_KEY={ds_key} DASHSCOPE_COMPAT_BASE_URL={}\n",
        e.openai, e.dashscope, e.dashscope_compat
    ));
    s
}

fn bind(port: Option<u16>, offset: u16) -> Result<SocketAddr> {
    let port = match port {
        None => 0,
        Some(p) => p.checked_add(offset).ok_or_else(|| {
            CliError::msg(format!(
                "--port {p} leaves no room for the DashScope emulator on the next port"
            ))
        })?,
    };
    Ok(SocketAddr::from(([127, 0, 0, 1], port)))
}

async fn start(vendor: Vendor, addr: SocketAddr, args: &EmulateArgs) -> Result<Emulator> {
    let cfg = EmulatorConfig::new(vendor)
        .with_bind(addr)
        .with_latency(Duration::from_millis(args.latency_ms))
        .with_token_interval(Duration::from_millis(args.token_interval_ms));
    Emulator::start(cfg).await.map_err(|e| {
        CliError::io(
            format!("starting the {} emulator on {addr}", vendor.id()),
            e,
        )
    })
}

/// Starts the emulator that speaks provider `id` on a free loopback port; returns it with the
/// base URL and key to use.
pub async fn start_for(id: &str) -> Result<(Emulator, String, String)> {
    let vendor = match id {
        "openai" => Vendor::OpenAi,
        "dashscope" | "dashscope-compat" => Vendor::DashScope,
        other => {
            return Err(CliError::msg(format!(
                "--emulate has no emulator for provider `{other}` (emulated: openai, dashscope, dashscope-compat)"
            )))
        }
    };
    let emu = Emulator::start(EmulatorConfig::new(vendor))
        .await
        .map_err(|e| CliError::io(format!("starting the {} emulator", vendor.id()), e))?;
    let base = if id == "dashscope-compat" {
        emu.compat_base_url()
            .ok_or_else(|| CliError::msg("the DashScope emulator has no compatible-mode URL"))?
    } else {
        emu.base_url()
    };
    Ok((emu, base, vendor.default_key().to_owned()))
}

/// Starts both emulators, prints their endpoints and serves until Ctrl-C or SIGTERM.
pub async fn run(args: EmulateArgs) -> Result<()> {
    let openai = start(Vendor::OpenAi, bind(args.port, 0)?, &args).await?;
    let dashscope = start(Vendor::DashScope, bind(args.port, 1)?, &args).await?;
    // Listen before announcing, so a signal sent right after the banner is handled.
    let stop = Shutdown::listen()?;
    let endpoints = Endpoints {
        openai: openai.base_url(),
        dashscope: dashscope.base_url(),
        dashscope_compat: dashscope
            .compat_base_url()
            .ok_or_else(|| CliError::msg("the DashScope emulator has no compatible-mode URL"))?,
    };
    let mut out = std::io::stdout().lock();
    out.write_all(banner(&endpoints).as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| CliError::io("writing to stdout", e))?;
    drop(out);
    eprintln!(
        "emulators ready. Paste the export line into a shell, then try:\n  \
         llmux chat -m dashscope/qwen-plus \"hello\"\n  \
         llmux chat -m openai/gpt-4o-mini\n\
         Ctrl-C stops them."
    );
    stop.wait().await;
    eprintln!("emulators stopped");
    drop((openai, dashscope));
    Ok(())
}

/// Ctrl-C or SIGTERM, registered up front.
struct Shutdown {
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl Shutdown {
    #[cfg(unix)]
    fn listen() -> Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        let err = |e| CliError::io("listening for signals", e);
        Ok(Shutdown {
            int: signal(SignalKind::interrupt()).map_err(err)?,
            term: signal(SignalKind::terminate()).map_err(err)?,
        })
    }

    #[cfg(unix)]
    async fn wait(mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }

    #[cfg(not(unix))]
    fn listen() -> Result<Self> {
        Ok(Shutdown {})
    }

    #[cfg(not(unix))]
    async fn wait(self) {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn banner_lines_split_into_id_url_key() {
        let e = Endpoints {
            openai: "http://127.0.0.1:1/v1".into(),
            dashscope: "http://127.0.0.1:2/api/v1".into(),
            dashscope_compat: "http://127.0.0.1:2/compatible-mode/v1".into(),
        };
        let b = banner(&e);
        let lines: Vec<Vec<&str>> = b.lines().map(|l| l.split_whitespace().collect()).collect();
        assert_eq!(
            lines[0],
            [
                "openai",
                "http://127.0.0.1:1/v1",
                "key",
                "sk-emulator-openai"
            ]
        );
        assert_eq!(lines[1][0..2], ["dashscope", "http://127.0.0.1:2/api/v1"]);
        assert_eq!(lines[2][0], "dashscope-compat");
        assert_eq!(lines[3][0], "export");
        assert!(lines[3].contains(&"DASHSCOPE_API_KEY=sk-emulator-dashscope"));
        assert!(b.ends_with('\n'));
    }

    #[test]
    fn port_overflow_is_a_clear_error() {
        assert!(bind(Some(u16::MAX), 1).is_err());
        assert_eq!(bind(Some(8000), 1).unwrap().port(), 8001);
        assert_eq!(bind(None, 1).unwrap().port(), 0);
    }
}
