//! `llmux keys` and `llmux usage`: manage the gateway's virtual keys and read its usage
//! rollups straight from its database (the one `[server] database` names, or the embedded
//! SQLite file `llmux serve` uses by default).

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use llmux_gateway::serve as gw;
use llmux_gateway::store::{self, GroupBy, KeyRecord, KeyUpdate, NewKey, Store};

use crate::error::{CliError, Result};

/// Where the gateway's database is.
#[derive(Debug, Clone, Args)]
pub struct DbArgs {
    /// The gateway configuration file (default: $LLMUX_CONFIG; without either, the embedded
    /// SQLite database `llmux serve` uses).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// `llmux keys`.
#[derive(Debug, Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    pub command: KeysCommand,
}

/// `llmux keys` subcommands.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a virtual key; prints the new key alone on its last line (it is shown only once).
    Create(CreateArgs),
    /// List keys (never the keys themselves: their prefixes).
    List(DbArgs),
    /// Change a key's name, expiry, models or limits (`none` removes a limit); prints the key
    /// as `keys list` does. Running gateways apply it within their `server.key_cache_ttl`.
    Update(UpdateArgs),
    /// Revoke a key by id.
    Revoke {
        /// The key id (from `llmux keys list`).
        id: i64,
        #[command(flatten)]
        db: DbArgs,
    },
}

/// `llmux keys create` flags.
#[derive(Debug, Args)]
pub struct CreateArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// A name for the key (an app or a team).
    #[arg(long)]
    pub name: String,
    /// Requests per minute.
    #[arg(long)]
    pub rpm: Option<u32>,
    /// Tokens per minute (input + output).
    #[arg(long)]
    pub tpm: Option<u64>,
    /// Token budget (input + output) over the key's life.
    #[arg(long)]
    pub budget_tokens: Option<u64>,
    /// Money budget, in the price table's currency.
    #[arg(long)]
    pub budget_cost: Option<f64>,
    /// Allowed public model names, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    pub models: Vec<String>,
    /// Expiry date, YYYY-MM-DD (the key stops working at 00:00 UTC that day).
    #[arg(long, value_parser = parse_date)]
    pub expires: Option<i64>,
}

/// `llmux keys update` flags: each one given changes that field, the others stay.
#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// The key id (from `llmux keys list`).
    pub id: i64,
    #[command(flatten)]
    pub db: DbArgs,
    /// New name.
    #[arg(long)]
    pub name: Option<String>,
    /// Requests per minute, or `none`.
    #[arg(long, value_name = "N|none", value_parser = limit::<u32>)]
    pub rpm: Option<Change<u32>>,
    /// Tokens per minute, or `none`.
    #[arg(long, value_name = "N|none", value_parser = limit::<u64>)]
    pub tpm: Option<Change<u64>>,
    /// Token budget over the key's life, or `none`.
    #[arg(long, value_name = "N|none", value_parser = limit::<u64>)]
    pub budget_tokens: Option<Change<u64>>,
    /// Money budget, or `none`.
    #[arg(long, value_name = "X|none", value_parser = limit::<f64>)]
    pub budget_cost: Option<Change<f64>>,
    /// Allowed public model names, comma-separated, or `all`.
    #[arg(long, value_name = "A,B|all")]
    pub models: Option<String>,
    /// Expiry date, YYYY-MM-DD, or `never`.
    #[arg(long, value_name = "YYYY-MM-DD|never", value_parser = expiry)]
    pub expires: Option<Change<i64>>,
}

/// A new value, or the value removed (`none`, `never`).
#[derive(Debug, Clone, Copy)]
pub enum Change<T> {
    /// Set to this.
    Set(T),
    /// Removed.
    Clear,
}

impl<T> Change<T> {
    fn into_option(self) -> Option<T> {
        match self {
            Change::Set(v) => Some(v),
            Change::Clear => None,
        }
    }
}

/// A limit or `none`.
fn limit<T>(s: &str) -> std::result::Result<Change<T>, String>
where
    T: std::str::FromStr + PartialOrd + Default,
{
    if s.eq_ignore_ascii_case("none") {
        return Ok(Change::Clear);
    }
    match s.parse::<T>() {
        Ok(v) if v >= T::default() => Ok(Change::Set(v)),
        _ => Err(format!("`{s}` is not a non-negative number or `none`")),
    }
}

/// A date or `never`.
fn expiry(s: &str) -> std::result::Result<Change<i64>, String> {
    if s.eq_ignore_ascii_case("never") {
        Ok(Change::Clear)
    } else {
        parse_date(s).map(Change::Set)
    }
}

/// `llmux usage` grouping.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum By {
    /// Per key id.
    Key,
    /// Per public model.
    Model,
    /// Per UTC day.
    Day,
}

/// `llmux usage` output format.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// An aligned table.
    Table,
    /// A JSON list of rows with `group`, `requests`, `input_tokens`, `output_tokens`, `cost`.
    Json,
}

/// `llmux usage` flags.
#[derive(Debug, Args)]
pub struct UsageArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// How to group the rows.
    #[arg(long, value_enum, default_value = "model")]
    pub by: By,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Only days from this one on (YYYY-MM-DD).
    #[arg(long)]
    pub since: Option<String>,
    /// List raw usage records (newest first) instead of the rollups: the gateway's
    /// `request_id`, the client's `client_request_id`, key, model, status, tokens and cost
    /// (JSON: the records as `/admin/usage/records` returns them).
    #[arg(long, conflicts_with_all = ["by", "since"])]
    pub records: bool,
    /// With `--records`: only this key's records.
    #[arg(long, requires = "records", value_name = "ID")]
    pub key: Option<i64>,
    /// With `--records`: at most this many (default 100, at most 10,000).
    #[arg(long, requires = "records", value_name = "N")]
    pub limit: Option<u32>,
}

/// Unix seconds of 00:00 UTC on `YYYY-MM-DD`.
pub fn parse_date(s: &str) -> std::result::Result<i64, String> {
    store::parse_day(s).ok_or_else(|| format!("`{s}` is not a date as YYYY-MM-DD"))
}

async fn open(db: &DbArgs) -> Result<std::sync::Arc<dyn Store>> {
    let raw = gw::load_raw(db.config.as_deref()).map_err(|e| {
        CliError::msg(format!(
            "invalid configuration: {}",
            e.to_string().replace('\n', "; ")
        ))
    })?;
    let url = match raw.server.database {
        Some(url) if url.starts_with("env:") => std::env::var(&url[4..])
            .map_err(|_| CliError::msg(format!("server.database names {url}, which is not set")))?,
        Some(url) => url,
        None => crate::serve::default_database()?,
    };
    store::open(&url)
        .await
        .map_err(|e| CliError::msg(format!("opening the gateway database: {e}")))
}

fn key_line(k: &KeyRecord) -> String {
    let models = if k.models.is_empty() {
        "*".to_owned()
    } else {
        k.models.join(",")
    };
    let state = if k.revoked { "revoked" } else { "active" };
    format!(
        "{:<5} {:<20} {:<14} {:<8} models={models} rpm={} tpm={} budget_tokens={} budget_cost={} spent_tokens={} spent_cost={:.4}",
        k.id,
        k.name,
        k.prefix,
        state,
        k.rpm.map_or("-".into(), |v| v.to_string()),
        k.tpm.map_or("-".into(), |v| v.to_string()),
        k.budget_tokens.map_or("-".into(), |v| v.to_string()),
        k.budget_cost.map_or("-".into(), |v| v.to_string()),
        k.spent_tokens,
        k.spent_cost
    )
}

/// A key problem in the CLI's terms: the JSON field name becomes the flag.
fn problem_line(p: &store::KeyProblem) -> String {
    let flag = match p.field {
        "expires_at" => "--expires".to_owned(),
        "" => return p.rule.clone(),
        f => format!("--{}", f.replace('_', "-")),
    };
    format!("{flag} {}", p.rule)
}

/// Runs `llmux keys …`.
pub async fn keys(args: KeysArgs) -> Result<()> {
    match args.command {
        KeysCommand::Create(c) => {
            let new = NewKey {
                name: c.name,
                expires_at: c.expires,
                models: c.models,
                rpm: c.rpm,
                tpm: c.tpm,
                budget_tokens: c.budget_tokens,
                budget_cost: c.budget_cost,
            };
            new.check(store::unix_now())
                .map_err(|p| CliError::msg(problem_line(&p)))?;
            let store = open(&c.db).await?;
            let (record, key) = store
                .create_key(new)
                .await
                .map_err(|e| CliError::msg(format!("creating the key: {e}")))?;
            eprintln!(
                "created key {} ({}); it is shown once:",
                record.id, record.name
            );
            println!("{key}");
        }
        KeysCommand::List(db) => {
            let store = open(&db).await?;
            for k in store
                .list_keys()
                .await
                .map_err(|e| CliError::msg(e.to_string()))?
            {
                println!("{}", key_line(&k));
            }
        }
        KeysCommand::Update(u) => {
            let models = u.models.map(|m| {
                if m.trim().eq_ignore_ascii_case("all") {
                    Vec::new()
                } else {
                    m.split(',')
                        .map(|s| s.trim().to_owned())
                        .filter(|s| !s.is_empty())
                        .collect()
                }
            });
            let update = KeyUpdate {
                name: u.name,
                expires_at: u.expires.map(Change::into_option),
                models,
                rpm: u.rpm.map(Change::into_option),
                tpm: u.tpm.map(Change::into_option),
                budget_tokens: u.budget_tokens.map(Change::into_option),
                budget_cost: u.budget_cost.map(Change::into_option),
            };
            if update.is_empty() {
                return Err(CliError::msg(
                    "nothing to change: give --name, --rpm, --tpm, --budget-tokens, \
                     --budget-cost, --models or --expires",
                ));
            }
            update
                .check(store::unix_now())
                .map_err(|p| CliError::msg(problem_line(&p)))?;
            let store = open(&u.db).await?;
            let record = store
                .update_key(u.id, update)
                .await
                .map_err(|e| CliError::msg(format!("updating the key: {e}")))?
                .ok_or_else(|| CliError::msg(format!("no key with id {}", u.id)))?;
            println!("{}", key_line(&record));
        }
        KeysCommand::Revoke { id, db } => {
            let store = open(&db).await?;
            if !store
                .revoke_key(id)
                .await
                .map_err(|e| CliError::msg(e.to_string()))?
            {
                return Err(CliError::msg(format!("no key with id {id}")));
            }
            println!(
                "revoked key {id} (running gateways refuse it within their server.key_cache_ttl, 10 s by default)"
            );
        }
    }
    Ok(())
}

/// Runs `llmux usage`.
pub async fn usage(args: UsageArgs) -> Result<()> {
    let store = open(&args.db).await?;
    if args.records {
        return records(store.as_ref(), &args).await;
    }
    let by = match args.by {
        By::Key => GroupBy::Key,
        By::Model => GroupBy::Model,
        By::Day => GroupBy::Day,
    };
    let rows = store
        .usage(by, args.since.as_deref())
        .await
        .map_err(|e| CliError::msg(format!("reading usage: {e}")))?;
    match args.format {
        Format::Json => {
            let v: Vec<serde_json::Value> = rows
                .iter()
                .map(|r| {
                    serde_json::json!({"group": r.group, "requests": r.requests,
                        "input_tokens": r.input_tokens, "output_tokens": r.output_tokens, "cost": r.cost})
                })
                .collect();
            println!("{}", serde_json::Value::Array(v));
        }
        Format::Table => {
            println!(
                "{:<32} {:>10} {:>14} {:>14} {:>12}",
                "group", "requests", "input_tokens", "output_tokens", "cost"
            );
            for r in &rows {
                println!(
                    "{:<32} {:>10} {:>14} {:>14} {:>12.4}",
                    r.group, r.requests, r.input_tokens, r.output_tokens, r.cost
                );
            }
        }
    }
    Ok(())
}

/// `llmux usage --records`.
async fn records(store: &dyn Store, args: &UsageArgs) -> Result<()> {
    let recs = store
        .records(store::RecordQuery {
            key_id: args.key,
            limit: args.limit.unwrap_or(0),
        })
        .await
        .map_err(|e| CliError::msg(format!("reading usage records: {e}")))?;
    match args.format {
        Format::Json => {
            let text = serde_json::to_string(&recs)
                .map_err(|e| CliError::msg(format!("encoding usage records: {e}")))?;
            println!("{text}");
        }
        Format::Table => {
            println!(
                "{:<36} {:<24} {:>5} {:<20} {:>6} {:>8} {:>8} {:>10} error",
                "request_id",
                "client_request_id",
                "key",
                "model",
                "status",
                "input",
                "output",
                "cost"
            );
            for r in &recs {
                println!(
                    "{:<36} {:<24} {:>5} {:<20} {:>6} {:>8} {:>8} {:>10.6} {}",
                    r.request_id,
                    r.client_request_id.as_deref().unwrap_or("-"),
                    r.key_id.map_or_else(|| "-".to_owned(), |k| k.to_string()),
                    r.model,
                    r.status,
                    r.input_tokens,
                    r.output_tokens,
                    r.cost,
                    r.error_kind.as_deref().unwrap_or("")
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_midnights() {
        assert_eq!(parse_date("1970-01-01").unwrap(), 0);
        assert_eq!(parse_date("2026-11-22").unwrap(), 1_795_305_600);
        assert_eq!(parse_date("2000-03-01").unwrap(), 951_868_800);
        assert!(parse_date("2026-13-01").is_err());
        assert!(parse_date("tomorrow").is_err());
    }
}
