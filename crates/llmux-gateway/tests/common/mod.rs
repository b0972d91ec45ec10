//! Shared harness for the gateway tests: emulators and a gateway in-process on 127.0.0.1:0.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use llmux_emulator::{Emulator, EmulatorConfig, Vendor};
use llmux_gateway::app::AppState;
use llmux_gateway::{Config, Gateway, RawConfig, ServeError, ServeOptions};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const KEY: &str = "sk-gw-test";
pub const ADMIN: &str = "adm-test";

pub struct Harness {
    pub url: String,
    pub state: Arc<AppState>,
    pub http: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    pub task: Option<JoinHandle<Result<(), ServeError>>>,
}

impl Harness {
    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path}", self.url))
            .bearer_auth(KEY)
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .get(format!("{}{path}", self.url))
            .bearer_auth(KEY)
    }

    /// Begins graceful shutdown.
    pub fn shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    pub async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

/// `[server]` with the test keys plus `rest` (channels, resilience).
pub fn config_text(rest: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\napi_keys = [\"{KEY}\"]\nadmin_key = \"{ADMIN}\"\nmax_body_bytes = 65536\nshutdown_grace = \"10s\"\n\n{rest}"
    )
}

pub async fn start(rest: &str) -> Harness {
    let raw = RawConfig::parse(&config_text(rest), Vec::new()).expect("config parses");
    let cfg = Config::resolve(raw, |_| None).expect("config resolves");
    start_config(cfg).await
}

pub async fn start_config(cfg: Config) -> Harness {
    let gw = Gateway::bind(cfg, ServeOptions::default())
        .await
        .expect("binds");
    let url = format!("http://{}", gw.local_addr());
    let state = gw.state().clone();
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(gw.run(async move {
        let _ = rx.await;
    }));
    Harness {
        url,
        state,
        http: reqwest::Client::new(),
        shutdown: Some(tx),
        task: Some(task),
    }
}

pub async fn emulator(vendor: Vendor) -> Emulator {
    Emulator::start(EmulatorConfig::new(vendor))
        .await
        .expect("emulator starts")
}

/// A `[[channels]]` entry for an emulator.
pub fn channel(name: &str, provider: &str, emu: &Emulator, models: &str, extra: &str) -> String {
    let (base, key) = match provider {
        "openai" => (emu.base_url(), Vendor::OpenAi.default_key()),
        "dashscope" => (emu.base_url(), Vendor::DashScope.default_key()),
        "dashscope-compat" => (
            emu.compat_base_url().unwrap(),
            Vendor::DashScope.default_key(),
        ),
        other => panic!("no emulator mapping for {other}"),
    };
    format!(
        "[[channels]]\nname = \"{name}\"\nprovider = \"{provider}\"\nbase_url = \"{base}\"\napi_key = \"{key}\"\nmodels = {models}\n{extra}\n"
    )
}

/// The standard pair: an OpenAI emulator serving `gpt-4o-mini` and embeddings, and a DashScope
/// emulator serving `qwen-plus` and `text-embedding-v3`.
pub async fn standard() -> (Harness, Emulator, Emulator) {
    let oa = emulator(Vendor::OpenAi).await;
    let ds = emulator(Vendor::DashScope).await;
    let text = format!(
        "{}{}",
        channel(
            "oa",
            "openai",
            &oa,
            "[\"gpt-4o-mini\", \"text-embedding-3-small\"]",
            ""
        ),
        channel(
            "ds",
            "dashscope",
            &ds,
            "[\"qwen-plus\", \"text-embedding-v3\"]",
            ""
        ),
    );
    (start(&text).await, oa, ds)
}

/// Splits an SSE body into its events (blank-line separated), dropping empty ones.
pub fn sse_events(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

/// The `data:` payload of an event.
pub fn data_of(event: &str) -> Option<&str> {
    event
        .lines()
        .find_map(|l| l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:")))
}

/// OpenAI stream: the JSON chunks and whether `[DONE]` ended it.
pub fn openai_chunks(body: &str) -> (Vec<serde_json::Value>, bool) {
    let mut out = Vec::new();
    let mut done = false;
    for ev in sse_events(body) {
        let Some(d) = data_of(&ev) else { continue };
        if d == "[DONE]" {
            done = true;
            continue;
        }
        assert!(!done, "data after [DONE]");
        out.push(serde_json::from_str(d).expect("chunk is JSON"));
    }
    (out, done)
}

/// The Redis every machine runs for tests.
pub const REDIS_URL: &str = "redis://127.0.0.1:6379/0";

/// A unique key prefix in the test Redis, whose keys are deleted when it is dropped (also when
/// the test fails), so concurrent tests and reruns never see each other's keys.
pub struct RedisPrefix {
    pub prefix: String,
}

impl RedisPrefix {
    /// Every key under the prefix (for assertions about what was written).
    pub fn keys(&self) -> Vec<String> {
        let client = redis::Client::open(REDIS_URL).unwrap();
        let mut conn = client.get_connection().unwrap();
        let mut keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.prefix))
            .query(&mut conn)
            .unwrap();
        keys.sort();
        keys
    }
}

impl Drop for RedisPrefix {
    fn drop(&mut self) {
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
pub async fn redis_prefix() -> Option<RedisPrefix> {
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
    let outcome = match tokio::time::timeout(std::time::Duration::from_secs(5), reached).await {
        Ok(r) => r,
        Err(_) => Err("no answer within 5 s".to_owned()),
    };
    if let Err(e) = outcome {
        if matches!(std::env::var("CI").as_deref(), Ok("true" | "1")) {
            panic!("Redis at 127.0.0.1:6379 is required under CI=true: {e}");
        }
        // Straight to stderr: the test harness captures `eprintln!`, and this line must be seen.
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            format!(
                "\n!!!!!!!! SKIPPING a Redis limits test: 127.0.0.1:6379 unreachable ({e}). \
                 Start it with `redis-server --daemonize yes --port 6379 --save \"\"`. !!!!!!!!\n"
            )
            .as_bytes(),
        );
        return None;
    }
    Some(RedisPrefix {
        prefix: format!(
            "llmux-test:{}:{:016x}:",
            std::process::id(),
            fastrand::u64(..)
        ),
    })
}

/// A `redis://` URL on a loopback port nothing listens on (bound, then released).
pub fn closed_redis_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("redis://127.0.0.1:{port}/0")
}
