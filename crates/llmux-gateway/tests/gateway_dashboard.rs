//! The web dashboard: its files are served with a strict policy only when an admin key is set,
//! and every admin API path its script calls exists and answers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use llmux_emulator::Vendor;
use serde_json::json;

const APP_JS: &str = include_str!("../src/dashboard/app.js");

#[tokio::test]
async fn the_dashboard_is_served_with_a_strict_policy() {
    let oa = emulator(Vendor::OpenAi).await;
    let gw = start_with_store(&channel("oa", "openai", &oa, "[\"m\"]", "")).await;
    for (path, ctype) in [
        ("/dashboard", "text/html"),
        ("/dashboard/app.js", "text/javascript"),
        ("/dashboard/style.css", "text/css"),
    ] {
        // No credentials needed for the files themselves: they hold no data.
        let resp = gw
            .http
            .get(format!("{}{path}", gw.url))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let h = resp.headers();
        assert!(
            h["content-type"].to_str().unwrap().starts_with(ctype),
            "{path}"
        );
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"));
        assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"));
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["x-frame-options"], "DENY");
        let body = resp.text().await.unwrap();
        assert!(!body.contains(ADMIN) && !body.contains(KEY));
    }
    let html = gw
        .http
        .get(format!("{}/dashboard", gw.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // The policy forbids inline code: the page must not need any (no bare <script>, no
    // on…= handler attributes).
    assert!(!html.contains("<script>"));
    let handlers = html
        .match_indices(" on")
        .filter(|(i, _)| {
            let rest = &html[i + 3..];
            let name: String = rest.chars().take_while(char::is_ascii_lowercase).collect();
            !name.is_empty() && rest[name.len()..].starts_with('=')
        })
        .count();
    assert_eq!(
        handlers, 0,
        "inline event handlers are blocked by the policy"
    );
    assert!(
        !html.contains("style=\""),
        "inline styles are blocked by the policy"
    );
    assert!(
        html.contains("src=\"/dashboard/app.js\"")
            && html.contains("href=\"/dashboard/style.css\"")
    );
}

#[tokio::test]
async fn without_an_admin_key_there_is_no_dashboard() {
    let oa = emulator(Vendor::OpenAi).await;
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\napi_keys = [\"{KEY}\"]\n\n{}",
        channel("oa", "openai", &oa, "[\"m\"]", "")
    );
    let cfg = llmux_gateway::Config::resolve(
        llmux_gateway::RawConfig::parse(&text, Vec::new()).unwrap(),
        |_| None,
    )
    .unwrap();
    let gw = start_config(cfg).await;
    let resp = gw
        .http
        .get(format!("{}/dashboard", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("admin_key"));
}

/// Every `"/admin/…"` path literal in the script, with any query string cut off.
fn admin_paths_in_script() -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = APP_JS;
    while let Some(i) = rest.find("\"/admin/") {
        let tail = &rest[i + 1..];
        let end = tail.find('"').unwrap();
        let path = tail[..end].split('?').next().unwrap().to_owned();
        if !out.contains(&path) {
            out.push(path);
        }
        rest = &tail[end..];
    }
    out
}

#[tokio::test]
async fn every_admin_call_the_script_makes_exists() {
    let oa = emulator(Vendor::OpenAi).await;
    let gw = start_with_store(&channel("oa", "openai", &oa, "[\"m\"]", "")).await;
    let team = gw
        .http
        .post(format!("{}/admin/teams", gw.url))
        .bearer_auth(ADMIN)
        .json(&json!({"name":"dash-team","budget_tokens":1000,"budget_period":"monthly"}))
        .send()
        .await
        .unwrap();
    assert_eq!(team.status(), 201);
    let (_, id) = create_key(&gw, json!({"name":"dash","rpm":5,"team":"dash-team"})).await;
    let paths = admin_paths_in_script();
    for expected in [
        "/admin/channels",
        "/admin/channels/",
        "/admin/keys",
        "/admin/keys/",
        "/admin/teams",
        "/admin/teams/",
        "/admin/usage",
        "/admin/usage/records",
        "/admin/usage/series",
    ] {
        assert!(
            paths.iter().any(|p| p == expected),
            "{expected} not in {paths:?}"
        );
    }
    for path in &paths {
        let req = match path.as_str() {
            // `"/admin/keys/" + id` with PATCH or DELETE: revoke it.
            "/admin/keys/" => gw.http.delete(format!("{}{path}{id}", gw.url)),
            // `"/admin/teams/" + name` with PATCH or DELETE: read the team there.
            "/admin/teams/" => gw.http.get(format!("{}{path}dash-team", gw.url)),
            // `"/admin/channels/" + name` with PATCH, DELETE or `/test`: test it.
            "/admin/channels/" => gw.http.post(format!("{}{path}oa/test", gw.url)),
            p if p.ends_with('/') => panic!("a path prefix this test does not call: {p}"),
            _ => gw.http.get(format!("{}{path}", gw.url)),
        };
        let resp = req.bearer_auth(ADMIN).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        // And without the key, the API refuses.
        let anon = gw
            .http
            .get(format!("{}{}", gw.url, path.trim_end_matches('/')))
            .send()
            .await
            .unwrap();
        assert_eq!(anon.status(), 401, "{path}");
    }
    // The fields the script reads are the ones the API returns.
    let keys: serde_json::Value = admin_json(&gw, "/admin/keys").await;
    let k = &keys["keys"][0];
    for field in [
        "id",
        "name",
        "prefix",
        "models",
        "rpm",
        "tpm",
        "budget_tokens",
        "budget_cost",
        "spent_tokens",
        "spent_cost",
        "expires_at",
        "revoked",
        "team",
        "team_id",
        "budget_period",
    ] {
        assert!(k.get(field).is_some(), "key field {field} missing: {k}");
        assert!(
            APP_JS.contains(&format!("k.{field}")),
            "the script does not show {field}"
        );
    }
    let teams: serde_json::Value = admin_json(&gw, "/admin/teams").await;
    let t = &teams["teams"][0];
    for field in [
        "id",
        "name",
        "rpm",
        "tpm",
        "budget_tokens",
        "budget_cost",
        "budget_period",
        "spent_tokens",
        "spent_cost",
    ] {
        assert!(t.get(field).is_some(), "team field {field} missing: {t}");
        assert!(
            APP_JS.contains(&format!("t.{field}")),
            "the script does not show the team's {field}"
        );
    }
    // The budget as it stands now, for keys and teams alike, computed by the gateway.
    for (what, now) in [("key", &k["budget_now"]), ("team", &t["budget_now"])] {
        for field in [
            "spent_tokens",
            "spent_cost",
            "resets_at_ms",
            "period_start_ms",
            "timezone",
        ] {
            assert!(
                now.get(field).is_some(),
                "{what} budget_now.{field} missing: {now}"
            );
            assert!(
                APP_JS.contains(&format!("n.{field}")),
                "the script does not show budget_now.{field}"
            );
        }
    }
    assert!(
        k["budget_now"]["resets_at_ms"].is_null(),
        "a key for its life: {k}"
    );
    assert!(
        t["budget_now"]["resets_at_ms"].is_i64(),
        "a monthly team: {t}"
    );
}
