//! Redis for the tests, in two kinds: the machine's shared server at 127.0.0.1:6379 (a fresh key
//! prefix per test, its keys deleted at the end) and a local Redis Cluster of three primaries
//! that the test starts itself ([`LocalCluster`]: `redis-server` processes on free loopback
//! ports, killed when it is dropped). [`on_redis_and_cluster!`] runs one scenario on both.
//! Under `CI=true` a missing server fails the test; elsewhere it is skipped with a loud line.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::time::Instant;

use llmux_core::SecretString;
use llmux_gateway::config::RedisConfig;

/// The Redis every machine runs for tests.
pub const REDIS_URL: &str = "redis://127.0.0.1:6379/0";

/// Slots of a Redis Cluster.
pub const SLOTS: u16 = 16384;

/// Which Redis a scenario runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisKind {
    /// The shared server at 127.0.0.1:6379.
    Single,
    /// A local cluster of three primaries, started for the test.
    Cluster,
}

/// A test's Redis: the URL a gateway is given, a key prefix of its own, and direct access for
/// assertions.
pub struct TestRedis {
    pub kind: RedisKind,
    /// `server.redis` for the gateway.
    pub url: String,
    pub prefix: String,
    /// The local cluster, when the kind is [`RedisKind::Cluster`].
    pub cluster: Option<LocalCluster>,
}

fn in_ci() -> bool {
    matches!(std::env::var("CI").as_deref(), Ok("true" | "1"))
}

fn skip(what: &str) {
    // Straight to stderr: the test harness captures `eprintln!`, and this line must be seen.
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!("\n!!!!!!!! SKIPPING a Redis test: {what} !!!!!!!!\n").as_bytes(),
    );
}

fn fresh_prefix() -> String {
    format!(
        "llmux-test:{}:{:016x}:",
        std::process::id(),
        fastrand::u64(..)
    )
}

/// A loopback port nothing listens on at the moment (bound, then released).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

impl RedisKind {
    /// The Redis of this kind for one test, or `None` (skipped, with a loud line) when it is not
    /// available outside CI.
    pub async fn start(self) -> Option<TestRedis> {
        match self {
            RedisKind::Single => redis_prefix().await,
            RedisKind::Cluster => {
                let cluster = tokio::task::spawn_blocking(|| LocalCluster::start(None))
                    .await
                    .unwrap()?;
                Some(TestRedis::on(cluster))
            }
        }
    }

    /// A `server.redis` of this kind where nothing listens.
    pub fn closed_url(self) -> String {
        match self {
            RedisKind::Single => format!("redis://127.0.0.1:{}/0", free_port()),
            RedisKind::Cluster => format!(
                "redis+cluster://127.0.0.1:{},127.0.0.1:{},127.0.0.1:{}",
                free_port(),
                free_port(),
                free_port()
            ),
        }
    }
}

impl TestRedis {
    /// `cluster`, with a fresh prefix.
    pub fn on(cluster: LocalCluster) -> TestRedis {
        TestRedis {
            kind: RedisKind::Cluster,
            url: cluster.url(),
            prefix: fresh_prefix(),
            cluster: Some(cluster),
        }
    }

    /// The gateway's Redis settings for this Redis and prefix.
    pub fn config(&self, reservation_ttl: Duration) -> RedisConfig {
        RedisConfig {
            url: SecretString::new(&self.url),
            prefix: self.prefix.clone(),
            ca_pem: None,
            reservation_ttl,
        }
    }

    /// A blocking connection that sends each command where its key lives (through the cluster
    /// client on a cluster).
    pub fn conn(&self) -> Box<dyn redis::ConnectionLike> {
        match &self.cluster {
            Some(c) => Box::new(c.conn()),
            None => Box::new(
                redis::Client::open(REDIS_URL)
                    .unwrap()
                    .get_connection()
                    .unwrap(),
            ),
        }
    }

    /// Every key under the prefix, on whichever node holds it, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = match &self.cluster {
            Some(c) => (0..c.len())
                .flat_map(|i| c.keys_on(i, &format!("{}*", self.prefix)))
                .collect(),
            None => {
                let mut conn = self.conn();
                redis::cmd("KEYS")
                    .arg(format!("{}*", self.prefix))
                    .query(&mut *conn)
                    .unwrap()
            }
        };
        keys.sort();
        keys
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        // A cluster goes with its processes; on the shared server the prefix's keys are deleted.
        if self.kind != RedisKind::Single {
            return;
        }
        let Ok(client) = redis::Client::open(REDIS_URL) else {
            return;
        };
        let Ok(mut conn) = client.get_connection() else {
            return;
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.prefix))
            .query(&mut conn)
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: Result<u64, _> = redis::cmd("DEL").arg(&keys).query(&mut conn);
        }
    }
}

/// A fresh prefix in the test Redis at 127.0.0.1:6379, or `None` (with a loud line) when it is
/// unreachable on a developer machine. Under `CI=true` an unreachable Redis fails the test.
pub async fn redis_prefix() -> Option<TestRedis> {
    let reached = async {
        let client = redis::Client::open(REDIS_URL).map_err(|e| e.to_string())?;
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| e.to_string())?;
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map_err(|e| e.to_string())
    };
    let outcome = match tokio::time::timeout(Duration::from_secs(5), reached).await {
        Ok(r) => r,
        Err(_) => Err("no answer within 5 s".to_owned()),
    };
    if let Err(e) = outcome {
        assert!(
            !in_ci(),
            "Redis at 127.0.0.1:6379 is required under CI=true: {e}"
        );
        skip(&format!(
            "127.0.0.1:6379 unreachable ({e}). Start it with \
             `redis-server --daemonize yes --port 6379 --save \"\"`"
        ));
        return None;
    }
    Some(TestRedis {
        kind: RedisKind::Single,
        url: REDIS_URL.to_owned(),
        prefix: fresh_prefix(),
        cluster: None,
    })
}

/// A `redis://` URL on a loopback port nothing listens on.
pub fn closed_redis_url() -> String {
    RedisKind::Single.closed_url()
}

/// TLS for a [`LocalCluster`]: the files its nodes serve and trust, and the CA (PEM) clients
/// trust.
#[derive(Clone)]
pub struct ClusterTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub ca_file: PathBuf,
    pub ca_pem: Vec<u8>,
}

/// One `redis-server` of a [`LocalCluster`].
struct Node {
    port: u16,
    bus_port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

/// A Redis Cluster of three primaries (no replicas) on loopback: each node a `redis-server`
/// with `--cluster-enabled yes` on a free port, its cluster bus on another free port, no
/// persistence, in a temporary directory; slots split in three ranges. Killed on drop.
pub struct LocalCluster {
    nodes: Vec<Node>,
    tls: Option<ClusterTls>,
    /// More `redis-server` options for every node.
    options: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// How long a cluster may take to start (or restart) and agree on its slots.
const CLUSTER_START: Duration = Duration::from_secs(60);
/// How often the start polls the nodes.
const POLL: Duration = Duration::from_millis(50);

impl LocalCluster {
    /// Starts a cluster, or `None` (skip, with a loud line) when `redis-server` is missing
    /// outside CI. Ports taken by someone else between their choice and the bind are retried.
    pub fn start(tls: Option<ClusterTls>) -> Option<LocalCluster> {
        Self::start_with(tls, &[])
    }

    /// [`LocalCluster::start`] with more `redis-server` options for every node
    /// (`["--cluster-require-full-coverage", "no"]`).
    pub fn start_with(tls: Option<ClusterTls>, options: &[&str]) -> Option<LocalCluster> {
        let options: Vec<String> = options.iter().map(|o| (*o).to_owned()).collect();
        let mut last = String::new();
        for _ in 0..3 {
            match Self::try_start(tls.clone(), options.clone()) {
                Ok(c) => return Some(c),
                Err(StartError::NoServer(e)) => {
                    assert!(!in_ci(), "CI needs redis-server for the cluster tests: {e}");
                    skip(&format!("no redis-server for a local cluster ({e})"));
                    return None;
                }
                Err(StartError::Failed(e)) => last = e,
            }
        }
        panic!("the local Redis Cluster did not start: {last}");
    }

    fn try_start(
        tls: Option<ClusterTls>,
        options: Vec<String>,
    ) -> Result<LocalCluster, StartError> {
        let dir = tempfile::tempdir().unwrap();
        let mut cluster = LocalCluster {
            nodes: (0..3)
                .map(|i| {
                    let d = dir.path().join(format!("node{i}"));
                    std::fs::create_dir(&d).unwrap();
                    Node {
                        port: free_port(),
                        bus_port: free_port(),
                        dir: d,
                        child: None,
                    }
                })
                .collect(),
            tls,
            options,
            _dir: dir,
        };
        for i in 0..cluster.nodes.len() {
            cluster.spawn(i)?;
        }
        cluster.wait_until(|c| (0..c.len()).all(|i| c.ping(i)), "the nodes answer")?;
        // As `redis-cli --cluster create` does: distinct config epochs, a third of the slots
        // each, then every node meets the first.
        let per = SLOTS / 3 + 1;
        for i in 0..cluster.len() {
            let first = per * i as u16;
            let last = (first + per - 1).min(SLOTS - 1);
            let mut conn = cluster.node_conn(i).map_err(StartError::Failed)?;
            let _: () = redis::cmd("CLUSTER")
                .arg("SET-CONFIG-EPOCH")
                .arg(i + 1)
                .query(&mut conn)
                .map_err(|e| StartError::Failed(e.to_string()))?;
            let _: () = redis::cmd("CLUSTER")
                .arg("ADDSLOTSRANGE")
                .arg(first)
                .arg(last)
                .query(&mut conn)
                .map_err(|e| StartError::Failed(e.to_string()))?;
        }
        let mut first = cluster.node_conn(0).map_err(StartError::Failed)?;
        for n in &cluster.nodes[1..] {
            let _: () = redis::cmd("CLUSTER")
                .arg("MEET")
                .arg("127.0.0.1")
                .arg(n.port)
                .arg(n.bus_port)
                .query(&mut first)
                .map_err(|e| StartError::Failed(e.to_string()))?;
        }
        cluster.wait_ok()?;
        Ok(cluster)
    }

    fn spawn(&mut self, i: usize) -> Result<(), StartError> {
        let node = &self.nodes[i];
        let mut cmd = Command::new("redis-server");
        cmd.args(["--bind", "127.0.0.1", "--cluster-enabled", "yes"])
            .arg("--cluster-port")
            .arg(node.bus_port.to_string())
            .args(["--cluster-config-file", "nodes.conf"])
            .args(["--cluster-node-timeout", "5000"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--logfile", "redis.log", "--protected-mode", "no"])
            .arg("--dir")
            .arg(&node.dir);
        match &self.tls {
            None => {
                cmd.arg("--port").arg(node.port.to_string());
            }
            Some(t) => {
                cmd.args([
                    "--port",
                    "0",
                    "--tls-cluster",
                    "yes",
                    "--tls-auth-clients",
                    "no",
                ])
                .arg("--tls-port")
                .arg(node.port.to_string())
                .arg("--tls-cert-file")
                .arg(&t.cert_file)
                .arg("--tls-key-file")
                .arg(&t.key_file)
                .arg("--tls-ca-cert-file")
                .arg(&t.ca_file);
            }
        }
        let child = cmd
            .args(&self.options)
            .current_dir(&node.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| StartError::NoServer(e.to_string()))?;
        self.nodes[i].child = Some(child);
        Ok(())
    }

    /// The number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        }
    }

    /// `server.redis` for this cluster: every node, as a gateway would be configured.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("{}+cluster://{}", self.scheme(), hosts.join(","))
    }

    /// A direct connection to node `i`.
    pub fn node_conn(&self, i: usize) -> Result<redis::Connection, String> {
        let url = format!("{}://127.0.0.1:{}/0", self.scheme(), self.nodes[i].port);
        let client = match &self.tls {
            Some(t) => redis::Client::build_with_tls(
                url,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(t.ca_pem.clone()),
                },
            ),
            None => redis::Client::open(url),
        }
        .map_err(|e| e.to_string())?;
        client
            .get_connection_with_timeout(Duration::from_secs(5))
            .map_err(|e| e.to_string())
    }

    /// A blocking cluster connection (commands go to the owner of their key's slot).
    pub fn conn(&self) -> redis::cluster::ClusterConnection {
        let urls: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("{}://127.0.0.1:{}/0", self.scheme(), n.port))
            .collect();
        let mut builder = redis::cluster::ClusterClient::builder(urls);
        if let Some(t) = &self.tls {
            builder = builder.certs(redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(t.ca_pem.clone()),
            });
        }
        builder.build().unwrap().get_connection().unwrap()
    }

    fn ping(&self, i: usize) -> bool {
        self.node_conn(i)
            .and_then(|mut c| {
                redis::cmd("PING")
                    .query::<String>(&mut c)
                    .map_err(|e| e.to_string())
            })
            .is_ok()
    }

    /// Node `i`'s `CLUSTER INFO` as `field → value`.
    pub fn info(&self, i: usize) -> Result<Vec<(String, String)>, String> {
        let mut c = self.node_conn(i)?;
        let text: String = redis::cmd("CLUSTER")
            .arg("INFO")
            .query(&mut c)
            .map_err(|e| e.to_string())?;
        Ok(text
            .lines()
            .filter_map(|l| l.trim().split_once(':'))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect())
    }

    /// Whether every node says `cluster_state:ok`, knows all nodes and sees every slot assigned.
    pub fn is_ok(&self) -> bool {
        let want = [
            ("cluster_state", "ok".to_owned()),
            ("cluster_known_nodes", self.len().to_string()),
            ("cluster_slots_assigned", SLOTS.to_string()),
            ("cluster_slots_ok", SLOTS.to_string()),
        ];
        (0..self.len()).all(|i| {
            self.info(i).is_ok_and(|info| {
                want.iter()
                    .all(|(k, v)| info.iter().any(|(ik, iv)| ik == k && iv == v))
            })
        })
    }

    fn wait_ok(&mut self) -> Result<(), StartError> {
        self.wait_until(LocalCluster::is_ok, "cluster_state:ok on every node")
    }

    /// Polls `done` until it holds, or fails after [`CLUSTER_START`] (with the nodes' logs), or
    /// at once when a node exited (its port may have been taken).
    fn wait_until(
        &mut self,
        done: impl Fn(&LocalCluster) -> bool,
        what: &str,
    ) -> Result<(), StartError> {
        let deadline = Instant::now() + CLUSTER_START;
        loop {
            if done(self) {
                return Ok(());
            }
            for (i, n) in self.nodes.iter_mut().enumerate() {
                if let Some(status) = n.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                    return Err(StartError::Failed(format!(
                        "node {i} exited ({status}): {}",
                        log_tail(&n.dir)
                    )));
                }
            }
            if Instant::now() > deadline {
                let logs: Vec<String> = self.nodes.iter().map(|n| log_tail(&n.dir)).collect();
                return Err(StartError::Failed(format!(
                    "no {what} within {CLUSTER_START:?}: {logs:#?}"
                )));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Kills node `i` (SIGKILL) and waits for it to exit.
    pub fn stop(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kills every node (SIGKILL) and waits for them to exit.
    pub fn stop_all(&mut self) {
        for i in 0..self.len() {
            self.stop(i);
        }
    }

    /// Starts every node again on its ports and directory (it rejoins from its `nodes.conf`) and
    /// waits until the cluster is ok.
    pub fn restart_all(&mut self) {
        for i in 0..self.len() {
            if self.nodes[i].child.is_none() {
                self.spawn(i).unwrap_or_else(|e| panic!("{e:?}"));
            }
        }
        self.wait_ok().unwrap_or_else(|e| panic!("{e:?}"));
    }

    /// Node `i`'s cluster id.
    pub fn id(&self, i: usize) -> String {
        let mut c = self.node_conn(i).unwrap();
        redis::cmd("CLUSTER").arg("MYID").query(&mut c).unwrap()
    }

    /// The slot of `key`, as the cluster computes it.
    pub fn keyslot(&self, key: &str) -> u16 {
        let mut c = self.node_conn(0).unwrap();
        redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut c)
            .unwrap()
    }

    /// The keys matching `pattern` that node `i` holds.
    pub fn keys_on(&self, i: usize, pattern: &str) -> Vec<String> {
        let mut c = self.node_conn(i).unwrap();
        redis::cmd("KEYS").arg(pattern).query(&mut c).unwrap()
    }

    /// The node that serves `slot`, as node 0 sees it.
    pub fn owner(&self, slot: u16) -> usize {
        self.owner_seen_by(0, slot)
    }

    /// The node that serves `slot`, as node `view` sees it.
    pub fn owner_seen_by(&self, view: usize, slot: u16) -> usize {
        let mut c = self.node_conn(view).unwrap();
        let ranges: Vec<redis::Value> = redis::cmd("CLUSTER").arg("SLOTS").query(&mut c).unwrap();
        for r in ranges {
            let redis::Value::Array(items) = r else {
                continue;
            };
            let num = |v: &redis::Value| -> i64 { redis::from_redis_value_ref(v).unwrap() };
            let (start, end) = (num(&items[0]), num(&items[1]));
            if (start..=end).contains(&i64::from(slot)) {
                let redis::Value::Array(primary) = &items[2] else {
                    panic!("no primary in {items:?}");
                };
                let port = num(&primary[1]);
                return self
                    .nodes
                    .iter()
                    .position(|n| i64::from(n.port) == port)
                    .unwrap();
            }
        }
        panic!("slot {slot} is not served");
    }

    /// Moves `slot` with its keys to node `to`, as `redis-cli --cluster reshard` does
    /// (IMPORTING/MIGRATING, `MIGRATE` in batches, then `SETSLOT … NODE` on every node), and
    /// waits until every node agrees. Clients that cached the old owner get `MOVED`.
    pub fn move_slot(&mut self, slot: u16, to: usize) {
        let from = self.owner(slot);
        assert_ne!(from, to, "slot {slot} is already on node {to}");
        let (from_id, to_id) = (self.id(from), self.id(to));
        let mut src = self.node_conn(from).unwrap();
        let mut dst = self.node_conn(to).unwrap();
        let setslot = |c: &mut redis::Connection, state: &str, id: &str| {
            let _: () = redis::cmd("CLUSTER")
                .arg("SETSLOT")
                .arg(slot)
                .arg(state)
                .arg(id)
                .query(c)
                .unwrap();
        };
        setslot(&mut dst, "IMPORTING", &from_id);
        setslot(&mut src, "MIGRATING", &to_id);
        loop {
            let keys: Vec<String> = redis::cmd("CLUSTER")
                .arg("GETKEYSINSLOT")
                .arg(slot)
                .arg(100)
                .query(&mut src)
                .unwrap();
            if keys.is_empty() {
                break;
            }
            let _: () = redis::cmd("MIGRATE")
                .arg("127.0.0.1")
                .arg(self.nodes[to].port)
                .arg("")
                .arg(0)
                .arg(5000)
                .arg("KEYS")
                .arg(&keys)
                .query(&mut src)
                .unwrap();
        }
        for i in 0..self.len() {
            let mut c = self.node_conn(i).unwrap();
            setslot(&mut c, "NODE", &to_id);
        }
        self.wait_until(
            |c| (0..c.len()).all(|i| c.owner_seen_by(i, slot) == to),
            "the slot moved",
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
    }
}

#[derive(Debug)]
enum StartError {
    /// `redis-server` could not be run at all.
    NoServer(String),
    /// It ran, but the cluster did not come up.
    Failed(String),
}

fn log_tail(dir: &Path) -> String {
    let log = std::fs::read_to_string(dir.join("redis.log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Runs each scenario `async fn case(kind: RedisKind)` on the shared Redis server and on a local
/// three-primary Redis Cluster.
#[macro_export]
macro_rules! on_redis_and_cluster {
    ($($case:ident),* $(,)?) => {
        mod single {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    super::$case($crate::common::RedisKind::Single).await;
                }
            )*
        }
        mod cluster {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    super::$case($crate::common::RedisKind::Cluster).await;
                }
            )*
        }
    };
}
