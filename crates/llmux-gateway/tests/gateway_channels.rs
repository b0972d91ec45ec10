//! Channels as data: added, changed, disabled, deleted and tested through the admin API,
//! picked up by every gateway on the same database without a restart and without failing a
//! request in flight; credentials sealed at rest and never shown; the file's channels reloaded
//! as SIGHUP does.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{channel, config_text, start_config, Harness, ADMIN, KEY};
use futures::StreamExt;
use llmux_emulator::{Emulator, EmulatorConfig, Vendor};
use llmux_gateway::{Config, RawConfig};
use serde_json::{json, Value};

/// The master key of these tests (32 bytes, hex).
const MASTER: &str = "0101010101010101010101010101010101010101010101010101010101010101";

/// A gateway on the database at `url`, polling channels every 100 ms, with the master key
/// when `sealed`, and `rest` (the file's channels).
async fn gateway(url: &str, sealed: bool, rest: &str) -> Harness {
    let env = vec![
        ("LLMUX__SERVER__DATABASE".to_owned(), url.to_owned()),
        (
            "LLMUX__SERVER__USAGE_JOURNAL".to_owned(),
            "database".to_owned(),
        ),
        (
            "LLMUX__SERVER__CHANNEL_REFRESH".to_owned(),
            "100ms".to_owned(),
        ),
    ];
    let raw = RawConfig::parse(&config_text(rest), env).expect("config parses");
    let cfg = Config::resolve(raw, |k| {
        (sealed && k == "LLMUX_MASTER_KEY").then(|| MASTER.to_owned())
    })
    .expect("config resolves");
    start_config(cfg).await
}

async fn emulator_with_key(key: &str) -> Emulator {
    Emulator::start(EmulatorConfig::new(Vendor::OpenAi).with_keys([key]))
        .await
        .unwrap()
}

fn new_channel(name: &str, emu: &Emulator, models: Value, key: &str) -> Value {
    json!({
        "name": name,
        "provider": "openai",
        "base_url": emu.base_url_for("openai").unwrap(),
        "api_key": key,
        "models": models,
    })
}

async fn admin(
    gw: &Harness,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = gw
        .http
        .request(method, format!("{}{path}", gw.url))
        .bearer_auth(ADMIN);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn chat(gw: &Harness, model: &str) -> (u16, Value) {
    let resp = gw
        .post("/v1/chat/completions")
        .json(&json!({"model": model, "messages": [{"role": "user", "content": "hello there"}]}))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Polls `check` until it holds, for at most 10 s.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within 10 s: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("gw.db").display())
}

/// Two gateways share one database; streams run on the second while a channel is added on the
/// first. The new channel serves on both within seconds, and every stream completes.
async fn added_channel_serves_on_two_gateways_and_streams_in_flight_complete(url: &str) {
    let base = Emulator::start(
        EmulatorConfig::new(Vendor::OpenAi).with_token_interval(Duration::from_millis(30)),
    )
    .await
    .unwrap();
    let fresh = emulator_with_key("sk-fresh-channel-key-0001");
    let fresh = fresh.await;
    let file = channel("base", "openai", &base, "[\"m-base\"]", "");
    let g1 = gateway(url, true, &file).await;
    let g2 = gateway(url, true, &file).await;

    let prompt = (0..40)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    let mut streams = Vec::new();
    for _ in 0..4 {
        let resp = g2
            .post("/v1/chat/completions")
            .json(&json!({"model": "m-base", "stream": true,
                "messages": [{"role": "user", "content": prompt}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        streams.push(tokio::spawn(async move {
            let mut body = resp.bytes_stream();
            let mut text = String::new();
            while let Some(chunk) = body.next().await {
                text.push_str(std::str::from_utf8(&chunk.expect("stream not cut")).unwrap());
            }
            text
        }));
    }

    assert_eq!(chat(&g2, "m-fresh").await.0, 404);
    let (status, v) = admin(
        &g1,
        reqwest::Method::POST,
        "/admin/channels",
        Some(new_channel(
            "fresh",
            &fresh,
            json!(["m-fresh"]),
            "sk-fresh-channel-key-0001",
        )),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["channel"]["source"], "api");
    assert_eq!(v["channel"]["keys"], json!(["sk-…0001"]));
    // The gateway that took the change serves it at once; the other within its refresh.
    assert_eq!(chat(&g1, "m-fresh").await.0, 200);
    eventually("the second gateway serves the new channel", || async {
        chat(&g2, "m-fresh").await.0 == 200
    })
    .await;
    assert!(fresh.requests().len() >= 2);

    for s in streams {
        let text = s.await.unwrap();
        assert!(
            text.contains("data: [DONE]"),
            "a stream in flight did not finish: {text}"
        );
        assert!(!text.contains("\"error\""), "{text}");
    }
}

/// A channel disabled through the API gets no traffic (on another gateway too), and comes back
/// when enabled.
async fn disabled_channel_gets_no_traffic(url: &str) {
    let a = emulator_with_key("sk-channel-a-key-00000001").await;
    let b = emulator_with_key("sk-channel-b-key-00000002").await;
    let g1 = gateway(url, true, "").await;
    let g2 = gateway(url, true, "").await;
    for (name, emu, key) in [
        ("a", &a, "sk-channel-a-key-00000001"),
        ("b", &b, "sk-channel-b-key-00000002"),
    ] {
        let (status, v) = admin(
            &g1,
            reqwest::Method::POST,
            "/admin/channels",
            Some(new_channel(name, emu, json!(["m"]), key)),
        )
        .await;
        assert_eq!(status, 201, "{v}");
    }
    let (status, v) = admin(
        &g1,
        reqwest::Method::PATCH,
        "/admin/channels/a",
        Some(json!({"enabled": false})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["channel"]["enabled"], false);
    // g2 has seen the change once a channel list read there shows it.
    eventually("the second gateway sees the channel disabled", || async {
        let v = common::admin_json(&g2, "/admin/channels").await;
        v["channels"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "a" && c["enabled"] == false)
    })
    .await;
    a.clear_requests();
    b.clear_requests();
    for gw in [&g1, &g2] {
        for _ in 0..8 {
            assert_eq!(chat(gw, "m").await.0, 200);
        }
    }
    assert_eq!(a.requests().len(), 0, "a disabled channel was called");
    assert_eq!(b.requests().len(), 16);

    let (status, _) = admin(
        &g1,
        reqwest::Method::PATCH,
        "/admin/channels/a",
        Some(json!({"enabled": true})),
    )
    .await;
    assert_eq!(status, 200);
    eventually("the channel takes traffic again", || async {
        chat(&g1, "m").await;
        !a.requests().is_empty()
    })
    .await;
}

/// The upstream accepts only the new key: requests fail until a PATCH puts it in, then pass,
/// without a restart, on every gateway.
async fn rotated_key_takes_effect_without_restart(url: &str) {
    let emu = emulator_with_key("sk-new-upstream-key-000002").await;
    let g1 = gateway(url, true, "").await;
    let g2 = gateway(url, true, "").await;
    let (status, _) = admin(
        &g1,
        reqwest::Method::POST,
        "/admin/channels",
        Some(new_channel(
            "rot",
            &emu,
            json!(["m"]),
            "sk-old-upstream-key-000001",
        )),
    )
    .await;
    assert_eq!(status, 201);
    eventually("the second gateway has the channel", || async {
        chat(&g2, "m").await.0 != 404
    })
    .await;
    assert_ne!(chat(&g1, "m").await.0, 200);

    let (status, v) = admin(
        &g1,
        reqwest::Method::PATCH,
        "/admin/channels/rot",
        Some(json!({"api_key": "sk-new-upstream-key-000002"})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["channel"]["keys"], json!(["sk-…0002"]));
    assert_eq!(chat(&g1, "m").await.0, 200);
    eventually("the second gateway uses the new key", || async {
        chat(&g2, "m").await.0 == 200
    })
    .await;
    let last = emu.requests().pop().unwrap();
    assert_eq!(
        last.header("authorization"),
        Some("Bearer sk-new-upstream-key-000002")
    );
}

/// Each case on a SQLite file and on a PostgreSQL schema, both shared by the case's gateways.
macro_rules! on_shared_stores {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let dir = tempfile::tempdir().unwrap();
                    super::$case(&super::sqlite_url(dir.path())).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let Some(pg) = crate::common::PgSchema::create().await else { return };
                    super::$case(&pg.url).await;
                    pg.drop_schema().await;
                }
            )*
        }
    };
}

on_shared_stores!(
    added_channel_serves_on_two_gateways_and_streams_in_flight_complete,
    disabled_channel_gets_no_traffic,
    rotated_key_takes_effect_without_restart,
);

/// A writer that keeps what the gateway logs.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn credentials_are_sealed_at_rest_and_never_shown_or_logged() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    const SECRET: &str = "sk-live-VERYSECRETVALUE-4242";
    const SECOND: &str = "sk-live-OTHERSECRETVALUE-9191";
    let emu = emulator_with_key(SECRET).await;
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let gw = gateway(&url, true, "").await;
    let mut body = new_channel("sealed", &emu, json!(["m"]), SECRET);
    body["api_keys"] = json!([SECOND]);
    let (status, v) = admin(&gw, reqwest::Method::POST, "/admin/channels", Some(body)).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["channel"]["keys"], json!(["sk-…4242", "sk-…9191"]));
    assert_eq!(chat(&gw, "m").await.0, 200);
    let (status, t) = admin(
        &gw,
        reqwest::Method::POST,
        "/admin/channels/sealed/test",
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (_, patched) = admin(
        &gw,
        reqwest::Method::PATCH,
        "/admin/channels/sealed",
        Some(json!({"weight": 3})),
    )
    .await;
    let listed = common::admin_json(&gw, "/admin/channels").await;

    for answer in [&v, &t, &patched, &listed] {
        let text = answer.to_string();
        assert!(
            !text.contains("VERYSECRET") && !text.contains("OTHERSECRET"),
            "{text}"
        );
    }
    // The database file and its write-ahead log hold only sealed bytes.
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            bytes.extend(std::fs::read(&path).unwrap());
        }
    }
    assert!(
        bytes.windows(6).any(|w| w == b"sealed"),
        "the channel is stored"
    );
    for secret in ["VERYSECRET", "OTHERSECRET"] {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{secret} readable in the database"
        );
    }
    let logged = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    assert!(
        logged.contains("channel added by an admin"),
        "logs are captured"
    );
    assert!(
        !logged.contains("VERYSECRET") && !logged.contains("OTHERSECRET"),
        "a credential was logged"
    );
    let dbg = format!("{:?} {:?}", gw.state.routes.current(), gw.state.channels);
    assert!(
        !dbg.contains("VERYSECRET") && !dbg.contains("OTHERSECRET"),
        "{dbg}"
    );
}

#[tokio::test]
async fn without_a_master_key_credentials_are_refused() {
    let emu = emulator_with_key("sk-some-upstream-key-00001").await;
    let gw = gateway("sqlite::memory:", false, "").await;
    let (status, v) = admin(
        &gw,
        reqwest::Method::POST,
        "/admin/channels",
        Some(new_channel(
            "c",
            &emu,
            json!(["m"]),
            "sk-some-upstream-key-00001",
        )),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["code"], "master_key_missing");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("LLMUX_MASTER_KEY"));
}

#[tokio::test]
async fn admin_input_is_bounded_and_errors_name_the_field() {
    let emu = emulator_with_key("sk-some-upstream-key-00001").await;
    let file = channel("filed", "openai", &emu, "[\"f\"]", "");
    let gw = gateway("sqlite::memory:", true, &file).await;
    let ok = new_channel("c", &emu, json!(["m"]), "sk-some-upstream-key-00001");
    let post = |body: Value| admin(&gw, reqwest::Method::POST, "/admin/channels", Some(body));

    let (s, _) = post(ok.clone()).await;
    assert_eq!(s, 201);
    let (s, v) = post(ok.clone()).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("channel_exists"))
    );
    let mut filed = ok.clone();
    filed["name"] = json!("filed");
    let (s, v) = post(filed).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("channel_exists"))
    );

    let cases: Vec<(Value, &str)> = vec![
        (json!({"name": "x/y"}), "name"),
        (json!({"name": "n".repeat(65)}), "name"),
        (json!({"provider": "nope"}), "provider"),
        (json!({"weight": "heavy"}), "weight"),
        (
            json!({"models": (0..1001).map(|i| format!("m{i}")).collect::<Vec<_>>()}),
            "models",
        ),
        (
            json!({"api_keys": (0..32).map(|i| format!("sk-key-{i:020}")).collect::<Vec<_>>()}),
            "api_keys",
        ),
        (json!({"api_key": "env:HOME"}), "api_key"),
        (json!({"api_key": 12}), "api_key"),
        (json!({"secret_id": "x"}), "secret_id"),
        (json!({"surprise": 1}), "surprise"),
    ];
    for (change, field) in cases {
        let mut body = ok.clone();
        body["name"] = json!("d");
        for (k, v) in change.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (s, v) = post(body).await;
        assert_eq!(s, 400, "{field}: {v}");
        let param = v["error"]["param"].as_str().unwrap_or("");
        assert!(
            param.starts_with(field) || v["error"]["message"].as_str().unwrap().contains(field),
            "{field}: {v}"
        );
        assert!(!v.to_string().contains("sk-key-"), "{v}");
    }
    let resp = gw
        .http
        .post(format!("{}/admin/channels", gw.url))
        .bearer_auth(ADMIN)
        .body(vec![b' '; 70 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);

    // File channels: only `enabled` changes; they cannot be deleted through the API.
    let (s, v) = admin(
        &gw,
        reqwest::Method::PATCH,
        "/admin/channels/filed",
        Some(json!({"weight": 2})),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("channel_in_file"))
    );
    let (s, _) = admin(&gw, reqwest::Method::DELETE, "/admin/channels/filed", None).await;
    assert_eq!(s, 409);
    let (s, v) = admin(
        &gw,
        reqwest::Method::PATCH,
        "/admin/channels/filed",
        Some(json!({"enabled": false})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["channel"]["source"], "file");
    assert_eq!(chat(&gw, "f").await.0, 404);
    // Unknown names, and no admin key.
    let (s, _) = admin(
        &gw,
        reqwest::Method::PATCH,
        "/admin/channels/ghost",
        Some(json!({"weight": 2})),
    )
    .await;
    assert_eq!(s, 404);
    let (s, _) = admin(&gw, reqwest::Method::DELETE, "/admin/channels/ghost", None).await;
    assert_eq!(s, 404);
    let resp = gw
        .http
        .post(format!("{}/admin/channels", gw.url))
        .bearer_auth(KEY)
        .json(&ok)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    // Deleting stops the traffic.
    assert_eq!(chat(&gw, "m").await.0, 200);
    let (s, v) = admin(&gw, reqwest::Method::DELETE, "/admin/channels/c", None).await;
    assert_eq!((s, v["deleted"].as_str()), (200, Some("c")));
    assert_eq!(chat(&gw, "m").await.0, 404);
}

#[tokio::test]
async fn without_a_database_the_api_changes_nothing() {
    let emu = emulator_with_key("sk-some-upstream-key-00001").await;
    let gw = common::start(&channel("filed", "openai", &emu, "[\"f\"]", "")).await;
    let (s, v) = admin(
        &gw,
        reqwest::Method::POST,
        "/admin/channels",
        Some(new_channel(
            "c",
            &emu,
            json!(["m"]),
            "sk-some-upstream-key-00001",
        )),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("database"),
        "{v}"
    );
    let listed = common::admin_json(&gw, "/admin/channels").await;
    assert_eq!(listed["channels"][0]["source"], "file");
    assert_eq!(listed["channels"][0]["enabled"], true);
}

#[tokio::test]
async fn a_test_call_reports_success_latency_and_errors() {
    let emu = emulator_with_key("sk-good-upstream-key-00001").await;
    let gw = gateway("sqlite::memory:", true, "").await;
    for (name, key) in [
        ("good", "sk-good-upstream-key-00001"),
        ("bad", "sk-bad-upstream-key-000001"),
    ] {
        let (s, _) = admin(
            &gw,
            reqwest::Method::POST,
            "/admin/channels",
            Some(new_channel(name, &emu, json!({"public": "up-model"}), key)),
        )
        .await;
        assert_eq!(s, 201);
    }
    emu.clear_requests();
    let (s, v) = admin(
        &gw,
        reqwest::Method::POST,
        "/admin/channels/good/test",
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (
            v["ok"].as_bool(),
            v["model"].as_str(),
            v["upstream_model"].as_str()
        ),
        (Some(true), Some("public"), Some("up-model"))
    );
    assert!(v["latency_ms"].is_u64());
    let sent = emu.requests().pop().unwrap().json().unwrap();
    assert_eq!(sent["model"], "up-model");
    let (s, v) = admin(
        &gw,
        reqwest::Method::POST,
        "/admin/channels/bad/test",
        Some(json!({"model": "public"})),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        (v["ok"].as_bool(), v["kind"].as_str()),
        (Some(false), Some("authentication")),
        "{v}"
    );
    let (s, v) = admin(
        &gw,
        reqwest::Method::POST,
        "/admin/channels/good/test",
        Some(json!({"model": "other"})),
    )
    .await;
    assert_eq!((s, v["error"]["param"].as_str()), (400, Some("model")));
    let (s, _) = admin(
        &gw,
        reqwest::Method::POST,
        "/admin/channels/ghost/test",
        None,
    )
    .await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn a_rejected_key_is_skipped_and_the_next_key_serves() {
    let emu = emulator_with_key("sk-good-upstream-key-00001").await;
    let gw = gateway("sqlite::memory:", true, "").await;
    let mut body = new_channel("rot", &emu, json!(["m"]), "sk-bad-upstream-key-000001");
    body["api_keys"] = json!(["sk-good-upstream-key-00001"]);
    let (s, _) = admin(&gw, reqwest::Method::POST, "/admin/channels", Some(body)).await;
    assert_eq!(s, 201);
    for _ in 0..10 {
        assert_eq!(chat(&gw, "m").await.0, 200);
    }
    let bad = emu
        .requests()
        .iter()
        .filter(|r| r.header("authorization") == Some("Bearer sk-bad-upstream-key-000001"))
        .count();
    assert_eq!(
        bad, 1,
        "the rejected key is kept out after its first rejection"
    );
}

#[tokio::test]
async fn a_file_change_is_picked_up_by_the_reload_and_unchanged_channels_keep_their_state() {
    let a = emulator_with_key(Vendor::OpenAi.default_key()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("llmux.toml");
    let first = config_text(&channel("keep", "openai", &a, "[\"k\"]", ""));
    std::fs::write(&path, &first).unwrap();
    let raw = RawConfig::parse(&first, Vec::new()).unwrap();
    let gw = start_config(Config::resolve(raw, |_| None).unwrap()).await;
    let before = gw.state.routes.current().find("keep").unwrap().clone();
    assert_eq!(chat(&gw, "added").await.0, 404);

    let second = format!(
        "{first}{}",
        channel("added", "openai", &a, "[\"added\"]", "")
    );
    std::fs::write(&path, &second).unwrap();
    let n = llmux_gateway::serve::reload_channels(&gw.state, Some(&path))
        .await
        .unwrap();
    assert_eq!(n, 2);
    assert_eq!(chat(&gw, "added").await.0, 200);
    let after = gw.state.routes.current().find("keep").unwrap().clone();
    assert!(
        Arc::ptr_eq(&before, &after),
        "an unchanged channel keeps its clients and breakers"
    );

    // An invalid file changes nothing.
    std::fs::write(&path, format!("{second}[[channels]]\nname = \"bad\"\n")).unwrap();
    assert!(
        llmux_gateway::serve::reload_channels(&gw.state, Some(&path))
            .await
            .is_err()
    );
    assert_eq!(chat(&gw, "added").await.0, 200);
    // A removed channel stops serving.
    std::fs::write(&path, &first).unwrap();
    llmux_gateway::serve::reload_channels(&gw.state, Some(&path))
        .await
        .unwrap();
    assert_eq!(chat(&gw, "added").await.0, 404);
}
