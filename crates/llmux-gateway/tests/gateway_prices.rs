//! The price table end to end: every provider's priced models cost more than 0 in the usage
//! records, overrides take precedence (API > config > built-in), the admin price endpoints
//! check who calls and what they send and persist overrides, unpriced models are listed per
//! channel and logged once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;

use common::{admin_json, channel, emulator, records, start_config, ADMIN, KEY};
use llmux_emulator::{Emulator, EmulatorConfig, Vendor};
use llmux_gateway::store::UsageRecord;
use llmux_gateway::usage::{Currency, ModelPrice, Tokens};
use llmux_gateway::{Config, RawConfig};
use serde_json::{json, Value};

fn tokens(r: &UsageRecord) -> Tokens {
    Tokens {
        input: r.input_tokens,
        output: r.output_tokens,
        cached: r.cached_tokens,
        reasoning: r.reasoning_tokens,
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12_f64.max(b.abs() * 1e-9)
}

/// A gateway over every vendor's emulator, one channel per registered provider with its known
/// models (as `llmux serve --emulate` builds it), accounting in USD with a CNY rate.
async fn every_provider() -> (common::Harness, Vec<Emulator>) {
    let mut emulators = Vec::new();
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for &vendor in Vendor::ALL {
        let emu = Emulator::start(EmulatorConfig::new(vendor)).await.unwrap();
        for spec in llmux_core::providers::REGISTRY {
            if let Some(vars) = emu.env_for(spec.id) {
                env.extend(vars);
            }
        }
        emulators.push(emu);
    }
    let lookup = |k: &str| env.get(k).cloned();
    let mut raw = RawConfig::from_provider_env(env.clone(), lookup).unwrap();
    raw.server.listen = "127.0.0.1:0".into();
    raw.server.api_keys = vec![KEY.into()];
    raw.server.admin_key = Some(ADMIN.into());
    raw.server.database = Some("sqlite::memory:".into());
    raw.server.exchange_rates = BTreeMap::from([(Currency::parse("CNY").unwrap(), 0.14)]);
    let cfg = Config::resolve(raw, lookup).unwrap();
    (start_config(cfg).await, emulators)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_priced_model_of_every_provider_is_recorded_with_a_cost() {
    let (gw, _emus) = every_provider().await;
    let mut sent = 0u64;
    let channels = gw.state.routes.current().channels().to_vec();
    for ch in &channels {
        for public in ch.models.keys() {
            let embedding = public.contains("embed");
            let (path, body) = if embedding {
                (
                    "/v1/embeddings",
                    json!({"model": public, "input": "hello there"}),
                )
            } else {
                (
                    "/v1/chat/completions",
                    json!({"model": public,
                           "messages": [{"role": "user", "content": "hello there"}]}),
                )
            };
            let resp = gw.post(path).json(&body).send().await.unwrap();
            let _ = resp.bytes().await;
            sent += 1;
        }
    }
    assert!(sent > 50, "only {sent} models across the providers");
    let recs = records(&gw, sent).await;
    let prices = &gw.state.prices;
    let mut priced = 0;
    for r in recs.iter().filter(|r| r.status == 200) {
        match prices.price_in_account(&r.model, &r.provider, &r.upstream_model) {
            Ok(p) if !p.is_free() => {
                assert!(
                    r.cost > 0.0,
                    "{} ({}/{}) is priced but cost 0: {r:?}",
                    r.model,
                    r.provider,
                    r.upstream_model
                );
                assert!(close(r.cost, p.cost(tokens(r))), "{r:?}");
                priced += 1;
            }
            Ok(_) => assert_eq!(r.cost, 0.0, "{r:?}"),
            Err(_) => assert_eq!(r.cost, 0.0, "unpriced: {r:?}"),
        }
    }
    // OpenAI, Anthropic, Gemini, DeepSeek, DashScope (three endpoints), Zhipu and Hunyuan each
    // contribute priced models.
    assert!(priced >= 25, "only {priced} priced records");
    let providers: std::collections::BTreeSet<&str> = recs
        .iter()
        .filter(|r| r.cost > 0.0)
        .map(|r| r.provider.as_str())
        .collect();
    for p in [
        "openai",
        "anthropic",
        "gemini",
        "deepseek",
        "dashscope",
        "dashscope-compat",
        "dashscope-anthropic",
        "zhipu",
        "hunyuan",
        "hunyuan-openai",
    ] {
        assert!(
            providers.contains(p),
            "no costed record from {p}: {providers:?}"
        );
    }

    // The channels list what has no usable price, and the reason is in /admin/prices.
    let list = admin_json(&gw, "/admin/channels").await;
    let unpriced = |name: &str| -> Vec<String> {
        let ch = list["channels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap();
        serde_json::from_value(ch["unpriced_models"].clone()).unwrap()
    };
    assert!(unpriced("openai").is_empty(), "{list}");
    assert!(unpriced("moonshot").contains(&"moonshot/moonshot-v1-8k".to_owned()));
    assert!(
        unpriced("ollama").is_empty(),
        "self-hosted models are priced at 0"
    );
}

fn text(extra: &str, emu: &Emulator, db: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\napi_keys = [\"{KEY}\"]\nadmin_key = \"{ADMIN}\"\n\
         database = \"{db}\"\n{extra}\n{}",
        channel(
            "oa",
            "openai",
            emu,
            r#"{ "gpt-4o-mini" = "gpt-4o-mini", "alias" = "gpt-4o", "mystery" = "mystery-model" }"#,
            ""
        )
    )
}

async fn start_text(text: &str) -> common::Harness {
    let raw = RawConfig::parse(text, Vec::new()).unwrap();
    start_config(Config::resolve(raw, |_| None).unwrap()).await
}

async fn chat(gw: &common::Harness, model: &str) {
    let resp = gw
        .post("/v1/chat/completions")
        .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let _ = resp.bytes().await;
}

fn admin(gw: &common::Harness, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
    gw.http
        .request(method, format!("{}{path}", gw.url))
        .bearer_auth(ADMIN)
}

fn price(input: f64, output: f64) -> ModelPrice {
    ModelPrice {
        input_per_mtok: input,
        output_per_mtok: output,
        ..Default::default()
    }
}

#[tokio::test]
async fn api_overrides_beat_config_which_beats_the_builtin_table() {
    let emu = emulator(Vendor::OpenAi).await;
    let gw = start_text(&text(
        "[server.prices.alias]\ninput_per_mtok = 100.0\noutput_per_mtok = 200.0\n",
        &emu,
        "sqlite::memory:",
    ))
    .await;
    // 1: built-in (gpt-4o-mini at 0.15 / 0.60 USD), 2: config (alias), 3: API over config,
    // 4: API on a built-in model by provider/upstream_model, 5-6: both removed again.
    chat(&gw, "gpt-4o-mini").await;
    chat(&gw, "alias").await;
    let put = |model: &str, body: Value| {
        admin(&gw, reqwest::Method::PUT, &format!("/admin/prices/{model}")).json(&body)
    };
    let resp = put(
        "alias",
        json!({"input_per_mtok": 1000.0, "output_per_mtok": 3000.0}),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["price"]["source"], "api");
    assert_eq!(v["price"]["price"]["currency"], "USD");
    chat(&gw, "alias").await;
    let resp = put(
        "openai/gpt-4o-mini",
        json!({"input_per_mtok": 10.0, "output_per_mtok": 10.0, "currency": "CNY"}),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(resp.status(), 400, "CNY has no exchange rate here");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["param"], "currency");
    let resp = put(
        "openai/gpt-4o-mini",
        json!({"input_per_mtok": 10.0, "output_per_mtok": 10.0}),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    chat(&gw, "gpt-4o-mini").await;
    for model in ["alias", "openai/gpt-4o-mini"] {
        let resp = admin(
            &gw,
            reqwest::Method::DELETE,
            &format!("/admin/prices/{model}"),
        )
        .send()
        .await
        .unwrap();
        assert_eq!(resp.status(), 200, "{model}");
    }
    chat(&gw, "alias").await;
    chat(&gw, "gpt-4o-mini").await;

    let mut recs = records(&gw, 6).await;
    recs.reverse(); // oldest first
    let expect = [
        ModelPrice {
            cached_input_per_mtok: Some(0.075),
            ..price(0.15, 0.60)
        },
        price(100.0, 200.0),
        price(1000.0, 3000.0),
        price(10.0, 10.0),
        price(100.0, 200.0),
        ModelPrice {
            cached_input_per_mtok: Some(0.075),
            ..price(0.15, 0.60)
        },
    ];
    for (i, (r, p)) in recs.iter().zip(expect).enumerate() {
        assert!(r.cost > 0.0, "record {i}: {r:?}");
        assert!(
            close(r.cost, p.cost(tokens(r))),
            "record {i}: {} vs {p:?} {r:?}",
            r.cost
        );
    }
}

#[tokio::test]
async fn price_endpoints_check_the_caller_and_the_input_and_persist_overrides() {
    let emu = emulator(Vendor::OpenAi).await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("gw.sqlite3").display());
    let extra = "[server.exchange_rates]\nCNY = 0.14\n";
    let mut gw = start_text(&text(extra, &emu, &db)).await;

    // Auth: no key, a client key.
    let url = format!("{}/admin/prices", gw.url);
    assert_eq!(gw.http.get(&url).send().await.unwrap().status(), 401);
    assert_eq!(
        gw.http
            .get(&url)
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let put_url = format!("{url}/alias");
    let resp = gw
        .http
        .put(&put_url)
        .bearer_auth(KEY)
        .json(&json!({"input_per_mtok": 1, "output_per_mtok": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    // Bounds: each refused with 400 (413 for the body) naming what is wrong.
    let put = |model: String, body: String| {
        admin(&gw, reqwest::Method::PUT, &format!("/admin/prices/{model}"))
            .header("content-type", "application/json")
            .body(body)
    };
    let ok_body = r#"{"input_per_mtok":1,"output_per_mtok":2}"#.to_owned();
    let long = "m".repeat(300);
    for (model, body, status, what) in [
        (long.clone(), ok_body.clone(), 400, "model"),
        ("x%20".to_owned(), ok_body.clone(), 400, "model"),
        (
            "alias".to_owned(),
            r#"{"input_per_mtok":-1,"output_per_mtok":2}"#.to_owned(),
            400,
            "finite",
        ),
        (
            "alias".to_owned(),
            r#"{"input_per_mtok":1e300,"output_per_mtok":2}"#.to_owned(),
            400,
            "finite",
        ),
        (
            "alias".to_owned(),
            r#"{"input_per_mtok":1}"#.to_owned(),
            400,
            "output_per_mtok",
        ),
        (
            "alias".to_owned(),
            r#"{"input_per_mtok":1,"output_per_mtok":2,"typo":1}"#.to_owned(),
            400,
            "typo",
        ),
        (
            "alias".to_owned(),
            r#"{"input_per_mtok":1,"output_per_mtok":2,"currency":"EUR"}"#.to_owned(),
            400,
            "EUR",
        ),
        (
            "alias".to_owned(),
            format!(
                r#"{{"input_per_mtok":1,"output_per_mtok":2,"x":"{}"}}"#,
                "a".repeat(5000)
            ),
            413,
            "large",
        ),
    ] {
        let resp = put(model.clone(), body).send().await.unwrap();
        assert_eq!(resp.status(), status, "{model}: {what}");
        let v: Value = resp.json().await.unwrap();
        let msg = v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            msg.contains(what) || v["error"]["param"] == what,
            "{what}: {v}"
        );
    }
    let resp = admin(&gw, reqwest::Method::DELETE, "/admin/prices/never-set")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "price_not_found");

    // A CNY override is stored, listed with its conversion, and survives a restart.
    let resp = put(
        "alias".into(),
        r#"{"input_per_mtok":10,"output_per_mtok":20,"currency":"CNY"}"#.into(),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let list = admin_json(&gw, "/admin/prices").await;
    assert_eq!(list["currency"], "USD");
    assert_eq!(list["exchange_rates"]["CNY"], 0.14);
    let entry = |list: &Value, model: &str| -> Value {
        list["prices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["model"] == model)
            .cloned()
            .unwrap_or(Value::Null)
    };
    let alias = entry(&list, "alias");
    assert_eq!(alias["source"], "api", "{alias}");
    assert!(close(
        alias["in_account"]["input_per_mtok"].as_f64().unwrap(),
        1.4
    ));
    let builtin = entry(&list, "openai/gpt-4o-mini");
    assert_eq!(builtin["source"], "builtin");
    assert!(builtin["source_url"]
        .as_str()
        .unwrap()
        .starts_with("https://"));
    assert!(builtin["read"].as_str().is_some());

    gw.shutdown();
    gw.task.take().unwrap().await.unwrap().unwrap();
    let gw = start_text(&text(extra, &emu, &db)).await;
    let list = admin_json(&gw, "/admin/prices").await;
    assert_eq!(
        entry(&list, "alias")["source"],
        "api",
        "the override was persisted"
    );
    assert_eq!(entry(&list, "alias")["price"]["currency"], "CNY");
}

#[derive(Clone, Default)]
struct LogBuffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// An unpriced model is listed on its channel and logged once for the process, however many
/// requests it serves.
#[tokio::test(flavor = "current_thread")]
async fn an_unpriced_model_is_listed_on_its_channel_and_logged_once() {
    let logs = LogBuffer::default();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .finish();
    // The runtime is single-threaded: the gateway's tasks log through this thread's default.
    let _guard = tracing::subscriber::set_default(subscriber);
    let emu = emulator(Vendor::OpenAi).await;
    let gw = start_text(&text("", &emu, "sqlite::memory:")).await;
    let list = admin_json(&gw, "/admin/channels").await;
    assert_eq!(list["channels"][0]["unpriced_models"], json!(["mystery"]));
    for _ in 0..5 {
        chat(&gw, "mystery").await;
        chat(&gw, "gpt-4o-mini").await;
    }
    let recs = records(&gw, 10).await;
    assert!(
        recs.iter()
            .all(|r| (r.model == "mystery") == (r.cost == 0.0)),
        "{recs:?}"
    );
    let text = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    let warnings = text.matches("has no usable price").count();
    assert_eq!(warnings, 1, "{text}");
    assert!(text.contains("mystery-model"), "{text}");
    assert_eq!(
        gw.state.prices.unpriced_seen(),
        vec!["openai/mystery-model"]
    );
}

on_both_stores!(
    overrides_round_trip_through_the_store,
    a_cost_budget_spends_converted_costs_like_the_records,
);

async fn overrides_round_trip_through_the_store(database: &str) {
    let store = llmux_gateway::store::open(database).await.unwrap();
    assert!(store.list_price_overrides().await.unwrap().is_empty());
    let p = ModelPrice {
        cached_input_per_mtok: Some(0.5),
        reasoning_per_mtok: Some(8.0),
        currency: Currency::parse("CNY"),
        ..price(1.0, 2.0)
    };
    store
        .put_price_override("openai/gpt-4o", &p, 100)
        .await
        .unwrap();
    store
        .put_price_override("alias", &price(3.0, 4.0), 101)
        .await
        .unwrap();
    // Setting again replaces.
    store
        .put_price_override("alias", &price(5.0, 6.0), 102)
        .await
        .unwrap();
    let rows = store.list_price_overrides().await.unwrap();
    let got: Vec<(&str, ModelPrice, i64)> = rows
        .iter()
        .map(|o| (o.model.as_str(), o.price, o.updated_at))
        .collect();
    assert_eq!(
        got,
        vec![("alias", price(5.0, 6.0), 102), ("openai/gpt-4o", p, 100)]
    );
    assert!(store.delete_price_override("alias").await.unwrap());
    assert!(!store.delete_price_override("alias").await.unwrap());
    assert_eq!(store.list_price_overrides().await.unwrap().len(), 1);
}

/// A model priced in CNY, accounting in USD: each record's cost is converted, and the key's
/// spend (what its cost budget compares with) is the sum of those same costs; the budget then
/// refuses further requests.
async fn a_cost_budget_spends_converted_costs_like_the_records(database: &str) {
    let emu = emulator(Vendor::OpenAi).await;
    let gw = start_text(&text(
        "currency = \"USD\"\n[server.exchange_rates]\nCNY = 0.5\n\
         [server.prices.alias]\ninput_per_mtok = 200.0\noutput_per_mtok = 400.0\ncurrency = \"CNY\"\n",
        &emu,
        database,
    ))
    .await;
    let (key, id) = common::create_key(&gw, json!({"name": "cny", "budget_cost": 0.05})).await;
    let mut refused = false;
    let mut sent = 0;
    for _ in 0..50 {
        let resp = gw
            .http
            .post(format!("{}/v1/chat/completions", gw.url))
            .bearer_auth(&key)
            .json(&json!({"model": "alias", "max_tokens": 8,
                          "messages": [{"role": "user", "content": "hello"}]}))
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let _ = resp.bytes().await;
        if status == 429 {
            refused = true;
            break;
        }
        assert_eq!(status, 200);
        sent += 1;
    }
    assert!(
        refused && sent > 0,
        "the budget ran out after {sent} requests"
    );
    let recs = records(&gw, sent).await;
    let cny_price = ModelPrice {
        currency: Currency::parse("CNY"),
        ..price(200.0, 400.0)
    };
    let mut total = 0.0;
    for r in &recs {
        // In USD: the CNY price at 0.5 USD per CNY.
        assert!(close(r.cost, cny_price.cost(tokens(r)) * 0.5), "{r:?}");
        total += r.cost;
    }
    let keys = admin_json(&gw, "/admin/keys").await;
    let k = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id)
        .unwrap();
    let spent = k["spent_cost"].as_f64().unwrap();
    assert!(close(spent, total), "spent {spent} vs records {total}");
    // Sequential requests overshoot by at most what one used beyond its estimate.
    let one = recs.iter().map(|r| r.cost).fold(0.0, f64::max);
    assert!(spent <= 0.05 + one, "spent {spent} over the budget");
}
