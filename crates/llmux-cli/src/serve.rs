//! `llmux serve` and `llmux check-config`: thin wrappers over `llmux_gateway::serve`.

use std::path::PathBuf;

use clap::Args;
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

use llmux_emulator::{Emulator, EmulatorConfig, Vendor};
use llmux_gateway::config::LogFormat;
use llmux_gateway::config::{RawChannel, RawModels};
use llmux_gateway::serve::{self as gw, ServeOptions};
use llmux_gateway::store::NewKey;
use llmux_gateway::{Config, Gateway, RawConfig};

use crate::error::{CliError, Result};

/// `llmux serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The configuration file (default: $LLMUX_CONFIG; without either, one channel per
    /// provider whose key variable is set).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Listen address, overriding server.listen and LLMUX__SERVER__LISTEN.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Admit requests without any key. For local experiments only, never in production.
    #[arg(long)]
    pub insecure_no_auth: bool,
    /// Offline demo: start an emulator of every vendor, serve one channel per provider in front
    /// of them, and print a fresh virtual key to call the gateway with.
    #[arg(long, conflicts_with = "config")]
    pub emulate: bool,
    /// Threads that serve requests (default: the CPUs this process may run on). With one, the
    /// gateway runs on tokio's single-threaded scheduler, which spends less per wake-up than
    /// the work-stealing one has to.
    #[arg(long, env = "LLMUX_WORKER_THREADS", value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub worker_threads: Option<u16>,
    /// Log lines as `text` or `json` (one object per line), overriding server.log_format.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormatArg>,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormatArg {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl From<LogFormatArg> for LogFormat {
    fn from(a: LogFormatArg) -> LogFormat {
        match a {
            LogFormatArg::Text => LogFormat::Text,
            LogFormatArg::Json => LogFormat::Json,
        }
    }
}

/// `llmux check-config`.
#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    /// The configuration file to validate.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

fn config_error(e: &llmux_gateway::ConfigError) -> CliError {
    CliError::msg(format!(
        "invalid configuration: {}",
        e.to_string().replace('\n', "; ")
    ))
}

/// The database of `serve --emulate`: in memory, gone with the process.
const DEMO_DATABASE: &str = "sqlite::memory:";

/// The embedded SQLite database used when the configuration names none.
pub fn default_database() -> Result<String> {
    let dir = crate::session::data_dir()?;
    std::fs::create_dir_all(&dir)
        .map_err(|e| CliError::io(format!("creating {}", dir.display()), e))?;
    Ok(format!(
        "sqlite://{}",
        dir.join("gateway.sqlite3").display()
    ))
}

/// Gives the demo's well-known models their plain names too: `qwen-plus` beside
/// `dashscope/qwen-plus`. A plain name goes to one channel, the first (in registry order) of
/// those that list it, when they all lead to the same upstream (`upstream_of`: the emulator that
/// answers for a provider); so `qwen-plus` is DashScope's native protocol rather than one of its
/// compatible modes. A name that channels of two upstreams list gets no plain form, and asking
/// for it is a 404 naming the `provider/model` choices; a plain name some channel already lists
/// is left as it is.
fn add_plain_names(channels: &mut [RawChannel], upstream_of: impl Fn(&str) -> Option<String>) {
    struct Owner {
        channel: usize,
        upstream: String,
        model: String,
        ambiguous: bool,
    }
    let mut listed = BTreeSet::new();
    let mut owners: BTreeMap<String, Owner> = BTreeMap::new();
    for (i, ch) in channels.iter().enumerate() {
        let RawModels::Table(models) = &ch.models else {
            if let RawModels::List(names) = &ch.models {
                listed.extend(names.iter().cloned());
            }
            continue;
        };
        let upstream = upstream_of(&ch.provider).unwrap_or_else(|| ch.provider.clone());
        for (public, model) in models {
            listed.insert(public.clone());
            let plain = match public.split_once('/') {
                Some((prefix, plain)) if prefix == ch.name && !plain.contains('/') => plain,
                _ => continue,
            };
            match owners.entry(plain.to_owned()) {
                Entry::Vacant(e) => {
                    e.insert(Owner {
                        channel: i,
                        upstream: upstream.clone(),
                        model: model.clone(),
                        ambiguous: false,
                    });
                }
                Entry::Occupied(mut e) => {
                    if e.get().upstream != upstream {
                        e.get_mut().ambiguous = true;
                    }
                }
            }
        }
    }
    for (plain, owner) in owners {
        if owner.ambiguous || plain.is_empty() || listed.contains(&plain) {
            continue;
        }
        if let RawModels::Table(models) = &mut channels[owner.channel].models {
            models.insert(plain, owner.model);
        }
    }
}

/// Loads, resolves and serves until Ctrl-C or SIGTERM.
pub fn serve(args: ServeArgs, verbose: u8) -> Result<()> {
    let workers = args.worker_threads.map_or_else(
        || std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
        usize::from,
    );
    let mut builder = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(workers);
        b
    };
    let rt = builder
        .enable_all()
        .build()
        .map_err(|e| CliError::io("starting the async runtime", e))?;
    rt.block_on(serve_async(args, verbose))
}

async fn serve_async(args: ServeArgs, verbose: u8) -> Result<()> {
    // With --emulate, every vendor's emulator runs in this process and the channels are made
    // from the variables that point at them (instead of the process environment).
    let mut emulators = Vec::new();
    let mut emulated: BTreeMap<String, String> = BTreeMap::new();
    if args.emulate {
        for &vendor in Vendor::ALL {
            let emu = Emulator::start(EmulatorConfig::new(vendor))
                .await
                .map_err(|e| CliError::io(format!("starting the {} emulator", vendor.id()), e))?;
            for spec in llmux_core::providers::REGISTRY {
                if let Some(env) = emu.env_for(spec.id) {
                    emulated.extend(env);
                }
            }
            emulators.push(emu);
        }
    }
    let mut raw = if args.emulate {
        // The process's `LLMUX__…` settings (the listen address, limits…) apply to the demo as
        // they do to a real run; its provider variables do not (the emulators replace them).
        let mut env: Vec<(String, String)> = emulated.clone().into_iter().collect();
        env.extend(
            gw::env_pairs()
                .into_iter()
                .filter(|(k, _)| k.starts_with("LLMUX__")),
        );
        RawConfig::from_provider_env(env, |k| emulated.get(k).cloned()).map(|mut raw| {
            add_plain_names(&mut raw.channels, |id| {
                Vendor::for_provider(id).map(|v| v.id().to_owned())
            });
            raw
        })
    } else {
        gw::load_raw(args.config.as_deref())
    }
    .map_err(|e| config_error(&e))?;
    if let Some(listen) = args.listen {
        raw.server.listen = listen;
    }
    if let Some(format) = args.log_format {
        raw.server.log_format = format.into();
    }
    // The offline demo gets an admin key of its own (printed below) so the dashboard and the
    // admin API can be tried too; a configured one is kept and never printed.
    let demo_admin = if args.emulate && raw.server.admin_key.is_none() {
        let key = llmux_gateway::keys::generate()
            .map_err(|e| CliError::msg(format!("generating an admin key: {e}")))?
            .replacen("sk-llmux-", "adm-llmux-", 1);
        raw.server.admin_key = Some(key.clone());
        Some(key)
    } else {
        None
    };
    if args.emulate {
        // The demo's keys live in memory only: they die with the process and never reach the
        // default database, where a later real `llmux serve` would accept them.
        raw.server.database = Some(DEMO_DATABASE.to_owned());
    } else {
        match raw.server.database.as_deref() {
            // `database = "none"`: no accounting, no virtual keys (static keys only).
            Some("none") => raw.server.database = None,
            Some(_) => {}
            None => raw.server.database = Some(default_database()?),
        }
    }
    let config = if args.emulate {
        Config::resolve(raw, |k| emulated.get(k).cloned())
    } else {
        gw::resolve(raw)
    }
    .map_err(|e| config_error(&e))?;
    // Channels may also come from the database (added through the admin API).
    let can_add = config.server.database.is_some() && config.server.admin_key.is_some();
    if config.channels.is_empty() && !can_add {
        return Err(no_channels());
    }
    let json = config.server.log_format == LogFormat::Json;
    let traces = llmux_gateway::telemetry::Tracing::start(&config.server.telemetry)
        .map_err(CliError::msg)?;
    let spans = traces
        .as_ref()
        .map(|t| tracing_subscriber::Layer::boxed(t.layer::<tracing_subscriber::Registry>()));
    crate::logging::init(verbose, true, config.server.log_format, spans);
    let opts = ServeOptions {
        insecure_no_auth: args.insecure_no_auth,
    };
    let gateway = Gateway::bind(config, opts)
        .await
        .map_err(|e| CliError::msg(e.to_string()))?;
    if gateway.state().routes.current().listed().is_empty() && !can_add {
        return Err(no_channels());
    }
    if !args.emulate {
        // SIGHUP re-reads the file's channels (see docs/gateway.md).
        gw::spawn_sighup_reload(
            gateway.state().clone(),
            gw::config_path(args.config.as_deref()),
        );
    }
    // The demo key goes into the gateway's own (in-memory) store.
    let demo_key = match (gateway.state().store.as_ref(), args.emulate) {
        (Some(store), true) => {
            let (_, key) = store
                .create_key(NewKey {
                    name: "emulate-demo".into(),
                    ..NewKey::default()
                })
                .await
                .map_err(|e| CliError::msg(format!("creating a demo key: {e}")))?;
            Some(key)
        }
        _ => None,
    };
    let shutdown = gw::shutdown_signal();
    let addr = gateway.local_addr();
    // With JSON logs every stderr line is a log object: the gateway's own "listening" event
    // carries the address, and the demo's hints are events too.
    if !json {
        eprintln!("llmux gateway listening on http://{addr}");
    }
    if let Some(key) = demo_key {
        // The key goes to stdout alone on its line, so scripts can read it.
        println!("{key}");
        let hint = format!(
            "offline demo: every provider is emulated. Try:\n  curl -s http://{addr}/v1/chat/completions -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' -d '{{\"model\":\"dashscope/qwen-plus\",\"messages\":[{{\"role\":\"user\",\"content\":\"你好\"}}]}}'"
        );
        if json {
            tracing::info!("{hint}");
        } else {
            eprintln!("{hint}");
        }
    }
    if let Some(admin) = demo_admin {
        let hint = format!("dashboard: http://{addr}/dashboard (admin key for this run: {admin})");
        if json {
            tracing::info!("{hint}");
        } else {
            eprintln!("{hint}");
        }
    }
    let result = gateway
        .run(shutdown)
        .await
        .map_err(|e| CliError::msg(e.to_string()));
    if let Some(traces) = traces {
        traces.shutdown().await;
    }
    drop(emulators);
    result
}

fn no_channels() -> CliError {
    CliError::msg(
        "no channels: write a config file (see crates/llmux-gateway/examples/llmux.toml), set a provider key such as DASHSCOPE_API_KEY, or try `llmux serve --emulate`",
    )
}

/// Parses and resolves `FILE`; prints `OK: …` or fails with every problem and its path.
pub fn check_config(args: &CheckConfigArgs) -> Result<()> {
    let raw = gw::load_raw(Some(&args.file)).map_err(|e| config_error(&e))?;
    let config = gw::resolve(raw).map_err(|e| config_error(&e))?;
    println!(
        "OK: {} ({} channels, {} models)",
        args.file.display(),
        config.channels.len(),
        config.public_models().len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(name: &str, models: &[&str]) -> RawChannel {
        RawChannel {
            name: name.to_owned(),
            provider: name.to_owned(),
            base_url: None,
            region: None,
            models: RawModels::Table(
                models
                    .iter()
                    .map(|m| (format!("{name}/{m}"), (*m).to_owned()))
                    .collect(),
            ),
            weight: 1,
            priority: 0,
            passthrough: true,
            api_keys: Vec::new(),
            enabled: true,
            credentials: BTreeMap::new(),
            discover: None,
            builtin_models: true,
        }
    }

    fn models(ch: &RawChannel) -> Vec<(&str, &str)> {
        match &ch.models {
            RawModels::Table(t) => t.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
            RawModels::List(_) => Vec::new(),
        }
    }

    #[test]
    fn a_plain_name_goes_to_the_first_channel_of_its_one_upstream() {
        let mut channels = vec![
            channel("dashscope", &["qwen-plus", "shared"]),
            channel("dashscope-compat", &["qwen-plus"]),
            channel("openai", &["gpt-4o-mini", "shared"]),
            channel("ollama", &["llama3.2"]),
        ];
        add_plain_names(&mut channels, |id| match id {
            "dashscope" | "dashscope-compat" => Some("dashscope".into()),
            "openai" => Some("openai".into()),
            _ => None,
        });
        assert_eq!(
            models(&channels[0]),
            [
                ("dashscope/qwen-plus", "qwen-plus"),
                ("dashscope/shared", "shared"),
                ("qwen-plus", "qwen-plus"),
            ]
        );
        assert_eq!(
            models(&channels[1]),
            [("dashscope-compat/qwen-plus", "qwen-plus")]
        );
        // `shared` is served by two upstreams: ambiguous, so no plain form anywhere.
        assert_eq!(
            models(&channels[2]),
            [
                ("gpt-4o-mini", "gpt-4o-mini"),
                ("openai/gpt-4o-mini", "gpt-4o-mini"),
                ("openai/shared", "shared"),
            ]
        );
        // A provider without a known upstream is its own.
        assert_eq!(
            models(&channels[3]),
            [("llama3.2", "llama3.2"), ("ollama/llama3.2", "llama3.2")]
        );
    }

    #[test]
    fn a_plain_name_already_listed_is_left_alone() {
        let mut channels = vec![channel("a", &["m"]), channel("b", &["x"])];
        if let RawModels::Table(t) = &mut channels[1].models {
            t.insert("m".into(), "other".into());
        }
        add_plain_names(&mut channels, |_| None);
        assert_eq!(models(&channels[0]), [("a/m", "m")]);
        assert_eq!(
            models(&channels[1]),
            [("b/x", "x"), ("m", "other"), ("x", "x")]
        );
    }
}
