//! `llmux keys`, `llmux teams` and `llmux usage`: manage the gateway's virtual keys and teams
//! and read its usage rollups straight from its database (the one `[server] database` names, or the embedded
//! SQLite file `llmux serve` uses by default).

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use llmux_gateway::limits::BudgetPeriod;
use llmux_gateway::serve as gw;
use llmux_gateway::store::{
    self, GroupBy, KeyRecord, KeyUpdate, NewKey, NewTeam, Store, TeamDeletion, TeamRecord,
    TeamUpdate,
};

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
    /// How often the budgets start again: none (the key's whole life), daily, weekly or
    /// monthly (in the gateway's server.budget_timezone).
    #[arg(long, value_name = "PERIOD", value_parser = period)]
    pub budget_period: Option<BudgetPeriod>,
    /// The team the key joins (its name; see `llmux teams`).
    #[arg(long, value_name = "NAME")]
    pub team: Option<String>,
    /// Allowed public model names, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    pub models: Vec<String>,
    /// Expiry date, YYYY-MM-DD (the key stops working at 00:00 UTC that day).
    #[arg(long, value_parser = parse_date)]
    pub expires: Option<i64>,
    /// Use the gateway's response cache: on, off, or default (follow `[cache] mode`).
    #[arg(long, value_name = "on|off|default", value_parser = cache_setting)]
    pub cache: Option<Change<bool>>,
    /// Seconds this key's answers stay in the response cache (default: `[cache] ttl`; cut
    /// to `[cache] max_ttl`).
    #[arg(long, value_name = "SECONDS")]
    pub cache_ttl: Option<u64>,
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
    /// How often the budgets start again: none, daily, weekly or monthly.
    #[arg(long, value_name = "PERIOD", value_parser = period)]
    pub budget_period: Option<BudgetPeriod>,
    /// Move the key to this team, or `none` to take it out of its team.
    #[arg(long, value_name = "NAME|none", value_parser = team_change)]
    pub team: Option<Change<String>>,
    /// Allowed public model names, comma-separated, or `all`.
    #[arg(long, value_name = "A,B|all")]
    pub models: Option<String>,
    /// Expiry date, YYYY-MM-DD, or `never`.
    #[arg(long, value_name = "YYYY-MM-DD|never", value_parser = expiry)]
    pub expires: Option<Change<i64>>,
    /// Use the response cache: on, off, or default (follow `[cache] mode`).
    #[arg(long, value_name = "on|off|default", value_parser = cache_setting)]
    pub cache: Option<Change<bool>>,
    /// Seconds this key's answers stay in the response cache, or `none` for `[cache] ttl`.
    #[arg(long, value_name = "SECONDS|none", value_parser = limit::<u64>)]
    pub cache_ttl: Option<Change<u64>>,
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

/// `on`, `off`, or `default` (the setting removed).
fn cache_setting(s: &str) -> std::result::Result<Change<bool>, String> {
    match s.to_ascii_lowercase().as_str() {
        "on" | "true" => Ok(Change::Set(true)),
        "off" | "false" => Ok(Change::Set(false)),
        "default" | "none" => Ok(Change::Clear),
        _ => Err(format!("`{s}` is not on, off or default")),
    }
}

/// A budget period.
fn period(s: &str) -> std::result::Result<BudgetPeriod, String> {
    BudgetPeriod::parse(s)
}

/// A team name or `none`.
fn team_change(s: &str) -> std::result::Result<Change<String>, String> {
    if s.eq_ignore_ascii_case("none") {
        Ok(Change::Clear)
    } else {
        Ok(Change::Set(s.to_owned()))
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
    /// Per team (requests of keys in a team only).
    Team,
}

/// `llmux usage` output format.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// An aligned table.
    Table,
    /// A JSON list of rows with `group`, `name` (the key's, by key), `requests`,
    /// `input_tokens`, `output_tokens`, `cost`.
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
        "{:<5} {:<20} {:<14} {:<8} team={} models={models} rpm={} tpm={} budget_tokens={} budget_cost={} budget_period={}{} spent_tokens={} spent_cost={:.4} cache={} cache_ttl={}",
        k.id,
        k.name,
        k.prefix,
        state,
        k.team.as_deref().unwrap_or("-"),
        k.rpm.map_or("-".into(), |v| v.to_string()),
        k.tpm.map_or("-".into(), |v| v.to_string()),
        k.budget_tokens.map_or("-".into(), |v| v.to_string()),
        k.budget_cost.map_or("-".into(), |v| v.to_string()),
        k.budget_period,
        period_spend(k.budget_period, &k.period, k.period_tokens, k.period_cost),
        k.spent_tokens,
        k.spent_cost,
        match k.cache {
            Some(true) => "on",
            Some(false) => "off",
            None => "default",
        },
        k.cache_ttl.map_or("-".into(), |v| v.to_string()),
    )
}

/// ` period=m:2026-12 period_tokens=… period_cost=…` for a periodic budget with a recorded
/// period, else nothing.
fn period_spend(p: BudgetPeriod, label: &str, tokens: u64, cost: f64) -> String {
    if p == BudgetPeriod::None || label.is_empty() {
        String::new()
    } else {
        format!(" period={label} period_tokens={tokens} period_cost={cost:.4}")
    }
}

fn team_line(t: &TeamRecord) -> String {
    format!(
        "{:<24} rpm={} tpm={} budget_tokens={} budget_cost={} budget_period={}{} spent_tokens={} spent_cost={:.4}",
        t.name,
        t.rpm.map_or("-".into(), |v| v.to_string()),
        t.tpm.map_or("-".into(), |v| v.to_string()),
        t.budget_tokens.map_or("-".into(), |v| v.to_string()),
        t.budget_cost.map_or("-".into(), |v| v.to_string()),
        t.budget_period,
        period_spend(t.budget_period, &t.period, t.period_tokens, t.period_cost),
        t.spent_tokens,
        t.spent_cost
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
                budget_period: c.budget_period.unwrap_or_default(),
                team: c.team,
                cache: c.cache.and_then(Change::into_option),
                cache_ttl: c.cache_ttl,
            };
            new.check(store::unix_now())
                .map_err(|p| CliError::msg(problem_line(&p)))?;
            let store = open(&c.db).await?;
            team_exists(store.as_ref(), new.team.as_deref()).await?;
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
                budget_period: u.budget_period,
                team: u.team.map(Change::into_option),
                cache: u.cache.map(Change::into_option),
                cache_ttl: u.cache_ttl.map(Change::into_option),
            };
            if update.is_empty() {
                return Err(CliError::msg(
                    "nothing to change: give --name, --rpm, --tpm, --budget-tokens, \
                     --budget-cost, --budget-period, --team, --models, --expires, --cache \
                     or --cache-ttl",
                ));
            }
            update
                .check(store::unix_now())
                .map_err(|p| CliError::msg(problem_line(&p)))?;
            let store = open(&u.db).await?;
            team_exists(
                store.as_ref(),
                update.team.as_ref().and_then(Option::as_deref),
            )
            .await?;
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

/// Fails unless a team named `name` exists (when one is named).
async fn team_exists(store: &dyn Store, name: Option<&str>) -> Result<()> {
    let Some(name) = name else {
        return Ok(());
    };
    let found = store
        .find_team(name)
        .await
        .map_err(|e| CliError::msg(format!("looking up the team: {e}")))?;
    match found {
        Some(_) => Ok(()),
        None => Err(CliError::msg(format!(
            "--team: no team named `{name}` (create it with `llmux teams create --name {name}`)"
        ))),
    }
}

/// `llmux teams`.
#[derive(Debug, Args)]
pub struct TeamsArgs {
    #[command(subcommand)]
    pub command: TeamsCommand,
}

/// `llmux teams` subcommands.
#[derive(Debug, Subcommand)]
pub enum TeamsCommand {
    /// List teams with their limits, budget period and spend.
    List(DbArgs),
    /// Create a team; keys join it with `llmux keys create|update --team NAME`.
    Create(TeamCreateArgs),
    /// Change a team's name, limits or budget period (`none` removes a limit).
    Update(TeamUpdateArgs),
    /// Delete a team; refused while keys belong to it, unless `--detach` takes them out first.
    Delete {
        /// The team's name.
        name: String,
        /// Take the team's keys out of it (they keep their own limits), then delete it.
        #[arg(long)]
        detach: bool,
        #[command(flatten)]
        db: DbArgs,
    },
}

/// `llmux teams create` flags.
#[derive(Debug, Args)]
pub struct TeamCreateArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// The team's name: 1 to 64 ASCII letters, digits, `.`, `_` or `-`.
    #[arg(long)]
    pub name: String,
    /// Requests per minute of all its keys together.
    #[arg(long)]
    pub rpm: Option<u32>,
    /// Tokens per minute of all its keys together.
    #[arg(long)]
    pub tpm: Option<u64>,
    /// Token budget of all its keys together.
    #[arg(long)]
    pub budget_tokens: Option<u64>,
    /// Money budget of all its keys together.
    #[arg(long)]
    pub budget_cost: Option<f64>,
    /// none (default), daily, weekly or monthly.
    #[arg(long, value_name = "PERIOD", value_parser = period)]
    pub budget_period: Option<BudgetPeriod>,
}

/// `llmux teams update` flags: each one given changes that field, the others stay.
#[derive(Debug, Args)]
pub struct TeamUpdateArgs {
    /// The team's name.
    pub team: String,
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
    /// Token budget, or `none`.
    #[arg(long, value_name = "N|none", value_parser = limit::<u64>)]
    pub budget_tokens: Option<Change<u64>>,
    /// Money budget, or `none`.
    #[arg(long, value_name = "X|none", value_parser = limit::<f64>)]
    pub budget_cost: Option<Change<f64>>,
    /// none, daily, weekly or monthly.
    #[arg(long, value_name = "PERIOD", value_parser = period)]
    pub budget_period: Option<BudgetPeriod>,
}

/// Runs `llmux teams …`.
pub async fn teams(args: TeamsArgs) -> Result<()> {
    match args.command {
        TeamsCommand::List(db) => {
            let store = open(&db).await?;
            for t in store
                .list_teams()
                .await
                .map_err(|e| CliError::msg(e.to_string()))?
            {
                println!("{}", team_line(&t));
            }
        }
        TeamsCommand::Create(c) => {
            let new = NewTeam {
                name: c.name,
                rpm: c.rpm,
                tpm: c.tpm,
                budget_tokens: c.budget_tokens,
                budget_cost: c.budget_cost,
                budget_period: c.budget_period.unwrap_or_default(),
            };
            new.check().map_err(|p| CliError::msg(problem_line(&p)))?;
            let store = open(&c.db).await?;
            let name = new.name.clone();
            let team = store
                .create_team(new)
                .await
                .map_err(|e| CliError::msg(format!("creating the team: {e}")))?
                .ok_or_else(|| CliError::msg(format!("a team named `{name}` exists already")))?;
            println!("{}", team_line(&team));
        }
        TeamsCommand::Update(u) => {
            let update = TeamUpdate {
                name: u.name,
                rpm: u.rpm.map(Change::into_option),
                tpm: u.tpm.map(Change::into_option),
                budget_tokens: u.budget_tokens.map(Change::into_option),
                budget_cost: u.budget_cost.map(Change::into_option),
                budget_period: u.budget_period,
            };
            if update.is_empty() {
                return Err(CliError::msg(
                    "nothing to change: give --name, --rpm, --tpm, --budget-tokens, \
                     --budget-cost or --budget-period",
                ));
            }
            update
                .check()
                .map_err(|p| CliError::msg(problem_line(&p)))?;
            let store = open(&u.db).await?;
            if let Some(new_name) = update.name.as_deref().filter(|n| *n != u.team) {
                if store
                    .find_team(new_name)
                    .await
                    .map_err(|e| CliError::msg(e.to_string()))?
                    .is_some()
                {
                    return Err(CliError::msg(format!(
                        "--name: a team named `{new_name}` exists already"
                    )));
                }
            }
            let team = store
                .update_team(&u.team, update)
                .await
                .map_err(|e| CliError::msg(format!("updating the team: {e}")))?
                .ok_or_else(|| CliError::msg(format!("no team named `{}`", u.team)))?;
            println!("{}", team_line(&team));
        }
        TeamsCommand::Delete { name, detach, db } => {
            let store = open(&db).await?;
            match store
                .delete_team(&name, detach)
                .await
                .map_err(|e| CliError::msg(format!("deleting the team: {e}")))?
            {
                TeamDeletion::NotFound => {
                    return Err(CliError::msg(format!("no team named `{name}`")))
                }
                TeamDeletion::HasKeys(keys) => {
                    let named: Vec<String> = keys
                        .iter()
                        .map(|k| format!("{} ({})", k.id, k.name))
                        .collect();
                    return Err(CliError::msg(format!(
                        "team `{name}` still has {} key(s): {}; move them with `llmux keys update ID --team OTHER|none`, or delete with --detach",
                        keys.len(),
                        named.join(", ")
                    )));
                }
                TeamDeletion::Deleted(keys) => {
                    if keys.is_empty() {
                        println!("deleted team {name}");
                    } else {
                        let ids: Vec<String> = keys.iter().map(|k| k.id.to_string()).collect();
                        println!(
                            "deleted team {name}; keys {} now belong to no team",
                            ids.join(", ")
                        );
                    }
                }
            }
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
        By::Team => GroupBy::Team,
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
                    serde_json::json!({"group": r.group, "name": r.name, "requests": r.requests,
                        "input_tokens": r.input_tokens, "output_tokens": r.output_tokens, "cost": r.cost})
                })
                .collect();
            println!("{}", serde_json::Value::Array(v));
        }
        Format::Table => {
            // By key, the key's name is shown beside its id.
            let label = |r: &store::UsageRow| match &r.name {
                Some(name) => format!("{name} (#{})", r.group),
                None => r.group.clone(),
            };
            println!(
                "{:<32} {:>10} {:>14} {:>14} {:>12}",
                "group", "requests", "input_tokens", "output_tokens", "cost"
            );
            for r in &rows {
                println!(
                    "{:<32} {:>10} {:>14} {:>14} {:>12.4}",
                    label(r),
                    r.requests,
                    r.input_tokens,
                    r.output_tokens,
                    r.cost
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
            // Names, not ids: the keys and teams as they are named now.
            let keys: std::collections::HashMap<i64, String> = store
                .list_keys()
                .await
                .map_err(|e| CliError::msg(format!("reading keys: {e}")))?
                .into_iter()
                .map(|k| (k.id, k.name))
                .collect();
            let teams: std::collections::HashMap<i64, String> = store
                .list_teams()
                .await
                .map_err(|e| CliError::msg(format!("reading teams: {e}")))?
                .into_iter()
                .map(|t| (t.id, t.name))
                .collect();
            let name = |names: &std::collections::HashMap<i64, String>, id: Option<i64>| match id {
                None => "-".to_owned(),
                Some(id) => names.get(&id).cloned().unwrap_or_else(|| format!("#{id}")),
            };
            println!(
                "{:<36} {:<24} {:<16} {:<16} {:<20} {:>6} {:>8} {:>8} {:>10} error",
                "request_id",
                "client_request_id",
                "key",
                "team",
                "model",
                "status",
                "input",
                "output",
                "cost"
            );
            for r in &recs {
                println!(
                    "{:<36} {:<24} {:<16} {:<16} {:<20} {:>6} {:>8} {:>8} {:>10.6} {}",
                    r.request_id,
                    r.client_request_id.as_deref().unwrap_or("-"),
                    name(&keys, r.key_id),
                    name(&teams, r.team_id),
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
