//! Channels as data: where the routing table comes from, and how it changes at run time.
//!
//! Sources and precedence:
//! - the `[[channels]]` of `llmux.toml` (credentials from the file or `env:VAR`, resolved by
//!   each gateway from its own environment and never written to the database). They are
//!   re-read on SIGHUP ([`ChannelCatalog::reload_file`]);
//! - with a database (`server.database`), the channels created through the admin API: rows of
//!   `gw_channels` whose credentials are sealed with `LLMUX_MASTER_KEY` ([`crypto`]). They are
//!   kept across restarts and reloads until deleted through the API;
//! - a name is either the file's or the API's: the API refuses to create a name the file
//!   defines, and a stored channel whose name the file later takes is shadowed by the file's
//!   (logged). A file channel's definition changes only through the file; the API may only
//!   enable or disable it, which is stored (as a `file` row) and applies on every gateway.
//!
//! Without a database the file is the only source and the API changes nothing.
//!
//! Every change through the admin API bumps a revision in the database. Each gateway polls it
//! every `server.channel_refresh` (one single-row query) and, when it moved, reads the channels
//! (at most [`MAX_CHANNELS`] rows) and swaps its [`RouteTable`]. A channel whose definition is
//! unchanged keeps its clients, connection pools, breakers and key rotation; requests in flight
//! keep the snapshot they started with.

pub mod crypto;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crypto::{CryptoError, MasterKey, MASTER_KEY_ENV};

use crate::config::{
    check_channel, ChannelDef, ChannelSource, ConfigError, RawChannel, RawModels, RawResilience,
};
use crate::routing::RouteTable;
use crate::store::channels::StoredChannel;
use crate::store::{Store, StoreError};

/// The most channels the database may hold (and one reload reads).
pub const MAX_CHANNELS: u32 = 1_000;
/// The longest channel name, in bytes (ASCII letters, digits, `.`, `_`, `-`).
pub const MAX_NAME_BYTES: usize = 64;
/// The most models one channel may list.
pub const MAX_CHANNEL_MODELS: usize = 1_000;
/// The longest model name, in bytes.
pub const MAX_MODEL_BYTES: usize = 256;
/// The most keys one channel may rotate (`api_key` and `api_keys` together).
pub const MAX_KEYS: usize = 32;
/// The longest credential value, in bytes.
pub const MAX_CREDENTIAL_BYTES: usize = 4_096;
/// The longest `base_url` or `region`, in bytes.
pub const MAX_URL_BYTES: usize = 2_048;
/// The largest admin request body about a channel, in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The definition stored in `gw_channels.spec`: everything but credentials.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredSpec {
    provider: String,
    #[serde(default)]
    base_url: Option<String>,
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    models: BTreeMap<String, String>,
    weight: u32,
    priority: i32,
    #[serde(default)]
    passthrough: bool,
    /// The `discover` interval in seconds (absent: on demand only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    discover_secs: Option<u64>,
}

/// The credentials sealed into `gw_channels.secrets`.
#[derive(Clone, Default, Serialize, Deserialize)]
struct Secrets {
    #[serde(default)]
    credentials: BTreeMap<String, String>,
    #[serde(default)]
    api_keys: Vec<String>,
}

/// Why a channel could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum StoreChannelError {
    /// Credentials were given but no master key is configured.
    #[error("LLMUX_MASTER_KEY is not set on this gateway: it refuses to store upstream credentials unencrypted (set a 32-byte key, e.g. `openssl rand -base64 32`)")]
    NoMasterKey,
    /// Sealing failed.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// Encoding failed.
    #[error("could not encode the channel: {0}")]
    Encode(String),
}

/// The channels of one gateway: the file's definitions, the database's, and the reload that
/// turns them into the [`RouteTable`].
pub struct ChannelCatalog {
    store: Option<Arc<dyn Store>>,
    master_key: Option<MasterKey>,
    resilience: RawResilience,
    refresh: Duration,
    file: Mutex<Vec<ChannelDef>>,
    reload: tokio::sync::Mutex<()>,
    /// The revision the table was last built from (`i64::MIN`: never read).
    revision: AtomicI64,
    /// Scheduled model discovery, in step with the table.
    discovery: crate::discovery::Scheduler,
}

impl std::fmt::Debug for ChannelCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelCatalog")
            .field("store", &self.store.is_some())
            .field("master_key", &self.master_key.is_some())
            .field("refresh", &self.refresh)
            .field("revision", &self.revision.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl ChannelCatalog {
    /// A catalog of the file's channels `file`, with the database `store` when there is one.
    pub fn new(
        file: Vec<ChannelDef>,
        store: Option<Arc<dyn Store>>,
        master_key: Option<MasterKey>,
        resilience: RawResilience,
        refresh: Duration,
    ) -> Self {
        ChannelCatalog {
            store,
            master_key,
            resilience,
            refresh,
            file: Mutex::new(file),
            reload: tokio::sync::Mutex::new(()),
            revision: AtomicI64::new(i64::MIN),
            discovery: crate::discovery::Scheduler::default(),
        }
    }

    /// The channel table of the database, when one is configured.
    pub fn store(&self) -> Option<&dyn crate::store::channels::ChannelStore> {
        self.store.as_ref().and_then(|s| s.channel_store())
    }

    /// Whether credentials can be stored (a master key is set).
    pub fn can_seal(&self) -> bool {
        self.master_key.is_some()
    }

    /// True when the file defines a channel named `name`.
    pub fn in_file(&self, name: &str) -> bool {
        self.file_defs().iter().any(|d| &*d.name == name)
    }

    fn file_defs(&self) -> Vec<ChannelDef> {
        self.file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Replaces the file's channels with those of a re-read file (SIGHUP) and rebuilds the
    /// table; `lookup` reads `env:VAR` references. On an invalid file nothing changes.
    /// Returns the number of channels the file defines.
    pub async fn reload_file(
        &self,
        routes: &Arc<RouteTable>,
        raw: Vec<RawChannel>,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<usize, ConfigError> {
        let defs = crate::config::check_file_channels(raw, lookup)?;
        let n = defs.len();
        *self
            .file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = defs;
        if let Err(e) = self.refresh(routes).await {
            // The file's channels still apply, over the stored ones as last read.
            tracing::warn!(error = %e, "reading stored channels failed during a reload");
            self.rebuild(routes, None);
        }
        Ok(n)
    }

    /// Reads the stored channels and rebuilds the table (reusing unchanged channels).
    pub async fn refresh(&self, routes: &Arc<RouteTable>) -> Result<(), StoreError> {
        let _one = self.reload.lock().await;
        let Some(cs) = self.store() else {
            self.rebuild(routes, None);
            return Ok(());
        };
        // The revision first: a change committed after it is read again at the next poll.
        let revision = cs.channel_revision().await?;
        let rows = cs.list_channels(MAX_CHANNELS).await?;
        self.rebuild(routes, Some(&rows));
        self.revision.store(revision, Ordering::Relaxed);
        Ok(())
    }

    /// Rebuilds from the file and `rows` (`None`: keep the stored channels of the current
    /// table as they are).
    fn rebuild(&self, routes: &Arc<RouteTable>, rows: Option<&[StoredChannel]>) {
        let old = routes.current();
        let mut defs = self.file_defs();
        let file_names: HashSet<Arc<str>> = defs.iter().map(|d| d.name.clone()).collect();
        let mut kept_stored: Vec<Arc<crate::config::Channel>> = Vec::new();
        match rows {
            Some(rows) => {
                for row in rows {
                    if file_names.contains(row.name.as_str()) {
                        if row.source == ChannelSource::Api.as_str() {
                            tracing::warn!(channel = %row.name, "a stored channel has the name of a channel of the file; the file's is used");
                        }
                        if let Some(d) = defs.iter_mut().find(|d| *d.name == *row.name) {
                            d.enabled = row.enabled;
                        }
                        continue;
                    }
                    if row.source != ChannelSource::Api.as_str() {
                        // The enabled state of a channel no longer in the file.
                        continue;
                    }
                    match self.decode(row) {
                        Ok(def) => defs.push(def),
                        Err(e) => {
                            tracing::warn!(channel = %row.name, error = %e, "a stored channel cannot be used");
                        }
                    }
                }
            }
            None => {
                kept_stored = old
                    .listed()
                    .iter()
                    .filter(|c| c.source == ChannelSource::Api && !file_names.contains(&*c.name))
                    .cloned()
                    .collect();
            }
        }
        let mut listed: Vec<Arc<crate::config::Channel>> = Vec::with_capacity(defs.len());
        for def in defs {
            let reused = old.find(&def.name).filter(|c| c.built_from(&def));
            let ch = match reused {
                Some(c) if c.enabled == def.enabled && c.source == def.source => c.clone(),
                Some(c) => Arc::new(c.with_state(def.enabled, def.source)),
                None => match def.build(&self.resilience) {
                    Ok(c) => Arc::new(c),
                    Err(e) => {
                        tracing::warn!(channel = %def.name, error = %e, "a channel cannot be built");
                        continue;
                    }
                },
            };
            listed.push(ch);
        }
        listed.extend(kept_stored);
        routes.rebuild_from(listed);
        self.discovery.sync(routes);
    }

    /// The channels whose models are discovered on a schedule right now, sorted.
    pub fn scheduled_discovery(&self) -> Vec<String> {
        self.discovery.scheduled()
    }

    /// Stops every scheduled discovery (shutdown).
    pub fn stop_discovery(&self) {
        self.discovery.stop();
    }

    /// Polls the revision every `server.channel_refresh` and refreshes when it moved. Runs
    /// until dropped.
    pub async fn poll(&self, routes: &Arc<RouteTable>) {
        let Some(cs) = self.store() else {
            return;
        };
        let mut tick = tokio::time::interval(self.refresh);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tick.tick().await;
            let bound = self.refresh.max(Duration::from_secs(5));
            let rev = match tokio::time::timeout(bound, cs.channel_revision()).await {
                Ok(Ok(rev)) => rev,
                Ok(Err(e)) => {
                    if !failing {
                        tracing::warn!(error = %e, "cannot read the channel revision; the routing table stays as it is");
                    }
                    failing = true;
                    continue;
                }
                Err(_) => {
                    if !failing {
                        tracing::warn!("reading the channel revision timed out; the routing table stays as it is");
                    }
                    failing = true;
                    continue;
                }
            };
            failing = false;
            if rev == self.revision.load(Ordering::Relaxed) {
                continue;
            }
            match tokio::time::timeout(bound, self.refresh(routes)).await {
                Ok(Ok(())) => tracing::info!(revision = rev, "channels reloaded from the database"),
                Ok(Err(e)) => tracing::warn!(error = %e, "reloading channels failed"),
                Err(_) => tracing::warn!("reloading channels timed out"),
            }
        }
    }

    /// A stored API channel's definition (credentials opened with the master key).
    fn decode(&self, row: &StoredChannel) -> Result<ChannelDef, String> {
        let raw = self.stored_raw(row)?;
        let mut issues = Vec::new();
        check_channel("", raw, ChannelSource::Api, &|_| None, &mut issues).ok_or_else(|| {
            issues
                .iter()
                .map(|i| format!("{}: {}", i.path, i.message))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    /// A stored API channel as the channel table it was created from.
    pub fn stored_raw(&self, row: &StoredChannel) -> Result<RawChannel, String> {
        let spec: StoredSpec = serde_json::from_str(row.spec.as_deref().unwrap_or(""))
            .map_err(|e| format!("its stored definition is unreadable: {e}"))?;
        let secrets = match &row.secrets {
            None => Secrets::default(),
            Some(sealed) => {
                let key = self.master_key.as_ref().ok_or(
                    "its credentials are sealed, and LLMUX_MASTER_KEY is not set on this gateway",
                )?;
                let plain = key.open(&row.name, sealed).map_err(|e| e.to_string())?;
                serde_json::from_slice(&plain)
                    .map_err(|_| "its sealed credentials are unreadable".to_owned())?
            }
        };
        Ok(RawChannel {
            name: row.name.clone(),
            provider: spec.provider,
            base_url: spec.base_url,
            region: spec.region,
            models: RawModels::Table(spec.models),
            weight: spec.weight,
            priority: spec.priority,
            passthrough: spec.passthrough,
            credentials: secrets.credentials,
            api_keys: secrets.api_keys,
            enabled: row.enabled,
            discover: spec.discover_secs.map(Duration::from_secs),
            builtin_models: false,
        })
    }

    /// The row storing `raw` (a checked API channel): its definition, and its credentials
    /// sealed with the master key (refused without one).
    pub fn encode(&self, raw: &RawChannel) -> Result<StoredChannel, StoreChannelError> {
        let spec = StoredSpec {
            provider: raw.provider.clone(),
            base_url: raw.base_url.clone(),
            region: raw.region.clone(),
            models: match &raw.models {
                RawModels::List(v) => v.iter().map(|m| (m.clone(), m.clone())).collect(),
                RawModels::Table(t) => t.clone(),
            },
            weight: raw.weight,
            priority: raw.priority,
            passthrough: raw.passthrough,
            discover_secs: raw.discover.map(|d| d.as_secs()),
        };
        let spec =
            serde_json::to_string(&spec).map_err(|e| StoreChannelError::Encode(e.to_string()))?;
        let secrets = if raw.credentials.is_empty() && raw.api_keys.is_empty() {
            None
        } else {
            let key = self
                .master_key
                .as_ref()
                .ok_or(StoreChannelError::NoMasterKey)?;
            let plain = serde_json::to_vec(&Secrets {
                credentials: raw.credentials.clone(),
                api_keys: raw.api_keys.clone(),
            })
            .map_err(|e| StoreChannelError::Encode(e.to_string()))?;
            Some(key.seal(&raw.name, &plain)?)
        };
        Ok(StoredChannel {
            name: raw.name.clone(),
            source: ChannelSource::Api.as_str().to_owned(),
            enabled: raw.enabled,
            spec: Some(spec),
            secrets,
            version: 1,
            created_at: 0,
            updated_at: 0,
        })
    }
}
