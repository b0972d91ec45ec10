//! Per-key limits shared through Redis over TLS (`rediss://` and `rediss+cluster://` with
//! `server.redis_ca_file`): `redis-server`s of the machine's own, started by the test with TLS
//! only on free loopback ports (one server, or a three-primary cluster whose bus is TLS too),
//! with a certificate signed by a CA the test makes. The server must be verified: the same setup
//! with another CA is refused and the gateway falls back to its in-process limits. Under
//! `CI=true` a missing `redis-server` fails the test; elsewhere it is skipped with a note.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use common::{ClusterTls, LocalCluster, RedisKind};
use llmux_gateway::config::{Config, RawConfig};
use llmux_gateway::limits::{KeyLimits, LimitError, RedisLimits};
use llmux_gateway::metrics::limits_backend_errors;
use llmux_gateway::store::KeyRecord;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Barrier;

/// A CA: its certificate (PEM) and what signs with it.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn ca(name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Ca {
        pem: cert.pem(),
        issuer: Issuer::new(params, key),
    }
}

/// A running TLS-only `redis-server`; killed on drop.
struct TlsRedis {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// A server certificate for 127.0.0.1 and localhost signed by `ca`, written to `dir`: the
/// certificate, key and CA files.
fn server_files(ca: &Ca, dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    (
        write("server.pem", &cert.pem()),
        write("server.key", &key.serialize_pem()),
        write("ca.pem", &ca.pem),
    )
}

/// A TLS-only Redis of `kind` whose certificates `ca` signs, kept running while it lives.
enum TlsServer {
    Single(#[expect(dead_code, reason = "held so the server lives as long as the value")] TlsRedis),
    Cluster(
        #[expect(dead_code, reason = "held so the server lives as long as the value")] LocalCluster,
        #[expect(dead_code, reason = "held so the server lives as long as the value")]
        tempfile::TempDir,
    ),
}

/// Starts a TLS Redis of `kind`: the server(s) and the `server.redis` URL; `None` (skip) when
/// the machine has no `redis-server` outside CI.
async fn tls_server(kind: RedisKind, ca: &Ca) -> Option<(TlsServer, String)> {
    match kind {
        RedisKind::Single => {
            let server = tls_redis(ca).await?;
            let url = format!("rediss://127.0.0.1:{}/0", server.port);
            Some((TlsServer::Single(server), url))
        }
        RedisKind::Cluster => {
            let dir = tempfile::tempdir().unwrap();
            let (cert_file, key_file, ca_file) = server_files(ca, dir.path());
            let tls = ClusterTls {
                cert_file,
                key_file,
                ca_file,
                ca_pem: ca.pem.clone().into_bytes(),
            };
            let cluster = tokio::task::spawn_blocking(move || LocalCluster::start(Some(tls)))
                .await
                .unwrap()?;
            let url = cluster.url();
            assert!(url.starts_with("rediss+cluster://"), "{url}");
            Some((TlsServer::Cluster(cluster, dir), url))
        }
    }
}

/// Starts `redis-server` with TLS on a free port, its certificate signed by `ca` for 127.0.0.1
/// and localhost; `None` (skip) when the machine has no `redis-server` outside CI.
async fn tls_redis(ca: &Ca) -> Option<TlsRedis> {
    let dir = tempfile::tempdir().unwrap();
    let (cert_file, key_file, ca_file) = server_files(ca, dir.path());
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let spawned = Command::new("redis-server")
        .args(["--port", "0", "--bind", "127.0.0.1", "--tls-port"])
        .arg(port.to_string())
        .arg("--tls-cert-file")
        .arg(&cert_file)
        .arg("--tls-key-file")
        .arg(&key_file)
        .arg("--tls-ca-cert-file")
        .arg(&ca_file)
        .args([
            "--tls-auth-clients",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
            "--logfile",
            "",
        ])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            assert!(
                std::env::var("CI").is_err(),
                "CI needs redis-server for the TLS limits test: {e}"
            );
            eprintln!("skipped: no redis-server ({e})");
            return None;
        }
    };
    // Ready once it says so on its log (stdout).
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("Ready to accept connections") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(ready, Ok(true), "redis-server with TLS did not start");
    // Keep draining its log so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Some(TlsRedis {
        child,
        port,
        _dir: dir,
    })
}

/// The gateway's Redis settings, resolved from TOML as `llmux serve` does.
fn config(url: &str, ca_file: &Path) -> llmux_gateway::config::RedisConfig {
    let text = format!(
        "[server]\nredis = \"{url}\"\nredis_ca_file = \"{}\"\nredis_prefix = \"llmux-tls-test:\"\n",
        ca_file.display()
    );
    let cfg = Config::resolve(RawConfig::parse(&text, Vec::new()).unwrap(), |_| None).unwrap();
    cfg.server.redis.expect("redis configured")
}

fn key(id: i64, rpm: u32) -> KeyRecord {
    KeyRecord {
        id,
        name: format!("k{id}"),
        rpm: Some(rpm),
        ..KeyRecord::default()
    }
}

/// Waits (at most 30 s) until `g` has decided an admission in Redis.
async fn connected(g: &KeyLimits) {
    let probe = key(999, 1_000_000);
    let shared = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        loop {
            if g.admit(&probe, 1).await.unwrap().is_shared() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(shared.is_ok(), "never connected to the TLS Redis");
}

on_redis_and_cluster!(
    two_gateways_share_exact_rpm_over_tls,
    a_server_signed_by_another_ca_is_refused_and_limits_stay_in_process,
);

async fn two_gateways_share_exact_rpm_over_tls(kind: RedisKind) {
    let ca = ca("llmux test CA");
    let Some((_server, url)) = tls_server(kind, &ca).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let errors = limits_backend_errors().unwrap();
    let gateways: Vec<KeyLimits> = (0..2)
        .map(|_| {
            let backend = RedisLimits::new(&config(&url, &ca_file), errors.clone()).unwrap();
            KeyLimits::new().with_redis(backend)
        })
        .collect();
    // Connected first: a debug build's TLS handshakes (three nodes for a cluster) on a busy
    // machine can outlast the first call's 500 ms, and that call then falls back by design.
    for g in &gateways {
        connected(g).await;
    }
    let fallbacks = errors.with_label_values(&["admit"]).get();

    // 30 concurrent admissions across both on RPM 10: exactly 10, every one decided in Redis.
    let k = key(7, 10);
    let barrier = Arc::new(Barrier::new(30));
    let tasks: Vec<_> = (0..30)
        .map(|i| {
            let (g, k, b) = (gateways[i % 2].clone(), k.clone(), barrier.clone());
            tokio::spawn(async move {
                b.wait().await;
                g.admit(&k, 10).await
            })
        })
        .collect();
    let mut admitted = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(a) => {
                assert!(a.is_shared(), "decided in process: TLS Redis not used");
                admitted += 1;
            }
            Err(LimitError::RateLimited { .. }) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(admitted, 10);
    assert_eq!(errors.with_label_values(&["admit"]).get(), fallbacks);
    for g in &gateways {
        assert_eq!(g.backend(), "redis");
    }
}

async fn a_server_signed_by_another_ca_is_refused_and_limits_stay_in_process(kind: RedisKind) {
    let server_ca = ca("the server's CA");
    let Some((_server, url)) = tls_server(kind, &server_ca).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other-ca.pem");
    std::fs::write(&other, ca("some other CA").pem).unwrap();
    let errors = limits_backend_errors().unwrap();
    let backend = RedisLimits::new(&config(&url, &other), errors.clone()).unwrap();
    let limits = KeyLimits::new().with_redis(backend);
    let k = key(8, 1);
    let a = limits.admit(&k, 10).await.unwrap();
    assert!(!a.is_shared(), "an unverified server must not be used");
    assert!(matches!(
        limits.admit(&k, 10).await,
        Err(LimitError::RateLimited { .. })
    ));
    assert_eq!(errors.with_label_values(&["admit"]).get(), 2);
}

#[test]
fn the_ca_file_is_checked_with_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let check = |redis: &str, ca: &Path| {
        let text = format!(
            "[server]\nredis = \"{redis}\"\nredis_ca_file = \"{}\"\n",
            ca.display()
        );
        Config::resolve(RawConfig::parse(&text, Vec::new()).unwrap(), |_| None)
            .unwrap_err()
            .to_string()
    };
    let e = check("rediss://127.0.0.1", &dir.path().join("missing.pem"));
    assert!(e.starts_with("server.redis_ca_file: cannot read"), "{e}");
    let e = check("rediss://127.0.0.1", &not_pem);
    assert!(e.contains("no PEM certificate"), "{e}");
    let e = check("redis://127.0.0.1", &not_pem);
    assert!(e.contains("only used with a TLS URL"), "{e}");
    let e = check("redis+cluster://127.0.0.1:7000,127.0.0.1:7001", &not_pem);
    assert!(e.contains("only used with a TLS URL"), "{e}");
    let e = check("rediss+cluster://127.0.0.1:7000", &not_pem);
    assert!(e.contains("no PEM certificate"), "{e}");
}
