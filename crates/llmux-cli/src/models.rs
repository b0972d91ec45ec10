//! `llmux models`: the providers llmux knows and their well-known models, or a provider's own
//! model list with `--remote`.

use std::io::Write;

use clap::Args;
use llmux_core::providers::{self, ProviderSpec, REGISTRY};

use crate::error::{CliError, Result};
use crate::request;

/// `llmux models` flags.
#[derive(Debug, Clone, Args)]
pub struct ModelsArgs {
    /// Only this provider.
    #[arg(long, value_name = "ID")]
    pub provider: Option<String>,
    /// Ask the provider's API for its models (needs --provider and its key).
    #[arg(long, requires = "provider")]
    pub remote: bool,
    /// Endpoint of the provider for --remote (overrides PROVIDER_BASE_URL).
    #[arg(long, value_name = "URL", requires = "remote")]
    pub base_url: Option<String>,
}

/// Prints the table, or the remote model ids one per line.
pub async fn run(args: ModelsArgs) -> Result<()> {
    let specs: Vec<&ProviderSpec> = match &args.provider {
        Some(id) => vec![providers::spec(id)?],
        None => REGISTRY.iter().collect(),
    };
    let text = match (&args.provider, args.remote) {
        (Some(id), true) => {
            let client = request::build_client(id, args.base_url.as_deref())?;
            let mut ids: Vec<String> = client.models(id).await?.into_iter().map(|m| m.id).collect();
            ids.sort();
            let mut s = ids.join("\n");
            if !s.is_empty() {
                s.push('\n');
            }
            s
        }
        _ => table(&specs, |var| {
            std::env::var_os(var).is_some_and(|v| !v.is_empty())
        }),
    };
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| CliError::io("writing to stdout", e))
}

/// The key column: the variable, and whether it is set (`is_set` looks at the environment).
fn key_cell(spec: &ProviderSpec, is_set: &impl Fn(&str) -> bool) -> String {
    let Some(cred) = spec.credentials.iter().find(|c| c.field == "api_key") else {
        return "-".to_owned();
    };
    let Some(var) = cred.env.first() else {
        return "-".to_owned();
    };
    let state = if cred.env.iter().any(|v| is_set(v)) {
        "set"
    } else if cred.optional {
        "optional"
    } else {
        "not set"
    };
    format!("{var} ({state})")
}

/// The provider table: one row per provider, its models on the line below.
pub fn table(specs: &[&ProviderSpec], is_set: impl Fn(&str) -> bool) -> String {
    let rows: Vec<[String; 4]> = specs
        .iter()
        .map(|s| {
            [
                s.id.to_owned(),
                key_cell(s, &is_set),
                s.default_base_url.to_owned(),
                s.description.to_owned(),
            ]
        })
        .collect();
    let header = ["PROVIDER", "KEY", "DEFAULT BASE URL", "DESCRIPTION"].map(str::to_owned);
    let mut widths = [0usize; 3];
    for row in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |row: &[String; 4]| {
        format!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {}\n",
            row[0],
            row[1],
            row[2],
            row[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        )
    };
    let mut out = line(&header);
    for (spec, row) in specs.iter().zip(&rows) {
        out.push_str(&line(row));
        let models = if spec.models.is_empty() {
            "(any model the server serves)".to_owned()
        } else {
            spec.models
                .iter()
                .map(|m| format!("{}/{m}", spec.id))
                .collect::<Vec<_>>()
                .join(" ")
        };
        out.push_str(&format!("{:w$}  models: {models}\n", "", w = widths[0]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_lists_every_provider_with_key_state_and_models() {
        let specs: Vec<&ProviderSpec> = REGISTRY.iter().collect();
        let t = table(&specs, |v| v == "OPENAI_API_KEY");
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("PROVIDER"));
        assert_eq!(lines.len(), 1 + 2 * REGISTRY.len());
        let openai = lines.iter().find(|l| l.starts_with("openai ")).unwrap();
        assert!(openai.contains("OPENAI_API_KEY (set)"));
        assert!(openai.contains("https://api.openai.com/v1"));
        let ds = lines.iter().find(|l| l.starts_with("dashscope ")).unwrap();
        assert!(ds.contains("DASHSCOPE_API_KEY (not set)"));
        assert!(t.contains("dashscope/qwen-plus"));
        assert!(t.contains("VLLM_API_KEY (optional)"));
    }
}
