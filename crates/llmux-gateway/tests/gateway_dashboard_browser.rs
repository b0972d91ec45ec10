//! The dashboard in a real browser (headless Chromium driven through chromedriver on
//! 127.0.0.1:0): sign in with the admin key, see the channels, create a virtual key that then
//! works, see its request, revoke it. `.ci/run` installs Debian's chromium and chromium-driver;
//! under `CI=true` a missing driver fails the test, elsewhere it is skipped with a loud line.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use fantoccini::{Client, ClientBuilder, Locator};
use llmux_emulator::Vendor;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

struct Driver {
    _child: tokio::process::Child,
    _profile: tempfile::TempDir,
    client: Client,
}

/// chromedriver on a free loopback port and a headless Chromium session, or `None` (skip).
async fn driver() -> Option<Driver> {
    let exe = std::env::var("LLMUX_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".to_owned());
    let browser =
        std::env::var("LLMUX_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    let spawned = tokio::process::Command::new(&exe)
        .args(["--port=0", "--allowed-ips=127.0.0.1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let mut child = match spawned {
        Ok(c) if std::path::Path::new(&browser).exists() => c,
        other => {
            let why = match other {
                Ok(_) => format!("no browser at {browser}"),
                Err(e) => format!("cannot run {exe}: {e}"),
            };
            assert!(
                !in_ci(),
                "the dashboard browser test needs chromium and chromedriver under CI=true: {why}"
            );
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                format!("\n!!!!!!!! SKIPPING the dashboard browser test: {why}. Install Debian's chromium and chromium-driver. !!!!!!!!\n").as_bytes(),
            );
            return None;
        }
    };
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let port = loop {
        let line = lines
            .next_line()
            .await
            .unwrap()
            .expect("chromedriver printed its port");
        if let Some(rest) = line.split("started successfully on port ").nth(1) {
            break rest.trim_end_matches('.').trim().parse::<u16>().unwrap();
        }
    };
    let profile = tempfile::tempdir().unwrap();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": browser,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--no-first-run", "--disable-extensions",
                     format!("--user-data-dir={}", profile.path().display())],
        }),
    );
    // Plain HTTP to the local driver: no TLS stack needed.
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let client = ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a browser session");
    Some(Driver {
        _child: child,
        _profile: profile,
        client,
    })
}

/// Waits (bounded) until the element's text satisfies `ok`; returns that text.
async fn text_until(c: &Client, css: &str, ok: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut last = String::new();
    loop {
        if let Ok(el) = c.find(Locator::Css(css)).await {
            if let Ok(t) = el.text().await {
                if ok(&t) {
                    return t;
                }
                last = t;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "`{css}` never matched; last text: {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn fill(c: &Client, css: &str, value: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .send_keys(value)
        .await
        .unwrap();
}

/// Clicks the element; tables are re-rendered on refresh, so an element found just before a
/// refresh may be gone by the click: find it again (bounded).
async fn click(c: &Client, css: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let res = match c.find(Locator::Css(css)).await {
            Ok(el) => el.click().await,
            Err(e) => Err(e),
        };
        match res {
            Ok(()) => return,
            Err(e) => assert!(
                tokio::time::Instant::now() < deadline,
                "cannot click `{css}`: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_see_channels_create_use_edit_and_revoke_a_key() {
    let Some(d) = driver().await else { return };
    let c = &d.client;
    let oa = emulator(Vendor::OpenAi).await;
    let gw = start_with_store(&channel("oa", "openai", &oa, "[\"m\"]", "")).await;

    c.goto(&format!("{}/dashboard", gw.url)).await.unwrap();
    // A wrong admin key is refused and nothing is shown.
    fill(c, "#admin-key", "not-the-admin-key").await;
    click(c, "#login-form button").await;
    text_until(c, "#login-error", |t| t.contains("refused")).await;
    assert!(!c
        .find(Locator::Css("#app"))
        .await
        .unwrap()
        .is_displayed()
        .await
        .unwrap());

    // The right one shows the channels with their breaker state and readiness.
    fill(c, "#admin-key", ADMIN).await;
    click(c, "#login-form button").await;
    let row = text_until(c, "#channels tbody", |t| t.contains("oa")).await;
    assert!(
        row.contains("openai") && row.contains("closed") && row.contains('m'),
        "{row}"
    );
    text_until(c, "#ready", |t| t.contains("ready") && t.contains("1 of 1")).await;

    // Create a key with an RPM limit; it is shown once and works at once.
    click(c, "nav button[data-tab=keys]").await;
    fill(c, "#key-form input[name=name]", "from-browser").await;
    fill(c, "#key-form input[name=rpm]", "7").await;
    fill(c, "#key-form input[name=models]", "m").await;
    click(c, "#key-form button").await;
    let key = text_until(c, "#new-key-value", |t| t.starts_with("sk-llmux-")).await;
    let listed = text_until(c, "#keys tbody", |t| t.contains("from-browser")).await;
    assert!(
        listed.contains("active") && listed.contains('7'),
        "{listed}"
    );
    let resp = gw
        .http
        .post(format!("{}/v1/chat/completions", gw.url))
        .bearer_auth(&key)
        .json(&json!({"model":"m","messages":[{"role":"user","content":"from the dashboard"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // The request shows up under Requests (once the recorder wrote it).
    let recs = records(&gw, 1).await;
    click(c, "nav button[data-tab=requests]").await;
    let reqs = text_until(c, "#requests tbody", |t| t.contains("oa")).await;
    assert!(
        reqs.contains(&recs[0].key_id.unwrap().to_string()) && reqs.contains("200"),
        "{reqs}"
    );
    click(c, "nav button[data-tab=usage]").await;
    text_until(c, "#usage tfoot", |t| {
        t.contains("total") && t.contains('1')
    })
    .await;

    // Edit it: the form starts from the key's values; raise RPM, clear the model list.
    click(c, "nav button[data-tab=keys]").await;
    click(c, "#keys button.edit").await;
    let rpm = c
        .find(Locator::Css("#edit-form input[name=rpm]"))
        .await
        .unwrap();
    assert_eq!(rpm.prop("value").await.unwrap().as_deref(), Some("7"));
    rpm.clear().await.unwrap();
    rpm.send_keys("42").await.unwrap();
    c.find(Locator::Css("#edit-form input[name=models]"))
        .await
        .unwrap()
        .clear()
        .await
        .unwrap();
    click(c, "#edit-form button[type=submit]").await;
    let listed = text_until(c, "#keys tbody", |t| t.contains("42")).await;
    assert!(listed.contains("all"), "{listed}");
    let keys: serde_json::Value = admin_json(&gw, "/admin/keys").await;
    let k = &keys["keys"][0];
    assert_eq!(k["rpm"], 42, "{keys}");
    assert_eq!(k["models"], json!([]), "{keys}");
    assert_eq!(k["name"], "from-browser", "{keys}");

    // Revoke it (confirming the dialog): the key is refused from then on.
    click(c, "#keys button.danger").await;
    c.accept_alert().await.unwrap();
    text_until(c, "#keys tbody", |t| t.contains("revoked")).await;
    let resp = gw
        .http
        .post(format!("{}/v1/chat/completions", gw.url))
        .bearer_auth(&key)
        .json(&json!({"model":"m","messages":[{"role":"user","content":"again"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    // Signing out forgets the admin key.
    click(c, "#signout").await;
    text_until(c, "#status", |t| t == "not signed in").await;
    let stored = c
        .execute("return sessionStorage.getItem('llmux-admin-key');", vec![])
        .await
        .unwrap();
    assert!(stored.is_null(), "{stored}");
    d.client.clone().close().await.unwrap();
}
