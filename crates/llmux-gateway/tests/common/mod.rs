//! Shared harness for the gateway tests: emulators and a gateway in-process on 127.0.0.1:0.
#![allow(
    dead_code,
    unused_imports,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::sync::Arc;

use llmux_emulator::{Emulator, EmulatorConfig, Vendor};
use llmux_gateway::state::AppState;
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

/// A gateway recording usage in an in-memory SQLite store, with the admin key and the static
/// test key, plus `rest` (channels, resilience).
pub async fn start_with_store(rest: &str) -> Harness {
    start_with_database("sqlite::memory:", rest).await
}

/// [`start_with_store`] on the database at `url`.
pub async fn start_with_database(url: &str, rest: &str) -> Harness {
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\napi_keys = [\"{KEY}\"]\nadmin_key = \"{ADMIN}\"\ndatabase = \"{url}\"\nshutdown_grace = \"10s\"\n\n{rest}"
    );
    let raw = RawConfig::parse(&text, Vec::new()).expect("config parses");
    start_config(Config::resolve(raw, |_| None).expect("config resolves")).await
}

/// [`start_with_database`] whose budget periods (and usage records' times) follow `clock`.
pub async fn start_with_database_and_clock(
    url: &str,
    rest: &str,
    clock: Arc<dyn llmux_gateway::limits::Clock>,
) -> Harness {
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\napi_keys = [\"{KEY}\"]\nadmin_key = \"{ADMIN}\"\ndatabase = \"{url}\"\nshutdown_grace = \"10s\"\n{rest}"
    );
    let raw = RawConfig::parse(&text, Vec::new()).expect("config parses");
    let cfg = Config::resolve(raw, |_| None).expect("config resolves");
    let gw = Gateway::bind_with_clock(cfg, ServeOptions::default(), clock)
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

/// Creates a virtual key through the admin API; returns its plaintext and id.
pub async fn create_key(gw: &Harness, body: serde_json::Value) -> (String, i64) {
    let resp = gw
        .http
        .post(format!("{}/admin/keys", gw.url))
        .bearer_auth(ADMIN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let v: serde_json::Value = resp.json().await.unwrap();
    (
        v["key"].as_str().unwrap().to_owned(),
        v["record"]["id"].as_i64().unwrap(),
    )
}

/// `GET path` on the admin API with the admin key; the JSON answer (asserting 200).
pub async fn admin_json(gw: &Harness, path: &str) -> serde_json::Value {
    let resp = gw
        .http
        .get(format!("{}{path}", gw.url))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "GET {path}");
    resp.json().await.unwrap()
}

/// Waits (bounded) until the store holds `n` usage records, then returns them through the
/// admin API, newest first. Fails if more than `n` arrive.
pub async fn records(gw: &Harness, n: u64) -> Vec<llmux_gateway::store::UsageRecord> {
    let store = gw.state.store.clone().expect("a store");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let count = store.usage_count().await.unwrap();
        if count >= n {
            assert_eq!(count, n, "more usage records than requests");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {count} of {n} usage records written"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let resp = gw
        .http
        .get(format!("{}/admin/usage/records?limit=10000", gw.url))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut v: serde_json::Value = resp.json().await.unwrap();
    serde_json::from_value(v["records"].take()).unwrap()
}

pub async fn emulator(vendor: Vendor) -> Emulator {
    Emulator::start(EmulatorConfig::new(vendor))
        .await
        .expect("emulator starts")
}

/// A `[[channels]]` entry for an emulator serving `provider` (its base URL for that provider
/// and its default key).
pub fn channel(name: &str, provider: &str, emu: &Emulator, models: &str, extra: &str) -> String {
    let base = emu
        .base_url_for(provider)
        .unwrap_or_else(|| panic!("this emulator does not serve {provider}"));
    let key = Vendor::for_provider(provider)
        .unwrap_or_else(|| panic!("no emulator serves {provider}"))
        .default_key();
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

/// A fresh schema in the local PostgreSQL (127.0.0.1:5432, database `test`), dropped when the
/// test calls [`PgSchema::drop_schema`]. `None` (with a loud line) when PostgreSQL is
/// unreachable outside CI; under `CI=true` an unreachable server fails the test.
pub struct PgSchema {
    /// The store URL (`…?schema=NAME`).
    pub url: String,
    admin_url: String,
    schema: String,
}

impl PgSchema {
    pub async fn create() -> Option<PgSchema> {
        use sqlx::Connection as _;
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let schema = format!(
            "llmux_gw_{}_{}_{nanos}",
            std::process::id(),
            SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let mut errors = Vec::new();
        for user in ["postgres", "root"] {
            let admin_url = format!("postgres://{user}@127.0.0.1:5432/test");
            match sqlx::PgConnection::connect(&admin_url).await {
                Ok(_) => {
                    return Some(PgSchema {
                        url: format!("{admin_url}?schema={schema}"),
                        admin_url,
                        schema,
                    })
                }
                Err(e) => errors.push(format!("{user}: {e}")),
            }
        }
        assert!(
            !matches!(std::env::var("CI").as_deref(), Ok("true" | "1")),
            "PostgreSQL at 127.0.0.1:5432 (database `test`) is required under CI=true: {errors:?}"
        );
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            format!("\n!!!!!!!! SKIPPING a PostgreSQL gateway test: {errors:?} !!!!!!!!\n")
                .as_bytes(),
        );
        None
    }

    pub async fn drop_schema(self) {
        use sqlx::Connection as _;
        let mut conn = sqlx::PgConnection::connect(&self.admin_url).await.unwrap();
        sqlx::query(&format!(
            "DROP SCHEMA IF EXISTS \"{}\" CASCADE",
            self.schema
        ))
        .execute(&mut conn)
        .await
        .unwrap();
    }
}

/// Runs each scenario `async fn case(database_url: &str)` on embedded SQLite and on PostgreSQL (a fresh schema).
#[macro_export]
macro_rules! on_both_stores {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    super::$case("sqlite::memory:").await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let Some(pg) = $crate::common::PgSchema::create().await else { return };
                    super::$case(&pg.url).await;
                    pg.drop_schema().await;
                }
            )*
        }
    };
}

mod redis_env;
pub use redis_env::*;

/// Whether a missing tool fails (under CI) or is skipped, and the Python interpreter with the
/// SDKs: shared with the emulator's SDK tests.
pub use llmux_emulator::sdk::{in_ci, python};
