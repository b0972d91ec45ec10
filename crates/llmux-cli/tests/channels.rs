//! `llmux channels …` through the built binary against a gateway in this process.

mod common;

use common::run;
use llmux_emulator::{Emulator, EmulatorConfig, Vendor};
use llmux_gateway::{Config, Gateway, RawConfig, ServeOptions};

const ADMIN: &str = "adm-cli-channels";
const UPSTREAM_KEY: &str = "sk-cli-upstream-key-000042";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_are_added_listed_changed_tested_and_deleted_from_the_cli() {
    let emu = Emulator::start(EmulatorConfig::new(Vendor::OpenAi).with_keys([UPSTREAM_KEY]))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_key = \"{ADMIN}\"\napi_keys = [\"sk-client\"]\ndatabase = \"sqlite://{}\"\n",
        dir.path().join("gw.db").display()
    );
    let raw = RawConfig::parse(&text, Vec::new()).unwrap();
    let master = "2".repeat(64);
    let cfg = Config::resolve(raw, |k| (k == "LLMUX_MASTER_KEY").then(|| master.clone())).unwrap();
    let gw = Gateway::bind(cfg, ServeOptions::default()).await.unwrap();
    let url = format!("http://{}", gw.local_addr());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(gw.run(async move {
        let _ = rx.await;
    }));
    let env = [
        ("LLMUX_URL", url.clone()),
        ("LLMUX_ADMIN_KEY", ADMIN.to_owned()),
        ("UPSTREAM", UPSTREAM_KEY.to_owned()),
    ];
    let base = emu.base_url_for("openai").unwrap();

    let out = run(
        &[
            "channels",
            "add",
            "cli",
            "--provider",
            "openai",
            "--base-url",
            &base,
            "--api-key-env",
            "UPSTREAM",
            "--models",
            "m,pub=up",
        ],
        &env,
        None,
    )
    .await;
    let line = out.ok().to_owned();
    assert!(line.starts_with("cli "), "{line}");
    assert!(
        line.contains("source=api") && line.contains("models=m,pub=up"),
        "{line}"
    );
    assert!(
        line.contains("keys=sk-…0042") && !line.contains(UPSTREAM_KEY),
        "{line}"
    );

    let listed = run(&["channels", "list"], &env, None).await;
    assert!(listed.ok().contains("cli "), "{listed:#?}");
    let tested = run(&["channels", "test", "cli", "--model", "pub"], &env, None).await;
    assert!(
        tested.ok().starts_with("ok cli model=pub latency_ms="),
        "{tested:#?}"
    );
    assert_eq!(
        emu.requests().last().unwrap().json().unwrap()["model"],
        "up"
    );

    // Discovery asks the upstream's own model list and serves it beside the configured models.
    let found = run(&["channels", "discover", "cli"], &env, None).await;
    let line = found.ok().to_owned();
    assert!(
        line.starts_with("discovered cli: 6 upstream models (0 skipped); serves "),
        "{line}"
    );
    let serves: Vec<&str> = line.rsplit("serves ").next().unwrap().split(',').collect();
    for m in ["m", "pub", "gpt-4o-mini", "text-embedding-3-small"] {
        assert!(serves.contains(&m), "{m} in {serves:?}");
    }
    let asked = emu.requests().last().unwrap().clone();
    assert_eq!(
        (asked.method.as_str(), asked.path.as_str()),
        ("GET", "/v1/models")
    );
    let out = run(
        &["channels", "update", "cli", "--discover", "6h"],
        &env,
        None,
    )
    .await;
    assert!(out.ok().starts_with("cli "), "{out:#?}");
    let bad = run(
        &["channels", "update", "cli", "--discover", "soon"],
        &env,
        None,
    )
    .await;
    assert!(bad.err_line().contains("discover"), "{bad:#?}");

    let out = run(&["channels", "disable", "cli"], &env, None).await;
    assert!(out.ok().contains(" disabled "), "{out:#?}");
    let out = run(&["channels", "enable", "cli"], &env, None).await;
    assert!(out.ok().contains(" enabled "), "{out:#?}");
    let out = run(
        &[
            "channels",
            "update",
            "cli",
            "--weight",
            "5",
            "--api-key",
            "sk-wrong-upstream-key-0001",
        ],
        &env,
        None,
    )
    .await;
    assert!(
        out.ok().contains("weight=5") && out.stdout.contains("keys=sk-…0001"),
        "{out:#?}"
    );
    // The upstream refuses the new key: the test fails with one line.
    let failed = run(&["channels", "test", "cli"], &env, None).await;
    assert!(failed.err_line().contains("authentication"), "{failed:#?}");

    // Errors are one line with a non-zero exit.
    let dup = run(
        &[
            "channels",
            "add",
            "cli",
            "--provider",
            "openai",
            "--models",
            "m",
            "--api-key-env",
            "UPSTREAM",
        ],
        &env,
        None,
    )
    .await;
    assert!(dup.err_line().contains("409"), "{dup:#?}");
    let bad = run(
        &[
            "channels",
            "add",
            "x",
            "--provider",
            "nope",
            "--models",
            "m",
        ],
        &env,
        None,
    )
    .await;
    assert!(bad.err_line().contains("provider"), "{bad:#?}");
    let no_key = run(&["channels", "list"], &[("LLMUX_URL", url.clone())], None).await;
    assert!(no_key.err_line().contains("admin key"), "{no_key:#?}");
    let wrong_key = run(
        &["channels", "list", "--admin-key", "nope"],
        &[("LLMUX_URL", url.clone())],
        None,
    )
    .await;
    assert!(wrong_key.err_line().contains("401"), "{wrong_key:#?}");

    let out = run(&["channels", "delete", "cli"], &env, None).await;
    assert_eq!(out.ok(), "deleted channel cli\n");
    let gone = run(&["channels", "delete", "cli"], &env, None).await;
    assert!(gone.err_line().contains("404"), "{gone:#?}");
    let down = run(
        &["channels", "list", "--url", "http://127.0.0.1:9"],
        &env,
        None,
    )
    .await;
    assert!(
        down.err_line().contains("cannot reach the gateway"),
        "{down:#?}"
    );

    let _ = tx.send(());
    task.await.unwrap().unwrap();
}
