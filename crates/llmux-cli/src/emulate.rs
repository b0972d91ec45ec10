//! `llmux emulate`: an emulator of every vendor on localhost, for trying llmux offline.
//!
//! Stdout is stable and machine-readable: one line per provider id (`ID URL key KEY`, with
//! `key -` where the vendor signs requests instead of sending a key), then one `export …` line
//! with every provider's conventional variables, to paste into a shell. It is flushed before the
//! emulators start answering. Hints for people go to stderr.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;
use llmux_core::providers::REGISTRY;
use llmux_emulator::{Emulator, EmulatorConfig, Vendor};

use crate::error::{CliError, Result};

/// `llmux emulate` flags.
#[derive(Debug, Clone, Args)]
pub struct EmulateArgs {
    /// First port: vendors listen on N, N+1, … in the order of the emulator table (OpenAI,
    /// DashScope, Hunyuan, Zhipu, Ollama, Spark, Pangu, …; default or 0: any free ports).
    #[arg(long, value_name = "N")]
    pub port: Option<u16>,
    /// Delay before every response, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub latency_ms: u64,
    /// Delay between streamed tokens, in milliseconds (to watch streaming happen).
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub token_interval_ms: u64,
}

/// One endpoint line: provider id, base URL, bearer key (`None` when the vendor signs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Provider id.
    pub id: String,
    /// Base URL to use for it.
    pub url: String,
    /// The bearer key, when the provider takes one.
    pub key: Option<String>,
}

/// The lines `llmux emulate` prints.
pub fn banner(endpoints: &[Endpoint], exports: &BTreeMap<String, String>) -> String {
    let mut s = String::new();
    for e in endpoints {
        let key = e.key.as_deref().unwrap_or("-");
        s.push_str(&format!("{:<17} {:<44} key {key}\n", e.id, e.url));
    }
    s.push_str("export");
    for (k, v) in exports {
        s.push_str(&format!(" {k}={v}"));
    }
    s.push('\n');
    s
}

/// The bearer-key variable of provider `id`, if its env carries one.
fn key_of(id: &str, env: &[(String, String)]) -> Option<String> {
    let var = llmux_core::providers::spec(id).ok()?.api_key_env()?;
    env.iter().find(|(k, _)| k == var).map(|(_, v)| v.clone())
}

/// Endpoint lines and the merged export assignments for running emulators.
pub fn describe(emulators: &[Emulator]) -> (Vec<Endpoint>, BTreeMap<String, String>) {
    let mut endpoints = Vec::new();
    let mut exports = BTreeMap::new();
    for spec in REGISTRY {
        let Some(emu) = emulators.iter().find(|e| e.env_for(spec.id).is_some()) else {
            continue;
        };
        let env = emu.env_for(spec.id).unwrap_or_default();
        endpoints.push(Endpoint {
            id: spec.id.to_owned(),
            url: emu.base_url_for(spec.id).unwrap_or_default(),
            key: key_of(spec.id, &env),
        });
        exports.extend(env);
    }
    (endpoints, exports)
}

fn bind(port: Option<u16>, offset: u16) -> Result<SocketAddr> {
    let port = match port {
        // 0 asks for any free port, for every emulator (not 0, 1, 2, … for the ones after it).
        None | Some(0) => 0,
        Some(p) => p.checked_add(offset).ok_or_else(|| {
            CliError::msg(format!(
                "--port {p} leaves no room for {} emulators on the following ports",
                Vendor::ALL.len()
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

/// Starts the emulator that serves provider `id` on a free loopback port; returns it with the
/// variables that point a client at it.
pub async fn start_for(id: &str) -> Result<(Emulator, Vec<(String, String)>)> {
    let vendor = Vendor::for_provider(id)
        .ok_or_else(|| CliError::msg(format!("--emulate has no emulator for provider `{id}`")))?;
    let emu = Emulator::start(EmulatorConfig::new(vendor))
        .await
        .map_err(|e| CliError::io(format!("starting the {} emulator", vendor.id()), e))?;
    let env = emu.env_for(id).ok_or_else(|| {
        CliError::msg(format!(
            "the {} emulator does not serve `{id}`",
            vendor.id()
        ))
    })?;
    Ok((emu, env))
}

/// Starts every vendor's emulator, prints their endpoints and serves until Ctrl-C or SIGTERM.
pub async fn run(args: EmulateArgs) -> Result<()> {
    let mut emulators = Vec::with_capacity(Vendor::ALL.len());
    for (i, &vendor) in Vendor::ALL.iter().enumerate() {
        let offset = u16::try_from(i).unwrap_or(u16::MAX);
        emulators.push(start(vendor, bind(args.port, offset)?, &args).await?);
    }
    // Listen before announcing, so a signal sent right after the banner is handled.
    let stop = Shutdown::listen()?;
    let (endpoints, exports) = describe(&emulators);
    let mut out = std::io::stdout().lock();
    out.write_all(banner(&endpoints, &exports).as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| CliError::io("writing to stdout", e))?;
    drop(out);
    eprintln!(
        "emulators ready. Paste the export line into a shell, then try:\n  \
         llmux chat -m dashscope/qwen-plus \"hello\"\n  \
         llmux chat -m hunyuan/hunyuan-lite \"你好\"\n  \
         llmux chat -m openai/gpt-4o-mini\n\
         Ctrl-C stops them."
    );
    stop.wait().await;
    eprintln!("emulators stopped");
    drop(emulators);
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
    fn banner_lines_split_into_id_url_key_then_one_export_line() {
        let endpoints = vec![
            Endpoint {
                id: "openai".into(),
                url: "http://127.0.0.1:1/v1".into(),
                key: Some("sk-emulator-openai".into()),
            },
            Endpoint {
                id: "hunyuan".into(),
                url: "http://127.0.0.1:3/".into(),
                key: None,
            },
        ];
        let exports = BTreeMap::from([
            ("OPENAI_API_KEY".to_owned(), "sk-emulator-openai".to_owned()),
            (
                "TENCENTCLOUD_SECRET_ID".to_owned(),
                "AKIDemulator".to_owned(),
            ),
        ]);
        let b = banner(&endpoints, &exports);
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
        assert_eq!(lines[1], ["hunyuan", "http://127.0.0.1:3/", "key", "-"]);
        assert_eq!(
            lines[2],
            [
                "export",
                "OPENAI_API_KEY=sk-emulator-openai",
                "TENCENTCLOUD_SECRET_ID=AKIDemulator"
            ]
        );
        assert!(b.ends_with('\n'));
    }

    #[test]
    fn port_overflow_is_a_clear_error() {
        assert!(bind(Some(u16::MAX), 1).is_err());
        assert_eq!(bind(Some(8000), 1).unwrap().port(), 8001);
        assert_eq!(bind(None, 1).unwrap().port(), 0);
        assert_eq!(bind(Some(0), 3).unwrap().port(), 0);
    }
}
