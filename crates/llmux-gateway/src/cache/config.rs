//! `[cache]` in `llmux.toml`: the raw table ([`RawCache`]) and its checked form
//! ([`CacheConfig`]).

use std::time::Duration;

use llmux_core::resilience::retry::humantime_serde;
use serde::Deserialize;

use crate::config::ConfigIssue;

/// The default `cache.ttl`.
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);
/// The default `cache.max_ttl`.
pub const DEFAULT_MAX_TTL: Duration = Duration::from_secs(24 * 3600);
/// The longest TTL anything may ask for (`cache.ttl`, `cache.max_ttl`, a key's `cache_ttl`).
pub const TTL_CEILING: Duration = Duration::from_secs(30 * 24 * 3600);
/// The default `cache.max_bytes`: 256 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 256 * 1024 * 1024;
/// The default `cache.max_entry_bytes`: 1 MiB.
pub const DEFAULT_MAX_ENTRY_BYTES: u64 = 1024 * 1024;
/// The largest `cache.max_entry_bytes`: 64 MiB (an entry is read whole into memory).
pub const MAX_ENTRY_CEILING: u64 = 64 * 1024 * 1024;

/// `cache.backend`: where entries live.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// In this process, bounded by `max_bytes` (least recently and least frequently used
    /// entries evicted first).
    #[default]
    Memory,
    /// In the Redis of `server.redis`, shared by every gateway using it with the same
    /// `server.redis_prefix`.
    Redis,
}

/// `cache.scope`: whose requests share entries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Every caller: the same request gets the same answer whoever sends it.
    #[default]
    Global,
    /// The keys of one team (a key outside any team, and a static key, are their own scope).
    Team,
    /// Each key alone.
    Key,
}

/// `cache.mode`: which keys use the cache when they do not say.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Every key, except those with `cache = false`.
    #[default]
    DefaultOn,
    /// Only keys with `cache = true`.
    DefaultOff,
}

/// `[cache]`, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCache {
    /// Off when false (the table may stay in the file).
    pub enabled: bool,
    /// `memory` (default) or `redis`.
    pub backend: Backend,
    /// How long an answer is kept (a key's own `cache_ttl` replaces it).
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// The longest TTL a key may set.
    #[serde(with = "humantime_serde")]
    pub max_ttl: Duration,
    /// Bytes the in-process backend holds at most (entries as serialized).
    pub max_bytes: u64,
    /// The largest answer stored; larger ones are served but not kept.
    pub max_entry_bytes: u64,
    /// `global` (default), `team` or `key`.
    pub scope: Scope,
    /// `default_on` (default) or `default_off`.
    pub mode: Mode,
}

impl Default for RawCache {
    fn default() -> Self {
        RawCache {
            enabled: true,
            backend: Backend::Memory,
            ttl: DEFAULT_TTL,
            max_ttl: DEFAULT_MAX_TTL,
            max_bytes: DEFAULT_MAX_BYTES,
            max_entry_bytes: DEFAULT_MAX_ENTRY_BYTES,
            scope: Scope::Global,
            mode: Mode::DefaultOn,
        }
    }
}

/// `[cache]`, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheConfig {
    /// Where entries live.
    pub backend: Backend,
    /// Default TTL.
    pub ttl: Duration,
    /// Longest TTL a key may set (a longer one is cut to it).
    pub max_ttl: Duration,
    /// In-process bound in bytes.
    pub max_bytes: u64,
    /// Largest entry in bytes.
    pub max_entry_bytes: u64,
    /// Who shares entries.
    pub scope: Scope,
    /// Which keys use the cache by default.
    pub mode: Mode,
}

impl RawCache {
    /// The checked table, `None` when it is disabled; every problem becomes an issue with its
    /// path. `redis` says whether `server.redis` is set (the `redis` backend needs it).
    pub fn resolve(self, redis: bool, issues: &mut Vec<ConfigIssue>) -> Option<CacheConfig> {
        let mut issue = |path: &str, message: String| {
            issues.push(ConfigIssue {
                path: format!("cache.{path}"),
                message,
            });
        };
        let ttl_range = Duration::from_secs(1)..=TTL_CEILING;
        if !ttl_range.contains(&self.ttl) {
            issue("ttl", format!("{:?} is outside 1s..=720h", self.ttl));
        }
        if !ttl_range.contains(&self.max_ttl) {
            issue(
                "max_ttl",
                format!("{:?} is outside 1s..=720h", self.max_ttl),
            );
        } else if self.ttl > self.max_ttl {
            issue(
                "ttl",
                format!(
                    "{:?} is longer than cache.max_ttl ({:?})",
                    self.ttl, self.max_ttl
                ),
            );
        }
        if !(1024..=MAX_ENTRY_CEILING).contains(&self.max_entry_bytes) {
            issue(
                "max_entry_bytes",
                format!(
                    "{} is outside 1024..={MAX_ENTRY_CEILING}",
                    self.max_entry_bytes
                ),
            );
        }
        if self.max_bytes < self.max_entry_bytes {
            issue(
                "max_bytes",
                format!(
                    "{} is smaller than cache.max_entry_bytes ({})",
                    self.max_bytes, self.max_entry_bytes
                ),
            );
        }
        if self.backend == Backend::Redis && !redis {
            issue(
                "backend",
                "\"redis\" needs server.redis (the cache uses that server and server.redis_prefix)"
                    .to_owned(),
            );
        }
        self.enabled.then_some(CacheConfig {
            backend: self.backend,
            ttl: self.ttl,
            max_ttl: self.max_ttl,
            max_bytes: self.max_bytes,
            max_entry_bytes: self.max_entry_bytes,
            scope: self.scope,
            mode: self.mode,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(text: &str, redis: bool) -> (Option<CacheConfig>, Vec<ConfigIssue>) {
        let raw: RawCache = toml::from_str(text).unwrap();
        let mut issues = Vec::new();
        (raw.resolve(redis, &mut issues), issues)
    }

    #[test]
    fn defaults_are_a_bounded_memory_cache_for_everyone() {
        let (c, issues) = resolve("", false);
        assert!(issues.is_empty(), "{issues:?}");
        let c = c.unwrap();
        assert_eq!(c.backend, Backend::Memory);
        assert_eq!(c.ttl, DEFAULT_TTL);
        assert_eq!(c.scope, Scope::Global);
        assert_eq!(c.mode, Mode::DefaultOn);
        assert!(c.max_entry_bytes <= c.max_bytes);
    }

    #[test]
    fn bounds_are_checked_with_their_paths() {
        let (_, issues) = resolve(
            "ttl = \"0s\"\nmax_entry_bytes = 10\nmax_bytes = 5\nbackend = \"redis\"",
            false,
        );
        let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "cache.ttl",
                "cache.max_entry_bytes",
                "cache.max_bytes",
                "cache.backend"
            ]
        );
        let (_, issues) = resolve("ttl = \"2h\"\nmax_ttl = \"1h\"", false);
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].path, "cache.ttl");
        let (_, issues) = resolve("max_ttl = \"721h\"", false);
        assert_eq!(issues[0].path, "cache.max_ttl");
    }

    #[test]
    fn a_disabled_table_is_no_cache_and_unknown_fields_are_refused() {
        let (c, issues) = resolve("enabled = false", false);
        assert!(c.is_none() && issues.is_empty());
        assert!(toml::from_str::<RawCache>("size = 3").is_err());
    }
}
