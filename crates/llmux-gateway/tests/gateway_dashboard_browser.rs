//! The dashboard in a real browser (headless Chromium driven through chromedriver on
//! 127.0.0.1:0): sign in with the admin key, see the channels, create a virtual key that then
//! works, see its requests in the charts and in the request log (searched and filtered, with
//! the key's name), revoke it; add a channel against an emulator, test it (ok with the
//! measured latency, then failing with a wrong key), edit, disable, enable and delete it;
//! create a team with a monthly budget and a key in it, see the team's spend and the reset
//! time, edit and delete the team. Every page is saved as a PNG at a laptop's (1366×768) and a
//! phone's (390×844) size in `$LLMUX_SCREENSHOTS`, or `dashboard-screenshots/` in the target
//! directory (the path is printed). `.ci/run` installs Debian's chromium and chromium-driver;
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

/// Where the screenshots go: `$LLMUX_SCREENSHOTS`, or `dashboard-screenshots/` in the target
/// directory.
fn screenshot_dir() -> std::path::PathBuf {
    match std::env::var_os("LLMUX_SCREENSHOTS") {
        Some(d) if !d.is_empty() => d.into(),
        _ => std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .unwrap()
            .join("dashboard-screenshots"),
    }
}

/// Saves the page as `NAME-laptop.png` (1366×768) and `NAME-phone.png` (390×844), and checks
/// that at a phone's width the page itself does not scroll sideways (wide tables scroll in
/// their own box).
async fn shoot(c: &Client, name: &str) {
    let dir = screenshot_dir();
    std::fs::create_dir_all(&dir).unwrap();
    for (size, w, h) in [("laptop", 1366, 768), ("phone", 390, 844)] {
        c.set_window_size(w, h).await.unwrap();
        // The charts redraw for the new width shortly after a resize: wait (bounded) until
        // every visible one is as wide as its box.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let fitted = c
                .execute(
                    "return [...document.querySelectorAll('.plot')].filter((p) => p.offsetParent)\
                     .every((p) => { const s = p.querySelector('svg'); return s && \
                     Number(s.getAttribute('width')) === Math.max(260, Math.floor(p.clientWidth)); });",
                    vec![],
                )
                .await
                .unwrap();
            if fitted.as_bool() == Some(true) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name}: the charts were not redrawn at {w}px"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if size == "phone" {
            let overflow = c
                .execute(
                    "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
                    vec![],
                )
                .await
                .unwrap();
            assert!(
                overflow.as_i64().unwrap_or(0) <= 0,
                "{name}: the page scrolls sideways on a phone by {overflow}px"
            );
        }
        let png = c.screenshot().await.unwrap();
        let path = dir.join(format!("{name}-{size}.png"));
        std::fs::write(&path, png).unwrap();
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            format!("screenshot: {}\n", path.display()).as_bytes(),
        );
    }
    c.set_window_size(1366, 768).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_see_charts_channels_search_requests_create_use_edit_and_revoke_a_key() {
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

    // The right one opens the overview: nothing has been requested yet.
    fill(c, "#admin-key", ADMIN).await;
    click(c, "#login-form button").await;
    text_until(c, "#charts-note", |t| t.contains("No requests")).await;

    // The channels with their breaker state and readiness.
    click(c, "nav button[data-tab=channels]").await;
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

    // Two more with the key (one streamed, so it has a time to first token), one with the
    // static key: four records.
    for stream in [true, false] {
        let resp = gw
            .http
            .post(format!("{}/v1/chat/completions", gw.url))
            .bearer_auth(&key)
            .json(
                &json!({"model":"m","stream":stream,"messages":[{"role":"user","content":"more"}]}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.bytes().await.unwrap();
    }
    let resp = gw
        .post("/v1/chat/completions")
        .json(&json!({"model":"m","messages":[{"role":"user","content":"static"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let recs = records(&gw, 4).await;
    let key_id = recs.iter().find_map(|r| r.key_id).unwrap();

    // The overview charts them: totals, one series per model, a line in each chart.
    click(c, "nav button[data-tab=charts]").await;
    text_until(c, "#tiles [data-tile=requests]", |t| t.contains('4')).await;
    let legend = text_until(c, "#legend", |t| t.contains('m')).await;
    assert!(legend.contains("m · 4"), "{legend}");
    let lines = c
        .find_all(Locator::Css("#charts svg path.line"))
        .await
        .unwrap()
        .len();
    // Requests, tokens, cost, errors: one line each; latency and TTFT: p50 and p99.
    assert_eq!(lines, 8, "lines drawn");
    let note = text_until(c, "#charts-note", |t| t.contains("buckets")).await;
    assert!(note.contains("by model"), "{note}");
    // By key: the key's name, and the static key's requests as `no key`.
    c.find(Locator::Css("#charts-form select[name=by]"))
        .await
        .unwrap()
        .select_by_value("key")
        .await
        .unwrap();
    let legend = text_until(c, "#legend", |t| t.contains("from-browser")).await;
    assert!(
        legend.contains("from-browser · 3") && legend.contains("no key · 1"),
        "{legend}"
    );
    shoot(c, "overview").await;

    // The request log names the key, and searches and filters.
    click(c, "nav button[data-tab=requests]").await;
    let reqs = text_until(c, "#requests tbody", |t| t.contains("from-browser")).await;
    assert!(
        reqs.contains("oa") && reqs.contains("200") && reqs.contains("static key"),
        "{reqs}"
    );
    assert!(
        !reqs.contains(&format!("#{key_id}")),
        "a name, not an id: {reqs}"
    );
    text_until(c, "#search-note", |t| t.starts_with("4 requests")).await;
    c.find(Locator::Css("#search-form select[name=key]"))
        .await
        .unwrap()
        .select_by_value(&key_id.to_string())
        .await
        .unwrap();
    text_until(c, "#search-note", |t| {
        t.starts_with("3 requests") && t.contains("filtered")
    })
    .await;
    let rows = text_until(c, "#requests tbody", |t| !t.contains("static key")).await;
    assert_eq!(rows.matches("from-browser").count(), 3, "{rows}");
    // Text search over the request id: the last characters of one record's id find it alone.
    let one = &recs[0].request_id;
    let tail = &one[one.len() - 10..];
    click(c, "#search-form button[type=reset]").await;
    text_until(c, "#search-note", |t| t.starts_with("4 requests")).await;
    fill(c, "#search-form input[name=q]", tail).await;
    click(c, "#search-form button[type=submit]").await;
    text_until(c, "#search-note", |t| t.starts_with("1 request ")).await;
    // Failed requests: none.
    click(c, "#search-form button[type=reset]").await;
    text_until(c, "#search-note", |t| t.starts_with("4 requests")).await;
    c.find(Locator::Css("#search-form select[name=status]"))
        .await
        .unwrap()
        .select_by_value("error")
        .await
        .unwrap();
    text_until(c, "#requests tbody", |t| t.contains("nothing yet")).await;
    click(c, "#search-form button[type=reset]").await;
    text_until(c, "#search-note", |t| t.starts_with("4 requests")).await;
    shoot(c, "requests").await;
    click(c, "nav button[data-tab=usage]").await;
    c.find(Locator::Css("#usage-form select[name=by]"))
        .await
        .unwrap()
        .select_by_value("key")
        .await
        .unwrap();
    click(c, "#usage-form button").await;
    let usage = text_until(c, "#usage tbody", |t| t.contains("from-browser")).await;
    assert!(
        usage.contains("static key") && !usage.contains(&format!("#{key_id}")),
        "names, not ids: {usage}"
    );
    text_until(c, "#usage tfoot", |t| {
        t.contains("total") && t.contains('4')
    })
    .await;
    shoot(c, "usage").await;
    click(c, "nav button[data-tab=channels]").await;
    text_until(c, "#channels tbody", |t| t.contains("oa")).await;
    shoot(c, "channels").await;

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

    shoot(c, "keys").await;

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

/// The master key that seals channel credentials in this test (32 bytes, hex).
const MASTER: &str = "0202020202020202020202020202020202020202020202020202020202020202";
/// The time zone budget periods follow in this test (UTC+8, no daylight saving time).
const ZONE: &str = "Asia/Shanghai";

/// A gateway on an in-memory database that can store channels (credentials sealed under
/// [`MASTER`]), with budget periods in [`ZONE`], plus `rest` (the file's channels).
async fn gateway_with_master_key(rest: &str) -> Harness {
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\napi_keys = [\"{KEY}\"]\nadmin_key = \"{ADMIN}\"\n\
         database = \"sqlite::memory:\"\nbudget_timezone = \"{ZONE}\"\nshutdown_grace = \"10s\"\n\n{rest}"
    );
    let raw = llmux_gateway::RawConfig::parse(&text, Vec::new()).expect("config parses");
    let cfg = llmux_gateway::Config::resolve(raw, |k| {
        (k == "LLMUX_MASTER_KEY").then(|| MASTER.to_owned())
    })
    .expect("config resolves");
    start_config(cfg).await
}

/// The next start of a daily, weekly or monthly period in [`ZONE`] as the page writes it
/// (`2027-01-01 00:00 Asia/Shanghai`), and as unix milliseconds.
fn next_start(period: &str) -> (String, i64) {
    use jiff::ToSpan;
    let tz = jiff::tz::TimeZone::get(ZONE).unwrap();
    let today = jiff::Timestamp::now().to_zoned_datetime(tz.clone()).date();
    let next = match period {
        "daily" => today.tomorrow().unwrap(),
        "weekly" => today
            .checked_add((7 - i64::from(today.weekday().to_monday_zero_offset())).days())
            .unwrap(),
        "monthly" => today.first_of_month().checked_add(1.month()).unwrap(),
        other => panic!("no period {other}"),
    };
    let ms = next
        .to_zoned_datetime(tz)
        .unwrap()
        .start_of_day()
        .unwrap()
        .timestamp()
        .as_millisecond();
    (format!("{next} 00:00 {ZONE}"), ms)
}

async fn select(c: &Client, css: &str, value: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .select_by_value(value)
        .await
        .unwrap();
}

async fn set_field(c: &Client, css: &str, value: &str) {
    let el = c.find(Locator::Css(css)).await.unwrap();
    el.clear().await.unwrap();
    el.send_keys(value).await.unwrap();
}

/// How many elements match `css`.
async fn count(c: &Client, css: &str) -> usize {
    c.find_all(Locator::Css(css)).await.unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teams_with_budgets_and_their_reset_channels_added_tested_toggled_edited_and_deleted() {
    let Some(d) = driver().await else { return };
    let c = &d.client;
    let oa = emulator(Vendor::OpenAi).await;
    let gw = gateway_with_master_key(&channel("oa", "openai", &oa, "[\"m\", \"m2\"]", "")).await;
    c.goto(&format!("{}/dashboard", gw.url)).await.unwrap();
    fill(c, "#admin-key", ADMIN).await;
    click(c, "#login-form button").await;
    text_until(c, "#charts-note", |t| t.contains("No requests")).await;

    // ---- Teams: one with a monthly budget; its reset is the next month's first local
    // midnight in the configured zone.
    click(c, "nav button[data-tab=teams]").await;
    text_until(c, "#teams tbody", |t| t.contains("nothing yet")).await;
    fill(c, "#team-form input[name=name]", "research").await;
    fill(c, "#team-form input[name=budget_tokens]", "100000").await;
    select(c, "#team-form select[name=budget_period]", "monthly").await;
    click(c, "#team-form button[type=submit]").await;
    let (month_text, month_ms) = next_start("monthly");
    let row = text_until(c, "#teams tbody", |t| t.contains("research")).await;
    assert!(
        row.contains("100,000 tokens") && row.contains("monthly") && row.contains(&month_text),
        "{row}"
    );
    let teams = admin_json(&gw, "/admin/teams").await;
    assert_eq!(teams["teams"][0]["budget_period"], "monthly", "{teams}");
    assert_eq!(
        teams["teams"][0]["budget_now"]["resets_at_ms"], month_ms,
        "{teams}"
    );

    // ---- A key in it, with its own daily budget: the keys table names the team and the
    // key's own reset (the next local midnight).
    click(c, "nav button[data-tab=keys]").await;
    text_until(c, "#key-form select[name=team]", |t| t.contains("research")).await;
    fill(c, "#key-form input[name=name]", "team-key").await;
    select(c, "#key-form select[name=team]", "research").await;
    fill(c, "#key-form input[name=budget_tokens]", "5000").await;
    select(c, "#key-form select[name=budget_period]", "daily").await;
    click(c, "#key-form button[type=submit]").await;
    let key = text_until(c, "#new-key-value", |t| t.starts_with("sk-llmux-")).await;
    let (day_text, _) = next_start("daily");
    let row = text_until(c, "#keys tbody", |t| t.contains("team-key")).await;
    assert!(
        row.contains("research") && row.contains("5,000 tokens per day") && row.contains(&day_text),
        "{row}"
    );
    let keys = admin_json(&gw, "/admin/keys").await;
    assert_eq!(keys["keys"][0]["team"], "research", "{keys}");
    assert_eq!(keys["keys"][0]["budget_period"], "daily", "{keys}");
    // Names are data, never markup: a key named like an element is shown as that text.
    create_key(&gw, json!({"name": "<img src=x id=pwned>"})).await;
    click(c, "nav button[data-tab=keys]").await;
    text_until(c, "#keys tbody", |t| t.contains("<img src=x id=pwned>")).await;
    assert_eq!(
        count(c, "#pwned").await + count(c, "#keys tbody img").await,
        0,
        "a name became markup"
    );

    // Two requests with it (model m), one with the static key (model m2).
    for (bearer, model) in [(key.as_str(), "m"), (key.as_str(), "m"), (KEY, "m2")] {
        let resp = gw
            .http
            .post(format!("{}/v1/chat/completions", gw.url))
            .bearer_auth(bearer)
            .json(&json!({"model": model, "messages":[{"role":"user","content":"hello team"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let recs = records(&gw, 3).await;
    let team_tokens: u64 = recs
        .iter()
        .filter(|r| r.team_id.is_some())
        .map(|r| r.billed_tokens())
        .sum();
    assert!(team_tokens > 0);
    let key_id = recs.iter().find_map(|r| r.key_id).unwrap();

    // The team's spend this period, as the store counted it, and its key by name.
    click(c, "nav button[data-tab=teams]").await;
    let row = text_until(c, "#teams tbody", |t| t.contains("team-key")).await;
    assert!(
        row.contains(&format!("{team_tokens} tok")),
        "{team_tokens}: {row}"
    );
    let teams = admin_json(&gw, "/admin/teams").await;
    assert_eq!(teams["teams"][0]["budget_now"]["spent_tokens"], team_tokens);
    shoot(c, "teams").await;
    click(c, "nav button[data-tab=keys]").await;
    text_until(c, "#keys tbody", |t| t.contains("research")).await;
    shoot(c, "keys-in-team").await;

    // Edit the team: a weekly budget now resets next Monday.
    click(c, "nav button[data-tab=teams]").await;
    click(c, "#teams button.edit").await;
    let budget = c
        .find(Locator::Css("#team-edit-form input[name=budget_tokens]"))
        .await
        .unwrap();
    assert_eq!(
        budget.prop("value").await.unwrap().as_deref(),
        Some("100000")
    );
    set_field(c, "#team-edit-form input[name=budget_tokens]", "200000").await;
    select(c, "#team-edit-form select[name=budget_period]", "weekly").await;
    shoot(c, "teams-edit").await;
    click(c, "#team-edit-form button[type=submit]").await;
    let (week_text, week_ms) = next_start("weekly");
    let row = text_until(c, "#teams tbody", |t| t.contains("weekly")).await;
    assert!(
        row.contains("200,000 tokens") && row.contains(&week_text),
        "{row}"
    );
    let teams = admin_json(&gw, "/admin/teams").await;
    assert_eq!(teams["teams"][0]["budget_tokens"], 200_000, "{teams}");
    assert_eq!(
        teams["teams"][0]["budget_now"]["resets_at_ms"], week_ms,
        "{teams}"
    );

    // ---- The overview by team names it; the static key's request is outside any team.
    click(c, "nav button[data-tab=charts]").await;
    text_until(c, "#tiles [data-tile=requests]", |t| t.contains('3')).await;
    select(c, "#charts-form select[name=by]", "team").await;
    let legend = text_until(c, "#legend", |t| t.contains("research")).await;
    assert!(
        legend.contains("research · 2") && legend.contains("no team · 1"),
        "{legend}"
    );
    let note = text_until(c, "#charts-note", |t| t.contains("by team")).await;
    assert!(note.contains("buckets"), "{note}");
    shoot(c, "overview-by-team").await;

    // ---- The request log: names of key and team, and each filter.
    click(c, "nav button[data-tab=requests]").await;
    let rows = text_until(c, "#requests tbody", |t| t.contains("research")).await;
    assert_eq!(rows.matches("team-key").count(), 2, "{rows}");
    assert!(!rows.contains(&format!("#{key_id}")), "{rows}");
    text_until(c, "#search-note", |t| t.starts_with("3 requests")).await;
    select(c, "#search-form select[name=range]", "3600000").await;
    text_until(c, "#search-note", |t| {
        t.starts_with("3 requests") && t.contains("filtered")
    })
    .await;
    fill(c, "#search-form input[name=model]", "m2").await;
    click(c, "#search-form button[type=submit]").await;
    let one = text_until(c, "#search-note", |t| t.starts_with("1 request ")).await;
    assert!(one.contains("filtered"), "{one}");
    let rows = text_until(c, "#requests tbody", |t| t.contains("static key")).await;
    assert!(!rows.contains("team-key"), "{rows}");
    click(c, "#search-form button[type=reset]").await;
    text_until(c, "#search-note", |t| {
        t.starts_with("3 requests") && !t.contains("filtered")
    })
    .await;
    select(c, "#search-form select[name=key]", &key_id.to_string()).await;
    text_until(c, "#search-note", |t| t.starts_with("2 requests")).await;
    select(c, "#search-form select[name=status]", "4xx").await;
    text_until(c, "#requests tbody", |t| t.contains("nothing yet")).await;
    select(c, "#search-form select[name=status]", "ok").await;
    text_until(c, "#search-note", |t| t.starts_with("2 requests")).await;
    shoot(c, "requests-filtered").await;
    click(c, "#search-form button[type=reset]").await;
    text_until(c, "#search-note", |t| t.starts_with("3 requests")).await;

    // ---- Delete the team (confirming): its key stays, outside any team.
    click(c, "nav button[data-tab=teams]").await;
    click(c, "#teams button.danger").await;
    c.accept_alert().await.unwrap();
    text_until(c, "#teams tbody", |t| t.contains("nothing yet")).await;
    let keys = admin_json(&gw, "/admin/keys").await;
    assert!(keys["keys"][0]["team"].is_null(), "{keys}");
    assert!(!keys["keys"][0]["revoked"].as_bool().unwrap(), "{keys}");

    // ---- Channels: add one against the emulator (its key sealed, shown masked).
    click(c, "nav button[data-tab=channels]").await;
    text_until(c, "#channels tbody", |t| t.contains("oa")).await;
    assert_eq!(
        count(c, "#channels tr[data-channel=oa] button.danger").await
            + count(c, "#channels tr[data-channel=oa] button.edit").await,
        0,
        "a channel of llmux.toml is changed there, not here"
    );
    click(c, "#channel-add summary").await;
    let upstream_key = Vendor::OpenAi.default_key();
    fill(c, "#channel-form input[name=name]", "browser-ch").await;
    fill(c, "#channel-form input[name=provider]", "openai").await;
    fill(c, "#channel-form input[name=api_key]", upstream_key).await;
    fill(
        c,
        "#channel-form input[name=base_url]",
        &oa.base_url_for("openai").unwrap(),
    )
    .await;
    fill(
        c,
        "#channel-form input[name=models]",
        "fast=gpt-4o-mini, gpt-4o",
    )
    .await;
    fill(c, "#channel-form input[name=weight]", "3").await;
    fill(c, "#channel-form input[name=priority]", "5").await;
    click(c, "#channel-form button[type=submit]").await;
    let row_css = "#channels tr[data-channel=browser-ch]";
    let row = text_until(c, row_css, |t| t.contains("openai")).await;
    assert!(
        row.contains("enabled") && row.contains("2 · fast, gpt-4o") && row.contains("closed"),
        "{row}"
    );
    let listed = admin_json(&gw, "/admin/channels").await;
    let ch = listed["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "browser-ch")
        .unwrap()
        .clone();
    assert_eq!(
        (ch["weight"].as_u64(), ch["priority"].as_i64()),
        (Some(3), Some(5)),
        "{ch}"
    );
    assert_eq!(ch["models"]["fast"], "gpt-4o-mini", "{ch}");
    let masked = ch["keys"][0].as_str().unwrap();
    assert_ne!(masked, upstream_key);
    assert!(row.contains(masked), "the masked key is shown: {row}");
    let page = c.source().await.unwrap();
    assert!(
        !page.contains(upstream_key),
        "the key never comes back to the page"
    );

    // Test it: a real call, slowed by 400 ms at the emulator; the page shows the latency the
    // gateway measured.
    oa.clear_requests();
    oa.push_fault(llmux_emulator::Fault::once(
        llmux_emulator::FaultKind::DelayFirstByte(Duration::from_millis(400)),
    ));
    click(c, &format!("{row_css} button.test")).await;
    let result = text_until(c, &format!("{row_css} td.test-result"), |t| {
        t.starts_with("ok · ")
    })
    .await;
    let latency: u64 = result
        .trim_start_matches("ok · ")
        .split(" ms")
        .next()
        .unwrap()
        .replace(',', "")
        .parse()
        .unwrap_or_else(|_| panic!("no latency in {result:?}"));
    assert!((400..60_000).contains(&latency), "{result}");
    assert!(result.ends_with("fast"), "{result}");
    let sent = oa.requests();
    assert_eq!(sent.len(), 1, "one upstream call");
    assert_eq!(sent[0].json().unwrap()["model"], "gpt-4o-mini");
    shoot(c, "channels-tested").await;

    // Discover: the upstream's own model list, asked now, shown in the row.
    oa.clear_requests();
    click(c, &format!("{row_css} button.discover")).await;
    let models = text_until(c, &format!("{row_css} td:nth-child(3)"), |t| {
        t.contains("discovered")
    })
    .await;
    assert!(models.ends_with(" · 6 discovered"), "{models}");
    let asked = oa.requests();
    assert_eq!(asked.len(), 1, "one upstream call");
    assert_eq!(
        (asked[0].method.as_str(), asked[0].path.as_str()),
        ("GET", "/v1/models")
    );

    // Edit it: weight 9 and a wrong key; the test then fails, saying why.
    click(c, &format!("{row_css} button.edit")).await;
    let weight = c
        .find(Locator::Css("#channel-edit-form input[name=weight]"))
        .await
        .unwrap();
    assert_eq!(weight.prop("value").await.unwrap().as_deref(), Some("3"));
    set_field(c, "#channel-edit-form input[name=weight]", "9").await;
    fill(
        c,
        "#channel-edit-form input[name=api_key]",
        "sk-wrong-key-for-this-test",
    )
    .await;
    shoot(c, "channels-edit").await;
    click(c, "#channel-edit-form button[type=submit]").await;
    text_until(c, &format!("{row_css} td:nth-child(9)"), |t| t == "9").await;
    let listed = admin_json(&gw, "/admin/channels").await;
    let ch = listed["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "browser-ch")
        .unwrap()
        .clone();
    assert_eq!(ch["weight"], 9, "{ch}");
    assert!(ch["keys"][0].as_str().unwrap().ends_with("test"), "{ch}");
    assert_eq!(ch["models"]["fast"], "gpt-4o-mini", "models kept: {ch}");
    click(c, &format!("{row_css} button.test")).await;
    let failed = text_until(c, &format!("{row_css} td.test-result"), |t| {
        t.starts_with("failed")
    })
    .await;
    assert!(failed.contains("authentication"), "{failed}");

    // Disable it: no longer routed; enable it again.
    click(c, &format!("{row_css} button.toggle")).await;
    text_until(c, &format!("{row_css} td:nth-child(4)"), |t| {
        t == "disabled"
    })
    .await;
    let listed = admin_json(&gw, "/admin/channels").await;
    assert!(listed["channels"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["name"] == "browser-ch" && c["enabled"] == false));
    let resp = gw
        .post("/v1/chat/completions")
        .json(&json!({"model":"fast","messages":[{"role":"user","content":"hi"}]}))
        .send()
        .await
        .unwrap();
    assert_ne!(resp.status(), 200, "a disabled channel serves nothing");
    shoot(c, "channels-disabled").await;
    click(c, &format!("{row_css} button.toggle")).await;
    text_until(c, &format!("{row_css} td:nth-child(4)"), |t| t == "enabled").await;

    // An API error is shown in the tab: a second channel of the same name.
    fill(c, "#channel-form input[name=name]", "browser-ch").await;
    fill(c, "#channel-form input[name=provider]", "openai").await;
    fill(c, "#channel-form input[name=api_key]", "sk-another").await;
    fill(c, "#channel-form input[name=models]", "gpt-4o").await;
    click(c, "#channel-form button[type=submit]").await;
    let err = text_until(c, "#error-channels", |t| t.contains("exists")).await;
    assert!(err.contains("browser-ch"), "{err}");

    // Delete it (confirming).
    click(c, &format!("{row_css} button.danger")).await;
    c.accept_alert().await.unwrap();
    text_until(c, "#channels tbody", |t| !t.contains("browser-ch")).await;
    let listed = admin_json(&gw, "/admin/channels").await;
    assert!(!listed["channels"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["name"] == "browser-ch"));
    d.client.clone().close().await.unwrap();
}
