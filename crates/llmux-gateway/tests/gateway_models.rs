//! Model lists: each key sees its allow-list ∩ the models some channel serves, in OpenAI's,
//! Anthropic's and the Gemini API's shapes; channels discover their upstream's models (on
//! demand, on a schedule, and for channels made from provider variables), within the bounds
//! `crate::discovery` documents.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use llmux_emulator::{Emulator, EmulatorConfig, Vendor};
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

    // The scheduled channel asks at start: poll (bounded) until its models are listed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let ids = openai_ids(&gw, KEY).await;
        if ids.len() > 1 {
            let mut want = reported.clone();
            want.push("mine".to_owned());
            want.sort();
            assert_eq!(ids, want, "the upstream's models, and only those");
            break;
        }
        assert_eq!(ids, ["mine"]);
        assert!(
            tokio::time::Instant::now() < deadline,
            "no discovery at start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(emu.requests().iter().any(|r| r.path == "/api/tags"));

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
    // Before discovery the provider's built-in names stand in; the upstream's list replaces
    // them (the schedule's first run, or this call, whichever comes first).
    let r = discover(&gw, "ollama").await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        openai_ids(&gw, KEY).await,
        strings(&["ollama/llama3.2:latest", "ollama/qwen2.5:7b"])
    );
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

    for bad in ["\"10s\"", "\"30d\"", "\"soon\"", "true"] {
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
