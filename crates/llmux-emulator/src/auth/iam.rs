//! Huawei Cloud IAM tokens (PROTOCOLS.md 5.1): checks `POST /v3/auth/tokens` bodies (password and `hw_ak_sk`
//! identities, project/domain/no scope), issues opaque tokens that expire on the emulator clock, and looks them up.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};

use crate::auth::encoding;
use crate::lock;

/// Default token lifetime (the vendor's 24 h).
pub(crate) const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);

/// The account the emulator's IAM knows (one user in one domain with one project).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Account<'a> {
    pub username: &'a str,
    pub password: &'a str,
    pub user_id: &'a str,
    pub domain_name: &'a str,
    pub domain_id: &'a str,
    pub project_name: &'a str,
    pub project_id: &'a str,
    pub ak: &'a str,
    pub sk: &'a str,
}

/// What a token is scoped to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Scope {
    Project { id: String, name: String },
    Domain,
    Unscoped,
}

/// A checked token request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Grant {
    /// `password` or `hw_ak_sk`.
    pub method: &'static str,
    pub scope: Scope,
}

/// Why a token request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IamError {
    /// 400: the body is not a token request (message says what is wrong).
    BadBody(String),
    /// 401: wrong user, password, domain, AK or SK.
    WrongCredentials,
    /// 400: the scope names a project or domain the account does not have.
    BadScope(String),
}

impl IamError {
    pub(crate) fn status(&self) -> u16 {
        match self {
            IamError::BadBody(_) | IamError::BadScope(_) => 400,
            IamError::WrongCredentials => 401,
        }
    }

    /// Keystone-style body `{"error":{"code","message","title"}}`.
    pub(crate) fn body(&self) -> Value {
        let (title, message) = match self {
            IamError::BadBody(m) => ("Bad Request", m.clone()),
            IamError::BadScope(m) => ("Bad Request", m.clone()),
            IamError::WrongCredentials => (
                "Unauthorized",
                "The username or password is wrong.".to_owned(),
            ),
        };
        json!({"error": {"code": self.status(), "message": message, "title": title}})
    }
}

fn text<'v>(v: &'v Value, path: &[&str]) -> Option<&'v str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

/// Checks a token request body against the account.
pub(crate) fn check(body: &[u8], acct: &Account<'_>) -> Result<Grant, IamError> {
    let bad = |m: &str| IamError::BadBody(m.to_owned());
    let v: Value =
        serde_json::from_slice(body).map_err(|_| bad("The request body is not valid JSON."))?;
    let identity = v
        .get("auth")
        .and_then(|a| a.get("identity"))
        .ok_or_else(|| bad("auth.identity is required."))?;
    let methods: Vec<&str> = identity
        .get("methods")
        .and_then(Value::as_array)
        .map(|m| m.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let method = if methods.contains(&"password") {
        let user = identity
            .get("password")
            .and_then(|p| p.get("user"))
            .ok_or_else(|| bad("auth.identity.password.user is required."))?;
        let name_ok = text(user, &["name"]) == Some(acct.username)
            || text(user, &["id"]) == Some(acct.user_id);
        let domain_ok = text(user, &["domain", "name"]) == Some(acct.domain_name)
            || text(user, &["domain", "id"]) == Some(acct.domain_id)
            || text(user, &["id"]) == Some(acct.user_id);
        if !(name_ok && domain_ok && text(user, &["password"]) == Some(acct.password)) {
            return Err(IamError::WrongCredentials);
        }
        "password"
    } else if methods.contains(&"hw_ak_sk") {
        let aksk = identity
            .get("hw_ak_sk")
            .ok_or_else(|| bad("auth.identity.hw_ak_sk is required."))?;
        if text(aksk, &["access", "key"]) != Some(acct.ak)
            || text(aksk, &["secret", "key"]) != Some(acct.sk)
        {
            return Err(IamError::WrongCredentials);
        }
        "hw_ak_sk"
    } else {
        return Err(bad(
            "auth.identity.methods must contain \"password\" or \"hw_ak_sk\".",
        ));
    };
    let scope = match v.get("auth").and_then(|a| a.get("scope")) {
        None | Some(Value::Null) => Scope::Unscoped,
        Some(s) => {
            if let Some(p) = s.get("project") {
                let ok = match (text(p, &["id"]), text(p, &["name"])) {
                    (Some(id), _) => id == acct.project_id,
                    (None, Some(name)) => name == acct.project_name,
                    (None, None) => return Err(bad("auth.scope.project needs an id or a name.")),
                };
                if !ok {
                    return Err(IamError::BadScope(format!(
                        "The project in auth.scope does not exist: {p}"
                    )));
                }
                Scope::Project {
                    id: acct.project_id.to_owned(),
                    name: acct.project_name.to_owned(),
                }
            } else if let Some(d) = s.get("domain") {
                let ok = match (text(d, &["id"]), text(d, &["name"])) {
                    (Some(id), _) => id == acct.domain_id,
                    (None, Some(name)) => name == acct.domain_name,
                    (None, None) => return Err(bad("auth.scope.domain needs an id or a name.")),
                };
                if !ok {
                    return Err(IamError::BadScope(format!(
                        "The domain in auth.scope does not exist: {d}"
                    )));
                }
                Scope::Domain
            } else {
                return Err(bad("auth.scope must name a project or a domain."));
            }
        }
    };
    Ok(Grant { method, scope })
}

/// One issued token.
#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub issued_ms: i64,
    pub expires_ms: i64,
    pub scope: Scope,
}

struct Inner {
    ttl: Duration,
    issued: u64,
    tokens: HashMap<String, Token>,
}

/// Tokens issued by this emulator. `Debug` shows counts, never token values.
pub(crate) struct TokenStore {
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for TokenStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = lock(&self.inner);
        f.debug_struct("TokenStore")
            .field("ttl", &inner.ttl)
            .field("issued", &inner.issued)
            .field("live", &inner.tokens.len())
            .finish()
    }
}

impl TokenStore {
    pub(crate) fn new() -> TokenStore {
        TokenStore {
            inner: Mutex::new(Inner {
                ttl: DEFAULT_TTL,
                issued: 0,
                tokens: HashMap::new(),
            }),
        }
    }

    /// Sets the lifetime of tokens issued from now on.
    pub(crate) fn set_ttl(&self, ttl: Duration) {
        lock(&self.inner).ttl = ttl;
    }

    /// Forgets every issued token.
    pub(crate) fn expire_all(&self) {
        lock(&self.inner).tokens.clear();
    }

    /// Issues a token at `now_ms`: `MII` + 256 base64 characters derived from a counter (opaque, unique).
    pub(crate) fn issue(&self, scope: Scope, now_ms: i64) -> (String, Token) {
        let mut inner = lock(&self.inner);
        inner.issued += 1;
        let seed = format!("llmux-emulator-iam-token-{}", inner.issued);
        let mut bytes = Vec::with_capacity(192);
        let mut block = encoding::sha256(seed.as_bytes());
        while bytes.len() < 192 {
            bytes.extend_from_slice(&block);
            block = encoding::sha256(&block);
        }
        let value = format!(
            "MII{}",
            base64::engine::general_purpose::STANDARD.encode(&bytes)
        );
        let ttl_ms = i64::try_from(inner.ttl.as_millis()).unwrap_or(i64::MAX);
        let token = Token {
            issued_ms: now_ms,
            expires_ms: now_ms.saturating_add(ttl_ms),
            scope,
        };
        inner.tokens.insert(value.clone(), token.clone());
        (value, token)
    }

    /// The token's record if it was issued, not expired and not forgotten.
    pub(crate) fn lookup(&self, value: &str, now_ms: i64) -> Option<Token> {
        lock(&self.inner)
            .tokens
            .get(value)
            .filter(|t| now_ms < t.expires_ms)
            .cloned()
    }
}

/// The body of a 201 token answer; `catalog_url` (the Pangu endpoint) adds a one-entry `catalog`.
pub(crate) fn token_body(
    grant: &Grant,
    token: &Token,
    acct: &Account<'_>,
    catalog_url: Option<&str>,
) -> Value {
    let domain = json!({"id": acct.domain_id, "name": acct.domain_name});
    let mut t = json!({
        "expires_at": crate::clock::format_iso_micros(token.expires_ms),
        "issued_at": crate::clock::format_iso_micros(token.issued_ms),
        "methods": [grant.method],
        "user": {"domain": domain, "id": acct.user_id, "name": acct.username,
                 "password_expires_at": ""},
        "roles": [],
    });
    match &token.scope {
        Scope::Project { id, name } => {
            t["project"] = json!({"domain": domain, "id": id, "name": name});
        }
        Scope::Domain => t["domain"] = domain,
        Scope::Unscoped => {}
    }
    if let Some(url) = catalog_url {
        t["catalog"] = json!([{"id": "emulator-pangu", "name": "pangu", "type": "pangu",
            "endpoints": [{"id": "emulator-pangu-public", "interface": "public",
                           "region": acct.project_name, "region_id": acct.project_name, "url": url}]}]);
    }
    json!({"token": t})
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn account<'a>(user: &'a str, password: &'a str) -> Account<'a> {
        Account {
            username: user,
            password,
            user_id: "uid",
            domain_name: "example-account",
            domain_id: "did",
            project_name: "cn-southwest-2",
            project_id: "0123456789abcdef0123456789abcdef",
            ak: "AK",
            sk: "SK",
        }
    }

    #[test]
    fn every_vector_body_is_accepted_with_its_scope() {
        let v: Value =
            serde_json::from_str(include_str!("../../fixtures/pangu/iam_token.json")).unwrap();
        let vectors = v["vectors"].as_array().unwrap();
        assert!(vectors.len() >= 3);
        for v in vectors {
            let i = &v["inputs"];
            let acct = account(
                i["user_name"].as_str().unwrap(),
                i["password"].as_str().unwrap(),
            );
            let wire = v["expected"]["body_wire"].as_str().unwrap();
            let grant = check(wire.as_bytes(), &acct).unwrap();
            assert_eq!(grant.method, "password");
            let want = if i["scope"].get("domain_name").is_some() {
                Scope::Domain
            } else {
                Scope::Project {
                    id: acct.project_id.to_owned(),
                    name: acct.project_name.to_owned(),
                }
            };
            assert_eq!(grant.scope, want, "{}", v["name"]);
            // A wrong password is a 401.
            let wrong = account(acct.username, "not-it");
            assert_eq!(
                check(wire.as_bytes(), &wrong),
                Err(IamError::WrongCredentials)
            );
        }
    }

    #[test]
    fn aksk_identity_unscoped_and_bad_scopes() {
        let acct = account("u", "p");
        let body = json!({"auth": {"identity": {"methods": ["hw_ak_sk"],
            "hw_ak_sk": {"access": {"key": "AK"}, "secret": {"key": "SK"}}}}});
        let g = check(body.to_string().as_bytes(), &acct).unwrap();
        assert_eq!((g.method, g.scope), ("hw_ak_sk", Scope::Unscoped));
        let body = json!({"auth": {"identity": {"methods": ["hw_ak_sk"],
            "hw_ak_sk": {"access": {"key": "AK"}, "secret": {"key": "nope"}}}}});
        assert_eq!(
            check(body.to_string().as_bytes(), &acct),
            Err(IamError::WrongCredentials)
        );
        let body = json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": "u", "password": "p", "domain": {"name": "example-account"}}}},
            "scope": {"project": {"name": "cn-north-4"}}}});
        assert_eq!(
            check(body.to_string().as_bytes(), &acct)
                .unwrap_err()
                .status(),
            400
        );
        assert_eq!(check(b"{}", &acct).unwrap_err().status(), 400);
        assert_eq!(check(b"nope", &acct).unwrap_err().status(), 400);
    }

    #[test]
    fn tokens_expire_and_can_be_forgotten() {
        let store = TokenStore::new();
        store.set_ttl(Duration::from_secs(10));
        let (a, t) = store.issue(Scope::Domain, 1_000);
        assert!(a.starts_with("MII") && a.len() == 259);
        assert_eq!(t.expires_ms, 11_000);
        let (b, _) = store.issue(Scope::Domain, 1_000);
        assert_ne!(a, b);
        assert!(store.lookup(&a, 10_999).is_some());
        assert!(store.lookup(&a, 11_000).is_none());
        assert!(store.lookup("MIIunknown", 0).is_none());
        store.expire_all();
        assert!(store.lookup(&b, 1_000).is_none());
    }
}
