//! Model lists (issue 16, part 4): each key sees its allow-list ∩ the models some enabled
//! channel serves, in OpenAI's, Anthropic's and the Gemini API's shapes; channels discover their
//! upstream's models (on demand, on a schedule, for channels made from provider variables and
//! for channels added at run time through the admin API), within the bounds `discovery`
//! documents; a disabled or deleted channel's models and schedule go away.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use llmux_emulator::{Emulator, EmulatorConfig, Fault, FaultKind, Vendor};
use llmux_gateway::{Config, RawConfig};
use serde_json::{json, Value};

/// The ids of an OpenAI-shaped `GET /v1/models` for `key`.
async fn openai_ids(gw: &Harness, key: &str) -> Vec<String> {
    let resp = gw
        .http
        .get(format!("{}/v1/models", gw.url))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["object"], "list");
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            assert_eq!(m["object"], "model");
            m["id"].as_str().unwrap().to_owned()
        })
        .collect()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

/// An Ollama emulator that has exactly `models`.
async fn ollama_with(models: Vec<String>) -> Emulator {
    Emulator::start(EmulatorConfig::new(Vendor::Ollama).with_models(models))
        .await
        .unwrap()
}

fn ollama_channel(name: &str, emu: &Emulator, rest: &str) -> String {
    format!(
        "[[channels]]\nname = \"{name}\"\nprovider = \"ollama\"\nbase_url = \"{}\"\n{rest}\n",
        emu.base_url_for("ollama").unwrap()
    )
}

/// Polls `check` (bounded: 10 s) until it holds; for what a spawned task does on its own.
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
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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

async fn chat_status(gw: &Harness, key: &str, model: &str) -> u16 {
    gw.http
        .post(format!("{}/v1/chat/completions", gw.url))
        .bearer_auth(key)
        .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn discover(gw: &Harness, channel: &str) -> reqwest::Response {
    gw.http
        .post(format!("{}/admin/channels/{channel}/discover", gw.url))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn each_key_sees_its_allow_list_and_only_served_models_in_every_dialect() {
    let oa = emulator(Vendor::OpenAi).await;
    let ds = emulator(Vendor::DashScope).await;
    let text = format!(
        "{}{}",
        channel(
            "oa",
            "openai",
            &oa,
            "[\"gpt-4o-mini\", \"text-embedding-3-small\"]",
            "passthrough = true"
        ),
        channel("ds", "dashscope", &ds, "[\"qwen-plus\"]", ""),
    );
    let gw = start_with_store(&text).await;
    let (all, _) = create_key(&gw, json!({"name": "all"})).await;
    let (one, _) = create_key(&gw, json!({"name": "one", "models": ["qwen-plus"]})).await;
    let (mixed, _) = create_key(
        &gw,
        json!({"name": "mixed", "models": ["gpt-4o-mini", "served-nowhere", "oa/gpt-5", "zz/none"]}),
    )
    .await;

    let every = strings(&["gpt-4o-mini", "qwen-plus", "text-embedding-3-small"]);
    assert_eq!(openai_ids(&gw, &all).await, every);
    assert_eq!(
        openai_ids(&gw, KEY).await,
        every,
        "a static key sees every served model"
    );
    assert_eq!(openai_ids(&gw, &one).await, strings(&["qwen-plus"]));
    // A model no channel serves is absent; a passthrough address the key lists is served.
    assert_eq!(
        openai_ids(&gw, &mixed).await,
        strings(&["gpt-4o-mini", "oa/gpt-5"])
    );

    // Lookup: 404 (not 403) for what the key may not call or nothing serves.
    let get = |key: &str, id: &str| {
        gw.http
            .get(format!("{}/v1/models/{id}", gw.url))
            .bearer_auth(key)
            .send()
    };
    let r = get(&one, "qwen-plus").await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["id"].as_str(), v["owned_by"].as_str()),
        (Some("qwen-plus"), Some("dashscope"))
    );
    for (key, id) in [
        (&one, "gpt-4o-mini"),
        (&mixed, "served-nowhere"),
        (&all, "nope"),
    ] {
        let r = get(key, id).await.unwrap();
        assert_eq!(r.status(), 404, "{id}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "model_not_found", "{v}");
    }
    assert_eq!(get(&mixed, "oa/gpt-5").await.unwrap().status(), 200);
    let r = gw
        .http
        .get(format!("{}/v1/models", gw.url))
        .bearer_auth("sk-llmux-not-a-key")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // Anthropic's shape, chosen by `anthropic-version`, with its paging and its envelope.
    let anthropic = |key: &str, path: &str| {
        gw.http
            .get(format!("{}{path}", gw.url))
            .header("x-api-key", key)
            .header("anthropic-version", "2023-06-01")
            .send()
    };
    let v: Value = anthropic(&all, "/v1/models?limit=2")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["gpt-4o-mini", "qwen-plus"]);
    assert_eq!(v["data"][0]["type"], "model");
    assert_eq!(v["data"][0]["display_name"], "gpt-4o-mini");
    assert!(v["data"][0]["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        (v["has_more"].as_bool(), v["last_id"].as_str()),
        (Some(true), Some("qwen-plus"))
    );
    let v: Value = anthropic(&all, "/v1/models?limit=2&after_id=qwen-plus")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["data"][0]["id"], "text-embedding-3-small");
    assert_eq!(v["has_more"], false);
    let v: Value = anthropic(&one, "/v1/models")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
    assert_eq!(v["first_id"], "qwen-plus");
    let r = anthropic(&one, "/v1/models/qwen-plus").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["type"], "model");
    let r = anthropic(&one, "/v1/models/gpt-4o-mini").await.unwrap();
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["type"].as_str(), v["error"]["type"].as_str()),
        (Some("error"), Some("not_found_error"))
    );
    let r = anthropic(&one, "/v1/models?limit=0").await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["type"],
        "invalid_request_error"
    );

    // The Gemini API's shape, with the key as Google's SDKs send it.
    let gemini = |key: &str, path: &str| {
        gw.http
            .get(format!("{}{path}", gw.url))
            .header("x-goog-api-key", key)
            .send()
    };
    let v: Value = gemini(&mixed, "/v1beta/models")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = v["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["models/gpt-4o-mini", "models/oa/gpt-5"]);
    assert!(v.get("nextPageToken").is_none());
    assert_eq!(
        v["models"][0]["supportedGenerationMethods"][0],
        "generateContent"
    );
    let v: Value = gemini(&all, "/v1beta/models?pageSize=1&pageToken=gpt-4o-mini")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["models"][0]["name"], "models/qwen-plus");
    assert_eq!(v["nextPageToken"], "qwen-plus");
    let r = gw
        .http
        .get(format!("{}/v1beta/models/qwen-plus?key={one}", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["displayName"], "qwen-plus");
    let r = gemini(&mixed, "/v1beta/models/qwen-plus").await.unwrap();
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["error"]["code"].as_u64(), v["error"]["status"].as_str()),
        (Some(404), Some("NOT_FOUND"))
    );
    let r = gemini("wrong", "/v1beta/models").await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["status"],
        "UNAUTHENTICATED"
    );

    // A disabled channel contributes nothing: its models vanish from every list, and come back
    // when it is enabled again.
    let (status, v) = admin(
        &gw,
        reqwest::Method::PATCH,
        "/admin/channels/ds",
        Some(json!({"enabled": false})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        openai_ids(&gw, &all).await,
        strings(&["gpt-4o-mini", "text-embedding-3-small"])
    );
    assert!(openai_ids(&gw, &one).await.is_empty());
    assert_eq!(get(&one, "qwen-plus").await.unwrap().status(), 404);
    let v: Value = gemini(&one, "/v1beta/models")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["models"], json!([]));
    let v: Value = anthropic(&one, "/v1/models")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["data"], json!([]));
    assert_eq!(chat_status(&gw, &one, "qwen-plus").await, 404);
    let (status, v) = admin(
        &gw,
        reqwest::Method::PATCH,
        "/admin/channels/ds",
        Some(json!({"enabled": true})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(openai_ids(&gw, &one).await, strings(&["qwen-plus"]));
}

#[tokio::test]
async fn an_ollama_channel_lists_what_its_upstream_reports_and_serves_it() {
    // Names as `ollama pull` leaves them: a bare name gets `:latest`.
    let emu = ollama_with(strings(&["llama3.2", "phi4:14b", "mistral"])).await;
    let reported = strings(&["llama3.2:latest", "mistral:latest", "phi4:14b"]);
    let gw = start(&format!(
        "{}{}",
        ollama_channel("scheduled", &emu, "discover = \"1h\""),
        ollama_channel("manual", &emu, "models = { mine = \"mistral:latest\" }"),
    ))
    .await;

    assert_eq!(gw.state.channels.scheduled_discovery(), ["scheduled"]);
    // The scheduled channel asks at start: poll (bounded) until its models are listed.
    let mut want = reported.clone();
    want.push("mine".to_owned());
    want.sort();
    eventually("the scheduled channel discovers at start", || async {
        let ids = openai_ids(&gw, KEY).await;
        assert!(ids.contains(&"mine".to_owned()), "{ids:?}");
        ids.len() > 1
    })
    .await;
    assert_eq!(
        openai_ids(&gw, KEY).await,
        want,
        "the upstream's models, and only those"
    );
    assert!(emu.requests().iter().any(|r| r.path == "/api/tags"));
    let v = admin_json(&gw, "/admin/channels").await;
    let scheduled = v["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "scheduled")
        .unwrap()
        .clone();
    assert_eq!(scheduled["discover"], "1h");
    assert_eq!(scheduled["discovered"], json!(reported));

    // On demand: the answer names what the upstream listed; a configured mapping keeps its
    // public name (`mistral:latest` stays `mine` on this channel).
    let r = discover(&gw, "manual").await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["channel"], "manual");
    assert_eq!(v["upstream"], json!(reported));
    assert_eq!(v["skipped"], 0);
    assert_eq!(v["models"], json!(["llama3.2:latest", "mine", "phi4:14b"]));

    // A discovered model is routable.
    let r = gw
        .post("/v1/chat/completions")
        .json(&json!({"model": "phi4:14b", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());

    let r = discover(&gw, "nope").await;
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "channel_not_found"
    );
    let r = gw
        .http
        .post(format!("{}/admin/channels/manual/discover", gw.url))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "a client key is not an admin key");
}

#[tokio::test]
async fn a_channel_made_from_provider_variables_replaces_its_built_in_list() {
    let emu = ollama_with(strings(&["llama3.2", "qwen2.5:7b"])).await;
    let mut env = emu.env_for("ollama").unwrap();
    env.push(("LLMUX__SERVER__LISTEN".into(), "127.0.0.1:0".into()));
    env.push(("LLMUX__SERVER__API_KEYS".into(), format!("[\"{KEY}\"]")));
    env.push(("LLMUX__SERVER__ADMIN_KEY".into(), ADMIN.into()));
    let lookup = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let raw = RawConfig::from_provider_env(env.clone(), lookup).unwrap();
    let cfg = Config::resolve(raw, lookup).unwrap();
    let gw = start_config(cfg).await;
    // A keyless provider's channel discovers on its own schedule; until then the provider's
    // built-in names stand in. The upstream's list replaces them: the built-in list no longer
    // invents models the upstream lacks.
    assert_eq!(gw.state.channels.scheduled_discovery(), ["ollama"]);
    let want = strings(&["ollama/llama3.2:latest", "ollama/qwen2.5:7b"]);
    eventually("the env channel discovers at start", || async {
        openai_ids(&gw, KEY).await == want
    })
    .await;
    let r = discover(&gw, "ollama").await;
    assert_eq!(r.status(), 200);
    assert_eq!(openai_ids(&gw, KEY).await, want);
    assert_eq!(chat_status(&gw, KEY, "ollama/qwen2.5:7b").await, 200);
}

#[tokio::test]
async fn discovery_bounds_refuse_long_lists_and_skip_bad_ids() {
    // More than 4096 entries: refused whole, the configured list stays.
    let many: Vec<String> = (0..4097).map(|i| format!("m{i}")).collect();
    let emu = ollama_with(many).await;
    // Ids past 256 bytes are skipped, the others kept.
    let long = "x".repeat(300);
    let odd = ollama_with(strings(&["fine", &long])).await;
    // An answer past 8 MiB is refused without being read to its end.
    let huge: Vec<String> = (0..1000)
        .map(|i| format!("{i}{}", "y".repeat(9000)))
        .collect();
    let big = ollama_with(huge).await;
    let gw = start(&format!(
        "{}{}{}",
        ollama_channel("many", &emu, "models = [\"configured\"]"),
        ollama_channel("odd", &odd, "models = []\ndiscover = \"1h\""),
        ollama_channel("big", &big, "models = [\"big-configured\"]"),
    ))
    .await;

    let r = discover(&gw, "many").await;
    assert_eq!(r.status(), 502);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"]["message"].as_str().unwrap().contains("4097"),
        "{v}"
    );

    let r = discover(&gw, "big").await;
    assert_eq!(r.status(), 502);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("longer than"),
        "{v}"
    );

    let r = discover(&gw, "odd").await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["upstream"], json!(["fine:latest"]));
    assert_eq!(v["skipped"], 1);

    assert_eq!(
        openai_ids(&gw, KEY).await,
        strings(&["big-configured", "configured", "fine:latest"])
    );
}

#[tokio::test]
async fn a_provider_that_cannot_list_is_refused_and_intervals_are_checked() {
    let ds = emulator(Vendor::DashScope).await;
    let gw = start(&channel("ds", "dashscope", &ds, "[\"qwen-plus\"]", "")).await;
    let r = discover(&gw, "ds").await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot list"),
        "{v}"
    );

    for bad in ["\"10s\"", "\"169h\"", "\"soon\"", "true"] {
        let text = config_text(&format!(
            "[[channels]]\nname = \"o\"\nprovider = \"ollama\"\ndiscover = {bad}\n"
        ));
        let err = RawConfig::parse(&text, Vec::new()).unwrap_err();
        assert_eq!(err.issues[0].path, "channels[0].discover", "{bad}: {err}");
    }
    let text = config_text(&channel(
        "ds",
        "dashscope",
        &ds,
        "[\"qwen-plus\"]",
        "discover = \"1h\"",
    ));
    let err = Config::resolve(RawConfig::parse(&text, Vec::new()).unwrap(), |_| None).unwrap_err();
    assert_eq!(err.issues[0].path, "channels[0].discover", "{err}");
    assert!(err.issues[0].message.contains("cannot list"), "{err}");
    // `discover` alone is enough for a channel to be valid.
    let text =
        config_text("[[channels]]\nname = \"o\"\nprovider = \"ollama\"\ndiscover = \"2h\"\n");
    let cfg = Config::resolve(RawConfig::parse(&text, Vec::new()).unwrap(), |_| None).unwrap();
    assert_eq!(cfg.channels[0].discover, Some(Duration::from_secs(7200)));
    let text = config_text(
        "[[channels]]\nname = \"o\"\nprovider = \"ollama\"\nmodels = [\"m\"]\ndiscover = \"on-demand\"\n",
    );
    let cfg = Config::resolve(RawConfig::parse(&text, Vec::new()).unwrap(), |_| None).unwrap();
    assert_eq!(cfg.channels[0].discover, None);
}

#[tokio::test]
async fn a_dashscope_compatible_channel_lists_what_its_upstream_reports() {
    let ds = Emulator::start(
        EmulatorConfig::new(Vendor::DashScope).with_models(["qwen3-max", "qwen-flash"]),
    )
    .await
    .unwrap();
    let gw = start(&channel(
        "dsc",
        "dashscope-compat",
        &ds,
        "[]",
        "discover = \"6h\"\npassthrough = true",
    ))
    .await;
    let r = discover(&gw, "dsc").await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["upstream"], json!(["qwen-flash", "qwen3-max"]));
    // A passthrough channel lists them under its name, the address that routes to it.
    assert_eq!(
        openai_ids(&gw, KEY).await,
        strings(&["dsc/qwen-flash", "dsc/qwen3-max"])
    );
    assert!(ds
        .requests()
        .iter()
        .any(|r| r.path == "/compatible-mode/v1/models"));
}

/// A channel added through the admin API with `discover` gets its upstream's models listed and
/// routable without a restart; a PATCH of its schedule restarts the task, disabling it stops
/// the task and hides its models, and deleting it ends the task.
#[tokio::test]
async fn a_channel_added_at_run_time_discovers_and_its_task_follows_the_catalog() {
    let emu = ollama_with(strings(&["llama3.2", "phi4:14b"])).await;
    let gw = start_with_store("").await;
    let (limited, _) = create_key(&gw, json!({"name": "l", "models": ["phi4:14b", "other"]})).await;
    assert!(openai_ids(&gw, KEY).await.is_empty());
    assert!(gw.state.channels.scheduled_discovery().is_empty());

    let (status, v) = admin(
        &gw,
        reqwest::Method::POST,
        "/admin/channels",
        Some(json!({
            "name": "local",
            "provider": "ollama",
            "base_url": emu.base_url_for("ollama").unwrap(),
            "discover": "6h",
        })),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["channel"]["discover"], "6h");
    assert_eq!(gw.state.channels.scheduled_discovery(), ["local"]);
    let reported = strings(&["llama3.2:latest", "phi4:14b"]);
    eventually("the new channel discovers its models", || async {
        openai_ids(&gw, KEY).await == reported
    })
    .await;
    // Routable, and each key sees its allow-list ∩ what is served.
    assert_eq!(chat_status(&gw, KEY, "phi4:14b").await, 200);
    assert_eq!(openai_ids(&gw, &limited).await, strings(&["phi4:14b"]));
    assert_eq!(chat_status(&gw, &limited, "phi4:14b").await, 200);

    // A provider without a model list cannot be given a schedule; intervals are bounded.
    let (status, v) = admin(
        &gw,
        reqwest::Method::POST,
        "/admin/channels",
        Some(json!({"name": "ds", "provider": "dashscope", "api_key": "k", "models": ["qwen-plus"], "discover": "1h"})),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("discover"),
        "{v}"
    );
    let (status, v) = admin(
        &gw,
        reqwest::Method::POST,
        "/admin/channels",
        Some(json!({"name": "bad", "provider": "ollama", "models": ["m"], "discover": "5s"})),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["param"], "discover", "{v}");

    // Changing the schedule rebuilds the channel: a new task, which asks again at once.
    emu.clear_requests();
    let (status, v) = admin(
        &gw,
        reqwest::Method::PATCH,
        "/admin/channels/local",
        Some(json!({"discover": "2h"})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["channel"]["discover"], "2h");
    assert_eq!(gw.state.channels.scheduled_discovery(), ["local"]);
    eventually("the rebuilt channel asks again", || async {
        emu.requests().iter().any(|r| r.path == "/api/tags")
    })
    .await;
    eventually("the rebuilt channel lists again", || async {
        openai_ids(&gw, KEY).await == reported
    })
    .await;

    // On demand only: the schedule stops; discovery on demand still serves the list.
    let (status, v) = admin(
        &gw,
        reqwest::Method::PATCH,
        "/admin/channels/local",
        Some(json!({"discover": "on-demand", "models": ["pinned"]})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["channel"]["discover"], "on-demand");
    assert!(gw.state.channels.scheduled_discovery().is_empty());
    let r = discover(&gw, "local").await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["models"],
        json!(["llama3.2:latest", "phi4:14b", "pinned"])
    );
    let (status, _) = admin(
        &gw,
        reqwest::Method::PATCH,
        "/admin/channels/local",
        Some(json!({"discover": "1h"})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(gw.state.channels.scheduled_discovery(), ["local"]);
    eventually("the rescheduled channel lists again", || async {
        openai_ids(&gw, KEY).await.len() == 3
    })
    .await;

    // Disabled: no task, no models, not routable.
    let (status, _) = admin(
        &gw,
        reqwest::Method::PATCH,
        "/admin/channels/local",
        Some(json!({"enabled": false})),
    )
    .await;
    assert_eq!(status, 200);
    assert!(gw.state.channels.scheduled_discovery().is_empty());
    assert!(openai_ids(&gw, KEY).await.is_empty());
    assert_eq!(chat_status(&gw, KEY, "phi4:14b").await, 404);
    let r = discover(&gw, "local").await;
    assert_eq!(
        r.status(),
        200,
        "discovery on demand works on a disabled channel"
    );
    assert_eq!(r.json::<Value>().await.unwrap()["models"], json!([]));
    let (status, _) = admin(
        &gw,
        reqwest::Method::PATCH,
        "/admin/channels/local",
        Some(json!({"enabled": true})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(gw.state.channels.scheduled_discovery(), ["local"]);
    assert_eq!(openai_ids(&gw, KEY).await.len(), 3, "the list survives");

    // Deleted: the task ends, the models are gone.
    let (status, _) = admin(&gw, reqwest::Method::DELETE, "/admin/channels/local", None).await;
    assert_eq!(status, 200);
    assert!(gw.state.channels.scheduled_discovery().is_empty());
    assert!(openai_ids(&gw, KEY).await.is_empty());
    assert_eq!(chat_status(&gw, KEY, "phi4:14b").await, 404);
}

/// An upstream that fails to list keeps the last good list; the admin call reports the error.
#[tokio::test]
async fn an_upstream_error_keeps_the_last_good_list_and_is_reported() {
    let emu = ollama_with(strings(&["llama3.2"])).await;
    let gw = start(&format!(
        "[resilience.retry]\nmax_attempts = 1\n\n{}",
        ollama_channel(
            "o",
            &emu,
            "models = []\ndiscover = \"on-demand\"\npassthrough = true"
        )
    ))
    .await;
    assert!(gw.state.channels.scheduled_discovery().is_empty());
    let r = discover(&gw, "o").await;
    assert_eq!(r.status(), 200);
    assert_eq!(openai_ids(&gw, KEY).await, strings(&["o/llama3.2:latest"]));
    emu.push_fault(Fault::once(FaultKind::Status {
        status: 503,
        body: None,
        retry_after: None,
    }));
    let r = discover(&gw, "o").await;
    assert_eq!(r.status(), 502);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("model list failed"),
        "{v}"
    );
    assert_eq!(openai_ids(&gw, KEY).await, strings(&["o/llama3.2:latest"]));
}
