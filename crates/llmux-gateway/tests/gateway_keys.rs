//! Virtual keys from the store (SQLite in memory): key check, model allow-list, per-key rate
//! limit and budget, revocation, and usage recorded exactly once per routed request.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use llmux_emulator::Vendor;
use serde_json::{json, Value};

async fn with_store() -> (Harness, llmux_emulator::Emulator) {
    let oa = emulator(Vendor::OpenAi).await;
    let gw = start_with_store(&channel(
        "oa",
        "openai",
        &oa,
        "[\"gpt-4o-mini\", \"other\"]",
        "",
    ))
    .await;
    (gw, oa)
}

async fn chat(gw: &Harness, key: &str, model: &str) -> reqwest::Response {
    gw.http
        .post(format!("{}/v1/chat/completions", gw.url))
        .bearer_auth(key)
        .json(&json!({"model":model,"max_tokens":10,"messages":[{"role":"user","content":"hi"}]}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn virtual_keys_limits_and_usage_recorded_once() {
    let (gw, _oa) = with_store().await;
    let (key, id) = create_key(&gw, json!({"name":"t","models":["gpt-4o-mini"],"rpm":2})).await;
    assert!(key.starts_with("sk-llmux-"));

    assert_eq!(chat(&gw, &key, "gpt-4o-mini").await.status(), 200);

    // Model not allowed for this key: 403 in both formats.
    let resp = chat(&gw, &key, "other").await;
    assert_eq!(resp.status(), 403);
    let ds = gw
        .http
        .post(format!(
            "{}/api/v1/services/aigc/text-generation/generation",
            gw.url
        ))
        .bearer_auth(&key)
        .json(&json!({"model":"other","input":{"prompt":"x"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(ds.status(), 403);
    assert_eq!(ds.json::<Value>().await.unwrap()["code"], "AccessDenied");

    // rpm = 2: the third routed request in the minute is refused with Retry-After.
    assert_eq!(chat(&gw, &key, "gpt-4o-mini").await.status(), 200);
    let resp = chat(&gw, &key, "gpt-4o-mini").await;
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().get("retry-after").is_some());
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");

    // Unknown and malformed keys: 401, never open access.
    let fake = format!("sk-llmux-{}", "a".repeat(40));
    assert_eq!(chat(&gw, &fake, "gpt-4o-mini").await.status(), 401);
    assert_eq!(chat(&gw, "nonsense", "gpt-4o-mini").await.status(), 401);

    // A budget too small for the request: 429 insufficient_quota.
    let (poor, _) = create_key(&gw, json!({"name":"poor","budget_tokens":1})).await;
    let resp = chat(&gw, &poor, "gpt-4o-mini").await;
    assert_eq!(resp.status(), 429);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "insufficient_quota");
    assert_eq!(body["error"]["type"], "insufficient_quota");

    // Revoked keys are refused.
    let r = gw
        .http
        .delete(format!("{}/admin/keys/{id}", gw.url))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(chat(&gw, &key, "gpt-4o-mini").await.status(), 401);

    // Exactly the two routed requests were recorded, with the key and tokens.
    let recs = records(&gw, 2).await;
    assert!(
        recs.iter()
            .all(|r| r.key_id == Some(id) && r.status == 200 && r.channel == "oa"),
        "{recs:?}"
    );
    let by_key: Value = admin_json(&gw, "/admin/usage?by=key").await;
    let row = by_key["usage"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["group"].as_str() == Some(id.to_string().as_str()))
        .unwrap()
        .clone();
    assert_eq!(row["requests"], 2, "{by_key}");
    assert!(row["output_tokens"].as_u64().unwrap() > 0);
}

async fn patch(gw: &Harness, id: i64, auth: &str, body: &str) -> reqwest::Response {
    gw.http
        .patch(format!("{}/admin/keys/{id}", gw.url))
        .bearer_auth(auth)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_key_updated_through_the_admin_api_applies_to_the_next_request() {
    let (gw, _oa) = with_store().await;
    let (key, id) = create_key(&gw, json!({"name":"t","rpm":1})).await;
    assert_eq!(chat(&gw, &key, "gpt-4o-mini").await.status(), 200);
    // The key is now cached by the gateway and its one request a minute is used.
    assert_eq!(chat(&gw, &key, "gpt-4o-mini").await.status(), 429);

    // Raise the limit: the next request passes at once (cached copy dropped, fresh window).
    let r = patch(&gw, id, ADMIN, r#"{"rpm": 100}"#).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["record"]["rpm"], 100);
    assert_eq!(body["record"]["name"], "t");
    assert_eq!(chat(&gw, &key, "gpt-4o-mini").await.status(), 200);

    // Narrow the models: the next request for another model is refused.
    assert_eq!(
        patch(&gw, id, ADMIN, r#"{"models": ["other"]}"#)
            .await
            .status(),
        200
    );
    assert_eq!(chat(&gw, &key, "gpt-4o-mini").await.status(), 403);
    assert_eq!(chat(&gw, &key, "other").await.status(), 200);

    // A budget already spent: insufficient_quota; removing it (null) lifts the refusal.
    assert_eq!(
        patch(&gw, id, ADMIN, r#"{"budget_tokens": 1}"#)
            .await
            .status(),
        200
    );
    let resp = chat(&gw, &key, "other").await;
    assert_eq!(resp.status(), 429);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "insufficient_quota");
    let r = patch(&gw, id, ADMIN, r#"{"budget_tokens": null}"#).await;
    let body: Value = r.json().await.unwrap();
    assert!(body["record"]["budget_tokens"].is_null(), "{body}");
    assert_eq!(chat(&gw, &key, "other").await.status(), 200);

    // Bad updates: OpenAI-shaped 4xx, nothing changed.
    for (who, target, body, status, says) in [
        (ADMIN, id, "{}", 400, "nothing to change"),
        (ADMIN, id, r#"{"spent_tokens": 0}"#, 400, "spent_tokens"),
        (ADMIN, id, r#"{"rpm": "many"}"#, 400, "rpm"),
        (ADMIN, id, r#"{"rpm": -1}"#, 400, "rpm"),
        (ADMIN, id, r#"{"name": "  "}"#, 400, "name"),
        (ADMIN, id, "{not json", 400, "not valid JSON"),
        (ADMIN, id + 1_000, r#"{"rpm": 5}"#, 404, "no key with id"),
        (KEY, id, r#"{"rpm": 5}"#, 401, "admin"),
    ] {
        let r = patch(&gw, target, who, body).await;
        assert_eq!(r.status(), status, "{body}");
        let err: Value = r.json().await.unwrap();
        let msg = err["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains(says), "{body}: {err}");
    }
    let keys: Value = admin_json(&gw, "/admin/keys").await;
    let k = &keys["keys"][0];
    assert_eq!(
        (k["rpm"].as_u64(), k["name"].as_str()),
        (Some(100), Some("t"))
    );
}

/// Issue 13: the admin API refuses nonsense with a 400 that names the field and the rule, and
/// a missing key is `key_not_found`, not a model error.
#[tokio::test]
async fn issue_13_admin_refuses_nonsense_naming_the_field() {
    let (gw, _oa) = with_store().await;
    let admin = |req: reqwest::RequestBuilder| req.bearer_auth(ADMIN);
    let past = llmux_gateway::store::unix_now() - 60;
    let cases = [
        (json!({"name":"n","budget_cost":-5}), "budget_cost"),
        (json!({"name":"n","expires_at":past}), "expires_at"),
        (
            json!({"name":"n","budget_tokens":u64::MAX}),
            "budget_tokens",
        ),
        (json!({"name":"n","tpm":u64::MAX}), "tpm"),
        (json!({"name":"n","rpm":0}), "rpm"),
        (json!({"name":"n","tpm":0}), "tpm"),
        (json!({"name":""}), "name"),
        (json!({"name":"x".repeat(201)}), "name"),
        (json!({"name":"n","models":[""]}), "models"),
    ];
    let (_, id) = create_key(&gw, json!({"name":"ok"})).await;
    for (body, field) in cases {
        let resp = admin(gw.http.post(format!("{}/admin/keys", gw.url)))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "create {body}");
        let err: Value = resp.json().await.unwrap();
        assert_eq!(err["error"]["param"], field, "create {body}: {err}");
        assert!(
            err["error"]["message"].as_str().unwrap().contains(field),
            "{err}"
        );
        // The same rules hold for updates (the name-only cases aside, which need one field).
        let mut update = body.as_object().unwrap().clone();
        if update.len() > 1 {
            update.remove("name");
        }
        let resp = admin(gw.http.patch(format!("{}/admin/keys/{id}", gw.url)))
            .json(&update)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "update {update:?}");
        let err: Value = resp.json().await.unwrap();
        assert_eq!(err["error"]["param"], field, "update {update:?}: {err}");
    }
    // Nothing was stored by the refused creations.
    let keys = admin_json(&gw, "/admin/keys").await;
    assert_eq!(keys["keys"].as_array().unwrap().len(), 1, "{keys}");

    for since in ["garbage", "2026-02-30", "2026-1-01"] {
        let resp = admin(gw.http.get(format!("{}/admin/usage?since={since}", gw.url)))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "since={since}");
        let err: Value = resp.json().await.unwrap();
        assert_eq!(err["error"]["param"], "since", "{err}");
    }
    let ok = admin(
        gw.http
            .get(format!("{}/admin/usage?since=2026-02-28", gw.url)),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(ok.status(), 200);

    for req in [
        gw.http
            .patch(format!("{}/admin/keys/999999", gw.url))
            .json(&json!({"rpm":5})),
        gw.http.delete(format!("{}/admin/keys/999999", gw.url)),
    ] {
        let resp = admin(req).send().await.unwrap();
        assert_eq!(resp.status(), 404);
        let err: Value = resp.json().await.unwrap();
        assert_eq!(err["error"]["code"], "key_not_found", "{err}");
    }
}

/// A `tracing` writer into a shared buffer, to read what the gateway logged.
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

impl LogBuffer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Virtual and static keys are accepted as `Authorization: Bearer`, `x-api-key`,
/// `x-goog-api-key` and `?key=`, on every ingress; a key in the query never reaches the log.
#[tokio::test(flavor = "current_thread")]
async fn keys_are_accepted_in_every_place_sdks_send_them_and_query_keys_are_not_logged() {
    let logs = LogBuffer::default();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .finish();
    // The runtime is single-threaded: the gateway's tasks log through this thread's default.
    let _guard = tracing::subscriber::set_default(subscriber);

    let (gw, _oa) = with_store().await;
    let (key, id) = create_key(&gw, json!({"name":"where"})).await;
    let body =
        json!({"model":"gpt-4o-mini","max_tokens":5,"messages":[{"role":"user","content":"hi"}]});
    let chat_url = format!("{}/v1/chat/completions", gw.url);
    for k in [key.as_str(), KEY] {
        for header in ["x-api-key", "x-goog-api-key"] {
            let resp = gw
                .http
                .post(&chat_url)
                .header(header, k)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200, "{header}");
        }
        let resp = gw
            .http
            .post(format!("{chat_url}?key={k}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "?key=");
    }
    // The DashScope ingress and the models list take them too.
    let ds = gw
        .http
        .post(format!(
            "{}/api/v1/services/aigc/text-generation/generation",
            gw.url
        ))
        .header("x-api-key", &key)
        .json(&json!({"model":"gpt-4o-mini","input":{"prompt":"x"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(ds.status(), 200);
    let models = gw
        .http
        .get(format!("{}/v1/models?key={key}", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(models.status(), 200);
    // A wrong key in the query is a 401 like any other, and is not logged either.
    let wrong = format!("sk-llmux-{}", "b".repeat(40));
    let resp = gw
        .http
        .post(format!("{chat_url}?key={wrong}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"]["code"],
        "invalid_api_key"
    );

    // Three requests with the virtual key, one DashScope one: recorded under the key.
    let recs = records(&gw, 7).await;
    assert_eq!(recs.iter().filter(|r| r.key_id == Some(id)).count(), 4);
    let text = logs.text();
    assert!(
        text.contains("path=\"/v1/chat/completions\"")
            || text.contains("path=/v1/chat/completions"),
        "the requests were logged: {text}"
    );
    for secret in [key.as_str(), KEY, wrong.as_str()] {
        assert!(!text.contains(secret), "a key was logged");
    }
}
