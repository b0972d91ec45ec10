//! `llmux serve` and `llmux check-config`: thin wrappers over `llmux_gateway::serve`.

use std::path::PathBuf;

use clap::Args;
use llmux_gateway::serve::{self as gw, ServeOptions};
use llmux_gateway::Gateway;

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

/// Loads, resolves and serves until Ctrl-C or SIGTERM.
pub fn serve(args: ServeArgs) -> Result<()> {
    let mut raw = gw::load_raw(args.config.as_deref()).map_err(|e| config_error(&e))?;
    if let Some(listen) = args.listen {
        raw.server.listen = listen;
    }
    let config = gw::resolve(raw).map_err(|e| config_error(&e))?;
    if config.channels.is_empty() {
        return Err(CliError::msg(
            "no channels: write a config file (see crates/llmux-gateway/examples/llmux.toml) or set a provider key such as DASHSCOPE_API_KEY",
        ));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::io("starting the async runtime", e))?;
    rt.block_on(async move {
        let opts = ServeOptions {
            insecure_no_auth: args.insecure_no_auth,
        };
        let gateway = Gateway::bind(config, opts)
            .await
            .map_err(|e| CliError::msg(e.to_string()))?;
        eprintln!("llmux gateway listening on http://{}", gateway.local_addr());
        gateway
            .run(gw::shutdown_signal())
            .await
            .map_err(|e| CliError::msg(e.to_string()))
    })
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
