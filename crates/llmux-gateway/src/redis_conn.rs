//! The one connection to Redis that gateway features share (the limits; anything else kept in
//! `server.redis`): a single server, or a Redis Cluster.
//!
//! `server.redis` names either one server (`redis://`, `rediss://`, `unix://`) or a cluster by
//! some of its nodes, `redis+cluster://[user:password@]host:port[,host:port…]` (TLS:
//! `rediss+cluster://`). [`RedisConn::lazy`] builds the matching connection without IO, so a
//! gateway starts while Redis is down:
//! - one server: redis's `ConnectionManager` (one multiplexed connection, reconnected after a
//!   failure by the next call, never retried within one);
//! - a cluster: redis's async cluster connection. It learns the slot map from the given nodes,
//!   sends each command to the primary that owns the slot of its first key, follows `MOVED`
//!   (the slot map is reloaded) and `ASK` redirects, and reconnects to nodes it lost. A command
//!   is attempted at most [`CLUSTER_ATTEMPTS`] times, with waits of a few milliseconds, and the
//!   whole call is bounded by the caller's timeout.
//!
//! A command and a script see their keys on one node only when the keys share a hash slot:
//! callers name keys with one hash tag (`prefix{tag}:…`) per unit of atomicity. Scripts are
//! [`LuaScript`]s, which load themselves on the one node that needs them.
//!
//! Nothing here shows the URL (it may hold a password): errors are the client's fixed sentences,
//! scrubbed of the URL anyway, and `Debug` names only the kind of connection.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, TlsCertificates, Value};

use crate::config::RedisConfig;

/// How many times the cluster connection tries one command: the first attempt and what a
/// redirect (`MOVED`, `ASK`), a `TRYAGAIN` during a slot migration or a lost node needs.
pub const CLUSTER_ATTEMPTS: u32 = 4;
/// The shortest and longest wait (ms) before a cluster command's next attempt (none before a
/// redirect is followed): short, since the caller's whole call is bounded.
const CLUSTER_RETRY_WAIT_MS: (u64, u64) = (5, 100);

/// Why a connection could not be set up (the URL itself is never shown).
#[derive(Debug, thiserror::Error)]
pub enum RedisSetupError {
    /// The URL is not one the client accepts.
    #[error("server.redis is not a usable Redis URL ({0})")]
    Url(String),
    /// Built outside a tokio runtime.
    #[error("the Redis connection must be created inside a tokio runtime")]
    NoRuntime,
}

/// What `server.redis` points at.
#[derive(Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// One server: the URL as given.
    Single(String),
    /// A Redis Cluster: one `redis://` or `rediss://` URL per node given, each with the
    /// credentials and options of the cluster URL.
    Cluster(Vec<String>),
}

impl std::fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URLs may hold a password.
        match self {
            RedisTarget::Single(_) => f.write_str("RedisTarget::Single"),
            RedisTarget::Cluster(nodes) => write!(f, "RedisTarget::Cluster({} nodes)", nodes.len()),
        }
    }
}

/// The schemes of a cluster URL, without and with TLS.
const CLUSTER_SCHEMES: [(&str, &str); 2] =
    [("redis+cluster", "redis"), ("rediss+cluster", "rediss")];
/// At most this many nodes in a cluster URL (more adds nothing: the slot map names the rest).
pub const MAX_SEED_NODES: usize = 64;

impl RedisTarget {
    /// Reads `url`: a cluster URL is split into one URL per node; anything else is one
    /// server's URL, checked by the client later. The error is a sentence without the URL.
    pub fn parse(url: &str) -> Result<RedisTarget, String> {
        let Some((scheme, rest)) = url.split_once("://") else {
            return Ok(RedisTarget::Single(url.to_owned()));
        };
        let scheme = scheme.to_ascii_lowercase();
        let Some((_, node_scheme)) = CLUSTER_SCHEMES.iter().find(|(s, _)| *s == scheme) else {
            return Ok(RedisTarget::Single(url.to_owned()));
        };
        // The authority ends at the path, the query or the fragment.
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        let (userinfo, hosts) = match authority.rfind('@') {
            Some(at) => (&authority[..=at], &authority[at + 1..]),
            None => ("", authority),
        };
        // Only database 0 exists in a cluster.
        let path_end = tail.find(['?', '#']).unwrap_or(tail.len());
        let (path, options) = tail.split_at(path_end);
        if !matches!(path, "" | "/" | "/0") {
            return Err(
                "a Redis Cluster has only database 0: leave the path out or write /0".into(),
            );
        }
        let nodes: Vec<&str> = hosts.split(',').map(str::trim).collect();
        if nodes.iter().any(|h| h.is_empty()) {
            return Err(
                "a cluster URL lists host:port pairs separated by commas, none empty".into(),
            );
        }
        if nodes.len() > MAX_SEED_NODES {
            return Err(format!(
                "a cluster URL names at most {MAX_SEED_NODES} nodes"
            ));
        }
        let urls: Vec<String> = nodes
            .iter()
            .map(|host| format!("{node_scheme}://{userinfo}{host}/0{options}"))
            .collect();
        for u in &urls {
            if let Err(e) = redis::Client::open(u.as_str()) {
                return Err(format!(
                    "a node of the cluster URL is not usable ({})",
                    scrub(&e, u)
                ));
            }
        }
        Ok(RedisTarget::Cluster(urls))
    }

    /// Whether connections use TLS.
    pub fn is_tls(&self) -> bool {
        let scheme = |u: &str| u.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        match self {
            RedisTarget::Single(u) => matches!(scheme(u).as_deref(), Some("rediss" | "valkeys")),
            RedisTarget::Cluster(nodes) => nodes
                .first()
                .is_some_and(|u| scheme(u).as_deref() == Some("rediss")),
        }
    }
}

/// A client error's text without `url` (the client's reasons are fixed sentences; this makes
/// sure).
fn scrub(e: &redis::RedisError, url: &str) -> String {
    crate::redact::scrub(&e.to_string(), &[url])
}

/// A connection to one Redis server or to a Redis Cluster; cheap to clone (clones share the
/// connection). Commands go through [`redis::aio::ConnectionLike`], as with any redis
/// connection: `cmd.query_async(&mut conn)`, `script.invoke_async(&mut conn)`.
#[derive(Clone)]
pub enum RedisConn {
    /// One server (a primary, possibly behind a failover proxy).
    Single(ConnectionManager),
    /// A Redis Cluster.
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The connection (and with it the URL) is left out on purpose.
        f.write_str(match self {
            RedisConn::Single(_) => "RedisConn::Single",
            RedisConn::Cluster(_) => "RedisConn::Cluster",
        })
    }
}

impl RedisConn {
    /// A connection for `config` that connects on its first command: no IO here. Each attempt
    /// to connect and each answer waits at most `timeout`; a failed command is not retried on
    /// one server (the next command reconnects), and in a cluster only as [`CLUSTER_ATTEMPTS`]
    /// says, within `timeout` in all.
    pub fn lazy(config: &RedisConfig, timeout: Duration) -> Result<RedisConn, RedisSetupError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(RedisSetupError::NoRuntime);
        }
        let url = config.url.expose();
        let target = RedisTarget::parse(url).map_err(RedisSetupError::Url)?;
        // A private CA for TLS: trusted instead of the system's.
        let certs = config.ca_pem.as_ref().map(|pem| TlsCertificates {
            client_tls: None,
            root_cert: Some(pem.clone()),
        });
        match target {
            RedisTarget::Single(url) => {
                let client = match certs {
                    Some(certs) => redis::Client::build_with_tls(url.as_str(), certs),
                    None => redis::Client::open(url.as_str()),
                }
                .map_err(|e| RedisSetupError::Url(scrub(&e, &url)))?;
                let manager_config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout))
                    // Fail fast and let the next call reconnect: a request never waits for
                    // backoff.
                    .set_number_of_retries(0);
                ConnectionManager::new_lazy_with_config(client, manager_config)
                    .map(RedisConn::Single)
                    .map_err(|e| RedisSetupError::Url(scrub(&e, &url)))
            }
            RedisTarget::Cluster(nodes) => {
                let (min_wait, max_wait) = CLUSTER_RETRY_WAIT_MS;
                let mut builder = ClusterClientBuilder::new(nodes.iter().map(String::as_str))
                    .retries(CLUSTER_ATTEMPTS - 1)
                    .min_retry_wait(min_wait)
                    .max_retry_wait(max_wait)
                    .retry_wait_formula(min_wait, 2)
                    .overall_response_timeout(Some(timeout));
                if let Some(certs) = certs {
                    builder = builder.certs(certs);
                }
                let client = builder
                    .build()
                    .map_err(|e| RedisSetupError::Url(scrub(&e, url)))?;
                let cluster_config = ClusterConfig::new()
                    .set_connection_timeout(timeout)
                    .set_response_timeout(timeout);
                Ok(RedisConn::Cluster(
                    client.get_pending_async_connection_with_config(cluster_config),
                ))
            }
        }
    }

    /// Whether this is a Redis Cluster connection.
    pub fn is_cluster(&self) -> bool {
        matches!(self, RedisConn::Cluster(_))
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConn::Single(c) => c.req_packed_command(cmd),
            RedisConn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            RedisConn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConn::Single(c) => c.get_db(),
            RedisConn::Cluster(c) => c.get_db(),
        }
    }
}

/// A Lua script, run by its SHA1 (`EVALSHA`) and sent whole (`EVAL`) only where the node that
/// serves its keys does not have it cached (`NOSCRIPT`: a new or restarted node, a promoted
/// replica). Unlike `SCRIPT LOAD`, which a cluster client sends to every primary and which fails
/// while any of them is down, `EVAL` goes to the keys' own node, so a script keeps working on the
/// primaries that are up.
#[derive(Debug)]
pub struct LuaScript {
    source: &'static str,
    hash: String,
}

impl LuaScript {
    /// The script `source` (its SHA1 computed here).
    pub fn new(source: &'static str) -> LuaScript {
        LuaScript {
            source,
            hash: redis::Script::new(source).get_hash().to_owned(),
        }
    }

    /// A call to fill with keys and arguments.
    pub fn call(&self) -> ScriptCall<'_> {
        ScriptCall {
            script: self,
            keys: Vec::new(),
            args: Vec::new(),
        }
    }
}

/// One call of a [`LuaScript`]: its keys (`KEYS`, which must share a hash slot in a cluster)
/// and arguments (`ARGV`).
pub struct ScriptCall<'a> {
    script: &'a LuaScript,
    keys: Vec<Vec<u8>>,
    args: Vec<Vec<u8>>,
}

impl std::fmt::Debug for ScriptCall<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys and arguments are counted, not shown.
        f.debug_struct("ScriptCall")
            .field("keys", &self.keys.len())
            .field("args", &self.args.len())
            .finish()
    }
}

impl ScriptCall<'_> {
    /// Adds a key.
    pub fn key<T: redis::ToRedisArgs>(&mut self, key: T) -> &mut Self {
        key.write_redis_args(&mut self.keys);
        self
    }

    /// Adds an argument.
    pub fn arg<T: redis::ToRedisArgs>(&mut self, arg: T) -> &mut Self {
        arg.write_redis_args(&mut self.args);
        self
    }

    fn cmd(&self, name: &str, script: &str) -> Cmd {
        let mut cmd = redis::cmd(name);
        cmd.arg(script)
            .arg(self.keys.len())
            .arg(&self.keys)
            .arg(&self.args);
        cmd
    }

    /// Runs the script: `EVALSHA`, then `EVAL` on the same node if it answered `NOSCRIPT`.
    pub async fn invoke<T: redis::FromRedisValue>(
        &self,
        conn: &mut impl ConnectionLike,
    ) -> redis::RedisResult<T> {
        match self
            .cmd("EVALSHA", &self.script.hash)
            .query_async(conn)
            .await
        {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                self.cmd("EVAL", self.script.source).query_async(conn).await
            }
            other => other,
        }
    }
}

/// Checks the shape of `server.redis` without connecting; the message never repeats the URL.
pub fn check_url(url: &str) -> Result<(), String> {
    let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    let expected = "must be redis://[user:password@]host[:port][/db], rediss://… (TLS), unix:///path, or redis+cluster://[user:password@]host:port[,host:port…] (rediss+cluster:// with TLS) for a Redis Cluster";
    let insecure = "`#insecure` (TLS without certificate checks) is not accepted; give the server's CA in server.redis_ca_file";
    match scheme.as_deref() {
        Some("redis" | "valkey" | "unix" | "redis+unix" | "valkey+unix") => {
            match redis::Client::open(url) {
                Ok(_) => Ok(()),
                // The client's reasons for a bad URL are fixed sentences ("Missing hostname -
                // InvalidClientConfig"); they never contain the URL.
                Err(e) => Err(format!(
                    "not a usable Redis URL ({}); expected redis://[user:password@]host[:port][/db] or unix:///path",
                    scrub(&e, url)
                )),
            }
        }
        Some("rediss" | "valkeys") => match redis::Client::open(url) {
            Ok(_) if url.contains("#insecure") => Err(insecure.to_owned()),
            Ok(_) => Ok(()),
            Err(e) => Err(format!(
                "not a usable Redis URL ({}); expected rediss://[user:password@]host[:port][/db]",
                scrub(&e, url)
            )),
        },
        Some("redis+cluster" | "rediss+cluster") => {
            if scheme.as_deref() == Some("rediss+cluster") && url.contains("#insecure") {
                return Err(insecure.to_owned());
            }
            RedisTarget::parse(url).map(|_| ())
        }
        _ => Err(expected.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(url: &str) -> Vec<String> {
        match RedisTarget::parse(url).unwrap() {
            RedisTarget::Cluster(n) => n,
            RedisTarget::Single(_) => panic!("not a cluster: {url}"),
        }
    }

    #[test]
    fn a_cluster_url_becomes_one_url_per_node_with_its_credentials() {
        assert_eq!(
            nodes("redis+cluster://u:p%40ss@10.0.0.1:7000,10.0.0.2:7001,[::1]:7002"),
            [
                "redis://u:p%40ss@10.0.0.1:7000/0",
                "redis://u:p%40ss@10.0.0.2:7001/0",
                "redis://u:p%40ss@[::1]:7002/0",
            ]
        );
        assert_eq!(
            nodes("REDISS+CLUSTER://h1:7000, h2/0?protocol=resp3"),
            [
                "rediss://h1:7000/0?protocol=resp3",
                "rediss://h2/0?protocol=resp3"
            ]
        );
        assert!(RedisTarget::parse("rediss+cluster://h:1").unwrap().is_tls());
        assert!(!RedisTarget::parse("redis+cluster://h:1").unwrap().is_tls());
        assert!(RedisTarget::parse("rediss://h:1/0").unwrap().is_tls());
        assert_eq!(
            RedisTarget::parse("redis://h:1/2").unwrap(),
            RedisTarget::Single("redis://h:1/2".into())
        );
    }

    #[test]
    fn bad_cluster_urls_are_explained_without_the_url() {
        for (url, says) in [
            (
                "redis+cluster://:pw-secret-value@h1:7000/3",
                "only database 0",
            ),
            (
                "redis+cluster://:pw-secret-value@h1:7000,,h2:7001",
                "none empty",
            ),
            ("redis+cluster://:pw-secret-value@", "none empty"),
            ("redis+cluster://:pw-secret-value@h1:notaport", "not usable"),
            (
                "rediss+cluster://:pw-secret-value@h1:7000/#insecure",
                "#insecure",
            ),
        ] {
            let e = check_url(url).unwrap_err();
            assert!(e.contains(says), "{url}: {e}");
            assert!(!e.contains("pw-secret-value"), "{e}");
        }
        let many = format!(
            "redis+cluster://{}",
            vec!["h:1"; MAX_SEED_NODES + 1].join(",")
        );
        assert!(check_url(&many).unwrap_err().contains("at most"));
        assert!(check_url("redis+cluster://h1:7000,h2:7001").is_ok());
        assert!(check_url("rediss+cluster://u:p@h1:7000/0").is_ok());
        assert!(check_url("http://h1")
            .unwrap_err()
            .contains("redis+cluster://"));
    }

    #[test]
    fn debug_never_shows_the_url() {
        let t = RedisTarget::parse("redis+cluster://:pw-secret-value@h1:1,h2:2").unwrap();
        assert_eq!(format!("{t:?}"), "RedisTarget::Cluster(2 nodes)");
        let t = RedisTarget::parse("redis://:pw-secret-value@h1:1").unwrap();
        assert_eq!(format!("{t:?}"), "RedisTarget::Single");
    }

    #[test]
    fn outside_a_runtime_setup_is_an_error() {
        let config = RedisConfig {
            url: llmux_core::SecretString::new("redis+cluster://h1:7000"),
            prefix: "llmux:".into(),
            ca_pem: None,
            reservation_ttl: Duration::from_secs(900),
        };
        assert!(matches!(
            RedisConn::lazy(&config, Duration::from_millis(500)),
            Err(RedisSetupError::NoRuntime)
        ));
    }

    #[tokio::test]
    async fn building_does_no_io_and_picks_the_kind() {
        let mut config = RedisConfig {
            url: llmux_core::SecretString::new("redis+cluster://127.0.0.1:1,127.0.0.1:2"),
            prefix: "llmux:".into(),
            ca_pem: None,
            reservation_ttl: Duration::from_secs(900),
        };
        let conn = RedisConn::lazy(&config, Duration::from_millis(500)).unwrap();
        assert!(conn.is_cluster());
        assert_eq!(format!("{conn:?}"), "RedisConn::Cluster");
        config.url = llmux_core::SecretString::new("redis://127.0.0.1:1/0");
        assert!(!RedisConn::lazy(&config, Duration::from_millis(500))
            .unwrap()
            .is_cluster());
    }
}
