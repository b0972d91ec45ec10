//! Huawei Cloud IAM password tokens (PROTOCOLS.md §5.1): the token request (its body equals
//! `shared/vectors/huawei_iam_token.json` `body_json`, and the bytes built are the bytes sent),
//! the response reader, and a single-flight token cache.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use http::HeaderValue;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::error::{Error, ErrorKind, Result};
use crate::http::{HttpRequest, HttpResponse};
use crate::providers::canonical::parse_iso8601_utc;
use crate::providers::join_url;
use crate::SecretString;

/// What a token is scoped to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// A project, by id.
    ProjectId(String),
    /// A project, by name (the region name, e.g. `cn-southwest-2`).
    ProjectName(String),
    /// A whole account (domain), by name.
    DomainName(String),
    /// A whole account (domain), by id.
    DomainId(String),
    /// No scope.
    Unscoped,
}

/// An IAM user's password credentials.
#[derive(Debug, Clone)]
pub struct PasswordCredentials {
    /// The account (domain) name the IAM user belongs to.
    pub domain_name: String,
    /// The IAM user name.
    pub user_name: String,
    /// The password.
    pub password: SecretString,
    /// The scope of the token.
    pub scope: Scope,
}

/// The password-method request body.
pub fn token_body(creds: &PasswordCredentials) -> Value {
    let mut auth = json!({
        "identity": {
            "methods": ["password"],
            "password": {"user": {
                "domain": {"name": creds.domain_name},
                "name": creds.user_name,
                "password": creds.password.expose(),
            }}
        }
    });
    let scope = match &creds.scope {
        Scope::ProjectId(id) => Some(json!({"project": {"id": id}})),
        Scope::ProjectName(name) => Some(json!({"project": {"name": name}})),
        Scope::DomainName(name) => Some(json!({"domain": {"name": name}})),
        Scope::DomainId(id) => Some(json!({"domain": {"id": id}})),
        Scope::Unscoped => None,
    };
    if let Some(s) = scope {
        auth["scope"] = s;
    }
    json!({ "auth": auth })
}

/// `POST {iam_endpoint}/v3/auth/tokens[?nocatalog=true]` with the password body.
pub fn token_request(
    iam_endpoint: &str,
    creds: &PasswordCredentials,
    nocatalog: bool,
) -> Result<HttpRequest> {
    let path = if nocatalog {
        "v3/auth/tokens?nocatalog=true"
    } else {
        "v3/auth/tokens"
    };
    let mut req = HttpRequest::post_json(join_url(iam_endpoint, path), &token_body(creds))?;
    req.headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    Ok(req)
}

/// A token IAM issued.
#[derive(Debug, Clone)]
pub struct IamToken {
    /// The `X-Subject-Token` value.
    pub token: SecretString,
    /// `token.expires_at`.
    pub expires_at: Option<SystemTime>,
    /// `token.issued_at`.
    pub issued_at: Option<SystemTime>,
    /// `token.project.id`, for project-scoped tokens.
    pub project_id: Option<String>,
}

impl IamToken {
    /// How long the token lives from now, by IAM's own clock when it gave `issued_at`.
    pub fn lifetime(&self, now: SystemTime) -> Duration {
        match (self.issued_at, self.expires_at) {
            (Some(i), Some(e)) => e.duration_since(i).unwrap_or(Duration::ZERO),
            (None, Some(e)) => e.duration_since(now).unwrap_or(Duration::ZERO),
            // IAM documents 24 h validity.
            _ => Duration::from_secs(24 * 3600),
        }
    }
}

/// Reads a token response: `201` with `X-Subject-Token`; anything else is classified by
/// `classify` (a Huawei error body).
pub fn parse_token_response(
    resp: &HttpResponse,
    classify: impl Fn(u16, &http::HeaderMap, &[u8]) -> Error,
) -> Result<IamToken> {
    if !(200..300).contains(&resp.status) {
        return Err(classify(resp.status, &resp.headers, &resp.body));
    }
    let token = resp
        .header("x-subject-token")
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Error::protocol("IAM answered without an X-Subject-Token header"))?;
    #[derive(Deserialize, Default)]
    struct Body {
        #[serde(default)]
        token: TokenBody,
    }
    #[derive(Deserialize, Default)]
    struct TokenBody {
        #[serde(default)]
        expires_at: Option<String>,
        #[serde(default)]
        issued_at: Option<String>,
        #[serde(default)]
        project: Option<Project>,
    }
    #[derive(Deserialize, Default)]
    struct Project {
        #[serde(default)]
        id: Option<String>,
    }
    let body: Body = serde_json::from_slice(&resp.body).unwrap_or_default();
    Ok(IamToken {
        token: SecretString::new(token),
        expires_at: body.token.expires_at.as_deref().and_then(parse_iso8601_utc),
        issued_at: body.token.issued_at.as_deref().and_then(parse_iso8601_utc),
        project_id: body.token.project.and_then(|p| p.id),
    })
}

/// A cached token, refreshed ahead of its expiry.
#[derive(Debug)]
pub struct CachedToken {
    /// The token (a secret).
    pub token: SecretString,
    /// The project the token is scoped to, when IAM said.
    pub project_id: Option<String>,
    refresh_at: Instant,
    fetched_at: Instant,
    after_rejection: bool,
}

/// How long before expiry a token is refreshed: 10% of its lifetime, at most 5 minutes.
pub fn refresh_margin(lifetime: Duration) -> Duration {
    (lifetime / 10).min(Duration::from_secs(300))
}

/// After a refresh caused by a rejection, further rejections within this window are taken to
/// come from requests that still carried the old token, and keep the new one.
pub const REJECTION_GRACE: Duration = Duration::from_secs(10);

/// A token shared by every request of a provider, with exactly one refresh in flight.
///
/// Readers take a short std lock (never held across an await); a refresh holds the
/// `tokio::sync::Mutex` guard, and callers that waited behind it re-check the cache, so N
/// concurrent callers with an absent or expired token cause one token request. When that one
/// request fails, the callers that waited for it get its error rather than each trying again.
#[derive(Debug, Default)]
pub struct TokenCache {
    current: Mutex<Option<Arc<CachedToken>>>,
    refresh: tokio::sync::Mutex<()>,
    attempts: AtomicU64,
    last_failure: Mutex<Option<(ErrorKind, String)>>,
    rejected: AtomicBool,
}

impl TokenCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    fn fresh(&self) -> Option<Arc<CachedToken>> {
        let cur = self.current.lock().ok()?;
        cur.as_ref()
            .filter(|t| Instant::now() < t.refresh_at)
            .cloned()
    }

    /// The cached token, or a new one from `fetch` (called at most once at a time).
    pub async fn get<F, Fut>(&self, now: SystemTime, fetch: F) -> Result<Arc<CachedToken>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<IamToken>>,
    {
        if let Some(t) = self.fresh() {
            return Ok(t);
        }
        let seen = self.attempts.load(Ordering::SeqCst);
        let _guard = self.refresh.lock().await;
        if let Some(t) = self.fresh() {
            return Ok(t);
        }
        if self.attempts.load(Ordering::SeqCst) != seen {
            let failure = self.last_failure.lock().ok().and_then(|f| f.clone());
            if let Some((kind, message)) = failure {
                return Err(Error::new(kind, message));
            }
        }
        let result = fetch().await;
        self.attempts.fetch_add(1, Ordering::SeqCst);
        match result {
            Ok(tok) => {
                let lifetime = tok.lifetime(now);
                let fetched_at = Instant::now();
                let cached = Arc::new(CachedToken {
                    token: tok.token,
                    project_id: tok.project_id,
                    refresh_at: fetched_at + (lifetime - refresh_margin(lifetime)),
                    fetched_at,
                    after_rejection: self.rejected.swap(false, Ordering::SeqCst),
                });
                if let Ok(mut cur) = self.current.lock() {
                    *cur = Some(cached.clone());
                }
                if let Ok(mut f) = self.last_failure.lock() {
                    *f = None;
                }
                Ok(cached)
            }
            Err(e) => {
                if let Ok(mut f) = self.last_failure.lock() {
                    *f = Some((e.kind(), e.message().to_owned()));
                }
                Err(e)
            }
        }
    }

    /// The upstream rejected a token: drop it, unless it was itself fetched because of a
    /// rejection less than [`REJECTION_GRACE`] ago (then the rejected request carried the old
    /// one). Returns true: a fresh token can always be requested.
    pub fn invalidate(&self) -> bool {
        if let Ok(mut cur) = self.current.lock() {
            let keep = cur
                .as_ref()
                .is_some_and(|t| t.after_rejection && t.fetched_at.elapsed() < REJECTION_GRACE);
            if !keep && cur.take().is_some() {
                self.rejected.store(true, Ordering::SeqCst);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn token(name: &str, lifetime_secs: u64) -> IamToken {
        let issued = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        IamToken {
            token: SecretString::new(name),
            expires_at: Some(issued + Duration::from_secs(lifetime_secs)),
            issued_at: Some(issued),
            project_id: Some("p1".into()),
        }
    }

    async fn fake_fetch(count: &AtomicUsize, lifetime: u64) -> Result<IamToken> {
        let n = count.fetch_add(1, Ordering::SeqCst);
        // Let every other caller pile up behind the refresh before it completes.
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        Ok(token(&format!("tok-{n}"), lifetime))
    }

    #[tokio::test(start_paused = true)]
    async fn fifty_concurrent_callers_fetch_one_token() {
        let cache = Arc::new(TokenCache::new());
        let count = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let cache = cache.clone();
                let count = count.clone();
                tokio::spawn(async move {
                    let t = cache
                        .get(SystemTime::now(), || fake_fetch(&count, 3600))
                        .await
                        .unwrap();
                    t.token.expose().to_owned()
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap(), "tok-0");
        }
        assert_eq!(count.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn expiring_token_is_refreshed_once_ahead_of_expiry() {
        let cache = Arc::new(TokenCache::new());
        let count = Arc::new(AtomicUsize::new(0));
        let get = |cache: Arc<TokenCache>, count: Arc<AtomicUsize>| async move {
            cache
                .get(SystemTime::now(), || fake_fetch(&count, 3600))
                .await
                .unwrap()
                .token
                .expose()
                .to_owned()
        };
        assert_eq!(get(cache.clone(), count.clone()).await, "tok-0");
        // 3600 s lifetime: margin min(360 s, 300 s) = 300 s, so 3299 s later it is still good.
        tokio::time::advance(Duration::from_secs(3299)).await;
        assert_eq!(get(cache.clone(), count.clone()).await, "tok-0");
        tokio::time::advance(Duration::from_secs(2)).await;
        let tasks: Vec<_> = (0..20)
            .map(|_| tokio::spawn(get(cache.clone(), count.clone())))
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap(), "tok-1");
        }
        assert_eq!(count.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_rejection_refreshes_once_even_when_many_requests_saw_it() {
        let cache = Arc::new(TokenCache::new());
        let count = Arc::new(AtomicUsize::new(0));
        let first = cache
            .get(SystemTime::now(), || fake_fetch(&count, 86_400))
            .await
            .unwrap();
        assert_eq!(first.token.expose(), "tok-0");
        tokio::time::advance(Duration::from_secs(60)).await;
        // Ten requests carried tok-0 and all got 401: the first invalidation drops it, the
        // refresh it causes is kept by the other nine.
        assert!(cache.invalidate());
        let t = cache
            .get(SystemTime::now(), || fake_fetch(&count, 86_400))
            .await
            .unwrap();
        assert_eq!(t.token.expose(), "tok-1");
        for _ in 0..9 {
            assert!(cache.invalidate());
        }
        let t = cache
            .get(SystemTime::now(), || fake_fetch(&count, 86_400))
            .await
            .unwrap();
        assert_eq!(t.token.expose(), "tok-1");
        assert_eq!(count.load(Ordering::SeqCst), 2);
        // Once the grace has passed, a rejection of tok-1 is its own and refreshes again.
        tokio::time::advance(REJECTION_GRACE).await;
        cache.invalidate();
        let t = cache
            .get(SystemTime::now(), || fake_fetch(&count, 86_400))
            .await
            .unwrap();
        assert_eq!(t.token.expose(), "tok-2");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_refresh_is_shared_by_its_waiters_not_repeated() {
        let cache = Arc::new(TokenCache::new());
        let count = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..10)
            .map(|_| {
                let cache = cache.clone();
                let count = count.clone();
                tokio::spawn(async move {
                    cache
                        .get(SystemTime::now(), || async {
                            count.fetch_add(1, Ordering::SeqCst);
                            for _ in 0..20 {
                                tokio::task::yield_now().await;
                            }
                            Err::<IamToken, _>(Error::new(
                                ErrorKind::Authentication,
                                "IAM rejected the password",
                            ))
                        })
                        .await
                        .unwrap_err()
                        .kind()
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap(), ErrorKind::Authentication);
        }
        assert_eq!(count.load(Ordering::SeqCst), 1);
        // A later call (not a waiter of that refresh) tries again.
        let t = cache
            .get(SystemTime::now(), || fake_fetch(&count, 3600))
            .await
            .unwrap();
        assert_eq!(t.token.expose(), "tok-1");
    }

    #[test]
    fn margin_is_a_tenth_capped_at_five_minutes() {
        assert_eq!(
            refresh_margin(Duration::from_secs(60)),
            Duration::from_secs(6)
        );
        assert_eq!(
            refresh_margin(Duration::from_secs(86_400)),
            Duration::from_secs(300)
        );
    }
}
