//! `[events]` in `llmux.toml`: where usage events are published ([`RawEvents`] as written,
//! [`EventsConfig`] once checked by [`resolve`]).

use std::path::PathBuf;
use std::time::Duration;

use llmux_core::resilience::retry::humantime_serde;
use llmux_core::SecretString;
use serde::Deserialize;

use crate::config::ConfigIssue;

/// The default `events.nats`.
pub const DEFAULT_NATS: &str = "nats://127.0.0.1:4222";
/// The default `events.stream`.
pub const DEFAULT_STREAM: &str = "LLMUX_USAGE";
/// The default `events.subject`.
pub const DEFAULT_SUBJECT: &str = "llmux.usage";
/// The default `events.duplicate_window` (JetStream's own default).
pub const DEFAULT_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// How long a publisher's claim on outbox rows lasts: a publisher that dies leaves its rows to
/// the others after this long. `events.duplicate_window` must be longer, so that a batch
/// published again after a lapsed claim is still recognized as a duplicate.
pub const CLAIM_LEASE: Duration = Duration::from_secs(30);
/// The shortest accepted `events.duplicate_window`.
pub const MIN_DUPLICATE_WINDOW: Duration = Duration::from_secs(60);
/// The longest stream name accepted.
pub const MAX_STREAM_NAME: usize = 64;
/// The longest subject prefix accepted.
pub const MAX_SUBJECT: usize = 128;
/// The most events published per batch.
pub const MAX_BATCH: usize = 4096;

/// `[events]`: usage events published to NATS JetStream.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawEvents {
    /// Publish (default true once the table is there); `false` keeps the settings but
    /// publishes nothing and queues nothing.
    pub enabled: bool,
    /// The NATS server(s): `nats://host:port` or `tls://host:port`, several comma-separated
    /// (literal or `env:VAR`; may hold `user:password@`).
    #[serde(alias = "nats_url")]
    pub nats: Option<String>,
    /// The JetStream stream, created by the gateway when absent.
    pub stream: String,
    /// Subject prefix: events go to `<subject>.<provider>`; the stream takes `<subject>.>`.
    pub subject: String,
    /// The stream's duplicate window: a message id seen within it is stored once.
    #[serde(with = "humantime_serde")]
    pub duplicate_window: Duration,
    /// How long the stream keeps events, when the gateway creates it (0: until deleted).
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// A NATS token (literal or `env:VAR`).
    pub token: Option<String>,
    /// A NATS user, with `password`.
    pub user: Option<String>,
    /// The user's password (literal or `env:VAR`).
    pub password: Option<String>,
    /// A NATS credentials file (`.creds`: a user JWT and its NKey seed).
    pub credentials_file: Option<PathBuf>,
    /// PEM file of the CA certificate(s) that sign the server's certificate (TLS); otherwise
    /// the system's CAs.
    pub ca_file: Option<PathBuf>,
    /// Events per publish batch.
    pub batch_size: usize,
    /// How often the outbox is looked at when it was empty.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// How long a publish waits for the broker's acknowledgement.
    #[serde(with = "humantime_serde")]
    pub ack_timeout: Duration,
}

impl Default for RawEvents {
    fn default() -> Self {
        RawEvents {
            enabled: true,
            nats: None,
            stream: DEFAULT_STREAM.into(),
            subject: DEFAULT_SUBJECT.into(),
            duplicate_window: DEFAULT_DUPLICATE_WINDOW,
            max_age: Duration::from_secs(7 * 24 * 3600),
            token: None,
            user: None,
            password: None,
            credentials_file: None,
            ca_file: None,
            batch_size: 256,
            poll_interval: Duration::from_secs(1),
            ack_timeout: Duration::from_secs(5),
        }
    }
}

/// How the gateway authenticates to NATS.
#[derive(Debug, Clone, PartialEq)]
pub enum NatsAuth {
    /// None (or `user:password@` in the URL).
    None,
    /// A token.
    Token(SecretString),
    /// A user and password.
    UserPassword(String, SecretString),
    /// A credentials file.
    CredentialsFile(PathBuf),
}

/// Resolved `[events]`.
#[derive(Debug, Clone, PartialEq)]
pub struct EventsConfig {
    /// The server URLs (may hold passwords, hence secret), at least one.
    pub servers: Vec<SecretString>,
    /// The stream.
    pub stream: String,
    /// The subject prefix.
    pub subject: String,
    /// The stream's duplicate window.
    pub duplicate_window: Duration,
    /// The stream's `max_age` when the gateway creates it (zero: unlimited).
    pub max_age: Duration,
    /// Authentication.
    pub auth: NatsAuth,
    /// CA certificates for TLS.
    pub ca_file: Option<PathBuf>,
    /// Events per batch.
    pub batch_size: usize,
    /// Outbox poll interval when idle.
    pub poll_interval: Duration,
    /// Acknowledgement timeout.
    pub ack_timeout: Duration,
}

impl EventsConfig {
    /// The settings for `nats` with every other value at its default (the CLI's, without a
    /// configuration file).
    pub fn for_server(nats: &str) -> Result<EventsConfig, Vec<ConfigIssue>> {
        let raw = RawEvents {
            nats: Some(nats.to_owned()),
            ..RawEvents::default()
        };
        let mut issues = Vec::new();
        match resolve(Some(raw), &|_| None, &mut issues) {
            Some(cfg) if issues.is_empty() => Ok(cfg),
            _ => Err(issues),
        }
    }

    /// The subjects the stream must take: `<subject>.>`.
    pub fn stream_filter(&self) -> String {
        format!("{}.>", self.subject)
    }
}

/// Reads an `env:VAR` reference or a literal, as the rest of the configuration does.
fn secret(
    path: &str,
    value: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    issues: &mut Vec<ConfigIssue>,
) -> Option<SecretString> {
    let mut issue = |message: String| {
        issues.push(ConfigIssue {
            path: path.to_owned(),
            message,
        });
    };
    if let Some(var) = value.strip_prefix("env:") {
        match lookup(var).filter(|v| !v.is_empty()) {
            Some(v) => Some(SecretString::new(v)),
            None => {
                issue(format!("environment variable `{var}` is not set"));
                None
            }
        }
    } else if value.trim().is_empty() {
        issue("must not be empty".into());
        None
    } else {
        Some(SecretString::new(value))
    }
}

/// A JetStream stream name: 1 to [`MAX_STREAM_NAME`] printable ASCII characters without
/// whitespace, `.`, `*`, `>`, `/` or `\` (the server's rules, with a length the gateway keeps).
pub fn valid_stream_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_STREAM_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'.' | b'*' | b'>' | b'/' | b'\\'))
}

/// A subject prefix: dot-separated tokens of printable ASCII, none empty and none a wildcard
/// (`*`, `>`), at most [`MAX_SUBJECT`] bytes.
pub fn valid_subject(subject: &str) -> bool {
    !subject.is_empty()
        && subject.len() <= MAX_SUBJECT
        && subject.split('.').all(|t| {
            !t.is_empty()
                && t != "*"
                && t != ">"
                && t.bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'*' && b != b'>')
        })
}

/// Checks the shape of one server URL without connecting. Never repeats the URL (it may hold a
/// password).
fn check_server(url: &str) -> Result<(), String> {
    let scheme = url
        .split_once("://")
        .map(|(s, _)| s.to_ascii_lowercase())
        .unwrap_or_default();
    if !matches!(scheme.as_str(), "nats" | "tls") {
        return Err("each server must be nats://host[:port] or tls://host[:port]".into());
    }
    url.parse::<async_nats::ServerAddr>()
        .map(|_| ())
        .map_err(|e| format!("not a usable NATS server URL ({e})"))
}

/// A file that must exist and be readable.
fn check_file(path: &str, file: &std::path::Path, issues: &mut Vec<ConfigIssue>) {
    if let Err(e) = std::fs::metadata(file).and_then(|m| {
        if m.is_file() {
            std::fs::File::open(file).map(|_| ())
        } else {
            Err(std::io::Error::other("not a file"))
        }
    }) {
        issues.push(ConfigIssue {
            path: path.to_owned(),
            message: format!("cannot read {}: {e}", file.display()),
        });
    }
}

/// Validates `[events]`; `None` when it is absent or disabled. Problems are added to `issues`
/// with their `events.…` path.
pub fn resolve(
    raw: Option<RawEvents>,
    lookup: &dyn Fn(&str) -> Option<String>,
    issues: &mut Vec<ConfigIssue>,
) -> Option<EventsConfig> {
    let raw = raw.filter(|r| r.enabled)?;
    let before = issues.len();
    let mut issue = |path: &str, message: String| {
        issues.push(ConfigIssue {
            path: format!("events.{path}"),
            message,
        });
    };
    let mut servers = Vec::new();
    match raw.nats.as_deref() {
        None => issue(
            "nats",
            format!("required to publish usage events (e.g. \"{DEFAULT_NATS}\"); set enabled = false to turn them off"),
        ),
        Some(v) => {
            let mut found = Vec::new();
            if let Some(s) = secret("events.nats", v, lookup, &mut found) {
                for (i, url) in s.expose().split(',').map(str::trim).enumerate() {
                    match check_server(url) {
                        Ok(()) => servers.push(SecretString::new(url)),
                        Err(m) => found.push(ConfigIssue {
                            path: format!("events.nats[{i}]"),
                            message: m,
                        }),
                    }
                }
            }
            for f in found {
                issue(f.path.trim_start_matches("events."), f.message);
            }
        }
    }
    if !valid_stream_name(&raw.stream) {
        issue(
            "stream",
            format!("`{}` is not a usable stream name: 1 to {MAX_STREAM_NAME} printable ASCII characters without spaces, `.`, `*`, `>`, `/` or `\\`", raw.stream.escape_debug()),
        );
    }
    if !valid_subject(&raw.subject) {
        issue(
            "subject",
            format!("`{}` is not a usable subject prefix: dot-separated tokens of printable ASCII, none empty or a wildcard, at most {MAX_SUBJECT} bytes", raw.subject.escape_debug()),
        );
    }
    if raw.duplicate_window < MIN_DUPLICATE_WINDOW
        || raw.duplicate_window > Duration::from_secs(86_400)
    {
        issue(
            "duplicate_window",
            format!(
                "{:?} is outside 1m..=24h (it must outlast a publisher's {}s claim on its batch)",
                raw.duplicate_window,
                CLAIM_LEASE.as_secs()
            ),
        );
    } else if !raw.max_age.is_zero() && raw.max_age < raw.duplicate_window {
        issue(
            "max_age",
            "must be 0 (unlimited) or at least duplicate_window".into(),
        );
    }
    if raw.batch_size == 0 || raw.batch_size > MAX_BATCH {
        issue("batch_size", format!("must be 1 to {MAX_BATCH}"));
    }
    if !(Duration::from_millis(10)..=Duration::from_secs(60)).contains(&raw.poll_interval) {
        issue(
            "poll_interval",
            format!("{:?} is outside 10ms..=60s", raw.poll_interval),
        );
    }
    if !(Duration::from_millis(100)..=Duration::from_secs(60)).contains(&raw.ack_timeout) {
        issue(
            "ack_timeout",
            format!("{:?} is outside 100ms..=60s", raw.ack_timeout),
        );
    }
    let methods = usize::from(raw.token.is_some())
        + usize::from(raw.user.is_some() || raw.password.is_some())
        + usize::from(raw.credentials_file.is_some());
    if methods > 1 {
        issue(
            "token",
            "give one of token, user and password, or credentials_file".into(),
        );
    }
    let auth = if let Some(t) = raw.token.as_deref() {
        secret("events.token", t, lookup, issues).map_or(NatsAuth::None, NatsAuth::Token)
    } else if let Some(file) = &raw.credentials_file {
        check_file("events.credentials_file", file, issues);
        NatsAuth::CredentialsFile(file.clone())
    } else {
        match (raw.user.as_deref(), raw.password.as_deref()) {
            (None, None) => NatsAuth::None,
            (Some(u), Some(p)) if !u.trim().is_empty() => {
                match secret("events.password", p, lookup, issues) {
                    Some(p) => NatsAuth::UserPassword(u.to_owned(), p),
                    None => NatsAuth::None,
                }
            }
            _ => {
                issues.push(ConfigIssue {
                    path: "events.user".into(),
                    message: "user and password go together (both non-empty)".into(),
                });
                NatsAuth::None
            }
        }
    };
    if let Some(file) = &raw.ca_file {
        check_file("events.ca_file", file, issues);
    }
    (issues.len() == before).then_some(EventsConfig {
        servers,
        stream: raw.stream,
        subject: raw.subject,
        duplicate_window: raw.duplicate_window,
        max_age: raw.max_age,
        auth,
        ca_file: raw.ca_file,
        batch_size: raw.batch_size,
        poll_interval: raw.poll_interval,
        ack_timeout: raw.ack_timeout,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(toml_text: &str, env: &[(&str, &str)]) -> Result<EventsConfig, Vec<String>> {
        #[derive(Deserialize)]
        struct Doc {
            events: RawEvents,
        }
        let doc: Doc = toml::from_str(toml_text).map_err(|e| vec![e.to_string()])?;
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let lookup = move |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let mut issues = Vec::new();
        let cfg = resolve(Some(doc.events), &lookup, &mut issues);
        match cfg {
            Some(c) if issues.is_empty() => Ok(c),
            _ => Err(issues
                .into_iter()
                .map(|i| format!("{}: {}", i.path, i.message))
                .collect()),
        }
    }

    #[test]
    fn defaults_and_the_acceptance_names_resolve() {
        let c = check(
            "[events]\nnats = \"nats://127.0.0.1:4222\"\nstream = \"LLMUX_USAGE\"\nsubject = \"llmux.usage\"\n",
            &[],
        )
        .unwrap();
        assert_eq!(c.servers.len(), 1);
        assert_eq!(c.servers[0].expose(), "nats://127.0.0.1:4222");
        assert_eq!(
            (c.stream.as_str(), c.subject.as_str()),
            ("LLMUX_USAGE", "llmux.usage")
        );
        assert_eq!(c.stream_filter(), "llmux.usage.>");
        assert_eq!(c.duplicate_window, DEFAULT_DUPLICATE_WINDOW);
        assert_eq!(c.auth, NatsAuth::None);
        // `nats_url` is accepted for `nats`; a cluster is a comma-separated list.
        let c = check(
            "[events]\nnats_url = \"nats://a:4222, tls://b:4443\"\nbatch_size = 10\n",
            &[],
        )
        .unwrap();
        assert_eq!(c.servers.len(), 2);
        assert_eq!(c.batch_size, 10);
        // Disabled: nothing to resolve, nothing checked.
        let mut issues = Vec::new();
        let off = RawEvents {
            enabled: false,
            ..RawEvents::default()
        };
        assert!(resolve(Some(off), &|_| None, &mut issues).is_none());
        assert!(issues.is_empty());
    }

    #[test]
    fn bad_values_are_reported_with_their_path_and_never_repeat_the_url() {
        let errs = check(
            "[events]\nnats = \"http://user:hunter2@h:1\"\nstream = \"a.b\"\nsubject = \"llmux.*\"\nduplicate_window = \"10s\"\nbatch_size = 0\npoll_interval = \"0s\"\nack_timeout = \"2m\"\n",
            &[],
        )
        .unwrap_err();
        let paths: Vec<&str> = errs.iter().map(|e| e.split(':').next().unwrap()).collect();
        assert_eq!(
            paths,
            [
                "events.nats[0]",
                "events.stream",
                "events.subject",
                "events.duplicate_window",
                "events.batch_size",
                "events.poll_interval",
                "events.ack_timeout"
            ],
            "{errs:?}"
        );
        assert!(!errs.join("\n").contains("hunter2"), "{errs:?}");
        let errs = check("[events]\nstream = \"X\"\n", &[]).unwrap_err();
        assert!(errs[0].starts_with("events.nats: required"), "{errs:?}");
        let errs = check("[events]\nnats = \"env:NATS_URL\"\n", &[]).unwrap_err();
        assert_eq!(
            errs,
            ["events.nats: environment variable `NATS_URL` is not set"]
        );
        let errs = check(
            "[events]\nnats = \"nats://h:4222\"\nmax_age = \"30s\"\n",
            &[],
        )
        .unwrap_err();
        assert!(errs[0].starts_with("events.max_age"), "{errs:?}");
        let errs = check(
            "[events]\nnats = \"nats://h:4222\"\ntoken = \"t\"\nuser = \"u\"\npassword = \"p\"\n",
            &[],
        )
        .unwrap_err();
        assert!(errs[0].starts_with("events.token: give one of"), "{errs:?}");
        let errs = check("[events]\nnats = \"nats://h:4222\"\nuser = \"u\"\n", &[]).unwrap_err();
        assert!(errs[0].starts_with("events.user"), "{errs:?}");
        let errs = check(
            "[events]\nnats = \"nats://h:4222\"\ncredentials_file = \"/nonexistent/x.creds\"\n",
            &[],
        )
        .unwrap_err();
        assert!(
            errs[0].starts_with("events.credentials_file: cannot read"),
            "{errs:?}"
        );
    }

    #[test]
    fn credentials_are_secrets_read_from_the_environment() {
        let c = check(
            "[events]\nnats = \"env:NATS_URL\"\nuser = \"gw\"\npassword = \"env:NATS_PASSWORD\"\n",
            &[
                ("NATS_URL", "nats://u:pw-in-url@h:4222"),
                ("NATS_PASSWORD", "s3cret-pw"),
            ],
        )
        .unwrap();
        assert_eq!(
            c.auth,
            NatsAuth::UserPassword("gw".into(), SecretString::new("s3cret-pw"))
        );
        let debug = format!("{c:?}");
        assert!(
            !debug.contains("s3cret-pw") && !debug.contains("pw-in-url"),
            "{debug}"
        );
        let c = check(
            "[events]\nnats = \"nats://h:4222\"\ntoken = \"env:NATS_TOKEN\"\n",
            &[("NATS_TOKEN", "tok-123")],
        )
        .unwrap();
        assert!(matches!(&c.auth, NatsAuth::Token(t) if t.expose() == "tok-123"));
    }

    #[test]
    fn stream_names_and_subjects_follow_the_servers_rules() {
        for ok in ["LLMUX_USAGE", "usage-1", "a"] {
            assert!(valid_stream_name(ok), "{ok}");
        }
        for bad in ["", "a b", "a.b", "a*", "a>", "a/b", "a\\b", &"x".repeat(65)] {
            assert!(!valid_stream_name(bad), "{bad}");
        }
        for ok in ["llmux.usage", "usage", "a.b-c.d_e"] {
            assert!(valid_subject(ok), "{ok}");
        }
        for bad in ["", ".a", "a.", "a..b", "a.*", "a.>", "a b", "a.b*"] {
            assert!(!valid_subject(bad), "{bad}");
        }
    }
}
